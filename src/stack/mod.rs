//! Stack supervision: the plant's PostgreSQL, Redis and Odoo as Docker containers.
//!
//! The desired stack comes from `[stack]` ([`spec`]); the decisions are a pure function
//! ([`reconcile`]); this module is the thin driver that feeds it what Docker shows (a list every
//! second, and at once on any of the stack's container events) and what plantd's own probes find
//! ([`probe`]), and carries out its actions through bollard ([`docker`]). Docker being away is a
//! state like any other: reported, retried, and never in the way of the journal.

pub mod bundle;
mod commands;
pub mod docker;
pub mod ingress;
pub mod odoo_password;
mod odoo_setup;
pub mod probe;
pub mod reconcile;
pub mod spec;
mod supervisor;

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::config::ProbeConfig;
use crate::health::{Health as Components, State};
use docker::{Engine, Seen};
use reconcile::{Action, Book, Health, Outcome, RunState, Tracker, UpgradeVerdict};
use spec::{Secrets, Service, ServiceSpec, StackSpec};

/// Events kept for `plantd stack events`.
const EVENTS_KEPT: usize = 500;

/// One service, as `plantd stack status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub service: String,
    /// Docker's state of the container, or "missing".
    pub state: String,
    /// plantd's probe verdict: healthy, busy (not answering, but working), starting, unhealthy,
    /// held or unknown.
    pub health: String,
    pub image: String,
    /// Restarts by plantd since the daemon started.
    pub restarts: u64,
    /// When the container entered its current state (RFC 3339).
    pub since: Option<String>,
    /// The container's name.
    pub container: Option<String>,
    /// The container's id (12 characters, as `docker ps` shows it).
    pub id: Option<String>,
    /// Whether the crash-loop breaker is open.
    pub breaker: bool,
    /// Why it is not healthy, or the last error, if any.
    pub detail: String,
    /// Why plantd keeps it stopped on purpose (`plantd stack hold`, a restore), if it does.
    #[serde(default)]
    pub held: Option<String>,
}

/// Something the supervisor did or saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackEvent {
    pub at: String,
    pub service: Option<String>,
    pub event: String,
    pub message: String,
}

/// The whole stack, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackReport {
    pub name: String,
    /// "reachable", or why the Docker engine is not.
    pub docker: String,
    /// Whether an admin took the stack down (`plantd stack down`).
    pub down: bool,
    pub services: Vec<ServiceStatus>,
}

