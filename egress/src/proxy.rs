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
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::acl::{self, Verdict};
use crate::dns::{ResolveError, Resolver};
use crate::drain::Tracker;
use crate::limits::{Limits, Overload};
use crate::log::{self, CANONICAL_PROXY_DECISION, Fields, Level};
use crate::metrics::Metrics;
use crate::pool::{ClientBody, Pool, PooledBody};
use crate::settings::{Network, Settings};
use hyper::client::conn::http1::SendRequest;

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
        let _permit = match self.limits.admit() {
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
            self.forward(request, peer, identity).await
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
    ) -> Response<ProxyBody> {
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
                response.map(|body| Either::Right(PooledBody::new(body, pool, addr, sender)))
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

    /// The ACL decision, then resolution and the address policy.
    async fn decide<B>(
        &self,
        ctx: &mut Context,
        request: &Request<B>,
        destination: &Destination,
    ) -> Outcome {
        let mut decision = match &self.settings.acl {
            None => Decision {
                allow: true,
                enforce_would_deny: false,
                reason: "Egress ACL is not configured".to_owned(),
                role: String::new(),
                project: String::new(),
            },
            Some(acl) => self.acl_decision(acl, ctx, request, destination),
        };
        ctx.fields
            .insert("role".into(), decision.role.clone().into());
        ctx.fields
            .insert("project".into(), decision.project.clone().into());
        if !decision.allow {
            let why = decision.reason.clone();
            return Outcome::Denied(decision, why);
        }

        let started = Instant::now();
        let resolved = self.resolve(&destination.host).await;
        ctx.dns_lookup = started.elapsed();
        let addrs = match resolved {
            Ok(addrs) => addrs,
            Err(failure) => return Outcome::Failed(decision, failure),
        };
        let mut allowed = Vec::with_capacity(addrs.len());
        let mut first_denial = None;
        for ip in addrs {
            match self.judge(ip, destination.port) {
                Ok(by_user) => {
                    if allowed.is_empty() {
                        self.count(
                            if by_user {
                                "resolver_allow_user_configured"
                            } else {
                                "resolver_allow_default"
                            },
                            &[],
                        );
                    }
                    allowed.push(SocketAddr::new(ip, destination.port));
                }
                Err(denial) => {
                    first_denial.get_or_insert((ip, denial));
                }
            }
        }
        if allowed.is_empty() {
            let denial = match first_denial {
                Some((ip, denial)) => {
                    self.count("resolver_errors_total", &[]);
                    self.count(denial.smokescreen_class(), &[]);
                    self.count("resolver_deny_rule", &[("rule", denial.rule)]);
                    ctx.fields
                        .insert("stopover_rule".into(), denial.rule.into());
                    format!("{ip} denied by rule '{}'", denial.reason_text())
                }
                None => String::new(),
            };
            decision.allow = false;
            decision.enforce_would_deny = true;
            decision.reason = format!("no valid IP found among resolved addresses - {denial}. ");
            let why = decision.reason.clone();
            return Outcome::Denied(decision, why);
        }
        ctx.decision = Some(decision);
        Outcome::Allowed(allowed)
    }

    fn acl_decision<B>(
        &self,
        acl: &acl::Acl,
        ctx: &Context,
        request: &Request<B>,
        destination: &Destination,
    ) -> Decision {
        let mut decision = Decision {
            allow: false,
            enforce_would_deny: false,
            reason: String::new(),
            role: String::new(),
            project: String::new(),
        };
        let role = match &ctx.identity.common_name {
            Some(common_name) => common_name.clone(),
            None if self.settings.allow_missing_role => String::new(),
            None => {
                self.count("acl_role_not_determined", &[]);
                decision.reason = "Client role cannot be determined".to_owned();
                return decision;
            }
        };
        decision.role = role;
        if request.headers().contains_key(UPSTREAM_PROXY_HEADER) {
            decision.reason =
                "X-Upstream-Https-Proxy is not supported by stopover-egress".to_owned();
            return decision;
        }
        let acl_decision = acl.decide(&decision.role, &destination.host);
        decision.project = acl_decision.project;
        decision.reason = acl_decision.reason.to_owned();
        let counter = match acl_decision.verdict {
            Verdict::Allow => {
                decision.allow = true;
                "acl_allow"
            }
            Verdict::AllowAndReport => {
                decision.allow = true;
                decision.enforce_would_deny = true;
                "acl_report"
            }
            Verdict::Deny => {
                decision.enforce_would_deny = true;
                "acl_deny"
            }
        };
        let default_rule = if acl_decision.is_default {
            "true"
        } else {
            "false"
        };
        self.count(
            counter,
            &[
                ("role", &decision.role),
                ("def_rule", default_rule),
                ("project", &decision.project),
            ],
        );
        decision
    }

    async fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, Failure> {
        self.count("resolver_attempts_total", &[]);
        let resolved = self.lookup(host).await;
        if resolved.is_err() {
            self.count("resolver_errors_total", &[]);
        }
        resolved
    }

    async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, Failure> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let found = self
            .settings
            .resolver
            .lookup(host, self.settings.dns_timeout)
            .await;
        let mut addrs = match found {
            Ok(addrs) => addrs,
            Err(ResolveError::Timeout) => {
                return Err(Failure::Timeout(format!(
                    "Timed out connecting to remote host: lookup {host}: i/o timeout"
                )));
            }
            Err(e) => {
                // Go's resolver names the server it asked.
                let server = match &self.settings.resolver {
                    Resolver::Server(server) => format!(" on {server}"),
                    Resolver::System => String::new(),
                };
                return Err(Failure::Connect(format!(
                    "Failed to resolve remote hostname: lookup {host}{server}: {e}"
                )));
            }
        };
        addrs.retain(|ip| match self.settings.network {
            Network::Both => true,
            Network::V4 => ip.is_ipv4(),
            Network::V6 => ip.is_ipv6(),
        });
        if addrs.is_empty() {
            return Err(Failure::Connect(format!(
                "Failed to resolve remote hostname: lookup {host}: no suitable address found"
            )));
        }
        Ok(addrs)
    }

    /// Judges one address on the destination port: the proxy itself, then the policy.
    /// `Ok(true)` when only the caller's allow rules let it through (known only with metrics
    /// on, where it is counted).
    fn judge(&self, ip: IpAddr, port: u16) -> Result<bool, Denial> {
        if self.is_self(ip, port) {
            return Err(Denial {
                rule: "self-connection",
                embedded: false,
            });
        }
        let literal = match ip {
            IpAddr::V4(v4) => format!("http://{v4}:{port}/"),
            IpAddr::V6(v6) => format!("http://[{v6}]:{port}/"),
        };
        let url = url::Url::parse(&literal).map_err(|_| Denial {
            rule: "invalid-address",
            embedded: false,
        })?;
        self.settings
            .policy
            .check_url(&url)
            .map_err(|refusal| Denial {
                rule: refusal.rule().as_str(),
                embedded: refusal.embedded().is_some(),
            })?;
        Ok(self.metrics.is_some() && self.settings.baseline_policy.check_url(&url).is_err())
    }

    /// Whether `ip:port` reaches this proxy: a listening address, or, on a wildcard listener,
    /// any address of this host (one that a socket can be bound to).
    fn is_self(&self, ip: IpAddr, port: u16) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.listening.iter().any(|listening| {
            listening.port() == port
                && (listening.ip() == ip
                    || (listening.ip().is_unspecified()
                        && (ip.is_unspecified()
                            || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok())))
        })
    }

    /// Connects to the first target that answers, all within `--timeout`.
    async fn dial(
        &self,
        ctx: &mut Context,
        targets: &[SocketAddr],
    ) -> Result<(TcpStream, SocketAddr), Failure> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.settings.connect_timeout;
        let mut last_error = None;
        for target in targets {
            let attempt = tokio::time::timeout_at(deadline, TcpStream::connect(target)).await;
            let success = if matches!(attempt, Ok(Ok(_))) {
                "true"
            } else {
                "false"
            };
            self.count("cn_atpt_total", &[("success", success)]);
            match attempt {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    let fields = &mut ctx.fields;
                    fields.insert(
                        "conn_establish_time_ms".into(),
                        (started.elapsed().as_millis() as u64).into(),
                    );
                    if let Ok(local) = stream.local_addr() {
                        fields.insert("outbound_local_addr".into(), local.to_string().into());
                    }
                    fields.insert("outbound_remote_addr".into(), target.to_string().into());
                    return Ok((stream, *target));
                }
                Ok(Err(e)) => {
                    last_error = Some(format!("dial tcp {target}: connect: {}", go_error_text(&e)));
                }
                Err(_) => {
                    ctx.fields.insert(
                        "conn_establish_time_ms".into(),
                        (started.elapsed().as_millis() as u64).into(),
                    );
                    return Err(Failure::Timeout(format!(
                        "Timed out connecting to remote host: dial tcp {target}: i/o timeout"
                    )));
                }
            }
        }
        ctx.fields.insert(
            "conn_establish_time_ms".into(),
            (started.elapsed().as_millis() as u64).into(),
        );
        Err(Failure::Connect(format!(
            "Failed to connect to remote host: {}",
            last_error.unwrap_or_else(|| "no address to connect to".to_owned())
        )))
    }

    /// A 407 denial, logged as a warning.
    fn deny(
        &self,
        ctx: &mut Context,
        decision: Option<Decision>,
        why: String,
        connect: bool,
    ) -> Response<ProxyBody> {
        let decision = decision.unwrap_or(Decision {
            allow: false,
            enforce_would_deny: false,
            reason: why.clone(),
            role: String::new(),
            project: String::new(),
        });
        let message = format!(
            "Egress proxying is denied to host '{}': {why}.",
            ctx.requested_host
        );
        let response = self.reject(
            StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            "Request rejected by proxy",
            message,
            connect,
            ctx,
        );
        ctx.decision = Some(decision);
        ctx.log_decision(None);
        response
    }

    /// A 502, 504 or 429 answer for a failure, logged as an error (and, like smokescreen,
    /// preceded by an error line with the message alone).
    fn fail(
        &self,
        ctx: &mut Context,
        decision: Option<Decision>,
        failure: Failure,
        connect: bool,
    ) -> Response<ProxyBody> {
        let (status, phrase, message) = match failure {
            Failure::Connect(message) => (StatusCode::BAD_GATEWAY, "Bad gateway", message),
            Failure::Timeout(message) => (StatusCode::GATEWAY_TIMEOUT, "Gateway timeout", message),
            Failure::TunnelLimit => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
                "maximum concurrent connect tunnels exceeded".to_owned(),
            ),
        };
        let mut response = self.reject(status, phrase, message.clone(), connect, ctx);
        if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        log::emit(Level::Error, &message, ctx.fields.clone());
        if let Some(decision) = decision {
            ctx.decision = Some(decision);
        }
        // A CONNECT decision that was already logged is not logged twice.
        if !(connect && ctx.logged) {
            ctx.log_decision(Some(&message));
        }
        response
    }

    fn reject(
        &self,
        status: StatusCode,
        phrase: &'static str,
        message: String,
        connect: bool,
        ctx: &mut Context,
    ) -> Response<ProxyBody> {
        let message = match &self.settings.additional_error_message {
            Some(extra) => format!("{message}\n\n{extra}\n"),
            None => message,
        };
        // Go's header writer turns newlines into spaces and trims the value.
        let header_text: String = message
            .chars()
            .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
            .collect();
        let header_text = header_text.trim();
        let body = format!("{message}\n");
        ctx.fields
            .insert("status_code".into(), status.as_u16().into());
        ctx.fields
            .insert("content_length".into(), (body.len() as i64).into());
        let mut response = Response::new(Either::Left(Either::Left(Full::new(Bytes::from(body)))));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        if let Ok(value) = HeaderValue::from_str(header_text) {
            headers.insert(HeaderName::from_static(ERROR_HEADER), value);
        }
        if connect {
            response
                .extensions_mut()
                .insert(hyper::ext::ReasonPhrase::from_static(phrase.as_bytes()));
        }
        response
    }
}

