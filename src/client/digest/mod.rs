//! HTTP Digest authentication (RFC 7616) as a client middleware: answers a
//! server's `401` Digest challenge, or a proxy's `407`, and then answers
//! preemptively inside the protection space it learnt.
//!
//! Unlike a hand-set `Authorization` header, or a Digest helper that trusts the
//! first challenge it sees, [`DigestAuth`] reads every challenge header and
//! picks the strongest algorithm it supports (MD5, SHA-256 and SHA-512-256 with
//! their `-sess` variants, plus the SHA-512 and SHA(-1) that servers in the
//! field send), answers with the request target exactly as it goes on the
//! wire, hashes the body for `auth-int`, and never offers the credentials to an
//! origin the request was redirected to. A challenge it cannot answer is not
//! an error: the `401` comes back with a [`DigestFailure`] in its extensions,
//! and later requests are unaffected.
//!
//! # Which origins get an answer
//!
//! A Digest answer is an offline-guessable hash of the password, so it goes
//! only to the origins the credentials are for: the ones given to
//! [`origins`](DigestAuth::origins), or, when none are given, the origin of
//! the first request it answers (scheme, host and port; later challenges from
//! any other origin come back with [`DigestFailure::UnlistedOrigin`]). A
//! client that talks to two Digest servers lists both, or has one
//! `DigestAuth` per origin in per-request middleware lists. Inside an origin,
//! a challenge's `domain` still limits where answers go ahead of a challenge.
//!
//! ```no_run
//! use stopover::client::Client;
//! use stopover::client::digest::{DigestAuth, DigestFailure};
//!
//! # async fn run() -> Result<(), stopover::client::Error> {
//! let client = Client::builder()
//!     .middleware(DigestAuth::new("Mufasa", "Circle of Life"))
//!     .build()?;
//!
//! let response = client.get("http://camera.local/axis-cgi/param.cgi?action=list").send().await?;
//! if let Some(failure) = response.extensions().get::<DigestFailure>() {
//!     eprintln!("not authenticated: {failure}");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Other configurations:
//!
//! ```
//! use stopover::client::digest::DigestAuth;
//!
//! // Answer only after a 401, never ahead of it:
//! let cautious = DigestAuth::new("Mufasa", "Circle of Life").preemptive(false);
//! // Credentials for a forward proxy (407 + Proxy-Authenticate):
//! let proxy = DigestAuth::proxy("proxy-user", "proxy-password");
//! # let _ = (cautious, proxy);
//! ```
//!
//! # How a request goes
//!
//! 1. A request that already carries `Authorization` (`Proxy-Authorization`
//!    for a proxy) is left alone: the caller authenticates it. So is a
//!    request to an origin the credentials are not for (see above); its
//!    Digest `401` comes back with [`DigestFailure::UnlistedOrigin`].
//! 2. On a redirect hop to an origin other than the one the caller asked for,
//!    or back to it after a hop elsewhere (the other origin chose where the
//!    request goes), nothing is answered: a `401` comes back with
//!    [`DigestFailure::CrossOrigin`].
//! 3. Inside a known protection space the request is answered preemptively
//!    with the stored nonce and the next nonce count.
//! 4. A `401` with an answerable Digest challenge is answered once, on a copy
//!    of the request ([`Request::try_clone`]: a body that cannot be sent again
//!    is an [`ErrorKind::BodyNotReplayable`](super::ErrorKind::BodyNotReplayable) error). If that
//!    answer is refused with `stale=true` it is redone once with the new
//!    nonce. Any other refusal is returned with
//!    [`DigestFailure::CredentialsRejected`], unless these credentials were
//!    accepted in this protection space before: then the refusal is taken for
//!    a nonce count that concurrent requests overtook (see below) and
//!    answered again with the new challenge, up to four times. A wrong
//!    password thus fails after two requests (one for the challenge, one
//!    answer); a request in a confirmed space makes at most seven, and a
//!    space whose credentials then fail that often is no longer confirmed.
//! 5. With [`verify_server`](DigestAuth::verify_server) on, the response to
//!    an answered request must carry the server's `rspauth`, or the request
//!    fails.
//! 6. A success carrying `Authentication-Info: nextnonce=...` moves the space
//!    to the next nonce.
//!
//! A challenge that cannot be answered changes no stored state, so later
//! requests are unaffected. The state lock is never held across an `.await`.
//!
//! # Choices where the RFCs leave room
//!
//! - Several challenges: the strongest hash wins (SHA-512-256, SHA-256,
//!   SHA-512, SHA-1, MD5, each plain variant just ahead of its `-sess`
//!   sibling); ties go to a challenge with `qop`, then to the server's order.
//! - `algorithm=SHA` is SHA-1, as every interoperating client reads it.
//! - `qop`: `auth-int` when offered and the body is in memory, else `auth`;
//!   a server offering only `auth-int` for a streaming body gets
//!   [`DigestError::AuthIntNeedsBufferedBody`].
//! - A user name that is not printable ASCII is sent as RFC 8187
//!   `username*=UTF-8''...`; with `userhash=true` the name is hashed instead.
//! - `-sess` algorithms keep one client nonce per server nonce, so the session
//!   key is the same whether a server hashes it once or per request.
//! - Concurrent requests share a nonce and take nonce counts in the order they
//!   are prepared, but reach the server over several connections in any
//!   order. A server that insists on strictly increasing counts on the wire
//!   (Apache's `AuthDigestNcCheck On`) refuses one that was overtaken, and
//!   re-challenges with a new nonce and the same `opaque`, keeping one count
//!   per `opaque` across its nonces. So the count of a new nonce with the same
//!   `opaque` and no `stale=true` goes on from the highest count sent under
//!   that `opaque` instead of starting at 1 (a server counting per nonce
//!   accepts any count above the last), and the refused request is answered
//!   again as described above. A `stale=true` nonce starts at 1.
//! - `rspauth` in `Authentication-Info` (the server proving it knows the
//!   password too, RFC 7616 section 3.5) is checked only when asked for with
//!   [`DigestAuth::verify_server`]: many servers never send it, and RFC 7616
//!   leaves the check to the client.

