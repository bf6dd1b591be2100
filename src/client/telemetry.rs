//! What the client records by itself: a tracing span per call and per request on the wire,
//! named and shaped by OpenTelemetry's HTTP client semantic conventions (semantic conventions
//! v1.44.0; the HTTP conventions have been stable since v1.23.0), metrics with the `metrics`
//! feature, and W3C trace context with the `opentelemetry` feature. Since v1.37: `QUERY` is a
//! known method (v1.38); a request the caller cancels (its future dropped) ends its spans
//! without an error, as v1.41 asks; the client records no `error.message` (deprecated in
//! v1.40); a call that fails with an error is one `http.client.request.exception` event
//! (v1.40; see [Exception events](#exception-events)).
//!
//! Nothing needs to be added for it: it is built in, not a middleware, so that no middleware
//! list can leave a request on the wire without its span, and every wire span sees the request
//! exactly as it is sent. A subscriber that records INFO spans sees it:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Any subscriber; `tracing-opentelemetry` turns the spans into OpenTelemetry spans.
//! tracing_subscriber::fmt().with_max_level(tracing::Level::INFO).init();
//! let client = stopover::client::Client::new();
//! // One logical span `GET`, one wire span `GET` inside it per hop or attempt.
//! client.get("http://127.0.0.1:8080/").send().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Spans
//!
//! Every `send` opens one span for the logical request, and the transport opens one child span
//! for each request that goes on the wire: each redirect hop and each attempt a middleware
//! (a [`Retry`](super::retry::Retry), a challenge answer) makes. The middleware chain runs
//! inside the logical span, so a middleware's own span (the
//! [`Logging`](super::logging::Logging) middleware's `http_request`) sits between the logical
//! span and the wire spans of the requests it passes on, and shows the method and URL again.
//!
//! Both spans are INFO spans named after the method (`GET`, `POST`, ...; `HTTP` for a method the
//! conventions do not list, as they prescribe), with these fields:
//!
//! | field | logical span | wire span |
//! |---|---|---|
//! | `otel.kind` | `client` | `client` |
//! | `http.request.method` (`_OTHER` for an unlisted method, with `http.request.method_original`) | yes | yes |
//! | `url.full` (through [`ClientBuilder::span_redaction`](super::ClientBuilder::span_redaction): no credentials or fragment, and by default the query keys the conventions name are hidden) | the URL asked for | the URL of the hop |
//! | `server.address`, `server.port` | yes | yes |
//! | `user_agent.original` | | yes |
//! | `network.protocol.version` (`1.0`, `1.1`, `2`, `3`) | | yes |
//! | `http.request.resend_count` (absent on the first request) | | yes |
//! | `http.response.status_code` | the final status | the hop's status |
//! | `error.type` (the status code for 4xx and 5xx, else the error kind) | on failure | on failure |
//! | `otel.status_code` = `ERROR` | on failure | on failure |
//!
//! `url.full` goes through the client's
//! [`span_redaction`](super::ClientBuilder::span_redaction) (by default: no user name or
//! password, no fragment, and the values of the query keys `AWSAccessKeyId`, `Signature`,
//! `sig` and `X-Goog-Signature` replaced), so a signed URL does not reach the trace backend.
//! Headers are never recorded on the spans, only the `User-Agent`.
//!
//! A timeout of the whole call before the head is recorded on the logical span; a body read
//! that runs out of the [`timeout`](super::ClientBuilder::timeout) afterwards is returned by
//! the read, after the span has ended.
//!
//! # Exception events
//!
//! A call that ends in an error (not a response: a refused connection, a timeout, an SSRF
//! refusal, a middleware's error) emits one WARN event named `http.client.request.exception`
//! inside its logical span, with `exception.type` (the same low-cardinality kind as `error.type`)
//! and `exception.message` (the error's text, whose URL is already without credentials). A 4xx or
//! 5xx response is not an exception and emits none, and neither does a call its caller cancels.
//! The failed attempts a middleware retried show on their wire spans through `error.type` only.
//!
//! # Trace context
//!
//! With the `opentelemetry` feature, every request on the wire carries the trace context of
//! its wire span (`traceparent` and `tracestate` with the W3C propagator), written by the
//! global text-map propagator (`opentelemetry::global::set_text_map_propagator`) from the span's
//! OpenTelemetry context (`tracing-opentelemetry`), so the server's spans join the client's
//! trace. It is injected everywhere by default, as reqwest-tracing does; origins named with
//! [`ClientBuilder::trace_context_exclude`](../struct.ClientBuilder.html#method.trace_context_exclude) never
//! receive it, on any hop.
//!
//! # Metrics
//!
//! With the `metrics` feature, the client reports through the [`metrics`](https://docs.rs/metrics)
//! facade: the `http.client.request.duration` histogram (seconds, one value per request on the
//! wire) with `http.request.method`, `server.address`, `server.port`, `url.scheme`,
//! `network.protocol.version`, `http.response.status_code` and `error.type`, and the counters
//! `stopover.client.retries`, `stopover.client.token.refreshes` (with `outcome` = `ok` or
//! `error`) and `stopover.client.ssrf.refusals` (with `rule` and `mode` = `enforced` or
//! `report_only`). The facade, not OpenTelemetry metrics, because it leaves the exporter to the
//! application (Prometheus, StatsD, or OpenTelemetry through a bridge) and adds one small crate
//! and no global SDK to the library; a histogram's buckets belong to the exporter, so the
//! conventions' boundaries are [`DURATION_BUCKETS`], ready to hand to it.
//!
//! # Cost
//!
//! Like any `tracing` span, they cost next to nothing when no subscriber listens. The
//! `tracing-opentelemetry` layer turns them into OpenTelemetry spans (it reads `otel.kind` and
//! `otel.status_code` as the span kind and status).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use http::header::USER_AGENT;
use http::{HeaderMap, Method, StatusCode, Version};
use tracing::Span;
use tracing::field::Empty;
use url::Url;

