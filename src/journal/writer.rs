//! The journal's one writer: a thread that owns the write connection.
//!
//! It takes the first waiting command, then every command already queued (up to the group size),
//! and commits all appends among them in one SQLite transaction: one fsync for the whole group.
//! Each request inside the group is its own savepoint, so a conflicting request is refused alone
//! while the others commit. If the group's commit fails (a full disk), every request in it gets
//! the error and the sequence counter goes back to where it was: nothing is half-written.
//!
//! Pruning deletes in chunks between groups, so a large backlog never stalls ingest.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use tokio::sync::{mpsc, oneshot};

use super::{
    now_ms, Appended, CommitMode, Cursor, JournalError, NewTransaction, Options, Positions,
    PruneReport,
};

/// Rows deleted per pruning step; small enough that ingest waits at most a few milliseconds.
const PRUNE_CHUNK: i64 = 5_000;

pub(super) type AppendReply = oneshot::Sender<Result<Vec<Appended>, JournalError>>;
pub(super) type ProbeReply = oneshot::Sender<Result<(), JournalError>>;

pub(super) enum Command {
    Append {
        items: Vec<NewTransaction>,
        reply: AppendReply,
    },
    Advance {
        cursor: Cursor,
        seq: u64,
        reply: oneshot::Sender<Result<u64, JournalError>>,
    },
    /// Moves a cursor back (a restore put the data it had passed out of Odoo again).
    Rewind {
        cursor: Cursor,
        seq: u64,
        reply: oneshot::Sender<Result<u64, JournalError>>,
    },
    Maintain {
        reply: oneshot::Sender<Result<PruneReport, JournalError>>,
    },
    /// A small real commit, to tell whether the journal can still write.
    Probe {
        reply: ProbeReply,
    },
    Shutdown,
}

pub(super) fn load_positions(conn: &Connection, p: &Positions) -> rusqlite::Result<()> {
    let last: i64 = conn.query_row("SELECT last_seq FROM sequence WHERE id = 1", [], |r| {
        r.get(0)
    })?;
    let cursor = |name: &str| -> rusqlite::Result<i64> {
        conn.query_row("SELECT seq FROM cursors WHERE name = ?1", [name], |r| {
            r.get(0)
        })
    };
    p.last_seq.store(last as u64, Ordering::Release);
    p.last_seq_tx.send_replace(last as u64);
    p.hub_acked
        .store(cursor(Cursor::HubAcked.column())? as u64, Ordering::Release);
    p.applied
        .store(cursor(Cursor::Applied.column())? as u64, Ordering::Release);
    Ok(())
}

/// A pruning run in progress: what may go, and the replies waiting for its end.
struct Pruning {
    bound: i64,
    cutoff_ms: i64,
    deleted: u64,
    waiting: Vec<oneshot::Sender<Result<PruneReport, JournalError>>>,
    last_step: Instant,
}

pub(super) struct Writer {
    conn: Connection,
    options: Options,
    positions: Arc<Positions>,
    last_seq: i64,
    pruning: Option<Pruning>,
}

impl Writer {
    pub(super) fn new(conn: Connection, options: Options, positions: Arc<Positions>) -> Writer {
        let last_seq = positions.last_seq.load(Ordering::Acquire) as i64;
        Writer {
            conn,
            options,
            positions,
            last_seq,
            pruning: None,
        }
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let group_limit = match self.options.commit {
            CommitMode::Group => self.options.max_group.max(1),
            CommitMode::PerRequest => 1,
        };
        let mut appends: Vec<(Vec<NewTransaction>, AppendReply)> = Vec::new();
        let mut others: Vec<Command> = Vec::new();
        let mut probes: Vec<ProbeReply> = Vec::new();
        'serve: loop {
            let first = if self.pruning.is_some() {
                match rx.try_recv() {
                    Ok(c) => c,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.prune_step();
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                match rx.blocking_recv() {
                    Some(c) => c,
                    None => break,
                }
            };
            let mut shutdown = false;
            let mut take = |c: Command, appends: &mut Vec<_>| match c {
                Command::Append { items, reply } => appends.push((items, reply)),
                Command::Probe { reply } => probes.push(reply),
                Command::Shutdown => shutdown = true,
                other => others.push(other),
            };
            take(first, &mut appends);
            while appends.len() < group_limit {
                match rx.try_recv() {
                    Ok(c) => take(c, &mut appends),
                    Err(_) => break,
                }
            }
            let committed =
                !appends.is_empty() && self.commit_group(std::mem::take(&mut appends), now_ms());
            if !probes.is_empty() {
                // A group that just committed answers every probe; otherwise one write does.
                let result = if committed { Ok(()) } else { self.probe() };
                for reply in probes.drain(..) {
                    let _ = reply.send(
                        result
                            .as_ref()
                            .map(|_| ())
                            .map_err(JournalError::clone_kind),
                    );
                }
            }
            for c in others.drain(..) {
                self.handle(c);
            }
            // Under constant load the queue is never empty: prune a step at least once a second.
            if self
                .pruning
                .as_ref()
                .is_some_and(|p| p.last_step.elapsed() > Duration::from_secs(1))
            {
                self.prune_step();
            }
            if shutdown {
                break 'serve;
            }
        }
        while self.pruning.is_some() {
            self.prune_step();
        }
        let _ = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }

    fn handle(&mut self, c: Command) {
        match c {
            Command::Append { items, reply } => {
                self.commit_group(vec![(items, reply)], now_ms());
            }
            Command::Advance { cursor, seq, reply } => {
                let _ = reply.send(self.advance(cursor, seq));
            }
            Command::Rewind { cursor, seq, reply } => {
                let _ = reply.send(self.rewind(cursor, seq));
            }
            Command::Maintain { reply } => self.start_pruning(reply, now_ms()),
            Command::Probe { reply } => {
                let _ = reply.send(self.probe());
            }
            Command::Shutdown => {}
        }
    }

    /// A small real commit: `Ok` means the journal can write right now.
    fn probe(&self) -> Result<(), JournalError> {
        self.check_free_space()?;
        self.conn
            .execute("UPDATE sequence SET last_seq = last_seq WHERE id = 1", [])
            .map(|_| ())
            .map_err(JournalError::from_sqlite)
    }

    /// Commits the appends of one group in one transaction, then answers each request.
    /// Returns whether the group's transaction committed.
    pub(super) fn commit_group(
        &mut self,
        group: Vec<(Vec<NewTransaction>, AppendReply)>,
        now: i64,
    ) -> bool {
        let before = self.last_seq;
        let (requests, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        if let Err(e) = self.check_free_space() {
            for reply in replies {
                let _ = reply.send(Err(e.clone_kind()));
            }
            return false;
        }
        match self.write_group(&requests, now) {
            Ok(outcomes) => {
                self.positions
                    .last_seq
                    .store(self.last_seq as u64, Ordering::Release);
                self.positions
                    .last_seq_tx
                    .send_replace(self.last_seq as u64);
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
                true
            }
            Err(e) => {
                self.last_seq = before;
                tracing::error!(error = %e, requests = replies.len(), "journal commit failed; nothing of this group was stored");
                for reply in replies {
                    let _ = reply.send(Err(JournalError::from_sqlite(clone_sqlite_error(&e))));
                }
                false
            }
        }
    }

    /// The group's transaction. An `Err` means nothing was written; each request's own outcome
    /// (stored, or refused for a key conflict) is in the `Ok`.
    fn write_group(
        &mut self,
        requests: &[Vec<NewTransaction>],
        now: i64,
    ) -> rusqlite::Result<Vec<Result<Vec<Appended>, JournalError>>> {
        let mut tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(requests.len());
        for items in requests {
            let start_seq = self.last_seq;
            let mut sp = tx.savepoint()?;
            match insert_request(&sp, items, &mut self.last_seq, now)? {
                Ok(appended) => {
                    sp.commit()?;
                    outcomes.push(Ok(appended));
                }
                Err(conflict) => {
                    sp.rollback()?;
                    sp.commit()?;
                    self.last_seq = start_seq;
                    outcomes.push(Err(conflict));
                }
            }
        }
        tx.execute(
            "UPDATE sequence SET last_seq = ?1 WHERE id = 1",
            [self.last_seq],
        )?;
        tx.commit()?;
        Ok(outcomes)
    }

    /// Refuses writes while the file system has less than the configured reserve free, so
    /// the journal never runs into a full disk in the middle of a write or a checkpoint.
    fn check_free_space(&self) -> Result<(), JournalError> {
        if self.options.min_free_bytes == 0 {
            return Ok(());
        }
        match rustix::fs::statvfs(&self.options.dir) {
            Ok(s) if s.f_bavail.saturating_mul(s.f_frsize) < self.options.min_free_bytes => {
                Err(JournalError::DiskFull)
            }
            // If the file system cannot say, SQLite's own ENOSPC handling still applies.
            _ => Ok(()),
        }
    }

    fn advance(&mut self, cursor: Cursor, seq: u64) -> Result<u64, JournalError> {
        if seq > self.last_seq as u64 {
            return Err(JournalError::CursorBeyondEnd {
                cursor: cursor.column(),
                seq,
                last_seq: self.last_seq as u64,
            });
        }
        self.conn
            .execute(
                "UPDATE cursors SET seq = ?2 WHERE name = ?1 AND seq < ?2",
                params![cursor.column(), seq as i64],
            )
            .map_err(JournalError::from_sqlite)?;
        let slot = match cursor {
            Cursor::HubAcked => &self.positions.hub_acked,
            Cursor::Applied => &self.positions.applied,
        };
        Ok(slot.fetch_max(seq, Ordering::AcqRel).max(seq))
    }

    /// Moves a cursor back to `seq` (never forwards), durably, and narrows a pruning run in
    /// progress to it: what lies above the cursor now waits for it again. Returns the cursor.
    pub(super) fn rewind(&mut self, cursor: Cursor, seq: u64) -> Result<u64, JournalError> {
        self.conn
            .execute(
                "UPDATE cursors SET seq = ?2 WHERE name = ?1 AND seq > ?2",
                params![cursor.column(), seq as i64],
            )
            .map_err(JournalError::from_sqlite)?;
        let slot = match cursor {
            Cursor::HubAcked => &self.positions.hub_acked,
            Cursor::Applied => &self.positions.applied,
        };
        let now = slot.fetch_min(seq, Ordering::AcqRel).min(seq);
        // Same thread as the pruning steps: no step runs between the move and this.
        if let Some(p) = &mut self.pruning {
            p.bound = p.bound.min(now as i64);
        }
        Ok(now)
    }

    fn start_pruning(
        &mut self,
        reply: oneshot::Sender<Result<PruneReport, JournalError>>,
        now: i64,
    ) {
        let mut bound = self.positions.hub_acked.load(Ordering::Acquire);
        if self.options.wait_for_local_apply {
            bound = bound.min(self.positions.applied.load(Ordering::Acquire));
        }
        let cutoff_ms = now - self.options.retention.as_millis() as i64;
        match &mut self.pruning {
            Some(p) => {
                // Already running: make it what may go now (the cursors as they are, moved
                // back by a rewind as much as forward), and answer at its end.
                p.bound = bound as i64;
                p.cutoff_ms = p.cutoff_ms.max(cutoff_ms);
                p.waiting.push(reply);
            }
            None => {
                self.pruning = Some(Pruning {
                    bound: bound as i64,
                    cutoff_ms,
                    deleted: 0,
                    waiting: vec![reply],
                    last_step: Instant::now(),
                });
                self.prune_step();
            }
        }
    }

    /// Deletes one chunk; when nothing more may go, frees the pages and truncates the WAL.
    fn prune_step(&mut self) {
        let Some(p) = self.pruning.as_mut() else {
            return;
        };
        p.last_step = Instant::now();
        let result = self.conn.execute(
            "DELETE FROM transactions WHERE seq IN (
                 SELECT seq FROM transactions WHERE seq <= ?1 AND received_at < ?2
                 ORDER BY seq LIMIT ?3)",
            params![p.bound, p.cutoff_ms, PRUNE_CHUNK],
        );
        let finished = match result {
            Ok(n) => {
                p.deleted += n as u64;
                if (n as i64) < PRUNE_CHUNK {
                    Ok(p.deleted)
                } else {
                    return;
                }
            }
            Err(e) => Err(e),
        };
        let p = self.pruning.take().expect("pruning is running");
        let result = finished
            .and_then(|deleted| {
                if deleted > 0 {
                    // Frees one page per row it returns: step it to the end.
                    let mut vacuum = self.conn.prepare("PRAGMA incremental_vacuum")?;
                    let mut rows = vacuum.query([])?;
                    while rows.next()?.is_some() {}
                }
                self.conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                Ok(PruneReport { deleted })
            })
            .map_err(|e| {
                tracing::warn!(error = %e, "journal pruning failed; will retry at the next interval");
                e
            });
        if let Ok(r) = &result {
            if r.deleted > 0 {
                tracing::info!(
                    deleted = r.deleted,
                    "pruned acknowledged transactions past retention"
                );
            }
        }
        for w in p.waiting {
            let _ = w.send(
                result
                    .as_ref()
                    .map(|r| *r)
                    .map_err(|e| JournalError::Storage(clone_sqlite_error(e))),
            );
        }
    }
}

