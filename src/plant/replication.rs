//! Starts the replicator when the plant is enrolled, and feeds its link reports into the
//! plant's health. The journal is handed to `replication` through [`PlantJournal`].

use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use crate::health::{Health, State};
use crate::journal::{Cursor, Journal};
use crate::replication::link::LinkState;
use crate::replication::plant::{island_marker, LinkReport, PlantJournal, Replication, Target};
use crate::replication::wire::Entry;

struct JournalSource {
    journal: Journal,
    data_dir: std::path::PathBuf,
    host: crate::telemetry::HostProbe,
    health: Arc<Health>,
}

impl PlantJournal for JournalSource {
    async fn read(&self, after: u64, limit: usize, max_bytes: usize) -> anyhow::Result<Vec<Entry>> {
        Ok(self
            .journal
            .read_after(after, limit, max_bytes)
            .await?
            .into_iter()
            .map(|s| Entry {
                seq: s.seq,
                key: s.key,
                device: s.device,
                kind: s.kind,
                payload: s.payload,
                occurred_at: s.occurred_at,
                received_at_ms: s.received_at_ms,
            })
            .collect())
    }

    async fn acked(&self, seq: u64) -> anyhow::Result<()> {
        self.journal.advance(Cursor::HubAcked, seq).await?;
        Ok(())
    }

    fn last_seq(&self) -> watch::Receiver<u64> {
        self.journal.watch_last_seq()
    }

    fn acked_seq(&self) -> u64 {
        self.journal.cursor(Cursor::HubAcked)
    }

    async fn telemetry(&self, link: &LinkReport) -> String {
        let stats = self.journal.stats().await.ok();
        serde_json::json!({
            "version": crate::release::version(),
            "link": link.state,
            "depth": stats.map(|s| s.depth),
            "last_seq": stats.map(|s| s.last_seq),
            "oldest_unacked_age_s": stats.and_then(|s| s.oldest_unacked_age_s),
            "host": self.host.read(&self.data_dir),
            // Every component's state, so that the hub sees a failed backup or a sick stack.
            "components": self.health.snapshot(),
        })
        .to_string()
    }
}

/// Starts replication if `data_dir` holds an enrollment; otherwise reports why not.
pub fn start(
    data_dir: &Path,
    configured_hubs: &[String],
    journal: &Journal,
    health: &Arc<Health>,
    updater: Option<crate::update::agent::Agent>,
    remote: crate::replication::remote::ExecutorSlot,
    stop: watch::Receiver<bool>,
) -> Replication {
    // An admin's island survives restarts: planned WAN work may span a reboot.
    let (islanded_tx, islanded_rx) = watch::channel(island_marker(data_dir).exists());
    let (link_tx, link_rx) = watch::channel(None);
    let not_running = |detail: String| {
        health.set("replication", State::Unhealthy, detail);
        Replication {
            link: link_rx.clone(),
            islanded: Arc::new(islanded_tx.clone()),
            enrolled: false,
            hubs: configured_hubs.to_vec(),
        }
    };
    let enrollment = match crate::enrollment::load(data_dir) {
        Ok(Some(e)) => e,
        Ok(None) => {
            return not_running(
                "not enrolled with a hub; transactions stay in the journal until `plantd enroll` is run".into(),
            )
        }
        Err(e) => return not_running(format!("{e:#}")),
    };
    let client = match crate::enrollment::quic_client(data_dir) {
        Ok(c) => c,
        Err(e) => return not_running(format!("enrollment files unusable: {e:#}; enroll again")),
    };
    let hubs = if configured_hubs.is_empty() {
        enrollment.quic.clone()
    } else {
        configured_hubs.to_vec()
    };
    let target = Target {
        plant: enrollment.plant.clone(),
        journal_id: journal.id().to_string(),
        hubs: hubs.clone(),
        client,
        session: Default::default(),
        link: Default::default(),
        version: crate::release::version().to_string(),
        tasks: {
            let mut tasks: Vec<Arc<dyn crate::replication::plant::ConnectionTask>> =
                vec![Arc::new(crate::backup::offsite::Uploader {
                    dir: crate::backup::dir(data_dir),
                })];
            if let Some(agent) = updater {
                tasks.push(Arc::new(agent));
            }
            tasks.push(Arc::new(crate::replication::remote::Responder {
                executor: remote,
            }));
            tasks.push(Arc::new(crate::replication::logs::LogShipper));
            tasks
        },
    };
    health.set(
        "replication",
        State::Starting,
        format!("connecting to {}", hubs.join(", ")),
    );
    let (report_tx, mut report_rx) = watch::channel(LinkReport {
        state: LinkState::Degraded,
        hub: None,
        last_error: None,
        reconnects: 0,
    });
    tokio::spawn(crate::replication::plant::run(
        target,
        JournalSource {
            journal: journal.clone(),
            data_dir: data_dir.to_path_buf(),
            host: Default::default(),
            health: health.clone(),
        },
        report_tx,
        islanded_rx,
        stop,
    ));
    let health = health.clone();
    tokio::spawn(async move {
        while report_rx.changed().await.is_ok() {
            let r = report_rx.borrow_and_update().clone();
            let (state, detail) = match (&r.state, &r.hub, &r.last_error) {
                (LinkState::Online | LinkState::Draining, Some(hub), _) => {
                    (State::Ok, format!("{:?} to {hub}", r.state).to_lowercase())
                }
                (LinkState::Islanded, None, None) => (State::Ok, "islanded on purpose".into()),
                (s, _, Some(e)) => (State::Unhealthy, format!("{s:?}: {e}").to_lowercase()),
                (s, _, None) => (State::Starting, format!("{s:?}").to_lowercase()),
            };
            health.set("replication", state, detail);
            link_tx.send_replace(Some(r));
        }
    });
    Replication {
        link: link_rx,
        islanded: Arc::new(islanded_tx),
        enrolled: true,
        hubs,
    }
}
