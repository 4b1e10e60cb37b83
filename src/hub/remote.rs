//! The hub's side of remote actions: serves each plant's remote-action stream
//! ([`RemoteStreams`]), sending the actions waiting for it and keeping their results, and ends
//! the ones that expired before their plant came.
//!
//! Promises: an action is sent at most once (claimed in the database, see
//! `store/remote.rs`), in id order, at most [`MAX_RUNNING`] unanswered at a time per stream; a
//! new action reaches a connected plant at once when it was created at this replica (a wake
//! keyed by plant) and within [`POLL`] when created elsewhere (another replica, the CLI); a
//! result is kept only for an action sent to that plant on that stream, and only within the
//! wire's bounds (4 MiB); an action whose connection ends before its answer is `failed`, not
//! sent again, and so is one still `sent` past its answer deadline (a replica that crashed);
//! the database away does not end a stream: claims and results are retried with backoff while
//! the plant's answers go on being read. The replication session is never waited on.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::database::Database;
use crate::replication::hub::RemoteStreams;
use crate::replication::remote::{Backoff, MAX_RUNNING};
use crate::replication::session::frame_name;
use crate::replication::transport::{read_frame_within, write_frame};
use crate::replication::wire::{
    Frame, RemoteOutcome, MAX_REMOTE_BODY, MAX_REMOTE_DETAIL, MAX_REMOTE_FRAME,
};

/// How often a stream looks for actions created at another replica or by the CLI, and how
/// often expired ones are ended.
pub const POLL: Duration = Duration::from_secs(2);

/// Why a sent action failed when its connection ended first.
const CUT: &str = "the connection to the plant ended before it answered; not sent again (an action such as a backup must not run twice unasked): look at the plant, then ask again if needed";

