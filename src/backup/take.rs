//! Taking a backup: the database dumped and counted, the filestore and the plant's
//! configuration (without secrets) packed with a manifest, checked, and stored.

use super::*;

/// Takes a backup of the running stack (with a copy of the config file the daemon was
/// started from, if it was). Returns it as listed.
pub async fn take(config: &PlantConfig) -> anyhow::Result<Listed> {
    take_under(config, None).await
}

/// [`take`], under the backup lock the caller holds (`held`), or under its own.
pub(super) async fn take_under(
    config: &PlantConfig,
    held: Option<&Held>,
) -> anyhow::Result<Listed> {
    let live = live(config).await?;
    let spec = &live.spec;
    let db = spec.odoo_database.clone();
    let id = new_id()?;
    let backups = dir(&config.data_dir);
    crate::fsutil::create_private_dir(&backups)?;
    let _lock = match held {
        Some(_) => None,
        None => Some(lock(&backups)?),
    };
    remove_leftovers(&backups);
    progress::phase("checking free space", None);
    check_space(&live, &db, &backups, config.journal.min_free_bytes).await?;
    let work = backups.join(format!(".{id}.parts"));
    crate::fsutil::create_private_dir(&work)?;
    let result = take_into(&live, &db, &id, &work, config).await;
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// Refuses a backup that could fill the disk: the parts and then the archive are written
/// beside each other, and the journal (usually on the same file system) keeps its reserve.
/// The estimate is the database's size (indexes included, which a dump leaves out) plus
/// twice the filestore's: generous, never short.
pub(super) async fn check_space(
    live: &Live,
    db: &str,
    backups: &Path,
    reserve: u64,
) -> anyhow::Result<()> {
    let pg = connect(live, db).await?;
    let database: i64 = pg
        .client
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .context("reading the database's size")?
        .get(0);
    pg.close().await;
    let files = filestore_bytes(live, db).await?;
    let need = (database.max(0) as u64)
        .saturating_add(files.saturating_mul(2))
        .saturating_add(reserve);
    let stat = rustix::fs::statvfs(backups)
        .with_context(|| format!("reading the free space of {}", backups.display()))?;
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if free < need {
        let size = |n: u64| bytesize::ByteSize(n).to_string();
        bail!(
            "not enough free space for a backup in {}: {} free, about {} needed (database {}, filestore {} twice: the parts, then the archive; and the journal's reserve {}); free some, or delete old backups (`plantd backup list`). Nothing was written",
            backups.display(),
            size(free),
            size(need),
            size(database.max(0) as u64),
            size(files),
            size(reserve)
        );
    }
    Ok(())
}

/// The filestore's bytes (what its tar will about hold); 0 when it has none yet.
async fn filestore_bytes(live: &Live, db: &str) -> anyhow::Result<u64> {
    let mut du = Vec::new();
    let script = format!("du -sb /var/lib/odoo/filestore/{db} 2>/dev/null || echo 0");
    live.engine
        .exec(
            &live.spec.get(Service::Odoo).container,
            &["sh", "-c", &script],
            None,
            &mut du,
        )
        .await
        .map_err(|e| anyhow!("measuring Odoo's filestore: {e}"))?;
    Ok(String::from_utf8_lossy(&du)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0))
}

/// The filestore's size for the progress of its packing, when known.
async fn filestore_size(live: &Live, db: &str) -> Option<u64> {
    filestore_bytes(live, db).await.ok().filter(|n| *n > 0)
}

