//! What the admin UI shows over time: the journal's depth over the last hour, ingest and ack
//! rates, the link's state changes, and recent errors; and the one verdict on the overview.
//!
//! A sampler task reads the journal every 10 s and watches the link and the components'
//! health; the link's changes and the errors are kept in memory in bounded rings (a restart
//! starts them afresh). Each sample, with the host's figures and the markers (starts, island
//! and rejoin, backups, restarts), also goes to `DATA_DIR/metrics.db` ([`super::history`]),
//! which keeps the charts across restarts. [`verdict`] is a plain function of a snapshot,
//! tested on its own.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::history::{History, Recorder, Tick};
use crate::control::Control;
use crate::health::{Component, State};
use crate::journal::Stats;
use crate::replication::link::LinkState;
use crate::replication::plant::LinkReport;
use crate::stack::StackReport;

/// The sampler's tick.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// One hour of samples.
const HISTORY: usize = 360;
const LINK_CHANGES: usize = 200;
const ERRORS: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub at: String,
    pub depth: u64,
    pub last_seq: u64,
    pub hub_acked_seq: u64,
    #[serde(skip)]
    taken: Option<Instant>,
}

impl From<&super::history::Sample> for Point {
    fn from(s: &super::history::Sample) -> Point {
        Point {
            at: jiff::Timestamp::from_second(s.at)
                .map_or_else(|_| s.at.to_string(), |t| t.to_string()),
            depth: s.depth,
            last_seq: s.last_seq,
            hub_acked_seq: s.hub_acked_seq,
            taken: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkChange {
    pub at: String,
    pub state: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorEntry {
    pub at: String,
    pub source: String,
    pub message: String,
}

/// The link as the UI shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkView {
    pub state: LinkState,
    pub since: String,
    pub for_s: u64,
    pub hub: Option<String>,
    pub last_error: Option<String>,
    pub islanded_on_purpose: bool,
}

#[derive(Default)]
struct Rings {
    history: VecDeque<Point>,
    links: VecDeque<LinkChange>,
    errors: VecDeque<ErrorEntry>,
    /// The current link state and when it began.
    link_since: Option<(LinkState, String, Instant)>,
}

/// The sampler's rings and the history it writes, shared with the handlers.
#[derive(Clone)]
pub struct Monitor {
    rings: Arc<Mutex<Rings>>,
    /// `None` when `metrics.db` could not be opened: the charts then start afresh.
    history: Option<Arc<History>>,
    every: Duration,
}

impl Default for Monitor {
    fn default() -> Monitor {
        Monitor::new(None, SAMPLE_EVERY)
    }
}

fn push<T>(ring: &mut VecDeque<T>, cap: usize, item: T) {
    if ring.len() == cap {
        ring.pop_front();
    }
    ring.push_back(item);
}

impl Monitor {
    /// A sampler ticking `every`, writing to `history` when there is one.
    pub fn new(history: Option<Arc<History>>, every: Duration) -> Monitor {
        Monitor {
            rings: Default::default(),
            history,
            every,
        }
    }

    /// The history kept across restarts, when `metrics.db` opened.
    pub fn store(&self) -> Option<&Arc<History>> {
        self.history.as_ref()
    }

    /// The sampler's tick.
    pub fn every(&self) -> Duration {
        self.every
    }

    /// Samples until `stop` turns true.
    pub async fn run(
        self,
        control: Arc<Control>,
        mut link: watch::Receiver<Option<LinkReport>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let (journal, health) = (&control.journal, &control.health);
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_components: Vec<Component> = Vec::new();
        let mut last_link_error: Option<String> = None;
        let initial = link.borrow_and_update().clone();
        if let Some(r) = initial {
            self.link_report(&r, &mut last_link_error);
        }
        // Without enrollment there is no replicator: its sender is gone from the start.
        let mut link_open = true;
        let mut recorder = match self.history.clone() {
            Some(h) => tokio::task::spawn_blocking(move || Recorder::new(&h))
                .await
                .ok(),
            None => None,
        };
        let mut history_failing = false;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                changed = link.changed(), if link_open => {
                    if changed.is_err() {
                        link_open = false;
                        continue;
                    }
                    let report = link.borrow_and_update().clone();
                    if let Some(r) = report {
                        self.link_report(&r, &mut last_link_error);
                    }
                }
                _ = tick.tick() => {
                    // The one place the UI's figures probe the journal's writer: every 10 s,
                    // however many pages poll the overview.
                    journal.probe_health(health).await;
                    let stats = journal.stats().await.ok();
                    if let Some(stats) = &stats {
                        self.sample(stats, Instant::now());
                    }
                    let now = health.snapshot();
                    self.health_changes(&last_components, &now);
                    last_components = now;
                    if let (Some(history), Some(r)) = (&self.history, recorder.take()) {
                        recorder = self
                            .record(&control, history, r, stats, &mut history_failing)
                            .await;
                    }
                }
            }
        }
    }

    /// Hands a tick to the recorder (on a blocking thread); the recorder back, unless its
    /// thread panicked. A failing write is logged once, and again once it works.
    async fn record(
        &self,
        control: &Control,
        history: &Arc<History>,
        mut recorder: Recorder,
        stats: Option<Stats>,
        failing: &mut bool,
    ) -> Option<Recorder> {
        let apply = match &control.apply {
            Some(a) => {
                let r = a.status().await;
                Some((r.applied_seq, r.last_seq))
            }
            None => None,
        };
        let restarts = control
            .stack
            .as_ref()
            .map(|s| {
                s.report()
                    .services
                    .into_iter()
                    .map(|svc| (svc.service, svc.restarts))
                    .collect()
            })
            .unwrap_or_default();
        let tick = Tick {
            at: jiff::Timestamp::now().as_second(),
            stats,
            apply,
            islanded: *control.replication.islanded.borrow(),
            restarts,
        };
        let (history, dir) = (history.clone(), control.data_dir.clone());
        let done = tokio::task::spawn_blocking(move || {
            let outcome = recorder.tick(&history, &dir, tick);
            (recorder, outcome)
        })
        .await;
        match done {
            Ok((recorder, outcome)) => {
                match outcome {
                    Err(e) if !*failing => {
                        tracing::warn!(error = %e, "could not write the metrics history; the charts miss this sample");
                        *failing = true;
                    }
                    Ok(()) if *failing => {
                        tracing::info!("the metrics history is written again");
                        *failing = false;
                    }
                    _ => {}
                }
                Some(recorder)
            }
            Err(e) => {
                tracing::error!(error = %e, "the metrics history's recorder failed; no more history until plantd restarts");
                None
            }
        }
    }

    /// The last hour of samples for the journal page, oldest first: from `metrics.db` (so
    /// also from before a restart) when it opened, else from memory.
    pub async fn journal_history(&self) -> Vec<Point> {
        if let Some(h) = self.history.clone() {
            let since = jiff::Timestamp::now().as_second() - super::history::FINE_KEEP_S;
            match tokio::task::spawn_blocking(move || h.fine_since(since)).await {
                Ok(Ok(samples)) => return samples.iter().map(Point::from).collect(),
                Ok(Err(e)) => tracing::warn!(error = %e, "could not read the metrics history"),
                Err(e) => tracing::warn!(error = %e, "could not read the metrics history"),
            }
        }
        self.history()
    }

    fn sample(&self, stats: &Stats, now: Instant) {
        let mut rings = self.rings.lock().expect("not poisoned");
        push(
            &mut rings.history,
            HISTORY,
            Point {
                at: super::store::now(),
                depth: stats.depth,
                last_seq: stats.last_seq,
                hub_acked_seq: stats.hub_acked_seq,
                taken: Some(now),
            },
        );
    }

    fn link_report(&self, r: &LinkReport, last_error: &mut Option<String>) {
        let mut rings = self.rings.lock().expect("not poisoned");
        let changed = rings
            .link_since
            .as_ref()
            .is_none_or(|(s, _, _)| *s != r.state);
        if changed {
            let at = super::store::now();
            let detail = match (&r.hub, &r.last_error) {
                (Some(hub), _) => format!("hub {hub}"),
                (None, Some(e)) => e.clone(),
                (None, None) => String::new(),
            };
            push(
                &mut rings.links,
                LINK_CHANGES,
                LinkChange {
                    at: at.clone(),
                    state: link_name(r.state).into(),
                    detail,
                },
            );
            rings.link_since = Some((r.state, at, Instant::now()));
        }
        if r.last_error.is_some() && r.last_error != *last_error {
            push(
                &mut rings.errors,
                ERRORS,
                ErrorEntry {
                    at: super::store::now(),
                    source: "replication".into(),
                    message: r.last_error.clone().unwrap_or_default(),
                },
            );
        }
        last_error.clone_from(&r.last_error);
    }

    /// Records each component that turned unhealthy, or changed its reason while unhealthy.
    fn health_changes(&self, before: &[Component], now: &[Component]) {
        let mut rings = self.rings.lock().expect("not poisoned");
        for c in now.iter().filter(|c| c.state == State::Unhealthy) {
            // The replicator's own errors are recorded from the link.
            if c.name == "replication" {
                continue;
            }
            if before.iter().any(|b| b == c) {
                continue;
            }
            push(
                &mut rings.errors,
                ERRORS,
                ErrorEntry {
                    at: super::store::now(),
                    source: c.name.clone(),
                    message: c.detail.clone(),
                },
            );
        }
    }

    /// The last hour of samples, oldest first.
    pub fn history(&self) -> Vec<Point> {
        self.rings
            .lock()
            .expect("not poisoned")
            .history
            .iter()
            .cloned()
            .collect()
    }

    /// Transactions per second received and acknowledged, over about the last minute.
    pub fn rates(&self) -> (f64, f64) {
        let rings = self.rings.lock().expect("not poisoned");
        let Some(last) = rings.history.back() else {
            return (0.0, 0.0);
        };
        let Some(last_at) = last.taken else {
            return (0.0, 0.0);
        };
        let first = rings
            .history
            .iter()
            .rev()
            .find(|p| {
                p.taken
                    .is_some_and(|t| last_at.duration_since(t) >= Duration::from_secs(60))
            })
            .or_else(|| rings.history.front());
        let Some(first) = first.filter(|f| f.taken != last.taken) else {
            return (0.0, 0.0);
        };
        let secs = last_at
            .duration_since(first.taken.expect("samples carry their time"))
            .as_secs_f64();
        let rate = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        (
            rate(first.last_seq, last.last_seq),
            rate(first.hub_acked_seq, last.hub_acked_seq),
        )
    }

    /// Link state changes, newest first.
    pub fn link_history(&self) -> Vec<LinkChange> {
        self.rings
            .lock()
            .expect("not poisoned")
            .links
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    /// Recent errors, newest first.
    pub fn errors(&self) -> Vec<ErrorEntry> {
        self.rings
            .lock()
            .expect("not poisoned")
            .errors
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    /// The link as shown: its report with since when it is in that state.
    pub fn link_view(
        &self,
        report: Option<&LinkReport>,
        islanded_on_purpose: bool,
    ) -> Option<LinkView> {
        let r = report?;
        let rings = self.rings.lock().expect("not poisoned");
        let (since, for_s) = match &rings.link_since {
            Some((state, at, t)) if *state == r.state => (at.clone(), t.elapsed().as_secs()),
            _ => (super::store::now(), 0),
        };
        Some(LinkView {
            state: r.state,
            since,
            for_s,
            hub: r.hub.clone(),
            last_error: r.last_error.clone(),
            islanded_on_purpose,
        })
    }
}

pub fn link_name(s: LinkState) -> &'static str {
    match s {
        LinkState::Online => "online",
        LinkState::Degraded => "degraded",
        LinkState::Islanded => "islanded",
        LinkState::Draining => "draining",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Degraded,
    ActionNeeded,
}

/// What the verdict is judged on.
pub struct Snapshot<'a> {
    pub components: &'a [Component],
    pub stack: Option<&'a StackReport>,
    /// `None` when the plant is not enrolled.
    pub link: Option<&'a LinkView>,
    pub enrolled: bool,
    pub journal: Option<&'a Stats>,
    pub disk_free_bytes: u64,
    pub disk_total_bytes: u64,
    /// Age of the newest backup, when backups are scheduled; `Some(None)`: none yet.
    pub backup_age_s: Option<Option<u64>>,
}

/// A link down this long, with transactions waiting, needs someone to look.
const LINK_DOWN_ACTION: u64 = 4 * 3600;
/// A scheduled daily backup older than this is overdue.
const BACKUP_OVERDUE: u64 = 26 * 3600;

/// The overview's one verdict, and the reasons for it (worst first).
pub fn verdict(s: &Snapshot) -> (Verdict, Vec<String>) {
    let mut action = Vec::new();
    let mut degraded = Vec::new();
    for c in s.components {
        let name = c.name.as_str();
        // Judged below from what they report in detail.
        if matches!(name, "replication" | "stack") {
            continue;
        }
        match c.state {
            State::Ok => {}
            State::Starting => degraded.push(format!("{name} is starting: {}", c.detail)),
            State::Unhealthy => action.push(format!("{name}: {}", c.detail)),
        }
    }
    match (s.stack, s.components.iter().find(|c| c.name == "stack")) {
        (Some(stack), _) if stack.docker != "reachable" => action.push(format!(
            "the Docker engine cannot be reached: {}",
            stack.docker
        )),
        (Some(stack), _) if stack.down => {
            action.push("the stack was taken down by an admin (`plantd stack down`)".into())
        }
        (Some(stack), _) => {
            for svc in &stack.services {
                let name = &svc.service;
                if let Some(reason) = &svc.held {
                    degraded.push(format!("{name} is held stopped: {reason}"));
                } else if svc.breaker {
                    action.push(format!(
                        "{name} keeps crashing and plantd stopped restarting it; fix the cause, then reset its breaker"
                    ));
                } else if svc.state != "running" {
                    action.push(format!("{name} is {}", svc.state));
                } else if svc.health == "unhealthy" {
                    action.push(format!("{name} is unhealthy: {}", svc.detail));
                } else if svc.health == "busy" {
                    // Working slowly (a lock held, say); plantd leaves it alone.
                    degraded.push(format!("{name} is busy: {}", svc.detail));
                } else if svc.health != "healthy" && svc.restarts > 0 {
                    // Down after a crash or a restart: not serving until its probe passes.
                    action.push(format!(
                        "{name} is {} again after a restart by plantd ({} since plantd started)",
                        svc.health, svc.restarts
                    ));
                } else if svc.health != "healthy" {
                    degraded.push(format!("{name} is {}", svc.health));
                }
            }
        }
        (None, Some(c)) if c.state == State::Unhealthy => {
            action.push(format!("stack: {}", c.detail))
        }
        (None, _) => {}
    }
    let replication = s.components.iter().find(|c| c.name == "replication");
    if !s.enrolled {
        match replication {
            // Enrollment files that cannot be used: replication stopped without anyone asking.
            Some(c) if c.state == State::Unhealthy && !c.detail.starts_with("not enrolled") => {
                action.push(format!("replication: {}", c.detail))
            }
            _ => degraded
                .push("not enrolled with a hub: transactions stay in this plant's journal".into()),
        }
    } else if let Some(link) = s.link {
        let waiting = s.journal.map(|j| j.depth).unwrap_or(0);
        if link.islanded_on_purpose {
            degraded.push(format!(
                "islanded on purpose by an admin; {waiting} transactions wait in the journal"
            ));
        } else if link.state == LinkState::Draining {
            degraded.push(format!(
                "connected to the hub and sending the backlog: {waiting} transactions wait"
            ));
        } else if link.state != LinkState::Online {
            let line = format!(
                "the link to the hub is {} for {}; {waiting} transactions wait in the journal",
                link_name(link.state),
                human(link.for_s)
            );
            if link.for_s > LINK_DOWN_ACTION && waiting > 0 {
                action.push(format!("{line}: check the WAN"));
            } else {
                degraded.push(line);
            }
        }
    }
    if s.disk_total_bytes > 0 {
        let free = s.disk_free_bytes as f64 / s.disk_total_bytes as f64;
        let line = format!(
            "{} free on the data disk ({:.0} %)",
            bytesize::ByteSize::b(s.disk_free_bytes),
            free * 100.0
        );
        if free < 0.05 {
            action.push(line);
        } else if free < 0.15 {
            degraded.push(line);
        }
    }
    match s.backup_age_s {
        Some(None) => degraded.push("no backup yet".into()),
        Some(Some(age)) if age > BACKUP_OVERDUE => {
            degraded.push(format!("the last backup is {} old", human(age)))
        }
        _ => {}
    }
    let verdict = if !action.is_empty() {
        Verdict::ActionNeeded
    } else if !degraded.is_empty() {
        Verdict::Degraded
    } else {
        Verdict::Ok
    };
    action.extend(degraded);
    (verdict, action)
}

/// "3 min", "2 h 5 min", "3 d 4 h".
pub fn human(s: u64) -> String {
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::ServiceStatus;

    fn service(name: &str, state: &str, health: &str) -> ServiceStatus {
        ServiceStatus {
            service: name.into(),
            state: state.into(),
            health: health.into(),
            image: "img".into(),
            restarts: 0,
            since: None,
            container: None,
            id: None,
            breaker: false,
            detail: String::new(),
            held: None,
        }
    }

    fn ok(name: &str) -> Component {
        Component {
            name: name.into(),
            state: State::Ok,
            detail: "fine".into(),
        }
    }

    fn link(state: LinkState, on_purpose: bool) -> LinkView {
        LinkView {
            state,
            since: String::new(),
            for_s: 600,
            hub: None,
            last_error: None,
            islanded_on_purpose: on_purpose,
        }
    }

    fn stats(depth: u64, oldest: Option<u64>) -> Stats {
        Stats {
            depth,
            last_seq: depth,
            hub_acked_seq: 0,
            applied_seq: 0,
            oldest_unacked_age_s: oldest,
        }
    }

    fn judge(
        services: &[ServiceStatus],
        link: Option<&LinkView>,
        journal: &Stats,
        disk_free: u64,
        backup: Option<Option<u64>>,
    ) -> (Verdict, Vec<String>) {
        let stack = StackReport {
            name: "p".into(),
            docker: "reachable".into(),
            down: false,
            services: services.to_vec(),
        };
        let components = [ok("journal"), ok("api"), ok("stack"), ok("replication")];
        verdict(&Snapshot {
            components: &components,
            stack: Some(&stack),
            link,
            enrolled: true,
            journal: Some(journal),
            disk_free_bytes: disk_free,
            disk_total_bytes: 100,
            backup_age_s: backup,
        })
    }

    #[test]
    fn the_verdict_follows_the_worst_thing_wrong() {
        let healthy = [
            service("postgres", "running", "healthy"),
            service("redis", "running", "healthy"),
            service("odoo", "running", "healthy"),
        ];
        let online = link(LinkState::Online, false);
        let quiet = stats(0, None);
        let fresh = Some(Some(3600));
        assert_eq!(
            judge(&healthy, Some(&online), &quiet, 50, fresh),
            (Verdict::Ok, vec![])
        );

        let mut stopped = healthy.clone();
        stopped[0] = service("postgres", "exited", "unhealthy");
        let (v, reasons) = judge(&stopped, Some(&online), &quiet, 50, fresh);
        assert_eq!(v, Verdict::ActionNeeded);
        assert_eq!(reasons, ["postgres is exited"]);

        let (v, reasons) = judge(
            &healthy,
            Some(&link(LinkState::Islanded, false)),
            &stats(12, Some(60)),
            50,
            fresh,
        );
        assert_eq!(v, Verdict::Degraded);
        assert_eq!(
            reasons,
            ["the link to the hub is islanded for 10 min; 12 transactions wait in the journal"]
        );
        let mut long = link(LinkState::Islanded, false);
        long.for_s = 5 * 3600;
        let (v, _) = judge(&healthy, Some(&long), &stats(12, Some(5 * 3600)), 50, fresh);
        assert_eq!(v, Verdict::ActionNeeded, "down over 4 h with a backlog");
        let (v, reasons) = judge(
            &healthy,
            Some(&link(LinkState::Draining, false)),
            &stats(12, Some(5 * 3600)),
            50,
            fresh,
        );
        assert_eq!(
            v,
            Verdict::Degraded,
            "draining after an island: {reasons:?}"
        );
        let (v, reasons) = judge(
            &healthy,
            Some(&link(LinkState::Islanded, true)),
            &stats(12, Some(5 * 3600)),
            50,
            fresh,
        );
        assert_eq!(v, Verdict::Degraded, "islanded on purpose: {reasons:?}");

        assert_eq!(
            judge(&healthy, Some(&online), &quiet, 10, fresh).0,
            Verdict::Degraded
        );
        assert_eq!(
            judge(&healthy, Some(&online), &quiet, 4, fresh).0,
            Verdict::ActionNeeded
        );
        assert_eq!(
            judge(&healthy, Some(&online), &quiet, 50, Some(None)).1,
            ["no backup yet"]
        );
        assert_eq!(
            judge(&healthy, Some(&online), &quiet, 50, Some(Some(27 * 3600))).1,
            ["the last backup is 1 d 3 h old"]
        );

        let mut held = healthy.clone();
        held[2].held = Some("a backup is being restored".into());
        held[2].state = "exited".into();
        assert_eq!(
            judge(&held, Some(&online), &quiet, 50, fresh).0,
            Verdict::Degraded
        );
        let mut restarting = healthy.clone();
        restarting[0].health = "starting".into();
        assert_eq!(
            judge(&restarting, Some(&online), &quiet, 50, fresh).0,
            Verdict::Degraded,
            "first start"
        );
        restarting[0].restarts = 1;
        let (v, reasons) = judge(&restarting, Some(&online), &quiet, 50, fresh);
        assert_eq!(v, Verdict::ActionNeeded, "down after a crash: {reasons:?}");
        let mut looping = healthy.clone();
        looping[2].breaker = true;
        assert_eq!(
            judge(&looping, Some(&online), &quiet, 50, fresh).0,
            Verdict::ActionNeeded
        );
    }

    #[test]
    fn rates_come_from_the_last_minute_of_samples() {
        let m = Monitor::default();
        let t0 = Instant::now();
        assert_eq!(m.rates(), (0.0, 0.0));
        for i in 0..10u64 {
            let s = Stats {
                depth: 0,
                last_seq: i * 100,
                hub_acked_seq: i * 50,
                applied_seq: 0,
                oldest_unacked_age_s: None,
            };
            m.sample(&s, t0 + Duration::from_secs(10 * i));
        }
        assert_eq!(m.rates(), (10.0, 5.0));
        assert_eq!(m.history().len(), 10);
    }

    #[test]
    fn link_changes_and_errors_are_kept_newest_first() {
        let m = Monitor::default();
        let mut last = None;
        let report = |state, hub: Option<&str>, e: Option<&str>| LinkReport {
            state,
            hub: hub.map(Into::into),
            last_error: e.map(Into::into),
            reconnects: 0,
        };
        m.link_report(&report(LinkState::Degraded, None, None), &mut last);
        m.link_report(
            &report(LinkState::Online, Some("hub:9444"), None),
            &mut last,
        );
        m.link_report(
            &report(LinkState::Online, Some("hub:9444"), None),
            &mut last,
        );
        m.link_report(
            &report(LinkState::Degraded, None, Some("timed out")),
            &mut last,
        );
        m.link_report(
            &report(LinkState::Degraded, None, Some("timed out")),
            &mut last,
        );
        let states: Vec<_> = m.link_history().iter().map(|c| c.state.clone()).collect();
        assert_eq!(states, ["degraded", "online", "degraded"]);
        let errors: Vec<_> = m.errors().iter().map(|e| e.message.clone()).collect();
        assert_eq!(errors, ["timed out"]);
    }
}
