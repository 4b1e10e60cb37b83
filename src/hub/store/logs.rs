//! The plants' log lines at the hub.

use super::*;
use crate::telemetry::LogLine;

/// A kept log line, as the fleet API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogRow {
    pub id: i64,
    pub plant: String,
    pub at: String,
    pub level: String,
    pub target: String,
    pub message: String,
}

/// What a search asks for.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub plant: Option<String>,
    /// Lines containing this text (any case).
    pub text: Option<String>,
    /// `error`: errors only; `warn`: warnings and errors; `info` or none: all.
    pub level: Option<String>,
    /// Lines older than this id (the next page).
    pub before: Option<i64>,
    pub limit: i64,
}

/// A line of a plant's link history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LinkEvent {
    pub at: String,
    /// `connected` or `disconnected`.
    pub event: String,
    pub detail: String,
}

impl Store {
    /// Writes a line of `plant`'s link history (kept 90 days).
    pub async fn record_link(&self, plant: &str, event: &str, detail: &str) -> anyhow::Result<()> {
        let detail: String = detail.chars().take(1000).collect();
        self.client
            .execute(
                "INSERT INTO plant_links (plant, event, detail) VALUES ($1, $2, $3)",
                &[&plant, &event, &detail],
            )
            .await?;
        Ok(())
    }

    /// The newest `limit` lines of `plant`'s link history, newest first.
    pub async fn link_history(&self, plant: &str, limit: i64) -> anyhow::Result<Vec<LinkEvent>> {
        let rows = self
            .client
            .query(
                "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), event, detail
                 FROM plant_links WHERE plant = $1 ORDER BY id DESC LIMIT $2",
                &[&plant, &limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| LinkEvent {
                at: r.get(0),
                event: r.get(1),
                detail: r.get(2),
            })
            .collect())
    }

    /// Keeps `lines` (each with its time as text) of `plant`, in one statement.
    pub async fn insert_logs(
        &self,
        plant: &str,
        lines: &[(String, LogLine)],
    ) -> anyhow::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let at: Vec<&str> = lines.iter().map(|(at, _)| at.as_str()).collect();
        let level: Vec<&str> = lines.iter().map(|(_, l)| l.level.as_str()).collect();
        let target: Vec<&str> = lines.iter().map(|(_, l)| l.target.as_str()).collect();
        let message: Vec<&str> = lines.iter().map(|(_, l)| l.message.as_str()).collect();
        self.client
            .execute(
                "INSERT INTO plant_logs (plant, at, level, target, message)
                 SELECT $1, a::timestamptz, l, t, m
                 FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS u(a, l, t, m)",
                &[&plant, &at, &level, &target, &message],
            )
            .await?;
        Ok(())
    }

    /// Deletes the lines older than `keep`, 10 000 at a time (each delete well within the
    /// statement timeout, however much there is); returns how many.
    pub async fn prune_logs(&self, keep: std::time::Duration) -> anyhow::Result<u64> {
        let mut total = 0;
        loop {
            let n = self
                .client
                .execute(
                    "DELETE FROM plant_logs WHERE id IN (
                        SELECT id FROM plant_logs WHERE at < now() - make_interval(secs => $1)
                        LIMIT 10000)",
                    &[&(keep.as_secs() as f64)],
                )
                .await?;
            total += n;
            if n < 10_000 {
                self.client
                    .execute(
                        "DELETE FROM plant_links WHERE at < now() - interval '90 days'",
                        &[],
                    )
                    .await?;
                return Ok(total);
            }
        }
    }

    /// The newest lines that match `q`, newest first; a search that takes more than 10 s is
    /// stopped (a text found nowhere is looked for in every line).
    pub async fn search_logs(&mut self, q: &LogQuery) -> anyhow::Result<Vec<LogRow>> {
        let levels: Vec<&str> = match q.level.as_deref() {
            Some("error") => vec!["error"],
            Some("warn") => vec!["error", "warn"],
            _ => vec!["error", "warn", "info"],
        };
        // The text is matched literally: LIKE's wildcards in it are escaped.
        let pattern = q.text.as_ref().map(|t| {
            format!(
                "%{}%",
                t.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            )
        });
        let tx = self.client.transaction().await?;
        tx.batch_execute("SET LOCAL statement_timeout = '10s'")
            .await?;
        let rows = tx
            .query(
                "SELECT id, plant, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
                        level, target, message
                 FROM plant_logs
                 WHERE ($1::text IS NULL OR plant = $1)
                   AND level = ANY($2)
                   AND ($3::text IS NULL OR message ILIKE $3)
                   AND ($4::bigint IS NULL OR id < $4)
                 ORDER BY id DESC LIMIT $5",
                &[&q.plant, &levels, &pattern, &q.before, &q.limit],
            )
            .await
            .map_err(|e| {
                if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) {
                    anyhow::anyhow!("the search took over 10 s; name a plant, or a text found more often")
                } else {
                    e.into()
                }
            })?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(|r| LogRow {
                id: r.get(0),
                plant: r.get(1),
                at: r.get(2),
                level: r.get(3),
                target: r.get(4),
                message: r.get(5),
            })
            .collect())
    }
}
