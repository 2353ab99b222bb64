//! Metadata allocator: zeroed memory for the allocator's own descriptors (slab descriptors, caches, node
//! parts, thread caches, arena chunk and large-object descriptors), from 1 MiB chunks mapped straight from
//! the OS. It owns those chunks and its free lists; it must never call the global allocator or any other part
//! of hotslab (it sits at the bottom of the lock order: nothing is called while its lock is held).
//!
//! Requests are served by size classes from 16 B to 64 KiB with alignment up to 4 KiB: powers of two, plus
//! three classes of an odd number of cache lines (192, 320 and 448 B, for alignments up to 64) that take the
//! descriptors between 128 and 448 B. Those are the hot ones (slab descriptors, thread caches), allocated
//! back to back: at a power-of-two stride their first lines would share an eighth of the L1 sets (a
//! 512-byte stride), at an odd number of lines they spread over all of them. Each class carves 64 KiB runs
//! taken from the current chunk and keeps an intrusive free list of returned blocks; metadata chunks are
//! never unmapped. Bigger or more strictly aligned requests get their own mapping, returned to the OS on
//! free.

use super::{os_map, os_unmap, page_size, round_up, RawLock, MIN_PAGE};
use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Size of one metadata chunk mapped from the OS.
pub const META_CHUNK: usize = 1 << 20;
/// Smallest block handed out (also its minimum alignment).
pub const META_MIN_BLOCK: usize = 1 << MIN_SHIFT;
/// Largest size class; larger requests are mapped directly.
pub const META_MAX_CLASS: usize = 1 << MAX_SHIFT;
/// Largest alignment a size class can honour (blocks are naturally aligned up to this).
pub const META_MAX_CLASS_ALIGN: usize = MIN_PAGE;

const MIN_SHIFT: u32 = 4;
const MAX_SHIFT: u32 = 16;
/// Power-of-two classes (16 B ..= 64 KiB), then the odd-line classes.
const NPOW2: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;
/// Sizes of the odd-line classes: 3, 5 and 7 cache lines.
const ODD_LINES: [usize; 3] = [192, 320, 448];
/// Largest alignment an odd-line class guarantees (its blocks sit at multiples of 64 B in a run).
const ODD_ALIGN: usize = 64;
const NCLASS: usize = NPOW2 + ODD_LINES.len();
/// Each class takes memory from the chunk in runs of this size (a multiple of every power-of-two class;
/// an odd-line class leaves the run's last partial block unused).
const RUN: usize = 1 << 16;

struct FreeBlock {
    next: *mut FreeBlock,
}

struct State {
    /// Intrusive free list per class.
    free: [*mut FreeBlock; NCLASS],
    /// Bump window of the class's current run: [cur, end).
    run_cur: [*mut u8; NCLASS],
    run_end: [*mut u8; NCLASS],
    /// Unused part of the current chunk: [cur, end).
    chunk_cur: *mut u8,
    chunk_end: *mut u8,
}

struct Meta {
    lock: RawLock,
    state: UnsafeCell<State>,
    /// Bytes mapped for metadata (chunks + direct mappings).
    mapped: AtomicUsize,
    /// Live direct mappings, for tests and statistics.
    direct: AtomicUsize,
}

// SAFETY: `state` is only accessed while `lock` is held (see `with_state`); the raw pointers in it refer to
// process-wide mappings owned by this allocator, not to thread-local data.
unsafe impl Sync for Meta {}

static META: Meta = Meta {
    lock: RawLock::new(),
    state: UnsafeCell::new(State {
        free: [ptr::null_mut(); NCLASS],
        run_cur: [ptr::null_mut(); NCLASS],
        run_end: [ptr::null_mut(); NCLASS],
        chunk_cur: ptr::null_mut(),
        chunk_end: ptr::null_mut(),
    }),
    mapped: AtomicUsize::new(0),
    direct: AtomicUsize::new(0),
};

