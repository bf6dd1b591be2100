//! The guarded resolver: resolves once, judges every answer, hands on only
//! vetted addresses.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

#[cfg(test)]
use super::policy::DEFAULT_MAX_DNS_ANSWERS;
use super::policy::{MixedAnswers, Policy, report};
use super::refusal::{Refusal, Stage};

tokio::task_local! {
    /// The port the current request will connect to, set by the client
    /// around each transport call so port-restricted rules can be judged.
    static DESTINATION_PORT: u16;
}

/// Runs `future` (a transport call) with the destination port known to the
/// guarded resolver.
pub(crate) fn with_destination_port<F: Future>(
    port: u16,
    future: F,
) -> tokio::task::futures::TaskLocalFuture<u16, F> {
    DESTINATION_PORT.scope(port, future)
}

/// A [`reqwest::dns::Resolve`] that judges every answer with a [`Policy`].
///
/// It resolves a name once, through the system resolver or the resolver it
/// wraps, and returns only addresses the policy allows, so the address
/// reqwest connects to is an address that was checked. The lookup is bounded
/// by [`Policy::dns_timeout`] and at most [`Policy::max_dns_answers`]
/// addresses of the answer are read; the addresses handed on carry port 0, so
/// the connection goes to the port of the URL, the port that was judged. A denied answer
/// fails the lookup with a [`Refusal`] (findable with
/// [`find_refusal`](super::find_refusal) in the error reqwest returns);
/// with [`MixedAnswers::KeepAllowed`] denied answers are dropped instead,
/// as long as one allowed address remains. Answers with an IPv6 zone id are
/// always denied.
///
/// [`ClientBuilder::ssrf_policy`](crate::client::ClientBuilder::ssrf_policy)
/// installs one for you; this type is public for plain reqwest clients.
///
/// reqwest does not tell a resolver which port it will connect to. Inside
/// a stopover client the port is known and port-restricted rules apply;
/// used on its own with a plain reqwest client, port-restricted allow
/// rules never match (and port-restricted deny rules always do).
///
/// ```
/// use std::sync::Arc;
/// use stopover::client::ssrf::{GuardedResolver, Policy};
///
/// let resolver = GuardedResolver::new(Policy::default());
/// let client = reqwest::Client::builder()
///     .dns_resolver(Arc::new(resolver))
///     .no_proxy()
///     .build()?;
/// # drop(client);
/// # Ok::<(), reqwest::Error>(())
/// ```
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Policy,
    inner: Option<Arc<dyn Resolve>>,
}

impl std::fmt::Debug for GuardedResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedResolver")
            .field("policy", &self.policy)
            .field(
                "inner",
                &if self.inner.is_some() {
                    "custom"
                } else {
                    "system"
                },
            )
            .finish()
    }
}

impl GuardedResolver {
    /// Guards the system resolver (`getaddrinfo` on a blocking thread).
    pub fn new(policy: Policy) -> Self {
        GuardedResolver {
            policy,
            inner: None,
        }
    }

    /// Guards another resolver.
    pub fn wrap(policy: Policy, inner: Arc<dyn Resolve>) -> Self {
        GuardedResolver {
            policy,
            inner: Some(inner),
        }
    }

    /// The policy answers are judged by.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        // Read now, while the caller's task (and its port) is current.
        let port = DESTINATION_PORT.try_with(|port| *port).ok();
        let host = name.as_str().to_owned();
        let policy = self.policy.clone();

        // Name rules first: a refused name never reaches DNS.
        let verdict = policy
            .judge_name(&host)
            .map_err(|rule| Refusal::new(rule, Stage::Resolve).with_host(host.clone()));
        if let Err(refusal) = policy.enforce(verdict) {
            return Box::pin(std::future::ready(Err(refusal.into())));
        }

        let lookup = match &self.inner {
            Some(inner) => inner.resolve(name),
            None => system_lookup(host.clone()),
        };
        let (timeout, max_answers) = (policy.dns_timeout(), policy.max_dns_answers());
        Box::pin(async move {
            let answers = match tokio::time::timeout(timeout, lookup).await {
                Ok(answers) => answers?,
                Err(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("DNS lookup timed out after {timeout:?}"),
                    )
                    .into());
                }
            };
            // Never more than the cap is read: a resolver may hand out an endless iterator.
            // The port is cleared because hyper-util connects to an answer's own port when the
            // URL names none, and the port judged is the URL's.
            let answers: Vec<SocketAddr> = answers
                .take(max_answers)
                .map(|mut addr| {
                    addr.set_port(0);
                    addr
                })
                .collect();
            let vetted = vet(&policy, &host, port, answers)?;
            Ok(Box::new(vetted.into_iter()) as Addrs)
        })
    }
}

