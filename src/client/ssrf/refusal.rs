//! The error a policy check returns.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use url::Url;

use super::rule::Rule;
use crate::client::redaction::WithoutCredentials;

/// How an IPv6 address carries an IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Embedding {
    /// `::ffff:a.b.c.d` (RFC 4291).
    Ipv4Mapped,
    /// `::a.b.c.d`, deprecated IPv4-compatible (RFC 4291).
    Ipv4Compatible,
    /// `::ffff:0:a.b.c.d`, obsolete SIIT IPv4-translated (RFC 2765).
    Ipv4Translated,
    /// `64:ff9b::a.b.c.d`, the NAT64 well-known prefix (RFC 6052).
    Nat64,
    /// A NAT64 prefix the operator declared to the policy (RFC 6052 layouts).
    Nat64Declared,
    /// `2002:wwxx:yyzz::/48`, 6to4 (RFC 3056).
    SixToFour,
    /// `2001::/32`, Teredo, with the client address bit-inverted (RFC 4380).
    Teredo,
}

impl Embedding {
    /// A short stable name, e.g. `"ipv4-mapped"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Embedding::Ipv4Mapped => "ipv4-mapped",
            Embedding::Ipv4Compatible => "ipv4-compatible",
            Embedding::Ipv4Translated => "ipv4-translated",
            Embedding::Nat64 => "nat64",
            Embedding::Nat64Declared => "nat64-declared",
            Embedding::SixToFour => "6to4",
            Embedding::Teredo => "teredo",
        }
    }
}

/// Which check refused the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// The URL check: scheme, user info, port, host name or IP literal.
    Url,
    /// The guarded resolver: a name, or what the name resolved to.
    Resolve,
    /// The tripwire, [`PeerCheck::OnConnect`](super::PeerCheck::OnConnect): the address of a
    /// new connection, before any request byte was written on it.
    Connect,
    /// The tripwire, [`PeerCheck::OnResponse`](super::PeerCheck::OnResponse): the address of
    /// the connection a response arrived on. The request had been written.
    Response,
}

/// A destination refused by the SSRF [`Policy`](super::Policy).
///
/// It carries a stable [`Rule`] id, the [`Stage`] that refused, and, once
/// the client fills them in, the URL and the redirect hop. Its `Display`
/// never shows what a host *name* resolved to, so it is safe to hand to the
/// user who supplied the URL; [`Refusal::addr`] has the address for logs.
/// `Debug` hides it too, since debug output ends up in the same places.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub struct Refusal {
    // Boxed: a refusal travels inside `Result`s on the happy path's signatures.
    inner: Box<Inner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    rule: Rule,
    stage: Stage,
    url: Option<Url>,
    hop: Option<u32>,
    host: Option<String>,
    addr: Option<IpAddr>,
    embedded: Option<(Embedding, Ipv4Addr)>,
}

impl Refusal {
    pub(crate) fn new(rule: Rule, stage: Stage) -> Self {
        Refusal {
            inner: Box::new(Inner {
                rule,
                stage,
                url: None,
                hop: None,
                host: None,
                addr: None,
                embedded: None,
            }),
        }
    }

    pub(crate) fn with_host(mut self, host: impl Into<String>) -> Self {
        self.inner.host = Some(host.into());
        self
    }

    pub(crate) fn with_addr(
        mut self,
        addr: IpAddr,
        embedded: Option<(Embedding, Ipv4Addr)>,
    ) -> Self {
        self.inner.addr = Some(addr);
        self.inner.embedded = embedded;
        self
    }

    /// Records the URL that was refused (the client does this for you).
    pub fn with_url(mut self, url: Url) -> Self {
        self.inner.url = Some(url);
        self
    }

    /// Records the redirect hop that was refused, 0 for the first request
    /// (the client does this for you).
    pub fn with_hop(mut self, hop: u32) -> Self {
        self.inner.hop = Some(hop);
        self
    }

    /// The rule that refused the destination.
    pub fn rule(&self) -> Rule {
        self.inner.rule
    }

    /// The check that refused the destination.
    pub fn stage(&self) -> Stage {
        self.inner.stage
    }

    /// The refused URL, when known.
    pub fn url(&self) -> Option<&Url> {
        self.inner.url.as_ref()
    }

    /// The redirect hop, when known: 0 is the first request.
    pub fn hop(&self) -> Option<u32> {
        self.inner.hop
    }

    /// The host name that was refused or resolved, when the destination was a name.
    pub fn host(&self) -> Option<&str> {
        self.inner.host.as_deref()
    }

