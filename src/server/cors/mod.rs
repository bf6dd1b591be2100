//! Cross-origin resource sharing: answers preflights and adds `Access-Control-*` headers to
//! every response on the paths it covers, whatever their status.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use http::Method;
//! use stopover::server::cors::CorsLayer;
//! use stopover::server::matcher::PathMatcher;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cors = CorsLayer::builder()
//!     .allow_origin("https://app.example")
//!     .allow_origin_regex(r"https://[a-z0-9-]+\.preview\.example")
//!     .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
//!     .allow_headers(["content-type", "authorization"])
//!     .expose_headers(["x-request-id"])
//!     .allow_credentials(true)
//!     .max_age(Duration::from_secs(600))
//!     .urls(PathMatcher::prefix("/api/")?)
//!     .build()?;
//!
//! let app: Router = Router::new()
//!     .route("/api/items", get(|| async { "[]" }))
//!     .layer(cors);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```
//!
//! # Compared with aiohttp-middlewares and tower-http
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

mod allow_origin;
mod builder;
mod policy;
#[cfg(test)]
mod properties;
mod service;
mod vary;

pub use self::builder::{CorsConfigError, CorsLayer, CorsLayerBuilder, CorsPoliciesBuilder};
pub use self::policy::REFUSAL_REASON;
pub use self::service::{Cors, ResponseFuture};
