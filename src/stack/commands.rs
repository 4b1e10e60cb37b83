//! What the supervisor does when asked (`plantd stack ...`, the admin UI): events, logs,
//! restarts, resets, holds, `stack apply` and `stack down`.

use super::*;

impl Supervisor {
    pub(super) async fn command(&mut self, command: Command) {
        match command {
            Command::Events(reply) => {
                let _ = reply.send(Ok(self.events.iter().cloned().collect()));
            }
            Command::Reset(service, reply) => {
                let book = self.books.entry(service).or_default();
                let was_open = book.breaker;
                book.reset();
                self.errors.remove(&service);
                let message = if was_open {
                    format!("closed the crash-loop breaker of {service}; plantd restarts it when needed")
                } else {
                    format!("the breaker of {service} was not open; its restart count is cleared")
                };
                self.event(Some(service), "reset", message.clone());
                let _ = reply.send(Ok(message));
            }
            Command::Restart(service, reply) => {
                let result = self.restart_now(service).await;
                let _ = reply.send(result);
            }
            Command::Logs(service, tail, reply) => {
                let result = match (self.engine().await, self.seen.get(&service)) {
                    (None, _) => Err(self.unreachable()),
                    (Some(_), None) => Err(Error::NoContainer { service }),
                    (Some(engine), Some(seen)) => {
                        engine.logs(&seen.name, tail).await.map_err(Error::from)
                    }
                };
                let _ = reply.send(result);
            }
            Command::Apply(spec, reply) => {
                let result = self.apply(*spec);
                let _ = reply.send(result);
            }
            Command::Down(delete_volumes, reply) => {
                let result = match self.engine().await {
                    None => Err(self.unreachable()),
                    Some(engine) => {
                        self.down = true;
                        self.upgrades.clear();
                        let marker = stack_down_marker(&self.desired.dir);
                        if let Err(e) =
                            crate::fsutil::write_atomic(&marker, b"taken down by an admin\n", 0o600)
                        {
                            tracing::warn!(error = %e, "could not record that the stack is down");
                        }
                        let r = engine.down(&self.desired, delete_volumes).await;
                        // What comes back up later is a fresh start, not a crash.
                        self.books.clear();
                        self.trackers.clear();
                        let what = match &r {
                            Ok(done) => done.join("; "),
                            Err(e) => format!("failed: {e}"),
                        };
                        self.event(None, "down", what);
                        r.map_err(Error::from)
                    }
                };
                let _ = reply.send(result);
            }
            Command::Hold(service, reason, reply) => {
                let result = self.hold(service, reason).await;
                let _ = reply.send(result);
            }
        }
        self.publish();
    }

