//! Key derivation and authenticated encryption: HKDF-SHA256 topic keys and
//! AES-256-GCM with per-message keys. Pure functions, no I/O.
//!
//! The derivations are specified in `docs/protocol.md`; every label below is
//! part of the wire protocol and must never change for version 1.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::Aes256Gcm;
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Salt of the HKDF-Extract step that turns a topic name and secret into key material.
pub const TOPIC_SALT: &[u8] = b"murmur/v1 topic";
/// HKDF info for the topic id (the gossipsub topic on the wire).
pub const TOPIC_ID_INFO: &[u8] = b"murmur/v1 topic-id";
/// HKDF info for the topic key (the root of every message key of the topic).
pub const TOPIC_KEY_INFO: &[u8] = b"murmur/v1 topic-key";
/// HKDF info prefix for per-message keys; the envelope purpose byte follows it.
pub const MESSAGE_INFO: &[u8] = b"murmur/v1 message";

/// Salt prefix of the HKDF-Extract step of a direct-message pair key; both
/// public keys follow it, in byte order.
pub const DIRECT_SALT: &[u8] = b"murmur/v1 direct";
/// HKDF info for a direct-message pair key.
pub const DIRECT_KEY_INFO: &[u8] = b"murmur/v1 direct-key";
/// Prefix of the recipient binding carried in a direct envelope's topic id field.
pub const DIRECT_RECIPIENT_INFO: &[u8] = b"murmur/v1 direct-recipient";

/// Length of an AES-GCM authentication tag.
pub const TAG_LEN: usize = 16;

/// A 32-byte symmetric key.
pub type Key = [u8; 32];

/// Why a cryptographic operation failed. Messages never include key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The key commitment in the envelope does not match the key we hold.
    #[error("wrong key (key commitment mismatch)")]
    WrongKey,
    /// AES-GCM rejected the ciphertext: it was altered or its header was.
    #[error("authentication failed (message tampered with)")]
    Tampered,
    /// HKDF was asked for more output than it can give.
    #[error("invalid key derivation length")]
    InvalidLength,
    /// A peer id (or our own key) is not an ed25519 key, so no direct-message key exists.
    #[error("peer has no ed25519 key to encrypt direct messages to")]
    NoDirectKey,
}

/// The key two peers share for direct messages, which only they can compute:
/// X25519 between our ed25519 identity key and theirs (both in Montgomery
/// form), then HKDF-SHA256 salted with both public keys in byte order.
/// The same key seals both directions; the envelope's sender and recipient
/// binding tell them apart.
///
/// # Errors
/// [`CryptoError::NoDirectKey`] when either key is not ed25519 (or is a weak point).
pub fn direct_key(local: &libp2p::identity::Keypair, peer: &libp2p::PeerId) -> Result<Key, CryptoError> {
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use sha2::Sha512;
    let ours = local.clone().try_into_ed25519().map_err(|_| CryptoError::NoDirectKey)?;
    let theirs = libp2p::identity::PublicKey::try_decode_protobuf(peer.as_ref().digest())
        .ok()
        .and_then(|k| k.try_into_ed25519().ok())
        .ok_or(CryptoError::NoDirectKey)?;
    let hashed = Sha512::digest(ours.secret().as_ref());
    let scalar: [u8; 32] = hashed[..32].try_into().expect("64-byte digest");
    let their_point = CompressedEdwardsY(theirs.to_bytes())
        .decompress()
        .ok_or(CryptoError::NoDirectKey)?
        .to_montgomery();
    let shared = their_point.mul_clamped(scalar).to_bytes();
    if shared == [0u8; 32] {
        return Err(CryptoError::NoDirectKey);
    }
    let (a, b) = (ours.public().to_bytes(), theirs.to_bytes());
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut salt = Vec::with_capacity(DIRECT_SALT.len() + 64);
    salt.extend_from_slice(DIRECT_SALT);
    salt.extend_from_slice(&lo);
    salt.extend_from_slice(&hi);
    let mut key = [0u8; 32];
    hkdf_sha256(&salt, &shared, DIRECT_KEY_INFO, &mut key)?;
    Ok(key)
}

