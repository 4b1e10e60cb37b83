//! Odoo's own backup format, the database manager's zip (also what odoo.sh hands out):
//! `dump.sql` (plain SQL, `pg_dump --no-owner`) first, then `filestore/` (the database's
//! attachments, without the database's name in the path) and `manifest.json` (`odoo_dump`,
//! `db_name`, `version`, `version_info`, `major_version`, `pg_version`, `modules`).
//!
//! `export` turns a backup into such a zip: the custom-format dump becomes SQL through
//! `pg_restore -f -` in the postgres container (no database touched), the filestore's files
//! are copied across. `import` makes a new backup from one: the SQL is run by `psql` (stopping
//! at the first error) into a scratch database in the postgres container, which is counted and
//! dumped as the backup's `db.dump`, then dropped; the files become `filestore.tar`. The zip
//! is checked before anything is made: a zip without `dump.sql`, with names outside its own
//! directory, or with SQL that `psql` rejects, leaves no backup and no database behind.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};

use super::archive::{Archive, Keys};
use super::{HashingFile, Listed, Manifest, Part, FORMAT};
use crate::config::PlantConfig;
use crate::stack::spec::{Service, DB_USER};

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
    /// Indexes of the filestore's files, with their paths under `filestore/`.
    files: Vec<(usize, PathBuf)>,
}

fn inspect(zip_path: &Path) -> anyhow::Result<Contents> {
    let file =
        std::fs::File::open(zip_path).with_context(|| format!("opening {}", zip_path.display()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| anyhow!("not a zip archive: {e}"))?;
    let mut has_dump = false;
    let mut manifest = None;
    let mut files = Vec::new();
    for i in 0..zip.len() {
        let entry = zip.by_index(i).map_err(|e| anyhow!("entry {i}: {e}"))?;
        let raw = entry.name().map_err(zip_error)?.to_string();
        let Some(name) = entry.enclosed_name() else {
            bail!("{raw:?} points outside the zip's own directory");
        };
        if name == Path::new("dump.sql") {
            has_dump = true;
        } else if name == Path::new("manifest.json") {
            if entry.size() > 16 << 20 {
                bail!("manifest.json is over 16 MiB");
            }
            let mut text = String::new();
            entry
                .take(16 << 20)
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
                files.push((i, rest.to_path_buf()));
            }
        }
    }
    if !has_dump {
        bail!("it has no dump.sql: not a zip from Odoo's database manager (a backup \"with filestore\", as zip) or odoo.sh");
    }
    Ok(Contents { manifest, files })
}

/// Makes a new backup from an Odoo zip; returns it as listed.
pub async fn import(config: &PlantConfig, zip_path: &Path) -> anyhow::Result<Listed> {
    let checked = zip_path.to_path_buf();
    let contents = tokio::task::spawn_blocking(move || inspect(&checked))
        .await
        .context("reading the zip")?
        .with_context(|| format!("{} is refused; nothing was made", zip_path.display()))?;
    let live = super::live(config).await?;
    let backups = super::dir(&config.data_dir);
    crate::plant::create_private_dir(&backups)?;
    let _lock = super::lock(&backups)?;
    super::remove_leftovers(&backups);
    let id = super::new_id()?;
    let work = backups.join(format!(".{id}.parts"));
    crate::plant::create_private_dir(&work)?;
    // The zip's SQL runs as a role of its own that owns only the scratch database: not a
    // superuser, so it cannot reach the server's files or programs (COPY ... PROGRAM).
    let scratch = format!("plantd_import_{}", super::random_hex(6)?);
    let admin = super::admin(&live).await?;
    super::sweep_scratch(&admin).await;
    // One statement per call: CREATE DATABASE cannot run inside the implicit transaction of
    // a multi-statement batch.
    for statement in [
        format!("CREATE ROLE \"{scratch}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"),
        format!("CREATE DATABASE \"{scratch}\" OWNER \"{scratch}\""),
    ] {
        admin
            .client
            .batch_execute(&statement)
            .await
            .context("creating the scratch database")?;
    }
    let made = make(config, &live, zip_path, &contents, &scratch, &id, &work).await;
    let dropped = match admin
        .client
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{scratch}\""))
        .await
    {
        Ok(()) => {
            admin
                .client
                .batch_execute(&format!("DROP ROLE IF EXISTS \"{scratch}\""))
                .await
        }
        Err(e) => Err(e),
    };
    admin.close().await;
    let _ = std::fs::remove_dir_all(&work);
    let listed =
        made.with_context(|| format!("{} is refused; nothing was made", zip_path.display()))?;
    dropped.context("dropping the scratch database")?;
    Ok(listed)
}

