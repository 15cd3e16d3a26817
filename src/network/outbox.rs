//! Reliable direct messages, driven from the event loop: every DM is sealed
//! end to end for its recipient, written durably to the outbox, then sent
//! over `/murmur/dm/2`; it leaves the outbox only on the recipient's
//! acknowledgement (`dm_sent`) or at its expiry (`dm_failed`). Undelivered
//! ones are retried with backoff, and at once when the recipient connects.
//! The receiving side is [`super::direct`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::PeerId;
use tokio::sync::oneshot;

use super::dm::{DmRequest, DmResponse};
use super::request::store_then_reply;
use super::EventLoop;
use crate::clock::now_ms;
use crate::crypto::direct_recipient;
use crate::envelope::{Envelope, Payload, Purpose};
use crate::event::{Event, OutboxItem};
use crate::reply::{DmOutcome, DmRecord, NodeError};
use crate::store::{OutboxRow, Via};

/// Most direct messages the outbox holds; more are refused until some leave.
pub const MAX_OUTBOX: usize = 1024;
/// Longest wait between two attempts at one message.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// The outbox's state: what waits and what is in flight.
pub(super) struct Outbox {
    /// Direct messages not yet acknowledged (persisted in the store's outbox), by id.
    entries: BTreeMap<[u8; 32], OutboxEntry>,
    /// Outbox entries whose delivery attempt is in flight.
    attempts: HashMap<OutboundRequestId, [u8; 32]>,
    /// How long a DM waits in the outbox.
    expiry: Duration,
}

impl Outbox {
    pub(super) fn new(expiry: Duration) -> Self {
        Self {
            entries: BTreeMap::new(),
            attempts: HashMap::new(),
            expiry,
        }
    }

    /// What `/pending` lists.
    /// The messages waiting, each with its recipient's name as `name_of` knows it.
    pub(super) fn items(&self, name_of: impl Fn(&PeerId) -> Option<String>) -> Vec<OutboxItem> {
        self.entries
            .iter()
            .map(|(id, e)| OutboxItem {
                id: hex::encode(id),
                to: e.peer.to_string(),
                to_name: name_of(&e.peer),
                msg: e.msg.clone(),
                ts: e.ts,
                attempts: e.attempts,
                expires: e.expires,
                last_error: e.last_error.clone(),
            })
            .collect()
    }
}

/// A direct message (or a membership control message) not yet acknowledged.
struct OutboxEntry {
    peer: PeerId,
    /// The sealed `Direct` (or `DirectControl`) envelope, sent as is on every attempt.
    envelope: Vec<u8>,
    /// The body, for `/pending` and our own inbox record (for a control
    /// message, what it is: never its keys).
    msg: String,
    /// A control message (a rekey, an invitation): no `dm_*` events, no inbox record.
    control: bool,
    ts: u64,
    expires: u64,
    attempts: u32,
    last_error: Option<String>,
    next_attempt: Instant,
    in_flight: bool,
    /// The caller of `/dm`, answered at the first outcome (delivered, queued or refused).
    reply: Option<oneshot::Sender<Result<DmOutcome, NodeError>>>,
}

impl OutboxEntry {
    fn row(&self, id: [u8; 32]) -> OutboxRow {
        OutboxRow {
            id,
            peer: self.peer.to_string(),
            ts: self.ts,
            expires: self.expires,
            attempts: self.attempts,
            last_error: self.last_error.clone(),
            envelope: self.envelope.clone(),
        }
    }
}

impl EventLoop {
    /// Reads the outbox left by an earlier run (before the loop takes
    /// requests, so `/pending` lists it from the first moment).
    pub(super) async fn load_outbox(&mut self) {
        if self.plain {
            return;
        }
        match self.store.outbox_load().await {
            Ok(rows) => self.outbox_loaded(rows),
            Err(e) => tracing::error!("cannot read the outbox: {e}"),
        }
    }

