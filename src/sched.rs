//! CPU scheduling of the daemon's threads.
//!
//! Two kinds of thread: those on the acknowledgement path (the runtime's
//! workers, which parse requests and answer producers, and the log writers,
//! which write and sync) and delivery's background work (reading the log,
//! transforming, encoding). On a busy machine the first kind must run as soon
//! as it is woken, or every producer waits; the second absorbs contention,
//! which the log is there to buffer.
//!
//! - Background threads run at nice [`BACKGROUND_NICE`].
//! - Acknowledgement threads ask for short time slices (`limits.ack_slice_us`):
//!   since Linux 6.12 (EEVDF) a woken thread with a shorter slice than the
//!   running one preempts it, instead of waiting until that one's slice (a
//!   few milliseconds, enforced at the next timer tick) is used up. Their share
//!   of the CPU does not change, only how soon they get it. Earlier kernels
//!   accept the setting and ignore it.

use std::sync::atomic::{AtomicU64, Ordering};

/// The nice value of background threads: the scheduler gives a nice-0 thread
/// about 9 times the CPU of a nice-10 one when both are runnable.
pub const BACKGROUND_NICE: i32 = 10;

/// The slice acknowledgement threads ask for, in nanoseconds; 0: the kernel's.
static ACK_SLICE_NS: AtomicU64 = AtomicU64::new(0);

/// Sets the slice [`ack_thread`] asks for, from `limits.ack_slice_us`.
pub fn set_ack_slice(slice_us: u64) {
    ACK_SLICE_NS.store(slice_us.saturating_mul(1000), Ordering::Relaxed);
}

/// Marks the calling thread as one on the acknowledgement path.
pub fn ack_thread() {
    let slice = ACK_SLICE_NS.load(Ordering::Relaxed);
    if slice == 0 {
        return;
    }
    if let Err(e) = set_thread(None, slice) {
        tracing::debug!(error = %e, "cannot shorten a thread's time slice");
    }
}

thread_local! {
    static BACKGROUND: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as background work, once per thread: nice
/// [`BACKGROUND_NICE`] and the kernel's default slice (a blocking-pool thread
/// starts as an acknowledgement thread; once marked it keeps the settings for
/// whatever it runs later, which is background work too, or short).
pub fn background_thread() {
    if BACKGROUND.with(|b| b.replace(true)) {
        return;
    }
    if set_thread(Some(BACKGROUND_NICE), 0).is_ok() {
        return;
    }
    // Without sched_setattr (a kernel before 3.14, a seccomp filter), the
    // nice value alone.
    // SAFETY: setpriority has no memory-safety preconditions; `0` names the
    // calling thread. Failure leaves the priority as is.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower a delivery thread's priority");
    }
}

/// `struct sched_attr` of `sched_setattr(2)`, its first version (48 bytes).
#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// Sets the calling thread's nice value (`None`: keeps it) and slice
/// (`slice_ns`; 0: the kernel's default), policy `SCHED_OTHER`. Lowering the
/// nice value needs privilege; without it nothing is changed.
#[cfg(target_os = "linux")]
pub fn set_thread(nice: Option<i32>, slice_ns: u64) -> std::io::Result<()> {
    let nice = match nice {
        Some(n) => n,
        None => {
            // SAFETY: errno is thread-local; getpriority reads nothing of
            // ours. -1 is a valid nice value, so errno tells failure apart.
            unsafe {
                *libc::__errno_location() = 0;
                let n = libc::getpriority(libc::PRIO_PROCESS, 0);
                if n == -1 && *libc::__errno_location() != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                n
            }
        }
    };
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: libc::SCHED_OTHER as u32,
        nice,
        runtime: slice_ns,
        ..SchedAttr::default()
    };
    // SAFETY: `attr` is an initialised `sched_attr` of the size it declares,
    // alive for the call; thread id 0 is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0u32) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
pub fn set_thread(nice: Option<i32>, _slice_ns: u64) -> std::io::Result<()> {
    if let Some(n) = nice {
        // SAFETY: as above.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, n) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The nice value and the slice (`sched_getattr`) of the calling thread.
    fn current() -> (i32, u64) {
        let mut attr = SchedAttr::default();
        // SAFETY: `attr` is writable and as large as the size passed.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_sched_getattr,
                0,
                &mut attr as *mut SchedAttr,
                std::mem::size_of::<SchedAttr>() as u32,
                0u32,
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        (attr.nice, attr.runtime)
    }

    #[test]
    fn a_background_thread_is_niced_and_loses_an_inherited_short_slice() {
        std::thread::spawn(|| {
            set_thread(None, 300_000).unwrap();
            let (nice, slice) = current();
            assert_eq!(nice, 0);
            // Kernels before 6.12 keep no slice for SCHED_OTHER and report 0.
            assert!(slice == 300_000 || slice == 0, "{slice}");
            background_thread();
            let (nice, slice) = current();
            assert_eq!(nice, BACKGROUND_NICE);
            assert_ne!(slice, 300_000);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn an_ack_thread_keeps_its_nice_value() {
        std::thread::spawn(|| {
            // SAFETY: as in `background_thread`.
            assert_eq!(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 3) }, 0);
            set_ack_slice(200);
            ack_thread();
            let (nice, slice) = current();
            assert_eq!(nice, 3);
            assert!(slice == 200_000 || slice == 0, "{slice}");
        })
        .join()
        .unwrap();
    }
}
