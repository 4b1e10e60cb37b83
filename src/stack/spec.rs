//! From `[stack]` to the containers that should exist: images, environment, volumes, limits,
//! labels and the hash of each service's spec; the generated secrets and Odoo's config file.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::config::{ImageSource, ProbeConfig, ServiceConfig, StackConfig};

/// Labels on everything plantd owns. Nothing without `LABEL_STACK` is ever touched.
pub const LABEL_STACK: &str = "io.plantd.stack";
pub const LABEL_SERVICE: &str = "io.plantd.service";
pub const LABEL_SPEC: &str = "io.plantd.spec";

/// The three services, in dependency order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    Postgres,
    Redis,
    Odoo,
}

impl Service {
    pub const ALL: [Service; 3] = [Service::Postgres, Service::Redis, Service::Odoo];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Postgres => "postgres",
            Service::Redis => "redis",
            Service::Odoo => "odoo",
        }
    }

    /// What must be healthy before this service starts.
    pub fn depends_on(self) -> &'static [Service] {
        match self {
            Service::Postgres | Service::Redis => &[],
            Service::Odoo => &[Service::Postgres, Service::Redis],
        }
    }

    pub fn parse(s: &str) -> Result<Service, String> {
        Service::ALL
            .into_iter()
            .find(|svc| svc.as_str() == s)
            .ok_or_else(|| format!("no service {s:?}; the services are postgres, redis and odoo"))
    }

    fn default_image(self, source: ImageSource) -> &'static str {
        match (source, self) {
            (ImageSource::Official, Service::Postgres) => "postgres:15.14",
            (ImageSource::Official, Service::Redis) => "redis:7.4.5",
            (ImageSource::Official, Service::Odoo) => "odoo:18.0",
            (ImageSource::Local, Service::Postgres) => "plantd-local/postgres:15",
            (ImageSource::Local, Service::Redis) => "plantd-local/redis:7",
            (ImageSource::Local, Service::Odoo) => "plantd-local/odoo-emulator:19.0",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One mount of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// A volume name, or an absolute host path for a bind mount.
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

impl Mount {
    pub fn is_volume(&self) -> bool {
        !self.source.starts_with('/')
    }
}

/// What one service's container should be.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSpec {
    pub service: Service,
    pub container: String,
    pub image: String,
    /// Whether the image may be pulled from a registry when it is not present.
    pub pullable: bool,
    pub env: Vec<String>,
    pub mounts: Vec<Mount>,
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    /// A hash of the files the container mounts from the data dir (Odoo's config).
    pub files: String,
    #[serde(skip)]
    pub probe: ProbeConfig,
    /// A hash of everything above; a container with another hash is recreated.
    #[serde(skip)]
    pub hash: String,
}

/// The whole desired stack.
#[derive(Debug, Clone, PartialEq)]
pub struct StackSpec {
    pub name: String,
    pub network: String,
    pub services: Vec<ServiceSpec>,
    pub odoo_database: String,
    pub secrets: Secrets,
}

impl StackSpec {
    pub fn get(&self, service: Service) -> &ServiceSpec {
        self.services
            .iter()
            .find(|s| s.service == service)
            .expect("every service has a spec")
    }

    pub fn get_mut(&mut self, service: Service) -> &mut ServiceSpec {
        self.services
            .iter_mut()
            .find(|s| s.service == service)
            .expect("every service has a spec")
    }

    /// The named volumes the services use.
    pub fn volumes(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .services
            .iter()
            .flat_map(|s| s.mounts.iter())
            .filter(|m| m.is_volume())
            .map(|m| m.source.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

/// Passwords generated on first start, kept in `DATA_DIR/stack/secrets.json` (mode 0600) and
/// never printed.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Secrets {
    pub postgres_password: String,
    pub odoo_admin_password: String,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets(..)")
    }
}

/// The user Odoo connects to PostgreSQL as.
pub const DB_USER: &str = "odoo";

pub fn stack_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("stack")
}