    fn outbox_loaded(&mut self, rows: Vec<OutboxRow>) {
        let local = *self.swarm.local_peer_id();
        for row in rows {
            let Ok(peer) = row.peer.parse::<PeerId>() else {
                continue;
            };
            let Some(key) = self.pair_key(&peer) else {
                continue;
            };
            let opened = Envelope::decode(&row.envelope)
                .ok()
                .filter(|e| e.sender == local && matches!(e.purpose, Purpose::Direct | Purpose::DirectControl))
                .and_then(|e| {
                    let payload = e.open(&key, e.purpose, &direct_recipient(&peer)).ok()?;
                    Some((e.purpose == Purpose::DirectControl, payload))
                });
            let Some((control, payload)) = opened else {
                tracing::warn!(id = hex::encode(row.id), "an outbox entry does not open; skipped");
                continue;
            };
            let msg = if control {
                crate::control::DirectControl::from_body(&payload.body)
                    .map(|c| c.describe())
                    .unwrap_or_default()
            } else {
                payload.body
            };
            self.outbox.entries.insert(
                row.id,
                OutboxEntry {
                    peer,
                    envelope: row.envelope,
                    msg,
                    control,
                    ts: row.ts,
                    expires: row.expires,
                    attempts: row.attempts,
                    last_error: row.last_error,
                    next_attempt: Instant::now(),
                    in_flight: false,
                    reply: None,
                },
            );
        }
        self.metrics.outbox.set(self.outbox.entries.len() as i64);
        if !self.outbox.entries.is_empty() {
            tracing::info!(count = self.outbox.entries.len(), "direct messages wait in the outbox");
        }
        self.outbox_tick();
    }

    /// Puts a sealed control message (a rekey, an invitation) in the outbox
    /// and sends it; like a DM it is retried until the expiry.
    pub(super) fn queue_control(&mut self, peer: PeerId, envelope: Envelope, describe: String, ts: u64) {
        if self.outbox.entries.len() >= MAX_OUTBOX {
            tracing::warn!(%peer, "the outbox is full: {describe} not sent");
            return;
        }
        let id = envelope.salt;
        let entry = OutboxEntry {
            peer,
            envelope: envelope.encode(),
            msg: describe,
            control: true,
            ts,
            expires: ts + self.outbox.expiry.as_millis() as u64,
            attempts: 0,
            last_error: None,
            next_attempt: Instant::now(),
            in_flight: false,
            reply: None,
        };
        let (store, row) = (self.store.clone(), entry.row(id));
        tokio::spawn(async move {
            if let Err(e) = store.outbox_put(row).await {
                tracing::warn!("cannot write the outbox: {e}");
            }
        });
        self.outbox.entries.insert(id, entry);
        self.metrics.outbox.set(self.outbox.entries.len() as i64);
        self.attempt_dm(id);
    }

