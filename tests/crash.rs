//! Crash safety: a node receiving messages over the network is killed with
//! SIGKILL at random moments. After every restart its inbox opens, SQLite's
//! integrity check passes, every message it had reported is there and
//! decrypts, and none is stored twice. MURMUR_CRASH_ROUNDS sets the rounds
//! (default 10; run 100 or more by hand).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use support::{temp, TestNode};

#[test]
fn sigkill_at_random_moments_loses_no_reported_message() {
    let rounds: usize = std::env::var("MURMUR_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6d75726d);
    let tmp = temp();
    let mut publisher = TestNode::start("pub", &tmp.path().join("pub"), &["--topic", "feed=s"]);
    let victim_dir = tmp.path().join("victim");
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut sent = 0usize;
    for round in 0..rounds {
        let mut victim = TestNode::start(
            "victim",
            &victim_dir,
            &["--topic", "feed=s", "--peer", &publisher.addr.clone()],
        );
        // Restarted: the inbox opens, holds every message reported so far, each once, decrypted.
        let inbox = victim.inbox("feed 100000");
        let ids: Vec<String> = inbox.iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
        let unique: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(unique.len(), ids.len(), "round {round}: a message is stored twice");
        let missing: Vec<&String> = reported.difference(&unique).collect();
        assert!(missing.is_empty(), "round {round}: reported but lost: {missing:?}");
        assert!(inbox.iter().all(|m| m["msg"].as_str().unwrap().starts_with("crash-")));
        victim.wait_topic_peers("feed", 1);
        publisher.wait_topic_peers("feed", 1);

        // Stream messages at it and kill it at a random moment.
        let kill_after = Duration::from_millis(rng.gen_range(50..600));
        let started = std::time::Instant::now();
        while started.elapsed() < kill_after {
            publisher.send(&format!("/pub feed crash-{sent}"));
            sent += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        victim.kill();
        // Lines it printed before it died are reports too: read them all.
        victim.drain_for(Duration::from_millis(300));
        // What it reported (a message event means durable) must survive.
        for v in &victim.seen {
            if v["event"] == "message" {
                reported.insert(v["id"].as_str().unwrap().to_owned());
            }
        }
        check_integrity(&victim_dir);
    }
    assert!(
        reported.len() > rounds,
        "too few messages were reported to mean anything: {}",
        reported.len()
    );
    eprintln!(
        "{rounds} SIGKILL rounds, {sent} messages sent, {} reported and all kept",
        reported.len()
    );
}

fn check_integrity(dir: &std::path::Path) {
    let conn = rusqlite::Connection::open(dir.join("inbox.sqlite3")).expect("inbox opens");
    let result: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(result, "ok");
}
