//! The inbox: an SQLite database in the data dir, run by one task (or thread)
//! behind a cloneable [`Store`] handle. It holds sealed envelopes only (message bodies
//! never touch the disk in plaintext) and commits inserts in groups: every
//! write that arrives while a commit is running joins the next one, and a
//! message is reported (its event sent) only after its commit. How durable a
//! commit is depends on what it holds ([`Durability`]).

mod checkpoint;
mod history;
mod intake;
mod read;
mod schema;
mod thread;

use std::path::Path;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot};

use crate::envelope::Purpose;
use crate::event::Event;
use crate::metrics::Metrics;

pub use history::{short_id, Cursor, PageQuery, SyncPage, MAX_PAGE_ENVELOPES, PAGE_BYTES, SHORT_ID_LEN};
pub use intake::INTAKE_FILE;
pub use schema::WAL_PREALLOC;
use thread::StoreThread;

/// File name of the inbox database inside the data dir.
pub const INBOX_FILE: &str = "inbox.sqlite3";
/// Requests that may wait for the store; senders wait when it is full.
pub const STORE_QUEUE: usize = 4096;
/// Most requests committed in one transaction.
const MAX_BATCH: usize = 1024;

/// How durable the store's commits are (WAL mode either way).
///
/// With [`Durability::Network`] a topic message is committed without an
/// fsync (`synchronous=NORMAL`): a killed process loses nothing it
/// reported, a power cut may lose the last commits, and catch-up refills
/// them from the topic's other members at the next start. Direct messages
/// (received ones are acknowledged to a sender who then deletes its copy;
/// our copy of a sent one) and the outbox have no other copy: a commit that
/// holds one is fsynced (`synchronous=FULL`). [`Durability::Full`] fsyncs
/// every commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Topic messages rely on their other holders; DMs and the outbox are fsynced.
    #[default]
    Network,
    /// Every commit is fsynced (`--sync-writes full`).
    Full,
}

/// Failures of the inbox database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error (disk full, I/O error, corrupt file…).
    #[error("inbox database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The intake log (`inbox.intake`) could not be opened or read.
    #[error("inbox intake log: {0}")]
    Intake(std::io::Error),
    /// The store has stopped.
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

/// What to read from the inbox: user messages (topic messages and direct
/// message records, never control messages), in (ts, id) order.
#[derive(Debug, Clone, Default)]
pub struct InboxQuery {
    /// Only messages of these topic ids (`None`: every message, direct ones included).
    pub topics: Option<Vec<[u8; 32]>>,
    /// Only messages with a sender timestamp at or after this (unix ms).
    pub since: Option<u64>,
    /// Only messages before this position: the page walks back from it.
    pub before: Option<Cursor>,
    /// Only messages after this position: the page walks forward from it
    /// (the oldest `limit` of them, where otherwise the newest).
    pub after: Option<Cursor>,
    /// At most this many (returned oldest first).
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
    pub done: Option<Done>,
    /// For a topic message or announcement: its author, for the topic's roster.
    pub member: Option<Member>,
}

/// Whom an [`Insert`] tells, after its commit, whether the message was new
/// (`Ok(true)`), a duplicate (`Ok(false)`) or not stored (`Err`).
pub enum Done {
    /// A channel, for a task that awaits the commit.
    Channel(oneshot::Sender<Result<bool, String>>),
    /// A function the store calls itself (it must not block): spares a task
    /// that would only wait for the commit to pass its outcome on.
    Call(Box<dyn FnOnce(Result<bool, String>) + Send>),
}

impl Done {
    /// Tells the outcome of the commit.
    pub(crate) fn tell(self, outcome: Result<bool, String>) {
        match self {
            Done::Channel(tx) => {
                let _ = tx.send(outcome);
            }
            Done::Call(f) => f(outcome),
        }
    }
}

impl From<oneshot::Sender<Result<bool, String>>> for Done {
    fn from(tx: oneshot::Sender<Result<bool, String>>) -> Self {
        Done::Channel(tx)
    }
}

/// Every roster row: (topic id, member).
pub type Rosters = Vec<([u8; 32], Member)>;

