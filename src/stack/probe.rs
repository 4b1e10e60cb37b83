//! plantd's own probes of the services, made from the host to each container's address on the
//! stack's network: PostgreSQL with a real login and `SELECT 1`, Redis with `PING`, Odoo with
//! `/web/health` (Odoo 15 and later), falling back to `version_info`.
//!
//! An Odoo that does not answer in time is not yet a dead one: its workers may all be waiting
//! on PostgreSQL (a lock held by a long transaction, a slow disk). Then the probe asks
//! PostgreSQL what Odoo's own connections are doing, and an Odoo whose process is running,
//! whose port accepts connections and which has work in progress in PostgreSQL is busy, not
//! failing (invariant 8). A paused container, a closed port, or an open port with nothing in
//! progress (hung) still fail.

use std::net::IpAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::reconcile::Outcome;
use super::spec::{Secrets, Service, DB_USER};

/// Why a probe, or a question put to the stack's PostgreSQL, failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no answer within {} ms", .timeout.as_millis())]
    NoAnswer { timeout: Duration },
    #[error("connecting to PostgreSQL: {0}")]
    PostgresConnect(#[source] tokio_postgres::Error),
    #[error("PostgreSQL did not answer within {timeout:?}")]
    PostgresTimedOut { timeout: Duration },
    #[error("SELECT 1: {0}")]
    Select1(#[source] tokio_postgres::Error),
    #[error("reading pg_stat_activity: {0}")]
    Activity(#[source] tokio_postgres::Error),
    #[error("looking for database {database}: {source}")]
    LookupDatabase {
        database: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("connecting: {0}")]
    RedisConnect(#[source] std::io::Error),
    #[error("sending PING: {0}")]
    RedisSend(#[source] std::io::Error),
    #[error("reading the answer to PING: {0}")]
    RedisRead(#[source] std::io::Error),
    #[error("PING answered {answer:?}")]
    RedisAnswer { answer: String },
    /// An Odoo endpoint (`/web/health`, `version_info`) could not be asked.
    #[error("{endpoint}: {}", with_causes(.source))]
    OdooRequest {
        endpoint: &'static str,
        /// Without its URL: the address is plantd's own business.
        #[source]
        source: reqwest::Error,
    },
    #[error("{endpoint} answered {status}")]
    OdooStatus { endpoint: &'static str, status: u16 },
}

/// What the Odoo probe needs, beyond Odoo's address, to tell busy from hung.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OdooContext {
    /// PostgreSQL's address on the stack network, while it runs.
    pub postgres: Option<IpAddr>,
    /// The Odoo database.
    pub database: String,
    /// Whether Docker shows the container paused (its processes frozen).
    pub paused: bool,
}

/// How long the follow-up checks of an Odoo that did not answer may take, each.
const BUSY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// A transaction of Odoo's whose last statement is this recent counts as work in progress:
/// Python computing between two queries of one request.
const RECENT_TRANSACTION_SECS: u32 = 5;

/// Probes one service at `ip`; the error says what failed. No answer in time is a failure
/// here, busy or not (see [`probe_outcome`]).
pub async fn probe(
    service: Service,
    ip: IpAddr,
    secrets: &Secrets,
    http: &reqwest::Client,
    timeout: Duration,
) -> Result<(), Error> {
    check(service, ip, secrets, http, timeout)
        .await
        .unwrap_or_else(|| Err(no_answer(timeout)))
}

/// The supervisor's probe: as [`probe`], and an Odoo that does not answer in time is looked at
/// again, to tell busy from hung.
pub async fn probe_outcome(
    service: Service,
    ip: IpAddr,
    secrets: &Secrets,
    http: &reqwest::Client,
    timeout: Duration,
    odoo_context: &OdooContext,
) -> Outcome {
    match check(service, ip, secrets, http, timeout).await {
        Some(Ok(())) => Outcome::Pass,
        Some(Err(why)) => Outcome::Fail(why.to_string()),
        None if service == Service::Odoo => {
            odoo_busy_or_hung(ip, secrets, odoo_context, no_answer(timeout).to_string()).await
        }
        None => Outcome::Fail(no_answer(timeout).to_string()),
    }
}

fn no_answer(timeout: Duration) -> Error {
    Error::NoAnswer { timeout }
}

/// One probe; `None` when the service gave no answer within `timeout`.
async fn check(
    service: Service,
    ip: IpAddr,
    secrets: &Secrets,
    http: &reqwest::Client,
    timeout: Duration,
) -> Option<Result<(), Error>> {
    let work = async {
        match service {
            Service::Postgres => postgres(ip, secrets, timeout).await,
            Service::Redis => redis(ip).await,
            Service::Odoo => odoo(ip, http).await,
        }
    };
    tokio::time::timeout(timeout, work).await.ok()
}

/// What Odoo's connections to its database are doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InProgress {
    /// Statements running (or waiting) now.
    pub active: i64,
    /// Of those, the ones waiting on a lock.
    pub waiting_on_lock: i64,
    /// Transactions between two statements, the last one a few seconds ago.
    pub recent_transactions: i64,
}

/// After Odoo gave no answer in time: busy (running, port open, work in progress in
/// PostgreSQL) or failing, and why.
async fn odoo_busy_or_hung(
    ip: IpAddr,
    secrets: &Secrets,
    context: &OdooContext,
    why: String,
) -> Outcome {
    if context.paused {
        return Outcome::Fail(format!("{why}; the container is paused"));
    }
    let port = tokio::time::timeout(
        BUSY_CHECK_TIMEOUT,
        tokio::net::TcpStream::connect((ip, 8069)),
    )
    .await;
    if !matches!(port, Ok(Ok(_))) {
        return Outcome::Fail(format!("{why}, and port 8069 accepts no connection"));
    }
    let Some(pg) = context.postgres else {
        return Outcome::Fail(format!(
            "{why}; PostgreSQL is not running, so Odoo cannot be busy in it"
        ));
    };
    let asked = tokio::time::timeout(
        BUSY_CHECK_TIMEOUT,
        in_progress(pg, secrets, &context.database, ip),
    )
    .await;
    match asked {
        Ok(Ok(w)) if w.active > 0 || w.recent_transactions > 0 => Outcome::Busy(format!(
            "{why}: busy, {} statement(s) of Odoo's in progress in PostgreSQL ({} waiting on a lock), {} transaction(s) at work",
            w.active, w.waiting_on_lock, w.recent_transactions
        )),
        Ok(Ok(_)) => Outcome::Fail(format!(
            "{why}, with its port open and nothing in progress in PostgreSQL: hung"
        )),
        Ok(Err(e)) => Outcome::Fail(format!("{why}; could not ask PostgreSQL whether it is busy: {e}")),
        Err(_) => Outcome::Fail(format!(
            "{why}; PostgreSQL did not say within {} s whether it is busy",
            BUSY_CHECK_TIMEOUT.as_secs()
        )),
    }
}

/// Asks PostgreSQL (at `pg`) what the connections from Odoo's container (`odoo`) to `database`
/// are doing. plantd's own connection comes from the host, so it is not counted.
pub async fn in_progress(
    pg: IpAddr,
    secrets: &Secrets,
    database: &str,
    odoo: IpAddr,
) -> Result<InProgress, Error> {
    let sql = format!(
        "SELECT count(*) FILTER (WHERE state = 'active'), \
                count(*) FILTER (WHERE state = 'active' AND wait_event_type = 'Lock'), \
                count(*) FILTER (WHERE state = 'idle in transaction' \
                                 AND state_change > now() - interval '{RECENT_TRANSACTION_SECS} seconds') \
         FROM pg_stat_activity \
         WHERE datname = $1 AND host(client_addr) = $2"
    );
    with_postgres(pg, secrets, BUSY_CHECK_TIMEOUT, async |client| {
        let row = client
            .query_one(&sql, &[&database, &odoo.to_string()])
            .await
            .map_err(Error::Activity)?;
        Ok(InProgress {
            active: row.get(0),
            waiting_on_lock: row.get(1),
            recent_transactions: row.get(2),
        })
    })
    .await
}

/// A connection to the stack's PostgreSQL; its driver task ends when this is dropped.
pub struct Pg {
    pub client: tokio_postgres::Client,
    conn: AbortOnDrop<Result<(), tokio_postgres::Error>>,
}

impl Pg {
    /// Connects as Odoo's user to database `db`.
    pub async fn connect(
        ip: IpAddr,
        secrets: &Secrets,
        db: &str,
        timeout: Duration,
    ) -> Result<Pg, Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(ip.to_string())
            .port(5432)
            .user(DB_USER)
            .password(&secrets.postgres_password)
            .dbname(db)
            .application_name("plantd")
            .connect_timeout(timeout);
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(Error::PostgresConnect)?;
        Ok(Pg {
            client,
            conn: AbortOnDrop(tokio::spawn(connection)),
        })
    }

    /// Disconnects cleanly.
    pub async fn close(self) {
        let Pg { client, mut conn } = self;
        drop(client);
        let _ = (&mut conn.0).await;
    }
}

/// Connects to the stack's PostgreSQL as Odoo's user, runs `work`, and disconnects. Dropped
/// early (a probe timing out), the connection is aborted, so none lingers against a hung
/// server.
async fn with_postgres<T>(
    ip: IpAddr,
    secrets: &Secrets,
    timeout: Duration,
    work: impl AsyncFnOnce(&tokio_postgres::Client) -> Result<T, Error>,
) -> Result<T, Error> {
    let pg = Pg::connect(ip, secrets, "postgres", timeout).await?;
    let result = work(&pg.client).await;
    pg.close().await;
    result
}

async fn postgres(ip: IpAddr, secrets: &Secrets, timeout: Duration) -> Result<(), Error> {
    with_postgres(ip, secrets, timeout, async |client| {
        client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(Error::Select1)
    })
    .await
}

/// Whether the stack's PostgreSQL has the database `name`.
pub async fn database_exists(ip: IpAddr, secrets: &Secrets, name: &str) -> Result<bool, Error> {
    let timeout = Duration::from_secs(10);
    let work = with_postgres(ip, secrets, timeout, async |client| {
        client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .map(|row| row.is_some())
            .map_err(|source| Error::LookupDatabase {
                database: name.to_string(),
                source,
            })
    });
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(Error::PostgresTimedOut { timeout }))
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn redis(ip: IpAddr) -> Result<(), Error> {
    let mut stream = tokio::net::TcpStream::connect((ip, 6379))
        .await
        .map_err(Error::RedisConnect)?;
    stream
        .write_all(b"PING\r\n")
        .await
        .map_err(Error::RedisSend)?;
    // One line of RESP; a reply may come in pieces.
    let mut buf = Vec::new();
    while !buf.ends_with(b"\r\n") && buf.len() < 256 {
        let mut chunk = [0u8; 64];
        let n = stream.read(&mut chunk).await.map_err(Error::RedisRead)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let answer = String::from_utf8_lossy(&buf);
    if answer.starts_with("+PONG") {
        Ok(())
    } else {
        Err(Error::RedisAnswer {
            answer: answer.trim_end().to_string(),
        })
    }
}

async fn odoo(ip: IpAddr, http: &reqwest::Client) -> Result<(), Error> {
    let base = format!("http://{}", std::net::SocketAddr::new(ip, 8069));
    let r = http
        .get(format!("{base}/web/health"))
        .send()
        .await
        .map_err(|e| Error::OdooRequest {
            endpoint: "/web/health",
            source: e.without_url(),
        })?;
    match r.status().as_u16() {
        200 => return Ok(()),
        // Before Odoo 15 there is no /web/health.
        404 => {}
        status => {
            return Err(Error::OdooStatus {
                endpoint: "/web/health",
                status,
            })
        }
    }
    let r = http
        .post(format!("{base}/web/webclient/version_info"))
        .json(&serde_json::json!({"jsonrpc": "2.0", "method": "call", "params": {}}))
        .send()
        .await
        .map_err(|e| Error::OdooRequest {
            endpoint: "version_info",
            source: e.without_url(),
        })?;
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    if status == 200 && body.get("result").is_some() {
        Ok(())
    } else {
        Err(Error::OdooStatus {
            endpoint: "version_info",
            status,
        })
    }
}

/// A request's error with the errors under it, `: `-joined (reqwest's own says little).
fn with_causes(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = format!("{msg}: {s}");
        source = s.source();
    }
    msg
}

/// The HTTP client of the Odoo probe: plain HTTP to the container.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    let tls = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .pool_max_idle_per_host(0)
        .build()?)
}
