//! Responses: from the network, or made by a middleware that answers without it.

use std::fmt;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use http::{Extensions, HeaderMap, StatusCode, Version};
use serde::de::DeserializeOwned;
use url::Url;

use super::error::{Error, Result};
use super::history::Redirect;

/// How many bytes of an unwanted response body are read so that its connection can go back to
/// the pool; a longer body is dropped, which closes the connection instead.
const DISCARD_LIMIT: usize = 64 * 1024;
/// How long a discarded body may take to drain before it is dropped instead.
const DISCARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// A response, as the chain returns it to the caller.
pub struct Response {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
    url: Url,
    remote_addr: Option<SocketAddr>,
    history: Vec<Redirect>,
    body: ResponseBody,
    /// The most bytes the whole-body readers accept; a body in memory already has none.
    body_limit: u64,
    /// When the whole call's [`timeout`](super::ClientBuilder::timeout) runs out: reading the
    /// body past it fails with [`ErrorKind::Timeout`](super::ErrorKind::Timeout).
    deadline: Option<Deadline>,
}

/// The end of the whole call's timeout, and the timeout itself for the error's message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub(crate) at: tokio::time::Instant,
    pub(crate) timeout: std::time::Duration,
}

enum ResponseBody {
    Full(Bytes),
    /// The network body, read through reqwest. Its headers were moved out into the `Response`.
    Incoming(reqwest::Response),
}

impl Response {
    /// A response made without the network, for a middleware that answers by itself (a cache, a
    /// fake for tests, a refusal with a body).
    ///
    /// ```
    /// use stopover::client::Response;
    ///
    /// let url = url::Url::parse("http://example.test/cached").unwrap();
    /// let response = Response::from_http(http::Response::new("from cache"), url);
    /// assert_eq!(response.status(), 200);
    /// ```
    pub fn from_http<B: Into<Bytes>>(response: http::Response<B>, url: Url) -> Self {
        let (parts, body) = response.into_parts();
        Response {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            extensions: parts.extensions,
            url,
            remote_addr: None,
            history: Vec::new(),
            body: ResponseBody::Full(body.into()),
            body_limit: u64::MAX,
            deadline: None,
        }
    }

    pub(crate) fn from_reqwest(mut response: reqwest::Response, url: Url) -> Self {
        Response {
            status: response.status(),
            version: response.version(),
            headers: std::mem::take(response.headers_mut()),
            extensions: std::mem::take(response.extensions_mut()),
            url,
            remote_addr: response.remote_addr(),
            history: Vec::new(),
            body: ResponseBody::Incoming(response),
            body_limit: u64::MAX,
            deadline: None,
        }
    }

    pub(crate) fn with_body_limit(mut self, limit: u64) -> Self {
        self.body_limit = limit;
        self
    }

    /// Bounds reading the body by the whole call's deadline (the earlier one wins, should a
    /// response pass through two calls).
    pub(crate) fn set_deadline(&mut self, deadline: Deadline) {
        match self.deadline {
            Some(current) if current.at <= deadline.at => {}
            _ => self.deadline = Some(deadline),
        }
    }

    /// The most bytes [`bytes`](Self::bytes), [`text`](Self::text), [`json`](Self::json) and
    /// [`buffer`](Self::buffer) read; see
    /// [`ClientBuilder::body_limit`](super::ClientBuilder::body_limit). `u64::MAX` for no
    /// limit, as for a response a middleware made.
    pub fn body_limit(&self) -> u64 {
        self.body_limit
    }

    /// Changes [`body_limit`](Self::body_limit), for a middleware that knows what a body may
    /// hold.
    pub fn set_body_limit(&mut self, limit: u64) {
        self.body_limit = limit;
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Sets the status code (for a middleware rewriting a response).
    pub fn set_status(&mut self, status: StatusCode) {
        self.status = status;
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The headers, to change them.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.headers
    }

    /// Typed data attached to the response by the transport or by middlewares.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// Typed data attached to the response, to change it.
    pub fn extensions_mut(&mut self) -> &mut Extensions {
        &mut self.extensions
    }

    /// The URL of the request that produced this response: after redirects, the last hop's.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The address of the peer the response came from; `None` for a response that a
    /// middleware made.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote_addr
    }

