//! The process-wide default domain (in static memory, built on first use without allocating)
//! and `SlabAlloc`, the `GlobalAlloc` over it. A re-entrancy guard with a small static arena
//! serves any allocation that arrives while the domain is being built. Nothing here calls code
//! that allocates: topology comes from the no-alloc sysfs reader, never hwloc or libnuma.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicUsize, Ordering};

use hotslab_hotplug::{HotplugDomain, LockKind, NodeStateSnapshot};
use hotslab_numa::Topology;

use crate::domain::{DomainConfig, SlabDomain};
use crate::kmalloc::{kfree_any, FreeError};

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
/// Thread id of the builder (to tell recursion from a concurrent first use).
static BUILDER: AtomicUsize = AtomicUsize::new(0);
/// Process id of the builder, claimed (0 → pid) before `STATE` leaves `UNINIT`. A fork child
/// that finds another pid here has no builder: the thread that was building the domain exists
/// only in the parent, so the child takes the build over (see `init_slow`).
static CLAIM: AtomicI32 = AtomicI32::new(0);
/// Set once `finish_static` succeeded: the domain is complete and registered (the fork handlers
/// see it), only the last steps of `build` remain.
static FINISHED: AtomicBool = AtomicBool::new(false);

struct Slot<T>(UnsafeCell<MaybeUninit<T>>);
// SAFETY: written once by the builder before STATE becomes READY (Release), read after an
// Acquire load of READY.
unsafe impl<T> Sync for Slot<T> {}

static TOPOLOGY: Slot<Topology> = Slot(UnsafeCell::new(MaybeUninit::uninit()));
static HOTPLUG: Slot<HotplugDomain> = Slot(UnsafeCell::new(MaybeUninit::uninit()));
static DOMAIN: Slot<SlabDomain> = Slot(UnsafeCell::new(MaybeUninit::uninit()));

/// The default domain's kmalloc caches, by class: the allocation fast path reads these directly
/// (null until the domain is built, which sends the first call down the slow path).
pub(crate) static KMALLOC: [AtomicPtr<crate::cache::CacheInner>; crate::kmalloc::NCLASSES] =
    [const { AtomicPtr::new(ptr::null_mut()) }; crate::kmalloc::NCLASSES];

/// Bootstrap arena for allocations made while the domain is being built (by this thread).
const BOOT_SIZE: usize = 64 * 1024;
#[repr(C, align(4096))]
struct Boot(UnsafeCell<[u8; BOOT_SIZE]>);
// SAFETY: handed out by an atomic bump pointer; each block is owned by its caller.
unsafe impl Sync for Boot {}
static BOOT: Boot = Boot(UnsafeCell::new([0; BOOT_SIZE]));
static BOOT_USED: AtomicUsize = AtomicUsize::new(0);
/// Allocations served from the bootstrap arena (re-entrant calls during initialisation).
pub static BOOT_ALLOCS: AtomicUsize = AtomicUsize::new(0);

/// The kernel thread id (the raw syscall: `libc::gettid` needs glibc 2.30).
pub(crate) fn gettid() -> usize {
    // SAFETY: the gettid syscall has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as usize }
}

fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions (glibc no longer caches it, so it is right after fork).
    unsafe { libc::getpid() }
}

/// The default domain, built on first use. `None` while this thread is building it (the caller
/// then uses the bootstrap arena) or if building failed.
#[inline(always)]
pub(crate) fn domain() -> Option<&'static SlabDomain> {
    if STATE.load(Ordering::Acquire) == READY {
        // SAFETY: READY is stored (Release) after DOMAIN was fully written and never changes.
        return Some(unsafe { (*DOMAIN.0.get()).assume_init_ref() });
    }
    init_slow()
}

