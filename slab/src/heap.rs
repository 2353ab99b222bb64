//! The per-thread heap: one `Heap` per thread behind one TLS word (`tls.rs`), holding the
//! revocation flags once per thread, the direct table from kmalloc class to the slab to pop
//! from, and the heap's owner id; one `ThreadCache` per (heap, cache) holding the queues of the
//! slabs the heap owns in that cache. This file owns the allocation and free fast paths, the
//! lock-free local refill, the locked refill from node parts (in batches), revocation, thread
//! exit (abandoning every slab in one pass) and the heap registry (heaps are recycled, never
//! freed; ids are unbounded up to [`MAX_HEAPS`]).
//!
//! Ownership: every slab a heap owns is local. A free compares the slab's `owner` word with the
//! caller's heap and, if equal, pushes on the slab's local list with plain stores; otherwise it
//! is one CAS onto the slab's cross-thread list. Refilling swaps lists in O(1).
//!
//! Full slabs stay owned (up to `FULL_KEEP` per thread cache), parked on the full queue with a
//! bit in their cross-thread word (`Slab::park`). The cross-thread free whose CAS clears the bit
//! counts a notice on the owner's thread cache; the owner's next refill walks its full queue for
//! the noticed slabs (taking them back, or giving emptied ones to their part). So the owner's own
//! frees into its full slabs stay local, and memory other threads free into them is found without
//! a scan of every slab.
//!
//! Revocation (an asymmetric Dekker pair, once per heap): the owner's fast path stores
//! `busy = true`, runs [`light_barrier`] (a compiler fence) and reads `revoked`; a revoker
//! (destroy, offline, debug switch) takes `Heap::lock`, stores `revoked = true`, runs
//! [`heavy_barrier`] (membarrier) and waits for `busy == false`; then it takes the thread
//! cache's slabs. Either the owner sees `revoked` and takes the slow path, which blocks on
//! `Heap::lock` until the revoker is done, or the revoker sees `busy` and waits the few
//! instructions the fast path takes. The owner clears `revoked` only under `Heap::lock`.
//! Busy sections never wait for a lock a revoker holds (they may take a part's list lock, whose
//! holders never wait for a heap), so an idle thread never blocks a revoker.
//!
//! Must not take `slab_mutex` or the online-mems lock on any allocation or free path.

use core::cell::Cell;
use core::ptr;

use hotslab_numa::NodeId;

use crate::cache::CacheInner;
use crate::node::NodePart;
use crate::slab::{AfterFree, HeapQueue, ListKind, Slab};
use crate::sync::{
    heavy_barrier, light_barrier, lock, spin_wait, AtomicBool, AtomicPtr, AtomicUsize, Mutex,
    MutexGuard, Ordering,
};

/// Thread-cache table geometry of a cache: `TC_L1` chunks of `TC_CHUNK` entries, one per heap
/// id. Heaps beyond `MAX_HEAPS` concurrent ids use the locked direct path.
#[cfg(not(loom))]
pub(crate) const TC_CHUNK: usize = 1024;
#[cfg(not(loom))]
pub(crate) const TC_L1: usize = 256;
#[cfg(loom)]
pub(crate) const TC_CHUNK: usize = 4;
#[cfg(loom)]
pub(crate) const TC_L1: usize = 2;
/// Concurrent heap ids (262,144 outside loom).
pub(crate) const MAX_HEAPS: usize = TC_CHUNK * TC_L1;

/// Number of direct-table entries (the default domain's kmalloc classes).
pub(crate) const NDIRECT: usize = crate::kmalloc::NCLASSES;
const NO_DIRECT: u8 = u8::MAX;

/// Objects carved from a fresh span at a time, at least (bounds the constructor work on one
/// slow path); small objects carve a page's worth.
const CARVE_BATCH: u32 = 64;
/// Slabs taken from a part in one list-lock section.
const ACQUIRE_BATCH: usize = 4;
/// Full slabs a thread cache keeps owned (their local frees stay local); older ones go back. A
/// bound on metadata walks, not on memory: cross-thread frees into a parked slab notify the owner
/// (`Slab::park`), which takes the slab back or gives it to the part when it emptied.
const FULL_KEEP: usize = 1024;
/// Full slabs inspected for cross-thread frees per local refill without a notice (a backstop for
/// a notice that went to a stale thread cache). None under loom, so that the models see the
/// notices alone.
#[cfg(not(loom))]
const FULL_SCAN: usize = 4;
#[cfg(loom)]
const FULL_SCAN: usize = 0;
/// Full slabs a refill walks at most when notices are pending.
const NOTICE_WALK: usize = 64;
/// Resting full slabs inspected for remote frees per acquire.
const PART_FULL_SCAN: usize = 16;

// ---- heap ------------------------------------------------------------------------------------

/// One thread's heap.
#[repr(C, align(64))]
pub(crate) struct Heap {
    /// Owner is inside a fast-path section (see the module docs).
    pub busy: AtomicBool,
    /// A revoker took (or is taking) slabs of this heap: the owner must take the slow path.
    pub revoked: AtomicBool,
    /// The static stand-in of exited threads: always revoked, never owns a slab.
    exited: bool,
    /// Default-domain kmalloc class → the slab to pop from (`EMPTY` when none). Owner-written;
    /// revokers write it only under `lock` after `busy` was seen false.
    pub direct: [Cell<*mut Slab>; NDIRECT],
    /// The same slabs indexed by a C `malloc` size's word (`kmalloc::c_word`): the C fast path
    /// skips the size-to-class table. Written only together with `direct` (`set_direct`).
    pub cdirect: [Cell<*mut Slab>; crate::kmalloc::C_WORDS],
    /// Default-domain kmalloc class → this heap's thread cache in that class's cache (null until
    /// the class's first slow path), so the kmalloc slow path skips the cache's two-level table
    /// (`CacheInner::tc`: three dependent loads, each a likely cache miss after the program
    /// streamed through its data). Owner-only. Stays valid: a thread cache lives as long as its
    /// cache (kmalloc caches: the whole process) and belongs to the heap's `id`, which a
    /// recycled heap keeps.
    #[cfg_attr(loom, allow(dead_code))]
    ktc: [Cell<*mut ThreadCache>; NDIRECT],
    /// Index into every cache's thread-cache table.
    pub id: usize,
    /// Serialises the owner's slow path against revokers.
    pub lock: Mutex<()>,
    /// Owner-private: depth of the owner's own hold of `lock` (a constructor may allocate).
    depth: Cell<u32>,
    /// Owner is gone (thread exited; the heap waits on the free list).
    #[cfg_attr(loom, allow(dead_code))]
    next_free: Cell<*mut Heap>,
    #[cfg_attr(loom, allow(dead_code))]
    next_all: Cell<*mut Heap>,
}

// SAFETY: the Cell fields are touched by the owner thread, or by a revoker under `lock` after the
// busy handshake, or by the heap registry under its lock (see the field docs).
unsafe impl Send for Heap {}
// SAFETY: as for Send.
unsafe impl Sync for Heap {}

/// The slab of an empty direct entry: nothing to pop, so the fast path falls through.
#[cfg(not(loom))]
static EMPTY_SLAB: Slab = Slab::empty();

#[inline(always)]
fn empty_slab() -> *mut Slab {
    #[cfg(not(loom))]
    {
        &EMPTY_SLAB as *const Slab as *mut Slab
    }
    #[cfg(loom)]
    {
        ptr::null_mut()
    }
}

