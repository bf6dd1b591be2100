//! Cross-origin resource sharing: answers preflights and adds `Access-Control-*` headers to
//! every response on the paths it covers, whatever their status.
//!
//! Compared with tower-http's `CorsLayer` and aiohttp-middlewares' `cors_middleware`, this
//! layer treats only a real preflight (`OPTIONS` with both `Origin` and
//! `Access-Control-Request-Method`) as a preflight, so other `OPTIONS` requests reach your
//! handler; it checks the requested method and headers and refuses a preflight it would not
//! grant with a `403` (configurable) instead of a `200` without headers; it matches origins
//! exactly after normalising them (or with a regex over the *whole* origin, or a predicate);
//! it merges into `Vary` instead of overwriting it; it sends `Access-Control-Allow-Credentials`
//! only with an allowed origin; and it refuses at build time, with an error rather than a
//! panic, a configuration the Fetch standard forbids, such as credentials with any origin.
//!
//! The layer owns the `Access-Control-Allow-*`, `-Expose-Headers` and `-Max-Age` response
//! headers on the paths it covers: a value an inner service set is replaced or removed, so
//! every response carries at most one of each. It acts on responses, so a `500` or `504`
//! made by an inner layer gets the same headers as a `200`. It never rejects an actual
//! (non-preflight) request: CORS protects reads in the browser, not the server, and a
//! disallowed origin still runs the handler; it just gets no `Access-Control-Allow-Origin`.
//! An `Err` from the inner service has no response to carry headers, so place the error
//! layer inside this one (see [`server`](crate::server) for the recommended order).
//!
//! # Why a preflight was refused
//!
//! A refused preflight carries no CORS headers, so a browser's console blames a missing
//! `Access-Control-Allow-Origin` whatever the real cause. For development,
//! [`CorsLayerBuilder::explain_refusals`] adds a [`REFUSAL_REASON`] header naming it (the
//! origin, the method or the request header that is not allowed); it shows in the browser's
//! network panel. Leave it off in production, where it tells any caller what the policy
//! lacks. The reason is also logged at `DEBUG` either way.
//!
//! # Deciding by request, or asking a store
//!
//! Besides listed origins and patterns, an origin can be allowed by a predicate over the
//! origin alone ([`CorsLayerBuilder::allow_origin_predicate`]), over the origin and the
//! request's parts, to decide by `Host` or path in a multi-tenant app
//! ([`CorsLayerBuilder::allow_origin_predicate_with_parts`]), or by an async predicate that
//! asks a store ([`CorsLayerBuilder::allow_origin_async_predicate`]). The cheap checks run
//! first; the async predicate only when they all refused. A preflight is answered, and an
//! actual response released, once it answered; the layer puts no deadline on it, so bound
//! the store's answer inside the predicate or place a timeout layer outside this one.
//!
//! # Several policies, chosen by path
//!
//! [`CorsLayer::by_path`] holds several policies, each a [`CorsLayer::builder`] whose
//! [`urls`](CorsLayerBuilder::urls) say what it covers; the first that covers a request
//! applies, a request none covers passes through untouched, and a last policy without
//! `urls` is the fallback.
//!
//! The default policy allows no origin, the safelisted methods (`GET`, `HEAD`, `POST`), no
//! extra request header, exposes nothing, sends no max age and no credentials, covers every
//! path, answers allowed preflights with `204` and refused ones with `403`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use stopover::server::cors::CorsLayer;
//! use stopover::server::matcher::{PathMatcher, PathRules};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cors = CorsLayer::builder()
//!     .allow_origin("https://app.example")
//!     .allow_origin_regex(r"https://[a-z0-9-]+\.preview\.example")
//!     .allow_methods(["GET", "POST", "PUT", "DELETE"])
//!     .allow_headers(["content-type", "authorization"])
//!     .expose_headers(["x-request-id"])
//!     .allow_credentials(true)
//!     .max_age(Duration::from_secs(600))
//!     .urls(PathRules::new().with(PathMatcher::prefix("/api/")?))
//!     .build()?;
//!
//! let app: Router = Router::new()
//!     .route("/api/items", get(|| async { "[]" }))
//!     .layer(cors);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

mod allow_origin;
mod vary;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use self::allow_origin::{OriginDecision, OriginPolicy, OriginSpec, PendingOrigin};
use self::vary::Vary;
use crate::server::matcher::PathRules;

const REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
const ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");
/// The response header that names why a preflight was refused, with
/// [`CorsLayerBuilder::explain_refusals`].
pub const REFUSAL_REASON: HeaderName = HeaderName::from_static("cors-refusal-reason");

const TRUE: HeaderValue = HeaderValue::from_static("true");
const STAR: HeaderValue = HeaderValue::from_static("*");

/// The response headers the layer owns on the paths it covers.
const OWNED: [HeaderName; 7] = [
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::ACCESS_CONTROL_EXPOSE_HEADERS,
    header::ACCESS_CONTROL_MAX_AGE,
    ALLOW_PRIVATE_NETWORK,
];

/// Response headers a browser always lets scripts read, and `Set-Cookie`, which it never
/// does: neither is worth listing in `Access-Control-Expose-Headers`.
const NOT_EXPOSED: [HeaderName; 8] = [
    header::CACHE_CONTROL,
    header::CONTENT_LANGUAGE,
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::EXPIRES,
    header::LAST_MODIFIED,
    header::PRAGMA,
    header::SET_COOKIE,
];