#[cold]
fn init_slow() -> Option<&'static SlabDomain> {
    loop {
        let me = getpid();
        match CLAIM.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                BUILDER.store(gettid(), Ordering::Relaxed);
                STATE.store(BUSY, Ordering::Release);
                return run_build(false);
            }
            Err(owner) if owner != me => {
                // A fork child of a process whose domain was being built: the builder thread
                // does not exist here. Whatever it left is either the complete, registered
                // domain (`FINISHED`: the fork handlers made it consistent in this child) or
                // an unregistered, unreachable half: rebuild over it (its metadata leaks).
                // The fork handlers (installed from the library's constructor, before any
                // build) held every allocator lock at the fork, so none is held by the
                // vanished builder. Only one thread of the child takes it over.
                if STATE.load(Ordering::Acquire) == BUSY || STATE.load(Ordering::Acquire) == UNINIT
                {
                    if CLAIM
                        .compare_exchange(owner, me, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        BUILDER.store(gettid(), Ordering::Relaxed);
                        STATE.store(BUSY, Ordering::Release);
                        return run_build(FINISHED.load(Ordering::Acquire));
                    }
                    continue;
                }
            }
            Err(_) => {}
        }
        match STATE.load(Ordering::Acquire) {
            READY => return domain(),
            FAILED => return None,
            _ => {
                if BUILDER.load(Ordering::Relaxed) == gettid() {
                    return None; // recursion from inside build(): bootstrap arena
                }
                std::hint::spin_loop();
                std::thread::yield_now();
            }
        }
    }
}

/// Runs the build as the claimed builder and publishes the result.
fn run_build(finished: bool) -> Option<&'static SlabDomain> {
    let ok = if finished { build_tail() } else { build() };
    STATE.store(if ok { READY } else { FAILED }, Ordering::Release);
    if ok {
        domain()
    } else {
        None
    }
}

/// Test hook: `HOTSLAB_TEST_BUILD_PAUSE=early|late` makes the build sleep 300 ms at its start
/// (`early`) or after the domain is registered (`late`), so a test can fork while the default
/// domain is being built. Read with `getenv` (no allocation); never set in normal use.
fn test_pause(stage: &[u8]) {
    // SAFETY: a NUL-terminated name; glibc's getenv neither allocates nor locks.
    let v = unsafe { libc::getenv(c"HOTSLAB_TEST_BUILD_PAUSE".as_ptr()) };
    if v.is_null() {
        return;
    }
    // SAFETY: getenv returned a NUL-terminated string of the environment.
    if unsafe { core::ffi::CStr::from_ptr(v) }.to_bytes() != stage {
        return;
    }
    let mut left = libc::timespec {
        tv_sec: 0,
        tv_nsec: 300_000_000,
    };
    loop {
        let want = left;
        // SAFETY: both pointers are valid timespecs; an interrupted sleep leaves the rest in `left`.
        if unsafe { libc::nanosleep(&want, &mut left) } == 0 {
            return;
        }
    }
}

fn build() -> bool {
    test_pause(b"early");
    // SAFETY: only the builder (STATE == BUSY) writes these slots, exactly once (a fork child
    // that takes an unfinished build over writes them again: nothing reachable uses them).
    unsafe {
        let topo = (*TOPOLOGY.0.get()).as_mut_ptr();
        topo.write(Topology::single_node_fallback());
        crate::knobs::read();
        crate::knobs::topology_into(&mut *topo);
        let topo: &'static Topology = &*topo;
        let initial = initial_states(topo);
        (*HOTPLUG.0.get()).write(HotplugDomain::with_states(initial, LockKind::default()));
        let hp: &'static HotplugDomain = (*HOTPLUG.0.get()).assume_init_ref();
        let mut config = DomainConfig::default();
        crate::knobs::apply(&mut config);
        let Ok(d) = SlabDomain::build_static(topo, hp, config) else {
            return false;
        };
        (*DOMAIN.0.get()).write(d);
        let d: &'static SlabDomain = (*DOMAIN.0.get()).assume_init_ref();
        if d.finish_static().is_err() {
            return false;
        }
    }
    FINISHED.store(true, Ordering::Release);
    test_pause(b"late");
    build_tail()
}

