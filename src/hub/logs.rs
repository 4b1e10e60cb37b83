//! The plants' logs at the hub: each plant's warnings, errors and stack events, as its log
//! stream brings them (`replication::logs`), kept [`HubConfig::logs_keep`] (14 days by
//! default) in PostgreSQL and searched by plant, level and text on the fleet page, through
//! `GET /api/v1/fleet/logs` and with `plantd hub logs`.
//!
//! A plant cannot flood the hub: one log stream per connection, a batch is at most
//! `MAX_LOG_BATCH` bytes and `BATCH_LINES` lines, each line is cut to `MAX_LOG_LINE` bytes
//! without control characters, and each plant may bring [`RATE`] lines a second (bursts of
//! [`BURST`]; a batch costs one line at least) over all its streams at this replica: beyond,
//! the hub reads the next batch only once the plant has the allowance again, so QUIC's flow
//! control slows the plant, whose bounded queue drops its oldest lines and says so. Notes of
//! lines dropped at the plant are written at most once a minute per plant.
//!
//! [`HubConfig::logs_keep`]: crate::config::HubConfig::logs_keep

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::database::Database;
use crate::replication::logs::{Batch, BATCH_LINES};
use crate::replication::transport::read_frame_within;
use crate::replication::wire::{Frame, MAX_LOG_BATCH};
use crate::telemetry::{LogLine, MAX_LOG_LINE};

/// Lines a second a plant may bring, and the burst it may bring at once.
pub const RATE: f64 = 100.0;
pub const BURST: f64 = 2000.0;

/// Each plant's allowance, shared by its streams (a plant opening more gains nothing), and
/// the drops it reported since its last note.
#[derive(Clone)]
pub struct Logs {
    database: Database,
    buckets: Arc<Mutex<HashMap<String, (f64, Instant)>>>,
    drops: Arc<Mutex<HashMap<String, Drops>>>,
}

/// Lines a plant said it dropped and the hub has not written down yet, and when it last did.
type Drops = (u64, Option<Instant>);

/// A plant's drops are written down at most this often.
const NOTE_EVERY: Duration = Duration::from_secs(60);

impl Logs {
    pub fn new(database: Database) -> Logs {
        Logs {
            database,
            buckets: Arc::default(),
            drops: Arc::default(),
        }
    }

    /// Takes `n` lines (at least one, at most [`BURST`]) of `plant`'s allowance, or says how
    /// long until it has them.
    fn take(&self, plant: &str, n: usize) -> Result<(), Duration> {
        let need = (n.max(1) as f64).min(BURST);
        let mut buckets = self.buckets.lock().expect("not poisoned");
        let now = Instant::now();
        let (tokens, at) = buckets.entry(plant.to_string()).or_insert((BURST, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * RATE).min(BURST);
        *at = now;
        if *tokens >= need {
            *tokens -= need;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((need - *tokens) / RATE))
        }
    }

    /// Adds drops the plant reported; returns the total to write down when a note is due.
    fn dropped(&self, plant: &str, n: u64) -> Option<u64> {
        let mut drops = self.drops.lock().expect("not poisoned");
        let (count, last) = drops.entry(plant.to_string()).or_insert((0, None));
        *count = count.saturating_add(n);
        let due = *count > 0 && last.is_none_or(|t| t.elapsed() >= NOTE_EVERY);
        if due {
            *last = Some(Instant::now());
            Some(std::mem::take(count))
        } else {
            None
        }
    }
}

/// `batch`'s lines as the hub keeps them: levels known, targets and messages bounded, times
/// read (a line with none the hub can read is dated now).
pub fn checked(batch: Batch) -> anyhow::Result<(Vec<(String, LogLine)>, u64)> {
    if batch.lines.len() > BATCH_LINES {
        bail!(
            "a log batch of {} lines; at most {BATCH_LINES}",
            batch.lines.len()
        );
    }
    // No control characters (a terminal's escapes) but line ends and tabs in messages.
    let cut = |s: &str, max: usize| -> String {
        let clean: String = s
            .chars()
            .filter(|c| !c.is_control() || (max == MAX_LOG_LINE && matches!(c, '\n' | '\t')))
            .collect();
        let mut end = clean.len().min(max);
        while !clean.is_char_boundary(end) {
            end -= 1;
        }
        clean[..end].to_string()
    };
    let now = jiff::Timestamp::now();
    let lines = batch
        .lines
        .into_iter()
        .map(|l| {
            // A time the plant cannot have meant (before 2020, or ahead) is read as now.
            let earliest = jiff::Timestamp::from_second(1_577_836_800).expect("a valid time");
            let at =
                l.at.parse::<jiff::Timestamp>()
                    .ok()
                    .filter(|t| *t >= earliest && *t <= now)
                    .unwrap_or(now);
            let level = match l.level.as_str() {
                "error" | "warn" | "info" => l.level,
                _ => "warn".into(),
            };
            (
                at.to_string(),
                LogLine {
                    at: at.to_string(),
                    level,
                    target: cut(&l.target, 200),
                    message: cut(&l.message, MAX_LOG_LINE),
                },
            )
        })
        .collect();
    Ok((lines, batch.dropped))
}

