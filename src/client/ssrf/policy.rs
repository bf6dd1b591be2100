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
const IPV4_MAPPED: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);

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
/// [`PolicyBuilder::peer_check`]).
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
/// 2. the caller's deny rules ([`PolicyBuilder::deny_addr`]): denied, also
///    when they match the IPv4 address embedded in an IPv6 address;
/// 3. the caller's allow rules ([`PolicyBuilder::allow_addr`]): allowed;
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
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    schemes: Vec<String>,
    allow_userinfo: bool,
    ports: Option<Vec<u16>>,
    allow_hosts: Vec<HostPattern>,
    deny_hosts: Vec<HostPattern>,
    allow_rules: Vec<AddrRule>,
    deny_rules: Vec<AddrRule>,
    builtin: Builtin,
    mixed_answers: MixedAnswers,
    dns_timeout: Duration,
    max_dns_answers: usize,
    report_only: bool,
    peer_check: PeerCheck,
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
    /// Starts a policy from the safe default.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::default()
    }

    /// Whether refusals are only logged (see [`PolicyBuilder::report_only`]).
    pub fn is_report_only(&self) -> bool {
        self.inner.report_only
    }

    /// When the tripwire judges the peer (see [`PolicyBuilder::peer_check`]).
    pub fn peer_check(&self) -> PeerCheck {
        self.inner.peer_check
    }

    /// What the resolver does with mixed answers.
    pub fn mixed_answers(&self) -> MixedAnswers {
        self.inner.mixed_answers
    }

    /// How long the guarded resolver waits for an answer (see [`PolicyBuilder::dns_timeout`]).
    pub fn dns_timeout(&self) -> Duration {
        self.inner.dns_timeout
    }

    /// How many addresses of one answer the guarded resolver reads and hands on (see
    /// [`PolicyBuilder::max_dns_answers`]).
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
enum HostPattern {
    Exact(String),
    Under(String),
}

