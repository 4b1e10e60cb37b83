//! Rollouts and pins in the hub database: what each plant is offered, what each plant
//! reported, and the driver step that moves a rollout from wave to wave.
//!
//! All state is in PostgreSQL, so that any hub replica serves any plant and a hub restart
//! loses nothing. At most one rollout is live (running or paused): starting one supersedes the
//! live one, so a stuck rollout never blocks the next (the Greengrass trap). A plant pinned to
//! a version is offered that version and left out of rollouts.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::store::Store;
use crate::update::rollout::{decide, Progress, Step};

/// A release offered to one plant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    pub version: String,
    pub size: u64,
    pub sha256: String,
    pub signature: String,
    /// The rollout it belongs to; 0 for a pin.
    pub rollout: u64,
    /// The stack image bundle that comes with the release, if any.
    pub images: Option<crate::release::Images>,
}

/// One plant of a rollout, as `rollout status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutPlant {
    pub plant: String,
    pub wave: i32,
    /// waiting | offered | installed | failed | pinned
    pub state: String,
    pub reason: Option<String>,
    pub updated_at: String,
}

/// A rollout, as `rollout status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutView {
    pub id: i64,
    pub version: String,
    pub waves: String,
    pub max_failures: i32,
    /// running | paused | done | aborted | superseded
    pub state: String,
    pub reason: Option<String>,
    pub current_wave: i32,
    pub wave_count: i32,
    pub started_at: String,
    pub updated_at: String,
    pub plants: Vec<RolloutPlant>,
}

/// What an operator does to the live rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutControl {
    Pause,
    Resume,
    Abort,
}

const TIME: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'";

