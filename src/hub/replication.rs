//! The hub's QUIC listener: one [`crate::sync::hub::run_session`] per plant connection, each on
//! its own PostgreSQL connection (the store's row lock keeps concurrent sessions of one plant,
//! or two hubs, from storing anything twice).

use std::sync::Arc;

use quinn::Endpoint;

use super::store::Store;
use super::Hub;
use crate::sync::hub::{HubStore, UpdateStreams};
use crate::sync::transport::write_frame;
use crate::sync::wire::{Entry, Frame, RefuseCode};

/// How long an update check waits for something to offer before it answers "none".
const LONG_POLL: std::time::Duration = std::time::Duration::from_secs(20);
/// Bytes of a release per frame.
const CHUNK: usize = 256 * 1024;

/// Serves update streams from the hub database.
#[derive(Clone)]
pub struct Updates {
    pub database: String,
}

impl UpdateStreams for Updates {
    async fn serve(
        &self,
        plant: String,
        first: Frame,
        mut send: quinn::SendStream,
        _recv: quinn::RecvStream,
    ) -> anyhow::Result<()> {
        let store = Store::open(&self.database).await?;
        let mut out = Vec::new();
        match first {
            Frame::UpdateCheck { version } => {
                // A long poll: a rollout that reaches this plant's wave is offered within a
                // second; a plant that goes away ends the wait (the stream is reset).
                let deadline = tokio::time::Instant::now() + LONG_POLL;
                let answer = loop {
                    if let Some(o) = store.update_for(&plant, &version).await? {
                        tracing::info!(%plant, running = %version, offered = %o.version, rollout = o.rollout, "release offered");
                        break Frame::UpdateOffer {
                            version: o.version,
                            size: o.size,
                            sha256: o.sha256,
                            signature: o.signature,
                            rollout: o.rollout,
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
            Frame::UpdateGet { version, offset } => match store.release_binary(&version).await? {
                None => {
                    let refuse = Frame::Refuse {
                        code: RefuseCode::Unavailable,
                        message: format!("no release {version:?} at the hub"),
                    };
                    write_frame(&mut send, &refuse, &mut out).await?;
                }
                Some(binary) => {
                    let from = (offset as usize).min(binary.len());
                    for data in binary[from..].chunks(CHUNK) {
                        let chunk = Frame::BackupChunk {
                            data: data.to_vec(),
                        };
                        write_frame(&mut send, &chunk, &mut out).await?;
                    }
                }
            },
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
                store
                    .record_update(&plant, rollout, &version, &outcome, &reason)
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
pub async fn drive_rollouts(database: String) {
    let mut store: Option<Store> = None;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        if store.is_none() {
            store = Store::open(&database).await.ok();
        }
        let Some(s) = store.as_mut() else { continue };
        match s.advance_rollouts().await {
            Ok(Some(said)) => tracing::info!("{said}"),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "rollout step failed; retrying");
                store = None;
            }
        }
    }
}

impl HubStore for Store {
    async fn authorize(
        &mut self,
        cert_sha256: &str,
        plant: &str,
        version: &str,
        journal: &str,
    ) -> anyhow::Result<Result<u64, String>> {
        Store::authorize(self, cert_sha256, plant, version, journal).await
    }

    async fn store(&mut self, plant: &str, entries: &[Entry]) -> anyhow::Result<u64> {
        Store::store(self, plant, entries).await
    }

    async fn plant_for_cert(
        &mut self,
        cert_sha256: &str,
    ) -> anyhow::Result<Result<String, String>> {
        Store::plant_for_cert(self, cert_sha256).await
    }

    async fn telemetry(&mut self, plant: &str, body: &str) -> anyhow::Result<()> {
        self.record_telemetry(plant, body).await
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
            let result = match Store::open(&hub.config.database).await {
                Ok(mut store) => {
                    let updates = Updates {
                        database: hub.config.database.clone(),
                    };
                    crate::sync::hub::run_session(conn, &mut store, &hub.backups, &updates).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::info!(%remote, error = %format!("{e:#}"), "replication session ended");
            }
        });
    }
}
