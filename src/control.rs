//! The local control channel: `DATA_DIR/plantd.sock` (mode 0600), one JSON request per line,
//! one JSON response per line.
//!
//! Every CLI command that talks to the running daemon goes through [`call`], and every action
//! the daemon offers is one [`Request`] handled by [`Control::handle`]; the admin UI calls the
//! same `handle` in-process, so each action exists once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::health::{Component, Health};
use crate::journal::{Journal, Stats};
use crate::tokens::{Device, Tokens};

/// Longest request line accepted.
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Request {
    Status,
    TokenCreate {
        device: String,
        /// The kinds the device may send; absent: the default scope (see `tokens::Scope`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kinds: Option<Vec<String>>,
    },
    TokenList,
    TokenRevoke {
        device: String,
    },
    /// Stop replicating on purpose (planned WAN work); the journal keeps accepting.
    Island,
    /// Replicate again after `Island`.
    Rejoin,
    StackStatus,
    StackRestart {
        service: String,
    },
    StackReset {
        service: String,
    },
    StackLogs {
        service: String,
        tail: usize,
    },
    StackEvents,
    /// Re-read `plant.toml` and bring the stack to it (upgrades are health-gated).
    StackApply,
    /// Stop and remove the stack's containers (volumes too only when asked).
    StackDown {
        delete_volumes: bool,
    },
    /// With a reason, stop a service and keep it stopped; without, let it run again.
    StackHold {
        service: String,
        reason: Option<String>,
    },
    ApplyStatus,
    ApplyRetry {
        seq: u64,
    },
    ApplyPark {
        seq: u64,
    },
    ApplyReplay {
        seq: u64,
    },
    /// Move the applied cursor back to `seq`: Odoo's data went back to an earlier point (the
    /// restore of `backup`, or what an admin knows); what came after is applied again.
    ApplyRewind {
        seq: u64,
        backup: Option<String>,
        why: String,
    },
    /// One call to the plant's Odoo through plantd's configured client (`plantd odoo call`).
    OdooCall {
        model: String,
        method: String,
        args: Vec<serde_json::Value>,
        kwargs: serde_json::Map<String, serde_json::Value>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    Status(StatusReport),
    Token {
        device: String,
        token: String,
    },
    Devices {
        devices: Vec<Device>,
    },
    Done {
        message: String,
    },
    Stack(crate::stack::StackReport),
    StackEvents {
        events: Vec<crate::stack::StackEvent>,
    },
    Lines {
        lines: Vec<String>,
    },
    Apply(crate::apply::ApplyReport),
    /// What a rewind did: `None` when the cursor was not past the seq (nothing to apply again).
    Rewound {
        rewound: Option<crate::apply::Rewound>,
        applied_seq: u64,
    },
    /// What Odoo answered, and how plantd reached it.
    Odoo {
        answer: serde_json::Value,
        via: String,
    },
    Error {
        message: String,
    },
    /// The request was not carried out, and nothing was changed: it does not fit the state it
    /// met (an apply retry of another seq than the queue stopped at, say).
    Refused {
        message: String,
    },
}

/// What `plantd status` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub data_dir: PathBuf,
    pub uptime_s: u64,
    pub journal: Stats,
    pub link: Option<crate::sync::plant::LinkReport>,
    pub components: Vec<Component>,
}

/// The daemon's actions.
pub struct Control {
    pub journal: Journal,
    pub tokens: Arc<Tokens>,
    pub health: Arc<Health>,
    pub data_dir: PathBuf,
    pub started: Instant,
    pub replication: crate::sync::plant::Replication,
    pub stack: Option<crate::stack::Stack>,
    /// `[stack]` as the daemon started with it: some settings take a restart to change.
    pub stack_config: Option<crate::config::StackConfig>,
    /// Reads `plant.toml` again, as `plantd up` did (for `stack apply`).
    pub reload: crate::config::Reload,
    /// Where changes asked for over the socket are written down, with the caller's user.
    pub audit: Option<Arc<dyn Audit>>,
    /// The local apply, when `[apply] local` is on.
    pub apply: Option<crate::apply::Applier>,
}

/// Where the daemon writes down the changes asked for over the socket: the admin store's audit
/// log, beside the admin UI's own entries.
pub trait Audit: Send + Sync + 'static {
    /// Writes one entry (`outcome`: `ok`, `refused` or `failed`); blocks on the store.
    fn record(
        &self,
        user: &str,
        action: &str,
        target: Option<String>,
        outcome: &str,
        detail: String,
    ) -> anyhow::Result<()>;
}