async fn make(
    config: &PlantConfig,
    live: &super::Live,
    zip_path: &Path,
    contents: &Contents,
    scratch: &str,
    id: &str,
    work: &Path,
) -> anyhow::Result<Listed> {
    let pg_container = &live.spec.get(Service::Postgres).container;
    // dump.sql into the scratch database, stopping at its first error.
    let source = zip_path.to_path_buf();
    let (mut reader, feeder) = super::pipe(move |out| {
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&source)?).map_err(zip_error)?;
        let sql = zip.by_name("dump.sql").map_err(zip_error)?;
        copy_sql(std::io::BufReader::new(sql), out)
    });
    let mut sink = tokio::io::sink();
    let ran = live
        .engine
        .exec(
            pg_container,
            &[
                "psql",
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                scratch,
                "-d",
                scratch,
                "-f",
                "-",
            ],
            Some(&mut reader),
            &mut sink,
        )
        .await;
    drop(reader);
    let fed = feeder.await.context("reading dump.sql from the zip")?;
    ran.map_err(|e| anyhow!("dump.sql: {e}"))?;
    fed.context("reading dump.sql from the zip")?;

    let pg = super::connect(live, scratch).await?;
    let tables = super::count_tables(&pg.client).await?;
    let postgres_version: String = pg
        .client
        .query_one("SHOW server_version", &[])
        .await?
        .get(0);
    let (odoo_version, modules) = super::odoo_modules(&pg.client).await;
    pg.close().await;

    let mut parts = Vec::new();
    let mut dump = HashingFile::create(&work.join("db.dump")).await?;
    live.engine
        .exec(
            pg_container,
            &["pg_dump", "-U", DB_USER, "-Fc", "-d", scratch],
            None,
            &mut dump,
        )
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

/// Copies a plain SQL dump, refusing psql's own commands (`\\!` runs a shell, `\\connect`
/// reaches another database) outside COPY data; pg_dump's `\\restrict` and `\\unrestrict`
/// are let through.
fn copy_sql(mut input: impl std::io::BufRead, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut line = Vec::new();
    let (mut number, mut in_copy) = (0u64, false);
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        number += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if in_copy {
            in_copy = text != b"\\.";
        } else if text.starts_with(b"COPY ") && text.ends_with(b"FROM stdin;") {
            in_copy = true;
        } else if text.starts_with(b"\\")
            && !text.starts_with(b"\\restrict ")
            && !text.starts_with(b"\\unrestrict ")
        {
            let command: String = String::from_utf8_lossy(text).chars().take(40).collect();
            bail!(
                "dump.sql, line {number}: {command:?} is a psql command, which an imported dump may not run (only SQL and COPY data)"
            );
        }
        out.write_all(&line)?;
    }
}

/// The zip's `filestore/` files as `filestore.tar`, under `filestore/DATABASE/`, owned by
/// Odoo's user (101) as in Odoo's image.
fn filestore_tar(
    zip_path: &Path,
    files: &[(usize, PathBuf)],
    database: &str,
    out: &Path,
) -> anyhow::Result<Part> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(zip_path)?).map_err(zip_error)?;
    let file = std::fs::File::create(out)?;
    let mut tar = tar::Builder::new(super::Hashing::new(std::io::BufWriter::new(file)));
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
    for (index, rest) in files {
        let path = base.join(rest);
        for parent in path.ancestors().skip(1) {
            if parent.starts_with(&base) && dirs.insert(parent.to_path_buf()) {
                let mut h = header_for(tar::EntryType::Directory, 0, 0o755);
                tar.append_data(&mut h, parent, std::io::empty())?;
            }
        }
        let entry = zip.by_index(*index).map_err(zip_error)?;
        let mut h = header_for(tar::EntryType::Regular, entry.size(), 0o644);
        tar.append_data(&mut h, &path, entry)
            .with_context(|| format!("filestore/{}", rest.display()))?;
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

    fn run(sql: &str) -> anyhow::Result<String> {
        let mut out = Vec::new();
        copy_sql(sql.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn psql_commands_are_refused_outside_copy_data() {
        let dump = "--\n-- PostgreSQL database dump\n--\n\\restrict abc\nSET x = 1;\nCOPY public.t (a) FROM stdin;\n\\N\n\\\\escaped\n\\.\nSELECT 1;\n\\unrestrict abc\n";
        assert_eq!(
            run(dump).unwrap(),
            dump,
            "a pg_dump's own output passes whole"
        );
        for (bad, line) in [
            ("SELECT 1;\n\\! rm -rf /var/lib/postgresql/data\n", 2),
            ("\\connect odoo\nDROP TABLE res_partner;\n", 1),
            ("COPY t FROM stdin;\n1\n\\.\n\\copy t TO '/tmp/x'\n", 4),
            ("\\i /etc/passwd\r\n", 1),
        ] {
            let e = format!("{:#}", run(bad).unwrap_err());
            assert!(
                e.contains(&format!("dump.sql, line {line}:")) && e.contains("psql command"),
                "{bad:?}: {e}"
            );
        }
    }
}
