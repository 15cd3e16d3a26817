//! The signed frame: a topic envelope followed by its author's ed25519
//! signature. It is what gossipsub carries, what the inbox keeps and what
//! catch-up serves, so a message received from any peer, long after it was
//! published, still proves who wrote it.
//!
//! ```text
//! frame = envelope ‖ signature:[64]
//! signature = ed25519(author key, "murmur/v1 envelope-signature" ‖ envelope)
//! ```

use libp2p::identity::{Keypair, PublicKey};
use libp2p::PeerId;

use crate::envelope::{Envelope, EnvelopeError, MAX_ENVELOPE_BYTES};

/// Bytes of the signature at the end of a frame.
pub const SIGNATURE_LEN: usize = 64;
/// The largest frame a valid message produces.
pub const MAX_FRAME_BYTES: usize = MAX_ENVELOPE_BYTES + SIGNATURE_LEN;
/// Domain separation for what is signed.
const CONTEXT: &[u8] = b"murmur/v1 envelope-signature";

/// Why a frame is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The envelope inside is malformed.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// Too short to hold a signature.
    #[error("frame has no signature")]
    Unsigned,
    /// The signature is not the envelope sender's.
    #[error("signature is not the sender's")]
    BadSignature,
}

fn signed_bytes(envelope: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(CONTEXT.len() + envelope.len());
    m.extend_from_slice(CONTEXT);
    m.extend_from_slice(envelope);
    m
}

/// Appends `author`'s signature to encoded envelope bytes.
///
/// # Panics
/// Never for ed25519 keys (the only kind murmur makes).
pub fn sign(author: &Keypair, mut envelope: Vec<u8>) -> Vec<u8> {
    let signature = author
        .sign(&signed_bytes(&envelope))
        .expect("ed25519 signing does not fail");
    envelope.extend_from_slice(&signature);
    envelope
}

/// The envelope bytes and the signature of a frame, unchecked.
///
/// # Errors
/// [`FrameError::Unsigned`] when shorter than a signature.
pub fn split(frame: &[u8]) -> Result<(&[u8], &[u8]), FrameError> {
    if frame.len() <= SIGNATURE_LEN {
        return Err(FrameError::Unsigned);
    }
    Ok(frame.split_at(frame.len() - SIGNATURE_LEN))
}

/// The public key inside an (ed25519) peer id.
pub fn public_key(peer: &PeerId) -> Option<PublicKey> {
    PublicKey::try_decode_protobuf(peer.as_ref().digest()).ok()
}

/// Authors whose verifying keys the memo keeps decoded.
const KEY_MEMO: usize = 1024;

/// The decoded verifying keys of the last [`KEY_MEMO`] authors whose
/// signatures verified. Getting a key from a peer id costs two point
/// decompressions (libp2p's decoding checks the point, dalek's decodes it
/// again), a fifth of a signature check, and a busy topic's messages come
/// from few authors. Only a key that verified a signature is kept, so frames
/// in made-up names cannot churn it; a full memo starts over.
mod key_memo {
    use std::collections::HashMap;
    use std::sync::{Mutex, MutexGuard, PoisonError};

    use libp2p::PeerId;

    type Keys = HashMap<PeerId, ed25519_dalek::VerifyingKey>;
    static KEYS: Mutex<Option<Keys>> = Mutex::new(None);

    fn keys() -> MutexGuard<'static, Option<Keys>> {
        KEYS.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The kept key of `peer`, if any.
    pub(super) fn get(peer: &PeerId) -> Option<ed25519_dalek::VerifyingKey> {
        keys().as_ref()?.get(peer).copied()
    }

    /// Keeps `key` as `peer`'s (it verified one of `peer`'s signatures).
    pub(super) fn remember(peer: PeerId, key: ed25519_dalek::VerifyingKey) {
        let mut guard = keys();
        let keys = guard.get_or_insert_with(HashMap::new);
        if keys.len() >= super::KEY_MEMO {
            keys.clear();
        }
        keys.insert(peer, key);
    }
}

/// The ed25519 verifying key of `peer` and whether the memo had it, or
/// `None` when it has none murmur accepts (not ed25519, not a curve point,
/// or of small order, for which anyone could "sign").
fn verifying_key(peer: &PeerId) -> Option<(ed25519_dalek::VerifyingKey, bool)> {
    if let Some(key) = key_memo::get(peer) {
        return Some((key, true));
    }
    let key = public_key(peer)
        .and_then(|k| k.try_into_ed25519().ok())
        .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k.to_bytes()).ok())
        .filter(|k| !k.is_weak())?;
    Some((key, false))
}

/// A decoded frame whose signature is not checked yet (see [`verify_all`]).
pub struct Unverified {
    /// The envelope, trusted only once the signature is.
    pub envelope: Envelope,
    signed: Vec<u8>,
    signature: ed25519_dalek::Signature,
    key: ed25519_dalek::VerifyingKey,
    /// Whether `key` came from the memo (a verified one need not be kept again).
    memoized: bool,
}

