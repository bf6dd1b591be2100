//! Logging: a tracing span per request and an event per response, with credentials taken out.
//!
//! Logging headers and URLs verbatim puts bearer tokens, cookies and signed query strings into
//! log files. Here [`Redaction`] decides what is hidden before anything is formatted: the
//! `Authorization`, `Cookie`, `Set-Cookie` and `Proxy-Authorization` headers, any header named
//! by the user or marked [sensitive](http::HeaderValue::set_sensitive), the user name and
//! password of a URL, and optionally query values. [`Logging`] writes to `tracing`;
//! [`LogToService`] is the cookbook's "log to an external service" recipe, sending its records
//! through the same client without passing through itself, and never failing a request because
//! the log service failed.
//!
//! ```
//! use http::{HeaderMap, HeaderName, HeaderValue};
//! use stopover::client::Client;
//! use stopover::client::logging::{LogToService, Logging, QueryRedaction, Redaction};
//! use url::Url;
//!
//! let redaction = Redaction::default()
//!     .header(HeaderName::from_static("x-api-key"))
//!     .query(QueryRedaction::Keys(vec!["sig".into()]));
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("x-api-key", HeaderValue::from_static("k-123"));
//! headers.insert("accept", HeaderValue::from_static("text/plain"));
//! assert_eq!(
//!     redaction.headers(&headers).to_string(),
//!     r#"{"x-api-key": "[redacted]", "accept": "text/plain"}"#,
//! );
//! let url = Url::parse("https://user:pw@api.example/v1?page=2&sig=abc#top").unwrap();
//! assert_eq!(redaction.url(&url), "https://api.example/v1?page=2&sig=REDACTED");
//!
//! let client = Client::builder()
//!     .middleware(Logging::new().headers(true).redaction(redaction.clone()))
//!     .middleware(LogToService::new("http://127.0.0.1:9000/log")?.redaction(redaction))
//!     .build()?;
//! # let _ = client;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Instrument;
use url::Url;

pub use super::redaction::{
    QueryRedaction, REDACTED_HEADER, REDACTED_QUERY, RedactedHeaders, Redaction,
};
use super::{Attempts, Middleware, Next, Request, Response, Result};

/// The logging middleware: a tracing span per request and an event per response.
///
/// The span (`http_request`, level INFO) carries `method`, `url` (redacted), `hop` and
/// `attempt` (set by an outer [`Retry`](super::retry::Retry)); the response event adds
/// `status`, `duration_ms` and `attempts` (when [`Retry`](super::retry::Retry) is inner), and a
/// failure is a WARN event with the error (and `attempts`, likewise). Headers are logged at DEBUG only when enabled, and
/// always through the [`Redaction`].
///
/// Where it sits decides what it sees: outermost, one span per call; inside `Retry`, one per
/// attempt.
///
/// Its span nests inside the client's own: every call already opens a logical span named
/// after the method, with the redacted `url.full`, and a wire span per request on the wire
/// (see [`client::telemetry`](crate::client::telemetry)). The middleware chain runs inside the
/// logical span, so `http_request` is its child, and the wire spans of the hops and attempts
/// it sees are the children of `http_request`; the method and URL thus show up on both. Add
/// `Logging` for its events (one per response, WARN on failure) and for the headers; for the
/// spans alone the built-in ones are enough. Give both the same [`Redaction`]
/// ([`ClientBuilder::span_redaction`](crate::client::ClientBuilder::span_redaction)).
#[derive(Debug, Clone, Default)]
pub struct Logging {
    redaction: Arc<Redaction>,
    headers: bool,
}

impl Logging {
    /// A logging middleware with the default [`Redaction`] and headers off.
    pub fn new() -> Self {
        Logging::default()
    }

    /// Logs request and response headers (at DEBUG, redacted). Default off.
    pub fn headers(mut self, yes: bool) -> Self {
        self.headers = yes;
        self
    }

    /// What is hidden. Default [`Redaction::default`].
    pub fn redaction(mut self, redaction: Redaction) -> Self {
        self.redaction = Arc::new(redaction);
        self
    }
}

