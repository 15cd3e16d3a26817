//! The store's loop (a task on the node's runtime, or a thread of its own):
//! owns the SQLite connection, answers the handle's requests in order and
//! commits inserts in groups, reporting each message only once its commit is
//! durable.

use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{broadcast, mpsc};

use super::checkpoint::Checkpointer;
use super::intake::{self, Intake, Record};
use super::{Durability, Insert, OutboxRow, Request, StoreError, MAX_BATCH};
use crate::envelope::Purpose;
use crate::event::Event;
use crate::metrics::Metrics;

/// The store's state (run as a task or on a thread of its own).
pub(super) struct StoreThread {
    pub(super) conn: Connection,
    /// Checkpoints the WAL off the commit path (dropped, and joined, after `conn`).
    checkpointer: Checkpointer,
    /// Where small groups of topic messages land before they move into SQLite.
    pub(super) intake: Intake,
    events: broadcast::Sender<Arc<Event>>,
    path: PathBuf,
    metrics: Metrics,
    durability: Durability,
    /// Whether the connection's `synchronous` pragma is FULL now (else NORMAL).
    full: bool,
}

impl StoreThread {
    pub(super) fn new(
        conn: Connection,
        checkpointer: Checkpointer,
        intake: Intake,
        events: broadcast::Sender<Arc<Event>>,
        path: PathBuf,
        metrics: Metrics,
        durability: Durability,
    ) -> Self {
        Self {
            conn,
            checkpointer,
            intake,
            events,
            path,
            metrics,
            durability,
            // schema::open_connection leaves it FULL.
            full: true,
        }
    }

    /// Whether a commit is fsynced: one that must be (`full`), or every one
    /// with `--sync-writes full`.
    fn fsyncs(&self, full: bool) -> bool {
        full || self.durability == Durability::Full
    }

