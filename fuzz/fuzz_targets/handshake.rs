#![no_main]
//! Fuzz target handshake: decoding arbitrary bytes as a rank's handshake never panics, and a
//! message that decodes re-encodes to the same bytes.
use inc_store::Handshake;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rank = data.first().copied().unwrap_or(0) as usize % 8;
    if let Ok(h) = Handshake::decode(data, rank) {
        assert_eq!(h.rank as usize, rank);
        assert_eq!(h.encode().expect("a decoded message re-encodes"), data);
    }
});
