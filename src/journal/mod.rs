//! The store-and-forward journal: every shop-floor transaction the plant accepted, on SQLite.
//!
//! Promises:
//! - **Ack means durable.** [`Journal::append`] returns only after the transaction is committed
//!   and fsync'd (WAL, `synchronous=FULL`). One writer thread owns the write connection and
//!   commits the requests waiting at that moment as one group, so many callers share one fsync.
//! - **Gap-free order.** `seq` is assigned by that one writer, in commit order, from a counter
//!   that survives pruning; a request that fails leaves no hole.
//! - **Idempotency.** A key is its device's own: the same device repeating it gets the original
//!   `seq` with `duplicate = true`, or a conflict when the kind or payload differ; the same key
//!   from another device is another transaction.
//! - **All or nothing.** The items of one [`Journal::append`] call commit together or not at all.
//! - **Bounded disk.** Transactions that every required cursor passed and that are older than the
//!   retention window are deleted in chunks; freed pages go back to the file system and the WAL
//!   is truncated. A full disk refuses new transactions ([`JournalError::DiskFull`]) and damages
//!   nothing stored.
//!
//! Reads ([`Journal::get`], [`Journal::stats`]) use their own connection and never wait for the
//! writer. Nothing here knows about HTTP or the hub.

mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

pub use crate::config::CommitMode;

/// The journal's health detail while it commits.
pub const JOURNAL_OK: &str = "accepting transactions";

/// A transaction as a device sent it, checked by the ingest API.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTransaction {
    pub key: String,
    pub device: String,
    pub kind: String,
    /// The payload as canonical JSON text.
    pub payload: String,
    /// The device's clock, RFC 3339, as sent.
    pub occurred_at: Option<String>,
}

/// The journal's answer for one appended transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// The key was already in the journal; `seq` is the original one.
    pub duplicate: bool,
}

/// A stored transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub seq: u64,
    pub key: String,
    pub device: String,
    pub kind: String,
    pub payload: String,
    pub occurred_at: Option<String>,
    /// Unix milliseconds, the plant's clock.
    pub received_at_ms: i64,
}

impl Stored {
    /// A row of `SELECT seq, key, device, kind, payload, occurred_at, received_at`.
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
        Ok(Stored {
            seq: r.get::<_, i64>(0)? as u64,
            key: r.get(1)?,
            device: r.get(2)?,
            kind: r.get(3)?,
            payload: r.get(4)?,
            occurred_at: r.get(5)?,
            received_at_ms: r.get(6)?,
        })
    }
}

/// The positions that pruning waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// How far the hub has acknowledged.
    HubAcked,
    /// How far the local apply to the plant's Odoo has got.
    Applied,
}

impl Cursor {
    fn column(self) -> &'static str {
        match self {
            Cursor::HubAcked => "hub_acked",
            Cursor::Applied => "applied",
        }
    }
}

/// Numbers for status displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Transactions not yet acknowledged by the hub.
    pub depth: u64,
    pub last_seq: u64,
    pub hub_acked_seq: u64,
    pub applied_seq: u64,
    /// Age of the oldest transaction the hub has not acknowledged, in seconds.
    pub oldest_unacked_age_s: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("the disk holding the journal is full (or below its free-space reserve); free space, then retry with the same key (everything accepted before is intact)")]
    DiskFull,
    #[error("key {key:?} was already used by this device for a different transaction (seq {seq})")]
    KeyConflict {
        /// Position of the item in its request.
        index: usize,
        key: String,
        seq: u64,
    },
    #[error("cursor {cursor} cannot move to {seq}: the last seq is {last_seq}")]
    CursorBeyondEnd {
        cursor: &'static str,
        seq: u64,
        last_seq: u64,
    },
    #[error("the journal is shut down")]
    Closed,
    #[error("journal storage: {0}")]
    Storage(#[from] rusqlite::Error),
    #[error("journal storage at {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

impl JournalError {
    /// The same refusal for another waiter.
    fn clone_kind(&self) -> JournalError {
        match self {
            JournalError::DiskFull => JournalError::DiskFull,
            JournalError::Storage(e) => JournalError::Storage(writer::clone_sqlite_error(e)),
            other => JournalError::Storage(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
                Some(other.to_string()),
            )),
        }
    }

    fn from_sqlite(e: rusqlite::Error) -> JournalError {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => JournalError::DiskFull,
            _ => JournalError::Storage(e),
        }
    }
}

