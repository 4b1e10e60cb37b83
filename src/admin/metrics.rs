//! `/metrics` in Prometheus' text format (version 0.0.4), from the same overview the UI shows.
//! Read access as for the admin API: a session, or a device token as a bearer token.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

use super::api::Overview;
use super::monitor::{link_name, Verdict};
use super::{Admin, AdminError};
use crate::replication::link::LinkState;

pub async fn serve(State(admin): State<Admin>, headers: HeaderMap) -> Result<Response, AdminError> {
    admin.monitor_reader(&headers)?;
    let overview = admin.overview().await;
    let (ingest, acks) = admin.monitor.rates();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&overview, ingest, acks),
    )
        .into_response())
}

/// Prometheus' text format, written family by family (the hub's `/metrics` writes with it too).
pub(crate) struct Out(pub String);

impl Out {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }

    pub fn one(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The text of `/metrics`.
pub fn render(o: &Overview, ingest_per_s: f64, acks_per_s: f64) -> String {
    let mut out = Out(String::new());
    out.family(
        "plantd_build_info",
        "gauge",
        "The running plantd's version.",
    );
    out.sample("plantd_build_info", &[("version", o.version)], 1.0);
    out.family(
        "plantd_verdict",
        "gauge",
        "The overview's verdict: 1 for the current one.",
    );
    for (v, name) in [
        (Verdict::Ok, "ok"),
        (Verdict::Degraded, "degraded"),
        (Verdict::ActionNeeded, "action_needed"),
    ] {
        out.sample("plantd_verdict", &[("verdict", name)], flag(o.verdict == v));
    }
    if let Some(j) = &o.journal {
        out.one(
            "plantd_journal_depth",
            "gauge",
            "Transactions not yet acknowledged by the hub.",
            j.depth as f64,
        );
        out.one(
            "plantd_journal_transactions_total",
            "counter",
            "Transactions accepted (the journal's last seq).",
            j.last_seq as f64,
        );
        out.one(
            "plantd_journal_acked_total",
            "counter",
            "Transactions acknowledged by the hub (its cursor).",
            j.hub_acked_seq as f64,
        );
        out.one(
            "plantd_journal_applied_total",
            "counter",
            "Transactions applied to the plant's Odoo (its cursor).",
            j.applied_seq as f64,
        );
        out.one(
            "plantd_replication_lag_seconds",
            "gauge",
            "Age of the oldest transaction the hub has not acknowledged; 0 when none waits.",
            j.oldest_unacked_age_s.unwrap_or(0) as f64,
        );
    }
    out.one(
        "plantd_ingest_per_second",
        "gauge",
        "Transactions received per second over the last minute.",
        ingest_per_s,
    );
    out.one(
        "plantd_acks_per_second",
        "gauge",
        "Transactions acknowledged by the hub per second over the last minute.",
        acks_per_s,
    );
    if let Some(link) = &o.link {
        out.family(
            "plantd_link_state",
            "gauge",
            "The link to the hub: 1 for the current state.",
        );
        for s in [
            LinkState::Online,
            LinkState::Degraded,
            LinkState::Islanded,
            LinkState::Draining,
        ] {
            out.sample(
                "plantd_link_state",
                &[("state", link_name(s))],
                flag(link.state == s),
            );
        }
        out.one(
            "plantd_link_islanded_on_purpose",
            "gauge",
            "1 when an admin islanded the plant.",
            flag(link.islanded_on_purpose),
        );
    }
    if let Some(services) = &o.services {
        out.family(
            "plantd_service_healthy",
            "gauge",
            "1 when the service runs and its probe passes.",
        );
        for s in services {
            out.sample(
                "plantd_service_healthy",
                &[("service", &s.service)],
                flag(s.state == "running" && s.health == "healthy"),
            );
        }
        out.family(
            "plantd_service_restarts_total",
            "counter",
            "Restarts by plantd since the daemon started.",
        );
        for s in services {
            out.sample(
                "plantd_service_restarts_total",
                &[("service", &s.service)],
                s.restarts as f64,
            );
        }
        out.family(
            "plantd_service_breaker_open",
            "gauge",
            "1 when the crash-loop breaker stopped restarts.",
        );
        for s in services {
            out.sample(
                "plantd_service_breaker_open",
                &[("service", &s.service)],
                flag(s.breaker),
            );
        }
    }
    out.family(
        "plantd_component_healthy",
        "gauge",
        "1 when the daemon's component reports ok.",
    );
    for c in &o.components {
        out.sample(
            "plantd_component_healthy",
            &[("component", &c.name)],
            flag(c.state == crate::health::State::Ok),
        );
    }
    if let Some(age) = o.backup.age_s {
        out.one(
            "plantd_backup_age_seconds",
            "gauge",
            "Age of the newest local backup.",
            age as f64,
        );
    }
    out.one(
        "plantd_disk_free_bytes",
        "gauge",
        "Free bytes on the data directory's file system.",
        o.host.disk_free_bytes as f64,
    );
    out.one(
        "plantd_disk_total_bytes",
        "gauge",
        "Size of the data directory's file system.",
        o.host.disk_total_bytes as f64,
    );
    out.one(
        "plantd_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
        o.uptime_s as f64,
    );
    out.0
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        let mut out = super::Out(String::new());
        out.sample("m", &[("a", "x\"y\\z\nw")], 1.5);
        assert_eq!(out.0, "m{a=\"x\\\"y\\\\z\\nw\"} 1.5\n");
    }
}
