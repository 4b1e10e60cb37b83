//! The hub's PostgreSQL store: plants, enrollment tokens and every plant's transactions.
//!
//! Exactly once: a batch is stored in one PostgreSQL transaction that first locks the plant's
//! row (`FOR UPDATE`), keeps only the entries after the plant's `acked_seq`, requires them to
//! continue it without a gap, inserts them (`ON CONFLICT DO NOTHING` on `(plant, seq)` as a
//! second guard) and moves `acked_seq`. Two hub processes on one database therefore never store
//! a row twice, whatever the sessions do. Migrations are numbered and run once at start.

mod alerts;
mod logs;
pub use logs::LogQuery;
mod releases;
mod remote;

use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};

use super::database::Database;
use crate::config::PostgresConfig;
use crate::replication::hub::Refusal;
use crate::replication::wire::Entry;
pub(in crate::hub) use releases::images_of;
pub use releases::IMAGE_CHUNK;
pub use remote::{HubAuditEntry, NotCreated, RemoteActionRow};

const MIGRATIONS: &[&str] = &[
    // 1: plants, their enrollment tokens and their transactions.
    "CREATE TABLE plants (
        name         TEXT PRIMARY KEY,
        enrolled_at  TIMESTAMPTZ,
        revoked_at   TIMESTAMPTZ,
        cert_sha256  TEXT UNIQUE,
        acked_seq    BIGINT NOT NULL DEFAULT 0,
        last_seen    TIMESTAMPTZ,
        version      TEXT
     );
     CREATE TABLE enrollment_tokens (
        token_sha256 TEXT PRIMARY KEY,
        plant        TEXT NOT NULL,
        created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
        expires_at   TIMESTAMPTZ NOT NULL,
        used_at      TIMESTAMPTZ
     );
     CREATE TABLE transactions (
        plant        TEXT   NOT NULL REFERENCES plants (name),
        seq          BIGINT NOT NULL,
        key          TEXT   NOT NULL,
        device       TEXT   NOT NULL,
        kind         TEXT   NOT NULL,
        payload      TEXT   NOT NULL,
        occurred_at  TEXT,
        received_at  TIMESTAMPTZ NOT NULL,
        stored_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (plant, seq)
     );",
    // 2: the latest telemetry snapshot of each plant.
    "ALTER TABLE plants ADD COLUMN telemetry JSONB, ADD COLUMN telemetry_at TIMESTAMPTZ;",
    // 3: tokens of the central team's tools for the fleet API.
    "CREATE TABLE api_tokens (
        name         TEXT PRIMARY KEY,
        token_sha256 TEXT NOT NULL UNIQUE,
        created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
     );",
    // 4: the id of the journal each plant replicates from.
    "ALTER TABLE plants ADD COLUMN journal_id TEXT;",
    // 5: signed releases of plantd, in the database so that every hub replica serves them.
    "CREATE TABLE releases (
        version      TEXT PRIMARY KEY,
        size         BIGINT NOT NULL,
        sha256       TEXT NOT NULL,
        signature    TEXT NOT NULL,
        public_key   TEXT NOT NULL,
        binary_data  BYTEA NOT NULL,
        published_at TIMESTAMPTZ NOT NULL DEFAULT now()
     );",
    // 6: rollouts of releases in waves, each plant's part in them, and pins.
    "ALTER TABLE plants ADD COLUMN pinned_version TEXT REFERENCES releases (version);
     CREATE TABLE rollouts (
        id            BIGSERIAL PRIMARY KEY,
        version       TEXT NOT NULL REFERENCES releases (version),
        waves         TEXT NOT NULL,
        max_failures  INTEGER NOT NULL,
        state         TEXT NOT NULL,
        reason        TEXT,
        current_wave  INTEGER NOT NULL DEFAULT 1,
        wave_count    INTEGER NOT NULL,
        failures_base INTEGER NOT NULL DEFAULT 0,
        started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
     );
     CREATE TABLE rollout_plants (
        rollout    BIGINT NOT NULL REFERENCES rollouts (id),
        plant      TEXT NOT NULL REFERENCES plants (name),
        wave       INTEGER NOT NULL,
        state      TEXT NOT NULL,
        reason     TEXT,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (rollout, plant)
     );",
    // 7: binaries stored uncompressed out of line, so that a slice of one (a download's next
    // megabyte) reads that slice, not the whole binary decompressed.
    "ALTER TABLE releases ALTER COLUMN binary_data SET STORAGE EXTERNAL;",
    // 8: stack image bundles that travel with a release, in 1 MiB rows: a bundle may be larger
    // than one bytea can hold, and a download reads one row per slice.
    "CREATE TABLE release_images (
        version TEXT PRIMARY KEY REFERENCES releases (version),
        size    BIGINT NOT NULL,
        sha256  TEXT NOT NULL,
        tags    TEXT NOT NULL
     );
     CREATE TABLE release_image_chunks (
        version TEXT NOT NULL REFERENCES release_images (version),
        seq     INTEGER NOT NULL,
        data    BYTEA NOT NULL,
        PRIMARY KEY (version, seq)
     );
     ALTER TABLE release_image_chunks ALTER COLUMN data SET STORAGE EXTERNAL;",
    // 9: the apply to the central Odoo: how far each plant has got, where its queue stopped,
    // and what an admin parked.
    "ALTER TABLE plants ADD COLUMN applied_seq BIGINT NOT NULL DEFAULT 0;
     CREATE TABLE apply_stops (
        plant   TEXT PRIMARY KEY REFERENCES plants (name),
        seq     BIGINT NOT NULL,
        kind    TEXT NOT NULL,
        message TEXT NOT NULL,
        at      TIMESTAMPTZ NOT NULL DEFAULT now()
     );
     CREATE TABLE apply_parked (
        plant     TEXT NOT NULL REFERENCES plants (name),
        seq       BIGINT NOT NULL,
        message   TEXT NOT NULL,
        parked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (plant, seq)
     );",
    // 10: the QUIC addresses every replica advertises, so that an enrollment at any of them
    // tells the plant all of them.
    "CREATE TABLE hub_replicas (
        address TEXT PRIMARY KEY,
        seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
     );",
    // 11: alerts: the open ones (one row, written by the replica that evaluates them) and
    // their history.
    "CREATE TABLE alert_state (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        state JSONB NOT NULL
     );
     CREATE TABLE alert_history (
        id        BIGSERIAL PRIMARY KEY,
        at        TIMESTAMPTZ NOT NULL,
        condition TEXT NOT NULL,
        subject   TEXT NOT NULL,
        tier      TEXT NOT NULL,
        event     TEXT NOT NULL,
        message   TEXT NOT NULL
     );
     CREATE INDEX alert_history_at ON alert_history (at);",
    // 12: actions the hub asks plants to carry out (see store/remote.rs), and the hub's own
    // audit log of who asked for what and how it ended.
    "CREATE TABLE remote_actions (
        id           BIGSERIAL PRIMARY KEY,
        plant        TEXT NOT NULL REFERENCES plants (name),
        action       TEXT NOT NULL,
        args         JSONB NOT NULL,
        requested_by TEXT NOT NULL,
        requested_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        expires_at   TIMESTAMPTZ NOT NULL,
        state        TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'sent', 'ok', 'refused', 'failed', 'expired')),
        sent_at      TIMESTAMPTZ,
        detail       TEXT,
        result       JSONB,
        finished_at  TIMESTAMPTZ
     );
     CREATE INDEX remote_actions_pending ON remote_actions (plant, id) WHERE state = 'pending';
     CREATE INDEX remote_actions_of_plant ON remote_actions (plant, id DESC);
     CREATE TABLE hub_audit (
        id      BIGSERIAL PRIMARY KEY,
        at      TIMESTAMPTZ NOT NULL DEFAULT now(),
        who     TEXT NOT NULL,
        action  TEXT NOT NULL,
        target  TEXT,
        outcome TEXT NOT NULL,
        detail  TEXT NOT NULL DEFAULT ''
     );",
    // 13: the plants' warnings, errors and stack events, kept `[logs] keep`.
    "CREATE TABLE plant_logs (
        id      BIGSERIAL PRIMARY KEY,
        plant   TEXT NOT NULL,
        at      TIMESTAMPTZ NOT NULL,
        level   TEXT NOT NULL,
        target  TEXT NOT NULL,
        message TEXT NOT NULL
     );
     CREATE INDEX plant_logs_by_plant ON plant_logs (plant, id DESC);
     CREATE INDEX plant_logs_at ON plant_logs (at);",
    // 14: each plant's link history at the hub: sessions authorized and ended, with why.
    "CREATE TABLE plant_links (
        id     BIGSERIAL PRIMARY KEY,
        plant  TEXT NOT NULL,
        at     TIMESTAMPTZ NOT NULL DEFAULT now(),
        event  TEXT NOT NULL,
        detail TEXT NOT NULL
     );
     CREATE INDEX plant_links_by_plant ON plant_links (plant, id DESC);",
];

