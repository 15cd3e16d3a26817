//! Reachability: the addresses at which others can dial this node
//! (`--external-addr`, UPnP mappings, what AutoNAT confirmed, relay
//! circuits), AutoNAT's verdict, the `nat_status` event, and the DHT mode
//! that follows (a server when reachable, a client behind NAT).

use std::collections::BTreeSet;

use libp2p::{autonat, kad, upnp, Multiaddr, PeerId};

use super::dht::is_circuit;
use super::EventLoop;
use crate::event::Event;

/// What this node knows of its reachability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// Peers dialled us back, or the user declared an external address.
    Public,
    /// Behind NAT or a firewall.
    Private,
    /// Not known yet.
    Unknown,
}

impl Reachability {
    /// The name in `nat_status` events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Unknown => "unknown",
        }
    }
}

/// Reachability state.
pub(super) struct Nat {
    reachability: Reachability,
    /// Declared reachable (`--external-addr`, `--relay-server`): a DHT server from the start.
    declared: bool,
    /// `--private-wan`: AutoNAT asks only the servers named to it.
    private_wan: bool,
    /// Confirmed external addresses, as last reported in `nat_status`.
    reported: BTreeSet<Multiaddr>,
    /// Peers named to AutoNAT as servers.
    servers: BTreeSet<PeerId>,
}

impl Nat {
    pub(super) fn new(declared: bool, private_wan: bool) -> Self {
        Self {
            reachability: if declared {
                Reachability::Public
            } else {
                Reachability::Unknown
            },
            declared,
            private_wan,
            reported: BTreeSet::new(),
            servers: BTreeSet::new(),
        }
    }

    /// Whether peers can dial this node directly.
    pub(super) fn is_public(&self) -> bool {
        self.reachability == Reachability::Public
    }

    /// What is known now.
    pub(super) fn reachability(&self) -> Reachability {
        self.reachability
    }

    /// Whether private addresses count as reachable (`--private-wan`).
    pub(super) fn private_wan(&self) -> bool {
        self.private_wan
    }
}

fn from_autonat(status: &autonat::NatStatus) -> Reachability {
    match status {
        autonat::NatStatus::Public(_) => Reachability::Public,
        autonat::NatStatus::Private => Reachability::Private,
        autonat::NatStatus::Unknown => Reachability::Unknown,
    }
}

impl EventLoop {
    /// Declares the `--external-addr` addresses; a declared node serves the DHT.
    pub(super) fn start_nat(&mut self, external: &[Multiaddr]) {
        for addr in external {
            self.swarm.add_external_address(addr.clone());
        }
        if self.nat.declared {
            if let Some(kad) = self.kad() {
                kad.set_mode(Some(kad::Mode::Server));
            }
        }
    }

    /// On a `--private-wan` test network only named peers (bootstrap nodes,
    /// relays) are asked to dial us back: a LAN neighbour always could.
    pub(super) fn nat_server_found(&mut self, peer: PeerId, addr: &Multiaddr) {
        if self.nat.private_wan && self.nat.servers.insert(peer) {
            self.swarm.behaviour_mut().autonat.add_server(peer, Some(addr.clone()));
        }
    }

    pub(super) fn on_autonat(&mut self, event: autonat::Event) {
        match event {
            autonat::Event::StatusChanged { old, new } => {
                tracing::info!(?old, ?new, "reachability changed");
                // AutoNAT never withdraws an address it confirmed.
                if let (autonat::NatStatus::Public(addr), false) = (&old, matches!(new, autonat::NatStatus::Public(_)))
                {
                    self.swarm.remove_external_address(addr);
                }
                if !self.nat.declared {
                    self.nat.reachability = from_autonat(&new);
                    let mode = if self.nat.is_public() {
                        kad::Mode::Server
                    } else {
                        kad::Mode::Client
                    };
                    if let Some(kad) = self.kad() {
                        kad.set_mode(Some(mode));
                    }
                }
                self.report_nat(true);
                self.reserve_relays();
            }
            autonat::Event::OutboundProbe(e) => tracing::debug!(?e, "autonat probe"),
            autonat::Event::InboundProbe(e) => tracing::trace!(?e, "autonat probe from a peer"),
        }
    }

    pub(super) fn on_upnp(&mut self, event: upnp::Event) {
        match event {
            upnp::Event::NewExternalAddr { external_addr, .. } => {
                tracing::info!(%external_addr, "the router mapped a port (UPnP)")
            }
            upnp::Event::ExpiredExternalAddr { external_addr, .. } => {
                tracing::info!(%external_addr, "a UPnP port mapping expired")
            }
            upnp::Event::GatewayNotFound => tracing::info!("no UPnP router found"),
            upnp::Event::NonRoutableGateway => {
                tracing::info!("the UPnP router's own address is not public: no mapping made")
            }
        }
    }

    /// An address others can dial was confirmed or withdrawn (a relay
    /// circuit, AutoNAT, UPnP): announce again with the new set.
    pub(super) fn external_addrs_changed(&mut self) {
        self.report_nat(false);
        self.announce_all();
    }

    /// Emits `nat_status` when the reachability (`changed`) or the set of
    /// confirmed addresses changed since the last report.
    fn report_nat(&mut self, changed: bool) {
        let addrs: BTreeSet<Multiaddr> = self.swarm.external_addresses().cloned().collect();
        if !changed && addrs == self.nat.reported {
            return;
        }
        self.nat.reported = addrs.clone();
        self.emit(Event::NatStatus {
            reachability: self.nat.reachability().as_str().into(),
            addrs: addrs.iter().map(ToString::to_string).collect(),
        });
    }

    /// An address identify saw us at: candidates feed AutoNAT and DCUtR by
    /// themselves; this only logs the usable ones.
    pub(super) fn on_external_candidate(&mut self, addr: &Multiaddr) {
        let usable = !is_circuit(addr)
            && addr.iter().any(|p| {
                matches!(
                    p,
                    libp2p::multiaddr::Protocol::Ip4(_) | libp2p::multiaddr::Protocol::Ip6(_)
                )
            });
        if usable {
            tracing::debug!(%addr, "peers see us at this address");
        }
    }
}
