//! [`Client`]: the handle every request starts from, cheap to clone, sharing the connection
//! pool, the configuration and the middlewares; and the chain it carries.
//!
//! A client carries its middleware [`Chain`], whose middlewares get a [`Next`], which carries
//! the client again (a middleware sends requests of its own through it): the four types refer
//! to each other, so they are defined together here, and the chain's behaviour is in
//! `middleware.rs`, the requests' in `request_builder.rs`, the client's setup in `builder.rs`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use url::Url;

use super::error::{BoxError, Result};
use super::redaction::Redaction;
use super::request::Request;
use super::response::Response;
use super::ssrf;

/// A request's own [`RequestBuilder::body_limit`](super::RequestBuilder::body_limit), carried to the transport in its extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub(crate) u64);

tokio::task_local! {
    /// How many `send` calls are running inside each other in this task: a request sent from
    /// inside a middleware runs while the outer one is being polled.
    pub(crate) static NESTING: usize;
}

/// An HTTP client with a middleware chain. Cloning it is cheap and shares the connection pool,
/// the configuration and the middlewares.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<ClientRef>,
    /// How deeply nested the request was that this handle was given to: 0 for a client the
    /// caller built, the request's depth for the one a middleware gets from [`Next::client`].
    /// A request sent with it counts from there, even from a task the middleware spawned,
    /// where the task-local count does not reach.
    pub(crate) nesting: usize,
}

/// What every clone of a [`Client`] shares.
pub(crate) struct ClientRef {
    pub(crate) http: reqwest::Client,
    pub(crate) base_url: Option<Url>,
    pub(crate) default_headers: HeaderMap,
    pub(crate) timeout: Option<Duration>,
    pub(crate) head_timeout: Option<Duration>,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) max_redirects: usize,
    pub(crate) follow_redirects: bool,
    pub(crate) max_nesting: usize,
    pub(crate) chain: Chain,
    pub(crate) ssrf: Option<ssrf::Policy>,
    pub(crate) body_limit: u64,
    pub(crate) https_only: bool,
    pub(crate) span_redaction: Redaction,
    #[cfg(feature = "opentelemetry")]
    pub(crate) trace_exclude: Vec<url::Origin>,
}

impl Client {
    /// The base URL relative request URLs are joined to, if the client has one
    /// ([`ClientBuilder::base_url`](crate::client::ClientBuilder::base_url)).
    pub fn base_url(&self) -> Option<&Url> {
        self.inner.base_url.as_ref()
    }

    /// The client's own middleware list.
    pub fn middlewares(&self) -> &Chain {
        &self.inner.chain
    }

    pub(crate) fn max_redirects(&self) -> usize {
        self.inner.max_redirects
    }

    pub(crate) fn default_headers(&self) -> &HeaderMap {
        &self.inner.default_headers
    }

    pub(crate) fn span_redaction(&self) -> &Redaction {
        &self.inner.span_redaction
    }

    pub(crate) fn attempt_timeout(&self) -> Option<Duration> {
        self.inner.attempt_timeout
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url.as_ref().map(Url::as_str))
            .field("middlewares", &self.inner.chain.len())
            .field("max_redirects", &self.inner.max_redirects)
            .field("ssrf_guard", &self.inner.ssrf.is_some())
            .finish_non_exhaustive()
    }
}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// An ordered list of middlewares, cheap to clone (one `Arc`), built once and shared by every
/// request that uses it.
///
/// ```
/// use stopover::client::{from_fn, Chain, Next, Request};
///
/// let chain = Chain::new()
///     .with(from_fn(|req: Request, next: Next| async move { next.run(req).await }))
///     .with(from_fn(|req: Request, next: Next| async move { next.run(req).await }));
/// assert_eq!(chain.len(), 2);
/// assert!(Chain::new().is_empty());
/// ```
#[derive(Clone, Default)]
pub struct Chain {
    pub(crate) middlewares: Arc<[Arc<dyn DynMiddleware>]>,
}

/// The rest of the chain, ending in the transport.
///
/// It can be run any number of times, one after the other: clone the request first with
/// [`Request::try_clone`]. It also carries the client, for requests a middleware sends itself.
#[derive(Clone)]
pub struct Next {
    pub(crate) client: Client,
    pub(crate) chain: Chain,
    pub(crate) position: usize,
}

/// The object-safe form the chain stores: one boxed future per middleware call.
pub(crate) trait DynMiddleware: Send + Sync + 'static {
    fn call(self: Arc<Self>, req: Request, next: Next) -> BoxFuture<Result<Response>>;
    fn check(&self, client: &Client) -> std::result::Result<(), BoxError>;
}
