//! The client middleware chain: [`Middleware`], [`Next`], [`from_fn`] and [`Chain`].
//!
//! A middleware receives the request and the rest of the chain, and returns a response, exactly
//! like an aiohttp client middleware: it may change the request, answer by itself without
//! calling [`Next::run`], or call it several times (a retry, a challenge answer). Unlike
//! reqwest-middleware's, the chain runs once per redirect hop, so a middleware sees where every
//! hop goes, and [`Next::client`] gives it the client to send requests of its own.
//!
//! The first middleware added is the outermost: with `[a, b]`, `a` sees the request first and
//! the response last.
//!
//! ```
//! use stopover::client::{from_fn, Client, Next, Request};
//!
//! # fn build() -> Result<Client, stopover::client::Error> {
//! let client = Client::builder()
//!     .middleware(from_fn(|mut req: Request, next: Next| async move {
//!         let hop = http::HeaderValue::from(req.hop());
//!         req.headers_mut().insert("x-request-hop", hop);
//!         next.run(req).await
//!     }))
//!     .build()?;
//! # Ok(client)
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use super::client::{BoxFuture, Chain, Client, DynMiddleware, Next};
use super::error::{BoxError, Error, Result};
use super::request::Request;
use super::response::Response;
use super::transport::Wire;

/// A client middleware: an async function of the request and the rest of the chain.
///
/// Implement it with an `async fn`:
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use stopover::client::{Middleware, Next, Request, Response, Result};
///
/// struct CountRequests(AtomicUsize);
///
/// impl Middleware for CountRequests {
///     async fn handle(&self, req: Request, next: Next) -> Result<Response> {
///         self.0.fetch_add(1, Ordering::Relaxed);
///         next.run(req).await
///     }
/// }
/// ```
pub trait Middleware: Send + Sync + 'static {
    /// Handles one request: call `next.run(req)` to pass it on, or answer without it.
    fn handle(&self, req: Request, next: Next) -> impl Future<Output = Result<Response>> + Send;

    /// Checks that the middleware can work on `client`, the client it was added to with
    /// [`ClientBuilder::middleware`](super::ClientBuilder::middleware); called once by
    /// [`ClientBuilder::build`](super::ClientBuilder::build), which fails with an
    /// [`ErrorKind::Builder`](super::ErrorKind::Builder) error whose source is the error
    /// returned here. A middleware in a request's own list is not checked this way: it meets
    /// the same condition when it handles the request.
    ///
    /// Default: every client is accepted.
    fn check(&self, client: &Client) -> std::result::Result<(), BoxError> {
        let _ = client;
        Ok(())
    }
}

impl<M: Middleware> DynMiddleware for M {
    fn call(self: Arc<Self>, req: Request, next: Next) -> BoxFuture<Result<Response>> {
        Box::pin(async move { self.handle(req, next).await })
    }

    fn check(&self, client: &Client) -> std::result::Result<(), BoxError> {
        Middleware::check(self, client)
    }
}

/// A middleware made from an async closure by [`from_fn`].
#[derive(Clone)]
pub struct FromFn<F> {
    f: F,
}

/// Makes a middleware of an async closure taking the request and the rest of the chain.
///
/// ```
/// use stopover::client::{from_fn, Next, Request};
///
/// let log = from_fn(|req: Request, next: Next| async move {
///     println!("{} {} (hop {})", req.method(), req.url(), req.hop());
///     let response = next.run(req).await?;
///     println!("-> {}", response.status());
///     Ok(response)
/// });
/// # let _ = log;
/// ```
pub fn from_fn<F, Fut>(f: F) -> FromFn<F>
where
    F: Fn(Request, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response>> + Send + 'static,
{
    FromFn { f }
}

impl<F, Fut> Middleware for FromFn<F>
where
    F: Fn(Request, Next) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response>> + Send + 'static,
{
    fn handle(&self, req: Request, next: Next) -> impl Future<Output = Result<Response>> + Send {
        (self.f)(req, next)
    }
}

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFn").finish_non_exhaustive()
    }
}

impl Chain {
    /// An empty chain: requests go straight to the transport.
    pub fn new() -> Self {
        Chain {
            middlewares: Arc::new([]),
        }
    }

