//! `plantd stack ...` (through the running daemon) and `plantd images ...` (straight to the
//! Docker engine, so that an air-gapped plant can load its images before the first start).

use std::path::Path;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::config::PlantConfig;
use crate::control::{self, Request, Response};

async fn ask(config: &PlantConfig, request: Request) -> anyhow::Result<Response> {
    match control::call(&control::socket_path(&config.data_dir), &request).await? {
        Response::Error { message } | Response::Refused { message } => bail!("{message}"),
        r => Ok(r),
    }
}

fn unexpected(r: Response) -> anyhow::Error {
    anyhow::anyhow!("unexpected answer from the daemon: {r:?}")
}

/// `plantd apply status [--json]`.
pub async fn apply_status(config: &PlantConfig, json: bool) -> anyhow::Result<()> {
    let r = match ask(config, Request::ApplyStatus).await? {
        Response::Apply(r) => r,
        other => return Err(unexpected(other)),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "applied through seq {} of {} (records created as {})",
        r.applied_seq, r.last_seq, r.external_ids
    );
    match (r.stopped_at, &r.message) {
        (Some(seq), Some(m)) => println!("STOPPED at seq {seq}: {m}
  fix the cause and `plantd apply retry {seq}`, or `plantd apply park {seq}` to let the rest through"),
        _ => println!("running"),
    }
    if let Some(w) = &r.waiting {
        println!("waiting: {w}");
    }
    match r.odoo_module {
        Some(true) => println!("Odoo has plantd_apply: a batch goes in one call"),
        Some(false) => println!(
            "Odoo lacks plantd_apply: each run of a batch takes several calls (`plantd apply odoo-module --help`)"
        ),
        None => {}
    }
    if let Some(w) = &r.rewound {
        let by = match &w.backup {
            Some(id) => format!("the restore of backup {id}"),
            None => "an admin".to_string(),
        };
        println!("rewound by {by} at {}: {} ({})", w.at, w.message(), w.why);
    }
    for p in &r.parked {
        println!(
            "parked: seq {} ({}, key {:?}, {}): {}",
            p.seq, p.kind, p.key, p.parked_at, p.message
        );
    }
    Ok(())
}

/// `plantd apply retry|park|replay SEQ`.
pub async fn apply_do(config: &PlantConfig, request: Request) -> anyhow::Result<()> {
    match ask(config, request).await? {
        Response::Done { message } => {
            println!("{message}");
            Ok(())
        }
        Response::Rewound {
            rewound: Some(r), ..
        } => {
            println!("{}", r.message());
            Ok(())
        }
        Response::Rewound {
            rewound: None,
            applied_seq,
        } => {
            println!("the apply cursor is at seq {applied_seq}, not past that: nothing changed");
            Ok(())
        }
        other => Err(unexpected(other)),
    }
}

/// `plantd odoo call MODEL METHOD [ARGS] [--kwargs JSON]`.
pub async fn odoo_call(
    config: &PlantConfig,
    model: String,
    method: String,
    args: Option<String>,
    kwargs: Option<String>,
) -> anyhow::Result<()> {
    let args: Vec<serde_json::Value> = match args.as_deref() {
        None => Vec::new(),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!("ARGS: {e}; give the positional arguments as a JSON array, such as '[[[\"name\", \"=\", \"Acme\"]]]'")
        })?,
    };
    let kwargs: serde_json::Map<String, serde_json::Value> = match kwargs.as_deref() {
        None => serde_json::Map::new(),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!("--kwargs: {e}; give the named arguments as a JSON object, such as '{{\"limit\": 5}}'")
        })?,
    };
    let request = Request::OdooCall {
        model,
        method,
        args,
        kwargs,
    };
    match ask(config, request).await? {
        Response::Odoo { answer, via } => {
            eprintln!("{via}");
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
        other => Err(unexpected(other)),
    }
}

pub async fn status(config: &PlantConfig, json: bool) -> anyhow::Result<()> {
    let report = match ask(config, Request::StackStatus).await? {
        Response::Stack(r) => r,
        other => return Err(unexpected(other)),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report.services)?);
        return Ok(());
    }
    println!(
        "stack {}: Docker engine {}{}",
        report.name,
        report.docker,
        if report.down {
            " (taken down by an admin)"
        } else {
            ""
        }
    );
    println!(
        "{:<9} {:<9} {:<10} {:>8}  {:<25} {:<34} IMAGE",
        "SERVICE", "STATE", "HEALTH", "RESTARTS", "SINCE", "CONTAINER"
    );
    for s in &report.services {
        println!(
            "{:<9} {:<9} {:<10} {:>8}  {:<25} {:<34} {}",
            s.service,
            s.state,
            if s.breaker { "BREAKER" } else { &s.health },
            s.restarts,
            s.since.as_deref().unwrap_or("-"),
            s.container.as_deref().unwrap_or("-"),
            s.image
        );
        if !s.detail.is_empty() {
            println!("          {}", s.detail);
        }
    }
    Ok(())
}

/// `plantd stack secret NAME`: read from secrets.json itself, so that it works with the daemon
/// stopped, and only for whoever may read that file. Printed to stdout, never logged.
pub fn secret(config: &PlantConfig, name: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let field = match name {
        "odoo-admin" => "odoo_admin_login_password",
        other => bail!("no secret {other:?}; the one there is: odoo-admin (the password of Odoo's login admin)"),
    };
    let path = crate::stack::spec::stack_dir(&config.data_dir).join("secrets.json");
    let meta = std::fs::metadata(&path).with_context(|| {
        format!(
            "reading {}: plantd makes it at the stack's first start",
            path.display()
        )
    })?;
    let me = rustix::process::geteuid();
    if !me.is_root() && meta.uid() != me.as_raw() {
        bail!(
            "{} belongs to uid {}; run this as that user or as root",
            path.display(),
            meta.uid()
        );
    }
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let secrets: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display()))?;
    match secrets.get(field).and_then(|v| v.as_str()) {
        Some(value) if !value.is_empty() => {
            println!("{value}");
            Ok(())
        }
        _ => bail!(
            "{} has no {name} password yet (it was written by an older plantd); the daemon adds it at its next start",
            path.display()
        ),
    }
}

