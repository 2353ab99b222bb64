//! The per-thread fast path: thread slots, `ThreadCache` (a thread's share of one cache: the
//! slab it owns), the lock-free alloc / local free, the slow path that refills from node parts,
//! the revocation protocol that lets destroy and offline take a slab back from an idle thread,
//! and thread-exit cleanup (a pthread key destructor, not std TLS destructors, which allocate).
//!
//! Revocation (an asymmetric Dekker pair): the owner's fast path stores `busy = true`, runs
//! [`light_barrier`] (a compiler fence) and reads `revoked`; the revoker stores `revoked = true`,
//! runs [`heavy_barrier`] (membarrier: a full fence on every running thread) and waits for
//! `busy == false`. Either the owner sees `revoked` and takes the slow path, or the revoker
//! sees `busy` and waits the few instructions it takes to finish. After that the revoker takes
//! `cur` under `ThreadCache::lock`, which the owner's slow path also holds.
//!
//! Must not take `slab_mutex` or the online-mems lock on any allocation or free path.

use core::ptr;

use hotslab_numa::NodeId;

use crate::cache::CacheInner;
use crate::node::NodePart;
use crate::slab::{ListKind, Slab};
use crate::sync::{
    heavy_barrier, light_barrier, lock, spin_wait, AtomicBool, AtomicPtr, AtomicU64, Mutex,
    Ordering,
};

/// Concurrent threads with a fast path; further threads use the locked direct path.
#[cfg(not(loom))]
pub(crate) const MAX_SLOTS: usize = 1024;
#[cfg(loom)]
pub(crate) const MAX_SLOTS: usize = 4;

/// Objects carved from a fresh span at a time (bounds the constructor work on one slow path).
const CARVE_BATCH: u32 = 64;
/// Full slabs inspected for remote frees per refill before a new slab is made.
const FULL_SCAN: usize = 16;

/// One thread's share of one cache.
#[repr(C, align(64))]
pub(crate) struct ThreadCache {
    /// Owner is inside a fast-path section (see the module docs).
    pub busy: AtomicBool,
    /// A revoker wants `cur` back.
    pub revoked: AtomicBool,
    /// The slab this thread allocates from (owner writes; the revoker writes under `lock`).
    pub cur: AtomicPtr<Slab>,
    /// Objects this thread allocated / freed (owner-written, read by statistics).
    pub allocs: AtomicU64,
    pub frees: AtomicU64,
    /// Serialises the owner's slow path against a revoker.
    pub lock: Mutex<()>,
}

impl ThreadCache {
    pub fn new() -> ThreadCache {
        ThreadCache {
            busy: AtomicBool::new(false),
            revoked: AtomicBool::new(false),
            cur: AtomicPtr::new(ptr::null_mut()),
            allocs: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            lock: Mutex::new(()),
        }
    }

    #[inline(always)]
    fn bump(counter: &AtomicU64) {
        // Owner-only counter: a load and a store, no read-modify-write on the fast path.
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }
}

// ---- thread slots -------------------------------------------------------------------------

/// Slot state in TLS: the slot itself when below `MAX_SLOTS`; `UNASSIGNED` before the first
/// use; `NO_SLOT` when there is none (table full, or thread exiting). One compare on the fast path.
#[cfg_attr(loom, allow(dead_code))]
const UNASSIGNED: u32 = u32::MAX;
#[cfg_attr(loom, allow(dead_code))]
const NO_SLOT: u32 = u32::MAX - 1;