    /// The length of the body when it is known in advance: from `Content-Length`, or the
    /// size of a body a middleware made. `None` for a body of unknown length (chunked, or
    /// ended by closing the connection).
    ///
    /// ```
    /// use stopover::client::Response;
    ///
    /// let url = url::Url::parse("http://example.test/").unwrap();
    /// let response = Response::from_http(http::Response::new("12345"), url);
    /// assert_eq!(response.content_length(), Some(5));
    /// ```
    pub fn content_length(&self) -> Option<u64> {
        match &self.body {
            ResponseBody::Full(bytes) => u64::try_from(bytes.len()).ok(),
            ResponseBody::Incoming(response) => response.content_length(),
        }
    }

    /// The redirects followed before this response, first one first.
    pub fn history(&self) -> &[Redirect] {
        &self.history
    }

    pub(crate) fn set_history(&mut self, history: Vec<Redirect>) {
        self.history = history;
    }

    /// `Err` with [`ErrorKind::Status`](super::ErrorKind::Status) for a 4xx or 5xx status;
    /// the response itself otherwise.
    ///
    /// ```
    /// use stopover::client::Response;
    ///
    /// let url = url::Url::parse("http://example.test/").unwrap();
    /// let mut response = http::Response::new("");
    /// *response.status_mut() = http::StatusCode::BAD_GATEWAY;
    /// let err = Response::from_http(response, url).error_for_status().unwrap_err();
    /// assert_eq!(err.status(), Some(http::StatusCode::BAD_GATEWAY));
    /// ```
    pub fn error_for_status(self) -> Result<Self> {
        match self.status_error() {
            Some(err) => Err(err),
            None => Ok(self),
        }
    }

    /// Like [`error_for_status`](Self::error_for_status), keeping the response.
    pub fn error_for_status_ref(&self) -> Result<&Self> {
        match self.status_error() {
            Some(err) => Err(err),
            None => Ok(self),
        }
    }

    fn status_error(&self) -> Option<Error> {
        (self.status.is_client_error() || self.status.is_server_error())
            .then(|| Error::from_status(self.status, self.url.clone()))
    }

