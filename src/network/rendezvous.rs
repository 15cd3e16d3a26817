//! Topic rendezvous in the DHT: members of a topic announce themselves as
//! providers under a key only holders of the topic key can compute
//! ([`crate::crypto::topic_rendezvous`]: unlinkable to the topic's name and
//! id, new every day), and look up the others when they subscribe, again
//! while the topic has fewer connected members than the mesh wants, and at
//! each epoch change. Every node also announces itself under its peer
//! rendezvous key, so that a DM to its peer id finds it.
//!
//! [`Rendezvous`] decides what to announce and when to look up (pure
//! bookkeeping, unit-tested); the event loop runs the DHT queries.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::gossipsub;
use libp2p::kad::RecordKey;

use super::dht::dht_key;
use super::topics::subscribed_peers;
use super::EventLoop;
use crate::clock::now_ms;
use crate::crypto::{peer_rendezvous, rendezvous_epoch, topic_rendezvous, Key};

/// Connected members a topic wants before lookups stop: gossipsub's mesh size.
pub const WANTED_MEMBERS: usize = 6;
/// The first wait between two lookups of an under-connected topic…
const FIRST_LOOKUP_DELAY: Duration = Duration::from_secs(2);
/// …doubling up to this while lookups find nobody new.
const MAX_LOOKUP_DELAY: Duration = Duration::from_secs(5 * 60);
/// The shortest wait between two lookups of one DM recipient.
const PEER_LOOKUP_DELAY: Duration = Duration::from_secs(30);
/// DM recipients whose last lookup is remembered.
const MAX_PEER_LOOKUPS: usize = 1024;

/// One subscribed topic's rendezvous.
struct TopicRendezvous {
    /// The topic key (the rendezvous key of each epoch derives from it).
    key: Key,
    /// The gossipsub topic, to count its connected members.
    hash: gossipsub::TopicHash,
    next_lookup: Instant,
    delay: Duration,
}

/// What this node announces in the DHT and when it looks up topic members.
pub(super) struct Rendezvous {
    epoch: u64,
    topics: HashMap<[u8; 32], TopicRendezvous>,
    /// When each DM recipient was last looked up.
    peer_lookups: HashMap<libp2p::PeerId, Instant>,
}

impl Rendezvous {
    pub(super) fn new(now_ms: u64) -> Self {
        Self {
            epoch: rendezvous_epoch(now_ms),
            topics: HashMap::new(),
            peer_lookups: HashMap::new(),
        }
    }

    /// Starts the rendezvous of a topic: its first lookup is due at once.
    /// Returns its key for this epoch.
    fn add(&mut self, topic_id: [u8; 32], key: Key, hash: gossipsub::TopicHash, now: Instant) -> [u8; 32] {
        self.topics.insert(
            topic_id,
            TopicRendezvous {
                key,
                hash,
                next_lookup: now,
                delay: FIRST_LOOKUP_DELAY,
            },
        );
        topic_rendezvous(&key, self.epoch)
    }

    /// Ends a topic's rendezvous; returns the key it was announced under.
    fn remove(&mut self, topic_id: &[u8; 32]) -> Option<[u8; 32]> {
        let t = self.topics.remove(topic_id)?;
        Some(topic_rendezvous(&t.key, self.epoch))
    }

    /// Every current rendezvous key (one per topic).
    fn keys(&self) -> Vec<[u8; 32]> {
        self.topics
            .values()
            .map(|t| topic_rendezvous(&t.key, self.epoch))
            .collect()
    }

    /// Moves to the epoch of `now_ms` if it changed: returns the keys to stop
    /// announcing and every topic's lookup becomes due.
    fn advance(&mut self, now_ms: u64, now: Instant) -> Option<Vec<[u8; 32]>> {
        let epoch = rendezvous_epoch(now_ms);
        if epoch == self.epoch {
            return None;
        }
        let old = self.keys();
        self.epoch = epoch;
        for t in self.topics.values_mut() {
            t.next_lookup = now;
            t.delay = FIRST_LOOKUP_DELAY;
        }
        Some(old)
    }

    /// The topics whose lookup is due and that `under_connected` says lack
    /// members, with their keys; each is scheduled again after its delay,
    /// which doubles (up to [`MAX_LOOKUP_DELAY`]) until a member is lost.
    fn due(&mut self, now: Instant, under_connected: impl Fn(&gossipsub::TopicHash) -> bool) -> Vec<[u8; 32]> {
        let epoch = self.epoch;
        let mut keys = Vec::new();
        for t in self.topics.values_mut() {
            if t.next_lookup > now || !under_connected(&t.hash) {
                continue;
            }
            keys.push(topic_rendezvous(&t.key, epoch));
            t.next_lookup = now + t.delay;
            t.delay = (t.delay * 2).min(MAX_LOOKUP_DELAY);
        }
        keys
    }

    /// A connection to a peer ended (or the DHT became usable): lookups of
    /// every topic start again from the first delay.
    fn member_lost(&mut self, now: Instant) {
        for t in self.topics.values_mut() {
            t.delay = FIRST_LOOKUP_DELAY;
            t.next_lookup = t.next_lookup.min(now + FIRST_LOOKUP_DELAY);
        }
    }

