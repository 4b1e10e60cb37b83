//! `[postgres]` of hub.toml: how the hub connects to its database (the URL itself is the
//! top-level `database` key, or `--database`).
//!
//! Raw values are read with serde, then checked into [`PostgresConfig`], whose values are
//! always usable: a pool of 1 to 512 connections, a wait of 100 ms to 60 s, a TLS mode.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::field::FieldError;

/// Connections a hub opens at most when hub.toml does not say.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// How long a request waits for a free connection when hub.toml does not say.
pub const DEFAULT_POOL_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPostgres {
    pool_size: Option<usize>,
    pool_wait: Option<String>,
    sslmode: Option<SslMode>,
    ca_file: Option<PathBuf>,
}

/// How the hub secures its connections to PostgreSQL (the names of libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain TCP: only for a database on this host (loopback or a unix socket).
    Disable,
    /// TLS, but the server's certificate is not checked (encrypts; does not stop an impostor).
    Require,
    /// TLS with the server's certificate checked against the CA, but not its host name.
    VerifyCa,
    /// TLS with the certificate checked against the CA and the URL's host name.
    VerifyFull,
}

/// `[postgres]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// Most connections this hub process holds to PostgreSQL (every replication session, the
    /// fleet API, enrollment, the central apply and rollouts share them).
    pub pool_size: usize,
    /// How long a request waits for a free connection before it is answered "busy" (429).
    pub pool_wait: Duration,
    /// `None`: `verify-full`, or `disable` when every host of the URL is on this machine.
    pub sslmode: Option<SslMode>,
    /// The CA that signed the server's certificate (PEM); default: the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            pool_size: DEFAULT_POOL_SIZE,
            pool_wait: DEFAULT_POOL_WAIT,
            sslmode: None,
            ca_file: None,
        }
    }
}

impl PostgresConfig {
    /// Checks the raw section; an error names the field (`postgres.KEY`).
    pub(super) fn from_raw(raw: RawPostgres) -> Result<PostgresConfig, FieldError> {
        let pool_size = match raw.pool_size {
            None => DEFAULT_POOL_SIZE,
            Some(n @ 1..=512) => n,
            Some(n) => {
                return Err(FieldError::new(
                    "postgres.pool_size",
                    format!("{n} is out of range; use 1 to 512 (default {DEFAULT_POOL_SIZE}), below the server's max_connections"),
                ))
            }
        };
        let pool_wait = match raw.pool_wait.as_deref() {
            None => DEFAULT_POOL_WAIT,
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(60) => d,
                Ok(_) => {
                    return Err(FieldError::new(
                        "postgres.pool_wait",
                        format!("{text:?} is out of range; use 100ms to 60s (default 5s)"),
                    ))
                }
                Err(e) => {
                    return Err(FieldError::new(
                        "postgres.pool_wait",
                        format!("{text:?} is not a duration ({e}); use one such as \"5s\""),
                    ))
                }
            },
        };
        if raw.ca_file.is_some() && matches!(raw.sslmode, Some(SslMode::Disable | SslMode::Require))
        {
            return Err(FieldError::new(
                "postgres.ca_file",
                "is only used to verify the server (sslmode = \"verify-ca\" or \"verify-full\"); remove it or change sslmode",
            ));
        }
        Ok(PostgresConfig {
            pool_size,
            pool_wait,
            sslmode: raw.sslmode,
            ca_file: raw.ca_file,
        })
    }

    /// The TLS mode for a database at these hosts: the configured one, else `verify-full`
    /// unless every host is on this machine.
    pub fn sslmode_for(&self, hosts: &[tokio_postgres::config::Host]) -> SslMode {
        self.sslmode.unwrap_or_else(|| {
            if !hosts.is_empty() && hosts.iter().all(is_local) {
                SslMode::Disable
            } else {
                SslMode::VerifyFull
            }
        })
    }
}

/// A unix socket, `localhost` or a loopback address.
fn is_local(host: &tokio_postgres::config::Host) -> bool {
    match host {
        tokio_postgres::config::Host::Unix(_) => true,
        tokio_postgres::config::Host::Tcp(name) => {
            let bare = name.trim_start_matches('[').trim_end_matches(']');
            name.eq_ignore_ascii_case("localhost")
                || bare
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(url: &str) -> Vec<tokio_postgres::config::Host> {
        url.parse::<tokio_postgres::Config>()
            .unwrap()
            .get_hosts()
            .to_vec()
    }

    #[test]
    fn tls_is_verified_by_default_unless_the_database_is_local() {
        let c = PostgresConfig::default();
        for local in [
            "postgres://plantd@localhost/plantd",
            "postgres://plantd@127.0.0.1:5433/plantd",
            "postgres://plantd@[::1]/plantd",
            "host=/run/postgresql user=plantd",
        ] {
            assert_eq!(c.sslmode_for(&hosts(local)), SslMode::Disable, "{local}");
        }
        for remote in [
            "postgres://plantd@db.internal/plantd",
            "postgres://plantd@10.0.0.5/plantd",
            "host=localhost,db.internal user=plantd",
        ] {
            assert_eq!(
                c.sslmode_for(&hosts(remote)),
                SslMode::VerifyFull,
                "{remote}"
            );
        }
        let set = PostgresConfig {
            sslmode: Some(SslMode::Require),
            ..c
        };
        assert_eq!(
            set.sslmode_for(&hosts("postgres://localhost/x")),
            SslMode::Require
        );
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        let raw = |s: &str| toml::from_str::<RawPostgres>(s).unwrap();
        assert_eq!(
            PostgresConfig::from_raw(raw("")).unwrap(),
            PostgresConfig::default()
        );
        for (text, field) in [
            ("pool_size = 0", "postgres.pool_size"),
            ("pool_size = 10000", "postgres.pool_size"),
            ("pool_wait = \"1ms\"", "postgres.pool_wait"),
            ("pool_wait = \"soon\"", "postgres.pool_wait"),
            (
                "sslmode = \"disable\"\nca_file = \"/x.crt\"",
                "postgres.ca_file",
            ),
        ] {
            let FieldError {
                field: f,
                message: m,
            } = PostgresConfig::from_raw(raw(text)).unwrap_err();
            assert_eq!(f, field, "{text}: {m}");
        }
        assert!(toml::from_str::<RawPostgres>("sslmode = \"prefer\"").is_err());
        let ok = PostgresConfig::from_raw(raw(
            "pool_size = 4\npool_wait = \"2s\"\nsslmode = \"verify-ca\"\nca_file = \"/etc/plantd/db-ca.crt\"",
        ))
        .unwrap();
        assert_eq!(ok.pool_size, 4);
        assert_eq!(ok.pool_wait, Duration::from_secs(2));
        assert_eq!(ok.sslmode, Some(SslMode::VerifyCa));
    }
}