impl Secrets {
    /// Reads the secrets, creating them on first start.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Secrets> {
        let path = stack_dir(data_dir).join("secrets.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{} is damaged; restore it from a backup (the database password is in it)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::plant::create_private_dir(&stack_dir(data_dir))?;
                let secrets = Secrets {
                    postgres_password: crate::pki::random_secret()?,
                    odoo_admin_password: crate::pki::random_secret()?,
                };
                let json = serde_json::to_vec_pretty(&secrets).expect("serializes");
                crate::pki::write_atomic(&path, &json, 0o600)?;
                tracing::info!(path = %path.display(), "generated the stack's passwords");
                Ok(secrets)
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
}

/// Builds the desired stack, writing Odoo's config file into `DATA_DIR/stack/`.
pub fn build(config: &StackConfig, data_dir: &Path) -> anyhow::Result<StackSpec> {
    let secrets = Secrets::load_or_create(data_dir)?;
    let odoo_conf_path = stack_dir(data_dir).join("odoo.conf");
    let odoo_conf = odoo_conf(config, &secrets);
    // Odoo runs as its own user in its container and must read this file; the data directory
    // above it is 0700, so nobody else on the host can.
    if std::fs::read_to_string(&odoo_conf_path).ok().as_deref() != Some(odoo_conf.as_str()) {
        crate::pki::write_atomic(&odoo_conf_path, odoo_conf.as_bytes(), 0o644)?;
    }
    let name = &config.name;
    let services = Service::ALL
        .into_iter()
        .map(|service| {
            let sc = match service {
                Service::Postgres => &config.postgres,
                Service::Redis => &config.redis,
                Service::Odoo => &config.odoo,
            };
            let mut env: Vec<(String, String)> = match service {
                Service::Postgres => vec![
                    ("POSTGRES_USER".into(), DB_USER.into()),
                    (
                        "POSTGRES_PASSWORD".into(),
                        secrets.postgres_password.clone(),
                    ),
                    ("POSTGRES_DB".into(), "postgres".into()),
                ],
                Service::Redis => vec![],
                // The official odoo image's entrypoint reads the database connection from these.
                Service::Odoo => vec![
                    ("HOST".into(), "postgres".into()),
                    ("USER".into(), DB_USER.into()),
                    ("PASSWORD".into(), secrets.postgres_password.clone()),
                ],
            };
            for (k, v) in &sc.env {
                env.retain(|(key, _)| key != k);
                env.push((k.clone(), v.clone()));
            }
            let mounts = mounts(service, name, sc, &odoo_conf_path)?;
            let image = sc
                .image
                .clone()
                .unwrap_or_else(|| service.default_image(config.images).to_string());
            let mut spec = ServiceSpec {
                service,
                container: format!("{name}-{service}"),
                pullable: config.images == ImageSource::Official || sc.image.is_some(),
                image,
                env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
                mounts,
                memory: sc.memory.map(|m| m.min(i64::MAX as u64) as i64),
                nano_cpus: sc.cpus.map(|c| (c * 1e9) as i64),
                files: if service == Service::Odoo {
                    crate::pki::sha256_hex(odoo_conf.as_bytes())
                } else {
                    String::new()
                },
                probe: sc.probe,
                hash: String::new(),
            };
            spec.rehash();
            Ok(spec)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(StackSpec {
        name: name.clone(),
        network: config.network.clone(),
        services,
        odoo_database: config.odoo_database.clone(),
        secrets,
    })
}

impl ServiceSpec {
    /// Sets `hash` from everything else.
    pub fn rehash(&mut self) {
        let bytes = serde_json::to_vec(self).expect("serializes");
        self.hash = crate::pki::sha256_hex(&bytes)[..16].to_string();
    }

    /// This spec on another image: what an upgrade rolls back to.
    pub fn with_image(&self, image: &str) -> ServiceSpec {
        let mut spec = self.clone();
        spec.image = image.to_string();
        spec.rehash();
        spec
    }
}

fn mounts(
    service: Service,
    name: &str,
    sc: &ServiceConfig,
    odoo_conf: &Path,
) -> anyhow::Result<Vec<Mount>> {
    let mut mounts = match &sc.volumes {
        Some(list) => list
            .iter()
            .map(|v| {
                let mut parts = v.split(':');
                let source = parts.next().unwrap_or_default().to_string();
                let target = parts.next().unwrap_or_default().to_string();
                Mount {
                    read_only: parts.next() == Some("ro"),
                    source,
                    target,
                }
            })
            .collect(),
        None => {
            let (suffix, target) = match service {
                Service::Postgres => ("pgdata", "/var/lib/postgresql/data"),
                Service::Redis => ("redis", "/data"),
                Service::Odoo => ("odoo", "/var/lib/odoo"),
            };
            vec![Mount {
                source: format!("{name}-{suffix}"),
                target: target.into(),
                read_only: false,
            }]
        }
    };
    if service == Service::Odoo {
        let source = odoo_conf
            .to_str()
            .context("the data directory's path is not UTF-8; Docker cannot mount it")?;
        mounts.push(Mount {
            source: source.into(),
            target: "/etc/odoo/odoo.conf".into(),
            read_only: true,
        });
    }
    Ok(mounts)
}

/// Odoo's config: behind plantd's ingress (`proxy_mode`), with workers and the websocket on the
/// gevent port, and the database manager off.
fn odoo_conf(config: &StackConfig, secrets: &Secrets) -> String {
    format!(
        "[options]\n\
         db_host = postgres\n\
         db_port = 5432\n\
         db_user = {DB_USER}\n\
         db_password = {db_password}\n\
         db_name = {db_name}\n\
         dbfilter = ^{db_name}$\n\
         admin_passwd = {admin}\n\
         proxy_mode = True\n\
         workers = {workers}\n\
         gevent_port = 8072\n\
         list_db = False\n\
         data_dir = /var/lib/odoo\n",
        db_password = secrets.postgres_password,
        db_name = config.odoo_database,
        admin = secrets.odoo_admin_password,
        workers = config.odoo_workers,
    )
}
