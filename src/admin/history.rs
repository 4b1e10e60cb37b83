//! `DATA_DIR/metrics.db`: what the admin UI charts over time, kept across restarts.
//!
//! Two tiers, both bounded: a fine tier of one sample per sampler tick (10 s) for the last
//! hour, and a coarse tier of 5-minute aggregates (the average of each gauge, the maximum
//! depth, the counters at the bucket's end) for 7 days; and markers (starts and upgrades,
//! island and rejoin, finished backups, restarts of stack services by plantd) for 7 days, at
//! most [`MARKERS_MAX_ROWS`]. Every write prunes what is out of its window (on both sides: a
//! clock set back leaves no rows in its future) or over its row bound.
//!
//! Rates are not stored: they come from the raw counters (`last_seq`, `hub_acked_seq`) of
//! consecutive rows, also across a restart; a counter that went down (a fresh journal) gives no
//! rate for that interval rather than a negative one.
//!
//! The file is its own (WAL, `synchronous=NORMAL`): a power cut may lose the last seconds of
//! samples, and `admin.db`, which is `synchronous=FULL`, is never slowed by them. Every call
//! blocks (SQLite): async callers go through `spawn_blocking`. Aggregation, rates, markers and
//! range parsing are plain functions, tested on their own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// The fine tier's window.
pub const FINE_KEEP_S: i64 = 3600;
/// At most this many fine rows (twice an hour of 10-s samples), whatever the clock says.
pub const FINE_MAX_ROWS: i64 = 720;
/// The coarse tier's bucket.
pub const BUCKET_S: i64 = 300;
/// The coarse tier's and the markers' window.
pub const COARSE_KEEP_S: i64 = 7 * 86_400;
/// At most this many coarse rows (7 days of 5-minute buckets, and a day more).
pub const COARSE_MAX_ROWS: i64 = 8 * 288;
/// At most this many markers.
pub const MARKERS_MAX_ROWS: i64 = 5000;
/// A row further in the future than this was written under a clock that was since set back.
const FUTURE_S: i64 = 60;
/// The newest markers an answer holds at most (a chart of more would be a comb).
pub const MARKERS_IN_ANSWER: i64 = 200;
/// The 7-day chart merges coarse buckets into points this long (336 points, not 2016).
const WEEK_STEP_S: i64 = 1800;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("metrics database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("metrics database {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One sampler tick's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub at: i64,
    pub depth: u64,
    /// Age of the oldest transaction the hub has not acknowledged.
    pub lag_s: Option<u64>,
    pub last_seq: u64,
    pub hub_acked_seq: u64,
    /// `last_seq - applied_seq` when the local apply is on.
    pub apply_backlog: Option<u64>,
    pub disk_used_pct: Option<f64>,
    pub cpu_pct: Option<f64>,
    pub memory_used_bytes: Option<u64>,
}

/// A stretch of samples: a coarse bucket, a merge of buckets, or one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// The start of the stretch (the sample's time for one sample), Unix seconds.
    pub at: i64,
    /// The time of its last sample: the counters are read then.
    pub end_at: i64,
    pub samples: u32,
    /// Averages over the stretch; an optional gauge over the samples that had it.
    pub depth: f64,
    pub depth_max: u64,
    pub lag_s: Option<f64>,
    pub apply_backlog: Option<f64>,
    pub disk_used_pct: Option<f64>,
    pub cpu_pct: Option<f64>,
    pub memory_used_bytes: Option<f64>,
    /// The counters at the stretch's end.
    pub last_seq: u64,
    pub hub_acked_seq: u64,
}

impl From<&Sample> for Aggregate {
    fn from(s: &Sample) -> Aggregate {
        Aggregate {
            at: s.at,
            end_at: s.at,
            samples: 1,
            depth: s.depth as f64,
            depth_max: s.depth,
            lag_s: s.lag_s.map(|v| v as f64),
            apply_backlog: s.apply_backlog.map(|v| v as f64),
            disk_used_pct: s.disk_used_pct,
            cpu_pct: s.cpu_pct,
            memory_used_bytes: s.memory_used_bytes.map(|v| v as f64),
            last_seq: s.last_seq,
            hub_acked_seq: s.hub_acked_seq,
        }
    }
}

/// The average of `values` weighted by their sample counts, over those that have a value.
fn weighted(values: impl Iterator<Item = (Option<f64>, u32)>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u64), |(sum, n), (v, w)| match v {
        Some(v) if v.is_finite() => (sum + v * f64::from(w), n + u64::from(w)),
        _ => (sum, n),
    });
    (n > 0).then(|| sum / n as f64)
}

