//! Alerts, both ends: conditions in, notices out. The hub and the plant each derive the
//! conditions that hold now (`hub::alerts`, `plant::alerts`) and call [`Alerts::step`] every
//! few seconds; this module decides, purely, what to say to whom and writes the history;
//! [`send`] says it (webhooks signed with HMAC-SHA256, e-mail over SMTP with STARTTLS).
//!
//! Promises:
//! - An alert fires once its condition has held for the rule's `for`, is said once on each
//!   route that takes its tier, again every `repeat` while it holds, and "resolved" on each
//!   route that was told once it has not held for [`CLEAR`] (so that a flapping condition is
//!   one alert, not a storm).
//! - A production alert goes at once, day or night. An info alert outside business hours (the
//!   subject's calendar) waits, and goes when they begin if it still holds; one that ends
//!   before is written down as resolved, unsent.
//! - A send that fails (firing, repeat or resolved) is tried again a minute later on that
//!   route alone; a "resolved" is given up after [`GIVE_UP`].
//! - Routes are known by a stable key (not their place in the config), so that adding,
//!   removing or reordering routes never tells one route what another was told.
//! - A message is at most [`MAX_MESSAGE`] characters, whatever a plant reported.
//! - Every step of every alert is in the history: fired, waiting, sent (where), failed (why),
//!   resolved.
//! - The state survives restarts ([`Alerts`] is serialisable and kept by the caller), so a
//!   restart neither repeats nor forgets an alert.

pub mod send;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::config::alerts::{AlertsConfig, Tier, When};

/// A failed send is tried again on its route after this long.
pub const RETRY: Duration = Duration::from_secs(60);
/// How long a condition must have stopped holding before its alert is resolved.
pub const CLEAR: Duration = Duration::from_secs(20);
/// How long a "resolved" is tried on a route that fails it.
pub const GIVE_UP: Duration = Duration::from_secs(3600);
/// The longest message an alert carries, in characters.
pub const MAX_MESSAGE: usize = 1000;

/// A route as [`Alerts::step`] needs it: its stable key and the tiers it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub key: String,
    pub tiers: BTreeSet<Tier>,
}

/// A condition that holds now.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub when: When,
    /// What it is about: a plant's name at the hub, `rollout 12`, the plant itself.
    pub subject: String,
    /// What is wrong, in words.
    pub message: String,
    /// Since when it holds, when the caller knows (a plant offline since it was last heard
    /// from); otherwise since the step that first saw it.
    pub since: Option<Timestamp>,
}

/// What one route knows of one alert.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteState {
    /// When it was last told (firing or repeat).
    pub told_at: Option<Timestamp>,
    pub times: u32,
    /// When a send last failed (cleared by the next success).
    pub failed_at: Option<Timestamp>,
    /// Told that the alert is resolved.
    #[serde(default)]
    pub resolved_told: bool,
}

/// One alert, open while its condition holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub when: When,
    pub subject: String,
    pub tier: Tier,
    pub message: String,
    pub since: Timestamp,
    /// When it fired (its condition had held for the rule's `for`); `None`: not yet.
    pub fired_at: Option<Timestamp>,
    /// By route key.
    pub routes: BTreeMap<String, RouteState>,
    /// An info alert held back until business hours.
    pub waiting: bool,
    /// Since when its condition has not held (it resolves after [`CLEAR`]).
    #[serde(default)]
    pub cleared_at: Option<Timestamp>,
    /// When it was resolved; it stays until every route told of it heard so.
    #[serde(default)]
    pub resolved_at: Option<Timestamp>,
}

/// What a notice says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Firing,
    Repeat,
    Resolved,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Firing => "firing",
            Kind::Repeat => "repeat",
            Kind::Resolved => "resolved",
        }
    }
}

/// A message for one route.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub route: usize,
    pub kind: Kind,
    pub alert: Alert,
    pub at: Timestamp,
}

/// One line of alert history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: Timestamp,
    pub when: When,
    pub subject: String,
    pub tier: Tier,
    /// `fired`, `waiting`, `sent`, `send_failed`, `resolved`, `resolved_unsent`.
    pub event: String,
    /// The alert's message, or for sends: the route and what happened.
    pub message: String,
}

