//! `--expose-prometheus-metrics`: smokescreen's counters under its Prometheus names.

mod support;

use support::{Egress, Upstream, connect, curl};

#[test]
fn decisions_and_connections_are_counted() {
    let upstream = Upstream::start("127.0.0.1");
    let allow = format!("127.0.0.1:{}", upstream.port());
    let proxy = Egress::start(&[
        "--allow-address",
        &allow,
        "--expose-prometheus-metrics",
        "--prometheus-listen-ip",
        "127.0.0.1",
        "--prometheus-port",
        "0",
        "--prometheus-endpoint",
        "/stats",
    ]);
    let served = proxy
        .log_lines()
        .into_iter()
        .find(|l| l["msg"] == "serving prometheus metrics")
        .expect("the metrics listener is logged");
    let metrics_addr = served["metrics_addr"].as_str().unwrap().to_owned();

    assert_eq!(connect(proxy.addr, &allow).0.status, 200);
    assert_eq!(connect(proxy.addr, "127.0.0.1:9").0.status, 407);
    assert_eq!(connect(proxy.addr, "[::ffff:0:7f00:1]:9").0.status, 407);

    let out = curl(&[&format!("http://{metrics_addr}/stats")]);
    assert_eq!(out.code, 0, "{out:?}");
    for line in [
        "resolver_attempts_total 3",
        "resolver_allow_user_configured 1",
        "resolver_deny_not_global_unicast 1",
        "resolver_deny_ipv6_embedding 1",
        "resolver_deny_rule{rule=\"ipv4-loopback\"} 2",
        "cn_atpt_total{success=\"true\"} 1",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "{line} missing:\n{}",
            out.stdout
        );
    }
    let out = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://{metrics_addr}/metrics"),
    ]);
    assert_eq!(out.stdout, "404");
}