/// The default domain's starting node masks: every node of the topology (every possible node)
/// is possible; parts are made only for the nodes that have memory now and that the process's
/// cpuset allows (`get_mempolicy(MPOL_F_MEMS_ALLOWED)`, a system call that allocates nothing;
/// no filter where the kernel has no NUMA policy). The hotplug follower (`follow.rs`) keeps the
/// masks in line with the kernel from then on.
fn initial_states(topo: &Topology) -> NodeStateSnapshot {
    let nodes = topo.nodes();
    let online = topo.online_nodes().intersection(&nodes);
    let mut has_memory = topo.memory_nodes().intersection(&nodes);
    // (Not for a simulated topology or a fake sysfs tree, whose nodes are not the kernel's, nor
    // under Miri, which has no get_mempolicy.)
    if !topo.is_simulated() && crate::knobs::sysfs_root().is_none() && !cfg!(miri) {
        if let Ok(allowed) = hotslab_numa::policy::mems_allowed() {
            let usable = has_memory.intersection(&allowed);
            if !usable.is_empty() {
                has_memory = usable;
            }
        }
    }
    if has_memory.is_empty() {
        // A tree without `has_memory` data (or a cpuset naming none of it): every online node.
        has_memory = if online.is_empty() { nodes } else { online };
    }
    NodeStateSnapshot {
        possible: nodes,
        online: online.union(&has_memory),
        has_memory,
        has_normal_memory: has_memory,
    }
}

/// The last steps of the build, once the domain is complete and registered.
fn build_tail() -> bool {
    // SAFETY: FINISHED is stored (Release, read with Acquire by whoever runs this) only after
    // DOMAIN was fully written by `build`.
    let d: &'static SlabDomain = unsafe { (*DOMAIN.0.get()).assume_init_ref() };
    for (slot, c) in KMALLOC.iter().zip(d.kmalloc.iter()) {
        slot.store(c.load(Ordering::Acquire), Ordering::Release);
    }
    #[cfg(not(loom))]
    crate::fork::install();
    crate::knobs::after_build(d);
    d.set_task_placement(true);
    true
}

fn boot_alloc(layout: Layout) -> *mut u8 {
    let align = layout.align().max(16);
    let base = BOOT.0.get() as usize;
    let mut cur = BOOT_USED.load(Ordering::Relaxed);
    loop {
        // Align the address, not the offset: the arena itself is only 4096-aligned.
        let Some(start) = (base + cur)
            .checked_add(align - 1)
            .map(|a| (a & !(align - 1)) - base)
        else {
            return ptr::null_mut();
        };
        let end = match start.checked_add(layout.size().max(1)) {
            Some(e) if e <= BOOT_SIZE => e,
            _ => return ptr::null_mut(),
        };
        match BOOT_USED.compare_exchange_weak(cur, end, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => {
                BOOT_ALLOCS.fetch_add(1, Ordering::Relaxed);
                // SAFETY: [start, end) is inside BOOT and handed out once.
                return unsafe { (BOOT.0.get() as *mut u8).add(start) };
            }
            Err(c) => cur = c,
        }
    }
}

fn in_boot(p: *mut u8) -> bool {
    let base = BOOT.0.get() as usize;
    (p as usize) >= base && (p as usize) < base + BOOT_SIZE
}

/// Whether `d` is the (built) default domain: one load and a pointer compare.
#[inline]
pub(crate) fn is_default(d: &SlabDomain) -> bool {
    STATE.load(Ordering::Acquire) == READY && ptr::eq(d, DOMAIN.0.get().cast::<SlabDomain>())
}

/// The process-wide default slab domain (built on first use).
pub fn default_domain() -> Option<&'static SlabDomain> {
    domain()
}

