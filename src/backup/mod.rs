//! Backups: one archive per backup, `DATA_DIR/backups/ID.tar.zst`, that standard tools open
//! (`tar --zstd -xf`). Inside: `manifest.json` (ids, versions, table counts, and the size and
//! SHA-256 of each part), `db.dump` (`pg_dump` custom format, taken through `docker exec` in the
//! postgres container from the same snapshot as the counts), `filestore.tar` (Odoo's
//! attachments) and `config/` (plant.toml and Odoo's config, passwords left out).
//!
//! Parts are streamed to files beside the archive, never held whole in memory, then packed;
//! the archive is written under a temporary name and renamed when complete.

use crate::digest::{hex, random_hex, Hashing};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

pub mod archive;
pub mod dump_sql;
pub mod odoo_zip;
pub mod offsite;
pub mod restore;
pub mod sandbox;
pub mod scheduler;

use crate::config::PlantConfig;
use crate::stack::docker::Engine;
use crate::stack::probe::Pg;
use crate::stack::spec::{self, Service, StackSpec, DB_USER};
use archive::Archive;

/// The archive format's version, in the manifest.
const FORMAT: u32 = 1;

/// Counts every row of every table in `public`, in one statement. Every name is qualified,
/// and it runs with `search_path` fixed to `pg_catalog` ([`PIN_SEARCH_PATH`]): a database can
/// define `public.xpath` or `public.format`, or set its own `search_path`, and the query must
/// still call PostgreSQL's own.
const COUNT_TABLES: &str = "SELECT t.table_name::text, (pg_catalog.xpath('/row/c/text()', pg_catalog.query_to_xml(pg_catalog.format('SELECT pg_catalog.count(*) AS c FROM public.%I', t.table_name), false, true, '')))[1]::text::bigint FROM information_schema.tables t WHERE t.table_schema = 'public' AND t.table_type = 'BASE TABLE' ORDER BY 1";

/// Run first on any connection that reads a database's own data: only PostgreSQL's own
/// functions and operators are found by name.
const PIN_SEARCH_PATH: &str = "SELECT pg_catalog.set_config('search_path', 'pg_catalog', false)";

/// `base`'s version and the installed modules, where Odoo's module table is there.
const ODOO_MODULES: &str = "SELECT m.name::text, m.latest_version::text FROM public.ir_module_module m WHERE m.state = 'installed' ORDER BY 1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    /// The stack's name (the plant's, as installed).
    pub plant: String,
    pub created_at: String,
    pub database: String,
    pub postgres_version: String,
    /// `base`'s version in Odoo's module table, where there is one.
    pub odoo_version: Option<String>,
    /// Installed Odoo modules and their versions, where readable.
    pub modules: Option<BTreeMap<String, String>>,
    /// Odoo's own answer to `common.version` when the backup was taken (`server_version`,
    /// `server_version_info`, ...), where it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odoo_server: Option<serde_json::Value>,
    /// The file a backup was imported from (`plantd backup import`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<String>,
    /// How far the plant's local apply had got when the dump was taken. Missing in backups
    /// taken before plantd recorded it, and in imported ones (their Odoo never saw this
    /// journal): a restore then says what it does about the apply cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<AppliedAt>,
    /// Rows per table when the dump was taken (the same snapshot).
    pub tables: BTreeMap<String, i64>,
    pub parts: Vec<Part>,
}

/// The journal's apply cursor as a backup recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppliedAt {
    /// The journal the seqs belong to (a new journal starts its seqs again).
    pub journal_id: String,
    /// The journal's `applied` cursor, read before the dump's snapshot was taken: the dump
    /// holds everything applied up to here (and perhaps a little more, which a restore applies
    /// again without making it twice).
    pub applied_seq: u64,
    /// The `<plant>` of the external ids `plantd.<plant>_<seq>`, once the apply has fixed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply_prefix: Option<String>,
}

/// Where the journal in `data_dir` stands, for a backup's manifest.
fn applied_at(data_dir: &Path) -> anyhow::Result<Option<AppliedAt>> {
    let found = crate::journal::peek_applied(&data_dir.join("journal.db"))
        .context("reading the journal's apply cursor")?;
    Ok(found.map(|(journal_id, applied_seq)| AppliedAt {
        apply_prefix: crate::apply::prefix_of(data_dir, &journal_id),
        journal_id,
        applied_seq,
    }))
}

