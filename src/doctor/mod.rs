//! `murmur doctor`: what LAN discovery depends on, checked on this machine —
//! interfaces with multicast, whether mDNS queries go out and answers come
//! back, the addresses peers could dial — with advice when something is
//! missing; with `--bootstrap`, the WAN too ([`wan`]).
//!
//! It sends mDNS queries on every non-loopback interface, like a node does.

pub mod wan;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{mdns, noise, tcp, yamux, Multiaddr, Swarm};
use serde::Serialize;

/// One network interface with an IPv4 address.
#[derive(Debug, Clone, Serialize)]
pub struct Interface {
    /// Its name (`eth0`, `wlan0`…).
    pub name: String,
    /// Its IPv4 address.
    pub addr: Ipv4Addr,
    /// Up.
    pub up: bool,
    /// Loopback (mDNS skips these).
    pub loopback: bool,
    /// Multicast enabled.
    pub multicast: bool,
}

impl Interface {
    /// Whether mDNS can use it.
    pub fn usable(&self) -> bool {
        self.up && self.multicast && !self.loopback
    }
}

/// What the doctor found.
#[derive(Debug, Serialize)]
pub struct Report {
    /// IPv4 interfaces.
    pub interfaces: Vec<Interface>,
    /// A second probe node in this process heard the first one's query and
    /// answered (multicast goes out and comes back on this machine).
    pub local_loop: bool,
    /// Peers on other hosts that answered, with their addresses.
    pub remote_peers: BTreeMap<String, Vec<String>>,
    /// Addresses a node here listens on (with system-chosen ports).
    pub listen_addrs: Vec<String>,
    /// What to do about what is missing.
    pub advice: Vec<String>,
    /// The WAN checks, when bootstrap nodes were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wan: Option<wan::WanReport>,
}

/// The machine's IPv4 interfaces (Unix; empty elsewhere).
pub fn interfaces() -> Vec<Interface> {
    #[cfg(unix)]
    {
        let mut out = Vec::new();
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        // SAFETY: getifaddrs fills `head` with a list we free with freeifaddrs;
        // we only read fields of entries it returned, while the list is alive.
        unsafe {
            if libc::getifaddrs(&mut head) != 0 {
                return out;
            }
            let mut cur = head;
            while !cur.is_null() {
                let ifa = &*cur;
                if !ifa.ifa_addr.is_null() && i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    let addr = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                    let name = std::ffi::CStr::from_ptr(ifa.ifa_name).to_string_lossy().into_owned();
                    let flags = ifa.ifa_flags as i32;
                    out.push(Interface {
                        name,
                        addr,
                        up: flags & libc::IFF_UP != 0,
                        loopback: flags & libc::IFF_LOOPBACK != 0,
                        multicast: flags & libc::IFF_MULTICAST != 0,
                    });
                }
                cur = ifa.ifa_next;
            }
            libc::freeifaddrs(head);
        }
        out
    }
    #[cfg(not(unix))]
    {
        Vec::new()
    }
}

