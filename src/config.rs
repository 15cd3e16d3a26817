//! The resolved configuration of a node: what the CLI (or a library user)
//! decided, with defaults filled in.

use std::path::PathBuf;
use std::time::Duration;

use libp2p::Multiaddr;

pub use crate::store::{Durability, Retention};
use crate::vault::Passphrase;

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Display name peers see.
    pub name: String,
    /// Where the identity, keyring and inbox live.
    pub data_dir: PathBuf,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start (and again while not connected).
    pub peers: Vec<Multiaddr>,
    /// Topics to subscribe at start: (name, secret); no secret makes an open topic.
    pub topics: Vec<(String, Option<String>)>,
    /// Whether mDNS discovery runs.
    pub mdns: bool,
    /// DHT bootstrap nodes (each ends in `/p2p/<peer id>`): dialled at
    /// start, they let the node join the DHT, find topic members beyond the
    /// LAN and relays. See [`IPFS_BOOTSTRAP`].
    pub bootstrap: Vec<Multiaddr>,
    /// Addresses at which others can reach this node directly (a public
    /// host's, a port forward's), announced as confirmed.
    pub external_addrs: Vec<Multiaddr>,
    /// Relay circuits for others (relay v2) and serve the DHT: for a node
    /// with a public address.
    pub relay_server: bool,
    /// Ask the router for port mappings (UPnP IGD).
    pub upnp: bool,
    /// Count private addresses as reachable (AutoNAT), for test networks
    /// whose "public" segment uses private addresses; AutoNAT then asks only
    /// bootstrap nodes and relays to dial back.
    pub private_wan: bool,
    /// Seals the identity key and the keyring under a key derived from it
    /// (Argon2id). Without one they are protected by file permissions only.
    pub passphrase: Option<Passphrase>,
    /// Benchmark baseline only: publish bodies as they are and report received
    /// ones without encryption, validation of the envelope or inbox writes
    /// (`murmur bench --plain`). Never for real use.
    pub plain: bool,
    /// Which of a topic's messages catch-up exchanges (`/murmur/sync/1`).
    pub retention: Retention,
    /// How often to catch up again with a topic peer while connected (besides
    /// at every new connection); `None`: only at connection.
    pub sync_interval: Option<Duration>,
    /// How long a direct message waits in the outbox before `dm_failed`.
    pub dm_expiry: Duration,
    /// How durable inbox commits are (see [`Durability`]).
    pub durability: Durability,
    /// How long a topic's epoch left behind by a rekey is still read.
    pub rekey_grace: Duration,
}

/// Default of [`Config::sync_interval`].
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(30);
/// Default of [`Config::dm_expiry`].
pub const DEFAULT_DM_EXPIRY: Duration = Duration::from_secs(12 * 60 * 60);
/// Longest [`Config::dm_expiry`]: a recipient refuses direct messages older than
/// a day (replay window), so retrying longer could not succeed.
pub const MAX_DM_EXPIRY: Duration = Duration::from_secs(23 * 60 * 60);

impl Config {
    /// A configuration with the default listen addresses (TCP and QUIC on
    /// every IPv4 interface, ports chosen by the system) and mDNS on.
    pub fn new(name: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            data_dir: data_dir.into(),
            listen: default_listen(),
            peers: Vec::new(),
            topics: Vec::new(),
            mdns: true,
            bootstrap: Vec::new(),
            external_addrs: Vec::new(),
            relay_server: false,
            upnp: false,
            private_wan: false,
            passphrase: None,
            plain: false,
            retention: Retention::default(),
            sync_interval: Some(DEFAULT_SYNC_INTERVAL),
            dm_expiry: DEFAULT_DM_EXPIRY,
            durability: Durability::default(),
            rekey_grace: crate::network::DEFAULT_GRACE,
        }
    }

    /// A configuration for a node that stays on loopback: TCP on 127.0.0.1, no mDNS.
    pub fn loopback(name: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid address")],
            mdns: false,
            ..Self::new(name, data_dir)
        }
    }
}

/// The public IPFS bootstrap nodes (`--bootstrap ipfs`), as Kubo lists them.
pub const IPFS_BOOTSTRAP: [&str; 5] = [
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb",
    "/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt",
    "/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ",
];

/// Parses a `--bootstrap` value: `ipfs` (the public IPFS list) or a
/// multiaddr that ends in `/p2p/<peer id>`.
///
/// # Errors
/// A value that is not a multiaddr, or one without a peer id.
pub fn parse_bootstrap(value: &str) -> Result<Vec<Multiaddr>, String> {
    if value == "ipfs" {
        return Ok(IPFS_BOOTSTRAP
            .iter()
            .map(|a| a.parse().expect("valid address"))
            .collect());
    }
    let addr: Multiaddr = value
        .parse()
        .map_err(|e| format!("--bootstrap {value}: not a multiaddr ({e})"))?;
    if !matches!(addr.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))) {
        return Err(format!(
            "--bootstrap {value}: the address must end in /p2p/<peer id>\nhint: e.g. /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW…, or `ipfs` for the public IPFS bootstrap nodes"
        ));
    }
    Ok(vec![addr])
}

/// TCP and QUIC on all IPv4 interfaces, on ports the system picks.
pub fn default_listen() -> Vec<Multiaddr> {
    vec![
        "/ip4/0.0.0.0/tcp/0".parse().expect("valid address"),
        "/ip4/0.0.0.0/udp/0/quic-v1".parse().expect("valid address"),
    ]
}

/// The host name, the default display name ("murmur" when it cannot be read).
pub fn default_name() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host = host.split('.').next().unwrap_or_default().trim().to_owned();
    if host.is_empty() {
        "murmur".into()
    } else {
        host
    }
}

/// The default data dir for `name`: `<user data dir>/murmur/<name>`
/// (e.g. `~/.local/share/murmur/alice`), or `./murmur-data/<name>` without one.
pub fn default_data_dir(name: &str) -> PathBuf {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dirs::data_dir()
        .map(|d| d.join("murmur"))
        .unwrap_or_else(|| PathBuf::from("murmur-data"))
        .join(safe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_values_parse_or_say_what_is_wrong() {
        assert_eq!(parse_bootstrap("ipfs").unwrap().len(), IPFS_BOOTSTRAP.len());
        let one = "/dns4/hub.test/tcp/4001/p2p/12D3KooWCwiQZ5uVKiX5QohyBjvKz2U1mrgvAhSSxzAFY3bx4UzB";
        assert_eq!(parse_bootstrap(one).unwrap()[0].to_string(), one);
        let no_id = parse_bootstrap("/ip4/10.0.0.1/tcp/4001").unwrap_err();
        assert!(no_id.contains("/p2p/<peer id>"), "{no_id}");
        let junk = parse_bootstrap("hub:4001").unwrap_err();
        assert!(junk.contains("not a multiaddr"), "{junk}");
    }

    #[test]
    fn data_dir_name_is_sanitised() {
        let d = default_data_dir("../evil name");
        assert!(d.ends_with("___evil_name"), "{d:?}");
        assert!(!default_name().is_empty());
    }
}
