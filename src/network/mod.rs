//! The event loop: the one task that owns the libp2p [`Swarm`]. It takes
//! [`Request`]s from [`crate::Node`] handles, turns swarm events into
//! [`Event`]s, seals what it publishes, opens what it receives and hands
//! every message to the [`Store`], which reports it once it is durable.

// The NetworkBehaviour derive generates an undocumented event enum.
#[allow(missing_docs)]
pub mod behaviour;
mod catchup;
pub mod codec;
pub mod dm;
mod outbox;
pub mod redial;
pub mod sync;

pub use catchup::{SERVE_BUDGET, SERVE_WINDOW};
pub use outbox::MAX_OUTBOX;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{OutboundRequestId, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, identify, mdns, ping, Multiaddr, PeerId, Swarm};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::config::Config;
use crate::crypto::TopicKeys;
use crate::envelope::{Envelope, Payload, Purpose};
use crate::event::{Event, OutboxItem, PeerSummary};
use crate::keyring::{Keyring, TopicEntry};
use crate::metrics::Metrics;
use crate::node::{DmOutcome, NodeError, Published, Whoami};
use crate::store::{Insert, Retention, Store, Via};
use behaviour::{Behaviour, BehaviourEvent};
use dm::DmResponse;
use redial::{Origin, Redialer};

/// Messages published while no subscribed peer is known, held until one appears.
pub const MAX_QUEUED_PUBLISHES: usize = 1024;
/// Idempotent publishes remembered in memory (the inbox remembers them all).
const MAX_RECENT_CLIENT_KEYS: usize = 4096;
/// Envelopes older than this (by sender timestamp) are refused as replays.
pub const MAX_MESSAGE_AGE_MS: u64 = 24 * 60 * 60 * 1000;
/// Envelopes dated further than this in the future are refused.
pub const MAX_CLOCK_SKEW_MS: u64 = 10 * 60 * 1000;
/// How often the redial schedule runs.
const REDIAL_TICK: Duration = Duration::from_millis(500);
/// Swarm events handled in one go once the swarm is ready, at most: the gossip
/// messages among them are validated together (see `EventLoop::run`).
const MAX_GOSSIP_BURST: usize = 64;

/// What a [`crate::Node`] handle asks of the event loop. Each carries its `reply`.
pub(crate) enum Request {
    Subscribe {
        topic: String,
        secret: Option<String>,
        reply: oneshot::Sender<Result<bool, NodeError>>,
    },
    Unsubscribe {
        topic: String,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    Publish {
        topic: String,
        msg: String,
        /// Set for an idempotent publish.
        client_key: Option<[u8; 32]>,
        reply: oneshot::Sender<Result<Published, NodeError>>,
    },
    Dm {
        to: String,
        msg: String,
        reply: oneshot::Sender<Result<DmOutcome, NodeError>>,
    },
    Pending {
        reply: oneshot::Sender<(Vec<OutboxItem>, BTreeMap<String, usize>)>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerSummary>>,
    },
    Whoami {
        reply: oneshot::Sender<Whoami>,
    },
    Mesh {
        reply: oneshot::Sender<TopicPeers>,
    },
    Shutdown,
}

/// Work finished elsewhere (the store thread) that needs the swarm.
enum Completion {
    /// An inbound DM was stored (or not): answer its sender.
    DmStored {
        channel: ResponseChannel<DmResponse>,
        id: [u8; 32],
        result: Result<(), String>,
    },
    /// What we hold of a topic was read: ask the peer for the rest.
    SyncStart {
        peer: PeerId,
        topic_id: [u8; 32],
        since: u64,
        have: Vec<(u64, [u8; 32])>,
    },
    /// An exchange could not start (the inbox could not be read): drop it, report nothing.
    SyncFailed { peer: PeerId, topic_id: [u8; 32] },
    /// A page of caught-up envelopes is stored: ask for the next one or finish.
    SyncStored {
        peer: PeerId,
        topic_id: [u8; 32],
        new: u64,
        more: bool,
        next: sync::Cursor,
    },
    /// A page for a peer catching up was read: send it.
    SyncServe {
        peer: PeerId,
        topic_id: [u8; 32],
        channel: ResponseChannel<sync::SyncResponse>,
        response: sync::SyncResponse,
    },
}

/// What the loop knows of a peer.
#[derive(Default)]
struct PeerState {
    name: Option<String>,
    addrs: BTreeSet<Multiaddr>,
    /// Addresses mDNS currently vouches for (empty: not seen on the LAN).
    mdns_addrs: BTreeSet<Multiaddr>,
    connected: bool,
}

/// Per subscribed topic: how many connected peers are known to be subscribed,
/// and how many of them are in our gossipsub mesh.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TopicPeers {
    /// Connected peers subscribed to the topic, by topic name.
    pub subscribed: BTreeMap<String, usize>,
    /// Of those, the ones in our mesh (full-message peers), by topic name.
    pub mesh: BTreeMap<String, usize>,
}