/// An invalid [`CorsLayer`] configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CorsConfigError {
    /// An allowed origin is not of the form `scheme://host[:port]` (or `null`).
    #[error("allowed origin `{origin}` is invalid: {reason}")]
    InvalidOrigin {
        /// The origin as given.
        origin: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `*` was given as an origin in a list; use `allow_any_origin` instead.
    #[error("`*` is not an origin; use allow_any_origin() instead of listing it")]
    WildcardInOriginList,
    /// `allow_any_origin` was combined with listed origins, patterns or predicates.
    #[error("allow_any_origin() cannot be combined with listed origins, patterns or predicates")]
    AnyOriginWithOtherOrigins,
    /// An origin pattern does not compile.
    #[error("origin regex `{pattern}` is invalid: {source}")]
    InvalidOriginRegex {
        /// The pattern as given.
        pattern: String,
        /// The compiler's error.
        #[source]
        source: regex::Error,
    },
    /// Credentials with any origin, which browsers refuse and which would let every site
    /// read credentialed responses if the origin were echoed.
    #[error(
        "allow_credentials(true) with allow_any_origin() is refused; list the origins, or call \
         dangerously_allow_credentials_with_any_origin() to echo every origin"
    )]
    CredentialsWithAnyOrigin,
    /// Credentials with `Access-Control-Allow-Methods: *`, which browsers take literally.
    #[error(
        "allow_credentials(true) with allow_any_method(); list methods or mirror_request_method()"
    )]
    CredentialsWithAnyMethod,
    /// Credentials with `Access-Control-Allow-Headers: *`, which browsers take literally.
    #[error(
        "allow_credentials(true) with allow_any_header(); list headers or mirror_request_headers()"
    )]
    CredentialsWithAnyHeader,
    /// `*` inside a method or header list; use the matching `*_any_*` setter.
    #[error("`*` in {setting}; use the setter for any instead of listing `*`")]
    WildcardInList {
        /// Which setting.
        setting: &'static str,
    },
    /// A method is not an HTTP token.
    #[error("method `{0}` is not a valid HTTP method")]
    InvalidMethod(String),
    /// A header name is not valid.
    #[error("{setting}: `{name}` is not a valid header name")]
    InvalidHeaderName {
        /// Which setting.
        setting: &'static str,
        /// The name as given.
        name: String,
    },
    /// `Set-Cookie` in the exposed headers: browsers never expose it.
    #[error("set-cookie can never be exposed to scripts; remove it from expose_headers")]
    ExposeSetCookie,
    /// The status for allowed preflights is not a 2xx, so browsers would fail every
    /// preflight.
    #[error("preflight status {0} is not a success (2xx) status")]
    PreflightStatusNotSuccess(StatusCode),
    /// The status for refused preflights is informational (1xx).
    #[error("denied preflight status {0} must be 200 or above")]
    InvalidDeniedPreflightStatus(StatusCode),
    /// [`CorsLayer::by_path`] was built without a policy.
    #[error("CorsLayer::by_path() needs at least one policy")]
    NoPolicies,
    /// A policy in [`CorsLayer::by_path`] comes after one without `urls`, which covers every
    /// path, so it could never be chosen.
    #[error(
        "CORS policy #{index} can never be chosen: policy #{covered_by} has no urls(..) and \
         covers every path; give it urls(..) or move it last"
    )]
    UnreachablePolicy {
        /// The position (from 0) of the policy that can never be chosen.
        index: usize,
        /// The position of the earlier policy that covers every path.
        covered_by: usize,
    },
    /// A policy in [`CorsLayer::by_path`] is invalid.
    #[error("CORS policy #{index}: {source}")]
    Policy {
        /// The position (from 0) of the invalid policy.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: Box<CorsConfigError>,
    },
}

#[derive(Debug, Clone)]
enum ListOrAny {
    List(Vec<String>),
    Any,
    Mirror,
}

/// Builds a [`CorsLayer`]; every input is checked by [`build`](Self::build).
pub struct CorsLayerBuilder {
    origins: OriginSpec,
    dangerous_any_with_credentials: bool,
    urls: Option<PathRules>,
    methods: ListOrAny,
    headers: ListOrAny,
    expose: Vec<String>,
    expose_any: bool,
    max_age: Option<Duration>,
    credentials: bool,
    private_network: bool,
    preflight_status: StatusCode,
    denied_status: StatusCode,
    explain_refusals: bool,
}

