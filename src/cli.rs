//! The command line (clap derive): the doc comments below are the `--help` text.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Parser;
use libp2p::Multiaddr;

use crate::config::{default_data_dir, default_listen, default_name, Config};
use crate::vault::Passphrase;

/// The environment variable that holds the passphrase. There is deliberately
/// no `--passphrase` flag: a command line is visible to every local user.
pub const PASSPHRASE_ENV: &str = "MURMUR_PASSPHRASE";

/// murmur: a decentralized, end-to-end encrypted gossip messaging node.
///
/// Nodes on one LAN find each other by mDNS; `--peer` dials a node anywhere;
/// `--bootstrap` joins a DHT where members of a topic find each other across
/// NATs, through relays and hole punching.
/// Type commands on stdin (`/help` lists them): `/sub news s3cret`,
/// `/pub news hello`, `/dm bob hi`, `/inbox`, `/peers`, `/quit`.
/// Logs go to stderr (set RUST_LOG, e.g. RUST_LOG=debug); stdout carries only
/// the node's output.
#[derive(Debug, Parser)]
#[command(name = "murmur", version, about, long_about)]
pub struct Cli {
    /// Something to do instead of running a node
    #[command(subcommand)]
    pub command: Option<Subcommand>,

    /// Display name your peers see [default: this machine's host name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Where the identity key, keyring and inbox live
    /// [default: <user data dir>/murmur/<NAME>, e.g. ~/.local/share/murmur/alice]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Address to listen on; repeat for several
    /// [default: /ip4/0.0.0.0/tcp/0 and /ip4/0.0.0.0/udp/0/quic-v1]
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,

    /// Peer to dial at start (and again whenever the connection is lost), e.g.
    /// /ip4/192.168.1.20/tcp/4001/p2p/12D3KooW…; repeat for several
    #[arg(long, value_name = "MULTIADDR")]
    pub peer: Vec<Multiaddr>,

    /// Topic to subscribe at start, with its shared secret after `=`; without
    /// a secret the topic is open (anyone who knows the name can read it)
    #[arg(long, value_name = "TOPIC[=SECRET]")]
    pub topic: Vec<String>,

    /// Turn off mDNS discovery on the LAN (use --peer to connect)
    #[arg(long)]
    pub no_mdns: bool,

    /// Join the DHT through this node, to find topic members and relays
    /// beyond the LAN: a multiaddr ending in /p2p/<peer id> (e.g. a murmur
    /// hub run with --relay-server), or `ipfs` for the public IPFS bootstrap
    /// nodes; repeat for several (see docs/wan.md)
    #[arg(long, value_name = "MULTIADDR|ipfs")]
    pub bootstrap: Vec<String>,

    /// Relay circuits for peers behind NAT (relay v2) and serve the DHT: for a
    /// node with a public address, given with --external-addr
    #[arg(long, requires = "external_addr")]
    pub relay_server: bool,

    /// An address at which others reach this node directly (a public IP, a
    /// port forward), e.g. /ip4/203.0.113.7/tcp/4001; repeat for several
    #[arg(long, value_name = "MULTIADDR")]
    pub external_addr: Vec<Multiaddr>,

    /// Ask the home router for port mappings (UPnP IGD), so that peers can
    /// dial this node directly
    #[arg(long)]
    pub upnp: bool,

    /// Test networks only: count private addresses (10/8, 192.168/16…) as
    /// reachable, so that reachability checks work where the "public"
    /// segment uses them; only bootstrap nodes and relays are then asked to
    /// dial back
    #[arg(long)]
    pub private_wan: bool,

    /// Serve the local HTTP/JSON API and web page at this address, e.g.
    /// 127.0.0.1:8080 or localhost:8080 (port 0: any free one); off by
    /// default; a non-loopback address needs --api-token
    #[arg(long, value_name = "ADDR", value_parser = parse_listen_addr)]
    pub api: Option<std::net::SocketAddr>,

    /// Token the API requires as `Authorization: Bearer TOKEN` on every route
    /// but /health
    #[arg(long, value_name = "TOKEN", env = "MURMUR_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9100
    /// (off by default; see docs/metrics.md)
    #[arg(long, value_name = "ADDR", value_parser = parse_listen_addr)]
    pub metrics: Option<std::net::SocketAddr>,

    /// Catch-up exchanges a topic's messages of the last DAYS days (the inbox
    /// itself keeps everything)…
    #[arg(long, value_name = "DAYS", default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub retention_days: u64,

