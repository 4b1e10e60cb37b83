//! The hub's QUIC listener: one [`crate::replication::hub::run_session`] per plant connection. A
//! session takes a connection from the hub's pool for each step (the hello's checks, a batch,
//! a telemetry snapshot) and gives it back at once, so a plant that connects and says nothing
//! holds none (the store's row lock keeps concurrent sessions of one plant, or two hubs, from
//! storing anything twice).

use std::sync::Arc;

use quinn::Endpoint;

use super::database::Database;
use super::store::Store;
use super::Hub;
use crate::replication::hub::{HubStore, Refusal, UpdateStreams};
use crate::replication::transport::write_frame;
use crate::replication::wire::{Entry, Frame, RefuseCode};

/// How long an update check waits for something to offer before it answers "none".
const LONG_POLL: std::time::Duration = std::time::Duration::from_secs(20);
/// Bytes of a release per frame (and per database read).
const CHUNK: usize = 1024 * 1024;

/// Serves update streams from the hub database, each query on a connection from the pool
/// (each takes a millisecond; a connection per long poll would take them from replication).
#[derive(Clone)]
pub struct Updates {
    database: Database,
}

impl Updates {
    pub fn new(database: Database) -> Updates {
        Updates { database }
    }

    /// Runs `op` on a pooled connection.
    async fn with_store<T>(
        &self,
        op: impl AsyncFnOnce(&Store) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let store = self.database.store().await?;
        op(&store).await
    }

    /// Streams release `version`'s binary, or its image bundle, from `offset` on.
    async fn send_release(
        &self,
        send: &mut quinn::SendStream,
        version: &str,
        images: bool,
        offset: u64,
    ) -> anyhow::Result<()> {
        let mut out = Vec::new();
        let mut at = offset;
        loop {
            let slice = self
                .with_store(async |s| match images {
                    false => s.release_slice(version, at, CHUNK as u32).await,
                    true => s.images_slice(version, at, CHUNK as u32).await,
                })
                .await?;
            let Some((data, size)) = slice else {
                let what = if images {
                    "image bundle of release"
                } else {
                    "release"
                };
                let refuse = Frame::Refuse {
                    code: RefuseCode::Unavailable,
                    message: format!("no {what} {version:?} at the hub"),
                };
                write_frame(send, &refuse, &mut out).await?;
                return Ok(());
            };
            if data.is_empty() || at >= size {
                return Ok(());
            }
            at += data.len() as u64;
            write_frame(send, &Frame::BackupChunk { data }, &mut out).await?;
        }
    }
}

impl UpdateStreams for Updates {
    async fn serve(
        &self,
        plant: String,
        first: Frame,
        mut send: quinn::SendStream,
        _recv: quinn::RecvStream,
    ) -> anyhow::Result<()> {
        let mut out = Vec::new();
        match first {
            Frame::UpdateCheck { version } => {
                // A long poll: a rollout that reaches this plant's wave is offered within a
                // second; a plant that goes away ends the wait (the stream is reset).
                let deadline = tokio::time::Instant::now() + LONG_POLL;
                let answer = loop {
                    let offer = self
                        .with_store(async |s| s.update_for(&plant, &version).await)
                        .await?;
                    if let Some(o) = offer {
                        tracing::info!(%plant, running = %version, offered = %o.version, rollout = o.rollout, "release offered");
                        break Frame::UpdateOffer {
                            version: o.version,
                            size: o.size,
                            sha256: o.sha256,
                            signature: o.signature,
                            rollout: o.rollout,
                            images: o.images,
                        };
                    }
                    if tokio::time::Instant::now() >= deadline {
                        break Frame::UpdateNone;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        _ = send.stopped() => return Ok(()),
                    }
                };
                write_frame(&mut send, &answer, &mut out).await?;
            }
            Frame::UpdateGet { version, offset } => {
                self.send_release(&mut send, &version, false, offset)
                    .await?;
            }
            Frame::UpdateImagesGet { version, offset } => {
                self.send_release(&mut send, &version, true, offset).await?;
            }
            Frame::UpdateReport {
                version,
                rollout,
                outcome,
                reason,
            } => {
                if outcome == "installed" {
                    tracing::info!(%plant, %version, rollout, %reason, "plant installed a release");
                } else {
                    tracing::warn!(%plant, %version, rollout, %outcome, %reason, "plant did not install a release");
                }
                self.with_store(async |s| {
                    s.record_update(&plant, rollout, &version, &outcome, &reason)
                        .await
                })
                .await?;
                write_frame(&mut send, &Frame::UpdateNoted, &mut out).await?;
            }
            other => anyhow::bail!("not an update request: {other:?}"),
        }
        send.finish()?;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), send.stopped()).await;
        Ok(())
    }
}

