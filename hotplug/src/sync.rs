//! The loom shim: every synchronisation primitive that a loom model must see (mutexes, condvars, atomics,
//! threads, per-thread identity and per-thread slots) comes from here, as loom types under `cfg(loom)` and std
//! types otherwise. It owns no lock logic; it must not allocate in std mode (no `thread::current()`).

#[cfg(loom)]
pub use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Atomics (loom's under `cfg(loom)`).
pub mod atomic {
    #[cfg(loom)]
    pub use loom::sync::atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
    };
    #[cfg(not(loom))]
    pub use std::sync::atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
    };
}

/// Threads, for tests and models (`spawn`, `yield_now`, `JoinHandle`).
pub mod thread {
    #[cfg(loom)]
    pub use loom::thread::{spawn, yield_now, JoinHandle};
    #[cfg(not(loom))]
    pub use std::thread::{spawn, yield_now, JoinHandle};
}

/// One step of a spin loop: a CPU spin hint in std mode, a scheduler yield under loom (loom must be allowed
/// to run the thread that the spinner waits for).
#[inline]
pub fn spin_wait() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// Locks `m`, ignoring poisoning: a panic in a hotplug callback must not wedge the lock for ever, and the
/// state the mutexes here guard (counters, masks) is valid after any partial update.
#[inline]
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Waits on `cv`, ignoring poisoning (see [`lock`]).
#[inline]
pub fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    match cv.wait(guard) {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Tries to lock `m` without blocking; `None` if another thread holds it (poisoning ignored).
#[inline]
pub fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    // loom's mutex reports `std::sync::TryLockError` too.
    use std::sync::TryLockError;
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Number of per-thread read-depth slots: how many distinct per-CPU locks one thread can hold the read side of
/// at the same time with exact nesting tracking (see `percpu.rs`).
pub(crate) const DEPTH_SLOTS: usize = 16;

/// One per-thread read-depth slot: `(lock instance id, depth)`; id 0 means free.
pub(crate) type DepthSlot = core::cell::Cell<(u64, u32)>;

/// The per-thread state the locks keep: the depth table and the count of untracked (overflowed) reads.
pub(crate) struct ThreadSlots {
    pub(crate) depth: [DepthSlot; DEPTH_SLOTS],
    pub(crate) overflow: core::cell::Cell<u32>,
}

impl ThreadSlots {
    const fn new() -> Self {
        ThreadSlots {
            depth: [const { core::cell::Cell::new((0, 0)) }; DEPTH_SLOTS],
            overflow: core::cell::Cell::new(0),
        }
    }
}

#[cfg(not(loom))]
mod imp {
    use super::ThreadSlots;
    use core::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Next id to hand out; 0 is reserved for "no thread".
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);

    std::thread_local! {
        // `const` initialisers and no `Drop`: no lazy-init branch, no destructor registration (which would
        // allocate), and the slots stay readable while the thread is being torn down.
        static ID: Cell<u64> = const { Cell::new(0) };
        static SLOTS: ThreadSlots = const { ThreadSlots::new() };
    }

    #[inline]
    pub fn thread_id() -> u64 {
        // `try_with` cannot fail for a const, drop-free thread local, but never panicking is cheaper to show
        // than to argue: fall back to the kernel thread id, tagged so it cannot collide with counter ids.
        ID.try_with(|id| {
            let v = id.get();
            if v != 0 {
                return v;
            }
            let v = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            id.set(v);
            v
        })
        .unwrap_or_else(|_| {
            // SAFETY: the gettid syscall has no preconditions and cannot fail (the raw syscall:
            // `libc::gettid` needs glibc 2.30).
            let tid = unsafe { libc::syscall(libc::SYS_gettid) };
            (1u64 << 63) | tid as u64
        })
    }

    #[inline]
    pub(crate) fn with_thread_slots<R>(f: impl FnOnce(&ThreadSlots) -> R) -> Option<R> {
        SLOTS.try_with(f).ok()
    }
}

#[cfg(loom)]
mod imp {
    use super::ThreadSlots;

    loom::lazy_static! {
        // Reset for every loom execution, so ids (and the stripes derived from them) are deterministic for a
        // given schedule. A plain std atomic: the counter is not part of any modelled protocol.
        static ref NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    }

    loom::thread_local! {
        // loom threads share one OS thread, so identity must live in loom's thread locals.
        static ID: u64 = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        static SLOTS: ThreadSlots = ThreadSlots::new();
    }

    pub fn thread_id() -> u64 {
        ID.with(|id| *id)
    }

    pub(crate) fn with_thread_slots<R>(f: impl FnOnce(&ThreadSlots) -> R) -> Option<R> {
        Some(SLOTS.with(f))
    }
}

/// A cheap, non-zero, per-thread unique id. Never allocates (no `thread::current()`); under loom each model
/// thread gets its own id.
///
/// ```
/// let me = hotslab_hotplug::sync::thread_id();
/// assert_ne!(me, 0);
/// assert_eq!(me, hotslab_hotplug::sync::thread_id());
/// let other = std::thread::spawn(hotslab_hotplug::sync::thread_id).join().unwrap();
/// assert_ne!(me, other);
/// ```
#[inline]
pub fn thread_id() -> u64 {
    imp::thread_id()
}

/// Runs `f` on the calling thread's slots; `None` only if the thread's locals are gone (thread teardown).
#[inline]
pub(crate) fn with_thread_slots<R>(f: impl FnOnce(&ThreadSlots) -> R) -> Option<R> {
    imp::with_thread_slots(f)
}
