//! [`CorsLayer`] and its builders: the configuration, checked when the layer is built.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode};

use super::allow_origin::OriginSpec;
use super::policy::{Config, Expose, HeaderPolicy, MethodPolicy, STAR, join};
use super::vary::Vary;
use crate::server::matcher::PathRules;

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

/// The allowed methods as configured: listed, any, or mirrored.
#[derive(Debug, Clone)]
enum MethodList {
    List(Vec<Method>),
    Any,
    Mirror,
}

/// Builds a [`CorsLayer`]; every input is checked by [`build`](Self::build).
pub struct CorsLayerBuilder {
    origins: OriginSpec,
    dangerous_any_with_credentials: bool,
    urls: Option<PathRules>,
    methods: MethodList,
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
                Box::pin(predicate(origin, parts)) as super::allow_origin::BoxedDecision
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
    ///
    /// `rules` is a [`PathMatcher`](crate::server::matcher::PathMatcher), a
    /// [`PathRule`](crate::server::matcher::PathRule) or a [`PathRules`]; each call adds its
    /// rules to the earlier ones, as every layer's `urls`, `paths` and `ignore` do. A first call
    /// with an empty [`PathRules`] covers nothing (aiohttp-middlewares' `urls=[]`).
    pub fn urls(mut self, rules: impl Into<PathRules>) -> Self {
        self.urls.get_or_insert_with(PathRules::new).append(rules);
        self
    }

    /// The methods a preflight may ask for, sent as `Access-Control-Allow-Methods`. Names
    /// are case-sensitive, as in browsers (`Method::from_bytes(b"patch")` is not
    /// `Method::PATCH`). `GET`, `HEAD` and `POST` need no listing. Replaces earlier calls.
    /// Default: `GET, HEAD, POST`.
    ///
    /// ```
    /// use http::Method;
    /// use stopover::server::cors::CorsLayer;
    ///
    /// let cors = CorsLayer::builder()
    ///     .allow_origin("https://app.example")
    ///     .allow_methods([Method::GET, Method::PUT, Method::DELETE])
    ///     .build()?;
    /// # let _ = cors;
    /// # Ok::<(), stopover::server::cors::CorsConfigError>(())
    /// ```
    pub fn allow_methods<I>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = Method>,
    {
        self.methods = MethodList::List(methods.into_iter().collect());
        self
    }

    /// Allows any method with `Access-Control-Allow-Methods: *` (an error with credentials,
    /// where `*` is not a wildcard).
    pub fn allow_any_method(mut self) -> Self {
        self.methods = MethodList::Any;
        self
    }

    /// Allows any method by echoing `Access-Control-Request-Method` (works with
    /// credentials).
    pub fn mirror_request_method(mut self) -> Self {
        self.methods = MethodList::Mirror;
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

    /// Names why a refused preflight was refused in a [`REFUSAL_REASON`](super::REFUSAL_REASON) response header,
    /// for development (see [the module docs](super#why-a-preflight-was-refused)). Default:
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

    pub(super) fn build_config(self) -> Result<Config, CorsConfigError> {
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
            MethodList::Any if self.credentials => {
                return Err(CorsConfigError::CredentialsWithAnyMethod);
            }
            MethodList::Any => MethodPolicy::Any,
            MethodList::Mirror => MethodPolicy::Mirror,
            MethodList::List(listed) => {
                let mut methods = Vec::with_capacity(listed.len());
                for method in listed {
                    if method.as_str() == "*" {
                        return Err(CorsConfigError::WildcardInList {
                            setting: "allow_methods",
                        });
                    }
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

/// A [`Layer`](tower_layer::Layer) that applies a CORS policy, or one of several chosen by path; see the
/// [module docs](super).
#[derive(Debug, Clone)]
pub struct CorsLayer {
    /// Tried in order; the first that covers a request applies.
    pub(super) policies: Arc<[Arc<Config>]>,
}

impl CorsLayer {
    /// Starts a builder with the restrictive defaults listed in the [module docs](super).
    /// Alone it builds a layer of one policy; given to
    /// [`CorsPoliciesBuilder::policy`] it is one of several.
    pub fn builder() -> CorsLayerBuilder {
        CorsLayerBuilder {
            origins: OriginSpec::default(),
            dangerous_any_with_credentials: false,
            urls: None,
            methods: MethodList::List(vec![Method::GET, Method::HEAD, Method::POST]),
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
    /// use http::Method;
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
    ///             .allow_methods([Method::GET, Method::PUT]),
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
