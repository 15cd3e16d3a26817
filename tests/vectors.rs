//! Frozen test vectors: the wire format and key derivation of protocol
//! version 1 must not change by accident. The same vectors are in docs/protocol.md.

use libp2p::identity::Keypair;
use murmur::crypto::TopicKeys;
use murmur::envelope::{Envelope, Payload, Purpose};

struct Vector {
    topic: &'static str,
    secret: &'static str,
    sender_seed: u8,
    ts: u64,
    salt: u8,
    seq: u64,
    name: &'static str,
    body: &'static str,
    purpose: Purpose,
}

const VECTORS: [Vector; 5] = [
    Vector {
        topic: "news",
        secret: "s3cret",
        sender_seed: 1,
        ts: 1_764_000_000_000,
        salt: 0x11,
        seq: 0,
        name: "alice",
        body: "hello",
        purpose: Purpose::Topic,
    },
    Vector {
        topic: "news",
        secret: "news",
        sender_seed: 2,
        ts: 1_764_000_000_001,
        salt: 0x22,
        seq: 1,
        name: "bob",
        body: "",
        purpose: Purpose::Topic,
    },
    Vector {
        topic: "café",
        secret: "pässwörd",
        sender_seed: 3,
        ts: 0,
        salt: 0x33,
        seq: u64::MAX,
        name: "zoë",
        body: "ünïcödé ✓",
        purpose: Purpose::Topic,
    },
    Vector {
        topic: "t",
        secret: "a much longer shared secret with spaces",
        sender_seed: 4,
        ts: u64::MAX,
        salt: 0x44,
        seq: 42,
        name: "",
        body: "{\"json\":true}",
        purpose: Purpose::Topic,
    },
    Vector {
        topic: "dm",
        secret: "local",
        sender_seed: 5,
        ts: 1_764_000_000_000,
        salt: 0x55,
        seq: 0,
        name: "eve",
        body: "{\"msg\":\"hi\"}",
        purpose: Purpose::DirectRecord,
    },
];

fn build(v: &Vector) -> (TopicKeys, Envelope) {
    let keys = TopicKeys::derive(v.topic, v.secret);
    let sender = Keypair::ed25519_from_bytes([v.sender_seed; 32])
        .unwrap()
        .public()
        .to_peer_id();
    let payload = Payload {
        seq: v.seq,
        name: v.name.into(),
        body: v.body.into(),
    };
    let env = Envelope::seal_with_salt(&keys.key, v.purpose, keys.id, sender, v.ts, [v.salt; 32], &payload);
    (keys, env)
}

