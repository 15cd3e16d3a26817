//! Relays, as a client: rust-libp2p has no auto-relay, so this room chooses
//! relays among the peers that serve relay v2 (bootstrap nodes first, then
//! DHT peers), reserves a slot on up to [`WANTED_RELAYS`] of them while this
//! node is not known to be publicly reachable, reports each circuit address
//! (`relay_reserved`), and reserves again, with backoff, when a reservation
//! fails or ends. libp2p renews a live reservation by itself. As a server
//! (`--relay-server`) it logs what the relay behaviour reports.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::{relay, Multiaddr, PeerId, StreamProtocol};

use super::dht::is_circuit;
use super::EventLoop;
use crate::event::Event;

/// Relays this node reserves a slot on at once.
pub const WANTED_RELAYS: usize = 2;
/// Relay candidates remembered at once.
const MAX_CANDIDATES: usize = 32;
/// The first wait before a relay that failed is tried again, doubling…
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// …up to this.
const MAX_RETRY: Duration = Duration::from_secs(5 * 60);

/// A peer that serves relay v2.
struct Candidate {
    /// An address to reach it directly.
    addr: Multiaddr,
    /// A bootstrap node (preferred).
    bootstrap: bool,
    failures: u32,
    retry_at: Instant,
}

/// One reservation, asked for or held.
struct Reservation {
    relay: PeerId,
    /// The circuit address, once the relay accepted.
    addr: Option<Multiaddr>,
}

/// The relay client's state.
pub(super) struct Relays {
    candidates: BTreeMap<PeerId, Candidate>,
    reservations: HashMap<ListenerId, Reservation>,
    /// False for a node that is a relay itself.
    enabled: bool,
}

impl Relays {
    pub(super) fn new(enabled: bool) -> Self {
        Self {
            candidates: BTreeMap::new(),
            reservations: HashMap::new(),
            enabled,
        }
    }

    /// The next relay to reserve on: not reserved on yet, not waiting out a
    /// failure, bootstrap nodes first.
    fn next(&self, now: Instant) -> Option<(PeerId, Multiaddr)> {
        self.candidates
            .iter()
            .filter(|(peer, c)| c.retry_at <= now && !self.reservations.values().any(|r| &r.relay == *peer))
            .min_by_key(|(_, c)| (!c.bootstrap, c.failures))
            .map(|(peer, c)| (*peer, c.addr.clone()))
    }
}

/// The address of a relay to build circuit addresses on, from the ones it
/// listens on: never a relay circuit, loopback or unspecified address;
/// a public one first (any private one, too, on a `--private-wan` network).
fn best_relay_addr(addrs: &[Multiaddr], private_wan: bool) -> Option<Multiaddr> {
    let rank = |a: &Multiaddr| -> Option<u8> {
        if is_circuit(a) {
            return None;
        }
        match a.iter().next()? {
            Protocol::Ip4(ip) if ip.is_loopback() || ip.is_unspecified() => None,
            Protocol::Ip6(ip) if ip.is_loopback() || ip.is_unspecified() => None,
            Protocol::Ip4(ip) if ip.is_private() || ip.is_link_local() => Some(if private_wan { 1 } else { 3 }),
            Protocol::Ip4(_) | Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_) | Protocol::Dnsaddr(_) => {
                Some(0)
            }
            Protocol::Ip6(_) => Some(2),
            _ => None,
        }
    };
    addrs
        .iter()
        .filter_map(|a| Some((rank(a)?, a)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, a)| a.clone())
}

/// The address to listen on for a reservation on `relay` reached at `addr`.
fn circuit_listen_addr(addr: &Multiaddr, relay: PeerId) -> Multiaddr {
    let mut base: Multiaddr = addr.iter().take_while(|p| !matches!(p, Protocol::P2p(_))).collect();
    base.push(Protocol::P2p(relay));
    base.push(Protocol::P2pCircuit);
    base
}

