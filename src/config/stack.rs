//! The `[stack]` section of `plant.toml`: the plant's Odoo, PostgreSQL and Redis containers.
//!
//! The section's presence turns supervision on (`enabled = false` turns it off again); with no
//! `[stack]` the daemon runs the journal alone, which is what a plant without a local Odoo (or a
//! first try on a laptop) wants.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{parse_addr, parse_duration, parse_size};
use crate::field::FieldError;

/// Where the stack's images come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// The official images at pinned versions, pulled from the registry the Docker engine is
    /// configured with, or loaded beforehand with `plantd images load`.
    Official,
    /// Images built on this machine by `images/build-local.sh` from Debian's packages; Odoo is
    /// then the emulator (Odoo is not packaged by Debian). Never pulled.
    Local,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStack {
    enabled: Option<bool>,
    name: Option<String>,
    images: Option<ImageSource>,
    network: Option<String>,
    docker_socket: Option<PathBuf>,
    upgrade_deadline: Option<String>,
    #[serde(default)]
    ingress: RawIngress,
    #[serde(default)]
    postgres: RawService,
    #[serde(default)]
    redis: RawService,
    #[serde(default)]
    odoo: RawService,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawIngress {
    listen: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawService {
    image: Option<String>,
    env: Option<BTreeMap<String, String>>,
    volumes: Option<Vec<String>>,
    memory: Option<String>,
    cpus: Option<f64>,
    #[serde(default)]
    probe: RawProbe,
    // Odoo only.
    workers: Option<u32>,
    database: Option<String>,
    options: Option<BTreeMap<String, toml::Value>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    interval: Option<String>,
    timeout: Option<String>,
    start_period: Option<String>,
    retries: Option<u32>,
    busy_limit: Option<String>,
}

/// The validated `[stack]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct StackConfig {
    /// Names the containers (`NAME-postgres`), the network and the volumes, and labels them, so
    /// that several stacks share one Docker engine without touching each other.
    pub name: String,
    pub images: ImageSource,
    /// The private network the three services share; default `NAME-net`.
    pub network: String,
    /// The Docker engine's socket; default `DOCKER_HOST` or `/var/run/docker.sock`.
    pub docker_socket: Option<PathBuf>,
    /// How long an upgraded service has to become healthy before the old image comes back.
    pub upgrade_deadline: Duration,
    /// Odoo's TLS ingress; `None` when `stack.ingress.listen = "off"`.
    pub ingress: Option<SocketAddr>,
    pub postgres: ServiceConfig,
    pub redis: ServiceConfig,
    pub odoo: ServiceConfig,
    pub odoo_workers: u32,
    /// The Odoo database's name.
    pub odoo_database: String,
    /// `[stack.odoo.options]`: more keys for Odoo's config file, by name.
    pub odoo_options: BTreeMap<String, OdooOption>,
}

/// One value of `[stack.odoo.options]`.
#[derive(Clone, PartialEq)]
pub enum OdooOption {
    /// Written as given (a bool as Odoo writes one: `True`, `False`).
    Text(String),
    /// `{ file = "/etc/plantd/smtp.pass" }`: the file's content, a secret. Read by
    /// [`crate::config::load`] (`secret` is `None` until then); never logged or printed.
    File {
        path: PathBuf,
        secret: Option<String>,
    },
}

/// Values of options are left out: some are passwords.
impl std::fmt::Debug for OdooOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OdooOption::Text(_) => f.write_str("Text(***)"),
            OdooOption::File { path, .. } => write!(f, "File({}, ***)", path.display()),
        }
    }
}

