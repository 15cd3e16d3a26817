//! Fuzzes the `/murmur/sync/1` request and response decoders: whatever
//! decodes re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur::network::codec::Frame;
use murmur::network::sync::{SyncRequest, SyncResponse};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = SyncRequest::decode(data) {
        assert_eq!(SyncRequest::decode(&request.encode()).unwrap(), request);
    }
    if let Ok(response) = SyncResponse::decode(data) {
        assert_eq!(SyncResponse::decode(&response.encode()).unwrap(), response);
    }
});