/// Why an address was refused: stopover's rule id, and whether it carried an IPv4 address
/// inside IPv6.
#[derive(Debug, Clone, Copy)]
struct Denial {
    rule: &'static str,
    embedded: bool,
}

impl Denial {
    /// The rule as `decision_reason` names it: smokescreen's class where smokescreen denies
    /// the address for the same reason (so log pipelines matching on it keep working),
    /// stopover's rule id where smokescreen would have let the address through.
    fn reason_text(self) -> std::borrow::Cow<'static, str> {
        let class = match self.rule {
            "self-connection" => "Deny: Self Connection",
            "user-deny" => "Deny: User Configured",
            _ if self.embedded => "Deny: IPv6 Embedding",
            "ipv4-private" | "ipv6-unique-local" => "Deny: Private Range",
            "ipv4-shared" => "Deny: CGNAT Range",
            "ipv4-loopback" | "ipv4-link-local" | "ipv4-multicast" | "ipv4-broadcast"
            | "ipv4-this-host" | "ipv6-unspecified" | "ipv6-loopback" | "ipv6-link-local"
            | "ipv6-multicast" | "ipv6-6to4" | "ipv6-teredo" => {
                if matches!(self.rule, "ipv6-6to4" | "ipv6-teredo") {
                    "Deny: IPv6 Embedding"
                } else {
                    "Deny: Not Global Unicast"
                }
            }
            rule => return format!("Deny: {rule}").into(),
        };
        class.into()
    }

    /// smokescreen's classification counter for this denial.
    fn smokescreen_class(self) -> &'static str {
        match self.rule {
            "self-connection" => "resolver_deny_self_connection",
            "user-deny" => "resolver_deny_user_configured",
            _ if self.embedded => "resolver_deny_ipv6_embedding",
            "ipv4-private" | "ipv6-unique-local" => "resolver_deny_private_range",
            "ipv4-shared" => "resolver_deny_cgnat_range",
            _ => "resolver_deny_not_global_unicast",
        }
    }
}