impl fmt::Debug for CorsLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CorsLayerBuilder")
            .field("urls", &self.urls)
            .field("methods", &self.methods)
            .field("headers", &self.headers)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl CorsLayerBuilder {
    /// Allows one origin, `scheme://host[:port]`, compared exactly with the request's
    /// `Origin` after normalising this one the way browsers serialise origins (lower-case
    /// scheme and host, default port dropped: `HTTPS://App.Example:443` is
    /// `https://app.example`). A path, a trailing `/`, user information or `*` is an error.
    /// `"null"` allows the opaque `null` origin (sandboxed iframes, `data:` pages, every
    /// cross-origin redirect), which is rarely what you want; it is the only way that
    /// origin is ever allowed. Adds to earlier calls. Default: no origin.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.origins.exact.push(origin.into());
        self
    }

    /// Allows each of these origins, as [`allow_origin`](Self::allow_origin).
    pub fn allow_origins<I, T>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.origins
            .exact
            .extend(origins.into_iter().map(Into::into));
        self
    }

    /// Allows origins matching a regex over the **whole** origin (it is anchored at both
    /// ends, so `https://app\.example` does not let `https://app.example.evil.test` in).
    /// Never consulted for `null`. Adds to earlier calls.
    pub fn allow_origin_regex(mut self, pattern: impl Into<String>) -> Self {
        self.origins.patterns.push(pattern.into());
        self
    }

    /// Allows origins for which the predicate returns `true`. It sees the origin exactly as
    /// the browser sent it and is never consulted for `null` or for a value that is not
    /// visible ASCII. Adds to earlier calls.
    ///
    /// Check the scheme as well as the host: a suffix test alone also admits
    /// `http://intranet.corp.example`, whose pages anyone on the network path can rewrite,
    /// and with credentials it could then read credentialed responses.
    ///
    /// ```
    /// # use stopover::server::cors::CorsLayer;
    /// # use tower::{Layer, ServiceExt};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cors = CorsLayer::builder()
    ///     .allow_origin_predicate(|origin| {
    ///         origin
    ///             .strip_prefix("https://")
    ///             .is_some_and(|host| host.ends_with(".corp.example"))
    ///     })
    ///     .allow_credentials(true)
    ///     .build()?;
    /// # let app = cors.layer(tower::service_fn(|_: http::Request<()>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// # }));
    /// # for (origin, allowed) in [
    /// #     ("https://wiki.corp.example", true),
    /// #     ("http://wiki.corp.example", false),
    /// #     ("https://corp.example.evil.test", false),
    /// # ] {
    /// #     let request = http::Request::get("/").header("origin", origin).body(())?;
    /// #     let response = app.clone().oneshot(request).await?;
    /// #     let granted = response.headers().contains_key("access-control-allow-origin");
    /// #     assert_eq!(granted, allowed, "{origin}");
    /// # }
    /// # Ok(())
    /// # }
    /// ```
    pub fn allow_origin_predicate<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&str) -> bool + Send + Sync + 'static,
    {
        self.origins.predicates.push(Arc::new(predicate));
        self
    }

    /// Allows origins for which the predicate, given the origin and the request's
    /// [`Parts`] (method, URI, headers, extensions), returns `true`: a multi-tenant app can
    /// decide by `Host` or by path which origins a tenant lets in. Like
    /// [`allow_origin_predicate`](Self::allow_origin_predicate) it sees the origin exactly
    /// as the browser sent it and is never consulted for `null` or for a value that is not
    /// visible ASCII. For a preflight the parts are those of the `OPTIONS` request (its
    /// path is the path of the request to come, its method is `OPTIONS`). Adds to earlier
    /// calls.
    ///
    /// The answer must depend only on the origin and on what identifies the resource
    /// (`Host`, path, query): a browser cache keys responses by URL and varies them by
    /// `Origin` only (the layer adds `Vary: Origin`). If the answer depends on another
    /// request header, add that header's name to `Vary` yourself.
    ///
    /// ```
    /// # use stopover::server::cors::CorsLayer;
    /// # use tower::{Layer, ServiceExt};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Tenant `acme.api.example` takes requests from `https://acme.example` only.
    /// let cors = CorsLayer::builder()
    ///     .allow_origin_predicate_with_parts(|origin, parts| {
    ///         let host = parts.headers.get("host").and_then(|h| h.to_str().ok());
    ///         let tenant = host.and_then(|h| h.strip_suffix(".api.example"));
    ///         tenant.is_some_and(|t| origin.strip_prefix("https://") == Some(&format!("{t}.example")))
    ///     })
    ///     .build()?;
    /// # let app = cors.layer(tower::service_fn(|_: http::Request<()>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// # }));
    /// # for (host, origin, allowed) in [
    /// #     ("acme.api.example", "https://acme.example", true),
    /// #     ("globex.api.example", "https://acme.example", false),
    /// # ] {
    /// #     let request = http::Request::get("/")
    /// #         .header("host", host)
    /// #         .header("origin", origin)
    /// #         .body(())?;
    /// #     let response = app.clone().oneshot(request).await?;
    /// #     let granted = response.headers().contains_key("access-control-allow-origin");
    /// #     assert_eq!(granted, allowed, "{host} {origin}");
    /// # }
    /// # Ok(())
    /// # }
    /// ```
    pub fn allow_origin_predicate_with_parts<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&str, &Parts) -> bool + Send + Sync + 'static,
    {
        self.origins.parts_predicates.push(Arc::new(predicate));
        self
    }

    /// Allows origins for which the future the predicate returns resolves to `true`, to ask
    /// a store (a database of tenants, a cache) which origins are allowed. The predicate is
    /// called with the origin and the request's [`Parts`] when the request arrives and
    /// returns a `'static` future: copy what it needs out of them before the `async` block.
    /// It is asked only when no exact origin, pattern or synchronous predicate allowed the
    /// origin, and, like the other predicates, never for `null` or for a value that is not
    /// visible ASCII. Adds to earlier calls; several are asked at once and awaited in
    /// order until one says `true`.
    ///
    /// A preflight is answered once the future resolves. An actual request reaches the
    /// inner service at once (CORS never holds a request back) and its response is
    /// released once both the inner service and the future are done.
    ///
    /// The layer sets no deadline of its own: a future that never resolves holds the
    /// request, as a handler that never answers would. Bound it inside the future (for
    /// example with `tokio::time::timeout`, treating a timeout as `false`), or place a
    /// timeout layer outside this one. A panic in the future is not caught here (the error
    /// layer, placed inside, does not see it): catch it inside the future, or place a
    /// panic-catching layer outside. Each request that reaches the predicate boxes its
    /// future. What [`allow_origin_predicate_with_parts`] says about `Vary` holds here too.
    ///
    /// [`allow_origin_predicate_with_parts`]: Self::allow_origin_predicate_with_parts
    ///
    /// ```
    /// use std::collections::HashSet;
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use stopover::server::cors::CorsLayer;
    /// use tokio::sync::RwLock;
    /// # use tower::{Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // Stands in for a database of the origins each tenant registered.
    /// let store: Arc<RwLock<HashSet<String>>> = Arc::default();
    /// store.write().await.insert("https://acme.example".to_owned());
    ///
    /// let cors = CorsLayer::builder()
    ///     .allow_origin_async_predicate(move |origin, _parts| {
    ///         let store = store.clone();
    ///         let origin = origin.to_owned();
    ///         async move {
    ///             let lookup = async { store.read().await.contains(&origin) };
    ///             // A store that does not answer in time refuses the origin.
    ///             tokio::time::timeout(Duration::from_secs(1), lookup)
    ///                 .await
    ///                 .unwrap_or(false)
    ///         }
    ///     })
    ///     .build()?;
    /// # let app = cors.layer(tower::service_fn(|_: http::Request<()>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// # }));
    /// # for (origin, allowed) in [("https://acme.example", true), ("https://globex.example", false)] {
    /// #     let request = http::Request::get("/").header("origin", origin).body(())?;
    /// #     let response = app.clone().oneshot(request).await?;
    /// #     let granted = response.headers().contains_key("access-control-allow-origin");
    /// #     assert_eq!(granted, allowed, "{origin}");
    /// # }
    /// # Ok(())
    /// # }
    /// ```
    pub fn allow_origin_async_predicate<F, Fut>(mut self, predicate: F) -> Self
    where
        F: Fn(&str, &Parts) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.origins
            .async_predicates
            .push(Arc::new(move |origin: &str, parts: &Parts| {
                Box::pin(predicate(origin, parts)) as allow_origin::BoxedDecision
            }));
        self
    }

    /// Allows every origin with `Access-Control-Allow-Origin: *`, which is static, so it is
    /// sent on every response on the covered paths (also without `Origin`) and no
    /// `Vary: Origin` is needed. Cannot be combined with listed origins, nor with
    /// credentials (see
    /// [`dangerously_allow_credentials_with_any_origin`](Self::dangerously_allow_credentials_with_any_origin)).
    pub fn allow_any_origin(mut self) -> Self {
        self.origins.any = true;
        self
    }

    /// Lets [`allow_any_origin`](Self::allow_any_origin) combine with
    /// [`allow_credentials`](Self::allow_credentials) by echoing every request origin
    /// except `null`, with `Vary: Origin`. **Any website can then make credentialed
    /// requests and read the responses**: use it only for APIs whose credentials are not
    /// cookies a browser sends by itself.
    pub fn dangerously_allow_credentials_with_any_origin(mut self) -> Self {
        self.dangerous_any_with_credentials = true;
        self
    }

    /// Limits the layer to requests matching these rules (for a preflight, a rule's methods
    /// are compared with the method it asks for). Other requests pass through untouched:
    /// no CORS headers, no `Vary`, and their `OPTIONS` preflights reach the inner service.
    /// In a policy given to [`CorsLayer::by_path`] the rules say which requests that policy
    /// covers; the first policy that covers a request applies. Default: every path.
    pub fn urls(mut self, rules: PathRules) -> Self {
        self.urls = Some(rules);
        self
    }

    /// The methods a preflight may ask for, sent as `Access-Control-Allow-Methods`. Names
    /// are case-sensitive, as in browsers (`patch` is not `PATCH`). `GET`, `HEAD` and
    /// `POST` need no listing. Replaces earlier calls. Default: `GET, HEAD, POST`.
    pub fn allow_methods<I, T>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.methods = ListOrAny::List(methods.into_iter().map(Into::into).collect());
        self
    }

    /// Allows any method with `Access-Control-Allow-Methods: *` (an error with credentials,
    /// where `*` is not a wildcard).
    pub fn allow_any_method(mut self) -> Self {
        self.methods = ListOrAny::Any;
        self
    }

    /// Allows any method by echoing `Access-Control-Request-Method` (works with
    /// credentials).
    pub fn mirror_request_method(mut self) -> Self {
        self.methods = ListOrAny::Mirror;
        self
    }

    /// The request headers a preflight may ask for (case-insensitive). The list is sent as
    /// `Access-Control-Allow-Headers` on a granted preflight that asked for headers (carried
    /// `Access-Control-Request-Headers`); a preflight that asked for none gets no
    /// `Access-Control-Allow-Headers`, since a browser only checks the headers it asked
    /// for. Replaces earlier calls. Default: none.
    pub fn allow_headers<I, T>(mut self, headers: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.headers = ListOrAny::List(headers.into_iter().map(Into::into).collect());
        self
    }

    /// Allows any request header with `Access-Control-Allow-Headers: *`. Browsers never let
    /// `*` cover `Authorization`, so when a preflight asks for it the answer is
    /// `*, authorization`. An error with credentials.
    pub fn allow_any_header(mut self) -> Self {
        self.headers = ListOrAny::Any;
        self
    }

    /// Allows any request header by echoing `Access-Control-Request-Headers` (works with
    /// credentials).
    pub fn mirror_request_headers(mut self) -> Self {
        self.headers = ListOrAny::Mirror;
        self
    }

    /// Response headers scripts may read, sent as `Access-Control-Expose-Headers` on actual
    /// responses. Adds to earlier calls. Default: none.
    pub fn expose_headers<I, T>(mut self, headers: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.expose.extend(headers.into_iter().map(Into::into));
        self
    }

    /// Exposes every response header: `*` without credentials; with credentials (where `*`
    /// is a literal name) the names of the response's own headers, built per response.
    ///
    /// With credentials, "every" means the headers present when this layer sees the
    /// response: a header that a layer outside this one adds, or that the server adds
    /// while writing the response (such as `date`), is not listed, so scripts cannot read
    /// it. Place the layers that add headers scripts need inside this one, or list those
    /// headers with [`expose_headers`](Self::expose_headers).
    pub fn expose_any_header(mut self) -> Self {
        self.expose_any = true;
        self
    }

    /// How long browsers may cache a preflight, sent as whole seconds in
    /// `Access-Control-Max-Age` (fractions are dropped; browsers cap it, Chromium at two
    /// hours). Default: not sent (browsers then use 5 seconds).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Sends `Access-Control-Allow-Credentials: true` with allowed origins, so browsers
    /// share responses to requests made with cookies. Default: `false`.
    pub fn allow_credentials(mut self, allow: bool) -> Self {
        self.credentials = allow;
        self
    }

    /// Answers `Access-Control-Request-Private-Network: true` on an allowed preflight with
    /// `Access-Control-Allow-Private-Network: true` (the Private Network Access draft, which
    /// current Chromium no longer sends). Default: `false`.
    pub fn allow_private_network(mut self, allow: bool) -> Self {
        self.private_network = allow;
        self
    }

    /// The status of an allowed preflight; must be 2xx. Default: `204 No Content`.
    pub fn preflight_status(mut self, status: StatusCode) -> Self {
        self.preflight_status = status;
        self
    }

    /// The status of a refused preflight (origin, method or headers not allowed), sent
    /// without CORS headers. Default: `403 Forbidden`.
    pub fn denied_preflight_status(mut self, status: StatusCode) -> Self {
        self.denied_status = status;
        self
    }

    /// Names why a refused preflight was refused in a [`REFUSAL_REASON`] response header,
    /// for development (see [the module docs](self#why-a-preflight-was-refused)). Default:
    /// `false`.
    pub fn explain_refusals(mut self, explain: bool) -> Self {
        self.explain_refusals = explain;
        self
    }

    /// Validates the configuration and prepares every header value.
    pub fn build(self) -> Result<CorsLayer, CorsConfigError> {
        Ok(CorsLayer {
            policies: Arc::new([Arc::new(self.build_config()?)]),
        })
    }

    fn build_config(self) -> Result<Config, CorsConfigError> {
        if self.credentials && self.origins.any && !self.dangerous_any_with_credentials {
            return Err(CorsConfigError::CredentialsWithAnyOrigin);
        }
        if !self.preflight_status.is_success() {
            return Err(CorsConfigError::PreflightStatusNotSuccess(
                self.preflight_status,
            ));
        }
        if self.denied_status.is_informational() {
            return Err(CorsConfigError::InvalidDeniedPreflightStatus(
                self.denied_status,
            ));
        }
        let origin = self.origins.build(self.credentials)?;

        let methods = match self.methods {
            ListOrAny::Any if self.credentials => {
                return Err(CorsConfigError::CredentialsWithAnyMethod);
            }
            ListOrAny::Any => MethodPolicy::Any,
            ListOrAny::Mirror => MethodPolicy::Mirror,
            ListOrAny::List(names) => {
                let mut methods = Vec::with_capacity(names.len());
                for name in names {
                    if name == "*" {
                        return Err(CorsConfigError::WildcardInList {
                            setting: "allow_methods",
                        });
                    }
                    let method = Method::from_bytes(name.as_bytes())
                        .map_err(|_| CorsConfigError::InvalidMethod(name.clone()))?;
                    if !methods.contains(&method) {
                        methods.push(method);
                    }
                }
                let value = join(methods.iter().map(Method::as_str));
                MethodPolicy::List { methods, value }
            }
        };

        let headers = match self.headers {
            ListOrAny::Any if self.credentials => {
                return Err(CorsConfigError::CredentialsWithAnyHeader);
            }
            ListOrAny::Any => HeaderPolicy::Any,
            ListOrAny::Mirror => HeaderPolicy::Mirror,
            ListOrAny::List(names) => {
                let names = header_names(names, "allow_headers")?;
                let value = join(names.iter().map(HeaderName::as_str));
                HeaderPolicy::List { names, value }
            }
        };

        let expose_names = header_names(self.expose, "expose_headers")?;
        if expose_names.contains(&header::SET_COOKIE) {
            return Err(CorsConfigError::ExposeSetCookie);
        }
        let expose = if self.expose_any {
            if self.credentials {
                Expose::ResponseNames
            } else {
                Expose::Value(STAR)
            }
        } else {
            join(expose_names.iter().map(HeaderName::as_str)).map_or(Expose::None, Expose::Value)
        };

        let max_age = self.max_age.map(|age| HeaderValue::from(age.as_secs()));

        let mut actual_vary = Vec::new();
        if !origin.is_static() {
            actual_vary.push("origin");
        }
        let mut preflight_vary = actual_vary.clone();
        // Whether a preflight is granted depends on what it asks for.
        preflight_vary.push("access-control-request-method");
        preflight_vary.push("access-control-request-headers");
        if self.private_network {
            preflight_vary.push("access-control-request-private-network");
        }

        Ok(Config {
            origin,
            urls: self.urls,
            methods,
            headers,
            expose,
            max_age,
            credentials: self.credentials,
            private_network: self.private_network,
            preflight_status: self.preflight_status,
            denied_status: self.denied_status,
            explain_refusals: self.explain_refusals,
            actual_vary: Vary::new(actual_vary),
            preflight_vary: Vary::new(preflight_vary),
        })
    }
}

