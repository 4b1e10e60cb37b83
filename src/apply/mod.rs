//! Applying shop-floor transactions to the plant's Odoo, in seq order, exactly once.
//!
//! The journal's `applied` cursor says how far the local apply has got. Each transaction
//! becomes one [`mapping::Step`]:
//! - a record created through `load` under the external id `plantd.<plant>_<seq>`, after a
//!   look for that id: a retry after a timeout in which Odoo did commit finds the record and
//!   creates nothing;
//! - or an action on an existing record, run only while the record's `state` shows it has not
//!   run; after the call the state is read again, and an action that did not finish (Odoo
//!   asked for a wizard, say) is a rejection.
//!
//! Odoo away (or its database): wait and retry with backoff, nothing skipped. Odoo rejects a
//! transaction: the queue stops there, the `apply` component turns unhealthy with Odoo's
//! message, and an admin retries it after fixing the cause (`plantd apply retry SEQ`), or parks
//! it (`park SEQ`: it is kept, with its content, in `DATA_DIR/apply.json` and shown by
//! `apply status`) to let the rest through, and replays it later (`replay SEQ`); the admin UI's
//! Apply page sends the same requests. A remedy that does not fit the queue is a
//! [`RemedyError::Refused`] and changes nothing, not even in memory: `apply.json` is written
//! before the in-memory state follows it.
//!
//! A restore of Odoo's data to an earlier point moves the cursor back ([`Applier::rewind`]):
//! what was applied after that point is applied again, in seq order, and creates find nothing
//! under their external ids (the restored data lacks them) and make them once more. The apply's
//! own task never moves the cursor past a rewind it did not see: a batch that was under way
//! when the cursor moved back leaves the cursor alone.

pub mod odoo_module;
pub mod steps;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{watch, Mutex, Notify};

use crate::health::{Health, State as Health_};
use crate::journal::{Cursor, Journal, Stored};
use crate::kinds::mapping::{Kinds, Step};
use crate::odoo::{Client, OdooError, Target};
pub use steps::run_step;

/// Where Odoo is, asked afresh at each connection (the stack's Odoo may move).
pub type Locate = Arc<dyn Fn() -> Result<Target, String> + Send + Sync>;

/// Where the queue stopped, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stopped {
    pub seq: u64,
    pub kind: String,
    pub message: String,
    pub at: String,
}

/// A transaction set aside by an admin, with what it carried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parked {
    pub seq: u64,
    pub key: String,
    pub device: String,
    pub kind: String,
    pub payload: String,
    /// Odoo's message when it was parked.
    pub message: String,
    pub parked_at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Saved {
    stopped: Option<Stopped>,
    #[serde(default)]
    parked: Vec<Parked>,
    /// The `<plant>` of external ids, fixed at first use.
    #[serde(default)]
    prefix: Option<String>,
    /// The journal it applies from; a new journal restarts its seqs, and gets a new prefix.
    #[serde(default)]
    journal: Option<String>,
    /// Where an admin let the queue go on past a gap (`retry` of a gap stop).
    #[serde(default)]
    resume_after: Option<u64>,
    /// The last move of the cursor back (a restore).
    #[serde(default)]
    rewound: Option<Rewound>,
}

/// A move of the applied cursor back, because Odoo's data went back to an earlier point (a
/// backup was restored): what was applied after `to` is applied again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rewound {
    pub from: u64,
    pub to: u64,
    /// The backup whose restore moved it, when a restore did (else an admin's `apply rewind`).
    pub backup: Option<String>,
    /// Why: the restore and what its backup said about the apply.
    pub why: String,
    pub at: String,
    /// Transactions above `to` still in the journal: the apply goes through them again.
    pub again: u64,
    /// Seqs `to + 1` to this one were pruned from the journal already (past retention), so they
    /// cannot be applied again: the queue stops at that gap and says so.
    #[serde(default)]
    pub pruned_through: Option<u64>,
    /// Parked seqs above `to`, taken off the parked list to be applied again in order (a
    /// rejection stops the queue at them again, to be parked again).
    #[serde(default)]
    pub unparked: Vec<u64>,
}

impl Rewound {
    /// What it did, in a sentence or three.
    pub fn message(&self) -> String {
        let mut m = format!(
            "apply cursor rewound from {} to {}; {} transactions are applied again",
            self.from, self.to, self.again
        );
        if let Some(through) = self.pruned_through {
            m.push_str(&format!(
                "; seqs {} to {through} were pruned from the journal already (past retention), so they cannot be applied again: the apply stops at that gap, and `plantd apply retry {}` goes on without them",
                self.to + 1,
                through + 1
            ));
        }
        if !self.unparked.is_empty() {
            let seqs: Vec<String> = self.unparked.iter().map(u64::to_string).collect();
            let (what, are) = if seqs.len() == 1 {
                ("seq", "is")
            } else {
                ("seqs", "are")
            };
            m.push_str(&format!(
                "; parked {what} {} {are} no longer parked and applied again in order",
                seqs.join(", ")
            ));
        }
        m
    }
}

/// The `kind` of a stop that is a gap in the journal, not a transaction.
const GAP: &str = "(gap)";

/// Why an admin's retry, park or replay did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemedyError {
    /// Not where the remedy applies (the queue stopped elsewhere, or is not stopped; the seq
    /// is not parked), or Odoo still rejects the transaction: nothing was changed.
    #[error("{0}")]
    Refused(String),
    /// Recording it failed (the disk, the journal, the hub's database).
    #[error("{0}")]
    Failed(String),
}