impl Heap {
    fn new(id: usize, exited: bool) -> Heap {
        Heap {
            busy: AtomicBool::new(false),
            revoked: AtomicBool::new(exited),
            exited,
            direct: core::array::from_fn(|_| Cell::new(empty_slab())),
            cdirect: core::array::from_fn(|_| Cell::new(empty_slab())),
            ktc: core::array::from_fn(|_| Cell::new(ptr::null_mut())),
            id,
            lock: Mutex::new(()),
            depth: Cell::new(0),
            next_free: Cell::new(ptr::null_mut()),
            next_all: Cell::new(ptr::null_mut()),
        }
    }

    /// Sets direct entry `d` (a kmalloc class) and the C table's words of that class.
    #[inline]
    fn set_direct(&self, d: usize, v: *mut Slab) {
        self.direct[d].set(v);
        let (first, n) = crate::kmalloc::C_RANGE[d];
        for e in &self.cdirect[first as usize..first as usize + n as usize] {
            e.set(v);
        }
    }

    /// Takes `lock` as the owner (re-entrant for the owner thread: a constructor run under it
    /// may allocate).
    fn lock_owner(&self) -> OwnerGuard<'_> {
        let d = self.depth.get();
        let guard = if d == 0 { Some(lock(&self.lock)) } else { None };
        self.depth.set(d + 1);
        OwnerGuard { heap: self, guard }
    }
}

struct OwnerGuard<'a> {
    heap: &'a Heap,
    guard: Option<MutexGuard<'a, ()>>,
}

impl Drop for OwnerGuard<'_> {
    fn drop(&mut self) {
        self.heap.depth.set(self.heap.depth.get() - 1);
        drop(self.guard.take());
    }
}

// ---- thread cache ---------------------------------------------------------------------------

/// An owner-private doubly linked queue of slabs (through `Slab::hprev/hnext`).
pub(crate) struct SlabQueue {
    head: Cell<*mut Slab>,
    tail: Cell<*mut Slab>,
    len: Cell<usize>,
}

impl SlabQueue {
    const fn new() -> SlabQueue {
        SlabQueue {
            head: Cell::new(ptr::null_mut()),
            tail: Cell::new(ptr::null_mut()),
            len: Cell::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.len.get()
    }

    /// # Safety
    /// `s` is a valid slab on no queue; the caller owns the queue's thread cache.
    unsafe fn push_back(&self, s: *mut Slab, q: HeapQueue) {
        // SAFETY: caller contract.
        let sr = unsafe { &*s };
        sr.queue.set(q);
        sr.hnext.set(ptr::null_mut());
        sr.hprev.set(self.tail.get());
        let t = self.tail.get();
        if t.is_null() {
            self.head.set(s);
        } else {
            // SAFETY: t is on this queue.
            unsafe { (*t).hnext.set(s) };
        }
        self.tail.set(s);
        self.len.set(self.len.get() + 1);
    }

    /// # Safety
    /// `s` is on this queue; the caller owns the queue's thread cache.
    unsafe fn remove(&self, s: *mut Slab) {
        // SAFETY: caller contract: s and its neighbours are on this queue.
        unsafe {
            let sr = &*s;
            let (p, n) = (sr.hprev.get(), sr.hnext.get());
            if p.is_null() {
                self.head.set(n);
            } else {
                (*p).hnext.set(n);
            }
            if n.is_null() {
                self.tail.set(p);
            } else {
                (*n).hprev.set(p);
            }
            sr.hprev.set(ptr::null_mut());
            sr.hnext.set(ptr::null_mut());
            sr.queue.set(HeapQueue::None);
        }
        self.len.set(self.len.get() - 1);
    }

    /// # Safety
    /// The caller owns the queue's thread cache.
    unsafe fn pop_front(&self) -> *mut Slab {
        let s = self.head.get();
        if !s.is_null() {
            // SAFETY: s heads this queue.
            unsafe { self.remove(s) };
        }
        s
    }

    fn head(&self) -> *mut Slab {
        self.head.get()
    }
}

/// One heap's share of one cache: the slab it pops from and the other slabs it owns.
#[repr(C, align(64))]
pub(crate) struct ThreadCache {
    pub heap: *const Heap,
    /// The slab to pop from, for caches without a direct entry (owner; revoker under the heap's
    /// lock). Caches with one keep it in `heap.direct[direct]`.
    cur: Cell<*mut Slab>,
    direct: u8,
    /// Owned slabs that may have free objects.
    pub avail: SlabQueue,
    /// Owned slabs found without a free object (parked: see `Slab::park`).
    pub full: SlabQueue,
    /// Cross-thread frees that found a parked slab of this thread cache (other threads add, the
    /// owner takes). A hint: the owner walks its full queue when it is not zero.
    notices: crate::sync::LinePadded<AtomicUsize>,
}

// SAFETY: the Cells are owner-private or touched by a revoker under the heap's lock (module docs).
unsafe impl Send for ThreadCache {}
// SAFETY: as for Send.
unsafe impl Sync for ThreadCache {}

impl ThreadCache {
    fn new(heap: *const Heap, direct: Option<usize>) -> ThreadCache {
        ThreadCache {
            heap,
            cur: Cell::new(ptr::null_mut()),
            direct: direct.map_or(NO_DIRECT, |d| d as u8),
            avail: SlabQueue::new(),
            full: SlabQueue::new(),
            notices: crate::sync::LinePadded::new(AtomicUsize::new(0)),
        }
    }

    #[inline(always)]
    fn heap(&self) -> &Heap {
        // SAFETY: heaps are never freed.
        unsafe { &*self.heap }
    }

    /// The slab to pop from (null when none).
    #[inline(always)]
    pub fn cur(&self) -> *mut Slab {
        if self.direct == NO_DIRECT {
            self.cur.get()
        } else {
            let s = self.heap().direct[self.direct as usize].get();
            if s == empty_slab() {
                ptr::null_mut()
            } else {
                s
            }
        }
    }

    #[inline]
    fn set_cur(&self, s: *mut Slab) {
        if self.direct == NO_DIRECT {
            self.cur.set(s);
        } else {
            let v = if s.is_null() { empty_slab() } else { s };
            self.heap().set_direct(self.direct as usize, v);
        }
    }

    /// Slabs this thread cache owns (racy outside the owner; statistics and tests).
    pub fn owned(&self) -> usize {
        self.avail.len() + self.full.len() + usize::from(!self.cur().is_null())
    }

    /// Owner (busy section or heap lock): refills `cur` without touching any lock (but the part
    /// lock of an emptied slab it gives back): the current slab's local and remote lists or fresh
    /// objects, then the noticed full slabs, then the next available slab, then a few full ones
    /// that received cross-thread frees. Pops one object, or null.
    ///
    /// # Safety
    /// The caller owns the thread cache (its heap's owner in a busy section, or under its lock).
    unsafe fn refill_local(&self, cache: &CacheInner) -> *mut u8 {
        // SAFETY: every slab on our queues and `cur` is owned by us.
        unsafe {
            let s = self.cur();
            if !s.is_null() {
                let obj = self.refill_or_park(cache, s);
                if !obj.is_null() {
                    return obj;
                }
                self.set_cur(ptr::null_mut());
            }
            if self.notices.load(Ordering::Relaxed) != 0 {
                self.take_noticed(cache);
            }
            loop {
                let s = self.avail.pop_front();
                if s.is_null() {
                    break;
                }
                let obj = self.refill_or_park(cache, s);
                if !obj.is_null() {
                    self.set_cur(s);
                    return obj;
                }
            }
            for _ in 0..FULL_SCAN.min(self.full.len()) {
                let s = self.full.head();
                self.full.remove(s);
                if (*s).has_remote() {
                    let obj = self.refill_or_park(cache, s);
                    if !obj.is_null() {
                        self.set_cur(s);
                        return obj;
                    }
                } else {
                    self.full.push_back(s, HeapQueue::Full);
                }
            }
        }
        ptr::null_mut()
    }

