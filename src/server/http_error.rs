//! [`HttpError`], a handler's typed error, and the JSON document it renders to
//! ([`ErrorFormat`]): the vocabulary the error and timeout layers share, so neither depends on
//! the other.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::response::Parts;
use http::{HeaderMap, Method, Response, StatusCode};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

use super::body::ErrorBody;

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
pub(crate) fn reason(status: StatusCode) -> &'static str {
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
pub(crate) fn prepare_parts(
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
/// response extensions, where [`ErrorLayer`](super::error::ErrorLayer) finds it and renders it in its own format. The
/// detail is sent as given, for 5xx too: it is the handler's deliberate message. Headers added
/// with [`HttpError::with_header`] go on the response.
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
    pub(crate) status: StatusCode,
    pub(crate) detail: Cow<'static, str>,
    pub(crate) problem_type: Option<Cow<'static, str>>,
    pub(crate) data: Option<Map<String, Value>>,
    pub(crate) body: Option<Value>,
    pub(crate) headers: HeaderMap,
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
pub(crate) fn document(
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
