//! [`ErrorLayer`] and its builder: the configuration, checked when the layer is built.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderName;
use http::request;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::BoxError;

use super::context::ErrorContext;
use super::service::{RequestInfo, ResponseFuture, State};
use crate::server::http_error::{ErrorFormat, HttpError};
use crate::server::matcher::{PathMap, PathRule, PathRules};

pub(super) type HandlerFuture = Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>;
pub(super) type Handler = Arc<dyn Fn(request::Parts, ErrorContext) -> HandlerFuture + Send + Sync>;

pub(super) fn boxed_handler<F, Fut>(handler: F) -> Handler
where
    F: Fn(request::Parts, ErrorContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Bytes>> + Send + 'static,
{
    Arc::new(move |request, context| Box::pin(handler(request, context)))
}

/// A configuration the error layer refuses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorConfigError {
    /// A status given to [`ErrorLayerBuilder::skip_status`] is not a 4xx or 5xx, which the layer never
    /// rewrites anyway.
    #[error(
        "status {status} is not a 4xx or 5xx status, which are the only ones the error layer rewrites"
    )]
    NotAnErrorStatus {
        /// The refused status.
        status: StatusCode,
    },
}

/// Whether an inner service error is of a type given to [`ErrorLayerBuilder::skip_error`].
type ErrorTest = fn(&(dyn std::error::Error + Send + Sync + 'static)) -> bool;

fn is_error<T: std::error::Error + 'static>(
    err: &(dyn std::error::Error + Send + Sync + 'static),
) -> bool {
    err.is::<T>()
}

#[derive(Clone, Default)]
pub(super) struct Config {
    pub(super) format: ErrorFormat,
    pub(super) expose_panic_messages: bool,
    pub(super) expose_error_messages: bool,
    pub(super) rewrite_bodies: bool,
    pub(super) handlers: PathMap<Handler>,
    pub(super) default_handler: Option<Handler>,
    pub(super) skip_statuses: Vec<StatusCode>,
    pub(super) skip_paths: PathRules,
    pub(super) skip_errors: Vec<ErrorTest>,
    pub(super) server_error_level: Option<tracing::Level>,
    pub(super) client_error_level: Option<tracing::Level>,
    pub(super) route: Option<RouteFn>,
    /// Request headers kept for handlers ([`ErrorLayerBuilder::handler_headers`]).
    pub(super) handler_headers: Vec<HeaderName>,
    /// Request extensions kept for handlers ([`ErrorLayerBuilder::handler_extension`]).
    pub(super) handler_extensions: Vec<CopyExtension>,
}

/// Copies one extension type from a request's extensions into the ones kept for a handler.
pub(super) type CopyExtension = fn(&http::Extensions, &mut http::Extensions);

fn copy_extension<T: Clone + Send + Sync + 'static>(
    from: &http::Extensions,
    into: &mut http::Extensions,
) {
    if let Some(value) = from.get::<T>() {
        into.insert(value.clone());
    }
}

impl Config {
    /// `err` as the service's error when its type is skipped, else back for rendering.
    pub(super) fn pass<E: ServiceError>(&self, err: BoxError) -> Result<E, BoxError> {
        if self.skip_errors.iter().any(|test| test(&*err)) {
            E::pass(err)
        } else {
            Err(err)
        }
    }
}

/// Reads a request's route template (`http.route`) from its extensions.
pub(super) type RouteFn = fn(&http::Extensions) -> Option<&str>;

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::convert::Infallible {}
    impl Sealed for tower::BoxError {}
}

/// The error type of the error layer's service: [`Infallible`] (every error is rendered, the
/// service fits where axum wants infallible services), or [`BoxError`] once
/// [`ErrorLayerBuilder::skip_error`] lets errors of some types through. Sealed.
pub trait ServiceError: sealed::Sealed + Sized + Send + 'static {
    /// `err` as this type, or `err` back when this type cannot carry it.
    #[doc(hidden)]
    fn pass(err: BoxError) -> Result<Self, BoxError>;
}

impl ServiceError for Infallible {
    fn pass(err: BoxError) -> Result<Self, BoxError> {
        Err(err)
    }
}

