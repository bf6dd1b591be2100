//! Graceful shutdown: SIGTERM stops accepting, lets open tunnels finish, and exits once they
//! close or `exit_timeout` passes.

mod support;

use std::io::Write;
use std::time::Duration;

use support::{Egress, Upstream, connect, read_answer, temp_file};

#[test]
fn sigterm_drains_open_tunnels_then_exits() {
    let upstream = Upstream::start("127.0.0.1");
    let target = format!("127.0.0.1:{}", upstream.port());
    let mut proxy = Egress::start(&["--allow-address", &target]);
    let (answer, mut tunnel) = connect(proxy.addr, &target);
    assert_eq!(answer.status, 200);

    proxy.terminate();
    // No longer accepting...
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(proxy.addr).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...but the open tunnel still carries bytes, and the proxy waits for it.
    tunnel
        .write_all(b"GET /after-sigterm HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(
        read_answer(&mut tunnel)
            .body
            .starts_with("GET /after-sigterm")
    );
    assert!(proxy.wait_exit(Duration::from_millis(300)).is_none());

    drop(tunnel);
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("exits once drained");
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigterm_closes_what_is_left_after_exit_timeout() {
    let upstream = Upstream::start("127.0.0.1");
    let target = format!("127.0.0.1:{}", upstream.port());
    let config = temp_file("exit-timeout", "config.yaml", "exit_timeout: 500ms\n");
    let mut proxy = Egress::start(&["--config-file", &config, "--allow-address", &target]);
    let (answer, _tunnel) = connect(proxy.addr, &target);
    assert_eq!(answer.status, 200);
    let started = std::time::Instant::now();
    proxy.terminate();
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("exits after exit_timeout");
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[test]
fn an_idle_tunnel_is_closed_after_idle_timeout() {
    let upstream = Upstream::start("127.0.0.1");
    let target = format!("127.0.0.1:{}", upstream.port());
    let config = temp_file("idle-timeout", "config.yaml", "idle_timeout: 300ms\n");
    let proxy = Egress::start(&["--config-file", &config, "--allow-address", &target]);
    let (answer, mut tunnel) = connect(proxy.addr, &target);
    assert_eq!(answer.status, 200);
    let closed = proxy.closed_tunnel(&target);
    assert_eq!(closed["bytes_in"], 0);
    let mut buf = [0u8; 1];
    use std::io::Read;
    assert_eq!(
        tunnel.read(&mut buf).unwrap_or(0),
        0,
        "the client side is closed too"
    );
}

#[test]
fn an_idle_client_connection_is_closed_after_read_header_timeout() {
    use std::io::Read;
    let config = temp_file(
        "header-timeout",
        "config.yaml",
        "read_header_timeout: 300ms\n",
    );
    let proxy = Egress::start(&["--config-file", &config]);
    let mut client = std::net::TcpStream::connect(proxy.addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    // Closed (or answered with 408) without the client sending a byte.
    let _ = client.read(&mut buf);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[test]
fn sigterm_lets_a_request_in_flight_finish() {
    use std::io::Read;
    // An upstream that answers one second late.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = support::read_head(&mut stream);
        std::thread::sleep(Duration::from_secs(1));
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlate\n");
    });
    let mut proxy = Egress::start(&["--allow-address", &target]);
    let mut client = std::net::TcpStream::connect(proxy.addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
        .write_all(format!("GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    proxy.terminate();
    let answer = read_answer(&mut client);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, "late\n");
    // The kept-alive connection is closed once the answer is out, and the proxy exits.
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("exits once drained");
    assert!(status.success(), "{status:?}");
}

#[test]
fn an_answer_not_written_within_write_timeout_is_cut() {
    use std::io::Read;
    // An upstream that sends its head and half its body, then stalls.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = support::read_head(&mut stream);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf.");
        std::thread::sleep(Duration::from_secs(30));
    });
    let config = temp_file("write-timeout", "config.yaml", "write_timeout: 500ms\n");
    let proxy = Egress::start(&["--config-file", &config, "--allow-address", &target]);
    let mut client = std::net::TcpStream::connect(proxy.addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    client
        .write_all(format!("GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .unwrap();
    let head = support::read_head(&mut client).expect("the answer's head");
    assert!(head.starts_with(b"HTTP/1.1 200"));
    let mut body = Vec::new();
    let _ = client.read_to_end(&mut body);
    assert_eq!(body, b"half.", "the answer is cut, not completed");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