#[cfg(not(loom))]
mod slots {
    use super::{MAX_SLOTS, NO_SLOT, UNASSIGNED};
    use core::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};

    static BITMAP: [AtomicU64; MAX_SLOTS / 64] = [const { AtomicU64::new(0) }; MAX_SLOTS / 64];
    static KEY: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(usize::MAX);

    std::thread_local! {
        // const-initialised and drop-free: no lazy registration, no allocation.
        static SLOT: Cell<u32> = const { Cell::new(UNASSIGNED) };
    }

    #[inline(always)]
    pub fn current() -> Option<usize> {
        // A const, drop-free thread local is always accessible: `with` cannot fail here.
        let s = SLOT.with(Cell::get) as usize;
        if s < MAX_SLOTS {
            Some(s)
        } else {
            not_assigned(s as u32)
        }
    }

    #[cold]
    fn not_assigned(s: u32) -> Option<usize> {
        if s == UNASSIGNED {
            assign()
        } else {
            None
        }
    }

    #[cold]
    fn assign() -> Option<usize> {
        let key = exit_key()?;
        for (w, word) in BITMAP.iter().enumerate() {
            let mut cur = word.load(Ordering::Relaxed);
            while cur != u64::MAX {
                let bit = (!cur).trailing_zeros() as usize;
                match word.compare_exchange_weak(
                    cur,
                    cur | (1 << bit),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        let slot = w * 64 + bit;
                        let _ = SLOT.try_with(|s| s.set(slot as u32));
                        // SAFETY: key is a valid pthread key; a non-null value makes the
                        // destructor run at thread exit with that value.
                        unsafe {
                            libc::pthread_setspecific(key, (slot + 1) as *const libc::c_void)
                        };
                        return Some(slot);
                    }
                    Err(c) => cur = c,
                }
            }
        }
        let _ = SLOT.try_with(|s| s.set(NO_SLOT));
        None
    }

    fn exit_key() -> Option<libc::pthread_key_t> {
        let k = KEY.load(Ordering::Acquire);
        if k != usize::MAX {
            return Some(k as libc::pthread_key_t);
        }
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: key is a valid out-pointer; the destructor is an extern "C" fn that never unwinds.
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

    extern "C" fn on_thread_exit(value: *mut libc::c_void) {
        let slot = (value as usize).wrapping_sub(1);
        if slot >= MAX_SLOTS {
            return;
        }
        // Later TLS destructors may still allocate: they use the slotless path from now on.
        let _ = SLOT.try_with(|s| s.set(NO_SLOT));
        crate::domain::flush_slot_everywhere(slot);
        release(slot);
    }

    pub fn release(slot: usize) {
        BITMAP[slot / 64].fetch_and(!(1u64 << (slot % 64)), Ordering::AcqRel);
    }

    /// Test hook: gives the calling thread's slot back now, as thread exit would.
    pub fn exit_now() {
        if let Ok(s) = SLOT.try_with(Cell::get) {
            if (s as usize) < MAX_SLOTS {
                on_thread_exit((s as usize + 1) as *mut libc::c_void);
                let _ = SLOT.try_with(|c| c.set(UNASSIGNED));
                if let Some(key) = exit_key() {
                    // SAFETY: valid key; clearing the value cancels the exit destructor.
                    unsafe { libc::pthread_setspecific(key, core::ptr::null()) };
                }
            }
        }
    }

    /// The calling thread's slot, without assigning one (fork child handler).
    pub fn caller_slot() -> Option<usize> {
        let s = SLOT.try_with(Cell::get).ok()? as usize;
        (s < MAX_SLOTS).then_some(s)
    }

    /// Fork child: only the forking thread exists; every slot but `keep` becomes free.
    pub fn keep_only_after_fork(keep: Option<usize>) {
        for (w, word) in BITMAP.iter().enumerate() {
            let bit = match keep {
                Some(s) if s / 64 == w => 1u64 << (s % 64),
                _ => 0,
            };
            word.store(bit, Ordering::Release);
        }
    }

    pub fn in_use() -> usize {
        BITMAP
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones() as usize)
            .sum()
    }
}

#[cfg(loom)]
mod slots {
    use super::MAX_SLOTS;
    use std::sync::atomic::{AtomicUsize, Ordering};

    loom::lazy_static! {
        static ref NEXT: AtomicUsize = AtomicUsize::new(0);
    }
    loom::thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }

    /// Under loom every model thread gets a fresh slot per execution (no exit handling).
    pub fn current() -> Option<usize> {
        let s = SLOT.with(|s| *s);
        (s < MAX_SLOTS).then_some(s)
    }
    pub fn exit_now() {}
    pub fn in_use() -> usize {
        NEXT.load(Ordering::Relaxed)
    }
}

pub(crate) use slots::current as current_slot;
#[cfg(not(loom))]
pub(crate) use slots::{caller_slot, keep_only_after_fork};

