//! The slab crate's view of the loom shim: `hotslab_hotplug::sync` (loom types under `cfg(loom)`)
//! plus the asymmetric barrier pair the thread-cache revocation protocol needs.
//! It owns no allocator state; the memory layer (`mem/`) uses std atomics directly instead.

pub(crate) use hotslab_hotplug::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
};
pub(crate) use hotslab_hotplug::sync::{lock, spin_wait, try_lock, Mutex, MutexGuard};

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
    membarrier::run();
}

#[cfg(not(any(loom, miri)))]
mod membarrier {
    use std::sync::atomic::{AtomicU8, Ordering};

    const CMD_GLOBAL: libc::c_long = 1;
    const CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    /// 0 = not probed, 1 = private expedited, 2 = global, 3 = none (fall back to mprotect IPIs).
    static MODE: AtomicU8 = AtomicU8::new(0);

    fn call(cmd: libc::c_long) -> libc::c_long {
        // SAFETY: membarrier(cmd, flags=0, cpu_id=0) takes no pointers; an unknown command fails
        // with EINVAL, an unsupported kernel with ENOSYS.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_long,
                0 as libc::c_long,
            )
        }
    }

    fn probe() -> u8 {
        let mode = if call(CMD_REGISTER_PRIVATE_EXPEDITED) == 0 {
            1
        } else if call(CMD_GLOBAL) == 0 {
            2
        } else {
            3
        };
        MODE.store(mode, Ordering::Relaxed);
        mode
    }

    pub(super) fn run() {
        let mode = match MODE.load(Ordering::Relaxed) {
            0 => probe(),
            m => m,
        };
        let ok = match mode {
            1 => call(CMD_PRIVATE_EXPEDITED) == 0,
            2 => call(CMD_GLOBAL) == 0,
            _ => false,
        };
        if !ok {
            flush_by_mprotect();
        }
    }

    /// Without membarrier, changing the protection of a touched private page makes the kernel
    /// shoot down its TLB entry on every CPU running this process, and each such IPI is a full
    /// barrier on that CPU (the technique Windows' FlushProcessWriteBuffers uses).
    fn flush_by_mprotect() {
        // SAFETY: a fresh anonymous page, written once, re-protected, unmapped; no other
        // pointer to it exists.
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

/// A SeqCst fence under loom only. Where hotslab relies on the C++ rule that SeqCst loads see
/// the last SeqCst store before them in the single total order (a store-load handshake between
/// a remote free and a drainer), loom, which models SeqCst exactly only for fences, needs the
/// fence to explore the same guarantee. On real hardware the SeqCst operations suffice.
#[inline(always)]
pub(crate) fn loom_sc_fence() {
    #[cfg(loom)]
    fence(Ordering::SeqCst);
}
