//! `plant.toml`: the plant daemon's configuration.
//!
//! Parsing happens in two steps, as in rathole's config: serde reads the text into raw types
//! (`deny_unknown_fields`, named defaults), then [`PlantConfig::from_raw`] validates and
//! normalizes into types whose values are always usable. Every error names the file, the line,
//! the field and what to do about it. Nothing here touches the disk except [`load`].

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::field::FieldError;

pub mod alerts;
mod backup;
pub mod identity;
mod odoo;
mod postgres;
mod remote;
mod stack;
pub use alerts::AlertsConfig;
pub use backup::BackupConfig;
pub use odoo::{OdooConfig, TargetError};
pub use postgres::{PostgresConfig, SslMode};
pub use remote::{RemoteAction, RemoteConfig};
pub use stack::{ImageSource, OdooOption, ProbeConfig, ServiceConfig, StackConfig};

/// Where the daemon looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/plantd/plant.toml";
/// The ingest API's default HTTPS address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";

/// A config error, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub field: Option<String>,
    pub message: String,
}

impl ConfigError {
    /// A refused field of `file`, whose text is `text`, at the line that sets it.
    fn at(file: &str, text: &str, FieldError { field, message }: FieldError) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            line: line_of_field(text, &field),
            field: Some(field),
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// How the journal commits: in groups (the default), or one commit per request (for comparison
/// in benchmarks; every ack is durable either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitMode {
    Group,
    PerRequest,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    journal: RawJournal,
    #[serde(default)]
    replication: RawReplication,
    stack: Option<stack::RawStack>,
    #[serde(default)]
    backup: backup::RawBackup,
    #[serde(default)]
    update: RawUpdate,
    #[serde(default)]
    odoo: odoo::RawOdoo,
    apply: Option<RawApply>,
    #[serde(default)]
    http: crate::listen::RawLimits,
    #[serde(default)]
    alerts: alerts::RawAlerts,
    #[serde(default)]
    remote: remote::RawRemote,
    #[serde(default)]
    identity: identity::RawIdentity,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApply {
    local: Option<bool>,
    #[serde(default)]
    kinds: std::collections::BTreeMap<String, crate::kinds::mapping::KindConfig>,
}

/// `[apply]`: what each transaction kind does in Odoo, and whether the plant applies them to
/// its own Odoo. With the section, the ingest API refuses kinds it does not know.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyConfig {
    pub local: bool,
    pub kinds: std::sync::Arc<crate::kinds::mapping::Kinds>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUpdate {
    release_keys: Option<Vec<String>>,
    gate_deadline: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawReplication {
    hubs: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Option<String>,
    listen_plain: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawJournal {
    retention: Option<String>,
    commit: Option<CommitMode>,
    max_group: Option<i64>,
    prune_interval: Option<String>,
    min_free_space: Option<String>,
}

/// Reads the config again, the way `plantd up` read it (for `plantd stack apply` and an
/// update's configured images).
pub type Reload = std::sync::Arc<dyn Fn() -> anyhow::Result<PlantConfig> + Send + Sync>;

/// The validated plant configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct PlantConfig {
    /// Where the journal, TLS material and control socket live.
    pub data_dir: PathBuf,
    pub api: ApiConfig,
    /// `[http]`: timeouts and the connection limit of every HTTP listener.
    pub http: crate::listen::Limits,
    pub journal: JournalConfig,
    /// QUIC addresses of the hub replicas, tried in turn; empty means the ones enrollment
    /// recorded.
    pub hubs: Vec<String>,
    /// The public keys whose signature a release needs (`[update] release_keys`); several, so
    /// that a key can be rotated. Empty: no release is accepted.
    pub release_keys: Vec<crate::release::PublicKey>,
    /// How long a new release may take to pass its health gate (`[update] gate_deadline`).
    pub gate_deadline: Duration,
    /// The supervised Odoo stack; `None` when `plant.toml` has no `[stack]`.
    pub stack: Option<StackConfig>,
    pub backup: BackupConfig,
    /// The plant's Odoo as plantd calls it.
    pub odoo: OdooConfig,
    /// `None` when plant.toml has no `[apply]`: any kind is journaled, none is applied here.
    pub apply: Option<ApplyConfig>,
    /// The file this came from, if any (backups keep a copy of it).
    pub source: Option<PathBuf>,
    /// `[alerts]`: the plant's own alerts (sent from the plant, so they go out with the WAN
    /// to the hub down).
    pub alerts: AlertsConfig,
    /// `[remote]`: the actions the hub may carry out here.
    pub remote: RemoteConfig,
    /// Where people sign in besides the local users (`[identity]`).
    pub identity: identity::IdentityConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    /// HTTPS listener of the ingest API.
    pub listen: SocketAddr,
    /// Optional plain-HTTP listener for legacy devices that cannot do TLS.
    pub listen_plain: Option<SocketAddr>,
    /// A configured certificate and key; `None` means a self-signed pair in `DATA_DIR/tls/`.
    pub tls: Option<TlsFiles>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JournalConfig {
    /// How long a transaction stays after the hub acknowledged it.
    pub retention: Duration,
    pub commit: CommitMode,
    /// Most requests one group commit may carry.
    pub max_group: usize,
    /// How often pruning and WAL checkpointing run.
    pub prune_interval: Duration,
    /// New transactions are refused (507) while less than this many bytes are free.
    pub min_free_bytes: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            retention: Duration::from_secs(7 * 24 * 3600),
            commit: CommitMode::Group,
            max_group: 256,
            prune_interval: Duration::from_secs(60),
            min_free_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The hub's configuration (`hub.toml`); command-line flags override it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    #[serde(default = "default_hub_data_dir")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL, such as "postgres://plantd@db.internal/plantd".
    #[serde(default = "default_database")]
    pub database: String,
    /// HTTPS: enrollment and the fleet API.
    #[serde(default = "default_hub_listen")]
    pub listen: SocketAddr,
    /// UDP: QUIC replication.
    #[serde(default = "default_hub_quic")]
    pub quic: SocketAddr,
    /// The QUIC addresses plants are told to dial ("host:port"); default: the hub's names at
    /// the QUIC port.
    #[serde(default)]
    pub advertise: Vec<String>,
    /// DNS names and IP addresses in the hub's certificate; default: localhost, 127.0.0.1 and
    /// this host's name.
    #[serde(default)]
    pub names: Vec<String>,
    /// How many of each plant's offsite backup copies the hub keeps (`[backups]`: keep_daily,
    /// keep_weekly, keep_monthly; by default 7, 4 and 3, as at the plant).
    #[serde(default)]
    pub backups: crate::retention::Policy,
    /// `[odoo]`, read into [`HubConfig::central`].
    #[serde(default, rename = "odoo")]
    odoo_section: Option<toml::Table>,
    /// `[apply]`, read into [`HubConfig::central`].
    #[serde(default, rename = "apply")]
    apply_section: Option<toml::Table>,
    /// `[http]`, read into [`HubConfig::http`].
    #[serde(default, rename = "http")]
    http_section: Option<toml::Table>,
    /// Timeouts and the connection limit of the HTTPS listener.
    #[serde(skip)]
    pub http: crate::listen::Limits,
    /// The apply to the central Odoo, when `[apply] central = true`.
    #[serde(skip)]
    pub central: Option<CentralApply>,
    /// `[postgres]`, read into [`HubConfig::postgres`].
    #[serde(default, rename = "postgres")]
    postgres_section: Option<toml::Table>,
    /// The connection pool and TLS to the database.
    #[serde(skip)]
    pub postgres: PostgresConfig,
    /// `[logs]`, read into [`HubConfig::logs_keep`].
    #[serde(default, rename = "logs")]
    logs_section: Option<toml::Table>,
    /// How long the plants' log lines are kept (`[logs] keep`, 1 h to 365 d; default 14 d).
    #[serde(skip, default = "default_logs_keep")]
    pub logs_keep: Duration,
    /// `[alerts]`, read into [`HubConfig::alerts`].
    #[serde(default, rename = "alerts")]
    alerts_section: Option<toml::Table>,
    /// The fleet's alerts.
    #[serde(skip)]
    pub alerts: AlertsConfig,
    /// `[identity]`, read into [`HubConfig::identity`].
    #[serde(default, rename = "identity")]
    identity_section: Option<toml::Table>,
    /// Where people sign in to the fleet page besides the hub's local users.
    #[serde(skip)]
    pub identity: identity::IdentityConfig,
}

/// The hub's apply of every plant's transactions to the central Odoo.
#[derive(Debug, Clone, PartialEq)]
pub struct CentralApply {
    pub odoo: OdooConfig,
    pub kinds: std::sync::Arc<crate::kinds::mapping::Kinds>,
    /// Plants applied at once by this hub (each by one replica at a time).
    pub workers: usize,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHubApply {
    central: Option<bool>,
    workers: Option<usize>,
    #[serde(default)]
    kinds: std::collections::BTreeMap<String, crate::kinds::mapping::KindConfig>,
}
fn default_logs_keep() -> Duration {
    Duration::from_secs(14 * 86400)
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLogs {
    keep: Option<String>,
}

fn default_hub_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/plantd-hub")
}
fn default_database() -> String {
    "postgres://postgres@localhost/plantd".into()
}
fn default_hub_listen() -> SocketAddr {
    "0.0.0.0:9443".parse().expect("valid")
}
fn default_hub_quic() -> SocketAddr {
    "0.0.0.0:9444".parse().expect("valid")
}

impl HubConfig {
    pub fn parse(file: &str, text: &str) -> Result<HubConfig, ConfigError> {
        let mut config: HubConfig = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_string(),
            line: e.span().map(|s| line_of_offset(text, s.start)),
            field: e.span().and_then(|s| field_at(text, s.start)),
            message: e.message().trim().to_string(),
        })?;
        let located = |e: FieldError| ConfigError::at(file, text, e);
        let table = |t: &Option<toml::Table>| toml::Value::Table(t.clone().unwrap_or_default());
        let raw_apply: RawHubApply = table(&config.apply_section)
            .try_into()
            .map_err(|e: toml::de::Error| located(FieldError::new("apply", e.message().trim())))?;
        let raw_odoo: odoo::RawOdoo = table(&config.odoo_section)
            .try_into()
            .map_err(|e: toml::de::Error| located(FieldError::new("odoo", e.message().trim())))?;
        let odoo = OdooConfig::from_raw(raw_odoo).map_err(located)?;
        let raw_http: crate::listen::RawLimits = table(&config.http_section)
            .try_into()
            .map_err(|e: toml::de::Error| located(FieldError::new("http", e.message().trim())))?;
        config.http = crate::listen::Limits::from_raw(raw_http).map_err(located)?;
        let raw_postgres: postgres::RawPostgres = table(&config.postgres_section)
            .try_into()
            .map_err(|e: toml::de::Error| {
                located(FieldError::new("postgres", e.message().trim()))
            })?;
        config.postgres = PostgresConfig::from_raw(raw_postgres).map_err(located)?;
        let raw_logs: RawLogs = table(&config.logs_section)
            .try_into()
            .map_err(|e: toml::de::Error| located(FieldError::new("logs", e.message().trim())))?;
        if let Some(keep) = raw_logs.keep {
            let d = parse_duration(&keep)
                .map_err(|m| located(FieldError::new("logs.keep", m.to_string())))?;
            if !(Duration::from_secs(3600)..=Duration::from_secs(365 * 86400)).contains(&d) {
                return Err(located(FieldError::new(
                    "logs.keep",
                    format!("{keep:?} is out of range; use 1h to 365d (default 14d)"),
                )));
            }
            config.logs_keep = d;
        }
        let raw_alerts: alerts::RawAlerts = table(&config.alerts_section)
            .try_into()
            .map_err(|e: toml::de::Error| located(FieldError::new("alerts", e.message().trim())))?;
        config.alerts = AlertsConfig::from_raw(raw_alerts).map_err(located)?;
        let raw_identity: identity::RawIdentity = table(&config.identity_section)
            .try_into()
            .map_err(|e: toml::de::Error| {
                located(FieldError::new("identity", e.message().trim()))
            })?;
        config.identity = identity::IdentityConfig::from_raw(raw_identity).map_err(located)?;
        if raw_apply.central.unwrap_or(false) {
            if odoo.url.is_none() {
                return Err(located(FieldError::new("odoo.url", "missing; [apply] central = true needs the central Odoo's URL, such as \"https://odoo.example.com\"")));
            }
            if odoo.database.is_none() {
                return Err(located(FieldError::new(
                    "odoo.database",
                    "missing; name the central Odoo's database",
                )));
            }
            if odoo.key_file.is_none() {
                return Err(located(FieldError::new(
                    "odoo.key_file",
                    "missing; a file holding the API key of the Odoo user the hub acts as",
                )));
            }
            let workers = match raw_apply.workers {
                None => 4,
                Some(n @ 1..=64) => n,
                Some(n) => {
                    return Err(located(FieldError::new(
                        "apply.workers",
                        format!("{n} is out of range; use 1 to 64 (default 4)"),
                    )))
                }
            };
            // Each apply worker holds a connection while it applies a plant (its advisory
            // lock lives on it): replication and the API need some left.
            if config.postgres.pool_size < workers + 2 {
                return Err(located(FieldError::new(
                    "postgres.pool_size",
                    format!(
                        "{} leaves too few connections: the {workers} apply workers hold one each; use at least {}",
                        config.postgres.pool_size,
                        workers + 2
                    ),
                )));
            }
            let kinds = crate::kinds::mapping::Kinds::new(&raw_apply.kinds).map_err(located)?;
            config.central = Some(CentralApply {
                odoo,
                kinds: std::sync::Arc::new(kinds),
                workers,
            });
        }
        Ok(config)
    }

    /// The named file, or the defaults.
    pub fn load(path: Option<&Path>) -> anyhow::Result<HubConfig> {
        use anyhow::Context;
        match path {
            None => Ok(Self::parse("(defaults)", "").expect("defaults are valid")),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config file {}", p.display()))?;
                let file = p.display().to_string();
                let config = Self::parse(&file, &text)?;
                config
                    .alerts
                    .check_files()
                    .map_err(|e| ConfigError::at(&file, &text, e))?;
                Ok(config)
            }
        }
    }
}

/// The data directory used when neither the config nor the command line names one: the system
/// location for root, a per-user one otherwise, so that a first try without root just works.
pub fn default_data_dir() -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if is_root {
        return PathBuf::from("/var/lib/plantd");
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("plantd");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/plantd"),
        None => PathBuf::from("plantd-data"),
    }
}

