//! Publishing: seal, sign and send a topic message, store our copy, and hold
//! it in a queue while no subscribed peer is there; idempotent publishes
//! (a client id used once per topic); the `--plain` baseline's publish.

use std::collections::{BTreeMap, HashMap, VecDeque};

use libp2p::gossipsub;
use tokio::sync::oneshot;

use super::request::store_then_reply;
use super::EventLoop;
use crate::clock::now_ms;
use crate::crypto::TopicKeys;
use crate::envelope::{Envelope, Payload, Purpose};
use crate::event::Event;
use crate::keyring::TopicEntry;
use crate::metrics::Metrics;
use crate::reply::{NodeError, Published};
use crate::store::{Insert, Member, Via};

/// Messages published while no subscribed peer is known, held until one appears.
pub const MAX_QUEUED_PUBLISHES: usize = 1024;
/// Idempotent publishes remembered in memory (the inbox remembers them all).
const MAX_RECENT_CLIENT_KEYS: usize = 4096;

/// A signed frame waiting for a subscribed peer.
struct Queued {
    /// The message id (the envelope's salt).
    id: [u8; 32],
    frame: Vec<u8>,
    /// A user's message (counted in `/pending`), not a control message.
    shown: bool,
}

/// The publishing side's state.
pub(super) struct Publisher {
    /// Signed frames waiting for a subscribed peer, per topic hash.
    queued: HashMap<gossipsub::TopicHash, VecDeque<Queued>>,
    queued_total: usize,
    /// Client keys of recent idempotent publishes and their message ids (bounded).
    recent_client_keys: HashMap<[u8; 32], [u8; 32]>,
    recent_client_order: VecDeque<[u8; 32]>,
    /// Our next sequence number (persisted with each of our messages).
    next_seq: u64,
    /// Sender timestamp of our last publish (ours never go backwards).
    last_ts: u64,
    metrics: Metrics,
}

impl Publisher {
    pub(super) fn new(next_seq: u64, metrics: Metrics) -> Self {
        Self {
            queued: HashMap::new(),
            queued_total: 0,
            recent_client_keys: HashMap::new(),
            recent_client_order: VecDeque::new(),
            next_seq,
            last_ts: 0,
            metrics,
        }
    }

    /// Drops what waits for a topic we leave; returns how many of those
    /// were messages a user sees (not control messages).
    pub(super) fn forget_topic(&mut self, hash: &gossipsub::TopicHash) -> usize {
        let Some(q) = self.queued.remove(hash) else {
            return 0;
        };
        self.queued_total -= q.len();
        self.metrics.queued_publishes.set(self.queued_total as i64);
        q.iter().filter(|m| m.shown).count()
    }

    fn enqueue(
        &mut self,
        hash: gossipsub::TopicHash,
        id: [u8; 32],
        frame: Vec<u8>,
        shown: bool,
    ) -> Result<(), NodeError> {
        if self.queued_total >= MAX_QUEUED_PUBLISHES {
            return Err(NodeError::QueueFull(MAX_QUEUED_PUBLISHES));
        }
        self.queued
            .entry(hash)
            .or_default()
            .push_back(Queued { id, frame, shown });
        self.queued_total += 1;
        self.metrics.queued_publishes.set(self.queued_total as i64);
        Ok(())
    }

    /// Whether the message `id` still waits for a subscribed peer.
    pub(super) fn is_queued(&self, id: &[u8; 32]) -> bool {
        self.queued.values().flatten().any(|m| m.id == *id)
    }

    fn remember_client_key(&mut self, key: [u8; 32], id: [u8; 32]) {
        if self.recent_client_order.len() >= MAX_RECENT_CLIENT_KEYS {
            if let Some(old) = self.recent_client_order.pop_front() {
                self.recent_client_keys.remove(&old);
            }
        }
        self.recent_client_keys.insert(key, id);
        self.recent_client_order.push_back(key);
    }
}

