//! Turns error responses without a body, handler errors, inner service errors and panics into
//! JSON error documents, and leaves every other response alone.
//!
//! aiohttp-middlewares' `error_middleware` catches *exceptions*, so it also rewrites raised
//! redirects and 2xx statuses, drops every header (`Location`, `Allow`, `WWW-Authenticate`) and
//! sends `str(exception)` of any 500 to the client. This layer acts on *responses* instead:
//!
//! - A 4xx or 5xx response whose body is known to be empty (axum's 404 and 405, a bare
//!   `StatusCode::UNAUTHORIZED`) gets a body `{"detail": "<reason phrase>"}`. Its status and
//!   all its headers (`Allow`, `WWW-Authenticate`, `Retry-After`, `Location`, `Set-Cookie`, ...)
//!   are kept; only `Content-Type` and `Content-Length` are replaced (and a `Content-Encoding`
//!   that described the replaced body is removed).
//! - A response made from an [`HttpError`] (a handler's typed error, or a timeout from
//!   [`TimeoutLayer`](super::timeout::TimeoutLayer)) is rendered from its status, detail and
//!   extra data, in the configured [`ErrorFormat`].
//! - An error returned by the inner service, or a panic while it runs, becomes a 500 whose
//!   detail is the generic `"Internal Server Error"`: the message is logged, and sent only when
//!   [`ErrorLayerBuilder::expose_error_messages`] or [`ErrorLayerBuilder::expose_panic_messages`] says so.
//! - 1xx, 2xx and 3xx responses, and 4xx/5xx responses that already have a body, pass through
//!   untouched, body included, unless [`ErrorLayerBuilder::rewrite_bodies`] asks for small plain-text
//!   error bodies (such as axum's plain-text extractor rejections) to be rendered too. A
//!   response to `HEAD`, and a 204 or 304, never gets a body.
//!
//! Responses are rendered as `application/json` by default, or as RFC 9457
//! `application/problem+json` (`type`, `title`, `status`, `detail`) with
//! [`ErrorFormat::ProblemJson`]. Per-path handlers ([`ErrorLayerBuilder::handler`], first match wins)
//! and a default handler replace the built-in rendering; [`ErrorLayerBuilder::skip_status`] and
//! [`ErrorLayerBuilder::skip_path`] leave some responses alone. Rendered 5xx are logged at `ERROR`
//! level, 4xx at `DEBUG`, with the method and path of the request.
//!
//! The service's error type is [`Infallible`]: put the layer where axum wants infallible
//! services, instead of `HandleErrorLayer`.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use http::StatusCode;
//! use stopover::server::error::{ErrorLayer, HttpError};
//!
//! async fn item() -> Result<String, axum::response::Response> {
//!     // `?` turns the `HttpError` into a response the layer renders.
//!     Err(HttpError::new(StatusCode::CONFLICT, "item is locked").with_field("retry_in", 30))?
//! }
//!
//! let app: Router = Router::new()
//!     .route("/item", get(item))
//!     .layer(ErrorLayer::builder().expose_panic_messages(false)
//!         .build()?);
//! // GET /item   -> 409 {"detail":"item is locked","retry_in":30}
//! // GET /nope   -> 404 {"detail":"Not Found"}
//! // POST /item  -> 405 {"detail":"Method Not Allowed"}, `Allow: GET,HEAD` kept
//! # Ok::<(), stopover::server::error::ErrorConfigError>(())
//! ```
//!
//! # Using `HttpError` from axum
//!
//! With the `axum` feature `HttpError` implements axum's `IntoResponse`, so a handler returns
//! `Result<Json<T>, HttpError>` (see `server::axum`, [on docs.rs](../axum/index.html), which
//! exists with the `axum` feature). Without the feature it
//! still converts into any `http::Response<B>` whose body can be made from `Bytes`, which
//! includes `axum::response::Response`: return `Result<T, axum::response::Response>` and use
//! `?` as above.
//!
//! Without the layer, the response still carries the JSON body in the default format.
//!
//! # Panics
//!
//! Panics in `Service::call` of the inner service and while polling its response future are
//! caught. A panic while the response *body* streams cannot become a 500 any more (the head has
//! been sent) and is not caught.

use std::any::Any;
use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::request;
use http::response::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use pin_project_lite::pin_project;
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};
use tower::BoxError;
use tower_layer::Layer;
use tower_service::Service;

use super::matcher::{PathMap, PathRule, PathRules};

const GENERIC_DETAIL: &str = "Internal Server Error";

/// The largest error body [`ErrorLayerBuilder::rewrite_bodies`] buffers.
const REWRITE_LIMIT: u64 = 8 * 1024;