impl PlantConfig {
    /// Parses and validates `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<PlantConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of_offset(text, s.start));
            let field = e.span().and_then(|s| field_at(text, s.start));
            ConfigError {
                file: file.to_string(),
                line,
                field,
                message: e.message().trim().to_string(),
            }
        })?;
        Self::from_raw(raw).map_err(|e| ConfigError::at(file, text, e))
    }

    fn from_raw(raw: RawConfig) -> Result<PlantConfig, FieldError> {
        let err = |field: &str, msg: String| FieldError::new(field, msg);
        let data_dir = match raw.data_dir {
            Some(d) if d.as_os_str().is_empty() => {
                return Err(err(
                    "data_dir",
                    "empty; set a directory such as \"/var/lib/plantd\"".into(),
                ))
            }
            Some(d) if d.is_relative() => {
                return Err(err(
                    "data_dir",
                    format!(
                        "{:?} is relative; use an absolute path such as \"/var/lib/plantd\"",
                        d
                    ),
                ))
            }
            Some(d) => d,
            None => default_data_dir(),
        };
        let listen = parse_addr(raw.api.listen.as_deref().unwrap_or(DEFAULT_LISTEN))
            .map_err(|m| err("api.listen", m.to_string()))?;
        let listen_plain = match raw.api.listen_plain.as_deref() {
            None | Some("") => None,
            Some(a) => Some(parse_addr(a).map_err(|m| err("api.listen_plain", m.to_string()))?),
        };
        if listen_plain.is_some_and(|p| p.port() == listen.port() && p.ip() == listen.ip()) {
            return Err(err(
                "api.listen_plain",
                "is the same address as api.listen; pick another port such as 8080".into(),
            ));
        }
        let tls = match (raw.api.tls_cert, raw.api.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (Some(_), None) => {
                return Err(err(
                    "api.tls_key",
                    "missing; api.tls_cert needs its private key (PEM)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(err(
                    "api.tls_cert",
                    "missing; api.tls_key needs its certificate chain (PEM)".into(),
                ))
            }
        };
        let defaults = JournalConfig::default();
        let retention = match raw.journal.retention.as_deref() {
            None => defaults.retention,
            Some(s) => parse_duration(s).map_err(|m| err("journal.retention", m.to_string()))?,
        };
        let prune_interval = match raw.journal.prune_interval.as_deref() {
            None => defaults.prune_interval,
            Some(s) => match parse_duration(s) {
                Ok(d) if d >= Duration::from_millis(100) => d,
                Ok(_) => {
                    return Err(err(
                        "journal.prune_interval",
                        "too short; use at least \"100ms\"".into(),
                    ))
                }
                Err(m) => return Err(err("journal.prune_interval", m.to_string())),
            },
        };
        let max_group = match raw.journal.max_group {
            None => defaults.max_group,
            Some(n @ 1..=10_000) => n as usize,
            Some(n) => {
                return Err(err(
                    "journal.max_group",
                    format!("{n} is out of range; use 1 to 10000 (default 256)"),
                ))
            }
        };
        let min_free_bytes = match raw.journal.min_free_space.as_deref() {
            None => defaults.min_free_bytes,
            Some(s) => parse_size(s).map_err(|m| err("journal.min_free_space", m.to_string()))?,
        };
        let hubs = raw.replication.hubs.unwrap_or_default();
        if let Some(bad) = hubs.iter().find(|h| {
            h.rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        }) {
            return Err(err(
                "replication.hubs",
                format!("{bad:?} is not HOST:PORT; use one such as \"hub-a.example.com:9444\""),
            ));
        }
        let stack = raw.stack.map(StackConfig::from_raw).transpose()?.flatten();
        let backup = BackupConfig::from_raw(raw.backup)?;
        let odoo = OdooConfig::from_raw(raw.odoo)?;
        let apply = match raw.apply {
            None => None,
            Some(a) => Some(ApplyConfig {
                local: a.local.unwrap_or(false),
                kinds: std::sync::Arc::new(crate::kinds::mapping::Kinds::new(&a.kinds)?),
            }),
        };
        let release_keys = raw
            .update
            .release_keys
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, k)| {
                crate::release::PublicKey::parse(k)
                    .map_err(|e| err("update.release_keys", format!("entry {}: {e}", i + 1)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let gate_deadline = match raw.update.gate_deadline.as_deref() {
            None => Duration::from_secs(120),
            Some(text) => humantime::parse_duration(text)
                .ok()
                .filter(|d| (Duration::from_secs(5)..=Duration::from_secs(3600)).contains(d))
                .ok_or_else(|| {
                    err(
                        "update.gate_deadline",
                        format!("{text:?} is not a duration from 5s to 1h, such as \"2m\""),
                    )
                })?,
        };
        let http = crate::listen::Limits::from_raw(raw.http)?;
        let alerts = AlertsConfig::from_raw(raw.alerts)?;
        let remote = RemoteConfig::from_raw(raw.remote)?;
        let identity = identity::IdentityConfig::from_raw(raw.identity)?;
        // A plant is one plant: the hub's per-plant scope has no meaning here.
        for (section, scoped) in [
            (
                "ldap",
                identity
                    .ldap
                    .as_ref()
                    .is_some_and(|l| !l.plants.0.is_empty()),
            ),
            (
                "oidc",
                identity
                    .oidc
                    .as_ref()
                    .is_some_and(|o| !o.plants.0.is_empty()),
            ),
        ] {
            if scoped {
                return Err(FieldError::new(
                    format!("identity.{section}.plants"),
                    "is read at the hub only (which plants a group sees on the fleet page); remove it from plant.toml",
                ));
            }
        }
        Ok(PlantConfig {
            identity,
            alerts,
            http,
            remote,
            backup,
            odoo,
            apply,
            release_keys,
            gate_deadline,
            source: None,
            data_dir,
            hubs,
            stack,
            api: ApiConfig {
                listen,
                listen_plain,
                tls,
            },
            journal: JournalConfig {
                retention,
                commit: raw.journal.commit.unwrap_or(defaults.commit),
                max_group,
                prune_interval,
                min_free_bytes,
            },
        })
    }

    /// The configuration used when there is no config file at all.
    pub fn defaults() -> PlantConfig {
        Self::from_raw(RawConfig::default()).expect("the built-in defaults are valid")
    }
}

/// Reads the config: the named file (which must exist), else `/etc/plantd/plant.toml` if it
/// exists, else the defaults.
pub fn load(path: Option<&Path>) -> anyhow::Result<PlantConfig> {
    use anyhow::Context;
    let path = match path {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => PathBuf::from(DEFAULT_CONFIG_PATH),
        None => return Ok(PlantConfig::defaults()),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let mut config = PlantConfig::parse(&path.display().to_string(), &text)?;
    config.read_files(&path.display().to_string(), &text)?;
    config.source = Some(path);
    Ok(config)
}

impl PlantConfig {
    /// Reads the files the config names for secrets (`[stack.odoo.options]` `{ file = ... }`);
    /// `file` and `text` locate errors. [`PlantConfig::parse`] never touches the disk.
    pub fn read_files(&mut self, file: &str, text: &str) -> Result<(), ConfigError> {
        if let Some(stack) = self.stack.as_mut() {
            stack
                .read_option_files()
                .map_err(|e| ConfigError::at(file, text, e))?;
        }
        self.alerts
            .check_files()
            .map_err(|e| ConfigError::at(file, text, e))?;
        Ok(())
    }
}

/// Why a config value does not parse: the "what" of a field's error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("{0:?} is not an address with a port; use one such as \"0.0.0.0:8443\"")]
    Addr(String),
    #[error("{0:?} is not a size; use one such as \"64MiB\" or \"1GiB\"")]
    Size(String),
    #[error("{text:?} is not a duration ({error}); use one such as \"7d\" or \"12h\"")]
    Duration {
        text: String,
        error: humantime::DurationError,
    },
}

fn parse_addr(s: &str) -> Result<SocketAddr, ValueError> {
    s.parse().map_err(|_| ValueError::Addr(s.to_string()))
}

fn parse_size(s: &str) -> Result<u64, ValueError> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| ValueError::Size(s.to_string()))
}

fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    humantime::parse_duration(s).map_err(|error| ValueError::Duration {
        text: s.to_string(),
        error,
    })
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted name of the key at `offset`, from the nearest `[table]` header above it.
fn field_at(text: &str, offset: usize) -> Option<String> {
    let line_start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?.trim();
    let key = line.split('=').next()?.trim();
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_string(),
    })
}

/// The line on which the dotted field is set, if it is set in the text.
fn line_of_field(text: &str, field: &str) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut parts = field.split('.').peekable();
    while let Some(part) = parts.next() {
        let value = table.get(part)?;
        if parts.peek().is_none() {
            return Some(line_of_offset(text, value.span().start));
        }
        match value.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = PlantConfig::parse("plant.toml", "").unwrap();
        assert_eq!(c.api.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(c.api.listen_plain, None);
        assert_eq!(c.journal.retention, Duration::from_secs(604_800));
        assert_eq!(c.journal.commit, CommitMode::Group);
    }

    #[test]
    fn the_installed_hub_toml_documents_the_defaults() {
        let installed =
            HubConfig::parse("installer/hub.toml", include_str!("../installer/hub.toml"))
                .unwrap_or_else(|e| panic!("{e}"));
        let mut defaults = HubConfig::parse("hub.toml", "").unwrap();
        // The sections the file writes out are read into their own fields.
        defaults.http_section = installed.http_section.clone();
        defaults.postgres_section = installed.postgres_section.clone();
        defaults.alerts_section = installed.alerts_section.clone();
        assert_eq!(installed, defaults);
    }

    #[test]
    fn full_file_parses() {
        let text = r#"
data_dir = "/srv/plantd"
[api]
listen = "127.0.0.1:9000"
listen_plain = "127.0.0.1:8080"
[journal]
retention = "2d"
commit = "per_request"
max_group = 64
"#;
        let c = PlantConfig::parse("plant.toml", text).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/plantd"));
        assert_eq!(c.api.listen_plain, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(c.journal.retention, Duration::from_secs(2 * 86_400));
        assert_eq!(c.journal.commit, CommitMode::PerRequest);
        assert_eq!(c.journal.max_group, 64);
    }

    #[test]
    fn stack_section_turns_supervision_on() {
        assert_eq!(PlantConfig::parse("p", "").unwrap().stack, None);
        let c = PlantConfig::parse("p", "[stack]\n").unwrap().stack.unwrap();
        assert_eq!(c.name, "plantd");
        assert_eq!(c.network, "plantd-net");
        assert_eq!(c.images, ImageSource::Official);
        assert_eq!(c.ingress, Some("0.0.0.0:443".parse().unwrap()));
        assert_eq!(c.odoo_workers, 4);
        assert_eq!(c.odoo.probe.timeout, Duration::from_secs(5));
        assert_eq!(c.odoo.probe.busy_limit, Duration::from_secs(600));
        assert_eq!(c.odoo.probe.retries, 3);
        let off = PlantConfig::parse("p", "[stack]\nenabled = false\n").unwrap();
        assert_eq!(off.stack, None);
        let text = "[stack]\nname = \"lyon\"\nimages = \"local\"\n[stack.ingress]\nlisten = \"off\"\n[stack.postgres]\nmemory = \"1GiB\"\ncpus = 1.5\nvolumes = [\"/srv/pg:/var/lib/postgresql/data\"]\n";
        let c = PlantConfig::parse("p", text).unwrap().stack.unwrap();
        assert_eq!(
            (c.name.as_str(), c.images, c.ingress),
            ("lyon", ImageSource::Local, None)
        );
        assert_eq!(c.postgres.memory, Some(1 << 30));
        assert_eq!(c.postgres.cpus, Some(1.5));
    }

    #[test]
    fn errors_name_line_and_field() {
        let cases: &[(&str, usize, &str, &str)] = &[
            (
                "[api]\nlisten = \"nope\"\n",
                2,
                "api.listen",
                "not an address",
            ),
            (
                "\n\n[journal]\nretention = \"forever\"\n",
                4,
                "journal.retention",
                "not a duration",
            ),
            (
                "[api]\nlisten_plain = \"0.0.0.0:8443\"\n",
                2,
                "api.listen_plain",
                "same address",
            ),
            (
                "[journal]\nmax_group = 0\n",
                2,
                "journal.max_group",
                "out of range",
            ),
            (
                "[api]\ntls_cert = \"/x.pem\"\n",
                1,
                "api.tls_key",
                "missing",
            ),
            (
                "[api]\nlisen = \"1.2.3.4:5\"\n",
                2,
                "api.lisen",
                "unknown field",
            ),
            ("data_dir = \"rel/dir\"\n", 1, "data_dir", "relative"),
            (
                "[journal]\ncommit = \"sometimes\"\n",
                2,
                "journal.commit",
                "unknown variant",
            ),
            (
                "[replication]\nhubs = [\"nohost\"]\n",
                2,
                "replication.hubs",
                "not HOST:PORT",
            ),
            (
                "[journal]\nmin_free_space = \"lots\"\n",
                2,
                "journal.min_free_space",
                "not a size",
            ),
            (
                "[stack]\nname = \"Plant A\"\n",
                2,
                "stack.name",
                "not a usable name",
            ),
            (
                "[stack]\nimages = \"cloud\"\n",
                2,
                "stack.images",
                "unknown variant",
            ),
            (
                "[stack.ingress]\nlisten = \"443\"\n",
                2,
                "stack.ingress.listen",
                "not an address",
            ),
            (
                "[stack.odoo]\nworkers = 500\n",
                2,
                "stack.odoo.workers",
                "too many",
            ),
            (
                "[stack.redis]\nworkers = 2\n",
                2,
                "stack.redis.workers",
                "only Odoo",
            ),
            (
                "[stack.postgres]\nvolumes = [\"pgdata\"]\n",
                2,
                "stack.postgres.volumes",
                "SOURCE:/TARGET",
            ),
            (
                "[stack.postgres]\nmemory = \"a lot\"\n",
                2,
                "stack.postgres.memory",
                "not a size",
            ),
            (
                "[stack.redis]\ncpus = 0\n",
                2,
                "stack.redis.cpus",
                "out of range",
            ),
            (
                "[stack.odoo.probe]\nretries = 0\n",
                2,
                "stack.odoo.probe.retries",
                "out of range",
            ),
            (
                "[stack.odoo.probe]\ninterval = \"1ms\"\n",
                2,
                "stack.odoo.probe.interval",
                "too short",
            ),
            (
                "[stack.odoo]\nenv = { \"A=B\" = \"x\" }\n",
                2,
                "stack.odoo.env",
                "not an environment variable",
            ),
            (
                "[stack.odoo.options]\nlimit_time_real = 600\n\"Limit-Time\" = 1\n",
                3,
                "stack.odoo.options.Limit-Time",
                "not a key of Odoo's config",
            ),
            (
                "[stack.odoo.options]\nsmtp_server = \"mail\"\nadmin_passwd = \"x\"\n",
                3,
                "stack.odoo.options.admin_passwd",
                "plantd sets admin_passwd itself and it cannot be overridden: plantd generates",
            ),
            (
                "[stack.odoo.options]\nworkers = 8\n",
                2,
                "stack.odoo.options.workers",
                "set it with stack.odoo.workers",
            ),
            (
                "[stack.odoo.options]\nlist_db = true\n",
                2,
                "stack.odoo.options.list_db",
                "the database manager stays off",
            ),
            (
                "[stack.odoo.options]\nsmtp_user = \"a\\nb\"\n",
                2,
                "stack.odoo.options.smtp_user",
                "line break",
            ),
            (
                "[stack.odoo.options]\naddons_path = [\"/mnt/extra-addons\"]\n",
                2,
                "stack.odoo.options.addons_path",
                "a array is not an option value",
            ),
            (
                "[stack.odoo.options]\nsmtp_password = { file = \"smtp.pass\" }\n",
                2,
                "stack.odoo.options.smtp_password",
                "relative",
            ),
            (
                "[stack.odoo.options]\nsmtp_password = { path = \"/x\" }\n",
                2,
                "stack.odoo.options.smtp_password",
                "must be { file = \"/path\" }",
            ),
            (
                "[stack.redis.options]\nmaxmemory = 1\n",
                1,
                "stack.redis.options",
                "only Odoo has options",
            ),
            (
                "[stack]\nsurprise = 1\n",
                2,
                "stack.surprise",
                "unknown field",
            ),
            (
                "[backup]\nschedule = \"daily 25:00\"\n",
                2,
                "backup.schedule",
                "the hour must be 00 to 23",
            ),
            (
                "[backup]\nschedule = \"weekly\"\n",
                2,
                "backup.schedule",
                "\"daily 02:00\" or \"off\"",
            ),
            (
                "[backup]\nkeep_daily = -1\n",
                2,
                "backup.keep_daily",
                "invalid value",
            ),
            (
                "[backup]\ntimezone = \"Mars/Olympus\"\n",
                2,
                "backup.timezone",
                "not a time zone",
            ),
            (
                "[backup]\nencrypt_to = [\"age1nope\"]\n",
                2,
                "backup.encrypt_to",
                "not an age recipient",
            ),
            (
                "[update]\nrelease_keys = [\"ssh-ed25519 AAAA\"]\n",
                2,
                "update.release_keys",
                "entry 1: \"ssh-ed25519 AAAA\" is not a release public key",
            ),
            (
                "[update]\ngate_deadline = \"1s\"\n",
                2,
                "update.gate_deadline",
                "\"1s\" is not a duration from 5s to 1h",
            ),
        ];
        for (text, line, field, msg) in cases {
            let e = PlantConfig::parse("plant.toml", text).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(*field), "{text}: {e}");
            assert!(e.message.contains(msg), "{text}: {e}");
            if *field != "api.tls_key" {
                assert_eq!(e.line, Some(*line), "{text}: {e}");
            }
            assert!(e.to_string().starts_with("plant.toml:"), "{e}");
        }
    }
}

