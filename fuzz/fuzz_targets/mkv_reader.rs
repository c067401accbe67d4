//! Fuzzes `hydrant::fuzzing::mkv_reader`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydrant::fuzzing::mkv_reader(data));