/// Builds a [`CorsLayer`] of several policies chosen by path; see [`CorsLayer::by_path`].
#[derive(Debug, Default)]
pub struct CorsPoliciesBuilder {
    policies: Vec<CorsLayerBuilder>,
}

impl CorsPoliciesBuilder {
    /// Adds a policy, tried after the ones added before it. Its
    /// [`urls`](CorsLayerBuilder::urls) say which requests it covers; without `urls` it
    /// covers every path, so it is the fallback and must come last.
    ///
    /// ```
    /// use stopover::server::cors::{CorsConfigError, CorsLayer};
    /// use stopover::server::matcher::{PathMatcher, PathRules};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let admin = PathRules::new().with(PathMatcher::prefix("/admin/")?);
    /// // The fallback first would shadow the admin policy: refused when built.
    /// let shadowed = CorsLayer::by_path()
    ///     .policy(CorsLayer::builder().allow_any_origin())
    ///     .policy(CorsLayer::builder().urls(admin).allow_origin("https://admin.example"))
    ///     .build();
    /// assert!(matches!(
    ///     shadowed,
    ///     Err(CorsConfigError::UnreachablePolicy { index: 1, covered_by: 0 })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    pub fn policy(mut self, policy: CorsLayerBuilder) -> Self {
        self.policies.push(policy);
        self
    }

    /// Validates every policy and builds the layer.
    ///
    /// # Errors
    ///
    /// [`CorsConfigError::NoPolicies`] without a policy,
    /// [`CorsConfigError::UnreachablePolicy`] for a policy after one without `urls`, and
    /// [`CorsConfigError::Policy`] naming the position of an invalid policy and its error.
    pub fn build(self) -> Result<CorsLayer, CorsConfigError> {
        if self.policies.is_empty() {
            return Err(CorsConfigError::NoPolicies);
        }
        if let Some(covered_by) = self.policies.iter().position(|p| p.urls.is_none()) {
            if covered_by + 1 < self.policies.len() {
                return Err(CorsConfigError::UnreachablePolicy {
                    index: covered_by + 1,
                    covered_by,
                });
            }
        }
        let mut policies = Vec::with_capacity(self.policies.len());
        for (index, policy) in self.policies.into_iter().enumerate() {
            let config = policy
                .build_config()
                .map_err(|source| CorsConfigError::Policy {
                    index,
                    source: Box::new(source),
                })?;
            policies.push(Arc::new(config));
        }
        Ok(CorsLayer {
            policies: policies.into(),
        })
    }
}

