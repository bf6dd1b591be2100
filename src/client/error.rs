//! The one error type of the client.
//!
//! Every failure a caller can meet while building or sending a request is an [`Error`]; what went
//! wrong is told by [`Error::kind`], and the cause (a `reqwest::Error`, an SSRF refusal, a
//! middleware's own error) is reachable through [`std::error::Error::source`].

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use http::StatusCode;
use url::Url;

use super::attempt::GaveUp;
use super::history::Redirect;
use super::redaction::WithoutCredentials;

/// A boxed error that can cross threads: what middlewares and body streams may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `Result` with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is: the question a caller branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request could not be built: a bad URL, header name or value, or body serialisation.
    Builder,
    /// No connection could be opened (refused, unreachable, DNS failure, or the connect
    /// timeout passed): the request was not sent. A failed TLS handshake is
    /// [`Tls`](ErrorKind::Tls).
    Connect,
    /// The TLS handshake failed or the peer ended TLS with an alert: a server certificate that
    /// is not trusted, expired or for another name, a client certificate the server refused or
    /// did not get, no common protocol version. Trying again does not help, so the
    /// [`Retry`](super::retry::Retry) middleware does not; the source says what the TLS
    /// library reported.
    Tls,
    /// A deadline passed: the whole call's timeout, or one attempt's. (A connection that ran out
    /// of the connect timeout is [`Connect`](ErrorKind::Connect), and
    /// [`Error::is_timeout`] is true for it.)
    Timeout,
    /// The connection failed after it was open (closed early, protocol error, body read error).
    Transport,
    /// The connection policy (the SSRF guard) refused the destination.
    Refused,
    /// More redirects than the client allows; the error carries the redirect history.
    TooManyRedirects,
    /// Middlewares kept sending requests through the client from inside the chain.
    Recursion,
    /// A body had to be sent again (retry, 307/308 redirect) but could not be replayed.
    BodyNotReplayable,
    /// A middleware failed with an error of its own.
    Middleware,
    /// [`Response::error_for_status`](super::Response::error_for_status) met a 4xx or 5xx status.
    Status,
    /// A response body could not be decoded (JSON, UTF-8).
    Decode,
    /// A response body read whole was longer than the body limit
    /// ([`ClientBuilder::body_limit`](super::ClientBuilder::body_limit),
    /// [`RequestBuilder::body_limit`](super::RequestBuilder::body_limit)); the message names
    /// the limit.
    BodyTooLarge,
    /// A circuit breaker refused the request without sending it: its circuit for the
    /// request's key is open, or half-open with every probe already in flight.
    /// [`Error::retry_after`] tells the time until the next probe may go.
    CircuitOpen,
    /// A rate limiter refused the request without sending it: the key's rate is spent, or the
    /// key is paused by a `Retry-After`, for longer than the limiter lets a request wait.
    /// [`Error::retry_after`] tells when a request would be let through.
    RateLimited,
    /// A bulkhead refused the request without sending it: as many requests as it allows are
    /// in flight for the key and its queue is full.
    BulkheadFull,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::Builder => "invalid request",
            ErrorKind::Connect => "connection failed",
            ErrorKind::Tls => "TLS handshake failed",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Transport => "transport error",
            ErrorKind::Refused => "refused by the connection policy",
            ErrorKind::TooManyRedirects => "too many redirects",
            ErrorKind::Recursion => "middleware recursion limit reached",
            ErrorKind::BodyNotReplayable => "request body cannot be sent again",
            ErrorKind::Middleware => "middleware error",
            ErrorKind::Status => "error status",
            ErrorKind::Decode => "response body could not be decoded",
            ErrorKind::BodyTooLarge => "response body too large",
            ErrorKind::CircuitOpen => "circuit open",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::BulkheadFull => "bulkhead full",
        }
    }
}

