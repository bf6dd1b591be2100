//! smokescreen's limits through the running proxy: tunnels open (429 with `Retry-After`),
//! requests per second (429) and requests in flight (503).

mod support;

use support::{Egress, Upstream, connect, raw_request};

#[test]
fn past_the_tunnel_limit_a_connect_gets_429_with_retry_after() {
    let upstream = Upstream::start("127.0.0.1");
    let target = format!("127.0.0.1:{}", upstream.port());
    let proxy = Egress::start(&[
        "--allow-address",
        &target,
        "--max-concurrent-connect-tunnels",
        "1",
    ]);
    let (first, tunnel) = connect(proxy.addr, &target);
    assert_eq!(first.status, 200);
    let (second, _) = connect(proxy.addr, &target);
    assert_eq!(second.status_line, "HTTP/1.1 429 Too Many Requests");
    assert_eq!(second.header("retry-after"), Some("1"));
    assert_eq!(second.body, "maximum concurrent connect tunnels exceeded\n");
    // The slot comes back when the tunnel closes.
    drop(tunnel);
    proxy.closed_tunnel(&target);
    let (third, _) = connect(proxy.addr, &target);
    assert_eq!(third.status, 200, "{third:?}");
}

#[test]
fn past_the_request_rate_a_request_gets_429() {
    let proxy = Egress::start(&["--max-request-rate", "0.01", "--max-request-burst", "2"]);
    let statuses: Vec<u16> = (0..3)
        .map(|_| connect(proxy.addr, "127.0.0.1:9").0.status)
        .collect();
    assert_eq!(statuses[..2], [407, 407]);
    let (answer, _) = connect(proxy.addr, "127.0.0.1:9");
    assert_eq!(answer.status, 429);
    assert_eq!(
        answer.body,
        "Proxy rate limit exceeded. Please retry later.\n"
    );
    assert_eq!(answer.header("retry-after"), Some("1"));
}

#[test]
fn past_the_requests_in_flight_a_request_gets_503() {
    // A DNS server that never answers keeps the first request in flight for --dns-timeout.
    let dns = support::Dns::start(&[], &["slow.test"]);
    let proxy = Egress::start(&[
        "--max-concurrent-requests",
        "1",
        "--resolver-address",
        &dns.addr.to_string(),
        "--dns-timeout",
        "3s",
    ]);
    let addr = proxy.addr;
    let slow = std::thread::spawn(move || connect(addr, "slow.test:443").0.status);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while dns.queries_for("slow.test") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the first request never reached DNS"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let (answer, _) = raw_request(
        proxy.addr,
        "GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n",
    );
    assert_eq!(answer.status, 503);
    assert_eq!(answer.body, "Proxy overloaded. Please retry later.\n");
    assert_eq!(slow.join().unwrap(), 504);
}

#[test]
fn a_plain_request_holds_its_slot_until_its_answer_is_written() {
    use std::io::{Read, Write};
    use std::time::Duration;
    // An upstream whose answer's body takes a second to finish.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = support::read_head(&mut stream);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst");
        std::thread::sleep(Duration::from_secs(1));
        let _ = stream.write_all(b"-last");
    });
    let proxy = Egress::start(&["--allow-address", &target, "--max-concurrent-requests", "1"]);
    let mut first = std::net::TcpStream::connect(proxy.addr).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    first
        .write_all(
            format!("GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    support::read_head(&mut first).expect("the first answer's head");
    // The first answer's body is still on its way: no slot for a second request.
    let (second, _) = raw_request(
        proxy.addr,
        "GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n",
    );
    assert_eq!(second.status, 503, "{second:?}");
    let mut body = Vec::new();
    let _ = first.read_to_end(&mut body);
    assert_eq!(body, b"first-last");
    // Written out: the slot is free again.
    let (third, _) = raw_request(
        proxy.addr,
        "GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n",
    );
    assert_eq!(third.status, 407, "{third:?}");
}