fn header_names(
    names: Vec<String>,
    setting: &'static str,
) -> Result<Vec<HeaderName>, CorsConfigError> {
    let mut parsed = Vec::with_capacity(names.len());
    for name in names {
        if name == "*" {
            return Err(CorsConfigError::WildcardInList { setting });
        }
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| CorsConfigError::InvalidHeaderName { setting, name })?;
        if !parsed.contains(&header) {
            parsed.push(header);
        }
    }
    Ok(parsed)
}

/// Joins validated tokens into one list value; `None` for an empty list.
fn join<'a>(items: impl Iterator<Item = &'a str>) -> Option<HeaderValue> {
    let joined = items.collect::<Vec<_>>().join(", ");
    if joined.is_empty() {
        return None;
    }
    HeaderValue::from_str(&joined).ok()
}

#[derive(Debug, Clone)]
enum MethodPolicy {
    List {
        methods: Vec<Method>,
        value: Option<HeaderValue>,
    },
    Any,
    Mirror,
}

#[derive(Debug, Clone)]
enum HeaderPolicy {
    List {
        names: Vec<HeaderName>,
        value: Option<HeaderValue>,
    },
    Any,
    Mirror,
}

#[derive(Debug, Clone)]
enum Expose {
    None,
    Value(HeaderValue),
    ResponseNames,
}

