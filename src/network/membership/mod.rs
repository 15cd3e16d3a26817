//! Topic membership: who the members of each epoch of a topic are (the
//! roster: members announce themselves in the topic, and every author seen
//! counts), and how a topic moves from epoch to epoch: rekeying (and
//! removing members), inviting, the grace period during which an epoch left
//! behind is still read, the rule that makes concurrent rekeys converge, and
//! answering a member who was away during a rekey.
//!
//! Control messages to a member travel end to end like direct messages:
//! rekeys and invitations through the outbox (durable, retried until the
//! expiry), requests for the current epoch at once; what a node does with
//! the ones it receives is in [`incoming`]. docs/security.md, "Membership".

mod incoming;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::request_response::OutboundRequestId;
use libp2p::{gossipsub, PeerId};

use super::dm::DmRequest;
use super::EventLoop;
use crate::clock::now_ms;
use crate::control::{self, DirectControl, EpochKeys, TopicControl};
use crate::crypto::direct_recipient;
use crate::envelope::{Envelope, Payload, Purpose};
use crate::event::{Event, MemberSummary};
use crate::keyring::TopicEntry;
use crate::reply::NodeError;
use crate::store::{Insert, Member, Via};

/// How long an epoch left behind by a rekey is still read (messages in
/// flight during the switch are not lost), unless `--rekey-grace` says otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10 * 60);
/// Members kept per epoch of a topic, at most.
const MAX_ROSTER: usize = 1024;

/// A rekey this node made.
struct OurRekey {
    /// The epoch it created.
    id: [u8; 32],
    /// The epoch it replaced.
    prev: [u8; 32],
    /// The members it was sent to.
    recipients: Vec<PeerId>,
    /// The peers it removed.
    removed: BTreeSet<String>,
}

/// Membership state.
pub(super) struct Membership {
    /// Rosters by topic id (every epoch held): peer → display name.
    rosters: HashMap<[u8; 32], BTreeMap<PeerId, String>>,
    /// Epochs left behind, still joined until the instant given.
    grace: HashMap<gossipsub::TopicHash, Instant>,
    grace_period: Duration,
    /// Our own latest rekey of each topic (by name), for when a concurrent
    /// one wins: we pass the winner on to those we told of ours, and rekey
    /// again if it did not make our removals.
    our_rekeys: HashMap<String, OurRekey>,
    /// Requests for the current epoch sent at once (not through the outbox).
    requests: HashMap<OutboundRequestId, (PeerId, String)>,
    /// (peer, topic name) asked on the current connection to that peer.
    asked: HashSet<(PeerId, String)>,
    /// Who made each epoch we switched to on another's rekey (by topic id),
    /// so that a rekey removing that author replaces its epoch.
    authors: HashMap<[u8; 32], PeerId>,
    /// Epochs whose inbox holds our announcement as a member: it is stored
    /// and served by catch-up, so a restart does not announce again.
    announced: HashSet<[u8; 32]>,
}

impl Membership {
    pub(super) fn new(grace_period: Duration) -> Self {
        Self {
            rosters: HashMap::new(),
            grace: HashMap::new(),
            grace_period,
            our_rekeys: HashMap::new(),
            requests: HashMap::new(),
            asked: HashSet::new(),
            authors: HashMap::new(),
            announced: HashSet::new(),
        }
    }

    /// Adds a member to the roster of `topic_id`; returns whether it is new.
    fn add(&mut self, topic_id: [u8; 32], peer: PeerId, name: String) -> bool {
        let roster = self.rosters.entry(topic_id).or_default();
        if roster.contains_key(&peer) || roster.len() >= MAX_ROSTER {
            return false;
        }
        roster.insert(peer, name);
        true
    }

    /// The name `peer` signed as a member of the epoch `topic_id`, if it is one.
    fn name(&self, topic_id: &[u8; 32], peer: &PeerId) -> Option<String> {
        self.rosters.get(topic_id)?.get(peer).filter(|n| !n.is_empty()).cloned()
    }

