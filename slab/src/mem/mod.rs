//! The low-level memory layer of hotslab: metadata memory, the address → owner page map, per-node slab
//! arenas and the large-object tier, plus the small non-allocating lock and raw OS mapping helpers they share.
//! It knows nothing about caches, slabs or threads, must never allocate through the global allocator, never
//! panic and never block forever (failures are null / `Err`), and stays below the loom models (std atomics).

pub mod arena;
pub mod large;
pub mod meta;
pub mod pagemap;

pub use arena::{ArenaError, NodeArena, CHUNK, CHUNK_UNITS};
pub use large::{LargeDesc, LargeError, LargeTier, TAG_LARGE, TAG_MASK, TAG_SLAB};
pub use meta::{meta_alloc, meta_bytes, meta_free, meta_lock_for_fork, meta_unlock_after_fork};
pub use pagemap::{UNIT, UNIT_SHIFT};

use hotslab_numa::{PageSource, Span};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// The smallest page size this layer assumes when it needs a compile-time bound (alignment of metadata
/// blocks). The real page size is [`page_size`].
pub const MIN_PAGE: usize = 4096;

static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The system page size (cached after the first call; `sysconf` does not allocate).
#[inline]
pub fn page_size() -> usize {
    let p = PAGE_SIZE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions and does not allocate.
    let raw = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let p = if raw > 0 && (raw as usize).is_power_of_two() {
        raw as usize
    } else {
        MIN_PAGE
    };
    PAGE_SIZE.store(p, Ordering::Relaxed);
    p
}

/// Rounds `n` up to a multiple of the power of two `to`; `None` on overflow.
#[inline]
pub(crate) const fn round_up(n: usize, to: usize) -> Option<usize> {
    match n.checked_add(to - 1) {
        Some(v) => Some(v & !(to - 1)),
        None => None,
    }
}

// ---------------------------------------------------------------------------------------------------------
// RawLock
// ---------------------------------------------------------------------------------------------------------

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

/// A small mutual-exclusion lock that never allocates: an atomic word with a short spin phase, then a
/// private futex wait (Linux). Unlike `std::sync::Mutex` it can be released without a guard, which the fork
/// hooks need (take in the prepare handler, release in the parent and in the child).
///
/// The lock is not re-entrant. Critical sections in this layer are short and never call back into user code,
/// so waiting always ends.
pub struct RawLock {
    state: AtomicU32,
}

impl Default for RawLock {
    fn default() -> Self {
        Self::new()
    }
}

impl RawLock {
    /// An unlocked lock.
    pub const fn new() -> Self {
        RawLock {
            state: AtomicU32::new(UNLOCKED),
        }
    }

    /// Acquires the lock, waiting as long as another thread holds it.
    #[inline]
    pub fn lock(&self) {
        // Acquire: everything the previous holder wrote before its Release unlock is visible to us.
        if self
            .state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
    }

    /// Tries to acquire the lock without waiting.
    #[inline]
    pub fn try_lock(&self) -> bool {
        self.state
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[cold]
    fn lock_contended(&self) {
        // Spin briefly: holders in this layer keep the lock for a few hundred instructions at most, except
        // while mapping a new arena chunk.
        for _ in 0..64 {
            if self.state.load(Ordering::Relaxed) == UNLOCKED && self.try_lock() {
                return;
            }
            std::hint::spin_loop();
        }
        // Mark the lock contended so the holder's unlock wakes us, then sleep until it changes.
        while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
            futex_wait(&self.state, CONTENDED);
        }
    }

    /// Releases the lock.
    ///
    /// # Safety
    /// The lock must be held, by the caller (or, after `fork`, by the thread that forked: the child's only
    /// thread may release a lock its parent's prepare handler took).
    #[inline]
    pub unsafe fn unlock(&self) {
        // Release: our writes inside the critical section happen-before the next holder's Acquire.
        if self.state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            futex_wake(&self.state);
        }
    }

    /// Acquires the lock and returns a guard that releases it on drop.
    #[inline]
    pub fn guard(&self) -> RawLockGuard<'_> {
        self.lock();
        RawLockGuard { lock: self }
    }

    /// Whether the lock is currently held by some thread (a racy snapshot, for assertions and tests).
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Relaxed) != UNLOCKED
    }
}

