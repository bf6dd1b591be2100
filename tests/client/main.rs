//! The client against real loopback servers: one test binary, one module per subject.
//!
//! Binaries of their own: the suites that need a feature of their own (cookies, TLS roots,
//! metrics, trace context, Redis; named in `Cargo.toml` with their `required-features`), and
//! `ssrf_proxy.rs`, which sets process-wide environment variables.

#[path = "../fault_server/mod.rs"]
mod fault_server;
#[path = "../span_capture/mod.rs"]
mod span_capture;
#[path = "../support/mod.rs"]
mod support;

mod body_limit;
mod breaker;
mod bulkhead;
mod chain;
mod credentials;
mod digest;
mod hedge;
mod logging;
mod pipeline;
mod rate_limit;
mod redirects;
mod request_builder;
mod reqwest_habits;
mod responses;
mod retry;
mod secrets;
mod spans;
mod ssrf;
mod token;
mod tower_interop;
mod transport;

/// A streaming body of `parts`, read once: what a retry or redirect cannot replay unless the
/// request set a replay cap.
fn stream_body(
    parts: &'static [&'static str],
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> {
    futures_util::stream::iter(
        parts
            .iter()
            .map(|part| Ok(bytes::Bytes::from_static(part.as_bytes()))),
    )
}
