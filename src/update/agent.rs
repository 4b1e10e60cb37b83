//! The plant's update agent: on every QUIC connection to the hub it asks for a release (a long
//! poll, so a rollout reaches it within about a second), checks the offer's signature against
//! the pinned keys before it downloads a byte, checks free disk, downloads on a stream of its
//! own, checks the bytes against the signed manifest, and hands the verified binary to the
//! daemon, which stops and tries it (see [`super::install`]). A release that carries stack
//! images has them loaded and applied first, while the daemon runs on: the bundle is checked
//! against the signed manifest, loaded into Docker, and the services it moves are upgraded
//! through the control socket, as `plantd stack apply` does (pre-upgrade backup, health gate,
//! rollback); when one of them rolls back, all go back and the binary is not tried. Outcomes wait in
//! `DATA_DIR/releases/outcome.json` until the hub has noted them, so that a report lost on the
//! way is sent again and never undoes an install (the Mender trap).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use bytesize::ByteSize;
use quinn::Connection;
use tokio::sync::mpsc;

use super::images::{ImagePlan, NoMoves, PlanError};
use super::{releases_dir, Outcome};
use crate::release::{self, Manifest, PublicKey};
use crate::replication::transport::{read_frame, write_frame};
use crate::replication::wire::Frame;

/// A downloaded release whose bytes match its signed manifest, ready to be tried.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub version: String,
    pub rollout: u64,
    pub path: PathBuf,
    /// What became of the release's stack images, for the outcome's reason.
    pub images_note: Option<String>,
}

/// What the agent needs; one per daemon, cloned onto each connection.
#[derive(Clone)]
pub struct Agent {
    pub data_dir: PathBuf,
    pub keys: Vec<PublicKey>,
    /// Bytes the journal keeps free for itself; an update must leave them.
    pub reserve: u64,
    pub candidates: mpsc::Sender<Candidate>,
    /// plant.toml as it is now (for the stack's configured images).
    pub reload: crate::config::Reload,
    /// The daemon's stack actions, for a release that moves stack images.
    pub stack: super::images::StackSlot,
    /// Held while a release is being applied, by a task the connection does not own.
    busy: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// How long the hub may take to answer a check (it holds one for up to 20 s).
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

impl crate::replication::plant::ConnectionTask for Agent {
    fn run(&self, conn: Connection) -> crate::replication::plant::TaskFuture {
        Box::pin(self.clone().run(conn))
    }
}

impl Agent {
    pub fn new(
        data_dir: PathBuf,
        keys: Vec<PublicKey>,
        reserve: u64,
        candidates: mpsc::Sender<Candidate>,
        reload: crate::config::Reload,
        stack: super::images::StackSlot,
    ) -> Agent {
        // What an earlier run left: a cut download, or a bundle whose upgrade it did not outlive.
        remove_incoming(&releases_dir(&data_dir));
        Agent {
            data_dir,
            keys,
            reserve,
            candidates,
            reload,
            stack,
            busy: Default::default(),
        }
    }