/// The loop's state. Fields documented with who holds the other end.
pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    name: String,
    /// From every `Node` handle; the loop ends when all are dropped or on `Shutdown`.
    requests: mpsc::Receiver<Request>,
    /// To stdout, the API's SSE clients and library users (via `Node::events`).
    events: broadcast::Sender<Event>,
    /// Spawned tasks report finished store work here.
    completions_tx: mpsc::Sender<Completion>,
    completions: mpsc::Receiver<Completion>,
    store: Store,
    /// Shared with `Node` handles, which read it to decrypt the inbox.
    keyring: Arc<RwLock<Keyring>>,
    /// Subscribed topics by gossipsub hash.
    topics: HashMap<gossipsub::TopicHash, TopicEntry>,
    /// Publishes waiting for a subscribed peer, per topic hash.
    queued: HashMap<gossipsub::TopicHash, VecDeque<Vec<u8>>>,
    queued_total: usize,
    peers: HashMap<PeerId, PeerState>,
    /// Direct messages not yet acknowledged (persisted in the store's outbox), by id.
    outbox: BTreeMap<[u8; 32], outbox::OutboxEntry>,
    /// Outbox entries whose delivery attempt is in flight.
    dm_attempts: HashMap<OutboundRequestId, [u8; 32]>,
    /// Our identity, for direct-message pair keys.
    identity: libp2p::identity::Keypair,
    /// Pair keys by peer (bounded cache).
    direct_keys: HashMap<PeerId, crate::crypto::Key>,
    /// How long a DM waits in the outbox.
    dm_expiry: Duration,
    /// Catch-up exchanges we are running, by (peer, topic id).
    syncs: HashMap<(PeerId, [u8; 32]), catchup::SyncSession>,
    /// Envelopes served per (peer, topic id) since our last exchange with it finished.
    served: HashMap<(PeerId, [u8; 32]), u64>,
    /// Serving budget per peer: window start and envelopes served in it.
    serve_budget: HashMap<PeerId, (Instant, u64)>,
    /// Which messages catch-up covers.
    retention: Retention,
    /// How often to catch up again while connected.
    sync_interval: Option<Duration>,
    /// Sender timestamp of our last publish (ours never go backwards).
    last_ts: u64,
    listen_addrs: BTreeSet<Multiaddr>,
    /// `--peer` addresses, dialled at start.
    explicit_peers: Vec<Multiaddr>,
    /// Peers to dial again while they are not connected.
    redialer: Redialer,
    /// Client keys of recent idempotent publishes and their message ids (bounded).
    recent_client_keys: HashMap<[u8; 32], String>,
    recent_client_order: VecDeque<[u8; 32]>,
    next_seq: u64,
    /// Benchmark baseline: no envelopes, no inbox (see `Config::plain`).
    plain: bool,
    /// Gossip messages received and not yet validated (see `run`).
    gossip_burst: Vec<(PeerId, gossipsub::MessageId, gossipsub::Message)>,
    /// Counters and gauges, shared with the store and the metrics endpoint.
    metrics: Metrics,
    /// libp2p's own metrics (swarm, gossipsub, identify, ping events).
    libp2p_metrics: libp2p::metrics::Metrics,
}

/// The environment variable that shifts this node's clock by a signed number
/// of milliseconds. A test hook (replay tests make an hour pass with it); never
/// needed in real use.
pub const CLOCK_OFFSET_ENV: &str = "MURMUR_TEST_CLOCK_OFFSET_MS";

