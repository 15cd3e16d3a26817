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

/// Decodes a frame and checks that its signature is the envelope sender's.
///
/// # Errors
/// When malformed, or when the signature is not the sender's.
pub fn verify(frame: &[u8]) -> Result<Envelope, FrameError> {
    let (bytes, signature) = split(frame)?;
    let envelope = Envelope::decode(bytes)?;
    let key = public_key(&envelope.sender).ok_or(FrameError::BadSignature)?;
    if !key.verify(&signed_bytes(bytes), signature) {
        return Err(FrameError::BadSignature);
    }
    Ok(envelope)
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
}