/// Gives the calling thread's slot back as thread exit would (tests: simulate thread exit).
pub fn exit_thread_now() {
    slots::exit_now();
}

/// Slots currently assigned to live threads.
pub fn slots_in_use() -> usize {
    slots::in_use()
}

// ---- fast paths -----------------------------------------------------------------------------

/// Allocates one object of `cache` (no node preference). Null when out of memory or the cache is
/// dead.
#[inline(always)]
pub(crate) fn alloc(cache: &CacheInner) -> *mut u8 {
    alloc_inner(cache, None)
}

/// Allocates one object on node `nid` (falling back by distance when the node cannot serve).
pub(crate) fn alloc_node(cache: &CacheInner, nid: NodeId) -> *mut u8 {
    alloc_inner(cache, Some(nid))
}

#[inline(always)]
fn alloc_inner(cache: &CacheInner, want: Option<NodeId>) -> *mut u8 {
    if let Some(slot) = current_slot() {
        let tc = cache.tc(slot);
        if !tc.is_null() {
            // SAFETY: thread caches are never freed while their cache's metadata lives, which
            // is for the life of the domain.
            let tc = unsafe { &*tc };
            tc.busy.store(true, Ordering::Relaxed);
            light_barrier();
            if !tc.revoked.load(Ordering::Relaxed) {
                let s = tc.cur.load(Ordering::Relaxed);
                // SAFETY: `s` is our cur and we are not revoked: we own it (module docs).
                if !s.is_null() && want.is_none_or(|n| unsafe { (*s).node } == n) {
                    // SAFETY: as above.
                    let obj = unsafe { (*s).pop() };
                    if !obj.is_null() {
                        tc.busy.store(false, Ordering::Release);
                        ThreadCache::bump(&tc.allocs);
                        return obj;
                    }
                }
            }
            tc.busy.store(false, Ordering::Release);
        }
        return alloc_slow(cache, slot, want);
    }
    alloc_direct(cache, want)
}

