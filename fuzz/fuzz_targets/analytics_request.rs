//! Fuzzes `hydrant::fuzzing::analytics_request`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydrant::fuzzing::analytics_request(data));
