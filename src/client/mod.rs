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
//!
//! # Making a middleware: one way for all
//!
//! Every built-in middleware is made with `X::new(..)`, given what it cannot do without (a
//! [`retry::RetryPolicy`], a [`token::TokenSource`], Digest credentials), then configured with
//! setters that cannot fail. A value that can be wrong is checked where it is made, by its own
//! type, before it reaches the middleware: [`Origin::parse`] for a credential's scope,
//! [`RetryPolicy::builder()...build()`](retry::RetryPolicyBuilder::build) for a policy, `url::Url`
//! for an endpoint, or a constructor that takes text and returns `Result`
//! ([`logging::LogToService::new`]). So a chain of setters reads top to bottom with no `?` in
//! the middle, and an error names the value that was wrong. Whether a middleware fits the
//! client it is added to (a token needs a scope) is checked once by
//! [`ClientBuilder::build`], through [`Middleware::check`].
//!
//! ```
//! use std::time::Duration;
//! use stopover::client::digest::DigestAuth;
//! use stopover::client::logging::Logging;
//! use stopover::client::retry::{Retry, RetryPolicy};
//! use stopover::client::token::{source_fn, Token, TokenAuth};
//! use stopover::client::{Client, Origin};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let api = Origin::parse("https://api.example")?;
//! let policy = RetryPolicy::builder().max_attempts(4).build()?;
//! let client = Client::builder()
//!     .middleware(Logging::new().headers(true))
//!     .middleware(Retry::new(policy))
//!     .middleware(TokenAuth::new(source_fn(|_| async { Ok(Token::new("t")) })).origins([api]))
//!     .middleware(DigestAuth::new("user", "secret").preemptive(false))
//!     .build()?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! # How the module is laid out
//!
//! The core is what every request passes through, read bottom up: the vocabulary middlewares
//! share ([`Attempt`], [`Attempts`] and [`GaveUp`], [`Budget`], [`Classifier`] and [`Failure`], [`Origin`],
//! [`Redirect`], [`Redaction`]),
//! the error, the request and response, the chain, the redirect loop, the transport step and
//! its settings, the telemetry, and the SSRF guard the transport owns. The middlewares
//! ([`retry`], [`breaker`], [`limit`], [`bulkhead`], [`hedge`], [`logging`], [`token`],
//! [`digest`]) each use the core only and never name each other: what two of them must agree
//! on (how many attempts a request took, how to redact a URL, which outcomes are failures:
//! the [`Classifier`]) is core vocabulary, so a middleware of your own speaks it as well as
//! the built-in ones. [`crate::resilience`] composes the resilience middlewares into the
//! standard pipeline.

// The core, bottom up: vocabulary, messages, engine, the client. A core file never names a
// middleware (`.ci/layering.py` checks it).
mod attempt;
mod body;
mod budget;
mod classify;
mod error;
mod history;
mod origin;
mod redaction;

mod request;
mod response;

mod middleware;
mod redirect;
pub mod telemetry;
mod transport;

mod builder;
// `client/client.rs` holds `Client`, as reqwest's `async_impl/client.rs` does.
#[expect(
    clippy::module_inception,
    reason = "the file is named for the type it holds"
)]
mod client;
pub mod interop;
mod into_url;
#[cfg(feature = "multipart")]
#[cfg_attr(docsrs, doc(cfg(feature = "multipart")))]
pub mod multipart;
mod overrides;
mod proxy;
mod request_builder;
mod settings;
pub mod ssrf;

// The middlewares: each uses the core only, and only this facade names them.
pub mod breaker;
pub mod bulkhead;
pub mod digest;
pub mod hedge;
pub mod limit;
pub mod logging;
pub mod retry;
pub mod token;

pub use attempt::{Attempt, Attempts, GaveUp};
pub use body::Body;
pub use budget::Budget;
pub use builder::ClientBuilder;
pub use classify::{
    Classifier, DEFAULT_FAILURE_STATUSES, Failure, IDEMPOTENCY_KEY, parse_retry_after,
};
pub use client::{Chain, Client, Next};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use history::Redirect;
pub use interop::HttpBody;
pub use into_url::IntoUrl;
pub use middleware::{FromFn, Middleware, Pending, from_fn};
pub use origin::{InvalidOrigin, Origin};
pub use proxy::Proxy;
pub use redaction::{QueryRedaction, REDACTED_HEADER, REDACTED_QUERY, RedactedHeaders, Redaction};
pub use redirect::RedirectPolicy;
pub use request::Request;
pub use request_builder::RequestBuilder;
pub use response::Response;
#[cfg(any(feature = "rustls", feature = "rustls-ring", feature = "native-tls"))]
pub use settings::tls;
pub use telemetry::DURATION_BUCKETS;
