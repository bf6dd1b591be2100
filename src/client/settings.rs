//! The transport settings of [`ClientBuilder`]: TLS, the connection pool, TCP, HTTP versions,
//! decompression and cookies, each handed to reqwest, which owns them.
//!
//! They are reqwest's own settings under reqwest's names, so a reqwest user finds them where
//! expected; what stopover adds is that none of them can loosen the connection policy.
//! reqwest's redirect policy stays off whatever is set here (stopover follows redirects, one
//! pass of the chain per hop), the guarded resolver and the peer check of an
//! [`ssrf_policy`](ClientBuilder::ssrf_policy) stay in place, and settings that contradict each
//! other are refused by [`build`](ClientBuilder::build) with an [`ErrorKind::Builder`](super::ErrorKind::Builder) error
//! whose [`Error::conflicting_settings`](super::Error::conflicting_settings) names both.
//!
//! ```
//! use std::time::Duration;
//! use stopover::client::Client;
//!
//! let client = Client::builder()
//!     .pool_idle_timeout(Duration::from_secs(30))
//!     .pool_max_idle_per_host(8)
//!     .tcp_keepalive(Duration::from_secs(60))
//!     .http2_keep_alive_interval(Duration::from_secs(20))
//!     .build()?;
//! # let _ = client;
//! # Ok::<(), stopover::client::Error>(())
//! ```

use std::net::IpAddr;
use std::time::Duration;

use super::builder::ClientBuilder;

/// TLS types for the TLS settings of [`ClientBuilder`], from the reqwest this crate is built
/// on: a [`Certificate`](tls::Certificate) to trust, an [`Identity`](tls::Identity) to present,
/// a protocol [`Version`](tls::Version).
///
/// ```
/// # fn run(ca_pem: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
/// use stopover::client::{Client, tls::Certificate};
///
/// let client = Client::builder()
///     .tls_certs_only([Certificate::from_pem(ca_pem)?])
///     .build()?;
/// # let _ = client;
/// # Ok(())
/// # }
/// ```
#[cfg(any(feature = "rustls", feature = "rustls-ring", feature = "native-tls"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "rustls", feature = "rustls-ring", feature = "native-tls")))
)]
pub mod tls {
    pub use reqwest::tls::Version;
    pub use reqwest::{Certificate, Identity};
}

impl ClientBuilder {
    fn reqwest(
        mut self,
        setting: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder + Send + 'static,
    ) -> Self {
        self.transport.push(Box::new(setting));
        self
    }

    // --- the connection pool

