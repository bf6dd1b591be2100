//! Believe the scheme, host and client address a reverse proxy reports, but only when the
//! TCP peer is a proxy you trust.
//!
//! # Example
//!
//! With the `axum` feature the layer finds axum's `ConnectInfo` by itself (without it, add
//! the [`ForwardedLayerBuilder::peer_addr_with`] line shown there), and `ForwardedInfo` is
//! also an extractor of its own.
//!
//! ```
//! use axum::{Router, routing::get, Extension};
//! use stopover::server::forwarded::{ForwardedInfo, ForwardedLayer};
//!
//! # fn main() -> Result<(), stopover::server::forwarded::ForwardedConfigError> {
//! let forwarded = ForwardedLayer::builder()
//!     .x_forwarded()
//!     .trusted_proxies(["127.0.0.0/8", "::1", "10.0.0.0/8"])
//!     .host(true)
//!     .client(true)
//!     .build()?;
//!
//! let app: Router = Router::new()
//!     .route("/", get(|Extension(info): Extension<ForwardedInfo>| async move {
//!         format!("{}://{:?} from {:?}", info.scheme(), info.host(), info.client())
//!     }))
//!     .layer(forwarded);
//! // axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! # Compared with aiohttp-middlewares and tower-http
//!
//! `ForwardedLayer` reads one header family, chosen when the layer is built: the
//! `X-Forwarded-Proto` / `X-Forwarded-Host` / `X-Forwarded-For` trio, RFC 7239 `Forwarded`,
//! or aiohttp's `match_headers` form (a header name and the value that means HTTPS). It
//! never reads both families, so a client cannot smuggle a value through the family the
//! proxy does not overwrite. Unlike reading the headers in a handler (or aiohttp's
//! `https_middleware`, which believes anyone), the values count only when the peer address
//! is inside a CIDR allow-list (loopback by default); comma lists are read from the right,
//! through every hop whose address is itself trusted. tower-http has no such layer.
//!
//! The result is written into the request: the URI gets the forwarded scheme (and, when
//! enabled, the forwarded authority), and a [`ForwardedInfo`] extension holds the
//! effective scheme, host and client address for handlers. From an untrusted peer the
//! headers of the configured family are removed by default (see
//! [`ForwardedLayerBuilder::strip_untrusted`]), so nothing further in will read a spoofed
//! value by accident.
//!
//! # Where the peer address comes from
//!
//! tower services do not see the socket. The layer asks a peer-address function for it;
//! the default reads a [`PeerAddr`] extension, which you insert when you accept the
//! connection, and with the `axum` feature also axum's `ConnectInfo<SocketAddr>`, which
//! `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())` stores.
//! Any other source can be named with [`ForwardedLayerBuilder::peer_addr_with`]. A request
//! whose peer address cannot be found is treated as coming from an untrusted peer, and the
//! layer logs one warning (per layer) saying how to serve the app so that it finds one.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme, Uri};
use http::{Extensions, Request};
use ipnet::IpNet;
use tower_layer::Layer;
use tower_service::Service;

/// The peer address of a connection, as a request extension.
///
/// Insert it when you accept a connection (for example in a hyper `service_fn` wrapper) and
/// the default [`ForwardedLayer`] finds it. axum users with stopover's `axum` feature need
/// nothing: the default also reads axum's `ConnectInfo<SocketAddr>`. Without the feature, point
/// the layer at `ConnectInfo` with [`ForwardedLayerBuilder::peer_addr_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// How to give the layer a peer address, for the warning it logs once when it finds none.
#[cfg(feature = "axum")]
const NO_PEER_HINT: &str = "serve the app with `axum::serve(listener, \
    app.into_make_service_with_connect_info::<SocketAddr>())`, insert a `PeerAddr` extension \
    when accepting connections, or set `ForwardedLayerBuilder::peer_addr_with`";
#[cfg(not(feature = "axum"))]
const NO_PEER_HINT: &str = "insert a `PeerAddr` extension when accepting connections, set \
    `ForwardedLayerBuilder::peer_addr_with`, or enable stopover's `axum` feature and serve the \
    app with `axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())`";

/// The default peer address: a [`PeerAddr`] extension, else (with the `axum` feature) the
/// `ConnectInfo<SocketAddr>` that `into_make_service_with_connect_info` inserts.
fn default_peer(extensions: &Extensions) -> Option<IpAddr> {
    let peer = extensions.get::<PeerAddr>().map(|p| p.0.ip());
    #[cfg(feature = "axum")]
    let peer = peer.or_else(|| {
        extensions
            .get::<::axum::extract::ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip())
    });
    peer
}

/// What the layer concluded about a request, inserted into its extensions.
///
/// Every field is the *effective* value: what the trusted proxy reported when it was
/// believed, otherwise what the connection itself says.
#[derive(Debug, Clone)]
pub struct ForwardedInfo {
    scheme: Scheme,
    host: EffectiveHost,
    client: Option<IpAddr>,
    peer: Option<IpAddr>,
    trusted: bool,
}

impl PartialEq for ForwardedInfo {
    fn eq(&self, other: &Self) -> bool {
        self.scheme == other.scheme
            && self.host() == other.host()
            && self.client == other.client
            && self.peer == other.peer
            && self.trusted == other.trusted
    }
}

impl Eq for ForwardedInfo {}

/// The effective host. A `Host` header is kept as it came (a reference count on hyper's read
/// buffer) and parsed only when a handler asks: most requests never do, and parsing copies.
#[derive(Debug, Clone)]
enum EffectiveHost {
    None,
    Authority(Authority),
    Header(HeaderValue, OnceLock<Option<Authority>>),
}

impl ForwardedInfo {
    /// The scheme the client used: the forwarded one when believed, else the request URI's
    /// scheme, else `http`.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// Whether [`scheme`](Self::scheme) is `https`.
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    /// The host the client asked for: the forwarded host when host forwarding is enabled
    /// and believed, else the request URI's authority, else the `Host` header.
    pub fn host(&self) -> Option<&Authority> {
        match &self.host {
            EffectiveHost::None => None,
            EffectiveHost::Authority(authority) => Some(authority),
            EffectiveHost::Header(value, parsed) => parsed
                .get_or_init(|| Authority::try_from(value.as_bytes()).ok())
                .as_ref(),
        }
    }

    /// The client address: the forwarded one when client forwarding is enabled and
    /// believed, else the peer address.
    ///
    /// `None` when a trusted proxy's forwarded headers were read but the hop they point at
    /// gives no address (`for=unknown`, an obfuscated `for=_hidden`, or no `for` at all):
    /// the peer is then a proxy, and reporting its address as the client's would be wrong.
    /// An element the layer cannot read at all (a client's own malformed value) ends the
    /// walk instead, and the client is the last address the walk believed.
    pub fn client(&self) -> Option<IpAddr> {
        self.client
    }

    /// The TCP peer address, when the peer-address function found one.
    pub fn peer(&self) -> Option<IpAddr> {
        self.peer
    }

    /// Whether the peer was a trusted proxy, i.e. whether forwarded headers were read.
    pub fn from_trusted_proxy(&self) -> bool {
        self.trusted
    }
}

