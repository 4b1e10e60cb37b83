//! Offsite copies of the plant's backups at the hub, over the replication connection, each on
//! a stream of its own at a lower priority than the journal's (QUIC sends the session's frames
//! first, so a large upload never delays transactions).
//!
//! Upload (plant → hub): `BackupOffer { name, size, sha256 }`; the hub answers `BackupFrom
//! { offset }` (what a cut-off upload of the same archive left, kept as `.NAME.partial`) or, if
//! it already holds it, `BackupStored`; the plant sends `BackupChunk`s from there and finishes
//! the stream; the hub fsyncs, checks size and SHA-256 over the whole file, renames it into
//! place and answers `BackupStored`. Only then does the plant mark it (`ID.offsite`). A copy
//! whose checksum differs is deleted and refused, and the next upload starts over.
//!
//! Fetch (plant → hub, on a connection of its own, so that a plant rebuilt from nothing can
//! ask): `BackupFetch { id, offset }`; the hub answers `BackupOffer` and the chunks from
//! `offset`; the plant appends to `.ID.fetch.partial`, checks the SHA-256 and renames.
//!
//! The hub keeps `DATA_DIR/backups/PLANT/NAME` plus `NAME.sha256`, and prunes each plant's
//! copies by its own retention policy after every stored upload.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use quinn::{Connection, RecvStream, SendStream};
use tokio::io::AsyncSeekExt;

use crate::replication::session::frame_name;
use crate::replication::transfer::{digest, next, receive_file, refuse, send_file};
use crate::replication::transport::write_frame;
use crate::replication::wire::Frame;

/// Backup streams yield to the journal's (priority 0).
const PRIORITY: i32 = -10;

/// `ID.tar.zst` or `ID.tar.zst.age`, with a plain backup id; its id.
pub fn archive_id(name: &str) -> Option<&str> {
    let id = name
        .strip_suffix(".tar.zst")
        .or_else(|| name.strip_suffix(".tar.zst.age"))?;
    let plain = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    plain.then_some(id)
}

/// The marker that says the hub holds a backup.
pub fn offsite_marker(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.offsite"))
}

// ---- The plant's side -------------------------------------------------------------------

/// Uploads one archive; true when the hub holds it whole.
pub async fn upload(conn: &Connection, path: &Path) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("the archive has no file name")?
        .to_string();
    let (size, sha256) = digest(path).await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.set_priority(PRIORITY)?;
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    let offer = Frame::BackupOffer {
        name: name.clone(),
        size,
        sha256,
    };
    write_frame(&mut send, &offer, &mut out).await?;
    match next(&mut recv, &mut buf).await? {
        Some(Frame::BackupStored { .. }) => {
            let _ = send.finish();
            return Ok(());
        }
        Some(Frame::BackupFrom { offset }) if offset <= size => {
            send_file(&mut send, path, offset).await?;
        }
        Some(Frame::Refuse { message, .. }) => bail!("the hub refused {name}: {message}"),
        other => bail!(
            "unexpected answer to the offer of {name}: {:?}",
            other.as_ref().map(frame_name)
        ),
    }
    match next(&mut recv, &mut buf).await? {
        Some(Frame::BackupStored { name: stored }) if stored == name => Ok(()),
        Some(Frame::Refuse { message, .. }) => bail!("the hub refused {name}: {message}"),
        other => bail!(
            "unexpected answer after sending {name}: {:?}",
            other.as_ref().map(frame_name)
        ),
    }
}

/// The archives in `dir` the hub does not hold yet, newest first.
fn pending(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let id = archive_id(&name)?.to_string();
            (!offsite_marker(dir, &id).exists()).then(|| (id, e.path()))
        })
        .collect();
    out.sort_by(|a, b| b.0.cmp(&a.0));
    out
}

