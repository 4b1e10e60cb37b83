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
pub mod progress;
pub mod restore;
pub mod sandbox;
pub mod scheduler;
mod take;
mod verify;

pub use take::take;
use take::{modules_of, store};
pub use verify::verify;

/// A backup taken, then verified (see [`verify`]), as the schedule, the UI's "Run backup now"
/// and `plantd backup run --verify` make them: one that is listed verified, or an error that
/// says it was taken but failed its verification. Both steps run under one hold of the backup
/// lock, so that no other backup or verify comes between them.
pub async fn take_verified(config: &PlantConfig) -> anyhow::Result<(Listed, Manifest)> {
    let backups = dir(&config.data_dir);
    crate::fsutil::create_private_dir(&backups)?;
    let held = Held {
        _file: lock(&backups)?,
    };
    let mut taken = take::take_under(config, Some(&held)).await?;
    let verified = match archive::keys(&config.data_dir, &[]) {
        Ok(keys) => verify::verify_under(config, &taken.id, &keys, Some(&held)).await,
        Err(e) => Err(e),
    };
    let manifest = verified.map_err(|e| {
        anyhow!(
            "backup {} was taken but failed its verification: {e:#}",
            taken.id
        )
    })?;
    taken.verified = true;
    Ok((taken, manifest))
}
use verify::{check_parts, restore_and_count};

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
            progress::add(*n as u64);
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
/// The backup lock, held by a caller across several steps (see [`take_verified`]).
pub(super) struct Held {
    _file: std::fs::File,
}

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

#[cfg(test)]
mod tests {
    use super::take::*;
    use super::verify::*;
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
    use super::take::append;
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
