//! Fuzzes the shard log's frame reader (see `hydrant::fuzzing`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| hydrant::fuzzing::frame_reader(data));
