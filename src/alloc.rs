//! The memory allocator the daemon runs on: jemalloc, with one arena.
//!
//! Records are read into buffers, decoded into columns, encoded and freed
//! at every record rate, often by another thread than the one that
//! allocated them; at W2's saturation glibc's malloc and free were a
//! seventh of the daemon's CPU. jemalloc's default of four arenas per core
//! held more memory than the daemon's peak RSS target allows, so it runs
//! with one (threads still allocate from their own caches, which take most
//! small allocations). The settings can be changed at start with
//! `_RJEM_MALLOC_CONF` in jemalloc's `malloc_conf` syntax, for instance
//! `narenas:8` on a machine with many cores.
//!
//! The `hydrant` binary installs it with [`crate::memory_allocator!`]: the
//! allocator and its settings must be defined in the binary itself, where
//! the linker keeps them. `hydrant-bench` keeps the system's allocator, so
//! its stage ceilings, the yardsticks the daemon is measured against, are
//! measured as they always were. The library does not install one: the
//! fuzz targets' sanitizer must see every allocation.

pub use tikv_jemallocator::Jemalloc;

/// jemalloc's settings as it reads them at start: the address of a C string.
#[repr(transparent)]
pub struct MallocConf(pub *const std::ffi::c_char);

// SAFETY: it holds the address of a string literal, which is read and never
// written.
unsafe impl Sync for MallocConf {}

/// The settings built in: one arena.
pub const MALLOC_CONF: &std::ffi::CStr = c"narenas:1";

/// Installs jemalloc with [`MALLOC_CONF`] as the binary's allocator.
#[macro_export]
macro_rules! memory_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::alloc::Jemalloc = $crate::alloc::Jemalloc;

        // jemalloc reads its settings from this symbol as it starts.
        #[unsafe(export_name = "_rjem_malloc_conf")]
        static MALLOC_CONF: $crate::alloc::MallocConf =
            $crate::alloc::MallocConf($crate::alloc::MALLOC_CONF.as_ptr());
    };
}
