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
//! sent again. The replication session is never waited on.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::database::Database;
use crate::replication::hub::RemoteStreams;
use crate::replication::remote::MAX_RUNNING;
use crate::replication::session::frame_name;
use crate::replication::transport::{read_frame_within, write_frame};
use crate::replication::wire::{Frame, MAX_REMOTE_BODY, MAX_REMOTE_DETAIL, MAX_REMOTE_FRAME};

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

    /// Sends what waits for `plant` (up to the free slots of `inflight`).
    async fn send_waiting(
        &self,
        plant: &str,
        send: &mut quinn::SendStream,
        inflight: &mut HashSet<i64>,
        out: &mut Vec<u8>,
    ) -> anyhow::Result<()> {
        let free = MAX_RUNNING.saturating_sub(inflight.len()) as i64;
        if free == 0 {
            return Ok(());
        }
        let claimed = match self.database.store().await {
            Ok(store) => store.claim_remote_actions(plant, free).await?,
            Err(e) => {
                tracing::debug!(%plant, error = %e, "remote actions wait for a database connection");
                return Ok(());
            }
        };
        for c in claimed {
            inflight.insert(c.id);
            tracing::info!(%plant, id = c.id, action = %c.action, by = %c.requested_by, "remote action sent");
            let frame = Frame::RemoteAction {
                id: c.id as u64,
                action: c.action,
                args: c.args,
                requested_by: c.requested_by,
            };
            write_frame(send, &frame, out).await?;
        }
        Ok(())
    }

    /// Keeps the plant's result of action `id`, if it was sent to it on this stream.
    async fn keep(
        &self,
        plant: &str,
        inflight: &mut HashSet<i64>,
        id: u64,
        outcome: &str,
        detail: String,
        body: String,
    ) -> anyhow::Result<()> {
        let Some(id) = i64::try_from(id).ok().filter(|id| inflight.remove(id)) else {
            anyhow::bail!(
                "the plant answered action #{id}, which was not sent to it on this stream"
            );
        };
        let (state, detail, result) = if detail.len() > MAX_REMOTE_DETAIL
            || body.len() > MAX_REMOTE_BODY
        {
            (
                "failed",
                format!(
                    "the plant's answer is over its bounds ({} bytes of detail, {} of body); not kept",
                    detail.len(),
                    body.len()
                ),
                None,
            )
        } else {
            match serde_json::from_str::<serde_json::Value>(&body) {
                Ok(v) => (outcome, detail, Some(v)),
                Err(e) => (
                    "failed",
                    format!("the plant's result is not JSON ({e}); not kept"),
                    None,
                ),
            }
        };
        let store = self.database.store().await?;
        if !store
            .finish_remote_action(plant, id, state, &detail, result.as_ref())
            .await?
        {
            tracing::warn!(%plant, id, "a result for an action that was no longer sent; ignored");
        }
        tracing::info!(%plant, id, %state, %detail, "remote action ended");
        Ok(())
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
                tracing::error!(%plant, id, error = %format!("{e:#}"), "could not mark a cut-off remote action as failed; it stays 'sent'");
            }
        }
    }
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
        let mut poll = tokio::time::interval(POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut out = Vec::new();
        let served = async {
            loop {
                self.send_waiting(&plant, &mut send, &mut inflight, &mut out)
                    .await?;
                tokio::select! {
                    _ = wake.changed() => {}
                    _ = poll.tick() => {}
                    frame = read_frame_within(&mut recv, &mut buf, MAX_REMOTE_FRAME) => match frame? {
                        Some(Frame::RemoteResult { id, outcome, detail, body }) => {
                            self.keep(&plant, &mut inflight, id, outcome.as_str(), detail, body).await?;
                        }
                        Some(other) => anyhow::bail!("unexpected {} frame on the remote-action stream", frame_name(&other)),
                        None => return anyhow::Ok(()),
                    },
                }
            }
        }
        .await;
        self.fail_inflight(&plant, inflight).await;
        served
    }
}

/// Ends the actions that expired before their plant came, every [`POLL`].
pub async fn expire(database: Database) {
    let mut tick = tokio::time::interval(POLL);
    loop {
        tick.tick().await;
        let done = async { database.store().await?.expire_remote_actions().await };
        match done.await {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "remote actions expired before their plant connected"),
            Err(e) => {
                tracing::debug!(error = %format!("{e:#}"), "expiring remote actions; retrying")
            }
        }
    }
}
