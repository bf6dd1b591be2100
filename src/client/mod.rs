//! The client: a cheap-to-clone HTTP client on reqwest with a middleware chain.
//!
//! [`Client`] owns a reqwest client (TLS, pooling, HTTP/1 and 2) and adds what reqwest-middleware
//! cannot: the chain runs once per redirect hop because stopover, not reqwest, follows redirects;
//! a middleware can send requests through the same client without recursing for ever; and a
//! request can replace the client's middleware list (aiohttp's semantics), with extending it a
//! separate, explicit call.
//!
//! ```no_run
//! use stopover::client::{from_fn, Client, Next, Request};
//!
//! # async fn run() -> Result<(), stopover::client::Error> {
//! let client = Client::builder()
//!     .base_url("http://127.0.0.1:8080/")
//!     .middleware(from_fn(|req: Request, next: Next| async move {
//!         println!("-> {} {}", req.method(), req.url());
//!         next.run(req).await
//!     }))
//!     .build()?;
//!
//! let greeting = client.get("hello").send().await?.text().await?;
//! // The same request without any middleware:
//! let quiet = client.get("hello").no_middleware().send().await?;
//! # let _ = (greeting, quiet);
//! # Ok(())
//! # }
//! ```

mod body;
mod error;
mod interop;
mod middleware;
mod redirect;
mod request;
mod response;

pub mod digest;
pub mod logging;
mod proxy;
pub mod retry;
pub mod ssrf;
mod telemetry;
pub use telemetry::DURATION_BUCKETS;
pub mod token;
mod transport;
#[cfg(any(feature = "rustls", feature = "rustls-ring", feature = "native-tls"))]
pub use transport::tls;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::{AUTHORIZATION, CONTENT_TYPE, PROXY_AUTHORIZATION, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version};
use serde::Serialize;
use url::Url;

pub use body::Body;
pub use error::{BoxError, Error, ErrorKind, Result};
pub use interop::HttpBody;
pub use middleware::{Chain, FromFn, Middleware, Next, Pending, from_fn};
pub use proxy::Proxy;
use redirect::Draft;
pub use request::Request;
pub use response::{Redirect, Response};

const DEFAULT_USER_AGENT: &str = concat!("stopover/", env!("CARGO_PKG_VERSION"));
const DEFAULT_MAX_REDIRECTS: usize = 10;
const DEFAULT_MAX_NESTING: usize = 8;
/// See [`ClientBuilder::body_limit`].
const DEFAULT_BODY_LIMIT: u64 = 64 * 1024 * 1024;

/// A request's own [`RequestBuilder::body_limit`], carried to the transport in its extensions.
#[derive(Debug, Clone, Copy)]
struct BodyLimit(u64);

tokio::task_local! {
    /// How many `send` calls are running inside each other in this task: a request sent from
    /// inside a middleware runs while the outer one is being polled.
    static NESTING: usize;
}

/// An HTTP client with a middleware chain. Cloning it is cheap and shares the connection pool,
/// the configuration and the middlewares.
#[derive(Clone)]
pub struct Client {
    inner: Arc<ClientRef>,
    /// How deeply nested the request was that this handle was given to: 0 for a client the
    /// caller built, the request's depth for the one a middleware gets from [`Next::client`].
    /// A request sent with it counts from there, even from a task the middleware spawned,
    /// where the task-local count does not reach.
    nesting: usize,
}

struct ClientRef {
    http: reqwest::Client,
    base_url: Option<Url>,
    default_headers: HeaderMap,
    timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
    max_redirects: usize,
    max_nesting: usize,
    chain: Chain,
    ssrf: Option<ssrf::Policy>,
    body_limit: u64,
    span_redaction: logging::Redaction,
    #[cfg(feature = "opentelemetry")]
    trace_exclude: Vec<url::Origin>,
}

impl Client {
    /// A client with the default configuration and no middleware.
    ///
    /// # Panics
    ///
    /// When the TLS backend cannot be initialised, like `reqwest::Client::new`; use
    /// [`Client::builder`] to get that as an error instead.
    pub fn new() -> Client {
        match ClientBuilder::new().build() {
            Ok(client) => client,
            Err(err) => panic!("the default stopover client could not be built: {err}"),
        }
    }

