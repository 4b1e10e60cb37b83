//! Stack supervision: the plant's PostgreSQL, Redis and Odoo as Docker containers.
//!
//! The desired stack comes from `[stack]` ([`spec`]); the decisions are a pure function
//! ([`reconcile`]); this module is the thin driver that feeds it what Docker shows (a list every
//! second, and at once on any of the stack's container events) and what plantd's own probes find
//! ([`probe`]), and carries out its actions through bollard ([`docker`]). Docker being away is a
//! state like any other: reported, retried, and never in the way of the journal.

pub mod docker;
pub mod images;
pub mod ingress;
pub mod odoo_password;
pub mod probe;
pub mod reconcile;
pub mod spec;

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

type Reply<T> = oneshot::Sender<Result<T, String>>;

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

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| "the stack supervisor has stopped".to_string())?;
        // The supervisor does one thing at a time; a pull can hold it for minutes.
        match tokio::time::timeout(Duration::from_secs(300), rx).await {
            Ok(answer) => answer.map_err(|_| "the stack supervisor has stopped".to_string())?,
            Err(_) => Err("the stack supervisor is busy (pulling an image?); the request stays queued and is carried out, see `plantd stack events`".into()),
        }
    }

    pub async fn restart(&self, service: Service) -> Result<String, String> {
        self.ask(|r| Command::Restart(service, r)).await
    }
    pub async fn reset(&self, service: Service) -> Result<String, String> {
        self.ask(|r| Command::Reset(service, r)).await
    }
    pub async fn logs(&self, service: Service, tail: usize) -> Result<Vec<String>, String> {
        self.ask(|r| Command::Logs(service, tail, r)).await
    }
    pub async fn events(&self) -> Result<Vec<StackEvent>, String> {
        self.ask(Command::Events).await
    }
    pub async fn apply(&self, spec: StackSpec) -> Result<String, String> {
        self.ask(|r| Command::Apply(Box::new(spec), r)).await
    }
    pub async fn down(&self, delete_volumes: bool) -> Result<Vec<String>, String> {
        self.ask(|r| Command::Down(delete_volumes, r)).await
    }
    /// With a reason, stops `service` and keeps it stopped (across restarts of plantd too);
    /// without one, lets it run again.
    pub async fn hold(&self, service: Service, reason: Option<String>) -> Result<String, String> {
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
            Err(e) => Err(e),
        },
        Ok(false) => Ok(()),
        Err(e) => Err(e),
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