/// hotslab as the global allocator:
///
/// ```
/// #[global_allocator]
/// static A: hotslab::SlabAlloc = hotslab::SlabAlloc::new();
/// fn main() {
///     let v: Vec<u64> = (0..1000).collect();
///     assert_eq!(v.iter().sum::<u64>(), 499_500);
///     // The vector's 8000 bytes are a hotslab object of the default domain.
///     assert!(hotslab::usable_size(v.as_ptr() as *mut u8).unwrap() >= 8000);
///     // Threads get their own heaps; an object freed by another thread goes back to its slab.
///     let s = String::from("from main");
///     std::thread::spawn(move || drop(s)).join().unwrap();
/// }
/// ```
///
/// Every allocation is served by hotslab: small ones by the kmalloc caches of the default
/// domain, large ones by page spans. Failure gives null, never a panic.
pub struct SlabAlloc {
    _private: (),
}

impl SlabAlloc {
    /// The allocator (a unit value; all state is in the default domain).
    pub const fn new() -> SlabAlloc {
        SlabAlloc { _private: () }
    }
}

impl SlabAlloc {
    /// Switches debug mode for every kmalloc cache of the default domain (see
    /// [`KmemCache::set_debug`](crate::KmemCache::set_debug)): `DebugFlags::NONE` turns it off.
    /// No environment variable is read. False if the default domain could not be built.
    ///
    /// ```
    /// #[global_allocator]
    /// static A: hotslab::SlabAlloc = hotslab::SlabAlloc::new();
    /// fn main() {
    ///     assert!(A.set_debug(hotslab::DebugFlags::ALL));
    ///     assert_eq!(A.debug_flags(), hotslab::DebugFlags::ALL);
    ///     let v = vec![1u8; 40]; // red zones, poison, hardened freelist from here on
    ///     drop(v);
    ///     A.set_debug(hotslab::DebugFlags::NONE);
    /// }
    /// ```
    pub fn set_debug(&self, flags: crate::DebugFlags) -> bool {
        match domain() {
            Some(d) => {
                d.set_kmalloc_debug(flags);
                true
            }
            None => false,
        }
    }

    /// The debug flags of the default domain's kmalloc caches.
    pub fn debug_flags(&self) -> crate::DebugFlags {
        domain().map_or(crate::DebugFlags::NONE, |d| d.kmalloc_debug())
    }
}

impl SlabAlloc {
    /// C `free`: like `dealloc`, but checks what a C caller may get wrong: a pointer hotslab
    /// never handed out, a pointer into the middle of an object, an object slot never handed
    /// out, and the cheap double-free cases. Each is reported (cache, object, what) and aborts.
    ///
    /// # Safety
    /// `p` is non-null and not used after this call.
    #[inline]
    pub unsafe fn free_checked(&self, p: *mut u8) {
        if let crate::kmalloc::Owner::Slab(s) = crate::kmalloc::owner_of(p) {
            if s.dbg.flags == 0 && s.is_carved_object(p) {
                // SAFETY: p is a carved object start of a registered slab; the caller hands it
                // back (the double-free checks run inside).
                unsafe { crate::heap::free(s, p) };
                return;
            }
        }
        // SAFETY: forwarded contract.
        unsafe { dealloc_slow(p) }
    }
}

impl SlabAlloc {
    /// C `malloc` fast path: a block of at least `size` bytes (16-byte aligned above 8 bytes)
    /// popped from the calling thread's heap without a lock, a syscall or a call, or null when
    /// the caller must take the full path (first use, large size, empty slab).
    #[inline(always)]
    pub fn malloc_fast(&self, size: usize) -> *mut u8 {
        if size <= crate::kmalloc::C_SMALL_MAX {
            crate::heap::kmalloc_fast_word(crate::kmalloc::c_word(size))
        } else if size <= crate::kmalloc::KMALLOC_MAX {
            // Above 1 KiB every class size is a multiple of 128, so the plain class is 16-byte
            // aligned; it is computed (a bit scan), not looked up.
            crate::heap::kmalloc_fast(crate::kmalloc::class_above_small(size))
        } else {
            ptr::null_mut()
        }
    }

