//! Fuzzes the KPL de-aggregator (see `hydrant::fuzzing`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydrant::fuzzing::kpl_aggregate(data));
