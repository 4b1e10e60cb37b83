//! The plant's replicator: keeps a QUIC connection to one of its hubs and runs a
//! [`PlantSession`] on it, reconnecting with backoff for as long as the plant runs.
//!
//! Promises: it never gives up (a weekend-long outage ends like a short one); backoff grows to
//! 30 s and starts over after a session that lasted; an admin can island the plant on purpose
//! and rejoin. The hub's acks advance the journal's cursor through [`PlantJournal::acked`].

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use quinn::{ClientConfig, Connection, Endpoint};
use tokio::sync::watch;

use super::link::{Link, LinkSettings, LinkState};
use super::session::{PlantAction, PlantEvent, PlantIdentity, PlantSession, PlantSettings};
use super::transport::{read_frame, write_frame};
use super::wire::{Entry, Frame};

/// Where the plant's side of replication gets entries and records acks.
pub trait PlantJournal: Send + Sync + 'static {
    /// Up to `limit` entries after `after`, stopping once they hold `max_bytes` (at least one).
    fn read(
        &self,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> impl Future<Output = anyhow::Result<Vec<Entry>>> + Send;
    fn acked(&self, seq: u64) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// The journal's last seq, updated on every commit.
    fn last_seq(&self) -> watch::Receiver<u64>;
    /// The hub-acknowledged seq as stored.
    fn acked_seq(&self) -> u64;
    /// A JSON health snapshot for the hub (sent every 10 s on its own stream).
    fn telemetry(&self, link: &LinkReport) -> impl Future<Output = String> + Send;
}

/// Whom to replicate to.
#[derive(Clone)]
pub struct Target {
    pub plant: String,
    /// The journal's random id, so the hub can tell a replaced journal.
    pub journal_id: String,
    /// "host:port" QUIC addresses, tried in turn.
    pub hubs: Vec<String>,
    pub client: ClientConfig,
    pub session: PlantSettings,
    pub link: LinkSettings,
    /// The version this plant runs, said in its hello.
    pub version: String,
    /// What runs beside the session on each connection (backup uploads, update checks).
    pub tasks: Vec<std::sync::Arc<dyn ConnectionTask>>,
}

/// A [`ConnectionTask`]'s work on one connection.
pub type TaskFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Work that runs beside the replication session on each connection to the hub, on streams of
/// its own, until the connection ends (it is aborted then at the latest).
pub trait ConnectionTask: Send + Sync + 'static {
    fn run(&self, conn: Connection) -> TaskFuture;
}

/// The telemetry field of a plant's last word before an admin's island takes its link down.
pub const ISLANDED_ON_PURPOSE: &str = "islanded_on_purpose";

/// The file whose presence says the admin islanded the plant.
pub fn island_marker(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("islanded")
}

/// The replicator's handles: its link reports and the admin's island switch.
#[derive(Clone)]
pub struct Replication {
    pub link: watch::Receiver<Option<LinkReport>>,
    pub islanded: std::sync::Arc<watch::Sender<bool>>,
    pub enrolled: bool,
    /// The hub endpoints tried in turn (configured, else those enrollment recorded).
    pub hubs: Vec<String>,
}

/// How long a connection attempt may take before the next replica is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the replicator reports for status displays.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkReport {
    pub state: LinkState,
    pub hub: Option<String>,
    pub last_error: Option<String>,
    pub reconnects: u64,
}

