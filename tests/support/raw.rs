//! Bare libp2p peers for tests that play a misbehaving or foreign peer (a
//! stranger asking for catch-up, a replayer): same transport as murmur
//! (TCP + Noise + Yamux), only the behaviour the test needs.

use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{gossipsub, noise, tcp, yamux, Multiaddr, PeerId, Swarm};

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

/// Gossipsub as murmur runs it: anonymous messages (murmur's frames carry the
/// author's signature; gossipsub adds none), large enough for any frame.
pub fn anonymous_gossipsub() -> gossipsub::Behaviour {
    gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Anonymous,
        gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Anonymous)
            // Anonymous messages have no source and seqno, gossipsub's default id.
            .message_id_fn(|m| gossipsub::MessageId::from(murmur::crypto::sha256(&m.data).to_vec()))
            .max_transmit_size(128 * 1024)
            .build()
            .expect("gossipsub config"),
    )
    .expect("gossipsub behaviour")
}

/// As a fresh identity, connects to the node at `addr`, subscribes to
/// `wire_topic`, waits for the node's own subscription, publishes each of
/// `frames` as a gossip message and lets them travel for 1.5 s. Anyone can do
/// this: what it tests is what the node makes of frames it did not expect.
pub fn publish_frames(addr: &str, wire_topic: &str, frames: Vec<Vec<u8>>) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut swarm = swarm(Keypair::generate_ed25519(), |_| anonymous_gossipsub());
        let topic = gossipsub::IdentTopic::new(wire_topic);
        swarm.behaviour_mut().subscribe(&topic).expect("subscribe");
        let node = connect(&mut swarm, addr).await;
        tokio::time::timeout(super::WAIT, async {
            loop {
                if let SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, .. }) =
                    swarm.select_next_some().await
                {
                    if peer_id == node {
                        break;
                    }
                }
            }
        })
        .await
        .expect("the node's subscription");
        for frame in frames {
            swarm.behaviour_mut().publish(topic.clone(), frame).expect("publish");
        }
        let _ = tokio::time::timeout(Duration::from_millis(1500), async {
            loop {
                swarm.select_next_some().await;
            }
        })
        .await;
    });
}

/// A topic frame for `topic`/`secret` as of now, naming `sender` (and
/// `name`), carrying `body`, signed by `signer`: the signer's own message when
/// `sender` is the signer's peer id, a forgery otherwise.
pub fn topic_frame(topic: &str, secret: &str, signer: &Keypair, sender: PeerId, name: &str, body: &str) -> Vec<u8> {
    use murmur::envelope::{Envelope, Payload, Purpose};
    let keys = murmur::crypto::TopicKeys::derive(topic, secret);
    let now = murmur::clock::now_ms();
    let payload = Payload {
        seq: 1,
        name: name.into(),
        body: body.into(),
    };
    let envelope = Envelope::seal(&keys.key, Purpose::Topic, keys.id, sender, now, &payload).encode();
    murmur::signed::sign(signer, envelope)
}
