//! Which responses the error layer renders, and how: the detail it sends, the handler it calls,
//! the event it logs.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::response::Parts;
use http::{HeaderMap, Method, Response, StatusCode, Uri};
use http_body::Body;
use serde_json::{Map, Value};
use tower::BoxError;

use super::builder::{Config, Handler, HandlerFuture};
use super::context::{ErrorContext, ErrorOrigin};
use crate::server::body::ErrorBody;
use crate::server::http_error::{HttpError, document, into_error_response, reason};
use crate::server::panic::panic_message;

const GENERIC_DETAIL: &str = "Internal Server Error";

/// The largest error body [`ErrorLayerBuilder::rewrite_bodies`](super::ErrorLayerBuilder::rewrite_bodies) buffers.
pub(super) const REWRITE_LIMIT: u64 = 8 * 1024;

/// What the layer found, for [`RequestInfo::respond`].
pub(super) struct Found<'a> {
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
pub(super) fn finish_custom<B>(
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
    pub(super) fn should_rewrite<B: Body>(&self, response: &Response<B>) -> bool {
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
    pub(super) fn on_rewritten<B>(&mut self, parts: Parts, text: Option<&str>) -> Step<B> {
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

    pub(super) fn on_response<B: Body<Data = Bytes>>(&mut self, response: Response<B>) -> Step<B> {
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

    pub(super) fn on_failure<B>(&mut self, failure: Failure) -> Step<B> {
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
        // Taken: a handler renders one error per request at most (its own panic falls back to
        // the built-in rendering).
        if let Some(handler) = self.handler.take() {
            let (headers, extensions) = self.kept.take().map(|kept| *kept).unwrap_or_default();
            // The request parts are made here, only for an error a handler renders.
            let (mut request, ()) = http::Request::new(()).into_parts();
            request.method = self.method.clone();
            request.uri = self.uri.clone();
            request.version = self.version;
            request.headers = headers;
            request.extensions = extensions;
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
                    panic = %panic_message(&*payload),
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

    /// The `request failed` event, with the server conventions' field names. A panic or an
    /// error of the inner service is an exception in the conventions' sense (v1.40): that
    /// event is named `http.server.request.exception` and carries `exception.type` and
    /// `exception.message`; an error response the application chose to send is not.
    fn log(&self, kind: ErrorOrigin, status: StatusCode, detail: &str, internal: Option<&str>) {
        use tracing::Level;
        let level = if status.is_server_error() && kind == ErrorOrigin::HttpError {
            // A deliberate answer, not a fault.
            self.config.http_error_level.unwrap_or(Level::WARN)
        } else if status.is_server_error() {
            self.config.server_error_level.unwrap_or(Level::ERROR)
        } else {
            self.config.client_error_level.unwrap_or(Level::DEBUG)
        };
        // A 4xx's internal text was written for the client and is already the detail.
        let internal = internal.filter(|_| status.is_server_error());
        let exception = match kind {
            ErrorOrigin::Panic => Some("panic"),
            ErrorOrigin::ServiceError => Some("service_error"),
            _ => None,
        };
        macro_rules! failed {
            ($level:expr) => {
                match exception {
                    Some(exception_type) => tracing::event!(
                        name: "http.server.request.exception",
                        $level,
                        http.response.status_code = status.as_u16(),
                        http.request.method = %self.method,
                        url.path = self.uri.path(),
                        http.route = self.route.as_deref(),
                        error.type = status.as_str(),
                        exception.type = exception_type,
                        exception.message = internal,
                        stopover.error_kind = ?kind,
                        detail,
                        "request failed"
                    ),
                    None => tracing::event!(
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
                    ),
                }
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
pub(super) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        message.push_str(": ");
        message.push_str(&err.to_string());
        source = err.source();
    }
    message
}

/// What the layer keeps of a request for the error it may render.
pub(super) struct RequestInfo {
    pub(super) config: Arc<Config>,
    pub(super) method: Method,
    pub(super) uri: Uri,
    pub(super) route: Option<String>,
    pub(super) handler: Option<Handler>,
    pub(super) version: http::Version,
    // What a handler may see of the request besides method, URI and version (only what it
    // was configured to need); `None` when no handler can run or there is nothing to keep.
    // Boxed: most layers have no handler, and the future that holds this moves with every
    // layer outside it.
    pub(super) kept: Option<Box<(HeaderMap, http::Extensions)>>,
    pub(super) skip_path: bool,
}

impl RequestInfo {
    pub(super) fn new(
        config: &Arc<Config>,
        method: &Method,
        uri: &Uri,
        version: http::Version,
        headers: &HeaderMap,
        extensions: &http::Extensions,
    ) -> Self {
        // Without path rules (the common case) the path need not even be read.
        let (handler, skip_path) = if config.handlers.is_empty() && config.skip_paths.is_empty() {
            (config.default_handler.clone(), false)
        } else {
            let path = uri.path();
            let handler = config
                .handlers
                .get(method, path)
                .or(config.default_handler.as_ref())
                .cloned();
            (handler, config.skip_paths.matches(method, path))
        };
        let kept = handler.as_ref().and_then(|_| {
            let mut kept_headers = HeaderMap::new();
            for name in &config.handler_headers {
                for value in headers.get_all(name) {
                    kept_headers.append(name.clone(), value.clone());
                }
            }
            let mut kept_extensions = http::Extensions::new();
            for copy in &config.handler_extensions {
                copy(extensions, &mut kept_extensions);
            }
            // Nothing to keep (the common case) costs no allocation.
            (!kept_headers.is_empty() || !kept_extensions.is_empty())
                .then(|| Box::new((kept_headers, kept_extensions)))
        });
        Self {
            config: config.clone(),
            skip_path,
            method: method.clone(),
            uri: uri.clone(),
            route: config
                .route
                .and_then(|route| route(extensions))
                .map(str::to_owned),
            handler,
            version,
            kept,
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

pub(super) enum Failure {
    Service(BoxError),
    Panic(String),
}

/// What rendering an error leads to: a response, or a custom handler to wait for.
pub(super) enum Step<B> {
    Done(Response<ErrorBody<B>>),
    Handle {
        parts: Parts,
        fallback: (HeaderValue, Bytes),
        future: HandlerFuture,
    },
}