    /// A builder to configure a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }

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
    /// it is an [`ErrorKind::Builder`] error when the request is sent.
    ///
    /// A user name and password in the URL are taken out of it and sent as
    /// `Authorization: Basic`, as reqwest does; like any credential header, they are dropped
    /// when a redirect leaves the origin. With an [SSRF policy](ClientBuilder::ssrf_policy)
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

    /// The base URL relative request URLs are joined to, if the client has one
    /// ([`ClientBuilder::base_url`]).
    pub fn base_url(&self) -> Option<&Url> {
        self.inner.base_url.as_ref()
    }

    /// The client's own middleware list.
    pub fn middlewares(&self) -> &Chain {
        &self.inner.chain
    }

    pub(crate) fn max_redirects(&self) -> usize {
        self.inner.max_redirects
    }

    pub(crate) fn default_headers(&self) -> &HeaderMap {
        &self.inner.default_headers
    }

    pub(crate) fn span_redaction(&self) -> &logging::Redaction {
        &self.inner.span_redaction
    }

    pub(crate) fn attempt_timeout(&self) -> Option<Duration> {
        self.inner.attempt_timeout
    }

    /// The end of every chain: one attempt on the wire, inside its own span.
    ///
    /// With an SSRF policy, this is where it is enforced for every hop, every retry and every
    /// request a middleware sends: the URL is checked here, the resolver the reqwest client was
    /// built with checks the addresses, and the tripwire the peer.
    ///
    /// It owns the client, so that the chain's last step boxes this future alone, and it keeps
    /// little across its one await: futures are moved as they are wrapped, and a large one
    /// costs a large copy at every layer (BENCHMARKS.md, "where the cost goes").
    pub(crate) async fn transport(self, request: Request) -> Result<Response> {
        let Request {
            method,
            url,
            headers,
            body,
            attempt_timeout,
            version,
            hop,
            extensions,
            wire_count,
            ..
        } = request;
        let body_limit = extensions
            .get::<BodyLimit>()
            .map_or(self.inner.body_limit, |limit| limit.0);
        let span = telemetry::wire_span(
            &self.inner.span_redaction,
            &method,
            &url,
            &headers,
            wire_count.as_ref(),
        );
        #[cfg(feature = "opentelemetry")]
        let headers = {
            let mut headers = headers;
            telemetry::inject(&span, &url, &mut headers, &self.inner.trace_exclude);
            headers
        };
        #[cfg(feature = "metrics")]
        let (started, metric_method, metric_url) =
            (tokio::time::Instant::now(), method.clone(), url.clone());
        let outgoing = Outgoing {
            method,
            headers,
            body,
            attempt_timeout,
            version,
        };
        let outcome = self.wire(&span, outgoing, url, hop, body_limit).await;
        telemetry::record(&span, &outcome, true);
        #[cfg(feature = "metrics")]
        telemetry::record_duration(
            &metric_method,
            &metric_url,
            &outcome,
            started.elapsed().as_secs_f64(),
        );
        outcome
    }