    /// Parked slabs with cross-thread frees pending beyond this thread cache's notices (racy
    /// outside the owner: call it at a quiescent point).
    pub fn unnoticed_parked(&self) -> usize {
        let mut pending = 0;
        let mut s = self.full.head();
        while !s.is_null() {
            // SAFETY: slabs on a queue are valid; the caller makes the walk quiescent.
            unsafe {
                pending += usize::from((*s).has_remote());
                s = (*s).hnext.get();
            }
        }
        pending.saturating_sub(self.notices.load(Ordering::Acquire))
    }

    /// Owner: pops one object of `s` (on no queue), or parks `s` on the full queue and returns
    /// null. A cross-thread free that lands between the refill's look and the park is taken at
    /// once (`park` says so), so a parked slab never holds frees its owner was not told about.
    ///
    /// # Safety
    /// The caller owns the thread cache and `s`, which is on none of its queues.
    unsafe fn refill_or_park(&self, cache: &CacheInner, s: *mut Slab) -> *mut u8 {
        // SAFETY: caller contract.
        unsafe {
            loop {
                let obj = refill_from(cache, &*s);
                if !obj.is_null() {
                    return obj;
                }
                if (*s).park() {
                    self.full.push_back(s, HeapQueue::Full);
                    return ptr::null_mut();
                }
            }
        }
    }

    /// Owner, when notices are pending: walks up to [`NOTICE_WALK`] full slabs from the head,
    /// moving those with cross-thread frees to `avail` — or, when they are empty and `avail`
    /// already has a slab, back to their part (which keeps or purges them) — and rotating the
    /// others to the back. Notices not matched by this walk stay for the next one.
    ///
    /// # Safety
    /// The caller owns the thread cache.
    unsafe fn take_noticed(&self, cache: &CacheInner) {
        let mut n = self.notices.swap(0, Ordering::Acquire);
        let mut walk = NOTICE_WALK.min(self.full.len());
        // SAFETY: every slab on our queues is ours.
        unsafe {
            while n > 0 && walk > 0 {
                walk -= 1;
                let s = self.full.pop_front();
                if !(*s).has_remote() {
                    // Parked and untouched (or its notice was matched already): rotate.
                    self.full.push_back(s, HeapQueue::Full);
                    continue;
                }
                n -= 1;
                if (*s).in_use() == 0 && !self.avail.head().is_null() {
                    // Giving memory back may make a system call: errno stays as it was.
                    let _e = crate::mem::KeepErrno::new();
                    release_owned(cache, &*s);
                } else {
                    self.avail.push_back(s, HeapQueue::Avail);
                }
            }
        }
        if n > 0 {
            self.notices.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Owner or revoker (heap lock, busy seen false): gives every owned slab back to its part.
    ///
    /// # Safety
    /// As described; no other thread touches this thread cache meanwhile.
    unsafe fn release_all(&self, cache: &CacheInner) {
        let cur = self.cur();
        self.set_cur(ptr::null_mut());
        // SAFETY: we act as the owner of every slab we release.
        unsafe {
            if !cur.is_null() {
                release_owned(cache, &*cur);
            }
            loop {
                let s = self.avail.pop_front();
                if s.is_null() {
                    break;
                }
                release_owned(cache, &*s);
            }
            loop {
                let s = self.full.pop_front();
                if s.is_null() {
                    break;
                }
                release_owned(cache, &*s);
            }
        }
    }
}

/// The direct-table index of `cache` if it is one of the default domain's kmalloc caches.
fn direct_index(cache: &CacheInner) -> Option<usize> {
    #[cfg(not(loom))]
    {
        // Only caches whose free pointer is the first word: the fast paths pop direct entries
        // with `pop_first_word` (every kmalloc cache qualifies: none has a constructor).
        if cache.freeptr_off != 0 {
            return None;
        }
        crate::global::KMALLOC
            .iter()
            .position(|c| ptr::eq(c.load(std::sync::atomic::Ordering::Acquire), cache))
    }
    #[cfg(loom)]
    {
        let _ = cache;
        None
    }
}

// ---- a cache's thread-cache table -----------------------------------------------------------

/// One chunk of a cache's thread-cache table.
pub(crate) struct TcChunk {
    pub slots: [AtomicPtr<ThreadCache>; TC_CHUNK],
}

/// The two-level table from heap id to thread cache (first level in metadata, chunks made on
/// demand by the first heap of their range).
pub(crate) struct TcTable {
    l1: [AtomicPtr<TcChunk>; TC_L1],
}

impl TcTable {
    /// Makes an empty table in metadata memory (null if out of memory).
    pub fn make() -> *mut TcTable {
        let p = crate::mem::meta_alloc(core::alloc::Layout::new::<TcTable>()).cast::<TcTable>();
        if !p.is_null() {
            // SAFETY: fresh metadata for one TcTable.
            unsafe {
                p.write(TcTable {
                    l1: core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
                })
            };
        }
        p
    }

    #[inline(always)]
    pub fn get(&self, id: usize) -> *mut ThreadCache {
        let Some(l1) = self.l1.get(id / TC_CHUNK) else {
            return ptr::null_mut();
        };
        let chunk = l1.load(Ordering::Acquire);
        if chunk.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: chunks are never freed while the cache metadata lives; index < TC_CHUNK.
        unsafe { (*chunk).slots[id % TC_CHUNK].load(Ordering::Acquire) }
    }

    /// Installs `tc` for heap `id` (only that heap's owner does this). False if out of memory.
    fn install(&self, id: usize, tc: *mut ThreadCache) -> bool {
        let Some(l1) = self.l1.get(id / TC_CHUNK) else {
            return false;
        };
        let mut chunk = l1.load(Ordering::Acquire);
        if chunk.is_null() {
            let fresh =
                crate::mem::meta_alloc(core::alloc::Layout::new::<TcChunk>()).cast::<TcChunk>();
            if fresh.is_null() {
                return false;
            }
            // SAFETY: fresh metadata for one TcChunk.
            unsafe {
                fresh.write(TcChunk {
                    slots: core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
                })
            };
            match l1.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => chunk = fresh,
                Err(winner) => {
                    // SAFETY: ours, never published.
                    unsafe {
                        crate::mem::meta_free(fresh.cast(), core::alloc::Layout::new::<TcChunk>())
                    };
                    chunk = winner;
                }
            }
        }
        // SAFETY: as in get.
        unsafe { (*chunk).slots[id % TC_CHUNK].store(tc, Ordering::Release) };
        true
    }

    /// Every thread cache in the table.
    pub fn iter(&self) -> impl Iterator<Item = *mut ThreadCache> + '_ {
        self.l1.iter().flat_map(|l1| {
            let chunk = l1.load(Ordering::Acquire);
            let slots: &[AtomicPtr<ThreadCache>] = if chunk.is_null() {
                &[]
            } else {
                // SAFETY: as in get.
                unsafe { &(*chunk).slots }
            };
            slots
                .iter()
                .map(|p| p.load(Ordering::Acquire))
                .filter(|p| !p.is_null())
        })
    }
}

impl CacheInner {
    /// The thread cache of heap `id` (null if it has none yet).
    #[inline(always)]
    pub fn tc(&self, id: usize) -> *mut ThreadCache {
        // SAFETY: the table lives as long as the cache metadata.
        unsafe { (*self.tcs).get(id) }
    }

