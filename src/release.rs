//! Release signatures: what a plant checks before it runs a binary the hub offers it.
//!
//! The central team signs, with an ed25519 key kept off the hub, one canonical manifest naming
//! the version, the size and the SHA-256 of the binary. A plant pins one or more public keys
//! (`[update] release_keys` in `plant.toml`; several, so that a key can be rotated) and accepts
//! a release only when a pinned key signed exactly that manifest and the bytes it downloaded
//! match it. The hub is not trusted: it stores and serves what was signed elsewhere.
//!
//! Formats (text, so that they travel in config files and terminals):
//! - public key: `plantd-release-ed25519:` + base64 of the 32-byte key;
//! - secret key file: `plantd-release-ed25519-secret:` + base64 of the PKCS#8 document;
//! - signature: base64 of the 64-byte signature.

use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

pub const PUBLIC_PREFIX: &str = "plantd-release-ed25519:";
pub const SECRET_PREFIX: &str = "plantd-release-ed25519-secret:";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The version this process runs: the release version it was installed as (set once at the
/// daemon's start by `update::init_version`), or the one it was built as.
pub fn version() -> &'static str {
    VERSION
        .get()
        .map_or(env!("CARGO_PKG_VERSION"), String::as_str)
}

/// Sets [`version`], once; later calls change nothing.
pub fn set_version(v: String) {
    let _ = VERSION.set(v);
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    #[error("{0:?} is not a release public key; it starts with \"{PUBLIC_PREFIX}\" (from `plantd hub release keygen`)")]
    BadPublicKey(String),
    #[error("not a release signing key file; it holds one line starting with \"{SECRET_PREFIX}\" (from `plantd hub release keygen`)")]
    BadSecretKey,
    #[error("version {0:?}: use 1 to 32 of digits, letters, '.', '-' and '+', starting with a digit (such as \"1.4.0\")")]
    BadVersion(String),
    #[error("the signature is not base64 of 64 bytes")]
    BadSignature,
    #[error("no pinned release key signed version {version} (sha256 {sha256}); refused")]
    NotSigned { version: String, sha256: String },
    #[error("no random numbers from the operating system")]
    Random,
}

/// A public key a plant pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn parse(text: &str) -> Result<PublicKey, ReleaseError> {
        let bad = || ReleaseError::BadPublicKey(text.to_string());
        let b64 = text.trim().strip_prefix(PUBLIC_PREFIX).ok_or_else(bad)?;
        let raw = B64.decode(b64).map_err(|_| bad())?;
        Ok(PublicKey(raw.try_into().map_err(|_| bad())?))
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", B64.encode(self.0))
    }
}

/// What is signed: a release's version, size and SHA-256 (lowercase hex), and the stack image
/// bundle it carries, if any.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub version: String,
    pub size: u64,
    pub sha256: String,
    #[serde(default)]
    pub images: Option<Images>,
}

/// A bundle of stack images (`docker save` format) that travels with a release: its size, its
/// SHA-256 and the image tags it carries (sorted).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Images {
    pub size: u64,
    pub sha256: String,
    pub tags: Vec<String>,
}

impl Manifest {
    /// The manifest of `binary` as version `version`.
    pub fn of(version: &str, binary: &[u8]) -> Result<Manifest, ReleaseError> {
        check_version(version)?;
        Ok(Manifest {
            version: version.to_string(),
            size: binary.len() as u64,
            sha256: crate::digest::hex(
                ring::digest::digest(&ring::digest::SHA256, binary).as_ref(),
            ),
            images: None,
        })
    }

    /// The exact bytes signed: a fixed header, then one field per line; a release without
    /// images signs what it signed before images existed.
    fn canonical(&self) -> Vec<u8> {
        let mut text = format!(
            "plantd release 1\nversion={}\nsize={}\nsha256={}\n",
            self.version, self.size, self.sha256
        );
        if let Some(i) = &self.images {
            text.push_str(&format!(
                "images.size={}\nimages.sha256={}\nimages.tags={}\n",
                i.size,
                i.sha256,
                i.tags.join(" ")
            ));
        }
        text.into_bytes()
    }
}

pub fn check_version(version: &str) -> Result<(), ReleaseError> {
    let ok = (1..=32).contains(&version.len())
        && version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    if ok {
        Ok(())
    } else {
        Err(ReleaseError::BadVersion(version.to_string()))
    }
}

/// A new signing key: the secret key file's text, and the public key to pin.
pub fn keygen() -> Result<(String, PublicKey), ReleaseError> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| ReleaseError::Random)?;
    let pair =
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| ReleaseError::BadSecretKey)?;
    let public = public_of(&pair);
    Ok((
        format!("{SECRET_PREFIX}{}\n", B64.encode(pkcs8.as_ref())),
        public,
    ))
}

fn public_of(pair: &Ed25519KeyPair) -> PublicKey {
    PublicKey(
        pair.public_key()
            .as_ref()
            .try_into()
            .expect("ed25519 public keys are 32 bytes"),
    )
}

