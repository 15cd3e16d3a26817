//! Fuzzes the `/murmur/dm/2` request and response decoders.
#![no_main]

use libfuzzer_sys::fuzz_target;
use murmur::network::codec::Frame;
use murmur::network::dm::{DmRequest, DmResponse};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = DmRequest::decode(data) {
        assert_eq!(DmRequest::decode(&request.encode()).unwrap(), request);
    }
    let _ = DmResponse::decode(data);
});
