//! Odoo's own backup format, the database manager's zip (also what odoo.sh hands out):
//! `dump.sql` (plain SQL, `pg_dump --no-owner`) first, then `filestore/` (the database's
//! attachments, without the database's name in the path) and `manifest.json` (`odoo_dump`,
//! `db_name`, `version`, `version_info`, `major_version`, `pg_version`, `modules`).
//!
//! `export` turns a backup into such a zip: the custom-format dump becomes SQL through
//! `pg_restore -f -` in the postgres container (no database touched), the filestore's files
//! are copied across.
//!
//! `import` makes a new backup from one, and trusts nothing in it. The zip's names and
//! declared sizes are checked first (names inside its own directory, a `dump.sql`, room on
//! the disk for what the declared sizes would make), and each entry is read to exactly its
//! declared size. The SQL is read as psql reads it ([`super::dump_sql`]: any psql command
//! outside COPY data is refused, naming its line) and run by psql in a throwaway PostgreSQL
//! container with no network, as a role without superuser ([`super::sandbox`]); plantd counts
//! its tables there and `pg_dump`s it as the backup's `db.dump`, then removes the container;
//! the files become `filestore.tar`. A zip refused at any step leaves no backup, no container
//! and no database behind, and the plant's own PostgreSQL is never touched.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};

use super::archive::{Archive, Keys};
use super::sandbox::Sandbox;
use super::{dump_sql, HashingFile, Listed, Manifest, Part, FORMAT};
use crate::config::PlantConfig;
use crate::stack::spec::Service;

/// What an export wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exported {
    pub file: PathBuf,
    pub size: u64,
    pub files: usize,
}

/// Odoo's version fields for the zip's manifest, from what the backup recorded.
fn odoo_release(manifest: &Manifest) -> (String, serde_json::Value) {
    let server = manifest.odoo_server.as_ref();
    let version = server
        .and_then(|s| s.get("server_version"))
        .and_then(|v| v.as_str())
        .map(String::from)
        .or_else(|| {
            // base's module version is "18.0.1.3": the release is its first two numbers.
            let base = manifest.odoo_version.as_deref()?;
            let mut parts = base.split('.');
            Some(format!("{}.{}", parts.next()?, parts.next()?))
        })
        .unwrap_or_else(|| "unknown".into());
    let info = server
        .and_then(|s| s.get("server_version_info"))
        .cloned()
        .unwrap_or_else(|| {
            let mut n = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
            serde_json::json!([
                n.next().unwrap_or(0),
                n.next().unwrap_or(0),
                0,
                "final",
                0,
                ""
            ])
        });
    (version, info)
}

fn zip_error(e: zip::result::ZipError) -> anyhow::Error {
    anyhow!("{e}")
}

pub async fn export(
    config: &PlantConfig,
    id: &str,
    keys: &Keys,
    out: &Path,
) -> anyhow::Result<Exported> {
    let archive = super::find(&config.data_dir, id, keys)?;
    let manifest = super::checked(&archive).await?;
    if out.exists() {
        bail!("{} exists; plantd does not overwrite it", out.display());
    }
    let live = super::live(config).await?;
    let sql_path = PathBuf::from(format!("{}.dump.sql.partial", out.display()));
    let zip_path = PathBuf::from(format!("{}.partial", out.display()));
    let result = async {
        // The custom-format dump, as the plain SQL Odoo's restore runs.
        let (mut reader, feeder) = super::feed(&archive, "db.dump");
        let mut sql = HashingFile::create(&sql_path).await?;
        let converted = live
            .engine
            .exec(
                &live.spec.get(Service::Postgres).container,
                &["pg_restore", "--no-owner", "-f", "-"],
                Some(&mut reader),
                &mut sql,
            )
            .await;
        drop(reader);
        let fed = feeder.await.context("reading db.dump from the archive")?;
        converted.map_err(|e| anyhow!("turning db.dump into SQL: {e}"))?;
        fed.context("reading db.dump from the archive")?;
        sql.finish("dump.sql").await?;
        let (archive, manifest) = (archive.clone(), manifest.clone());
        let (sql_path, zip_path, out) = (sql_path.clone(), zip_path.clone(), out.to_path_buf());
        tokio::task::spawn_blocking(move || {
            write_zip(&archive, &manifest, &sql_path, &zip_path, &out)
        })
        .await
        .context("writing the zip")?
    }
    .await;
    let _ = std::fs::remove_file(&sql_path);
    if result.is_err() {
        let _ = std::fs::remove_file(&zip_path);
    }
    result
}

