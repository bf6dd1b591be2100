//! The proxy: CONNECT tunnels and absolute-form plain HTTP, each judged by the ACL (the host
//! name as requested) and by the address policy (every address the name resolves to), then
//! connected to exactly an address that passed.
//!
//! Per request: the limits admit it; the destination is parsed and normalized; the ACL decides
//! for the client's role; the name is resolved once and each address judged in order (the
//! proxy's own listening addresses are refused on its port); the addresses that passed are
//! tried in order within `--timeout`. A CONNECT answers `200` only once the upstream socket is
//! open, then copies bytes both ways through fixed 16 KiB buffers until both sides close or the
//! tunnel is idle for `idle_timeout`. A plain HTTP request is written on an idle connection to
//! an address that passed for this very request (see `pool.rs`) or on a new one, with its
//! hop-by-hop and `X-Smokescreen-*` headers removed, and the answer streams back without
//! `X-Smokescreen-Error`.
//!
//! This file holds the flow; `decide.rs` the ACL, resolution, address judging and dialing;
//! `answer.rs` smokescreen's answers and log lines; `headers.rs` what changes between the
//! client's request and the upstream's; `tunnel.rs` the CONNECT byte copy.

mod answer;
mod decide;
mod headers;
mod tunnel;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::acl::{self, Verdict};
use crate::dns::{ResolveError, Resolver};
use crate::drain::Tracker;
use crate::limits::{Limits, Overload};
use crate::log::{self, CANONICAL_PROXY_DECISION, Fields, Level};
use crate::metrics::Metrics;
use crate::pool::{ClientBody, Pool, PooledBody};
use crate::settings::{Network, Settings};

use answer::{Context, Failure, go_error_text, plain_error};
use decide::{Decision, Outcome, split_host_port, split_host_port_or};
use headers::{outgoing_request, replayable, strip};
use tunnel::{Tunneled, tunnel};

/// The body of every answer: made here, or streamed from the upstream.
pub type ProxyBody = Either<Either<Full<Bytes>, Empty<Bytes>>, PooledBody>;

const ERROR_HEADER: &str = "x-smokescreen-error";
const ROLE_HEADER: &str = "x-smokescreen-role";
const TRACE_HEADER: &str = "x-smokescreen-trace-id";
const UPSTREAM_PROXY_HEADER: &str = "x-upstream-https-proxy";

/// Bytes buffered per direction of a tunnel.
const TUNNEL_BUFFER: usize = 16 * 1024;
/// The largest request or response head read (hyper's read buffer), as Go's 1 MB
/// `DefaultMaxHeaderBytes` bounds smokescreen's.
const MAX_HEAD_BYTES: usize = 1 << 20;

/// Who the client is, from its TLS certificate.
#[derive(Debug, Clone, Default)]
pub struct ClientIdentity {
    /// The certificate's subject CommonName, when a certificate was given.
    pub common_name: Option<String>,
    /// The certificate's first OrganizationalUnit.
    pub organizational_unit: Option<String>,
}

/// The running proxy's shared state.
#[derive(Debug)]
pub struct Proxy {
    settings: Settings,
    listening: Vec<SocketAddr>,
    limits: Limits,
    tunnels: Arc<Tracker>,
    metrics: Option<Arc<Metrics>>,
    pool: Arc<Pool>,
}

impl Proxy {
    /// A proxy listening on `listening` (used to refuse connections back to itself), counting
    /// into `metrics` when given.
    pub fn new(
        settings: Settings,
        listening: Vec<SocketAddr>,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        let limits = Limits::new(
            settings.max_concurrent_requests,
            settings.max_request_rate,
            settings.max_request_burst,
            settings.max_concurrent_connect_tunnels,
        );
        let pool = Arc::new(Pool::new(
            settings.max_idle_conns,
            settings.max_idle_conns_per_host,
        ));
        Proxy {
            settings,
            listening,
            limits,
            tunnels: Arc::new(Tracker::default()),
            metrics,
            pool,
        }
    }

    fn count(&self, name: &'static str, labels: &[(&str, &str)]) {
        if let Some(metrics) = &self.metrics {
            metrics.incr(name, labels);
        }
    }

    /// CONNECT tunnels open now.
    pub fn tunnels_open(&self) -> usize {
        self.tunnels.count()
    }

    /// Resolves once every tunnel has closed.
    pub async fn tunnels_closed(&self) {
        self.tunnels.idle().await;
    }