/// Frees `obj`, an allocated object of slab `s`.
///
/// # Safety
/// `obj` was returned by an alloc of `s`'s cache, is an object start of `s`, and is not freed
/// yet.
#[inline(always)]
pub(crate) unsafe fn free(s: &Slab, obj: *mut u8) {
    if let Some(slot) = current_slot() {
        let tc = s.tc(slot);
        if !tc.is_null() {
            // SAFETY: as in alloc.
            let tc = unsafe { &*tc };
            tc.busy.store(true, Ordering::Relaxed);
            light_barrier();
            if !tc.revoked.load(Ordering::Relaxed) && ptr::eq(tc.cur.load(Ordering::Relaxed), s) {
                // SAFETY: s is our cur and we are not revoked: we own its private list.
                unsafe { s.push(obj) };
                tc.busy.store(false, Ordering::Release);
                ThreadCache::bump(&tc.frees);
                return;
            }
            tc.busy.store(false, Ordering::Release);
            if s.dbg.flags != 0 {
                // A debug slab is never a thread's `cur`, so its frees all arrive here.
                // SAFETY: forwarded from the caller.
                return unsafe { crate::debug::free_checked(s, obj) };
            }
            ThreadCache::bump(&tc.frees);
            // SAFETY: forwarded from the caller.
            unsafe { s.push_remote(obj) };
            return;
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { free_no_tc(s, obj) }
}

#[cold]
unsafe fn free_no_tc(s: &Slab, obj: *mut u8) {
    if s.dbg.flags != 0 {
        // SAFETY: forwarded from the caller.
        return unsafe { crate::debug::free_checked(s, obj) };
    }
    // SAFETY: cache metadata outlives its slabs.
    let cache = unsafe { &*s.cache };
    // A thread that only frees (a consumer) gets a thread cache too, so its frees are counted
    // in its own line instead of one contended counter per cache.
    let tc = current_slot().map_or(ptr::null_mut(), |slot| cache.tc_or_create(slot));
    if tc.is_null() {
        cache.shared_frees.fetch_add(1, Ordering::Relaxed);
    } else {
        // SAFETY: thread caches live as long as the cache metadata.
        ThreadCache::bump(unsafe { &(*tc).frees });
    }
    // SAFETY: forwarded from the caller.
    unsafe { s.push_remote(obj) };
}

// ---- slow paths ------------------------------------------------------------------------------

#[cold]
fn alloc_slow(cache: &CacheInner, slot: usize, want: Option<NodeId>) -> *mut u8 {
    if cache.debug_on() {
        // Debug slabs are never installed as `cur`: every allocation comes back here.
        return crate::debug::alloc(cache, want);
    }
    let tc = cache.tc_or_create(slot);
    if tc.is_null() {
        return alloc_direct(cache, want);
    }
    // SAFETY: as in alloc.
    let tc = unsafe { &*tc };
    let _g = lock(&tc.lock);
    if tc.revoked.load(Ordering::Acquire) {
        tc.revoked.store(false, Ordering::Relaxed);
    }
    if cache.is_dead() {
        return ptr::null_mut();
    }
    let cur = tc.cur.load(Ordering::Relaxed);
    if !cur.is_null() {
        // SAFETY: we hold tc.lock and cur is ours.
        let s = unsafe { &*cur };
        // SAFETY: s.part outlives its slabs (parts are never freed while slabs reference them).
        let part = unsafe { &*s.part };
        if want.is_none_or(|n| n == s.node) && part.accepts_new_slabs() {
            // SAFETY: we own s.
            let obj = unsafe { refill_from(cache, s) };
            if !obj.is_null() {
                ThreadCache::bump(&tc.allocs);
                return obj;
            }
        }
        tc.cur.store(ptr::null_mut(), Ordering::Relaxed);
        // SAFETY: we own s and give it back.
        unsafe { release_owned(cache, s) };
    }
    let start = want.unwrap_or_else(|| cache.domain().local_node());
    let mut order = [NodeId::new(0); 64];
    let n = cache.domain().fallback(start, &mut order);
    for &nid in &order[..n] {
        let Some(part) = cache.part_for_alloc(nid) else {
            continue;
        };
        // SAFETY: the part outlives this call (parts are quarantined, never freed under us).
        let Some(s) = (unsafe { acquire(cache, part, tc as *const ThreadCache as usize) }) else {
            continue;
        };
        tc.cur.store(s, Ordering::Relaxed);
        // SAFETY: we own s now.
        let obj = unsafe { refill_from(cache, &*s) };
        if !obj.is_null() {
            ThreadCache::bump(&tc.allocs);
            return obj;
        }
    }
    ptr::null_mut()
}

/// Owner: collects remote frees or carves fresh objects, then pops one.
///
/// # Safety
/// The caller owns `s`.
unsafe fn refill_from(cache: &CacheInner, s: &Slab) -> *mut u8 {
    // SAFETY: owner.
    unsafe {
        let obj = s.pop();
        if !obj.is_null() {
            return obj;
        }
        s.collect_remote();
        if s.free.get().is_null() {
            s.carve(CARVE_BATCH, cache.ctor);
        }
        s.pop()
    }
}

/// Takes a slab of `part` for the owner `owner` (a ThreadCache address): partial, then empty,
/// then a full one that received remote frees, then a new one. `None` if the part no longer
/// accepts new slabs and has nothing usable, or memory ran out.
///
/// # Safety
/// `part` belongs to `cache`.
unsafe fn acquire(cache: &CacheInner, part: &NodePart, owner: usize) -> Option<*mut Slab> {
    let mut lists = part.lock();
    if !part.accepts_new_slabs() {
        return None;
    }
    if part.take_reap() {
        cache.reap(part, &mut lists);
    }
    let mut pick = lists.partial.head();
    if pick.is_null() {
        pick = lists.empty.head();
    }
    if pick.is_null() {
        // Rotate through full slabs looking for remote frees.
        for _ in 0..core::cmp::min(FULL_SCAN, lists.full.len) {
            let s = lists.full.head();
            // SAFETY: s is on the full list, under the lock.
            unsafe {
                lists.full.remove(s);
                if (*s).remote.load(Ordering::Relaxed) != 0 {
                    pick = s;
                    (*s).list.set(ListKind::Full);
                    lists.full.push_back(s); // removed again below, uniformly
                    break;
                }
                lists.full.push_back(s);
            }
        }
    }
    if pick.is_null() {
        pick = cache.new_slab(part, &mut lists)?;
    }
    // SAFETY: pick is a resting slab of this part, on the list its `list` field names.
    unsafe {
        lists.take(pick);
        (*pick).owner.store(owner, Ordering::Relaxed);
        lists.put(pick, ListKind::Owned);
    }
    Some(pick)
}

/// Gives an owned slab back to its part (classifying it; freeing it if it is empty and the part
/// has enough empty slabs or is draining).
///
/// # Safety
/// The caller owns `s` (as its thread cache, or as a revoker holding the thread cache's lock).
pub(crate) unsafe fn release_owned(cache: &CacheInner, s: &Slab) {
    // SAFETY: s.part outlives s.
    let part = unsafe { &*s.part };
    let mut lists = part.lock();
    let sp = s as *const Slab as *mut Slab;
    // SAFETY: s is on the owned list of this part; we hold the lock.
    unsafe {
        lists.take(sp);
        s.owner.store(0, Ordering::Release);
        s.collect_remote();
    }
    cache.settle(part, &mut lists, sp);
    if part.take_reap() {
        cache.reap(part, &mut lists);
    }
}

/// A thread without a slot (or whose thread cache could not be made): allocate straight from a
/// resting slab under the part's list lock.
fn alloc_direct(cache: &CacheInner, want: Option<NodeId>) -> *mut u8 {
    if cache.is_dead() {
        return ptr::null_mut();
    }
    if cache.debug_on() {
        return crate::debug::alloc(cache, want);
    }
    let start = want.unwrap_or_else(|| cache.domain().local_node());
    let mut order = [NodeId::new(0); 64];
    let n = cache.domain().fallback(start, &mut order);
    for &nid in &order[..n] {
        let Some(part) = cache.part_for_alloc(nid) else {
            continue;
        };
        let mut lists = part.lock();
        if !part.accepts_new_slabs() {
            continue;
        }
        let mut s = lists.partial.head();
        if s.is_null() {
            s = lists.empty.head();
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
        cache.shared_allocs.fetch_add(1, Ordering::Relaxed);
        return obj;
    }
    ptr::null_mut()
}

/// Takes `tc`'s slab back (destroy, offline). Returns once the owner can no longer touch it.
/// Call with no part lock held (the owner's slow path may be waiting for one).
pub(crate) fn revoke(cache: &CacheInner, tc: &ThreadCache) {
    // Flag and wait *under* tc.lock: the owner's slow path clears `revoked` (and may install a
    // new `cur`) only under that lock, so flagging first and locking afterwards could take a
    // `cur` the owner had just re-installed and was using again (ThreadSanitizer caught this).
    // The owner's fast path never takes the lock, so the wait below still ends.
    let _g = lock(&tc.lock);
    tc.revoked.store(true, Ordering::SeqCst);
    heavy_barrier();
    while tc.busy.load(Ordering::Acquire) {
        spin_wait();
    }
    let cur = tc.cur.swap(ptr::null_mut(), Ordering::AcqRel);
    if !cur.is_null() {
        // SAFETY: the owner is outside its fast path and blocked out of its slow path by
        // tc.lock, and it will see `revoked` first thing: we own cur.
        unsafe { release_owned(cache, &*cur) };
    }
}

#[cfg_attr(loom, allow(dead_code))]
/// Thread exit: give back this slot's slab of `cache` (the thread cache itself stays, for the
/// next thread that gets the slot).
pub(crate) fn flush_slot(cache: &CacheInner, slot: usize) {
    let tc = cache.tc(slot);
    if tc.is_null() {
        return;
    }
    // SAFETY: thread caches live as long as the cache metadata.
    let tc = unsafe { &*tc };
    let _g = lock(&tc.lock);
    tc.revoked.store(false, Ordering::Relaxed);
    let cur = tc.cur.swap(ptr::null_mut(), Ordering::AcqRel);
    if !cur.is_null() {
        // SAFETY: the exiting thread owned cur.
        unsafe { release_owned(cache, &*cur) };
    }
}