    /// C `free` fast path: a carved object of a slab the calling thread's heap owns goes onto
    /// the slab's local list (with the cheap double-free checks); a carved object of any other
    /// slab goes to `free_not_local` (one tail call: the cross-thread free, without looking the
    /// pointer up again). False when nothing was done and the caller must take the full path
    /// ([`SlabAlloc::free_checked`]). `errno` is left as the caller had it.
    ///
    /// # Safety
    /// `p` is null (false) or, if hotslab handed it out, not used after this call.
    #[inline(always)]
    pub unsafe fn free_fast(&self, p: *mut u8) -> bool {
        if let crate::kmalloc::Owner::Slab(s) = crate::kmalloc::owner_of_flat(p) {
            if s.is_carved_object(p) {
                // SAFETY: p is a carved object start of a registered slab, handed back.
                if !unsafe { crate::heap::free_local(s, p) } {
                    // SAFETY: as above; free_local did nothing.
                    unsafe { free_not_local(s, p) };
                }
                return true;
            }
        }
        false
    }
}

impl SlabAlloc {
    /// C `realloc` fast path for a slab object: in place when the new size still fits its slot
    /// (and would not fit a class half as big), else a new block from the fast path, a copy, and
    /// the old block freed. Null when nothing was done and the caller must take the full path
    /// (large objects, debug slabs, a bad pointer, an empty slab, sizes above the largest class). `errno` is
    /// left alone.
    ///
    /// # Safety
    /// `p` is non-null and, if hotslab handed it out, live and not used again if the result is a
    /// different non-null pointer.
    #[inline]
    pub unsafe fn realloc_fast(&self, p: *mut u8, size: usize) -> *mut u8 {
        let crate::kmalloc::Owner::Slab(s) = crate::kmalloc::owner_of_flat(p) else {
            return ptr::null_mut();
        };
        // A debug slab is never owned by a heap, so a slab the caller's heap owns needs no look
        // at `dbg` (the descriptor's third cache line, a miss per realloc where descriptors are
        // cold: 14 % of `hs_realloc`'s samples in the realloc workload). The owner word is on the
        // first line, which the free below reads anyway; a revoker may change it meanwhile, but
        // never makes a debug slab owned, so "owned now or a moment ago" still means "not debug".
        let owned =
            s.owner.load(core::sync::atomic::Ordering::Relaxed) == crate::tls::get() as usize;
        if (!owned && s.dbg.flags != 0) || !s.is_carved_object(p) {
            return ptr::null_mut();
        }
        let usable = s.stride as usize;
        if size <= usable && size * 2 >= usable {
            return p;
        }
        let q = self.malloc_fast(size);
        if q.is_null() {
            return q;
        }
        // SAFETY: p is live with `usable` bytes, q fresh with at least `size`; distinct blocks.
        unsafe { ptr::copy_nonoverlapping(p, q, usable.min(size)) };
        // SAFETY: p is a carved object of s, handed back; a remote free may give memory back
        // (a system call), so errno is kept around it.
        unsafe {
            if !crate::heap::free_local(s, p) {
                let _e = crate::mem::KeepErrno::new();
                crate::heap::free(s, p);
            }
        }
        q
    }
}

impl Default for SlabAlloc {
    fn default() -> Self {
        Self::new()
    }
}

/// First use (builds the domain), bootstrap, and large objects.
#[cold]
fn alloc_slow(layout: Layout) -> *mut u8 {
    match domain() {
        Some(d) => {
            let p = d.kmalloc_layout(layout.size(), layout.align(), None);
            crate::background::maybe_start(d);
            crate::follow::poll();
            p
        }
        None => boot_alloc(layout),
    }
}

/// The C free of a carved object of slab `s` that the caller's heap does not own (another
/// thread's, a resting one, or the caller's own while a revoker holds its heap): a cross-thread
/// free, or the full path for a debug slab. `errno` is kept (giving memory back may make a
/// system call). `extern "C"`, so the fast path reaches it by a tail jump.
///
/// # Safety
/// `p` is a carved object start of `s`, handed back and not used afterwards.
#[cold]
#[inline(never)]
unsafe extern "C" fn free_not_local(s: &crate::slab::Slab, p: *mut u8) {
    let _e = crate::mem::KeepErrno::new();
    if s.dbg.flags != 0 {
        // Debug slabs check their own objects (red zones, poison) on the full path.
        // SAFETY: forwarded.
        return unsafe { dealloc_slow(p) };
    }
    // SAFETY: forwarded: a carved object start of a registered, non-debug slab; the local free
    // was tried already, and the cross-thread list is right for any slab (its owner, or a
    // revoker holding the caller's heap, collects it).
    unsafe { s.push_remote(p) }
}

