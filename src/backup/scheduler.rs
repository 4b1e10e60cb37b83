//! The daemon's backups: at each slot of `backup.schedule` (plant time), once the stack is
//! healthy, take a backup, verify it (a restore into a scratch database), then delete what
//! the retention policy no longer keeps. The `backup` health component says how the last one
//! went; a failure is unhealthy (so `plantd status` and the hub's telemetry show it) until a
//! later backup succeeds, and is retried after 5, 15, 30, then every 60 minutes.
//!
//! The decisions are [`retention`]'s pure functions; this is the thin driver that reads the
//! clock and the backup directory. A backup's time is its id's (`YYYYMMDDTHHMMSSZ-...`, UTC,
//! when it started), so encrypted archives need no key to be scheduled or pruned.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use crate::config::PlantConfig;
use crate::health::{Health, State};
use crate::retention;

/// Retry delays after a failed backup; the last repeats.
const RETRIES: [Duration; 4] = [
    Duration::from_secs(5 * 60),
    Duration::from_secs(15 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
];
/// How long a due backup waits for the stack to be healthy before trying anyway.
const WAIT_FOR_STACK: Duration = Duration::from_secs(10 * 60);

/// When the backup `id` was started, from the id itself.
pub fn taken_at(id: &str) -> Option<Timestamp> {
    let stamp = id.get(..16)?;
    let civil = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", stamp).ok()?;
    jiff::tz::TimeZone::UTC.to_timestamp(civil).ok()
}

/// Runs until `stop`; does nothing without a stack or with `backup.schedule = "off"`.
pub async fn run(
    config: PlantConfig,
    stack: Option<crate::stack::Stack>,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
) {
    let Some(stack) = stack else { return };
    let schedule = config.backup.schedule;
    if schedule.daily_at().is_none() {
        health.set(
            "backup",
            State::Ok,
            "scheduled backups are off (backup.schedule = \"off\")",
        );
        return;
    }
    let tz = config.backup.tz();
    let mut failures = 0usize;
    let mut retry_at: Option<Timestamp> = None;
    let mut last_report = String::new();
    loop {
        let now = Timestamp::now();
        let last = super::newest(&config.data_dir).map(|(_, at)| at);
        let due = match retry_at {
            Some(at) => Some(at),
            None => retention::next_run(&schedule, last, now, &tz),
        };
        let Some(due) = due else { return };
        if failures == 0 {
            let next = due
                .to_zoned_datetime(tz.clone())
                .strftime("%Y-%m-%d %H:%M %Z");
            let report = match last {
                Some(_) => format!("{last_report}next backup at {next} ({schedule})"),
                None => format!("no backup yet; the first at {next} ({schedule})"),
            };
            health.set("backup", State::Ok, report);
        }
        if due > now {
            let wait = Duration::try_from(due.duration_since(now)).unwrap_or_default();
            // Looked at again every minute: the clock may be set, or a backup taken by hand.
            tokio::select! {
                _ = tokio::time::sleep(wait.min(Duration::from_secs(60))) => {}
                _ = stop.changed() => return,
            }
            // Asking next_run again now could skip the slot just reached (with no backup
            // yet, its next slot is the one after `now`).
            if Timestamp::now() < due {
                continue;
            }
        }
        if !stack_ready(&stack, &mut stop).await {
            return;
        }
        let started = Timestamp::now();
        match once(&config, &tz).await {
            Ok(summary) => {
                failures = 0;
                retry_at = None;
                tracing::info!(%summary, "scheduled backup");
                last_report = format!("{summary}; ");
            }
            Err(e) => {
                let e = format!("{e:#}");
                // Someone else's backup or verify holds the lock: not a failure, try soon.
                let delay = if e.contains("another backup or verify is running") {
                    Duration::from_secs(60)
                } else {
                    failures += 1;
                    let delay = RETRIES[(failures - 1).min(RETRIES.len() - 1)];
                    tracing::error!(error = %e, "scheduled backup failed");
                    health.set(
                        "backup",
                        State::Unhealthy,
                        format!(
                            "the scheduled backup of {} failed: {e}; retrying in {} min",
                            started
                                .to_zoned_datetime(tz.clone())
                                .strftime("%Y-%m-%d %H:%M %Z"),
                            delay.as_secs() / 60
                        ),
                    );
                    delay
                };
                retry_at = Some(
                    Timestamp::now()
                        .checked_add(jiff::SignedDuration::try_from(delay).unwrap_or_default())
                        .unwrap_or(Timestamp::MAX),
                );
            }
        }
    }
}

/// Waits (up to [`WAIT_FOR_STACK`]) for PostgreSQL and Odoo to be healthy; false on stop.
async fn stack_ready(stack: &crate::stack::Stack, stop: &mut watch::Receiver<bool>) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT_FOR_STACK;
    while tokio::time::Instant::now() < deadline {
        let report = stack.report();
        let healthy = |name: &str| {
            report
                .services
                .iter()
                .any(|s| s.service == name && s.health == "healthy")
        };
        if healthy("postgres") && healthy("odoo") {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => return false,
        }
    }
    true
}

/// One scheduled backup: take, verify, prune. Returns what to report.
async fn once(config: &PlantConfig, tz: &jiff::tz::TimeZone) -> anyhow::Result<String> {
    let (taken, _) = super::take_verified(config).await?;
    let pruned = prune(config, tz)?;
    let mut summary = format!(
        "last backup {} ({}), verified",
        taken.id,
        bytesize::ByteSize(taken.size)
    );
    if !pruned.is_empty() {
        summary.push_str(&format!(
            "; {} older ones deleted by the retention policy",
            pruned.len()
        ));
    }
    Ok(summary)
}

/// Deletes the backups the retention policy no longer keeps; returns their ids.
pub fn prune(config: &PlantConfig, tz: &jiff::tz::TimeZone) -> anyhow::Result<Vec<String>> {
    let listed = super::list(&config.data_dir)?;
    let dated: Vec<(String, Timestamp)> = listed
        .iter()
        .filter_map(|b| Some((b.id.clone(), taken_at(&b.id)?)))
        .collect();
    let doomed = retention::to_delete(&dated, &config.backup.policy, tz);
    for id in &doomed {
        super::delete(&config.data_dir, id)?;
        tracing::info!(%id, "backup deleted by the retention policy");
    }
    Ok(doomed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_is_dated_by_its_id() {
        assert_eq!(
            taken_at("20261128T020003Z-a1b2c3"),
            Some("2026-11-28T02:00:03Z".parse().unwrap())
        );
        assert_eq!(
            taken_at("20261128T020003Z"),
            Some("2026-11-28T02:00:03Z".parse().unwrap())
        );
        for odd in ["", "imported", "20261328T020003Z-x", "2026-11-28T02:00"] {
            assert_eq!(taken_at(odd), None, "{odd}");
        }
    }
}