    /// The refused address, when the refusal is about an address.
    ///
    /// For a name this is what the name resolved to: log it, but do not show
    /// it to whoever supplied the URL.
    pub fn addr(&self) -> Option<IpAddr> {
        self.inner.addr
    }

    /// The IPv4 address found inside a refused IPv6 address, and how it was embedded.
    pub fn embedded(&self) -> Option<(Embedding, Ipv4Addr)> {
        self.inner.embedded
    }

    fn reason(&self) -> &'static str {
        match (self.inner.stage, self.inner.rule) {
            (_, Rule::NoHost) => "the URL has no host",
            (_, Rule::Scheme) => "the scheme is not allowed",
            (_, Rule::Userinfo) => "the URL carries credentials",
            (_, Rule::Port) => "the port is not allowed",
            (_, Rule::HostInvalid) => "the host name is malformed",
            (_, Rule::UserHostNotAllowed) => "the host is not on the allow list",
            (_, Rule::ZoneId) if self.inner.stage == Stage::Resolve => {
                "host resolved to a denied address"
            }
            (_, Rule::ZoneId) => "IPv6 zone ids are not allowed",
            (_, Rule::PeerUnknown) => "the peer address of the connection is unknown",
            (_, rule) if !rule.is_address_rule() => "the host name is denied",
            (Stage::Url, _) => "the address is denied",
            (Stage::Resolve, _) => "host resolved to a denied address",
            (Stage::Connect | Stage::Response, _) => "the connected peer address is denied",
        }
    }
}

impl Refusal {
    /// The reason, the rule and (for literals only) the address, without the URL.
    fn write_summary(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (rule {}", self.reason(), self.inner.rule)?;
        // An address written in the URL is no secret; one found through DNS
        // or on a socket is, so only literals are printed.
        if let (Stage::Url, Some(addr)) = (self.inner.stage, self.inner.addr) {
            write!(f, ", address {addr}")?;
            if let Some((embedding, v4)) = self.inner.embedded {
                write!(f, " carrying {v4} as {}", embedding.as_str())?;
            }
        }
        f.write_str(")")
    }

    /// Names the redirect hop; the first request (hop 0) needs no mention.
    fn write_hop(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.inner.hop {
            Some(hop) if hop > 0 => write!(f, " at redirect hop {hop}"),
            _ => Ok(()),
        }
    }

    /// The message without the URL, for errors that print the URL themselves.
    pub(crate) fn summary(&self) -> String {
        struct Summary<'a>(&'a Refusal);
        impl fmt::Display for Summary<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write_summary(f)?;
                self.0.write_hop(f)
            }
        }
        Summary(self).to_string()
    }
}

impl fmt::Debug for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Inner {
            rule,
            stage,
            url,
            hop,
            host,
            addr,
            embedded,
        } = &*self.inner;
        let mut debug = f.debug_struct("Refusal");
        debug
            .field("rule", rule)
            .field("stage", stage)
            .field(
                "url",
                &url.as_ref().map(|url| WithoutCredentials(url).to_string()),
            )
            .field("hop", hop)
            .field("host", host);
        // `{:?}` ends up in panic messages, error pages and `main`'s error output as surely as
        // `Display` does: what a name resolved to, or the peer of a connection, stays out of it
        // (`Refusal::addr` gives it to code that logs it on purpose).
        if *stage == Stage::Url {
            debug.field("addr", addr).field("embedded", embedded);
        } else if addr.is_some() {
            debug.field("addr", &format_args!("<hidden, see Refusal::addr>"));
        }
        debug.finish()
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("refused by SSRF policy: ")?;
        self.write_summary(f)?;
        if let Some(url) = &self.inner.url {
            write!(f, " for {}", WithoutCredentials(url))?;
        }
        self.write_hop(f)
    }
}

/// Finds a [`Refusal`] in an error's `source()` chain.
///
/// reqwest and hyper wrap the errors of a resolver or a connector in their
/// own; this walks the chain (looking inside `std::io::Error` too, whose
/// `source()` skips the error it wraps) and returns the refusal, if any.
///
/// ```
/// use stopover::client::ssrf::{find_refusal, Policy};
///
/// let url = url::Url::parse("http://127.0.0.1/").unwrap();
/// let refusal = Policy::default().check_url(&url).unwrap_err();
/// let wrapped = std::io::Error::other(refusal);
/// assert_eq!(find_refusal(&wrapped).unwrap().rule().as_str(), "ipv4-loopback");
/// ```
pub fn find_refusal<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refusal> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(refusal) = err.downcast_ref::<Refusal>() {
            return Some(refusal);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            if let Some(refusal) = find_refusal(inner) {
                return Some(refusal);
            }
        }
        current = err.source();
    }
    None
}
