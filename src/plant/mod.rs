//! `plantd up`: the plant daemon, the composition root of the plant side.
//!
//! Start order: data directory (locked, so two daemons never share a journal), journal, device
//! tokens, TLS, listeners, control socket; then systemd hears "ready". The journal is the core:
//! if it cannot open, the daemon does not start. Every later component is optional: one that
//! cannot start is reported unhealthy and the journal keeps accepting transactions.
//! Shutdown (SIGTERM, SIGINT): stop accepting, finish requests in flight (10 s at most), let the
//! journal writer commit what is queued, exit.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

use crate::config::PlantConfig;
use crate::control::{self, Control};
use crate::fsutil::{create_private_dir, lock_file};
use crate::health::{Health, State};
use crate::ingest::{self, Api};
use crate::journal::{self, Journal};
use crate::shutdown::Signals;
use crate::tokens::Tokens;

mod private;
mod remote;
mod replication;

use crate::config::Reload;

/// A verified release the daemon stopped for, with what was healthy before it stopped.
pub struct Update {
    pub candidate: crate::update::agent::Candidate,
    pub healthy_before: Vec<String>,
}

/// Runs the plant daemon until SIGTERM or SIGINT (`None`), or until a verified release
/// arrives (`Some`: the daemon has stopped, and the caller tries the release).
pub async fn up(config: PlantConfig, reload: Reload) -> anyhow::Result<Option<Update>> {
    let started = Instant::now();
    // A stop that comes while the daemon starts is carried out when the start is done.
    let signals = Signals::listen().context("listening for SIGTERM and SIGINT")?;
    // This daemon's warnings, errors and stack events go to its hub (replication::logs),
    // those of its start too.
    crate::telemetry::ship_to_hub();
    let core = Core::open(&config)?;
    let listeners = Listeners::bind(&config).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    recover_image_upgrade(&config.data_dir);
    let on_trial = std::env::var_os(crate::update::TRIAL_ENV).is_some();
    let (parts, candidates) = start_components(&config, &core, reload, on_trial, started, &stop_rx);
    let https_addr = listeners.https.local_addr()?;
    let (api, https_app) = routes(&config, &core, &parts, https_addr);
    let Listeners {
        tls_files,
        tls,
        https,
        plain,
        socket_path,
        control: control_listener,
    } = listeners;
    let (handle, mut servers) = serve(
        &config,
        &core.health,
        &tls,
        (https, https_app),
        plain.map(|l| (l, api)),
        parts.ingress,
    )?;
    let control_task = tokio::spawn(control::serve(
        control_listener,
        parts.control.clone(),
        stop_rx.clone(),
    ));
    let background = Background::spawn(
        &config,
        &core,
        (parts.control, parts.stack),
        parts.monitor,
        &parts.link,
        stop_rx,
    );
    let device_activity = tokio::spawn(keep_device_activity(core.tokens.clone()));
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    if let Some(every) = sd_notify::watchdog_enabled() {
        tokio::spawn(watchdog(core.journal.clone(), every / 2));
    }
    if on_trial {
        tokio::spawn(crate::update::install::run_gate(
            config.data_dir.clone(),
            core.health.clone(),
            socket_path.clone(),
        ));
    }
    tracing::info!(
        version = crate::release::version(),
        on_trial,
        data_dir = %config.data_dir.display(),
        https = %https_addr,
        cert = %tls_files.cert.display(),
        ready_ms = started.elapsed().as_millis() as u64,
        "plantd is up"
    );

    let update = wait_for_the_end(signals, candidates, &mut servers, &core.health).await;
    if update.is_none() {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    }
    handle.graceful_shutdown(Some(Duration::from_secs(10)));
    while servers.join_next().await.is_some() {}
    let _ = stop_tx.send(true);
    // The replicator closes its connection with a word to the hub, so that the hub lets go of
    // this plant at once (not after QUIC's idle timeout); its link reports end when it is done.
    let mut link = parts.link.clone();
    let _ = tokio::time::timeout(Duration::from_secs(3), async {
        while link.changed().await.is_ok() {}
    })
    .await;
    let _ = control_task.await;
    background.stop().await;
    device_activity.abort();
    let tokens = core.tokens.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || tokens.flush_activity()).await {
        tracing::warn!(error = %e, "could not keep the devices' activity");
    }
    core.journal.close().await;
    let _ = fs::remove_file(&socket_path);
    tracing::info!("plantd stopped; every accepted transaction is in the journal");
    Ok(update)
}

