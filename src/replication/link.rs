//! The link state the plant shows everywhere: derived from connection events with hysteresis,
//! as a pure state machine.
//!
//! - `islanded`: an admin islanded the plant on purpose, or no hub has been reachable for
//!   `island_after`;
//! - `degraded`: the link is down since less than `island_after`, or came back less than
//!   `stable_after` ago after a drop (so a flapping link does not flicker to online);
//! - `draining`: connected, with more than `drain_above` transactions unacknowledged, until the
//!   backlog falls under half of that;
//! - `online`: connected and caught up.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Online,
    Degraded,
    Islanded,
    Draining,
}

#[derive(Debug, Clone, Copy)]
pub struct LinkSettings {
    pub island_after: Duration,
    pub stable_after: Duration,
    pub drain_above: u64,
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings {
            island_after: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
            drain_above: 10_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Link {
    settings: LinkSettings,
    connected_since: Option<Instant>,
    down_since: Instant,
    last_drop: Option<Instant>,
    on_purpose: bool,
    draining: bool,
}

impl Link {
    pub fn new(now: Instant, settings: LinkSettings) -> Link {
        Link {
            settings,
            connected_since: None,
            down_since: now,
            last_drop: None,
            on_purpose: false,
            draining: false,
        }
    }

    pub fn connected(&mut self, now: Instant) {
        self.connected_since.get_or_insert(now);
    }

    pub fn disconnected(&mut self, now: Instant) {
        if self.connected_since.take().is_some() {
            self.down_since = now;
            self.last_drop = Some(now);
        }
    }

    /// An admin islands the plant (`true`) or rejoins it (`false`).
    pub fn set_islanded(&mut self, on_purpose: bool) {
        self.on_purpose = on_purpose;
    }

    /// The state now, given the unacknowledged backlog.
    pub fn state(&mut self, now: Instant, backlog: u64) -> LinkState {
        if self.on_purpose {
            return LinkState::Islanded;
        }
        let Some(since) = self.connected_since else {
            return if now.duration_since(self.down_since) >= self.settings.island_after {
                LinkState::Islanded
            } else {
                LinkState::Degraded
            };
        };
        if self.last_drop.is_some() && now.duration_since(since) < self.settings.stable_after {
            return LinkState::Degraded;
        }
        if backlog > self.settings.drain_above {
            self.draining = true;
        } else if backlog < self.settings.drain_above / 2 {
            self.draining = false;
        }
        if self.draining {
            LinkState::Draining
        } else {
            LinkState::Online
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_follow_the_link_with_hysteresis() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut l = Link::new(t0, LinkSettings::default());
        // (time, event, backlog, expected)
        let steps: &[(u64, &str, u64, LinkState)] = &[
            (0, "", 0, LinkState::Degraded),
            (29, "", 0, LinkState::Degraded),
            (30, "", 0, LinkState::Islanded),
            (31, "up", 0, LinkState::Online), // first connection: no drop to recover from
            (32, "", 20_000, LinkState::Draining),
            (33, "", 6_000, LinkState::Draining), // under the threshold, above half of it
            (34, "", 4_000, LinkState::Online),
            (40, "down", 0, LinkState::Degraded),
            (45, "up", 0, LinkState::Degraded), // back, not yet stable
            (54, "", 0, LinkState::Degraded),
            (55, "", 0, LinkState::Online),
            (56, "island", 0, LinkState::Islanded),
            (90, "rejoin", 0, LinkState::Online),
            (91, "down", 0, LinkState::Degraded),
            (121, "", 0, LinkState::Islanded),
        ];
        for &(t, event, backlog, expected) in steps {
            match event {
                "up" => l.connected(s(t)),
                "down" => l.disconnected(s(t)),
                "island" => l.set_islanded(true),
                "rejoin" => l.set_islanded(false),
                _ => {}
            }
            assert_eq!(l.state(s(t), backlog), expected, "at {t} s after {event:?}");
        }
    }
}
