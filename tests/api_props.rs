//! Property test over the API's request bodies: whatever JSON (or not-JSON)
//! arrives at the POST endpoints of a live node, the answer is a 2xx or a 4xx
//! with a JSON `{"error"}` — never a 5xx, never a dropped connection — and
//! the node keeps serving with its inbox intact.

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Map, Value};
use support::http::{get, post, request};
use support::{temp, TestNode};

/// Field names the endpoints know, and a few they do not.
const KEYS: &[&str] = &[
    "user",
    "topic",
    "msg",
    "message",
    "secret",
    "to",
    "client_id",
    "extra",
    "",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "\\PC{0,40}".prop_map(Value::String),
        Just(json!("alice")),
        Just(json!("news")),
        (0usize..70_000).prop_map(|n| Value::String("x".repeat(n))),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<Map<_, _>>())),
        ]
    })
}

/// A body: mostly JSON objects shaped like the real ones, sometimes any JSON, sometimes not JSON.
fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => json_value().prop_map(|v| v.to_string()),
        1 => "\\PC{0,200}",
        // Cut off in the middle.
        1 => "\\PC{0,10}".prop_map(|t| format!("{{\"user\":\"alice\",\"topic\":\"{t}")),
    ]
}

#[test]
fn any_request_body_gets_a_2xx_or_a_json_4xx_and_the_node_keeps_serving() {
    let tmp = temp();
    let node = TestNode::start("alice", &tmp.path().join("a"), &["--api", "127.0.0.1:0"]);
    let api = node.api.clone().unwrap();
    let r = post(
        &api,
        "/publish",
        &json!({"user": "alice", "topic": "keep", "msg": "still here"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    let mut runner = TestRunner::new(Config {
        cases: 1000,
        failure_persistence: None,
        ..Config::default()
    });
    let paths = proptest::sample::select(vec!["/subscribe", "/unsubscribe", "/publish", "/dm"]);
    runner
        .run(&(paths, body()), |(path, body)| {
            let r = request(&api, "POST", path, Some(&body), &[("Content-Type", "application/json")]);
            prop_assert!(
                r.status >= 200 && r.status < 500,
                "{path} {body:?} → {} {}",
                r.status,
                r.body
            );
            if r.status >= 400 {
                let error = r.json()["error"].as_str().map(str::to_owned);
                prop_assert!(
                    error.is_some_and(|e| !e.is_empty()),
                    "{path} {body:?} → {} {}",
                    r.status,
                    r.body
                );
            }
            Ok(())
        })
        .unwrap();

    assert_eq!(get(&api, "/health").status, 200);
    let inbox = get(&api, "/inbox/alice?topic=keep").json();
    assert_eq!(inbox[0]["msg"], "still here", "{inbox}");
}
