//! History that pages: a node holds 100,000 messages of one topic, and a
//! client walks back through them over the HTTP API one page at a time,
//! with the `before` cursor each page hands out: every message once, in
//! order, and the cursors are checked.

mod support;

use std::collections::HashSet;

use murmur::api::Api;
use murmur::crypto::TopicKeys;
use murmur::envelope::{Envelope, Payload, Purpose};
use murmur::store::{Insert, Store, Via};
use murmur::{Config, Node};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

const MESSAGES: usize = 100_000;
const PAGE: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_messages_walked_back_page_by_page_come_once_each_in_order() {
    let tmp = support::temp();
    let dir = tmp.path().join("p");
    // The inbox holds 100,000 real sealed and signed messages of a topic, as
    // if received (written straight to the store: gossiping them would only
    // make the test slow), one author's, a millisecond apart.
    std::fs::create_dir_all(&dir).unwrap();
    let keys = TopicKeys::derive("history", "s");
    let author = libp2p::identity::Keypair::generate_ed25519();
    let store = Store::open(&dir, tokio::sync::broadcast::channel(16).0).unwrap();
    let ts0 = murmur::clock::now_ms() - 3_600_000;
    let mut done = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        let payload = Payload {
            seq: i as u64,
            name: "author".into(),
            body: format!("m{i:06}"),
        };
        let ts = ts0 + i as u64;
        let envelope = Envelope::seal(
            &keys.key,
            Purpose::Topic,
            keys.id,
            author.public().to_peer_id(),
            ts,
            &payload,
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        store
            .insert(Insert {
                id: envelope.salt,
                purpose: Purpose::Topic,
                topic_id: keys.id,
                ts,
                envelope: murmur::signed::sign(&author, envelope.encode()),
                via: Via::Gossip,
                own_seq: None,
                client_key: None,
                event: None,
                done: Some(tx.into()),
                member: None,
            })
            .await
            .unwrap();
        done.push(rx);
    }
    for rx in done {
        assert_eq!(rx.await.unwrap(), Ok(true));
    }
    store.close().await;
    let mut config = Config::loopback("pager", &dir);
    config.topics.push(("history".into(), Some("s".into())));
    let (node, _task) = Node::start(config).await.unwrap();
    let api = Api::bind(node.clone(), "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let addr = api.local_addr().to_string();
    let stop = CancellationToken::new();
    let server = tokio::spawn(api.serve(stop.clone()));

    let walk = tokio::task::spawn_blocking(move || {
        let mut bodies: Vec<String> = Vec::with_capacity(MESSAGES);
        let mut before: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path = format!("/inbox/pager?topic=history&limit={PAGE}");
            if let Some(cursor) = &before {
                path.push_str(&format!("&before={cursor}"));
            }
            let response = support::http::get(&addr, &path);
            assert_eq!(response.status, 200, "{}", response.body);
            let page: Vec<Value> = serde_json::from_str(&response.body).unwrap();
            if page.is_empty() {
                break;
            }
            pages += 1;
            // The header names the page's oldest item, the next `before`.
            let header = response
                .header("x-murmur-before")
                .expect("x-murmur-before header")
                .to_owned();
            let oldest = page.iter().map(|m| m["cursor"].as_str().unwrap()).min().unwrap();
            assert_eq!(header, oldest);
            let mut texts: Vec<String> = page.iter().map(|m| m["msg"].as_str().unwrap().to_owned()).collect();
            texts.append(&mut bodies);
            bodies = texts;
            before = Some(header);
        }
        // Walking forward from the middle: the oldest after the cursor.
        let short = support::http::get(&addr, "/inbox/pager?topic=history&limit=1&before=ffffffffffffffff");
        assert_eq!(short.status, 400, "a short cursor is refused: {}", short.body);
        let newest = support::http::get(&addr, "/inbox/pager?topic=history&limit=1");
        let newest: Vec<Value> = serde_json::from_str(&newest.body).unwrap();
        let first: Vec<Value> = serde_json::from_str(
            &support::http::get(
                &addr,
                &format!("/inbox/pager?topic=history&limit=1&before={}", "0".repeat(80)),
            )
            .body,
        )
        .unwrap();
        assert!(first.is_empty(), "nothing comes before the start of time");
        let forward = support::http::get(
            &addr,
            &format!("/inbox/pager?topic=history&limit=3&after={}", "0".repeat(80)),
        );
        let forward: Vec<Value> = serde_json::from_str(&forward.body).unwrap();
        let texts: Vec<&str> = forward.iter().map(|m| m["msg"].as_str().unwrap()).collect();
        assert_eq!(
            texts,
            ["m000000", "m000001", "m000002"],
            "after: the oldest after the cursor"
        );
        let both = support::http::get(
            &addr,
            &format!(
                "/inbox/pager?before={c}&after={c}",
                c = newest[0]["cursor"].as_str().unwrap()
            ),
        );
        assert_eq!(both.status, 400, "{}", both.body);
        assert!(both.body.contains("not both"), "{}", both.body);
        (bodies, pages)
    });
    let (bodies, pages) = walk.await.unwrap();
    assert_eq!(pages, MESSAGES / PAGE);
    assert_eq!(bodies.len(), MESSAGES, "every message once");
    let unique: HashSet<&String> = bodies.iter().collect();
    assert_eq!(unique.len(), MESSAGES, "no message twice");
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("m{i:06}")).collect();
    assert!(bodies == expected, "not in the order published");
    stop.cancel();
    let _ = server.await;
    node.shutdown().await;
}