mod algorithm;
mod answer;
mod challenge;
mod space;

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use http::header::{
    AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION,
    WWW_AUTHENTICATE,
};
use http::{Method, StatusCode};
use url::Url;

use super::origin::crosses_origin;
use super::{Error, Middleware, Next, Origin, Request, Response, Result};

use self::answer::Credentials;
use self::challenge::DigestChallenge;
use self::space::{Lease, Spaces};

/// Why a Digest challenge was not answered.
///
/// The middleware returns the `401` (or `407`) to the caller with this value in
/// the response's extensions:
///
/// ```
/// # use stopover::client::digest::DigestFailure;
/// # fn check(extensions: &http::Extensions) {
/// if let Some(failure) = extensions.get::<DigestFailure>() {
///     eprintln!("digest authentication failed: {failure}");
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestFailure {
    /// No challenge header offered the Digest scheme.
    #[error("the response has no Digest challenge")]
    NoDigestChallenge,
    /// The challenge header could not be parsed.
    #[error("the Digest challenge header is malformed")]
    MalformedChallenge,
    /// The challenge has no `realm`.
    #[error("the Digest challenge has no realm")]
    MissingRealm,
    /// The challenge has no `nonce`.
    #[error("the Digest challenge has no nonce")]
    MissingNonce,
    /// The challenge's `nonce` is empty.
    #[error("the Digest challenge has an empty nonce")]
    EmptyNonce,
    /// The challenge names an algorithm this middleware does not implement.
    #[error("unsupported Digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The challenge's `qop` offers neither `auth` nor `auth-int`.
    #[error("unsupported Digest qop {0:?}")]
    UnsupportedQop(String),
    /// A `-sess` algorithm without `qop`: the session key needs a client
    /// nonce, which an answer without `qop` cannot carry.
    #[error("Digest algorithm {0:?} needs a qop")]
    SessionWithoutQop(String),
    /// The server challenged again an answer made with a fresh nonce.
    #[error("the server rejected the Digest credentials")]
    CredentialsRejected,
    /// The challenge came from an origin the request was redirected to (or
    /// from the original origin after a redirect through another one); the
    /// credentials are only sent to the origin the request was made to, on
    /// hops that never left it.
    #[error("Digest challenge from a cross-origin redirect target not answered")]
    CrossOrigin,
    /// The challenge came from an origin the credentials are not for: not one
    /// of [`DigestAuth::origins`], or, without that list, not the origin of
    /// the first request the middleware answered.
    #[error("Digest challenge from an origin the credentials are not for not answered")]
    UnlistedOrigin,
    /// The server kept one nonce for 2^32 - 1 requests; the count cannot go on.
    #[error("the Digest nonce count is exhausted")]
    NonceCountExhausted,
    /// The challenge names this parameter more than once, which RFC 7616
    /// forbids; which of the values the server meant is unknowable.
    #[error("the Digest challenge repeats the parameter {0:?}")]
    DuplicateParameter(String),
}

/// An error that stops a request the middleware could otherwise answer.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The server only offers `qop=auth-int`, which hashes the body, and the
    /// request body is a stream that is not in memory.
    #[error("the server requires qop=auth-int, which needs a buffered request body")]
    AuthIntNeedsBufferedBody,
    /// The operating system's random source failed while making a client
    /// nonce.
    #[error("cannot generate a Digest client nonce")]
    Random(#[source] RandomSourceError),
    /// The configured client-nonce source returned something that is not a
    /// non-empty run of printable ASCII without `"` or `\`.
    #[error("the client nonce {0:?} is not printable ASCII")]
    InvalidCnonce(String),
    /// [`DigestAuth::verify_server`] is on and the response to an answered
    /// request has no `rspauth` in its `Authentication-Info`
    /// (`Proxy-Authentication-Info`) header.
    #[error("the response carries no rspauth proving the server knows the password")]
    MissingRspauth,
    /// [`DigestAuth::verify_server`] is on and the response's
    /// `Authentication-Info` cannot be read: not a parameter list, or a
    /// parameter given twice.
    #[error("the response's Authentication-Info header is malformed")]
    MalformedAuthenticationInfo,
    /// [`DigestAuth::verify_server`] is on and the response's `rspauth` (or
    /// the `qop`, `nc` or `cnonce` it echoes) does not match the answer that
    /// was sent: the response did not come from a server that knows the
    /// password.
    #[error(
        "the response's rspauth does not match: the server did not prove it knows the password"
    )]
    RspauthMismatch,
}