/// Unix time in milliseconds (shifted by [`CLOCK_OFFSET_ENV`] when set).
pub fn now_ms() -> u64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let offset = *OFFSET.get_or_init(|| {
        std::env::var(CLOCK_OFFSET_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    now.saturating_add(offset).max(0) as u64
}

/// Whether a sender timestamp is within the accepted window around `now`.
pub fn fresh(ts: u64, now: u64) -> bool {
    fresh_within(ts, now, MAX_MESSAGE_AGE_MS)
}

/// Whether a sender timestamp is at most `max_age` ms old and not too far in the future.
pub fn fresh_within(ts: u64, now: u64, max_age: u64) -> bool {
    ts.saturating_add(max_age) >= now && ts <= now + MAX_CLOCK_SKEW_MS
}

fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

impl EventLoop {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        config: &Config,
        identity: libp2p::identity::Keypair,
        requests: mpsc::Receiver<Request>,
        events: broadcast::Sender<Event>,
        store: Store,
        keyring: Arc<RwLock<Keyring>>,
        next_seq: u64,
        metrics: Metrics,
        libp2p_metrics: libp2p::metrics::Metrics,
    ) -> Self {
        let (completions_tx, completions) = mpsc::channel(crate::store::STORE_QUEUE);
        Self {
            swarm,
            name: config.name.clone(),
            requests,
            events,
            completions_tx,
            completions,
            store,
            keyring,
            topics: HashMap::new(),
            queued: HashMap::new(),
            queued_total: 0,
            peers: HashMap::new(),
            outbox: BTreeMap::new(),
            dm_attempts: HashMap::new(),
            identity,
            direct_keys: HashMap::new(),
            dm_expiry: config.dm_expiry,
            syncs: HashMap::new(),
            served: HashMap::new(),
            serve_budget: HashMap::new(),
            retention: config.retention,
            sync_interval: if config.plain { None } else { config.sync_interval },
            last_ts: 0,
            listen_addrs: BTreeSet::new(),
            explicit_peers: config.peers.clone(),
            redialer: Redialer::default(),
            recent_client_keys: HashMap::new(),
            recent_client_order: VecDeque::new(),
            next_seq,
            metrics,
            libp2p_metrics,
            plain: config.plain,
            gossip_burst: Vec::new(),
        }
    }

    fn emit(&self, event: Event) {
        // No receiver is fine: nobody is listening.
        let _ = self.events.send(event);
    }

    /// Runs until shutdown; then closes the store.
    pub(crate) async fn run(mut self) {
        for addr in self.explicit_peers.clone() {
            match peer_of(&addr) {
                // Dialled now by `redial`, and again whenever disconnected.
                Some(peer) => {
                    self.redialer.watch(peer, vec![addr], Origin::Explicit, Instant::now());
                }
                // Without a peer id we cannot tell when it is connected: dial once.
                None => self.dial_explicit(addr),
            }
        }
        self.redial();
        self.load_outbox().await;
        let mut redial = tokio::time::interval(REDIAL_TICK);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resync = tokio::time::interval(self.sync_interval.unwrap_or(Duration::from_secs(3600)));
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.reset();
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => {
                    self.on_swarm_event(event).await;
                    // What else the swarm has ready is handled now, so that the
                    // gossip messages that arrived together are validated
                    // together (one batch of signature checks) before any is
                    // forwarded; then the burst is validated.
                    for _ in 1..MAX_GOSSIP_BURST {
                        match self.swarm.next().now_or_never() {
                            Some(Some(event)) => self.on_swarm_event(event).await,
                            _ => break,
                        }
                    }
                    if !self.gossip_burst.is_empty() {
                        self.validate_gossip_burst().await;
                    }
                }
                request = self.requests.recv() => match request {
                    Some(Request::Shutdown) | None => break,
                    Some(request) => self.on_request(request).await,
                },
                Some(done) = self.completions.recv() => self.on_completion(done).await,
                _ = redial.tick() => {
                    self.redial();
                    self.outbox_tick();
                }
                _ = resync.tick(), if self.sync_interval.is_some() => self.resync(),
            }
        }
        tracing::info!("event loop stopping");
        self.store.close().await;
    }

    fn dial_explicit(&mut self, addr: Multiaddr) {
        if let Err(e) = self.swarm.dial(addr.clone()) {
            tracing::warn!(%addr, "dial failed: {e}");
            self.emit(Event::Error {
                error: format!("could not dial {addr}: {e}"),
            });
        }
    }

    /// Dials the watched peers whose backoff has elapsed.
    fn redial(&mut self) {
        let swarm = &self.swarm;
        let due = self.redialer.due(Instant::now(), |p| swarm.is_connected(p));
        for (peer, addrs) in due {
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .addresses(addrs)
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::trace!(%peer, "redial: {e}");
            }
        }
    }

    async fn on_request(&mut self, request: Request) {
        match request {
            Request::Subscribe { topic, secret, reply } => {
                let _ = reply.send(self.subscribe(&topic, secret.as_deref()));
            }
            Request::Unsubscribe { topic, reply } => {
                let _ = reply.send(self.unsubscribe(&topic));
            }
            Request::Publish {
                topic,
                msg,
                client_key,
                reply,
            } => self.publish(&topic, msg, client_key, reply).await,
            Request::Dm { to, msg, reply } => self.send_dm(&to, msg, reply).await,
            Request::Pending { reply } => {
                // Queued publishes may be for open topics not joined: every
                // topic, joined or not, is in the keyring under its id (the wire topic).
                let keyring = self.keyring.read().expect("keyring lock");
                let publishes = self
                    .queued
                    .iter()
                    .filter_map(|(hash, q)| {
                        let id: [u8; 32] = hex::decode(hash.as_str()).ok()?.try_into().ok()?;
                        Some((keyring.by_id(&id)?.name.clone(), q.len()))
                    })
                    .collect();
                drop(keyring);
                let _ = reply.send((self.outbox_items(), publishes));
            }
            Request::Peers { reply } => {
                let _ = reply.send(self.peer_summaries());
            }
            Request::Whoami { reply } => {
                let _ = reply.send(Whoami {
                    peer: self.swarm.local_peer_id().to_string(),
                    name: self.name.clone(),
                    addrs: self.listen_addrs.iter().map(ToString::to_string).collect(),
                });
            }
            Request::Mesh { reply } => {
                let gossipsub = &self.swarm.behaviour().gossipsub;
                let mut counts = TopicPeers::default();
                for (hash, entry) in &self.topics {
                    counts
                        .mesh
                        .insert(entry.name.clone(), gossipsub.mesh_peers(hash).count());
                    counts
                        .subscribed
                        .insert(entry.name.clone(), subscribed_peers(gossipsub, hash).count());
                }
                let _ = reply.send(counts);
            }
            Request::Shutdown => unreachable!("handled in run"),
        }
    }

    /// Subscribes (or re-keys) a topic; returns whether it is open.
    pub(crate) fn subscribe(&mut self, topic: &str, secret: Option<&str>) -> Result<bool, NodeError> {
        crate::commands::validate_topic(topic)?;
        let open = secret.is_none();
        let keys = TopicKeys::derive(topic, secret.unwrap_or(topic));
        let hash = gossipsub::IdentTopic::new(keys.wire_topic()).hash();
        // Leaving the old topic id first when the secret changed.
        if let Some((old_hash, _)) = self.topics.iter().find(|(h, t)| t.name == topic && **h != hash) {
            let old_hash = old_hash.clone();
            self.topics.remove(&old_hash);
            self.swarm
                .behaviour_mut()
                .gossipsub
                .unsubscribe(&gossipsub::IdentTopic::new(old_hash.into_string()));
        }
        self.keyring
            .write()
            .expect("keyring lock")
            .subscribe(topic, &keys, open)
            .map_err(|e| NodeError::Keyring(e.to_string()))?;
        let entry = self
            .keyring
            .read()
            .expect("keyring lock")
            .topic(topic)
            .cloned()
            .expect("just added");
        self.join(entry)?;
        self.sync_topic_peers(&hash);
        if open {
            tracing::warn!(topic, "open topic: anyone who knows its name can read it");
        }
        Ok(open)
    }

    /// Joins the gossipsub topic of a keyring entry and reports it.
    pub(crate) fn join(&mut self, entry: TopicEntry) -> Result<(), NodeError> {
        let topic = gossipsub::IdentTopic::new(entry.keys().wire_topic());
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        // Scoring (invalid messages above all) counts only in topics with parameters.
        gossipsub
            .set_topic_params(topic.clone(), behaviour::topic_score_params())
            .map_err(|e| NodeError::Network(format!("topic scoring: {e}")))?;
        gossipsub
            .subscribe(&topic)
            .map_err(|e| NodeError::Network(format!("subscribe failed: {e}")))?;
        self.emit(Event::Subscribed {
            topic: entry.name.clone(),
            open: entry.open,
        });
        self.topics.insert(topic.hash(), entry);
        Ok(())
    }

    fn unsubscribe(&mut self, topic: &str) -> Result<(), NodeError> {
        crate::commands::validate_topic(topic)?;
        let Some(hash) = self.topic_hash(topic) else {
            return Err(NodeError::NotSubscribed(topic.to_owned()));
        };
        self.topics.remove(&hash);
        if let Some(q) = self.queued.remove(&hash) {
            self.queued_total -= q.len();
            self.metrics.queued_publishes.set(self.queued_total as i64);
        }
        self.swarm
            .behaviour_mut()
            .gossipsub
            .unsubscribe(&gossipsub::IdentTopic::new(hash.into_string()));
        self.keyring
            .write()
            .expect("keyring lock")
            .unsubscribe(topic)
            .map_err(|e| NodeError::Keyring(e.to_string()))?;
        self.emit(Event::Unsubscribed {
            topic: topic.to_owned(),
        });
        Ok(())
    }

    fn topic_hash(&self, topic: &str) -> Option<gossipsub::TopicHash> {
        self.topics
            .iter()
            .find(|(_, t)| t.name == topic)
            .map(|(h, _)| h.clone())
    }

    async fn publish(
        &mut self,
        topic: &str,
        msg: String,
        client_key: Option<[u8; 32]>,
        reply: oneshot::Sender<Result<Published, NodeError>>,
    ) {
        // An idempotent publish whose client id was just used (the handle
        // checked the inbox, but the first one may not be committed yet).
        if let Some(id) = client_key.and_then(|k| self.recent_client_keys.get(&k)) {
            let _ = reply.send(Ok(Published {
                id: id.clone(),
                queued: false,
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
        let seq = self.next_seq;
        let payload = Payload {
            seq,
            name: self.name.clone(),
            body: msg,
        };
        let local = *self.swarm.local_peer_id();
        // Our timestamps never go backwards, so our messages sort in the order sent.
        self.last_ts = now_ms().max(self.last_ts);
        let envelope = Envelope::seal(&entry.key, Purpose::Topic, entry.id, local, self.last_ts, &payload);
        let bytes = crate::signed::sign(&self.identity, envelope.encode());
        let queued = match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(hash.clone(), bytes.clone())
        {
            Ok(_) => false,
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic | gossipsub::PublishError::AllQueuesFull(_)) => {
                if self.queued_total >= MAX_QUEUED_PUBLISHES {
                    let _ = reply.send(Err(NodeError::QueueFull(MAX_QUEUED_PUBLISHES)));
                    return;
                }
                self.queued.entry(hash).or_default().push_back(bytes.clone());
                self.queued_total += 1;
                self.metrics.queued_publishes.set(self.queued_total as i64);
                true
            }
            Err(e) => {
                let _ = reply.send(Err(NodeError::Network(format!("publish failed: {e}"))));
                return;
            }
        };
        self.next_seq += 1;
        self.metrics.published.inc();
        let id = envelope.id();
        if let Some(key) = client_key {
            if self.recent_client_order.len() >= MAX_RECENT_CLIENT_KEYS {
                if let Some(old) = self.recent_client_order.pop_front() {
                    self.recent_client_keys.remove(&old);
                }
            }
            self.recent_client_keys.insert(key, id.clone());
            self.recent_client_order.push_back(key);
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
            own_seq: Some(self.next_seq),
            client_key,
            event: Some(Event::Published {
                topic: topic.to_owned(),
                id,
                queued,
                open: entry.open,
            }),
            done: None,
        };
        store_then_reply(&self.store, insert, published, Some(reply)).await;
    }

    /// The topic a publish goes to: the subscribed one of that name; else, if
    /// the node holds no secret for that name, its open topic (published
    /// without joining, as the prototype allowed). A name whose secret the
    /// node knows but has left is refused, so text meant for a private group
    /// never falls back to the open topic.
    fn publish_target(&mut self, topic: &str) -> Result<(gossipsub::TopicHash, TopicEntry), NodeError> {
        if let Some(hash) = self.topic_hash(topic) {
            let entry = self.topics[&hash].clone();
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
    fn flush_queued(&mut self, hash: &gossipsub::TopicHash) {
        let Some(queue) = self.queued.get_mut(hash) else {
            return;
        };
        while let Some(bytes) = queue.front() {
            match self
                .swarm
                .behaviour_mut()
                .gossipsub
                .publish(hash.clone(), bytes.clone())
            {
                Ok(_) | Err(gossipsub::PublishError::Duplicate) => {
                    queue.pop_front();
                    self.queued_total -= 1;
                    self.metrics.queued_publishes.set(self.queued_total as i64);
                }
                Err(e) => {
                    tracing::debug!("queued publish still waiting: {e}");
                    break;
                }
            }
        }
        if queue.is_empty() {
            self.queued.remove(hash);
        }
    }

    /// Finds a peer by peer id or by (case-insensitive) display name.
    fn resolve_peer(&self, to: &str) -> Result<PeerId, NodeError> {
        if let Ok(peer) = to.parse::<PeerId>() {
            return Ok(peer);
        }
        let matches: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, s)| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(to)))
            .map(|(p, _)| *p)
            .collect();
        match matches.as_slice() {
            [one] => Ok(*one),
            [] => Err(NodeError::UnknownPeer(to.to_owned())),
            many => Err(NodeError::AmbiguousPeer(to.to_owned(), many.len())),
        }
    }

    fn peer_summaries(&self) -> Vec<PeerSummary> {
        let mut peers: Vec<PeerSummary> = self
            .peers
            .iter()
            .filter(|(_, s)| s.connected)
            .map(|(p, s)| PeerSummary {
                peer: p.to_string(),
                name: s.name.clone(),
                addrs: s.addrs.iter().map(ToString::to_string).collect(),
            })
            .collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name).then(a.peer.cmp(&b.peer)));
        peers
    }

    async fn on_completion(&mut self, done: Completion) {
        match done {
            Completion::DmStored { channel, id, result } => {
                if self
                    .swarm
                    .behaviour_mut()
                    .dm
                    .send_response(channel, DmResponse { id, result })
                    .is_err()
                {
                    tracing::debug!("dm sender went away before the acknowledgement");
                }
            }
            Completion::SyncStart {
                peer,
                topic_id,
                since,
                have,
            } => self.sync_started(peer, topic_id, since, have),
            Completion::SyncFailed { peer, topic_id } => {
                self.syncs.remove(&(peer, topic_id));
            }
            Completion::SyncStored {
                peer,
                topic_id,
                new,
                more,
                next,
            } => self.sync_page_stored(peer, topic_id, new, more, next),
            Completion::SyncServe {
                peer,
                topic_id,
                channel,
                response,
            } => self.sync_serve(peer, topic_id, channel, response),
        }
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        use libp2p::metrics::Recorder;
        self.libp2p_metrics.record(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address.with_p2p(*self.swarm.local_peer_id()).unwrap_or_else(|a| a);
                self.listen_addrs.insert(full.clone());
                self.emit(Event::Listening { addr: full.to_string() });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                let full = address.with_p2p(*self.swarm.local_peer_id()).unwrap_or_else(|a| a);
                self.listen_addrs.remove(&full);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                if self.graylisted(&peer_id) {
                    // Its score is remembered across connections: still graylisted, so refused.
                    self.disconnect_graylisted(peer_id);
                    return;
                }
                self.redialer.connected(&peer_id);
                let state = self.peers.entry(peer_id).or_default();
                if let ConnectedPoint::Dialer { address, .. } = &endpoint {
                    state.addrs.insert(address.clone());
                }
                if num_established.get() == 1 {
                    state.connected = true;
                    self.metrics.peers.inc();
                    self.emit(Event::PeerConnected {
                        peer: peer_id.to_string(),
                    });
                    self.retry_dms_to(&peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    self.served.retain(|(p, _), _| *p != peer_id);
                }
                let reported = self.peers.get(&peer_id).is_some_and(|s| s.connected);
                if num_established == 0 && reported {
                    if let Some(state) = self.peers.get_mut(&peer_id) {
                        state.connected = false;
                    }
                    self.metrics.peers.dec();
                    self.emit(Event::PeerDisconnected {
                        peer: peer_id.to_string(),
                    });
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                let explicit = peer_id.is_some_and(|p| self.explicit_peers.iter().any(|a| peer_of(a) == Some(p)));
                if explicit || peer_id.is_none() {
                    tracing::warn!(?peer_id, "could not connect to a --peer address: {error}");
                } else {
                    tracing::debug!(?peer_id, "outgoing connection failed: {error}");
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event).await,
            other => tracing::trace!(?other, "swarm event"),
        }
    }

    async fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        use libp2p::metrics::Recorder;
        match &event {
            BehaviourEvent::Gossipsub(e) => self.libp2p_metrics.record(e),
            BehaviourEvent::Identify(e) => self.libp2p_metrics.record(e),
            BehaviourEvent::Ping(e) => self.libp2p_metrics.record(e),
            BehaviourEvent::Dm(_) | BehaviourEvent::Sync(_) | BehaviourEvent::Mdns(_) | BehaviourEvent::Limits(_) => {}
        }
        match event {
            BehaviourEvent::Gossipsub(event) => self.on_gossipsub(event).await,
            BehaviourEvent::Dm(event) => self.on_dm(event).await,
            BehaviourEvent::Sync(event) => self.on_sync(event).await,
            BehaviourEvent::Mdns(event) => self.on_mdns(event),
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                if info.protocol_version != behaviour::IDENTIFY_PROTOCOL {
                    tracing::debug!(%peer_id, protocol = info.protocol_version, "peer speaks another protocol version");
                }
                let state = self.peers.entry(peer_id).or_default();
                state.name = behaviour::name_from_agent_version(&info.agent_version);
                for addr in info.listen_addrs {
                    if !is_unspecified(&addr) {
                        state.addrs.insert(addr);
                    }
                }
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(e @ (ping::Failure::Timeout | ping::Failure::Other { .. })),
            }) => {
                // A connection that stops answering pings is dead (a pulled cable
                // sends no FIN): close it so the peer is redialled when it is back.
                tracing::debug!(%peer, "ping failed ({e}); closing the connection");
                self.swarm.close_connection(connection);
            }
            BehaviourEvent::Identify(_) | BehaviourEvent::Ping(_) => {}
            BehaviourEvent::Limits(never) => match never {},
        }
    }

    /// Whether gossipsub's score of `peer` is below the graylist threshold.
    fn graylisted(&self, peer: &PeerId) -> bool {
        self.swarm
            .behaviour()
            .gossipsub
            .peer_score(peer)
            .is_some_and(|score| score < behaviour::GRAYLIST_THRESHOLD)
    }

    /// Closes every connection to a graylisted peer: gossipsub already ignores
    /// its RPCs, but would still read and verify each one it sends.
    fn disconnect_graylisted(&mut self, peer: PeerId) {
        let score = self.swarm.behaviour().gossipsub.peer_score(&peer).unwrap_or_default();
        tracing::info!(%peer, score, "peer graylisted (invalid messages); disconnecting");
        self.metrics.graylisted.inc();
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    fn on_mdns(&mut self, event: mdns::Event) {
        match event {
            mdns::Event::Discovered(list) => {
                let mut found: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in list {
                    if &peer != self.swarm.local_peer_id() {
                        found.entry(peer).or_default().push(addr);
                    }
                }
                let now = Instant::now();
                for (peer, mut addrs) in found {
                    // Bounded: at most MAX_LAN_PEERS peers (with MAX_ADDRS_PER_PEER
                    // addresses each) are tracked, however many mDNS announces.
                    if !self.redialer.watch(peer, addrs.clone(), Origin::Lan, now) {
                        tracing::debug!(%peer, "too many LAN peers tracked; ignoring an mDNS discovery");
                        continue;
                    }
                    let state = self.peers.entry(peer).or_default();
                    let first_sight = state.mdns_addrs.is_empty();
                    addrs.retain(|a| {
                        let room = state.mdns_addrs.len() < redial::MAX_ADDRS_PER_PEER;
                        room && state.mdns_addrs.insert(a.clone())
                    });
                    state.addrs.extend(addrs.iter().cloned());
                    if first_sight && !addrs.is_empty() {
                        self.emit(Event::PeerDiscovered {
                            peer: peer.to_string(),
                            addr: addrs[0].to_string(),
                            via: "mdns".into(),
                        });
                    }
                }
                self.redial();
            }
            mdns::Event::Expired(list) => {
                for (peer, addr) in list {
                    let Some(state) = self.peers.get_mut(&peer) else {
                        continue;
                    };
                    state.mdns_addrs.remove(&addr);
                    state.addrs.remove(&addr);
                    if state.mdns_addrs.is_empty() {
                        self.redialer.forget(&peer);
                        if !state.connected {
                            self.peers.remove(&peer);
                        }
                    }
                }
            }
        }
    }

    async fn on_gossipsub(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                // Checked with the others of its burst (see `run`).
                self.gossip_burst.push((propagation_source, message_id, message));
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                tracing::debug!(%peer_id, %topic, "peer subscribed");
                self.flush_queued(&topic);
                self.start_sync(peer_id, &topic, true);
            }
            gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            } => {
                tracing::warn!(%peer_id, ?failed_messages, "slow peer: gossip messages to it were dropped");
            }
            other => tracing::trace!(?other, "gossipsub event"),
        }
    }

    /// Validates, opens and stores the gossip messages received since the
    /// last call, and reports each verdict to gossipsub (which forwards the
    /// accepted ones). Their signatures are checked together.
    async fn validate_gossip_burst(&mut self) {
        let burst = std::mem::take(&mut self.gossip_burst);
        let mut verdicts: Vec<Result<Option<Insert>, &'static str>> = Vec::with_capacity(burst.len());
        let mut frames: Vec<(&TopicEntry, &[u8])> = Vec::new();
        let mut framed = Vec::new();
        for (i, (_, _, message)) in burst.iter().enumerate() {
            match self.topics.get(&message.topic) {
                None => {
                    self.metrics.drop("unknown_topic");
                    verdicts.push(Err("unknown topic"));
                }
                Some(entry) if self.plain => {
                    self.emit(Event::Message {
                        topic: entry.name.clone(),
                        from: String::new(),
                        peer: message.source.map(|p| p.to_string()).unwrap_or_default(),
                        msg: String::from_utf8_lossy(&message.data).into_owned(),
                        id: hex::encode(crate::crypto::sha256(&message.data)),
                        ts: now_ms(),
                        via: Via::Gossip.as_str().into(),
                    });
                    verdicts.push(Ok(None));
                }
                Some(entry) => {
                    frames.push((entry, &message.data));
                    framed.push(i);
                    verdicts.push(Ok(None));
                }
            }
        }
        for (i, opened) in framed.into_iter().zip(self.open_topic_messages(&frames, Via::Gossip)) {
            verdicts[i] = opened.map(Some);
        }
        for ((propagation_source, message_id, _), verdict) in burst.into_iter().zip(verdicts) {
            let acceptance = match verdict {
                Ok(insert) => {
                    if let Some(insert) = insert {
                        if self.store.insert(insert).await.is_err() {
                            tracing::error!("inbox closed; message not stored");
                        }
                    }
                    self.metrics.received.inc();
                    gossipsub::MessageAcceptance::Accept
                }
                Err(reason) => {
                    tracing::debug!(%propagation_source, reason, "dropped a gossip message");
                    gossipsub::MessageAcceptance::Reject
                }
            };
            let rejected = acceptance == gossipsub::MessageAcceptance::Reject;
            self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                &message_id,
                &propagation_source,
                acceptance,
            );
            if rejected && self.graylisted(&propagation_source) && self.swarm.is_connected(&propagation_source) {
                self.disconnect_graylisted(propagation_source);
            }
        }
    }

    /// Checks signed topic frames as every received one is checked (format,
    /// author signature, age, key) and makes their inbox inserts, in order.
    /// Envelopes from catch-up may be as old as the retention window, live
    /// ones at most [`MAX_MESSAGE_AGE_MS`]. `Err` names the drop reason, which
    /// is counted.
    ///
    /// Gossip and catch-up alike: a frame's signature must be its author's.
    /// Gossipsub is anonymous and has deduplicated, so this runs once per
    /// message, not once per copy, and a burst's signatures are checked
    /// together ([`crate::signed::verify_all`]).
    fn open_topic_messages(&self, frames: &[(&TopicEntry, &[u8])], via: Via) -> Vec<Result<Insert, &'static str>> {
        let decoded: Vec<_> = frames.iter().map(|(_, data)| crate::signed::decode(data)).collect();
        let pending: Vec<&crate::signed::Unverified> = decoded.iter().filter_map(|d| d.as_ref().ok()).collect();
        let mut signed = crate::signed::verify_all(&pending).into_iter();
        frames
            .iter()
            .zip(decoded)
            .map(|((entry, data), decoded)| {
                // A decoded frame takes the next signature verdict, in order.
                let checked = decoded.and_then(|frame| match signed.next() {
                    Some(true) => Ok(frame.envelope),
                    _ => Err(crate::signed::FrameError::BadSignature),
                });
                match checked {
                    Ok(envelope) => self.open_signed(entry, data, envelope, via),
                    Err(crate::signed::FrameError::BadSignature) => {
                        self.metrics.drop("bad_signature");
                        Err("signature is not the sender's")
                    }
                    Err(_) => {
                        self.metrics.drop("malformed");
                        Err("malformed envelope")
                    }
                }
            })
            .collect()
    }

    /// The checks after the signature: age and key; then the insert.
    fn open_signed(
        &self,
        entry: &TopicEntry,
        data: &[u8],
        envelope: Envelope,
        via: Via,
    ) -> Result<Insert, &'static str> {
        let max_age = if via == Via::Sync {
            self.retention.max_age_ms
        } else {
            MAX_MESSAGE_AGE_MS
        };
        if !fresh_within(envelope.ts, now_ms(), max_age) {
            self.metrics.drop("stale");
            return Err("timestamp out of the accepted window");
        }
        let payload = match envelope.open(&entry.key, Purpose::Topic, &entry.id) {
            Ok(p) => p,
            Err(_) => {
                self.metrics.drop("decrypt_failed");
                return Err("does not open with the topic key");
            }
        };
        let event = Event::Message {
            topic: entry.name.clone(),
            from: payload.name,
            peer: envelope.sender.to_string(),
            msg: payload.body,
            id: envelope.id(),
            ts: envelope.ts,
            via: via.as_str().into(),
        };
        Ok(Insert {
            id: envelope.salt,
            purpose: Purpose::Topic,
            topic_id: entry.id,
            ts: envelope.ts,
            envelope: data.to_vec(),
            via,
            own_seq: None,
            client_key: None,
            event: Some(event),
            done: None,
        })
    }
}

