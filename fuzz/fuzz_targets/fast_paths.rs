//! Fuzzes `hydrant::fuzzing::fast_paths`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydrant::fuzzing::fast_paths(data));
