//! The table test: every row is a URL or an address and the verdict the
//! default policy must reach (a rule id, `PASS`, or `UNPARSEABLE` for URLs
//! the WHATWG parser itself rejects, which the client can never request).

use std::net::IpAddr;

use url::{Host, Url};

use super::Policy;

const PASS: &str = "pass";
const UNPARSEABLE: &str = "unparseable";

/// Addresses: range edges (first and last of each range, and the neighbours
/// just outside it), every IPv4-in-IPv6 embedding, and public addresses.
/// Each is checked with `check_ip` and as a URL literal with `check_url`.
const IP_ROWS: &[(&str, &str)] = &[
    // 0.0.0.0/8 and 0.0.0.0/32
    ("0.0.0.0", "ipv4-this-host"),
    ("0.0.0.1", "ipv4-this-network"),
    ("0.255.255.255", "ipv4-this-network"),
    ("1.0.0.0", PASS),
    // 10.0.0.0/8
    ("9.255.255.255", PASS),
    ("10.0.0.0", "ipv4-private"),
    ("10.255.255.255", "ipv4-private"),
    ("11.0.0.0", PASS),
    // 100.64.0.0/10
    ("100.63.255.255", PASS),
    ("100.64.0.0", "ipv4-shared"),
    ("100.100.100.200", "ipv4-shared"),
    ("100.127.255.255", "ipv4-shared"),
    ("100.128.0.0", PASS),
    // 127.0.0.0/8
    ("126.255.255.255", PASS),
    ("127.0.0.0", "ipv4-loopback"),
    ("127.0.0.1", "ipv4-loopback"),
    ("127.0.0.2", "ipv4-loopback"),
    ("127.255.255.255", "ipv4-loopback"),
    ("128.0.0.0", PASS),
    // 169.254.0.0/16
    ("169.253.255.255", PASS),
    ("169.254.0.0", "ipv4-link-local"),
    ("169.254.169.254", "ipv4-link-local"),
    ("169.254.170.2", "ipv4-link-local"),
    ("169.254.255.255", "ipv4-link-local"),
    ("169.255.0.0", PASS),
    // 172.16.0.0/12
    ("172.15.255.255", PASS),
    ("172.16.0.0", "ipv4-private"),
    ("172.31.255.255", "ipv4-private"),
    ("172.32.0.0", PASS),
    // 192.0.0.0/24 and what nests inside it
    ("191.255.255.255", PASS),
    ("192.0.0.0", "ipv4-service-continuity"),
    ("192.0.0.7", "ipv4-service-continuity"),
    ("192.0.0.8", "ipv4-dummy"),
    ("192.0.0.9", "ipv4-pcp-anycast"),
    ("192.0.0.10", "ipv4-turn-anycast"),
    ("192.0.0.11", "ipv4-ietf-protocol"),
    ("192.0.0.169", "ipv4-ietf-protocol"),
    ("192.0.0.170", "ipv4-nat64-discovery"),
    ("192.0.0.171", "ipv4-nat64-discovery"),
    ("192.0.0.172", "ipv4-ietf-protocol"),
    ("192.0.0.192", "ipv4-ietf-protocol"),
    ("192.0.0.255", "ipv4-ietf-protocol"),
    ("192.0.1.0", PASS),
    // 192.0.2.0/24
    ("192.0.1.255", PASS),
    ("192.0.2.0", "ipv4-documentation"),
    ("192.0.2.255", "ipv4-documentation"),
    ("192.0.3.0", PASS),
    // 192.31.196.0/24
    ("192.31.195.255", PASS),
    ("192.31.196.0", "ipv4-as112"),
    ("192.31.196.255", "ipv4-as112"),
    ("192.31.197.0", PASS),
    // 192.52.193.0/24
    ("192.52.192.255", PASS),
    ("192.52.193.0", "ipv4-amt"),
    ("192.52.193.255", "ipv4-amt"),
    ("192.52.194.0", PASS),
    // 192.88.99.0/24 and 192.88.99.2/32
    ("192.88.98.255", PASS),
    ("192.88.99.0", "ipv4-6to4-relay"),
    ("192.88.99.1", "ipv4-6to4-relay"),
    ("192.88.99.2", "ipv4-6a44-relay"),
    ("192.88.99.3", "ipv4-6to4-relay"),
    ("192.88.99.255", "ipv4-6to4-relay"),
    ("192.88.100.0", PASS),
    // 192.168.0.0/16
    ("192.167.255.255", PASS),
    ("192.168.0.0", "ipv4-private"),
    ("192.168.1.1", "ipv4-private"),
    ("192.168.255.255", "ipv4-private"),
    ("192.169.0.0", PASS),
    // 192.175.48.0/24
    ("192.175.47.255", PASS),
    ("192.175.48.0", "ipv4-as112-direct"),
    ("192.175.48.255", "ipv4-as112-direct"),
    ("192.175.49.0", PASS),
    // 198.18.0.0/15
    ("198.17.255.255", PASS),
    ("198.18.0.0", "ipv4-benchmarking"),
    ("198.19.255.255", "ipv4-benchmarking"),
    ("198.20.0.0", PASS),
    // 198.51.100.0/24
    ("198.51.99.255", PASS),
    ("198.51.100.0", "ipv4-documentation"),
    ("198.51.100.255", "ipv4-documentation"),
    ("198.51.101.0", PASS),
    // 203.0.113.0/24
    ("203.0.112.255", PASS),
    ("203.0.113.0", "ipv4-documentation"),
    ("203.0.113.255", "ipv4-documentation"),
    ("203.0.114.0", PASS),
    // 224.0.0.0/4, 240.0.0.0/4, 255.255.255.255
    ("223.255.255.255", PASS),
    ("224.0.0.0", "ipv4-multicast"),
    ("239.255.255.255", "ipv4-multicast"),
    ("240.0.0.0", "ipv4-reserved"),
    ("255.255.255.254", "ipv4-reserved"),
    ("255.255.255.255", "ipv4-broadcast"),
    // Public IPv4.
    ("8.8.8.8", PASS),
    ("1.1.1.1", PASS),
    ("93.184.215.14", PASS),
    ("87.0.0.1", PASS),
    ("168.63.129.16", PASS),
    // ::/128, ::1/128, ::/96 (IPv4-compatible)
    ("::", "ipv6-unspecified"),
    ("::1", "ipv6-loopback"),
    ("::2", "ipv4-this-network"),
    ("::7f00:1", "ipv4-loopback"),
    ("::a9fe:a9fe", "ipv4-link-local"),
    ("::808:808", "ipv6-ipv4-compatible"),
    ("::ffff:ffff", "ipv4-broadcast"),
    ("::1:0:0", "ipv6-reserved"),
    // ::ffff:0:0/96 (IPv4-mapped): judged by the IPv4 inside
    ("::fffe:ffff:ffff", "ipv6-reserved"),
    ("::ffff:0.0.0.0", "ipv4-this-host"),
    ("::ffff:10.0.0.1", "ipv4-private"),
    ("::ffff:127.0.0.1", "ipv4-loopback"),
    ("::ffff:169.254.169.254", "ipv4-link-local"),
    ("::ffff:192.0.0.192", "ipv4-ietf-protocol"),
    ("::ffff:8.8.8.8", PASS),
    ("::ffff:255.255.255.255", "ipv4-broadcast"),
    ("::1:0:0:0", "ipv6-reserved"),
    // ::ffff:0:0:0/96 (SIIT)
    ("::ffff:0:0:0", "ipv4-this-host"),
    ("::ffff:0:7f00:1", "ipv4-loopback"),
    ("::ffff:0:808:808", "ipv6-ipv4-translated"),
    ("::ffff:0:ffff:ffff", "ipv4-broadcast"),
    // 64:ff9b::/96 (NAT64 well-known): judged by the IPv4 inside
    ("64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", "ipv6-reserved"),
    ("64:ff9b::", "ipv4-this-host"),
    ("64:ff9b::7f00:1", "ipv4-loopback"),
    ("64:ff9b::a9fe:a9fe", "ipv4-link-local"),
    ("64:ff9b::c0a8:101", "ipv4-private"),
    ("64:ff9b::808:808", PASS),
    ("64:ff9b::ffff:ffff", "ipv4-broadcast"),
    ("64:ff9b::1:0:0", "ipv6-reserved"),
    // 64:ff9b:1::/48 (local-use NAT64)
    ("64:ff9b:1::", "ipv6-nat64-local"),
    ("64:ff9b:1:808::a9fe:a9fe", "ipv6-nat64-local"),
    ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", "ipv6-nat64-local"),
    ("64:ff9b:2::", "ipv6-reserved"),
    ("64:ff9c::1", "ipv6-reserved"),
    // 100::/64 and 100:0:0:1::/64 (2025)
    ("ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ipv6-reserved"),
    ("100::", "ipv6-discard"),
    ("100::ffff:ffff:ffff:ffff", "ipv6-discard"),
    ("100:0:0:1::", "ipv6-dummy"),
    ("100:0:0:1:ffff:ffff:ffff:ffff", "ipv6-dummy"),
    ("100:0:0:2::", "ipv6-reserved"),
    // 2000::/3 starts; 2001::/23 and what nests inside it
    ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ipv6-reserved"),
    ("2000::", PASS),
    ("2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PASS),
    ("2001::", "ipv4-broadcast"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "ipv4-documentation"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "ipv4-loopback"),
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", "ipv6-teredo"),
    ("2001:0:ffff:ffff:ffff:ffff:ffff:fffe", "ipv4-this-network"),
    ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", "ipv4-this-host"),
    ("2001:1::", "ipv6-ietf-protocol"),
    ("2001:1::1", "ipv6-pcp-anycast"),
    ("2001:1::2", "ipv6-turn-anycast"),
    ("2001:1::3", "ipv6-dns-sd-anycast"),
    ("2001:1::4", "ipv6-ietf-protocol"),
    ("2001:2::", "ipv6-benchmarking"),
    ("2001:2:0:ffff:ffff:ffff:ffff:ffff", "ipv6-benchmarking"),
    ("2001:2:1::", "ipv6-ietf-protocol"),
    ("2001:3::", "ipv6-amt"),
    ("2001:3:ffff:ffff:ffff:ffff:ffff:ffff", "ipv6-amt"),
    ("2001:4:112::", "ipv6-as112"),
    ("2001:4:112:ffff:ffff:ffff:ffff:ffff", "ipv6-as112"),
    ("2001:4:113::", "ipv6-ietf-protocol"),
    ("2001:10::", "ipv6-orchid"),
    ("2001:1f:ffff:ffff:ffff:ffff:ffff:ffff", "ipv6-orchid"),
    ("2001:20::", "ipv6-orchid-v2"),
    ("2001:2f:ffff:ffff:ffff:ffff:ffff:ffff", "ipv6-orchid-v2"),
    ("2001:30::", "ipv6-drone-det"),
    ("2001:3f:ffff:ffff:ffff:ffff:ffff:ffff", "ipv6-drone-det"),
    ("2001:40::", "ipv6-ietf-protocol"),
    (
        "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
        "ipv6-ietf-protocol",
    ),
    ("2001:200::", PASS),
    // 2001:db8::/32
    ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", PASS),
    ("2001:db8::", "ipv6-documentation"),
    (
        "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
        "ipv6-documentation",
    ),
    ("2001:db9::", PASS),
    // 2002::/16 (6to4): denied, with the IPv4 inside named when it is denied too
    ("2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PASS),
    ("2002::", "ipv4-this-host"),
    ("2002:7f00:1::", "ipv4-loopback"),
    ("2002:a9fe:a9fe::1", "ipv4-link-local"),
    ("2002:808:808::", "ipv6-6to4"),
    ("2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ipv4-broadcast"),
    ("2003::", PASS),
    // 2620:4f:8000::/48
    ("2620:4f:7fff:ffff:ffff:ffff:ffff:ffff", PASS),
    ("2620:4f:8000::", "ipv6-as112-direct"),
    ("2620:4f:8000:ffff:ffff:ffff:ffff:ffff", "ipv6-as112-direct"),
    ("2620:4f:8001::", PASS),
    // 3fff::/20 (2024)
    ("3ffe::1", PASS),
    ("3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PASS),
    ("3fff::", "ipv6-documentation"),
    (
        "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff",
        "ipv6-documentation",
    ),
    ("3fff:1000::", PASS),
    ("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", PASS),
    // outside 2000::/3; 5f00::/16 (2024)
    ("4000::", "ipv6-reserved"),
    ("4000::1", "ipv6-reserved"),
    ("5eff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ipv6-reserved"),
    ("5f00::", "ipv6-srv6-sid"),
    ("5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ipv6-srv6-sid"),
    ("5f01::", "ipv6-reserved"),
    ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ipv6-reserved"),
    // fc00::/7, fe80::/10, fec0::/10, ff00::/8
    ("fc00::", "ipv6-unique-local"),
    ("fd00:ec2::254", "ipv6-unique-local"),
    (
        "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "ipv6-unique-local",
    ),
    ("fe00::", "ipv6-reserved"),
    ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ipv6-reserved"),
    ("fe80::", "ipv6-link-local"),
    ("fe80::1", "ipv6-link-local"),
    ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ipv6-link-local"),
    ("fec0::", "ipv6-site-local"),
    ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ipv6-site-local"),
    ("ff00::", "ipv6-multicast"),
    ("ff02::1", "ipv6-multicast"),
    ("ff0e::1", "ipv6-multicast"),
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ipv6-multicast"),
    // Public IPv6.
    ("2606:4700:4700::1111", PASS),
    ("2001:4860:4860::8888", PASS),
    ("2a00:1450:4001:82a::200e", PASS),
];

/// URLs: every spelling of a literal the WHATWG parser accepts, host-name
/// rules, URL-level rules, and public URLs that must pass.
const URL_ROWS: &[(&str, &str)] = &[
    // 127.0.0.1 spelled every way WHATWG reads it.
    ("http://127.0.0.1/", "ipv4-loopback"),
    ("http://2130706433/", "ipv4-loopback"),
    ("http://0x7f000001/", "ipv4-loopback"),
    ("http://0X7F000001/", "ipv4-loopback"),
    ("http://017700000001/", "ipv4-loopback"),
    ("http://0x7f.1/", "ipv4-loopback"),
    ("http://0177.0.0.1/", "ipv4-loopback"),
    ("http://0177.1/", "ipv4-loopback"),
    ("http://0x7f.0x0.0x0.0x1/", "ipv4-loopback"),
    ("http://127.000.000.001/", "ipv4-loopback"),
    ("http://127.1/", "ipv4-loopback"),
    ("http://127.0.1/", "ipv4-loopback"),
    ("http://127.0.0.1./", "ipv4-loopback"),
    ("http://127.1./", "ipv4-loopback"),
    ("http://%31%32%37.0.0.1/", "ipv4-loopback"),
    ("http://１２７．０．０．１/", "ipv4-loopback"),
    ("http://①②⑦.⓪.⓪.①/", "ipv4-loopback"),
    ("http://127。0。0。1/", "ipv4-loopback"),
    ("http://127.0.0.1:8080/", "ipv4-loopback"),
    ("http://127.0.0.1#@example.com/", "ipv4-loopback"),
    ("http:/127.0.0.1/", "ipv4-loopback"),
    ("http:127.0.0.1/", "ipv4-loopback"),
    ("http:\\\\127.0.0.1\\", "ipv4-loopback"),
    ("https://127.0.0.2/", "ipv4-loopback"),
    // 0.0.0.0
    ("http://0/", "ipv4-this-host"),
    ("http://0.0.0.0/", "ipv4-this-host"),
    ("http://0x0/", "ipv4-this-host"),
    ("http://00000/", "ipv4-this-host"),
    // 169.254.169.254
    ("http://169.254.169.254/", "ipv4-link-local"),
    ("http://169.254.43518/", "ipv4-link-local"),
    ("http://169.16689662/", "ipv4-link-local"),
    ("http://2852039166/", "ipv4-link-local"),
    ("http://0xa9fea9fe/", "ipv4-link-local"),
    ("http://0xA9.0xFE.0xA9.0xFE/", "ipv4-link-local"),
    ("http://0251.0376.0251.0376/", "ipv4-link-local"),
    ("http://⓪ⓧⓐ⑨ⓕⓔⓐ⑨ⓕⓔ/", "ipv4-link-local"),
    ("http://169。254。169。254/", "ipv4-link-local"),
    ("http://１６９．２５４．１６９．２５４/", "ipv4-link-local"),
    // Private and shared space in odd spellings.
    ("http://012.0.0.1/", "ipv4-private"),
    ("http://10.1/", "ipv4-private"),
    ("http://167772161/", "ipv4-private"),
    ("http://0xc0a80001/", "ipv4-private"),
    ("http://3232235777/", "ipv4-private"),
    ("http://0x64.0x64.0x64.0xc8/", "ipv4-shared"),
    ("http://4294967295/", "ipv4-broadcast"),
    ("http://0xffffffff/", "ipv4-broadcast"),
    // Public addresses in odd spellings pass: the parsed value decides.
    ("http://0127.0.0.1/", PASS),
    ("http://0x08080808/", PASS),
    ("http://134744072/", PASS),
    ("http://8.8.8.8./", PASS),
    ("http://0x8.0x8.0x8.0x8/", PASS),
    ("http://８．８．８．８/", PASS),
    // IPv6 literals.
    ("http://[::1]/", "ipv6-loopback"),
    ("http://[0:0:0:0:0:0:0:1]/", "ipv6-loopback"),
    ("http://[0000::1]/", "ipv6-loopback"),
    ("http://[::]/", "ipv6-unspecified"),
    ("http://[::ffff:127.0.0.1]/", "ipv4-loopback"),
    ("http://[::FFFF:127.0.0.1]/", "ipv4-loopback"),
    ("http://[::ffff:7f00:1]/", "ipv4-loopback"),
    ("http://[0:0:0:0:0:ffff:127.0.0.1]/", "ipv4-loopback"),
    ("http://[::127.0.0.1]/", "ipv4-loopback"),
    ("http://[::ffff:0:127.0.0.1]/", "ipv4-loopback"),
    ("http://[64:ff9b::127.0.0.1]/", "ipv4-loopback"),
    ("http://[64:ff9b::169.254.169.254]/", "ipv4-link-local"),
    ("http://[::ffff:169.254.169.254]/", "ipv4-link-local"),
    ("http://[2002:7f00:1::]/", "ipv4-loopback"),
    ("http://[2002:a9fe:a9fe::1]/", "ipv4-link-local"),
    (
        "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
        "ipv4-loopback",
    ),
    ("http://[64:ff9b:1::a9fe:a9fe]/", "ipv6-nat64-local"),
    ("http://[fd00:ec2::254]/", "ipv6-unique-local"),
    ("http://[fe80::1]/", "ipv6-link-local"),
    ("http://[64:ff9b::8.8.8.8]/", PASS),
    ("http://[::ffff:8.8.8.8]/", PASS),
    ("http://[2606:4700:4700::1111]/", PASS),
    ("https://[2001:4860:4860::8888]:8443/", PASS),
    // More spellings WHATWG reads as an IPv4 address: percent-encoding, tabs and newlines
    // (removed), soft hyphens (IDNA maps them to nothing), other Unicode digits and dots.
    ("http://127%2E0%2E0%2E1/", "ipv4-loopback"),
    ("http://0x7f%2e1/", "ipv4-loopback"),
    ("http://%30/", "ipv4-this-host"),
    ("http://%30%2e%30%2e%30%2e%30/", "ipv4-this-host"),
    ("http://12\t7.0.0.1/", "ipv4-loopback"),
    ("http://127.0.0.1\n/", "ipv4-loopback"),
    (" http://127.0.0.1/ ", "ipv4-loopback"),
    ("http://127.0.0.1\u{ad}/", "ipv4-loopback"),
    ("http://127｡0｡0｡1/", "ipv4-loopback"),
    ("http://127.0.0.1%E3%80%82/", "ipv4-loopback"),
    ("http://①②⑦。⓪。⓪。①。/", "ipv4-loopback"),
    ("http://%E2%91%A0%E2%91%A1%E2%91%A6.0.0.1/", "ipv4-loopback"),
    ("http://𝟏𝟐𝟕.𝟎.𝟎.𝟏/", "ipv4-loopback"),
    ("http://¹²⁷.⁰.⁰.¹/", "ipv4-loopback"),
    ("http://0X7F.1/", "ipv4-loopback"),
    ("http://0x7f.0x00.0x00.0x01./", "ipv4-loopback"),
    ("http://127.0.0.0x1/", "ipv4-loopback"),
    ("http://0000000177.0.0.1/", "ipv4-loopback"),
    ("http://127.0.0.1:0080/", "ipv4-loopback"),
    ("http://127.0.0.1.:8080/", "ipv4-loopback"),
    ("http://127.0.0.1\\@example.com/", "ipv4-loopback"),
    ("http://127.0.0.1?@example.com/", "ipv4-loopback"),
    ("http://0./", "ipv4-this-host"),
    ("http://0.0/", "ipv4-this-host"),
    ("http://0x/", "ipv4-this-host"),
    ("http://0x.0x.0x.0x/", "ipv4-this-host"),
    ("http://0xffffffff./", "ipv4-broadcast"),
    ("http://4294967295./", "ipv4-broadcast"),
    // More IPv6 spellings: leading zeros, upper case, embedded dotted quads.
    ("http://[::0]/", "ipv6-unspecified"),
    ("http://[0:0:0:0:0:0:0:0]/", "ipv6-unspecified"),
    ("http://[0::1]/", "ipv6-loopback"),
    ("http://[::ffff:7f00:0001]/", "ipv4-loopback"),
    ("http://[::0:ffff:127.0.0.1]/", "ipv4-loopback"),
    ("http://[0:0:0:0:0:0:127.0.0.1]/", "ipv4-loopback"),
    ("http://[::127.0.0.1]:80/", "ipv4-loopback"),
    ("http://[64:ff9b::7f00:1]/", "ipv4-loopback"),
    ("http://[::ffff:0.0.0.0]/", "ipv4-this-host"),
    ("http://[::ffff:a9fe:a9fe]/", "ipv4-link-local"),
    ("http://[FE80::1]/", "ipv6-link-local"),
    ("http://[2001:db8::1]/", "ipv6-documentation"),
    ("http://[3fff::1]/", "ipv6-documentation"),
    ("http://[5f00::1]/", "ipv6-srv6-sid"),
    ("http://[100:0:0:1::1]/", "ipv6-dummy"),
    ("http://[2001:1::3]/", "ipv6-dns-sd-anycast"),
    ("http://[ff0e::1]/", "ipv6-multicast"),
    ("http://[fec0::1]/", "ipv6-site-local"),
    ("http://[4000::1]/", "ipv6-reserved"),
    // Ports: 0 is refused whatever the host.
    ("http://127.0.0.1:0/", "port"),
    ("http://[::1]:0/", "port"),
    // What the WHATWG parser rejects never becomes a request.
    ("http://[fe80::1%25eth0]/", UNPARSEABLE),
    ("http://[fe80::1%eth0]/", UNPARSEABLE),
    ("http://7147006462/", UNPARSEABLE),
    ("http://0x41414141A9FEA9FE/", UNPARSEABLE),
    ("http://256.0.0.1/", UNPARSEABLE),
    ("http://1.2.3.4.5/", UNPARSEABLE),
    ("http://4294967296/", UNPARSEABLE),
    ("http://foo.0x7f/", UNPARSEABLE),
    ("http://[fe80::1%251]/", UNPARSEABLE),
    ("http://[fe80::1%1]/", UNPARSEABLE),
    ("http://[::ffff:127.1]/", UNPARSEABLE),
    ("http://[::1]./", UNPARSEABLE),
    ("http://%5B::1%5D/", UNPARSEABLE),
    ("http://00x7f.1/", UNPARSEABLE),
    ("http://0x100000000/", UNPARSEABLE),
    ("http://127.0.0.1%00/", UNPARSEABLE),
    ("http://127.0.0.1%20/", UNPARSEABLE),
    ("http://169.254.169.254%2f/", UNPARSEABLE),
    ("http://١٢٧.٠.٠.١/", UNPARSEABLE),
    // Host-name rules.
    ("http://localhost/", "host-localhost"),
    ("http://LOCALHOST/", "host-localhost"),
    ("http://localhost./", "host-localhost"),
    ("http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/", "host-localhost"),
    ("http://api.localhost/", "host-localhost"),
    ("http://localhost:8080/", "host-localhost"),
    ("http://printer.local/", "host-mdns"),
    ("http://router.home.arpa/", "host-home-arpa"),
    ("http://db.internal/", "host-internal"),
    ("http://service.corp.internal./", "host-internal"),
    ("http://metadata.google.internal/", "host-metadata"),
    ("http://metadata/", "host-metadata"),
    ("http://instance-data/", "host-metadata"),
    ("http://metadata.tencentyun.com/", "host-metadata"),
    ("http://127.0.0.1../", "host-invalid"),
    ("http://%6c%6f%63%61%6c%68%6f%73%74/", "host-localhost"),
    ("http://loc\u{ad}alhost/", "host-localhost"),
    ("http://loc\u{200b}alhost/", "host-localhost"),
    ("http://ｌｏｃａｌｈｏｓｔ/", "host-localhost"),
    ("http://ＬＯＣＡＬＨＯＳＴ/", "host-localhost"),
    ("http://localhost%2e/", "host-localhost"),
    ("http://localhost。/", "host-localhost"),
    ("http://LocalHost./", "host-localhost"),
    ("http://foo.localhost./", "host-localhost"),
    ("http://local/", "host-mdns"),
    ("http://metadata./", "host-metadata"),
    ("http://METADATA.GOOGLE.INTERNAL./", "host-metadata"),
    ("http://x.internal%E3%80%82/", "host-internal"),
    // A host of only dots.
    ("http://./", "host-invalid"),
    ("http://../", "host-invalid"),
    ("http://.../", "host-invalid"),
    ("http://.:8080/", "host-invalid"),
    ("http://.example.com/", "host-invalid"),
    ("http://a..example.com/", "host-invalid"),
    // Names that merely look close pass (the resolver judges their addresses).
    ("https://example.com/", PASS),
    ("http://example.com./", PASS),
    ("https://EXAMPLE.com/path?q=1", PASS),
    ("http://localhost.example.com/", PASS),
    ("http://notlocalhost/", PASS),
    ("http://local.example/", PASS),
    ("http://internal.example.com/", PASS),
    ("http://mylocal/", PASS),
    ("http://faß.de/", PASS),
    ("http://xn--fa-hia.de/", PASS),
    ("http://example.com\\@127.0.0.1/", PASS),
    ("http://example.com:8080/", PASS),
    ("https://example.com:443/", PASS),
    // URL-level rules.
    ("gopher://127.0.0.1/", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("ftp://example.com/", "scheme"),
    ("dict://example.com:11211/", "scheme"),
    ("ws://example.com/", "scheme"),
    ("data:text/plain,hello", "scheme"),
    ("http://evil@127.0.0.1/", "userinfo"),
    ("http://user:secret@example.com/", "userinfo"),
    ("http://example.com:80@127.0.0.1/", "userinfo"),
    ("http://:@example.com/", PASS),
    ("http://example.com:0/", "port"),
];

fn verdict(result: Result<(), super::Refusal>) -> String {
    match result {
        Ok(()) => PASS.to_owned(),
        Err(refusal) => refusal.rule().as_str().to_owned(),
    }
}

fn literal_url(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("http://{v4}/"),
        IpAddr::V6(v6) => format!("http://[{v6}]/"),
    }
}

#[test]
fn every_row_gets_its_verdict() {
    let policy = Policy::default();
    let mut failures = Vec::new();

    for &(text, expected) in IP_ROWS {
        let ip: IpAddr = match text.parse() {
            Ok(ip) => ip,
            Err(_) => {
                failures.push(format!("{text}: test row does not parse"));
                continue;
            }
        };
        let by_ip = verdict(policy.check_ip(ip));
        if by_ip != expected {
            failures.push(format!("check_ip({text}) = {by_ip}, want {expected}"));
        }
        let url = literal_url(ip);
        let by_url = match Url::parse(&url) {
            Ok(url) => verdict(policy.check_url(&url)),
            Err(_) => UNPARSEABLE.to_owned(),
        };
        if by_url != expected {
            failures.push(format!("check_url({url}) = {by_url}, want {expected}"));
        }
    }

    for &(text, expected) in URL_ROWS {
        let url = match Url::parse(text) {
            Ok(url) => url,
            Err(_) => {
                if expected != UNPARSEABLE {
                    failures.push(format!("{text}: url rejects it, want {expected}"));
                }
                continue;
            }
        };
        let by_url = verdict(policy.check_url(&url));
        if by_url != expected {
            failures.push(format!("check_url({text}) = {by_url}, want {expected}"));
        }
        // An IP literal gets the same verdict from check_ip as from the URL,
        // unless a URL-level rule answered first.
        let ip = match url.host() {
            Some(Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
            Some(Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
            _ => None,
        };
        let url_level = ["scheme", "userinfo", "port"].contains(&expected);
        if let (Some(ip), false) = (ip, url_level) {
            let by_ip = verdict(policy.check_ip(ip));
            if by_ip != expected {
                failures.push(format!(
                    "check_ip({ip}) from {text} = {by_ip}, want {expected}"
                ));
            }
        }
    }

    assert!(
        IP_ROWS.len() + URL_ROWS.len() >= 150,
        "the table must keep at least 150 rows"
    );
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_range_edge_of_the_tables_is_covered() {
    // Guards the table test itself: the first and last address of every
    // built-in row appear in IP_ROWS.
    let listed: Vec<IpAddr> = IP_ROWS
        .iter()
        .filter_map(|(text, _)| text.parse().ok())
        .collect();
    let mut missing = Vec::new();
    for row in super::tables::IPV4 {
        for edge in [row.start, row.end] {
            let ip = IpAddr::V4(edge.into());
            if !listed.contains(&ip) {
                missing.push(ip);
            }
        }
    }
    for row in super::tables::IPV6 {
        for edge in [row.start, row.end] {
            let ip = IpAddr::V6(edge.into());
            if !listed.contains(&ip) {
                missing.push(ip);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "edges missing from IP_ROWS: {missing:?}"
    );
}

/// Addresses to try every spelling of: each table edge and its neighbours,
/// and a fixed spread over the whole IPv4 space.
fn sample_ipv4() -> Vec<u32> {
    let mut sample: Vec<u32> = super::tables::IPV4
        .iter()
        .flat_map(|row| {
            [
                row.start.wrapping_sub(1),
                row.start,
                row.end,
                row.end.wrapping_add(1),
            ]
        })
        .collect();
    // A multiplicative walk (Knuth's constant is odd, so it visits distinct values).
    sample.extend((0..4096u32).map(|i| i.wrapping_mul(0x9E37_79B1)));
    sample
}

#[test]
fn every_ipv4_spelling_gets_the_verdict_of_the_address() {
    let policy = Policy::default();
    let mut failures = Vec::new();
    for bits in sample_ipv4() {
        let v4 = std::net::Ipv4Addr::from(bits);
        let [a, b, c, d] = v4.octets();
        let expected = verdict(policy.check_ip(IpAddr::V4(v4)));
        let spellings = [
            format!("{v4}"),
            format!("{bits}"),
            format!("0x{bits:x}"),
            format!("0{a:o}.0{b:o}.0{c:o}.0{d:o}"),
            format!("{a}.{b}.{}", u32::from(c) << 8 | u32::from(d)),
            format!("{a}.{}", bits & 0x00ff_ffff),
            format!("0x{a:x}.0x{b:x}.0x{c:x}.0x{d:x}"),
            format!("{v4}."),
            format!("[::ffff:{v4}]"),
            format!("[64:ff9b::{v4}]"),
        ];
        for host in spellings {
            let url = format!("http://{host}/");
            let got = match Url::parse(&url) {
                Ok(url) => verdict(policy.check_url(&url)),
                Err(err) => format!("unparseable ({err})"),
            };
            if got != expected {
                failures.push(format!("{url} = {got}, but {v4} = {expected}"));
            }
        }
        // Forms that are denied whatever they carry name the IPv4 rule when it denies.
        for (host, own_rule) in [
            (format!("[::ffff:0:{v4}]"), "ipv6-ipv4-translated"),
            (
                format!("[2002:{:x}:{:x}::1]", bits >> 16, bits & 0xffff),
                "ipv6-6to4",
            ),
        ] {
            let url = format!("http://{host}/");
            let got = match Url::parse(&url) {
                Ok(url) => verdict(policy.check_url(&url)),
                Err(err) => format!("unparseable ({err})"),
            };
            let want = if expected == PASS {
                own_rule
            } else {
                expected.as_str()
            };
            if got != want {
                failures.push(format!("{url} = {got}, want {want}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} spellings failed:\n{}",
        failures.len(),
        failures[..failures.len().min(40)].join("\n")
    );
}