impl EventLoop {
    /// Identify told a peer's protocols: one that serves relay v2 becomes a
    /// candidate (and, on a `--private-wan` test network, an AutoNAT server).
    pub(super) fn relay_identified(&mut self, peer: PeerId, protocols: &[StreamProtocol], addrs: &[Multiaddr]) {
        if !protocols.contains(&relay::HOP_PROTOCOL_NAME) {
            return;
        }
        // Our circuit address starts with this address, and others dial it:
        // the bootstrap address the user gave, else the relay's best own.
        let given = self.dht.bootstrap_addr(&peer);
        let Some(addr) = given.or_else(|| best_relay_addr(addrs, self.nat.private_wan())) else {
            return;
        };
        self.nat_server_found(peer, &addr);
        let bootstrap = self.dht.is_bootstrap(&peer);
        let relays = &mut self.relays;
        if !relays.candidates.contains_key(&peer) && relays.candidates.len() >= MAX_CANDIDATES {
            return;
        }
        relays
            .candidates
            .entry(peer)
            .and_modify(|c| c.addr = addr.clone())
            .or_insert(Candidate {
                addr,
                bootstrap,
                failures: 0,
                retry_at: Instant::now(),
            });
        self.reserve_relays();
    }

    /// Reserves slots until [`WANTED_RELAYS`] are asked for or held, unless
    /// this node is a relay itself or known to be publicly reachable.
    pub(super) fn reserve_relays(&mut self) {
        if !self.relays.enabled || self.nat.is_public() {
            return;
        }
        let now = Instant::now();
        while self.relays.reservations.len() < WANTED_RELAYS {
            let Some((relay, addr)) = self.relays.next(now) else {
                return;
            };
            let listen = circuit_listen_addr(&addr, relay);
            match self.swarm.listen_on(listen.clone()) {
                Ok(id) => {
                    tracing::debug!(%relay, "asking for a relay reservation");
                    self.relays.reservations.insert(id, Reservation { relay, addr: None });
                }
                Err(e) => {
                    tracing::warn!(%listen, "cannot reserve a slot on a relay: {e}");
                    self.relay_failed(relay);
                }
            }
        }
    }

    /// A relay failed us: it waits out a backoff before it is tried again.
    fn relay_failed(&mut self, relay: PeerId) {
        if let Some(c) = self.relays.candidates.get_mut(&relay) {
            let delay = FIRST_RETRY.saturating_mul(1 << c.failures.min(8)).min(MAX_RETRY);
            c.failures += 1;
            c.retry_at = Instant::now() + delay;
        }
    }

    /// A new listen address: for a reservation, the relay accepted (reported
    /// once per reservation). Returns whether it was a circuit address.
    pub(super) fn relay_listening(&mut self, listener: ListenerId, addr: &Multiaddr) -> bool {
        let Some(reservation) = self.relays.reservations.get_mut(&listener) else {
            return false;
        };
        if reservation.addr.is_none() {
            reservation.addr = Some(addr.clone());
            let relay = reservation.relay;
            if let Some(c) = self.relays.candidates.get_mut(&relay) {
                c.failures = 0;
            }
            tracing::info!(%relay, %addr, "relay reservation accepted");
            self.emit(Event::RelayReserved {
                relay: relay.to_string(),
                addr: addr.to_string(),
            });
        }
        true
    }

    /// A listener closed: for a reservation, it failed or ended (the relay
    /// went away); another is asked for, after a backoff for that relay.
    pub(super) fn relay_listener_closed(&mut self, listener: ListenerId, reason: Result<(), &std::io::Error>) {
        let Some(reservation) = self.relays.reservations.remove(&listener) else {
            return;
        };
        match reason {
            Err(e) => tracing::warn!(relay = %reservation.relay, "relay reservation failed: {e}"),
            Ok(()) => tracing::info!(relay = %reservation.relay, "relay reservation ended"),
        }
        self.relay_failed(reservation.relay);
        self.reserve_relays();
    }