/// The shape of a rendered error document.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorFormat {
    /// `application/json`: `{"detail": "..."}` plus the error's extra data.
    #[default]
    Json,
    /// RFC 9457 `application/problem+json`: `type` (`about:blank` unless the error sets one),
    /// `title` (the reason phrase), `status`, `detail`, plus the error's extra data as extension
    /// members.
    ProblemJson,
}

impl ErrorFormat {
    pub(crate) fn content_type(self) -> HeaderValue {
        match self {
            ErrorFormat::Json => HeaderValue::from_static("application/json"),
            ErrorFormat::ProblemJson => HeaderValue::from_static("application/problem+json"),
        }
    }

    fn reserved(self, key: &str) -> bool {
        match self {
            ErrorFormat::Json => key == "detail",
            ErrorFormat::ProblemJson => matches!(key, "type" | "title" | "status" | "detail"),
        }
    }
}

/// One rendered document; serialised straight from borrowed parts, without building a map.
struct Document<'a> {
    format: ErrorFormat,
    status: StatusCode,
    detail: &'a str,
    problem_type: Option<&'a str>,
    data: Option<&'a Map<String, Value>>,
}

impl Serialize for Document<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if self.format == ErrorFormat::ProblemJson {
            map.serialize_entry("type", self.problem_type.unwrap_or("about:blank"))?;
            map.serialize_entry("title", reason(self.status))?;
            map.serialize_entry("status", &self.status.as_u16())?;
        }
        map.serialize_entry("detail", self.detail)?;
        for (key, value) in self.data.into_iter().flatten() {
            if !self.format.reserved(key) {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

/// Renders an error document. Shared by every layer that answers with an error.
pub(crate) fn render(
    format: ErrorFormat,
    status: StatusCode,
    detail: &str,
    problem_type: Option<&str>,
    data: Option<&Map<String, Value>>,
) -> Bytes {
    let document = Document {
        format,
        status,
        detail,
        problem_type,
        data,
    };
    // Serialising strings and `Value`s into a Vec cannot fail; the fallback is belt and braces.
    match serde_json::to_vec(&document) {
        Ok(body) => Bytes::from(body),
        Err(_) => Bytes::from_static(b"{\"detail\":\"Internal Server Error\"}"),
    }
}

/// The reason phrase of a status, or a generic one for statuses without a canonical phrase.
fn reason(status: StatusCode) -> &'static str {
    status
        .canonical_reason()
        .unwrap_or(if status.is_server_error() {
            "Server Error"
        } else if status.is_client_error() {
            "Client Error"
        } else {
            "Unknown Status"
        })
}

/// Puts an error document's headers into response parts: replaces `Content-Type` and
/// `Content-Length`, keeps every other header. Returns the body to send, which is empty for
/// `HEAD`, 1xx, 204 and 304; a `HEAD` response keeps the `Content-Length` the `GET` would have.
fn prepare_parts(
    parts: &mut Parts,
    method: Option<&Method>,
    content_type: Option<HeaderValue>,
    body: Bytes,
) -> Bytes {
    parts.headers.remove(header::TRANSFER_ENCODING);
    let status = parts.status;
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        parts.headers.remove(header::CONTENT_TYPE);
        parts.headers.remove(header::CONTENT_LENGTH);
        return Bytes::new();
    }
    match content_type {
        Some(content_type) => parts.headers.insert(header::CONTENT_TYPE, content_type),
        None => parts.headers.remove(header::CONTENT_TYPE),
    };
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    if method == Some(&Method::HEAD) {
        Bytes::new()
    } else {
        body
    }
}

/// Builds a response from parts and an error document (see [`prepare_parts`]). Shared by every
/// layer that answers with an error.
pub(crate) fn into_error_response<B>(
    mut parts: Parts,
    method: Option<&Method>,
    content_type: Option<HeaderValue>,
    body: Bytes,
) -> Response<ErrorBody<B>> {
    let body = prepare_parts(&mut parts, method, content_type, body);
    Response::from_parts(parts, ErrorBody::full(body))
}

