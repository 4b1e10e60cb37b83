//! Fleet updates, the plant's side and the parts the hub shares: release signatures
//! (`release`), the waves of a rollout (`rollout`), the agent that fetches a release over the
//! QUIC link (`agent`), the stack images a release may carry (`images`), and the trial, swap
//! and rollback of the binary (`install`).
//!
//! Files in `DATA_DIR/releases/`:
//! - `incoming-V`: a downloaded release whose bytes match its signed manifest;
//! - `incoming-V.images`: its stack image bundle, until Docker has loaded it;
//! - `plantd-V`: the previous binary, kept after a swap (only the newest one);
//! - `current.json`: the release version of the installed binary, with its size and mtime so
//!   that a binary put there by other means (the installer) is not taken for it;
//! - `outcome.json`: how the last update ended, until the hub has noted it;
//! - `trial.json`: the trial's health gate, written by the binary on trial;
//! - `declined.json`: versions refused or rolled back here, not tried again for a pin.

pub mod agent;
pub mod images;
pub mod install;
pub mod rollout;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The environment variable that marks a binary on trial and names its version.
pub const TRIAL_ENV: &str = "PLANTD_TRIAL_VERSION";

/// Works out [`crate::release::version`] once, at the daemon's start.
pub fn init_version(data_dir: &Path) {
    let v = std::env::var(TRIAL_ENV)
        .ok()
        .filter(|v| crate::release::check_version(v).is_ok())
        .or_else(|| {
            Current::load(data_dir)
                .filter(Current::is_running)
                .map(|c| c.version)
        })
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
    crate::release::set_version(v);
}

pub fn releases_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("releases")
}

fn declined_path(data_dir: &Path) -> PathBuf {
    releases_dir(data_dir).join("declined.json")
}

/// Versions this plant refused or rolled back: not downloaded again when a pin offers them
/// again (a pin to a broken release would otherwise be tried in a loop). A version names one
/// binary.
pub fn declined(data_dir: &Path) -> Vec<String> {
    read_json(&declined_path(data_dir))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Adds `version` to [`declined`]; a failure to write is logged.
pub fn decline(data_dir: &Path, version: &str) {
    let mut all = declined(data_dir);
    if !all.iter().any(|v| v == version) {
        all.push(version.to_string());
        if let Err(e) = write_json(&declined_path(data_dir), &all) {
            tracing::warn!(error = %format!("{e:#}"), "cannot record a declined release");
        }
    }
}

/// How an update ended at this plant, waiting to be told to the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub version: String,
    /// The rollout that offered it; 0 for a pin.
    pub rollout: u64,
    /// installed | rolled_back | refused
    pub outcome: String,
    pub reason: String,
}

impl Outcome {
    fn path(data_dir: &Path) -> PathBuf {
        releases_dir(data_dir).join("outcome.json")
    }

    pub fn load(data_dir: &Path) -> anyhow::Result<Option<Outcome>> {
        read_json(&Outcome::path(data_dir))
    }

    pub fn save(&self, data_dir: &Path) -> anyhow::Result<()> {
        write_json(&Outcome::path(data_dir), self)
    }

    pub fn clear(data_dir: &Path) -> anyhow::Result<()> {
        match std::fs::remove_file(Outcome::path(data_dir)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// The release installed at the binary's path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Current {
    pub version: String,
    pub size: u64,
    pub mtime_ns: i128,
}

impl Current {
    fn path(data_dir: &Path) -> PathBuf {
        releases_dir(data_dir).join("current.json")
    }

    fn load(data_dir: &Path) -> Option<Current> {
        read_json(&Current::path(data_dir)).ok().flatten()
    }

    /// Records that the binary at `exe` is release `version`.
    pub fn record(data_dir: &Path, exe: &Path, version: &str) -> anyhow::Result<()> {
        let (size, mtime_ns) = stamp(exe)?;
        let current = Current {
            version: version.to_string(),
            size,
            mtime_ns,
        };
        write_json(&Current::path(data_dir), &current)
    }

    /// Whether the running binary is still the one recorded.
    fn is_running(&self) -> bool {
        std::env::current_exe()
            .ok()
            .and_then(|exe| stamp(&exe).ok())
            .is_some_and(|s| s == (self.size, self.mtime_ns))
    }
}

fn stamp(path: &Path) -> anyhow::Result<(u64, i128)> {
    let m = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    Ok((
        m.len(),
        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
    ))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("reading {}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        crate::fsutil::create_private_dir(dir)?;
    }
    crate::fsutil::write_atomic(path, &serde_json::to_vec_pretty(value)?, 0o600)
}