/// Remote actions at this hub replica: cheap to clone.
#[derive(Clone)]
pub struct Remote {
    database: Database,
    wakes: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl Remote {
    pub fn new(database: Database) -> Remote {
        Remote {
            database,
            wakes: Default::default(),
        }
    }

    /// Tells `plant`'s streams at this replica that an action waits.
    pub fn wake(&self, plant: &str) {
        if let Some(w) = self.wakes.lock().expect("not poisoned").get(plant) {
            w.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn subscribe(&self, plant: &str) -> watch::Receiver<u64> {
        self.wakes
            .lock()
            .expect("not poisoned")
            .entry(plant.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Claims what waits for `plant` (up to the free slots of `inflight`) and sends it. Every
    /// claimed id is in `inflight` before the first frame is written, so that a write that
    /// fails leaves none of them `sent` without a record (they end `failed` with the stream).
    /// `Ok(false)`: the database could not be asked; nothing was claimed.
    async fn send_waiting(
        &self,
        plant: &str,
        send: &mut quinn::SendStream,
        inflight: &mut HashSet<i64>,
        out: &mut Vec<u8>,
    ) -> anyhow::Result<bool> {
        let free = MAX_RUNNING.saturating_sub(inflight.len()) as i64;
        if free == 0 {
            return Ok(true);
        }
        let claimed = async {
            self.database
                .store()
                .await?
                .claim_remote_actions(plant, free)
                .await
        };
        let claimed = match claimed.await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(%plant, error = %format!("{e:#}"), "remote actions wait for the hub database; retrying");
                return Ok(false);
            }
        };
        inflight.extend(claimed.iter().map(|c| c.id));
        for c in claimed {
            tracing::info!(%plant, id = c.id, action = %c.action, by = %c.requested_by, "remote action sent");
            let frame = Frame::RemoteAction {
                id: c.id as u64,
                action: c.action,
                args: c.args,
                requested_by: c.requested_by,
            };
            write_frame(send, &frame, out).await?;
        }
        Ok(true)
    }

    /// Stores the answers in `answered`, oldest first; `false` when the database could not
    /// take them now (they stay, to be stored on the next try). An answer the database refuses
    /// as data (not as an outage) is stored as `failed`, saying why, without its result.
    async fn store_answers(&self, plant: &str, answered: &mut VecDeque<Answer>) -> bool {
        while let Some(a) = answered.front() {
            let stored = async {
                let store = self.database.store().await?;
                match store
                    .finish_remote_action(plant, a.id, a.state, &a.detail, a.result.as_ref())
                    .await
                {
                    Err(e) if is_data_error(&e) => {
                        let detail = refused_by_database(&e);
                        store
                            .finish_remote_action(plant, a.id, "failed", &detail, None)
                            .await
                            .map(|kept| (kept, "failed", detail))
                    }
                    done => done.map(|kept| (kept, a.state, a.detail.clone())),
                }
            };
            match stored.await {
                Ok((kept, state, detail)) => {
                    if kept {
                        tracing::info!(%plant, id = a.id, %state, %detail, "remote action ended");
                    } else {
                        tracing::warn!(%plant, id = a.id, "a result for an action that was no longer sent (it had ended at the hub); ignored");
                    }
                    answered.pop_front();
                }
                Err(e) => {
                    tracing::warn!(%plant, id = a.id, error = %format!("{e:#}"), "a remote action's result waits for the hub database; retrying");
                    return false;
                }
            }
        }
        true
    }

    /// Marks the unanswered actions of a stream that ended as failed.
    async fn fail_inflight(&self, plant: &str, inflight: HashSet<i64>) {
        for id in inflight {
            let done = async {
                let store = self.database.store().await?;
                store
                    .finish_remote_action(plant, id, "failed", CUT, None)
                    .await
            };
            if let Err(e) = done.await {
                tracing::error!(%plant, id, error = %format!("{e:#}"), "could not mark a cut-off remote action as failed; the sweep ends it once its answer is overdue");
            }
        }
    }
}

/// A plant's answer, checked, on its way to the database.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    id: i64,
    state: &'static str,
    detail: String,
    result: Option<serde_json::Value>,
}

/// The plant's answer to action `id` as the hub keeps it, if that action was sent to it on this
/// stream (`inflight`, from which it is taken). An answer over its bounds, not JSON, or holding
/// a NUL character (which PostgreSQL's text and jsonb refuse) is kept as `failed`, saying why.
fn answer(
    inflight: &mut HashSet<i64>,
    id: u64,
    outcome: RemoteOutcome,
    detail: String,
    body: String,
) -> anyhow::Result<Answer> {
    let Some(id) = i64::try_from(id).ok().filter(|id| inflight.remove(id)) else {
        anyhow::bail!("the plant answered action #{id}, which was not sent to it on this stream");
    };
    let failed = |why: String| Answer {
        id,
        state: "failed",
        detail: why,
        result: None,
    };
    if detail.len() > MAX_REMOTE_DETAIL || body.len() > MAX_REMOTE_BODY {
        return Ok(failed(format!(
            "the plant's answer is over its bounds ({} bytes of detail, {} of body); not kept",
            detail.len(),
            body.len()
        )));
    }
    let said = detail.replace('\0', "");
    let result = match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(v) => v,
        Err(e) => {
            return Ok(failed(format!(
                "the plant's result is not JSON ({e}); not kept"
            )))
        }
    };
    if detail.contains('\0') || holds_nul(&result) {
        return Ok(failed(format!(
            "the plant answered {} but its answer holds a NUL character (\\u0000), which the hub's database cannot store; the result was not kept. The plant said: {said}",
            outcome.as_str()
        )));
    }
    Ok(Answer {
        id,
        state: outcome.as_str(),
        detail,
        result: Some(result),
    })
}

/// Whether any string or key of `v` holds a NUL character.
fn holds_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(a) => a.iter().any(holds_nul),
        serde_json::Value::Object(m) => m.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// Whether PostgreSQL refused a statement for its data (SQLSTATE class 22, such as an
/// untranslatable character), which no retry would change.
fn is_data_error(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<tokio_postgres::Error>())
        .filter_map(|p| p.code())
        .any(|code| code.code().starts_with("22"))
}

/// The detail of an answer the database refused as data.
fn refused_by_database(e: &anyhow::Error) -> String {
    crate::replication::remote::cut(
        &format!("the hub's database refused the plant's answer ({e:#}); the result was not kept"),
        MAX_REMOTE_DETAIL,
    )
}

