//! murmur: a decentralized gossip messaging node.
//!
//! A node joins a libp2p swarm (gossipsub topics, request-response direct
//! messages, mDNS discovery), encrypts every message end to end (AES-256-GCM
//! under HKDF-SHA256 keys derived from a topic secret) and keeps a local inbox
//! encrypted at rest. Start one with [`Node::start`] and talk to it through
//! the cloneable [`Node`] handle; the `murmur` binary is a thin shell over it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), murmur::NodeError> {
//! let (node, _task) = murmur::Node::start(murmur::Config::loopback("alice", "/tmp/alice")).await?;
//! node.subscribe("news", Some("s3cret")).await?;
//! node.publish("news", "hello").await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod api;
pub mod app;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod console;
pub mod control;
pub mod crypto;
pub mod doctor;
pub mod envelope;
pub mod event;
pub mod keyring;
pub mod manual;
pub mod metrics;
pub mod network;
pub mod node;
pub mod reply;
pub mod signed;
pub mod store;
pub mod vault;

pub use config::Config;
pub use event::{Event, InboxItem, PeerSummary};
pub use node::Node;
pub use reply::{NodeError, Published, Whoami};
pub use vault::Passphrase;