/// Judges every answer and applies the mixed-answers and report-only modes.
fn vet(
    policy: &Policy,
    host: &str,
    port: Option<u16>,
    answers: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, Refusal> {
    let mut first_refusal = None;
    let mut allowed = Vec::with_capacity(answers.len());
    for addr in &answers {
        match policy.judge_socket(*addr, port) {
            Ok(()) => allowed.push(*addr),
            Err(denied) => {
                first_refusal.get_or_insert_with(|| {
                    Refusal::new(denied.rule, Stage::Resolve)
                        .with_host(host)
                        .with_addr(addr.ip(), denied.embedded)
                });
            }
        }
    }
    let Some(refusal) = first_refusal else {
        return Ok(allowed);
    };
    if policy.is_report_only() {
        report(&refusal);
        return Ok(answers);
    }
    match policy.mixed_answers() {
        MixedAnswers::KeepAllowed if !allowed.is_empty() => {
            tracing::debug!(
                host,
                rule = refusal.rule().as_str(),
                dropped = answers.len() - allowed.len(),
                "SSRF policy dropped denied DNS answers"
            );
            Ok(allowed)
        }
        _ => Err(refusal),
    }
}

/// The system resolver, run on a blocking thread like reqwest's own.
fn system_lookup(host: String) -> Resolving {
    Box::pin(async move {
        let answers = tokio::net::lookup_host((host.as_str(), 0)).await?;
        Ok(Box::new(answers.collect::<Vec<_>>().into_iter()) as Addrs)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::client::ssrf::{Rule, find_refusal};

    /// Answers from a fixed table and counts its calls.
    struct FakeResolver {
        answers: HashMap<&'static str, Vec<IpAddr>>,
        calls: AtomicUsize,
    }

    impl FakeResolver {
        fn new(entries: &[(&'static str, &[&str])]) -> Arc<Self> {
            let answers = entries
                .iter()
                .map(|(name, addrs)| {
                    let addrs = addrs
                        .iter()
                        .map(|a| a.parse().expect("test address"))
                        .collect();
                    (*name, addrs)
                })
                .collect();
            Arc::new(FakeResolver {
                answers,
                calls: AtomicUsize::new(0),
            })
        }
    }

    impl Resolve for FakeResolver {
        fn resolve(&self, name: Name) -> Resolving {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let answer = self.answers.get(name.as_str()).cloned();
            Box::pin(async move {
                let addrs = answer.ok_or("NXDOMAIN")?;
                let addrs: Vec<SocketAddr> =
                    addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
                Ok(Box::new(addrs.into_iter()) as Addrs)
            })
        }
    }

    fn name(text: &str) -> Name {
        text.parse().expect("valid name")
    }

    async fn resolve(resolver: &GuardedResolver, host: &str) -> Result<Vec<IpAddr>, Refusal> {
        match resolver.resolve(name(host)).await {
            Ok(addrs) => Ok(addrs.map(|a| a.ip()).collect()),
            Err(err) => Err(find_refusal(&*err).expect("a refusal").clone()),
        }
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter()
            .map(|a| a.parse().expect("test address"))
            .collect()
    }

    #[tokio::test]
    async fn public_answers_pass_through() {
        let fake = FakeResolver::new(&[(
            "example.test",
            &["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
        )]);
        let resolver = GuardedResolver::wrap(Policy::default(), fake.clone());
        let answer = resolve(&resolver, "example.test").await;
        assert_eq!(
            answer,
            Ok(ips(&[
                "93.184.215.14",
                "2606:2800:21f:cb07:6820:80da:af6b:8b2c"
            ]))
        );
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn name_resolving_to_loopback_is_refused() {
        let fake = FakeResolver::new(&[("internal.test", &["127.0.0.1"])]);
        let resolver = GuardedResolver::wrap(Policy::default(), fake);
        let refusal = resolve(&resolver, "internal.test").await.unwrap_err();
        assert_eq!(refusal.rule(), Rule::Ipv4Loopback);
        assert_eq!(refusal.stage(), Stage::Resolve);
        assert_eq!(refusal.host(), Some("internal.test"));
    }

    #[tokio::test]
    async fn refusal_message_does_not_reveal_the_resolved_address() {
        let fake = FakeResolver::new(&[("internal.test", &["10.11.12.13"])]);
        let resolver = GuardedResolver::wrap(Policy::default(), fake);
        let refusal = resolve(&resolver, "internal.test").await.unwrap_err();
        let message = refusal.to_string();
        assert!(
            message.contains("host resolved to a denied address (rule ipv4-private)"),
            "{message}"
        );
        assert!(!message.contains("10.11.12.13"), "{message}");
        assert_eq!(refusal.addr(), Some("10.11.12.13".parse().unwrap()));
    }

    #[tokio::test]
    async fn mixed_answers_refuse_the_name_by_default() {
        let fake = FakeResolver::new(&[("mixed.test", &["93.184.215.14", "169.254.169.254"])]);
        let resolver = GuardedResolver::wrap(Policy::default(), fake);
        let refusal = resolve(&resolver, "mixed.test").await.unwrap_err();
        assert_eq!(refusal.rule(), Rule::Ipv4LinkLocal);
    }

    #[tokio::test]
    async fn keep_allowed_drops_denied_answers() {
        let fake =
            FakeResolver::new(&[("mixed.test", &["169.254.169.254", "93.184.215.14", "::1"])]);
        let policy = Policy::builder()
            .mixed_answers(MixedAnswers::KeepAllowed)
            .build()
            .unwrap();
        let resolver = GuardedResolver::wrap(policy, fake);
        assert_eq!(
            resolve(&resolver, "mixed.test").await,
            Ok(ips(&["93.184.215.14"]))
        );
    }

    #[tokio::test]
    async fn keep_allowed_still_refuses_when_nothing_is_left() {
        let fake = FakeResolver::new(&[("internal.test", &["10.0.0.1", "fd00::1"])]);
        let policy = Policy::builder()
            .mixed_answers(MixedAnswers::KeepAllowed)
            .build()
            .unwrap();
        let resolver = GuardedResolver::wrap(policy, fake);
        assert_eq!(
            resolve(&resolver, "internal.test")
                .await
                .unwrap_err()
                .rule(),
            Rule::Ipv4Private
        );
    }

    #[tokio::test]
    async fn zoned_answers_are_refused() {
        struct Zoned;
        impl Resolve for Zoned {
            fn resolve(&self, _: Name) -> Resolving {
                let addr = std::net::SocketAddrV6::new("2606:4700::1111".parse().unwrap(), 0, 0, 2);
                let addrs: Addrs = Box::new(std::iter::once(SocketAddr::V6(addr)));
                Box::pin(std::future::ready(Ok(addrs)))
            }
        }
        let resolver = GuardedResolver::wrap(Policy::default(), Arc::new(Zoned));
        assert_eq!(
            resolve(&resolver, "zoned.test").await.unwrap_err().rule(),
            Rule::ZoneId
        );
    }

    #[tokio::test]
    async fn denied_names_never_reach_the_inner_resolver() {
        let fake = FakeResolver::new(&[("metadata.google.internal", &["93.184.215.14"])]);
        let resolver = GuardedResolver::wrap(Policy::default(), fake.clone());
        let refusal = resolve(&resolver, "metadata.google.internal")
            .await
            .unwrap_err();
        assert_eq!(refusal.rule(), Rule::HostMetadata);
        assert_eq!(fake.calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn report_only_lets_denied_answers_through() {
        let fake = FakeResolver::new(&[("internal.test", &["127.0.0.1"])]);
        let policy = Policy::builder().report_only(true).build().unwrap();
        let resolver = GuardedResolver::wrap(policy, fake);
        assert_eq!(
            resolve(&resolver, "internal.test").await,
            Ok(ips(&["127.0.0.1"]))
        );
    }

    #[tokio::test]
    async fn port_restricted_allow_rule_needs_the_destination_port() {
        let fake = FakeResolver::new(&[("service.test", &["127.0.0.2"])]);
        let policy = Policy::builder()
            .allow_addr("127.0.0.2:8080")
            .build()
            .unwrap();
        let resolver = GuardedResolver::wrap(policy, fake);
        assert_eq!(
            resolve(&resolver, "service.test").await.unwrap_err().rule(),
            Rule::Ipv4Loopback
        );
        let on_port = with_destination_port(8080, resolve(&resolver, "service.test")).await;
        assert_eq!(on_port, Ok(ips(&["127.0.0.2"])));
        let other_port = with_destination_port(22, resolve(&resolver, "service.test")).await;
        assert_eq!(other_port.unwrap_err().rule(), Rule::Ipv4Loopback);
    }

    /// Answers every name with `count` addresses and counts how many were read.
    struct Flood {
        count: usize,
        read: Arc<AtomicUsize>,
    }

    impl Resolve for Flood {
        fn resolve(&self, _: Name) -> Resolving {
            let read = Arc::clone(&self.read);
            let addrs: Addrs = Box::new((0..self.count).map(move |i| {
                read.fetch_add(1, Ordering::SeqCst);
                let [a, b] = (i as u16).to_be_bytes();
                SocketAddr::new(IpAddr::from([93, 184, a, b]), 0)
            }));
            Box::pin(std::future::ready(Ok(addrs)))
        }
    }

    #[tokio::test]
    async fn answers_past_the_cap_are_neither_read_nor_handed_on() {
        let read = Arc::new(AtomicUsize::new(0));
        let flood = Arc::new(Flood {
            count: 1000,
            read: Arc::clone(&read),
        });
        let resolver = GuardedResolver::wrap(Policy::default(), flood);
        let answer = resolve(&resolver, "flood.test").await.unwrap();
        assert_eq!(answer.len(), DEFAULT_MAX_DNS_ANSWERS);
        assert_eq!(read.load(Ordering::SeqCst), DEFAULT_MAX_DNS_ANSWERS);
    }

    #[tokio::test]
    async fn the_answer_cap_can_be_set() {
        let flood = Arc::new(Flood {
            count: 1000,
            read: Arc::new(AtomicUsize::new(0)),
        });
        let policy = Policy::builder().max_dns_answers(3).build().unwrap();
        let resolver = GuardedResolver::wrap(policy, flood);
        assert_eq!(
            resolve(&resolver, "flood.test").await,
            Ok(ips(&["93.184.0.0", "93.184.0.1", "93.184.0.2"]))
        );
    }

    /// A resolver that never answers.
    struct Silent;

    impl Resolve for Silent {
        fn resolve(&self, _: Name) -> Resolving {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_resolver_times_out_after_the_dns_timeout() {
        let policy = Policy::builder()
            .dns_timeout(std::time::Duration::from_secs(3))
            .build()
            .unwrap();
        let resolver = GuardedResolver::wrap(policy, Arc::new(Silent));
        let started = tokio::time::Instant::now();
        let lookup = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            resolver.resolve(name("silent.test")),
        );
        let err = match lookup.await {
            Ok(Ok(_)) => panic!("a silent resolver has no answer"),
            Ok(Err(err)) => err,
            Err(_) => panic!("the lookup outlived the DNS timeout"),
        };
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(3));
        let io = err
            .downcast_ref::<std::io::Error>()
            .expect("a timed-out lookup is an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
        assert!(find_refusal(&*err).is_none());
    }

    #[tokio::test]
    async fn answers_carry_no_port_of_the_inner_resolver() {
        // hyper-util connects to an answer's own port when the URL has no explicit one, so a
        // port from the inner resolver would send the connection to a port nobody judged.
        struct WithPort;
        impl Resolve for WithPort {
            fn resolve(&self, _: Name) -> Resolving {
                let addrs: Addrs =
                    Box::new(std::iter::once(SocketAddr::from(([127, 0, 0, 2], 22))));
                Box::pin(std::future::ready(Ok(addrs)))
            }
        }
        let policy = Policy::builder()
            .allow_addr("127.0.0.2:80")
            .build()
            .unwrap();
        let resolver = GuardedResolver::wrap(policy, Arc::new(WithPort));
        let lookup = async { resolver.resolve(name("steer.test")).await };
        let answer = with_destination_port(80, lookup)
            .await
            .map_err(|err| err.to_string())
            .map(|addrs| addrs.collect::<Vec<_>>());
        assert_eq!(answer, Ok(vec![SocketAddr::from(([127, 0, 0, 2], 0))]));
    }

    #[tokio::test]
    async fn resolver_errors_pass_through_unchanged() {
        let fake = FakeResolver::new(&[]);
        let resolver = GuardedResolver::wrap(Policy::default(), fake);
        let err = match resolver.resolve(name("nowhere.test")).await {
            Ok(_) => panic!("an unknown name must fail"),
            Err(err) => err,
        };
        assert!(find_refusal(&*err).is_none());
        assert_eq!(err.to_string(), "NXDOMAIN");
    }
}
