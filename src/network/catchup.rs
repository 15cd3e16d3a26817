//! Catch-up, driven from the event loop: starts a `/murmur/sync/1` exchange
//! when a peer that shares a topic appears (and again every sync interval),
//! serves peers' requests within a budget, and stores what arrives exactly as
//! a received gossip message (same checks, same dedup, reported after the
//! commit, with `via: "sync"`). Wire format and proof: [`super::sync`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::{gossipsub, PeerId};
use rand::seq::IteratorRandom;
use tokio::sync::oneshot;

use super::sync::{self, Cursor, SyncRequest, SyncResponse, MAX_HAVE};
use super::topics::subscribed_peers;
use super::EventLoop;
use crate::clock::now_ms;
use crate::event::Event;
use crate::keyring::TopicEntry;
use crate::store::Retention;

/// Envelopes one peer may be served per [`SERVE_WINDOW`]: five full
/// catch-ups of a topic at the default retention, then it must wait.
pub const SERVE_BUDGET: u64 = 50_000;
/// The window of [`SERVE_BUDGET`].
pub const SERVE_WINDOW: Duration = Duration::from_secs(60);
/// Most pages one exchange asks for (a peer answering `more` forever is cut off).
const MAX_PAGES: u32 = 1_000;

/// Catch-up's state: the exchanges we run, what we served, and budgets.
pub(super) struct Catchup {
    /// Exchanges we are running, by (peer, topic id).
    syncs: HashMap<(PeerId, [u8; 32]), SyncSession>,
    /// Envelopes served per (peer, topic id) since our last exchange with it finished.
    served: HashMap<(PeerId, [u8; 32]), u64>,
    /// Serving budget per peer: window start and envelopes served in it.
    serve_budget: HashMap<PeerId, (Instant, u64)>,
    /// Which messages catch-up covers.
    retention: Retention,
    /// How often to catch up again while connected.
    interval: Option<Duration>,
}

impl Catchup {
    pub(super) fn new(retention: Retention, interval: Option<Duration>) -> Self {
        Self {
            syncs: HashMap::new(),
            served: HashMap::new(),
            serve_budget: HashMap::new(),
            retention,
            interval,
        }
    }

    /// Which messages catch-up covers (and how old a caught-up one may be).
    pub(super) fn retention(&self) -> Retention {
        self.retention
    }

    /// How often to catch up again while connected (`None`: only at connection).
    pub(super) fn interval(&self) -> Option<Duration> {
        self.interval
    }

    /// The last connection to `peer` closed: what we served it is forgotten.
    pub(super) fn peer_gone(&mut self, peer: &PeerId) {
        self.served.retain(|(p, _), _| p != peer);
    }

    fn session_of(&self, request: OutboundRequestId) -> Option<(PeerId, [u8; 32])> {
        self.syncs
            .iter()
            .find(|(_, s)| s.request == Some(request))
            .map(|(k, _)| *k)
    }
}

/// Store work catch-up waits for.
pub(super) enum Completion {
    /// What we hold of a topic was read: ask the peer for the rest.
    Start {
        peer: PeerId,
        topic_id: [u8; 32],
        since: u64,
        have: Vec<(u64, [u8; 32])>,
    },
    /// An exchange could not start (the inbox could not be read): drop it, report nothing.
    Failed { peer: PeerId, topic_id: [u8; 32] },
    /// A page of caught-up envelopes is stored: ask for the next one or finish.
    Stored {
        peer: PeerId,
        topic_id: [u8; 32],
        new: u64,
        more: bool,
        next: Cursor,
    },
    /// A page for a peer catching up was read: send it.
    Serve {
        peer: PeerId,
        topic_id: [u8; 32],
        channel: ResponseChannel<SyncResponse>,
        response: SyncResponse,
        /// Topic messages in the page (what the `synced` event's `sent` counts).
        messages: u64,
    },
}

