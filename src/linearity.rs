//! Probes for `benches/linearity.sh`, which counts, under callgrind, the instructions each
//! parser spends on adversarial inputs of growing size and fails when the cost per byte grows.
//!
//! Each probe is a test beside its parser. Under the script it reads the input's shape from
//! `LINEARITY_SHAPE` and its size in bytes from `LINEARITY_BYTES`, builds it outside the
//! measured part, and runs the parser once inside [`measured`], the only function callgrind
//! counts. In `cargo test` (no `LINEARITY_SHAPE`) it parses every shape of its parser at
//! 64 KiB: the suite itself checks that each parser gets through these inputs without a
//! panic or a stack overflow (a run of 64 Ki `[` for the token JSON, for one).

/// Runs `parse`; never inlined, so that callgrind can count exactly this call.
#[inline(never)]
pub(crate) fn measured<T>(parse: impl FnOnce() -> T) -> T {
    std::hint::black_box(parse())
}

/// The size of each input in `cargo test`, the largest the script measures.
const TEST_BYTES: usize = 64 * 1024;

/// The inputs a probe of a parser whose shapes are `shapes` parses: the one `LINEARITY_SHAPE`
/// names, `LINEARITY_BYTES` long, under the script; each of `shapes`, 64 KiB long, otherwise.
pub(crate) fn inputs(shapes: &[&str]) -> Vec<String> {
    match std::env::var("LINEARITY_SHAPE") {
        Ok(shape) => {
            let bytes = std::env::var("LINEARITY_BYTES")
                .ok()
                .and_then(|bytes| bytes.parse().ok())
                .unwrap_or(1024);
            vec![input(&shape, bytes)]
        }
        Err(_) => shapes
            .iter()
            .map(|shape| input(shape, TEST_BYTES))
            .collect(),
    }
}

/// The adversarial input `shape` names, `bytes` long (give or take one repeated unit): a
/// prefix, one unit repeated, a suffix.
fn input(shape: &str, bytes: usize) -> String {
    let (prefix, unit, suffix) = match shape {
        // Digest challenges and Authentication-Info.
        "challenge-escapes" => ("Digest realm=\"", "\\\"\\\\", "\""),
        "challenge-unterminated" => ("Digest realm=\"", "a\\\\,", ""),
        "challenge-params" => ("Digest ", "a=b, ", "nonce=n"),
        "challenge-commas" => ("Digest realm=x", ",", ""),
        "challenge-schemes" => ("", "Basic, ", "Digest realm=x"),
        // RFC 7239 Forwarded.
        "forwarded-escapes" => ("for=\"", "\\\"\\\\,;", "\""),
        "forwarded-unterminated" => ("for=\"", "a,", ""),
        "forwarded-elements" => ("", "for=10.0.0.1;proto=https, ", "for=10.0.0.1"),
        "forwarded-quoted-commas" => ("", "for=\"a,b,c\";host=\"x,y\", ", "for=a"),
        "forwarded-commas" => ("for=a", ",", ""),
        // X-Forwarded-For (with -Proto and -Host of the same text).
        "x-forwarded-items" => ("", "10.0.0.1, ", "10.0.0.1"),
        "x-forwarded-commas" => ("10.0.0.1", ",", ""),
        // Access-Control-Request-Headers.
        "cors-items" => ("", "X-Request-Id, ", "content-type"),
        "cors-commas" => ("x-a", ",", ""),
        "cors-whitespace" => ("x-a,", " \t", "x-b"),
        // Retry-After.
        "retry-after-digits" => ("", "9", ""),
        "retry-after-spaces" => ("Sun, 06 Nov 1994 08:49:37 GMT", " ", "x"),
        // A token endpoint's JSON answer.
        "token-escapes" => ("{\"access_token\":\"", "\\\"\\\\", "\"}"),
        "token-keys" => ("{", "\"a\":[1,\"x\"],", "\"access_token\":\"t\"}"),
        "token-nested" => ("{\"access_token\":\"t\",\"expires_in\":", "[", ""),
        other => panic!("unknown LINEARITY_SHAPE {other:?}"),
    };
    let repeats = bytes.saturating_sub(prefix.len() + suffix.len()) / unit.len();
    let mut input = String::with_capacity(bytes + unit.len());
    input.push_str(prefix);
    for _ in 0..repeats {
        input.push_str(unit);
    }
    input.push_str(suffix);
    input
}

#[test]
#[cfg(feature = "client")]
fn retry_after_linearity_probe() {
    let now = std::time::SystemTime::UNIX_EPOCH;
    for input in inputs(&["retry-after-digits", "retry-after-spaces"]) {
        measured(|| crate::client::parse_retry_after(&input, now));
    }
}
