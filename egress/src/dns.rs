//! Name resolution: the system's resolver, or the DNS server named by `--resolver-address`.
//!
//! With `--resolver-address`, names are asked of that server alone, over UDP, as smokescreen
//! does (its Go resolver dials the one configured address): an A and an AAAA query sent at
//! once, each answer matched by id and question, both bounded by `--dns-timeout`. A truncated
//! answer is asked again over TCP (smokescreen's resolver, whose dialer always speaks UDP, fails
//! those). The client is
//! written by hand (a query, and the answer section's A and AAAA records) because the proxy
//! needs nothing more: hickory-resolver would bring a cache (moka and crossbeam), system
//! configuration and DNSSEC code that smokescreen does not have, for two record types from one
//! server. Without the flag, `getaddrinfo` answers (through tokio), as Go's resolver reads
//! `/etc/hosts` and `/etc/resolv.conf`.
//!
//! Whatever the source, at most [`MAX_ANSWERS`] addresses are kept, IPv4 first, in the order
//! the server gave them.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout_at};

/// How many addresses of one name are judged and tried at most.
pub const MAX_ANSWERS: usize = 16;

/// Why a name could not be resolved.
#[derive(Debug)]
pub enum ResolveError {
    /// No answer within `--dns-timeout`.
    Timeout,
    /// The name does not exist, or has no A or AAAA record.
    NotFound,
    /// The server answered with an error code, or the exchange failed.
    Failed(String),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Timeout => f.write_str("i/o timeout"),
            ResolveError::NotFound => f.write_str("no such host"),
            ResolveError::Failed(why) => f.write_str(why),
        }
    }
}

/// Where names are resolved.
#[derive(Debug, Clone)]
pub enum Resolver {
    /// The system's resolver (`getaddrinfo`).
    System,
    /// One DNS server, over UDP.
    Server(SocketAddr),
}

impl Resolver {
    /// Resolves `host` (a name, not an IP literal) within `limit`.
    pub async fn lookup(&self, host: &str, limit: Duration) -> Result<Vec<IpAddr>, ResolveError> {
        let deadline = Instant::now() + limit;
        let mut addrs = match self {
            Resolver::System => {
                let lookup = tokio::net::lookup_host((host, 0));
                match timeout_at(deadline, lookup).await {
                    Err(_) => return Err(ResolveError::Timeout),
                    Ok(Err(e)) => return Err(system_error(&e)),
                    Ok(Ok(found)) => {
                        let mut found: Vec<IpAddr> = found.map(|a| a.ip()).collect();
                        // getaddrinfo repeats an address once per socket type on some systems.
                        let mut seen = Vec::with_capacity(found.len());
                        found.retain(|ip| {
                            let new = !seen.contains(ip);
                            seen.push(*ip);
                            new
                        });
                        found
                    }
                }
            }
            Resolver::Server(server) => {
                let (v4, v6) = tokio::join!(
                    query(*server, host, RecordType::A, deadline),
                    query(*server, host, RecordType::Aaaa, deadline)
                );
                match (v4, v6) {
                    (Ok(mut v4), Ok(v6)) => {
                        v4.extend(v6);
                        v4
                    }
                    (Ok(found), Err(_)) | (Err(_), Ok(found)) => found,
                    (Err(e), Err(_)) => return Err(e),
                }
            }
        };
        addrs.sort_by_key(|ip| ip.is_ipv6());
        addrs.truncate(MAX_ANSWERS);
        if addrs.is_empty() {
            return Err(ResolveError::NotFound);
        }
        Ok(addrs)
    }
}

