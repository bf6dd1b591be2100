//! The policy: what the guard allows, and its builder.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use ipnet::{IpNet, Ipv6Net};
use url::{Host, Url};

use super::refusal::{Refusal, Stage};
use super::rule::Rule;
use super::tables::{Builtin, Denied};

/// `::ffff:0:0/96`: rules inside it are refused, allow rules covering it too.
pub(super) const IPV4_MAPPED: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);

/// How long the guarded resolver waits for an answer by default.
pub(crate) const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(10);

/// How many addresses of one answer the guarded resolver reads and hands on by default.
pub(crate) const DEFAULT_MAX_DNS_ANSWERS: usize = 16;

/// Well-known cloud metadata names, refused before any DNS query.
const METADATA_NAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
];

/// When the SSRF tripwire judges the peer address of a connection (see
/// [`PolicyBuilder::peer_check`](super::PolicyBuilder::peer_check)).
///
/// Both catch the same thing, a connection that reached a refused address although the URL check
/// and the guarded resolver stand before every connect; they differ in what has been sent by
/// then and in what they cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum PeerCheck {
    /// The peer of the connection each response arrived on is judged before the response
    /// reaches any middleware; a refused peer turns the response into a
    /// [`Stage::Response`](super::Stage::Response) refusal and its body is never read. The
    /// request has been written by then. It costs one address lookup per response and no
    /// allocation.
    #[default]
    OnResponse,
    /// The peer of every new connection is judged before a request byte is written on it, and
    /// a refused one is closed ([`Stage::Connect`](super::Stage::Connect)). It needs a layer
    /// on reqwest's connector, and reqwest boxes a layered connector that hyper-util clones for
    /// every request, pooled connection or not: about 18 allocations and 3,000 instructions
    /// per request with reqwest 0.13 (BENCHMARKS.md).
    OnConnect,
}

/// What the guarded resolver does when a name resolves to both allowed and
/// denied addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MixedAnswers {
    /// Refuse the name as a whole (the default): a name that points inside
    /// and outside at once is a rebinding signal, and refusing it gives the
    /// same answer whichever address a connection would have tried first.
    #[default]
    RefuseName,
    /// Keep only the allowed addresses and connect to those.
    KeepAllowed,
}