/// One backup, as `plantd backup list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listed {
    pub id: String,
    pub path: PathBuf,
    pub created_at: String,
    pub size: u64,
    pub verified: bool,
    /// Whether it is age-encrypted (`.tar.zst.age`).
    #[serde(default)]
    pub encrypted: bool,
    /// Whether the hub holds a copy.
    #[serde(default)]
    pub offsite: bool,
    /// Why its manifest could not be read, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
}

pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("backups")
}

/// The archive's file name for `id`.
fn archive_path(data_dir: &Path, id: &str, encrypted: bool) -> PathBuf {
    let age = if encrypted { ".age" } else { "" };
    dir(data_dir).join(format!("{id}.tar.zst{age}"))
}

/// The archive of backup `id`, plain or encrypted, with the keys to open it.
fn find(data_dir: &Path, id: &str, keys: &archive::Keys) -> anyhow::Result<Archive> {
    check_id(id)?;
    for encrypted in [false, true] {
        let path = archive_path(data_dir, id, encrypted);
        if path.exists() {
            return Ok(Archive {
                path,
                keys: keys.clone(),
            });
        }
    }
    bail!("no backup {id} in {}", dir(data_dir).display())
}

fn verified_marker(data_dir: &Path, id: &str) -> PathBuf {
    dir(data_dir).join(format!("{id}.verified"))
}

/// What a backup needs of the running stack.
struct Live {
    engine: Engine,
    spec: StackSpec,
    pg: std::net::IpAddr,
}

async fn live(config: &PlantConfig) -> anyhow::Result<Live> {
    let Some(stack) = &config.stack else {
        bail!("plant.toml has no [stack] section: there is no Odoo database to back up");
    };
    let secrets = spec::stack_dir(&config.data_dir).join("secrets.json");
    if !secrets.exists() {
        bail!(
            "{} does not exist: this data directory has never run the stack (is --data-dir right?)",
            secrets.display()
        );
    }
    let spec = spec::build(stack, &config.data_dir)?;
    let engine = Engine::connect(stack.docker_socket.as_deref())
        .await
        .map_err(|e| anyhow!("the Docker engine is unreachable: {e}"))?;
    let pg = engine
        .address(&spec, &spec.get(Service::Postgres).container)
        .await
        .map_err(|e| anyhow!("PostgreSQL: {e}"))?;
    Ok(Live { engine, spec, pg })
}

/// A file that hashes and counts what is written to it.
struct HashingFile {
    file: tokio::fs::File,
    digest: ring::digest::Context,
    size: u64,
}

impl tokio::io::AsyncWrite for HashingFile {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let poll = std::pin::Pin::new(&mut this.file).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &poll {
            this.digest.update(&buf[..*n]);
            this.size += *n as u64;
        }
        poll
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl HashingFile {
    async fn create(path: &Path) -> anyhow::Result<HashingFile> {
        Ok(HashingFile {
            // Parts hold the database: readable by root only, wherever they are written.
            file: tokio::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .await
                .with_context(|| format!("creating {}", path.display()))?,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
            size: 0,
        })
    }

    async fn finish(mut self, name: &str) -> anyhow::Result<Part> {
        // flush first: tokio's sync_all would not report a failed write still in flight.
        tokio::io::AsyncWriteExt::flush(&mut self.file)
            .await
            .with_context(|| format!("writing {name}"))?;
        self.file
            .sync_all()
            .await
            .with_context(|| format!("writing {name}"))?;
        Ok(Part {
            name: name.to_string(),
            size: self.size,
            sha256: hex(self.digest.finish().as_ref()),
        })
    }
}

/// One backup operation at a time on a data directory.
fn lock(backups: &Path) -> anyhow::Result<std::fs::File> {
    crate::fsutil::lock_file(&backups.join(".lock"), || {
        "another backup or verify is running on this data directory; try again when it ends".into()
    })
}

/// Removes what an interrupted backup left (its parts and unfinished archive); called under
/// the lock, so nothing running owns them.
fn remove_leftovers(backups: &Path) {
    let Ok(entries) = std::fs::read_dir(backups) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') && name.ends_with(".parts") {
            let _ = std::fs::remove_dir_all(entry.path());
        } else if name.ends_with(".partial") && !name.ends_with(".fetch.partial") {
            // A cut-off fetch stays: `plantd backup fetch` resumes it.
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn new_id() -> anyhow::Result<String> {
    let now = time::OffsetDateTime::now_utc();
    let stamp = now.format(time::macros::format_description!(
        "[year][month][day]T[hour][minute][second]Z"
    ))?;
    Ok(format!("{stamp}-{}", random_hex(3)?))
}

/// Refuses what cannot be a backup id, before it becomes part of a path.
pub fn check_id(id: &str) -> anyhow::Result<()> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("{id:?} is not a backup id (see `plantd backup list`)");
    }
    Ok(())
}

