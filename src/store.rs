//! The inbox: an SQLite database in the data dir, run on its own thread behind
//! a cloneable [`Store`] handle. It holds sealed envelopes only (message bodies
//! never touch the disk in plaintext) and commits inserts in groups: every
//! write that arrives while a commit is running joins the next one, and a
//! message is reported (its event sent) only after its commit is durable
//! (WAL, `synchronous=FULL`).

use std::path::{Path, PathBuf};
use std::thread;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::envelope::Purpose;
use crate::event::Event;
use crate::metrics::Metrics;

/// File name of the inbox database inside the data dir.
pub const INBOX_FILE: &str = "inbox.sqlite3";
/// Requests that may wait for the store thread; senders wait when it is full.
pub const STORE_QUEUE: usize = 4096;
/// Most requests committed in one transaction.
const MAX_BATCH: usize = 1024;

/// Failures of the inbox database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error (disk full, I/O error, corrupt file…).
    #[error("inbox database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store thread has stopped.
    #[error("inbox database is closed")]
    Closed,
}

/// (ts, id) of the messages a node holds of a topic, oldest first.
pub type HeldIds = Vec<(u64, [u8; 32])>;

/// How a stored message reached this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Via {
    /// Written by this node (its own publish or sent DM).
    #[default]
    Local = 0,
    /// Live gossip.
    Gossip = 1,
    /// Catch-up from a peer (`/murmur/sync/1`).
    Sync = 2,
    /// A direct message over `/murmur/dm/1`.
    Direct = 3,
}

impl Via {
    /// The name in events and inbox items.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Gossip => "gossip",
            Self::Sync => "sync",
            Self::Direct => "direct",
        }
    }

    fn from_byte(b: u8) -> Self {
        match b {
            1 => Self::Gossip,
            2 => Self::Sync,
            3 => Self::Direct,
            _ => Self::Local,
        }
    }
}

/// What a sync page read found: envelopes not in the asker's set, and where to go on.
#[derive(Debug, Clone, Default)]
pub struct SyncPage {
    /// Sealed envelopes, in (ts, id) order.
    pub envelopes: Vec<Vec<u8>>,
    /// The last position examined.
    pub next: crate::network::sync::Cursor,
    /// Whether the page stopped before the end of the window.
    pub more: bool,
}

/// What a peer catching up asks for: one page of a topic after a cursor.
#[derive(Debug, Clone)]
pub struct PageQuery {
    /// The topic.
    pub topic_id: [u8; 32],
    /// Our retention window.
    pub retention: Retention,
    /// Unix ms now.
    pub now: u64,
    /// The asker's window start (unix ms).
    pub since: u64,
    /// Only messages after this position.
    pub after: crate::network::sync::Cursor,
    /// Short ids the asker holds: left out.
    pub have: std::collections::HashSet<[u8; crate::network::sync::SHORT_ID_LEN]>,
}

/// Which of a topic's messages a sync exchange covers.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Messages older than this (by sender timestamp) are not exchanged.
    pub max_age_ms: u64,
    /// Only the newest this many messages per topic are exchanged.
    pub max_messages: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            max_age_ms: 7 * 24 * 60 * 60 * 1000,
            max_messages: 10_000,
        }
    }
}

/// A direct message in the outbox: sealed end to end for its recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Message id.
    pub id: [u8; 32],
    /// Recipient peer id.
    pub peer: String,
    /// Unix ms when it was written (the envelope's timestamp).
    pub ts: u64,
    /// Unix ms after which it fails.
    pub expires: u64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The `Direct` envelope.
    pub envelope: Vec<u8>,
}

/// One stored message, still sealed.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// The message id (envelope salt).
    pub id: [u8; 32],
    /// Topic message or direct-message record.
    pub purpose: Purpose,
    /// Sender timestamp, unix ms.
    pub ts: u64,
    /// The sealed envelope bytes.
    pub envelope: Vec<u8>,
    /// How it arrived.
    pub via: Via,
}

/// What to read from the inbox.
#[derive(Debug, Clone, Default)]
pub struct InboxQuery {
    /// Only messages of these topic ids (`None`: every message, direct ones included).
    pub topics: Option<Vec<[u8; 32]>>,
    /// Only messages with a sender timestamp at or after this (unix ms).
    pub since: Option<u64>,
    /// At most this many, the most recent ones (returned oldest first).
    pub limit: usize,
}

