//! A packet capture (tshark on loopback) of a whole session with a named,
//! secret topic and a direct message holds neither the topic name, the
//! secret nor any message body.
//!
//! Needs tshark and root. With MURMUR_NETNS_TESTS=1 (CI, which installs
//! tshark) a missing capability is a failure; otherwise the test is skipped.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{temp, SecretSession};

#[test]
fn a_capture_of_a_session_holds_no_topic_name_secret_or_body() {
    let can = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        && is_root();
    if !can {
        if std::env::var("MURMUR_NETNS_TESTS").as_deref() == Ok("1") {
            panic!("MURMUR_NETNS_TESTS=1 but tshark is missing or this is not root");
        }
        eprintln!("skipping the capture test: needs tshark and root");
        return;
    }
    let tmp = temp();
    let pcap = tmp.path().join("session.pcapng");
    let mut tshark = support::start_capture(&[], "lo", "tcp", &pcap);

    let data = tmp.path().join("nodes");
    std::fs::create_dir_all(&data).unwrap();
    let session = SecretSession {
        topic: "war-room-topic",
        secret: "correct-horse-battery",
        body: "attack-at-dawn-body",
        dm: "a-very-private-reply",
    };
    session.run(&data, &[]);
    std::thread::sleep(Duration::from_millis(500));

    let _ = Command::new("kill").args(["-INT", &tshark.id().to_string()]).status();
    let _ = tshark.wait();
    let bytes = std::fs::read(&pcap).unwrap();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    // The capture did record the session: protocol negotiation is in clear.
    assert!(
        contains(b"/noise"),
        "the capture holds no libp2p session ({} bytes)",
        bytes.len()
    );
    for secret in session.secrets() {
        assert!(!contains(secret.as_bytes()), "{secret:?} is in the capture");
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
