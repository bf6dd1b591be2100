//! Lets a handler run to completion when the client disconnects, instead of being dropped
//! half-way.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{Extension, Router, routing::post};
//! use stopover::server::shield::{ClientGone, ShieldLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), stopover::server::shield::ShieldConfigError> {
//! let shield = ShieldLayer::builder()
//!     .max_in_flight(256)
//!     .max_outlive(Duration::from_secs(10))
//!     .build()?;
//! let handle = shield.handle();
//!
//! let app: Router = Router::new()
//!     .route("/orders", post(|Extension(gone): Extension<ClientGone>| async move {
//!         // ... work that must not stop half-way ...
//!         if gone.is_gone() {
//!             tracing::info!("order stored; the client left before the answer");
//!         }
//!         "stored"
//!     }))
//!     .layer(shield);
//!
//! // axum::serve(listener, app).with_graceful_shutdown(signal).await?;
//! // Then let detached shielded work finish:
//! handle.shutdown().await;
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! # Compared with aiohttp-middlewares and tower-http
//!
//! hyper (and so axum) drops the response future of a request whose client has gone, which
//! cancels the handler at whatever `.await` it was on: a payment half-recorded, a pooled
//! connection returned mid-transaction. `ShieldLayer` moves selected requests (by default
//! `POST`, `PUT`, `PATCH` and `DELETE`; by path alone, every method, with
//! [`ShieldLayerBuilder::all_methods`]) into a task of their own with `tokio::spawn` and
//! awaits its `JoinHandle`; dropping the response future then only detaches the task. This
//! differs from aiohttp-middlewares' `shield_middleware` (which wraps `asyncio.shield` and
//! is inert on modern aiohttp, which no longer cancels handlers) and from tower-http's
//! `OnEarlyDrop` (which only observes the drop) in three ways:
//!
//! - a [`ClientGone`] extension tells a shielded handler that nobody waits for its answer
//!   any more, so it can stop early where that is safe;
//! - a [`ShieldHandle`] lets graceful shutdown wait for every shielded task, including the
//!   detached ones;
//! - a panic in shielded work becomes a `500` response (with an empty body, which an outer
//!   error layer can render) and is logged, instead of a lost task.
//!
//! A shielded request records `shielded = true` on the current span, when that span declared
//! the field (`shielded = tracing::field::Empty`): `tracing` keeps only the fields a span
//! declared.
//!
//! # Bounds
//!
//! Shielded work is bounded two ways, so clients that leave (or trickle a request body and
//! then leave) cannot pile up work the server keeps doing for nobody:
//!
//! - **In flight** ([`ShieldLayerBuilder::max_in_flight`], default
//!   [`DEFAULT_MAX_IN_FLIGHT`]): at most this many shielded tasks exist at once, detached
//!   ones included. At the bound a new request that would be shielded is answered at once
//!   with `503 Service Unavailable` and the handler is not called; the slot frees when a
//!   shielded task finishes, not when its client leaves.
//! - **Outliving the client** ([`ShieldLayerBuilder::max_outlive`], default
//!   [`DEFAULT_MAX_OUTLIVE`]): once its client has gone (and [`ClientGone`] fired), a
//!   shielded task may run this much longer. At the bound shielding stops for that task:
//!   its handler is dropped at whatever `.await` it is on, exactly as an unshielded one
//!   would have been when the client left, a warning is logged, and its slot frees. A
//!   handler whose work may take longer raises the bound, or watches [`ClientGone`] and
//!   finishes early.
//!
//! The defaults suit handlers that finish their critical section in seconds; both are
//! about shielded work only and never limit unshielded requests.
//!
//! # Requirements
//!
//! The inner service's future must be `Send + 'static` (it runs on the tokio runtime, so
//! the layer must be used inside one), and so must its response and error; the response
//! body must implement `Default` (for the `500` and `503`). The inner service itself need
//! not be `Clone`: it is called where it was polled ready, and only its future is spawned.
//! axum's `Router` meets all of this.
//!
//! A shield placed inside a timeout layer keeps the work going after the timeout answered
//! (the timeout drops the future just as a leaving client does); placed outside, the timeout
//! cancels the handler. Pick the order that says what you mean.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

use crate::server::matcher::PathRules;
use crate::server::panic::panic_message;

/// How many shielded tasks may exist at once unless
/// [`max_in_flight`](ShieldLayerBuilder::max_in_flight) says otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// How long a shielded task may run after its client left unless
/// [`max_outlive`](ShieldLayerBuilder::max_outlive) says otherwise.
pub const DEFAULT_MAX_OUTLIVE: Duration = Duration::from_secs(30);