fn write_zip(
    archive: &Archive,
    manifest: &Manifest,
    sql: &Path,
    partial: &Path,
    out: &Path,
) -> anyhow::Result<Exported> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true)
        .unix_permissions(0o644);
    zip.start_file("dump.sql", options).map_err(zip_error)?;
    std::io::copy(&mut std::fs::File::open(sql)?, &mut zip)?;

    let prefix = Path::new("filestore").join(&manifest.database);
    let mut files = 0;
    let mut tar = tar::Archive::new(archive.open()?);
    for entry in tar.entries()? {
        let entry = entry?;
        if entry.path()?.as_os_str() != "filestore.tar" {
            continue;
        }
        let mut inner = tar::Archive::new(entry);
        for file in inner.entries()? {
            let mut file = file?;
            if !file.header().entry_type().is_file() {
                continue;
            }
            let path = file.path()?.to_path_buf();
            let Ok(rest) = path.strip_prefix(&prefix) else {
                continue;
            };
            let name = Path::new("filestore").join(rest);
            zip.start_file(name.to_string_lossy(), options)
                .map_err(zip_error)?;
            std::io::copy(&mut file, &mut zip)?;
            files += 1;
        }
    }

    let (version, version_info) = odoo_release(manifest);
    let major_version = version.clone();
    let pg_version = manifest
        .postgres_version
        .split('.')
        .next()
        .map(|major| format!("{major}.0"))
        .unwrap_or_default();
    let odoo_manifest = serde_json::json!({
        "odoo_dump": "1",
        "db_name": manifest.database,
        "version": version,
        "version_info": version_info,
        "major_version": major_version,
        "pg_version": pg_version,
        "modules": manifest.modules.clone().unwrap_or_default(),
    });
    zip.start_file("manifest.json", options)
        .map_err(zip_error)?;
    zip.write_all(&serde_json::to_vec_pretty(&odoo_manifest)?)?;
    let file = zip.finish().map_err(zip_error)?;
    file.sync_all()?;
    std::fs::rename(partial, out)?;
    Ok(Exported {
        file: out.to_path_buf(),
        size: std::fs::metadata(out)?.len(),
        files,
    })
}

/// What a zip holds, checked before anything is made from it.
struct Contents {
    /// Odoo's manifest.json, if it has one.
    manifest: Option<serde_json::Value>,
    /// dump.sql's size, as the zip declares it.
    sql_size: u64,
    /// Indexes of the filestore's files, with their paths under `filestore/` and declared sizes.
    files: Vec<(usize, PathBuf, u64)>,
}

impl Contents {
    /// What the import writes at most, from the zip's declared sizes: the parts (db.dump no
    /// bigger than the SQL, filestore.tar the files plus a header each) and then the archive
    /// beside them, no bigger than the parts.
    fn space_needed(&self) -> u64 {
        let files: u64 = self
            .files
            .iter()
            .map(|(_, _, size)| size.saturating_add(1024))
            .fold(0, u64::saturating_add);
        self.sql_size.saturating_add(files).saturating_mul(2)
    }
}

