//! JSON log lines on stderr in logrus's shape (`level`, `msg`, `time` and the fields, keys
//! sorted), so that pipelines written for smokescreen's `CANONICAL-PROXY-DECISION` line keep
//! working.
//!
//! The time stamps (RFC 3339) and the request ids (xid's 20-character base32hex form) are
//! written here by hand: each is a few lines, and neither a date crate nor an id crate is
//! otherwise needed.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// smokescreen's message for the one decision line per request.
pub const CANONICAL_PROXY_DECISION: &str = "CANONICAL-PROXY-DECISION";

/// A logrus level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `info`
    Info,
    /// `warning`
    Warn,
    /// `error`
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warning",
            Level::Error => "error",
        }
    }
}

/// Fields of one log line, keyed as smokescreen keys them.
pub type Fields = Map<String, Value>;

/// Writes one JSON line on stderr.
pub fn emit(level: Level, msg: &str, mut fields: Fields) {
    fields.insert("level".to_owned(), level.as_str().into());
    fields.insert("msg".to_owned(), msg.into());
    fields.insert("time".to_owned(), rfc3339(SystemTime::now(), false).into());
    let mut line = Value::Object(fields).to_string();
    line.push('\n');
    // One write per line, so that lines from concurrent requests never interleave.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Writes a line with only a message.
pub fn message(level: Level, msg: &str) {
    emit(level, msg, Fields::new());
}

/// RFC 3339 in UTC: seconds (`2026-01-02T03:04:05Z`), or nanoseconds as Go's `RFC3339Nano`
/// writes them (trailing zeros dropped).
pub fn rfc3339(at: SystemTime, nanos: bool) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let mut text = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60
    );
    if nanos && since.subsec_nanos() != 0 {
        let fraction = format!("{:09}", since.subsec_nanos());
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push('Z');
    text
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A request id in xid's form: 4 bytes of seconds, 5 bytes of process identity, 3 bytes of
/// counter, in base32hex (20 characters, sortable by time).
pub fn request_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    static PROCESS: std::sync::OnceLock<[u8; 5]> = std::sync::OnceLock::new();
    let process = PROCESS.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let random = hasher.finish().to_be_bytes();
        let pid = (std::process::id() as u16).to_be_bytes();
        [random[0], random[1], random[2], pid[0], pid[1]]
    });
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes();
    let mut raw = [0u8; 12];
    raw[..4].copy_from_slice(&secs.to_be_bytes());
    raw[4..9].copy_from_slice(process);
    raw[9..].copy_from_slice(&count[1..]);
    base32hex(&raw)
}

fn base32hex(raw: &[u8; 12]) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    let mut out = String::with_capacity(20);
    let mut bits: u32 = 0;
    let mut pending = 0;
    for &byte in raw {
        bits = (bits << 8) | u32::from(byte);
        pending += 8;
        while pending >= 5 {
            pending -= 5;
            out.push(ALPHABET[((bits >> pending) & 31) as usize] as char);
        }
    }
    if pending > 0 {
        out.push(ALPHABET[((bits << (5 - pending)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_in_utc() {
        let at = UNIX_EPOCH + Duration::new(1_767_323_045, 120_000_000);
        assert_eq!(rfc3339(at, false), "2026-01-02T03:04:05Z");
        assert_eq!(rfc3339(at, true), "2026-01-02T03:04:05.12Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400), false),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn request_ids_are_twenty_base32hex_characters_and_distinct() {
        let (a, b) = (request_id(), request_id());
        assert_eq!(a.len(), 20);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'v').contains(&c))
        );
        assert_ne!(a, b);
    }
}