/// A typed error for handlers: a status, a detail meant for the client, and extra JSON data.
///
/// It converts into an `http::Response<B>` (for any body `B: From<Bytes>`, such as
/// `axum::response::Response`) with a JSON body `{"detail": ..., ...data}` and the error in the
/// response extensions, where [`ErrorLayer`] finds it and renders it in its own format. The
/// detail is sent as given, for 5xx too: it is the handler's deliberate message. Headers added
/// with [`HttpError::with_header`] go on the response.
///
/// There is no `From<E>` for other error types, on purpose: a blanket conversion would let `?`
/// turn any internal error (a database driver's message, a file path) into an answer a client
/// reads. Say what the client is told where the error is met, with `map_err`:
///
/// ```
/// use http::StatusCode;
/// use stopover::server::error::HttpError;
///
/// fn parse_quantity(text: &str) -> Result<u32, HttpError> {
///     let quantity: u32 = text.parse().map_err(|_| {
///         HttpError::new(StatusCode::BAD_REQUEST, "quantity must be a whole number")
///             .with_field("field", "quantity")
///     })?;
///     Ok(quantity)
/// }
/// assert_eq!(parse_quantity("x").unwrap_err().status(), StatusCode::BAD_REQUEST);
/// ```
///
/// ```
/// use http::{StatusCode, header};
/// use stopover::server::error::HttpError;
///
/// let err = HttpError::new(StatusCode::UNPROCESSABLE_ENTITY, "name is too long")
///     .with_field("field", "name")
///     .with_field("max_length", 40);
/// let response: http::Response<bytes::Bytes> = err.into();
/// assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
/// assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
/// assert_eq!(
///     response.body().as_ref(),
///     br#"{"detail":"name is too long","field":"name","max_length":40}"#
/// );
/// ```
#[derive(Clone, Debug)]
pub struct HttpError {
    status: StatusCode,
    detail: Cow<'static, str>,
    problem_type: Option<Cow<'static, str>>,
    data: Option<Map<String, Value>>,
    body: Option<Value>,
    headers: HeaderMap,
}

impl HttpError {
    /// An error with this status and detail.
    ///
    /// The layer renders 4xx and 5xx statuses only; an `HttpError` with another status is sent
    /// as converted, with no body for 1xx, 204 and 304.
    pub fn new(status: StatusCode, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            detail: detail.into(),
            problem_type: None,
            data: None,
            body: None,
            headers: HeaderMap::new(),
        }
    }

    /// An error with this status whose detail is the reason phrase (`"Not Found"`).
    pub fn from_status(status: StatusCode) -> Self {
        Self::new(status, reason(status))
    }

    /// Adds one member to the extra data, replacing a member of the same name.
    ///
    /// Members named like the document's own fields (`detail`; with problem details also
    /// `type`, `title`, `status`) are not rendered: set those with the constructors.
    pub fn with_field(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.data
            .get_or_insert_with(Map::new)
            .insert(name.into(), value.into());
        self
    }

    /// Adds every member of `data` to the extra data (see [`HttpError::with_field`]).
    pub fn with_data(mut self, data: Map<String, Value>) -> Self {
        self.data.get_or_insert_with(Map::new).extend(data);
        self
    }

    /// Sets the RFC 9457 `type` URI, rendered with [`ErrorFormat::ProblemJson`] (default
    /// `about:blank`).
    pub fn with_problem_type(mut self, uri: impl Into<Cow<'static, str>>) -> Self {
        self.problem_type = Some(uri.into());
        self
    }

    /// Replaces the whole document with `body`: the response body is `body` serialised as it
    /// is, with no `detail` member, as `application/json` in every [`ErrorFormat`] (it is not a
    /// problem document). The detail is still logged and seen by custom handlers. Default: none,
    /// the document is built from the detail and the extra data.
    ///
    /// This is aiohttp's `err.data`: an API with its own error schema sends it verbatim.
    ///
    /// ```
    /// use http::StatusCode;
    /// use serde_json::json;
    /// use stopover::server::error::HttpError;
    ///
    /// let err = HttpError::new(StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS, "blocked in region")
    ///     .with_body(json!({"error": {"code": "geo_blocked", "region": "XX"}}));
    /// let response: http::Response<bytes::Bytes> = err.into();
    /// assert_eq!(
    ///     response.body().as_ref(),
    ///     br#"{"error":{"code":"geo_blocked","region":"XX"}}"#
    /// );
    /// ```
    pub fn with_body(mut self, body: impl Into<Value>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// The document set with [`HttpError::with_body`], if any.
    pub fn body(&self) -> Option<&Value> {
        self.body.as_ref()
    }

    /// Adds a header to the response (appended, so `Set-Cookie` may be given several times).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The detail sent to the client.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The extra data, if any was added.
    pub fn data(&self) -> Option<&Map<String, Value>> {
        self.data.as_ref()
    }

    /// The RFC 9457 `type` URI, if one was set.
    pub fn problem_type(&self) -> Option<&str> {
        self.problem_type.as_deref()
    }

    /// Converts into a response with a JSON body in the default format.
    ///
    /// The same as `.into()`; handy where the body type is inferred.
    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        self.into()
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.detail)
    }
}

impl std::error::Error for HttpError {}

impl From<StatusCode> for HttpError {
    fn from(status: StatusCode) -> Self {
        Self::from_status(status)
    }
}

