//! The hub's apply of every plant's transactions to the central Odoo: per plant in seq order,
//! exactly once, by one hub replica at a time.
//!
//! Every second the hub lists the plants whose stored transactions run past their `applied_seq`
//! and whose queue is not stopped, and gives each to a worker (at most `[apply] workers` at
//! once). A worker takes the plant's PostgreSQL advisory lock on a connection of its own (another
//! replica that holds it has the plant; the lock goes with the connection if the hub dies),
//! reads the cursor again under the lock, and applies in order through the same steps as the
//! plant's local apply (external ids `plantd.<plant>_<seq>`, state-guarded actions), moving the
//! cursor after each. Odoo away: the worker lets go and the plant is tried again with backoff.
//! A rejection stops that plant's queue (`apply_stops`) with Odoo's message; the others go on.
//! An admin retries, parks or replays it with `plantd hub apply` or on the fleet page, through
//! the same [`Store`] methods; one that does not fit the queue is [`RemedyError::Refused`] and
//! changes nothing.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use serde::{Deserialize, Serialize};

use super::database::Database;
use super::store::Store;
use crate::apply::{apply_many, apply_one, Failed, Locate, Pending, RemedyError};
use crate::config::CentralApply;
use crate::odoo::Client;

/// The advisory lock key space of the central apply (with the plant's hash as second key).
const LOCK_SPACE: i32 = 7467511;

/// One plant, as `plantd hub apply status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlantApply {
    pub plant: String,
    pub applied_seq: i64,
    /// The last seq the hub stores for the plant.
    pub last_seq: i64,
    pub stopped_at: Option<i64>,
    pub message: Option<String>,
    /// The kind of the transaction the queue stopped at.
    #[serde(default)]
    pub stopped_kind: Option<String>,
    /// When the queue stopped there.
    #[serde(default)]
    pub stopped_since: Option<String>,
    pub parked: Vec<ParkedRow>,
}

/// A transaction an admin set aside, with what it carried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkedRow {
    pub seq: i64,
    pub kind: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub device: String,
    #[serde(default)]
    pub payload: String,
    /// The central Odoo's message when it was parked.
    pub message: String,
    pub parked_at: String,
}

/// Runs the central apply until the process ends.
pub async fn run(database: Database, central: CentralApply) {
    let locate: Locate = {
        let odoo = central.odoo.clone();
        Arc::new(move || odoo.target(None))
    };
    let busy: Arc<Mutex<HashSet<String>>> = Default::default();
    // Connections to the central Odoo, kept between turns: a `/jsonrpc` sign-in costs Odoo a
    // password hash (about half a second), so each worker signs in once, not once a turn.
    let clients: Arc<Mutex<Vec<Client>>> = Default::default();
    // Plants whose Odoo calls failed for a passing reason, and when to try them again.
    let not_before: Arc<Mutex<BTreeMap<String, (Instant, Duration)>>> = Default::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let due = match database.store().await {
            Ok(s) => s.plants_to_apply().await,
            Err(e) => {
                tracing::warn!(error = %e, "central apply: no hub database connection; retrying");
                continue;
            }
        };
        let due = match due {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "central apply: listing plants failed; retrying");
                continue;
            }
        };
        for plant in due {
            {
                let mut b = busy.lock().expect("not poisoned");
                if b.len() >= central.workers || b.contains(&plant) {
                    continue;
                }
                let waiting = not_before.lock().expect("not poisoned");
                if waiting
                    .get(&plant)
                    .is_some_and(|(t, _)| Instant::now() < *t)
                {
                    continue;
                }
                b.insert(plant.clone());
            }
            let (database, kinds, locate) =
                (database.clone(), central.kinds.clone(), locate.clone());
            let (busy, not_before, clients) = (busy.clone(), not_before.clone(), clients.clone());
            tokio::spawn(async move {
                let mut client = clients.lock().expect("not poisoned").pop();
                let result = work(&database, &kinds, &locate, &plant, &mut client).await;
                // A connection that met no trouble serves the next turn.
                if let (Ok(None), Some(c)) = (&result, client) {
                    clients.lock().expect("not poisoned").push(c);
                }
                let mut nb = not_before.lock().expect("not poisoned");
                match result {
                    Ok(None) => {
                        nb.remove(&plant);
                    }
                    Ok(Some(why)) => {
                        let backoff = nb.get(&plant).map_or(Duration::from_secs(1), |(_, b)| {
                            (*b * 2).min(Duration::from_secs(60))
                        });
                        tracing::warn!(%plant, %why, retry_in_s = backoff.as_secs(), "central apply waits for Odoo; nothing is skipped");
                        nb.insert(plant.clone(), (Instant::now() + backoff, backoff));
                    }
                    Err(e) => {
                        tracing::warn!(%plant, error = %format!("{e:#}"), "central apply failed; retrying");
                        nb.insert(
                            plant.clone(),
                            (
                                Instant::now() + Duration::from_secs(5),
                                Duration::from_secs(5),
                            ),
                        );
                    }
                }
                busy.lock().expect("not poisoned").remove(&plant);
            });
        }
    }
}

