//! Two in-process murmur nodes on loopback exchange an encrypted topic message
//! and a direct message through the library API.
//!
//! Run with: `cargo run --example two_nodes`

use std::sync::Arc;
use std::time::Duration;

use murmur::{Config, Event, Node};
use tokio::sync::broadcast;

/// The next event matching `pred` (events are shared: `Arc<Event>`).
async fn wait_for(rx: &mut broadcast::Receiver<Arc<Event>>, pred: impl Fn(&Event) -> bool) -> anyhow::Result<Event> {
    Ok(tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let event = rx.recv().await?;
            if pred(&event) {
                return Ok::<_, broadcast::error::RecvError>(Event::clone(&event));
            }
        }
    })
    .await??)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;

    // Alice listens on loopback; mDNS stays off (Config::loopback).
    let (alice, mut alice_events, alice_task) =
        Node::start_with_events(Config::loopback("alice", dir.path().join("alice"))).await?;
    let Event::Listening { addr } = wait_for(&mut alice_events, |e| matches!(e, Event::Listening { .. })).await? else {
        unreachable!()
    };
    println!("alice listens on {addr}");

    // Bob dials Alice and joins the same secret topic.
    let mut config = Config::loopback("bob", dir.path().join("bob"));
    config.peers.push(addr.parse()?);
    config.topics.push(("news".into(), Some("s3cret".into())));
    let (bob, mut bob_events, bob_task) = Node::start_with_events(config).await?;

    alice.subscribe("news", Some("s3cret")).await?;
    let published = alice.publish("news", "hello from alice").await?;
    println!("alice published {} (queued: {})", published.id, published.queued);
    let message = wait_for(&mut bob_events, |e| matches!(e, Event::Message { .. })).await?;
    println!("bob got: {}", message.to_human());

    let sent = bob.dm(&alice.peer_id().to_string(), "hi alice").await?;
    println!("bob's direct message {} was acknowledged: {}", sent.id, !sent.queued);
    let dm = wait_for(&mut alice_events, |e| matches!(e, Event::Dm { .. })).await?;
    println!("alice got: {}", dm.to_human());

    for item in bob.inbox(None, None, 10).await? {
        println!(
            "bob's inbox: [{}] {}: {}",
            item.topic.as_deref().unwrap_or("dm"),
            item.from,
            item.msg
        );
    }
    alice.shutdown().await;
    bob.shutdown().await;
    alice_task.await?;
    bob_task.await?;
    Ok(())
}