/// What `plantd apply status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// The external ids of created records: `plantd.<plant>_<seq>`.
    pub external_ids: String,
    pub applied_seq: u64,
    pub last_seq: u64,
    pub stopped_at: Option<u64>,
    /// Odoo's message for the transaction the queue stopped at.
    pub message: Option<String>,
    /// The kind of the transaction the queue stopped at (`(gap)` for seqs no longer in the
    /// journal).
    #[serde(default)]
    pub stopped_kind: Option<String>,
    /// When the queue stopped there.
    #[serde(default)]
    pub stopped_since: Option<String>,
    /// Why the queue waits, when Odoo is away.
    pub waiting: Option<String>,
    pub parked: Vec<Parked>,
    /// The last time a restore (or an admin) moved the cursor back.
    #[serde(default)]
    pub rewound: Option<Rewound>,
    /// Whether the Odoo applied to has plantd's module (plantd_apply), which takes a batch in
    /// one call; unknown until the apply has connected.
    #[serde(default)]
    pub odoo_module: Option<bool>,
}

/// The local apply: one per daemon; the control socket's handle to it.
#[derive(Clone)]
pub struct Applier {
    inner: Arc<Inner>,
}

struct Inner {
    journal: Journal,
    kinds: Arc<Kinds>,
    /// The `<plant>` of external ids.
    plant: String,
    locate: Locate,
    health: Arc<Health>,
    path: PathBuf,
    saved: Mutex<Saved>,
    waiting: std::sync::Mutex<Option<String>>,
    /// Whether the Odoo last connected to has plantd_apply.
    odoo_module: std::sync::Mutex<Option<bool>>,
    wake: Notify,
    /// Counts rewinds; the apply's task moves the cursor only under `saved`'s lock and only
    /// when no rewind came between its read of the cursor and its move.
    rewinds: AtomicU64,
}

const COMPONENT: &str = "apply";

/// Most transactions read from the journal for one turn of the apply (at most 1 MiB of
/// them). With plantd_apply a turn is one call and one database transaction in Odoo: 256
/// rows give its joint validation of transfers enough moves to share (a 9:1 mix has about 25
/// moves in 256) while the transaction stays a second or two on two cores.
const READ_ROWS: usize = 256;