/// An invalid [`ForwardedLayer`] configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardedConfigError {
    /// A trusted proxy entry is neither an IP address nor a CIDR network.
    #[error("trusted proxy `{0}` is not an IP address or CIDR network")]
    InvalidTrustedProxy(String),
    /// A `match_headers` entry names an invalid header.
    #[error("match header name `{0}` is not a valid header name")]
    InvalidMatchHeaderName(String),
    /// A `match_headers` entry has an empty or invalid value.
    #[error("match header `{name}` has an invalid value `{value}`")]
    InvalidMatchHeaderValue {
        /// The header name.
        name: String,
        /// The rejected value.
        value: String,
    },
    /// `match_headers` was given no entries, so it could never match.
    #[error("match_headers needs at least one header")]
    EmptyMatchHeaders,
    /// Host or client forwarding was enabled with the `match_headers` family, which carries
    /// only the scheme.
    #[error(
        "host and client forwarding need the X-Forwarded or Forwarded family, not match_headers"
    )]
    MatchHeadersCarryOnlyScheme,
}

/// Which header family the layer reads. Exactly one is read per layer.
#[derive(Debug, Clone)]
enum Family {
    /// `X-Forwarded-Proto`, `X-Forwarded-Host`, `X-Forwarded-For`.
    XForwarded,
    /// RFC 7239 `Forwarded`.
    Rfc7239,
    /// aiohttp's form: any listed header whose rightmost value equals (ignoring ASCII case)
    /// the listed value means HTTPS.
    MatchHeaders(Vec<(HeaderName, String)>),
}

type PeerFn = dyn Fn(&Extensions) -> Option<IpAddr> + Send + Sync;

struct Config {
    family: Family,
    trusted: Vec<IpNet>,
    /// `trusted` as masks, compared per request without `IpNet`'s generic walk.
    trusted_masks: TrustedMasks,
    host: bool,
    client: bool,
    strip_untrusted: bool,
    peer: Arc<PeerFn>,
    /// Set once the layer warned that it found no peer address.
    warned_no_peer: AtomicBool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("family", &self.family)
            .field("trusted", &self.trusted)
            .field("host", &self.host)
            .field("client", &self.client)
            .field("strip_untrusted", &self.strip_untrusted)
            .finish_non_exhaustive()
    }
}

/// Builds a [`ForwardedLayer`]; see [`ForwardedLayer::builder`].
pub struct ForwardedLayerBuilder {
    family: FamilyChoice,
    trusted: Vec<String>,
    host: bool,
    client: bool,
    strip_untrusted: bool,
    peer: Arc<PeerFn>,
}

enum FamilyChoice {
    XForwarded,
    Rfc7239,
    MatchHeaders(Vec<(String, String)>),
}

impl fmt::Debug for ForwardedLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardedLayerBuilder")
            .field("trusted", &self.trusted)
            .field("host", &self.host)
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl ForwardedLayerBuilder {
    /// Read `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Forwarded-For` (the default).
    pub fn x_forwarded(mut self) -> Self {
        self.family = FamilyChoice::XForwarded;
        self
    }

    /// Read RFC 7239 `Forwarded` (`proto=`, `host=`, `for=`) instead of `X-Forwarded-*`.
    ///
    /// The header is parsed with the RFC 7239 grammar, quoted-strings and backslash escapes
    /// included, so `by="a,b"` is one value. Elements are read from the right, nearest proxy
    /// first, and the walk stops at the first element that breaks the grammar (no `=`, an
    /// unterminated quote, a parameter given twice, an IPv6 address or a port left
    /// unquoted, a byte outside visible ASCII): what the trusted proxies appended to the
    /// right of it is still believed, and nothing to its left is.
    pub fn rfc7239(mut self) -> Self {
        self.family = FamilyChoice::Rfc7239;
        self
    }

    /// aiohttp's `match_headers` form: the request is HTTPS when any of these headers'
    /// rightmost comma-separated value equals the given value, ignoring ASCII case
    /// (`[("X-Forwarded-Proto", "https")]` is aiohttp's default). Only the scheme is
    /// forwarded in this mode, and still only from trusted peers.
    pub fn match_headers<I, N, V>(mut self, headers: I) -> Self
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: Into<String>,
    {
        self.family = FamilyChoice::MatchHeaders(
            headers
                .into_iter()
                .map(|(name, value)| (name.into(), value.into()))
                .collect(),
        );
        self
    }

    /// The trusted proxies, as IP addresses or CIDR networks (`"10.0.0.0/8"`, `"::1"`),
    /// replacing the default of loopback only (`127.0.0.0/8` and `::1`). Entries are
    /// validated by [`build`](Self::build). IPv4-mapped IPv6 peers are compared as IPv4, and
    /// an IPv4-mapped entry (`::ffff:10.0.0.0/104`) means the IPv4 network it maps.
    pub fn trusted_proxies<I, T>(mut self, proxies: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        self.trusted = proxies.into_iter().map(|p| p.as_ref().to_owned()).collect();
        self
    }

    /// Also take the host from the proxy (`X-Forwarded-Host` or `host=`) into
    /// [`ForwardedInfo::host`] and the request URI's authority. Off by default. The `Host`
    /// header is left as sent.
    pub fn host(mut self, enabled: bool) -> Self {
        self.host = enabled;
        self
    }

    /// Also take the client address from the proxy (`X-Forwarded-For` or `for=`) into
    /// [`ForwardedInfo::client`], which is `None` when the proxy's value is not an address.
    /// Off by default (the client is then the peer).
    pub fn client(mut self, enabled: bool) -> Self {
        self.client = enabled;
        self
    }

    /// Whether to remove the configured family's headers from requests of untrusted peers,
    /// so that handlers reading them directly cannot be fooled (each removal is logged at
    /// `DEBUG`). On by default; turn it off to keep the headers (the layer still ignores
    /// them).
    pub fn strip_untrusted(mut self, strip: bool) -> Self {
        self.strip_untrusted = strip;
        self
    }

    /// How to find the TCP peer address of a request, replacing the default, which reads the
    /// [`PeerAddr`] extension and, with the `axum` feature, axum's `ConnectInfo<SocketAddr>`.
    /// For `ConnectInfo` without the `axum` feature (with it, this is what the default does):
    ///
    /// ```
    /// # use std::net::SocketAddr;
    /// # use axum::extract::ConnectInfo;
    /// # use stopover::server::forwarded::ForwardedLayer;
    /// let layer = ForwardedLayer::builder()
    ///     .peer_addr_with(|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
    ///     .build();
    /// # assert!(layer.is_ok());
    /// ```
    pub fn peer_addr_with<F>(mut self, peer: F) -> Self
    where
        F: Fn(&Extensions) -> Option<IpAddr> + Send + Sync + 'static,
    {
        self.peer = Arc::new(peer);
        self
    }

    /// Validates the configuration and builds the layer.
    pub fn build(self) -> Result<ForwardedLayer, ForwardedConfigError> {
        let trusted = self
            .trusted
            .iter()
            .map(|entry| parse_net(entry))
            .collect::<Result<Vec<_>, _>>()?;
        let family = match self.family {
            FamilyChoice::XForwarded => Family::XForwarded,
            FamilyChoice::Rfc7239 => Family::Rfc7239,
            FamilyChoice::MatchHeaders(entries) => {
                if entries.is_empty() {
                    return Err(ForwardedConfigError::EmptyMatchHeaders);
                }
                if self.host || self.client {
                    return Err(ForwardedConfigError::MatchHeadersCarryOnlyScheme);
                }
                let mut parsed = Vec::with_capacity(entries.len());
                for (name, value) in entries {
                    let header = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| ForwardedConfigError::InvalidMatchHeaderName(name.clone()))?;
                    let trimmed = value.trim();
                    if trimmed.is_empty() || HeaderValue::from_str(trimmed).is_err() {
                        return Err(ForwardedConfigError::InvalidMatchHeaderValue { name, value });
                    }
                    parsed.push((header, trimmed.to_owned()));
                }
                Family::MatchHeaders(parsed)
            }
        };
        Ok(ForwardedLayer {
            config: Arc::new(Config {
                family,
                trusted_masks: TrustedMasks::new(&trusted),
                trusted,
                host: self.host,
                client: self.client,
                strip_untrusted: self.strip_untrusted,
                peer: self.peer,
                warned_no_peer: AtomicBool::new(false),
            }),
        })
    }
}

