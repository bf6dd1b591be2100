//! A scripted HTTP/1.1 server on 127.0.0.1 for the client middleware tests.
//!
//! Written on a bare `TcpListener` so that it can do what a well-behaved server never does:
//! close a connection before answering, hang, promise a body it never sends. Every request it
//! reads is recorded with the (tokio) instant it arrived, so tests count attempts and measure
//! waits on the paused clock.
#![allow(dead_code)] // each test binary uses part of it

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request target as sent: a path, an absolute URL (to a proxy), or `host:port`.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// Which accepted connection it came on (0-based).
    pub connection: usize,
}

impl Seen {
    /// The first value of a header (name compared without regard to case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The path of the target, without the query.
    pub fn path(&self) -> &str {
        let target = self
            .target
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or(&self.target);
        target.split('?').next().unwrap_or(target)
    }
}

/// What the server does with a request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Answer, then close the connection (unless `keep_alive`).
    Respond(Answer),
    /// Close the connection without a byte of answer.
    Close,
    /// Never answer; keep the connection open.
    Hang,
}

/// A response to write.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Keep the connection open for further requests (default: close after the answer, so
    /// that no pooled connection keeps a timer pending on the paused clock).
    pub keep_alive: bool,
    /// Announce this Content-Length instead of the body's, then stall after the body.
    pub announced_length: Option<u64>,
    /// Wait this long (on the tokio clock) before answering.
    pub delay: Option<std::time::Duration>,
}

impl Answer {
    pub fn new(status: u16) -> Self {
        Answer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            keep_alive: false,
            announced_length: None,
            delay: None,
        }
    }

    pub fn delay(mut self, delay: std::time::Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn keep_alive(mut self) -> Self {
        self.keep_alive = true;
        self
    }

    pub fn announce_length(mut self, length: u64) -> Self {
        self.announced_length = Some(length);
        self
    }

    pub fn reply(self) -> Reply {
        Reply::Respond(self)
    }
}

/// A shorthand: answer with a status and a text body.
pub fn status(code: u16, body: &str) -> Reply {
    Answer::new(code).body(body).reply()
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

pub struct FaultServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultServer {
    /// Starts a server; `handler` gets each request and its 0-based index over the server's
    /// life.
    pub async fn start(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let task = tokio::spawn({
            let (seen, connections) = (seen.clone(), connections.clone());
            async move {
                // Connections that hang are parked here so that they stay open.
                let mut conn_tasks = tokio::task::JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    let connection = connections.fetch_add(1, Ordering::SeqCst);
                    conn_tasks.spawn(serve(stream, connection, seen.clone(), handler.clone()));
                }
            }
        });
        FaultServer {
            addr,
            seen,
            connections,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn hits_to(&self, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|seen| seen.path() == path)
            .count()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn serve(
    mut stream: TcpStream,
    connection: usize,
    log: Arc<Mutex<Vec<Seen>>>,
    handler: Arc<Handler>,
) {
    let mut buffer = Vec::new();
    loop {
        let Some(seen) = read_request(&mut stream, &mut buffer, connection).await else {
            return;
        };
        let index = {
            let mut log = log.lock().unwrap();
            log.push(seen.clone());
            log.len() - 1
        };
        match handler(&seen, index) {
            Reply::Close => return,
            Reply::Hang => {
                std::future::pending::<()>().await;
            }
            Reply::Respond(answer) => {
                if let Some(delay) = answer.delay {
                    tokio::time::sleep(delay).await;
                }
                let length = answer.announced_length.unwrap_or(answer.body.len() as u64);
                let mut head = format!(
                    "HTTP/1.1 {} Scripted\r\ncontent-length: {length}\r\n",
                    answer.status
                );
                if !answer.keep_alive {
                    head.push_str("connection: close\r\n");
                }
                for (name, value) in &answer.headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                // One write: the client gets head and body together, with no wait in between.
                let mut bytes = head.into_bytes();
                bytes.extend_from_slice(&answer.body);
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
                if answer.announced_length.is_some() {
                    std::future::pending::<()>().await;
                }
                if !answer.keep_alive {
                    let _ = stream.shutdown().await;
                    return;
                }
            }
        }
    }
}

async fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    connection: usize,
) -> Option<Seen> {
    let head_end = loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            break end;
        }
        if !fill(stream, buffer).await {
            return None;
        }
    };
    let at = Instant::now();
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    buffer.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let target = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let body = if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        read_chunked(stream, buffer).await?
    } else {
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buffer.len() < length {
            if !fill(stream, buffer).await {
                return None;
            }
        }
        buffer.drain(..length).collect()
    };
    Some(Seen {
        method,
        target,
        headers,
        body,
        at,
        connection,
    })
}

async fn read_chunked(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(end) = find(buffer, b"\r\n") {
                break end;
            }
            if !fill(stream, buffer).await {
                return None;
            }
        };
        let size_text = String::from_utf8_lossy(&buffer[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        buffer.drain(..line_end + 2);
        while buffer.len() < size + 2 {
            if !fill(stream, buffer).await {
                return None;
            }
        }
        body.extend(buffer.drain(..size));
        buffer.drain(..2);
        if size == 0 {
            return Some(body);
        }
    }
}

async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 8192];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Everything tracing printed on this thread while a [`capture_logs`] guard was alive, as text.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The lines containing `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Logs>> = const { std::cell::RefCell::new(None) };
}

/// Writes to the capture of the thread the event happened on, if any.
struct ThreadCapture;

impl std::io::Write for ThreadCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| {
            if let Some(logs) = &*capture.borrow() {
                logs.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|capture| capture.borrow_mut().take());
    }
}

/// Captures the tracing output of this thread (a current-thread test runtime runs every task on
/// it) until the guard is dropped.
///
/// One global subscriber for the whole test binary, writing to per-thread captures: scoped
/// subscribers (`set_default`) race with tracing's per-callsite interest cache when tests run
/// in parallel, and then lose events.
pub fn capture_logs() -> (Logs, CaptureGuard) {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| ThreadCapture)
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
    });
    let logs = Logs::default();
    CAPTURE.with(|capture| *capture.borrow_mut() = Some(logs.clone()));
    (logs, CaptureGuard)
}
