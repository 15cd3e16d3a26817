//! The catch-up protocol `/murmur/sync/1`: wire types, the request-response
//! codec (every read bounded) and the membership proof. The event loop
//! drives it (see `docs/protocol.md`, "Catch-up").
//!
//! A node pulls, per topic, the envelopes a peer holds and it lacks: it names
//! the window it wants (`since`), a cursor (`after`) and the short ids of the
//! envelopes it already holds from the cursor on; the peer answers with one
//! bounded page of the envelopes not in that set and the cursor to continue
//! from. Only ciphertext envelopes travel; the puller validates and opens
//! them as it does live gossip.
//!
//! ```text
//! request:  version:u8 = 1 | topic_id:[32] | proof:[32] | since:u64 | after_ts:u64 | after_id:[32]
//!           | count:u32 | count × short_id:[8]
//! response: version:u8 = 1 | status:u8 (0 page, 1 refused)
//!           page:    more:u8 | next_ts:u64 | next_id:[32] | count:u32 | count × (len:u32 | envelope)
//!           refused: reason (UTF-8, rest)
//! ```

use std::io;

use hmac::{Hmac, Mac};
use libp2p::{PeerId, StreamProtocol};
use sha2::Sha256;

use super::codec::{invalid, reason_text, Frame, FrameCodec, MAX_REASON_BYTES};
use crate::crypto::Key;
use crate::signed::MAX_FRAME_BYTES;
pub use crate::store::{short_id, Cursor, MAX_PAGE_ENVELOPES, PAGE_BYTES, SHORT_ID_LEN};

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/murmur/sync/1");
/// The wire version byte.
const VERSION: u8 = 1;
/// Most short ids one request may carry (a topic's default retention is 10,000).
pub const MAX_HAVE: usize = 20_000;
/// Fixed request bytes before the have set.
const REQUEST_HEADER: usize = 1 + 32 + 32 + 8 + 8 + 32 + 4;
/// The largest request; anything longer is refused unread.
pub const MAX_REQUEST_BYTES: usize = REQUEST_HEADER + MAX_HAVE * SHORT_ID_LEN;
/// Fixed page bytes: version, status, more, next_ts, next_id, count.
const PAGE_HEADER: usize = 1 + 1 + 1 + 8 + 32 + 4;
/// The largest response.
pub const MAX_RESPONSE_BYTES: usize = PAGE_HEADER + PAGE_BYTES + MAX_FRAME_BYTES + 4 * MAX_PAGE_ENVELOPES;

/// Asks a peer for one page of a topic's envelopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// The topic id.
    pub topic_id: [u8; 32],
    /// Proof that the asker holds the topic key (see [`proof`]).
    pub proof: [u8; 32],
    /// Oldest sender timestamp wanted (unix ms).
    pub since: u64,
    /// Only envelopes after this position.
    pub after: Cursor,
    /// Short ids of the envelopes the asker already holds after `after`.
    pub have: Vec<[u8; SHORT_ID_LEN]>,
}

/// One page of envelopes, or a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncResponse {
    /// Envelopes the asker lacks, in (ts, id) order.
    Page {
        /// Whether more may follow after `next`.
        more: bool,
        /// Where the next request continues.
        next: Cursor,
        /// Sealed envelopes.
        envelopes: Vec<Vec<u8>>,
    },
    /// Not served, and why.
    Refused(String),
}