/// Settings of an open journal.
#[derive(Debug, Clone)]
pub struct Options {
    pub commit: CommitMode,
    pub max_group: usize,
    pub retention: Duration,
    /// Whether pruning also waits for the local apply cursor (when local apply is on).
    pub wait_for_local_apply: bool,
    /// New transactions are refused while less than this is free where the journal lives.
    pub min_free_bytes: u64,
    /// The directory holding the journal (where free space is measured).
    pub dir: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        let c = crate::config::JournalConfig::default();
        Options {
            commit: c.commit,
            max_group: c.max_group,
            retention: c.retention,
            wait_for_local_apply: false,
            min_free_bytes: 0,
            dir: PathBuf::from("."),
        }
    }
}

/// What one pruning pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PruneReport {
    pub deleted: u64,
}

/// Positions shared between the writer and readers.
#[derive(Debug)]
struct Positions {
    last_seq: AtomicU64,
    hub_acked: AtomicU64,
    applied: AtomicU64,
    /// The last seq again, for tasks that wait for new transactions.
    last_seq_tx: tokio::sync::watch::Sender<u64>,
}

impl Default for Positions {
    fn default() -> Self {
        Positions {
            last_seq: AtomicU64::new(0),
            hub_acked: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            last_seq_tx: tokio::sync::watch::channel(0).0,
        }
    }
}

/// A handle to the journal; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::Sender<writer::Command>,
    reader: Mutex<Connection>,
    positions: Arc<Positions>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    id: String,
}

