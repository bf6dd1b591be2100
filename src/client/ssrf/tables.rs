//! The built-in deny tables: IANA special-purpose registries as intervals.
//!
//! Each table is a sorted list of inclusive `(start, end)` intervals over the
//! address as an integer. Rows may nest (`192.0.0.9/32` inside
//! `192.0.0.0/24`); the most specific row that contains an address decides.
//! Because CIDR blocks either nest or are disjoint, and the rows are sorted
//! by start address and then by size (largest first), the most specific
//! match is simply the *last* row in the table that contains the address, so
//! a lookup is one linear scan over a `const` table of a few dozen rows.
//!
//! Sources, as of the 2025 state of the registries:
//! - IANA IPv4 Special-Purpose Address Registry, plus `224.0.0.0/4` from the
//!   IPv4 multicast registry;
//! - IANA IPv6 Special-Purpose Address Registry, including the 2024 additions
//!   (`3fff::/20` RFC 9637, `5f00::/16` RFC 9602, `2001:1::3/128` RFC 9665)
//!   and the 2025 addition (`100:0:0:1::/64` RFC 9780), plus the reserved,
//!   site-local and multicast space of the IPv6 Address Space registry.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;

use super::refusal::Embedding;
use super::rule::Rule;

/// What the built-in policy does with an address inside a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Always denied (unless a caller allow rule punches a hole).
    Deny,
    /// The registry marks the block globally reachable, but it is anycast or
    /// an identifier block answered by local infrastructure: denied unless
    /// the policy allows global anycast.
    DenyUnlessAnycastAllowed,
    /// The block embeds an IPv4 address that reaches the wire: judge that
    /// address with the IPv4 table.
    JudgeEmbedded(Embedding),
    /// Denied whatever it carries; the embedded IPv4 is decoded so the
    /// refusal can name a sharper IPv4 rule when there is one.
    DenyEmbedded(Embedding),
}

/// One interval of a deny table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row<A> {
    pub(crate) start: A,
    pub(crate) end: A,
    pub(crate) rule: Rule,
    pub(crate) action: Action,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u32) -> (u32, u32) {
    let start = u32::from_be_bytes([a, b, c, d]);
    let host_mask = if len >= 32 { 0 } else { u32::MAX >> len };
    (start, start | host_mask)
}

const fn row4(net: (u32, u32), rule: Rule, action: Action) -> Row<u32> {
    Row {
        start: net.0,
        end: net.1,
        rule,
        action,
    }
}

const fn v6(segments: [u16; 8], len: u32) -> (u128, u128) {
    let mut start: u128 = 0;
    let mut i = 0;
    while i < 8 {
        start = (start << 16) | segments[i] as u128;
        i += 1;
    }
    let host_mask = if len >= 128 { 0 } else { u128::MAX >> len };
    (start, start | host_mask)
}

const fn row6(net: (u128, u128), rule: Rule, action: Action) -> Row<u128> {
    Row {
        start: net.0,
        end: net.1,
        rule,
        action,
    }
}

use Action::{Deny, DenyEmbedded, DenyUnlessAnycastAllowed as Anycast, JudgeEmbedded};

