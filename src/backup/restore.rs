//! `plantd backup restore ID`: puts a backup's database and filestore in place of the running
//! ones, with Odoo down for as short as it can be, and never leaves the plant without its data.
//!
//! The order, and why:
//! 1. The archive is checked (every part against the manifest, the filestore's entry names)
//!    before anything changes; a refused archive changes nothing.
//! 2. A safety backup of the current data is taken (kept like any other backup).
//! 3. While Odoo still serves, the dump is restored into a staging database, whose row counts
//!    must equal the manifest's, and the filestore is unpacked into a staging directory in
//!    Odoo's volume. A dump that `pg_restore` rejects fails here: Odoo never stopped.
//! 4. Odoo is held (stopped, and kept stopped by the supervisor: through the daemon when it
//!    runs, else straight through Docker with the same marker file), the current database and
//!    filestore are renamed aside and the staged ones renamed in, and Odoo is released.
//! 5. Odoo must answer its health probe within the deadline. If it does not, the renames are
//!    undone (the data it had before is back, not a copy of it) and the restore fails; if it
//!    does, the previous database and filestore are dropped. The safety backup stays, in case
//!    the restored data proves wrong later.
//!
//! Renaming instead of restoring the safety backup on failure is faster, and cannot itself
//! fail halfway through a `pg_restore`.
//!
//! The local apply's cursor goes back with the data (design, invariant 9): right after the
//! swap, while Odoo is still held (so the apply cannot put a later transaction into the
//! restored data first), the cursor moves back to the applied seq the backup's manifest
//! recorded, through the daemon's apply ([`crate::apply::Applier::rewind`]) or, with no daemon
//! running, in the journal and `apply.json` directly. What was applied after the backup is then
//! applied again, in order; creates look for their external ids first, so a record the
//! restored data already holds is not made twice. A backup with no applied seq:
//! - an imported Odoo database (`backup import`) never saw this journal: the cursor goes back
//!   to 0 and everything the journal still holds is applied again, which external ids make
//!   safe (writes set their fields again, in order; actions run only on records not done yet);
//! - one taken with another journal (a replaced `journal.db`): the same, its seqs are not ours;
//! - one taken before plantd recorded it: the cursor stays, and the answer says so and what
//!   to run (`plantd apply rewind SEQ`) when the backup is older than what was applied.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use super::archive::{Archive, Keys};
use super::{feed, lock, Live, Manifest};
use crate::config::PlantConfig;
use crate::stack::spec::Service;
use crate::stack::{hold_marker, probe};

mod cursor;

use cursor::rewind_apply;
#[cfg(test)]
use cursor::rewind_target;
pub use cursor::{ApplyCursor, RewindError};

/// A shell script in Odoo's container failed: the container engine's message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ShellError(String);

/// The per-restore names: the staging and previous databases, and the staging and previous
/// filestore directories in Odoo's volume (`/var/lib/odoo`), all suffixed alike so that
/// nothing of one restore is mistaken for another's.
struct Names {
    staging_db: String,
    previous_db: String,
    staged_dir: String,
    previous_dir: String,
}

impl Names {
    fn new(suffix: &str) -> Names {
        Names {
            staging_db: format!("plantd_restore_{suffix}"),
            previous_db: format!("plantd_previous_{suffix}"),
            staged_dir: format!(".plantd-restore-{suffix}"),
            previous_dir: format!(".plantd-previous-{suffix}"),
        }
    }
}

/// How far the swap got, so that undoing it undoes only what was done.
#[derive(Debug, Default)]
struct Swapped {
    /// The current database is renamed to `previous_db`.
    db_aside: bool,
    /// The staged database is renamed to the live name.
    db_in: bool,
    /// The filestores are exchanged.
    files: bool,
}

/// What a restore did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Restored {
    pub id: String,
    /// The backup of the data that was replaced.
    pub safety_backup: String,
    pub database: String,
    pub tables: usize,
    /// Seconds Odoo was down.
    pub odoo_down_s: f64,
    /// What became of the local apply's cursor.
    pub apply: ApplyCursor,
}