fn parse_net(entry: &str) -> Result<IpNet, ForwardedConfigError> {
    let entry_trimmed = entry.trim();
    let net = match entry_trimmed.parse::<IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => entry_trimmed
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| ForwardedConfigError::InvalidTrustedProxy(entry.to_owned()))?,
    };
    Ok(canonical_net(net))
}

/// Addresses are compared in canonical form (IPv4-mapped IPv6 as IPv4), so an IPv4-mapped
/// network (`::ffff:10.0.0.0/104`) is turned into the IPv4 network it covers; otherwise it
/// could never match anything.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(len)) = (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96))
        {
            if let Ok(v4) = ipnet::Ipv4Net::new(v4, len) {
                return IpNet::V4(v4);
            }
        }
    }
    net
}

/// A [`Layer`] that applies forwarded scheme, host and client information from trusted
/// proxies; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ForwardedLayer {
    config: Arc<Config>,
}

impl ForwardedLayer {
    /// Starts a builder with the defaults: the `X-Forwarded-*` family, trusted proxies
    /// `127.0.0.0/8` and `::1`, scheme only (host and client off), headers from untrusted
    /// peers stripped, peer address from the [`PeerAddr`] extension or, with the `axum`
    /// feature, from axum's `ConnectInfo<SocketAddr>`.
    pub fn builder() -> ForwardedLayerBuilder {
        ForwardedLayerBuilder {
            family: FamilyChoice::XForwarded,
            trusted: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
            host: false,
            client: false,
            strip_untrusted: true,
            peer: Arc::new(default_peer),
        }
    }
}

impl<S> Layer<S> for ForwardedLayer {
    type Service = Forwarded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Forwarded {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service made by [`ForwardedLayer`].
#[derive(Debug, Clone)]
pub struct Forwarded<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S, B> Service<Request<B>> for Forwarded<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        apply(&self.config, &mut request);
        self.inner.call(request)
    }
}

impl Config {
    fn is_trusted(&self, addr: IpAddr) -> bool {
        self.trusted_masks.contains(addr)
    }
}

/// The trusted networks as (network, mask) pairs, one list per address family, made when the
/// layer is built.
#[derive(Debug, Default)]
struct TrustedMasks {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl TrustedMasks {
    fn new(nets: &[IpNet]) -> Self {
        let mut masks = Self::default();
        for net in nets {
            match net {
                IpNet::V4(v4) => masks
                    .v4
                    .push((u32::from(v4.network()), u32::from(v4.netmask()))),
                IpNet::V6(v6) => masks
                    .v6
                    .push((u128::from(v6.network()), u128::from(v6.netmask()))),
            }
        }
        masks
    }

    /// Whether `addr` (compared in canonical form: IPv4-mapped IPv6 as IPv4) is inside one of
    /// the networks.
    fn contains(&self, addr: IpAddr) -> bool {
        match addr.to_canonical() {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4);
                self.v4.iter().any(|&(net, mask)| bits & mask == net)
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                self.v6.iter().any(|&(net, mask)| bits & mask == net)
            }
        }
    }
}

/// What one proxy hop reported.
#[derive(Default, Clone)]
struct Hop<'a> {
    for_: Option<Cow<'a, str>>,
    proto: Option<Cow<'a, str>>,
    host: Option<Cow<'a, str>>,
}

fn apply<B>(config: &Config, request: &mut Request<B>) {
    let peer = (config.peer)(request.extensions()).map(|ip| ip.to_canonical());
    if peer.is_none() && !config.warned_no_peer.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "ForwardedLayer found no peer address, so every request counts as coming from an \
             untrusted peer and forwarded headers are ignored; {NO_PEER_HINT}"
        );
    }
    let trusted = peer.is_some_and(|ip| config.is_trusted(ip));

    let mut scheme = None;
    let mut host = None;
    // `Some(_)` once a believed hop was chosen with client forwarding on: the peer is then a
    // proxy, never the client, even when the hop's address is `unknown` or unreadable.
    let mut client: Option<Option<IpAddr>> = None;
    // The `Host` header, once a pass over the headers has read it.
    let mut host_header: Option<Option<HeaderValue>> = None;
    if trusted {
        let headers = request.headers();
        match &config.family {
            Family::MatchHeaders(entries) => {
                if entries.iter().any(|(name, value)| {
                    last_item(headers, name).is_some_and(|v| v.eq_ignore_ascii_case(value))
                }) {
                    scheme = Some(Scheme::HTTPS);
                }
            }
            family => {
                let hops = match family {
                    Family::Rfc7239 => rfc7239_hops(headers),
                    _ => x_forwarded_hops(headers),
                };
                let believed = believed_hops(config, &hops);
                if let Some(chosen) = believed.last() {
                    // A field the chosen hop did not report is taken from the nearest hop
                    // to its right: every one of those was added by a trusted proxy.
                    scheme = believed
                        .iter()
                        .rev()
                        .find_map(|h| h.proto.as_deref())
                        .and_then(parse_scheme);
                    if config.host {
                        host = believed
                            .iter()
                            .rev()
                            .find_map(|h| h.host.as_deref())
                            .filter(|h| !h.contains('@'))
                            .and_then(|h| Authority::try_from(h).ok());
                    }
                    if config.client {
                        client = Some(chosen.for_.as_deref().and_then(parse_node_ip));
                    }
                }
            }
        }
    } else if config.strip_untrusted {
        let found = match config.family {
            // The pass that looks for `X-Forwarded-*` also finds the `Host` header, which saves
            // a look-up by hash below.
            Family::XForwarded => {
                let (found, host) = scan_x_forwarded(request.headers());
                host_header = Some(host);
                found
            }
            _ => true,
        };
        if found && strip(&config.family, request.headers_mut()) {
            tracing::debug!(
                peer = ?peer,
                "removed forwarded headers sent by a peer that is not a trusted proxy"
            );
        }
    }

    // The effective host: forwarded, else the URI's own authority, else the Host header
    // (an origin-form HTTP/1.1 request carries its authority only there).
    let forwarded_host = host.is_some();
    if scheme.is_some() || forwarded_host {
        let host = host
            .clone()
            .or_else(|| request.uri().authority().cloned())
            .or_else(|| {
                request
                    .headers()
                    .get(header::HOST)
                    .and_then(|h| Authority::try_from(h.as_bytes()).ok())
            });
        rewrite_uri(request.uri_mut(), scheme.as_ref(), host.as_ref());
    }
    let host = match host.or_else(|| request.uri().authority().cloned()) {
        Some(authority) => EffectiveHost::Authority(authority),
        None => match host_header.unwrap_or_else(|| request.headers().get(header::HOST).cloned()) {
            Some(value) => EffectiveHost::Header(value, OnceLock::new()),
            None => EffectiveHost::None,
        },
    };
    let info = ForwardedInfo {
        scheme: scheme
            .or_else(|| request.uri().scheme().cloned())
            .unwrap_or(Scheme::HTTP),
        host,
        client: client.unwrap_or(peer),
        peer,
        trusted,
    };
    request.extensions_mut().insert(info);
}