pub(super) async fn take_into(
    live: &Live,
    db: &str,
    id: &str,
    work: &Path,
    config: &PlantConfig,
) -> anyhow::Result<Listed> {
    let spec = &live.spec;
    // Before the snapshot: whatever the apply committed in Odoo up to this cursor is in it.
    // A journal that cannot be read does not cost the plant its backup: the manifest then
    // records no cursor, and a restore of it says so.
    let apply = applied_at(&config.data_dir).unwrap_or_else(|e| {
        tracing::warn!(error = %format!("{e:#}"), "the backup records no apply cursor");
        None
    });
    // One snapshot for the counts and the dump, so that verify can compare them exactly.
    let pg = connect(live, db).await?;
    pg.client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .context("starting the snapshot's transaction")?;
    let snapshot: String = pg
        .client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .context("exporting the snapshot")?
        .get(0);
    let postgres_version: String = pg
        .client
        .query_one("SHOW server_version", &[])
        .await
        .context("reading PostgreSQL's version")?
        .get(0);
    let tables = count_tables(&pg.client).await?;
    let (odoo_version, modules) = odoo_modules(&pg.client).await;

    let mut parts = Vec::new();
    progress::phase("dumping the database", None);
    let mut dump = HashingFile::create(&work.join("db.dump")).await?;
    let pg_container = &spec.get(Service::Postgres).container;
    let snapshot_arg = format!("--snapshot={snapshot}");
    live.engine
        .exec(
            pg_container,
            &["pg_dump", "-U", DB_USER, "-Fc", &snapshot_arg, "-d", db],
            None,
            &mut dump,
        )
        .await
        .map_err(|e| anyhow!("dumping the database: {e}"))?;
    parts.push(dump.finish("db.dump").await?);
    pg.client
        .batch_execute("COMMIT")
        .await
        .context("ending the snapshot's transaction")?;
    pg.close().await;

    progress::phase("packing the filestore", filestore_size(live, db).await);
    let mut filestore = HashingFile::create(&work.join("filestore.tar")).await?;
    let script = format!(
        "cd /var/lib/odoo && if [ -d filestore/{db} ]; then exec tar -cf - filestore/{db}; else exec tar -cf - -T /dev/null; fi"
    );
    live.engine
        .exec(
            &spec.get(Service::Odoo).container,
            &["sh", "-c", &script],
            None,
            &mut filestore,
        )
        .await
        .map_err(|e| anyhow!("reading Odoo's filestore: {e}"))?;
    parts.push(filestore.finish("filestore.tar").await?);

    let mut configs = vec![("config/odoo.conf", without_passwords(&spec.odoo_conf.1))];
    if let Some(source) = &config.source {
        let text = std::fs::read_to_string(source)
            .with_context(|| format!("reading {}", source.display()))?;
        configs.push(("config/plant.toml", plant_toml_without_env(&text)));
    }
    for (name, text) in &configs {
        let path = work.join(name.replace('/', "_"));
        let mut f = HashingFile::create(&path).await?;
        tokio::io::AsyncWriteExt::write_all(&mut f, text.as_bytes()).await?;
        parts.push(f.finish(name).await?);
    }

    let manifest = Manifest {
        format: FORMAT,
        id: id.to_string(),
        plant: spec.name.clone(),
        created_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)?,
        database: db.to_string(),
        postgres_version,
        odoo_version,
        modules,
        odoo_server: odoo_server(live).await,
        imported_from: None,
        apply,
        tables,
        parts,
    };
    store(config, work, manifest).await
}

/// Packs the parts in `work` with `manifest` into the backup directory (encrypted when
/// `backup.encrypt_to` says so); returns the backup as listed.
pub(super) async fn store(
    config: &PlantConfig,
    work: &Path,
    manifest: Manifest,
) -> anyhow::Result<Listed> {
    let id = manifest.id.clone();
    let id = id.as_str();
    let recipients = archive::recipients(&config.data_dir, &config.backup.encrypt_to)?;
    let encrypted = !recipients.is_empty();
    let target = archive_path(&config.data_dir, id, encrypted);
    let work = work.to_path_buf();
    let manifest_copy = manifest.clone();
    let target_copy = target.clone();
    progress::phase(
        if encrypted {
            "writing and encrypting the archive"
        } else {
            "writing the archive"
        },
        None,
    );
    tokio::task::spawn_blocking(move || pack(&work, &manifest_copy, &target_copy, &recipients))
        .await
        .context("packing the archive")??;
    Ok(Listed {
        id: id.to_string(),
        size: std::fs::metadata(&target)?.len(),
        path: target,
        created_at: manifest.created_at,
        verified: false,
        encrypted,
        offsite: false,
        unreadable: None,
    })
}

/// Odoo's answer to `common.version` (its server version and version_info), if it answers.
pub(super) async fn odoo_server(live: &Live) -> Option<serde_json::Value> {
    let ip = live
        .engine
        .address(&live.spec, &live.spec.get(Service::Odoo).container)
        .await
        .ok()?;
    let http = crate::stack::probe::http_client().ok()?;
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "call",
        "params": {"service": "common", "method": "version", "args": []}});
    let answer: serde_json::Value = http
        .post(format!(
            "http://{}/jsonrpc",
            std::net::SocketAddr::new(ip, 8069)
        ))
        .json(&body)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    answer.get("result").filter(|r| r.is_object()).cloned()
}