/// What was decided before connecting.
enum Outcome {
    Allowed(Vec<SocketAddr>),
    Denied(Decision, String),
    Failed(Decision, Failure),
}

/// Why a request could not be completed (not a denial).
enum Failure {
    /// 502: resolution or connection failed.
    Connect(String),
    /// 504: resolution or connection timed out.
    Timeout(String),
    /// 429: every tunnel slot is taken.
    TunnelLimit,
}

/// smokescreen's decision, as logged.
#[derive(Debug, Clone)]
struct Decision {
    allow: bool,
    enforce_would_deny: bool,
    reason: String,
    role: String,
    project: String,
}

/// A destination as requested: normalized host and port.
#[derive(Debug)]
struct Destination {
    host: String,
    port: u16,
}

/// What one request logs.
struct Context {
    fields: Fields,
    requested_host: String,
    identity: ClientIdentity,
    decision: Option<Decision>,
    dns_lookup: Duration,
    logged: bool,
}

impl Context {
    fn new<B>(
        proxy_type: &str,
        requested_host: &str,
        peer: SocketAddr,
        identity: &ClientIdentity,
        request: &Request<B>,
    ) -> Self {
        let mut fields = Fields::new();
        fields.insert("id".into(), log::request_id().into());
        fields.insert("inbound_remote_addr".into(), peer.to_string().into());
        fields.insert("proxy_type".into(), proxy_type.into());
        fields.insert("requested_host".into(), requested_host.into());
        fields.insert(
            "start_time".into(),
            log::rfc3339(SystemTime::now(), true).into(),
        );
        let trace_id = request
            .headers()
            .get(TRACE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        fields.insert("trace_id".into(), trace_id.into());
        if let Some(cn) = &identity.common_name {
            fields.insert("inbound_remote_x509_cn".into(), cn.clone().into());
        }
        if let Some(ou) = &identity.organizational_unit {
            fields.insert("inbound_remote_x509_ou".into(), ou.clone().into());
        }
        Context {
            fields,
            requested_host: requested_host.to_owned(),
            identity: identity.clone(),
            decision: None,
            dns_lookup: Duration::ZERO,
            logged: false,
        }
    }

    /// The canonical decision line: info when allowed, warning when denied, error on failure.
    fn log_decision(&mut self, error: Option<&str>) {
        let mut fields = self.fields.clone();
        fields.insert(
            "dns_lookup_time_ms".into(),
            (self.dns_lookup.as_millis() as u64).into(),
        );
        let level = match (&self.decision, error) {
            (_, Some(_)) => Level::Error,
            (Some(decision), None) if decision.allow => Level::Info,
            _ => Level::Warn,
        };
        if let Some(decision) = &self.decision {
            fields.insert("allow".into(), decision.allow.into());
            fields.insert(
                "enforce_would_deny".into(),
                decision.enforce_would_deny.into(),
            );
            fields.insert("decision_reason".into(), decision.reason.clone().into());
            fields
                .entry("role")
                .or_insert_with(|| Value::from(decision.role.clone()));
            fields
                .entry("project")
                .or_insert_with(|| Value::from(decision.project.clone()));
        }
        if let Some(error) = error {
            fields.insert("error".into(), error.into());
        }
        log::emit(level, CANONICAL_PROXY_DECISION, fields);
        self.logged = true;
    }
}

/// `host:port` as Go's `net.SplitHostPort` reads it, the host normalized.
fn split_host_port(text: &str) -> Result<Destination, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("address {text}: missing ']' in address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("address {text}: missing port in address"))?;
        (host, port)
    } else {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("address {text}: missing port in address"))?;
        if host.contains(':') {
            return Err(format!("address {text}: too many colons in address"));
        }
        (host, port)
    };
    let port: u16 = port
        .parse()
        .map_err(|e| format!("invalid port number {port:?}: {e}"))?;
    let host = acl::normalize_host(host)?;
    Ok(Destination { host, port })
}

