//! The client: a cheap-to-clone HTTP client with a middleware chain.

pub mod logging;
pub mod retry;
pub mod ssrf;
pub mod token;