    /// Runs on one connection until it closes or a candidate is handed over; a failed check
    /// (the hub's database down, say) is retried on the same connection after a pause.
    pub async fn run(self, conn: Connection) {
        loop {
            match self.serve(&conn).await {
                Ok(()) => return,
                Err(e) => {
                    if conn.close_reason().is_some() {
                        return;
                    }
                    tracing::warn!(error = %format!("{e:#}"), "update check failed; retrying in 10 s");
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
            }
        }
    }

    async fn serve(&self, conn: &Connection) -> anyhow::Result<()> {
        loop {
            if let Some(outcome) = Outcome::load(&self.data_dir)? {
                report(conn, &outcome).await?;
                Outcome::clear(&self.data_dir)?;
            }
            // A release still being applied (its connection ended meanwhile) finishes first.
            drop(self.busy.lock().await);
            let Some(offer) = check(conn).await? else {
                continue;
            };
            // A pin to a version refused or rolled back here is not tried again in a loop. A
            // rollout offers a plant a version once; a new rollout of it (after the disk was
            // freed, say) is an operator asking again, and is tried.
            if offer.rollout == 0
                && super::declined(&self.data_dir).contains(&offer.manifest.version)
            {
                tokio::time::sleep(Duration::from_secs(60)).await;
                continue;
            }
            let prepared = match self.prepare(conn, &offer).await {
                Ok(p) => p,
                Err(Failure::Transfer(e)) => {
                    // A cut link is not the release's fault: the offer comes again.
                    return Err(
                        e.context(format!("downloading version {}", offer.manifest.version))
                    );
                }
                Err(failure) => {
                    self.settle(&offer, failure)?;
                    continue;
                }
            };
            // From here on nothing needs the link: the rest runs in a task of its own, which
            // the end of this connection does not cut short (a stack upgrade left halfway
            // would break all-or-nothing); the next connection's agent waits for it.
            let guard = self.busy.clone().lock_owned().await;
            let agent = self.clone();
            let finish = tokio::spawn(async move {
                let _busy = guard;
                agent.finish(prepared, &offer).await
            });
            match finish.await {
                Ok(Ok(true)) => return Ok(()),
                Ok(Ok(false)) => continue,
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(anyhow!("the update task failed: {e}")),
            }
        }
    }

    /// Applies a prepared release's stack images, if it has any, then hands the binary to the
    /// daemon (`true`), or records why not (`false`).
    async fn finish(&self, prepared: Prepared, offer: &Offer) -> anyhow::Result<bool> {
        let Prepared {
            mut candidate,
            images,
        } = prepared;
        if let Some((stack, bundle, moves)) = images {
            let applied = match self.stack.get() {
                Some(ops) => {
                    super::images::apply(
                        &self.data_dir,
                        ops.as_ref(),
                        &stack,
                        &bundle,
                        &offer.manifest,
                        moves,
                    )
                    .await
                }
                None => Err(Failure::Refused(
                    "the daemon's stack actions are not ready yet; the release is offered again"
                        .into(),
                )),
            };
            let _ = tokio::fs::remove_file(&bundle).await;
            match applied {
                Ok(note) => candidate.images_note = Some(note),
                Err(failure) => {
                    let _ = tokio::fs::remove_file(&candidate.path).await;
                    self.settle(offer, failure)?;
                    return Ok(false);
                }
            }
        }
        tracing::info!(version = %candidate.version, "release downloaded and verified; stopping to try it");
        let _ = self.candidates.send(candidate).await;
        Ok(true)
    }

    /// Records a release refused or rolled back here, for the hub and for pins.
    fn settle(&self, offer: &Offer, failure: Failure) -> anyhow::Result<()> {
        let version = &offer.manifest.version;
        let (outcome, reason) = match failure {
            Failure::Refused(reason) => ("refused", reason),
            Failure::RolledBack(reason) => ("rolled_back", reason),
            Failure::Transfer(e) => return Err(e),
        };
        tracing::warn!(%version, %outcome, %reason, "release not installed");
        super::decline(&self.data_dir, version);
        Outcome {
            version: version.clone(),
            rollout: offer.rollout,
            outcome: outcome.into(),
            reason,
        }
        .save(&self.data_dir)
    }
    /// Signature, disk, download, bytes: in that order, so that nothing is fetched that could
    /// not be used.
    async fn prepare(&self, conn: &Connection, offer: &Offer) -> Result<Prepared, Failure> {
        let refuse = |why: String| Failure::Refused(why);
        let m = &offer.manifest;
        if self.keys.is_empty() {
            return Err(refuse(
                "this plant pins no release key ([update] release_keys in plant.toml), so it accepts no release".into(),
            ));
        }
        release::verify(&self.keys, m, &offer.signature).map_err(|e| refuse(e.to_string()))?;
        let dir = releases_dir(&self.data_dir);
        crate::fsutil::create_private_dir(&dir).map_err(|e| refuse(format!("{e:#}")))?;
        // What an earlier download left (cut off, or a trial the process did not outlive).
        remove_incoming(&dir);
        // The images go first: a plan says whether this plant needs the bundle at all.
        let moves = match &m.images {
            None => None,
            Some(images) => Some(self.image_plan(images).map_err(|e| refuse(e.to_string()))?),
        };
        let bundle_size = match &moves {
            Some(ImagePlan::Move(..)) => m.images.as_ref().map_or(0, |i| i.size),
            _ => 0,
        };
        self.check_disk(&dir, m.size, bundle_size)
            .map_err(|e| refuse(e.to_string()))?;
        let path = download(conn, &dir, m, Part::Binary)
            .await
            .map_err(|e| match e {
                Failure::Refused(why) => {
                    refuse(format!("download of version {}: {why}", m.version))
                }
                other => other,
            })?;
        let (images_note, images) = match moves {
            None => (None, None),
            Some(ImagePlan::Keep(nothing_to_do)) => (Some(nothing_to_do.to_string()), None),
            Some(ImagePlan::Move(stack, moves)) => {
                match download(conn, &dir, m, Part::Images).await {
                    Ok(bundle) => (None, Some((*stack, bundle, moves))),
                    Err(e) => {
                        let _ = tokio::fs::remove_file(&path).await;
                        return Err(match e {
                            Failure::Refused(why) => {
                                refuse(format!("download of version {}'s images: {why}", m.version))
                            }
                            other => other,
                        });
                    }
                }
            }
        };
        Ok(Prepared {
            candidate: Candidate {
                version: m.version.clone(),
                rollout: offer.rollout,
                path,
                images_note,
            },
            images,
        })
    }

    /// What a release's bundle means here: the services it moves, or why it moves none (not a
    /// failure: the binary is tried all the same). An error refuses the release.
    fn image_plan(&self, images: &release::Images) -> Result<ImagePlan, PlanError> {
        let config = (self.reload)().map_err(PlanError::Reload)?;
        let Some(stack) = config.stack else {
            return Ok(ImagePlan::Keep(NoMoves::NoStack));
        };
        super::images::plan(stack, &self.data_dir, &images.tags)
    }

    /// Room for the download and the kept copy of the running binary in `dir`, the journal's
    /// reserve left over, and room for the new binary's copy beside the running one (on the
    /// same disk or another).
    fn check_disk(&self, dir: &Path, size: u64, bundle: u64) -> Result<(), DiskError> {
        let exe = std::env::current_exe().map_err(DiskError::Exe)?;
        let running = std::fs::metadata(&exe).map(|m| m.len()).unwrap_or(size);
        let exe_dir = exe.parent().unwrap_or(Path::new("/"));
        let stat = |p: &Path| {
            rustix::fs::statvfs(p)
                .map(|s| (s.f_bavail.saturating_mul(s.f_frsize), s.f_fsid))
                .map_err(|errno| DiskError::FreeSpace {
                    path: p.to_path_buf(),
                    errno,
                })
        };
        let (free, fsid) = stat(dir)?;
        let (exe_free, exe_fsid) = stat(exe_dir)?;
        let same_disk = fsid == exe_fsid;
        let need = size + bundle + running + self.reserve + if same_disk { size } else { 0 };
        if free < need {
            return Err(DiskError::TooLittle {
                dir: dir.to_path_buf(),
                need,
                download: size + bundle,
                running,
                beside: same_disk.then_some(size),
                reserve: self.reserve,
                free,
            });
        }
        if !same_disk && exe_free < size {
            return Err(DiskError::TooLittleBeside {
                dir: exe_dir.to_path_buf(),
                size,
                free: exe_free,
            });
        }
        Ok(())
    }
}

/// Why a release does not fit on this plant's disks.
#[derive(Debug, thiserror::Error)]
enum DiskError {
    #[error("finding the running binary: {0}")]
    Exe(std::io::Error),
    #[error("cannot read free space of {}: {errno}", path.display())]
    FreeSpace {
        path: std::path::PathBuf,
        errno: rustix::io::Errno,
    },
    #[error(
        "too little free disk in {}: the update needs {} ({} to download, {} to keep the running binary, {}the journal's reserve {}) and {} is free",
        dir.display(),
        ByteSize(*need),
        ByteSize(*download),
        ByteSize(*running),
        beside.map(|b| format!("{} for the new binary beside the running one, ", ByteSize(b))).unwrap_or_default(),
        ByteSize(*reserve),
        ByteSize(*free)
    )]
    TooLittle {
        dir: std::path::PathBuf,
        need: u64,
        download: u64,
        running: u64,
        /// The new binary's copy beside the running one, when both are on that disk.
        beside: Option<u64>,
        reserve: u64,
        free: u64,
    },
    #[error(
        "too little free disk in {}: the new binary needs {} beside the running one and {} is free",
        dir.display(),
        ByteSize(*size),
        ByteSize(*free)
    )]
    TooLittleBeside {
        dir: std::path::PathBuf,
        size: u64,
        free: u64,
    },
}