/// Runs until `stop` turns true. `islanded` is the admin's switch.
pub async fn run(
    target: Target,
    journal: impl PlantJournal,
    report: watch::Sender<LinkReport>,
    mut islanded: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut link = Link::new(Instant::now(), target.link);
    let mut reconnects = 0u64;
    let mut last_error: Option<String> = None;
    let mut backoff = Duration::from_millis(500);
    let mut hub_index = 0usize;
    let publish =
        |link: &mut Link, hub: Option<String>, err: &Option<String>, n: u64, backlog: u64| {
            report.send_replace(LinkReport {
                state: link.state(Instant::now(), backlog),
                hub,
                last_error: err.clone(),
                reconnects: n,
            });
        };
    loop {
        if *stop.borrow() {
            return;
        }
        let on_purpose = *islanded.borrow_and_update();
        link.set_islanded(on_purpose);
        let backlog = (*journal.last_seq().borrow()).saturating_sub(journal.acked_seq());
        publish(&mut link, None, &last_error, reconnects, backlog);
        if on_purpose {
            tokio::select! {
                _ = stop.changed() => return,
                _ = islanded.changed() => continue,
            }
        }
        let hub = target.hubs[hub_index % target.hubs.len()].clone();
        let mut connected_at = None;
        // An island while connected is the session's to end: it tells the hub first.
        let mut islanding = islanded.clone();
        let mut stopping = stop.clone();
        let outcome = connect_and_run(
            Attempt {
                target: &target,
                hub: &hub,
                journal: &journal,
                report: &report,
                reconnects,
            },
            &mut link,
            &mut connected_at,
            &mut islanding,
            &mut stopping,
        )
        .await;
        if *stop.borrow() {
            return;
        }
        link.disconnected(Instant::now());
        if *islanded.borrow() {
            // Islanded on purpose: not a failure; the top of the loop waits for rejoin.
            last_error = None;
            continue;
        }
        reconnects += 1;
        if let Err(e) = outcome {
            let message = format!("{e:#}");
            tracing::warn!(%hub, error = %message, "replication link down; journaling locally");
            last_error = Some(message);
        }
        // The next attempt goes to the next replica: this one just failed. A session that
        // lasted starts the backoff over; failed attempts make it grow.
        hub_index += 1;
        if connected_at.is_some_and(|t: Instant| t.elapsed() > Duration::from_secs(10)) {
            backoff = Duration::from_millis(500);
        }
        let backlog = (*journal.last_seq().borrow()).saturating_sub(journal.acked_seq());
        publish(&mut link, None, &last_error, reconnects, backlog);
        // Keep the displayed state honest while waiting (degraded turns islanded).
        let wake = Instant::now() + backoff;
        while Instant::now() < wake {
            tokio::select! {
                _ = stop.changed() => return,
                _ = islanded.changed() => break,
                _ = tokio::time::sleep(Duration::from_secs(1).min(wake - Instant::now())) => {
                    publish(&mut link, None, &last_error, reconnects, backlog);
                }
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// What one connection attempt works with.
struct Attempt<'a, J> {
    target: &'a Target,
    hub: &'a str,
    journal: &'a J,
    report: &'a watch::Sender<LinkReport>,
    reconnects: u64,
}

/// Connects to `a.hub` and runs a session on it until it fails, the plant is islanded, or the
/// daemon stops; in every case the connection is closed with a word to the hub (so that it lets
/// go of the plant at once, rather than after QUIC's idle timeout) before this returns.
async fn connect_and_run<J: PlantJournal>(
    a: Attempt<'_, J>,
    link: &mut Link,
    connected_at: &mut Option<Instant>,
    islanded: &mut watch::Receiver<bool>,
    stop: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (endpoint, conn) = tokio::select! {
        c = connect(&a.target.client, a.hub) => c?,
        _ = islanded.changed() => return Ok(()),
        _ = stop.changed() => return Ok(()),
    };
    *connected_at = Some(Instant::now());
    link.connected(Instant::now());
    // The tasks' streams wait for the session's: the hub reads the connection's first stream
    // as the session's hello, and QUIC numbers streams in the order they are opened.
    let (resumed, _) = watch::channel(false);
    let tasks: Vec<_> = a
        .target
        .tasks
        .iter()
        .map(|t| {
            let (task, mut resumed) = (t.run(conn.clone()), resumed.subscribe());
            tokio::spawn(async move {
                if resumed.wait_for(|r| *r).await.is_ok() {
                    task.await;
                }
            })
        })
        .collect();
    let (result, why) = tokio::select! {
        r = session(&conn, &a, link, islanded, &resumed) => (r, &b"bye"[..]),
        _ = stop.changed() => (Ok(()), &b"plant stopping"[..]),
    };
    for t in tasks {
        t.abort();
    }
    conn.close(0u32.into(), why);
    // Bounded: a hub that does not answer the close must not hold a stopping daemon.
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
    result
}

/// A connection to `hub` ("host:port"), with the endpoint that carries it.
pub async fn connect(client: &ClientConfig, hub: &str) -> anyhow::Result<(Endpoint, Connection)> {
    let (host, addr) = resolve(hub).await?;
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().expect("valid")
    } else {
        "0.0.0.0:0".parse().expect("valid")
    };
    let mut endpoint = Endpoint::client(bind).context("opening a UDP socket")?;
    endpoint.set_default_client_config(client.clone());
    let connecting = endpoint.connect(addr, &host)?;
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from hub {hub} within {CONNECT_TIMEOUT:?}"))?
        .with_context(|| format!("connecting to hub {hub}"))?;
    Ok((endpoint, conn))
}

async fn resolve(hub: &str) -> anyhow::Result<(String, SocketAddr)> {
    let (host, _) = hub
        .rsplit_once(':')
        .with_context(|| format!("hub address {hub:?} has no port"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addr = tokio::net::lookup_host(hub)
        .await
        .with_context(|| format!("resolving hub address {hub}"))?
        .next()
        .with_context(|| format!("hub address {hub} resolves to nothing"))?;
    Ok((host, addr))
}

async fn session<J: PlantJournal>(
    conn: &Connection,
    a: &Attempt<'_, J>,
    link: &mut Link,
    islanded: &mut watch::Receiver<bool>,
    resumed: &watch::Sender<bool>,
) -> anyhow::Result<()> {
    let (target, journal, report, hub, reconnects) =
        (a.target, a.journal, a.report, a.hub, a.reconnects);
    let (mut send, mut recv) = conn.open_bi().await?;
    let mut telemetry = conn.open_uni().await?;
    let mut telemetry_tick = tokio::time::interval(Duration::from_secs(10));
    let mut tout = Vec::new();
    let mut last_seq = journal.last_seq();
    let at = *last_seq.borrow_and_update();
    let identity = PlantIdentity {
        plant: target.plant.clone(),
        version: target.version.clone(),
        journal: target.journal_id.clone(),
    };
    let mut s = PlantSession::new(&identity, at, target.session, Instant::now());
    // The state from before the connection must not be the first telemetry's.
    let backlog = at.saturating_sub(journal.acked_seq());
    report.send_replace(LinkReport {
        state: link.state(Instant::now(), backlog),
        hub: Some(hub.to_string()),
        last_error: None,
        reconnects,
    });
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        while let Some(action) = s.poll_action() {
            match action {
                // A hub that stops reading must not hold the plant here forever.
                PlantAction::Send(frame) => tokio::time::timeout(
                    target.session.ack_timeout,
                    write_frame(&mut send, &frame, &mut out),
                )
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "the hub stopped reading for {:?}",
                        target.session.ack_timeout
                    )
                })??,
                PlantAction::Read {
                    after,
                    limit,
                    max_bytes,
                } => {
                    let entries = journal.read(after, limit, max_bytes).await?;
                    s.handle(Instant::now(), PlantEvent::Read(entries));
                }
                PlantAction::Acked(seq) => journal.acked(seq).await?,
                PlantAction::Close(e) => bail!(e),
            }
        }
        let deadline = s.poll_timeout();
        tokio::select! {
            frame = read_frame(&mut recv, &mut buf) => match frame? {
                Some(f) => {
                    s.handle(Instant::now(), PlantEvent::Frame(f));
                    if s.is_streaming() && !*resumed.borrow() {
                        resumed.send_replace(true);
                    }
                }
                None => bail!("the hub ended the session"),
            },
            changed = last_seq.changed() => {
                changed.context("journal closed")?;
                let n = *last_seq.borrow_and_update();
                s.handle(Instant::now(), PlantEvent::JournalAt(n));
            }
            _ = sleep_until(deadline) => s.handle_timeout(Instant::now()),
            _ = tick.tick() => {
                let backlog = (*last_seq.borrow()).saturating_sub(journal.acked_seq());
                report.send_replace(LinkReport {
                    state: link.state(Instant::now(), backlog),
                    hub: Some(hub.to_string()),
                    last_error: None,
                    reconnects,
                });
            }
            _ = telemetry_tick.tick() => {
                let current = report.borrow().clone();
                let body = journal.telemetry(&current).await;
                write_frame(&mut telemetry, &Frame::Telemetry { body }, &mut tout).await?;
            }
            changed = islanded.changed() => {
                changed.context("replication handle dropped")?;
                if !*islanded.borrow() {
                    continue;
                }
                // Islanded on purpose: the hub hears it before the link goes, so that it shows
                // "islanded", not "offline". Bounded: a hub that does not take it is left.
                let mut last = report.borrow().clone();
                last.state = LinkState::Islanded;
                let mut body: serde_json::Value =
                    serde_json::from_str(&journal.telemetry(&last).await)?;
                // Only this word says "an admin islanded me": the link state alone also turns
                // islanded on its own after a long outage.
                body[ISLANDED_ON_PURPOSE] = serde_json::Value::Bool(true);
                let body = body.to_string();
                // The hub stops the stream once it has stored the word; then the link can go.
                let goodbye = async {
                    write_frame(&mut telemetry, &Frame::Telemetry { body }, &mut tout).await?;
                    let _ = telemetry.stopped().await;
                    anyhow::Ok(())
                };
                if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(2), goodbye).await {
                    tracing::debug!(error = %format!("{e:#}"), "telling the hub of the island");
                }
                return Ok(());
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
