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

/// What a user may do. Each role may do what the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees everything, changes nothing.
    Viewer,
    /// Keeps the plant running: restarts services (and closes their breakers), islands and
    /// rejoins, and applies the apply queue's remedies (retry, park, replay).
    Operator,
    /// Everything: users, backups and restores, updates and rollouts, device tokens, config.
    Admin,
}

/// The changes an operator may make, by their audit action name (the hub's remote actions
/// with a `remote.` prefix). Every other change needs an admin, so a new action is an admin's
/// until it is named here.
/// Changes anyone signed in may make, to themselves.
const OWN_ACTIONS: &[&str] = &["totp.enrol", "totp.confirm"];

const OPERATOR_ACTIONS: &[&str] = &[
    "service.restart",
    "service.reset",
    "island",
    "rejoin",
    "apply.retry",
    "apply.park",
    "apply.replay",
    "apply.bulk_park",
    "apply.bulk_replay",
    "remote.restart",
    "remote.island",
    "remote.rejoin",
    "remote.apply_retry",
    "remote.apply_park",
];

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn parse(s: &str) -> Result<Role, StoreError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                StoreError::Invalid(format!("role {s:?}: choose viewer, operator or admin"))
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        }
    }

    /// The least role that may make the change `action` (its audit name).
    pub fn needed_for(action: &str) -> Role {
        if OWN_ACTIONS.contains(&action) {
            Role::Viewer
        } else if OPERATOR_ACTIONS.contains(&action) {
            Role::Operator
        } else {
            Role::Admin
        }
    }

    /// What the role may do, for a refusal's message.
    pub fn scope(self) -> &'static str {
        match self {
            Role::Viewer => "viewers see everything and change nothing",
            Role::Operator => {
                "operators restart services, island and rejoin, and retry, park and replay transactions; the rest is for admins"
            }
            Role::Admin => "admins may do everything",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    #[error("no user {0:?}")]
    NoUser(String),
    /// The change would leave nobody who may act.
    #[error("{0} is the last admin: add another admin first, so that someone can still act")]
    LastAdmin(String),
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
    /// A second connection for the check every signed-in request makes ([`Store::user_state`]):
    /// in WAL mode it reads beside a write, so a request never waits on an audit entry's fsync.
    reader: Mutex<Connection>,
}

/// A user of the admin UI as the users page and `plantd admin list` show them (never the hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRow {
    pub name: String,
    pub role: Role,
    pub created_at: String,
    /// When the password was last set by someone other than at creation; `None` since then.
    pub password_set_at: Option<String>,
    /// Has a second factor.
    pub totp: bool,
}

/// What a session holds against the user store: their role and the count of changes that
/// end sessions (removal, new password, new role, sign-out everywhere). A session made under
/// another epoch, or for a user gone, is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserState {
    pub role: Role,
    pub epoch: i64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
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

