//! Durability through the network (`--sync-writes normal`, the default): a
//! topic message is committed without an fsync, because every member holds
//! it and catch-up refills what a node lacks; a direct message and the
//! outbox, which have no other copy, are fsynced. A power cut that puts an
//! inbox back to an older state loses nothing for good.

mod support;

use std::path::Path;

use support::{temp, TestNode};

/// The inbox's files (the database, its WAL and shared memory index, and
/// the intake log where topic messages land first).
const INBOX_FILES: [&str; 4] = [
    "inbox.sqlite3",
    "inbox.sqlite3-wal",
    "inbox.sqlite3-shm",
    "inbox.intake",
];

fn copy_inbox(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in INBOX_FILES {
        let (src, dst) = (from.join(name), to.join(name));
        let _ = std::fs::remove_file(&dst);
        if src.exists() {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

fn commits(node: &mut TestNode, sync: &str) -> f64 {
    let text = support::http::get(&node.metrics_addr(), "/metrics").body;
    support::metric(&text, &format!("murmur_inbox_commits_total{{sync=\"{sync}\"}}")).unwrap_or(0.0)
}

#[test]
fn an_inbox_put_back_to_an_older_state_gets_its_topic_messages_back_by_catch_up_once() {
    let tmp = temp();
    let (ann_dir, bob_dir, image) = (tmp.path().join("ann"), tmp.path().join("bob"), tmp.path().join("image"));
    let mut ann = TestNode::start("ann", &ann_dir, &["--topic", "t=s"]);
    let bob_args = [
        "--topic",
        "t=s",
        "--peer",
        &ann.addr.clone(),
        "--metrics",
        "127.0.0.1:0",
    ];
    let mut bob = TestNode::start("bob", &bob_dir, &bob_args);
    bob.wait_topic_peers("t", 1);
    ann.wait_topic_peers("t", 1);
    for i in 0..3 {
        ann.send(&format!("/pub t early-{i}"));
        bob.wait_event("message", |v| v["msg"] == format!("early-{i}").as_str());
    }
    // Topic messages went to the intake log (or into SQLite) with no fsync.
    let full_before = commits(&mut bob, "full");
    let topic_commits = commits(&mut bob, "log") + commits(&mut bob, "normal");
    assert!(topic_commits >= 1.0, "topic messages were committed without an fsync");
    ann.send(&format!("/dm {} acknowledged-dm", bob.peer_id));
    ann.wait_event("dm_sent", |_| true);
    bob.wait_event("dm", |v| v["msg"] == "acknowledged-dm");
    assert!(
        commits(&mut bob, "full") > full_before,
        "the received DM was not committed with an fsync"
    );

    // The state a power cut could leave: bob's inbox files as they are now,
    // taken while the process is stopped.
    bob.signal("STOP");
    copy_inbox(&bob_dir, &image);
    bob.signal("CONT");
    for i in 0..5 {
        ann.send(&format!("/pub t late-{i}"));
        bob.wait_event("message", |v| v["msg"] == format!("late-{i}").as_str());
    }
    // The cut: the process dies and the disk holds the older state.
    bob.kill();
    drop(bob);
    copy_inbox(&image, &bob_dir);

    let mut bob = TestNode::start("bob", &bob_dir, &bob_args);
    // The acknowledged DM was in the older state already (it was fsynced
    // before the acknowledgement), before any catch-up.
    let before = bob.inbox("");
    assert!(before.iter().any(|m| m["msg"] == "acknowledged-dm"), "{before:?}");
    assert!(
        !before.iter().any(|m| m["msg"] == "late-0"),
        "the image is not older: {before:?}"
    );
    // Catch-up brings back what the cut lost, each message once.
    for i in 0..5 {
        let m = bob.wait_event("message", |v| v["msg"] == format!("late-{i}").as_str());
        assert_eq!(m["via"], "sync", "{m}");
    }
    let inbox = bob.inbox("t 100");
    let bodies: Vec<&str> = inbox.iter().map(|m| m["msg"].as_str().unwrap()).collect();
    let want = [
        "early-0", "early-1", "early-2", "late-0", "late-1", "late-2", "late-3", "late-4",
    ];
    assert_eq!(bodies, want, "{inbox:?}");
    bob.drain_for(std::time::Duration::from_millis(500));
    let reported = bob
        .seen
        .iter()
        .filter(|v| v["event"] == "message" && v["msg"].as_str().unwrap().starts_with("late-"))
        .count();
    assert_eq!(reported, 5, "each lost message is reported once");
}
