//! Releases at the hub: published once (the signed manifest, the binary and its image bundle
//! in chunks), and listed for rollouts and `plantd hub release list`.

use super::*;

/// Bytes of an image bundle per database row.
pub const IMAGE_CHUNK: usize = 1024 * 1024;

/// A release as `plantd hub release list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReleaseRow {
    pub version: String,
    pub size: i64,
    pub sha256: String,
    /// The public key that signed it, and the signature (of the manifest: version, size, sha256).
    pub public_key: String,
    pub signature: String,
    pub published_at: String,
    /// The stack image bundle that comes with it, if any.
    #[serde(default)]
    pub images: Option<crate::release::Images>,
}

impl Store {
    /// Stores a signed release, with its image bundle (read from `images`, which must hold the
    /// bytes `manifest.images` names) when it has one. Publishing the same bytes again is a
    /// no-op (`false`); other bytes under a published version are refused: a version names one
    /// release forever. All or nothing: a failure leaves no part of the release stored.
    pub async fn publish_release(
        &mut self,
        manifest: &crate::release::Manifest,
        signature: &str,
        public_key: &str,
        binary: &[u8],
        images: Option<&std::path::Path>,
    ) -> anyhow::Result<bool> {
        let tx = self.client.transaction().await?;
        let inserted = tx
            .execute(
                "INSERT INTO releases (version, size, sha256, signature, public_key, binary_data)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (version) DO NOTHING",
                &[
                    &manifest.version,
                    &(manifest.size as i64),
                    &manifest.sha256,
                    &signature,
                    &public_key,
                    &binary,
                ],
            )
            .await?;
        if inserted == 0 {
            let row = tx
                .query_one(
                    "SELECT r.sha256, i.sha256 FROM releases r
                     LEFT JOIN release_images i ON i.version = r.version WHERE r.version = $1",
                    &[&manifest.version],
                )
                .await?;
            let (stored, stored_images): (String, Option<String>) = (row.get(0), row.get(1));
            let images = manifest.images.as_ref().map(|i| i.sha256.clone());
            if stored != manifest.sha256 || stored_images != images {
                bail!(
                    "version {} is already published with sha256 {stored}{}; a version names one release: publish this one under a new version",
                    manifest.version,
                    stored_images.map(|i| format!(" and images sha256 {i}")).unwrap_or_default()
                );
            }
            return Ok(false);
        }
        if let (Some(m), Some(path)) = (&manifest.images, images) {
            tx.execute(
                "INSERT INTO release_images (version, size, sha256, tags) VALUES ($1, $2, $3, $4)",
                &[
                    &manifest.version,
                    &(m.size as i64),
                    &m.sha256,
                    &m.tags.join(" "),
                ],
            )
            .await?;
            use tokio::io::AsyncReadExt;
            let mut file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening {}", path.display()))?;
            let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
            let (mut buf, mut seq, mut total) = (vec![0u8; IMAGE_CHUNK], 0i32, 0u64);
            loop {
                let mut n = 0;
                while n < buf.len() {
                    let got = file
                        .read(&mut buf[n..])
                        .await
                        .with_context(|| format!("reading {}", path.display()))?;
                    if got == 0 {
                        break;
                    }
                    n += got;
                }
                if n == 0 {
                    break;
                }
                digest.update(&buf[..n]);
                tx.execute(
                    "INSERT INTO release_image_chunks (version, seq, data) VALUES ($1, $2, $3)",
                    &[&manifest.version, &seq, &&buf[..n]],
                )
                .await?;
                seq += 1;
                total += n as u64;
            }
            let sha256 = crate::digest::hex(digest.finish().as_ref());
            if total != m.size || sha256 != m.sha256 {
                bail!(
                    "{} changed while it was being stored ({total} bytes, sha256 {sha256}; signed: {} bytes, sha256 {}); nothing was published",
                    path.display(),
                    m.size,
                    m.sha256
                );
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The published releases, newest first.
    pub async fn releases(&self) -> anyhow::Result<Vec<ReleaseRow>> {
        let rows = self
            .client
            .query(
                "SELECT r.version, r.size, r.sha256, r.public_key, r.signature,
                        to_char(r.published_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                        i.size, i.sha256, i.tags
                 FROM releases r LEFT JOIN release_images i ON i.version = r.version
                 ORDER BY r.published_at DESC, r.version DESC",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| ReleaseRow {
                version: r.get(0),
                size: r.get(1),
                sha256: r.get(2),
                public_key: r.get(3),
                signature: r.get(4),
                published_at: r.get(5),
                images: images_of(r, 6),
            })
            .collect())
    }
}

/// The image bundle in columns `at..at + 3` (size, sha256, tags) of a row, if the release has one.
pub(in crate::hub) fn images_of(
    row: &tokio_postgres::Row,
    at: usize,
) -> Option<crate::release::Images> {
    let size: Option<i64> = row.get(at);
    Some(crate::release::Images {
        size: size? as u64,
        sha256: row.get(at + 1),
        tags: row
            .get::<_, String>(at + 2)
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    })
}
