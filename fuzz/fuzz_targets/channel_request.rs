//! Fuzzes `hydrant::fuzzing::channel_request`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydrant::fuzzing::channel_request(data));
