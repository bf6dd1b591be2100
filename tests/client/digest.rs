//! `DigestAuth` against loopback servers that check every answer by the RFCs
//! (RFC 7616, RFC 2617, RFC 2069) with their own hashing, written here from
//! the RFC formulas and sharing no code with the client.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response as AxumResponse};
use sha2::Digest as _;
use stopover::client::digest::{DigestAuth, DigestError, DigestFailure};
use stopover::client::{Body, Client, Origin, Response};

const USER: &str = "Mufasa";
const PASSWORD: &str = "Circle of Life";
const REALM: &str = "loopback@stopover.test";

// ---------------------------------------------------------------------------
// The checking server
// ---------------------------------------------------------------------------

/// What the server challenges with and how it behaves.
#[derive(Clone)]
struct Policy {
    /// The `algorithm` parameter exactly as sent; `None` sends none (MD5).
    algorithm: Option<&'static str>,
    /// The `qop` parameter; `None` is the RFC 2069 form.
    qop: Option<&'static str>,
    opaque: Option<&'static str>,
    domain: Option<String>,
    userhash: bool,
    /// Challenge header values sent before the server's own Digest one.
    before: Vec<String>,
    /// Challenge header values sent instead of the server's own.
    raw: Option<Vec<String>>,
    /// 407 / `Proxy-Authenticate` / `Proxy-Authorization`, `uri` in absolute form.
    proxy: bool,
    /// How many correct answers to refuse with `stale=true` (their nonce
    /// expires as they arrive).
    stale_answers: usize,
    /// Sends `Authentication-Info: nextnonce=...` with every success.
    next_nonce: bool,
    /// What the server puts in `Authentication-Info` to prove it knows the
    /// password.
    rspauth: Rspauth,
    user: String,
    password: String,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            algorithm: Some("MD5"),
            qop: Some("auth"),
            opaque: Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"),
            domain: None,
            userhash: false,
            before: Vec::new(),
            raw: None,
            proxy: false,
            stale_answers: 0,
            next_nonce: false,
            rspauth: Rspauth::Absent,
            user: USER.to_owned(),
            password: PASSWORD.to_owned(),
        }
    }
}

/// The server side of mutual authentication (RFC 7616 section 3.5).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rspauth {
    /// No `rspauth`.
    Absent,
    /// `rspauth` with `qop`, `nc` and `cnonce` echoed, computed from the
    /// password.
    Correct,
    /// `rspauth` computed by an impostor that does not know the password.
    Forged,
    /// A correct `rspauth`, with a different `cnonce` echoed.
    WrongCnonce,
}

/// The body of every response, hashed into `rspauth` for `auth-int`.
const RESPONSE_BODY: &str = "digest test server";

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Hit {
    target: String,
    authorization: Option<String>,
    status: StatusCode,
    verdict: String,
}

#[derive(Default)]
struct ServerState {
    policy: Policy,
    issued: u32,
    current: String,
    /// Valid nonces and the highest nonce count seen with each.
    nonces: HashMap<String, u32>,
    expired: HashSet<String>,
    redirects: HashMap<String, String>,
    hits: Vec<Hit>,
}

impl ServerState {
    fn issue_nonce(&mut self) -> String {
        self.issued += 1;
        // Characters that need no escaping but are not token characters.
        let nonce = format!("{:08}/+nonce=", self.issued);
        self.nonces.insert(nonce.clone(), 0);
        self.current = nonce.clone();
        nonce
    }
}

#[derive(Clone)]
struct DigestServer {
    addr: SocketAddr,
    state: Arc<Mutex<ServerState>>,
}

