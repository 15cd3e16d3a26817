//! `murmur bench --catchup`: how long a node that missed `--messages`
//! messages takes to catch up from one peer, and how many bytes the
//! exchange costs beyond the envelopes themselves.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{body, start_inproc, BenchArgs, Started, SECRET, TOPIC};
use crate::{Config, Event, Node};

/// The result line of a catch-up run.
#[derive(Debug, Serialize)]
pub struct CatchupReport {
    /// `"catchup"`.
    pub mode: &'static str,
    /// Messages the late node missed.
    pub messages: usize,
    /// Body size.
    pub size: usize,
    /// Messages the late node stored by catch-up.
    pub received: u64,
    /// From the late node's connection to its `synced` event.
    pub seconds: f64,
    /// Bytes of the envelopes it received.
    pub envelope_bytes: u64,
    /// Bytes of every `/murmur/sync/1` frame it read or wrote (both directions of the exchange).
    pub frame_bytes: u64,
    /// `(frame_bytes - envelope_bytes) / envelope_bytes`.
    pub overhead_ratio: f64,
}

/// The value of one counter in a node's metrics.
fn counter(node: &Node, name: &str) -> u64 {
    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, &node.registry());
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

async fn start(dir: &std::path::Path, name: &str, peer: Option<&str>) -> anyhow::Result<Started> {
    let mut config = Config::loopback(name, dir.join(name));
    config.topics.push((TOPIC.into(), Some(SECRET.into())));
    config.sync_interval = None;
    if let Some(peer) = peer {
        config.peers.push(peer.parse()?);
    }
    start_inproc(config).await
}

/// Node A publishes `--messages` messages (node B is there so they go out
/// live); then a fresh node C connects to A only and catches up.
///
/// # Errors
/// When a node cannot start or the catch-up does not finish within a minute.
pub async fn run(args: &BenchArgs) -> anyhow::Result<CatchupReport> {
    let dir = tempfile::Builder::new().prefix("murmur-bench-catchup-").tempdir()?;
    let a = start(dir.path(), "a", None).await?;
    let (a_addr, a) = (a.addr, a.node);
    let _b = start(dir.path(), "b", Some(&a_addr)).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.topic_peers().await?.subscribed.get(TOPIC).copied().unwrap_or(0) == 0 {
        anyhow::ensure!(Instant::now() < deadline, "the helper node never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut pending = Vec::with_capacity(args.messages);
    for i in 0..args.messages {
        pending.push(a.submit_publish(TOPIC, &body(i, args.size)).await?);
        if pending.len() >= 512 {
            for p in pending.drain(..) {
                p.await?;
            }
        }
    }
    for p in pending {
        p.await?;
    }

    let Started {
        node: c,
        mut events,
        mut connected,
        ..
    } = start(dir.path(), "c", Some(&a_addr)).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let received = loop {
        let event = tokio::time::timeout_at(deadline.into(), events.recv()).await?;
        match event.as_deref() {
            Ok(Event::PeerConnected { .. }) => connected = connected.or(Some(Instant::now())),
            Ok(Event::Synced { received, .. }) if *received > 0 || args.messages == 0 => break *received,
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(e) => return Err(anyhow::anyhow!("{e}")),
        }
    };
    let seconds = connected.map_or(0.0, |t| t.elapsed().as_secs_f64());
    let envelope_bytes = counter(&c, "murmur_sync_envelope_bytes_total");
    let frame_bytes =
        counter(&c, "murmur_sync_frame_bytes_in_total") + counter(&c, "murmur_sync_frame_bytes_out_total");
    Ok(CatchupReport {
        mode: "catchup",
        messages: args.messages,
        size: args.size,
        received,
        seconds,
        envelope_bytes,
        frame_bytes,
        overhead_ratio: if envelope_bytes > 0 {
            frame_bytes.saturating_sub(envelope_bytes) as f64 / envelope_bytes as f64
        } else {
            0.0
        },
    })
}
