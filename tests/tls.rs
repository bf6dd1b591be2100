//! TLS settings against a real rustls server on loopback, with certificates made for each test
//! by rcgen: a private CA trusted only when added, mutual TLS, protocol versions, SNI and ALPN.
//! The client side runs with whichever TLS backend is compiled in (`.ci/run` runs each).

#![cfg(any(feature = "rustls", feature = "rustls-ring", feature = "native-tls"))]

use std::sync::atomic::Ordering;

use http::Version;
use stopover::client::ErrorKind;
use stopover::client::retry::Retry;
use stopover::client::tls::Certificate;
use tokio_rustls::rustls;

mod tls_support;
use tls_support::*;

#[tokio::test]
async fn a_server_of_a_private_ca_is_refused_by_default() {
    let ca = Ca::new("private CA");
    let server = server_of(&ca).await;
    let client = server.client().build().unwrap();

    let err = client.get(server.url()).send().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Tls, "{err:?}");
    assert!(err.is_tls());
}

#[tokio::test]
async fn a_private_ca_merged_with_the_platform_roots_is_trusted() {
    let ca = Ca::new("private CA");
    let server = server_of(&ca).await;
    let client = server
        .client()
        .tls_certs_merge([ca.certificate()])
        .build()
        .unwrap();

    let response = client.get(server.url()).send().await.unwrap();

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn tls_certs_only_trusts_the_given_root_in_der() {
    let ca = Ca::new("private CA");
    let server = server_of(&ca).await;
    let client = server
        .client()
        .tls_certs_only([Certificate::from_der(&ca.der).unwrap()])
        .build()
        .unwrap();

    let response = client.get(server.url()).send().await.unwrap();

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn tls_certs_only_refuses_a_server_of_another_ca() {
    let (ca, other) = (Ca::new("server CA"), Ca::new("another CA"));
    let server = server_of(&ca).await;
    let client = server
        .client()
        .tls_certs_only([other.certificate()])
        .build()
        .unwrap();

    let err = client.get(server.url()).send().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Tls, "{err:?}");
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused() {
    let ca = Ca::new("private CA");
    let server = TlsServer::start(&ca.issue(&["other.test"]), ServerOptions::default()).await;
    let client = server
        .client()
        .tls_certs_only([ca.certificate()])
        .build()
        .unwrap();

    let err = client.get(server.url()).send().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Tls, "{err:?}");
}

#[tokio::test]
async fn tls_danger_accept_invalid_hostnames_accepts_a_certificate_for_another_host() {
    let ca = Ca::new("private CA");
    let server = TlsServer::start(&ca.issue(&["other.test"]), ServerOptions::default()).await;
    let client = server
        .client()
        .tls_certs_only([ca.certificate()])
        .tls_danger_accept_invalid_hostnames(true)
        .build()
        .unwrap();

    let response = client.get(server.url()).send().await.unwrap();

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn tls_danger_accept_invalid_certs_accepts_an_unknown_ca() {
    let ca = Ca::new("private CA");
    let server = server_of(&ca).await;
    let client = server
        .client()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .unwrap();

    let response = client.get(server.url()).send().await.unwrap();

    assert_eq!(response.status(), 200);
}

async fn mtls_server(ca: &Ca) -> TlsServer {
    let options = ServerOptions {
        client_ca: Some(ca.der.clone()),
        ..ServerOptions::default()
    };
    TlsServer::start(&ca.issue(&[HOST]), options).await
}

#[tokio::test]
async fn mutual_tls_is_accepted_with_the_identity() {
    let ca = Ca::new("private CA");
    let server = mtls_server(&ca).await;
    let client = server
        .client()
        .tls_certs_only([ca.certificate()])
        .identity(ca.issue(&["client.test"]).identity())
        .build()
        .unwrap();

    let response = client.get(server.url()).send().await.unwrap();

    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().ends_with("client-cert=true"));
}

#[tokio::test]
async fn mutual_tls_is_refused_without_an_identity() {
    let ca = Ca::new("private CA");
    let server = mtls_server(&ca).await;
    let client = server
        .client()
        .tls_certs_only([ca.certificate()])
        .build()
        .unwrap();

    let err = client.get(server.url()).send().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Tls, "{err:?}");
}

#[tokio::test]
async fn mutual_tls_is_refused_without_an_identity_over_http1() {
    let ca = Ca::new("private CA");
    let server = mtls_server(&ca).await;
    let client = server
        .client()
        .tls_certs_only([ca.certificate()])
        .http1_only()
        .build()
        .unwrap();

    let err = client.get(server.url()).send().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Tls, "{err:?}");
}

