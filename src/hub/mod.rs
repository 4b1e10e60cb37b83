//! `plantd hub`: the central hub, the composition root of the hub side.
//!
//! It holds no state of its own but its CA in `DATA_DIR/ca/`: plants, tokens and transactions
//! live in PostgreSQL, so several hub processes can serve one fleet. It serves enrollment and
//! the fleet API over HTTPS and replication over QUIC (ALPN `plantd/1`, plant certificates
//! required).

mod actions;
pub mod alerts;
pub mod apply;
pub mod database;
mod enroll;
pub mod fleet;
mod fleet_rollouts;
pub mod logs;
pub mod metrics;
pub mod remote;
mod replication;
pub mod rollouts;
pub mod store;
pub mod truth;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::HubConfig;
use crate::pki::HubCa;
pub use actions::MAX_EXPIRY_S as MAX_ACTION_EXPIRY_S;
pub use enroll::make_api_token;

/// What the hub's tasks share.
pub struct Hub {
    pub config: HubConfig,
    /// The pool every path takes its database connections from.
    pub database: database::Database,
    pub ca: HubCa,
    /// The QUIC addresses plants are told to dial.
    pub advertise: Vec<String>,
    /// Where plants' offsite backup copies are kept, and for how long.
    pub backups: crate::backup::offsite::HubBackups,
    /// Plants' update checks, downloads and reports.
    pub updates: replication::Updates,
    /// Plant sessions this replica serves.
    pub sessions: metrics::Sessions,
    /// The plants' log streams.
    pub logs: logs::Logs,
    /// Remote actions: sent on plants' remote-action streams.
    pub remote: remote::Remote,
}

/// The hub's offsite backup store of a hub config.
pub fn backups(config: &HubConfig) -> crate::backup::offsite::HubBackups {
    crate::backup::offsite::HubBackups {
        dir: config.data_dir.join("backups"),
        policy: config.backups,
    }
}

/// The names in the hub's certificate when the config names none.
fn default_names() -> Vec<String> {
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() && host != "localhost" {
            names.push(host.to_string());
        }
    }
    names
}

