//! `plantd enroll`, `plantd island`, `plantd rejoin`.

use anyhow::bail;

use crate::config::PlantConfig;
use crate::control::{self, Request, Response};

pub async fn run(config: &PlantConfig, hub: &str, token: &str) -> anyhow::Result<()> {
    crate::fsutil::create_private_dir(&config.data_dir)?;
    let e = crate::enrollment::enroll(&config.data_dir, hub, token).await?;
    println!(
        "enrolled as plant {:?} with the hub at {hub}; replication goes to {}",
        e.plant,
        e.quic.join(", ")
    );
    if control::socket_path(&config.data_dir).exists() {
        println!("restart plantd (systemctl restart plantd) to start replicating");
    }
    Ok(())
}

pub async fn island(config: &PlantConfig, on: bool) -> anyhow::Result<()> {
    let request = if on { Request::Island } else { Request::Rejoin };
    match control::call(&control::socket_path(&config.data_dir), &request).await? {
        Response::Done { message } => println!("{message}"),
        Response::Error { message } => bail!("{message}"),
        other => bail!("unexpected answer from the daemon: {other:?}"),
    }
    Ok(())
}
