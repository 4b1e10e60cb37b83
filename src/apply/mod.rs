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

mod calls;
pub mod odoo_module;
mod remedy;
pub mod steps;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex, Notify};

use crate::config::TargetError;
use crate::health::{self, Health};
use crate::journal::{Cursor, Journal, Stored};
use crate::kinds::mapping::Kinds;
use crate::odoo::{Client, Target};
pub use calls::{apply_many, apply_one, Failed, Pending};
use calls::{idle_check, IDLE_CHECK};
pub use remedy::{prefix_of, rewind_stopped};

/// Where Odoo is, asked afresh at each connection (the stack's Odoo may move).
pub type Locate = Arc<dyn Fn() -> Result<Target, TargetError> + Send + Sync>;

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

/// An admin's bulk park: each transaction Odoo rejects within seqs `from..=to` (of `kind`, and
/// whose message holds `message`, when given) is parked as the queue meets it, and the rest
/// goes through; what Odoo takes is applied as ever. It ends once the queue is past `to`, so
/// it never sets aside a transaction sent after it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkRule {
    pub from: u64,
    pub to: u64,
    pub kind: Option<String>,
    pub message: Option<String>,
    /// Who made it, as the audit log names them.
    pub by: String,
    pub at: String,
    /// Parked under it so far.
    pub parked: u64,
}

impl ParkRule {
    /// What it parks, in words.
    pub fn describe(&self) -> String {
        let mut what = format!(
            "parks what Odoo rejects among seqs {} to {}",
            self.from, self.to
        );
        if let Some(k) = &self.kind {
            what.push_str(&format!(" of kind {k}"));
        }
        if let Some(m) = &self.message {
            what.push_str(&format!(" whose message holds {m:?}"));
        }
        what
    }