    /// Checks the URL, sends the request with reqwest and judges the peer it answered from;
    /// `span` is current throughout.
    async fn wire(
        &self,
        span: &tracing::Span,
        outgoing: Outgoing,
        url: Url,
        hop: u32,
        body_limit: u64,
    ) -> Result<Response> {
        use tracing::Instrument;
        let refused =
            |refusal: ssrf::Refusal| Error::refused(refusal.with_url(url.clone()).with_hop(hop));
        let policy = self.inner.ssrf.as_ref();
        if let Some(policy) = policy {
            span.in_scope(|| policy.enforce(policy.check_url(&url)))
                .map_err(refused)?;
        }
        let body = outgoing
            .body
            .into_transport()
            .map_err(|err| err.with_url(url.clone()))?;
        let mut request = reqwest::Request::new(outgoing.method, url.clone());
        *request.headers_mut() = outgoing.headers;
        *request.body_mut() = body;
        if outgoing.attempt_timeout.is_some() {
            // `timeout_mut` creates the request's extension map: only when there is one to set.
            *request.timeout_mut() = outgoing.attempt_timeout;
        }
        *request.version_mut() = outgoing.version;
        let execute = self.inner.http.execute(request);
        let result = match (policy, url.port_or_known_default()) {
            // The guarded resolver judges port-restricted rules with the port it runs for.
            (Some(_), Some(port)) => {
                ssrf::with_destination_port(port, execute)
                    .instrument(span.clone())
                    .await
            }
            _ => execute.instrument(span.clone()).await,
        };
        match result {
            Ok(response) => {
                if let Some(policy) = policy {
                    // The tripwire: dropped unread, the response cannot reach the caller, and
                    // its connection is closed rather than pooled.
                    span.in_scope(|| ssrf::judge_response_peer(policy, response.remote_addr()))
                        .map_err(refused)?;
                }
                Ok(Response::from_reqwest(response, url).with_body_limit(body_limit))
            }
            Err(err) => match ssrf::find_refusal(&err) {
                Some(refusal) => Err(refused(refusal.clone())),
                None => Err(Error::from_reqwest(err).with_url(url)),
            },
        }
    }
}

/// What [`Client::wire`] hands to reqwest besides the URL.
struct Outgoing {
    method: Method,
    headers: HeaderMap,
    body: body::Body,
    attempt_timeout: Option<Duration>,
    version: http::Version,
}

/// Puts the SSRF guard into reqwest's transport: no proxy (one would resolve and connect on
/// our behalf, out of the guard's sight), the guarded resolver around `resolver` (or the system
/// resolver), and under [`ssrf::PeerCheck::OnConnect`] the tripwire on the connector.
fn guard_transport(
    http: reqwest::ClientBuilder,
    policy: &ssrf::Policy,
    resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
) -> reqwest::ClientBuilder {
    let resolver = match resolver {
        Some(inner) => ssrf::GuardedResolver::wrap(policy.clone(), inner),
        None => ssrf::GuardedResolver::new(policy.clone()),
    };
    let http = http.no_proxy().dns_resolver(Arc::new(resolver));
    match policy.peer_check() {
        ssrf::PeerCheck::OnConnect => {
            http.connector_layer(ssrf::PeerCheckLayer::new(policy.clone()))
        }
        // `PeerCheck` is non-exhaustive only to its users.
        ssrf::PeerCheck::OnResponse => http,
    }
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url.as_ref().map(Url::as_str))
            .field("middlewares", &self.inner.chain.len())
            .field("max_redirects", &self.inner.max_redirects)
            .field("ssrf_guard", &self.inner.ssrf.is_some())
            .finish_non_exhaustive()
    }
}

/// Configures a [`Client`]. Every setter states its default.
///
/// The transport settings (TLS, the connection pool, TCP, HTTP versions, decompression, cookies)
/// are reqwest's, under reqwest 0.13's names. None of them can loosen the connection policy:
/// reqwest's own redirects stay off (stopover follows redirects, one pass of the chain per hop),
/// and with an [`ssrf_policy`](Self::ssrf_policy) the guarded resolver and the peer check stay
/// in place. Settings that cannot hold together make [`build`](Self::build) fail with an
/// [`ErrorKind::Builder`] error whose [`Error::conflicting_settings`] names both.
///
/// ```
/// use std::time::Duration;
/// use stopover::client::Client;
///
/// let client = Client::builder()
///     .base_url("https://api.example.test/v1/")
///     .user_agent("my-service/1.0")
///     .timeout(Duration::from_secs(30))
///     .max_redirects(5)
///     .build()
///     .unwrap();
/// # let _ = client;
/// ```
#[must_use]
pub struct ClientBuilder {
    base_url: Option<std::result::Result<Url, String>>,
    default_headers: HeaderMap,
    user_agent: HeaderValue,
    timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    max_redirects: usize,
    max_nesting: usize,
    body_limit: u64,
    chain: Chain,
    proxies: Vec<Proxy>,
    ssrf: Option<ssrf::Policy>,
    dns_resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
    span_redaction: logging::Redaction,
    #[cfg(feature = "opentelemetry")]
    trace_exclude: Vec<url::Origin>,
    /// TLS, pool, TCP, HTTP version, decompression and cookie settings, in the order set.
    transport: Vec<transport::Setting>,
    chosen: transport::Chosen,
    error: Option<Error>,
}

