//! What a node reports: the [`Event`] enum, whose JSON form (`--json`, the
//! API's `/events`) other tools rely on, and its human-readable rendering.

use serde::{Deserialize, Serialize};

/// One message in the inbox, decrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboxItem {
    /// `"topic"` or `"dm"`.
    pub kind: String,
    /// The topic name (topic messages only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub topic: Option<String>,
    /// Display name of the author.
    pub from: String,
    /// Peer id of the author.
    pub peer: String,
    /// Peer id of the recipient (direct messages this node sent).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub to: Option<String>,
    /// The message body.
    pub msg: String,
    /// Message id (hex).
    pub id: String,
    /// Unix milliseconds at the sender.
    pub ts: u64,
    /// How it reached this node: `"gossip"`, `"sync"` (catch-up), `"direct"`
    /// (a DM) or `"local"` (this node wrote it).
    pub via: String,
}

/// A direct message waiting in the outbox for its recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// Message id (hex).
    pub id: String,
    /// Recipient peer id.
    pub to: String,
    /// The message body.
    pub msg: String,
    /// Unix ms when it was written.
    pub ts: u64,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// Unix ms after which it fails with `dm_failed`.
    pub expires: u64,
    /// Why the last attempt failed, if one did.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_error: Option<String>,
}

/// A connected peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSummary {
    /// Its peer id.
    pub peer: String,
    /// Its display name, once identify has told it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// Addresses it can be reached at.
    pub addrs: Vec<String>,
}

/// Everything a node reports. Serialized as `{"event":"<snake_case name>", …fields}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The node listens at `addr` (ends in `/p2p/<peer id>`, dialable as is).
    Listening {
        /// The full address.
        addr: String,
    },
    /// The HTTP API serves at `addr` (`http://…`).
    ApiListening {
        /// The base URL.
        addr: String,
    },
    /// Prometheus metrics are served at `addr` (`http://…/metrics`).
    MetricsListening {
        /// The URL.
        addr: String,
    },
    /// A peer was found (`via`: `"mdns"`).
    PeerDiscovered {
        /// Its peer id.
        peer: String,
        /// The address it was found at.
        addr: String,
        /// How it was found.
        via: String,
    },
    /// A first connection to a peer opened.
    PeerConnected {
        /// Its peer id.
        peer: String,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// Its peer id.
        peer: String,
    },
    /// The node subscribed to a topic.
    Subscribed {
        /// Topic name.
        topic: String,
        /// Whether it is an open topic (secret = name).
        open: bool,
    },
    /// The node left a topic.
    Unsubscribed {
        /// Topic name.
        topic: String,
    },
    /// The node published a message (stored; `queued` when no peer could take it yet).
    Published {
        /// Topic name.
        topic: String,
        /// Message id.
        id: String,
        /// Waiting for a subscribed peer.
        queued: bool,
        /// Published on an open topic (readable by anyone who knows the name).
        open: bool,
    },
    /// A topic message arrived and is stored.
    Message {
        /// Topic name.
        topic: String,
        /// Author's display name.
        from: String,
        /// Author's peer id.
        peer: String,
        /// Body.
        msg: String,
        /// Message id.
        id: String,
        /// Unix ms at the sender.
        ts: u64,
        /// `"gossip"` (live) or `"sync"` (catch-up).
        via: String,
    },
    /// A direct message arrived and is stored.
    Dm {
        /// Author's display name.
        from: String,
        /// Author's peer id.
        peer: String,
        /// Body.
        msg: String,
        /// Message id.
        id: String,
        /// Unix ms at the sender.
        ts: u64,
    },
    /// A direct message was acknowledged by its recipient.
    DmSent {
        /// Recipient peer id.
        to: String,
        /// Message id.
        id: String,
    },
    /// A direct message could not be delivered yet: it waits in the outbox and
    /// is retried when the recipient is seen again.
    DmQueued {
        /// Recipient peer id.
        to: String,
        /// Message id.
        id: String,
        /// Why it could not go now.
        reason: String,
    },
    /// A direct message was given up at its expiry (or refused by the recipient).
    DmFailed {
        /// Recipient peer id.
        to: String,
        /// Message id.
        id: String,
        /// Why.
        reason: String,
    },
    /// A catch-up exchange with a peer for one topic finished.
    Synced {
        /// The peer.
        peer: String,
        /// Topic name.
        topic: String,
        /// Messages this node stored from the peer (new ones only).
        received: u64,
        /// Envelopes this node served to the peer.
        sent: u64,
    },
    /// Answer to `/pending`.
    Pending {
        /// Direct messages in the outbox.
        dms: Vec<OutboxItem>,
        /// Published messages waiting for a subscribed peer, per topic.
        publishes: std::collections::BTreeMap<String, usize>,
    },
    /// Answer to `/inbox`.
    Inbox {
        /// Oldest first.
        messages: Vec<InboxItem>,
    },
    /// Answer to `/peers`.
    Peers {
        /// Connected peers.
        peers: Vec<PeerSummary>,
    },
    /// Answer to `/topics`.
    Topics {
        /// Subscribed topic names.
        topics: Vec<String>,
        /// Connected peers known to be subscribed, per topic.
        #[serde(default)]
        peers: std::collections::BTreeMap<String, usize>,
        /// Gossipsub mesh size per topic.
        #[serde(default)]
        mesh: std::collections::BTreeMap<String, usize>,
    },
    /// Answer to `/whoami`.
    Whoami {
        /// Our peer id.
        peer: String,
        /// Our display name.
        name: String,
        /// Our listen addresses.
        addrs: Vec<String>,
    },
    /// Answer to `/help`.
    Help {
        /// The command reference.
        text: String,
    },
    /// Something worth telling the user that is neither a result nor an error.
    Notice {
        /// What to tell.
        text: String,
    },
    /// Something went wrong; the node goes on.
    Error {
        /// What went wrong.
        error: String,
    },
}

