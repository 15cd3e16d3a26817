//! The event loop: the one task that owns the libp2p [`Swarm`]. It takes
//! [`Request`]s from [`crate::Node`] handles and swarm events from the
//! network, and hands each to the room that owns it:
//!
//! | room | owns |
//! |---|---|
//! | [`request`] | the [`Request`]s of the handles, and replies after a commit |
//! | `topics` | subscribed topics, joining and leaving them |
//! | `publish` | publishing, the queue of publishes waiting for a peer, idempotent publishes |
//! | `gossip` | gossipsub events; validating received messages in bursts |
//! | `peers` | what is known of each peer: names, addresses, connections, graylisting |
//! | `discovery` | finding peers: mDNS, `--peer` and `--bootstrap` addresses, redialling |
//! | `dht` | the Kademlia DHT: bootstrap, routing table kept on disk, provider queries |
//! | `rendezvous` | topic rendezvous and peer routing in the DHT: what to announce, when to look up |
//! | `relay` | relays: choosing them, reserving slots, circuit addresses; the relay server's events |
//! | `nat` | reachability: external addresses, AutoNAT, UPnP, `nat_status`, the DHT's mode |
//! | `outbox` | sending direct messages: the outbox and its retries |
//! | `direct` | receiving direct messages, pair keys, the inbox record of a DM |
//! | `catchup` | catch-up exchanges (`/murmur/sync/1`), both sides |
//! | `membership` | topic rosters, epochs: rekey, invite, grace periods, members who were away |
//!
//! Rooms keep their state in a struct of their own whose fields the other
//! rooms cannot see; this file keeps the loop, its construction and the
//! dispatch. See docs/architecture.md for the map.

// The NetworkBehaviour derive generates an undocumented event enum.
#[allow(missing_docs)]
pub mod behaviour;
mod catchup;
pub mod codec;
pub mod dht;
mod direct;
mod discovery;
pub mod dm;
mod gossip;
mod membership;
pub mod nat;
mod outbox;
mod peers;
mod publish;
pub mod redial;
pub mod relay;
pub mod rendezvous;
mod request;
pub mod sync;
mod topics;

pub use catchup::{SERVE_BUDGET, SERVE_WINDOW};
pub use membership::DEFAULT_GRACE;
pub use outbox::MAX_OUTBOX;
pub use publish::MAX_QUEUED_PUBLISHES;
pub(crate) use request::Request;

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, Swarm};
use tokio::sync::{broadcast, mpsc};

use crate::config::Config;
use crate::event::Event;
use crate::keyring::Keyring;
use crate::metrics::Metrics;
use crate::store::Store;
use behaviour::{Behaviour, BehaviourEvent};

/// How often the redial schedule and the outbox's retries run.
const REDIAL_TICK: Duration = Duration::from_millis(500);
/// Swarm events handled in one go once the swarm is ready, at most: the gossip
/// messages among them are validated together (see `EventLoop::run`).
const MAX_GOSSIP_BURST: usize = 64;

/// Work finished elsewhere (a spawned task waiting on the store) that needs
/// the swarm again, addressed to the room that started it.
enum Completion {
    /// For direct messages (an inbound DM stored: acknowledge it).
    Direct(direct::Completion),
    /// For catch-up (history read or a page stored).
    Catchup(catchup::Completion),
}

