//! The fleet's alerts: every few seconds, one hub replica (the one holding the alerts lock)
//! derives the conditions that hold from the hub's account of each plant ([`super::truth`]),
//! the central apply's stops and the paused rollouts, steps [`crate::alerts::Alerts`], sends
//! what it says, and keeps the open alerts and the history in PostgreSQL. Another replica
//! takes over within [`TAKE_OVER`] of the first one's death, with the state it left.

use std::time::Duration;

use jiff::Timestamp;

use super::database::Database;
use super::truth::PlantReport;
use crate::alerts::send::Routes;
use crate::alerts::{Alerts, Condition};
use crate::config::alerts::{AlertsConfig, When};

/// How often the conditions are looked at.
pub const STEP: Duration = Duration::from_secs(2);
/// How often a replica without the lock tries to take it.
pub const TAKE_OVER: Duration = Duration::from_secs(15);

/// What holds now at the hub, by the rules' conditions.
pub fn conditions(
    reports: &[PlantReport],
    stops: &[(String, i64, String)],
    paused: &[(i64, String, String)],
    config: &AlertsConfig,
) -> Vec<Condition> {
    let rule = |w: When| config.rules.iter().find(|r| r.when == w);
    let mut out = Vec::new();
    let mut say = |when: When, subject: &str, message: String, since: Option<Timestamp>| {
        out.push(Condition {
            when,
            subject: subject.to_string(),
            message,
            since,
        })
    };
    for r in reports {
        let (plant, truth) = (r.row.plant.as_str(), &r.truth);
        if matches!(truth.state, "revoked" | "unknown") {
            continue;
        }
        let reason = truth.reason.clone().unwrap_or_default();
        if truth.state == "offline" {
            let since = truth.since.as_deref().and_then(|s| s.parse().ok());
            say(When::Offline, plant, reason.clone(), since);
        }
        // What it said last holds only while it is heard from.
        if matches!(truth.state, "offline" | "islanded") {
            continue;
        }
        if truth.state == "degraded" {
            say(When::Degraded, plant, reason, None);
        }
        let telemetry = r.row.telemetry.as_ref();
        let components: Vec<&serde_json::Value> = telemetry
            .and_then(|t| t["components"].as_array())
            .map(|cs| cs.iter().collect())
            .unwrap_or_default();
        let unhealthy: Vec<String> = components
            .iter()
            .filter(|c| c["state"] == "unhealthy")
            .map(|c| {
                format!(
                    "{}: {}",
                    c["name"].as_str().unwrap_or("?"),
                    c["detail"].as_str().unwrap_or("")
                )
            })
            .collect();
        if !unhealthy.is_empty() {
            say(When::Failing, plant, unhealthy.join("; "), None);
        }
        let component = |name: &str| components.iter().find(|c| c["name"] == name);
        if let Some(c) = component("backup").filter(|c| c["state"] == "unhealthy") {
            say(
                When::BackupFailed,
                plant,
                c["detail"].as_str().unwrap_or("").to_string(),
                None,
            );
        }
        if let Some(age) = rule(When::BackupOverdue).and_then(|r| r.age) {
            let off = component("backup")
                .and_then(|c| c["detail"].as_str())
                .is_some_and(|d| d.contains("backups are off"));
            match &truth.last_backup {
                Some(b) if b.age_s.is_some_and(|a| a > age.as_secs() as i64) => say(
                    When::BackupOverdue,
                    plant,
                    format!(
                        "the newest copy the hub holds ({}) is {} h old",
                        b.id,
                        b.age_s.unwrap_or(0) / 3600
                    ),
                    None,
                ),
                None if !off => say(
                    When::BackupOverdue,
                    plant,
                    "the hub holds no backup copy of this plant".into(),
                    None,
                ),
                _ => {}
            }
        }
        if let Some(c) = component("apply").filter(|c| c["state"] == "unhealthy") {
            say(
                When::ApplyStopped,
                plant,
                format!("the plant's apply: {}", c["detail"].as_str().unwrap_or("")),
                None,
            );
        }
        if let Some(below) = rule(When::DiskLow).and_then(|r| r.below_percent) {
            let host = telemetry.map(|t| &t["host"]);
            let free = host.and_then(|h| h["disk_free_bytes"].as_f64());
            let total = host.and_then(|h| h["disk_total_bytes"].as_f64());
            if let (Some(free), Some(total)) = (free, total) {
                if total > 0.0 && free / total * 100.0 < below {
                    say(
                        When::DiskLow,
                        plant,
                        format!(
                            "{:.1} % of the data disk free (below {below} %)",
                            free / total * 100.0
                        ),
                        None,
                    );
                }
            }
        }
    }
    for (plant, seq, message) in stops {
        say(
            When::ApplyStopped,
            &format!("{plant} (central apply)"),
            format!("the apply to the central Odoo stopped at seq {seq}: {message}"),
            None,
        );
    }
    for (id, version, why) in paused {
        say(
            When::RolloutPaused,
            &format!("rollout {id}"),
            format!("the rollout of {version} is paused: {why}"),
            None,
        );
    }
    out
}

