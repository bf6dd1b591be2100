//! Answers a request whose response head is not ready in time with a 504 in the error layer's
//! JSON shape, with per-path durations and rules to exempt paths or path-and-method pairs.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use axum::{Router, routing::{get, post}};
//! use http::{Method, StatusCode};
//! use stopover::server::matcher::{PathMatcher, PathRule};
//! use stopover::server::timeout::TimeoutLayer;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let timeout = TimeoutLayer::builder(Duration::from_secs(10))
//!     // Slow reports get a minute; the first matching rule wins.
//!     .path_timeout(PathMatcher::prefix("/reports/")?, Duration::from_secs(60))
//!     // Event streams and uploads are not limited.
//!     .ignore(PathMatcher::exact("/events")?)
//!     .ignore(PathRule::with_methods(PathMatcher::exact("/upload")?, [Method::POST])?)
//!     .status(StatusCode::SERVICE_UNAVAILABLE)
//!     .build()?;
//!
//! let app: Router = Router::new()
//!     .route("/events", get(|| async { "stream" }))
//!     .route("/upload", post(|| async { "stored" }))
//!     .layer(timeout);
//! # Ok(())
//! # }
//! ```
//!
//! # Compared with aiohttp-middlewares and tower-http
//!
//! aiohttp-middlewares' `timeout_middleware` raises `TimeoutError`, which its own error
//! middleware turns into `500 {"detail": ""}`; tower-http's `TimeoutLayer` answers with an
//! empty body and has one duration for every route. This layer answers with a response, not an
//! error: `504 {"detail": "Request timed out"}` (the status is configurable), carrying an
//! [`HttpError`] so an outer [`ErrorLayer`](super::error::ErrorLayer) renders it like every
//! other error (as problem details, or with a custom handler), and an outer CORS layer adds its
//! headers to it. [`TimeoutLayerBuilder::path_timeout`] sets durations per path (first match wins) and
//! [`TimeoutLayerBuilder::ignore`] exempts streams, uploads or websockets.
//!
//! A request that timed out records `timed_out = true` on the current span, when that span
//! declared the field (`timed_out = tracing::field::Empty`, as in a tower-http `TraceLayer`'s
//! `make_span_with`): `tracing` keeps only the fields a span declared.
//!
//! # What the timeout covers
//!
//! The clock starts when the request reaches this layer and stops when the inner service has
//! produced the response **head** (status and headers). It covers the inner layers and the
//! handler, including the handler reading the request body. It does **not** cover streaming the
//! response body: once the head is ready the body flows with no limit from this layer, so a
//! server-sent-event stream or a large download is never cut (and never replaced by an error
//! page after its head was sent).
//!
//! On timeout the inner response future is **dropped**: the handler is cancelled at the
//! `.await` it was waiting on, and nothing after it runs. Put a shield layer inside this one for
//! work that must finish anyway.
//!
//! The happy path allocates nothing: the only per-request cost is the timer, and the 504 body is
//! rendered when the layer is built.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

use super::body::ErrorBody;
use super::http_error::{ErrorFormat, HttpError, into_error_response, render};
use super::matcher::{PathMap, PathRule, PathRules};

const DETAIL: &str = "Request timed out";

/// A configuration the timeout layer refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TimeoutConfigError {
    /// A duration is zero, which would time out every request that waits for anything.
    #[error("timeout for {what} is zero; use `ignore` to exempt requests from the timeout")]
    ZeroDuration {
        /// `"every request"`, or the path pattern of a per-path duration.
        what: String,
    },
    /// The timeout status is not a 4xx or 5xx status.
    #[error("timeout status {status} is not a 4xx or 5xx status")]
    NotAnErrorStatus {
        /// The refused status.
        status: StatusCode,
    },
}

#[derive(Clone)]
struct Config {
    duration: Duration,
    status: StatusCode,
    body: Bytes,
    ignore: PathRules,
    durations: PathMap<Duration>,
}

/// Bounds the time to the response head; see the [module docs](self).
#[derive(Clone)]
pub struct TimeoutLayer {
    config: Arc<Config>,
}

/// Builds a [`TimeoutLayer`]; every setter states its default. Made by
/// [`TimeoutLayer::builder`].
#[derive(Clone, Debug)]
pub struct TimeoutLayerBuilder {
    duration: Duration,
    status: StatusCode,
    ignore: PathRules,
    durations: PathMap<Duration>,
}

impl TimeoutLayerBuilder {
    /// The status of a timed-out request. Default: 504 Gateway Timeout (503 suits a server
    /// behind a proxy that retries 503s; 408 makes browsers resend the request). A status that
    /// is not 4xx or 5xx makes [`build`](Self::build) fail.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Exempts requests that `rules` match from the timeout (a [`PathRule`] with methods
    /// exempts only those methods). Any matching rule exempts. Default: none.
    ///
    /// `rules` is a [`PathMatcher`](super::matcher::PathMatcher), a [`PathRule`] or a
    /// [`PathRules`]; each call adds its rules to the earlier ones, as every layer's `urls`,
    /// `paths` and `ignore` do.
    pub fn ignore(mut self, rules: impl Into<PathRules>) -> Self {
        self.ignore.append(rules);
        self
    }