impl<B: From<Bytes>> From<HttpError> for Response<B> {
    fn from(mut err: HttpError) -> Self {
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = err.status;
        parts.headers = std::mem::take(&mut err.headers);
        let (content_type, body) = err.document(ErrorFormat::Json, err.status);
        parts.extensions.insert(err);
        let body = prepare_parts(&mut parts, None, Some(content_type), body);
        Response::from_parts(parts, B::from(body))
    }
}

impl HttpError {
    /// The built-in document of this error in `format`, with `status`.
    fn document(&self, format: ErrorFormat, status: StatusCode) -> (HeaderValue, Bytes) {
        document(
            format,
            status,
            &self.detail,
            self.problem_type.as_deref(),
            self.data.as_ref(),
            self.body.as_ref(),
        )
    }
}

/// The content type and body of a built-in document: `body` verbatim as JSON when the error set
/// one, else the rendered detail and data.
fn document(
    format: ErrorFormat,
    status: StatusCode,
    detail: &str,
    problem_type: Option<&str>,
    data: Option<&Map<String, Value>>,
    body: Option<&Value>,
) -> (HeaderValue, Bytes) {
    match body {
        Some(body) => (
            ErrorFormat::Json.content_type(),
            // Serialising a `Value` into a Vec cannot fail.
            serde_json::to_vec(body).map_or_else(|_| Bytes::new(), Bytes::from),
        ),
        None => (
            format.content_type(),
            render(format, status, detail, problem_type, data),
        ),
    }
}

/// Where an error being rendered came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorOrigin {
    /// A 4xx or 5xx response with an empty body, such as axum's 404 and 405.
    EmptyResponse,
    /// A response made from an [`HttpError`] (by a handler, or by a timeout).
    HttpError,
    /// The inner service returned an error.
    ServiceError,
    /// The inner service panicked.
    Panic,
    /// A 4xx or 5xx response with a small plain-text body, rendered because
    /// [`ErrorLayerBuilder::rewrite_bodies`] is on.
    RewrittenBody,
}

/// What a custom error handler learns about the error it renders. The request comes beside
/// it, as `http::request::Parts` (method, URI, headers, extensions).
#[derive(Clone, Debug)]
pub struct ErrorContext {
    kind: ErrorOrigin,
    status: StatusCode,
    detail: String,
    internal_message: Option<String>,
    problem_type: Option<String>,
    data: Option<Map<String, Value>>,
    body: Option<Value>,
    format: ErrorFormat,
    response_headers: HeaderMap,
}

impl ErrorContext {
    /// Where the error came from.
    pub fn origin(&self) -> ErrorOrigin {
        self.kind
    }

    /// The status of the error.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The detail that is safe to send: the reason phrase, the `HttpError`'s detail, or the
    /// generic `"Internal Server Error"` unless messages are exposed.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The panic message, the inner service's error message, or the text of a rewritten body
    /// ([`ErrorOrigin::RewrittenBody`]), for logging. Not meant for the client.
    pub fn internal_message(&self) -> Option<&str> {
        self.internal_message.as_deref()
    }

    /// The extra data of an [`HttpError`].
    pub fn data(&self) -> Option<&Map<String, Value>> {
        self.data.as_ref()
    }

    /// The whole document of an [`HttpError`] made with [`HttpError::with_body`].
    pub fn body(&self) -> Option<&Value> {
        self.body.as_ref()
    }

    /// The RFC 9457 `type` URI of an [`HttpError`], if it set one.
    pub fn problem_type(&self) -> Option<&str> {
        self.problem_type.as_deref()
    }

    /// The format the layer is configured with ([`ErrorLayerBuilder::format`]).
    pub fn format(&self) -> ErrorFormat {
        self.format
    }

    /// The headers of the response being rendered; they are kept, and the handler's own
    /// headers are set over them.
    pub fn response_headers(&self) -> &HeaderMap {
        &self.response_headers
    }

    /// The built-in rendering of this error in `format`, for handlers that only adjust it.
    pub fn render(&self, format: ErrorFormat) -> Response<Bytes> {
        let (content_type, body) = document(
            format,
            self.status,
            &self.detail,
            self.problem_type.as_deref(),
            self.data.as_ref(),
            self.body.as_ref(),
        );
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
        response
    }
}

type HandlerFuture = Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>;
type Handler = Arc<dyn Fn(request::Parts, ErrorContext) -> HandlerFuture + Send + Sync>;

fn boxed_handler<F, Fut>(handler: F) -> Handler
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
struct Config {
    format: ErrorFormat,
    expose_panic_messages: bool,
    expose_error_messages: bool,
    rewrite_bodies: bool,
    handlers: PathMap<Handler>,
    default_handler: Option<Handler>,
    skip_statuses: Vec<StatusCode>,
    skip_paths: PathRules,
    skip_errors: Vec<ErrorTest>,
    server_error_level: Option<tracing::Level>,
    client_error_level: Option<tracing::Level>,
    route: Option<RouteFn>,
}

