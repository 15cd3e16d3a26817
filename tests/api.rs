//! The HTTP/JSON API against real nodes: the prototype's flow across two
//! nodes, every error case, DMs, live events, the token and the Host check.

mod support;

use std::time::Duration;

use serde_json::json;
use support::http::{get, post, raw, request, EventStream};
use support::{temp, TestNode};

fn api_node(name: &str, dir: &std::path::Path, extra: &[&str]) -> TestNode {
    let mut args = vec!["--api", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    TestNode::start(name, dir, &args)
}

#[test]
fn the_prototype_flow_passes_across_two_nodes() {
    let tmp = temp();
    let mut bob = api_node("Bob", &tmp.path().join("bob"), &[]);
    let alice = api_node("Alice", &tmp.path().join("alice"), &["--peer", &bob.addr.clone()]);
    let (bob_api, alice_api) = (bob.api.clone().unwrap(), alice.api.clone().unwrap());

    // [1] Subscribe Bob to news (an open topic, as in the prototype).
    let r = post(&bob_api, "/subscribe", &json!({"user": "Bob", "topic": "news"}));
    assert_eq!((r.status, r.json()), (200, json!({"status": "Bob subscribed to news"})));
    // [2] Alice publishes to news from her own node.
    let r = post(
        &alice_api,
        "/publish",
        &json!({"user": "Alice", "topic": "news", "msg": "Hello from Alice!"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "message published");
    let id = r.json()["id"].as_str().unwrap().to_owned();
    bob.wait_event("message", |v| v["id"] == id.as_str());
    // [3] Bob's inbox holds the message, decrypted.
    let r = get(&bob_api, "/inbox/Bob");
    assert_eq!(r.status, 200);
    let inbox = r.json();
    assert_eq!(inbox.as_array().unwrap().len(), 1, "{inbox}");
    let m = &inbox[0];
    assert_eq!(
        (m["from"].as_str(), m["topic"].as_str(), m["msg"].as_str()),
        (Some("Alice"), Some("news"), Some("Hello from Alice!"))
    );
    assert_eq!(m["kind"], "topic");
    assert_eq!(m["id"], id.as_str());
    assert_eq!(m["peer"], alice.peer_id.as_str());
    assert!(m["ts"].as_u64().is_some());
    // [4] Bob's subscriptions.
    let r = get(&bob_api, "/subscriptions/Bob");
    assert_eq!((r.status, r.json()), (200, json!(["news"])));
    // "message" is accepted for "msg"; user names match case-insensitively.
    let r = post(
        &alice_api,
        "/publish",
        &json!({"user": "alice", "topic": "news", "message": "second"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    bob.wait_event("message", |v| v["msg"] == "second");
    // Query filters.
    let all = get(&bob_api, "/inbox/bob").json();
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(get(&bob_api, "/inbox/bob?limit=1").json()[0]["msg"], "second");
    let second_ts = all[1]["ts"].as_u64().unwrap();
    let since = get(&bob_api, &format!("/inbox/bob?since={second_ts}")).json();
    assert!(since
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["ts"].as_u64().unwrap() >= second_ts));
    assert_eq!(
        get(&bob_api, "/inbox/bob?topic=news&limit=5")
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Unsubscribe.
    let r = post(&bob_api, "/unsubscribe", &json!({"user": "Bob", "topic": "news"}));
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"status": "Bob unsubscribed from news"}))
    );
    assert_eq!(get(&bob_api, "/subscriptions/bob").json(), json!([]));
}

#[test]
fn bad_requests_get_a_4xx_json_error_and_the_server_keeps_serving() {
    let tmp = temp();
    let node = api_node("bob", &tmp.path().join("bob"), &[]);
    let api = node.api.clone().unwrap();
    let big = "x".repeat(65_537);
    let cases: Vec<(&str, &str, Option<String>, u16, &str)> = vec![
        (
            "POST",
            "/publish",
            Some("{\"user\":\"bob\",".into()),
            400,
            "request body is not valid JSON: EOF while parsing",
        ),
        (
            "POST",
            "/publish",
            Some("[1,2]".into()),
            422,
            "invalid request body: expected a JSON object",
        ),
        (
            "POST",
            "/publish",
            Some(json!({"user": "bob", "topic": "news"}).to_string()),
            422,
            "missing field `msg`",
        ),
        (
            "POST",
            "/publish",
            Some(json!({"user": "bob", "topic": "news", "msg": "a", "message": "b"}).to_string()),
            422,
            "give `msg` or `message`, not both",
        ),
        (
            "POST",
            "/publish",
            Some(json!({"user": "bob", "topic": "news", "msg": ""}).to_string()),
            400,
            "msg is empty",
        ),
        (
            "POST",
            "/publish",
            Some(json!({"topic": "news", "msg": "x"}).to_string()),
            422,
            "missing field `user`",
        ),
        (
            "POST",
            "/publish",
            Some(json!({"user": 5, "topic": "news", "msg": "x"}).to_string()),
            422,
            "invalid request body: `user` must be a string, not integer `5`",
        ),
        (
            "POST",
            "/publish",
            Some(json!({"user": "bob", "topic": "", "msg": "x"}).to_string()),
            400,
            "topic name is empty",
        ),
        (
            "POST",
            "/publish",
            Some(json!({"user": "bob", "topic": "a b", "msg": "x"}).to_string()),
            400,
            "white space",
        ),
        (
            "POST",
            "/publish",
            Some(json!({"user": "bob", "topic": "news", "msg": big}).to_string()),
            413,
            "the limit is 65536",
        ),
        (
            "POST",
            "/publish",
            Some(json!({"user": "bob", "topic": "news", "msg": "x", "extra": 1}).to_string()),
            422,
            "unknown field `extra`",
        ),
        (
            "POST",
            "/publish",
            Some(json!({"user": "mallory", "topic": "news", "msg": "x"}).to_string()),
            404,
            "unknown user \"mallory\"",
        ),
        (
            "POST",
            "/subscribe",
            Some(json!({"user": "bob", "topic": "t", "secret": ""}).to_string()),
            400,
            "secret is empty",
        ),
        (
            "POST",
            "/subscribe",
            Some(json!({"user": "bob"}).to_string()),
            422,
            "missing field `topic`",
        ),
        (
            "POST",
            "/unsubscribe",
            Some(json!({"user": "bob", "topic": "never"}).to_string()),
            404,
            "not subscribed to never",
        ),
        (
            "POST",
            "/dm",
            Some(json!({"user": "bob", "to": "nobody", "msg": "hi"}).to_string()),
            404,
            "unknown peer",
        ),
        (
            "POST",
            "/dm",
            Some(json!({"user": "bob", "to": node.peer_id, "msg": "hi"}).to_string()),
            400,
            "itself",
        ),
        ("GET", "/inbox/mallory", None, 404, "unknown user"),
        ("GET", "/inbox/bob?limit=abc", None, 400, "limit"),
        (
            "GET",
            "/inbox/bob?limit=0",
            None,
            400,
            "limit must be between 1 and 10000",
        ),
        (
            "GET",
            "/inbox/bob?limit=10001",
            None,
            400,
            "limit must be between 1 and 10000",
        ),
        ("GET", "/inbox/bob?since=-1", None, 400, "since"),
        ("GET", "/inbox/bob?topic=", None, 400, "topic name is empty"),
        (
            "GET",
            "/inbox/bob?topic=unknown",
            None,
            404,
            "not subscribed to unknown",
        ),
        ("GET", "/subscriptions/mallory", None, 404, "unknown user"),
        ("GET", "/nowhere", None, 404, "no route for GET /nowhere"),
        ("DELETE", "/peers", None, 405, "DELETE is not allowed on /peers"),
    ];
    for (method, path, body, status, expected) in cases {
        let r = request(&api, method, path, body.as_deref(), &[]);
        assert_eq!(r.status, status, "{method} {path} {body:?} → {}", r.body);
        assert!(
            r.error().contains(expected),
            "{method} {path} → {:?}, expected {expected:?}",
            r.error()
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    // No content type; an oversized body.
    let r = request(&api, "POST", "/publish", Some("{}"), &[("Content-Type", "text/plain")]);
    assert_eq!(r.status, 415, "{}", r.body);
    assert!(r.error().contains("application/json"));
    let huge = format!(
        "{{\"user\":\"bob\",\"topic\":\"news\",\"msg\":\"{}\"}}",
        "y".repeat(300_000)
    );
    let r = request(&api, "POST", "/publish", Some(&huge), &[]);
    assert_eq!(r.status, 413, "{}", r.body);
    // Garbage on the socket does not take the server down.
    let r = raw(&api, b"NONSENSE\r\n\r\n");
    assert!((400..500).contains(&r.status), "{r:?}");

    // Still serving, inbox intact.
    let r = post(
        &api,
        "/publish",
        &json!({"user": "bob", "topic": "news", "msg": "after the storm"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let inbox = get(&api, "/inbox/bob").json();
    assert_eq!(inbox.as_array().unwrap().len(), 1);
    assert_eq!(inbox[0]["msg"], "after the storm");
    assert_eq!(get(&api, "/health").json()["status"], "ok");
}

#[test]
fn direct_messages_and_live_events_over_the_api() {
    let tmp = temp();
    let mut bob = api_node("bob", &tmp.path().join("bob"), &[]);
    let alice = api_node("alice", &tmp.path().join("alice"), &["--peer", &bob.addr.clone()]);
    let (bob_api, alice_api) = (bob.api.clone().unwrap(), alice.api.clone().unwrap());
    let mut events = EventStream::open(&bob_api, None);

    // Wait until Alice knows Bob's name.
    let deadline = std::time::Instant::now() + support::WAIT;
    while !get(&alice_api, "/peers")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "bob")
    {
        assert!(std::time::Instant::now() < deadline, "alice never learned bob's name");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = post(&alice_api, "/dm", &json!({"user": "alice", "to": "bob", "msg": "psst"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "delivered");
    let dm = events
        .wait("dm", support::WAIT, |v| v["msg"] == "psst")
        .expect("dm event over SSE");
    assert_eq!(dm["from"], "alice");
    assert_eq!(dm["id"], r.json()["id"]);
    bob.wait_event("dm", |v| v["msg"] == "psst");
    let inbox = get(&bob_api, "/inbox/bob").json();
    assert_eq!(inbox[0]["kind"], "dm");
    assert_eq!(inbox[0]["msg"], "psst");

    // A topic message shows up on the stream as it arrives.
    post(
        &bob_api,
        "/subscribe",
        &json!({"user": "bob", "topic": "news", "secret": "s3cret"}),
    );
    post(
        &alice_api,
        "/subscribe",
        &json!({"user": "alice", "topic": "news", "secret": "s3cret"}),
    );
    let r = post(
        &alice_api,
        "/publish",
        &json!({"user": "alice", "topic": "news", "msg": "live!"}),
    );
    assert_eq!(r.status, 200);
    let m = events
        .wait("message", support::WAIT, |v| v["msg"] == "live!")
        .expect("message event over SSE");
    assert_eq!(m["topic"], "news");
    assert_eq!(m["from"], "alice");

    // /peers lists names and addresses; the page and the document are served.
    let peers = get(&bob_api, "/peers").json();
    assert_eq!(peers[0]["name"], "alice");
    let page = get(&bob_api, "/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<title>murmur</title>"));
    let doc = get(&bob_api, "/openapi.json").json();
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/inbox/{user}"].is_object());

    // A DM to a peer that is not there waits in the outbox, listed by GET /outbox.
    let stranger = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    let r = post(
        &alice_api,
        "/dm",
        &json!({"user": "alice", "to": stranger, "msg": "later"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "queued");
    assert_eq!(r.json()["queued"], true);
    let outbox = get(&alice_api, "/outbox").json();
    assert_eq!(outbox["dms"][0]["to"], stranger, "{outbox}");
    assert_eq!(outbox["dms"][0]["msg"], "later");
    assert_eq!(outbox["dms"][0]["id"], r.json()["id"]);
    assert!(outbox["publishes"].as_object().unwrap().is_empty());
}

#[test]
fn the_token_and_the_host_header_guard_the_api() {
    let tmp = temp();
    let node = api_node("bob", &tmp.path().join("bob"), &["--api-token", "t0ken"]);
    let api = node.api.clone().unwrap();
    // /health is open; everything else needs the token.
    assert_eq!(get(&api, "/health").status, 200);
    for path in [
        "/",
        "/peers",
        "/inbox/bob",
        "/subscriptions/bob",
        "/openapi.json",
        "/events",
        "/nowhere",
    ] {
        let r = get(&api, path);
        assert_eq!(r.status, 401, "{path}: {}", r.body);
        assert!(r.error().contains("token"));
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    let r = request(
        &api,
        "POST",
        "/subscribe",
        Some(r#"{"user":"bob","topic":"x"}"#),
        &[("Authorization", "Bearer wrong")],
    );
    assert_eq!(r.status, 401);
    let r = request(
        &api,
        "GET",
        "/subscriptions/bob",
        None,
        &[("Authorization", "Bearer t0ken")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(get(&api, "/subscriptions/bob?token=t0ken").status, 200);
    let mut events = EventStream::open(&api, Some("t0ken"));
    request(
        &api,
        "POST",
        "/subscribe",
        Some(r#"{"user":"bob","topic":"x"}"#),
        &[("Authorization", "Bearer t0ken")],
    );
    assert!(events
        .wait("subscribed", support::WAIT, |v| v["topic"] == "x")
        .is_some());

    // DNS rebinding: a page on another origin reaching 127.0.0.1 sends its own Host.
    let port = api.rsplit(':').next().unwrap();
    for host in ["evil.example:80".to_string(), format!("attacker.test:{port}")] {
        let r = raw(
            &api,
            format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 403, "{host}: {}", r.body);
    }
    let r = raw(
        &api,
        format!("GET /health HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn a_non_loopback_api_address_needs_a_token() {
    let tmp = temp();
    let out = std::process::Command::new(support::murmur_bin())
        .args([
            "--no-mdns",
            "--name",
            "x",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(tmp.path().join("x"))
        .env_remove("MURMUR_API_TOKEN")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--api-token"), "{stderr}");
}

#[test]
fn publishing_twice_with_one_client_id_yields_one_message() {
    let tmp = temp();
    let mut bob = api_node("bob", &tmp.path().join("bob"), &["--topic", "news=s"]);
    let alice_dir = tmp.path().join("alice");
    let alice = api_node("alice", &alice_dir, &["--topic", "news=s", "--peer", &bob.addr.clone()]);
    bob.wait_topic_peers("news", 1);
    let api = alice.api.clone().unwrap();
    let body = json!({"user": "alice", "topic": "news", "msg": "exactly once", "client_id": "req-42"});
    let first = post(&api, "/publish", &body);
    assert_eq!(first.status, 200, "{}", first.body);
    let id = first.json()["id"].as_str().unwrap().to_owned();
    // A retry (same client id): same id, nothing new sent or stored.
    let again = post(&api, "/publish", &body);
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["id"], id.as_str());
    // A different client id is a different message.
    let other = post(
        &api,
        "/publish",
        &json!({"user": "alice", "topic": "news", "msg": "exactly once", "client_id": "req-43"}),
    );
    assert_ne!(other.json()["id"], id.as_str());
    let bad = post(
        &api,
        "/publish",
        &json!({"user": "alice", "topic": "news", "msg": "x", "client_id": ""}),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    // A retry of a publish still waiting for a peer says it is still waiting,
    // whether the first one is committed yet or not.
    let sub = post(
        &api,
        "/subscribe",
        &json!({"user": "alice", "topic": "solo", "secret": "k"}),
    );
    assert_eq!(sub.status, 200, "{}", sub.body);
    let lonely = json!({"user": "alice", "topic": "solo", "msg": "anyone?", "client_id": "req-q"});
    let first = post(&api, "/publish", &lonely).json();
    assert_eq!(first["queued"], true, "{first}");
    for _ in 0..2 {
        let again = post(&api, "/publish", &lonely).json();
        assert_eq!(
            (&again["id"], &again["queued"]),
            (&first["id"], &json!(true)),
            "{again}"
        );
    }
    // Both messages reach bob before alice goes away.
    bob.wait_event("message", |v| v["id"] == other.json()["id"]);

    // …and after a restart of the publisher.
    let mut alice = alice;
    alice.send("/quit");
    assert!(alice.wait_exit().success());
    let alice = api_node("alice", &alice_dir, &["--peer", &bob.addr.clone()]);
    let api = alice.api.clone().unwrap();
    let after = post(&api, "/publish", &body);
    assert_eq!(after.status, 200, "{}", after.body);
    assert_eq!(after.json()["id"], id.as_str());

    let late = bob.drain_for(std::time::Duration::from_millis(1000));
    assert!(late.iter().all(|v| v["event"] != "message"), "{late:?}");
    let inbox = get(bob.api.as_deref().unwrap(), "/inbox/bob").json();
    let copies = inbox
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["id"] == id.as_str())
        .count();
    assert_eq!(copies, 1, "{inbox}");
    let alice_inbox = get(&api, "/inbox/alice").json();
    // The two to news, and the one to solo, stored once.
    assert_eq!(alice_inbox.as_array().unwrap().len(), 3, "{alice_inbox}");
}

#[test]
fn members_rekey_and_invitations_over_the_api() {
    let tmp = temp();
    let mut ann = api_node("Ann", &tmp.path().join("ann"), &["--topic", "club=s"]);
    let mut bob = api_node(
        "Bob",
        &tmp.path().join("bob"),
        &["--topic", "club=s", "--peer", &ann.addr.clone()],
    );
    let mut eve = api_node("Eve", &tmp.path().join("eve"), &["--peer", &ann.addr.clone()]);
    let (ann_api, eve_api) = (ann.api.clone().unwrap(), eve.api.clone().unwrap());
    ann.wait_topic_peers("club", 1);
    // The roster: Ann and Bob, named.
    let deadline = std::time::Instant::now() + support::WAIT;
    let roster = loop {
        let r = get(&ann_api, "/members/Ann?topic=club");
        assert_eq!(r.status, 200, "{}", r.body);
        if r.json()["members"].as_array().unwrap().len() == 2 {
            break r.json();
        }
        assert!(std::time::Instant::now() < deadline, "{}", r.body);
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(roster["epoch"], 0);
    let names = support::member_names(&roster);
    assert!(names.contains(&"Ann") && names.contains(&"Bob"), "{roster}");
    // A rekey moves the topic to epoch 1; Bob follows.
    let r = post(&ann_api, "/rekey", &json!({"user": "Ann", "topic": "club"}));
    assert_eq!((r.status, r.json()["epoch"].clone()), (200, json!(1)), "{}", r.body);
    bob.wait_event("rekeyed", |v| v["epoch"] == 1);
    let r = get(&ann_api, "/subscriptions/Ann?detail=true");
    assert_eq!(r.json(), json!([{"topic": "club", "epoch": 1}]));
    assert_eq!(get(&ann_api, "/subscriptions/Ann").json(), json!(["club"]));
    // An invitation brings Eve in, with no secret.
    ann.wait_peers("to include Eve", |p| p.iter().any(|p| p["name"] == "Eve"));
    let r = post(
        &ann_api,
        "/invite",
        &json!({"user": "Ann", "topic": "club", "peer": "Eve"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    eve.wait_event("invited", |v| v["topic"] == "club");
    assert_eq!(
        get(&eve_api, "/subscriptions/Eve?detail=true").json(),
        json!([{"topic": "club", "epoch": 1}])
    );
    // Errors: unknown topic, unknown peer, bad body, a topic not held.
    let r = post(&ann_api, "/rekey", &json!({"user": "Ann", "topic": "nope"}));
    assert_eq!(r.status, 404, "{}", r.body);
    let r = post(
        &ann_api,
        "/invite",
        &json!({"user": "Ann", "topic": "club", "peer": "nobody"}),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let r = post(
        &ann_api,
        "/rekey",
        &json!({"user": "Ann", "topic": "club", "remove": "Bob"}),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let r = get(&ann_api, "/members/Ann?topic=nope");
    assert_eq!(r.status, 404, "{}", r.body);
    let r = get(&ann_api, "/members/Ann");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["error"].is_string());
}

#[test]
fn an_api_address_that_cannot_serve_stops_the_start_with_what_to_do() {
    use std::process::Command;
    let tmp = temp();
    let start = |api: &str| {
        let out = Command::new(support::murmur_bin())
            .args(["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--api", api])
            .arg("--data-dir")
            .arg(tmp.path().join("n"))
            .env("RUST_LOG", "error")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "--api {api} started");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        (String::from_utf8_lossy(&out.stderr).into_owned(), stdout)
    };
    // No port: refused by the parser, with an example.
    let (err, _) = start("127.0.0.1");
    assert!(err.contains("it needs a port, e.g. 127.0.0.1:8080"), "{err}");
    // Beyond loopback without a token: refused before the node starts.
    let (err, out) = start("0.0.0.0:8080");
    assert!(err.contains("is not a loopback address: set --api-token"), "{err}");
    assert!(!out.contains("listening on"), "the node started first: {out}");
    // A port in use: said once, with a hint.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (err, _) = start(&format!("localhost:{}", taken.local_addr().unwrap().port()));
    assert_eq!(err.matches("Address already in use").count(), 1, "{err}");
    assert!(err.contains("hint: another program"), "{err}");
}
