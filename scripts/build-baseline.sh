#!/usr/bin/env bash
# Cold release build of murmur beside that of a plain libp2p chat node (the
# rust-libp2p chat example's dependencies: tokio, gossipsub, mDNS, noise,
# TCP, yamux, QUIC; a small node of our own over them), on this machine, one
# after the other, each into an empty target directory, with the libp2p
# version and the crate versions of murmur's Cargo.lock. A cold build's time
# depends on the machine (on these 2-core machines it has varied 2×), so
# murmur's is read against the baseline's, measured minutes apart.
# Prints one line per build and, last, one JSON line:
# {"baseline_s", "murmur_s", "ratio"}.
# Usage: scripts/build-baseline.sh   (takes 6–12 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

libp2p=$(grep -m1 '^libp2p = ' Cargo.toml | sed -E 's/.*version = "([^"]+)".*/\1/')
mkdir -p "$work/chat/src"
cat > "$work/chat/Cargo.toml" <<EOF
[package]
name = "chat-baseline"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
tokio = { version = "1", features = ["full"] }
futures = "0.3"
libp2p = { version = "$libp2p", features = ["tokio", "gossipsub", "mdns", "noise", "macros", "tcp", "yamux", "quic"] }

[workspace]
EOF
cat > "$work/chat/src/main.rs" <<'EOF'
//! A plain gossipsub chat node over mDNS: lines from stdin go to one topic.
use futures::StreamExt;
use libp2p::{gossipsub, mdns, noise, swarm::NetworkBehaviour, swarm::SwarmEvent, tcp, yamux};
use tokio::io::AsyncBufReadExt;

#[derive(NetworkBehaviour)]
struct Chat {
    gossipsub: gossipsub::Behaviour,
    mdns: mdns::tokio::Behaviour,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
        .with_quic()
        .with_behaviour(|key| {
            let gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossipsub::Config::default(),
            )?;
            let mdns = mdns::tokio::Behaviour::new(mdns::Config::default(), key.public().to_peer_id())?;
            Ok(Chat { gossipsub, mdns })
        })?
        .build();
    let topic = gossipsub::IdentTopic::new("chat");
    swarm.behaviour_mut().gossipsub.subscribe(&topic)?;
    swarm.listen_on("/ip4/0.0.0.0/tcp/0".parse()?)?;
    swarm.listen_on("/ip4/0.0.0.0/udp/0/quic-v1".parse()?)?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            Ok(Some(line)) = lines.next_line() => {
                if let Err(e) = swarm.behaviour_mut().gossipsub.publish(topic.clone(), line) {
                    eprintln!("publish: {e}");
                }
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(ChatEvent::Mdns(mdns::Event::Discovered(found))) => {
                    for (peer, addr) in found {
                        swarm.behaviour_mut().gossipsub.add_explicit_peer(&peer);
                        let _ = swarm.dial(addr);
                    }
                }
                SwarmEvent::Behaviour(ChatEvent::Gossipsub(gossipsub::Event::Message { message, .. })) => {
                    println!("{}", String::from_utf8_lossy(&message.data));
                }
                _ => {}
            },
        }
    }
}
EOF
cp Cargo.lock "$work/chat/Cargo.lock"

# Fetch both dependency trees first, so neither timing includes downloads.
(cd "$work/chat" && cargo fetch --quiet)
cargo fetch --quiet

timed() { # label dir -> seconds of a cold `cargo build --release` in dir
  local start end
  start=$(date +%s.%N)
  (cd "$2" && CARGO_TARGET_DIR="$work/target-$1" cargo build --release --quiet)
  end=$(date +%s.%N)
  rm -rf "$work/target-$1"
  python3 -c "print(round($end - $start, 1))"
}
base=$(timed baseline "$work/chat")
echo "plain libp2p chat node (libp2p $libp2p): ${base} s" >&2
mine=$(timed murmur "$root")
echo "murmur: ${mine} s" >&2
python3 -c "import json; print(json.dumps({'baseline_s': $base, 'murmur_s': $mine, 'ratio': round($mine / $base, 2)}))"