/// Runs `f` on the metadata state with the lock held.
#[inline]
fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    let _g = META.lock.guard();
    // SAFETY: the lock is held for the lifetime of the reference, so it is the only one.
    f(unsafe { &mut *META.state.get() })
}

/// The class index for `layout`, or `None` if it needs a direct mapping.
#[inline]
fn class_of(layout: Layout) -> Option<usize> {
    if layout.align() > META_MAX_CLASS_ALIGN {
        return None;
    }
    let need = layout.size().max(layout.align()).max(META_MIN_BLOCK);
    if need > META_MAX_CLASS {
        return None;
    }
    if need > 128 && need <= ODD_LINES[ODD_LINES.len() - 1] && layout.align() <= ODD_ALIGN {
        let k = ODD_LINES.iter().position(|&c| need <= c).unwrap_or(0);
        return Some(NPOW2 + k);
    }
    let shift = usize::BITS - (need - 1).leading_zeros();
    Some((shift - MIN_SHIFT) as usize)
}

#[inline]
const fn class_size(idx: usize) -> usize {
    if idx < NPOW2 {
        1 << (idx as u32 + MIN_SHIFT)
    } else {
        ODD_LINES[idx - NPOW2]
    }
}

/// Allocates zeroed memory for `layout` from metadata memory. Returns null if the OS refuses memory. A
/// zero-size layout gets a minimal block (free it with the same layout).
///
/// Never calls the global allocator and never panics.
///
/// ```
/// use std::alloc::Layout;
/// use hotslab::mem::meta::{meta_alloc, meta_free};
/// let layout = Layout::new::<[u64; 8]>();
/// let p = meta_alloc(layout);
/// assert!(!p.is_null());
/// assert!(unsafe { std::slice::from_raw_parts(p, 64) }.iter().all(|&b| b == 0));
/// unsafe { meta_free(p, layout) };
/// ```
pub fn meta_alloc(layout: Layout) -> *mut u8 {
    match class_of(layout) {
        Some(idx) => alloc_small(idx),
        None => alloc_direct(layout),
    }
}

fn alloc_small(idx: usize) -> *mut u8 {
    let size = class_size(idx);
    let (p, reused) = with_state(|st| {
        // Indexing by `idx < NCLASS` (guaranteed by `class_of`); `get_mut` keeps this panic-free anyway.
        let (Some(head), Some(cur), Some(end)) = (
            st.free.get_mut(idx),
            st.run_cur.get(idx).copied(),
            st.run_end.get(idx).copied(),
        ) else {
            return (ptr::null_mut(), false);
        };
        if !head.is_null() {
            let b = *head;
            // SAFETY: blocks on the free list are unused class blocks whose first word holds the link,
            // written by `meta_free` under this lock.
            *head = unsafe { (*b).next };
            return (b.cast::<u8>(), true);
        }
        if !cur.is_null() && (end as usize - cur as usize) >= size {
            // SAFETY: [cur, end) is an unused part of a run inside a live chunk; cur + size <= end.
            st.run_cur[idx] = unsafe { cur.add(size) };
            return (cur, false);
        }
        let run = take_run(st);
        if run.is_null() {
            return (ptr::null_mut(), false);
        }
        // SAFETY: `take_run` returned RUN bytes inside a live chunk and size <= RUN.
        unsafe {
            st.run_cur[idx] = run.add(size);
            st.run_end[idx] = run.add(RUN);
        }
        (run, false)
    });
    if reused {
        // SAFETY: p is a block of `size` bytes that we now own exclusively (popped under the lock).
        unsafe { p.write_bytes(0, size) };
    }
    // Fresh blocks come from never-used chunk memory, which the OS zeroed.
    p
}