    /// The chain with `middleware` added as the innermost one.
    pub fn with<M: Middleware>(self, middleware: M) -> Self {
        self.with_arc(Arc::new(middleware))
    }

    /// The chain with a middleware already behind an `Arc` added as the innermost one, for a
    /// middleware instance shared with other chains (its state is shared too).
    pub fn with_arc<M: Middleware>(self, middleware: Arc<M>) -> Self {
        let mut middlewares = self.middlewares.to_vec();
        middlewares.push(middleware);
        Chain {
            middlewares: middlewares.into(),
        }
    }

    /// This chain followed by every middleware of `inner`.
    pub fn then(&self, inner: &Chain) -> Chain {
        if inner.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return inner.clone();
        }
        let middlewares: Vec<_> = self
            .middlewares
            .iter()
            .chain(inner.middlewares.iter())
            .cloned()
            .collect();
        Chain {
            middlewares: middlewares.into(),
        }
    }

    /// How many middlewares the chain holds.
    pub fn len(&self) -> usize {
        self.middlewares.len()
    }

    /// True when the chain holds no middleware.
    pub fn is_empty(&self) -> bool {
        self.middlewares.is_empty()
    }

    /// Runs every middleware's [`Middleware::check`] against `client`, outermost first.
    pub(crate) fn check(&self, client: &Client) -> Result<()> {
        for (position, middleware) in self.middlewares.iter().enumerate() {
            middleware.check(client).map_err(|source| {
                // The source says what to change: it belongs in the message a user reads.
                Error::builder(format!(
                    "middleware {} of the client's list cannot work on this client: {source}",
                    position + 1
                ))
                .with_source(source)
            })?;
        }
        Ok(())
    }
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain")
            .field("len", &self.middlewares.len())
            .finish()
    }
}

impl Next {
    pub(crate) fn new(client: Client, chain: Chain) -> Self {
        Next {
            client,
            chain,
            position: 0,
        }
    }

    /// Passes the request to the rest of the chain and, after it, the transport.
    pub fn run(&self, req: Request) -> Pending {
        let inner = match self.chain.middlewares.get(self.position) {
            Some(middleware) => {
                let rest = Next {
                    client: self.client.clone(),
                    chain: self.chain.clone(),
                    position: self.position + 1,
                };
                PendingInner::Middleware {
                    future: Arc::clone(middleware).call(req, rest),
                }
            }
            None => PendingInner::Transport {
                future: self.client.clone().transport(req),
            },
        };
        Pending { inner }
    }

    /// The client this chain belongs to, for requests the middleware sends itself.
    ///
    /// Such a request runs the client's own middleware list unless it picks another one with
    /// [`RequestBuilder::no_middleware`](super::RequestBuilder::no_middleware) or
    /// [`RequestBuilder::middlewares`](super::RequestBuilder::middlewares). A chain that keeps
    /// sending requests from inside itself fails with
    /// [`ErrorKind::Recursion`](super::ErrorKind::Recursion) once the nesting passes the
    /// client's limit; this client carries the depth of the request, so that requests sent
    /// with it from a task the middleware spawns count as nested too.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// How many middlewares are left before the transport.
    pub fn remaining(&self) -> usize {
        self.chain.len() - self.position
    }
}

impl fmt::Debug for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("remaining", &self.remaining())
            .finish()
    }
}

pin_project! {
    /// The future of [`Next::run`]: the rest of the chain's response.
    ///
    /// A middleware's future is boxed (the chain holds middlewares of any type); the last
    /// step, the transport, is held inline.
    #[must_use = "futures do nothing unless polled"]
    pub struct Pending {
        #[pin]
        inner: PendingInner,
    }
}

pin_project! {
    #[project = PendingProj]
    enum PendingInner {
        Middleware { future: BoxFuture<Result<Response>> },
        Transport { #[pin] future: Wire },
    }
}

impl Future for Pending {
    type Output = Result<Response>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().inner.project() {
            PendingProj::Middleware { future } => future.as_mut().poll(cx),
            PendingProj::Transport { future } => future.poll(cx),
        }
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}
