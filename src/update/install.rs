//! Trying a downloaded release, then swapping it in, or not.
//!
//! The daemon that received a verified release stops (its listeners, its journal, its lock),
//! and this process starts the new binary, with the same arguments, as a trial child. The child
//! runs the plant for real and writes its health gate to `releases/trial.json`: its control
//! socket answers and every component that was healthy before the update (journal, API,
//! replication unless islanded, the stack's services, ...) is healthy again. When the gate
//! passes within the deadline, the child is stopped, the binary is swapped (the previous one
//! kept in `DATA_DIR/releases/`) and this process execs the new binary in its own place, so
//! systemd (or anything else that watches the process) sees one service that never stopped.
//! When the child exits before its gate, twice, or the deadline passes, nothing was swapped:
//! this process execs the binary it runs, and the outcome says why.
//!
//! The old binary stays in charge until the new one has proven itself, so that a release that
//! cannot even start (and so could never roll itself back) is undone as surely as one that
//! starts and is sick.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::agent::Candidate;
use super::{read_json, releases_dir, write_json, Current, Outcome, TRIAL_ENV};

/// The gate as the trial child sees it; the parent writes `required`, the child the rest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Gate {
    pub version: String,
    /// Components that were healthy before the update and must be again.
    pub required: Vec<String>,
    pub passed: bool,
    /// What the gate still waits for.
    pub waiting_for: String,
}

fn gate_path(data_dir: &Path) -> PathBuf {
    releases_dir(data_dir).join("trial.json")
}

/// Set when SIGTERM or SIGINT arrives after the daemon stopped for an update: the service is
/// being stopped, and the trial ends without a swap.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Goes on listening for SIGTERM and SIGINT (with the daemon's own `signals`, which hold one
/// that came meanwhile) once the daemon decides to stop for an update, for the trial to hear
/// them.
pub fn listen_for_stop(mut signals: crate::shutdown::Signals) {
    tokio::spawn(async move {
        let signal = signals.recv().await;
        tracing::warn!(%signal, "stopping while a new release is being tried");
        STOPPING.store(true, Ordering::SeqCst);
    });
}

/// How a trial ended without passing its gate.
enum Ended {
    Failed(String),
    /// The service was stopped: nobody's fault, and the offer stands.
    Stopped,
}

/// Tries `candidate` and swaps it in, or not; then execs the binary that won. Returns `Ok`
/// only when the service was stopped during the trial (nothing is swapped then), and an error
/// when the exec fails.
pub async fn try_and_swap(
    candidate: Candidate,
    healthy_before: Vec<String>,
    data_dir: &Path,
    deadline: Duration,
) -> anyhow::Result<()> {
    let data_dir = data_dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        try_and_swap_blocking(candidate, healthy_before, &data_dir, deadline)
    })
    .await?
}

fn try_and_swap_blocking(
    candidate: Candidate,
    healthy_before: Vec<String>,
    data_dir: &Path,
    deadline: Duration,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the running binary")?;
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let running = crate::release::version().to_string();
    let outcome = match trial(&candidate, healthy_before, data_dir, deadline, &args) {
        Ok(took) => match swap(&exe, &candidate, data_dir, &running) {
            Ok(kept) => Some(Outcome {
                version: candidate.version.clone(),
                rollout: candidate.rollout,
                outcome: "installed".into(),
                reason: format!(
                    "passed its health gate in {:.1} s; version {running} kept in {}",
                    took.as_secs_f64(),
                    kept.display()
                ),
            }),
            Err(e) => Some(Outcome {
                version: candidate.version.clone(),
                rollout: candidate.rollout,
                outcome: "rolled_back".into(),
                reason: format!(
                    "passed its health gate, but the swap failed: {e:#}; version {running} runs on"
                ),
            }),
        },
        Err(Ended::Failed(why)) => Some(Outcome {
            version: candidate.version.clone(),
            rollout: candidate.rollout,
            outcome: "rolled_back".into(),
            reason: format!("{why}; version {running} runs on"),
        }),
        Err(Ended::Stopped) => {
            tracing::warn!(version = %candidate.version, "stopped during the trial: nothing was swapped; the release will be offered again");
            None
        }
    };
    // The stack's images stay as they passed their own gate; the reason says what became of them.
    let outcome = outcome.map(|mut o| {
        if let Some(note) = &candidate.images_note {
            o.reason = format!("{}; {note}", o.reason);
        }
        o
    });
    let _ = std::fs::remove_file(&candidate.path);
    let _ = std::fs::remove_file(gate_path(data_dir));
    if let Some(outcome) = outcome {
        if outcome.outcome == "installed" {
            tracing::info!(version = %outcome.version, reason = %outcome.reason, "release installed");
        } else {
            tracing::error!(version = %outcome.version, reason = %outcome.reason, "release rolled back");
            super::decline(data_dir, &outcome.version);
        }
        if let Err(e) = outcome.save(data_dir) {
            tracing::error!(error = %format!("{e:#}"), "the update outcome could not be saved; the hub will not hear it");
        }
    }
    if STOPPING.load(Ordering::SeqCst) {
        tracing::info!("plantd stopped; every accepted transaction is in the journal");
        return Ok(());
    }
    let e = Command::new(&exe).args(&args).exec();
    Err(anyhow::Error::new(e).context(format!("starting {} again", exe.display())))
}

