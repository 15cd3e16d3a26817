//! Peer bookkeeping: what the node knows of each peer (its name from
//! identify, its addresses, whether it is connected), connections opening and
//! closing, dead connections (ping), graylisted peers, and finding a peer by
//! name for `/dm`.

use std::collections::{BTreeSet, HashMap};

use libp2p::core::ConnectedPoint;
use libp2p::multiaddr::Protocol;
use libp2p::{identify, ping, Multiaddr, PeerId};

use super::redial::MAX_ADDRS_PER_PEER;
use super::{behaviour, EventLoop};
use crate::event::{Event, PeerSummary};
use crate::reply::NodeError;

/// What the loop knows of a peer.
#[derive(Default)]
struct PeerState {
    name: Option<String>,
    addrs: BTreeSet<Multiaddr>,
    /// Addresses mDNS currently vouches for (empty: not seen on the LAN).
    mdns_addrs: BTreeSet<Multiaddr>,
    connected: bool,
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
        if !state.connected {
            self.peers.remove(peer);
        }
        true
    }

    /// Finds a peer by peer id or by (case-insensitive) display name.
    pub(super) fn resolve(&self, to: &str) -> Result<PeerId, NodeError> {
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

    /// The connected peers, by name then id.
    pub(super) fn summaries(&self) -> Vec<PeerSummary> {
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
}

impl EventLoop {
    pub(super) fn on_connection_established(&mut self, peer: PeerId, endpoint: &ConnectedPoint, established: u32) {
        if self.graylisted(&peer) {
            // Its score is remembered across connections: still graylisted, so refused.
            self.disconnect_graylisted(peer);
            return;
        }
        self.discovery.connected(&peer);
        let state = self.peers.peers.entry(peer).or_default();
        if let ConnectedPoint::Dialer { address, .. } = endpoint {
            state.addrs.insert(address.clone());
        }
        if established == 1 {
            state.connected = true;
            self.metrics.peers.inc();
            self.emit(Event::PeerConnected { peer: peer.to_string() });
            self.retry_dms_to(&peer);
        }
    }

    pub(super) fn on_connection_closed(&mut self, peer: PeerId, remaining: u32) {
        if remaining > 0 {
            return;
        }
        self.catchup.peer_gone(&peer);
        if let Some(state) = self.peers.peers.get_mut(&peer).filter(|s| s.connected) {
            state.connected = false;
            self.metrics.peers.dec();
            self.emit(Event::PeerDisconnected { peer: peer.to_string() });
        }
    }

    /// Identify tells a peer's name (in its agent version) and listen addresses.
    pub(super) fn on_identify(&mut self, event: identify::Event) {
        let identify::Event::Received { peer_id, info, .. } = event else {
            return;
        };
        if info.protocol_version != behaviour::IDENTIFY_PROTOCOL {
            tracing::debug!(%peer_id, protocol = info.protocol_version, "peer speaks another protocol version");
        }
        let state = self.peers.peers.entry(peer_id).or_default();
        state.name = behaviour::name_from_agent_version(&info.agent_version);
        for addr in info.listen_addrs {
            if !is_unspecified(&addr) {
                state.addrs.insert(addr);
            }
        }
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