/// Request extension of a shielded request: tells the handler whether whoever awaited the
/// response (the client connection, or an outer timeout) has stopped waiting for it.
///
/// It fires when the response future is dropped before the handler finished; it never
/// fires for a request that was answered. Only shielded requests carry it: on a route that
/// may not be shielded, extract it as `Option<Extension<ClientGone>>`.
#[derive(Debug, Clone)]
pub struct ClientGone(CancellationToken);

impl ClientGone {
    /// Whether the client has gone.
    pub fn is_gone(&self) -> bool {
        self.0.is_cancelled()
    }

    /// Completes when the client has gone (never, if it stays until the answer).
    pub async fn gone(&self) {
        self.0.cancelled().await;
    }

    /// The underlying token, to pass to code that takes a `CancellationToken`.
    pub fn token(&self) -> &CancellationToken {
        &self.0
    }
}

/// Lets graceful shutdown wait for shielded work; see [`ShieldLayer::handle`].
#[derive(Debug, Clone)]
pub struct ShieldHandle {
    tracker: TaskTracker,
}

impl ShieldHandle {
    /// How many shielded tasks are running, detached ones included.
    pub fn in_flight(&self) -> usize {
        self.tracker.len()
    }

    /// Waits until every shielded task has finished. Requests that arrive meanwhile are
    /// still shielded and waited for, so stop accepting connections first (for example
    /// with axum's `with_graceful_shutdown`).
    pub async fn shutdown(&self) {
        self.tracker.close();
        self.tracker.wait().await;
        // Leave the tracker usable if the server is started again.
        self.tracker.reopen();
    }
}

/// An invalid [`ShieldLayer`] configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShieldConfigError {
    /// The method list is empty, so nothing would ever be shielded.
    #[error("shield methods list is empty, so no request would be shielded")]
    NoMethods,
    /// The path rules are empty, so nothing would ever be shielded.
    #[error("shield path rules are empty, so no request would be shielded")]
    NoPaths,
    /// `max_in_flight(0)` would refuse every shielded request.
    #[error("max_in_flight must be at least 1")]
    ZeroMaxInFlight,
    /// The in-flight bound is above what tokio's semaphore can count.
    #[error("max_in_flight {max} is above the largest bound supported, {supported}")]
    MaxInFlightTooLarge {
        /// The bound asked for.
        max: usize,
        /// The largest bound supported (`tokio::sync::Semaphore::MAX_PERMITS`).
        supported: usize,
    },
    /// `max_outlive(Duration::ZERO)` would stop shielding the moment a client left, which
    /// is no shield at all.
    #[error("max_outlive must be longer than zero; to shield nothing, leave the layer out")]
    ZeroMaxOutlive,
}

#[derive(Debug)]
struct Config {
    /// `None`: every method.
    methods: Option<Vec<Method>>,
    paths: Option<PathRules>,
    ignore: PathRules,
    permits: Arc<Semaphore>,
    max_outlive: Duration,
}

impl Config {
    fn selects<B>(&self, request: &Request<B>) -> bool {
        let method = request.method();
        let path = request.uri().path();
        self.methods.as_ref().is_none_or(|m| m.contains(method))
            && self.paths.as_ref().is_none_or(|p| p.matches(method, path))
            && !self.ignore.matches(method, path)
    }
}

/// Builds a [`ShieldLayer`]; see [`ShieldLayer::builder`].
#[derive(Debug)]
pub struct ShieldLayerBuilder {
    /// `None`: every method.
    methods: Option<Vec<Method>>,
    paths: Option<PathRules>,
    ignore: PathRules,
    max_in_flight: usize,
    max_outlive: Duration,
}

impl ShieldLayerBuilder {
    /// The methods to shield. Replaces the default `POST`, `PUT`, `PATCH`, `DELETE`, and an
    /// earlier [`all_methods`](Self::all_methods). An empty list makes
    /// [`build`](Self::build) fail with [`ShieldConfigError::NoMethods`].
    ///
    /// ```
    /// use http::Method;
    /// use stopover::server::shield::ShieldLayer;
    ///
    /// let shield = ShieldLayer::builder().methods([Method::POST]).build()?;
    /// # let _ = shield;
    /// # Ok::<(), stopover::server::shield::ShieldConfigError>(())
    /// ```
    pub fn methods<I>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = Method>,
    {
        self.methods = Some(methods.into_iter().collect());
        self
    }

