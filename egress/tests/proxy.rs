//! The proxy driven by curl and raw sockets over loopback: tunnels, forwarding, smokescreen's
//! answers and its canonical log line, and the address policy after resolution.
//!
//! Denials here use loopback addresses the policy denies (loopback is special-purpose space):
//! that proves the same code path as any other denied range, and nothing can leave the
//! machine even if the proxy were wrong. Non-loopback denials are in `netns.rs`.

mod support;

use std::io::{Read, Write};

use support::{Dns, Egress, Upstream, connect, curl, raw_request};

#[test]
fn connect_tunnel_reaches_an_allowed_upstream() {
    let upstream = Upstream::start("127.0.0.1");
    let allow = format!("127.0.0.1:{}", upstream.port());
    let proxy = Egress::start(&["--allow-address", &allow]);
    let out = curl(&[
        "-p",
        "-x",
        &proxy.url(),
        &format!("http://{allow}/through-the-tunnel"),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.starts_with("GET /through-the-tunnel HTTP/1.1"),
        "{out:?}"
    );
    let line = proxy.decision(&allow);
    assert_eq!(line["proxy_type"], "connect");
    assert_eq!(line["allow"], true);
    assert_eq!(line["level"], "info");
}

#[test]
fn connect_answers_200_only_after_the_upstream_is_open() {
    let upstream = Upstream::start("127.0.0.1");
    let allow = format!("127.0.0.1:{}", upstream.port());
    let proxy = Egress::start(&["--allow-address", &allow]);
    let (answer, mut tunnel) = connect(proxy.addr, &allow);
    assert_eq!(answer.status, 200, "{answer:?}");
    // The upstream's accept loop may count the connection a moment after the kernel opened it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while upstream
        .connections
        .load(std::sync::atomic::Ordering::SeqCst)
        != 1
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the upstream saw no connection"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    tunnel
        .write_all(b"GET /raw HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let inner = support::read_answer(&mut tunnel);
    assert!(inner.body.starts_with("GET /raw HTTP/1.1"));
}

#[test]
fn plain_http_is_forwarded_without_smokescreen_headers() {
    let upstream = Upstream::start("127.0.0.1");
    let allow = format!("127.0.0.1:{}", upstream.port());
    let proxy = Egress::start(&["--allow-address", &allow]);
    let out = curl(&[
        "-i",
        "-x",
        &proxy.url(),
        "-H",
        "X-Smokescreen-Role: spoofed",
        "-H",
        "X-Smokescreen-Trace-ID: trace-42",
        "-H",
        "Proxy-Authorization: Basic c2VjcmV0",
        &format!("http://{allow}/path?q=1"),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let (head, body) = out.stdout.split_once("\r\n\r\n").expect("head and body");
    // What the upstream saw: origin-form target, Host from the URL, none of the proxy's headers.
    assert!(body.starts_with("GET /path?q=1 HTTP/1.1\r\n"), "{body}");
    assert!(
        body.to_lowercase().contains(&format!("host: {allow}")),
        "{body}"
    );
    let seen = body.to_lowercase();
    assert!(!seen.contains("x-smokescreen-role"), "{body}");
    assert!(!seen.contains("x-smokescreen-trace-id"), "{body}");
    assert!(!seen.contains("proxy-authorization"), "{body}");
    // What the client saw: the upstream's headers, without its X-Smokescreen-Error.
    let head = head.to_lowercase();
    assert!(head.contains("x-upstream: yes"), "{head}");
    assert!(!head.contains("x-smokescreen-error"), "{head}");
    assert!(!head.contains("x-smokescreen-trace-id"), "{head}");
    let line = proxy.decision(&allow);
    assert_eq!(line["trace_id"], "trace-42");
    assert_eq!(line["proxy_type"], "http");
}

#[test]
fn plain_http_reuses_an_idle_upstream_connection() {
    let upstream = Upstream::start("127.0.0.1");
    let allow = format!("127.0.0.1:{}", upstream.port());
    let proxy = Egress::start(&["--allow-address", &allow]);
    let out = curl(&[
        "-x",
        &proxy.url(),
        &format!("http://{allow}/first"),
        &format!("http://{allow}/second"),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("GET /first HTTP/1.1"), "{out:?}");
    assert!(out.stdout.contains("GET /second HTTP/1.1"), "{out:?}");
    assert_eq!(
        upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[test]
fn an_upstream_that_closes_gets_a_new_connection() {
    for announce in [true, false] {
        let upstream = Upstream::start_closing("127.0.0.1", announce);
        let allow = format!("127.0.0.1:{}", upstream.port());
        let proxy = Egress::start(&["--allow-address", &allow]);
        let urls: Vec<String> = (0..4).map(|i| format!("http://{allow}/{i}")).collect();
        let mut args = vec!["-x", proxy.url().leak() as &str];
        args.extend(urls.iter().map(String::as_str));
        let out = curl(&args);
        assert_eq!(out.code, 0, "announce {announce}: {out:?}");
        for i in 0..4 {
            assert!(
                out.stdout.contains(&format!("GET /{i} HTTP/1.1")),
                "{out:?}"
            );
        }
        assert_eq!(
            upstream
                .connections
                .load(std::sync::atomic::Ordering::SeqCst),
            4
        );
    }
}

#[test]
fn loopback_is_denied_by_default_with_smokescreens_answer() {
    let upstream = Upstream::start("127.0.0.1");
    let target = format!("127.0.0.1:{}", upstream.port());
    let proxy = Egress::start(&[]);

    let (answer, _) = connect(proxy.addr, &target);
    assert_eq!(answer.status_line, "HTTP/1.1 407 Request rejected by proxy");
    let expected = format!(
        "Egress proxying is denied to host '{target}': no valid IP found among resolved \
         addresses - 127.0.0.1 denied by rule 'Deny: Not Global Unicast'. ."
    );
    assert_eq!(answer.body, format!("{expected}\n"));
    assert_eq!(
        answer.header("x-smokescreen-error"),
        Some(expected.as_str())
    );
    assert_eq!(answer.header("content-type"), Some("text/plain"));

    let (answer, _) = raw_request(
        proxy.addr,
        &format!("GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n"),
    );
    assert_eq!(
        answer.status_line,
        "HTTP/1.1 407 Proxy Authentication Required"
    );
    assert_eq!(
        answer.header("x-smokescreen-error"),
        Some(expected.as_str())
    );
    assert_eq!(
        upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn curl_sees_the_denial_of_a_tunnel() {
    let proxy = Egress::start(&[]);
    let out = curl(&["-v", "-p", "-x", &proxy.url(), "http://127.0.0.1:9/"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("< HTTP/1.1 407 Request rejected by proxy"),
        "{out:?}"
    );
}

#[test]
fn denial_log_line_has_smokescreens_fields() {
    let proxy = Egress::start(&[]);
    let (answer, _) = raw_request(
        proxy.addr,
        "CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nX-Smokescreen-Trace-ID: t-1\r\n\r\n",
    );
    assert_eq!(answer.status, 407);
    let line = proxy.decision("127.0.0.1:9");
    assert_eq!(line["msg"], "CANONICAL-PROXY-DECISION");
    assert_eq!(line["level"], "warning");
    assert_eq!(line["allow"], false);
    assert_eq!(line["enforce_would_deny"], true);
    assert_eq!(line["proxy_type"], "connect");
    assert_eq!(line["status_code"], 407);
    assert_eq!(line["trace_id"], "t-1");
    assert_eq!(line["role"], "");
    assert_eq!(line["project"], "");
    assert!(
        line["decision_reason"]
            .as_str()
            .unwrap()
            .ends_with("denied by rule 'Deny: Not Global Unicast'. ")
    );
    assert_eq!(line["stopover_rule"], "ipv4-loopback");
    for field in [
        "id",
        "inbound_remote_addr",
        "start_time",
        "time",
        "dns_lookup_time_ms",
    ] {
        assert!(!line[field].is_null(), "{field} missing: {line}");
    }
}

#[test]
fn additional_error_message_is_appended() {
    let proxy = Egress::start(&["--additional-error-message-on-deny", "Ask #egress on chat."]);
    let (answer, _) = connect(proxy.addr, "127.0.0.1:9");
    assert!(
        answer
            .body
            .ends_with("'Deny: Not Global Unicast'. .\n\nAsk #egress on chat.\n\n"),
        "{answer:?}"
    );
    assert!(
        answer
            .header("x-smokescreen-error")
            .unwrap()
            .ends_with(". .  Ask #egress on chat."),
        "{answer:?}"
    );
}

#[test]
fn a_utf8_deny_message_reaches_the_header_too() {
    let proxy = Egress::start(&[
        "--additional-error-message-on-deny",
        "Demandez à #sécurité.",
    ]);
    let mut stream = std::net::TcpStream::connect(proxy.addr).unwrap();
    stream
        .write_all(b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n")
        .unwrap();
    let head = support::read_head(&mut stream).expect("an answer");
    let head = String::from_utf8(head).expect("UTF-8 head");
    assert!(head.contains("Demandez à #sécurité."), "{head}");
}

#[test]
fn an_oversized_request_head_is_refused_unread() {
    let proxy = Egress::start(&[]);
    let mut stream = std::net::TcpStream::connect(proxy.addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let huge = "a".repeat(2 << 20);
    // The proxy stops reading past its 1 MiB head limit: the write may fail once it has closed.
    let _ = stream.write_all(
        format!("GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n").as_bytes(),
    );
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
}

#[test]
fn the_network_setting_keeps_one_address_family() {
    let upstream = Upstream::start("127.0.0.1");
    let port = upstream.port();
    // ::1 is denied (loopback, not allowed); 127.0.0.1 on the upstream's port is allowed.
    let dns = Dns::start(&[("dual.test", &["::1", "127.0.0.1"])], &[]);
    let target = format!("dual.test:{port}");
    for (network, status) in [("ip", 200), ("ip4", 200), ("ip6", 407)] {
        let config = support::temp_file(
            &format!("network-{network}"),
            "config.yaml",
            &format!("network: {network}\n"),
        );
        let proxy = Egress::start(&[
            "--config-file",
            &config,
            "--resolver-address",
            &dns.addr.to_string(),
            "--allow-address",
            &format!("127.0.0.1:{port}"),
        ]);
        let (answer, _) = connect(proxy.addr, &target);
        assert_eq!(answer.status, status, "network {network}: {answer:?}");
    }
}

#[test]
fn connect_without_a_port_is_denied() {
    let proxy = Egress::start(&[]);
    let (answer, _) = raw_request(
        proxy.addr,
        "CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n",
    );
    assert_eq!(answer.status, 407, "{answer:?}");
    assert_eq!(
        answer.body,
        "Egress proxying is denied to host 'example.com': address example.com: missing port in \
         address.\n"
    );
}

#[test]
fn absolute_form_https_is_refused() {
    let proxy = Egress::start(&["--allow-range", "127.0.0.0/8"]);
    let (answer, _) = raw_request(
        proxy.addr,
        "GET https://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n",
    );
    assert_eq!(answer.status, 407, "{answer:?}");
    assert!(answer.body.contains("use CONNECT for https"), "{answer:?}");
}

#[test]
fn python_urllib_goes_through_the_proxy() {
    let upstream = Upstream::start("127.0.0.1");
    let allow = format!("127.0.0.1:{}", upstream.port());
    let proxy = Egress::start(&["--allow-address", &allow]);
    let script = format!(
        "import urllib.request\n\
         opener = urllib.request.build_opener(urllib.request.ProxyHandler({{'http': '{proxy}'}}))\n\
         print(opener.open('http://{allow}/from-python', timeout=10).read().decode())\n",
        proxy = proxy.url()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("GET /from-python HTTP/1.1"), "{stdout}");
    assert_eq!(proxy.decision(&allow)["proxy_type"], "http");
}

#[test]
fn a_client_chosen_upstream_proxy_is_refused_not_ignored() {
    let upstream = Upstream::start("127.0.0.1");
    let allow = format!("127.0.0.1:{}", upstream.port());
    let proxy = Egress::start(&["--allow-address", &allow]);
    let (answer, _) = raw_request(
        proxy.addr,
        &format!(
            "CONNECT {allow} HTTP/1.1\r\nHost: {allow}\r\n\
             X-Upstream-Https-Proxy: https://next-hop.test:3128\r\n\r\n"
        ),
    );
    assert_eq!(answer.status, 407, "{answer:?}");
    assert!(answer.body.contains("X-Upstream-Https-Proxy"), "{answer:?}");
    assert_eq!(
        upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn non_proxy_requests_are_refused() {
    let proxy = Egress::start(&[]);
    let (answer, _) = raw_request(proxy.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(answer.status, 500);
    assert_eq!(
        answer.body,
        "This is a proxy server. Does not respond to non-proxy requests.\n"
    );
}

#[test]
fn names_are_resolved_through_resolver_address() {
    let upstream = Upstream::start("127.0.0.1");
    let dns = Dns::start(&[("app.test", &["127.0.0.1"])], &[]);
    let dns_addr = dns.addr.to_string();
    let proxy = Egress::start(&[
        "--resolver-address",
        &dns_addr,
        "--allow-address",
        &format!("127.0.0.1:{}", upstream.port()),
    ]);
    let target = format!("app.test:{}", upstream.port());
    let out = curl(&["-i", "-x", &proxy.url(), &format!("http://{target}/named")]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("GET /named HTTP/1.1"), "{out:?}");
    // One A and one AAAA query, and nothing else.
    assert_eq!(dns.queries_for("app.test"), 2);
    let line = proxy.decision(&target);
    assert_eq!(
        line["outbound_remote_addr"],
        format!("127.0.0.1:{}", upstream.port())
    );
}

#[test]
fn a_truncated_dns_answer_is_asked_again_over_tcp() {
    let upstream = Upstream::start("127.0.0.1");
    let dns = Dns::start_with(&[("big.test", &["127.0.0.1"])], &[], &["big.test"]);
    let proxy = Egress::start(&[
        "--resolver-address",
        &dns.addr.to_string(),
        "--allow-address",
        &format!("127.0.0.1:{}", upstream.port()),
    ]);
    let (answer, _) = connect(proxy.addr, &format!("big.test:{}", upstream.port()));
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(dns.queries_for("big.test"), 2, "A and AAAA over UDP");
    assert_eq!(
        dns.queries_for("tcp:big.test"),
        2,
        "A and AAAA again over TCP"
    );
}

#[test]
fn a_name_resolving_to_a_denied_address_is_denied_without_connecting() {
    let upstream = Upstream::start("127.0.0.1");
    let dns = Dns::start(&[("rebind.test", &["127.0.0.1"])], &[]);
    let proxy = Egress::start(&["--resolver-address", &dns.addr.to_string()]);
    let target = format!("rebind.test:{}", upstream.port());
    let (answer, _) = connect(proxy.addr, &target);
    assert_eq!(answer.status, 407);
    assert!(
        answer
            .body
            .contains("127.0.0.1 denied by rule 'Deny: Not Global Unicast'"),
        "{answer:?}"
    );
    assert_eq!(
        upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn denied_answers_are_skipped_and_allowed_ones_tried_in_order() {
    let upstream = Upstream::start("127.0.0.1");
    let port = upstream.port();
    // 127.0.0.2 is denied; 127.0.0.3 is allowed but nothing listens there; 127.0.0.1 answers.
    let dns = Dns::start(
        &[("multi.test", &["127.0.0.2", "127.0.0.3", "127.0.0.1"])],
        &[],
    );
    let proxy = Egress::start(&[
        "--resolver-address",
        &dns.addr.to_string(),
        "--allow-range",
        "127.0.0.0/8",
        "--deny-address",
        "127.0.0.2",
    ]);
    // A listener on the denied address: the proxy must never connect to it.
    let denied = Upstream::start_on(&format!("127.0.0.2:{port}"));
    let target = format!("multi.test:{port}");
    let (answer, tunnel) = connect(proxy.addr, &target);
    assert_eq!(answer.status, 200, "{answer:?}");
    drop(tunnel);
    let closed = proxy.closed_tunnel(&target);
    assert_eq!(closed["outbound_remote_addr"], format!("127.0.0.1:{port}"));
    assert_eq!(
        denied.connections.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert_eq!(
        upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[test]
fn the_proxys_own_address_is_refused() {
    let proxy = Egress::start(&["--allow-range", "127.0.0.0/8"]);
    let own = proxy.addr.to_string();
    let (answer, _) = connect(proxy.addr, &own);
    assert_eq!(answer.status, 407, "{answer:?}");
    assert!(
        answer
            .body
            .contains("denied by rule 'Deny: Self Connection'"),
        "{answer:?}"
    );
}

#[test]
fn an_unknown_name_is_a_502() {
    let dns = Dns::start(&[], &[]);
    let proxy = Egress::start(&["--resolver-address", &dns.addr.to_string()]);
    let (answer, _) = connect(proxy.addr, "nowhere.test:443");
    assert_eq!(answer.status_line, "HTTP/1.1 502 Bad gateway");
    assert_eq!(
        answer.body,
        format!(
            "Failed to resolve remote hostname: lookup nowhere.test on {}: no such host\n",
            dns.addr
        )
    );
    let line = proxy.decision("nowhere.test:443");
    assert_eq!(line["level"], "error");
    assert_eq!(line["allow"], true);
    assert!(line["error"].as_str().unwrap().contains("no such host"));
}

#[test]
fn a_silent_resolver_is_a_504_after_dns_timeout() {
    let dns = Dns::start(&[], &["slow.test"]);
    let proxy = Egress::start(&[
        "--resolver-address",
        &dns.addr.to_string(),
        "--dns-timeout",
        "300ms",
    ]);
    let started = std::time::Instant::now();
    let (answer, _) = connect(proxy.addr, "slow.test:443");
    assert_eq!(answer.status_line, "HTTP/1.1 504 Gateway timeout");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn a_refused_connection_is_a_502() {
    // Bind and drop: a loopback port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let target = format!("127.0.0.1:{port}");
    let proxy = Egress::start(&["--allow-address", &target]);
    let (answer, _) = connect(proxy.addr, &target);
    assert_eq!(answer.status_line, "HTTP/1.1 502 Bad gateway");
    assert!(
        answer
            .body
            .starts_with("Failed to connect to remote host: dial tcp"),
        "{answer:?}"
    );
    let (answer, _) = raw_request(
        proxy.addr,
        &format!("GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n"),
    );
    assert_eq!(answer.status, 502);
}

#[test]
fn a_tunnel_carries_bytes_both_ways_until_closed() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 100_000];
        let mut got = 0;
        while got < buf.len() {
            let n = s.read(&mut buf[got..]).unwrap();
            assert!(n > 0);
            got += n;
        }
        s.write_all(&buf).unwrap();
    });
    let proxy = Egress::start(&["--allow-address", &target]);
    let (answer, mut tunnel) = connect(proxy.addr, &target);
    assert_eq!(answer.status, 200);
    let sent: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    tunnel.write_all(&sent).unwrap();
    let mut back = vec![0u8; sent.len()];
    tunnel.read_exact(&mut back).unwrap();
    assert_eq!(back, sent);
    echo.join().unwrap();
}
