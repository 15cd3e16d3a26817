//! Keys at rest: with a passphrase (MURMUR_PASSPHRASE or --passphrase-file)
//! the identity key and the keyring are sealed under an Argon2id key, so no
//! file of the data dir holds a secret, a topic name, a body or a key in the
//! clear; only the right passphrase starts the node, and a refused start
//! changes nothing. Without one the node says, once, that keys are unprotected.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{files_containing, temp, SecretSession, TestNode, WAIT};

const ENV: &str = "MURMUR_PASSPHRASE";
const PASSPHRASE: &str = "correct horse battery staple";

#[test]
fn a_passphrase_seals_every_key_and_only_the_right_one_opens_them() {
    let tmp = temp();
    let a_dir = tmp.path().join("a");
    let session = SecretSession {
        topic: "newsroom-topic",
        secret: "s3cret-topic-pass",
        body: "sealed-body-text",
        dm: "sealed-dm-text",
    };

    // A first start without a passphrase: plain keys, and one notice saying so.
    let mut a = TestNode::start("alice", &a_dir, &[]);
    a.subscribe("earlier-topic", Some("earlier-secret"));
    a.ask("/whoami", "whoami");
    assert_eq!(unprotected_notices(&a.seen), 1, "{:?}", a.seen);
    let peer_id = a.peer_id.clone();
    assert!(a.quit().success());
    let keyring: Value = serde_json::from_slice(&std::fs::read(a_dir.join("keyring.json")).unwrap()).unwrap();
    let local_key = hex::decode(keyring["local_key"].as_str().unwrap()).unwrap();
    let identity =
        libp2p::identity::Keypair::from_protobuf_encoding(&std::fs::read(a_dir.join("identity.key")).unwrap())
            .unwrap()
            .try_into_ed25519()
            .unwrap();

    // The secret session with the passphrase: alice's keys are sealed on the
    // way (and she says so), bob's data dir is sealed from the start.
    let [a_seen, b_seen] = session.run(tmp.path(), &[(ENV, PASSPHRASE)]);
    assert!(
        a_seen.iter().any(|v| v["event"] == "notice"
            && v["text"]
                .as_str()
                .unwrap()
                .starts_with("sealed identity.key and keyring.json in ")),
        "{a_seen:?}"
    );
    assert_eq!(unprotected_notices(&a_seen) + unprotected_notices(&b_seen), 0);

    // Nothing in either data dir in the clear: names, secrets, bodies, keys, the passphrase.
    let topic_key = murmur::crypto::TopicKeys::derive(session.topic, session.secret).key;
    let secret_key = identity.secret();
    let mut needles: Vec<Vec<u8>> = session.secrets().iter().map(|s| s.as_bytes().to_vec()).collect();
    for key in [&topic_key[..], &local_key, secret_key.as_ref()] {
        needles.push(key.to_vec());
        needles.push(hex::encode(key).into_bytes());
    }
    needles.extend([b"earlier-topic".to_vec(), PASSPHRASE.as_bytes().to_vec()]);
    for dir in [&a_dir, &tmp.path().join("b")] {
        for needle in &needles {
            let hits = files_containing(dir, needle);
            assert!(
                hits.is_empty(),
                "{:?} in the clear in {hits:?}",
                String::from_utf8_lossy(needle)
            );
        }
    }
    for log in ["a.stderr.log", "b.stderr.log"] {
        let text = std::fs::read_to_string(tmp.path().join(log)).unwrap();
        assert!(!text.contains(PASSPHRASE), "the passphrase is in {log}");
    }

    // The same passphrase opens it all again, silently.
    let mut a = TestNode::start_with_env("alice", &a_dir, &[], &[(ENV, PASSPHRASE)]);
    assert_eq!(a.peer_id, peer_id, "the identity survives sealing");
    assert_eq!(bodies(&mut a), [session.body, session.dm]);
    assert!(a.seen.iter().all(|v| v["event"] != "notice"), "{:?}", a.seen);
    // Every file of the data dir is private, the open inbox's -wal and -shm included.
    #[cfg(unix)]
    for file in support::files_below(&a_dir) {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    assert!(a.quit().success());

    // A wrong passphrase, or none, is refused with a clear error and changes nothing.
    let before = snapshot(&a_dir);
    let (status, stderr) = run_to_refusal(&a_dir, &[(ENV, "wrong horse")], &[]);
    assert!(!status.success());
    assert!(
        stderr.contains(&format!("wrong passphrase for {}", a_dir.display())),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong horse") && !stderr.contains(PASSPHRASE),
        "{stderr}"
    );
    let (status, stderr) = run_to_refusal(&a_dir, &[], &[]);
    assert!(!status.success());
    assert!(
        stderr.contains("is sealed with a passphrase and none was given"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: set MURMUR_PASSPHRASE or use --passphrase-file"),
        "{stderr}"
    );
    assert!(snapshot(&a_dir) == before, "a refused start changed the data dir");

    // --passphrase-file works as well (one final newline is not part of it).
    let file = tmp.path().join("passphrase.txt");
    std::fs::write(&file, format!("{PASSPHRASE}\n")).unwrap();
    let file_arg = file.to_str().unwrap();
    let mut a = TestNode::start("alice", &a_dir, &["--passphrase-file", file_arg]);
    assert_eq!(bodies(&mut a), [session.body, session.dm]);
    assert!(a.quit().success());
    // Both ways at once is ambiguous: refused.
    let (status, stderr) = run_to_refusal(&a_dir, &[(ENV, PASSPHRASE)], &["--passphrase-file", file_arg]);
    assert!(!status.success());
    assert!(
        stderr.contains("both --passphrase-file and MURMUR_PASSPHRASE"),
        "{stderr}"
    );
}

fn unprotected_notices(seen: &[Value]) -> usize {
    seen.iter()
        .filter(|v| v["event"] == "notice" && v["text"].as_str().unwrap().contains("stored unprotected"))
        .count()
}

fn bodies(node: &mut TestNode) -> Vec<String> {
    node.inbox("")
        .iter()
        .map(|m| m["msg"].as_str().unwrap().to_owned())
        .collect()
}

/// Every file below `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    support::files_below(dir)
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

/// Starts alice on `dir` expecting a refusal: returns the exit status and
/// stderr; fails if the node is still running after [`WAIT`] or printed anything on stdout.
fn run_to_refusal(dir: &Path, env: &[(&str, &str)], extra: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(support::murmur_bin())
        .args([
            "--json",
            "--no-mdns",
            "--name",
            "alice",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ])
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .env_remove(ENV)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn murmur");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("murmur started on {} although it should have refused", dir.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}