/// The operating system's random source failed; the cause of
/// [`DigestError::Random`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RandomSourceError(getrandom::Error);

/// Who is being answered: an origin server or a forward proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Origin,
    Proxy,
}

type CnonceSource = Arc<dyn Fn() -> String + Send + Sync>;

/// How many times one request answers again a refusal of a fresh answer in a
/// space where the credentials were accepted before (a nonce count overtaken
/// by concurrent requests); see the module docs.
const MAX_OVERTAKEN_RETRIES: u32 = 4;

/// Digest authentication middleware; see the [module docs](self).
///
/// Cloning is cheap and the clones share the learnt protection spaces and
/// nonce counts.
#[derive(Clone)]
pub struct DigestAuth {
    credentials: Arc<Credentials>,
    target: Target,
    preemptive: bool,
    verify_server: bool,
    cnonce_source: Option<CnonceSource>,
    spaces: Arc<Mutex<Spaces>>,
    /// The origins answered; `None`: the one in `first_origin`.
    origins: Option<Arc<[Origin]>>,
    /// The origin of the first request answered, shared by the clones.
    first_origin: Arc<OnceLock<Origin>>,
    /// Taken by a re-answer after an overtaken count, so that re-answers go
    /// out one at a time and cannot overtake each other.
    reanswer: Arc<tokio::sync::Mutex<()>>,
}

impl fmt::Debug for DigestAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestAuth")
            .field("username", &self.credentials.username)
            .field("password", &"<redacted>")
            .field("proxy", &(self.target == Target::Proxy))
            .field("preemptive", &self.preemptive)
            .field("verify_server", &self.verify_server)
            .field("origins", &self.origins)
            .finish_non_exhaustive()
    }
}

/// An `Authorization` (or `Proxy-Authorization`) value ready to send, and
/// what it was computed from.
#[derive(Debug)]
struct Answered {
    header: HeaderValue,
    proof: Proof,
}

/// What an answer was computed from, kept to check the server's `rspauth`.
#[derive(Debug)]
struct Proof {
    challenge: DigestChallenge,
    uri: String,
    qop: Option<answer::Qop>,
    nonce_count: u32,
    cnonce: String,
}

/// Why a challenge that was read could not be answered.
#[derive(Debug)]
enum Unanswered {
    /// Returned with the response: the challenge is at fault.
    Failure(DigestFailure),
    /// Returned as an error: the request cannot be authenticated.
    Error(DigestError),
}

