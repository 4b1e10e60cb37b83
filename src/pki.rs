//! TLS material: the plant API's certificate (self-signed on first start, or the admin's own)
//! and the rustls server configuration built from it.
//!
//! Files that must survive a crash are written to a temporary name, fsync'd, then renamed; the
//! private key is created with mode 0600. The hub's CA and enrollment will live here too.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;
use crate::digest::sha256_hex;
use crate::fsutil::write_atomic;

/// Where the self-signed pair lives in the data directory.
pub fn self_signed_paths(data_dir: &Path) -> TlsFiles {
    let dir = data_dir.join("tls");
    TlsFiles {
        cert: dir.join("api.crt"),
        key: dir.join("api.key"),
    }
}

/// Returns the configured pair, or the self-signed one, making it on first start.
pub fn api_tls_files(data_dir: &Path, configured: Option<&TlsFiles>) -> anyhow::Result<TlsFiles> {
    if let Some(files) = configured {
        return Ok(files.clone());
    }
    let files = self_signed_paths(data_dir);
    if files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    let dir = files.cert.parent().expect("tls files sit in a directory");
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(host) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            names.push(host.to_string());
        }
    }
    let certified = rcgen::generate_simple_self_signed(names)
        .context("making the self-signed API certificate")?;
    write_atomic(
        &files.key,
        certified.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_atomic(&files.cert, certified.cert.pem().as_bytes(), 0o644)?;
    tracing::info!(cert = %files.cert.display(), "made a self-signed API certificate");
    Ok(files)
}

/// A rustls server config for the API (HTTP/1.1 and HTTP/2).
pub fn server_config(files: &TlsFiles) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "{} and {} do not form a usable certificate and key",
                files.cert.display(),
                files.key.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The one crypto provider the binary uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = fs::read(path).with_context(|| format!("reading certificate {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate chain", path.display()))?;
    if certs.is_empty() {
        bail!(
            "{}: no certificate found; expected a PEM \"CERTIFICATE\" block",
            path.display()
        );
    }
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = fs::read(path).with_context(|| format!("reading private key {}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).with_context(|| {
        format!(
            "{}: no private key found; expected a PEM \"PRIVATE KEY\" block",
            path.display()
        )
    })
}

/// Accepts any server certificate while still checking the handshake's signatures: for a
/// connection whose peer is vouched for otherwise (enrollment checks the CA it fetched against
/// the fingerprint in the token) or, by the admin's choice, not at all (the hub's
/// `[postgres] sslmode = "require"`).
#[derive(Debug)]
pub struct AnyServerCertificate(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// ALPN of the replication protocol.
pub const ALPN: &[u8] = b"plantd/1";

/// The hub's certificate authority: it signs the hub's own certificate and every plant's.
pub struct HubCa {
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// Derived from the CA key (one-way): the root of each replica's QUIC keys
    /// ([`HubCa::quic_endpoint_config`]), the same across the hub's restarts.
    reset_secret: [u8; 32],
}

impl HubCa {
    /// Loads `DATA_DIR/ca/`, or makes a new CA there on first start.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<HubCa> {
        let dir = data_dir.join("ca");
        let (cert_path, key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
        if !cert_path.exists() {
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let key = rcgen::KeyPair::generate().context("making the CA key")?;
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.key_usages = vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::CrlSign,
                rcgen::KeyUsagePurpose::DigitalSignature,
            ];
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "plantd hub CA");
            params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365 * 20);
            let cert = params
                .self_signed(&key)
                .context("signing the CA certificate")?;
            write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
            write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
            tracing::info!(fingerprint = %sha256_hex(cert.der()), "made the hub CA");
        }
        let cert_pem = fs::read_to_string(&cert_path)
            .with_context(|| format!("reading {}", cert_path.display()))?;
        let key_pem = fs::read_to_string(&key_path)
            .with_context(|| format!("reading {}", key_path.display()))?;
        let key = rcgen::KeyPair::from_pem(&key_pem)
            .with_context(|| format!("{}: not a usable private key", key_path.display()))?;
        let issuer = rcgen::Issuer::from_ca_cert_pem(&cert_pem, key)
            .with_context(|| format!("{}: not a usable CA certificate", cert_path.display()))?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .with_context(|| format!("{}: not a PEM certificate", cert_path.display()))?;
        let reset_secret = ring::digest::digest(
            &ring::digest::SHA256,
            &[
                b"plantd QUIC stateless reset\0".as_slice(),
                key_pem.as_bytes(),
            ]
            .concat(),
        );
        let reset_secret = reset_secret
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");
        Ok(HubCa {
            cert_pem,
            cert_der,
            issuer,
            reset_secret,
        })
    }

    /// The QUIC endpoint configuration of the replica `replica` (its addresses), keyed by the
    /// CA and the replica: its connection ids carry a keyed hash the replica still recognises
    /// after a restart, and its stateless resets a key the plants were told before it. A
    /// plant's first packet on its stale connection then gets a reset, and the plant
    /// reconnects at once. Each replica has keys of its own (RFC 9000, 21.11: a reset key
    /// shared by endpoints that do not share connections would let an on-path observer have
    /// one replica reset a plant's connection to another).
    pub fn quic_endpoint_config(&self, replica: &str) -> quinn::EndpointConfig {
        let key = |label: &str| {
            ring::digest::digest(
                &ring::digest::SHA256,
                &[
                    &self.reset_secret[..],
                    label.as_bytes(),
                    b"\0",
                    replica.as_bytes(),
                ]
                .concat(),
            )
        };
        let reset = key("stateless reset");
        let mut config = quinn::EndpointConfig::new(Arc::new(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            reset.as_ref(),
        )));
        let cid_key = u64::from_le_bytes(
            key("connection ids").as_ref()[..8]
                .try_into()
                .expect("8 bytes"),
        );
        config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        config
    }

    /// The CA's fingerprint, which enrollment tokens carry.
    pub fn fingerprint(&self) -> String {
        sha256_hex(&self.cert_der)
    }

    /// A server certificate for the hub's HTTPS and QUIC listeners, for these DNS names or IPs.
    pub fn issue_server(&self, names: &[String]) -> anyhow::Result<(String, String)> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(names.to_vec())
            .context("hub names must be DNS names or IP addresses")?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "plantd hub");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Signs a plant's certificate request; the plant's name comes from the hub, not the request.
    pub fn sign_plant(&self, csr_pem: &str, plant: &str) -> anyhow::Result<String> {
        let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .context("the certificate request is not a valid PEM PKCS#10 request")?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, plant);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(365 * 10);
        let signed = rcgen::CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        }
        .signed_by(&self.issuer)?;
        Ok(signed.pem())
    }
}

