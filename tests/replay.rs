//! Replays: a captured valid envelope, sent again by its own author's key
//! (the strongest replayer: gossipsub's signature checks pass) to a node
//! restarted a minute later, an hour later (a controllable clock:
//! `MURMUR_TEST_CLOCK_OFFSET_MS`), more than 24 h later and with its clock
//! behind: never delivered or stored a second time; too old or too far in the
//! future, refused outright.

mod support;

use std::time::Duration;

use futures::StreamExt;
use libp2p::gossipsub;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use murmur::crypto::TopicKeys;
use support::http::get;
use support::{metric, temp, TestNode};

const MINUTE: i64 = 60_000;

/// Starts Bob with his clock shifted by `offset_ms`, replays `envelope` to him
/// with `author`'s key, and returns his metrics text and any `message` events.
fn replay_to_bob(dir: &std::path::Path, offset_ms: i64, author: &Keypair, envelope: &[u8]) -> (String, usize) {
    let offset = offset_ms.to_string();
    let mut bob = TestNode::start_with_env(
        "bob",
        dir,
        &["--metrics", "127.0.0.1:0"],
        &[(murmur::network::CLOCK_OFFSET_ENV, &offset)],
    );
    let metrics_addr = bob.metrics_addr();
    let wire = TopicKeys::derive("news", "s3cret").wire_topic();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut swarm = support::raw::swarm(author.clone(), |key| {
            gossipsub::Behaviour::<gossipsub::IdentityTransform, gossipsub::AllowAllSubscriptionFilter>::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossipsub::ConfigBuilder::default()
                    .validation_mode(gossipsub::ValidationMode::Strict)
                    .max_transmit_size(128 * 1024)
                    .build()
                    .unwrap(),
            )
            .unwrap()
        });
        let topic = gossipsub::IdentTopic::new(wire);
        swarm.behaviour_mut().subscribe(&topic).unwrap();
        let bob_id = support::raw::connect(&mut swarm, &bob.addr).await;
        // Wait until Bob's subscription is known, then replay.
        tokio::time::timeout(support::WAIT, async {
            loop {
                if let SwarmEvent::Behaviour(gossipsub::Event::Subscribed { peer_id, .. }) =
                    swarm.select_next_some().await
                {
                    if peer_id == bob_id {
                        break;
                    }
                }
            }
        })
        .await
        .expect("bob's subscription");
        swarm.behaviour_mut().publish(topic, envelope.to_vec()).unwrap();
        // Let it travel and be judged.
        let _ = tokio::time::timeout(Duration::from_millis(1500), async {
            loop {
                swarm.select_next_some().await;
            }
        })
        .await;
    });
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

    // What an eavesdropper with Alice's key would replay: the envelope as sent.
    let db = rusqlite::Connection::open(a_dir.join("inbox.sqlite3")).unwrap();
    let envelope: Vec<u8> = db
        .query_row("SELECT envelope FROM messages WHERE purpose = 1", [], |r| r.get(0))
        .unwrap();
    drop(db);
    let alice = Keypair::from_protobuf_encoding(&std::fs::read(a_dir.join("identity.key")).unwrap()).unwrap();

    // A minute and an hour later (after restarts): it passes every check but
    // is already in the inbox, so it is neither stored nor reported again.
    for offset in [MINUTE, 60 * MINUTE] {
        let (text, messages) = replay_to_bob(&b_dir, offset, &alice, &envelope);
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
        let (text, messages) = replay_to_bob(&b_dir, offset, &alice, &envelope);
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
