//! Hashes, hex and random secrets: how plantd names certificates, checks archives and makes
//! tokens. The bottom layer: it uses nothing of plantd's.

use std::io::{Read, Write};

/// 32 random bytes as base64url: the secret part of every token plantd makes.
pub fn random_secret() -> anyhow::Result<String> {
    use base64::Engine;
    let mut raw = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| anyhow::anyhow!("no random numbers from the operating system"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
}

/// Lowercase hex SHA-256 of DER bytes: how certificates are named and pinned.
pub fn sha256_hex(der: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Lowercase hex, as checksums are written in manifests and on the wire.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `bytes` random bytes in hex (ids and scratch names).
pub fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut raw = vec![0u8; bytes];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| anyhow::anyhow!("no random numbers from the operating system"))?;
    Ok(hex(&raw))
}

/// Hashes (SHA-256) and counts what is read or written through it.
pub struct Hashing<T> {
    inner: T,
    digest: ring::digest::Context,
    size: u64,
}

impl<T> Hashing<T> {
    pub fn new(inner: T) -> Hashing<T> {
        Hashing {
            inner,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
            size: 0,
        }
    }

    /// The inner reader or writer, the byte count and the SHA-256 in hex.
    pub fn finish(self) -> (T, u64, String) {
        (self.inner, self.size, hex(self.digest.finish().as_ref()))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
