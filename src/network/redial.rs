//! Which disconnected peers to dial again, and when: peers found by mDNS
//! (until mDNS expires them, at most [`MAX_LAN_PEERS`] of them), `--peer`
//! addresses and `--bootstrap` nodes, each with its own backoff. Pure bookkeeping; the event loop
//! does the dialling.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

/// First retry delay.
const BASE: Duration = Duration::from_secs(1);
/// Longest delay between two dials of a LAN peer: they are cheap, and a
/// healed partition should reconnect within a couple of seconds.
const LAN_MAX: Duration = Duration::from_secs(2);
/// Longest delay between two dials of a `--peer` address or a bootstrap node.
const EXPLICIT_MAX: Duration = Duration::from_secs(30);

/// LAN peers watched at once: a flood of mDNS announcements (random peer ids)
/// cannot make the node track or dial more. Later ones wait until some expire.
pub const MAX_LAN_PEERS: usize = 64;
/// Addresses remembered per watched peer.
pub const MAX_ADDRS_PER_PEER: usize = 8;

/// How a peer became known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Found by mDNS on the LAN.
    Lan,
    /// Given with `--peer`.
    Explicit,
    /// A DHT bootstrap node (`--bootstrap`).
    Bootstrap,
}

#[derive(Debug)]
struct Entry {
    addrs: Vec<Multiaddr>,
    origin: Origin,
    failures: u32,
    next: Instant,
}

/// The redial schedule.
#[derive(Debug, Default)]
pub struct Redialer {
    entries: HashMap<PeerId, Entry>,
}

impl Redialer {
    /// Starts (or refreshes) watching `peer` at `addrs` (at most
    /// [`MAX_ADDRS_PER_PEER`] of them). A peer given on the command line
    /// (`--peer`, `--bootstrap`) stays watched when mDNS also finds it.
    /// Returns false, and watches nothing, for a new LAN peer when
    /// [`MAX_LAN_PEERS`] are watched already.
    pub fn watch(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, origin: Origin, now: Instant) -> bool {
        if origin == Origin::Lan && !self.entries.contains_key(&peer) && self.lan_peers() >= MAX_LAN_PEERS {
            return false;
        }
        let entry = self.entries.entry(peer).or_insert(Entry {
            addrs: Vec::new(),
            origin,
            failures: 0,
            next: now,
        });
        for a in addrs {
            if entry.addrs.len() < MAX_ADDRS_PER_PEER && !entry.addrs.contains(&a) {
                entry.addrs.push(a);
            }
        }
        if origin != Origin::Lan {
            entry.origin = origin;
        }
        true
    }

    /// Whether `peer` is watched.
    pub fn watches(&self, peer: &PeerId) -> bool {
        self.entries.contains_key(peer)
    }

    fn lan_peers(&self) -> usize {
        self.entries.values().filter(|e| e.origin == Origin::Lan).count()
    }

    /// Stops watching a LAN peer (mDNS expired it). Peers from the command line stay.
    pub fn forget(&mut self, peer: &PeerId) {
        if self.entries.get(peer).is_some_and(|e| e.origin == Origin::Lan) {
            self.entries.remove(peer);
        }
    }

    /// A connection to `peer` is up: its backoff starts over.
    pub fn connected(&mut self, peer: &PeerId) {
        if let Some(e) = self.entries.get_mut(peer) {
            e.failures = 0;
        }
    }

    /// The peers to dial now (not connected, backoff elapsed); schedules their next try.
    pub fn due(&mut self, now: Instant, is_connected: impl Fn(&PeerId) -> bool) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut out = Vec::new();
        for (peer, e) in &mut self.entries {
            if is_connected(peer) || e.next > now {
                continue;
            }
            let max = match e.origin {
                Origin::Lan => LAN_MAX,
                Origin::Explicit | Origin::Bootstrap => EXPLICIT_MAX,
            };
            let delay = BASE.saturating_mul(1 << e.failures.min(16)).min(max);
            e.failures = e.failures.saturating_add(1);
            e.next = now + delay;
            out.push((*peer, e.addrs.clone()));
        }
        out
    }

    /// How many peers are watched.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no peer is watched.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::random()
    }

    #[test]
    fn backs_off_and_caps() {
        let mut r = Redialer::default();
        let (lan, far) = (peer(), peer());
        let t0 = Instant::now();
        r.watch(lan, vec!["/ip4/10.0.0.1/tcp/1".parse().unwrap()], Origin::Lan, t0);
        r.watch(far, vec!["/ip4/10.0.0.2/tcp/1".parse().unwrap()], Origin::Explicit, t0);
        assert_eq!(r.due(t0, |_| false).len(), 2);
        assert!(r.due(t0, |_| false).is_empty(), "nothing is due twice at once");
        // After a minute of failures, a LAN peer is tried every 2 s, an explicit one every 30 s.
        let mut lan_tries = 0;
        let mut far_tries = 0;
        for s in 1..=120 {
            for (p, _) in r.due(t0 + Duration::from_millis(500 * s), |_| false) {
                if p == lan {
                    lan_tries += 1
                } else {
                    far_tries += 1
                }
            }
        }
        assert!((28..=32).contains(&lan_tries), "{lan_tries}");
        assert!((3..=6).contains(&far_tries), "{far_tries}");
        // Connected peers are skipped; a connection resets the backoff.
        let t1 = t0 + Duration::from_secs(100);
        assert!(r.due(t1, |_| true).is_empty());
        r.connected(&lan);
        assert_eq!(r.due(t1, |p| *p != lan).len(), 1);
        // mDNS expiry forgets LAN peers only.
        r.forget(&lan);
        r.forget(&far);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn an_mdns_flood_watches_a_bounded_number_of_peers_and_addresses() {
        let mut r = Redialer::default();
        let t0 = Instant::now();
        let explicit = peer();
        assert!(r.watch(
            explicit,
            vec!["/ip4/10.0.0.9/tcp/1".parse().unwrap()],
            Origin::Explicit,
            t0
        ));
        let addrs = |i: usize| -> Vec<Multiaddr> {
            (0..100)
                .map(|p| {
                    format!("/ip4/10.1.{}.{}/tcp/{}", i / 250, i % 250, p + 1)
                        .parse()
                        .unwrap()
                })
                .collect()
        };
        let accepted = (0..10_000)
            .filter(|&i| r.watch(peer(), addrs(i), Origin::Lan, t0))
            .count();
        assert_eq!(accepted, MAX_LAN_PEERS);
        assert_eq!(r.len(), MAX_LAN_PEERS + 1);
        let due = r.due(t0, |_| false);
        assert_eq!(due.len(), MAX_LAN_PEERS + 1);
        assert!(due.iter().all(|(_, a)| a.len() <= MAX_ADDRS_PER_PEER));
        // Explicit peers are never refused; an expired LAN peer frees a place.
        assert!(r.watch(peer(), addrs(0), Origin::Explicit, t0));
        let (lan, _) = due.iter().find(|(p, _)| *p != explicit).unwrap();
        r.forget(lan);
        assert!(r.watch(peer(), addrs(1), Origin::Lan, t0));
        assert!(!r.watch(peer(), addrs(2), Origin::Lan, t0));
    }
}
