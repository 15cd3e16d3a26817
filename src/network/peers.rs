//! Peer bookkeeping: what the node knows of each peer (its name from
//! identify, its addresses, its connections and whether they are relayed),
//! connections opening and closing, dead connections (ping), graylisted
//! peers, and finding a peer by name for `/dm`. A connection is reported
//! (`peer_connected`) once identify told the peer's name, or after
//! [`ANNOUNCE_AFTER`] if it does not.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{identify, ping, Multiaddr, PeerId};

use super::redial::MAX_ADDRS_PER_PEER;
use super::{behaviour, EventLoop};
use crate::event::{Event, PeerSummary};
use crate::reply::NodeError;

/// How long a new connection waits for identify before it is reported without a name.
pub const ANNOUNCE_AFTER: Duration = Duration::from_secs(1);
/// How long a relayed connection stays open once a direct one is up. Not
/// at once: the peer may not have seen the direct connection yet, and a
/// peer that loses its only connection to us forgets our subscriptions,
/// which gossipsub sends on a peer's first connection only.
pub const RELAYED_GRACE: Duration = Duration::from_secs(3);

/// How long a stopping node waits for its connections to close.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What the loop knows of a peer.
#[derive(Default)]
struct PeerState {
    name: Option<String>,
    addrs: BTreeSet<Multiaddr>,
    /// Addresses mDNS currently vouches for (empty: not seen on the LAN).
    mdns_addrs: BTreeSet<Multiaddr>,
    /// Open connections, and whether each goes through a relay.
    connections: HashMap<ConnectionId, bool>,
    /// When the first of the open connections was established.
    connected_at: Option<Instant>,
    /// Whether `peer_connected` was reported for the open connections.
    announced: bool,
    /// When to close the relayed connections, a direct one being up.
    close_relayed_at: Option<Instant>,
}

impl PeerState {
    fn connected(&self) -> bool {
        !self.connections.is_empty()
    }

    /// True while every open connection goes through a relay.
    fn relayed(&self) -> bool {
        self.connected() && self.connections.values().all(|relayed| *relayed)
    }
}

/// Every peer the node knows of: connected ones, and those found on the LAN.
#[derive(Default)]
pub(super) struct PeerBook {
    peers: HashMap<PeerId, PeerState>,
}

impl PeerBook {
    /// Known addresses of `peer` (none for a stranger).
    pub(super) fn addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.peers
            .get(peer)
            .map(|s| s.addrs.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether any address of `peer` is known.
    pub(super) fn has_addrs(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|s| !s.addrs.is_empty())
    }

    /// mDNS vouches for `addrs` of `peer` (at most [`MAX_ADDRS_PER_PEER`] are
    /// kept). Returns the address to report when this is the first time the
    /// peer is seen on the LAN.
    pub(super) fn lan_seen(&mut self, peer: PeerId, mut addrs: Vec<Multiaddr>) -> Option<Multiaddr> {
        let state = self.peers.entry(peer).or_default();
        let first_sight = state.mdns_addrs.is_empty();
        addrs.retain(|a| {
            let room = state.mdns_addrs.len() < MAX_ADDRS_PER_PEER;
            room && state.mdns_addrs.insert(a.clone())
        });
        state.addrs.extend(addrs.iter().cloned());
        if first_sight {
            addrs.into_iter().next()
        } else {
            None
        }
    }

    /// mDNS expired `addr` of `peer`. Returns true when mDNS vouches for no
    /// address of it any more (a peer neither connected nor on the LAN is forgotten).
    pub(super) fn lan_lost(&mut self, peer: &PeerId, addr: &Multiaddr) -> bool {
        let Some(state) = self.peers.get_mut(peer) else {
            return false;
        };
        state.mdns_addrs.remove(addr);
        state.addrs.remove(addr);
        if !state.mdns_addrs.is_empty() {
            return false;
        }
        if !state.connected() {
            self.peers.remove(peer);
        }
        true
    }

    /// The display name of `peer`, if identify told it.
    pub(super) fn name(&self, peer: &PeerId) -> Option<String> {
        self.peers.get(peer).and_then(|s| s.name.clone())
    }

    /// How many connected peers are reached only through a relay.
    fn relayed_count(&self) -> usize {
        self.peers.values().filter(|s| s.relayed()).count()
    }

