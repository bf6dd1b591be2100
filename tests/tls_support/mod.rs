//! The TLS test rig: certificates made by rcgen for each test, and a rustls server on loopback
//! that records each handshake.

#![allow(dead_code)]
#![cfg(any(feature = "rustls", feature = "rustls-ring", feature = "native-tls"))]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use stopover::client::tls::{Certificate, Identity};
use stopover::client::{Client, ClientBuilder};
use stopover::reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::io::AsyncReadExt;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The host name the test certificates are issued for; [`Loopback`] resolves it.
pub const HOST: &str = "service.test";

/// A certificate authority made for one test.
pub struct Ca {
    pub issuer: Issuer<'static, KeyPair>,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
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
    pub fn issue(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let params = CertificateParams::new(names).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            der: cert.der().clone(),
            key: key.serialize_der(),
        }
    }

    pub fn pem(&self) -> String {
        pem("CERTIFICATE", &self.der)
    }

    pub fn certificate(&self) -> Certificate {
        Certificate::from_pem(self.pem().as_bytes()).unwrap()
    }
}

pub struct Leaf {
    pub der: CertificateDer<'static>,
    pub key: Vec<u8>,
}

impl Leaf {
    /// The certificate and its key in one PEM document, as `Identity::from_pem` reads them.
    pub fn identity(&self) -> Identity {
        let (cert, key) = (pem("CERTIFICATE", &self.der), pem("PRIVATE KEY", &self.key));
        #[cfg(any(feature = "rustls", feature = "rustls-ring"))]
        return Identity::from_pem((cert + &key).as_bytes()).unwrap();
        #[cfg(not(any(feature = "rustls", feature = "rustls-ring")))]
        return Identity::from_pkcs8_pem(cert.as_bytes(), key.as_bytes()).unwrap();
    }
}

pub fn pem(label: &str, der: &[u8]) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).unwrap());
        text.push('\n');
    }
    text + &format!("-----END {label}-----\n")
}

/// Resolves every name to the one loopback server.
pub struct Loopback(SocketAddr);

impl Resolve for Loopback {
    fn resolve(&self, _: Name) -> Resolving {
        let addr = self.0;
        Box::pin(async move { Ok(Box::new(std::iter::once(addr)) as Addrs) })
    }
}

/// What the server saw of each handshake.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub server_name: Option<String>,
    pub alpn: Option<Vec<u8>>,
}

pub struct ServerOptions {
    /// Require a client certificate issued by this CA.
    pub client_ca: Option<CertificateDer<'static>>,
    pub versions: &'static [&'static rustls::SupportedProtocolVersion],
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
pub struct TlsServer {
    pub addr: SocketAddr,
    pub attempts: Arc<AtomicUsize>,
    pub handshakes: Arc<Mutex<Vec<Handshake>>>,
}

impl TlsServer {
    pub async fn start(leaf: &Leaf, options: ServerOptions) -> TlsServer {
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

    pub fn url(&self) -> String {
        format!("https://{HOST}:{}/", self.addr.port())
    }

    /// A client builder that finds this server under [`HOST`].
    pub fn client(&self) -> ClientBuilder {
        Client::builder().dns_resolver(Arc::new(Loopback(self.addr)))
    }

    pub fn handshakes(&self) -> Vec<Handshake> {
        self.handshakes.lock().unwrap().clone()
    }
}

pub async fn server_of(ca: &Ca) -> TlsServer {
    TlsServer::start(&ca.issue(&[HOST]), ServerOptions::default()).await
}