    /// Whether Odoo's rejection of `seq` (of `kind`, saying `message`) is one to park.
    pub fn matches(&self, seq: u64, kind: &str, message: &str) -> bool {
        (self.from..=self.to).contains(&seq)
            && self.kind.as_deref().is_none_or(|k| k == kind)
            && self
                .message
                .as_deref()
                .is_none_or(|m| message.to_lowercase().contains(&m.to_lowercase()))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Saved {
    stopped: Option<Stopped>,
    #[serde(default)]
    parked: Vec<Parked>,
    /// A bulk park in force.
    #[serde(default)]
    park_rule: Option<ParkRule>,
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
    /// The payload of the transaction the queue stopped at.
    #[serde(default)]
    pub stopped_payload: Option<String>,
    /// A bulk park in force.
    #[serde(default)]
    pub park_rule: Option<ParkRule>,
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
    /// One replay at a time: two would send the same parked transaction to Odoo twice.
    replaying: Mutex<()>,
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
                replaying: Mutex::new(()),
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
                let applied = inner.journal.cursor(Cursor::Applied);
                if let Some(rule) = saved.park_rule.as_ref().filter(|r| applied >= r.to) {
                    tracing::info!(parked = rule.parked, to = rule.to, by = %rule.by, "the bulk park is done: the queue is past its last seq");
                    saved.park_rule = None;
                    let _ = inner.save(&saved);
                }
                if let Some(after) = saved.resume_after.take() {
                    if let Err(e) = inner.journal.advance(Cursor::Applied, after).await {
                        inner.health.set(
                            COMPONENT,
                            health::State::Unhealthy,
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
                            health::State::Unhealthy,
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
                                .set(COMPONENT, health::State::Ok, "caught up".to_string());
                        }
                        Err(why) => {
                            client = None;
                            let message = format!("caught up, but Odoo does not answer: {why}; the next transaction waits for it");
                            inner
                                .health
                                .set(COMPONENT, health::State::Unhealthy, message.clone());
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
            let (parked, rule): (std::collections::HashSet<u64>, Option<ParkRule>) = {
                let saved = inner.saved.lock().await;
                (
                    saved.parked.iter().map(|p| p.seq).collect(),
                    saved.park_rule.clone(),
                )
            };
            let pending: Vec<Pending> = batch
                .iter()
                .map(|e| Pending {
                    seq: e.seq,
                    kind: &e.kind,
                    payload: &e.payload,
                    parked: parked.contains(&e.seq),
                })
                .collect();
            // An admin's bulk park sets aside what it covers as Odoo rejects it, and the rest of
            // the batch goes on; the parked are recorded (one write) before the cursor passes
            // them. Should plantd stop before, the batch is applied again from the cursor:
            // what Odoo took is kept once (external ids), what it rejected is parked again.
            let mut start = 0;
            let mut through = None;
            let mut failed = None;
            let mut set_aside: Vec<Parked> = Vec::new();
            loop {
                let (t, f) = apply_many(
                    &inner.kinds,
                    &inner.locate,
                    &mut client,
                    &inner.plant,
                    &pending[start..],
                )
                .await;
                if t.is_some() {
                    through = t;
                }
                let covered = match &f {
                    Some((seq, kind, Failed::Stop(message))) => rule
                        .as_ref()
                        .filter(|r| r.matches(*seq, kind, message))
                        .and_then(|_| batch.iter().position(|e| e.seq == *seq)),
                    _ => None,
                };
                let (Some(i), Some((seq, kind, Failed::Stop(message)))) = (covered, &f) else {
                    failed = f;
                    break;
                };
                let e = &batch[i];
                set_aside.push(Parked {
                    seq: *seq,
                    key: e.key.clone(),
                    device: e.device.clone(),
                    kind: kind.clone(),
                    payload: e.payload.clone(),
                    message: message.clone(),
                    parked_at: now(),
                });
                through = Some(*seq);
                start = i + 1;
                if start >= pending.len() {
                    break;
                }
            }
            if let Some(c) = &client {
                *inner.odoo_module.lock().expect("not poisoned") = Some(odoo_module::installed(c));
            }
            let mut saved = inner.saved.lock().await;
            if inner.rewinds.load(Ordering::Acquire) != epoch {
                // The cursor went back meanwhile (a restore): what this batch did is judged
                // again from there, in order.
                continue;
            }
            // A bulk park stopped or replaced during the batch: what the old one set aside
            // is not parked; the batch goes round again, under what holds now.
            let key = |r: &Option<ParkRule>| {
                r.as_ref()
                    .map(|r| (r.at.clone(), r.by.clone(), r.from, r.to))
            };
            if !set_aside.is_empty() && key(&saved.park_rule) != key(&rule) {
                continue;
            }
            if !set_aside.is_empty() {
                let count = set_aside.len() as u64;
                let mut next = saved.clone();
                next.parked.extend(set_aside);
                if let Some(r) = next.park_rule.as_mut() {
                    r.parked += count;
                }
                if let Err(e) = inner.save(&next) {
                    // Nothing moved: the batch is tried again, and parked again.
                    inner.health.set(
                        COMPONENT,
                        health::State::Unhealthy,
                        format!("recording {count} transactions parked by the bulk park: {e:#}"),
                    );
                    drop(saved);
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                tracing::info!(count, "parked by the bulk park");
                *saved = next;
            }
            if let Some(seq) = through {
                backoff = Duration::from_secs(1);
                *inner.waiting.lock().expect("not poisoned") = None;
                if let Err(e) = inner.journal.advance(Cursor::Applied, seq).await {
                    inner.health.set(
                        COMPONENT,
                        health::State::Unhealthy,
                        format!("recording the apply through seq {seq}: {e}"),
                    );
                    continue;
                }
                // Working through a backlog is healthy (an update's health gate waits for it).
                if failed.is_none() {
                    inner.health.set(
                        COMPONENT,
                        health::State::Ok,
                        format!("applied through seq {seq}"),
                    );
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
                            .set(COMPONENT, health::State::Unhealthy, message.clone());
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
        let stopped_payload = match &saved.stopped {
            Some(s) if s.kind != GAP => inner
                .journal
                .read_after(s.seq.saturating_sub(1), 1, 1 << 20)
                .await
                .ok()
                .and_then(|e| e.into_iter().find(|e| e.seq == s.seq))
                .map(|e| e.payload),
            _ => None,
        };
        ApplyReport {
            stopped_payload,
            park_rule: saved.park_rule,
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
}

impl Inner {
    fn save(&self, saved: &Saved) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(saved).expect("serializes");
        crate::fsutil::write_atomic(&self.path, &bytes, 0o600)
    }

    fn set_stopped_health(&self, s: &Stopped) {
        self.health.set(
            COMPONENT,
            health::State::Unhealthy,
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