impl Applier {
    /// Starts applying; the queue's state comes back from `DATA_DIR/apply.json`.
    pub fn start(
        data_dir: &Path,
        journal: Journal,
        kinds: Arc<Kinds>,
        plant: String,
        locate: Locate,
        health: Arc<Health>,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Applier> {
        let path = data_dir.join("apply.json");
        let mut saved: Saved = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!("{} is damaged ({e}); it holds the parked transactions: repair it or restore it from a backup", path.display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
        };
        // External ids must never name two transactions: the prefix is fixed at first use, and
        // a new journal (its seqs start again) gets one of its own.
        let journal_id = journal.id().to_string();
        match (&saved.prefix, &saved.journal) {
            (Some(_), Some(j)) if *j == journal_id => {}
            (Some(_), _) => {
                let fresh = format!("{plant}-{}", &journal_id[..journal_id.len().min(8)]);
                tracing::warn!(prefix = %fresh, "a new journal: the records it creates get external ids plantd.{fresh}_<seq>");
                saved.prefix = Some(fresh);
                saved.journal = Some(journal_id);
            }
            (None, _) => {
                saved.prefix = Some(plant);
                saved.journal = Some(journal_id);
            }
        }
        let plant = saved.prefix.clone().expect("set above");
        let bytes = serde_json::to_vec_pretty(&saved).expect("serializes");
        crate::fsutil::write_atomic(&path, &bytes, 0o600)?;
        let applier = Applier {
            inner: Arc::new(Inner {
                journal,
                kinds,
                plant,
                locate,
                health,
                path,
                saved: Mutex::new(saved),
                waiting: Default::default(),
                odoo_module: Default::default(),
                wake: Notify::new(),
                rewinds: AtomicU64::new(0),
            }),
        };
        tokio::spawn(applier.clone().run(stop));
        Ok(applier)
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let inner = &self.inner;
        let mut last_seq = inner.journal.watch_last_seq();
        let mut client: Option<Client> = None;
        let mut backoff = Duration::from_secs(1);
        if let Some(s) = &inner.saved.lock().await.stopped {
            inner.set_stopped_health(s);
        }
        loop {
            if *stop.borrow() {
                return;
            }
            let (stopped, epoch) = {
                let mut saved = inner.saved.lock().await;
                if let Some(after) = saved.resume_after.take() {
                    if let Err(e) = inner.journal.advance(Cursor::Applied, after).await {
                        inner.health.set(
                            COMPONENT,
                            Health_::Unhealthy,
                            format!("moving past the gap: {e}"),
                        );
                    }
                    let _ = inner.save(&saved);
                }
                (
                    saved.stopped.is_some(),
                    inner.rewinds.load(Ordering::Acquire),
                )
            };
            let batch = if stopped {
                Vec::new()
            } else {
                let applied = inner.journal.cursor(Cursor::Applied);
                match inner.journal.read_after(applied, READ_ROWS, 1 << 20).await {
                    Ok(b) => b,
                    Err(e) => {
                        inner.health.set(
                            COMPONENT,
                            Health_::Unhealthy,
                            format!("reading the journal: {e}"),
                        );
                        Vec::new()
                    }
                }
            };
            if batch.is_empty() {
                if !stopped {
                    // Caught up, but only while Odoo answers: an Odoo gone away is said within
                    // seconds, not at the next transaction.
                    match idle_check(&inner.kinds, &inner.locate, &mut client).await {
                        Ok(()) => {
                            if let Some(c) = &client {
                                *inner.odoo_module.lock().expect("not poisoned") =
                                    Some(odoo_module::installed(c));
                            }
                            *inner.waiting.lock().expect("not poisoned") = None;
                            inner
                                .health
                                .set(COMPONENT, Health_::Ok, "caught up".to_string());
                        }
                        Err(why) => {
                            client = None;
                            let message = format!("caught up, but Odoo does not answer: {why}; the next transaction waits for it");
                            inner
                                .health
                                .set(COMPONENT, Health_::Unhealthy, message.clone());
                            *inner.waiting.lock().expect("not poisoned") = Some(message);
                        }
                    }
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = last_seq.changed() => {}
                    _ = inner.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE_CHECK) => {}
                }
                continue;
            }
            let applied = inner.journal.cursor(Cursor::Applied);
            if let Some(first) = batch.first().filter(|e| e.seq > applied + 1) {
                // Pruned before they were applied here ([apply] local was off for a while?):
                // said, never skipped quietly.
                let s = Stopped {
                    seq: first.seq,
                    kind: GAP.into(),
                    message: format!(
                        "seqs {} to {} are no longer in the journal, so they cannot be applied here; `plantd apply retry {}` goes on from seq {}",
                        applied + 1,
                        first.seq - 1,
                        first.seq,
                        first.seq
                    ),
                    at: now(),
                };
                let mut saved = inner.saved.lock().await;
                if inner.rewinds.load(Ordering::Acquire) != epoch {
                    continue;
                }
                inner.set_stopped_health(&s);
                saved.stopped = Some(s);
                let _ = inner.save(&saved);
                continue;
            }
            let parked: Vec<u64> = inner
                .saved
                .lock()
                .await
                .parked
                .iter()
                .map(|p| p.seq)
                .collect();
            let pending: Vec<Pending> = batch
                .iter()
                .map(|e| Pending {
                    seq: e.seq,
                    kind: &e.kind,
                    payload: &e.payload,
                    parked: parked.contains(&e.seq),
                })
                .collect();
            let (through, failed) = apply_many(
                &inner.kinds,
                &inner.locate,
                &mut client,
                &inner.plant,
                &pending,
            )
            .await;
            if let Some(c) = &client {
                *inner.odoo_module.lock().expect("not poisoned") = Some(odoo_module::installed(c));
            }
            let mut saved = inner.saved.lock().await;
            if inner.rewinds.load(Ordering::Acquire) != epoch {
                // The cursor went back meanwhile (a restore): what this batch did is judged
                // again from there, in order.
                continue;
            }
            if let Some(seq) = through {
                backoff = Duration::from_secs(1);
                *inner.waiting.lock().expect("not poisoned") = None;
                if let Err(e) = inner.journal.advance(Cursor::Applied, seq).await {
                    inner.health.set(
                        COMPONENT,
                        Health_::Unhealthy,
                        format!("recording the apply through seq {seq}: {e}"),
                    );
                    continue;
                }
                // Working through a backlog is healthy (an update's health gate waits for it).
                if failed.is_none() {
                    inner
                        .health
                        .set(COMPONENT, Health_::Ok, format!("applied through seq {seq}"));
                }
            }
            match failed {
                None => {}
                Some((seq, _, Failed::Wait(why))) => {
                    client = None;
                    let message = format!(
                        "{why}; seq {seq} is tried again in {} s, nothing is skipped",
                        backoff.as_secs()
                    );
                    tracing::warn!(seq, "{message}");
                    if backoff >= Duration::from_secs(8) {
                        inner
                            .health
                            .set(COMPONENT, Health_::Unhealthy, message.clone());
                    }
                    *inner.waiting.lock().expect("not poisoned") = Some(message);
                    drop(saved);
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
                Some((seq, kind, Failed::Stop(message))) => {
                    // A fixed [odoo] section is read again at the retry.
                    client = None;
                    let s = Stopped {
                        seq,
                        kind,
                        message,
                        at: now(),
                    };
                    tracing::error!(seq = s.seq, kind = %s.kind, message = %s.message, "Odoo rejected a transaction: the apply queue stops here");
                    inner.set_stopped_health(&s);
                    saved.stopped = Some(s);
                    if let Err(e) = inner.save(&saved) {
                        tracing::error!(error = %format!("{e:#}"), "could not record where the apply queue stopped");
                    }
                }
            }
        }
    }

    pub async fn status(&self) -> ApplyReport {
        let inner = &self.inner;
        let saved = inner.saved.lock().await.clone();
        ApplyReport {
            external_ids: format!("plantd.{}_<seq>", inner.plant),
            applied_seq: inner.journal.cursor(Cursor::Applied),
            last_seq: *inner.journal.watch_last_seq().borrow(),
            stopped_at: saved.stopped.as_ref().map(|s| s.seq),
            stopped_kind: saved.stopped.as_ref().map(|s| s.kind.clone()),
            stopped_since: saved.stopped.as_ref().map(|s| s.at.clone()),
            message: saved.stopped.map(|s| s.message),
            waiting: inner.waiting.lock().expect("not poisoned").clone(),
            parked: saved.parked,
            rewound: saved.rewound,
            odoo_module: *inner.odoo_module.lock().expect("not poisoned"),
        }
    }

    /// Moves the applied cursor back to `seq`, because Odoo's data went back to an earlier
    /// point (`backup`'s restore; `why` says more). `None` when the cursor is not past `seq`
    /// (nothing to apply again). The queue's stop and a pending move past a gap are cleared
    /// (the apply meets what stopped it again, in order), and parked seqs above `seq` that the
    /// journal still holds leave the parked list, to be applied again in order; those it no
    /// longer holds stay parked, as their only copy. The cursor moves first: should recording
    /// the rest fail, parked seqs stay parked (passed over, still replayable), nothing is lost.
    pub async fn rewind(
        &self,
        seq: u64,
        backup: Option<String>,
        why: String,
    ) -> Result<Option<Rewound>, RemedyError> {
        let inner = &self.inner;
        let mut saved = inner.saved.lock().await;
        // Under the lock the apply's task moves the cursor only with: it cannot pass `seq` now.
        if seq >= inner.journal.cursor(Cursor::Applied) {
            return Ok(None);
        }
        inner.rewinds.fetch_add(1, Ordering::AcqRel);
        let Some((next, rewound)) = rewind_saved(&inner.journal, &saved, seq, backup, why).await?
        else {
            return Ok(None);
        };
        inner.save(&next).map_err(|e| {
            RemedyError::Failed(format!(
                "{}; but recording it in {} failed ({e:#}): parked seqs stay parked",
                rewound.message(),
                inner.path.display()
            ))
        })?;
        *saved = next;
        *inner.waiting.lock().expect("not poisoned") = None;
        tracing::warn!(from = rewound.from, to = rewound.to, backup = ?rewound.backup, "{}", rewound.message());
        inner
            .health
            .set(COMPONENT, Health_::Starting, rewound.message());
        inner.wake.notify_one();
        Ok(Some(rewound))
    }

    /// Tries the transaction the queue stopped at again.
    pub async fn retry(&self, seq: u64) -> Result<String, RemedyError> {
        let inner = &self.inner;
        let mut saved = inner.saved.lock().await;
        let refused = |m: String| Err(RemedyError::Refused(m));
        let gap = match &saved.stopped {
            Some(s) if s.seq == seq => s.kind == GAP,
            Some(s) => {
                return refused(format!(
                    "the queue stopped at seq {}, not {seq}; nothing was changed",
                    s.seq
                ))
            }
            None => return refused("the queue is not stopped; nothing to retry".into()),
        };
        // Written first, so that a failure to write changes nothing, not even in memory.
        let mut next = saved.clone();
        if gap {
            next.resume_after = Some(seq - 1);
        }
        next.stopped = None;
        inner.save(&next).map_err(failed)?;
        *saved = next;
        inner
            .health
            .set(COMPONENT, Health_::Starting, format!("retrying seq {seq}"));
        inner.wake.notify_one();
        Ok(format!(
            "seq {seq} is tried again; `plantd apply status` shows how it went"
        ))
    }

    /// Sets the transaction the queue stopped at aside, with its content, and lets the rest
    /// through.
    pub async fn park(&self, seq: u64) -> Result<String, RemedyError> {
        let inner = &self.inner;
        let mut saved = inner.saved.lock().await;
        let refused = |m: String| Err(RemedyError::Refused(m));
        let stopped = match &saved.stopped {
            Some(s) if s.kind == GAP => {
                return refused(format!(
                    "the queue stopped at a gap before seq {}: `plantd apply retry {}` goes on; nothing was changed",
                    s.seq, s.seq
                ))
            }
            Some(s) if s.seq == seq => s.clone(),
            Some(s) => {
                return refused(format!(
                    "the queue stopped at seq {}, not {seq}; only that one can be parked, and nothing was changed",
                    s.seq
                ))
            }
            None => return refused("the queue is not stopped; nothing to park".into()),
        };
        let entry = inner
            .journal
            .read_after(seq.saturating_sub(1), 1, 1 << 20)
            .await
            .map_err(failed)?
            .into_iter()
            .find(|e| e.seq == seq)
            .ok_or_else(|| RemedyError::Failed(format!("seq {seq} is no longer in the journal")))?;
        let mut next = saved.clone();
        next.parked.push(Parked {
            seq,
            key: entry.key,
            device: entry.device,
            kind: entry.kind,
            payload: entry.payload,
            message: stopped.message,
            parked_at: now(),
        });
        next.stopped = None;
        inner.save(&next).map_err(failed)?;
        *saved = next;
        // Should this fail, the seq is parked all the same: the queue passes over it.
        inner
            .journal
            .advance(Cursor::Applied, seq)
            .await
            .map_err(|e| {
                RemedyError::Failed(format!(
                    "seq {seq} is parked, but moving the applied cursor past it failed: {e}; the queue passes over it all the same"
                ))
            })?;
        inner.health.set(
            COMPONENT,
            Health_::Starting,
            format!("seq {seq} parked; applying the rest"),
        );
        inner.wake.notify_one();
        Ok(format!("seq {seq} is parked (`plantd apply status` lists it; `plantd apply replay {seq}` applies it); the rest goes through"))
    }

    /// Applies a parked transaction now; it leaves the parked list when Odoo took it.
    pub async fn replay(&self, seq: u64) -> Result<String, RemedyError> {
        let inner = &self.inner;
        let parked = inner
            .saved
            .lock()
            .await
            .parked
            .iter()
            .find(|p| p.seq == seq)
            .cloned()
            .ok_or_else(|| {
                RemedyError::Refused(format!("seq {seq} is not parked; nothing was changed"))
            })?;
        let entry = Stored {
            seq,
            key: parked.key,
            device: parked.device,
            kind: parked.kind,
            payload: parked.payload,
            occurred_at: None,
            received_at_ms: 0,
        };
        let mut client = None;
        let done = inner
            .apply(&mut client, &entry)
            .await
            .map_err(|f| match f {
                Failed::Wait(why) | Failed::Stop(why) => {
                    RemedyError::Refused(format!("seq {seq} stays parked: {why}"))
                }
            })?;
        let mut saved = inner.saved.lock().await;
        let mut next = saved.clone();
        next.parked.retain(|p| p.seq != seq);
        inner.save(&next).map_err(|e| {
            RemedyError::Failed(format!(
                "seq {seq} is applied ({done}), but taking it off the parked list failed: {e:#}; a replay again finds it applied"
            ))
        })?;
        *saved = next;
        Ok(format!(
            "seq {seq} is applied ({done}) and no longer parked"
        ))
    }
}

/// The rewind without a running apply (the daemon is stopped): the journal opened by the
/// caller, `DATA_DIR/apply.json` read and written here, with the same rules as
/// [`Applier::rewind`].
pub async fn rewind_stopped(
    data_dir: &Path,
    journal: &Journal,
    seq: u64,
    backup: Option<String>,
    why: String,
) -> Result<Option<Rewound>, RemedyError> {
    let path = data_dir.join("apply.json");
    let saved: Saved = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| RemedyError::Failed(format!("{} is damaged: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
        Err(e) => return Err(failed(format!("reading {}: {e}", path.display()))),
    };
    let Some((next, rewound)) = rewind_saved(journal, &saved, seq, backup, why).await? else {
        return Ok(None);
    };
    let bytes = serde_json::to_vec_pretty(&next).expect("serializes");
    crate::fsutil::write_atomic(&path, &bytes, 0o600).map_err(|e| {
        RemedyError::Failed(format!(
            "{}; but recording it in {} failed ({e:#}): parked seqs stay parked",
            rewound.message(),
            path.display()
        ))
    })?;
    Ok(Some(rewound))
}

/// The `<plant>` of external ids in `DATA_DIR/apply.json`, when it was fixed for the journal
/// `journal_id` (a backup's manifest records it).
pub fn prefix_of(data_dir: &Path, journal_id: &str) -> Option<String> {
    let bytes = std::fs::read(data_dir.join("apply.json")).ok()?;
    let saved: Saved = serde_json::from_slice(&bytes).ok()?;
    match saved.journal {
        Some(j) if j == journal_id => saved.prefix,
        _ => None,
    }
}

/// Moves the cursor back to `seq` when it is past it, and returns the queue's state to record
/// with it. `None`: nothing to do.
async fn rewind_saved(
    journal: &Journal,
    saved: &Saved,
    seq: u64,
    backup: Option<String>,
    why: String,
) -> Result<Option<(Saved, Rewound)>, RemedyError> {
    let from = journal.cursor(Cursor::Applied);
    if seq >= from {
        return Ok(None);
    }
    let to = journal.rewind(Cursor::Applied, seq).await.map_err(failed)?;
    // From here on pruning waits for `to`: what the journal holds now above it stays.
    let (again, first) = journal.present(to, from).await.map_err(failed)?;
    let pruned_through = match first {
        Some(first) if first > to + 1 => Some(first - 1),
        None => Some(from),
        _ => None,
    };
    let mut next = saved.clone();
    let held = |p: &Parked| first.is_some_and(|f| p.seq >= f);
    let unparked: Vec<u64> = next
        .parked
        .iter()
        .filter(|p| p.seq > to && held(p))
        .map(|p| p.seq)
        .collect();
    next.parked.retain(|p| !unparked.contains(&p.seq));
    next.stopped = None;
    next.resume_after = None;
    let rewound = Rewound {
        from,
        to,
        backup,
        why,
        at: now(),
        again,
        pruned_through,
        unparked,
    };
    next.rewound = Some(rewound.clone());
    Ok(Some((next, rewound)))
}

fn failed(e: impl std::fmt::Display) -> RemedyError {
    RemedyError::Failed(format!("{e:#}"))
}

/// Why a transaction was not applied: wait and retry, or stop the queue.
pub enum Failed {
    Wait(String),
    Stop(String),
}

impl Inner {
    fn save(&self, saved: &Saved) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(saved).expect("serializes");
        crate::fsutil::write_atomic(&self.path, &bytes, 0o600)
    }

    fn set_stopped_health(&self, s: &Stopped) {
        self.health.set(
            COMPONENT,
            Health_::Unhealthy,
            format!(
                "stopped at seq {} ({}): {}; fix the cause and `plantd apply retry {}`, or `plantd apply park {}` to let the rest through",
                s.seq, s.kind, s.message, s.seq, s.seq
            ),
        );
    }

    async fn apply(&self, client: &mut Option<Client>, entry: &Stored) -> Result<String, Failed> {
        apply_one(
            &self.kinds,
            &self.locate,
            client,
            &self.plant,
            entry.seq,
            &entry.kind,
            &entry.payload,
        )
        .await
    }
}

/// A transaction waiting to be applied.
pub struct Pending<'a> {
    pub seq: u64,
    pub kind: &'a str,
    pub payload: &'a str,
    /// Set aside by an admin: passed over.
    pub parked: bool,
}

