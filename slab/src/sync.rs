//! The slab crate's view of the loom shim: `hotslab_hotplug::sync` (loom types under `cfg(loom)`)
//! plus the asymmetric barrier pair the thread-cache revocation protocol needs.
//! It owns no allocator state; the memory layer (`mem/`) uses std atomics directly instead.

pub(crate) use hotslab_hotplug::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
};
pub(crate) use hotslab_hotplug::sync::{lock, spin_wait, try_lock, Mutex, MutexGuard};

/// A value alone on its 64-byte cache line (the line written by other threads: a slab's
/// cross-thread word, a thread cache's notice count). Unlike crossbeam's `CachePadded`, which
/// pads to 128 bytes on x86-64 (for Intel's adjacent-line prefetcher), it keeps the descriptors
/// that embed it at an odd number of cache lines: descriptors are allocated back to back
/// (`mem::meta`), and a stride of an odd number of lines spreads their hot first lines over every
/// L1 set, where a 128- or 512-byte stride uses a quarter or an eighth of them (measured: the
/// free path's descriptor load missed L1 on 37 % of rptest's frees at a 512-byte stride).
#[repr(C, align(64))]
pub(crate) struct LinePadded<T>(T);

impl<T> LinePadded<T> {
    pub(crate) const fn new(v: T) -> Self {
        LinePadded(v)
    }
}

impl<T> core::ops::Deref for LinePadded<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The cheap half of the asymmetric barrier, run by a thread cache's owner on the fast path between
/// publishing "busy" and reading "revoked".
///
/// In a normal build it is only a compiler fence: the revoker's [`heavy_barrier`] (membarrier)
/// forces the full fence onto every running thread. Under loom and Miri, which cannot model
/// membarrier, both halves are real SeqCst fences.
#[inline(always)]
pub(crate) fn light_barrier() {
    #[cfg(any(loom, miri))]
    fence(Ordering::SeqCst);
    #[cfg(not(any(loom, miri)))]
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
}

/// The expensive half, run by a revoker (destroy, offline) between setting "revoked" and reading
/// "busy": after it returns, every thread either has seen the revoker's earlier stores or had
/// published its own earlier stores (Dekker's pair across threads, as in userspace RCU).
pub(crate) fn heavy_barrier() {
    fence(Ordering::SeqCst);
    #[cfg(not(any(loom, miri)))]
    hotslab_hotplug::membarrier::process_barrier();
}

/// A SeqCst fence under loom only. Where hotslab relies on the C++ rule that SeqCst loads see
/// the last SeqCst store before them in the single total order (a store-load handshake between
/// a remote free and a drainer), loom, which models SeqCst exactly only for fences, needs the
/// fence to explore the same guarantee. On real hardware the SeqCst operations suffice.
#[inline(always)]
pub(crate) fn loom_sc_fence() {
    #[cfg(loom)]
    fence(Ordering::SeqCst);
}