/// One policy, with the requests it covers.
#[derive(Debug)]
struct Config {
    origin: OriginPolicy,
    urls: Option<PathRules>,
    methods: MethodPolicy,
    headers: HeaderPolicy,
    expose: Expose,
    max_age: Option<HeaderValue>,
    credentials: bool,
    private_network: bool,
    preflight_status: StatusCode,
    denied_status: StatusCode,
    explain_refusals: bool,
    actual_vary: Vary,
    preflight_vary: Vary,
}

/// A [`Layer`] that applies a CORS policy, or one of several chosen by path; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct CorsLayer {
    /// Tried in order; the first that covers a request applies.
    policies: Arc<[Arc<Config>]>,
}

impl CorsLayer {
    /// Starts a builder with the restrictive defaults listed in the [module docs](self).
    /// Alone it builds a layer of one policy; given to
    /// [`CorsPoliciesBuilder::policy`] it is one of several.
    pub fn builder() -> CorsLayerBuilder {
        CorsLayerBuilder {
            origins: OriginSpec::default(),
            dangerous_any_with_credentials: false,
            urls: None,
            methods: ListOrAny::List(vec!["GET".into(), "HEAD".into(), "POST".into()]),
            headers: ListOrAny::List(Vec::new()),
            expose: Vec::new(),
            expose_any: false,
            max_age: None,
            credentials: false,
            private_network: false,
            preflight_status: StatusCode::NO_CONTENT,
            denied_status: StatusCode::FORBIDDEN,
            explain_refusals: false,
        }
    }

    /// Starts a layer of several policies, each a [`CorsLayer::builder`] whose
    /// [`urls`](CorsLayerBuilder::urls) say which requests it covers, tried in the order
    /// they are added: the first that covers a request applies, alone, as in rack-cors'
    /// `resource` list. A request no policy covers passes through untouched (no CORS
    /// headers, no `Vary`, its preflight reaches the inner service), as outside the `urls`
    /// of a single policy; a last policy without `urls` is the fallback for every other
    /// path. A preflight is matched with the method it asks for, as with `urls`.
    ///
    /// Each policy adds the `Vary` names of its own answers. A browser cache keys a
    /// response by its URL, so one URL always meets the same policy and a cached response
    /// never crosses from one policy to another: split policies by path (and, if needed,
    /// method), not by other request headers.
    ///
    /// ```
    /// use stopover::server::cors::CorsLayer;
    /// use stopover::server::matcher::{PathMatcher, PathRules};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let tenant = |prefix: &str| -> Result<PathRules, Box<dyn std::error::Error>> {
    ///     Ok(PathRules::new().with(PathMatcher::prefix(prefix)?))
    /// };
    /// let cors = CorsLayer::by_path()
    ///     .policy(
    ///         CorsLayer::builder()
    ///             .urls(tenant("/acme/")?)
    ///             .allow_origin("https://acme.example")
    ///             .allow_credentials(true),
    ///     )
    ///     .policy(
    ///         CorsLayer::builder()
    ///             .urls(tenant("/globex/")?)
    ///             .allow_origin("https://globex.example")
    ///             .allow_methods(["GET", "PUT"]),
    ///     )
    ///     // Everything else: public, read-only.
    ///     .policy(CorsLayer::builder().allow_any_origin())
    ///     .build()?;
    /// # let _ = cors;
    /// # Ok(())
    /// # }
    /// ```
    pub fn by_path() -> CorsPoliciesBuilder {
        CorsPoliciesBuilder::default()
    }
}

