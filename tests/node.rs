//! Real murmur nodes on loopback: encrypted topics, direct messages, queued
//! publishes, the persistent inbox and the stdin command language.

mod support;

use std::time::{Duration, Instant};

use support::{files_containing, temp, TestNode};

#[test]
fn topic_messages_reach_holders_of_the_secret_only() {
    let tmp = temp();
    let mut a = TestNode::start("alice", &tmp.path().join("a"), &[]);
    let mut b = TestNode::start("bob", &tmp.path().join("b"), &["--peer", &a.addr.clone()]);
    let mut c = TestNode::start(
        "carol",
        &tmp.path().join("c"),
        &["--peer", &a.addr.clone(), "--peer", &b.addr.clone()],
    );
    a.subscribe("news", Some("s3cret"));
    b.subscribe("news", Some("s3cret"));
    c.subscribe("news", Some("wrong-guess"));

    a.send("/pub news first-from-alice");
    let m = b.wait_event("message", |v| v["msg"] == "first-from-alice");
    assert_eq!(m["from"], "alice");
    assert_eq!(m["topic"], "news");
    assert_eq!(m["peer"], a.peer_id.as_str());
    assert!(m["ts"].as_u64().unwrap() > 1_700_000_000_000);

    b.send("/pub news reply-from-bob");
    let m = a.wait_event("message", |v| v["msg"] == "reply-from-bob");
    assert_eq!(m["from"], "bob");

    // A line without a leading '/' goes to the topic last used.
    a.send("plain line from alice");
    b.wait_event("message", |v| v["msg"] == "plain line from alice");

    // /pub --id: a retry with the same id sends nothing again.
    a.send("/pub --id retry-7 news once-only");
    let first = b.wait_event("message", |v| v["msg"] == "once-only");
    let notice = a.ask("/pub --id retry-7 news once-only", "notice");
    assert!(
        notice["text"].as_str().unwrap().contains(first["id"].as_str().unwrap()),
        "{notice}"
    );
    let late = b.drain_for(Duration::from_millis(800));
    assert!(late.iter().all(|v| v["msg"] != "once-only"), "{late:?}");

    // Carol, with the wrong secret, sees none of it, then or later.
    let late = c.drain_for(Duration::from_secs(1));
    assert!(
        late.iter().all(|v| v["event"] != "message"),
        "carol got a message: {late:?}"
    );
    assert!(c.inbox("").is_empty());
    assert!(files_containing(&c.data_dir, b"first-from-alice").is_empty());
    assert!(files_containing(&c.data_dir, b"reply-from-bob").is_empty());
    // …and her own messages do not reach the others.
    c.send("/pub news carol-wrong-key");
    c.wait_event("published", |_| true);
    let late = a.drain_for(Duration::from_secs(1));
    assert!(late.iter().all(|v| v["msg"] != "carol-wrong-key"), "{late:?}");
}