/// IPv4 rows, sorted by start, then largest first.
pub(crate) static IPV4: &[Row<u32>] = &[
    row4(v4(0, 0, 0, 0, 8), Rule::Ipv4ThisNetwork, Deny), // RFC 791
    row4(v4(0, 0, 0, 0, 32), Rule::Ipv4ThisHost, Deny),   // RFC 1122
    row4(v4(10, 0, 0, 0, 8), Rule::Ipv4Private, Deny),    // RFC 1918
    row4(v4(100, 64, 0, 0, 10), Rule::Ipv4Shared, Deny),  // RFC 6598
    row4(v4(127, 0, 0, 0, 8), Rule::Ipv4Loopback, Deny),  // RFC 1122
    row4(v4(169, 254, 0, 0, 16), Rule::Ipv4LinkLocal, Deny), // RFC 3927
    row4(v4(172, 16, 0, 0, 12), Rule::Ipv4Private, Deny), // RFC 1918
    row4(v4(192, 0, 0, 0, 24), Rule::Ipv4IetfProtocol, Deny), // RFC 6890
    row4(v4(192, 0, 0, 0, 29), Rule::Ipv4ServiceContinuity, Deny), // RFC 7335
    row4(v4(192, 0, 0, 8, 32), Rule::Ipv4Dummy, Deny),    // RFC 7600
    row4(v4(192, 0, 0, 9, 32), Rule::Ipv4PcpAnycast, Anycast), // RFC 7723
    row4(v4(192, 0, 0, 10, 32), Rule::Ipv4TurnAnycast, Anycast), // RFC 8155
    row4(v4(192, 0, 0, 170, 31), Rule::Ipv4Nat64Discovery, Deny), // RFC 8880: .170 and .171
    row4(v4(192, 0, 2, 0, 24), Rule::Ipv4Documentation, Deny), // RFC 5737 TEST-NET-1
    row4(v4(192, 31, 196, 0, 24), Rule::Ipv4As112, Anycast), // RFC 7535
    row4(v4(192, 52, 193, 0, 24), Rule::Ipv4Amt, Anycast), // RFC 7450
    row4(v4(192, 88, 99, 0, 24), Rule::Ipv4SixToFourRelay, Deny), // RFC 7526
    row4(v4(192, 88, 99, 2, 32), Rule::Ipv4SixA44Relay, Deny), // RFC 6751
    row4(v4(192, 168, 0, 0, 16), Rule::Ipv4Private, Deny), // RFC 1918
    row4(v4(192, 175, 48, 0, 24), Rule::Ipv4As112Direct, Anycast), // RFC 7534
    row4(v4(198, 18, 0, 0, 15), Rule::Ipv4Benchmarking, Deny), // RFC 2544
    row4(v4(198, 51, 100, 0, 24), Rule::Ipv4Documentation, Deny), // RFC 5737 TEST-NET-2
    row4(v4(203, 0, 113, 0, 24), Rule::Ipv4Documentation, Deny), // RFC 5737 TEST-NET-3
    row4(v4(224, 0, 0, 0, 4), Rule::Ipv4Multicast, Deny), // RFC 5771
    row4(v4(240, 0, 0, 0, 4), Rule::Ipv4Reserved, Deny),  // RFC 1112
    row4(v4(255, 255, 255, 255, 32), Rule::Ipv4Broadcast, Deny), // RFC 8190
];

