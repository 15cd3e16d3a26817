//! The composed libp2p behaviour (connection limits, gossipsub with peer
//! scoring, request-response DMs and catch-up, the relay client and server,
//! DCUtR, AutoNAT, Kademlia, UPnP, mDNS, identify, ping) and the settings
//! each one runs with. The reasons behind the numbers are in docs/architecture.md,
//! docs/protocol.md and docs/security.md.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{autonat, connection_limits, dcutr, gossipsub, identify, kad, mdns, ping, relay, upnp};
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
/// How long one ping may take. libp2p reports the second failure in a row,
/// and the event loop then closes the connection (docs/lan.md, liveness).
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// mDNS query interval: how soon a node re-asks after a missed answer.
pub const MDNS_QUERY_INTERVAL: Duration = Duration::from_secs(5);
/// mDNS record TTL: how long after its last answer a silent peer is expired.
pub const MDNS_TTL: Duration = Duration::from_secs(30);

/// How long a message to forward may wait in a peer's queue before gossipsub drops it.
pub const FORWARD_QUEUE_DURATION: Duration = Duration::from_secs(5);

/// Established inbound connections, all peers together.
pub const MAX_INBOUND_CONNECTIONS: u32 = 128;
/// Established connections, inbound and outbound together.
pub const MAX_CONNECTIONS: u32 = 256;
/// Established connections to one peer (mDNS finds TCP and QUIC, and both
/// sides may dial: 2 or 3 per pair are normal).
pub const MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Inbound connections still in their handshake.
pub const MAX_PENDING_INBOUND: u32 = 32;
/// Dials in flight: a flood of mDNS announcements cannot start more.
pub const MAX_PENDING_OUTBOUND: u32 = 32;

/// Below this score gossipsub stops gossiping with a peer (no IHAVE/IWANT).
pub const GOSSIP_THRESHOLD: f64 = -100.0;
/// Below this score a peer gets no flood-published messages from us.
pub const PUBLISH_THRESHOLD: f64 = -200.0;
/// Below this score gossipsub ignores every RPC of a peer, and the event loop
/// disconnects it (and again whenever it reconnects while still below).
pub const GRAYLIST_THRESHOLD: f64 = -400.0;
/// P4: each invalid message (one murmur `Reject`ed) counts 1; the penalty is
/// this weight times the count squared. 7 invalid messages (−490) graylist a
/// peer even with the most credit an honest peer can earn (+16).
pub const INVALID_MESSAGE_WEIGHT: f64 = -10.0;
/// How long the invalid-message count takes to decay to a tenth.
pub const INVALID_MESSAGE_MEMORY: Duration = Duration::from_secs(600);
/// The most positive score topics can give a peer, so credit earned with
/// valid messages cannot hide more than a few invalid ones.
pub const TOPIC_SCORE_CAP: f64 = 20.0;

/// The Kademlia protocol: the IPFS DHT's, so that any IPFS DHT server can
/// bootstrap a murmur node.
pub const KAD_PROTOCOL: libp2p::StreamProtocol = kad::PROTOCOL_NAME;
/// How long a DHT query may run.
pub const KAD_QUERY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long this node keeps a provider record others stored with it (when it serves the DHT).
pub const PROVIDER_RECORD_TTL: Duration = Duration::from_secs(2 * 60 * 60);
/// How often our own provider records are published again (with the addresses we have then).
pub const PROVIDER_REPUBLISH: Duration = Duration::from_secs(30 * 60);
/// Provider keys a DHT server stores (its own and others').
pub const MAX_PROVIDER_KEYS: usize = 8192;

/// Reservations a relay server holds at once.
pub const RELAY_MAX_RESERVATIONS: usize = 256;
/// Reservations one peer may hold on a relay server.
pub const RELAY_MAX_RESERVATIONS_PER_PEER: usize = 2;
/// How long a reservation lasts (the client renews it at three quarters).
pub const RELAY_RESERVATION_DURATION: Duration = Duration::from_secs(60 * 60);
/// Circuits a relay server carries at once.
pub const RELAY_MAX_CIRCUITS: usize = 256;
/// Circuits one peer may have open through a relay server.
pub const RELAY_MAX_CIRCUITS_PER_PEER: usize = 16;
/// How long one circuit lasts. Long: a member behind a symmetric NAT, where
/// hole punching cannot work, talks through its circuits for as long as it
/// is connected (libp2p's default, 2 min, would cut them all the time).
pub const RELAY_MAX_CIRCUIT_DURATION: Duration = Duration::from_secs(60 * 60);
/// Bytes one circuit may carry (both directions): 64 MiB, a thousand full-size
/// messages; a circuit that hits it ends, and the peers reconnect and catch up.
pub const RELAY_MAX_CIRCUIT_BYTES: u64 = 64 << 20;
/// New reservations one peer may ask for: this many at once, one more every minute.
pub const RELAY_RESERVATIONS_PER_PEER_BURST: u32 = 10;
/// New reservations one IP address may ask for (every node behind one NAT
/// shares it): this many at once, one more every 10 s.
pub const RELAY_RESERVATIONS_PER_IP_BURST: u32 = 60;
/// New circuits one peer may open: this many at once, one more every 10 s.
pub const RELAY_CIRCUITS_PER_PEER_BURST: u32 = 30;
/// New circuits from one IP address: this many at once, one more every 2 s.
pub const RELAY_CIRCUITS_PER_IP_BURST: u32 = 120;

