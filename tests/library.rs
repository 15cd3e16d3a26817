//! The library API: in-process nodes over real loopback sockets, and the
//! inbox store on a real database file.

use std::sync::Arc;
use std::time::Duration;

use murmur::envelope::Purpose;
use murmur::store::{InboxQuery, Insert, Store};
use murmur::{Config, Event, Node};
use tokio::sync::broadcast;

async fn next_matching(rx: &mut broadcast::Receiver<Arc<Event>>, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let e = rx.recv().await.expect("event stream open");
            if pred(&e) {
                return Event::clone(&e);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within 20 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_in_process_nodes_exchange_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let (alice, mut alice_events, alice_task) =
        Node::start_with_events(Config::loopback("alice", tmp.path().join("a")))
            .await
            .unwrap();
    let Event::Listening { addr } =
        next_matching(&mut alice_events, "listening", |e| matches!(e, Event::Listening { .. })).await
    else {
        unreachable!()
    };
    let mut config = Config::loopback("bob", tmp.path().join("b"));
    config.peers.push(addr.parse().unwrap());
    config.topics.push(("news".into(), Some("s3cret".into())));
    let (bob, mut bob_events, bob_task) = Node::start_with_events(config).await.unwrap();

    alice.subscribe("news", Some("s3cret")).await.unwrap();
    let published = alice.publish("news", "hello bob").await.unwrap();
    let got = next_matching(&mut bob_events, "message", |e| matches!(e, Event::Message { .. })).await;
    let Event::Message {
        from, msg, id, peer, ..
    } = got
    else {
        unreachable!()
    };
    assert_eq!((from.as_str(), msg.as_str()), ("alice", "hello bob"));
    assert_eq!(id, published.id);
    assert_eq!(peer, alice.peer_id().to_string());

    let inbox = bob.inbox(Some("news"), None, 10).await.unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].msg, "hello bob");
    assert_eq!(bob.topics(), vec!["news".to_string()]);

    alice.shutdown().await;
    bob.shutdown().await;
    alice_task.await.unwrap();
    bob_task.await.unwrap();
    assert!(matches!(
        alice.publish("news", "x").await,
        Err(murmur::NodeError::Stopped)
    ));
}

#[tokio::test]
async fn the_store_keeps_a_duplicate_once_and_reports_it_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (events, mut rx) = broadcast::channel(16);
    let store = Store::open(tmp.path(), events).unwrap();
    let insert = |body: &str| Insert {
        id: [7; 32],
        purpose: Purpose::Topic,
        topic_id: [1; 32],
        ts: 1000,
        envelope: body.as_bytes().to_vec(),
        via: murmur::store::Via::Gossip,
        own_seq: None,
        client_key: None,
        event: Some(Event::Error { error: body.into() }),
        done: None,
        member: None,
    };
    let (done1, r1) = tokio::sync::oneshot::channel();
    let (done2, r2) = tokio::sync::oneshot::channel();
    store
        .insert(Insert {
            done: Some(done1.into()),
            ..insert("first")
        })
        .await
        .unwrap();
    store
        .insert(Insert {
            done: Some(done2.into()),
            ..insert("second")
        })
        .await
        .unwrap();
    assert_eq!(r1.await.unwrap(), Ok(true));
    assert_eq!(r2.await.unwrap(), Ok(false));
    assert_eq!(store.count().await.unwrap(), 1);
    assert_eq!(*rx.recv().await.unwrap(), Event::Error { error: "first".into() });
    assert!(rx.try_recv().is_err(), "the duplicate must not be reported");
    let rows = store
        .query(InboxQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows[0].envelope, b"first");
    store.close().await;

    // Reopened: still one, and the same id is still refused.
    let (events, _rx) = broadcast::channel(16);
    let store = Store::open(tmp.path(), events).unwrap();
    let (done, r) = tokio::sync::oneshot::channel();
    store
        .insert(Insert {
            done: Some(done.into()),
            ..insert("third")
        })
        .await
        .unwrap();
    assert_eq!(r.await.unwrap(), Ok(false));
    assert_eq!(store.count().await.unwrap(), 1);
}

/// Message `i` of a topic: a unique id and timestamp, `size` bytes of `i`.
fn numbered_insert(i: u64, size: usize, done: tokio::sync::oneshot::Sender<Result<bool, String>>) -> Insert {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&i.to_be_bytes());
    Insert {
        id,
        purpose: Purpose::Topic,
        topic_id: [1; 32],
        ts: 1000 + i,
        envelope: vec![i as u8; size],
        via: murmur::store::Via::Gossip,
        own_seq: None,
        client_key: None,
        event: None,
        done: Some(done.into()),
        member: None,
    }
}