/// IPv6 rows, sorted by start, then largest first.
pub(crate) static IPV6: &[Row<u128>] = &[
    // 0000::/3 is reserved by the address-space registry; the special rows inside it nest below.
    row6(v6([0, 0, 0, 0, 0, 0, 0, 0], 3), Rule::Ipv6Reserved, Deny),
    row6(
        v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        Rule::Ipv6Ipv4Compatible,
        DenyEmbedded(Embedding::Ipv4Compatible),
    ), // RFC 4291 2.5.5.1
    row6(
        v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
        Rule::Ipv6Unspecified,
        Deny,
    ), // RFC 4291
    row6(v6([0, 0, 0, 0, 0, 0, 0, 1], 128), Rule::Ipv6Loopback, Deny), // RFC 4291
    row6(
        v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
        Rule::Ipv6Ipv4Mapped,
        JudgeEmbedded(Embedding::Ipv4Mapped),
    ), // RFC 4291
    row6(
        v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96),
        Rule::Ipv6Ipv4Translated,
        DenyEmbedded(Embedding::Ipv4Translated),
    ), // RFC 2765
    row6(
        v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96),
        Rule::Ipv6Nat64,
        JudgeEmbedded(Embedding::Nat64),
    ), // RFC 6052
    row6(
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        Rule::Ipv6Nat64Local,
        Deny,
    ), // RFC 8215
    row6(
        v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        Rule::Ipv6Discard,
        Deny,
    ), // RFC 6666
    row6(v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64), Rule::Ipv6Dummy, Deny), // RFC 9780 (2025)
    row6(
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        Rule::Ipv6IetfProtocol,
        Deny,
    ), // RFC 2928
    row6(
        v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32),
        Rule::Ipv6Teredo,
        DenyEmbedded(Embedding::Teredo),
    ), // RFC 4380
    row6(
        v6([0x2001, 1, 0, 0, 0, 0, 0, 1], 128),
        Rule::Ipv6PcpAnycast,
        Anycast,
    ), // RFC 7723
    row6(
        v6([0x2001, 1, 0, 0, 0, 0, 0, 2], 128),
        Rule::Ipv6TurnAnycast,
        Anycast,
    ), // RFC 8155
    row6(
        v6([0x2001, 1, 0, 0, 0, 0, 0, 3], 128),
        Rule::Ipv6DnsSdAnycast,
        Anycast,
    ), // RFC 9665 (2024)
    row6(
        v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48),
        Rule::Ipv6Benchmarking,
        Deny,
    ), // RFC 5180
    row6(
        v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32),
        Rule::Ipv6Amt,
        Anycast,
    ), // RFC 7450
    row6(
        v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48),
        Rule::Ipv6As112,
        Anycast,
    ), // RFC 7535
    row6(
        v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28),
        Rule::Ipv6Orchid,
        Deny,
    ), // RFC 4843
    row6(
        v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28),
        Rule::Ipv6OrchidV2,
        Anycast,
    ), // RFC 7343
    row6(
        v6([0x2001, 0x30, 0, 0, 0, 0, 0, 0], 28),
        Rule::Ipv6DroneDet,
        Anycast,
    ), // RFC 9374
    row6(
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        Rule::Ipv6Documentation,
        Deny,
    ), // RFC 3849
    row6(
        v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16),
        Rule::Ipv6SixToFour,
        DenyEmbedded(Embedding::SixToFour),
    ), // RFC 3056, deprecated by RFC 7526
    row6(
        v6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48),
        Rule::Ipv6As112Direct,
        Anycast,
    ), // RFC 7534
    row6(
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        Rule::Ipv6Documentation,
        Deny,
    ), // RFC 9637 (2024)
    // 4000::/2, 8000::/2, c000::/3, e000::/4, f000::/5 and f800::/6: one reserved interval.
    (Row {
        start: v6([0x4000, 0, 0, 0, 0, 0, 0, 0], 2).0,
        end: v6([0xf800, 0, 0, 0, 0, 0, 0, 0], 6).1,
        rule: Rule::Ipv6Reserved,
        action: Deny,
    }),
    row6(
        v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16),
        Rule::Ipv6Srv6Sid,
        Deny,
    ), // RFC 9602 (2024)
    row6(
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        Rule::Ipv6UniqueLocal,
        Deny,
    ), // RFC 4193
    row6(
        v6([0xfe00, 0, 0, 0, 0, 0, 0, 0], 9),
        Rule::Ipv6Reserved,
        Deny,
    ), // address space registry
    row6(
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        Rule::Ipv6LinkLocal,
        Deny,
    ), // RFC 4291
    row6(
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        Rule::Ipv6SiteLocal,
        Deny,
    ), // RFC 3879
    row6(
        v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        Rule::Ipv6Multicast,
        Deny,
    ), // RFC 4291
];