/// Takes a RUN from the current chunk, mapping a new chunk if it is exhausted. Null on mapping failure.
fn take_run(st: &mut State) -> *mut u8 {
    if st.chunk_cur.is_null() || (st.chunk_end as usize - st.chunk_cur as usize) < RUN {
        let chunk = os_map(META_CHUNK, MIN_PAGE);
        if chunk.is_null() {
            return ptr::null_mut();
        }
        META.mapped.fetch_add(META_CHUNK, Ordering::Relaxed);
        // Blocks come back through pointers derived from shared references (descriptors are
        // reached as `&Slab`); meta_free re-derives them from this exposed chunk provenance so a
        // reused block is written through the chunk's own permission, not the caller's.
        let _ = chunk.expose_provenance();
        st.chunk_cur = chunk;
        // SAFETY: chunk maps META_CHUNK bytes; the end pointer is one past it.
        st.chunk_end = unsafe { chunk.add(META_CHUNK) };
    }
    let run = st.chunk_cur;
    // SAFETY: at least RUN bytes remain in the chunk (checked or freshly mapped, RUN divides META_CHUNK).
    st.chunk_cur = unsafe { run.add(RUN) };
    run
}

fn direct_len(layout: Layout) -> Option<usize> {
    round_up(layout.size().max(1), page_size())
}

fn alloc_direct(layout: Layout) -> *mut u8 {
    let Some(len) = direct_len(layout) else {
        return ptr::null_mut();
    };
    let p = os_map(len, layout.align());
    if !p.is_null() {
        META.mapped.fetch_add(len, Ordering::Relaxed);
        META.direct.fetch_add(1, Ordering::Relaxed);
    }
    p
}