fn remove_incoming(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("incoming-") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Why an offer was not taken: refused for good (told to the hub), tried and undone (its
/// stack images did not become healthy), or cut off (asked again).
pub(super) enum Failure {
    Refused(String),
    RolledBack(String),
    Transfer(anyhow::Error),
}

/// What to download of a release.
#[derive(Clone, Copy)]
enum Part {
    Binary,
    Images,
}

/// A release downloaded and checked: the binary, and the image bundle with the services it
/// moves, when the release has one that moves any here.
struct Prepared {
    candidate: Candidate,
    images: Option<(crate::config::StackConfig, PathBuf, super::images::Moves)>,
}

struct Offer {
    manifest: Manifest,
    signature: String,
    rollout: u64,
}

/// One long-poll check: the hub's offer, or none.
async fn check(conn: &Connection) -> anyhow::Result<Option<Offer>> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    let version = crate::release::version().to_string();
    write_frame(&mut send, &Frame::UpdateCheck { version }, &mut out).await?;
    send.finish()?;
    let answer = tokio::time::timeout(CHECK_TIMEOUT, read_frame(&mut recv, &mut buf))
        .await
        .map_err(|_| anyhow!("the hub did not answer an update check"))??;
    match answer {
        Some(Frame::UpdateOffer {
            version,
            size,
            sha256,
            signature,
            rollout,
            images,
        }) => Ok(Some(Offer {
            manifest: Manifest {
                version,
                size,
                sha256,
                images,
            },
            signature,
            rollout,
        })),
        Some(Frame::UpdateNone) => Ok(None),
        Some(Frame::Refuse { message, .. }) => bail!("the hub refused an update check: {message}"),
        Some(other) => bail!(
            "unexpected {} frame answering an update check",
            crate::replication::session::frame_name(&other)
        ),
        None => bail!("the hub closed an update check without an answer"),
    }
}

/// Downloads `m`'s binary (or image bundle) into `dir` and checks it against the manifest;
/// returns its path. Bytes that are not the signed release are a refusal; a cut transfer is not.
async fn download(
    conn: &Connection,
    dir: &Path,
    m: &Manifest,
    what: Part,
) -> Result<PathBuf, Failure> {
    let (name, size, sha256) = match (what, &m.images) {
        (Part::Binary, _) => (format!("incoming-{}", m.version), m.size, &m.sha256),
        (Part::Images, Some(i)) => (format!("incoming-{}.images", m.version), i.size, &i.sha256),
        (Part::Images, None) => unreachable!("only a release with images downloads them"),
    };
    let part = dir.join(format!("{name}.part"));
    let done = dir.join(name);
    let transfer = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        let (version, offset) = (m.version.clone(), 0);
        let get = match what {
            Part::Binary => Frame::UpdateGet { version, offset },
            Part::Images => Frame::UpdateImagesGet { version, offset },
        };
        write_frame(&mut send, &get, &mut out).await?;
        send.finish()?;
        let mut file = tokio::fs::File::create(&part)
            .await
            .with_context(|| format!("creating {}", part.display()))?;
        crate::replication::transfer::receive_file(&mut recv, &mut buf, &mut file, 0, size).await
    };
    let got = match transfer.await {
        Ok(n) => n,
        Err(e) => {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(Failure::Transfer(e));
        }
    };
    let (got_size, got_sha256) = crate::replication::transfer::digest(&part)
        .await
        .map_err(Failure::Transfer)?;
    if got != size || got_size != size || &got_sha256 != sha256 {
        let _ = tokio::fs::remove_file(&part).await;
        return Err(Failure::Refused(format!(
            "the bytes received ({got_size} bytes, sha256 {got_sha256}) are not the signed release ({size} bytes, sha256 {sha256})"
        )));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = match what {
        Part::Binary => 0o755,
        Part::Images => 0o600,
    };
    let finish = async {
        tokio::fs::set_permissions(&part, std::fs::Permissions::from_mode(mode)).await?;
        tokio::fs::rename(&part, &done).await
    };
    finish
        .await
        .map_err(|e| Failure::Transfer(anyhow::Error::new(e).context("keeping the download")))?;
    Ok(done)
}

/// Sends `outcome` to the hub and waits until it is noted.
async fn report(conn: &Connection, outcome: &Outcome) -> anyhow::Result<()> {
    let (mut send, mut recv) = conn.open_bi().await?;
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    let frame = Frame::UpdateReport {
        version: outcome.version.clone(),
        rollout: outcome.rollout,
        outcome: outcome.outcome.clone(),
        reason: outcome.reason.clone(),
    };
    write_frame(&mut send, &frame, &mut out).await?;
    send.finish()?;
    match tokio::time::timeout(CHECK_TIMEOUT, read_frame(&mut recv, &mut buf)).await {
        Ok(Ok(Some(Frame::UpdateNoted))) => Ok(()),
        Ok(Ok(other)) => bail!("the hub did not note the update report: {other:?}"),
        Ok(Err(e)) => Err(e),
        Err(_) => bail!("the hub did not note the update report in time"),
    }
}