/// Most rows in one `load`.
const LOAD_ROWS: usize = 100;

/// Applies `pending` (in seq order) as far as it goes. Consecutive creates of one model with
/// the same columns go to Odoo as one `load` (all or nothing there), after one look for their
/// external ids; when Odoo rejects such a batch, its transactions are tried one by one, so that
/// the queue stops exactly at the one Odoo refuses. Returns the last seq applied (or passed
/// over), and where and why it stopped short.
pub async fn apply_many(
    kinds: &Kinds,
    locate: &Locate,
    client: &mut Option<Client>,
    plant: &str,
    pending: &[Pending<'_>],
) -> (Option<u64>, Option<(u64, String, Failed)>) {
    let kept = client.is_some();
    let (through, failed) = apply_many_once(kinds, locate, client, plant, pending).await;
    // A connection kept from earlier batches (the hub keeps its workers') is refused access
    // once the API key it signed in with is rotated: once, a fresh connection, which reads
    // the key again, goes on from where it stopped. A real refusal is met again there.
    if let (true, Some((seq, _, Failed::Stop(_)))) = (kept, &failed) {
        if client.as_ref().is_some_and(Client::refused_access) {
            *client = None;
            if let Some(at) = pending.iter().position(|p| p.seq == *seq) {
                tracing::info!(
                    seq,
                    "Odoo refused access on a kept connection; trying once more on a fresh one"
                );
                let (again, failed) =
                    apply_many_once(kinds, locate, client, plant, &pending[at..]).await;
                return (again.or(through), failed);
            }
        }
    }
    (through, failed)
}

async fn apply_many_once(
    kinds: &Kinds,
    locate: &Locate,
    client: &mut Option<Client>,
    plant: &str,
    pending: &[Pending<'_>],
) -> (Option<u64>, Option<(u64, String, Failed)>) {
    let mut through = None;
    let mut i = 0;
    // Connected first: a new connection learns which kinds this Odoo cannot take.
    if let Some(p) = pending.iter().find(|p| !p.parked) {
        match connect(kinds, locate, client).await {
            Err(f) => return (None, Some((p.seq, p.kind.to_string(), f))),
            // A kind refused for a missing model is let in again once Odoo has the model.
            Ok(c) if kinds.any_missing() => {
                if let Err(e) = check_models(kinds, c).await {
                    return (None, Some((p.seq, p.kind.to_string(), classify(e))));
                }
            }
            Ok(_) => {}
        }
    }
    while i < pending.len() {
        let p = &pending[i];
        if p.parked {
            through = Some(p.seq);
            i += 1;
            continue;
        }
        if client.as_ref().is_some_and(odoo_module::installed) {
            match apply_through_module(kinds, client, plant, &pending[i..]).await {
                Ok(Some(Module { next, done })) => {
                    through = done.or(through);
                    i += next;
                    if next > 0 {
                        continue;
                    }
                }
                Ok(None) => {}
                Err(e) => return (through, Some((p.seq, p.kind.to_string(), classify(e)))),
            }
        }
        // The run of creates (or moves) that can share a load.
        let run = match connect(kinds, locate, client).await {
            Err(f) => return (through, Some((p.seq, p.kind.to_string(), f))),
            Ok(c) => match vetted_run(kinds, c, &pending[i..]).await {
                Ok(run) => run,
                Err(f) => return (through, Some((p.seq, p.kind.to_string(), f))),
            },
        };
        if run.len() >= 2 {
            match connect(kinds, locate, client).await {
                Err(f) => return (through, Some((p.seq, p.kind.to_string(), f))),
                Ok(c) => match steps::run_many(c, plant, &run).await {
                    Ok(true) => {
                        through = run.last().map(|(s, _)| *s);
                        i += run.len();
                        continue;
                    }
                    // Rejected as a whole: one by one below finds the one.
                    Ok(false) => {}
                    Err(e) => return (through, Some((p.seq, p.kind.to_string(), classify(e)))),
                },
            }
            for q in &pending[i..i + run.len()] {
                match apply_one(kinds, locate, client, plant, q.seq, q.kind, q.payload).await {
                    Ok(_) => through = Some(q.seq),
                    Err(f) => return (through, Some((q.seq, q.kind.to_string(), f))),
                }
            }
            i += run.len();
            continue;
        }
        match apply_one(kinds, locate, client, plant, p.seq, p.kind, p.payload).await {
            Ok(_) => through = Some(p.seq),
            Err(f) => return (through, Some((p.seq, p.kind.to_string(), f))),
        }
        i += 1;
    }
    (through, None)
}

/// The run of creates (or moves) at the start of `pending` that can share a load: none when
/// the first is parked or neither a create nor a move.
fn load_run(kinds: &Kinds, pending: &[Pending<'_>]) -> Vec<(u64, Step)> {
    let mut run: Vec<(u64, Step)> = Vec::new();
    while let Some(q) = pending
        .get(run.len())
        .filter(|q| !q.parked && run.len() < LOAD_ROWS)
    {
        let Ok(step) = step_of(kinds, q.kind, q.payload) else {
            break;
        };
        let Some(shape) = load_shape(&step) else {
            break;
        };
        if run
            .first()
            .is_some_and(|(_, first)| load_shape(first) != Some(shape))
        {
            break;
        }
        run.push((q.seq, step));
    }
    run
}

/// Most transactions in one call of the plantd_apply module.
const MODULE_ROWS: usize = 500;

/// How far one call of the plantd_apply module got: `next` transactions of `pending` are
/// done (applied, or parked and passed over), the last of them `done`.
struct Module {
    next: usize,
    done: Option<u64>,
}

/// Applies the runs of creates and moves (and the parked transactions among them) at the start
/// of `pending` in one call of the plantd_apply module. `Ok(None)`: nothing there for it (the
/// first is neither), or the module failed in a way that is not Odoo refusing a transaction
/// (said in the log): the caller's own calls take over. A run the module refused, or could not
/// be sent (a reference an earlier run makes), is left to the caller, which finds the one
/// transaction one by one.
async fn apply_through_module(
    kinds: &Kinds,
    client: &Option<Client>,
    plant: &str,
    pending: &[Pending<'_>],
) -> Result<Option<Module>, OdooError> {
    let c = client.as_ref().expect("connected");
    // (index of the run's first transaction in `pending`, the run); parked ones between runs
    // are passed over with them.
    let mut runs: Vec<(usize, Vec<(u64, Step)>)> = Vec::new();
    let mut j = 0;
    let mut rows = 0;
    while j < pending.len() && rows < MODULE_ROWS {
        if pending[j].parked {
            j += 1;
            continue;
        }
        // One the vetting refuses ends the batch (the next run starts with it, and is empty):
        // the caller stops at it.
        let run = vetted_run(kinds, c, &pending[j..])
            .await
            .unwrap_or_default();
        if run.is_empty() {
            break;
        }
        rows += run.len();
        let len = run.len();
        runs.push((j, run));
        j += len;
    }
    if runs.is_empty() {
        return Ok(None);
    }
    let sent: Vec<&[(u64, Step)]> = runs.iter().map(|(_, r)| r.as_slice()).collect();
    let outcome = match steps::run_batch(c, plant, &sent).await {
        Ok(o) => o,
        Err(e) if e.transient() => return Err(e),
        Err(e) => {
            // Such as the module uninstalled meanwhile: the apply's own calls do the same.
            tracing::warn!(error = %e, "the plantd_apply module failed; applying with plantd's own calls");
            odoo_module::set_installed(c, false);
            return Ok(None);
        }
    };
    if let Some(why) = &outcome.refused {
        tracing::debug!(
            why,
            "the plantd_apply module refused a run; finding the transaction one by one"
        );
    }
    // Done through the last run carried out, with the parked ones before the next run.
    let next = match runs.get(outcome.done) {
        Some((start, _)) => *start,
        None => j,
    };
    let done = pending[..next].last().map(|p| p.seq);
    Ok(Some(Module { next, done }))
}

/// How often an idle apply asks whether Odoo still answers (and how long it waits for it).
const IDLE_CHECK: Duration = Duration::from_secs(4);

/// Whether Odoo can take transactions: a cheap signed-in call on the open connection (which
/// needs the database and the key, not only the web server), else a new connection. While a
/// kind is refused for a model Odoo lacked, the models are asked again, so that installing the
/// app lets the kind in within seconds.
async fn idle_check(
    kinds: &Kinds,
    locate: &Locate,
    client: &mut Option<Client>,
) -> Result<(), String> {
    let c = match client {
        Some(c) => c,
        None => connect(kinds, locate, client).await.map_err(|f| match f {
            Failed::Wait(why) | Failed::Stop(why) => why,
        })?,
    };
    let probe = c.call(
        "res.users",
        "search_count",
        vec![serde_json::json!([["id", "=", 0]])],
        serde_json::Map::new(),
    );
    match tokio::time::timeout(IDLE_CHECK, probe).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err(format!("no answer within {} s", IDLE_CHECK.as_secs())),
    }
    if kinds.any_missing() {
        check_models(kinds, c).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// What lets steps share one `load`: creates of one model with the same columns, or moves.
/// The context counts: one `load` has one.
type LoadShape<'s> = (
    &'s str,
    Vec<&'s str>,
    Option<&'s serde_json::Map<String, Value>>,
);

fn load_shape(step: &Step) -> Option<LoadShape<'_>> {
    match step {
        Step::Create {
            model,
            columns,
            context,
        } => Some((
            model.as_str(),
            columns.iter().map(|(c, _)| c.as_str()).collect(),
            Some(context),
        )),
        Step::Move { columns, .. } => Some((
            "stock.move",
            columns.iter().map(|(c, _)| c.as_str()).collect(),
            None,
        )),
        _ => None,
    }
}

fn step_of(kinds: &Kinds, kind: &str, payload: &str) -> Result<Step, Failed> {
    if let Some(why) = kinds.unavailable(kind) {
        return Err(Failed::Stop(why));
    }
    let payload: Value = serde_json::from_str(payload)
        .map_err(|e| Failed::Stop(format!("the payload is not JSON: {e}")))?;
    kinds.step(kind, &payload).map_err(|(field, m)| {
        Failed::Stop(format!(
            "{field}: {m} (the mappings changed since it was accepted?)"
        ))
    })
}

/// Connects `client` when it is not connected, and learns which of the kinds' models this
/// Odoo lacks (those kinds are refused from then on, at ingest too).
async fn connect<'c>(
    kinds: &Kinds,
    locate: &Locate,
    client: &'c mut Option<Client>,
) -> Result<&'c Client, Failed> {
    if client.is_none() {
        let target = locate().map_err(Failed::Wait)?;
        let url = target.url.clone();
        // Not this transaction's fault (a wrong key, Odoo away): wait, and take up a fixed
        // [odoo] section at the next try.
        let c = Client::connect(target)
            .await
            .map_err(|e| Failed::Wait(format!("{url}: {e}")))?;
        check_models(kinds, &c).await.map_err(classify)?;
        *client = Some(c);
    }
    Ok(client.as_ref().expect("connected"))
}

/// Asks Odoo which of the models the kinds need it has, and marks the kinds whose models it
/// lacks (such as `quality.check` on Odoo Community).
async fn check_models(kinds: &Kinds, c: &Client) -> Result<(), OdooError> {
    let mut wanted: Vec<String> = kinds.models().into_iter().collect();
    wanted.push(odoo_module::MODEL.to_string());
    let rows = c
        .call(
            "ir.model",
            "search_read",
            vec![serde_json::json!([["model", "in", wanted]])],
            serde_json::Map::from_iter([("fields".to_string(), serde_json::json!(["model"]))]),
        )
        .await?;
    let have: std::collections::BTreeSet<String> = rows
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["model"].as_str().map(str::to_string))
        .collect();
    odoo_module::set_installed(c, have.contains(odoo_module::MODEL));
    let absent = wanted.into_iter().filter(|m| !have.contains(m)).collect();
    for (kind, why) in kinds.mark_missing(&absent) {
        tracing::warn!(kind = %kind, "{why}");
    }
    Ok(())
}