/// An absolute-form authority: `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port_or(text: &str, default_port: u16) -> Result<Destination, String> {
    let has_port = text.rfind(':') > text.rfind(']');
    if has_port {
        split_host_port(text)
    } else {
        let host = text
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(text);
        Ok(Destination {
            host: acl::normalize_host(host)?,
            port: default_port,
        })
    }
}

/// Headers that belong to one hop (RFC 9110, section 7.6.1) and the proxy's own.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers (and those named in `Connection`) and `extra`.
fn strip(headers: &mut HeaderMap, extra: &[&str]) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP.iter().chain(extra) {
        headers.remove(*name);
    }
}

/// The request as the upstream sees it: origin-form target, `Host` from the URL (as Go's
/// server sets it for absolute-form requests), hop-by-hop and smokescreen headers removed.
fn outgoing_request(
    request: Request<Incoming>,
    authority: &str,
) -> Result<Request<Incoming>, String> {
    let (mut parts, body) = request.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    parts.uri = target
        .parse::<Uri>()
        .map_err(|e| format!("invalid request target: {e}"))?;
    strip(&mut parts.headers, &[ROLE_HEADER, TRACE_HEADER]);
    let host = HeaderValue::from_str(authority).map_err(|e| format!("invalid host: {e}"))?;
    parts.headers.insert(header::HOST, host);
    parts.version = http::Version::HTTP_11;
    Ok(Request::from_parts(parts, body))
}

