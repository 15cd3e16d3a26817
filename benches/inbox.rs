//! Inbox throughput: durable inserts in group commits, and reading a
//! 100-message page from a store of 1,000,000 messages.
//! Run: `cargo bench --bench inbox` (the first run builds the big store, ~1 min).
//! MURMUR_BENCH_ROWS changes its size.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use murmur::envelope::Purpose;
use murmur::store::{Durability, InboxQuery, Insert, Store};
use rand::RngCore;
use tokio::runtime::Runtime;
use tokio::sync::{broadcast, oneshot};

fn insert(id: [u8; 32], topic: u8, ts: u64, done: Option<oneshot::Sender<Result<bool, String>>>) -> Insert {
    Insert {
        id,
        purpose: Purpose::Topic,
        topic_id: [topic; 32],
        ts,
        envelope: vec![0xab; 400], // about a sealed 256-byte message
        via: murmur::store::Via::Gossip,
        own_seq: None,
        client_key: None,
        event: None,
        done: done.map(Into::into),
        member: None,
    }
}

/// Inserts `n` messages as fast as the store takes them; returns when all are durable.
async fn fill(store: &Store, n: u64, ts0: u64) {
    let mut last = None;
    for i in 0..n {
        let mut id = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut id);
        let (tx, rx) = oneshot::channel();
        let done = if i == n - 1 { Some(tx) } else { None };
        if done.is_some() {
            last = Some(rx);
        }
        store.insert(insert(id, (i % 4) as u8, ts0 + i, done)).await.unwrap();
    }
    last.unwrap().await.unwrap().unwrap();
}

/// Sender timestamps keep increasing across iterations, as they do in a live inbox.
static NEXT_TS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn durable_inserts(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    // Opened on the runtime, as a node opens it: the store runs as a task.
    let _runtime = rt.enter();
    let mut group = c.benchmark_group("inbox");
    group.throughput(Throughput::Elements(50_000));
    group.sample_size(10);
    // Every commit fsynced (--sync-writes full), then topic messages as a
    // node writes them by default (not fsynced; docs/security.md).
    for (durability, name) in [
        (Durability::Full, "50k durable inserts (group commits, fsynced)"),
        (Durability::Network, "50k inserts (group commits, --sync-writes normal)"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store =
            Store::open_with_metrics(dir.path(), broadcast::channel(16).0, Default::default(), durability).unwrap();
        group.bench_function(name, |b| {
            b.iter(|| {
                let ts0 = NEXT_TS.fetch_add(50_000, std::sync::atomic::Ordering::Relaxed);
                rt.block_on(fill(&store, 50_000, ts0))
            })
        });
    }
    group.finish();
}

fn page_read(c: &mut Criterion) {
    let rows: u64 = std::env::var("MURMUR_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = Runtime::new().unwrap();
    let _runtime = rt.enter();
    let dir = std::env::temp_dir().join(format!("murmur-bench-inbox-{rows}"));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&dir, broadcast::channel(16).0).unwrap();
    let have = rt.block_on(store.count()).unwrap();
    if have < rows {
        let t = Instant::now();
        rt.block_on(fill(&store, rows - have, have + 1));
        eprintln!("built a {rows}-message store in {:?}", t.elapsed());
    }
    let mut group = c.benchmark_group("inbox");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function(format!("100-message page of one topic from {rows}"), |b| {
        b.iter(|| {
            let page = rt
                .block_on(store.query(InboxQuery {
                    topics: Some(vec![[1; 32]]),
                    limit: 100,
                    ..InboxQuery::default()
                }))
                .unwrap();
            assert_eq!(page.len(), 100);
            page
        })
    });
    group.bench_function(format!("100-message page of everything from {rows}"), |b| {
        b.iter(|| {
            rt.block_on(store.query(InboxQuery {
                limit: 100,
                ..InboxQuery::default()
            }))
            .unwrap()
        })
    });
    // Walking back: the page before a cursor half-way through the history.
    // Timestamps run 1..=rows: the cursor at the middle one.
    let cursor = murmur::store::Cursor {
        ts: rows / 2,
        id: [0; 32],
    };
    group.bench_function(
        format!("100-message page of one topic before a cursor, from {rows}"),
        |b| {
            b.iter(|| {
                let page = rt
                    .block_on(store.query(InboxQuery {
                        topics: Some(vec![[1; 32]]),
                        before: Some(cursor),
                        limit: 100,
                        ..InboxQuery::default()
                    }))
                    .unwrap();
                assert_eq!(page.len(), 100);
                page
            })
        },
    );
    group.finish();
}

criterion_group!(benches, durable_inserts, page_read);
criterion_main!(benches);