pub(super) fn clone_sqlite_error(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, msg) => {
            rusqlite::Error::SqliteFailure(*code, msg.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

/// Inserts one request's items, assigning seqs from `last_seq`. The inner `Err` is a key
/// conflict: the caller rolls the request back.
fn insert_request(
    conn: &Connection,
    items: &[NewTransaction],
    last_seq: &mut i64,
    now: i64,
) -> rusqlite::Result<Result<Vec<Appended>, JournalError>> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO transactions (seq, key, device, kind, payload, occurred_at, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (device, key) DO NOTHING",
    )?;
    let mut existing = conn.prepare_cached(
        "SELECT seq, kind, payload FROM transactions WHERE device = ?1 AND key = ?2",
    )?;
    let mut out = Vec::with_capacity(items.len());
    for (index, t) in items.iter().enumerate() {
        let seq = *last_seq + 1;
        let n = insert.execute(params![
            seq,
            t.key,
            t.device,
            t.kind,
            t.payload,
            t.occurred_at,
            now
        ])?;
        if n == 1 {
            *last_seq = seq;
            out.push(Appended {
                seq: seq as u64,
                duplicate: false,
            });
            continue;
        }
        // Keys are the device's own: only its own transaction can conflict.
        let (seq, kind, payload): (i64, String, String) = existing
            .query_row([&t.device, &t.key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        if kind != t.kind || payload != t.payload {
            return Ok(Err(JournalError::KeyConflict {
                index,
                key: t.key.clone(),
                seq: seq as u64,
            }));
        }
        out.push(Appended {
            seq: seq as u64,
            duplicate: true,
        });
    }
    Ok(Ok(out))
}

#[cfg(test)]
mod tests;