    /// The thread cache of `heap`, made on first use (null when out of memory).
    pub(crate) fn tc_or_create(&self, heap: &Heap) -> *mut ThreadCache {
        let tc = self.tc(heap.id);
        if !tc.is_null() {
            return tc;
        }
        let p =
            crate::mem::meta_alloc(core::alloc::Layout::new::<ThreadCache>()).cast::<ThreadCache>();
        if p.is_null() {
            return p;
        }
        // SAFETY: fresh metadata for one ThreadCache; the table publishes it with Release.
        unsafe {
            p.write(ThreadCache::new(heap, direct_index(self)));
            if !(*self.tcs).install(heap.id, p) {
                crate::mem::meta_free(p.cast(), core::alloc::Layout::new::<ThreadCache>());
                return ptr::null_mut();
            }
        }
        p
    }

    /// Every thread cache of this cache (for revocation and statistics).
    pub fn thread_caches(&self) -> impl Iterator<Item = &ThreadCache> + '_ {
        // SAFETY: thread caches live as long as the cache metadata.
        unsafe { (*self.tcs).iter().map(|p| &*p) }
    }
}

// ---- the heap registry ----------------------------------------------------------------------

#[cfg(not(loom))]
mod registry {
    use super::{Heap, MAX_HEAPS};
    use crate::mem::RawLock;
    use core::cell::UnsafeCell;
    use core::ptr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct State {
        all: *mut Heap,
        free: *mut Heap,
        next_id: usize,
    }

    struct Reg {
        lock: RawLock,
        st: UnsafeCell<State>,
    }
    // SAFETY: `st` is only touched under `lock`.
    unsafe impl Sync for Reg {}

    static REG: Reg = Reg {
        lock: RawLock::new(),
        st: UnsafeCell::new(State {
            all: ptr::null_mut(),
            free: ptr::null_mut(),
            next_id: 0,
        }),
    };
    /// Heaps in use by live threads.
    pub static LIVE: AtomicUsize = AtomicUsize::new(0);
    static KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

    /// A heap for the calling thread: a recycled one, or a new one from metadata memory.
    pub fn take() -> *mut Heap {
        let Some(key) = exit_key() else {
            return ptr::null_mut();
        };
        let g = REG.lock.guard();
        // SAFETY: under the registry lock.
        let st = unsafe { &mut *REG.st.get() };
        let mut h = st.free;
        if !h.is_null() {
            // SAFETY: free-list members are valid heaps.
            st.free = unsafe { (*h).next_free.get() };
        } else if st.next_id < MAX_HEAPS {
            let id = st.next_id;
            let p = crate::mem::meta_alloc(core::alloc::Layout::new::<Heap>()).cast::<Heap>();
            if !p.is_null() {
                // SAFETY: fresh metadata for one heap.
                unsafe {
                    p.write(Heap::new(id, false));
                    (*p).next_all.set(st.all);
                }
                st.all = p;
                st.next_id += 1;
                h = p;
            }
        }
        drop(g);
        if !h.is_null() {
            LIVE.fetch_add(1, Ordering::Relaxed);
            // SAFETY: valid key; a non-null value makes the destructor run at thread exit.
            unsafe { libc::pthread_setspecific(key, h as *const libc::c_void) };
        }
        h
    }

    /// Puts an abandoned heap on the free list.
    pub fn give_back(h: *mut Heap) {
        let g = REG.lock.guard();
        // SAFETY: under the registry lock; h is a valid heap no thread uses.
        unsafe {
            let st = &mut *REG.st.get();
            (*h).next_free.set(st.free);
            st.free = h;
        }
        drop(g);
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }

    /// Every heap ever made (heaps are never freed).
    pub fn for_each(mut f: impl FnMut(&Heap)) {
        // The list only grows at its head, and members are never freed: walking from a snapshot
        // of the head without the lock is safe (the fork child walks it with the lock reset).
        let g = REG.lock.guard();
        // SAFETY: under the registry lock.
        let mut h = unsafe { (*REG.st.get()).all };
        drop(g);
        while !h.is_null() {
            // SAFETY: list members are valid heaps, never freed.
            let r = unsafe { &*h };
            f(r);
            h = r.next_all.get();
        }
    }

    pub fn lock_for_fork() {
        REG.lock.lock();
    }

    /// # Safety
    /// The calling thread took the lock with `lock_for_fork`.
    pub unsafe fn unlock_after_fork() {
        // SAFETY: caller contract.
        unsafe { REG.lock.unlock() };
    }

    /// Fork child (single thread, registry locked by prepare): every heap but `keep` is free.
    ///
    /// # Safety
    /// Single-threaded child; the registry lock is held by this thread.
    pub unsafe fn keep_only_after_fork(keep: *mut Heap) {
        // SAFETY: caller contract.
        let st = unsafe { &mut *REG.st.get() };
        st.free = ptr::null_mut();
        let mut n = 0;
        let mut h = st.all;
        while !h.is_null() {
            // SAFETY: valid heaps.
            let r = unsafe { &*h };
            if h != keep {
                r.next_free.set(st.free);
                st.free = h;
            } else {
                n += 1;
            }
            h = r.next_all.get();
        }
        LIVE.store(n, Ordering::Relaxed);
    }

    fn exit_key() -> Option<libc::pthread_key_t> {
        let k = KEY.load(Ordering::Acquire);
        if k != usize::MAX {
            return Some(k as libc::pthread_key_t);
        }
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: key is a valid out-pointer; the destructor never unwinds.
        if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } != 0 {
            return None;
        }
        match KEY.compare_exchange(
            usize::MAX,
            key as usize,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Some(key),
            Err(winner) => {
                // SAFETY: our key was never handed out.
                unsafe { libc::pthread_key_delete(key) };
                Some(winner as libc::pthread_key_t)
            }
        }
    }

    pub fn clear_key() {
        if let Some(key) = exit_key() {
            // SAFETY: valid key; clearing the value cancels the exit destructor.
            unsafe { libc::pthread_setspecific(key, ptr::null()) };
        }
    }

    extern "C" fn on_thread_exit(value: *mut libc::c_void) {
        let h = value.cast::<Heap>();
        if h.is_null() {
            return;
        }
        // Later TLS destructors may still allocate: they go through the exited stand-in (the
        // locked direct path) from now on.
        super::abandon(h);
    }
}

/// The stand-in heap of exited threads (always revoked: every call takes the slow path, which
/// serves it from the part lists directly).
#[cfg(not(loom))]
static EXITED: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

#[cfg(not(loom))]
fn exited_heap() -> *mut Heap {
    *EXITED.get_or_init(|| {
        let p = crate::mem::meta_alloc(core::alloc::Layout::new::<Heap>()).cast::<Heap>();
        if !p.is_null() {
            // SAFETY: fresh metadata for one heap, never freed.
            unsafe { p.write(Heap::new(usize::MAX, true)) };
        }
        p as usize
    }) as *mut Heap
}

/// Thread exit (or the test hook): gives back every slab the heap owns, in every domain, in one
/// pass, and recycles the heap.
#[cfg(not(loom))]
fn abandon(h: *mut Heap) {
    crate::tls::set(exited_heap());
    // SAFETY: heaps are never freed; the exiting thread owned it.
    let heap = unsafe { &*h };
    crate::domain::flush_heap_everywhere(heap);
    registry::give_back(h);
}

