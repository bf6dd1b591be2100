//! [`RequestBuilder`]: a request being built, sent by `send` or `.await`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::future::Either;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};
use serde::Serialize;
use url::Url;

use super::body::Body;
use super::client::Chain;
use super::client::{BodyLimit, Client, NESTING};
use super::error::{Error, Result};
use super::into_url::IntoUrl;
use super::middleware::Middleware;
use super::redirect::{self, Draft};
use super::response::Response;
use super::ssrf;
use super::telemetry;

/// Which middleware list a request runs.
#[derive(Clone)]
pub(crate) enum ChainChoice {
    /// The client's list.
    Inherit,
    /// This list instead of the client's (an empty one runs no middleware).
    Replace(Chain),
    /// The client's list followed by these.
    Extend(Chain),
}

/// A request being built. Nothing is sent until [`send`](RequestBuilder::send) (or `.await` on
/// the builder, which is the same); an invalid input is kept and reported by `send` as an
/// [`ErrorKind::Builder`](crate::client::ErrorKind::Builder) error naming it.
#[must_use = "a request is sent only by `send` or `.await`"]
pub struct RequestBuilder {
    pub(crate) client: Client,
    pub(crate) request: Result<Draft>,
    pub(crate) chain: ChainChoice,
    pub(crate) follow_redirects: bool,
    pub(crate) timeout: Option<Duration>,
}

impl RequestBuilder {
    fn update(mut self, change: impl FnOnce(&mut Draft) -> Result<()>) -> Self {
        if let Ok(request) = &mut self.request {
            if let Err(err) = change(request) {
                self.request = Err(err);
            }
        }
        self
    }

    /// Adds a header; it replaces the client's default of the same name. Setting the same name
    /// twice on the request sends both values.
    ///
    /// ```
    /// # let client = stopover::client::Client::new();
    /// let request = client.get("http://example.test/").header("x-trace", "abc");
    /// # let _ = request;
    /// ```
    pub fn header<K, V>(self, name: K, value: V) -> Self
    where
        K: AsRef<[u8]>,
        V: TryInto<HeaderValue>,
    {
        let name = HeaderName::from_bytes(name.as_ref()).map_err(|_| {
            Error::builder(format!(
                "{:?} is not a valid header name",
                String::from_utf8_lossy(name.as_ref())
            ))
        });
        let value = value.try_into();
        self.update(|request| {
            let headers = &mut request.headers;
            let name = name?;
            let value = value.map_err(|_| {
                Error::builder(format!("the value of the header `{name}` is not valid"))
            })?;
            headers.append(name, value);
            Ok(())
        })
    }

    /// Adds every header of `headers`, replacing the client's defaults of the same names.
    pub fn headers(self, headers: HeaderMap) -> Self {
        self.update(|request| {
            request.headers.extend(headers);
            Ok(())
        })
    }

    /// Sets `Authorization: Basic` with these credentials (RFC 7617), replacing any
    /// `Authorization` set on the request before. The value is marked sensitive.
    ///
    /// ```
    /// # let client = stopover::client::Client::new();
    /// let request = client.get("http://example.test/").basic_auth("aladdin", Some("opensesame"));
    /// # let _ = request;
    /// ```
    pub fn basic_auth<U, P>(self, username: U, password: Option<P>) -> Self
    where
        U: fmt::Display,
        P: fmt::Display,
    {
        let username = username.to_string();
        let password = password.map(|password| password.to_string());
        self.update(|request| {
            let value =
                basic_auth_value(username.as_bytes(), password.as_deref().map(str::as_bytes))?;
            request.headers.insert(AUTHORIZATION, value);
            Ok(())
        })
    }

    /// Sets `Authorization: Bearer <token>`.
    pub fn bearer_auth(self, token: impl fmt::Display) -> Self {
        let value = HeaderValue::try_from(format!("Bearer {token}"));
        self.update(|request| {
            let headers = &mut request.headers;
            let mut value = value
                .map_err(|_| Error::builder("the bearer token is not a valid header value"))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
            Ok(())
        })
    }