/// Returns a block to the metadata allocator. Null is ignored.
///
/// # Safety
/// `ptr` was returned by [`meta_alloc`] with the same `layout`, has not been freed since, and is no longer
/// used.
pub unsafe fn meta_free(ptr: *mut u8, layout: Layout) {
    if ptr.is_null() {
        return;
    }
    match class_of(layout) {
        Some(idx) => with_state(|st| {
            if let Some(head) = st.free.get_mut(idx) {
                // Drop the caller's (possibly read-only) provenance: see take_run.
                let b = ptr::with_exposed_provenance_mut::<FreeBlock>(ptr as usize);
                // SAFETY: the block is at least 16 bytes, 16-aligned and unused (caller contract); its first
                // word becomes the free-list link.
                unsafe { b.write(FreeBlock { next: *head }) };
                *head = b;
            }
        }),
        None => {
            if let Some(len) = direct_len(layout) {
                // SAFETY: a direct block is its own mapping of `len` bytes aligned to layout.align() (caller
                // contract: same layout as the allocation).
                unsafe { os_unmap(ptr, len, layout.align()) };
                META.mapped.fetch_sub(len, Ordering::Relaxed);
                META.direct.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Bytes currently mapped from the OS for metadata (chunks, which are kept, plus live direct mappings).
pub fn meta_bytes() -> usize {
    META.mapped.load(Ordering::Relaxed)
}

/// Number of live direct (over-size or over-aligned) metadata mappings.
pub fn meta_direct_mappings() -> usize {
    META.direct.load(Ordering::Relaxed)
}

/// Fork prepare hook: takes the metadata lock so that no other thread is inside the allocator when the
/// process forks. Pair with [`meta_unlock_after_fork`] in both the parent and the child. Must be taken last
/// (the metadata lock is innermost in hotslab's lock order).
pub fn meta_lock_for_fork() {
    META.lock.lock();
}

/// Fork parent/child hook: releases the lock taken by [`meta_lock_for_fork`]. Safe to call in the child
/// after `fork` (the lock is a plain atomic word; nothing refers to the parent's threads).
///
/// # Safety
/// Must follow a [`meta_lock_for_fork`] by this thread (in the child: by the thread that forked) that has
/// not been released yet.
pub unsafe fn meta_unlock_after_fork() {
    // SAFETY: the caller holds the lock (contract above).
    unsafe { META.lock.unlock() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks every byte natively; under Miri (slow) every 61st byte and the last one.
    fn all_zero(p: *const u8, n: usize) -> bool {
        let step = if cfg!(miri) { 61 } else { 1 };
        // SAFETY: the tests only call this on live blocks of at least n bytes.
        let s = unsafe { std::slice::from_raw_parts(p, n) };
        s.iter().step_by(step).all(|&b| b == 0) && s.last().is_none_or(|&b| b == 0)
    }

    #[test]
    fn classes_cover_sizes_and_alignments() {
        let l = |s, a| Layout::from_size_align(s, a).unwrap();
        assert_eq!(class_of(l(0, 1)), Some(0));
        assert_eq!(class_of(l(16, 8)), Some(0));
        assert_eq!(class_of(l(17, 8)), Some(1));
        assert_eq!(class_of(l(8, 64)), Some(2));
        assert_eq!(class_of(l(4096, 4096)), Some(8));
        assert_eq!(class_of(l(65536, 8)), Some(NPOW2 - 1));
        assert_eq!(class_of(l(65537, 8)), None);
        assert_eq!(class_of(l(64, 8192)), None);
        // 129..=448 B up to 64-aligned: the odd-line classes; more strictly aligned: powers of two.
        assert_eq!(class_size(class_of(l(129, 8)).unwrap()), 192);
        assert_eq!(class_size(class_of(l(256, 64)).unwrap()), 320);
        assert_eq!(class_size(class_of(l(384, 64)).unwrap()), 448);
        assert_eq!(class_size(class_of(l(449, 64)).unwrap()), 512);
        assert_eq!(class_size(class_of(l(256, 128)).unwrap()), 256);
        for idx in 0..NCLASS {
            let size = class_size(idx);
            let align = if idx < NPOW2 {
                size.min(4096)
            } else {
                ODD_ALIGN
            };
            assert_eq!(class_of(l(size, align)), Some(idx));
            if idx < NPOW2 {
                assert_eq!(RUN % size, 0);
            } else {
                assert_eq!((size / 64) % 2, 1, "odd number of lines");
            }
        }
    }

    /// Blocks of an odd-line class, allocated back to back, start in every one of the 64 line
    /// slots of a 4 KiB page (the L1 set index of a 48 KiB, 12-way cache), where a 512-byte
    /// class would use 8 of them.
    #[test]
    fn odd_line_blocks_spread_over_every_cache_set() {
        // The 448 B class, which no descriptor uses, so that parallel tests take no block of it.
        let layout = Layout::from_size_align(400, 64).unwrap();
        let n = 2 * 64;
        let mut ptrs = [ptr::null_mut::<u8>(); 128];
        let mut sets = [false; 64];
        for slot in ptrs.iter_mut().take(n) {
            let p = meta_alloc(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % 64, 0);
            sets[(p as usize >> 6) & 63] = true;
            *slot = p;
        }
        assert!(sets.iter().all(|&s| s), "{sets:?}");
        for &p in ptrs.iter().take(n) {
            // SAFETY: allocated above with this layout.
            unsafe { meta_free(p, layout) };
        }
    }

    #[test]
    fn zeroed_aligned_and_reused() {
        // 1500 B lands in the 2 KiB class, which no other test (and no other mem descriptor) uses, so the
        // LIFO reuse below cannot be disturbed by tests running in parallel.
        let layout = Layout::from_size_align(1500, 64).unwrap();
        let a = meta_alloc(layout);
        assert!(!a.is_null());
        assert_eq!(a as usize % 64, 0);
        assert!(all_zero(a, 1500));
        // SAFETY: a is a live 1500-byte block.
        unsafe {
            a.write_bytes(0xee, 1500);
            meta_free(a, layout);
        }
        // LIFO free list: the same class hands the block straight back, zeroed again.
        let b = meta_alloc(layout);
        assert_eq!(a, b);
        assert!(all_zero(b, 1500));
        // SAFETY: b is live with this layout.
        unsafe { meta_free(b, layout) };
    }

    #[test]
    fn distinct_blocks_do_not_overlap() {
        let layout = Layout::from_size_align(48, 16).unwrap();
        let n = if cfg!(miri) { 64 } else { 5000 };
        let mut ptrs = [ptr::null_mut::<u8>(); 5000];
        for (i, slot) in ptrs.iter_mut().take(n).enumerate() {
            let p = meta_alloc(layout);
            assert!(!p.is_null());
            assert!(all_zero(p, 48));
            // SAFETY: p is a live 48-byte block.
            unsafe { p.write_bytes(i as u8, 48) };
            *slot = p;
        }
        for (i, &p) in ptrs.iter().take(n).enumerate() {
            // SAFETY: still live.
            let s = unsafe { std::slice::from_raw_parts(p, 48) };
            assert!(s.iter().all(|&b| b == i as u8), "block {i} was overwritten");
        }
        for &p in ptrs.iter().take(n) {
            // SAFETY: live with this layout, freed once.
            unsafe { meta_free(p, layout) };
        }
    }

    #[test]
    fn big_and_overaligned_blocks_are_direct_mappings() {
        let before = meta_bytes();
        let big = Layout::from_size_align(200_000, 8).unwrap();
        let p = meta_alloc(big);
        assert!(!p.is_null());
        assert!(all_zero(p, 200_000));
        assert!(meta_bytes() >= before + 200_000);
        let aligned = Layout::from_size_align(100, 1 << 16).unwrap();
        let q = meta_alloc(aligned);
        assert!(!q.is_null());
        assert_eq!(q as usize % (1 << 16), 0);
        assert!(all_zero(q, 100));
        // SAFETY: both live with these layouts.
        unsafe {
            p.write_bytes(1, 200_000);
            q.write_bytes(1, 100);
            meta_free(p, big);
            meta_free(q, aligned);
            meta_free(ptr::null_mut(), big);
        }
    }

    #[test]
    fn huge_request_fails_with_null() {
        let l = Layout::from_size_align(isize::MAX as usize - 4095, 4096).unwrap();
        assert!(meta_alloc(l).is_null());
    }

    #[test]
    fn many_threads_allocate_disjoint_blocks() {
        let threads = if cfg!(miri) { 3 } else { 8 };
        let per = if cfg!(miri) { 20 } else { 2000 };
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                std::thread::spawn(move || {
                    let layouts = [
                        Layout::from_size_align(24, 8).unwrap(),
                        Layout::from_size_align(256, 64).unwrap(),
                        Layout::from_size_align(3000, 8).unwrap(),
                    ];
                    let tag = t as u8 + 1;
                    let mut live = Vec::with_capacity(per);
                    for i in 0..per {
                        let l = layouts[i % 3];
                        let p = meta_alloc(l);
                        assert!(!p.is_null());
                        assert!(all_zero(p, l.size()));
                        // SAFETY: p is a live block of l.size() bytes.
                        unsafe { p.write_bytes(tag, l.size()) };
                        live.push((p as usize, l));
                        if i % 3 == 2 {
                            let (q, ql) = live.swap_remove(i % live.len());
                            // SAFETY: q is live with layout ql.
                            let s =
                                unsafe { std::slice::from_raw_parts(q as *const u8, ql.size()) };
                            assert!(s.iter().all(|&b| b == tag));
                            // SAFETY: freed once.
                            unsafe { meta_free(q as *mut u8, ql) };
                        }
                    }
                    for (q, ql) in live {
                        // SAFETY: q is live with layout ql.
                        let s = unsafe { std::slice::from_raw_parts(q as *const u8, ql.size()) };
                        assert!(
                            s.iter().all(|&b| b == tag),
                            "another thread wrote into our block"
                        );
                        // SAFETY: freed once.
                        unsafe { meta_free(q as *mut u8, ql) };
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }

    #[test]
    fn fork_hooks_lock_and_unlock() {
        meta_lock_for_fork();
        assert!(META.lock.is_locked());
        // SAFETY: taken just above by this thread.
        unsafe { meta_unlock_after_fork() };
        let l = Layout::new::<u64>();
        let p = meta_alloc(l);
        assert!(!p.is_null());
        // SAFETY: live with this layout.
        unsafe { meta_free(p, l) };
    }
}