#[cfg(loom)]
mod registry {
    use super::Heap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    loom::lazy_static! {
        static ref NEXT: AtomicUsize = AtomicUsize::new(0);
    }

    /// Under loom every model thread gets a fresh heap per execution (no exit handling).
    pub fn take() -> *mut Heap {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        if id >= super::MAX_HEAPS {
            return core::ptr::null_mut();
        }
        let p = crate::mem::meta_alloc(core::alloc::Layout::new::<Heap>()).cast::<Heap>();
        if !p.is_null() {
            // SAFETY: fresh metadata for one heap.
            unsafe { p.write(Heap::new(id, false)) };
        }
        p
    }

    pub fn live() -> usize {
        NEXT.load(Ordering::Relaxed)
    }
}

/// The calling thread's heap, made on first use. `None` when there is none (out of heap ids or
/// memory, or the thread is exiting).
#[inline]
fn heap_or_create() -> Option<&'static Heap> {
    let mut h = crate::tls::get();
    if h.is_null() {
        h = registry::take();
        if h.is_null() {
            return None;
        }
        crate::tls::set(h);
    }
    // SAFETY: heaps are never freed.
    let heap = unsafe { &*h };
    (!heap.exited).then_some(heap)
}

/// Simulates the calling thread's exit (tests): its slabs go back and its heap is recycled; the
/// thread gets a new heap on its next allocation.
pub fn exit_thread_now() {
    #[cfg(not(loom))]
    {
        let h = crate::tls::get();
        if !h.is_null() && h != exited_heap() {
            abandon(h);
            registry::clear_key();
        }
        crate::tls::set(ptr::null_mut());
    }
}

/// Loom models only (`SlabDomain::abandon_current_heap`): the calling thread drops its heap
/// (null if it had none) and gets a fresh one on its next slow path. The caller flushes it.
#[cfg(loom)]
pub(crate) fn forget_current_heap() -> *mut Heap {
    let h = crate::tls::get();
    crate::tls::set(ptr::null_mut());
    h
}

/// Heaps in use by live threads.
pub fn heaps_in_use() -> usize {
    #[cfg(not(loom))]
    {
        registry::LIVE.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(loom)]
    {
        registry::live()
    }
}

#[cfg(not(loom))]
pub(crate) use registry::{
    for_each as for_each_heap, keep_only_after_fork as keep_heap_after_fork,
    lock_for_fork as lock_heaps_for_fork, unlock_after_fork as unlock_heaps_after_fork,
};

/// Fork child: a vanished thread's heap becomes a fresh one for the next thread that takes it.
///
/// # Safety
/// Single-threaded child; `h` is not the forking thread's heap; no reference to its lock is live.
#[cfg(not(loom))]
pub(crate) unsafe fn reset_after_fork(h: &Heap) {
    if hotslab_hotplug::sync::try_lock(&h.lock).is_none() {
        // Held by a thread that is gone: nobody can unlock it; make a new one in place.
        // SAFETY: h is in metadata memory we may write; no guard of the old lock exists in this
        // process, no other thread runs.
        unsafe { ptr::addr_of!(h.lock).cast_mut().write(Mutex::new(())) };
    }
    h.busy.store(false, Ordering::Relaxed);
    h.revoked.store(false, Ordering::Relaxed);
    h.depth.set(0);
    for d in 0..NDIRECT {
        h.set_direct(d, empty_slab());
    }
}

/// Fork child: forgets a vanished heap's slabs in `tc` (the part lists were fixed already).
///
/// # Safety
/// Single-threaded child; `tc`'s heap is gone.
#[cfg(not(loom))]
pub(crate) unsafe fn forget_after_fork(tc: &ThreadCache) {
    tc.cur.set(ptr::null_mut());
    for q in [&tc.avail, &tc.full] {
        q.head.set(ptr::null_mut());
        q.tail.set(ptr::null_mut());
        q.len.set(0);
    }
}

/// Whether the (vanished) heap `h` was idle at a fork: outside its fast path and its slow path.
#[cfg(not(loom))]
pub(crate) fn idle_at_fork(h: &Heap) -> bool {
    !h.busy.load(Ordering::Acquire) && hotslab_hotplug::sync::try_lock(&h.lock).is_some()
}

/// The calling thread's heap pointer (the fork child keeps it).
#[cfg(not(loom))]
pub(crate) fn caller_heap() -> *mut Heap {
    crate::tls::get()
}

// ---- fast paths -----------------------------------------------------------------------------

/// Allocates one object of a default-domain kmalloc class: the `SlabAlloc` and C ABI fast path
/// (one TLS load, the direct table, the slab's pop list). Null means: take [`kmalloc_slow`].
#[inline(always)]
pub(crate) fn kmalloc_fast(cls: usize) -> *mut u8 {
    debug_assert!(cls < NDIRECT);
    // SAFETY: cls < NDIRECT (the caller's class).
    pop_direct(cls >= crate::kmalloc::PREFETCH_FIRST_CLASS, |heap| {
        unsafe { heap.direct.get_unchecked(cls) }.get()
    })
}

/// The C `malloc` fast path: as [`kmalloc_fast`], by the size's word (`kmalloc::c_word`, which
/// must be below `kmalloc::C_WORDS`) instead of its class.
#[inline(always)]
pub(crate) fn kmalloc_fast_word(word: usize) -> *mut u8 {
    debug_assert!(word < crate::kmalloc::C_WORDS);
    // SAFETY: word < C_WORDS (the caller's contract).
    pop_direct(word >= crate::kmalloc::PREFETCH_FIRST_WORD, |heap| {
        unsafe { heap.cdirect.get_unchecked(word) }.get()
    })
}

/// The body of both direct-table fast paths: inside a busy section of the calling thread's heap,
/// pops from the slab `entry` picks from it (prefetching the next object if `prefetch_next`).
/// Null if the thread has no heap, was revoked, or the slab has nothing to pop.
#[inline(always)]
fn pop_direct(prefetch_next: bool, entry: impl FnOnce(&Heap) -> *mut Slab) -> *mut u8 {
    let h = crate::tls::get();
    if !h.is_null() {
        // SAFETY: heaps are never freed.
        let heap = unsafe { &*h };
        heap.busy.store(true, Ordering::Relaxed);
        light_barrier();
        if !heap.revoked.load(Ordering::Relaxed) {
            // SAFETY: the entry is our slab or EMPTY_SLAB, and we are not revoked: we own it
            // (module docs). Direct entries are kmalloc slabs (no constructor: the free
            // pointer is the first word, see `direct_index`) or EMPTY_SLAB.
            let s = entry(heap);
            let mut obj = unsafe { (*s).pop_first_word(prefetch_next) };
            if obj.is_null() {
                // SAFETY: as above; the pop list is empty.
                obj = unsafe { (*s).pop_local_first_word(prefetch_next) };
            }
            heap.busy.store(false, Ordering::Release);
            return obj;
        }
        heap.busy.store(false, Ordering::Release);
    }
    ptr::null_mut()
}

