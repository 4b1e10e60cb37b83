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

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use super::archive::{Archive, Keys};
use super::{feed, lock, Live, Manifest};
use crate::config::PlantConfig;
use crate::control::{self, Request, Response};
use crate::stack::spec::Service;
use crate::stack::{hold_marker, probe};

/// Where the staged filestore waits in Odoo's volume (`/var/lib/odoo`).
const STAGED: &str = ".plantd-restore";
/// Where the previous filestore waits until the restore is judged.
const PREVIOUS: &str = ".plantd-previous";

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
}

/// Stops and starts Odoo so that nothing starts it meanwhile.
enum Gate {
    /// The daemon supervises the stack: it holds Odoo.
    Daemon(std::path::PathBuf),
    /// No daemon: plantd stops and starts the container itself, and leaves the same marker a
    /// daemon would honour if it started meanwhile.
    Direct,
}

const HOLD_REASON: &str = "a backup is being restored (`plantd backup restore`)";

impl Gate {
    async fn find(config: &PlantConfig) -> anyhow::Result<Gate> {
        let socket = control::socket_path(&config.data_dir);
        match control::call(&socket, &Request::StackStatus).await {
            Ok(Response::Stack(_)) => Ok(Gate::Daemon(socket)),
            // A daemon without a stack does not start Odoo.
            Ok(_) => Ok(Gate::Direct),
            Err(control::CallError::NotRunning(_)) => Ok(Gate::Direct),
            Err(e) => Err(anyhow!("asking the daemon: {e}")),
        }
    }

    async fn set(&self, live: &Live, hold: bool) -> anyhow::Result<()> {
        let odoo = &live.spec.get(Service::Odoo).container;
        match self {
            Gate::Daemon(socket) => {
                let request = Request::StackHold {
                    service: "odoo".into(),
                    reason: hold.then(|| HOLD_REASON.to_string()),
                };
                match control::call(socket, &request).await {
                    Ok(Response::Done { .. }) => Ok(()),
                    Ok(Response::Error { message }) => bail!("{message}"),
                    Ok(other) => bail!("unexpected answer from the daemon: {other:?}"),
                    Err(e) => bail!("asking the daemon: {e}"),
                }
            }
            Gate::Direct => {
                let marker = hold_marker(&live.spec.dir, Service::Odoo);
                if hold {
                    crate::pki::write_atomic(&marker, HOLD_REASON.as_bytes(), 0o600)?;
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
) -> anyhow::Result<Restored> {
    let archive = super::find(&config.data_dir, id, keys)?;
    let manifest = super::checked(&archive)
        .await
        .with_context(|| format!("backup {id} is refused; nothing was changed"))?;
    plain_name("the backup's database", &manifest.database)?;
    let live = super::live(config).await?;
    let db = live.spec.odoo_database.clone();
    plain_name("stack.odoo.database", &db)?;
    let gate = Gate::find(config).await?;

    let safety = super::take(config)
        .await
        .context("taking the safety backup of the current data; nothing was changed")?;
    tracing::info!(id = %safety.id, "safety backup taken before the restore");

    let _lock = lock(&super::dir(&config.data_dir))?;
    let suffix = super::random_hex(6)?;
    let staging = format!("plantd_restore_{suffix}");
    let previous = format!("plantd_previous_{suffix}");
    let admin = super::admin(&live).await?;
    admin
        .client
        .batch_execute(&format!("CREATE DATABASE \"{staging}\""))
        .await
        .context("creating the staging database")?;
    let staged = stage(&live, &archive, &staging, &manifest).await;
    if let Err(e) = staged {
        let _ = admin
            .client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{staging}\""))
            .await;
        let _ = unstage_files(&live).await;
        admin.close().await;
        return Err(e.context("nothing was changed; Odoo kept running on its data"));
    }

    let down = Instant::now();
    gate.set(&live, true).await.context("stopping Odoo")?;
    let swapped = swap_in(&live, &admin, &db, &staging, &previous, &manifest.database).await;
    let judged = match swapped {
        Ok(()) => match gate.set(&live, false).await {
            Ok(()) => healthy(&live, health_deadline).await,
            Err(e) => Err(e.context("starting Odoo")),
        },
        Err(e) => Err(e),
    };
    let odoo_down_s = down.elapsed().as_secs_f64();
    match judged {
        Ok(()) => {
            let dropped = admin
                .client
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{previous}\""))
                .await;
            if let Err(e) = dropped {
                tracing::warn!(error = %e, database = %previous, "could not drop the previous database");
            }
            let script = format!("rm -rf /var/lib/odoo/{PREVIOUS}");
            let odoo = &live.spec.get(Service::Odoo).container;
            let mut sink = tokio::io::sink();
            if let Err(e) = live
                .engine
                .exec(odoo, &["sh", "-c", &script], None, &mut sink)
                .await
            {
                tracing::warn!(error = %e, "could not remove the previous filestore");
            }
            admin.close().await;
            Ok(Restored {
                id: id.to_string(),
                safety_backup: safety.id,
                database: db,
                tables: manifest.tables.len(),
                odoo_down_s,
            })
        }
        Err(e) => {
            let back = swap_back(
                &live,
                &gate,
                &admin,
                &db,
                &staging,
                &previous,
                health_deadline,
            )
            .await;
            admin.close().await;
            match back {
                Ok(()) => Err(e.context(
                    "the restore failed, and Odoo is back on the data it had before",
                )),
                Err(back) => Err(anyhow!(
                    "the restore failed ({e:#}), and putting the previous data back failed too ({back:#}); the safety backup {} holds it: `plantd backup restore {}`",
                    safety.id,
                    safety.id
                )),
            }
        }
    }
}