impl HostPattern {
    fn parse(input: &str) -> Result<Self, PolicyError> {
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
struct AddrRule {
    net: IpNet,
    ports: Option<RangeInclusive<u16>>,
}

impl AddrRule {
    /// Parses `10.0.0.0/8`, `127.0.0.1`, `127.0.0.1:8080`,
    /// `127.0.0.0/8:8000-8999`, `::1`, `fd00::/8`, `[::1]:8080` or
    /// `[fd00::/8]:443`.
    fn parse(input: &str) -> Result<Self, PolicyError> {
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

    fn is_wholesale_local(&self) -> bool {
        let covers = |ip: IpAddr| {
            self.net.contains(&ip) && self.net.prefix_len() < self.net.max_prefix_len()
        };
        self.net.prefix_len() == 0
            || covers(IpAddr::V4(Ipv4Addr::LOCALHOST))
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
    /// A DNS limit ([`PolicyBuilder::dns_timeout`], [`PolicyBuilder::max_dns_answers`]) is
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

/// Builds a [`Policy`]; every setter documents its default, and
/// [`PolicyBuilder::build`] validates everything at once.
///
/// ```
/// use stopover::client::ssrf::{MixedAnswers, Policy};
///
/// let policy = Policy::builder()
///     .schemes(["https"])
///     .deny_host("*.corp.example")
///     .allow_addr("10.20.0.5/32:8443") // one internal service, one port
///     .deny_addr("203.0.113.0/24")
///     .mixed_answers(MixedAnswers::KeepAllowed)
///     .build()?;
/// assert!(policy.check_url(&"https://10.20.0.5:8443/".parse().unwrap()).is_ok());
/// assert!(policy.check_url(&"https://10.20.0.5:22/".parse().unwrap()).is_err());
/// # Ok::<(), stopover::client::ssrf::PolicyError>(())
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct PolicyBuilder {
    inner: Inner,
    error: Option<PolicyError>,
}

impl PolicyBuilder {
    fn fail(mut self, error: PolicyError) -> Self {
        self.error.get_or_insert(error);
        self
    }

    /// The URL schemes allowed. Default: `http` and `https`. Only those two
    /// can be listed.
    pub fn schemes<I, S>(mut self, schemes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = Vec::new();
        for scheme in schemes {
            let scheme = scheme.as_ref().to_ascii_lowercase();
            if scheme != "http" && scheme != "https" {
                return self.fail(PolicyError::UnsupportedScheme(scheme));
            }
            if !set.contains(&scheme) {
                set.push(scheme);
            }
        }
        if set.is_empty() {
            return self.fail(PolicyError::NoSchemes);
        }
        self.inner.schemes = set;
        self
    }

    /// Whether URLs may carry a user name or password. Default: `false`.
    pub fn allow_userinfo(mut self, allow: bool) -> Self {
        self.inner.allow_userinfo = allow;
        self
    }

    /// The destination ports allowed (the URL's port, or 80/443 by
    /// default). Default: any port but 0.
    pub fn ports<I: IntoIterator<Item = u16>>(mut self, ports: I) -> Self {
        let ports: Vec<u16> = ports.into_iter().collect();
        if ports.contains(&0) {
            return self.fail(PolicyError::InvalidPorts("port 0 cannot be allowed"));
        }
        if ports.is_empty() {
            return self.fail(PolicyError::InvalidPorts("the set is empty"));
        }
        self.inner.ports = Some(ports);
        self
    }

    /// Allows a host name: `api.example.com`, or `*.example.com` for the
    /// names under it. Default: none.
    ///
    /// Once one is given, the allow list is closed: other names, and IP
    /// literals not covered by [`allow_addr`](Self::allow_addr), are
    /// refused. A listed name lifts the built-in name rules (so
    /// `printer.local` can be listed) but not the address check: its
    /// addresses are still judged after resolution.
    pub fn allow_host(mut self, pattern: &str) -> Self {
        match HostPattern::parse(pattern) {
            Ok(pattern) => {
                self.inner.allow_hosts.push(pattern);
                self
            }
            Err(error) => self.fail(error),
        }
    }

    /// Denies a host name: `api.example.com`, or `*.example.com` for the
    /// names under it. Deny entries win over allow entries. Default: none
    /// (the built-in name rules still apply).
    pub fn deny_host(mut self, pattern: &str) -> Self {
        match HostPattern::parse(pattern) {
            Ok(pattern) => {
                self.inner.deny_hosts.push(pattern);
                self
            }
            Err(error) => self.fail(error),
        }
    }

    /// Allows addresses the built-in tables deny: `127.0.0.1:8080`,
    /// `10.0.0.0/8`, `10.0.0.0/8:8000-8999`, `[fd00::/8]:443`. Default: none.
    ///
    /// Deny rules win over allow rules. An allow rule with ports applies
    /// only where the destination port is known (URL checks, the client's
    /// resolver and connections). Rules written in IPv4-mapped IPv6 form are
    /// refused (write the IPv4 network), and so are IPv6 allow rules that
    /// contain all of `::ffff:0:0/96` (`::/0` would allow every IPv4 address
    /// through its mapped form). A rule covering loopback or link-local
    /// space wholesale, or everything, is logged as a warning.
    pub fn allow_addr(mut self, rule: &str) -> Self {
        match AddrRule::parse(rule) {
            Ok(parsed) if matches!(parsed.net, IpNet::V6(v6) if v6.contains(&IPV4_MAPPED)) => self
                .fail(PolicyError::InvalidAddrRule {
                    rule: rule.to_owned(),
                    reason: "covers every IPv4-mapped address, so it would allow all of IPv4",
                }),
            Ok(parsed) => {
                if parsed.is_wholesale_local() {
                    tracing::warn!(
                        rule,
                        "SSRF allow rule covers loopback, link-local or all addresses"
                    );
                }
                self.inner.allow_rules.push(parsed);
                self
            }
            Err(error) => self.fail(error),
        }
    }

    /// Denies addresses, in the same syntax as
    /// [`allow_addr`](Self::allow_addr). Deny rules win over everything and
    /// also match the IPv4 address embedded in an IPv6 address. A deny rule
    /// with ports also applies where the port is unknown. Default: none.
    pub fn deny_addr(mut self, rule: &str) -> Self {
        match AddrRule::parse(rule) {
            Ok(parsed) => {
                self.inner.deny_rules.push(parsed);
                self
            }
            Err(error) => self.fail(error),
        }
    }

    /// What to do when a name resolves to allowed and denied addresses.
    /// Default: [`MixedAnswers::RefuseName`].
    pub fn mixed_answers(mut self, mode: MixedAnswers) -> Self {
        self.inner.mixed_answers = mode;
        self
    }

    /// How long the guarded resolver waits for the resolver it guards. Default: 10 seconds.
    ///
    /// A lookup that takes longer fails with an `std::io::Error` of kind
    /// [`TimedOut`](std::io::ErrorKind::TimedOut), which the client reports as an
    /// [`ErrorKind::Connect`](crate::client::ErrorKind::Connect) error (nothing was sent) for
    /// which [`Error::is_timeout`](crate::client::Error::is_timeout) is true: a DNS server that
    /// never answers cannot hold a request for ever, even without a request timeout. It applies in
    /// report-only mode too. The duration must not be zero.
    pub fn dns_timeout(mut self, timeout: Duration) -> Self {
        if timeout.is_zero() {
            return self.fail(PolicyError::InvalidDnsLimit {
                setting: "dns_timeout",
                reason: "must be longer than zero",
            });
        }
        self.inner.dns_timeout = timeout;
        self
    }

    /// How many addresses of one DNS answer the guarded resolver reads, judges and hands on to
    /// the connector; the rest are neither judged nor connected to. Default: 16.
    ///
    /// The connector tries the addresses it is given one after the other, so an answer with
    /// thousands of addresses would otherwise make one request try thousands of connections.
    /// Must be at least 1.
    pub fn max_dns_answers(mut self, max: usize) -> Self {
        if max == 0 {
            return self.fail(PolicyError::InvalidDnsLimit {
                setting: "max_dns_answers",
                reason: "must be at least 1",
            });
        }
        self.inner.max_dns_answers = max;
        self
    }

    /// Report-only mode: refusals are logged (`tracing` warning) and the
    /// request proceeds. For rolling the guard out on existing traffic.
    /// Default: `false` (refusals are enforced).
    pub fn report_only(mut self, report_only: bool) -> Self {
        self.inner.report_only = report_only;
        self
    }

    /// When the tripwire judges the address of the connection a request went out on.
    /// Default: [`PeerCheck::OnResponse`].
    ///
    /// The tripwire is not what enforces the policy: the URL check and the guarded resolver do,
    /// before any connection is made. It catches a connect path that skipped them (a dependency
    /// upgrade that adds one, say) and refuses with [`Stage::Response`](super::Stage::Response)
    /// or [`Stage::Connect`](super::Stage::Connect), logging an error.
    pub fn peer_check(mut self, check: PeerCheck) -> Self {
        self.inner.peer_check = check;
        self
    }

    /// Allows the anycast and identifier blocks the registries mark globally
    /// reachable (`192.0.0.9`, `192.0.0.10`, `192.31.196.0/24`,
    /// `192.52.193.0/24`, `192.175.48.0/24`, `2001:1::1` to `2001:1::3`,
    /// `2001:3::/32`, `2001:4:112::/48`, `2001:20::/28`, `2001:30::/28`,
    /// `2620:4f:8000::/48`). Default: `false`, they are denied: local
    /// infrastructure answers them and no web content lives there.
    pub fn allow_global_anycast(mut self, allow: bool) -> Self {
        self.inner.builtin.allow_global_anycast = allow;
        self
    }

    /// Denies IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) even when the
    /// IPv4 address is public. Default: `false`, they are judged by the
    /// IPv4 address they carry.
    pub fn deny_ipv4_mapped_public(mut self, deny: bool) -> Self {
        self.inner.builtin.deny_ipv4_mapped_public = deny;
        self
    }

    /// Denies the NAT64 well-known prefix `64:ff9b::/96` even when the IPv4
    /// address inside is public. Default: `false`, they are judged by the
    /// IPv4 address they carry (DNS64 networks synthesise them for every
    /// IPv4-only destination).
    pub fn deny_nat64_well_known(mut self, deny: bool) -> Self {
        self.inner.builtin.deny_nat64_well_known = deny;
        self
    }

    /// Declares a NAT64 prefix of this network (RFC 6052 lengths 32, 40,
    /// 48, 56, 64 or 96), e.g. `64:ff9b:1:808::/96`: addresses inside it are
    /// judged by the IPv4 address they carry. Default: none, and the
    /// local-use prefix `64:ff9b:1::/48` is denied because the IPv4 address
    /// cannot be located without knowing the layout.
    pub fn nat64_prefix(mut self, prefix: &str) -> Self {
        let invalid = |reason| PolicyError::InvalidNat64Prefix {
            prefix: prefix.to_owned(),
            reason,
        };
        let net: Ipv6Net = match prefix.parse() {
            Ok(net) => net,
            Err(_) => return self.fail(invalid("not an IPv6 network in CIDR notation")),
        };
        if ![32, 40, 48, 56, 64, 96].contains(&net.prefix_len()) {
            return self.fail(invalid("RFC 6052 allows lengths 32, 40, 48, 56, 64 and 96"));
        }
        if net.trunc() != net {
            return self.fail(invalid("host bits set after the prefix length"));
        }
        self.inner.builtin.nat64_prefixes.push(net);
        self
    }

    /// Validates the settings and builds the policy.
    pub fn build(self) -> Result<Policy, PolicyError> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(Policy {
                inner: Arc::new(self.inner),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ssrf::Embedding;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("test URL parses")
    }

    fn rule_of(policy: &Policy, text: &str) -> Option<Rule> {
        policy
            .check_url(&url(text))
            .err()
            .map(|refusal| refusal.rule())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address parses")
    }

    #[test]
    fn user_deny_beats_user_allow() {
        let policy = Policy::builder()
            .allow_addr("192.168.0.0/16")
            .deny_addr("192.168.1.5")
            .build()
            .unwrap();
        assert_eq!(policy.check_ip(ip("192.168.1.4")), Ok(()));
        assert_eq!(
            policy.check_ip(ip("192.168.1.5")).unwrap_err().rule(),
            Rule::UserDeny
        );
    }

    #[test]
    fn user_allow_beats_builtin_tables() {
        let policy = Policy::builder().allow_addr("10.1.0.0/16").build().unwrap();
        assert_eq!(policy.check_ip(ip("10.1.2.3")), Ok(()));
        assert_eq!(
            policy.check_ip(ip("10.2.0.1")).unwrap_err().rule(),
            Rule::Ipv4Private
        );
    }

    #[test]
    fn user_deny_applies_to_public_addresses() {
        let policy = Policy::builder()
            .deny_addr("203.0.112.0/24")
            .build()
            .unwrap();
        assert_eq!(
            rule_of(&policy, "http://203.0.112.7/"),
            Some(Rule::UserDeny)
        );
    }

    #[test]
    fn user_deny_matches_the_ipv4_inside_ipv6() {
        let policy = Policy::builder().deny_addr("8.8.8.0/24").build().unwrap();
        assert_eq!(
            rule_of(&policy, "http://[::ffff:8.8.8.8]/"),
            Some(Rule::UserDeny)
        );
        assert_eq!(
            rule_of(&policy, "http://[64:ff9b::8.8.8.8]/"),
            Some(Rule::UserDeny)
        );
    }

    #[test]
    fn allow_rule_with_a_port_allows_only_that_port() {
        let policy = Policy::builder()
            .allow_addr("127.0.0.1:8080")
            .build()
            .unwrap();
        assert_eq!(rule_of(&policy, "http://127.0.0.1:8080/"), None);
        assert_eq!(
            rule_of(&policy, "http://127.0.0.1:8081/"),
            Some(Rule::Ipv4Loopback)
        );
        assert_eq!(
            rule_of(&policy, "http://127.0.0.1/"),
            Some(Rule::Ipv4Loopback)
        );
        // With the port unknown the rule cannot be proven to apply.
        assert_eq!(
            policy.check_ip(ip("127.0.0.1")).unwrap_err().rule(),
            Rule::Ipv4Loopback
        );
    }

    #[test]
    fn allow_rule_with_a_port_range() {
        let policy = Policy::builder()
            .allow_addr("[fd00::/8]:8000-8999")
            .build()
            .unwrap();
        assert_eq!(rule_of(&policy, "http://[fd12::1]:8500/"), None);
        assert_eq!(
            rule_of(&policy, "http://[fd12::1]:9000/"),
            Some(Rule::Ipv6UniqueLocal)
        );
    }

    #[test]
    fn allow_rule_for_ipv4_does_not_open_its_mapped_form() {
        let policy = Policy::builder().allow_addr("127.0.0.1").build().unwrap();
        assert_eq!(rule_of(&policy, "http://127.0.0.1/"), None);
        assert_eq!(
            rule_of(&policy, "http://[::ffff:127.0.0.1]/"),
            Some(Rule::Ipv4Loopback)
        );
    }

    #[test]
    fn host_deny_list_refuses_the_name_and_names_under_it() {
        let policy = Policy::builder()
            .deny_host("evil.example")
            .deny_host("*.corp.example")
            .build()
            .unwrap();
        assert_eq!(
            rule_of(&policy, "http://EVIL.example./"),
            Some(Rule::UserHostDeny)
        );
        assert_eq!(
            rule_of(&policy, "http://a.b.corp.example/"),
            Some(Rule::UserHostDeny)
        );
        assert_eq!(rule_of(&policy, "http://corp.example/"), None);
        assert_eq!(rule_of(&policy, "http://sub.evil.example/"), None);
    }

    #[test]
    fn host_allow_list_is_closed() {
        let policy = Policy::builder()
            .allow_host("api.example.com")
            .allow_addr("10.9.9.9")
            .build()
            .unwrap();
        assert_eq!(rule_of(&policy, "https://api.example.com/"), None);
        assert_eq!(
            rule_of(&policy, "https://www.example.com/"),
            Some(Rule::UserHostNotAllowed)
        );
        assert_eq!(
            rule_of(&policy, "http://8.8.8.8/"),
            Some(Rule::UserHostNotAllowed)
        );
        assert_eq!(rule_of(&policy, "http://10.9.9.9/"), None);
    }

    #[test]
    fn host_allow_list_lifts_builtin_name_rules_but_deny_wins() {
        let policy = Policy::builder()
            .allow_host("*.local")
            .deny_host("nas.local")
            .build()
            .unwrap();
        assert_eq!(rule_of(&policy, "http://printer.local/"), None);
        assert_eq!(
            rule_of(&policy, "http://nas.local/"),
            Some(Rule::UserHostDeny)
        );
    }

    #[test]
    fn https_only_refuses_http() {
        let policy = Policy::builder().schemes(["https"]).build().unwrap();
        assert_eq!(rule_of(&policy, "http://example.com/"), Some(Rule::Scheme));
        assert_eq!(rule_of(&policy, "https://example.com/"), None);
    }

    #[test]
    fn allowed_ports_apply_to_default_ports_too() {
        let policy = Policy::builder().ports([443]).build().unwrap();
        assert_eq!(rule_of(&policy, "https://example.com/"), None);
        assert_eq!(rule_of(&policy, "http://example.com/"), Some(Rule::Port));
        assert_eq!(
            rule_of(&policy, "https://example.com:8443/"),
            Some(Rule::Port)
        );
    }

    #[test]
    fn userinfo_can_be_allowed() {
        let policy = Policy::builder().allow_userinfo(true).build().unwrap();
        assert_eq!(rule_of(&policy, "http://user:pw@example.com/"), None);
        assert_eq!(
            rule_of(&policy, "http://user:pw@127.0.0.1/"),
            Some(Rule::Ipv4Loopback)
        );
    }

    #[test]
    fn global_anycast_can_be_allowed() {
        let policy = Policy::builder()
            .allow_global_anycast(true)
            .build()
            .unwrap();
        assert_eq!(policy.check_ip(ip("192.0.0.9")), Ok(()));
        assert_eq!(policy.check_ip(ip("2001:1::3")), Ok(()));
        assert_eq!(policy.check_ip(ip("2620:4f:8000::1")), Ok(()));
        // Their enclosing blocks stay denied.
        assert_eq!(
            policy.check_ip(ip("192.0.0.11")).unwrap_err().rule(),
            Rule::Ipv4IetfProtocol
        );
        assert_eq!(
            policy.check_ip(ip("2001:1::4")).unwrap_err().rule(),
            Rule::Ipv6IetfProtocol
        );
    }

    #[test]
    fn mapped_public_addresses_can_be_denied() {
        let policy = Policy::builder()
            .deny_ipv4_mapped_public(true)
            .build()
            .unwrap();
        let refusal = policy.check_ip(ip("::ffff:8.8.8.8")).unwrap_err();
        assert_eq!(refusal.rule(), Rule::Ipv6Ipv4Mapped);
        assert_eq!(
            refusal.embedded(),
            Some((Embedding::Ipv4Mapped, "8.8.8.8".parse().unwrap()))
        );
    }

    #[test]
    fn nat64_well_known_prefix_can_be_denied() {
        let policy = Policy::builder()
            .deny_nat64_well_known(true)
            .build()
            .unwrap();
        assert_eq!(
            policy.check_ip(ip("64:ff9b::808:808")).unwrap_err().rule(),
            Rule::Ipv6Nat64
        );
    }

    #[test]
    fn declared_nat64_prefix_is_judged_by_its_layout() {
        let policy = Policy::builder()
            .nat64_prefix("64:ff9b:1:808::/96")
            .build()
            .unwrap();
        // The /48 reading would find 8.8.0.0; the declared /96 finds the metadata address.
        let refusal = policy.check_ip(ip("64:ff9b:1:808::a9fe:a9fe")).unwrap_err();
        assert_eq!(refusal.rule(), Rule::Ipv4LinkLocal);
        assert_eq!(
            refusal.embedded().map(|(e, _)| e),
            Some(Embedding::Nat64Declared)
        );
        assert_eq!(policy.check_ip(ip("64:ff9b:1:808::808:808")), Ok(()));
        // The rest of the local-use /48 stays denied.
        assert_eq!(
            policy
                .check_ip(ip("64:ff9b:1:909::808:808"))
                .unwrap_err()
                .rule(),
            Rule::Ipv6Nat64Local
        );
    }

    #[test]
    fn report_only_keeps_the_verdict_but_lets_it_through() {
        let policy = Policy::builder().report_only(true).build().unwrap();
        let verdict = policy.check_url(&url("http://127.0.0.1/"));
        assert!(verdict.is_err());
        assert_eq!(policy.enforce(verdict), Ok(()));
        let enforcing = Policy::default();
        assert!(
            enforcing
                .enforce(enforcing.check_url(&url("http://127.0.0.1/")))
                .is_err()
        );
    }

    #[test]
    fn zone_ids_are_refused() {
        let addr = std::net::SocketAddrV6::new("fe80::1".parse().unwrap(), 80, 0, 3);
        let policy = Policy::builder().allow_addr("fe80::/10").build().unwrap();
        let denied = policy
            .judge_socket(SocketAddr::V6(addr), Some(80))
            .unwrap_err();
        assert_eq!(denied.rule, Rule::ZoneId);
    }

    #[test]
    fn literal_refusal_names_the_literal_and_the_url_without_credentials() {
        let policy = Policy::builder().allow_userinfo(true).build().unwrap();
        let refusal = policy
            .check_url(&url("http://u:secret@[::ffff:127.0.0.1]:81/x"))
            .unwrap_err();
        let message = refusal.with_hop(2).to_string();
        assert_eq!(
            message,
            "refused by SSRF policy: the address is denied (rule ipv4-loopback, address ::ffff:127.0.0.1 \
             carrying 127.0.0.1 as ipv4-mapped) for http://[::ffff:7f00:1]:81/x at redirect hop 2"
        );
    }

    #[test]
    fn builder_errors_name_the_bad_input() {
        let err = |builder: PolicyBuilder| builder.build().unwrap_err().to_string();
        assert!(err(Policy::builder().allow_addr("10.0.0.1/8")).contains("\"10.0.0.1/8\""));
        assert!(err(Policy::builder().allow_addr("not-an-ip")).contains("\"not-an-ip\""));
        assert!(err(Policy::builder().allow_addr("127.0.0.1:0")).contains("\"127.0.0.1:0\""));
        assert!(err(Policy::builder().allow_addr("127.0.0.1:90-80")).contains("empty port range"));
        assert!(err(Policy::builder().allow_addr("::ffff:0:0/96")).contains("IPv4-mapped"));
        assert!(err(Policy::builder().deny_addr("[::ffff:10.0.0.1]:80")).contains("IPv4-mapped"));
        assert!(err(Policy::builder().allow_addr("::/0")).contains("IPv4-mapped"));
        assert!(Policy::builder().deny_addr("::/0").build().is_ok());
        assert!(err(Policy::builder().schemes(["gopher"])).contains("\"gopher\""));
        assert!(err(Policy::builder().schemes(Vec::<String>::new())).contains("empty"));
        assert!(err(Policy::builder().ports([80, 0])).contains("port 0"));
        assert!(err(Policy::builder().allow_host("a.*.example")).contains("\"a.*.example\""));
        assert!(err(Policy::builder().deny_host("10.0.0.1")).contains("allow_addr"));
        assert!(err(Policy::builder().nat64_prefix("64:ff9b:1::/50")).contains("RFC 6052"));
        assert!(err(Policy::builder().dns_timeout(Duration::ZERO)).contains("dns_timeout"));
        assert!(err(Policy::builder().max_dns_answers(0)).contains("max_dns_answers"));
    }

    #[test]
    fn valid_rule_spellings_parse() {
        for rule in [
            "10.0.0.0/8",
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.0.0.0/8:8000-8999",
            "::1",
            "fd00::/8",
            "[::1]:8080",
            "[fd00::/8]:443",
        ] {
            assert!(AddrRule::parse(rule).is_ok(), "{rule}");
        }
    }
}