    /// Appends query parameters, serialised with `serde_urlencoded`.
    ///
    /// ```
    /// # let client = stopover::client::Client::new();
    /// let request = client.get("http://example.test/search").query(&[("q", "rust"), ("page", "2")]);
    /// # let _ = request;
    /// ```
    pub fn query<T: Serialize + ?Sized>(self, query: &T) -> Self {
        let encoded = serde_urlencoded::to_string(query);
        self.update(|request| {
            let encoded = encoded.map_err(|err| {
                Error::builder(format!("the query could not be serialised: {err}"))
            })?;
            if encoded.is_empty() {
                return Ok(());
            }
            let joined = match request.url.query() {
                Some(existing) if !existing.is_empty() => format!("{existing}&{encoded}"),
                _ => encoded,
            };
            request.url.set_query(Some(&joined));
            Ok(())
        })
    }

    /// Sets a JSON body and, unless already set, `Content-Type: application/json`.
    pub fn json<T: Serialize + ?Sized>(self, json: &T) -> Self {
        let encoded = serde_json::to_vec(json);
        self.update(|request| {
            let encoded = encoded.map_err(|err| {
                Error::builder(format!("the JSON body could not be serialised: {err}"))
            })?;
            request.body = Body::from(encoded);
            if !request.headers.contains_key(CONTENT_TYPE) {
                request
                    .headers
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            Ok(())
        })
    }

    /// Sets a URL-encoded form body and, unless already set,
    /// `Content-Type: application/x-www-form-urlencoded`.
    pub fn form<T: Serialize + ?Sized>(self, form: &T) -> Self {
        let encoded = serde_urlencoded::to_string(form);
        self.update(|request| {
            let encoded = encoded.map_err(|err| {
                Error::builder(format!("the form body could not be serialised: {err}"))
            })?;
            request.body = Body::from(encoded);
            if !request.headers.contains_key(CONTENT_TYPE) {
                request.headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
            }
            Ok(())
        })
    }

    /// Sets the body: bytes, a string, or a stream made with [`Body::wrap_stream`].
    pub fn body(self, body: impl Into<Body>) -> Self {
        let body = body.into();
        self.update(|request| {
            request.body = body;
            Ok(())
        })
    }

    /// The HTTP version to ask for. Default: HTTP/1.1, and HTTP/2 when TLS negotiates it;
    /// `HTTP_10` sends an HTTP/1.0 request; `HTTP_2` over a connection that is HTTP/1 fails.
    ///
    /// ```
    /// # let client = stopover::client::Client::new();
    /// let request = client.get("http://example.test/").version(http::Version::HTTP_10);
    /// # let _ = request;
    /// ```
    pub fn version(self, version: Version) -> Self {
        self.update(|request| {
            request.version = version;
            Ok(())
        })
    }

    /// How long this call may take in all, up to the response head, replacing the client's
    /// [`timeout`](crate::client::ClientBuilder::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The most bytes the response's whole-body readers ([`Response::bytes`], `text`, `json`,
    /// `buffer`) accept for this request, replacing the client's
    /// [`body_limit`](crate::client::ClientBuilder::body_limit) (default 64 MiB); `u64::MAX` lifts it.
    ///
    /// ```
    /// # let client = stopover::client::Client::new();
    /// let request = client.get("http://example.test/export.csv").body_limit(1 << 30);
    /// # let _ = request;
    /// ```
    pub fn body_limit(self, bytes: u64) -> Self {
        self.update(|request| {
            request.extensions.insert(BodyLimit(bytes));
            Ok(())
        })
    }

    /// Whether redirects are followed. Default: yes; when not, a 3xx is returned as it is.
    pub fn follow_redirects(mut self, follow: bool) -> Self {
        self.follow_redirects = follow;
        self
    }

    /// Runs `chain` for this request instead of the client's list: nothing is merged, as with
    /// aiohttp's `middlewares=` argument. An empty chain runs no middleware.
    pub fn middlewares(mut self, chain: Chain) -> Self {
        self.chain = ChainChoice::Replace(chain);
        self
    }

    /// Runs no middleware for this request (the connection policy still applies).
    pub fn no_middleware(self) -> Self {
        self.middlewares(Chain::new())
    }

    /// Adds `middleware` after the list this request would otherwise run (the client's, unless
    /// [`middlewares`](Self::middlewares) replaced it).
    pub fn extend_middleware<M: Middleware>(mut self, middleware: M) -> Self {
        self.chain = match self.chain {
            ChainChoice::Inherit => ChainChoice::Extend(Chain::new().with(middleware)),
            ChainChoice::Replace(chain) => ChainChoice::Replace(chain.with(middleware)),
            ChainChoice::Extend(chain) => ChainChoice::Extend(chain.with(middleware)),
        };
        self
    }

    /// Attaches typed data that middlewares read from [`Request::extensions`](crate::client::Request::extensions).
    pub fn extension<T: Clone + Send + Sync + 'static>(self, value: T) -> Self {
        self.update(|request| {
            request.extensions.insert(value);
            Ok(())
        })
    }