    /// Makes the next commits fsynced (`full`) or not, as `durability` allows,
    /// and counts the commit that follows. Returns the mode set.
    fn commit_mode(&mut self, full: bool) -> Result<&'static str, rusqlite::Error> {
        let full = self.fsyncs(full);
        if full != self.full {
            self.conn
                .pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })?;
            self.full = full;
        }
        let mode = if full { "full" } else { "normal" };
        self.metrics.commit(mode);
        Ok(mode)
    }

    /// Answers requests until `Close` or until every handle is gone. A group
    /// commit of topic messages (a short write, no fsync) runs in place;
    /// queries and fsynced commits run off the runtime's workers. What the
    /// intake log holds moves into SQLite before any other request is
    /// answered, when the log is full, and when no request came for
    /// [`IDLE_FLUSH`].
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        tracing::debug!(path = %self.path.display(), "inbox open");
        let mut batch: Vec<Insert> = Vec::new();
        while let Some(first) = self.next_request(&mut rx).await {
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Insert(insert) => batch.push(*insert),
                    other => {
                        self.commit(&mut batch);
                        self.flush_intake();
                        if let Request::Close { reply } = other {
                            let _ = reply.send(());
                            tracing::debug!("inbox closed");
                            return;
                        }
                        run_off_worker(|| self.answer(other));
                        // Some requests write (the outbox, rosters, pruning).
                        self.checkpointer.wrote(1, 0);
                    }
                }
                if batch.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.commit(&mut batch);
        }
        self.flush_intake();
    }

    /// The next request; while the intake log holds messages, moves them
    /// into SQLite first if none comes for [`IDLE_FLUSH`] (at once where
    /// the store runs without a timer, on a thread of its own).
    async fn next_request(&mut self, rx: &mut mpsc::Receiver<Request>) -> Option<Request> {
        if !self.intake.is_empty() {
            if multi_threaded_runtime().is_none() {
                if let Ok(request) = rx.try_recv() {
                    return Some(request);
                }
            } else if let Ok(request) = tokio::time::timeout(IDLE_FLUSH, rx.recv()).await {
                return request;
            }
            self.flush_intake();
        }
        rx.recv().await
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
                    // With what the intake log holds if moving it failed.
                    .map(|n| n as u64 + self.intake.pending().len() as u64)
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
                let _ = reply.send(self.outbox_put(&row));
            }
            Request::OutboxDelete { id, reply } => {
                let _ = reply.send(self.outbox_delete(&id));
            }
            Request::OutboxLoad { reply } => {
                let _ = reply.send(self.outbox_load());
            }
            Request::MembersLoad { reply } => {
                let _ = reply.send(self.members_load());
            }
            Request::Announced { topic_ids, reply } => {
                let _ = reply.send(self.announced(topic_ids));
            }
            Request::MembersPut {
                topic_id,
                members,
                reply,
            } => {
                let result = (|| -> Result<(), rusqlite::Error> {
                    let tx = self.conn.transaction()?;
                    {
                        let mut put = tx.prepare_cached(
                            "INSERT INTO members (topic_id, peer, name) VALUES (?1, ?2, ?3)
                             ON CONFLICT(topic_id, peer) DO NOTHING",
                        )?;
                        for m in &members {
                            put.execute(params![&topic_id[..], m.peer, m.name])?;
                        }
                    }
                    tx.commit()
                })();
                let _ = reply.send(result.map_err(StoreError::from));
            }
            Request::Insert(_) | Request::Close { .. } => unreachable!("handled by run"),
        }
    }

    /// Writes (or rewrites) an outbox entry, fsynced: it is a DM's only copy.
    fn outbox_put(&mut self, row: &OutboxRow) -> Result<(), StoreError> {
        self.commit_mode(true)?;
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO outbox (id, peer, ts, expires, attempts, last_error, envelope)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                &row.id[..],
                row.peer,
                row.ts as i64,
                row.expires as i64,
                row.attempts,
                row.last_error,
                row.envelope
            ])?;
        Ok(())
    }

    /// Removes an outbox entry, fsynced.
    fn outbox_delete(&mut self, id: &[u8; 32]) -> Result<(), StoreError> {
        self.commit_mode(true)?;
        self.conn.execute("DELETE FROM outbox WHERE id = ?1", [&id[..]])?;
        Ok(())
    }

    /// Stores the batch, then reports each message: a small group of topic
    /// messages goes to the intake log, anything else into SQLite in one
    /// transaction, after what the log holds.
    fn commit(&mut self, batch: &mut Vec<Insert>) {
        if batch.is_empty() {
            return;
        }
        if self.loggable(batch) {
            self.log(batch);
            if batch.is_empty() {
                if self.intake.is_full() {
                    self.flush_intake();
                }
                return;
            }
        }
        // A direct message has no other copy than ours: its commit is fsynced.
        let holds_dm = batch.iter().any(|m| m.purpose != Purpose::Topic);
        if self.fsyncs(holds_dm) {
            run_off_worker(|| self.commit_now(batch, holds_dm));
        } else {
            self.commit_now(batch, false);
        }
    }

    /// Whether `batch` goes to the intake log: a few topic messages that need
    /// no fsync and bring no new roster member, while the log has room.
    fn loggable(&self, batch: &[Insert]) -> bool {
        batch.len() <= LOG_BATCH
            && batch.iter().map(|m| m.envelope.len() as u64).sum::<u64>() <= intake::MAX_BYTES
            && !self.fsyncs(false)
            && !self.intake.is_full()
            && batch.iter().all(|m| m.purpose == Purpose::Topic && m.member.is_none())
    }

    /// Appends the new messages of `batch` to the intake log with one write
    /// and reports them; duplicates are told so. When a lookup or the write
    /// fails, `batch` is left as it was, for SQLite.
    fn log(&mut self, batch: &mut Vec<Insert>) {
        let mut fresh = Vec::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            let again = batch[..i].iter().any(|o| (o.ts, o.id) == (m.ts, m.id));
            match self.held(m.ts, &m.id) {
                Ok(held) => fresh.push(!held && !again),
                Err(e) => {
                    tracing::warn!("inbox lookup failed, committing instead: {e}");
                    return;
                }
            }
        }
        let records = batch
            .iter_mut()
            .zip(&fresh)
            .filter(|(_, new)| **new)
            .map(|(m, _)| Record {
                ts: m.ts,
                id: m.id,
                purpose: m.purpose as u8,
                topic_id: m.topic_id,
                via: m.via as u8,
                own_seq: m.own_seq,
                client_key: m.client_key,
                envelope: std::mem::take(&mut m.envelope),
            })
            .collect();
        if let Err((e, records)) = self.intake.append(records) {
            tracing::warn!("inbox intake log write failed, committing instead: {e}");
            let mut records = records.into_iter();
            for (m, _) in batch.iter_mut().zip(&fresh).filter(|(_, new)| **new) {
                m.envelope = records.next().map(|r| r.envelope).unwrap_or_default();
            }
            return;
        }
        self.metrics.commit("log");
        self.metrics.store_queue.set(0);
        let done = std::mem::take(batch);
        self.report(done, fresh.into_iter().map(|new| (new, false)).collect());
    }

    /// Whether the inbox (SQLite or the intake log) holds message (ts, id).
    fn held(&self, ts: u64, id: &[u8; 32]) -> Result<bool, rusqlite::Error> {
        if self.intake.holds(ts, id) {
            return Ok(true);
        }
        self.conn
            .prepare_cached("SELECT 1 FROM messages WHERE ts = ?1 AND id = ?2")?
            .exists(params![ts as i64, &id[..]])
    }

    /// Moves what the intake log holds into SQLite, in one transaction, and
    /// starts the log over. On an error the log keeps it (it is replayed at
    /// the next start if no later attempt succeeds).
    pub(super) fn flush_intake(&mut self) {
        if self.intake.is_empty() {
            return;
        }
        let result = self.commit_mode(false).and_then(|_| {
            let tx = self.conn.transaction()?;
            write_records(&tx, self.intake.pending())?;
            tx.commit()
        });
        match result {
            Ok(()) => self.intake_committed(),
            Err(e) => tracing::error!("could not move the intake log into the inbox: {e}"),
        }
    }

    /// What the intake log held is in SQLite now (committed): counts its
    /// WAL pages for the checkpointer and starts the log over.
    fn intake_committed(&mut self) {
        let pending = self.intake.pending();
        if pending.is_empty() {
            return;
        }
        self.checkpointer
            .wrote(pending.len(), pending.iter().map(|r| r.envelope.len()).sum());
        if let Err(e) = self.intake.restart() {
            tracing::warn!("could not start the inbox intake log over: {e}");
        }
    }

    fn commit_now(&mut self, batch: &mut Vec<Insert>, holds_dm: bool) {
        let mode = self.commit_mode(holds_dm);
        let result = (|| -> Result<Vec<(bool, bool)>, rusqlite::Error> {
            mode?;
            let tx = self.conn.transaction()?;
            // What the intake log holds goes first, in the order it came.
            write_records(&tx, self.intake.pending())?;
            let mut fresh = Vec::with_capacity(batch.len());
            {
                let mut insert = tx.prepare_cached(INSERT_MESSAGE)?;
                let mut client = tx.prepare_cached(INSERT_CLIENT_ID)?;
                let mut member = tx.prepare_cached(
                    "INSERT INTO members (topic_id, peer, name) VALUES (?1, ?2, ?3)
                     ON CONFLICT(topic_id, peer) DO NOTHING",
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
                    if let Some(key) = m.client_key {
                        client.execute(params![&key[..], &m.id[..]])?;
                    }
                    // (new message, new member of the roster)
                    let joined = match &m.member {
                        Some(who) if n == 1 => member.execute(params![&m.topic_id[..], who.peer, who.name])? == 1,
                        _ => false,
                    };
                    fresh.push((n == 1, joined));
                }
            }
            save_seq(&tx, batch.iter().filter_map(|m| m.own_seq))?;
            tx.commit()?;
            Ok(fresh)
        })();
        match result {
            Ok(fresh) => {
                self.metrics.store_queue.set(0);
                self.checkpointer
                    .wrote(batch.len(), batch.iter().map(|m| m.envelope.len()).sum());
                self.intake_committed();
                let done = std::mem::take(batch);
                self.report(done, fresh);
            }
            Err(e) => {
                self.metrics.store_errors.inc_by(batch.len() as u64);
                let error = format!("could not store {} message(s) in the inbox: {e}", batch.len());
                tracing::error!("{error}");
                let _ = self.events.send(Arc::new(Event::Error { error: error.clone() }));
                for m in batch.drain(..) {
                    if let Some(done) = m.done {
                        done.tell(Err(error.clone()));
                    }
                }
            }
        }
    }

    /// Reports stored messages: each new one's member (if new to the
    /// roster) and event, and to each its outcome, `(new message, new member)`.
    fn report(&mut self, done: Vec<Insert>, outcomes: Vec<(bool, bool)>) {
        for (m, (is_new, joined)) in done.into_iter().zip(outcomes) {
            // A new member is reported before its first message.
            if let Some(event) = m.member.and_then(|who| who.event).filter(|_| joined) {
                let _ = self.events.send(Arc::new(event));
            }
            if is_new && m.purpose.is_shown() {
                self.metrics.inbox_messages.inc();
            }
            if is_new {
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
                    let _ = self.events.send(Arc::new(event));
                }
            }
            if let Some(done) = m.done {
                done.tell(Ok(is_new));
            }
        }
    }
}