/// What the daemon cannot run without: the data directory (locked for the daemon's life, so
/// two daemons never share a journal), the journal, the device tokens, the health board.
struct Core {
    _lock: fs::File,
    journal: Journal,
    tokens: Arc<Tokens>,
    health: Arc<Health>,
}

impl Core {
    fn open(config: &PlantConfig) -> anyhow::Result<Core> {
        let data_dir = &config.data_dir;
        create_private_dir(data_dir)?;
        let lock = lock_data_dir(data_dir)?;
        private::enforce(data_dir);
        crate::update::init_version(data_dir);
        let journal = Journal::open(
            &data_dir.join("journal.db"),
            journal::Options {
                commit: config.journal.commit,
                max_group: config.journal.max_group,
                retention: config.journal.retention,
                // Pruning waits for the local apply when there is one.
                wait_for_local_apply: config.apply.as_ref().is_some_and(|a| a.local),
                min_free_bytes: config.journal.min_free_bytes,
                dir: data_dir.clone(),
            },
        )
        .context("opening the journal")?;
        let tokens = Arc::new(Tokens::open(data_dir).context("opening the device token store")?);
        let health = Arc::new(Health::default());
        health.set("journal", State::Ok, crate::journal::JOURNAL_OK);
        Ok(Core {
            _lock: lock,
            journal,
            tokens,
            health,
        })
    }
}

/// The daemon's TLS and listeners, bound before any component starts: a port in use stops
/// the daemon at once, with the field to change.
struct Listeners {
    tls_files: crate::config::TlsFiles,
    tls: Arc<rustls::ServerConfig>,
    https: std::net::TcpListener,
    plain: Option<std::net::TcpListener>,
    socket_path: PathBuf,
    control: tokio::net::UnixListener,
}

impl Listeners {
    async fn bind(config: &PlantConfig) -> anyhow::Result<Listeners> {
        let tls_files = crate::pki::api_tls_files(&config.data_dir, config.api.tls.as_ref())?;
        let tls = crate::pki::server_config(&tls_files)?;
        let https = bind(config.api.listen, "api.listen")?;
        let plain = config
            .api
            .listen_plain
            .map(|a| bind(a, "api.listen_plain"))
            .transpose()?;
        let socket_path = control::socket_path(&config.data_dir);
        let control = control::bind(&socket_path).await?;
        Ok(Listeners {
            tls_files,
            tls,
            https,
            plain,
            socket_path,
            control,
        })
    }
}

/// Puts back the images of a stack upgrade a crash interrupted.
fn recover_image_upgrade(data_dir: &Path) {
    match crate::update::images::recover(data_dir) {
        Ok(None) => {}
        Ok(Some(done)) => tracing::warn!("{done}"),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not undo an interrupted stack image upgrade")
        }
    }
}

/// Who the audit log names for the stack actions of a fleet update.
const UPDATE_USER: &str = "plantd update (a release's stack images)";

/// The components around the journal, each optional.
struct Components {
    control: Arc<Control>,
    stack: Option<crate::stack::Stack>,
    link: watch::Receiver<Option<crate::replication::plant::LinkReport>>,
    ingress: Option<(std::net::TcpListener, axum::Router)>,
    admin_store: Option<Arc<crate::admin::store::Store>>,
    monitor: crate::admin::monitor::Monitor,
    /// Turns true when the daemon stops (or hands over to an update).
    stop: watch::Receiver<bool>,
}