    /// Shields requests of every method, `GET` and custom methods included, so that the
    /// [`paths`](Self::paths) rules alone select what is shielded, as aiohttp-middlewares'
    /// `shield(urls=[...])` does. A rule made with [`PathRule::with_methods`] still limits
    /// its own path to its methods. Replaces [`methods`](Self::methods) (and a later
    /// `methods` call replaces this).
    ///
    /// Without `paths` this shields every request, reads included; each then costs a task
    /// and a slot of [`max_in_flight`](Self::max_in_flight), so list the paths whose work
    /// must not stop half-way.
    ///
    /// [`PathRule::with_methods`]: crate::server::matcher::PathRule::with_methods
    ///
    /// ```
    /// use stopover::server::matcher::{PathMatcher, PathRules};
    /// use stopover::server::shield::ShieldLayer;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Every method on /upload and below /payments/, nothing elsewhere.
    /// let shield = ShieldLayer::builder()
    ///     .all_methods()
    ///     .paths(
    ///         PathRules::new()
    ///             .with(PathMatcher::exact("/upload")?)
    ///             .with(PathMatcher::prefix("/payments/")?),
    ///     )
    ///     .build()?;
    /// # let _ = shield;
    /// # Ok(())
    /// # }
    /// ```
    pub fn all_methods(mut self) -> Self {
        self.methods = None;
        self
    }

    /// Shields only requests matching these rules (and one of the methods, unless
    /// [`all_methods`](Self::all_methods) was called). Default: every path.
    ///
    /// `rules` is a [`PathMatcher`](crate::server::matcher::PathMatcher), a
    /// [`PathRule`](crate::server::matcher::PathRule) or a [`PathRules`]; each call adds its
    /// rules to the earlier ones, as every layer's `urls`, `paths` and `ignore` do. A first call
    /// with an empty [`PathRules`] makes [`build`](Self::build) fail with
    /// [`ShieldConfigError::NoPaths`].
    pub fn paths(mut self, rules: impl Into<PathRules>) -> Self {
        self.paths.get_or_insert_with(PathRules::new).append(rules);
        self
    }

    /// Never shields requests matching these rules (a rule may name methods, so
    /// `PathRule::with_methods(prefix("/stream/"), [POST])` is a path-and-method pair). Default:
    /// none. Each call adds its rules to the earlier ones, as with [`paths`](Self::paths).
    pub fn ignore(mut self, rules: impl Into<PathRules>) -> Self {
        self.ignore.append(rules);
        self
    }

    /// At most this many shielded tasks at once, detached ones included; beyond it a
    /// request that would be shielded gets `503 Service Unavailable` without reaching the
    /// handler (see [Bounds](self#bounds)). Default: [`DEFAULT_MAX_IN_FLIGHT`].
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max;
        self
    }

    /// How long a shielded task may keep running after its client left; past it the
    /// handler is dropped, as an unshielded one would have been (see
    /// [Bounds](self#bounds)). Default: [`DEFAULT_MAX_OUTLIVE`].
    pub fn max_outlive(mut self, max: Duration) -> Self {
        self.max_outlive = max;
        self
    }

    /// Validates the configuration and builds the layer, with a fresh [`ShieldHandle`].
    pub fn build(self) -> Result<ShieldLayer, ShieldConfigError> {
        let methods = match self.methods {
            None => None,
            Some(methods) if methods.is_empty() => return Err(ShieldConfigError::NoMethods),
            Some(methods) => Some(methods),
        };
        if self.paths.as_ref().is_some_and(PathRules::is_empty) {
            return Err(ShieldConfigError::NoPaths);
        }
        match self.max_in_flight {
            0 => return Err(ShieldConfigError::ZeroMaxInFlight),
            max if max > Semaphore::MAX_PERMITS => {
                return Err(ShieldConfigError::MaxInFlightTooLarge {
                    max,
                    supported: Semaphore::MAX_PERMITS,
                });
            }
            _ => {}
        }
        if self.max_outlive.is_zero() {
            return Err(ShieldConfigError::ZeroMaxOutlive);
        }
        Ok(ShieldLayer {
            config: Arc::new(Config {
                methods,
                paths: self.paths,
                ignore: self.ignore,
                permits: Arc::new(Semaphore::new(self.max_in_flight)),
                max_outlive: self.max_outlive,
            }),
            tracker: TaskTracker::new(),
        })
    }
}

/// A [`Layer`] that runs selected requests to completion even when their client leaves;
/// see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ShieldLayer {
    config: Arc<Config>,
    tracker: TaskTracker,
}

impl ShieldLayer {
    /// Starts a builder with the defaults: methods `POST`, `PUT`, `PATCH`, `DELETE` on every
    /// path, nothing ignored, at most [`DEFAULT_MAX_IN_FLIGHT`] shielded tasks, each
    /// outliving its client by at most [`DEFAULT_MAX_OUTLIVE`].
    pub fn builder() -> ShieldLayerBuilder {
        ShieldLayerBuilder {
            methods: Some(vec![
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ]),
            paths: None,
            ignore: PathRules::new(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_outlive: DEFAULT_MAX_OUTLIVE,
        }
    }

    /// The handle that waits for this layer's shielded work (shared by every clone of the
    /// layer and every service it makes).
    pub fn handle(&self) -> ShieldHandle {
        ShieldHandle {
            tracker: self.tracker.clone(),
        }
    }
}

impl<S> Layer<S> for ShieldLayer {
    type Service = Shield<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shield {
            inner,
            config: self.config.clone(),
            tracker: self.tracker.clone(),
        }
    }
}