/// What a direct envelope carries in its topic id field: a hash of the
/// recipient's peer id, so a message for one peer opens at no other.
pub fn direct_recipient(peer: &libp2p::PeerId) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DIRECT_RECIPIENT_INFO);
    h.update(peer.to_bytes());
    h.finalize().into()
}

/// HKDF-SHA256 (RFC 5869): extract with `salt` from `ikm`, then expand with `info` into `out`.
///
/// # Errors
/// [`CryptoError::InvalidLength`] when `out` is longer than 255 × 32 bytes.
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), CryptoError> {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, out)
        .map_err(|_| CryptoError::InvalidLength)
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The keys of one topic, derived from its name and its shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TopicKeys {
    /// The topic id: what gossipsub sees instead of the name.
    pub id: [u8; 32],
    /// The topic key: root of the per-message keys. Never leaves the node.
    pub key: Key,
}

impl std::fmt::Debug for TopicKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopicKeys")
            .field("id", &hex::encode(self.id))
            .field("key", &"<redacted>")
            .finish()
    }
}

impl TopicKeys {
    /// Derives a topic's id and key from its name and secret.
    ///
    /// Both go into the input key material (the name length-prefixed), so two
    /// groups that use the same name with different secrets get unrelated ids
    /// and keys, and the id reveals neither the name nor the secret.
    pub fn derive(name: &str, secret: &str) -> Self {
        let mut ikm = Vec::with_capacity(2 + name.len() + secret.len());
        ikm.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ikm.extend_from_slice(name.as_bytes());
        ikm.extend_from_slice(secret.as_bytes());
        let hk = Hkdf::<Sha256>::new(Some(TOPIC_SALT), &ikm);
        let mut id = [0u8; 32];
        let mut key = [0u8; 32];
        hk.expand(TOPIC_ID_INFO, &mut id).expect("32 bytes is a valid length");
        hk.expand(TOPIC_KEY_INFO, &mut key).expect("32 bytes is a valid length");
        Self { id, key }
    }

    /// The gossipsub topic string: the hex topic id.
    pub fn wire_topic(&self) -> String {
        hex::encode(self.id)
    }
}

/// HKDF salt of the DHT rendezvous keys.
const RENDEZVOUS_SALT: &[u8] = b"murmur/rendezvous/1";
/// HKDF info prefix of a topic's rendezvous key (the epoch follows, big-endian).
const TOPIC_RENDEZVOUS_INFO: &[u8] = b"murmur topic rendezvous";
/// Domain label of a peer's rendezvous key.
const PEER_RENDEZVOUS_LABEL: &[u8] = b"murmur/peer/1";
/// How long one rendezvous epoch lasts: a day of unix time.
pub const RENDEZVOUS_EPOCH_MS: u64 = 24 * 60 * 60 * 1000;

/// The rendezvous epoch of a unix time in milliseconds.
pub fn rendezvous_epoch(now_ms: u64) -> u64 {
    now_ms / RENDEZVOUS_EPOCH_MS
}

/// The DHT key under which a topic's members announce themselves during
/// `epoch`: HKDF-SHA256 of the topic key (salt `murmur/rendezvous/1`, info
/// `murmur topic rendezvous` ‖ epoch as u64 big-endian). Only holders of the
/// topic key can compute it; it reveals neither the topic's name nor its id,
/// and changes every epoch.
pub fn topic_rendezvous(topic_key: &Key, epoch: u64) -> [u8; 32] {
    let mut info = Vec::with_capacity(TOPIC_RENDEZVOUS_INFO.len() + 8);
    info.extend_from_slice(TOPIC_RENDEZVOUS_INFO);
    info.extend_from_slice(&epoch.to_be_bytes());
    let mut out = [0u8; 32];
    hkdf_sha256(RENDEZVOUS_SALT, topic_key, &info, &mut out).expect("32 bytes is a valid length");
    out
}

