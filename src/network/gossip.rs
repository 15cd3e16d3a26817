//! Received topic messages: gossipsub's events, and the validation of every
//! signed frame (format, author signature, age, topic key) before it is
//! stored, reported and forwarded. Gossip messages that arrive together are
//! validated together, with one batch of signature checks; catch-up pages go
//! through the same checks ([`EventLoop::open_topic_messages`]).

use libp2p::{gossipsub, PeerId};

use super::EventLoop;
use crate::clock::{fresh_within, now_ms, MAX_MESSAGE_AGE_MS};
use crate::envelope::{Envelope, Purpose};
use crate::event::Event;
use crate::keyring::TopicEntry;
use crate::signed::{FrameError, Unverified};
use crate::store::{Insert, Member, Via};

/// Gossip messages received and not yet validated (see `EventLoop::run`).
#[derive(Default)]
pub(super) struct Burst {
    messages: Vec<(PeerId, gossipsub::MessageId, gossipsub::Message)>,
}

impl Burst {
    /// Whether nothing waits for validation.
    pub(super) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }
}

impl EventLoop {
    pub(super) fn on_gossipsub(&mut self, event: gossipsub::Event) {
        match event {
            gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            } => {
                // Checked with the others of its burst (see `run`).
                self.gossip.messages.push((propagation_source, message_id, message));
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                tracing::debug!(%peer_id, %topic, "peer subscribed");
                self.flush_queued(&topic);
                self.start_sync(peer_id, &topic, true);
            }
            gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            } => {
                tracing::warn!(%peer_id, ?failed_messages, "slow peer: gossip messages to it were dropped");
            }
            other => tracing::trace!(?other, "gossipsub event"),
        }
    }

    /// Validates, opens and stores the gossip messages received since the
    /// last call, and reports each verdict to gossipsub (which forwards the
    /// accepted ones). Their signatures are checked together.
    pub(super) async fn validate_gossip_burst(&mut self) {
        let burst = std::mem::take(&mut self.gossip.messages);
        let mut verdicts: Vec<Result<Option<Insert>, &'static str>> = Vec::with_capacity(burst.len());
        let mut frames: Vec<(&TopicEntry, &[u8])> = Vec::new();
        let mut framed = Vec::new();
        for (i, (_, _, message)) in burst.iter().enumerate() {
            match self.topics.get(&message.topic) {
                None => {
                    self.metrics.drop("unknown_topic");
                    verdicts.push(Err("unknown topic"));
                }
                Some(entry) if self.plain => {
                    self.emit(Event::Message {
                        topic: entry.name.clone(),
                        from: String::new(),
                        peer: message.source.map(|p| p.to_string()).unwrap_or_default(),
                        msg: String::from_utf8_lossy(&message.data).into_owned(),
                        id: hex::encode(crate::crypto::sha256(&message.data)),
                        ts: now_ms(),
                        via: Via::Gossip.as_str().into(),
                    });
                    verdicts.push(Ok(None));
                }
                Some(entry) => {
                    frames.push((entry, &message.data));
                    framed.push(i);
                    verdicts.push(Ok(None));
                }
            }
        }
        for (i, opened) in framed.into_iter().zip(self.open_topic_messages(&frames, Via::Gossip)) {
            verdicts[i] = opened.map(Some);
        }
        for ((propagation_source, message_id, _), verdict) in burst.into_iter().zip(verdicts) {
            let acceptance = match verdict {
                Ok(insert) => {
                    let control = insert.as_ref().is_some_and(|i| i.purpose == Purpose::Control);
                    if let Some(insert) = insert {
                        self.note_member(&insert);
                        if self.store.insert(insert).await.is_err() {
                            tracing::error!("inbox closed; message not stored");
                        }
                    }
                    if control {
                        self.metrics.control_received.inc();
                    } else {
                        self.metrics.received.inc();
                    }
                    gossipsub::MessageAcceptance::Accept
                }
                Err(reason) => {
                    tracing::debug!(%propagation_source, reason, "dropped a gossip message");
                    gossipsub::MessageAcceptance::Reject
                }
            };
            let rejected = acceptance == gossipsub::MessageAcceptance::Reject;
            self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                &message_id,
                &propagation_source,
                acceptance,
            );
            if rejected && self.graylisted(&propagation_source) && self.swarm.is_connected(&propagation_source) {
                self.disconnect_graylisted(propagation_source);
            }
        }
    }

    /// Checks signed topic frames as every received one is checked (format,
    /// author signature, age, key) and makes their inbox inserts, in order.
    /// Envelopes from catch-up may be as old as the retention window, live
    /// ones at most [`MAX_MESSAGE_AGE_MS`]. `Err` names the drop reason, which
    /// is counted.
    ///
    /// Gossip and catch-up alike: a frame's signature must be its author's.
    /// Gossipsub is anonymous and has deduplicated, so this runs once per
    /// message, not once per copy, and a burst's signatures are checked
    /// together ([`crate::signed::verify_all`]).
    pub(super) fn open_topic_messages(
        &self,
        frames: &[(&TopicEntry, &[u8])],
        via: Via,
    ) -> Vec<Result<Insert, &'static str>> {
        let decoded: Vec<_> = frames.iter().map(|(_, data)| crate::signed::decode(data)).collect();
        let pending: Vec<&Unverified> = decoded.iter().filter_map(|d| d.as_ref().ok()).collect();
        let mut signed = crate::signed::verify_all(&pending).into_iter();
        frames
            .iter()
            .zip(decoded)
            .map(|((entry, data), decoded)| {
                // A decoded frame takes the next signature verdict, in order.
                let checked = decoded.and_then(|frame| match signed.next() {
                    Some(true) => Ok(frame.envelope),
                    _ => Err(FrameError::BadSignature),
                });
                match checked {
                    Ok(envelope) => self.open_signed(entry, data, envelope, via),
                    Err(FrameError::BadSignature) => {
                        self.metrics.drop("bad_signature");
                        Err("signature is not the sender's")
                    }
                    Err(_) => {
                        self.metrics.drop("malformed");
                        Err("malformed envelope")
                    }
                }
            })
            .collect()
    }

    /// The checks after the signature: age and key; then the insert.
    fn open_signed(
        &self,
        entry: &TopicEntry,
        data: &[u8],
        envelope: Envelope,
        via: Via,
    ) -> Result<Insert, &'static str> {
        let max_age = if via == Via::Sync {
            self.catchup.retention().max_age_ms
        } else {
            MAX_MESSAGE_AGE_MS
        };
        if !fresh_within(envelope.ts, now_ms(), max_age) {
            self.metrics.drop("stale");
            return Err("timestamp out of the accepted window");
        }
        // A message, or a member's announcement (a control message).
        let purpose = match envelope.purpose {
            Purpose::Control => Purpose::Control,
            _ => Purpose::Topic,
        };
        let payload = match envelope.open(&entry.key, purpose, &entry.id) {
            Ok(p) => p,
            Err(_) => {
                self.metrics.drop("decrypt_failed");
                return Err("does not open with the topic key");
            }
        };
        // An epoch left behind by a rekey is still read for a grace period,
        // but not from the peers that rekey removed.
        if !entry.subscribed && self.removed_from(&entry.name, &envelope.sender) {
            self.metrics.drop("removed_member");
            return Err("its author was removed from the topic");
        }
        let peer = envelope.sender.to_string();
        // An author new to the roster joins it with this message; a known
        // one costs no roster write (its row is stored).
        let member = (!self.membership.is_member(&entry.id, &envelope.sender)).then(|| Member {
            peer: peer.clone(),
            name: payload.name.clone(),
            event: Some(Event::MemberJoined {
                topic: entry.name.clone(),
                peer: peer.clone(),
                name: payload.name.clone(),
            }),
        });
        let event = match purpose {
            Purpose::Control if crate::control::TopicControl::from_body(&payload.body).is_none() => {
                self.metrics.drop("malformed");
                return Err("not a control message");
            }
            Purpose::Control => None,
            _ => Some(Event::Message {
                topic: entry.name.clone(),
                from: payload.name,
                peer,
                msg: payload.body,
                id: envelope.id(),
                ts: envelope.ts,
                via: via.as_str().into(),
            }),
        };
        Ok(Insert {
            id: envelope.salt,
            purpose,
            topic_id: entry.id,
            ts: envelope.ts,
            envelope: data.to_vec(),
            via,
            own_seq: None,
            client_key: None,
            event,
            done: None,
            member,
        })
    }
}
