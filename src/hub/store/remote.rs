//! Remote actions in the hub database, and the hub's audit log (`hub_audit`).
//!
//! An action is `pending` until a replica serving the plant's remote stream claims it
//! (`sent`, with `FOR UPDATE SKIP LOCKED`, so two replicas never both send one), then `ok`,
//! `refused` or `failed` as the plant answered, or `failed` when the connection ended before
//! the answer (never sent again: a backup is not idempotent); a `pending` one past its
//! `expires_at` becomes `expired` and is never sent; a `sent` one without an answer past its
//! action's deadline becomes `failed`. Each end is written to `hub_audit` in the
//! same statement as the state, so the log never misses one.

use serde::Serialize;
use serde_json::Value;

use super::Store;

/// Timestamps as the fleet API gives them.
const AT: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'";

/// One remote action, as the fleet API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteActionRow {
    pub id: i64,
    pub plant: String,
    pub action: String,
    pub args: Value,
    pub requested_by: String,
    pub requested_at: String,
    pub expires_at: String,
    /// `pending`, `sent`, `ok`, `refused`, `failed` or `expired`.
    pub state: String,
    pub sent_at: Option<String>,
    pub finished_at: Option<String>,
    pub detail: Option<String>,
    /// What the plant returned (a diagnostics bundle); only when one action is read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// An action claimed for sending.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    pub action: String,
    pub args: String,
    pub requested_by: String,
}

/// Why an action could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotCreated {
    #[error("no plant {0:?} is enrolled at this hub")]
    UnknownPlant(String),
    #[error("plant {0:?} is revoked at this hub: it gets no actions")]
    Revoked(String),
}

/// One entry of the hub's audit log.
#[derive(Debug, Clone, Serialize)]
pub struct HubAuditEntry {
    pub at: String,
    pub who: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub detail: String,
}

fn columns(with_result: bool) -> String {
    format!(
        "id, plant, action, args::text, requested_by,
         to_char(requested_at AT TIME ZONE 'UTC', {AT}), to_char(expires_at AT TIME ZONE 'UTC', {AT}),
         state, to_char(sent_at AT TIME ZONE 'UTC', {AT}), to_char(finished_at AT TIME ZONE 'UTC', {AT}),
         detail, {}",
        if with_result { "result::text" } else { "NULL::text" }
    )
}

fn row(r: &tokio_postgres::Row) -> RemoteActionRow {
    let json = |i: usize| {
        r.get::<_, Option<String>>(i)
            .and_then(|t| serde_json::from_str(&t).ok())
    };
    RemoteActionRow {
        id: r.get(0),
        plant: r.get(1),
        action: r.get(2),
        args: json(3).unwrap_or(Value::Null),
        requested_by: r.get(4),
        requested_at: r.get(5),
        expires_at: r.get(6),
        state: r.get(7),
        sent_at: r.get(8),
        finished_at: r.get(9),
        detail: r.get(10),
        result: json(11),
    }
}

impl Store {
    /// Queues `action` (with its checked `args`) for `plant`, to be sent within `expires_in_s`
    /// seconds, and audits the request as `who`'s.
    pub async fn create_remote_action(
        &mut self,
        plant: &str,
        action: &str,
        args: &Value,
        who: &str,
        expires_in_s: i64,
    ) -> anyhow::Result<Result<RemoteActionRow, NotCreated>> {
        let tx = self.client.transaction().await?;
        let found = tx
            .query_opt(
                "SELECT revoked_at IS NOT NULL FROM plants WHERE name = $1 AND cert_sha256 IS NOT NULL",
                &[&plant],
            )
            .await?;
        match found {
            None => return Ok(Err(NotCreated::UnknownPlant(plant.to_string()))),
            Some(r) if r.get::<_, bool>(0) => {
                return Ok(Err(NotCreated::Revoked(plant.to_string())))
            }
            Some(_) => {}
        }
        let r = tx
            .query_one(
                &format!(
                    "INSERT INTO remote_actions (plant, action, args, requested_by, expires_at)
                     VALUES ($1, $2, $3::text::jsonb, $4, now() + make_interval(secs => $5::bigint))
                     RETURNING {}",
                    columns(false)
                ),
                &[&plant, &action, &args.to_string(), &who, &expires_in_s],
            )
            .await?;
        let created = row(&r);
        tx.execute(
            "INSERT INTO hub_audit (who, action, target, outcome, detail) VALUES ($1, $2, $3, 'requested', $4)",
            &[
                &who,
                &format!("remote.{action}"),
                &plant,
                &format!("action #{} {args}, expires at {}", created.id, created.expires_at),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(created))
    }

    /// Claims up to `limit` pending, unexpired actions of `plant` (not revoked) for sending,
    /// in id order; a replica's claim is skipped by the others.
    pub async fn claim_remote_actions(
        &self,
        plant: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<Claimed>> {
        let rows = self
            .client
            .query(
                "UPDATE remote_actions SET state = 'sent', sent_at = now() WHERE id IN (
                    SELECT a.id FROM remote_actions a JOIN plants p ON p.name = a.plant
                    WHERE a.plant = $1 AND a.state = 'pending' AND a.expires_at > now()
                      AND p.revoked_at IS NULL
                    ORDER BY a.id LIMIT $2 FOR UPDATE OF a SKIP LOCKED)
                 RETURNING id, action, args::text, requested_by",
                &[&plant, &limit],
            )
            .await?;
        let mut claimed: Vec<Claimed> = rows
            .iter()
            .map(|r| Claimed {
                id: r.get(0),
                action: r.get(1),
                args: r.get(2),
                requested_by: r.get(3),
            })
            .collect();
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    }

    /// Records how sent action `id` of `plant` ended, and audits it. `false` when it is not a
    /// sent action of that plant (a plant answering for another's action, or twice).
    pub async fn finish_remote_action(
        &self,
        plant: &str,
        id: i64,
        state: &str,
        detail: &str,
        result: Option<&Value>,
    ) -> anyhow::Result<bool> {
        let n = self
            .client
            .execute(
                "WITH f AS (
                    UPDATE remote_actions SET state = $3, detail = $4, result = $5::text::jsonb,
                           finished_at = now()
                    WHERE id = $1 AND plant = $2 AND state = 'sent'
                    RETURNING id, plant, action, requested_by)
                 INSERT INTO hub_audit (who, action, target, outcome, detail)
                 SELECT requested_by, 'remote.' || action, plant, $3, 'action #' || id || ': ' || $4 FROM f",
                &[&id, &plant, &state, &detail, &result.map(|v| v.to_string())],
            )
            .await?;
        Ok(n == 1)
    }