impl Event {
    fn of(alert: &Alert, at: Timestamp, event: &str, message: String) -> Event {
        Event {
            at,
            when: alert.when,
            subject: alert.subject.clone(),
            tier: alert.tier,
            event: event.into(),
            message,
        }
    }
}

/// Every open alert (firing, or waiting for its condition's `for`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Alerts {
    pub open: BTreeMap<String, Alert>,
}

fn key(when: When, subject: &str) -> String {
    format!("{}/{subject}", when.as_str())
}

fn elapsed(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or_default()
}

impl Alerts {
    /// One step at `now`: `conditions` are those that hold; `routes` the routes configured
    /// now. Returns the notices to send (then report each with [`Alerts::sent`]) and the
    /// history to keep.
    pub fn step(
        &mut self,
        config: &AlertsConfig,
        routes: &[Route],
        conditions: Vec<Condition>,
        now: Timestamp,
    ) -> (Vec<Notice>, Vec<Event>) {
        let (mut notices, mut history) = (Vec::new(), Vec::new());
        let mut holding = BTreeSet::new();
        for c in conditions {
            let Some(rule) = config.rules.iter().find(|r| r.when == c.when) else {
                continue;
            };
            let k = key(c.when, &c.subject);
            if !holding.insert(k.clone()) {
                continue;
            }
            let message = cap(&c.message);
            // Back after it was resolved: a new alert (a "resolved" not yet told is dropped).
            if self.open.get(&k).is_some_and(|a| a.resolved_at.is_some()) {
                self.open.remove(&k);
            }
            let alert = self.open.entry(k).or_insert_with(|| Alert {
                when: c.when,
                subject: c.subject.clone(),
                tier: rule.tier,
                message: message.clone(),
                since: c.since.map_or(now, |s| s.min(now)),
                fired_at: None,
                routes: BTreeMap::new(),
                waiting: false,
                cleared_at: None,
                resolved_at: None,
            });
            alert.message = message;
            alert.tier = rule.tier;
            alert.cleared_at = None;
            if alert.fired_at.is_none() && elapsed(alert.since, now) >= rule.hold {
                alert.fired_at = Some(now);
                history.push(Event::of(alert, now, "fired", alert.message.clone()));
            }
        }
        let mut gone = Vec::new();
        for (k, alert) in self.open.iter_mut() {
            if holding.contains(k) || alert.resolved_at.is_some() {
                continue;
            }
            if alert.fired_at.is_none() {
                gone.push(k.clone());
                continue;
            }
            let cleared = *alert.cleared_at.get_or_insert(now);
            if elapsed(cleared, now) < CLEAR {
                continue;
            }
            let told = alert.routes.values().any(|r| r.times > 0);
            let event = if !told && alert.waiting {
                "resolved_unsent"
            } else {
                "resolved"
            };
            history.push(Event::of(
                alert,
                now,
                event,
                format!("no longer holds (it was: {})", alert.message),
            ));
            alert.resolved_at = Some(now);
        }
        for (k, alert) in self.open.iter() {
            let Some(resolved) = alert.resolved_at else {
                continue;
            };
            // Done once every route still configured that was told heard "resolved".
            let owed: Vec<&String> = routes
                .iter()
                .map(|r| &r.key)
                .filter(|key| {
                    alert
                        .routes
                        .get(*key)
                        .is_some_and(|s| s.times > 0 && !s.resolved_told)
                })
                .collect();
            if owed.is_empty() {
                gone.push(k.clone());
            } else if elapsed(resolved, now) >= GIVE_UP {
                history.push(Event::of(
                    alert,
                    now,
                    "send_failed",
                    format!("gave up telling {} route(s) it is resolved", owed.len()),
                ));
                gone.push(k.clone());
            }
        }
        for k in gone {
            self.open.remove(&k);
        }
        for alert in self.open.values_mut() {
            if alert.fired_at.is_none() {
                continue;
            }
            let retry_ok = |s: &RouteState| s.failed_at.is_none_or(|f| elapsed(f, now) >= RETRY);
            if alert.resolved_at.is_some() {
                for (route, r) in routes.iter().enumerate() {
                    let state = alert.routes.get(&r.key).cloned().unwrap_or_default();
                    if state.times > 0 && !state.resolved_told && retry_ok(&state) {
                        notices.push(Notice {
                            route,
                            kind: Kind::Resolved,
                            alert: alert.clone(),
                            at: now,
                        });
                    }
                }
                continue;
            }
            if alert.cleared_at.is_some() {
                // Not holding just now: nothing more is said unless it holds again.
                continue;
            }
            let may_go = alert.tier == Tier::Production
                || config
                    .calendar_of(&alert.subject)
                    .is_none_or(|c| c.is_open(now));
            for (route, r) in routes.iter().enumerate() {
                if !r.tiers.contains(&alert.tier) {
                    continue;
                }
                let state = alert.routes.get(&r.key).cloned().unwrap_or_default();
                let due = match state.told_at {
                    None => true,
                    Some(told) => elapsed(told, now) >= config.repeat,
                } && retry_ok(&state);
                if !due {
                    continue;
                }
                if !may_go {
                    if !alert.waiting {
                        alert.waiting = true;
                        history.push(Event::of(
                            alert,
                            now,
                            "waiting",
                            "an info alert outside business hours: sent when they begin, if it still holds".into(),
                        ));
                    }
                    continue;
                }
                notices.push(Notice {
                    route,
                    kind: if state.times == 0 {
                        Kind::Firing
                    } else {
                        Kind::Repeat
                    },
                    alert: alert.clone(),
                    at: now,
                });
            }
        }
        (notices, history)
    }

