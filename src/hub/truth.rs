//! What the hub can say of each plant, from its own view: when it last heard from the plant,
//! what it has stored against what the plant last said it had, the plant's own health report,
//! and the backup copies it holds. Pure; the fleet page, `GET /api/v1/plants` and
//! `plantd hub plants` all show this.
//!
//! A plant sends telemetry every 10 s while its link is up. Heard from within [`STALE_S`] (two
//! and a half telemetry intervals), it is `online`, or `degraded` when a component of its own
//! report is not ok; not heard from for longer, it is `offline` since it was last heard from. A
//! plant islanded on purpose says so before its link goes, and is `islanded` from then on.
//! Never heard from: `unknown`. Revoked: `revoked`.

use serde::Serialize;

use super::store::PlantRow;
use crate::backup::offsite::HeldCopy;
use crate::replication::plant::ISLANDED_ON_PURPOSE;

/// Silence after which a plant is offline: two and a half telemetry intervals, so that a plant
/// that dies shows offline within 30 s of its last word.
pub const STALE_S: i64 = 25;

/// The hub's account of one plant.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Truth {
    /// `online`, `degraded`, `islanded`, `offline`, `unknown` or `revoked`.
    pub state: &'static str,
    /// Since when the state holds, when the hub knows (offline and islanded: last heard from).
    pub since: Option<String>,
    /// Why, in words: the components not ok, how long the silence is.
    pub reason: Option<String>,
    /// Seconds the oldest transaction the hub does not have yet has waited at the plant: 0
    /// when the hub holds everything the plant last said it had; null when unknown.
    pub lag_s: Option<i64>,
    /// Transactions the plant last said it had that the hub does not hold yet.
    pub behind: Option<i64>,
    /// The newest backup copy the hub holds for the plant.
    pub last_backup: Option<LastBackup>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LastBackup {
    pub id: String,
    pub created_at: String,
    pub age_s: Option<i64>,
    pub size: u64,
}

/// A plant with the hub's account of it, as the fleet API answers it.
#[derive(Debug, Clone, Serialize)]
pub struct PlantReport {
    #[serde(flatten)]
    pub row: PlantRow,
    #[serde(flatten)]
    pub truth: Truth,
}