#[test]
fn direct_messages_by_peer_id_and_by_name_are_acknowledged() {
    let tmp = temp();
    let mut a = TestNode::start("alice", &tmp.path().join("a"), &[]);
    let mut b = TestNode::start("bob", &tmp.path().join("b"), &["--peer", &a.addr.clone()]);
    b.wait_peers("include alice", |p| p.iter().any(|p| p["name"] == "alice"));

    a.send(&format!("/dm {} hello by id", b.peer_id));
    let sent = a.wait_event("dm_sent", |_| true);
    assert_eq!(sent["to"], b.peer_id.as_str());
    let dm = b.wait_event("dm", |v| v["msg"] == "hello by id");
    assert_eq!(dm["from"], "alice");
    assert_eq!(dm["peer"], a.peer_id.as_str());
    assert_eq!(dm["id"], sent["id"]);

    b.send("/dm ALICE hello by name");
    let sent = b.wait_event("dm_sent", |v| v["to"] == a.peer_id.as_str());
    // Events name the peers murmur knows: readable output says "delivered to alice".
    assert_eq!(sent["name"], "alice", "{sent}");
    let connected = b.seen.iter().find(|v| v["event"] == "peer_connected").cloned().unwrap();
    assert_eq!(connected["name"], "alice", "{connected}");
    assert_eq!(connected["relayed"], false, "{connected}");
    let dm = a.wait_event("dm", |v| v["msg"] == "hello by name");
    assert_eq!(dm["from"], "bob");

    // Both sides keep the conversation in their inbox.
    let inbox = a.inbox("");
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    assert_eq!(inbox[0]["msg"], "hello by id");
    assert_eq!(inbox[0]["to"], b.peer_id.as_str());
    assert_eq!(inbox[1]["msg"], "hello by name");
    assert_eq!(inbox[1]["kind"], "dm");
    // Bob's copy names whom it went to, as the dm_sent event did.
    let mine = b.inbox("");
    let to_alice = mine.iter().find(|m| m["msg"] == "hello by name").unwrap();
    assert_eq!(to_alice["to"], a.peer_id.as_str(), "{to_alice}");
    assert_eq!(to_alice["to_name"], "alice", "{to_alice}");

    // An unknown name is a clear error; a peer id that cannot be reached now
    // is kept in the outbox, and /pending says so.
    let e = a.ask("/dm nobody hi", "error");
    assert!(e["error"].as_str().unwrap().contains("unknown peer \"nobody\""), "{e}");
    let stranger = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    let queued = a.ask(&format!("/dm {stranger} hi"), "dm_queued");
    assert_eq!(queued["to"], stranger);
    let pending = a.ask("/pending", "pending");
    assert_eq!(pending["dms"][0]["to"], stranger, "{pending}");
    assert_eq!(pending["dms"][0]["msg"], "hi", "{pending}");
    let e = a.ask(&format!("/dm {} hi", a.peer_id), "error");
    assert!(e["error"].as_str().unwrap().contains("itself"), "{e}");
    // By its own name too: not "unknown peer".
    let e = a.ask("/dm Alice hi", "error");
    assert!(e["error"].as_str().unwrap().contains("itself"), "{e}");
}

#[test]
fn a_message_published_before_any_peer_is_delivered_when_one_arrives() {
    let tmp = temp();
    let mut a = TestNode::start("alice", &tmp.path().join("a"), &[]);
    a.subscribe("news", Some("s3cret"));
    a.send("/pub news sent-while-alone");
    let p = a.wait_event("published", |_| true);
    assert_eq!(p["queued"], true);
    let pending = a.ask("/pending", "pending");
    assert_eq!(pending["publishes"]["news"], 1, "{pending}");

    let mut b = TestNode::start(
        "bob",
        &tmp.path().join("b"),
        &["--topic", "news=s3cret", "--peer", &a.addr.clone()],
    );
    let m = b.wait_event("message", |v| v["msg"] == "sent-while-alone");
    assert_eq!(m["id"], p["id"]);
    // Delivered once.
    let later = b.drain_for(Duration::from_millis(1500));
    assert!(later.iter().all(|v| v["event"] != "message"), "{later:?}");
}

#[test]
fn an_answer_never_comes_out_before_an_event_emitted_earlier() {
    let tmp = temp();
    let mut a = TestNode::start("alice", &tmp.path().join("a"), &[]);
    let mut b = TestNode::start("bob", &tmp.path().join("b"), &["--peer", &a.addr.clone()]);
    let gone = b.peer_id.clone();
    // Reported once identify names him (a connection closed before that is
    // reported neither way).
    a.seen_or_wait_for("peer_connected", |v| v["peer"] == gone.as_str());
    b.kill();
    a.wait_peers("to lose bob", |p| !p.iter().any(|p| p["peer"] == gone.as_str()));
    // The `/peers` answer without Bob came after the event saying he left.
    assert!(
        a.seen
            .iter()
            .any(|v| v["event"] == "peer_disconnected" && v["peer"] == gone.as_str()),
        "{:?}",
        a.seen
    );
}