impl ServiceError for BoxError {
    fn pass(err: BoxError) -> Result<Self, BoxError> {
        Ok(err)
    }
}

/// Renders error responses as JSON; see the [module docs](super).
///
/// `E` is the error type of its service: [`Infallible`] unless [`ErrorLayerBuilder::skip_error`] was
/// used, then [`BoxError`].
pub struct ErrorLayer<E = Infallible> {
    pub(super) config: Arc<Config>,
    _error: PhantomData<fn() -> E>,
}

impl<E> Clone for ErrorLayer<E> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            _error: PhantomData,
        }
    }
}

impl Default for ErrorLayer {
    fn default() -> Self {
        Self {
            config: Arc::default(),
            _error: PhantomData,
        }
    }
}

impl ErrorLayer {
    /// A layer with the defaults: [`ErrorFormat::Json`], no custom handler, nothing skipped,
    /// panic and error messages not exposed. The same as `ErrorLayer::builder().build()`.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder starting from the defaults of [`ErrorLayer::new`].
    pub fn builder() -> ErrorLayerBuilder {
        ErrorLayerBuilder {
            config: Config::default(),
            _error: PhantomData,
        }
    }
}

/// Builds an [`ErrorLayer`]; every setter states its default. Made by [`ErrorLayer::builder`].
pub struct ErrorLayerBuilder<E = Infallible> {
    config: Config,
    _error: PhantomData<fn() -> E>,
}

impl<E> fmt::Debug for ErrorLayerBuilder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorLayerBuilder").finish_non_exhaustive()
    }
}

impl<E> ErrorLayerBuilder<E> {
    fn config(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// [`ErrorConfigError::NotAnErrorStatus`] when a status given to
    /// [`skip_status`](Self::skip_status) is not 4xx or 5xx.
    pub fn build(self) -> Result<ErrorLayer<E>, ErrorConfigError> {
        if let Some(&status) = self
            .config
            .skip_statuses
            .iter()
            .find(|status| !(status.is_client_error() || status.is_server_error()))
        {
            return Err(ErrorConfigError::NotAnErrorStatus { status });
        }
        Ok(ErrorLayer {
            config: Arc::new(self.config),
            _error: PhantomData,
        })
    }

    /// The document format. Default: [`ErrorFormat::Json`].
    pub fn format(mut self, format: ErrorFormat) -> Self {
        self.config().format = format;
        self
    }

    /// Whether a panic message is sent as the detail of the 500. Default: `false`, the detail
    /// is `"Internal Server Error"` (the message is logged either way).
    pub fn expose_panic_messages(mut self, expose: bool) -> Self {
        self.config().expose_panic_messages = expose;
        self
    }

    /// Whether the message of an error returned by the inner service is sent as the detail of
    /// the 500. Default: `false`, the detail is `"Internal Server Error"` (the message is logged
    /// either way).
    pub fn expose_error_messages(mut self, expose: bool) -> Self {
        self.config().expose_error_messages = expose;
        self
    }

    /// The level of the `request failed` event for a 5xx. Default: [`ERROR`](tracing::Level::ERROR).
    pub fn server_error_level(mut self, level: tracing::Level) -> Self {
        self.config().server_error_level = Some(level);
        self
    }

    /// The level of the `request failed` event for a 4xx. Default: [`DEBUG`](tracing::Level::DEBUG).
    pub fn client_error_level(mut self, level: tracing::Level) -> Self {
        self.config().client_error_level = Some(level);
        self
    }

    /// Where the route template (the `http.route` field of the `request failed` event) comes
    /// from: a function reading it from the request's extensions. Default: none, the field is
    /// left out. With axum, where the layer is added by `Router::layer` or `route_layer`:
    ///
    /// ```
    /// use axum::extract::MatchedPath;
    /// use stopover::server::error::ErrorLayer;
    ///
    /// let layer = ErrorLayer::builder()
    ///     .route_from(|extensions| extensions.get::<MatchedPath>().map(MatchedPath::as_str))
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), stopover::server::error::ErrorConfigError>(())
    /// ```
    pub fn route_from(mut self, route: fn(&http::Extensions) -> Option<&str>) -> Self {
        self.config().route = Some(route);
        self
    }

