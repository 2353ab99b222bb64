//! `fork()` support: pthread_atfork handlers, installed once when the default domain is built.
//! Prepare takes every allocator lock in the crate's lock order; the parent releases them; the
//! child makes the vanished threads' state safe (thread caches reset, their slabs given back or
//! set aside, their slots freed) and then releases them. Owns only the handlers and the guards
//! they hold between prepare and parent/child; it must not allocate through the global allocator
//! or panic. Not built under loom; under Miri (no fork there) the handlers are not registered.
//!
//! Lock order taken by prepare (the crate docs' order, plus the two leaves it needs):
//! registry of domains → online-mems write side (each distinct hotplug domain) → `slab_mutex`
//! (each domain) → every node part's list lock → node-state masks, `self_weak` (leaves) →
//! node arenas → large tier → metadata lock. Thread-cache locks are per thread and are not
//! taken: the child reinitialises those of threads that no longer exist.

use core::cell::UnsafeCell;
use core::ptr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering as StdOrdering};
use std::sync::{MutexGuard as StdMutexGuard, Weak};

use hotslab_hotplug::{HotplugDomain, NodeStateSnapshot, WriteGuard};
use hotslab_numa::NodeId;

use crate::cache::CacheInner;
use crate::domain::registry_of_domains::{self, List};
use crate::domain::{Registry, SlabDomain};
use crate::heap::{self, Heap};
use crate::mem::{meta_alloc, meta_free, meta_lock_for_fork, meta_unlock_after_fork};
use crate::node::{NodePart, PartLists};
use crate::sync::{MutexGuard, Ordering};

/// The registry of domains holds at most this many domains.
const MAX_DOMAINS: usize = 256;

type PartGuard = MutexGuard<'static, PartLists>;