impl<S> Layer<S> for CorsLayer {
    type Service = Cors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Cors {
            inner,
            policies: self.policies.clone(),
        }
    }
}

/// The service made by [`CorsLayer`].
#[derive(Debug, Clone)]
pub struct Cors<S> {
    inner: S,
    policies: Arc<[Arc<Config>]>,
}

fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Cors<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let preflight = is_preflight(request.method(), request.headers());
        let covering = {
            let requested = preflight
                .then(|| request.headers().get(header::ACCESS_CONTROL_REQUEST_METHOD))
                .flatten()
                .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
            let method = requested.as_ref().unwrap_or(request.method());
            let path = request.uri().path();
            self.policies
                .iter()
                .find(|config| config.covers(method, path))
        };
        let Some(config) = covering else {
            return ResponseFuture {
                kind: Kind::Passthrough {
                    future: self.inner.call(request),
                },
            };
        };
        let config = config.clone();
        if !request.headers().contains_key(header::ORIGIN) {
            return ResponseFuture {
                kind: Kind::Actual {
                    future: self.inner.call(request),
                    action: Action::NoOrigin,
                    pending: None,
                    response: None,
                    config,
                },
            };
        }
        // The predicates see the request's parts; taking them apart and back moves, never
        // copies, the headers.
        let (parts, body) = request.into_parts();
        let decision = match parts.headers.get(header::ORIGIN) {
            Some(origin) => config.origin.decide(origin, &parts),
            None => OriginDecision::Denied,
        };
        if preflight {
            let kind = match decision {
                OriginDecision::Pending(pending) => Kind::PreflightPending {
                    pending,
                    request: parts.headers,
                    config,
                },
                OriginDecision::Allowed(origin) => Kind::Preflight {
                    response: Some(config.preflight(&parts.headers, Some(origin))),
                },
                OriginDecision::Denied => Kind::Preflight {
                    response: Some(config.preflight(&parts.headers, None)),
                },
            };
            return ResponseFuture { kind };
        }
        let (action, pending) = match decision {
            OriginDecision::Allowed(origin) => (Action::Allowed(origin), None),
            OriginDecision::Denied => (Action::Denied, None),
            OriginDecision::Pending(pending) => (Action::Denied, Some(pending)),
        };
        ResponseFuture {
            kind: Kind::Actual {
                future: self.inner.call(Request::from_parts(parts, body)),
                action,
                pending,
                response: None,
                config,
            },
        }
    }
}

/// Why a preflight was refused, for the debug log and [`REFUSAL_REASON`].
#[derive(Debug, Clone)]
enum Refusal {
    Origin(HeaderValue),
    Method(HeaderValue),
    /// A requested header that is not allowed, or not a header name at all.
    Header(Vec<u8>),
}

impl Refusal {
    fn reason(&self) -> HeaderValue {
        let (what, value) = match self {
            Self::Origin(origin) => ("origin", origin.as_bytes()),
            Self::Method(method) => ("method", method.as_bytes()),
            Self::Header(name) => ("request header", name.as_slice()),
        };
        let mut reason = Vec::with_capacity(what.len() + value.len() + 20);
        reason.extend_from_slice(what.as_bytes());
        reason.extend_from_slice(b" \"");
        reason.extend_from_slice(value);
        reason.extend_from_slice(b"\" is not allowed");
        // The value came from a request header, so it is a valid header value already.
        HeaderValue::from_bytes(&reason).unwrap_or_else(|_| HeaderValue::from_static("refused"))
    }
}

impl Config {
    /// Whether this policy covers a request (for a preflight, `method` is the one it asks
    /// for).
    fn covers(&self, method: &Method, path: &str) -> bool {
        self.urls
            .as_ref()
            .is_none_or(|urls| urls.matches(method, path))
    }

    /// The answer to a preflight whose origin was allowed (with this
    /// `Access-Control-Allow-Origin`) or refused (`None`).
    fn preflight<B: Default>(
        &self,
        request: &HeaderMap,
        allow_origin: Option<HeaderValue>,
    ) -> Response<B> {
        let mut response = Response::new(B::default());
        let headers = response.headers_mut();
        headers.reserve(8);
        match self.grant(request, allow_origin, headers) {
            Ok(()) => *response.status_mut() = self.preflight_status,
            Err(refusal) => {
                tracing::debug!(
                    ?refusal,
                    origin = ?request.get(header::ORIGIN),
                    method = ?request.get(header::ACCESS_CONTROL_REQUEST_METHOD),
                    headers = ?request.get(header::ACCESS_CONTROL_REQUEST_HEADERS),
                    "CORS preflight refused"
                );
                headers.clear();
                if self.explain_refusals {
                    headers.insert(REFUSAL_REASON, refusal.reason());
                }
                *response.status_mut() = self.denied_status;
            }
        }
        self.preflight_vary.apply(response.headers_mut());
        response
    }