/// Applies what `plant` has stored, under its lock, on `client` (connected when it is not).
/// `Ok(Some(why))`: Odoo is away, try later.
async fn work(
    database: &Database,
    kinds: &crate::kinds::mapping::Kinds,
    locate: &Locate,
    plant: &str,
    client: &mut Option<Client>,
) -> anyhow::Result<Option<String>> {
    let store = database.store().await?;
    let locked: bool = store
        .client
        .query_one(
            "SELECT pg_try_advisory_lock($1, hashtext($2))",
            &[&LOCK_SPACE, &plant],
        )
        .await?
        .get(0);
    if !locked {
        return Ok(None); // another replica applies this plant now
    }
    // A panic (a bug) must not leave the lock held on a pooled connection, nor the plant busy
    // for good: it becomes an error of this turn, and the connection is closed.
    let result =
        match std::panic::AssertUnwindSafe(work_locked(&store, kinds, locate, plant, client))
            .catch_unwind()
            .await
        {
            Ok(result) => result,
            Err(panic) => {
                *client = None;
                store.discard();
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                anyhow::bail!("the central apply of {plant} panicked: {what}");
            }
        };
    // The lock lives on the connection, which goes back to the pool: let go of it there, or
    // close the connection (which lets go too) when that fails.
    let unlocked = store
        .client
        .query_one(
            "SELECT pg_advisory_unlock($1, hashtext($2))",
            &[&LOCK_SPACE, &plant],
        )
        .await
        .map(|r| r.get::<_, bool>(0));
    if !matches!(unlocked, Ok(true)) {
        store.discard();
    }
    result
}

