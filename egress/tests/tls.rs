//! The listener under mutual TLS, driven by curl's `--proxy-cacert`, `--proxy-cert` and
//! `--proxy-key`: the role from the client certificate's CommonName, a client without a
//! certificate, and certificates refused in the handshake (another CA's, and a revoked one
//! listed in a CRL). The test PKI is made by rcgen at test time.

mod support;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber, date_time_ymd,
};
use support::{Curl, Dns, Egress, Upstream, curl, temp_file};

const ACL: &str = r#"
version: v1
services:
  - name: enforce-srv
    project: usersec
    action: enforce
    allowed_domains: [allowed.test]
  - name: report-srv
    project: security
    action: report
    allowed_domains: [allowed.test]
"#;

struct Pki {
    dir: String,
    ca: String,
    bundle: String,
    crl: String,
}

struct Authority {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

fn authority(name: &str) -> Authority {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let pem = params.self_signed(&key).unwrap().pem();
    Authority { params, key, pem }
}

/// Writes `name.pem` and `name-key.pem`: a client certificate with CommonName `cn`.
fn client(test: &str, ca: &Authority, name: &str, cn: &str, serial: u8) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, "payments");
    params.serial_number = Some(SerialNumber::from_slice(&[serial]));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    temp_file(test, &format!("{name}.pem"), &cert.pem());
    temp_file(test, &format!("{name}-key.pem"), &key.serialize_pem());
}

fn pki(test: &str) -> Pki {
    let ca = authority("stopover-egress test CA");
    let ca_path = temp_file(test, "ca.pem", &ca.pem);

    let server_key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    server.distinguished_name.push(DnType::CommonName, "proxy");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let issuer = Issuer::from_params(&ca.params, &ca.key);
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();
    let bundle = temp_file(
        test,
        "server-bundle.pem",
        &format!("{}{}", server_cert.pem(), server_key.serialize_pem()),
    );

    client(test, &ca, "enforce", "enforce-srv", 1);
    client(test, &ca, "report", "report-srv", 2);
    client(test, &ca, "revoked", "enforce-srv", 3);
    let stranger = authority("another CA");
    client(test, &stranger, "stranger", "enforce-srv", 4);

    let crl = CertificateRevocationListParams {
        this_update: date_time_ymd(2024, 1, 1),
        next_update: date_time_ymd(2099, 1, 1),
        crl_number: SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from_slice(&[3]),
            revocation_time: date_time_ymd(2024, 1, 1),
            reason_code: None,
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&issuer)
    .unwrap();
    let crl_path = temp_file(test, "crl.pem", &crl.pem().unwrap());
    let dir = std::path::Path::new(&ca_path)
        .parent()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    Pki {
        dir,
        ca: ca_path,
        bundle,
        crl: crl_path,
    }
}

fn start(test: &str, pki: &Pki, dns: &Dns, upstream: &Upstream) -> Egress {
    let acl = temp_file(test, "acl.yaml", ACL);
    Egress::start(&[
        "--tls-server-bundle-file",
        &pki.bundle,
        "--tls-client-ca-file",
        &pki.ca,
        "--tls-crl-file",
        &pki.crl,
        "--egress-acl-file",
        &acl,
        "--resolver-address",
        &dns.addr.to_string(),
        "--allow-address",
        &format!("127.0.0.1:{}", upstream.port()),
    ])
}

fn through(proxy: &Egress, pki: &Pki, cert: Option<&str>, url: &str) -> Curl {
    let proxy_url = format!("https://{}", proxy.addr);
    let mut args = vec!["-v", "-p", "-x", &proxy_url, "--proxy-cacert", &pki.ca];
    let (cert_path, key_path);
    if let Some(name) = cert {
        cert_path = format!("{}/{name}.pem", pki.dir);
        key_path = format!("{}/{name}-key.pem", pki.dir);
        args.extend(["--proxy-cert", &cert_path, "--proxy-key", &key_path]);
    }
    args.push(url);
    curl(&args)
}

fn names() -> Dns {
    Dns::start(
        &[
            ("allowed.test", &["127.0.0.1"]),
            ("elsewhere.test", &["127.0.0.1"]),
        ],
        &[],
    )
}

#[test]
fn the_role_is_the_client_certificates_common_name() {
    let (dns, upstream) = (names(), Upstream::start("127.0.0.1"));
    let pki = pki("tls-role");
    let proxy = start("tls-role", &pki, &dns, &upstream);
    let port = upstream.port();

    let out = through(
        &proxy,
        &pki,
        Some("enforce"),
        &format!("http://allowed.test:{port}/x"),
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("GET /x HTTP/1.1"), "{out:?}");
    let line = proxy.decision(&format!("allowed.test:{port}"));
    assert_eq!(line["role"], "enforce-srv");
    assert_eq!(line["project"], "usersec");
    assert_eq!(line["inbound_remote_x509_cn"], "enforce-srv");
    assert_eq!(line["inbound_remote_x509_ou"], "payments");

    let out = through(
        &proxy,
        &pki,
        Some("enforce"),
        &format!("http://elsewhere.test:{port}/"),
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("407 Request rejected by proxy"),
        "{out:?}"
    );
    let line = proxy.decision(&format!("elsewhere.test:{port}"));
    assert_eq!(line["decision_reason"], "rule has enforce policy");
}