impl RemoteStreams for Remote {
    async fn serve(
        &self,
        plant: String,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        mut buf: Vec<u8>,
    ) -> anyhow::Result<()> {
        let mut wake = self.subscribe(&plant);
        let mut inflight = HashSet::new();
        let mut answered = VecDeque::new();
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut out = Vec::new();
        // While the database is away, it is asked again after a growing wait, and the stream
        // goes on reading the plant's answers meanwhile.
        let mut backoff = Backoff::default();
        let mut retry_at: Option<tokio::time::Instant> = None;
        let served = async {
            loop {
                if retry_at.is_none_or(|t| tokio::time::Instant::now() >= t) {
                    let reachable = self.store_answers(&plant, &mut answered).await
                        && self
                            .send_waiting(&plant, &mut send, &mut inflight, &mut out)
                            .await?;
                    if reachable {
                        (backoff, retry_at) = (Backoff::default(), None);
                    } else {
                        retry_at = Some(tokio::time::Instant::now() + backoff.next_delay());
                    }
                }
                tokio::select! {
                    _ = wake.changed() => {}
                    _ = poll.tick() => {}
                    _ = sleep_until(retry_at) => {}
                    frame = read_frame_within(&mut recv, &mut buf, MAX_REMOTE_FRAME) => match frame? {
                        Some(Frame::RemoteResult { id, outcome, detail, body }) => {
                            answered.push_back(answer(&mut inflight, id, outcome, detail, body)?);
                        }
                        Some(other) => anyhow::bail!("unexpected {} frame on the remote-action stream", frame_name(&other)),
                        None => return anyhow::Ok(()),
                    },
                }
            }
        }
        .await;
        if !self.store_answers(&plant, &mut answered).await {
            tracing::error!(%plant, n = answered.len(), "remote actions' results lost with the hub database away; the sweep ends them once their answer is overdue");
        }
        self.fail_inflight(&plant, inflight).await;
        served
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Ends the actions that expired before their plant came, and the sent ones whose answer is
/// overdue, every [`POLL`].
pub async fn expire(database: Database) {
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        let done = async {
            let store = database.store().await?;
            let expired = store.expire_remote_actions().await?;
            let overdue = store.sweep_unanswered_remote_actions().await?;
            anyhow::Ok((expired, overdue))
        };
        match done.await {
            Ok((expired, overdue)) => {
                if expired > 0 {
                    tracing::info!(
                        n = expired,
                        "remote actions expired before their plant connected"
                    );
                }
                if overdue > 0 {
                    tracing::warn!(
                        n = overdue,
                        "remote actions failed: no answer from their plant in time"
                    );
                }
            }
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "expiring remote actions; retrying")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(ids: &[i64]) -> HashSet<i64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn an_answer_is_kept_only_for_an_action_sent_on_the_stream() {
        let mut inflight = sent(&[4, 5]);
        let a = answer(
            &mut inflight,
            4,
            RemoteOutcome::Ok,
            "fine".into(),
            "{\"id\":1}".into(),
        )
        .unwrap();
        assert_eq!(
            a,
            Answer {
                id: 4,
                state: "ok",
                detail: "fine".into(),
                result: Some(serde_json::json!({"id": 1}))
            }
        );
        assert_eq!(inflight, sent(&[5]));
        assert!(answer(
            &mut inflight,
            4,
            RemoteOutcome::Ok,
            "again".into(),
            "null".into()
        )
        .is_err());
        assert!(answer(
            &mut inflight,
            99,
            RemoteOutcome::Ok,
            "".into(),
            "null".into()
        )
        .is_err());
    }

    #[test]
    fn an_answer_the_database_cannot_take_is_kept_as_failed_saying_why() {
        for (detail, body, why) in [
            ("ok\0", "null", "NUL"),
            ("fine", "{\"logs\":[\"a\\u0000b\"]}", "NUL"),
            ("fine", "{\"k\\u0000\":1}", "NUL"),
            ("fine", "{not json", "not JSON"),
        ] {
            let mut inflight = sent(&[7]);
            let a = answer(
                &mut inflight,
                7,
                RemoteOutcome::Ok,
                detail.into(),
                body.into(),
            )
            .unwrap();
            assert_eq!(a.state, "failed", "{body}");
            assert_eq!(a.result, None);
            assert!(a.detail.contains(why), "{}", a.detail);
            assert!(!a.detail.contains('\0'), "the detail itself is storable");
            assert!(inflight.is_empty());
        }
        let mut inflight = sent(&[8]);
        let big = "x".repeat(MAX_REMOTE_DETAIL + 1);
        let a = answer(&mut inflight, 8, RemoteOutcome::Ok, big, "null".into()).unwrap();
        assert_eq!(a.state, "failed");
        assert!(a.detail.contains("over its bounds"));
    }
}
