//! The throwaway PostgreSQL an imported dump runs in: a container of the stack's own
//! PostgreSQL image (so its `pg_dump` is the one a restore reads), with no network at all
//! (`network_mode: none`), no mount of anything of the plant's, every capability dropped but
//! the few its entrypoint needs to start the server, and a fresh cluster with a password
//! nobody knows. The dump runs as the role `plantd_import`, which is not a superuser and owns
//! only its database, through psql run as the OS user `nobody` under a `\restrict` key (psql
//! then refuses every backslash command, whatever the dump hides), and `pg_hba.conf` lets
//! `nobody` in as that role only. plantd's own queries and the `pg_dump` that turns the result
//! into a backup run the same way, with `search_path` fixed to `pg_catalog`.
//!
//! The container is labelled `io.plantd.import=STACK` and removed afterwards, whatever
//! happened (with its anonymous data volume); one an interrupted import left is removed by
//! the next import.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context};
use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{CreateContainerOptionsBuilder, ListContainersOptionsBuilder};

use crate::stack::docker::Engine;
use crate::stack::spec::{Service, StackSpec};

/// Why a sandbox failed at its work.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// psql stopped on the dump: its message, with the dump's line named.
    #[error("{0}")]
    Psql(String),
    /// `pg_dump` failed: the container engine's message.
    #[error("{0}")]
    PgDump(String),
    /// Docker could not remove the sandbox.
    #[error(transparent)]
    Remove(#[from] bollard::errors::Error),
}

/// The label that marks an import's sandbox; its value is the stack's name.
pub const LABEL_IMPORT: &str = "io.plantd.import";
/// The role, and its database, the dump runs as and into.
pub const ROLE: &str = "plantd_import";
/// The OS user psql and pg_dump run as: not the cluster's owner, so `peer` lets it in as
/// nothing but [`ROLE`].
const RUNNER: &str = "nobody";
/// How long the sandbox's server gets to start.
const START_LIMIT: std::time::Duration = std::time::Duration::from_secs(90);

/// Only `plantd_import` into its own database over the socket, and the cluster's owner for
/// plantd's setup; no TCP at all.
const HBA: &str = "printf 'local plantd_import plantd_import trust\\nlocal all postgres peer\\n' >\"$PGDATA/pg_hba.conf\"";

pub struct Sandbox {
    engine: Engine,
    /// The container's name.
    pub name: String,
    restrict_key: String,
}

