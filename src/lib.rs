//! Composable async HTTP middleware for both sides of the wire.
//!
//! stopover has two halves, each behind a feature that is on by default:
//!
//! - [`client`]: a cheap-to-clone HTTP client on [reqwest] whose requests pass through a chain
//!   of middlewares you write as one async function or as a struct. The chain runs once per
//!   redirect hop (stopover follows redirects itself), a middleware can send requests of its own
//!   through the same client without recursing forever, and the SSRF guard sits in the transport
//!   where no request can remove it. Built in: retry, logging, bearer tokens with refresh,
//!   Digest authentication (RFC 7616) and proxy credentials.
//! - [`server`]: tower layers for axum's `Router::layer`, `tower::ServiceBuilder` or a bare
//!   hyper server: JSON error responses, CORS as browsers enforce it, timeouts with ignore
//!   rules, shielding handlers from clients that go away, and scheme and client address from
//!   trusted proxies.
//!
//! It does in Rust what aiohttp's client middlewares and the `aiohttp-middlewares` package do in
//! Python (a table below maps their names), with the gaps closed that they and the Rust peers
//! leave open: credentials are dropped on cross-origin redirects, a body that cannot be replayed
//! is an error instead of an empty request, and every configuration is checked when it is built.
//!
//! # Adding it
//!
//! ```sh
//! cargo add stopover                                         # both halves
//! cargo add stopover --no-default-features --features rustls,gzip # the client alone, with HTTPS and gzip
//! ```
//!
//! | feature | default | what it adds | what it pulls in |
//! |---|---|---|---|
//! | `client` | yes | the [`client`] module, plain HTTP only until a TLS feature is on | reqwest 0.13 (HTTP/2), hyper-util, url, RustCrypto hashes (md-5, sha1, sha2), ipnet, getrandom |
//! | `rustls` | yes | HTTPS through rustls with aws-lc-rs, the platform's verifier and roots (reqwest's default); [`client::tls`] and the `tls_*` settings; a failed handshake is [`ErrorKind::Tls`](client::ErrorKind::Tls) | reqwest's `rustls` (rustls, aws-lc-rs, rustls-platform-verifier) |
//! | `rustls-ring` | no | HTTPS through rustls with ring, the platform's verifier and roots: no C compiler needed; ring is installed as rustls' process-wide default provider when `build` finds none (and wins over aws-lc-rs when `rustls` is on too) | reqwest's `rustls-no-provider`, rustls with `ring` |
//! | `native-tls` | no | HTTPS through the platform's TLS library (OpenSSL, Security.framework, SChannel) with its roots, ALPN included; preferred over rustls when both are on (`ClientBuilder::tls_backend_rustls` picks rustls) | reqwest's `native-tls` |
//! | `webpki-roots` | no | [`ClientBuilder::tls_webpki_roots`](client/struct.ClientBuilder.html#method.tls_webpki_roots): the Mozilla roots bundled into the build instead of the platform's, with any TLS backend | webpki-root-certs (data under CDLA-Permissive-2.0) |
//! | `gzip` | yes | gzip responses decoded (`Accept-Encoding: gzip`), see [`ClientBuilder::gzip`](client::ClientBuilder::gzip) | reqwest's `gzip` (async-compression, flate2) |
//! | `brotli`, `zstd`, `deflate` | no | brotli (`br`), zstd and deflate responses decoded the same way | reqwest's features of those names |
//! | `multipart` | no | `multipart/form-data` bodies, [`RequestBuilder::multipart`](client/struct.RequestBuilder.html#method.multipart) with reqwest's `Form` and `Part` (`client::multipart`) | reqwest's `multipart` (mime_guess) |
//! | `cookies` | no | a cookie store, [`ClientBuilder::cookie_store`](client/struct.ClientBuilder.html#method.cookie_store) | reqwest's `cookies` (cookie_store) |
//! | `redis` | no | [`client::token::redis`](client/token/redis/index.html): one bearer token and one refresh per expiry for a fleet, through Redis | redis 1.2 (tokio, connection manager) |
//! | `server` | yes | the [`server`] module | tower, regex, ipnet, pin-project-lite |
//! | `axum` | no | `HttpError: IntoResponse`, `ForwardedInfo` and `ClientGone` as extractors, `ForwardedLayer` reading axum's `ConnectInfo` (see `server::axum`) | axum 0.8 without default features |
//! | `opentelemetry` | no | W3C trace context (`traceparent`, `tracestate`) on every request on the wire, from its client span; `ClientBuilder::trace_context_exclude` | opentelemetry 0.31 (`trace`), tracing-opentelemetry 0.32 |
//! | `metrics` | no | `http.client.request.duration` and counters for retries, token refreshes and SSRF refusals, through the `metrics` facade | metrics 0.24 |
//!
//! Both halves use tokio, `http` 1, bytes, serde_json and tracing. Building the default TLS
//! stack (aws-lc-rs) needs a C compiler; `--no-default-features --features client,rustls-ring`
//! avoids it.
//!
//! # The client
//!
//! A middleware sees every request, may change it, and calls `next.run` zero, one or several
//! times. The first middleware added is the outermost.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use stopover::client::retry::{Retry, RetryPolicy};
//! use stopover::client::ssrf::Policy;
//! use stopover::client::{Client, Next, Request, from_fn};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder()
//!     .base_url("https://api.example.test/")
//!     .timeout(Duration::from_secs(30))
//!     .ssrf_policy(Policy::default()) // no request reaches a private or internal address
//!     .middleware(Retry::new(RetryPolicy::builder().build()?))
//!     .middleware(from_fn(|req: Request, next: Next| async move {
//!         println!("{} {} (hop {})", req.method(), req.url(), req.hop());
//!         next.run(req).await
//!     }))
//!     .build()?;
//!
//! let users = client.get("users").send().await?.text().await?;
//! # let _ = users;
//! # Ok(())
//! # }
//! ```
//!
//! # The server
//!
//! The layers go in one `ServiceBuilder`, outermost first, in the order shown here (the
//! [`server`] module explains why).
//!
//! ```
//! use std::time::Duration;
//!
//! use axum::{Router, routing::get};
//! use stopover::server::{CorsLayer, ErrorLayer, ForwardedLayer, ShieldLayer, TimeoutLayer};
//! use tower::ServiceBuilder;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app: Router = Router::new()
//!     .route("/items", get(|| async { "[]" }))
//!     .layer(
//!         ServiceBuilder::new()
//!             .layer(ForwardedLayer::builder().build()?)
//!             .layer(CorsLayer::builder().allow_origin("https://app.example").build()?)
//!             .layer(ErrorLayer::new())
//!             .layer(TimeoutLayer::builder(Duration::from_secs(10)).build()?)
//!             .layer(ShieldLayer::builder().build()?),
//!     );
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! # Coming from reqwest
//!
//! The client is reqwest underneath, and its API keeps reqwest's names where the meaning is the
//! same. What differs, and why:
//!
//! | reqwest | stopover | where they differ, and why |
//! |---|---|---|
//! | `reqwest::Client`, `Client::builder()`, `client.get(url).send().await?` | [`client::Client`], the same calls; `client.get(url).await?` too | a `Client` carries a middleware chain, so there is no separate `ClientWithMiddleware` type (reqwest-middleware) |
//! | reqwest-middleware's `Middleware` trait, `with(..)` | [`ClientBuilder::middleware`](client::ClientBuilder::middleware), [`from_fn`](client::from_fn) | the chain runs once per redirect hop, and a middleware can send requests through the same client |
//! | `ClientBuilder::timeout` (to the end of the body) | [`ClientBuilder::timeout`](client::ClientBuilder::timeout), [`RequestBuilder::timeout`](client::RequestBuilder::timeout) | the same: every hop, every retry, middleware time and the body read; [`head_timeout`](client::ClientBuilder::head_timeout) stops at the response head, [`attempt_timeout`](client::ClientBuilder::attempt_timeout) bounds each request on the wire |
//! | `read_timeout`, `connect_timeout` | [`read_timeout`](client::ClientBuilder::read_timeout), [`connect_timeout`](client::ClientBuilder::connect_timeout) | the same (reqwest's own) |
//! | `redirect(Policy::limited(n))` | [`redirect`](client::ClientBuilder::redirect)`(`[`RedirectPolicy::limited(n)`](client::RedirectPolicy::limited)`)`, or [`max_redirects(n)`](client::ClientBuilder::max_redirects) | stopover follows redirects itself, so the chain and the SSRF guard see every hop; reqwest's redirect policy stays off |
//! | `redirect(Policy::none())` | [`redirect`](client::ClientBuilder::redirect)`(`[`RedirectPolicy::none()`](client::RedirectPolicy::none)`)`, or [`RequestBuilder::follow_redirects(false)`](client::RequestBuilder::follow_redirects) per request | the 3xx is returned as it is; a request can still ask to follow |
//! | `redirect(Policy::custom(..))` | a [middleware](client::Middleware) with `follow_redirects(false)`, or one that reads [`Request::hop`](client::Request::hop) and [`original_url`](client::Request::original_url) | a middleware sees each hop's request and response, not only the next URL |
//! | `RequestBuilder::build`, `Client::execute(request)` | [`RequestBuilder::build`](client::RequestBuilder::build), [`Client::execute`](client::Client::execute) | the built [`Request`](client::Request) is the one middlewares see; the call's timeout, middleware list and redirect choice travel with it |
//! | `RequestBuilder::try_clone` | [`RequestBuilder::try_clone`](client::RequestBuilder::try_clone) | a streaming body can be replayed within a cap ([`Body::wrap_stream_replayable`](client::Body::wrap_stream_replayable)) |
//! | `ClientBuilder::resolve`, `resolve_to_addrs` | [`resolve`](client::ClientBuilder::resolve), [`resolve_to_addrs`](client::ClientBuilder::resolve_to_addrs) | with an SSRF policy, the overridden address is judged by the policy like any DNS answer, and the URL's port is used |
//! | `dns_resolver` | [`dns_resolver`](client::ClientBuilder::dns_resolver) | with an SSRF policy, its answers are judged before any connection |
//! | `https_only(true)` | [`https_only(true)`](client::ClientBuilder::https_only) | checked on every request on the wire: each redirect hop, each retry, each request a middleware sends |
//! | `proxy`, `no_proxy` | [`proxy`](client::ClientBuilder::proxy) ([`client::Proxy`]) | a proxy cannot be combined with an SSRF policy (the proxy would resolve the target out of the guard's sight): `build` refuses it. There is no `no_proxy`: with an SSRF policy the environment's proxies are ignored; without one they apply until a proxy is added |
//! | `default_headers`, `user_agent`, `base_url` (reqwest has none) | [`default_headers`](client::ClientBuilder::default_headers), [`user_agent`](client::ClientBuilder::user_agent), [`base_url`](client::ClientBuilder::base_url) | `base_url` takes a string or a `Url`; relative request URLs are joined to it, on the tower path too |
//! | `add_root_certificate`, `tls_built_in_root_certs(false)`, `identity`, `danger_accept_invalid_certs` | [`tls_certs_merge`](client::ClientBuilder::tls_certs_merge), [`tls_certs_only`](client::ClientBuilder::tls_certs_only), [`identity`](client::ClientBuilder::identity), [`tls_danger_accept_invalid_certs`](client::ClientBuilder::tls_danger_accept_invalid_certs) | reqwest 0.13's names |
//! | `gzip`, `brotli`, `zstd`, `deflate`, `cookie_store` | the same, behind features of the same names | the same |
//! | `Response::bytes`, `text`, `json`, `chunk`, `bytes_stream`, `error_for_status` | the same on [`client::Response`] | bodies read whole are bounded by [`body_limit`](client::ClientBuilder::body_limit) (64 MiB by default); a body that is not UTF-8 is a decode error from `text` |
//! | `reqwest::Error::is_timeout`, `is_connect`, `is_request`, `is_body`, `is_decode`, `is_status`, `is_redirect`, `is_builder`, `url`, `status` | the same on [`client::Error`], and [`kind`](client::Error::kind) to match on | more kinds: [`is_refused`](client::Error::is_refused) (SSRF), [`is_tls`](client::Error::is_tls), [`is_body_not_replayable`](client::Error::is_body_not_replayable), [`is_recursion`](client::Error::is_recursion); `is_redirect` means the redirect limit was reached |
//! | `Client: Service<reqwest::Request>` | `Client: Service<http::Request<B>>` ([`client::interop`]) | any body that converts into a [`Body`](client::Body); the chain, redirects and SSRF guard run as for `client.get` |
//! | reqwest-tracing | built in ([`client::telemetry`]) | one span per call and per request on the wire, OpenTelemetry names, URL redacted |
//! | `multipart(form)` (feature `multipart`) | `multipart(form)` with `client::multipart::{Form, Part}`, behind the `multipart` feature | the form is a streaming body: retries and 307/308 redirects send it again within 64 KiB, past that they fail with [`is_body_not_replayable`](client::Error::is_body_not_replayable) instead of sending it empty; it goes out chunked, without `Content-Length` |
//! | `hickory-dns`, `http3`, `socks`, `blocking`, `tls_info` | not provided | not needed by the jobs stopover is for yet; `dns_resolver` takes any resolver |
//!
//! # Coming from aiohttp
//!
//! | aiohttp / aiohttp-middlewares | stopover |
//! |---|---|
//! | `ClientSession(middlewares=(m1, m2))` | [`ClientBuilder::middleware`](client::ClientBuilder::middleware), once per middleware |
//! | `session.get(url, middlewares=(m,))` | [`RequestBuilder::middlewares`](client::RequestBuilder::middlewares) (replaces the client's list, as in aiohttp) |
//! | `session.get(url, middlewares=())` | [`RequestBuilder::no_middleware`](client::RequestBuilder::no_middleware) |
//! | `async def mw(req, handler)` | [`from_fn`](client::from_fn)`(\|req, next\| async move { .. })`, or a struct implementing [`Middleware`](client::Middleware) |
//! | `await handler(req)` | [`next.run(req).await`](client::Next::run) |
//! | a middleware's own requests on the same session | [`next.client()`](client::Next::client), with or without middleware |
//! | `DigestAuthMiddleware(login, password)` | [`client::digest::DigestAuth`] |
//! | the cookbook's retry, logging and token-refresh recipes | [`client::retry`], [`client::logging`], [`client::token`] |
//! | the cookbook's `SSRFConnector` / SSRF middleware | [`client::ssrf::Policy`] on [`ClientBuilder::ssrf_policy`](client::ClientBuilder::ssrf_policy) |
//! | `error_middleware(default_handler=.., config={..})` | [`server::ErrorLayer`] with async per-path and default handlers ([`ErrorLayerBuilder::handler`](server::error::ErrorLayerBuilder::handler)) |
//! | `error_middleware(ignore_exceptions=..)` | [`ErrorLayerBuilder::skip_error`](server::error::ErrorLayerBuilder::skip_error) |
//! | `raise web.HTTPError(..)` with `err.data` as the body | [`HttpError::with_body`](server::HttpError::with_body) |
//! | `get_error_response(request, err)` | [`ErrorLayer::error_response`](server::ErrorLayer::error_response) |
//! | `cors_middleware(origins=.., urls=..)` | [`server::CorsLayer`] |
//! | `cors_middleware(origins=[re.compile(..)])`, or an origin check of your own | [`allow_origin_regex`](server::cors::CorsLayerBuilder::allow_origin_regex) (whole origin), [`allow_origin_predicate`](server::cors::CorsLayerBuilder::allow_origin_predicate) (origin only), [`allow_origin_predicate_with_parts`](server::cors::CorsLayerBuilder::allow_origin_predicate_with_parts) (origin and request: by `Host` or path), [`allow_origin_async_predicate`](server::cors::CorsLayerBuilder::allow_origin_async_predicate) (asks a store) |
//! | several `cors_middleware(urls=..)` in one app, one per tenant | [`CorsLayer::by_path`](server::CorsLayer::by_path): a policy per `urls`, first match wins |
//! | `timeout_middleware(seconds, ignore=..)` | [`server::TimeoutLayer`] |
//! | `shield_middleware(methods=.., ignore=..)` | [`server::ShieldLayer`] (methods, optionally narrowed by [`paths`](server::shield::ShieldLayerBuilder::paths)) |
//! | `shield_middleware(urls=[..])` (every method on those URLs) | [`ShieldLayerBuilder::all_methods`](server::shield::ShieldLayerBuilder::all_methods) with [`paths`](server::shield::ShieldLayerBuilder::paths) |
//! | `https_middleware(match_headers=..)` | [`server::ForwardedLayer`], which believes only trusted proxies |
//! | `match_path(item, path)` | [`server::matcher::PathMatcher`]: exact, prefix or whole-path regex |
//!
//! `examples/port_from_aiohttp.rs` ports a small aiohttp-middlewares app (async error views,
//! URL-only shielding, per-tenant CORS, a handler returning `Result<Json<T>, HttpError>`) and
//! runs it against itself: `cargo run --example port_from_aiohttp --features axum`.
//!
//! [reqwest]: https://docs.rs/reqwest
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "client")]
pub mod client;

#[cfg(feature = "client")]
pub mod resilience;

/// The reqwest this crate is built on, so that its types in this crate's API
/// (a [`dns::Resolve`](reqwest::dns::Resolve) for
/// [`ClientBuilder::dns_resolver`](client::ClientBuilder::dns_resolver)) need no separate
/// dependency of a matching version.
#[cfg(feature = "client")]
pub use reqwest;

#[cfg(feature = "server")]
pub mod server;

#[cfg(test)]
mod linearity;
#[cfg(test)]
mod proptest_config;
#[cfg(test)]
mod test_log;

// The README's examples compile: they are doctests here, so they cannot drift from the API.
#[cfg(all(doctest, feature = "client", feature = "server"))]
#[doc = include_str!("../README.md")]
struct ReadmeExamples;