fn classify(e: OdooError) -> Failed {
    if e.transient() {
        Failed::Wait(e.to_string())
    } else {
        Failed::Stop(e.to_string())
    }
}

/// Applies transaction `seq` of `plant` (its `kind` and `payload`), connecting `client` first
/// when it is not connected.
pub async fn apply_one(
    kinds: &Kinds,
    locate: &Locate,
    client: &mut Option<Client>,
    plant: &str,
    seq: u64,
    kind: &str,
    payload: &str,
) -> Result<String, Failed> {
    let c = connect(kinds, locate, client).await?;
    let step = step_of(kinds, kind, payload)?;
    vet(kinds, c, kind, &step).await?;
    run_step(c, plant, seq, &step).await.map_err(classify)
}

/// Checks an `odoo.create` against the fields Odoo says its model has (asked once per model and
/// connection): a one2many or many2many to a security model links records that grant rights,
/// and is written only where plant.toml names that model ([`Kinds::link_allowed`]). Other
/// kinds are the admin's own mappings, and pass.
async fn vet(kinds: &Kinds, c: &Client, kind: &str, step: &Step) -> Result<(), Failed> {
    let Step::Create { model, columns, .. } = step else {
        return Ok(());
    };
    if kind != "odoo.create" {
        return Ok(());
    }
    let fields = c.fields(model).await.map_err(classify)?;
    for (column, _) in columns {
        let name = column.split('/').next().unwrap_or(column);
        if let Some(f) = fields.get(name) {
            kinds
                .link_allowed(model, name, &f.kind, f.relation.as_deref())
                .map_err(|m| Failed::Stop(format!("payload.values.{column}: {m}")))?;
        }
    }
    Ok(())
}

