//! The hub's session driver: runs a [`HubSession`] on one plant connection against whatever
//! stores the hub's data ([`HubStore`]; `hub/` implements it on PostgreSQL).

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use quinn::Connection;
use rustls::pki_types::CertificateDer;

use super::session::{HubAction, HubEvent, HubSession};
use super::transport::{read_frame, read_frame_within, write_frame};
use super::wire::{Entry, Frame, RefuseCode, MAX_FIRST_FRAME};

/// How long a new connection has to open its first stream and send its first frame (a hello,
/// or a backup fetch or offer); then it is closed. Until then it holds no database connection.
pub const FIRST_FRAME_DEADLINE: Duration = Duration::from_secs(10);

/// Why the hub refuses a plant's certificate or hello (the message of its `Refuse` frame).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this certificate belongs to no enrolled plant; enroll again")]
    UnknownCert,
    #[error("plant {0:?} is revoked at the hub")]
    Revoked(String),
    /// The plant is bound to another journal (`bound`, acked through `acked`) than the hello's.
    #[error("plant {plant:?} replicates journal {bound} at the hub (through seq {acked}), but this is journal {journal}: the plant's journal was replaced; enroll it under a new plant name so that nothing is mixed up")]
    OtherJournal {
        plant: String,
        bound: String,
        acked: i64,
        journal: String,
    },
    /// The hello claims another plant's name than the certificate's.
    #[error("the certificate is plant {plant:?}'s, but the hello says {claimed:?}")]
    NotItsName { plant: String, claimed: String },
    /// The plant changed at the hub between the two statements of the check.
    #[error("plant {0:?} changed at the hub while it connected; retry")]
    Changed(String),
}

/// Where the hub's side of replication keeps things.
pub trait HubStore: Send {
    /// The next seq needed from the plant holding the certificate with this SHA-256, or why it
    /// may not replicate.
    fn authorize(
        &mut self,
        cert_sha256: &str,
        plant: &str,
        version: &str,
        journal: &str,
    ) -> impl Future<Output = anyhow::Result<Result<u64, Refusal>>> + Send;

    /// Commits the contiguous continuation of the plant's entries; returns the acked seq.
    fn store(
        &mut self,
        plant: &str,
        entries: &[Entry],
    ) -> impl Future<Output = anyhow::Result<u64>> + Send;

    /// The plant holding the certificate with this SHA-256 (not revoked), or why none.
    fn plant_for_cert(
        &mut self,
        cert_sha256: &str,
    ) -> impl Future<Output = anyhow::Result<Result<String, Refusal>>> + Send;