impl Config {
    /// `err` as the service's error when its type is skipped, else back for rendering.
    fn pass<E: ServiceError>(&self, err: BoxError) -> Result<E, BoxError> {
        if self.skip_errors.iter().any(|test| test(&*err)) {
            E::pass(err)
        } else {
            Err(err)
        }
    }
}

/// Reads a request's route template (`http.route`) from its extensions.
type RouteFn = fn(&http::Extensions) -> Option<&str>;

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

/// Renders error responses as JSON; see the [module docs](self).
///
/// `E` is the error type of its service: [`Infallible`] unless [`ErrorLayerBuilder::skip_error`] was
/// used, then [`BoxError`].
pub struct ErrorLayer<E = Infallible> {
    config: Arc<Config>,
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
    /// let layer = ErrorLayer::builder().route_from(|extensions| {
    ///     extensions.get::<MatchedPath>().map(MatchedPath::as_str)
    /// })
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
    ///     .layer(ErrorLayer::builder().rewrite_bodies(true)
    ///         .build()?);
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
    /// built-in rendering. The request parts (headers and extensions included) are cloned for
    /// each request the handler may see, before the inner service runs; a handler that needs
    /// no `await` returns `std::future::ready(response)`.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::{Response, header};
    /// use stopover::server::error::ErrorLayer;
    /// use stopover::server::matcher::PathMatcher;
    ///
    /// let layer = ErrorLayer::builder().handler(PathMatcher::prefix("/pages/")?, |request, ctx| async move {
    ///     // An async view: it could render a template or report to an error tracker.
    ///     let page = format!("<h1>{}</h1><p>{}</p>", ctx.detail(), request.uri.path());
    ///     let mut page = Response::new(Bytes::from(page));
    ///     *page.status_mut() = ctx.status();
    ///     page.headers_mut().insert(header::CONTENT_TYPE, "text/html".parse().unwrap());
    ///     page
    /// })
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

    /// Leaves responses with this status as they are. Default: none.
    ///
    /// Errors and panics of the inner service are still rendered, as there is no response to
    /// leave alone. A status that is not 4xx or 5xx makes [`build`](Self::build) fail with
    /// [`ErrorConfigError::NotAnErrorStatus`].
    pub fn skip_status(mut self, status: StatusCode) -> Self {
        self.config().skip_statuses.push(status);
        self
    }

    /// Leaves responses to requests that `rule` matches as they are. Default: none.
    ///
    /// Errors and panics of the inner service are still rendered.
    pub fn skip_path(mut self, rule: impl Into<PathRule>) -> Self {
        self.config().skip_paths.push(rule);
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
    /// let layer = ErrorLayer::builder().skip_error::<tower::timeout::error::Elapsed>()
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
    /// let layer = ErrorLayer::builder().format(ErrorFormat::ProblemJson)
    ///     .build()?;
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
            .finish()
    }
}

impl<S, E> Layer<S> for ErrorLayer<E> {
    type Service = Errors<S, E>;

    fn layer(&self, inner: S) -> Self::Service {
        Errors {
            inner,
            config: self.config.clone(),
            ready_error: None,
            _error: PhantomData,
        }
    }
}

/// The service made by [`ErrorLayer`].
pub struct Errors<S, E = Infallible> {
    inner: S,
    config: Arc<Config>,
    // An error from the inner `poll_ready`, answered as a 500 by the next call.
    ready_error: Option<BoxError>,
    _error: PhantomData<fn() -> E>,
}

impl<S: Clone, E> Clone for Errors<S, E> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
            ready_error: None,
            _error: PhantomData,
        }
    }
}

impl<S: fmt::Debug, E> fmt::Debug for Errors<S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Errors")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, E, ReqBody, ResBody> Service<Request<ReqBody>> for Errors<S, E>
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
                    failure: Some(Failure::Panic(panic_message(payload))),
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

struct RequestInfo {
    config: Arc<Config>,
    method: Method,
    uri: Uri,
    route: Option<String>,
    handler: Option<Handler>,
    // The request as the handler gets it; cloned only when a handler may run, taken when it does.
    request: Option<request::Parts>,
    skip_path: bool,
}

