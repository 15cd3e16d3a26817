//! The DHT (Kademlia over `/ipfs/kad/1.0.0`): joining it through bootstrap
//! nodes, feeding it the addresses identify reports, keeping its routing
//! table in the data dir so a restarted node rejoins without its bootstrap
//! nodes, and running its queries: provider records for topic rendezvous
//! ([`super::rendezvous`]) and for finding a DM's recipient by peer id.
//! Providers found are dialled at once (kad knows their addresses only while
//! its query runs), at most [`MAX_DIALS_PER_LOOKUP`] per lookup.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use libp2p::core::ConnectedPoint;
use libp2p::kad::{self, GetProvidersOk, QueryId, QueryResult, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, StreamProtocol};

use super::behaviour::KAD_PROTOCOL;
use super::discovery::peer_of;
use super::redial::Origin;
use super::EventLoop;
use crate::event::Event;

/// The routing table's file in the data dir.
pub const ROUTING_TABLE_FILE: &str = "dht-peers.json";
/// Peers the saved routing table keeps at most (with up to 4 addresses each).
const MAX_SAVED_PEERS: usize = 256;
/// How often the routing table is saved while the node runs (and at shutdown).
const SAVE_EVERY: Duration = Duration::from_secs(5 * 60);
/// Providers one lookup dials, at most; the rest cost nothing.
pub const MAX_DIALS_PER_LOOKUP: usize = 8;
/// Peers dialled because the DHT named them, remembered until they connect.
const MAX_PENDING_DIALS: usize = 256;

/// What a running query is for.
enum Query {
    /// Members of a topic (its rendezvous key).
    Topic { dialed: usize },
    /// A DM's recipient, by its peer rendezvous key.
    Peer { peer: PeerId },
    /// Announcing ourselves under a key.
    Provide,
}

/// The DHT's state beside kad's own.
pub(super) struct Dht {
    /// `--bootstrap` nodes.
    bootstrap: BTreeMap<PeerId, Multiaddr>,
    /// Where the routing table is saved.
    file: PathBuf,
    queries: HashMap<QueryId, Query>,
    /// Peers dialled because a lookup found them (reported as found `via: "dht"`).
    dialed: HashSet<PeerId>,
    /// Bootstrap nodes whose failure was already reported.
    warned: HashSet<PeerId>,
    last_saved: Instant,
    /// Whether the routing table has held a peer, so that queries can run.
    joined: bool,
}

impl Dht {
    pub(super) fn new(bootstrap: &[Multiaddr], data_dir: &std::path::Path) -> Self {
        let bootstrap = bootstrap
            .iter()
            .filter_map(|a| Some((peer_of(a)?, a.clone())))
            .collect();
        Self {
            bootstrap,
            file: data_dir.join(ROUTING_TABLE_FILE),
            queries: HashMap::new(),
            dialed: HashSet::new(),
            warned: HashSet::new(),
            last_saved: Instant::now(),
            joined: false,
        }
    }

    /// Whether queries can run (the routing table has had a peer).
    pub(super) fn joined(&self) -> bool {
        self.joined
    }

    /// Whether `peer` is one of the `--bootstrap` nodes.
    pub(super) fn is_bootstrap(&self, peer: &PeerId) -> bool {
        self.bootstrap.contains_key(peer)
    }

    /// The address `peer` was given at with `--bootstrap` (without its peer id).
    pub(super) fn bootstrap_addr(&self, peer: &PeerId) -> Option<Multiaddr> {
        let addr = self.bootstrap.get(peer)?;
        Some(addr.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect())
    }

    /// Whether a dial to `peer` failing is news: the first failure of a bootstrap node.
    pub(super) fn bootstrap_failed(&mut self, peer: &PeerId) -> bool {
        self.bootstrap.contains_key(peer) && self.warned.insert(*peer)
    }
}

/// The DHT key of a 32-byte digest: a sha2-256 multihash (`0x12 0x20` ‖
/// digest), which IPFS DHT servers accept as a provider key.
pub fn dht_key(digest: &[u8; 32]) -> RecordKey {
    let mut multihash = Vec::with_capacity(34);
    multihash.extend_from_slice(&[0x12, 0x20]);
    multihash.extend_from_slice(digest);
    RecordKey::new(&multihash)
}

/// Reads a saved routing table (a JSON object of peer id → addresses).
fn load_table(file: &std::path::Path) -> Vec<(PeerId, Vec<Multiaddr>)> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return Vec::new();
    };
    let Ok(table) = serde_json::from_str::<BTreeMap<String, Vec<String>>>(&text) else {
        tracing::warn!(file = %file.display(), "the saved DHT routing table is unreadable; ignored");
        return Vec::new();
    };
    table
        .into_iter()
        .filter_map(|(peer, addrs)| {
            let peer = peer.parse().ok()?;
            let addrs: Vec<Multiaddr> = addrs.iter().filter_map(|a| a.parse().ok()).collect();
            (!addrs.is_empty()).then_some((peer, addrs))
        })
        .take(MAX_SAVED_PEERS)
        .collect()
}

