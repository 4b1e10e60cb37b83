//! The supervisor's decisions, free of I/O: given the desired stack, what Docker shows and what
//! the supervisor remembers of each service, what to do next. The driver in `super` feeds it
//! observations and carries out the actions; the tests below are tables of situations.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::spec::{Service, StackSpec};
use crate::config::ProbeConfig;

/// Restarts within this window count towards the crash-loop breaker.
pub const BREAKER_WINDOW: Duration = Duration::from_secs(600);
/// Restarts allowed within the window; the next one opens the breaker instead.
pub const BREAKER_LIMIT: usize = 5;
/// The longest wait between two restarts of one service.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A container's state as Docker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Created => "created",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Restarting => "restarting",
            RunState::Removing => "removing",
            RunState::Exited => "exited",
            RunState::Dead => "dead",
        }
    }
}

/// One of plantd's containers, as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub id: String,
    pub state: RunState,
    /// The spec hash label it was created with.
    pub spec: String,
}

/// What plantd's own probes say about a running container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Not probed yet, or failing within the start period.
    Starting,
    Healthy,
    /// Not answering its probe, but working: requests in progress in PostgreSQL (waiting on a
    /// lock, say). Never restarted for it, within the probe's `busy_limit`.
    Busy(String),
    Unhealthy(String),
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// No answer, but the service is working (see [`Health::Busy`]); says on what.
    Busy(String),
    Fail(String),
}

/// What the supervisor remembers of one service. Times are milliseconds on the supervisor's
/// monotonic clock.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Book {
    /// When plantd restarted (or recreated after a loss) this service, within the window.
    pub restarts: VecDeque<u64>,
    /// Restarts since the daemon started, for the status report.
    pub total_restarts: u64,
    /// The crash-loop breaker: no more restarts until an admin resets it.
    pub breaker: bool,
    /// No restart before this time (backoff).
    pub not_before: u64,
    /// Whether plantd has seen a container of this service: losing one after that is a crash,
    /// not a first start.
    pub seen: bool,
}

impl Book {
    /// Records a restart at `now` and sets the backoff before the next one: 1 s, 2 s, 4 s, ...
    /// up to [`MAX_BACKOFF`].
    pub fn record_restart(&mut self, now: u64) {
        self.forget_old(now);
        self.restarts.push_back(now);
        self.total_restarts += 1;
        let n = self.restarts.len() as u32;
        let backoff = Duration::from_secs(1u64 << (n - 1).min(10)).min(MAX_BACKOFF);
        self.not_before = now + backoff.as_millis() as u64;
    }

    fn forget_old(&mut self, now: u64) {
        let window = BREAKER_WINDOW.as_millis() as u64;
        while self.restarts.front().is_some_and(|t| t + window <= now) {
            self.restarts.pop_front();
        }
    }

    /// Whether one more restart would pass the breaker's limit.
    fn would_trip(&mut self, now: u64) -> bool {
        self.forget_old(now);
        self.restarts.len() >= BREAKER_LIMIT
    }

    /// Closes the breaker and forgets the restarts (an admin's `stack reset`).
    pub fn reset(&mut self) {
        self.breaker = false;
        self.restarts.clear();
        self.not_before = 0;
    }
}

/// One step for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create and start the container (the network and volumes first, if missing).
    Create { service: Service, reason: String },
    /// Start the existing, stopped container.
    Start { service: Service, reason: String },
    /// Restart the running container (unpausing it first if need be).
    Restart { service: Service, reason: String },
    /// Stop and remove the container, keeping its volumes, and create it anew.
    Recreate { service: Service, reason: String },
    /// Stop restarting: the service failed too often.
    OpenBreaker { service: Service, reason: String },
}

impl Action {
    pub fn service(&self) -> Service {
        match self {
            Action::Create { service, .. }
            | Action::Start { service, .. }
            | Action::Restart { service, .. }
            | Action::Recreate { service, .. }
            | Action::OpenBreaker { service, .. } => *service,
        }
    }

    /// Whether carrying it out counts as a restart for backoff and the breaker.
    pub fn counts(&self, book: &Book) -> bool {
        match self {
            Action::Create { .. } => book.seen,
            Action::Start { .. } | Action::Restart { .. } => true,
            Action::Recreate { .. } | Action::OpenBreaker { .. } => false,
        }
    }
}

/// Decides the next actions, at most one per service, in dependency order.
pub fn reconcile(
    now: u64,
    desired: &StackSpec,
    observed: &BTreeMap<Service, Observed>,
    health: &BTreeMap<Service, Health>,
    books: &mut BTreeMap<Service, Book>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for spec in &desired.services {
        let service = spec.service;
        let book = books.entry(service).or_default();
        if book.breaker {
            continue;
        }
        let deps_ready = service.depends_on().iter().all(|d| {
            observed
                .get(d)
                .is_some_and(|o| o.state == RunState::Running)
                && health.get(d) == Some(&Health::Healthy)
        });
        let action = match observed.get(&service) {
            None if !deps_ready => None,
            None if book.seen => Some(Action::Create {
                service,
                reason: "its container is gone".into(),
            }),
            None => Some(Action::Create {
                service,
                reason: "first start".into(),
            }),
            Some(o) if o.spec != spec.hash => match o.state {
                RunState::Removing => None,
                // A stopped container is recreated only when it could start.
                RunState::Exited | RunState::Dead | RunState::Created if !deps_ready => None,
                _ => Some(Action::Recreate {
                    service,
                    reason: format!("its spec changed ({} -> {})", o.spec, spec.hash),
                }),
            },
            Some(o) => match o.state {
                RunState::Running | RunState::Paused => match health.get(&service) {
                    Some(Health::Unhealthy(why)) => Some(Action::Restart {
                        service,
                        reason: format!("unhealthy: {why}"),
                    }),
                    _ => None,
                },
                RunState::Restarting | RunState::Removing => None,
                RunState::Exited | RunState::Dead | RunState::Created if deps_ready => {
                    Some(Action::Start {
                        service,
                        reason: format!("it is {}", o.state.as_str()),
                    })
                }
                RunState::Exited | RunState::Dead | RunState::Created => None,
            },
        };
        let Some(action) = action else { continue };
        if now < book.not_before {
            continue;
        }
        if action.counts(book) && book.would_trip(now) {
            actions.push(Action::OpenBreaker {
                service,
                reason: format!(
                    "{BREAKER_LIMIT} restarts within {} minutes; not restarting until `plantd stack reset {service}`",
                    BREAKER_WINDOW.as_secs() / 60
                ),
            });
            continue;
        }
        actions.push(action);
    }
    actions
}

