//! Device tokens: who may post transactions.
//!
//! A token is 32 random bytes shown once (`pdt_` + base64url); only its SHA-256 is stored, in
//! `DATA_DIR/state.db`. A fast hash is right here because the token itself is full-entropy: there
//! is nothing to guess that a slow hash would protect, and every request checks one.
//! The daemon keeps the table in memory; it changes only through [`Tokens`], whether called by
//! the daemon (over the control socket) or by the CLI when no daemon runs.
//!
//! Each token has a [`Scope`]: the kinds its device may send. A token made without `--kinds`
//! (and every token made before scopes existed: the column is added in place, empty) has the
//! default scope, every kind but `odoo.create`, which creates a record of any model the
//! payload names and so is granted only by name.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

const TOKEN_PREFIX: &str = "pdt_";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("device name {0:?} is not valid: use 1 to 64 letters, digits, '.', '_' or '-'")]
    BadName(String),
    #[error(
        "device {0:?} already has an active token; revoke it first with `plantd token revoke {0}`"
    )]
    Exists(String),
    #[error("no device named {0:?}; `plantd token list` shows the devices")]
    Unknown(String),
    #[error("device {0:?} is already revoked")]
    AlreadyRevoked(String),
    #[error("token store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("no random numbers from the operating system")]
    Random,
    #[error("kind {0:?} is not valid: use 1 to 128 printable characters without ',' or spaces")]
    BadKind(String),
}

/// The kind only an explicit grant lets a device send.
pub const GENERIC_CREATE: &str = "odoo.create";

/// The kinds a device may send.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every kind the plant takes, except `odoo.create`.
    Default,
    /// Exactly these kinds.
    Kinds(std::collections::BTreeSet<String>),
}

impl Scope {
    /// Whether a device with this scope may send `kind`.
    pub fn allows(&self, kind: &str) -> bool {
        match self {
            Scope::Default => kind != GENERIC_CREATE,
            Scope::Kinds(kinds) => kinds.contains(kind),
        }
    }

    /// As `token list` shows it.
    pub fn describe(&self) -> String {
        match self {
            Scope::Default => "default (every kind but odoo.create)".into(),
            Scope::Kinds(k) => k.iter().cloned().collect::<Vec<_>>().join(","),
        }
    }

    /// The stored form: NULL for the default, else the kinds joined by ','.
    fn column(&self) -> Option<String> {
        match self {
            Scope::Default => None,
            Scope::Kinds(k) => Some(k.iter().cloned().collect::<Vec<_>>().join(",")),
        }
    }

    fn from_column(text: Option<String>) -> Scope {
        match text {
            None => Scope::Default,
            Some(t) => Scope::Kinds(
                t.split(',')
                    .filter(|k| !k.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
        }
    }

    /// `--kinds a,b`: `None` is the default scope; each kind is checked for shape (whether the
    /// plant knows it is the caller's check, against its `[apply]`).
    pub fn parse(kinds: Option<&[String]>) -> Result<Scope, TokenError> {
        let Some(kinds) = kinds else {
            return Ok(Scope::Default);
        };
        let mut set = std::collections::BTreeSet::new();
        for k in kinds.iter().flat_map(|k| k.split(',')).map(str::trim) {
            let ok = (1..=128).contains(&k.len())
                && !k
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || c == ',');
            if !ok {
                return Err(TokenError::BadKind(k.to_string()));
            }
            set.insert(k.to_string());
        }
        if set.is_empty() {
            return Err(TokenError::BadKind(String::new()));
        }
        Ok(Scope::Kinds(set))
    }
}

/// A device as listed to an admin; never the token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Device {
    pub name: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    /// Absent in answers from a daemon older than scopes: the default.
    #[serde(default = "default_scope")]
    pub scope: Scope,
    /// What the device did lately (absent from an older daemon's answer: nothing known).
    #[serde(default)]
    pub activity: Activity,
}

/// How many refusals each device's activity keeps, newest last.
pub const RECENT_REFUSALS: usize = 20;
/// Longest refusal message kept (they can quote a device's key).
const REFUSAL_MESSAGE: usize = 300;

/// What a device's requests met: when it was last seen with a valid token, how many
/// transaction posts were accepted and refused, and the latest refusals. Kept in memory while
/// the daemon runs, written to `state.db` every half minute and at shutdown
/// ([`Tokens::flush_activity`]), so that it outlives a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Activity {
    pub last_seen_ms: Option<i64>,
    pub accepted: u64,
    pub refused: u64,
    pub recent_refusals: std::collections::VecDeque<Refusal>,
}