    /// The members whose signed name is `name` (case-insensitive), each
    /// once, in the rosters of the epochs that `held` accepts.
    pub(super) fn named(&self, name: &str, held: impl Fn(&[u8; 32]) -> bool) -> BTreeSet<PeerId> {
        self.rosters
            .iter()
            .filter(|(topic_id, _)| held(topic_id))
            .flat_map(|(_, roster)| roster.iter())
            .filter(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(peer, _)| *peer)
            .collect()
    }

    /// The name `peer` signed in any roster held, if it is in one.
    pub(super) fn any_name(&self, peer: &PeerId) -> Option<String> {
        self.rosters
            .values()
            .filter_map(|roster| roster.get(peer))
            .find(|name| !name.is_empty())
            .cloned()
    }

    /// Whether `peer` is a member of the epoch `topic_id`.
    pub(super) fn is_member(&self, topic_id: &[u8; 32], peer: &PeerId) -> bool {
        self.rosters.get(topic_id).is_some_and(|r| r.contains_key(peer))
    }

    /// A request for the current epoch was answered (`true`) or failed.
    pub(super) fn take_request(&mut self, request: &OutboundRequestId) -> Option<(PeerId, String)> {
        self.requests.remove(request)
    }

    /// The last connection to `peer` closed: ask it again next time.
    pub(super) fn peer_gone(&mut self, peer: &PeerId) {
        self.asked.retain(|(p, _)| p != peer);
    }
}

impl EventLoop {
    /// Reads every roster from the store (before the loop takes requests).
    pub(super) async fn load_rosters(&mut self) {
        match self.store.members_load().await {
            Ok(rows) => {
                for (topic_id, m) in rows {
                    if let Ok(peer) = m.peer.parse() {
                        self.membership.add(topic_id, peer, m.name);
                    }
                }
            }
            Err(e) => tracing::error!("cannot read the topic rosters: {e}"),
        }
    }

    /// Adds `peer` to the roster of `topic_id` in memory; returns whether it is new.
    pub(super) fn add_member(&mut self, topic_id: [u8; 32], peer: PeerId, name: String) -> bool {
        self.membership.add(topic_id, peer, name)
    }

    /// A message or announcement from `insert`'s author: a member of its topic.
    pub(super) fn note_member(&mut self, insert: &Insert) {
        if let Some(m) = &insert.member {
            if let Ok(peer) = m.peer.parse() {
                self.membership.add(insert.topic_id, peer, m.name.clone());
            }
        }
    }

    /// Whether `peer` was removed from the topic `name` (by its current epoch's rekeys).
    pub(super) fn removed_from(&self, name: &str, peer: &PeerId) -> bool {
        let keyring = self.keyring.read().expect("keyring lock");
        let peer = peer.to_string();
        keyring.topic(name).is_some_and(|t| t.removed.contains(&peer))
    }

    /// Epochs whose inbox already holds our announcement (read at start,
    /// before the topics are joined).
    pub(crate) fn already_announced(&mut self, topic_ids: impl IntoIterator<Item = [u8; 32]>) {
        self.membership.announced.extend(topic_ids);
    }