/// Runs the hub until SIGTERM or SIGINT.
pub async fn run(config: HubConfig) -> anyhow::Result<()> {
    // A stop that comes while the hub starts is carried out when the start is done.
    let mut signals =
        crate::shutdown::Signals::listen().context("listening for SIGTERM and SIGINT")?;
    crate::fsutil::create_private_dir(&config.data_dir)?;
    let ca = HubCa::load_or_create(&config.data_dir)?;
    let database = database::Database::new(&config.database, &config.postgres)?;
    database
        .store()
        .await?
        .migrate_schema()
        .await
        .context("bringing the hub database schema up to date")?;
    let names = if config.names.is_empty() {
        default_names()
    } else {
        config.names.clone()
    };
    let (cert_pem, key_pem) = ca.issue_server(&names)?;
    let advertise = if config.advertise.is_empty() {
        let host = if config.quic.ip().is_unspecified() {
            names.last().cloned().unwrap_or_else(|| "localhost".into())
        } else {
            config.quic.ip().to_string()
        };
        vec![format!("{host}:{}", config.quic.port())]
    } else {
        config.advertise.clone()
    };

    let quic_config = crate::pki::hub_quic_server(&ca, &cert_pem, &key_pem)?;
    let socket = std::net::UdpSocket::bind(config.quic)
        .with_context(|| format!("cannot listen for QUIC on {} (hub --quic)", config.quic))?;
    // This replica, as its QUIC keys tell it from the others: where it listens and is dialled.
    let replica = format!("{} {}", config.quic, advertise.join(","));
    let endpoint = quinn::Endpoint::new(
        ca.quic_endpoint_config(&replica),
        Some(quic_config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .with_context(|| format!("cannot listen for QUIC on {} (hub --quic)", config.quic))?;

    let mut tls_chain = cert_pem.clone();
    tls_chain.push_str(&ca.cert_pem);
    let tls_dir = config.data_dir.join("tls");
    crate::fsutil::create_private_dir(&tls_dir)?;
    let files = crate::config::TlsFiles {
        cert: tls_dir.join("hub.crt"),
        key: tls_dir.join("hub.key"),
    };
    crate::fsutil::write_atomic(&files.key, key_pem.as_bytes(), 0o600)?;
    crate::fsutil::write_atomic(&files.cert, tls_chain.as_bytes(), 0o644)?;
    let tls = crate::pki::server_config(&files)?;
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("cannot listen on {} (hub --listen)", config.listen))?;
    listener.set_nonblocking(true)?;

    let hub = Arc::new(Hub {
        backups: backups(&config),
        updates: replication::Updates::new(database.clone()),
        sessions: metrics::Sessions::default(),
        logs: logs::Logs::new(database.clone()),
        remote: remote::Remote::new(database.clone()),
        database: database.clone(),
        config,
        ca,
        advertise,
    });
    let handle = axum_server::Handle::<SocketAddr>::new();
    // The fleet page signs in like the plant's admin UI, with users in DATA_DIR/admin.db.
    let admin_store = std::sync::Arc::new(crate::admin::store::Store::open(&hub.config.data_dir)?);
    let signin = crate::admin::SignIn::new(
        admin_store,
        &hub.config.data_dir,
        &format!("https://{}/fleet", hub.config.listen),
        &hub.config.identity,
    )?;
    let app = enroll::router(hub.clone())
        .merge(fleet::router(fleet::Fleet {
            signin,
            database: database.clone(),
            central: hub.config.central.clone(),
            backups: hub.backups.clone(),
            sessions: hub.sessions.clone(),
            remote: hub.remote.clone(),
        }))
        .layer(axum::middleware::from_fn(
            crate::listen::errors::json_errors,
        ));
    let https = {
        let handle = handle.clone();
        let rustls = axum_server::tls_rustls::RustlsConfig::from_config(tls);
        let gate = crate::listen::Gate::new(
            hub.config.http.clone(),
            crate::listen::raise_open_file_limit(),
        );
        tokio::spawn(crate::listen::serve(
            listener,
            Some(rustls),
            app,
            gate,
            handle,
        ))
    };
    let quic = tokio::spawn(replication::serve(endpoint.clone(), hub.clone()));
    let rollouts = tokio::spawn(replication::drive_rollouts(database.clone()));
    let log_sweep = tokio::spawn(logs::sweep(database.clone(), hub.config.logs_keep));
    let alerts = tokio::spawn(alerts::run(
        database.clone(),
        hub.config.alerts.clone(),
        hub.backups.clone(),
    ));
    let expiry = tokio::spawn(remote::expire(database.clone()));
    if let Some(central) = hub.config.central.clone() {
        tracing::info!(
            workers = central.workers,
            "applying the plants' transactions to the central Odoo"
        );
        tokio::spawn(apply::run(database.clone(), central));
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    if let Some(every) = sd_notify::watchdog_enabled() {
        // The runtime answering is what is checked: a hub wedged in its event loop stops the
        // pings and systemd restarts it. PostgreSQL down is not the hub's to fix by restarting.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every / 2);
            loop {
                tick.tick().await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
    // Said at start and every hour: enrollments at any replica hand out this one's addresses,
    // when they are configured (`advertise`; a default made of this host's name is not said).
    async fn register(hub: &Hub) {
        if hub.config.advertise.is_empty() {
            return;
        }
        let said = match hub.database.store().await {
            Ok(store) => store.register_replica(&hub.config.advertise).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = said {
            tracing::warn!(error = %format!("{e:#}"), "registering this replica's QUIC addresses");
        }
    }
    register(&hub).await;
    let replicas = {
        let hub = hub.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            tick.tick().await;
            loop {
                tick.tick().await;
                register(&hub).await;
            }
        })
    };
    tracing::info!(
        https = %hub.config.listen,
        quic = %hub.config.quic,
        advertise = ?hub.advertise,
        ca_fingerprint = %hub.ca.fingerprint(),
        database_pool = hub.config.postgres.pool_size,
        "plantd hub is up"
    );
    let signal = signals.recv().await;
    tracing::info!(%signal, "hub shutting down");
    endpoint.close(0u32.into(), b"hub shutting down");
    handle.graceful_shutdown(Some(Duration::from_secs(10)));
    let _ = https.await;
    quic.abort();
    rollouts.abort();
    alerts.abort();
    log_sweep.abort();
    expiry.abort();
    replicas.abort();
    endpoint.wait_idle().await;
    Ok(())
}