impl Request {
    /// The audit log's name for a request that changes something; `None` for reads.
    pub fn action(&self) -> Option<(&'static str, Option<&str>)> {
        Some(match self {
            Request::Status
            | Request::TokenList
            | Request::StackStatus
            | Request::StackLogs { .. }
            | Request::StackEvents => return None,
            Request::TokenCreate { device, .. } => ("token.create", Some(device)),
            Request::TokenRevoke { device } => ("token.revoke", Some(device)),
            Request::Island => ("island", None),
            Request::Rejoin => ("rejoin", None),
            Request::StackRestart { service } => ("service.restart", Some(service)),
            Request::StackReset { service } => ("service.reset", Some(service)),
            Request::StackApply => ("stack.apply", None),
            Request::StackDown { .. } => ("stack.down", None),
            Request::OdooCall { method, .. } => ("odoo.call", Some(method)),
            Request::ApplyStatus => return None,
            Request::ApplyRetry { .. } => ("apply.retry", None),
            Request::ApplyPark { .. } => ("apply.park", None),
            Request::ApplyReplay { .. } => ("apply.replay", None),
            Request::ApplyRewind { .. } => ("apply.rewind", None),
            Request::StackHold {
                service,
                reason: Some(_),
            } => ("service.hold", Some(service)),
            Request::StackHold {
                service,
                reason: None,
            } => ("service.release", Some(service)),
        })
    }
}

impl Control {
    /// Handles a request from the control socket, writing a change to the audit log as done by
    /// `who` (the local user that ran the CLI).
    async fn handle_audited(&self, request: Request, who: &str) -> Response {
        // An apply remedy's target is its seq, as the admin UI records it.
        let seq = match &request {
            Request::ApplyRetry { seq }
            | Request::ApplyPark { seq }
            | Request::ApplyReplay { seq }
            | Request::ApplyRewind { seq, .. } => Some(format!("seq {seq}")),
            _ => None,
        };
        let action = request
            .action()
            .map(|(a, t)| (a, t.map(str::to_string).or(seq)));
        let response = self.handle(request).await;
        if let (Some((action, target)), Some(store)) = (action, &self.audit) {
            let (outcome, detail) = match &response {
                Response::Error { message } => ("failed", message.clone()),
                Response::Refused { message } => ("refused", message.clone()),
                Response::Token { .. } => ("ok", "token created".to_string()),
                Response::Done { message } => ("ok", message.clone()),
                Response::Lines { lines } => ("ok", lines.join("; ")),
                Response::Rewound {
                    rewound: Some(r), ..
                } => ("ok", r.message()),
                _ => ("ok", String::new()),
            };
            let (store, who) = (store.clone(), who.to_string());
            let written = tokio::task::spawn_blocking(move || {
                store.record(&who, action, target, outcome, detail)
            })
            .await;
            if let Ok(Err(e)) = written {
                tracing::error!(error = %e, "writing the audit log");
            }
        }
        response
    }

    /// Probes the journal, records its health, and returns its numbers.
    async fn journal_health(&self) -> Result<Stats, crate::journal::JournalError> {
        self.journal.probe_health(&self.health).await;
        self.journal.stats().await
    }

