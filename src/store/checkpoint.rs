//! Checkpoints of the inbox's WAL on a thread of their own, so that a
//! commit does not wait for one.
//!
//! SQLite checkpoints by itself inside the commit that brings the WAL to
//! 1,000 pages: it copies the WAL's pages back into the database file and
//! fsyncs both, which on a shared disk takes tens of milliseconds, while
//! every message behind that commit waits to be reported. The store nudges
//! a [`Checkpointer`] after about half as much work, and its thread, with a
//! connection of its own, runs passive checkpoints (which neither block the
//! writer nor wait for it) while the store goes on committing, until a pass
//! finds every frame copied; the writer then starts the WAL over, so
//! SQLite's own threshold is not reached. It stays as the backstop: when a
//! burst outruns the thread (or a reader's snapshot keeps a checkpoint from
//! finishing), the commit that reaches 1,000 pages checkpoints in place as
//! before.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;
use crate::metrics::Metrics;

/// WAL pages written between two nudges (estimated by
/// [`Checkpointer::wrote`]): half of SQLite's automatic threshold, so that
/// the thread's checkpoint is done before a commit reaches that. (Nudges at
/// 1,000 pages with SQLite's threshold raised to 1,800 left the 1 → 5
/// star's p99 at 500 msg/s at 24–38 ms; at 500 pages it is 6–8 ms.)
const PAGES_PER_CHECKPOINT: u64 = 500;

/// Runs passive checkpoints of one database on its own thread.
pub(super) struct Checkpointer {
    /// A nudge asks for one checkpoint; one already asked for is enough.
    nudge: Option<mpsc::SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    /// WAL pages written (estimated) since the last nudge.
    pages: u64,
}

impl Checkpointer {
    /// Opens a second connection to the database at `path` and starts the thread.
    ///
    /// # Errors
    /// When the database cannot be opened.
    ///
    /// # Panics
    /// When the thread cannot be spawned (as for the store's own thread).
    pub(super) fn start(path: &Path, metrics: Metrics) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        let (nudge, nudged) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("murmur-checkpoint".into())
            .spawn(move || {
                while nudged.recv().is_ok() {
                    checkpoint(&conn, &metrics);
                }
            })
            .expect("spawning the checkpoint thread");
        Ok(Self {
            nudge: Some(nudge),
            thread: Some(thread),
            pages: 0,
        })
    }

    /// Counts a commit of `rows` rows holding `bytes` bytes of envelopes;
    /// asks for a checkpoint once about [`PAGES_PER_CHECKPOINT`] pages have
    /// gone into the WAL since the last request. Never blocks.
    pub(super) fn wrote(&mut self, rows: usize, bytes: usize) {
        // A 4 KiB page per 4 KiB of data, a leaf of each of the two indexes
        // per row, and the pages every commit rewrites.
        self.pages += 1 + 2 * rows as u64 + (bytes as u64).div_ceil(4096);
        if self.pages >= PAGES_PER_CHECKPOINT {
            self.pages = 0;
            if let Some(nudge) = &self.nudge {
                // Full: a checkpoint is asked for already and will cover this.
                let _ = nudge.try_send(());
            }
        }
    }
}

impl Drop for Checkpointer {
    /// Lets a checkpoint under way finish, then closes the thread's connection.
    fn drop(&mut self) {
        self.nudge.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Passes of [`checkpoint`] at most per nudge: each copies what the writer
/// appended during the one before, a few frames when messages stream in.
const MAX_PASSES: usize = 4;

/// Passive checkpoints until a pass finds nothing new in the WAL (or
/// [`MAX_PASSES`] were run): each copies what it can without waiting for
/// the writer, who starts the WAL over at its next commit once all of it is
/// in the database file. One pass is not enough under a steady stream: it
/// copies the frames that were there when it began, a commit that lands
/// while it waits for its fsyncs leaves new ones behind, the WAL is not
/// started over, and it grows until SQLite checkpoints inside a commit.
fn checkpoint(conn: &Connection, metrics: &Metrics) {
    let started = Instant::now();
    let passes = until_all_copied(|| passive_checkpoint(conn));
    match passes {
        Ok(passes) => {
            metrics.inbox_checkpoints.inc();
            tracing::debug!(passes, took = ?started.elapsed(), "inbox checkpoint");
        }
        // The next nudge tries again; meanwhile the WAL grows.
        Err(e) => tracing::warn!("inbox checkpoint failed: {e}"),
    }
}

/// One passive checkpoint: the frames in the WAL when it began, and how
/// many of them are in the database file now.
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?)))
}

/// Runs `pass` until it reports the same frames as the pass before, all
/// copied (none came in since), or [`MAX_PASSES`] times. Returns the passes run.
fn until_all_copied(mut pass: impl FnMut() -> rusqlite::Result<(i64, i64)>) -> rusqlite::Result<usize> {
    let mut before = None;
    for n in 1..=MAX_PASSES {
        let (frames, copied) = pass()?;
        if copied >= frames && before == Some(frames) {
            return Ok(n);
        }
        before = Some(frames);
    }
    Ok(MAX_PASSES)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAL database at `path` with a table, as the store opens it.
    fn writer(path: &Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
        conn.execute_batch("CREATE TABLE t (x BLOB)").unwrap();
        conn
    }

    fn commit(conn: &Connection) {
        conn.execute("INSERT INTO t (x) VALUES (zeroblob(500))", []).unwrap();
    }

    #[test]
    fn a_commit_during_a_pass_is_copied_too_so_the_wal_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.sqlite3");
        let writer = writer(&path);
        for _ in 0..50 {
            commit(&writer);
        }
        let checkpointer = Connection::open(&path).unwrap();
        // A message that lands while the first pass waits for its fsyncs:
        // its transaction begins before that pass and commits after it.
        let mut first = true;
        let passes = until_all_copied(|| {
            let late = std::mem::take(&mut first);
            if late {
                writer.execute_batch("BEGIN IMMEDIATE").unwrap();
                commit(&writer);
            }
            let result = passive_checkpoint(&checkpointer);
            if late {
                writer.execute_batch("COMMIT").unwrap();
            }
            result
        })
        .unwrap();
        assert_eq!(
            passes, 3,
            "the pass that copied the late frame, then one that found nothing new"
        );
        // Every frame is in the database file, so the next commit starts the
        // WAL over: it holds that commit's frames alone.
        commit(&writer);
        let (frames, copied) = passive_checkpoint(&checkpointer).unwrap();
        assert!(
            frames <= 3,
            "the WAL was not started over: {frames} frames ({copied} copied)"
        );
    }

    #[test]
    fn passes_stop_at_the_limit_when_commits_keep_landing() {
        let mut frames = 0;
        let passes = until_all_copied(|| {
            frames += 10;
            Ok((frames, frames))
        })
        .unwrap();
        assert_eq!(passes, MAX_PASSES);
    }
}
