#![no_main]
//! Fuzz target handshake (filled in by its crate's issue).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|_data: &[u8]| {});