    /// …and at most its newest N messages, whichever is fewer
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=20_000))]
    pub retention_messages: u64,

    /// Catch up with a topic peer again every SECONDS while connected (besides
    /// at every new connection); 0: only at connection
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub sync_interval: u64,

    /// How long an undelivered direct message waits in the outbox, retried
    /// whenever its recipient is seen, before it fails with dm_failed (at most 82800 = 23 h)
    #[arg(long, value_name = "SECONDS", default_value_t = 43_200, value_parser = clap::value_parser!(u64).range(1..=82_800))]
    pub dm_expiry: u64,

    /// How durable inbox writes are. normal: a topic message is written
    /// without waiting for the disk (a killed process loses nothing it
    /// reported; a power cut may lose the last ones, and catch-up gets them
    /// back from the topic's other members), while direct messages and the
    /// outbox, which have no other copy, are fsynced. full: every write is
    /// fsynced
    #[arg(long, value_enum, default_value_t = SyncWrites::Normal, value_name = "MODE")]
    pub sync_writes: SyncWrites,

    /// Read the passphrase that seals the identity key and keyring (Argon2id,
    /// AES-256-GCM) from this file: its content without a final newline.
    /// MURMUR_PASSPHRASE in the environment does the same. Without a
    /// passphrase the keys are protected by file permissions (0600) only
    #[arg(long, value_name = "PATH")]
    pub passphrase_file: Option<PathBuf>,

    /// How long a topic's epoch left behind by a rekey is still read, in
    /// seconds (tests; default 600)
    #[arg(long, hide = true, value_name = "SECONDS", default_value_t = 600)]
    pub rekey_grace: u64,

    /// Benchmark baseline: no encryption and no inbox (used by `murmur bench --plain --procs`)
    #[arg(long, hide = true)]
    pub bench_plain: bool,

    /// Print one JSON object per line on stdout, one per event, and nothing else
    #[arg(long, global = true)]
    pub json: bool,
}

/// `--sync-writes`: how durable inbox writes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncWrites {
    /// Topic messages are not fsynced; DMs and the outbox are.
    Normal,
    /// Every write is fsynced.
    Full,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Subcommand {
    /// Check what LAN discovery needs on this machine: interfaces with
    /// multicast, whether mDNS queries go out and answers come back, the
    /// addresses peers can dial; with --bootstrap, what reaching peers
    /// beyond the LAN needs: the bootstrap nodes answer, reachability
    /// (AutoNAT), a relay reservation; with advice when something is missing.
    /// (Sends mDNS queries on every non-loopback interface.)
    Doctor {
        /// How long to listen for mDNS answers
        #[arg(long, default_value_t = 3, value_name = "SECONDS")]
        seconds: u64,
        /// Check the WAN through this bootstrap node (as for a node: a
        /// multiaddr ending in /p2p/<peer id>, or `ipfs`); repeatable
        #[arg(long, value_name = "MULTIADDR|ipfs")]
        bootstrap: Vec<String>,
        /// As for a node: private addresses count as reachable (test networks)
        #[arg(long)]
        private_wan: bool,
        /// How long the WAN checks may take, at most
        #[arg(long, default_value_t = 20, value_name = "SECONDS")]
        wan_seconds: u64,
    },
    /// Swarm benchmark: start real nodes on loopback, publish from one, and
    /// print delivery, latency, throughput, memory and CPU as one JSON line
    /// (see docs/performance.md)
    Bench(crate::bench::BenchArgs),
    /// Print shell completions for bash, zsh or fish, e.g.
    /// `murmur completions bash > ~/.local/share/bash-completion/completions/murmur`
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `murmur man > ~/.local/share/man/man1/murmur.1`
    Man,
}

impl Cli {
    /// Resolves the arguments (and MURMUR_PASSPHRASE) into a node [`Config`].
    ///
    /// # Errors
    /// A `--topic` value with an empty name or secret; a passphrase that is
    /// empty, unreadable, or given both ways.
    pub fn config(&self) -> Result<Config, String> {
        let passphrase = resolve_passphrase(self.passphrase_file.as_deref(), std::env::var_os(PASSPHRASE_ENV))?;
        let name = self.name.clone().unwrap_or_else(default_name);
        let data_dir = self.data_dir.clone().unwrap_or_else(|| default_data_dir(&name));
        let mut topics = Vec::new();
        for t in &self.topic {
            let (topic, secret) = match t.split_once('=') {
                Some((topic, "")) => return Err(format!("--topic {topic}=: the secret after '=' is empty")),
                Some((topic, secret)) => (topic, Some(secret.to_owned())),
                None => (t.as_str(), None),
            };
            crate::commands::validate_topic(topic).map_err(|e| format!("--topic {t:?}: {e}"))?;
            topics.push((topic.to_owned(), secret));
        }
        let mut bootstrap = Vec::new();
        for value in &self.bootstrap {
            bootstrap.extend(crate::config::parse_bootstrap(value)?);
        }
        Ok(Config {
            name,
            data_dir,
            listen: if self.listen.is_empty() {
                default_listen()
            } else {
                self.listen.clone()
            },
            peers: self.peer.clone(),
            topics,
            mdns: !self.no_mdns,
            bootstrap,
            external_addrs: self.external_addr.clone(),
            relay_server: self.relay_server,
            upnp: self.upnp,
            private_wan: self.private_wan,
            passphrase,
            plain: self.bench_plain,
            retention: crate::config::Retention {
                max_age_ms: self.retention_days * 24 * 60 * 60 * 1000,
                max_messages: self.retention_messages as usize,
            },
            sync_interval: (self.sync_interval > 0).then(|| std::time::Duration::from_secs(self.sync_interval)),
            dm_expiry: std::time::Duration::from_secs(self.dm_expiry),
            rekey_grace: std::time::Duration::from_secs(self.rekey_grace),
            durability: match self.sync_writes {
                SyncWrites::Normal => crate::config::Durability::Network,
                SyncWrites::Full => crate::config::Durability::Full,
            },
        })
    }
}

