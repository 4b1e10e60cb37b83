//! The journal's SQLite schema and the pragmas every connection gets.
//!
//! Migrations are numbered by `PRAGMA user_version`; each runs once, in its own transaction.

use rusqlite::Connection;

/// Migrations in order; index + 1 is the `user_version` after it ran.
const MIGRATIONS: &[&str] = &[
    // 1: the journal itself, its sequence counter and its cursors.
    "CREATE TABLE transactions (
        seq         INTEGER PRIMARY KEY,
        key         TEXT    NOT NULL UNIQUE,
        device      TEXT    NOT NULL,
        kind        TEXT    NOT NULL,
        payload     TEXT    NOT NULL,
        occurred_at TEXT,
        received_at INTEGER NOT NULL
     );
     CREATE TABLE sequence (id INTEGER PRIMARY KEY CHECK (id = 1), last_seq INTEGER NOT NULL);
     INSERT INTO sequence (id, last_seq) VALUES (1, 0);
     CREATE TABLE cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
     INSERT INTO cursors (name, seq) VALUES ('hub_acked', 0), ('applied', 0);",
    // 2: a random id, so the hub can tell this journal from a replacement.
    "CREATE TABLE identity (id INTEGER PRIMARY KEY CHECK (id = 1), journal_id TEXT NOT NULL);
     INSERT INTO identity (id, journal_id) VALUES (1, lower(hex(randomblob(16))));",
];

/// Pragmas for every connection: WAL, fsync on every commit, a bounded WAL file.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    if tables == 0 {
        // Only takes effect before the first table exists; lets pruning give pages back.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // After a checkpoint resets the WAL, it is truncated to this size.
    conn.pragma_update(None, "journal_size_limit", 4 * 1024 * 1024)?;
    Ok(())
}

/// Brings a fresh or older database to the current schema.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