/// A message to insert, with what to do once it is durable.
pub struct Insert {
    /// The message id (dedup key: a second insert of the same id is ignored).
    pub id: [u8; 32],
    /// What the envelope is for.
    pub purpose: Purpose,
    /// Topic id (all zero for direct messages).
    pub topic_id: [u8; 32],
    /// Sender timestamp, unix ms.
    pub ts: u64,
    /// Sealed envelope bytes.
    pub envelope: Vec<u8>,
    /// How it arrived.
    pub via: Via,
    /// Our own next sequence number to persist with this message, if it is ours.
    pub own_seq: Option<u64>,
    /// For an idempotent publish: the key of its client id (see `Node::publish_idempotent`).
    pub client_key: Option<[u8; 32]>,
    /// Sent to the event stream after the commit, if the message was new.
    pub event: Option<Event>,
    /// Told after the commit whether the message was new (`Ok(true)`) or a duplicate.
    pub done: Option<oneshot::Sender<Result<bool, String>>>,
}

enum Request {
    Insert(Box<Insert>),
    Query {
        query: InboxQuery,
        reply: oneshot::Sender<Result<Vec<StoredMessage>, StoreError>>,
    },
    NextSeq {
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Count {
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    ClientId {
        key: [u8; 32],
        reply: oneshot::Sender<Result<Option<[u8; 32]>, StoreError>>,
    },
    SyncHave {
        topic_id: [u8; 32],
        retention: Retention,
        now: u64,
        reply: oneshot::Sender<Result<(u64, HeldIds), StoreError>>,
    },
    SyncPage {
        query: PageQuery,
        reply: oneshot::Sender<Result<SyncPage, StoreError>>,
    },
    OutboxPut {
        row: OutboxRow,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    OutboxDelete {
        id: [u8; 32],
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    OutboxLoad {
        reply: oneshot::Sender<Result<Vec<OutboxRow>, StoreError>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// A handle to the inbox thread. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    requests: mpsc::Sender<Request>,
    metrics: Metrics,
}

impl Store {
    /// Opens (or creates) the inbox in `dir` and starts its thread. Events of
    /// committed messages go to `events`.
    ///
    /// # Errors
    /// When the database cannot be opened or its schema created.
    pub fn open(dir: &Path, events: broadcast::Sender<Event>) -> Result<Self, StoreError> {
        Self::open_with_metrics(dir, events, Metrics::default())
    }

    /// As [`Store::open`], counting into `metrics` (delivered messages, inbox
    /// size, queue depth, errors).
    ///
    /// # Errors
    /// When the database cannot be opened or its schema created.
    pub fn open_with_metrics(
        dir: &Path,
        events: broadcast::Sender<Event>,
        metrics: Metrics,
    ) -> Result<Self, StoreError> {
        let path = dir.join(INBOX_FILE);
        let conn = open_connection(&path)?;
        let count: i64 = conn.query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))?;
        metrics.inbox_messages.set(count);
        let (requests, rx) = mpsc::channel(STORE_QUEUE);
        let thread_metrics = metrics.clone();
        thread::Builder::new()
            .name("murmur-store".into())
            .spawn(move || {
                StoreThread {
                    conn,
                    events,
                    path,
                    metrics: thread_metrics,
                }
                .run(rx)
            })
            .expect("spawning the store thread");
        Ok(Self { requests, metrics })
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(make(tx)).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues an insert; its event and `done` follow its commit.
    ///
    /// # Errors
    /// [`StoreError::Closed`] when the store thread has stopped.
    pub async fn insert(&self, insert: Insert) -> Result<(), StoreError> {
        self.requests
            .send(Request::Insert(Box::new(insert)))
            .await
            .map_err(|_| StoreError::Closed)?;
        self.metrics
            .store_queue
            .set((STORE_QUEUE - self.requests.capacity()) as i64);
        Ok(())
    }

    /// Reads sealed messages.
    ///
    /// # Errors
    /// When the query fails or the store is closed.
    pub async fn query(&self, query: InboxQuery) -> Result<Vec<StoredMessage>, StoreError> {
        self.request(|reply| Request::Query { query, reply }).await
    }

    /// The next sequence number for our own messages (persisted across restarts).
    ///
    /// # Errors
    /// When the read fails or the store is closed.
    pub async fn next_seq(&self) -> Result<u64, StoreError> {
        self.request(|reply| Request::NextSeq { reply }).await
    }

    /// The message id an idempotent publish with this client key already got, if any.
    ///
    /// # Errors
    /// When the read fails or the store is closed.
    pub async fn client_id(&self, key: [u8; 32]) -> Result<Option<[u8; 32]>, StoreError> {
        self.request(|reply| Request::ClientId { key, reply }).await
    }

    /// The start of a topic's retention window (unix ms) and the (ts, id) of
    /// every message in it, oldest first.
    ///
    /// # Errors
    /// When the read fails or the store is closed.
    pub async fn sync_have(
        &self,
        topic_id: [u8; 32],
        retention: Retention,
        now: u64,
    ) -> Result<(u64, HeldIds), StoreError> {
        self.request(|reply| Request::SyncHave {
            topic_id,
            retention,
            now,
            reply,
        })
        .await
    }

    /// One page of a topic's envelopes after the query's cursor, within the
    /// retention window and at or after its `since`, leaving out those whose
    /// short id is in its `have` set.
    ///
    /// # Errors
    /// When the read fails or the store is closed.
    pub async fn sync_page(&self, query: PageQuery) -> Result<SyncPage, StoreError> {
        self.request(|reply| Request::SyncPage { query, reply }).await
    }

    /// Writes (or rewrites) an outbox entry durably.
    ///
    /// # Errors
    /// When the write fails or the store is closed.
    pub async fn outbox_put(&self, row: OutboxRow) -> Result<(), StoreError> {
        self.request(|reply| Request::OutboxPut { row, reply }).await
    }

    /// Removes an outbox entry (delivered or given up).
    ///
    /// # Errors
    /// When the write fails or the store is closed.
    pub async fn outbox_delete(&self, id: [u8; 32]) -> Result<(), StoreError> {
        self.request(|reply| Request::OutboxDelete { id, reply }).await
    }

    /// Every outbox entry, oldest first.
    ///
    /// # Errors
    /// When the read fails or the store is closed.
    pub async fn outbox_load(&self) -> Result<Vec<OutboxRow>, StoreError> {
        self.request(|reply| Request::OutboxLoad { reply }).await
    }

    /// How many messages the inbox holds.
    ///
    /// # Errors
    /// When the read fails or the store is closed.
    pub async fn count(&self) -> Result<u64, StoreError> {
        self.request(|reply| Request::Count { reply }).await
    }

    /// Commits what is queued and stops the thread.
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.requests.send(Request::Close { reply }).await.is_ok() {
            let _ = done.await;
        }
    }
}

fn open_connection(path: &PathBuf) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    // Before WAL mode: SQLite creates the -wal and -shm files with the
    // database file's mode, so they are private too.
    make_private(path);
    conn.pragma_update(None, "journal_mode", "WAL")?;
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
         CREATE INDEX IF NOT EXISTS messages_topic_ts ON messages (topic_id, ts);
         CREATE TABLE IF NOT EXISTS client_ids (key BLOB PRIMARY KEY, msg_id BLOB NOT NULL) WITHOUT ROWID;
         CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
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
fn make_private(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

struct StoreThread {
    conn: Connection,
    events: broadcast::Sender<Event>,
    path: PathBuf,
    metrics: Metrics,
}

impl StoreThread {
    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        tracing::debug!(path = %self.path.display(), "inbox open");
        let mut batch: Vec<Insert> = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Insert(insert) => batch.push(*insert),
                    other => {
                        self.commit(&mut batch);
                        if let Request::Close { reply } = other {
                            let _ = reply.send(());
                            tracing::debug!("inbox closed");
                            return;
                        }
                        self.answer(other);
                    }
                }
                if batch.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.commit(&mut batch);
        }
    }

    fn answer(&mut self, request: Request) {
        match request {
            Request::Query { query, reply } => {
                let _ = reply.send(self.query(&query));
            }
            Request::NextSeq { reply } => {
                let seq = self
                    .conn
                    .query_row("SELECT value FROM meta WHERE key = 'seq'", [], |r| r.get::<_, i64>(0))
                    .optional()
                    .map(|v| v.map_or(0, |v| v as u64))
                    .map_err(StoreError::from);
                let _ = reply.send(seq);
            }
            Request::Count { reply } => {
                let n = self
                    .conn
                    .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get::<_, i64>(0))
                    .map(|n| n as u64)
                    .map_err(StoreError::from);
                let _ = reply.send(n);
            }
            Request::ClientId { key, reply } => {
                let id = self
                    .conn
                    .query_row("SELECT msg_id FROM client_ids WHERE key = ?1", [&key[..]], |r| {
                        r.get::<_, Vec<u8>>(0)
                    })
                    .optional()
                    .map(|v| v.and_then(|v| <[u8; 32]>::try_from(v).ok()))
                    .map_err(StoreError::from);
                let _ = reply.send(id);
            }
            Request::SyncHave {
                topic_id,
                retention,
                now,
                reply,
            } => {
                let _ = reply.send(self.sync_have(&topic_id, retention, now));
            }
            Request::SyncPage { query, reply } => {
                let _ = reply.send(self.sync_page(&query));
            }
            Request::OutboxPut { row, reply } => {
                let result = self
                    .conn
                    .prepare_cached(
                        "INSERT OR REPLACE INTO outbox (id, peer, ts, expires, attempts, last_error, envelope)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            &row.id[..],
                            row.peer,
                            row.ts as i64,
                            row.expires as i64,
                            row.attempts,
                            row.last_error,
                            row.envelope
                        ])
                    })
                    .map(drop)
                    .map_err(StoreError::from);
                let _ = reply.send(result);
            }
            Request::OutboxDelete { id, reply } => {
                let result = self
                    .conn
                    .execute("DELETE FROM outbox WHERE id = ?1", [&id[..]])
                    .map(drop)
                    .map_err(StoreError::from);
                let _ = reply.send(result);
            }
            Request::OutboxLoad { reply } => {
                let _ = reply.send(self.outbox_load());
            }
            Request::Insert(_) | Request::Close { .. } => unreachable!("handled by run"),
        }
    }

    /// Writes the batch in one transaction, then reports each message.
    fn commit(&mut self, batch: &mut Vec<Insert>) {
        if batch.is_empty() {
            return;
        }
        let result = (|| -> Result<Vec<bool>, rusqlite::Error> {
            let tx = self.conn.transaction()?;
            let mut fresh = Vec::with_capacity(batch.len());
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO messages (ts, id, purpose, topic_id, envelope, via) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                let mut client = tx.prepare_cached("INSERT OR IGNORE INTO client_ids (key, msg_id) VALUES (?1, ?2)")?;
                let mut seq = tx.prepare_cached(
                    "INSERT INTO meta (key, value) VALUES ('seq', ?1)
                     ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)",
                )?;
                for m in batch.iter() {
                    let n = insert.execute(params![
                        m.ts as i64,
                        &m.id[..],
                        m.purpose as u8,
                        &m.topic_id[..],
                        &m.envelope,
                        m.via as u8
                    ])?;
                    if let Some(s) = m.own_seq {
                        seq.execute(params![s as i64])?;
                    }
                    if let Some(key) = m.client_key {
                        client.execute(params![&key[..], &m.id[..]])?;
                    }
                    fresh.push(n == 1);
                }
            }
            tx.commit()?;
            Ok(fresh)
        })();
        match result {
            Ok(fresh) => {
                self.metrics.store_queue.set(0);
                for (m, is_new) in batch.drain(..).zip(fresh) {
                    if is_new {
                        self.metrics.inbox_messages.inc();
                        match &m.event {
                            Some(Event::Message { .. }) => self.metrics.delivered.inc(),
                            Some(Event::Dm { .. }) => {
                                self.metrics.delivered.inc();
                                self.metrics.dms_received.inc()
                            }
                            Some(Event::DmSent { .. }) => self.metrics.dms_sent.inc(),
                            _ => 0,
                        };
                        if let Some(event) = m.event {
                            let _ = self.events.send(event);
                        }
                    }
                    if let Some(done) = m.done {
                        let _ = done.send(Ok(is_new));
                    }
                }
            }
            Err(e) => {
                self.metrics.store_errors.inc_by(batch.len() as u64);
                let error = format!("could not store {} message(s) in the inbox: {e}", batch.len());
                tracing::error!("{error}");
                let _ = self.events.send(Event::Error { error: error.clone() });
                for m in batch.drain(..) {
                    if let Some(done) = m.done {
                        let _ = done.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    fn query(&self, q: &InboxQuery) -> Result<Vec<StoredMessage>, StoreError> {
        let mut sql = String::from("SELECT id, purpose, ts, envelope, via FROM messages WHERE ts >= ?1");
        if let Some(topics) = &q.topics {
            if topics.is_empty() {
                return Ok(Vec::new());
            }
            sql.push_str(" AND topic_id IN (");
            sql.push_str(&vec!["?"; topics.len()].join(","));
            sql.push(')');
        }
        sql.push_str(" ORDER BY ts DESC, rowid DESC LIMIT ");
        sql.push_str(&q.limit.to_string());
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut values: Vec<rusqlite::types::Value> = vec![(q.since.unwrap_or(0) as i64).into()];
        for t in q.topics.iter().flatten() {
            values.push(t.to_vec().into());
        }
        let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
            let id: Vec<u8> = r.get(0)?;
            let purpose: u8 = r.get(1)?;
            Ok((
                id,
                purpose,
                r.get::<_, i64>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                r.get::<_, u8>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, purpose, ts, envelope, via) = row?;
            let (Ok(id), Some(purpose)) = (<[u8; 32]>::try_from(id), Purpose::from_byte(purpose)) else {
                tracing::warn!("skipping a malformed inbox row");
                continue;
            };
            out.push(StoredMessage {
                id,
                purpose,
                ts: ts as u64,
                envelope,
                via: Via::from_byte(via),
            });
        }
        out.reverse();
        Ok(out)
    }

    fn outbox_load(&self) -> Result<Vec<OutboxRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, peer, ts, expires, attempts, last_error, envelope FROM outbox ORDER BY ts, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                OutboxRow {
                    id: [0; 32],
                    peer: r.get(1)?,
                    ts: r.get::<_, i64>(2)? as u64,
                    expires: r.get::<_, i64>(3)? as u64,
                    attempts: r.get(4)?,
                    last_error: r.get(5)?,
                    envelope: r.get(6)?,
                },
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, row) = row?;
            if let Ok(id) = <[u8; 32]>::try_from(id) {
                out.push(OutboxRow { id, ..row });
            }
        }
        Ok(out)
    }

    /// The oldest sender timestamp a sync exchange of this topic covers:
    /// inside the age limit, and no older than the topic's `max_messages`-th newest message.
    fn window_start(&self, topic_id: &[u8; 32], retention: Retention, now: u64) -> Result<u64, StoreError> {
        let by_age = now.saturating_sub(retention.max_age_ms);
        let nth: Option<i64> = self
            .conn
            .prepare_cached("SELECT ts FROM messages WHERE topic_id = ?1 ORDER BY ts DESC LIMIT 1 OFFSET ?2")?
            .query_row(
                params![&topic_id[..], retention.max_messages.saturating_sub(1) as i64],
                |r| r.get(0),
            )
            .optional()?;
        Ok(by_age.max(nth.map_or(0, |t| t as u64)))
    }

    fn sync_have(&self, topic_id: &[u8; 32], retention: Retention, now: u64) -> Result<(u64, HeldIds), StoreError> {
        let start = self.window_start(topic_id, retention, now)?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT ts, id FROM messages WHERE topic_id = ?1 AND ts >= ?2 ORDER BY ts, id LIMIT ?3")?;
        let rows = stmt.query_map(
            params![&topic_id[..], start as i64, retention.max_messages as i64],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (ts, id) = row?;
            if let Ok(id) = <[u8; 32]>::try_from(id) {
                out.push((ts as u64, id));
            }
        }
        Ok((start, out))
    }

    fn sync_page(&self, q: &PageQuery) -> Result<SyncPage, StoreError> {
        use crate::network::sync::{short_id, Cursor, MAX_PAGE_ENVELOPES, PAGE_BYTES};
        let (topic_id, after, have) = (&q.topic_id, q.after, &q.have);
        let start = self.window_start(topic_id, q.retention, q.now)?.max(q.since);
        let mut stmt = self.conn.prepare_cached(
            "SELECT ts, id, envelope FROM messages
             WHERE topic_id = ?1 AND ts >= ?2 AND (ts > ?3 OR (ts = ?3 AND id > ?4))
             ORDER BY ts, id",
        )?;
        let mut rows = stmt.query(params![&topic_id[..], start as i64, after.ts as i64, &after.id[..]])?;
        let mut page = SyncPage {
            next: after,
            ..SyncPage::default()
        };
        let mut bytes = 0;
        while let Some(row) = rows.next()? {
            if page.envelopes.len() >= MAX_PAGE_ENVELOPES || bytes >= PAGE_BYTES {
                page.more = true;
                break;
            }
            let ts = row.get::<_, i64>(0)? as u64;
            let Ok(id) = <[u8; 32]>::try_from(row.get::<_, Vec<u8>>(1)?) else {
                continue;
            };
            page.next = Cursor { ts, id };
            if !have.contains(&short_id(&id)) {
                let envelope: Vec<u8> = row.get(2)?;
                bytes += envelope.len();
                page.envelopes.push(envelope);
            }
        }
        Ok(page)
    }
}
