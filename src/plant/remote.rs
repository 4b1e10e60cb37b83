//! The plant's executor of the hub's remote actions ([`crate::replication::remote`]): each one
//! checked against plant.toml's `[remote] allow`, carried out through the daemon's own control
//! actions ([`Control::handle_audited`](crate::control::Control), as the admin UI's are) or the
//! backup functions the admin UI uses, and written to the plant's audit log as done by
//! `hub:<the hub admin>`, done, failed or refused.
//!
//! A diagnostics bundle holds the status, the stack's state and events, the last lines of each
//! container's log and of plantd's own, and the config; before it leaves, every secret this
//! plant knows (the stack's generated passwords, service environments, Odoo options from
//! files, its API key, the backup identity, the first-run setup code) is replaced by `***`
//! wherever it occurs, and log lines that carry the setup code are left out.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{json, Value};

use crate::config::PlantConfig;
use crate::control::{Control, Request, Response};
use crate::replication::remote::{Command, Done, Executor, Received, Then};

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
        let own: Vec<String> = crate::telemetry::recent_log_lines(lines)
            .into_iter()
            .map(|l| {
                if l.contains("setup_code") || l.contains("setup code") {
                    "(left out: a line with the first-run setup code)".to_string()
                } else {
                    l
                }
            })
            .collect();
        logs.insert("plantd".into(), json!(own));
        let bundle = json!({
            "collected_at": jiff::Timestamp::now().to_string(),
            "version": crate::release::version(),
            "status": status,
            "stack": stack,
            "stack_events": events,
            "logs": logs,
            "config": format!("{:#?}", self.config),
            "remote_allow": self.config.remote.allow.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        });
        let secrets = {
            let config = self.config.clone();
            tokio::task::spawn_blocking(move || secrets(&config))
                .await
                .unwrap_or_default()
        };
        let body = redact(bundle, &secrets);
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

/// Shorter strings are not treated as secrets: replacing them would garble the bundle.
const MIN_SECRET: usize = 6;

/// Every secret this plant knows, as it could occur in a bundle.
fn secrets(config: &PlantConfig) -> Vec<String> {
    let data_dir = &config.data_dir;
    let mut found = Vec::new();
    let mut add = |s: &str| {
        let s = s.trim();
        if s.len() >= MIN_SECRET {
            found.push(s.to_string());
        }
    };
    // The stack's generated passwords.
    let secrets_json = crate::stack::spec::stack_dir(data_dir).join("secrets.json");
    if let Ok(text) = std::fs::read_to_string(&secrets_json) {
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            walk_strings(&v, &mut add);
        }
    }
    for file in [
        data_dir.join("admin-setup-code"),
        data_dir.join("backup-identity.txt"),
    ] {
        if let Ok(text) = std::fs::read_to_string(&file) {
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                add(line);
            }
        }
    }
    if let Some(key_file) = &config.odoo.key_file {
        if let Ok(text) = std::fs::read_to_string(key_file) {
            add(&text);
        }
    }
    if let Some(stack) = &config.stack {
        for service in [&stack.postgres, &stack.redis, &stack.odoo] {
            for value in service.env.values() {
                add(value);
            }
        }
        for option in stack.odoo_options.values() {
            match option {
                crate::config::OdooOption::Text(t) => add(t),
                crate::config::OdooOption::File {
                    secret: Some(s), ..
                } => add(s),
                crate::config::OdooOption::File { .. } => {}
            }
        }
    }
    // Longest first, so that a secret containing another is replaced whole.
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found.dedup();
    found
}

fn walk_strings(v: &Value, add: &mut impl FnMut(&str)) {
    match v {
        Value::String(s) => add(s),
        Value::Array(a) => a.iter().for_each(|x| walk_strings(x, add)),
        Value::Object(m) => m.values().for_each(|x| walk_strings(x, add)),
        _ => {}
    }
}

/// `bundle` with every occurrence of each secret replaced by `***` (in any string of it).
fn redact(bundle: Value, secrets: &[String]) -> Value {
    match bundle {
        Value::String(mut s) => {
            for secret in secrets {
                if s.contains(secret.as_str()) {
                    s = s.replace(secret.as_str(), "***");
                }
            }
            Value::String(s)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|x| redact(x, secrets)).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, redact(v, secrets)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_replaces_every_occurrence_in_every_string_and_keeps_the_shape() {
        let bundle = json!({
            "config": "env: {\"SMTP_PASSWORD\": \"hunter2-smtp\"}",
            "logs": {"odoo": ["connecting with hunter2-smtp and pw-of-postgres", "fine"]},
            "n": 3,
        });
        let out = redact(
            bundle,
            &["pw-of-postgres".to_string(), "hunter2-smtp".to_string()],
        );
        let text = out.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("pw-of-postgres"),
            "{text}"
        );
        assert_eq!(out["logs"]["odoo"][0], "connecting with *** and ***");
        assert_eq!(out["n"], 3);
    }

    #[test]
    fn the_audit_names_hub_admins_as_such() {
        assert_eq!(who("ana"), "hub:ana");
        assert_eq!(who("a\u{1b}[2Jb\n"), "hub:a[2Jb");
        assert_eq!(who(&"x".repeat(500)).len(), 4 + 64);
    }
}
