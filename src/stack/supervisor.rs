//! The supervisor's loop: probes and Docker's view absorbed into the trackers, the decisions
//! of `reconcile` carried out, upgrades judged, and the report published. Its commands are in
//! `commands.rs`, Odoo's first start in `odoo_setup.rs`.

use super::*;

impl Supervisor {
    pub(super) fn now(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut probes: mpsc::UnboundedReceiver<ProbeResult>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let wake = self.wake.clone();
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => {}
                _ = wake.notified() => {}
                Some(command) = commands.recv() => self.command(command).await,
                Some(p) = probes.recv() => {
                    if !self.probed(p) {
                        continue;
                    }
                }
            }
            self.step().await;
        }
        if let Some(t) = self.events_task.take() {
            t.abort();
        }
        // The containers keep running: the plant's Odoo does not stop because plantd restarts.
    }

    /// Takes a probe result; true when the service's health changed.
    pub(super) fn probed(&mut self, p: ProbeResult) -> bool {
        let now = self.now();
        let probe = self.desired.get(p.service).probe;
        let Some(tracker) = self.trackers.get_mut(&p.service) else {
            return false;
        };
        if tracker.generation != p.generation {
            return false;
        }
        let before = (tracker.health.clone(), tracker.eager());
        tracker.record(now, p.result, &probe);
        let after = (tracker.health.clone(), tracker.eager());
        if after.0 != before.0 {
            match &after.0 {
                Health::Unhealthy(why) => self.event(Some(p.service), "unhealthy", why.clone()),
                Health::Healthy => self.event(Some(p.service), "healthy", "probe passed".into()),
                Health::Busy(why) => self.event(Some(p.service), "busy", why.clone()),
                Health::Starting => {}
            }
        }
        after != before
    }

    pub(super) fn event(&mut self, service: Option<Service>, event: &str, message: String) {
        tracing::info!(
            stack = %self.desired.name,
            service = service.map(|s| s.as_str()).unwrap_or("-"),
            event,
            %message,
            "stack"
        );
        if self.events.len() == EVENTS_KEPT {
            self.events.pop_front();
        }
        self.events.push_back(StackEvent {
            at: now_rfc3339(),
            service: service.map(|s| s.to_string()),
            event: event.to_string(),
            message,
        });
    }

    /// The engine, connecting (and subscribing to its events) when there is none.
    pub(super) async fn engine(&mut self) -> Option<Engine> {
        if let Some(e) = &self.engine {
            return Some(e.clone());
        }
        match Engine::connect(self.docker_socket.as_deref()).await {
            Ok(engine) => {
                if self.engine_error.take().is_some() {
                    self.event(None, "docker", "the Docker engine answers again".into());
                }
                let events = engine.events(&self.desired.name);
                let wake = self.wake.clone();
                if let Some(t) = self.events_task.take() {
                    t.abort();
                }
                self.events_task = Some(tokio::spawn(async move {
                    futures_util::pin_mut!(events);
                    while let Some(e) = events.next().await {
                        wake.notify_one();
                        if e.is_err() {
                            break;
                        }
                    }
                }));
                self.engine = Some(engine.clone());
                if !self.conf_secured {
                    self.conf_secured = true;
                    // Beside the supervisor, not before its first look at the containers:
                    // reading a named image user makes a container, which takes a moment.
                    tokio::spawn(secure_odoo_conf(
                        engine.clone(),
                        self.desired.name.clone(),
                        self.desired.odoo_conf.0.clone(),
                        self.desired.get(Service::Odoo).image.clone(),
                    ));
                }
                Some(engine)
            }
            Err(e) => {
                self.engine_lost(e);
                None
            }
        }
    }

    pub(super) fn engine_lost(&mut self, error: docker::Error) {
        let error = error.to_string();
        self.engine = None;
        if self.engine_error.is_none() {
            self.event(
                None,
                "docker",
                format!("the Docker engine is unreachable: {error}; the journal keeps accepting transactions"),
            );
        }
        self.engine_error = Some(error);
        self.trackers.clear();
        self.seen.clear();
    }

    pub(super) async fn step(&mut self) {
        let now = self.now();
        // A hold may also come from `plantd backup restore` run while no daemon ran (it leaves
        // the same marker): read them every time.
        self.held = held_services(&self.desired.dir);
        if let Some(engine) = self.engine().await {
            match engine.observe(&self.desired).await {
                Ok(seen) => {
                    let changed = self.absorb(seen, now);
                    self.date_changes(&engine, changed).await;
                    if !self.adopted {
                        self.adopted = true;
                        self.adopt(now);
                    }
                    if !self.down {
                        self.judge_upgrades(now);
                        let observed = self
                            .seen
                            .iter()
                            .map(|(s, seen)| (*s, seen.observed.clone()))
                            .collect();
                        let health = self
                            .trackers
                            .iter()
                            .map(|(s, t)| (*s, t.health.clone()))
                            .collect();
                        let actions = reconcile::reconcile(
                            now,
                            &self.desired,
                            &observed,
                            &health,
                            &mut self.books,
                        );
                        for action in actions {
                            if !self.held.contains_key(&action.service()) {
                                self.execute(&engine, action, now).await;
                            }
                        }
                    }
                }
                Err(e) => self.engine_lost(e),
            }
        }
        self.publish();
    }

    /// Takes in what Docker shows; returns the services whose container or state changed (or
    /// that were seen for the first time), whose `since` is for now the time of this look.
    pub(super) fn absorb(&mut self, seen: Vec<Seen>, now: u64) -> Vec<Service> {
        let mut changed = Vec::new();
        self.seen.clear();
        for s in seen {
            let service = s.service;
            self.books.entry(service).or_default().seen = true;
            let running = matches!(s.observed.state, RunState::Running | RunState::Paused);
            match self.trackers.get(&service) {
                Some(t) if running && t.container == s.observed.id => {}
                _ if running => {
                    self.generation += 1;
                    self.trackers
                        .insert(service, Tracker::new(&s.observed.id, self.generation, now));
                }
                _ => {
                    self.trackers.remove(&service);
                }
            }
            let key = (s.observed.id.clone(), s.observed.state);
            if self
                .since
                .get(&service)
                .is_none_or(|(id, state, _)| (id.clone(), *state) != key)
            {
                self.since.insert(service, (key.0, key.1, now_rfc3339()));
                changed.push(service);
            }
            self.seen.insert(service, s);
        }
        self.trackers.retain(|s, _| self.seen.contains_key(s));
        changed
    }

    /// Puts Docker's own time on the `since` of `changed` services (a container that ran before
    /// plantd started has been up since Docker started it, not since plantd saw it).
    async fn date_changes(&mut self, engine: &Engine, changed: Vec<Service>) {
        for service in changed {
            let Some((id, state, _)) = self.since.get(&service).cloned() else {
                continue;
            };
            if let Some(at) = engine.state_since(&id, state).await {
                self.since.insert(service, (id, state, at));
            }
        }
    }

    pub(super) async fn execute(&mut self, engine: &Engine, action: Action, now: u64) {
        let service = action.service();
        let book = self.books.entry(service).or_default();
        let counts = action.counts(book);
        let spec = self.desired.get(service).clone();
        let current = self.seen.get(&service).cloned();
        let (event, reason, result) = match action {
            Action::OpenBreaker { reason, .. } => {
                book.breaker = true;
                self.event(Some(service), "breaker_open", reason);
                return;
            }
            Action::Create { reason, .. } => ("create", reason, self.create(engine, &spec).await),
            Action::Start { reason, .. } => {
                let id = current.map(|c| c.observed.id).unwrap_or_default();
                (
                    "start",
                    reason,
                    engine.start(&id).await.map_err(Error::from),
                )
            }
            Action::Restart { reason, .. } => {
                let c = current.expect("a restart is of an observed container");
                let paused = c.observed.state == RunState::Paused;
                (
                    "restart",
                    reason,
                    engine
                        .restart(&c.observed.id, paused)
                        .await
                        .map_err(Error::from),
                )
            }
            Action::Recreate { reason, .. } => {
                let c = current.expect("a recreate is of an observed container");
                // The new image first: a missing image must not cost the running container.
                let result = match engine.ensure_image(&spec).await {
                    Ok(()) => match engine
                        .remove(&c.observed.id, c.observed.state == RunState::Paused)
                        .await
                    {
                        Ok(()) => self.create(engine, &spec).await,
                        Err(e) => Err(e.into()),
                    },
                    Err(e) => Err(e.into()),
                };
                ("recreate", reason, result)
            }
        };
        let book = self.books.entry(service).or_default();
        if counts {
            book.record_restart(now);
        }
        self.trackers.remove(&service);
        // A restart keeps the container's id and state: the next look dates it again.
        self.since.remove(&service);
        match result {
            Ok(()) => {
                self.errors.remove(&service);
                self.event(Some(service), event, reason);
            }
            Err(e) => {
                let e = e.to_string();
                if !counts {
                    book.not_before = now + 5_000;
                }
                if self.errors.get(&service) != Some(&e) {
                    self.event(
                        Some(service),
                        &format!("{event}_failed"),
                        format!("{reason}: {e}"),
                    );
                }
                self.errors.insert(service, e);
            }
        }
    }

    pub(super) async fn create(
        &mut self,
        engine: &Engine,
        spec: &ServiceSpec,
    ) -> Result<(), Error> {
        if self.desired.fresh_secrets {
            // New passwords next to an old database would lock Odoo and the probes out.
            for volume in self
                .desired
                .get(Service::Postgres)
                .mounts
                .iter()
                .filter(|m| m.is_volume())
            {
                if engine.has_volume(&self.desired, &volume.source).await? {
                    return Err(Error::SecretsLost {
                        volume: volume.source.clone(),
                    });
                }
            }
        }
        engine
            .ensure_network_and_volumes(&self.desired, spec)
            .await?;
        self.desired.fresh_secrets = false;
        engine.ensure_image(spec).await?;
        let owner = if spec.service == Service::Odoo {
            engine.image_user(&self.desired.name, &spec.image).await?
        } else {
            None
        };
        self.desired
            .write_files(owner)
            .map_err(Error::WriteConfig)?;
        if spec.service == Service::Odoo {
            self.ensure_odoo_database(engine, spec).await?;
            // Not a reason to keep Odoo down; said loudly instead.
            if let Err(e) = self.secure_odoo_admin().await {
                tracing::warn!(error = %e, "could not check the password of Odoo's admin login");
                self.event(Some(Service::Odoo), "admin_password_failed", e.to_string());
            }
        }
        let id = engine.create(&self.desired, spec).await?;
        engine.start(&id).await?;
        Ok(())
    }

    pub(super) fn judge_upgrades(&mut self, now: u64) {
        let deadline = self.upgrade_deadline.as_millis() as u64;
        let services: Vec<Service> = self.upgrades.keys().copied().collect();
        for service in services {
            let new_hash = self.desired.get(service).hash.clone();
            let on_new = self
                .seen
                .get(&service)
                .is_some_and(|s| s.observed.spec == new_hash);
            let upgrade = self.upgrades.get_mut(&service).expect("listed");
            if on_new && upgrade.started.is_none() {
                upgrade.started = Some(now);
            }
            let health = self
                .trackers
                .get(&service)
                .filter(|t| on_new && t.probed)
                .map(|t| &t.health);
            let book = self.books.entry(service).or_default();
            let verdict = reconcile::judge_upgrade(
                now,
                upgrade.applied,
                upgrade.started,
                deadline,
                health,
                book.total_restarts - upgrade.restarts_at_start,
                book.breaker,
            );
            match verdict {
                UpgradeVerdict::Wait => {}
                UpgradeVerdict::Commit => {
                    let image = self.desired.get(service).image.clone();
                    self.upgrades.remove(&service);
                    self.event(Some(service), "upgrade_done", format!("healthy on {image}"));
                }
                UpgradeVerdict::RollBack(why) => {
                    book.reset();
                    let upgrade = self.upgrades.remove(&service).expect("present");
                    let failed = self.desired.get(service).image.clone();
                    let previous = upgrade.previous.image.clone();
                    *self.desired.get_mut(service) = upgrade.previous;
                    self.event(
                        Some(service),
                        "rollback",
                        format!("{failed}: {why}; going back to {previous}"),
                    );
                }
            }
        }
    }

    pub(super) fn publish(&mut self) {
        let mut services = Vec::new();
        let mut targets = BTreeMap::new();
        let mut summary = Vec::new();
        let mut worst = State::Ok;
        for spec in &self.desired.services {
            let service = spec.service;
            let seen = self.seen.get(&service);
            let tracker = self.trackers.get(&service);
            let book = self.books.get(&service).cloned().unwrap_or_default();
            let (health, why) = match (seen, tracker) {
                (None, _) if self.engine_error.is_some() => ("unknown", String::new()),
                // Its last probe may have passed, but a paused container answers nothing.
                (Some(s), _) if s.observed.state == RunState::Paused => (
                    "unhealthy",
                    "the container is paused: it answers nothing until it is unpaused or restarted"
                        .to_string(),
                ),
                (_, Some(t)) => match &t.health {
                    Health::Healthy => ("healthy", String::new()),
                    Health::Starting => ("starting", String::new()),
                    Health::Busy(why) => ("busy", why.clone()),
                    Health::Unhealthy(why) => ("unhealthy", why.clone()),
                },
                (_, None) => ("unhealthy", "not running".to_string()),
            };
            let breaker = "crash loop: the breaker is open; `plantd stack reset SERVICE` after fixing the cause";
            let detail = match (self.errors.get(&service), book.breaker) {
                (Some(e), true) => format!("{breaker}; last error: {e}"),
                (None, true) => breaker.to_string(),
                (Some(e), false) => e.clone(),
                (None, false) => why,
            };
            let held = self.held.get(&service).cloned();
            let (health, detail) = match &held {
                Some(why) => (
                    "held",
                    format!("kept stopped on purpose: {why} (`plantd stack release {service}` lets it run)"),
                ),
                None => (health, detail),
            };
            let state = match health {
                _ if book.breaker => State::Unhealthy,
                // Working, slowly: nothing for an admin or an update's gate to act on.
                "healthy" | "busy" => State::Ok,
                "starting" => State::Starting,
                _ => State::Unhealthy,
            };
            worst = worse(worst, state);
            summary.push(format!("{service} {health}"));
            if let (Some(seen), Some(t)) = (seen, tracker) {
                if let Some(ip) = seen.ip {
                    targets.insert(
                        service,
                        Target {
                            container: seen.observed.id.clone(),
                            generation: t.generation,
                            ip,
                            probe: spec.probe,
                            eager: t.eager(),
                            odoo: match service {
                                Service::Odoo => probe::OdooContext {
                                    postgres: self
                                        .seen
                                        .get(&Service::Postgres)
                                        .filter(|p| p.observed.state == RunState::Running)
                                        .and_then(|p| p.ip),
                                    database: self.desired.odoo_database.clone(),
                                    paused: seen.observed.state == RunState::Paused,
                                },
                                _ => probe::OdooContext::default(),
                            },
                        },
                    );
                }
            }
            services.push(ServiceStatus {
                service: service.to_string(),
                state: match seen {
                    Some(s) => s.observed.state.as_str(),
                    None if self.engine_error.is_some() => "unknown",
                    None => "missing",
                }
                .to_string(),
                health: health.to_string(),
                image: seen.map_or(spec.image.clone(), |s| s.image.clone()),
                restarts: book.total_restarts,
                since: self
                    .since
                    .get(&service)
                    .filter(|_| seen.is_some())
                    .map(|s| s.2.clone()),
                container: seen.map(|s| s.name.clone()),
                id: seen.map(|s| s.observed.id.chars().take(12).collect()),
                breaker: book.breaker,
                detail,
                held,
            });
        }
        let odoo_ip = self
            .seen
            .get(&Service::Odoo)
            .filter(|s| s.observed.state == RunState::Running)
            .and_then(|s| s.ip);
        self.odoo_tx.send_if_modified(|ip| {
            let changed = *ip != odoo_ip;
            *ip = odoo_ip;
            changed
        });
        self.targets_tx.send_if_modified(|t| {
            let changed = *t != targets;
            *t = targets;
            changed
        });
        let docker = match &self.engine_error {
            Some(e) => format!("unreachable: {e}"),
            None => "reachable".to_string(),
        };
        match (&self.engine_error, self.down) {
            (Some(e), _) => self.components.set(
                "stack",
                State::Unhealthy,
                format!("the Docker engine is unreachable ({e}); transactions are still accepted"),
            ),
            (None, true) => self.components.set(
                "stack",
                State::Unhealthy,
                "taken down by an admin (`plantd stack apply` brings it back)",
            ),
            (None, false) => self.components.set("stack", worst, summary.join(", ")),
        }
        let report = StackReport {
            name: self.desired.name.clone(),
            docker,
            down: self.down,
            services,
        };
        self.report_tx.send_if_modified(|r| {
            let changed = *r != report;
            *r = report;
            changed
        });
    }
}
