//! Fuzzes `hydrant::fuzzing::queue_receipt_handle`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydrant::fuzzing::queue_receipt_handle(data));
