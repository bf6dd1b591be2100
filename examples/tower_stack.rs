//! The client inside a tower stack: at most two requests in flight, each given five seconds.
//!
//! Run with `cargo run --example tower_stack`; it starts its own loopback server.

use std::time::Duration;

use http_body_util::BodyExt;
use stopover::client::Client;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // A loopback server to talk to.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().fallback(|| async { "hello from the stack" });
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The client's own middleware chain, redirects and SSRF policy run inside the stack.
    let client = Client::builder().user_agent("tower-stack/1").build()?;
    let mut stack = ServiceBuilder::new()
        .concurrency_limit(2)
        .timeout(Duration::from_secs(5))
        .service(client);

    for path in ["/one", "/two", "/three"] {
        let request = http::Request::get(format!("http://{addr}{path}")).body(String::new())?;
        // The client serves any body type that converts into one; name the one used here.
        let ready = ServiceExt::<http::Request<String>>::ready(&mut stack).await?;
        let response = ready.call(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        println!("{path}: {status} {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}
