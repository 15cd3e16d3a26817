//! `murmur doctor --bootstrap …`: what reaching peers beyond the LAN depends
//! on, checked by running a short-lived node with a fresh identity: whether
//! the bootstrap nodes answer, what AutoNAT concludes about this network,
//! whether a relay holds a slot for it, with advice.

use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use serde::Serialize;

use crate::{Config, Event, Node};

/// One bootstrap node and whether it answered.
#[derive(Debug, Clone, Serialize)]
pub struct BootstrapCheck {
    /// Its address, as given.
    pub addr: String,
    /// Whether a connection to it opened.
    pub reachable: bool,
}

/// What the WAN checks found.
#[derive(Debug, Clone, Serialize)]
pub struct WanReport {
    /// The bootstrap nodes.
    pub bootstrap: Vec<BootstrapCheck>,
    /// AutoNAT's verdict: `public`, `private` or `unknown`.
    pub reachability: String,
    /// Addresses others can dial, as confirmed (public ones, relay circuits).
    pub external_addrs: Vec<String>,
    /// The relay that holds a slot for this node, and the circuit address.
    pub relay: Option<(String, String)>,
    /// What to do about what is missing.
    pub advice: Vec<String>,
}

/// Runs a node with `bootstrap` for at most `wait` (less once everything is
/// known) and reports what it saw.
///
/// # Errors
/// When the node cannot start.
pub async fn check(bootstrap: Vec<Multiaddr>, private_wan: bool, wait: Duration) -> Result<WanReport, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = Config::new("murmur-doctor", dir.path());
    config.mdns = false;
    config.bootstrap = bootstrap.clone();
    config.private_wan = private_wan;
    config.sync_interval = None;
    let (node, mut events, task) = Node::start_with_events(config).await.map_err(|e| e.to_string())?;
    let ids: Vec<String> = bootstrap
        .iter()
        .map(|a| match a.iter().last() {
            Some(Protocol::P2p(peer)) => peer.to_string(),
            _ => String::new(),
        })
        .collect();
    let mut report = WanReport {
        bootstrap: bootstrap
            .iter()
            .map(|a| BootstrapCheck {
                addr: a.to_string(),
                reachable: false,
            })
            .collect(),
        reachability: "unknown".into(),
        external_addrs: Vec::new(),
        relay: None,
        advice: Vec::new(),
    };
    let deadline = Instant::now() + wait;
    loop {
        let done = report.reachability == "public" || (report.reachability == "private" && report.relay.is_some());
        let left = deadline.saturating_duration_since(Instant::now());
        if done || left.is_zero() {
            break;
        }
        let event = match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(event)) => event,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(_)) | Err(_) => break,
        };
        match &*event {
            Event::PeerConnected { peer, .. } => {
                for (check, id) in report.bootstrap.iter_mut().zip(&ids) {
                    check.reachable |= id == peer;
                }
            }
            Event::NatStatus { reachability, addrs } => {
                report.reachability = reachability.clone();
                report.external_addrs = addrs.clone();
            }
            Event::RelayReserved { relay, addr } => report.relay = Some((relay.clone(), addr.clone())),
            _ => {}
        }
    }
    node.shutdown().await;
    let _ = task.await;
    report.advice = advice(&report);
    Ok(report)
}

fn advice(r: &WanReport) -> Vec<String> {
    let mut out = Vec::new();
    if !r.bootstrap.iter().any(|b| b.reachable) {
        out.push(
            "no bootstrap node answered: check the addresses (each ends in /p2p/<peer id>), that the hub runs, \
             and that outgoing TCP/UDP to its port is allowed; murmur still works on the LAN"
                .into(),
        );
        return out;
    }
    match (r.reachability.as_str(), &r.relay) {
        ("public", _) => out.push("reachable from outside: peers can dial this node directly".into()),
        (_, Some(_)) => out.push(
            "behind NAT: peers outside reach this node through its relay, and hole punching upgrades to a \
             direct connection where the NATs allow it (not through a NAT that maps every connection to a new \
             port; then the relay carries the traffic)"
                .into(),
        ),
        (_, None) => out.push(
            "no relay holds a slot for this node: peers outside cannot reach it unless it dials them; run a \
             hub with --relay-server, or forward a port (or try --upnp) and declare it with --external-addr"
                .into(),
        ),
    }
    if r.reachability == "unknown" {
        out.push(
            "reachability is still unknown: AutoNAT needs a peer with a public address to dial back \
             (on a test network of private addresses, use --private-wan)"
                .into(),
        );
    }
    out
}

impl WanReport {
    /// The human-readable part of the report.
    pub fn to_human(&self) -> String {
        let mut s = String::from("beyond the LAN:\n");
        for b in &self.bootstrap {
            let state = if b.reachable { "reachable" } else { "NOT reachable" };
            s.push_str(&format!("  bootstrap {} {state}\n", b.addr));
        }
        s.push_str(&format!("  reachability (AutoNAT): {}\n", self.reachability));
        for a in &self.external_addrs {
            s.push_str(&format!("  others can dial {a}\n"));
        }
        match &self.relay {
            Some((relay, addr)) => s.push_str(&format!("  relay {relay} holds a slot: {addr}\n")),
            None => s.push_str("  no relay reservation\n"),
        }
        s
    }
}