/// A copy of a request without a body whose method may be repeated (RFC 9110, section 9.2.2),
/// to send again when a reused connection turns out closed.
fn replayable(request: &Request<ClientBody>) -> Option<Request<ClientBody>> {
    use http_body::Body;
    let idempotent = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    );
    if !idempotent || !request.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(Either::Right(Empty::new()));
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

/// An I/O error as Go words it (`connection refused`), so that 502 texts read alike.
fn go_error_text(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        ErrorKind::NetworkUnreachable => "network is unreachable".to_owned(),
        ErrorKind::HostUnreachable => "no route to host".to_owned(),
        ErrorKind::ConnectionReset => "connection reset by peer".to_owned(),
        ErrorKind::AddrNotAvailable => "cannot assign requested address".to_owned(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(at) => text[..at].to_lowercase(),
                None => text,
            }
        }
    }
}

/// A short text answer for the limits, as Go's `http.Error` writes it.
fn plain_error(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Left(Either::Left(Full::new(Bytes::from(format!(
        "{text}\n"
    ))))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    if status != StatusCode::INTERNAL_SERVER_ERROR {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// What a tunnel carried.
#[derive(Debug, Default)]
struct Tunneled {
    /// Bytes read from the upstream.
    bytes_in: u64,
    /// Bytes written to the upstream.
    bytes_out: u64,
    /// When a byte last moved, from the tunnel's start.
    last_activity: Duration,
}

/// Copies bytes both ways until both directions end, or nothing moves for `idle` (zero =
/// never). One task, no split halves: tokio's bidirectional copy with a
/// [`TUNNEL_BUFFER`]-byte buffer per direction, the upstream side metered.
async fn tunnel<C>(mut client: C, upstream: TcpStream, idle: Duration) -> Tunneled
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
struct Metered {
    inner: TcpStream,
    started: Instant,
    last_activity: Arc<AtomicU64>,
    bytes_in: u64,
    bytes_out: u64,
}

impl Metered {
    fn touch(&self) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_splits_as_go_does() {
        let d = split_host_port("Example.COM:443").unwrap();
        assert_eq!((d.host.as_str(), d.port), ("example.com", 443));
        let d = split_host_port("[::1]:8080").unwrap();
        assert_eq!((d.host.as_str(), d.port), ("::1", 8080));
        assert_eq!(
            split_host_port("example.com").unwrap_err(),
            "address example.com: missing port in address"
        );
        assert!(split_host_port("example.com:http").is_err());
        // The URL standard's IPv4 spellings become the address they name.
        let d = split_host_port("0x7f.1:80").unwrap();
        assert_eq!(d.host, "127.0.0.1");
    }

    #[test]
    fn absolute_form_defaults_the_port() {
        let d = split_host_port_or("example.com", 80).unwrap();
        assert_eq!((d.host.as_str(), d.port), ("example.com", 80));
        let d = split_host_port_or("[2001:db8::1]", 80).unwrap();
        assert_eq!((d.host.as_str(), d.port), ("2001:db8::1", 80));
    }

    #[test]
    fn hop_by_hop_and_named_headers_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("close, x-secret"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        headers.insert("x-smokescreen-error", HeaderValue::from_static("spoof"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        strip(&mut headers, &[ERROR_HEADER]);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("accept"));
    }
}