/// Every behaviour of a murmur node.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Caps on established and pending connections (first: it vetoes connections).
    pub limits: connection_limits::Behaviour,
    /// Topic messages.
    pub gossipsub: gossipsub::Behaviour,
    /// Direct messages (`/murmur/dm/2`).
    pub dm: request_response::Behaviour<DmCodec>,
    /// Catch-up (`/murmur/sync/1`).
    pub sync: request_response::Behaviour<SyncCodec>,
    /// Reserves slots on relays and dials or accepts circuits through them.
    pub relay_client: relay::client::Behaviour,
    /// Relays circuits for others (`--relay-server`).
    pub relay_server: Toggle<relay::Behaviour>,
    /// Hole punching: upgrades a relayed connection to a direct one.
    pub dcutr: dcutr::Behaviour,
    /// Asks peers to dial us back: are we reachable (`nat_status`)?
    pub autonat: autonat::Behaviour,
    /// The DHT (`/ipfs/kad/1.0.0`): topic rendezvous and peer routing; on
    /// when the node has somewhere to join it (see [`Settings::dht`]).
    pub kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    /// Port mappings on the home router (`--upnp`).
    pub upnp: Toggle<upnp::tokio::Behaviour>,
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

/// The gossipsub settings: application validation before forwarding, a
/// content-derived id, and a mesh that works with two or three peers as well
/// as with many.
///
/// murmur's messages are anonymous to gossipsub (no `source`, `seqno` or
/// gossipsub signature): the data is a signed frame whose author signature the
/// event loop checks once per message, where gossipsub would check its own
/// signature on every copy received from every mesh peer. `signed_gossip`
/// (the `--plain` benchmark baseline only) restores gossipsub's signed, strict
/// mode, as in the rust-libp2p chat example.
pub fn gossipsub_config(signed_gossip: bool) -> gossipsub::Config {
    let mode = if signed_gossip {
        gossipsub::ValidationMode::Strict
    } else {
        gossipsub::ValidationMode::Anonymous
    };
    gossipsub::ConfigBuilder::default()
        .validation_mode(mode)
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
        // A forward waits as long as a publish before it is dropped: on a busy
        // machine 1 s (the default) loses messages that nothing repairs when
        // every subscribed peer is in the mesh (no peer to gossip IHAVE to).
        .forward_queue_duration(FORWARD_QUEUE_DURATION)
        .build()
        .expect("valid gossipsub configuration")
}

/// The connection caps (see the `MAX_*` constants).
pub fn connection_limits() -> connection_limits::ConnectionLimits {
    connection_limits::ConnectionLimits::default()
        .with_max_established_incoming(Some(MAX_INBOUND_CONNECTIONS))
        .with_max_established(Some(MAX_CONNECTIONS))
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
        .with_max_pending_incoming(Some(MAX_PENDING_INBOUND))
        .with_max_pending_outgoing(Some(MAX_PENDING_OUTBOUND))
}

/// Peer-score parameters that do not depend on a topic. Topics are secret and
/// joined at run time, so their parameters ([`topic_score_params`]) are set
/// when the event loop joins one.
///
/// * P5 (application score) is unused.
/// * P6 (IP colocation): more than 10 peers from one address are penalised,
///   except loopback (local processes, benchmarks, tests).
/// * P7 (behaviour: broken IWANT promises, GRAFT during backoff): mild, with a
///   tolerance of 5 and a fast decay, so a busy honest peer stays far above
///   the gossip threshold.
/// * Slow peers (forwards we had to drop): libp2p's default, −0.2 each.
pub fn peer_score_params() -> gossipsub::PeerScoreParams {
    gossipsub::PeerScoreParams {
        topic_score_cap: TOPIC_SCORE_CAP,
        app_specific_weight: 0.0,
        ip_colocation_factor_weight: -5.0,
        ip_colocation_factor_threshold: 10.0,
        ip_colocation_factor_whitelist: HashSet::from([
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ]),
        behaviour_penalty_weight: -1.0,
        behaviour_penalty_threshold: 5.0,
        behaviour_penalty_decay: 0.5,
        retain_score: Duration::from_secs(3600),
        ..Default::default()
    }
}

