//! The plant's executor of the hub's remote actions ([`crate::replication::remote`]): each one
//! checked against plant.toml's `[remote] allow`, carried out through the daemon's own control
//! actions ([`Control::handle_audited`](crate::control::Control), as the admin UI's are) or the
//! backup functions the admin UI uses, and written to the plant's audit log as done by
//! `hub:<the hub admin>`, done, failed or refused.
//!
//! A diagnostics bundle holds the status, the stack's state and events, the last lines of each
//! container's log and of plantd's own, and the config; before it leaves, every secret this
//! plant knows (the stack's generated passwords, service environments, Odoo options from
//! files, its API key, the backup identity, the first-run setup code, the alert routes' keys and
//! the URLs' user, password and query) is replaced by `***` wherever it occurs, escaped or not
//! (see `mask`), and log lines that carry the setup code are left out.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{json, Value};

use crate::config::PlantConfig;
use crate::control::{Control, Request, Response};
use crate::replication::remote::{Command, Done, Executor, Received, Then};

mod mask;

/// The hub's actions at this plant.
#[derive(Clone)]
pub struct RemoteExecutor {
    pub control: Arc<Control>,
    pub config: Arc<PlantConfig>,
}

/// The audit log's name of an action, and its target.
fn audited_as(command: &Command) -> (&'static str, Option<String>) {
    match command {
        Command::Backup => ("backup.run", None),
        Command::Verify { id } => ("backup.verify", id.clone()),
        Command::Restart { service } => ("service.restart", Some(service.clone())),
        Command::Diagnostics { .. } => ("diagnostics", None),
        Command::Island => ("island", None),
        Command::Rejoin => ("rejoin", None),
        Command::ApplyRetry { seq } => ("apply.retry", Some(format!("seq {seq}"))),
        Command::ApplyPark { seq } => ("apply.park", Some(format!("seq {seq}"))),
    }
}

/// The hub admin's name as the plant's audit log shows it: `hub:` and at most 64 printable
/// characters.
fn who(requested_by: &str) -> String {
    let name: String = requested_by
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    format!("hub:{name}")
}

impl Executor for RemoteExecutor {
    fn execute(&self, action: Received) -> BoxFuture<'static, (Done, Then)> {
        let this = self.clone();
        Box::pin(async move { this.run(action).await })
    }

    fn timed_out(&self, action: Received, done: Done) -> BoxFuture<'static, ()> {
        let this = self.clone();
        Box::pin(async move {
            let who = who(&action.requested_by);
            this.audit(&who, &action.command, outcome(&done), &done.detail)
                .await;
        })
    }
}

impl RemoteExecutor {
    async fn run(self, action: Received) -> (Done, Then) {
        let who = who(&action.requested_by);
        let kind = action.command.action();
        tracing::info!(id = action.id, action = %kind, %who, "remote action from the hub");
        if !self.config.remote.allows(kind) {
            let allowed: Vec<&str> = self
                .config
                .remote
                .allow
                .iter()
                .map(|a| a.as_str())
                .collect();
            let message = format!(
                "this plant's plant.toml [remote] allow does not list \"{kind}\" (it allows {}), so the plant refused it; nothing was done",
                if allowed.is_empty() { "no action".to_string() } else { allowed.join(", ") }
            );
            self.audit(&who, &action.command, "refused", &message).await;
            return (Done::refused(message), None);
        }
        // As `control::Daemon::Within` asks it: audited as the hub admin.
        let through_control = |request: Request| {
            let (control, who) = (self.control.clone(), who.clone());
            async move { answer(control.handle_audited(request, &who).await) }
        };
        match action.command.clone() {
            Command::Restart { service } => (
                through_control(Request::StackRestart { service }).await,
                None,
            ),
            Command::Rejoin => (through_control(Request::Rejoin).await, None),
            Command::ApplyRetry { seq } => {
                (through_control(Request::ApplyRetry { seq }).await, None)
            }
            Command::ApplyPark { seq } => (through_control(Request::ApplyPark { seq }).await, None),
            Command::Island => {
                // The answer goes first: the island takes the link it would travel on.
                if !self.control.replication.enrolled {
                    return (through_control(Request::Island).await, None);
                }
                let island = through_control(Request::Island);
                let then: Then = Some(Box::pin(async move {
                    let done = island.await;
                    tracing::info!(detail = %done.detail, "islanded at the hub's request");
                }));
                (
                    Done::ok("islanding now, as asked: replication stops on purpose and the link goes; `plantd rejoin` at the plant brings it back"),
                    then,
                )
            }
            Command::Backup => {
                let config = self.config.clone();
                let done = match crate::backup::take(&config).await {
                    Ok(b) => {
                        let mut d = Done::ok(format!(
                            "backup {} taken ({}); the plant copies it to the hub next",
                            b.id,
                            bytesize::ByteSize::b(b.size)
                        ));
                        d.body = json!({ "id": b.id, "size": b.size, "created_at": b.created_at });
                        d
                    }
                    Err(e) => Done::failed(format!("the backup failed: {e:#}")),
                };
                self.audit(&who, &action.command, outcome(&done), &done.detail)
                    .await;
                (done, None)
            }
            Command::Verify { id } => {
                let done = self.verify(id).await;
                self.audit(&who, &action.command, outcome(&done), &done.detail)
                    .await;
                (done, None)
            }
            Command::Diagnostics { lines } => {
                let done = self.diagnostics(lines).await;
                self.audit(&who, &action.command, outcome(&done), &done.detail)
                    .await;
                (done, None)
            }
        }
    }

