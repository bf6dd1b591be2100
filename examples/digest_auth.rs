//! Digest authentication against a server that asks for it.
//!
//! Starts a loopback server that protects everything with Digest (SHA-256,
//! `qop=auth`) and checks each answer by RFC 7616, then drives it with a client
//! carrying `DigestAuth`. A small logging middleware placed after `DigestAuth`
//! prints every attempt on the wire, so you see the 401s it answers for you:
//!
//! 1. the first request is challenged once and answered;
//! 2. the next ones are answered ahead of time (preemptively), with no 401;
//!    every response proves the server knows the password too (`rspauth`,
//!    checked because of `verify_server(true)`);
//! 3. when the server expires its nonce (`stale=true`), the answer is redone;
//! 4. a wrong password gets its 401 back, with the reason attached.
//!
//! Warning: Digest protects the password, not the traffic. Use it over HTTPS
//! unless, as here, the server is on your own machine.
//!
//! Run it with `cargo run --example digest_auth`.

#[path = "support/digest_server.rs"]
mod digest_server;

use axum::http::header;
use digest_server::{PASSWORD, Server, USER};
use stopover::client::digest::{DigestAuth, DigestFailure};
use stopover::client::{Client, Next, Request, from_fn};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::default();
    let addr = server.start().await?;
    let base = format!("http://{addr}/");

    // Outermost first: DigestAuth, then the logger, so the logger sees every attempt.
    let client = Client::builder()
        .base_url(&base)
        .middleware(DigestAuth::new(USER, PASSWORD).verify_server(true))
        .middleware(from_fn(log_attempt))
        .build()?;

    println!("1. first request: challenged, then answered");
    let response = client.get("/reports/daily").send().await?;
    println!("   -> {}\n", response.status());

    println!("2. same protection space: answered preemptively");
    for path in ["/reports/weekly", "/reports/monthly?format=csv"] {
        let response = client.get(path).send().await?;
        println!("   -> {}", response.status());
    }

    println!("\n3. the server expires its nonce: stale=true, answered again");
    server.expire_nonce();
    let response = client.get("/reports/daily").send().await?;
    println!("   -> {}\n", response.status());

    println!("4. a wrong password: the 401 comes back with the reason");
    let wrong = Client::builder()
        .base_url(&base)
        .middleware(DigestAuth::new(USER, "not the password"))
        .middleware(from_fn(log_attempt))
        .build()?;
    let response = wrong.get("/reports/daily").send().await?;
    let reason = response.extensions().get::<DigestFailure>().cloned();
    println!("   -> {} ({})", response.status(), describe(reason));
    Ok(())
}

async fn log_attempt(
    req: Request,
    next: Next,
) -> stopover::client::Result<stopover::client::Response> {
    let answer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(", ").find(|part| part.starts_with("nc=")))
        .map_or("no Authorization".to_owned(), |nc| {
            format!("Digest answer, {nc}")
        });
    let target = match req.url().query() {
        Some(query) => format!("{}?{query}", req.url().path()),
        None => req.url().path().to_owned(),
    };
    let line = format!("   {} {target} [{answer}]", req.method());
    let response = next.run(req).await?;
    let stale = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("stale=true"));
    println!(
        "{line} -> {}{}",
        response.status(),
        if stale { " stale=true" } else { "" }
    );
    Ok(response)
}

fn describe(reason: Option<DigestFailure>) -> String {
    match reason {
        Some(failure) => failure.to_string(),
        None => "no reason attached".to_owned(),
    }
}