/// One exchange this node runs with a peer for a topic.
struct SyncSession {
    /// (ts, id) of what we held of the topic when the exchange started, oldest first.
    have: Vec<(u64, [u8; 32])>,
    /// Start of our retention window.
    since: u64,
    /// Where the last page ended.
    cursor: Cursor,
    /// Pages asked for.
    pages: u32,
    /// New messages stored so far.
    received: u64,
    /// Whether to report the exchange even when nothing moved (a new
    /// connection or subscription; the periodic ones report only news).
    report: bool,
    /// The page request in flight.
    request: Option<OutboundRequestId>,
}

impl EventLoop {
    /// The subscribed topic with this id.
    fn subscribed_topic(&self, topic_id: &[u8; 32]) -> Option<TopicEntry> {
        self.topics.by_id(topic_id).cloned()
    }

    /// Store work finished for an exchange.
    pub(super) fn on_catchup_completion(&mut self, done: Completion) {
        match done {
            Completion::Start {
                peer,
                topic_id,
                since,
                have,
            } => self.sync_started(peer, topic_id, since, have),
            Completion::Failed { peer, topic_id } => {
                self.catchup.syncs.remove(&(peer, topic_id));
            }
            Completion::Stored {
                peer,
                topic_id,
                new,
                more,
                next,
            } => self.sync_page_stored(peer, topic_id, new, more, next),
            Completion::Serve {
                peer,
                topic_id,
                channel,
                response,
                messages,
            } => self.sync_serve(peer, topic_id, channel, response, messages),
        }
    }

    /// Starts catching up with `peer` on the topic `hash`, unless an exchange runs already.
    pub(super) fn start_sync(&mut self, peer: PeerId, hash: &gossipsub::TopicHash, report: bool) {
        if self.plain {
            return;
        }
        let Some(topic_id) = self.topics.get(hash).map(|t| t.id) else {
            return;
        };
        if let Some(session) = self.catchup.syncs.get_mut(&(peer, topic_id)) {
            session.report |= report;
            return;
        }
        self.catchup.syncs.insert(
            (peer, topic_id),
            SyncSession {
                have: Vec::new(),
                since: 0,
                cursor: Cursor::default(),
                pages: 0,
                received: 0,
                report,
                request: None,
            },
        );
        let (store, retention, done) = (self.store.clone(), self.catchup.retention, self.completions_tx.clone());
        tokio::spawn(async move {
            let completion = match store.sync_have(topic_id, retention, now_ms()).await {
                Ok((since, have)) => Completion::Start {
                    peer,
                    topic_id,
                    since,
                    have,
                },
                Err(e) => {
                    tracing::warn!("catch-up: cannot read the inbox: {e}");
                    Completion::Failed { peer, topic_id }
                }
            };
            let _ = done.send(super::Completion::Catchup(completion)).await;
        });
    }

    /// Catches up on `hash` with every connected peer known to be subscribed to it.
    pub(super) fn sync_topic_peers(&mut self, hash: &gossipsub::TopicHash) {
        let peers: Vec<PeerId> = subscribed_peers(&self.swarm.behaviour().gossipsub, hash).collect();
        for peer in peers {
            self.start_sync(peer, hash, true);
        }
    }

    /// The periodic exchange: per topic, with one random subscribed peer.
    pub(super) fn resync(&mut self) {
        for hash in self.topics.hashes() {
            let peer = subscribed_peers(&self.swarm.behaviour().gossipsub, &hash).choose(&mut rand::thread_rng());
            if let Some(peer) = peer {
                self.start_sync(peer, &hash, false);
            }
        }
    }

    fn sync_started(&mut self, peer: PeerId, topic_id: [u8; 32], since: u64, have: Vec<(u64, [u8; 32])>) {
        let Some(session) = self.catchup.syncs.get_mut(&(peer, topic_id)) else {
            return;
        };
        session.since = since;
        session.have = have;
        self.request_page(peer, topic_id);
    }

    /// Asks for the page after the session's cursor, naming what we hold from there on.
    fn request_page(&mut self, peer: PeerId, topic_id: [u8; 32]) {
        let local = *self.swarm.local_peer_id();
        let Some(entry) = self.subscribed_topic(&topic_id) else {
            self.catchup.syncs.remove(&(peer, topic_id));
            return;
        };
        let Some(session) = self.catchup.syncs.get_mut(&(peer, topic_id)) else {
            return;
        };
        let after = session.cursor;
        let have = session
            .have
            .iter()
            .filter(|(ts, id)| Cursor { ts: *ts, id: *id } > after)
            .take(MAX_HAVE)
            .map(|(_, id)| sync::short_id(id))
            .collect();
        let request = SyncRequest {
            topic_id,
            proof: sync::proof(&entry.key, &local, &peer),
            since: session.since,
            after,
            have,
        };
        session.pages += 1;
        session.request = Some(self.swarm.behaviour_mut().sync.send_request(&peer, request));
    }

