//! Fuzzes `hydrant::fuzzing::flat_records`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydrant::fuzzing::flat_records(data));