/// Everything prepare took, kept for the parent/child handler. Only the forking thread touches
/// it: glibc runs the three handler lists under its own atfork lock, and prepare holds the
/// registry-of-domains lock, so two forks never use it at once.
struct Held {
    list: Option<StdMutexGuard<'static, List>>,
    doms: [*const SlabDomain; MAX_DOMAINS],
    ndoms: usize,
    hps: [*const HotplugDomain; MAX_DOMAINS],
    nhps: usize,
    writers: [Option<WriteGuard<'static>>; MAX_DOMAINS],
    regs: [Option<MutexGuard<'static, Registry>>; MAX_DOMAINS],
    masks: [Option<MutexGuard<'static, NodeStateSnapshot>>; MAX_DOMAINS],
    weaks: [Option<StdMutexGuard<'static, Option<Weak<SlabDomain>>>>; MAX_DOMAINS],
    /// Part guards in metadata memory (`parts_cap` slots, `nparts` taken).
    parts: *mut PartGuard,
    nparts: usize,
    parts_cap: usize,
    arenas: bool,
    large_and_meta: bool,
}

impl Held {
    const fn new() -> Held {
        Held {
            list: None,
            doms: [ptr::null(); MAX_DOMAINS],
            ndoms: 0,
            hps: [ptr::null(); MAX_DOMAINS],
            nhps: 0,
            writers: [const { None }; MAX_DOMAINS],
            regs: [const { None }; MAX_DOMAINS],
            masks: [const { None }; MAX_DOMAINS],
            weaks: [const { None }; MAX_DOMAINS],
            parts: ptr::null_mut(),
            nparts: 0,
            parts_cap: 0,
            arenas: false,
            large_and_meta: false,
        }
    }
}

struct HeldCell(UnsafeCell<Held>);
// SAFETY: only the forking thread reaches the cell, between prepare and parent/child (see Held).
unsafe impl Sync for HeldCell {}

static HELD: HeldCell = HeldCell(UnsafeCell::new(Held::new()));
static INSTALLED: AtomicBool = AtomicBool::new(false);

static PREPARES: AtomicU64 = AtomicU64::new(0);
static CHILDREN: AtomicU64 = AtomicU64::new(0);
static RECLAIMED: AtomicU64 = AtomicU64::new(0);
static SET_ASIDE: AtomicU64 = AtomicU64::new(0);
static TCS_RESET: AtomicU64 = AtomicU64::new(0);
static DEGRADED: AtomicU64 = AtomicU64::new(0);

/// What the fork handlers did in this process (a child inherits its parent's counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkStats {
    /// Whether the handlers are registered (the default domain was built).
    pub installed: bool,
    /// Prepare handler runs (forks).
    pub prepares: u64,
    /// Child handler runs.
    pub children: u64,
    /// Slabs of vanished threads given back to their node parts in a child.
    pub slabs_reclaimed: u64,
    /// Slabs of vanished threads caught in the middle of an operation: taken off every list and
    /// left alone (their memory is not reused; frees into them are still accepted).
    pub slabs_set_aside: u64,
    /// Thread caches of vanished threads reset in a child.
    pub thread_caches_reset: u64,
    /// Forks where the part-lock guard table could not be allocated (part locks not taken).
    pub degraded: u64,
}

/// The fork handlers' counters.
///
/// ```
/// let s = hotslab::fork_stats();
/// assert!(s.children <= s.prepares);
/// ```
pub fn fork_stats() -> ForkStats {
    ForkStats {
        installed: INSTALLED.load(StdOrdering::Acquire),
        prepares: PREPARES.load(StdOrdering::Relaxed),
        children: CHILDREN.load(StdOrdering::Relaxed),
        slabs_reclaimed: RECLAIMED.load(StdOrdering::Relaxed),
        slabs_set_aside: SET_ASIDE.load(StdOrdering::Relaxed),
        thread_caches_reset: TCS_RESET.load(StdOrdering::Relaxed),
        degraded: DEGRADED.load(StdOrdering::Relaxed),
    }
}

/// Registers the handlers (once per process). Called when the default domain has been built, and
/// earlier by [`install_fork_handlers`] (libhotslab.so's constructor).
pub(crate) fn install() {
    if cfg!(miri) || INSTALLED.swap(true, StdOrdering::AcqRel) {
        return;
    }
    // SAFETY: the handlers are extern "C" functions that never unwind. glibc keeps the first 48
    // registrations in static storage (a later one may call malloc, which is hotslab's and works
    // by now: the default domain is built).
    let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    if rc != 0 {
        INSTALLED.store(false, StdOrdering::Release);
        say(b"hotslab: pthread_atfork failed; fork() in a threaded program is not safe\n");
    }
}

/// Registers hotslab's `fork()` handlers now (once per process; later calls do nothing), instead
/// of when the default domain is built. A C library calls this from its constructor, so that the
/// handlers exist before any thread can fork in the middle of building the default domain, and
/// so that they are registered before (hence run after, in prepare) those of libraries loaded
/// later. Never allocates once glibc's static atfork storage suffices.
///
/// ```
/// hotslab::install_fork_handlers();
/// assert!(hotslab::fork_stats().installed);
/// ```
pub fn install_fork_handlers() {
    install();
}

fn say(msg: &[u8]) {
    // SAFETY: writes a static buffer to stderr.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

/// Extends a guard's lifetime to `'static`.
///
/// # Safety
/// The guarded object outlives the guard: domains cannot be dropped while the registry of
/// domains is locked (their `Drop` unregisters first), and every guard is dropped by the parent
/// or child handler before that lock is released.
unsafe fn forever<'a, T: 'static>(g: MutexGuard<'a, T>) -> MutexGuard<'static, T> {
    // SAFETY: same type, longer lifetime (caller contract).
    unsafe { core::mem::transmute::<MutexGuard<'a, T>, MutexGuard<'static, T>>(g) }
}

/// Calls `f` on every part of every cache of the held registries, in one fixed order (prepare
/// and the child walk the parts in the same order, so guard `k` belongs to the `k`-th part).
fn for_each_part(h: &Held, mut f: impl FnMut(&CacheInner, &NodePart)) {
    for reg in h.regs[..h.ndoms].iter().flatten() {
        SlabDomain::for_each_cache(reg, |c| {
            for i in 0..c.nr_node_ids {
                let p = c.part(NodeId::new(i as u16));
                if !p.is_null() {
                    // SAFETY: parts live as long as their cache, and caches as long as the domain.
                    f(c, unsafe { &*p });
                }
            }
        });
    }
}

unsafe extern "C" fn prepare() {
    PREPARES.fetch_add(1, StdOrdering::Relaxed);
    // SAFETY: only the forking thread gets here (see Held); nothing else borrows HELD.
    let h = unsafe { &mut *HELD.0.get() };
    let list = registry_of_domains::lock_for_fork();
    h.ndoms = 0;
    h.nhps = 0;
    for &d in list.domains() {
        if h.ndoms < MAX_DOMAINS {
            h.doms[h.ndoms] = d as *const SlabDomain;
            h.ndoms += 1;
        }
    }
    h.list = Some(list);
    // Online-mems write side of each distinct hotplug domain: no create, destroy, shrink or
    // hotplug operation is in flight at the fork, and the node masks cannot change.
    for di in 0..h.ndoms {
        // SAFETY: registered domains stay alive while the list is locked (see `forever`).
        let hp = unsafe { (*h.doms[di]).hotplug() } as *const HotplugDomain;
        if h.hps[..h.nhps].contains(&hp) {
            continue;
        }
        // SAFETY: the hotplug domain lives as long as the slab domain that holds it.
        let w = unsafe { (*hp).lock.write() };
        // SAFETY: as above; the guard is dropped before the list lock is released.
        h.writers[h.nhps] =
            Some(unsafe { core::mem::transmute::<WriteGuard<'_>, WriteGuard<'static>>(w) });
        h.hps[h.nhps] = hp;
        h.nhps += 1;
    }
    for di in 0..h.ndoms {
        // SAFETY: see `forever`.
        h.regs[di] = Some(unsafe { forever((*h.doms[di]).registry()) });
    }
    // Every part's list lock. The guard table lives in metadata memory (taken and released
    // here, before the metadata lock itself is taken).
    let mut count = 0usize;
    for_each_part(h, |_, _| count += 1);
    h.nparts = 0;
    h.parts_cap = 0;
    h.parts = ptr::null_mut();
    if count > 0 {
        match core::alloc::Layout::array::<PartGuard>(count) {
            Ok(layout) => h.parts = meta_alloc(layout).cast::<PartGuard>(),
            Err(_) => h.parts = ptr::null_mut(),
        }
        if h.parts.is_null() {
            DEGRADED.fetch_add(1, StdOrdering::Relaxed);
            say(b"hotslab: fork: no memory for the part-lock table; part locks not taken\n");
        } else {
            h.parts_cap = count;
            let (parts, cap) = (h.parts, h.parts_cap);
            let mut n = 0usize;
            for_each_part(h, |_, part| {
                if n < cap {
                    // SAFETY: slot n of the table is in bounds and uninitialised; the part
                    // outlives the guard (see `forever`).
                    unsafe { parts.add(n).write(forever(part.lock())) };
                    n += 1;
                }
            });
            h.nparts = n;
        }
    }
    // Leaves: the node-state masks (read by allocations) and each domain's `self_weak`.
    for hi in 0..h.nhps {
        // SAFETY: see `forever`.
        h.masks[hi] = Some(unsafe { forever((*h.hps[hi]).states.lock_for_fork()) });
    }
    for di in 0..h.ndoms {
        // SAFETY: see `forever`.
        let d = unsafe { &*h.doms[di] };
        let g = d.self_weak.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: see `forever` (outside loom the crate's guard is std's).
        h.weaks[di] = Some(unsafe { forever(g) });
    }
    for di in 0..h.ndoms {
        // SAFETY: see `forever`.
        let d = unsafe { &*h.doms[di] };
        for i in 0..d.nr_node_ids() {
            if let Some(a) = d.arena(NodeId::new(i as u16)) {
                a.lock_for_fork();
            }
        }
    }
    h.arenas = true;
    crate::kmalloc::LARGE.lock_for_fork();
    heap::lock_heaps_for_fork();
    meta_lock_for_fork();
    h.large_and_meta = true;
}

/// Releases the leaf locks: metadata, large tier, arenas, `self_weak`, masks.
///
/// # Safety
/// Called by the forking thread after `prepare`, once.
unsafe fn release_leaves(h: &mut Held) {
    if h.large_and_meta {
        // SAFETY: prepare took both on this thread (in the child: on the thread that forked).
        unsafe {
            meta_unlock_after_fork();
            heap::unlock_heaps_after_fork();
            crate::kmalloc::LARGE.unlock_after_fork();
        }
        h.large_and_meta = false;
    }
    if h.arenas {
        for di in 0..h.ndoms {
            // SAFETY: the domain is alive (list still locked).
            let d = unsafe { &*h.doms[di] };
            for i in 0..d.nr_node_ids() {
                if let Some(a) = d.arena(NodeId::new(i as u16)) {
                    // SAFETY: prepare took this arena's lock on this thread.
                    unsafe { a.unlock_after_fork() };
                }
            }
        }
        h.arenas = false;
    }
    for w in h.weaks[..h.ndoms].iter_mut() {
        drop(w.take());
    }
    for m in h.masks[..h.nhps].iter_mut() {
        drop(m.take());
    }
}

/// Releases the part locks, the registries, the write sides and the list, in reverse order.
///
/// # Safety
/// Called by the forking thread after `prepare` and `release_leaves`, once.
unsafe fn release_rest(h: &mut Held) {
    while h.nparts > 0 {
        h.nparts -= 1;
        // SAFETY: guard `nparts` was written by prepare and is dropped exactly once here.
        unsafe { ptr::drop_in_place(h.parts.add(h.nparts)) };
    }
    if !h.parts.is_null() {
        if let Ok(layout) = core::alloc::Layout::array::<PartGuard>(h.parts_cap) {
            // SAFETY: the table came from meta_alloc with this layout; its guards are gone and
            // the metadata lock is free again.
            unsafe { meta_free(h.parts.cast(), layout) };
        }
        h.parts = ptr::null_mut();
        h.parts_cap = 0;
    }
    for r in h.regs[..h.ndoms].iter_mut().rev() {
        drop(r.take());
    }
    for w in h.writers[..h.nhps].iter_mut().rev() {
        drop(w.take());
    }
    h.ndoms = 0;
    h.nhps = 0;
    drop(h.list.take());
}

unsafe extern "C" fn parent() {
    // SAFETY: only the forking thread gets here, after prepare.
    let h = unsafe { &mut *HELD.0.get() };
    // SAFETY: as above.
    unsafe {
        release_leaves(h);
        release_rest(h);
    }
}

unsafe extern "C" fn child() {
    CHILDREN.fetch_add(1, StdOrdering::Relaxed);
    crate::background::after_fork_child();
    crate::follow::after_fork_child();
    crate::publish::after_fork_child();
    // SAFETY: the child's only thread is the one that forked, after prepare.
    let h = unsafe { &mut *HELD.0.get() };
    // SAFETY: as above. The leaves go first: giving slabs back may take them.
    unsafe { release_leaves(h) };
    let me = heap::caller_heap();
    let (parts, nparts) = (h.parts, h.nparts);
    let mut k = 0usize;
    for_each_part(h, |c, part| {
        if k < nparts {
            // SAFETY: guard k locks this part (same walk order as prepare); nothing else
            // borrows it in the single-threaded child.
            let lists: &mut PartLists = unsafe { &mut *parts.add(k) };
            // SAFETY: the lists are locked by us and the child has no other thread.
            unsafe { reclaim_orphans(c, part, lists, me) };
            k += 1;
        }
    });
    for reg in h.regs[..h.ndoms].iter().flatten() {
        SlabDomain::for_each_cache(reg, |c| {
            for tc in c.thread_caches() {
                if tc.heap != me.cast_const() {
                    // SAFETY: the thread that used this thread cache does not exist in the child.
                    unsafe { heap::forget_after_fork(tc) };
                    TCS_RESET.fetch_add(1, StdOrdering::Relaxed);
                }
            }
        });
    }
    heap::for_each_heap(|hp| {
        if !ptr::eq(hp, me) {
            // SAFETY: single-threaded child; hp's thread is gone.
            unsafe { heap::reset_after_fork(hp) };
        }
    });
    heap::lock_heaps_for_fork();
    // SAFETY: single-threaded child; we hold the registry lock.
    unsafe {
        heap::keep_heap_after_fork(me);
        heap::unlock_heaps_after_fork();
    }
    // SAFETY: as above.
    unsafe { release_rest(h) };
}

/// Fork child: every slab on `part`'s owned list not owned by the forking thread's heap belonged
/// to a thread that no longer exists. A slab whose heap was idle at the fork is consistent: it
/// goes back to the part like any released slab. One whose heap was in the middle of an
/// operation may have a half-updated freelist: it is taken off every list and left alone (set
/// aside, never reused; frees into it land on its remote list).
///
/// # Safety
/// `lists` is `part`'s locked list set, `part` belongs to `c`; single-threaded child.
unsafe fn reclaim_orphans(c: &CacheInner, part: &NodePart, lists: &mut PartLists, me: *mut Heap) {
    loop {
        let Some(s) = lists
            .owned
            .iter()
            // SAFETY: list members are valid slabs of this part; the lists are locked.
            .find(|&s| unsafe { (*s).owner.load(Ordering::Relaxed) } != me as usize)
        else {
            return;
        };
        // SAFETY: as above.
        let slab = unsafe { &*s };
        let owner = slab.owner.load(Ordering::Acquire) as *const Heap;
        // SAFETY: owner words hold heap addresses; heaps are never freed.
        let idle = !owner.is_null() && heap::idle_at_fork(unsafe { &*owner });
        // SAFETY: s is on the owned list, which its `list` field names.
        unsafe { lists.take(s) };
        slab.owner.store(0, Ordering::Release);
        slab.tc.store(0, Ordering::Relaxed);
        slab.queue.set(crate::slab::HeapQueue::None);
        if idle {
            // SAFETY: nobody owns the slab now; we act as its owner under the list lock.
            unsafe { slab.collect_remote() };
            c.settle(part, lists, s);
            RECLAIMED.fetch_add(1, StdOrdering::Relaxed);
        } else {
            SET_ASIDE.fetch_add(1, StdOrdering::Relaxed);
        }
    }
}
