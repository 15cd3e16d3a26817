//! Envelope seal + open throughput (AES-256-GCM with per-message HKDF keys).
//! Run: `cargo bench --bench envelope`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use libp2p::identity::Keypair;
use murmur::crypto::{aead_open, aead_seal, TopicKeys};
use murmur::envelope::{Envelope, Payload, Purpose};

fn seal_open(c: &mut Criterion) {
    let keys = TopicKeys::derive("news", "s3cret");
    let sender = Keypair::ed25519_from_bytes([1; 32]).unwrap().public().to_peer_id();
    let mut group = c.benchmark_group("envelope seal+open");
    for size in [256usize, 64 * 1024] {
        let payload = Payload {
            seq: 1,
            name: "alice".into(),
            body: "x".repeat(size),
        };
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &payload, |b, payload| {
            b.iter(|| {
                let bytes = Envelope::seal(&keys.key, Purpose::Topic, keys.id, sender, 1, payload).encode();
                let env = Envelope::decode(&bytes).unwrap();
                env.open(&keys.key, Purpose::Topic, &keys.id).unwrap()
            })
        });
    }
    group.finish();
}

/// The AEAD alone on the same sizes: the bound under the envelope figures.
fn aead_alone(c: &mut Criterion) {
    let key = [7u8; 32];
    let nonce = [9u8; 12];
    let aad = [1u8; 112];
    let mut group = c.benchmark_group("aes-256-gcm seal+open alone");
    for size in [256usize, 64 * 1024] {
        let plain = vec![b'x'; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &plain, |b, plain| {
            b.iter(|| {
                let sealed = aead_seal(&key, &nonce, &aad, plain);
                aead_open(&key, &nonce, &aad, &sealed).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, seal_open, aead_alone);
criterion_main!(benches);
