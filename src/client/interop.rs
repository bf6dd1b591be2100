//! tower interop: [`Client`] as a `tower::Service<http::Request<B>>`, and conversions between
//! the `http` crate's types and the client's.
//!
//! A request sent through the service runs exactly as `client.request(...).send()` does: the
//! client's middleware chain, its redirect loop, its timeout and its SSRF policy all apply, and
//! a relative URI is joined to the client's [`base_url`](super::ClientBuilder::base_url). The
//! response is an `http::Response<`[`HttpBody`]`>` whose body streams, so tower's layers
//! (`ConcurrencyLimit`, `Timeout`, `Buffer`, tower-http's) wrap the client as any other
//! service.
//!
//! ```no_run
//! use std::time::Duration;
//! use stopover::client::Client;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # async fn run() -> Result<(), tower::BoxError> {
//! let client = Client::builder().base_url("http://127.0.0.1:8080/").build()?;
//! let stack = ServiceBuilder::new()
//!     .concurrency_limit(8)
//!     .timeout(Duration::from_secs(5))
//!     .service(client);
//! let response = stack.oneshot(http::Request::get("/health").body(String::new())?).await?;
//! println!("{}", response.status());
//! # Ok(())
//! # }
//! ```
//!
//! The other direction: [`Request`] converts from an `http::Request` (with an absolute URI)
//! and into one; [`Response::into_http`] turns a client response into an `http::Response`.
//! `examples/tower_stack.rs` runs a stack against a loopback server.

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
use super::into_url::resolve_url;
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
    ///
    /// A URI without a scheme and host (`/data?page=2`) is joined to the client's
    /// [`base_url`](crate::client::ClientBuilder::base_url), as `client.get("/data?page=2")` is;
    /// without a base URL it is an [`ErrorKind::Builder`](crate::client::ErrorKind::Builder)
    /// error.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), stopover::client::Error> {
    /// let client = stopover::client::Client::builder()
    ///     .base_url("http://127.0.0.1:8080/")
    ///     .build()?;
    /// let request = http::Request::get("/health").body(String::new()).unwrap();
    /// let response = client.execute_http(request).await?;
    /// # let _ = response;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn execute_http<B: Into<Body>>(&self, request: http::Request<B>) -> Result<Response> {
        let (parts, body) = request.into_parts();
        let url = match self.base_url() {
            Some(base) if parts.uri.scheme().is_none() && parts.uri.authority().is_none() => {
                resolve_url(parts.uri.to_string(), Some(base))?
            }
            _ => absolute_url(&parts.uri)?,
        };
        self.with_parts(
            parts.method,
            url,
            parts.headers,
            parts.version,
            parts.extensions,
            body.into(),
        )
        .send()
        .await
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
///
/// A relative URI (`/data`) is joined to the client's
/// [`base_url`](crate::client::ClientBuilder::base_url), as [`Client::execute_http`] does.
///
/// Because the client serves every body type `B`, `svc.ready()` alone cannot tell which
/// `Service<http::Request<B>>` it is asked about, and fails to infer. `oneshot(request)` and
/// `call(request)` name it through the request; for `ready`, name the request type once:
///
/// ```no_run
/// use stopover::client::Client;
/// use tower::{Service, ServiceExt};
///
/// # async fn run() -> Result<(), stopover::client::Error> {
/// let mut svc = Client::builder().base_url("http://127.0.0.1:8080/").build()?;
///
/// // One call: `oneshot` infers the body type from the request.
/// let response = svc.clone().oneshot(http::Request::get("/one").body(String::new()).unwrap()).await?;
///
/// // `ready` then `call`: name the request type on `ready`.
/// let ready = ServiceExt::<http::Request<String>>::ready(&mut svc).await?;
/// let response = ready.call(http::Request::get("/two").body(String::new()).unwrap()).await?;
/// # let _ = response;
/// # Ok(())
/// # }
/// ```
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