#[test]
fn inbox_and_subscriptions_survive_a_restart_and_hold_no_plaintext() {
    let tmp = temp();
    let b_dir = tmp.path().join("b");
    let mut a = TestNode::start(
        "alice",
        &tmp.path().join("a"),
        &["--topic", "news=hunter2-topic-secret"],
    );
    let mut b = TestNode::start(
        "bob",
        &b_dir,
        &["--topic", "news=hunter2-topic-secret", "--peer", &a.addr.clone()],
    );
    let peer_id = b.peer_id.clone();
    for i in 0..3 {
        a.send(&format!("/pub news restart-body-{i}"));
        b.wait_event("message", |v| v["msg"] == format!("restart-body-{i}"));
    }
    b.wait_peers("include alice", |p| p.iter().any(|p| p["name"] == "alice"));
    b.send("/dm alice secret-dm-body");
    b.wait_event("dm_sent", |_| true);
    assert!(b.quit().success());

    let mut b = TestNode::start("bob", &b_dir, &[]);
    assert_eq!(b.peer_id, peer_id, "the peer id must survive a restart");
    let topics = b.ask("/topics", "topics");
    assert_eq!(topics["topics"], serde_json::json!(["news"]));
    let inbox = b.inbox("");
    let bodies: Vec<&str> = inbox.iter().map(|m| m["msg"].as_str().unwrap()).collect();
    assert_eq!(
        bodies,
        ["restart-body-0", "restart-body-1", "restart-body-2", "secret-dm-body"]
    );
    assert!(inbox[..3]
        .iter()
        .all(|m| m["from"] == "alice" && m["topic"] == "news" && m["kind"] == "topic"));
    assert_eq!(b.inbox("news 2").len(), 2);
    assert!(b.quit().success());

    for needle in ["restart-body-", "secret-dm-body", "hunter2-topic-secret"] {
        for dir in [&b_dir, &tmp.path().join("a")] {
            let hits = files_containing(dir, needle.as_bytes());
            assert!(hits.is_empty(), "{needle:?} in plaintext in {hits:?}");
        }
    }
}

#[test]
fn a_name_two_peers_share_is_ambiguous_until_one_leaves() {
    let tmp = temp();
    let mut a = TestNode::start("alice", &tmp.path().join("a"), &[]);
    let b1 = TestNode::start("bob", &tmp.path().join("b1"), &["--peer", &a.addr.clone()]);
    let b2 = TestNode::start("bob", &tmp.path().join("b2"), &["--peer", &a.addr.clone()]);
    let bobs = |p: &[serde_json::Value]| p.iter().filter(|p| p["name"] == "bob").count();
    a.wait_peers("include both bobs", |p| bobs(p) == 2);
    let e = a.ask("/dm bob which one?", "error");
    let error = e["error"].as_str().unwrap();
    assert!(error.starts_with("2 peers are named \"bob\"; use a peer id: "), "{e}");
    assert!(error.contains(&b1.peer_id) && error.contains(&b2.peer_id), "{e}");
    // Once one has gone, the name is the other's again.
    assert!(b2.quit().success());
    a.wait_peers("hold one bob", |p| bobs(p) == 1);
    a.send("/dm bob you, the one still here");
    let sent = a.wait_event("dm_sent", |_| true);
    assert_eq!(sent["to"], b1.peer_id.as_str(), "{sent}");
}