/// Moves the live rollout along every second (see [`Store::advance_rollouts`]).
pub async fn drive_rollouts(database: Database) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let mut store = match database.store().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "rollout step waits for a database connection");
                continue;
            }
        };
        match store.advance_rollouts().await {
            Ok(Some(said)) => tracing::info!("{said}"),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "rollout step failed; retrying"),
        }
    }
}

/// A session's store: each call takes a pooled connection and gives it back.
impl HubStore for Database {
    async fn authorize(
        &mut self,
        cert_sha256: &str,
        plant: &str,
        version: &str,
        journal: &str,
    ) -> anyhow::Result<Result<u64, Refusal>> {
        let store = Database::store(self).await?;
        store.authorize(cert_sha256, plant, version, journal).await
    }

    async fn store(&mut self, plant: &str, entries: &[Entry]) -> anyhow::Result<u64> {
        let mut store = Database::store(self).await?;
        store.store(plant, entries).await
    }

    async fn plant_for_cert(
        &mut self,
        cert_sha256: &str,
    ) -> anyhow::Result<Result<String, Refusal>> {
        let store = Database::store(self).await?;
        store.plant_for_cert(cert_sha256).await
    }

    async fn telemetry(&mut self, plant: &str, body: &str) -> anyhow::Result<()> {
        let store = Database::store(self).await?;
        store.record_telemetry(plant, body).await
    }
}

/// A session's store that also writes the plant's link history: `connected` when its hello
/// is authorized, `disconnected` (with why) when the session ends.
struct Recording {
    database: Database,
    plant: Option<String>,
}

impl HubStore for Recording {
    async fn authorize(
        &mut self,
        cert_sha256: &str,
        plant: &str,
        version: &str,
        journal: &str,
    ) -> anyhow::Result<Result<u64, Refusal>> {
        let answer = self
            .database
            .authorize(cert_sha256, plant, version, journal)
            .await;
        if let Ok(Ok(_)) = &answer {
            self.plant = Some(plant.to_string());
            record_link(
                &self.database,
                plant,
                "connected",
                &format!("version {version}"),
            )
            .await;
        }
        answer
    }

    async fn store(&mut self, plant: &str, entries: &[Entry]) -> anyhow::Result<u64> {
        HubStore::store(&mut self.database, plant, entries).await
    }

    async fn plant_for_cert(
        &mut self,
        cert_sha256: &str,
    ) -> anyhow::Result<Result<String, Refusal>> {
        self.database.plant_for_cert(cert_sha256).await
    }

    async fn telemetry(&mut self, plant: &str, body: &str) -> anyhow::Result<()> {
        self.database.telemetry(plant, body).await
    }
}

/// Writes one line of a plant's link history; a failure is only logged.
async fn record_link(database: &Database, plant: &str, event: &str, detail: &str) {
    let written = async {
        let store = database.store().await?;
        store.record_link(plant, event, detail).await
    };
    if let Err(e) = written.await {
        tracing::warn!(%plant, error = %format!("{e:#}"), "writing the plant's link history");
    }
}

/// Accepts plant connections until the endpoint closes.
pub async fn serve(endpoint: Endpoint, hub: Arc<Hub>) {
    while let Some(incoming) = endpoint.accept().await {
        let hub = hub.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    tracing::info!(%remote, error = %e, "refused a plant connection");
                    return;
                }
            };
            let mut database = Recording {
                database: hub.database.clone(),
                plant: None,
            };
            let _counted = hub.sessions.open();
            let result = crate::replication::hub::run_session(
                conn,
                &mut database,
                &hub.backups,
                &hub.updates,
                &hub.remote,
                &hub.logs,
            )
            .await;
            if let Some(plant) = &database.plant {
                let why = match &result {
                    Ok(()) => "the plant ended the session".to_string(),
                    Err(e) => format!("{e:#}"),
                };
                record_link(&hub.database, plant, "disconnected", &why).await;
            }
            if let Err(e) = result {
                tracing::info!(%remote, error = %format!("{e:#}"), "replication session ended");
            }
        });
    }
}