/// Allocates one object of `cache` (no node preference). Null when out of memory or the cache is
/// dead.
#[inline(always)]
pub(crate) fn alloc(cache: &CacheInner) -> *mut u8 {
    let h = crate::tls::get();
    if !h.is_null() {
        // SAFETY: heaps are never freed.
        let heap = unsafe { &*h };
        let tc = cache.tc(heap.id);
        if !tc.is_null() {
            // SAFETY: thread caches live as long as their cache metadata.
            let tc = unsafe { &*tc };
            heap.busy.store(true, Ordering::Relaxed);
            light_barrier();
            if !heap.revoked.load(Ordering::Relaxed) {
                let s = tc.cur();
                if !s.is_null() {
                    // SAFETY: `s` is our current slab and we are not revoked: we own it.
                    let obj = unsafe { (*s).pop() };
                    if !obj.is_null() {
                        heap.busy.store(false, Ordering::Release);
                        return obj;
                    }
                }
            }
            heap.busy.store(false, Ordering::Release);
        }
    }
    alloc_slow(cache, None)
}

/// Allocates one object on node `nid` (falling back by distance when the node cannot serve).
pub(crate) fn alloc_node(cache: &CacheInner, nid: NodeId) -> *mut u8 {
    alloc_slow(cache, Some(nid))
}

/// Frees `obj`, an allocated object of slab `s`.
///
/// # Safety
/// `obj` was returned by an alloc of `s`'s cache, is an object start of `s`, and is not freed
/// yet.
#[inline(always)]
pub(crate) unsafe fn free(s: &Slab, obj: *mut u8) {
    // SAFETY: forwarded from the caller.
    if !unsafe { free_local(s, obj) } {
        // SAFETY: forwarded from the caller.
        unsafe { free_remote(s, obj) }
    }
}

/// The local half of [`free`]: true if `obj` went onto the slab's local list (the caller's heap
/// owns the slab), false if nothing was done.
///
/// # Safety
/// As for [`free`].
#[inline(always)]
pub(crate) unsafe fn free_local(s: &Slab, obj: *mut u8) -> bool {
    let h = crate::tls::get();
    // The owner word may be read before the busy section: a revoker that takes the slab after
    // this load sets `revoked` first, which the check below sees (module docs).
    if s.owner.load(Ordering::Relaxed) != h as usize {
        return false;
    }
    // SAFETY: heaps are never freed.
    let heap = unsafe { &*h };
    heap.busy.store(true, Ordering::Relaxed);
    light_barrier();
    if heap.revoked.load(Ordering::Relaxed) {
        heap.busy.store(false, Ordering::Release);
        return false;
    }
    // SAFETY: s is owned by our heap and we are not revoked: its private lists are ours.
    let r = unsafe { s.push_local(obj) };
    if r != AfterFree::Done {
        // SAFETY: still inside the busy section, as the owner; it ends the section.
        unsafe { after_local_free(s, r, heap, obj) };
        return true;
    }
    heap.busy.store(false, Ordering::Release);
    true
}

/// A free into a slab the caller's heap does not own.
///
/// # Safety
/// As for [`free`].
#[inline]
unsafe fn free_remote(s: &Slab, obj: *mut u8) {
    // A debug slab is never owned by a heap, so a slab some heap owns (now or a moment ago: a
    // revoker never makes a debug slab owned) needs no look at `dbg`, the descriptor's third
    // cache line; the owner word is on the first, which the caller's ownership test read. The
    // models skip that pre-test: it only saves a cache line, and as one more atomic step of
    // every remote free it multiplies their interleavings for nothing.
    #[cfg(not(loom))]
    let debug = s.owner.load(Ordering::Relaxed) == crate::slab::NO_OWNER && s.dbg.flags != 0;
    #[cfg(loom)]
    let debug = s.dbg.flags != 0;
    if debug {
        // A debug slab is never owned by a heap, so its frees all arrive here.
        // SAFETY: forwarded from the caller.
        return unsafe { crate::debug::free_checked(s, obj) };
    }
    // SAFETY: forwarded from the caller.
    unsafe { s.push_remote(obj) }
}

/// A local free made a full slab usable again, or emptied a slab that is not the current one.
///
/// # Safety
/// The caller is the owner, inside a busy section of `heap` (so no revoker touches the thread
/// cache), which this function ends. `extern "C"` (it cannot unwind) and ending the section
/// itself let the free fast path reach it by a tail jump, keeping no register across it.
#[cold]
#[inline(never)]
unsafe extern "C" fn after_local_free(s: &Slab, r: AfterFree, heap: &Heap, obj: *mut u8) {
    if r == AfterFree::DoubleFree {
        crate::debug::double_free(s, obj);
    }
    // SAFETY: forwarded from the caller.
    unsafe { after_local_free_inner(s, r) };
    heap.busy.store(false, Ordering::Release);
}

/// The body of [`after_local_free`].
///
/// # Safety
/// As for [`after_local_free`].
#[inline(always)]
unsafe fn after_local_free_inner(s: &Slab, r: AfterFree) {
    // SAFETY: owned slabs name their (live) thread cache.
    let tc = unsafe { &*(s.tc.load(Ordering::Relaxed) as *const ThreadCache) };
    let sp = s as *const Slab as *mut Slab;
    match r {
        AfterFree::Unfull => {
            // SAFETY: s is on our full queue.
            unsafe {
                s.unpark();
                tc.full.remove(sp);
                tc.avail.push_back(sp, HeapQueue::Avail);
            }
        }
        AfterFree::Empty
            if s.queue.get() == HeapQueue::Avail && (tc.avail.len() > 1 || s.units > 1) =>
        {
            // An empty slab beyond the current one and one spare (no spare for multi-unit
            // slabs, whose idle span would pin up to 1 MiB per class and thread, where the
            // part's empty list shares it with every thread): back to the part (taking its
            // list lock inside the busy section is safe: its holders never wait for a heap).
            // Giving memory back may make a system call: errno stays as the caller left it.
            let _e = crate::mem::KeepErrno::new();
            // SAFETY: s is on our avail queue, owned by us.
            unsafe {
                tc.avail.remove(sp);
                release_owned(&*s.cache, s);
            }
        }
        _ => {}
    }
}

// ---- slow paths ------------------------------------------------------------------------------

/// The default-domain kmalloc slow path for class `cls` (null if the domain is not built).
#[cold]
pub(crate) fn kmalloc_slow(cls: usize) -> *mut u8 {
    #[cfg(not(loom))]
    {
        let c = crate::global::KMALLOC[cls].load(std::sync::atomic::Ordering::Acquire);
        if c.is_null() {
            return ptr::null_mut();
        }
        // SAFETY: the default domain's caches live for the whole process.
        let cache = unsafe { &*c };
        // Debug mode is asked in `alloc_slow_in`, once the owned slabs gave nothing (a cache
        // in debug mode leaves none: turning it on revokes them all), so that the refill
        // from owned slabs does not read the cache's descriptor.
        match heap_and_tc(cache, Some(cls)) {
            // kmalloc caches have no constructor (one cache line fewer to read).
            Some((heap, tc)) => alloc_slow_in(cache, None, heap, tc, true),
            None => alloc_direct(cache, None),
        }
    }
    #[cfg(loom)]
    {
        let _ = cls;
        ptr::null_mut()
    }
}

#[cold]
fn alloc_slow(cache: &CacheInner, want: Option<NodeId>) -> *mut u8 {
    if cache.debug_on() {
        // Debug slabs are never owned by a heap: every allocation comes back here.
        if let Some(p) = crate::debug::alloc(cache, want) {
            return p;
        }
    }
    match heap_and_tc(cache, None) {
        Some((heap, tc)) => alloc_slow_in(cache, want, heap, tc, cache.ctor.is_none()),
        None => alloc_direct(cache, want),
    }
}