impl DigestAuth {
    /// Answers origin servers' `401` challenges with `username` and `password`.
    ///
    /// Preemptive answers are on (see [`preemptive`](Self::preemptive)).
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self::with_target(username.into(), password.into(), Target::Origin)
    }

    /// Answers a forward proxy's `407` challenges (`Proxy-Authenticate`) with
    /// `Proxy-Authorization`.
    ///
    /// The proxy is one protection space for every target, and the answer's
    /// `uri` is the absolute form a proxy receives. Because the proxy is the
    /// same on every redirect hop, a `407` is answered on every hop, unlike an
    /// origin's `401`. Only plain `http://` requests reach a middleware through
    /// a proxy (reqwest takes the proxy from `HTTP_PROXY` and friends);
    /// `https://` goes through a `CONNECT` tunnel that the transport opens.
    pub fn proxy(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self::with_target(username.into(), password.into(), Target::Proxy)
    }

    fn with_target(username: String, password: String, target: Target) -> Self {
        DigestAuth {
            credentials: Arc::new(Credentials { username, password }),
            target,
            preemptive: true,
            verify_server: false,
            cnonce_source: None,
            spaces: Arc::new(Mutex::new(Spaces::new(target == Target::Origin))),
            origins: None,
            first_origin: Arc::new(OnceLock::new()),
            reanswer: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Answers challenges only from these origins.
    ///
    /// Default: only the origin of the first request this middleware (or a
    /// clone of it) answers; a challenge from any other origin is returned
    /// with [`DigestFailure::UnlistedOrigin`]. Redirects stay stricter than
    /// the list: a hop to another origin, or back after one, is never
    /// answered. A proxy's credentials ([`DigestAuth::proxy`]) go to the one
    /// proxy whatever the target, so the list does not apply to them.
    ///
    /// ```
    /// use stopover::client::Origin;
    /// use stopover::client::digest::DigestAuth;
    ///
    /// let auth = DigestAuth::new("Mufasa", "Circle of Life").origins([
    ///     Origin::parse("https://camera-1.example")?,
    ///     Origin::parse("https://camera-2.example:8443")?,
    /// ]);
    /// # let _ = auth;
    /// # Ok::<(), stopover::client::InvalidOrigin>(())
    /// ```
    pub fn origins(mut self, origins: impl IntoIterator<Item = Origin>) -> Self {
        self.origins = Some(origins.into_iter().collect());
        self
    }

    /// Whether the credentials are for the origin of `url`: listed, or the
    /// first origin answered (any, while none has been).
    fn answers_origin(&self, url: &Url) -> bool {
        if self.target == Target::Proxy {
            return true;
        }
        match (&self.origins, self.first_origin.get()) {
            (Some(origins), _) => origins.iter().any(|origin| origin.contains(url)),
            (None, Some(first)) => first.contains(url),
            (None, None) => true,
        }
    }

    /// Ties the default scope to the origin of `url` when it is the first one
    /// answered; false if a concurrent first answer bound another origin.
    fn bind_origin(&self, url: &Url) -> bool {
        if self.target == Target::Proxy || self.origins.is_some() {
            return true;
        }
        if let Some(first) = self.first_origin.get() {
            return first.contains(url);
        }
        // Only http and https URLs reach a middleware, and both have an origin.
        let Some(origin) = Origin::of(url) else {
            return false;
        };
        self.first_origin.get_or_init(|| origin).contains(url)
    }

    /// Whether a request inside a known protection space is answered before
    /// the server asks, reusing the last nonce with the next nonce count.
    ///
    /// Default: `true`, which saves a round trip per request. With `false`
    /// every request is sent bare first and answered after its `401`.
    pub fn preemptive(mut self, preemptive: bool) -> Self {
        self.preemptive = preemptive;
        self
    }

    /// Whether a response to an answered request must prove that the server
    /// knows the password too (mutual authentication, RFC 7616 section 3.5).
    ///
    /// Default: `false`, because many servers never send the proof. With
    /// `true`, every response to a request this middleware answered, other
    /// than a new challenge, must carry `Authentication-Info`
    /// (`Proxy-Authentication-Info` for a proxy) with an `rspauth` computed
    /// from the password, the nonce, the client nonce, the nonce count and the
    /// `uri` that were sent (and, for `qop=auth-int`, the response body, which
    /// is then read into memory). When it is missing or wrong the response is
    /// dropped unread and the request fails with
    /// [`DigestError::MissingRspauth`], [`DigestError::RspauthMismatch`] or
    /// [`DigestError::MalformedAuthenticationInfo`]; a `nextnonce` in it is
    /// not adopted. A response to a request that carried no answer (the
    /// server never asked) is returned as it is: there is nothing to verify.
    ///
    /// ```
    /// use stopover::client::digest::DigestAuth;
    ///
    /// let mutual = DigestAuth::new("Mufasa", "Circle of Life").verify_server(true);
    /// # let _ = mutual;
    /// ```
    pub fn verify_server(mut self, verify: bool) -> Self {
        self.verify_server = verify;
        self
    }

    /// Replaces the random client nonce with `source`, for tests that compare
    /// answers with fixed vectors.
    ///
    /// Default: 16 bytes from the operating system's random source, as hex.
    /// `source` must return printable ASCII without `"` or `\`; anything else
    /// fails the request with [`DigestError::InvalidCnonce`].
    pub fn cnonce_source(mut self, source: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.cnonce_source = Some(Arc::new(source));
        self
    }

    fn challenge_status(&self) -> StatusCode {
        match self.target {
            Target::Origin => StatusCode::UNAUTHORIZED,
            Target::Proxy => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        }
    }

    fn challenge_header(&self) -> HeaderName {
        match self.target {
            Target::Origin => WWW_AUTHENTICATE,
            Target::Proxy => PROXY_AUTHENTICATE,
        }
    }

    fn answer_header(&self) -> HeaderName {
        match self.target {
            Target::Origin => AUTHORIZATION,
            Target::Proxy => PROXY_AUTHORIZATION,
        }
    }

    fn info_header(&self) -> HeaderName {
        match self.target {
            Target::Origin => HeaderName::from_static("authentication-info"),
            Target::Proxy => HeaderName::from_static("proxy-authentication-info"),
        }
    }

    fn new_cnonce(&self) -> Result<String, DigestError> {
        match &self.cnonce_source {
            Some(source) => {
                let cnonce = source();
                let printable = !cnonce.is_empty()
                    && cnonce
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
                if printable {
                    Ok(cnonce)
                } else {
                    Err(DigestError::InvalidCnonce(cnonce))
                }
            }
            None => {
                let mut bytes = [0u8; 16];
                getrandom::fill(&mut bytes)
                    .map_err(|err| DigestError::Random(RandomSourceError(err)))?;
                Ok(algorithm::to_hex(&bytes))
            }
        }
    }

    fn spaces(&self) -> std::sync::MutexGuard<'_, Spaces> {
        // The state stays consistent even if a holder panicked: every
        // critical section is a handful of field updates.
        self.spaces.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the strongest answerable challenge of a `401`/`407`.
    fn read_challenge(&self, headers: &HeaderMap) -> Result<DigestChallenge, DigestFailure> {
        challenge::select(
            headers
                .get_all(self.challenge_header())
                .iter()
                .map(HeaderValue::as_bytes),
        )
    }

    /// The preemptive answer for a request, if `url` is in a known space and
    /// the learnt challenge can be answered for this body.
    fn preemptive_answer(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&[u8]>,
    ) -> Result<Option<Answered>, DigestError> {
        if !self.preemptive {
            return Ok(None);
        }
        if !self.spaces().covers(url) {
            return Ok(None);
        }
        let cnonce = self.new_cnonce()?;
        let Some(lease) = self.spaces().lease(url, cnonce) else {
            return Ok(None);
        };
        match self.write(lease, method, url, body) {
            Ok(answered) => Ok(Some(answered)),
            // Not answerable ahead of time (say auth-int for a stream): let
            // the server challenge, and decide then.
            Err(_) => Ok(None),
        }
    }

    /// Learns `challenge`, received for `url`, and answers it.
    fn answer_challenge(
        &self,
        challenge: DigestChallenge,
        method: &Method,
        url: &Url,
        body: Option<&[u8]>,
    ) -> Result<Answered, Unanswered> {
        let cnonce = self.new_cnonce().map_err(Unanswered::Error)?;
        let lease = self
            .spaces()
            .store(url, challenge, cnonce)
            .ok_or(Unanswered::Failure(DigestFailure::NonceCountExhausted))?;
        self.write(lease, method, url, body)
    }

    /// Adopts `nextnonce` from a success response's `Authentication-Info`.
    fn adopt_next_nonce(&self, headers: &HeaderMap, url: &Url, used_nonce: &str) {
        for value in headers.get_all(self.info_header()) {
            let Ok(text) = value.to_str() else { continue };
            let Ok(params) = challenge::parse_params(text) else {
                continue;
            };
            if let Some(next) = challenge::find_param(&params, "nextnonce") {
                self.spaces().next_nonce(url, used_nonce, next);
            }
        }
    }

    fn write(
        &self,
        lease: Lease,
        method: &Method,
        url: &Url,
        body: Option<&[u8]>,
    ) -> Result<Answered, Unanswered> {
        let qop = answer::choose_qop(lease.challenge.qop, body).map_err(Unanswered::Error)?;
        let uri = answer::request_target(url, self.target == Target::Proxy);
        let request = answer::Request {
            method: method.as_str(),
            uri: &uri,
            qop,
            body: body.unwrap_or_default(),
            nonce_count: lease.nonce_count,
            cnonce: &lease.cnonce,
        };
        let answer = answer::answer(&self.credentials, &lease.challenge, &request);
        let proof = Proof {
            uri: uri.clone(),
            qop,
            nonce_count: lease.nonce_count,
            cnonce: lease.cnonce,
            challenge: lease.challenge,
        };
        // The user name is percent-encoded unless printable, the cnonce is
        // checked, the uri is percent-encoded by `url`: only bytes echoed
        // from the challenge could fail here.
        let mut header = HeaderValue::try_from(answer.header)
            .map_err(|_| Unanswered::Failure(DigestFailure::MalformedChallenge))?;
        header.set_sensitive(true);
        Ok(Answered { header, proof })
    }

    /// Checks the `rspauth` of `response`, the answer to a request sent with
    /// the answer described by `proof`.
    async fn check_server(&self, response: &mut Response, proof: &Proof) -> Result<()> {
        let failed =
            |response: &Response, err| Error::middleware(err).with_url(response.url().clone());
        let mut joined = String::new();
        for value in response.headers().get_all(self.info_header()) {
            let Ok(text) = value.to_str() else {
                return Err(failed(response, DigestError::MalformedAuthenticationInfo));
            };
            if !joined.is_empty() {
                joined.push_str(", ");
            }
            joined.push_str(text);
        }
        let params = match challenge::parse_params(&joined) {
            Ok(params) if !challenge::has_duplicates(&params) => params,
            _ => return Err(failed(response, DigestError::MalformedAuthenticationInfo)),
        };
        let Some(rspauth) = challenge::find_param(&params, "rspauth") else {
            return Err(failed(response, DigestError::MissingRspauth));
        };
        // The echoes are optional, but when present they must be the ones sent.
        let qop = proof.qop.map(answer::Qop::as_str);
        // rspauth covers all three already; the echoes are read leniently
        // (case, leading zeros) and only have to name what was sent.
        let echoes_match = challenge::find_param(&params, "qop")
            .is_none_or(|echo| qop.is_some_and(|sent| echo.eq_ignore_ascii_case(sent)))
            && challenge::find_param(&params, "cnonce")
                .is_none_or(|echo| qop.is_some() && echo == proof.cnonce)
            && challenge::find_param(&params, "nc").is_none_or(|echo| {
                qop.is_some()
                    && echo.bytes().all(|b| b.is_ascii_hexdigit())
                    && u32::from_str_radix(echo, 16) == Ok(proof.nonce_count)
            });
        if !echoes_match {
            return Err(failed(response, DigestError::RspauthMismatch));
        }
        let rspauth = rspauth.to_owned();
        let body = if proof.qop == Some(answer::Qop::AuthInt) {
            response.buffer().await?
        } else {
            bytes::Bytes::new()
        };
        let request = answer::Request {
            method: "",
            uri: &proof.uri,
            qop: proof.qop,
            body: &[],
            nonce_count: proof.nonce_count,
            cnonce: &proof.cnonce,
        };
        let expected =
            answer::expected_rspauth(&self.credentials, &proof.challenge, &request, &body);
        if rspauth.eq_ignore_ascii_case(&expected) {
            Ok(())
        } else {
            Err(failed(response, DigestError::RspauthMismatch))
        }
    }
}

/// An answer sent on the current call: the nonce it used, and whether that
/// nonce came from a challenge in this call (`fresh`) or from the stored
/// space (a preemptive answer).
struct Sent {
    proof: Proof,
    fresh: bool,
}

impl Middleware for DigestAuth {
    async fn handle(&self, mut req: Request, next: Next) -> Result<Response> {
        let answer_header = self.answer_header();
        if req.headers().contains_key(&answer_header) {
            // The caller authenticates this request by itself.
            return next.run(req).await;
        }
        if self.target == Target::Origin
            && (req.left_origin || crosses_origin(req.original_url(), req.url()))
        {
            // A redirect led to another origin: the credentials were given
            // for the origin the caller asked for, not for this one, nor for
            // a request to it that another origin aimed.
            let mut response = next.run(req).await?;
            if response.status() == self.challenge_status()
                && self.read_challenge(response.headers()) != Err(DigestFailure::NoDigestChallenge)
            {
                response.extensions_mut().insert(DigestFailure::CrossOrigin);
            }
            return Ok(response);
        }
        if !self.answers_origin(req.url()) {
            let mut response = next.run(req).await?;
            if response.status() == self.challenge_status()
                && self.read_challenge(response.headers()) != Err(DigestFailure::NoDigestChallenge)
            {
                response
                    .extensions_mut()
                    .insert(DigestFailure::UnlistedOrigin);
            }
            return Ok(response);
        }

        let mut sent = None;
        let preemptive = self
            .preemptive_answer(req.method(), req.url(), req.body().as_bytes())
            .map_err(|err| Error::middleware(err).with_url(req.url().clone()))?;
        if let Some(answered) = preemptive {
            req.headers_mut().insert(&answer_header, answered.header);
            sent = Some(Sent {
                proof: answered.proof,
                fresh: false,
            });
        }

        let mut stale_retried = false;
        let mut overtaken_retries = 0;
        loop {
            let replay = req.try_clone();
            // Re-answers after an overtaken count go out one at a time, each
            // with the newest count. Only a caller's own request waits: one
            // that a middleware sends from inside a request that holds the
            // turn goes without it, so no request waits for its own caller.
            let _turn = if overtaken_retries > 0 && next.client().nesting <= 1 {
                Some(self.reanswer.lock().await)
            } else {
                None
            };
            let mut response = next.run(req).await?;
            if response.status() != self.challenge_status() {
                if let Some(sent) = &sent {
                    // A proxy's 407 in front of the origin is not the
                    // origin's answer and carries no proof of it.
                    let from_proxy = self.target == Target::Origin
                        && response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED;
                    if self.verify_server && !from_proxy {
                        if let Err(err) = self.check_server(&mut response, &sent.proof).await {
                            response.discard().await;
                            return Err(err);
                        }
                    }
                    self.adopt_next_nonce(
                        response.headers(),
                        response.url(),
                        &sent.proof.challenge.nonce,
                    );
                    self.spaces()
                        .confirm(response.url(), &sent.proof.challenge.realm, true);
                }
                return Ok(response);
            }
            let challenge = match self.read_challenge(response.headers()) {
                Ok(challenge) => challenge,
                Err(failure) => {
                    response.extensions_mut().insert(failure);
                    return Ok(response);
                }
            };
            if sent.as_ref().is_some_and(|sent| sent.fresh) {
                // An answer to a fresh nonce was refused. `stale=true` says
                // the credentials were right, and that is believed once. A
                // server checking nonce counts across its nonces refuses
                // without `stale` an answer that a concurrent one overtook:
                // once these credentials were accepted in this space, such a
                // refusal is answered again, a bounded number of times.
                let confirmed = self.spaces().is_confirmed(response.url(), &challenge.realm);
                if challenge.stale && !stale_retried {
                    stale_retried = true;
                } else if confirmed && overtaken_retries < MAX_OVERTAKEN_RETRIES {
                    overtaken_retries += 1;
                } else {
                    if confirmed {
                        // Not concurrency after all (the password changed):
                        // the next request fails after two attempts again.
                        self.spaces()
                            .confirm(response.url(), &challenge.realm, false);
                    }
                    response
                        .extensions_mut()
                        .insert(DigestFailure::CredentialsRejected);
                    return Ok(response);
                }
            }
            if !self.bind_origin(response.url()) {
                response
                    .extensions_mut()
                    .insert(DigestFailure::UnlistedOrigin);
                return Ok(response);
            }
            let mut retry = replay?;
            let answered = match self.answer_challenge(
                challenge,
                retry.method(),
                retry.url(),
                retry.body().as_bytes(),
            ) {
                Ok(answered) => answered,
                Err(Unanswered::Failure(failure)) => {
                    response.extensions_mut().insert(failure);
                    return Ok(response);
                }
                Err(Unanswered::Error(err)) => {
                    let url = response.url().clone();
                    response.discard().await;
                    return Err(Error::middleware(err).with_url(url));
                }
            };
            response.discard().await;
            retry.headers_mut().insert(&answer_header, answered.header);
            sent = Some(Sent {
                proof: answered.proof,
                fresh: true,
            });
            req = retry;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect(text)
    }

    fn headers(name: HeaderName, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(name.clone(), HeaderValue::from_str(value).expect(value));
        }
        map
    }

    fn fixed(auth: DigestAuth) -> DigestAuth {
        auth.cnonce_source(|| "0a4f113b".to_owned())
    }

    fn params(answered: &Answered) -> Vec<(String, String)> {
        let text = answered.header.to_str().expect("ascii");
        challenge::parse_params(text.strip_prefix("Digest ").expect("scheme")).expect("parses")
    }

    fn param(answered: &Answered, name: &str) -> Option<String> {
        challenge::find_param(&params(answered), name).map(str::to_owned)
    }

    const RFC_2617: &str = r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;

    #[test]
    fn answers_the_rfc_2617_challenge_through_the_header_map() {
        let auth = fixed(DigestAuth::new("Mufasa", "Circle Of Life"));
        let map = headers(WWW_AUTHENTICATE, &[r#"Basic realm="x""#, RFC_2617]);
        let challenge = auth.read_challenge(&map).expect("answerable");
        let target = url("http://www.nowhere.org/dir/index.html");
        // No body available, so qop=auth as in the RFC example.
        let answered = auth
            .answer_challenge(challenge, &Method::GET, &target, None)
            .expect("answered");
        assert_eq!(
            param(&answered, "response").as_deref(),
            Some("6629fae49393a05397450978507c4ef1")
        );
        assert_eq!(
            answered.proof.challenge.nonce,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093"
        );
    }

    #[test]
    fn preemptive_answers_count_up_within_the_space() {
        let auth = fixed(DigestAuth::new("Mufasa", "Circle Of Life"));
        let target = url("http://www.nowhere.org/dir/index.html");
        assert!(
            auth.preemptive_answer(&Method::GET, &target, Some(b""))
                .expect("no error")
                .is_none()
        );
        let challenge = auth
            .read_challenge(&headers(WWW_AUTHENTICATE, &[RFC_2617]))
            .expect("answerable");
        let first = auth
            .answer_challenge(challenge, &Method::GET, &target, Some(b""))
            .expect("answered");
        assert_eq!(param(&first, "nc").as_deref(), Some("00000001"));
        assert_eq!(param(&first, "qop").as_deref(), Some("auth-int"));
        let second = auth
            .preemptive_answer(&Method::GET, &url("http://www.nowhere.org/other"), None)
            .expect("no error")
            .expect("in the space");
        assert_eq!(param(&second, "nc").as_deref(), Some("00000002"));
        assert_eq!(param(&second, "uri").as_deref(), Some("/other"));
        assert_eq!(param(&second, "qop").as_deref(), Some("auth"));
        assert!(
            auth.preemptive_answer(&Method::GET, &url("http://elsewhere.org/"), None)
                .expect("no error")
                .is_none()
        );
    }

    #[test]
    fn preemptive_off_never_answers_ahead() {
        let auth = fixed(DigestAuth::new("u", "p")).preemptive(false);
        let target = url("http://h/");
        let challenge = auth
            .read_challenge(&headers(
                WWW_AUTHENTICATE,
                &[r#"Digest realm="r", nonce="n""#],
            ))
            .expect("answerable");
        auth.answer_challenge(challenge, &Method::GET, &target, None)
            .expect("answered");
        assert!(
            auth.preemptive_answer(&Method::GET, &target, None)
                .expect("no error")
                .is_none()
        );
    }

    #[test]
    fn auth_int_only_with_a_stream_is_an_error_and_not_preemptive() {
        let auth = fixed(DigestAuth::new("u", "p"));
        let target = url("http://h/upload");
        let challenge = auth
            .read_challenge(&headers(
                WWW_AUTHENTICATE,
                &[r#"Digest realm="r", nonce="n", qop="auth-int""#],
            ))
            .expect("answerable");
        match auth.answer_challenge(challenge.clone(), &Method::POST, &target, None) {
            Err(Unanswered::Error(DigestError::AuthIntNeedsBufferedBody)) => {}
            other => panic!("expected AuthIntNeedsBufferedBody, got {other:?}"),
        }
        assert!(
            auth.preemptive_answer(&Method::POST, &target, None)
                .expect("no error")
                .is_none()
        );
        let buffered = auth
            .preemptive_answer(&Method::POST, &target, Some(b"data"))
            .expect("no error")
            .expect("answerable with a buffered body");
        assert_eq!(param(&buffered, "qop").as_deref(), Some("auth-int"));
    }

    #[test]
    fn proxy_mode_reads_proxy_authenticate_and_sends_the_absolute_form() {
        let auth = fixed(DigestAuth::proxy("u", "p"));
        assert_eq!(
            auth.challenge_status(),
            StatusCode::PROXY_AUTHENTICATION_REQUIRED
        );
        assert_eq!(auth.answer_header(), PROXY_AUTHORIZATION);
        let origin_challenge = headers(WWW_AUTHENTICATE, &[r#"Digest realm="r", nonce="n""#]);
        assert_eq!(
            auth.read_challenge(&origin_challenge),
            Err(DigestFailure::NoDigestChallenge)
        );
        let challenge = auth
            .read_challenge(&headers(
                PROXY_AUTHENTICATE,
                &[r#"Digest realm="proxy", nonce="n", qop=auth"#],
            ))
            .expect("answerable");
        let target = url("http://u:p@example.test:8080/a%20b?x=1#frag");
        let answered = auth
            .answer_challenge(challenge, &Method::GET, &target, None)
            .expect("answered");
        assert_eq!(
            param(&answered, "uri").as_deref(),
            Some("http://example.test:8080/a%20b?x=1")
        );
        // One space for every target behind the proxy.
        assert!(
            auth.preemptive_answer(&Method::GET, &url("http://other.test/"), None)
                .expect("no error")
                .is_some()
        );
    }

    #[test]
    fn default_cnonce_is_random_hex() {
        let auth = DigestAuth::new("u", "p");
        let first = auth.new_cnonce().expect("random source");
        let second = auth.new_cnonce().expect("random source");
        assert_eq!(first.len(), 32);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(first, second);
    }

    #[test]
    fn cnonce_source_output_is_validated() {
        for bad in ["", "a b", "a\"b", "a\\b", "caf\u{e9}", "a\nb"] {
            let bad_owned = bad.to_owned();
            let auth = DigestAuth::new("u", "p").cnonce_source(move || bad_owned.clone());
            assert_eq!(
                auth.new_cnonce(),
                Err(DigestError::InvalidCnonce(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn next_nonce_from_authentication_info_is_adopted() {
        let auth = fixed(DigestAuth::new("u", "p"));
        let target = url("http://h/");
        let challenge = auth
            .read_challenge(&headers(
                WWW_AUTHENTICATE,
                &[r#"Digest realm="r", nonce="n1", qop=auth"#],
            ))
            .expect("answerable");
        let answered = auth
            .answer_challenge(challenge, &Method::GET, &target, None)
            .expect("answered");
        let info = headers(
            HeaderName::from_static("authentication-info"),
            &[r#"qop=auth, rspauth="x", cnonce="0a4f113b", nc=00000001, nextnonce="n2""#],
        );
        auth.adopt_next_nonce(&info, &target, &answered.proof.challenge.nonce);
        let next = auth
            .preemptive_answer(&Method::GET, &target, None)
            .expect("no error")
            .expect("in the space");
        assert_eq!(next.proof.challenge.nonce, "n2");
        assert_eq!(param(&next, "nc").as_deref(), Some("00000001"));
    }

    #[tokio::test]
    async fn rspauth_echoes_are_read_leniently_but_must_match() {
        let auth = fixed(DigestAuth::new("u", "p")).verify_server(true);
        let target = url("http://h/x");
        let challenge = auth
            .read_challenge(&headers(
                WWW_AUTHENTICATE,
                &[r#"Digest realm="r", nonce="n", qop=auth"#],
            ))
            .expect("answerable");
        let answered = auth
            .answer_challenge(challenge, &Method::GET, &target, None)
            .expect("answered");
        let proof = &answered.proof;
        let request = answer::Request {
            method: "",
            uri: &proof.uri,
            qop: proof.qop,
            body: &[],
            nonce_count: proof.nonce_count,
            cnonce: &proof.cnonce,
        };
        let rspauth = answer::expected_rspauth(&auth.credentials, &proof.challenge, &request, b"");
        let check = |info: String| {
            let response = http::Response::builder()
                .header("authentication-info", info)
                .body(Vec::<u8>::new())
                .expect("response");
            let mut response = Response::from_http(response, target.clone());
            let auth = auth.clone();
            async move {
                auth.check_server(&mut response, proof)
                    .await
                    .map_err(|err| err.to_string())
            }
        };
        assert_eq!(check(format!(r#"rspauth="{rspauth}""#)).await, Ok(()));
        assert_eq!(
            check(format!(
                r#"rspauth="{}", qop=AUTH, nc=1, cnonce="0a4f113b""#,
                rspauth.to_uppercase()
            ))
            .await,
            Ok(())
        );
        for wrong in [
            format!(r#"rspauth="{rspauth}", nc=00000002"#),
            format!(r#"rspauth="{rspauth}", nc=+1"#),
            format!(r#"rspauth="{rspauth}", qop=auth-int"#),
            format!(r#"rspauth="{rspauth}", cnonce="other""#),
            r#"rspauth="0123""#.to_owned(),
            format!(r#"rspauth="{rspauth}", rspauth="{rspauth}""#),
            "qop=auth".to_owned(),
        ] {
            assert!(check(wrong.clone()).await.is_err(), "{wrong}");
        }
    }

    #[test]
    fn debug_output_hides_the_password() {
        let auth = DigestAuth::new("user", "hunter2");
        let debug = format!("{auth:?}");
        assert!(debug.contains("user"));
        assert!(!debug.contains("hunter2"));
    }
}
