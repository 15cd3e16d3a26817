//! Fuzzes the envelope decoder and, for what decodes, opening it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur::crypto::TopicKeys;
use murmur::envelope::{Envelope, Purpose};

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = Envelope::decode(data) {
        assert_eq!(envelope.encode(), data, "decode/encode must round-trip");
        let keys = TopicKeys::derive("news", "s3cret");
        let _ = envelope.open(&keys.key, Purpose::Topic, &keys.id);
    }
});