fn inspect(zip_path: &Path) -> anyhow::Result<Contents> {
    let file =
        std::fs::File::open(zip_path).with_context(|| format!("opening {}", zip_path.display()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| anyhow!("not a zip archive: {e}"))?;
    let mut sql_size = None;
    let mut manifest = None;
    let mut files = Vec::new();
    for i in 0..zip.len() {
        let entry = zip.by_index(i).map_err(|e| anyhow!("entry {i}: {e}"))?;
        let raw = entry.name().map_err(zip_error)?.to_string();
        let Some(name) = entry.enclosed_name() else {
            bail!("{raw:?} points outside the zip's own directory");
        };
        if name == Path::new("dump.sql") {
            sql_size = Some(entry.size());
        } else if name == Path::new("manifest.json") {
            if entry.size() > 16 << 20 {
                bail!("manifest.json is over 16 MiB");
            }
            let mut text = String::new();
            Declared::new(entry, "manifest.json")
                .read_to_string(&mut text)
                .context("manifest.json")?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| anyhow!("manifest.json, line {}: {e}", e.line()))?;
            if !value.is_object() {
                bail!("manifest.json is not a JSON object");
            }
            manifest = Some(value);
        } else if let Ok(rest) = name.strip_prefix("filestore") {
            if entry.is_file() && !rest.as_os_str().is_empty() {
                files.push((i, rest.to_path_buf(), entry.size()));
            }
        }
    }
    let Some(sql_size) = sql_size else {
        bail!("it has no dump.sql: not a zip from Odoo's database manager (a backup \"with filestore\", as zip) or odoo.sh");
    };
    Ok(Contents {
        manifest,
        sql_size,
        files,
    })
}

/// An entry of the zip, read to exactly the size the zip declares for it: one that gives more
/// (a forged header, a zip bomb that lies) or less is an error, before any byte past the
/// declared size is handed on.
struct Declared<R> {
    inner: R,
    name: String,
    declared: u64,
    read: u64,
}

impl<'a> Declared<zip::read::ZipFile<'a, std::fs::File>> {
    fn new(entry: zip::read::ZipFile<'a, std::fs::File>, name: &str) -> Self {
        Declared {
            declared: entry.size(),
            inner: entry,
            name: name.to_string(),
            read: 0,
        }
    }
}

impl<R: Read> Read for Declared<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let lie = |what: &str| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: {what} than the {} bytes the zip declared for it; the zip is damaged or forged",
                    self.name, self.declared
                ),
            )
        };
        let left = self.declared - self.read;
        if left == 0 {
            // One byte more would be a lie: look for it.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe) {
                Ok(0) => Ok(0),
                Ok(_) => Err(lie("more bytes")),
                Err(e) => Err(std::io::Error::new(e.kind(), format!("{}: {e}", self.name))),
            };
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(lie("fewer bytes"));
        }
        self.read += n as u64;
        Ok(n)
    }
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Refuses an import that could fill the disk, from the zip's declared sizes (each entry is
/// then held to its declared size while it is read): the backup directory needs the parts and
/// the archive beside them, and the journal keeps its reserve; the sandbox's database lives
/// where Docker keeps its volumes, and needs about twice the SQL (tables and their indexes).
async fn check_space(
    live: &super::Live,
    backups: &Path,
    contents: &Contents,
    reserve: u64,
) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let size = |n: u64| bytesize::ByteSize(n).to_string();
    let free_at = |path: &Path| -> anyhow::Result<u64> {
        let stat = rustix::fs::statvfs(path)
            .with_context(|| format!("reading the free space of {}", path.display()))?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    };
    let parts = contents.space_needed();
    let database = contents.sql_size.saturating_mul(2);
    let docker_root = live
        .engine
        .docker()
        .info()
        .await
        .ok()
        .and_then(|i| i.docker_root_dir)
        .map(PathBuf::from)
        .filter(|p| p.exists());
    let same_disk = docker_root.as_ref().is_none_or(|root| {
        match (std::fs::metadata(root), std::fs::metadata(backups)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev(),
            _ => true,
        }
    });
    let need = parts
        .saturating_add(reserve)
        .saturating_add(if same_disk { database } else { 0 });
    let free = free_at(backups)?;
    if free < need {
        bail!(
            "not enough free space to import it in {}: {} free, about {} needed (the zip declares {} of SQL and {} filestore files: the backup's parts and archive, the sandbox's database{}, and the journal's reserve {}); free some, or delete old backups (`plantd backup list`). Nothing was written",
            backups.display(),
            size(free),
            size(need),
            size(contents.sql_size),
            contents.files.len(),
            if same_disk { "" } else { " (on another disk)" },
            size(reserve)
        );
    }
    if let (false, Some(root)) = (same_disk, &docker_root) {
        let free = free_at(root)?;
        if free < database {
            bail!(
                "not enough free space for the import's sandbox database in {}: {} free, about {} needed (twice the {} of SQL the zip declares). Nothing was written",
                root.display(),
                size(free),
                size(database),
                size(contents.sql_size)
            );
        }
    }
    Ok(())
}