/// The SSRF policy: which URLs and addresses the client may reach.
///
/// `Policy::default()` is the safe default: schemes `http` and `https`, any
/// port except 0, no user info in URLs, the host-name rules (`localhost`,
/// `*.localhost`, `*.local`, `*.home.arpa`, `*.internal`, metadata names),
/// and every special-purpose address of the IANA registries denied, with
/// IPv4 addresses embedded in IPv6 judged by the IPv4 table; DNS lookups
/// are bounded to 10 seconds and 16 addresses.
///
/// An address is judged in this order, and the first step that answers wins:
///
/// 1. an IPv6 zone id: denied;
/// 2. the caller's deny rules ([`PolicyBuilder::deny_addr`](super::PolicyBuilder::deny_addr)): denied, also
///    when they match the IPv4 address embedded in an IPv6 address;
/// 3. the caller's allow rules ([`PolicyBuilder::allow_addr`](super::PolicyBuilder::allow_addr)): allowed;
/// 4. the built-in tables: denied;
/// 5. anything else: allowed.
///
/// Host names follow the same shape: caller deny list, caller allow list,
/// built-in name rules, then the allow list (if any) as a closed set. A host
/// allowed by name is still resolved and its addresses still checked.
///
/// `Policy` is cheap to clone (an `Arc` inside).
///
/// ```
/// use stopover::client::ssrf::Policy;
/// use url::Url;
///
/// let policy = Policy::default();
/// for denied in ["http://2130706433/", "http://[::ffff:169.254.169.254]/", "http://metadata.google.internal/"] {
///     assert!(policy.check_url(&Url::parse(denied).unwrap()).is_err(), "{denied}");
/// }
/// assert!(policy.check_url(&Url::parse("https://example.com/hook").unwrap()).is_ok());
/// ```
#[derive(Clone, Default)]
pub struct Policy {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) schemes: Vec<String>,
    pub(super) allow_userinfo: bool,
    pub(super) ports: Option<Vec<u16>>,
    pub(super) allow_hosts: Vec<HostPattern>,
    pub(super) deny_hosts: Vec<HostPattern>,
    pub(super) allow_rules: Vec<AddrRule>,
    pub(super) deny_rules: Vec<AddrRule>,
    pub(super) builtin: Builtin,
    pub(super) mixed_answers: MixedAnswers,
    pub(super) dns_timeout: Duration,
    pub(super) max_dns_answers: usize,
    pub(super) report_only: bool,
    pub(super) peer_check: PeerCheck,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            schemes: vec!["http".to_owned(), "https".to_owned()],
            allow_userinfo: false,
            ports: None,
            allow_hosts: Vec::new(),
            deny_hosts: Vec::new(),
            allow_rules: Vec::new(),
            deny_rules: Vec::new(),
            builtin: Builtin::default(),
            mixed_answers: MixedAnswers::default(),
            dns_timeout: DEFAULT_DNS_TIMEOUT,
            max_dns_answers: DEFAULT_MAX_DNS_ANSWERS,
            report_only: false,
            peer_check: PeerCheck::default(),
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("schemes", &self.inner.schemes)
            .field("ports", &self.inner.ports)
            .field("allow_rules", &self.inner.allow_rules.len())
            .field("deny_rules", &self.inner.deny_rules.len())
            .field("mixed_answers", &self.inner.mixed_answers)
            .field("dns_timeout", &self.inner.dns_timeout)
            .field("max_dns_answers", &self.inner.max_dns_answers)
            .field("report_only", &self.inner.report_only)
            .field("peer_check", &self.inner.peer_check)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// Whether refusals are only logged (see [`PolicyBuilder::report_only`](super::PolicyBuilder::report_only)).
    pub fn is_report_only(&self) -> bool {
        self.inner.report_only
    }

    /// When the tripwire judges the peer (see [`PolicyBuilder::peer_check`](super::PolicyBuilder::peer_check)).
    pub fn peer_check(&self) -> PeerCheck {
        self.inner.peer_check
    }

    /// What the resolver does with mixed answers.
    pub fn mixed_answers(&self) -> MixedAnswers {
        self.inner.mixed_answers
    }

    /// How long the guarded resolver waits for an answer (see [`PolicyBuilder::dns_timeout`](super::PolicyBuilder::dns_timeout)).
    pub fn dns_timeout(&self) -> Duration {
        self.inner.dns_timeout
    }

    /// How many addresses of one answer the guarded resolver reads and hands on (see
    /// [`PolicyBuilder::max_dns_answers`](super::PolicyBuilder::max_dns_answers)).
    pub fn max_dns_answers(&self) -> usize {
        self.inner.max_dns_answers
    }

    /// Judges one address, with the port unknown.
    ///
    /// Allow rules restricted to ports do not apply here (the port is
    /// unknown), while deny rules restricted to ports do: both choices fail
    /// closed. This is the verdict only; report-only mode does not change it.
    ///
    /// ```
    /// use stopover::client::ssrf::Policy;
    ///
    /// let policy = Policy::default();
    /// assert_eq!(policy.check_ip("10.1.2.3".parse().unwrap()).unwrap_err().rule().as_str(), "ipv4-private");
    /// assert!(policy.check_ip("64:ff9b::808:808".parse().unwrap()).is_ok()); // NAT64 of 8.8.8.8
    /// ```
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.judge_addr(ip, None)
            .map_err(|denied| Refusal::new(denied.rule, Stage::Url).with_addr(ip, denied.embedded))
    }

    /// Judges a URL without any DNS query: scheme, user info, host name,
    /// port, and the address when the host is an IP literal.
    ///
    /// Give it the `url::Url` the client will use: WHATWG parsing has already
    /// turned `0x7f.1`, `2130706433` or `１２７．０．０．１` into `127.0.0.1`.
    /// This is the verdict only; report-only mode does not change it. The
    /// returned refusal carries the URL.
    ///
    /// ```
    /// use stopover::client::ssrf::Policy;
    /// use url::Url;
    ///
    /// let refusal = Policy::default().check_url(&Url::parse("http://0x7f.1/").unwrap()).unwrap_err();
    /// assert_eq!(refusal.rule().as_str(), "ipv4-loopback");
    /// ```
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        self.judge_url(url)
            .map_err(|refusal| refusal.with_url(url.clone()))
    }

    fn judge_url(&self, url: &Url) -> Result<(), Refusal> {
        let inner = &*self.inner;
        let refuse = |rule| Err(Refusal::new(rule, Stage::Url));
        if !inner.schemes.iter().any(|scheme| scheme == url.scheme()) {
            return refuse(Rule::Scheme);
        }
        if !inner.allow_userinfo && (!url.username().is_empty() || url.password().is_some()) {
            return refuse(Rule::Userinfo);
        }
        let Some(port) = url.port_or_known_default() else {
            return refuse(Rule::Port);
        };
        let ip = match url.host() {
            None => return refuse(Rule::NoHost),
            Some(Host::Domain(name)) => {
                return self
                    .judge_name(name)
                    .map_err(|rule| Refusal::new(rule, Stage::Url).with_host(name))
                    .and_then(|()| self.judge_port(port));
            }
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        };
        if !inner.allow_hosts.is_empty()
            && !inner
                .allow_rules
                .iter()
                .any(|r| r.matches(ip, Some(port), false))
        {
            return refuse(Rule::UserHostNotAllowed);
        }
        self.judge_port(port)?;
        self.judge_addr(ip, Some(port))
            .map_err(|denied| Refusal::new(denied.rule, Stage::Url).with_addr(ip, denied.embedded))
    }

    fn judge_port(&self, port: u16) -> Result<(), Refusal> {
        let allowed = port != 0
            && match &self.inner.ports {
                None => true,
                Some(ports) => ports.contains(&port),
            };
        if allowed {
            Ok(())
        } else {
            Err(Refusal::new(Rule::Port, Stage::Url))
        }
    }

    /// Judges a host name as found in a URL or handed to the resolver.
    pub(crate) fn judge_name(&self, name: &str) -> Result<(), Rule> {
        let inner = &*self.inner;
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.is_empty() || name.split('.').any(str::is_empty) {
            return Err(Rule::HostInvalid);
        }
        // The resolver may see names that did not come through `url`.
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        if inner.deny_hosts.iter().any(|p| p.matches(name)) {
            return Err(Rule::UserHostDeny);
        }
        if inner.allow_hosts.iter().any(|p| p.matches(name)) {
            return Ok(());
        }
        if let Some(rule) = builtin_name_rule(name) {
            return Err(rule);
        }
        if !inner.allow_hosts.is_empty() {
            return Err(Rule::UserHostNotAllowed);
        }
        Ok(())
    }

    /// Judges an address, with the destination port when it is known.
    pub(crate) fn judge_addr(&self, ip: IpAddr, port: Option<u16>) -> Result<(), Denied> {
        let inner = &*self.inner;
        let embedded = match ip {
            IpAddr::V4(_) => None,
            IpAddr::V6(v6) => inner.builtin.embedded_v4(v6),
        };
        let denied_by_user = inner.deny_rules.iter().any(|rule| {
            rule.matches(ip, port, true)
                || embedded.is_some_and(|(_, v4)| rule.matches(IpAddr::V4(v4), port, true))
        });
        if denied_by_user {
            return Err(Denied {
                rule: Rule::UserDeny,
                embedded,
            });
        }
        if inner
            .allow_rules
            .iter()
            .any(|rule| rule.matches(ip, port, false))
        {
            return Ok(());
        }
        match ip {
            IpAddr::V4(v4) => inner.builtin.check_v4(v4),
            IpAddr::V6(v6) => inner.builtin.check_v6(v6),
        }
    }

    /// Judges a socket address from a resolver or a socket: zone ids first.
    pub(crate) fn judge_socket(&self, addr: SocketAddr, port: Option<u16>) -> Result<(), Denied> {
        if let SocketAddr::V6(v6) = addr {
            if v6.scope_id() != 0 {
                return Err(Denied {
                    rule: Rule::ZoneId,
                    embedded: None,
                });
            }
        }
        self.judge_addr(addr.ip(), port)
    }

    /// Applies the mode: in report-only mode a refusal is logged and let through.
    pub(crate) fn enforce(&self, verdict: Result<(), Refusal>) -> Result<(), Refusal> {
        #[cfg(feature = "metrics")]
        if let Err(refusal) = &verdict {
            {
                let mode = if self.inner.report_only {
                    "report_only"
                } else {
                    "enforced"
                };
                let rule = refusal.rule().as_str();
                ::metrics::counter!("stopover.client.ssrf.refusals", "rule" => rule, "mode" => mode)
                .increment(1);
            }
        }
        match verdict {
            Err(refusal) if self.inner.report_only => {
                report(&refusal);
                Ok(())
            }
            verdict => verdict,
        }
    }
}

