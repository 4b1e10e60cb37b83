//! The plant's own alerts: every few seconds the conditions that hold are read off the same
//! overview the admin UI shows (its verdict and reasons, the link, backups, the apply, the
//! disk) and the certificates plantd serves and presents, and [`crate::alerts::Alerts`] is
//! stepped with `[alerts]` of plant.toml. Sent from the plant itself, so that they go out
//! while the WAN to the hub is down; kept in `admin.db` and shown at `GET /api/v1/admin/alerts`.

use std::time::Duration;

use jiff::Timestamp;

use super::api::Overview;
use super::monitor::Verdict;
use super::Admin;
use crate::alerts::send::Routes;
use crate::alerts::Condition;
use crate::config::alerts::{AlertsConfig, When};
use crate::replication::link::LinkState;

/// How often the conditions are looked at.
pub const STEP: Duration = Duration::from_secs(5);

/// A certificate plantd relies on: what it is, and when it expires.
pub struct Cert {
    pub what: String,
    pub not_after: Timestamp,
}

/// What holds now at the plant, named after it.
pub fn conditions(
    plant: &str,
    o: &Overview,
    certs: &[Cert],
    backups_scheduled: bool,
    config: &AlertsConfig,
    now: Timestamp,
) -> Vec<Condition> {
    let rule = |w: When| config.rules.iter().find(|r| r.when == w);
    let mut out = Vec::new();
    let mut say = |when: When, message: String, since: Option<Timestamp>| {
        out.push(Condition {
            when,
            subject: plant.to_string(),
            message,
            since,
        })
    };
    if let Some(link) = &o.link {
        if !link.islanded_on_purpose
            && !matches!(link.state, LinkState::Online | LinkState::Draining)
        {
            let waiting = o.journal.map(|j| j.depth).unwrap_or(0);
            let since = now
                .checked_sub(jiff::SignedDuration::from_secs(link.for_s as i64))
                .ok();
            say(
                When::Offline,
                format!(
                    "the link to the hub is down; {waiting} transactions wait in the journal{}",
                    link.last_error
                        .as_deref()
                        .map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default()
                ),
                since,
            );
        }
    }
    // Failing is degraded too: a plant that gets worse keeps its degraded alert (and gets a
    // failing one), rather than seeing it resolved.
    if o.verdict != Verdict::Ok {
        say(When::Degraded, o.reasons.join("; "), None);
    }
    if o.verdict == Verdict::ActionNeeded {
        say(When::Failing, o.reasons.join("; "), None);
    }
    if let Some(c) = o
        .components
        .iter()
        .find(|c| c.name == "backup" && c.state == crate::health::State::Unhealthy)
    {
        say(When::BackupFailed, c.detail.clone(), None);
    }
    if let (Some(age), true) = (
        rule(When::BackupOverdue).and_then(|r| r.age),
        backups_scheduled,
    ) {
        match o.backup.age_s {
            Some(a) if a > age.as_secs() => say(
                When::BackupOverdue,
                format!(
                    "the newest backup ({}) is {} h old",
                    o.backup.last_id.as_deref().unwrap_or("?"),
                    a / 3600
                ),
                None,
            ),
            None => say(When::BackupOverdue, "there is no backup yet".into(), None),
            _ => {}
        }
    }
    if let Some(seq) = o.apply.as_ref().and_then(|a| a.stopped_at) {
        say(
            When::ApplyStopped,
            format!("the apply to this plant's Odoo stopped at seq {seq}; see the Apply page"),
            None,
        );
    }
    if let Some(below) = rule(When::DiskLow).and_then(|r| r.below_percent) {
        let (free, total) = (o.host.disk_free_bytes, o.host.disk_total_bytes);
        if total > 0 && (free as f64 / total as f64) * 100.0 < below {
            say(
                When::DiskLow,
                format!(
                    "{} free on the data disk ({:.1} %, below {below} %)",
                    bytesize::ByteSize::b(free),
                    free as f64 / total as f64 * 100.0
                ),
                None,
            );
        }
    }
    if let Some(within) = rule(When::CertExpiry).and_then(|r| r.age) {
        let soon: Vec<String> = certs
            .iter()
            .filter(|c| c.not_after.duration_since(now).as_secs() < within.as_secs() as i64)
            .map(|c| format!("{} expires {}", c.what, c.not_after))
            .collect();
        if !soon.is_empty() {
            say(When::CertExpiry, soon.join("; "), None);
        }
    }
    out
}

/// The certificates the plant serves (the API's) and presents to its hub (its enrollment's).
fn certificates(admin: &Admin) -> Vec<Cert> {
    let data_dir = &admin.config.data_dir;
    let mut files = vec![(
        "the API's TLS certificate",
        crate::pki::self_signed_paths(data_dir).cert,
    )];
    if let Some(tls) = &admin.config.api.tls {
        files[0].1 = tls.cert.clone();
    }
    files.push((
        "the certificate this plant presents to its hub",
        data_dir.join("tls/plant.crt"),
    ));
    files
        .into_iter()
        .filter_map(|(what, path)| {
            let pem = std::fs::read_to_string(&path).ok()?;
            match crate::pki::not_after(&pem) {
                Ok(not_after) => Some(Cert {
                    what: format!("{what} ({})", path.display()),
                    not_after,
                }),
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %format!("{e:#}"), "reading a certificate's expiry");
                    None
                }
            }
        })
        .collect()
}

/// Runs the plant's alerts until `stop` turns true (the daemon stops, or hands over to an
/// update: the new one says what holds then).
pub async fn run(admin: Admin, mut stop: tokio::sync::watch::Receiver<bool>) {
    let config = admin.config.alerts.clone();
    let routes = match Routes::new(&config, &admin.plant) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "alerts cannot be sent; check [alerts] in plant.toml");
            return;
        }
    };
    let store = admin.store.clone();
    let mut state = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.alert_state())
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default()
    };
    let scheduled =
        admin.control.stack.is_some() && admin.config.backup.schedule.daily_at().is_some();
    let mut tick = tokio::time::interval(STEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let overview = admin.overview().await;
        let certs = {
            let admin = admin.clone();
            tokio::task::spawn_blocking(move || certificates(&admin))
                .await
                .unwrap_or_default()
        };
        let now = Timestamp::now();
        let held = conditions(&admin.plant, &overview, &certs, scheduled, &config, now);
        let (notices, mut history) = state.step(&config, routes.keys(), held, now);
        history.extend(routes.deliver(&mut state, &notices).await);
        for e in &history {
            tracing::info!(condition = e.when.as_str(), subject = %e.subject, event = %e.event, message = %e.message, "alert");
        }
        let (store, saved) = (store.clone(), state.clone());
        let written =
            tokio::task::spawn_blocking(move || store.save_alerts(&saved, &history)).await;
        if let Ok(Err(e)) = written {
            tracing::error!(error = %e, "keeping the alerts in admin.db");
        }
    }
}
