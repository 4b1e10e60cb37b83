//! A restore's other half: the local apply's cursor goes back with the data, to the applied
//! seq the backup's manifest recorded (through the daemon, or in the journal and `apply.json`
//! when none runs), and what it could not do is said with what to run.

use super::super::Manifest;
use super::Daemon;
use crate::config::PlantConfig;

/// Why the apply cursor was not moved back for a restored backup (each says what to run).
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// The backup records no applied seq and no import: where the cursor belongs is unknown.
    #[error("backup {id} was taken by a plantd that did not record how far the apply had got, so the applied seq is unknown and the apply cursor was left where it was; if transactions were applied after the backup was taken, they are missing from Odoo now: `plantd apply rewind SEQ` applies everything after SEQ again (`plantd apply rewind 0`: all the journal still holds; creates find what Odoo holds by external id and make nothing twice)")]
    Unrecorded { id: String },
    /// This plant's journal could not be read.
    #[error("reading the journal: {0}. If transactions were applied after the backup was taken, they are missing from Odoo until `plantd apply rewind SEQ` runs with the backup's applied seq (0 applies all the journal holds, safely)")]
    ReadJournal(#[source] crate::journal::JournalError),
    /// The rewind to `seq` (for `why`) failed.
    #[error("{error}. What was applied after the backup is missing from Odoo until `plantd apply rewind {seq}` runs ({why})")]
    Rewind {
        #[source]
        error: RewindError,
        seq: u64,
        why: String,
    },
}

/// Why a rewind of the apply cursor failed, through the daemon or with none running.
#[derive(Debug, thiserror::Error)]
pub enum RewindError {
    /// The daemon refused it or failed at it: its message.
    #[error("{0}")]
    Answered(String),
    /// The daemon answered something else than a rewind (its answer, as Debug).
    #[error("unexpected answer from the daemon: {0}")]
    Unexpected(String),
    /// The daemon could not be asked.
    #[error("asking the daemon: {0}")]
    Asking(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The data directory's lock (a daemon starting, say).
    #[error("{0:#}")]
    Lock(anyhow::Error),
    #[error("opening the journal: {0}")]
    OpenJournal(#[source] crate::journal::JournalError),
    /// The rewind itself, in the journal and `apply.json`.
    #[error(transparent)]
    Remedy(#[from] crate::apply::RemedyError),
}

/// What a restore did about the local apply's cursor.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ApplyCursor {
    /// The applied seq the backup recorded (`None`: it recorded none).
    pub backup_applied_seq: Option<u64>,
    /// The move back, when there was one.
    pub rewound: Option<crate::apply::Rewound>,
    /// What happened, or why nothing did, for the admin.
    pub message: String,
}

/// Where the cursor should go back to for `manifest` (with why), or why that is unknown
/// (with what the admin can do). `journal_id` is this plant's journal.
pub(super) fn rewind_target(
    manifest: &Manifest,
    id: &str,
    journal_id: &str,
) -> Result<(u64, String), CursorError> {
    match (&manifest.apply, &manifest.imported_from) {
        (Some(a), _) if a.journal_id == journal_id => Ok((
            a.applied_seq,
            format!(
                "backup {id} holds what was applied through seq {}",
                a.applied_seq
            ),
        )),
        (Some(a), _) => Ok((
            0,
            format!(
                "backup {id} was taken with another journal ({}), whose seqs are not this journal's ({journal_id}): everything this journal still holds is applied again, and creates find what the data already holds by external id",
                a.journal_id
            ),
        )),
        (None, Some(file)) => Ok((
            0,
            format!(
                "backup {id} is an Odoo database imported from {file}, which records no applied seq: everything the journal still holds is applied again, and creates find what the data already holds by external id"
            ),
        )),
        (None, None) => Err(CursorError::Unrecorded { id: id.to_string() }),
    }
}

/// Moves the apply cursor back for `manifest`'s data, through the daemon when it runs. `Err`
/// says what failed and what to run.
pub(super) async fn rewind_apply(
    config: &PlantConfig,
    manifest: &Manifest,
    id: &str,
    daemon: &impl Daemon,
) -> Result<ApplyCursor, CursorError> {
    let backup_applied_seq = manifest.apply.as_ref().map(|a| a.applied_seq);
    let nothing = |message: String| ApplyCursor {
        backup_applied_seq,
        rewound: None,
        message,
    };
    if !config.apply.as_ref().is_some_and(|a| a.local) {
        return Ok(nothing(
            "this plant does not apply transactions to its Odoo ([apply] local is off): no apply cursor to move".into(),
        ));
    }
    let journal_path = config.data_dir.join("journal.db");
    let journal_id = match crate::journal::peek_applied(&journal_path) {
        Ok(Some((journal_id, _))) => journal_id,
        Ok(None) => {
            return Ok(nothing(
                "there is no journal yet: nothing was applied".into(),
            ))
        }
        Err(e) => return Err(CursorError::ReadJournal(e)),
    };
    let (seq, why) = match rewind_target(manifest, id, &journal_id) {
        Ok(target) => target,
        Err(unknown) => return Ok(nothing(unknown.to_string())),
    };
    let backup = Some(id.to_string());
    let answer = match daemon.rewind_apply(seq, backup.clone(), why.clone()).await {
        Ok(Some(done)) => Ok(done),
        Ok(None) => rewind_stopped(config, &journal_path, seq, backup, why.clone()).await,
        Err(e) => Err(e),
    };
    let (rewound, applied_seq) = answer.map_err(|error| CursorError::Rewind {
        error,
        seq,
        why: why.clone(),
    })?;
    let message = match &rewound {
        Some(r) => format!("{} ({why})", r.message()),
        None => format!(
            "the apply cursor is at seq {applied_seq}, not past the backup's {seq}: nothing is applied again ({why})"
        ),
    };
    Ok(ApplyCursor {
        backup_applied_seq,
        rewound,
        message,
    })
}

/// The rewind with no daemon running: this process holds the data directory's lock (so that
/// none starts meanwhile) and opens the journal itself.
async fn rewind_stopped(
    config: &PlantConfig,
    journal_path: &std::path::Path,
    seq: u64,
    backup: Option<String>,
    why: String,
) -> Result<(Option<crate::apply::Rewound>, u64), RewindError> {
    let data_dir = &config.data_dir;
    let _lock = crate::fsutil::lock_file(&data_dir.join("plantd.lock"), || {
        "plantd is starting on this data directory".to_string()
    })
    .map_err(RewindError::Lock)?;
    let options = crate::journal::Options {
        dir: data_dir.clone(),
        ..Default::default()
    };
    let journal =
        crate::journal::Journal::open(journal_path, options).map_err(RewindError::OpenJournal)?;
    let result = crate::apply::rewind_stopped(data_dir, &journal, seq, backup, why).await;
    let applied = journal.cursor(crate::journal::Cursor::Applied);
    journal.close().await;
    result.map(|r| (r, applied)).map_err(RewindError::Remedy)
}