fn system_error(e: &io::Error) -> ResolveError {
    // tokio reports getaddrinfo's EAI_NONAME and friends as "failed to lookup address
    // information: ..." with kind Other or Uncategorized.
    let text = e.to_string();
    if text.contains("not known") || text.contains("No address associated") {
        ResolveError::NotFound
    } else {
        ResolveError::Failed(text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordType {
    A,
    Aaaa,
}

impl RecordType {
    fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Aaaa => 28,
        }
    }
}

/// How long to wait for an answer before asking again (UDP may lose a datagram).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The largest answer read: a UDP answer without EDNS is at most 512 bytes, but servers that
/// ignore that limit are read up to this size and no further.
const MAX_MESSAGE: usize = 4096;

async fn query(
    server: SocketAddr,
    host: &str,
    kind: RecordType,
    deadline: Instant,
) -> Result<Vec<IpAddr>, ResolveError> {
    let id = random_id();
    let message = encode_query(id, host, kind)?;
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let failed = |e: io::Error| ResolveError::Failed(format!("dial udp {server}: {e}"));
    let socket = UdpSocket::bind(bind).await.map_err(failed)?;
    socket.connect(server).await.map_err(failed)?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        socket.send(&message).await.map_err(failed)?;
        let retry = (Instant::now() + RETRY_AFTER).min(deadline);
        loop {
            match timeout_at(retry, socket.recv(&mut buf)).await {
                Err(_) if retry >= deadline => return Err(ResolveError::Timeout),
                Err(_) => break,
                Ok(Err(e)) => {
                    return Err(ResolveError::Failed(format!("read udp {server}: {e}")));
                }
                Ok(Ok(len)) => {
                    let answer = &buf[..len];
                    // A truncated answer is asked again over TCP (RFC 7766), once it is known
                    // to answer this query.
                    if is_truncated(answer) && answers_query(answer, id, &message[12..]) {
                        return query_tcp(server, &message, kind, deadline).await;
                    }
                    if let Some(answer) = decode_answer(answer, id, &message[12..], kind)? {
                        return Ok(answer);
                    }
                    // Not our answer (a late one to an earlier try, or a spoof): keep waiting.
                }
            }
        }
    }
}

/// The same query over TCP, for an answer too large for UDP.
async fn query_tcp(
    server: SocketAddr,
    message: &[u8],
    kind: RecordType,
    deadline: Instant,
) -> Result<Vec<IpAddr>, ResolveError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let failed = |e: io::Error| ResolveError::Failed(format!("dial tcp {server}: {e}"));
        let mut stream = tokio::net::TcpStream::connect(server)
            .await
            .map_err(failed)?;
        let mut framed = Vec::with_capacity(message.len() + 2);
        framed.extend_from_slice(&(message.len() as u16).to_be_bytes());
        framed.extend_from_slice(message);
        stream.write_all(&framed).await.map_err(failed)?;
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).await.map_err(failed)?;
        // At most 64 KiB, the largest DNS message.
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut answer).await.map_err(failed)?;
        let id = u16::from_be_bytes([message[0], message[1]]);
        decode_answer(&answer, id, &message[12..], kind)?
            .ok_or_else(|| ResolveError::Failed(format!("dial tcp {server}: mismatched answer")))
    };
    match timeout_at(deadline, exchange).await {
        Err(_) => Err(ResolveError::Timeout),
        Ok(found) => found,
    }
}

fn is_truncated(message: &[u8]) -> bool {
    message.len() >= 12 && message[2] & 0x02 != 0
}

/// Whether `message` is the answer to the query with this id and question.
fn answers_query(message: &[u8], id: u16, question: &[u8]) -> bool {
    message.len() >= 12
        && message[..2] == id.to_be_bytes()
        && message[2] & 0x80 != 0
        && message.get(12..12 + question.len()) == Some(question)
}

fn random_id() -> u16 {
    // A fresh RandomState is seeded from the OS once per thread and bumped for each use: enough
    // for a query id, which the source port's randomness backs up.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    hasher.finish() as u16
}

fn encode_query(id: u16, host: &str, kind: RecordType) -> Result<Vec<u8>, ResolveError> {
    let name = host.strip_suffix('.').unwrap_or(host);
    let invalid = || ResolveError::Failed(format!("invalid name {host:?}"));
    if name.is_empty() || name.len() > 253 {
        return Err(invalid());
    }
    let mut message = Vec::with_capacity(18 + name.len());
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&[0x01, 0x00]); // recursion desired
    message.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(invalid());
        }
        message.push(label.len() as u8);
        message.extend_from_slice(label.as_bytes());
    }
    message.push(0);
    message.extend_from_slice(&kind.code().to_be_bytes());
    message.extend_from_slice(&[0, 1]); // class IN
    Ok(message)
}

