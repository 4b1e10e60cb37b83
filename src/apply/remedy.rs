//! The admin's remedies for the plant's queue: retry a stopped transaction, park it so that the
//! rest goes through, replay a parked one, and rewind the applied cursor when Odoo's data went
//! back (a restore), with or without the daemon running.

use std::path::Path;

use super::*;

impl Applier {
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
            .set(COMPONENT, health::State::Starting, rewound.message());
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
        inner.health.set(
            COMPONENT,
            health::State::Starting,
            format!("retrying seq {seq}"),
        );
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
            health::State::Starting,
            format!("seq {seq} parked; applying the rest"),
        );
        inner.wake.notify_one();
        Ok(format!("seq {seq} is parked (`plantd apply status` lists it; `plantd apply replay {seq}` applies it); the rest goes through"))
    }

    /// Starts a bulk park ([`ParkRule`]); the transaction the queue stopped at, when the rule
    /// covers its seq and kind, is tried again at once, so that the rule parks it with Odoo's
    /// message of now (or Odoo takes it, the cause being fixed).
    pub async fn bulk_park(&self, rule: ParkRule) -> Result<String, RemedyError> {
        let inner = &self.inner;
        if rule.from > rule.to {
            return Err(RemedyError::Refused(format!(
                "from seq {} is past to seq {}; nothing was changed",
                rule.from, rule.to
            )));
        }
        let applied = inner.journal.cursor(Cursor::Applied);
        if rule.to <= applied {
            return Err(RemedyError::Refused(format!(
                "seqs up to {} are applied (or parked) already: nothing left to park there; nothing was changed",
                applied
            )));
        }
        let mut saved = inner.saved.lock().await;
        let mut next = saved.clone();
        let retry_stop = next.stopped.as_ref().is_some_and(|s| {
            s.kind != GAP
                && (rule.from..=rule.to).contains(&s.seq)
                && rule.kind.as_deref().is_none_or(|k| k == s.kind)
        });
        if retry_stop {
            next.stopped = None;
        }
        let what = rule.describe();
        next.park_rule = Some(rule);
        inner.save(&next).map_err(failed)?;
        *saved = next;
        inner.wake.notify_one();
        Ok(format!("bulk park started: {what}; the rest goes through"))
    }

    /// Ends the bulk park in force; what it parked stays parked.
    pub async fn cancel_bulk_park(&self) -> Result<String, RemedyError> {
        let inner = &self.inner;
        let mut saved = inner.saved.lock().await;
        let Some(rule) = saved.park_rule.clone() else {
            return Err(RemedyError::Refused(
                "no bulk park is in force; nothing was changed".into(),
            ));
        };
        let mut next = saved.clone();
        next.park_rule = None;
        inner.save(&next).map_err(failed)?;
        *saved = next;
        Ok(format!(
            "bulk park stopped after {} parked; they stay parked; the queue stops again at the next rejection",
            rule.parked
        ))
    }

    /// How many transactions not yet applied within `from..=to` are of `kind` (any kind when
    /// `None`): at most what a bulk park over them can park. Counts at most `cap`; `true` when
    /// it stopped there.
    pub async fn pending_matching(
        &self,
        from: u64,
        to: u64,
        kind: Option<&str>,
        cap: u64,
    ) -> Result<(u64, bool), RemedyError> {
        let journal = &self.inner.journal;
        let mut after = journal.cursor(Cursor::Applied).max(from.saturating_sub(1));
        let mut count = 0u64;
        let mut seen = 0u64;
        while after < to {
            let rows = journal
                .read_after(after, READ_ROWS, 1 << 20)
                .await
                .map_err(failed)?;
            let Some(last) = rows.last() else { break };
            after = last.seq;
            for e in rows.iter().filter(|e| e.seq <= to) {
                seen += 1;
                if kind.is_none_or(|k| k == e.kind) {
                    count += 1;
                }
            }
            if seen >= cap {
                return Ok((count, true));
            }
        }
        Ok((count, false))
    }

    /// Applies a parked transaction now; it leaves the parked list when Odoo took it.
    pub async fn replay(&self, seq: u64) -> Result<String, RemedyError> {
        let inner = &self.inner;
        let _one = inner.replaying.lock().await;
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
