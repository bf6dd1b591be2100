//! Server middleware as tower layers.

pub mod cors;
pub mod forwarded;
pub mod matcher;
pub mod shield;
