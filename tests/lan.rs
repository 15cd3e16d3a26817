//! murmur on a real (virtual) LAN: hosts in network namespaces joined by a
//! bridge (scripts/testlan.sh), discovering each other by mDNS alone.
//!
//! These need root. With MURMUR_NETNS_TESTS=1 (set by .ci/run) a missing
//! capability fails the tests; without it they are skipped with a message.

mod support;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use support::{temp, TestNode};

/// LAN tests share the CPU badly with each other: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A test LAN; removed on drop, whatever happened in the test.
struct Lan {
    prefix: String,
}

const TESTLAN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/testlan.sh");

fn testlan() -> Command {
    Command::new(TESTLAN)
}

impl Lan {
    /// Makes `n` hosts, or returns `None` (skip) where namespaces cannot be made
    /// and MURMUR_NETNS_TESTS is not 1.
    fn up(tag: &str, n: usize) -> Option<Lan> {
        if !support::netns_tests_can_run(TESTLAN, &format!("the LAN test {tag}")) {
            return None;
        }
        let prefix = format!("mm{}{tag}", std::process::id() % 100_000);
        let status = testlan().args(["up", &n.to_string(), &prefix]).status().unwrap();
        assert!(status.success(), "testlan up failed");
        Some(Lan { prefix })
    }