/// Runs the candidate until its gate passes (then stops it); how long that took, or why not.
fn trial(
    c: &Candidate,
    required: Vec<String>,
    data_dir: &Path,
    deadline: Duration,
    args: &[OsString],
) -> Result<Duration, Ended> {
    let started = Instant::now();
    let mut exits = Vec::new();
    for attempt in 1..=2 {
        let gate = Gate {
            version: c.version.clone(),
            required: required.clone(),
            passed: false,
            waiting_for: "the trial to start".into(),
        };
        write_json(&gate_path(data_dir), &gate).map_err(|e| Ended::Failed(format!("{e:#}")))?;
        tracing::info!(version = %c.version, attempt, "trying the new release");
        let mut child = Command::new(&c.path)
            .args(args)
            .env(TRIAL_ENV, &c.version)
            // It is not the service's main process: systemd hears from this one only.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .spawn()
            .map_err(|e| {
                Ended::Failed(format!("version {} could not be started: {e}", c.version))
            })?;
        loop {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            if STOPPING.load(Ordering::SeqCst) {
                stop(&mut child);
                return Err(Ended::Stopped);
            }
            let gate: Option<Gate> = read_json(&gate_path(data_dir)).ok().flatten();
            if gate.as_ref().is_some_and(|g| g.passed) {
                stop(&mut child);
                return Ok(started.elapsed());
            }
            if let Ok(Some(status)) = child.try_wait() {
                exits.push(status.to_string());
                break;
            }
            if started.elapsed() > deadline {
                stop(&mut child);
                let waiting = gate.map(|g| g.waiting_for).unwrap_or_default();
                return Err(Ended::Failed(format!(
                    "version {} did not pass its health gate within {} s (waiting for {waiting})",
                    c.version,
                    deadline.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Err(Ended::Failed(format!(
        "version {} exited at start twice ({})",
        c.version,
        exits.join("; ")
    )))
}

/// SIGTERM, then SIGKILL after 30 s.
fn stop(child: &mut Child) {
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_child(child),
        rustix::process::Signal::TERM,
    );
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Keeps the running binary as `releases/plantd-RUNNING` (only the newest previous one stays),
/// puts the candidate in its place, and records its version. Returns where the previous is.
///
/// Durable at each step: the kept copy and the new binary's copy are fsync'd before the rename
/// over the running binary, and the directory after it, so that a power cut leaves either
/// binary whole at its path. Once the rename is done, what follows is best effort: the new
/// binary is in place and runs next, whatever else fails.
fn swap(exe: &Path, c: &Candidate, data_dir: &Path, running: &str) -> anyhow::Result<PathBuf> {
    let dir = releases_dir(data_dir);
    let kept = dir.join(format!("plantd-{running}"));
    copy_synced(exe, &kept).with_context(|| format!("keeping {}", kept.display()))?;
    let exe_dir = exe
        .parent()
        .context("the running binary has no directory")?;
    let staged = exe_dir.join(".plantd.new");
    let placed = copy_synced(&c.path, &staged)
        .with_context(|| format!("staging {}", staged.display()))
        .and_then(|()| {
            std::fs::rename(&staged, exe)
                .with_context(|| format!("replacing {} with version {}", exe.display(), c.version))
        });
    if placed.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    placed?;
    if let Err(e) = std::fs::File::open(exe_dir).and_then(|d| d.sync_all()) {
        tracing::warn!(error = %e, dir = %exe_dir.display(), "cannot sync the binary's directory");
    }
    if let Err(e) = Current::record(data_dir, exe, &c.version) {
        tracing::warn!(error = %format!("{e:#}"), "cannot record the installed version; it will report its built-in one");
    }
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("plantd-") && entry.path() != kept {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(kept)
}

/// Copies `from` to `to` (mode 0755), fsync'd.
fn copy_synced(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::copy(from, to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    std::fs::File::open(to)?.sync_all()
}

/// The trial child's side: re-checks the gate every 250 ms and writes it down, until it passes.
pub async fn run_gate(
    data_dir: PathBuf,
    health: std::sync::Arc<crate::health::Health>,
    socket: PathBuf,
) {
    let path = gate_path(&data_dir);
    let Ok(Some(mut gate)) = read_json::<Gate>(&path) else {
        tracing::error!(
            "on trial, but {} is missing: the gate cannot pass",
            path.display()
        );
        return;
    };
    loop {
        let healthy: Vec<String> = health
            .snapshot()
            .into_iter()
            .filter(|c| c.state == crate::health::State::Ok)
            .map(|c| c.name)
            .collect();
        let missing: Vec<&String> = gate
            .required
            .iter()
            .filter(|r| !healthy.contains(r))
            .collect();
        let control = tokio::net::UnixStream::connect(&socket).await.is_ok();
        let waiting_for = match (control, missing.is_empty()) {
            (true, true) => String::new(),
            (false, _) => "the control socket".to_string(),
            (true, false) => format!(
                "{} to be healthy again",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        gate.passed = waiting_for.is_empty();
        if gate.passed || gate.waiting_for != waiting_for {
            gate.waiting_for = waiting_for;
            if let Err(e) = write_json(&path, &gate) {
                tracing::error!(error = %format!("{e:#}"), "cannot write the trial gate");
            }
        }
        if gate.passed {
            tracing::info!(version = %gate.version, "on trial: the health gate passed");
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