/// Topic messages in a group this small go to the intake log (with one
/// write); a larger group (a catch-up page, a long burst) shares its
/// commit's frames already.
const LOG_BATCH: usize = 64;
/// How long the store waits for a request before it moves what the intake
/// log holds into SQLite.
const IDLE_FLUSH: std::time::Duration = std::time::Duration::from_millis(100);

const INSERT_MESSAGE: &str =
    "INSERT OR IGNORE INTO messages (ts, id, purpose, topic_id, envelope, via) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const INSERT_CLIENT_ID: &str = "INSERT OR IGNORE INTO client_ids (key, msg_id) VALUES (?1, ?2)";
const UPDATE_SEQ: &str = "INSERT INTO meta (key, value) VALUES ('seq', ?1)
     ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)";

/// Writes records of the intake log into the open transaction (a message
/// already there is left alone).
pub(super) fn write_records(tx: &rusqlite::Transaction<'_>, records: &[Record]) -> Result<(), rusqlite::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(INSERT_MESSAGE)?;
    let mut client = tx.prepare_cached(INSERT_CLIENT_ID)?;
    for r in records {
        insert.execute(params![
            r.ts as i64,
            &r.id[..],
            r.purpose,
            &r.topic_id[..],
            &r.envelope,
            r.via
        ])?;
        if let Some(key) = r.client_key {
            client.execute(params![&key[..], &r.id[..]])?;
        }
    }
    save_seq(tx, records.iter().filter_map(|r| r.own_seq))
}

/// Persists the highest of our own sequence numbers in a group, once per
/// group (the stored value only ever grows).
fn save_seq(tx: &rusqlite::Transaction<'_>, seqs: impl Iterator<Item = u64>) -> Result<(), rusqlite::Error> {
    if let Some(max) = seqs.max() {
        tx.prepare_cached(UPDATE_SEQ)?.execute(params![max as i64])?;
    }
    Ok(())
}

/// Runs `f`, which may block for a while (a query, an fsync), without holding
/// up the other tasks of a multi-threaded runtime: its worker's tasks move to
/// another thread meanwhile. Elsewhere (the store's own thread) it runs `f`.
fn run_off_worker<R>(f: impl FnOnce() -> R) -> R {
    if multi_threaded_runtime().is_some() {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

/// The multi-threaded runtime this code runs on, if any: where the store is
/// a task and may move blocking work off its worker.
pub(super) fn multi_threaded_runtime() -> Option<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current()
        .ok()
        .filter(|runtime| runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}
