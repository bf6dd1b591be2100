//! An axum app with stopover's full server stack, in the recommended order: forwarded, CORS,
//! error, timeout, shield. The example starts it on loopback, sends a request that shows each
//! layer at work, prints what came back, and exits.
//!
//! Run it with `cargo run --example server`; add `-- --serve` to keep it running and try it
//! with curl.

#[path = "support/server_stack.rs"]
mod server_stack;

use std::sync::atomic::Ordering;
use std::time::Duration;

use stopover::client::Client;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::panic::set_hook(Box::new(|_| {
        println!("  [server] a handler panicked: logged here, never sent to the client");
    }));
    let server = server_stack::start().await?;
    let base = format!("http://{}", server.addr);
    println!("stopover stack listening on {base}\n");

    if std::env::args().any(|arg| arg == "--serve") {
        println!("try: curl -i {base}/items/7   (Ctrl-C to stop)");
        tokio::signal::ctrl_c().await?;
        server.shield.shutdown().await;
        return Ok(());
    }

    let client = Client::builder().base_url(&base).build()?;
    let show = |label: &str, status: http::StatusCode, detail: String| {
        println!("{label:<48} {status} {detail}");
    };

    let response = client.get("/nope").send().await?;
    show(
        "error: unknown route becomes JSON",
        response.status(),
        response.text().await?,
    );

    let response = client.post("/hello").send().await?;
    let allow = response.headers().get("allow").cloned();
    show(
        "error: wrong method keeps Allow",
        response.status(),
        format!("{} (Allow: {allow:?})", response.text().await?),
    );

    let response = client.get("/items/7").send().await?;
    show(
        "error: a handler's HttpError with data",
        response.status(),
        response.text().await?,
    );

    let response = client.get("/panic").send().await?;
    show(
        "error: a panic, message kept private",
        response.status(),
        response.text().await?,
    );

    let response = client.get("/slow").send().await?;
    show(
        "timeout: 504 in the same JSON shape",
        response.status(),
        response.text().await?,
    );

    let response = client
        .get("/hello")
        .header("origin", server_stack::APP_ORIGIN)
        .send()
        .await?;
    let allowed = response
        .headers()
        .get("access-control-allow-origin")
        .cloned();
    show(
        "cors: allowed origin",
        response.status(),
        format!("Access-Control-Allow-Origin: {allowed:?}"),
    );

    let response = client
        .get("/hello")
        .header("origin", "https://evil.example")
        .send()
        .await?;
    let allowed = response
        .headers()
        .get("access-control-allow-origin")
        .cloned();
    show(
        "cors: other origin gets no grant",
        response.status(),
        format!("Access-Control-Allow-Origin: {allowed:?}"),
    );

    let response = client
        .request(http::Method::OPTIONS, "/hello")
        .header("origin", server_stack::APP_ORIGIN)
        .header("access-control-request-method", "DELETE")
        .send()
        .await?;
    show(
        "cors: preflight for a method not allowed",
        response.status(),
        String::new(),
    );

    let response = client
        .get("/scheme")
        .header("x-forwarded-proto", "https")
        .send()
        .await?;
    show(
        "forwarded: trusted loopback proxy says https",
        response.status(),
        response.text().await?,
    );

    // A client that gives up after 50 ms: the shielded handler still runs to the end.
    let impatient = client
        .post("/orders")
        .timeout(Duration::from_millis(50))
        .send()
        .await;
    match impatient {
        Ok(response) => println!("shield: the client got {}", response.status()),
        Err(err) => println!(
            "{:<48} client error: {err}",
            "shield: client gave up after 50 ms"
        ),
    }
    server.shield.shutdown().await;
    println!(
        "\nshield: orders stored after the client left: {}",
        server.orders_stored.load(Ordering::SeqCst)
    );
    Ok(())
}
