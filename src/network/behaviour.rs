//! The composed libp2p behaviour (gossipsub, request-response DMs, mDNS,
//! identify, ping) and the settings each one runs with. The reasons behind
//! the numbers are in docs/architecture.md and docs/protocol.md.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{gossipsub, identify, mdns, ping};
use prometheus_client::registry::Registry;

use super::dm::{DmCodec, PROTOCOL as DM_PROTOCOL};
use super::sync::{SyncCodec, PROTOCOL as SYNC_PROTOCOL};
use crate::crypto::sha256;
use crate::envelope::MAX_ENVELOPE_BYTES;

/// Identify protocol version: peers on another version are still talked to, but logged.
pub const IDENTIFY_PROTOCOL: &str = "/murmur/1";
/// Gossipsub's frame limit: the largest envelope plus room for gossipsub's own fields.
pub const MAX_TRANSMIT_BYTES: usize = MAX_ENVELOPE_BYTES + 4 * 1024;
/// How long a DM may wait for its acknowledgement.
pub const DM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one catch-up page may take.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Catch-up requests one connection may have in flight (ours plus the peer's).
pub const SYNC_MAX_STREAMS: usize = 8;
/// How often each connection is pinged.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
/// How long one ping may take (the event loop's liveness watchdog, not this
/// timeout, decides when a connection is dead).
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// mDNS query interval: how soon a node re-asks after a missed answer.
pub const MDNS_QUERY_INTERVAL: Duration = Duration::from_secs(5);
/// mDNS record TTL: how long after its last answer a silent peer is expired.
pub const MDNS_TTL: Duration = Duration::from_secs(30);

/// Every behaviour of a murmur node.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Topic messages.
    pub gossipsub: gossipsub::Behaviour,
    /// Direct messages (`/murmur/dm/2`).
    pub dm: request_response::Behaviour<DmCodec>,
    /// Catch-up (`/murmur/sync/1`).
    pub sync: request_response::Behaviour<SyncCodec>,
    /// LAN discovery; off with `--no-mdns`.
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    /// Exchanges names (in the agent version) and listen addresses.
    pub identify: identify::Behaviour,
    /// Keeps connections alive and measures round trips.
    pub ping: ping::Behaviour,
}

/// The agent version string that carries a node's display name.
pub fn agent_version(name: &str) -> String {
    format!("murmur/{} {name}", env!("CARGO_PKG_VERSION"))
}

/// The display name in a peer's agent version, if it is a murmur node.
pub fn name_from_agent_version(agent: &str) -> Option<String> {
    let rest = agent.strip_prefix("murmur/")?;
    let (_, name) = rest.split_once(' ')?;
    let name = crate::envelope::truncate_utf8(name.trim(), crate::envelope::MAX_NAME_LEN);
    (!name.is_empty()).then(|| name.to_owned())
}

/// The gossipsub settings: signed messages, strict validation, application
/// validation before forwarding, a content-derived id, and a mesh that works
/// with two or three peers as well as with many.
pub fn gossipsub_config() -> gossipsub::Config {
    gossipsub::ConfigBuilder::default()
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| gossipsub::MessageId::from(&sha256(&m.data)[..20]))
        .max_transmit_size(MAX_TRANSMIT_BYTES)
        .heartbeat_initial_delay(Duration::from_millis(100))
        .heartbeat_interval(Duration::from_secs(1))
        .mesh_n(6)
        .mesh_n_low(2)
        .mesh_n_high(12)
        .mesh_outbound_min(1)
        .flood_publish(true)
        .build()
        .expect("valid gossipsub configuration")
}

impl Behaviour {
    /// Builds the behaviour for `key`, named `name`, with mDNS on or off.
    ///
    /// # Errors
    /// When mDNS cannot open its socket.
    pub fn new(key: &Keypair, name: &str, mdns_on: bool, registry: &mut Registry) -> std::io::Result<Self> {
        let peer_id = key.public().to_peer_id();
        let gossipsub =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossipsub_config())
                .map_err(std::io::Error::other)?
                .with_metrics(registry.sub_registry_with_prefix("gossipsub"), Default::default());
        let dm = request_response::Behaviour::with_codec(
            DmCodec,
            [(DM_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(DM_TIMEOUT),
        );
        let sync_codec = SyncCodec::default();
        sync_codec.traffic.register(registry);
        let sync = request_response::Behaviour::with_codec(
            sync_codec,
            [(SYNC_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(SYNC_TIMEOUT)
                .with_max_concurrent_streams(SYNC_MAX_STREAMS),
        );
        let mdns = if mdns_on {
            let config = mdns::Config {
                ttl: MDNS_TTL,
                query_interval: MDNS_QUERY_INTERVAL,
                ..Default::default()
            };
            Some(mdns::tokio::Behaviour::new(config, peer_id)?)
        } else {
            None
        };
        let identify = identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public()).with_agent_version(agent_version(name)),
        );
        Ok(Self {
            gossipsub,
            dm,
            sync,
            mdns: mdns.into(),
            identify,
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(PING_INTERVAL)
                    .with_timeout(PING_TIMEOUT),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_the_agent_version() {
        assert_eq!(
            name_from_agent_version(&agent_version("alice")).as_deref(),
            Some("alice")
        );
        assert_eq!(
            name_from_agent_version(&agent_version("bob smith")).as_deref(),
            Some("bob smith")
        );
        assert_eq!(name_from_agent_version("rust-libp2p/0.1"), None);
        assert_eq!(name_from_agent_version("murmur/0.1.0 "), None);
    }

    #[test]
    fn gossipsub_config_is_valid() {
        let c = gossipsub_config();
        assert_eq!(c.max_transmit_size(), MAX_TRANSMIT_BYTES);
    }
}