/// The calling thread's heap and its thread cache of `cache`, made on first use; `None` without
/// a heap (thread exit) or memory, when the caller allocates directly. `kmalloc_class`: `cache`
/// is that default-domain kmalloc class, whose thread cache the heap keeps at hand (`Heap::ktc`).
#[inline]
fn heap_and_tc(
    cache: &CacheInner,
    kmalloc_class: Option<usize>,
) -> Option<(&'static Heap, &ThreadCache)> {
    let heap = heap_or_create()?;
    let slot = kmalloc_class.map(|cls| &heap.ktc[cls]);
    let mut tc = slot.map_or(ptr::null_mut(), Cell::get);
    if tc.is_null() {
        tc = cache.tc_or_create(heap);
        if tc.is_null() {
            return None;
        }
        if let Some(slot) = slot {
            slot.set(tc);
        }
    }
    // SAFETY: thread caches live as long as their cache metadata (`Heap::ktc` holds only the
    // heap's own thread caches of the default domain's kmalloc caches).
    Some((heap, unsafe { &*tc }))
}

/// [`alloc_slow`] once the caller's heap and its thread cache of `cache` are known; `no_ctor`:
/// the cache has no constructor.
#[inline]
fn alloc_slow_in(
    cache: &CacheInner,
    want: Option<NodeId>,
    heap: &Heap,
    tc: &ThreadCache,
    no_ctor: bool,
) -> *mut u8 {
    // 1. Without a lock: the owned slabs (constructor caches refill under the lock, below, so
    //    that a constructor never runs inside a busy section).
    if want.is_none() && no_ctor {
        heap.busy.store(true, Ordering::Relaxed);
        light_barrier();
        if !heap.revoked.load(Ordering::Relaxed) {
            // SAFETY: owner in a busy section, not revoked.
            let obj = unsafe { tc.refill_local(cache) };
            heap.busy.store(false, Ordering::Release);
            if !obj.is_null() {
                return obj;
            }
        } else {
            heap.busy.store(false, Ordering::Release);
        }
    }
    // 2. Under the heap's lock: revocations are over; fetch slabs from node parts.
    let mut g = heap.lock_owner();
    // Debug mode, asked under the lock: turning it on stores the flag and then revokes every
    // heap under its lock, so a heap that takes its lock after that revocation sees the flag
    // and never fetches a plain slab for a cache already in debug mode. (Step 1 found nothing
    // then: the revocation took the owned slabs.) Debug slabs are never owned by a heap.
    if cache.debug_on() {
        drop(g);
        if let Some(p) = crate::debug::alloc(cache, want) {
            return p;
        }
        g = heap.lock_owner();
    }
    let _g = g;
    if heap.revoked.load(Ordering::Acquire) {
        // Every revoker held the lock for its whole run: they are done.
        heap.revoked.store(false, Ordering::Relaxed);
    }
    if cache.is_dead() {
        return ptr::null_mut();
    }
    // SAFETY: we hold the heap's lock: we own the thread cache.
    unsafe { locked_refill(cache, heap, tc, want) }
}

/// The owner's refill under its heap's lock.
///
/// # Safety
/// The caller holds `heap.lock` as the owner of `tc`.
unsafe fn locked_refill(
    cache: &CacheInner,
    heap: &Heap,
    tc: &ThreadCache,
    want: Option<NodeId>,
) -> *mut u8 {
    // SAFETY (whole body): we own every slab on tc's queues and its cur.
    unsafe {
        let cur = tc.cur();
        if !cur.is_null() {
            let s = &*cur;
            let part = &*s.part;
            if want.is_some_and(|n| n != s.node) || !part.accepts_new_slabs() {
                tc.set_cur(ptr::null_mut());
                if part.accepts_new_slabs() {
                    tc.avail.push_back(cur, HeapQueue::Avail);
                } else {
                    release_owned(cache, s);
                }
            }
        }
        if let Some(n) = want {
            // A slab of node n we own already?
            let mut s = tc.avail.head();
            while !s.is_null() {
                let next = (*s).hnext.get();
                if (*s).node == n && (*(*s).part).accepts_new_slabs() {
                    tc.avail.remove(s);
                    let old = tc.cur();
                    if !old.is_null() {
                        tc.avail.push_back(old, HeapQueue::Avail);
                    }
                    tc.set_cur(s);
                    break;
                }
                s = next;
            }
            let cur = tc.cur();
            if !cur.is_null() && (*cur).node == n {
                let obj = refill_from(cache, &*cur);
                if !obj.is_null() {
                    return obj;
                }
            }
        } else {
            let obj = tc.refill_local(cache);
            if !obj.is_null() {
                return obj;
            }
        }
        // Too many full slabs: the oldest go back to their parts (their later frees are remote).
        while tc.full.len() > FULL_KEEP {
            let s = tc.full.pop_front();
            release_owned(cache, &*s);
        }
        let mut order = [NodeId::new(0); 64];
        let mut n = cache
            .domain()
            .alloc_order_in(want, &mut order, Some(&cache.interleave));
        // A second pass only if a bind was refused in the first (a node just lost its memory).
        for pass in 0..2 {
            if pass == 1 {
                n = cache.domain().order_after_refusal(want, &mut order);
            }
            for &nid in &order[..n] {
                let Some(part) = cache.part_for_alloc(nid) else {
                    continue;
                };
                let mut got = [ptr::null_mut::<Slab>(); ACQUIRE_BATCH];
                let k = acquire(cache, part, heap, tc, &mut got);
                cache.maybe_purge(part);
                crate::publish::tick(cache.domain());
                if k == 0 {
                    continue;
                }
                let old = tc.cur();
                if !old.is_null() {
                    tc.avail.push_back(old, HeapQueue::Avail);
                }
                tc.set_cur(got[0]);
                for &s in &got[1..k] {
                    tc.avail.push_back(s, HeapQueue::Avail);
                }
                let obj = refill_from(cache, &*got[0]);
                if !obj.is_null() {
                    return obj;
                }
            }
        }
    }
    ptr::null_mut()
}

/// How many never-used objects a refill carves: at least [`CARVE_BATCH`] small objects (a page's
/// worth of the smallest), but only 32 KiB worth of large ones, at least 4: carving writes a
/// free pointer into each object, faulting its page in, and a slab of large objects that is
/// carved whole holds pages the program may never use.
#[inline]
fn carve_batch(stride: u32) -> u32 {
    if stride <= 512 {
        CARVE_BATCH.max(4096 / stride)
    } else {
        (32768 / stride).clamp(4, CARVE_BATCH)
    }
}

/// Owner: the slab's pop list, its local and remote lists, or fresh objects; pops one.
///
/// # Safety
/// The caller owns `s`.
#[inline]
unsafe fn refill_from(cache: &CacheInner, s: &Slab) -> *mut u8 {
    // SAFETY: owner.
    unsafe {
        let obj = s.pop();
        if !obj.is_null() {
            return obj;
        }
        if !s.refill() && s.has_uncarved() {
            let batch = carve_batch(s.stride);
            s.carve(batch, cache.ctor);
        }
        s.pop()
    }
}