/// The running daemon, as a restore needs it. `plantd backup restore` reaches it over the
/// control socket; the admin UI, inside the daemon, directly, so that the audit log names the
/// admin who asked (`control::Daemon` implements both).
pub trait Daemon: Sync {
    /// Whether a daemon runs and supervises the stack (`Ok(false)` when none runs).
    fn supervises_stack(&self) -> impl Future<Output = anyhow::Result<bool>> + Send;
    /// Holds Odoo (stopped, and not started again) for `reason`, or releases it (`None`).
    fn hold_odoo(&self, reason: Option<String>) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Moves the apply cursor back to `seq`: what was rewound and the applied seq after it, or
    /// `Ok(None)` when no daemon runs.
    fn rewind_apply(
        &self,
        seq: u64,
        backup: Option<String>,
        why: String,
    ) -> impl Future<Output = Result<Option<(Option<crate::apply::Rewound>, u64)>, RewindError>> + Send;
}

/// Stops and starts Odoo so that nothing starts it meanwhile.
enum Gate<'d, D> {
    /// The daemon supervises the stack: it holds Odoo.
    Daemon(&'d D),
    /// No daemon: plantd stops and starts the container itself, and leaves the same marker a
    /// daemon would honour if it started meanwhile.
    Direct,
}

const HOLD_REASON: &str = "a backup is being restored (`plantd backup restore`)";

impl<'d, D: Daemon> Gate<'d, D> {
    async fn find(daemon: &'d D) -> anyhow::Result<Gate<'d, D>> {
        // A daemon without a stack does not start Odoo.
        Ok(if daemon.supervises_stack().await? {
            Gate::Daemon(daemon)
        } else {
            Gate::Direct
        })
    }

    async fn set(&self, live: &Live, hold: bool) -> anyhow::Result<()> {
        let odoo = &live.spec.get(Service::Odoo).container;
        match self {
            Gate::Daemon(daemon) => {
                daemon
                    .hold_odoo(hold.then(|| HOLD_REASON.to_string()))
                    .await
            }
            Gate::Direct => {
                let marker = hold_marker(&live.spec.dir, Service::Odoo);
                if hold {
                    crate::fsutil::write_atomic(&marker, HOLD_REASON.as_bytes(), 0o600)?;
                    live.engine.stop(odoo).await.map_err(|e| anyhow!("{e}"))
                } else {
                    live.engine.start(odoo).await.map_err(|e| anyhow!("{e}"))?;
                    match std::fs::remove_file(&marker) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            Err(e).with_context(|| format!("removing {}", marker.display()))
                        }
                        _ => Ok(()),
                    }
                }
            }
        }
    }
}

/// Database and directory names go into SQL identifiers and a shell script: only these.
fn plain_name(what: &str, name: &str) -> anyhow::Result<()> {
    if name.is_empty()
        || name.len() > 63
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        || name.starts_with('.')
    {
        bail!("{what} {name:?} is not a plain database name (letters, digits, '_', '-', '.')");
    }
    Ok(())
}

