//! The hub's `/metrics`, in Prometheus' text format: plants by state and each plant's lag,
//! silence and acked seq (the hub's own account, [`super::truth`]), the central apply's
//! backlog, the alerts that hold and the sends of the last 90 days, remote actions by state,
//! and this replica's plant sessions and database pool. Read access: a fleet page session, or
//! a fleet API token as a bearer token (as `GET /api/v1/plants`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::fleet::Fleet;
use crate::admin::metrics::Out;

/// Plant sessions this replica serves now.
#[derive(Clone, Default)]
pub struct Sessions(Arc<AtomicUsize>);

impl Sessions {
    /// Counts a session while the guard lives.
    pub fn open(&self) -> SessionGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        SessionGuard(self.0.clone())
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct SessionGuard(Arc<AtomicUsize>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

const STATES: [&str; 6] = [
    "online", "degraded", "islanded", "offline", "unknown", "revoked",
];

pub async fn serve(State(fleet): State<Fleet>, headers: HeaderMap) -> Response {
    // A session (the fleet page) needs no database; a token (Prometheus) is looked up.
    // The fleet's figures span every plant: a session that sees some plants only is refused.
    if let Err(e @ crate::admin::AdminError::Forbidden(_)) = fleet.signin.reader_on(&headers, None)
    {
        return e.into_response();
    }
    if fleet.signin.reader(&headers).is_err() {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| t.starts_with("pda_") && t.len() <= 128);
        let known = match token {
            Some(t) => match fleet.database.store().await {
                Ok(store) => store
                    .api_token(&crate::digest::sha256_hex(t.as_bytes()))
                    .await
                    .ok()
                    .flatten()
                    .is_some(),
                Err(_) => {
                    return crate::admin::AdminError::Unavailable(
                        "the hub cannot reach its database; retrying".into(),
                    )
                    .into_response()
                }
            },
            None => false,
        };
        if !known {
            let mut r = (
                StatusCode::UNAUTHORIZED,
                axum::Json(crate::enrollment::protocol::ErrorBody::new(
                    "unauthorized",
                    "sign in to the fleet page, or send a fleet API token as \"Authorization: Bearer TOKEN\" (plantd hub api-token create --name NAME)".into(),
                )),
            )
                .into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"plantd hub\""),
            );
            return r;
        }
    }
    let store = match fleet.database.store().await {
        Ok(s) => s,
        Err(_) => {
            return crate::admin::AdminError::Unavailable(
                "the hub cannot reach its database; retrying".into(),
            )
            .into_response()
        }
    };
    let read = async {
        let rows = store.plants_counting(false).await?;
        let backups = fleet.backups.clone();
        let plants =
            tokio::task::spawn_blocking(move || super::truth::report(rows, &backups)).await?;
        let apply = match fleet.central {
            Some(_) => Some(store.apply_status().await?),
            None => None,
        };
        let counts = store.metric_counts().await?;
        anyhow::Ok((plants, apply, counts))
    };
    let (plants, apply, counts) = match read.await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "/metrics: hub database");
            return crate::admin::AdminError::Unavailable(
                "the hub cannot reach its database; retrying".into(),
            )
            .into_response();
        }
    };
    let mut out = Out(String::new());
    out.family(
        "plantd_hub_build_info",
        "gauge",
        "The running hub's version.",
    );
    out.sample(
        "plantd_hub_build_info",
        &[("version", crate::release::version())],
        1.0,
    );
    out.family(
        "plantd_hub_plants",
        "gauge",
        "Plants by the hub's account of them.",
    );
    for state in STATES {
        let n = plants.iter().filter(|p| p.truth.state == state).count();
        out.sample("plantd_hub_plants", &[("state", state)], n as f64);
    }
    out.family(
        "plantd_hub_plant_up",
        "gauge",
        "1 for a plant online or degraded, 0 otherwise, with its state.",
    );
    for p in &plants {
        let up = matches!(p.truth.state, "online" | "degraded");
        out.sample(
            "plantd_hub_plant_up",
            &[("plant", &p.row.plant), ("state", p.truth.state)],
            if up { 1.0 } else { 0.0 },
        );
    }
    out.family(
        "plantd_hub_plant_lag_seconds",
        "gauge",
        "How long the oldest transaction the hub does not hold yet has waited at the plant (0: the hub holds all the plant said it had).",
    );
    for p in &plants {
        if let Some(lag) = p.truth.lag_s {
            out.sample(
                "plantd_hub_plant_lag_seconds",
                &[("plant", &p.row.plant)],
                lag as f64,
            );
        }
    }
    out.family(
        "plantd_hub_plant_silence_seconds",
        "gauge",
        "Seconds since the hub last heard from the plant.",
    );
    for p in &plants {
        if let Some(s) = p.row.seen_s_ago {
            out.sample(
                "plantd_hub_plant_silence_seconds",
                &[("plant", &p.row.plant)],
                s as f64,
            );
        }
    }
    out.family(
        "plantd_hub_plant_acked_seq",
        "counter",
        "The plant's transactions stored and acknowledged (its seqs are contiguous from 1).",
    );
    for p in &plants {
        out.sample(
            "plantd_hub_plant_acked_seq",
            &[("plant", &p.row.plant)],
            p.row.acked_seq as f64,
        );
    }
    if let Some(apply) = &apply {
        out.family(
            "plantd_hub_apply_behind",
            "gauge",
            "Transactions stored at the hub and not applied to the central Odoo yet.",
        );
        for a in apply {
            out.sample(
                "plantd_hub_apply_behind",
                &[("plant", &a.plant)],
                (a.last_seq - a.applied_seq).max(0) as f64,
            );
        }
        out.family(
            "plantd_hub_apply_stopped",
            "gauge",
            "1 when the plant's central apply stopped at a transaction.",
        );
        for a in apply {
            out.sample(
                "plantd_hub_apply_stopped",
                &[("plant", &a.plant)],
                if a.stopped_at.is_some() { 1.0 } else { 0.0 },
            );
        }
    }
    out.family(
        "plantd_hub_alerts_firing",
        "gauge",
        "Alerts that fired and still hold, by tier.",
    );
    for (tier, n) in &counts.firing {
        out.sample("plantd_hub_alerts_firing", &[("tier", tier)], *n as f64);
    }
    out.family(
        "plantd_hub_alert_sends",
        "gauge",
        "Alert sends of the last 90 days (the history kept), by outcome.",
    );
    for (outcome, n) in &counts.sends {
        out.sample("plantd_hub_alert_sends", &[("outcome", outcome)], *n as f64);
    }
    out.family(
        "plantd_hub_remote_actions",
        "gauge",
        "Remote actions by state.",
    );
    for (state, n) in &counts.actions {
        out.sample("plantd_hub_remote_actions", &[("state", state)], *n as f64);
    }
    out.one(
        "plantd_hub_sessions",
        "gauge",
        "Plant replication sessions this hub replica serves.",
        fleet.sessions.count() as f64,
    );
    let (open, busy, max) = fleet.database.usage();
    out.family(
        "plantd_hub_db_connections",
        "gauge",
        "This replica's database pool: connections open, in use, and the most it opens.",
    );
    out.sample(
        "plantd_hub_db_connections",
        &[("state", "open")],
        open as f64,
    );
    out.sample(
        "plantd_hub_db_connections",
        &[("state", "in_use")],
        busy as f64,
    );
    out.sample("plantd_hub_db_connections", &[("state", "max")], max as f64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out.0,
    )
        .into_response()
}