/// The service made by [`ShieldLayer`].
#[derive(Debug, Clone)]
pub struct Shield<S> {
    inner: S,
    config: Arc<Config>,
    tracker: TaskTracker,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Shield<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        if !self.config.selects(&request) {
            return ResponseFuture {
                kind: Kind::Direct {
                    future: self.inner.call(request),
                },
            };
        }
        let Ok(permit) = self.config.permits.clone().try_acquire_owned() else {
            tracing::warn!(
                method = %request.method(),
                path = request.uri().path(),
                "shield at its bound of in-flight work; answering 503"
            );
            return ResponseFuture {
                kind: Kind::Ready {
                    response: Some(status_response(StatusCode::SERVICE_UNAVAILABLE)),
                },
            };
        };
        // Kept only by a span that declared the field (`shielded = tracing::field::Empty`).
        tracing::Span::current().record("shielded", true);
        let token = CancellationToken::new();
        request.extensions_mut().insert(ClientGone(token.clone()));
        let detached = Detached {
            gone: token.clone(),
            max_outlive: self.config.max_outlive,
            method: request.method().clone(),
            uri: request.uri().clone(),
        };
        let future = self.inner.call(request);
        // The task carries the request's span: what the handler logs, after its client left
        // too, stays in the request's trace.
        let handle = self
            .tracker
            .spawn(run(future, detached, permit).in_current_span());
        ResponseFuture {
            kind: Kind::Shielded {
                handle,
                guard: Some(token.drop_guard()),
            },
        }
    }
}

/// What a shielded task needs to know to stop once it has outlived its client too long.
struct Detached {
    gone: CancellationToken,
    max_outlive: Duration,
    method: Method,
    // A `Uri` clone shares its bytes; only the warning reads it.
    uri: http::Uri,
}

/// Runs shielded work; `None` when it outlived its client by more than the bound and was
/// dropped.
async fn run<F>(future: F, detached: Detached, permit: OwnedSemaphorePermit) -> Option<F::Output>
where
    F: Future,
{
    let Detached {
        gone,
        max_outlive,
        method,
        uri,
    } = detached;
    let output = tokio::select! {
        biased;
        output = future => Some(output),
        () = async {
            gone.cancelled().await;
            tokio::time::sleep(max_outlive).await;
        } => {
            tracing::warn!(
                %method,
                path = uri.path(),
                max_outlive = ?max_outlive,
                "shielded work outlived its client by the bound; dropping it"
            );
            None
        }
    };
    drop(permit);
    output
}

fn status_response<B: Default>(status: StatusCode) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    response
}

fn join_failed<B: Default>(error: JoinError) -> Response<B> {
    match error.try_into_panic() {
        // An exception in the server conventions' sense (v1.40).
        Ok(payload) => tracing::event!(
            name: "http.server.request.exception",
            tracing::Level::ERROR,
            exception.type = "panic",
            exception.message = %panic_message(&*payload),
            "shielded handler panicked; answering 500"
        ),
        Err(_) => tracing::error!("shielded handler was cancelled by the runtime; answering 500"),
    }
    status_response(StatusCode::INTERNAL_SERVER_ERROR)
}

pin_project! {
    /// The response future of [`Shield`]. Dropping it before it completes detaches the
    /// shielded task and fires its [`ClientGone`].
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Direct {
            #[pin]
            future: F,
        },
        Shielded {
            handle: JoinHandle<Option<Result<Response<B>, E>>>,
            guard: Option<DropGuard>,
        },
        Ready {
            response: Option<Response<B>>,
        },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Direct { future } => future.poll(cx),
            KindProj::Shielded { handle, guard } => {
                let joined = std::task::ready!(Pin::new(handle).poll(cx));
                // Answered: the client did not go away before the handler finished.
                if let Some(guard) = guard.take() {
                    guard.disarm();
                }
                Poll::Ready(match joined {
                    Ok(Some(output)) => output,
                    // Only reachable when code other than the layer cancelled the
                    // `ClientGone` token while the client still waited.
                    Ok(None) => Ok(status_response(StatusCode::SERVICE_UNAVAILABLE)),
                    Err(error) => Ok(join_failed(error)),
                })
            }
            KindProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("shield response future polled after completion"),
            },
        }
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
