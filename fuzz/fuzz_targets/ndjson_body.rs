//! Fuzzes `hydrant::fuzzing::ndjson_body`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydrant::fuzzing::ndjson_body(data));
