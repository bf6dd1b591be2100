//! [`ErrorService`], the service the error layer makes, and its [`ResponseFuture`].

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::HeaderValue;

use http::response::Parts;
use http::{Request, Response, request};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;
use tower::BoxError;
use tower_layer::Layer;
use tower_service::Service;

use super::builder::{Config, ErrorLayer, HandlerFuture, ServiceError};
use super::policy::{Failure, REWRITE_LIMIT, RequestInfo, Step, finish_custom};
use crate::server::body::ErrorBody;
use crate::server::http_error::{HttpError, into_error_response};
use crate::server::panic::panic_message;

impl<S, E> Layer<S> for ErrorLayer<E> {
    type Service = ErrorService<S, E>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorService {
            inner,
            config: self.config.clone(),
            ready_error: None,
            _error: PhantomData,
        }
    }
}

/// The service made by [`ErrorLayer`].
pub struct ErrorService<S, E = Infallible> {
    inner: S,
    config: Arc<Config>,
    // An error from the inner `poll_ready`, answered as a 500 by the next call.
    ready_error: Option<BoxError>,
    _error: PhantomData<fn() -> E>,
}

impl<S: Clone, E> Clone for ErrorService<S, E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
            ready_error: None,
            _error: PhantomData,
        }
    }
}

impl<S: fmt::Debug, E> fmt::Debug for ErrorService<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, E, ReqBody, ResBody> Service<Request<ReqBody>> for ErrorService<S, E>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
    E: ServiceError,
{
    type Response = Response<ErrorBody<ResBody>>;
    type Error = E;
    type Future = ResponseFuture<S::Future, ResBody, E>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.ready_error.is_none() {
            if let Err(err) = ready!(self.inner.poll_ready(cx)) {
                match self.config.pass::<E>(err.into()) {
                    Ok(passed) => return Poll::Ready(Err(passed)),
                    Err(err) => self.ready_error = Some(err),
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let request = RequestInfo::new(
            &self.config,
            req.method(),
            req.uri(),
            req.version(),
            req.headers(),
            req.extensions(),
        );
        let state = match self.ready_error.take() {
            Some(err) => State::Failed {
                failure: Some(Failure::Service(err)),
            },
            None => match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
                Ok(future) => State::Running { future },
                Err(payload) => State::Failed {
                    failure: Some(Failure::Panic(panic_message(&*payload))),
                },
            },
        };
        ResponseFuture {
            state,
            request,
            _error: PhantomData,
        }
    }
}

pin_project! {
    /// Response future of [`ErrorService`].
    pub struct ResponseFuture<F, B, E = Infallible> {
        #[pin]
        pub(super) state: State<F, B>,
        pub(super) request: RequestInfo,
        pub(super) _error: PhantomData<fn() -> E>,
    }
}

pin_project! {
    #[project = StateProj]
    pub(super) enum State<F, B> {
        Running { #[pin] future: F },
        // Reading a small error body to render it (`ErrorLayerBuilder::rewrite_bodies`).
        Collecting { parts: Option<Parts>, #[pin] body: B, buffer: Vec<u8> },
        // A custom handler renders the error; `fallback` is the built-in document.
        Handling { parts: Option<Parts>, fallback: Option<(HeaderValue, Bytes)>, future: HandlerFuture },
        Failed { failure: Option<Failure> },
    }
}

impl<F, B, E, Err> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, Err>>,
    Err: Into<BoxError>,
    B: Body<Data = Bytes>,
    E: ServiceError,
{
    type Output = Result<Response<ErrorBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let step = match this.state.as_mut().project() {
                StateProj::Running { future } => {
                    match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(Ok(response))) => {
                            let status = response.status();
                            if !(status.is_client_error() || status.is_server_error()) {
                                // Not an error (most responses): passed on as it is.
                                return Poll::Ready(Ok(response.map(ErrorBody::inner)));
                            }
                            if !this.request.should_rewrite(&response) {
                                this.request.on_response(response)
                            } else {
                                let (parts, body) = response.into_parts();
                                this.state.set(State::Collecting {
                                    parts: Some(parts),
                                    body,
                                    buffer: Vec::new(),
                                });
                                continue;
                            }
                        }
                        Ok(Poll::Ready(Err(err))) => {
                            match this.request.config.pass::<E>(err.into()) {
                                Ok(passed) => return Poll::Ready(Err(passed)),
                                Err(err) => this.request.on_failure(Failure::Service(err)),
                            }
                        }
                        Err(payload) => this
                            .request
                            .on_failure(Failure::Panic(panic_message(&*payload))),
                    }
                }
                StateProj::Collecting {
                    parts,
                    mut body,
                    buffer,
                } => {
                    let complete = loop {
                        match ready!(body.as_mut().poll_frame(cx)) {
                            Some(Ok(frame)) => {
                                if let Ok(data) = frame.into_data() {
                                    buffer.extend_from_slice(&data);
                                }
                                // The size hint promised at most the limit; do not trust it.
                                if buffer.len() as u64 > REWRITE_LIMIT {
                                    break false;
                                }
                            }
                            Some(Err(_)) => break false,
                            None => break true,
                        }
                    };
                    let text = if complete {
                        std::str::from_utf8(buffer).ok().map(str::trim)
                    } else {
                        None
                    };
                    match parts.take() {
                        Some(parts) => this.request.on_rewritten(parts, text),
                        None => this.request.on_failure(Failure::Panic(
                            "response future polled after completion".into(),
                        )),
                    }
                }
                StateProj::Handling {
                    parts,
                    fallback,
                    future,
                } => {
                    let outcome = match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx)))
                    {
                        Ok(Poll::Pending) => return Poll::Pending,
                        Ok(Poll::Ready(custom)) => Ok(custom),
                        Err(payload) => Err(payload),
                    };
                    match (parts.take(), fallback.take()) {
                        (Some(parts), Some((content_type, body))) => {
                            let method = Some(&this.request.method);
                            let response = match outcome {
                                Ok(custom) => finish_custom(parts, method, custom),
                                Err(payload) => {
                                    tracing::error!(
                                        panic = %panic_message(&*payload),
                                        "error handler panicked; using the built-in rendering"
                                    );
                                    into_error_response(parts, method, Some(content_type), body)
                                }
                            };
                            return Poll::Ready(Ok(response));
                        }
                        _ => this.request.on_failure(Failure::Panic(
                            "response future polled after completion".into(),
                        )),
                    }
                }
                StateProj::Failed { failure } => {
                    let failure = failure.take().unwrap_or_else(|| {
                        Failure::Panic("response future polled after completion".into())
                    });
                    this.request.on_failure(failure)
                }
            };
            match step {
                Step::Done(response) => return Poll::Ready(Ok(response)),
                Step::Handle {
                    parts,
                    fallback,
                    future,
                } => this.state.set(State::Handling {
                    parts: Some(parts),
                    fallback: Some(fallback),
                    future,
                }),
            }
        }
    }
}

