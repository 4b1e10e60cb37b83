//! `plantd backup run|list|verify|restore|export|import`: straight to the Docker engine and the backup
//! directory (a restore asks the daemon, when one runs, to hold Odoo).

use crate::config::PlantConfig;

pub async fn run(config: &PlantConfig, json: bool) -> anyhow::Result<()> {
    let taken = crate::backup::take(config).await?;
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
    println!("{:<24} {:<32} {:>10}  VERIFIED", "ID", "CREATED", "SIZE");
    for b in &listed {
        println!(
            "{:<24} {:<32} {:>10}  {}",
            b.id,
            b.created_at,
            bytesize::ByteSize(b.size).to_string(),
            if b.verified { "yes" } else { "no" }
        );
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
    let done = crate::backup::restore::restore(config, id, &keys, health_deadline).await?;
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
