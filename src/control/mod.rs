//! The local control channel: `DATA_DIR/plantd.sock` (mode 0600), one JSON request per line,
//! one JSON response per line.
//!
//! Every CLI command that talks to the running daemon goes through [`call`], and every action
//! the daemon offers is one [`Request`] handled by [`Control::handle`]; the admin UI calls the
//! same `handle` in-process, so each action exists once. This file is the protocol and the
//! client (and [`Daemon`], the daemon as components ask it); `server.rs` the daemon's side.

mod actions;
mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::backup::restore::RewindError;
use crate::health::Component;
use crate::journal::Stats;
use crate::tokens::Device;
use crate::update::images::StackOpsError;

pub use actions::Control;
pub use server::{bind, serve};

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
    Apply(Box<crate::apply::ApplyReport>),
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
    pub link: Option<crate::replication::plant::LinkReport>,
    pub components: Vec<Component>,
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

/// The update agent's stack upgrades go through the daemon's own stack actions.
impl crate::update::images::StackOps for Daemon {
    fn status(&self) -> BoxFuture<'_, Result<crate::stack::StackReport, StackOpsError>> {
        Box::pin(async move {
            match self.ask(Request::StackStatus).await {
                Ok(Response::Stack(report)) => Ok(report),
                other => Err(stack_ops_error("status", other)),
            }
        })
    }

    fn events(&self) -> BoxFuture<'_, Result<Vec<crate::stack::StackEvent>, StackOpsError>> {
        Box::pin(async move {
            match self.ask(Request::StackEvents).await {
                Ok(Response::StackEvents { events }) => Ok(events),
                other => Err(stack_ops_error("events", other)),
            }
        })
    }

    fn apply(&self) -> BoxFuture<'_, Result<String, StackOpsError>> {
        Box::pin(async move {
            match self.ask(Request::StackApply).await {
                Ok(Response::Done { message }) => Ok(message),
                other => Err(stack_ops_error("apply", other)),
            }
        })
    }
}

/// What a stack request's answer other than the one it expects means for a [`StackOpsError`].
fn stack_ops_error(request: &'static str, answer: Result<Response, CallError>) -> StackOpsError {
    match answer {
        Ok(Response::Error { message }) => StackOpsError::Answered(message),
        Ok(other) => StackOpsError::Unexpected {
            request,
            answer: format!("{other:?}"),
        },
        Err(e) => StackOpsError::Unreachable(e.to_string()),
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
    ) -> Result<Option<(Option<crate::apply::Rewound>, u64)>, RewindError> {
        let request = Request::ApplyRewind { seq, backup, why };
        match self.ask(request).await {
            Ok(Response::Rewound {
                rewound,
                applied_seq,
            }) => Ok(Some((rewound, applied_seq))),
            Ok(Response::Error { message } | Response::Refused { message }) => {
                Err(RewindError::Answered(message))
            }
            Ok(other) => Err(RewindError::Unexpected(format!("{other:?}"))),
            Err(CallError::NotRunning(_)) => Ok(None),
            Err(e) => Err(RewindError::Asking(Box::new(e))),
        }
    }
}

/// The control socket of a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("plantd.sock")
}
