//! The request a middleware sees: owned, mutable, and aware of the hop it belongs to.

use std::sync::Arc;
use std::time::Duration;

use http::{Extensions, HeaderMap, Method, Version};
use url::Url;

use super::attempt::Attempt;
use super::body::Body;
use super::error::{Error, Result};

/// One request on its way through the middleware chain.
///
/// The redirect loop builds a fresh `Request` for every hop from the request the caller built,
/// so what a middleware changes here (a header, the URL, the body) applies to this hop and to
/// the attempts a middleware makes inside it, never to the next hop.
///
/// Its `Debug` output hides credential headers (`Authorization`, `Cookie`, ..., see
/// [`Redaction`](super::Redaction)), every value marked sensitive, and the URL's user
/// name and password, however they were set.
pub struct Request {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) extensions: Extensions,
    pub(crate) version: Version,
    pub(crate) hop: u32,
    /// The URL before any redirect; `None` while that is `url` itself (the first hop, its URL
    /// untouched), so that the common request holds one copy of its URL, not two.
    pub(crate) original_url: Option<Arc<Url>>,
    /// Set once a redirect on the way here left the original origin, even if
    /// this hop is back on it: credentials are not sent again.
    pub(crate) left_origin: bool,
    /// Shared by the requests on the wire of one logical request, for the spans' resend count;
    /// `None` when no subscriber records the spans.
    pub(crate) wire_count: Option<super::telemetry::WireCount>,
    /// Set by a retrying middleware on each attempt it sends: a field rather than an extension,
    /// so that marking an attempt allocates nothing and copying the request copies no map.
    pub(crate) attempt: Option<Attempt>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redaction = super::redaction::Redaction::default();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &redaction.url(&self.url))
            .field("headers", &redaction.headers(&self.headers))
            .field("body", &self.body)
            .field("version", &self.version)
            .field("hop", &self.hop)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// A request with no headers and an empty body, for a middleware that builds one by hand.
    ///
    /// ```
    /// use http::Method;
    /// use stopover::client::Request;
    ///
    /// let url = url::Url::parse("http://example.test/").unwrap();
    /// let request = Request::new(Method::GET, url);
    /// assert_eq!(request.hop(), 0);
    /// ```
    pub fn new(method: Method, url: Url) -> Self {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::empty(),
            attempt_timeout: None,
            extensions: Extensions::new(),
            version: Version::HTTP_11,
            hop: 0,
            original_url: None,
            left_origin: false,
            wire_count: None,
            attempt: None,
        }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The method, to change it.
    pub fn method_mut(&mut self) -> &mut Method {
        &mut self.method
    }

    /// The URL this hop goes to.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The URL, to change it. The connection policy checks the URL as it is when the request
    /// reaches the transport, so a middleware cannot send it anywhere the policy forbids.
    pub fn url_mut(&mut self) -> &mut Url {
        if self.original_url.is_none() {
            self.original_url = Some(Arc::new(self.url.clone()));
        }
        &mut self.url
    }

    /// The headers, the client's defaults already merged in.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The headers, to change them.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// The body.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// The body, to replace it.
    pub fn body_mut(&mut self) -> &mut Body {
        &mut self.body
    }

    /// The HTTP version asked for: HTTP/1.1 unless the caller chose another (an HTTP/2
    /// connection, negotiated by TLS, is used whatever this says).
    pub fn version(&self) -> Version {
        self.version
    }

    /// The HTTP version, to change it.
    pub fn version_mut(&mut self) -> &mut Version {
        &mut self.version
    }

    /// The time one attempt may take on the wire, from sending until the response body has
    /// been read. `None` means no limit of its own (the whole call's timeout still applies).
    pub fn attempt_timeout(&self) -> Option<Duration> {
        self.attempt_timeout
    }

    /// Sets the time one attempt may take on the wire.
    pub fn set_attempt_timeout(&mut self, timeout: Option<Duration>) {
        self.attempt_timeout = timeout;
    }

    /// Typed per-request data: values the caller attached with
    /// [`RequestBuilder::extension`](super::RequestBuilder::extension), and what middlewares pass
    /// to each other.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// Typed per-request data, to change it.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }

    /// Which attempt of a retrying middleware outside this one the request is, when one set it
    /// ([`set_attempt`](Self::set_attempt)): the number a log line or a span shows.
    pub fn attempt(&self) -> Option<Attempt> {
        self.attempt
    }

    /// Marks the request as attempt `attempt` (from 1): what a retrying middleware (the built-in
    /// [`Retry`](crate::client::retry::Retry) or one of your own) does on each request it sends,
    /// for the middlewares inside it to read with [`attempt`](Self::attempt).
    ///
    /// ```
    /// use stopover::client::{Attempt, Request};
    ///
    /// let mut request = Request::new(http::Method::GET, url::Url::parse("http://example.test/")?);
    /// request.set_attempt(Attempt(2));
    /// assert_eq!(request.attempt(), Some(Attempt(2)));
    /// # Ok::<(), url::ParseError>(())
    /// ```
    pub fn set_attempt(&mut self, attempt: Attempt) {
        self.attempt = Some(attempt);
    }

    /// Which hop this is: 0 for the request as the caller sent it, 1 after the first redirect,
    /// and so on.
    pub fn hop(&self) -> u32 {
        self.hop
    }

    /// The URL the caller asked for, before any redirect.
    pub fn original_url(&self) -> &Url {
        self.original_url.as_deref().unwrap_or(&self.url)
    }

    /// A copy for another attempt (a retry, a challenge answer).
    ///
    /// Fails with [`ErrorKind::BodyNotReplayable`](super::ErrorKind::BodyNotReplayable) when the
    /// body is a stream that cannot be sent again; a stream with a replay cap is shared with the
    /// copy, and only a send past its cap fails.
    pub fn try_clone(&self) -> Result<Request> {
        if !self.body.is_replayable() {
            return Err(
                Error::body_not_replayable("the streaming body has already been sent")
                    .with_url(self.url.clone()),
            );
        }
        if self.body.is_stream() && !self.body.is_replayable_stream() {
            return Err(Error::body_not_replayable(
                "the streaming body has no replay cap, so it can be sent only once",
            )
            .with_url(self.url.clone()));
        }
        Ok(self.share())
    }

    /// A copy sharing the body, for the redirect loop: whether the body can be sent again is
    /// decided at send time.
    pub(crate) fn share(&self) -> Request {
        Request {
            method: self.method.clone(),
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: self.body.share(),
            attempt_timeout: self.attempt_timeout,
            extensions: self.extensions.clone(),
            version: self.version,
            hop: self.hop,
            original_url: self.original_url.clone(),
            left_origin: self.left_origin,
            wire_count: self.wire_count.clone(),
            attempt: self.attempt,
        }
    }
}
