//! The Backups page's API: the list, a backup taken, verified, restored or downloaded, each
//! run as a job the page follows.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::*;
use super::jobs::Kind;
use super::store::{AuditEntry, Role};
use super::{Admin, AdminError};

pub async fn backups(State(admin): State<Admin>, headers: HeaderMap) -> Answer {
    admin.reader(&headers)?;
    let data_dir = admin.config.data_dir.clone();
    let listed = blocking(move || crate::backup::list(&data_dir))
        .await?
        .map_err(|e| AdminError::Failed(format!("{e:#}")))?;
    let now = jiff::Timestamp::now();
    let backups: Vec<Value> = listed
        .into_iter()
        .rev()
        .map(|b| {
            let age_s = crate::backup::scheduler::taken_at(&b.id)
                .map(|t| now.duration_since(t).as_secs().max(0));
            json!({
                "id": b.id, "created_at": b.created_at, "age_s": age_s, "size": b.size,
                "verified": b.verified, "encrypted": b.encrypted, "offsite": b.offsite,
                "unreadable": b.unreadable,
            })
        })
        .collect();
    let c = &admin.config.backup;
    let status = admin
        .control
        .health
        .snapshot()
        .into_iter()
        .find(|x| x.name == "backup")
        .map(|x| x.detail);
    Ok(Json(json!({
        "backups": backups,
        "schedule": c.schedule.to_string(),
        "timezone": c.timezone.clone().unwrap_or_else(|| "the server's (/etc/localtime)".into()),
        "retention": c.policy,
        "encrypted_to": c.encrypt_to.len(),
        "status": status,
        "jobs": admin.jobs.list(),
        // Whether there is a stack to back up (without one, "Run backup now" is not offered).
        "stack": admin.control.stack.is_some(),
    }))
    .into_response())
}

/// Starts a backup job once `checks` passed, auditing a refusal, or the job's start and end.
pub(super) async fn start_job<F>(
    admin: Admin,
    caller: Caller,
    kind: Kind,
    backup: Option<String>,
    checks: Result<(), AdminError>,
    work: F,
) -> Answer
where
    F: std::future::Future<Output = anyhow::Result<String>> + Send + 'static,
{
    if let Err(e) = checks {
        admin
            .audit(&caller.user, kind.action(), backup.as_deref(), Err(&e))
            .await;
        return Err(e);
    }
    let done_admin = admin.clone();
    let user = caller.user.clone();
    let target = backup.clone();
    // The work waits for the "started" entry, so that the audit log never shows an end first.
    let (go, ready) = tokio::sync::oneshot::channel::<()>();
    let work = async move {
        let _ = ready.await;
        work.await
    };
    let started = admin
        .jobs
        .start(kind, backup.clone(), &caller.user, work, move |job| {
            tokio::spawn(async move {
                let outcome = match job.state {
                    super::jobs::JobState::Succeeded => "ok",
                    _ => "failed",
                };
                done_admin
                    .audit_entry(AuditEntry {
                        at: super::store::now(),
                        user,
                        action: kind.action().into(),
                        target: job.backup.clone().or(target),
                        outcome: outcome.into(),
                        detail: format!("{}: {}", job.id, job.message),
                    })
                    .await;
            });
        });
    match started {
        Ok(job) => {
            admin
                .audit_entry(AuditEntry {
                    at: super::store::now(),
                    user: caller.user,
                    action: kind.action().into(),
                    target: backup,
                    outcome: "started".into(),
                    detail: job.id.clone(),
                })
                .await;
            let _ = go.send(());
            Ok((StatusCode::ACCEPTED, Json(job)).into_response())
        }
        Err(e) => {
            admin
                .audit(&caller.user, kind.action(), backup.as_deref(), Err(&e))
                .await;
            Err(e)
        }
    }
}

pub async fn backup_run(State(admin): State<Admin>, headers: HeaderMap, bytes: Bytes) -> Answer {
    let caller = admin.actor(&headers, Kind::Run.action(), None).await?;
    let checks = body::<Value>(&headers, &bytes).and_then(|_| stack(&admin).map(drop));
    let config = admin.config.clone();
    start_job(admin, caller, Kind::Run, None, checks, async move {
        let (b, m) = crate::backup::take_verified(&config).await?;
        Ok(format!(
            "backup {} taken ({}) and verified: every part matches its checksum, and the dump restored into a scratch database with the same rows in all {} tables",
            b.id,
            bytesize::ByteSize::b(b.size),
            m.tables.len()
        ))
    })
    .await
}

