//! Server middleware as tower layers, for axum's `Router::layer`, `tower::ServiceBuilder` or a
//! bare hyper server.
//!
//! Every layer is generic over the inner service and the request and response body types, and
//! acts on responses rather than errors, so an error or timeout response made by an inner layer
//! still passes through every outer layer on its way out.
//!
//! Recommended order, outermost first:
//!
//! 1. forwarded: the scheme (and host, client address) from a trusted proxy, so every layer
//!    below sees the real request;
//! 2. CORS: outside the error and timeout layers, so their responses get CORS headers too;
//! 3. [`error`]: renders what the layers below produce (empty 4xx/5xx, [`HttpError`], timeouts,
//!    service errors, panics) as JSON;
//! 4. [`timeout`]: bounds the time to the response head;
//! 5. shield: keeps chosen handlers running when the client goes away;
//! 6. the handler.
//!
//! With axum, `Router::layer` wraps bottom-up, so the last `.layer(..)` call is the outermost
//! layer; with `ServiceBuilder` the first one is. Each `Router::layer` call wraps every route
//! again, so a whole stack is cheapest as one `ServiceBuilder` added in one call (the crate's
//! README shows it): 17 allocations per request instead of 36 for four separate calls
//! (`BENCHMARKS.md`).
//!
//! ```
//! use std::time::Duration;
//!
//! use axum::{Router, routing::get};
//! use stopover::server::{ErrorLayer, TimeoutLayer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(TimeoutLayer::builder(Duration::from_secs(30)).build()?) // inner
//!     .layer(ErrorLayer::new()); // outer
//! # Ok(())
//! # }
//! ```
//!
//! All `urls`, `ignore` and per-path rules use the one [`matcher`].

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod body;
pub mod cors;
pub mod error;
pub mod forwarded;
mod http_error;
pub mod matcher;
mod panic;
pub mod shield;
pub mod timeout;

pub use cors::CorsLayer;
pub use error::{ErrorBody, ErrorFormat, ErrorLayer, HttpError};
pub use forwarded::ForwardedLayer;
pub use matcher::{PathMap, PathMatcher, PathRule, PathRules};
pub use shield::ShieldLayer;
pub use timeout::TimeoutLayer;
