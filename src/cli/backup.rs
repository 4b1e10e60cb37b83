//! `plantd backup run|list|verify|restore|export|import`: straight to the Docker engine and the backup
//! directory (a restore asks the daemon, when one runs, to hold Odoo).

use crate::config::PlantConfig;

pub async fn run(config: &PlantConfig, json: bool, verify: bool) -> anyhow::Result<()> {
    let taken = if verify {
        crate::backup::take_verified(config).await?.0
    } else {
        crate::backup::take(config).await?
    };
    print_taken(&taken, json)
}

fn print_taken(taken: &crate::backup::Listed, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&taken)?);
    } else {
        println!(
            "backup written to {} ({})",
            taken.path.display(),
            bytesize::ByteSize(taken.size)
        );
        println!("{}", taken.id);
    }
    Ok(())
}

pub fn list(config: &PlantConfig, json: bool) -> anyhow::Result<()> {
    let listed = crate::backup::list(&config.data_dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<26} {:>10}  {:<8} {:<9} {:<7}",
        "ID", "CREATED", "SIZE", "VERIFIED", "ENCRYPTED", "OFFSITE"
    );
    let yes = |b: bool| if b { "yes" } else { "no" };
    for b in &listed {
        println!(
            "{:<24} {:<26} {:>10}  {:<8} {:<9} {:<7}",
            b.id,
            b.created_at,
            bytesize::ByteSize(b.size).to_string(),
            yes(b.verified),
            yes(b.encrypted),
            yes(b.offsite)
        );
        if let Some(why) = &b.unreadable {
            println!("    unreadable: {why}");
        }
    }
    Ok(())
}

pub async fn verify(
    config: &PlantConfig,
    id: &str,
    identities: &[std::path::PathBuf],
) -> anyhow::Result<()> {
    let keys = crate::backup::archive::keys(&config.data_dir, identities)?;
    let manifest = crate::backup::verify(config, id, &keys).await?;
    println!(
        "backup {id} verified: every part matches its checksum, and the dump restored into a scratch database with the same rows in all {} tables",
        manifest.tables.len()
    );
    Ok(())
}

pub async fn restore(
    config: &PlantConfig,
    id: &str,
    identities: &[std::path::PathBuf],
    health_deadline: std::time::Duration,
    json: bool,
) -> anyhow::Result<()> {
    let keys = crate::backup::archive::keys(&config.data_dir, identities)?;
    let done = crate::backup::restore::restore(
        config,
        id,
        &keys,
        health_deadline,
        &crate::control::Daemon::of(&config.data_dir),
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        println!(
            "backup {id} restored into database {} ({} tables) and its filestore; Odoo was down {:.1} s and is healthy",
            done.database, done.tables, done.odoo_down_s
        );
        println!(
            "the data it replaced is in the safety backup {}",
            done.safety_backup
        );
        println!("{}", done.apply.message);
    }
    Ok(())
}

pub async fn export(
    config: &PlantConfig,
    id: &str,
    identities: &[std::path::PathBuf],
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let keys = crate::backup::archive::keys(&config.data_dir, identities)?;
    let done = crate::backup::odoo_zip::export(config, id, &keys, out).await?;
    println!(
        "backup {id} written as an Odoo database-manager zip: {} ({}, {} filestore files)",
        done.file.display(),
        bytesize::ByteSize(done.size),
        done.files
    );
    Ok(())
}

pub async fn import(
    config: &PlantConfig,
    file: &std::path::Path,
    json: bool,
) -> anyhow::Result<()> {
    let taken = crate::backup::odoo_zip::import(config, file).await?;
    print_taken(&taken, json)
}

pub async fn fetch(config: &PlantConfig, id: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let dir = crate::backup::dir(&config.data_dir);
    crate::backup::check_id(id)?;
    let enrollment = crate::enrollment::load(&config.data_dir)?.context(
        "this plant is not enrolled with a hub; `plantd enroll` first (a rebuilt plant enrolls again under its name)",
    )?;
    let client = crate::enrollment::quic_client(&config.data_dir)?;
    let hubs = if config.hubs.is_empty() {
        enrollment.quic.clone()
    } else {
        config.hubs.clone()
    };
    crate::fsutil::create_private_dir(&dir)?;
    let mut failures = Vec::new();
    for hub in &hubs {
        let attempt = async {
            let (endpoint, conn) = crate::replication::plant::connect(&client, hub).await?;
            let got = crate::backup::offsite::fetch(&conn, id, &dir).await;
            conn.close(0u32.into(), b"bye");
            endpoint.wait_idle().await;
            got
        };
        match attempt.await {
            Ok(path) => {
                // It came from the hub: it is offsite already.
                let _ = crate::fsutil::write_atomic(
                    &crate::backup::offsite::offsite_marker(&dir, id),
                    b"fetched from the hub\n",
                    0o600,
                );
                println!("fetched from {hub}: {}", path.display());
                println!("{id}");
                return Ok(());
            }
            Err(e) => failures.push(format!("{hub}: {e:#}")),
        }
    }
    anyhow::bail!("backup {id} could not be fetched: {}", failures.join("; "))
}