#[test]
fn a_report_role_is_allowed_and_reported() {
    let (dns, upstream) = (names(), Upstream::start("127.0.0.1"));
    let pki = pki("tls-report");
    let proxy = start("tls-report", &pki, &dns, &upstream);
    let port = upstream.port();
    let out = through(
        &proxy,
        &pki,
        Some("report"),
        &format!("http://elsewhere.test:{port}/"),
    );
    assert_eq!(out.code, 0, "{out:?}");
    let line = proxy.decision(&format!("elsewhere.test:{port}"));
    assert_eq!(line["allow"], true);
    assert_eq!(line["enforce_would_deny"], true);
    assert_eq!(line["decision_reason"], "rule has allow and report policy");
}

#[test]
fn a_client_without_a_certificate_has_no_role() {
    let (dns, upstream) = (names(), Upstream::start("127.0.0.1"));
    let pki = pki("tls-anonymous");
    let proxy = start("tls-anonymous", &pki, &dns, &upstream);
    let port = upstream.port();
    let out = through(&proxy, &pki, None, &format!("http://allowed.test:{port}/"));
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("407 Request rejected by proxy"),
        "{out:?}"
    );
    let line = proxy.decision(&format!("allowed.test:{port}"));
    assert_eq!(line["decision_reason"], "Client role cannot be determined");
}

#[test]
fn revoked_and_foreign_certificates_fail_the_handshake() {
    let (dns, upstream) = (names(), Upstream::start("127.0.0.1"));
    let pki = pki("tls-refused");
    let proxy = start("tls-refused", &pki, &dns, &upstream);
    let port = upstream.port();
    for cert in ["revoked", "stranger"] {
        let out = through(
            &proxy,
            &pki,
            Some(cert),
            &format!("http://allowed.test:{port}/"),
        );
        assert_ne!(out.code, 0, "{cert}: {out:?}");
        assert!(
            !out.stderr.contains("< HTTP/"),
            "{cert} got an HTTP answer: {out:?}"
        );
    }
    assert_eq!(
        upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert!(
        proxy
            .log_lines()
            .iter()
            .all(|l| l["msg"] != "CANONICAL-PROXY-DECISION"),
        "a refused handshake reached the ACL"
    );
    // One logged error per refused certificate (the log reader may lag a moment behind).
    let handshake_errors = || {
        proxy
            .log_lines()
            .into_iter()
            .filter(|l| {
                l["msg"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("http: TLS handshake error from 127.0.0.1:"))
            })
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while handshake_errors() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(handshake_errors(), 2);
}

#[test]
fn a_crl_from_no_loaded_ca_stops_the_proxy() {
    let pki = pki("tls-foreign-crl");
    let stranger = authority("CRL issuer nobody trusts");
    let crl = CertificateRevocationListParams {
        this_update: date_time_ymd(2024, 1, 1),
        next_update: date_time_ymd(2099, 1, 1),
        crl_number: SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&Issuer::from_params(&stranger.params, &stranger.key))
    .unwrap();
    let crl_path = temp_file("tls-foreign-crl", "foreign-crl.pem", &crl.pem().unwrap());
    let result = Egress::try_start(&[
        "--tls-server-bundle-file",
        &pki.bundle,
        "--tls-client-ca-file",
        &pki.ca,
        "--tls-crl-file",
        &crl_path,
    ]);
    let stderr = result.err().expect("the proxy must refuse to start");
    assert!(stderr.contains("none of the client CAs loaded"), "{stderr}");
}

/// A one-connection HTTPS server on loopback, with the PKI's certificate for 127.0.0.1.
fn https_upstream(pki: &Pki) -> std::net::SocketAddr {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use std::io::Write;
    use tokio_rustls::rustls;

    let chain = CertificateDer::pem_file_iter(&pki.bundle)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&pki.bundle).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let connection = rustls::ServerConnection::new(std::sync::Arc::new(config)).unwrap();
        let mut tls = rustls::StreamOwned::new(connection, tcp);
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if std::io::Read::read(&mut tls, &mut byte).unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let _ = tls.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nhello, tls!\n",
        );
        tls.conn.send_close_notify();
        let _ = tls.flush();
    });
    addr
}

#[test]
fn https_goes_end_to_end_through_a_tunnel() {
    let pki = pki("tls-end-to-end");
    let upstream = https_upstream(&pki);
    let proxy = Egress::start(&["--allow-address", &upstream.to_string()]);
    let out = curl(&[
        "-x",
        &proxy.url(),
        "--cacert",
        &pki.ca,
        &format!("https://{upstream}/"),
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "hello, tls!\n");
    let closed = proxy.closed_tunnel(&upstream.to_string());
    assert!(closed["bytes_in"].as_u64().unwrap() > 12, "{closed}");
    assert!(closed["bytes_out"].as_u64().unwrap() > 0, "{closed}");
}

#[test]
fn python_urllib_reaches_https_through_a_tunnel() {
    let pki = pki("tls-python");
    let upstream = https_upstream(&pki);
    let proxy = Egress::start(&["--allow-address", &upstream.to_string()]);
    let script = format!(
        "import ssl, urllib.request\n\
         context = ssl.create_default_context(cafile={ca:?})\n\
         opener = urllib.request.build_opener(\n\
         \x20   urllib.request.ProxyHandler({{'https': '{proxy}'}}),\n\
         \x20   urllib.request.HTTPSHandler(context=context))\n\
         print(opener.open('https://{upstream}/', timeout=10).read().decode(), end='')\n",
        ca = pki.ca,
        proxy = proxy.url(),
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "hello, tls!\n");
    assert_eq!(
        proxy.decision(&upstream.to_string())["proxy_type"],
        "connect"
    );
}