/// A connection to database `db` of the stack's PostgreSQL.
async fn connect(live: &Live, db: &str) -> anyhow::Result<Pg> {
    Pg::connect(live.pg, &live.spec.secrets, db, Duration::from_secs(10))
        .await
        .map_err(|e| anyhow!("database {db}: {e}"))
}

/// A connection to the stack's `postgres` database, for creating, renaming and dropping.
async fn admin(live: &Live) -> anyhow::Result<Pg> {
    connect(live, "postgres").await
}

/// Rows per table in `public`.
async fn count_tables(client: &tokio_postgres::Client) -> anyhow::Result<BTreeMap<String, i64>> {
    client
        .query(PIN_SEARCH_PATH, &[])
        .await
        .context("fixing the search_path")?;
    Ok(client
        .query(COUNT_TABLES, &[])
        .await
        .context("counting the tables' rows")?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Drops the scratch databases an interrupted verify, import or restore left (called under
/// the backup lock, so none is in use). A restore's `plantd_previous_*` holds data a person
/// must look at, and is never dropped here.
async fn sweep_scratch(admin: &Pg) {
    let Ok(rows) = admin
        .client
        .query(
            "SELECT datname::text FROM pg_database WHERE datname LIKE 'plantd\\_verify\\_%' OR datname LIKE 'plantd\\_import\\_%' OR datname LIKE 'plantd\\_restore\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        match admin
            .client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
            .await
        {
            Ok(()) => {
                tracing::info!(database = %name, "dropped a scratch database an interrupted run left")
            }
            Err(e) => {
                tracing::warn!(database = %name, error = %e, "could not drop a leftover scratch database")
            }
        }
    }
    // An import's role goes with its database.
    if let Ok(roles) = admin
        .client
        .query(
            "SELECT rolname::text FROM pg_roles WHERE rolname LIKE 'plantd\\_import\\_%'",
            &[],
        )
        .await
    {
        for row in roles {
            let name: String = row.get(0);
            let _ = admin
                .client
                .batch_execute(&format!("DROP ROLE IF EXISTS \"{name}\""))
                .await;
        }
    }
}

/// The manifest of `archive`, after every part was checked against it.
async fn checked(archive: &Archive) -> anyhow::Result<Manifest> {
    let path = archive.path.clone();
    let manifest = read_manifest(archive)
        .with_context(|| format!("{} is not a usable backup", path.display()))?;
    let checked = archive.clone();
    let expected = manifest.clone();
    tokio::task::spawn_blocking(move || check_parts(&checked, &expected.parts, &expected.database))
        .await
        .context("checking the parts")?
        .with_context(|| format!("{} failed its checks", path.display()))?;
    Ok(manifest)
}

/// What a blocking producer writes comes out of the returned reader; the handle tells
/// whether the producer finished. Dropping the reader early makes its next write fail.
fn pipe<F>(
    produce: F,
) -> (
    tokio::io::DuplexStream,
    tokio::task::JoinHandle<anyhow::Result<()>>,
)
where
    F: FnOnce(&mut dyn Write) -> anyhow::Result<()> + Send + 'static,
{
    struct Blocking(tokio::runtime::Handle, tokio::io::DuplexStream);
    impl Write for Blocking {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .block_on(tokio::io::AsyncWriteExt::write_all(&mut self.1, buf))?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (writer, reader) = tokio::io::duplex(1 << 16);
    let handle = tokio::runtime::Handle::current();
    let producer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut out = Blocking(handle, writer);
        produce(&mut out)?;
        out.0
            .block_on(tokio::io::AsyncWriteExt::shutdown(&mut out.1))?;
        Ok(())
    });
    (reader, producer)
}

/// Streams one part of an archive into the returned reader (see [`pipe`]).
fn feed(
    archive: &Archive,
    part: &'static str,
) -> (
    tokio::io::DuplexStream,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let archive = archive.clone();
    pipe(move |out| {
        let mut tar = tar::Archive::new(archive.open()?);
        for entry in tar.entries()? {
            let mut entry = entry?;
            if entry.path()?.as_os_str() == part {
                std::io::copy(&mut entry, out)?;
                return Ok(());
            }
        }
        bail!("{part} is missing from the archive")
    })
}

/// Takes a backup of the running stack (with a copy of the config file the daemon was
/// started from, if it was). Returns it as listed.
pub async fn take(config: &PlantConfig) -> anyhow::Result<Listed> {
    let live = live(config).await?;
    let spec = &live.spec;
    let db = spec.odoo_database.clone();
    let id = new_id()?;
    let backups = dir(&config.data_dir);
    crate::fsutil::create_private_dir(&backups)?;
    let _lock = lock(&backups)?;
    remove_leftovers(&backups);
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
async fn check_space(live: &Live, db: &str, backups: &Path, reserve: u64) -> anyhow::Result<()> {
    let pg = connect(live, db).await?;
    let database: i64 = pg
        .client
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .context("reading the database's size")?
        .get(0);
    pg.close().await;
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
    let files: u64 = String::from_utf8_lossy(&du)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
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

async fn take_into(
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
async fn store(config: &PlantConfig, work: &Path, manifest: Manifest) -> anyhow::Result<Listed> {
    let id = manifest.id.clone();
    let id = id.as_str();
    let recipients = archive::recipients(&config.data_dir, &config.backup.encrypt_to)?;
    let encrypted = !recipients.is_empty();
    let target = archive_path(&config.data_dir, id, encrypted);
    let work = work.to_path_buf();
    let manifest_copy = manifest.clone();
    let target_copy = target.clone();
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
async fn odoo_server(live: &Live) -> Option<serde_json::Value> {
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
async fn odoo_modules(
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
fn modules_of(
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
fn plant_toml_without_env(text: &str) -> String {
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

fn without_passwords(conf: &str) -> String {
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
fn pack(
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

fn pack_into(
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
struct Counting<'a>(&'a mut dyn Read, u64);

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1 += n as u64;
        Ok(n)
    }
}

fn append<W: Write>(
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

/// Reads the manifest (the archive's first entry).
fn read_manifest(archive: &Archive) -> anyhow::Result<Manifest> {
    let mut archive = tar::Archive::new(archive.open()?);
    let mut entries = archive.entries().context("not a tar archive")?;
    let mut first = entries
        .next()
        .ok_or_else(|| anyhow!("the archive is empty"))?
        .context("the archive is damaged or truncated")?;
    if first.path()?.as_os_str() != "manifest.json" {
        bail!("its first entry is not manifest.json: not a plantd backup");
    }
    if first.size() > 16 << 20 {
        bail!("manifest.json is over 16 MiB");
    }
    let mut text = String::new();
    first
        .read_to_string(&mut text)
        .context("the archive is damaged or truncated (in manifest.json)")?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| anyhow!("manifest.json, line {}: {e}", e.line()))?;
    if manifest.format != FORMAT {
        bail!(
            "manifest.json has format {}; this plantd reads format {FORMAT}",
            manifest.format
        );
    }
    Ok(manifest)
}

/// Deletes a backup (its archive and its verified mark).
pub fn delete(data_dir: &Path, id: &str) -> anyhow::Result<()> {
    let path = find(data_dir, id, &Default::default())?.path;
    std::fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
    let _ = std::fs::remove_file(verified_marker(data_dir, id));
    let _ = std::fs::remove_file(offsite::offsite_marker(&dir(data_dir), id));
    Ok(())
}

/// The backups in `DATA_DIR/backups/`, oldest first.
pub fn list(data_dir: &Path) -> anyhow::Result<Vec<Listed>> {
    let dir = dir(data_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let keys = archive::keys(data_dir, &[]).unwrap_or_default();
    let mut listed = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let (id, encrypted) = match (
            name.strip_suffix(".tar.zst"),
            name.strip_suffix(".tar.zst.age"),
        ) {
            (Some(id), _) => (id.to_string(), false),
            (_, Some(id)) => (id.to_string(), true),
            _ => continue,
        };
        if check_id(&id).is_err() {
            continue;
        }
        let archive = Archive {
            path: path.clone(),
            keys: keys.clone(),
        };
        let (created_at, unreadable) = match read_manifest(&archive) {
            Ok(m) => (m.created_at, None),
            Err(e) => (
                scheduler::taken_at(&id)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                Some(format!("{e:#}")),
            ),
        };
        listed.push(Listed {
            size: std::fs::metadata(&path)?.len(),
            verified: verified_marker(data_dir, &id).exists(),
            offsite: offsite::offsite_marker(&dir, &id).exists(),
            id,
            path,
            created_at,
            encrypted,
            unreadable,
        });
    }
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(listed)
}

/// The newest backup, by the time in its id (no archive is opened: the admin UI polls this).
/// One dated more than a day ahead (a clock that was wrong once) does not count: it would hold
/// scheduled backups off until that date.
pub fn newest(data_dir: &Path) -> Option<(String, jiff::Timestamp)> {
    let horizon = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24))
        .ok()?;
    std::fs::read_dir(dir(data_dir))
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let id = name
                .strip_suffix(".tar.zst")
                .or_else(|| name.strip_suffix(".tar.zst.age"))?;
            check_id(id).ok()?;
            Some((id.to_string(), scheduler::taken_at(id)?))
        })
        .filter(|(_, at)| *at <= horizon)
        .max_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)))
}

/// Checks a backup: every part against its checksum, then a restore of the dump into a scratch
/// database in the postgres container, whose row counts must equal the manifest's. The scratch
/// database is dropped whatever happens.
pub async fn verify(
    config: &PlantConfig,
    id: &str,
    keys: &archive::Keys,
) -> anyhow::Result<Manifest> {
    let archive = find(&config.data_dir, id, keys)?;
    let manifest = checked(&archive).await?;
    let live = live(config).await?;
    let _lock = lock(&dir(&config.data_dir))?;
    let scratch = format!("plantd_verify_{}", random_hex(6)?);
    let admin = admin(&live).await?;
    sweep_scratch(&admin).await;
    for statement in [
        format!("DROP DATABASE IF EXISTS \"{scratch}\""),
        format!("CREATE DATABASE \"{scratch}\""),
    ] {
        admin
            .client
            .batch_execute(&statement)
            .await
            .context("creating the scratch database")?;
    }
    let outcome = restore_and_count(&live, &archive, &scratch, &manifest).await;
    let dropped = admin
        .client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{scratch}\""))
        .await;
    admin.close().await;
    outcome?;
    dropped.context("dropping the scratch database")?;
    crate::fsutil::write_atomic(
        &verified_marker(&config.data_dir, id),
        manifest.created_at.as_bytes(),
        0o600,
    )?;
    Ok(manifest)
}

/// Streams every part through SHA-256 and compares with the manifest; `filestore.tar` must
/// also be a tar of plain files and directories under `filestore/DATABASE/`, which is all a
/// restore unpacks. Where the archive is damaged, the error names the part the damage is in:
/// a part read whole before the damage showed, whose checksum differs, is the one.
fn check_parts(archive: &Archive, expected: &[Part], database: &str) -> anyhow::Result<()> {
    for required in ["db.dump", "filestore.tar"] {
        if !expected.iter().any(|p| p.name == required) {
            bail!("manifest.json lists no {required}: not a complete plantd backup");
        }
    }
    let mut seen = BTreeMap::new();
    let read = read_parts(archive, database, &mut seen);
    let compare = |name: &String, (size, sha): &(u64, String)| -> anyhow::Result<()> {
        if name == "manifest.json" {
            return Ok(());
        }
        let Some(part) = expected.iter().find(|p| &p.name == name) else {
            bail!("{name} is in the archive but not in its manifest: the archive is altered");
        };
        if *size != part.size {
            bail!(
                "{name}: {size} bytes where the manifest says {}; the archive is truncated or altered",
                part.size
            );
        }
        if *sha != part.sha256 {
            bail!("{name}: its SHA-256 differs from the manifest's; the archive is altered");
        }
        Ok(())
    };
    for (name, got) in &seen {
        compare(name, got)?;
    }
    read?;
    for part in expected {
        if !seen.contains_key(&part.name) {
            bail!("{} is missing from the archive", part.name);
        }
    }
    Ok(())
}

/// Reads every entry, recording each one read whole as (size, SHA-256).
fn read_parts(
    archive: &Archive,
    database: &str,
    seen: &mut BTreeMap<String, (u64, String)>,
) -> anyhow::Result<()> {
    let mut current = String::from("the archive's first entry");
    let mut archive = tar::Archive::new(
        archive
            .open()
            .with_context(|| format!("the archive is damaged or truncated (in {current})"))?,
    );
    let mut run = || -> anyhow::Result<()> {
        for entry in archive.entries()? {
            let entry = entry?;
            current = entry.path()?.to_string_lossy().to_string();
            let mut reader = Hashing::new(entry);
            if current == "filestore.tar" {
                check_filestore(&mut reader, database)?;
            }
            std::io::copy(&mut reader, &mut std::io::sink())?;
            let (_, size, sha256) = reader.finish();
            seen.insert(current.clone(), (size, sha256));
        }
        Ok(())
    };
    run().with_context(|| format!("the archive is damaged or truncated (in {current})"))
}

/// `filestore.tar` holds only directories and plain files under `filestore/DATABASE/`.
fn check_filestore(reader: &mut dyn Read, database: &str) -> anyhow::Result<()> {
    let mut inner = tar::Archive::new(reader);
    let top = Path::new("filestore");
    let own = top.join(database);
    for entry in inner
        .entries()
        .context("filestore.tar is not a tar archive")?
    {
        let entry = entry.context("filestore.tar is damaged")?;
        let name = entry.path().context("filestore.tar: an entry's name")?;
        let plain = name
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        let kind = entry.header().entry_type();
        if !plain || !(name == top || name.starts_with(&own)) {
            bail!(
                "filestore.tar: {} is not under filestore/{database}/",
                name.display()
            );
        }
        if !(kind.is_file() || kind.is_dir()) {
            bail!(
                "filestore.tar: {} is a {kind:?}, not a file or directory",
                name.display()
            );
        }
    }
    Ok(())
}

async fn restore_and_count(
    live: &Live,
    archive: &Archive,
    scratch: &str,
    manifest: &Manifest,
) -> anyhow::Result<()> {
    // The dump goes from the archive into pg_restore's standard input, through a pipe.
    let (mut reader, feeder) = feed(archive, "db.dump");
    let mut sink = tokio::io::sink();
    let restored = live
        .engine
        .exec(
            &live.spec.get(Service::Postgres).container,
            &[
                "pg_restore",
                "-U",
                DB_USER,
                "--no-owner",
                "--exit-on-error",
                "-d",
                scratch,
            ],
            Some(&mut reader),
            &mut sink,
        )
        .await;
    // pg_restore is done (or failed): the feeder's next write fails instead of waiting.
    drop(reader);
    let fed = feeder.await.context("reading db.dump from the archive")?;
    restored.map_err(|e| anyhow!("restoring db.dump into a scratch database: {e}"))?;
    fed.context("reading db.dump from the archive")?;
    let pg = connect(live, scratch).await?;
    let counts = count_tables(&pg.client).await?;
    pg.close().await;
    if counts != manifest.tables {
        let mut tables: Vec<&String> = manifest.tables.keys().chain(counts.keys()).collect();
        tables.sort();
        tables.dedup();
        let differ: Vec<String> = tables
            .into_iter()
            .filter(|t| counts.get(*t) != manifest.tables.get(*t))
            .map(|t| {
                let show =
                    |n: Option<&i64>| n.map_or("no table".to_string(), |n| format!("{n} rows"));
                format!(
                    "{t}: {} in the manifest, {} restored",
                    show(manifest.tables.get(t)),
                    show(counts.get(t))
                )
            })
            .collect();
        bail!(
            "the restored database differs from the manifest: {}",
            differ.join("; ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_from_before_the_apply_cursor_still_reads() {
        // As plantd wrote it before manifests recorded the apply cursor.
        let old = r#"{
            "format": 1, "id": "20261128T020000Z-abcdef", "plant": "lyon",
            "created_at": "2026-11-28T02:00:00Z", "database": "odoo", "postgres_version": "15.8",
            "odoo_version": "19.0", "modules": {"base": "19.0.1.3"},
            "tables": {"res_partner": 3}, "parts": []
        }"#;
        let m: Manifest = serde_json::from_str(old).expect("an old manifest parses");
        assert_eq!(m.apply, None);
        assert_eq!(m.tables.get("res_partner"), Some(&3));

        let mut now = m.clone();
        now.apply = Some(AppliedAt {
            journal_id: "0123abcd".into(),
            applied_seq: 42,
            apply_prefix: Some("lyon".into()),
        });
        let text = serde_json::to_string(&now).unwrap();
        assert!(text.contains(
            r#""apply":{"journal_id":"0123abcd","applied_seq":42,"apply_prefix":"lyon"}"#
        ));
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), now);
        // And an old manifest written again stays without it.
        assert!(!serde_json::to_string(&m).unwrap().contains("apply"));
    }

    #[test]
    fn passwords_and_environments_stay_out() {
        let conf = "[options]\ndb_password = s3cret\nadmin_passwd = m4ster\nworkers = 2\n";
        let out = without_passwords(conf);
        assert!(!out.contains("s3cret") && !out.contains("m4ster"), "{out}");
        assert!(out.contains("workers = 2"));

        let toml = "[stack]\nname = \"lyon\"\n[stack.odoo.env]\nSMTP_PASSWORD = \"hunter2\"\n[stack.postgres]\nenv = { A = \"b\" }\n";
        let out = plant_toml_without_env(toml);
        assert!(!out.contains("hunter2") && !out.contains("\"b\""), "{out}");
        assert!(
            out.contains("SMTP_PASSWORD") && out.contains("lyon"),
            "{out}"
        );
        assert!(plant_toml_without_env("not [toml").contains("did not parse"));
    }

    fn archive(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let encoder = zstd::Encoder::new(file.reopen().unwrap(), 1).unwrap();
        let mut tar = tar::Builder::new(encoder);
        for (name, data) in entries {
            append(&mut tar, name, data.len() as u64, &mut &data[..]).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        file
    }

    fn plain(path: &Path) -> Archive {
        Archive {
            path: path.to_path_buf(),
            keys: Default::default(),
        }
    }

    #[test]
    fn an_encrypted_archive_opens_with_a_recipient_key_and_is_refused_without() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        std::fs::write(work.join("db.dump"), b"dump").unwrap();
        let manifest = Manifest {
            format: FORMAT,
            id: "20261128T020000Z-abcdef".into(),
            plant: "lyon".into(),
            created_at: "2026-11-28T02:00:00Z".into(),
            database: "odoo".into(),
            postgres_version: "15".into(),
            odoo_version: None,
            modules: None,
            odoo_server: None,
            imported_from: None,
            apply: None,
            tables: BTreeMap::new(),
            parts: vec![part("db.dump", b"dump")],
        };
        let office = age::x25519::Identity::generate();
        let plant = age::x25519::Identity::generate();
        let target = dir.path().join("b.tar.zst.age");
        pack(
            &work,
            &manifest,
            &target,
            &[office.to_public(), plant.to_public()],
        )
        .unwrap();
        let bytes = std::fs::read(&target).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1"));
        assert!(!bytes.windows(4).any(|w| w == b"dump"));
        for key in [&office, &plant] {
            let archive = Archive {
                path: target.clone(),
                keys: std::sync::Arc::new(vec![key.clone()]),
            };
            assert_eq!(read_manifest(&archive).unwrap(), manifest);
            check_parts_allowing_no_filestore(&archive, &manifest);
        }
        let stranger = Archive {
            path: target.clone(),
            keys: std::sync::Arc::new(vec![age::x25519::Identity::generate()]),
        };
        let e = format!("{:#}", read_manifest(&stranger).unwrap_err());
        assert!(e.contains("encrypted to none of the keys"), "{e}");
        let e = format!("{:#}", read_manifest(&plain(&target)).unwrap_err());
        assert!(e.contains("0 keys: this plant"), "{e}");
    }

    /// Every part read whole and matching (the test archive has no filestore.tar).
    fn check_parts_allowing_no_filestore(archive: &Archive, manifest: &Manifest) {
        let mut seen = BTreeMap::new();
        read_parts(archive, &manifest.database, &mut seen).unwrap();
        assert_eq!(seen["db.dump"].1, manifest.parts[0].sha256);
    }

    fn part(name: &str, data: &[u8]) -> Part {
        Part {
            name: name.into(),
            size: data.len() as u64,
            sha256: hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref()),
        }
    }

    /// A tar of `(name, data)`; a name ending in '/' is a directory, `->` makes a symlink.
    fn inner_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut header = tar::Header::new_gnu();
            if let Some((link, target)) = name.split_once("->") {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                tar.append_link(&mut header, link, target).unwrap();
                continue;
            }
            if name.ends_with('/') {
                header.set_entry_type(tar::EntryType::Directory);
            }
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            // Set without checks, as a hostile archive would.
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            tar.append(&header, *data).unwrap();
        }
        tar.into_inner().unwrap()
    }

    #[test]
    fn parts_are_checked_against_the_manifest() {
        let files = inner_tar(&[
            ("filestore/", b""),
            ("filestore/odoo/", b""),
            ("filestore/odoo/ab/abcdef", b"attachment"),
        ]);
        let good = [
            ("manifest.json", &b"{}"[..]),
            ("db.dump", b"dump"),
            ("filestore.tar", &files[..]),
        ];
        let parts = vec![part("db.dump", b"dump"), part("filestore.tar", &files)];
        check_parts(&plain(archive(&good).path()), &parts, "odoo").unwrap();

        let mut cut = files.clone();
        cut.pop();
        type Entries<'a> = Vec<(&'a str, &'a [u8])>;
        let cases: Vec<(Entries, Vec<Part>, &str)> = vec![
            (
                good.to_vec(),
                vec![part("db.dump", b"dump")],
                "lists no filestore.tar",
            ),
            (
                good[..2].to_vec(),
                parts.clone(),
                "filestore.tar is missing",
            ),
            (
                [&good[..], &[("extra.sql", &b"x"[..])]].concat(),
                parts.clone(),
                "extra.sql is in the archive but not in its manifest",
            ),
            (
                vec![good[0], ("db.dump", b"dumq"), good[2]],
                parts.clone(),
                "db.dump: its SHA-256 differs",
            ),
            (
                vec![good[0], good[1], ("filestore.tar", &cut[..])],
                parts.clone(),
                "filestore.tar: 3071 bytes where the manifest says 3072",
            ),
        ];
        for (entries, parts, want) in cases {
            let e = format!(
                "{:#}",
                check_parts(&plain(archive(&entries).path()), &parts, "odoo").unwrap_err()
            );
            assert!(e.contains(want), "{e:?} should say {want:?}");
        }
    }

    #[test]
    fn a_filestore_holds_only_the_databases_files() {
        type Entries<'a> = &'a [(&'a str, &'a [u8])];
        let cases: [(Entries, &str); 4] = [
            (
                &[("filestore/other/x", b"1")],
                "filestore/other/x is not under filestore/odoo/",
            ),
            (
                &[("filestore/odoo/../../etc/passwd", b"1")],
                "is not under filestore/odoo/",
            ),
            (&[("/etc/cron.d/x", b"1")], "is not under filestore/odoo/"),
            (
                &[("filestore/odoo/link->/etc/shadow", b"")],
                "filestore/odoo/link is a Symlink",
            ),
        ];
        for (entries, want) in cases {
            let files = inner_tar(entries);
            let e = format!(
                "{:#}",
                check_filestore(&mut &files[..], "odoo").unwrap_err()
            );
            assert!(e.contains(want), "{e:?} should say {want:?}");
        }
        check_filestore(&mut &inner_tar(&[])[..], "odoo").unwrap();
    }
}

