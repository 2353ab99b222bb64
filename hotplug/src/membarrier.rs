//! The asymmetric barrier pair of the [`LockKind::Asymmetric`](crate::LockKind::Asymmetric) read side: a
//! compiler fence for the reader, `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` for the writer, and the
//! fallback to a SeqCst fence on both sides when membarrier is unavailable. Owns the process-wide barrier
//! mode only; knows nothing of locks.
//!
//! # Modes
//!
//! The mode is probed once, at the first use by any asymmetric lock (a thread's first read, or a writer):
//! `MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED` succeeds → [`BarrierMode::Membarrier`], else (ENOSYS on a
//! kernel before 4.14, EPERM/ENOSYS under a seccomp filter, EINVAL without `CONFIG_MEMBARRIER`, or
//! `HOTSLAB_MEMBARRIER=0` in the environment) → [`BarrierMode::Fence`]. It only ever moves
//! `Unknown → Membarrier`, `Unknown → Fence` or `Membarrier → Switching → Fence`.
//!
//! - Reader (`light`): always a compiler fence; a real SeqCst fence too unless the mode it loads is
//!   `Membarrier`. So a reader that does not fence has seen the mode become `Membarrier`, which happened
//!   after the registration succeeded.
//! - Writer (`heavy`): a SeqCst fence, then, unless the mode is `Fence`, the membarrier command (or,
//!   if that fails, the `mprotect` flush below). A reader that fenced pairs with the writer's fence
//!   (the classic SeqCst-fence Dekker pair). A reader that did not loaded `Membarrier`, and a writer
//!   skips the barrier only after it loads `Fence` (Acquire), which is published only once every
//!   unfenced reader is covered (next point).
//! - The switch `Membarrier → Switching → Fence` happens only if the command fails after a successful
//!   registration (a seccomp filter installed later; a fork child is re-registered first, see
//!   `expedited`), or through [`force_fence_fallback`]. The switcher stores `Switching` (readers that
//!   load it fence), fences, and forces one barrier on every thread of the process: membarrier if it
//!   still works, else an `mprotect` TLB shootdown. On x86 the shootdown interrupts every CPU running
//!   the process, and the interrupt is a full barrier; it is the same last resort the slab crate's
//!   revocation barrier uses (elsewhere it is best effort). Only then does it store `Fence` (Release).
//!   A reader that loaded `Membarrier` did so before that barrier's point in its instruction stream,
//!   and so did its store before the load (`R1` or `D1`). That store is globally visible before
//!   `Fence` is, so a writer that loads `Fence` and skips membarrier still sees it. A writer that loads
//!   `Switching` does not skip: it issues the barrier itself. (Publishing `Fence` at once, before the
//!   forced barrier completed, would let a writer on another thread skip membarrier while an unfenced
//!   reader's store still sat in its store buffer.)
//!
//! Under loom the mode is chosen per lock by the model (`OnlineMems::loom_membarrier`) and both halves are
//! SeqCst fences; why that is a sound stand-in is argued in `asym.rs`. Under Miri membarrier is never
//! called (the mode is `Fence`).

#[cfg(not(loom))]
use std::sync::atomic::{AtomicU8, Ordering as StdOrdering};

/// The process-wide barrier mode of the asymmetric read side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BarrierMode {
    /// Not probed yet (readers fence, as in [`Fence`](Self::Fence)).
    Unknown = 0,
    /// `membarrier(PRIVATE_EXPEDITED)` is registered: readers run a compiler fence only.
    Membarrier = 1,
    /// membarrier is unavailable (or was switched off): SeqCst fences on both sides.
    Fence = 2,
    /// Moving from `Membarrier` to `Fence`: readers fence, writers still force a barrier.
    Switching = 3,
}

impl BarrierMode {
    #[cfg_attr(loom, allow(dead_code))]
    fn from_u8(v: u8) -> BarrierMode {
        match v {
            1 => BarrierMode::Membarrier,
            2 => BarrierMode::Fence,
            3 => BarrierMode::Switching,
            _ => BarrierMode::Unknown,
        }
    }
}

/// Read by every reader's get and put: on a line of its own, so that no static the linker puts next
/// to it (a counter another crate bumps on its fast path) makes the read side miss.
#[cfg(not(loom))]
static MODE: crossbeam_utils::CachePadded<AtomicU8> =
    crossbeam_utils::CachePadded::new(AtomicU8::new(BarrierMode::Unknown as u8));

/// The current barrier mode, without probing (diagnostics and tests).
#[cfg(not(loom))]
pub fn mode() -> BarrierMode {
    // Acquire: a writer that loads `Fence` sees every store the switch's forced barrier published.
    BarrierMode::from_u8(MODE.load(StdOrdering::Acquire))
}

/// The barrier mode, probing it if nobody has yet (a syscall, once per process).
#[cfg(not(loom))]
pub(crate) fn mode_probed() -> BarrierMode {
    match mode() {
        BarrierMode::Unknown => probe(),
        m => m,
    }
}

/// Whether the reader may skip its fence: the mode it loads is `Membarrier`.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) fn reader_may_skip_fence() -> bool {
    MODE.load(StdOrdering::Relaxed) == BarrierMode::Membarrier as u8
}

#[cfg(not(loom))]
fn probe() -> BarrierMode {
    let want = if disabled_by_env() || !sys::register() {
        BarrierMode::Fence
    } else {
        BarrierMode::Membarrier
    };
    // Only Unknown → want: a racing prober got the same answer from the same kernel, and a later
    // Membarrier → Fence switch must not be undone.
    let _ = MODE.compare_exchange(
        BarrierMode::Unknown as u8,
        want as u8,
        StdOrdering::Relaxed,
        StdOrdering::Relaxed,
    );
    mode()
}