/// Copies the plant's backups to the hub for as long as the connection lasts, looking for
/// new ones every 30 s. Returns when the connection is gone.
pub async fn run_uploader(conn: Connection, dir: PathBuf) {
    loop {
        for (id, path) in pending(&dir) {
            let started = std::time::Instant::now();
            match upload(&conn, &path).await {
                Ok(()) => {
                    let marker = offsite_marker(&dir, &id);
                    if let Err(e) =
                        crate::fsutil::write_atomic(&marker, b"held by the hub\n", 0o600)
                    {
                        tracing::warn!(%id, error = %e, "could not mark the backup as offsite");
                    }
                    tracing::info!(%id, secs = started.elapsed().as_secs_f64(), "backup copied to the hub");
                }
                Err(e) => {
                    tracing::warn!(%id, error = %format!("{e:#}"), "backup not copied to the hub; retrying later");
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            _ = conn.closed() => return,
        }
    }
}

/// Copies the plant's backups in `dir` to the hub on every connection ([`run_uploader`]).
pub struct Uploader {
    pub dir: PathBuf,
}

impl crate::replication::plant::ConnectionTask for Uploader {
    fn run(&self, conn: Connection) -> crate::replication::plant::TaskFuture {
        Box::pin(run_uploader(conn, self.dir.clone()))
    }
}

/// Fetches backup `id` from the hub into `dir`; resumes a cut-off fetch. Returns the path.
pub async fn fetch(conn: &Connection, id: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let partial = dir.join(format!(".{id}.fetch.partial"));
    let offset = tokio::fs::metadata(&partial)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let (mut send, mut recv) = conn.open_bi().await?;
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    let ask = Frame::BackupFetch {
        id: id.to_string(),
        offset,
    };
    write_frame(&mut send, &ask, &mut out).await?;
    send.finish()?;
    let (name, size, sha256) = match next(&mut recv, &mut buf).await? {
        Some(Frame::BackupOffer { name, size, sha256 }) if archive_id(&name) == Some(id) => {
            (name, size, sha256)
        }
        Some(Frame::Refuse { message, .. }) => bail!("the hub: {message}"),
        other => bail!(
            "unexpected answer to the fetch of {id}: {:?}",
            other.as_ref().map(frame_name)
        ),
    };
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&partial)
        .await?;
    let at = receive_file(&mut recv, &mut buf, &mut file, offset.min(size), size).await?;
    drop(file);
    if at != size {
        bail!("the hub sent {at} of {size} bytes; run the fetch again to resume");
    }
    let (_, got) = digest(&partial).await?;
    if got != sha256 {
        let _ = tokio::fs::remove_file(&partial).await;
        bail!("{name} arrived with another SHA-256 than the hub's; deleted, fetch again");
    }
    let target = dir.join(&name);
    tokio::fs::rename(&partial, &target).await?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(target)
}

// ---- The hub's side ---------------------------------------------------------------------

/// Where the hub keeps plants' backups, and for how long.
#[derive(Debug, Clone)]
pub struct HubBackups {
    pub dir: PathBuf,
    pub policy: crate::retention::Policy,
}

/// A copy the hub holds, as `plantd hub backups` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeldCopy {
    pub id: String,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// When the plant started the backup (from its id).
    pub created_at: String,
}

impl HubBackups {
    fn plant_dir(&self, plant: &str) -> PathBuf {
        self.dir.join(plant)
    }

