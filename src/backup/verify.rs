//! Verifying a backup: every part against its checksum, and the dump restored into a scratch
//! database with the same rows in every table.

use super::*;

/// Checks a backup: every part against its checksum, then a restore of the dump into a scratch
/// database in the postgres container, whose row counts must equal the manifest's. The scratch
/// database is dropped whatever happens.
pub async fn verify(
    config: &PlantConfig,
    id: &str,
    keys: &archive::Keys,
) -> anyhow::Result<Manifest> {
    verify_under(config, id, keys, None).await
}

/// [`verify`], under the backup lock the caller holds (`held`), or under its own.
pub(super) async fn verify_under(
    config: &PlantConfig,
    id: &str,
    keys: &archive::Keys,
    held: Option<&Held>,
) -> anyhow::Result<Manifest> {
    let archive = find(&config.data_dir, id, keys)?;
    progress::phase("checking the archive's checksums", None);
    let manifest = checked(&archive).await?;
    let live = live(config).await?;
    let _lock = match held {
        Some(_) => None,
        None => Some(lock(&dir(&config.data_dir))?),
    };
    progress::phase("test-restoring into a scratch database and counting", None);
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
pub(super) fn check_parts(
    archive: &Archive,
    expected: &[Part],
    database: &str,
) -> anyhow::Result<()> {
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
pub(super) fn read_parts(
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
pub(super) fn check_filestore(reader: &mut dyn Read, database: &str) -> anyhow::Result<()> {
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

pub(super) async fn restore_and_count(
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