/// [`work`] once the plant's lock is held on `store`'s connection.
async fn work_locked(
    store: &Store,
    kinds: &crate::kinds::mapping::Kinds,
    locate: &Locate,
    plant: &str,
    client: &mut Option<Client>,
) -> anyhow::Result<Option<String>> {
    let c = &store.client;
    // A few batches per turn, then the lock goes back: with more plants than workers, each
    // gets its turn (the list of due plants is shuffled).
    for _ in 0..5 {
        // Under the lock: the cursor as the last holder left it.
        let row = c
            .query_one(
                "SELECT p.applied_seq, s.seq IS NOT NULL FROM plants p
                 LEFT JOIN apply_stops s ON s.plant = p.name WHERE p.name = $1",
                &[&plant],
            )
            .await?;
        let (applied, stopped): (i64, bool) = (row.get(0), row.get(1));
        if stopped {
            return Ok(None);
        }
        let rows = c
            .query(
                "SELECT t.seq, t.kind, t.payload, k.seq IS NOT NULL FROM transactions t
                 LEFT JOIN apply_parked k ON k.plant = t.plant AND k.seq = t.seq
                 WHERE t.plant = $1 AND t.seq > $2 ORDER BY t.seq LIMIT 200",
                &[&plant, &applied],
            )
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let rows: Vec<(i64, String, String, bool)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        let pending: Vec<Pending> = rows
            .iter()
            .map(|(seq, kind, payload, parked)| Pending {
                seq: *seq as u64,
                kind,
                payload,
                parked: *parked,
            })
            .collect();
        let (through, failed) = apply_many(kinds, locate, client, plant, &pending).await;
        if let Some(seq) = through {
            c.execute(
                "UPDATE plants SET applied_seq = $2 WHERE name = $1 AND applied_seq < $2",
                &[&plant, &(seq as i64)],
            )
            .await?;
        }
        match failed {
            None => {}
            Some((_, _, Failed::Wait(why))) => return Ok(Some(why)),
            Some((seq, kind, Failed::Stop(message))) => {
                // A fixed [odoo] section is read again at the retry.
                *client = None;
                let seq = seq as i64;
                tracing::error!(%plant, seq, %kind, %message, "the central Odoo rejected a transaction: this plant's apply stops here");
                c.execute(
                    "INSERT INTO apply_stops (plant, seq, kind, message) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (plant) DO UPDATE SET seq = excluded.seq, kind = excluded.kind,
                       message = excluded.message, at = now()",
                    &[&plant, &seq, &kind, &message],
                )
                .await?;
                return Ok(None);
            }
        }
    }
    Ok(None)
}

impl Store {
    /// Plants with stored transactions past their applied seq and a queue that is not stopped.
    async fn plants_to_apply(&self) -> anyhow::Result<Vec<String>> {
        let rows = self
            .client
            .query(
                "SELECT p.name FROM plants p
                 WHERE p.acked_seq > p.applied_seq
                   AND NOT EXISTS (SELECT 1 FROM apply_stops s WHERE s.plant = p.name)
                 ORDER BY random()",
                &[],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Each plant's apply, for `plantd hub apply status`.
    pub async fn apply_status(&self) -> anyhow::Result<Vec<PlantApply>> {
        let rows = self
            .client
            .query(
                "SELECT p.name, p.applied_seq, p.acked_seq, s.seq, s.message, s.kind,
                        to_char(s.at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
                 FROM plants p LEFT JOIN apply_stops s ON s.plant = p.name
                 WHERE p.enrolled_at IS NOT NULL ORDER BY p.name",
                &[],
            )
            .await?;
        let parked = self
            .client
            .query(
                "SELECT k.plant, k.seq, t.kind, k.message,
                        to_char(k.parked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                        t.key, t.device, t.payload
                 FROM apply_parked k JOIN transactions t ON t.plant = k.plant AND t.seq = k.seq
                 ORDER BY k.plant, k.seq",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let plant: String = r.get(0);
                PlantApply {
                    parked: parked
                        .iter()
                        .filter(|k| k.get::<_, String>(0) == plant)
                        .map(|k| ParkedRow {
                            seq: k.get(1),
                            kind: k.get(2),
                            message: k.get(3),
                            parked_at: k.get(4),
                            key: k.get(5),
                            device: k.get(6),
                            payload: k.get(7),
                        })
                        .collect(),
                    plant,
                    applied_seq: r.get(1),
                    last_seq: r.get(2),
                    stopped_at: r.get(3),
                    message: r.get(4),
                    stopped_kind: r.get(5),
                    stopped_since: r.get(6),
                }
            })
            .collect())
    }

    fn stop_of<'a>(
        status: &'a [PlantApply],
        plant: &str,
        seq: i64,
    ) -> Result<&'a PlantApply, RemedyError> {
        let refused = |m: String| Err(RemedyError::Refused(m));
        let Some(p) = status.iter().find(|p| p.plant == plant) else {
            return refused(format!("no enrolled plant {plant:?}; nothing was changed"));
        };
        match p.stopped_at {
            Some(s) if s == seq => Ok(p),
            Some(s) => refused(format!(
                "{plant}'s apply stopped at seq {s}, not {seq}; nothing was changed"
            )),
            None => refused(format!(
                "{plant}'s apply is not stopped; nothing to do at seq {seq}"
            )),
        }
    }

