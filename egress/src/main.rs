//! `stopover-egress`: stopover's SSRF policy as an egress forward proxy, a drop-in for
//! stripe/smokescreen.
//!
//! Clients set `HTTPS_PROXY`/`HTTP_PROXY` to it; it resolves each destination once, judges
//! every address with [`stopover::client::ssrf::Policy`] (the IANA special-purpose registries,
//! IPv4 embedded in IPv6, the caller's ranges), and connects to exactly an address that passed.
//! It reads smokescreen's flags, configuration file and ACL YAML, gives smokescreen's answers
//! (407 with `X-Smokescreen-Error` on a denial, 502/504 on resolution or connection failures)
//! and writes smokescreen's `CANONICAL-PROXY-DECISION` JSON line on stderr. The README's
//! "stopover-egress" section lists where it differs from smokescreen, and why.
//!
//! ```text
//! cargo run -p stopover-egress -- --listen-ip 127.0.0.1 --egress-acl-file acl.yaml
//! HTTPS_PROXY=http://127.0.0.1:4750 curl https://example.com/
//! ```

#![deny(missing_docs)]

mod acl;
mod cli;
mod dns;
mod drain;
mod duration;
mod limits;
mod log;
mod metrics;
mod pool;
mod proxy;
mod settings;
mod tls;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::drain::Tracker;
use crate::log::{Fields, Level};
use crate::proxy::{ClientIdentity, Proxy};
use crate::settings::Settings;

fn main() -> ExitCode {
    let args = match cli::Args::parse_from_env(std::env::args_os()) {
        Ok(args) => args,
        Err(e) => {
            // --help and --version print and exit 0; usage errors exit 2, like clap's default.
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    let settings = match Settings::from_args(&args) {
        Ok(settings) => settings,
        Err(e) => {
            log::message(
                Level::Error,
                &format!("Could not create configuration: {e}"),
            );
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            log::message(Level::Error, &format!("could not start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::message(Level::Error, &e);
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> Result<(), String> {
    log::message(Level::Info, "starting");
    let metrics = match &settings.prometheus {
        Some(prometheus) => {
            let metrics = Arc::new(metrics::Metrics::default());
            metrics::serve(prometheus.clone(), metrics.clone()).await?;
            Some(metrics)
        }
        None => None,
    };
    if let Some(acl) = &settings.acl {
        if !acl.has_default() {
            log::message(
                Level::Warn,
                "no default rule set. any services without a rule will be denied.",
            );
        }
    }
    let acceptor = settings.tls.as_ref().map(tls::acceptor).transpose()?;
    let listener = bind(settings.listen_ip, settings.listen_port).await?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("can't find listener: {e}"))?;
    let mut fields = Fields::new();
    fields.insert("listening_addr".into(), local.to_string().into());
    log::emit(Level::Info, "listening", fields);

    let handshake_timeout = settings.read_header_timeout;
    let exit_timeout = settings.exit_timeout;
    let proxy = Arc::new(Proxy::new(settings, vec![local], metrics));
    let tracker = Arc::new(Tracker::default());
    let (stop, stopped) = watch::channel(false);
    let mut signals = Signals::new()?;

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: wait a little rather than spin.
                    log::message(Level::Error, &format!("accept: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = signals.next() => break,
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let stopped = stopped.clone();
        let guard = tracker.enter();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _guard = guard;
            match acceptor {
                None => {
                    proxy
                        .serve_connection(stream, peer, ClientIdentity::default(), stopped)
                        .await;
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
                    let failed = match handshake.await {
                        Ok(Ok(tls)) => {
                            let identity = tls::identity(tls.get_ref().1);
                            proxy.serve_connection(tls, peer, identity, stopped).await;
                            return;
                        }
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "timed out".to_owned(),
                    };
                    // Go's server logs these the same way (a revoked certificate shows here).
                    let mut fields = Fields::new();
                    fields.insert("stdlog".into(), "1".into());
                    log::emit(
                        Level::Error,
                        &format!("http: TLS handshake error from {peer}: {failed}"),
                        fields,
                    );
                }
            }
        });
    }

    log::message(Level::Info, "quitting gracefully");
    drop(listener);
    let _ = stop.send(true);
    let open = proxy.tunnels_open() + tracker.count();
    if open > 0 {
        log::message(Level::Info, "Waiting for all connections to close...");
    }
    let drained = tokio::time::timeout(exit_timeout, async {
        tracker.idle().await;
        proxy.tunnels_closed().await;
    })
    .await;
    match drained {
        Ok(()) => log::message(
            Level::Info,
            "All connections are closed. Continuing with shutdown...",
        ),
        Err(_) => log::message(
            Level::Warn,
            "Timed out waiting for connections to become idle: closing all remaining connections.",
        ),
    }
    Ok(())
}

/// Binds the listener: the given address, or every interface (IPv6 and IPv4 on one socket,
/// falling back to IPv4 on a host without IPv6).
async fn bind(ip: Option<IpAddr>, port: u16) -> Result<TcpListener, String> {
    let failed = |e: std::io::Error| format!("can't find listener: {e}");
    match ip {
        Some(ip) => TcpListener::bind(SocketAddr::new(ip, port))
            .await
            .map_err(failed),
        None => {
            match TcpListener::bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)).await {
                Ok(listener) => Ok(listener),
                Err(_) => TcpListener::bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port))
                    .await
                    .map_err(failed),
            }
        }
    }
}

/// smokescreen's graceful-shutdown signals: SIGTERM, SIGHUP and SIGUSR2.
struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self, String> {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind| signal(kind).map_err(|e| format!("signal handler: {e}"));
        Ok(Signals {
            term: listen(SignalKind::terminate())?,
            hup: listen(SignalKind::hangup())?,
            usr2: listen(SignalKind::user_defined2())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
            _ = self.usr2.recv() => {}
        }
    }
}
