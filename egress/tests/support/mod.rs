//! What the egress tests share: the binary started on a loopback port and killed by pid, an
//! upstream HTTP server, a DNS server of the test's own, and raw and curl clients.
//!
//! Everything listens on loopback; no test asks a real resolver (every name goes to
//! [`Dns`] through `--resolver-address`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The proxy binary, started by a test and killed (by its pid) when dropped.
pub struct Egress {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Egress {
    /// Starts the proxy on a free loopback port with these extra flags.
    pub fn start(args: &[&str]) -> Egress {
        Self::try_start(args).unwrap_or_else(|stderr| panic!("proxy did not start:\n{stderr}"))
    }

    /// Starts the proxy; `Err` holds its stderr when it exits before listening.
    pub fn try_start(args: &[&str]) -> Result<Egress, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_stopover-egress"));
        if !args.contains(&"--listen-ip") {
            command.args(["--listen-ip", "127.0.0.1"]);
        }
        if !args.contains(&"--listen-port") {
            command.args(["--listen-port", "0"]);
        }
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn stopover-egress");
        let stderr = child.stderr.take().expect("stderr piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(json) = serde_json::from_str::<Value>(&line) {
                    if json["msg"] == "listening" {
                        let addr = json["listening_addr"].as_str().unwrap_or_default();
                        let _ = tx.send(addr.parse::<SocketAddr>().ok());
                    }
                }
                sink.lock().unwrap().push(line);
            }
            let _ = tx.send(None);
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(addr)) => Ok(Egress { child, addr, logs }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                thread::sleep(Duration::from_millis(50));
                Err(logs.lock().unwrap().join("\n"))
            }
        }
    }

    /// `http://127.0.0.1:PORT`, for curl's `-x`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every JSON line written so far.
    pub fn log_lines(&self) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits for a canonical decision line about `requested_host`.
    pub fn decision(&self, requested_host: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.log_lines().into_iter().find(|l| {
                l["msg"] == "CANONICAL-PROXY-DECISION" && l["requested_host"] == requested_host
            }) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no decision line for {requested_host}; lines:\n{}",
                self.logs.lock().unwrap().join("\n")
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the line written when a tunnel to `requested_host` closes.
    pub fn closed_tunnel(&self, requested_host: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.log_lines().into_iter().find(|l| {
                l["msg"] == "CANONICAL-PROXY-CN-CLOSE" && l["requested_host"] == requested_host
            }) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no close line for {requested_host}; lines:\n{}",
                self.logs.lock().unwrap().join("\n")
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM to the proxy.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
    }

    /// Waits for the proxy to exit, at most `limit`; its exit status, or `None` if it still
    /// runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion (for flag and configuration errors): exit code and output.
pub fn run_to_exit(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_stopover-egress"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run stopover-egress");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

/// A loopback HTTP/1.1 server that answers every request with its own request head as the
/// body, plus an `X-Smokescreen-Error` header the proxy must remove.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Upstream {
    /// Starts on `ip`, a free port.
    pub fn start(ip: &str) -> Upstream {
        Self::start_on(&format!("{ip}:0"))
    }

    /// Starts on `addr`.
    pub fn start_on(addr: &str) -> Upstream {
        Self::start_with(addr, None)
    }

    /// Starts on `ip`, closing every connection after one answer: with `Connection: close`
    /// when `announce`, silently otherwise.
    pub fn start_closing(ip: &str, announce: bool) -> Upstream {
        Self::start_with(&format!("{ip}:0"), Some(announce))
    }

    fn start_with(addr: &str, closing: Option<bool>) -> Upstream {
        let listener = TcpListener::bind(addr).expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (connections.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                thread::spawn(move || serve_echo(stream, closing));
            }
        });
        Upstream {
            addr,
            connections,
            stop,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve_echo(mut stream: TcpStream, closing: Option<bool>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    loop {
        let Some(head) = read_head(&mut stream) else {
            return;
        };
        let body = String::from_utf8_lossy(&head).into_owned();
        let close = if closing == Some(true) {
            "Connection: close\r\n"
        } else {
            ""
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Smokescreen-Error: from-upstream\r\n\
             X-Smokescreen-Trace-ID: from-upstream\r\nX-Upstream: yes\r\n{close}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).is_err() || closing.is_some() {
            return;
        }
    }
}

/// Reads up to the end of an HTTP head (64 KiB at most).
pub fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
        if head.len() > 65_536 {
            return None;
        }
    }
    Some(head)
}

/// A DNS server on loopback answering A and AAAA queries from a table; names not in the table
/// get NXDOMAIN, and names listed as silent get no answer at all.
pub struct Dns {
    /// Where it listens (for `--resolver-address`).
    pub addr: SocketAddr,
    /// Queries received, by name.
    pub queries: Arc<Mutex<HashMap<String, usize>>>,
}

impl Dns {
    /// Starts with `records` (name, addresses) and `silent` names.
    pub fn start(records: &[(&str, &[&str])], silent: &[&str]) -> Dns {
        Self::start_with(records, silent, &[])
    }

