//! Alerts at the hub: the open ones, as one JSON document, and their history.

use super::*;
use crate::alerts::{Alerts, Event};

/// The advisory lock the replica evaluating the fleet's alerts holds, so that one says each.
/// The hub's single-key advisory locks: 7467510 migrations, 7467511 a rollout's start,
/// 7467512 this one (held for the evaluator's life: it must share no key with another).
const ALERTS_LOCK: i64 = 7467512;

/// A line of alert history, as the plant's admin API shows its own too.
pub use crate::admin::store::AlertLine as HistoryRow;

impl Store {
    /// Takes the alert evaluator's lock on this connection, if no other holds it. The lock
    /// lives as long as the connection: [`Store::discard`] it to let another replica take over.
    pub async fn try_alerts_lock(&self) -> anyhow::Result<bool> {
        Ok(self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&ALERTS_LOCK])
            .await?
            .get(0))
    }

    pub async fn alert_state(&self) -> anyhow::Result<Alerts> {
        let row = self
            .client
            .query_opt("SELECT state::text FROM alert_state WHERE id = 1", &[])
            .await?;
        Ok(match row {
            // A state this version cannot read starts over rather than stopping alerts.
            Some(r) => serde_json::from_str(&r.get::<_, String>(0)).unwrap_or_default(),
            None => Alerts::default(),
        })
    }

    /// Keeps the open alerts and appends `history`, in one transaction.
    pub async fn save_alerts(&mut self, state: &Alerts, history: &[Event]) -> anyhow::Result<()> {
        let tx = self.client.transaction().await?;
        let json = serde_json::to_string(state)?;
        tx.execute(
            "INSERT INTO alert_state (id, state) VALUES (1, $1::text::jsonb)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state",
            &[&json],
        )
        .await?;
        for e in history {
            tx.execute(
                "INSERT INTO alert_history (at, condition, subject, tier, event, message)
                 VALUES ($1::text::timestamptz, $2, $3, $4, $5, $6)",
                &[
                    &e.at.to_string(),
                    &e.when.as_str(),
                    &e.subject,
                    &e.tier.as_str(),
                    &e.event,
                    &e.message,
                ],
            )
            .await?;
        }
        // Kept 90 days.
        tx.execute(
            "DELETE FROM alert_history WHERE at < now() - interval '90 days'",
            &[],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest `limit` lines of alert history, newest first; of one subject when given.
    pub async fn alert_history(
        &self,
        subject: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<HistoryRow>> {
        let rows = self
            .client
            .query(
                "SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                        condition, subject, tier, event, message
                 FROM alert_history WHERE $1::text IS NULL OR subject = $1
                 ORDER BY id DESC LIMIT $2",
                &[&subject, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| HistoryRow {
                id: r.get(0),
                at: r.get(1),
                condition: r.get(2),
                subject: r.get(3),
                tier: r.get(4),
                event: r.get(5),
                message: r.get(6),
            })
            .collect())
    }

    /// Where each plant's central apply stopped: (plant, seq, message).
    pub async fn apply_stops(&self) -> anyhow::Result<Vec<(String, i64, String)>> {
        let rows = self
            .client
            .query(
                "SELECT plant, seq, message FROM apply_stops ORDER BY plant",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// The rollouts paused now: (id, version, why).
    pub async fn paused_rollouts(&self) -> anyhow::Result<Vec<(i64, String, String)>> {
        let rows = self
            .client
            .query(
                "SELECT id, version, coalesce(reason, '') FROM rollouts
                 WHERE state = 'paused' ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}

/// The counts `/metrics` shows.
#[derive(Debug, Default)]
pub struct MetricCounts {
    /// (tier, alerts that fired and hold).
    pub firing: Vec<(String, i64)>,
    /// (outcome: sent or send_failed, sends of the last 90 days).
    pub sends: Vec<(String, i64)>,
    /// (state, remote actions).
    pub actions: Vec<(String, i64)>,
}

impl Store {
    pub async fn metric_counts(&self) -> anyhow::Result<MetricCounts> {
        let state = self.alert_state().await?;
        let mut firing = vec![("info".to_string(), 0), ("production".to_string(), 0)];
        for a in state.firing() {
            if let Some(n) = firing.iter_mut().find(|(t, _)| t == a.tier.as_str()) {
                n.1 += 1;
            }
        }
        let mut sends = vec![("sent".to_string(), 0), ("send_failed".to_string(), 0)];
        for r in self
            .client
            .query(
                "SELECT event, count(*) FROM alert_history
                 WHERE event IN ('sent', 'send_failed') GROUP BY event",
                &[],
            )
            .await?
        {
            let (event, n): (String, i64) = (r.get(0), r.get(1));
            if let Some(slot) = sends.iter_mut().find(|(e, _)| *e == event) {
                slot.1 = n;
            }
        }
        let mut actions: Vec<(String, i64)> =
            ["pending", "sent", "ok", "refused", "failed", "expired"]
                .iter()
                .map(|s| (s.to_string(), 0))
                .collect();
        for r in self
            .client
            .query(
                "SELECT state, count(*) FROM remote_actions GROUP BY state",
                &[],
            )
            .await?
        {
            let (state, n): (String, i64) = (r.get(0), r.get(1));
            if let Some(slot) = actions.iter_mut().find(|(s, _)| *s == state) {
                slot.1 = n;
            }
        }
        Ok(MetricCounts {
            firing,
            sends,
            actions,
        })
    }
}
