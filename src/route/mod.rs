//! Where a record goes: the keys that route it and the name of the object
//! it lands in.
//!
//! [`partition`] evaluates a stream's partition keys on a record (jq
//! expressions, the record's time, or the keys a transform returned);
//! [`keys`] expands the prefix template with them and names each object
//! deterministically. Both are pure functions of their inputs: `config`
//! compiles them once when a stream is defined (from YAML or an API
//! request) and `delivery` runs them on every record. Nothing here does
//! I/O or knows where a stream's records come from.

pub mod keys;
pub mod partition;