    /// Whether 4xx and 5xx responses that already have a small plain-text body are rendered too.
    /// Default: `false`, such responses pass through untouched.
    ///
    /// When on, a body is rewritten only if its size is known exactly in advance and is at most
    /// 8 KiB, its `Content-Type` is `text/plain` or absent (JSON documents and HTML pages are
    /// left alone) and it has no `Content-Encoding`; every other body still streams through
    /// untouched, so nothing is buffered without a bound. The body is read before the response
    /// goes out. For a 4xx, its text (when it is UTF-8 and not blank) becomes the detail: it
    /// was written for the client, like axum's extractor rejections (`Failed to parse the
    /// request body as JSON: ...`). For a 5xx, the detail is the reason phrase and the text is
    /// only logged, unless [`expose_error_messages`](Self::expose_error_messages) is on.
    ///
    /// ```
    /// use axum::{Json, Router, routing::post};
    /// use stopover::server::error::ErrorLayer;
    ///
    /// // A malformed JSON body now gets `400 {"detail":"Failed to parse the request body ..."}`
    /// // instead of axum's plain-text rejection.
    /// let app: Router = Router::new()
    ///     .route("/items", post(|Json(item): Json<serde_json::Value>| async move { Json(item) }))
    ///     .layer(ErrorLayer::builder().rewrite_bodies(true).build()?);
    /// # let _ = app;
    /// # Ok::<(), stopover::server::error::ErrorConfigError>(())
    /// ```
    pub fn rewrite_bodies(mut self, rewrite: bool) -> Self {
        self.config().rewrite_bodies = rewrite;
        self
    }

    /// Renders errors of requests that `rule` matches with `handler`, an async function of the
    /// request's parts and the [`ErrorContext`]. Rules are tried in the order they were added;
    /// the first match wins. Default: no per-path handler.
    ///
    /// The handler's status, headers and body are used; the headers of the original response
    /// are kept unless the handler sets the same header. Its body is dropped for `HEAD`, 204
    /// and 304. A handler that panics, when called or while it runs, falls back to the
    /// built-in rendering. A handler that needs no `await` returns
    /// `std::future::ready(response)`.
    ///
    /// The request parts the handler gets are made when it is called, from what the layer
    /// keeps of every request: the method, URI and version, and only the request headers and
    /// extensions named with [`handler_headers`](Self::handler_headers) and
    /// [`handler_extension`](Self::handler_extension) (none by default). The inner service
    /// takes the request, so whatever a handler may need is set aside before it runs; naming
    /// it keeps the cost of requests that never fail to what the handlers read.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::{Response, header};
    /// use stopover::server::error::ErrorLayer;
    /// use stopover::server::matcher::PathMatcher;
    ///
    /// let layer = ErrorLayer::builder()
    ///     .handler(PathMatcher::prefix("/pages/")?, |request, ctx| async move {
    ///         // An async view: it could render a template or report to an error tracker.
    ///         let page = format!("<h1>{}</h1><p>{}</p>", ctx.detail(), request.uri.path());
    ///         let mut page = Response::new(Bytes::from(page));
    ///         *page.status_mut() = ctx.status();
    ///         page.headers_mut().insert(header::CONTENT_TYPE, "text/html".parse().unwrap());
    ///         page
    ///     })
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handler<F, Fut>(mut self, rule: impl Into<PathRule>, handler: F) -> Self
    where
        F: Fn(request::Parts, ErrorContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Bytes>> + Send + 'static,
    {
        self.config().handlers.push(rule, boxed_handler(handler));
        self
    }

    /// Renders errors that no per-path handler matches with `handler` (see
    /// [`ErrorLayerBuilder::handler`]) instead of the built-in rendering. Default: none.
    pub fn default_handler<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(request::Parts, ErrorContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Bytes>> + Send + 'static,
    {
        self.config().default_handler = Some(boxed_handler(handler));
        self
    }

    /// Request headers a handler sees in its `request::Parts`, on top of the method, URI and
    /// version. Default: none. Each call adds to the earlier ones; every value of a repeated
    /// header is kept.
    ///
    /// ```
    /// use http::header::{ACCEPT, HeaderName};
    /// use stopover::server::error::ErrorLayer;
    ///
    /// let layer = ErrorLayer::builder()
    ///     .handler_headers([ACCEPT, HeaderName::from_static("x-request-id")])
    ///     .default_handler(|request, ctx| async move {
    ///         let wants_html = request.headers.get(ACCEPT).is_some_and(|v| v == "text/html");
    ///         let mut response = ctx.render(ctx.format());
    ///         if wants_html {
    ///             *response.body_mut() = format!("<h1>{}</h1>", ctx.detail()).into();
    ///         }
    ///         response
    ///     })
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), stopover::server::error::ErrorConfigError>(())
    /// ```
    pub fn handler_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        for name in names {
            if !self.config().handler_headers.contains(&name) {
                self.config().handler_headers.push(name);
            }
        }
        self
    }