/// Which audit entries a page takes: by user, action (or its group: `user` takes
/// `user.add`...), outcome, a text in the detail or target, and a time span (RFC 3339, UTC).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub user: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub text: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

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
        let conn = crate::sqlite::open(&path, crate::sqlite::Durability::Full).map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        migrate_users(&conn).map_err(sql)?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        let reader = crate::sqlite::open_reader(&path, false).map_err(sql)?;
        Ok(Store {
            path,
            conn: Mutex::new(conn),
            reader: Mutex::new(reader),
        })
    }

    /// A user's role and session epoch; `None` for a user who is not (or no longer) there.
    pub fn user_state(&self, name: &str) -> Result<Option<UserState>, StoreError> {
        let conn = self.reader.lock().expect("not poisoned");
        let row: Option<(String, i64)> = conn
            .prepare_cached("SELECT role, epoch FROM users WHERE name = ?1")
            .and_then(|mut st| {
                st.query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(|e| self.sql(e))?;
        row.map(|(role, epoch)| {
            Ok(UserState {
                role: Role::parse(&role)?,
                epoch,
            })
        })
        .transpose()
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let conn = self.conn.lock().expect("not poisoned");
        let mut stmt = conn
            .prepare("SELECT name, role, created_at, password_set_at, totp_secret IS NOT NULL FROM users ORDER BY name")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, role, created_at, password_set_at, totp) = row.map_err(|e| self.sql(e))?;
            out.push(UserRow {
                name,
                role: Role::parse(&role)?,
                created_at,
                password_set_at,
                totp,
            });
        }
        Ok(out)
    }

    /// Runs `change` on `name`'s row in one transaction, refusing an unknown user and a change
    /// that leaves no admin; every change here ends the user's sessions (the epoch moves on).
    fn change_user(
        &self,
        name: &str,
        change: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<()>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.lock().expect("not poisoned");
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        let before: i64 = tx
            .query_row("SELECT count(*) FROM users WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .map_err(|e| self.sql(e))?;
        if before == 0 {
            return Err(StoreError::NoUser(name.to_string()));
        }
        change(&tx).map_err(|e| self.sql(e))?;
        let admins: i64 = tx
            .query_row("SELECT count(*) FROM users WHERE role = 'admin'", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.sql(e))?;
        if admins == 0 {
            // Dropped, not committed: nothing changed.
            return Err(StoreError::LastAdmin(name.to_string()));
        }
        tx.commit().map_err(|e| self.sql(e))
    }

    /// Removes a user (and so ends their sessions); never the last admin.
    pub fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.change_user(name, |tx| {
            tx.execute("DELETE FROM users WHERE name = ?1", [name])
                .map(drop)
        })
    }

    /// Gives a user another role and ends their sessions; never demotes the last admin.
    pub fn set_role(&self, name: &str, role: Role) -> Result<(), StoreError> {
        self.change_user(name, |tx| {
            tx.execute(
                "UPDATE users SET role = ?2, epoch = epoch + 1 WHERE name = ?1",
                params![name, role.as_str()],
            )
            .map(drop)
        })
    }

    /// Sets a user's password and ends their sessions.
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), StoreError> {
        check_password(password)?;
        let hash = hash_password(password)?;
        self.change_user(name, |tx| {
            tx.execute(
                "UPDATE users SET hash = ?2, password_set_at = ?3, epoch = epoch + 1 WHERE name = ?1",
                params![name, hash, now()],
            )
            .map(drop)
        })
    }

    /// Ends every session of a user, wherever it was opened.
    pub fn end_sessions(&self, name: &str) -> Result<(), StoreError> {
        self.change_user(name, |tx| {
            tx.execute("UPDATE users SET epoch = epoch + 1 WHERE name = ?1", [name])
                .map(drop)
        })
    }

    /// The writing connection, for the second factor's rows (`super::totp`).
    pub(super) fn writer(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("not poisoned")
    }

    pub(super) fn sql(&self, source: rusqlite::Error) -> StoreError {
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
        // The epoch starts at the time in microseconds: a user removed and added again under
        // the same name never finds the sessions of before valid again.
        let epoch = jiff::Timestamp::now().as_microsecond();
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO users (name, role, hash, created_at, epoch) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![name, role.as_str(), hash, now(), epoch],
            )
            .map_err(|e| self.sql(e))?;
        if inserted == 0 {
            return Err(StoreError::Exists(name.to_string()));
        }
        tx.commit().map_err(|e| self.sql(e))
    }

    /// The user's role and session epoch when the password is right; `None` for an unknown
    /// user or a wrong password (hashing a dummy for unknown users, so that timing does not
    /// tell them apart).
    pub fn check(&self, name: &str, password: &str) -> Result<Option<UserState>, StoreError> {
        let row: Option<(String, String, i64)> = {
            let conn = self.conn.lock().expect("not poisoned");
            conn.query_row(
                "SELECT role, hash, epoch FROM users WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))?
        };
        let (role, hash, epoch) = match row {
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
        Ok(Some(UserState {
            role: Role::parse(&role)?,
            epoch,
        }))
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

    /// A page of the audit log, newest first: the entries `filter` takes below id `before`
    /// (from the newest when `None`), at most `limit`; with each entry's id, to page on.
    pub fn audit_page(
        &self,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<(i64, AuditEntry)>, StoreError> {
        // A connection of its own: a long read never holds up the sessions' check.
        let conn = crate::sqlite::open_reader(&self.path, true).map_err(|e| self.sql(e))?;
        let like = |t: &Option<String>| t.as_ref().map(|t| format!("%{}%", escape_like(t)));
        let mut stmt = conn
            .prepare(
                "SELECT id, at, user, action, target, outcome, detail FROM audit
                 WHERE id < ?1
                   AND (?2 IS NULL OR user = ?2)
                   AND (?3 IS NULL OR action = ?3 OR action LIKE ?9 || '.%' ESCAPE '\\')
                   AND (?4 IS NULL OR outcome = ?4)
                   AND (?5 IS NULL OR detail LIKE ?5 ESCAPE '\\' OR target LIKE ?5 ESCAPE '\\')
                   AND (?6 IS NULL OR at >= ?6)
                   AND (?7 IS NULL OR at < ?7)
                 ORDER BY id DESC LIMIT ?8",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(
                params![
                    before.unwrap_or(i64::MAX),
                    filter.user,
                    filter.action,
                    filter.outcome,
                    like(&filter.text),
                    filter.since,
                    filter.until,
                    limit,
                    filter.action.as_deref().map(escape_like)
                ],
                |r| {
                    Ok((
                        r.get(0)?,
                        AuditEntry {
                            at: r.get(1)?,
                            user: r.get(2)?,
                            action: r.get(3)?,
                            target: r.get(4)?,
                            outcome: r.get(5)?,
                            detail: r.get(6)?,
                        },
                    ))
                },
            )
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }
}

/// `text` for a LIKE pattern with `ESCAPE '\\'`: its `%` and `_` match themselves only.
fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Adds the columns a store made before users could be changed lacks.
/// Brings the users table of an older version up to this one's, under SQLite's write lock:
/// the daemon and `plantd admin` beside it may open the file at once.
fn migrate_users(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match migrate_users_locked(conn) {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn migrate_users_locked(conn: &Connection) -> rusqlite::Result<()> {
    let has: std::collections::HashSet<String> = conn
        .prepare("SELECT name FROM pragma_table_info('users')")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    if !has.contains("epoch") {
        conn.execute_batch("ALTER TABLE users ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0")?;
    }
    if !has.contains("password_set_at") {
        conn.execute_batch("ALTER TABLE users ADD COLUMN password_set_at TEXT")?;
    }
    // The second factor (`super::totp`): the active secret, one being enrolled, the last time
    // step a code was taken at (a code works once), and the unused recovery codes' hashes.
    for (column, kind) in [
        ("totp_secret", "TEXT"),
        ("totp_pending", "TEXT"),
        ("totp_step", "INTEGER"),
        ("totp_recovery", "TEXT"),
        ("totp_failures", "INTEGER NOT NULL DEFAULT 0"),
        ("totp_locked_until", "INTEGER"),
    ] {
        if !has.contains(column) {
            conn.execute_batch(&format!("ALTER TABLE users ADD COLUMN {column} {kind}"))?;
        }
    }
    // Before the operator role, the role's CHECK took admin and viewer only. SQLite cannot
    // change a CHECK in place: the table is copied into one with the new CHECK, within the
    // migration's transaction (a crash leaves the old table whole).
    let sql: String = conn.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'users'",
        [],
        |r| r.get(0),
    )?;
    if !sql.contains("'operator'") {
        conn.execute_batch(
            "CREATE TABLE users_new (
                 name TEXT PRIMARY KEY,
                 role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
                 hash TEXT NOT NULL,
                 created_at TEXT NOT NULL,
                 epoch INTEGER NOT NULL DEFAULT 0,
                 password_set_at TEXT,
                 totp_secret TEXT,
                 totp_pending TEXT,
                 totp_step INTEGER,
                 totp_recovery TEXT,
                 totp_failures INTEGER NOT NULL DEFAULT 0,
                 totp_locked_until INTEGER
             );
             INSERT INTO users_new (name, role, hash, created_at, epoch, password_set_at,
                     totp_secret, totp_pending, totp_step, totp_recovery, totp_failures,
                     totp_locked_until)
                 SELECT name, role, hash, created_at, epoch, password_set_at,
                     totp_secret, totp_pending, totp_step, totp_recovery, totp_failures,
                     totp_locked_until FROM users;
             DROP TABLE users;
             ALTER TABLE users_new RENAME TO users;",
        )?;
    }
    Ok(())
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
    fn an_admin_db_from_before_operators_takes_them_and_keeps_its_users() {
        let dir = tempfile::tempdir().unwrap();
        {
            // The users table as the versions before operators made it, with one admin.
            let conn = Connection::open(dir.path().join("admin.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE users (name TEXT PRIMARY KEY,
                     role TEXT NOT NULL CHECK (role IN ('admin', 'viewer')),
                     hash TEXT NOT NULL, created_at TEXT NOT NULL,
                     epoch INTEGER NOT NULL DEFAULT 0, password_set_at TEXT);",
            )
            .unwrap();
            conn.execute(
                "INSERT INTO users (name, role, hash, created_at, epoch) VALUES ('ana', 'admin', ?1, '2026-01-01T00:00:00Z', 3)",
                [hash_password("correct horse").unwrap()],
            )
            .unwrap();
            assert!(conn
                .execute("INSERT INTO users (name, role, hash, created_at) VALUES ('x', 'operator', 'h', 'now')", [])
                .is_err());
        }
        let store = Store::open(dir.path()).unwrap();
        let ana = store.check("ana", "correct horse").unwrap().unwrap();
        assert_eq!((ana.role, ana.epoch), (Role::Admin, 3));
        store
            .add("ola", Role::Operator, "0123456789", false)
            .unwrap();
        assert_eq!(
            store.user_state("ola").unwrap().map(|s| s.role),
            Some(Role::Operator)
        );
        // Opened again, nothing is copied twice and both are there.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.user_count().unwrap(), 2);
    }

    #[test]
    fn operators_keep_the_plant_running_and_everything_else_is_for_admins() {
        for a in [
            "service.restart",
            "island",
            "rejoin",
            "apply.park",
            "apply.bulk_replay",
            "remote.apply_retry",
        ] {
            assert_eq!(Role::needed_for(a), Role::Operator, "{a}");
        }
        // Backups, restores, users, tokens, rollouts, and anything not named yet.
        for a in [
            "backup.run",
            "backup.restore",
            "user.add",
            "user.role",
            "token.revoke",
            "rollout.start",
            "remote.backup",
            "remote.diagnostics",
            "something.new",
        ] {
            assert_eq!(Role::needed_for(a), Role::Admin, "{a}");
        }
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()).unwrap(), r);
        }
        assert!(Role::parse("root")
            .unwrap_err()
            .to_string()
            .contains("viewer, operator or admin"));
    }

    #[test]
    fn a_user_signs_in_with_the_right_password_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .add("ana", Role::Admin, "correct horse", true)
            .unwrap();
        assert_eq!(
            store.check("ana", "correct horse").unwrap().map(|s| s.role),
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
            store.check("bob", "0123456789").unwrap().map(|s| s.role),
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
    fn users_change_but_never_leave_no_admin() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .add("ana", Role::Admin, "correct horse", true)
            .unwrap();
        store
            .add("vic", Role::Viewer, "viewer pass 1", false)
            .unwrap();
        let ana = store.user_state("ana").unwrap().unwrap();
        // The last admin can be neither removed nor demoted, and the refusal changes nothing.
        assert!(matches!(store.remove("ana"), Err(StoreError::LastAdmin(_))));
        assert!(matches!(
            store.set_role("ana", Role::Viewer),
            Err(StoreError::LastAdmin(_))
        ));
        assert_eq!(store.user_state("ana").unwrap(), Some(ana));
        assert!(matches!(store.remove("bob"), Err(StoreError::NoUser(_))));
        // Each change moves the epoch on: sessions made before are over.
        let vic0 = store.user_state("vic").unwrap().unwrap().epoch;
        store.set_role("vic", Role::Admin).unwrap();
        let vic = store.user_state("vic").unwrap().unwrap();
        assert_eq!((vic.role, vic.epoch), (Role::Admin, vic0 + 1));
        store.set_password("vic", "a new password").unwrap();
        assert_eq!(store.check("vic", "viewer pass 1").unwrap(), None);
        assert_eq!(
            store
                .check("vic", "a new password")
                .unwrap()
                .map(|s| s.epoch),
            Some(vic0 + 2)
        );
        assert!(store.set_password("vic", "short").is_err());
        store.end_sessions("ana").unwrap();
        assert_eq!(
            store.user_state("ana").unwrap().unwrap().epoch,
            ana.epoch + 1
        );
        // With a second admin, the first may go; added again, her old sessions stay over.
        store.remove("ana").unwrap();
        assert_eq!(store.user_state("ana").unwrap(), None);
        store
            .add("ana", Role::Admin, "correct horse", false)
            .unwrap();
        assert!(store.user_state("ana").unwrap().unwrap().epoch > ana.epoch + 1);
        store.remove("ana").unwrap();
        let names: Vec<_> = store.users().unwrap().into_iter().map(|u| u.name).collect();
        assert_eq!(names, ["vic"]);
        assert!(store.users().unwrap()[0].password_set_at.is_some());
    }

    #[test]
    fn a_store_from_before_user_changes_gains_its_columns() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("admin.db")).unwrap();
        conn.execute_batch(
            "CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL, created_at TEXT NOT NULL);",
        )
        .unwrap();
        let hash = hash_password("correct horse").unwrap();
        conn.execute(
            "INSERT INTO users VALUES ('ana', 'admin', ?1, '2026-01-01T00:00:00Z')",
            [hash],
        )
        .unwrap();
        drop(conn);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.check("ana", "correct horse").unwrap(),
            Some(UserState {
                role: Role::Admin,
                epoch: 0
            })
        );
        assert_eq!(store.users().unwrap()[0].password_set_at, None);
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
        let log = store.audit_page(&AuditFilter::default(), None, 10).unwrap();
        assert_eq!(
            log.iter()
                .map(|(_, e)| e.action.as_str())
                .collect::<Vec<_>>(),
            ["rejoin", "island"]
        );
        for i in 0..30 {
            store
                .audit(&AuditEntry {
                    at: now(),
                    user: if i % 3 == 0 { "cli (uid 0)" } else { "ana" }.into(),
                    action: if i % 2 == 0 { "user.add" } else { "apply.park" }.into(),
                    target: Some(format!("seq {i}")),
                    outcome: "ok".into(),
                    detail: format!("100% done_{i}"),
                })
                .unwrap();
        }
        let all = AuditFilter::default();
        let first = store.audit_page(&all, None, 10).unwrap();
        assert_eq!(first.len(), 10);
        let next = store.audit_page(&all, Some(first[9].0), 100).unwrap();
        assert_eq!(next.len(), 22, "the rest, island and rejoin included");
        assert!(next[0].0 < first[9].0);
        let ana_parks = AuditFilter {
            user: Some("ana".into()),
            action: Some("apply".into()),
            ..Default::default()
        };
        let rows = store.audit_page(&ana_parks, None, 100).unwrap();
        assert!(rows
            .iter()
            .all(|(_, e)| e.user == "ana" && e.action == "apply.park"));
        assert_eq!(rows.len(), 10);
        // A text is a text: % and _ match themselves only.
        let text = |t: &str| AuditFilter {
            text: Some(t.into()),
            ..Default::default()
        };
        assert_eq!(
            store.audit_page(&text("done_2"), None, 100).unwrap().len(),
            11
        );
        assert_eq!(store.audit_page(&text("1%0"), None, 100).unwrap().len(), 0);
        assert_eq!(
            store.audit_page(&text("0% d"), None, 100).unwrap().len(),
            30
        );
        assert_eq!(
            store.audit_page(&text("seq 29"), None, 100).unwrap().len(),
            1
        );
    }
}
