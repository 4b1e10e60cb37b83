//! A release's stack images, at the plant: which services its bundle moves, loading the bundle
//! into Docker, and upgrading those services through the daemon's own stack actions
//! ([`StackOps`]), exactly as `plantd stack apply` does (pre-upgrade backup, the supervisor's
//! health gate, rollback to the old image). All or nothing: when one service rolls back, the others go back too, and the
//! release is reported rolled back before its binary is tried.
//!
//! A service moved by a bundle is recorded in `DATA_DIR/stack/images.json` (see
//! [`crate::stack::bundle::Override`]), which the stack's spec reads, so that a restart of
//! plantd or a later `stack apply` keeps the new image. While an upgrade waits for its verdict,
//! `DATA_DIR/stack/images-pending.json` holds the overrides from before it: a daemon that
//! starts and finds it was stopped mid-upgrade puts them back ([`recover`]), and the stack's
//! supervisor takes the services back to their old images through its gate; the release is
//! offered again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::agent::Failure;
use crate::config::StackConfig;
use crate::release::Manifest;
use crate::stack::bundle::{self as bundle, Override, Overrides};
use crate::stack::spec::{self, Service};
use crate::stack::StackEvent;

/// What a stack upgrade asks of the running daemon: its stack's state and events, and
/// plant.toml's `[stack]` applied again, as `plantd stack apply` does (the restart-only
/// settings refused, a backup before a new PostgreSQL or Odoo image). The plant root hands the
/// agent the daemon's own actions, in-process and audited as the update's.
pub trait StackOps: Send + Sync {
    /// The stack's report.
    fn status(&self) -> BoxFuture<'_, Result<crate::stack::StackReport, StackOpsError>>;
    /// The supervisor's recent events, oldest first.
    fn events(&self) -> BoxFuture<'_, Result<Vec<StackEvent>, StackOpsError>>;
    /// Applies plant.toml's `[stack]` again; what was done.
    fn apply(&self) -> BoxFuture<'_, Result<String, StackOpsError>>;
}

/// Why the daemon's stack did not do what a [`StackOps`] call asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StackOpsError {
    /// The daemon's own answer: the stack refused or failed.
    #[error("{0}")]
    Answered(String),
    /// The daemon answered something `request` does not expect.
    #[error("unexpected answer to stack {request}: {answer}")]
    Unexpected {
        request: &'static str,
        answer: String,
    },
    /// The daemon could not be asked.
    #[error("{0}")]
    Unreachable(String),
}

/// What a release's stack images mean for this plant.
pub enum ImagePlan {
    /// These services move to the bundle's images (`[stack]` as plant.toml says it now).
    Move(Box<StackConfig>, Moves),
    /// None moves, and why: not a failure, the binary is tried all the same.
    Keep(NoMoves),
}

/// Why a release's bundle moves no service here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoMoves {
    #[error("no [stack] here, so its images were not loaded")]
    NoStack,
    #[error("the stack runs the images of the release's bundle ({0}) already, or none of their repositories")]
    AlreadyThere(String),
}

/// Why the images a release would move cannot be worked out (the release is refused).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("reading plant.toml: {0:#}")]
    Reload(anyhow::Error),
    /// The images earlier bundles moved (`stack/images.json`) cannot be read.
    #[error("{0:#}")]
    Overrides(anyhow::Error),
}

/// Where the plant root puts the daemon's [`StackOps`] once its actions exist (the agent is
/// made before them).
pub type StackSlot = Arc<OnceLock<Box<dyn StackOps>>>;

/// The services a bundle moves, and to what.
pub type Moves = Vec<(Service, Override)>;

/// An image upgrade waiting for its verdict.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    version: String,
    /// The overrides from before it.
    before: Overrides,
}

fn pending_path(data_dir: &Path) -> PathBuf {
    spec::stack_dir(data_dir).join("images-pending.json")
}

/// At the daemon's start, before the stack is described: an image upgrade the daemon did not
/// outlive is undone (its overrides from before are put back). Returns what was done.
pub fn recover(data_dir: &Path) -> anyhow::Result<Option<String>> {
    let path = pending_path(data_dir);
    let Some(pending) = super::read_json::<Pending>(&path)? else {
        return Ok(None);
    };
    bundle::write_overrides(&spec::stack_dir(data_dir), &pending.before)?;
    std::fs::remove_file(&path)?;
    Ok(Some(format!(
        "the stack images of version {} were being upgraded when plantd stopped: their previous images are put back, and the release will be offered again",
        pending.version
    )))
}

/// The services the bundle with `tags` moves on this plant, whose `[stack]` is `stack`.
pub(super) fn plan(
    stack: StackConfig,
    data_dir: &Path,
    tags: &[String],
) -> Result<ImagePlan, PlanError> {
    let current =
        bundle::read_overrides(&spec::stack_dir(data_dir)).map_err(PlanError::Overrides)?;
    let configured: Vec<(Service, String)> = Service::ALL
        .into_iter()
        .map(|s| (s, spec::configured_image(&stack, s)))
        .collect();
    let moves = bundle::plan(&configured, &current, tags);
    if moves.is_empty() {
        return Ok(ImagePlan::Keep(NoMoves::AlreadyThere(tags.join(", "))));
    }
    Ok(ImagePlan::Move(Box::new(stack), moves))
}

