//! What a custom error handler learns: [`ErrorContext`] and [`ErrorOrigin`].

use bytes::Bytes;
use http::header::{self};
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Map, Value};

use crate::server::http_error::{ErrorFormat, document};

/// Where an error being rendered came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorOrigin {
    /// A 4xx or 5xx response with an empty body, such as axum's 404 and 405.
    EmptyResponse,
    /// A response made from an [`HttpError`](super::HttpError) (by a handler, or by a timeout).
    HttpError,
    /// The inner service returned an error.
    ServiceError,
    /// The inner service panicked.
    Panic,
    /// A 4xx or 5xx response with a small plain-text body, rendered because
    /// [`ErrorLayerBuilder::rewrite_bodies`](super::ErrorLayerBuilder::rewrite_bodies) is on.
    RewrittenBody,
}

/// What a custom error handler learns about the error it renders. The request comes beside
/// it, as `http::request::Parts`: the method, URI and version, and the headers and extensions
/// named with [`ErrorLayerBuilder::handler_headers`](super::ErrorLayerBuilder::handler_headers)
/// and [`ErrorLayerBuilder::handler_extension`](super::ErrorLayerBuilder::handler_extension).
#[derive(Clone, Debug)]
pub struct ErrorContext {
    pub(super) kind: ErrorOrigin,
    pub(super) status: StatusCode,
    pub(super) detail: String,
    pub(super) internal_message: Option<String>,
    pub(super) problem_type: Option<String>,
    pub(super) data: Option<Map<String, Value>>,
    pub(super) body: Option<Value>,
    pub(super) format: ErrorFormat,
    pub(super) response_headers: HeaderMap,
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

    /// The extra data of an [`HttpError`](super::HttpError).
    pub fn data(&self) -> Option<&Map<String, Value>> {
        self.data.as_ref()
    }

    /// The whole document of an [`HttpError`](super::HttpError) made with [`HttpError::with_body`](super::HttpError::with_body).
    pub fn body(&self) -> Option<&Value> {
        self.body.as_ref()
    }

    /// The RFC 9457 `type` URI of an [`HttpError`](super::HttpError), if it set one.
    pub fn problem_type(&self) -> Option<&str> {
        self.problem_type.as_deref()
    }

    /// The format the layer is configured with ([`ErrorLayerBuilder::format`](super::ErrorLayerBuilder::format)).
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