/// One aggregate of `parts` (in any order) starting at `at`: averages weighted by samples,
/// the largest depth, the counters of the last part. `None` for no parts.
pub fn merge(at: i64, parts: &[Aggregate]) -> Option<Aggregate> {
    let last = parts.iter().max_by_key(|p| p.end_at)?;
    let samples: u32 = parts.iter().map(|p| p.samples).sum();
    let avg = |f: fn(&Aggregate) -> Option<f64>| weighted(parts.iter().map(|p| (f(p), p.samples)));
    Some(Aggregate {
        at,
        end_at: last.end_at,
        samples,
        depth: avg(|p| Some(p.depth)).unwrap_or(0.0),
        depth_max: parts.iter().map(|p| p.depth_max).max().unwrap_or(0),
        lag_s: avg(|p| p.lag_s),
        apply_backlog: avg(|p| p.apply_backlog),
        disk_used_pct: avg(|p| p.disk_used_pct),
        cpu_pct: avg(|p| p.cpu_pct),
        memory_used_bytes: avg(|p| p.memory_used_bytes),
        last_seq: last.last_seq,
        hub_acked_seq: last.hub_acked_seq,
    })
}

/// The start of the `step`-second stretch holding `at`.
pub fn bucket_of(at: i64, step: i64) -> i64 {
    at - at.rem_euclid(step)
}

/// Merges `rows` (oldest first) into one aggregate per `step` seconds.
pub fn downsample(rows: &[Aggregate], step: i64) -> Vec<Aggregate> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=rows.len() {
        if i == rows.len() || bucket_of(rows[i].at, step) != bucket_of(rows[start].at, step) {
            out.extend(merge(bucket_of(rows[start].at, step), &rows[start..i]));
            start = i;
        }
    }
    out
}

/// Per second between two readings of a counter; `None` when it went down (a fresh journal)
/// or no time passed.
pub fn rate(before: (i64, u64), after: (i64, u64)) -> Option<f64> {
    let secs = after.0 - before.0;
    (secs > 0 && after.1 >= before.1).then(|| (after.1 - before.1) as f64 / secs as f64)
}

/// A chart's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Hour,
    Day,
    Week,
}

impl Range {
    /// `1h` (the default), `24h` or `7d`.
    pub fn parse(value: Option<&str>) -> Result<Range, String> {
        match value {
            None | Some("1h") => Ok(Range::Hour),
            Some("24h") => Ok(Range::Day),
            Some("7d") => Ok(Range::Week),
            Some(other) => Err(format!(
                "range={:?}: choose 1h, 24h or 7d",
                other.chars().take(40).collect::<String>()
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Range::Hour => "1h",
            Range::Day => "24h",
            Range::Week => "7d",
        }
    }

    pub fn seconds(self) -> i64 {
        match self {
            Range::Hour => FINE_KEEP_S,
            Range::Day => 86_400,
            Range::Week => COARSE_KEEP_S,
        }
    }
}

/// A point of a chart, as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub at: String,
    pub depth: f64,
    pub depth_max: u64,
    pub lag_s: Option<f64>,
    pub ingest_per_s: Option<f64>,
    pub ack_per_s: Option<f64>,
    pub apply_backlog: Option<f64>,
    pub disk_used_pct: Option<f64>,
    pub cpu_pct: Option<f64>,
    pub memory_used_bytes: Option<u64>,
}

/// A moment worth a line on the charts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Marker {
    pub at: String,
    /// `start`, `upgrade`, `island`, `rejoin`, `backup` or `restart`.
    pub kind: String,
    pub detail: String,
}

/// `GET /api/v1/admin/history`'s answer.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    pub range: &'static str,
    /// Seconds between points (the sampler's tick for 1 h).
    pub step_s: i64,
    pub points: Vec<Point>,
    /// The newest [`MARKERS_IN_ANSWER`] markers of the range, oldest first.
    pub markers: Vec<Marker>,
    /// How many older markers of the range were left out.
    pub markers_left_off: i64,
}

fn rfc3339(at: i64) -> String {
    jiff::Timestamp::from_second(at).map_or_else(|_| at.to_string(), |t| t.to_string())
}

fn round(v: f64, places: i32) -> f64 {
    let k = 10f64.powi(places);
    (v * k).round() / k
}

/// The points of `rows` (oldest first), their rates from the row before each (`before` for
/// the first).
pub fn points(before: Option<&Aggregate>, rows: &[Aggregate]) -> Vec<Point> {
    let mut prev = before;
    rows.iter()
        .map(|r| {
            let (ingest, ack) = match prev {
                Some(p) => (
                    rate((p.end_at, p.last_seq), (r.end_at, r.last_seq)),
                    rate((p.end_at, p.hub_acked_seq), (r.end_at, r.hub_acked_seq)),
                ),
                None => (None, None),
            };
            prev = Some(r);
            Point {
                at: rfc3339(r.at),
                depth: round(r.depth, 1),
                depth_max: r.depth_max,
                lag_s: r.lag_s.map(|v| round(v, 1)),
                ingest_per_s: ingest.map(|v| round(v, 3)),
                ack_per_s: ack.map(|v| round(v, 3)),
                apply_backlog: r.apply_backlog.map(|v| round(v, 1)),
                disk_used_pct: r.disk_used_pct.map(|v| round(v, 2)),
                cpu_pct: r.cpu_pct.map(|v| round(v, 1)),
                memory_used_bytes: r.memory_used_bytes.map(|v| v.round() as u64),
            }
        })
        .collect()
}

