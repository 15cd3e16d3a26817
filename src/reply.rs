//! What the event loop answers a [`crate::Node`]'s requests with: the result
//! types and [`NodeError`]. Below both the handle and the loop, so that each
//! imports them and neither imports the other's internals.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::commands::{CommandError, TopicNameError};

/// What can go wrong when asking a node to do something. Texts are for users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// A bad topic name.
    #[error(transparent)]
    Topic(#[from] TopicNameError),
    /// A bad command argument (message too long…).
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The node is not subscribed to the topic.
    #[error("not subscribed to {0}\nhint: /sub {0} [SECRET] first")]
    NotSubscribed(String),
    /// A subscription to a topic already subscribed with another secret (or
    /// a private topic without one): it would replace the topic's keys.
    #[error("already subscribed to {0} with a different secret; nothing changed\nhint: /unsub {0} first to join it with this one")]
    SubscribedOtherwise(String),
    /// No peer with that id or name is known.
    #[error("unknown peer {0:?}: not a peer id, and no peer seen nor member of a topic has that name\nhint: /peers lists the connected peers, /members TOPIC a topic's members")]
    UnknownPeer(String),
    /// Several peers share that name (their peer ids).
    #[error("{n} peers are named {name:?}; use a peer id: {ids}", n = .1.len(), name = .0, ids = .1.join(", "))]
    AmbiguousPeer(String, Vec<String>),
    /// A DM to ourselves.
    #[error("cannot send a direct message to this node itself")]
    SelfDm,
    /// The peer could not be reached.
    #[error("peer {peer} is unreachable: {reason}")]
    Unreachable {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The peer refused the message.
    #[error("peer {peer} refused the message: {reason}")]
    Refused {
        /// The peer.
        peer: String,
        /// Its reason.
        reason: String,
    },
    /// `/invite` of a peer that a rekey removed from the topic.
    #[error("cannot invite {peer} into {topic}: a rekey removed it from this topic")]
    WasRemoved {
        /// The peer.
        peer: String,
        /// The topic.
        topic: String,
    },
    /// Too many publishes wait for a peer already.
    #[error("{0} messages already wait for a peer; try again once one connects")]
    QueueFull(usize),
    /// The inbox failed.
    #[error("{0}")]
    Store(String),
    /// The keyring file could not be written.
    #[error("keyring: {0}")]
    Keyring(String),
    /// A libp2p operation failed.
    #[error("{0}")]
    Network(String),
    /// The display name is invalid.
    #[error("invalid name {0:?}: use 1 to 64 bytes without control characters")]
    InvalidName(String),
    /// Setting up the node failed.
    #[error("{0}")]
    Startup(String),
    /// A client id for an idempotent publish is empty or too long.
    #[error("client_id must be 1 to 128 bytes")]
    InvalidClientId,
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

/// The result of a publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Message id.
    pub id: String,
    /// True when no subscribed peer was there: it is stored and goes out when one connects.
    pub queued: bool,
    /// True when an idempotent publish found its client id already used:
    /// `id` is the first message's, and nothing was published.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// The result of a direct message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmOutcome {
    /// Message id.
    pub id: String,
    /// False: the recipient acknowledged storing it. True: it could not be
    /// delivered yet and waits in the outbox (`dm_sent` or `dm_failed` follows).
    pub queued: bool,
}

/// Who this node is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Whoami {
    /// Peer id.
    pub peer: String,
    /// Display name.
    pub name: String,
    /// Listen addresses, each ending in `/p2p/<peer id>`.
    pub addrs: Vec<String>,
}

/// What a subscription did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// The topic is open: its secret is its name.
    pub open: bool,
    /// The node was subscribed with this secret already, and nothing
    /// changed: the topic's current epoch.
    pub already: Option<u32>,
}

/// The plaintext body of a stored direct-message record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DmRecord {
    pub msg: String,
    /// Recipient, for messages this node sent.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub to: Option<String>,
    /// The recipient's display name when it was delivered, if known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub to_name: Option<String>,
}

/// Per subscribed topic: how many connected peers are known to be subscribed,
/// and how many of them are in our gossipsub mesh.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TopicPeers {
    /// Connected peers subscribed to the topic, by topic name.
    pub subscribed: BTreeMap<String, usize>,
    /// Of those, the ones in our mesh (full-message peers), by topic name.
    pub mesh: BTreeMap<String, usize>,
    /// The current epoch of each topic, by topic name.
    pub epochs: BTreeMap<String, u32>,
}