/// Starts the stack, its ingress, the update agent, replication, the apply and the admin
/// store, and the control actions over them; a component that cannot start is said unhealthy
/// and the rest runs on. Also the receiver of the releases the agent verified.
fn start_components(
    config: &PlantConfig,
    core: &Core,
    reload: Reload,
    on_trial: bool,
    started: Instant,
    stop: &watch::Receiver<bool>,
) -> (
    Components,
    tokio::sync::mpsc::Receiver<crate::update::agent::Candidate>,
) {
    let (data_dir, health) = (&config.data_dir, &core.health);
    let stack = start_stack(config, health, stop.clone());
    let ingress = match (&stack, &config.stack) {
        (Some(stack), Some(sc)) => match sc.ingress.map(|a| bind(a, "stack.ingress.listen")) {
            None => None,
            Some(Ok(l)) => Some((
                l,
                crate::stack::ingress::router(stack.odoo.clone(), sc.odoo_workers),
            )),
            Some(Err(e)) => {
                health.set("ingress", State::Unhealthy, format!("{e:#}"));
                None
            }
        },
        _ => None,
    };
    // A binary on trial does not update itself: the process trying it decides.
    let (candidate_tx, candidates) = tokio::sync::mpsc::channel(1);
    // The agent's stack upgrades go through the control actions made below.
    let stack_ops = crate::update::images::StackSlot::default();
    let agent = (!on_trial).then(|| {
        crate::update::agent::Agent::new(
            data_dir.clone(),
            config.release_keys.clone(),
            config.journal.min_free_bytes,
            candidate_tx,
            reload.clone(),
            stack_ops.clone(),
        )
    });
    // The hub's remote actions go through the control actions made below, too.
    let remote_slot = crate::replication::remote::ExecutorSlot::default();
    let replication = replication::start(
        data_dir,
        &config.hubs,
        &core.journal,
        health,
        agent,
        remote_slot.clone(),
        stop.clone(),
    );
    let applier = start_apply(config, &core.journal, health, stack.as_ref(), stop.clone());
    // The admin UI's users and the audit log; without them the UI is off and the rest runs on.
    let admin_store = match crate::admin::store::Store::open(data_dir) {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            health.set(
                "admin",
                State::Unhealthy,
                format!("the admin UI is off: {e}"),
            );
            None
        }
    };
    let link = replication.link.clone();
    let control = Arc::new(Control {
        journal: core.journal.clone(),
        tokens: core.tokens.clone(),
        health: health.clone(),
        data_dir: data_dir.clone(),
        started,
        replication,
        stack: stack.clone(),
        stack_config: config.stack.clone(),
        reload,
        audit: admin_store
            .clone()
            .map(|s| s as Arc<dyn crate::control::Audit>),
        apply: applier,
    });
    let _ = stack_ops.set(Box::new(control::Daemon::Within {
        control: control.clone(),
        user: UPDATE_USER.to_string(),
    }));
    let _ = remote_slot.set(Arc::new(remote::RemoteExecutor {
        control: control.clone(),
        config: Arc::new(config.clone()),
    }));
    let parts = Components {
        control,
        stack,
        link,
        ingress,
        admin_store,
        monitor: open_history(data_dir),
        stop: stop.clone(),
    };
    (parts, candidates)
}

/// The admin UI's sampler, with `DATA_DIR/metrics.db` when it opens (the start is its first
/// marker); without it the charts start afresh at each start, and the rest runs on.
fn open_history(data_dir: &Path) -> crate::admin::monitor::Monitor {
    use crate::admin::history::History;
    let every = sample_every();
    let opened = History::open(data_dir).and_then(|h| {
        h.started(
            jiff::Timestamp::now().as_second(),
            crate::release::version(),
        )?;
        Ok(h)
    });
    match opened {
        Ok(h) => crate::admin::monitor::Monitor::new(Some(Arc::new(h)), every),
        Err(e) => {
            tracing::warn!(error = %e, "the admin UI's charts keep no history across restarts (remove metrics.db if it is damaged; it holds only the charts)");
            crate::admin::monitor::Monitor::new(None, every)
        }
    }
}