/// `base`'s version and the installed modules, when Odoo's module table is there.
pub(super) async fn odoo_modules(
    client: &tokio_postgres::Client,
) -> (Option<String>, Option<BTreeMap<String, String>>) {
    // Asked first, so that no failing statement aborts the snapshot's transaction.
    if client.query(PIN_SEARCH_PATH, &[]).await.is_err() {
        return (None, None);
    }
    let odoo = client
        .query_one(
            "SELECT pg_catalog.to_regclass('public.ir_module_module') IS NOT NULL",
            &[],
        )
        .await
        .is_ok_and(|r| r.get::<_, bool>(0));
    if !odoo {
        // Not Odoo's schema (the emulator's, say).
        return (None, None);
    }
    let Ok(rows) = client.query(ODOO_MODULES, &[]).await else {
        return (None, None);
    };
    modules_of(
        rows.iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, Option<String>>(1))),
    )
}

/// `base`'s version, and every module with its version.
pub(super) fn modules_of(
    rows: impl Iterator<Item = (String, Option<String>)>,
) -> (Option<String>, Option<BTreeMap<String, String>>) {
    let mut version = None;
    let mut modules = BTreeMap::new();
    for (name, v) in rows {
        if name == "base" {
            version = v.clone();
        }
        modules.insert(name, v.unwrap_or_default());
    }
    (version, Some(modules))
}

/// plant.toml with the values of every `[stack.SERVICE.env]` left out: that is where an
/// admin puts an SMTP password or an API key.
pub(super) fn plant_toml_without_env(text: &str) -> String {
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return "# plant.toml did not parse; left out of the backup\n".to_string();
    };
    if let Some(toml::Value::Table(stack)) = table.get_mut("stack") {
        for (_, service) in stack.iter_mut() {
            if let Some(toml::Value::Table(env)) =
                service.as_table_mut().and_then(|s| s.get_mut("env"))
            {
                for (_, v) in env.iter_mut() {
                    *v = toml::Value::String("(left out of backups)".into());
                }
            }
        }
    }
    toml::to_string(&table).unwrap_or_default()
}

pub(super) fn without_passwords(conf: &str) -> String {
    conf.lines()
        .map(|l| match l.split_once('=') {
            Some((k, _)) if k.trim().ends_with("passwd") || k.trim().ends_with("password") => {
                format!("{}= (left out of backups)", k)
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Writes `manifest.json` and the parts into `target` (tar, zstd), under a temporary name.
pub(super) fn pack(
    work: &Path,
    manifest: &Manifest,
    target: &Path,
    recipients: &[age::x25519::Recipient],
) -> anyhow::Result<()> {
    let partial = PathBuf::from(format!("{}.partial", target.display()));
    let result = pack_into(work, manifest, &partial, target, recipients)
        .with_context(|| format!("writing {}", target.display()));
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

pub(super) fn pack_into(
    work: &Path,
    manifest: &Manifest,
    partial: &Path,
    target: &Path,
    recipients: &[age::x25519::Recipient],
) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // The archive holds the whole database: readable by root only.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(partial)?;
    let mut encoder = zstd::Encoder::new(archive::Sink::new(file, recipients)?, 3)?;
    encoder.include_checksum(true)?;
    let mut tar = tar::Builder::new(encoder);
    let json = serde_json::to_vec_pretty(manifest)?;
    append(&mut tar, "manifest.json", json.len() as u64, &mut &json[..])?;
    for part in &manifest.parts {
        let mut f = std::fs::File::open(work.join(part.name.replace('/', "_")))?;
        append(&mut tar, &part.name, part.size, &mut f)?;
    }
    let file = tar.into_inner()?.finish()?.finish()?;
    file.sync_all()?;
    std::fs::rename(partial, target)?;
    if let Some(parent) = target.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Counts what goes through it.
pub(super) struct Counting<'a>(&'a mut dyn Read, u64);

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1 += n as u64;
        Ok(n)
    }
}

pub(super) fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: &mut dyn Read,
) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    header.set_cksum();
    let mut limited = data.take(size);
    let mut counting = Counting(&mut limited, 0);
    tar.append_data(&mut header, name, &mut counting)
        .with_context(|| format!("adding {name} to the archive"))?;
    if counting.1 != size {
        bail!(
            "{name}: {} bytes on disk where {size} were written",
            counting.1
        );
    }
    Ok(())
}