impl Store {
    /// Starts rolling `version` out in `plan`'s waves (plant names, first wave first); the live
    /// rollout, if any, is superseded. Returns the new rollout's id.
    pub async fn start_rollout(
        &mut self,
        version: &str,
        waves: &str,
        plan: &[Vec<String>],
        max_failures: u32,
    ) -> anyhow::Result<i64> {
        let tx = self.client.transaction().await?;
        // One start at a time: two at once would both stay running.
        tx.execute("SELECT pg_advisory_xact_lock(7467511)", &[])
            .await?;
        let known = tx
            .query_opt("SELECT 1 FROM releases WHERE version = $1", &[&version])
            .await?;
        if known.is_none() {
            bail!("no release {version:?} is published; `plantd hub release list` shows them");
        }
        if plan.is_empty() {
            bail!("no enrolled plant to roll out to");
        }
        let id: i64 = tx
            .query_one(
                "INSERT INTO rollouts (version, waves, max_failures, state, wave_count)
                 VALUES ($1, $2, $3, 'running', $4) RETURNING id",
                &[
                    &version,
                    &waves,
                    &(max_failures as i32),
                    &(plan.len() as i32),
                ],
            )
            .await?
            .get(0);
        tx.execute(
            "UPDATE rollouts SET state = 'superseded', updated_at = now(),
                    reason = format('superseded by rollout %s (version %s)', $1::bigint, $2::text)
             WHERE state IN ('running', 'paused') AND id <> $1",
            &[&id, &version],
        )
        .await?;
        for (i, wave) in plan.iter().enumerate() {
            for plant in wave {
                // A pinned plant stays where it is pinned; one already running the version
                // has nothing to do.
                tx.execute(
                    "INSERT INTO rollout_plants (rollout, plant, wave, state, reason)
                     SELECT $1, p.name, $3,
                            CASE WHEN p.pinned_version IS NOT NULL THEN 'pinned'
                                 WHEN p.version = $4 THEN 'installed' ELSE 'waiting' END,
                            CASE WHEN p.pinned_version IS NOT NULL
                                      THEN 'pinned to ' || p.pinned_version
                                 WHEN p.version = $4 THEN 'already ran it' END
                     FROM plants p WHERE p.name = $2",
                    &[&id, plant, &(i as i32 + 1), &version],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Pauses, resumes or aborts the live rollout; returns it.
    pub async fn control_rollout(&self, what: RolloutControl) -> anyhow::Result<RolloutView> {
        let live: Option<(i64, String)> = self
            .client
            .query_opt(
                "SELECT id, state FROM rollouts WHERE state IN ('running', 'paused')
                 ORDER BY id DESC LIMIT 1",
                &[],
            )
            .await?
            .map(|r| (r.get(0), r.get(1)));
        let Some((id, state)) = live else {
            bail!(
                "no rollout is running or paused; `plantd hub rollout status` shows the last one"
            );
        };
        let sql = match (what, state.as_str()) {
            (RolloutControl::Pause, "running") => {
                "UPDATE rollouts SET state = 'paused', reason = 'paused by an operator',
                        updated_at = now() WHERE id = $1"
            }
            // Failures so far are known: the threshold counts the ones after the resume.
            (RolloutControl::Resume, "paused") => {
                "UPDATE rollouts SET state = 'running', reason = NULL, updated_at = now(),
                        failures_base = (SELECT count(*) FROM rollout_plants
                                         WHERE rollout = $1 AND state = 'failed')
                 WHERE id = $1"
            }
            (RolloutControl::Abort, _) => {
                "UPDATE rollouts SET state = 'aborted', reason = 'aborted by an operator',
                        updated_at = now() WHERE id = $1"
            }
            (RolloutControl::Pause, _) => bail!("rollout {id} is already paused"),
            (RolloutControl::Resume, _) => bail!("rollout {id} is running, not paused"),
        };
        // Only from the state read: a rollout finished or superseded meanwhile stays so.
        let sql = format!("{sql} AND state = $2");
        if self.client.execute(&sql, &[&id, &state]).await? == 0 {
            bail!("rollout {id} changed meanwhile (it finished, paused itself or was superseded); look again with `plantd hub rollout status`");
        }
        Ok(self
            .rollout(Some(id))
            .await?
            .expect("the rollout was just read"))
    }

    /// Rollout `id`, or the newest one.
    pub async fn rollout(&self, id: Option<i64>) -> anyhow::Result<Option<RolloutView>> {
        let row = self
            .client
            .query_opt(
                &format!(
                    "SELECT id, version, waves, max_failures, state, reason, current_wave,
                            wave_count, to_char(started_at AT TIME ZONE 'UTC', {TIME}),
                            to_char(updated_at AT TIME ZONE 'UTC', {TIME})
                     FROM rollouts WHERE $1::bigint IS NULL OR id = $1
                     ORDER BY id DESC LIMIT 1"
                ),
                &[&id],
            )
            .await?;
        let Some(r) = row else { return Ok(None) };
        let id: i64 = r.get(0);
        let plants = self
            .client
            .query(
                &format!(
                    "SELECT plant, wave, state, reason,
                            to_char(updated_at AT TIME ZONE 'UTC', {TIME})
                     FROM rollout_plants WHERE rollout = $1 ORDER BY wave, plant"
                ),
                &[&id],
            )
            .await?
            .iter()
            .map(|p| RolloutPlant {
                plant: p.get(0),
                wave: p.get(1),
                state: p.get(2),
                reason: p.get(3),
                updated_at: p.get(4),
            })
            .collect();
        Ok(Some(RolloutView {
            id,
            version: r.get(1),
            waves: r.get(2),
            max_failures: r.get(3),
            state: r.get(4),
            reason: r.get(5),
            current_wave: r.get(6),
            wave_count: r.get(7),
            started_at: r.get(8),
            updated_at: r.get(9),
            plants,
        }))
    }

    /// The newest `limit` rollouts, newest first.
    pub async fn rollouts(&self, limit: i64) -> anyhow::Result<Vec<RolloutView>> {
        let ids = self
            .client
            .query(
                "SELECT id FROM rollouts ORDER BY id DESC LIMIT $1",
                &[&limit],
            )
            .await?;
        let mut all = Vec::new();
        for row in ids {
            if let Some(r) = self.rollout(Some(row.get(0))).await? {
                all.push(r);
            }
        }
        Ok(all)
    }

    /// Pins `plant` to `version` (`None` unpins it). A pinned plant leaves the live rollout,
    /// so that its wave does not wait for it.
    pub async fn pin(&mut self, plant: &str, version: Option<&str>) -> anyhow::Result<()> {
        if let Some(v) = version {
            let known = self
                .client
                .query_opt("SELECT 1 FROM releases WHERE version = $1", &[&v])
                .await?;
            if known.is_none() {
                bail!("no release {v:?} is published; `plantd hub release list` shows them");
            }
        }
        let tx = self.client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE plants SET pinned_version = $2 WHERE name = $1",
                &[&plant, &version],
            )
            .await?;
        if n == 0 {
            bail!("no plant named {plant:?}; `plantd hub plants` lists them");
        }
        if let Some(v) = version {
            tx.execute(
                "UPDATE rollout_plants rp SET state = 'pinned', reason = 'pinned to ' || $2,
                        updated_at = now()
                 FROM rollouts o
                 WHERE rp.rollout = o.id AND o.state IN ('running', 'paused')
                   AND rp.plant = $1 AND rp.state IN ('waiting', 'offered')",
                &[&plant, &v],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The driver's step over the live rollout: pause it on too many failures, open the next
    /// wave when the current one is through, finish it after the last. One hub replica at a
    /// time (the row lock); returns what changed, for the log.
    pub async fn advance_rollouts(&mut self) -> anyhow::Result<Option<String>> {
        let tx = self.client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT id, current_wave, wave_count, max_failures, failures_base, version
                 FROM rollouts WHERE state = 'running' ORDER BY id DESC LIMIT 1
                 FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await?;
        let Some(r) = row else { return Ok(None) };
        let (id, current, count, max, base, version): (i64, i32, i32, i32, i32, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
        let counts = tx
            .query_one(
                "SELECT count(*) FILTER (WHERE state = 'failed'),
                        count(*) FILTER (WHERE state IN ('waiting', 'offered') AND wave <= $2),
                        string_agg(plant || ': ' || coalesce(reason, '?'), '; ')
                            FILTER (WHERE state = 'failed')
                 FROM rollout_plants WHERE rollout = $1",
                &[&id, &current],
            )
            .await?;
        let (failed, open, failures): (i64, i64, Option<String>) =
            (counts.get(0), counts.get(1), counts.get(2));
        let step = decide(Progress {
            current_wave: current as u32,
            waves: count as u32,
            new_failures: (failed - base as i64).max(0) as u32,
            max_failures: max as u32,
            open: open as u32,
        });
        let said = match step {
            Step::Wait => None,
            Step::NextWave => {
                tx.execute(
                    "UPDATE rollouts SET current_wave = current_wave + 1, updated_at = now()
                     WHERE id = $1",
                    &[&id],
                )
                .await?;
                Some(format!(
                    "rollout {id} (version {version}): wave {current} is through; wave {} starts",
                    current + 1
                ))
            }
            Step::Done => {
                tx.execute(
                    "UPDATE rollouts SET state = 'done', updated_at = now() WHERE id = $1",
                    &[&id],
                )
                .await?;
                Some(format!(
                    "rollout {id} (version {version}): every wave is through"
                ))
            }
            Step::Pause(why) => {
                let reason = format!("{why}: {}", failures.unwrap_or_default());
                tx.execute(
                    "UPDATE rollouts SET state = 'paused', reason = $2, updated_at = now()
                     WHERE id = $1",
                    &[&id, &reason],
                )
                .await?;
                Some(format!(
                    "rollout {id} (version {version}) paused itself: {reason}"
                ))
            }
        };
        tx.commit().await?;
        Ok(said)
    }

    /// What `plant`, running `running`, should install now, if anything: its pinned version,
    /// else the live rollout's when its wave is open and it has not reported yet.
    pub async fn update_for(&self, plant: &str, running: &str) -> anyhow::Result<Option<Offer>> {
        let pinned = self
            .client
            .query_opt(
                "SELECT r.version, r.size, r.sha256, r.signature, i.size, i.sha256, i.tags
                 FROM plants p JOIN releases r ON r.version = p.pinned_version
                 LEFT JOIN release_images i ON i.version = r.version
                 WHERE p.name = $1",
                &[&plant],
            )
            .await?;
        if let Some(r) = pinned {
            let version: String = r.get(0);
            return Ok((version != running).then(|| Offer {
                version,
                size: r.get::<_, i64>(1) as u64,
                sha256: r.get(2),
                signature: r.get(3),
                rollout: 0,
                images: super::store::images_of(&r, 4),
            }));
        }
        let row = self
            .client
            .query_opt(
                "SELECT o.id, r.version, r.size, r.sha256, r.signature, i.size, i.sha256, i.tags
                 FROM rollouts o JOIN releases r ON r.version = o.version
                 LEFT JOIN release_images i ON i.version = r.version
                 JOIN rollout_plants rp ON rp.rollout = o.id AND rp.plant = $1
                 WHERE o.state = 'running' AND rp.wave <= o.current_wave
                   AND rp.state IN ('waiting', 'offered')
                 ORDER BY o.id DESC LIMIT 1",
                &[&plant],
            )
            .await?;
        let Some(r) = row else { return Ok(None) };
        let (id, version): (i64, String) = (r.get(0), r.get(1));
        if version == running {
            // It runs it already (it installed it and the report crossed a restart).
            self.set_plant_state(id, plant, "installed", "runs it")
                .await?;
            return Ok(None);
        }
        self.set_plant_state(id, plant, "offered", "offered")
            .await?;
        Ok(Some(Offer {
            version,
            size: r.get::<_, i64>(2) as u64,
            sha256: r.get(3),
            signature: r.get(4),
            rollout: id as u64,
            images: super::store::images_of(&r, 5),
        }))
    }

    async fn set_plant_state(
        &self,
        rollout: i64,
        plant: &str,
        state: &str,
        reason: &str,
    ) -> anyhow::Result<()> {
        self.client
            .execute(
                "UPDATE rollout_plants SET state = $3, reason = $4, updated_at = now()
                 WHERE rollout = $1 AND plant = $2 AND state IN ('waiting', 'offered')",
                &[&rollout, &plant, &state, &reason],
            )
            .await?;
        Ok(())
    }

    /// Records how installing `version` ended at `plant` (`installed`, `rolled_back`,
    /// `refused`).
    pub async fn record_update(
        &self,
        plant: &str,
        rollout: u64,
        version: &str,
        outcome: &str,
        reason: &str,
    ) -> anyhow::Result<()> {
        let state = if outcome == "installed" {
            "installed"
        } else {
            "failed"
        };
        self.client
            .execute(
                "UPDATE rollout_plants rp SET state = $3, reason = $4, updated_at = now()
                 FROM rollouts o
                 WHERE rp.rollout = $1 AND rp.plant = $2 AND o.id = rp.rollout
                   AND o.version = $5 AND rp.state IN ('waiting', 'offered')",
                &[
                    &(rollout as i64),
                    &plant,
                    &state,
                    &format!("{outcome}: {reason}"),
                    &version,
                ],
            )
            .await
            .context("recording an update outcome")?;
        Ok(())
    }

    /// Up to `len` bytes of release `version`'s binary from byte `offset`, and its size; read
    /// in slices so that a wave downloading at once does not hold whole binaries in memory.
    pub async fn release_slice(
        &self,
        version: &str,
        offset: u64,
        len: u32,
    ) -> anyhow::Result<Option<(Vec<u8>, u64)>> {
        Ok(self
            .client
            .query_opt(
                "SELECT substring(binary_data FROM $2::bigint::int + 1 FOR $3::bigint::int), size
                 FROM releases WHERE version = $1",
                &[&version, &(offset as i64), &(len as i64)],
            )
            .await?
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64)))
    }

    /// Up to `len` bytes of release `version`'s image bundle from byte `offset` (fewer at the
    /// end of a stored row), and the bundle's size; empty past the end.
    pub async fn images_slice(
        &self,
        version: &str,
        offset: u64,
        len: u32,
    ) -> anyhow::Result<Option<(Vec<u8>, u64)>> {
        let chunk = super::store::IMAGE_CHUNK as u64;
        let (seq, within) = ((offset / chunk) as i64, (offset % chunk) as i64);
        Ok(self
            .client
            .query_opt(
                "SELECT substring(c.data FROM $3::bigint::int + 1 FOR $4::bigint::int), i.size
                 FROM release_images i LEFT JOIN release_image_chunks c
                   ON c.version = i.version AND c.seq = $2::bigint::int
                 WHERE i.version = $1",
                &[&version, &seq, &within, &(len as i64)],
            )
            .await?
            .map(|r| {
                let data: Option<Vec<u8>> = r.get(0);
                (data.unwrap_or_default(), r.get::<_, i64>(1) as u64)
            }))
    }
}
