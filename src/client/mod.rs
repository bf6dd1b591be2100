//! The client: a cheap-to-clone HTTP client with a middleware chain.

pub mod digest;
pub mod ssrf;
