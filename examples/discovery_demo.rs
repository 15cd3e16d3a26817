//! Prints peers as mDNS finds them on the LAN (and as they connect and leave).
//!
//! Run it on two machines of one LAN (or in two namespaces of the test LAN,
//! see docs/lan.md): `cargo run --example discovery_demo -- NAME`.
//! mDNS multicasts on every non-loopback interface: run it only on a network
//! where that is welcome.

use murmur::{Config, Event, Node};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let name = std::env::args().nth(1).unwrap_or_else(murmur::config::default_name);
    let dir = tempfile::tempdir()?;
    // Default listen addresses (TCP and QUIC on every interface) and mDNS on.
    let (node, mut events, task) = Node::start_with_events(Config::new(name.clone(), dir.path())).await?;
    println!("{name} is {}; waiting for peers (Ctrl-C to stop)", node.peer_id());
    let start = std::time::Instant::now();
    loop {
        tokio::select! {
            event = events.recv() => {
                let e = event?;
                if matches!(*e, Event::PeerDiscovered { .. } | Event::PeerConnected { .. } | Event::PeerDisconnected { .. } | Event::Listening { .. }) {
                    println!("{:>8.3}s  {}", start.elapsed().as_secs_f64(), e.to_human());
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    node.shutdown().await;
    task.await?;
    Ok(())
}