    /// Starts with `records`; over UDP the `truncated` names get an empty answer with the TC
    /// bit set, and their records only over TCP (on the same port).
    pub fn start_with(records: &[(&str, &[&str])], silent: &[&str], truncated: &[&str]) -> Dns {
        let (socket, tcp) = (0..20)
            .find_map(|_| {
                let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
                let tcp = TcpListener::bind(socket.local_addr().ok()?).ok()?;
                Some((socket, tcp))
            })
            .expect("a UDP and TCP port pair for the DNS server");
        let addr = socket.local_addr().unwrap();
        let table: Arc<HashMap<String, Vec<IpAddr>>> = Arc::new(
            records
                .iter()
                .map(|(name, ips)| {
                    (
                        name.to_string(),
                        ips.iter()
                            .map(|ip| ip.parse().expect("test address"))
                            .collect(),
                    )
                })
                .collect(),
        );
        let silent: Vec<String> = silent.iter().map(|s| s.to_string()).collect();
        let truncated: Vec<String> = truncated.iter().map(|s| s.to_string()).collect();
        let queries = Arc::new(Mutex::new(HashMap::new()));
        let (seen, udp_table) = (queries.clone(), table.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            loop {
                let Ok((len, from)) = socket.recv_from(&mut buf) else {
                    return;
                };
                let Some((name, qtype, question_end)) = parse_question(&buf[..len]) else {
                    continue;
                };
                *seen.lock().unwrap().entry(name.clone()).or_insert(0) += 1;
                if silent.contains(&name) {
                    continue;
                }
                let answer = if truncated.contains(&name) {
                    let mut answer = build_answer(&buf[..question_end], Some(&Vec::new()), qtype);
                    answer[2] |= 0x02;
                    answer
                } else {
                    build_answer(&buf[..question_end], udp_table.get(&name), qtype)
                };
                let _ = socket.send_to(&answer, from);
            }
        });
        let tcp_seen = queries.clone();
        thread::spawn(move || {
            for stream in tcp.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut length = [0u8; 2];
                if stream.read_exact(&mut length).is_err() {
                    continue;
                }
                let mut query = vec![0u8; usize::from(u16::from_be_bytes(length))];
                if stream.read_exact(&mut query).is_err() {
                    continue;
                }
                let Some((name, qtype, question_end)) = parse_question(&query) else {
                    continue;
                };
                *tcp_seen
                    .lock()
                    .unwrap()
                    .entry(format!("tcp:{name}"))
                    .or_insert(0) += 1;
                let answer = build_answer(&query[..question_end], table.get(&name), qtype);
                let mut framed = (answer.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&answer);
                let _ = stream.write_all(&framed);
            }
        });
        Dns { addr, queries }
    }

    /// How many queries asked for `name` (`tcp:name` for those over TCP).
    pub fn queries_for(&self, name: &str) -> usize {
        self.queries.lock().unwrap().get(name).copied().unwrap_or(0)
    }
}

fn parse_question(message: &[u8]) -> Option<(String, u16, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*message.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(message.get(at..at + len)?).to_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*message.get(at)?, *message.get(at + 1)?]);
    Some((labels.join("."), qtype, at + 4))
}

fn build_answer(query: &[u8], found: Option<&Vec<IpAddr>>, qtype: u16) -> Vec<u8> {
    let mut m = query.to_vec();
    m[2] = 0x81; // response, recursion desired
    m[3] = if found.is_some() { 0x80 } else { 0x83 }; // recursion available; NXDOMAIN
    let records: Vec<&IpAddr> = found
        .map(|ips| {
            ips.iter()
                .filter(|ip| (qtype == 1 && ip.is_ipv4()) || (qtype == 28 && ip.is_ipv6()))
                .collect()
        })
        .unwrap_or_default();
    m[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    m[8..12].fill(0);
    for ip in records {
        m.extend_from_slice(&[0xc0, 12]);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 30]);
        match ip {
            IpAddr::V4(v4) => {
                m.extend_from_slice(&[0, 4]);
                m.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                m.extend_from_slice(&[0, 16]);
                m.extend_from_slice(&v6.octets());
            }
        }
    }
    m
}

/// An answer read off the wire: status line, headers (lower-case names) and body.
#[derive(Debug)]
pub struct Answer {
    /// `HTTP/1.1 407 Request rejected by proxy`
    pub status_line: String,
    /// The status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (read by `Content-Length`).
    pub body: String,
}

impl Answer {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends a raw request to the proxy and reads the answer (head, and a body of
/// `Content-Length` bytes). Returns the stream too, still open (for tunnels).
pub fn raw_request(proxy: SocketAddr, request: &str) -> (Answer, TcpStream) {
    let mut stream = TcpStream::connect(proxy).expect("connect to proxy");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let answer = read_answer(&mut stream);
    (answer, stream)
}

/// Reads one HTTP answer from a stream.
pub fn read_answer(stream: &mut TcpStream) -> Answer {
    let head = read_head(stream).expect("an answer head");
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default().to_owned();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("the answer body");
    Answer {
        status_line,
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `CONNECT target` through the proxy.
pub fn connect(proxy: SocketAddr, target: &str) -> (Answer, TcpStream) {
    raw_request(
        proxy,
        &format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
    )
}

/// What curl printed.
#[derive(Debug)]
pub struct Curl {
    /// curl's exit code.
    pub code: i32,
    /// stdout (with `-i`: the final answer's head and body).
    pub stdout: String,
    /// stderr (with `-v`: the CONNECT exchange).
    pub stderr: String,
}

/// Runs curl with a 20-second cap.
pub fn curl(args: &[&str]) -> Curl {
    let output = Command::new("curl")
        .args(["-s", "-S", "--max-time", "20", "--noproxy", ""])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .expect("curl is installed");
    Curl {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Writes `text` to a fresh file in a per-test temporary folder and returns its path.
pub fn temp_file(test: &str, name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("stopover-egress-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}
