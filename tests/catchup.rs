//! Catch-up (`/murmur/sync/1`) between real nodes on loopback: a node that
//! was offline gets what it missed from a peer; a stranger gets nothing; a
//! member gets at most the page size per request and the budget per minute.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::PeerId;
use murmur::crypto::TopicKeys;
use murmur::network::sync::{self, Cursor, SyncCodec, SyncRequest, SyncResponse, MAX_PAGE_ENVELOPES};
use support::{temp, TestNode};

/// Publishes `n` messages `{prefix}{i:03}` from `node`; returns their ids in order.
fn publish_many(node: &mut TestNode, topic: &str, prefix: &str, n: usize) -> Vec<String> {
    for i in 0..n {
        node.send(&format!("/pub {topic} {prefix}{i:03}"));
    }
    (0..n)
        .map(|i| {
            let body = format!("{prefix}{i:03}");
            let p = node.wait_event("published", |_| true);
            assert!(p["id"].is_string(), "published {body}: {p}");
            p["id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[test]
fn a_node_back_from_offline_catches_up_on_what_it_missed() {
    let tmp = temp();
    let topic = ["--topic", "news=s3cret"];
    let mut a = TestNode::start("alice", &tmp.path().join("a"), &topic);
    let mut b = TestNode::start(
        "bob",
        &tmp.path().join("b"),
        &[&topic[..], &["--peer", &a.addr.clone()]].concat(),
    );
    let c_dir = tmp.path().join("c");
    let mut c = TestNode::start("carol", &c_dir, &[&topic[..], &["--peer", &b.addr.clone()]].concat());
    c.wait_topic_peers("news", 1);
    a.wait_topic_peers("news", 1);
    c.quit();
    // Dave joins while Carol is away: Bob holds his announcement, which
    // catch-up serves Carol with the messages but does not count as one.
    let mut d = TestNode::start(
        "dave",
        &tmp.path().join("d"),
        &[&topic[..], &["--peer", &b.addr.clone()]].concat(),
    );
    d.wait_topic_peers("news", 1);
    b.seen_or_wait_for("member_joined", |v| v["name"] == "dave");

    let ids = publish_many(&mut a, "news", "missed-", 200);
    let published_at = Instant::now();
    // Bob has them all (live gossip) before Carol comes back.
    let deadline = Instant::now() + support::WAIT;
    while b.inbox("news 500").len() < 200 {
        assert!(Instant::now() < deadline, "bob did not receive the 200 messages");
        std::thread::sleep(Duration::from_millis(200));
    }
    // And they have left gossipsub's memory: Bob advertises (IHAVE) what it
    // saw in the last 3 heartbeats of 1 s, and a node back that soon would
    // get them from gossip instead of catch-up, as a node back from a
    // longer absence does not.
    std::thread::sleep(Duration::from_secs(4).saturating_sub(published_at.elapsed()));

    // Carol returns with only Bob reachable.
    let mut c = TestNode::start("carol", &c_dir, &[&topic[..], &["--peer", &b.addr.clone()]].concat());
    let (connected, connected_at) = c.seen_or_wait_for("peer_connected", |v| v["peer"] == b.peer_id.as_str());
    let (synced, synced_at) = c.seen_or_wait_for("synced", |v| v["peer"] == b.peer_id.as_str() && v["topic"] == "news");
    let took = synced_at - connected_at;
    assert_eq!(synced["received"], 200, "{synced} after {connected}");
    assert!(took < Duration::from_secs(10), "catch-up took {took:?}");
    eprintln!("catch-up of 200 messages took {took:?} after connecting");
    // (Bob's first exchange with Carol, before she left, moved nothing.)
    let (served, _) = b.seen_or_wait_for("synced", |v| {
        v["peer"] == c.peer_id.as_str() && v["topic"] == "news" && v["sent"] != 0
    });
    assert_eq!(
        served["sent"], 200,
        "Bob counts the messages he served, not Dave's announcement: {served}"
    );
    let roster = c.ask("/members news", "members");
    assert!(support::member_names(&roster).contains(&"dave"), "{roster}");

    // Exactly those 200, once each, in the order Alice sent them, marked as caught up.
    let inbox = c.inbox("news 500");
    let got: Vec<&str> = inbox.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
    for (i, m) in inbox.iter().enumerate() {
        assert_eq!(m["msg"], format!("missed-{i:03}"));
        assert_eq!(m["via"], "sync", "{m}");
        assert_eq!(m["from"], "alice");
    }
    // Nothing more arrives later (no duplicate reports), and a later exchange moves nothing.
    let later = c.drain_for(Duration::from_millis(1500));
    assert!(later.iter().all(|v| v["event"] != "message"), "{later:?}");
    assert_eq!(c.inbox("news 500").len(), 200);
}

/// A bare libp2p peer that speaks only `/murmur/sync/1`, driven by hand.
struct RawPeer {
    swarm: libp2p::Swarm<request_response::Behaviour<SyncCodec>>,
}

impl RawPeer {
    async fn connect(addr: &str) -> (RawPeer, PeerId) {
        let mut swarm = support::raw::swarm(libp2p::identity::Keypair::generate_ed25519(), |_| {
            request_response::Behaviour::with_codec(
                SyncCodec::default(),
                [(sync::PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            )
        });
        let peer = support::raw::connect(&mut swarm, addr).await;
        (RawPeer { swarm }, peer)
    }

    fn local(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    async fn ask(&mut self, peer: PeerId, request: SyncRequest) -> SyncResponse {
        self.swarm.behaviour_mut().send_request(&peer, request);
        loop {
            match self.swarm.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                }) => return response,
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) => {
                    panic!("sync request failed: {error}")
                }
                _ => {}
            }
        }
    }
}

#[test]
fn catch_up_serves_members_only_and_within_bounds() {
    let tmp = temp();
    let mut a = TestNode::start("alice", &tmp.path().join("a"), &["--topic", "news=s3cret"]);
    // 600 messages in Alice's inbox (queued for a peer, stored at once).
    publish_many(&mut a, "news", "held-", 600);
    let keys = TopicKeys::derive("news", "s3cret");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut raw, alice) = RawPeer::connect(&a.addr).await;
        let me = raw.local();
        let request = |proof: [u8; 32]| SyncRequest {
            topic_id: keys.id,
            proof,
            since: 0,
            after: Cursor::default(),
            have: Vec::new(),
        };
        // The topic id is public (it is the gossipsub topic), but without the
        // key, or with a proof made for another pair of peers, nothing is sent.
        for proof in [
            [0u8; 32],
            sync::proof(&TopicKeys::derive("news", "wrong").key, &me, &alice),
            sync::proof(&keys.key, &PeerId::random(), &alice),
        ] {
            match raw.ask(alice, request(proof)).await {
                SyncResponse::Refused(reason) => assert_eq!(reason, "topic not served"),
                page => panic!("a non-member was served: {page:?}"),
            }
        }
        // A member gets one page at a time…
        let member = sync::proof(&keys.key, &me, &alice);
        let mut served = 0;
        let first = raw.ask(alice, request(member)).await;
        let SyncResponse::Page { more, envelopes, next } = first else {
            panic!("a member was refused: {first:?}")
        };
        assert!(more);
        assert_eq!(envelopes.len(), MAX_PAGE_ENVELOPES);
        served += envelopes.len();
        let rest = raw
            .ask(
                alice,
                SyncRequest {
                    after: next,
                    ..request(member)
                },
            )
            .await;
        let SyncResponse::Page { more, envelopes, .. } = rest else {
            panic!("{rest:?}")
        };
        assert!(!more);
        // The 600 messages and Alice's announcement of herself as a member
        // (a control row, served by catch-up so that rosters converge).
        assert_eq!(envelopes.len(), 600 + 1 - MAX_PAGE_ENVELOPES);
        served += envelopes.len();
        // …and asking for the same pages over and over ends at the budget.
        let budget = murmur::network::SERVE_BUDGET as usize;
        let refused = loop {
            match raw.ask(alice, request(member)).await {
                SyncResponse::Page { envelopes, .. } => served += envelopes.len(),
                SyncResponse::Refused(reason) => break reason,
            }
            assert!(served <= budget + MAX_PAGE_ENVELOPES, "served {served} envelopes");
        };
        assert!(refused.contains("budget"), "{refused}");
        assert!(served >= budget, "refused after only {served} envelopes");
    });
    // Alice kept running and her inbox is intact.
    assert_eq!(a.inbox("news 1000").len(), 600);
}

