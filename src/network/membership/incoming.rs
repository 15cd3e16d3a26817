//! What a node does with the membership control messages it receives: a
//! rekey (accepted only from a member of the epoch it replaces; the winner
//! of concurrent ones kept), an invitation, a request for the current epoch
//! (answered only to a member who was not removed), and the answers to its
//! own requests.

use std::collections::{BTreeSet, HashSet};

use libp2p::request_response::OutboundRequestId;
use libp2p::{gossipsub, PeerId};

use super::super::EventLoop;
use crate::control::{self, DirectControl, EpochKeys};
use crate::event::Event;
use crate::store::Member;

impl EventLoop {
    /// A control message from `peer` (already checked and opened). `Err` is
    /// the reason given back to it.
    pub(in crate::network) fn on_control(&mut self, peer: PeerId, control: DirectControl) -> Result<(), String> {
        match control {
            DirectControl::Rekey {
                topic,
                prev,
                keys,
                removed,
            } => self.on_rekey(peer, &topic, prev, keys, removed),
            DirectControl::Invite { topic, keys, removed } => {
                let result = self.on_invite(peer, &topic, keys, removed);
                // The one inviting hears the reason; this node's user is told too.
                if let Err(reason) = &result {
                    let who = match self.peers.name(&peer) {
                        Some(name) => format!("{name} ({peer})"),
                        None => peer.to_string(),
                    };
                    self.emit(Event::Notice {
                        text: format!("refused an invitation into {topic} from {who}: {reason}"),
                    });
                }
                result
            }
            DirectControl::KeyRequest { topic, id, epoch } => self.on_key_request(peer, &topic, id, epoch),
        }
    }

    fn on_rekey(
        &mut self,
        from: PeerId,
        name: &str,
        prev: [u8; 32],
        keys: EpochKeys,
        removed: Vec<String>,
    ) -> Result<(), String> {
        let Ok(current) = self.current_entry(name) else {
            return Ok(()); // Not (or no longer) subscribed: nothing to do.
        };
        let held = self
            .keyring
            .read()
            .expect("keyring lock")
            .by_id(&prev)
            .is_some_and(|e| e.name == name);
        if !held {
            return Err("not an epoch of this topic this node held".into());
        }
        if !self.membership.is_member(&prev, &from) {
            return Err("only a member of the epoch it replaces may rekey a topic".into());
        }
        // A removed member was on the roster of the epochs before its
        // removal: without this it could rekey from one of them and win
        // (with a higher epoch number, or the smaller id of a tie).
        let sender = from.to_string();
        if current.removed.contains(&sender) {
            return Err("a peer removed from this topic may not rekey it".into());
        }
        if keys.id == current.id {
            return Ok(());
        }
        let current_keys = EpochKeys {
            epoch: current.epoch,
            id: current.id,
            key: current.key,
        };
        // A rekey removing the author of our current epoch replaces it
        // whatever the numbers: a member removed while it rekeyed, whose
        // rekey reached us first, does not keep us apart from the others.
        let removes_its_author = self
            .membership
            .authors
            .get(&current.id)
            .is_some_and(|author| removed.contains(&author.to_string()));
        if !control::wins(&keys, &current_keys) && !removes_its_author {
            // A concurrent rekey that lost: read it for the grace period,
            // publish in the winner.
            self.read_for_grace(name, &keys);
            return Ok(());
        }
        // The peers this rekey removes beyond what we knew.
        let removed_now: Vec<String> = removed
            .iter()
            .filter(|p| !current.removed.contains(p))
            .cloned()
            .collect();
        let mut all: BTreeSet<String> = current.removed.iter().cloned().collect();
        all.extend(removed.iter().cloned());
        let prev_entry = self
            .keyring
            .read()
            .expect("keyring lock")
            .by_id(&prev)
            .cloned()
            .expect("held");
        self.switch_epoch(name, &keys, &prev_entry, all.into_iter().collect(), from, removed_now)
            .map_err(|e| e.to_string())?;
        self.membership.authors.insert(keys.id, from);
        // Only a current epoch's author is looked up: forget the others.
        let current_ids: HashSet<[u8; 32]> = self
            .keyring
            .read()
            .expect("keyring lock")
            .subscribed()
            .map(|e| e.id)
            .collect();
        self.membership.authors.retain(|id, _| current_ids.contains(id));
        // Our own rekey lost to this one: those we told of ours hear of the
        // winner from us too (some may not be reachable by its author), and
        // removals it did not make are made again, on top of it.
        let ours = self.membership.our_rekeys.remove(name);
        if let Some(ours) = ours.filter(|o| o.id == current.id) {
            for peer in ours.recipients.iter().filter(|p| **p != from) {
                let winner = DirectControl::Rekey {
                    topic: name.to_owned(),
                    prev: ours.prev,
                    keys: keys.clone(),
                    removed: removed.clone(),
                };
                self.send_control(*peer, winner, true);
            }
            let missing: Vec<String> = ours.removed.into_iter().filter(|p| !removed.contains(p)).collect();
            if !missing.is_empty() {
                tracing::info!(
                    topic = name,
                    "a concurrent rekey won without our removals: rekeying again"
                );
                if let Err(e) = self.rekey(name, &missing) {
                    tracing::warn!("cannot rekey again: {e}");
                }
            }
        }
        Ok(())
    }

