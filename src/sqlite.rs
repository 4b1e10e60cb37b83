//! How plantd opens its SQLite files (`state.db`, `journal.db`, `admin.db`, `metrics.db`): WAL,
//! a 5 s wait for a busy lock rather than an instant `SQLITE_BUSY`, and the durability each
//! file needs, said where it is opened.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How long a connection waits for another's lock before it gives up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// What a commit promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync'd at every commit: what is committed survives a power cut (the journal, tokens,
    /// users and the audit log).
    Full,
    /// fsync'd at checkpoints: a power cut may lose the last commits, never corrupt the file
    /// (the metrics history).
    Normal,
}

/// A read-write connection to `path` (created when missing), in WAL mode.
pub fn open(path: &Path, durability: Durability) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    configure(&conn, durability)?;
    Ok(conn)
}

/// Sets WAL, the busy timeout and `durability` on a connection that is open already.
pub fn configure(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let synchronous = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", synchronous)
}

/// A second connection beside the writer's, for reads that must not wait behind it (WAL lets
/// them run during a write); `read_only` when it never writes.
pub fn open_reader(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let conn = if read_only {
        Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?
    } else {
        Connection::open(path)?
    };
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_gets_wal_and_the_durability_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        for (durability, level) in [(Durability::Full, 2), (Durability::Normal, 1)] {
            let path = dir.path().join(format!("{durability:?}.db"));
            let conn = open(&path, durability).unwrap();
            let mode: String = conn
                .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                .unwrap();
            let sync: i64 = conn
                .query_row("PRAGMA synchronous", [], |r| r.get(0))
                .unwrap();
            assert_eq!((mode.as_str(), sync), ("wal", level));
            conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1)")
                .unwrap();
            let reader = open_reader(&path, true).unwrap();
            let n: i64 = reader
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 1);
            assert!(reader.execute("INSERT INTO t VALUES (2)", []).is_err());
        }
    }
}