    pub async fn handle(&self, request: Request) -> Response {
        let fail = |e: &dyn std::fmt::Display| Response::Error {
            message: e.to_string(),
        };
        match request {
            Request::Status => match self.journal_health().await {
                Ok(journal) => Response::Status(StatusReport {
                    version: crate::release::version().to_string(),
                    data_dir: self.data_dir.clone(),
                    uptime_s: self.started.elapsed().as_secs(),
                    journal,
                    link: self.replication.link.borrow().clone(),
                    components: self.health.snapshot(),
                }),
                Err(e) => fail(&e),
            },
            Request::TokenCreate { device, kinds } => {
                match crate::tokens::Scope::parse(kinds.as_deref())
                    .and_then(|scope| self.tokens.create(&device, &scope))
                {
                    Ok(token) => Response::Token { device, token },
                    Err(e) => fail(&e),
                }
            }
            Request::TokenList => match self.tokens.list() {
                Ok(devices) => Response::Devices { devices },
                Err(e) => fail(&e),
            },
            Request::Island | Request::Rejoin if !self.replication.enrolled => Response::Error {
                message: "this plant is not enrolled with a hub; there is no link to island".into(),
            },
            Request::Island => {
                let marker = crate::sync::plant::island_marker(&self.data_dir);
                if let Err(e) =
                    crate::fsutil::write_atomic(&marker, b"islanded by an admin\n", 0o644)
                {
                    return fail(&format!("{e:#}"));
                }
                self.replication.islanded.send_replace(true);
                Response::Done {
                    message: "islanded: replication stopped on purpose; transactions stay in the journal until `plantd rejoin`".into(),
                }
            }
            Request::Rejoin => {
                let marker = crate::sync::plant::island_marker(&self.data_dir);
                if let Err(e) = std::fs::remove_file(&marker) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return fail(&format!("removing {}: {e}", marker.display()));
                    }
                }
                self.replication.islanded.send_replace(false);
                Response::Done {
                    message: "rejoined: replication resumes and drains the backlog".into(),
                }
            }
            Request::StackStatus
            | Request::StackRestart { .. }
            | Request::StackReset { .. }
            | Request::StackLogs { .. }
            | Request::StackEvents
            | Request::StackApply
            | Request::StackDown { .. }
            | Request::StackHold { .. } => match self.stack(request).await {
                Ok(r) => r,
                Err(message) => Response::Error { message },
            },
            Request::ApplyStatus
            | Request::ApplyRetry { .. }
            | Request::ApplyPark { .. }
            | Request::ApplyReplay { .. }
            | Request::ApplyRewind { .. } => {
                let Some(apply) = &self.apply else {
                    return Response::Error {
                        message: "this plant does not apply transactions to its Odoo: set [apply] local = true in plant.toml (and [odoo]), then restart plantd".into(),
                    };
                };
                let done = |r: Result<String, crate::apply::RemedyError>| match r {
                    Ok(message) => Response::Done { message },
                    Err(crate::apply::RemedyError::Refused(message)) => {
                        Response::Refused { message }
                    }
                    Err(crate::apply::RemedyError::Failed(message)) => Response::Error { message },
                };
                match request {
                    Request::ApplyRetry { seq } => done(apply.retry(seq).await),
                    Request::ApplyPark { seq } => done(apply.park(seq).await),
                    Request::ApplyReplay { seq } => done(apply.replay(seq).await),
                    Request::ApplyRewind { seq, backup, why } => {
                        match apply.rewind(seq, backup, why).await {
                            Ok(rewound) => Response::Rewound {
                                rewound,
                                applied_seq: self.journal.cursor(crate::journal::Cursor::Applied),
                            },
                            Err(e) => done(Err(e)),
                        }
                    }
                    _ => Response::Apply(apply.status().await),
                }
            }
            Request::OdooCall {
                model,
                method,
                args,
                kwargs,
            } => match self.odoo_call(&model, &method, args, kwargs).await {
                Ok(r) => r,
                Err(message) => Response::Error { message },
            },
            Request::TokenRevoke { device } => match self.tokens.revoke(&device) {
                Ok(()) => Response::Done {
                    message: format!("revoked the token of device {device:?}"),
                },
                Err(e) => fail(&e),
            },
        }
    }
}