/// The score thresholds: a peer sending invalid messages goes below
/// [`GRAYLIST_THRESHOLD`] after 7 of them; honest peers stay at zero or above.
pub fn peer_score_thresholds() -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds {
        gossip_threshold: GOSSIP_THRESHOLD,
        publish_threshold: PUBLISH_THRESHOLD,
        graylist_threshold: GRAYLIST_THRESHOLD,
        // Peer exchange is off; only trusted-looking peers would be followed.
        accept_px_threshold: 100.0,
        opportunistic_graft_threshold: 3.0,
    }
}

/// The score parameters of every joined topic.
///
/// * P1 (time in mesh): +0.01 a second, at most +6 after 10 minutes.
/// * P2 (first deliveries of valid messages): +1 each, at most +10, decaying
///   to a tenth in a minute.
/// * P3/P3b (mesh delivery deficit) are off: in a quiet topic every honest
///   mesh peer has a deficit, and the penalty would push it out.
/// * P4 (invalid messages): [`INVALID_MESSAGE_WEIGHT`] × count², the count
///   decaying to a tenth in [`INVALID_MESSAGE_MEMORY`].
pub fn topic_score_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 600.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(60)),
        first_message_deliveries_cap: 10.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        invalid_message_deliveries_decay: gossipsub::score_parameter_decay(INVALID_MESSAGE_MEMORY),
        ..Default::default()
    }
}

/// The DHT's settings (see the `KAD_*` and `PROVIDER_*` constants). A node
/// starts as a DHT client; the event loop makes it a server once it knows it
/// is reachable.
pub fn kad_behaviour(peer_id: libp2p::PeerId) -> kad::Behaviour<kad::store::MemoryStore> {
    let mut config = kad::Config::new(KAD_PROTOCOL);
    config
        .set_query_timeout(KAD_QUERY_TIMEOUT)
        .set_provider_record_ttl(Some(PROVIDER_RECORD_TTL))
        .set_provider_publication_interval(Some(PROVIDER_REPUBLISH));
    let store = kad::store::MemoryStore::with_config(
        peer_id,
        kad::store::MemoryStoreConfig {
            max_provided_keys: MAX_PROVIDER_KEYS,
            ..Default::default()
        },
    );
    let mut kad = kad::Behaviour::with_config(peer_id, store, config);
    kad.set_mode(Some(kad::Mode::Client));
    kad
}

/// The relay server's limits (see the `RELAY_*` constants): per peer and per
/// IP address, for reservations and circuits.
pub fn relay_config() -> relay::Config {
    let nz = |n: u32| NonZeroU32::new(n).expect("non-zero");
    relay::Config {
        max_reservations: RELAY_MAX_RESERVATIONS,
        max_reservations_per_peer: RELAY_MAX_RESERVATIONS_PER_PEER,
        reservation_duration: RELAY_RESERVATION_DURATION,
        reservation_rate_limiters: Vec::new(),
        max_circuits: RELAY_MAX_CIRCUITS,
        max_circuits_per_peer: RELAY_MAX_CIRCUITS_PER_PEER,
        max_circuit_duration: RELAY_MAX_CIRCUIT_DURATION,
        max_circuit_bytes: RELAY_MAX_CIRCUIT_BYTES,
        circuit_src_rate_limiters: Vec::new(),
    }
    .reservation_rate_per_peer(nz(RELAY_RESERVATIONS_PER_PEER_BURST), Duration::from_secs(60))
    .reservation_rate_per_ip(nz(RELAY_RESERVATIONS_PER_IP_BURST), Duration::from_secs(10))
    .circuit_src_per_peer(nz(RELAY_CIRCUITS_PER_PEER_BURST), Duration::from_secs(10))
    .circuit_src_per_ip(nz(RELAY_CIRCUITS_PER_IP_BURST), Duration::from_secs(2))
}

/// AutoNAT's settings. `private_wan` (`--private-wan`, test networks whose
/// "public" segment uses private addresses) lets private addresses count as
/// reachable; then only the peers the event loop names (bootstrap nodes and
/// relays) are asked to dial us back, not LAN neighbours, which would always
/// reach us.
pub fn autonat_config(private_wan: bool) -> autonat::Config {
    autonat::Config {
        timeout: Duration::from_secs(10),
        boot_delay: Duration::from_secs(2),
        retry_interval: Duration::from_secs(20),
        refresh_interval: Duration::from_secs(10 * 60),
        throttle_server_period: Duration::from_secs(15),
        confidence_max: 2,
        use_connected: !private_wan,
        only_global_ips: !private_wan,
        ..Default::default()
    }
}