/// Logs a refusal that report-only mode lets through.
pub(crate) fn report(refusal: &Refusal) {
    tracing::warn!(
        rule = refusal.rule().as_str(),
        stage = ?refusal.stage(),
        url = refusal.url().map(Url::as_str),
        hop = refusal.hop(),
        host = refusal.host(),
        addr = ?refusal.addr(),
        "SSRF policy would refuse this destination (report-only mode, letting it through)"
    );
}

fn builtin_name_rule(name: &str) -> Option<Rule> {
    let under = |zone: &str| {
        name == zone
            || name
                .strip_suffix(zone)
                .is_some_and(|rest| rest.ends_with('.'))
    };
    if METADATA_NAMES.contains(&name) {
        Some(Rule::HostMetadata)
    } else if under("localhost") {
        Some(Rule::HostLocalhost)
    } else if under("local") {
        Some(Rule::HostMdns)
    } else if under("home.arpa") {
        Some(Rule::HostHomeArpa)
    } else if under("internal") {
        Some(Rule::HostInternal)
    } else {
        None
    }
}

/// A host pattern: `example.com` (that name) or `*.example.com` (names under it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HostPattern {
    Exact(String),
    Under(String),
}

impl HostPattern {
    pub(super) fn parse(input: &str) -> Result<Self, PolicyError> {
        let invalid = |reason: &'static str| PolicyError::InvalidHostPattern {
            pattern: input.to_owned(),
            reason,
        };
        let (wildcard, name) = match input.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, input),
        };
        if name.contains('*') {
            return Err(invalid("only a leading `*.` wildcard is supported"));
        }
        // The same IDNA and lower-casing the URL parser applies to hosts.
        let name = match Host::parse(name) {
            Ok(Host::Domain(name)) => name,
            Ok(Host::Ipv4(_) | Host::Ipv6(_)) => {
                return Err(invalid("an IP address; use allow_addr or deny_addr"));
            }
            Err(_) => return Err(invalid("not a valid host name")),
        };
        let name = name.strip_suffix('.').unwrap_or(&name).to_owned();
        if name.is_empty() || name.split('.').any(str::is_empty) {
            return Err(invalid("empty label"));
        }
        Ok(if wildcard {
            HostPattern::Under(name)
        } else {
            HostPattern::Exact(name)
        })
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => name == exact,
            HostPattern::Under(zone) => name
                .strip_suffix(zone.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
        }
    }
}

