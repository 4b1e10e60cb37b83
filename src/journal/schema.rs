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
    // 3: keys are scoped per device: the same key from two devices is two transactions, so
    // that no device can take (or find out about) another's. SQLite cannot drop a column's
    // UNIQUE, so the table is rebuilt, once (the journal holds what is not yet pruned).
    "CREATE TABLE transactions_v3 (
        seq         INTEGER PRIMARY KEY,
        key         TEXT    NOT NULL,
        device      TEXT    NOT NULL,
        kind        TEXT    NOT NULL,
        payload     TEXT    NOT NULL,
        occurred_at TEXT,
        received_at INTEGER NOT NULL,
        UNIQUE (device, key)
     );
     INSERT INTO transactions_v3 (seq, key, device, kind, payload, occurred_at, received_at)
        SELECT seq, key, device, kind, payload, occurred_at, received_at FROM transactions;
     DROP TABLE transactions;
     ALTER TABLE transactions_v3 RENAME TO transactions;",
];

/// Pragmas for every connection: WAL, fsync on every commit, a bounded WAL file.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
    if tables == 0 {
        // Only takes effect before the first table exists; lets pruning give pages back.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
    crate::sqlite::configure(conn, crate::sqlite::Durability::Full)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_from_before_per_device_keys_keeps_its_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn.execute(
            "INSERT INTO transactions (seq, key, device, kind, payload, received_at)
             VALUES (7, 'k', 'a', 'scan', '{}', 1)",
            [],
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let kept: (i64, String) = conn
            .query_row(
                "SELECT seq, device FROM transactions WHERE key = 'k'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(kept, (7, "a".to_string()));
        // Another device may use the key; the same device may not twice.
        let insert = "INSERT INTO transactions (seq, key, device, kind, payload, received_at)
                      VALUES (?1, 'k', ?2, 'scan', '{}', 1)";
        conn.execute(insert, rusqlite::params![8, "b"]).unwrap();
        assert!(conn.execute(insert, rusqlite::params![9, "a"]).is_err());
    }
}
