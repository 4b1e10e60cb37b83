//! A release's stack images, at the plant: which services its bundle moves, loading the bundle
//! into Docker, and upgrading those services through the daemon's own control socket, exactly
//! as `plantd stack apply` does (pre-upgrade backup, the supervisor's health gate, rollback to
//! the old image). All or nothing: when one service rolls back, the others go back too, and the
//! release is reported rolled back before its binary is tried.
//!
//! A service moved by a bundle is recorded in `DATA_DIR/stack/images.json` (see
//! [`crate::stack::images::Override`]), which the stack's spec reads, so that a restart of
//! plantd or a later `stack apply` keeps the new image.

use std::path::Path;
use std::time::{Duration, Instant};

use super::agent::Failure;
use super::release::Manifest;
use crate::config::StackConfig;
use crate::control::{self, Request, Response};
use crate::stack::images::{self as bundle, Override};
use crate::stack::spec::{self, Service};
use crate::stack::StackEvent;

/// The services a bundle moves, and to what.
pub type Moves = Vec<(Service, Override)>;

/// The services the bundle with `tags` moves on this plant (`Ok`), or why it moves none (`Err`:
/// not a failure, the binary is tried all the same). An outer error refuses the release.
pub(super) fn plan(
    stack: &StackConfig,
    data_dir: &Path,
    tags: &[String],
) -> Result<Result<Moves, String>, String> {
    let current =
        bundle::read_overrides(&spec::stack_dir(data_dir)).map_err(|e| format!("{e:#}"))?;
    let configured: Vec<(Service, String)> = Service::ALL
        .into_iter()
        .map(|s| (s, spec::configured_image(stack, s)))
        .collect();
    let moves = bundle::plan(&configured, &current, tags);
    if moves.is_empty() {
        return Ok(Err(format!(
            "the stack runs the images of the release's bundle ({}) already, or none of their repositories",
            tags.join(", ")
        )));
    }
    Ok(Ok(moves))
}

/// Loads the verified bundle at `file` and moves the services `moves` names; returns what
/// happened, for the outcome's reason.
pub(super) async fn apply(
    data_dir: &Path,
    stack: &StackConfig,
    file: &Path,
    manifest: &Manifest,
    moves: Moves,
) -> Result<String, Failure> {
    let refuse = Failure::Refused;
    let signed = manifest
        .images
        .as_ref()
        .map(|i| i.tags.clone())
        .unwrap_or_default();
    let path = file.to_path_buf();
    let mut tags = tokio::task::spawn_blocking(move || bundle::check_bundle(&path))
        .await
        .map_err(|e| refuse(format!("checking the image bundle: {e}")))?
        .map_err(|e| refuse(format!("{e:#}")))?;
    tags.sort();
    tags.dedup();
    if tags != signed {
        return Err(refuse(format!(
            "the image bundle carries {} but the signed release names {}",
            tags.join(", "),
            signed.join(", ")
        )));
    }
    let engine = crate::stack::docker::Engine::connect(stack.docker_socket.as_deref())
        .await
        .map_err(|e| refuse(format!("the Docker engine is unreachable: {e}")))?;
    bundle::load(&engine, file)
        .await
        .map_err(|e| refuse(format!("loading the stack images: {e:#}")))?;
    for (_, o) in &moves {
        match engine.has_image(&o.image).await {
            Ok(true) => {}
            Ok(false) => {
                return Err(refuse(format!(
                    "{} is not in Docker after loading the bundle",
                    o.image
                )))
            }
            Err(e) => return Err(refuse(format!("looking for {} in Docker: {e}", o.image))),
        }
    }

    let dir = spec::stack_dir(data_dir);
    let socket = control::socket_path(data_dir);
    let before = bundle::read_overrides(&dir).map_err(|e| refuse(format!("{e:#}")))?;
    let mut after = before.clone();
    for (service, o) in &moves {
        after.insert(*service, o.clone());
    }
    let seen = events(&socket).await.map_err(refuse)?;
    bundle::write_overrides(&dir, &after).map_err(|e| refuse(format!("{e:#}")))?;
    if let Err(e) = stack_apply(&socket).await {
        let _ = bundle::write_overrides(&dir, &before);
        return Err(refuse(format!("upgrading the stack: {e}")));
    }
    let verdicts = match verdicts(&socket, &seen, &moves, stack.upgrade_deadline).await {
        Ok(v) => v,
        Err(e) => moves.iter().map(|(s, _)| (*s, Err(e.clone()))).collect(),
    };
    let failed: Vec<String> = verdicts
        .iter()
        .filter_map(|(s, v)| v.as_ref().err().map(|why| format!("{s}: {why}")))
        .collect();
    let moved: Vec<String> = moves
        .iter()
        .map(|(s, o)| format!("{s} on {}", o.image))
        .collect();
    if failed.is_empty() {
        return Ok(format!("stack images: {} healthy", moved.join(", ")));
    }
    // All or nothing: the services that passed go back too, through the same gate.
    let back = bundle::write_overrides(&dir, &before)
        .map_err(|e| format!("{e:#}"))
        .and(stack_apply(&socket).await.map(|_| ()));
    Err(Failure::RolledBack(format!(
        "stack images did not pass the health gate ({}); {}",
        failed.join("; "),
        match back {
            Ok(()) => format!(
                "the stack goes back to its previous images; version {} runs on",
                super::version()
            ),
            Err(e) => format!("putting the previous images back failed: {e}"),
        }
    )))
}

