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
    /// The recipient's display name, when it was known as the message was
    /// delivered (direct messages this node sent).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub to_name: Option<String>,
    /// The message body.
    pub msg: String,
    /// Message id (hex).
    pub id: String,
    /// Unix milliseconds at the sender.
    pub ts: u64,
    /// How it reached this node: `"gossip"`, `"sync"` (catch-up), `"direct"`
    /// (a DM) or `"local"` (this node wrote it).
    pub via: String,
    /// Its place in the inbox, opaque: pass a page's smallest as `before`
    /// to read the page before it, its largest as `after` for the one after.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cursor: String,
}

/// A direct message waiting in the outbox for its recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxItem {
    /// Message id (hex).
    pub id: String,
    /// Recipient peer id.
    pub to: String,
    /// The recipient's display name, if known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub to_name: Option<String>,
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
    /// True while every connection to it goes through a relay.
    #[serde(default)]
    pub relayed: bool,
}

/// A member of a topic's current epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSummary {
    /// Its peer id.
    pub peer: String,
    /// Its display name, as it signed it.
    pub name: String,
    /// Whether it is this node.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub me: bool,
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
    /// A peer was found (`via`: `"mdns"`; `"dht"` for a topic member or a
    /// DM's recipient found in the DHT, whose `addr` is then the address it
    /// was first connected at).
    PeerDiscovered {
        /// Its peer id.
        peer: String,
        /// The address it was found at.
        addr: String,
        /// How it was found.
        via: String,
    },
    /// A first connection to a peer opened (reported once identify told its
    /// name, or a second after the connection if it does not say).
    PeerConnected {
        /// Its peer id.
        peer: String,
        /// Its display name, if it told one.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        name: Option<String>,
        /// Whether the connection goes through a relay.
        #[serde(default)]
        relayed: bool,
    },
    /// A peer reached only through a relay so far now has a direct
    /// connection (hole punching worked, or it dialled us directly).
    PeerDirect {
        /// Its peer id.
        peer: String,
        /// Its display name, if known.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        name: Option<String>,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// Its peer id.
        peer: String,
        /// Its display name, if known.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        name: Option<String>,
    },
    /// What this node knows of its reachability from outside its network:
    /// `reachability` is `"public"` (peers dialled us back), `"private"`
    /// (behind NAT or a firewall: peers reach us through relays) or
    /// `"unknown"`; `addrs` are the confirmed addresses others can dial
    /// (public ones and relay circuits).
    NatStatus {
        /// `"public"`, `"private"` or `"unknown"`.
        reachability: String,
        /// Confirmed external addresses.
        addrs: Vec<String>,
    },
    /// A relay holds a slot for this node: peers can reach it at `addr`
    /// (a `/p2p-circuit` address through `relay`).
    RelayReserved {
        /// The relay's peer id.
        relay: String,
        /// The circuit address.
        addr: String,
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
        /// The recipient's display name, if known.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        name: Option<String>,
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
        /// The recipient's display name, if known.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        name: Option<String>,
    },
    /// A direct message was given up at its expiry (or refused by the recipient).
    DmFailed {
        /// Recipient peer id.
        to: String,
        /// Message id.
        id: String,
        /// Why.
        reason: String,
        /// The recipient's display name, if known.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        name: Option<String>,
    },
    /// A catch-up exchange with a peer for one topic finished.
    Synced {
        /// The peer.
        peer: String,
        /// The peer's display name, if known.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        name: Option<String>,
        /// Topic name.
        topic: String,
        /// Messages this node stored from the peer (new ones only).
        received: u64,
        /// Envelopes this node served to the peer.
        sent: u64,
    },
    /// A topic moved to a new epoch (a member rekeyed it): this node publishes
    /// in it from now on; the previous epoch is read for a grace period.
    Rekeyed {
        /// Topic name.
        topic: String,
        /// The new epoch.
        epoch: u32,
        /// Who rekeyed (peer id).
        by: String,
        /// Peer ids removed by this rekey.
        removed: Vec<String>,
        /// Display names of `by` and of the removed peers, where known (peer id → name).
        names: std::collections::BTreeMap<String, String>,
    },
    /// A member invited this node into a topic: it is subscribed now.
    Invited {
        /// Topic name.
        topic: String,
        /// Who invited (peer id).
        by: String,
        /// The inviter's display name, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The epoch joined.
        epoch: u32,
    },
    /// A peer was seen as a member of a topic for the first time (it
    /// announced itself, or a message of its arrived).
    MemberJoined {
        /// Topic name.
        topic: String,
        /// Its peer id.
        peer: String,
        /// Its display name, as it signed it.
        name: String,
    },
    /// Answer to `/members`.
    Members {
        /// Topic name.
        topic: String,
        /// The current epoch.
        epoch: u32,
        /// The members of the current epoch.
        members: Vec<MemberSummary>,
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
        /// When the page was full: the cursor to read the page before it
        /// (`/inbox … --before CURSOR`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<String>,
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
        /// The current epoch per topic (0 until a member rekeys it).
        #[serde(default)]
        epochs: std::collections::BTreeMap<String, u32>,
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

    /// Whether readable output leaves this event out: a catch-up that moved
    /// nothing (`--json` reports it all the same).
    pub fn is_quiet(&self) -> bool {
        matches!(
            self,
            Event::Synced {
                received: 0,
                sent: 0,
                ..
            }
        )
    }

    /// The human-readable rendering (may span several lines).
    pub fn to_human(&self) -> String {
        match self {
            Event::Listening { addr } => format!("listening on {addr}"),
            Event::ApiListening { addr } => format!("api and web page at {addr}"),
            Event::MetricsListening { addr } => format!("metrics at {addr}"),
            Event::PeerDiscovered { peer, addr, via } => format!("discovered {peer} at {addr} ({via})"),
            Event::PeerConnected { peer, name, relayed } => {
                let via = if *relayed { ", relayed" } else { "" };
                match name {
                    Some(name) => format!("connected to {name} ({}{via})", short_peer(peer)),
                    None => format!("connected to {peer}{}", if *relayed { " (relayed)" } else { "" }),
                }
            }
            Event::PeerDirect { peer, name } => format!("direct connection to {} (no relay now)", named(peer, name)),
            Event::PeerDisconnected { peer, name } => format!("disconnected from {}", named(peer, name)),
            Event::NatStatus { reachability, addrs } => {
                let relayed = addrs.iter().any(|a| a.contains("/p2p-circuit"));
                match (reachability.as_str(), relayed) {
                    ("public", _) => format!("reachable from outside at {}", addrs.join(", ")),
                    ("private", true) => "behind NAT: peers outside reach this node through its relay".into(),
                    ("private", false) => "behind NAT, and no relay yet: peers outside cannot reach this node".into(),
                    (_, true) => "reachable through a relay; whether peers can dial this node directly is not known yet".into(),
                    _ => "reachability from outside not known yet".into(),
                }
            }
            Event::RelayReserved { relay, addr } => {
                format!("relay {} holds a slot: reachable at {addr}", short_peer(relay))
            }
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
            Event::Message { topic, from, msg, via, .. } => topic_line(topic, from, msg, via),
            Event::Dm { from, msg, .. } => format!("[dm] {from}: {msg}"),
            Event::DmSent { to, id, name } => format!("dm {} delivered to {}", short(id), recipient(to, name)),
            Event::DmQueued { to, id, reason, name } => format!(
                "dm {} to {} waits in the outbox ({reason}); it is retried when the peer is back",
                short(id),
                recipient(to, name)
            ),
            Event::DmFailed { to, id, reason, name } => {
                format!("dm {} to {} failed: {reason}", short(id), recipient(to, name))
            }
            Event::Synced {
                peer,
                name,
                topic,
                received,
                sent,
            } => {
                let who = name.clone().unwrap_or_else(|| short_peer(peer));
                match (received, sent) {
                    (_, 0) => format!("caught up on {topic} with {who}: {received} received"),
                    (0, _) => format!("caught up on {topic} with {who}: {sent} sent"),
                    _ => format!("caught up on {topic} with {who}: {received} received, {sent} sent"),
                }
            }
            Event::Rekeyed {
                topic,
                epoch,
                by,
                removed,
                names,
            } => {
                let who = |p: &String| named(p, &names.get(p).cloned());
                let mut s = format!("{topic} moved to epoch {epoch} (rekeyed by {})", who(by));
                if !removed.is_empty() {
                    let removed: Vec<String> = removed.iter().map(who).collect();
                    s.push_str(&format!("; removed: {}", removed.join(", ")));
                }
                s
            }
            Event::Invited { topic, by, name, epoch } => {
                format!("{} invited this node into {topic} (epoch {epoch}): subscribed", named(by, name))
            }
            Event::MemberJoined { topic, peer, name } => {
                format!("{name} ({}) is a member of {topic}", short_peer(peer))
            }
            Event::Members { topic, epoch, members } => {
                let mut s = format!("{topic}, epoch {epoch}: {} member(s)", members.len());
                for m in members {
                    let me = if m.me { " (this node)" } else { "" };
                    s.push_str(&format!("\n  {} {}{me}", m.name, m.peer));
                }
                s
            }
            Event::Pending { dms, publishes } if dms.is_empty() && publishes.is_empty() => "nothing pending".into(),
            Event::Pending { dms, publishes } => publishes
                .iter()
                .map(|(t, n)| format!("{n} message(s) for {t} wait for a subscribed peer"))
                .chain(dms.iter().map(|d| {
                    format!(
                        "dm {} to {}: {} (attempts {}{})",
                        short(&d.id),
                        recipient(&d.to, &d.to_name),
                        d.msg,
                        d.attempts,
                        d.last_error.as_deref().map(|e| format!(", last error: {e}")).unwrap_or_default()
                    )
                }))
                .collect::<Vec<_>>()
                .join("\n"),
            Event::Inbox { messages, .. } if messages.is_empty() => "inbox is empty".into(),
            Event::Inbox { messages, before } => messages
                .iter()
                .map(|m| {
                    // Dated, so a stored message never reads like a live one.
                    let when = crate::clock::local_datetime(m.ts);
                    match (&m.topic, &m.to) {
                        (Some(t), _) => format!("{when} {}", topic_line(t, &m.from, &m.msg, &m.via)),
                        (None, Some(to)) => format!("{when} [dm to {}] {}: {}", recipient(to, &m.to_name), m.from, m.msg),
                        (None, None) => format!("{when} [dm] {}: {}", m.from, m.msg),
                    }
                })
                .chain(before.iter().map(|c| format!("(older: add --before {c})")))
                .collect::<Vec<_>>()
                .join("\n"),
            Event::Peers { peers } if peers.is_empty() => "no peers connected".into(),
            Event::Peers { peers } => peers
                .iter()
                .map(|p| {
                    let relayed = if p.relayed { " (relayed)" } else { "" };
                    format!("{} {}{relayed}", p.name.as_deref().unwrap_or("?"), p.peer)
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Event::Topics { topics, .. } if topics.is_empty() => "no subscriptions".into(),
            Event::Topics {
                topics,
                peers,
                mesh,
                epochs,
            } => topics
                .iter()
                .map(|t| {
                    let (p, m) = (peers.get(t).copied().unwrap_or(0), mesh.get(t).copied().unwrap_or(0));
                    let peers = if p == 1 { "1 peer".to_owned() } else { format!("{p} peers") };
                    match epochs.get(t).copied().unwrap_or(0) {
                        0 => format!("{t} ({peers}, {m} in mesh)"),
                        e => format!("{t} (epoch {e}, {peers}, {m} in mesh)"),
                    }
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

/// A topic message as a person reads it, live or listed: one caught up
/// after being offline (`via` `"sync"`) is marked so.
fn topic_line(topic: &str, from: &str, msg: &str, via: &str) -> String {
    let caught_up = if via == "sync" { " (caught up)" } else { "" };
    format!("[{topic}] {from}: {msg}{caught_up}")
}

/// A peer id shortened for human output: `12D3…` and its last 6 characters.
fn short_peer(peer: &str) -> String {
    match (peer.get(..4), peer.len().checked_sub(6).and_then(|i| peer.get(i..))) {
        (Some(head), Some(tail)) if peer.len() > 12 => format!("{head}…{tail}"),
        _ => peer.to_owned(),
    }
}

/// The recipient of a DM as a person reads it: its name, else its peer id
/// shortened (full ids stay in `--json`).
fn recipient(peer: &str, name: &Option<String>) -> String {
    name.clone().unwrap_or_else(|| short_peer(peer))
}

/// `name (12D3…tail)` when the name is known, else the full peer id.
fn named(peer: &str, name: &Option<String>) -> String {
    match name {
        Some(name) => format!("{name} ({})", short_peer(peer)),
        None => peer.to_owned(),
    }
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
                id: "i".into(),
                name: None,
            }
            .to_json(),
            r#"{"event":"dm_sent","to":"p","id":"i"}"#
        );
    }

    #[test]
    fn readable_output_names_peers_it_knows() {
        let bob = "12D3KooWNxmCmVtSbDZzBfB8wJZ7Qb4rQ5yYb1ZpqzzR8YsN4xYb".to_owned();
        let connected = Event::PeerConnected {
            peer: bob.clone(),
            name: Some("bob".into()),
            relayed: false,
        };
        assert_eq!(connected.to_human(), "connected to bob (12D3…sN4xYb)");
        assert_eq!(
            connected.to_json(),
            format!(r#"{{"event":"peer_connected","peer":"{bob}","name":"bob","relayed":false}}"#)
        );
        let relayed = Event::PeerConnected {
            peer: bob.clone(),
            name: Some("bob".into()),
            relayed: true,
        };
        assert_eq!(relayed.to_human(), "connected to bob (12D3…sN4xYb, relayed)");
        let sent = Event::DmSent {
            to: bob.clone(),
            id: "433018471a9e0000".into(),
            name: Some("alice".into()),
        };
        assert_eq!(sent.to_human(), "dm 433018471a9e delivered to alice");
        let queued = |name: Option<&str>| Event::DmQueued {
            to: bob.clone(),
            id: "433018471a9e0000".into(),
            reason: "no route".into(),
            name: name.map(Into::into),
        };
        assert_eq!(
            queued(Some("carol")).to_human(),
            "dm 433018471a9e to carol waits in the outbox (no route); it is retried when the peer is back"
        );
        assert!(queued(None)
            .to_human()
            .starts_with("dm 433018471a9e to 12D3…sN4xYb waits"));
        let failed = Event::DmFailed {
            to: bob.clone(),
            id: "433018471a9e0000".into(),
            reason: "expired".into(),
            name: Some("carol".into()),
        };
        assert_eq!(failed.to_human(), "dm 433018471a9e to carol failed: expired");
        let dm_to = |to_name: Option<&str>| InboxItem {
            kind: "dm".into(),
            topic: None,
            from: "alice".into(),
            peer: "12D3KooWalice".into(),
            to: Some(bob.clone()),
            to_name: to_name.map(Into::into),
            msg: "hi".into(),
            id: "ab".into(),
            ts: 5,
            via: "local".into(),
            cursor: String::new(),
        };
        let inbox = Event::Inbox {
            messages: vec![dm_to(Some("bob")), dm_to(None)],
            before: None,
        };
        let when = crate::clock::local_datetime(5);
        let topic_item = |via: &str| InboxItem {
            kind: "topic".into(),
            topic: Some("news".into()),
            to: None,
            via: via.into(),
            ..dm_to(None)
        };
        let topics = Event::Inbox {
            messages: vec![topic_item("gossip"), topic_item("sync")],
            before: Some("c0ffee".into()),
        };
        assert_eq!(
            topics.to_human(),
            format!("{when} [news] alice: hi\n{when} [news] alice: hi (caught up)\n(older: add --before c0ffee)")
        );
        // The live line reads as the listed one, undated.
        let live = Event::Message {
            topic: "news".into(),
            from: "alice".into(),
            peer: "12D3KooWalice".into(),
            msg: "hi".into(),
            id: "ab".into(),
            ts: 5,
            via: "sync".into(),
        };
        assert_eq!(live.to_human(), "[news] alice: hi (caught up)");
        assert_eq!(
            inbox.to_human(),
            format!("{when} [dm to bob] alice: hi\n{when} [dm to 12D3…sN4xYb] alice: hi")
        );
        let carol = "12D3KooWQXspLtWnoQC7rEXvv2ZqTLzn9Nqop2Y8emNGKzQE18xj".to_owned();
        let dave = "12D3KooWGdgomaRVJ5iX6G1Xqx8a9mkVcbk2GvSTj3K44fNohGVb".to_owned();
        let rekeyed = Event::Rekeyed {
            topic: "news".into(),
            epoch: 1,
            by: bob.clone(),
            removed: vec![carol.clone(), dave.clone()],
            names: [(bob.clone(), "bob".to_owned()), (carol.clone(), "carol".to_owned())].into(),
        };
        assert_eq!(
            rekeyed.to_human(),
            format!("news moved to epoch 1 (rekeyed by bob (12D3…sN4xYb)); removed: carol (12D3…QE18xj), {dave}")
        );
        let synced = |received, sent| Event::Synced {
            peer: bob.clone(),
            name: Some("bob".into()),
            topic: "news".into(),
            received,
            sent,
        };
        assert_eq!(synced(12, 0).to_human(), "caught up on news with bob: 12 received");
        assert!(synced(0, 0).is_quiet());
        assert!(!synced(0, 3).is_quiet());
        assert!(!synced(12, 0).is_quiet());
    }
}
