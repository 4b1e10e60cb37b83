//! The hub's QUIC listener: one [`crate::sync::hub::run_session`] per plant connection, each on
//! its own PostgreSQL connection (the store's row lock keeps concurrent sessions of one plant,
//! or two hubs, from storing anything twice).

use std::sync::Arc;

use quinn::Endpoint;

use super::store::Store;
use super::Hub;
use crate::sync::hub::HubStore;
use crate::sync::wire::Entry;

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
                    crate::sync::hub::run_session(conn, &mut store, &hub.backups).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::info!(%remote, error = %format!("{e:#}"), "replication session ended");
            }
        });
    }
}
