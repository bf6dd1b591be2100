//! `tls_webpki_roots` replaces the platform's roots: a CA the platform trusts (through
//! `SSL_CERT_FILE`, which the platform verifier and OpenSSL read) is no longer trusted.
//!
//! A test binary of its own, with one test: it sets an environment variable, which no other
//! test may see or race with.

#![cfg(all(
    feature = "webpki-roots",
    any(feature = "rustls", feature = "rustls-ring", feature = "native-tls")
))]

use stopover::client::ErrorKind;

mod tls_support;
use tls_support::*;

#[tokio::test]
async fn tls_webpki_roots_replace_the_platform_roots() {
    let ca = Ca::new("platform CA");
    let server = server_of(&ca).await;
    let path = std::env::temp_dir().join(format!("stopover-ca-{}.pem", std::process::id()));
    std::fs::write(&path, ca.pem()).unwrap();
    // SAFETY: the only test of this binary, set before any client reads the environment.
    unsafe { std::env::set_var("SSL_CERT_FILE", &path) };

    let platform = server.client().build().unwrap();
    let trusted = platform.get(server.url()).send().await;
    let bundled = server.client().tls_webpki_roots().build().unwrap();
    let refused = bundled.get(server.url()).send().await;
    let _ = std::fs::remove_file(&path);

    assert_eq!(trusted.unwrap().status(), 200);
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::Tls);
}