pub async fn simple(config: &PlantConfig, request: Request) -> anyhow::Result<()> {
    match ask(config, request).await? {
        Response::Done { message } => println!("{message}"),
        Response::Lines { lines } => lines.iter().for_each(|l| println!("{l}")),
        other => return Err(unexpected(other)),
    }
    Ok(())
}

/// `plantd stack down`: through the daemon when it runs (it stops supervising first); when it
/// does not, straight to the Docker engine, so that a stopped plantd is no obstacle.
pub async fn down(config: &PlantConfig, delete_volumes: bool) -> anyhow::Result<()> {
    let request = Request::StackDown { delete_volumes };
    match control::call(&control::socket_path(&config.data_dir), &request).await {
        Err(control::CallError::NotRunning(_)) => {
            let Some(stack) = &config.stack else {
                bail!("plant.toml has no [stack] section: there is no stack to take down");
            };
            eprintln!("plantd is not running: taking the stack down directly");
            let lines =
                crate::stack::down_without_daemon(stack, &config.data_dir, delete_volumes).await?;
            if lines.is_empty() {
                println!("nothing to remove: the stack has no containers");
            }
            lines.iter().for_each(|l| println!("{l}"));
            Ok(())
        }
        Err(e) => Err(e.into()),
        Ok(Response::Error { message } | Response::Refused { message }) => bail!("{message}"),
        Ok(Response::Lines { lines }) => {
            lines.iter().for_each(|l| println!("{l}"));
            Ok(())
        }
        Ok(other) => Err(unexpected(other)),
    }
}

pub async fn events(config: &PlantConfig, json: bool) -> anyhow::Result<()> {
    let events = match ask(config, Request::StackEvents).await? {
        Response::StackEvents { events } => events,
        other => return Err(unexpected(other)),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(());
    }
    for e in &events {
        println!(
            "{}  {:<8} {:<16} {}",
            e.at,
            e.service.as_deref().unwrap_or("-"),
            e.event,
            e.message
        );
    }
    Ok(())
}

async fn engine_and_images(
    config: &PlantConfig,
) -> anyhow::Result<(crate::stack::docker::Engine, Vec<String>, Vec<bool>)> {
    let Some(stack) = &config.stack else {
        bail!("plant.toml has no [stack] section, so there are no stack images");
    };
    let spec = crate::stack::spec::build(stack, &config.data_dir)?;
    let engine = crate::stack::docker::Engine::connect(stack.docker_socket.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("the Docker engine is unreachable: {e}"))?;
    let images = spec.services.iter().map(|s| s.image.clone()).collect();
    let pullable = spec.services.iter().map(|s| s.pullable).collect();
    Ok((engine, images, pullable))
}

/// `plantd images pull`: pulls what is missing; a present image is never pulled again.
pub async fn pull(config: &PlantConfig) -> anyhow::Result<()> {
    let (engine, images, pullable) = engine_and_images(config).await?;
    for (image, pullable) in images.iter().zip(pullable) {
        if engine.has_image(image).await.map_err(anyhow::Error::msg)? {
            println!("{image}: present");
        } else if !pullable {
            bail!("{image} is missing and is a local image: build it with images/build-local.sh, or load a bundle with `plantd images load`");
        } else {
            engine.pull(image).await.map_err(anyhow::Error::msg)?;
            println!("{image}: pulled");
        }
    }
    Ok(())
}

/// `plantd images save FILE`: the stack's images as one `docker save` tar.
pub async fn save(config: &PlantConfig, file: &Path) -> anyhow::Result<()> {
    let (engine, images, _) = engine_and_images(config).await?;
    for image in &images {
        if !engine.has_image(image).await.map_err(anyhow::Error::msg)? {
            bail!("{image} is not on this machine; `plantd images pull` it first");
        }
    }
    let partial = file.with_extension("partial");
    let mut out = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("creating {}", partial.display()))?;
    let names: Vec<&str> = images.iter().map(String::as_str).collect();
    let mut stream = engine.docker().export_images(&names);
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.context("reading the images from Docker")?;
        bytes += chunk.len() as u64;
        out.write_all(&chunk)
            .await
            .with_context(|| format!("writing {}", partial.display()))?;
    }
    out.sync_all().await?;
    tokio::fs::rename(&partial, file).await?;
    println!(
        "saved {} ({}) to {}",
        images.join(", "),
        bytesize::ByteSize(bytes),
        file.display()
    );
    Ok(())
}

/// `plantd images load FILE`: loads a bundle made by `plantd images save` (or `docker save`).
pub async fn load(config: &PlantConfig, file: &Path) -> anyhow::Result<()> {
    let (engine, images, _) = engine_and_images(config).await?;
    crate::stack::bundle::check_bundle(file)?;
    for line in crate::stack::bundle::load(&engine, file).await? {
        println!("{line}");
    }
    for image in &images {
        let present = engine.has_image(image).await.map_err(anyhow::Error::msg)?;
        println!(
            "{image}: {}",
            if present {
                "present"
            } else {
                "still missing (not in this bundle)"
            }
        );
    }
    Ok(())
}