    /// `/dm`: seals the message for its recipient, stores it in the outbox, sends it.
    pub(super) async fn send_dm(
        &mut self,
        to: &str,
        msg: String,
        reply: oneshot::Sender<Result<DmOutcome, NodeError>>,
    ) {
        if let Err(e) = crate::commands::validate_message(&msg) {
            let _ = reply.send(Err(e.into()));
            return;
        }
        let peer = match self.resolve_peer(to) {
            Ok(p) => p,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let local = *self.swarm.local_peer_id();
        if peer == local {
            let _ = reply.send(Err(NodeError::SelfDm));
            return;
        }
        if self.outbox.entries.len() >= MAX_OUTBOX {
            let _ = reply.send(Err(NodeError::QueueFull(MAX_OUTBOX)));
            return;
        }
        let Some(key) = self.pair_key(&peer) else {
            let _ = reply.send(Err(NodeError::Unreachable {
                peer: peer.to_string(),
                reason: "its peer id carries no ed25519 key to encrypt to".into(),
            }));
            return;
        };
        let ts = now_ms();
        let payload = Payload {
            seq: 0,
            name: self.name.clone(),
            body: msg,
        };
        let envelope = Envelope::seal(&key, Purpose::Direct, direct_recipient(&peer), local, ts, &payload);
        let id = envelope.salt;
        let entry = OutboxEntry {
            peer,
            envelope: envelope.encode(),
            msg: payload.body,
            control: false,
            ts,
            expires: ts + self.outbox.expiry.as_millis() as u64,
            attempts: 0,
            last_error: None,
            next_attempt: Instant::now(),
            in_flight: false,
            reply: None,
        };
        // Durable before it is sent: a crash from here on loses nothing.
        if let Err(e) = self.store.outbox_put(entry.row(id)).await {
            let _ = reply.send(Err(NodeError::Store(e.to_string())));
            return;
        }
        self.outbox.entries.insert(
            id,
            OutboxEntry {
                reply: Some(reply),
                ..entry
            },
        );
        self.metrics.outbox.set(self.outbox.entries.len() as i64);
        self.attempt_dm(id);
    }

    /// Sends one outbox entry (dialling its recipient's known addresses when not connected).
    fn attempt_dm(&mut self, id: [u8; 32]) {
        let Some(entry) = self.outbox.entries.get_mut(&id) else {
            return;
        };
        entry.attempts += 1;
        entry.in_flight = true;
        let (peer, envelope) = (entry.peer, entry.envelope.clone());
        if !self.swarm.is_connected(&peer) {
            // Where it is now, if the DHT knows (the known addresses may be stale).
            self.rendezvous_find_peer(peer);
            let addrs = self.peers.addrs(&peer);
            if !addrs.is_empty() {
                let opts = DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .addresses(addrs)
                    .build();
                let _ = self.swarm.dial(opts);
            }
        }
        let request = self
            .swarm
            .behaviour_mut()
            .dm
            .send_request(&peer, DmRequest { envelope });
        self.outbox.attempts.insert(request, id);
    }

    /// Sends every waiting DM to `peer` now (it just connected).
    pub(super) fn retry_dms_to(&mut self, peer: &PeerId) {
        let ids: Vec<[u8; 32]> = self
            .outbox
            .entries
            .iter()
            .filter(|(_, e)| &e.peer == peer && !e.in_flight)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.attempt_dm(id);
        }
    }

    /// Fails expired entries; retries those whose backoff has passed and
    /// whose recipient is connected or has a known address; looks up the
    /// others in the DHT.
    pub(super) fn outbox_tick(&mut self) {
        let (now, instant) = (now_ms(), Instant::now());
        let mut expired = Vec::new();
        let mut due = Vec::new();
        let mut unknown = Vec::new();
        for (id, e) in &self.outbox.entries {
            if e.in_flight {
                continue;
            }
            if now >= e.expires {
                expired.push(*id);
            } else if instant >= e.next_attempt {
                if self.swarm.is_connected(&e.peer) || self.peers.has_addrs(&e.peer) {
                    due.push(*id);
                } else {
                    unknown.push(e.peer);
                }
            }
        }
        // No address known: ask the DHT where the recipient is (a connection
        // to it then sends its messages at once).
        for peer in unknown {
            self.rendezvous_find_peer(peer);
        }
        for id in expired {
            let reason = match self.outbox.entries.get(&id) {
                Some(e) => format!(
                    "not delivered before its expiry ({} attempt(s); last error: {})",
                    e.attempts,
                    e.last_error.as_deref().unwrap_or("recipient never seen")
                ),
                None => continue,
            };
            self.dm_failed(id, reason);
        }
        for id in due {
            self.attempt_dm(id);
        }
    }

