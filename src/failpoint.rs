//! Test-only crash points: a process started with `HYDRANT_FAILPOINT=NAME`
//! aborts at once (no destructor, no flush, as a `kill -9` would leave it)
//! when it reaches [`hit`]`("NAME")`. They mark the moments a crash test
//! must hit that are too short to hit by chance, such as between sealing a
//! shard and recording that it closed.
//!
//! Only debug builds read the variable; in a release build `hit` is empty.

/// Aborts the process if the failpoint `name` is armed (debug builds only).
#[inline]
pub fn hit(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("HYDRANT_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}