fn probe_swarm() -> Result<Swarm<mdns::tokio::Behaviour>, String> {
    let config = mdns::Config {
        query_interval: Duration::from_millis(500),
        ..Default::default()
    };
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .map_err(|e| e.to_string())?
        .with_behaviour(|key| {
            mdns::tokio::Behaviour::new(config, key.public().to_peer_id())
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .map_err(|e| e.to_string())?
        .build();
    swarm
        .listen_on("/ip4/0.0.0.0/tcp/0".parse().expect("valid address"))
        .map_err(|e| e.to_string())?;
    Ok(swarm)
}

/// Runs the checks, listening for mDNS answers for `wait`; with `bootstrap`
/// nodes, then the WAN checks ([`wan::check`]) for up to `wan_wait`.
///
/// # Errors
/// When the probe nodes cannot start (no mDNS socket, for instance).
pub async fn run(
    wait: Duration,
    bootstrap: Vec<Multiaddr>,
    private_wan: bool,
    wan_wait: Duration,
) -> Result<Report, String> {
    let mut report = run_lan(wait).await?;
    if !bootstrap.is_empty() {
        let wan = wan::check(bootstrap, private_wan, wan_wait).await?;
        report.advice.extend(wan.advice.iter().cloned());
        report.wan = Some(wan);
    }
    Ok(report)
}

/// The LAN checks: interfaces, mDNS out and back, dialable addresses.
async fn run_lan(wait: Duration) -> Result<Report, String> {
    let interfaces = interfaces();
    let local_ips: BTreeSet<Ipv4Addr> = interfaces.iter().map(|i| i.addr).collect();
    let mut probe = probe_swarm()?;
    let mut echo = probe_swarm()?;
    let echo_id = *echo.local_peer_id();
    let mut listen_addrs = Vec::new();
    let mut remote_peers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut local_loop = false;
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::select! {
            event = probe.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => listen_addrs.push(address.to_string()),
                SwarmEvent::Behaviour(mdns::Event::Discovered(found)) => {
                    for (peer, addr) in found {
                        if peer == echo_id {
                            local_loop = true;
                        } else if !is_local(&addr, &local_ips) {
                            remote_peers.entry(peer.to_string()).or_default().push(addr.to_string());
                        }
                    }
                }
                _ => {}
            },
            _ = echo.select_next_some() => {}
            () = tokio::time::sleep(left) => break,
        }
    }
    let mut report = Report {
        interfaces,
        local_loop,
        remote_peers,
        listen_addrs,
        advice: Vec::new(),
        wan: None,
    };
    report.advice = advice(&report);
    Ok(report)
}

fn is_local(addr: &Multiaddr, local: &BTreeSet<Ipv4Addr>) -> bool {
    addr.iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::Ip4(ip) if local.contains(&ip)))
}

fn advice(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    if !r.interfaces.iter().any(Interface::usable) {
        out.push(
            "no interface is up with multicast besides loopback: mDNS cannot work here; \
             connect to a LAN, or dial peers with --peer /ip4/ADDR/tcp/PORT/p2p/PEERID"
                .into(),
        );
    } else if !r.local_loop {
        out.push(
            "mDNS queries did not come back on this machine: a firewall may block UDP port 5353 \
             (e.g. `ufw allow 5353/udp`, or allow mDNS in firewalld) or multicast is filtered"
                .into(),
        );
    }
    if r.remote_peers.is_empty() {
        out.push(
            "no other host answered: if murmur runs elsewhere on this LAN, check that both hosts are on \
             the same subnet, that the Wi-Fi does not isolate clients, that no VPN captures the traffic, \
             and that neither side runs in a Docker bridge network (use --network host); otherwise use --peer"
                .into(),
        );
    }
    if std::path::Path::new("/.dockerenv").exists() {
        out.push(
            "this looks like a Docker container: mDNS only crosses a bridge network between containers on it".into(),
        );
    }
    out
}

impl Report {
    /// The human-readable report.
    pub fn to_human(&self) -> String {
        let mut s = String::from("interfaces (IPv4):\n");
        for i in &self.interfaces {
            let state = if i.loopback {
                "loopback: mDNS skips it"
            } else if !i.up {
                "down"
            } else if !i.multicast {
                "up, NO multicast"
            } else {
                "up, multicast: usable for mDNS"
            };
            s.push_str(&format!("  {:<12} {:<15} {state}\n", i.name, i.addr));
        }
        s.push_str(&format!(
            "mDNS on this machine: {}\n",
            if self.local_loop {
                "queries go out and answers come back"
            } else {
                "no answer came back"
            }
        ));
        if self.remote_peers.is_empty() {
            s.push_str("peers on other hosts: none answered\n");
        } else {
            s.push_str("peers on other hosts:\n");
            for (peer, addrs) in &self.remote_peers {
                s.push_str(&format!("  {peer} at {}\n", addrs.join(", ")));
            }
        }
        s.push_str(
            "addresses peers can dial here (port chosen at start; fix it with --listen /ip4/0.0.0.0/tcp/4001):\n",
        );
        for a in &self.listen_addrs {
            s.push_str(&format!("  {a}\n"));
        }
        if let Some(wan) = &self.wan {
            s.push_str(&wan.to_human());
        }
        if self.advice.is_empty() {
            s.push_str("all good: LAN discovery should work\n");
        } else {
            s.push_str("advice:\n");
            for a in &self.advice {
                s.push_str(&format!("  - {a}\n"));
            }
        }
        s
    }
}