    /// Finds a peer by peer id or by (case-insensitive) display name.
    pub(super) fn resolve(&self, to: &str) -> Result<PeerId, NodeError> {
        if let Ok(peer) = to.parse::<PeerId>() {
            return Ok(peer);
        }
        let named = |connected_only: bool| -> Vec<PeerId> {
            self.peers
                .iter()
                .filter(|(_, s)| !connected_only || s.connected())
                .filter(|(_, s)| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(to)))
                .map(|(p, _)| *p)
                .collect()
        };
        // A connected peer of that name first; else one seen before (a DM
        // to it waits in the outbox). A peer gone since does not make the
        // name ambiguous.
        let mut matches = named(true);
        if matches.is_empty() {
            matches = named(false);
        }
        the_one(to, &matches)?.ok_or_else(|| NodeError::UnknownPeer(to.to_owned()))
    }

    /// The connected peers, by name then id: those `peer_connected` reported
    /// and `peer_disconnected` not yet, so every peer `/peers` lists is
    /// reported when it leaves. A connection identify has not named yet
    /// joins the list at most [`ANNOUNCE_AFTER`] later.
    pub(super) fn summaries(&self) -> Vec<PeerSummary> {
        let mut peers: Vec<PeerSummary> = self
            .peers
            .iter()
            .filter(|(_, s)| s.connected() && s.announced)
            .map(|(p, s)| PeerSummary {
                peer: p.to_string(),
                name: s.name.clone(),
                addrs: s.addrs.iter().map(ToString::to_string).collect(),
                relayed: s.relayed(),
            })
            .collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name).then(a.peer.cmp(&b.peer)));
        peers
    }
}

/// The peer `name` stands for among `candidates` (the peers found under
/// that name): `None` if there is none.
///
/// # Errors
/// [`NodeError::AmbiguousPeer`], listing them, when there are several.
pub(super) fn the_one(name: &str, candidates: &[PeerId]) -> Result<Option<PeerId>, NodeError> {
    match candidates {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(NodeError::AmbiguousPeer(
            name.to_owned(),
            many.iter().map(ToString::to_string).collect(),
        )),
    }
}

impl EventLoop {
    /// Finds the recipient of a `/dm` or `/invite`: a peer id; else the
    /// member of one of this node's private topics who signed that name (a
    /// DM to it waits in the outbox until it is reachable); else a peer this
    /// node has seen under that name ([`PeerBook::resolve`]). Members come
    /// first: joining a private topic takes its secret, while any peer can
    /// connect under any name. This node's own name is [`NodeError::SelfDm`].
    pub(super) fn resolve_peer(&self, to: &str) -> Result<PeerId, NodeError> {
        if let Ok(peer) = to.parse::<PeerId>() {
            return Ok(peer);
        }
        let local = *self.swarm.local_peer_id();
        let members: Vec<PeerId> = self
            .membership
            .named(to, |topic_id| self.topics.by_id(topic_id).is_some_and(|e| !e.open))
            .into_iter()
            .filter(|p| *p != local)
            .collect();
        if let Some(member) = the_one(to, &members)? {
            return Ok(member);
        }
        match self.peers.resolve(to) {
            Err(NodeError::UnknownPeer(_)) if self.name.eq_ignore_ascii_case(to) => Err(NodeError::SelfDm),
            found => found,
        }
    }

    /// A peer's display name: as it connected under it, else as it signed it
    /// in a topic's roster.
    pub(super) fn name_of(&self, peer: &PeerId) -> Option<String> {
        self.peers.name(peer).or_else(|| self.membership.any_name(peer))
    }

    pub(super) fn on_connection_established(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        endpoint: &ConnectedPoint,
    ) {
        if self.graylisted(&peer) {
            // Its score is remembered across connections: still graylisted, so refused.
            self.disconnect_graylisted(peer);
            return;
        }
        self.discovery.connected(&peer);
        let relayed = endpoint.is_relayed();
        let state = self.peers.peers.entry(peer).or_default();
        if let ConnectedPoint::Dialer { address, .. } = endpoint {
            state.addrs.insert(address.clone());
        }
        let first = !state.connected();
        let upgraded = !relayed && state.relayed() && state.announced;
        state.connections.insert(connection, relayed);
        // A direct connection makes the relayed ones redundant (hole punching
        // worked): they are closed soon, so gossip, catch-up and DMs go direct.
        if !relayed && state.connections.values().any(|r| *r) && state.close_relayed_at.is_none() {
            state.close_relayed_at = Some(Instant::now() + RELAYED_GRACE);
        }
        if first {
            state.connected_at = Some(Instant::now());
        }
        if upgraded {
            let name = state.name.clone();
            self.emit(Event::PeerDirect {
                peer: peer.to_string(),
                name,
            });
        }
        self.dht_connected(peer, endpoint);
        self.metrics.relayed_peers.set(self.peers.relayed_count() as i64);
        if first {
            self.metrics.peers.inc();
            self.retry_dms_to(&peer);
        }
    }

    pub(super) fn on_connection_closed(&mut self, peer: PeerId, connection: ConnectionId) {
        let Some(state) = self.peers.peers.get_mut(&peer) else {
            return;
        };
        let removed = state.connections.remove(&connection).is_some();
        let still_connected = state.connected();
        self.metrics.relayed_peers.set(self.peers.relayed_count() as i64);
        if !removed || still_connected {
            return;
        }
        let state = self.peers.peers.get_mut(&peer).expect("present");
        let announced = std::mem::take(&mut state.announced);
        let name = state.name.clone();
        state.connected_at = None;
        self.catchup.peer_gone(&peer);
        self.membership.peer_gone(&peer);
        self.rendezvous_member_lost();
        self.metrics.peers.dec();
        if announced {
            self.emit(Event::PeerDisconnected {
                peer: peer.to_string(),
                name,
            });
        }
    }

