//! `plantd token create|list|revoke`.
//!
//! With the daemon running, these go through its control socket so that its token table
//! changes at once; with no daemon, they open the token store directly. Both paths call the
//! same [`Tokens`] methods.

use anyhow::bail;

use crate::config::PlantConfig;
use crate::control::{self, CallError, Request, Response};
use crate::tokens::{Device, Scope, Tokens};

/// Asks the daemon, or `None` when none runs on this data directory.
async fn ask(config: &PlantConfig, request: Request) -> anyhow::Result<Option<Response>> {
    match control::call(&control::socket_path(&config.data_dir), &request).await {
        Ok(Response::Error { message }) => bail!("{message}"),
        Ok(r) => Ok(Some(r)),
        Err(CallError::NotRunning(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn store(config: &PlantConfig) -> anyhow::Result<Tokens> {
    crate::fsutil::create_private_dir(&config.data_dir)?;
    Ok(Tokens::open(&config.data_dir)?)
}

pub async fn create(
    config: &PlantConfig,
    device: &str,
    kinds: Option<Vec<String>>,
) -> anyhow::Result<()> {
    let scope = Scope::parse(kinds.as_deref())?;
    if let (Scope::Kinds(wanted), Some(apply)) = (&scope, &config.apply) {
        let known = apply.kinds.names();
        if let Some(unknown) = wanted.iter().find(|k| !known.contains(&k.as_str())) {
            bail!(
                "--kinds: this plant does not take kind {unknown:?} ([apply] in plant.toml knows {}); a token may send only kinds the plant knows",
                known.join(", ")
            );
        }
    }
    let request = Request::TokenCreate {
        device: device.to_string(),
        kinds: match &scope {
            Scope::Default => None,
            Scope::Kinds(k) => Some(k.iter().cloned().collect()),
        },
    };
    let token = match ask(config, request).await? {
        Some(Response::Token { token, .. }) => token,
        Some(other) => bail!("unexpected answer from the daemon: {other:?}"),
        None => store(config)?.create(device, &scope)?,
    };
    println!(
        "Token for device {device:?}, which may send {} (shown once; the plant keeps only its hash).",
        scope.describe()
    );
    println!("Devices send it as the header \"Authorization: Bearer TOKEN\":");
    println!("{token}");
    Ok(())
}

pub async fn list(config: &PlantConfig) -> anyhow::Result<()> {
    let devices: Vec<Device> = match ask(config, Request::TokenList).await? {
        Some(Response::Devices { devices }) => devices,
        Some(other) => bail!("unexpected answer from the daemon: {other:?}"),
        None => store(config)?.list()?,
    };
    if devices.is_empty() {
        println!("no device tokens; create one with `plantd token create --device NAME`");
        return Ok(());
    }
    println!("{:<32} {:<26} {:<32} kinds", "device", "created", "state");
    for d in devices {
        let state = match d.revoked_at_ms {
            Some(ms) => format!("revoked {}", crate::clock::rfc3339_ms(ms)),
            None => "active".into(),
        };
        println!(
            "{:<32} {:<26} {state:<32} {}",
            d.name,
            crate::clock::rfc3339_ms(d.created_at_ms),
            d.scope.describe()
        );
    }
    Ok(())
}

pub async fn revoke(config: &PlantConfig, device: &str) -> anyhow::Result<()> {
    let request = Request::TokenRevoke {
        device: device.to_string(),
    };
    match ask(config, request).await? {
        Some(Response::Done { message }) => println!("{message}"),
        Some(other) => bail!("unexpected answer from the daemon: {other:?}"),
        None => {
            store(config)?.revoke(device)?;
            println!("revoked the token of device {device:?}");
        }
    }
    Ok(())
}
