//! `--metrics`: Prometheus metrics of a real node after real traffic.

mod support;

use support::http::get;
use support::{metric, temp, TestNode};

#[test]
fn metrics_count_what_happened() {
    let tmp = temp();
    let mut a = TestNode::start(
        "alice",
        &tmp.path().join("a"),
        &["--metrics", "127.0.0.1:0", "--topic", "news=s"],
    );
    let mut b = TestNode::start(
        "bob",
        &tmp.path().join("b"),
        &[
            "--metrics",
            "127.0.0.1:0",
            "--topic",
            "news=s",
            "--peer",
            &a.addr.clone(),
        ],
    );
    let addr = b.metrics_addr();
    b.wait_topic_peers("news", 1);
    for i in 0..3 {
        a.send(&format!("/pub news m{i}"));
        b.wait_event("message", |v| v["msg"] == format!("m{i}"));
    }
    b.send("/pub news from-bob");
    b.wait_event("published", |_| true);

    let r = get(&addr, "/metrics");
    assert_eq!(r.status, 200);
    let text = r.body;
    assert_eq!(metric(&text, "murmur_messages_delivered_total"), Some(3.0), "{text}");
    assert_eq!(metric(&text, "murmur_messages_received_total"), Some(3.0));
    assert_eq!(metric(&text, "murmur_messages_published_total"), Some(1.0));
    assert_eq!(metric(&text, "murmur_inbox_messages"), Some(4.0));
    assert_eq!(metric(&text, "murmur_peers"), Some(1.0));
    assert!(metric(&text, "gossipsub_mesh_peer_counts").is_some(), "{text}");
    assert!(text.contains("libp2p_swarm"), "{text}");
    // Topic names never appear, only ids.
    assert!(!text.contains("news"));
    let _ = a.seen_or_wait("metrics_listening");
}