pub(super) fn known_backup(admin: &Admin, id: &str) -> Result<(), AdminError> {
    crate::backup::check_id(id).map_err(|e| AdminError::NotFound(format!("{e:#}")))?;
    let dir = crate::backup::dir(&admin.config.data_dir);
    if dir.join(format!("{id}.tar.zst")).exists() || dir.join(format!("{id}.tar.zst.age")).exists()
    {
        Ok(())
    } else {
        Err(AdminError::NotFound(format!(
            "no backup {id} on this plant"
        )))
    }
}

pub async fn backup_verify(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let caller = admin
        .actor(&headers, Kind::Verify.action(), Some(&id))
        .await?;
    let checks = body::<Value>(&headers, &bytes)
        .and_then(|_| known_backup(&admin, &id))
        .and_then(|()| stack(&admin).map(drop));
    let config = admin.config.clone();
    let backup = id.clone();
    start_job(admin, caller, Kind::Verify, Some(id), checks, async move {
        let keys = crate::backup::archive::keys(&config.data_dir, &[])?;
        let m = crate::backup::verify(&config, &backup, &keys).await?;
        Ok(format!(
            "backup {backup} verified: every part matches its checksum, and the dump restored into a scratch database with the same rows in all {} tables",
            m.tables.len()
        ))
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RestoreBody {
    confirm: String,
}

/// How long a restored Odoo has to answer before the previous data comes back.
pub(super) const RESTORE_HEALTH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);

pub async fn backup_restore(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let caller = admin
        .actor(&headers, Kind::Restore.action(), Some(&id))
        .await?;
    let checks = body::<RestoreBody>(&headers, &bytes).and_then(|b| {
        known_backup(&admin, &id)?;
        stack(&admin)?;
        if b.confirm.trim() == id {
            Ok(())
        } else {
            Err(AdminError::Invalid(format!(
                "confirm: type the backup's id ({id}) to restore it; nothing was changed"
            )))
        }
    });
    let config = admin.config.clone();
    let backup = id.clone();
    // The daemon holds Odoo and rewinds the apply for the admin who asked, as the audit says.
    let daemon = crate::control::Daemon::Within {
        control: admin.control.clone(),
        user: caller.user.clone(),
    };
    start_job(admin, caller, Kind::Restore, Some(id), checks, async move {
        let keys = crate::backup::archive::keys(&config.data_dir, &[])?;
        let r = crate::backup::restore::restore(&config, &backup, &keys, RESTORE_HEALTH_DEADLINE, &daemon).await?;
        Ok(format!(
            "backup {backup} restored into database {} ({} tables); Odoo was down {:.1} s and is healthy; the data it replaced is in backup {}",
            r.database, r.tables, r.odoo_down_s, r.safety_backup
        ))
    })
    .await
}

pub async fn backup_download(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    // A backup is the whole plant: Odoo's database with its users' password hashes and API
    // keys, and the filestore. Only admins, who may restore one, may take one away.
    let (caller, role) = admin.signin.reader_role(&headers)?;
    if role < Role::Admin {
        return Err(AdminError::Forbidden(format!(
            "{} is {}: downloading a backup takes an admin (it holds the whole database)",
            caller.user,
            if role == Role::Operator {
                "an operator"
            } else {
                "a viewer"
            }
        )));
    }
    known_backup(&admin, &id)?;
    let dir = crate::backup::dir(&admin.config.data_dir);
    let (path, name) = [format!("{id}.tar.zst"), format!("{id}.tar.zst.age")]
        .into_iter()
        .map(|n| (dir.join(&n), n))
        .find(|(p, _)| p.exists())
        .ok_or_else(|| AdminError::NotFound(format!("no backup {id} on this plant")))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| AdminError::Failed(format!("opening {}: {e}", path.display())))?;
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    admin
        .audit(&caller.user, "backup.download", Some(&id), Ok("downloaded"))
        .await;
    let stream = tokio_util::io::ReaderStream::new(file);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

pub async fn job(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(job): Path<String>,
) -> Answer {
    admin.reader(&headers)?;
    let job = admin
        .jobs
        .get(&job)
        .ok_or_else(|| AdminError::NotFound(format!("no job {job}")))?;
    Ok(Json(job).into_response())
}