/// What the behaviour is built with, beyond the key.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The display name (in identify's agent version).
    pub name: String,
    /// Whether mDNS runs.
    pub mdns: bool,
    /// The `--plain` baseline: gossipsub signed and strict (see [`gossipsub_config`]).
    pub signed_gossip: bool,
    /// Whether this node relays circuits for others (`--relay-server`).
    pub relay_server: bool,
    /// Whether UPnP asks the router for port mappings (`--upnp`).
    pub upnp: bool,
    /// Private addresses count as reachable (`--private-wan`; see [`autonat_config`]).
    pub private_wan: bool,
    /// Whether the DHT runs: with bootstrap nodes, a saved routing table,
    /// or as a reachable node (a hub). A LAN-only node has no DHT to join,
    /// and Kademlia's routing table costs about 1.5 MiB.
    pub dht: bool,
}

impl Behaviour {
    /// Builds the behaviour for `key` with `settings`, around the relay
    /// client the swarm builder made.
    ///
    /// # Errors
    /// When mDNS cannot open its socket.
    pub fn new(
        key: &Keypair,
        relay_client: relay::client::Behaviour,
        settings: &Settings,
        registry: &mut Registry,
    ) -> std::io::Result<Self> {
        let (name, mdns_on, signed_gossip) = (settings.name.as_str(), settings.mdns, settings.signed_gossip);
        let peer_id = key.public().to_peer_id();
        let authenticity = if signed_gossip {
            gossipsub::MessageAuthenticity::Signed(key.clone())
        } else {
            gossipsub::MessageAuthenticity::Anonymous
        };
        let mut gossipsub = gossipsub::Behaviour::new(authenticity, gossipsub_config(signed_gossip))
            .map_err(std::io::Error::other)?
            .with_metrics(registry.sub_registry_with_prefix("gossipsub"), Default::default());
        gossipsub
            .with_peer_score(peer_score_params(), peer_score_thresholds())
            .map_err(std::io::Error::other)?;
        let dm = request_response::Behaviour::with_codec(
            DmCodec::default(),
            [(DM_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(DM_TIMEOUT),
        );
        let sync_codec = SyncCodec::default();
        super::sync::register_traffic(&sync_codec, registry);
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
            identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
                .with_agent_version(agent_version(name))
                // Peers learn at once of a new relay circuit address.
                .with_push_listen_addr_updates(true),
        );
        let relay_server = settings
            .relay_server
            .then(|| relay::Behaviour::new(peer_id, relay_config()));
        let upnp = settings.upnp.then(upnp::tokio::Behaviour::default);
        Ok(Self {
            limits: connection_limits::Behaviour::new(connection_limits()),
            gossipsub,
            dm,
            sync,
            relay_client,
            relay_server: relay_server.into(),
            dcutr: dcutr::Behaviour::new(peer_id),
            autonat: autonat::Behaviour::new(peer_id, autonat_config(settings.private_wan)),
            kad: settings.dht.then(|| kad_behaviour(peer_id)).into(),
            upnp: upnp.into(),
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
    fn score_parameters_are_valid() {
        peer_score_params().validate().unwrap();
        peer_score_thresholds().validate().unwrap();
        topic_score_params().validate().unwrap();
    }

    /// The arithmetic the thresholds rely on: the most credit an honest peer
    /// can earn, and how many invalid messages outweigh it.
    #[test]
    fn seven_invalid_messages_graylist_even_a_peer_with_full_credit() {
        let t = topic_score_params();
        let credit = (t.time_in_mesh_cap * t.time_in_mesh_weight
            + t.first_message_deliveries_cap * t.first_message_deliveries_weight)
            .min(TOPIC_SCORE_CAP);
        assert!(credit <= 16.0);
        let score = |invalid: f64| credit + t.topic_weight * INVALID_MESSAGE_WEIGHT * invalid * invalid;
        assert!(score(6.0) > GRAYLIST_THRESHOLD);
        assert!(score(7.0) < GRAYLIST_THRESHOLD);
        // One stray invalid message costs an honest relay less than the gossip threshold.
        assert!(score(1.0) - credit > GOSSIP_THRESHOLD);
        // The count decays to a tenth in ten minutes.
        let ten_minutes = t.invalid_message_deliveries_decay.powi(600);
        assert!((ten_minutes - 0.1).abs() < 1e-6);
    }

    #[test]
    fn relay_limits_let_a_relayed_member_talk_for_an_hour() {
        let c = relay_config();
        assert!(c.max_circuit_duration >= Duration::from_secs(3600));
        assert!(c.max_circuit_bytes >= 1000 * crate::envelope::MAX_ENVELOPE_BYTES as u64);
        assert_eq!(c.reservation_rate_limiters.len(), 2);
        assert_eq!(c.circuit_src_rate_limiters.len(), 2);
    }

    #[test]
    fn gossipsub_config_is_valid() {
        for signed in [false, true] {
            let c = gossipsub_config(signed);
            assert_eq!(c.max_transmit_size(), MAX_TRANSMIT_BYTES);
        }
    }
}
