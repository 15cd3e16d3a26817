//! Direct messages as records and keys: the pair-key cache, receiving a DM
//! (check, open, store, and only then acknowledge), and the sealed record
//! each side keeps of a DM in its inbox. Sending, with the outbox and its
//! retries, is [`super::outbox`].

use std::collections::HashMap;

use libp2p::request_response::ResponseChannel;
use libp2p::PeerId;
use tokio::sync::oneshot;

use super::dm::{DmRequest, DmResponse};
use super::EventLoop;
use crate::clock::{fresh, now_ms};
use crate::crypto::{direct_key, direct_recipient, Key};
use crate::envelope::{Envelope, Payload, Purpose};
use crate::event::Event;
use crate::reply::DmRecord;
use crate::store::{Insert, Via};

/// Pair keys kept in memory (the cache is emptied when full).
const MAX_PAIR_KEYS: usize = 4096;

/// The keys this node shares with each peer for direct messages (bounded cache).
#[derive(Default)]
pub(super) struct PairKeys {
    keys: HashMap<PeerId, Key>,
}

/// Store work a received DM waits for.
pub(super) enum Completion {
    /// An inbound DM was stored (or not): answer its sender.
    DmStored {
        channel: ResponseChannel<DmResponse>,
        id: [u8; 32],
        result: Result<(), String>,
    },
}

impl EventLoop {
    /// The key we share with `peer` for direct messages.
    pub(super) fn pair_key(&mut self, peer: &PeerId) -> Option<Key> {
        if let Some(key) = self.pair_keys.keys.get(peer) {
            return Some(*key);
        }
        let key = direct_key(&self.identity, peer).ok()?;
        if self.pair_keys.keys.len() >= MAX_PAIR_KEYS {
            self.pair_keys.keys.clear();
        }
        self.pair_keys.keys.insert(*peer, key);
        Some(key)
    }

    /// Store work finished: an inbound DM is acknowledged once stored.
    pub(super) fn on_direct_completion(&mut self, done: Completion) {
        let Completion::DmStored { channel, id, result } = done;
        if self
            .swarm
            .behaviour_mut()
            .dm
            .send_response(channel, DmResponse { id, result })
            .is_err()
        {
            tracing::debug!("dm sender went away before the acknowledgement");
        }
    }

    /// An inbound DM: checked and opened, stored, and only then acknowledged.
    pub(super) async fn receive_dm(&mut self, peer: PeerId, request: DmRequest, channel: ResponseChannel<DmResponse>) {
        let ours = direct_recipient(self.swarm.local_peer_id());
        let envelope = Envelope::decode(&request.envelope);
        let id = envelope.as_ref().map(|e| e.salt).unwrap_or([0; 32]);
        let opened = match envelope {
            Err(_) => Err(("malformed", "malformed envelope")),
            Ok(e) if e.sender != peer => Err(("forged_sender", "sender is not the connected peer")),
            Ok(e) if !matches!(e.purpose, Purpose::Direct | Purpose::DirectControl) || e.topic_id != ours => {
                Err(("misaddressed", "not a direct message for this node"))
            }
            Ok(e) if !fresh(e.ts, now_ms()) => Err(("stale", "timestamp out of the accepted window")),
            Ok(e) => match self.pair_key(&peer) {
                Some(key) => e
                    .open(&key, e.purpose, &ours)
                    .map(|p| (e, p))
                    .map_err(|_| ("decrypt_failed", "does not open with our pair key")),
                None => Err(("decrypt_failed", "sender has no ed25519 key")),
            },
        };
        let (envelope, payload) = match opened {
            Ok(opened) => opened,
            Err((metric, reason)) => {
                self.metrics.drop(metric);
                tracing::debug!(%peer, reason, "refused a direct message");
                let _ = self.swarm.behaviour_mut().dm.send_response(
                    channel,
                    DmResponse {
                        id,
                        result: Err(reason.into()),
                    },
                );
                return;
            }
        };
        if envelope.purpose == Purpose::DirectControl {
            // A membership control message: acted on (and written to the
            // keyring) before the acknowledgement; never shown as a DM.
            let result = match crate::control::DirectControl::from_body(&payload.body) {
                Some(control) => self.on_control(peer, control),
                None => {
                    self.metrics.drop("malformed");
                    Err("not a control message".to_owned())
                }
            };
            let _ = self
                .swarm
                .behaviour_mut()
                .dm
                .send_response(channel, DmResponse { id, result });
            return;
        }
        let record = DmRecord {
            msg: payload.body.clone(),
            to: None,
            to_name: None,
        };
        let event = Event::Dm {
            from: payload.name.clone(),
            peer: peer.to_string(),
            msg: payload.body,
            id: hex::encode(id),
            ts: envelope.ts,
        };
        let (done, stored) = oneshot::channel();
        let insert = Insert {
            done: Some(done.into()),
            ..self.dm_insert(peer, &payload.name, envelope.ts, id, &record, event, Via::Direct)
        };
        if self.store.insert(insert).await.is_err() {
            return;
        }
        let completions = self.completions_tx.clone();
        tokio::spawn(async move {
            // A duplicate (a retry whose acknowledgement was lost) is acknowledged again.
            let result = match stored.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(_)) => Err("recipient could not store the message".to_owned()),
                Err(_) => Err("recipient is shutting down".to_owned()),
            };
            let done = Completion::DmStored { channel, id, result };
            let _ = completions.send(super::Completion::Direct(done)).await;
        });
    }

    /// Seals a direct-message record under the local key, for the inbox.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dm_insert(
        &self,
        author: PeerId,
        name: &str,
        ts: u64,
        id: [u8; 32],
        record: &DmRecord,
        event: Event,
        via: Via,
    ) -> Insert {
        let local_key = *self.keyring.read().expect("keyring lock").local_key();
        let payload = Payload {
            seq: 0,
            name: name.to_owned(),
            body: serde_json::to_string(record).expect("record serializes"),
        };
        let envelope = Envelope::seal_with_salt(&local_key, Purpose::DirectRecord, [0; 32], author, ts, id, &payload);
        Insert {
            id,
            purpose: Purpose::DirectRecord,
            topic_id: [0; 32],
            ts,
            envelope: envelope.encode(),
            via,
            own_seq: None,
            client_key: None,
            event: Some(event),
            done: None,
            member: None,
        }
    }
}