impl Event {
    /// The JSON line of this event.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events serialize")
    }

    /// The human-readable rendering (may span several lines).
    pub fn to_human(&self) -> String {
        match self {
            Event::Listening { addr } => format!("listening on {addr}"),
            Event::ApiListening { addr } => format!("api and web page at {addr}"),
            Event::MetricsListening { addr } => format!("metrics at {addr}"),
            Event::PeerDiscovered { peer, addr, via } => format!("discovered {peer} at {addr} ({via})"),
            Event::PeerConnected { peer } => format!("connected to {peer}"),
            Event::PeerDisconnected { peer } => format!("disconnected from {peer}"),
            Event::Subscribed { topic, open: false } => format!("subscribed to {topic}"),
            Event::Subscribed { topic, open: true } => format!(
                "subscribed to {topic} (open topic: anyone who knows the name can read it; use /sub {topic} SECRET for a private one)"
            ),
            Event::Unsubscribed { topic } => format!("unsubscribed from {topic}"),
            Event::Published { topic, id, queued, open } => {
                let mut s = if *queued {
                    format!("queued for {topic} ({}): no subscribed peer yet, it goes out when one connects", short(id))
                } else {
                    format!("published to {topic} ({})", short(id))
                };
                if *open {
                    s.push_str(" [open topic: anyone who knows the name can read it]");
                }
                s
            }
            Event::Message { topic, from, msg, via, .. } if via == "sync" => {
                format!("[{topic}] {from}: {msg} (caught up)")
            }
            Event::Message { topic, from, msg, .. } => format!("[{topic}] {from}: {msg}"),
            Event::Dm { from, msg, .. } => format!("[dm] {from}: {msg}"),
            Event::DmSent { to, id } => format!("dm {} delivered to {to}", short(id)),
            Event::DmQueued { to, id, reason } => {
                format!("dm {} to {to} waits in the outbox ({reason}); it is retried when the peer is back", short(id))
            }
            Event::DmFailed { to, id, reason } => format!("dm {} to {to} failed: {reason}", short(id)),
            Event::Synced {
                peer,
                topic,
                received,
                sent,
            } => format!("caught up on {topic} with {peer}: {received} received, {sent} sent"),
            Event::Pending { dms, publishes } if dms.is_empty() && publishes.is_empty() => "nothing pending".into(),
            Event::Pending { dms, publishes } => publishes
                .iter()
                .map(|(t, n)| format!("{n} message(s) for {t} wait for a subscribed peer"))
                .chain(dms.iter().map(|d| {
                    format!(
                        "dm {} to {}: {} (attempts {}{})",
                        short(&d.id),
                        d.to,
                        d.msg,
                        d.attempts,
                        d.last_error.as_deref().map(|e| format!(", last error: {e}")).unwrap_or_default()
                    )
                }))
                .collect::<Vec<_>>()
                .join("\n"),
            Event::Inbox { messages } if messages.is_empty() => "inbox is empty".into(),
            Event::Inbox { messages } => messages
                .iter()
                .map(|m| match (&m.topic, &m.to) {
                    (Some(t), _) => format!("[{t}] {}: {}", m.from, m.msg),
                    (None, Some(to)) => format!("[dm to {}] {}: {}", short(to), m.from, m.msg),
                    (None, None) => format!("[dm] {}: {}", m.from, m.msg),
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Event::Peers { peers } if peers.is_empty() => "no peers connected".into(),
            Event::Peers { peers } => peers
                .iter()
                .map(|p| format!("{} {}", p.name.as_deref().unwrap_or("?"), p.peer))
                .collect::<Vec<_>>()
                .join("\n"),
            Event::Topics { topics, .. } if topics.is_empty() => "no subscriptions".into(),
            Event::Topics { topics, peers, mesh } => topics
                .iter()
                .map(|t| {
                    let (p, m) = (peers.get(t).copied().unwrap_or(0), mesh.get(t).copied().unwrap_or(0));
                    format!("{t} ({p} peers, {m} in mesh)")
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Event::Whoami { peer, name, addrs } => {
                let mut s = format!("{name} {peer}");
                for a in addrs {
                    s.push_str("\n  ");
                    s.push_str(a);
                }
                s
            }
            Event::Help { text } | Event::Notice { text } => text.clone(),
            Event::Error { error } => format!("error: {error}"),
        }
    }
}

/// The first 12 characters of an id, for human output.
fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shapes() {
        let e = Event::Message {
            topic: "news".into(),
            from: "alice".into(),
            peer: "12D3".into(),
            msg: "hello".into(),
            id: "ab".into(),
            ts: 5,
            via: "gossip".into(),
        };
        assert_eq!(
            e.to_json(),
            r#"{"event":"message","topic":"news","from":"alice","peer":"12D3","msg":"hello","id":"ab","ts":5,"via":"gossip"}"#
        );
        assert_eq!(e.to_human(), "[news] alice: hello");
        let p = Event::PeerDiscovered {
            peer: "p".into(),
            addr: "a".into(),
            via: "mdns".into(),
        };
        assert_eq!(
            p.to_json(),
            r#"{"event":"peer_discovered","peer":"p","addr":"a","via":"mdns"}"#
        );
        assert_eq!(
            Event::DmSent {
                to: "p".into(),
                id: "i".into()
            }
            .to_json(),
            r#"{"event":"dm_sent","to":"p","id":"i"}"#
        );
    }
}
