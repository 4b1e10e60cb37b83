//! The daemon's actions: [`Control`], the daemon as the control socket and the admin UI ask it
//! (status, tokens, island and rejoin, the stack, the apply's remedies, Odoo calls), each
//! change written to the audit log as done by whoever asked.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::{Audit, Request, Response, StatusReport};
use crate::health::Health;
use crate::journal::{Journal, Stats};
use crate::tokens::Tokens;

/// Why the daemon could not do what a control request asked: the answer's message.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// plant.toml, read again, does not load.
    #[error("{0:#}")]
    Reload(anyhow::Error),
    /// `[odoo]` names no Odoo to call.
    #[error(transparent)]
    Target(#[from] crate::config::TargetError),
    /// The Odoo at `url` could not be connected to.
    #[error("{url}: {error}")]
    Connect {
        url: String,
        #[source]
        error: crate::odoo::OdooError,
    },
    /// `model.method` failed in the Odoo `via` names; the message says whether it ran.
    #[error("{model}.{method}: {error} ({via}){}", run_hint(.error))]
    Call {
        model: String,
        method: String,
        #[source]
        error: crate::odoo::OdooError,
        via: String,
    },
    /// plant.toml has no `[stack]` section, so this plant supervises none.
    #[error("this plant does not supervise a stack: plant.toml has no [stack] section (add one and restart plantd)")]
    NoStack,
    /// plant.toml, read again for `stack apply`, no longer has a `[stack]` section.
    #[error("plant.toml no longer has a [stack] section; restart plantd to stop supervising (the containers keep running)")]
    StackGone,
    /// A stack setting `stack apply` cannot change on a running plantd.
    #[error("{0} changed; that takes a restart of plantd (`systemctl restart plantd`), not `stack apply`")]
    NeedsRestart(&'static str),
    /// The supervised stack refused or failed.
    #[error(transparent)]
    Stack(#[from] crate::stack::Error),
    /// No such service.
    #[error(transparent)]
    Service(#[from] crate::stack::spec::Error),
    /// plant.toml's `[stack]`, read again, does not make a stack.
    #[error("{0:#}")]
    Spec(anyhow::Error),
    /// The backup before new PostgreSQL or Odoo `images` failed.
    #[error("the backup before the new {images} image failed, so nothing was changed: {error:#}")]
    UpgradeBackup {
        images: String,
        error: anyhow::Error,
    },
}

/// What a failed Odoo call means for calling it again.
fn run_hint(e: &crate::odoo::OdooError) -> &'static str {
    if e.outcome_unknown() {
        "; look whether it ran before you call again"
    } else if e.transient() {
        "; it did not run: try again when Odoo is back"
    } else {
        ""
    }
}

/// The daemon's actions.
pub struct Control {
    pub journal: Journal,
    pub tokens: Arc<Tokens>,
    pub health: Arc<Health>,
    pub data_dir: PathBuf,
    pub started: Instant,
    pub replication: crate::replication::plant::Replication,
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

impl Control {
    /// Handles a request, writing a change to the audit log as done by `who`: `cli (uid N)`,
    /// the local user that ran the CLI, over the socket; the admin who asked, for the admin
    /// UI's restore ([`super::Daemon::Within`]), `hub:<admin>` for the hub's remote actions.
    pub async fn handle_audited(&self, request: Request, who: &str) -> Response {
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
                let marker = crate::replication::plant::island_marker(&self.data_dir);
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
                let marker = crate::replication::plant::island_marker(&self.data_dir);
                // Not islanded: nothing to do. Switching the flag anyway would wake the
                // replicator, which drops its live session to start over.
                if !*self.replication.islanded.borrow() && !marker.exists() {
                    return Response::Done {
                        message: "not islanded: replication runs as it was; nothing changed".into(),
                    };
                }
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
                Err(e) => Response::Error {
                    message: e.to_string(),
                },
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
                    _ => Response::Apply(Box::new(apply.status().await)),
                }
            }
            Request::OdooCall {
                model,
                method,
                args,
                kwargs,
            } => match self.odoo_call(&model, &method, args, kwargs).await {
                Ok(r) => r,
                Err(e) => Response::Error {
                    message: e.to_string(),
                },
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
    ) -> Result<Response, ControlError> {
        // plant.toml as it is now, so that a fixed [odoo] section needs no restart.
        let config = (self.reload)().map_err(ControlError::Reload)?;
        let odoo_ip = self.stack.as_ref().and_then(|s| *s.odoo.borrow());
        let stack = config.stack.as_ref().map(|s| (s, odoo_ip));
        let target = config.odoo.target(stack)?;
        let url = target.url.clone();
        let client = crate::odoo::Client::connect(target)
            .await
            .map_err(|error| ControlError::Connect {
                url: url.clone(),
                error,
            })?;
        let via = format!(
            "Odoo {} at {url}, through {}",
            client.version(),
            client.api()
        );
        let result = client
            .call(model, method, args, kwargs)
            .await
            .map_err(|error| ControlError::Call {
                model: model.to_string(),
                method: method.to_string(),
                error,
                via: via.clone(),
            })?;
        Ok(Response::Odoo {
            answer: result,
            via,
        })
    }

    async fn stack(&self, request: Request) -> Result<Response, ControlError> {
        use crate::stack::spec::Service;
        let Some(stack) = &self.stack else {
            return Err(ControlError::NoStack);
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
                let config = (self.reload)().map_err(ControlError::Reload)?;
                let Some(stack_config) = config.stack.clone() else {
                    return Err(ControlError::StackGone);
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
                        return Err(ControlError::NeedsRestart(field));
                    }
                }
                let spec = crate::stack::spec::build(&stack_config, &self.data_dir)
                    .map_err(ControlError::Spec)?;
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

/// Before a new PostgreSQL or Odoo image (an upgrade that can change data), a backup: taken
/// while both run healthy, and a failure refuses the upgrade. When one of them is not
/// healthy, the new image is a repair and goes ahead without one, saying so.
async fn pre_upgrade_backup(
    stack: &crate::stack::Stack,
    spec: &crate::stack::spec::StackSpec,
    config: &crate::config::PlantConfig,
) -> Result<Option<String>, ControlError> {
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
        Err(error) => Err(ControlError::UpgradeBackup {
            images: changed.join(" and "),
            error,
        }),
    }
}