    /// Keeps the plant's latest telemetry snapshot (JSON, as sent).
    fn telemetry(
        &mut self,
        plant: &str,
        body: &str,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Serves a plant's backup streams (offsite copies and fetches; see `backup::offsite`): the
/// stream's `first` frame, and what was read after it in `buf`.
pub trait BackupStreams: Clone + Send + Sync + 'static {
    fn serve(
        &self,
        plant: String,
        first: Frame,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        buf: Vec<u8>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Serves a plant's update streams (checks, downloads, reports; see `update::agent`).
pub trait UpdateStreams: Clone + Send + Sync + 'static {
    fn serve(
        &self,
        plant: String,
        first: Frame,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Keeps a plant's log batches (a stream opened with a [`Frame::Logs`]; see
/// `replication::logs`): `first`, then every batch after it, until the stream ends.
pub trait LogStreams: Clone + Send + Sync + 'static {
    fn serve(
        &self,
        plant: String,
        first: Frame,
        recv: quinn::RecvStream,
        buf: Vec<u8>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Serves a plant's remote-action stream (opened with `RemoteReady`; see `replication::remote`):
/// sends the actions waiting for `plant` and keeps their results, until the stream or the
/// connection ends.
pub trait RemoteStreams: Clone + Send + Sync + 'static {
    fn serve(
        &self,
        plant: String,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        buf: Vec<u8>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The one remote-action (or log) stream a connection may have: [`RemoteSlot::take`] gives it to the
/// first stream that asks, until that one's guard is dropped. Each stream polls the database
/// and holds its own slots for actions, so a plant may not open many.
#[derive(Clone, Default)]
struct RemoteSlot(std::sync::Arc<std::sync::atomic::AtomicBool>);

/// Holds a connection's [`RemoteSlot`] while its stream is served.
struct RemoteHeld(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl RemoteSlot {
    fn take(&self) -> Option<RemoteHeld> {
        use std::sync::atomic::Ordering;
        (!self.0.swap(true, Ordering::AcqRel)).then(|| RemoteHeld(self.0.clone()))
    }
}

impl Drop for RemoteHeld {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Refuses a stream beside the session with a word, and lets it go.
async fn refuse_stream(mut send: quinn::SendStream, mut recv: quinn::RecvStream, message: &str) {
    let refuse = Frame::Refuse {
        code: RefuseCode::Protocol,
        message: message.to_string(),
    };
    let _ = write_frame(&mut send, &refuse, &mut Vec::new()).await;
    let _ = send.finish();
    let _ = recv.stop(0u32.into());
}

/// Whether `first` opens an update stream.
fn is_update(first: &Frame) -> bool {
    matches!(
        first,
        Frame::UpdateCheck { .. }
            | Frame::UpdateGet { .. }
            | Frame::UpdateImagesGet { .. }
            | Frame::UpdateReport { .. }
    )
}

/// The next frame on the telemetry stream, once the plant opened it.
async fn read_telemetry(
    stream: &mut Option<quinn::RecvStream>,
    buf: &mut Vec<u8>,
) -> anyhow::Result<Option<Frame>> {
    match stream {
        Some(s) => read_frame(s, buf).await,
        None => std::future::pending().await,
    }
}

/// The SHA-256 of the certificate the peer presented.
pub fn peer_fingerprint(conn: &Connection) -> Option<String> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    certs.first().map(|c| crate::digest::sha256_hex(c))
}

/// Serves one plant connection until it ends: its replication session (the first stream,
/// opened with a hello), its telemetry, and its backup and update streams ([`BackupStreams`], [`UpdateStreams`]). A
/// connection whose first stream asks for a backup instead is served that one stream: a
/// rebuilt plant fetches before it replicates. Remote actions ([`RemoteStreams`]) reach only a
/// plant whose hello was authorized, on at most one stream per connection at a time (a
/// further one is refused and logged).
pub async fn run_session(
    conn: Connection,
    store: &mut impl HubStore,
    backups: &impl BackupStreams,
    updates: &impl UpdateStreams,
    remote: &impl RemoteStreams,
    logs: &impl LogStreams,
) -> anyhow::Result<()> {
    let fingerprint = peer_fingerprint(&conn).context("the plant presented no certificate")?;
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    let opening = tokio::time::timeout(FIRST_FRAME_DEADLINE, async {
        let (send, mut recv) = conn
            .accept_bi()
            .await
            .context("waiting for the session stream")?;
        let first = read_frame_within(&mut recv, &mut buf, MAX_FIRST_FRAME).await;
        anyhow::Ok((send, recv, first))
    })
    .await;
    let Ok(opening) = opening else {
        conn.close(2u32.into(), b"no hello within 10 s of connecting; closed");
        anyhow::bail!(
            "no first frame within {} s of connecting; connection closed",
            FIRST_FRAME_DEADLINE.as_secs()
        );
    };
    let (mut send, mut recv, first) = opening?;
    let first = match first {
        Ok(Some(f)) => f,
        Ok(None) => anyhow::bail!("the plant closed its first stream at once"),
        Err(e) => {
            let refuse = Frame::Refuse {
                code: RefuseCode::Protocol,
                message: format!("first frame refused: {e:#}"),
            };
            let _ = write_frame(&mut send, &refuse, &mut out).await;
            let _ = send.finish();
            let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
            conn.close(1u32.into(), b"first frame refused");
            return Err(e);
        }
    };
    if matches!(first, Frame::BackupFetch { .. } | Frame::BackupOffer { .. }) {
        let plant = match store.plant_for_cert(&fingerprint).await? {
            Ok(plant) => plant,
            Err(refusal) => {
                let message = refusal.to_string();
                let refuse = Frame::Refuse {
                    code: RefuseCode::Forbidden,
                    message: message.clone(),
                };
                let _ = write_frame(&mut send, &refuse, &mut out).await;
                let _ = send.finish();
                let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
                anyhow::bail!(message);
            }
        };
        return backups.serve(plant, first, send, recv, buf).await;
    }
    let mut session = HubSession::default();
    session.handle(HubEvent::Frame(first));
    let mut plant = String::new();
    let remote_open = RemoteSlot::default();
    // And one log stream: each holds a database connection per batch.
    let logs_open = RemoteSlot::default();
    let mut telemetry: Option<quinn::RecvStream> = None;
    let mut tbuf = Vec::new();
    loop {
        while let Some(action) = session.poll_action() {
            match action {
                HubAction::Send(frame) => write_frame(&mut send, &frame, &mut out).await?,
                HubAction::Authorize {
                    plant: claimed,
                    version,
                    journal,
                } => {
                    let event = match store
                        .authorize(&fingerprint, &claimed, &version, &journal)
                        .await
                    {
                        Ok(Ok(next_seq)) => {
                            tracing::info!(plant = %claimed, %version, next_seq, "plant connected");
                            plant = claimed;
                            HubEvent::Authorized { next_seq }
                        }
                        Ok(Err(refusal)) => {
                            let message = refusal.to_string();
                            tracing::warn!(plant = %claimed, %message, "plant refused");
                            HubEvent::Denied { message }
                        }
                        Err(e) => HubEvent::StoreFailed {
                            message: format!("{e:#}"),
                        },
                    };
                    session.handle(event);
                }
                HubAction::Store(entries) => {
                    let event = match store.store(&plant, &entries).await {
                        Ok(through_seq) => HubEvent::Stored { through_seq },
                        Err(e) => HubEvent::StoreFailed {
                            message: format!("{e:#}"),
                        },
                    };
                    session.handle(event);
                }
                HubAction::Close(e) => {
                    let _ = send.finish();
                    // Let the refusal reach the plant before the connection goes.
                    let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
                    conn.close(1u32.into(), b"session closed");
                    return Err(e.into());
                }
            }
        }
        tokio::select! {
            frame = read_frame(&mut recv, &mut buf) => match frame {
                Ok(Some(frame)) => session.handle(HubEvent::Frame(frame)),
                Ok(None) => return Ok(()),
                Err(e) => {
                    // Tell the plant why, so its log says more than "closed".
                    let refuse = Frame::Refuse { code: RefuseCode::Protocol, message: format!("{e:#}") };
                    let _ = write_frame(&mut send, &refuse, &mut out).await;
                    let _ = send.finish();
                    let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
                    return Err(e);
                }
            },
            // Backups and updates have streams of their own, once the plant is known.
            bi = conn.accept_bi(), if !plant.is_empty() => {
                let (bsend, mut brecv) = bi?;
                let (backups, updates, remote, logs, plant, remote_open, logs_open) = (backups.clone(), updates.clone(), remote.clone(), logs.clone(), plant.clone(), remote_open.clone(), logs_open.clone());
                tokio::spawn(async move {
                    let mut bbuf = Vec::new();
                    let result = match read_frame(&mut brecv, &mut bbuf).await {
                        Ok(Some(first)) if is_update(&first) => updates.serve(plant.clone(), first, bsend, brecv).await,
                        Ok(Some(Frame::RemoteReady)) => match remote_open.take() {
                            Some(_held) => remote.serve(plant.clone(), bsend, brecv, bbuf).await,
                            None => {
                                tracing::warn!(%plant, "refused a second remote-action stream on one connection");
                                refuse_stream(bsend, brecv, "this connection has a remote-action stream already; one at a time").await;
                                Ok(())
                            }
                        },
                        Ok(Some(first @ Frame::Logs { .. })) => match logs_open.take() {
                            Some(_held) => {
                                drop(bsend);
                                logs.serve(plant.clone(), first, brecv, bbuf).await
                            }
                            None => {
                                tracing::warn!(%plant, "refused a second log stream on one connection");
                                refuse_stream(bsend, brecv, "this connection has a log stream already; one at a time").await;
                                Ok(())
                            }
                        },
                        Ok(Some(first)) => backups.serve(plant.clone(), first, bsend, brecv, bbuf).await,
                        Ok(None) => Ok(()),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = result {
                        tracing::warn!(%plant, error = %format!("{e:#}"), "a backup, update, remote-action or log stream ended");
                    }
                });
            }
            // Telemetry has its own stream, so a long backlog never delays it.
            uni = conn.accept_uni(), if telemetry.is_none() => telemetry = Some(uni?),
            frame = read_telemetry(&mut telemetry, &mut tbuf) => match frame {
                Ok(Some(Frame::Telemetry { body })) if !plant.is_empty() => {
                    if let Err(e) = store.telemetry(&plant, &body).await {
                        tracing::warn!(%plant, error = %format!("{e:#}"), "telemetry not kept");
                    }
                    // A plant's last word before an admin's island: stored, so say so (the
                    // plant waits for this before it lets its link go).
                    if body.contains(crate::replication::plant::ISLANDED_ON_PURPOSE) {
                        if let Some(stream) = telemetry.as_mut() {
                            let _ = stream.stop(0u32.into());
                        }
                        telemetry = None;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => telemetry = None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_has_one_remote_stream_at_a_time() {
        let slot = RemoteSlot::default();
        let first = slot.take().expect("the first stream is served");
        assert!(slot.take().is_none(), "a second is refused");
        assert!(
            slot.clone().take().is_none(),
            "from any task of the connection"
        );
        drop(first);
        assert!(
            slot.take().is_some(),
            "once the first ended, another may open"
        );
    }
}