/// One refused request: its status, the error code and message the device got.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    pub at_ms: i64,
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Activity {
    fn refuse(&mut self, status: u16, code: &str, message: &str, at_ms: i64) {
        self.refused += 1;
        if self.recent_refusals.len() == RECENT_REFUSALS {
            self.recent_refusals.pop_front();
        }
        self.recent_refusals.push_back(Refusal {
            at_ms,
            status,
            code: code.to_string(),
            message: message.chars().take(REFUSAL_MESSAGE).collect(),
        });
    }
}

fn default_scope() -> Scope {
    Scope::Default
}

/// What a presented token turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid { device: String },
    Revoked { device: String },
    Unknown,
}

/// The token table and its in-memory copy.
pub struct Tokens {
    conn: Mutex<Connection>,
    by_hash: RwLock<HashMap<[u8; 32], Entry>>,
    /// Per device name (devices with a token only); requests with no or an unknown token
    /// count under [`Tokens::unknown`].
    activity: Mutex<Activities>,
}

#[derive(Default)]
struct Activities {
    devices: HashMap<String, Activity>,
    /// Requests without a token anyone issued: not a device's, one bounded record.
    unknown: Activity,
    /// Changed since the last write to the store.
    dirty: bool,
}

/// A token's row, in memory.
struct Entry {
    device: String,
    revoked: bool,
    scope: Scope,
}

