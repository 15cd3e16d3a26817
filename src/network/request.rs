//! The requests a [`crate::Node`] handle sends the event loop, their
//! dispatch to the room that answers each, and answering once a write is
//! durable.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use super::EventLoop;
use crate::event::{MemberSummary, OutboxItem, PeerSummary};
use crate::reply::{DmOutcome, NodeError, Published, Subscription, TopicPeers, Whoami};
use crate::store::{Done, Insert, Store};

/// What a [`crate::Node`] handle asks of the event loop. Each carries its `reply`.
pub(crate) enum Request {
    Subscribe {
        topic: String,
        secret: Option<String>,
        reply: oneshot::Sender<Result<Subscription, NodeError>>,
    },
    Unsubscribe {
        topic: String,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    Publish {
        topic: String,
        msg: String,
        /// Set for an idempotent publish.
        client_key: Option<[u8; 32]>,
        reply: oneshot::Sender<Result<Published, NodeError>>,
    },
    /// Whether one of our messages (by id) still waits for a subscribed peer.
    IsQueued {
        id: [u8; 32],
        reply: oneshot::Sender<bool>,
    },
    Dm {
        to: String,
        msg: String,
        reply: oneshot::Sender<Result<DmOutcome, NodeError>>,
    },
    Pending {
        reply: oneshot::Sender<(Vec<OutboxItem>, BTreeMap<String, usize>)>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerSummary>>,
    },
    Whoami {
        reply: oneshot::Sender<Whoami>,
    },
    Mesh {
        reply: oneshot::Sender<TopicPeers>,
    },
    Members {
        topic: String,
        reply: oneshot::Sender<Result<(u32, Vec<MemberSummary>), NodeError>>,
    },
    Rekey {
        topic: String,
        remove: Vec<String>,
        reply: oneshot::Sender<Result<u32, NodeError>>,
    },
    Invite {
        topic: String,
        peer: String,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    Shutdown,
}

impl EventLoop {
    /// Answers one request (`Shutdown` ends the loop before it gets here).
    pub(super) async fn on_request(&mut self, request: Request) {
        match request {
            Request::Subscribe { topic, secret, reply } => {
                let _ = reply.send(self.subscribe(&topic, secret.as_deref()));
            }
            Request::Unsubscribe { topic, reply } => {
                let _ = reply.send(self.unsubscribe(&topic));
            }
            Request::Publish {
                topic,
                msg,
                client_key,
                reply,
            } => self.publish(&topic, msg, client_key, reply).await,
            Request::IsQueued { id, reply } => {
                let _ = reply.send(self.publisher.is_queued(&id));
            }
            Request::Dm { to, msg, reply } => self.send_dm(&to, msg, reply).await,
            Request::Pending { reply } => {
                let _ = reply.send((self.outbox.items(|p| self.name_of(p)), self.queued_publishes()));
            }
            Request::Peers { reply } => {
                let _ = reply.send(self.peers.summaries());
            }
            Request::Whoami { reply } => {
                let _ = reply.send(Whoami {
                    peer: self.swarm.local_peer_id().to_string(),
                    name: self.name.clone(),
                    addrs: self.listen_addrs.iter().map(ToString::to_string).collect(),
                });
            }
            Request::Mesh { reply } => {
                let _ = reply.send(self.topic_peers());
            }
            Request::Members { topic, reply } => {
                let _ = reply.send(self.members(&topic));
            }
            Request::Rekey { topic, remove, reply } => {
                let _ = reply.send(self.rekey(&topic, &remove));
            }
            Request::Invite { topic, peer, reply } => {
                let _ = reply.send(self.invite(&topic, &peer));
            }
            Request::Shutdown => unreachable!("handled in run"),
        }
    }
}

/// Queues `insert` and, once it is durable, answers `reply` (if any) with
/// `value`, or with the store's error. The store answers itself, as it
/// reports the commit: no task waits in between.
pub(super) async fn store_then_reply<T: Send + 'static>(
    store: &Store,
    insert: Insert,
    value: T,
    reply: Option<oneshot::Sender<Result<T, NodeError>>>,
) {
    let done = reply.map(|reply| {
        Done::Call(Box::new(move |stored: Result<bool, String>| {
            let _ = reply.send(stored.map(|_| value).map_err(NodeError::Store));
        }))
    });
    // A store that is gone drops `done`, and with it `reply`: the caller
    // hears that the node stopped.
    if let Err(e) = store.insert(Insert { done, ..insert }).await {
        tracing::error!("{e}");
    }
}