    /// Records how a notice's send went on `route` (its key and name): `Err` says why it
    /// failed. Returns the history line.
    pub fn sent(
        &mut self,
        notice: &Notice,
        route: &Route,
        route_name: &str,
        outcome: Result<(), String>,
    ) -> Event {
        let (event, message) = match &outcome {
            Ok(()) => ("sent", format!("{} to {route_name}", notice.kind.as_str())),
            Err(e) => (
                "send_failed",
                format!("{} to {route_name}: {e}", notice.kind.as_str()),
            ),
        };
        let k = key(notice.alert.when, &notice.alert.subject);
        if let Some(alert) = self.open.get_mut(&k) {
            let state = alert.routes.entry(route.key.clone()).or_default();
            match (outcome, notice.kind) {
                (Ok(()), Kind::Resolved) => {
                    state.resolved_told = true;
                    state.failed_at = None;
                }
                (Ok(()), _) => {
                    state.told_at = Some(notice.at);
                    state.times += 1;
                    state.failed_at = None;
                    alert.waiting = false;
                }
                (Err(_), _) => state.failed_at = Some(notice.at),
            }
        }
        Event::of(&notice.alert, notice.at, event, message)
    }

    /// The alerts that have fired and are not resolved, for display.
    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.open
            .values()
            .filter(|a| a.fired_at.is_some() && a.resolved_at.is_none())
    }
}