/// `HOTSLAB_MEMBARRIER=0` (or `off`) forces the fence fallback (read with `getenv`: no allocation).
#[cfg(not(loom))]
fn disabled_by_env() -> bool {
    // SAFETY: a NUL-terminated name; glibc's and musl's getenv neither allocate nor lock.
    let v = unsafe { libc::getenv(c"HOTSLAB_MEMBARRIER".as_ptr()) };
    if v.is_null() {
        return false;
    }
    // SAFETY: getenv returned a NUL-terminated string of the environment.
    matches!(
        unsafe { core::ffi::CStr::from_ptr(v) }.to_bytes(),
        b"0" | b"off" | b"no" | b"false"
    )
}

/// The reader's half: a compiler fence, plus a SeqCst fence unless membarrier covers it.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) fn light() {
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    if !reader_may_skip_fence() {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    }
}

/// The writer's half: a SeqCst fence, then membarrier when registered (see the module header).
#[cfg(not(loom))]
pub(crate) fn heavy() {
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    match mode_probed() {
        // Registered once, failing now: switch every later reader to fencing, forcing one barrier
        // on the readers that may still be in their unfenced window.
        BarrierMode::Membarrier if !sys::expedited() => switch_to_fence(),
        // Another thread is switching: unfenced readers may not be covered yet.
        BarrierMode::Switching => force_barrier(),
        _ => {}
    }
}

/// A full barrier on every thread of the process now running, for callers whose own asymmetric
/// protocol has a compiler fence as its light side and needs the barrier whatever the kernel
/// offers (the slab's thread-cache revocation): private expedited membarrier (registered on first
/// use), else the `mprotect` shootdown. It leaves the online-mems read side's [`mode`] alone.
/// Without a real kernel (Miri) it is the SeqCst fence only.
#[cfg(not(loom))]
pub fn process_barrier() {
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    force_barrier();
}

/// One full barrier on every running thread of the process: membarrier if it works, else the
/// `mprotect` shootdown.
#[cfg(not(loom))]
fn force_barrier() {
    if !sys::expedited() {
        sys::flush_by_mprotect();
    }
}

/// `Membarrier → Switching`, a forced barrier on every running thread, then `Fence` (see the module
/// header). Racing switchers each force a barrier; the first to finish publishes `Fence`.
#[cfg(not(loom))]
fn switch_to_fence() {
    let _ = MODE.compare_exchange(
        BarrierMode::Membarrier as u8,
        BarrierMode::Switching as u8,
        StdOrdering::Relaxed,
        StdOrdering::Relaxed,
    );
    // The `Switching` store before the barrier: a reader past the barrier point loads it and fences.
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    force_barrier();
    // Release: pairs with the writers' Acquire load of the mode.
    let _ = MODE.compare_exchange(
        BarrierMode::Switching as u8,
        BarrierMode::Fence as u8,
        StdOrdering::Release,
        StdOrdering::Relaxed,
    );
}

#[cfg(all(not(loom), target_os = "linux", not(miri)))]
mod sys {
    const CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    fn call(cmd: libc::c_long) -> libc::c_long {
        // SAFETY: membarrier(cmd, flags=0, cpu_id=0) takes no pointers; an unknown command fails with
        // EINVAL, an unsupported kernel with ENOSYS.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_long,
                0 as libc::c_long,
            )
        }
    }

    /// Registers the process for private expedited membarrier; false if the kernel refuses.
    pub(super) fn register() -> bool {
        call(CMD_REGISTER_PRIVATE_EXPEDITED) == 0
    }

    /// Issues the barrier. EPERM means "not registered" (a process that forked after registering may
    /// not be, depending on the kernel): register again and retry once.
    pub(super) fn expedited() -> bool {
        if call(CMD_PRIVATE_EXPEDITED) == 0 {
            return true;
        }
        register() && call(CMD_PRIVATE_EXPEDITED) == 0
    }

    /// Changing the protection of a touched private page makes the kernel shoot down its TLB entry on
    /// every CPU running this process; on x86 that is an interrupt, and so a full barrier, on each.
    pub(super) fn flush_by_mprotect() {
        // SAFETY: a fresh anonymous page, written once, re-protected, unmapped; no other pointer to it
        // exists.
        unsafe {
            let p = libc::mmap(
                core::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if p == libc::MAP_FAILED {
                return;
            }
            core::ptr::write_volatile(p.cast::<u8>(), 1);
            libc::mprotect(p, 4096, libc::PROT_READ);
            libc::munmap(p, 4096);
        }
    }
}

#[cfg(all(not(loom), not(all(target_os = "linux", not(miri)))))]
mod sys {
    pub(super) fn register() -> bool {
        false
    }
    pub(super) fn expedited() -> bool {
        false
    }
    pub(super) fn flush_by_mprotect() {}
}

/// Test and diagnostics hook: force the fence fallback for the rest of the process, as if membarrier
/// were unavailable (what `HOTSLAB_MEMBARRIER=0` does at the probe). Safe at any time: it makes the
/// same switch as a run-time failure (see the module header).
#[cfg(not(loom))]
#[doc(hidden)]
pub fn force_fence_fallback() {
    match MODE.compare_exchange(
        BarrierMode::Unknown as u8,
        BarrierMode::Fence as u8,
        StdOrdering::Relaxed,
        StdOrdering::Relaxed,
    ) {
        Ok(_) => {}
        Err(m) if m == BarrierMode::Membarrier as u8 || m == BarrierMode::Switching as u8 => {
            switch_to_fence()
        }
        Err(_) => {}
    }
}
