//! Finding peers and staying connected to them: mDNS on the LAN, `--peer`
//! addresses, and the redial schedule ([`super::redial`]) that dials them
//! again while they are away.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::DialError;
use libp2p::{mdns, Multiaddr, PeerId};

use super::redial::{Origin, Redialer};
use super::EventLoop;
use crate::event::Event;

/// Where peers come from, and which to dial again.
pub(super) struct Discovery {
    /// `--peer` addresses, dialled at start.
    explicit_peers: Vec<Multiaddr>,
    /// Peers to dial again while they are not connected.
    redialer: Redialer,
}

impl Discovery {
    pub(super) fn new(explicit_peers: Vec<Multiaddr>) -> Self {
        Self {
            explicit_peers,
            redialer: Redialer::default(),
        }
    }

    /// A connection to `peer` is up: its redial backoff starts over.
    pub(super) fn connected(&mut self, peer: &PeerId) {
        self.redialer.connected(peer);
    }

    /// Dials `peer` at `addrs` whenever it is not connected (see [`Redialer::watch`]).
    pub(super) fn watch(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, origin: Origin, now: Instant) -> bool {
        self.redialer.watch(peer, addrs, origin, now)
    }

    fn is_explicit(&self, peer: &PeerId) -> bool {
        self.explicit_peers.iter().any(|a| peer_of(a) == Some(*peer))
    }
}

/// The peer id at the end of an address, if it has one (for a relay
/// circuit address, the peer behind the relay).
pub(super) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

impl EventLoop {
    /// Dials the `--peer` addresses: those with a peer id are watched (and
    /// redialled while disconnected), the others dialled once.
    pub(super) fn start_discovery(&mut self) {
        for addr in self.discovery.explicit_peers.clone() {
            match peer_of(&addr) {
                // Dialled now by `redial`, and again whenever disconnected.
                Some(peer) => {
                    self.discovery
                        .redialer
                        .watch(peer, vec![addr], Origin::Explicit, Instant::now());
                }
                // Without a peer id we cannot tell when it is connected: dial once.
                None => self.dial_explicit(addr),
            }
        }
        self.redial();
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
    pub(super) fn redial(&mut self) {
        let swarm = &self.swarm;
        let due = self.discovery.redialer.due(Instant::now(), |p| swarm.is_connected(p));
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

    /// A dial failed: a warning for a `--peer` address or the first failure
    /// of a bootstrap node, quiet otherwise.
    pub(super) fn on_dial_error(&mut self, peer: Option<PeerId>, error: &DialError) {
        if let Some(p) = peer.filter(|p| self.dht.is_bootstrap(p)) {
            if self.dht.bootstrap_failed(&p) {
                tracing::warn!(peer = %p, "bootstrap node unreachable ({error}); going on with the LAN, and trying it again");
                self.emit(Event::Notice {
                    text: format!("warning: bootstrap node {p} is unreachable; going on with the LAN and retrying"),
                });
            }
            return;
        }
        let explicit = peer.is_some_and(|p| self.discovery.is_explicit(&p));
        if explicit || peer.is_none() {
            tracing::warn!(?peer, "could not connect to a --peer address: {error}");
        } else {
            tracing::debug!(?peer, "outgoing connection failed: {error}");
        }
    }

    pub(super) fn on_mdns(&mut self, event: mdns::Event) {
        match event {
            mdns::Event::Discovered(list) => {
                let mut found: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                for (peer, addr) in list {
                    if &peer != self.swarm.local_peer_id() {
                        found.entry(peer).or_default().push(addr);
                    }
                }
                let now = Instant::now();
                for (peer, addrs) in found {
                    // Bounded: at most MAX_LAN_PEERS peers (with MAX_ADDRS_PER_PEER
                    // addresses each) are tracked, however many mDNS announces.
                    if !self.discovery.watch(peer, addrs.clone(), Origin::Lan, now) {
                        tracing::debug!(%peer, "too many LAN peers tracked; ignoring an mDNS discovery");
                        continue;
                    }
                    if let Some(addr) = self.peers.lan_seen(peer, addrs) {
                        self.emit(Event::PeerDiscovered {
                            peer: peer.to_string(),
                            addr: addr.to_string(),
                            via: "mdns".into(),
                        });
                    }
                }
                self.redial();
            }
            mdns::Event::Expired(list) => {
                for (peer, addr) in list {
                    if self.peers.lan_lost(&peer, &addr) {
                        self.discovery.redialer.forget(&peer);
                    }
                }
            }
        }
    }
}