    pub(super) async fn on_sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => self.serve(peer, request, channel),
                request_response::Message::Response { request_id, response } => {
                    let Some(key) = self.catchup.session_of(request_id) else {
                        return;
                    };
                    match response {
                        SyncResponse::Page { more, next, envelopes } => {
                            self.store_page(key.0, key.1, more, next, envelopes).await;
                        }
                        SyncResponse::Refused(reason) => {
                            tracing::info!(peer = %key.0, "catch-up refused: {reason}");
                            self.catchup.syncs.remove(&key);
                        }
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                if let Some(key) = self.catchup.session_of(request_id) {
                    tracing::debug!(%peer, "catch-up request failed: {error}");
                    self.catchup.syncs.remove(&key);
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "catch-up request from a peer failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// Checks each envelope of a page as a received message and stores the
    /// good ones; the next page is asked for once they are committed.
    async fn store_page(
        &mut self,
        peer: PeerId,
        topic_id: [u8; 32],
        more: bool,
        next: Cursor,
        envelopes: Vec<Vec<u8>>,
    ) {
        let Some(entry) = self.subscribed_topic(&topic_id) else {
            self.catchup.syncs.remove(&(peer, topic_id));
            return;
        };
        let mut stored = Vec::with_capacity(envelopes.len());
        self.metrics
            .sync_envelope_bytes
            .inc_by(envelopes.iter().map(|e| e.len() as u64).sum());
        let frames: Vec<(&TopicEntry, &[u8])> = envelopes.iter().map(|e| (&entry, e.as_slice())).collect();
        let opened = self.open_topic_messages(&frames, crate::store::Via::Sync);
        for result in opened {
            match result {
                Ok(insert) => {
                    self.note_member(&insert);
                    // Messages count; members' announcements are stored, not counted.
                    let message = insert.purpose == crate::envelope::Purpose::Topic;
                    let (done, rx) = oneshot::channel();
                    let insert = crate::store::Insert {
                        done: Some(done.into()),
                        ..insert
                    };
                    if self.store.insert(insert).await.is_err() {
                        break;
                    }
                    stored.push((message, rx));
                }
                Err(reason) => tracing::debug!(%peer, reason, "dropped a caught-up envelope"),
            }
        }
        let done = self.completions_tx.clone();
        tokio::spawn(async move {
            let mut new = 0;
            for (message, rx) in stored {
                if let (true, Ok(Ok(true))) = (message, rx.await) {
                    new += 1;
                }
            }
            let stored = Completion::Stored {
                peer,
                topic_id,
                new,
                more,
                next,
            };
            let _ = done.send(super::Completion::Catchup(stored)).await;
        });
    }

    fn sync_page_stored(&mut self, peer: PeerId, topic_id: [u8; 32], new: u64, more: bool, next: Cursor) {
        let key = (peer, topic_id);
        let Some(session) = self.catchup.syncs.get_mut(&key) else {
            return;
        };
        session.received += new;
        self.metrics.sync_received.inc_by(new);
        // Go on only while the peer's cursor advances and within the page cap.
        if more && next > session.cursor && session.pages < MAX_PAGES && self.swarm.is_connected(&peer) {
            session.cursor = next;
            self.request_page(peer, topic_id);
            return;
        }
        let session = self.catchup.syncs.remove(&key).expect("present");
        self.metrics.sync_sessions.inc();
        self.report_synced(key, session.received, session.report);
    }

    /// Reports an exchange with a peer on a topic: what we `received`, and
    /// what we served it since the last report. Reported when something
    /// moved, or always when `report` (a new connection or subscription).
    fn report_synced(&mut self, key: (PeerId, [u8; 32]), received: u64, report: bool) {
        let (peer, topic_id) = key;
        let sent = self.catchup.served.remove(&key).unwrap_or(0);
        let Some(entry) = self.subscribed_topic(&topic_id) else {
            return;
        };
        tracing::debug!(%peer, received, sent, "catch-up finished");
        if report || received > 0 || sent > 0 {
            self.emit(Event::Synced {
                peer: peer.to_string(),
                name: self.peers.name(&peer),
                topic: entry.name,
                received,
                sent,
            });
        }
    }

    /// Answers a peer's page request: only for a topic we are subscribed to,
    /// only with a valid membership proof, only within the peer's budget.
    fn serve(&mut self, peer: PeerId, request: SyncRequest, channel: ResponseChannel<SyncResponse>) {
        let local = *self.swarm.local_peer_id();
        let member = self
            .subscribed_topic(&request.topic_id)
            .is_some_and(|t| crate::crypto::constant_time_eq(&request.proof, &sync::proof(&t.key, &peer, &local)));
        if self.catchup.serve_budget.len() > 4096 {
            self.catchup
                .serve_budget
                .retain(|_, (start, _)| start.elapsed() <= SERVE_WINDOW);
        }
        let budget = self.catchup.serve_budget.entry(peer).or_insert((Instant::now(), 0));
        if budget.0.elapsed() > SERVE_WINDOW {
            *budget = (Instant::now(), 0);
        }
        let refusal = if !member || self.plain {
            // The same answer for a topic we do not hold and a wrong proof.
            Some("topic not served")
        } else if budget.1 >= SERVE_BUDGET {
            Some("catch-up budget used up; try again later")
        } else {
            None
        };
        if let Some(reason) = refusal {
            tracing::debug!(%peer, reason, "refused a catch-up request");
            self.metrics.sync_refused.inc();
            let _ = self
                .swarm
                .behaviour_mut()
                .sync
                .send_response(channel, SyncResponse::Refused(reason.into()));
            return;
        }
        let (store, retention, done) = (self.store.clone(), self.catchup.retention, self.completions_tx.clone());
        let topic_id = request.topic_id;
        tokio::spawn(async move {
            let query = crate::store::PageQuery {
                topic_id,
                retention,
                now: now_ms(),
                since: request.since,
                after: request.after,
                have: request.have.into_iter().collect(),
            };
            let (response, messages) = match store.sync_page(query).await {
                Ok(page) => (
                    SyncResponse::Page {
                        more: page.more,
                        next: page.next,
                        envelopes: page.envelopes,
                    },
                    page.messages,
                ),
                Err(e) => {
                    tracing::warn!("catch-up: cannot read the inbox: {e}");
                    (SyncResponse::Refused("history unavailable".into()), 0)
                }
            };
            let serve = Completion::Serve {
                peer,
                topic_id,
                channel,
                response,
                messages,
            };
            let _ = done.send(super::Completion::Catchup(serve)).await;
        });
    }

    fn sync_serve(
        &mut self,
        peer: PeerId,
        topic_id: [u8; 32],
        channel: ResponseChannel<SyncResponse>,
        response: SyncResponse,
        messages: u64,
    ) {
        let mut last_page = false;
        if let SyncResponse::Page { envelopes, more, .. } = &response {
            let n = envelopes.len() as u64;
            if let Some(budget) = self.catchup.serve_budget.get_mut(&peer) {
                budget.1 += n;
            }
            // The `synced` event's `sent`, like its `received`, counts the
            // messages a user reads, not roster announcements.
            *self.catchup.served.entry((peer, topic_id)).or_default() += messages;
            self.metrics.sync_sent.inc_by(n);
            last_page = !more;
        }
        if self
            .swarm
            .behaviour_mut()
            .sync
            .send_response(channel, response)
            .is_err()
        {
            tracing::debug!(%peer, "peer went away before its catch-up page");
        }
        // The peer's exchange is over. Ours with it, if it still runs, reports
        // what we served when it ends; if it ended first, report it now.
        let key = (peer, topic_id);
        if last_page && !self.catchup.syncs.contains_key(&key) {
            self.report_synced(key, 0, false);
        }
    }
}