impl Tokens {
    /// Opens `DATA_DIR/state.db`, creating it if needed.
    pub fn open(data_dir: &Path) -> Result<Tokens, TokenError> {
        let conn =
            crate::sqlite::open(&data_dir.join("state.db"), crate::sqlite::Durability::Full)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS device_tokens (
                name         TEXT PRIMARY KEY,
                token_sha256 BLOB NOT NULL UNIQUE,
                created_at   INTEGER NOT NULL,
                revoked_at   INTEGER
             );",
        )?;
        // Scopes came later: a store from before gets the column, empty (the default scope).
        let has_kinds = conn
            .prepare("SELECT 1 FROM pragma_table_info('device_tokens') WHERE name = 'kinds'")?
            .exists([])?;
        if !has_kinds {
            conn.execute_batch("ALTER TABLE device_tokens ADD COLUMN kinds TEXT")?;
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS device_activity (
                name     TEXT PRIMARY KEY,
                activity TEXT NOT NULL
             );",
        )?;
        let mut activities = Activities::default();
        {
            let mut stmt = conn.prepare("SELECT name, activity FROM device_activity")?;
            for row in
                stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            {
                let (name, text) = row?;
                // A row this version cannot read is started afresh, not an error.
                let a: Activity = serde_json::from_str(&text).unwrap_or_default();
                if name.is_empty() {
                    activities.unknown = a;
                } else {
                    activities.devices.insert(name, a);
                }
            }
        }
        let tokens = Tokens {
            conn: Mutex::new(conn),
            by_hash: RwLock::new(HashMap::new()),
            activity: Mutex::new(activities),
        };
        tokens.reload()?;
        Ok(tokens)
    }

    /// A device's transactions were accepted (`count` of them, 0 for a read).
    pub fn seen(&self, device: &str, count: u64) {
        let mut a = self.activity.lock().expect("not poisoned");
        let now = now_ms();
        let entry = match a.devices.get_mut(device) {
            Some(e) => e,
            None => a.devices.entry(device.to_string()).or_default(),
        };
        entry.last_seen_ms = Some(now);
        entry.accepted += count;
        a.dirty = true;
    }

    /// A request was refused: `device` when its token named one (valid or revoked), `None`
    /// for no token or one nobody issued.
    pub fn refused(&self, device: Option<&str>, status: u16, code: &str, message: &str) {
        let mut a = self.activity.lock().expect("not poisoned");
        let now = now_ms();
        let entry = match device {
            // Only devices with a token get a record: the table cannot be grown by names.
            Some(d) => match a.devices.get_mut(d) {
                Some(e) => e,
                None => a.devices.entry(d.to_string()).or_default(),
            },
            None => &mut a.unknown,
        };
        if device.is_some() {
            entry.last_seen_ms = Some(now);
        }
        entry.refuse(status, code, message, now);
        a.dirty = true;
    }

    /// Requests with no token or one nobody issued.
    pub fn unknown_activity(&self) -> Activity {
        self.activity.lock().expect("not poisoned").unknown.clone()
    }

    /// Writes the activity to the store when it changed (the daemon, every half minute and at
    /// shutdown).
    pub fn flush_activity(&self) -> Result<(), TokenError> {
        let rows: Vec<(String, String)> = {
            let mut a = self.activity.lock().expect("not poisoned");
            if !a.dirty {
                return Ok(());
            }
            a.dirty = false;
            let json = |x: &Activity| serde_json::to_string(x).expect("activity serializes");
            a.devices
                .iter()
                .map(|(n, x)| (n.clone(), json(x)))
                .chain(std::iter::once((String::new(), json(&a.unknown))))
                .collect()
        };
        let mut conn = self.conn.lock().expect("not poisoned");
        let tx = conn.transaction()?;
        for (name, text) in rows {
            tx.execute(
                "INSERT INTO device_activity (name, activity) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET activity = excluded.activity",
                params![name, text],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn reload(&self) -> Result<(), TokenError> {
        let conn = self.conn.lock().expect("not poisoned");
        let mut stmt = conn.prepare(
            "SELECT token_sha256, name, revoked_at IS NOT NULL, kinds FROM device_tokens",
        )?;
        let mut map = HashMap::new();
        for row in stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })? {
            let (hash, device, revoked, kinds) = row?;
            if let Ok(h) = <[u8; 32]>::try_from(hash.as_slice()) {
                map.insert(
                    h,
                    Entry {
                        device,
                        revoked,
                        scope: Scope::from_column(kinds),
                    },
                );
            }
        }
        *self.by_hash.write().expect("not poisoned") = map;
        Ok(())
    }

    /// Checks a presented token against the stored hashes.
    pub fn verify(&self, token: &str) -> Verdict {
        self.verify_scoped(token).0
    }

    /// [`Tokens::verify`], and the token's scope when it is valid.
    pub fn verify_scoped(&self, token: &str) -> (Verdict, Option<Scope>) {
        let hash = sha256(token.as_bytes());
        match self.by_hash.read().expect("not poisoned").get(&hash) {
            Some(e) if !e.revoked => (
                Verdict::Valid {
                    device: e.device.clone(),
                },
                Some(e.scope.clone()),
            ),
            Some(e) => (
                Verdict::Revoked {
                    device: e.device.clone(),
                },
                None,
            ),
            None => (Verdict::Unknown, None),
        }
    }

    /// Makes a token for `device` that may send what `scope` says, and returns it; it is
    /// shown once and stored hashed.
    pub fn create(&self, device: &str, scope: &Scope) -> Result<String, TokenError> {
        check_name(device)?;
        let secret = crate::digest::random_secret().map_err(|_| TokenError::Random)?;
        let token = format!("{TOKEN_PREFIX}{secret}");
        {
            let conn = self.conn.lock().expect("not poisoned");
            let active = is_active(&conn, device)?;
            if active == Some(true) {
                return Err(TokenError::Exists(device.to_string()));
            }
            conn.execute(
                "INSERT INTO device_tokens (name, token_sha256, created_at, revoked_at, kinds)
                 VALUES (?1, ?2, ?3, NULL, ?4)
                 ON CONFLICT (name) DO UPDATE SET token_sha256 = excluded.token_sha256,
                     created_at = excluded.created_at, revoked_at = NULL,
                     kinds = excluded.kinds",
                params![
                    device,
                    sha256(token.as_bytes()).to_vec(),
                    now_ms(),
                    scope.column()
                ],
            )?;
        }
        self.reload()?;
        Ok(token)
    }

    /// Revokes a device's token: its requests get 403 from now on.
    pub fn revoke(&self, device: &str) -> Result<(), TokenError> {
        {
            let conn = self.conn.lock().expect("not poisoned");
            let active = is_active(&conn, device)?;
            match active {
                None => return Err(TokenError::Unknown(device.to_string())),
                Some(false) => return Err(TokenError::AlreadyRevoked(device.to_string())),
                Some(true) => {}
            }
            conn.execute(
                "UPDATE device_tokens SET revoked_at = ?2 WHERE name = ?1",
                params![device, now_ms()],
            )?;
        }
        self.reload()
    }

    /// Every device, by name, with its activity.
    pub fn list(&self) -> Result<Vec<Device>, TokenError> {
        let mut devices: Vec<Device> = {
            let conn = self.conn.lock().expect("not poisoned");
            let mut stmt = conn.prepare(
                "SELECT name, created_at, revoked_at, kinds FROM device_tokens ORDER BY name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(Device {
                    name: r.get(0)?,
                    created_at_ms: r.get(1)?,
                    revoked_at_ms: r.get(2)?,
                    scope: Scope::from_column(r.get(3)?),
                    activity: Activity::default(),
                })
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let a = self.activity.lock().expect("not poisoned");
        for d in &mut devices {
            if let Some(x) = a.devices.get(&d.name) {
                d.activity = x.clone();
            }
        }
        Ok(devices)
    }
}

/// `Some(true)` for an active token, `Some(false)` for a revoked one, `None` for no device.
fn is_active(conn: &Connection, device: &str) -> rusqlite::Result<Option<bool>> {
    conn.query_row(
        "SELECT revoked_at IS NULL FROM device_tokens WHERE name = ?1",
        [device],
        |r| r.get(0),
    )
    .optional()
}