/// The loop's state: what every room shares, then one field per room.
pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    name: String,
    /// Our identity, for frame signatures and direct-message pair keys.
    identity: libp2p::identity::Keypair,
    /// From every `Node` handle; the loop ends when all are dropped or on `Shutdown`.
    requests: mpsc::Receiver<Request>,
    /// To stdout, the API's SSE clients and library users (via `Node::events`).
    events: broadcast::Sender<Arc<Event>>,
    /// Spawned tasks report finished store work here.
    completions_tx: mpsc::Sender<Completion>,
    completions: mpsc::Receiver<Completion>,
    store: Store,
    /// Shared with `Node` handles, which read it to decrypt the inbox.
    keyring: Arc<RwLock<Keyring>>,
    /// Benchmark baseline: no envelopes, no inbox (see `Config::plain`).
    plain: bool,
    /// Counters and gauges, shared with the store and the metrics endpoint.
    metrics: Metrics,
    /// libp2p's own metrics (swarm, gossipsub, identify, ping events).
    libp2p_metrics: libp2p::metrics::Metrics,
    /// Our listen addresses, each ending in `/p2p/<our id>`.
    listen_addrs: BTreeSet<Multiaddr>,
    topics: topics::Topics,
    publisher: publish::Publisher,
    gossip: gossip::Burst,
    peers: peers::PeerBook,
    discovery: discovery::Discovery,
    outbox: outbox::Outbox,
    pair_keys: direct::PairKeys,
    catchup: catchup::Catchup,
    membership: membership::Membership,
    dht: dht::Dht,
    rendezvous: rendezvous::Rendezvous,
    relays: relay::Relays,
    nat: nat::Nat,
    /// `--external-addr` addresses, declared at start.
    external_addrs: Vec<Multiaddr>,
}

