//! The command line as a user meets it: `--help`, smokescreen's unsupported flags, bad values.

mod support;

use support::run_to_exit;

#[test]
fn help_lists_smokescreens_flags_with_their_defaults() {
    let (code, help) = run_to_exit(&["--help"]);
    assert_eq!(code, 0, "{help}");
    for flag in [
        "--listen-ip",
        "--listen-port",
        "--timeout",
        "--deny-range",
        "--allow-range",
        "--deny-address",
        "--allow-address",
        "--egress-acl-file",
        "--resolver-address",
        "--dns-timeout",
        "--tls-server-bundle-file",
        "--tls-client-ca-file",
        "--tls-crl-file",
        "--additional-error-message-on-deny",
        "--unsafe-allow-private-ranges",
        "--max-concurrent-requests",
        "--max-request-rate",
        "--max-request-burst",
        "--max-concurrent-connect-tunnels",
        "--expose-prometheus-metrics",
        "--prometheus-endpoint",
        "--prometheus-listen-ip",
        "--prometheus-port",
        "--config-file",
        "--disable-acl-policy-action",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
    for default in [
        "[default: 4750]",
        "[default: 10s]",
        "[default: 5s]",
        "[default: 9810]",
    ] {
        assert!(
            help.contains(default),
            "{default} missing from --help:\n{help}"
        );
    }
}

#[test]
fn unsupported_smokescreen_flags_are_refused_by_name() {
    for flag in [
        "--proxy-protocol",
        "--statsd-address=127.0.0.1:8200",
        "--stats-socket-dir=/tmp",
    ] {
        let (code, output) = run_to_exit(&[flag]);
        assert_eq!(code, 2, "{flag}: {output}");
        let name = flag.split('=').next().unwrap();
        assert!(
            output.contains(&format!(
                "{name} is a smokescreen flag that stopover-egress does not support"
            )),
            "{flag}: {output}"
        );
    }
}

#[test]
fn go_style_single_dash_flags_work() {
    let (code, output) = run_to_exit(&["-listen-port", "not-a-port"]);
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("not-a-port"), "{output}");
}

#[test]
fn a_bad_range_stops_the_proxy_with_the_input_named() {
    let (code, output) = run_to_exit(&["--deny-range", "10.0.0.0/33", "--listen-port", "0"]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("10.0.0.0/33"), "{output}");
}

#[test]
fn a_port_in_use_stops_the_proxy() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, output) = run_to_exit(&["--listen-ip", "127.0.0.1", "--listen-port", &port]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("can't find listener"), "{output}");
}
