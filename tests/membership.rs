//! Topic membership with real nodes on loopback: removing a member by
//! rekeying, a member away during a rekey, two members rekeying at once,
//! inviting a peer who never knew the secret, a stranger forging control messages.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{temp, TestNode};

/// Starts `names` subscribed to `t` (secret `s`), each dialling the first.
fn group(dir: &std::path::Path, names: &[&str], extra: &[&str]) -> Vec<TestNode> {
    let mut args = vec!["--topic", "t=s", "--rekey-grace", "5"];
    args.extend_from_slice(extra);
    let first = TestNode::start(names[0], &dir.join(names[0]), &args);
    let addr = first.addr.clone();
    let mut nodes = vec![first];
    for name in &names[1..] {
        let mut a = args.clone();
        a.extend_from_slice(&["--peer", &addr]);
        nodes.push(TestNode::start(name, &dir.join(name), &a));
    }
    nodes
}

/// Waits until `node`'s roster of `t` holds `n` members.
fn wait_members(node: &mut TestNode, n: usize) -> Value {
    let deadline = Instant::now() + support::WAIT;
    loop {
        let m = node.ask("/members t", "members");
        if m["members"].as_array().unwrap().len() >= n {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{}: roster never reached {n}: {m}",
            node.name
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn epoch(node: &mut TestNode) -> u64 {
    node.ask("/topics", "topics")["epochs"]["t"].as_u64().unwrap_or(0)
}

#[test]
fn a_removed_member_reads_nothing_after_the_rekey_and_the_others_lose_nothing() {
    let tmp = temp();
    // Where root and tshark are there (CI), every packet on loopback is
    // captured: none may hold what is published after the rekey.
    let pcap = tmp.path().join("loopback.pcapng");
    let mut tshark = can_capture().then(|| support::start_capture(&[], "lo", "tcp", &pcap));
    let mut nodes = group(tmp.path(), &["ann", "bob", "cid", "dee"], &[]);
    for n in nodes.iter_mut() {
        n.wait_topic_peers("t", 1);
    }
    let roster = wait_members(&mut nodes[0], 4);
    let dee = nodes[3].peer_id.clone();
    assert!(
        roster["members"].as_array().unwrap().iter().any(|m| m["name"] == "dee"),
        "{roster}"
    );
    for n in nodes[1..].iter_mut() {
        wait_members(n, 2);
    }

    // Ann removes Dee; Bob publishes at the same moment, in the old epoch.
    nodes[0].send("/rekey t --remove dee");
    nodes[1].send("/pub t in-flight-during-the-switch");
    let rekeyed = nodes[0].wait_event("rekeyed", |_| true);
    assert_eq!(rekeyed["epoch"], 1);
    assert_eq!(rekeyed["removed"][0], dee.as_str(), "{rekeyed}");
    assert_eq!(rekeyed["names"][dee.as_str()], "dee", "{rekeyed}");
    assert_eq!(rekeyed["names"][nodes[0].peer_id.as_str()], "ann", "{rekeyed}");
    for n in nodes[1..3].iter_mut() {
        let r = n.wait_event("rekeyed", |v| v["topic"] == "t");
        assert_eq!(r["epoch"], 1);
        assert_eq!(r["by"], nodes_peer(&r));
    }
    for i in [0, 2] {
        // It may have come before the rekey did.
        nodes[i].seen_or_wait_for("message", |v| v["msg"] == "in-flight-during-the-switch");
    }
    assert_eq!(epoch(&mut nodes[1]), 1);

    // After the rekey: Ann, Bob and Cid hear each other (through Ann, whom
    // both dialled); Dee, still running, connected and holding the original
    // secret, gets none of it.
    nodes[0].wait_topic_peers("t", 2);
    nodes[1].wait_topic_peers("t", 1);
    nodes[2].wait_topic_peers("t", 1);
    nodes[0].send("/pub t secret-plans-after-the-rekey");
    nodes[2].send("/pub t cid-after-the-rekey");
    // (Either may come first, live or by catch-up.)
    for i in [1, 2] {
        nodes[i].seen_or_wait_for("message", |v| v["msg"] == "secret-plans-after-the-rekey");
    }
    for i in [0, 1] {
        nodes[i].seen_or_wait_for("message", |v| v["msg"] == "cid-after-the-rekey");
    }
    // (Bob's message in flight during the switch was sealed under the old
    // key: Dee may read that one.)
    let dee_saw = nodes[3].drain_for(Duration::from_secs(3));
    assert!(
        !dee_saw
            .iter()
            .any(|v| v["event"] == "rekeyed" || v["msg"].as_str().is_some_and(|m| m.contains("after-the-rekey"))),
        "the removed member saw: {dee_saw:?}"
    );
    let inbox = nodes[3].inbox("t 100");
    assert!(
        inbox
            .iter()
            .all(|m| !m["msg"].as_str().unwrap().contains("after-the-rekey")),
        "{inbox:?}"
    );
    let files = support::files_containing(&tmp.path().join("dee"), b"secret-plans-after-the-rekey");
    assert!(files.is_empty(), "{files:?}");
    // Ann's roster of the new epoch no longer lists Dee.
    let roster = nodes[0].ask("/members t", "members");
    assert_eq!(roster["epoch"], 1);
    assert!(
        !roster["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["peer"] == dee.as_str()),
        "{roster}"
    );
    // An invitation does not undo the removal: Ann is told why.
    nodes[0].send("/invite t dee");
    let e = nodes[0].wait_event("error", |_| true);
    assert_eq!(
        e["error"], "cannot invite dee into t: a rekey removed it from this topic",
        "{e}"
    );
    // Dee tries to take the topic back: she was on the roster of epoch 0,
    // which she still holds, and rekeys from it. Every member refuses her.
    nodes[3].send("/rekey t");
    let refused = nodes[3].wait_event("notice", |v| {
        v["text"]
            .as_str()
            .is_some_and(|t| t.contains("a peer removed from this topic may not rekey it"))
    });
    assert!(refused["text"].as_str().unwrap().contains("not delivered"), "{refused}");
    nodes[0].send("/pub t still-without-dee");
    nodes[1].seen_or_wait_for("message", |v| v["msg"] == "still-without-dee");
    for node in nodes[..3].iter_mut() {
        assert_eq!(epoch(node), 1, "{}", node.name);
        assert!(
            !node
                .seen
                .iter()
                .any(|v| v["event"] == "rekeyed" && v["by"] == dee.as_str()),
            "{} switched to Dee's epoch",
            node.name
        );
    }
    assert!(
        !nodes[3]
            .drain_for(Duration::from_secs(1))
            .iter()
            .any(|v| v["msg"] == "still-without-dee"),
        "the removed member read a message after trying to rekey"
    );
    if let Some(tshark) = tshark.as_mut() {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &tshark.id().to_string()])
            .status();
        let _ = tshark.wait();
        let bytes = std::fs::read(&pcap).unwrap();
        assert!(bytes.len() > 10_000, "the capture is too small: {} bytes", bytes.len());
        let needle = b"secret-plans-after-the-rekey";
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "a packet holds the plaintext"
        );
    }
}

/// Whether loopback can be captured here (root and tshark). With
/// MURMUR_NETNS_TESTS=1 (CI, which installs tshark) it must be.
fn can_capture() -> bool {
    let ok = |cmd: &str, arg: &str| std::process::Command::new(cmd).arg(arg).output().ok();
    let tshark = ok("tshark", "--version").is_some_and(|o| o.status.success());
    let root = ok("id", "-u").is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !(tshark && root) && std::env::var("MURMUR_NETNS_TESTS").as_deref() == Ok("1") {
        panic!("MURMUR_NETNS_TESTS=1 but tshark is missing or this is not root");
    }
    tshark && root
}

/// The `by` of a rekeyed event is a peer id.
fn nodes_peer(r: &Value) -> &str {
    r["by"].as_str().unwrap()
}

#[test]
fn a_member_away_past_the_expiry_gets_the_new_epoch_from_a_member_and_a_removed_one_is_refused() {
    let tmp = temp();
    let mut nodes = group(tmp.path(), &["ann", "bob", "cid", "dee"], &["--dm-expiry", "2"]);
    for n in nodes.iter_mut() {
        n.wait_topic_peers("t", 1);
    }
    wait_members(&mut nodes[0], 4);
    for n in nodes.iter_mut().skip(1) {
        wait_members(n, 2);
    }
    let ann_addr = nodes[0].addr.clone();
    let cid = nodes.remove(2);
    assert!(cid.quit().success());
    nodes[0].send("/rekey t --remove dee");
    nodes[1].wait_event("rekeyed", |_| true);
    // Ann's message to Cid expires in the outbox.
    nodes[0].wait_event("notice", |v| v["text"].as_str().unwrap().contains("not delivered"));
    nodes[0].send("/pub t said-while-cid-was-away");
    nodes[1].wait_event("message", |v| v["msg"] == "said-while-cid-was-away");

    // Cid is back: it asks the members it knows, gets the current epoch, and catches up.
    let args = ["--topic", "t=s", "--rekey-grace", "5", "--peer", &ann_addr];
    let mut cid = TestNode::start("cid", &tmp.path().join("cid"), &args);
    let r = cid.wait_event("rekeyed", |_| true);
    assert_eq!(r["epoch"], 1);
    let m = cid.wait_event("message", |v| v["msg"] == "said-while-cid-was-away");
    assert_eq!(m["via"], "sync");

    // Dee, removed, asks the same way when it reconnects, and is refused.
    let dee = nodes.remove(2);
    assert!(dee.quit().success());
    let mut dee = TestNode::start("dee", &tmp.path().join("dee"), &args);
    let refused = dee.wait_event("notice", |v| v["text"].as_str().unwrap().contains("refused"));
    assert!(refused["text"].as_str().unwrap().contains("removed"), "{refused}");
    assert_eq!(epoch(&mut dee), 0);
}

#[test]
fn two_members_rekeying_at_once_converge_on_one_epoch_and_lose_nothing() {
    let tmp = temp();
    let mut nodes = group(tmp.path(), &["ann", "bob", "cid"], &[]);
    for n in nodes.iter_mut() {
        n.wait_topic_peers("t", 1);
    }
    wait_members(&mut nodes[0], 3);
    for n in nodes.iter_mut().skip(1) {
        wait_members(n, 3);
    }
    nodes[0].send("/rekey t");
    nodes[1].send("/rekey t");
    nodes[2].send("/pub t during-the-race");
    nodes[0].send("/pub t ann-during-the-race");
    // Within seconds every member publishes in one epoch: what each sends is
    // heard by the other two.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let epochs: Vec<u64> = nodes.iter_mut().map(epoch).collect();
        if epochs.iter().all(|e| *e == 1) {
            break;
        }
        assert!(Instant::now() < deadline, "epochs never agreed: {epochs:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    nodes[0].wait_topic_peers("t", 2);
    for (i, n) in nodes.iter_mut().enumerate() {
        n.wait_topic_peers("t", 1);
        n.send(&format!("/pub t after-the-race-{i}"));
    }
    for (i, n) in nodes.iter_mut().enumerate() {
        for j in (0..3).filter(|j| *j != i) {
            n.seen_or_wait_for("message", |v| v["msg"] == format!("after-the-race-{j}").as_str());
        }
    }
    // Nothing published during the race is lost.
    for (i, n) in nodes.iter_mut().enumerate() {
        let inbox = n.inbox("t 100");
        let has = |m: &str| inbox.iter().any(|v| v["msg"] == m);
        assert!(has("during-the-race") && has("ann-during-the-race"), "{i}: {inbox:?}");
    }
}

#[test]
fn an_invited_peer_who_never_knew_the_secret_reads_the_topic() {
    let tmp = temp();
    let mut nodes = group(tmp.path(), &["ann", "bob"], &[]);
    nodes[0].wait_topic_peers("t", 1);
    nodes[1].wait_topic_peers("t", 1);
    nodes[0].send("/rekey t");
    nodes[1].wait_event("rekeyed", |_| true);
    nodes[0].wait_topic_peers("t", 1);
    nodes[1].send("/pub t before-erin-came");
    nodes[0].wait_event("message", |v| v["msg"] == "before-erin-came");
    let ann_addr = nodes[0].addr.clone();
    let mut erin = TestNode::start("erin", &tmp.path().join("erin"), &["--peer", &ann_addr]);
    nodes[0].wait_peers("to include erin", |p| p.iter().any(|p| p["name"] == "erin"));
    nodes[0].send("/invite t erin");
    let invited = erin.wait_event("invited", |_| true);
    assert_eq!(invited["topic"], "t");
    assert_eq!(invited["epoch"], 1);
    assert_eq!(invited["name"], "ann", "{invited}");
    let caught = erin.wait_event("message", |v| v["msg"] == "before-erin-came");
    assert_eq!(caught["via"], "sync");
    erin.wait_topic_peers("t", 1);
    erin.send("/pub t erin-says-hello");
    nodes[1].wait_event("message", |v| v["msg"] == "erin-says-hello");
    assert_eq!(erin.ask("/topics", "topics")["topics"][0], "t");

    // A peer with a topic of that name of its own refuses, and says so.
    let mut fay = TestNode::start(
        "fay",
        &tmp.path().join("fay"),
        &["--topic", "t=other", "--peer", &ann_addr],
    );
    nodes[0].wait_peers("to include fay", |p| p.iter().any(|p| p["name"] == "fay"));
    fay.wait_peers("to include ann", |p| p.iter().any(|p| p["name"] == "ann"));
    nodes[0].send("/invite t fay");
    let notice = fay.wait_event("notice", |v| {
        v["text"].as_str().unwrap().starts_with("refused an invitation")
    });
    assert_eq!(
        notice["text"],
        format!(
            "refused an invitation into t from ann ({}): this node already has a topic named \"t\"",
            nodes[0].peer_id
        )
    );
}

#[test]
fn a_member_joins_the_roster_once_and_is_announced_once_across_restarts() {
    let tmp = temp();
    let mut nodes = group(tmp.path(), &["ann", "bob"], &[]);
    nodes[0].wait_topic_peers("t", 1);
    nodes[1].wait_topic_peers("t", 1);
    for i in 0..30 {
        nodes[1].send(&format!("/pub t roll-call-{i}"));
    }
    nodes[0].wait_event("message", |v| v["msg"] == "roll-call-29");
    nodes[0].drain_for(Duration::from_millis(300));
    let bob = nodes[1].peer_id.clone();
    let joined = nodes[0]
        .seen
        .iter()
        .filter(|v| v["event"] == "member_joined" && v["peer"] == bob.as_str())
        .count();
    assert_eq!(
        joined,
        1,
        "bob joined Ann's roster once, not per message\n{}",
        nodes[0].report()
    );

    // Ann's roster is on disk: after a restart, alone, she still knows Bob.
    nodes[0].kill();
    let mut ann = TestNode::start("ann", &tmp.path().join("ann"), &["--topic", "t=s"]);
    let roster = ann.ask("/members t", "members");
    let names = support::member_names(&roster);
    assert!(names.contains(&"bob") && names.contains(&"ann"), "{roster}");

    // Her announcement is stored and served by catch-up: starting again
    // does not announce her again...
    for _ in 0..2 {
        assert!(ann.quit().success());
        ann = TestNode::start("ann", &tmp.path().join("ann"), &["--topic", "t=s"]);
    }
    // ...and a newcomer still learns both members from her inbox, Bob
    // (gone before Cid started) only from there.
    let bob_id = nodes[1].peer_id.clone();
    nodes[1].kill();
    let mut cid = TestNode::start("cid", &tmp.path().join("cid"), &["--topic", "t=s", "--peer", &ann.addr]);
    let roster = wait_members(&mut cid, 3);
    let names = support::member_names(&roster);
    assert!(names.contains(&"ann") && names.contains(&"bob"), "{roster}");
    // A member is reached by the name it signed, though Cid never saw it:
    // the DM waits in the outbox for Bob.
    let queued = cid.ask("/dm bob see you", "dm_queued");
    assert_eq!(queued["to"], bob_id.as_str(), "{queued}");
    assert_eq!(queued["name"], "bob", "{queued}");
    let pending = cid.ask("/pending", "pending");
    assert_eq!(pending["dms"][0]["to_name"], "bob", "{pending}");
    assert!(cid.quit().success());
    assert!(ann.quit().success());
    let db = rusqlite::Connection::open(tmp.path().join("ann").join(murmur::store::INBOX_FILE)).unwrap();
    let announcements: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM messages WHERE purpose = ?1",
            [murmur::envelope::Purpose::Control as u8],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        announcements, 3,
        "Ann's inbox holds one announcement per member (hers, Bob's, Cid's), after three restarts"
    );
}

#[test]
fn a_member_s_name_means_the_member_not_a_stranger_who_took_it() {
    let tmp = temp();
    let mut nodes = group(tmp.path(), &["ann", "bob", "cid"], &[]);
    wait_members(&mut nodes[0], 3);
    // Bob goes offline; a stranger calling itself "bob" connects to Ann.
    let bob = nodes[1].peer_id.clone();
    nodes[1].kill();
    let ann_addr = nodes[0].addr.clone();
    let stranger = TestNode::start("bob", &tmp.path().join("stranger"), &["--peer", &ann_addr]);
    nodes[0].wait_peers("to include the stranger", |p| {
        p.iter()
            .any(|p| p["peer"] == stranger.peer_id.as_str() && p["name"] == "bob")
    });
    // A DM to "bob" is for the member, and waits for it.
    let queued = nodes[0].ask("/dm bob for the member", "dm_queued");
    assert_eq!(queued["to"], bob.as_str(), "{queued}");
    nodes[0].send("/rekey t --remove bob");
    let rekeyed = nodes[0].wait_event("rekeyed", |_| true);
    assert_eq!(rekeyed["removed"], serde_json::json!([bob]), "{rekeyed}");
}

#[test]
fn subscribing_again_changes_nothing_and_another_secret_is_refused() {
    let tmp = temp();
    let mut nodes = group(tmp.path(), &["ann", "bob"], &["--api", "127.0.0.1:0"]);
    nodes[0].wait_topic_peers("t", 1);
    nodes[1].wait_topic_peers("t", 1);
    wait_members(&mut nodes[0], 2);
    nodes[0].send("/rekey t");
    nodes[1].wait_event("rekeyed", |v| v["topic"] == "t" && v["epoch"] == 1);

    // The first secret again (typed, or sent by a client that subscribes on
    // every start) does not take Bob back to epoch 0.
    let notice = nodes[1].ask("/sub t s", "notice");
    assert_eq!(notice["text"], "already subscribed to t (epoch 1); nothing changed");
    let api = nodes[1].api.clone().unwrap();
    let r = support::http::post(
        &api,
        "/subscribe",
        &serde_json::json!({"user": "bob", "topic": "t", "secret": "s"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "bob is already subscribed to t");
    // Another secret, or none (the open topic t), would replace the keys: refused.
    let e = nodes[1].ask("/sub t other", "error");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .starts_with("already subscribed to t with a different secret"),
        "{e}"
    );
    let r = support::http::post(&api, "/subscribe", &serde_json::json!({"user": "bob", "topic": "t"}));
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.error().contains("different secret"), "{}", r.body);
    assert_eq!(epoch(&mut nodes[1]), 1);

    // A restart with the same --topic keeps the epoch too.
    let addr = nodes[0].addr.clone();
    assert!(nodes.pop().unwrap().quit().success());
    let mut bob = TestNode::start(
        "bob",
        &tmp.path().join("bob"),
        &["--topic", "t=s", "--rekey-grace", "5", "--peer", &addr],
    );
    assert_eq!(epoch(&mut bob), 1);
    bob.wait_topic_peers("t", 1);
    nodes[0].send("/pub t still-in-epoch-one");
    bob.wait_event("message", |v| v["msg"] == "still-in-epoch-one");
}

/// A bare libp2p peer that never knew the secret and speaks only `/murmur/dm/2`.
struct Stranger {
    key: libp2p::identity::Keypair,
    swarm: libp2p::Swarm<libp2p::request_response::Behaviour<murmur::network::dm::DmCodec>>,
    seq: u64,
}

impl Stranger {
    async fn connect(addr: &str) -> (Stranger, libp2p::PeerId) {
        use libp2p::request_response::{self, ProtocolSupport};
        let key = libp2p::identity::Keypair::generate_ed25519();
        let mut swarm = support::raw::swarm(key.clone(), |_| {
            request_response::Behaviour::with_codec(
                murmur::network::dm::DmCodec::default(),
                [(murmur::network::dm::PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default(),
            )
        });
        let peer = support::raw::connect(&mut swarm, addr).await;
        (Stranger { key, swarm, seq: 0 }, peer)
    }

    /// Seals `control` to `to` as a member would (under the pair key the two
    /// peers share) and returns the recipient's answer.
    async fn send(&mut self, to: libp2p::PeerId, control: &murmur::control::DirectControl) -> Result<(), String> {
        use futures::StreamExt;
        use libp2p::request_response::{Event, Message};
        use murmur::envelope::{Envelope, Payload, Purpose};
        self.seq += 1;
        let payload = Payload {
            seq: self.seq,
            name: "mallory".into(),
            body: control.to_body(),
        };
        let key = murmur::crypto::direct_key(&self.key, &to).unwrap();
        let envelope = Envelope::seal(
            &key,
            Purpose::DirectControl,
            murmur::crypto::direct_recipient(&to),
            *self.swarm.local_peer_id(),
            murmur::clock::now_ms(),
            &payload,
        );
        let request = murmur::network::dm::DmRequest {
            envelope: envelope.encode(),
        };
        self.swarm.behaviour_mut().send_request(&to, request);
        loop {
            match self.swarm.select_next_some().await {
                libp2p::swarm::SwarmEvent::Behaviour(Event::Message {
                    message: Message::Response { response, .. },
                    ..
                }) => return response.result,
                libp2p::swarm::SwarmEvent::Behaviour(Event::Message {
                    message: Message::Request { request, .. },
                    ..
                }) => panic!("the stranger was sent a direct message: {request:?}"),
                libp2p::swarm::SwarmEvent::Behaviour(Event::OutboundFailure { error, .. }) => {
                    panic!("the control message was not answered: {error}")
                }
                _ => {}
            }
        }
    }

    /// Fails if anyone sends the stranger a direct message within `window`.
    async fn hears_nothing_for(&mut self, window: Duration) {
        use futures::StreamExt;
        let quiet = tokio::time::timeout(window, async {
            loop {
                if let libp2p::swarm::SwarmEvent::Behaviour(libp2p::request_response::Event::Message {
                    message: libp2p::request_response::Message::Request { request, .. },
                    ..
                }) = self.swarm.select_next_some().await
                {
                    return request;
                }
            }
        })
        .await;
        if let Ok(request) = quiet {
            panic!("the stranger was sent a direct message: {request:?}");
        }
    }
}

#[test]
fn a_stranger_cannot_rekey_a_topic_take_it_over_or_get_its_keys() {
    use murmur::control::{DirectControl, EpochKeys};
    let tmp = temp();
    let mut nodes = group(tmp.path(), &["ann", "bob"], &[]);
    nodes[0].wait_topic_peers("t", 1);
    nodes[1].wait_topic_peers("t", 1);
    wait_members(&mut nodes[1], 2);
    let ann = nodes[0].peer_id.clone();
    // The topic id is public (it names the gossipsub topic every relay sees);
    // the key is not.
    let epoch0 = murmur::crypto::TopicKeys::derive("t", "s").id;
    let forged = EpochKeys {
        epoch: 7,
        id: [7; 32],
        key: [9; 32],
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut mallory, bob) = rt.block_on(Stranger::connect(&nodes[1].addr));

    // A rekey that would move Bob to the stranger's keys and remove Ann.
    let rekey = DirectControl::Rekey {
        topic: "t".into(),
        prev: epoch0,
        keys: forged.clone(),
        removed: vec![ann.clone()],
    };
    let refused = rt.block_on(mallory.send(bob, &rekey)).unwrap_err();
    assert_eq!(refused, "only a member of the epoch it replaces may rekey a topic");
    // An invitation to a topic Bob has under that name is no way in either.
    let invite = DirectControl::Invite {
        topic: "t".into(),
        keys: forged,
        removed: vec![ann.clone()],
    };
    let refused = rt.block_on(mallory.send(bob, &invite)).unwrap_err();
    assert_eq!(refused, "this node already has a topic named \"t\"");
    // Bob is where he was: same epoch, Ann still a member he hears.
    assert_eq!(epoch(&mut nodes[1]), 0);
    assert!(wait_members(&mut nodes[1], 2).to_string().contains(&ann));
    nodes[0].send("/pub t ann-is-still-here");
    nodes[1].wait_event("message", |v| v["msg"] == "ann-is-still-here");

    // Ann moves the topic on; the stranger, naming the epoch it knows the id
    // of, asks Bob for the new one and gets nothing.
    nodes[0].send("/rekey t");
    assert_eq!(nodes[1].wait_event("rekeyed", |_| true)["epoch"], 1);
    let ask = DirectControl::KeyRequest {
        topic: "t".into(),
        id: epoch0,
        epoch: 0,
    };
    let refused = rt.block_on(mallory.send(bob, &ask)).unwrap_err();
    assert_eq!(refused, "not a member of that epoch");
    rt.block_on(mallory.hears_nothing_for(Duration::from_secs(2)));
    assert_eq!(epoch(&mut nodes[1]), 1);
}