/// Whether the TLS library's own error is in `err`'s chain of causes.
#[cfg(any(feature = "rustls", feature = "rustls-ring", feature = "native-tls"))]
fn is_tls_failure(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        #[cfg(any(feature = "rustls", feature = "rustls-ring"))]
        if err.is::<rustls::Error>() {
            return true;
        }
        #[cfg(feature = "native-tls")]
        if err.is::<native_tls_crate::Error>() {
            return true;
        }
        // `io::Error::source` skips the error it wraps, which is where TLS streams put theirs.
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if is_tls_failure(inner) {
                    return true;
                }
                // An alert that ends an HTTP/2 connection after the handshake (a server refusing
                // the client certificate under TLS 1.3) reaches us through h2, which keeps
                // only the text of an I/O error: rustls' text for `AlertReceived`.
                #[cfg(any(feature = "rustls", feature = "rustls-ring"))]
                if io.kind() == std::io::ErrorKind::InvalidData
                    && inner.to_string().starts_with("received fatal alert: ")
                {
                    return true;
                }
                // The same under native-tls on OpenSSL, whose error after the handshake comes
                // as its own type (h1) or its text (h2); both end with OpenSSL's alert number.
                #[cfg(feature = "native-tls")]
                if inner.to_string().contains("SSL alert number") {
                    return true;
                }
            }
        }
        cause = err.source();
    }
    false
}

#[cfg(not(any(feature = "rustls", feature = "rustls-ring", feature = "native-tls")))]
fn is_tls_failure(_: &(dyn std::error::Error + 'static)) -> bool {
    false
}

/// The client's error: a kind, the URL it happened at when there is one, and a cause.
///
/// ```
/// # async fn run() {
/// let client = stopover::client::Client::new();
/// match client.get("http://127.0.0.1:9/").send().await {
///     Ok(response) => println!("{}", response.status()),
///     Err(err) if err.is_connect() => println!("nobody listens at {:?}", err.url()),
///     Err(err) => println!("failed: {err}"),
/// }
/// # }
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    url: Option<Url>,
    message: Option<Cow<'static, str>>,
    detail: Detail,
    source: Option<BoxError>,
    /// Set by a retrying middleware: how many attempts it made, and why it stopped if the
    /// failure was one it would have retried.
    retry: Option<(u32, Option<GaveUp>)>,
}