    /// The copies held for `plant`, oldest first.
    pub fn list(&self, plant: &str) -> anyhow::Result<Vec<HeldCopy>> {
        let dir = self.plant_dir(plant);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(id) = archive_id(&name) else {
                continue;
            };
            let sha256 = std::fs::read_to_string(dir.join(format!("{name}.sha256")))
                .unwrap_or_default()
                .trim()
                .to_string();
            out.push(HeldCopy {
                id: id.to_string(),
                size: entry.metadata()?.len(),
                created_at: super::scheduler::taken_at(id)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                name,
                sha256,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The newest copy held for `plant`, read cheaply (the fleet view asks for every plant
    /// every few seconds): one directory listing and the size of that one file; no checksum.
    pub fn newest(&self, plant: &str) -> Option<HeldCopy> {
        let dir = self.plant_dir(plant);
        let (name, id) = std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let id = archive_id(&name)?.to_string();
                Some((name, id))
            })
            .max_by(|a, b| a.1.cmp(&b.1))?;
        let size = std::fs::metadata(dir.join(&name)).ok()?.len();
        Some(HeldCopy {
            created_at: super::scheduler::taken_at(&id)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            id,
            name,
            size,
            sha256: String::new(),
        })
    }

    fn prune(&self, plant: &str) -> anyhow::Result<()> {
        // Cut-off uploads not resumed within a week: the plant has moved on.
        if let Ok(entries) = std::fs::read_dir(self.plant_dir(plant)) {
            for e in entries.flatten() {
                let stale = e
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .is_some_and(|t| {
                        t.elapsed().unwrap_or_default() > Duration::from_secs(7 * 24 * 3600)
                    });
                if e.file_name().to_string_lossy().ends_with(".partial") && stale {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let held = self.list(plant)?;
        let dated: Vec<(String, jiff::Timestamp)> = held
            .iter()
            .filter_map(|c| Some((c.name.clone(), super::scheduler::taken_at(&c.id)?)))
            .collect();
        let dir = self.plant_dir(plant);
        for name in crate::retention::to_delete(&dated, &self.policy, &jiff::tz::TimeZone::UTC) {
            std::fs::remove_file(dir.join(&name))?;
            let _ = std::fs::remove_file(dir.join(format!("{name}.sha256")));
            tracing::info!(%plant, %name, "offsite copy deleted by the hub's retention policy");
        }
        Ok(())
    }
}

/// Serves one backup stream of `plant`, whose first frame was `first`.
pub async fn serve(
    backups: &HubBackups,
    plant: &str,
    first: Frame,
    mut send: SendStream,
    mut recv: RecvStream,
    mut buf: Vec<u8>,
) -> anyhow::Result<()> {
    let dir = backups.plant_dir(plant);
    crate::fsutil::create_private_dir(&backups.dir)?;
    crate::fsutil::create_private_dir(&dir)?;
    let mut out = Vec::new();
    match first {
        Frame::BackupOffer { name, size, sha256 } => {
            if archive_id(&name).is_none() || sha256.len() != 64 {
                return Err(refuse(
                    &mut send,
                    format!("{name:?} is not a backup archive's name"),
                )
                .await);
            }
            // Retention dates copies by their ids: one far in the future would outlive, and
            // push out, every real copy.
            let dated = archive_id(&name).and_then(super::scheduler::taken_at);
            let horizon = jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_hours(24))
                .unwrap_or(jiff::Timestamp::MAX);
            if dated.is_none_or(|t| t > horizon) {
                return Err(refuse(&mut send, format!("{name}: its id is not a time up to a day ahead of the hub's clock (YYYYMMDDTHHMMSSZ-...); check the plant's clock")).await);
            }
            let target = dir.join(&name);
            if target.exists() {
                write_frame(&mut send, &Frame::BackupStored { name }, &mut out).await?;
                send.finish()?;
                return Ok(());
            }
            let free = rustix::fs::statvfs(&dir)
                .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
                .unwrap_or(u64::MAX);
            let partial = dir.join(format!(".{name}.partial"));
            let have = tokio::fs::metadata(&partial)
                .await
                .map(|m| m.len())
                .unwrap_or(0);
            if size.saturating_sub(have) > free {
                return Err(refuse(
                    &mut send,
                    format!("the hub has {free} bytes free, too few for {name} ({size} bytes)"),
                )
                .await);
            }
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .mode(0o600)
                .open(&partial)
                .await?;
            let offset = if have > size { 0 } else { have };
            file.set_len(offset).await?;
            file.seek(std::io::SeekFrom::Start(offset)).await?;
            write_frame(&mut send, &Frame::BackupFrom { offset }, &mut out).await?;
            let at = receive_file(&mut recv, &mut buf, &mut file, offset, size).await?;
            drop(file);
            if at != size {
                // Cut off: what arrived stays for the next offer to resume.
                bail!("{name}: the plant stopped after {at} of {size} bytes");
            }
            let (_, got) = digest(&partial).await?;
            if got != sha256 {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(refuse(&mut send, format!("{name}: its SHA-256 differs from the offer's; the copy is deleted, and the next upload starts over")).await);
            }
            crate::fsutil::write_atomic(
                &dir.join(format!("{name}.sha256")),
                format!("{sha256}\n").as_bytes(),
                0o600,
            )?;
            tokio::fs::rename(&partial, &target).await?;
            std::fs::File::open(&dir)?.sync_all()?;
            tracing::info!(%plant, %name, size, "offsite copy stored");
            write_frame(&mut send, &Frame::BackupStored { name }, &mut out).await?;
            send.finish()?;
            if let Err(e) = backups.prune(plant) {
                tracing::warn!(%plant, error = %format!("{e:#}"), "pruning offsite copies failed");
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
            Ok(())
        }
        Frame::BackupFetch { id, offset } => {
            let Some(copy) = backups.list(plant)?.into_iter().find(|c| c.id == id) else {
                return Err(refuse(&mut send, format!("the hub holds no backup {id} of plant {plant}; `plantd hub backups --plant {plant}` lists them")).await);
            };
            if offset > copy.size {
                return Err(refuse(
                    &mut send,
                    format!(
                        "offset {offset} is past the end of {} ({} bytes)",
                        copy.name, copy.size
                    ),
                )
                .await);
            }
            send.set_priority(PRIORITY)?;
            let offer = Frame::BackupOffer {
                name: copy.name.clone(),
                size: copy.size,
                sha256: copy.sha256.clone(),
            };
            write_frame(&mut send, &offer, &mut out).await?;
            send_file(&mut send, &dir.join(&copy.name), offset).await?;
            let _ = tokio::time::timeout(Duration::from_secs(30), send.stopped()).await;
            Ok(())
        }
        other => Err(refuse(
            &mut send,
            format!(
                "a backup stream cannot start with a {} frame",
                frame_name(&other)
            ),
        )
        .await),
    }
}

impl crate::replication::hub::BackupStreams for HubBackups {
    async fn serve(
        &self,
        plant: String,
        first: Frame,
        send: SendStream,
        recv: RecvStream,
        buf: Vec<u8>,
    ) -> anyhow::Result<()> {
        serve(self, &plant, first, send, recv, buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_copy_held_is_the_latest_id_with_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let held = HubBackups {
            dir: dir.path().to_path_buf(),
            policy: Default::default(),
        };
        assert!(held.newest("lyon").is_none(), "nothing held yet");
        let plant = dir.path().join("lyon");
        std::fs::create_dir_all(&plant).unwrap();
        for (name, len) in [
            ("20261206T020000Z-aaaaaa.tar.zst", 10),
            ("20261207T020000Z-bbbbbb.tar.zst.age", 20),
            ("20261208T020000Z-cccccc.tar.zst.partial", 30),
            ("notes.txt", 40),
        ] {
            std::fs::write(plant.join(name), vec![0u8; len]).unwrap();
        }
        let newest = held.newest("lyon").unwrap();
        assert_eq!(
            (newest.id.as_str(), newest.size, newest.created_at.as_str()),
            ("20261207T020000Z-bbbbbb", 20, "2026-12-07T02:00:00Z")
        );
        let listed = held.list("lyon").unwrap();
        assert_eq!(
            listed.last().unwrap().id,
            newest.id,
            "as the full listing says"
        );
    }
}