impl<F, B, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

impl<E> ErrorLayer<E> {
    /// Renders `error` for `request` the way the layer renders an [`HttpError`] response of the
    /// inner service: the same handlers, format, skipped statuses and paths, and log event
    /// (aiohttp's `get_error_response`). For custom middlewares that make errors of their own.
    ///
    /// ```
    /// use http::{Request, StatusCode};
    /// use stopover::server::error::{ErrorFormat, ErrorLayer, HttpError};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = ErrorLayer::builder().format(ErrorFormat::ProblemJson).build()?;
    /// let (request, ()) = Request::get("/items/7").body(()).unwrap().into_parts();
    /// let response = layer
    ///     .error_response(&request, HttpError::new(StatusCode::GONE, "item 7 was deleted"))
    ///     .await;
    /// assert_eq!(response.status(), StatusCode::GONE);
    /// assert_eq!(response.headers()["content-type"], "application/problem+json");
    /// # Ok(())
    /// # }
    /// ```
    pub fn error_response(
        &self,
        request: &request::Parts,
        error: HttpError,
    ) -> impl Future<Output = Response<Bytes>> + Send + 'static {
        let info = RequestInfo::new(
            &self.config,
            &request.method,
            &request.uri,
            request.version,
            &request.headers,
            &request.extensions,
        );
        let response: Response<Full<Bytes>> = error.into();
        let future = ResponseFuture::<_, _, Infallible> {
            state: State::Running {
                future: std::future::ready(Ok::<_, Infallible>(response)),
            },
            request: info,
            _error: PhantomData,
        };
        async move {
            let Ok(response) = future.await;
            let (parts, body) = response.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            Response::from_parts(parts, body)
        }
    }
}
