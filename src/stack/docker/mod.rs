//! The Docker engine through bollard: what the supervisor observes and the actions it takes.
//! Everything here is scoped to one stack's labels; nothing else on the engine is touched.

mod error;
mod exec;
mod images;

pub use error::Error;
use error::{call, short};

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, EndpointSettings, HostConfig, MountType,
    NetworkCreateRequest, NetworkingConfig, RestartPolicy, RestartPolicyNameEnum,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, ListNetworksOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt};

use super::reconcile::{Observed, RunState};
use super::spec::{Service, ServiceSpec, StackSpec, LABEL_SERVICE, LABEL_SPEC, LABEL_STACK};

/// How long a container gets to stop before it is killed (PostgreSQL checkpoints on the way).
const STOP_GRACE_S: i32 = 30;
/// The longest wait for the engine's answer to one call (a stop waits out the grace first).
const CALL_TIMEOUT_S: u64 = 60;
/// The longest a pull may take before it is given up (and tried again later).
const PULL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// One of the stack's containers, as listed.
#[derive(Debug, Clone)]
pub struct Seen {
    pub service: Service,
    pub observed: Observed,
    pub name: String,
    pub image: String,
    /// Its address on the stack's network, where plantd probes it.
    pub ip: Option<IpAddr>,
}

#[derive(Clone)]
pub struct Engine {
    docker: Docker,
}

