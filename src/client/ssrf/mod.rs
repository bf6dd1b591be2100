//! SSRF guard.
