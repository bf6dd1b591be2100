//! TLS on the listener, and the client's role from its certificate.
//!
//! As in smokescreen: the server presents the chain and key from `--tls-server-bundle-file`;
//! with `--tls-client-ca-file`, a client certificate is asked for, verified when given
//! (a connection without one gets no role), and checked against the CRLs of
//! `--tls-crl-file` (end-entity certificates only; a CA without a CRL is not checked). An
//! untrusted or revoked certificate fails the handshake. The role is the certificate's
//! subject CommonName.
//!
//! Unlike smokescreen, a CRL that no loaded CA issued is an error at start: smokescreen skips
//! it with a log line, so a CRL meant to revoke a certificate would silently revoke nothing.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

use crate::proxy::ClientIdentity;
use crate::settings::TlsSettings;

/// Builds the acceptor, validating every file.
pub fn acceptor(settings: &TlsSettings) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = read_certs(&settings.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key_file)
        .map_err(|e| format!("{}: no private key: {e}", settings.key_file.display()))?;

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if settings.client_ca_files.is_empty() {
        if !settings.crl_files.is_empty() {
            return Err("--tls-crl-file needs --tls-client-ca-file".to_owned());
        }
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        let mut ca_subjects = Vec::new();
        for file in &settings.client_ca_files {
            for cert in read_certs(file)? {
                ca_subjects.push(subject_of(&cert, file)?);
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", file.display()))?;
            }
        }
        let mut crls = Vec::new();
        for file in &settings.crl_files {
            let crl = read_crl(file)?;
            let issuer = crl_issuer(&crl, file)?;
            if !ca_subjects.contains(&issuer) {
                return Err(format!(
                    "{}: the CRL's issuer is none of the client CAs loaded",
                    file.display()
                ));
            }
            crls.push(crl);
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .with_crls(crls)
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status()
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("client certificate verifier: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("{}: {e}", settings.cert_file.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The role and log fields from a finished handshake.
pub fn identity(connection: &rustls::ServerConnection) -> ClientIdentity {
    let mut identity = ClientIdentity::default();
    let Some(leaf) = connection.peer_certificates().and_then(|c| c.first()) else {
        return identity;
    };
    if let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) {
        let subject = cert.subject();
        // A certificate without a CommonName has the empty role, as in Go.
        identity.common_name = Some(
            subject
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .unwrap_or_default()
                .to_owned(),
        );
        identity.organizational_unit = subject
            .iter_organizational_unit()
            .next()
            .and_then(|ou| ou.as_str().ok())
            .map(str::to_owned);
    }
    identity
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "Failed to load any certificates from file '{}'",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_crl(path: &Path) -> Result<CertificateRevocationListDer<'static>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match CertificateRevocationListDer::from_pem_slice(&bytes) {
        Ok(crl) => Ok(crl),
        // Go's x509.ParseCRL reads DER too.
        Err(_) => Ok(CertificateRevocationListDer::from(bytes)),
    }
}

fn subject_of(cert: &CertificateDer<'_>, file: &Path) -> Result<Vec<u8>, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(parsed.subject().as_raw().to_vec())
}

fn crl_issuer(crl: &CertificateRevocationListDer<'_>, file: &Path) -> Result<Vec<u8>, String> {
    use x509_parser::prelude::FromDer;
    let (_, parsed) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(crl.as_ref())
            .map_err(|e| format!("{}: not a CRL: {e}", file.display()))?;
    Ok(parsed.issuer().as_raw().to_vec())
}
