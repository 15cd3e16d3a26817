//! The versioned envelope: the one binary format in which murmur carries and
//! stores every message (on gossipsub, and as an inbox record at rest).
//!
//! Layout (all integers big-endian), specified in `docs/protocol.md`:
//!
//! ```text
//! version:u8 = 1 | purpose:u8 | topic_id:[32] | sender_len:u8 | sender:[sender_len]
//! | ts_ms:u64 | salt:[32] | commitment:[32] | ciphertext‖tag
//! ```
//!
//! The header (version … salt) is the AEAD associated data. The salt is the
//! message id. The per-message key, nonce and commitment come from
//! [`MessageKeys::derive`].

use libp2p::PeerId;
use rand::RngCore;

use crate::crypto::{aead_open, aead_seal_in_place, CryptoError, Key, MessageKeys, TAG_LEN};

/// The only envelope version this build reads and writes.
pub const VERSION: u8 = 1;
/// Longest sender peer id encoding accepted (an ed25519 peer id is 38 bytes).
pub const MAX_SENDER_LEN: usize = 64;
/// Longest display name carried in a payload, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// The largest message body, in bytes (64 KiB). Enforced everywhere a body enters.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Fixed header bytes other than the sender: version, purpose, topic id, length, ts, salt, commitment.
const FIXED_HEADER: usize = 1 + 1 + 32 + 1 + 8 + 32 + 32;
/// The largest envelope a valid message can produce.
pub const MAX_ENVELOPE_BYTES: usize =
    FIXED_HEADER + MAX_SENDER_LEN + PAYLOAD_HEADER + MAX_NAME_LEN + MAX_MESSAGE_BYTES + TAG_LEN;
/// Payload bytes before the name: seq:u64, name_len:u8.
const PAYLOAD_HEADER: usize = 8 + 1;

/// What an envelope is for. It is bound into the key derivation and the
/// associated data, so an envelope made for one purpose opens in no other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Purpose {
    /// A message published on a topic, sealed under the topic key.
    Topic = 1,
    /// A direct message stored in the local inbox, sealed under the node's local key.
    DirectRecord = 2,
    /// A direct message in transit (or in the sender's outbox), sealed under
    /// the sender–recipient pair key; the topic id field binds the recipient.
    Direct = 3,
    /// A topic's control message (a member announcing itself), sealed under
    /// the topic key like a message, never shown as one.
    Control = 4,
    /// A control message from one member to another (a rekey, an invitation,
    /// a request for the current epoch), sealed as a direct message is.
    DirectControl = 5,
}

impl Purpose {
    /// Whether rows of this purpose are messages a user reads (a topic
    /// message or a direct message), not control traffic.
    pub fn is_shown(self) -> bool {
        matches!(self, Self::Topic | Self::DirectRecord)
    }

    /// The purpose with this byte value, if any.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Topic),
            2 => Some(Self::DirectRecord),
            3 => Some(Self::Direct),
            4 => Some(Self::Control),
            5 => Some(Self::DirectControl),
            _ => None,
        }
    }
}

/// Why bytes are not a valid envelope, or do not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Fewer bytes than the header needs.
    #[error("envelope truncated")]
    Truncated,
    /// A version this build does not know.
    #[error("unsupported envelope version {0}")]
    Version(u8),
    /// An unknown purpose byte, or one other than expected.
    #[error("wrong envelope purpose")]
    Purpose,
    /// The sender field is not a peer id.
    #[error("invalid sender peer id")]
    Sender,
    /// The envelope is for another topic.
    #[error("envelope is for another topic")]
    Topic,
    /// The envelope is larger than any valid message.
    #[error("envelope too large ({0} bytes)")]
    TooLarge(usize),
    /// Key commitment or authentication failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The decrypted payload is malformed.
    #[error("malformed payload")]
    Payload,
}

/// A parsed envelope. `encode` gives back exactly the bytes it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// What the envelope is for.
    pub purpose: Purpose,
    /// Topic id (all zero for direct-message records).
    pub topic_id: [u8; 32],
    /// The author's peer id.
    pub sender: PeerId,
    /// Unix milliseconds at the author.
    pub ts: u64,
    /// Random salt; also the message id.
    pub salt: [u8; 32],
    /// Key commitment.
    pub commitment: [u8; 32],
    /// AES-256-GCM ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