/// An address rule: a network and, optionally, a port range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AddrRule {
    pub(super) net: IpNet,
    pub(super) ports: Option<RangeInclusive<u16>>,
}

impl AddrRule {
    /// Parses `10.0.0.0/8`, `127.0.0.1`, `127.0.0.1:8080`,
    /// `127.0.0.0/8:8000-8999`, `::1`, `fd00::/8`, `[::1]:8080` or
    /// `[fd00::/8]:443`.
    pub(super) fn parse(input: &str) -> Result<Self, PolicyError> {
        let invalid = |reason: &'static str| PolicyError::InvalidAddrRule {
            rule: input.to_owned(),
            reason,
        };
        let (net, ports) = if let Some(rest) = input.strip_prefix('[') {
            let (net, after) = rest.split_once(']').ok_or_else(|| invalid("missing `]`"))?;
            match after {
                "" => (net, None),
                _ => match after.strip_prefix(':') {
                    Some(ports) => (net, Some(ports)),
                    None => return Err(invalid("expected `:port` after `]`")),
                },
            }
        } else if input.matches(':').count() == 1 {
            let (net, ports) = input.split_once(':').ok_or_else(|| invalid("malformed"))?;
            (net, Some(ports))
        } else {
            (input, None)
        };
        let net: IpNet = if net.contains('/') {
            net.parse()
                .map_err(|_| invalid("not a network in CIDR notation"))?
        } else {
            let ip: IpAddr = net.parse().map_err(|_| invalid("not an IP address"))?;
            IpNet::from(ip)
        };
        if net.trunc() != net {
            return Err(invalid("host bits set after the prefix length"));
        }
        if let IpNet::V6(v6) = net {
            if IPV4_MAPPED.contains(&v6) {
                return Err(invalid(
                    "written in IPv4-mapped form; write the IPv4 network instead",
                ));
            }
        }
        let ports = match ports {
            None => None,
            Some(text) => {
                let parse = |p: &str| match p.parse::<u16>() {
                    Ok(0) | Err(_) => Err(invalid("ports must be 1 to 65535")),
                    Ok(port) => Ok(port),
                };
                let (low, high) = match text.split_once('-') {
                    Some((low, high)) => (parse(low)?, parse(high)?),
                    None => {
                        let port = parse(text)?;
                        (port, port)
                    }
                };
                if low > high {
                    return Err(invalid("empty port range"));
                }
                Some(low..=high)
            }
        };
        Ok(AddrRule { net, ports })
    }

    /// Whether the rule covers `ip` on `port`; with the port unknown, a
    /// port-restricted rule matches only if `when_port_unknown`.
    fn matches(&self, ip: IpAddr, port: Option<u16>, when_port_unknown: bool) -> bool {
        self.net.contains(&ip)
            && match (&self.ports, port) {
                (None, _) => true,
                (Some(range), Some(port)) => range.contains(&port),
                (Some(_), None) => when_port_unknown,
            }
    }

    pub(super) fn is_wholesale_local(&self) -> bool {
        let covers = |ip: IpAddr| {
            self.net.contains(&ip) && self.net.prefix_len() < self.net.max_prefix_len()
        };
        // A `/0` network covers its family's loopback, so it needs no case of its own.
        covers(IpAddr::V4(Ipv4Addr::LOCALHOST))
            || covers(IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)))
            || covers(IpAddr::V6(Ipv6Addr::LOCALHOST))
            || covers(IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)))
    }
}

