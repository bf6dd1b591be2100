//! The policy's decisions, address by address and URL by URL.

use super::*;
use crate::client::ssrf::Embedding;
use crate::client::ssrf::PolicyBuilder;

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
fn an_allow_rule_over_loopback_link_local_or_everything_is_warned_about() {
    for rule in [
        "127.0.0.0/8",
        "169.254.0.0/16",
        "::/112",
        "fe80::/10",
        "0.0.0.0/0",
    ] {
        let logs = crate::test_log::logged(|| {
            let _ = Policy::builder().allow_addr(rule).build();
        });
        assert!(
            logs.contains("covers loopback, link-local or all addresses"),
            "{rule}: {logs}"
        );
    }
}

#[test]
fn an_allow_rule_for_one_address_or_a_private_network_warns_of_nothing() {
    for rule in [
        "127.0.0.1",
        "127.0.0.1:8080",
        "::1",
        "10.0.0.0/8",
        "fd00::/8",
    ] {
        let logs = crate::test_log::logged(|| {
            let _ = Policy::builder().allow_addr(rule).build();
        });
        assert!(!logs.contains("covers loopback"), "{rule}: {logs}");
    }
}

#[test]
fn an_allowed_zone_does_not_cover_a_name_that_merely_ends_with_it() {
    let policy = Policy::builder()
        .allow_host("*.corp.example")
        .build()
        .unwrap();
    assert_eq!(rule_of(&policy, "http://api.corp.example/"), None);
    assert_eq!(
        rule_of(&policy, "http://evilcorp.example/"),
        Some(Rule::UserHostNotAllowed)
    );
}

#[test]
fn a_zone_pattern_needs_a_whole_label_before_the_zone() {
    // `judge_name` refuses empty labels before any pattern is asked; the pattern does not
    // rely on it.
    let zone = HostPattern::Under("corp.example".to_owned());
    assert!(zone.matches("a.corp.example"));
    assert!(!zone.matches(".corp.example"));
    assert!(!zone.matches("corp.example"));
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

mod properties {
    //! The default policy's address table against the ways an address can be spelled.

    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;
    use url::Url;

    use super::super::Policy;
    use crate::proptest_config::config;

    /// Any IPv4 address, half of them drawn inside the special-purpose blocks, where the
    /// verdicts differ.
    fn v4_bits() -> impl Strategy<Value = u32> {
        let special = [
            (0x0000_0000, 8),
            (0x0a00_0000, 8),
            (0x6440_0000, 10),
            (0x7f00_0000, 8),
            (0xa9fe_0000, 16),
            (0xac10_0000, 12),
            (0xc000_0000, 24),
            (0xc000_0200, 24),
            (0xc0a8_0000, 16),
            (0xc612_0000, 15),
            (0xe000_0000, 4),
            (0xf000_0000, 4),
        ];
        prop_oneof![
            any::<u32>(),
            (0..special.len(), any::<u32>()).prop_map(move |(index, low)| {
                let (base, prefix) = special[index];
                base | (low >> prefix)
            }),
        ]
    }

    fn rule(verdict: Result<(), crate::client::ssrf::Refusal>) -> Option<&'static str> {
        verdict.err().map(|refusal| refusal.rule().as_str())
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn an_ipv4_mapped_address_is_judged_as_the_ipv4_address(bits in v4_bits()) {
            let policy = Policy::default();
            let v4 = Ipv4Addr::from(bits);
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            prop_assert_eq!(
                policy.check_ip(mapped).is_ok(),
                policy.check_ip(IpAddr::V4(v4)).is_ok()
            );
        }

        #[test]
        fn an_ip_literal_url_is_judged_as_its_address(bits in v4_bits(), port in prop_oneof![Just(80u16), Just(443)]) {
            let policy = Policy::default();
            let v4 = Ipv4Addr::from(bits);
            let scheme = if port == 443 { "https" } else { "http" };
            let url = Url::parse(&format!("{scheme}://{v4}/")).unwrap();
            prop_assert_eq!(rule(policy.check_url(&url)), rule(policy.check_ip(IpAddr::V4(v4))));
        }

        #[test]
        fn a_decimal_or_hex_spelling_is_judged_as_the_dotted_address(bits in v4_bits()) {
            let policy = Policy::default();
            let dotted = Url::parse(&format!("http://{}/", Ipv4Addr::from(bits))).unwrap();
            for spelling in [format!("http://{bits}/"), format!("http://{bits:#x}/")] {
                let url = Url::parse(&spelling).unwrap();
                prop_assert_eq!(rule(policy.check_url(&url)), rule(policy.check_url(&dotted)));
            }
        }

        #[test]
        fn every_ipv6_address_has_a_verdict_and_the_same_one_in_a_url(bits in any::<u128>()) {
            let policy = Policy::default();
            let v6 = Ipv6Addr::from(bits);
            let url = Url::parse(&format!("http://[{v6}]/")).unwrap();
            prop_assert_eq!(rule(policy.check_url(&url)), rule(policy.check_ip(IpAddr::V6(v6))));
        }
    }
}