    /// How long an idle connection stays in the pool before it is closed; `None` keeps idle
    /// connections until the server closes them. Default: 90 seconds.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let client = stopover::client::Client::builder()
    ///     .pool_idle_timeout(Duration::from_secs(30))
    ///     .build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    pub fn pool_idle_timeout(self, timeout: impl Into<Option<Duration>>) -> Self {
        let timeout = timeout.into();
        self.reqwest(move |http| http.pool_idle_timeout(timeout))
    }

    /// How many idle connections per host the pool keeps; 0 keeps none, so every request opens
    /// a new connection. Default: no limit.
    ///
    /// ```
    /// let client = stopover::client::Client::builder().pool_max_idle_per_host(4).build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    pub fn pool_max_idle_per_host(self, max: usize) -> Self {
        self.reqwest(move |http| http.pool_max_idle_per_host(max))
    }

    // --- TCP

    /// `SO_KEEPALIVE` on every connection, with this idle time before the first probe; `None`
    /// leaves keep-alive off. Default: 15 seconds (reqwest's), with probes every 15 seconds
    /// ([`tcp_keepalive_interval`](Self::tcp_keepalive_interval)) and 3 retries
    /// ([`tcp_keepalive_retries`](Self::tcp_keepalive_retries)).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let client = stopover::client::Client::builder()
    ///     .tcp_keepalive(Duration::from_secs(60))
    ///     .build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    pub fn tcp_keepalive(self, idle: impl Into<Option<Duration>>) -> Self {
        let idle = idle.into();
        self.reqwest(move |http| http.tcp_keepalive(idle))
    }

    /// The time between TCP keep-alive probes; `None` leaves the system's. Default: 15 seconds.
    pub fn tcp_keepalive_interval(self, interval: impl Into<Option<Duration>>) -> Self {
        let interval = interval.into();
        self.reqwest(move |http| http.tcp_keepalive_interval(interval))
    }

    /// How many unanswered TCP keep-alive probes close the connection; `None` leaves the
    /// system's. Default: 3.
    pub fn tcp_keepalive_retries(self, retries: impl Into<Option<u32>>) -> Self {
        let retries = retries.into();
        self.reqwest(move |http| http.tcp_keepalive_retries(retries))
    }

    /// `TCP_NODELAY` on every connection (small writes are sent at once instead of waiting to
    /// be coalesced). Default: on.
    ///
    /// ```
    /// let client = stopover::client::Client::builder().tcp_nodelay(false).build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    pub fn tcp_nodelay(self, enabled: bool) -> Self {
        self.reqwest(move |http| http.tcp_nodelay(enabled))
    }

    /// The local address connections are opened from; `None` lets the system choose. Default:
    /// the system chooses. An [SSRF policy](Self::ssrf_policy) still judges the destination.
    ///
    /// ```
    /// use std::net::{IpAddr, Ipv4Addr};
    ///
    /// let client = stopover::client::Client::builder()
    ///     .local_address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)))
    ///     .build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    pub fn local_address(self, address: impl Into<Option<IpAddr>>) -> Self {
        let address = address.into();
        self.reqwest(move |http| http.local_address(address))
    }

    // --- HTTP versions

    /// Speaks HTTP/1 only: TLS offers only `http/1.1` in ALPN, and no connection is HTTP/2.
    /// Default: HTTP/1.1, or HTTP/2 when TLS negotiates it (ALPN offers `h2` and `http/1.1`).
    /// `build` refuses it together with
    /// [`http2_prior_knowledge`](Self::http2_prior_knowledge).
    ///
    /// ```
    /// let client = stopover::client::Client::builder().http1_only().build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    pub fn http1_only(mut self) -> Self {
        self.chosen.http1_only = true;
        self.reqwest(reqwest::ClientBuilder::http1_only)
    }

    /// Speaks HTTP/2 from the first byte, without upgrade or ALPN: for `http://` servers that
    /// speak HTTP/2 over cleartext (h2c); over TLS, ALPN offers only `h2`. A server that speaks
    /// only HTTP/1 fails every request. Default: off (see [`http1_only`](Self::http1_only)).
    ///
    /// ```
    /// let client = stopover::client::Client::builder().http2_prior_knowledge().build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    pub fn http2_prior_knowledge(mut self) -> Self {
        self.chosen.http2_prior_knowledge = true;
        self.reqwest(reqwest::ClientBuilder::http2_prior_knowledge)
    }

    /// How often an HTTP/2 connection sends a `PING` to keep itself alive; `None` sends none.
    /// Default: none.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let client = stopover::client::Client::builder()
    ///     .http2_keep_alive_interval(Duration::from_secs(20))
    ///     .http2_keep_alive_timeout(Duration::from_secs(5))
    ///     .http2_keep_alive_while_idle(true)
    ///     .build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    pub fn http2_keep_alive_interval(self, interval: impl Into<Option<Duration>>) -> Self {
        let interval = interval.into();
        self.reqwest(move |http| http.http2_keep_alive_interval(interval))
    }

    /// How long an HTTP/2 keep-alive `PING` may go unanswered before the connection is closed;
    /// only with an [`http2_keep_alive_interval`](Self::http2_keep_alive_interval). Default:
    /// 20 seconds (hyper's).
    pub fn http2_keep_alive_timeout(self, timeout: Duration) -> Self {
        self.reqwest(move |http| http.http2_keep_alive_timeout(timeout))
    }

    /// Whether HTTP/2 keep-alive pings are sent while no request is in flight too; only with an
    /// [`http2_keep_alive_interval`](Self::http2_keep_alive_interval). Default: no.
    pub fn http2_keep_alive_while_idle(self, enabled: bool) -> Self {
        self.reqwest(move |http| http.http2_keep_alive_while_idle(enabled))
    }

    // --- decompression

    /// Whether gzip responses are decoded: `Accept-Encoding` offers `gzip` (unless the request
    /// sets `Accept-Encoding` or `Range` itself), and a `Content-Encoding: gzip` body reaches
    /// middlewares and readers decoded, without its `Content-Encoding` and `Content-Length`.
    /// Default: on with the `gzip` feature (a default feature).
    ///
    /// ```
    /// let client = stopover::client::Client::builder().gzip(false).build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    #[cfg(feature = "gzip")]
    #[cfg_attr(docsrs, doc(cfg(feature = "gzip")))]
    pub fn gzip(self, enabled: bool) -> Self {
        self.reqwest(move |http| http.gzip(enabled))
    }

    /// Whether brotli responses are decoded, as [`gzip`](Self::gzip) does, with `br` in
    /// `Accept-Encoding`. Default: on with the `brotli` feature.
    #[cfg(feature = "brotli")]
    #[cfg_attr(docsrs, doc(cfg(feature = "brotli")))]
    pub fn brotli(self, enabled: bool) -> Self {
        self.reqwest(move |http| http.brotli(enabled))
    }

    /// Whether zstd responses are decoded, as [`gzip`](Self::gzip) does, with `zstd` in
    /// `Accept-Encoding`. Default: on with the `zstd` feature.
    #[cfg(feature = "zstd")]
    #[cfg_attr(docsrs, doc(cfg(feature = "zstd")))]
    pub fn zstd(self, enabled: bool) -> Self {
        self.reqwest(move |http| http.zstd(enabled))
    }

    /// Whether deflate (zlib) responses are decoded, as [`gzip`](Self::gzip) does, with
    /// `deflate` in `Accept-Encoding`. Default: on with the `deflate` feature.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn deflate(self, enabled: bool) -> Self {
        self.reqwest(move |http| http.deflate(enabled))
    }

    // --- cookies

    /// Keeps cookies in an in-memory store (reqwest's [`Jar`](reqwest::cookie::Jar)):
    /// `Set-Cookie` of every response on the wire, redirect hops included, is stored, and
    /// each request on the wire that sets no `Cookie` header of its own is sent the stored
    /// cookies that belong to its URL (RFC 6265: by domain, path, `Secure`, expiry; the ports
    /// of one host share cookies, as in browsers). A cookie is never sent to a host it does not
    /// belong to; a `Cookie` header set on the request
    /// is dropped when a redirect leaves its origin, like every credential. The store's
    /// cookies are added below the middleware chain, so middlewares do not see them.
    /// Default: no store.
    ///
    /// ```
    /// let client = stopover::client::Client::builder().cookie_store(true).build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    #[cfg(feature = "cookies")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cookies")))]
    pub fn cookie_store(self, enabled: bool) -> Self {
        self.reqwest(move |http| http.cookie_store(enabled))
    }

    /// Keeps cookies in `store`, a [`Jar`](reqwest::cookie::Jar) shared with other code or a
    /// store of your own, with the rules of [`cookie_store`](Self::cookie_store).
    /// Default: no store.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use stopover::reqwest::cookie::Jar;
    ///
    /// let jar = Arc::new(Jar::default());
    /// let client = stopover::client::Client::builder().cookie_provider(jar.clone()).build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    #[cfg(feature = "cookies")]
    #[cfg_attr(docsrs, doc(cfg(feature = "cookies")))]
    pub fn cookie_provider<C: reqwest::cookie::CookieStore + 'static>(
        self,
        store: std::sync::Arc<C>,
    ) -> Self {
        self.reqwest(move |http| http.cookie_provider(store))
    }
}