    fn on_invite(&mut self, from: PeerId, name: &str, keys: EpochKeys, removed: Vec<String>) -> Result<(), String> {
        crate::commands::validate_topic(name).map_err(|e| e.to_string())?;
        if let Ok(current) = self.current_entry(name) {
            if current.id == keys.id {
                return Ok(());
            }
            // An invitation to a newer epoch from a member: as a rekey.
            let current_keys = EpochKeys {
                epoch: current.epoch,
                id: current.id,
                key: current.key,
            };
            if self.membership.is_member(&current.id, &from) && control::wins(&keys, &current_keys) {
                return self.on_rekey(from, name, current.id, keys, removed);
            }
            return Err(format!("this node already has a topic named {name:?}"));
        }
        self.keyring
            .write()
            .expect("keyring lock")
            .join_epoch(name, &keys.keys(), keys.epoch, removed)
            .map_err(|e| e.to_string())?;
        let entry = self.current_entry(name).map_err(|e| e.to_string())?;
        let inviter = self.peers.name(&from).unwrap_or_default();
        self.membership.add(keys.id, from, inviter.clone());
        let store = self.store.clone();
        let row = Member {
            peer: from.to_string(),
            name: inviter,
            event: None,
        };
        tokio::spawn(async move {
            let _ = store.members_put(keys.id, vec![row]).await;
        });
        let hash = gossipsub::IdentTopic::new(hex::encode(keys.id)).hash();
        self.join_quietly(entry).map_err(|e| e.to_string())?;
        self.sync_topic_peers(&hash);
        self.emit(Event::Invited {
            topic: name.to_owned(),
            by: from.to_string(),
            name: self.peers.name(&from),
            epoch: keys.epoch,
        });
        Ok(())
    }

    fn on_key_request(&mut self, from: PeerId, name: &str, id: [u8; 32], epoch: u32) -> Result<(), String> {
        let Ok(current) = self.current_entry(name) else {
            return Ok(());
        };
        if current.id == id || epoch >= current.epoch {
            return Ok(());
        }
        let held = self
            .keyring
            .read()
            .expect("keyring lock")
            .by_id(&id)
            .is_some_and(|e| e.name == name);
        if !held || !self.membership.is_member(&id, &from) {
            return Err("not a member of that epoch".into());
        }
        if current.removed.contains(&from.to_string()) {
            return Err("removed from the topic".into());
        }
        tracing::info!(topic = name, %from, "a member who was away gets the current epoch");
        let rekey = DirectControl::Rekey {
            topic: name.to_owned(),
            prev: id,
            keys: EpochKeys {
                epoch: current.epoch,
                id: current.id,
                key: current.key,
            },
            removed: current.removed.clone(),
        };
        self.send_control(from, rekey, true);
        Ok(())
    }

    /// The answer to a request for the current epoch: a refusal is told.
    pub(in crate::network) fn on_control_answer(
        &mut self,
        request: &OutboundRequestId,
        result: Result<(), String>,
    ) -> bool {
        let Some((peer, topic)) = self.membership.take_request(request) else {
            return false;
        };
        if let Err(reason) = result {
            tracing::info!(%peer, topic, "request for the current epoch refused: {reason}");
            self.emit(Event::Notice {
                text: format!("{peer} refused to give the current epoch of {topic}: {reason}"),
            });
        }
        true
    }
}