/// Large objects, bootstrap blocks, and bad pointers.
#[cold]
unsafe fn dealloc_slow(p: *mut u8) {
    if in_boot(p) {
        return; // the bootstrap arena is never reused
    }
    let pages = match domain() {
        Some(d) => d.page_source(),
        None => return,
    };
    // SAFETY: the GlobalAlloc contract: p is live and ours.
    if let Err(e) = unsafe { kfree_any(pages, p) } {
        bad_free(p, e);
    }
}

#[cold]
fn bad_free(p: *mut u8, why: FreeError) -> ! {
    let what = match why {
        _ if crate::trim::large_object_containing(p).is_some() => {
            "free of an interior pointer into a large object"
        }
        FreeError::Foreign => {
            "free of a pointer hotslab never handed out, or one it took back already (a double free)"
        }
        FreeError::Interior => "free of a pointer into the middle of an object",
        FreeError::Uncarved => "free of an object slot that was never handed out",
    };
    let cache = match crate::kmalloc::owner_of(p) {
        // SAFETY: slab descriptors name live cache metadata.
        crate::kmalloc::Owner::Slab(s) => Some(unsafe { (*s.cache).name }),
        _ => None,
    };
    crate::debug::report(cache, p as usize, format_args!("{what}"))
}

// SAFETY: alloc returns null or a block valid for `layout` (size and alignment are honoured by the
// class choice or the large tier); dealloc/realloc accept exactly what alloc returned.
unsafe impl GlobalAlloc for SlabAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(c) = crate::kmalloc::class_for(layout.size(), layout.align()) {
            let p = crate::heap::kmalloc_fast(c);
            if !p.is_null() {
                return p;
            }
            let p = crate::heap::kmalloc_slow(c);
            if !p.is_null() {
                crate::background::poll();
                crate::follow::poll();
                return p;
            }
        }
        alloc_slow(layout)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { self.alloc(layout) };
        if !p.is_null() && !in_boot(p) {
            let zero = match crate::kmalloc::owner_of(p) {
                crate::kmalloc::Owner::Slab(_) => true,
                // Large spans are fresh or decommitted (zero already), unless reused committed.
                // SAFETY: p is a live large object we just allocated.
                crate::kmalloc::Owner::Large => unsafe { crate::kmalloc::LARGE.needs_zeroing(p) },
                crate::kmalloc::Owner::Foreign => false,
            };
            if zero {
                // SAFETY: p is valid for layout.size() bytes.
                unsafe { ptr::write_bytes(p, 0, layout.size()) };
            }
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        // Fast path: a slab object (the page map answers without touching p's memory). The
        // GlobalAlloc contract says p is a live block we handed out, so it is an object start
        // (debug slabs check their own objects on the way).
        if let crate::kmalloc::Owner::Slab(s) = crate::kmalloc::owner_of_flat(p) {
            // SAFETY: p is a live object of a registered slab, handed back to us. Cache
            // metadata outlives its slabs.
            unsafe { crate::heap::free(s, p) };
            return;
        }
        // SAFETY: forwarded contract.
        unsafe { dealloc_slow(p) }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if in_boot(p) {
            // SAFETY: the new layout is valid per the GlobalAlloc contract.
            let q =
                unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) };
            if !q.is_null() {
                // SAFETY: both blocks are valid for the copied length.
                unsafe { ptr::copy_nonoverlapping(p, q, layout.size().min(new_size)) };
            }
            return q;
        }
        match domain() {
            // SAFETY: p is live and ours (GlobalAlloc contract).
            Some(d) => unsafe { d.krealloc_layout(p, layout.align(), new_size) },
            None => ptr::null_mut(),
        }
    }
}