/// A topic member (it holds the key) that answers catch-up with what it likes.
#[derive(libp2p::swarm::NetworkBehaviour)]
struct Member {
    gossipsub: libp2p::gossipsub::Behaviour,
    sync: request_response::Behaviour<SyncCodec>,
}

#[test]
fn caught_up_messages_must_be_signed_by_their_sender() {
    use libp2p::gossipsub;
    use libp2p::identity::Keypair;

    let tmp = temp();
    let mut bob = TestNode::start(
        "bob",
        &tmp.path().join("b"),
        &["--topic", "news=s3cret", "--metrics", "127.0.0.1:0"],
    );
    let metrics = bob.metrics_addr();

    // Mallory is a member; Alice is another member, not online.
    let (mallory, alice) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let (mallory_id, alice_id) = (mallory.public().to_peer_id(), alice.public().to_peer_id());
    let now = murmur::clock::now_ms();
    let page = vec![
        // Alice's name and peer id, Mallory's signature.
        support::raw::topic_frame("news", "s3cret", &mallory, alice_id, "alice", "forged in alice's name"),
        // Mallory's own message, properly signed.
        support::raw::topic_frame("news", "s3cret", &mallory, mallory_id, "mallory", "honest from mallory"),
    ];

    let addr = bob.addr.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.spawn(async move {
        let mut swarm = support::raw::swarm(mallory.clone(), |_| Member {
            gossipsub: support::raw::anonymous_gossipsub(),
            sync: request_response::Behaviour::with_codec(
                SyncCodec::default(),
                [(sync::PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default(),
            ),
        });
        let wire = gossipsub::IdentTopic::new(TopicKeys::derive("news", "s3cret").wire_topic());
        swarm.behaviour_mut().gossipsub.subscribe(&wire).unwrap();
        support::raw::connect(&mut swarm, &addr).await;
        let mut page = Some(page);
        loop {
            if let SwarmEvent::Behaviour(MemberEvent::Sync(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            })) = swarm.select_next_some().await
            {
                let envelopes = page.take().unwrap_or_default();
                let next = Cursor {
                    ts: now,
                    id: [0xff; 32],
                };
                let response = SyncResponse::Page {
                    more: false,
                    next,
                    envelopes,
                };
                let _ = swarm.behaviour_mut().sync.send_response(channel, response);
            }
        }
    });

    let synced = bob.wait_event("synced", |v| v["peer"] == mallory_id.to_string().as_str());
    assert_eq!(synced["received"], 1, "{synced}");
    let inbox = bob.inbox("news 10");
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(inbox[0]["msg"], "honest from mallory");
    assert_eq!(inbox[0]["peer"], mallory_id.to_string().as_str());
    assert_eq!(inbox[0]["via"], "sync");
    let text = support::http::get(&metrics, "/metrics").body;
    assert_eq!(
        support::metric(&text, "murmur_messages_dropped_total{reason=\"bad_signature\"}"),
        Some(1.0),
        "{text}"
    );
    server.abort();
}
