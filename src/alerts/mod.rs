//! Alerts, both ends: conditions in, notices out. The hub and the plant each derive the
//! conditions that hold now (`hub::alerts`, `plant::alerts`) and call [`Alerts::step`] every
//! few seconds; this module decides, purely, what to say to whom and writes the history;
//! [`send`] says it (webhooks signed with HMAC-SHA256, e-mail over SMTP with STARTTLS).
//!
//! Promises:
//! - An alert fires once its condition has held for the rule's `for`, is said once on each
//!   route that takes its tier, again every `repeat` while it holds, and "resolved" on each
//!   route that was told once it no longer holds.
//! - A production alert goes at once, day or night. An info alert outside business hours (the
//!   subject's calendar) waits, and goes when they begin if it still holds; one that ends
//!   before is written down as resolved, unsent.
//! - A send that fails is tried again a minute later on that route alone.
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
    /// By route, in the order the routes are configured.
    pub routes: Vec<RouteState>,
    /// An info alert held back until business hours.
    pub waiting: bool,
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
    /// One step at `now`: `conditions` are those that hold; `routes` the tiers each route
    /// takes. Returns the notices to send (then report each with [`Alerts::sent`]) and the
    /// history to keep.
    pub fn step(
        &mut self,
        config: &AlertsConfig,
        routes: &[BTreeSet<Tier>],
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
            let alert = self.open.entry(k).or_insert_with(|| Alert {
                when: c.when,
                subject: c.subject.clone(),
                tier: rule.tier,
                message: c.message.clone(),
                since: c.since.map_or(now, |s| s.min(now)),
                fired_at: None,
                routes: Vec::new(),
                waiting: false,
            });
            alert.message = c.message;
            alert.tier = rule.tier;
            alert.routes.resize(routes.len(), RouteState::default());
            if alert.fired_at.is_none() && elapsed(alert.since, now) >= rule.hold {
                alert.fired_at = Some(now);
                history.push(Event::of(alert, now, "fired", alert.message.clone()));
            }
        }
        // Resolved: every route told of it hears so.
        let gone: Vec<String> = self
            .open
            .keys()
            .filter(|k| !holding.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            let alert = self.open.remove(&k).expect("listed above");
            if alert.fired_at.is_none() {
                continue;
            }
            let told: Vec<usize> = (0..alert.routes.len())
                .filter(|&i| alert.routes[i].times > 0)
                .collect();
            let event = if told.is_empty() && alert.waiting {
                "resolved_unsent"
            } else {
                "resolved"
            };
            history.push(Event::of(
                &alert,
                now,
                event,
                format!("no longer holds (it was: {})", alert.message),
            ));
            for route in told {
                notices.push(Notice {
                    route,
                    kind: Kind::Resolved,
                    alert: alert.clone(),
                    at: now,
                });
            }
        }
        for alert in self.open.values_mut() {
            if alert.fired_at.is_none() {
                continue;
            }
            let may_go = alert.tier == Tier::Production
                || config
                    .calendar_of(&alert.subject)
                    .is_none_or(|c| c.is_open(now));
            for (route, tiers) in routes.iter().enumerate() {
                if !tiers.contains(&alert.tier) {
                    continue;
                }
                let state = &alert.routes[route];
                let due = match state.told_at {
                    None => true,
                    Some(told) => elapsed(told, now) >= config.repeat,
                } && state.failed_at.is_none_or(|f| elapsed(f, now) >= RETRY);
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

    /// Records how a notice's send went: `Err` says why it failed. Returns the history line.
    pub fn sent(
        &mut self,
        notice: &Notice,
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
        if notice.kind != Kind::Resolved {
            let k = key(notice.alert.when, &notice.alert.subject);
            if let Some(alert) = self.open.get_mut(&k) {
                if let Some(state) = alert.routes.get_mut(notice.route) {
                    match outcome {
                        Ok(()) => {
                            state.told_at = Some(notice.at);
                            state.times += 1;
                            state.failed_at = None;
                            alert.waiting = false;
                        }
                        Err(_) => state.failed_at = Some(notice.at),
                    }
                }
            }
        }
        Event::of(&notice.alert, notice.at, event, message)
    }

    /// The alerts that have fired, for display.
    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.open.values().filter(|a| a.fired_at.is_some())
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

    fn both() -> Vec<BTreeSet<Tier>> {
        vec![[Tier::Info, Tier::Production].into()]
    }

    fn send_all(a: &mut Alerts, notices: &[Notice]) {
        for n in notices {
            a.sent(n, "hook", Ok(()));
        }
    }

    #[test]
    fn fires_after_its_hold_once_repeats_and_resolves() {
        let c = config(300, Tier::Production, None);
        let mut a = Alerts::default();
        let (n, h) = a.step(
            &c,
            &both(),
            offline("2026-12-07T10:00:00Z"),
            at("2026-12-07T10:04:00Z"),
        );
        assert!(n.is_empty() && h.is_empty(), "held 4 min of 5: nothing yet");
        let (n, h) = a.step(
            &c,
            &both(),
            offline("2026-12-07T10:00:00Z"),
            at("2026-12-07T10:05:00Z"),
        );
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].kind, Kind::Firing);
        assert_eq!(h[0].event, "fired");
        send_all(&mut a, &n);
        let (n, _) = a.step(
            &c,
            &both(),
            offline("2026-12-07T10:00:00Z"),
            at("2026-12-07T10:30:00Z"),
        );
        assert!(n.is_empty(), "said once until the repeat interval");
        let (n, _) = a.step(
            &c,
            &both(),
            offline("2026-12-07T10:00:00Z"),
            at("2026-12-07T11:05:00Z"),
        );
        assert_eq!(n[0].kind, Kind::Repeat);
        send_all(&mut a, &n);
        let (n, h) = a.step(&c, &both(), vec![], at("2026-12-07T11:06:00Z"));
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].kind, Kind::Resolved);
        assert_eq!(h[0].event, "resolved");
        assert!(a.open.is_empty());
    }

    #[test]
    fn a_failed_send_is_retried_a_minute_later_on_its_route_only() {
        let c = config(0, Tier::Production, None);
        let mut a = Alerts::default();
        let routes = vec![both()[0].clone(), both()[0].clone()];
        let t0 = at("2026-12-07T10:00:00Z");
        let (n, _) = a.step(&c, &routes, offline("2026-12-07T10:00:00Z"), t0);
        assert_eq!(n.len(), 2);
        a.sent(&n[0], "hook", Ok(()));
        let e = a.sent(&n[1], "mail", Err("refused".into()));
        assert_eq!(e.event, "send_failed");
        let (n, _) = a.step(
            &c,
            &routes,
            offline("2026-12-07T10:00:00Z"),
            at("2026-12-07T10:00:30Z"),
        );
        assert!(n.is_empty());
        let (n, _) = a.step(
            &c,
            &routes,
            offline("2026-12-07T10:00:00Z"),
            at("2026-12-07T10:01:00Z"),
        );
        assert_eq!(n.len(), 1);
        assert_eq!((n[0].route, n[0].kind), (1, Kind::Firing));
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
        let mut a = Alerts::default();
        let (n, h) = a.step(&c, &both(), offline("2026-12-07T21:00:00Z"), night);
        assert!(n.is_empty());
        assert_eq!(
            h.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
            ["fired", "waiting"]
        );
        let (n, _) = a.step(
            &c,
            &both(),
            offline("2026-12-07T21:00:00Z"),
            at("2026-12-08T08:00:00Z"),
        );
        assert_eq!(n.len(), 1, "sent when business hours begin");
        // One that ends in the night is written down, never sent.
        let mut b = Alerts::default();
        b.step(&c, &both(), offline("2026-12-07T21:00:00Z"), night);
        let (n, h) = b.step(&c, &both(), vec![], at("2026-12-07T23:00:00Z"));
        assert!(n.is_empty());
        assert_eq!(h[0].event, "resolved_unsent");
        // Production goes at night.
        let p = config(0, Tier::Production, Some(calendar));
        let (n, _) = Alerts::default().step(&p, &both(), offline("2026-12-07T21:00:00Z"), night);
        assert_eq!(n.len(), 1);
    }

    #[test]
    fn routes_take_only_their_tiers_and_state_survives_a_round_trip() {
        let c = config(0, Tier::Info, None);
        let mut a = Alerts::default();
        let routes = vec![[Tier::Production].into(), [Tier::Info].into()];
        let (n, _) = a.step(
            &c,
            &routes,
            offline("2026-12-07T10:00:00Z"),
            at("2026-12-07T10:00:00Z"),
        );
        assert_eq!(n.iter().map(|n| n.route).collect::<Vec<_>>(), [1]);
        send_all(&mut a, &n);
        let json = serde_json::to_string(&a).unwrap();
        let mut back: Alerts = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
        let (n, _) = back.step(
            &c,
            &routes,
            offline("2026-12-07T10:00:00Z"),
            at("2026-12-07T10:10:00Z"),
        );
        assert!(n.is_empty(), "a restart does not say it again");
    }
}