pub async fn restore(
    config: &PlantConfig,
    id: &str,
    keys: &Keys,
    health_deadline: Duration,
    daemon: &impl Daemon,
) -> anyhow::Result<Restored> {
    let archive = super::find(&config.data_dir, id, keys)?;
    super::progress::phase("checking the archive's checksums", None);
    let manifest = super::checked(&archive)
        .await
        .with_context(|| format!("backup {id} is refused; nothing was changed"))?;
    plain_name("the backup's database", &manifest.database)?;
    let live = super::live(config).await?;
    let db = live.spec.odoo_database.clone();
    plain_name("stack.odoo.database", &db)?;
    {
        let _lock = lock(&super::dir(&config.data_dir))?;
        let admin = super::admin(&live).await?;
        let previous: Vec<String> = admin
            .client
            .query(
                "SELECT datname::text FROM pg_database WHERE datname LIKE 'plantd\\_previous\\_%' ORDER BY 1",
                &[],
            )
            .await
            .context("listing databases")?
            .iter()
            .map(|r| r.get(0))
            .collect();
        admin.close().await;
        if !previous.is_empty() {
            bail!(
                "an earlier restore that did not finish left {} (the data it replaced); look at it, drop it when it is not needed (DROP DATABASE), then restore again. Nothing was changed",
                previous.join(", ")
            );
        }
    }

    let safety = super::progress::section("safety backup of the current data", super::take(config))
        .await
        .context("taking the safety backup of the current data; nothing was changed")?;
    tracing::info!(id = %safety.id, "safety backup taken before the restore");

    let _lock = lock(&super::dir(&config.data_dir))?;
    let names = Names::new(&crate::digest::random_hex(6)?);
    let admin = super::admin(&live).await?;
    super::sweep_scratch(&admin).await;
    admin
        .client
        .batch_execute(&format!("CREATE DATABASE \"{}\"", names.staging_db))
        .await
        .context("creating the staging database")?;
    super::progress::phase("restoring into a staging database", None);
    let staged = stage(&live, &archive, &names, &manifest).await;
    admin.close().await;
    if let Err(e) = staged {
        unstage(&live, &names).await;
        return Err(e.context("nothing was changed; Odoo kept running on its data"));
    }

    // Asked now, not at the start: a daemon may have started or stopped meanwhile.
    let gate = Gate::find(daemon).await?;
    super::progress::phase("switching Odoo to the restored data", None);
    let down = Instant::now();
    if let Err(e) = gate.set(&live, true).await {
        let _ = gate.set(&live, false).await;
        unstage(&live, &names).await;
        return Err(e.context("stopping Odoo; nothing was changed"));
    }
    let mut swapped = Swapped::default();
    let result = swap_in(&live, &db, &names, &manifest.database, &mut swapped).await;
    // Still held: the apply cannot put a later transaction into the restored data before its
    // cursor has gone back.
    let rewound = match &result {
        Ok(()) => Some(rewind_apply(config, &manifest, id, daemon).await),
        Err(_) => None,
    };
    let judged = match result {
        Ok(()) => match gate.set(&live, false).await {
            Ok(()) => healthy(&live, &db, health_deadline).await,
            Err(e) => Err(e.context("starting Odoo")),
        },
        Err(e) => Err(e),
    };
    let odoo_down_s = down.elapsed().as_secs_f64();
    if let Err(e) = judged {
        // A cursor moved back over the data that is now back in place is harmless: what is
        // applied again is found there by external id.
        let e = match &rewound {
            Some(Ok(ApplyCursor {
                rewound: Some(r), ..
            })) => e.context(format!(
                "the apply cursor had gone back to seq {}: those transactions are applied again, and creates find their records",
                r.to
            )),
            _ => e,
        };
        return match swap_back(&live, &gate, &db, &names, &swapped, health_deadline).await {
            Ok(()) => Err(e.context("the restore failed, and Odoo is back on the data it had before")),
            Err(back) => Err(anyhow!(
                "the restore failed ({e:#}), and putting the previous data back failed too ({back:#}). Where the data is: the database that was live is {} if it is not {db} any more, its filestore /var/lib/odoo/{}/{db} in Odoo's volume if it is not in filestore/ any more; the safety backup {} holds it as of before the restore. Odoo may still be held: `plantd stack release odoo`",
                names.previous_db,
                names.previous_dir,
                safety.id
            )),
        };
    }
    // Healthy on the restored data: the previous copies go.
    match super::admin(&live).await {
        Ok(admin) => {
            let dropped = admin
                .client
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS \"{}\"",
                    names.previous_db
                ))
                .await;
            if let Err(e) = dropped {
                tracing::warn!(error = %e, database = %names.previous_db, "could not drop the previous database");
            }
            admin.close().await;
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), database = %names.previous_db, "could not drop the previous database")
        }
    }
    let script = format!("rm -rf /var/lib/odoo/{}", names.previous_dir);
    if let Err(e) = sh_in_odoo(&live, &script).await {
        tracing::warn!(error = %e, "could not remove the previous filestore");
    }
    let apply = match rewound.expect("the swap succeeded") {
        Ok(apply) => apply,
        Err(e) => bail!(
            "backup {id} is restored (Odoo is healthy on it; the safety backup {} holds the data it replaced), but moving the apply cursor back failed: {e}",
            safety.id
        ),
    };
    Ok(Restored {
        id: id.to_string(),
        safety_backup: safety.id,
        database: db,
        tables: manifest.tables.len(),
        odoo_down_s,
        apply,
    })
}

/// Drops the staging database and removes the staged files (best effort: the next restore's
/// sweep drops a staging database this leaves).
async fn unstage(live: &Live, names: &Names) {
    if let Ok(admin) = super::admin(live).await {
        let _ = admin
            .client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\"", names.staging_db))
            .await;
        admin.close().await;
    }
    let _ = sh_in_odoo(live, &format!("rm -rf /var/lib/odoo/{}", names.staged_dir)).await;
}

/// Runs a shell script in the running Odoo container.
async fn sh_in_odoo(live: &Live, script: &str) -> Result<(), ShellError> {
    let odoo = &live.spec.get(Service::Odoo).container;
    let mut sink = tokio::io::sink();
    live.engine
        .exec(odoo, &["sh", "-c", script], None, &mut sink)
        .await
        .map_err(|e| ShellError(e.to_string()))
}

