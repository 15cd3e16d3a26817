//! The resolved configuration of a node: what the CLI (or a library user)
//! decided, with defaults filled in.

use std::path::PathBuf;
use std::time::Duration;

use libp2p::Multiaddr;

pub use crate::store::Retention;
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
            passphrase: None,
            plain: false,
            retention: Retention::default(),
            sync_interval: Some(DEFAULT_SYNC_INTERVAL),
            dm_expiry: DEFAULT_DM_EXPIRY,
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
    fn data_dir_name_is_sanitised() {
        let d = default_data_dir("../evil name");
        assert!(d.ends_with("___evil_name"), "{d:?}");
        assert!(!default_name().is_empty());
    }
}