/// [`load_run`], cut short before the first transaction [`vet`] refuses; that one's refusal
/// when it is the first.
async fn vetted_run(
    kinds: &Kinds,
    c: &Client,
    pending: &[Pending<'_>],
) -> Result<Vec<(u64, Step)>, Failed> {
    let mut run = load_run(kinds, pending);
    for (n, (p, (_, step))) in pending.iter().zip(&run).enumerate() {
        if let Err(f) = vet(kinds, c, p.kind, step).await {
            if n == 0 {
                return Err(f);
            }
            run.truncate(n);
            break;
        }
    }
    Ok(run)
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or(jiff::Timestamp::now())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{NewTransaction, Options};

    #[test]
    fn a_rewind_without_the_daemon_moves_the_cursor_and_unparks_what_comes_again() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let options = Options {
                dir: dir.path().to_path_buf(),
                ..Options::default()
            };
            let journal = Journal::open(&dir.path().join("journal.db"), options).unwrap();
            let items = (1..=4)
                .map(|i| NewTransaction {
                    key: format!("k{i}"),
                    device: "scanner-1".into(),
                    kind: "odoo.create".into(),
                    payload: "{}".into(),
                    occurred_at: None,
                })
                .collect();
            journal.append(items).await.unwrap();
            journal.advance(Cursor::Applied, 4).await.unwrap();
            let parked = |seq| Parked {
                seq,
                key: format!("k{seq}"),
                device: "scanner-1".into(),
                kind: "odoo.create".into(),
                payload: "{}".into(),
                message: "rejected".into(),
                parked_at: now(),
            };
            let saved = Saved {
                parked: vec![parked(1), parked(3)],
                prefix: Some("lyon".into()),
                journal: Some(journal.id().to_string()),
                ..Saved::default()
            };
            std::fs::write(
                dir.path().join("apply.json"),
                serde_json::to_vec(&saved).unwrap(),
            )
            .unwrap();

            let r = rewind_stopped(dir.path(), &journal, 2, Some("b1".into()), "test".into())
                .await
                .unwrap()
                .expect("the cursor was past 2");
            assert_eq!((r.from, r.to, r.again, r.pruned_through), (4, 2, 2, None));
            assert_eq!(r.unparked, vec![3]);
            assert_eq!(
                r.message(),
                "apply cursor rewound from 4 to 2; 2 transactions are applied again; parked seq 3 is no longer parked and applied again in order"
            );
            assert_eq!(journal.cursor(Cursor::Applied), 2);
            let saved: Saved =
                serde_json::from_slice(&std::fs::read(dir.path().join("apply.json")).unwrap())
                    .unwrap();
            assert_eq!(
                saved.parked.iter().map(|p| p.seq).collect::<Vec<_>>(),
                vec![1]
            );
            assert_eq!(saved.rewound, Some(r));
            assert_eq!(prefix_of(dir.path(), journal.id()), Some("lyon".into()));
            // Not past it: nothing to do, nothing changed.
            let again = rewind_stopped(dir.path(), &journal, 3, None, "test".into()).await;
            assert_eq!(again, Ok(None));
            journal.close().await;
        });
    }
}
