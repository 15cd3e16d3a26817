//! Subscribed topics: joining a topic's gossipsub topic (keys derived from its
//! secret, scoring parameters set), leaving it, and counting the peers that
//! share each one.

use std::collections::HashMap;

use libp2p::{gossipsub, PeerId};

use super::{behaviour, EventLoop};
use crate::crypto::TopicKeys;
use crate::event::Event;
use crate::keyring::TopicEntry;
use crate::reply::{NodeError, Subscription, TopicPeers};

/// The topics this node is subscribed to, by gossipsub topic hash.
#[derive(Default)]
pub(super) struct Topics {
    by_hash: HashMap<gossipsub::TopicHash, TopicEntry>,
}

impl Topics {
    /// The subscribed topic with this gossipsub hash.
    pub(super) fn get(&self, hash: &gossipsub::TopicHash) -> Option<&TopicEntry> {
        self.by_hash.get(hash)
    }

    /// The subscribed topic with this topic id.
    pub(super) fn by_id(&self, topic_id: &[u8; 32]) -> Option<&TopicEntry> {
        self.by_hash.values().find(|t| &t.id == topic_id)
    }

    /// The gossipsub hash of the subscribed topic of this name (its current
    /// epoch; earlier ones may still be joined for a grace period).
    pub(super) fn hash_of(&self, name: &str) -> Option<gossipsub::TopicHash> {
        self.by_hash
            .iter()
            .find(|(_, t)| t.name == name && t.subscribed)
            .map(|(h, _)| h.clone())
    }

    /// Marks a joined topic as an earlier epoch (read, not published to).
    pub(super) fn retire(&mut self, hash: &gossipsub::TopicHash) {
        if let Some(t) = self.by_hash.get_mut(hash) {
            t.subscribed = false;
        }
    }

    /// Forgets a joined topic (its gossipsub topic is left by the caller).
    pub(super) fn remove(&mut self, hash: &gossipsub::TopicHash) -> Option<TopicEntry> {
        self.by_hash.remove(hash)
    }

    /// Whether a topic with this hash is joined (current or in grace).
    pub(super) fn is_joined(&self, hash: &gossipsub::TopicHash) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// Every subscribed topic's hash.
    pub(super) fn hashes(&self) -> Vec<gossipsub::TopicHash> {
        self.by_hash.keys().cloned().collect()
    }
}

/// The connected peers gossipsub knows to be subscribed to `hash`.
pub(super) fn subscribed_peers<'a>(
    gossipsub: &'a gossipsub::Behaviour,
    hash: &'a gossipsub::TopicHash,
) -> impl Iterator<Item = PeerId> + 'a {
    gossipsub
        .all_peers()
        .filter(move |(_, topics)| topics.contains(&hash))
        .map(|(p, _)| *p)
}

impl EventLoop {
    /// Subscribes to a topic with a secret (none: the open topic).
    ///
    /// Subscribing again with the same secret changes nothing, also once
    /// rekeys have moved the topic on (the secret's first epoch is one this
    /// node held): going back to that epoch would undo the removals made
    /// since. Another secret, or none for a private topic, is refused
    /// ([`NodeError::SubscribedOtherwise`]) rather than replacing the keys.
    pub(crate) fn subscribe(&mut self, topic: &str, secret: Option<&str>) -> Result<Subscription, NodeError> {
        crate::commands::validate_topic(topic)?;
        let open = secret.is_none();
        let keys = TopicKeys::derive(topic, secret.unwrap_or(topic));
        {
            let keyring = self.keyring.read().expect("keyring lock");
            if let Some(current) = keyring.topic(topic) {
                let first_epoch_held = keyring.by_id(&keys.id).is_some_and(|e| e.name == topic);
                if current.id == keys.id || (current.epoch > 0 && first_epoch_held) {
                    return Ok(Subscription {
                        open: current.open,
                        already: Some(current.epoch),
                    });
                }
                return Err(NodeError::SubscribedOtherwise(topic.to_owned()));
            }
        }
        // Not subscribed to `topic` (checked above): no earlier id of it to leave.
        let hash = gossipsub::IdentTopic::new(keys.wire_topic()).hash();
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
        Ok(Subscription { open, already: None })
    }

    /// Joins the gossipsub topic of a keyring entry and reports it.
    pub(crate) fn join(&mut self, entry: TopicEntry) -> Result<(), NodeError> {
        let (name, open) = (entry.name.clone(), entry.open);
        self.join_quietly(entry)?;
        self.emit(Event::Subscribed { topic: name, open });
        Ok(())
    }

    /// Joins the gossipsub topic of a keyring entry (a subscription, a new
    /// epoch, or an earlier epoch read for a grace period) and announces
    /// ourselves in it as a member; reports nothing.
    pub(super) fn join_quietly(&mut self, entry: TopicEntry) -> Result<(), NodeError> {
        let topic = gossipsub::IdentTopic::new(entry.keys().wire_topic());
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        // Scoring (invalid messages above all) counts only in topics with parameters.
        gossipsub
            .set_topic_params(topic.clone(), behaviour::topic_score_params())
            .map_err(|e| NodeError::Network(format!("topic scoring: {e}")))?;
        gossipsub
            .subscribe(&topic)
            .map_err(|e| NodeError::Network(format!("subscribe failed: {e}")))?;
        self.rendezvous_join(entry.id, entry.key, topic.hash());
        let current = entry.subscribed;
        self.topics.by_hash.insert(topic.hash(), entry.clone());
        if current {
            self.announce_member(&topic.hash(), &entry);
        }
        Ok(())
    }

    /// Leaves a topic (its publishes still waiting for a peer are dropped).
    pub(super) fn unsubscribe(&mut self, topic: &str) -> Result<(), NodeError> {
        crate::commands::validate_topic(topic)?;
        let Some(hash) = self.topics.hash_of(topic) else {
            return Err(NodeError::NotSubscribed(topic.to_owned()));
        };
        // Its current epoch, and any earlier one still read for a grace period.
        let joined: Vec<gossipsub::TopicHash> = self
            .topics
            .by_hash
            .iter()
            .filter(|(_, t)| t.name == topic)
            .map(|(h, _)| h.clone())
            .collect();
        for h in joined.iter().filter(|h| **h != hash) {
            self.leave_epoch(h);
        }
        if let Some(entry) = self.topics.by_hash.remove(&hash) {
            self.rendezvous_leave(&entry.id);
        }
        let dropped = self.publisher.forget_topic(&hash);
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
        if dropped > 0 {
            self.emit(Event::Notice {
                text: format!(
                    "{dropped} message(s) to {topic} were still waiting for a peer and will not be sent \
                     (they stay in the inbox)"
                ),
            });
        }
        Ok(())
    }

    /// Per subscribed topic: subscribed connected peers and mesh peers.
    pub(super) fn topic_peers(&self) -> TopicPeers {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let mut counts = TopicPeers::default();
        for (hash, entry) in self.topics.by_hash.iter().filter(|(_, e)| e.subscribed) {
            counts.epochs.insert(entry.name.clone(), entry.epoch);
            counts
                .mesh
                .insert(entry.name.clone(), gossipsub.mesh_peers(hash).count());
            counts
                .subscribed
                .insert(entry.name.clone(), subscribed_peers(gossipsub, hash).count());
        }
        counts
    }
}
