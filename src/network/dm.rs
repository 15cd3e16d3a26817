//! The direct-message protocol `/murmur/dm/2`: wire types and the
//! request-response codec. One request per stream; every read is bounded.
//! The request carries one envelope of purpose `Direct`, sealed end to end
//! under the sender–recipient pair key (`crypto::direct_key`), so neither a
//! relay nor the sender's outbox on disk holds the body in plaintext.
//!
//! ```text
//! request:  version:u8 = 2 | envelope (rest of stream)
//! response: version:u8 = 2 | id:[32] | status:u8 (0 stored, 1 refused) | reason (UTF-8, rest)
//! ```

use std::io;

use libp2p::StreamProtocol;

use super::codec::{invalid, reason_text, Frame, FrameCodec, MAX_REASON_BYTES};

use crate::envelope::MAX_ENVELOPE_BYTES;

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/murmur/dm/2");
/// The wire version byte.
const VERSION: u8 = 2;
/// The largest request a valid DM produces; anything longer is refused unread.
pub const MAX_REQUEST_BYTES: usize = 1 + MAX_ENVELOPE_BYTES;
/// The largest response.
const MAX_RESPONSE_BYTES: usize = 1 + 32 + 1 + MAX_REASON_BYTES;

/// A direct message on the wire: one sealed `Direct` envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmRequest {
    /// The envelope bytes (its salt is the message id).
    pub envelope: Vec<u8>,
}

/// The recipient's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmResponse {
    /// Id of the message answered.
    pub id: [u8; 32],
    /// `Ok` once stored durably, `Err(reason)` when refused.
    pub result: Result<(), String>,
}

impl Frame for DmRequest {
    const MAX_BYTES: usize = MAX_REQUEST_BYTES;

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.envelope.len());
        out.push(VERSION);
        out.extend_from_slice(&self.envelope);
        out
    }

    /// Parses wire bytes (the envelope itself is checked by its receiver). Never panics.
    ///
    /// # Errors
    /// `InvalidData` when empty, of another version, or too large.
    fn decode(bytes: &[u8]) -> io::Result<Self> {
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(invalid("direct message too large"));
        }
        match bytes.split_first() {
            Some((&VERSION, envelope)) => Ok(Self {
                envelope: envelope.to_vec(),
            }),
            _ => Err(invalid("malformed direct message")),
        }
    }
}

impl Frame for DmResponse {
    const MAX_BYTES: usize = MAX_RESPONSE_BYTES;

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_RESPONSE_BYTES);
        out.push(VERSION);
        out.extend_from_slice(&self.id);
        match &self.result {
            Ok(()) => out.push(0),
            Err(reason) => {
                out.push(1);
                out.extend_from_slice(crate::envelope::truncate_utf8(reason, MAX_REASON_BYTES).as_bytes());
            }
        }
        out
    }

    /// Parses wire bytes. Never panics.
    ///
    /// # Errors
    /// `InvalidData` when malformed.
    fn decode(bytes: &[u8]) -> io::Result<Self> {
        if bytes.len() < 34 || bytes.len() > MAX_RESPONSE_BYTES || bytes[0] != VERSION {
            return Err(invalid("malformed direct message response"));
        }
        let id: [u8; 32] = bytes[1..33].try_into().expect("32 bytes");
        let result = match bytes[33] {
            0 if bytes.len() == 34 => Ok(()),
            1 => Err(reason_text(&bytes[34..])),
            _ => return Err(invalid("malformed direct message response")),
        };
        Ok(Self { id, result })
    }
}

/// The request-response codec of `/murmur/dm/2`.
pub type DmCodec = FrameCodec<DmRequest, DmResponse>;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        let req = DmRequest {
            envelope: vec![1, 2, 3],
        };
        assert_eq!(DmRequest::decode(&req.encode()).unwrap(), req);
        for result in [Ok(()), Err("no".to_string())] {
            let res = DmResponse { id: [4; 32], result };
            assert_eq!(DmResponse::decode(&res.encode()).unwrap(), res);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            // Whatever decodes encodes back to the same value.
            if let Ok(r) = DmRequest::decode(&bytes) {
                prop_assert_eq!(DmRequest::decode(&r.encode()).unwrap(), r);
            }
            if let Ok(r) = DmResponse::decode(&bytes) {
                prop_assert_eq!(DmResponse::decode(&r.encode()).unwrap(), r);
            }
        }

        #[test]
        fn request_round_trip(envelope in proptest::collection::vec(any::<u8>(), 0..300)) {
            let req = DmRequest { envelope };
            prop_assert_eq!(DmRequest::decode(&req.encode()).unwrap(), req);
        }
    }
}