/// Queues `insert` and, once it is durable, answers `reply` (if any) with
/// `value`, or with the store's error.
async fn store_then_reply<T: Send + 'static>(
    store: &Store,
    insert: Insert,
    value: T,
    reply: Option<oneshot::Sender<Result<T, NodeError>>>,
) {
    let Some(reply) = reply else {
        if let Err(e) = store.insert(insert).await {
            tracing::error!("{e}");
        }
        return;
    };
    let (done, stored) = oneshot::channel();
    if let Err(e) = store
        .insert(Insert {
            done: Some(done),
            ..insert
        })
        .await
    {
        let _ = reply.send(Err(NodeError::Store(e.to_string())));
        return;
    }
    tokio::spawn(async move {
        let result = match stored.await {
            Ok(Ok(_)) => Ok(value),
            Ok(Err(e)) => Err(NodeError::Store(e)),
            Err(_) => Err(NodeError::Stopped),
        };
        let _ = reply.send(result);
    });
}

/// The connected peers gossipsub knows to be subscribed to `hash`.
fn subscribed_peers<'a>(
    gossipsub: &'a gossipsub::Behaviour,
    hash: &'a gossipsub::TopicHash,
) -> impl Iterator<Item = PeerId> + 'a {
    gossipsub
        .all_peers()
        .filter(move |(_, topics)| topics.contains(&hash))
        .map(|(p, _)| *p)
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_window() {
        let now = 10 * MAX_MESSAGE_AGE_MS;
        assert!(fresh(now, now));
        assert!(fresh(now - MAX_MESSAGE_AGE_MS, now));
        assert!(!fresh(now - MAX_MESSAGE_AGE_MS - 1, now));
        assert!(fresh(now + MAX_CLOCK_SKEW_MS, now));
        assert!(!fresh(now + MAX_CLOCK_SKEW_MS + 1, now));
    }
}