/// The plaintext inside an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// Per-sender sequence number (orders one sender's messages).
    pub seq: u64,
    /// Display name of the author, as the author states it.
    pub name: String,
    /// The message body (UTF-8).
    pub body: String,
}

impl Payload {
    fn encode(&self) -> Vec<u8> {
        let name = truncate_utf8(&self.name, MAX_NAME_LEN);
        // With room for the tag, which sealing in place appends.
        let mut out = Vec::with_capacity(PAYLOAD_HEADER + name.len() + self.body.len() + TAG_LEN);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(self.body.as_bytes());
        out
    }

    /// Parses a decrypted payload, keeping its buffer as the body's.
    fn decode(mut bytes: Vec<u8>) -> Result<Self, EnvelopeError> {
        if bytes.len() < PAYLOAD_HEADER {
            return Err(EnvelopeError::Payload);
        }
        let seq = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
        let name_len = bytes[8] as usize;
        let rest = &bytes[PAYLOAD_HEADER..];
        if rest.len() < name_len || name_len > MAX_NAME_LEN {
            return Err(EnvelopeError::Payload);
        }
        let name = std::str::from_utf8(&rest[..name_len])
            .map_err(|_| EnvelopeError::Payload)?
            .to_owned();
        if rest.len() - name_len > MAX_MESSAGE_BYTES {
            return Err(EnvelopeError::Payload);
        }
        bytes.drain(..PAYLOAD_HEADER + name_len);
        let body = String::from_utf8(bytes).map_err(|_| EnvelopeError::Payload)?;
        Ok(Self { seq, name, body })
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Envelope {
    /// Seals `payload` for `purpose` under `root` (topic key or local key) with a fresh random salt.
    pub fn seal(root: &Key, purpose: Purpose, topic_id: [u8; 32], sender: PeerId, ts: u64, payload: &Payload) -> Self {
        let mut salt = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut salt);
        Self::seal_with_salt(root, purpose, topic_id, sender, ts, salt, payload)
    }

    /// Seals with a given salt (for test vectors and re-sealing records).
    pub fn seal_with_salt(
        root: &Key,
        purpose: Purpose,
        topic_id: [u8; 32],
        sender: PeerId,
        ts: u64,
        salt: [u8; 32],
        payload: &Payload,
    ) -> Self {
        let keys = MessageKeys::derive(root, &salt, purpose as u8);
        let mut env = Self {
            purpose,
            topic_id,
            sender,
            ts,
            salt,
            commitment: keys.commitment,
            ciphertext: Vec::new(),
        };
        let aad = env.header();
        let mut buf = payload.encode();
        aead_seal_in_place(&keys.key, &keys.nonce, &aad, &mut buf);
        env.ciphertext = buf;
        env
    }

    /// Checks purpose and topic, then the key commitment, then decrypts.
    ///
    /// # Errors
    /// [`EnvelopeError::Purpose`] / [`EnvelopeError::Topic`] when the envelope was made for
    /// something else, [`CryptoError::WrongKey`] before any decryption when `root` is not
    /// the key it was sealed with, [`CryptoError::Tampered`] when it was altered.
    pub fn open(&self, root: &Key, purpose: Purpose, topic_id: &[u8; 32]) -> Result<Payload, EnvelopeError> {
        if self.purpose != purpose {
            return Err(EnvelopeError::Purpose);
        }
        if &self.topic_id != topic_id {
            return Err(EnvelopeError::Topic);
        }
        let keys = MessageKeys::derive(root, &self.salt, purpose as u8);
        if !keys.commits_to(&self.commitment) {
            return Err(CryptoError::WrongKey.into());
        }
        let plain = aead_open(&keys.key, &keys.nonce, &self.header(), &self.ciphertext)?;
        Payload::decode(plain)
    }

    /// The message id: the hex salt.
    pub fn id(&self) -> String {
        hex::encode(self.salt)
    }

    /// The header bytes (version through salt): the associated data.
    fn header(&self) -> Vec<u8> {
        let sender = self.sender.to_bytes();
        let mut h = Vec::with_capacity(FIXED_HEADER + sender.len());
        h.push(VERSION);
        h.push(self.purpose as u8);
        h.extend_from_slice(&self.topic_id);
        h.push(sender.len() as u8);
        h.extend_from_slice(&sender);
        h.extend_from_slice(&self.ts.to_be_bytes());
        h.extend_from_slice(&self.salt);
        h
    }

    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.header();
        out.reserve(32 + self.ciphertext.len());
        out.extend_from_slice(&self.commitment);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses wire bytes. Never panics, whatever the input.
    ///
    /// # Errors
    /// An [`EnvelopeError`] saying which field is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(EnvelopeError::TooLarge(bytes.len()));
        }
        let mut r = Reader(bytes);
        let version = r.take(1)?[0];
        if version != VERSION {
            return Err(EnvelopeError::Version(version));
        }
        let purpose = Purpose::from_byte(r.take(1)?[0]).ok_or(EnvelopeError::Purpose)?;
        let topic_id = r.array::<32>()?;
        let sender_len = r.take(1)?[0] as usize;
        if sender_len > MAX_SENDER_LEN {
            return Err(EnvelopeError::Sender);
        }
        let sender = PeerId::from_bytes(r.take(sender_len)?).map_err(|_| EnvelopeError::Sender)?;
        let ts = u64::from_be_bytes(r.array::<8>()?);
        let salt = r.array::<32>()?;
        let commitment = r.array::<32>()?;
        if r.0.len() < TAG_LEN {
            return Err(EnvelopeError::Truncated);
        }
        Ok(Self {
            purpose,
            topic_id,
            sender,
            ts,
            salt,
            commitment,
            ciphertext: r.0.to_vec(),
        })
    }
}