    pub(super) fn on_relay_client(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id, renewal, ..
            } => tracing::debug!(relay = %relay_peer_id, renewal, "relay reservation accepted"),
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                tracing::debug!(relay = %relay_peer_id, "circuit through a relay established")
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                tracing::debug!(peer = %src_peer_id, "a peer reached us through a relay")
            }
        }
    }

    /// What the relay server does, for the logs and metrics.
    pub(super) fn on_relay_server(&mut self, event: relay::Event) {
        #[allow(deprecated)]
        match event {
            relay::Event::ReservationReqAccepted { src_peer_id, renewed } => {
                tracing::debug!(peer = %src_peer_id, renewed, "relay: reservation accepted");
                self.metrics.relay_reservations.inc();
            }
            relay::Event::ReservationReqDenied { src_peer_id, status } => {
                tracing::info!(peer = %src_peer_id, ?status, "relay: reservation refused");
            }
            relay::Event::CircuitReqAccepted {
                src_peer_id,
                dst_peer_id,
            } => {
                tracing::debug!(src = %src_peer_id, dst = %dst_peer_id, "relay: circuit opened");
                self.metrics.relay_circuits.inc();
            }
            relay::Event::CircuitReqDenied {
                src_peer_id,
                dst_peer_id,
                status,
            } => tracing::info!(src = %src_peer_id, dst = %dst_peer_id, ?status, "relay: circuit refused"),
            relay::Event::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                error,
            } => tracing::debug!(src = %src_peer_id, dst = %dst_peer_id, ?error, "relay: circuit closed"),
            other => tracing::debug!(?other, "relay server event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reservation_listens_on_the_relays_address_and_circuit() {
        let relay = PeerId::random();
        let addr: Multiaddr = format!("/ip4/198.51.100.1/tcp/4001/p2p/{relay}").parse().unwrap();
        let dns: Multiaddr = "/dns4/hub.test/tcp/4001".parse().unwrap();
        assert_eq!(
            circuit_listen_addr(&addr, relay).to_string(),
            format!("/ip4/198.51.100.1/tcp/4001/p2p/{relay}/p2p-circuit")
        );
        assert_eq!(
            circuit_listen_addr(&dns, relay).to_string(),
            format!("/dns4/hub.test/tcp/4001/p2p/{relay}/p2p-circuit")
        );
    }

    #[test]
    fn a_relay_is_addressed_by_a_public_address_not_loopback() {
        let parse = |s: &str| s.parse::<Multiaddr>().unwrap();
        let addrs = [
            parse("/ip4/127.0.0.1/tcp/4001"),
            parse("/ip4/192.168.1.5/tcp/4001"),
            parse("/ip4/203.0.113.9/tcp/4001"),
        ];
        assert_eq!(best_relay_addr(&addrs, false), Some(addrs[2].clone()));
        assert_eq!(best_relay_addr(&addrs[..2], true), Some(addrs[1].clone()));
        assert_eq!(best_relay_addr(&addrs[..1], true), None);
    }

    #[test]
    fn bootstrap_relays_come_first_and_failed_ones_wait() {
        let t0 = Instant::now();
        let mut r = Relays::new(true);
        let (dht_relay, boot_relay) = (PeerId::random(), PeerId::random());
        let addr: Multiaddr = "/ip4/10.0.0.1/tcp/1".parse().unwrap();
        for (peer, bootstrap) in [(dht_relay, false), (boot_relay, true)] {
            r.candidates.insert(
                peer,
                Candidate {
                    addr: addr.clone(),
                    bootstrap,
                    failures: 0,
                    retry_at: t0,
                },
            );
        }
        assert_eq!(r.next(t0).unwrap().0, boot_relay);
        r.candidates.get_mut(&boot_relay).unwrap().retry_at = t0 + FIRST_RETRY;
        assert_eq!(r.next(t0).unwrap().0, dht_relay);
        r.reservations.insert(
            ListenerId::next(),
            Reservation {
                relay: dht_relay,
                addr: None,
            },
        );
        assert!(r.next(t0).is_none(), "one reservation per relay");
        assert_eq!(r.next(t0 + FIRST_RETRY).unwrap().0, boot_relay);
    }
}