    /// Tries the transaction a plant's queue stopped at again.
    pub async fn apply_retry(&self, plant: &str, seq: i64) -> Result<String, RemedyError> {
        let status = self.apply_status().await.map_err(failed)?;
        Self::stop_of(&status, plant, seq)?;
        let removed = self
            .client
            .execute(
                "DELETE FROM apply_stops WHERE plant = $1 AND seq = $2",
                &[&plant, &seq],
            )
            .await
            .map_err(failed)?;
        if removed == 0 {
            return Err(RemedyError::Refused(format!(
                "{plant}'s apply is no longer stopped at seq {seq}"
            )));
        }
        Ok(format!(
            "{plant} seq {seq} is tried again; `plantd hub apply status` shows how it went"
        ))
    }

    /// Sets the transaction a plant's queue stopped at aside and lets the rest through.
    pub async fn apply_park(&mut self, plant: &str, seq: i64) -> Result<String, RemedyError> {
        let status = self.apply_status().await.map_err(failed)?;
        let stopped = Self::stop_of(&status, plant, seq)?;
        let message = stopped.message.clone().unwrap_or_default();
        let tx = self.client.transaction().await.map_err(failed)?;
        let removed = tx
            .execute(
                "DELETE FROM apply_stops WHERE plant = $1 AND seq = $2",
                &[&plant, &seq],
            )
            .await
            .map_err(failed)?;
        if removed != 1 {
            return Err(RemedyError::Refused(format!(
                "{plant}'s apply is no longer stopped at seq {seq}"
            )));
        }
        tx.execute(
            "INSERT INTO apply_parked (plant, seq, message) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&plant, &seq, &message],
        )
        .await
        .map_err(failed)?;
        tx.execute(
            "UPDATE plants SET applied_seq = $2 WHERE name = $1 AND applied_seq < $2",
            &[&plant, &seq],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        Ok(format!("{plant} seq {seq} is parked (`plantd hub apply replay {plant} {seq}` applies it); the rest goes through"))
    }

    /// Applies a parked transaction now; it leaves the parked list when Odoo took it.
    pub async fn apply_replay(
        &self,
        central: &CentralApply,
        plant: &str,
        seq: i64,
    ) -> Result<String, RemedyError> {
        let row = self
            .client
            .query_opt(
                "SELECT t.kind, t.payload FROM apply_parked k
                 JOIN transactions t ON t.plant = k.plant AND t.seq = k.seq
                 WHERE k.plant = $1 AND k.seq = $2",
                &[&plant, &seq],
            )
            .await
            .map_err(failed)?
            .ok_or_else(|| {
                RemedyError::Refused(format!(
                    "{plant} seq {seq} is not parked; nothing was changed"
                ))
            })?;
        let (kind, payload): (String, String) = (row.get(0), row.get(1));
        let odoo = central.odoo.clone();
        let locate: Locate = Arc::new(move || odoo.target(None));
        let mut client = None;
        let done = apply_one(
            &central.kinds,
            &locate,
            &mut client,
            plant,
            seq as u64,
            &kind,
            &payload,
        )
        .await
        .map_err(|f| match f {
            Failed::Wait(why) | Failed::Stop(why) => {
                RemedyError::Refused(format!("{plant} seq {seq} stays parked: {why}"))
            }
        })?;
        self.client
            .execute(
                "DELETE FROM apply_parked WHERE plant = $1 AND seq = $2",
                &[&plant, &seq],
            )
            .await
            .map_err(|e| {
                RemedyError::Failed(format!(
                    "{plant} seq {seq} is applied ({done}), but taking it off the parked list failed: {e}; a replay again finds it applied"
                ))
            })?;
        Ok(format!(
            "{plant} seq {seq} is applied ({done}) and no longer parked"
        ))
    }
}

fn failed(e: impl std::fmt::Display) -> RemedyError {
    RemedyError::Failed(format!("{e:#}"))
}