    /// Announces this node as a member of the epoch `entry` (a control
    /// message in the topic, stored and served by catch-up like a message),
    /// once: not again on a restart, or on joining the epoch again.
    pub(super) fn announce_member(&mut self, hash: &gossipsub::TopicHash, entry: &TopicEntry) {
        if self.plain {
            return;
        }
        let local = *self.swarm.local_peer_id();
        self.membership.add(entry.id, local, self.name.clone());
        if self.membership.announced.contains(&entry.id) {
            return;
        }
        let sent = self.seal_and_send(hash, entry, Purpose::Control, TopicControl::Member.to_body());
        let (envelope, frame, _) = match sent {
            Ok(sent) => sent,
            Err(e) => {
                tracing::warn!(topic = entry.name, "cannot announce membership: {e}");
                return;
            }
        };
        self.membership.announced.insert(entry.id);
        let insert = Insert {
            id: envelope.salt,
            purpose: Purpose::Control,
            topic_id: entry.id,
            ts: envelope.ts,
            envelope: frame,
            via: Via::Local,
            own_seq: Some(self.publisher_next_seq()),
            client_key: None,
            event: None,
            done: None,
            member: Some(self.me_as_member()),
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.insert(insert).await {
                tracing::warn!("cannot store an announcement: {e}");
            }
        });
    }

    /// The members of the current epoch of `name`.
    pub(super) fn members(&self, name: &str) -> Result<(u32, Vec<MemberSummary>), NodeError> {
        crate::commands::validate_topic(name)?;
        let entry = self.current_entry(name)?;
        let local = *self.swarm.local_peer_id();
        let members = self
            .membership
            .rosters
            .get(&entry.id)
            .map(|r| {
                r.iter()
                    .map(|(peer, n)| MemberSummary {
                        peer: peer.to_string(),
                        name: n.clone(),
                        me: *peer == local,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok((entry.epoch, members))
    }

    pub(super) fn current_entry(&self, name: &str) -> Result<TopicEntry, NodeError> {
        let keyring = self.keyring.read().expect("keyring lock");
        keyring
            .topic(name)
            .cloned()
            .ok_or_else(|| NodeError::NotSubscribed(name.to_owned()))
    }

    /// `/rekey`: moves `name` to a new epoch whose keys go end to end to
    /// every member but the removed ones. Returns the new epoch.
    pub(super) fn rekey(&mut self, name: &str, remove: &[String]) -> Result<u32, NodeError> {
        crate::commands::validate_topic(name)?;
        let current = self.current_entry(name)?;
        let local = *self.swarm.local_peer_id();
        let mut removed_now = BTreeSet::new();
        for who in remove {
            // A member of this topic first: a stranger connected under a
            // member's name must not be removed in its place.
            let peer = match self.roster_peer(&current.id, who)? {
                Some(member) => member,
                None => self.peers.resolve(who)?,
            };
            if peer == local {
                return Err(NodeError::Command(crate::commands::CommandError::Usage(
                    "a member cannot remove itself; /unsub leaves a topic",
                )));
            }
            removed_now.insert(peer.to_string());
        }
        let keys = control::new_epoch(name, current.epoch + 1);
        let mut removed: BTreeSet<String> = current.removed.iter().cloned().collect();
        removed.extend(removed_now.iter().cloned());
        let removed: Vec<String> = removed.into_iter().collect();
        let recipients: Vec<PeerId> = self
            .membership
            .rosters
            .get(&current.id)
            .map(|r| {
                r.keys()
                    .copied()
                    .filter(|p| *p != local && !removed.contains(&p.to_string()))
                    .collect()
            })
            .unwrap_or_default();
        self.switch_epoch(
            name,
            &keys,
            &current,
            removed.clone(),
            local,
            removed_now.iter().cloned().collect(),
        )?;
        self.membership.our_rekeys.insert(
            name.to_owned(),
            OurRekey {
                id: keys.id,
                prev: current.id,
                recipients: recipients.clone(),
                removed: removed_now,
            },
        );
        for peer in recipients {
            let rekey = DirectControl::Rekey {
                topic: name.to_owned(),
                prev: current.id,
                keys: keys.clone(),
                removed: removed.clone(),
            };
            self.send_control(peer, rekey, true);
        }
        Ok(keys.epoch)
    }

    /// The member of the roster of `topic_id` that `who` names (a peer id,
    /// or the name it signed), if any.
    ///
    /// # Errors
    /// [`NodeError::AmbiguousPeer`] when several members signed that name.
    fn roster_peer(&self, topic_id: &[u8; 32], who: &str) -> Result<Option<PeerId>, NodeError> {
        let Some(roster) = self.membership.rosters.get(topic_id) else {
            return Ok(None);
        };
        if let Ok(peer) = who.parse::<PeerId>() {
            return Ok(roster.contains_key(&peer).then_some(peer));
        }
        let named: Vec<PeerId> = roster
            .iter()
            .filter(|(_, n)| n.eq_ignore_ascii_case(who))
            .map(|(p, _)| *p)
            .collect();
        super::peers::the_one(who, &named)
    }

    /// `/invite`: sends the current epoch of `name` end to end to `who`.
    pub(super) fn invite(&mut self, name: &str, who: &str) -> Result<(), NodeError> {
        crate::commands::validate_topic(name)?;
        let current = self.current_entry(name)?;
        let peer = self.resolve_peer(who)?;
        if peer == *self.swarm.local_peer_id() {
            return Err(NodeError::SelfDm);
        }
        if current.removed.contains(&peer.to_string()) {
            return Err(NodeError::WasRemoved {
                peer: self.peers.name(&peer).unwrap_or_else(|| peer.to_string()),
                topic: name.to_owned(),
            });
        }
        let invite = DirectControl::Invite {
            topic: name.to_owned(),
            keys: EpochKeys {
                epoch: current.epoch,
                id: current.id,
                key: current.key,
            },
            removed: current.removed.clone(),
        };
        self.send_control(peer, invite, true);
        Ok(())
    }

    /// Moves topic `name` from `previous` to the epoch `keys`: subscribes
    /// it (publishing goes there now), keeps reading `previous` for the
    /// grace period, carries the roster over (less the removed), announces
    /// ourselves, and reports `rekeyed`.
    pub(super) fn switch_epoch(
        &mut self,
        name: &str,
        keys: &EpochKeys,
        previous: &TopicEntry,
        removed: Vec<String>,
        by: PeerId,
        removed_now: Vec<String>,
    ) -> Result<(), NodeError> {
        self.keyring
            .write()
            .expect("keyring lock")
            .join_epoch(name, &keys.keys(), keys.epoch, removed.clone())
            .map_err(|e| NodeError::Keyring(e.to_string()))?;
        let entry = self.current_entry(name)?;
        // The roster carries over, less the removed.
        let carried: Vec<(PeerId, String)> = self
            .membership
            .rosters
            .get(&previous.id)
            .map(|r| {
                r.iter()
                    .filter(|(p, _)| !removed.contains(&p.to_string()))
                    .map(|(p, n)| (*p, n.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (peer, n) in &carried {
            self.membership.add(keys.id, *peer, n.clone());
        }
        let rows = carried
            .into_iter()
            .map(|(peer, name)| Member {
                peer: peer.to_string(),
                name,
                event: None,
            })
            .collect();
        let store = self.store.clone();
        let topic_id = keys.id;
        tokio::spawn(async move {
            if let Err(e) = store.members_put(topic_id, rows).await {
                tracing::warn!("cannot store a roster: {e}");
            }
        });
        // Every joined epoch of the name but the new one is read for the grace period.
        let until = Instant::now() + self.membership.grace_period;
        for hash in self.topics.hashes() {
            let is_old = self
                .topics
                .get(&hash)
                .is_some_and(|t| t.name == name && t.id != keys.id);
            if is_old {
                self.topics.retire(&hash);
                self.membership.grace.entry(hash).or_insert(until);
            }
        }
        let hash = gossipsub::IdentTopic::new(hex::encode(keys.id)).hash();
        if self.topics.is_joined(&hash) {
            // Read during a grace period already (a concurrent rekey): current now.
            self.membership.grace.remove(&hash);
            self.topics.remove(&hash);
        }
        self.join_quietly(entry)?;
        self.sync_topic_peers(&hash);
        tracing::info!(topic = name, epoch = keys.epoch, %by, "topic moved to a new epoch");
        let names = std::iter::once(by.to_string())
            .chain(removed_now.iter().cloned())
            .filter_map(|p| {
                let peer: PeerId = p.parse().ok()?;
                let name = if peer == *self.swarm.local_peer_id() {
                    Some(self.name.clone())
                } else {
                    self.membership
                        .name(&previous.id, &peer)
                        .or_else(|| self.peers.name(&peer))
                };
                Some((p, name?))
            })
            .collect();
        self.emit(Event::Rekeyed {
            topic: name.to_owned(),
            epoch: keys.epoch,
            by: by.to_string(),
            removed: removed_now,
            names,
        });
        Ok(())
    }

    /// Reads an epoch we are not moving to (a concurrent rekey that lost)
    /// for the grace period, so that what was published in it is not lost.
    pub(super) fn read_for_grace(&mut self, name: &str, keys: &EpochKeys) {
        let hash = gossipsub::IdentTopic::new(hex::encode(keys.id)).hash();
        if self.topics.is_joined(&hash) {
            return;
        }
        let remembered = self
            .keyring
            .write()
            .expect("keyring lock")
            .remember(name, &keys.keys(), false);
        if let Err(e) = remembered {
            tracing::warn!("cannot keep the keys of an epoch: {e}");
            return;
        }
        let Some(entry) = self.keyring.read().expect("keyring lock").by_id(&keys.id).cloned() else {
            return;
        };
        if self
            .join_quietly(TopicEntry {
                epoch: keys.epoch,
                ..entry
            })
            .is_ok()
        {
            self.membership
                .grace
                .insert(hash.clone(), Instant::now() + self.membership.grace_period);
            // What was published in it before we joined comes by catch-up.
            self.sync_topic_peers(&hash);
        }
    }

    /// Leaves the epochs whose grace period is over.
    pub(super) fn end_grace(&mut self) {
        let now = Instant::now();
        let over: Vec<gossipsub::TopicHash> = self
            .membership
            .grace
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(h, _)| h.clone())
            .collect();
        for hash in over {
            self.leave_epoch(&hash);
        }
    }

    /// Stops reading an epoch left behind (its keys stay, for the inbox).
    pub(super) fn leave_epoch(&mut self, hash: &gossipsub::TopicHash) {
        self.membership.grace.remove(hash);
        if let Some(entry) = self.topics.remove(hash) {
            tracing::debug!(
                topic = entry.name,
                epoch = entry.epoch,
                "grace period over: leaving the old epoch"
            );
            self.rendezvous_leave(&entry.id);
            self.publisher.forget_topic(hash);
            self.swarm
                .behaviour_mut()
                .gossipsub
                .unsubscribe(&gossipsub::IdentTopic::new(hash.clone().into_string()));
        }
    }

    /// Seals a control message for `peer` and sends it: through the outbox
    /// (`reliable`: kept and retried until the expiry) or at once.
    pub(super) fn send_control(&mut self, peer: PeerId, control: DirectControl, reliable: bool) {
        let Some(key) = self.pair_key(&peer) else {
            tracing::warn!(%peer, "cannot send a control message: no key to seal it to");
            return;
        };
        let local = *self.swarm.local_peer_id();
        let ts = now_ms();
        let payload = Payload {
            seq: 0,
            name: self.name.clone(),
            body: control.to_body(),
        };
        let envelope = Envelope::seal(
            &key,
            Purpose::DirectControl,
            direct_recipient(&peer),
            local,
            ts,
            &payload,
        );
        if reliable {
            self.queue_control(peer, envelope, control.describe(), ts);
            return;
        }
        let request = self.swarm.behaviour_mut().dm.send_request(
            &peer,
            DmRequest {
                envelope: envelope.encode(),
            },
        );
        let topic = match &control {
            DirectControl::KeyRequest { topic, .. } => topic.clone(),
            _ => String::new(),
        };
        self.membership.requests.insert(request, (peer, topic));
    }

    /// A peer is connected: for every topic whose current epoch it is a
    /// member of, ask whether it holds a newer epoch (we may have been away
    /// during a rekey, past the expiry of its message).
    pub(super) fn ask_for_newer_epochs(&mut self, peer: PeerId) {
        if self.plain {
            return;
        }
        let current: Vec<TopicEntry> = self
            .keyring
            .read()
            .expect("keyring lock")
            .subscribed()
            .cloned()
            .collect();
        for entry in current {
            if !self.membership.is_member(&entry.id, &peer) || !self.membership.asked.insert((peer, entry.name.clone()))
            {
                continue;
            }
            let request = DirectControl::KeyRequest {
                topic: entry.name.clone(),
                id: entry.id,
                epoch: entry.epoch,
            };
            self.send_control(peer, request, false);
        }
    }
}
