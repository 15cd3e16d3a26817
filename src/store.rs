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
         CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    )?;
    // Data dirs of earlier versions may hold -wal and -shm files made with the umask.
    for suffix in ["-wal", "-shm"] {
        let mut sibling = path.clone().into_os_string();
        sibling.push(suffix);
        make_private(std::path::Path::new(&sibling));
    }
    Ok(conn)
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
                    "INSERT OR IGNORE INTO messages (ts, id, purpose, topic_id, envelope) VALUES (?1, ?2, ?3, ?4, ?5)",
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
                        &m.envelope
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
        let mut sql = String::from("SELECT id, purpose, ts, envelope FROM messages WHERE ts >= ?1");
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
            Ok((id, purpose, r.get::<_, i64>(2)?, r.get::<_, Vec<u8>>(3)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, purpose, ts, envelope) = row?;
            let (Ok(id), Some(purpose)) = (<[u8; 32]>::try_from(id), Purpose::from_byte(purpose)) else {
                tracing::warn!("skipping a malformed inbox row");
                continue;
            };
            out.push(StoredMessage {
                id,
                purpose,
                ts: ts as u64,
                envelope,
            });
        }
        out.reverse();
        Ok(out)
    }
}