/// Takes up to `out.len()` slabs of `part` for `tc`: partial ones (abandoned slabs of exited
/// threads among them), else one empty, full-with-remote-frees or new slab. Returns how many.
///
/// # Safety
/// `part` belongs to `cache`; the caller holds `heap.lock` as the owner of `tc`.
unsafe fn acquire(
    cache: &CacheInner,
    part: &NodePart,
    heap: &Heap,
    tc: &ThreadCache,
    out: &mut [*mut Slab],
) -> usize {
    let mut lists = part.lock();
    if !part.accepts_new_slabs() {
        crate::placement::part_refused();
        return 0;
    }
    if part.take_reap() {
        cache.reap(part, &mut lists);
    }
    let mut n = 0;
    while n < out.len() {
        let s = lists.partial.head();
        if s.is_null() {
            break;
        }
        out[n] = s;
        n += 1;
        // SAFETY: s rests on the partial list; we hold the lock.
        unsafe { own(&mut lists, s, heap, tc) };
    }
    if n > 0 {
        return n;
    }
    // The most recently emptied slab: still warm, while older ones age towards the purge.
    let mut pick = lists.empty.tail();
    if pick.is_null() {
        // Rotate through full slabs looking for remote frees.
        for _ in 0..core::cmp::min(PART_FULL_SCAN, lists.full.len) {
            let s = lists.full.head();
            // SAFETY: s is on the full list, under the lock.
            unsafe {
                lists.full.remove(s);
                lists.full.push_back(s);
                if (*s).has_remote() {
                    pick = s;
                    break;
                }
            }
        }
    }
    if pick.is_null() {
        match cache.new_slab(part, &mut lists) {
            Some(s) => pick = s,
            None => return 0,
        }
    }
    out[0] = pick;
    // SAFETY: pick is a resting slab of this part on the list its field names.
    unsafe { own(&mut lists, pick, heap, tc) };
    1
}

/// Makes resting slab `s` owned by `heap`/`tc` (part lock held).
///
/// # Safety
/// `s` rests in the part whose lists these are, on the list its `list` field names.
unsafe fn own(lists: &mut crate::node::PartLists, s: *mut Slab, heap: &Heap, tc: &ThreadCache) {
    // SAFETY: forwarded.
    unsafe {
        lists.take(s);
        (*s).tc
            .store(tc as *const ThreadCache as usize, Ordering::Relaxed);
        (*s).owner
            .store(heap as *const Heap as usize, Ordering::Relaxed);
        lists.put(s, ListKind::Owned);
    }
}

/// Gives an owned slab (on no heap queue) back to its part, classifying it; frees it if it is
/// empty and the part has enough empty slabs or is draining.
///
/// # Safety
/// The caller owns `s` (as its heap's owner, or as a revoker holding the heap's lock).
pub(crate) unsafe fn release_owned(cache: &CacheInner, s: &Slab) {
    // SAFETY: s.part outlives s.
    let part = unsafe { &*s.part };
    {
        let mut lists = part.lock();
        let sp = s as *const Slab as *mut Slab;
        s.queue.set(HeapQueue::None);
        // SAFETY: s is on the owned list of this part; we hold the lock.
        unsafe {
            lists.take(sp);
            #[cfg(loom)]
            let keep = cache
                .domain()
                .heap_mutated(crate::domain::HeapMutation::ReleaseKeepsOwner);
            #[cfg(not(loom))]
            let keep = false;
            if !keep {
                s.owner.store(crate::slab::NO_OWNER, Ordering::Release);
            }
            s.tc.store(0, Ordering::Relaxed);
            s.collect_remote();
        }
        cache.settle(part, &mut lists, sp);
        if part.take_reap() {
            cache.reap(part, &mut lists);
        }
    }
    cache.maybe_purge(part);
    crate::publish::tick(cache.domain());
}

/// A thread without a heap (exiting, or out of heap ids): allocate straight from a resting slab
/// under the part's list lock.
fn alloc_direct(cache: &CacheInner, want: Option<NodeId>) -> *mut u8 {
    if cache.is_dead() {
        return ptr::null_mut();
    }
    if cache.debug_on() {
        if let Some(p) = crate::debug::alloc(cache, want) {
            return p;
        }
    }
    let mut order = [NodeId::new(0); 64];
    let mut n = cache
        .domain()
        .alloc_order_in(want, &mut order, Some(&cache.interleave));
    for pass in 0..2 {
        if pass == 1 {
            n = cache.domain().order_after_refusal(want, &mut order);
        }
        for &nid in &order[..n] {
            let Some(part) = cache.part_for_alloc(nid) else {
                continue;
            };
            let mut lists = part.lock();
            if !part.accepts_new_slabs() {
                crate::placement::part_refused();
                continue;
            }
            let mut s = lists.partial.head();
            if s.is_null() {
                s = lists.empty.tail();
            }
            if s.is_null() {
                match cache.new_slab(part, &mut lists) {
                    Some(n) => s = n,
                    None => continue,
                }
            }
            // SAFETY: s rests in this part and we hold its lock, so we act as its owner.
            let obj = unsafe { refill_from(cache, &*s) };
            if obj.is_null() {
                continue;
            }
            // SAFETY: s is on the list its field names.
            unsafe { lists.take(s) };
            cache.settle(part, &mut lists, s);
            return obj;
        }
    }
    ptr::null_mut()
}

/// Takes every slab of `tc` back (destroy, offline, debug switch). Returns once the owner can no
/// longer touch them. Call with no part lock held (the owner's slow path may be waiting for one).
pub(crate) fn revoke(cache: &CacheInner, tc: &ThreadCache) {
    let heap = tc.heap();
    // Flag and wait *under* the heap's lock: the owner's slow path clears `revoked` (and may
    // install new slabs) only under that lock. The owner's fast path never takes the lock, so
    // the wait below still ends.
    let _g = lock(&heap.lock);
    heap.revoked.store(true, Ordering::SeqCst);
    heavy_barrier();
    #[cfg(loom)]
    let skip = cache
        .domain()
        .heap_mutated(crate::domain::HeapMutation::RevokeSkipsBusyWait);
    #[cfg(not(loom))]
    let skip = false;
    while !skip && heap.busy.load(Ordering::Acquire) {
        spin_wait();
    }
    // SAFETY: the owner is outside its fast path, blocked out of its slow path by the lock, and
    // will see `revoked` first thing: we own its slabs.
    unsafe { tc.release_all(cache) };
}

/// Thread exit: gives back `heap`'s slabs of `cache` (the thread cache stays, for the next thread
/// that takes the heap).
pub(crate) fn flush_heap(cache: &CacheInner, heap: &Heap) {
    let tc = cache.tc(heap.id);
    if tc.is_null() {
        return;
    }
    // SAFETY: thread caches live as long as the cache metadata.
    let tc = unsafe { &*tc };
    let _g = lock(&heap.lock);
    // SAFETY: the exiting thread owned the thread cache; revokers are excluded by the lock.
    unsafe { tc.release_all(cache) };
}

/// A cross-thread free found a parked slab of thread cache `tc` (a `Slab::tc` word, not 0).
///
/// # Safety
/// `tc` was read from a slab of a live cache (thread caches live as long as its metadata).
#[inline]
pub(crate) unsafe fn notice_parked(tc: usize) {
    // SAFETY: caller contract.
    let tc = unsafe { &*(tc as *const ThreadCache) };
    tc.notices.fetch_add(1, Ordering::Release);
}

// A thread cache's refill reads its first line and its notice line: at 192 bytes (an odd-line
// metadata class, see `mem::meta`) thread caches allocated back to back use every L1 set.
#[cfg(not(loom))]
const _: () = assert!(
    core::mem::align_of::<ThreadCache>() == 64
        && core::mem::size_of::<ThreadCache>() > 128
        && core::mem::size_of::<ThreadCache>() <= 448
);
