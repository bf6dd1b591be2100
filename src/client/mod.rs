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

// The core, bottom up: vocabulary, messages, engine, the client. A core file never names a
// middleware (`.ci/layering.py` checks it).
mod attempt;
mod body;
mod error;
mod history;
mod origin;
mod redaction;

mod request;
mod response;

mod middleware;
mod redirect;
mod telemetry;
mod transport;

mod builder;
// `client/client.rs` holds `Client`, as reqwest's `async_impl/client.rs` does.
#[expect(
    clippy::module_inception,
    reason = "the file is named for the type it holds"
)]
mod client;
mod interop;
mod into_url;
mod proxy;
mod request_builder;
mod settings;
pub mod ssrf;

// The middlewares: each uses the core only, and only this facade names them.
pub mod digest;
pub mod logging;
pub mod retry;
pub mod token;

pub use attempt::{Attempt, Attempts, GaveUp};
pub use body::Body;
pub use builder::ClientBuilder;
pub use client::{Chain, Client, Next};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use history::Redirect;
pub use interop::HttpBody;
pub use into_url::IntoUrl;
pub use middleware::{FromFn, Middleware, Pending, from_fn};
pub use origin::{InvalidOrigin, Origin};
pub use proxy::Proxy;
pub use redaction::{QueryRedaction, REDACTED_HEADER, REDACTED_QUERY, RedactedHeaders, Redaction};
pub use request::Request;
pub use request_builder::RequestBuilder;
pub use response::Response;
#[cfg(any(feature = "rustls", feature = "rustls-ring", feature = "native-tls"))]
pub use settings::tls;
pub use telemetry::DURATION_BUCKETS;
