//! Disk trouble: a node whose files may not grow past a limit (RLIMIT_FSIZE,
//! so a write fails with EFBIG as on a full disk) receives messages until
//! storing them fails. Each failed commit gives an `error` event and no
//! `message` event; the node keeps answering; once the limit is lifted the
//! same process stores again; after a restart every message it had reported
//! is there, intact, once, and nothing it did not report.
#![cfg(unix)]

mod support;

use std::collections::BTreeSet;

use support::{temp, TestNode, WAIT};

/// Far below SQLite's auto-checkpoint (1000 pages, 4 MiB): the WAL fills up
/// and stays full, as a full disk would.
const FILE_SIZE_LIMIT: u64 = 256 * 1024;
/// Messages of about 4 KiB: the limit is reached after a few dozen.
const PADDING: usize = 4000;
/// Publishes that must still fail after the first failure.
const AFTER_FAILURE: usize = 5;

#[test]
fn a_full_disk_gives_errors_not_reports_and_loses_nothing_reported() {
    let tmp = temp();
    let victim_dir = tmp.path().join("victim");
    let mut publisher = TestNode::start("pub", &tmp.path().join("pub"), &["--topic", "feed=s"]);
    let mut victim = TestNode::start_with_file_size_limit(
        "victim",
        &victim_dir,
        &["--topic", "feed=s", "--peer", &publisher.addr.clone()],
        FILE_SIZE_LIMIT,
    );
    victim.wait_topic_peers("feed", 1);
    publisher.wait_topic_peers("feed", 1);

    let padding = "x".repeat(PADDING);
    let mut reported = Vec::new();
    let mut failed = Vec::new();
    let mut first_error = String::new();
    for i in 0..(4 * FILE_SIZE_LIMIT as usize / PADDING) {
        let body = format!("disk-{i}-{padding}");
        publisher.send(&format!("/pub feed {body}"));
        publisher.wait_event("published", |_| true);
        // One publish, one commit on the victim: its message or its error.
        let outcome = next_outcome(&mut victim);
        if outcome["event"] == "message" {
            assert_eq!(outcome["msg"], body.as_str(), "messages arrive in order");
            assert!(failed.is_empty(), "a message was stored after a failure: {outcome}");
            reported.push(body);
        } else {
            let error = outcome["error"].as_str().unwrap();
            assert!(error.contains("could not store 1 message(s) in the inbox"), "{error}");
            if first_error.is_empty() {
                first_error = error.to_owned();
            }
            failed.push(body);
            if failed.len() == AFTER_FAILURE {
                break;
            }
        }
    }
    assert_eq!(failed.len(), AFTER_FAILURE, "storing never failed");
    assert!(
        reported.len() >= 5,
        "too few messages before the disk filled up: {}",
        reported.len()
    );
    // No report of the failed ones turns up late.
    let late = victim.drain_for(std::time::Duration::from_millis(500));
    assert!(late.iter().all(|v| v["event"] != "message"), "{late:?}");

    // The node keeps running and answering, its inbox included.
    assert!(victim.is_running());
    assert_eq!(victim.ask("/whoami", "whoami")["name"], "victim");
    assert_eq!(
        bodies(&victim.inbox("feed 1000")),
        reported,
        "the inbox while the disk is full"
    );

    // Once there is room again, the same running node stores again.
    victim.lift_file_size_limit();
    publisher.send("/pub feed room-again");
    assert_eq!(next_outcome(&mut victim)["msg"], "room-again");
    reported.push("room-again".to_owned());
    assert!(victim.quit().success());

    // Restarted: every reported message, intact, once; none of the failed ones.
    let mut victim = TestNode::start("victim", &victim_dir, &[]);
    let inbox = victim.inbox("feed 1000");
    let ids: BTreeSet<&str> = inbox.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), inbox.len(), "a message is stored twice");
    assert_eq!(bodies(&inbox), reported, "after a restart");
    assert!(victim.quit().success());
    eprintln!(
        "{} messages stored, then {} failed with an error event each ({first_error}), then one stored again",
        reported.len() - 1,
        failed.len()
    );
}

/// The node's next `message` or `error` event.
fn next_outcome(node: &mut TestNode) -> serde_json::Value {
    node.wait_matching(WAIT, |v| v["event"] == "message" || v["event"] == "error")
        .unwrap_or_else(|| panic!("{}: neither a message nor an error within {WAIT:?}", node.name))
}

fn bodies(inbox: &[serde_json::Value]) -> Vec<String> {
    inbox.iter().map(|m| m["msg"].as_str().unwrap().to_owned()).collect()
}