impl ClientBuilder {
    /// A builder with the defaults.
    pub fn new() -> Self {
        ClientBuilder {
            base_url: None,
            default_headers: HeaderMap::new(),
            user_agent: HeaderValue::from_static(DEFAULT_USER_AGENT),
            timeout: None,
            attempt_timeout: None,
            connect_timeout: None,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            max_nesting: DEFAULT_MAX_NESTING,
            body_limit: DEFAULT_BODY_LIMIT,
            chain: Chain::new(),
            proxies: Vec::new(),
            ssrf: None,
            dns_resolver: None,
            span_redaction: telemetry::default_redaction(),
            #[cfg(feature = "opentelemetry")]
            trace_exclude: Vec::new(),
            transport: Vec::new(),
            chosen: transport::Chosen::default(),
            error: None,
        }
    }

    /// What is hidden from `url.full` on the client's spans (see the `telemetry` table in the
    /// [`client`](crate::client) docs). Default: [`Redaction::default`](logging::Redaction)
    /// plus the query keys OpenTelemetry's conventions name (`AWSAccessKeyId`, `Signature`,
    /// `sig`, `X-Goog-Signature`). Set the same redaction as [`Logging`](logging::Logging)'s
    /// so a secret hidden from the logs is hidden from the spans too.
    ///
    /// ```
    /// use stopover::client::Client;
    /// use stopover::client::logging::{QueryRedaction, Redaction};
    ///
    /// let client = Client::builder()
    ///     .span_redaction(Redaction::default().query(QueryRedaction::All))
    ///     .build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    pub fn span_redaction(mut self, redaction: logging::Redaction) -> Self {
        self.span_redaction = redaction;
        self
    }

    /// Never sends the trace context (`traceparent`, `tracestate`) to this origin (scheme,
    /// host and port of `url`), on any hop. Default: it is sent everywhere. An unusable URL is
    /// a [`Builder`](ErrorKind::Builder) error from [`build`](Self::build).
    ///
    /// ```
    /// use stopover::client::Client;
    ///
    /// let client = Client::builder()
    ///     .trace_context_exclude("https://partner.example")
    ///     .build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    #[cfg(feature = "opentelemetry")]
    pub fn trace_context_exclude(mut self, url: &str) -> Self {
        match Url::parse(url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => {
                self.trace_exclude.push(url.origin())
            }
            _ => self.fail(Error::builder(format!(
                "the trace context exclusion {url:?} is not an http(s) URL"
            ))),
        }
        self
    }

    /// The URL relative request URLs are joined to (with [`Url::join`]: end it with `/` to
    /// keep its last path segment). Default: none, and relative URLs are an error.
    pub fn base_url(mut self, base_url: &str) -> Self {
        self.base_url = Some(Url::parse(base_url).map_err(|_| base_url.to_owned()));
        self
    }

    /// Headers sent with every request; a header a request sets replaces the default of the
    /// same name. Default: none.
    pub fn default_headers(mut self, headers: HeaderMap) -> Self {
        self.default_headers = headers;
        self
    }

    /// The `User-Agent` header. Default: `stopover/<version>`.
    pub fn user_agent(mut self, user_agent: &str) -> Self {
        match HeaderValue::from_str(user_agent) {
            Ok(value) => self.user_agent = value,
            Err(_) => self.fail(Error::builder(format!(
                "the user agent {user_agent:?} is not a valid header value"
            ))),
        }
        self
    }

    /// How long one `send` may take in all: every hop, every attempt a middleware makes, and
    /// the time middlewares spend themselves. Default: no limit.
    ///
    /// It ends when `send` returns the response head; reading the body of that response is
    /// bounded by the [`attempt_timeout`](Self::attempt_timeout) instead.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long one attempt on the wire may take, from sending the request until its response
    /// body has been read (like reqwest's own `timeout`). A retry middleware sees an attempt
    /// that passes it before the response head as a timeout error it can retry; past the head,
    /// reading the body fails with [`ErrorKind::Timeout`]. Default: no limit.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// The most bytes [`Response::bytes`], [`text`](Response::text), [`json`](Response::json)
    /// and [`buffer`](Response::buffer) read into memory; a longer body fails them with
    /// [`ErrorKind::BodyTooLarge`], before reading when its `Content-Length` says so, else as
    /// soon as the bytes read pass the limit (decompressed bytes, when decompression is on).
    /// [`RequestBuilder::body_limit`] overrides it for one request; `u64::MAX` lifts it.
    ///
    /// Default: 64 MiB. Reading a body whole is for bodies a program expects to hold in
    /// memory (JSON, HTML, a small file); without a bound, one server could make a call
    /// buffer gigabytes. Bodies larger than that are streamed with
    /// [`Response::chunk`] or [`Response::bytes_stream`], which the limit does not apply to.
    ///
    /// ```
    /// let client = stopover::client::Client::builder()
    ///     .body_limit(1024 * 1024)
    ///     .build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    pub fn body_limit(mut self, bytes: u64) -> Self {
        self.body_limit = bytes;
        self
    }

    /// How long opening a connection may take. Default: no limit of its own.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How many redirects one request may follow before it fails with
    /// [`ErrorKind::TooManyRedirects`]. Default: 10.
    ///
    /// With 0, the first redirect is that error; to get the 3xx response itself instead, use
    /// [`RequestBuilder::follow_redirects`]`(false)`.
    pub fn max_redirects(mut self, max_redirects: usize) -> Self {
        self.max_redirects = max_redirects;
        self
    }

    /// How deep requests sent from inside middlewares may nest before they fail with
    /// [`ErrorKind::Recursion`]: 1 allows none, 2 one level, and so on. Default: 8. `build`
    /// refuses 0, which would refuse every request.
    ///
    /// A request sent while another request of the same task is in its chain is one level
    /// deeper, and so is a request sent with the client a middleware gets from
    /// [`Next::client`], even from a task the middleware spawns. A clone of the client made
    /// outside the chain and used from a spawned task starts again at zero (it cannot overflow
    /// the first task's stack, but it is not bounded either).
    pub fn max_nesting(mut self, max_nesting: usize) -> Self {
        self.max_nesting = max_nesting;
        self
    }

    /// Adds a middleware to the client's list; the first added is the outermost.
    /// Default: no middleware.
    pub fn middleware<M: Middleware>(mut self, middleware: M) -> Self {
        self.chain = self.chain.with(middleware);
        self
    }

    /// Adds a middleware already behind an `Arc`, sharing its state with other users of it.
    pub fn middleware_arc<M: Middleware>(mut self, middleware: Arc<M>) -> Self {
        self.chain = self.chain.with_arc(middleware);
        self
    }

    /// Sends requests through `proxy`, with the credentials configured on it and no others
    /// (see [`Proxy`]). Several proxies are tried in the order added; the first whose scheme
    /// matches the request is used. Default: none, and the environment's proxy settings
    /// (`HTTP_PROXY`, ...) apply; once a proxy is added they are ignored.
    ///
    /// A proxy cannot be combined with an [`ssrf_policy`](Self::ssrf_policy): the proxy
    /// resolves and connects to the target, out of the guard's sight, so `build` refuses it.
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.proxies.push(proxy);
        self
    }

    /// Guards every connection with an SSRF [`Policy`](ssrf::Policy). Default: no guard.
    ///
    /// The guard belongs to the transport, not to the middleware chain, so no request-level
    /// middleware list can remove it. For every hop, every retry and every request a middleware
    /// sends, the URL is checked before anything leaves; names are resolved once and only the
    /// addresses the policy allows are handed to the connector (so the address checked is the
    /// address connected to); proxies from the environment and the system are ignored; and the
    /// peer of every new connection is checked again before a request byte is written on it.
    /// A refused request fails with [`ErrorKind::Refused`] and [`Error::refusal`] tells why.
    ///
    /// ```
    /// use stopover::client::{Client, ssrf::Policy};
    ///
    /// let policy = Policy::builder().allow_addr("127.0.0.1:8080").build().unwrap();
    /// let client = Client::builder().ssrf_policy(policy).build().unwrap();
    /// # let _ = client;
    /// ```
    pub fn ssrf_policy(mut self, policy: ssrf::Policy) -> Self {
        self.ssrf = Some(policy);
        self
    }

    /// Resolves host names with `resolver` instead of the system resolver. With an
    /// [`ssrf_policy`](Self::ssrf_policy), its answers are judged by the policy before any
    /// connection is made. Default: the system resolver.
    pub fn dns_resolver(mut self, resolver: Arc<dyn reqwest::dns::Resolve>) -> Self {
        self.dns_resolver = Some(resolver);
        self
    }

    fn fail(&mut self, err: Error) {
        self.error.get_or_insert(err);
    }

    /// Builds the client, or returns the first configuration error.
    pub fn build(self) -> Result<Client> {
        if let Some(err) = self.error {
            return Err(err);
        }
        if self.max_nesting == 0 {
            return Err(Error::builder(
                "max_nesting is 0, which would refuse every request: it counts the request itself",
            ));
        }
        let base_url = match self.base_url {
            None => None,
            Some(Ok(url)) => Some(check_scheme(url)?),
            Some(Err(text)) => {
                return Err(Error::builder(format!(
                    "the base URL {text:?} is not an absolute URL"
                )));
            }
        };
        let mut default_headers = self.default_headers;
        if !default_headers.contains_key(USER_AGENT) {
            default_headers.insert(USER_AGENT, self.user_agent);
        }
        let mut http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some(timeout) = self.connect_timeout {
            http = http.connect_timeout(timeout);
        }
        if default_headers.contains_key(PROXY_AUTHORIZATION) {
            return Err(Error::builder(
                "the default headers hold a Proxy-Authorization header: proxy credentials belong \
                 on the Proxy (Proxy::basic_auth or Proxy::custom_auth)",
            ));
        }
        if self.ssrf.is_some() && !self.proxies.is_empty() {
            return Err(Error::conflict(
                "proxy",
                "ssrf_policy",
                "the proxy would resolve and connect to the target out of the SSRF guard's sight",
            ));
        }
        if let Some(conflict) = self.chosen.conflict() {
            return Err(conflict);
        }
        // The transport settings first: what follows (no redirects, the guarded resolver, the
        // peer check) is applied after them, so none of them can undo it.
        for setting in self.transport {
            http = setting(http);
        }
        #[cfg(feature = "rustls-ring")]
        transport::install_ring_provider();
        for proxy in self.proxies {
            http = http.proxy(proxy.inner);
        }
        match (&self.ssrf, self.dns_resolver) {
            (Some(policy), inner) => http = guard_transport(http, policy, inner),
            (None, Some(resolver)) => http = http.dns_resolver(resolver),
            (None, None) => {}
        }
        // Once more, last: whatever came before, reqwest follows no redirect of its own.
        let http = http.redirect(reqwest::redirect::Policy::none());
        let http = http.build().map_err(|err| {
            Error::with_kind_and_source(ErrorKind::Builder, err)
                .with_message("the HTTP transport could not be built")
        })?;
        let client = Client {
            nesting: 0,
            inner: Arc::new(ClientRef {
                http,
                base_url,
                default_headers,
                timeout: self.timeout,
                attempt_timeout: self.attempt_timeout,
                max_redirects: self.max_redirects,
                max_nesting: self.max_nesting,
                chain: self.chain,
                ssrf: self.ssrf,
                body_limit: self.body_limit,
                span_redaction: self.span_redaction,
                #[cfg(feature = "opentelemetry")]
                trace_exclude: self.trace_exclude,
            }),
        };
        client.inner.chain.check(&client)?;
        Ok(client)
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder::new()
    }
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("middlewares", &self.chain.len())
            .field("transport_settings", &self.transport.len())
            .finish_non_exhaustive()
    }
}

