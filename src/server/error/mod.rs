//! Turns error responses without a body, handler errors, inner service errors and panics into
//! JSON error documents, and leaves every other response alone.
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
//!     .layer(ErrorLayer::builder().expose_panic_messages(false).build()?);
//! // GET /item   -> 409 {"detail":"item is locked","retry_in":30}
//! // GET /nope   -> 404 {"detail":"Not Found"}
//! // POST /item  -> 405 {"detail":"Method Not Allowed"}, `Allow: GET,HEAD` kept
//! # Ok::<(), stopover::server::error::ErrorConfigError>(())
//! ```
//!
//! # Compared with aiohttp-middlewares and tower-http
//!
//! aiohttp-middlewares' `error_middleware` catches *exceptions*, so it also rewrites raised
//! redirects and 2xx statuses, drops every header (`Location`, `Allow`, `WWW-Authenticate`) and
//! sends `str(exception)` of any 500 to the client. tower-http has no layer that renders errors:
//! its `CatchPanicLayer` turns a panic into a 500 and leaves every error response as it is. This
//! layer acts on *responses*:
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
//! # Events
//!
//! Each rendered error is one `request failed` event with the field names of OpenTelemetry's
//! HTTP server conventions (v1.44.0): `http.request.method`, `url.path`, `http.route`,
//! `http.response.status_code`, `error.type` (the status code), plus `detail` and
//! `stopover.error_kind`. A panic or an error of the inner service is an exception in the
//! conventions' sense: its event is named `http.server.request.exception` (the event name of
//! v1.40) and carries `exception.type` (`panic` or `service_error`) and `exception.message`
//! (the panic message or the error chain, never sent to the client unless exposed). An error
//! the application answers on purpose (an [`HttpError`], a bare 4xx/5xx) is not an exception:
//! its event has the default name and the internal message, if any, in `error`. No
//! `error.message` field is written (deprecated in v1.40).
//!
//! The service's error type is [`Infallible`](std::convert::Infallible): put the layer where axum
//! wants infallible services, instead of `HandleErrorLayer`.
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

mod builder;
mod context;
mod policy;
mod service;
#[cfg(test)]
mod tests;

pub use self::builder::{ErrorConfigError, ErrorLayer, ErrorLayerBuilder, ServiceError};
pub use self::context::{ErrorContext, ErrorOrigin};
pub use self::service::{ErrorService, ResponseFuture};
pub use crate::server::body::ErrorBody;
pub use crate::server::http_error::{ErrorFormat, HttpError};

/// The error layer's service, by its old name.
#[deprecated(note = "renamed `ErrorService`")]
pub type Errors<S, E = std::convert::Infallible> = ErrorService<S, E>;