    /// A copy of this builder, to send the same request again; `None` when the body is a
    /// stream or the builder holds an input error.
    ///
    /// ```
    /// # let client = stopover::client::Client::new();
    /// let request = client.post("http://example.test/").body("payload");
    /// let again = request.try_clone().expect("a buffered body can be copied");
    /// # let _ = (request, again);
    /// ```
    pub fn try_clone(&self) -> Option<RequestBuilder> {
        let draft = self.request.as_ref().ok()?;
        if draft.body.is_stream() {
            return None;
        }
        Some(RequestBuilder {
            client: self.client.clone(),
            request: Ok(Draft {
                method: draft.method.clone(),
                url: draft.url.clone(),
                headers: draft.headers.clone(),
                body: draft.body.share(),
                extensions: draft.extensions.clone(),
                version: draft.version,
            }),
            chain: self.chain.clone(),
            follow_redirects: self.follow_redirects,
            timeout: self.timeout,
        })
    }

    /// Sends the request through the middleware chain, following redirects.
    ///
    /// Awaiting the builder itself does the same: `client.get(url).await`.
    pub async fn send(self) -> Result<Response> {
        use tracing::Instrument;
        let RequestBuilder {
            client,
            request,
            chain,
            follow_redirects,
            timeout,
        } = self;
        let draft = request?;
        let chain = match chain {
            ChainChoice::Inherit => client.inner.chain.clone(),
            ChainChoice::Replace(chain) => chain,
            ChainChoice::Extend(extra) => client.inner.chain.then(&extra),
        };
        let outer = NESTING.try_with(|nesting| *nesting).unwrap_or(0);
        let nesting = outer.max(client.nesting) + 1;
        if nesting > client.inner.max_nesting {
            return Err(Error::recursion(nesting).with_url(draft.url));
        }
        // The middlewares of this request get a client that remembers how deep it is.
        let client = Client { nesting, ..client };
        let span = telemetry::logical_span(client.span_redaction(), &draft.method, &draft.url);
        // The wire spans share the logical span's callsites: when no subscriber records this
        // one, none records theirs, and the count is not worth its allocation.
        let wire_count = (!span.is_disabled()).then(telemetry::WireCount::default);
        // The URL outlives the draft only for the timeout's error.
        let deadline = timeout.map(|timeout| (timeout, draft.url.clone()));
        let hops = redirect::follow_hops(client, draft, wire_count, chain, follow_redirects);
        // A span nobody records is not entered on every poll.
        let hops = if span.is_disabled() {
            Either::Right(hops)
        } else {
            Either::Left(hops.instrument(span.clone()))
        };
        let run = NESTING.scope(nesting, hops);
        // The logical span records the outcome, a timeout of the whole request included.
        let outcome = match deadline {
            None => run.await,
            Some((timeout, url)) => match tokio::time::timeout(timeout, run).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Error::timeout()
                    .with_url(url)
                    .with_message(format!("the request took longer than {timeout:?}"))),
            },
        };
        telemetry::record(&span, &outcome, false);
        outcome
    }
}

impl std::future::IntoFuture for RequestBuilder {
    type Output = Result<Response>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Response>> + Send>>;