/// Loads the verified bundle at `file` and moves the services `moves` names; returns what
/// happened, for the outcome's reason.
pub(super) async fn apply(
    data_dir: &Path,
    ops: &dyn StackOps,
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
    let images = tokio::task::spawn_blocking(move || bundle::bundle_images(&path))
        .await
        .map_err(|e| refuse(format!("checking the image bundle: {e}")))?
        .map_err(|e| refuse(format!("{e:#}")))?;
    let mut tags: Vec<String> = images.iter().map(|(t, _)| t.clone()).collect();
    tags.sort();
    tags.dedup();
    if tags != signed {
        return Err(refuse(format!(
            "the image bundle carries {} but the signed release names {}",
            tags.join(", "),
            signed.join(", ")
        )));
    }
    let report = ops.status().await.map_err(|e| match e {
        StackOpsError::Unexpected { .. } => refuse(e.to_string()),
        _ => refuse(format!("the stack: {e}")),
    })?;
    if report.down {
        return Err(refuse(
            "the stack is down (taken down by an admin): bring it up with `plantd stack apply`, then start the rollout again".into(),
        ));
    }
    for (service, _) in &moves {
        let held = report
            .services
            .iter()
            .find(|s| s.service == service.as_str())
            .and_then(|s| s.held.clone());
        if let Some(why) = held {
            return Err(refuse(format!(
                "{service} is held ({why}): release it with `plantd stack release {service}`, then start the rollout again"
            )));
        }
    }
    let engine = crate::stack::docker::Engine::connect(stack.docker_socket.as_deref())
        .await
        .map_err(|e| refuse(format!("the Docker engine is unreachable: {e}")))?;
    // Loading re-points a tag that exists: a tag naming another image here (perhaps a service's
    // rollback target) would change under the stack's feet without any gate.
    for (tag, id) in &images {
        let have = engine
            .image_id(tag)
            .await
            .map_err(|e| refuse(format!("looking for {tag} in Docker: {e}")))?;
        if let (Some(have), Some(id)) = (have, id) {
            if &have != id {
                return Err(refuse(format!(
                    "{tag} already names another image here ({have}, the bundle's is {id}); give each build its own tag"
                )));
            }
        }
    }
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
    let before = bundle::read_overrides(&dir).map_err(|e| refuse(format!("{e:#}")))?;
    let mut after = before.clone();
    for (service, o) in &moves {
        after.insert(*service, o.clone());
    }
    let seen = ops.events().await.map_err(|e| refuse(e.to_string()))?;
    let pending = Pending {
        version: manifest.version.clone(),
        before: before.clone(),
    };
    super::write_json(&pending_path(data_dir), &pending).map_err(|e| refuse(format!("{e:#}")))?;
    let restore = async || -> Result<(), GoBackError> {
        bundle::write_overrides(&dir, &before).map_err(GoBackError::Overrides)?;
        ops.apply().await?;
        let _ = std::fs::remove_file(pending_path(data_dir));
        Ok(())
    };
    if let Err(e) = bundle::write_overrides(&dir, &after) {
        let _ = std::fs::remove_file(pending_path(data_dir));
        return Err(refuse(format!("{e:#}")));
    }
    if let Err(e) = ops.apply().await {
        // A supervisor that was busy still carries the request out later: the old overrides
        // are applied after it, so the stack ends where it was.
        let back = restore().await;
        return Err(refuse(format!(
            "upgrading the stack: {e}{}",
            back.err()
                .map(|b| format!("; putting the previous images back failed too: {b}"))
                .unwrap_or_default()
        )));
    }
    let verdicts = match verdicts(ops, &seen, &moves, stack.upgrade_deadline).await {
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
        let _ = std::fs::remove_file(pending_path(data_dir));
        return Ok(format!("stack images: {} healthy", moved.join(", ")));
    }
    // All or nothing: the services that passed go back too, through the same gate.
    let back = restore().await;
    Err(Failure::RolledBack(format!(
        "stack images did not pass the health gate ({}); {}",
        failed.join("; "),
        match back {
            Ok(()) => format!(
                "the stack goes back to its previous images; version {} runs on",
                crate::release::version()
            ),
            Err(e) => format!("putting the previous images back failed: {e}"),
        }
    )))
}

/// Waits for the supervisor's verdict on each moved service: `upgrade_done` or `rollback`
/// among the events after `seen`.
async fn verdicts(
    ops: &dyn StackOps,
    seen: &[StackEvent],
    moves: &Moves,
    deadline: Duration,
) -> Result<Vec<(Service, Result<(), GateFailure>)>, GateFailure> {
    // As long as the supervisor may take: a new container within its start limit, then the
    // gate's deadline.
    let limit = crate::stack::reconcile::UPGRADE_START_LIMIT + deadline + Duration::from_secs(60);
    let give_up = Instant::now() + limit;
    loop {
        let all = ops.events().await?;
        let fresh = after(&all, seen);
        let found: Vec<(Service, Option<Result<(), GateFailure>>)> = moves
            .iter()
            .map(|(service, o)| {
                let verdict = fresh
                    .iter()
                    .filter(|e| e.service.as_deref() == Some(service.as_str()))
                    .find_map(|e| match e.event.as_str() {
                        "upgrade_done" if e.message == format!("healthy on {}", o.image) => {
                            Some(Ok(()))
                        }
                        "rollback" if e.message.starts_with(&format!("{}: ", o.image)) => {
                            Some(Err(GateFailure::RolledBack(e.message.clone())))
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
            return Err(GateFailure::NoVerdict {
                secs: limit.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Why a moved service did not pass the supervisor's health gate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum GateFailure {
    /// The supervisor rolled it back, and said why.
    #[error("{0}")]
    RolledBack(String),
    /// The supervisor's events could not be read.
    #[error(transparent)]
    Events(#[from] StackOpsError),
    #[error("no verdict from the stack's health gate within {secs} s")]
    NoVerdict { secs: u64 },
}

/// Why the images from before an upgrade could not be put back.
#[derive(Debug, thiserror::Error)]
enum GoBackError {
    #[error("{0:#}")]
    Overrides(anyhow::Error),
    #[error(transparent)]
    Apply(#[from] StackOpsError),
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
