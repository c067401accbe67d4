//! Fuzzes `hydrant::fuzzing::iam_policy`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydrant::fuzzing::iam_policy(data));
