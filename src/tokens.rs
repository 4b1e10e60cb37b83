//! Device tokens: who may post transactions.
//!
//! A token is 32 random bytes shown once (`pdt_` + base64url); only its SHA-256 is stored, in
//! `DATA_DIR/state.db`. A fast hash is right here because the token itself is full-entropy: there
//! is nothing to guess that a slow hash would protect, and every request checks one.
//! The daemon keeps the table in memory; it changes only through [`Tokens`], whether called by
//! the daemon (over the control socket) or by the CLI when no daemon runs.

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
}

/// A device as listed to an admin; never the token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Device {
    pub name: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
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
    by_hash: RwLock<HashMap<[u8; 32], (String, bool)>>,
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
        let tokens = Tokens {
            conn: Mutex::new(conn),
            by_hash: RwLock::new(HashMap::new()),
        };
        tokens.reload()?;
        Ok(tokens)
    }

    fn reload(&self) -> Result<(), TokenError> {
        let conn = self.conn.lock().expect("not poisoned");
        let mut stmt =
            conn.prepare("SELECT token_sha256, name, revoked_at IS NOT NULL FROM device_tokens")?;
        let mut map = HashMap::new();
        for row in stmt.query_map([], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?, r.get(2)?))
        })? {
            let (hash, name, revoked) = row?;
            if let Ok(h) = <[u8; 32]>::try_from(hash.as_slice()) {
                map.insert(h, (name, revoked));
            }
        }
        *self.by_hash.write().expect("not poisoned") = map;
        Ok(())
    }

    /// Checks a presented token against the stored hashes.
    pub fn verify(&self, token: &str) -> Verdict {
        let hash = sha256(token.as_bytes());
        match self.by_hash.read().expect("not poisoned").get(&hash) {
            Some((device, false)) => Verdict::Valid {
                device: device.clone(),
            },
            Some((device, true)) => Verdict::Revoked {
                device: device.clone(),
            },
            None => Verdict::Unknown,
        }
    }

    /// Makes a token for `device` and returns it; it is shown once and stored hashed.
    pub fn create(&self, device: &str) -> Result<String, TokenError> {
        check_name(device)?;
        let secret = crate::pki::random_secret().map_err(|_| TokenError::Random)?;
        let token = format!("{TOKEN_PREFIX}{secret}");
        {
            let conn = self.conn.lock().expect("not poisoned");
            let active = is_active(&conn, device)?;
            if active == Some(true) {
                return Err(TokenError::Exists(device.to_string()));
            }
            conn.execute(
                "INSERT INTO device_tokens (name, token_sha256, created_at, revoked_at)
                 VALUES (?1, ?2, ?3, NULL)
                 ON CONFLICT (name) DO UPDATE SET token_sha256 = excluded.token_sha256,
                     created_at = excluded.created_at, revoked_at = NULL",
                params![device, sha256(token.as_bytes()).to_vec(), now_ms()],
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
        let mut stmt =
            conn.prepare("SELECT name, created_at, revoked_at FROM device_tokens ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok(Device {
                name: r.get(0)?,
                created_at_ms: r.get(1)?,
                revoked_at_ms: r.get(2)?,
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
        let tok = t.create("scanner-1").unwrap();
        assert!(tok.starts_with("pdt_"));
        assert_eq!(
            t.verify(&tok),
            Verdict::Valid {
                device: "scanner-1".into()
            }
        );
        assert_eq!(t.verify("pdt_nope"), Verdict::Unknown);
        assert!(matches!(t.create("scanner-1"), Err(TokenError::Exists(_))));
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
        let tok2 = t.create("scanner-1").unwrap();
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
        assert!(matches!(t.create("bad name"), Err(TokenError::BadName(_))));
    }
}