/// The most specific row containing `addr`, if any.
fn lookup<A: Copy + Ord>(table: &'static [Row<A>], addr: A) -> Option<&'static Row<A>> {
    table
        .iter()
        .take_while(|row| row.start <= addr)
        .filter(|row| addr <= row.end)
        .last()
}

/// Switches of the built-in tables (the "deny (knob)" and "judge embedded"
/// rows of the specification).
#[derive(Debug, Clone, Default)]
pub(crate) struct Builtin {
    pub(crate) allow_global_anycast: bool,
    pub(crate) deny_ipv4_mapped_public: bool,
    pub(crate) deny_nat64_well_known: bool,
    /// Operator-declared NAT64 prefixes (RFC 6052 lengths only).
    pub(crate) nat64_prefixes: Vec<Ipv6Net>,
}

/// A built-in verdict against an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Denied {
    pub(crate) rule: Rule,
    pub(crate) embedded: Option<(Embedding, Ipv4Addr)>,
}

impl Builtin {
    pub(crate) fn check_v4(&self, addr: Ipv4Addr) -> Result<(), Denied> {
        let Some(row) = lookup(IPV4, u32::from(addr)) else {
            return Ok(());
        };
        let denied = Denied {
            rule: row.rule,
            embedded: None,
        };
        match row.action {
            Action::DenyUnlessAnycastAllowed if self.allow_global_anycast => Ok(()),
            // IPv4 rows never embed anything; treat a stray embedding action as a plain deny.
            _ => Err(denied),
        }
    }

    pub(crate) fn check_v6(&self, addr: Ipv6Addr) -> Result<(), Denied> {
        if let Some(v4) = self.declared_nat64(addr) {
            return self.check_v4(v4).map_err(|denied| Denied {
                embedded: Some((Embedding::Nat64Declared, v4)),
                ..denied
            });
        }
        let Some(row) = lookup(IPV6, u128::from(addr)) else {
            return Ok(());
        };
        match row.action {
            Action::Deny => Err(Denied {
                rule: row.rule,
                embedded: None,
            }),
            Action::DenyUnlessAnycastAllowed if self.allow_global_anycast => Ok(()),
            Action::DenyUnlessAnycastAllowed => Err(Denied {
                rule: row.rule,
                embedded: None,
            }),
            Action::JudgeEmbedded(embedding) => {
                let v4 = embedding.extract(addr);
                self.check_v4(v4).map_err(|denied| Denied {
                    embedded: Some((embedding, v4)),
                    ..denied
                })?;
                let knob_denies = match embedding {
                    Embedding::Ipv4Mapped => self.deny_ipv4_mapped_public,
                    Embedding::Nat64 => self.deny_nat64_well_known,
                    _ => true,
                };
                if knob_denies {
                    Err(Denied {
                        rule: row.rule,
                        embedded: Some((embedding, v4)),
                    })
                } else {
                    Ok(())
                }
            }
            Action::DenyEmbedded(embedding) => {
                let v4 = embedding.extract(addr);
                let rule = match self.check_v4(v4) {
                    Err(inner) => inner.rule,
                    Ok(()) => row.rule,
                };
                Err(Denied {
                    rule,
                    embedded: Some((embedding, v4)),
                })
            }
        }
    }

    /// The IPv4 address an IPv6 address carries, for the forms the tables
    /// know (or the operator declared).
    pub(crate) fn embedded_v4(&self, addr: Ipv6Addr) -> Option<(Embedding, Ipv4Addr)> {
        if let Some(v4) = self.declared_nat64(addr) {
            return Some((Embedding::Nat64Declared, v4));
        }
        match lookup(IPV6, u128::from(addr))?.action {
            Action::JudgeEmbedded(embedding) | Action::DenyEmbedded(embedding) => {
                Some((embedding, embedding.extract(addr)))
            }
            Action::Deny | Action::DenyUnlessAnycastAllowed => None,
        }
    }

    fn declared_nat64(&self, addr: Ipv6Addr) -> Option<Ipv4Addr> {
        let prefix = self.nat64_prefixes.iter().find(|net| net.contains(&addr))?;
        Some(rfc6052_extract(addr, prefix.prefix_len()))
    }
}

