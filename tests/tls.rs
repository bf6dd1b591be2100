//! TLS settings against a real rustls server on loopback, with certificates made for each test
//! by rcgen: a private CA trusted only when added, mutual TLS, protocol versions, SNI and ALPN.
//! The client side runs with whichever TLS backend is compiled in (`.ci/run` runs each).

#![cfg(any(feature = "rustls", feature = "rustls-ring", feature = "native-tls"))]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http::Version;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use stopover::client::retry::Retry;
use stopover::client::tls::{Certificate, Identity};
use stopover::client::{Client, ClientBuilder, ErrorKind};
use stopover::reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::io::AsyncReadExt;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The host name the test certificates are issued for; [`Loopback`] resolves it.
const HOST: &str = "service.test";

/// A certificate authority made for one test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate for `names`, with its PKCS#8 key.
    fn issue(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            der: cert.der().clone(),
            key: key.serialize_der(),
        }
    }

    fn pem(&self) -> String {
        pem("CERTIFICATE", &self.der)
    }

    fn certificate(&self) -> Certificate {
        Certificate::from_pem(self.pem().as_bytes()).unwrap()
    }
}

struct Leaf {
    der: CertificateDer<'static>,
    key: Vec<u8>,
}

impl Leaf {
    /// The certificate and its key in one PEM document, as `Identity::from_pem` reads them.
    fn identity(&self) -> Identity {
        let (cert, key) = (pem("CERTIFICATE", &self.der), pem("PRIVATE KEY", &self.key));
        #[cfg(any(feature = "rustls", feature = "rustls-ring"))]
        return Identity::from_pem((cert + &key).as_bytes()).unwrap();
        #[cfg(not(any(feature = "rustls", feature = "rustls-ring")))]
        return Identity::from_pkcs8_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).unwrap());
        text.push('\n');
    }
    text + &format!("-----END {label}-----\n")
}

/// Resolves every name to the one loopback server.
struct Loopback(SocketAddr);

impl Resolve for Loopback {
    fn resolve(&self, _: Name) -> Resolving {
        let addr = self.0;
        Box::pin(async move { Ok(Box::new(std::iter::once(addr)) as Addrs) })
    }
}

/// What the server saw of each handshake.
#[derive(Debug, Clone)]
struct Handshake {
    server_name: Option<String>,
    alpn: Option<Vec<u8>>,
}

struct ServerOptions {
    /// Require a client certificate issued by this CA.
    client_ca: Option<CertificateDer<'static>>,
    versions: &'static [&'static rustls::SupportedProtocolVersion],
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            client_ca: None,
            versions: rustls::DEFAULT_VERSIONS,
        }
    }
}

/// A rustls server on 127.0.0.1 answering every request with its HTTP version and whether the
/// client presented a certificate; HTTP/1.1 and HTTP/2 by ALPN.
struct TlsServer {
    addr: SocketAddr,
    attempts: Arc<AtomicUsize>,
    handshakes: Arc<Mutex<Vec<Handshake>>>,
}

impl TlsServer {
    async fn start(leaf: &Leaf, options: ServerOptions) -> TlsServer {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(options.versions)
            .unwrap();
        let builder = match options.client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca).unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.clone()));
        let mut config = builder
            .with_single_cert(vec![leaf.der.clone()], key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let attempts = Arc::new(AtomicUsize::new(0));
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let (counter, seen) = (Arc::clone(&attempts), Arc::clone(&handshakes));
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let tls = match acceptor.accept(tcp).into_fallible().await {
                        Ok(tls) => tls,
                        Err((_, mut tcp)) => {
                            // Read until the client hangs up, so that it gets the alert and
                            // not a reset.
                            let mut sink = [0u8; 1024];
                            while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
                            return;
                        }
                    };
                    let connection = tls.get_ref().1;
                    let client_cert = connection.peer_certificates().is_some();
                    seen.lock().unwrap().push(Handshake {
                        server_name: connection.server_name().map(str::to_owned),
                        alpn: connection.alpn_protocol().map(<[u8]>::to_vec),
                    });
                    let service = hyper::service::service_fn(move |request: http::Request<_>| {
                        let answer = format!("{:?} client-cert={client_cert}", request.version());
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(answer),
                            )))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        TlsServer {
            addr,
            attempts,
            handshakes,
        }
    }

    fn url(&self) -> String {
        format!("https://{HOST}:{}/", self.addr.port())
    }

    /// A client builder that finds this server under [`HOST`].
    fn client(&self) -> ClientBuilder {
        Client::builder().dns_resolver(Arc::new(Loopback(self.addr)))
    }

    fn handshakes(&self) -> Vec<Handshake> {
        self.handshakes.lock().unwrap().clone()
    }
}

async fn server_of(ca: &Ca) -> TlsServer {
    TlsServer::start(&ca.issue(&[HOST]), ServerOptions::default()).await
}

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
