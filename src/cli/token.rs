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

/// The devices, from the running daemon (its activity as of now) or, with none, from the
/// store (the activity it last wrote, at most half a minute old).
async fn devices(config: &PlantConfig) -> anyhow::Result<Vec<Device>> {
    Ok(match ask(config, Request::TokenList).await? {
        Some(Response::Devices { devices }) => devices,
        Some(other) => bail!("unexpected answer from the daemon: {other:?}"),
        None => store(config)?.list()?,
    })
}

fn state(d: &Device) -> String {
    match d.revoked_at_ms {
        Some(ms) => format!("revoked {}", crate::clock::rfc3339_ms(ms)),
        None => "active".into(),
    }
}

fn last_seen(d: &Device) -> String {
    d.activity
        .last_seen_ms
        .map_or_else(|| "never".into(), crate::clock::rfc3339_ms)
}

pub async fn list(config: &PlantConfig, json: bool) -> anyhow::Result<()> {
    let devices = devices(config).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&devices)?);
        return Ok(());
    }
    if devices.is_empty() {
        println!("no device tokens; create one with `plantd token create --device NAME`");
        return Ok(());
    }
    println!(
        "{:<32} {:<26} {:<34} {:<26} {:>9} {:>8} kinds",
        "device", "created", "state", "last seen", "accepted", "refused"
    );
    for d in devices {
        println!(
            "{:<32} {:<26} {:<34} {:<26} {:>9} {:>8} {}",
            d.name,
            crate::clock::rfc3339_ms(d.created_at_ms),
            state(&d),
            last_seen(&d),
            d.activity.accepted,
            d.activity.refused,
            d.scope.describe()
        );
    }
    Ok(())
}

pub async fn show(config: &PlantConfig, device: &str) -> anyhow::Result<()> {
    let devices = devices(config).await?;
    let Some(d) = devices.iter().find(|d| d.name == device) else {
        bail!("no device named {device:?}; `plantd token list` shows the devices");
    };
    println!("device:    {}", d.name);
    println!("state:     {}", state(d));
    println!("created:   {}", crate::clock::rfc3339_ms(d.created_at_ms));
    println!("may send:  {}", d.scope.describe());
    println!("last seen: {}", last_seen(d));
    println!(
        "accepted:  {} transactions; refused: {} requests",
        d.activity.accepted, d.activity.refused
    );
    if d.activity.recent_refusals.is_empty() {
        println!("no refusals recorded");
    } else {
        println!("latest refusals, newest first:");
        for r in d.activity.recent_refusals.iter().rev() {
            println!(
                "  {}  {} {}: {}",
                crate::clock::rfc3339_ms(r.at_ms),
                r.status,
                r.code,
                r.message
            );
        }
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
