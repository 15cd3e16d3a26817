//! Reliable direct messages between real nodes on loopback: a DM to a peer
//! that is down waits in the outbox (across a restart of the sender) and
//! arrives once when the peer is back; one to a peer that never returns fails
//! with `dm_failed` at its expiry.

mod support;

use std::time::Duration;

use support::{files_containing, temp, TestNode};

#[test]
fn a_dm_to_a_peer_that_is_down_arrives_once_when_it_is_back() {
    let tmp = temp();
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let b = TestNode::start("bob", &b_dir, &[]);
    let bob = b.peer_id.clone();
    b.quit();

    let mut a = TestNode::start("alice", &a_dir, &[]);
    let queued = a.ask(&format!("/dm {bob} are you there?"), "dm_queued");
    assert_eq!(queued["to"], bob.as_str());
    let id = queued["id"].as_str().unwrap().to_owned();
    a.quit();
    // The outbox on disk holds ciphertext only.
    assert!(files_containing(&a_dir, b"are you there?").is_empty());

    // Alice restarts: the DM still waits.
    let mut a = TestNode::start("alice", &a_dir, &[]);
    let pending = a.ask("/pending", "pending");
    assert_eq!(pending["dms"][0]["id"], id.as_str(), "{pending}");
    assert_eq!(pending["dms"][0]["msg"], "are you there?");

    // Bob comes back and connects: the DM is delivered, once, and acknowledged.
    let mut b = TestNode::start("bob", &b_dir, &["--peer", &a.addr.clone()]);
    let dm = b.wait_event("dm", |v| v["id"] == id.as_str());
    assert_eq!(dm["msg"], "are you there?");
    assert_eq!(dm["from"], "alice");
    let sent = a.wait_event("dm_sent", |v| v["id"] == id.as_str());
    assert_eq!(sent["to"], bob.as_str());
    let later = b.drain_for(Duration::from_millis(1500));
    assert!(later.iter().all(|v| v["event"] != "dm"), "{later:?}");
    assert_eq!(b.inbox("").len(), 1);
    let pending = a.ask("/pending", "pending");
    assert_eq!(pending["dms"].as_array().unwrap().len(), 0, "{pending}");
    // Both keep it: Alice as sent to Bob.
    let mine = a.inbox("");
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["to"], bob.as_str());
    assert_eq!(mine[0]["via"], "local");
    assert_eq!(b.inbox("")[0]["via"], "direct");
}

#[test]
fn a_dm_to_a_peer_that_never_returns_fails_at_its_expiry() {
    let tmp = temp();
    let a_dir = tmp.path().join("a");
    let b = TestNode::start("bob", &tmp.path().join("b"), &[]);
    let bob = b.peer_id.clone();
    b.quit();

    let expiry = ["--dm-expiry", "4"];
    let mut a = TestNode::start("alice", &a_dir, &expiry);
    let queued = a.ask(&format!("/dm {bob} hello?"), "dm_queued");
    let id = queued["id"].as_str().unwrap().to_owned();
    a.quit();

    // After a restart of the sender, the expiry still holds.
    let mut a = TestNode::start("alice", &a_dir, &expiry);
    let failed = a.wait_event("dm_failed", |v| v["id"] == id.as_str());
    assert_eq!(failed["to"], bob.as_str());
    assert!(failed["reason"].as_str().unwrap().contains("expiry"), "{failed}");
    let pending = a.ask("/pending", "pending");
    assert_eq!(pending["dms"].as_array().unwrap().len(), 0, "{pending}");
    // Not delivered, so not in the inbox either.
    assert!(a.inbox("").is_empty());
}