/// The TLS settings: reqwest's, under reqwest 0.13's names.
#[cfg(any(feature = "rustls", feature = "rustls-ring", feature = "native-tls"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "rustls", feature = "rustls-ring", feature = "native-tls")))
)]
impl ClientBuilder {
    /// Trusts these root certificates as well as the platform's. Default: the platform's roots
    /// only (with rustls, through the platform verifier).
    ///
    /// ```
    /// # fn run(ca_pem: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    /// use stopover::client::{Client, tls::Certificate};
    ///
    /// let client = Client::builder()
    ///     .tls_certs_merge([Certificate::from_pem(ca_pem)?])
    ///     .build()?;
    /// # let _ = client;
    /// # Ok(())
    /// # }
    /// ```
    pub fn tls_certs_merge(self, certs: impl IntoIterator<Item = tls::Certificate>) -> Self {
        let certs: Vec<_> = certs.into_iter().collect();
        self.reqwest(move |http| http.tls_certs_merge(certs))
    }

    /// Trusts these root certificates and no others: the platform's roots are not used.
    /// Default: the platform's roots.
    ///
    /// ```
    /// # fn run(ca_der: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    /// use stopover::client::{Client, tls::Certificate};
    ///
    /// let client = Client::builder()
    ///     .tls_certs_only([Certificate::from_der(ca_der)?])
    ///     .build()?;
    /// # let _ = client;
    /// # Ok(())
    /// # }
    /// ```
    pub fn tls_certs_only(self, certs: impl IntoIterator<Item = tls::Certificate>) -> Self {
        let certs: Vec<_> = certs.into_iter().collect();
        self.reqwest(move |http| http.tls_certs_only(certs))
    }

