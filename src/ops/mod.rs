//! Operating the daemon: the stream registry (start, stop, create, delete
//! streams), metrics, and the `hydrant run` lifecycle (signals, shutdown).

pub mod daemon;
pub mod metrics;
pub mod registry;