/// Makes a new backup from an Odoo zip; returns it as listed. The dump runs in a sandbox
/// ([`super::sandbox`]), never in the plant's own PostgreSQL.
pub async fn import(config: &PlantConfig, zip_path: &Path) -> anyhow::Result<Listed> {
    let refused = || format!("{} is refused; nothing was made", zip_path.display());
    let checked = zip_path.to_path_buf();
    let contents = tokio::task::spawn_blocking(move || inspect(&checked))
        .await
        .context("reading the zip")?
        .with_context(refused)?;
    let live = super::live(config).await?;
    let backups = super::dir(&config.data_dir);
    crate::fsutil::create_private_dir(&backups)?;
    let _lock = super::lock(&backups)?;
    super::remove_leftovers(&backups);
    check_space(&live, &backups, &contents, config.journal.min_free_bytes)
        .await
        .with_context(refused)?;
    let id = super::new_id()?;
    let work = backups.join(format!(".{id}.parts"));
    crate::fsutil::create_private_dir(&work)?;
    let made = async {
        let sandbox = Sandbox::start(&live.engine, &live.spec).await?;
        let made = make(config, &live, &sandbox, zip_path, &contents, &id, &work).await;
        sandbox.remove().await;
        made
    }
    .await;
    let _ = std::fs::remove_dir_all(&work);
    made.with_context(refused)
}