/// Proof that `asker` holds a topic's key, bound to the two peers so that it
/// says nothing to a third and cannot be replayed by one:
/// HMAC-SHA256(topic key, "murmur/sync/1 proof" ‖ asker ‖ server).
pub fn proof(topic_key: &Key, asker: &PeerId, server: &PeerId) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(topic_key).expect("HMAC takes any key length");
    mac.update(b"murmur/sync/1 proof");
    for peer in [asker, server] {
        let bytes = peer.to_bytes();
        mac.update(&[bytes.len() as u8]);
        mac.update(&bytes);
    }
    mac.finalize().into_bytes().into()
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> io::Result<&'a [u8]> {
    if bytes.len() < n {
        return Err(invalid("sync frame truncated"));
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

fn take_array<const N: usize>(bytes: &mut &[u8]) -> io::Result<[u8; N]> {
    Ok(take(bytes, N)?.try_into().expect("length checked"))
}

fn take_u64(bytes: &mut &[u8]) -> io::Result<u64> {
    Ok(u64::from_be_bytes(take_array(bytes)?))
}

fn take_u32(bytes: &mut &[u8]) -> io::Result<usize> {
    Ok(u32::from_be_bytes(take_array(bytes)?) as usize)
}

impl Frame for SyncRequest {
    const MAX_BYTES: usize = MAX_REQUEST_BYTES;

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REQUEST_HEADER + self.have.len() * SHORT_ID_LEN);
        out.push(VERSION);
        out.extend_from_slice(&self.topic_id);
        out.extend_from_slice(&self.proof);
        out.extend_from_slice(&self.since.to_be_bytes());
        out.extend_from_slice(&self.after.ts.to_be_bytes());
        out.extend_from_slice(&self.after.id);
        out.extend_from_slice(&(self.have.len() as u32).to_be_bytes());
        for id in &self.have {
            out.extend_from_slice(id);
        }
        out
    }

    /// Parses wire bytes. Never panics.
    ///
    /// # Errors
    /// `InvalidData` when malformed or over the limits.
    fn decode(mut bytes: &[u8]) -> io::Result<Self> {
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(invalid("sync request too large"));
        }
        if take_array::<1>(&mut bytes)?[0] != VERSION {
            return Err(invalid("unsupported sync version"));
        }
        let topic_id = take_array(&mut bytes)?;
        let proof = take_array(&mut bytes)?;
        let since = take_u64(&mut bytes)?;
        let after = Cursor {
            ts: take_u64(&mut bytes)?,
            id: take_array(&mut bytes)?,
        };
        let count = take_u32(&mut bytes)?;
        if count > MAX_HAVE || bytes.len() != count * SHORT_ID_LEN {
            return Err(invalid("malformed sync have set"));
        }
        let have = bytes
            .chunks_exact(SHORT_ID_LEN)
            .map(|c| c.try_into().expect("chunk length"))
            .collect();
        Ok(Self {
            topic_id,
            proof,
            since,
            after,
            have,
        })
    }
}

impl Frame for SyncResponse {
    const MAX_BYTES: usize = MAX_RESPONSE_BYTES;

    fn encode(&self) -> Vec<u8> {
        match self {
            Self::Page { more, next, envelopes } => {
                let len: usize = envelopes.iter().map(|e| 4 + e.len()).sum();
                let mut out = Vec::with_capacity(PAGE_HEADER + len);
                out.extend_from_slice(&[VERSION, 0, u8::from(*more)]);
                out.extend_from_slice(&next.ts.to_be_bytes());
                out.extend_from_slice(&next.id);
                out.extend_from_slice(&(envelopes.len() as u32).to_be_bytes());
                for e in envelopes {
                    out.extend_from_slice(&(e.len() as u32).to_be_bytes());
                    out.extend_from_slice(e);
                }
                out
            }
            Self::Refused(reason) => {
                let mut out = vec![VERSION, 1];
                out.extend_from_slice(crate::envelope::truncate_utf8(reason, MAX_REASON_BYTES).as_bytes());
                out
            }
        }
    }