/// Fuzzing by property (cargo-fuzz needs a nightly compiler, which this project's CI has not):
/// whatever an archive holds, reading its manifest gives a manifest or an error, never a panic.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn archive_with(first: &str, manifest: &[u8]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let encoder = zstd::Encoder::new(file.reopen().unwrap(), 1).unwrap();
        let mut tar = tar::Builder::new(encoder);
        append(&mut tar, first, manifest.len() as u64, &mut &manifest[..]).unwrap();
        tar.into_inner().unwrap().finish().unwrap();
        file
    }

    fn manifest_text() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            // Near misses of a real manifest: fields dropped, wrong types, other formats.
            (0u32..4, "[a-z0-9_\\-]{0,12}", any::<i64>(), any::<bool>()).prop_map(
                |(format, id, seq, apply)| {
                    let apply = if apply {
                        format!(r#","apply":{{"journal_id":"{id}","applied_seq":{seq}}}"#)
                    } else {
                        String::new()
                    };
                    format!(
                        r#"{{"format":{format},"id":"{id}","plant":"p","created_at":"x","database":"odoo","postgres_version":"15","odoo_version":null,"modules":{{}},"tables":{{"t":{seq}}},"parts":[]{apply}}}"#
                    )
                    .into_bytes()
                }
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn any_manifest_reads_or_is_refused_with_a_reason(
            first in prop_oneof![Just("manifest.json".to_string()), "[a-z][a-z_]{0,12}(\\.json)?(/[a-z]{1,8})?"],
            text in manifest_text(),
        ) {
            let file = archive_with(&first, &text);
            match read_manifest(&plain_archive(file.path())) {
                Ok(m) => {
                    prop_assert_eq!(first.as_str(), "manifest.json");
                    prop_assert_eq!(m.format, FORMAT);
                }
                Err(e) => {
                    let said = format!("{e:#}");
                    prop_assert!(!said.is_empty());
                }
            }
        }

        #[test]
        fn any_bytes_as_an_archive_are_refused_with_a_reason(
            bytes in proptest::collection::vec(any::<u8>(), 0..2000),
        ) {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), &bytes).unwrap();
            let e = read_manifest(&plain_archive(file.path()));
            prop_assert!(e.is_err());
        }
    }

    fn plain_archive(path: &Path) -> Archive {
        Archive {
            path: path.to_path_buf(),
            keys: Default::default(),
        }
    }
}