/// A store in a fresh temp dir, with the path of its WAL and the metrics it counts into.
fn store_in_temp_dir() -> (tempfile::TempDir, std::path::PathBuf, Store, murmur::metrics::Metrics) {
    let tmp = tempfile::tempdir().unwrap();
    let wal = tmp.path().join(format!("{}-wal", murmur::store::INBOX_FILE));
    let (events, _rx) = broadcast::channel(16);
    let metrics = murmur::metrics::Metrics::default();
    let store = Store::open_with_metrics(tmp.path(), events, metrics.clone(), Default::default()).unwrap();
    (tmp, wal, store, metrics)
}

/// Commits message `next` (1 KiB), and the next ones, 20 ms apart, until the
/// WAL is back to the size written ahead: a commit after a finished
/// checkpoint starts the WAL over and cuts it back (`journal_size_limit`).
/// Fails after 10 s.
async fn until_the_wal_is_cut_back(store: &Store, wal: &std::path::Path, next: &mut u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (done, r) = tokio::sync::oneshot::channel();
        store.insert(numbered_insert(*next, 1024, done)).await.unwrap();
        assert_eq!(r.await.unwrap(), Ok(true));
        *next += 1;
        let len = std::fs::metadata(wal).unwrap().len();
        if len == murmur::store::WAL_PREALLOC {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the WAL stayed at {len} bytes, past the {} written ahead",
            murmur::store::WAL_PREALLOC
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_wal_is_written_ahead_and_survives_a_crash_and_a_wrap() {
    let (tmp, wal, store, _) = store_in_temp_dir();
    assert!(std::fs::metadata(&wal).unwrap().len() >= murmur::store::WAL_PREALLOC);
    // 12,000 envelopes of 1 KiB: more than the WAL written ahead holds, so it
    // must restart from its start (over the zeros and old frames) to keep
    // its size.
    let mut total = 12_000u64;
    let mut last = None;
    for i in 0..total {
        let (done, r) = tokio::sync::oneshot::channel();
        store.insert(numbered_insert(i, 1024, done)).await.unwrap();
        last = Some(r);
    }
    assert_eq!(last.unwrap().await.unwrap(), Ok(true));
    // A burst this fast may outrun the checkpoint thread and grow the WAL
    // for a moment; once a checkpoint has caught up it is cut back.
    until_the_wal_is_cut_back(&store, &wal, &mut total).await;
    // A crash image: the files as they are on disk now, with the store open
    // and idle (a request first moves the intake log into SQLite, so the
    // copies of the files do not race that).
    assert_eq!(store.count().await.unwrap(), total);
    let image = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(tmp.path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), image.path().join(entry.file_name())).unwrap();
    }
    store.close().await;
    for dir in [image.path(), tmp.path()] {
        let (events, _rx) = broadcast::channel(16);
        let store = Store::open(dir, events).unwrap();
        assert_eq!(store.count().await.unwrap(), total, "in {}", dir.display());
        let rows = store
            .query(InboxQuery {
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(rows[0].envelope, vec![(total - 1) as u8; 1024]);
        store.close().await;
    }
}

#[tokio::test]
async fn a_wal_grown_by_large_messages_is_cut_back_to_what_was_written_ahead() {
    let (tmp, wal, store, _) = store_in_temp_dir();
    // A reader's open snapshot (another tool on the file) keeps checkpoints
    // from finishing, so 12 MB of 60 KiB envelopes grow the WAL past 8 MiB.
    let reader = rusqlite::Connection::open(tmp.path().join(murmur::store::INBOX_FILE)).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    for i in 0..200 {
        let (done, r) = tokio::sync::oneshot::channel();
        store.insert(numbered_insert(i, 60 * 1024, done)).await.unwrap();
        assert_eq!(r.await.unwrap(), Ok(true));
    }
    assert!(std::fs::metadata(&wal).unwrap().len() > murmur::store::WAL_PREALLOC);
    // Once the reader is gone, a commit checkpoints fully and the next one
    // restarts the WAL, which cuts it back to what was written ahead.
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    let mut next = 200;
    until_the_wal_is_cut_back(&store, &wal, &mut next).await;
    assert_eq!(store.count().await.unwrap(), next);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_run_on_their_own_thread_as_messages_are_committed() {
    let (tmp, wal, store, metrics) = store_in_temp_dir();
    // One message at a time, as at a steady rate: they go to the intake log
    // and into SQLite in groups, about 4,000 WAL pages of 4 KiB envelopes.
    for i in 0..1000 {
        let (done, r) = tokio::sync::oneshot::channel();
        store.insert(numbered_insert(i, 4096, done)).await.unwrap();
        assert_eq!(r.await.unwrap(), Ok(true));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metrics.inbox_checkpoints.get() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the checkpoint thread ran {} checkpoints for 1,000 messages",
            metrics.inbox_checkpoints.get()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The WAL starts over after them instead of growing. On a loaded
    // machine the thread may lag a burst for a moment, so the WAL may be
    // past its size now; the next commits after a finished checkpoint cut
    // it back.
    let mut next = 1000;
    until_the_wal_is_cut_back(&store, &wal, &mut next).await;
    store.close().await;
    assert_eq!(
        murmur::store::Store::open(tmp.path(), broadcast::channel(16).0)
            .unwrap()
            .count()
            .await
            .unwrap(),
        next
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_in_the_intake_log_are_seen_by_queries_and_kept_once() {
    let (tmp, _wal, store, metrics) = store_in_temp_dir();
    // One at a time, as a topic's messages arrive: each goes to the intake log.
    for i in 0..5 {
        let (done, r) = tokio::sync::oneshot::channel();
        store.insert(numbered_insert(i, 300, done)).await.unwrap();
        assert_eq!(r.await.unwrap(), Ok(true));
    }
    let logged = metrics
        .store_commits
        .get_or_create(&murmur::metrics::CommitSync { sync: "log" })
        .get();
    assert!(logged >= 1, "no message went to the intake log");
    // A duplicate of a message the log holds is told so.
    let (done, r) = tokio::sync::oneshot::channel();
    store.insert(numbered_insert(3, 300, done)).await.unwrap();
    assert_eq!(r.await.unwrap(), Ok(false));
    // A query sees them all, in order, once each.
    let rows = store
        .query(InboxQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let sizes: Vec<u8> = rows.iter().map(|m| m.envelope[0]).collect();
    assert_eq!(sizes, vec![0, 1, 2, 3, 4]);
    // And a duplicate of one now in SQLite is told so too.
    let (done, r) = tokio::sync::oneshot::channel();
    store.insert(numbered_insert(1, 300, done)).await.unwrap();
    assert_eq!(r.await.unwrap(), Ok(false));
    store.close().await;
    let store = Store::open(tmp.path(), broadcast::channel(16).0).unwrap();
    assert_eq!(store.count().await.unwrap(), 5);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_highest_sequence_number_is_kept_whichever_way_its_message_was_stored() {
    let (tmp, _wal, store, _) = store_in_temp_dir();
    let with_seq = |i: u64, seq: u64| {
        let (done, r) = tokio::sync::oneshot::channel();
        let mut insert = numbered_insert(i, 100, done);
        insert.own_seq = Some(seq);
        (insert, r)
    };
    // A burst (one group, committed to SQLite), out of order.
    let mut waits = Vec::new();
    for (i, seq) in [3, 7, 5, 4, 6, 2, 1, 2, 1, 2].into_iter().enumerate() {
        let i = i as u64;
        let (insert, r) = with_seq(i, seq);
        store.insert(insert).await.unwrap();
        waits.push(r);
    }
    for r in waits {
        assert_eq!(r.await.unwrap(), Ok(true));
    }
    assert_eq!(store.next_seq().await.unwrap(), 7);
    // One message alone (the intake log), then a lower one.
    for (i, seq) in [(10, 9), (11, 8)] {
        let (insert, r) = with_seq(i, seq);
        store.insert(insert).await.unwrap();
        assert_eq!(r.await.unwrap(), Ok(true));
    }
    assert_eq!(store.next_seq().await.unwrap(), 9);
    store.close().await;
    let store = Store::open(tmp.path(), broadcast::channel(16).0).unwrap();
    assert_eq!(store.next_seq().await.unwrap(), 9);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_log_moves_into_the_database_once_the_store_is_idle() {
    let (tmp, _wal, store, _) = store_in_temp_dir();
    for i in 0..3 {
        let (done, r) = tokio::sync::oneshot::channel();
        store.insert(numbered_insert(i, 200, done)).await.unwrap();
        assert_eq!(r.await.unwrap(), Ok(true));
    }
    // No request follows: after 100 ms idle the store moves the log into
    // SQLite by itself, where another connection (a backup tool) sees it.
    let reader = rusqlite::Connection::open(tmp.path().join(murmur::store::INBOX_FILE)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let rows: i64 = reader
            .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
            .unwrap();
        if rows == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{rows} of 3 messages in SQLite after 5 s idle"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store.close().await;
}