/// A cursor over a byte slice that fails with [`EnvelopeError::Truncated`].
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EnvelopeError> {
        if self.0.len() < n {
            return Err(EnvelopeError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EnvelopeError> {
        Ok(self.take(N)?.try_into().expect("exact length"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::TopicKeys;
    use libp2p::identity::Keypair;

    fn peer(seed: u8) -> PeerId {
        Keypair::ed25519_from_bytes([seed; 32]).unwrap().public().to_peer_id()
    }

    fn payload() -> Payload {
        Payload {
            seq: 7,
            name: "alice".into(),
            body: "hello".into(),
        }
    }

    #[test]
    fn round_trip() {
        let t = TopicKeys::derive("news", "s3cret");
        let env = Envelope::seal(&t.key, Purpose::Topic, t.id, peer(1), 1_764_000_000_000, &payload());
        let bytes = env.encode();
        let back = Envelope::decode(&bytes).unwrap();
        assert_eq!(back, env);
        assert_eq!(back.open(&t.key, Purpose::Topic, &t.id).unwrap(), payload());
        assert!(!bytes.windows(5).any(|w| w == b"hello"));
    }

    #[test]
    fn wrong_key_is_rejected_before_decryption() {
        let t = TopicKeys::derive("news", "s3cret");
        let wrong = TopicKeys::derive("news", "guess");
        let env = Envelope::seal(&t.key, Purpose::Topic, t.id, peer(1), 1, &payload());
        assert_eq!(
            env.open(&wrong.key, Purpose::Topic, &t.id),
            Err(EnvelopeError::Crypto(CryptoError::WrongKey))
        );
    }

    #[test]
    fn every_bit_flip_is_rejected() {
        let t = TopicKeys::derive("news", "s3cret");
        let bytes = Envelope::seal(&t.key, Purpose::Topic, t.id, peer(1), 1, &payload()).encode();
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            let opened = Envelope::decode(&b).and_then(|e| e.open(&t.key, Purpose::Topic, &t.id));
            assert!(opened.is_err(), "bit {i} flipped and still opened");
        }
    }

    #[test]
    fn purpose_and_topic_are_bound() {
        let t = TopicKeys::derive("news", "s3cret");
        let env = Envelope::seal(&t.key, Purpose::Topic, t.id, peer(1), 1, &payload());
        assert_eq!(
            env.open(&t.key, Purpose::DirectRecord, &t.id),
            Err(EnvelopeError::Purpose)
        );
        let other = TopicKeys::derive("sport", "s3cret");
        assert_eq!(env.open(&t.key, Purpose::Topic, &other.id), Err(EnvelopeError::Topic));
        // Relabelling the purpose byte does not help either.
        let mut relabelled = env.clone();
        relabelled.purpose = Purpose::DirectRecord;
        assert!(relabelled.open(&t.key, Purpose::DirectRecord, &t.id).is_err());
    }

    #[test]
    fn swapped_sender_is_rejected() {
        let t = TopicKeys::derive("news", "s3cret");
        let mut env = Envelope::seal(&t.key, Purpose::Topic, t.id, peer(1), 1, &payload());
        env.sender = peer(2);
        assert_eq!(
            env.open(&t.key, Purpose::Topic, &t.id),
            Err(EnvelopeError::Crypto(CryptoError::Tampered))
        );
    }

    #[test]
    fn truncations_never_panic() {
        let t = TopicKeys::derive("news", "s3cret");
        let bytes = Envelope::seal(&t.key, Purpose::Topic, t.id, peer(1), 1, &payload()).encode();
        for n in 0..bytes.len() {
            let _ = Envelope::decode(&bytes[..n]).map(|e| e.open(&t.key, Purpose::Topic, &t.id));
        }
        assert_eq!(Envelope::decode(&[]), Err(EnvelopeError::Truncated));
        assert_eq!(Envelope::decode(&[2]), Err(EnvelopeError::Version(2)));
        assert!(matches!(
            Envelope::decode(&vec![1u8; MAX_ENVELOPE_BYTES + 1]),
            Err(EnvelopeError::TooLarge(_))
        ));
    }

    #[test]
    fn largest_message_fits() {
        let t = TopicKeys::derive("news", "s3cret");
        let p = Payload {
            seq: u64::MAX,
            name: "n".repeat(MAX_NAME_LEN),
            body: "x".repeat(MAX_MESSAGE_BYTES),
        };
        let bytes = Envelope::seal(&t.key, Purpose::Topic, t.id, peer(1), 1, &p).encode();
        assert!(bytes.len() <= MAX_ENVELOPE_BYTES);
        let env = Envelope::decode(&bytes).unwrap();
        assert_eq!(env.open(&t.key, Purpose::Topic, &t.id).unwrap(), p);
    }

    #[test]
    fn long_names_are_truncated_on_char_boundaries() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("abc", 5), "abc");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        /// Any header field (or the ciphertext) of one valid envelope put into
        /// another valid envelope of the same topic makes it fail to open.
        #[test]
        fn swapping_a_field_between_two_envelopes_is_rejected(
            field in 0usize..6,
            ts in proptest::prelude::any::<(u64, u64)>(),
            bodies in ("\\PC{0,64}", "\\PC{0,64}"),
            senders in (1u8..4, 1u8..4),
        ) {
            let t = TopicKeys::derive("news", "s3cret");
            let seal = |sender: u8, ts: u64, body: &str| {
                let p = Payload { seq: 1, name: "n".into(), body: body.into() };
                Envelope::seal(&t.key, Purpose::Topic, t.id, peer(sender), ts, &p)
            };
            let a = seal(senders.0, ts.0, &bodies.0);
            let b = seal(senders.1, ts.1, &bodies.1);
            let mut x = a.clone();
            match field {
                0 => x.sender = b.sender,
                1 => x.ts = b.ts,
                2 => x.salt = b.salt,
                3 => x.commitment = b.commitment,
                4 => x.ciphertext = b.ciphertext.clone(),
                _ => x.purpose = Purpose::DirectRecord,
            }
            proptest::prop_assume!(x != a);
            let opened = Envelope::decode(&x.encode()).and_then(|e| e.open(&t.key, Purpose::Topic, &t.id));
            proptest::prop_assert!(opened.is_err(), "field {} swapped and it still opened", field);
        }
    }
}