/// The keys of Odoo's config that plantd writes itself, and why no option may change them.
const OWNED_OPTIONS: &[(&str, &str)] = &[
    ("db_host", "plantd connects Odoo to the stack's PostgreSQL"),
    ("db_port", "plantd connects Odoo to the stack's PostgreSQL"),
    (
        "db_user",
        "plantd connects Odoo to the stack's PostgreSQL as its own user",
    ),
    (
        "db_password",
        "plantd generates the database password (DATA_DIR/stack/secrets.json)",
    ),
    ("db_name", "set it with stack.odoo.database"),
    (
        "dbfilter",
        "plantd serves the one database of stack.odoo.database",
    ),
    (
        "admin_passwd",
        "plantd generates Odoo's master password (DATA_DIR/stack/secrets.json)",
    ),
    (
        "proxy_mode",
        "Odoo runs behind plantd's ingress, which needs it on",
    ),
    (
        "list_db",
        "the database manager stays off, so that nobody can drop or download a database through it",
    ),
    (
        "data_dir",
        "the filestore is the Odoo volume, which backups and restores read",
    ),
    ("http_port", "plantd's probe and ingress reach Odoo on 8069"),
    ("gevent_port", "plantd's ingress sends /websocket to 8072"),
    ("workers", "set it with stack.odoo.workers"),
];

/// Checks `[stack.odoo.options]`; errors name the key.
fn odoo_options(
    raw: Option<BTreeMap<String, toml::Value>>,
) -> Result<BTreeMap<String, OdooOption>, FieldError> {
    let mut options = BTreeMap::new();
    for (key, value) in raw.unwrap_or_default() {
        let field = format!("stack.odoo.options.{key}");
        let valid_key = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid_key {
            return Err(err(
                &field,
                format!("{key:?} is not a key of Odoo's config; use lowercase letters, digits and '_', such as \"limit_time_real\""),
            ));
        }
        if let Some((_, why)) = OWNED_OPTIONS.iter().find(|(k, _)| *k == key) {
            return Err(err(
                &field,
                format!("plantd sets {key} itself and it cannot be overridden: {why}"),
            ));
        }
        let option = match value {
            toml::Value::String(s) if s.contains(['\n', '\r']) => {
                return Err(err(
                    &field,
                    "has a line break; Odoo's config takes one line per key".into(),
                ))
            }
            toml::Value::String(s) => OdooOption::Text(s),
            toml::Value::Integer(n) => OdooOption::Text(n.to_string()),
            toml::Value::Float(x) => OdooOption::Text(x.to_string()),
            toml::Value::Boolean(b) => OdooOption::Text(if b { "True" } else { "False" }.into()),
            toml::Value::Table(t) => match (t.get("file"), t.len()) {
                (Some(toml::Value::String(path)), 1) if path.starts_with('/') => {
                    OdooOption::File {
                        path: PathBuf::from(path),
                        secret: None,
                    }
                }
                (Some(toml::Value::String(path)), 1) => {
                    return Err(err(
                        &field,
                        format!("file {path:?} is relative; use an absolute path such as \"/etc/plantd/smtp.pass\""),
                    ))
                }
                _ => {
                    return Err(err(
                        &field,
                        "a table must be { file = \"/path\" }: a file holding the value (a secret)".into(),
                    ))
                }
            },
            other => {
                return Err(err(
                    &field,
                    format!("a {} is not an option value; use a string, a number, true or false, or {{ file = \"/path\" }}", other.type_str()),
                ))
            }
        };
        options.insert(key, option);
    }
    Ok(options)
}