impl Control {
    async fn odoo_call(
        &self,
        model: &str,
        method: &str,
        args: Vec<serde_json::Value>,
        kwargs: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Response, String> {
        // plant.toml as it is now, so that a fixed [odoo] section needs no restart.
        let config = (self.reload)().map_err(|e| format!("{e:#}"))?;
        let odoo_ip = self.stack.as_ref().and_then(|s| *s.odoo.borrow());
        let stack = config.stack.as_ref().map(|s| (s, odoo_ip));
        let target = config.odoo.target(stack)?;
        let url = target.url.clone();
        let client = crate::odoo::Client::connect(target)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let via = format!(
            "Odoo {} at {url}, through {}",
            client.version(),
            client.api()
        );
        let result = client
            .call(model, method, args, kwargs)
            .await
            .map_err(|e| {
                let hint = if e.outcome_unknown() {
                    "; look whether it ran before you call again"
                } else if e.transient() {
                    "; it did not run: try again when Odoo is back"
                } else {
                    ""
                };
                format!("{model}.{method}: {e} ({via}){hint}")
            })?;
        Ok(Response::Odoo {
            answer: result,
            via,
        })
    }

    async fn stack(&self, request: Request) -> Result<Response, String> {
        use crate::stack::spec::Service;
        let Some(stack) = &self.stack else {
            return Err("this plant does not supervise a stack: plant.toml has no [stack] section (add one and restart plantd)".into());
        };
        let done = |message| Response::Done { message };
        Ok(match request {
            Request::StackStatus => Response::Stack(stack.report()),
            Request::StackRestart { service } => {
                done(stack.restart(Service::parse(&service)?).await?)
            }
            Request::StackReset { service } => done(stack.reset(Service::parse(&service)?).await?),
            Request::StackHold { service, reason } => {
                done(stack.hold(Service::parse(&service)?, reason).await?)
            }
            Request::StackLogs { service, tail } => Response::Lines {
                lines: stack.logs(Service::parse(&service)?, tail).await?,
            },
            Request::StackEvents => Response::StackEvents {
                events: stack.events().await?,
            },
            Request::StackApply => {
                let config = (self.reload)().map_err(|e| format!("{e:#}"))?;
                let Some(stack_config) = config.stack.clone() else {
                    return Err("plant.toml no longer has a [stack] section; restart plantd to stop supervising (the containers keep running)".into());
                };
                if let Some(running) = &self.stack_config {
                    let needs_restart = [
                        (
                            "stack.ingress.listen",
                            running.ingress != stack_config.ingress,
                        ),
                        (
                            "stack.docker_socket",
                            running.docker_socket != stack_config.docker_socket,
                        ),
                        (
                            "stack.odoo.workers (to or from 0: the websocket moves)",
                            (running.odoo_workers == 0) != (stack_config.odoo_workers == 0),
                        ),
                    ];
                    if let Some((field, _)) = needs_restart.iter().find(|(_, changed)| *changed) {
                        return Err(format!("{field} changed; that takes a restart of plantd (`systemctl restart plantd`), not `stack apply`"));
                    }
                }
                let spec = crate::stack::spec::build(&stack_config, &self.data_dir)
                    .map_err(|e| format!("{e:#}"))?;
                let backed_up = pre_upgrade_backup(stack, &spec, &config).await?;
                let applied = stack.apply(spec).await?;
                done(match backed_up {
                    Some(note) => format!("{note}\n{applied}"),
                    None => applied,
                })
            }
            Request::StackDown { delete_volumes } => Response::Lines {
                lines: stack.down(delete_volumes).await?,
            },
            _ => unreachable!("only stack requests come here"),
        })
    }
}

/// Binds the socket (mode 0600), replacing a stale one left by a crash.
pub async fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            anyhow::bail!(
                "another plantd is already running on this data directory (it answers on {})",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale control socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting mode 0600 on {}", path.display()))?;
    Ok(listener)
}

/// Serves control connections until `shutdown` turns true.
pub async fn serve(
    listener: UnixListener,
    control: Arc<Control>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let control = control.clone();
                    tokio::spawn(async move {
                        if let Err(e) = connection(stream, &control).await {
                            tracing::debug!(error = %e, "control connection ended");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

async fn connection(stream: UnixStream, control: &Control) -> std::io::Result<()> {
    // The socket is mode 0600, so this is the daemon's own user (root on a plant server).
    let who = match stream.peer_cred() {
        Ok(cred) => format!("cli (uid {})", cred.uid()),
        Err(_) => "cli".to_string(),
    };
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let response = if line.len() > MAX_LINE {
            Response::Error {
                message: format!("request over {MAX_LINE} bytes"),
            }
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(request) => control.handle_audited(request, &who).await,
                Err(e) => Response::Error {
                    message: format!("not a control request: {e}"),
                },
            }
        };
        let mut out = serde_json::to_vec(&response).expect("responses serialize");
        out.push(b'\n');
        write.write_all(&out).await?;
        if line.len() > MAX_LINE {
            return Ok(());
        }
    }
}

/// Why a call could not reach the daemon.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("plantd is not running on this data directory (nothing answers on {0}); start it with `plantd up`")]
    NotRunning(PathBuf),
    #[error("control socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the daemon's answer is not understood: {0}")]
    Protocol(String),
}

/// Sends one request to the daemon and returns its response.
pub async fn call(socket: &Path, request: &Request) -> Result<Response, CallError> {
    let io = |source| CallError::Io {
        path: socket.to_path_buf(),
        source,
    };
    let stream = match UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(CallError::NotRunning(socket.to_path_buf()))
        }
        Err(e) => return Err(io(e)),
    };
    let (read, mut write) = stream.into_split();
    let mut out = serde_json::to_vec(request).expect("requests serialize");
    out.push(b'\n');
    write.write_all(&out).await.map_err(io)?;
    let mut line = String::new();
    BufReader::new(read)
        .read_line(&mut line)
        .await
        .map_err(io)?;
    serde_json::from_str(&line).map_err(|e| CallError::Protocol(e.to_string()))
}