/// The HTTP status of an error the engine answered with.
fn status(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// `USER` as numbers: `""` is root; `uid` or `uid:gid`. `None` when a part is a name.
fn numeric_user(user: &str) -> Option<Option<(u32, u32)>> {
    if user.is_empty() {
        return Some(None);
    }
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let uid = u.parse().ok()?;
    let gid = if g.is_empty() { uid } else { g.parse().ok()? };
    Some(Some((uid, gid)))
}

/// `USER` (`name`, `name:group`, `uid:group`, `name:gid`) looked up in the image's files:
/// the group is the user's own unless named.
fn named_user(user: &str, passwd: &str, group: &str) -> Option<(u32, u32)> {
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let fields = |line: &str| line.split(':').map(str::to_string).collect::<Vec<_>>();
    let entry = passwd
        .lines()
        .map(fields)
        .find(|f| f.len() >= 4 && (f[0] == u || f[2] == u))?;
    let uid = entry[2].parse().ok()?;
    let gid = if g.is_empty() {
        entry[3].parse().ok()?
    } else if let Ok(gid) = g.parse() {
        gid
    } else {
        let entry = group
            .lines()
            .map(fields)
            .find(|f| f.len() >= 3 && f[0] == g)?;
        entry[2].parse().ok()?
    };
    Some((uid, gid))
}

impl Engine {
    /// Connects to the engine (`socket`, else `DOCKER_HOST` or the default socket) and agrees on
    /// an API version with it.
    pub async fn connect(socket: Option<&Path>) -> Result<Engine, Error> {
        let path = match socket {
            Some(path) => path.to_str().ok_or(Error::SocketNotUtf8)?.to_string(),
            None => match std::env::var("DOCKER_HOST") {
                Ok(host) if host.starts_with("unix://") => host,
                Ok(host) if !host.is_empty() => return Err(Error::NotUnixSocket { host }),
                _ => "/var/run/docker.sock".to_string(),
            },
        };
        let docker =
            Docker::connect_with_socket(&path, CALL_TIMEOUT_S, bollard::API_DEFAULT_VERSION)
                .map_err(call("connect", &path))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(call("negotiate the API version", &path))?;
        Ok(Engine { docker })
    }

    fn stack_filter(stack: &str) -> HashMap<String, Vec<String>> {
        HashMap::from([("label".to_string(), vec![format!("{LABEL_STACK}={stack}")])])
    }

    /// The stack's containers.
    pub async fn observe(&self, stack: &StackSpec) -> Result<Vec<Seen>, Error> {
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&Self::stack_filter(&stack.name))
            .build();
        let list = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(call("list containers", &stack.name))?;
        let mut seen = Vec::new();
        for c in list {
            let labels = c.labels.unwrap_or_default();
            let Some(service) = labels
                .get(LABEL_SERVICE)
                .and_then(|s| Service::parse(s).ok())
            else {
                continue;
            };
            let state = match c.state {
                Some(ContainerSummaryStateEnum::CREATED) => RunState::Created,
                Some(ContainerSummaryStateEnum::RUNNING) => RunState::Running,
                Some(ContainerSummaryStateEnum::PAUSED) => RunState::Paused,
                Some(ContainerSummaryStateEnum::RESTARTING) => RunState::Restarting,
                Some(ContainerSummaryStateEnum::REMOVING) => RunState::Removing,
                Some(ContainerSummaryStateEnum::DEAD) => RunState::Dead,
                _ => RunState::Exited,
            };
            let ip = c
                .network_settings
                .and_then(|n| n.networks)
                .and_then(|mut n| n.remove(&stack.network))
                .and_then(|e| e.ip_address)
                .and_then(|ip| ip.parse().ok());
            seen.push(Seen {
                service,
                observed: Observed {
                    id: c.id.unwrap_or_default(),
                    state,
                    spec: labels.get(LABEL_SPEC).cloned().unwrap_or_default(),
                },
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                image: c.image.unwrap_or_default(),
                ip,
            });
        }
        Ok(seen)
    }

    /// When a container entered `state`, as Docker recorded it (RFC 3339, whole seconds): its
    /// start for a running one, its end for one that ended; `None` for another state, or when
    /// Docker cannot say.
    pub async fn state_since(&self, id: &str, state: RunState) -> Option<String> {
        use time::format_description::well_known::Rfc3339;
        let inspected = self
            .docker
            .inspect_container(
                id,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .ok()?;
        let s = inspected.state?;
        let at = match state {
            RunState::Running => s.started_at?,
            RunState::Exited | RunState::Dead => s.finished_at?,
            _ => return None,
        };
        let at = time::OffsetDateTime::parse(&at, &Rfc3339).ok()?;
        // Docker's "never" is year 1.
        if at.year() < 2000 {
            return None;
        }
        at.replace_nanosecond(0).ok()?.format(&Rfc3339).ok()
    }

    fn labels(stack: &str) -> HashMap<String, String> {
        HashMap::from([(LABEL_STACK.to_string(), stack.to_string())])
    }

    /// Creates the stack's network and the service's named volumes where missing. An existing
    /// one that plantd did not create is refused, never adopted.
    pub async fn ensure_network_and_volumes(
        &self,
        stack: &StackSpec,
        spec: &ServiceSpec,
    ) -> Result<(), Error> {
        self.dedupe_network(stack).await;
        match self
            .docker
            .inspect_network(
                &stack.network,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(n) => {
                if n.labels.unwrap_or_default().get(LABEL_STACK) != Some(&stack.name) {
                    return Err(Error::ForeignNetwork {
                        network: stack.network.clone(),
                    });
                }
            }
            Err(e) if status(&e) == Some(404) => {
                self.docker
                    .create_network(NetworkCreateRequest {
                        name: stack.network.clone(),
                        driver: Some("bridge".into()),
                        labels: Some(Self::labels(&stack.name)),
                        ..Default::default()
                    })
                    .await
                    .map_err(|source| Error::Network {
                        action: "creating",
                        network: stack.network.clone(),
                        source: Box::new(source),
                    })?;
            }
            Err(source) => {
                return Err(Error::Network {
                    action: "inspecting",
                    network: stack.network.clone(),
                    source: Box::new(source),
                })
            }
        }
        for volume in spec.mounts.iter().filter(|m| m.is_volume()) {
            let volume = &volume.source;
            match self.docker.inspect_volume(volume).await {
                Ok(v) => {
                    if v.labels.get(LABEL_STACK) != Some(&stack.name) {
                        return Err(Error::ForeignVolume {
                            volume: volume.clone(),
                        });
                    }
                }
                Err(e) if status(&e) == Some(404) => {
                    self.docker
                        .create_volume(VolumeCreateRequest {
                            name: Some(volume.clone()),
                            labels: Some(Self::labels(&stack.name)),
                            ..Default::default()
                        })
                        .await
                        .map_err(|source| Error::Volume {
                            action: "creating",
                            volume: volume.clone(),
                            source: Box::new(source),
                        })?;
                }
                Err(source) => {
                    return Err(Error::Volume {
                        action: "inspecting",
                        volume: volume.clone(),
                        source: Box::new(source),
                    })
                }
            }
        }
        Ok(())
    }

    /// Whether this stack has a volume of that name.
    pub async fn has_volume(&self, stack: &StackSpec, name: &str) -> Result<bool, Error> {
        match self.docker.inspect_volume(name).await {
            Ok(v) => Ok(v.labels.get(LABEL_STACK) == Some(&stack.name)),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(call("inspect volume", name)(e)),
        }
    }

    /// Creates the service's container (not started).
    pub async fn create(&self, stack: &StackSpec, spec: &ServiceSpec) -> Result<String, Error> {
        let mut labels = Self::labels(&stack.name);
        labels.insert(LABEL_SERVICE.into(), spec.service.as_str().into());
        labels.insert(LABEL_SPEC.into(), spec.hash.clone());
        self.create_container(stack, spec, &spec.container, labels, None)
            .await
    }

    /// Runs `cmd` once in a container made like the service's, waits (at most `limit`) for it
    /// to end, removes it, and returns the last lines it printed if it failed.
    pub async fn run_once(
        &self,
        stack: &StackSpec,
        spec: &ServiceSpec,
        cmd: Vec<String>,
        limit: std::time::Duration,
    ) -> Result<(), Error> {
        let name = format!("{}-init", spec.container);
        let mut labels = Self::labels(&stack.name);
        // Not a service label: the supervisor's view of the stack never includes it.
        labels.insert(LABEL_SERVICE.into(), format!("{}-init", spec.service));
        // A leftover from a crash mid-run is this stack's own, so it may go.
        if let Ok(c) = self
            .docker
            .inspect_container(
                &name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            if c.config
                .and_then(|c| c.labels)
                .unwrap_or_default()
                .get(LABEL_STACK)
                == Some(&stack.name)
            {
                self.remove(&name, false).await?;
            }
        }
        let id = self
            .create_container(stack, spec, &name, labels, Some(cmd))
            .await?;
        let outcome = async {
            self.start(&id).await?;
            let mut wait = self
                .docker
                .wait_container(&id, None::<bollard::query_parameters::WaitContainerOptions>);
            let code = match tokio::time::timeout(limit, wait.next()).await {
                Err(_) => {
                    return Err(Error::RunTimedOut {
                        container: name.clone(),
                        limit_s: limit.as_secs(),
                    })
                }
                Ok(Some(Ok(r))) => r.status_code,
                // bollard reports a non-zero exit as an error carrying the code.
                Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError {
                    code, ..
                }))) => code,
                Ok(Some(Err(e))) => return Err(call("wait", &name)(e)),
                Ok(None) => {
                    return Err(Error::WaitEnded {
                        container: name.clone(),
                    })
                }
            };
            if code == 0 {
                return Ok(());
            }
            let tail = self.logs(&id, 10).await.unwrap_or_default().join("\n");
            Err(Error::RunFailed {
                container: name.clone(),
                code,
                tail,
            })
        }
        .await;
        let removed = self.remove(&id, false).await;
        outcome.and(removed)
    }

    async fn create_container(
        &self,
        stack: &StackSpec,
        spec: &ServiceSpec,
        name: &str,
        labels: HashMap<String, String>,
        cmd: Option<Vec<String>>,
    ) -> Result<String, Error> {
        let mounts = spec
            .mounts
            .iter()
            .map(|m| bollard::models::Mount {
                target: Some(m.target.clone()),
                source: Some(m.source.clone()),
                typ: Some(if m.is_volume() {
                    MountType::VOLUME
                } else {
                    MountType::BIND
                }),
                read_only: Some(m.read_only),
                ..Default::default()
            })
            .collect();
        let endpoint = EndpointSettings {
            aliases: Some(vec![spec.service.as_str().to_string()]),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd,
            env: Some(spec.env.clone()),
            labels: Some(labels),
            hostname: Some(spec.service.as_str().to_string()),
            host_config: Some(HostConfig {
                mounts: Some(mounts),
                memory: spec.memory,
                nano_cpus: spec.nano_cpus,
                network_mode: Some(stack.network.clone()),
                // plantd restarts; Docker's own policy would fight the breaker.
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: None,
                }),
                init: Some(false),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(stack.network.clone(), endpoint)])),
            }),
            ..Default::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        match self.docker.create_container(Some(options), body).await {
            Ok(r) => Ok(r.id),
            Err(e) if status(&e) == Some(409) => Err(Error::ContainerNameTaken {
                name: name.to_string(),
            }),
            Err(source) => Err(Error::CreateContainer {
                name: name.to_string(),
                source: Box::new(source),
            }),
        }
    }

    pub async fn start(&self, id: &str) -> Result<(), Error> {
        self.docker
            .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
            .await
            .map_err(call("start", id))
    }

    /// Restarts a running or paused container.
    pub async fn restart(&self, id: &str, paused: bool) -> Result<(), Error> {
        if paused {
            self.docker
                .unpause_container(id)
                .await
                .map_err(call("unpause", id))?;
        }
        let options = bollard::query_parameters::RestartContainerOptionsBuilder::default()
            .t(STOP_GRACE_S)
            .build();
        self.docker
            .restart_container(id, Some(options))
            .await
            .map_err(call("restart", id))
    }

    /// Stops a container (a paused one too), with the usual grace; stopped or gone is fine.
    pub async fn stop(&self, id: &str) -> Result<(), Error> {
        let _ = self.docker.unpause_container(id).await;
        let stop = StopContainerOptionsBuilder::default()
            .t(STOP_GRACE_S)
            .build();
        match self.docker.stop_container(id, Some(stop)).await {
            // 304: already stopped; 404: already gone.
            Err(e) if !matches!(status(&e), Some(304 | 404)) => Err(call("stop", id)(e)),
            _ => Ok(()),
        }
    }

    /// Stops and removes a container; its named volumes stay.
    pub async fn remove(&self, id: &str, paused: bool) -> Result<(), Error> {
        if paused {
            let _ = self.docker.unpause_container(id).await;
        }
        self.stop(id).await?;
        // `v` removes the container's anonymous volumes (such as the official odoo image's
        // /mnt/extra-addons), never a named one: the data lives in named volumes.
        let options = RemoveContainerOptionsBuilder::default()
            .v(true)
            .force(true)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Err(e) if status(&e) != Some(404) => Err(call("remove", id)(e)),
            _ => Ok(()),
        }
    }

    /// The last `tail` lines of a container's output.
    pub async fn logs(&self, container: &str, tail: usize) -> Result<Vec<String>, Error> {
        let options = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(&tail.to_string())
            .build();
        let mut stream = self.docker.logs(container, Some(options));
        let read = async {
            let mut text = String::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(call("logs", container))?;
                text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
            Ok(text.lines().map(str::to_string).collect())
        };
        tokio::time::timeout(std::time::Duration::from_secs(CALL_TIMEOUT_S), read)
            .await
            .unwrap_or_else(|_| {
                Err(Error::LogsTimedOut {
                    container: container.to_string(),
                })
            })
    }

    /// Container events of this stack; each one wakes the supervisor.
    pub fn events(&self, stack: &str) -> impl Stream<Item = Result<(), Error>> + use<> {
        let mut filters = Self::stack_filter(stack);
        filters.insert("type".into(), vec!["container".into()]);
        let options = EventsOptionsBuilder::default().filters(&filters).build();
        let stack = stack.to_string();
        self.docker
            .events(Some(options))
            .map(move |e| e.map(|_| ()).map_err(call("events", &stack)))
    }

    /// Leaves one network of the stack's name. A daemon stopped while creating the network can
    /// have its request land after the next daemon looked and created its own: Docker 20.10
    /// then holds two networks of one name, and every use of the name fails as ambiguous. The
    /// oldest is kept; a newer one in use is left (and logged) rather than forced.
    async fn dedupe_network(&self, stack: &StackSpec) {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_STACK}={}", stack.name)],
        )]);
        let options = ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        let Ok(mut networks) = self.docker.list_networks(Some(options)).await else {
            return;
        };
        networks.retain(|n| n.name.as_deref() == Some(stack.network.as_str()));
        if networks.len() < 2 {
            return;
        }
        networks.sort_by(|a, b| a.created.cmp(&b.created));
        for extra in &networks[1..] {
            let Some(id) = &extra.id else { continue };
            match self.docker.remove_network(id).await {
                Ok(()) => {
                    tracing::warn!(network = %stack.network, %id, "removed a duplicate of the stack's network")
                }
                Err(e) => {
                    tracing::warn!(network = %stack.network, %id, error = %short(&e), "a duplicate of the stack's network could not be removed")
                }
            }
        }
    }

    /// Removes the stack's containers, and its network; its volumes too only when asked.
    pub async fn down(
        &self,
        stack: &StackSpec,
        delete_volumes: bool,
    ) -> Result<Vec<String>, Error> {
        let mut done = Vec::new();
        for seen in self.observe(stack).await? {
            self.remove(&seen.observed.id, seen.observed.state == RunState::Paused)
                .await
                .map_err(|e| Error::RemoveContainer {
                    container: seen.name.clone(),
                    source: Box::new(e),
                })?;
            done.push(format!("removed container {}", seen.name));
        }
        if let Ok(n) = self
            .docker
            .inspect_network(
                &stack.network,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            if n.labels.unwrap_or_default().get(LABEL_STACK) == Some(&stack.name) {
                self.docker
                    .remove_network(&stack.network)
                    .await
                    .map_err(|source| Error::Network {
                        action: "removing",
                        network: stack.network.clone(),
                        source: Box::new(source),
                    })?;
                done.push(format!("removed network {}", stack.network));
            }
        }
        if delete_volumes {
            for volume in stack.volumes() {
                if let Ok(v) = self.docker.inspect_volume(&volume).await {
                    if v.labels.get(LABEL_STACK) == Some(&stack.name) {
                        self.docker
                            .remove_volume(
                                &volume,
                                None::<bollard::query_parameters::RemoveVolumeOptions>,
                            )
                            .await
                            .map_err(|source| Error::Volume {
                                action: "removing",
                                volume: volume.clone(),
                                source: Box::new(source),
                            })?;
                        done.push(format!("deleted volume {volume}"));
                    }
                }
            }
        }
        Ok(done)
    }

    /// A container's address on the stack's network.
    pub async fn address(&self, stack: &StackSpec, container: &str) -> Result<IpAddr, Error> {
        let c = self
            .docker
            .inspect_container(
                container,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
            .map_err(|source| Error::InspectContainer {
                container: container.to_string(),
                source: Box::new(source),
            })?;
        c.network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(&stack.network))
            .and_then(|e| e.ip_address)
            .and_then(|ip| ip.parse().ok())
            .ok_or_else(|| Error::NoAddress {
                container: container.to_string(),
                network: stack.network.clone(),
            })
    }

    pub fn docker(&self) -> &Docker {
        &self.docker
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\nodoo:x:101:101::/var/lib/odoo:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nodoo:x:101:\nssl-cert:x:111:odoo\n";

    #[test]
    fn an_image_user_is_found_by_number_or_name() {
        assert_eq!(numeric_user(""), Some(None));
        assert_eq!(numeric_user("101"), Some(Some((101, 101))));
        assert_eq!(numeric_user("101:7"), Some(Some((101, 7))));
        assert_eq!(numeric_user("odoo"), None);
        assert_eq!(numeric_user("101:odoo"), None);
        assert_eq!(named_user("odoo", PASSWD, GROUP), Some((101, 101)));
        assert_eq!(named_user("odoo:ssl-cert", PASSWD, GROUP), Some((101, 111)));
        assert_eq!(named_user("101:ssl-cert", PASSWD, GROUP), Some((101, 111)));
        assert_eq!(named_user("odoo:5", PASSWD, GROUP), Some((101, 5)));
        assert_eq!(named_user("nobody", PASSWD, GROUP), None);
        assert_eq!(named_user("odoo:nogroup", PASSWD, GROUP), None);
        assert_eq!(named_user("odoo", "odoo:x:abc", GROUP), None);
    }

    fn refused(message: &str) -> Box<bollard::errors::Error> {
        Box::new(bollard::errors::Error::DockerResponseServerError {
            status_code: 500,
            message: message.into(),
        })
    }

    /// The messages are the ones plantd printed when its errors were strings.
    #[test]
    fn error_messages_are_as_before() {
        let said = |e: Error| e.to_string();
        assert_eq!(
            said(Error::Call {
                call: "start",
                target: "plant-odoo".into(),
                source: refused("no such container"),
            }),
            "no such container"
        );
        assert_eq!(
            said(Error::NotUnixSocket {
                host: "tcp://x:2375".into()
            }),
            "DOCKER_HOST=tcp://x:2375 is not a unix socket; plantd talks to the local engine only"
        );
        assert_eq!(
            said(Error::Network {
                action: "creating",
                network: "plant".into(),
                source: refused("pool overlaps"),
            }),
            "creating network plant: pool overlaps"
        );
        assert_eq!(
            said(Error::RunFailed {
                container: "plant-odoo-init".into(),
                code: 1,
                tail: "a\nb".into(),
            }),
            "exited with 1; its last lines:\na\nb"
        );
        assert_eq!(
            said(Error::RemoveContainer {
                container: "plant-redis".into(),
                source: Box::new(Error::Call {
                    call: "stop",
                    target: "abc".into(),
                    source: refused("busy"),
                }),
            }),
            "removing plant-redis: busy"
        );
        assert_eq!(
            said(Error::UnknownImageUser {
                image: "odoo:18.0".into(),
                user: "odoo".into(),
            }),
            "odoo:18.0 runs as user \"odoo\", which its /etc/passwd does not name"
        );
        assert_eq!(
            said(Error::PullTimedOut {
                image: "odoo:18.0".into(),
                minutes: PULL_TIMEOUT.as_secs() / 60,
            }),
            "pulling odoo:18.0: not done within 20 minutes"
        );
        assert_eq!(
            said(Error::ExecFailed {
                command: "psql".into(),
                container: "plant-postgres".into(),
                code: None,
                stderr: "boom".into(),
            }),
            "psql in plant-postgres failed (exit unknown): boom"
        );
        assert_eq!(
            said(Error::ExecFailed {
                command: "psql".into(),
                container: "plant-postgres".into(),
                code: Some(3),
                stderr: String::new(),
            }),
            "psql in plant-postgres failed (exit 3): "
        );
    }
}