impl Middleware for Logging {
    async fn handle(&self, request: Request, next: Next) -> Result<Response> {
        // Nothing would record the span or any of the events (no subscriber, or one that
        // filters this module out): pass the request on untimed and uninstrumented.
        let recorded = tracing::enabled!(tracing::Level::WARN)
            || tracing::enabled!(tracing::Level::INFO)
            || (self.headers && tracing::enabled!(tracing::Level::DEBUG));
        if !recorded {
            return next.run(request).await;
        }
        let attempt = request.attempt().map(|attempt| attempt.0);
        let span = tracing::info_span!(
            "http_request",
            method = %request.method(),
            url = %self.redaction.url(request.url()),
            hop = request.hop(),
            attempt = attempt,
        );
        if self.headers {
            tracing::debug!(
                parent: &span,
                headers = %self.redaction.headers(request.headers()),
                "request headers"
            );
        }
        let started = Instant::now();
        let outcome = next.run(request).instrument(span.clone()).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        match &outcome {
            Ok(response) => {
                tracing::info!(
                    parent: &span,
                    status = response.status().as_u16(),
                    duration_ms,
                    attempts = response.extensions().get::<Attempts>().map(|a| a.0),
                    "response"
                );
                if self.headers {
                    tracing::debug!(
                        parent: &span,
                        headers = %self.redaction.headers(response.headers()),
                        "response headers"
                    );
                }
            }
            Err(err) => {
                let error = err.to_string_with_url(|url| self.redaction.url(url));
                tracing::warn!(
                    parent: &span,
                    duration_ms,
                    attempts = err.attempts(),
                    error = %error,
                    "request failed"
                );
            }
        }
        outcome
    }
}

/// Sends a record of each request to a log service, through the same client, without
/// middleware (so it never logs its own requests), after the request completes.
///
/// The record is a JSON object: `method`, `url` (redacted), `hop`, `status` (or `error`) and
/// `duration_ms`. A log service that fails, refuses or does not answer within the timeout
/// (default 5 s) is reported as a WARN event and never fails the request. The record is sent
/// before the response is handed on, so a slow log service delays each response by up to the
/// timeout: keep it short.
#[derive(Debug, Clone)]
pub struct LogToService {
    endpoint: Url,
    redaction: Arc<Redaction>,
    timeout: Duration,
}

impl LogToService {
    /// Logs to `endpoint`, an absolute URL.
    pub fn new(endpoint: &str) -> Result<Self, LoggingConfigError> {
        let endpoint = Url::parse(endpoint)
            .map_err(|_| LoggingConfigError::InvalidEndpoint(endpoint.to_owned()))?;
        Ok(LogToService {
            endpoint,
            redaction: Arc::new(Redaction::default()),
            timeout: Duration::from_secs(5),
        })
    }

    /// What is hidden in the records. Default [`Redaction::default`].
    pub fn redaction(mut self, redaction: Redaction) -> Self {
        self.redaction = Arc::new(redaction);
        self
    }

    /// How long to wait for the log service. Default 5 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A logging configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoggingConfigError {
    /// The log service endpoint is not an absolute URL.
    #[error("{0:?} is not a valid log endpoint URL")]
    InvalidEndpoint(String),
}

#[derive(serde::Serialize)]
struct Record<'a> {
    method: &'a str,
    url: String,
    hop: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    duration_ms: u64,
}

impl Middleware for LogToService {
    async fn handle(&self, request: Request, next: Next) -> Result<Response> {
        let method = request.method().clone();
        let url = self.redaction.url(request.url());
        let hop = request.hop();
        let client = next.client().clone();
        let started = Instant::now();
        let outcome = next.run(request).await;
        let record = Record {
            method: method.as_str(),
            url,
            hop,
            status: outcome
                .as_ref()
                .ok()
                .map(|response| response.status().as_u16()),
            // The error names the URL too: shown through the same redaction.
            error: outcome
                .as_ref()
                .err()
                .map(|err| err.to_string_with_url(|url| self.redaction.url(url))),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        let sent = client
            .post(self.endpoint.clone())
            .no_middleware()
            .timeout(self.timeout)
            .json(&record)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::warn!(
                    status = response.status().as_u16(),
                    "log service refused a record"
                )
            }
            Err(err) => tracing::warn!(error = %err, "log service failed"),
        }
        outcome
    }
}
