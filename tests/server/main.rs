//! The server layers against real loopback servers: one test binary, one module per layer.
//!
//! The browser suite (`browser-tests` feature) stays a binary of its own.

#[path = "../fault_server/mod.rs"]
mod fault_server;
#[path = "../span_capture/mod.rs"]
mod span_capture;
#[path = "../support/mod.rs"]
mod support;

mod cors;
mod counting;
mod debug;
mod error;
mod error_handlers;
mod forwarded;
mod shield;
mod spans;
mod timeout;
mod with_axum;
mod with_tower_http;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;
