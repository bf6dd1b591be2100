//! [`ClientBuilder`]: the client's configuration, every default stated on its setter. The
//! transport settings (TLS, pool, TCP, HTTP versions) are in `settings.rs`.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{PROXY_AUTHORIZATION, USER_AGENT};
use http::{HeaderMap, HeaderValue};
use url::Url;

use super::client::Chain;
use super::client::{Client, ClientRef};
use super::error::{Error, ErrorKind, Result};
use super::into_url::IntoUrl;
use super::middleware::Middleware;
use super::overrides::Overrides;
use super::proxy::Proxy;
use super::redaction::Redaction;
use super::redirect::RedirectPolicy;
use super::redirect::mark_credentials;
use super::transport::guard_transport;
use super::{ssrf, telemetry};

const DEFAULT_USER_AGENT: &str = concat!("stopover/", env!("CARGO_PKG_VERSION"));
const DEFAULT_MAX_REDIRECTS: usize = 10;
const DEFAULT_MAX_NESTING: usize = 8;
/// See [`ClientBuilder::body_limit`].
const DEFAULT_BODY_LIMIT: u64 = 64 * 1024 * 1024;

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
    base_url: Option<Result<Url>>,
    default_headers: HeaderMap,
    user_agent: HeaderValue,
    timeout: Option<Duration>,
    head_timeout: Option<Duration>,
    attempt_timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    max_redirects: usize,
    follow_redirects: bool,
    max_nesting: usize,
    body_limit: u64,
    https_only: bool,
    chain: Chain,
    proxies: Vec<Proxy>,
    ssrf: Option<ssrf::Policy>,
    dns_resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
    /// `resolve` overrides, by lower-cased name.
    dns_overrides: Vec<(String, Vec<SocketAddr>)>,
    span_redaction: Redaction,
    #[cfg(feature = "opentelemetry")]
    trace_exclude: Vec<url::Origin>,
    /// TLS, pool, TCP, HTTP version, decompression and cookie settings, in the order set.
    pub(super) transport: Vec<Setting>,
    pub(super) chosen: Chosen,
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
            head_timeout: None,
            attempt_timeout: None,
            connect_timeout: None,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            follow_redirects: true,
            max_nesting: DEFAULT_MAX_NESTING,
            body_limit: DEFAULT_BODY_LIMIT,
            https_only: false,
            chain: Chain::new(),
            proxies: Vec::new(),
            ssrf: None,
            dns_resolver: None,
            dns_overrides: Vec::new(),
            span_redaction: telemetry::default_redaction(),
            #[cfg(feature = "opentelemetry")]
            trace_exclude: Vec::new(),
            transport: Vec::new(),
            chosen: Chosen::default(),
            error: None,
        }
    }

    /// What is hidden from `url.full` on the client's spans (the fields are listed in
    /// [`client::telemetry`](crate::client::telemetry)). Default: [`Redaction::default`](Redaction)
    /// plus the query keys OpenTelemetry's conventions name (`AWSAccessKeyId`, `Signature`,
    /// `sig`, `X-Goog-Signature`). Set the same redaction as [`Logging`](crate::client::logging::Logging)'s
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
    pub fn span_redaction(mut self, redaction: Redaction) -> Self {
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
    /// keep its last path segment), given as text or as a parsed [`Url`]. It applies to
    /// `client.get(..)` and the like and to `http::Request`s sent through the client as a
    /// [`tower::Service`](crate::client::interop). Default: none, and relative URLs are an
    /// error. A URL that is not absolute, or not http or https, is an
    /// [`ErrorKind::Builder`] error from [`build`](Self::build).
    ///
    /// ```
    /// let base = url::Url::parse("https://api.example.test/v1/")?;
    /// let client = stopover::client::Client::builder().base_url(base).build()?;
    /// assert_eq!(client.base_url().map(url::Url::as_str), Some("https://api.example.test/v1/"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn base_url<U: IntoUrl>(mut self, base_url: U) -> Self {
        self.base_url = Some(base_url.into_base_url());
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

    /// How long one call may take in all, from `send` until its response body has been read
    /// (as reqwest's `timeout`): every hop, every attempt a middleware makes, the time
    /// middlewares spend themselves, and reading the body with
    /// [`Response::bytes`](crate::client::Response::bytes), [`text`](crate::client::Response::text),
    /// [`json`](crate::client::Response::json) or [`chunk`](crate::client::Response::chunk).
    /// Past it, `send` or the body read fails with [`ErrorKind::Timeout`] (and
    /// [`Error::is_body`] tells the second from the first). Default: no limit.
    ///
    /// It used to stop at the response head (see the CHANGELOG); for that, use
    /// [`head_timeout`](Self::head_timeout), which leaves the body unbounded (a response that
    /// is streamed for hours, a long download).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let client = stopover::client::Client::builder()
    ///     .timeout(Duration::from_secs(30))
    ///     .build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long one call may take up to the response head: every hop, every attempt and the
    /// time middlewares spend, but not reading the body (bounded by
    /// [`timeout`](Self::timeout), when one is set, and by a
    /// [`read_timeout`](Self::read_timeout) per read). Default: no limit.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// // A feed that streams for as long as it likes, once it has answered within 5 seconds.
    /// let client = stopover::client::Client::builder()
    ///     .head_timeout(Duration::from_secs(5))
    ///     .build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    pub fn head_timeout(mut self, timeout: Duration) -> Self {
        self.head_timeout = Some(timeout);
        self
    }

    /// How long one attempt on the wire may take, from sending the request until its response
    /// body has been read (reqwest's `timeout`, per attempt). A retry middleware sees an attempt
    /// that passes it before the response head as a timeout error it can retry; past the head,
    /// reading the body fails with [`ErrorKind::Timeout`]. Default: no limit.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// The most bytes [`Response::bytes`](crate::client::Response::bytes), [`text`](crate::client::Response::text), [`json`](crate::client::Response::json)
    /// and [`buffer`](crate::client::Response::buffer) read into memory; a longer body fails them with
    /// [`ErrorKind::BodyTooLarge`], before reading when its `Content-Length` says so, else as
    /// soon as the bytes read pass the limit (decompressed bytes, when decompression is on).
    /// [`RequestBuilder::body_limit`](crate::client::RequestBuilder::body_limit) overrides it for one request; `u64::MAX` lifts it.
    ///
    /// Default: 64 MiB. Reading a body whole is for bodies a program expects to hold in
    /// memory (JSON, HTML, a small file); without a bound, one server could make a call
    /// buffer gigabytes. Bodies larger than that are streamed with
    /// [`Response::chunk`](crate::client::Response::chunk) or [`Response::bytes_stream`](crate::client::Response::bytes_stream), which the limit does not apply to.
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

    /// Sends requests to `https` URLs only (reqwest's `https_only`): a request to an `http` URL
    /// fails with [`ErrorKind::Builder`] before anything is sent, and so does a redirect to
    /// one, on whichever hop, as does any request a middleware sends through the client.
    /// Default: no, `http` is allowed too.
    ///
    /// ```
    /// # async fn run() {
    /// let client = stopover::client::Client::builder().https_only(true).build().unwrap();
    /// let err = client.get("http://example.test/").send().await.unwrap_err();
    /// assert!(err.is_builder());
    /// # }
    /// ```
    pub fn https_only(mut self, enabled: bool) -> Self {
        self.https_only = enabled;
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
    /// [`RequestBuilder::follow_redirects`](crate::client::RequestBuilder::follow_redirects)`(false)`.
    pub fn max_redirects(mut self, max_redirects: usize) -> Self {
        self.max_redirects = max_redirects;
        self
    }

    /// Whether and how far redirects are followed, as a policy (reqwest's `redirect`):
    /// [`RedirectPolicy::limited`]`(n)` is [`max_redirects`](Self::max_redirects)`(n)`, and
    /// [`RedirectPolicy::none`] returns every 3xx as it is unless a request asks with
    /// [`follow_redirects`](crate::client::RequestBuilder::follow_redirects)`(true)`.
    /// Default: [`RedirectPolicy::limited`]`(10)`.
    ///
    /// ```
    /// use stopover::client::{Client, RedirectPolicy};
    ///
    /// let client = Client::builder().redirect(RedirectPolicy::none()).build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    pub fn redirect(mut self, policy: RedirectPolicy) -> Self {
        match policy.max_redirects() {
            Some(max) => {
                self.max_redirects = max;
                self.follow_redirects = true;
            }
            None => self.follow_redirects = false,
        }
        self
    }

    /// How deep requests sent from inside middlewares may nest before they fail with
    /// [`ErrorKind::Recursion`]: 1 allows none, 2 one level, and so on. Default: 8. `build`
    /// refuses 0, which would refuse every request.
    ///
    /// A request sent while another request of the same task is in its chain is one level
    /// deeper, and so is a request sent with the client a middleware gets from
    /// [`Next::client`](crate::client::Next::client), even from a task the middleware spawns. A clone of the client made
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

    /// Adds every middleware of `chain`, in its order, after those already added: a ready-made
    /// stack such as [`StandardPipeline::chain`](crate::resilience::StandardPipeline::chain).
    ///
    /// ```
    /// use stopover::client::{Chain, Client};
    /// use stopover::client::logging::Logging;
    ///
    /// let stack = Chain::new().with(Logging::new());
    /// let client = Client::builder().middlewares(stack).build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    pub fn middlewares(mut self, chain: Chain) -> Self {
        self.chain = self.chain.then(&chain);
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

    /// Answers lookups of `domain` with `addr` instead of asking DNS (reqwest's `resolve`): to
    /// reach a service under its real name at an address you know (a staging host, a
    /// container, a test server), with TLS still checking the certificate for `domain`.
    /// The URL's port is used, as in reqwest; without a port in the URL, `addr`'s port is,
    /// unless it is 0 (then the scheme's default port). Calling it again for the same domain
    /// replaces the earlier answer. Default: none.
    ///
    /// With an [`ssrf_policy`](Self::ssrf_policy) the override does not get around the guard:
    /// it is answered *inside* the guarded resolver, so the policy judges `addr` as it judges
    /// any DNS answer (allow it with [`allow_addr`](ssrf::PolicyBuilder::allow_addr), which
    /// takes the same `SocketAddr`), and the connection goes to the URL's port (or the
    /// scheme's), the port the policy judged, not `addr`'s. An IP address as `domain` is an
    /// [`ErrorKind::Builder`] error from [`build`](Self::build): an IP literal in a URL is
    /// never resolved.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use stopover::client::{Client, ssrf::Policy};
    ///
    /// let staging: SocketAddr = "10.1.2.3:443".parse().unwrap();
    /// let client = Client::builder()
    ///     .resolve("api.example.com", staging)
    ///     .ssrf_policy(Policy::builder().allow_addr(staging).build()?)
    ///     .build()?;
    /// # let _ = client;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn resolve(self, domain: &str, addr: SocketAddr) -> Self {
        self.resolve_to_addrs(domain, &[addr])
    }

    /// Answers lookups of `domain` with `addrs`, tried in order (reqwest's
    /// `resolve_to_addrs`); as [`resolve`](Self::resolve) otherwise. An empty list is an
    /// [`ErrorKind::Builder`] error from [`build`](Self::build).
    ///
    /// ```
    /// use std::net::SocketAddr;
    ///
    /// let replicas: [SocketAddr; 2] = ["10.0.0.7:0".parse().unwrap(), "10.0.0.8:0".parse().unwrap()];
    /// let client = stopover::client::Client::builder()
    ///     .resolve_to_addrs("db-api.internal.example", &replicas)
    ///     .build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    pub fn resolve_to_addrs(mut self, domain: &str, addrs: &[SocketAddr]) -> Self {
        let name = domain
            .strip_suffix('.')
            .unwrap_or(domain)
            .to_ascii_lowercase();
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        if literal.parse::<std::net::IpAddr>().is_ok() {
            self.fail(Error::builder(format!(
                "resolve({domain:?}) names an IP address, which is never resolved"
            )));
        } else if name.is_empty() {
            self.fail(Error::builder("resolve(\"\") names no domain"));
        } else if addrs.is_empty() {
            self.fail(Error::builder(format!(
                "resolve_to_addrs({domain:?}) has no addresses"
            )));
        } else {
            self.dns_overrides.retain(|(known, _)| *known != name);
            self.dns_overrides.push((name, addrs.to_vec()));
        }
        self
    }

    pub(super) fn fail(&mut self, err: Error) {
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
        let base_url = self.base_url.transpose()?;
        let mut default_headers = self.default_headers;
        if !default_headers.contains_key(USER_AGENT) {
            default_headers.insert(USER_AGENT, self.user_agent);
        }
        mark_credentials(&mut default_headers);
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
        install_ring_provider();
        for proxy in self.proxies {
            http = http.proxy(proxy.inner);
        }
        match (&self.ssrf, self.dns_resolver) {
            (Some(policy), inner) => {
                // The overrides answer inside the guard, which judges their addresses.
                let inner = match inner {
                    _ if self.dns_overrides.is_empty() => inner,
                    inner => Some(Arc::new(Overrides::new(self.dns_overrides, inner)) as _),
                };
                http = guard_transport(http, policy, inner);
            }
            (None, resolver) => {
                if let Some(resolver) = resolver {
                    http = http.dns_resolver(resolver);
                }
                for (domain, addrs) in &self.dns_overrides {
                    http = http.resolve_to_addrs(domain, addrs);
                }
            }
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
                head_timeout: self.head_timeout,
                attempt_timeout: self.attempt_timeout,
                max_redirects: self.max_redirects,
                follow_redirects: self.follow_redirects,
                max_nesting: self.max_nesting,
                chain: self.chain,
                ssrf: self.ssrf,
                body_limit: self.body_limit,
                https_only: self.https_only,
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
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

/// One change to reqwest's builder, applied in the order the setters were called.
pub(super) type Setting = Box<dyn FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder + Send>;

/// What the conflict checks of `build` need to know about the transport settings.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Chosen {
    pub(super) http1_only: bool,
    pub(super) http2_prior_knowledge: bool,
}

impl Chosen {
    /// The first pair of settings that cannot hold together, by their setter names.
    pub(super) fn conflict(&self) -> Option<Error> {
        if self.http1_only && self.http2_prior_knowledge {
            return Some(Error::conflict(
                "http1_only",
                "http2_prior_knowledge",
                "a connection cannot be HTTP/1 only and HTTP/2 only at once",
            ));
        }
        None
    }
}

/// Under `rustls-ring`, reqwest has no crypto provider of its own: it takes rustls' process-wide
/// default, so ring is installed as that default unless one is installed already.
#[cfg(feature = "rustls-ring")]
pub(super) fn install_ring_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing the race to another thread installing a provider is fine: one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