const FROZEN: [(&str, &str, &str); 5] = [
    (
        "ec2176455cbf96efe789aaa3f5f99f0059723962e421ebabeb2051385c9e7abf",
        "a2c21facdf53cab5be05bb8c78941f7ab2f191be5dbd256b07887b3099d9c9b8",
        "0101ec2176455cbf96efe789aaa3f5f99f0059723962e421ebabeb2051385c9e7abf260024080112208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c0000019ab697e8001111111111111111111111111111111111111111111111111111111111111111c22b59d4d211f29cce2abf5c483c8b02bc7be882990d14054b665434e46754c942e32f820e2dff6ba7a878aaf440e94b617532a29df6ea24248acd0a6f9fdfa95c8f37",
    ),
    (
        "e0f6aa439f98f89d18feaaa5be7d0ef0141e3fb2e6d3840b0be74e3fcbac1d90",
        "d5efe3312339687405fbcc568c5ce52a92ef6c1898924fd1f678f69472e8bd3b",
        "0101e0f6aa439f98f89d18feaaa5be7d0ef0141e3fb2e6d3840b0be74e3fcbac1d90260024080112208139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3940000019ab697e8012222222222222222222222222222222222222222222222222222222222222222a2553017de358bc67a4c646842336d25e397bcaa10075727961d3d60dc2b3eb3ccafe8b30f08209d0939cd7d4e7ea07de762e5d78df8d5d0ea339480",
    ),
    (
        "c1bc793484f387c438fadc09f36efc986127ffbdfd884cc42a75278153441f95",
        "9a850a8a639c8b18b4602553ba8f24d92644c7e1648ce35d873d0b6d8022ebeb",
        "0101c1bc793484f387c438fadc09f36efc986127ffbdfd884cc42a75278153441f9526002408011220ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d100000000000000003333333333333333333333333333333333333333333333333333333333333333c5a593c75807c63017bad67bca6eae89bb4f09747a14572556567c2d699f370ff1943c52031eeb491c4f5b79d74afb6d06d51e6c15dde11663c01ceadbf44dbc6db2fa25600588478f2265d7",
    ),
    (
        "ec9331998c9c818de6aba9b5c24248f12aad359074b590cb178f7c089aa1cff2",
        "8ba8e9fe4bc285a8f7aeada68dfefa52da8a91044c1ec1f05ef75a913140d49d",
        "0101ec9331998c9c818de6aba9b5c24248f12aad359074b590cb178f7c089aa1cff226002408011220ca93ac1705187071d67b83c7ff0efe8108e8ec4530575d7726879333dbdabe7cffffffffffffffff4444444444444444444444444444444444444444444444444444444444444444503c76dcd16d5f8c0d0511760d756b2f55587179c49daa7581363e6c860588f935210c658b0e7cab0e09e4219d3629d19bf4df6238da406dee60b571ab4ab0b857f1d9e214c0",
    ),
    (
        "ca5b06fa0b00386c762df03d48bb3bd14f8748fa76e99d516ecd43a3d5ed0ec6",
        "b686235328469e9e31540731a629f382cc2bee7b4fb780845cb948d021d9b682",
        "0102ca5b06fa0b00386c762df03d48bb3bd14f8748fa76e99d516ecd43a3d5ed0ec6260024080112206e7a1cdd29b0b78fd13af4c5598feff4ef2a97166e3ca6f2e4fbfccd80505bf10000019ab697e800555555555555555555555555555555555555555555555555555555555555555538c72b8ffe2cb8252d9a7502f7d5cc9715a70984f85d469bbfeada585b6476192b1c67b87b7b8c9c45549820546c8d4edeed4a0d189522e367d0695bf91eaaba4f54bd5bbd712218",
    ),
];

#[test]
fn envelopes_match_the_frozen_vectors() {
    for (v, (topic_id, key, envelope)) in VECTORS.iter().zip(FROZEN) {
        let (keys, env) = build(v);
        assert_eq!(hex::encode(keys.id), topic_id, "topic id of {:?}", v.topic);
        assert_eq!(hex::encode(keys.key), key, "topic key of {:?}", v.topic);
        assert_eq!(hex::encode(env.encode()), envelope, "envelope of {:?}", v.body);
    }
}

#[test]
fn frozen_envelopes_decode_and_open() {
    for (v, (_, key, envelope)) in VECTORS.iter().zip(FROZEN) {
        let bytes = hex::decode(envelope).unwrap();
        let env = Envelope::decode(&bytes).unwrap();
        assert_eq!(env.encode(), bytes);
        let key: [u8; 32] = hex::decode(key).unwrap().try_into().unwrap();
        let id = TopicKeys::derive(v.topic, v.secret).id;
        let payload = env.open(&key, v.purpose, &id).unwrap();
        assert_eq!(
            (payload.seq, payload.name.as_str(), payload.body.as_str()),
            (v.seq, v.name, v.body)
        );
        assert_eq!(env.ts, v.ts);
        assert_eq!(env.salt, [v.salt; 32]);
    }
}

/// The DHT rendezvous keys (docs/protocol.md, "Rendezvous"): a topic's for a
/// day, a peer's, and their DHT form (a sha2-256 multihash).
#[test]
fn rendezvous_keys_are_frozen() {
    let news = TopicKeys::derive("news", "s3cret");
    let day = murmur::crypto::rendezvous_epoch(1_764_000_000_000);
    assert_eq!(day, 20_416);
    let topic = murmur::crypto::topic_rendezvous(&news.key, day);
    let peer = Keypair::ed25519_from_bytes([1; 32]).unwrap().public().to_peer_id();
    let peer_key = murmur::crypto::peer_rendezvous(&peer);
    assert_eq!(
        hex::encode(topic),
        "c18cf32994bc58f687157945c7dded4169930b2f2631fbf85de9cfbbb7e759b2"
    );
    assert_eq!(
        hex::encode(peer_key),
        "7d81a428ffbd343ef3a18e35d52664747c03edde298d7c8e3b63dac113b022ae"
    );
    let dht = murmur::network::dht::dht_key(&topic);
    assert_eq!(hex::encode(dht.as_ref()), format!("1220{}", hex::encode(topic)));
}
