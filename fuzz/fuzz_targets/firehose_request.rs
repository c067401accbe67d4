//! Fuzzes the Firehose PutRecord/PutRecordBatch parser (see `hydrant::fuzzing`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydrant::fuzzing::firehose_request(data));