/// A node that stops (`/quit`, SIGTERM) closes its connections first, so its
/// peers report it gone at once, even over QUIC, where a process that just
/// exits sends nothing and the peer would notice only when pings time out
/// (5 s and more). The bound below sits far under that and far over a close.
#[test]
fn a_node_that_stops_is_reported_gone_at_once_even_over_quic() {
    let tmp = temp();
    let quic = ["--no-mdns", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1"];
    let mut a = TestNode::launch(&[], "alice", &tmp.path().join("a"), &quic, &[]);
    assert!(a.addr.contains("/quic-v1/"), "{}", a.addr);
    let a_addr = a.addr.clone();
    let args = [&quic[..], &["--peer", &a_addr]].concat();
    let b = TestNode::launch(&[], "bob", &tmp.path().join("b"), &args, &[]);
    let mut c = TestNode::launch(&[], "carol", &tmp.path().join("c"), &args, &[]);
    let (bob, carol) = (b.peer_id.clone(), c.peer_id.clone());
    a.wait_peers("to include bob and carol", |p| {
        [&bob, &carol]
            .iter()
            .all(|id| p.iter().any(|p| p["peer"] == id.as_str()))
    });
    let reported_gone = |a: &mut TestNode, id: &str, how: &str| {
        let within = Duration::from_millis(2500);
        let told = a.wait_event_for("peer_disconnected", within, |v| v["peer"] == id);
        assert!(
            told.is_some(),
            "{how} was not reported within {within:?}\n{}",
            a.report()
        );
    };
    assert!(b.quit().success());
    reported_gone(&mut a, &bob, "bob's /quit");
    c.signal("TERM");
    assert!(c.wait_exit().success(), "SIGTERM with stdin open ends the process");
    reported_gone(&mut a, &carol, "carol's SIGTERM");
    assert!(a.wait_peers("to be empty", |p| p.is_empty()).is_empty());
}

#[test]
fn leaving_a_topic_says_what_it_will_not_send() {
    let tmp = temp();
    let mut a = TestNode::start("alice", &tmp.path().join("a"), &["--topic", "news=s3cret"]);
    // Alone: both wait for a subscribed peer.
    a.send("/pub news first");
    a.send("/pub news second");
    let p = a.wait_event("published", |v| v["queued"] == true);
    assert_eq!(p["topic"], "news", "{p}");
    a.wait_event("published", |_| true);
    assert_eq!(a.ask("/pending", "pending")["publishes"]["news"], 2);
    a.send("/unsub news");
    a.wait_event("unsubscribed", |_| true);
    let notice = a.wait_event("notice", |_| true);
    assert_eq!(
        notice["text"],
        "2 message(s) to news were still waiting for a peer and will not be sent (they stay in the inbox)"
    );
    assert_eq!(
        a.ask("/pending", "pending")["publishes"].as_object().map(|m| m.len()),
        Some(0)
    );
}

#[test]
fn the_console_walks_back_through_the_inbox_page_by_page() {
    let tmp = temp();
    let mut a = TestNode::start("alice", &tmp.path().join("a"), &["--topic", "news=s3cret"]);
    for i in 0..3 {
        a.send(&format!("/pub news page-{i}"));
        a.wait_event("published", |_| true);
    }
    let page = a.ask("/inbox news 2", "inbox");
    let msgs = |p: &serde_json::Value| -> Vec<String> {
        p["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["msg"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(msgs(&page), ["page-1", "page-2"], "{page}");
    let before = page["before"]
        .as_str()
        .expect("a full page names the cursor before it")
        .to_owned();
    let older = a.ask(&format!("/inbox news 2 --before {before}"), "inbox");
    assert_eq!(msgs(&older), ["page-0"], "{older}");
    let oldest = older["messages"][0]["cursor"].as_str().unwrap().to_owned();
    let none = a.ask(&format!("/inbox news 2 --before {oldest}"), "notice");
    assert_eq!(none["text"], "no older messages");
    // A cursor that is not one is an error, not the newest page.
    let e = a.ask("/inbox news 2 --before zzz", "error");
    assert!(
        e["error"].as_str().unwrap().starts_with("--before takes a cursor"),
        "{e}"
    );
}

#[test]
fn a_second_node_on_the_same_data_dir_refuses_to_start() {
    let tmp = temp();
    let dir = tmp.path().join("a");
    let mut a = TestNode::start("alice", &dir, &["--topic", "news=s3cret"]);
    a.send("/pub news before-the-second-start");
    a.wait_event("published", |_| true);
    let stderr_log = tmp.path().join("second.stderr");
    let mut second = std::process::Command::new(support::murmur_bin())
        .args([
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--name",
            "alice",
            "--data-dir",
        ])
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + support::WAIT;
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("a second node started on the same data dir and kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "the second node exited with {status}");
    let stderr = std::fs::read_to_string(&stderr_log).unwrap();
    assert!(
        stderr.contains(&format!("is in use by another murmur node (pid {})", a.pid())),
        "{stderr}"
    );
    // The first node is unharmed, and once it stops the data dir is free.
    assert_eq!(a.inbox("")[0]["msg"], "before-the-second-start");
    assert!(a.quit().success());
    let mut again = TestNode::start("alice", &dir, &[]);
    assert_eq!(again.inbox("")[0]["msg"], "before-the-second-start");
}

#[test]
fn a_plain_line_goes_to_the_only_topic_then_to_the_last_used() {
    let tmp = temp();
    let mut a = TestNode::start("alice", &tmp.path().join("a"), &["--topic", "news=s3cret"]);
    let p = a.ask("first words", "published");
    assert_eq!(p["topic"], "news", "{p}");
    a.subscribe("other", Some("x"));
    let p = a.ask("second words", "published");
    assert_eq!(p["topic"], "other", "the topic last used: {p}");
    let bodies: Vec<String> = a.inbox("news 10").iter().map(|m| m["msg"].to_string()).collect();
    assert_eq!(bodies, ["\"first words\""], "{bodies:?}");
}

#[test]
fn bad_commands_get_errors_and_the_node_keeps_working() {
    let tmp = temp();
    let mut a = TestNode::start("alice", &tmp.path().join("a"), &[]);
    let cases = [
        ("/frobnicate", "unknown command /frobnicate"),
        ("/pub news", "usage: /pub [--id CLIENT_ID] TOPIC MESSAGE"),
        ("/sub", "usage: /sub TOPIC [SECRET]"),
        ("/dm bob", "usage: /dm PEER MESSAGE"),
        ("/inbox news many", "/inbox takes at most a topic and a count"),
        ("/unsub news", "not subscribed to news"),
        ("just words", "which topic?"),
    ];
    for (line, expected) in cases {
        let e = a.ask(line, "error");
        assert!(e["error"].as_str().unwrap().contains(expected), "{line:?} → {e}");
    }
    let long = format!("/pub news {}", "x".repeat(70_000));
    let e = a.ask(&long, "error");
    assert_eq!(
        e["error"],
        "line of 70010 bytes ignored: a message may be at most 65536 bytes (64 KiB)"
    );
    // A line of megabytes is dropped as it is read, and the next one works.
    let e = a.ask(&format!("/pub news {}", "z".repeat(8 << 20)), "error");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .starts_with("line of 8388618 bytes ignored"),
        "{e}"
    );
    let e = a.ask(&format!("/pub news {}", "y".repeat(65_537)), "error");
    assert_eq!(e["error"], "message is 65537 bytes; the limit is 65536");
    a.send_bytes(b"/pub news \xff\xfe\n");
    let e = a.wait_event("error", |_| true);
    assert!(e["error"].as_str().unwrap().contains("UTF-8"), "{e}");

    // Still alive and working.
    a.subscribe("news", Some("s3cret"));
    a.send("/unsub news");
    a.wait_event("unsubscribed", |_| true);
    // A left secret topic never falls back to the open topic of that name.
    let e = a.ask("/pub news private words", "error");
    assert!(e["error"].as_str().unwrap().contains("not subscribed to news"), "{e}");
    a.subscribe("news", Some("s3cret"));
    a.send("/pub news still here");
    a.wait_event("published", |_| true);
    assert_eq!(a.inbox("")[0]["msg"], "still here");
    let w = a.ask("/whoami", "whoami");
    assert_eq!(w["name"], "alice");
    let help = a.ask("/help", "help");
    assert!(help["text"].as_str().unwrap().contains("/sub TOPIC [SECRET]"));
}

#[test]
fn open_topics_are_flagged_and_closed_stdin_does_not_stop_the_node() {
    let tmp = temp();
    let mut a = TestNode::start("alice", &tmp.path().join("a"), &[]);
    let mut b = TestNode::start("bob", &tmp.path().join("b"), &["--peer", &a.addr.clone()]);
    a.send("/sub lobby");
    let s = a.wait_event("subscribed", |_| true);
    assert_eq!(s["open"], true);
    b.subscribe("lobby", None);
    // Publishing to an open topic one has not joined works, flagged as open.
    let mut c = TestNode::start("carol", &tmp.path().join("c"), &["--peer", &a.addr.clone()]);
    c.send("/pub lobby carol-was-here");
    let p = c.wait_event("published", |_| true);
    assert_eq!(p["open"], true);
    b.wait_event("message", |v| v["msg"] == "carol-was-here" && v["from"] == "carol");
    assert_eq!(c.inbox("lobby")[0]["msg"], "carol-was-here");
    // Bob's stdin closes: he keeps receiving.
    b.close_stdin();
    a.send("/pub lobby anyone-can-read");
    b.wait_event("message", |v| v["msg"] == "anyone-can-read");
    assert!(b.is_running());
    // SIGTERM stops it cleanly.
    b.signal("TERM");
    assert!(b.wait_exit().success());
}

#[test]
fn human_output_is_readable_and_logs_stay_off_stdout() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    let tmp = temp();
    let mut child = Command::new(support::murmur_bin())
        .args([
            "--no-mdns",
            "--name",
            "dora",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--data-dir",
        ])
        .arg(tmp.path().join("d"))
        .env("RUST_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "/sub news s3cret\n/pub news hi there\n/inbox\n/quit").unwrap();
    let lines: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    assert!(child.wait().unwrap().success());
    assert!(
        lines.iter().any(|l| l.starts_with("listening on /ip4/127.0.0.1/tcp/")),
        "{lines:?}"
    );
    assert!(lines.contains(&"subscribed to news".to_string()), "{lines:?}");
    // The inbox lists the message dated, so it does not read like a live one.
    assert!(
        lines.iter().any(|l| l.split_once(' ').is_some_and(|(date, rest)| {
            date.len() == "2026-12-03".len()
                && date.starts_with("20")
                && rest.len() == "14:03:10 [news] dora: hi there".len()
                && rest.ends_with(" [news] dora: hi there")
        })),
        "{lines:?}"
    );
    assert!(!lines.contains(&"[news] dora: hi there".to_string()), "{lines:?}");
    // Nothing from the trace-level logs reached stdout.
    assert!(
        lines.iter().all(|l| !l.contains("TRACE") && !l.contains("DEBUG")),
        "{lines:?}"
    );
}

#[test]
fn trace_logs_hold_no_topic_name_secret_or_body() {
    let tmp = temp();
    let session = support::SecretSession {
        topic: "classified-topic",
        secret: "hunter2-pass",
        body: "the-eagle-lands",
        dm: "a-direct-whisper",
    };
    session.run(tmp.path(), &[("RUST_LOG", "trace")]);
    for log in [tmp.path().join("a.stderr.log"), tmp.path().join("b.stderr.log")] {
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.len() > 10_000, "trace logging was on: {} bytes", text.len());
        for secret in session.secrets() {
            assert!(!text.contains(secret), "{secret:?} appears in {}", log.display());
        }
    }
}

#[test]
fn a_bad_bootstrap_address_stops_the_start_and_an_unreachable_one_is_a_warning() {
    use std::process::Command;
    let tmp = temp();
    // Malformed (no peer id): a clear error at start, nothing runs.
    let out = Command::new(support::murmur_bin())
        .args(["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0", "--data-dir"])
        .arg(tmp.path().join("x"))
        .args(["--bootstrap", "/ip4/127.0.0.1/tcp/9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must end in /p2p/<peer id>"), "{stderr}");
    // Unreachable (a closed port on loopback): a warning, and the node goes on.
    let nobody = libp2p::PeerId::random();
    let boot = format!("/ip4/127.0.0.1/tcp/9/p2p/{nobody}");
    let mut a = TestNode::start("alice", &tmp.path().join("a"), &[]);
    let mut b = TestNode::start(
        "bob",
        &tmp.path().join("b"),
        &["--peer", &a.addr.clone(), "--bootstrap", &boot],
    );
    let (notice, _) = b.seen_or_wait_for("notice", |v| v["text"].as_str().unwrap().contains("bootstrap node"));
    assert!(notice["text"].as_str().unwrap().contains("unreachable"), "{notice}");
    a.subscribe("news", Some("s"));
    b.subscribe("news", Some("s"));
    b.wait_topic_peers("news", 1);
    b.send("/pub news the LAN still works");
    a.wait_event("message", |v| v["msg"] == "the LAN still works");
}

#[test]
fn shell_completions_and_the_man_page_come_from_the_command_line_definition() {
    use std::process::Command;
    let run = |args: &[&str]| {
        let out = Command::new(support::murmur_bin()).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["completions", shell]);
        assert!(
            script.contains("bootstrap") && script.contains("sync-writes"),
            "{shell}: {script}"
        );
        // Options hidden from --help are not offered either.
        assert!(!script.contains("rekey-grace"), "{shell}: {script}");
    }
    let man = run(&["man"]);
    assert!(man.starts_with(".ie") || man.contains(".TH murmur 1"), "{man}");
    assert!(man.contains("relay\\-server"), "{man}");
    assert!(
        man.contains(".SH \"STDIN COMMANDS\"") && man.contains("POST /publish"),
        "{man}"
    );
    let bad = Command::new(support::murmur_bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid value"));
}