/// Reads an answer: `Ok(None)` when it is not the answer to this query.
fn decode_answer(
    message: &[u8],
    id: u16,
    question: &[u8],
    kind: RecordType,
) -> Result<Option<Vec<IpAddr>>, ResolveError> {
    if !answers_query(message, id, question) {
        return Ok(None);
    }
    let count = |at: usize| usize::from(u16::from_be_bytes([message[at], message[at + 1]]));
    if count(4) != 1 {
        return Ok(None);
    }
    match message[3] & 0x0f {
        0 => {}
        3 => return Err(ResolveError::NotFound),
        2 => return Err(ResolveError::Failed("server misbehaving".to_owned())),
        code => {
            return Err(ResolveError::Failed(format!(
                "server answered rcode {code}"
            )));
        }
    }
    let malformed = || ResolveError::Failed("malformed DNS answer".to_owned());
    let mut at = 12 + question.len();
    let mut found = Vec::new();
    for _ in 0..count(6) {
        at = skip_name(message, at).ok_or_else(malformed)?;
        let fixed = message.get(at..at + 10).ok_or_else(malformed)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let len = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let data = message.get(at + 10..at + 10 + len).ok_or_else(malformed)?;
        at += 10 + len;
        if class != 1 || rtype != kind.code() || found.len() == MAX_ANSWERS {
            continue; // CNAMEs on the way, other classes, or past the bound
        }
        match (kind, <[u8; 4]>::try_from(data), <[u8; 16]>::try_from(data)) {
            (RecordType::A, Ok(v4), _) => found.push(IpAddr::from(v4)),
            (RecordType::Aaaa, _, Ok(v6)) => found.push(IpAddr::from(v6)),
            _ => return Err(malformed()),
        }
    }
    Ok(Some(found))
}

/// Skips a possibly compressed name; returns the offset after it.
fn skip_name(message: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *message.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2).filter(|&end| end <= message.len()),
            l if l & 0xc0 == 0 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(query: &[u8], rcode: u8, records: &[(u16, &[u8])]) -> Vec<u8> {
        let mut m = query.to_vec();
        m[2] |= 0x80;
        m[3] = rcode;
        m[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
        for (rtype, data) in records {
            m.extend_from_slice(&[0xc0, 12]);
            m.extend_from_slice(&rtype.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
        }
        m
    }

    #[test]
    fn reads_a_records_past_a_cname() {
        let q = encode_query(7, "www.example.com", RecordType::A).unwrap();
        let m = answer(
            &q,
            0,
            &[(5, &[3, b'w', b'w', b'w', 0xc0, 12]), (1, &[192, 0, 2, 1])],
        );
        let found = decode_answer(&m, 7, &q[12..], RecordType::A).unwrap();
        assert_eq!(found, Some(vec!["192.0.2.1".parse().unwrap()]));
    }

    #[test]
    fn ignores_answers_to_other_queries() {
        let q = encode_query(7, "example.com", RecordType::A).unwrap();
        let m = answer(&q, 0, &[(1, &[192, 0, 2, 1])]);
        assert_eq!(decode_answer(&m, 8, &q[12..], RecordType::A).unwrap(), None);
        let other = encode_query(7, "example.org", RecordType::A).unwrap();
        assert_eq!(
            decode_answer(&m, 7, &other[12..], RecordType::A).unwrap(),
            None
        );
    }

    #[test]
    fn nxdomain_is_not_found() {
        let q = encode_query(1, "nope.example", RecordType::Aaaa).unwrap();
        let m = answer(&q, 3, &[]);
        assert!(matches!(
            decode_answer(&m, 1, &q[12..], RecordType::Aaaa),
            Err(ResolveError::NotFound)
        ));
    }

    #[test]
    fn truncated_records_are_malformed() {
        let q = encode_query(1, "example.com", RecordType::A).unwrap();
        let mut m = answer(&q, 0, &[(1, &[192, 0, 2, 1])]);
        m.truncate(m.len() - 2);
        assert!(decode_answer(&m, 1, &q[12..], RecordType::A).is_err());
    }

    #[test]
    fn overlong_labels_are_refused() {
        let long = "a".repeat(64);
        assert!(encode_query(1, &long, RecordType::A).is_err());
        assert!(encode_query(1, "a..b", RecordType::A).is_err());
    }
}