/// A signing key, from its file's text.
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    pub fn parse(text: &str) -> Result<SigningKey, ReleaseError> {
        let b64 = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(ReleaseError::BadSecretKey)?;
        let pkcs8 = B64.decode(b64).map_err(|_| ReleaseError::BadSecretKey)?;
        Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map(SigningKey)
            .map_err(|_| ReleaseError::BadSecretKey)
    }

    pub fn public(&self) -> PublicKey {
        public_of(&self.0)
    }

    /// The signature of a manifest, as base64.
    pub fn sign(&self, manifest: &Manifest) -> String {
        B64.encode(self.0.sign(&manifest.canonical()).as_ref())
    }
}

/// Which of `pinned` signed `manifest` (its index), or why none did.
pub fn verify(
    pinned: &[PublicKey],
    manifest: &Manifest,
    signature: &str,
) -> Result<usize, ReleaseError> {
    check_version(&manifest.version)?;
    let sig = B64
        .decode(signature.trim())
        .ok()
        .filter(|s| s.len() == 64)
        .ok_or(ReleaseError::BadSignature)?;
    let message = manifest.canonical();
    pinned
        .iter()
        .position(|k| {
            UnparsedPublicKey::new(&ED25519, k.0)
                .verify(&message, &sig)
                .is_ok()
        })
        .ok_or_else(|| ReleaseError::NotSigned {
            version: manifest.version.clone(),
            sha256: manifest.sha256.clone(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_key_accepts_exactly_what_it_signed() {
        let (secret, public) = keygen().unwrap();
        let key = SigningKey::parse(&secret).unwrap();
        assert_eq!(key.public(), public);
        assert_eq!(PublicKey::parse(&public.to_string()).unwrap(), public);
        let binary = b"\x7fELF plantd 2.0.0".to_vec();
        let manifest = Manifest::of("2.0.0", &binary).unwrap();
        let sig = key.sign(&manifest);
        let (_, other) = keygen().unwrap();

        // Rotation: the new key may sit anywhere in the pinned list.
        assert_eq!(
            verify(&[other.clone(), public.clone()], &manifest, &sig),
            Ok(1)
        );
        assert!(matches!(
            verify(std::slice::from_ref(&other), &manifest, &sig),
            Err(ReleaseError::NotSigned { .. })
        ));
        // Any field changed is a different manifest.
        for changed in [
            Manifest {
                version: "2.0.1".into(),
                ..manifest.clone()
            },
            Manifest {
                size: manifest.size + 1,
                ..manifest.clone()
            },
            Manifest {
                sha256: "0".repeat(64),
                ..manifest.clone()
            },
            Manifest {
                images: Some(Images {
                    size: 1,
                    sha256: "0".repeat(64),
                    tags: vec!["odoo:17".into()],
                }),
                ..manifest.clone()
            },
        ] {
            assert!(
                verify(std::slice::from_ref(&public), &changed, &sig).is_err(),
                "{changed:?}"
            );
        }
        assert_eq!(
            verify(std::slice::from_ref(&public), &manifest, "AAAA"),
            Err(ReleaseError::BadSignature)
        );
    }

    #[test]
    fn the_image_bundle_is_part_of_what_is_signed() {
        let (secret, public) = keygen().unwrap();
        let key = SigningKey::parse(&secret).unwrap();
        let mut manifest = Manifest::of("2.0.0", b"binary").unwrap();
        manifest.images = Some(Images {
            size: 10,
            sha256: "a".repeat(64),
            tags: vec!["plantd-local/odoo:2".into(), "plantd-local/redis:2".into()],
        });
        let sig = key.sign(&manifest);
        let pinned = std::slice::from_ref(&public);
        assert_eq!(verify(pinned, &manifest, &sig), Ok(0));
        let mut other_tags = manifest.clone();
        other_tags.images.as_mut().unwrap().tags.pop();
        let mut other_bytes = manifest.clone();
        other_bytes.images.as_mut().unwrap().sha256 = "b".repeat(64);
        let mut dropped = manifest.clone();
        dropped.images = None;
        for changed in [other_tags, other_bytes, dropped] {
            assert!(verify(pinned, &changed, &sig).is_err(), "{changed:?}");
        }
    }

    #[test]
    fn malformed_keys_and_versions_are_named() {
        for bad in [
            "",
            "ed25519:AAAA",
            "plantd-release-ed25519:!!",
            "plantd-release-ed25519:AAAA",
        ] {
            assert!(
                matches!(PublicKey::parse(bad), Err(ReleaseError::BadPublicKey(_))),
                "{bad:?}"
            );
        }
        assert!(SigningKey::parse("plantd-release-ed25519-secret:AAAA").is_err());
        let (_, public) = keygen().unwrap();
        assert!(
            SigningKey::parse(&public.to_string()).is_err(),
            "a public key is not a secret one"
        );
        for bad in ["", "v1.0", "1.0/../x", "1 0", &"1".repeat(33)] {
            assert!(Manifest::of(bad, b"x").is_err(), "{bad:?}");
        }
        for good in ["1.0.0", "2.1.0-rc.1", "0.1.0+build.7"] {
            assert!(check_version(good).is_ok(), "{good:?}");
        }
    }
}