    /// Parses wire bytes. Never panics.
    ///
    /// # Errors
    /// `InvalidData` when malformed or over the limits.
    fn decode(mut bytes: &[u8]) -> io::Result<Self> {
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(invalid("sync response too large"));
        }
        let [version, status] = take_array(&mut bytes)?;
        if version != VERSION {
            return Err(invalid("unsupported sync version"));
        }
        match status {
            0 => {
                let more = match take_array::<1>(&mut bytes)?[0] {
                    0 => false,
                    1 => true,
                    _ => return Err(invalid("malformed sync page")),
                };
                let next = Cursor {
                    ts: take_u64(&mut bytes)?,
                    id: take_array(&mut bytes)?,
                };
                let count = take_u32(&mut bytes)?;
                if count > MAX_PAGE_ENVELOPES {
                    return Err(invalid("sync page has too many envelopes"));
                }
                let mut envelopes = Vec::with_capacity(count);
                for _ in 0..count {
                    let len = take_u32(&mut bytes)?;
                    if len > MAX_FRAME_BYTES {
                        return Err(invalid("sync page envelope too large"));
                    }
                    envelopes.push(take(&mut bytes, len)?.to_vec());
                }
                if !bytes.is_empty() {
                    return Err(invalid("trailing bytes after a sync page"));
                }
                Ok(Self::Page { more, next, envelopes })
            }
            1 if bytes.len() <= MAX_REASON_BYTES => Ok(Self::Refused(reason_text(bytes))),
            _ => Err(invalid("malformed sync response")),
        }
    }
}

/// The request-response codec of `/murmur/sync/1`.
pub type SyncCodec = FrameCodec<SyncRequest, SyncResponse>;

/// Registers a catch-up codec's byte counters as
/// `murmur_sync_frame_bytes_in_total` and `murmur_sync_frame_bytes_out_total`.
pub fn register_traffic(codec: &SyncCodec, registry: &mut prometheus_client::registry::Registry) {
    let r = registry.sub_registry_with_prefix("murmur");
    r.register(
        "sync_frame_bytes_in",
        "Bytes of catch-up frames (requests and responses) read",
        codec.traffic.read.clone(),
    );
    r.register(
        "sync_frame_bytes_out",
        "Bytes of catch-up frames (requests and responses) written",
        codec.traffic.written.clone(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        let req = SyncRequest {
            topic_id: [1; 32],
            proof: [2; 32],
            since: 7,
            after: Cursor { ts: 9, id: [3; 32] },
            have: vec![[4; 8], [5; 8]],
        };
        assert_eq!(SyncRequest::decode(&req.encode()).unwrap(), req);
        let page = SyncResponse::Page {
            more: true,
            next: Cursor { ts: 11, id: [6; 32] },
            envelopes: vec![vec![1, 2, 3], vec![]],
        };
        assert_eq!(SyncResponse::decode(&page.encode()).unwrap(), page);
        let refused = SyncResponse::Refused("no".into());
        assert_eq!(SyncResponse::decode(&refused.encode()).unwrap(), refused);
    }

    #[test]
    fn a_full_page_fits_the_response_limit() {
        let page = SyncResponse::Page {
            more: true,
            next: Cursor::default(),
            envelopes: vec![vec![0; PAGE_BYTES / MAX_PAGE_ENVELOPES]; MAX_PAGE_ENVELOPES],
        };
        assert!(page.encode().len() <= MAX_RESPONSE_BYTES);
        let big = SyncResponse::Page {
            more: true,
            next: Cursor::default(),
            envelopes: vec![vec![0; PAGE_BYTES - 1], vec![0; MAX_FRAME_BYTES]],
        };
        assert!(big.encode().len() <= MAX_RESPONSE_BYTES);
    }

    #[test]
    fn the_proof_binds_key_and_both_peers() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let p = proof(&[7; 32], &a, &b);
        assert_eq!(p, proof(&[7; 32], &a, &b));
        assert_ne!(p, proof(&[8; 32], &a, &b));
        assert_ne!(p, proof(&[7; 32], &b, &a));
    }

    #[test]
    fn oversized_have_sets_are_refused() {
        let req = SyncRequest {
            topic_id: [1; 32],
            proof: [2; 32],
            since: 0,
            after: Cursor::default(),
            have: vec![[0; 8]; MAX_HAVE + 1],
        };
        assert!(SyncRequest::decode(&req.encode()).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            // Whatever decodes encodes back to the same value.
            if let Ok(r) = SyncRequest::decode(&bytes) {
                prop_assert_eq!(SyncRequest::decode(&r.encode()).unwrap(), r);
            }
            if let Ok(r) = SyncResponse::decode(&bytes) {
                prop_assert_eq!(SyncResponse::decode(&r.encode()).unwrap(), r);
            }
        }
    }
}