    pub(super) async fn on_dm(&mut self, event: request_response::Event<DmRequest, DmResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.receive_dm(peer, request, channel).await;
                }
                request_response::Message::Response { request_id, response } => {
                    let Some(id) = self.outbox.attempts.remove(&request_id) else {
                        self.on_control_answer(&request_id, response.result);
                        return;
                    };
                    match response.result {
                        Ok(()) if response.id == id => self.dm_delivered(id).await,
                        Ok(()) => self.dm_refused(id, peer, "acknowledged another message id".into()),
                        Err(reason) => self.dm_refused(id, peer, reason),
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                if let Some(id) = self.outbox.attempts.remove(&request_id) {
                    self.dm_undelivered(id, error.to_string());
                } else {
                    self.on_control_answer(&request_id, Ok(()));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound dm failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// An attempt failed (unreachable, timed out): back off and keep it.
    fn dm_undelivered(&mut self, id: [u8; 32], reason: String) {
        let Some(e) = self.outbox.entries.get_mut(&id) else {
            return;
        };
        e.in_flight = false;
        e.last_error = Some(reason.clone());
        let delay = Duration::from_secs(1 << e.attempts.saturating_sub(1).min(6)).min(MAX_RETRY_DELAY);
        e.next_attempt = Instant::now() + delay;
        tracing::debug!(peer = %e.peer, attempts = e.attempts, "dm not delivered: {reason}");
        let row = e.row(id);
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.outbox_put(row).await {
                tracing::warn!("cannot update the outbox: {e}");
            }
        });
        if let Some(reply) = e.reply.take() {
            let peer = e.peer;
            let _ = reply.send(Ok(DmOutcome {
                id: hex::encode(id),
                queued: true,
            }));
            self.emit(Event::DmQueued {
                to: peer.to_string(),
                id: hex::encode(id),
                reason,
                name: self.name_of(&peer),
            });
        }
    }

    /// The recipient refused the message: it will not take it later either.
    fn dm_refused(&mut self, id: [u8; 32], peer: PeerId, reason: String) {
        if let Some(e) = self.outbox.entries.get_mut(&id) {
            if let Some(reply) = e.reply.take() {
                let _ = reply.send(Err(NodeError::Refused {
                    peer: peer.to_string(),
                    reason: reason.clone(),
                }));
            }
        }
        self.dm_failed(id, format!("refused by the recipient: {reason}"));
    }

    /// Gives a message up: out of the outbox, `dm_failed` reported.
    fn dm_failed(&mut self, id: [u8; 32], reason: String) {
        let Some(e) = self.remove_from_outbox(id) else {
            return;
        };
        if e.control {
            tracing::warn!(peer = %e.peer, "{} not delivered: {reason}", e.msg);
            self.emit(Event::Notice {
                text: format!("{} to {} not delivered: {reason}", e.msg, e.peer),
            });
            return;
        }
        self.metrics.dms_failed.inc();
        if let Some(reply) = e.reply {
            let _ = reply.send(Err(NodeError::Unreachable {
                peer: e.peer.to_string(),
                reason: reason.clone(),
            }));
        }
        self.emit(Event::DmFailed {
            to: e.peer.to_string(),
            id: hex::encode(id),
            reason,
            name: self.name_of(&e.peer),
        });
    }

    fn remove_from_outbox(&mut self, id: [u8; 32]) -> Option<OutboxEntry> {
        let e = self.outbox.entries.remove(&id)?;
        self.metrics.outbox.set(self.outbox.entries.len() as i64);
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.outbox_delete(id).await {
                tracing::warn!("cannot update the outbox: {e}");
            }
        });
        Some(e)
    }

    /// Acknowledged: our copy goes to the inbox, then `dm_sent` is reported.
    async fn dm_delivered(&mut self, id: [u8; 32]) {
        let Some(e) = self.remove_from_outbox(id) else {
            return;
        };
        if e.control {
            tracing::info!(peer = %e.peer, "{} delivered", e.msg);
            return;
        }
        let local = *self.swarm.local_peer_id();
        let name = self.name_of(&e.peer);
        let record = DmRecord {
            msg: e.msg,
            to: Some(e.peer.to_string()),
            to_name: name.clone(),
        };
        let event = Event::DmSent {
            to: e.peer.to_string(),
            id: hex::encode(id),
            name,
        };
        let name = self.name.clone();
        let insert = self.dm_insert(local, &name, e.ts, id, &record, event, Via::Local);
        let outcome = DmOutcome {
            id: hex::encode(id),
            queued: false,
        };
        store_then_reply(&self.store, insert, outcome, e.reply).await;
    }
}