impl EventLoop {
    pub(super) async fn publish(
        &mut self,
        topic: &str,
        msg: String,
        client_key: Option<[u8; 32]>,
        reply: oneshot::Sender<Result<Published, NodeError>>,
    ) {
        // An idempotent publish whose client id was just used (the handle
        // checked the inbox, but the first one may not be committed yet):
        // the first one's id, and whether it still waits for a peer.
        if let Some(id) = client_key.and_then(|k| self.publisher.recent_client_keys.get(&k)) {
            let _ = reply.send(Ok(Published {
                id: hex::encode(id),
                queued: self.publisher.is_queued(id),
                duplicate: true,
            }));
            return;
        }
        if let Err(e) = crate::commands::validate_topic(topic)
            .map_err(NodeError::from)
            .and_then(|()| crate::commands::validate_message(&msg).map_err(NodeError::from))
        {
            let _ = reply.send(Err(e));
            return;
        }
        let (hash, entry) = match self.publish_target(topic) {
            Ok(target) => target,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        if self.plain {
            self.publish_plain(hash, topic, msg, reply);
            return;
        }
        let (envelope, bytes, queued) = match self.seal_and_send(&hash, &entry, Purpose::Topic, msg) {
            Ok(sent) => sent,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        self.metrics.published.inc();
        let id = envelope.id();
        if let Some(key) = client_key {
            self.publisher.remember_client_key(key, envelope.salt);
        }
        let published = Published {
            id: id.clone(),
            queued,
            duplicate: false,
        };
        let insert = Insert {
            id: envelope.salt,
            purpose: Purpose::Topic,
            topic_id: entry.id,
            ts: envelope.ts,
            envelope: bytes,
            via: Via::Local,
            own_seq: Some(self.publisher.next_seq),
            client_key,
            event: Some(Event::Published {
                topic: topic.to_owned(),
                id,
                queued,
                open: entry.open,
            }),
            done: None,
            member: self.me_if_new_member(entry.id),
        };
        store_then_reply(&self.store, insert, published, Some(reply)).await;
    }

    /// Seals `body` under the topic `entry` for `purpose` (a message, or a
    /// control message), signs it, and publishes it on `hash`, or queues it
    /// while no subscribed peer is there. Takes our next sequence number and
    /// timestamp. Returns the envelope, the signed frame, and whether it was
    /// queued.
    ///
    /// # Errors
    /// A full queue, or gossipsub refusing the frame.
    pub(super) fn seal_and_send(
        &mut self,
        hash: &gossipsub::TopicHash,
        entry: &TopicEntry,
        purpose: Purpose,
        body: String,
    ) -> Result<(Envelope, Vec<u8>, bool), NodeError> {
        let payload = Payload {
            seq: self.publisher.next_seq,
            name: self.name.clone(),
            body,
        };
        let local = *self.swarm.local_peer_id();
        // Our timestamps never go backwards, so our messages sort in the order sent.
        self.publisher.last_ts = now_ms().max(self.publisher.last_ts);
        let envelope = Envelope::seal(&entry.key, purpose, entry.id, local, self.publisher.last_ts, &payload);
        let bytes = crate::signed::sign(&self.identity, envelope.encode());
        let queued = match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(hash.clone(), bytes.clone())
        {
            Ok(_) => false,
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic | gossipsub::PublishError::AllQueuesFull(_)) => {
                self.publisher
                    .enqueue(hash.clone(), envelope.salt, bytes.clone(), purpose.is_shown())?;
                true
            }
            Err(e) => return Err(NodeError::Network(format!("publish failed: {e}"))),
        };
        self.publisher.next_seq += 1;
        Ok((envelope, bytes, queued))
    }

    /// The sequence number our next message will take.
    pub(super) fn publisher_next_seq(&self) -> u64 {
        self.publisher.next_seq
    }

    /// This node as a member of a topic's roster (no `member_joined` for ourselves).
    pub(super) fn me_as_member(&self) -> Member {
        Member {
            peer: self.swarm.local_peer_id().to_string(),
            name: self.name.clone(),
            event: None,
        }
    }

    /// This node as a new member of the roster of `topic_id`, to store with
    /// our message; `None` once the roster holds us (the row is stored, and
    /// each message would only cost a peer id encoding and a roster write).
    fn me_if_new_member(&mut self, topic_id: [u8; 32]) -> Option<Member> {
        let local = *self.swarm.local_peer_id();
        let name = self.name.clone();
        self.add_member(topic_id, local, name).then(|| self.me_as_member())
    }

    /// The topic a publish goes to: the subscribed one of that name; else, if
    /// the node holds no secret for that name, its open topic (published
    /// without joining, as the prototype allowed). A name whose secret the
    /// node knows but has left is refused, so text meant for a private group
    /// never falls back to the open topic.
    fn publish_target(&mut self, topic: &str) -> Result<(gossipsub::TopicHash, TopicEntry), NodeError> {
        if let Some(hash) = self.topics.hash_of(topic) {
            let entry = self.topics.get(&hash).cloned().expect("subscribed");
            return Ok((hash, entry));
        }
        let mut keyring = self.keyring.write().expect("keyring lock");
        if keyring.all().any(|e| e.name == topic && !e.open) {
            return Err(NodeError::NotSubscribed(topic.to_owned()));
        }
        let keys = TopicKeys::derive(topic, topic);
        keyring
            .remember(topic, &keys, true)
            .map_err(|e| NodeError::Keyring(e.to_string()))?;
        let entry = keyring.by_id(&keys.id).cloned().expect("just remembered");
        tracing::info!(topic, "publishing to the open topic without subscribing");
        Ok((gossipsub::IdentTopic::new(keys.wire_topic()).hash(), entry))
    }

    /// The benchmark baseline's publish: the body as it is, nothing stored.
    fn publish_plain(
        &mut self,
        hash: gossipsub::TopicHash,
        topic: &str,
        msg: String,
        reply: oneshot::Sender<Result<Published, NodeError>>,
    ) {
        let id = hex::encode(crate::crypto::sha256(msg.as_bytes()));
        let queued = match self.swarm.behaviour_mut().gossipsub.publish(hash, msg.into_bytes()) {
            Ok(_) => false,
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => true,
            Err(e) => {
                let _ = reply.send(Err(NodeError::Network(format!("publish failed: {e}"))));
                return;
            }
        };
        self.metrics.published.inc();
        self.emit(Event::Published {
            topic: topic.to_owned(),
            id: id.clone(),
            queued,
            open: false,
        });
        let _ = reply.send(Ok(Published {
            id,
            queued,
            duplicate: false,
        }));
    }

    /// Sends what was queued for `hash` now that a subscribed peer is there.
    pub(super) fn flush_queued(&mut self, hash: &gossipsub::TopicHash) {
        let Some(queue) = self.publisher.queued.get_mut(hash) else {
            return;
        };
        while let Some(queued) = queue.front() {
            match self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(hash.clone(), queued.frame.clone())
            {
                Ok(_) | Err(gossipsub::PublishError::Duplicate) => {
                    queue.pop_front();
                    self.publisher.queued_total -= 1;
                    self.metrics.queued_publishes.set(self.publisher.queued_total as i64);
                }
                Err(e) => {
                    tracing::debug!("queued publish still waiting: {e}");
                    break;
                }
            }
        }
        if queue.is_empty() {
            self.publisher.queued.remove(hash);
        }
    }

    /// How many of the user's publishes wait for a peer, by topic name
    /// (control messages waiting beside them are not counted). Queued
    /// publishes may be for open topics not joined: every topic, joined or
    /// not, is in the keyring under its id (the wire topic).
    pub(super) fn queued_publishes(&self) -> BTreeMap<String, usize> {
        let keyring = self.keyring.read().expect("keyring lock");
        self.publisher
            .queued
            .iter()
            .filter_map(|(hash, q)| {
                let id: [u8; 32] = hex::decode(hash.as_str()).ok()?.try_into().ok()?;
                let shown = q.iter().filter(|queued| queued.shown).count();
                Some((keyring.by_id(&id)?.name.clone(), shown))
            })
            .filter(|(_, shown)| *shown > 0)
            .collect()
    }
}