fn check_scheme(url: Url) -> Result<Url> {
    match url.scheme() {
        "http" | "https" => Ok(url),
        scheme => Err(Error::builder(format!(
            "the URL {} has the scheme {scheme:?}; only http and https are supported",
            error::Redacted(&url)
        ))),
    }
}

/// Takes the user name and password out of `url`, as the value of a Basic `Authorization`
/// header. They are percent-decoded first: the URL holds them encoded.
fn take_url_credentials(url: &mut Url) -> Result<Option<HeaderValue>> {
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
fn basic_auth_value(username: &[u8], password: Option<&[u8]>) -> Result<HeaderValue> {
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

/// What a request URL can be given as: a string (absolute, or relative to the base URL) or a
/// parsed [`Url`].
pub trait IntoUrl: into_url::Sealed {}

mod into_url {
    use super::{Error, Result, Url, check_scheme};

    pub trait Sealed {
        fn into_url(self, base: Option<&Url>) -> Result<Url>;
    }

    impl Sealed for Url {
        fn into_url(self, _base: Option<&Url>) -> Result<Url> {
            check_scheme(self)
        }
    }

    impl Sealed for &Url {
        fn into_url(self, _base: Option<&Url>) -> Result<Url> {
            check_scheme(self.clone())
        }
    }

    impl Sealed for &str {
        fn into_url(self, base: Option<&Url>) -> Result<Url> {
            let parsed = match (Url::parse(self), base) {
                (Ok(url), _) => url,
                (Err(url::ParseError::RelativeUrlWithoutBase), Some(base)) => {
                    base.join(self).map_err(|err| {
                        Error::builder(format!("the URL {self:?} is not valid: {err}"))
                    })?
                }
                (Err(url::ParseError::RelativeUrlWithoutBase), None) => {
                    return Err(Error::builder(format!(
                        "the URL {self:?} is relative and the client has no base URL"
                    )));
                }
                (Err(err), _) => {
                    return Err(Error::builder(format!(
                        "the URL {self:?} is not valid: {err}"
                    )));
                }
            };
            check_scheme(parsed)
        }
    }

    impl Sealed for String {
        fn into_url(self, base: Option<&Url>) -> Result<Url> {
            self.as_str().into_url(base)
        }
    }

    impl Sealed for &String {
        fn into_url(self, base: Option<&Url>) -> Result<Url> {
            self.as_str().into_url(base)
        }
    }
}

impl IntoUrl for Url {}
impl IntoUrl for &Url {}
impl IntoUrl for &str {}
impl IntoUrl for String {}
impl IntoUrl for &String {}

#[derive(Clone)]
enum ChainChoice {
    /// The client's list.
    Inherit,
    /// This list instead of the client's (an empty one runs no middleware).
    Replace(Chain),
    /// The client's list followed by these.
    Extend(Chain),
}

/// A request being built. Nothing is sent until [`send`](RequestBuilder::send) (or `.await` on
/// the builder, which is the same); an invalid input is kept and reported by `send` as an
/// [`ErrorKind::Builder`] error naming it.
#[must_use = "a request is sent only by `send` or `.await`"]
pub struct RequestBuilder {
    client: Client,
    request: Result<Draft>,
    chain: ChainChoice,
    follow_redirects: bool,
    timeout: Option<Duration>,
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
    /// [`timeout`](ClientBuilder::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The most bytes the response's whole-body readers ([`Response::bytes`], `text`, `json`,
    /// `buffer`) accept for this request, replacing the client's
    /// [`body_limit`](ClientBuilder::body_limit) (default 64 MiB); `u64::MAX` lifts it.
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

    /// Attaches typed data that middlewares read from [`Request::extensions`].
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
        let run = NESTING.scope(
            nesting,
            redirect::follow_hops(client, draft, wire_count, chain, follow_redirects)
                .instrument(span.clone()),
        );
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