use super::error::{Error, ErrorKind, Result};
use super::redaction::{QueryRedaction, Redaction};
use super::response::Response;

/// Request extension shared by every request on the wire of one logical request: how many went
/// before.
#[derive(Debug, Clone, Default)]
pub(crate) struct WireCount(Arc<AtomicU32>);

impl WireCount {
    /// The number of requests sent before this one, counting this one as sent.
    fn next(&self) -> u32 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// The method as the conventions name it: the known methods as they are, others `_OTHER`.
fn method_name(method: &Method) -> (&'static str, bool) {
    let known = match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        // The QUERY method (draft-ietf-httpbis-safe-method-w-body), known since v1.38.
        _ if method.as_str() == "QUERY" => "QUERY",
        _ => return ("_OTHER", false),
    };
    (known, true)
}

/// A span named after the method (`tracing` span names are static, hence one call per name).
macro_rules! method_span {
    ($method:expr, $($fields:tt)*) => {
        match $method {
            "GET" => tracing::info_span!("GET", $($fields)*),
            "HEAD" => tracing::info_span!("HEAD", $($fields)*),
            "POST" => tracing::info_span!("POST", $($fields)*),
            "PUT" => tracing::info_span!("PUT", $($fields)*),
            "DELETE" => tracing::info_span!("DELETE", $($fields)*),
            "CONNECT" => tracing::info_span!("CONNECT", $($fields)*),
            "OPTIONS" => tracing::info_span!("OPTIONS", $($fields)*),
            "TRACE" => tracing::info_span!("TRACE", $($fields)*),
            "PATCH" => tracing::info_span!("PATCH", $($fields)*),
            "QUERY" => tracing::info_span!("QUERY", $($fields)*),
            _ => tracing::info_span!("HTTP", $($fields)*),
        }
    };
}

/// The default redaction of `url.full`: credentials and the query keys the conventions name.
pub(crate) fn default_redaction() -> Redaction {
    Redaction::default().query(QueryRedaction::Keys(
        ["AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"]
            .map(String::from)
            .to_vec(),
    ))
}

fn span_for(redaction: &Redaction, method: &Method, url: &Url) -> Span {
    let (name, known) = method_name(method);
    let span = method_span!(
        name,
        otel.kind = "client",
        http.request.method = name,
        http.request.method_original = Empty,
        url.full = %redaction.url(url),
        server.address = url.host_str(),
        server.port = url.port_or_known_default(),
        user_agent.original = Empty,
        network.protocol.version = Empty,
        http.request.resend_count = Empty,
        http.response.status_code = Empty,
        error.type = Empty,
        otel.status_code = Empty,
    );
    if !known {
        span.record("http.request.method_original", method.as_str());
    }
    span
}

/// The span of one logical request (all its hops and attempts).
pub(crate) fn logical_span(redaction: &Redaction, method: &Method, url: &Url) -> Span {
    span_for(redaction, method, url)
}

/// The span of one request on the wire, with its resend count taken from `count`.
pub(crate) fn wire_span(
    redaction: &Redaction,
    method: &Method,
    url: &Url,
    headers: &HeaderMap,
    count: Option<&WireCount>,
) -> Span {
    let span = span_for(redaction, method, url);
    if span.is_disabled() {
        return span;
    }
    if let Some(agent) = headers.get(USER_AGENT).and_then(|v| v.to_str().ok()) {
        span.record("user_agent.original", agent);
    }
    if let Some(resends) = count.map(WireCount::next).filter(|n| *n > 0) {
        span.record("http.request.resend_count", resends);
    }
    span
}