/// A new key and a certificate request for it (the plant's side of enrollment).
pub fn plant_key_and_csr() -> anyhow::Result<(String, String)> {
    let key = rcgen::KeyPair::generate()?;
    let params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// The CA certificates of the PEM file a config field names (`field` says which, for errors).
pub fn roots_from_file(path: &Path, field: &str) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(path).with_context(|| format!("{field} = {}", path.display()))? {
        roots
            .add(c)
            .with_context(|| format!("{field} = {}: not a CA certificate", path.display()))?;
    }
    Ok(roots)
}

fn roots_from(ca_pem: &[u8]) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.context("reading the hub CA certificate")?)?;
    }
    Ok(roots)
}

/// The hub's QUIC server: TLS 1.3, ALPN `plantd/1`, plants must present a certificate from the CA.
pub fn hub_quic_server(
    ca: &HubCa,
    cert_pem: &str,
    key_pem: &str,
) -> anyhow::Result<quinn::ServerConfig> {
    let roots = Arc::new(roots_from(ca.cert_pem.as_bytes())?);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .context("building the plant certificate verifier")?;
    let mut chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<_, _>>()?;
    chain.push(ca.cert_der.clone());
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport()));
    Ok(config)
}

/// The plant's QUIC client: trusts only its hub's CA and presents the plant certificate.
pub fn plant_quic_client(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key_pem: &[u8],
) -> anyhow::Result<quinn::ClientConfig> {
    let roots = roots_from(ca_pem)?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert_pem).collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(key_pem)?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport()));
    Ok(config)
}

/// Both sides notice a dead link within 15 s and keep NAT bindings open meanwhile.
fn transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(std::time::Duration::from_secs(15)).expect("15 s is valid"),
    ));
    t.keep_alive_interval(Some(std::time::Duration::from_secs(3)));
    t
}

/// When the first certificate of `pem` expires.
pub fn not_after(pem: &str) -> anyhow::Result<jiff::Timestamp> {
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .context("no PEM \"CERTIFICATE\" block")??;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| anyhow::anyhow!("not an X.509 certificate: {e}"))?;
    Ok(jiff::Timestamp::from_second(
        cert.validity().not_after.timestamp(),
    )?)
}

/// A rustls client trusting only `ca_pem` (used by enrollment once the CA is verified).
pub fn client_trusting(ca_pem: &[u8]) -> anyhow::Result<rustls::ClientConfig> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots_from(ca_pem)?)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificates_expiry_is_read_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = api_tls_files(dir.path(), None).unwrap();
        let pem = std::fs::read_to_string(&files.cert).unwrap();
        let expires = not_after(&pem).unwrap();
        assert!(expires > jiff::Timestamp::now(), "{expires}");
        assert!(not_after("not a certificate").is_err());
        assert!(
            not_after("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_err()
        );
    }

    #[test]
    fn the_ca_survives_a_restart_and_signs_plants_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let ca = HubCa::load_or_create(dir.path()).unwrap();
        let again = HubCa::load_or_create(dir.path()).unwrap();
        assert_eq!(ca.fingerprint(), again.fingerprint());
        assert_eq!(ca.fingerprint().len(), 64);
        let (_key, csr) = plant_key_and_csr().unwrap();
        let cert = again.sign_plant(&csr, "plant-lyon").unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(again.sign_plant("not a csr", "x").is_err());
        let (server, key) = ca
            .issue_server(&["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        hub_quic_server(&ca, &server, &key).unwrap();
    }
}