/// A member of a topic (of one epoch), as its roster keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Peer id.
    pub peer: String,
    /// Display name, as the member signed it.
    pub name: String,
    /// Reported after the commit when the member is new to the roster.
    pub event: Option<Event>,
}

/// What the [`Store`] handle asks of the store.
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
    MembersLoad {
        reply: oneshot::Sender<Result<Rosters, StoreError>>,
    },
    MembersPut {
        topic_id: [u8; 32],
        members: Vec<Member>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Announced {
        topic_ids: Vec<[u8; 32]>,
        reply: oneshot::Sender<Result<Vec<[u8; 32]>, StoreError>>,
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
    pub fn open(dir: &Path, events: broadcast::Sender<Arc<Event>>) -> Result<Self, StoreError> {
        Self::open_with_metrics(dir, events, Metrics::default(), Durability::default())
    }

    /// As [`Store::open`], counting into `metrics` (delivered messages, inbox
    /// size, queue depth, commits, errors), with commits as durable as `durability`.
    ///
    /// # Errors
    /// When the database cannot be opened or its schema created.
    pub fn open_with_metrics(
        dir: &Path,
        events: broadcast::Sender<Arc<Event>>,
        metrics: Metrics,
        durability: Durability,
    ) -> Result<Self, StoreError> {
        let path = dir.join(INBOX_FILE);
        let conn = schema::open_connection(&path)?;
        let intake = intake::Intake::open(&dir.join(INTAKE_FILE)).map_err(StoreError::Intake)?;
        let (requests, rx) = mpsc::channel(STORE_QUEUE);
        // Checkpoints run on a thread of their own, off the commit path;
        // SQLite's own, in a commit, only when a burst outruns it.
        let checkpointer = checkpoint::Checkpointer::start(&path, metrics.clone())?;
        let mut store = StoreThread::new(conn, checkpointer, intake, events, path, metrics.clone(), durability);
        // Messages a run that stopped left in the intake log (they were reported).
        store.flush_intake();
        // Messages a user reads; control rows (rosters, rekeys) are not counted.
        let count: i64 = store.conn.query_row(
            "SELECT COUNT(*) FROM messages WHERE purpose IN (?1, ?2)",
            [Purpose::Topic as u8, Purpose::DirectRecord as u8],
            |r| r.get(0),
        )?;
        metrics.inbox_messages.set(count);
        // On a multi-threaded runtime the store is a task: the event loop
        // hands it a message, and it hands the printer the message's event,
        // without waking a sleeping thread each time (thread::run_off_worker
        // keeps what may block for long off the workers). Elsewhere it has a
        // thread of its own.
        if let Some(runtime) = thread::multi_threaded_runtime() {
            runtime.spawn(store.run(rx));
        } else {
            std::thread::Builder::new()
                .name("murmur-store".into())
                .spawn(move || futures::executor::block_on(store.run(rx)))
                .expect("spawning the store thread");
        }
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
    /// [`StoreError::Closed`] when the store has stopped.
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

    /// Every topic roster: (topic id, member), for every epoch.
    ///
    /// # Errors
    /// When the read fails or the store is closed.
    pub async fn members_load(&self) -> Result<Rosters, StoreError> {
        self.request(|reply| Request::MembersLoad { reply }).await
    }

    /// Adds `members` to the roster of `topic_id` (a new epoch starts with
    /// the members of the one it replaces).
    ///
    /// # Errors
    /// When the write fails or the store is closed.
    pub async fn members_put(&self, topic_id: [u8; 32], members: Vec<Member>) -> Result<(), StoreError> {
        self.request(|reply| Request::MembersPut {
            topic_id,
            members,
            reply,
        })
        .await
    }

    /// Which of the epochs `topic_ids` hold this node's own announcement as
    /// a member (a `Control` message it wrote), so that a restart does not
    /// announce it again.
    ///
    /// # Errors
    /// When the read fails or the store is closed.
    pub async fn announced(&self, topic_ids: Vec<[u8; 32]>) -> Result<Vec<[u8; 32]>, StoreError> {
        self.request(|reply| Request::Announced { topic_ids, reply }).await
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