    /// A request extension of type `T` a handler sees in its `request::Parts` (cloned when
    /// the request has one). Default: none. Each call adds a type.
    pub fn handler_extension<T: Clone + Send + Sync + 'static>(mut self) -> Self {
        self.config().handler_extensions.push(copy_extension::<T>);
        self
    }

    /// Leaves responses with this status as they are. Default: none.
    ///
    /// Errors and panics of the inner service are still rendered, as there is no response to
    /// leave alone. A status that is not 4xx or 5xx makes [`build`](Self::build) fail with
    /// [`ErrorConfigError::NotAnErrorStatus`].
    pub fn skip_status(mut self, status: StatusCode) -> Self {
        self.config().skip_statuses.push(status);
        self
    }

    /// Leaves responses to requests that `rules` match as they are. Default: none.
    ///
    /// `rules` is a [`PathMatcher`](crate::server::matcher::PathMatcher), a [`PathRule`] or a
    /// [`PathRules`]; each call adds its rules to the earlier ones, as every layer's `urls`,
    /// `paths` and `ignore` do. Errors and panics of the inner service are still rendered.
    pub fn skip_path(mut self, rules: impl Into<PathRules>) -> Self {
        self.config().skip_paths.append(rules);
        self
    }

    /// Lets errors of type `T` returned by the inner service (from `poll_ready`, `call`'s future)
    /// through untouched, as the service's error, for an outer layer to handle (aiohttp's
    /// `ignore_exceptions`). Default: none, every error becomes a 500.
    ///
    /// The test is the error's own type, as boxed into a [`BoxError`] (not its sources). The
    /// service's error type becomes [`BoxError`], so in axum the layer then goes inside a
    /// `HandleErrorLayer`. Panics are still rendered.
    ///
    /// ```
    /// use stopover::server::error::ErrorLayer;
    ///
    /// // tower's own timeout error goes on to an outer `HandleErrorLayer`.
    /// let layer = ErrorLayer::builder()
    ///     .skip_error::<tower::timeout::error::Elapsed>()
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), stopover::server::error::ErrorConfigError>(())
    /// ```
    pub fn skip_error<T: std::error::Error + 'static>(self) -> ErrorLayerBuilder<BoxError> {
        let mut builder = ErrorLayerBuilder {
            config: self.config,
            _error: PhantomData,
        };
        builder.config().skip_errors.push(is_error::<T>);
        builder
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

impl<E> fmt::Debug for ErrorLayer<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.config;
        f.debug_struct("ErrorLayer")
            .field("format", &config.format)
            .field("expose_panic_messages", &config.expose_panic_messages)
            .field("expose_error_messages", &config.expose_error_messages)
            .field("rewrite_bodies", &config.rewrite_bodies)
            .field("handlers", &config.handlers.len())
            .field("default_handler", &config.default_handler.is_some())
            .field("skip_statuses", &config.skip_statuses)
            .field("skip_paths", &config.skip_paths)
            .field("skip_errors", &config.skip_errors.len())
            .field("handler_headers", &config.handler_headers)
            .field("handler_extensions", &config.handler_extensions.len())
            .finish()
    }
}
