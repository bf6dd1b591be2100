//! Server middleware as tower layers.