impl EventLoop {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        config: &Config,
        identity: libp2p::identity::Keypair,
        requests: mpsc::Receiver<Request>,
        events: broadcast::Sender<Arc<Event>>,
        store: Store,
        keyring: Arc<RwLock<Keyring>>,
        next_seq: u64,
        metrics: Metrics,
        libp2p_metrics: libp2p::metrics::Metrics,
    ) -> Self {
        let (completions_tx, completions) = mpsc::channel(crate::store::STORE_QUEUE);
        let sync_interval = if config.plain { None } else { config.sync_interval };
        Self {
            swarm,
            name: config.name.clone(),
            identity,
            requests,
            events,
            completions_tx,
            completions,
            store,
            keyring,
            plain: config.plain,
            publisher: publish::Publisher::new(next_seq, metrics.clone()),
            metrics,
            libp2p_metrics,
            listen_addrs: BTreeSet::new(),
            topics: topics::Topics::default(),
            gossip: gossip::Burst::default(),
            peers: peers::PeerBook::default(),
            discovery: discovery::Discovery::new(config.peers.clone()),
            outbox: outbox::Outbox::new(config.dm_expiry),
            pair_keys: direct::PairKeys::default(),
            catchup: catchup::Catchup::new(config.retention, sync_interval),
            membership: membership::Membership::new(config.rekey_grace),
            dht: dht::Dht::new(&config.bootstrap, &config.data_dir),
            rendezvous: rendezvous::Rendezvous::new(crate::clock::now_ms()),
            relays: relay::Relays::new(!config.relay_server),
            nat: nat::Nat::new(
                config.relay_server || !config.external_addrs.is_empty(),
                config.private_wan,
            ),
            external_addrs: config.external_addrs.clone(),
        }
    }

    fn emit(&self, event: Event) {
        // No receiver is fine: nobody is listening.
        let _ = self.events.send(Arc::new(event));
    }

    /// Runs until shutdown; then closes every connection and the store.
    pub(crate) async fn run(mut self) {
        let external = std::mem::take(&mut self.external_addrs);
        self.start_nat(&external);
        self.start_dht();
        self.start_discovery();
        self.load_outbox().await;
        self.load_rosters().await;
        let mut redial = tokio::time::interval(REDIAL_TICK);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let sync_interval = self.catchup.interval();
        let mut resync = tokio::time::interval(sync_interval.unwrap_or(Duration::from_secs(3600)));
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
                    if !self.gossip.is_empty() {
                        self.validate_gossip_burst().await;
                    }
                }
                request = self.requests.recv() => match request {
                    Some(Request::Shutdown) | None => break,
                    Some(request) => self.on_request(request).await,
                },
                Some(done) = self.completions.recv() => match done {
                    Completion::Direct(done) => self.on_direct_completion(done),
                    Completion::Catchup(done) => self.on_catchup_completion(done),
                },
                _ = redial.tick() => {
                    self.redial();
                    self.outbox_tick();
                    self.announce_overdue();
                    self.close_redundant_relayed();
                    self.reserve_relays();
                    self.rendezvous_tick();
                    self.save_routing_table(false);
                    self.end_grace();
                }
                _ = resync.tick(), if sync_interval.is_some() => self.resync(),
            }
        }
        tracing::info!("event loop stopping");
        self.close_all_connections().await;
        self.save_routing_table(true);
        self.store.close().await;
    }

    async fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        use libp2p::metrics::Recorder;
        self.libp2p_metrics.record(&event);
        match event {
            SwarmEvent::NewListenAddr { listener_id, address } => {
                let full = address.with_p2p(*self.swarm.local_peer_id()).unwrap_or_else(|a| a);
                self.listen_addrs.insert(full.clone());
                // A relay circuit is reported as `relay_reserved`.
                if !self.relay_listening(listener_id, &full) {
                    self.emit(Event::Listening { addr: full.to_string() });
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                for address in addresses {
                    let full = address.with_p2p(*self.swarm.local_peer_id()).unwrap_or_else(|a| a);
                    self.listen_addrs.remove(&full);
                }
                self.relay_listener_closed(listener_id, reason.as_ref().map(|_| ()));
            }
            SwarmEvent::NewExternalAddrCandidate { address } => self.on_external_candidate(&address),
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "others can reach us at this address");
                self.external_addrs_changed();
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                tracing::info!(%address, "an external address expired");
                self.external_addrs_changed();
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                let full = address.with_p2p(*self.swarm.local_peer_id()).unwrap_or_else(|a| a);
                self.listen_addrs.remove(&full);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => self.on_connection_established(peer_id, connection_id, &endpoint),
            SwarmEvent::ConnectionClosed {
                peer_id, connection_id, ..
            } => self.on_connection_closed(peer_id, connection_id),
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => self.on_dial_error(peer_id, &error),
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
            BehaviourEvent::Kad(e) => self.libp2p_metrics.record(e),
            BehaviourEvent::RelayServer(e) => self.libp2p_metrics.record(e),
            BehaviourEvent::Dcutr(e) => self.libp2p_metrics.record(e),
            BehaviourEvent::Dm(_)
            | BehaviourEvent::Sync(_)
            | BehaviourEvent::Mdns(_)
            | BehaviourEvent::Limits(_)
            | BehaviourEvent::RelayClient(_)
            | BehaviourEvent::Autonat(_)
            | BehaviourEvent::Upnp(_) => {}
        }
        match event {
            BehaviourEvent::Gossipsub(event) => self.on_gossipsub(event),
            BehaviourEvent::Dm(event) => self.on_dm(event).await,
            BehaviourEvent::Sync(event) => self.on_sync(event).await,
            BehaviourEvent::Mdns(event) => self.on_mdns(event),
            BehaviourEvent::Identify(event) => self.on_identify(event),
            BehaviourEvent::Ping(event) => self.on_ping(event),
            BehaviourEvent::Kad(event) => self.on_kad(event),
            BehaviourEvent::RelayClient(event) => self.on_relay_client(event),
            BehaviourEvent::RelayServer(event) => self.on_relay_server(event),
            BehaviourEvent::Dcutr(event) => match event.result {
                Ok(_) => tracing::info!(peer = %event.remote_peer_id, "hole punched: direct connection"),
                Err(e) => tracing::info!(peer = %event.remote_peer_id, "hole punching failed ({e}); staying relayed"),
            },
            BehaviourEvent::Autonat(event) => self.on_autonat(event),
            BehaviourEvent::Upnp(event) => self.on_upnp(event),
            BehaviourEvent::Limits(never) => match never {},
        }
    }
}
