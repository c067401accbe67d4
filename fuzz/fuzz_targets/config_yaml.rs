//! Fuzzes `hydrant::fuzzing::config_yaml`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydrant::fuzzing::config_yaml(data));
