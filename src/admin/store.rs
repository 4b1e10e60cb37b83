//! `DATA_DIR/admin.db`: the admin UI's users (argon2id password hashes) and its audit log.
//!
//! SQLite in WAL mode, so that `plantd admin add` can add a user while the daemon runs. Every
//! call blocks (a hash takes tens of milliseconds, a write an fsync): async callers go through
//! `spawn_blocking`. A user name is 1 to 32 of `a-z 0-9 . _ -`; a password at least 10 bytes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 10;
/// Longest password, in characters.
pub const MAX_PASSWORD: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees everything and may act.
    Admin,
    /// Sees everything, changes nothing.
    Viewer,
}

impl Role {
    pub fn parse(s: &str) -> Result<Role, StoreError> {
        match s {
            "admin" => Ok(Role::Admin),
            "viewer" => Ok(Role::Viewer),
            other => Err(StoreError::Invalid(format!(
                "role {other:?}: choose admin or viewer"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: String,
    pub user: String,
    pub action: String,
    pub target: Option<String>,
    /// `ok`, `refused` or `failed`.
    pub outcome: String,
    pub detail: String,
}

impl crate::control::Audit for Store {
    fn record(
        &self,
        user: &str,
        action: &str,
        target: Option<String>,
        outcome: &str,
        detail: String,
    ) -> anyhow::Result<()> {
        let entry = AuditEntry {
            at: now(),
            user: user.to_string(),
            action: action.to_string(),
            target,
            outcome: outcome.to_string(),
            detail,
        };
        Ok(self.audit(&entry)?)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Invalid(String),
    #[error("user {0:?} already exists")]
    Exists(String),
    #[error("admin database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("hashing the password: {0}")]
    Hash(String),
}

/// Why a stored password hash cannot be checked.
#[derive(Debug, thiserror::Error)]
pub enum HashCheckError {
    /// Not a PHC string.
    #[error(transparent)]
    Phc(#[from] argon2::password_hash::phc::Error),
    /// Parameters Argon2 does not take.
    #[error(transparent)]
    Params(#[from] argon2::password_hash::Error),
    #[error("algorithm {0} is not argon2id")]
    Algorithm(String),
    #[error("no salt or no hash")]
    Incomplete,
    /// Hashing the password to compare failed.
    #[error(transparent)]
    Hash(Box<StoreError>),
}

/// The users and the audit log.
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
    hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_history (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    condition TEXT NOT NULL,
    subject TEXT NOT NULL,
    tier TEXT NOT NULL,
    event TEXT NOT NULL,
    message TEXT NOT NULL
);
";

/// Keeps the alert history to this many lines.
const ALERT_HISTORY_KEEP: i64 = 10_000;

/// A line of the plant's alert history, as the admin API shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertLine {
    pub id: i64,
    pub at: String,
    pub condition: String,
    pub subject: String,
    pub tier: String,
    pub event: String,
    pub message: String,
}

/// Keeps the audit log to this many entries.
const AUDIT_KEEP: i64 = 100_000;
/// Of which at most this many refused sign-ins.
const SIGN_IN_FAILURES_KEEP: i64 = 1_000;

impl Store {
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join("admin.db");
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "wal")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "full")
            .map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        Ok(Store {
            path,
            conn: Mutex::new(conn),
        })
    }

    fn sql(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The open alerts as last kept (none when never kept, or kept by a version that wrote
    /// them otherwise).
    pub fn alert_state(&self) -> Result<crate::alerts::Alerts, StoreError> {
        let conn = self.conn.lock().expect("not poisoned");
        let text: Option<String> = conn
            .query_row("SELECT state FROM alert_state WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.sql(e))?;
        Ok(text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }

    /// Keeps the open alerts and appends `history`, at once.
    pub fn save_alerts(
        &self,
        state: &crate::alerts::Alerts,
        history: &[crate::alerts::Event],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.lock().expect("not poisoned");
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        let json = serde_json::to_string(state).expect("alerts serialize");
        tx.execute(
            "INSERT INTO alert_state (id, state) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state",
            params![json],
        )
        .map_err(|e| self.sql(e))?;
        for e in history {
            tx.execute(
                "INSERT INTO alert_history (at, condition, subject, tier, event, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    e.at.to_string(),
                    e.when.as_str(),
                    e.subject,
                    e.tier.as_str(),
                    e.event,
                    e.message
                ],
            )
            .map_err(|e| self.sql(e))?;
        }
        if !history.is_empty() {
            tx.execute(
                "DELETE FROM alert_history WHERE id <= (SELECT max(id) FROM alert_history) - ?1",
                params![ALERT_HISTORY_KEEP],
            )
            .map_err(|e| self.sql(e))?;
        }
        tx.commit().map_err(|e| self.sql(e))
    }

    /// The newest `limit` lines of alert history, newest first.
    pub fn alert_history(&self, limit: i64) -> Result<Vec<AlertLine>, StoreError> {
        let conn = self.conn.lock().expect("not poisoned");
        let mut stmt = conn
            .prepare(
                "SELECT id, at, condition, subject, tier, event, message FROM alert_history
                 ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![limit], |r| {
                Ok(AlertLine {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    condition: r.get(2)?,
                    subject: r.get(3)?,
                    tier: r.get(4)?,
                    event: r.get(5)?,
                    message: r.get(6)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    pub fn user_count(&self) -> Result<u64, StoreError> {
        let conn = self.conn.lock().expect("not poisoned");
        conn.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.sql(e))
    }

    /// Adds a user; `only_if_none` makes it the first-run setup (refused once any user exists).
    pub fn add(
        &self,
        name: &str,
        role: Role,
        password: &str,
        only_if_none: bool,
    ) -> Result<(), StoreError> {
        check_name(name)?;
        check_password(password)?;
        let hash = hash_password(password)?;
        let mut conn = self.conn.lock().expect("not poisoned");
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        if only_if_none {
            let n: i64 = tx
                .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
                .map_err(|e| self.sql(e))?;
            if n > 0 {
                return Err(StoreError::Exists("(an admin was already set up)".into()));
            }
        }
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO users (name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, role.as_str(), hash, now()],
            )
            .map_err(|e| self.sql(e))?;
        if inserted == 0 {
            return Err(StoreError::Exists(name.to_string()));
        }
        tx.commit().map_err(|e| self.sql(e))
    }

    /// The user's role when the password is right; `None` for an unknown user or a wrong
    /// password (hashing a dummy for unknown users, so that timing does not tell them apart).
    pub fn check(&self, name: &str, password: &str) -> Result<Option<Role>, StoreError> {
        let row: Option<(String, String)> = {
            let conn = self.conn.lock().expect("not poisoned");
            conn.query_row(
                "SELECT role, hash FROM users WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?
        };
        let (role, hash) = match row {
            Some(r) => r,
            None => {
                let _ = hash_password(password);
                return Ok(None);
            }
        };
        if !password_matches(password, &hash)
            .map_err(|e| StoreError::Hash(format!("stored hash of {name:?}: {e}")))?
        {
            return Ok(None);
        }
        Role::parse(&role).map(Some)
    }

    pub fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let conn = self.conn.lock().expect("not poisoned");
        conn.execute(
            "INSERT INTO audit (at, user, action, target, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![entry.at, entry.user, entry.action, entry.target, entry.outcome, entry.detail],
        )
        .map_err(|e| self.sql(e))?;
        // Refused sign-ins, which anyone can cause, are kept apart: they can never push the
        // record of what admins did out of the log.
        conn.execute(
            "DELETE FROM audit WHERE action = 'sign_in' AND outcome != 'ok' AND id NOT IN \
             (SELECT id FROM audit WHERE action = 'sign_in' AND outcome != 'ok' ORDER BY id DESC LIMIT ?1)",
            [SIGN_IN_FAILURES_KEEP],
        )
        .map_err(|e| self.sql(e))?;
        conn.execute(
            "DELETE FROM audit WHERE id <= (SELECT max(id) FROM audit) - ?1",
            [AUDIT_KEEP],
        )
        .map_err(|e| self.sql(e))?;
        Ok(())
    }

    /// The newest `limit` entries, newest first.
    pub fn audit_log(&self, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        let conn = self.conn.lock().expect("not poisoned");
        let mut stmt = conn
            .prepare("SELECT at, user, action, target, outcome, detail FROM audit ORDER BY id DESC LIMIT ?1")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([limit], |r| {
                Ok(AuditEntry {
                    at: r.get(0)?,
                    user: r.get(1)?,
                    action: r.get(2)?,
                    target: r.get(3)?,
                    outcome: r.get(4)?,
                    detail: r.get(5)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }
}

/// Argon2id with its recommended parameters (19 MiB, two passes, one lane), as a PHC string.
fn hash_password(password: &str) -> Result<String, StoreError> {
    let hash_err = |e: &dyn std::fmt::Display| StoreError::Hash(e.to_string());
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| StoreError::Hash("no random numbers from the operating system".into()))?;
    let params = Params::default();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2id(&params, password.as_bytes(), &salt, &mut out)?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| hash_err(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| hash_err(&e))?),
        hash: Some(Output::new(&out).map_err(|e| hash_err(&e))?),
    };
    Ok(phc.to_string())
}

/// Whether `password` hashes to the stored PHC string (compared in constant time).
fn password_matches(password: &str, stored: &str) -> Result<bool, HashCheckError> {
    let phc = PasswordHash::new(stored)?;
    if phc.algorithm != argon2::ARGON2ID_IDENT {
        return Err(HashCheckError::Algorithm(phc.algorithm.to_string()));
    }
    let params = Params::try_from(&phc)?;
    let (Some(salt), Some(expected)) = (&phc.salt, &phc.hash) else {
        return Err(HashCheckError::Incomplete);
    };
    let mut out = vec![0u8; expected.len()];
    argon2id(&params, password.as_bytes(), salt.as_ref(), &mut out)
        .map_err(|e| HashCheckError::Hash(Box::new(e)))?;
    Ok(crate::admin::auth::same(&out, expected.as_bytes()))
}

/// Runs Argon2id in working memory mapped for this one hash and unmapped after. Through
/// malloc, glibc keeps a freed block this large in each thread's arena: every sign-in on
/// another worker thread would add 19 MiB to the daemon for good.
fn argon2id(
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), StoreError> {
    use rustix::mm::{mmap_anonymous, munmap, MapFlags, ProtFlags};
    let count = params.block_count();
    let len = count * std::mem::size_of::<Block>();
    /// Unmaps on every way out, a panic in the hash included.
    struct Mapping(*mut std::ffi::c_void, usize);
    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: the mapping was made by mmap_anonymous with this length and nothing
            // refers to it any more (the slice below does not outlive the Mapping).
            let _ = unsafe { munmap(self.0, self.1) };
        }
    }
    // SAFETY: a fresh private anonymous mapping of `len` bytes, zero-filled and page-aligned
    // (Block needs 64); all-zero bytes are a valid Block (plain u64 words); `count` > 0 since
    // argon2's Params need at least 8 blocks.
    let mapping = unsafe {
        mmap_anonymous(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::PRIVATE,
        )
        .map(|ptr| Mapping(ptr, len))
        .map_err(|e| StoreError::Hash(format!("mapping {len} bytes for argon2: {e}")))?
    };
    // SAFETY: see above; the slice is dropped before `mapping`.
    let blocks = unsafe { std::slice::from_raw_parts_mut(mapping.0.cast::<Block>(), count) };
    let hashed = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, salt, out, blocks);
    drop(mapping);
    hashed.map_err(|e| StoreError::Hash(e.to_string()))
}

pub fn check_name(name: &str) -> Result<(), StoreError> {
    let ok = (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "user name {name:?}: use 1 to 32 of a-z, 0-9, '.', '_' and '-'"
        )))
    }
}

pub fn check_password(password: &str) -> Result<(), StoreError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD {
        return Err(StoreError::Invalid(format!(
            "the password is {} characters; use at least {MIN_PASSWORD}",
            chars
        )));
    }
    if chars > MAX_PASSWORD {
        return Err(StoreError::Invalid(format!(
            "the password is {chars} characters; use at most {MAX_PASSWORD}"
        )));
    }
    Ok(())
}

/// Now, RFC 3339 in UTC to the second.
pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_signs_in_with_the_right_password_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .add("ana", Role::Admin, "correct horse", true)
            .unwrap();
        assert_eq!(
            store.check("ana", "correct horse").unwrap(),
            Some(Role::Admin)
        );
        assert_eq!(store.check("ana", "correct hors").unwrap(), None);
        assert_eq!(store.check("bob", "correct horse").unwrap(), None);
        // The first-run path refuses once anyone exists; a second name is fine otherwise.
        assert!(matches!(
            store.add("bob", Role::Admin, "0123456789", true),
            Err(StoreError::Exists(_))
        ));
        store.add("bob", Role::Viewer, "0123456789", false).unwrap();
        assert!(matches!(
            store.add("bob", Role::Admin, "0123456789", false),
            Err(StoreError::Exists(_))
        ));
        assert_eq!(
            store.check("bob", "0123456789").unwrap(),
            Some(Role::Viewer)
        );
        let stored: String = store
            .conn
            .lock()
            .unwrap()
            .query_row("SELECT hash FROM users WHERE name='ana'", [], |r| r.get(0))
            .unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        // A hash made by the argon2 crate's own hasher checks out the same way.
        use argon2::password_hash::PasswordHasher;
        let theirs = Argon2::default()
            .hash_password(b"their password")
            .unwrap()
            .to_string();
        assert!(password_matches("their password", &theirs).unwrap());
        assert!(!password_matches("their passwore", &theirs).unwrap());
        assert!(password_matches("x", "not a hash").is_err());
    }

    #[test]
    fn names_and_passwords_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for bad in ["", "Ana", "a b", "ana/..", &"x".repeat(33)] {
            assert!(
                store.add(bad, Role::Admin, "0123456789", false).is_err(),
                "{bad:?}"
            );
        }
        let e = store.add("ana", Role::Admin, "short", false).unwrap_err();
        assert!(e.to_string().contains("at least 10"), "{e}");
        assert_eq!(store.user_count().unwrap(), 0);
    }

    #[test]
    fn the_audit_log_reads_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for action in ["island", "rejoin"] {
            store
                .audit(&AuditEntry {
                    at: now(),
                    user: "ana".into(),
                    action: action.into(),
                    target: None,
                    outcome: "ok".into(),
                    detail: "planned WAN work".into(),
                })
                .unwrap();
        }
        let log = store.audit_log(10).unwrap();
        assert_eq!(
            log.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
            ["rejoin", "island"]
        );
    }
}
