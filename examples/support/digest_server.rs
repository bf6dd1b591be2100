//! A loopback server that protects `/reports/...` with Digest authentication (SHA-256,
//! `qop=auth`) and checks each answer by RFC 7616, for the examples. Accepted answers get an
//! `Authentication-Info` with the `rspauth` that proves the server knows the password too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use sha2::{Digest, Sha256};

pub const REALM: &str = "reports@loopback";
pub const USER: &str = "Mufasa";
pub const PASSWORD: &str = "Circle of Life";

#[derive(Clone, Default)]
pub struct Server {
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
    /// The protected routes, `/reports/...`, to serve on their own or merge into an app.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/reports/{*rest}", any(protected))
            .with_state(self.clone())
    }

    /// Serves the protected routes on 127.0.0.1 (a free port).
    #[allow(dead_code)]
    pub async fn start(&self) -> std::io::Result<SocketAddr> {
        let app = self.router();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(addr)
    }

    /// Expires every nonce: the next answers get `stale=true`.
    #[allow(dead_code)]
    pub fn expire_nonce(&self) {
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
                    // RFC 7616 section 3.5: A2 without the method.
                    let rspauth = sha256_hex(&format!(
                        "{ha1}:{nonce}:{}:{}:auth:{}",
                        get("nc"),
                        get("cnonce"),
                        sha256_hex(&format!(":{}", get("uri")))
                    ));
                    let info = format!(
                        r#"rspauth="{rspauth}", qop=auth, nc={}, cnonce="{}""#,
                        get("nc"),
                        get("cnonce")
                    );
                    return (StatusCode::OK, [("authentication-info", info)], "report")
                        .into_response();
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
