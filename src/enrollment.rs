//! The plant's side of enrollment: `plantd enroll --hub HOST:PORT --token TOKEN`.
//!
//! Trust nothing before the fingerprint matches: the hub's CA is fetched over an unverified
//! connection, its SHA-256 compared with the fingerprint in the token, and only then is the
//! certificate request sent, over a connection verified against that CA. Results are written
//! atomically: `tls/plant.key` (0600), `tls/plant.crt`, `tls/hub-ca.crt`, `enrollment.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

pub mod protocol;

use protocol::{EnrollAnswer, EnrollRequest, ErrorBody};

/// What `plantd up` needs to replicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub plant: String,
    /// The hub's enrollment address, as given.
    pub hub: String,
    /// The hub's QUIC addresses, from the enrollment answer.
    pub quic: Vec<String>,
    pub enrolled_at: String,
}

/// An enrollment token, as both ends read it: `pdh1.<32 random bytes, base64url>.<the hub
/// CA's SHA-256, hex>`.
const TOKEN_PREFIX: &str = "pdh1";

/// What is wrong with an enrollment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollError {
    /// The token is not one `plantd hub token create` prints.
    #[error("not an enrollment token: expected pdh1.SECRET.FINGERPRINT as printed by `plantd hub token create`")]
    NotAToken,
}

/// A new token for the CA with this fingerprint; returns (token, its SHA-256 for storage).
pub fn make_token(ca_fingerprint: &str) -> anyhow::Result<(String, String)> {
    let secret = crate::digest::random_secret()?;
    let token = format!("{TOKEN_PREFIX}.{secret}.{ca_fingerprint}");
    let hash = crate::digest::sha256_hex(token.as_bytes());
    Ok((token, hash))
}

/// The CA fingerprint a token carries, or what is wrong with it.
pub fn parse_token(token: &str) -> Result<String, EnrollError> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    match parts.as_slice() {
        [TOKEN_PREFIX, secret, fp]
            if secret.len() == 43
                && secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
                && fp.len() == 64
                && fp.chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            Ok(fp.to_ascii_lowercase())
        }
        _ => Err(EnrollError::NotAToken),
    }
}

struct Paths {
    key: PathBuf,
    cert: PathBuf,
    ca: PathBuf,
    record: PathBuf,
}

fn paths(data_dir: &Path) -> Paths {
    let tls = data_dir.join("tls");
    Paths {
        key: tls.join("plant.key"),
        cert: tls.join("plant.crt"),
        ca: tls.join("hub-ca.crt"),
        record: data_dir.join("enrollment.json"),
    }
}

/// The enrollment recorded in `data_dir`, if any.
pub fn load(data_dir: &Path) -> anyhow::Result<Option<Enrollment>> {
    let p = paths(data_dir);
    let text = match std::fs::read_to_string(&p.record) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.record.display())),
    };
    let e: Enrollment = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a plantd enrollment record", p.record.display()))?;
    if e.quic.is_empty() {
        bail!("{}: lists no hub address; enroll again", p.record.display());
    }
    Ok(Some(e))
}

/// The QUIC client config for the enrolled plant.
pub fn quic_client(data_dir: &Path) -> anyhow::Result<quinn::ClientConfig> {
    let p = paths(data_dir);
    let read = |f: &Path| std::fs::read(f).with_context(|| format!("reading {}", f.display()));
    crate::pki::plant_quic_client(&read(&p.ca)?, &read(&p.cert)?, &read(&p.key)?)
}

/// Enrolls the plant whose data directory is `data_dir` with the hub at `hub` ("host:port").
pub async fn enroll(data_dir: &Path, hub: &str, token: &str) -> anyhow::Result<Enrollment> {
    let fingerprint = parse_token(token)?;
    let base = format!("https://{hub}");
    // 1. The CA, over a connection that proves nothing yet.
    let unverified = rustls::ClientConfig::builder_with_provider(crate::pki::provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(crate::pki::AnyServerCertificate(
            crate::pki::provider(),
        )))
        .with_no_client_auth();
    let ca_pem = client(unverified)?
        .get(format!("{base}{}", protocol::CA_PATH))
        .send()
        .await
        .with_context(|| format!("reaching the hub at {hub}"))?
        .error_for_status()?
        .text()
        .await?;
    let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .context("the hub's CA is not a PEM certificate")?;
    let got = crate::digest::sha256_hex(&ca_der);
    if got != fingerprint {
        bail!(
            "the hub at {hub} presents CA {got}, but the token expects {fingerprint}: this is not the hub that made the token; nothing was sent"
        );
    }
    // 2. The request, over a connection verified against that CA.
    let (key_pem, csr_pem) = crate::pki::plant_key_and_csr()?;
    let verified = crate::pki::client_trusting(ca_pem.as_bytes())?;
    let response = client(verified)?
        .post(format!("{base}{}", protocol::ENROLL_PATH))
        .json(&EnrollRequest {
            token: token.trim().to_string(),
            csr: csr_pem,
        })
        .send()
        .await
        .with_context(|| format!("sending the enrollment to {hub}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.context("reading the hub's answer")?;
    if !status.is_success() {
        let message = serde_json::from_value::<ErrorBody>(body)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| "no reason given".into());
        bail!("the hub refused the enrollment ({status}): {message}");
    }
    let EnrollAnswer {
        plant,
        certificate: cert,
        quic,
        ..
    } = serde_json::from_value(body).context(
        "the hub's answer is not an enrollment answer (plant, certificate, ca, quic addresses)",
    )?;

    let p = paths(data_dir);
    crate::fsutil::create_private_dir(p.key.parent().expect("in tls/"))?;
    crate::fsutil::write_atomic(&p.key, key_pem.as_bytes(), 0o600)?;
    crate::fsutil::write_atomic(&p.cert, cert.as_bytes(), 0o644)?;
    crate::fsutil::write_atomic(&p.ca, ca_pem.as_bytes(), 0o644)?;
    let enrollment = Enrollment {
        plant,
        hub: hub.to_string(),
        quic,
        enrolled_at: crate::clock::rfc3339_ms(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        ),
    };
    crate::fsutil::write_atomic(&p.record, &serde_json::to_vec_pretty(&enrollment)?, 0o644)?;
    Ok(enrollment)
}

fn client(tls: rustls::ClientConfig) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(std::time::Duration::from_secs(30))
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_the_fingerprint_and_bad_ones_are_named() {
        let fp = "ab".repeat(32);
        let (token, hash) = make_token(&fp).unwrap();
        assert_eq!(parse_token(&token), Ok(fp));
        assert_eq!(hash.len(), 64);
        for bad in [
            "",
            "pdh1",
            "pdh1.x.y",
            "pdt_abc",
            &token.replace("pdh1", "pdh2"),
        ] {
            assert!(parse_token(bad).is_err(), "{bad}");
        }
    }
}