/// An address to serve on (`--api`, `--metrics`): `IP:PORT`, `[IPv6]:PORT`
/// or `localhost:PORT` (127.0.0.1), never a name to look up.
fn parse_listen_addr(value: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(addr) = value.parse() {
        return Ok(addr);
    }
    if let Some(port) = value.strip_prefix("localhost:") {
        return port
            .parse::<u16>()
            .map(|port| std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .map_err(|_| format!("{port:?} is not a port (0 to 65535)"));
    }
    if value.parse::<std::net::IpAddr>().is_ok() || value == "localhost" {
        return Err(format!("it needs a port, e.g. {value}:8080"));
    }
    Err("expected IP:PORT, e.g. 127.0.0.1:8080 (or localhost:8080)".to_owned())
}

/// The passphrase from `--passphrase-file` or the value of MURMUR_PASSPHRASE, if either.
fn resolve_passphrase(file: Option<&Path>, env: Option<OsString>) -> Result<Option<Passphrase>, String> {
    match (file, env) {
        (Some(_), Some(_)) => Err(format!(
            "both --passphrase-file and {PASSPHRASE_ENV} are set\nhint: give the passphrase one way"
        )),
        (Some(path), None) => Passphrase::from_file(path)
            .map(Some)
            .map_err(|e| format!("--passphrase-file: {e}")),
        (None, Some(value)) => {
            let text = value
                .into_string()
                .map_err(|_| format!("{PASSPHRASE_ENV} is not valid UTF-8"))?;
            Passphrase::new(text, &format!("in {PASSPHRASE_ENV}"))
                .map(Some)
                .map_err(|e| e.to_string())
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn listen_addresses_take_localhost_and_say_what_is_missing() {
        assert_eq!(
            parse_listen_addr("127.0.0.1:8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(parse_listen_addr("localhost:0").unwrap().to_string(), "127.0.0.1:0");
        assert_eq!(parse_listen_addr("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert!(parse_listen_addr("127.0.0.1")
            .unwrap_err()
            .contains("needs a port, e.g. 127.0.0.1:8080"));
        assert!(parse_listen_addr("localhost").unwrap_err().contains("needs a port"));
        assert!(parse_listen_addr("localhost:99999").unwrap_err().contains("not a port"));
        assert!(parse_listen_addr("example.org:80")
            .unwrap_err()
            .contains("expected IP:PORT"));
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn topics_parse() {
        let cli = Cli::parse_from(["murmur", "--name", "a", "--topic", "news=s3=cret", "--topic", "open"]);
        let c = cli.config().unwrap();
        assert_eq!(
            c.topics,
            vec![("news".into(), Some("s3=cret".into())), ("open".into(), None)]
        );
        assert!(c.mdns);
        assert!(Cli::parse_from(["murmur", "--topic", "x="]).config().is_err());
        assert!(Cli::parse_from(["murmur", "--topic", "=y"]).config().is_err());
    }

    #[test]
    fn the_passphrase_comes_from_one_place_and_is_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pass");
        std::fs::write(&file, "from-the-file\n").unwrap();
        assert!(resolve_passphrase(None, None).unwrap().is_none());
        let p = resolve_passphrase(None, Some("from-the-env".into())).unwrap().unwrap();
        assert_eq!(format!("{p:?}"), "***");
        assert!(resolve_passphrase(Some(&file), None).unwrap().is_some());
        let both = resolve_passphrase(Some(&file), Some("x".into())).unwrap_err();
        assert!(both.contains("both"), "{both}");
        let empty = resolve_passphrase(None, Some("".into())).unwrap_err();
        assert!(empty.contains("MURMUR_PASSPHRASE is empty"), "{empty}");
        let missing = resolve_passphrase(Some(&dir.path().join("nope")), None).unwrap_err();
        assert!(missing.starts_with("--passphrase-file: "), "{missing}");
        let mut config = Config::loopback("a", dir.path());
        config.passphrase = resolve_passphrase(None, Some("from-the-env".into())).unwrap();
        assert!(!format!("{config:?}").contains("from-the-env"));
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--passphrase-file") && help.contains("MURMUR_PASSPHRASE"));
    }
}