#[tokio::test]
async fn mutual_tls_is_refused_with_an_identity_of_another_ca() {
    let (ca, other) = (Ca::new("private CA"), Ca::new("another CA"));
    let server = mtls_server(&ca).await;
    let client = server
        .client()
        .tls_certs_only([ca.certificate()])
        .identity(other.issue(&["client.test"]).identity())
        .build()
        .unwrap();

    let err = client.get(server.url()).send().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Tls, "{err:?}");
}

#[tokio::test]
async fn a_failed_handshake_is_not_retried() {
    let ca = Ca::new("private CA");
    let server = server_of(&ca).await;
    let client = server
        .client()
        .middleware(Retry::default())
        .build()
        .unwrap();

    let err = client.get(server.url()).send().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Tls, "{err:?}");
    assert_eq!(server.attempts.load(Ordering::SeqCst), 1);
}

static TLS12_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];

async fn tls12_server(ca: &Ca) -> TlsServer {
    let options = ServerOptions {
        versions: &TLS12_ONLY,
        ..ServerOptions::default()
    };
    TlsServer::start(&ca.issue(&[HOST]), options).await
}

#[tokio::test]
async fn a_tls12_server_is_reached_by_default() {
    let ca = Ca::new("private CA");
    let server = tls12_server(&ca).await;
    let client = server
        .client()
        .tls_certs_only([ca.certificate()])
        .build()
        .unwrap();

    let response = client.get(server.url()).send().await.unwrap();

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn tls_version_min_refuses_an_older_server() {
    let ca = Ca::new("private CA");
    let server = tls12_server(&ca).await;
    let client = server
        .client()
        .tls_certs_only([ca.certificate()])
        .tls_version_min(stopover::client::tls::Version::TLS_1_3)
        .build()
        .unwrap();

    let err = client.get(server.url()).send().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Tls, "{err:?}");
}

#[tokio::test]
async fn the_host_name_is_sent_as_sni_by_default() {
    let ca = Ca::new("private CA");
    let server = server_of(&ca).await;
    let client = server
        .client()
        .tls_certs_only([ca.certificate()])
        .build()
        .unwrap();

    client.get(server.url()).send().await.unwrap();

    assert_eq!(server.handshakes()[0].server_name.as_deref(), Some(HOST));
}

#[tokio::test]
async fn tls_sni_off_sends_no_server_name() {
    let ca = Ca::new("private CA");
    let server = server_of(&ca).await;
    let client = server
        .client()
        .tls_certs_only([ca.certificate()])
        .tls_sni(false)
        .build()
        .unwrap();

    client.get(server.url()).send().await.unwrap();

    assert_eq!(server.handshakes()[0].server_name, None);
}

#[tokio::test]
async fn alpn_negotiates_http2_by_default() {
    let ca = Ca::new("private CA");
    let server = server_of(&ca).await;
    let client = server
        .client()
        .tls_certs_only([ca.certificate()])
        .build()
        .unwrap();

    let response = client.get(server.url()).send().await.unwrap();

    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(server.handshakes()[0].alpn.as_deref(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn http1_only_offers_only_http11_in_alpn() {
    let ca = Ca::new("private CA");
    let server = server_of(&ca).await;
    let client = server
        .client()
        .tls_certs_only([ca.certificate()])
        .http1_only()
        .build()
        .unwrap();

    let response = client.get(server.url()).send().await.unwrap();

    assert_eq!(response.version(), Version::HTTP_11);
    assert_eq!(
        server.handshakes()[0].alpn.as_deref(),
        Some(&b"http/1.1"[..])
    );
}

#[cfg(feature = "webpki-roots")]
#[tokio::test]
async fn tls_webpki_roots_do_not_include_a_private_ca() {
    let ca = Ca::new("private CA");
    let server = server_of(&ca).await;
    let client = server.client().tls_webpki_roots().build().unwrap();

    let err = client.get(server.url()).send().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Tls, "{err:?}");
}

#[cfg(feature = "webpki-roots")]
#[tokio::test]
async fn a_private_ca_merged_with_the_webpki_roots_is_trusted() {
    let ca = Ca::new("private CA");
    let server = server_of(&ca).await;
    let client = server
        .client()
        .tls_webpki_roots()
        .tls_certs_merge([ca.certificate()])
        .build()
        .unwrap();

    let response = client.get(server.url()).send().await.unwrap();

    assert_eq!(response.status(), 200);
}