/// `text`, cut to [`MAX_MESSAGE`] characters.
fn cap(text: &str) -> String {
    if text.chars().count() <= MAX_MESSAGE {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(MAX_MESSAGE).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::alerts::{Calendar, Rule};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn config(hold_s: u64, tier: Tier, calendar: Option<Calendar>) -> AlertsConfig {
        AlertsConfig {
            rules: vec![Rule {
                when: When::Offline,
                tier,
                hold: Duration::from_secs(hold_s),
                age: None,
                below_percent: None,
            }],
            repeat: Duration::from_secs(3600),
            calendar,
            ..AlertsConfig::default()
        }
    }

    fn offline(since: &str) -> Vec<Condition> {
        vec![Condition {
            when: When::Offline,
            subject: "lyon".into(),
            message: "not heard from".into(),
            since: Some(at(since)),
        }]
    }

    fn route(key: &str, tiers: &[Tier]) -> Route {
        Route {
            key: key.into(),
            tiers: tiers.iter().copied().collect(),
        }
    }

    fn both() -> Vec<Route> {
        vec![route("hook", &[Tier::Info, Tier::Production])]
    }

    fn send_all(a: &mut Alerts, routes: &[Route], notices: &[Notice]) {
        for n in notices {
            a.sent(n, &routes[n.route], "hook", Ok(()));
        }
    }

    const T0: &str = "2026-12-07T10:00:00Z";

    #[test]
    fn fires_after_its_hold_once_repeats_and_resolves_after_clearing() {
        let c = config(300, Tier::Production, None);
        let (mut a, r) = (Alerts::default(), both());
        let (n, h) = a.step(&c, &r, offline(T0), at("2026-12-07T10:04:00Z"));
        assert!(n.is_empty() && h.is_empty(), "held 4 min of 5: nothing yet");
        let (n, h) = a.step(&c, &r, offline(T0), at("2026-12-07T10:05:00Z"));
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].kind, Kind::Firing);
        assert_eq!(h[0].event, "fired");
        send_all(&mut a, &r, &n);
        let (n, _) = a.step(&c, &r, offline(T0), at("2026-12-07T10:30:00Z"));
        assert!(n.is_empty(), "said once until the repeat interval");
        let (n, _) = a.step(&c, &r, offline(T0), at("2026-12-07T11:05:00Z"));
        assert_eq!(n[0].kind, Kind::Repeat);
        send_all(&mut a, &r, &n);
        // Gone for less than CLEAR, then back: still the same alert, nothing said.
        let (n, h) = a.step(&c, &r, vec![], at("2026-12-07T11:06:00Z"));
        assert!(n.is_empty() && h.is_empty());
        let (n, h) = a.step(&c, &r, offline(T0), at("2026-12-07T11:06:10Z"));
        assert!(n.is_empty() && h.is_empty(), "a flap is not a new alert");
        a.step(&c, &r, vec![], at("2026-12-07T11:07:00Z"));
        let (n, h) = a.step(&c, &r, vec![], at("2026-12-07T11:07:20Z"));
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].kind, Kind::Resolved);
        assert_eq!(h[0].event, "resolved");
        assert_eq!(a.firing().count(), 0);
        send_all(&mut a, &r, &n);
        let (n, _) = a.step(&c, &r, vec![], at("2026-12-07T11:07:25Z"));
        assert!(n.is_empty());
        assert!(
            a.open.is_empty(),
            "gone once every told route heard it is resolved"
        );
    }

    #[test]
    fn failed_sends_are_retried_a_minute_later_on_their_route_only_resolved_too() {
        let c = config(0, Tier::Production, None);
        let mut a = Alerts::default();
        let r = vec![
            route("hook", &[Tier::Info, Tier::Production]),
            route("mail", &[Tier::Info, Tier::Production]),
        ];
        let (n, _) = a.step(&c, &r, offline(T0), at(T0));
        assert_eq!(n.len(), 2);
        a.sent(&n[0], &r[0], "hook", Ok(()));
        let e = a.sent(&n[1], &r[1], "mail", Err("refused".into()));
        assert_eq!(e.event, "send_failed");
        let (n, _) = a.step(&c, &r, offline(T0), at("2026-12-07T10:00:30Z"));
        assert!(n.is_empty());
        let (n, _) = a.step(&c, &r, offline(T0), at("2026-12-07T10:01:00Z"));
        assert_eq!(n.len(), 1);
        assert_eq!((n[0].route, n[0].kind), (1, Kind::Firing));
        a.sent(&n[0], &r[1], "mail", Ok(()));
        a.step(&c, &r, vec![], at("2026-12-07T10:02:00Z"));
        let (n, _) = a.step(&c, &r, vec![], at("2026-12-07T10:02:30Z"));
        assert_eq!(n.len(), 2);
        a.sent(&n[0], &r[0], "hook", Err("down".into()));
        a.sent(&n[1], &r[1], "mail", Ok(()));
        let (n, _) = a.step(&c, &r, vec![], at("2026-12-07T10:03:40Z"));
        assert_eq!((n.len(), n[0].route, n[0].kind), (1, 0, Kind::Resolved));
        a.sent(&n[0], &r[0], "hook", Ok(()));
        a.step(&c, &r, vec![], at("2026-12-07T10:03:45Z"));
        assert!(a.open.is_empty());
    }

    #[test]
    fn routes_are_known_by_key_not_place() {
        let c = config(0, Tier::Production, None);
        let mut a = Alerts::default();
        let r = vec![
            route("hook", &[Tier::Production]),
            route("mail", &[Tier::Production]),
        ];
        let (n, _) = a.step(&c, &r, offline(T0), at(T0));
        a.sent(&n[0], &r[0], "hook", Ok(()));
        a.sent(&n[1], &r[1], "mail", Ok(()));
        // The webhook is removed and a new one put first: it is told, the e-mail is not again.
        let r2 = vec![route("hook2", &[Tier::Production]), r[1].clone()];
        let (n, _) = a.step(&c, &r2, offline(T0), at("2026-12-07T10:00:05Z"));
        assert_eq!((n.len(), n[0].route, n[0].kind), (1, 0, Kind::Firing));
        a.sent(&n[0], &r2[0], "hook2", Ok(()));
        // Resolved goes to the routes that were told and are still there.
        a.step(&c, &r2, vec![], at("2026-12-07T10:01:00Z"));
        let (n, _) = a.step(&c, &r2, vec![], at("2026-12-07T10:01:30Z"));
        let told: Vec<usize> = n.iter().map(|n| n.route).collect();
        assert_eq!(told, [0, 1]);
    }

    #[test]
    fn info_alerts_wait_for_business_hours_and_production_ones_do_not() {
        let calendar = Calendar {
            timezone: jiff::tz::TimeZone::UTC,
            days: [true; 7],
            opens: jiff::civil::time(8, 0, 0, 0),
            closes: jiff::civil::time(17, 0, 0, 0),
            holidays: Default::default(),
        };
        let night = at("2026-12-07T22:00:00Z");
        let c = config(0, Tier::Info, Some(calendar.clone()));
        let (mut a, r) = (Alerts::default(), both());
        let (n, h) = a.step(&c, &r, offline("2026-12-07T21:00:00Z"), night);
        assert!(n.is_empty());
        assert_eq!(
            h.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
            ["fired", "waiting"]
        );
        let (n, _) = a.step(
            &c,
            &r,
            offline("2026-12-07T21:00:00Z"),
            at("2026-12-08T08:00:00Z"),
        );
        assert_eq!(n.len(), 1, "sent when business hours begin");
        // One that ends in the night is written down, never sent.
        let mut b = Alerts::default();
        b.step(&c, &r, offline("2026-12-07T21:00:00Z"), night);
        b.step(&c, &r, vec![], at("2026-12-07T23:00:00Z"));
        let (n, h) = b.step(&c, &r, vec![], at("2026-12-07T23:01:00Z"));
        assert!(n.is_empty());
        assert_eq!(h[0].event, "resolved_unsent");
        // Production goes at night.
        let p = config(0, Tier::Production, Some(calendar));
        let (n, _) = Alerts::default().step(&p, &r, offline("2026-12-07T21:00:00Z"), night);
        assert_eq!(n.len(), 1);
    }

    #[test]
    fn tiers_messages_and_state_round_trips() {
        let c = config(0, Tier::Info, None);
        let mut a = Alerts::default();
        let r = vec![route("p", &[Tier::Production]), route("i", &[Tier::Info])];
        let mut long = offline(T0);
        long[0].message = "x".repeat(5000);
        let (n, _) = a.step(&c, &r, long, at(T0));
        assert_eq!(n.iter().map(|n| n.route).collect::<Vec<_>>(), [1]);
        assert_eq!(n[0].alert.message.chars().count(), MAX_MESSAGE + 1);
        send_all(&mut a, &r, &n);
        let json = serde_json::to_string(&a).unwrap();
        let mut back: Alerts = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
        let (n, _) = back.step(&c, &r, offline(T0), at("2026-12-07T10:10:00Z"));
        assert!(n.is_empty(), "a restart does not say it again");
    }
}