    /// The next chunk of the body, `None` at its end.
    ///
    /// Reading is bounded by the whole call's [`timeout`](super::ClientBuilder::timeout), as
    /// in reqwest: past it, this fails with [`ErrorKind::Timeout`](super::ErrorKind::Timeout)
    /// and [`Error::is_body`] is true. So are [`bytes`](Self::bytes), [`text`](Self::text),
    /// [`json`](Self::json), [`buffer`](Self::buffer) and [`bytes_stream`](Self::bytes_stream),
    /// which read through it.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        match &mut self.body {
            ResponseBody::Full(bytes) if bytes.is_empty() => Ok(None),
            ResponseBody::Full(bytes) => Ok(Some(std::mem::take(bytes))),
            ResponseBody::Incoming(response) => {
                let read = response.chunk();
                let read = match self.deadline {
                    None => read.await,
                    Some(deadline) => match tokio::time::timeout_at(deadline.at, read).await {
                        Ok(read) => read,
                        Err(_) => {
                            return Err(Error::timeout()
                                .in_body()
                                .with_url(self.url.clone())
                                .with_message(format!(
                                    "the request took longer than {:?}, reading the response \
                                     body included",
                                    deadline.timeout
                                )));
                        }
                    },
                };
                read.map_err(|err| Error::from_reqwest(err).with_url_if_missing(&self.url))
            }
        }
    }

    /// The whole body.
    ///
    /// A body longer than [`body_limit`](Self::body_limit) is an
    /// [`ErrorKind::BodyTooLarge`](super::ErrorKind::BodyTooLarge) error; stream it with
    /// [`chunk`](Self::chunk) or [`bytes_stream`](Self::bytes_stream) instead.
    pub async fn bytes(mut self) -> Result<Bytes> {
        self.buffer().await
    }

    /// The whole body as UTF-8 text, within [`body_limit`](Self::body_limit).
    ///
    /// A leading byte order mark is dropped, as reqwest and browsers do. A body that is not
    /// UTF-8 is an [`ErrorKind::Decode`](super::ErrorKind::Decode) error rather than text with
    /// replacement characters; read [`bytes`](Self::bytes) to decode another charset.
    pub async fn text(self) -> Result<String> {
        const BOM: &[u8] = b"\xEF\xBB\xBF";
        let url = self.url.clone();
        let mut bytes = self.bytes().await?;
        if bytes.starts_with(BOM) {
            bytes = bytes.slice(BOM.len()..);
        }
        String::from_utf8(bytes.into()).map_err(|err| Error::decode(err.utf8_error()).with_url(url))
    }

    /// The whole body deserialized from JSON, within [`body_limit`](Self::body_limit).
    pub async fn json<T: DeserializeOwned>(self) -> Result<T> {
        let url = self.url.clone();
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|err| Error::decode(err).with_url(url))
    }

    /// The body as a stream of chunks. The stream is `Unpin`, so `StreamExt::next` works on it
    /// without pinning it first.
    ///
    /// ```no_run
    /// use futures_util::StreamExt;
    /// # async fn run(response: stopover::client::Response) -> stopover::client::Result<()> {
    /// let mut chunks = response.bytes_stream();
    /// while let Some(chunk) = chunks.next().await {
    ///     println!("{} bytes", chunk?.len());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn bytes_stream(self) -> impl Stream<Item = Result<Bytes>> + Send + Unpin + 'static {
        // Boxed once per stream so that callers need not pin it (reqwest's stream is `Unpin`).
        Box::pin(futures_util::stream::unfold(
            Some(self),
            |state| async move {
                let mut response = state?;
                match response.chunk().await {
                    Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
                    Ok(None) => None,
                    Err(err) => Some((Err(err), None)),
                }
            },
        ))
    }

    /// Lets the response go without leaking its connection: the rest of a short body is read
    /// and dropped so its connection can be reused; a body longer than 64 KiB, or one that
    /// takes over a second to arrive, is dropped unread, which closes its connection. For a
    /// middleware that throws a response away (a retry, an answered challenge, a redirect).
    pub fn discard(self) -> impl std::future::Future<Output = ()> + Send + 'static {
        // Boxed: it is a cleanup step, and the state of a drain (a body read, a timer) would
        // make the future of every caller that might discard larger, and larger to move.
        let drain: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
            Box::pin(async move {
                let _ = tokio::time::timeout(DISCARD_TIMEOUT, self.drain()).await;
            });
        drain
    }

    async fn drain(mut self) {
        if let ResponseBody::Full(_) = self.body {
            return;
        }
        let announced = self
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if announced.is_some_and(|len| len > DISCARD_LIMIT as u64) {
            return;
        }
        let mut read = 0;
        while let Ok(Some(chunk)) = self.chunk().await {
            read += chunk.len();
            if read > DISCARD_LIMIT {
                return;
            }
        }
    }

    /// Reads the whole body into memory, so that the response can be read more than once by
    /// the middlewares it passes through. Returns the bytes that were read.
    ///
    /// A body longer than [`body_limit`](Self::body_limit) is an
    /// [`ErrorKind::BodyTooLarge`](super::ErrorKind::BodyTooLarge) error, found from
    /// `Content-Length` before anything is read, or else as soon as the bytes read pass it.
    pub async fn buffer(&mut self) -> Result<Bytes> {
        if let ResponseBody::Full(bytes) = &self.body {
            return Ok(bytes.clone());
        }
        let limit = self.body_limit;
        let too_large = |url: &Url| Error::body_too_large(limit).with_url(url.clone());
        let announced = self.content_length();
        if announced.is_some_and(|len| len > limit) {
            return Err(too_large(&self.url));
        }
        let fits = |len: usize| u64::try_from(len).is_ok_and(|len| len <= limit);
        // A body that arrives in one chunk is returned without a copy.
        let first = self.chunk().await?.unwrap_or_default();
        if !fits(first.len()) {
            return Err(too_large(&self.url));
        }
        let bytes = match self.chunk().await? {
            None => first,
            Some(second) => {
                let capacity = announced.and_then(|len| usize::try_from(len).ok());
                let mut buffer =
                    BytesMut::with_capacity(capacity.unwrap_or(first.len() + second.len()));
                buffer.extend_from_slice(&first);
                let mut next = Some(second);
                while let Some(chunk) = next {
                    if !fits(buffer.len() + chunk.len()) {
                        return Err(too_large(&self.url));
                    }
                    buffer.extend_from_slice(&chunk);
                    next = self.chunk().await?;
                }
                buffer.freeze()
            }
        };
        self.body = ResponseBody::Full(bytes.clone());
        Ok(bytes)
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("url", &self.url.as_str())
            .field("status", &self.status)
            // Set-Cookie and the like, however the response got them.
            .field(
                "headers",
                &super::redaction::Redaction::default().headers(&self.headers),
            )
            .field("history", &self.history.len())
            .finish()
    }
}
