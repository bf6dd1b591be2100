//! Sending webhooks to user-supplied URLs without letting them reach your network.
//!
//! A webhook sender posts to whatever URL a customer registered, so a customer can register
//! `http://169.254.169.254/`, a name that resolves to `10.0.0.7`, or a URL that redirects to
//! either. The cookbook's recipe checks the URL string in a middleware; `http://2130706433/`,
//! `127.0.0.2`, a DNS answer or a redirect walk straight past it. Here the client carries an
//! SSRF policy in its transport instead: every hop's URL is checked, every DNS answer is
//! judged before a connection is made, and the one internal receiver this demo delivers to is
//! reachable only through an explicit allow rule for its address and port.
//!
//! Names are answered by a small in-process resolver, so the demo makes no DNS query, and every
//! refused destination is refused before any packet is sent.
//!
//! Warning: allow rules are the only way in, so keep them as narrow as an address and a port;
//! a host allow list alone never opens an internal address.
//!
//! Run it with `cargo run --example ssrf_guard`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use stopover::client::Client;
use stopover::client::ssrf::Policy;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let delivered = Arc::new(AtomicUsize::new(0));
    let receiver = start_receiver(Arc::clone(&delivered)).await?;
    let port = receiver.port();

    // What customers' names resolve to, as DNS would answer.
    let dns = StaticDns::new([
        ("hooks.customer.test", "127.0.0.1"),
        ("attacker.test", "10.0.0.7"),
    ]);
    let policy = Policy::builder()
        // The one internal destination allowed: the receiver's address and port.
        .allow_addr(receiver)
        .build()?;
    let client = Client::builder()
        .ssrf_policy(policy)
        .dns_resolver(Arc::new(dns))
        .build()?;

    let targets = [
        format!("http://127.0.0.1:{port}/hooks/1"),
        format!("http://hooks.customer.test:{port}/hooks/2"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://2130706433/admin".to_owned(),
        "http://[::ffff:10.0.0.1]/".to_owned(),
        format!("http://localhost:{port}/hooks/3"),
        "http://metadata.google.internal/computeMetadata/v1/".to_owned(),
        "http://attacker.test/".to_owned(),
        "gopher://127.0.0.1:6379/_FLUSHALL".to_owned(),
        format!("http://127.0.0.1:{port}/moved"),
    ];
    for target in &targets {
        let sent = client
            .post(target.as_str())
            .json(&serde_json::json!({ "event": "invoice.paid", "id": 42 }))
            .send()
            .await;
        match sent {
            Ok(response) => println!("delivered  {target} -> {}", response.status()),
            Err(err) => match err.refusal() {
                // The message is safe to show the customer: it never says what a name
                // resolved to. The address is in the refusal, for your logs.
                Some(refusal) => println!(
                    "refused    {target}\n           {err}\n           (log: rule={} hop={:?} addr={:?})",
                    refusal.rule(),
                    refusal.hop(),
                    refusal.addr(),
                ),
                None => println!("failed     {target}: {err}"),
            },
        }
    }
    println!(
        "the receiver got {} deliveries",
        delivered.load(Ordering::SeqCst)
    );
    Ok(())
}

/// The internal receiver: counts deliveries; `/moved` redirects to the metadata service.
async fn start_receiver(delivered: Arc<AtomicUsize>) -> std::io::Result<SocketAddr> {
    async fn hook(State(delivered): State<Arc<AtomicUsize>>) -> StatusCode {
        delivered.fetch_add(1, Ordering::SeqCst);
        StatusCode::NO_CONTENT
    }
    async fn moved() -> impl IntoResponse {
        (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, "http://169.254.169.254/latest/meta-data/")],
        )
    }
    let app = Router::new()
        .route("/hooks/{id}", post(hook))
        .route("/moved", post(moved))
        .with_state(delivered);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("receiver stopped: {err}");
        }
    });
    Ok(addr)
}

/// A resolver with fixed answers; unknown names fail like NXDOMAIN.
struct StaticDns(HashMap<&'static str, IpAddr>);

impl StaticDns {
    fn new<const N: usize>(entries: [(&'static str, &'static str); N]) -> Self {
        StaticDns(
            entries
                .into_iter()
                .filter_map(|(name, ip)| Some((name, ip.parse().ok()?)))
                .collect(),
        )
    }
}

impl Resolve for StaticDns {
    fn resolve(&self, name: Name) -> Resolving {
        let answer = self.0.get(name.as_str()).copied();
        Box::pin(async move {
            let ip = answer.ok_or("no such host")?;
            Ok(Box::new(std::iter::once(SocketAddr::new(ip, 0))) as Addrs)
        })
    }
}
