//! [`PolicyBuilder`]: every rule of a [`Policy`](super::Policy), each default stated on its
//! setter, and [`PolicyError`] for a setting that cannot work.

use std::sync::Arc;
use std::time::Duration;

use ipnet::{IpNet, Ipv6Net};

use super::policy::{
    AddrRule, HostPattern, IPV4_MAPPED, Inner, MixedAnswers, PeerCheck, Policy, PolicyError,
};

/// What an address rule of [`PolicyBuilder::allow_addr`] and [`PolicyBuilder::deny_addr`] can
/// be given as: its text (`"10.0.0.0/8:8000-8999"`, `"[fd00::/8]:443"`), a
/// [`SocketAddr`](std::net::SocketAddr) (that address, that port) or an
/// [`IpAddr`](std::net::IpAddr) (that address, every port).
pub trait IntoAddrRule: sealed::Sealed {}

mod sealed {
    use std::net::{IpAddr, SocketAddr};

    pub trait Sealed {
        /// The rule in the text syntax the parser reads.
        fn into_rule_text(self) -> String;
    }

    impl Sealed for &str {
        fn into_rule_text(self) -> String {
            self.to_owned()
        }
    }

    impl Sealed for String {
        fn into_rule_text(self) -> String {
            self
        }
    }

    impl Sealed for &String {
        fn into_rule_text(self) -> String {
            self.clone()
        }
    }

    impl Sealed for SocketAddr {
        /// `127.0.0.1:8080`, `[::1]:8080`: the syntax of a rule with one port.
        fn into_rule_text(self) -> String {
            self.to_string()
        }
    }

    impl Sealed for IpAddr {
        fn into_rule_text(self) -> String {
            self.to_string()
        }
    }
}

impl IntoAddrRule for &str {}
impl IntoAddrRule for String {}
impl IntoAddrRule for &String {}
impl IntoAddrRule for std::net::SocketAddr {}
impl IntoAddrRule for std::net::IpAddr {}

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
    ///
    /// The rule can be given as text or as the address a program has at hand: a
    /// [`SocketAddr`](std::net::SocketAddr) allows that address and port, an
    /// [`IpAddr`](std::net::IpAddr) that address on every port.
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use stopover::client::ssrf::Policy;
    ///
    /// let webhook_sink: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    /// let policy = Policy::builder().allow_addr(webhook_sink).build()?;
    /// assert!(policy.check_url(&"http://127.0.0.1:8080/hook".parse().unwrap()).is_ok());
    /// assert!(policy.check_url(&"http://127.0.0.1:22/".parse().unwrap()).is_err());
    /// # Ok::<(), stopover::client::ssrf::PolicyError>(())
    /// ```
    pub fn allow_addr(mut self, rule: impl IntoAddrRule) -> Self {
        let rule = rule.into_rule_text();
        let rule = rule.as_str();
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
    /// with ports also applies where the port is unknown. Like `allow_addr`, it takes text, a
    /// `SocketAddr` or an `IpAddr`. Default: none.
    pub fn deny_addr(mut self, rule: impl IntoAddrRule) -> Self {
        match AddrRule::parse(&rule.into_rule_text()) {
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

impl Policy {
    /// Starts a policy from the safe default.
    pub fn builder() -> PolicyBuilder {
        PolicyBuilder::default()
    }
}