    fn ns(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    fn link(&self, i: usize, state: &str) {
        let status = testlan()
            .args(["link", &self.prefix, &i.to_string(), state])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn start(&self, i: usize, name: &str, dir: &std::path::Path, extra: &[&str]) -> TestNode {
        TestNode::start_in_netns(&self.ns(i), name, &dir.join(name), extra)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        let _ = testlan().args(["down", &self.prefix]).status();
    }
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn distinct_discoveries(node: &TestNode) -> std::collections::BTreeSet<String> {
    node.seen
        .iter()
        .filter(|v| v["event"] == "peer_discovered")
        .map(|v| v["peer"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn five_hosts_find_each_other_by_mdns_quickly_and_share_messages() {
    let _serial = serial();
    let Some(lan) = Lan::up("five", 5) else {
        return;
    };
    let tmp = temp();
    let names = ["ann", "ben", "cat", "dan", "eve"];
    let mut nodes: Vec<TestNode> = names
        .iter()
        .enumerate()
        .map(|(i, name)| lan.start(i + 1, name, tmp.path(), &["--topic", "news=lan-secret"]))
        .collect();
    let ids: Vec<String> = nodes.iter().map(|n| n.peer_id.clone()).collect();

    // Every node discovers the other four, by mDNS alone (no --peer anywhere).
    let mut first_discovery = Vec::new();
    for node in &mut nodes {
        let others: Vec<String> = ids.iter().filter(|p| **p != node.peer_id).cloned().collect();
        node.wait_event("peer_discovered", |_| true);
        let first = node.seen.iter().position(|v| v["event"] == "peer_discovered").unwrap();
        first_discovery.push(node.seen_after_start(first));
        let deadline = Instant::now() + Duration::from_secs(15);
        while !others.iter().all(|p| distinct_discoveries(node).contains(p)) {
            assert!(
                Instant::now() < deadline,
                "{} discovered only {:?}",
                node.name,
                distinct_discoveries(node)
            );
            node.wait_event_for("peer_discovered", Duration::from_millis(200), |_| true);
        }
        assert!(node
            .seen
            .iter()
            .filter(|v| v["event"] == "peer_discovered")
            .all(|v| v["via"] == "mdns"));
    }

    // Discovery is fast: from start to the first peer_discovered.
    let mut sorted = first_discovery.clone();
    sorted.sort();
    let (median, max) = (sorted[2], sorted[4]);
    eprintln!("first discovery after start: {first_discovery:?} (median {median:?}, max {max:?})");
    assert!(
        median <= Duration::from_secs(1),
        "median {median:?} > 1 s: {first_discovery:?}"
    );
    assert!(max <= Duration::from_secs(3), "max {max:?} > 3 s: {first_discovery:?}");

    // A message published on one reaches the four others.
    for node in &mut nodes {
        node.wait_peers("to be all four", |p| p.len() == 4);
        node.wait_topic_peers("news", 4);
    }
    nodes[0].send("/pub news hello LAN");
    for node in &mut nodes[1..] {
        let m = node.wait_event("message", |v| v["msg"] == "hello LAN");
        assert_eq!(m["from"], "ann");
    }
}

#[test]
fn small_meshes_deliver_and_do_not_stay_too_small() {
    let _serial = serial();
    let Some(lan) = Lan::up("small", 3) else {
        return;
    };
    let tmp = temp();
    let mut a = lan.start(1, "a", tmp.path(), &["--topic", "t=s"]);
    let mut b = lan.start(2, "b", tmp.path(), &["--topic", "t=s"]);
    // Two nodes: a message published one second after they meet arrives.
    a.wait_event("peer_connected", |v| v["peer"] == b.peer_id.as_str());
    std::thread::sleep(Duration::from_secs(1));
    a.send("/pub t one second after meeting");
    b.wait_event("message", |v| v["msg"] == "one second after meeting");

    // Three nodes: every mesh holds both other peers (mesh_n_low is 2).
    let mut c = lan.start(3, "c", tmp.path(), &["--topic", "t=s"]);
    for node in [&mut a, &mut b, &mut c] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let topics = node.ask("/topics", "topics");
            if topics["mesh"]["t"] == 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: mesh stays too small: {topics}",
                node.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    c.send("/pub t from the newcomer");
    a.wait_event("message", |v| v["msg"] == "from the newcomer");
    b.wait_event("message", |v| v["msg"] == "from the newcomer");
}

#[test]
fn a_partitioned_host_reconnects_by_itself_after_the_link_heals_and_catches_up() {
    let _serial = serial();
    let Some(lan) = Lan::up("part", 4) else {
        return;
    };
    let tmp = temp();
    let mut nodes: Vec<TestNode> = ["pub", "b", "c", "cut"]
        .iter()
        .enumerate()
        .map(|(i, name)| lan.start(i + 1, name, tmp.path(), &["--topic", "news=s", "--sync-interval", "5"]))
        .collect();
    for node in &mut nodes {
        node.wait_peers("to be all three", |p| p.len() == 3);
        node.wait_topic_peers("news", 3);
    }

    // Unplug host 4 for 20 s while the publisher keeps publishing: long
    // enough for the pings to fail and the connections to be closed, so what
    // is published meanwhile cannot wait in a TCP queue for the heal.
    lan.link(4, "down");
    let cut_at = Instant::now();
    let mut during = Vec::new();
    while cut_at.elapsed() < Duration::from_secs(20) {
        let text = format!("during-{}", during.len());
        nodes[0].send(&format!("/pub news {text}"));
        during.push(text);
        std::thread::sleep(Duration::from_millis(500));
    }
    lan.link(4, "up");
    let healed = Instant::now();

    // It reconnects by itself…
    let publisher = nodes[0].peer_id.clone();
    nodes[3].wait_peers("to include the publisher again", |p| {
        p.iter().any(|p| p["peer"] == publisher.as_str())
    });
    nodes[3].wait_topic_peers("news", 3);
    nodes[0].wait_topic_peers("news", 3);
    eprintln!(
        "reconnected (subscriptions known again) {:?} after the heal",
        healed.elapsed()
    );

    // …and what is published after the heal reaches it within 5 s.
    for i in 0..6 {
        let text = format!("after-{i}");
        let sent = Instant::now();
        nodes[0].send(&format!("/pub news {text}"));
        nodes[3].wait_event("message", |v| v["msg"] == text.as_str());
        let latency = nodes[3].last_seen_at().duration_since(sent);
        assert!(latency <= Duration::from_secs(5), "{text} took {latency:?}");
        std::thread::sleep(Duration::from_millis(300));
    }

    // Nothing the connected nodes stored is lost.
    for node in &mut nodes[1..3] {
        let inbox = node.inbox("news 1000");
        let bodies: Vec<&str> = inbox.iter().map(|m| m["msg"].as_str().unwrap()).collect();
        for text in &during {
            assert!(bodies.contains(&text.as_str()), "{} lost {text}: {bodies:?}", node.name);
        }
        assert_eq!(bodies.iter().filter(|b| b.starts_with("after-")).count(), 6);
    }

    // …and gets what was published while it was cut off (gossip's blind
    // spot) by catch-up: each once, within a few sync intervals of the heal.
    let deadline = healed + Duration::from_secs(20);
    loop {
        let inbox = nodes[3].inbox("news 1000");
        let bodies: Vec<&str> = inbox.iter().map(|m| m["msg"].as_str().unwrap()).collect();
        let missing: Vec<&String> = during.iter().filter(|t| !bodies.contains(&t.as_str())).collect();
        if missing.is_empty() {
            for text in &during {
                assert_eq!(bodies.iter().filter(|b| *b == text).count(), 1, "{text} twice");
            }
            let synced = inbox.iter().filter(|m| m["via"] == "sync").count();
            // The connections were closed during the cut: gossip could not bring them.
            assert!(synced > 0, "none of the partition's messages came by catch-up");
            eprintln!(
                "all {} messages of the partition present {:?} after the heal ({synced} by catch-up)",
                during.len(),
                healed.elapsed()
            );
            break;
        }
        assert!(Instant::now() < deadline, "still missing after the heal: {missing:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_killed_host_disappears_from_its_peers() {
    let _serial = serial();
    let Some(lan) = Lan::up("kill", 3) else {
        return;
    };
    let tmp = temp();
    let mut a = lan.start(1, "a", tmp.path(), &[]);
    let mut b = lan.start(2, "b", tmp.path(), &[]);
    let mut c = lan.start(3, "c", tmp.path(), &[]);
    let gone = c.peer_id.clone();
    for node in [&mut a, &mut b] {
        node.wait_peers("to include c", |p| p.iter().any(|p| p["peer"] == gone.as_str()));
    }
    c.kill();
    let killed = Instant::now();
    for node in [&mut a, &mut b] {
        node.wait_peers("to lose c", |p| !p.iter().any(|p| p["peer"] == gone.as_str()));
    }
    eprintln!(
        "the killed host left both peer lists {:?} after the kill",
        killed.elapsed()
    );
    // Printed before the `/peers` answer that no longer lists c.
    assert!(a
        .seen
        .iter()
        .any(|v| v["event"] == "peer_disconnected" && v["peer"] == gone.as_str()));
}

#[test]
fn doctor_reports_multicast_interfaces_and_the_peers_that_answer() {
    let _serial = serial();
    let Some(lan) = Lan::up("doc", 2) else { return };
    let tmp = temp();
    let other = lan.start(2, "other", tmp.path(), &[]);
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lan.ns(1),
            support::murmur_bin(),
            "doctor",
            "--json",
            "--seconds",
            "2",
        ])
        .output()
        .expect("run murmur doctor");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let eth0 = report["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "eth0")
        .expect("eth0 listed");
    assert_eq!(
        (eth0["addr"].as_str(), eth0["multicast"].as_bool(), eth0["up"].as_bool()),
        (Some("10.77.0.11"), Some(true), Some(true))
    );
    assert_eq!(report["local_loop"], true, "{report}");
    let answered = report["remote_peers"][other.peer_id.as_str()]
        .as_array()
        .expect("the other host answered");
    assert!(
        answered
            .iter()
            .any(|a| a.as_str().unwrap().starts_with("/ip4/10.77.0.12/")),
        "{report}"
    );
    assert!(report["listen_addrs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a.as_str().unwrap().starts_with("/ip4/10.77.0.11/tcp/")));

    // Alone on a host whose only interface is down: it says what is missing.
    lan.link(1, "down");
    let status = Command::new("ip")
        .args(["-n", &lan.ns(1), "link", "set", "eth0", "down"])
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lan.ns(1),
            support::murmur_bin(),
            "doctor",
            "--seconds",
            "1",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("no interface is up with multicast"), "{text}");
    assert!(text.contains("--peer"), "{text}");
}