impl RequestInfo {
    fn new(
        config: &Arc<Config>,
        method: &Method,
        uri: &Uri,
        version: http::Version,
        headers: &HeaderMap,
        extensions: &http::Extensions,
    ) -> Self {
        let path = uri.path();
        let handler = config
            .handlers
            .get(method, path)
            .or(config.default_handler.as_ref())
            .cloned();
        let request = handler.as_ref().map(|_| {
            let (mut parts, ()) = Request::new(()).into_parts();
            parts.method = method.clone();
            parts.uri = uri.clone();
            parts.version = version;
            parts.headers = headers.clone();
            parts.extensions = extensions.clone();
            parts
        });
        Self {
            config: config.clone(),
            skip_path: config.skip_paths.matches(method, path),
            method: method.clone(),
            uri: uri.clone(),
            route: config
                .route
                .and_then(|route| route(extensions))
                .map(str::to_owned),
            handler,
            request,
        }
    }
}

impl fmt::Debug for RequestInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestInfo")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

enum Failure {
    Service(BoxError),
    Panic(String),
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

pin_project! {
    /// Response future of [`Errors`].
    pub struct ResponseFuture<F, B, E = Infallible> {
        #[pin]
        state: State<F, B>,
        request: RequestInfo,
        _error: PhantomData<fn() -> E>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B> {
        Running { #[pin] future: F },
        // Reading a small error body to render it (`ErrorLayerBuilder::rewrite_bodies`).
        Collecting { parts: Option<Parts>, #[pin] body: B, buffer: Vec<u8> },
        // A custom handler renders the error; `fallback` is the built-in document.
        Handling { parts: Option<Parts>, fallback: Option<(HeaderValue, Bytes)>, future: HandlerFuture },
        Failed { failure: Option<Failure> },
    }
}

/// What rendering an error leads to: a response, or a custom handler to wait for.
enum Step<B> {
    Done(Response<ErrorBody<B>>),
    Handle {
        parts: Parts,
        fallback: (HeaderValue, Bytes),
        future: HandlerFuture,
    },
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
                            .on_failure(Failure::Panic(panic_message(payload))),
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
                                        panic = %panic_message(payload),
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

/// What the layer found, for [`RequestInfo::respond`].
struct Found<'a> {
    kind: ErrorOrigin,
    detail: &'a str,
    internal_message: Option<&'a str>,
    problem_type: Option<&'a str>,
    data: Option<&'a Map<String, Value>>,
    body: Option<&'a Value>,
}

impl<'a> Found<'a> {
    fn new(kind: ErrorOrigin, detail: &'a str) -> Self {
        Self {
            kind,
            detail,
            internal_message: None,
            problem_type: None,
            data: None,
            body: None,
        }
    }
}

/// Puts a custom handler's response over the parts of the error response: its status, its
/// headers over the kept ones, its body.
fn finish_custom<B>(
    mut parts: Parts,
    method: Option<&Method>,
    custom: Response<Bytes>,
) -> Response<ErrorBody<B>> {
    let (custom_parts, body) = custom.into_parts();
    parts.status = custom_parts.status;
    let content_type = custom_parts.headers.get(header::CONTENT_TYPE).cloned();
    let mut last_name = None;
    for (name, value) in custom_parts.headers {
        // `HeaderMap`'s iterator yields a name once, then `None` for its other values.
        match name {
            Some(name) => {
                parts.headers.insert(name.clone(), value);
                last_name = Some(name);
            }
            None => {
                if let Some(name) = &last_name {
                    parts.headers.append(name.clone(), value);
                }
            }
        }
    }
    into_error_response(parts, method, content_type, body)
}

impl RequestInfo {
    /// Whether `response` is an error with a small plain-text body to read and render
    /// ([`ErrorLayerBuilder::rewrite_bodies`]).
    fn should_rewrite<B: Body>(&self, response: &Response<B>) -> bool {
        let status = response.status();
        let body = response.body();
        self.config.rewrite_bodies
            && (status.is_client_error() || status.is_server_error())
            && !self.skip_path
            && !self.config.skip_statuses.contains(&status)
            && response.extensions().get::<HttpError>().is_none()
            && !body.is_end_stream()
            && matches!(body.size_hint().exact(), Some(1..=REWRITE_LIMIT))
            && !response.headers().contains_key(header::CONTENT_ENCODING)
            && response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_none_or(is_plain_text)
    }

    /// Renders an error whose body was read: `text` is the body when it was read whole and is
    /// UTF-8, trimmed.
    fn on_rewritten<B>(&mut self, parts: Parts, text: Option<&str>) -> Step<B> {
        let status = parts.status;
        let text = text.filter(|t| !t.is_empty());
        let detail = match text {
            Some(text) if status.is_client_error() || self.config.expose_error_messages => text,
            _ => reason(status),
        };
        let found = Found {
            internal_message: text,
            ..Found::new(ErrorOrigin::RewrittenBody, detail)
        };
        self.respond(parts, found)
    }

    fn on_response<B: Body<Data = Bytes>>(&mut self, response: Response<B>) -> Step<B> {
        let status = response.status();
        if !(status.is_client_error() || status.is_server_error())
            || self.skip_path
            || self.config.skip_statuses.contains(&status)
        {
            return Step::Done(response.map(ErrorBody::inner));
        }
        let is_empty =
            response.body().is_end_stream() || response.body().size_hint().exact() == Some(0);
        if !is_empty && response.extensions().get::<HttpError>().is_none() {
            return Step::Done(response.map(ErrorBody::inner));
        }
        let (mut parts, _body) = response.into_parts();
        match parts.extensions.remove::<HttpError>() {
            // The status is the response's: an inner layer may have changed the error's.
            Some(err) => {
                let found = Found {
                    problem_type: err.problem_type.as_deref(),
                    data: err.data.as_ref(),
                    body: err.body.as_ref(),
                    ..Found::new(ErrorOrigin::HttpError, &err.detail)
                };
                self.respond(parts, found)
            }
            None => self.respond(
                parts,
                Found::new(ErrorOrigin::EmptyResponse, reason(status)),
            ),
        }
    }

    fn on_failure<B>(&mut self, failure: Failure) -> Step<B> {
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = StatusCode::INTERNAL_SERVER_ERROR;
        let (kind, message, expose) = match failure {
            Failure::Service(err) => (
                ErrorOrigin::ServiceError,
                error_chain(&*err),
                self.config.expose_error_messages,
            ),
            Failure::Panic(message) => (
                ErrorOrigin::Panic,
                message,
                self.config.expose_panic_messages,
            ),
        };
        let detail = if expose {
            message.as_str()
        } else {
            GENERIC_DETAIL
        };
        let found = Found {
            internal_message: Some(&message),
            ..Found::new(kind, detail)
        };
        self.respond(parts, found)
    }

    fn respond<B>(&mut self, mut parts: Parts, found: Found<'_>) -> Step<B> {
        let status = parts.status;
        self.log(found.kind, status, found.detail, found.internal_message);
        // The body is replaced by an identity-encoded document (a custom handler may set its own).
        parts.headers.remove(header::CONTENT_ENCODING);
        let format = self.config.format;
        let (content_type, body) = document(
            format,
            status,
            found.detail,
            found.problem_type,
            found.data,
            found.body,
        );
        let handler = self.handler.as_ref().zip(self.request.take());
        if let Some((handler, request)) = handler {
            let context = ErrorContext {
                kind: found.kind,
                status,
                detail: found.detail.to_owned(),
                internal_message: found.internal_message.map(str::to_owned),
                problem_type: found.problem_type.map(str::to_owned),
                data: found.data.cloned(),
                body: found.body.cloned(),
                format,
                response_headers: parts.headers.clone(),
            };
            match catch_unwind(AssertUnwindSafe(|| handler(request, context))) {
                Ok(future) => {
                    return Step::Handle {
                        parts,
                        fallback: (content_type, body),
                        future,
                    };
                }
                Err(payload) => tracing::error!(
                    panic = %panic_message(payload),
                    "error handler panicked; using the built-in rendering"
                ),
            }
        }
        Step::Done(into_error_response(
            parts,
            Some(&self.method),
            Some(content_type),
            body,
        ))
    }

    /// The `request failed` event, with the server conventions' field names.
    fn log(&self, kind: ErrorOrigin, status: StatusCode, detail: &str, internal: Option<&str>) {
        use tracing::Level;
        let level = if status.is_server_error() {
            self.config.server_error_level.unwrap_or(Level::ERROR)
        } else {
            self.config.client_error_level.unwrap_or(Level::DEBUG)
        };
        // A 4xx's internal text was written for the client and is already the detail.
        let internal = internal.filter(|_| status.is_server_error());
        macro_rules! failed {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    http.response.status_code = status.as_u16(),
                    http.request.method = %self.method,
                    url.path = self.uri.path(),
                    http.route = self.route.as_deref(),
                    error.type = status.as_str(),
                    stopover.error_kind = ?kind,
                    detail,
                    error = internal,
                    "request failed"
                )
            };
        }
        match level {
            Level::ERROR => failed!(Level::ERROR),
            Level::WARN => failed!(Level::WARN),
            Level::INFO => failed!(Level::INFO),
            Level::DEBUG => failed!(Level::DEBUG),
            _ => failed!(Level::TRACE),
        }
    }
}

/// Whether a `Content-Type` is `text/plain`, with any parameters.
fn is_plain_text(content_type: &HeaderValue) -> bool {
    content_type
        .to_str()
        .ok()
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/plain"))
}

/// `err: source: source ...`, the way the error is logged and, when exposed, sent.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        message.push_str(": ");
        message.push_str(&err.to_string());
        source = err.source();
    }
    message
}

