//! murmur beyond one LAN: two home LANs behind NAT routers (both using the
//! same private subnet) and a public segment with a hub started with
//! `--relay-server`, all network namespaces made by scripts/testnat.sh.
//! Members get only the hub's address (a `/dns4` name their hosts files
//! resolve) and the topic secret; they find each other through the DHT,
//! reach each other through the hub's relay, and hole-punch a direct
//! connection where the NATs allow it.
//!
//! These need root and nftables. With MURMUR_NETNS_TESTS=1 (set by .ci/run)
//! a missing capability fails the tests; without it they are skipped.

mod support;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{files_containing, temp, TestNode};

/// The WAN tests share the CPU badly with each other: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const TOPIC: &str = "kitchen-table-topic";
const SECRET: &str = "shared-out-of-band-secret";

const TESTNAT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/testnat.sh");

fn testnat() -> Command {
    Command::new(TESTNAT)
}

/// A test WAN; removed on drop, whatever happened in the test.
struct Wan {
    prefix: String,
}

impl Wan {
    /// Builds it with LAN 2's router `mode` (`cone` or `symmetric`), or
    /// returns `None` (skip) where it cannot be built and
    /// MURMUR_NETNS_TESTS is not 1.
    fn up(tag: &str, mode: &str) -> Option<Wan> {
        if !support::netns_tests_can_run(TESTNAT, &format!("the WAN test {tag}")) {
            return None;
        }
        let prefix = format!("mw{}{tag}", std::process::id() % 100_000);
        let status = testnat().args(["up", &prefix, mode]).status().unwrap();
        assert!(status.success(), "testnat up failed");
        Some(Wan { prefix })
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// Starts the hub: relay server and DHT server at 198.51.100.10:4001.
    fn hub(&self, dir: &std::path::Path) -> TestNode {
        let args = [
            "--no-mdns",
            "--listen",
            "/ip4/0.0.0.0/tcp/4001",
            "--listen",
            "/ip4/0.0.0.0/udp/4001/quic-v1",
            "--relay-server",
            "--external-addr",
            "/ip4/198.51.100.10/tcp/4001",
            "--external-addr",
            "/ip4/198.51.100.10/udp/4001/quic-v1",
            "--private-wan",
        ];
        TestNode::launch(
            &["ip", "netns", "exec", &self.ns("hub")],
            "hub",
            &dir.join("hub"),
            &args,
            &[],
        )
    }

    /// Starts a member on `host` (mDNS on, default listen addresses) with `extra` arguments.
    fn member(&self, host: &str, name: &str, dir: &std::path::Path, extra: &[&str]) -> TestNode {
        let mut args = vec![
            "--topic",
            "kitchen-table-topic=shared-out-of-band-secret",
            "--private-wan",
        ];
        args.extend_from_slice(extra);
        TestNode::launch(
            &["ip", "netns", "exec", &self.ns(host)],
            name,
            &dir.join(name),
            &args,
            &[],
        )
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        let _ = testnat().args(["down", &self.prefix]).status();
    }
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `--bootstrap` address of the hub, by name.
fn bootstrap(hub: &TestNode) -> String {
    format!("/dns4/hub.murmur.test/tcp/4001/p2p/{}", hub.peer_id)
}

/// Polls `/peers` on `node` until `peer` is listed, and returns its entry.
fn peer_entry(node: &mut TestNode, peer: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let peers = node.wait_peers(what, |list| list.iter().any(|p| p["peer"] == peer && pred(p)));
    peers.into_iter().find(|p| p["peer"] == peer).unwrap()
}

#[test]
fn members_behind_two_cone_nats_meet_through_the_dht_and_hole_punch_a_direct_connection() {
    let _serial = serial();
    let Some(wan) = Wan::up("cone", "cone") else {
        return;
    };
    let tmp = temp();
    // The hub's traffic, captured on its only interface for the whole test.
    let pcap = tmp.path().join("hub.pcapng");
    let hub_ns = wan.ns("hub");
    let mut tshark = support::start_capture(&["ip", "netns", "exec", &hub_ns], "eth0", "", &pcap);

    let mut hub = wan.hub(tmp.path());
    let boot = bootstrap(&hub);
    let mut ann = wan.member("a", "ann", tmp.path(), &["--bootstrap", &boot]);
    ann.wait_event("relay_reserved", |v| v["relay"] == hub.peer_id.as_str());
    ann.send(&format!("/pub {TOPIC} first-words-from-ann"));

    // Bob, behind the other NAT on the same private subnet, knows only the hub.
    let mut bob = wan.member("b", "bob", tmp.path(), &["--bootstrap", &boot]);
    let first = bob.wait_event("message", |v| v["msg"] == "first-words-from-ann");
    assert_eq!(first["from"], "ann");
    let took = bob.last_seen_at().duration_since(bob.started);
    eprintln!("bob's first message arrived {took:?} after his start");
    let found = bob
        .seen
        .iter()
        .any(|v| v["event"] == "peer_discovered" && v["via"] == "dht" && v["peer"] == ann.peer_id.as_str())
        || ann
            .seen
            .iter()
            .any(|v| v["event"] == "peer_discovered" && v["via"] == "dht" && v["peer"] == bob.peer_id.as_str());
    let found = found
        || ann
            .wait_event_for("peer_discovered", Duration::from_secs(5), |v| {
                v["via"] == "dht" && v["peer"] == bob.peer_id.as_str()
            })
            .is_some();
    assert!(found, "neither member reports finding the other in the DHT");

    // Both ways, and a DM by peer id.
    bob.send(&format!("/pub {TOPIC} bob-answers-across-two-nats"));
    ann.wait_event("message", |v| v["msg"] == "bob-answers-across-two-nats");
    bob.send(&format!("/dm {} a-private-word-for-ann", ann.peer_id));
    bob.wait_event("dm_sent", |v| v["to"] == ann.peer_id.as_str());
    let dm = ann.wait_event("dm", |v| v["msg"] == "a-private-word-for-ann");
    assert_eq!(dm["from"], "bob");

    // Within 30 s of meeting, the connection is direct.
    let met = Instant::now();
    let deadline = met + Duration::from_secs(30);
    loop {
        let peers = ann.ask("/peers", "peers")["peers"].as_array().unwrap().clone();
        let entry = peers.iter().find(|p| p["peer"] == bob.peer_id.as_str());
        if entry.is_some_and(|p| p["relayed"] == false) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ann's connection to bob is still relayed after 30 s: {entry:?}\n{}",
            ann.report()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!("direct {:?} after the check began", met.elapsed());
    ann.seen_or_wait_for("peer_direct", |v| {
        v["peer"] == bob.peer_id.as_str() && v["name"] == "bob"
    });
    peer_entry(&mut bob, &ann.peer_id, "to list ann as direct", |p| {
        p["relayed"] == false
    });

    // Dan, on Bob's LAN, shares no topic with Ann and has never met her: a DM
    // to her peer id finds her through the DHT (her peer rendezvous record).
    let mut dan = TestNode::launch(
        &["ip", "netns", "exec", &wan.ns("d")],
        "dan",
        &tmp.path().join("dan"),
        &["--private-wan", "--no-mdns", "--bootstrap", &boot],
        &[],
    );
    dan.wait_event("relay_reserved", |_| true);
    dan.send(&format!("/dm {} found-you-by-your-peer-id", ann.peer_id));
    let sent = dan.wait_event("dm_sent", |v| v["to"] == ann.peer_id.as_str());
    assert_eq!(sent["name"], "ann", "{sent}");
    let dm = ann.wait_event("dm", |v| v["msg"] == "found-you-by-your-peer-id");
    assert_eq!(dm["from"], "dan");
    dan.seen_or_wait_for("peer_discovered", |v| {
        v["via"] == "dht" && v["peer"] == ann.peer_id.as_str()
    });
    drop(dan);

    // Carol, on Ann's LAN with no bootstrap at all, hears Bob through Ann.
    let mut carol = wan.member("c", "carol", tmp.path(), &[]);
    carol.wait_event("peer_connected", |v| v["peer"] == ann.peer_id.as_str());
    carol.wait_topic_peers(TOPIC, 1);
    ann.wait_topic_peers(TOPIC, 2);
    std::thread::sleep(Duration::from_secs(2));
    bob.send(&format!("/pub {TOPIC} bob-to-the-whole-table"));
    carol.wait_event("message", |v| v["msg"] == "bob-to-the-whole-table");

    // The hub goes down: the members keep talking over their direct connection.
    hub.kill();
    std::thread::sleep(Duration::from_secs(1));
    bob.send(&format!("/pub {TOPIC} still-here-without-the-hub"));
    ann.wait_event("message", |v| v["msg"] == "still-here-without-the-hub");
    ann.send(&format!("/pub {TOPIC} ann-answers-without-the-hub"));
    bob.wait_event("message", |v| v["msg"] == "ann-answers-without-the-hub");

    // The hub relayed and served the DHT, but saw nothing of the topic: no
    // message event, and neither its capture nor its data dir holds the
    // topic's name, its secret or any body.
    assert!(
        !hub.seen.iter().any(|v| v["event"] == "message" || v["event"] == "dm"),
        "the hub reported a message"
    );
    let _ = Command::new("kill").args(["-INT", &tshark.id().to_string()]).status();
    let _ = tshark.wait();
    let capture = std::fs::read(&pcap).unwrap();
    assert!(
        capture.len() > 10_000,
        "the capture is too small to mean anything: {} bytes",
        capture.len()
    );
    let secrets = [
        TOPIC,
        SECRET,
        "first-words-from-ann",
        "bob-answers-across-two-nats",
        "a-private-word-for-ann",
        "found-you-by-your-peer-id",
        "bob-to-the-whole-table",
    ];
    for secret in secrets {
        let needle = secret.as_bytes();
        assert!(
            !capture.windows(needle.len()).any(|w| w == needle),
            "the hub's capture holds {secret:?}"
        );
        let files = files_containing(&tmp.path().join("hub"), needle);
        assert!(files.is_empty(), "the hub's data dir holds {secret:?} in {files:?}");
    }
}

#[test]
fn a_member_behind_a_symmetric_nat_talks_through_the_relay() {
    let _serial = serial();
    let Some(wan) = Wan::up("sym", "symmetric") else {
        return;
    };
    let tmp = temp();
    let hub = wan.hub(tmp.path());
    let boot = bootstrap(&hub);
    let mut ann = wan.member("a", "ann", tmp.path(), &["--bootstrap", &boot]);
    let mut dan = wan.member("d", "dan", tmp.path(), &["--bootstrap", &boot]);
    ann.wait_event("peer_connected", |v| v["peer"] == dan.peer_id.as_str());
    ann.wait_topic_peers(TOPIC, 1);
    dan.wait_topic_peers(TOPIC, 1);
    dan.send(&format!("/pub {TOPIC} from-behind-a-symmetric-nat"));
    ann.wait_event("message", |v| v["msg"] == "from-behind-a-symmetric-nat");
    ann.send(&format!("/pub {TOPIC} answer-through-the-relay"));
    dan.wait_event("message", |v| v["msg"] == "answer-through-the-relay");
    ann.send(&format!("/dm {} relayed-dm-for-dan", dan.peer_id));
    dan.wait_event("dm", |v| v["msg"] == "relayed-dm-for-dan");
    // Hole punching cannot get through a NAT that maps every flow to a new
    // port: the connection stays relayed, and /peers says so.
    std::thread::sleep(Duration::from_secs(10));
    let entry = peer_entry(&mut ann, &dan.peer_id, "to list dan", |_| true);
    assert_eq!(entry["relayed"], true, "{entry}");
    dan.send(&format!("/pub {TOPIC} still-relayed-ten-seconds-later"));
    ann.wait_event("message", |v| v["msg"] == "still-relayed-ten-seconds-later");

    // `murmur doctor` on Dan's host sees it all: the hub answers, the NAT
    // hides the host, and the relay holds a slot.
    let doctor = Command::new("ip")
        .args([
            "netns",
            "exec",
            &wan.ns("d"),
            support::murmur_bin(),
            "doctor",
            "--json",
            "--seconds",
            "1",
        ])
        .args(["--private-wan", "--bootstrap", &boot])
        .output()
        .unwrap();
    assert!(doctor.status.success(), "{}", String::from_utf8_lossy(&doctor.stderr));
    let report: Value = serde_json::from_slice(&doctor.stdout).unwrap();
    assert_eq!(report["wan"]["bootstrap"][0]["reachable"], true, "{report}");
    assert_eq!(report["wan"]["reachability"], "private", "{report}");
    assert!(
        report["wan"]["relay"][1].as_str().unwrap().contains("/p2p-circuit"),
        "{report}"
    );

    // Dan stops; restarted with no --bootstrap at all, he rejoins through the
    // routing table he saved, and catches up on what he missed.
    let dan_id = dan.peer_id.clone();
    assert!(dan.quit().success());
    ann.wait_event("peer_disconnected", |v| v["peer"] == dan_id.as_str());
    ann.send(&format!("/pub {TOPIC} said-while-dan-was-away"));
    let mut dan = wan.member("d", "dan", tmp.path(), &[]);
    let missed = dan.wait_event("message", |v| v["msg"] == "said-while-dan-was-away");
    assert_eq!(missed["from"], "ann");
}