/// Runs a shell script in a one-off container made like Odoo's (its image and volumes),
/// for when Odoo itself is stopped; `what` names the work in the error.
async fn sh_beside_odoo(live: &Live, script: String, what: &str) -> anyhow::Result<()> {
    live.engine
        .run_once(
            &live.spec,
            live.spec.get(Service::Odoo),
            vec!["sh".into(), "-c".into(), script],
            Duration::from_secs(300),
        )
        .await
        .map_err(|e| anyhow!("{what}: {e}"))
}

/// Restores the dump into the staging database (row counts checked) and unpacks the
/// filestore beside Odoo's, both while Odoo runs. Refuses when an earlier restore's set-aside
/// filestore is still there.
async fn stage(
    live: &Live,
    archive: &Archive,
    names: &Names,
    manifest: &Manifest,
) -> anyhow::Result<()> {
    super::restore_and_count(live, archive, &names.staging_db, manifest).await?;
    let (mut reader, feeder) = feed(archive, "filestore.tar");
    let staged = &names.staged_dir;
    let script = format!(
        "cd /var/lib/odoo || exit 1; \
         for d in .plantd-previous-*; do if [ -e \"$d\" ]; then echo \"an earlier restore that did not finish left /var/lib/odoo/$d (the filestore it replaced) in Odoo's volume; look at it and remove it, then restore again\" >&2; exit 3; fi; done; \
         rm -rf {staged} && mkdir -p {staged} && exec tar -xf - -C {staged}"
    );
    let mut sink = tokio::io::sink();
    let unpacked = live
        .engine
        .exec(
            &live.spec.get(Service::Odoo).container,
            &["sh", "-c", &script],
            Some(&mut reader),
            &mut sink,
        )
        .await;
    drop(reader);
    let fed = feeder
        .await
        .context("reading filestore.tar from the archive")?;
    unpacked.map_err(|e| anyhow!("unpacking the filestore into Odoo's volume: {e}"))?;
    fed.context("reading filestore.tar from the archive")
}

/// With Odoo stopped: the current database and filestore aside, the staged ones in.
/// `swapped` records each step as it is done.
async fn swap_in(
    live: &Live,
    db: &str,
    names: &Names,
    source_db: &str,
    swapped: &mut Swapped,
) -> anyhow::Result<()> {
    // A fresh connection: the one used for staging may be long gone.
    let admin = super::admin(live).await?;
    let renamed = async {
        rename_database(&admin, db, &names.previous_db, true).await?;
        swapped.db_aside = true;
        rename_database(&admin, &names.staging_db, db, true).await?;
        swapped.db_in = true;
        anyhow::Ok(())
    }
    .await;
    admin.close().await;
    renamed?;
    let (staged, previous) = (&names.staged_dir, &names.previous_dir);
    // `.none` says there was no filestore to set aside, so undoing removes the restored one.
    let script = format!(
        "set -e; cd /var/lib/odoo; mkdir -p {previous} filestore; \
         if [ -e filestore/{db} ]; then mv filestore/{db} {previous}/{db}; else touch {previous}/.none; fi; \
         if [ -d {staged}/filestore/{source_db} ]; then mv {staged}/filestore/{source_db} filestore/{db}; fi; \
         rm -rf {staged}"
    );
    sh_beside_odoo(live, script, "moving the filestore into place").await?;
    swapped.files = true;
    Ok(())
}

/// Undoes what [`swap_in`] did after a failure: Odoo held, the previous database and
/// filestore back, Odoo released and healthy again.
async fn swap_back(
    live: &Live,
    gate: &Gate<'_, impl Daemon>,
    db: &str,
    names: &Names,
    swapped: &Swapped,
    deadline: Duration,
) -> anyhow::Result<()> {
    gate.set(live, true).await.context("stopping Odoo")?;
    let admin = super::admin(live).await?;
    let renamed = async {
        if swapped.db_in {
            rename_database(&admin, db, &names.staging_db, true).await?;
        }
        if swapped.db_aside {
            rename_database(&admin, &names.previous_db, db, true).await?;
        }
        let _ = admin
            .client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{}\"", names.staging_db))
            .await;
        anyhow::Ok(())
    }
    .await;
    admin.close().await;
    renamed?;
    // The set-aside directory is this restore's own, so its presence says the swap got there,
    // whatever `swapped.files` says (the script may have failed after its first move).
    let (staged, previous) = (&names.staged_dir, &names.previous_dir);
    let script = format!(
        "set -e; cd /var/lib/odoo; \
         if [ -e {previous}/{db} ]; then rm -rf filestore/{db}; mv {previous}/{db} filestore/{db}; \
         elif [ -e {previous}/.none ]; then rm -rf filestore/{db}; fi; \
         rm -rf {previous} {staged}"
    );
    sh_beside_odoo(live, script, "moving the previous filestore back").await?;
    gate.set(live, false).await.context("starting Odoo")?;
    healthy(live, db, deadline).await
}

