//! Checkpoints of the inbox's WAL on a thread of their own, so that a
//! commit does not wait for one.
//!
//! SQLite checkpoints by itself inside the commit that brings the WAL to
//! 1,000 pages: it copies the WAL's pages back into the database file and
//! fsyncs both, which on a shared disk takes tens of milliseconds, while
//! every message behind that commit waits to be reported. The store nudges
//! a [`Checkpointer`] after about half as much work, and its thread, with a
//! connection of its own, runs a passive checkpoint (which neither blocks
//! the writer nor waits for it) while the store goes on committing; the
//! writer then starts the WAL over, so SQLite's own threshold is not
//! reached. It stays as the backstop: when a burst outruns the thread (or a
//! reader's snapshot keeps a checkpoint from finishing), the commit that
//! reaches 1,000 pages checkpoints in place as before.

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
        // A 4 KiB page of the table per 4 KiB of data, and a leaf of each of
        // the two indexes per 40 rows (their entries are about 100 bytes, in
        // (ts, id) order, so a group's rows share leaves): one message alone
        // writes three frames, as `strace` shows.
        self.pages += (bytes as u64).div_ceil(4096).max(1) + 2 * (rows as u64).div_ceil(40);
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

/// One passive checkpoint: copies what it can of the WAL into the database
/// file without waiting for the writer; the writer starts the WAL over once
/// all of it was copied. A commit that lands while the pass waits for its
/// fsyncs leaves frames behind, so under a steady stream the WAL often
/// reaches SQLite's own threshold anyway. Repeating the pass until every
/// frame is copied was tried: its extra fsyncs cost more near saturation
/// than the checkpoints in a commit they spared (docs/performance.md,
/// "fourth sitting").
fn checkpoint(conn: &Connection, metrics: &Metrics) {
    let started = Instant::now();
    let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    });
    match result {
        Ok((frames, copied)) => {
            metrics.inbox_checkpoints.inc();
            tracing::debug!(frames, copied, took = ?started.elapsed(), "inbox checkpoint");
        }
        // The next nudge tries again; meanwhile the WAL grows.
        Err(e) => tracing::warn!("inbox checkpoint failed: {e}"),
    }
}