    /// Trusts the Mozilla root certificates bundled into the build (the `webpki-root-certs`
    /// crate, as of its version) instead of the platform's: for containers and systems without
    /// a usable certificate store. Roots added with [`tls_certs_merge`](Self::tls_certs_merge)
    /// or [`tls_certs_only`](Self::tls_certs_only) are trusted on top of them. Default: the
    /// platform's roots.
    ///
    /// ```
    /// let client = stopover::client::Client::builder().tls_webpki_roots().build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    #[cfg(feature = "webpki-roots")]
    #[cfg_attr(docsrs, doc(cfg(feature = "webpki-roots")))]
    pub fn tls_webpki_roots(mut self) -> Self {
        let certs: Result<Vec<_>, _> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|der| tls::Certificate::from_der(der))
            .collect();
        match certs {
            Ok(certs) => self.reqwest(move |http| http.tls_certs_only(certs)),
            Err(err) => {
                self.fail(
                    super::error::Error::with_kind_and_source(
                        super::error::ErrorKind::Builder,
                        err,
                    )
                    .with_message("a bundled webpki root certificate could not be read"),
                );
                self
            }
        }
    }

    /// The client certificate and key presented to servers that ask for one (mutual TLS).
    /// Default: none.
    ///
    /// ```
    /// # fn run(cert_and_key_pem: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    /// use stopover::client::{Client, tls::Identity};
    ///
    /// let client = Client::builder()
    ///     .identity(Identity::from_pem(cert_and_key_pem)?)
    ///     .build()?;
    /// # let _ = client;
    /// # Ok(())
    /// # }
    /// ```
    pub fn identity(self, identity: tls::Identity) -> Self {
        self.reqwest(move |http| http.identity(identity))
    }

    /// The oldest TLS version accepted. Default: the backend's (TLS 1.2 with rustls).
    ///
    /// ```
    /// use stopover::client::{Client, tls::Version};
    ///
    /// let client = Client::builder().tls_version_min(Version::TLS_1_3).build()?;
    /// # let _ = client;
    /// # Ok::<(), stopover::client::Error>(())
    /// ```
    pub fn tls_version_min(self, version: tls::Version) -> Self {
        self.reqwest(move |http| http.tls_version_min(version))
    }

    /// The newest TLS version offered. Default: the newest the backend knows.
    pub fn tls_version_max(self, version: tls::Version) -> Self {
        self.reqwest(move |http| http.tls_version_max(version))
    }

    /// Whether the host name is sent in the TLS handshake (SNI). Default: yes.
    pub fn tls_sni(self, enabled: bool) -> Self {
        self.reqwest(move |http| http.tls_sni(enabled))
    }

    /// **Dangerous**: accepts any server certificate, expired, self-signed or for another
    /// host, so anyone on the path can read and change the traffic. For a test against a
    /// throwaway server only; trust its CA with [`tls_certs_only`](Self::tls_certs_only)
    /// instead wherever you can. Default: no.
    pub fn tls_danger_accept_invalid_certs(self, accept: bool) -> Self {
        self.reqwest(move |http| http.tls_danger_accept_invalid_certs(accept))
    }

    /// **Dangerous**: accepts a valid certificate issued for another host name. With rustls,
    /// only together with [`tls_certs_only`](Self::tls_certs_only) (`build` fails otherwise).
    /// Default: no.
    pub fn tls_danger_accept_invalid_hostnames(self, accept: bool) -> Self {
        self.reqwest(move |http| http.tls_danger_accept_invalid_hostnames(accept))
    }

    /// Uses rustls for this client when native-tls is compiled in too (native-tls is then
    /// the default).
    #[cfg(all(
        feature = "native-tls",
        any(feature = "rustls", feature = "rustls-ring")
    ))]
    pub fn tls_backend_rustls(self) -> Self {
        self.reqwest(reqwest::ClientBuilder::tls_backend_rustls)
    }

    /// Uses native-tls for this client (the default when it is compiled in).
    #[cfg(feature = "native-tls")]
    pub fn tls_backend_native(self) -> Self {
        self.reqwest(reqwest::ClientBuilder::tls_backend_native)
    }
}