impl crate::replication::hub::LogStreams for Logs {
    async fn serve(
        &self,
        plant: String,
        first: Frame,
        mut recv: quinn::RecvStream,
        mut buf: Vec<u8>,
    ) -> anyhow::Result<()> {
        let mut next = Some(first);
        loop {
            let frame = match next.take() {
                Some(f) => f,
                None => match read_frame_within(&mut recv, &mut buf, MAX_LOG_BATCH + 16).await? {
                    Some(f) => f,
                    None => return Ok(()),
                },
            };
            let Frame::Logs { body } = frame else {
                bail!("a log stream carries only log batches");
            };
            if body.len() > MAX_LOG_BATCH {
                bail!(
                    "a log batch of {} bytes; at most {MAX_LOG_BATCH}",
                    body.len()
                );
            }
            let batch: Batch =
                serde_json::from_str(&body).context("a log batch that is not the JSON expected")?;
            let (mut lines, dropped_at_plant) = checked(batch)?;
            // Backpressure, not loss: the next batch is read once the allowance is back.
            while let Err(wait) = self.take(&plant, lines.len()) {
                tokio::time::sleep(wait).await;
            }
            if let Some(n) = self.dropped(&plant, dropped_at_plant) {
                let at = jiff::Timestamp::now().to_string();
                lines.push((
                    at.clone(),
                    LogLine {
                        at,
                        level: "warn".into(),
                        target: "plantd::hub::logs".into(),
                        message: format!(
                            "{n} log lines were dropped at the plant (its queue was full: the link was slow or down)"
                        ),
                    },
                ));
            }
            if lines.is_empty() {
                continue;
            }
            let store = self.database.store().await?;
            store.insert_logs(&plant, &lines).await?;
        }
    }
}

/// Deletes what is older than `keep`, hourly, until the hub stops.
pub async fn sweep(database: Database, keep: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let done = async {
            let store = database.store().await?;
            anyhow::Ok(store.prune_logs(keep).await?)
        };
        match done.await {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "plants' log lines past their keep"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "pruning the plants' logs"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_and_cleaned() {
        let line = |level: &str, message: String| LogLine {
            at: "not a time".into(),
            level: level.into(),
            target: "t".repeat(500),
            message,
        };
        let (lines, dropped) = checked(Batch {
            dropped: 3,
            lines: vec![
                line("error", "é".repeat(3000)),
                line("debug", "a\0b".into()),
            ],
        })
        .unwrap();
        assert_eq!(dropped, 3);
        assert!(lines[0].1.message.len() <= MAX_LOG_LINE);
        assert_eq!(lines[0].1.target.len(), 200);
        assert_eq!(lines[1].1.level, "warn");
        assert_eq!(lines[1].1.message, "ab");
        let many = Batch {
            dropped: 0,
            lines: (0..=BATCH_LINES)
                .map(|_| line("warn", "x".into()))
                .collect(),
        };
        assert!(checked(many).is_err());
    }
}

/// `GET /api/v1/fleet/logs`'s query.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    plant: Option<String>,
    q: Option<String>,
    level: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

/// `GET /api/v1/fleet/logs?plant=&q=&level=&before=&limit=`: the newest lines that match,
/// newest first (signed in, any role).
pub async fn search(
    axum::extract::State(fleet): axum::extract::State<super::fleet::Fleet>,
    query: Result<axum::extract::Query<Query>, axum::extract::rejection::QueryRejection>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use crate::admin::AdminError;
    use axum::response::IntoResponse;
    let caller = match fleet.signin.reader(&headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let asked = (|| {
        let axum::extract::Query(mut q) = query.map_err(|e| AdminError::BadQuery(e.body_text()))?;
        // A user who sees some plants searches those only: their one plant, or the one named.
        if let Some(theirs) = &caller.plants {
            match (&q.plant, theirs.as_slice()) {
                (Some(p), _) if caller.sees(p) => {}
                (Some(p), _) => return Err(caller.out_of_scope(Some(p))),
                (None, [only]) => q.plant = Some(only.clone()),
                (None, _) => {
                    return Err(AdminError::Forbidden(format!(
                        "{} sees only the plants {}: name one with plant=",
                        caller.user,
                        theirs.join(", ")
                    )))
                }
            }
        }
        if let Some(p) = &q.plant {
            if !crate::enrollment::protocol::is_plant_name(p) {
                return Err(AdminError::BadQuery(format!(
                    "plant: {:?} is not a plant's name",
                    p.chars().take(80).collect::<String>()
                )));
            }
        }
        if q.q.as_ref().is_some_and(|t| t.chars().count() > 200) {
            return Err(AdminError::BadQuery("q: at most 200 characters".into()));
        }
        if let Some(l) = &q.level {
            if !["error", "warn", "info"].contains(&l.as_str()) {
                return Err(AdminError::BadQuery(
                    "level: use error, warn (warnings and errors) or info (all)".into(),
                ));
            }
        }
        if q.before.is_some_and(|b| b < 1) {
            return Err(AdminError::BadQuery("before: a line's id, from 1".into()));
        }
        let limit = match q.limit {
            None => 200,
            Some(n @ 1..=1000) => n,
            Some(n) => {
                return Err(AdminError::BadQuery(format!(
                    "limit: {n} is out of range; use 1 to 1000 (default 200)"
                )))
            }
        };
        Ok(super::store::LogQuery {
            plant: q.plant,
            text: q.q.filter(|t| !t.is_empty()),
            level: q.level,
            before: q.before,
            limit,
        })
    })();
    let query = match asked {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let mut store = match fleet.database.store().await {
        Ok(s) => s,
        Err(e) => {
            return AdminError::Unavailable(format!("the hub database: {e}; retrying"))
                .into_response()
        }
    };
    match store.search_logs(&query).await {
        Ok(lines) => axum::Json(serde_json::json!({ "lines": lines })).into_response(),
        Err(e) if format!("{e}").starts_with("the search took") => {
            AdminError::Unavailable(format!("{e}")).into_response()
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "fleet logs: hub database");
            AdminError::Unavailable("the hub cannot reach its database; retrying".into())
                .into_response()
        }
    }
}
