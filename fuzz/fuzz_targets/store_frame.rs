#![no_main]
//! Fuzz target store_frame: the TCPStore server's frame decoder must never panic, never claim
//! more bytes than it was given, never ask to buffer past the frame limit, and every frame it
//! accepts must re-encode to exactly the bytes it consumed.
use inc_store::proto::{decode_request, encode_request, Decoded, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_key_bytes: 256, max_value_bytes: 4096, max_keys_per_op: 64, max_frame_bytes: 1 << 16 };
    let mut rest = data;
    // Decode a stream of frames as the server does.
    while !rest.is_empty() {
        match decode_request(rest, &limits) {
            Ok(Decoded::Frame { request, len }) => {
                assert!(len > 0 && len <= rest.len());
                let mut re = Vec::new();
                encode_request(&request, &mut re);
                assert_eq!(&re[..], &rest[..len]);
                rest = &rest[len..];
            }
            Ok(Decoded::Incomplete { need }) => {
                assert!(need > rest.len());
                assert!(need as u64 <= limits.max_frame_bytes);
                break;
            }
            Err(_) => break,
        }
    }
});