/// The DHT key under which a peer announces where it can be reached, so
/// that a direct message to its peer id finds it: SHA-256 of
/// `murmur/peer/1` ‖ the peer id's bytes. Anyone who knows the peer id can
/// compute it.
pub fn peer_rendezvous(peer: &libp2p::PeerId) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(PEER_RENDEZVOUS_LABEL);
    h.update(peer.to_bytes());
    h.finalize().into()
}

/// The one-message key material expanded from a root key and the message salt.
pub struct MessageKeys {
    /// AES-256-GCM key used for this message only.
    pub key: Key,
    /// Nonce used with `key`; unique because the key is.
    pub nonce: [u8; 12],
    /// Key commitment carried in the envelope.
    pub commitment: [u8; 32],
}

impl MessageKeys {
    /// Expands the per-message key, nonce and commitment from `root` (a topic
    /// key or a local key), the 32-byte random `salt` and the envelope `purpose`.
    pub fn derive(root: &Key, salt: &[u8; 32], purpose: u8) -> Self {
        let mut info = Vec::with_capacity(MESSAGE_INFO.len() + 1);
        info.extend_from_slice(MESSAGE_INFO);
        info.push(purpose);
        let mut okm = [0u8; 76];
        hkdf_sha256(salt, root, &info, &mut okm).expect("76 bytes is a valid length");
        let mut keys = Self {
            key: [0; 32],
            nonce: [0; 12],
            commitment: [0; 32],
        };
        keys.key.copy_from_slice(&okm[..32]);
        keys.nonce.copy_from_slice(&okm[32..44]);
        keys.commitment.copy_from_slice(&okm[44..76]);
        keys
    }

    /// Whether `commitment` matches this key (constant time).
    pub fn commits_to(&self, commitment: &[u8; 32]) -> bool {
        self.commitment.ct_eq(commitment).into()
    }
}

/// AES-256-GCM encryption of `plaintext` with associated data `aad`; returns ciphertext ‖ tag.
pub fn aead_seal(key: &Key, nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    // Room for the tag up front: no reallocation leaves a plaintext copy behind.
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buf.extend_from_slice(plaintext);
    aead_seal_in_place(key, nonce, aad, &mut buf);
    buf
}

/// [`aead_seal`] in place: `buf` holds the plaintext and is left holding
/// ciphertext ‖ tag (no copy of the message; give it `TAG_LEN` spare
/// capacity to spare a reallocation too).
pub fn aead_seal_in_place(key: &Key, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) {
    Aes256Gcm::new(key.into())
        .encrypt_in_place(nonce.into(), aad, buf)
        .expect("AES-GCM encryption of an in-memory buffer cannot fail");
}

/// AES-256-GCM decryption of ciphertext ‖ tag with associated data `aad`.
///
/// # Errors
/// [`CryptoError::Tampered`] when the tag does not verify.
pub fn aead_open(key: &Key, nonce: &[u8; 12], aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut buf = ciphertext.to_vec();
    aead_open_in_place(key, nonce, aad, &mut buf)?;
    Ok(buf)
}

/// [`aead_open`] in place: `buf` holds ciphertext ‖ tag and is left holding
/// the plaintext. The tag is checked before anything is decrypted, so on
/// error `buf` still holds the ciphertext.
///
/// # Errors
/// [`CryptoError::Tampered`] when the tag does not verify.
pub fn aead_open_in_place(key: &Key, nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) -> Result<(), CryptoError> {
    Aes256Gcm::new(key.into())
        .decrypt_in_place(nonce.into(), aad, buf)
        .map_err(|_| CryptoError::Tampered)
}