impl EventLoop {
    /// Kademlia, when the DHT runs (see [`super::behaviour::Settings::dht`]).
    pub(super) fn kad(&mut self) -> Option<&mut kad::Behaviour<kad::store::MemoryStore>> {
        self.swarm.behaviour_mut().kad.as_mut()
    }

    /// Joins the DHT: the bootstrap nodes (dialled now and whenever their
    /// connection is lost) and the routing table saved by an earlier run.
    pub(super) fn start_dht(&mut self) {
        let now = Instant::now();
        let bootstrap: Vec<(PeerId, Multiaddr)> = self.dht.bootstrap.iter().map(|(p, a)| (*p, a.clone())).collect();
        for (peer, addr) in bootstrap {
            if let Some(kad) = self.kad() {
                kad.add_address(&peer, addr.clone());
            }
            self.discovery.watch(peer, vec![addr], Origin::Bootstrap, now);
        }
        let saved = load_table(&self.dht.file);
        if !saved.is_empty() {
            tracing::info!(peers = saved.len(), "rejoining the DHT through the saved routing table");
        }
        for (peer, addrs) in saved {
            for addr in addrs {
                if let Some(kad) = self.kad() {
                    kad.add_address(&peer, addr);
                }
            }
        }
        if self.kad().is_some_and(|kad| kad.bootstrap().is_ok()) {
            self.dht.joined = true;
        }
    }

    /// Identify told a peer's protocols: a DHT server's listen addresses go
    /// into the routing table (kad does not learn them by itself).
    pub(super) fn dht_identified(&mut self, peer: PeerId, protocols: &[StreamProtocol], addrs: &[Multiaddr]) {
        if !protocols.contains(&KAD_PROTOCOL) {
            return;
        }
        // A loopback address reaches the peer only from its own host: kept
        // only when it is all the peer has (a DHT on one machine).
        let usable: Vec<&Multiaddr> = addrs.iter().filter(|a| !is_circuit(a)).collect();
        let remote: Vec<&Multiaddr> = usable.iter().copied().filter(|a| !is_loopback(a)).collect();
        for addr in if remote.is_empty() { usable } else { remote } {
            if let Some(kad) = self.kad() {
                kad.add_address(&peer, addr.clone());
            }
        }
    }

    /// A connection opened: a peer a lookup found is reported as discovered.
    pub(super) fn dht_connected(&mut self, peer: PeerId, endpoint: &ConnectedPoint) {
        if self.dht.dialed.remove(&peer) {
            self.emit(Event::PeerDiscovered {
                peer: peer.to_string(),
                addr: endpoint.get_remote_address().to_string(),
                via: "dht".into(),
            });
        }
    }

    /// Announces this node under `key` (with the confirmed external addresses it has now).
    pub(super) fn provide(&mut self, key: RecordKey) {
        match self.kad().map(|kad| kad.start_providing(key)) {
            Some(Ok(id)) => {
                self.dht.queries.insert(id, Query::Provide);
            }
            Some(Err(e)) => tracing::warn!("cannot announce in the DHT: {e}"),
            None => {}
        }
    }

    /// Stops announcing this node under `key` (copies elsewhere expire).
    pub(super) fn stop_providing(&mut self, key: &RecordKey) {
        if let Some(kad) = self.kad() {
            kad.stop_providing(key);
        }
    }

    /// Looks up the members of a topic under its rendezvous key.
    pub(super) fn find_topic_members(&mut self, key: RecordKey) {
        if let Some(id) = self.kad().map(|kad| kad.get_providers(key)) {
            self.dht.queries.insert(id, Query::Topic { dialed: 0 });
        }
    }

    /// Looks up where `peer` can be reached (for a DM to it), under its peer rendezvous key.
    pub(super) fn find_peer(&mut self, peer: PeerId) {
        if !self.dht.joined || self.swarm.is_connected(&peer) {
            return;
        }
        let key = dht_key(&crate::crypto::peer_rendezvous(&peer));
        if let Some(id) = self.kad().map(|kad| kad.get_providers(key)) {
            self.dht.queries.insert(id, Query::Peer { peer });
        }
    }

