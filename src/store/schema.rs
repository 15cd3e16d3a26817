//! The inbox database file: opening it, its schema and pragmas, the WAL
//! written ahead, and private file modes.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::StoreError;

pub(super) fn open_connection(path: &PathBuf) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    // Before WAL mode: SQLite creates the -wal and -shm files with the
    // database file's mode, so they are private too.
    make_private(path);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // The store sets NORMAL or FULL before each commit (`Durability`).
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Rows are unique on (ts, id), not on the random id alone: the sender's
    // timestamp is authenticated with the id, so a duplicate always has both,
    // and an index that grows with time takes inserts at its end instead of
    // dirtying a random B-tree page per row (4x more inserts per commit).
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS messages (
             ts       INTEGER NOT NULL,
             id       BLOB NOT NULL,
             purpose  INTEGER NOT NULL,
             topic_id BLOB NOT NULL,
             envelope BLOB NOT NULL,
             UNIQUE (ts, id)
         );
         DROP INDEX IF EXISTS messages_topic_ts;
         CREATE INDEX IF NOT EXISTS messages_topic_ts_id ON messages (topic_id, ts, id);
         CREATE TABLE IF NOT EXISTS client_ids (key BLOB PRIMARY KEY, msg_id BLOB NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS members (
             topic_id BLOB NOT NULL,
             peer     TEXT NOT NULL,
             name     TEXT NOT NULL,
             PRIMARY KEY (topic_id, peer)
         ) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS outbox (
             id         BLOB PRIMARY KEY,
             peer       TEXT NOT NULL,
             ts         INTEGER NOT NULL,
             expires    INTEGER NOT NULL,
             attempts   INTEGER NOT NULL,
             last_error TEXT,
             envelope   BLOB NOT NULL
         );",
    )?;
    // Added after the first release: how each message arrived.
    let has_via: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('messages') WHERE name = 'via'")?
        .exists([])?;
    if !has_via {
        conn.execute_batch("ALTER TABLE messages ADD COLUMN via INTEGER NOT NULL DEFAULT 0")?;
    }
    // Data dirs of earlier versions may hold -wal and -shm files made with the umask.
    for suffix in ["-wal", "-shm"] {
        make_private(&sibling(path, suffix));
    }
    // A WAL that a batch of large messages grew past this is cut back to it
    // when SQLite next restarts the WAL (never below it).
    conn.pragma_update(None, "journal_size_limit", WAL_PREALLOC as i64)?;
    // Under the write lock: no other connection to the file (another tool,
    // another process on the same data dir) may append frames while the
    // zeros go in after what it has read as the end.
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let written = preallocate_wal(&sibling(path, "-wal"));
    conn.execute_batch("ROLLBACK")?;
    if let Err(e) = written {
        tracing::warn!(error = %e, "could not preallocate the inbox WAL; commits will cost more");
    }
    Ok(conn)
}

/// `path` with `suffix` appended to its file name (SQLite's `-wal`, `-shm`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The WAL size written ahead: above the autocheckpoint size (1,000 pages of
/// 4 KiB plus frame headers) with room for a batch of small messages. A batch
/// of large ones may grow it further; `journal_size_limit` cuts it back.
pub const WAL_PREALLOC: u64 = 8 << 20;

/// Extends the WAL with zeros to [`WAL_PREALLOC`] bytes, once per open.
///
/// A commit that appends to a file must also make its new size durable (a
/// file-system journal commit on top of the data flush); one that overwrites
/// blocks the file already has needs the data flush alone. SQLite never
/// truncates the WAL below this size (`journal_size_limit`) and restarts it
/// from the start after each full checkpoint, so once the file is this long
/// every commit overwrites. Measured with 20 processes committing on one
/// disk: an append+fsync took 1.9 ms p50, an overwrite+fsync 0.9 ms
/// (docs/performance.md). The zeros are not valid frames (their salt does
/// not match the header), so recovery stops at them, as it stops at the
/// stale frames SQLite itself leaves after a restart. Zeros are written, not
/// a `set_len` hole: blocks of a hole are allocated at their first write,
/// which costs what an append does.
fn preallocate_wal(wal: &Path) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().write(true).open(wal)?;
    let len = file.metadata()?.len();
    if len >= WAL_PREALLOC {
        return Ok(());
    }
    file.seek(SeekFrom::Start(len))?;
    let zeros = vec![0u8; 1 << 16];
    let mut left = WAL_PREALLOC - len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

/// Sets mode 0600 on `path` if it exists (the data dir is 0700 anyway).
fn make_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}