impl Supervisor {
    fn now(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut probes: mpsc::UnboundedReceiver<ProbeResult>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let wake = self.wake.clone();
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {}
                _ = wake.notified() => {}
                Some(command) = commands.recv() => self.command(command).await,
                Some(p) = probes.recv() => {
                    if !self.probed(p) {
                        continue;
                    }
                }
            }
            self.step().await;
        }
        if let Some(t) = self.events_task.take() {
            t.abort();
        }
        // The containers keep running: the plant's Odoo does not stop because plantd restarts.
    }

    /// Takes a probe result; true when the service's health changed.
    fn probed(&mut self, p: ProbeResult) -> bool {
        let now = self.now();
        let probe = self.desired.get(p.service).probe;
        let Some(tracker) = self.trackers.get_mut(&p.service) else {
            return false;
        };
        if tracker.generation != p.generation {
            return false;
        }
        let before = (tracker.health.clone(), tracker.eager());
        tracker.record(now, p.result, &probe);
        let after = (tracker.health.clone(), tracker.eager());
        if after.0 != before.0 {
            match &after.0 {
                Health::Unhealthy(why) => self.event(Some(p.service), "unhealthy", why.clone()),
                Health::Healthy => self.event(Some(p.service), "healthy", "probe passed".into()),
                Health::Busy(why) => self.event(Some(p.service), "busy", why.clone()),
                Health::Starting => {}
            }
        }
        after != before
    }

    fn event(&mut self, service: Option<Service>, event: &str, message: String) {
        tracing::info!(
            stack = %self.desired.name,
            service = service.map(|s| s.as_str()).unwrap_or("-"),
            event,
            %message,
            "stack"
        );
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(StackEvent {
            at: now_rfc3339(),
            service: service.map(|s| s.to_string()),
            event: event.to_string(),
            message,
        });
    }

    /// The engine, connecting (and subscribing to its events) when there is none.
    async fn engine(&mut self) -> Option<Engine> {
        if let Some(e) = &self.engine {
            return Some(e.clone());
        }
        match Engine::connect(self.docker_socket.as_deref()).await {
            Ok(engine) => {
                if self.engine_error.take().is_some() {
                    self.event(None, "docker", "the Docker engine answers again".into());
                }
                let events = engine.events(&self.desired.name);
                let wake = self.wake.clone();
                if let Some(t) = self.events_task.take() {
                    t.abort();
                }
                self.events_task = Some(tokio::spawn(async move {
                    futures_util::pin_mut!(events);
                    while let Some(e) = events.next().await {
                        wake.notify_one();
                        if e.is_err() {
                            break;
                        }
                    }
                }));
                self.engine = Some(engine.clone());
                if !self.conf_secured {
                    self.conf_secured = true;
                    // Beside the supervisor, not before its first look at the containers:
                    // reading a named image user makes a container, which takes a moment.
                    tokio::spawn(secure_odoo_conf(
                        engine.clone(),
                        self.desired.name.clone(),
                        self.desired.odoo_conf.0.clone(),
                        self.desired.get(Service::Odoo).image.clone(),
                    ));
                }
                Some(engine)
            }
            Err(e) => {
                self.engine_lost(e);
                None
            }
        }
    }

    fn engine_lost(&mut self, error: String) {
        self.engine = None;
        if self.engine_error.is_none() {
            self.event(
                None,
                "docker",
                format!("the Docker engine is unreachable: {error}; the journal keeps accepting transactions"),
            );
        }
        self.engine_error = Some(error);
        self.trackers.clear();
        self.seen.clear();
    }

    async fn step(&mut self) {
        let now = self.now();
        // A hold may also come from `plantd backup restore` run while no daemon ran (it leaves
        // the same marker): read them every time.
        self.held = held_services(&self.desired.dir);
        if let Some(engine) = self.engine().await {
            match engine.observe(&self.desired).await {
                Ok(seen) => {
                    self.absorb(seen, now);
                    if !self.adopted {
                        self.adopted = true;
                        self.adopt(now);
                    }
                    if !self.down {
                        self.judge_upgrades(now);
                        let observed = self
                            .seen
                            .iter()
                            .map(|(s, seen)| (*s, seen.observed.clone()))
                            .collect();
                        let health = self
                            .trackers
                            .iter()
                            .map(|(s, t)| (*s, t.health.clone()))
                            .collect();
                        let actions = reconcile::reconcile(
                            now,
                            &self.desired,
                            &observed,
                            &health,
                            &mut self.books,
                        );
                        for action in actions {
                            if !self.held.contains_key(&action.service()) {
                                self.execute(&engine, action, now).await;
                            }
                        }
                    }
                }
                Err(e) => self.engine_lost(e),
            }
        }
        self.publish();
    }

    /// Takes in what Docker shows.
    fn absorb(&mut self, seen: Vec<Seen>, now: u64) {
        self.seen.clear();
        for s in seen {
            let service = s.service;
            self.books.entry(service).or_default().seen = true;
            let running = matches!(s.observed.state, RunState::Running | RunState::Paused);
            match self.trackers.get(&service) {
                Some(t) if running && t.container == s.observed.id => {}
                _ if running => {
                    self.generation += 1;
                    self.trackers
                        .insert(service, Tracker::new(&s.observed.id, self.generation, now));
                }
                _ => {
                    self.trackers.remove(&service);
                }
            }
            let key = (s.observed.id.clone(), s.observed.state);
            if self
                .since
                .get(&service)
                .is_none_or(|(id, state, _)| (id.clone(), *state) != key)
            {
                self.since.insert(service, (key.0, key.1, now_rfc3339()));
            }
            self.seen.insert(service, s);
        }
        self.trackers.retain(|s, _| self.seen.contains_key(s));
    }

    async fn execute(&mut self, engine: &Engine, action: Action, now: u64) {
        let service = action.service();
        let book = self.books.entry(service).or_default();
        let counts = action.counts(book);
        let spec = self.desired.get(service).clone();
        let current = self.seen.get(&service).cloned();
        let (event, reason, result) = match action {
            Action::OpenBreaker { reason, .. } => {
                book.breaker = true;
                self.event(Some(service), "breaker_open", reason);
                return;
            }
            Action::Create { reason, .. } => ("create", reason, self.create(engine, &spec).await),
            Action::Start { reason, .. } => {
                let id = current.map(|c| c.observed.id).unwrap_or_default();
                ("start", reason, engine.start(&id).await)
            }
            Action::Restart { reason, .. } => {
                let c = current.expect("a restart is of an observed container");
                let paused = c.observed.state == RunState::Paused;
                (
                    "restart",
                    reason,
                    engine.restart(&c.observed.id, paused).await,
                )
            }
            Action::Recreate { reason, .. } => {
                let c = current.expect("a recreate is of an observed container");
                // The new image first: a missing image must not cost the running container.
                let result = match engine.ensure_image(&spec).await {
                    Ok(()) => match engine
                        .remove(&c.observed.id, c.observed.state == RunState::Paused)
                        .await
                    {
                        Ok(()) => self.create(engine, &spec).await,
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                ("recreate", reason, result)
            }
        };
        let book = self.books.entry(service).or_default();
        if counts {
            book.record_restart(now);
        }
        self.trackers.remove(&service);
        match result {
            Ok(()) => {
                self.errors.remove(&service);
                self.event(Some(service), event, reason);
            }
            Err(e) => {
                if !counts {
                    book.not_before = now + 5_000;
                }
                if self.errors.get(&service) != Some(&e) {
                    self.event(
                        Some(service),
                        &format!("{event}_failed"),
                        format!("{reason}: {e}"),
                    );
                }
                self.errors.insert(service, e);
            }
        }
    }

    async fn create(&mut self, engine: &Engine, spec: &ServiceSpec) -> Result<(), String> {
        if self.desired.fresh_secrets {
            // New passwords next to an old database would lock Odoo and the probes out.
            for volume in self
                .desired
                .get(Service::Postgres)
                .mounts
                .iter()
                .filter(|m| m.is_volume())
            {
                if engine.has_volume(&self.desired, &volume.source).await? {
                    return Err(format!(
                        "DATA_DIR/stack/secrets.json was missing, so new passwords were made, but volume {} already holds a database made with the old ones; put secrets.json back from a backup of the data directory and restart plantd",
                        volume.source
                    ));
                }
            }
        }
        engine
            .ensure_network_and_volumes(&self.desired, spec)
            .await?;
        self.desired.fresh_secrets = false;
        engine.ensure_image(spec).await?;
        let owner = if spec.service == Service::Odoo {
            engine.image_user(&self.desired.name, &spec.image).await?
        } else {
            None
        };
        self.desired
            .write_files(owner)
            .map_err(|e| format!("writing Odoo's config: {e:#}"))?;
        if spec.service == Service::Odoo {
            self.ensure_odoo_database(engine, spec).await?;
            // Not a reason to keep Odoo down; said loudly instead.
            if let Err(e) = self.secure_odoo_admin().await {
                tracing::warn!(error = %e, "could not check the password of Odoo's admin login");
                self.event(Some(Service::Odoo), "admin_password_failed", e);
            }
        }
        let id = engine.create(&self.desired, spec).await?;
        engine.start(&id).await
    }

    /// Before Odoo's first start, its database must exist: with the database manager off
    /// (`list_db = False`) nobody could create it later. `odoo -i base,plantd_apply
    /// --stop-after-init` runs once, in a container made like Odoo's (the same image, config
    /// and filestore).
    async fn ensure_odoo_database(
        &mut self,
        engine: &Engine,
        spec: &ServiceSpec,
    ) -> Result<(), String> {
        let db = self.desired.odoo_database.clone();
        let ip = self
            .seen
            .get(&Service::Postgres)
            .and_then(|s| s.ip)
            .ok_or("PostgreSQL has no address on the stack network yet")?;
        if probe::database_exists(ip, &self.desired.secrets, &db).await? {
            return Ok(());
        }
        self.event(
            Some(Service::Odoo),
            "init",
            format!("creating the Odoo database {db} (odoo -i base,plantd_apply, once)"),
        );
        let cmd = [
            "odoo",
            "-d",
            &db,
            "-i",
            // plantd_apply (on the addons path from DATA_DIR/stack/addons) lets the apply send
            // a batch in one call.
            "base,plantd_apply",
            "--without-demo",
            "all",
            "--stop-after-init",
        ]
        .map(String::from)
        .to_vec();
        engine
            .run_once(&self.desired, spec, cmd, Duration::from_secs(15 * 60))
            .await
            .map_err(|e| format!("creating the Odoo database {db}: {e}"))?;
        self.event(
            Some(Service::Odoo),
            "init_done",
            format!("database {db} is ready"),
        );
        Ok(())
    }

    /// Odoo creates its database with the login `admin`, password `admin`, reachable through
    /// the ingress. While that is still its password, plantd replaces it with the generated one
    /// in secrets.json (`plantd stack secret odoo-admin` prints it), writing the hash Odoo
    /// would write over its own connection to PostgreSQL. A password someone chose is left
    /// alone.
    async fn secure_odoo_admin(&mut self) -> Result<(), String> {
        let db = self.desired.odoo_database.clone();
        let ip = self
            .seen
            .get(&Service::Postgres)
            .and_then(|s| s.ip)
            .ok_or("PostgreSQL has no address on the stack network yet")?;
        let secrets = self.desired.secrets.clone();
        let timeout = Duration::from_secs(10);
        let pg = probe::Pg::connect(ip, &secrets, &db, timeout).await?;
        let result: Result<Option<()>, String> = async {
            let row = pg
                .client
                .query_opt(
                    "SELECT id, COALESCE(password, '') FROM res_users WHERE login = 'admin'",
                    &[],
                )
                .await
                .map_err(|e| format!("reading the admin login of {db}: {e}"))?;
            let Some(row) = row else {
                return Ok(None);
            };
            let (id, stored): (i32, String) = (row.get(0), row.get(1));
            let login = secrets.odoo_admin_login_password.clone();
            let new_hash = tokio::task::spawn_blocking(move || {
                if odoo_password::verify("admin", &stored) {
                    odoo_password::hash(&login).map(Some)
                } else {
                    Ok(None)
                }
            })
            .await
            .map_err(|e| format!("hashing: {e}"))?
            .map_err(|e| format!("hashing: {e:#}"))?;
            let Some(new_hash) = new_hash else {
                return Ok(None);
            };
            pg.client
                .execute(
                    "UPDATE res_users SET password = $1 WHERE id = $2",
                    &[&new_hash, &id],
                )
                .await
                .map_err(|e| format!("setting the admin login's password in {db}: {e}"))?;
            Ok(Some(()))
        }
        .await;
        pg.close().await;
        if result?.is_some() {
            self.event(
                Some(Service::Odoo),
                "admin_password",
                format!("the login admin of {db} had Odoo's default password; it now has the generated one (`plantd stack secret odoo-admin` prints it)"),
            );
        }
        Ok(())
    }

    fn judge_upgrades(&mut self, now: u64) {
        let deadline = self.upgrade_deadline.as_millis() as u64;
        let services: Vec<Service> = self.upgrades.keys().copied().collect();
        for service in services {
            let new_hash = self.desired.get(service).hash.clone();
            let on_new = self
                .seen
                .get(&service)
                .is_some_and(|s| s.observed.spec == new_hash);
            let upgrade = self.upgrades.get_mut(&service).expect("listed");
            if on_new && upgrade.started.is_none() {
                upgrade.started = Some(now);
            }
            let health = self
                .trackers
                .get(&service)
                .filter(|t| on_new && t.probed)
                .map(|t| &t.health);
            let book = self.books.entry(service).or_default();
            let verdict = reconcile::judge_upgrade(
                now,
                upgrade.applied,
                upgrade.started,
                deadline,
                health,
                book.total_restarts - upgrade.restarts_at_start,
                book.breaker,
            );
            match verdict {
                UpgradeVerdict::Wait => {}
                UpgradeVerdict::Commit => {
                    let image = self.desired.get(service).image.clone();
                    self.upgrades.remove(&service);
                    self.event(Some(service), "upgrade_done", format!("healthy on {image}"));
                }
                UpgradeVerdict::RollBack(why) => {
                    book.reset();
                    let upgrade = self.upgrades.remove(&service).expect("present");
                    let failed = self.desired.get(service).image.clone();
                    let previous = upgrade.previous.image.clone();
                    *self.desired.get_mut(service) = upgrade.previous;
                    self.event(
                        Some(service),
                        "rollback",
                        format!("{failed}: {why}; going back to {previous}"),
                    );
                }
            }
        }
    }

    async fn command(&mut self, command: Command) {
        match command {
            Command::Events(reply) => {
                let _ = reply.send(Ok(self.events.iter().cloned().collect()));
            }
            Command::Reset(service, reply) => {
                let book = self.books.entry(service).or_default();
                let was_open = book.breaker;
                book.reset();
                self.errors.remove(&service);
                let message = if was_open {
                    format!("closed the crash-loop breaker of {service}; plantd restarts it when needed")
                } else {
                    format!("the breaker of {service} was not open; its restart count is cleared")
                };
                self.event(Some(service), "reset", message.clone());
                let _ = reply.send(Ok(message));
            }
            Command::Restart(service, reply) => {
                let result = self.restart_now(service).await;
                let _ = reply.send(result);
            }
            Command::Logs(service, tail, reply) => {
                let result = match (self.engine().await, self.seen.get(&service)) {
                    (None, _) => Err(self.unreachable()),
                    (Some(_), None) => Err(format!("{service} has no container")),
                    (Some(engine), Some(seen)) => engine.logs(&seen.name, tail).await,
                };
                let _ = reply.send(result);
            }
            Command::Apply(spec, reply) => {
                let result = self.apply(*spec);
                let _ = reply.send(result);
            }
            Command::Down(delete_volumes, reply) => {
                let result = match self.engine().await {
                    None => Err(self.unreachable()),
                    Some(engine) => {
                        self.down = true;
                        self.upgrades.clear();
                        let marker = stack_down_marker(&self.desired.dir);
                        if let Err(e) =
                            crate::fsutil::write_atomic(&marker, b"taken down by an admin\n", 0o600)
                        {
                            tracing::warn!(error = %e, "could not record that the stack is down");
                        }
                        let r = engine.down(&self.desired, delete_volumes).await;
                        // What comes back up later is a fresh start, not a crash.
                        self.books.clear();
                        self.trackers.clear();
                        let what = match &r {
                            Ok(done) => done.join("; "),
                            Err(e) => format!("failed: {e}"),
                        };
                        self.event(None, "down", what);
                        r
                    }
                };
                let _ = reply.send(result);
            }
            Command::Hold(service, reason, reply) => {
                let result = self.hold(service, reason).await;
                let _ = reply.send(result);
            }
        }
        self.publish();
    }

    async fn hold(&mut self, service: Service, reason: Option<String>) -> Result<String, String> {
        let Some(engine) = self.engine().await else {
            return Err(self.unreachable());
        };
        let marker = hold_marker(&self.desired.dir, service);
        let seen = self.seen.get(&service).cloned();
        match reason {
            Some(why) => {
                crate::fsutil::write_atomic(&marker, why.as_bytes(), 0o600)
                    .map_err(|e| format!("recording the hold: {e:#}"))?;
                self.held.insert(service, why.clone());
                self.trackers.remove(&service);
                if let Some(seen) = seen {
                    engine.stop(&seen.observed.id).await.map_err(|e| {
                        format!("{service} is held, but stopping {} failed: {e}", seen.name)
                    })?;
                }
                self.event(Some(service), "hold", why);
                Ok(format!("{service} is stopped and held"))
            }
            None => {
                if self.held.remove(&service).is_none() {
                    return Ok(format!("{service} was not held"));
                }
                if let Err(e) = std::fs::remove_file(&marker) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(format!("removing {}: {e}", marker.display()));
                    }
                }
                // Stopped on purpose: starting it again is not a crash.
                self.books.entry(service).or_default().reset();
                if let Some(seen) = seen {
                    if !matches!(seen.observed.state, RunState::Running | RunState::Paused) {
                        engine.start(&seen.observed.id).await.map_err(|e| {
                            format!(
                                "{service} is released, but starting {} failed: {e}",
                                seen.name
                            )
                        })?;
                    }
                }
                self.event(Some(service), "release", "runs again".into());
                Ok(format!("{service} is released and runs again"))
            }
        }
    }

    fn unreachable(&self) -> String {
        format!(
            "the Docker engine is unreachable: {}",
            self.engine_error.as_deref().unwrap_or("not connected")
        )
    }

    async fn restart_now(&mut self, service: Service) -> Result<String, String> {
        let Some(engine) = self.engine().await else {
            return Err(self.unreachable());
        };
        if let Some(why) = self.held.get(&service) {
            return Err(format!(
                "{service} is held ({why}); `plantd stack release {service}` first"
            ));
        }
        let Some(seen) = self.seen.get(&service).cloned() else {
            return Err(format!("{service} has no container yet"));
        };
        let paused = seen.observed.state == RunState::Paused;
        let result = match seen.observed.state {
            RunState::Running | RunState::Paused => engine.restart(&seen.observed.id, paused).await,
            _ => engine.start(&seen.observed.id).await,
        };
        self.trackers.remove(&service);
        match result {
            Ok(()) => {
                self.event(Some(service), "restart", "asked by an admin".into());
                Ok(format!("restarted {service} ({})", seen.name))
            }
            Err(e) => {
                self.event(
                    Some(service),
                    "restart_failed",
                    format!("asked by an admin: {e}"),
                );
                Err(format!("restarting {service}: {e}"))
            }
        }
    }

    /// Starts judging an upgrade of `previous.service` away from `previous`.
    fn begin_upgrade(&mut self, previous: ServiceSpec, now: u64) {
        let service = previous.service;
        let book = self.books.entry(service).or_default();
        book.reset();
        let restarts_at_start = book.total_restarts;
        self.upgrades.insert(
            service,
            Upgrade {
                previous,
                applied: now,
                started: None,
                restarts_at_start,
            },
        );
    }

    /// On the first look at Docker: a container on another image than plant.toml names was
    /// changed while plantd was stopped, and is upgraded with the same health gate as by
    /// `stack apply`, rolling back to the image it ran.
    fn adopt(&mut self, now: u64) {
        let mut found = Vec::new();
        for (service, seen) in &self.seen {
            let desired = self.desired.get(*service);
            if seen.observed.spec != desired.hash
                && seen.image != desired.image
                && !seen.image.is_empty()
            {
                found.push((desired.with_image(&seen.image), desired.image.clone()));
            }
        }
        for (previous, image) in found {
            let service = previous.service;
            self.event(
                Some(service),
                "apply",
                format!(
                    "upgrading {} -> {image} (plant.toml changed while plantd was stopped); rolls back unless healthy within {} s",
                    previous.image,
                    self.upgrade_deadline.as_secs()
                ),
            );
            self.begin_upgrade(previous, now);
        }
    }

    /// Takes a new desired stack; a changed image is an upgrade with a health gate.
    fn apply(&mut self, new: StackSpec) -> Result<String, String> {
        let now = self.now();
        if new.name != self.desired.name {
            return Err(format!(
                "stack.name changed from {} to {}: that would be a new, empty stack beside the running one; put the old name back (a rename needs `plantd stack down` first, then a restart of plantd)",
                self.desired.name, new.name
            ));
        }
        let mut changes = Vec::new();
        for spec in &new.services {
            let service = spec.service;
            let old = self.desired.get(service);
            if old.hash == spec.hash {
                continue;
            }
            if old.image != spec.image {
                changes.push((
                    service,
                    format!(
                        "{service}: upgrading {} -> {}; rolls back unless healthy within {} s",
                        old.image,
                        spec.image,
                        self.upgrade_deadline.as_secs()
                    ),
                ));
                let previous = self
                    .upgrades
                    .remove(&service)
                    .map(|u| u.previous)
                    .unwrap_or_else(|| old.clone());
                self.begin_upgrade(previous, now);
            } else {
                changes.push((service, format!("{service}: recreating (its spec changed)")));
                self.books.entry(service).or_default().reset();
            }
        }
        let was_down = self.down;
        self.desired = new;
        self.down = false;
        let _ = std::fs::remove_file(stack_down_marker(&self.desired.dir));
        for (service, c) in &changes {
            self.event(Some(*service), "apply", c.clone());
        }
        Ok(match (changes.is_empty(), was_down) {
            (true, false) => "no changes".to_string(),
            (true, true) => "bringing the stack up again".to_string(),
            (false, _) => changes
                .iter()
                .map(|(_, c)| c.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        })
    }

    fn publish(&mut self) {
        let mut services = Vec::new();
        let mut targets = BTreeMap::new();
        let mut summary = Vec::new();
        let mut worst = State::Ok;
        for spec in &self.desired.services {
            let service = spec.service;
            let seen = self.seen.get(&service);
            let tracker = self.trackers.get(&service);
            let book = self.books.get(&service).cloned().unwrap_or_default();
            let (health, why) = match (seen, tracker) {
                (None, _) if self.engine_error.is_some() => ("unknown", String::new()),
                (_, Some(t)) => match &t.health {
                    Health::Healthy => ("healthy", String::new()),
                    Health::Starting => ("starting", String::new()),
                    Health::Busy(why) => ("busy", why.clone()),
                    Health::Unhealthy(why) => ("unhealthy", why.clone()),
                },
                (_, None) => ("unhealthy", "not running".to_string()),
            };
            let breaker = "crash loop: the breaker is open; `plantd stack reset SERVICE` after fixing the cause";
            let detail = match (self.errors.get(&service), book.breaker) {
                (Some(e), true) => format!("{breaker}; last error: {e}"),
                (None, true) => breaker.to_string(),
                (Some(e), false) => e.clone(),
                (None, false) => why,
            };
            let held = self.held.get(&service).cloned();
            let (health, detail) = match &held {
                Some(why) => (
                    "held",
                    format!("kept stopped on purpose: {why} (`plantd stack release {service}` lets it run)"),
                ),
                None => (health, detail),
            };
            let state = match health {
                _ if book.breaker => State::Unhealthy,
                // Working, slowly: nothing for an admin or an update's gate to act on.
                "healthy" | "busy" => State::Ok,
                "starting" => State::Starting,
                _ => State::Unhealthy,
            };
            worst = worse(worst, state);
            summary.push(format!("{service} {health}"));
            if let (Some(seen), Some(t)) = (seen, tracker) {
                if let Some(ip) = seen.ip {
                    targets.insert(
                        service,
                        Target {
                            container: seen.observed.id.clone(),
                            generation: t.generation,
                            ip,
                            probe: spec.probe,
                            eager: t.eager(),
                            odoo: match service {
                                Service::Odoo => probe::OdooContext {
                                    postgres: self
                                        .seen
                                        .get(&Service::Postgres)
                                        .filter(|p| p.observed.state == RunState::Running)
                                        .and_then(|p| p.ip),
                                    database: self.desired.odoo_database.clone(),
                                    paused: seen.observed.state == RunState::Paused,
                                },
                                _ => probe::OdooContext::default(),
                            },
                        },
                    );
                }
            }
            services.push(ServiceStatus {
                service: service.to_string(),
                state: match seen {
                    Some(s) => s.observed.state.as_str(),
                    None if self.engine_error.is_some() => "unknown",
                    None => "missing",
                }
                .to_string(),
                health: health.to_string(),
                image: seen.map_or(spec.image.clone(), |s| s.image.clone()),
                restarts: book.total_restarts,
                since: self
                    .since
                    .get(&service)
                    .filter(|_| seen.is_some())
                    .map(|s| s.2.clone()),
                container: seen.map(|s| s.name.clone()),
                id: seen.map(|s| s.observed.id.chars().take(12).collect()),
                breaker: book.breaker,
                detail,
                held,
            });
        }
        let odoo_ip = self
            .seen
            .get(&Service::Odoo)
            .filter(|s| s.observed.state == RunState::Running)
            .and_then(|s| s.ip);
        self.odoo_tx.send_if_modified(|ip| {
            let changed = *ip != odoo_ip;
            *ip = odoo_ip;
            changed
        });
        self.targets_tx.send_if_modified(|t| {
            let changed = *t != targets;
            *t = targets;
            changed
        });
        let docker = match &self.engine_error {
            Some(e) => format!("unreachable: {e}"),
            None => "reachable".to_string(),
        };
        match (&self.engine_error, self.down) {
            (Some(e), _) => self.components.set(
                "stack",
                State::Unhealthy,
                format!("the Docker engine is unreachable ({e}); transactions are still accepted"),
            ),
            (None, true) => self.components.set(
                "stack",
                State::Unhealthy,
                "taken down by an admin (`plantd stack apply` brings it back)",
            ),
            (None, false) => self.components.set("stack", worst, summary.join(", ")),
        }
        let report = StackReport {
            name: self.desired.name.clone(),
            docker,
            down: self.down,
            services,
        };
        self.report_tx.send_if_modified(|r| {
            let changed = *r != report;
            *r = report;
            changed
        });
    }
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
