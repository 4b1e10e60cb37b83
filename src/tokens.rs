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
        let conn = Connection::open(data_dir.join("state.db"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
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
        let tokens = Tokens {
            conn: Mutex::new(conn),
            by_hash: RwLock::new(HashMap::new()),
        };
        tokens.reload()?;
        Ok(tokens)
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

    /// Every device, by name.
    pub fn list(&self) -> Result<Vec<Device>, TokenError> {
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
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
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
