//! Delivery: reads each shard's durable records, batches them, encodes and
//! uploads them, and moves the checkpoint only after the store confirmed.

pub mod keys;