/// Turns probe results into a [`Health`] for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    /// The container the results are about; another container starts afresh.
    pub container: String,
    /// Which tracker of the supervisor's this is: a probe started for an earlier one (before a
    /// restart, which keeps the container's id) is not counted.
    pub generation: u64,
    /// Whether any probe result has come in.
    pub probed: bool,
    /// When the supervisor saw it start.
    pub since: u64,
    pub health: Health,
    /// Consecutive failed probes.
    pub failures: u32,
    /// Since when the probes have found it busy, without a pass or a failure between.
    pub busy_since: Option<u64>,
}

impl Tracker {
    pub fn new(container: &str, generation: u64, since: u64) -> Tracker {
        Tracker {
            container: container.to_string(),
            generation,
            probed: false,
            since,
            health: Health::Starting,
            failures: 0,
            busy_since: None,
        }
    }

    /// Takes one probe result at `now`. Failures within the start period, before the first
    /// pass, do not count; `retries` consecutive failures make the container unhealthy. A busy
    /// service is not failing: it stays busy (or starting) until it answers, fails for another
    /// reason, or has been busy for longer than `busy_limit`, after which being busy counts as
    /// failing (an Odoo's own `limit_time_real` ends any request long before that).
    pub fn record(&mut self, now: u64, outcome: Outcome, probe: &ProbeConfig) {
        self.probed = true;
        let why = match outcome {
            Outcome::Pass => {
                self.failures = 0;
                self.busy_since = None;
                self.health = Health::Healthy;
                return;
            }
            Outcome::Busy(why) => {
                let since = *self.busy_since.get_or_insert(now);
                let limit = probe.busy_limit.as_millis() as u64;
                if now < since + limit {
                    // Being busy explains the failed probes before it.
                    self.failures = 0;
                    if self.health != Health::Starting {
                        self.health = Health::Busy(why);
                    }
                    return;
                }
                format!(
                    "busy for more than {} s without answering: {why}",
                    probe.busy_limit.as_secs()
                )
            }
            Outcome::Fail(why) => {
                self.busy_since = None;
                why
            }
        };
        let starting = self.health == Health::Starting;
        if starting && now < self.since + probe.start_period.as_millis() as u64 {
            return;
        }
        self.failures += 1;
        if self.failures >= probe.retries {
            self.health = Health::Unhealthy(why);
        }
    }

    /// Whether the probe should come again soon: starting, failing or unhealthy. A busy service
    /// is probed at the usual interval, so that the probes do not add to its queue.
    pub fn eager(&self) -> bool {
        matches!(self.health, Health::Starting | Health::Unhealthy(_)) || self.failures > 0
    }
}

/// How an upgrade is going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeVerdict {
    /// Healthy on the new image: keep it.
    Commit,
    /// Put the previous spec back, for this reason.
    RollBack(String),
    Wait,
}

/// How long an upgrade may wait for its new container to exist at all (a pull of a large image
/// over a plant's WAN link, or a create failing) before the previous image comes back.
pub const UPGRADE_START_LIMIT: Duration = Duration::from_secs(30 * 60);

/// Judges an upgrade of one service, applied at `applied`. `started` is when its new container
/// was first seen (`None`: not yet, while the image is pulled); `health` is that container's,
/// once a probe has judged it. Healthy commits; two failed starts or an open breaker roll back;
/// the deadline counts from the start and needs a probe's verdict, so neither a slow pull nor a
/// Docker outage is taken for a failed upgrade.
pub fn judge_upgrade(
    now: u64,
    applied: u64,
    started: Option<u64>,
    deadline_ms: u64,
    health: Option<&Health>,
    restarts_since: u64,
    breaker: bool,
) -> UpgradeVerdict {
    if health == Some(&Health::Healthy) {
        return UpgradeVerdict::Commit;
    }
    if breaker || restarts_since >= 2 {
        return UpgradeVerdict::RollBack(format!(
            "the new image failed to start ({restarts_since} restarts)"
        ));
    }
    match started {
        None if now >= applied + UPGRADE_START_LIMIT.as_millis() as u64 => {
            UpgradeVerdict::RollBack(format!(
                "no container on the new image within {} minutes",
                UPGRADE_START_LIMIT.as_secs() / 60
            ))
        }
        Some(started) if health.is_some() && now >= started + deadline_ms => {
            let why = match health {
                Some(Health::Unhealthy(m)) => format!(": {m}"),
                _ => String::new(),
            };
            UpgradeVerdict::RollBack(format!("not healthy within {} s{why}", deadline_ms / 1000))
        }
        _ => UpgradeVerdict::Wait,
    }
}

#[cfg(test)]
mod tests;