/// Runs the fleet's alerts until the hub stops.
pub async fn run(
    database: Database,
    config: AlertsConfig,
    backups: crate::backup::offsite::HubBackups,
) {
    let routes = match Routes::new(&config, "hub") {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "alerts cannot be sent; check [alerts] in hub.toml");
            return;
        }
    };
    loop {
        let store = match database.store().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "alerts: no database connection");
                tokio::time::sleep(TAKE_OVER).await;
                continue;
            }
        };
        match store.try_alerts_lock().await {
            Ok(true) => {}
            Ok(false) => {
                drop(store);
                tokio::time::sleep(TAKE_OVER).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "alerts: taking the lock");
                store.discard();
                tokio::time::sleep(TAKE_OVER).await;
                continue;
            }
        }
        tracing::info!("this replica evaluates the fleet's alerts");
        let mut store = store;
        let mut state = match store.alert_state().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "alerts: reading their state");
                store.discard();
                tokio::time::sleep(TAKE_OVER).await;
                continue;
            }
        };
        let mut tick = tokio::time::interval(STEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = step(&mut store, &mut state, &config, &routes, &backups).await {
                tracing::warn!(error = %format!("{e:#}"), "alerts: a step failed; taking the lock again");
                // The lock goes with the connection; whoever takes it reads the saved state.
                store.discard();
                break;
            }
        }
        tokio::time::sleep(STEP).await;
    }
}

async fn step(
    store: &mut super::store::Store,
    state: &mut Alerts,
    config: &AlertsConfig,
    routes: &Routes,
    backups: &crate::backup::offsite::HubBackups,
) -> anyhow::Result<()> {
    let rows = store.plants_counting(false).await?;
    let reports = super::truth::report(rows, backups);
    let stops = store.apply_stops().await?;
    let paused = store.paused_rollouts().await?;
    let now = Timestamp::now();
    let held = conditions(&reports, &stops, &paused, config);
    let (notices, mut history) = state.step(config, routes.keys(), held, now);
    history.extend(routes.deliver(state, &notices).await);
    for e in &history {
        tracing::info!(condition = e.when.as_str(), subject = %e.subject, event = %e.event, message = %e.message, "alert");
    }
    store.save_alerts(state, &history).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::store::PlantRow;
    use crate::hub::truth::{PlantReport, Truth};
    use serde_json::json;

    fn report(state: &'static str, telemetry: serde_json::Value) -> PlantReport {
        PlantReport {
            row: PlantRow {
                plant: "lyon".into(),
                enrolled: true,
                revoked: false,
                acked_seq: 0,
                stored: 0,
                last_seen: Some("2026-12-07T10:00:00Z".into()),
                version: None,
                link: None,
                reported_lag_s: None,
                seen_s_ago: Some(1),
                telemetry_s_ago: Some(1),
                telemetry: Some(telemetry),
                pinned_version: None,
            },
            truth: Truth {
                state,
                since: Some("2026-12-07T10:00:00Z".into()),
                reason: Some("why".into()),
                lag_s: None,
                behind: None,
                last_backup: None,
            },
        }
    }

    #[test]
    fn plants_paused_rollouts_and_stops_become_conditions() {
        let config = AlertsConfig::default();
        let sick = json!({
            "components": [{"name": "backup", "state": "unhealthy", "detail": "disk full"}],
            "host": {"disk_free_bytes": 5, "disk_total_bytes": 100},
        });
        let found = conditions(
            &[report("degraded", sick)],
            &[("lyon".into(), 7, "no product".into())],
            &[(3, "1.2.0".into(), "2 failures".into())],
            &config,
        );
        let whens: Vec<(&str, &str)> = found
            .iter()
            .map(|c| (c.when.as_str(), c.subject.as_str()))
            .collect();
        assert_eq!(
            whens,
            [
                ("degraded", "lyon"),
                ("failing", "lyon"),
                ("backup_failed", "lyon"),
                ("backup_overdue", "lyon"),
                ("disk_low", "lyon"),
                ("apply_stopped", "lyon (central apply)"),
                ("rollout_paused", "rollout 3"),
            ]
        );
        // An offline plant is offline since it was last heard from, and its old report is
        // not taken as holding.
        let off = conditions(&[report("offline", json!({}))], &[], &[], &config);
        assert_eq!(off.len(), 1);
        assert_eq!(off[0].when, When::Offline);
        assert_eq!(off[0].since, Some("2026-12-07T10:00:00Z".parse().unwrap()));
        assert!(conditions(&[report("islanded", json!({}))], &[], &[], &config).is_empty());
    }
}