impl Sandbox {
    /// Creates and starts a sandbox for `stack`'s imports, and waits for its server.
    pub async fn start(engine: &Engine, stack: &StackSpec) -> anyhow::Result<Sandbox> {
        sweep(engine, &stack.name).await;
        let pg = stack.get(Service::Postgres);
        let name = format!("{}-import-{}", pg.container, crate::digest::random_hex(4)?);
        let labels = HashMap::from([(LABEL_IMPORT.to_string(), stack.name.clone())]);
        let caps = ["CHOWN", "SETUID", "SETGID", "FOWNER", "DAC_OVERRIDE"];
        let body = ContainerCreateBody {
            image: Some(pg.image.clone()),
            // A throwaway cluster: nothing in it has to survive a crash, so it never waits
            // for the disk.
            cmd: Some(
                [
                    "postgres",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ),
            env: Some(vec![
                format!("POSTGRES_PASSWORD={}", crate::digest::random_hex(24)?),
                "POSTGRES_USER=postgres".into(),
                "POSTGRES_DB=postgres".into(),
            ]),
            labels: Some(labels),
            hostname: Some("import".into()),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                memory: pg.memory,
                nano_cpus: pg.nano_cpus,
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: Some(caps.iter().map(|c| c.to_string()).collect()),
                security_opt: Some(vec!["no-new-privileges".into()]),
                pids_limit: Some(512),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        engine
            .docker()
            .create_container(Some(options), body)
            .await
            .map_err(|e| {
                anyhow!(
                    "creating the import's sandbox {name} from {}: {e}",
                    pg.image
                )
            })?;
        let sandbox = Sandbox {
            engine: engine.clone(),
            name,
            restrict_key: crate::digest::random_hex(16)?,
        };
        if let Err(e) = sandbox.prepare().await {
            sandbox.remove().await;
            return Err(e);
        }
        Ok(sandbox)
    }

    async fn prepare(&self) -> anyhow::Result<()> {
        self.engine
            .start(&self.name)
            .await
            .map_err(|e| anyhow!("starting the import's sandbox {}: {e}", self.name))?;
        let began = std::time::Instant::now();
        loop {
            // TCP on the loopback answers only once the final server runs (an image's
            // first-start server listens on its socket only).
            let ready = self
                .engine
                .exec_as(
                    &self.name,
                    Some("postgres"),
                    &["pg_isready", "-q", "-h", "127.0.0.1"],
                    None,
                    &mut tokio::io::sink(),
                )
                .await;
            if ready.is_ok() {
                break;
            }
            if began.elapsed() > START_LIMIT {
                let tail = self.engine.logs(&self.name, 10).await.unwrap_or_default();
                bail!(
                    "the import's sandbox {} did not start within {} s: {}",
                    self.name,
                    START_LIMIT.as_secs(),
                    tail.join("\n")
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        let setup = async {
            self.engine
                .exec_as(
                    &self.name,
                    Some("postgres"),
                    &["sh", "-c", HBA],
                    None,
                    &mut tokio::io::sink(),
                )
                .await?;
            let role = format!("CREATE ROLE {ROLE} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE");
            let db = format!("CREATE DATABASE {ROLE} OWNER {ROLE}");
            self.engine
                .exec_as(
                    &self.name,
                    Some("postgres"),
                    &[
                        "psql",
                        "-X",
                        "-q",
                        "-v",
                        "ON_ERROR_STOP=1",
                        "-U",
                        "postgres",
                        "-d",
                        "postgres",
                        "-c",
                        &role,
                        "-c",
                        &db,
                        "-c",
                        "SELECT pg_reload_conf()",
                    ],
                    None,
                    &mut tokio::io::sink(),
                )
                .await
        };
        setup
            .await
            .map_err(|e| anyhow!("preparing the import's sandbox {}: {e}", self.name))
    }

    /// Runs a (checked) SQL dump into the sandbox's database; stops at its first error.
    pub async fn restore(
        &self,
        sql: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
    ) -> Result<(), SandboxError> {
        let restrict = format!("\\restrict {}", self.restrict_key);
        self.engine
            .exec_as(
                &self.name,
                Some(RUNNER),
                &[
                    "psql",
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-U",
                    ROLE,
                    "-d",
                    ROLE,
                    "-c",
                    &restrict,
                    "-f",
                    "-",
                ],
                Some(sql),
                &mut tokio::io::sink(),
            )
            .await
            // psql names the line of its input; that input is the dump's own lines.
            .map_err(|e| {
                SandboxError::Psql(e.to_string().replace("psql:<stdin>:", "dump.sql, line "))
            })
    }

    /// The single value `query` returns, as JSON (the query builds it), read as the import's
    /// role with `search_path` fixed to `pg_catalog`.
    pub async fn query_json(&self, query: &str) -> anyhow::Result<serde_json::Value> {
        let mut out = Vec::new();
        self.engine
            .exec_as(
                &self.name,
                Some(RUNNER),
                &[
                    "psql",
                    "-X",
                    "-q",
                    "-A",
                    "-t",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-U",
                    ROLE,
                    "-d",
                    ROLE,
                    "-c",
                    "SET search_path = pg_catalog",
                    "-c",
                    query,
                ],
                None,
                &mut out,
            )
            .await
            .map_err(|e| anyhow!("{e}"))?;
        let text = String::from_utf8_lossy(&out);
        serde_json::from_str(text.trim())
            .with_context(|| format!("reading what the sandbox answered: {:.200}", text.trim()))
    }

    /// `pg_dump -Fc` of the sandbox's database, as the import's role.
    pub async fn dump(
        &self,
        out: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> Result<(), SandboxError> {
        self.engine
            .exec_as(
                &self.name,
                Some(RUNNER),
                &["pg_dump", "-U", ROLE, "-Fc", "-d", ROLE],
                None,
                out,
            )
            .await
            .map_err(|e| SandboxError::PgDump(e.to_string()))
    }

    /// Removes the container and its data volume, at once: nothing in it is kept.
    pub async fn remove(self) {
        if let Err(e) = discard(&self.engine, &self.name).await {
            tracing::warn!(container = %self.name, error = %e, "the import's sandbox could not be removed; the next import removes it");
        }
    }
}

/// Kills and removes a sandbox with its anonymous data volume; gone already is fine.
async fn discard(engine: &Engine, id: &str) -> Result<(), SandboxError> {
    let options = bollard::query_parameters::RemoveContainerOptionsBuilder::default()
        .v(true)
        .force(true)
        .build();
    match engine.docker().remove_container(id, Some(options)).await {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        })
        | Ok(()) => Ok(()),
        Err(e) => Err(SandboxError::Remove(e)),
    }
}

/// Removes the sandboxes an interrupted import of `stack` left (called under the backup lock,
/// so none is in use).
pub async fn sweep(engine: &Engine, stack: &str) {
    let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_IMPORT}={stack}")])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let Ok(found) = engine.docker().list_containers(Some(options)).await else {
        return;
    };
    for c in found {
        let Some(id) = c.id else { continue };
        match discard(engine, &id).await {
            Ok(()) => {
                tracing::info!(container = %id, "removed a sandbox an interrupted import left")
            }
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "could not remove a leftover import sandbox")
            }
        }
    }
}