/// Constant-time equality of two byte strings (for tokens).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_keys_differ_by_topic_key_and_epoch_and_hide_the_topic() {
        let news = TopicKeys::derive("news", "s3cret");
        let other = TopicKeys::derive("news", "guess");
        let today = topic_rendezvous(&news.key, 20_000);
        assert_eq!(today, topic_rendezvous(&news.key, 20_000));
        assert_ne!(today, topic_rendezvous(&news.key, 20_001));
        assert_ne!(today, topic_rendezvous(&other.key, 20_000));
        assert_ne!(today, news.id);
        assert_eq!(rendezvous_epoch(RENDEZVOUS_EPOCH_MS * 3 + 5), 3);
        let (a, b) = (libp2p::PeerId::random(), libp2p::PeerId::random());
        assert_ne!(peer_rendezvous(&a), peer_rendezvous(&b));
    }

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 5869 appendix A.1–A.3 (the SHA-256 cases).
    #[test]
    fn hkdf_rfc5869_vectors() {
        let cases = [
            (
                "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
                "000102030405060708090a0b0c",
                "f0f1f2f3f4f5f6f7f8f9",
                42,
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
            ),
            (
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f",
                "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
                "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
                82,
                "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
            ),
            (
                "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
                "",
                "",
                42,
                "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
            ),
        ];
        for (ikm, salt, info, len, okm) in cases {
            let mut out = vec![0u8; len];
            hkdf_sha256(&unhex(salt), &unhex(ikm), &unhex(info), &mut out).unwrap();
            assert_eq!(hex::encode(&out), okm);
        }
    }

    #[test]
    fn hkdf_rejects_overlong_output() {
        let mut out = vec![0u8; 255 * 32 + 1];
        assert_eq!(hkdf_sha256(b"s", b"k", b"i", &mut out), Err(CryptoError::InvalidLength));
    }

    #[test]
    fn topic_keys_depend_on_name_and_secret() {
        let a = TopicKeys::derive("news", "s3cret");
        assert_eq!(a, TopicKeys::derive("news", "s3cret"));
        assert_ne!(a.id, TopicKeys::derive("news", "other").id);
        assert_ne!(a.id, TopicKeys::derive("sport", "s3cret").id);
        // The length prefix keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(TopicKeys::derive("ab", "c").id, TopicKeys::derive("a", "bc").id);
        assert_ne!(a.id, a.key);
        let wire = a.wire_topic();
        assert!(!wire.contains("news") && !wire.contains("s3cret"));
        assert!(!format!("{a:?}").contains(&hex::encode(a.key)));
    }

    #[test]
    fn aead_round_trip_and_rejections() {
        let keys = MessageKeys::derive(&[7; 32], &[9; 32], 1);
        let ct = aead_seal(&keys.key, &keys.nonce, b"header", b"hello");
        assert_eq!(ct.len(), 5 + TAG_LEN);
        assert_eq!(aead_open(&keys.key, &keys.nonce, b"header", &ct).unwrap(), b"hello");
        assert_eq!(
            aead_open(&keys.key, &keys.nonce, b"headeR", &ct),
            Err(CryptoError::Tampered)
        );
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_eq!(
            aead_open(&keys.key, &keys.nonce, b"header", &bad),
            Err(CryptoError::Tampered)
        );
        let other = MessageKeys::derive(&[8; 32], &[9; 32], 1);
        assert!(!other.commits_to(&keys.commitment));
        assert!(keys.commits_to(&keys.commitment));
        // Purpose is part of the derivation.
        assert!(!MessageKeys::derive(&[7; 32], &[9; 32], 2).commits_to(&keys.commitment));
    }

    #[test]
    fn both_peers_derive_the_same_direct_key_and_no_one_else_does() {
        use libp2p::identity::Keypair;
        let (a, b, c) = (
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
            Keypair::generate_ed25519(),
        );
        let (pa, pb) = (a.public().to_peer_id(), b.public().to_peer_id());
        let ab = direct_key(&a, &pb).unwrap();
        assert_eq!(ab, direct_key(&b, &pa).unwrap());
        assert_ne!(ab, direct_key(&c, &pb).unwrap());
        assert_ne!(ab, direct_key(&c, &pa).unwrap());
        assert_ne!(direct_recipient(&pa), direct_recipient(&pb));
        // A peer id that carries no ed25519 public key.
        assert_eq!(direct_key(&a, &libp2p::PeerId::random()), Err(CryptoError::NoDirectKey));
    }
}