async fn stack_apply(socket: &Path) -> Result<String, String> {
    match control::call(socket, &Request::StackApply).await {
        Ok(Response::Done { message }) => Ok(message),
        Ok(Response::Error { message }) => Err(message),
        Ok(other) => Err(format!("unexpected answer to stack apply: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

async fn events(socket: &Path) -> Result<Vec<StackEvent>, String> {
    match control::call(socket, &Request::StackEvents).await {
        Ok(Response::StackEvents { events }) => Ok(events),
        Ok(Response::Error { message }) => Err(message),
        Ok(other) => Err(format!("unexpected answer to stack events: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Waits for the supervisor's verdict on each moved service: `upgrade_done` or `rollback`
/// among the events after `seen`.
async fn verdicts(
    socket: &Path,
    seen: &[StackEvent],
    moves: &Moves,
    deadline: Duration,
) -> Result<Vec<(Service, Result<(), String>)>, String> {
    // The gate's own deadline, and time for the old container to stop and the new to start.
    let give_up = Instant::now() + deadline + Duration::from_secs(120);
    loop {
        let all = events(socket).await?;
        let fresh = after(&all, seen);
        let found: Vec<(Service, Option<Result<(), String>>)> = moves
            .iter()
            .map(|(service, o)| {
                let verdict = fresh
                    .iter()
                    .filter(|e| e.service.as_deref() == Some(service.as_str()))
                    .find_map(|e| match e.event.as_str() {
                        "upgrade_done" if e.message.contains(&o.image) => Some(Ok(())),
                        "rollback" if e.message.starts_with(&o.image) => {
                            Some(Err(e.message.clone()))
                        }
                        _ => None,
                    });
                (*service, verdict)
            })
            .collect();
        if found.iter().all(|(_, v)| v.is_some()) {
            return Ok(found
                .into_iter()
                .map(|(s, v)| (s, v.expect("all found")))
                .collect());
        }
        if Instant::now() > give_up {
            return Err(format!(
                "no verdict from the stack's health gate within {} s",
                (deadline + Duration::from_secs(120)).as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The events of `all` that came after the last of `seen` (all of them when it is gone).
fn after<'a>(all: &'a [StackEvent], seen: &[StackEvent]) -> &'a [StackEvent] {
    match seen.last() {
        None => all,
        Some(last) => match all.iter().rposition(|e| e == last) {
            Some(i) => &all[i + 1..],
            None => all,
        },
    }
}