impl Journal {
    /// Opens (creating if needed) the journal at `path` and starts its writer thread.
    pub fn open(path: &Path, options: Options) -> Result<Journal, JournalError> {
        let open_err = |source| JournalError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        schema::configure(&conn).map_err(open_err)?;
        schema::migrate(&mut conn).map_err(open_err)?;
        let positions = Arc::new(Positions::default());
        writer::load_positions(&conn, &positions).map_err(open_err)?;
        let id: String = conn
            .query_row("SELECT journal_id FROM identity WHERE id = 1", [], |r| {
                r.get(0)
            })
            .map_err(open_err)?;

        let reader = crate::sqlite::open_reader(path, true).map_err(open_err)?;

        let (tx, rx) = mpsc::channel(4096);
        let w = writer::Writer::new(conn, options, positions.clone());
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || w.run(rx))
            .map_err(|e| JournalError::Open {
                path: path.to_path_buf(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        Ok(Journal {
            inner: Arc::new(Inner {
                commands: tx,
                reader: Mutex::new(reader),
                positions,
                writer: Mutex::new(Some(handle)),
                id,
            }),
        })
    }

    /// The journal's random id, made when the file was created.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Appends `items` as one all-or-nothing unit; returns after the commit is fsync'd.
    pub async fn append(&self, items: Vec<NewTransaction>) -> Result<Vec<Appended>, JournalError> {
        let (reply, answer) = oneshot::channel();
        self.send(writer::Command::Append { items, reply }).await?;
        answer.await.map_err(|_| JournalError::Closed)?
    }

    /// Moves a cursor forward to `seq` (never backwards), durably.
    pub async fn advance(&self, cursor: Cursor, seq: u64) -> Result<u64, JournalError> {
        let (reply, answer) = oneshot::channel();
        self.send(writer::Command::Advance { cursor, seq, reply })
            .await?;
        answer.await.map_err(|_| JournalError::Closed)?
    }

    /// Moves a cursor back to `seq` (never forwards), durably: after a restore put Odoo's data
    /// back to an earlier point, the apply must pass those seqs again. Pruning waits for the
    /// cursor where it is now, so nothing above it is deleted from then on. Returns the cursor.
    pub async fn rewind(&self, cursor: Cursor, seq: u64) -> Result<u64, JournalError> {
        let (reply, answer) = oneshot::channel();
        self.send(writer::Command::Rewind { cursor, seq, reply })
            .await?;
        answer.await.map_err(|_| JournalError::Closed)?
    }

    /// Prunes what may go, then gives freed space back and truncates the WAL.
    pub async fn maintain(&self) -> Result<PruneReport, JournalError> {
        let (reply, answer) = oneshot::channel();
        self.send(writer::Command::Maintain { reply }).await?;
        answer.await.map_err(|_| JournalError::Closed)?
    }

    /// Commits a no-op write: `Ok` means the journal can take transactions right now.
    pub async fn probe(&self) -> Result<(), JournalError> {
        let (reply, answer) = oneshot::channel();
        self.send(writer::Command::Probe { reply }).await?;
        answer.await.map_err(|_| JournalError::Closed)?
    }

    /// [`Journal::probe`], with the outcome recorded as the journal's health (a full disk or a
    /// broken database shows there).
    pub async fn probe_health(&self, health: &crate::health::Health) {
        match self.probe().await {
            Ok(()) => health.set("journal", crate::health::State::Ok, JOURNAL_OK),
            Err(e) => health.set("journal", crate::health::State::Unhealthy, e.to_string()),
        }
    }

    async fn send(&self, c: writer::Command) -> Result<(), JournalError> {
        self.inner
            .commands
            .send(c)
            .await
            .map_err(|_| JournalError::Closed)
    }

    /// The stored transaction `device` sent with this key, if it is still in the journal.
    pub async fn get(&self, device: String, key: String) -> Result<Option<Stored>, JournalError> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT seq, key, device, kind, payload, occurred_at, received_at
                 FROM transactions WHERE device = ?1 AND key = ?2",
            )?
            .query_row([device, key], Stored::from_row)
            .optional()
        })
        .await
    }

    /// Up to `limit` transactions after `after`, in seq order, stopping once they hold about
    /// `max_bytes` (at least one is returned).
    pub async fn read_after(
        &self,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<Stored>, JournalError> {
        self.read(move |c| {
            let mut s = c.prepare_cached(
                "SELECT seq, key, device, kind, payload, occurred_at, received_at
                 FROM transactions WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = s.query_map([after as i64, limit as i64], Stored::from_row)?;
            let mut out = Vec::new();
            let mut bytes = 0;
            for row in rows {
                let row = row?;
                bytes += 48
                    + row.key.len()
                    + row.device.len()
                    + row.kind.len()
                    + row.payload.len()
                    + row.occurred_at.as_ref().map_or(0, String::len);
                out.push(row);
                if bytes >= max_bytes {
                    break;
                }
            }
            Ok(out)
        })
        .await
    }

    /// How many transactions with seqs in `after + 1 ..= through` the journal still holds,
    /// and the first of them.
    pub async fn present(
        &self,
        after: u64,
        through: u64,
    ) -> Result<(u64, Option<u64>), JournalError> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT count(*), min(seq) FROM transactions WHERE seq > ?1 AND seq <= ?2",
            )?
            .query_row([after as i64, through as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, Option<i64>>(1)?.map(|s| s as u64),
                ))
            })
        })
        .await
    }

    /// The last seq, updated after every commit.
    pub fn watch_last_seq(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.positions.last_seq_tx.subscribe()
    }

    /// Depth, positions and the age of the oldest unacknowledged transaction.
    pub async fn stats(&self) -> Result<Stats, JournalError> {
        let p = &self.inner.positions;
        let last_seq = p.last_seq.load(Ordering::Acquire);
        let hub_acked_seq = p.hub_acked.load(Ordering::Acquire);
        let applied_seq = p.applied.load(Ordering::Acquire);
        let oldest_ms = if last_seq > hub_acked_seq {
            self.read(move |c| {
                c.prepare_cached(
                    "SELECT received_at FROM transactions WHERE seq > ?1 ORDER BY seq LIMIT 1",
                )?
                .query_row([hub_acked_seq as i64], |r| r.get::<_, i64>(0))
                .optional()
            })
            .await?
        } else {
            None
        };
        Ok(Stats {
            // Two separate loads: an ack may land in between.
            depth: last_seq.saturating_sub(hub_acked_seq),
            last_seq,
            hub_acked_seq,
            applied_seq,
            oldest_unacked_age_s: oldest_ms.map(|ms| (now_ms().saturating_sub(ms) / 1000) as u64),
        })
    }

    /// The current position of a cursor.
    pub fn cursor(&self, cursor: Cursor) -> u64 {
        let p = &self.inner.positions;
        match cursor {
            Cursor::HubAcked => p.hub_acked.load(Ordering::Acquire),
            Cursor::Applied => p.applied.load(Ordering::Acquire),
        }
    }

    async fn read<T, F>(&self, f: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = inner.reader.lock().expect("reader lock is never poisoned");
            f(&conn).map_err(JournalError::from_sqlite)
        })
        .await
        .map_err(|_| JournalError::Closed)?
    }

    /// Stops the writer after the commands already queued, and waits for it to finish.
    pub async fn close(&self) {
        let _ = self.send(writer::Command::Shutdown).await;
        let handle = self.inner.writer.lock().expect("not poisoned").take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

/// A journal's id and its `applied` cursor, read from the file without opening it for
/// writing (a backup reads them beside a running daemon). `None` when there is no journal yet.
pub fn peek_applied(path: &Path) -> Result<Option<(String, u64)>, JournalError> {
    if !path.exists() {
        return Ok(None);
    }
    let open_err = |source| JournalError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = crate::sqlite::open_reader(path, true).map_err(open_err)?;
    let id: String = conn
        .query_row("SELECT journal_id FROM identity WHERE id = 1", [], |r| {
            r.get(0)
        })
        .map_err(open_err)?;
    let applied: i64 = conn
        .query_row(
            "SELECT seq FROM cursors WHERE name = ?1",
            [Cursor::Applied.column()],
            |r| r.get(0),
        )
        .map_err(open_err)?;
    Ok(Some((id, applied as u64)))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
