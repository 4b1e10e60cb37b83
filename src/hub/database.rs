//! The hub's pool of PostgreSQL connections, and TLS to the server.
//!
//! Every path of the hub (replication sessions, enrollment, the fleet API and page, the
//! central apply, rollouts and the CLI) takes a [`Store`] from one [`Database`] and gives it
//! back when the operation ends: a plant's QUIC connection holds none while it waits, so the
//! number of connections to PostgreSQL is at most `[postgres] pool_size` per hub process,
//! whatever plants or clients do. A request that finds every connection taken waits at most
//! `[postgres] pool_wait`, then gets [`DatabaseError::Busy`] (HTTP 429 with Retry-After).
//!
//! TLS: `[postgres] sslmode` (libpq's names), by default `verify-full` unless every host of
//! the URL is on this machine; rustls with the ring provider, trusting `[postgres] ca_file` or
//! the system's roots.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::store::{redact, Store};
use crate::config::{PostgresConfig, SslMode};

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// Every connection is in use (or the server has no slot left): a passing state.
    #[error("the hub is busy: all {size} of its database connections stayed in use for {wait:?}; retry in a few seconds")]
    Busy { size: usize, wait: Duration },
    #[error("cannot reach the hub database {url}: {message}")]
    Unreachable { url: String, message: String },
}

/// The hub's connections to PostgreSQL: cheap to clone, shared by every task.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    url: String,
    size: usize,
    wait: Duration,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({}, pool of {})", self.url, self.size)
    }
}

impl Database {
    /// A pool for `url` (connections are made when first needed).
    pub fn new(url: &str, settings: &PostgresConfig) -> anyhow::Result<Database> {
        let shown = redact(url);
        if url.contains("sslmode") {
            anyhow::bail!(
                "the hub database URL {shown} sets sslmode: set [postgres] sslmode in hub.toml instead (disable, require, verify-ca or verify-full)"
            );
        }
        let mut config: tokio_postgres::Config = url
            .parse()
            .with_context(|| format!("the hub database URL {shown} is not valid"))?;
        // A hub host that vanishes must not hold its sessions (and the apply's advisory locks)
        // until the kernel's default keepalive gives up, hours later.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3)
            .connect_timeout(Duration::from_secs(10));
        if config.get_application_name().is_none() {
            config.application_name("plantd-hub");
        }
        let mode = settings.sslmode_for(config.get_hosts());
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            _ => tokio_postgres::config::SslMode::Require,
        });
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(mode, settings)?);
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                // A connection that the server or the network closed is replaced; one that is
                // open is handed out without a round trip.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.pool_wait))
            .create_timeout(Some(Duration::from_secs(15)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .post_create(deadpool_postgres::Hook::async_fn(|client, _| {
                Box::pin(async move {
                    // A session must never wait for ever on a lock held by a replica that lost
                    // its link.
                    client
                        .batch_execute(
                            "SET lock_timeout = '10s'; SET statement_timeout = '60s';
                             SET idle_in_transaction_session_timeout = '60s';
                             SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10;
                             SET tcp_keepalives_count = 3",
                        )
                        .await
                        .map_err(deadpool_postgres::HookError::Backend)
                })
            }))
            .build()
            .context("building the hub database pool")?;
        tracing::debug!(database = %shown, pool_size = settings.pool_size, sslmode = ?mode, "hub database pool");
        Ok(Database {
            pool,
            url: shown,
            size: settings.pool_size,
            wait: settings.pool_wait,
        })
    }

    /// Connections open and in use, and the most the pool opens.
    pub fn usage(&self) -> (usize, usize, usize) {
        let status = self.pool.status();
        (
            status.size,
            status.size.saturating_sub(status.available),
            status.max_size,
        )
    }

    /// A connection from the pool, waiting at most `[postgres] pool_wait` for one to come free.
    pub async fn store(&self) -> Result<Store, DatabaseError> {
        let unreachable = |message: String| DatabaseError::Unreachable {
            url: self.url.clone(),
            message,
        };
        let busy = DatabaseError::Busy {
            size: self.size,
            wait: self.wait,
        };
        match self.pool.get().await {
            Ok(client) => Ok(Store { client }),
            Err(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)) => Err(busy),
            Err(PoolError::Backend(e)) | Err(PoolError::PostCreateHook(deadpool_postgres::HookError::Backend(e)))
                // The server itself has no slot left (other clients hold them): as passing.
                if e.code() == Some(&tokio_postgres::error::SqlState::TOO_MANY_CONNECTIONS) =>
            {
                tracing::warn!(database = %self.url, "the database server refused a connection: too many clients");
                Err(busy)
            }
            Err(PoolError::Backend(e)) => Err(unreachable(error_chain(&e))),
            Err(e) => Err(unreachable(e.to_string())),
        }
    }
}

/// An error and its causes on one line (tokio-postgres puts the useful part in the source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The rustls client for `mode` (unused with `disable`, but the pool needs one type).
fn tls_config(mode: SslMode, settings: &PostgresConfig) -> anyhow::Result<rustls::ClientConfig> {
    let provider = crate::pki::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("rustls protocol versions")?;
    let roots = || -> anyhow::Result<Option<Arc<rustls::RootCertStore>>> {
        let Some(path) = &settings.ca_file else {
            return Ok(None);
        };
        Ok(Some(Arc::new(crate::pki::roots_from_file(
            path,
            "[postgres] ca_file",
        )?)))
    };
    let webpki = |roots: Arc<rustls::RootCertStore>| {
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .context("building the database certificate verifier")
    };
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::Disable | SslMode::Require => {
            Arc::new(crate::pki::AnyServerCertificate(provider.clone()))
        }
        SslMode::VerifyFull | SslMode::VerifyCa => {
            let full: Arc<dyn ServerCertVerifier> = match roots()? {
                Some(r) => webpki(r)?,
                None => Arc::new(
                    rustls_platform_verifier::Verifier::new(provider.clone())
                        .context("loading the system's CA certificates for the hub database")?,
                ),
            };
            match mode {
                SslMode::VerifyCa => Arc::new(AnyName(full)),
                _ => full,
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// `sslmode = "verify-ca"`: the chain must lead to a trusted CA; the host name is not checked.
#[derive(Debug)]
struct AnyName(Arc<dyn ServerCertVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