    /// Writes one entry of the plant's audit log.
    async fn audit(&self, who: &str, command: &Command, outcome: &str, detail: &str) {
        let Some(store) = self.control.audit.clone() else {
            return;
        };
        let (action, target) = audited_as(command);
        let (who, outcome, detail) = (who.to_string(), outcome.to_string(), detail.to_string());
        let written = tokio::task::spawn_blocking(move || {
            store.record(&who, action, target, &outcome, detail)
        })
        .await;
        if let Ok(Err(e)) = written {
            tracing::error!(error = %e, "writing the audit log");
        }
    }

    async fn verify(&self, id: Option<String>) -> Done {
        let data_dir = self.config.data_dir.clone();
        let id = match id {
            Some(id) => id,
            None => {
                let listed =
                    tokio::task::spawn_blocking(move || crate::backup::list(&data_dir)).await;
                match listed {
                    Ok(Ok(list)) => match list.into_iter().map(|b| b.id).max() {
                        Some(id) => id,
                        None => {
                            return Done::refused(
                                "this plant holds no backup to verify; nothing was done",
                            )
                        }
                    },
                    Ok(Err(e)) => return Done::failed(format!("listing the backups: {e:#}")),
                    Err(e) => return Done::failed(format!("listing the backups: {e}")),
                }
            }
        };
        let keys = match crate::backup::archive::keys(&self.config.data_dir, &[]) {
            Ok(k) => k,
            Err(e) => return Done::failed(format!("reading the backup keys: {e:#}")),
        };
        match crate::backup::verify(&self.config, &id, &keys).await {
            Ok(m) => {
                let mut d = Done::ok(format!(
                    "backup {id} verified: every part matches its checksum, and the dump restored into a scratch database with the same rows in all {} tables",
                    m.tables.len()
                ));
                d.body = json!({ "id": id, "tables": m.tables.len() });
                d
            }
            Err(e) => Done::failed(format!("backup {id} did not verify: {e:#}")),
        }
    }

    async fn diagnostics(&self, lines: usize) -> Done {
        let control = &self.control;
        let status = match control.handle(Request::Status).await {
            Response::Status(s) => serde_json::to_value(s).unwrap_or(Value::Null),
            other => json!({ "error": format!("{other:?}") }),
        };
        let (stack, events, mut logs) = match control.stack {
            None => (
                json!("this plant supervises no stack (plant.toml has no [stack])"),
                Value::Null,
                serde_json::Map::new(),
            ),
            Some(_) => {
                let stack = match control.handle(Request::StackStatus).await {
                    Response::Stack(r) => serde_json::to_value(r).unwrap_or(Value::Null),
                    other => json!({ "error": format!("{other:?}") }),
                };
                let events = match control.handle(Request::StackEvents).await {
                    Response::StackEvents { events } => {
                        serde_json::to_value(events).unwrap_or(Value::Null)
                    }
                    other => json!({ "error": format!("{other:?}") }),
                };
                let mut logs = serde_json::Map::new();
                for service in ["postgres", "redis", "odoo"] {
                    let request = Request::StackLogs {
                        service: service.into(),
                        tail: lines,
                    };
                    let got = match control.handle(request).await {
                        Response::Lines { lines } => json!(lines),
                        Response::Error { message } => json!({ "error": message }),
                        other => json!({ "error": format!("{other:?}") }),
                    };
                    logs.insert(service.into(), got);
                }
                (stack, events, logs)
            }
        };
        let own = crate::telemetry::shareable_log_lines(lines);
        logs.insert("plantd".into(), json!(own));
        let bundle = json!({
            "collected_at": jiff::Timestamp::now().to_string(),
            "version": crate::release::version(),
            "status": status,
            "stack": stack,
            "stack_events": events,
            "logs": logs,
            "config": mask::config_section(&self.config),
            "remote_allow": self.config.remote.allow.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        });
        let secrets = {
            let config = self.config.clone();
            tokio::task::spawn_blocking(move || mask::secrets(&config))
                .await
                .unwrap_or_default()
        };
        let body = mask::redact(bundle, &secrets);
        let size = body.to_string().len();
        let mut d = Done::ok(format!(
            "diagnostics collected ({}; {lines} log lines at most per container and of plantd; secrets replaced by ***)",
            bytesize::ByteSize::b(size as u64)
        ));
        d.body = body;
        d
    }
}

/// The audit outcome of a result.
fn outcome(done: &Done) -> &'static str {
    done.outcome.as_str()
}

/// A control answer as a result.
fn answer(response: Response) -> Done {
    match response {
        Response::Done { message } => Done::ok(message),
        Response::Refused { message } => Done::refused(message),
        Response::Error { message } => Done::failed(message),
        Response::Lines { lines } => Done::ok(lines.join("; ")),
        other => Done::ok(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_names_hub_admins_as_such() {
        assert_eq!(who("ana"), "hub:ana");
        assert_eq!(who("a\u{1b}[2Jb\n"), "hub:a[2Jb");
        assert_eq!(who(&"x".repeat(500)).len(), 4 + 64);
    }
}
