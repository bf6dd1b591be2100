//! The SSRF guard inside the client, against real loopback servers and a fake resolver.
//!
//! Every refused destination in these tests is either refused before any socket is opened
//! (checked with a canary listener that counts connections) or is an address no packet may be
//! sent to (the refusal happens in the policy, before the connector runs).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use stopover::client::ssrf::{MixedAnswers, Policy, Rule, Stage};
use stopover::client::{Chain, Client, Error, ErrorKind, Next, Request, from_fn};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::support::TestServer;

/// A resolver that answers from a table and counts its calls. A name can have several answer
/// sets: call n gets set n, and the last set repeats.
#[derive(Default)]
struct FakeDns {
    answers: Mutex<HashMap<String, Vec<Vec<IpAddr>>>>,
    calls: AtomicUsize,
}

impl FakeDns {
    fn new() -> Arc<FakeDns> {
        Arc::new(FakeDns::default())
    }

    fn answer(self: &Arc<Self>, name: &str, sets: &[&[&str]]) -> Arc<Self> {
        let sets = sets
            .iter()
            .map(|set| set.iter().map(|ip| ip.parse().unwrap()).collect())
            .collect();
        self.answers.lock().unwrap().insert(name.to_owned(), sets);
        Arc::clone(self)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Resolve for FakeDns {
    fn resolve(&self, name: Name) -> Resolving {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = {
            let mut table = self.answers.lock().unwrap();
            table.get_mut(name.as_str()).map(|sets| {
                if sets.len() > 1 {
                    sets.remove(0)
                } else {
                    sets[0].clone()
                }
            })
        };
        Box::pin(async move {
            let ips = answer.ok_or("NXDOMAIN")?;
            let addrs: Vec<SocketAddr> = ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// A listener that must never be reached: it counts the connections it accepts.
struct Canary {
    addr: SocketAddr,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    probes: Mutex<Vec<SocketAddr>>,
    accepted: Arc<Notify>,
}

impl Canary {
    async fn bind(addr: &str) -> Canary {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peers = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Notify::new());
        let (seen, notify) = (Arc::clone(&peers), Arc::clone(&accepted));
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                seen.lock().unwrap().push(peer);
                notify.notify_waiters();
                drop(stream);
            }
        });
        Canary {
            addr,
            peers,
            probes: Mutex::new(Vec::new()),
            accepted,
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// How many connections reached the canary. The backlog is accepted in order, so once our
    /// own probe connection has been accepted, every earlier connection has been too.
    async fn connections(&self) -> usize {
        let probe = TcpStream::connect(self.addr).await.unwrap();
        let probe_addr = probe.local_addr().unwrap();
        let wait = async {
            loop {
                let notified = self.accepted.notified();
                if self.peers.lock().unwrap().contains(&probe_addr) {
                    break;
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .expect("the canary accepts the probe");
        let mut probes = self.probes.lock().unwrap();
        probes.push(probe_addr);
        let peers = self.peers.lock().unwrap();
        peers.iter().filter(|peer| !probes.contains(peer)).count()
    }
}

/// A guarded client whose policy allows exactly the test server's address and port.
fn guarded_client(server: &TestServer, dns: Option<Arc<FakeDns>>) -> Client {
    let policy = Policy::builder()
        .allow_addr(&server.addr.to_string())
        .build()
        .unwrap();
    let mut builder = Client::builder().ssrf_policy(policy);
    if let Some(dns) = dns {
        builder = builder.dns_resolver(dns);
    }
    builder.build().unwrap()
}

fn redirect_to(server: &TestServer, target: &str) -> String {
    let query = serde_urlencoded::to_string([("status", "302"), ("to", target)]).unwrap();
    server.url(&format!("/redirect?{query}"))
}

fn refusal_of(err: &Error) -> &stopover::client::ssrf::Refusal {
    assert_eq!(err.kind(), ErrorKind::Refused, "{err:?}");
    err.refusal().expect("a refused error carries its refusal")
}

#[tokio::test]
async fn name_resolving_to_loopback_is_refused() {
    let server = TestServer::start().await;
    let canary = Canary::bind("127.0.0.1:0").await;
    let dns = FakeDns::new().answer("internal.test", &[&["127.0.0.1"]]);
    let client = guarded_client(&server, Some(Arc::clone(&dns)));

    let url = format!("http://internal.test:{}/", canary.port());
    let err = client.get(&url).send().await.unwrap_err();

    let refusal = refusal_of(&err);
    assert_eq!(refusal.rule(), Rule::Ipv4Loopback);
    assert_eq!(refusal.stage(), Stage::Resolve);
    assert_eq!(dns.calls(), 1);
    assert_eq!(canary.connections().await, 0);
}

#[tokio::test]
async fn explicit_allow_rule_reaches_the_loopback_server() {
    let server = TestServer::start().await;
    let client = guarded_client(&server, None);

    let response = client.get(server.url("/hello")).send().await.unwrap();

    assert_eq!(response.text().await.unwrap(), "ok");
    assert_eq!(server.paths(), ["/hello"]);
}

#[tokio::test]
async fn allow_rule_for_one_port_does_not_open_other_ports() {
    let server = TestServer::start().await;
    let canary = Canary::bind("127.0.0.1:0").await;
    let client = guarded_client(&server, None);

    let err = client
        .get(format!("http://127.0.0.1:{}/", canary.port()))
        .send()
        .await
        .unwrap_err();

    assert_eq!(refusal_of(&err).rule(), Rule::Ipv4Loopback);
    assert_eq!(canary.connections().await, 0);
}

#[tokio::test]
async fn numeric_spellings_of_loopback_are_refused_before_connecting() {
    let server = TestServer::start().await;
    let canary = Canary::bind("127.0.0.1:0").await;
    let client = guarded_client(&server, None);
    let port = canary.port();

    for host in [
        "2130706433",
        "0x7f.1",
        "0177.0.0.1",
        "127.1",
        "127.0.0.1.",
        "[::ffff:7f00:1]",
        "[::127.0.0.1]",
        "localhost",
        // The zero address reaches local listeners on Linux.
        "0",
        "0.0.0.0",
        "[::]",
    ] {
        let err = client
            .get(format!("http://{host}:{port}/"))
            .send()
            .await
            .unwrap_err();
        assert_eq!(refusal_of(&err).stage(), Stage::Url, "{host}");
    }
    assert_eq!(canary.connections().await, 0);
}

#[tokio::test]
async fn redirect_to_the_metadata_address_is_refused_at_the_hop() {
    let server = TestServer::start().await;
    let client = guarded_client(&server, None);

    let target = "http://169.254.169.254/latest/meta-data/";
    let err = client
        .get(redirect_to(&server, target))
        .send()
        .await
        .unwrap_err();

    let refusal = refusal_of(&err);
    assert_eq!(refusal.rule(), Rule::Ipv4LinkLocal);
    assert_eq!(refusal.stage(), Stage::Url);
    assert_eq!(refusal.hop(), Some(1));
    assert_eq!(err.url().map(|url| url.as_str()), Some(target));
    assert_eq!(server.paths(), ["/redirect"]);
}

#[tokio::test]
async fn redirect_to_ipv4_mapped_loopback_is_refused_at_the_hop() {
    let server = TestServer::start().await;
    let canary = Canary::bind("127.0.0.1:0").await;
    let client = guarded_client(&server, None);

    let target = format!("http://[::ffff:127.0.0.1]:{}/", canary.port());
    let err = client
        .get(redirect_to(&server, &target))
        .send()
        .await
        .unwrap_err();

    let refusal = refusal_of(&err);
    assert_eq!(refusal.rule(), Rule::Ipv4Loopback);
    assert_eq!(refusal.hop(), Some(1));
    assert_eq!(canary.connections().await, 0);
}

#[tokio::test]
async fn every_redirect_status_and_location_form_is_checked_at_the_hop() {
    let server = TestServer::start().await;
    let canary = Canary::bind("127.0.0.1:0").await;
    let client = guarded_client(&server, None);
    let q = canary.port();

    for status in ["301", "302", "303", "307", "308"] {
        for location in [
            format!("http://127.0.0.1:{q}/"),
            format!("//127.0.0.1:{q}/"),
            format!("/\\127.0.0.1:{q}/"),
            format!("http://2130706433:{q}/"),
            format!("http://user@127.0.0.1:{q}/"),
        ] {
            let query =
                serde_urlencoded::to_string([("status", status), ("to", &location)]).unwrap();
            let err = client
                .post(server.url(&format!("/redirect?{query}")))
                .body("payload")
                .send()
                .await
                .unwrap_err();
            let refusal = refusal_of(&err);
            assert_eq!(refusal.hop(), Some(1), "{status} {location}");
            assert_eq!(refusal.stage(), Stage::Url, "{status} {location}");
        }
    }
    assert_eq!(canary.connections().await, 0);
}

#[tokio::test]
async fn redirect_to_a_name_resolving_to_a_private_address_is_refused_at_the_hop() {
    let server = TestServer::start().await;
    let dns = FakeDns::new().answer("internal.test", &[&["10.0.0.1"]]);
    let client = guarded_client(&server, Some(Arc::clone(&dns)));

    let err = client
        .get(redirect_to(&server, "http://internal.test/admin"))
        .send()
        .await
        .unwrap_err();

    let refusal = refusal_of(&err);
    assert_eq!(refusal.rule(), Rule::Ipv4Private);
    assert_eq!(refusal.stage(), Stage::Resolve);
    assert_eq!(refusal.hop(), Some(1));
    assert_eq!(refusal.host(), Some("internal.test"));
    assert_eq!(dns.calls(), 1);
}

#[tokio::test]
async fn refusal_message_does_not_reveal_what_the_name_resolved_to() {
    let server = TestServer::start().await;
    let dns = FakeDns::new().answer("internal.test", &[&["10.11.12.13"]]);
    let client = guarded_client(&server, Some(dns));

    let err = client
        .get("http://internal.test/")
        .send()
        .await
        .unwrap_err();

    let mut messages = vec![err.to_string()];
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        messages.push(cause.to_string());
        source = cause.source();
    }
    for message in &messages {
        assert!(!message.contains("10.11.12.13"), "{message}");
    }
    assert!(
        messages[0].contains("host resolved to a denied address (rule ipv4-private)"),
        "{}",
        messages[0]
    );
    assert_eq!(
        refusal_of(&err).addr(),
        Some("10.11.12.13".parse().unwrap())
    );
}

#[tokio::test]
async fn rebinding_resolver_cannot_move_the_connection() {
    let server = TestServer::start().await;
    // Same port as the server, on another loopback address: where a second lookup would lead.
    let canary = Canary::bind(&format!("127.0.0.2:{}", server.addr.port())).await;
    let dns = FakeDns::new().answer("rebind.test", &[&["127.0.0.1"], &["127.0.0.2"]]);
    let client = guarded_client(&server, Some(Arc::clone(&dns)));
    let url = format!("http://rebind.test:{}/", server.addr.port());

    // One lookup per connection: the address checked is the address connected to.
    let response = client
        .get(&url)
        .header("connection", "close")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "ok");
    assert_eq!(dns.calls(), 1);
    assert_eq!(canary.connections().await, 0);

    // A new connection looks the name up again, and the new answer is judged again.
    let err = client.get(&url).send().await.unwrap_err();
    assert_eq!(refusal_of(&err).rule(), Rule::Ipv4Loopback);
    assert_eq!(dns.calls(), 2);
    assert_eq!(canary.connections().await, 0);
    assert_eq!(server.paths(), ["/"]);
}

#[tokio::test]
async fn mixed_answers_refuse_the_name_by_default() {
    let server = TestServer::start().await;
    let canary = Canary::bind(&format!("127.0.0.2:{}", server.addr.port())).await;
    let dns = FakeDns::new().answer("mixed.test", &[&["127.0.0.2", "127.0.0.1"]]);
    let client = guarded_client(&server, Some(dns));

    let url = format!("http://mixed.test:{}/", server.addr.port());
    let err = client.get(&url).send().await.unwrap_err();

    assert_eq!(refusal_of(&err).rule(), Rule::Ipv4Loopback);
    assert!(server.seen().is_empty());
    assert_eq!(canary.connections().await, 0);
}

#[tokio::test]
async fn keep_allowed_connects_only_to_the_allowed_answer() {
    let server = TestServer::start().await;
    let canary = Canary::bind(&format!("127.0.0.2:{}", server.addr.port())).await;
    let dns = FakeDns::new().answer("mixed.test", &[&["127.0.0.2", "127.0.0.1"]]);
    let policy = Policy::builder()
        .allow_addr(&server.addr.to_string())
        .mixed_answers(MixedAnswers::KeepAllowed)
        .build()
        .unwrap();
    let client = Client::builder()
        .ssrf_policy(policy)
        .dns_resolver(dns)
        .build()
        .unwrap();

    let url = format!("http://mixed.test:{}/", server.addr.port());
    let response = client.get(&url).send().await.unwrap();

    assert_eq!(response.text().await.unwrap(), "ok");
    assert_eq!(canary.connections().await, 0);
}

#[tokio::test]
async fn empty_middleware_list_does_not_switch_the_guard_off() {
    let server = TestServer::start().await;
    let canary = Canary::bind("127.0.0.1:0").await;
    let policy = Policy::builder()
        .allow_addr(&server.addr.to_string())
        .build()
        .unwrap();
    let passthrough = from_fn(|req: Request, next: Next| async move { next.run(req).await });
    let client = Client::builder()
        .ssrf_policy(policy)
        .middleware(passthrough)
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{}/", canary.port());

    let err = client.get(&url).no_middleware().send().await.unwrap_err();
    assert_eq!(refusal_of(&err).rule(), Rule::Ipv4Loopback);
    let err = client
        .get(&url)
        .middlewares(Chain::new())
        .send()
        .await
        .unwrap_err();
    assert_eq!(refusal_of(&err).rule(), Rule::Ipv4Loopback);
    assert_eq!(canary.connections().await, 0);
}

#[tokio::test]
async fn a_retry_steered_to_a_denied_address_is_refused() {
    let server = TestServer::start().await;
    let canary = Canary::bind("127.0.0.1:0").await;
    let canary_url = url::Url::parse(&format!("http://127.0.0.1:{}/", canary.port())).unwrap();
    let policy = Policy::builder()
        .allow_addr(&server.addr.to_string())
        .build()
        .unwrap();
    // A middleware that sends a first attempt, then "retries" somewhere else.
    let steer = from_fn(move |req: Request, next: Next| {
        let canary_url = canary_url.clone();
        async move {
            let mut retry = req.try_clone()?;
            next.run(req).await?;
            *retry.url_mut() = canary_url;
            next.run(retry).await
        }
    });
    let client = Client::builder()
        .ssrf_policy(policy)
        .middleware(steer)
        .build()
        .unwrap();

    let err = client.get(server.url("/first")).send().await.unwrap_err();

    assert_eq!(refusal_of(&err).rule(), Rule::Ipv4Loopback);
    assert_eq!(server.paths(), ["/first"]);
    assert_eq!(canary.connections().await, 0);
}

#[tokio::test]
async fn requests_a_middleware_sends_itself_are_guarded() {
    let server = TestServer::start().await;
    let canary = Canary::bind("127.0.0.1:0").await;
    let canary_url = format!("http://127.0.0.1:{}/", canary.port());
    let policy = Policy::builder()
        .allow_addr(&server.addr.to_string())
        .build()
        .unwrap();
    let side_request = from_fn(move |req: Request, next: Next| {
        let canary_url = canary_url.clone();
        async move {
            let side = next.client().get(&canary_url).no_middleware().send().await;
            assert_eq!(side.unwrap_err().kind(), ErrorKind::Refused);
            next.run(req).await
        }
    });
    let client = Client::builder()
        .ssrf_policy(policy)
        .middleware(side_request)
        .build()
        .unwrap();

    let response = client.get(server.url("/")).send().await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(canary.connections().await, 0);
}

#[tokio::test]
async fn report_only_mode_lets_refused_requests_through() {
    let server = TestServer::start().await;
    let dns = FakeDns::new().answer("internal.test", &[&["127.0.0.1"]]);
    let policy = Policy::builder().report_only(true).build().unwrap();
    let client = Client::builder()
        .ssrf_policy(policy)
        .dns_resolver(dns)
        .build()
        .unwrap();

    let literal = client.get(server.url("/literal")).send().await.unwrap();
    let named = format!("http://internal.test:{}/named", server.addr.port());
    let named = client.get(&named).send().await.unwrap();

    assert_eq!(literal.status(), 200);
    assert_eq!(named.status(), 200);
    assert_eq!(server.paths(), ["/literal", "/named"]);
}

#[tokio::test]
async fn custom_resolver_is_used_without_the_guard() {
    let server = TestServer::start().await;
    let dns = FakeDns::new().answer("service.test", &[&["127.0.0.1"]]);
    let client = Client::builder()
        .dns_resolver(Arc::clone(&dns) as Arc<dyn Resolve>)
        .build()
        .unwrap();

    let url = format!("http://service.test:{}/unguarded", server.addr.port());
    let response = client.get(&url).send().await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(dns.calls(), 1);
    assert_eq!(server.paths(), ["/unguarded"]);
}

#[tokio::test]
async fn refusal_debug_does_not_reveal_what_the_name_resolved_to() {
    let server = TestServer::start().await;
    let dns = FakeDns::new().answer("internal.test", &[&["10.11.12.13"]]);
    let client = guarded_client(&server, Some(dns));

    let err = client
        .get("http://internal.test/")
        .send()
        .await
        .unwrap_err();

    let refusal = refusal_of(&err);
    for debug in [
        format!("{err:?}"),
        format!("{refusal:?}"),
        format!("{refusal:#?}"),
    ] {
        assert!(!debug.contains("10.11.12.13"), "{debug}");
        assert!(!debug.contains("168496141"), "{debug}");
        assert!(
            debug.contains("ipv4-private") || debug.contains("Ipv4Private"),
            "{debug}"
        );
    }
    // The address stays available to code that asks for it, for logs.
    assert_eq!(refusal.addr(), Some("10.11.12.13".parse().unwrap()));
}

#[tokio::test]
async fn refusal_debug_shows_an_address_written_in_the_url() {
    let client = Client::builder()
        .ssrf_policy(Policy::default())
        .build()
        .unwrap();

    let err = client.get("http://10.11.12.13/").send().await.unwrap_err();

    // An IP literal is no secret: the caller wrote it.
    assert!(format!("{err:?}").contains("10.11.12.13"), "{err:?}");
}

/// A resolver that never answers.
struct SilentDns;

impl Resolve for SilentDns {
    fn resolve(&self, _: Name) -> Resolving {
        Box::pin(std::future::pending())
    }
}

#[tokio::test(start_paused = true)]
async fn a_resolver_that_never_answers_fails_the_request_at_the_dns_timeout() {
    let policy = Policy::builder()
        .dns_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let client = Client::builder()
        .ssrf_policy(policy)
        .dns_resolver(Arc::new(SilentDns))
        .build()
        .unwrap();

    let started = tokio::time::Instant::now();
    let sent = tokio::time::timeout(
        Duration::from_secs(600),
        client.get("http://silent.test/").send(),
    )
    .await
    .expect("the request ends at the DNS timeout, not never");

    let err = sent.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err:?}");
    assert!(err.is_timeout(), "{err:?}");
    assert!(err.refusal().is_none());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
}

#[tokio::test]
async fn report_only_mode_logs_what_it_lets_through() {
    // The test binary's one global subscriber, writing what this thread logs to `captured`.
    let (captured, _guard) = crate::fault_server::capture_logs();
    let server = TestServer::start().await;
    let dns = FakeDns::new().answer("report-only-log.test", &[&["127.0.0.1"]]);
    let policy = Policy::builder().report_only(true).build().unwrap();
    let client = Client::builder()
        .ssrf_policy(policy)
        .dns_resolver(dns)
        .build()
        .unwrap();

    let literal = server.url("/report-only-log");
    assert_eq!(client.get(&literal).send().await.unwrap().status(), 200);
    let named = format!("http://report-only-log.test:{}/", server.addr.port());
    assert_eq!(client.get(&named).send().await.unwrap().status(), 200);

    let log = captured.text();
    let reported = |stage: &str, marker: &str| {
        log.lines().any(|line| {
            line.contains("report-only")
                && line.contains(stage)
                && line.contains("rule=\"ipv4-loopback\"")
                && line.contains(marker)
        })
    };
    assert!(reported("stage=Url", &literal), "{log}");
    assert!(reported("stage=Resolve", "report-only-log.test"), "{log}");
}