/// The hops whose values are believed, nearest first: the walk goes right to left while the
/// address a hop reports for its own client is itself a trusted proxy. `hops` is nearest
/// first and already ends before the first element that could not be read, so the last hop
/// returned is the one that names the client (the last address the walk could believe).
fn believed_hops<'h, 'a>(config: &Config, hops: &'h [Hop<'a>]) -> &'h [Hop<'a>] {
    let mut end = 0;
    for hop in hops {
        end += 1;
        match hop.for_.as_deref().and_then(parse_node_ip) {
            Some(ip) if config.is_trusted(ip) => continue,
            _ => break,
        }
    }
    &hops[..end]
}

fn header_items<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

fn last_item<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    header_items(headers, name).filter(|v| !v.is_empty()).last()
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The items of every line of a comma-list header, left to right; `None` for an item with a
/// byte outside visible ASCII (obs-text, a control character), which cannot be read but
/// still takes its place in the list.
fn raw_items<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Vec<Option<&'a str>> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b','))
        .map(|item| {
            std::str::from_utf8(item)
                .ok()
                .filter(|item| {
                    item.bytes()
                        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
                })
                .map(str::trim)
        })
        .collect()
}

/// The `X-Forwarded-*` hops, nearest first, up to the first one that cannot be read.
///
/// The three lists are aligned from the right: the last item of each was added by the proxy
/// nearest to us. An `X-Forwarded-For` item is readable when it is a node address (with or
/// without a port) or `unknown`; a bare token, a quote or a parameter is not, and neither is
/// an item of any of the three lists with a byte outside visible ASCII.
fn x_forwarded_hops(headers: &HeaderMap) -> Vec<Hop<'_>> {
    let fors = raw_items(headers, &X_FORWARDED_FOR);
    let protos = raw_items(headers, &X_FORWARDED_PROTO);
    let hosts = raw_items(headers, &X_FORWARDED_HOST);
    let len = fors.len().max(protos.len()).max(hosts.len());
    let mut hops = Vec::new();
    for from_right in 0..len {
        let (Some(for_), Some(proto), Some(host)) = (
            from_the_right(&fors, from_right),
            from_the_right(&protos, from_right),
            from_the_right(&hosts, from_right),
        ) else {
            break;
        };
        if for_.is_some_and(|node| {
            !node.eq_ignore_ascii_case("unknown") && parse_node_ip(node).is_none()
        }) {
            break;
        }
        hops.push(Hop {
            for_: for_.map(Cow::Borrowed),
            proto: proto.map(Cow::Borrowed),
            host: host.map(Cow::Borrowed),
        });
    }
    hops
}

/// The item `from_right` places from the end of `list`: `Some(None)` when the list is shorter
/// or the item is empty, `None` when the item cannot be read.
fn from_the_right<'a>(list: &[Option<&'a str>], from_right: usize) -> Option<Option<&'a str>> {
    match list.len().checked_sub(from_right + 1).map(|i| list[i]) {
        None => Some(None),
        Some(item) => item.map(|item| Some(item).filter(|v| !v.is_empty())),
    }
}

const FORWARDED: HeaderName = header::FORWARDED;

/// RFC 7239: `Forwarded: for=192.0.2.60;proto=https;host=example.com, for=10.0.0.1`.
///
/// The elements of every line, nearest proxy first (the last element of the last line is
/// the nearest), up to the first element that cannot be read. Each element is parsed with the
/// RFC 7239 grammar (a semicolon list of `token=value` pairs, the value a token or a
/// quoted-string with backslash escapes), so a `,` or `;` inside quotes never splits
/// anything.
///
/// Reading from the right is what keeps a client from erasing the proxies' hops: a client's
/// own broken value (an unterminated quote, a duplicate parameter, obs-text) sits to the left
/// of what the proxies appended, so it ends the walk there instead of voiding the header.
/// An element ends at a comma outside quotes; walking right to left, the element is the
/// shortest stretch back to a comma that parses as one element. A stretch that ends inside
/// a quoted-string never parses (its last value would have to open with an unescaped quote
/// inside that string), so a quoted comma cannot fake an element boundary.
fn rfc7239_hops(headers: &HeaderMap) -> Vec<Hop<'_>> {
    let mut hops = Vec::new();
    for line in headers.get_all(&FORWARDED).iter().rev() {
        if !elements_from_the_right(line.as_bytes(), &mut hops) {
            break;
        }
    }
    hops
}

/// How many commas one element may span inside quotes before the walk gives up on it: a
/// crafted header cannot make the search try every comma of the line for each element.
const MAX_QUOTED_COMMAS: usize = 16;

/// Pushes the elements of one line onto `hops`, right to left; `false` when the walk met an
/// element it cannot read (and must stop).
fn elements_from_the_right<'a>(line: &'a [u8], hops: &mut Vec<Hop<'a>>) -> bool {
    let mut end = line.len();
    while end > 0 {
        let mut found = None;
        let commas = line[..end]
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, b)| **b == b',')
            .map(|(i, _)| i + 1)
            .take(MAX_QUOTED_COMMAS + 1);
        for start in commas.chain(std::iter::once(0)) {
            // When no start reads (the last one tried is the line's start), `found` stays
            // empty and the walk stops.
            if let Ok(hop) = parse_element(&line[start..end]) {
                found = Some((start, hop));
                break;
            }
        }
        let Some((start, hop)) = found else {
            return false;
        };
        // An empty list element (`, ,`) is skipped, as RFC 9110's list rule asks.
        if let Some(hop) = hop {
            hops.push(hop);
        }
        end = start.saturating_sub(1);
    }
    true
}

/// A `Forwarded` line that does not follow the RFC 7239 grammar.
struct Malformed;

/// One `Forwarded` element, `None` when it is empty (whitespace only).
///
/// Whitespace is allowed around `;` as well as around the element (common in practice);
/// around `=` it is not. Names are case-insensitive; a parameter given twice is malformed
/// (RFC 7239 section 4), and so is a byte outside visible ASCII. Only `for`, `proto` and
/// `host` are kept; other parameters are checked and skipped.
fn parse_element(element: &[u8]) -> Result<Option<Hop<'_>>, Malformed> {
    let element = std::str::from_utf8(element).map_err(|_| Malformed)?;
    let bytes = element.as_bytes();
    let mut pos = skip_ows(bytes, 0);
    if pos == bytes.len() {
        return Ok(None);
    }
    let mut hop = Hop::default();
    let (mut seen_for, mut seen_by, mut seen_proto, mut seen_host) = (false, false, false, false);
    while pos < bytes.len() {
        if bytes[pos] == b';' {
            pos = skip_ows(bytes, pos + 1);
            continue;
        }
        let name_end = token_end(bytes, pos);
        if name_end == pos || bytes.get(name_end) != Some(&b'=') {
            return Err(Malformed);
        }
        let name = &element[pos..name_end];
        let (value, value_end) = parse_value(element, name_end + 1)?;
        pos = skip_ows(bytes, value_end);
        if !matches!(bytes.get(pos), None | Some(b';')) {
            return Err(Malformed);
        }
        let (seen, slot) = if name.eq_ignore_ascii_case("for") {
            (&mut seen_for, Some(&mut hop.for_))
        } else if name.eq_ignore_ascii_case("proto") {
            (&mut seen_proto, Some(&mut hop.proto))
        } else if name.eq_ignore_ascii_case("host") {
            (&mut seen_host, Some(&mut hop.host))
        } else if name.eq_ignore_ascii_case("by") {
            (&mut seen_by, None)
        } else {
            continue;
        };
        if std::mem::replace(seen, true) {
            return Err(Malformed);
        }
        if let Some(slot) = slot {
            *slot = Some(value).filter(|v| !v.is_empty());
        }
    }
    Ok(Some(hop))
}

