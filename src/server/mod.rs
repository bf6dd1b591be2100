//! Server middleware as tower layers.

pub mod matcher;