enum Detail {
    None,
    Status(StatusCode),
    Redirects(Vec<Redirect>),
    Depth(usize),
    Conflict([&'static str; 2]),
    /// Reading a response body failed (a timeout of the whole call, past the head).
    Body,
    RetryAfter(std::time::Duration),
}

impl Error {
    fn new(kind: ErrorKind) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                url: None,
                message: None,
                detail: Detail::None,
                source: None,
                retry: None,
            }),
        }
    }

    /// An error of a middleware's own, reported with [`ErrorKind::Middleware`].
    ///
    /// ```
    /// use stopover::client::{Error, ErrorKind};
    ///
    /// let err = Error::middleware(std::io::Error::other("signing key missing"));
    /// assert_eq!(err.kind(), ErrorKind::Middleware);
    /// ```
    pub fn middleware(source: impl Into<BoxError>) -> Self {
        Error::new(ErrorKind::Middleware).with_source(source)
    }

    /// A circuit breaker's refusal ([`ErrorKind::CircuitOpen`]); `retry_after` is the time
    /// until the next probe may go, when it is known.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stopover::client::Error;
    ///
    /// let err = Error::circuit_open(Some(Duration::from_secs(3)));
    /// assert!(err.is_circuit_open());
    /// assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    /// ```
    pub fn circuit_open(retry_after: Option<std::time::Duration>) -> Self {
        Error::new(ErrorKind::CircuitOpen).with_retry_after(retry_after)
    }

    /// A rate limiter's refusal ([`ErrorKind::RateLimited`]); `retry_after` is when a request
    /// would be let through, when it is known.
    pub fn rate_limited(retry_after: Option<std::time::Duration>) -> Self {
        Error::new(ErrorKind::RateLimited).with_retry_after(retry_after)
    }

    /// A bulkhead's refusal ([`ErrorKind::BulkheadFull`]).
    pub fn bulkhead_full() -> Self {
        Error::new(ErrorKind::BulkheadFull)
    }

    fn with_retry_after(mut self, retry_after: Option<std::time::Duration>) -> Self {
        if let Some(wait) = retry_after {
            self.inner.detail = Detail::RetryAfter(wait);
        }
        self
    }

    pub(crate) fn builder(message: impl Into<Cow<'static, str>>) -> Self {
        Error::new(ErrorKind::Builder).with_message(message)
    }

    /// Two [`ClientBuilder`](super::ClientBuilder) settings that cannot hold together, by
    /// their setter names, and why.
    pub(crate) fn conflict(first: &'static str, second: &'static str, why: &'static str) -> Self {
        let mut err = Error::new(ErrorKind::Builder).with_message(format!(
            "`{first}` cannot be combined with `{second}`: {why}"
        ));
        err.inner.detail = Detail::Conflict([first, second]);
        err
    }

    pub(crate) fn timeout() -> Self {
        Error::new(ErrorKind::Timeout)
    }

    /// Marks the error as one met while reading a response body ([`Error::is_body`]).
    pub(crate) fn in_body(mut self) -> Self {
        if let Detail::None = self.inner.detail {
            self.inner.detail = Detail::Body;
        }
        self
    }

    /// reqwest's own error, when it is the cause.
    fn reqwest_source(&self) -> Option<&reqwest::Error> {
        self.inner
            .source
            .as_deref()
            .and_then(|source| source.downcast_ref::<reqwest::Error>())
    }

    pub(crate) fn from_status(status: StatusCode, url: Url) -> Self {
        let mut err = Error::new(ErrorKind::Status).with_url(url);
        err.inner.detail = Detail::Status(status);
        err
    }

    pub(crate) fn too_many_redirects(history: Vec<Redirect>, url: Url) -> Self {
        let limit = history.len();
        let mut err = Error::new(ErrorKind::TooManyRedirects)
            .with_url(url)
            .with_message(format!("the limit of {limit} redirects was reached"));
        err.inner.detail = Detail::Redirects(history);
        err
    }

    pub(crate) fn recursion(depth: usize) -> Self {
        let mut err = Error::new(ErrorKind::Recursion).with_message(format!(
            "{depth} requests were nested inside each other's middleware chains"
        ));
        err.inner.detail = Detail::Depth(depth);
        err
    }

    /// A response body longer than `limit` bytes.
    pub(crate) fn body_too_large(limit: u64) -> Self {
        Error::new(ErrorKind::BodyTooLarge).with_message(format!(
            "the body is longer than the limit of {limit} bytes"
        ))
    }

    pub(crate) fn body_not_replayable(reason: &'static str) -> Self {
        Error::new(ErrorKind::BodyNotReplayable).with_message(reason)
    }

    /// A destination the SSRF policy refused; the refusal stays reachable as the source.
    pub(crate) fn refused(refusal: super::ssrf::Refusal) -> Self {
        let message = refusal.summary();
        let mut err = Error::new(ErrorKind::Refused).with_message(message);
        if let Some(url) = refusal.url() {
            err.inner.url = Some(url.clone());
        }
        err.with_source(refusal)
    }

    pub(crate) fn decode(source: impl Into<BoxError>) -> Self {
        Error::new(ErrorKind::Decode).with_source(source)
    }

    pub(crate) fn with_kind_and_source(kind: ErrorKind, source: impl Into<BoxError>) -> Self {
        Error::new(kind).with_source(source)
    }

    /// Maps a reqwest error to the matching kind, keeping it as the source.
    ///
    /// The URL reqwest attached is removed: reqwest shows it whole, user name and password
    /// included, in its `Display` and `Debug`, and this error keeps the URL itself (redacted).
    pub(crate) fn from_reqwest(err: reqwest::Error) -> Self {
        // Connect before timeout: a connection that ran out of `connect_timeout` is both, and
        // `Connect` keeps what a retry needs to know, that the request never left.
        // `is_timeout` still answers true for it.
        let kind = if is_tls_failure(&err) {
            ErrorKind::Tls
        } else if err.is_connect() {
            ErrorKind::Connect
        } else if err.is_timeout() {
            ErrorKind::Timeout
        } else if err.is_decode() {
            ErrorKind::Decode
        } else if err.is_builder() {
            ErrorKind::Builder
        } else {
            ErrorKind::Transport
        };
        Error::new(kind).with_source(err.without_url())
    }

    pub(crate) fn with_url(mut self, url: Url) -> Self {
        self.inner.url = Some(url);
        self
    }

    pub(crate) fn with_url_if_missing(mut self, url: &Url) -> Self {
        if self.inner.url.is_none() {
            self.inner.url = Some(url.clone());
        }
        self
    }

    pub(crate) fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Self {
        self.inner.message = Some(message.into());
        self
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    /// Records what a retrying middleware did before returning this error: how many attempts
    /// it made and, when it stopped on a failure it would have retried, why
    /// ([`attempts`](Error::attempts), [`gave_up`](Error::gave_up), and the message).
    ///
    /// ```
    /// use stopover::client::{Error, GaveUp};
    ///
    /// let err = Error::middleware(std::io::Error::other("upstream down"))
    ///     .with_attempts(3, Some(GaveUp::MaxAttempts));
    /// assert_eq!(err.attempts(), Some(3));
    /// assert_eq!(err.gave_up(), Some(GaveUp::MaxAttempts));
    /// ```
    pub fn with_attempts(mut self, attempts: u32, gave_up: Option<GaveUp>) -> Self {
        self.inner.retry = Some((attempts, gave_up));
        self
    }

    /// The error's text with its URL shown by `show` instead of the default (which hides only
    /// the user name and password): for logs that hide more, such as query values.
    pub(crate) fn to_string_with_url(&self, show: impl Fn(&Url) -> String) -> String {
        let mut text = String::new();
        let _ = self.write(&mut text, |url, out| out.write_str(&show(url)));
        text
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The URL of the request that failed, when the failure belongs to one.
    pub fn url(&self) -> Option<&Url> {
        self.inner.url.as_ref()
    }

    /// The status that [`Response::error_for_status`](super::Response::error_for_status) refused.
    pub fn status(&self) -> Option<StatusCode> {
        match self.inner.detail {
            Detail::Status(status) => Some(status),
            _ => None,
        }
    }

    /// How many attempts the [`Retry`](super::retry::Retry) middleware made before it returned
    /// this error, when the error went through one.
    ///
    /// ```
    /// # async fn run() {
    /// use stopover::client::Client;
    /// use stopover::client::retry::{GaveUp, Retry};
    ///
    /// let client = Client::builder().middleware(Retry::default()).build().unwrap();
    /// let err = client.post("http://127.0.0.1:9/").body("x").send().await.unwrap_err();
    /// if let (Some(attempts), Some(reason)) = (err.attempts(), err.gave_up()) {
    ///     println!("{err}: {attempts} attempt(s), stopped because {reason}");
    /// }
    /// # }
    /// ```
    pub fn attempts(&self) -> Option<u32> {
        self.inner.retry.map(|(attempts, _)| attempts)
    }

    /// Why the [`Retry`](super::retry::Retry) middleware returned this error instead of trying
    /// again, when the failure was one its policy retries (a connect error, a timeout, a
    /// connection closed before a response). `None` for an error it never retries (a refusal,
    /// a middleware's error, ...): the [`kind`](Error::kind) says why.
    pub fn gave_up(&self) -> Option<GaveUp> {
        self.inner.retry.and_then(|(_, gave_up)| gave_up)
    }

    /// How long to wait before the refused request could go: the time until a circuit
    /// breaker's next probe ([`ErrorKind::CircuitOpen`]) or until a rate limiter lets a
    /// request through ([`ErrorKind::RateLimited`]). `None` for other errors, and when the
    /// middleware could not know (a half-open circuit whose probes are all in flight).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self.inner.detail {
            Detail::RetryAfter(wait) => Some(wait),
            _ => None,
        }
    }

    /// The redirects followed before the limit was reached ([`ErrorKind::TooManyRedirects`]).
    pub fn redirect_history(&self) -> Option<&[Redirect]> {
        match &self.inner.detail {
            Detail::Redirects(history) => Some(history),
            _ => None,
        }
    }

    /// How deep the requests were nested when the recursion limit stopped them.
    pub fn recursion_depth(&self) -> Option<usize> {
        match self.inner.detail {
            Detail::Depth(depth) => Some(depth),
            _ => None,
        }
    }

    /// The SSRF refusal behind an [`ErrorKind::Refused`] error: its rule id, the hop, and
    /// (for logs only) the refused address.
    ///
    /// ```
    /// # async fn run() {
    /// use stopover::client::{Client, ssrf::Policy};
    ///
    /// let client = Client::builder().ssrf_policy(Policy::default()).build().unwrap();
    /// let err = client.get("http://169.254.169.254/").send().await.unwrap_err();
    /// assert_eq!(err.refusal().unwrap().rule().as_str(), "ipv4-link-local");
    /// # }
    /// ```
    pub fn refusal(&self) -> Option<&super::ssrf::Refusal> {
        let source = self.inner.source.as_deref()?;
        super::ssrf::find_refusal(source)
    }

    /// The two [`ClientBuilder`](super::ClientBuilder) settings, by their setter names, that
    /// made [`build`](super::ClientBuilder::build) fail because they cannot hold together.
    ///
    /// ```
    /// use stopover::client::{Client, Proxy, ssrf::Policy};
    ///
    /// let err = Client::builder()
    ///     .proxy(Proxy::all("http://proxy.internal:3128").unwrap())
    ///     .ssrf_policy(Policy::default())
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.conflicting_settings(), Some(["proxy", "ssrf_policy"]));
    /// ```
    pub fn conflicting_settings(&self) -> Option<[&'static str; 2]> {
        match self.inner.detail {
            Detail::Conflict(names) => Some(names),
            _ => None,
        }
    }

    /// True when the TLS handshake failed ([`ErrorKind::Tls`]).
    pub fn is_tls(&self) -> bool {
        self.kind() == ErrorKind::Tls
    }

    /// True for the request-building failures ([`ErrorKind::Builder`]).
    pub fn is_builder(&self) -> bool {
        self.kind() == ErrorKind::Builder
    }

    /// True when no connection could be opened.
    pub fn is_connect(&self) -> bool {
        self.kind() == ErrorKind::Connect
    }

    /// True when a deadline passed: a [`ErrorKind::Timeout`] error, or a
    /// [`ErrorKind::Connect`] error whose connection ran out of the
    /// [`connect_timeout`](super::ClientBuilder::connect_timeout).
    pub fn is_timeout(&self) -> bool {
        match self.kind() {
            ErrorKind::Timeout => true,
            ErrorKind::Connect => self
                .reqwest_source()
                .is_some_and(reqwest::Error::is_timeout),
            _ => false,
        }
    }

    /// True when sending the request failed, before a response head came back: no connection
    /// ([`ErrorKind::Connect`], [`ErrorKind::Tls`]), the connection failed while the request
    /// was sent or its answer awaited, or a deadline passed before the head. reqwest's
    /// `Error::is_request`, with connect failures included as reqwest includes them.
    ///
    /// ```
    /// # async fn run() {
    /// let client = stopover::client::Client::new();
    /// let err = client.get("http://127.0.0.1:9/").send().await.unwrap_err();
    /// assert!(err.is_request() && err.is_connect() && !err.is_body());
    /// # }
    /// ```
    pub fn is_request(&self) -> bool {
        match self.kind() {
            ErrorKind::Connect | ErrorKind::Tls => true,
            ErrorKind::Timeout => !self.is_body(),
            ErrorKind::Transport => self
                .reqwest_source()
                .is_some_and(reqwest::Error::is_request),
            _ => false,
        }
    }

    /// True when reading a response body failed: the connection broke or stalled past a
    /// deadline (the whole call's [`timeout`](super::ClientBuilder::timeout), an
    /// [`attempt_timeout`](super::ClientBuilder::attempt_timeout), a
    /// [`read_timeout`](super::ClientBuilder::read_timeout)) while the body was read.
    /// reqwest's `Error::is_body`. A body that arrived but could not be decoded is
    /// [`is_decode`](Self::is_decode) instead, and one over the limit
    /// [`ErrorKind::BodyTooLarge`].
    ///
    /// ```
    /// # async fn run(response: stopover::client::Response) {
    /// match response.text().await {
    ///     Ok(text) => println!("{text}"),
    ///     Err(err) if err.is_body() && err.is_timeout() => println!("the body stalled: {err}"),
    ///     Err(err) => println!("{err}"),
    /// }
    /// # }
    /// ```
    pub fn is_body(&self) -> bool {
        if matches!(self.inner.detail, Detail::Body) {
            return true;
        }
        // With decompression on, reqwest wraps a body read failure in a decode error.
        let mut cause = self
            .inner
            .source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static));
        while let Some(err) = cause {
            if err
                .downcast_ref::<reqwest::Error>()
                .is_some_and(reqwest::Error::is_body)
            {
                return true;
            }
            cause = err.source();
        }
        false
    }

    /// True when the connection failed after it was open.
    pub fn is_transport(&self) -> bool {
        self.kind() == ErrorKind::Transport
    }

    /// True when the connection policy refused the destination.
    pub fn is_refused(&self) -> bool {
        self.kind() == ErrorKind::Refused
    }

    /// True when the redirect limit was reached.
    pub fn is_redirect(&self) -> bool {
        self.kind() == ErrorKind::TooManyRedirects
    }

    /// True when the middleware recursion limit was reached.
    pub fn is_recursion(&self) -> bool {
        self.kind() == ErrorKind::Recursion
    }

    /// True when a body had to be replayed and could not be.
    pub fn is_body_not_replayable(&self) -> bool {
        self.kind() == ErrorKind::BodyNotReplayable
    }

    /// True for a middleware's own error.
    pub fn is_middleware(&self) -> bool {
        self.kind() == ErrorKind::Middleware
    }

    /// True for an error status refused by `error_for_status`.
    pub fn is_status(&self) -> bool {
        self.kind() == ErrorKind::Status
    }

    /// True when a response body could not be decoded.
    pub fn is_decode(&self) -> bool {
        self.kind() == ErrorKind::Decode
    }

    /// True when a circuit breaker refused the request ([`ErrorKind::CircuitOpen`]).
    pub fn is_circuit_open(&self) -> bool {
        self.kind() == ErrorKind::CircuitOpen
    }

    /// True when a rate limiter refused the request ([`ErrorKind::RateLimited`]).
    pub fn is_rate_limited(&self) -> bool {
        self.kind() == ErrorKind::RateLimited
    }

    /// True when a bulkhead refused the request ([`ErrorKind::BulkheadFull`]).
    pub fn is_bulkhead_full(&self) -> bool {
        self.kind() == ErrorKind::BulkheadFull
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("stopover::client::Error");
        debug.field("kind", &self.inner.kind);
        if let Some(url) = &self.inner.url {
            debug.field("url", &format_args!("{}", WithoutCredentials(url)));
        }
        if let Some(message) = &self.inner.message {
            debug.field("message", message);
        }
        if let Some(source) = &self.inner.source {
            debug.field("source", source);
        }
        if let Some((attempts, gave_up)) = self.inner.retry {
            debug.field("attempts", &attempts);
            if let Some(gave_up) = gave_up {
                debug.field("gave_up", &gave_up);
            }
        }
        debug.finish()
    }
}