impl DigestServer {
    async fn start(policy: Policy) -> DigestServer {
        let mut state = ServerState {
            policy,
            ..ServerState::default()
        };
        state.issue_nonce();
        let state = Arc::new(Mutex::new(state));
        let app = Router::new().fallback(serve).with_state(Arc::clone(&state));
        let addr = crate::support::serve(app).await;
        DigestServer { addr, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.lock().unwrap().hits.clone()
    }

    fn challenges(&self) -> usize {
        let challenge = if self.state.lock().unwrap().policy.proxy {
            StatusCode::PROXY_AUTHENTICATION_REQUIRED
        } else {
            StatusCode::UNAUTHORIZED
        };
        self.hits()
            .iter()
            .filter(|hit| hit.status == challenge)
            .count()
    }

    /// The values of one parameter in every answer the server received.
    fn answered(&self, name: &str) -> Vec<String> {
        self.hits()
            .iter()
            .filter_map(|hit| hit.authorization.as_deref())
            .filter_map(parse_authorization)
            .filter_map(|params| params.get(name).cloned())
            .collect()
    }

    fn set_policy(&self, change: impl FnOnce(&mut Policy)) {
        change(&mut self.state.lock().unwrap().policy);
    }

    /// Makes the current nonce stale and issues a new one.
    fn expire_nonce(&self) {
        let mut state = self.state.lock().unwrap();
        let old = state.current.clone();
        state.nonces.remove(&old);
        state.expired.insert(old);
        state.issue_nonce();
    }

    /// Answers an authenticated `path` with a 302 to `location`.
    fn redirect(&self, path: &str, location: &str) {
        self.state
            .lock()
            .unwrap()
            .redirects
            .insert(path.to_owned(), location.to_owned());
    }
}

enum Verdict {
    Missing,
    /// With the `Authentication-Info` parameters proving the server's
    /// knowledge of the password, if the policy sends them.
    Accepted(Option<String>),
    Stale,
    Rejected(String),
}

async fn serve(
    State(state): State<Arc<Mutex<ServerState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> AxumResponse {
    let mut state = state.lock().unwrap();
    let policy = state.policy.clone();
    let target = uri
        .path_and_query()
        .map_or("/", |path_and_query| path_and_query.as_str())
        .to_owned();
    let (status, credentials_header, challenge_header, info_header) = if policy.proxy {
        (
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            header::PROXY_AUTHORIZATION,
            header::PROXY_AUTHENTICATE,
            HeaderName::from_static("proxy-authentication-info"),
        )
    } else {
        (
            StatusCode::UNAUTHORIZED,
            header::AUTHORIZATION,
            header::WWW_AUTHENTICATE,
            HeaderName::from_static("authentication-info"),
        )
    };
    let authorization = headers
        .get(&credentials_header)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let expected_uri = if policy.proxy {
        let host = headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .unwrap_or_default();
        format!("http://{host}{target}")
    } else {
        target.clone()
    };

    let verdict = if uri.path().starts_with("/public") {
        Verdict::Accepted(None)
    } else {
        match &authorization {
            None => Verdict::Missing,
            Some(value) => verify(&mut state, &method, &expected_uri, &body, value),
        }
    };

    let mut response_headers = HeaderMap::new();
    let (code, verdict_text) = match verdict {
        Verdict::Accepted(proof) => {
            let mut info: Vec<String> = proof.into_iter().collect();
            let accepted = if let Some(location) = state.redirects.get(uri.path()) {
                response_headers.insert(header::LOCATION, location.parse().unwrap());
                (StatusCode::FOUND, "accepted".to_owned())
            } else {
                if policy.next_nonce && authorization.is_some() {
                    let next = state.issue_nonce();
                    info.push(format!(r#"nextnonce="{next}""#));
                }
                (StatusCode::OK, "accepted".to_owned())
            };
            if !info.is_empty() {
                response_headers.insert(info_header, info.join(", ").parse().unwrap());
            }
            accepted
        }
        Verdict::Missing => {
            challenge(
                &state,
                &policy,
                false,
                &challenge_header,
                &mut response_headers,
            );
            (status, "missing".to_owned())
        }
        Verdict::Stale => {
            challenge(
                &state,
                &policy,
                true,
                &challenge_header,
                &mut response_headers,
            );
            (status, "stale".to_owned())
        }
        Verdict::Rejected(reason) => {
            state.issue_nonce();
            challenge(
                &state,
                &policy,
                false,
                &challenge_header,
                &mut response_headers,
            );
            (status, format!("rejected: {reason}"))
        }
    };
    state.hits.push(Hit {
        target,
        authorization,
        status: code,
        verdict: verdict_text,
    });
    (code, response_headers, RESPONSE_BODY).into_response()
}

fn challenge(
    state: &ServerState,
    policy: &Policy,
    stale: bool,
    name: &HeaderName,
    headers: &mut HeaderMap,
) {
    if let Some(raw) = &policy.raw {
        for value in raw {
            headers.append(name, HeaderValue::from_str(value).unwrap());
        }
        return;
    }
    for value in &policy.before {
        headers.append(name, HeaderValue::from_str(value).unwrap());
    }
    let mut params = vec![
        format!(r#"realm="{REALM}""#),
        format!(r#"nonce="{}""#, state.current),
    ];
    if let Some(qop) = policy.qop {
        params.push(format!(r#"qop="{qop}""#));
    }
    if let Some(algorithm) = policy.algorithm {
        params.push(format!("algorithm={algorithm}"));
    }
    if let Some(opaque) = policy.opaque {
        params.push(format!(r#"opaque="{opaque}""#));
    }
    if let Some(domain) = &policy.domain {
        params.push(format!(r#"domain="{domain}""#));
    }
    if policy.userhash {
        params.push("userhash=true".to_owned());
    }
    if stale {
        params.push("stale=true".to_owned());
    }
    let value = format!("Digest {}", params.join(", "));
    headers.append(name, HeaderValue::from_str(&value).unwrap());
}

/// Parses `Digest name=value, name="quoted \" value", ...`; `None` on any
/// syntax error or repeated name.
fn parse_authorization(value: &str) -> Option<HashMap<String, String>> {
    let rest = value.strip_prefix("Digest ")?;
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(params);
        }
        let mut name = String::new();
        while let Some(c) = chars.peek().copied() {
            if c == '=' || c == ' ' {
                break;
            }
            name.push(c.to_ascii_lowercase());
            chars.next();
        }
        if chars.next() != Some('=') {
            return None;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => value.push(chars.next()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' || c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        if params.insert(name, value).is_some() {
            return None;
        }
    }
}

/// `H(data)` in lowercase hex, for an algorithm name without `-sess`.
fn hash(algorithm: &str, data: &[u8]) -> String {
    let bytes = match algorithm.to_ascii_uppercase().as_str() {
        "MD5" => md5::Md5::digest(data).to_vec(),
        "SHA" => sha1::Sha1::digest(data).to_vec(),
        "SHA-256" => sha2::Sha256::digest(data).to_vec(),
        "SHA-512-256" => sha2::Sha512_256::digest(data).to_vec(),
        "SHA-512" => sha2::Sha512::digest(data).to_vec(),
        other => panic!("the test server does not know {other}"),
    };
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn verify(
    state: &mut ServerState,
    method: &Method,
    expected_uri: &str,
    body: &[u8],
    value: &str,
) -> Verdict {
    let policy = state.policy.clone();
    let Some(params) = parse_authorization(value) else {
        return Verdict::Rejected("unparsable".into());
    };
    let get = |name: &str| params.get(name).map(String::as_str);
    if get("realm") != Some(REALM) {
        return Verdict::Rejected("realm".into());
    }
    let nonce = get("nonce").unwrap_or_default().to_owned();
    if state.expired.contains(&nonce) {
        return Verdict::Stale;
    }
    let Some(&last_count) = state.nonces.get(&nonce) else {
        return Verdict::Rejected("unknown nonce".into());
    };
    if get("uri") != Some(expected_uri) {
        return Verdict::Rejected(format!("uri {:?} != {expected_uri:?}", get("uri")));
    }
    if get("algorithm") != policy.algorithm {
        return Verdict::Rejected("algorithm not echoed verbatim".into());
    }
    if get("opaque") != policy.opaque {
        return Verdict::Rejected("opaque".into());
    }

    let name = policy.algorithm.unwrap_or("MD5");
    let (base, session) = match name.len().checked_sub(5) {
        Some(cut) if name[cut..].eq_ignore_ascii_case("-sess") => (&name[..cut], true),
        _ => (name, false),
    };
    let h = |data: String| hash(base, data.as_bytes());

    let username = if policy.userhash {
        if get("userhash") != Some("true") {
            return Verdict::Rejected("userhash flag".into());
        }
        let expected = h(format!("{}:{REALM}", policy.user));
        if get("username") != Some(expected.as_str()) {
            return Verdict::Rejected("hashed username".into());
        }
        policy.user.clone()
    } else if let Some(extended) = get("username*") {
        if get("username").is_some() {
            return Verdict::Rejected("username and username*".into());
        }
        let Some(encoded) = extended.strip_prefix("UTF-8''") else {
            return Verdict::Rejected("username* charset".into());
        };
        match percent_encoding::percent_decode_str(encoded).decode_utf8() {
            Ok(decoded) => decoded.into_owned(),
            Err(_) => return Verdict::Rejected("username* encoding".into()),
        }
    } else {
        get("username").unwrap_or_default().to_owned()
    };
    if username != policy.user {
        return Verdict::Rejected(format!("user {username:?}"));
    }

    let cnonce = get("cnonce").unwrap_or_default();
    let mut ha1 = h(format!("{username}:{REALM}:{}", policy.password));
    if session {
        ha1 = h(format!("{ha1}:{nonce}:{cnonce}"));
    }
    let qop = get("qop");
    let offered: Vec<&str> = policy
        .qop
        .map(|list| list.split(',').map(str::trim).collect())
        .unwrap_or_default();
    match qop {
        Some(chosen) if !offered.contains(&chosen) => {
            return Verdict::Rejected(format!("qop {chosen} not offered"));
        }
        None if !offered.is_empty() => return Verdict::Rejected("qop missing".into()),
        _ => {}
    }
    let uri = get("uri").unwrap_or_default();
    let ha2 = if qop == Some("auth-int") {
        h(format!("{method}:{uri}:{}", hash(base, body)))
    } else {
        h(format!("{method}:{uri}"))
    };
    let expected = match qop {
        Some(qop) => {
            let nc_text = get("nc").unwrap_or_default();
            let Ok(count) = u32::from_str_radix(nc_text, 16) else {
                return Verdict::Rejected("nc".into());
            };
            if nc_text.len() != 8 || count <= last_count {
                return Verdict::Rejected(format!("nc {nc_text} after {last_count}"));
            }
            if cnonce.is_empty() {
                return Verdict::Rejected("cnonce".into());
            }
            state.nonces.insert(nonce.clone(), count);
            h(format!("{ha1}:{nonce}:{nc_text}:{cnonce}:{qop}:{ha2}"))
        }
        None => {
            if get("nc").is_some() || get("cnonce").is_some() {
                return Verdict::Rejected("nc or cnonce without qop".into());
            }
            h(format!("{ha1}:{nonce}:{ha2}"))
        }
    };
    if get("response") != Some(expected.as_str()) {
        return Verdict::Rejected("response".into());
    }
    if policy.stale_answers > 0 {
        state.policy.stale_answers -= 1;
        state.nonces.remove(&nonce);
        state.expired.insert(nonce);
        state.issue_nonce();
        return Verdict::Stale;
    }
    if policy.rspauth == Rspauth::Absent {
        return Verdict::Accepted(None);
    }
    // RFC 7616 section 3.5: the request digest again, with an empty method
    // in A2 and, for auth-int, the response body.
    let ha1 = if policy.rspauth == Rspauth::Forged {
        h(format!("{username}:{REALM}:not the password"))
    } else {
        ha1
    };
    let ha2 = if qop == Some("auth-int") {
        h(format!(":{uri}:{}", hash(base, RESPONSE_BODY.as_bytes())))
    } else {
        h(format!(":{uri}"))
    };
    let nc = get("nc").unwrap_or_default();
    let rspauth = match qop {
        Some(qop) => h(format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")),
        None => h(format!("{ha1}:{nonce}:{ha2}")),
    };
    let echoed_cnonce = if policy.rspauth == Rspauth::WrongCnonce {
        "someone-else"
    } else {
        cnonce
    };
    Verdict::Accepted(Some(match qop {
        Some(qop) => {
            format!(r#"rspauth="{rspauth}", qop={qop}, nc={nc}, cnonce="{echoed_cnonce}""#)
        }
        None => format!(r#"rspauth="{rspauth}""#),
    }))
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn client(digest: DigestAuth) -> Client {
    Client::builder()
        .middleware(digest)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn credentials() -> DigestAuth {
    DigestAuth::new(USER, PASSWORD)
}

fn failure(response: &Response) -> Option<DigestFailure> {
    response.extensions().get::<DigestFailure>().cloned()
}

fn verdicts(server: &DigestServer) -> Vec<String> {
    server.hits().into_iter().map(|hit| hit.verdict).collect()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_algorithm_and_qop_combination_authenticates() {
    let algorithms = [
        None,
        Some("MD5"),
        Some("MD5-sess"),
        Some("SHA-256"),
        Some("SHA-256-sess"),
        Some("SHA-512-256"),
        Some("SHA-512-256-sess"),
        Some("SHA-512"),
        Some("SHA-512-sess"),
        Some("SHA"),
        Some("SHA-sess"),
    ];
    let qops = [
        (None, None),
        (Some("auth"), Some("auth")),
        (Some("auth-int"), Some("auth-int")),
        // A buffered body allows auth-int, so it is preferred.
        (Some("auth,auth-int"), Some("auth-int")),
    ];
    for algorithm in algorithms {
        for (offered, expected_qop) in qops {
            let session = algorithm.is_some_and(|name| name.ends_with("-sess"));
            if session && offered.is_none() {
                continue; // no answer is possible; see the failure test
            }
            let server = DigestServer::start(Policy {
                algorithm,
                qop: offered,
                ..Policy::default()
            })
            .await;
            let response = client(credentials())
                .post(server.url("/submit"))
                .body("a body to protect")
                .send()
                .await
                .unwrap();
            let case = format!("{algorithm:?} {offered:?}: {:?}", verdicts(&server));
            assert_eq!(response.status(), StatusCode::OK, "{case}");
            assert_eq!(server.challenges(), 1, "{case}");
            assert_eq!(
                server.answered("qop").first().map(String::as_str),
                expected_qop,
                "{case}"
            );
        }
    }
}

#[tokio::test]
async fn preemptive_requests_succeed_without_a_401() {
    let server = DigestServer::start(Policy::default()).await;
    let client = client(credentials());
    for path in ["/first", "/second", "/third"] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(server.challenges(), 1);
    assert_eq!(
        verdicts(&server),
        ["missing", "accepted", "accepted", "accepted"]
    );
}

#[tokio::test]
async fn nonce_counts_increase_with_each_answer() {
    let server = DigestServer::start(Policy::default()).await;
    let client = client(credentials());
    for _ in 0..3 {
        client.get(server.url("/")).send().await.unwrap();
    }
    assert_eq!(server.answered("nc"), ["00000001", "00000002", "00000003"]);
    let nonces: HashSet<String> = server.answered("nonce").into_iter().collect();
    assert_eq!(nonces.len(), 1);
}

#[tokio::test]
async fn without_preemption_every_request_is_challenged() {
    let server = DigestServer::start(Policy::default()).await;
    let client = client(credentials().preemptive(false));
    for _ in 0..2 {
        let response = client.get(server.url("/")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(
        verdicts(&server),
        ["missing", "accepted", "missing", "accepted"]
    );
}

#[tokio::test]
async fn stale_nonce_is_answered_again_with_the_new_nonce() {
    let server = DigestServer::start(Policy::default()).await;
    let client = client(credentials());
    client.get(server.url("/")).send().await.unwrap();
    server.expire_nonce();
    let response = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(failure(&response), None);
    assert_eq!(
        verdicts(&server),
        ["missing", "accepted", "stale", "accepted"]
    );
    let nonces = server.answered("nonce");
    assert_eq!(nonces[1], nonces[0]);
    assert_ne!(nonces[2], nonces[1]);
    // The new nonce starts its own count.
    assert_eq!(server.answered("nc"), ["00000001", "00000002", "00000001"]);
}

#[tokio::test]
async fn stale_after_a_fresh_answer_is_answered_again() {
    let server = DigestServer::start(Policy {
        stale_answers: 1,
        ..Policy::default()
    })
    .await;
    let response = client(credentials().preemptive(false))
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(failure(&response), None);
    assert_eq!(verdicts(&server), ["missing", "stale", "accepted"]);
}

#[tokio::test]
async fn stale_is_believed_only_once_per_request() {
    let server = DigestServer::start(Policy {
        stale_answers: usize::MAX,
        ..Policy::default()
    })
    .await;
    let response = client(credentials())
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(failure(&response), Some(DigestFailure::CredentialsRejected));
    assert_eq!(verdicts(&server), ["missing", "stale", "stale"]);
}

#[tokio::test]
async fn wrong_password_returns_the_second_401_without_looping() {
    let server = DigestServer::start(Policy::default()).await;
    let response = client(DigestAuth::new(USER, "wrong"))
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(failure(&response), Some(DigestFailure::CredentialsRejected));
    assert_eq!(server.hits().len(), 2);
    assert_eq!(server.hits()[1].verdict, "rejected: response");
}

#[tokio::test]
async fn a_rejected_preemptive_answer_is_retried_with_the_fresh_challenge() {
    let server = DigestServer::start(Policy::default()).await;
    let client = client(credentials());
    client.get(server.url("/")).send().await.unwrap();
    // A server that forgets nonces without saying stale=true.
    {
        let mut state = server.state.lock().unwrap();
        state.nonces.clear();
        state.issue_nonce();
    }
    let response = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        verdicts(&server),
        ["missing", "accepted", "rejected: unknown nonce", "accepted"]
    );
}

#[tokio::test]
async fn path_and_query_with_encoded_characters_authenticate() {
    let server = DigestServer::start(Policy::default()).await;
    let client = client(credentials());
    for path in ["/a%20b/c?x=%2F", "/caf\u{e9}/x y?q=a b&r=%41"] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{:?}", verdicts(&server));
    }
    assert_eq!(
        server.answered("uri"),
        ["/a%20b/c?x=%2F", "/caf%C3%A9/x%20y?q=a%20b&r=%41"]
    );
}

#[tokio::test]
async fn cross_origin_redirect_carries_no_authorization() {
    let victim = DigestServer::start(Policy::default()).await;
    let other = DigestServer::start(Policy::default()).await;
    assert_ne!(victim.addr.port(), other.addr.port());
    victim.redirect("/go", &other.url("/collect"));
    let response = client(credentials())
        .get(victim.url("/go"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(failure(&response), Some(DigestFailure::CrossOrigin));
    assert_eq!(verdicts(&victim), ["missing", "accepted"]);
    let hits = other.hits();
    assert_eq!(
        hits.len(),
        1,
        "the other origin's challenge is not answered"
    );
    assert_eq!(hits[0].authorization, None);
}

#[tokio::test]
async fn cross_origin_401_without_digest_has_no_digest_failure() {
    let victim = DigestServer::start(Policy::default()).await;
    let other = DigestServer::start(Policy {
        raw: Some(vec![r#"Bearer realm="api""#.to_owned()]),
        ..Policy::default()
    })
    .await;
    victim.redirect("/go", &other.url("/collect"));
    let response = client(credentials())
        .get(victim.url("/go"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(failure(&response), None);
}

#[tokio::test]
async fn same_origin_redirect_is_answered_preemptively() {
    let server = DigestServer::start(Policy::default()).await;
    server.redirect("/start", "/protected");
    let response = client(credentials())
        .get(server.url("/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(verdicts(&server), ["missing", "accepted", "accepted"]);
    assert_eq!(server.hits()[2].target, "/protected");
}

#[tokio::test]
async fn by_default_only_the_first_answered_origin_gets_answers() {
    let first = DigestServer::start(Policy::default()).await;
    let second = DigestServer::start(Policy::default()).await;
    let client = client(credentials());
    let response = client.get(first.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = client.get(second.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(failure(&response), Some(DigestFailure::UnlistedOrigin));
    assert_eq!(verdicts(&second), ["missing"]);
    // The first origin keeps its answers.
    let response = client.get(first.url("/again")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_request_to_an_unlisted_origin_gets_no_answer() {
    let listed = DigestServer::start(Policy::default()).await;
    let unrelated = DigestServer::start(Policy::default()).await;
    let digest = credentials().origins([Origin::parse(&listed.url("/")).unwrap()]);
    let response = client(digest).get(unrelated.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(failure(&response), Some(DigestFailure::UnlistedOrigin));
    let hits = unrelated.hits();
    assert_eq!(hits.len(), 1, "the challenge is not answered");
    assert_eq!(hits[0].authorization, None);
}

#[tokio::test]
async fn two_listed_origins_share_one_client() {
    let first = DigestServer::start(Policy::default()).await;
    let second = DigestServer::start(Policy::default()).await;
    let digest = credentials().origins([
        Origin::parse(&first.url("/")).unwrap(),
        Origin::parse(&second.url("/")).unwrap(),
    ]);
    let client = client(digest);
    for server in [&first, &second] {
        let response = client.get(server.url("/")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    // Each origin has its own space: no answer went preemptively to the second.
    assert_eq!(verdicts(&second), ["missing", "accepted"]);
}

#[test]
fn an_origin_that_is_not_a_url_is_refused() {
    let err = Origin::parse("camera.local").unwrap_err();
    assert!(err.to_string().contains("camera.local"), "{err}");
}

#[tokio::test]
async fn a_bad_challenge_leaves_the_next_request_unaffected() {
    let server = DigestServer::start(Policy {
        algorithm: Some("SHA-384"),
        ..Policy::default()
    })
    .await;
    let client = client(credentials());
    let response = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        failure(&response),
        Some(DigestFailure::UnsupportedAlgorithm("SHA-384".into()))
    );

    server.set_policy(|policy| policy.algorithm = Some("SHA-256"));
    let response = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(failure(&response), None);
    assert_eq!(verdicts(&server), ["missing", "missing", "accepted"]);
}

#[tokio::test]
async fn unanswerable_challenges_come_back_with_the_reason() {
    let cases = [
        (vec![r#"Digest realm="r""#], DigestFailure::MissingNonce),
        (
            vec![r#"Digest realm="r", nonce="n", qop="auth-conf""#],
            DigestFailure::UnsupportedQop("auth-conf".into()),
        ),
        (
            vec![r#"Digest realm="r", nonce="n", algorithm=MD5-sess"#],
            DigestFailure::SessionWithoutQop("MD5-sess".into()),
        ),
        (vec![r#"Basic realm="r""#], DigestFailure::NoDigestChallenge),
        (
            vec![r#"Digest realm="unterminated, nonce=n"#],
            DigestFailure::MalformedChallenge,
        ),
        (vec![], DigestFailure::NoDigestChallenge),
    ];
    for (raw, expected) in cases {
        let server = DigestServer::start(Policy {
            raw: Some(raw.iter().map(|value| (*value).to_owned()).collect()),
            ..Policy::default()
        })
        .await;
        let response = client(credentials())
            .get(server.url("/"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{raw:?}");
        assert_eq!(failure(&response), Some(expected), "{raw:?}");
        assert_eq!(server.hits().len(), 1, "{raw:?}");
    }
}

#[tokio::test]
async fn basic_and_several_digest_challenges_pick_the_strongest() {
    let server = DigestServer::start(Policy {
        algorithm: Some("SHA-512-256"),
        before: vec![
            r#"Basic realm="basic", Digest realm="other", nonce="weak", algorithm=MD5, qop=auth"#
                .to_owned(),
            r#"Digest realm="other", nonce="unknown", algorithm=SHA-384, qop=auth"#.to_owned(),
        ],
        ..Policy::default()
    })
    .await;
    let response = client(credentials())
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{:?}", verdicts(&server));
    assert_eq!(server.answered("algorithm"), ["SHA-512-256"]);
}

#[tokio::test]
async fn algorithm_is_echoed_as_the_server_spelled_it() {
    let server = DigestServer::start(Policy {
        algorithm: Some("sha-256-Sess"),
        ..Policy::default()
    })
    .await;
    let response = client(credentials())
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{:?}", verdicts(&server));
    assert_eq!(server.answered("algorithm"), ["sha-256-Sess"]);
}

#[tokio::test]
async fn userhash_sends_the_hashed_name() {
    let server = DigestServer::start(Policy {
        algorithm: Some("SHA-512-256"),
        userhash: true,
        user: "J\u{e4}s\u{f8}n Doe".to_owned(),
        ..Policy::default()
    })
    .await;
    let response = client(DigestAuth::new("J\u{e4}s\u{f8}n Doe", PASSWORD))
        .get(server.url("/doe.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{:?}", verdicts(&server));
    assert_eq!(server.answered("userhash"), ["true"]);
}

#[tokio::test]
async fn non_ascii_name_is_sent_as_username_star() {
    let server = DigestServer::start(Policy {
        user: "J\u{e4}s\u{f8}n Doe".to_owned(),
        ..Policy::default()
    })
    .await;
    let response = client(DigestAuth::new("J\u{e4}s\u{f8}n Doe", PASSWORD))
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{:?}", verdicts(&server));
    assert_eq!(
        server.answered("username*"),
        ["UTF-8''J%C3%A4s%C3%B8n%20Doe"]
    );
}

#[tokio::test]
async fn quotes_and_backslashes_in_the_name_are_escaped() {
    let name = r#"us"er\name"#;
    let server = DigestServer::start(Policy {
        user: name.to_owned(),
        ..Policy::default()
    })
    .await;
    let response = client(DigestAuth::new(name, PASSWORD))
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{:?}", verdicts(&server));
}

fn replayable_stream(cap: usize) -> Body {
    let chunks = ["streamed ", "body"].map(|chunk| Ok::<_, std::io::Error>(Bytes::from(chunk)));
    Body::wrap_stream_replayable(futures_util::stream::iter(chunks), cap)
}

#[tokio::test]
async fn auth_int_only_with_a_streaming_body_is_a_typed_error() {
    let server = DigestServer::start(Policy {
        qop: Some("auth-int"),
        ..Policy::default()
    })
    .await;
    let err = client(credentials())
        .post(server.url("/upload"))
        .body(replayable_stream(1024))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_middleware(), "{err:?}");
    let source = std::error::Error::source(&err).and_then(|s| s.downcast_ref::<DigestError>());
    assert!(
        matches!(source, Some(DigestError::AuthIntNeedsBufferedBody)),
        "{err:?}"
    );
    assert_eq!(server.hits().len(), 1);
}

#[tokio::test]
async fn streaming_body_uses_auth_when_both_are_offered() {
    let server = DigestServer::start(Policy {
        qop: Some("auth-int, auth"),
        ..Policy::default()
    })
    .await;
    let response = client(credentials())
        .post(server.url("/upload"))
        .body(replayable_stream(1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{:?}", verdicts(&server));
    assert_eq!(server.answered("qop"), ["auth"]);
}

#[tokio::test]
async fn one_shot_stream_cannot_be_sent_again_for_a_challenge() {
    let server = DigestServer::start(Policy::default()).await;
    let err = client(credentials())
        .post(server.url("/upload"))
        .body(replayable_stream(0))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_body_not_replayable(), "{err:?}");
}

#[tokio::test]
async fn domain_limits_the_preemptive_answers() {
    let server = DigestServer::start(Policy {
        domain: Some("/api /admin/".to_owned()),
        ..Policy::default()
    })
    .await;
    let client = client(credentials());
    for path in ["/api", "/api/v1", "/admin/panel", "/apiv2", "/other"] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let sent: Vec<(String, bool)> = server
        .hits()
        .iter()
        .map(|hit| (hit.target.clone(), hit.authorization.is_some()))
        .collect();
    let expected = [
        ("/api", false),
        ("/api", true),
        ("/api/v1", true),
        ("/admin/panel", true),
        ("/apiv2", false),
        ("/apiv2", true),
        ("/other", false),
        ("/other", true),
    ]
    .map(|(target, answered)| (target.to_owned(), answered));
    assert_eq!(sent, expected);
}

/// A client nonce is drawn for an answer the middleware sends, never for a request outside
/// every protection space it knows (which goes out bare and is answered after its 401).
#[tokio::test]
async fn no_client_nonce_is_drawn_for_a_request_outside_every_known_space() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let server = DigestServer::start(Policy {
        domain: Some("/api".to_owned()),
        ..Policy::default()
    })
    .await;
    let drawn = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&drawn);
    let digest = credentials()
        .cnonce_source(move || format!("cnonce{}", counter.fetch_add(1, Ordering::SeqCst)));
    let client = client(digest);
    client.get(server.url("/api")).send().await.unwrap();
    assert_eq!(drawn.load(Ordering::SeqCst), 1);
    client.get(server.url("/other")).send().await.unwrap();
    assert_eq!(drawn.load(Ordering::SeqCst), 2);
    let answered: Vec<bool> = server
        .hits()
        .iter()
        .map(|hit| hit.authorization.is_some())
        .collect();
    assert_eq!(answered, [false, true, false, true]);
}

#[tokio::test]
async fn empty_domain_covers_the_whole_origin() {
    let server = DigestServer::start(Policy {
        domain: Some(String::new()),
        ..Policy::default()
    })
    .await;
    let client = client(credentials());
    client.get(server.url("/a")).send().await.unwrap();
    client.get(server.url("/b")).send().await.unwrap();
    assert_eq!(server.challenges(), 1);
}

#[tokio::test]
async fn next_nonce_from_authentication_info_is_used() {
    let server = DigestServer::start(Policy {
        next_nonce: true,
        ..Policy::default()
    })
    .await;
    let client = client(credentials());
    for _ in 0..3 {
        let response = client.get(server.url("/")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{:?}", verdicts(&server));
    }
    assert_eq!(server.challenges(), 1);
    let nonces = server.answered("nonce");
    assert_eq!(nonces.len(), 3);
    assert_ne!(nonces[0], nonces[1]);
    assert_ne!(nonces[1], nonces[2]);
    assert_eq!(server.answered("nc"), ["00000001", "00000001", "00000001"]);
}

#[tokio::test]
async fn proxy_challenge_is_answered_with_proxy_authorization() {
    let proxy = DigestServer::start(Policy {
        proxy: true,
        algorithm: Some("SHA-256"),
        ..Policy::default()
    })
    .await;
    let client = client(DigestAuth::proxy(USER, PASSWORD));
    for _ in 0..2 {
        let response = client
            .get(proxy.url("/via/proxy?x=1"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{:?}", verdicts(&proxy));
    }
    assert_eq!(proxy.challenges(), 1);
    assert_eq!(
        proxy.answered("uri")[0],
        format!("http://{}/via/proxy?x=1", proxy.addr)
    );
    assert_eq!(verdicts(&proxy), ["missing", "accepted", "accepted"]);
}

#[tokio::test]
async fn origin_credentials_ignore_a_407() {
    let proxy = DigestServer::start(Policy {
        proxy: true,
        ..Policy::default()
    })
    .await;
    let response = client(credentials())
        .get(proxy.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PROXY_AUTHENTICATION_REQUIRED);
    assert_eq!(proxy.hits().len(), 1);
}

#[tokio::test]
async fn a_request_with_its_own_authorization_is_left_alone() {
    let server = DigestServer::start(Policy::default()).await;
    let response = client(credentials())
        .get(server.url("/"))
        .header("authorization", "Bearer caller-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(server.hits().len(), 1);
    assert_eq!(
        server.hits()[0].authorization.as_deref(),
        Some("Bearer caller-token")
    );
}

#[tokio::test]
async fn concurrent_requests_all_authenticate() {
    let server = DigestServer::start(Policy::default()).await;
    let client = client(credentials());
    client.get(server.url("/")).send().await.unwrap();
    let requests = (0..16).map(|i| client.get(server.url(&format!("/item/{i}"))).send());
    let responses = futures_util::future::join_all(requests).await;
    for response in responses {
        assert_eq!(response.unwrap().status(), StatusCode::OK);
    }
}

fn digest_error(err: &stopover::client::Error) -> Option<&DigestError> {
    std::error::Error::source(err).and_then(|source| source.downcast_ref::<DigestError>())
}

#[tokio::test]
async fn verified_rspauth_lets_the_response_through() {
    for (algorithm, qop) in [
        (None, None),
        (Some("MD5"), Some("auth")),
        (Some("MD5-sess"), Some("auth")),
        (Some("SHA-256"), Some("auth-int")),
        (Some("SHA-512-256-sess"), Some("auth-int")),
    ] {
        let server = DigestServer::start(Policy {
            algorithm,
            qop,
            rspauth: Rspauth::Correct,
            ..Policy::default()
        })
        .await;
        let client = client(credentials().verify_server(true));
        for path in ["/challenged", "/preemptive"] {
            let response = client
                .post(server.url(path))
                .body("a body to protect")
                .send()
                .await
                .unwrap_or_else(|err| panic!("{algorithm:?} {qop:?} {path}: {err:?}"));
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.text().await.unwrap(), RESPONSE_BODY);
        }
        assert_eq!(server.challenges(), 1);
    }
}

#[tokio::test]
async fn forged_rspauth_fails_the_request() {
    let server = DigestServer::start(Policy {
        rspauth: Rspauth::Forged,
        ..Policy::default()
    })
    .await;
    let err = client(credentials().verify_server(true))
        .get(server.url("/"))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(digest_error(&err), Some(DigestError::RspauthMismatch)),
        "{err:?}"
    );
}

#[tokio::test]
async fn rspauth_echoing_another_cnonce_fails_the_request() {
    let server = DigestServer::start(Policy {
        rspauth: Rspauth::WrongCnonce,
        ..Policy::default()
    })
    .await;
    let err = client(credentials().verify_server(true))
        .get(server.url("/"))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(digest_error(&err), Some(DigestError::RspauthMismatch)),
        "{err:?}"
    );
}

#[tokio::test]
async fn missing_rspauth_fails_the_request_when_verifying() {
    let server = DigestServer::start(Policy::default()).await;
    let err = client(credentials().verify_server(true))
        .get(server.url("/"))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(digest_error(&err), Some(DigestError::MissingRspauth)),
        "{err:?}"
    );
}

#[tokio::test]
async fn forged_rspauth_passes_when_not_verifying() {
    let server = DigestServer::start(Policy {
        rspauth: Rspauth::Forged,
        ..Policy::default()
    })
    .await;
    let response = client(credentials())
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn next_nonce_from_an_unverified_response_is_not_adopted() {
    let server = DigestServer::start(Policy {
        rspauth: Rspauth::Forged,
        next_nonce: true,
        ..Policy::default()
    })
    .await;
    let client = client(credentials().verify_server(true));
    client.get(server.url("/")).send().await.unwrap_err();
    client.get(server.url("/")).send().await.unwrap_err();
    // The second request reused the first nonce, not the forged nextnonce.
    let nonces: HashSet<String> = server.answered("nonce").into_iter().collect();
    assert_eq!(nonces.len(), 1, "{:?}", verdicts(&server));
}

#[tokio::test]
async fn a_response_to_an_unanswered_request_is_not_verified() {
    let server = DigestServer::start(Policy::default()).await;
    let response = client(credentials().verify_server(true))
        .get(server.url("/public/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_proxy_407_after_an_answer_is_returned_not_verified() {
    // Challenges bare requests like an origin, and refuses answered ones the
    // way a proxy in front of it would.
    async fn origin_behind_proxy(headers: HeaderMap) -> AxumResponse {
        if headers.contains_key(header::AUTHORIZATION) {
            let challenge = [(header::PROXY_AUTHENTICATE, r#"Basic realm="proxy""#)];
            (StatusCode::PROXY_AUTHENTICATION_REQUIRED, challenge).into_response()
        } else {
            let challenge = [(
                header::WWW_AUTHENTICATE,
                r#"Digest realm="r", nonce="n", qop=auth"#,
            )];
            (StatusCode::UNAUTHORIZED, challenge).into_response()
        }
    }
    let addr = crate::support::serve(Router::new().fallback(origin_behind_proxy)).await;
    let response = client(credentials().verify_server(true))
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PROXY_AUTHENTICATION_REQUIRED);
}

#[tokio::test]
async fn a_redirect_back_from_another_origin_carries_no_authorization() {
    let victim = DigestServer::start(Policy::default()).await;
    let other = DigestServer::start(Policy::default()).await;
    victim.redirect("/go", &other.url("/public/bounce"));
    other.redirect("/public/bounce", &victim.url("/admin/delete"));
    let response = client(credentials())
        .get(victim.url("/go"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(failure(&response), Some(DigestFailure::CrossOrigin));
    let hits = victim.hits();
    assert_eq!(verdicts(&victim), ["missing", "accepted", "missing"]);
    assert_eq!(hits[2].target, "/admin/delete");
    assert_eq!(hits[2].authorization, None);
}

#[tokio::test]
async fn concurrent_answers_never_repeat_a_nonce_count() {
    let server = DigestServer::start(Policy::default()).await;
    let client = client(credentials());
    client.get(server.url("/")).send().await.unwrap();
    let requests = (0..32).map(|i| client.get(server.url(&format!("/item/{i}"))).send());
    for response in futures_util::future::join_all(requests).await {
        response.unwrap();
    }
    let pairs: Vec<(String, String)> = server
        .hits()
        .iter()
        .filter_map(|hit| hit.authorization.as_deref())
        .filter_map(parse_authorization)
        .map(|params| (params["nonce"].clone(), params["nc"].clone()))
        .collect();
    let unique: HashSet<&(String, String)> = pairs.iter().collect();
    assert_eq!(unique.len(), pairs.len(), "{pairs:?}");
}

// ---------------------------------------------------------------------------
// A server that checks nonce counts the way Apache's AuthDigestNcCheck does
// ---------------------------------------------------------------------------

/// What the strict server keeps: the nonces it issued under its one `opaque`,
/// and the highest nonce count it accepted for that `opaque`, across nonces.
#[derive(Default)]
struct StrictState {
    issued: Vec<String>,
    highest_count: u32,
    hits: usize,
    rejected_counts: usize,
}

const STRICT_OPAQUE: &str = "strict-opaque";

impl StrictState {
    fn challenge(&mut self) -> AxumResponse {
        let nonce = format!("strict-{}", self.issued.len());
        self.issued.push(nonce.clone());
        let value = format!(
            r#"Digest realm="{REALM}", nonce="{nonce}", opaque="{STRICT_OPAQUE}", qop="auth", algorithm=MD5"#
        );
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, value)],
        )
            .into_response()
    }
}

/// Refuses any count not above the highest seen for the `opaque`, and any
/// answer computed from another password, with a new nonce and the same
/// `opaque` (no `stale`, as Apache does). Each request waits a moment first,
/// so that requests sent in count order are judged out of order.
async fn strict_serve(
    State(state): State<Arc<Mutex<StrictState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> AxumResponse {
    let jitter = {
        let mut state = state.lock().unwrap();
        state.hits += 1;
        (state.hits * 7919) % 5
    };
    tokio::time::sleep(Duration::from_millis(jitter as u64)).await;
    let mut state = state.lock().unwrap();
    let params = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_authorization);
    let Some(params) = params else {
        return state.challenge();
    };
    let field = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let nonce = field("nonce");
    let ha1 = hash("MD5", format!("{USER}:{REALM}:{PASSWORD}").as_bytes());
    let ha2 = hash("MD5", format!("{method}:{}", field("uri")).as_bytes());
    let expected = hash(
        "MD5",
        format!(
            "{ha1}:{nonce}:{}:{}:auth:{ha2}",
            field("nc"),
            field("cnonce")
        )
        .as_bytes(),
    );
    let uri_matches = uri
        .path_and_query()
        .is_some_and(|target| target.as_str() == field("uri"));
    if !state.issued.iter().any(|issued| issued == nonce)
        || field("opaque") != STRICT_OPAQUE
        || !uri_matches
        || field("response") != expected
    {
        return state.challenge();
    }
    let Ok(count) = u32::from_str_radix(field("nc"), 16) else {
        return state.challenge();
    };
    if count <= state.highest_count {
        state.rejected_counts += 1;
        return state.challenge();
    }
    state.highest_count = count;
    (StatusCode::OK, "ok").into_response()
}

async fn strict_server() -> (SocketAddr, Arc<Mutex<StrictState>>) {
    let state = Arc::new(Mutex::new(StrictState::default()));
    let app = Router::new()
        .fallback(strict_serve)
        .with_state(Arc::clone(&state));
    let addr = crate::support::serve(app).await;
    (addr, state)
}

#[tokio::test]
async fn concurrent_requests_pass_a_server_that_checks_counts_across_nonces() {
    let (addr, state) = strict_server().await;
    let client = client(credentials());
    let warm_up = client.get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(warm_up.status(), StatusCode::OK);
    let requests = (0..20).map(|i| client.get(format!("http://{addr}/item/{i}")).send());
    for response in futures_util::future::join_all(requests).await {
        let response = response.unwrap();
        assert_eq!(failure(&response), None);
        assert_eq!(response.status(), StatusCode::OK);
    }
    let state = state.lock().unwrap();
    // 2 for the warm-up, at most 1 + 1 + 4 per concurrent request (preemptive, the
    // answer to the re-challenge, and the bounded re-answers).
    assert!(state.hits <= 2 + 20 * 6, "{} requests", state.hits);
}

#[tokio::test]
async fn a_wrong_password_fails_after_two_requests_against_the_strict_server() {
    let (addr, state) = strict_server().await;
    let client = client(DigestAuth::new(USER, "Hakuna Matata"));
    for _ in 0..2 {
        let response = client.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(failure(&response), Some(DigestFailure::CredentialsRejected));
    }
    assert_eq!(state.lock().unwrap().hits, 4);
}