#[cfg(test)]
mod odoo_options {
    use super::*;

    const TEXT: &str = "[stack]\n[stack.odoo.options]\naddons_path = \"/usr/lib/python3/dist-packages/odoo/addons,/mnt/extra-addons\"\nlimit_time_real = 600\nproxy_ssl = true\nsmtp_server = \"mail.plant.example\"\n";

    #[test]
    fn options_are_kept_with_odoos_spelling() {
        let c = PlantConfig::parse("plant.toml", TEXT).unwrap();
        let o = c.stack.unwrap().odoo_options;
        assert_eq!(o["limit_time_real"], OdooOption::Text("600".into()));
        assert_eq!(o["proxy_ssl"], OdooOption::Text("True".into()));
        assert_eq!(
            o["addons_path"],
            OdooOption::Text("/usr/lib/python3/dist-packages/odoo/addons,/mnt/extra-addons".into())
        );
    }

    #[test]
    fn a_file_secret_is_read_at_load_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("smtp.pass");
        std::fs::write(&secret, "s3cret-smtp\n").unwrap();
        let text = format!(
            "{TEXT}smtp_password = {{ file = \"{}\" }}\n",
            secret.display()
        );
        let file = dir.path().join("plant.toml");
        std::fs::write(&file, &text).unwrap();
        // Parsing alone reads nothing.
        let parsed = PlantConfig::parse("plant.toml", &text).unwrap();
        assert_eq!(
            parsed.stack.unwrap().odoo_options["smtp_password"],
            OdooOption::File {
                path: secret.clone(),
                secret: None
            }
        );
        let c = load(Some(&file)).unwrap();
        let stack = c.stack.clone().unwrap();
        assert_eq!(
            stack.odoo_options["smtp_password"],
            OdooOption::File {
                path: secret.clone(),
                secret: Some("s3cret-smtp".into())
            }
        );
        // Debug output (what a log would show) has neither the secret nor other values.
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret-smtp"), "{shown}");
        assert!(!shown.contains("mail.plant.example"), "{shown}");
        // Odoo's config file has it, after plantd's own keys.
        let data = tempfile::tempdir().unwrap();
        let spec = crate::stack::spec::build(&stack, data.path()).unwrap();
        let conf = &spec.odoo_conf.1;
        assert!(conf.contains("\nsmtp_password = s3cret-smtp\n"), "{conf}");
        assert!(conf.contains("\nlimit_time_real = 600\n"), "{conf}");
        assert!(conf.contains("\nlist_db = False\n"), "{conf}");
        assert!(conf.find("list_db").unwrap() < conf.find("smtp_password").unwrap());
        // plantd's own module stays on the addons path after the plant's.
        assert!(
            conf.contains("\naddons_path = /usr/lib/python3/dist-packages/odoo/addons,/mnt/extra-addons,/mnt/plantd-addons\n"),
            "{conf}"
        );
        assert_eq!(conf.matches("addons_path").count(), 1, "{conf}");
        // ... and is written where the stack mounts it, readable by Odoo's own user.
        spec.write_files(None).unwrap();
        let module = data
            .path()
            .join("stack/addons/plantd_apply/models/plantd_apply.py");
        let text = std::fs::read_to_string(&module).unwrap();
        assert!(text.contains("_name = \"plantd.apply\""), "{text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&module).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        let odoo = spec.get(crate::stack::spec::Service::Odoo);
        assert!(odoo.mounts.iter().any(|m| m.target == "/mnt/plantd-addons"
            && m.read_only
            && m.source.ends_with("stack/addons")));
        // Without one of the plant's, it is the addons path.
        let bare = PlantConfig::parse("plant.toml", "[stack]\n")
            .unwrap()
            .stack
            .unwrap();
        let bare = crate::stack::spec::build(&bare, data.path()).unwrap();
        assert!(
            bare.odoo_conf
                .1
                .contains("\naddons_path = /mnt/plantd-addons\n"),
            "{}",
            bare.odoo_conf.1
        );
    }