/// Only for tests, which cannot wait 10 s per sample: `PLANTD_TEST_SAMPLE_MS` (1000 to 10000)
/// shortens the sampler's tick.
fn sample_every() -> Duration {
    std::env::var("PLANTD_TEST_SAMPLE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| (1000..=10_000).contains(ms))
        .map_or(crate::admin::monitor::SAMPLE_EVERY, Duration::from_millis)
}

/// The shop-floor API (all the plain-HTTP listener serves), and the HTTPS listener's routes:
/// the API with the admin UI and /metrics when the admin store opened (never over plain HTTP).
fn routes(
    config: &PlantConfig,
    core: &Core,
    parts: &Components,
    https_addr: SocketAddr,
) -> (axum::Router, axum::Router) {
    let health = &core.health;
    let app = ingest::router(Api {
        journal: core.journal.clone(),
        tokens: core.tokens.clone(),
        health: health.clone(),
        link: parts.link.clone(),
        kinds: config.apply.as_ref().map(|a| a.kinds.clone()),
    });
    let admin = parts.admin_store.clone().map(|store| {
        crate::admin::Admin::new(
            parts.control.clone(),
            Arc::new(config.clone()),
            store,
            parts.monitor.clone(),
            https_addr,
        )
    });
    let https_app = match admin {
        Some(Ok(admin)) => {
            // The plant's own alerts read what the admin UI shows; they run as long as it.
            tokio::spawn(crate::admin::alerts::run(admin.clone(), parts.stop.clone()));
            health.set(
                "admin",
                State::Ok,
                "admin UI and /metrics on the HTTPS listener",
            );
            app.clone().merge(crate::admin::router(admin))
        }
        Some(Err(e)) => {
            health.set(
                "admin",
                State::Unhealthy,
                format!("the admin UI is off: {e:#}"),
            );
            app.clone()
        }
        None => app.clone(),
    };
    let json_errors = axum::middleware::from_fn(crate::listen::errors::json_errors);
    (app.layer(json_errors.clone()), https_app.layer(json_errors))
}

type Servers = tokio::task::JoinSet<std::io::Result<()>>;

/// Serves the HTTPS listener, the plain-HTTP one and the ingress to Odoo, under one connection
/// budget and one handle for the graceful shutdown.
fn serve(
    config: &PlantConfig,
    health: &Health,
    tls: &Arc<rustls::ServerConfig>,
    (https, https_app): (std::net::TcpListener, axum::Router),
    plain: Option<(std::net::TcpListener, axum::Router)>,
    ingress: Option<(std::net::TcpListener, axum::Router)>,
) -> anyhow::Result<(axum_server::Handle<SocketAddr>, Servers)> {
    let handle = axum_server::Handle::<SocketAddr>::new();
    // One connection budget for every listener: the open-file limit is the process's.
    let gate =
        crate::listen::Gate::new(config.http.clone(), crate::listen::raise_open_file_limit());
    let rustls = || axum_server::tls_rustls::RustlsConfig::from_config(tls.clone());
    let mut servers = Servers::new();
    let https_addr = https.local_addr()?;
    servers.spawn(crate::listen::serve(
        https,
        Some(rustls()),
        https_app,
        gate.clone(),
        handle.clone(),
    ));
    health.set("api", State::Ok, format!("https on {https_addr}"));
    if let Some((plain, app)) = plain {
        let plain_addr = plain.local_addr()?;
        servers.spawn(crate::listen::serve(
            plain,
            None,
            app,
            gate.clone(),
            handle.clone(),
        ));
        health.set(
            "api_plain",
            State::Ok,
            format!("plain http on {plain_addr} (legacy devices; no TLS)"),
        );
    }
    if let Some((listener, app)) = ingress {
        let addr = listener.local_addr()?;
        servers.spawn(crate::listen::serve(
            listener,
            Some(rustls()),
            app,
            gate.clone(),
            handle.clone(),
        ));
        health.set(
            "ingress",
            State::Ok,
            format!("Odoo on https://{addr} (/websocket to the gevent port)"),
        );
    }
    Ok((handle, servers))
}

/// The daemon's own tasks: the admin UI's sampler, the backup schedule, the journal's upkeep.
struct Background {
    sampler: tokio::task::JoinHandle<()>,
    backups: tokio::task::JoinHandle<()>,
    maintenance: tokio::task::JoinHandle<()>,
}

impl Background {
    fn spawn(
        config: &PlantConfig,
        core: &Core,
        (control, stack): (Arc<Control>, Option<crate::stack::Stack>),
        monitor: crate::admin::monitor::Monitor,
        link: &watch::Receiver<Option<crate::replication::plant::LinkReport>>,
        stop: watch::Receiver<bool>,
    ) -> Background {
        Background {
            sampler: tokio::spawn(monitor.run(control, link.clone(), stop.clone())),
            backups: tokio::spawn(crate::backup::scheduler::run(
                config.clone(),
                stack,
                core.health.clone(),
                stop.clone(),
            )),
            maintenance: tokio::spawn(maintain(
                core.journal.clone(),
                config.journal.prune_interval,
                stop,
            )),
        }
    }

    /// Waits for the upkeep and the sampler (the stop signal was sent); a backup in progress is
    /// abandoned: its parts are cleaned up by the next one.
    async fn stop(self) {
        let _ = self.maintenance.await;
        let _ = self.sampler.await;
        self.backups.abort();
    }
}

/// Waits for a signal, a verified release (`Some`, with what was healthy before) or a listener
/// that ended.
async fn wait_for_the_end(
    mut signals: Signals,
    mut candidates: tokio::sync::mpsc::Receiver<crate::update::agent::Candidate>,
    servers: &mut Servers,
    health: &Health,
) -> Option<Update> {
    tokio::select! {
        signal = signals.recv() => {
            tracing::info!(%signal, "shutting down");
            None
        }
        Some(candidate) = candidates.recv() => {
            tracing::info!(version = %candidate.version, "shutting down to try a new release");
            crate::update::install::listen_for_stop(signals);
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&format!(
                "trying version {}",
                candidate.version
            ))]);
            let healthy_before = health
                .snapshot()
                .into_iter()
                .filter(|c| c.state == State::Ok)
                .map(|c| c.name)
                .collect();
            Some(Update { candidate, healthy_before })
        }
        Some(ended) = servers.join_next() => {
            let reason = match ended {
                Ok(Ok(())) => "a listener stopped".to_string(),
                Ok(Err(e)) => format!("a listener failed: {e}"),
                Err(e) => format!("a listener task failed: {e}"),
            };
            tracing::error!(%reason, "shutting down");
            None
        }
    }
}