async fn make(
    config: &PlantConfig,
    live: &super::Live,
    sandbox: &Sandbox,
    zip_path: &Path,
    contents: &Contents,
    id: &str,
    work: &Path,
) -> anyhow::Result<Listed> {
    // dump.sql into the sandbox's database, read as psql reads it, stopping at its first error.
    let source = zip_path.to_path_buf();
    let (mut reader, feeder) = super::pipe(move |out| {
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&source)?).map_err(zip_error)?;
        let sql = Declared::new(zip.by_name("dump.sql").map_err(zip_error)?, "dump.sql");
        dump_sql::copy(std::io::BufReader::new(sql), out)?;
        Ok(())
    });
    let ran = sandbox.restore(&mut reader).await;
    drop(reader);
    let fed = feeder.await.context("reading dump.sql from the zip")?;
    // What the reader refused comes first (psql then met the end of its input and may have
    // ended well); a pipe psql closed, by failing, says less than psql's own error.
    match (fed, ran) {
        (Err(e), _) if !broken_pipe(&e) => return Err(e.context("dump.sql")),
        (_, Err(e)) => bail!("dump.sql: {e}"),
        (Err(e), Ok(())) => return Err(e.context("dump.sql")),
        (Ok(()), Ok(())) => {}
    }

    let found = sandbox
        .query_json(&format!(
            "SELECT pg_catalog.json_build_object('server_version', pg_catalog.current_setting('server_version'), 'odoo', pg_catalog.to_regclass('public.ir_module_module') IS NOT NULL, 'tables', COALESCE((SELECT pg_catalog.json_object_agg(c.name, c.n) FROM ({}) AS c(name, n)), '{{}}'::json))",
            super::COUNT_TABLES
        ))
        .await
        .context("counting the imported tables")?;
    let tables: std::collections::BTreeMap<String, i64> =
        serde_json::from_value(found["tables"].clone()).context("the imported tables' counts")?;
    let postgres_version = found["server_version"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (odoo_version, modules) = if found["odoo"] == true {
        match sandbox
            .query_json(&format!(
                "SELECT COALESCE(pg_catalog.json_agg(pg_catalog.json_build_array(m.name, m.v)), '[]'::json) FROM ({}) AS m(name, v)",
                super::ODOO_MODULES
            ))
            .await
        {
            Ok(serde_json::Value::Array(rows)) => super::modules_of(rows.iter().map(|r| {
                (
                    r[0].as_str().unwrap_or_default().to_string(),
                    r[1].as_str().map(String::from),
                )
            })),
            _ => (None, None),
        }
    } else {
        (None, None)
    };

    let mut parts = Vec::new();
    let mut dump = HashingFile::create(&work.join("db.dump")).await?;
    sandbox
        .dump(&mut dump)
        .await
        .map_err(|e| anyhow!("dumping the imported database: {e}"))?;
    parts.push(dump.finish("db.dump").await?);

    let database = live.spec.odoo_database.clone();
    let source = zip_path.to_path_buf();
    let files = contents.files.clone();
    let tar_path = work.join("filestore.tar");
    let db = database.clone();
    parts.push(
        tokio::task::spawn_blocking(move || filestore_tar(&source, &files, &db, &tar_path))
            .await
            .context("writing filestore.tar")??,
    );

    let zip_manifest = contents.manifest.clone().unwrap_or_default();
    let modules = modules.or_else(|| {
        let m = zip_manifest.get("modules")?.as_object()?;
        Some(
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
        )
    });
    let odoo_server = zip_manifest.get("version").map(|v| {
        serde_json::json!({
            "server_version": v,
            "server_version_info": zip_manifest.get("version_info").cloned().unwrap_or_default(),
        })
    });
    let manifest = Manifest {
        format: FORMAT,
        id: id.to_string(),
        plant: live.spec.name.clone(),
        created_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)?,
        database,
        postgres_version,
        odoo_version,
        modules,
        odoo_server,
        imported_from: zip_path
            .file_name()
            .map(|n| n.to_string_lossy().to_string()),
        // This Odoo never saw the plant's journal: a restore of it applies it all again.
        apply: None,
        tables,
        parts,
    };
    super::store(config, work, manifest).await
}