    /// Gives requests that `rule` matches `duration` instead of the layer's. Rules are tried in
    /// the order they were added; the first match wins. Ignore rules are checked first.
    /// Default: none.
    pub fn path_timeout(mut self, rule: impl Into<PathRule>, duration: Duration) -> Self {
        self.durations.push(rule, duration);
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// [`TimeoutConfigError::ZeroDuration`] when a duration is zero,
    /// [`TimeoutConfigError::NotAnErrorStatus`] when the status is not 4xx or 5xx.
    pub fn build(self) -> Result<TimeoutLayer, TimeoutConfigError> {
        let duration = self.duration;
        if duration.is_zero() {
            return Err(TimeoutConfigError::ZeroDuration {
                what: "every request".to_owned(),
            });
        }
        if let Some((rule, _)) = self.durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(TimeoutConfigError::ZeroDuration {
                what: rule.path().as_str().to_owned(),
            });
        }
        let status = self.status;
        if !(status.is_client_error() || status.is_server_error()) {
            return Err(TimeoutConfigError::NotAnErrorStatus { status });
        }
        Ok(TimeoutLayer {
            config: Arc::new(Config {
                duration,
                status,
                body: render(ErrorFormat::Json, status, DETAIL, None, None),
                ignore: self.ignore,
                durations: self.durations,
            }),
        })
    }
}

impl TimeoutLayer {
    /// A builder for a layer that gives every request `duration` to its response head, unless
    /// a per-path duration or an ignore rule says otherwise. The duration is required: there
    /// is no default, and a zero duration makes [`build`](TimeoutLayerBuilder::build) fail.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stopover::server::timeout::TimeoutLayer;
    ///
    /// let layer = TimeoutLayer::builder(Duration::from_secs(10)).build()?;
    /// # let _ = layer;
    /// # Ok::<(), stopover::server::timeout::TimeoutConfigError>(())
    /// ```
    pub fn builder(duration: Duration) -> TimeoutLayerBuilder {
        TimeoutLayerBuilder {
            duration,
            status: StatusCode::GATEWAY_TIMEOUT,
            ignore: PathRules::new(),
            durations: PathMap::new(),
        }
    }

    /// The duration, if any, for a request with this method and URI (its raw path).
    fn duration_for(&self, method: &Method, uri: &http::Uri) -> Option<Duration> {
        let config = &self.config;
        if config.ignore.is_empty() && config.durations.is_empty() {
            // No rule: the path need not even be read.
            return Some(config.duration);
        }
        let path = uri.path();
        if config.ignore.matches(method, path) {
            return None;
        }
        Some(
            config
                .durations
                .get(method, path)
                .copied()
                .unwrap_or(config.duration),
        )
    }
}

impl fmt::Debug for TimeoutLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutLayer")
            .field("duration", &self.config.duration)
            .field("status", &self.config.status)
            .field("ignore", &self.config.ignore)
            .field("durations", &self.config.durations)
            .finish()
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`TimeoutLayer`].
#[derive(Clone)]
pub struct Timeout<S> {
    inner: S,
    layer: TimeoutLayer,
}

impl<S: fmt::Debug> fmt::Debug for Timeout<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Timeout<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ErrorBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The deadline counts from here; the timer itself is made only if the inner future
        // is not ready at its first poll (most handlers that answer at once never need one).
        let deadline = self
            .layer
            .duration_for(req.method(), req.uri())
            .map(|duration| Instant::now() + duration);
        let is_head = req.method() == Method::HEAD;
        ResponseFuture {
            inner: self.inner.call(req),
            deadline,
            sleep: None,
            config: self.layer.config.clone(),
            is_head,
        }
    }
}

pin_project! {
    /// Response future of [`Timeout`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        // `None` when the request is exempt from the timeout.
        deadline: Option<Instant>,
        // Made from `deadline` at the first poll that finds the inner future pending.
        #[pin]
        sleep: Option<Sleep>,
        config: Arc<Config>,
        is_head: bool,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ErrorBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map(|response| response.map(ErrorBody::inner)));
        }
        if this.sleep.is_none() {
            let Some(deadline) = *this.deadline else {
                return Poll::Pending;
            };
            this.sleep.set(Some(tokio::time::sleep_until(deadline)));
        }
        let Some(sleep) = this.sleep.as_pin_mut() else {
            return Poll::Pending;
        };
        ready!(sleep.poll(cx));
        tracing::debug!(status = this.config.status.as_u16(), "request timed out");
        // Kept only by a span that declared the field (`timed_out = tracing::field::Empty`).
        tracing::Span::current().record("timed_out", true);
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = this.config.status;
        parts
            .extensions
            .insert(HttpError::new(this.config.status, DETAIL));
        let method = this.is_head.then_some(&Method::HEAD);
        Poll::Ready(Ok(into_error_response(
            parts,
            method,
            Some(ErrorFormat::Json.content_type()),
            this.config.body.clone(),
        )))
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("deadline", &self.deadline)
            .field("timer_running", &self.sleep.is_some())
            .finish_non_exhaustive()
    }
}
