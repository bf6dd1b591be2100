//! Digest authentication against a server that asks for it.
//!
//! Starts a loopback server that protects everything with Digest (SHA-256,
//! `qop=auth`) and checks each answer by RFC 7616, then drives it with a client
//! carrying `DigestAuth`. A small logging middleware placed after `DigestAuth`
//! prints every attempt on the wire, so you see the 401s it answers for you:
//!
//! 1. the first request is challenged once and answered;
//! 2. the next ones are answered ahead of time (preemptively), with no 401;
//! 3. when the server expires its nonce (`stale=true`), the answer is redone;
//! 4. a wrong password gets its 401 back, with the reason attached.
//!
//! Warning: Digest protects the password, not the traffic. Use it over HTTPS
//! unless, as here, the server is on your own machine.
//!
//! Run it with `cargo run --example digest_auth`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use layover::client::digest::{DigestAuth, DigestFailure};
use layover::client::{Client, Next, Request, from_fn};
use sha2::{Digest, Sha256};

const REALM: &str = "reports@loopback";
const USER: &str = "Mufasa";
const PASSWORD: &str = "Circle of Life";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::default();
    let addr = server.start().await?;
    let base = format!("http://{addr}/");

    // Outermost first: DigestAuth, then the logger, so the logger sees every attempt.
    let client = Client::builder()
        .base_url(&base)
        .middleware(DigestAuth::new(USER, PASSWORD))
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
) -> layover::client::Result<layover::client::Response> {
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

// ---------------------------------------------------------------------------
// A loopback server that checks Digest answers (SHA-256, qop=auth) by RFC 7616.
// ---------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Server {
    state: Arc<Mutex<ServerState>>,
}

#[derive(Default)]
struct ServerState {
    issued: u32,
    /// Valid nonces and the last nonce count seen with each.
    nonces: HashMap<String, u32>,
    expired: Vec<String>,
}

impl ServerState {
    fn current_nonce(&mut self) -> String {
        if self.nonces.is_empty() {
            self.issued += 1;
            self.nonces.insert(format!("nonce-{}", self.issued), 0);
        }
        self.nonces.keys().next().cloned().unwrap_or_default()
    }
}

impl Server {
    async fn start(&self) -> std::io::Result<SocketAddr> {
        let app = Router::new().fallback(protected).with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(addr)
    }

    fn expire_nonce(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let expired: Vec<String> = state.nonces.drain().map(|(nonce, _)| nonce).collect();
        state.expired.extend(expired);
    }
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `name=value` / `name="value"` pairs of a `Digest` answer (no escapes are
/// needed for the values this example uses).
fn parse_answer(value: &str) -> Option<HashMap<String, String>> {
    let params = value.strip_prefix("Digest ")?;
    params
        .split(", ")
        .map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.to_owned(), value.trim_matches('"').to_owned()))
        })
        .collect()
}

async fn protected(
    State(server): State<Server>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut state = server.state.lock().unwrap_or_else(|e| e.into_inner());
    let answer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_answer);
    let mut stale = false;
    if let Some(answer) = answer {
        let get = |name: &str| answer.get(name).map(String::as_str).unwrap_or_default();
        let nonce = get("nonce");
        let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let ha1 = sha256_hex(&format!("{}:{REALM}:{PASSWORD}", get("username")));
        let ha2 = sha256_hex(&format!("{method}:{}", get("uri")));
        let expected = sha256_hex(&format!(
            "{ha1}:{nonce}:{}:{}:auth:{ha2}",
            get("nc"),
            get("cnonce")
        ));
        let count = u32::from_str_radix(get("nc"), 16).unwrap_or(0);
        let correct = get("username") == USER
            && get("uri") == target
            && get("qop") == "auth"
            && get("response") == expected;
        if correct && state.expired.iter().any(|old| old == nonce) {
            stale = true;
        } else if correct {
            if let Some(last) = state.nonces.get_mut(nonce) {
                if count > *last {
                    *last = count;
                    return (StatusCode::OK, "report").into_response();
                }
            }
        }
    }
    let nonce = state.current_nonce();
    let challenge = format!(
        r#"Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=SHA-256{}"#,
        if stale { ", stale=true" } else { "" }
    );
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
    )
        .into_response()
}
