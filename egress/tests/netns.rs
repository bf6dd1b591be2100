//! Denials of non-loopback destinations, run in a network namespace that has only a loopback
//! interface (`unshare --net`, as root), so that nothing could leave the machine even if the
//! proxy were wrong.
//!
//! The test re-runs itself (this test binary, this one test) inside the namespace, where it
//! does the work; without root or `unshare` it is skipped with a message, and under `CI=true`
//! it fails instead. The destinations are rows smokescreen's default classification lets
//! through (Oracle Cloud's 192.0.0.192, 198.18.0.0/15, 3fff::/20, IPv4 inside IPv6) next to
//! the classic ones.

mod support;

use std::process::Command;

use support::{Dns, Egress, connect};

const TEST: &str = "non_loopback_destinations_are_denied_in_a_network_namespace";

#[test]
fn non_loopback_destinations_are_denied_in_a_network_namespace() {
    if std::env::var("STOPOVER_EGRESS_NETNS").as_deref() == Ok("1") {
        return inside_a_namespace_with_only_loopback();
    }
    let unavailable = match Command::new("id").arg("-u").output() {
        Ok(out) if String::from_utf8_lossy(&out.stdout).trim() == "0" => {
            match Command::new("unshare").args(["--net", "true"]).status() {
                Ok(status) if status.success() => None,
                _ => Some("`unshare --net` failed"),
            }
        }
        _ => Some("not running as root"),
    };
    if let Some(why) = unavailable {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the network-namespace test cannot run under CI: {why}"
        );
        eprintln!("SKIPPED non_loopback_destinations_are_denied_in_a_network_namespace: {why}");
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let status = Command::new("unshare")
        .args([
            "--net",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" --exact \"$1\" --nocapture",
        ])
        .arg(exe)
        .arg(TEST)
        .env("STOPOVER_EGRESS_NETNS", "1")
        .status()
        .expect("run unshare");
    assert!(
        status.success(),
        "the test inside the namespace failed: {status:?}"
    );
}

/// Whether this process's network namespace has only a loopback interface (`/proc/net/dev`
/// is per namespace; `/sys/class/net` shows the namespace sysfs was mounted in).
fn only_loopback() -> bool {
    std::fs::read_to_string("/proc/net/dev")
        .map(|table| {
            table
                .lines()
                .skip(2)
                .filter_map(|line| line.split(':').next())
                .all(|name| name.trim() == "lo")
        })
        .unwrap_or(false)
}

/// The work, inside the namespace the test made.
fn inside_a_namespace_with_only_loopback() {
    assert!(
        only_loopback(),
        "refusing to run where other interfaces exist"
    );

    let dns = Dns::start(
        &[
            ("metadata.test", &["169.254.169.254"]),
            ("private.test", &["10.0.0.1"]),
            ("oracle.test", &["192.0.0.192"]),
            ("benchmark.test", &["198.18.0.1"]),
            ("doc6.test", &["3fff::1"]),
            ("nat64.test", &["64:ff9b::a00:1"]),
            ("siit.test", &["::ffff:0:a9fe:a9fe"]),
            ("cgnat.test", &["100.64.0.1"]),
        ],
        &[],
    );
    let proxy = Egress::start(&["--resolver-address", &dns.addr.to_string()]);
    for (target, rule) in [
        ("metadata.test:80", "Deny: Not Global Unicast"),
        ("private.test:443", "Deny: Private Range"),
        ("oracle.test:80", "Deny: ipv4-ietf-protocol"),
        ("benchmark.test:443", "Deny: ipv4-benchmarking"),
        ("doc6.test:443", "Deny: ipv6-documentation"),
        ("nat64.test:443", "Deny: IPv6 Embedding"),
        ("siit.test:80", "Deny: IPv6 Embedding"),
        ("cgnat.test:443", "Deny: CGNAT Range"),
        ("192.0.0.192:80", "Deny: ipv4-ietf-protocol"),
        ("[3fff::1]:443", "Deny: ipv6-documentation"),
    ] {
        let (answer, _) = connect(proxy.addr, target);
        assert_eq!(answer.status, 407, "{target}: {answer:?}");
        assert!(
            answer.body.contains(&format!("denied by rule '{rule}'")),
            "{target}: expected {rule}: {}",
            answer.body
        );
    }

    // --unsafe-allow-private-ranges frees RFC 1918 only: 10.0.0.1 is allowed (and unreachable
    // here, so 502), the metadata address stays denied.
    let open = Egress::start(&[
        "--resolver-address",
        &dns.addr.to_string(),
        "--unsafe-allow-private-ranges",
    ]);
    let (answer, _) = connect(open.addr, "private.test:443");
    assert_eq!(answer.status, 502, "{answer:?}");
    let (answer, _) = connect(open.addr, "metadata.test:80");
    assert_eq!(answer.status, 407, "{answer:?}");

    // On a wildcard listener every local address reaches the proxy: 127.0.0.2 on its port
    // is refused as the proxy itself.
    let wildcard = Egress::start(&["--listen-ip", "::", "--allow-range", "127.0.0.0/8"]);
    let port = wildcard.addr.port();
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (answer, _) = connect(local, &format!("127.0.0.2:{port}"));
    assert_eq!(answer.status, 407, "{answer:?}");
    assert!(answer.body.contains("Deny: Self Connection"), "{answer:?}");
}