/// Starts supervising the stack when `[stack]` asks for it. A stack that cannot be described
/// (its secrets unreadable, say) is reported unhealthy; the journal runs on regardless.
fn start_stack(
    config: &PlantConfig,
    health: &Arc<Health>,
    stop: watch::Receiver<bool>,
) -> Option<crate::stack::Stack> {
    let stack_config = config.stack.as_ref()?;
    let started = crate::stack::spec::build(stack_config, &config.data_dir).and_then(|spec| {
        crate::stack::start(
            spec,
            stack_config.docker_socket.clone(),
            stack_config.upgrade_deadline,
            health.clone(),
            stop,
        )
    });
    match started {
        Ok(stack) => Some(stack),
        Err(e) => {
            health.set("stack", State::Unhealthy, format!("{e:#}"));
            None
        }
    }
}

/// Starts the local apply when `[apply] local` asks for it; a queue whose state cannot be read
/// is reported unhealthy, and the journal keeps accepting.
fn start_apply(
    config: &PlantConfig,
    journal: &Journal,
    health: &Arc<Health>,
    stack: Option<&crate::stack::Stack>,
    stop: watch::Receiver<bool>,
) -> Option<crate::apply::Applier> {
    let apply = config.apply.as_ref().filter(|a| a.local)?;
    // External ids name the plant as enrolled; before enrollment, its journal.
    let plant = crate::enrollment::load(&config.data_dir)
        .ok()
        .flatten()
        .map(|e| e.plant)
        .unwrap_or_else(|| journal.id().to_string());
    let (odoo, stack_config) = (config.odoo.clone(), config.stack.clone());
    let odoo_ip = stack.map(|s| s.odoo.clone());
    let locate: crate::apply::Locate = Arc::new(move || {
        let ip = odoo_ip.as_ref().and_then(|w| *w.borrow());
        odoo.target(stack_config.as_ref().map(|s| (s, ip)))
    });
    match crate::apply::Applier::start(
        &config.data_dir,
        journal.clone(),
        apply.kinds.clone(),
        plant,
        locate,
        health.clone(),
        stop,
    ) {
        Ok(a) => Some(a),
        Err(e) => {
            health.set("apply", State::Unhealthy, format!("{e:#}"));
            None
        }
    }
}

/// Prunes and checkpoints the journal on an interval.
async fn maintain(journal: Journal, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                if let Err(e) = journal.maintain().await {
                    tracing::warn!(error = %e, "journal maintenance failed");
                }
            }
        }
    }
}

/// Writes the devices' activity (last seen, refusals) to the token store every half minute,
/// so that `plantd token list` beside the daemon and a restarted daemon see it.
async fn keep_device_activity(tokens: Arc<Tokens>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let t = tokens.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || t.flush_activity()).await {
            tracing::warn!(error = %e, "could not keep the devices' activity");
        }
    }
}

/// Pings systemd's watchdog while the journal writer answers. A full disk still answers (with
/// a refusal), so only a hung writer stops the pings and gets the daemon restarted.
async fn watchdog(journal: Journal, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if tokio::time::timeout(every, journal.probe()).await.is_ok() {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!(
                "the journal writer did not answer within {every:?}; withholding the watchdog ping"
            );
        }
    }
}

fn bind(addr: SocketAddr, field: &str) -> anyhow::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| {
        format!("cannot listen on {addr} ({field}); is another program using that port? Choose another with --listen or {field} in plant.toml")
    })?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Holds an exclusive lock on `DATA_DIR/plantd.lock` for the daemon's life.
fn lock_data_dir(dir: &Path) -> anyhow::Result<fs::File> {
    let path = dir.join("plantd.lock");
    lock_file(&path, || {
        format!(
            "another plantd is already running on {} (it holds {})",
            dir.display(),
            path.display()
        )
    })
}