fn check_name(name: &str) -> Result<(), TokenError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(TokenError::BadName(name.to_string()))
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_verify_revoke_recreate() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::open(dir.path()).unwrap();
        let tok = t.create("scanner-1", &Scope::Default).unwrap();
        assert!(tok.starts_with("pdt_"));
        assert_eq!(
            t.verify(&tok),
            Verdict::Valid {
                device: "scanner-1".into()
            }
        );
        assert_eq!(t.verify("pdt_nope"), Verdict::Unknown);
        assert!(matches!(
            t.create("scanner-1", &Scope::Default),
            Err(TokenError::Exists(_))
        ));
        t.revoke("scanner-1").unwrap();
        assert_eq!(
            t.verify(&tok),
            Verdict::Revoked {
                device: "scanner-1".into()
            }
        );
        assert!(matches!(
            t.revoke("scanner-1"),
            Err(TokenError::AlreadyRevoked(_))
        ));
        assert!(matches!(t.revoke("ghost"), Err(TokenError::Unknown(_))));
        let tok2 = t.create("scanner-1", &Scope::Default).unwrap();
        assert_eq!(
            t.verify(&tok2),
            Verdict::Valid {
                device: "scanner-1".into()
            }
        );
        assert_eq!(t.verify(&tok), Verdict::Unknown);
        // A second handle (the CLI while no daemon runs) sees the same store.
        let other = Tokens::open(dir.path()).unwrap();
        assert_eq!(other.list().unwrap().len(), 1);
        assert!(matches!(
            t.create("bad name", &Scope::Default),
            Err(TokenError::BadName(_))
        ));
    }

    #[test]
    fn activity_is_counted_bounded_and_kept_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::open(dir.path()).unwrap();
        t.create("scanner-1", &Scope::Default).unwrap();
        t.seen("scanner-1", 20);
        for i in 0..25 {
            t.refused(
                Some("scanner-1"),
                422,
                "invalid_payload",
                &format!("refusal {i} {}", "x".repeat(400)),
            );
        }
        t.refused(None, 401, "unauthorized", "unknown token");
        let d = &t.list().unwrap()[0];
        assert_eq!((d.activity.accepted, d.activity.refused), (20, 25));
        assert!(d.activity.last_seen_ms.is_some());
        assert_eq!(d.activity.recent_refusals.len(), RECENT_REFUSALS);
        assert!(d
            .activity
            .recent_refusals
            .back()
            .unwrap()
            .message
            .starts_with("refusal 24"));
        assert_eq!(d.activity.recent_refusals[0].message.chars().count(), 300);
        // Nothing reaches the store before a flush; after one, a new handle reads it back.
        assert_eq!(
            Tokens::open(dir.path()).unwrap().list().unwrap()[0].activity,
            Activity::default()
        );
        t.flush_activity().unwrap();
        let again = Tokens::open(dir.path()).unwrap();
        assert_eq!(again.list().unwrap()[0].activity, d.activity);
        assert_eq!(again.unknown_activity().refused, 1);
    }

    #[test]
    fn scopes_are_kept_and_an_old_store_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        {
            // A store as plantd wrote it before scopes: no kinds column.
            let conn = Connection::open(dir.path().join("state.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE device_tokens (name TEXT PRIMARY KEY, token_sha256 BLOB NOT NULL UNIQUE,
                 created_at INTEGER NOT NULL, revoked_at INTEGER);",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO device_tokens VALUES ('old', ?1, 1, NULL)",
                [sha256(b"pdt_old").to_vec()],
            )
            .unwrap();
        }
        let t = Tokens::open(dir.path()).unwrap();
        let (verdict, scope) = t.verify_scoped("pdt_old");
        assert_eq!(
            verdict,
            Verdict::Valid {
                device: "old".into()
            }
        );
        assert_eq!(scope, Some(Scope::Default));
        let granted = Scope::parse(Some(&["stock.move,odoo.create".to_string()])).unwrap();
        let tok = t.create("gw", &granted).unwrap();
        let scope = t.verify_scoped(&tok).1.unwrap();
        assert!(scope.allows("odoo.create") && scope.allows("stock.move"));
        assert!(!scope.allows("quality.check"));
        assert!(!Scope::Default.allows("odoo.create"));
        assert!(Scope::Default.allows("stock.move"));
        let listed = Tokens::open(dir.path()).unwrap().list().unwrap();
        assert_eq!(listed[0].scope, granted, "{listed:?}");
        assert_eq!(listed[1].scope, Scope::Default);
        for bad in ["", "a b", ",", "x\ny"] {
            assert!(
                matches!(
                    Scope::parse(Some(&[bad.to_string()])),
                    Err(TokenError::BadKind(_))
                ),
                "{bad:?}"
            );
        }
    }
}