/// Restores the dump into `staging` (row counts checked) and unpacks the filestore beside
/// Odoo's, both while Odoo runs.
async fn stage(
    live: &Live,
    archive: &Archive,
    staging: &str,
    manifest: &Manifest,
) -> anyhow::Result<()> {
    super::restore_and_count(live, archive, staging, manifest).await?;
    let (mut reader, feeder) = feed(archive, "filestore.tar");
    let script = format!(
        "rm -rf /var/lib/odoo/{STAGED} && mkdir -p /var/lib/odoo/{STAGED} && exec tar -xf - -C /var/lib/odoo/{STAGED}"
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

async fn unstage_files(live: &Live) -> anyhow::Result<()> {
    let mut sink = tokio::io::sink();
    let script = format!("rm -rf /var/lib/odoo/{STAGED}");
    live.engine
        .exec(
            &live.spec.get(Service::Odoo).container,
            &["sh", "-c", &script],
            None,
            &mut sink,
        )
        .await
        .map_err(|e| anyhow!("{e}"))
}

/// With Odoo stopped: the current database and filestore aside, the staged ones in.
async fn swap_in(
    live: &Live,
    admin: &crate::stack::probe::Pg,
    db: &str,
    staging: &str,
    previous: &str,
    source_db: &str,
) -> anyhow::Result<()> {
    rename_database(admin, db, previous, true).await?;
    if let Err(e) = rename_database(admin, staging, db, false).await {
        let _ = rename_database(admin, previous, db, true).await;
        return Err(e);
    }
    let script = format!(
        "set -e; cd /var/lib/odoo; rm -rf {PREVIOUS}; mkdir -p {PREVIOUS} filestore; \
         if [ -e filestore/{db} ]; then mv filestore/{db} {PREVIOUS}/{db}; fi; \
         if [ -d {STAGED}/filestore/{source_db} ]; then mv {STAGED}/filestore/{source_db} filestore/{db}; fi; \
         rm -rf {STAGED}"
    );
    let odoo = live.spec.get(Service::Odoo);
    live.engine
        .run_once(
            &live.spec,
            odoo,
            vec!["sh".into(), "-c".into(), script],
            Duration::from_secs(300),
        )
        .await
        .map_err(|e| anyhow!("moving the filestore into place: {e}"))
}

/// Undoes [`swap_in`] after a failure: Odoo held, the previous database and filestore back,
/// Odoo released and healthy again.
async fn swap_back(
    live: &Live,
    gate: &Gate,
    admin: &crate::stack::probe::Pg,
    db: &str,
    staging: &str,
    previous: &str,
    deadline: Duration,
) -> anyhow::Result<()> {
    gate.set(live, true).await.context("stopping Odoo")?;
    let exists = |name: String| async move {
        admin
            .client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map(|r| r.is_some())
            .context("listing databases")
    };
    if exists(previous.to_string()).await? {
        if exists(db.to_string()).await? {
            rename_database(admin, db, staging, true).await?;
        }
        rename_database(admin, previous, db, false).await?;
    }
    let _ = admin
        .client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{staging}\""))
        .await;
    let script = format!(
        "set -e; cd /var/lib/odoo; \
         if [ -e {PREVIOUS}/{db} ]; then rm -rf filestore/{db}; mv {PREVIOUS}/{db} filestore/{db}; fi; \
         rm -rf {PREVIOUS} {STAGED}"
    );
    live.engine
        .run_once(
            &live.spec,
            live.spec.get(Service::Odoo),
            vec!["sh".into(), "-c".into(), script],
            Duration::from_secs(300),
        )
        .await
        .map_err(|e| anyhow!("moving the previous filestore back: {e}"))?;
    gate.set(live, false).await.context("starting Odoo")?;
    healthy(live, deadline).await
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

/// Waits until Odoo answers its health probe.
async fn healthy(live: &Live, deadline: Duration) -> anyhow::Result<()> {
    let http = probe::http_client()?;
    let start = Instant::now();
    let container = &live.spec.get(Service::Odoo).container;
    let mut last = String::from("no answer yet");
    while start.elapsed() < deadline {
        match live.engine.address(&live.spec, container).await {
            Ok(ip) => {
                match probe::probe(
                    Service::Odoo,
                    ip,
                    &live.spec.secrets,
                    &http,
                    Duration::from_secs(3),
                )
                .await
                {
                    Ok(()) => return Ok(()),
                    Err(e) => last = e,
                }
            }
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!(
        "Odoo was not healthy within {} s after the restore: {last}",
        deadline.as_secs()
    )
}