/// The hub's account of `row`, with the copies it holds for it (oldest first), at `now`.
pub fn of(row: &PlantRow, held: &[HeldCopy], now: jiff::Timestamp) -> Truth {
    let telemetry = row.telemetry.as_ref();
    let reported_last = telemetry.and_then(|t| t["last_seq"].as_i64());
    let behind = reported_last.map(|last| (last - row.acked_seq).max(0));
    let lag_s = match behind {
        Some(0) => Some(0),
        // The age the plant reported, plus the time since it reported it.
        Some(_) => row
            .reported_lag_s
            .map(|age| age + row.telemetry_s_ago.unwrap_or(0).max(0)),
        None => None,
    };
    let last_backup = held.last().map(|c| LastBackup {
        id: c.id.clone(),
        created_at: c.created_at.clone(),
        age_s: c
            .created_at
            .parse::<jiff::Timestamp>()
            .ok()
            .map(|t| now.duration_since(t).as_secs().max(0)),
        size: c.size,
    });
    let (state, since, reason) = if row.revoked {
        ("revoked", None, Some("revoked at the hub".to_string()))
    } else {
        match row.seen_s_ago {
            None => (
                "unknown",
                None,
                Some(if row.enrolled {
                    "enrolled, never connected".to_string()
                } else {
                    "invited, not enrolled yet".to_string()
                }),
            ),
            // Its last word was that an admin islanded it (it says so before its link goes).
            Some(ago) if telemetry.is_some_and(|t| t[ISLANDED_ON_PURPOSE] == true) => (
                "islanded",
                row.last_seen.clone(),
                Some(format!(
                    "islanded on purpose at the plant (plantd island); last heard from {} ago",
                    words(ago)
                )),
            ),
            Some(ago) if ago > STALE_S => (
                "offline",
                row.last_seen.clone(),
                Some(format!("not heard from for {}", words(ago))),
            ),
            Some(_) => {
                let sick: Vec<String> = telemetry
                    .and_then(|t| t["components"].as_array())
                    .map(|cs| {
                        cs.iter()
                            .filter(|c| c["state"] != "ok")
                            .map(|c| {
                                format!(
                                    "{}: {}",
                                    c["name"].as_str().unwrap_or("?"),
                                    c["detail"].as_str().unwrap_or("")
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if sick.is_empty() {
                    ("online", None, None)
                } else {
                    ("degraded", None, Some(sick.join("; ")))
                }
            }
        }
    };
    Truth {
        state,
        since,
        reason,
        lag_s,
        behind,
        last_backup,
    }
}

/// Problem plants first: offline, degraded, islanded, unknown, then online, then revoked.
pub fn rank(state: &str) -> u8 {
    match state {
        "offline" => 0,
        "degraded" => 1,
        "islanded" => 2,
        "unknown" => 3,
        "revoked" => 5,
        _ => 4,
    }
}

/// The fleet with the hub's account of each plant, problem plants first, then by name.
pub fn report(
    rows: Vec<PlantRow>,
    backups: &crate::backup::offsite::HubBackups,
) -> Vec<PlantReport> {
    let now = jiff::Timestamp::now();
    let mut out: Vec<PlantReport> = rows
        .into_iter()
        .map(|row| {
            let held: Vec<HeldCopy> = backups.newest(&row.plant).into_iter().collect();
            let truth = of(&row, &held, now);
            PlantReport { row, truth }
        })
        .collect();
    out.sort_by(|a, b| {
        (rank(a.truth.state), &a.row.plant).cmp(&(rank(b.truth.state), &b.row.plant))
    });
    out
}

fn words(s: i64) -> String {
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s => format!("{} h", s / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(seen: Option<i64>, telemetry: serde_json::Value) -> PlantRow {
        PlantRow {
            plant: "lyon".into(),
            enrolled: true,
            revoked: false,
            acked_seq: 100,
            stored: 100,
            last_seen: seen.map(|_| "2026-12-07T06:00:00Z".into()),
            version: Some("0.1.0".into()),
            link: telemetry["link"].as_str().map(Into::into),
            reported_lag_s: telemetry["oldest_unacked_age_s"].as_i64(),
            telemetry: Some(telemetry),
            pinned_version: None,
            seen_s_ago: seen,
            telemetry_s_ago: seen,
        }
    }

    fn now() -> jiff::Timestamp {
        "2026-12-07T06:10:00Z".parse().unwrap()
    }

    #[test]
    fn a_plant_heard_from_lately_is_online_or_degraded_by_its_own_report() {
        let ok = json!({"link": "online", "last_seq": 100, "components": [{"name": "journal", "state": "ok", "detail": ""}]});
        let t = of(&row(Some(5), ok), &[], now());
        assert_eq!((t.state, t.lag_s, t.behind), ("online", Some(0), Some(0)));
        let sick = json!({"link": "online", "last_seq": 100, "components": [{"name": "stack", "state": "unhealthy", "detail": "odoo unhealthy"}]});
        let t = of(&row(Some(5), sick), &[], now());
        assert_eq!(t.state, "degraded");
        assert_eq!(t.reason.as_deref(), Some("stack: odoo unhealthy"));
    }

    #[test]
    fn silence_past_25_s_is_offline_since_last_heard_unless_islanded_on_purpose() {
        let t = of(
            &row(Some(26), json!({"link": "online", "last_seq": 100})),
            &[],
            now(),
        );
        assert_eq!(t.state, "offline");
        assert_eq!(t.since.as_deref(), Some("2026-12-07T06:00:00Z"));
        assert_eq!(t.reason.as_deref(), Some("not heard from for 26 s"));
        let t = of(
            &row(Some(25), json!({"link": "online", "last_seq": 100})),
            &[],
            now(),
        );
        assert_eq!(t.state, "online", "25 s is still within the limit");
        // A link that turned islanded on its own (a long outage) is not an admin's island.
        let t = of(
            &row(Some(600), json!({"link": "islanded", "last_seq": 100})),
            &[],
            now(),
        );
        assert_eq!(t.state, "offline");
        for ago in [1, 600] {
            let t = of(
                &row(
                    Some(ago),
                    json!({"link": "islanded", "last_seq": 100, "islanded_on_purpose": true}),
                ),
                &[],
                now(),
            );
            assert_eq!(t.state, "islanded", "{ago} s after its last word");
        }
        let mut never = row(None, json!(null));
        never.telemetry = None;
        assert_eq!(of(&never, &[], now()).state, "unknown");
        let mut revoked = row(Some(1), json!({"link": "online"}));
        revoked.revoked = true;
        assert_eq!(of(&revoked, &[], now()).state, "revoked");
    }

    #[test]
    fn lag_is_worked_out_at_the_hub() {
        // The plant said "draining, oldest waits 52 s" but the hub has stored all of it since.
        let drained = json!({"link": "draining", "last_seq": 100, "oldest_unacked_age_s": 52});
        let t = of(&row(Some(8), drained), &[], now());
        assert_eq!((t.lag_s, t.behind), (Some(0), Some(0)));
        // Behind: the age the plant reported grows by the time since it reported it.
        let behind = json!({"link": "draining", "last_seq": 150, "oldest_unacked_age_s": 52});
        let t = of(&row(Some(8), behind), &[], now());
        assert_eq!((t.lag_s, t.behind), (Some(60), Some(50)));
    }

    #[test]
    fn the_last_backup_is_the_newest_copy_the_hub_holds() {
        let copy = |id: &str, at: &str| HeldCopy {
            id: id.into(),
            name: format!("plantd-backup-{id}.tar.zst"),
            size: 1234,
            sha256: "00".into(),
            created_at: at.into(),
        };
        let held = [
            copy("20261206T020000Z-a", "2026-12-06T02:00:00Z"),
            copy("20261207T020000Z-b", "2026-12-07T02:00:00Z"),
        ];
        let t = of(&row(Some(1), json!({"link": "online"})), &held, now());
        assert_eq!(
            t.last_backup,
            Some(LastBackup {
                id: "20261207T020000Z-b".into(),
                created_at: "2026-12-07T02:00:00Z".into(),
                age_s: Some(4 * 3600 + 600),
                size: 1234,
            })
        );
    }

    #[test]
    fn problem_plants_come_first() {
        let mut states = [
            "online", "revoked", "unknown", "offline", "islanded", "degraded",
        ];
        states.sort_by_key(|s| rank(s));
        assert_eq!(
            states,
            ["offline", "degraded", "islanded", "unknown", "online", "revoked"]
        );
    }
}