/// Releases its [`RawLock`] when dropped.
pub struct RawLockGuard<'a> {
    lock: &'a RawLock,
}

impl Drop for RawLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: a guard exists only while its lock is held by this thread (created by `guard`).
        unsafe { self.lock.unlock() }
    }
}

/// The purge doorbell: the word the default domain's background purger (background.rs) sleeps
/// on; 1 while it sleeps with nothing pending, else 0. The protocol is `doorbell.rs`'s.
pub(crate) static PURGE_BELL: crate::doorbell::Doorbell<AtomicU32> =
    crate::doorbell::Doorbell::new(AtomicU32::new(0));

/// Something became due for a purge (a part's empties or the large tier's dirty spans): wakes
/// the background purger if it sleeps with nothing pending. One fence and one relaxed load
/// otherwise; any context (a lock may be held); never changes `errno`. Callers ring on a
/// transition (nothing was pending before), not per operation, after their deadline is
/// visible: the fence pairs with the purger's before it re-checks for work (if it missed our
/// work, we see its flag).
#[inline]
pub(crate) fn ring_purge_bell() {
    PURGE_BELL.ring();
}

#[cfg(target_os = "linux")]
fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT only reads the 4-byte word, which is a live AtomicU32 for the whole call; a null
    // timeout waits until woken. EAGAIN (value changed) and EINTR simply return; the caller re-checks.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            ptr::null::<libc::timespec>(),
        );
    }
}

#[cfg(target_os = "linux")]
fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE does not access memory beyond using the word's address as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            1i32,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn futex_wait(word: &AtomicU32, expected: u32) {
    if word.load(Ordering::Relaxed) == expected {
        std::thread::yield_now();
    }
}

#[cfg(not(target_os = "linux"))]
fn futex_wake(_word: &AtomicU32) {}

// ---------------------------------------------------------------------------------------------------------
// Raw OS mappings (metadata and page-map leaves; node-bound memory goes through numa's PageSource)
// ---------------------------------------------------------------------------------------------------------

/// Maps `len` bytes (a multiple of the page size) of zeroed, read-write, private anonymous memory aligned to
/// `align` (a power of two). Returns null on failure. Alignment above the page size is obtained by
/// over-mapping and trimming. Under Miri this is a zeroed `System` allocation with the same size and
/// alignment, released by [`os_unmap`] with the same arguments.
pub(crate) fn os_map(len: usize, align: usize) -> *mut u8 {
    if len == 0 || !align.is_power_of_two() || len > isize::MAX as usize / 2 {
        return ptr::null_mut();
    }
    os_map_impl(len, align)
}