/// How long a replica's addresses are handed to enrolling plants after it last said it runs
/// (it says so hourly): a replica gone for good drops out within two hours.
const REPLICA_FRESH: &str = "2 hours";

/// A connection to the hub database, taken from the hub's pool ([`Database::store`]) and
/// given back when dropped.
pub struct Store {
    pub(super) client: deadpool_postgres::Object,
}

/// A plant as the fleet view shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PlantRow {
    pub plant: String,
    pub enrolled: bool,
    pub revoked: bool,
    pub acked_seq: i64,
    pub stored: i64,
    pub last_seen: Option<String>,
    pub version: Option<String>,
    /// The link state in the plant's latest telemetry.
    pub link: Option<String>,
    /// Seconds the oldest transaction the hub lacked had waited at the plant, as its latest
    /// telemetry said; the fleet view's `lag_s` is worked out at the hub (`hub::truth`).
    #[serde(skip)]
    pub reported_lag_s: Option<i64>,
    /// Seconds since the hub last heard from the plant (hello, acks, telemetry), by the
    /// database's clock.
    #[serde(skip)]
    pub seen_s_ago: Option<i64>,
    /// Seconds since the plant's latest telemetry, by the database's clock.
    #[serde(skip)]
    pub telemetry_s_ago: Option<i64>,
    /// The latest telemetry snapshot, as the plant sent it.
    pub telemetry: Option<serde_json::Value>,
    /// The release the plant is pinned to, if any.
    pub pinned_version: Option<String>,
}