impl Error {
    fn write<W: fmt::Write>(
        &self,
        out: &mut W,
        show_url: impl Fn(&Url, &mut W) -> fmt::Result,
    ) -> fmt::Result {
        out.write_str(self.inner.kind.describe())?;
        if let Detail::Status(status) = self.inner.detail {
            write!(out, " {status}")?;
        }
        if let Some(url) = &self.inner.url {
            out.write_str(" for ")?;
            show_url(url, out)?;
        }
        if let Some(message) = &self.inner.message {
            write!(out, ": {message}")?;
        }
        if let Detail::RetryAfter(wait) = self.inner.detail {
            write!(out, " (retry after {} ms)", wait.as_millis())?;
        }
        if let Some((attempts, Some(gave_up))) = self.inner.retry {
            let plural = if attempts == 1 { "" } else { "s" };
            write!(
                out,
                " (not retried after {attempts} attempt{plural}: {gave_up})"
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, |url, f| write!(f, "{}", WithoutCredentials(url)))
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_send_sync_and_small() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Error>();
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn display_and_debug_hide_credentials_in_the_url() {
        let url = Url::parse("http://user:hunter2@example.test/a").unwrap();
        let err = Error::from_status(StatusCode::BAD_GATEWAY, url);
        assert_eq!(
            err.to_string(),
            "error status 502 Bad Gateway for http://example.test/a"
        );
        assert!(!format!("{err:?}").contains("hunter2"));
        assert!(!format!("{err:?}").contains("user"));
    }

    #[test]
    fn display_names_kind_status_and_url() {
        let url = Url::parse("http://example.test/a").unwrap();
        let err = Error::from_status(StatusCode::NOT_FOUND, url);
        assert_eq!(
            err.to_string(),
            "error status 404 Not Found for http://example.test/a"
        );
    }
}
