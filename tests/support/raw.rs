//! Bare libp2p peers for tests that play a misbehaving or foreign peer (a
//! stranger asking for catch-up, a replayer): same transport as murmur
//! (TCP + Noise + Yamux), only the behaviour the test needs.

use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, Swarm};

/// A swarm with identity `key` running `behaviour`.
pub fn swarm<B: NetworkBehaviour>(key: Keypair, behaviour: impl FnOnce(&Keypair) -> B) -> Swarm<B> {
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .expect("tcp transport")
        .with_behaviour(|k| behaviour(k))
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Dials `addr` (which ends in `/p2p/<id>`) and waits for the connection; returns the peer id.
pub async fn connect<B: NetworkBehaviour>(swarm: &mut Swarm<B>, addr: &str) -> PeerId {
    let addr: Multiaddr = addr.parse().expect("multiaddr");
    let peer = addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .expect("address ends in /p2p/<id>");
    swarm.dial(addr).expect("dial");
    loop {
        if let SwarmEvent::ConnectionEstablished { peer_id, .. } = swarm.select_next_some().await {
            if peer_id == peer {
                return peer;
            }
        }
    }
}