    pub(super) async fn hold(
        &mut self,
        service: Service,
        reason: Option<String>,
    ) -> Result<String, Error> {
        let Some(engine) = self.engine().await else {
            return Err(self.unreachable());
        };
        let marker = hold_marker(&self.desired.dir, service);
        let seen = self.seen.get(&service).cloned();
        match reason {
            Some(why) => {
                crate::fsutil::write_atomic(&marker, why.as_bytes(), 0o600)
                    .map_err(Error::RecordHold)?;
                self.held.insert(service, why.clone());
                self.trackers.remove(&service);
                if let Some(seen) = seen {
                    engine.stop(&seen.observed.id).await.map_err(|source| {
                        Error::HeldButNotStopped {
                            service,
                            container: seen.name.clone(),
                            source,
                        }
                    })?;
                }
                self.event(Some(service), "hold", why);
                Ok(format!("{service} is stopped and held"))
            }
            None => {
                if self.held.remove(&service).is_none() {
                    return Ok(format!("{service} was not held"));
                }
                if let Err(e) = std::fs::remove_file(&marker) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(Error::RemoveHoldMarker {
                            path: marker,
                            source: e,
                        });
                    }
                }
                // Stopped on purpose: starting it again is not a crash.
                self.books.entry(service).or_default().reset();
                if let Some(seen) = seen {
                    if !matches!(seen.observed.state, RunState::Running | RunState::Paused) {
                        engine.start(&seen.observed.id).await.map_err(|source| {
                            Error::ReleasedButNotStarted {
                                service,
                                container: seen.name.clone(),
                                source,
                            }
                        })?;
                    }
                }
                self.event(Some(service), "release", "runs again".into());
                Ok(format!("{service} is released and runs again"))
            }
        }
    }

    pub(super) fn unreachable(&self) -> Error {
        Error::EngineUnreachable {
            why: self
                .engine_error
                .as_deref()
                .unwrap_or("not connected")
                .to_string(),
        }
    }

    pub(super) async fn restart_now(&mut self, service: Service) -> Result<String, Error> {
        let Some(engine) = self.engine().await else {
            return Err(self.unreachable());
        };
        if let Some(why) = self.held.get(&service) {
            return Err(Error::Held {
                service,
                why: why.clone(),
            });
        }
        let Some(seen) = self.seen.get(&service).cloned() else {
            return Err(Error::NoContainerYet { service });
        };
        let paused = seen.observed.state == RunState::Paused;
        let result = match seen.observed.state {
            RunState::Running | RunState::Paused => engine.restart(&seen.observed.id, paused).await,
            _ => engine.start(&seen.observed.id).await,
        };
        self.trackers.remove(&service);
        // A restart keeps the container's id and state: the next look dates it again.
        self.since.remove(&service);
        match result {
            Ok(()) => {
                self.event(Some(service), "restart", "asked by an admin".into());
                Ok(format!("restarted {service} ({})", seen.name))
            }
            Err(e) => {
                self.event(
                    Some(service),
                    "restart_failed",
                    format!("asked by an admin: {e}"),
                );
                Err(Error::Restart { service, source: e })
            }
        }
    }

    /// Starts judging an upgrade of `previous.service` away from `previous`.
    pub(super) fn begin_upgrade(&mut self, previous: ServiceSpec, now: u64) {
        let service = previous.service;
        let book = self.books.entry(service).or_default();
        book.reset();
        let restarts_at_start = book.total_restarts;
        self.upgrades.insert(
            service,
            Upgrade {
                previous,
                applied: now,
                started: None,
                restarts_at_start,
            },
        );
    }

    /// On the first look at Docker: a container on another image than plant.toml names was
    /// changed while plantd was stopped, and is upgraded with the same health gate as by
    /// `stack apply`, rolling back to the image it ran.
    pub(super) fn adopt(&mut self, now: u64) {
        let mut found = Vec::new();
        for (service, seen) in &self.seen {
            let desired = self.desired.get(*service);
            if seen.observed.spec != desired.hash
                && seen.image != desired.image
                && !seen.image.is_empty()
            {
                found.push((desired.with_image(&seen.image), desired.image.clone()));
            }
        }
        for (previous, image) in found {
            let service = previous.service;
            self.event(
                Some(service),
                "apply",
                format!(
                    "upgrading {} -> {image} (plant.toml changed while plantd was stopped); rolls back unless healthy within {} s",
                    previous.image,
                    self.upgrade_deadline.as_secs()
                ),
            );
            self.begin_upgrade(previous, now);
        }
    }

    /// Takes a new desired stack; a changed image is an upgrade with a health gate.
    pub(super) fn apply(&mut self, new: StackSpec) -> Result<String, Error> {
        let now = self.now();
        if new.name != self.desired.name {
            return Err(Error::Renamed {
                from: self.desired.name.clone(),
                to: new.name,
            });
        }
        let mut changes = Vec::new();
        for spec in &new.services {
            let service = spec.service;
            let old = self.desired.get(service);
            if old.hash == spec.hash {
                continue;
            }
            if old.image != spec.image {
                changes.push((
                    service,
                    format!(
                        "{service}: upgrading {} -> {}; rolls back unless healthy within {} s",
                        old.image,
                        spec.image,
                        self.upgrade_deadline.as_secs()
                    ),
                ));
                let previous = self
                    .upgrades
                    .remove(&service)
                    .map(|u| u.previous)
                    .unwrap_or_else(|| old.clone());
                self.begin_upgrade(previous, now);
            } else {
                changes.push((service, format!("{service}: recreating (its spec changed)")));
                self.books.entry(service).or_default().reset();
            }
        }
        let was_down = self.down;
        self.desired = new;
        self.down = false;
        let _ = std::fs::remove_file(stack_down_marker(&self.desired.dir));
        for (service, c) in &changes {
            self.event(Some(*service), "apply", c.clone());
        }
        Ok(match (changes.is_empty(), was_down) {
            (true, false) => "no changes".to_string(),
            (true, true) => "bringing the stack up again".to_string(),
            (false, _) => changes
                .iter()
                .map(|(_, c)| c.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        })
    }
}
