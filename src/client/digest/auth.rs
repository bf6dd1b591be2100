//! [`DigestAuth`]: the middleware, its scope and how a request goes through it.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use http::header::{
    AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION,
    WWW_AUTHENTICATE,
};
use http::{Method, StatusCode};
use url::Url;

use crate::client::origin::crosses_origin;
use crate::client::{BoxError, Error, Middleware, Next, Origin, Request, Response, Result};

use super::answer::Credentials;
use super::challenge::DigestChallenge;
use super::error::{DigestError, DigestFailure, RandomSourceError};
use super::space::{Lease, Spaces};
use super::{algorithm, answer, challenge};

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

/// Digest authentication middleware; see the [module docs](super).
///
/// Cloning is cheap and the clones share the learnt protection spaces and
/// nonce counts.
#[derive(Clone)]
pub struct DigestAuth {
    credentials: Arc<Credentials>,
    /// The user name holds a `:`: decided once, not scanned on every request.
    ambiguous_username: bool,
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
            ambiguous_username: username.contains(':'),
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
    fn check(&self, _client: &crate::client::Client) -> std::result::Result<(), BoxError> {
        if self.ambiguous_username {
            return Err(DigestError::ColonInUsername.into());
        }
        Ok(())
    }

    async fn handle(&self, mut req: Request, next: Next) -> Result<Response> {
        if self.ambiguous_username {
            return Err(Error::middleware(DigestError::ColonInUsername));
        }
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
#[path = "tests.rs"]
mod tests;
