//! Replays and forgeries sent by gossip.
//!
//! Replays: a captured valid frame (Alice's envelope and her signature), sent
//! again by anyone (gossipsub carries no signature of its own, so every check
//! of the frame passes) to a node restarted a minute later, an hour later (a
//! controllable clock: `MURMUR_TEST_CLOCK_OFFSET_MS`), more than 24 h later
//! and with its clock behind: never delivered or stored a second time; too
//! old or too far in the future, refused outright. Forgeries: a member's frame
//! in another member's name is dropped as `bad_signature`.

mod support;

use std::time::Duration;

use murmur::crypto::TopicKeys;
use support::http::get;
use support::{metric, temp, TestNode};

const MINUTE: i64 = 60_000;

/// Starts Bob with his clock shifted by `offset_ms`, replays `envelope` to him
/// from a stranger, and returns his metrics text and any `message` events.
fn replay_to_bob(dir: &std::path::Path, offset_ms: i64, envelope: &[u8]) -> (String, usize) {
    let offset = offset_ms.to_string();
    let mut bob = TestNode::start_with_env(
        "bob",
        dir,
        &["--metrics", "127.0.0.1:0"],
        &[(murmur::clock::CLOCK_OFFSET_ENV, &offset)],
    );
    let metrics_addr = bob.metrics_addr();
    let wire = TopicKeys::derive("news", "s3cret").wire_topic();
    support::raw::publish_frames(&bob.addr, &wire, vec![envelope.to_vec()]);
    let messages = bob
        .drain_for(Duration::from_millis(200))
        .iter()
        .filter(|v| v["event"] == "message")
        .count()
        + bob.seen.iter().filter(|v| v["event"] == "message").count();
    let text = get(&metrics_addr, "/metrics").body;
    assert_eq!(bob.inbox("news 10").len(), 1, "bob's inbox changed");
    bob.quit();
    (text, messages)
}

#[test]
fn a_replayed_envelope_is_never_delivered_twice_and_old_or_future_ones_are_refused() {
    let tmp = temp();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let topic = ["--topic", "news=s3cret"];
    let mut a = TestNode::start("alice", &a_dir, &topic);
    let mut b = TestNode::start("bob", &b_dir, &[&topic[..], &["--peer", &a.addr.clone()]].concat());
    b.wait_topic_peers("news", 1);
    a.send("/pub news the original");
    b.wait_event("message", |v| v["msg"] == "the original");
    a.quit();
    b.quit();

    // What an eavesdropper would replay: the signed frame as sent.
    let db = rusqlite::Connection::open(a_dir.join("inbox.sqlite3")).unwrap();
    let envelope: Vec<u8> = db
        .query_row("SELECT envelope FROM messages WHERE purpose = 1", [], |r| r.get(0))
        .unwrap();
    drop(db);

    // A minute and an hour later (after restarts): it passes every check but
    // is already in the inbox, so it is neither stored nor reported again.
    for offset in [MINUTE, 60 * MINUTE] {
        let (text, messages) = replay_to_bob(&b_dir, offset, &envelope);
        assert_eq!(
            metric(&text, "murmur_messages_received_total"),
            Some(1.0),
            "offset {offset}: {text}"
        );
        assert_eq!(
            metric(&text, "murmur_messages_delivered_total"),
            Some(0.0),
            "offset {offset}"
        );
        assert_eq!(messages, 0, "offset {offset}: replay reported as a message");
    }
    // More than 24 h later, or with a clock 15 minutes behind the sender: refused as stale.
    for offset in [25 * 60 * MINUTE, -15 * MINUTE] {
        let (text, messages) = replay_to_bob(&b_dir, offset, &envelope);
        assert_eq!(
            metric(&text, "murmur_messages_dropped_total{reason=\"stale\"}"),
            Some(1.0),
            "offset {offset}: {text}"
        );
        assert_eq!(
            metric(&text, "murmur_messages_received_total"),
            Some(0.0),
            "offset {offset}"
        );
        assert_eq!(messages, 0);
    }
}

#[test]
fn a_gossip_frame_in_another_members_name_is_dropped() {
    use libp2p::identity::Keypair;

    let tmp = temp();
    let mut bob = TestNode::start(
        "bob",
        &tmp.path().join("b"),
        &["--topic", "news=s3cret", "--metrics", "127.0.0.1:0"],
    );
    let metrics_addr = bob.metrics_addr();
    // Mallory is a member; Alice is another member, not online.
    let (mallory, alice) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (mallory_id, alice_id) = (mallory.public().to_peer_id(), alice.public().to_peer_id());
    let frames = vec![
        // Alice's name and peer id, Mallory's signature.
        support::raw::topic_frame("news", "s3cret", &mallory, alice_id, "alice", "forged in alice's name"),
        // Mallory's own message, properly signed.
        support::raw::topic_frame("news", "s3cret", &mallory, mallory_id, "mallory", "honest from mallory"),
    ];
    let wire = TopicKeys::derive("news", "s3cret").wire_topic();
    support::raw::publish_frames(&bob.addr, &wire, frames);

    let message = bob.wait_event("message", |v| v["msg"] == "honest from mallory");
    assert_eq!(message["peer"], mallory_id.to_string().as_str());
    let text = get(&metrics_addr, "/metrics").body;
    assert_eq!(
        metric(&text, "murmur_messages_dropped_total{reason=\"bad_signature\"}"),
        Some(1.0),
        "{text}"
    );
    let inbox = bob.inbox("news 10");
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(inbox[0]["msg"], "honest from mallory");
    bob.quit();
}