impl StackConfig {
    /// Reads the files of `{ file = ... }` options. The value is the file's content without
    /// its final line break; it must be one line. The error names the option and the file,
    /// never the content.
    pub fn read_option_files(&mut self) -> Result<(), FieldError> {
        for (key, option) in self.odoo_options.iter_mut() {
            let OdooOption::File { path, secret } = option else {
                continue;
            };
            let field = format!("stack.odoo.options.{key}");
            let text = std::fs::read_to_string(&*path).map_err(|e| {
                err(
                    &field,
                    format!("reading {}: {e}; put the value in that file (mode 0600, readable by plantd)", path.display()),
                )
            })?;
            let value = text.strip_suffix('\n').unwrap_or(&text);
            let value = value.strip_suffix('\r').unwrap_or(value);
            if value.is_empty() || value.contains(['\n', '\r']) {
                return Err(err(
                    &field,
                    format!(
                        "{} must hold the value on one line, not empty",
                        path.display()
                    ),
                ));
            }
            *secret = Some(value.to_string());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// `None`: the image the source gives (see [`ImageSource`]).
    pub image: Option<String>,
    /// Added to (and overriding) the environment plantd sets.
    pub env: BTreeMap<String, String>,
    /// `SOURCE:TARGET[:ro]`, replacing the default volume; a SOURCE without `/` is a named
    /// volume that plantd creates and labels.
    pub volumes: Option<Vec<String>>,
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub probe: ProbeConfig,
}

/// How plantd's own probe judges a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeConfig {
    pub interval: Duration,
    pub timeout: Duration,
    /// Failures in this time after a start do not count.
    pub start_period: Duration,
    /// Consecutive failures that make the service unhealthy.
    pub retries: u32,
    /// How long a service that does not answer but is working (Odoo with requests in progress
    /// in PostgreSQL) is left alone before that counts as failing.
    pub busy_limit: Duration,
}

/// Odoo's HTTP workers on a 2-core plant server. A worker waiting on PostgreSQL (a lock, a
/// disk) holds memory, not a CPU: with 2, two slow requests took every worker and the terminals
/// waited behind them. Odoo's rule of thumb (2 x CPUs + 1 = 5) assumes PostgreSQL elsewhere;
/// here it shares the 2 cores, so one less.
pub const DEFAULT_ODOO_WORKERS: u32 = 4;

fn err(field: &str, msg: String) -> FieldError {
    FieldError::new(field, msg)
}

impl StackConfig {
    pub(super) fn from_raw(raw: RawStack) -> Result<Option<StackConfig>, FieldError> {
        if raw.enabled == Some(false) {
            return Ok(None);
        }
        let name = raw.name.unwrap_or_else(|| "plantd".to_string());
        if !valid_name(&name) {
            return Err(err(
                "stack.name",
                format!("{name:?} is not a usable name; use 1 to 40 lowercase letters, digits, '-' or '_', starting with a letter or digit, such as \"plant-lyon\""),
            ));
        }
        let network = raw.network.unwrap_or_else(|| format!("{name}-net"));
        if !valid_name(&network) {
            return Err(err(
                "stack.network",
                format!("{network:?} is not a usable network name; use lowercase letters, digits, '-' or '_'"),
            ));
        }
        let upgrade_deadline = match raw.upgrade_deadline.as_deref() {
            None => Duration::from_secs(180),
            Some(s) => {
                parse_duration(s).map_err(|m| err("stack.upgrade_deadline", m.to_string()))?
            }
        };
        let ingress = match raw.ingress.listen.as_deref() {
            None => Some(parse_addr("0.0.0.0:443").expect("valid")),
            Some("off") => None,
            Some(a) => Some(parse_addr(a).map_err(|m| err("stack.ingress.listen", m.to_string()))?),
        };
        let odoo_workers = raw.odoo.workers.unwrap_or(DEFAULT_ODOO_WORKERS);
        if odoo_workers > 64 {
            return Err(err(
                "stack.odoo.workers",
                format!("{odoo_workers} is too many; use 0 to 64 ({DEFAULT_ODOO_WORKERS} fits a 2-core plant server)"),
            ));
        }
        let odoo_database = raw.odoo.database.clone().unwrap_or_else(|| "odoo".into());
        if !valid_name(&odoo_database) {
            return Err(err(
                "stack.odoo.database",
                format!("{odoo_database:?} is not a usable database name; use lowercase letters, digits, '-' or '_'"),
            ));
        }
        for (svc, raw) in [("postgres", &raw.postgres), ("redis", &raw.redis)] {
            if raw.workers.is_some() {
                return Err(err(
                    &format!("stack.{svc}.workers"),
                    "only Odoo has workers; move it to [stack.odoo]".into(),
                ));
            }
            if raw.database.is_some() {
                return Err(err(
                    &format!("stack.{svc}.database"),
                    "only Odoo has a database name; move it to [stack.odoo]".into(),
                ));
            }
            if raw.options.is_some() {
                return Err(err(
                    &format!("stack.{svc}.options"),
                    "only Odoo has options; move them to [stack.odoo.options]".into(),
                ));
            }
        }
        let odoo_options = odoo_options(raw.odoo.options.clone())?;
        let secs = Duration::from_secs;
        let probe = |timeout, start_period| ProbeDefaults {
            timeout: secs(timeout),
            start_period: secs(start_period),
        };
        Ok(Some(StackConfig {
            postgres: service("postgres", raw.postgres, probe(3, 60))?,
            redis: service("redis", raw.redis, probe(3, 20))?,
            // Odoo's first start on a new database takes a while (it installs `base`). Its
            // /web/health is answered by a worker, which on a 2-core server may wait its turn
            // for a CPU behind PostgreSQL and the other workers: 5 s, not 3.
            odoo: service("odoo", raw.odoo, probe(5, 120))?,
            name,
            images: raw.images.unwrap_or(ImageSource::Official),
            network,
            docker_socket: raw.docker_socket,
            upgrade_deadline,
            ingress,
            odoo_workers,
            odoo_database,
            odoo_options,
        }))
    }
}

/// Defaults of one service's probe that differ between services.
struct ProbeDefaults {
    timeout: Duration,
    start_period: Duration,
}

fn service(
    svc: &str,
    raw: RawService,
    defaults: ProbeDefaults,
) -> Result<ServiceConfig, FieldError> {
    let field = |f: &str| format!("stack.{svc}.{f}");
    if let Some(image) = &raw.image {
        if image.trim().is_empty() || image.contains(char::is_whitespace) {
            return Err(err(
                &field("image"),
                format!("{image:?} is not an image reference; use one such as \"postgres:15\""),
            ));
        }
    }
    let env = raw.env.unwrap_or_default();
    if let Some(bad) = env
        .keys()
        .find(|k| k.is_empty() || k.contains('=') || k.contains(char::is_whitespace))
    {
        return Err(err(
            &field("env"),
            format!("{bad:?} is not an environment variable name"),
        ));
    }
    if let Some(volumes) = &raw.volumes {
        for v in volumes {
            let parts: Vec<&str> = v.split(':').collect();
            let ok = matches!(parts.len(), 2 | 3)
                && !parts[0].is_empty()
                && parts[1].starts_with('/')
                && parts.get(2).is_none_or(|m| matches!(*m, "ro" | "rw"));
            if !ok {
                return Err(err(&field("volumes"), format!("{v:?} is not SOURCE:/TARGET[:ro]; use one such as \"pgdata:/var/lib/postgresql/data\"")));
            }
        }
    }
    let memory = raw
        .memory
        .as_deref()
        .map(|m| parse_size(m).map_err(|m| err(&field("memory"), m.to_string())))
        .transpose()?;
    if let Some(c) = raw.cpus {
        if !(c > 0.0 && c <= 1024.0) {
            return Err(err(
                &field("cpus"),
                format!("{c} is out of range; use a number of CPUs such as 1.5"),
            ));
        }
    }
    let probe_duration =
        |name: &str, value: Option<&str>, default: Duration| -> Result<Duration, FieldError> {
            match value {
                None => Ok(default),
                Some(s) => match parse_duration(s) {
                    Ok(d) if d >= Duration::from_millis(100) => Ok(d),
                    Ok(_) => Err(err(
                        &field(&format!("probe.{name}")),
                        "too short; use at least \"100ms\"".into(),
                    )),
                    Err(m) => Err(err(&field(&format!("probe.{name}")), m.to_string())),
                },
            }
        };
    let probe = ProbeConfig {
        interval: probe_duration(
            "interval",
            raw.probe.interval.as_deref(),
            Duration::from_secs(5),
        )?,
        timeout: probe_duration("timeout", raw.probe.timeout.as_deref(), defaults.timeout)?,
        start_period: match raw.probe.start_period.as_deref() {
            None => defaults.start_period,
            Some(s) => {
                parse_duration(s).map_err(|m| err(&field("probe.start_period"), m.to_string()))?
            }
        },
        retries: match raw.probe.retries {
            None => 3,
            Some(n @ 1..=100) => n,
            Some(n) => {
                return Err(err(
                    &field("probe.retries"),
                    format!("{n} is out of range; use 1 to 100 (default 3)"),
                ))
            }
        },
        busy_limit: probe_duration(
            "busy_limit",
            raw.probe.busy_limit.as_deref(),
            Duration::from_secs(600),
        )?,
    };
    Ok(ServiceConfig {
        image: raw.image,
        env,
        volumes: raw.volumes,
        memory,
        cpus: raw.cpus,
        probe,
    })
}

/// Docker-safe names for containers, networks, volumes and databases.
fn valid_name(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}