/// The zip's `filestore/` files as `filestore.tar`, under `filestore/DATABASE/`, owned by
/// Odoo's user (101) as in Odoo's image.
fn filestore_tar(
    zip_path: &Path,
    files: &[(usize, PathBuf, u64)],
    database: &str,
    out: &Path,
) -> anyhow::Result<Part> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(zip_path)?).map_err(zip_error)?;
    let file = std::fs::File::create(out)?;
    let mut tar = tar::Builder::new(crate::digest::Hashing::new(std::io::BufWriter::new(file)));
    let base = Path::new("filestore").join(database);
    let mut dirs = std::collections::BTreeSet::new();
    let header_for = |kind: tar::EntryType, size: u64, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(101);
        h.set_gid(101);
        h.set_mtime(0);
        h
    };
    for d in [Path::new("filestore").to_path_buf(), base.clone()] {
        let mut h = header_for(tar::EntryType::Directory, 0, 0o755);
        tar.append_data(&mut h, &d, std::io::empty())?;
        dirs.insert(d);
    }
    for (index, rest, _) in files {
        let path = base.join(rest);
        for parent in path.ancestors().skip(1) {
            if parent.starts_with(&base) && dirs.insert(parent.to_path_buf()) {
                let mut h = header_for(tar::EntryType::Directory, 0, 0o755);
                tar.append_data(&mut h, parent, std::io::empty())?;
            }
        }
        let entry = zip.by_index(*index).map_err(zip_error)?;
        let mut h = header_for(tar::EntryType::Regular, entry.size(), 0o644);
        let name = format!("filestore/{}", rest.display());
        tar.append_data(&mut h, &path, Declared::new(entry, &name))
            .context("writing filestore.tar")?;
    }
    let mut hashing = tar.into_inner()?;
    hashing.flush()?;
    let (file, size, sha256) = hashing.finish();
    file.get_ref().sync_all()?;
    Ok(Part {
        name: "filestore.tar".into(),
        size,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_read_to_its_declared_size_exactly() {
        let read = |data: &[u8], declared: u64| {
            let mut r = Declared {
                inner: data,
                name: "filestore/ab/x".into(),
                declared,
                read: 0,
            };
            let mut out = Vec::new();
            r.read_to_end(&mut out).map(|_| out)
        };
        assert_eq!(read(b"abcd", 4).unwrap(), b"abcd");
        let more = read(b"abcde", 4).unwrap_err().to_string();
        assert!(
            more.contains("filestore/ab/x: more bytes than the 4 bytes the zip declared"),
            "{more}"
        );
        let fewer = read(b"abc", 4).unwrap_err().to_string();
        assert!(fewer.contains("fewer bytes"), "{fewer}");
    }
}

/// Fuzzing by property: any zip, well-formed or not, is inspected to contents whose filestore
/// paths stay inside the filestore, or refused with a reason; never a panic.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn entry_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("dump.sql".to_string()),
            Just("manifest.json".to_string()),
            "filestore/[a-f0-9]{2}/[a-f0-9]{4}",
            "(\\.\\./|/|filestore/\\.\\./|filestore/)[a-z./]{0,12}",
            "[a-z]{1,8}",
        ]
    }

    fn zip_bytes(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            let options = zip::write::SimpleFileOptions::default();
            if zip.start_file(name.as_str(), options).is_ok() {
                zip.write_all(data).unwrap();
            }
        }
        zip.finish().unwrap().into_inner()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn any_zip_is_inspected_safely_or_refused(
            entries in proptest::collection::vec(
                (entry_name(), proptest::collection::vec(any::<u8>(), 0..64)), 0..6),
            // Bytes overwritten at random: a damaged or forged zip.
            damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        ) {
            let mut bytes = zip_bytes(&entries);
            for (at, byte) in damage {
                if !bytes.is_empty() {
                    let i = at.index(bytes.len());
                    bytes[i] = byte;
                }
            }
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), &bytes).unwrap();
            match inspect(file.path()) {
                Ok(contents) => {
                    for (_, path, _) in &contents.files {
                        prop_assert!(path.is_relative(), "{path:?}");
                        prop_assert!(
                            path.components().all(|c| matches!(c, std::path::Component::Normal(_))),
                            "{path:?}"
                        );
                    }
                    if let Some(m) = contents.manifest {
                        prop_assert!(m.is_object());
                    }
                }
                Err(e) => {
                    let said = format!("{e:#}");
                    prop_assert!(!said.is_empty());
                }
            }
        }

        #[test]
        fn an_entry_gives_its_declared_bytes_or_an_error(
            data in proptest::collection::vec(any::<u8>(), 0..100),
            declared in 0u64..120,
        ) {
            let mut r = Declared { inner: &data[..], name: "e".into(), declared, read: 0 };
            let mut out = Vec::new();
            match r.read_to_end(&mut out) {
                Ok(_) => {
                    prop_assert_eq!(data.len() as u64, declared);
                    prop_assert_eq!(out, data);
                }
                Err(_) => prop_assert_ne!(data.len() as u64, declared),
            }
        }
    }
}