    /// Serves one client connection until it closes, or until `shutdown` turns true (then the
    /// request in progress finishes and the connection closes).
    pub async fn serve_connection<I>(
        self: Arc<Self>,
        io: I,
        peer: SocketAddr,
        identity: ClientIdentity,
        mut shutdown: watch::Receiver<bool>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let proxy = self.clone();
        let identity = Arc::new(identity);
        let service = hyper::service::service_fn(move |request| {
            let proxy = proxy.clone();
            let identity = identity.clone();
            async move { Ok::<_, Infallible>(proxy.handle(request, peer, &identity).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .max_buf_size(MAX_HEAD_BYTES)
            .header_read_timeout(self.settings.read_header_timeout);
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
        connection.as_mut().graceful_shutdown();
        let _ = connection.await;
    }

    async fn handle(
        self: &Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
        identity: &ClientIdentity,
    ) -> Response<ProxyBody> {
        let permit = match self.limits.admit() {
            Ok(permit) => permit,
            Err(Overload::Rate) => {
                self.count("requests_rate_limited", &[]);
                return plain_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Proxy rate limit exceeded. Please retry later.",
                );
            }
            Err(Overload::Concurrency) => {
                self.count("requests_concurrency_limited", &[]);
                return plain_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Proxy overloaded. Please retry later.",
                );
            }
        };
        if request.method() == Method::CONNECT {
            self.connect(request, peer, identity).await
        } else if request.uri().scheme().is_some() {
            // smokescreen holds a plain request's slot until its answer is written out.
            self.forward(request, peer, identity, permit).await
        } else {
            let mut response = plain_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "This is a proxy server. Does not respond to non-proxy requests.",
            );
            strip(response.headers_mut(), &[]);
            response
        }
    }

    async fn connect(
        self: &Arc<Self>,
        mut request: Request<Incoming>,
        peer: SocketAddr,
        identity: &ClientIdentity,
    ) -> Response<ProxyBody> {
        let requested_host = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let mut ctx = Context::new("connect", &requested_host, peer, identity, &request);
        let destination = match split_host_port(&requested_host) {
            Ok(destination) => destination,
            Err(why) => return self.deny(&mut ctx, None, why, true),
        };
        let decision = self.decide(&mut ctx, &request, &destination).await;
        let targets = match decision {
            Outcome::Allowed(targets) => targets,
            Outcome::Denied(decision, why) => {
                return self.deny(&mut ctx, Some(decision), why, true);
            }
            Outcome::Failed(decision, failure) => {
                return self.fail(&mut ctx, Some(decision), failure, true);
            }
        };
        // smokescreen writes the CONNECT decision line before it dials.
        ctx.log_decision(None);
        let Some(slot) = self.limits.open_tunnel() else {
            self.count("tunnels_concurrency_limited", &[]);
            return self.fail(&mut ctx, None, Failure::TunnelLimit, true);
        };
        let upstream = match self.dial(&mut ctx, &targets).await {
            Ok((stream, _)) => stream,
            Err(failure) => return self.fail(&mut ctx, None, failure, true),
        };
        let idle = self.settings.idle_timeout;
        let upgrade = hyper::upgrade::on(&mut request);
        let open = self.tunnels.enter();
        let mut fields = ctx.fields.clone();
        for decided in ["content_length", "status_code"] {
            fields.remove(decided);
        }
        tokio::spawn(async move {
            let _slot = slot;
            let _open = open;
            let started = SystemTime::now();
            let (outcome, error) = match upgrade.await {
                Ok(upgraded) => (
                    tunnel(TokioIo::new(upgraded), upstream, idle).await,
                    String::new(),
                ),
                Err(e) => (Tunneled::default(), e.to_string()),
            };
            // smokescreen's line when a tunnel's upstream connection closes.
            let end = SystemTime::now();
            fields.insert("bytes_in".into(), outcome.bytes_in.into());
            fields.insert("bytes_out".into(), outcome.bytes_out.into());
            fields.insert("end_time".into(), log::rfc3339(end, true).into());
            let duration = end.duration_since(started).unwrap_or_default();
            fields.insert("duration".into(), duration.as_secs_f64().into());
            fields.insert("error".into(), error.into());
            fields.insert(
                "last_activity".into(),
                log::rfc3339(started + outcome.last_activity, true).into(),
            );
            log::emit(Level::Info, "CANONICAL-PROXY-CN-CLOSE", fields);
        });
        Response::new(Either::Left(Either::Right(Empty::new())))
    }

    async fn forward(
        self: &Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
        identity: &ClientIdentity,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Response<ProxyBody> {
        let started = Instant::now();
        let authority = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let mut ctx = Context::new("http", &authority, peer, identity, &request);
        if request.uri().scheme_str() != Some("http") {
            let why = format!(
                "unsupported scheme {:?}: only http:// URLs are forwarded, use CONNECT for https",
                request.uri().scheme_str().unwrap_or_default()
            );
            return self.deny(&mut ctx, None, why, false);
        }
        let destination = match split_host_port_or(&authority, 80) {
            Ok(destination) => destination,
            Err(why) => return self.deny(&mut ctx, None, why, false),
        };
        let targets = match self.decide(&mut ctx, &request, &destination).await {
            Outcome::Allowed(targets) => targets,
            Outcome::Denied(decision, why) => {
                return self.deny(&mut ctx, Some(decision), why, false);
            }
            Outcome::Failed(decision, failure) => {
                return self.fail(&mut ctx, Some(decision), failure, false);
            }
        };
        let outgoing = match outgoing_request(request, &authority) {
            Ok(outgoing) => outgoing,
            Err(why) => return self.deny(&mut ctx, None, why, false),
        };
        match self.exchange(&mut ctx, &targets, outgoing).await {
            Ok((mut response, sender, addr)) => {
                // smokescreen removes its error header from answers; its trace header goes too,
                // so an upstream cannot plant either in the client's logs.
                strip(response.headers_mut(), &[ERROR_HEADER, TRACE_HEADER]);
                *response.version_mut() = http::Version::HTTP_11;
                let length = response
                    .headers()
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(-1);
                ctx.fields.insert("content_length".into(), length.into());
                ctx.log_decision(None);
                let pool = self.pool.clone();
                let deadline =
                    tokio::time::Instant::from_std(started) + self.settings.write_timeout;
                response.map(|body| {
                    Either::Right(PooledBody::new(body, pool, addr, sender, deadline, permit))
                })
            }
            Err(failure) => self.fail(&mut ctx, None, failure, false),
        }
    }

    /// Sends a plain HTTP request on an idle connection to one of `targets`, or on a new one;
    /// the answer's head, with the connection and the address it goes to.
    async fn exchange(
        &self,
        ctx: &mut Context,
        targets: &[SocketAddr],
        outgoing: Request<Incoming>,
    ) -> Result<(Response<Incoming>, SendRequest<ClientBody>, SocketAddr), Failure> {
        let mut outgoing = outgoing.map(Either::Left);
        let read_timeout = self.settings.read_timeout;
        let timed_out = || {
            Failure::Timeout(format!(
                "Timed out connecting to remote host: no answer within {}",
                crate::duration::format(read_timeout)
            ))
        };
        let failed =
            |e: hyper::Error| Failure::Connect(format!("Failed to connect to remote host: {e}"));
        let pooled = match self.pool.take(targets) {
            Some((mut sender, addr)) => {
                let ready = tokio::time::timeout(Duration::from_secs(1), sender.ready()).await;
                matches!(ready, Ok(Ok(()))).then_some((sender, addr))
            }
            None => None,
        };
        if let Some((mut sender, addr)) = pooled {
            // An upstream may close an idle connection just as it is reused. A request that was
            // not sent, or that has no body and may be repeated, then goes on a new connection
            // (as Go's transport retries it).
            let replay = replayable(&outgoing);
            match tokio::time::timeout(read_timeout, sender.try_send_request(outgoing)).await {
                Err(_) => return Err(timed_out()),
                Ok(Ok(response)) => return Ok((response, sender, addr)),
                Ok(Err(mut e)) => match (e.take_message(), replay) {
                    (Some(request), _) => outgoing = request,
                    (None, Some(request)) => outgoing = request,
                    (None, None) => return Err(failed(e.into_error())),
                },
            }
        }
        let (stream, addr) = self.dial(ctx, targets).await?;
        let exchange = async {
            let mut builder = hyper::client::conn::http1::Builder::new();
            builder.max_buf_size(MAX_HEAD_BYTES);
            let (mut sender, connection) = builder.handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let response = sender.send_request(outgoing).await?;
            Ok::<_, hyper::Error>((response, sender))
        };
        match tokio::time::timeout(read_timeout, exchange).await {
            Err(_) => Err(timed_out()),
            Ok(Err(e)) => Err(failed(e)),
            Ok(Ok((response, sender))) => Ok((response, sender, addr)),
        }
    }
}