/// What the sampler sees besides the journal, for the markers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub islanded: bool,
    /// Each stack service's restarts by plantd since the daemon started.
    pub restarts: Vec<(String, u64)>,
    /// The newest backup's id.
    pub newest_backup: Option<String>,
}

/// What the markers were last judged on. A thing first seen is a baseline, not a change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    islanded: Option<bool>,
    restarts: BTreeMap<String, u64>,
    /// `None` until known; `Some(None)`: no backup.
    backup: Option<Option<String>>,
}

/// The markers (kind, detail) for what changed since `seen`, which then holds `now`.
pub fn changes(seen: &mut Seen, now: &Observed) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    match (seen.islanded, now.islanded) {
        (Some(false), true) => out.push((
            "island",
            "islanded on purpose by an admin: replication stopped".to_string(),
        )),
        (Some(true), false) => out.push(("rejoin", "rejoined the hub: replication resumed".into())),
        _ => {}
    }
    seen.islanded = Some(now.islanded);
    for (service, n) in &now.restarts {
        if let Some(before) = seen.restarts.insert(service.clone(), *n) {
            if *n > before {
                let times = if n - before == 1 {
                    String::new()
                } else {
                    format!(" {} times", n - before)
                };
                out.push((
                    "restart",
                    format!("{service} restarted by plantd{times} ({n} since plantd started)"),
                ));
            }
        }
    }
    if let (Some(id), Some(before)) = (&now.newest_backup, &seen.backup) {
        // Ids start with their time: a larger one is a newer backup (an older one coming back
        // as the newest, after a deletion, is not a new backup).
        if before.as_ref().is_none_or(|b| id > b) {
            out.push(("backup", format!("backup {id} finished")));
        }
    }
    let newest = match (seen.backup.clone().flatten(), now.newest_backup.clone()) {
        (Some(b), Some(n)) => Some(b.max(n)),
        (b, n) => n.or(b),
    };
    seen.backup = Some(newest);
    out
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS fine (
    at INTEGER PRIMARY KEY,
    depth INTEGER NOT NULL,
    lag_s INTEGER,
    last_seq INTEGER NOT NULL,
    hub_acked_seq INTEGER NOT NULL,
    apply_backlog INTEGER,
    disk_used_pct REAL,
    cpu_pct REAL,
    memory_used_bytes INTEGER
);
CREATE TABLE IF NOT EXISTS coarse (
    at INTEGER PRIMARY KEY,
    end_at INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    depth REAL NOT NULL,
    depth_max INTEGER NOT NULL,
    lag_s REAL,
    apply_backlog REAL,
    disk_used_pct REAL,
    cpu_pct REAL,
    memory_used_bytes REAL,
    last_seq INTEGER NOT NULL,
    hub_acked_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS markers (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS markers_at ON markers (at);
CREATE TABLE IF NOT EXISTS facts (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// `DATA_DIR/metrics.db`.
pub struct History {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl History {
    /// Opens (or makes, mode 0600) `DATA_DIR/metrics.db`.
    pub fn open(data_dir: &Path) -> Result<History, HistoryError> {
        let path = data_dir.join("metrics.db");
        // Made private before SQLite opens it: its -wal and -shm files take its mode.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode_private()
            .open(&path)
            .map_err(|source| HistoryError::Io {
                path: path.clone(),
                source,
            })?;
        let sql = |source| HistoryError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = crate::sqlite::open(&path, crate::sqlite::Durability::Normal).map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        Ok(History {
            path,
            conn: Mutex::new(conn),
        })
    }

    fn sql(&self, source: rusqlite::Error) -> HistoryError {
        HistoryError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Stores a sample, brings its 5-minute bucket up to date, and prunes.
    pub fn record(&self, s: &Sample) -> Result<(), HistoryError> {
        let mut conn = self.conn.lock().expect("not poisoned");
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        tx.execute(
            "INSERT OR REPLACE INTO fine (at, depth, lag_s, last_seq, hub_acked_seq, apply_backlog,
                disk_used_pct, cpu_pct, memory_used_bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                s.at,
                i(s.depth),
                s.lag_s.map(i),
                i(s.last_seq),
                i(s.hub_acked_seq),
                s.apply_backlog.map(i),
                s.disk_used_pct,
                s.cpu_pct,
                s.memory_used_bytes.map(i),
            ],
        )
        .map_err(|e| self.sql(e))?;
        let bucket = bucket_of(s.at, BUCKET_S);
        let rows = fine_rows(&tx, bucket, bucket + BUCKET_S).map_err(|e| self.sql(e))?;
        if let Some(a) = merge(bucket, &rows) {
            tx.execute(
                "INSERT OR REPLACE INTO coarse (at, end_at, samples, depth, depth_max, lag_s,
                    apply_backlog, disk_used_pct, cpu_pct, memory_used_bytes, last_seq, hub_acked_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    a.at,
                    a.end_at,
                    a.samples,
                    a.depth,
                    i(a.depth_max),
                    a.lag_s,
                    a.apply_backlog,
                    a.disk_used_pct,
                    a.cpu_pct,
                    a.memory_used_bytes,
                    i(a.last_seq),
                    i(a.hub_acked_seq),
                ],
            )
            .map_err(|e| self.sql(e))?;
        }
        prune(&tx, s.at).map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))
    }

    /// Records a marker at `at` (Unix seconds), and prunes the markers.
    pub fn mark(&self, at: i64, kind: &str, detail: &str) -> Result<(), HistoryError> {
        let conn = self.conn.lock().expect("not poisoned");
        conn.execute(
            "INSERT INTO markers (at, kind, detail) VALUES (?1, ?2, ?3)",
            params![at, kind, detail],
        )
        .map_err(|e| self.sql(e))?;
        prune_markers(&conn, at).map_err(|e| self.sql(e))
    }

    pub fn fact(&self, name: &str) -> Result<Option<String>, HistoryError> {
        let conn = self.conn.lock().expect("not poisoned");
        conn.query_row("SELECT value FROM facts WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()
        .map_err(|e| self.sql(e))
    }

    pub fn set_fact(&self, name: &str, value: &str) -> Result<(), HistoryError> {
        let conn = self.conn.lock().expect("not poisoned");
        conn.execute(
            "INSERT OR REPLACE INTO facts (name, value) VALUES (?1, ?2)",
            [name, value],
        )
        .map(drop)
        .map_err(|e| self.sql(e))
    }

    /// Marks this daemon's start: an upgrade when `version` is not the previous start's.
    pub fn started(&self, at: i64, version: &str) -> Result<(), HistoryError> {
        let before = self.fact("version")?;
        let (kind, detail) = match before.as_deref() {
            Some(b) if b != version => ("upgrade", format!("plantd {b} → {version} started")),
            _ => ("start", format!("plantd {version} started")),
        };
        self.mark(at, kind, &detail)?;
        self.set_fact("version", version)
    }

    /// The fine tier since `since`, oldest first.
    pub fn fine_since(&self, since: i64) -> Result<Vec<Sample>, HistoryError> {
        let conn = self.conn.lock().expect("not poisoned");
        let mut st = conn
            .prepare_cached(
                "SELECT at, depth, lag_s, last_seq, hub_acked_seq, apply_backlog, disk_used_pct,
                    cpu_pct, memory_used_bytes FROM fine WHERE at >= ?1 ORDER BY at",
            )
            .map_err(|e| self.sql(e))?;
        let rows = st
            .query_map([since], |r| {
                Ok(Sample {
                    at: r.get(0)?,
                    depth: u(r.get(1)?),
                    lag_s: r.get::<_, Option<i64>>(2)?.map(u),
                    last_seq: u(r.get(3)?),
                    hub_acked_seq: u(r.get(4)?),
                    apply_backlog: r.get::<_, Option<i64>>(5)?.map(u),
                    disk_used_pct: r.get(6)?,
                    cpu_pct: r.get(7)?,
                    memory_used_bytes: r.get::<_, Option<i64>>(8)?.map(u),
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.sql(e))?;
        Ok(rows)
    }

    /// The chart of `range` ending at `now`; `tick_s` is the sampler's tick (the 1-hour step).
    pub fn chart(&self, range: Range, now: i64, tick_s: i64) -> Result<Chart, HistoryError> {
        let since = now - range.seconds();
        let (before, rows, step_s) = match range {
            Range::Hour => {
                let mut all: Vec<Aggregate> = self
                    .fine_since(since - 3 * tick_s.max(1))?
                    .iter()
                    .map(Aggregate::from)
                    .collect();
                let first = all.iter().position(|a| a.at >= since).unwrap_or(all.len());
                let before = first.checked_sub(1).map(|b| all[b].clone());
                (before, all.split_off(first), tick_s)
            }
            Range::Day | Range::Week => {
                let step = if range == Range::Week {
                    WEEK_STEP_S
                } else {
                    BUCKET_S
                };
                // From the stretch before the first, for the first point's rates.
                let conn = self.conn.lock().expect("not poisoned");
                let all =
                    coarse_since(&conn, bucket_of(since, step) - step).map_err(|e| self.sql(e))?;
                drop(conn);
                let mut merged = downsample(&all, step);
                let first = merged
                    .iter()
                    .position(|a| a.at >= bucket_of(since, step))
                    .unwrap_or(merged.len());
                let before = first.checked_sub(1).map(|b| merged[b].clone());
                (before, merged.split_off(first), step)
            }
        };
        let (markers, markers_left_off) = self.markers_since(since)?;
        Ok(Chart {
            range: range.name(),
            step_s,
            points: points(before.as_ref(), &rows),
            markers,
            markers_left_off,
        })
    }

    /// The newest markers since `since`, oldest first, and how many older ones were left out.
    fn markers_since(&self, since: i64) -> Result<(Vec<Marker>, i64), HistoryError> {
        let conn = self.conn.lock().expect("not poisoned");
        let all: i64 = conn
            .query_row(
                "SELECT count(*) FROM markers WHERE at >= ?1",
                [since],
                |r| r.get(0),
            )
            .map_err(|e| self.sql(e))?;
        let mut st = conn
            .prepare_cached(
                "SELECT at, kind, detail FROM markers WHERE at >= ?1 ORDER BY at DESC, id DESC LIMIT ?2",
            )
            .map_err(|e| self.sql(e))?;
        let mut markers: Vec<Marker> = st
            .query_map(params![since, MARKERS_IN_ANSWER], |r| {
                Ok(Marker {
                    at: rfc3339(r.get(0)?),
                    kind: r.get(1)?,
                    detail: r.get(2)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<_, _>>())
            .map_err(|e| self.sql(e))?;
        markers.reverse();
        let left_off = all - markers.len() as i64;
        Ok((markers, left_off))
    }

    /// How many rows each tier and the markers hold.
    #[cfg(test)]
    pub fn counts(&self) -> Result<(i64, i64, i64), HistoryError> {
        let conn = self.conn.lock().expect("not poisoned");
        let n = |t: &str| {
            conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .map_err(|e| self.sql(e))
        };
        Ok((n("fine")?, n("coarse")?, n("markers")?))
    }
}

trait PrivateMode {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateMode for std::fs::OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

fn fine_rows(conn: &Connection, from: i64, to: i64) -> rusqlite::Result<Vec<Aggregate>> {
    let mut st = conn.prepare_cached(
        "SELECT at, depth, lag_s, last_seq, hub_acked_seq, apply_backlog, disk_used_pct, cpu_pct,
            memory_used_bytes FROM fine WHERE at >= ?1 AND at < ?2 ORDER BY at",
    )?;
    let rows = st
        .query_map([from, to], |r| {
            Ok(Aggregate::from(&Sample {
                at: r.get(0)?,
                depth: u(r.get(1)?),
                lag_s: r.get::<_, Option<i64>>(2)?.map(u),
                last_seq: u(r.get(3)?),
                hub_acked_seq: u(r.get(4)?),
                apply_backlog: r.get::<_, Option<i64>>(5)?.map(u),
                disk_used_pct: r.get(6)?,
                cpu_pct: r.get(7)?,
                memory_used_bytes: r.get::<_, Option<i64>>(8)?.map(u),
            }))
        })?
        .collect();
    rows
}

fn coarse_since(conn: &Connection, since: i64) -> rusqlite::Result<Vec<Aggregate>> {
    let mut st = conn.prepare_cached(
        "SELECT at, end_at, samples, depth, depth_max, lag_s, apply_backlog, disk_used_pct,
            cpu_pct, memory_used_bytes, last_seq, hub_acked_seq FROM coarse WHERE at >= ?1
         ORDER BY at",
    )?;
    let rows = st
        .query_map([since], |r| {
            Ok(Aggregate {
                at: r.get(0)?,
                end_at: r.get(1)?,
                samples: r.get(2)?,
                depth: r.get(3)?,
                depth_max: u(r.get(4)?),
                lag_s: r.get(5)?,
                apply_backlog: r.get(6)?,
                disk_used_pct: r.get(7)?,
                cpu_pct: r.get(8)?,
                memory_used_bytes: r.get(9)?,
                last_seq: u(r.get(10)?),
                hub_acked_seq: u(r.get(11)?),
            })
        })?
        .collect();
    rows
}

/// Keeps each tier to its window around `now` and to its row bound.
fn prune(conn: &Connection, now: i64) -> rusqlite::Result<()> {
    for (table, keep, max) in [
        ("fine", FINE_KEEP_S + 60, FINE_MAX_ROWS),
        // And the stretch before the week's first point, for its rates.
        ("coarse", COARSE_KEEP_S + 2 * WEEK_STEP_S, COARSE_MAX_ROWS),
    ] {
        conn.execute(
            &format!("DELETE FROM {table} WHERE at < ?1 OR at > ?2"),
            [now - keep, now + FUTURE_S],
        )?;
        conn.execute(
            &format!(
                "DELETE FROM {table} WHERE at <= (SELECT at FROM {table} ORDER BY at DESC LIMIT 1 OFFSET ?1)"
            ),
            [max],
        )?;
    }
    prune_markers(conn, now)
}

fn prune_markers(conn: &Connection, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM markers WHERE at < ?1 OR at > ?2",
        [now - COARSE_KEEP_S, now + FUTURE_S],
    )?;
    conn.execute(
        "DELETE FROM markers WHERE id <= (SELECT id FROM markers ORDER BY id DESC LIMIT 1 OFFSET ?1)",
        [MARKERS_MAX_ROWS],
    )?;
    Ok(())
}

/// The sampler's side of the history: its own host probe (CPU use is measured between two of
/// its readings, not those of the overview's polls) and what the markers were judged on.
pub struct Recorder {
    probe: crate::telemetry::HostProbe,
    /// The first CPU reading measures nothing: it is not recorded.
    cpu_ready: bool,
    seen: Seen,
}

/// What one tick hands the recorder.
pub struct Tick {
    pub at: i64,
    pub stats: Option<crate::journal::Stats>,
    /// `(applied_seq, last_seq)` when the local apply is on.
    pub apply: Option<(u64, u64)>,
    pub islanded: bool,
    pub restarts: Vec<(String, u64)>,
}

const BACKUP_FACT: &str = "backup";

impl Recorder {
    /// Knows the newest backup recorded before (none on a first run: its newest is a baseline).
    pub fn new(history: &History) -> Recorder {
        let backup = match history.fact(BACKUP_FACT) {
            Ok(Some(id)) => Some((!id.is_empty()).then_some(id)),
            _ => None,
        };
        Recorder {
            probe: Default::default(),
            cpu_ready: false,
            seen: Seen {
                backup,
                ..Seen::default()
            },
        }
    }

    /// Reads the host and the newest backup, stores the sample and any markers. Blocks.
    pub fn tick(
        &mut self,
        history: &History,
        data_dir: &Path,
        t: Tick,
    ) -> Result<(), HistoryError> {
        let host = self.probe.read(data_dir);
        let cpu_pct = self.cpu_ready.then_some(f64::from(host.cpu_percent));
        self.cpu_ready = true;
        let disk_used_pct = (host.disk_total_bytes > 0).then(|| {
            host.disk_total_bytes.saturating_sub(host.disk_free_bytes) as f64 * 100.0
                / host.disk_total_bytes as f64
        });
        if let Some(stats) = &t.stats {
            history.record(&Sample {
                at: t.at,
                depth: stats.depth,
                lag_s: stats.oldest_unacked_age_s,
                last_seq: stats.last_seq,
                hub_acked_seq: stats.hub_acked_seq,
                apply_backlog: t.apply.map(|(applied, last)| last.saturating_sub(applied)),
                disk_used_pct,
                cpu_pct,
                memory_used_bytes: (host.memory_total_bytes > 0).then_some(host.memory_used_bytes),
            })?;
        }
        let observed = Observed {
            islanded: t.islanded,
            restarts: t.restarts,
            newest_backup: crate::backup::newest(data_dir).map(|(id, _)| id),
        };
        let known = self.seen.backup.clone();
        for (kind, detail) in changes(&mut self.seen, &observed) {
            history.mark(t.at, kind, &detail)?;
        }
        if self.seen.backup != known {
            let id = self.seen.backup.clone().flatten().unwrap_or_default();
            history.set_fact(BACKUP_FACT, &id)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: i64, depth: u64, last_seq: u64, acked: u64) -> Sample {
        Sample {
            at,
            depth,
            lag_s: (depth > 0).then_some(at as u64 % 100),
            last_seq,
            hub_acked_seq: acked,
            apply_backlog: None,
            disk_used_pct: Some(40.0),
            cpu_pct: if at % 20 == 0 { None } else { Some(10.0) },
            memory_used_bytes: Some(1000),
        }
    }

    #[test]
    fn a_bucket_holds_the_averages_the_largest_depth_and_the_last_counters() {
        let rows: Vec<Aggregate> = [
            sample(1000, 10, 100, 90),
            sample(1010, 30, 120, 90),
            sample(1020, 20, 130, 110),
        ]
        .iter()
        .map(Aggregate::from)
        .collect();
        // In any order: the counters are those of the last sample by time.
        let mut shuffled = rows.clone();
        shuffled.swap(0, 2);
        let a = merge(900, &shuffled).unwrap();
        assert_eq!(a.at, 900);
        assert_eq!(a.end_at, 1020);
        assert_eq!(a.samples, 3);
        assert_eq!(a.depth, 20.0);
        assert_eq!(a.depth_max, 30);
        assert_eq!((a.last_seq, a.hub_acked_seq), (130, 110));
        // An optional gauge averages over the samples that had it.
        assert_eq!(a.cpu_pct, Some(10.0));
        assert_eq!(a.apply_backlog, None);
        assert_eq!(merge(0, &[]), None);

        // Merging buckets weighs each by its samples.
        let b = merge(1200, &[Aggregate::from(&sample(1200, 80, 200, 200))]).unwrap();
        let week = merge(0, &[a, b]).unwrap();
        assert_eq!(week.samples, 4);
        assert_eq!(week.depth, 35.0);
        assert_eq!(week.depth_max, 80);
        assert_eq!(week.last_seq, 200);
    }

    #[test]
    fn downsampling_puts_each_row_in_its_bucket() {
        let rows: Vec<Aggregate> = (0..90)
            .map(|k| Aggregate::from(&sample(600 + k * 10, k as u64, k as u64, 0)))
            .collect();
        let buckets = downsample(&rows, BUCKET_S);
        let starts: Vec<i64> = buckets.iter().map(|b| b.at).collect();
        assert_eq!(starts, [600, 900, 1200]);
        assert!(buckets.iter().all(|b| b.samples == 30));
        assert_eq!(buckets[0].depth_max, 29);
        assert_eq!(buckets[2].last_seq, 89);
        assert!(downsample(&[], BUCKET_S).is_empty());
        assert_eq!(bucket_of(-1, 300), -300);
    }

    #[test]
    fn rates_come_from_counters_and_a_counter_that_went_down_gives_none() {
        assert_eq!(rate((0, 100), (10, 150)), Some(5.0));
        assert_eq!(rate((0, 100), (10, 100)), Some(0.0));
        // A fresh journal: seqs start again from 0.
        assert_eq!(rate((0, 100), (10, 3)), None);
        // No time passed, or the clock went back.
        assert_eq!(rate((10, 1), (10, 5)), None);
        assert_eq!(rate((10, 1), (5, 5)), None);

        let rows: Vec<Aggregate> = [
            sample(10, 1, 50, 40),
            sample(20, 1, 70, 40),
            sample(30, 1, 2, 0),
            sample(40, 1, 12, 5),
        ]
        .iter()
        .map(Aggregate::from)
        .collect();
        let before = Aggregate::from(&sample(0, 0, 40, 40));
        let p = points(Some(&before), &rows);
        let ingest: Vec<_> = p.iter().map(|p| p.ingest_per_s).collect();
        let acks: Vec<_> = p.iter().map(|p| p.ack_per_s).collect();
        assert_eq!(ingest, [Some(1.0), Some(2.0), None, Some(1.0)]);
        assert_eq!(acks, [Some(0.0), Some(0.0), None, Some(0.5)]);
        assert_eq!(points(None, &rows[..1])[0].ingest_per_s, None);
        assert_eq!(p[0].at, "1970-01-01T00:00:10Z");
    }

    #[test]
    fn ranges_parse_and_anything_else_says_what_to_give() {
        assert_eq!(Range::parse(None), Ok(Range::Hour));
        assert_eq!(Range::parse(Some("1h")), Ok(Range::Hour));
        assert_eq!(Range::parse(Some("24h")), Ok(Range::Day));
        assert_eq!(Range::parse(Some("7d")), Ok(Range::Week));
        for bad in ["", "1H", "30d", "1h ", "-1"] {
            let e = Range::parse(Some(bad)).unwrap_err();
            assert!(e.contains("choose 1h, 24h or 7d"), "{bad}: {e}");
        }
        let long = "x".repeat(10_000);
        assert!(Range::parse(Some(&long)).unwrap_err().len() < 100);
    }

    #[test]
    fn markers_follow_changes_not_first_sightings() {
        let mut seen = Seen::default();
        let mut now = Observed {
            islanded: true,
            restarts: vec![("odoo".into(), 2)],
            newest_backup: None,
        };
        assert_eq!(changes(&mut seen, &now), [], "a first sight is a baseline");
        now.islanded = false;
        now.restarts = vec![("odoo".into(), 3), ("redis".into(), 0)];
        now.newest_backup = Some("20261128T020000Z-a".into());
        let got = changes(&mut seen, &now);
        let kinds: Vec<_> = got.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, ["rejoin", "restart", "backup"]);
        assert_eq!(
            got[1].1,
            "odoo restarted by plantd (3 since plantd started)"
        );
        assert_eq!(got[2].1, "backup 20261128T020000Z-a finished");
        assert_eq!(changes(&mut seen, &now), [], "nothing changed");
        now.islanded = true;
        now.restarts[1].1 = 2;
        // An older backup becoming the newest (the newer one deleted) is no new backup.
        now.newest_backup = Some("20261127T020000Z-b".into());
        let got = changes(&mut seen, &now);
        assert_eq!(got[0].0, "island");
        assert_eq!(
            got[1].1,
            "redis restarted by plantd 2 times (2 since plantd started)"
        );
        assert_eq!(got.len(), 2);
        now.newest_backup = Some("20261129T020000Z-c".into());
        assert_eq!(changes(&mut seen, &now)[0].0, "backup");

        // A backup known from before the restart is no news; a newer one is.
        let mut seen = Seen {
            backup: Some(Some("20261129T020000Z-c".into())),
            ..Seen::default()
        };
        assert_eq!(changes(&mut seen, &now), []);
        let mut seen = Seen {
            backup: Some(None),
            ..Seen::default()
        };
        assert_eq!(changes(&mut seen, &now)[0].0, "backup");
    }

    #[test]
    fn the_store_keeps_its_tiers_bounded_and_charts_them() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("metrics.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        h.started(0, "1.0.0").unwrap();
        h.started(10, "1.0.0").unwrap();
        h.started(20, "1.1.0").unwrap();
        // Eight days of a sample every 5 min, then two hours of one every 10 s; the
        // counters grow by one a second.
        let start = 1_000_000_000;
        let end = start + 8 * 86_400;
        let dense = end - 2 * 3600;
        for at in (start..dense).step_by(300).chain((dense..end).step_by(10)) {
            let n = (at - start) as u64;
            h.record(&sample(at, n % 49 + n % 2, n, n)).unwrap();
        }
        let (fine, coarse, markers) = h.counts().unwrap();
        assert!(fine <= FINE_KEEP_S / 10 + 7, "{fine}");
        assert!(fine >= FINE_KEEP_S / 10, "{fine}");
        assert!(coarse <= (COARSE_KEEP_S + 3600) / BUCKET_S + 2, "{coarse}");
        // The start markers are older than 7 days by now: pruned on the next mark.
        h.mark(end, "backup", "b").unwrap();
        assert_eq!(h.counts().unwrap().2, 1, "{markers}");

        let now = end - 10;
        let hour = h.chart(Range::Hour, now, 10).unwrap();
        assert_eq!(hour.points.len(), 361);
        assert_eq!(hour.step_s, 10);
        assert!(hour.points.iter().all(|p| p.ingest_per_s == Some(1.0)));
        let day = h.chart(Range::Day, now, 10).unwrap();
        assert_eq!(day.step_s, 300);
        assert!(
            (288..=289).contains(&day.points.len()),
            "{}",
            day.points.len()
        );
        assert!(
            day.points.iter().all(|p| p.ingest_per_s == Some(1.0)),
            "{:?}",
            day.points
                .iter()
                .map(|p| p.ingest_per_s)
                .collect::<Vec<_>>()
        );
        assert!(day.points.last().unwrap().depth_max >= 40);
        let week = h.chart(Range::Week, now, 10).unwrap();
        assert_eq!(week.step_s, 1800);
        assert!(
            (336..=337).contains(&week.points.len()),
            "{}",
            week.points.len()
        );
        assert!(week.points.iter().all(|p| p.ingest_per_s == Some(1.0)));
        assert_eq!(week.markers.len(), 1);

        // A clock set back: what it wrote in its future goes on the next write.
        h.record(&sample(start, 1, 0, 0)).unwrap();
        assert_eq!(h.counts().unwrap().0, 1);
        for k in 0..(MARKERS_MAX_ROWS + 10) {
            h.mark(start + k, "restart", "x").unwrap();
        }
        assert_eq!(h.counts().unwrap().2, MARKERS_MAX_ROWS);
        let chart = h
            .chart(Range::Week, start + MARKERS_MAX_ROWS + 10, 10)
            .unwrap();
        assert_eq!(chart.markers.len() as i64, MARKERS_IN_ANSWER);
        assert_eq!(chart.markers_left_off, MARKERS_MAX_ROWS - MARKERS_IN_ANSWER);
        assert_eq!(
            chart.markers.last().unwrap().at,
            rfc3339(start + MARKERS_MAX_ROWS + 9)
        );
    }

    #[test]
    fn starts_say_their_version_and_upgrades_what_came_before() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path()).unwrap();
        h.started(100, "1.0.0").unwrap();
        h.started(200, "1.0.0").unwrap();
        h.started(300, "1.1.0").unwrap();
        drop(h);
        let h = History::open(dir.path()).unwrap();
        let chart = h.chart(Range::Hour, 400, 10).unwrap();
        let kinds: Vec<_> = chart
            .markers
            .iter()
            .map(|m| (m.kind.as_str(), m.detail.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("start", "plantd 1.0.0 started"),
                ("start", "plantd 1.0.0 started"),
                ("upgrade", "plantd 1.0.0 → 1.1.0 started"),
            ]
        );
    }
}