/// What an enrollment token turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// Valid: it is now used up, and the plant is registered with this certificate.
    Enrolled,
    Unknown,
    Expired,
    Used,
    Revoked,
}

impl Store {
    /// One connection for a CLI command (TLS as `[postgres]` says), with the schema brought up
    /// to date.
    pub async fn connect(url: &str, settings: &PostgresConfig) -> anyhow::Result<Store> {
        let one = PostgresConfig {
            pool_size: 1,
            ..settings.clone()
        };
        let mut store = Database::new(url, &one)?.store().await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Brings the schema up to date (the hub does this once at start).
    pub async fn migrate_schema(&mut self) -> anyhow::Result<()> {
        self.migrate().await
    }

    /// Closes this connection instead of giving it back to the pool: for a connection that
    /// may hold a session-level lock, or be in a state the next user must not inherit.
    pub fn discard(self) {
        drop(deadpool_postgres::Object::take(self.client));
    }

    async fn migrate(&mut self) -> anyhow::Result<()> {
        let tx = self.client.transaction().await?;
        // One hub at a time migrates; others wait here.
        tx.batch_execute("SET LOCAL client_min_messages = warning")
            .await?;
        tx.execute("SELECT pg_advisory_xact_lock(7467510)", &[])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
        let done: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .await?
            .get(0);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
            tx.batch_execute(sql)
                .await
                .with_context(|| format!("hub database migration {}", i + 1))?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&(i as i32 + 1)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a one-time enrollment token for `plant`, valid for `ttl`.
    pub async fn add_token(
        &self,
        token_sha256: &str,
        plant: &str,
        ttl: Duration,
    ) -> anyhow::Result<()> {
        let expires = SystemTime::now() + ttl;
        self.client
            .execute(
                "INSERT INTO plants (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                &[&plant],
            )
            .await?;
        self.client
            .execute(
                "INSERT INTO enrollment_tokens (token_sha256, plant, expires_at) VALUES ($1, $2, $3)",
                &[&token_sha256, &plant, &expires],
            )
            .await?;
        Ok(())
    }

    /// Uses up a token and registers the plant's certificate, or says why not; the plant comes
    /// from the token.
    pub async fn enroll(
        &mut self,
        token_sha256: &str,
        issue: impl FnOnce(&str) -> anyhow::Result<(String, String)>,
    ) -> anyhow::Result<(TokenCheck, Option<(String, String)>)> {
        let tx = self.client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT t.plant, t.expires_at < now(), t.used_at IS NOT NULL, p.revoked_at IS NOT NULL
                 FROM enrollment_tokens t JOIN plants p ON p.name = t.plant
                 WHERE t.token_sha256 = $1 FOR UPDATE OF t",
                &[&token_sha256],
            )
            .await?;
        let Some(row) = row else {
            return Ok((TokenCheck::Unknown, None));
        };
        let (plant, expired, used, revoked): (String, bool, bool, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let check = if used {
            TokenCheck::Used
        } else if expired {
            TokenCheck::Expired
        } else if revoked {
            TokenCheck::Revoked
        } else {
            TokenCheck::Enrolled
        };
        if check != TokenCheck::Enrolled {
            return Ok((check, None));
        }
        // issue returns (certificate PEM, its SHA-256).
        let (cert_pem, cert_sha256) = issue(&plant)?;
        tx.execute(
            "UPDATE enrollment_tokens SET used_at = now() WHERE token_sha256 = $1",
            &[&token_sha256],
        )
        .await?;
        tx.execute(
            "UPDATE plants SET enrolled_at = now(), cert_sha256 = $2 WHERE name = $1",
            &[&plant, &cert_sha256],
        )
        .await?;
        tx.commit().await?;
        Ok((TokenCheck::Enrolled, Some((plant, cert_pem))))
    }

    /// The plant holding this certificate, and the next seq the hub needs from it; an error
    /// message when it may not replicate.
    /// The plant holding the certificate with this SHA-256, unless it is revoked.
    pub async fn plant_for_cert(
        &self,
        cert_sha256: &str,
    ) -> anyhow::Result<Result<String, Refusal>> {
        let row = self
            .client
            .query_opt(
                "SELECT name, revoked_at IS NOT NULL FROM plants WHERE cert_sha256 = $1",
                &[&cert_sha256],
            )
            .await?;
        Ok(match row {
            None => Err(Refusal::UnknownCert),
            Some(r) if r.get::<_, bool>(1) => Err(Refusal::Revoked(r.get(0))),
            Some(r) => Ok(r.get(0)),
        })
    }

    /// The next seq the hub needs from the plant holding this certificate, or why it may not
    /// replicate. Every check (known, not revoked, its journal, its name) comes before the one
    /// write, `last_seen` and `version`, which a refused hello therefore never makes.
    pub async fn authorize(
        &self,
        cert_sha256: &str,
        claimed: &str,
        version: &str,
        journal: &str,
    ) -> anyhow::Result<Result<u64, Refusal>> {
        // The first session binds the plant to its journal; a later one from another journal
        // (a replaced or rebuilt journal.db) would resume seqs that are not the same
        // transactions, so it is refused.
        let row = self
            .client
            .query_opt(
                "UPDATE plants SET last_seen = now(), version = $2,
                        journal_id = coalesce(journal_id, $3)
                 WHERE cert_sha256 = $1 AND revoked_at IS NULL AND name = $4
                       AND coalesce(journal_id, $3) = $3
                 RETURNING acked_seq",
                &[&cert_sha256, &version, &journal, &claimed],
            )
            .await?;
        if let Some(row) = row {
            return Ok(Ok(row.get::<_, i64>(0) as u64 + 1));
        }
        // Refused: find out why, reading only.
        let row = self
            .client
            .query_opt(
                "SELECT name, revoked_at IS NOT NULL, acked_seq, journal_id FROM plants
                 WHERE cert_sha256 = $1",
                &[&cert_sha256],
            )
            .await?;
        let Some(row) = row else {
            return Ok(Err(Refusal::UnknownCert));
        };
        let (name, revoked, acked, bound): (String, bool, i64, Option<String>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if revoked {
            return Ok(Err(Refusal::Revoked(name)));
        }
        if let Some(bound) = bound.filter(|b| b != journal) {
            return Ok(Err(Refusal::OtherJournal {
                plant: name,
                bound,
                acked,
                journal: journal.to_string(),
            }));
        }
        if name != claimed {
            return Ok(Err(Refusal::NotItsName {
                plant: name,
                claimed: claimed.to_string(),
            }));
        }
        // It changed between the two statements (revoked, bound): the next hello decides.
        Ok(Err(Refusal::Changed(name)))
    }

    /// Stores the contiguous continuation of `plant`'s transactions; returns its new acked seq.
    pub async fn store(&mut self, plant: &str, entries: &[Entry]) -> anyhow::Result<u64> {
        let tx = self.client.transaction().await?;
        let row = tx
            .query_one(
                "SELECT acked_seq, revoked_at IS NOT NULL FROM plants WHERE name = $1 FOR UPDATE",
                &[&plant],
            )
            .await?;
        let (acked, revoked): (i64, bool) = (row.get(0), row.get(1));
        // Revocation also ends a session that was already running.
        if revoked {
            bail!("plant {plant:?} was revoked at the hub");
        }
        let fresh: Vec<&Entry> = entries.iter().filter(|e| e.seq as i64 > acked).collect();
        let Some(first) = fresh.first() else {
            return Ok(acked as u64);
        };
        if first.seq as i64 != acked + 1 {
            bail!(
                "batch for {plant} starts at seq {}, after {acked}: a gap",
                first.seq
            );
        }
        let seqs: Vec<i64> = fresh.iter().map(|e| e.seq as i64).collect();
        let keys: Vec<&str> = fresh.iter().map(|e| e.key.as_str()).collect();
        let devices: Vec<&str> = fresh.iter().map(|e| e.device.as_str()).collect();
        let kinds: Vec<&str> = fresh.iter().map(|e| e.kind.as_str()).collect();
        let payloads: Vec<&str> = fresh.iter().map(|e| e.payload.as_str()).collect();
        let occurred: Vec<Option<&str>> = fresh.iter().map(|e| e.occurred_at.as_deref()).collect();
        let received: Vec<f64> = fresh
            .iter()
            .map(|e| e.received_at_ms as f64 / 1000.0)
            .collect();
        tx.execute(
            "INSERT INTO transactions (plant, seq, key, device, kind, payload, occurred_at, received_at)
             SELECT $1, s, k, d, t, p, o, to_timestamp(r)
             FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::float8[])
                  AS u(s, k, d, t, p, o, r)
             ON CONFLICT (plant, seq) DO NOTHING",
            &[&plant, &seqs, &keys, &devices, &kinds, &payloads, &occurred, &received],
        )
        .await?;
        let last = fresh.last().expect("not empty").seq as i64;
        tx.execute(
            "UPDATE plants SET acked_seq = $2, last_seen = now() WHERE name = $1",
            &[&plant, &last],
        )
        .await?;
        tx.commit().await?;
        Ok(last as u64)
    }

    /// Keeps the plant's latest telemetry snapshot (a JSON object of at most 64 KiB).
    pub async fn record_telemetry(&self, plant: &str, body: &str) -> anyhow::Result<()> {
        if body.len() > 64 * 1024 {
            bail!("telemetry of {} bytes is over the 64 KiB limit", body.len());
        }
        let value: serde_json::Value =
            serde_json::from_str(body).context("telemetry is not JSON")?;
        if !value.is_object() {
            bail!("telemetry must be a JSON object");
        }
        self.client
            .execute(
                "UPDATE plants SET telemetry = $2::text::jsonb, telemetry_at = now(), last_seen = now()
                 WHERE name = $1",
                &[&plant, &body],
            )
            .await?;
        Ok(())
    }

    /// Records a fleet API token (hashed) under `name`, replacing an earlier one.
    pub async fn add_api_token(&self, name: &str, token_sha256: &str) -> anyhow::Result<()> {
        self.client
            .execute(
                "INSERT INTO api_tokens (name, token_sha256) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET token_sha256 = excluded.token_sha256, created_at = now()",
                &[&name, &token_sha256],
            )
            .await?;
        Ok(())
    }

    /// The name of the fleet API token with this hash, if any.
    pub async fn api_token(&self, token_sha256: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .client
            .query_opt(
                "SELECT name FROM api_tokens WHERE token_sha256 = $1",
                &[&token_sha256],
            )
            .await?
            .map(|r| r.get(0)))
    }

    /// Refuses the plant's connections from now on.
    pub async fn revoke(&self, plant: &str) -> anyhow::Result<bool> {
        let n = self
            .client
            .execute(
                "UPDATE plants SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
                &[&plant],
            )
            .await?;
        Ok(n == 1)
    }

    /// This replica runs and plants may dial it at `addresses`.
    pub async fn register_replica(&self, addresses: &[String]) -> anyhow::Result<()> {
        for address in addresses {
            self.client
                .execute(
                    "INSERT INTO hub_replicas (address) VALUES ($1)
                     ON CONFLICT (address) DO UPDATE SET seen_at = now()",
                    &[address],
                )
                .await?;
        }
        Ok(())
    }

    /// The QUIC addresses of every replica that ran lately, `own` first: what an enrolling
    /// plant is told to dial.
    pub async fn replica_addresses(&self, own: &[String]) -> anyhow::Result<Vec<String>> {
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT address FROM hub_replicas WHERE seen_at > now() - interval '{REPLICA_FRESH}' ORDER BY address"
                ),
                &[],
            )
            .await?;
        let mut all = own.to_vec();
        for r in rows {
            let address: String = r.get(0);
            if !all.contains(&address) {
                all.push(address);
            }
        }
        Ok(all)
    }

    /// The fleet, by name.
    pub async fn plants(&self) -> anyhow::Result<Vec<PlantRow>> {
        self.plants_counting(true).await
    }

    /// The fleet, by name, with `stored` counted only when `count` (a count of every plant's
    /// transactions, too dear to run every few seconds).
    pub async fn plants_counting(&self, count: bool) -> anyhow::Result<Vec<PlantRow>> {
        let rows = self
            .client
            .query(
                "SELECT p.name, p.enrolled_at IS NOT NULL, p.revoked_at IS NOT NULL, p.acked_seq,
                        CASE WHEN $1 THEN (SELECT count(*) FROM transactions t WHERE t.plant = p.name)
                             ELSE 0 END,
                        to_char(p.last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                        p.version, p.telemetry->>'link',
                        (p.telemetry->>'oldest_unacked_age_s')::bigint, p.telemetry::text,
                        p.pinned_version,
                        extract(epoch FROM now() - p.last_seen)::bigint,
                        extract(epoch FROM now() - p.telemetry_at)::bigint
                 FROM plants p ORDER BY p.name",
                &[&count],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| PlantRow {
                plant: r.get(0),
                enrolled: r.get(1),
                revoked: r.get(2),
                acked_seq: r.get(3),
                stored: r.get(4),
                last_seen: r.get(5),
                version: r.get(6),
                link: r.get(7),
                reported_lag_s: r.get(8),
                telemetry: r
                    .get::<_, Option<String>>(9)
                    .and_then(|t| serde_json::from_str(&t).ok()),
                pinned_version: r.get(10),
                seen_s_ago: r.get(11),
                telemetry_s_ago: r.get(12),
            })
            .collect())
    }
}

/// Where the database is, without any secret, for messages: user, hosts, ports, database.
pub fn redact(url: &str) -> String {
    let Ok(c) = url.parse::<tokio_postgres::Config>() else {
        return "(a database URL that does not parse)".into();
    };
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = c.get_ports().iter().map(u16::to_string).collect();
    format!(
        "postgres://{}@{}:{}/{}",
        c.get_user().unwrap_or(""),
        hosts.join(","),
        ports.join(","),
        c.get_dbname().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn database_urls_lose_their_secrets() {
        for url in [
            "postgres://plantd:s3cret@db:5432/plantd",
            "postgres://plantd@db/plantd?password=s3cret",
            "host=db user=plantd password=s3cret dbname=plantd",
        ] {
            let r = redact(url);
            assert!(!r.contains("s3cret"), "{url} -> {r}");
            assert!(r.contains("db") && r.contains("plantd"), "{url} -> {r}");
        }
    }
}
