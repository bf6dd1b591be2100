//! smokescreen's ACL through the running proxy: roles, actions, the default entry, the global
//! lists, a missing role, and load-time errors.
//!
//! Without TLS a request has no role; `allow_missing_role: true` in the configuration file
//! makes the ACL judge it by the default entry (roles from certificates are in `tls.rs`).

mod support;

use support::{Dns, Egress, Upstream, connect, run_to_exit, temp_file};

const ACL: &str = r#"
version: v1
services:
  - name: enforce-srv
    project: usersec
    action: enforce
    allowed_domains: [allowed.test]
default:
  project: fallback
  action: enforce
  allowed_domains: ["*.allowed.test"]
global_allow_list: [everyone.test]
global_deny_list: [nobody.test]
"#;

fn proxy_with_acl(test: &str, dns: &Dns, upstream: &Upstream, missing_role: bool) -> Egress {
    let acl = temp_file(test, "acl.yaml", ACL);
    let config = temp_file(
        test,
        "config.yaml",
        &format!("allow_missing_role: {missing_role}\nacl_file: {acl}\n"),
    );
    Egress::start(&[
        "--config-file",
        &config,
        "--resolver-address",
        &dns.addr.to_string(),
        "--allow-address",
        &format!("127.0.0.1:{}", upstream.port()),
    ])
}

fn names() -> Dns {
    let loopback: &[&str] = &["127.0.0.1"];
    Dns::start(
        &[
            ("allowed.test", loopback),
            ("api.allowed.test", loopback),
            ("elsewhere.test", loopback),
            ("everyone.test", loopback),
            ("nobody.test", loopback),
        ],
        &[],
    )
}

#[test]
fn default_entry_judges_a_missing_role_when_allowed() {
    let (dns, upstream) = (names(), Upstream::start("127.0.0.1"));
    let proxy = proxy_with_acl("missing-allowed", &dns, &upstream, true);
    let port = upstream.port();

    let allowed = format!("api.allowed.test:{port}");
    let (answer, _) = connect(proxy.addr, &allowed);
    assert_eq!(answer.status, 200, "{answer:?}");
    let line = proxy.decision(&allowed);
    assert_eq!(line["role"], "");
    assert_eq!(line["project"], "fallback");
    assert_eq!(
        line["decision_reason"],
        "host matched allowed domain in rule"
    );

    let denied = format!("elsewhere.test:{port}");
    let (answer, _) = connect(proxy.addr, &denied);
    assert_eq!(answer.status, 407);
    assert_eq!(
        answer.body,
        format!("Egress proxying is denied to host '{denied}': default rule policy used.\n")
    );
    let line = proxy.decision(&denied);
    assert_eq!(line["enforce_would_deny"], true);
    assert_eq!(line["allow"], false);
    // Denied by the ACL: the name was never looked up.
    assert_eq!(dns.queries_for("elsewhere.test"), 0);
}

#[test]
fn global_lists_apply_to_every_role() {
    let (dns, upstream) = (names(), Upstream::start("127.0.0.1"));
    let proxy = proxy_with_acl("global-lists", &dns, &upstream, true);
    let port = upstream.port();
    let (answer, _) = connect(proxy.addr, &format!("everyone.test:{port}"));
    assert_eq!(answer.status, 200, "{answer:?}");
    let (answer, _) = connect(proxy.addr, &format!("nobody.test:{port}"));
    assert_eq!(answer.status, 407);
    assert!(
        answer
            .body
            .contains("host matched rule in global deny list")
    );
}

#[test]
fn a_missing_role_is_denied_unless_allowed() {
    let (dns, upstream) = (names(), Upstream::start("127.0.0.1"));
    let proxy = proxy_with_acl("missing-denied", &dns, &upstream, false);
    let target = format!("allowed.test:{}", upstream.port());
    let (answer, _) = connect(proxy.addr, &target);
    assert_eq!(answer.status, 407);
    assert!(
        answer.body.contains("Client role cannot be determined"),
        "{answer:?}"
    );
    let line = proxy.decision(&target);
    assert_eq!(line["enforce_would_deny"], false);
}

#[test]
fn the_acl_does_not_lift_the_address_policy() {
    // Allowed by the ACL, but the name resolves to a loopback address the policy denies.
    let (dns, upstream) = (names(), Upstream::start("127.0.0.1"));
    let acl = temp_file("acl-then-policy", "acl.yaml", ACL);
    let config = temp_file(
        "acl-then-policy",
        "config.yaml",
        &format!("allow_missing_role: true\nacl_file: {acl}\n"),
    );
    let proxy = Egress::start(&[
        "--config-file",
        &config,
        "--resolver-address",
        &dns.addr.to_string(),
    ]);
    let (answer, _) = connect(proxy.addr, &format!("everyone.test:{}", upstream.port()));
    assert_eq!(answer.status, 407);
    assert!(
        answer.body.contains("Deny: Not Global Unicast"),
        "{answer:?}"
    );
}

#[test]
fn upstream_proxy_requests_are_denied() {
    let (dns, upstream) = (names(), Upstream::start("127.0.0.1"));
    let proxy = proxy_with_acl("upstream-proxy", &dns, &upstream, true);
    let target = format!("allowed.test:{}", upstream.port());
    let (answer, _) = support::raw_request(
        proxy.addr,
        &format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\
             X-Upstream-Https-Proxy: https://proxy.test:3128\r\n\r\n"
        ),
    );
    assert_eq!(answer.status, 407);
    assert!(answer.body.contains("X-Upstream-Https-Proxy"), "{answer:?}");
}

#[test]
fn an_invalid_acl_stops_the_proxy_at_start() {
    let acl = temp_file(
        "invalid-acl",
        "acl.yaml",
        "version: v1\nservices:\n  - name: a\n    action: block\n",
    );
    let (code, output) = run_to_exit(&["--egress-acl-file", &acl, "--listen-port", "0"]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("unknown action block"), "{output}");
}

#[test]
fn a_disabled_action_stops_the_proxy_at_start() {
    let acl = temp_file(
        "disabled-action",
        "acl.yaml",
        "version: v1\nservices:\n  - name: a\n    action: open\n",
    );
    let (code, output) = run_to_exit(&[
        "--egress-acl-file",
        &acl,
        "--disable-acl-policy-action",
        "open",
        "--listen-port",
        "0",
    ]);
    assert_eq!(code, 1, "{output}");
    assert!(
        output.contains("rule for svc:a utilizes a disabled policy:Open"),
        "{output}"
    );
}