/// Extracts the IPv4 address from an RFC 6052 §2.2 layout of the given
/// prefix length (32, 40, 48, 56, 64 or 96), skipping the reserved `u`
/// octet (bits 64 to 71).
pub(crate) fn rfc6052_extract(addr: Ipv6Addr, prefix_len: u8) -> Ipv4Addr {
    let bits = u128::from(addr);
    if prefix_len >= 96 {
        return Ipv4Addr::from(bits as u32);
    }
    // IPv4 bits found before the u octet, then after it.
    let before = 64u32.saturating_sub(u32::from(prefix_len)).min(32);
    let after = 32 - before;
    let high = ((bits >> 64) as u64) & ((1u64 << before) - 1);
    let low = ((bits >> (56 - after)) as u64) & ((1u64 << after) - 1);
    Ipv4Addr::from(((high << after) | low) as u32)
}

impl Embedding {
    /// The IPv4 address this embedding places inside `addr`.
    pub(crate) fn extract(self, addr: Ipv6Addr) -> Ipv4Addr {
        let bits = u128::from(addr);
        match self {
            Embedding::Ipv4Mapped
            | Embedding::Ipv4Compatible
            | Embedding::Ipv4Translated
            | Embedding::Nat64 => Ipv4Addr::from(bits as u32),
            // 2002:wwxx:yyzz::/48: the IPv4 sits in bits 16 to 47.
            Embedding::SixToFour => Ipv4Addr::from((bits >> 80) as u32),
            // The Teredo client address is stored with every bit inverted.
            Embedding::Teredo => Ipv4Addr::from(!(bits as u32)),
            Embedding::Nat64Declared => Ipv4Addr::from(bits as u32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn laminar_and_sorted<A: Copy + Ord + std::fmt::Debug>(table: &[Row<A>]) {
        for pair in table.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(a.start <= a.end && b.start <= b.end);
            assert!(
                a.start < b.start || (a.start == b.start && a.end >= b.end),
                "rows out of order: {a:?} then {b:?}"
            );
        }
        for (i, a) in table.iter().enumerate() {
            for b in &table[i + 1..] {
                let disjoint = a.end < b.start || b.end < a.start;
                let nested = (a.start <= b.start && b.end <= a.end)
                    || (b.start <= a.start && a.end <= b.end);
                assert!(
                    disjoint || nested,
                    "rows overlap without nesting: {a:?} and {b:?}"
                );
            }
        }
    }

    #[test]
    fn ipv4_table_is_sorted_and_laminar() {
        laminar_and_sorted(IPV4);
    }

    #[test]
    fn ipv6_table_is_sorted_and_laminar() {
        laminar_and_sorted(IPV6);
    }

    #[test]
    fn most_specific_row_decides() {
        let row = lookup(IPV4, u32::from(Ipv4Addr::new(192, 0, 0, 9))).map(|r| r.rule);
        assert_eq!(row, Some(Rule::Ipv4PcpAnycast));
        let row = lookup(IPV4, u32::from(Ipv4Addr::new(192, 0, 0, 11))).map(|r| r.rule);
        assert_eq!(row, Some(Rule::Ipv4IetfProtocol));
    }

    #[test]
    fn rfc6052_layouts_extract_the_same_ipv4() {
        // 192.0.2.33 in every layout of RFC 6052 section 2.4's table.
        let cases = [
            ("2001:db8:c000:221::", 32),
            ("2001:db8:1c0:2:21::", 40),
            ("2001:db8:122:c000:2:2100::", 48),
            ("2001:db8:122:3c0:0:221::", 56),
            ("2001:db8:122:344:c0:2:2100:0", 64),
            ("2001:db8:122:344::192.0.2.33", 96),
        ];
        for (text, len) in cases {
            let addr: Ipv6Addr = text.parse().expect("test vector parses");
            assert_eq!(
                rfc6052_extract(addr, len),
                Ipv4Addr::new(192, 0, 2, 33),
                "{text}"
            );
        }
    }
}