    pub(super) fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::OutboundQueryProgressed { id, result, step, .. } => {
                self.on_query_progress(id, result);
                if step.last {
                    self.dht.queries.remove(&id);
                }
            }
            kad::Event::RoutingUpdated { peer, is_new_peer, .. } => {
                tracing::debug!(%peer, is_new_peer, "DHT routing table updated");
                if !self.dht.joined {
                    self.dht.joined = true;
                    tracing::info!("joined the DHT");
                    // Lookups that had no peer to ask can run now.
                    self.rendezvous_member_lost();
                }
            }
            other => tracing::trace!(?other, "kad event"),
        }
    }

    fn on_query_progress(&mut self, id: QueryId, result: QueryResult) {
        match result {
            QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders { providers, .. })) => {
                let local = *self.swarm.local_peer_id();
                match self.dht.queries.get_mut(&id) {
                    Some(Query::Topic { dialed }) => {
                        let mut targets = Vec::new();
                        for peer in providers {
                            if *dialed >= MAX_DIALS_PER_LOOKUP {
                                break;
                            }
                            if peer != local && !self.swarm.is_connected(&peer) {
                                *dialed += 1;
                                targets.push(peer);
                            }
                        }
                        for peer in targets {
                            self.dial_found(peer);
                        }
                    }
                    Some(Query::Peer { peer }) => {
                        let peer = *peer;
                        if providers.contains(&peer) && !self.swarm.is_connected(&peer) {
                            self.dial_found(peer);
                        }
                    }
                    _ => {}
                }
            }
            QueryResult::GetProviders(Ok(GetProvidersOk::FinishedWithNoAdditionalRecord { .. })) => {}
            QueryResult::GetProviders(Err(e)) => tracing::debug!("DHT lookup: {e}"),
            QueryResult::StartProviding(Ok(_)) | QueryResult::RepublishProvider(Ok(_)) => {
                tracing::debug!("announced in the DHT");
            }
            QueryResult::StartProviding(Err(e)) | QueryResult::RepublishProvider(Err(e)) => {
                tracing::debug!("DHT announcement: {e}");
            }
            QueryResult::Bootstrap(Ok(ok)) => {
                tracing::debug!(peer = %ok.peer, remaining = ok.num_remaining, "DHT bootstrap step");
            }
            QueryResult::Bootstrap(Err(e)) => tracing::debug!("DHT bootstrap: {e}"),
            other => tracing::trace!(?other, "kad query result"),
        }
    }

    /// Dials a peer a lookup found, with the addresses kad's query holds.
    fn dial_found(&mut self, peer: PeerId) {
        if self.dht.dialed.len() >= MAX_PENDING_DIALS {
            self.dht.dialed.clear();
        }
        self.dht.dialed.insert(peer);
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            tracing::debug!(%peer, "dialling a peer the DHT found: {e}");
        }
    }

    /// Saves the routing table when it is due (or `now`, at shutdown).
    pub(super) fn save_routing_table(&mut self, now: bool) {
        if !now && self.dht.last_saved.elapsed() < SAVE_EVERY {
            return;
        }
        self.dht.last_saved = Instant::now();
        let mut table: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let Some(kad) = self.kad() else {
            return;
        };
        for bucket in kad.kbuckets() {
            for entry in bucket.iter() {
                if table.len() >= MAX_SAVED_PEERS {
                    break;
                }
                let addrs = entry
                    .node
                    .value
                    .iter()
                    .filter(|a| !is_circuit(a))
                    .take(4)
                    .map(ToString::to_string)
                    .collect::<Vec<_>>();
                if !addrs.is_empty() {
                    table.insert(entry.node.key.preimage().to_string(), addrs);
                }
            }
        }
        if table.is_empty() {
            return;
        }
        let json = serde_json::to_vec_pretty(&table).expect("a map of strings serializes");
        if let Err(e) = crate::vault::write_private(&self.dht.file, &json) {
            tracing::warn!("cannot save the DHT routing table: {e}");
        }
    }
}

/// Whether an address is a loopback one.
fn is_loopback(addr: &Multiaddr) -> bool {
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

/// Whether an address goes through a relay.
pub(super) fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dht_keys_are_sha256_multihashes() {
        let key = dht_key(&[7; 32]);
        assert_eq!(key.as_ref().len(), 34);
        assert_eq!(&key.as_ref()[..2], &[0x12, 0x20]);
        assert_eq!(&key.as_ref()[2..], &[7; 32]);
    }

    #[test]
    fn a_saved_table_is_read_back_and_junk_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(ROUTING_TABLE_FILE);
        let peer = PeerId::random();
        let table = BTreeMap::from([
            (
                peer.to_string(),
                vec!["/ip4/10.0.0.1/tcp/4001".to_owned(), "junk".to_owned()],
            ),
            ("not-a-peer".to_owned(), vec!["/ip4/10.0.0.2/tcp/1".to_owned()]),
        ]);
        std::fs::write(&file, serde_json::to_vec(&table).unwrap()).unwrap();
        let loaded = load_table(&file);
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].0, peer);
        assert_eq!(
            loaded[0].1,
            vec!["/ip4/10.0.0.1/tcp/4001".parse::<Multiaddr>().unwrap()]
        );
        std::fs::write(&file, "{ not json").unwrap();
        assert!(load_table(&file).is_empty());
        assert!(load_table(&dir.path().join("missing")).is_empty());
    }
}