/// Renames a database; with `disconnect`, ends the sessions on it first (Odoo is stopped,
/// but a cron or a report tool may still hold one).
async fn rename_database(
    admin: &crate::stack::probe::Pg,
    from: &str,
    to: &str,
    disconnect: bool,
) -> anyhow::Result<()> {
    let mut last = None;
    for _ in 0..10 {
        if disconnect {
            admin
                .client
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&from],
                )
                .await
                .with_context(|| format!("ending the sessions on database {from}"))?;
        }
        match admin
            .client
            .batch_execute(&format!("ALTER DATABASE \"{from}\" RENAME TO \"{to}\""))
            .await
        {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(anyhow!(
        "renaming database {from} to {to}: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// Waits until Odoo answers its health probe and serves database `db`: `/web/login?db=DB`
/// loads the database's registry, which a database Odoo cannot use fails.
async fn healthy(live: &Live, db: &str, deadline: Duration) -> anyhow::Result<()> {
    let http = probe::http_client()?;
    let start = Instant::now();
    let container = &live.spec.get(Service::Odoo).container;
    let mut last = String::from("no answer yet");
    while start.elapsed() < deadline {
        match live.engine.address(&live.spec, container).await {
            Ok(ip) => {
                let probed = probe::probe(
                    Service::Odoo,
                    ip,
                    &live.spec.secrets,
                    &http,
                    Duration::from_secs(3),
                )
                .await;
                match probed {
                    Ok(()) => {
                        let url = format!(
                            "http://{}/web/login?db={db}",
                            std::net::SocketAddr::new(ip, 8069)
                        );
                        match http.get(&url).timeout(Duration::from_secs(30)).send().await {
                            Ok(r) if r.status().is_success() => return Ok(()),
                            Ok(r) => {
                                last = format!(
                                    "/web/login?db={db} answered {}: Odoo cannot load the database",
                                    r.status()
                                )
                            }
                            Err(e) => last = format!("/web/login?db={db}: {e}"),
                        }
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!(
        "Odoo was not healthy within {} s after the restore: {last}",
        deadline.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::AppliedAt;

    fn manifest(apply: Option<AppliedAt>, imported_from: Option<&str>) -> Manifest {
        Manifest {
            format: 1,
            id: "b1".into(),
            plant: "lyon".into(),
            created_at: "2026-11-28T02:00:00Z".into(),
            database: "odoo".into(),
            postgres_version: "15".into(),
            odoo_version: None,
            modules: None,
            odoo_server: None,
            imported_from: imported_from.map(str::to_string),
            apply,
            tables: Default::default(),
            parts: Vec::new(),
        }
    }

    #[test]
    fn the_cursor_goes_back_to_what_the_backup_holds_or_to_0_when_that_is_not_this_journals() {
        let at = |journal: &str, seq| {
            Some(AppliedAt {
                journal_id: journal.into(),
                applied_seq: seq,
                apply_prefix: Some("lyon".into()),
            })
        };
        assert_eq!(
            rewind_target(&manifest(at("j1", 5), None), "b1", "j1")
                .unwrap()
                .0,
            5
        );
        // Another journal's seqs, or an imported database: everything again.
        let (seq, why) = rewind_target(&manifest(at("j0", 5), None), "b1", "j1").unwrap();
        assert_eq!(seq, 0);
        assert!(why.contains("another journal (j0)"), "{why}");
        let (seq, why) = rewind_target(&manifest(None, Some("x.zip")), "b1", "j1").unwrap();
        assert_eq!(seq, 0);
        assert!(why.contains("imported from x.zip"), "{why}");
        // A backup from before the cursor was recorded: unknown, and the way out is said.
        let unknown = rewind_target(&manifest(None, None), "b1", "j1")
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("the applied seq is unknown")
                && unknown.contains("plantd apply rewind SEQ"),
            "{unknown}"
        );
    }
}