/// An invalid policy setting, naming the input at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A scheme other than `http` or `https`: the client speaks no other.
    #[error("scheme {0:?} cannot be allowed: the client only speaks http and https")]
    UnsupportedScheme(String),
    /// The allowed scheme set is empty.
    #[error("the allowed scheme set is empty")]
    NoSchemes,
    /// Port 0 was listed, or the allowed port set is empty.
    #[error("invalid allowed ports: {0}")]
    InvalidPorts(&'static str),
    /// A host allow or deny pattern is malformed.
    #[error("invalid host pattern {pattern:?}: {reason}")]
    InvalidHostPattern {
        /// The pattern as given.
        pattern: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An address allow or deny rule is malformed.
    #[error("invalid address rule {rule:?}: {reason}")]
    InvalidAddrRule {
        /// The rule as given.
        rule: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A DNS limit ([`PolicyBuilder::dns_timeout`](super::PolicyBuilder::dns_timeout), [`PolicyBuilder::max_dns_answers`](super::PolicyBuilder::max_dns_answers)) is
    /// out of range.
    #[error("invalid {setting}: {reason}")]
    InvalidDnsLimit {
        /// The setting, named after its builder method.
        setting: &'static str,
        /// What is wrong with the value.
        reason: &'static str,
    },
    /// A NAT64 prefix is malformed or has a length RFC 6052 does not define.
    #[error("invalid NAT64 prefix {prefix:?}: {reason}")]
    InvalidNat64Prefix {
        /// The prefix as given.
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