fn skip_ows(bytes: &[u8], mut pos: usize) -> usize {
    while matches!(bytes.get(pos), Some(b' ' | b'\t')) {
        pos += 1;
    }
    pos
}

/// The end of the token starting at `pos` (`pos` itself when there is none).
fn token_end(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).is_some_and(|&b| is_tchar(b)) {
        pos += 1;
    }
    pos
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A pair's value at `start`: a non-empty token, or a quoted-string (unescaped, borrowed
/// unless it holds a backslash escape). Returns the value and the position after it.
fn parse_value(line: &str, start: usize) -> Result<(Cow<'_, str>, usize), Malformed> {
    let bytes = line.as_bytes();
    if bytes.get(start) != Some(&b'"') {
        let end = token_end(bytes, start);
        if end == start {
            return Err(Malformed);
        }
        return Ok((Cow::Borrowed(&line[start..end]), end));
    }
    let content = start + 1;
    let mut unescaped: Option<String> = None;
    let mut pos = content;
    loop {
        match bytes.get(pos) {
            None => return Err(Malformed),
            Some(b'"') => {
                let value = match unescaped {
                    Some(owned) => Cow::Owned(owned),
                    None => Cow::Borrowed(&line[content..pos]),
                };
                return Ok((value, pos + 1));
            }
            Some(b'\\') => {
                // quoted-pair: `\` then HTAB, SP or a visible character.
                let escaped = match bytes.get(pos + 1) {
                    Some(&b) if b == b'\t' || (0x20..0x7f).contains(&b) => b,
                    _ => return Err(Malformed),
                };
                unescaped
                    .get_or_insert_with(|| line[content..pos].to_owned())
                    .push(char::from(escaped));
                pos += 2;
            }
            // qdtext: HTAB, SP and visible characters but `"` and `\` (`to_str` already
            // refused everything else).
            Some(&b) => {
                if b != b'\t' && !(0x20..0x7f).contains(&b) {
                    return Err(Malformed);
                }
                if let Some(owned) = unescaped.as_mut() {
                    owned.push(char::from(b));
                }
                pos += 1;
            }
        }
    }
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// Only `http` and `https` are accepted, in any case; anything else is ignored.
fn parse_scheme(proto: &str) -> Option<Scheme> {
    if proto.eq_ignore_ascii_case("https") {
        Some(Scheme::HTTPS)
    } else if proto.eq_ignore_ascii_case("http") {
        Some(Scheme::HTTP)
    } else {
        None
    }
}

/// A node as in `X-Forwarded-For` or RFC 7239 `for=`: `192.0.2.1`, `192.0.2.1:4711`,
/// `2001:db8::1`, `[2001:db8::1]:4711`. `unknown` and obfuscated names yield `None`.
fn parse_node_ip(node: &str) -> Option<IpAddr> {
    let node = unquote(node.trim());
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, _) = rest.split_once(']')?;
        return ip.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    }
    let (ip, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Removes the family's headers; says whether there were any.
/// One pass over the headers: whether any is one of the `X-Forwarded-*` headers (most
/// requests carry none, and one pass is cheaper than three removals by hash), and the first
/// `Host` value.
fn scan_x_forwarded(headers: &HeaderMap) -> (bool, Option<HeaderValue>) {
    let mut host = None;
    let mut found = false;
    for (name, value) in headers {
        if name == header::HOST {
            if host.is_none() {
                host = Some(value.clone());
            }
        } else if is_x_forwarded(name) {
            found = true;
        }
    }
    (found, host)
}

/// Whether `name` is one of the three `X-Forwarded-*` headers the layer strips. A standard
/// name (most of a request's) differs from these custom ones by its kind alone, with no byte
/// compared.
fn is_x_forwarded(name: &HeaderName) -> bool {
    *name == X_FORWARDED_FOR || *name == X_FORWARDED_PROTO || *name == X_FORWARDED_HOST
}

fn strip(family: &Family, headers: &mut HeaderMap) -> bool {
    let mut removed = false;
    let mut remove = |name: &HeaderName| {
        // `remove` drops every line of the header, not just the first.
        removed |= headers.remove(name).is_some();
    };
    match family {
        Family::XForwarded => {
            remove(&X_FORWARDED_FOR);
            remove(&X_FORWARDED_PROTO);
            remove(&X_FORWARDED_HOST);
        }
        Family::Rfc7239 => remove(&FORWARDED),
        Family::MatchHeaders(entries) => {
            for (name, _) in entries {
                remove(name);
            }
        }
    }
    removed
}

fn rewrite_uri(uri: &mut Uri, scheme: Option<&Scheme>, host: Option<&Authority>) {
    let mut parts = uri.clone().into_parts();
    if let Some(host) = host {
        parts.authority = Some(host.clone());
    }
    // An absolute URI needs an authority; without one (origin-form request and no
    // forwarded host) only the extension carries the scheme.
    if parts.authority.is_some() {
        if let Some(scheme) = scheme {
            parts.scheme = Some(scheme.clone());
        }
        if parts.scheme.is_none() {
            parts.scheme = Some(Scheme::HTTP);
        }
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
    }
    if let Ok(rewritten) = Uri::from_parts(parts) {
        *uri = rewritten;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_masks_agree_with_the_networks_they_were_made_from() {
        let entries = [
            "10.0.0.0/8",
            "192.0.2.7",
            "::1",
            "2001:db8::/32",
            "::ffff:172.16.0.0/108",
        ];
        let nets: Vec<IpNet> = entries.iter().map(|e| parse_net(e).unwrap()).collect();
        let masks = TrustedMasks::new(&nets);
        for addr in [
            "10.1.2.3",
            "11.0.0.1",
            "192.0.2.7",
            "192.0.2.8",
            "::1",
            "::2",
            "2001:db8:ffff::1",
            "2001:db9::1",
            "172.16.9.9",
            "172.32.0.1",
            "::ffff:10.9.9.9",
            "::ffff:11.9.9.9",
        ] {
            let addr: IpAddr = addr.parse().unwrap();
            let canonical = addr.to_canonical();
            let expected = nets.iter().any(|net| net.contains(&canonical));
            assert_eq!(masks.contains(addr), expected, "{addr}");
        }
    }

    #[test]
    fn a_host_header_is_parsed_only_when_asked_and_equality_ignores_when() {
        let layer = ForwardedLayer::builder().build().unwrap();
        let info = || {
            let mut request = Request::new(());
            request
                .headers_mut()
                .insert(header::HOST, HeaderValue::from_static("app.example:8080"));
            apply(&layer.config, &mut request);
            request.extensions_mut().remove::<ForwardedInfo>().unwrap()
        };
        let (read, unread) = (info(), info());
        assert_eq!(read.host().map(Authority::as_str), Some("app.example:8080"));
        assert_eq!(read, unread);
        let mut bad = Request::new(());
        bad.headers_mut()
            .insert(header::HOST, HeaderValue::from_static("not a host"));
        apply(&layer.config, &mut bad);
        assert_eq!(
            bad.extensions().get::<ForwardedInfo>().unwrap().host(),
            None
        );
    }

    #[test]
    fn node_addresses_in_every_form() {
        let v4 = |s: &str| s.parse::<IpAddr>().ok();
        assert_eq!(parse_node_ip("192.0.2.1"), v4("192.0.2.1"));
        assert_eq!(parse_node_ip("192.0.2.1:4711"), v4("192.0.2.1"));
        assert_eq!(parse_node_ip("\"192.0.2.1:4711\""), v4("192.0.2.1"));
        assert_eq!(parse_node_ip("2001:db8::1"), v4("2001:db8::1"));
        assert_eq!(parse_node_ip("\"[2001:db8::1]:4711\""), v4("2001:db8::1"));
        assert_eq!(parse_node_ip("[2001:db8::1]"), v4("2001:db8::1"));
        assert_eq!(parse_node_ip("::ffff:10.0.0.1"), v4("10.0.0.1"));
        assert_eq!(parse_node_ip("unknown"), None);
        assert_eq!(parse_node_ip("_hidden"), None);
        assert_eq!(parse_node_ip("192.0.2.1:notaport"), None);
    }

    fn parse(lines: &[&'static str]) -> Vec<Hop<'static>> {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(FORWARDED, HeaderValue::from_static(line));
        }
        // The hops borrow from `headers`; own them for the assertions.
        rfc7239_hops(&headers)
            .into_iter()
            .map(|hop| Hop {
                for_: hop.for_.map(|v| Cow::Owned(v.into_owned())),
                proto: hop.proto.map(|v| Cow::Owned(v.into_owned())),
                host: hop.host.map(|v| Cow::Owned(v.into_owned())),
            })
            .collect()
    }

    #[test]
    fn rfc7239_elements_are_listed_nearest_first() {
        let hops = parse(&[
            "for=192.0.2.60;proto=http;by=203.0.113.43",
            "For=\"[2001:db8:cafe::17]:4711\"; Host=\"app.example\", ;",
        ]);
        assert_eq!(hops.len(), 3);
        assert!(hops[0].for_.is_none() && hops[0].proto.is_none());
        assert_eq!(hops[1].for_.as_deref(), Some("[2001:db8:cafe::17]:4711"));
        assert_eq!(hops[1].host.as_deref(), Some("app.example"));
        assert_eq!(hops[2].for_.as_deref(), Some("192.0.2.60"));
        assert_eq!(hops[2].proto.as_deref(), Some("http"));
    }

    #[test]
    fn rfc7239_quoted_strings_keep_separators_and_unescape() {
        let hops = parse(&["by=\"a,b;c\";for=\"_x\\\"y\\\\\";proto=https"]);
        assert_eq!(hops.len(), 1);
        assert_eq!(hops[0].for_.as_deref(), Some("_x\"y\\"));
        assert_eq!(hops[0].proto.as_deref(), Some("https"));
    }

    #[test]
    fn rfc7239_quoted_commas_never_make_an_element() {
        // Each stretch after a quoted comma looks like the tail of an element.
        let hops = parse(&["for=a, host=\"x, for=b\", host=\"y,proto=https\""]);
        assert_eq!(hops.len(), 3);
        assert_eq!(hops[0].host.as_deref(), Some("y,proto=https"));
        assert_eq!(hops[0].proto, None);
        assert_eq!(hops[1].host.as_deref(), Some("x, for=b"));
        assert_eq!(hops[1].for_, None);
        assert_eq!(hops[2].for_.as_deref(), Some("a"));
    }

    #[test]
    fn rfc7239_walk_stops_at_the_first_unreadable_element() {
        for bad in [
            "garbage",
            "for=a junk",
            "for=\"a",
            "for=\"a\\",
            "for=a;for=b",
            "by=a;BY=b",
            "for=1.2.3.4:80",
            "=a",
            "for=",
            "for =a",
            "for= a",
        ] {
            // What the proxies appended to the right is kept; the element to the left is not.
            let line = format!("for=left, {bad}, for=right;proto=https");
            let mut headers = HeaderMap::new();
            headers.append(FORWARDED, HeaderValue::from_str(&line).unwrap());
            let hops = rfc7239_hops(&headers);
            assert_eq!(hops.len(), 1, "{bad}");
            assert_eq!(hops[0].for_.as_deref(), Some("right"), "{bad}");
        }
    }

    #[test]
    fn rfc7239_obs_text_element_stops_the_walk() {
        let mut headers = HeaderMap::new();
        let line = HeaderValue::from_bytes(b"for=left, for=\"caf\xe9\", for=right").unwrap();
        headers.append(FORWARDED, line);
        let hops = rfc7239_hops(&headers);
        assert_eq!(hops.len(), 1);
        assert_eq!(hops[0].for_.as_deref(), Some("right"));
    }

    #[test]
    fn rfc7239_unterminated_quote_in_an_earlier_line_keeps_later_lines() {
        let hops = parse(&["for=\"_unterminated", "for=right"]);
        assert_eq!(hops.len(), 1);
        assert_eq!(hops[0].for_.as_deref(), Some("right"));
    }

    use crate::test_log::logged;

    fn from_peer(peer: Option<[u8; 4]>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(peer) = peer {
            let addr = std::net::SocketAddr::from((peer, 4711));
            request.extensions_mut().insert(PeerAddr(addr));
        }
        request
    }

    #[test]
    fn a_missing_peer_address_is_warned_about_once() {
        let layer = ForwardedLayer::builder().build().unwrap();
        let first = logged(|| apply(&layer.config, &mut from_peer(None)));
        assert!(first.contains("found no peer address"), "{first}");
        let second = logged(|| apply(&layer.config, &mut from_peer(None)));
        assert!(!second.contains("found no peer address"), "{second}");
    }

    #[test]
    fn a_request_with_a_peer_address_warns_of_nothing() {
        let layer = ForwardedLayer::builder().build().unwrap();
        let logs = logged(|| apply(&layer.config, &mut from_peer(Some([192, 0, 2, 1]))));
        assert!(!logs.contains("found no peer address"), "{logs}");
    }

    #[test]
    fn headers_removed_from_an_untrusted_peer_are_logged_at_debug() {
        let layer = ForwardedLayer::builder().build().unwrap();
        let mut request = from_peer(Some([192, 0, 2, 1]));
        request
            .headers_mut()
            .insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        let logs = logged(|| apply(&layer.config, &mut request));
        assert!(request.headers().is_empty());
        assert!(logs.contains("removed forwarded headers"), "{logs}");
    }

    #[test]
    fn the_rfc7239_family_reads_forwarded_and_not_x_forwarded() {
        let layer = ForwardedLayer::builder().rfc7239().build().unwrap();
        let mut request = from_peer(Some([127, 0, 0, 1]));
        request
            .headers_mut()
            .insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        apply(&layer.config, &mut request);
        assert_eq!(
            request
                .extensions()
                .get::<ForwardedInfo>()
                .unwrap()
                .scheme(),
            &Scheme::HTTP
        );

        let mut request = from_peer(Some([127, 0, 0, 1]));
        request
            .headers_mut()
            .insert(FORWARDED, HeaderValue::from_static("proto=https"));
        apply(&layer.config, &mut request);
        assert_eq!(
            request
                .extensions()
                .get::<ForwardedInfo>()
                .unwrap()
                .scheme(),
            &Scheme::HTTPS
        );
    }

    #[test]
    fn a_forwarded_scheme_alone_rewrites_the_request_uri() {
        let layer = ForwardedLayer::builder().build().unwrap();
        let mut request = from_peer(Some([127, 0, 0, 1]));
        *request.uri_mut() = Uri::from_static("/orders?page=2");
        let headers = request.headers_mut();
        headers.insert(header::HOST, HeaderValue::from_static("app.example"));
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        apply(&layer.config, &mut request);
        assert_eq!(request.uri(), "https://app.example/orders?page=2");
    }

    #[test]
    fn a_value_may_hold_sixteen_quoted_commas_and_no_more() {
        let quoted =
            |commas: usize| format!("for=left, host=\"{}\", for=right", ",".repeat(commas));
        let read = |line: String| {
            let mut headers = HeaderMap::new();
            headers.insert(FORWARDED, HeaderValue::from_str(&line).unwrap());
            rfc7239_hops(&headers).len()
        };
        assert_eq!(read(quoted(MAX_QUOTED_COMMAS)), 3);
        // Past the limit the element cannot be found, and the walk stops after `right`.
        assert_eq!(read(quoted(MAX_QUOTED_COMMAS + 1)), 1);
    }

    #[test]
    fn rfc7239_quoted_values_may_hold_tabs_escaped_or_not() {
        let hops = parse(&["for=\"_a\tb\";host=\"c\\\td\""]);
        assert_eq!(hops.len(), 1);
        assert_eq!(hops[0].for_.as_deref(), Some("_a\tb"));
        assert_eq!(hops[0].host.as_deref(), Some("c\td"));
    }

    #[test]
    fn rfc7239_unknown_parameters_are_skipped() {
        let hops = parse(&["ext=1;for=a;ext=\"x\""]);
        assert_eq!(hops.len(), 1);
        assert_eq!(hops[0].for_.as_deref(), Some("a"));
    }

    #[test]
    fn x_forwarded_lists_align_from_the_right() {
        let mut headers = HeaderMap::new();
        headers.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_static("10.0.0.1, 10.0.0.2, 10.0.0.3"),
        );
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        let hops = x_forwarded_hops(&headers);
        assert_eq!(hops.len(), 3);
        assert_eq!(hops[0].proto.as_deref(), Some("https"));
        assert_eq!(hops[0].for_.as_deref(), Some("10.0.0.3"));
        assert_eq!(hops[2].proto, None);
    }

    #[test]
    fn x_forwarded_walk_stops_at_the_first_unreadable_item() {
        for bad in [
            "garbage",
            "\"10.0.0.9",
            "for=10.0.0.9;for=10.0.0.8",
            "10.0.0.9:port",
        ] {
            let mut headers = HeaderMap::new();
            let line = format!("10.0.0.1, {bad}, 10.0.0.3");
            headers.insert(X_FORWARDED_FOR, HeaderValue::from_str(&line).unwrap());
            let hops = x_forwarded_hops(&headers);
            assert_eq!(hops.len(), 1, "{bad}");
            assert_eq!(hops[0].for_.as_deref(), Some("10.0.0.3"), "{bad}");
        }
        let mut headers = HeaderMap::new();
        let line = HeaderValue::from_bytes(b"10.0.0.1, 10.0.0.\xff, 10.0.0.3").unwrap();
        headers.insert(X_FORWARDED_FOR, line);
        assert_eq!(x_forwarded_hops(&headers).len(), 1);
    }

    #[test]
    fn x_forwarded_unknown_is_a_readable_item() {
        let mut headers = HeaderMap::new();
        headers.insert(
            X_FORWARDED_FOR,
            HeaderValue::from_static("10.0.0.1, unknown"),
        );
        assert_eq!(x_forwarded_hops(&headers).len(), 2);
    }

    #[test]
    fn trusted_proxies_accept_addresses_and_networks() {
        assert_eq!(
            parse_net("10.1.2.3/8").ok(),
            "10.0.0.0/8".parse::<IpNet>().ok()
        );
        assert_eq!(parse_net("::1").ok(), "::1/128".parse::<IpNet>().ok());
        assert_eq!(
            parse_net("::ffff:10.0.0.0/104").ok(),
            "10.0.0.0/8".parse::<IpNet>().ok()
        );
        assert_eq!(
            parse_net("::ffff:192.0.2.7").ok(),
            "192.0.2.7/32".parse::<IpNet>().ok()
        );
        assert!(parse_net("localhost").is_err());
    }
}

#[cfg(test)]
mod properties {
    //! The `Forwarded` parser (RFC 7239) on any bytes, and on lists a proxy chain writes.

    use http::{HeaderMap, HeaderValue};
    use proptest::prelude::*;

    use super::*;
    use crate::proptest_config::config;

    /// A parameter value as a proxy writes it: a token, or quoted text with the separators a
    /// naive split would cut at (a few commas at most: the walk gives up after 16 in one value).
    fn value() -> impl Strategy<Value = (String, String)> {
        prop_oneof![
            "[A-Za-z0-9._-]{1,12}".prop_map(|token| (token.clone(), token)),
            "[ -!#-\\[-~]{0,6}(,[ a-z;=]{0,4}){0,3}"
                .prop_map(|text| { (format!("\"{text}\""), text) }),
        ]
    }

    /// (the element's text, its `for`, `proto`, `host`)
    fn element() -> impl Strategy<Value = (String, [Option<String>; 3])> {
        (
            prop::option::of(value()),
            prop::option::of(prop_oneof![Just("http"), Just("https")]),
            prop::option::of(value()),
        )
            .prop_filter("an element names something", |(f, p, h)| {
                f.is_some() || p.is_some() || h.is_some()
            })
            .prop_map(|(for_, proto, host)| {
                let mut pairs = Vec::new();
                if let Some((written, _)) = &for_ {
                    pairs.push(format!("for={written}"));
                }
                if let Some(proto) = proto {
                    pairs.push(format!("proto={proto}"));
                }
                if let Some((written, _)) = &host {
                    pairs.push(format!("host={written}"));
                }
                // An empty value (`for=""`) says nothing, and reads as no value.
                let said = |value: String| Some(value).filter(|value| !value.is_empty());
                (
                    pairs.join(";"),
                    [
                        for_.and_then(|(_, value)| said(value)),
                        proto.map(str::to_owned),
                        host.and_then(|(_, value)| said(value)),
                    ],
                )
            })
    }

    fn read(headers: &HeaderMap) -> Vec<[Option<String>; 3]> {
        rfc7239_hops(headers)
            .into_iter()
            .map(|hop| {
                [
                    hop.for_.map(|value| value.into_owned()),
                    hop.proto.map(|value| value.into_owned()),
                    hop.host.map(|value| value.into_owned()),
                ]
            })
            .collect()
    }

    /// What one proxy of a chain said about its client, as the reference model sees it.
    #[derive(Debug, Clone)]
    enum Said {
        /// An address inside the trusted network (`10.0.0.0/8`), with or without a port.
        Trusted(String, IpAddr),
        /// An address outside it.
        Untrusted(String, IpAddr),
        /// `unknown`: readable, but names no address.
        Unknown,
        /// An empty item: the proxy said nothing.
        Nothing,
    }

    impl Said {
        fn written(&self) -> &str {
            match self {
                Self::Trusted(text, _) | Self::Untrusted(text, _) => text,
                Self::Unknown => "unknown",
                Self::Nothing => "",
            }
        }

        fn address(&self) -> Option<IpAddr> {
            match self {
                Self::Trusted(_, ip) | Self::Untrusted(_, ip) => Some(*ip),
                Self::Unknown | Self::Nothing => None,
            }
        }
    }

    fn said() -> impl Strategy<Value = Said> {
        let port = prop::option::of(1u16..);
        let write = |ip: std::net::Ipv4Addr, port: Option<u16>| match port {
            Some(port) => format!("{ip}:{port}"),
            None => ip.to_string(),
        };
        prop_oneof![
            (any::<[u8; 3]>(), port.clone()).prop_map(move |([a, b, c], port)| {
                let ip = std::net::Ipv4Addr::new(10, a, b, c);
                Said::Trusted(write(ip, port), IpAddr::V4(ip))
            }),
            (any::<u8>(), port).prop_map(move |(d, port)| {
                let ip = std::net::Ipv4Addr::new(203, 0, 113, d);
                Said::Untrusted(write(ip, port), IpAddr::V4(ip))
            }),
            Just(Said::Unknown),
            Just(Said::Nothing),
        ]
    }

    /// One proxy's `X-Forwarded-For`, `-Proto` and `-Host` items.
    fn x_forwarded_hop() -> impl Strategy<Value = (Said, Option<&'static str>, Option<String>)> {
        (
            said(),
            prop::option::of(prop_oneof![
                Just("http"),
                Just("https"),
                Just("HTTPS"),
                Just("ftp")
            ]),
            prop::option::of("[a-z]{1,8}\\.example(:[1-9][0-9]{0,3})?"),
        )
    }

    #[test]
    fn forwarded_linearity_probe() {
        let shapes = [
            "forwarded-escapes",
            "forwarded-unterminated",
            "forwarded-elements",
            "forwarded-quoted-commas",
            "forwarded-commas",
        ];
        for input in crate::linearity::inputs(&shapes) {
            let mut headers = HeaderMap::new();
            headers.insert(FORWARDED, HeaderValue::from_str(&input).unwrap());
            crate::linearity::measured(|| rfc7239_hops(&headers).len());
        }
    }

    #[test]
    fn x_forwarded_linearity_probe() {
        for input in crate::linearity::inputs(&["x-forwarded-items", "x-forwarded-commas"]) {
            let value = HeaderValue::from_str(&input).unwrap();
            let mut headers = HeaderMap::new();
            for name in [X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST] {
                headers.insert(name, value.clone());
            }
            crate::linearity::measured(|| x_forwarded_hops(&headers).len());
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn any_forwarded_bytes_are_read_or_refused_never_a_panic(
            lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..3),
        ) {
            let mut headers = HeaderMap::new();
            for line in lines {
                if let Ok(value) = HeaderValue::from_bytes(&line) {
                    headers.append(FORWARDED, value);
                }
            }
            let _ = read(&headers);
        }

        /// Agreement with a reference model of the walk: from a trusted peer, the client is
        /// the first hop from the right whose `X-Forwarded-For` item is not a trusted proxy
        /// (the leftmost when all are), and scheme and host are the chosen hop's own, else
        /// those of the nearest hop to its right that gave them; from an untrusted peer,
        /// nothing forwarded is believed and the headers are removed.
        #[test]
        fn the_client_is_the_first_untrusted_hop_from_the_right(
            // Nearest proxy first.
            hops in prop::collection::vec(x_forwarded_hop(), 0..6),
            peer_trusted in any::<bool>(),
            // Per list, whether its leading empty items are left out, as some chains do.
            trim in any::<[bool; 3]>(),
            one_line_per_item in any::<bool>(),
        ) {
            let layer = ForwardedLayer::builder()
                .x_forwarded()
                .trusted_proxies(["10.0.0.0/8"])
                .client(true)
                .host(true)
                .build()
                .unwrap();
            let peer: IpAddr = if peer_trusted { [10, 9, 9, 9] } else { [198, 51, 100, 7] }.into();

            // The three lists as written, farthest proxy first.
            let lists: [Vec<String>; 3] = [
                hops.iter().rev().map(|(said, _, _)| said.written().to_owned()).collect(),
                hops.iter().rev().map(|(_, proto, _)| proto.unwrap_or("").to_owned()).collect(),
                hops.iter().rev().map(|(_, _, host)| host.clone().unwrap_or_default()).collect(),
            ];
            let mut written = Vec::new();
            for (list, trim) in lists.into_iter().zip(trim) {
                let skip = if trim { list.iter().take_while(|item| item.is_empty()).count() } else { 0 };
                written.push(list[skip..].to_vec());
            }
            let mut request = Request::new(());
            request.extensions_mut().insert(PeerAddr(std::net::SocketAddr::new(peer, 4711)));
            for (name, list) in [X_FORWARDED_FOR, X_FORWARDED_PROTO, X_FORWARDED_HOST]
                .into_iter()
                .zip(&written)
            {
                if list.is_empty() {
                    continue;
                }
                if one_line_per_item {
                    for item in list {
                        request.headers_mut().append(&name, HeaderValue::from_str(item).unwrap());
                    }
                } else {
                    let line = HeaderValue::from_str(&list.join(", ")).unwrap();
                    request.headers_mut().insert(&name, line);
                }
            }
            apply(&layer.config, &mut request);
            let info = request.extensions().get::<ForwardedInfo>().unwrap();

            // The model. The chain is as long as the longest list written: hops beyond it
            // said nothing anywhere and are not on the wire.
            let on_the_wire = written.iter().map(Vec::len).max().unwrap_or(0);
            let hops = &hops[..on_the_wire];
            let (client, scheme, host) = if !peer_trusted || hops.is_empty() {
                (Some(peer), Scheme::HTTP, None)
            } else {
                let chosen = hops
                    .iter()
                    .position(|(said, _, _)| !matches!(said, Said::Trusted(..)))
                    .unwrap_or(hops.len() - 1);
                let believed = &hops[..=chosen];
                let scheme = match believed.iter().rev().find_map(|(_, proto, _)| *proto) {
                    Some("https" | "HTTPS") => Scheme::HTTPS,
                    _ => Scheme::HTTP,
                };
                let host = believed.iter().rev().find_map(|(_, _, host)| host.clone());
                (hops[chosen].0.address(), scheme, host)
            };
            prop_assert_eq!(info.client(), client);
            prop_assert_eq!(info.scheme(), &scheme);
            prop_assert_eq!(info.host().map(|host| host.as_str().to_owned()), host);
            prop_assert_eq!(info.from_trusted_proxy(), peer_trusted);
            if !peer_trusted {
                prop_assert!(request.headers().is_empty(), "an untrusted peer's headers are stripped");
            }
        }

        #[test]
        fn a_list_a_proxy_chain_wrote_reads_back_right_to_left(
            elements in prop::collection::vec(element(), 1..5),
            split in any::<bool>(),
        ) {
            let mut headers = HeaderMap::new();
            if split {
                // One line per proxy, as some chains send them.
                for (text, _) in &elements {
                    headers.append(FORWARDED, HeaderValue::from_str(text).unwrap());
                }
            } else {
                let line = elements.iter().map(|(text, _)| text.as_str()).collect::<Vec<_>>();
                headers.insert(FORWARDED, HeaderValue::from_str(&line.join(", ")).unwrap());
            }
            let expected: Vec<_> = elements.into_iter().rev().map(|(_, hop)| hop).collect();
            prop_assert_eq!(read(&headers), expected);
        }
    }
}