pin_project! {
    /// The response body of the server layers: the inner service's body, or a rendered error
    /// document.
    pub struct ErrorBody<B> {
        #[pin]
        kind: BodyKind<B>,
    }
}

pin_project! {
    #[project = BodyKindProj]
    enum BodyKind<B> {
        Inner { #[pin] body: B },
        Full { bytes: Option<Bytes> },
    }
}

impl<B> ErrorBody<B> {
    /// Wraps the inner service's body.
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: BodyKind::Inner { body },
        }
    }

    /// A complete body; an empty one ends at once.
    pub(crate) fn full(bytes: Bytes) -> Self {
        let bytes = if bytes.is_empty() { None } else { Some(bytes) };
        Self {
            kind: BodyKind::Full { bytes },
        }
    }
}

/// An empty body, so that a layer outside this one (CORS answering a preflight, shield
/// answering at its bound) can make a response of its own.
impl<B> Default for ErrorBody<B> {
    fn default() -> Self {
        Self::full(Bytes::new())
    }
}

impl<B: fmt::Debug> fmt::Debug for ErrorBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BodyKind::Inner { body } => f.debug_tuple("ErrorBody::Inner").field(body).finish(),
            BodyKind::Full { bytes } => f.debug_tuple("ErrorBody::Full").field(bytes).finish(),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for ErrorBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            BodyKindProj::Inner { body } => body.poll_frame(cx),
            BodyKindProj::Full { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Inner { body } => body.is_end_stream(),
            BodyKind::Full { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Inner { body } => body.size_hint(),
            BodyKind::Full { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Empty;
    use tower::ServiceExt;

    fn empty_status(status: StatusCode) -> Response<Empty<Bytes>> {
        let mut response = Response::new(Empty::new());
        *response.status_mut() = status;
        response
    }

    #[tokio::test]
    async fn head_error_has_no_body_but_keeps_the_document_length() {
        let leaf = tower::service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(empty_status(StatusCode::NOT_FOUND))
        });
        let mut request = Request::new(());
        *request.method_mut() = Method::HEAD;
        let response = ErrorLayer::new()
            .layer(leaf)
            .oneshot(request)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "22");
        assert!(response.body().is_end_stream());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty());
    }

    #[tokio::test]
    async fn handler_choosing_no_content_sends_no_body() {
        let leaf = tower::service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(empty_status(StatusCode::GONE))
        });
        let layer = ErrorLayer::builder()
            .default_handler(|_request, _ctx| async {
                let mut response = Response::new(Bytes::from_static(b"ignored"));
                *response.status_mut() = StatusCode::NO_CONTENT;
                response
            })
            .build()
            .unwrap();
        let response = layer.layer(leaf).oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert!(!response.headers().contains_key(header::CONTENT_LENGTH));
        assert!(response.body().is_end_stream());
    }

    #[derive(Clone)]
    struct NeverReady;

    impl Service<Request<()>> for NeverReady {
        type Response = Response<Full<Bytes>>;
        type Error = std::io::Error;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Err(std::io::Error::other("backend pool closed")))
        }

        fn call(&mut self, _req: Request<()>) -> Self::Future {
            std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(
                b"unreachable",
            )))))
        }
    }

    #[tokio::test]
    async fn poll_ready_error_becomes_500_on_the_next_call() {
        let service = ErrorLayer::builder()
            .expose_error_messages(true)
            .build()
            .unwrap()
            .layer(NeverReady);
        let response = service.oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"detail":"backend pool closed"}"#);
    }

    #[test]
    fn extra_data_cannot_override_the_detail() {
        let mut data = Map::new();
        data.insert("detail".into(), Value::from("spoofed"));
        data.insert("code".into(), Value::from(7));
        let body = render(
            ErrorFormat::Json,
            StatusCode::BAD_REQUEST,
            "real",
            None,
            Some(&data),
        );
        assert_eq!(&body[..], br#"{"detail":"real","code":7}"#);
    }

    #[test]
    fn status_without_a_reason_phrase_gets_a_generic_one() {
        let status = StatusCode::from_u16(599).unwrap();
        assert_eq!(reason(status), "Server Error");
        assert_eq!(reason(StatusCode::from_u16(499).unwrap()), "Client Error");
    }

    #[test]
    fn error_chain_joins_sources() {
        let inner = std::io::Error::other("refused");
        let outer = std::io::Error::other(WithSource(inner));
        assert_eq!(error_chain(&outer), "upstream failed: refused");
    }

    #[derive(Debug)]
    struct WithSource(std::io::Error);

    impl fmt::Display for WithSource {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("upstream failed")
        }
    }

    impl std::error::Error for WithSource {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
}
