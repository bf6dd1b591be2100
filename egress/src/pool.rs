//! Idle upstream connections for plain HTTP, kept by the exact socket address they were opened
//! to.
//!
//! A request takes a pooled connection only to an address that passed the policy for that very
//! request (its name resolved and judged again), so reuse never reaches an address the request
//! was not allowed to reach, and a name that moves elsewhere stops getting the old connections.
//! A connection goes back to the pool when the answer's body has been read to its end, and
//! only if the upstream has not closed it; idle connections are dropped after
//! [`IDLE_TIMEOUT`], and at most [`MAX_IDLE_PER_ADDR`] per address and [`MAX_IDLE`] in all are
//! kept.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use tokio::sync::OwnedSemaphorePermit;

/// How long an idle connection is kept (Go's `http.DefaultTransport` keeps them 90 seconds).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per address by default (`transport_max_idle_conns_per_host`).
pub const MAX_IDLE_PER_ADDR: usize = 32;
/// Idle connections kept in all by default (`transport_max_idle_conns`).
pub const MAX_IDLE: usize = 512;

/// What goes upstream: the client's body, or nothing (a bodyless request sent again).
pub type ClientBody = http_body_util::Either<Incoming, http_body_util::Empty<Bytes>>;

type Sender = SendRequest<ClientBody>;

/// The idle connections.
pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<(Sender, Instant)>>>,
    max_total: usize,
    max_per_addr: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool keeping at most `max_total` idle connections, `max_per_addr` per address (zero
    /// for either: the default).
    pub fn new(max_total: usize, max_per_addr: usize) -> Self {
        let or = |value: usize, default| if value == 0 { default } else { value };
        Pool {
            idle: Mutex::new(HashMap::new()),
            max_total: or(max_total, MAX_IDLE),
            max_per_addr: or(max_per_addr, MAX_IDLE_PER_ADDR),
        }
    }

    /// An idle, open connection to the first of `targets` that has one.
    pub fn take(&self, targets: &[SocketAddr]) -> Option<(Sender, SocketAddr)> {
        let mut idle = match self.idle.lock() {
            Ok(idle) => idle,
            Err(poisoned) => poisoned.into_inner(),
        };
        for addr in targets {
            let Some(list) = idle.get_mut(addr) else {
                continue;
            };
            while let Some((sender, since)) = list.pop() {
                // Not yet ready is fine: the connection task may not have run since the body
                // ended; the caller waits for `ready()`.
                if since.elapsed() < IDLE_TIMEOUT && !sender.is_closed() {
                    return Some((sender, *addr));
                }
            }
        }
        None
    }

    /// Gives a connection back after its answer was read to the end.
    pub fn give_back(&self, addr: SocketAddr, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = match self.idle.lock() {
            Ok(idle) => idle,
            Err(poisoned) => poisoned.into_inner(),
        };
        idle.retain(|_, list| {
            list.retain(|(sender, since)| since.elapsed() < IDLE_TIMEOUT && !sender.is_closed());
            !list.is_empty()
        });
        let total: usize = idle.values().map(Vec::len).sum();
        let list = idle.entry(addr).or_default();
        if list.len() < self.max_per_addr && total < self.max_total {
            list.push((sender, Instant::now()));
        }
    }
}

/// An upstream answer's body that gives its connection back to the pool at its end, and fails
/// (closing both connections) if it is not through by its deadline (`write_timeout`).
pub struct PooledBody {
    inner: Incoming,
    give_back: Option<(Arc<Pool>, SocketAddr, Sender)>,
    deadline: tokio::time::Instant,
    /// A timer for the deadline, made only once the body has had to wait: a timer per answer
    /// costs a visible latency tail on fast upstreams.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The request's `--max-concurrent-requests` slot, held until the answer is written out.
    _permit: Option<OwnedSemaphorePermit>,
}

/// The answer was not written out within `write_timeout`.
#[derive(Debug)]
pub struct WriteTimeout;

impl std::fmt::Display for WriteTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the answer was not written within write_timeout")
    }
}

impl std::error::Error for WriteTimeout {}

impl PooledBody {
    /// Wraps `inner`, to be read out by `deadline`, holding `permit` until then; the
    /// connection goes back at once when the body is already empty.
    pub fn new(
        inner: Incoming,
        pool: Arc<Pool>,
        addr: SocketAddr,
        sender: Sender,
        deadline: tokio::time::Instant,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        if inner.is_end_stream() {
            pool.give_back(addr, sender);
            return PooledBody {
                inner,
                give_back: None,
                deadline,
                timer: None,
                _permit: permit,
            };
        }
        PooledBody {
            inner,
            give_back: Some((pool, addr, sender)),
            deadline,
            timer: None,
            _permit: permit,
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let cut = |this: &mut Self| {
            // The upstream connection is dropped with `give_back`, unfinished.
            this.give_back = None;
            Poll::Ready(Some(Err(Box::new(WriteTimeout) as Self::Error)))
        };
        if tokio::time::Instant::now() >= this.deadline {
            return cut(this);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending() {
            let deadline = this.deadline;
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.as_mut().poll(cx).is_ready() {
                return cut(this);
            }
            return Poll::Pending;
        }
        // The end is either the last frame (hyper's server stops polling a body whose length
        // it knows once it is complete) or the end of the stream.
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            _ => false,
        };
        if ended {
            if let Some((pool, addr, sender)) = this.give_back.take() {
                pool.give_back(addr, sender);
            }
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