    #[test]
    fn a_missing_or_multiline_secret_file_is_a_located_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pass");
        let text = format!(
            "[stack]\n\n[stack.odoo.options]\nsmtp_password = {{ file = \"{}\" }}\n",
            missing.display()
        );
        let file = dir.path().join("plant.toml");
        std::fs::write(&file, &text).unwrap();
        let e = load(Some(&file)).unwrap_err();
        let e = e.downcast_ref::<ConfigError>().expect("a config error");
        assert_eq!(e.line, Some(4), "{e}");
        assert_eq!(e.field.as_deref(), Some("stack.odoo.options.smtp_password"));
        assert!(e.message.contains("nope.pass"), "{e}");
        std::fs::write(&missing, "two\nlines\n").unwrap();
        let e = load(Some(&file)).unwrap_err().to_string();
        assert!(e.contains(":4: stack.odoo.options.smtp_password: "), "{e}");
        assert!(e.contains("one line"), "{e}");
        assert!(!e.contains("two"), "the content is never shown: {e}");
    }

    #[test]
    fn remote_allows_every_action_by_default_and_only_the_listed_ones_when_set() {
        let all = PlantConfig::parse("plant.toml", "").unwrap();
        for a in RemoteAction::ALL {
            assert!(all.remote.allows(a), "{a}");
        }
        let none = PlantConfig::parse("plant.toml", "[remote]\nallow = []\n").unwrap();
        assert!(RemoteAction::ALL.iter().all(|a| !none.remote.allows(*a)));
        let some = PlantConfig::parse(
            "plant.toml",
            "[remote]\nallow = [\"diagnostics\", \"backup\", \"diagnostics\"]\n",
        )
        .unwrap();
        assert_eq!(
            some.remote.allow,
            vec![RemoteAction::Diagnostics, RemoteAction::Backup]
        );
        assert!(!some.remote.allows(RemoteAction::Restart));
    }

    #[test]
    fn remote_refuses_an_unknown_action_with_its_line() {
        let text = "[journal]\nretention = \"1d\"\n\n[remote]\nallow = [\"backup\", \"reboot\"]\n";
        let e = PlantConfig::parse("plant.toml", text).unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert_eq!(e.field.as_deref(), Some("remote.allow"));
        let shown = e.to_string();
        assert!(
            shown.starts_with("plant.toml:5: remote.allow: \"reboot\" is not a remote action"),
            "{shown}"
        );
        assert!(shown.contains("apply_park"), "names the actions: {shown}");
        let e = PlantConfig::parse("plant.toml", "[remote]\ndeny = [\"backup\"]\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        let e = PlantConfig::parse("plant.toml", "[remote]\nallow = \"backup\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text is a config or an error that names the file; never a panic.
        #[test]
        fn any_text_parses_or_fails_with_a_located_error(
            text in prop_oneof![
                ".{0,200}",
                "(\\[(api|journal|x)\\]\n)?([a-z_]{1,12} = (\"[^\"\n]{0,20}\"|[0-9]{1,6}|true)\n){0,4}",
            ]
        ) {
            if let Err(e) = PlantConfig::parse("p.toml", &text) {
                prop_assert!(e.to_string().starts_with("p.toml"));
                prop_assert!(!e.message.is_empty());
            }
        }
    }
}
