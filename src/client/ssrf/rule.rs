//! Stable identifiers for every reason the policy can refuse a destination.

use std::fmt;

/// Why a destination was refused: a stable, machine-readable rule id.
///
/// [`Rule::as_str`] gives the id (`"ipv4-loopback"`, `"scheme"`, ...), which
/// is meant for logs, metrics and tests and does not change between releases.
/// [`Rule::reference`] names the registry entry or RFC a built-in rule comes
/// from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    // URL level.
    /// The URL has no host, or its host cannot be a network destination.
    NoHost,
    /// The URL scheme is not in the allowed set.
    Scheme,
    /// The URL carries a user name or password.
    Userinfo,
    /// The port is not allowed (port 0 is never allowed).
    Port,
    /// The host name is malformed (an empty label, for example).
    HostInvalid,
    /// `localhost` or a name under `.localhost` (RFC 6761).
    HostLocalhost,
    /// A name under `.local`, resolved by multicast DNS (RFC 6762).
    HostMdns,
    /// A name under `.home.arpa` (RFC 8375).
    HostHomeArpa,
    /// A name under `.internal`, reserved for private use by ICANN in 2024.
    HostInternal,
    /// A well-known cloud metadata name (`metadata.google.internal`, ...).
    HostMetadata,
    /// The host matches a host deny entry of the caller.
    UserHostDeny,
    /// A host allow list is set and the host is not on it.
    UserHostNotAllowed,

    // Address level, caller rules.
    /// The address carries an IPv6 zone id (`fe80::1%eth0`).
    ZoneId,
    /// The address matches an address deny rule of the caller.
    UserDeny,

    // Address level, IPv4 built-in table.
    /// `0.0.0.0/8`, "this network".
    Ipv4ThisNetwork,
    /// `0.0.0.0/32`, "this host on this network".
    Ipv4ThisHost,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Ipv4Private,
    /// `100.64.0.0/10`, shared address space (carrier-grade NAT).
    Ipv4Shared,
    /// `127.0.0.0/8`.
    Ipv4Loopback,
    /// `169.254.0.0/16`, home of the cloud metadata services.
    Ipv4LinkLocal,
    /// `192.0.0.0/24`, IETF protocol assignments.
    Ipv4IetfProtocol,
    /// `192.0.0.0/29`, IPv4 service continuity prefix (DS-Lite).
    Ipv4ServiceContinuity,
    /// `192.0.0.8/32`, IPv4 dummy address.
    Ipv4Dummy,
    /// `192.0.0.9/32`, Port Control Protocol anycast.
    Ipv4PcpAnycast,
    /// `192.0.0.10/32`, TURN anycast.
    Ipv4TurnAnycast,
    /// `192.0.0.170/32` and `192.0.0.171/32`, NAT64/DNS64 discovery.
    Ipv4Nat64Discovery,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`.
    Ipv4Documentation,
    /// `192.31.196.0/24`, AS112-v4.
    Ipv4As112,
    /// `192.52.193.0/24`, AMT.
    Ipv4Amt,
    /// `192.88.99.0/24`, the deprecated 6to4 relay anycast block.
    Ipv4SixToFourRelay,
    /// `192.88.99.2/32`, 6a44 relay anycast.
    Ipv4SixA44Relay,
    /// `192.175.48.0/24`, direct delegation AS112.
    Ipv4As112Direct,
    /// `198.18.0.0/15`, benchmarking.
    Ipv4Benchmarking,
    /// `224.0.0.0/4`, multicast.
    Ipv4Multicast,
    /// `240.0.0.0/4`, reserved.
    Ipv4Reserved,
    /// `255.255.255.255/32`, limited broadcast.
    Ipv4Broadcast,

    // Address level, IPv6 built-in table.
    /// `::/128`.
    Ipv6Unspecified,
    /// `::1/128`.
    Ipv6Loopback,
    /// `::/96`, deprecated IPv4-compatible addresses.
    Ipv6Ipv4Compatible,
    /// `::ffff:0:0/96` with a public IPv4 inside, when the policy denies those.
    Ipv6Ipv4Mapped,
    /// `::ffff:0:0:0/96`, obsolete SIIT IPv4-translated addresses.
    Ipv6Ipv4Translated,
    /// `64:ff9b::/96` with a public IPv4 inside, when the policy denies those.
    Ipv6Nat64,
    /// `64:ff9b:1::/48`, local-use NAT64 prefix.
    Ipv6Nat64Local,
    /// `100::/64`, discard-only block.
    Ipv6Discard,
    /// `100:0:0:1::/64`, dummy IPv6 prefix (added 2025).
    Ipv6Dummy,
    /// `2001::/23`, IETF protocol assignments.
    Ipv6IetfProtocol,
    /// `2001::/32`, Teredo.
    Ipv6Teredo,
    /// `2001:1::1/128`, Port Control Protocol anycast.
    Ipv6PcpAnycast,
    /// `2001:1::2/128`, TURN anycast.
    Ipv6TurnAnycast,
    /// `2001:1::3/128`, DNS-SD service registration protocol anycast (added 2024).
    Ipv6DnsSdAnycast,
    /// `2001:2::/48`, benchmarking.
    Ipv6Benchmarking,
    /// `2001:3::/32`, AMT.
    Ipv6Amt,
    /// `2001:4:112::/48`, AS112-v6.
    Ipv6As112,
    /// `2001:10::/28`, deprecated ORCHID.
    Ipv6Orchid,
    /// `2001:20::/28`, ORCHIDv2.
    Ipv6OrchidV2,
    /// `2001:30::/28`, drone remote ID entity tags.
    Ipv6DroneDet,
    /// `2001:db8::/32` and `3fff::/20` (added 2024), documentation.
    Ipv6Documentation,
    /// `2002::/16`, 6to4.
    Ipv6SixToFour,
    /// `2620:4f:8000::/48`, direct delegation AS112.
    Ipv6As112Direct,
    /// `5f00::/16`, SRv6 SIDs (added 2024).
    Ipv6Srv6Sid,
    /// `fc00::/7`, unique local addresses.
    Ipv6UniqueLocal,
    /// `fe80::/10`, link-local unicast.
    Ipv6LinkLocal,
    /// `fec0::/10`, deprecated site-local.
    Ipv6SiteLocal,
    /// `ff00::/8`, multicast.
    Ipv6Multicast,
    /// Space outside `2000::/3` that the IPv6 address-space registry keeps reserved.
    Ipv6Reserved,
    // Connection level.
    /// The tripwire could not learn the peer address of a connection, so it could not be
    /// judged.
    PeerUnknown,
}

impl Rule {
    /// The stable rule id, e.g. `"ipv4-private"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::NoHost => "no-host",
            Rule::Scheme => "scheme",
            Rule::Userinfo => "userinfo",
            Rule::Port => "port",
            Rule::HostInvalid => "host-invalid",
            Rule::HostLocalhost => "host-localhost",
            Rule::HostMdns => "host-mdns",
            Rule::HostHomeArpa => "host-home-arpa",
            Rule::HostInternal => "host-internal",
            Rule::HostMetadata => "host-metadata",
            Rule::UserHostDeny => "user-host-deny",
            Rule::UserHostNotAllowed => "user-host-not-allowed",
            Rule::ZoneId => "zone-id",
            Rule::UserDeny => "user-deny",
            Rule::Ipv4ThisNetwork => "ipv4-this-network",
            Rule::Ipv4ThisHost => "ipv4-this-host",
            Rule::Ipv4Private => "ipv4-private",
            Rule::Ipv4Shared => "ipv4-shared",
            Rule::Ipv4Loopback => "ipv4-loopback",
            Rule::Ipv4LinkLocal => "ipv4-link-local",
            Rule::Ipv4IetfProtocol => "ipv4-ietf-protocol",
            Rule::Ipv4ServiceContinuity => "ipv4-service-continuity",
            Rule::Ipv4Dummy => "ipv4-dummy",
            Rule::Ipv4PcpAnycast => "ipv4-pcp-anycast",
            Rule::Ipv4TurnAnycast => "ipv4-turn-anycast",
            Rule::Ipv4Nat64Discovery => "ipv4-nat64-discovery",
            Rule::Ipv4Documentation => "ipv4-documentation",
            Rule::Ipv4As112 => "ipv4-as112",
            Rule::Ipv4Amt => "ipv4-amt",
            Rule::Ipv4SixToFourRelay => "ipv4-6to4-relay",
            Rule::Ipv4SixA44Relay => "ipv4-6a44-relay",
            Rule::Ipv4As112Direct => "ipv4-as112-direct",
            Rule::Ipv4Benchmarking => "ipv4-benchmarking",
            Rule::Ipv4Multicast => "ipv4-multicast",
            Rule::Ipv4Reserved => "ipv4-reserved",
            Rule::Ipv4Broadcast => "ipv4-broadcast",
            Rule::Ipv6Unspecified => "ipv6-unspecified",
            Rule::Ipv6Loopback => "ipv6-loopback",
            Rule::Ipv6Ipv4Compatible => "ipv6-ipv4-compatible",
            Rule::Ipv6Ipv4Mapped => "ipv6-ipv4-mapped",
            Rule::Ipv6Ipv4Translated => "ipv6-ipv4-translated",
            Rule::Ipv6Nat64 => "ipv6-nat64",
            Rule::Ipv6Nat64Local => "ipv6-nat64-local",
            Rule::Ipv6Discard => "ipv6-discard",
            Rule::Ipv6Dummy => "ipv6-dummy",
            Rule::Ipv6IetfProtocol => "ipv6-ietf-protocol",
            Rule::Ipv6Teredo => "ipv6-teredo",
            Rule::Ipv6PcpAnycast => "ipv6-pcp-anycast",
            Rule::Ipv6TurnAnycast => "ipv6-turn-anycast",
            Rule::Ipv6DnsSdAnycast => "ipv6-dns-sd-anycast",
            Rule::Ipv6Benchmarking => "ipv6-benchmarking",
            Rule::Ipv6Amt => "ipv6-amt",
            Rule::Ipv6As112 => "ipv6-as112",
            Rule::Ipv6Orchid => "ipv6-orchid",
            Rule::Ipv6OrchidV2 => "ipv6-orchid-v2",
            Rule::Ipv6DroneDet => "ipv6-drone-det",
            Rule::Ipv6Documentation => "ipv6-documentation",
            Rule::Ipv6SixToFour => "ipv6-6to4",
            Rule::Ipv6As112Direct => "ipv6-as112-direct",
            Rule::Ipv6Srv6Sid => "ipv6-srv6-sid",
            Rule::Ipv6UniqueLocal => "ipv6-unique-local",
            Rule::Ipv6LinkLocal => "ipv6-link-local",
            Rule::Ipv6SiteLocal => "ipv6-site-local",
            Rule::Ipv6Multicast => "ipv6-multicast",
            Rule::Ipv6Reserved => "ipv6-reserved",
            Rule::PeerUnknown => "peer-unknown",
        }
    }

    /// Where a built-in rule comes from (registry and RFC); `None` for rules
    /// that come from the caller's configuration or from URL checks.
    pub const fn reference(self) -> Option<&'static str> {
        Some(match self {
            Rule::HostLocalhost => "RFC 6761",
            Rule::HostMdns => "RFC 6762",
            Rule::HostHomeArpa => "RFC 8375",
            Rule::HostInternal => "ICANN resolution on .internal (2024)",
            Rule::Ipv4ThisNetwork => "IANA IPv4 special-purpose registry, RFC 791",
            Rule::Ipv4ThisHost => "IANA IPv4 special-purpose registry, RFC 1122",
            Rule::Ipv4Private => "IANA IPv4 special-purpose registry, RFC 1918",
            Rule::Ipv4Shared => "IANA IPv4 special-purpose registry, RFC 6598",
            Rule::Ipv4Loopback => "IANA IPv4 special-purpose registry, RFC 1122",
            Rule::Ipv4LinkLocal => "IANA IPv4 special-purpose registry, RFC 3927",
            Rule::Ipv4IetfProtocol => "IANA IPv4 special-purpose registry, RFC 6890",
            Rule::Ipv4ServiceContinuity => "IANA IPv4 special-purpose registry, RFC 7335",
            Rule::Ipv4Dummy => "IANA IPv4 special-purpose registry, RFC 7600",
            Rule::Ipv4PcpAnycast => "IANA IPv4 special-purpose registry, RFC 7723",
            Rule::Ipv4TurnAnycast => "IANA IPv4 special-purpose registry, RFC 8155",
            Rule::Ipv4Nat64Discovery => "IANA IPv4 special-purpose registry, RFC 8880",
            Rule::Ipv4Documentation => "IANA IPv4 special-purpose registry, RFC 5737",
            Rule::Ipv4As112 => "IANA IPv4 special-purpose registry, RFC 7535",
            Rule::Ipv4Amt => "IANA IPv4 special-purpose registry, RFC 7450",
            Rule::Ipv4SixToFourRelay => "IANA IPv4 special-purpose registry, RFC 7526",
            Rule::Ipv4SixA44Relay => "IANA IPv4 special-purpose registry, RFC 6751",
            Rule::Ipv4As112Direct => "IANA IPv4 special-purpose registry, RFC 7534",
            Rule::Ipv4Benchmarking => "IANA IPv4 special-purpose registry, RFC 2544",
            Rule::Ipv4Multicast => "IANA IPv4 multicast address space registry, RFC 5771",
            Rule::Ipv4Reserved => "IANA IPv4 special-purpose registry, RFC 1112",
            Rule::Ipv4Broadcast => "IANA IPv4 special-purpose registry, RFC 8190",
            Rule::Ipv6Unspecified => "IANA IPv6 special-purpose registry, RFC 4291",
            Rule::Ipv6Loopback => "IANA IPv6 special-purpose registry, RFC 4291",
            Rule::Ipv6Ipv4Compatible => "IANA IPv6 address space registry, RFC 4291",
            Rule::Ipv6Ipv4Mapped => "IANA IPv6 special-purpose registry, RFC 4291",
            Rule::Ipv6Ipv4Translated => "IANA IPv6 address space registry, RFC 2765",
            Rule::Ipv6Nat64 => "IANA IPv6 special-purpose registry, RFC 6052",
            Rule::Ipv6Nat64Local => "IANA IPv6 special-purpose registry, RFC 8215",
            Rule::Ipv6Discard => "IANA IPv6 special-purpose registry, RFC 6666",
            Rule::Ipv6Dummy => "IANA IPv6 special-purpose registry, RFC 9780",
            Rule::Ipv6IetfProtocol => "IANA IPv6 special-purpose registry, RFC 2928",
            Rule::Ipv6Teredo => "IANA IPv6 special-purpose registry, RFC 4380",
            Rule::Ipv6PcpAnycast => "IANA IPv6 special-purpose registry, RFC 7723",
            Rule::Ipv6TurnAnycast => "IANA IPv6 special-purpose registry, RFC 8155",
            Rule::Ipv6DnsSdAnycast => "IANA IPv6 special-purpose registry, RFC 9665",
            Rule::Ipv6Benchmarking => "IANA IPv6 special-purpose registry, RFC 5180",
            Rule::Ipv6Amt => "IANA IPv6 special-purpose registry, RFC 7450",
            Rule::Ipv6As112 => "IANA IPv6 special-purpose registry, RFC 7535",
            Rule::Ipv6Orchid => "IANA IPv6 special-purpose registry, RFC 4843",
            Rule::Ipv6OrchidV2 => "IANA IPv6 special-purpose registry, RFC 7343",
            Rule::Ipv6DroneDet => "IANA IPv6 special-purpose registry, RFC 9374",
            Rule::Ipv6Documentation => "IANA IPv6 special-purpose registry, RFC 3849, RFC 9637",
            Rule::Ipv6SixToFour => "IANA IPv6 special-purpose registry, RFC 3056",
            Rule::Ipv6As112Direct => "IANA IPv6 special-purpose registry, RFC 7534",
            Rule::Ipv6Srv6Sid => "IANA IPv6 special-purpose registry, RFC 9602",
            Rule::Ipv6UniqueLocal => "IANA IPv6 special-purpose registry, RFC 4193",
            Rule::Ipv6LinkLocal => "IANA IPv6 special-purpose registry, RFC 4291",
            Rule::Ipv6SiteLocal => "IANA IPv6 address space registry, RFC 3879",
            Rule::Ipv6Multicast => "IANA IPv6 address space registry, RFC 4291",
            Rule::Ipv6Reserved => "IANA IPv6 address space registry, RFC 4291",
            Rule::NoHost
            | Rule::Scheme
            | Rule::Userinfo
            | Rule::Port
            | Rule::HostInvalid
            | Rule::HostMetadata
            | Rule::UserHostDeny
            | Rule::UserHostNotAllowed
            | Rule::ZoneId
            | Rule::UserDeny
            | Rule::PeerUnknown => return None,
        })
    }

    /// Whether the rule judges an address (as opposed to the URL or the name).
    pub const fn is_address_rule(self) -> bool {
        !matches!(
            self,
            Rule::NoHost
                | Rule::Scheme
                | Rule::Userinfo
                | Rule::Port
                | Rule::HostInvalid
                | Rule::HostLocalhost
                | Rule::HostMdns
                | Rule::HostHomeArpa
                | Rule::HostInternal
                | Rule::HostMetadata
                | Rule::UserHostDeny
                | Rule::UserHostNotAllowed
        )
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