    /// Ends every pending action past its expiry as `expired`, audited; returns how many.
    pub async fn expire_remote_actions(&self) -> anyhow::Result<u64> {
        Ok(self
            .client
            .execute(
                "WITH e AS (
                    UPDATE remote_actions SET state = 'expired', finished_at = now(),
                           detail = 'not delivered before it expired: the plant was not connected; it never ran'
                    WHERE state = 'pending' AND expires_at <= now()
                    RETURNING id, plant, action, requested_by, detail)
                 INSERT INTO hub_audit (who, action, target, outcome, detail)
                 SELECT requested_by, 'remote.' || action, plant, 'expired', 'action #' || id || ': ' || detail FROM e",
                &[],
            )
            .await?)
    }

    /// Ends every sent action whose answer is overdue (sent longer ago than its action's
    /// [`answer_deadline`](crate::replication::remote::answer_deadline)) as `failed`, audited:
    /// its replica crashed, or its answer was lost. Returns how many.
    pub async fn sweep_unanswered_remote_actions(&self) -> anyhow::Result<u64> {
        let all = crate::config::RemoteAction::ALL;
        let names: Vec<&str> = all.iter().map(|a| a.as_str()).collect();
        let (secs, within): (Vec<i64>, Vec<String>) = all
            .iter()
            .map(|a| {
                let d = crate::replication::remote::answer_deadline(*a);
                (
                    d.as_secs() as i64,
                    humantime::format_duration(d).to_string(),
                )
            })
            .unzip();
        Ok(self
            .client
            .execute(
                "WITH d(action, secs, within) AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[])),
                 s AS (
                    UPDATE remote_actions a SET state = 'failed', finished_at = now(),
                           detail = 'no answer from the plant within ' || d.within || ' of sending it (the hub replica that sent it may have stopped, or the answer was lost); it is not sent again: look at the plant, then ask again if needed'
                    FROM d
                    WHERE a.action = d.action AND a.state = 'sent'
                      AND a.sent_at <= now() - make_interval(secs => d.secs)
                    RETURNING a.id, a.plant, a.action, a.requested_by, a.detail)
                 INSERT INTO hub_audit (who, action, target, outcome, detail)
                 SELECT requested_by, 'remote.' || action, plant, 'failed', 'action #' || id || ': ' || detail FROM s",
                &[&names, &secs, &within],
            )
            .await?)
    }

    /// The newest `limit` actions of `plant`, newest first (without their results).
    pub async fn remote_actions(
        &self,
        plant: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<RemoteActionRow>> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {} FROM remote_actions WHERE plant = $1 ORDER BY id DESC LIMIT $2",
                    columns(false)
                ),
                &[&plant, &limit],
            )
            .await?;
        Ok(rows.iter().map(row).collect())
    }

    /// Action `id`, with its result.
    pub async fn remote_action(&self, id: i64) -> anyhow::Result<Option<RemoteActionRow>> {
        let r = self
            .client
            .query_opt(
                &format!("SELECT {} FROM remote_actions WHERE id = $1", columns(true)),
                &[&id],
            )
            .await?;
        Ok(r.as_ref().map(row))
    }

    /// Whether `plant` is enrolled here (revoked or not).
    pub async fn plant_exists(&self, plant: &str) -> anyhow::Result<bool> {
        Ok(self
            .client
            .query_opt("SELECT 1 FROM plants WHERE name = $1", &[&plant])
            .await?
            .is_some())
    }

    /// Writes one entry of the hub's audit log.
    pub async fn hub_audit(
        &self,
        who: &str,
        action: &str,
        target: Option<&str>,
        outcome: &str,
        detail: &str,
    ) -> anyhow::Result<()> {
        self.client
            .execute(
                "INSERT INTO hub_audit (who, action, target, outcome, detail) VALUES ($1, $2, $3, $4, $5)",
                &[&who, &action, &target, &outcome, &detail],
            )
            .await?;
        Ok(())
    }

    /// The newest `limit` entries of the hub's audit log, newest first.
    pub async fn hub_audit_log(&self, limit: i64) -> anyhow::Result<Vec<HubAuditEntry>> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT to_char(at AT TIME ZONE 'UTC', {AT}), who, action, target, outcome, detail
                     FROM hub_audit ORDER BY id DESC LIMIT $1"
                ),
                &[&limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| HubAuditEntry {
                at: r.get(0),
                who: r.get(1),
                action: r.get(2),
                target: r.get(3),
                outcome: r.get(4),
                detail: r.get(5),
            })
            .collect())
    }
}