    /// Whether a lookup of `peer` may run now (at most one per [`PEER_LOOKUP_DELAY`]).
    fn peer_lookup_due(&mut self, peer: libp2p::PeerId, now: Instant) -> bool {
        if self
            .peer_lookups
            .get(&peer)
            .is_some_and(|t| now < *t + PEER_LOOKUP_DELAY)
        {
            return false;
        }
        if self.peer_lookups.len() >= MAX_PEER_LOOKUPS {
            self.peer_lookups.clear();
        }
        self.peer_lookups.insert(peer, now);
        true
    }
}

impl EventLoop {
    /// Whether this node has an address others can dial (public, or a relay
    /// circuit): only then do its announcements carry a way to reach it.
    fn reachable(&self) -> bool {
        self.swarm.external_addresses().next().is_some()
    }

    /// A topic was joined: announce it (when reachable) and look up its members.
    pub(super) fn rendezvous_join(&mut self, topic_id: [u8; 32], key: Key, hash: gossipsub::TopicHash) {
        if self.plain {
            return;
        }
        let digest = self.rendezvous.add(topic_id, key, hash, Instant::now());
        if self.reachable() {
            self.provide(dht_key(&digest));
        }
        self.rendezvous_tick();
    }

    /// A topic was left: stop announcing it.
    pub(super) fn rendezvous_leave(&mut self, topic_id: &[u8; 32]) {
        if let Some(digest) = self.rendezvous.remove(topic_id) {
            self.stop_providing(&dht_key(&digest));
        }
    }

    /// Our external addresses changed: announce every key again, so that
    /// the records carry the addresses we have now.
    pub(super) fn announce_all(&mut self) {
        if !self.reachable() {
            return;
        }
        let local = *self.swarm.local_peer_id();
        let mut keys: Vec<RecordKey> = self.rendezvous.keys().iter().map(dht_key).collect();
        keys.push(dht_key(&peer_rendezvous(&local)));
        for key in keys {
            self.provide(key);
        }
    }

    /// A peer left: lookups start again soon.
    pub(super) fn rendezvous_member_lost(&mut self) {
        self.rendezvous.member_lost(Instant::now());
    }

    /// Every tick: a new epoch, then the lookups that are due.
    pub(super) fn rendezvous_tick(&mut self) {
        let now = Instant::now();
        if let Some(old) = self.rendezvous.advance(now_ms(), now) {
            tracing::info!("new rendezvous epoch: announcing the topics under their new keys");
            for digest in old {
                self.stop_providing(&dht_key(&digest));
            }
            self.announce_all();
        }
        if !self.dht.joined() {
            return;
        }
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let due = self
            .rendezvous
            .due(now, |hash| subscribed_peers(gossipsub, hash).count() < WANTED_MEMBERS);
        for digest in due {
            self.find_topic_members(dht_key(&digest));
        }
    }

    /// Looks up a DM recipient we have no address for (at most every 30 s per peer).
    pub(super) fn rendezvous_find_peer(&mut self, peer: libp2p::PeerId) {
        if self.dht.joined() && self.rendezvous.peer_lookup_due(peer, Instant::now()) {
            self.find_peer(peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> gossipsub::TopicHash {
        gossipsub::IdentTopic::new(format!("t{n}")).hash()
    }

    #[test]
    fn lookups_back_off_while_nobody_new_is_found_and_restart_when_a_member_leaves() {
        let t0 = Instant::now();
        let mut r = Rendezvous::new(0);
        let key = r.add([1; 32], [9; 32], hash(1), t0);
        assert_eq!(key, topic_rendezvous(&[9; 32], 0));
        assert_eq!(r.due(t0, |_| true), vec![key], "due at once");
        assert!(r.due(t0, |_| true).is_empty());
        // 2 s, then 4, 8, …: lookups in the first minute, at most six.
        let lookups = (1..=60)
            .filter(|s| !r.due(t0 + Duration::from_secs(*s), |_| true).is_empty())
            .count();
        assert!((4..=6).contains(&lookups), "{lookups}");
        // A well-connected topic is not looked up.
        r.member_lost(t0 + Duration::from_secs(60));
        assert!(r.due(t0 + Duration::from_secs(70), |_| false).is_empty());
        assert_eq!(r.due(t0 + Duration::from_secs(70), |_| true).len(), 1);
        assert_eq!(r.remove(&[1; 32]), Some(key));
        assert!(r.due(t0 + Duration::from_secs(999), |_| true).is_empty());
    }

    #[test]
    fn a_new_epoch_changes_every_key_and_makes_lookups_due() {
        let t0 = Instant::now();
        let day = crate::crypto::RENDEZVOUS_EPOCH_MS;
        let mut r = Rendezvous::new(10 * day);
        let today = r.add([1; 32], [9; 32], hash(1), t0);
        r.due(t0, |_| true);
        assert!(r.advance(10 * day + 5, t0).is_none());
        assert_eq!(r.advance(11 * day, t0), Some(vec![today]));
        let tomorrow = r.keys();
        assert_eq!(tomorrow, vec![topic_rendezvous(&[9; 32], 11)]);
        assert_ne!(tomorrow[0], today);
        assert_eq!(r.due(t0, |_| true), tomorrow);
    }

    #[test]
    fn a_dm_recipient_is_looked_up_at_most_every_30_s() {
        let t0 = Instant::now();
        let mut r = Rendezvous::new(0);
        let peer = libp2p::PeerId::random();
        assert!(r.peer_lookup_due(peer, t0));
        assert!(!r.peer_lookup_due(peer, t0 + Duration::from_secs(29)));
        assert!(r.peer_lookup_due(peer, t0 + Duration::from_secs(30)));
    }
}