/// Decodes a frame and readies the check of its signature.
///
/// # Errors
/// When malformed, or when the sender is not an ed25519 key
/// ([`FrameError::BadSignature`]: no signature of it can be valid).
pub fn decode(frame: &[u8]) -> Result<Unverified, FrameError> {
    let (bytes, signature) = split(frame)?;
    let envelope = Envelope::decode(bytes)?;
    let (key, memoized) = verifying_key(&envelope.sender).ok_or(FrameError::BadSignature)?;
    let signature = ed25519_dalek::Signature::from_slice(signature).map_err(|_| FrameError::BadSignature)?;
    Ok(Unverified {
        envelope,
        signed: signed_bytes(bytes),
        signature,
        key,
        memoized,
    })
}

/// Checks the signatures of `frames`, in order: `true` where the signature
/// is the envelope sender's. Several are checked together (ed25519 batch
/// verification, about half the work per signature for a burst of them);
/// when a batch fails, each is checked alone to find the bad ones. A batch
/// accepts exactly the signatures that pass alone, but for ones a key's
/// owner could craft for its own messages with small-order components.
pub fn verify_all(frames: &[&Unverified]) -> Vec<bool> {
    let alone = |f: &&Unverified| f.key.verify_strict(&f.signed, &f.signature).is_ok();
    let batch = frames.len() > 1 && {
        let messages: Vec<&[u8]> = frames.iter().map(|f| f.signed.as_slice()).collect();
        let signatures: Vec<_> = frames.iter().map(|f| f.signature).collect();
        let keys: Vec<_> = frames.iter().map(|f| f.key).collect();
        ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
    };
    let verdicts = if batch {
        vec![true; frames.len()]
    } else {
        frames.iter().map(alone).collect()
    };
    for (frame, _) in frames.iter().zip(&verdicts).filter(|(f, ok)| **ok && !f.memoized) {
        key_memo::remember(frame.envelope.sender, frame.key);
    }
    verdicts
}

/// Decodes a frame and checks that its signature is the envelope sender's.
///
/// # Errors
/// When malformed, or when the signature is not the sender's.
pub fn verify(frame: &[u8]) -> Result<Envelope, FrameError> {
    let frame = decode(frame)?;
    if verify_all(&[&frame]) == [true] {
        Ok(frame.envelope)
    } else {
        Err(FrameError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::TopicKeys;
    use crate::envelope::{Payload, Purpose};

    fn frame(author: &Keypair, sender: PeerId) -> Vec<u8> {
        let t = TopicKeys::derive("news", "s3cret");
        let payload = Payload {
            seq: 1,
            name: "a".into(),
            body: "hi".into(),
        };
        let env = Envelope::seal(&t.key, Purpose::Topic, t.id, sender, 5, &payload);
        sign(author, env.encode())
    }

    #[test]
    fn only_the_senders_signature_verifies() {
        let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let pa = a.public().to_peer_id();
        let good = frame(&a, pa);
        assert_eq!(verify(&good).unwrap().sender, pa);
        // Another member writes an envelope naming `a` as its sender.
        assert_eq!(verify(&frame(&b, pa)), Err(FrameError::BadSignature));
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(verify(&bad).is_err(), "flipping byte {i} still verifies");
        }
        assert_eq!(verify(&good[..SIGNATURE_LEN]), Err(FrameError::Unsigned));
    }

    #[test]
    fn only_a_key_that_verified_a_signature_is_kept() {
        let (author, forger) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
        let sender = author.public().to_peer_id();
        let forged = frame(&forger, sender);
        assert_eq!(verify(&forged), Err(FrameError::BadSignature));
        assert!(key_memo::get(&sender).is_none(), "a forgery's key was kept");
        assert!(verify(&frame(&author, sender)).is_ok());
        assert!(key_memo::get(&sender).is_some(), "a verified key was not kept");
        // With the key kept, a forgery is still refused.
        assert_eq!(verify(&forged), Err(FrameError::BadSignature));
        assert!(verify(&frame(&author, sender)).is_ok());
    }

    #[test]
    fn a_batch_finds_each_bad_signature() {
        let keys: Vec<Keypair> = (0..8).map(|_| Keypair::generate_ed25519()).collect();
        let mut frames: Vec<Vec<u8>> = keys.iter().map(|k| frame(k, k.public().to_peer_id())).collect();
        // A forgery in another's name, and a flipped signature bit.
        frames[2] = frame(&keys[3], keys[2].public().to_peer_id());
        let last = frames[5].len() - 1;
        frames[5][last] ^= 0x40;
        let decoded: Vec<Unverified> = frames.iter().map(|f| decode(f).unwrap()).collect();
        let refs: Vec<&Unverified> = decoded.iter().collect();
        let expected: Vec<bool> = (0..8).map(|i| i != 2 && i != 5).collect();
        assert_eq!(verify_all(&refs), expected);
        // All good: one batch; each alone agrees.
        let good: Vec<&Unverified> = refs
            .iter()
            .enumerate()
            .filter(|(i, _)| expected[*i])
            .map(|(_, f)| *f)
            .collect();
        assert_eq!(verify_all(&good), vec![true; good.len()]);
        for f in good {
            assert_eq!(verify_all(&[f]), [true]);
        }
    }
}