    /// Sends the request, as [`send`](RequestBuilder::send) does.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

impl fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("RequestBuilder");
        match &self.request {
            Ok(request) => debug
                .field("method", &request.method)
                .field("url", &request.url.as_str()),
            Err(err) => debug.field("error", err),
        };
        debug.finish_non_exhaustive()
    }
}

impl Client {
    /// A `GET` request.
    pub fn get<U: IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// A `POST` request.
    pub fn post<U: IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// A `PUT` request.
    pub fn put<U: IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::PUT, url)
    }

    /// A `PATCH` request.
    pub fn patch<U: IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::PATCH, url)
    }

    /// A `DELETE` request.
    pub fn delete<U: IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::DELETE, url)
    }

    /// A `HEAD` request.
    pub fn head<U: IntoUrl>(&self, url: U) -> RequestBuilder {
        self.request(Method::HEAD, url)
    }

    /// A request with any method. A relative URL is joined to the base URL; without a base URL
    /// it is an [`ErrorKind::Builder`](crate::client::ErrorKind::Builder) error when the request is sent.
    ///
    /// A user name and password in the URL are taken out of it and sent as
    /// `Authorization: Basic`, as reqwest does; like any credential header, they are dropped
    /// when a redirect leaves the origin. With an [SSRF policy](crate::client::ClientBuilder::ssrf_policy)
    /// that does not [allow user info](ssrf::PolicyBuilder::allow_userinfo), such a URL is
    /// refused instead, as the policy would refuse it at the transport.
    pub fn request<U: IntoUrl>(&self, method: Method, url: U) -> RequestBuilder {
        let request = url
            .into_url(self.inner.base_url.as_ref())
            .and_then(|mut url| {
                let mut headers = HeaderMap::new();
                self.judge_url_credentials(&url)?;
                if let Some(credentials) = take_url_credentials(&mut url)? {
                    headers.insert(AUTHORIZATION, credentials);
                }
                Ok(Draft {
                    method,
                    url,
                    headers,
                    body: Body::empty(),
                    extensions: http::Extensions::new(),
                    version: Version::HTTP_11,
                })
            });
        RequestBuilder {
            client: self.clone(),
            request,
            chain: ChainChoice::Inherit,
            follow_redirects: true,
            timeout: self.inner.timeout,
        }
    }

    /// Lets the SSRF policy judge the credentials of a URL before they are taken out of it:
    /// at the transport, its `userinfo` rule would no longer see them.
    fn judge_url_credentials(&self, url: &Url) -> Result<()> {
        let Some(policy) = &self.inner.ssrf else {
            return Ok(());
        };
        if url.username().is_empty() && url.password().is_none() {
            return Ok(());
        }
        match policy.check_url(url) {
            Err(refusal) if refusal.rule() == ssrf::Rule::Userinfo => policy
                .enforce(Err(refusal))
                .map_err(|refusal| Error::refused(refusal.with_hop(0))),
            _ => Ok(()),
        }
    }
}

/// Takes the user name and password out of `url`, as the value of a Basic `Authorization`
/// header. They are percent-decoded first: the URL holds them encoded.
pub(crate) fn take_url_credentials(url: &mut Url) -> Result<Option<HeaderValue>> {
    if url.username().is_empty() && url.password().is_none() {
        return Ok(None);
    }
    let decode = |text: &str| percent_encoding::percent_decode_str(text).collect::<Vec<u8>>();
    let username = decode(url.username());
    let password = url.password().map(decode);
    // Only fails for URLs that cannot hold credentials, and this one held some.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    basic_auth_value(&username, password.as_deref()).map(Some)
}

/// `Basic base64(user:password)`, marked sensitive.
pub(crate) fn basic_auth_value(username: &[u8], password: Option<&[u8]>) -> Result<HeaderValue> {
    use base64::Engine as _;
    let mut credentials = username.to_vec();
    credentials.push(b':');
    credentials.extend_from_slice(password.unwrap_or_default());
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    let mut value = HeaderValue::try_from(format!("Basic {encoded}"))
        .map_err(|_| Error::builder("the basic credentials are not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}