    /// Writes the headers that grant a preflight, or says why it is refused.
    fn grant(
        &self,
        request: &HeaderMap,
        allow_origin: Option<HeaderValue>,
        granted: &mut HeaderMap,
    ) -> Result<(), Refusal> {
        // A preflight carries both headers (see `is_preflight`).
        let empty = HeaderValue::from_static("");
        let allow_origin = allow_origin.ok_or_else(|| {
            Refusal::Origin(request.get(header::ORIGIN).unwrap_or(&empty).clone())
        })?;
        let requested_method = request
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .unwrap_or(&empty);
        let refused_method = || Refusal::Method(requested_method.clone());
        let method =
            Method::from_bytes(requested_method.as_bytes()).map_err(|_| refused_method())?;
        let safelisted = method == Method::GET || method == Method::HEAD || method == Method::POST;
        let allow_methods = match &self.methods {
            MethodPolicy::List { methods, value } => {
                if !safelisted && !methods.contains(&method) {
                    return Err(refused_method());
                }
                value.clone()
            }
            MethodPolicy::Any => Some(STAR),
            MethodPolicy::Mirror => Some(requested_method.clone()),
        };

        let mut allow_headers = None;
        let requested_headers = request.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS);
        if requested_headers.iter().next().is_some() {
            let mut authorization = false;
            for item in requested_headers
                .iter()
                .flat_map(|line| line.as_bytes().split(|&b| b == b','))
                .map(<[u8]>::trim_ascii)
                .filter(|item| !item.is_empty())
            {
                let refused = || Refusal::Header(item.to_vec());
                let name = HeaderName::from_bytes(item).map_err(|_| refused())?;
                authorization |= name == header::AUTHORIZATION;
                if let HeaderPolicy::List { names, .. } = &self.headers {
                    if !names.contains(&name) {
                        return Err(refused());
                    }
                }
            }
            allow_headers = match &self.headers {
                HeaderPolicy::List { value, .. } => value.clone(),
                HeaderPolicy::Any if authorization => {
                    Some(HeaderValue::from_static("*, authorization"))
                }
                HeaderPolicy::Any => Some(STAR),
                HeaderPolicy::Mirror => mirror(requested_headers),
            };
        }

        granted.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
        if self.credentials {
            granted.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
        }
        if let Some(value) = allow_methods {
            granted.insert(header::ACCESS_CONTROL_ALLOW_METHODS, value);
        }
        if let Some(value) = allow_headers {
            granted.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
        if let Some(value) = &self.max_age {
            granted.insert(header::ACCESS_CONTROL_MAX_AGE, value.clone());
        }
        if self.private_network
            && request
                .get(REQUEST_PRIVATE_NETWORK)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
        {
            granted.insert(ALLOW_PRIVATE_NETWORK, TRUE);
        }
        Ok(())
    }

    fn apply(&self, action: Action, headers: &mut HeaderMap) {
        // Most responses carry no CORS header of their own: one pass over the names is cheaper
        // than removing each owned header by hash.
        if headers
            .keys()
            .any(|name| name.as_str().starts_with("access-control-"))
        {
            for name in OWNED {
                headers.remove(name);
            }
        }
        match action {
            Action::Allowed(allow_origin) => {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
                if self.credentials {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE);
                }
                match &self.expose {
                    Expose::None => {}
                    Expose::Value(value) => {
                        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, value.clone());
                    }
                    Expose::ResponseNames => {
                        let names = join(
                            headers
                                .keys()
                                .filter(|name| !NOT_EXPOSED.contains(name))
                                .filter(|name| !name.as_str().starts_with("access-control-"))
                                .filter(|name| *name != header::VARY)
                                .map(HeaderName::as_str),
                        );
                        if let Some(names) = names {
                            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, names);
                        }
                    }
                }
            }
            Action::Denied => {}
            Action::NoOrigin => {
                if self.origin.is_static() {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, STAR);
                }
            }
        }
        self.actual_vary.apply(headers);
    }
}

/// Echoes `Access-Control-Request-Headers`; several lines are joined into one.
fn mirror(lines: header::GetAll<'_, HeaderValue>) -> Option<HeaderValue> {
    let mut iter = lines.iter();
    let first = iter.next()?;
    let rest: Vec<&HeaderValue> = iter.collect();
    if rest.is_empty() {
        return Some(first.clone());
    }
    let mut joined = first.as_bytes().to_vec();
    for line in rest {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(line.as_bytes());
    }
    HeaderValue::from_bytes(&joined).ok()
}

/// What to do with the response to an actual (non-preflight) request.
#[derive(Debug)]
enum Action {
    Allowed(HeaderValue),
    Denied,
    NoOrigin,
}

pin_project! {
    /// The response future of [`Cors`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Passthrough {
            #[pin]
            future: F,
        },
        Actual {
            #[pin]
            future: F,
            // Final unless `pending` is still to answer.
            action: Action,
            pending: Option<PendingOrigin>,
            // The inner response, held while `pending` answers.
            response: Option<Response<B>>,
            config: Arc<Config>,
        },
        Preflight {
            response: Option<Response<B>>,
        },
        PreflightPending {
            pending: PendingOrigin,
            request: HeaderMap,
            config: Arc<Config>,
        },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough { future } => future.poll(cx),
            KindProj::Actual {
                future,
                action,
                pending,
                response,
                config,
            } => {
                // The handler runs while the origin is decided; neither waits for the other.
                if let Some(decision) = pending {
                    if let Poll::Ready(allowed) = decision.poll(cx) {
                        *action = allowed.map_or(Action::Denied, Action::Allowed);
                        *pending = None;
                    }
                }
                if response.is_none() {
                    *response = Some(ready!(future.poll(cx))?);
                }
                if pending.is_some() {
                    return Poll::Pending;
                }
                let Some(mut response) = response.take() else {
                    panic!("CORS response future polled after completion");
                };
                let action = std::mem::replace(action, Action::Denied);
                config.apply(action, response.headers_mut());
                Poll::Ready(Ok(response))
            }
            KindProj::Preflight { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("CORS preflight future polled after completion"),
            },
            KindProj::PreflightPending {
                pending,
                request,
                config,
            } => {
                let allow_origin = ready!(pending.poll(cx));
                Poll::Ready(Ok(config.preflight(request, allow_origin)))
            }
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