/// What went wrong supervising the stack, or carrying out what an admin asked of it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the stack supervisor has stopped")]
    SupervisorStopped,
    #[error("the stack supervisor is busy (pulling an image?); the request stays queued and is carried out, see `plantd stack events`")]
    SupervisorBusy,
    /// No engine to ask; `why` is the last connection error, or "not connected".
    #[error("the Docker engine is unreachable: {why}")]
    EngineUnreachable { why: String },
    #[error("{service} has no container")]
    NoContainer { service: Service },
    #[error("{service} has no container yet")]
    NoContainerYet { service: Service },
    #[error("{service} is held ({why}); `plantd stack release {service}` first")]
    Held { service: Service, why: String },
    #[error("restarting {service}: {source}")]
    Restart {
        service: Service,
        #[source]
        source: docker::Error,
    },
    #[error("recording the hold: {0:#}")]
    RecordHold(#[source] anyhow::Error),
    #[error("removing {}: {source}", .path.display())]
    RemoveHoldMarker {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{service} is held, but stopping {container} failed: {source}")]
    HeldButNotStopped {
        service: Service,
        container: String,
        #[source]
        source: docker::Error,
    },
    #[error("{service} is released, but starting {container} failed: {source}")]
    ReleasedButNotStarted {
        service: Service,
        container: String,
        #[source]
        source: docker::Error,
    },
    #[error("stack.name changed from {from} to {to}: that would be a new, empty stack beside the running one; put the old name back (a rename needs `plantd stack down` first, then a restart of plantd)")]
    Renamed { from: String, to: String },
    #[error("DATA_DIR/stack/secrets.json was missing, so new passwords were made, but volume {volume} already holds a database made with the old ones; put secrets.json back from a backup of the data directory and restart plantd")]
    SecretsLost { volume: String },
    #[error("writing Odoo's config: {0:#}")]
    WriteConfig(#[source] anyhow::Error),
    #[error("PostgreSQL has no address on the stack network yet")]
    NoPostgresAddress,
    #[error("creating the Odoo database {database}: {source}")]
    CreateDatabase {
        database: String,
        #[source]
        source: docker::Error,
    },
    #[error("reading the admin login of {database}: {source}")]
    ReadAdminLogin {
        database: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("hashing: {0}")]
    HashTask(#[source] tokio::task::JoinError),
    #[error("hashing: {0:#}")]
    Hash(#[source] anyhow::Error),
    #[error("setting the admin login's password in {database}: {source}")]
    SetAdminPassword {
        database: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error(transparent)]
    Docker(#[from] docker::Error),
    #[error(transparent)]
    Probe(#[from] probe::Error),
}

type Reply<T> = oneshot::Sender<Result<T, Error>>;

enum Command {
    Restart(Service, Reply<String>),
    Reset(Service, Reply<String>),
    Logs(Service, usize, Reply<Vec<String>>),
    Events(Reply<Vec<StackEvent>>),
    Apply(Box<StackSpec>, Reply<String>),
    Down(bool, Reply<Vec<String>>),
    Hold(Service, Option<String>, Reply<String>),
}

/// The handle the daemon, its control socket and the ingress hold.
#[derive(Clone)]
pub struct Stack {
    tx: mpsc::Sender<Command>,
    report: watch::Receiver<StackReport>,
    /// Odoo's address on the stack's network, while it runs; the ingress proxies to it.
    pub odoo: watch::Receiver<Option<IpAddr>>,
}

impl Stack {
    pub fn report(&self) -> StackReport {
        self.report.borrow().clone()
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| Error::SupervisorStopped)?;
        // The supervisor does one thing at a time; a pull can hold it for minutes.
        match tokio::time::timeout(Duration::from_secs(300), rx).await {
            Ok(answer) => answer.map_err(|_| Error::SupervisorStopped)?,
            Err(_) => Err(Error::SupervisorBusy),
        }
    }

    pub async fn restart(&self, service: Service) -> Result<String, Error> {
        self.ask(|r| Command::Restart(service, r)).await
    }
    pub async fn reset(&self, service: Service) -> Result<String, Error> {
        self.ask(|r| Command::Reset(service, r)).await
    }
    pub async fn logs(&self, service: Service, tail: usize) -> Result<Vec<String>, Error> {
        self.ask(|r| Command::Logs(service, tail, r)).await
    }
    pub async fn events(&self) -> Result<Vec<StackEvent>, Error> {
        self.ask(Command::Events).await
    }
    pub async fn apply(&self, spec: StackSpec) -> Result<String, Error> {
        self.ask(|r| Command::Apply(Box::new(spec), r)).await
    }
    pub async fn down(&self, delete_volumes: bool) -> Result<Vec<String>, Error> {
        self.ask(|r| Command::Down(delete_volumes, r)).await
    }
    /// With a reason, stops `service` and keeps it stopped (across restarts of plantd too);
    /// without one, lets it run again.
    pub async fn hold(&self, service: Service, reason: Option<String>) -> Result<String, Error> {
        self.ask(|r| Command::Hold(service, reason, r)).await
    }
}

/// Present while a service is held; holds the reason.
pub fn hold_marker(stack_dir: &std::path::Path, service: Service) -> PathBuf {
    stack_dir.join(format!("held-{service}"))
}

/// The services held in a stack directory, with why.
fn held_services(stack_dir: &std::path::Path) -> BTreeMap<Service, String> {
    Service::ALL
        .into_iter()
        .filter_map(|s| {
            let why = std::fs::read_to_string(hold_marker(stack_dir, s)).ok()?;
            Some((s, why.trim().to_string()))
        })
        .collect()
}

/// Where a service's probe should look.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    container: String,
    generation: u64,
    ip: IpAddr,
    probe: ProbeConfig,
    eager: bool,
    /// For Odoo: what tells busy from hung.
    odoo: probe::OdooContext,
}

struct ProbeResult {
    service: Service,
    generation: u64,
    result: Outcome,
}

struct Upgrade {
    previous: ServiceSpec,
    applied: u64,
    /// When the container on the new image was first seen.
    started: Option<u64>,
    restarts_at_start: u64,
}

/// `plantd stack down` while plantd is not running: the same as the daemon does (the marker
/// first, so that the next `plantd up` keeps the stack down, then the containers and network,
/// the volumes only when asked), straight to the Docker engine.
pub async fn down_without_daemon(
    config: &crate::config::StackConfig,
    data_dir: &std::path::Path,
    delete_volumes: bool,
) -> anyhow::Result<Vec<String>> {
    let desired = spec::build(config, data_dir)?;
    let engine = docker::Engine::connect(config.docker_socket.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("the Docker engine is unreachable: {e}"))?;
    let marker = stack_down_marker(&desired.dir);
    crate::fsutil::write_atomic(&marker, b"taken down by an admin\n", 0o600)?;
    Ok(engine.down(&desired, delete_volumes).await?)
}

/// Present while an admin has taken the stack down, so that a restart of plantd keeps it down.
fn stack_down_marker(dir: &std::path::Path) -> PathBuf {
    dir.join("down")
}

/// Starts supervising `desired` until `stop` turns true.
pub fn start(
    desired: StackSpec,
    docker_socket: Option<PathBuf>,
    upgrade_deadline: Duration,
    components: Arc<Components>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Stack> {
    let (tx, rx) = mpsc::channel(16);
    let (report_tx, report) = watch::channel(StackReport {
        name: desired.name.clone(),
        docker: "not checked yet".into(),
        down: false,
        services: vec![],
    });
    let (odoo_tx, odoo) = watch::channel(None);
    let (targets_tx, targets) = watch::channel(BTreeMap::new());
    let (probe_tx, probe_rx) = mpsc::unbounded_channel();
    let http = probe::http_client()?;
    for service in Service::ALL {
        tokio::spawn(probe_loop(
            service,
            desired.secrets.clone(),
            http.clone(),
            targets.clone(),
            probe_tx.clone(),
            stop.clone(),
        ));
    }
    components.set("stack", State::Starting, "connecting to the Docker engine");
    let dir = desired.dir.clone();
    let supervisor = Supervisor {
        desired,
        docker_socket,
        upgrade_deadline,
        engine: None,
        engine_error: None,
        events_task: None,
        wake: Arc::new(Notify::new()),
        clock: Instant::now(),
        books: BTreeMap::new(),
        trackers: BTreeMap::new(),
        seen: BTreeMap::new(),
        since: BTreeMap::new(),
        errors: BTreeMap::new(),
        events: VecDeque::new(),
        upgrades: BTreeMap::new(),
        adopted: false,
        conf_secured: false,
        generation: 0,
        down: stack_down_marker(&dir).exists(),
        held: held_services(&dir),
        report_tx,
        odoo_tx,
        targets_tx,
        components,
    };
    tokio::spawn(supervisor.run(rx, probe_rx, stop));
    Ok(Stack { tx, report, odoo })
}

/// Odoo's config file as an older plantd left it (0644, root's) becomes 0600 and its
/// image user's, once per start; a new one is written that way when its container is made.
async fn secure_odoo_conf(engine: Engine, stack: String, path: PathBuf, image: String) {
    if !path.exists() {
        return;
    }
    let handed = match engine.has_image(&image).await {
        Ok(true) => match engine.image_user(&stack, &image).await {
            Ok(owner) => spec::hand_to(&path, owner).map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.to_string()),
        },
        Ok(false) => Ok(()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = handed {
        tracing::warn!(path = %path.display(), error = %e, "could not make Odoo's config file private to Odoo's user");
    }
}

async fn probe_loop(
    service: Service,
    secrets: Secrets,
    http: reqwest::Client,
    targets: watch::Receiver<BTreeMap<Service, Target>>,
    results: mpsc::UnboundedSender<ProbeResult>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let target = targets.borrow().get(&service).cloned();
        let wait = match &target {
            Some(t) if !t.eager => t.probe.interval,
            _ => Duration::from_secs(1),
        };
        if let Some(t) = target {
            let result =
                probe::probe_outcome(service, t.ip, &secrets, &http, t.probe.timeout, &t.odoo)
                    .await;
            let sent = results.send(ProbeResult {
                service,
                generation: t.generation,
                result,
            });
            if sent.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

struct Supervisor {
    desired: StackSpec,
    docker_socket: Option<PathBuf>,
    upgrade_deadline: Duration,
    engine: Option<Engine>,
    engine_error: Option<String>,
    events_task: Option<tokio::task::JoinHandle<()>>,
    wake: Arc<Notify>,
    clock: Instant,
    books: BTreeMap<Service, Book>,
    trackers: BTreeMap<Service, Tracker>,
    seen: BTreeMap<Service, Seen>,
    /// (container, state) and when it was first seen so.
    since: BTreeMap<Service, (String, RunState, String)>,
    errors: BTreeMap<Service, String>,
    events: VecDeque<StackEvent>,
    upgrades: BTreeMap<Service, Upgrade>,
    /// Whether the containers found at start were compared with plant.toml.
    adopted: bool,
    /// Whether Odoo's config file was made private to its user since this start.
    conf_secured: bool,
    /// Numbers the trackers, so that a late probe result finds its own.
    generation: u64,
    down: bool,
    /// Services kept stopped on purpose, with why.
    held: BTreeMap<Service, String>,
    report_tx: watch::Sender<StackReport>,
    odoo_tx: watch::Sender<Option<IpAddr>>,
    targets_tx: watch::Sender<BTreeMap<Service, Target>>,
    components: Arc<Components>,
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn worse(a: State, b: State) -> State {
    let rank = |s: State| match s {
        State::Ok => 0,
        State::Starting => 1,
        State::Unhealthy => 2,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;

    /// The messages are the ones plantd answered with when its errors were strings.
    #[test]
    fn error_messages_are_as_before() {
        assert_eq!(
            Error::EngineUnreachable {
                why: "not connected".into()
            }
            .to_string(),
            "the Docker engine is unreachable: not connected"
        );
        assert_eq!(
            Error::Held {
                service: Service::Odoo,
                why: "restore".into()
            }
            .to_string(),
            "odoo is held (restore); `plantd stack release odoo` first"
        );
        let engine = docker::Error::NoAddress {
            container: "plant-odoo".into(),
            network: "plant".into(),
        };
        assert_eq!(
            Error::Restart {
                service: Service::Odoo,
                source: engine,
            }
            .to_string(),
            "restarting odoo: plant-odoo has no address on plant; is it running?"
        );
        assert_eq!(
            Error::from(docker::Error::ImageMissing {
                image: "odoo:18.0".into()
            })
            .to_string(),
            "image odoo:18.0 is not on this machine; build it with images/build-local.sh or load a bundle with `plantd images load`"
        );
        assert_eq!(
            Error::RemoveHoldMarker {
                path: PathBuf::from("/d/held-odoo"),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            }
            .to_string(),
            "removing /d/held-odoo: permission denied"
        );
        assert_eq!(
            Error::from(probe::Error::NoAnswer {
                timeout: Duration::from_millis(1500)
            })
            .to_string(),
            "no answer within 1500 ms"
        );
        assert_eq!(
            probe::Error::RedisAnswer {
                answer: "-ERR".into()
            }
            .to_string(),
            "PING answered \"-ERR\""
        );
        assert_eq!(
            Service::parse("web").unwrap_err().to_string(),
            "no service \"web\"; the services are postgres, redis and odoo"
        );
    }
}
