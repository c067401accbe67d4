//! Fuzzes `hydrant::fuzzing::sealed_record`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydrant::fuzzing::sealed_record(data));
