//! A CONNECT tunnel: bytes both ways, an idle watchdog, and what it carried.

use super::*;

/// What a tunnel carried.
#[derive(Debug, Default)]
pub(super) struct Tunneled {
    /// Bytes read from the upstream.
    pub(super) bytes_in: u64,
    /// Bytes written to the upstream.
    pub(super) bytes_out: u64,
    /// When a byte last moved, from the tunnel's start.
    pub(super) last_activity: Duration,
}

/// Copies bytes both ways until both directions end, or nothing moves for `idle` (zero =
/// never). One task, no split halves: tokio's bidirectional copy with a
/// [`TUNNEL_BUFFER`]-byte buffer per direction, the upstream side metered.
pub(super) async fn tunnel<C>(mut client: C, upstream: TcpStream, idle: Duration) -> Tunneled
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let mut upstream = Metered {
        inner: upstream,
        started,
        last_activity: Arc::new(AtomicU64::new(0)),
        bytes_in: 0,
        bytes_out: 0,
    };
    let last_activity = upstream.last_activity.clone();
    let copy = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut upstream,
        TUNNEL_BUFFER,
        TUNNEL_BUFFER,
    );
    let watchdog = async {
        if idle.is_zero() {
            return std::future::pending().await;
        }
        loop {
            let last = Duration::from_millis(last_activity.load(Ordering::Relaxed));
            let quiet = started.elapsed().saturating_sub(last);
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    };
    tokio::select! {
        _ = copy => {}
        _ = watchdog => {}
    }
    Tunneled {
        bytes_in: upstream.bytes_in,
        bytes_out: upstream.bytes_out,
        last_activity: Duration::from_millis(upstream.last_activity.load(Ordering::Relaxed)),
    }
}

/// The upstream side of a tunnel, counting bytes each way and noting when one last moved
/// (either way counts: both directions pass through it).
pub(super) struct Metered {
    pub(super) inner: TcpStream,
    pub(super) started: Instant,
    pub(super) last_activity: Arc<AtomicU64>,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
}

impl Metered {
    pub(super) fn touch(&self) {
        self.last_activity
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl AsyncRead for Metered {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.bytes_in += read as u64;
            self.touch();
        }
        polled
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(written)) = polled {
            if written > 0 {
                self.bytes_out += written as u64;
                self.touch();
            }
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
