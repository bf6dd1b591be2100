//! tower interop: [`Client`] as a `tower::Service<http::Request<B>>`, and conversions between
//! the `http` crate's types and the client's.
//!
//! A request sent through the service runs exactly as `client.request(...).send()` does: the
//! client's middleware chain, its redirect loop, its timeout and its SSRF policy all apply.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

use super::body::Body;
use super::client::Client;
use super::error::{Error, Result};
use super::request::Request;
use super::response::Response;

/// The body of an [`http::Response`] made from a client [`Response`]: it streams the network
/// body as it arrives, and reports a read failure as the client's [`Error`].
pub type HttpBody = UnsyncBoxBody<Bytes, Error>;

impl Response {
    /// This response as an [`http::Response`] whose body streams.
    ///
    /// The status, version, headers and extensions move over; the final URL, the remote address
    /// and the redirect history are read before the conversion, as the `http` type has no place
    /// for them.
    ///
    /// ```
    /// # use stopover::client::Response;
    /// let response = Response::from_http(
    ///     http::Response::new("ok"),
    ///     "http://example.test/".parse().unwrap(),
    /// );
    /// let http: http::Response<_> = response.into_http();
    /// assert_eq!(http.status(), http::StatusCode::OK);
    /// ```
    pub fn into_http(mut self) -> http::Response<HttpBody> {
        let mut builder = http::Response::builder()
            .status(self.status())
            .version(self.version());
        if let Some(headers) = builder.headers_mut() {
            *headers = std::mem::take(self.headers_mut());
        }
        if let Some(extensions) = builder.extensions_mut() {
            *extensions = std::mem::take(self.extensions_mut());
        }
        let frames = self
            .bytes_stream()
            .map(|chunk| chunk.map(http_body::Frame::data));
        let body = http_body_util::StreamBody::new(frames).boxed_unsync();
        builder
            .body(body)
            .expect("status and version come from a valid response")
    }
}

impl From<Response> for http::Response<HttpBody> {
    fn from(response: Response) -> Self {
        response.into_http()
    }
}

/// Parses an `http` request URI as the client's URL: it must be absolute.
fn absolute_url(uri: &http::Uri) -> Result<url::Url> {
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err(Error::builder(format!(
            "the request URI `{uri}` is not absolute; a client request needs a scheme and a host"
        )));
    }
    url::Url::parse(&uri.to_string())
        .map_err(|err| Error::builder(format!("the request URI `{uri}` is not a valid URL: {err}")))
}

impl<B: Into<Body>> TryFrom<http::Request<B>> for Request {
    type Error = Error;

    /// Fails when the URI is not absolute (`http://host/path`).
    fn try_from(request: http::Request<B>) -> Result<Self> {
        let (parts, body) = request.into_parts();
        let mut out = Request::new(parts.method, absolute_url(&parts.uri)?);
        *out.headers_mut() = parts.headers;
        *out.version_mut() = parts.version;
        *out.extensions_mut() = parts.extensions;
        *out.body_mut() = body.into();
        Ok(out)
    }
}

impl TryFrom<Request> for http::Request<Body> {
    type Error = Error;

    /// Fails only when the URL is not a valid `http` URI.
    fn try_from(request: Request) -> Result<Self> {
        let uri: http::Uri = request
            .url()
            .as_str()
            .parse()
            .map_err(|err| Error::builder(format!("the URL is not a valid URI: {err}")))?;
        let mut request = request;
        let mut builder = http::Request::builder()
            .method(request.method().clone())
            .uri(uri)
            .version(request.version());
        if let Some(headers) = builder.headers_mut() {
            *headers = std::mem::take(request.headers_mut());
        }
        if let Some(extensions) = builder.extensions_mut() {
            *extensions = std::mem::take(request.extensions_mut());
        }
        let body = std::mem::take(request.body_mut());
        builder.body(body).map_err(|err| {
            Error::builder(format!("the request is not a valid http request: {err}"))
        })
    }
}

impl Client {
    /// Sends an [`http::Request`] through the middleware chain, following redirects, as
    /// `client.request(...).send()` does; what the `tower::Service` implementation runs.
    pub async fn execute_http<B: Into<Body>>(&self, request: http::Request<B>) -> Result<Response> {
        let (parts, body) = request.into_parts();
        let url = absolute_url(&parts.uri)?;
        let mut builder = self.request(parts.method, url);
        if let Ok(draft) = &mut builder.request {
            // The client's credentials-in-URL handling already ran; the request's own headers
            // are added to what it set.
            for (name, value) in parts.headers.iter() {
                draft.headers.append(name, value.clone());
            }
            draft.version = parts.version;
            draft.extensions = parts.extensions;
            draft.body = body.into();
        }
        builder.send().await
    }
}

/// `Client` is a [`tower::Service`]: the request runs through the middleware chain, the
/// redirect loop and the SSRF policy exactly as `client.get(...)` does, and the response is an
/// [`http::Response`] whose body streams.
///
/// The body type is anything that converts into a [`Body`]: `String`, `Vec<u8>`, `Bytes` and
/// `&'static str` are buffered and replayable; a [`Body::wrap_stream`] body streams under the
/// same replay rules as any other request.
///
/// The service is always ready: it does no admission control of its own, that is what tower's
/// `ConcurrencyLimit`, `RateLimit` or `LoadShed` around it are for.
impl<B> tower::Service<http::Request<B>> for Client
where
    B: Into<Body> + Send + 'static,
{
    type Response = http::Response<HttpBody>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let client = self.clone();
        Box::pin(async move { Ok(client.execute_http(request).await?.into_http()) })
    }
}