#[cfg(not(miri))]
fn os_map_impl(len: usize, align: usize) -> *mut u8 {
    let page = page_size();
    let align = align.max(page);
    let Some(len) = round_up(len, page) else {
        return ptr::null_mut();
    };
    let extra = align - page;
    let Some(total) = len.checked_add(extra) else {
        return ptr::null_mut();
    };
    // SAFETY: an anonymous private mapping at a kernel-chosen address touches no existing memory.
    let raw = unsafe {
        libc::mmap(
            ptr::null_mut(),
            total,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    let raw = raw.cast::<u8>();
    let addr = raw as usize;
    let start = (addr + align - 1) & !(align - 1);
    let head = start - addr;
    let tail = total - head - len;
    // SAFETY: the head [raw, raw+head) and tail [start+len, raw+total) lie inside the mapping we just made
    // and are not handed out; unmapping them leaves exactly [start, start+len).
    unsafe {
        if head != 0 {
            libc::munmap(raw.cast(), head);
        }
        if tail != 0 {
            libc::munmap(raw.add(head + len).cast(), tail);
        }
        raw.add(head)
    }
}

#[cfg(miri)]
fn os_map_impl(len: usize, align: usize) -> *mut u8 {
    use std::alloc::{GlobalAlloc, Layout, System};
    match Layout::from_size_align(len, align.max(MIN_PAGE)) {
        // SAFETY: the layout has a non-zero size.
        Ok(layout) => unsafe { System.alloc_zeroed(layout) },
        Err(_) => ptr::null_mut(),
    }
}

/// Unmaps memory obtained from [`os_map`].
///
/// # Safety
/// `ptr`, `len` and `align` are exactly those of one earlier successful `os_map` call, and nothing uses the
/// memory any more.
pub(crate) unsafe fn os_unmap(ptr: *mut u8, len: usize, align: usize) {
    #[cfg(not(miri))]
    {
        let _ = align;
        if let Some(len) = round_up(len, page_size()) {
            // SAFETY: per the contract, [ptr, ptr+len) is one of our mappings and unused.
            unsafe {
                libc::munmap(ptr.cast(), len);
            }
        }
    }
    #[cfg(miri)]
    {
        use std::alloc::{GlobalAlloc, Layout, System};
        if let Ok(layout) = Layout::from_size_align(len, align.max(MIN_PAGE)) {
            // SAFETY: per the contract, ptr came from System.alloc_zeroed with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// PageSource glue (one place that knows the exact numa signatures)
// ---------------------------------------------------------------------------------------------------------

/// Returns `[ptr, ptr + len)` to `src` (munmap; `src.mapped_bytes()` drops by `len`).
///
/// # Safety
/// The range was mapped through `src` (it may be a page-aligned sub-range of one `map` result, except under
/// Miri, where it must be the whole span) and nothing uses it any more.
pub(crate) unsafe fn src_unmap(src: &PageSource, ptr: NonNull<u8>, len: usize) {
    // SAFETY: forwarded caller contract.
    unsafe { src.unmap(Span { ptr, len }) }
}

/// Decommits `[ptr, ptr + len)`: the pages go back to the OS (RSS drops) and read as zero when next touched
/// (MADV_DONTNEED on private anonymous memory; under Miri the page source zeroes them). If the kernel
/// refuses the advice the range is zeroed by hand, so "reads as zero afterwards" always holds.
///
/// # Safety
/// The range is page aligned, lies in a live read-write mapping of `src`, and the caller owns its contents
/// exclusively.
pub(crate) unsafe fn src_decommit(src: &PageSource, ptr: NonNull<u8>, len: usize) {
    // SAFETY: forwarded caller contract.
    if !unsafe { src.decommit(ptr, len) } {
        // SAFETY: the range is live, writable and exclusively ours (caller contract).
        unsafe { ptr.as_ptr().write_bytes(0, len) };
    }
}

/// A coarse monotonic clock in milliseconds (the vDSO's `CLOCK_MONOTONIC_COARSE`: no system
/// call), for the purge delays of empty slabs and cached large mappings.
pub(crate) fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Keeps the calling thread's `errno` across a scope that may make system calls (giving memory
/// back from inside `free`): C callers must see `errno` unchanged by a successful call.
pub(crate) struct KeepErrno(libc::c_int);

impl KeepErrno {
    #[inline]
    pub(crate) fn new() -> KeepErrno {
        // SAFETY: __errno_location returns the calling thread's errno slot.
        KeepErrno(unsafe { *libc::__errno_location() })
    }
}

impl Drop for KeepErrno {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: as in new.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn round_up_works_and_detects_overflow() {
        assert_eq!(round_up(0, 4096), Some(0));
        assert_eq!(round_up(1, 4096), Some(4096));
        assert_eq!(round_up(4096, 4096), Some(4096));
        assert_eq!(round_up(usize::MAX - 10, 4096), None);
    }

    #[test]
    fn page_size_is_a_power_of_two_dividing_unit() {
        let p = page_size();
        assert!(p.is_power_of_two());
        assert_eq!(UNIT % p, 0);
    }

    #[test]
    fn raw_lock_excludes() {
        struct Shared {
            lock: RawLock,
            value: std::cell::UnsafeCell<u64>,
        }
        // SAFETY: `value` is only accessed while `lock` is held.
        unsafe impl Sync for Shared {}
        let shared = Arc::new(Shared {
            lock: RawLock::new(),
            value: std::cell::UnsafeCell::new(0),
        });
        let threads = if cfg!(miri) { 3 } else { 4 };
        let iters = if cfg!(miri) { 50 } else { 20_000 };
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let s = Arc::clone(&shared);
                std::thread::spawn(move || {
                    for _ in 0..iters {
                        let _g = s.lock.guard();
                        // SAFETY: we hold the lock.
                        unsafe { *s.value.get() += 1 };
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(!shared.lock.is_locked());
        // SAFETY: all threads joined.
        assert_eq!(unsafe { *shared.value.get() }, threads * iters);
    }

    #[test]
    fn raw_lock_try_and_raw_unlock() {
        let l = RawLock::new();
        assert!(l.try_lock());
        assert!(!l.try_lock());
        assert!(l.is_locked());
        // SAFETY: held by this thread (try_lock succeeded).
        unsafe { l.unlock() };
        assert!(!l.is_locked());
        assert!(l.try_lock());
        // SAFETY: held by this thread.
        unsafe { l.unlock() };
    }

    /// The fork hooks in a real fork: the prepare side takes every lock of the layer (arena and large tier,
    /// then the metadata lock last), the child releases them and must be able to allocate from each
    /// component; the parent releases them too and carries on.
    #[cfg(not(miri))]
    #[test]
    fn fork_hooks_work_in_parent_and_child() {
        use hotslab_numa::{NodeId, PageSource};
        static SRC: PageSource = PageSource::new();
        static ARENA: NodeArena = NodeArena::new(NodeId::new(0), None);
        static LARGE: LargeTier = LargeTier::new();

        fn exercise() -> bool {
            let l = std::alloc::Layout::new::<[u64; 4]>();
            let m = meta_alloc(l);
            let Ok(span) = ARENA.alloc_units(&SRC, 1) else {
                return false;
            };
            let big = LARGE.alloc(&SRC, 300_000, 8, None);
            let ok = !m.is_null() && !big.is_null();
            // SAFETY: each was allocated just above (null is ignored / rejected without effect).
            unsafe {
                meta_free(m, l);
                let _ = ARENA.free_units(&SRC, span, 1);
                let _ = LARGE.free(&SRC, big);
            }
            ok
        }

        assert!(exercise());
        ARENA.lock_for_fork();
        LARGE.lock_for_fork();
        meta_lock_for_fork();
        // SAFETY: the child only runs async-signal-safe work of this layer (atomics, mmap, madvise, munmap,
        // futex) and leaves with _exit, so no state of other threads (stdio, malloc) is used.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: (child) the forking thread took these locks before fork.
            unsafe {
                meta_unlock_after_fork();
                LARGE.unlock_after_fork();
                ARENA.unlock_after_fork();
            }
            let ok = exercise();
            // SAFETY: _exit ends the child without running the parent's atexit handlers or destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        // SAFETY: (parent) this thread took the locks above.
        unsafe {
            meta_unlock_after_fork();
            LARGE.unlock_after_fork();
            ARENA.unlock_after_fork();
        }
        assert!(pid > 0, "fork failed");
        let mut status = 0;
        // SAFETY: waiting for our own child; status is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child failed: {status}"
        );
        assert!(exercise());
        LARGE.trim_cache(&SRC);
        ARENA.release_all(&SRC).unwrap();
    }

    #[test]
    fn os_map_is_zeroed_and_aligned() {
        let align = 1 << 20;
        let p = os_map(3 * MIN_PAGE, align);
        assert!(!p.is_null());
        assert_eq!(p as usize % align, 0);
        // SAFETY: we mapped 3 pages at p.
        unsafe {
            assert!(std::slice::from_raw_parts(p, 3 * MIN_PAGE)
                .iter()
                .all(|&b| b == 0));
            p.write_bytes(0xab, 3 * MIN_PAGE);
            os_unmap(p, 3 * MIN_PAGE, align);
        }
        assert!(os_map(0, 4096).is_null());
        assert!(os_map(usize::MAX, 4096).is_null());
        assert!(os_map(4096, 3).is_null());
    }
}
