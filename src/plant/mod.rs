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
use std::path::Path;
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
use crate::shutdown::shutdown_signal;
use crate::tokens::Tokens;

mod private;
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
    let data_dir = &config.data_dir;
    create_private_dir(data_dir)?;
    let _lock = lock_data_dir(data_dir)?;
    private::enforce(data_dir);
    crate::update::init_version(data_dir);
    let on_trial = std::env::var_os(crate::update::TRIAL_ENV).is_some();

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

    let tls_files = crate::pki::api_tls_files(data_dir, config.api.tls.as_ref())?;
    let tls = crate::pki::server_config(&tls_files)?;
    let https = bind(config.api.listen, "api.listen")?;
    let plain = config
        .api
        .listen_plain
        .map(|a| bind(a, "api.listen_plain"))
        .transpose()?;
    let socket_path = control::socket_path(data_dir);
    let control_listener = control::bind(&socket_path).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    match crate::update::images::recover(data_dir) {
        Ok(None) => {}
        Ok(Some(done)) => tracing::warn!("{done}"),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not undo an interrupted stack image upgrade")
        }
    }
    let stack = start_stack(&config, &health, stop_rx.clone());
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
    let (candidate_tx, mut candidates) = tokio::sync::mpsc::channel(1);
    let agent = (!on_trial).then(|| {
        crate::update::agent::Agent::new(
            data_dir.clone(),
            config.release_keys.clone(),
            config.journal.min_free_bytes,
            candidate_tx,
            reload.clone(),
        )
    });
    let replication = replication::start(
        data_dir,
        &config.hubs,
        &journal,
        &health,
        agent,
        stop_rx.clone(),
    );
    let stack_handle = stack.clone();
    let applier = start_apply(&config, &journal, &health, stack.as_ref(), stop_rx.clone());
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
    let control = Arc::new(Control {
        journal: journal.clone(),
        tokens,
        health: health.clone(),
        data_dir: data_dir.clone(),
        started,
        replication: replication.clone(),
        stack,
        stack_config: config.stack.clone(),
        reload,
        audit: admin_store
            .clone()
            .map(|s| s as Arc<dyn crate::control::Audit>),
        apply: applier,
    });
    let api = Api {
        journal: journal.clone(),
        tokens: control.tokens.clone(),
        health: health.clone(),
        link: replication.link.clone(),
        kinds: config.apply.as_ref().map(|a| a.kinds.clone()),
    };
    let app = ingest::router(api);
    let https_addr = https.local_addr()?;
    let monitor = crate::admin::monitor::Monitor::default();
    // The admin UI and /metrics only over TLS: never on the plain-HTTP listener.
    let admin = admin_store.map(|store| {
        crate::admin::Admin::new(
            control.clone(),
            Arc::new(config.clone()),
            store,
            monitor.clone(),
            https_addr,
        )
    });
    let https_app = match admin {
        Some(Ok(admin)) => {
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
    let handle = axum_server::Handle::<SocketAddr>::new();
    // One connection budget for every listener: the open-file limit is the process's.
    let gate =
        crate::listen::Gate::new(config.http.clone(), crate::listen::raise_open_file_limit());
    let mut servers = tokio::task::JoinSet::new();
    {
        let handle = handle.clone();
        let rustls = axum_server::tls_rustls::RustlsConfig::from_config(tls.clone());
        let gate = gate.clone();
        servers.spawn(crate::listen::serve(
            https,
            Some(rustls),
            https_app,
            gate,
            handle,
        ));
    }
    health.set("api", State::Ok, format!("https on {https_addr}"));
    if let Some(plain) = plain {
        let plain_addr = plain.local_addr()?;
        let app = app.clone();
        let handle = handle.clone();
        servers.spawn(crate::listen::serve(plain, None, app, gate.clone(), handle));
        health.set(
            "api_plain",
            State::Ok,
            format!("plain http on {plain_addr} (legacy devices; no TLS)"),
        );
    }
    if let Some((listener, app)) = ingress {
        let addr = listener.local_addr()?;
        let handle = handle.clone();
        let rustls = axum_server::tls_rustls::RustlsConfig::from_config(tls.clone());
        servers.spawn(crate::listen::serve(
            listener,
            Some(rustls),
            app,
            gate.clone(),
            handle,
        ));
        health.set(
            "ingress",
            State::Ok,
            format!("Odoo on https://{addr} (/websocket to the gevent port)"),
        );
    }
    let control_task = tokio::spawn(control::serve(control_listener, control, stop_rx.clone()));
    let sampler = tokio::spawn(monitor.run(
        journal.clone(),
        health.clone(),
        replication.link.clone(),
        stop_rx.clone(),
    ));
    let backups = tokio::spawn(crate::backup::scheduler::run(
        config.clone(),
        stack_handle,
        health.clone(),
        stop_rx.clone(),
    ));
    let maintenance = tokio::spawn(maintain(
        journal.clone(),
        config.journal.prune_interval,
        stop_rx,
    ));

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    if let Some(every) = sd_notify::watchdog_enabled() {
        tokio::spawn(watchdog(journal.clone(), every / 2));
    }
    if on_trial {
        tokio::spawn(crate::update::install::run_gate(
            data_dir.clone(),
            health.clone(),
            socket_path.clone(),
        ));
    }
    tracing::info!(
        version = crate::release::version(),
        on_trial,
        data_dir = %data_dir.display(),
        https = %https_addr,
        cert = %tls_files.cert.display(),
        ready_ms = started.elapsed().as_millis() as u64,
        "plantd is up"
    );

    let mut update = None;
    tokio::select! {
        signal = shutdown_signal() => tracing::info!(%signal, "shutting down"),
        Some(candidate) = candidates.recv() => {
            tracing::info!(version = %candidate.version, "shutting down to try a new release");
            crate::update::install::listen_for_stop();
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
            update = Some(Update { candidate, healthy_before });
        }
        Some(ended) = servers.join_next() => {
            let reason = match ended {
                Ok(Ok(())) => "a listener stopped".to_string(),
                Ok(Err(e)) => format!("a listener failed: {e}"),
                Err(e) => format!("a listener task failed: {e}"),
            };
            tracing::error!(%reason, "shutting down");
        }
    }
    if update.is_none() {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    }
    handle.graceful_shutdown(Some(Duration::from_secs(10)));
    while servers.join_next().await.is_some() {}
    let _ = stop_tx.send(true);
    let _ = control_task.await;
    let _ = maintenance.await;
    let _ = sampler.await;
    // A backup in progress is abandoned: its parts are cleaned up by the next one.
    backups.abort();
    journal.close().await;
    let _ = fs::remove_file(&socket_path);
    tracing::info!("plantd stopped; every accepted transaction is in the journal");
    Ok(update)
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