/// The daemon, as a component that runs outside it or inside it asks it for something: over
/// its socket (the CLI, audited as the local user) or directly (the admin UI, audited as the
/// admin who asked).
pub enum Daemon {
    Socket(PathBuf),
    Within { control: Arc<Control>, user: String },
}

impl Daemon {
    /// The daemon of a data directory, over its socket.
    pub fn of(data_dir: &Path) -> Daemon {
        Daemon::Socket(socket_path(data_dir))
    }

    async fn ask(&self, request: Request) -> Result<Response, CallError> {
        match self {
            Daemon::Socket(socket) => call(socket, &request).await,
            Daemon::Within { control, user } => Ok(control.handle_audited(request, user).await),
        }
    }
}

impl crate::backup::restore::Daemon for Daemon {
    async fn supervises_stack(&self) -> anyhow::Result<bool> {
        match self.ask(Request::StackStatus).await {
            Ok(Response::Stack(_)) => Ok(true),
            Ok(_) | Err(CallError::NotRunning(_)) => Ok(false),
            Err(e) => anyhow::bail!("asking the daemon: {e}"),
        }
    }

    async fn hold_odoo(&self, reason: Option<String>) -> anyhow::Result<()> {
        let request = Request::StackHold {
            service: "odoo".into(),
            reason,
        };
        match self.ask(request).await {
            Ok(Response::Done { .. }) => Ok(()),
            Ok(Response::Error { message }) => anyhow::bail!("{message}"),
            Ok(other) => anyhow::bail!("unexpected answer from the daemon: {other:?}"),
            Err(e) => anyhow::bail!("asking the daemon: {e}"),
        }
    }

    async fn rewind_apply(
        &self,
        seq: u64,
        backup: Option<String>,
        why: String,
    ) -> Result<Option<(Option<crate::apply::Rewound>, u64)>, String> {
        let request = Request::ApplyRewind { seq, backup, why };
        match self.ask(request).await {
            Ok(Response::Rewound {
                rewound,
                applied_seq,
            }) => Ok(Some((rewound, applied_seq))),
            Ok(Response::Error { message } | Response::Refused { message }) => Err(message),
            Ok(other) => Err(format!("unexpected answer from the daemon: {other:?}")),
            Err(CallError::NotRunning(_)) => Ok(None),
            Err(e) => Err(format!("asking the daemon: {e}")),
        }
    }
}

/// The control socket of a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("plantd.sock")
}

/// Before a new PostgreSQL or Odoo image (an upgrade that can change data), a backup: taken
/// while both run healthy, and a failure refuses the upgrade. When one of them is not
/// healthy, the new image is a repair and goes ahead without one, saying so.
async fn pre_upgrade_backup(
    stack: &crate::stack::Stack,
    spec: &crate::stack::spec::StackSpec,
    config: &crate::config::PlantConfig,
) -> Result<Option<String>, String> {
    use crate::stack::spec::Service;
    let report = stack.report();
    let running = |s: Service| report.services.iter().find(|r| r.service == s.as_str());
    let changed: Vec<&str> = [Service::Postgres, Service::Odoo]
        .into_iter()
        .filter(|s| running(*s).is_some_and(|r| r.image != spec.get(*s).image))
        .map(|s| s.as_str())
        .collect();
    if changed.is_empty() {
        return Ok(None);
    }
    let unhealthy: Vec<&str> = [Service::Postgres, Service::Odoo]
        .into_iter()
        .filter(|s| running(*s).is_none_or(|r| r.health != "healthy"))
        .map(|s| s.as_str())
        .collect();
    if !unhealthy.is_empty() {
        return Ok(Some(format!(
            "no backup before the new {} image: {} not healthy, so this is taken as a repair (`plantd backup list` shows the latest backup)",
            changed.join(" and "),
            unhealthy.join(" and ")
        )));
    }
    match crate::backup::take(config).await {
        Ok(b) => Ok(Some(format!(
            "backup {} taken before the new {} image",
            b.id,
            changed.join(" and ")
        ))),
        Err(e) => Err(format!(
            "the backup before the new {} image failed, so nothing was changed: {e:#}",
            changed.join(" and ")
        )),
    }
}