    /// Reports `peer_connected` for `peer` if it is connected and not reported yet.
    fn announce(&mut self, peer: PeerId) {
        let Some(state) = self.peers.peers.get_mut(&peer) else {
            return;
        };
        if !state.connected() || state.announced {
            return;
        }
        state.announced = true;
        let event = Event::PeerConnected {
            peer: peer.to_string(),
            name: state.name.clone(),
            relayed: state.relayed(),
        };
        self.emit(event);
        self.ask_for_newer_epochs(peer);
    }

    /// Closes the relayed connections of peers that have had a direct one
    /// for [`RELAYED_GRACE`].
    pub(super) fn close_redundant_relayed(&mut self) {
        let now = Instant::now();
        let mut redundant = Vec::new();
        for (peer, state) in &mut self.peers.peers {
            if state.close_relayed_at.is_none_or(|t| t > now) {
                continue;
            }
            state.close_relayed_at = None;
            if state.connections.values().all(|relayed| *relayed) {
                continue;
            }
            for (id, relayed) in &state.connections {
                if *relayed {
                    redundant.push((*peer, *id));
                }
            }
        }
        for (peer, id) in redundant {
            tracing::info!(%peer, "direct connection up; closing the relayed one");
            self.swarm.close_connection(id);
        }
    }

    /// Closes every connection, and drives the swarm until they are closed
    /// (at most [`CLOSE_GRACE`]), so that peers hear of it now: a QUIC peer
    /// gets no FIN from a process that just exits, and would list this node
    /// until its connection times out. Events meanwhile are dropped: the
    /// node is stopping, and redials nothing.
    pub(super) async fn close_all_connections(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        let closed = async {
            while self.swarm.network_info().num_peers() > 0 {
                let _ = self.swarm.select_next_some().await;
            }
        };
        if tokio::time::timeout(CLOSE_GRACE, closed).await.is_err() {
            tracing::debug!("connections still open after {CLOSE_GRACE:?}; stopping anyway");
        }
    }

    /// Reports the connections identify has not named within [`ANNOUNCE_AFTER`].
    pub(super) fn announce_overdue(&mut self) {
        let overdue: Vec<PeerId> = self
            .peers
            .peers
            .iter()
            .filter(|(_, s)| !s.announced && s.connected_at.is_some_and(|t| t.elapsed() >= ANNOUNCE_AFTER))
            .map(|(p, _)| *p)
            .collect();
        for peer in overdue {
            self.announce(peer);
        }
    }

    /// Identify tells a peer's name (in its agent version), its listen
    /// addresses and its protocols (which the DHT, relays and AutoNAT use).
    pub(super) fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        if info.protocol_version != behaviour::IDENTIFY_PROTOCOL {
            tracing::debug!(%peer_id, protocol = info.protocol_version, "peer speaks another protocol version");
        }
        let state = self.peers.peers.entry(peer_id).or_default();
        state.name = behaviour::name_from_agent_version(&info.agent_version);
        let addrs: Vec<Multiaddr> = info
            .listen_addrs
            .iter()
            .filter(|a| !is_unspecified(a))
            .cloned()
            .collect();
        state.addrs.extend(addrs.iter().cloned());
        self.dht_identified(peer_id, &info.protocols, &addrs);
        self.relay_identified(peer_id, &info.protocols, &addrs);
        self.announce(peer_id);
    }

    /// A connection that stops answering pings is dead (a pulled cable sends
    /// no FIN): it is closed, so the peer is redialled when it is back.
    pub(super) fn on_ping(&mut self, event: ping::Event) {
        if let ping::Event {
            peer,
            connection,
            result: Err(e @ (ping::Failure::Timeout | ping::Failure::Other { .. })),
        } = event
        {
            tracing::debug!(%peer, "ping failed ({e}); closing the connection");
            self.swarm.close_connection(connection);
        }
    }

    /// Whether gossipsub's score of `peer` is below the graylist threshold.
    pub(super) fn graylisted(&self, peer: &PeerId) -> bool {
        self.swarm
            .behaviour()
            .gossipsub
            .peer_score(peer)
            .is_some_and(|score| score < behaviour::GRAYLIST_THRESHOLD)
    }

    /// Closes every connection to a graylisted peer: gossipsub already ignores
    /// its RPCs, but would still read and verify each one it sends.
    pub(super) fn disconnect_graylisted(&mut self, peer: PeerId) {
        let score = self.swarm.behaviour().gossipsub.peer_score(&peer).unwrap_or_default();
        tracing::info!(%peer, score, "peer graylisted (invalid messages); disconnecting");
        self.metrics.graylisted.inc();
        let _ = self.swarm.disconnect_peer_id(peer);
    }
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}