/// The conventions' spelling of an HTTP version.
fn protocol_version(version: Version) -> Option<&'static str> {
    Some(match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => return None,
    })
}

/// A low-cardinality name for an error, for `error.type`.
fn error_type(err: &Error) -> &'static str {
    match err.kind() {
        ErrorKind::Builder => "builder",
        ErrorKind::Connect => "connect",
        ErrorKind::Tls => "tls",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Transport => "transport",
        ErrorKind::Refused => "refused",
        ErrorKind::TooManyRedirects => "too_many_redirects",
        ErrorKind::Recursion => "recursion",
        ErrorKind::BodyNotReplayable => "body_not_replayable",
        ErrorKind::Middleware => "middleware",
        ErrorKind::Status => "status",
        ErrorKind::Decode => "decode",
        #[allow(unreachable_patterns)]
        _ => "_OTHER",
    }
}

fn record_status(span: &Span, status: StatusCode) {
    span.record("http.response.status_code", status.as_u16());
    // Client spans: every 4xx and 5xx is an error, and its status code is its type.
    if status.is_client_error() || status.is_server_error() {
        span.record("error.type", status.as_str());
        span.record("otel.status_code", "ERROR");
    }
}

/// Records the outcome of a request on `span`.
pub(crate) fn record(span: &Span, outcome: &Result<Response>, wire: bool) {
    match outcome {
        Ok(response) => {
            if let Some(version) = protocol_version(response.version()).filter(|_| wire) {
                span.record("network.protocol.version", version);
            }
            record_status(span, response.status());
        }
        Err(err) => {
            span.record("error.type", error_type(err));
            span.record("otel.status_code", "ERROR");
            // The call's failure is an exception in the conventions' sense (v1.40), once per
            // logical request; a status error is not (the conventions ask not to record those).
            if !wire && err.kind() != ErrorKind::Status {
                tracing::event!(
                    name: "http.client.request.exception",
                    parent: span,
                    tracing::Level::WARN,
                    exception.type = error_type(err),
                    exception.message = %err,
                    "call ended in an error"
                );
            }
        }
    }
}

/// The bucket boundaries (seconds) OpenTelemetry's conventions advise for
/// `http.client.request.duration`.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Records the duration of one request on the wire.
#[cfg(feature = "metrics")]
pub(crate) fn record_duration(
    method: &Method,
    url: &Url,
    outcome: &Result<Response>,
    seconds: f64,
) {
    let (name, _) = method_name(method);
    let mut labels = vec![
        ::metrics::Label::new("http.request.method", name),
        ::metrics::Label::new("url.scheme", url.scheme().to_owned()),
    ];
    if let Some(host) = url.host_str() {
        labels.push(::metrics::Label::new("server.address", host.to_owned()));
    }
    if let Some(port) = url.port_or_known_default() {
        labels.push(::metrics::Label::new("server.port", port.to_string()));
    }
    match outcome {
        Ok(response) => {
            let status = response.status();
            if let Some(version) = protocol_version(response.version()) {
                labels.push(::metrics::Label::new("network.protocol.version", version));
            }
            labels.push(::metrics::Label::new(
                "http.response.status_code",
                status.as_str().to_owned(),
            ));
            if status.is_client_error() || status.is_server_error() {
                labels.push(::metrics::Label::new(
                    "error.type",
                    status.as_str().to_owned(),
                ));
            }
        }
        Err(err) => labels.push(::metrics::Label::new("error.type", error_type(err))),
    }
    ::metrics::histogram!("http.client.request.duration", labels).record(seconds);
}

/// Writes the trace context of `span` into `headers`, unless `url`'s origin is excluded.
#[cfg(feature = "opentelemetry")]
pub(crate) fn inject(span: &Span, url: &Url, headers: &mut HeaderMap, excluded: &[url::Origin]) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    struct Headers<'a>(&'a mut HeaderMap);

    impl opentelemetry::propagation::Injector for Headers<'_> {
        fn set(&mut self, key: &str, value: String) {
            // A propagator writes valid names and values; one that does not is skipped.
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(key.as_bytes()),
                http::HeaderValue::from_str(&value),
            ) {
                self.0.insert(name, value);
            }
        }
    }

    if !excluded.is_empty() && excluded.contains(&url.origin()) {
        return;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut Headers(headers));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_a_known_method_and_others_are_other() {
        assert_eq!(
            method_name(&Method::from_bytes(b"QUERY").unwrap()),
            ("QUERY", true)
        );
        assert_eq!(method_name(&Method::PATCH), ("PATCH", true));
        assert_eq!(
            method_name(&Method::from_bytes(b"PURGE").unwrap()),
            ("_OTHER", false)
        );
    }
}
