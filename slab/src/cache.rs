//! `KmemCache`: an object cache — its configuration and layout, its per-node parts, its
//! per-thread caches, slab creation and settling, and the public handle with alloc / free /
//! shrink / destroy. Create, destroy and shrink are coordinated by the domain (`domain.rs`),
//! which owns the registry and the locking mode; this file never takes `slab_mutex` itself.

use core::alloc::Layout;
use core::fmt;
use core::ptr::{self, NonNull};

use hotslab_numa::NodeId;

use crate::debug::{self, DebugFlags};
use crate::domain::{DomainRef, SlabDomain};
use crate::heap::{self as thread, TcTable};
use crate::mem::{self, meta_alloc, meta_free, pagemap};
use crate::node::{NodePart, PartLists, PartState};
use crate::slab::{geometry, ListKind, Slab, SlabGeometry, SlotDebug};
use crate::sync::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Bytes of empty slabs a live part may keep for reuse when its domain gives memory back at
/// once (purge delay 0; see `CacheInner::keep_empty`).
pub const EMPTY_BUDGET: usize = 2 << 20;
/// Bytes of empty slabs a live part keeps at most while they wait for the purge delay (the
/// process-wide budget, `sweep::within_delayed_budget`, is the tighter bound: a cap per part only
/// stops one cache from taking all of it; at 64 MiB, one pipeline's swing of 40 KiB objects
/// overflowed it and faulted its pages back in moments later).
pub const EMPTY_CAP: usize = 256 << 20;
/// Bytes of empty slabs all parts of the process keep while they wait for the purge delay
/// (beyond it, and beyond `min_partial` per part, an emptied slab is given back at once): an
/// idle program holds at most this much committed memory it does not use.
pub const DELAYED_EMPTY_BUDGET: usize = 32 << 20;

/// Largest object a cache may hold (objects above it belong to the large-object tier).
pub const MAX_OBJECT_SIZE: usize = 256 * 1024;
/// Largest alignment a cache supports.
pub const MAX_ALIGN: usize = 4096;
/// Cache line size used by [`CacheFlags::HWCACHE_ALIGN`].
pub const CACHE_LINE: usize = 64;

/// Cache creation flags (a subset of SLAB_* flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheFlags(u32);

impl CacheFlags {
    /// No flags.
    pub const NONE: CacheFlags = CacheFlags(0);
    /// Align objects to the hardware cache line (halved while the object fits in half a line,
    /// as SLUB does).
    pub const HWCACHE_ALIGN: CacheFlags = CacheFlags(1);
    /// Debug mode from the start, with every check ([`DebugFlags::ALL`]); see
    /// [`KmemCache::set_debug`] to switch it at run time.
    pub const DEBUG: CacheFlags = CacheFlags(2);

    /// Whether all flags of `other` are set.
    pub fn contains(self, other: CacheFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for CacheFlags {
    type Output = CacheFlags;
    fn bitor(self, o: CacheFlags) -> CacheFlags {
        CacheFlags(self.0 | o.0)
    }
}

/// What a new cache looks like.
#[derive(Clone, Copy, Debug)]
pub struct CacheConfig {
    /// Name shown in slabinfo and in error reports (truncated to 31 bytes).
    pub name: &'static str,
    /// Object size in bytes (at least 1).
    pub size: usize,
    /// Minimum alignment (a power of two, at most [`MAX_ALIGN`]); 0 means 8.
    pub align: usize,
    /// Flags.
    pub flags: CacheFlags,
    /// Constructor, run once per object when its slab is set up (not per allocation): freed
    /// objects must be returned in their constructed state.
    pub ctor: Option<fn(*mut u8)>,
}

impl CacheConfig {
    /// A cache of `size`-byte objects, 8-byte aligned, no flags, no constructor.
    pub fn new(name: &'static str, size: usize) -> CacheConfig {
        CacheConfig {
            name,
            size,
            align: 0,
            flags: CacheFlags::NONE,
            ctor: None,
        }
    }

    /// Sets the alignment.
    pub fn align(mut self, align: usize) -> CacheConfig {
        self.align = align;
        self
    }

    /// Sets the flags.
    pub fn flags(mut self, flags: CacheFlags) -> CacheConfig {
        self.flags = flags;
        self
    }

    /// Sets the constructor.
    pub fn ctor(mut self, ctor: fn(*mut u8)) -> CacheConfig {
        self.ctor = Some(ctor);
        self
    }
}

/// Errors at the cache API edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheError {
    /// Size 0, or larger than [`MAX_OBJECT_SIZE`].
    InvalidSize(usize),
    /// Alignment not a power of two, or above [`MAX_ALIGN`].
    InvalidAlign(usize),
    /// The handle's cache was destroyed.
    Destroyed,
    /// Out of memory (metadata or pages).
    NoMemory,
    /// The pointer does not belong to this cache (or to hotslab at all).
    ForeignPointer(usize),
    /// The pointer is inside an object of this cache but not its start.
    InteriorPointer(usize),
    /// The node is not part of the domain's topology.
    UnknownNode(u16),
    /// The calling thread's cpuset does not allow the node (`mems_allowed`; `mbind` there
    /// would fail with `EINVAL`). Only domains with task placement check
    /// ([`SlabDomain::set_task_placement`](crate::SlabDomain::set_task_placement)).
    NodeNotAllowed(u16),
    /// Destroy found live objects: the cache is kept (leaked on purpose), not freed.
    LiveObjects {
        /// Cache name.
        name: &'static str,
        /// Objects still allocated.
        count: usize,
    },
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheError::InvalidSize(s) => write!(f, "invalid object size {s}"),
            CacheError::InvalidAlign(a) => write!(f, "invalid alignment {a}"),
            CacheError::Destroyed => write!(f, "cache was destroyed"),
            CacheError::NoMemory => write!(f, "out of memory"),
            CacheError::ForeignPointer(p) => {
                write!(f, "pointer {p:#x} was not allocated by this cache")
            }
            CacheError::InteriorPointer(p) => {
                write!(f, "pointer {p:#x} is not the start of an object")
            }
            CacheError::UnknownNode(n) => write!(f, "node {n} is not in the topology"),
            CacheError::NodeNotAllowed(n) => {
                write!(f, "node {n} is not in this thread's cpuset (mems_allowed)")
            }
            CacheError::LiveObjects { name, count } => {
                write!(
                    f,
                    "kmem_cache_destroy {name}: {count} objects still allocated; cache kept"
                )
            }
        }
    }
}

impl std::error::Error for CacheError {}

/// Per-cache statistics (exact at a quiescent point: no alloc or free in flight).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Allocations served.
    pub allocs: u64,
    /// Frees accepted.
    pub frees: u64,
    /// Objects allocated and not freed (counted from the slabs).
    pub active_objects: usize,
    /// Object slots in all slabs.
    pub total_objects: usize,
    /// Slabs in all parts.
    pub slabs: usize,
    /// Object size as configured.
    pub object_size: usize,
    /// Slot size (object plus alignment padding and free pointer, if any).
    pub stride: usize,
    /// Object alignment.
    pub align: usize,
    /// Objects per slab.
    pub objs_per_slab: usize,
    /// Pages (4 KiB) per slab.
    pub pages_per_slab: usize,
}

/// The cache itself, in metadata memory. Never freed while its domain lives: a destroyed cache's
/// memory is reused by a later create (the generation tells handles apart).
pub(crate) struct CacheInner {
    pub name: &'static str,
    pub domain: *const SlabDomain,
    pub generation: AtomicU64,
    /// Interleave cursor: where this cache's next slab goes under an interleave policy (any
    /// thread's), so a class's slabs alternate over the nodes whichever threads make them.
    pub interleave: std::sync::atomic::AtomicUsize,
    pub dead: AtomicBool,
    pub size: usize,
    pub align: usize,
    pub stride: usize,
    pub freeptr_off: usize,
    pub geo: SlabGeometry,
    pub ctor: Option<fn(*mut u8)>,
    pub min_partial: usize,
    /// One part pointer per node id (`nr_node_ids` entries).
    pub nodes: *const AtomicPtr<NodePart>,
    pub nr_node_ids: usize,
    /// Heap id → thread cache.
    pub tcs: *const TcTable,
    /// Registry links (under `slab_mutex`).
    pub next: core::cell::Cell<*mut CacheInner>,
    pub prev: core::cell::Cell<*mut CacheInner>,
    /// `DebugFlags` bits new slabs get (0: debug mode off). Read on slow paths only.
    pub debug: AtomicUsize,
    /// Per-cache secret of the hardened freelist of debug slabs.
    pub secret: usize,
}

// SAFETY: the raw pointers name metadata that lives as long as the domain; the Cells are only
// touched under slab_mutex.
unsafe impl Send for CacheInner {}
// SAFETY: see Send.
unsafe impl Sync for CacheInner {}

/// Computes (stride, freeptr offset, alignment) for a configuration.
pub(crate) fn layout_for(cfg: &CacheConfig) -> Result<(usize, usize, usize), CacheError> {
    if cfg.size == 0 || cfg.size > MAX_OBJECT_SIZE {
        return Err(CacheError::InvalidSize(cfg.size));
    }
    let mut align = if cfg.align == 0 { 8 } else { cfg.align };
    if !align.is_power_of_two() || align > MAX_ALIGN {
        return Err(CacheError::InvalidAlign(cfg.align));
    }
    align = align.max(8);
    if cfg.flags.contains(CacheFlags::HWCACHE_ALIGN) {
        let mut line = CACHE_LINE;
        while cfg.size <= line / 2 && line > 8 {
            line /= 2;
        }
        align = align.max(line);
    }
    let size8 = (cfg.size + 7) & !7;
    // With a constructor the object must keep its constructed contents while free, so the free
    // pointer goes after the object (as SLUB does); otherwise it overlays the first word.
    let (raw, fp) = if cfg.ctor.is_some() {
        (size8 + 8, size8)
    } else {
        (size8, 0)
    };
    let stride = (raw + align - 1) & !(align - 1);
    Ok((stride, fp, align))
}

/// SLUB's min_partial: clamp(log2(size) / 2, 5, 10).
fn min_partial_for(size: usize) -> usize {
    let log2 = usize::BITS as usize - 1 - size.leading_zeros() as usize;
    (log2 / 2).clamp(5, 10)
}

impl CacheInner {
    /// Builds a cache in metadata memory (or reinitialises `reuse`). Parts are added by the caller.
    pub(crate) fn make(
        domain: &SlabDomain,
        cfg: &CacheConfig,
        reuse: *mut CacheInner,
    ) -> Result<*mut CacheInner, CacheError> {
        let (stride, freeptr_off, align) = layout_for(cfg)?;
        let geo = geometry(stride).ok_or(CacheError::InvalidSize(cfg.size))?;
        let nr = domain.nr_node_ids();
        let (p, nodes, tcs, gen) = if reuse.is_null() {
            let p = meta_alloc(Layout::new::<CacheInner>()).cast::<CacheInner>();
            let nodes = meta_alloc(
                Layout::array::<AtomicPtr<NodePart>>(nr).map_err(|_| CacheError::NoMemory)?,
            )
            .cast::<AtomicPtr<NodePart>>();
            let tcs = TcTable::make();
            if p.is_null() || nodes.is_null() || tcs.is_null() {
                return Err(CacheError::NoMemory);
            }
            // SAFETY: fresh, zeroed metadata array of the right length.
            unsafe {
                for i in 0..nr {
                    nodes.add(i).write(AtomicPtr::new(ptr::null_mut()));
                }
            }
            (p, nodes as *const _, tcs as *const _, 1)
        } else {
            // SAFETY: reuse is a dead cache of this domain, unlinked, with no slabs left.
            let old = unsafe { &*reuse };
            // The parts are kept for the new cache: the counters of slabs they freed start again
            // (the statistics of a cache count what it served, not what its predecessor did).
            for i in 0..old.nr_node_ids {
                // SAFETY: i < nr_node_ids.
                let p = unsafe { (*old.nodes.add(i)).load(Ordering::Acquire) };
                if !p.is_null() {
                    // SAFETY: parts live as long as the cache metadata.
                    unsafe { (*p).reset_gone() };
                }
            }
            (
                reuse,
                old.nodes,
                old.tcs,
                old.generation.load(Ordering::Relaxed) + 1,
            )
        };
        let inner = CacheInner {
            name: cfg.name,
            domain,
            generation: AtomicU64::new(gen),
            interleave: std::sync::atomic::AtomicUsize::new(0),
            dead: AtomicBool::new(false),
            size: cfg.size,
            align,
            stride,
            freeptr_off,
            geo,
            ctor: cfg.ctor,
            min_partial: min_partial_for(cfg.size),
            nodes,
            nr_node_ids: nr,
            tcs,
            next: core::cell::Cell::new(ptr::null_mut()),
            prev: core::cell::Cell::new(ptr::null_mut()),
            debug: AtomicUsize::new(if cfg.flags.contains(CacheFlags::DEBUG) {
                DebugFlags::ALL.bits() as usize
            } else {
                0
            }),
            secret: debug::new_secret(p as usize),
        };
        // SAFETY: p is valid for a CacheInner; a reused one is overwritten in place (its arrays
        // are kept; the old value has no Drop that matters beyond its mutex-free fields).
        unsafe { p.write(inner) };
        Ok(p)
    }

    #[inline(always)]
    pub fn domain(&self) -> &SlabDomain {
        // SAFETY: a cache never outlives its domain.
        unsafe { &*self.domain }
    }

    #[inline(always)]
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// The part slot for `nid` (None if the id is outside the table).
    #[inline]
    pub fn part_slot(&self, nid: NodeId) -> Option<&AtomicPtr<NodePart>> {
        if nid.index() >= self.nr_node_ids {
            return None;
        }
        // SAFETY: index checked against the array length.
        Some(unsafe { &*self.nodes.add(nid.index()) })
    }

    /// The part for `nid`, or null.
    #[inline]
    pub fn part(&self, nid: NodeId) -> *mut NodePart {
        self.part_slot(nid)
            .map_or(ptr::null_mut(), |s| s.load(Ordering::Acquire))
    }

    /// The part allocations may use on `nid`: it must exist and accept new slabs. A node the
    /// domain allocates from whose part is missing is the Legacy race's victim: it is counted.
    pub fn part_for_alloc(&self, nid: NodeId) -> Option<&NodePart> {
        let p = self.part(nid);
        if p.is_null() {
            if self.domain().node_allocatable(nid) {
                self.domain()
                    .violations
                    .missing_part
                    .fetch_add(1, Ordering::Relaxed);
            }
            return None;
        }
        // SAFETY: parts are never freed while their cache lives.
        let part = unsafe { &*p };
        if part.accepts_new_slabs() {
            Some(part)
        } else {
            crate::placement::part_refused();
            None
        }
    }

    /// Whether new allocations go to debug slabs (slow paths only).
    #[inline]
    pub fn debug_on(&self) -> bool {
        self.debug.load(Ordering::Relaxed) != 0
    }

    /// Sets the debug flags new slabs get. Turning debug mode on takes every heap's slabs of this
    /// cache back, so that the next allocation of every thread takes the slow path, which serves
    /// it from a debug slab.
    pub fn set_debug(&self, flags: DebugFlags) -> Result<(), CacheError> {
        // slab_mutex serialises with destroy (which revokes under it too).
        let _reg = self.domain().registry();
        if self.is_dead() {
            return Err(CacheError::Destroyed);
        }
        let old = self.debug.swap(flags.bits() as usize, Ordering::SeqCst);
        if old == 0 && !flags.is_empty() {
            for tc in self.thread_caches() {
                thread::revoke(self, tc);
            }
        }
        Ok(())
    }

    /// Makes a new slab on `part`'s node and puts it on the empty list. Called with the part's
    /// list lock held (the arena and metadata locks are leaves below it).
    pub fn new_slab(&self, part: &NodePart, lists: &mut PartLists) -> Option<*mut Slab> {
        self.new_slab_with(
            part,
            lists,
            self.stride,
            self.freeptr_off,
            self.geo,
            SlotDebug::default(),
        )
    }

    /// [`CacheInner::new_slab`] with an explicit slot layout (debug slabs have their own).
    pub fn new_slab_with(
        &self,
        part: &NodePart,
        lists: &mut PartLists,
        stride: usize,
        freeptr_off: usize,
        geo: SlabGeometry,
        dbg: SlotDebug,
    ) -> Option<*mut Slab> {
        let dom = self.domain();
        let nid = part.node;
        let base = dom.arena_alloc(nid, geo.units as usize)?;
        let desc = meta_alloc(Layout::new::<Slab>()).cast::<Slab>();
        if desc.is_null() {
            // SAFETY: base came from the arena with this many units and was never published.
            unsafe { dom.arena_free(nid, base, geo.units as usize) };
            return None;
        }
        let mut slab = Slab::new(
            base.as_ptr(),
            geo.units,
            geo.capacity,
            stride as u32,
            freeptr_off as u32,
            nid,
            self,
            part,
        );
        slab.dbg = dbg;
        // Whatever an earlier slab of this memory left poisoned for ASan is ours again.
        crate::asan::unpoison(base.as_ptr(), geo.units as usize * mem::UNIT);
        // SAFETY: desc is fresh metadata for one Slab.
        unsafe { desc.write(slab) };
        if !pagemap::set(
            base.as_ptr() as usize,
            geo.units as usize,
            crate::slab::pagemap_value(desc),
        ) {
            // SAFETY: desc and base are ours and unpublished.
            unsafe {
                meta_free(desc.cast(), Layout::new::<Slab>());
                dom.arena_free(nid, base, geo.units as usize);
            }
            return None;
        }
        // SAFETY: desc is a valid, unlisted slab of this part; we hold the list lock.
        unsafe { lists.put(desc, ListKind::Empty) };
        part.nr_slabs.fetch_add(1, Ordering::Relaxed);
        part.total_objects
            .fetch_add(geo.capacity as usize, Ordering::Relaxed);
        Some(desc)
    }

    /// Frees a resting slab that has no object in use. Called with the part's list lock held.
    ///
    /// # Safety
    /// `s` is a slab of `part`, on the list its field names, with `in_use() == 0`.
    pub unsafe fn discard_slab(&self, part: &NodePart, lists: &mut PartLists, s: *mut Slab) {
        // SAFETY: forwarded from the caller.
        unsafe {
            let d = self.detach_slab(part, lists, s);
            self.release_detached(part, d);
        }
    }

    /// Takes a resting, empty slab out of its part (lists, page map, counters) so that its
    /// memory can be given back after the list lock is dropped. Called with the lock held.
    ///
    /// # Safety
    /// As for [`CacheInner::discard_slab`].
    unsafe fn detach_slab(
        &self,
        part: &NodePart,
        lists: &mut PartLists,
        s: *mut Slab,
    ) -> *mut Slab {
        // SAFETY: forwarded from the caller.
        unsafe {
            lists.take(s);
            let units = (*s).units as usize;
            part.fold_gone(&*s);
            pagemap::clear((*s).base as usize, units);
            part.total_objects
                .fetch_sub((*s).capacity as usize, Ordering::Relaxed);
        }
        part.nr_slabs.fetch_sub(1, Ordering::Relaxed);
        s
    }

    /// Gives a detached slab's memory back (decommit) and frees its descriptor. No lock needed:
    /// nothing can reach the slab any more.
    ///
    /// # Safety
    /// `s` came from [`CacheInner::detach_slab`] on `part` and is released once.
    unsafe fn release_detached(&self, part: &NodePart, s: *mut Slab) {
        // SAFETY: caller contract: the descriptor and its span are ours alone.
        unsafe {
            let units = (*s).units as usize;
            let base = (*s).base;
            crate::debug::before_release(&*s);
            meta_free(s.cast(), Layout::new::<Slab>());
            crate::asan::unpoison(base, units * mem::UNIT);
            self.domain()
                .arena_free(part.node, NonNull::new_unchecked(base), units);
        }
    }

    /// The delay before an empty slab is given back (0: at once, beyond the budget).
    #[inline]
    fn purge_delay_ms(&self) -> u64 {
        self.domain().config.purge_delay.as_millis() as u64
    }

    /// Gives back, in one batch and outside the part's lock, the empty slabs of `part` that
    /// have been idle for the purge delay (keeping `min_partial` of them). Cheap when nothing is
    /// due: one relaxed load. Call with no part lock held.
    pub fn maybe_purge(&self, part: &NodePart) {
        let due = part.next_purge.load(std::sync::atomic::Ordering::Relaxed);
        if due != 0 {
            let now = mem::now_ms();
            if now >= due {
                self.purge_part(part, now, self.purge_delay_ms(), self.min_partial);
            }
        }
        self.domain().maybe_sweep();
    }

    /// The sweep's visit of `part` (no part lock held): gives back its empties idle for `age` ms
    /// at `now`, and notes its next deadline with the domain's sweep.
    pub(crate) fn sweep_part(&self, part: &NodePart, now: u64, age: u64) {
        let due = part.next_purge.load(std::sync::atomic::Ordering::Relaxed);
        if due == 0 {
            return;
        }
        if due.saturating_sub(self.purge_delay_ms()) + age <= now {
            self.purge_part(part, now, age, self.min_partial);
        }
        let next = part.next_purge.load(std::sync::atomic::Ordering::Relaxed);
        if next != 0 {
            self.domain().sweep.note(next);
        }
    }

    /// See [`CacheInner::maybe_purge`]: gives back the empties idle for at least `age` ms at
    /// `now`, keeping `keep` of them (`min_partial`; 0 for the background purger's deep pass).
    #[cold]
    pub(crate) fn purge_part(&self, part: &NodePart, now: u64, age: u64, keep: usize) {
        let delay = self.purge_delay_ms();
        let mut batch: [*mut Slab; 64] = [ptr::null_mut(); 64];
        let mut n = 0;
        {
            let mut lists = part.lock();
            // Oldest first: empties are appended at the tail and reused from the tail.
            while n < batch.len() && lists.empty.len > keep {
                let s = lists.empty.head();
                // SAFETY: list members are valid under the lock.
                if now < unsafe { (*s).idle_since.get() } + age {
                    break;
                }
                // SAFETY: s rests on the empty list with nothing in use.
                batch[n] = unsafe { self.detach_slab(part, &mut lists, s) };
                n += 1;
            }
            let next = if lists.empty.len > self.min_partial {
                // SAFETY: as above.
                let oldest = unsafe { (*lists.empty.head()).idle_since.get() };
                oldest + delay
            } else {
                0
            };
            part.next_purge
                .store(next, std::sync::atomic::Ordering::Relaxed);
            if next != 0 {
                self.domain().sweep.note(next);
            }
            if part.state() == PartState::Draining && lists.nr_slabs() == 0 {
                self.domain().part_drained(self, part);
            }
        }
        for &s in &batch[..n] {
            // SAFETY: detached above, released once.
            unsafe { self.release_detached(part, s) };
        }
    }

    /// Puts a resting slab that is on no list on the right one; frees it if it is empty and the
    /// part already keeps `min_partial` empty slabs or does not accept new slabs. Called with the
    /// part's list lock held.
    pub fn settle(&self, part: &NodePart, lists: &mut PartLists, s: *mut Slab) {
        // SAFETY: s is a resting slab of part; we hold the lock, so we act as its owner.
        let sr = unsafe { &*s };
        if sr.in_use() == 0 {
            let delay = self.purge_delay_ms();
            let span = (sr.units as usize) << crate::mem::UNIT_SHIFT;
            let now = if delay > 0 { mem::now_ms() } else { 0 };
            let held = crate::node::EMPTY_BYTES.load(Ordering::Relaxed) + span;
            let in_budget =
                crate::sweep::within_delayed_budget(held) || lists.empty.len < self.min_partial;
            if delay > 0
                && part.accepts_new_slabs()
                && lists.empty.len < self.max_empty()
                && in_budget
            {
                // Kept committed for a while: reused soon, or given back by the next purge.
                sr.idle_since.set(now);
                // SAFETY: s is valid and unlinked.
                unsafe { lists.put(s, ListKind::Empty) };
                if lists.empty.len > self.min_partial
                    && part.next_purge.load(std::sync::atomic::Ordering::Relaxed) == 0
                {
                    // SAFETY: the list is not empty.
                    let oldest = unsafe { (*lists.empty.head()).idle_since.get() };
                    part.next_purge
                        .store(oldest + delay, std::sync::atomic::Ordering::Relaxed);
                    self.domain().sweep.note(oldest + delay);
                }
            } else if delay == 0 && lists.empty.len < self.keep_empty() && part.accepts_new_slabs()
            {
                // SAFETY: s is valid and unlinked.
                unsafe { lists.put(s, ListKind::Empty) };
            } else {
                // SAFETY: put it on a list first so discard's take() is uniform.
                unsafe {
                    lists.put(s, ListKind::Empty);
                    self.discard_slab(part, lists, s);
                }
            }
        } else if sr.has_private_free() {
            // SAFETY: s is valid and unlinked.
            unsafe { lists.put(s, ListKind::Partial) };
        } else {
            // SAFETY: s is valid and unlinked.
            unsafe { lists.put(s, ListKind::Full) };
        }
        if part.state() == PartState::Draining && lists.nr_slabs() == 0 {
            self.domain().part_drained(self, part);
        }
    }

    /// Answers a reap hint (list lock held): collects remote frees of resting partial and full
    /// slabs and settles the ones that became empty (kept up to `min_partial`, freed beyond).
    pub fn reap(&self, part: &NodePart, lists: &mut PartLists) {
        let mut batch: [*mut Slab; 64] = [ptr::null_mut(); 64];
        loop {
            let mut n = 0;
            for s in lists.partial.iter().chain(lists.full.iter()) {
                // SAFETY: resting slab, lock held: we act as owner.
                let sr = unsafe { &*s };
                // SAFETY: as above.
                unsafe { sr.collect_remote() };
                if sr.in_use() == 0 && n < batch.len() {
                    batch[n] = s;
                    n += 1;
                }
            }
            for &s in &batch[..n] {
                // SAFETY: s is resting on the list its field names.
                unsafe { lists.take(s) };
                self.settle(part, lists, s);
            }
            if n < batch.len() {
                return;
            }
        }
    }

    /// A remote free emptied a resting slab of `part` (the one holding `obj`, if it still
    /// rests there): collect its remote list and settle it, so its memory goes back without
    /// waiting for a slow path on this part. A slab reused meanwhile is only re-examined.
    #[cold]
    pub fn remote_emptied(&self, part: &NodePart, obj: *mut u8) {
        self.remote_emptied_locked(part, obj);
        self.maybe_purge(part);
    }

    fn remote_emptied_locked(&self, part: &NodePart, obj: *mut u8) {
        let mut lists = part.lock();
        let s = crate::slab::slab_of(obj).cast_mut();
        if s.is_null() {
            return;
        }
        // SAFETY: a registered descriptor is a live slab; under this part's lock a slab of this
        // part cannot be freed or change hands.
        let sr = unsafe { &*s };
        if !ptr::eq(sr.part, part) || !matches!(sr.list.get(), ListKind::Partial | ListKind::Full) {
            return;
        }
        // SAFETY: resting slab, lock held: we act as owner.
        unsafe { sr.collect_remote() };
        if sr.in_use() == 0 {
            // SAFETY: s rests on the list its field names.
            unsafe { lists.take(s) };
            self.settle(part, &mut lists, s);
        }
    }

    /// A free arrived in a draining part (after a forced offline, or during an offline's drain):
    /// reap it under its lock; the settle of its last slab retires it.
    #[cold]
    pub fn drained_free(&self, part: &NodePart) {
        let mut lists = part.lock();
        self.reap(part, &mut lists);
        if part.state() == PartState::Draining && lists.nr_slabs() == 0 {
            self.domain().part_drained(self, part);
        }
    }

    /// Empty slabs a live part keeps before giving more back: SLUB's `min_partial`, or as many
    /// as fit in [`EMPTY_BUDGET`] bytes if that is more. Returning a slab decommits its pages
    /// (`MADV_DONTNEED`), and a batch workload that frees and re-allocates thousands of objects
    /// would otherwise fault every page back in; `shrink` still returns them all.
    /// Empty slabs a live part keeps at most while they wait for the purge delay
    /// ([`EMPTY_CAP`] bytes, or `min_partial` slabs if that is more).
    #[inline]
    fn max_empty(&self) -> usize {
        let span = (self.geo.units as usize) << crate::mem::UNIT_SHIFT;
        self.min_partial.max(EMPTY_CAP / span)
    }

    #[inline]
    fn keep_empty(&self) -> usize {
        let span = (self.geo.units as usize) << crate::mem::UNIT_SHIFT;
        self.min_partial.max(EMPTY_BUDGET / span)
    }

    /// Shrinks one part: collects remote frees of resting slabs and frees every empty one.
    /// Returns the slabs freed.
    pub fn shrink_part(&self, part: &NodePart) -> usize {
        let mut lists = part.lock();
        let mut freed = 0;
        let mut batch: [*mut Slab; 64] = [ptr::null_mut(); 64];
        loop {
            // Gather empties (after collecting remote frees) in batches, then free them.
            let mut n = 0;
            for s in lists
                .partial
                .iter()
                .chain(lists.full.iter())
                .chain(lists.empty.iter())
                .chain(lists.debug.iter())
            {
                // SAFETY: resting slab, lock held: we act as owner.
                let sr = unsafe { &*s };
                // SAFETY: as above.
                unsafe { sr.collect_remote() };
                if sr.in_use() == 0 && n < batch.len() {
                    batch[n] = s;
                    n += 1;
                }
            }
            for &s in &batch[..n] {
                // SAFETY: s is resting, on its list, with no object in use.
                unsafe { self.discard_slab(part, &mut lists, s) };
            }
            freed += n;
            if n < batch.len() {
                break;
            }
        }
        // Reclassify what is left (remote frees may have turned full slabs partial).
        let full: [*mut Slab; 64] = {
            let mut a = [ptr::null_mut(); 64];
            for (i, s) in lists.full.iter().take(64).enumerate() {
                a[i] = s;
            }
            a
        };
        for s in full.into_iter().filter(|s| !s.is_null()) {
            // SAFETY: as above.
            let sr = unsafe { &*s };
            if sr.has_private_free() {
                // SAFETY: s is on the full list.
                unsafe {
                    lists.take(s);
                    lists.put(s, ListKind::Partial);
                }
            }
        }
        if part.state() == PartState::Draining && lists.nr_slabs() == 0 {
            self.domain().part_drained(self, part);
        }
        freed
    }

    /// Objects in use on `part` (exact when no thread owns one of its slabs).
    pub fn part_in_use(&self, part: &NodePart) -> usize {
        let lists = part.lock();
        lists
            .all()
            .map(|s| {
                // SAFETY: list members are valid under the lock. Owned slabs are read racily (a
                // statistic); callers that need exactness revoke first.
                unsafe { (*s).in_use() as usize }
            })
            .sum()
    }

    /// Statistics summed over parts and thread caches.
    pub fn stats(&self) -> CacheStats {
        let mut st = CacheStats {
            object_size: self.size,
            stride: self.stride,
            align: self.align,
            objs_per_slab: self.geo.capacity as usize,
            pages_per_slab: (self.geo.units as usize * mem::UNIT) / 4096,
            ..CacheStats::default()
        };
        for i in 0..self.nr_node_ids {
            let p = self.part(NodeId::new(i as u16));
            if p.is_null() {
                continue;
            }
            // SAFETY: parts live as long as the cache.
            let part = unsafe { &*p };
            let lists = part.lock();
            let (ga, gf) = part.gone();
            st.allocs += ga;
            st.frees += gf;
            for s in lists.all() {
                // SAFETY: valid under the lock (owned slabs read racily, see part_in_use).
                let sr = unsafe { &*s };
                // Every object handed out is in use or freed (remote frees still pending count).
                st.allocs += sr.allocs.get();
                st.frees += sr.allocs.get().wrapping_sub(sr.in_use() as u64);
                st.active_objects += sr.in_use() as usize;
                st.total_objects += sr.capacity as usize;
                st.slabs += 1;
            }
        }
        st
    }

    /// Per-node slab counts into `out` (index = node id); returns the number of ids written.
    pub fn node_slabs(&self, out: &mut [usize]) -> usize {
        let n = self.nr_node_ids.min(out.len());
        for (i, o) in out.iter_mut().enumerate().take(n) {
            let p = self.part(NodeId::new(i as u16));
            // SAFETY: parts live as long as the cache.
            *o = if p.is_null() {
                0
            } else {
                unsafe { (*p).nr_slabs.load(Ordering::Relaxed) }
            };
        }
        n
    }
}

/// A handle to a cache. Cheap to clone; using it after [`KmemCache::destroy`] gives
/// [`CacheError::Destroyed`], never undefined behaviour.
///
/// The life of a cache — create, alloc, free, shrink, destroy:
///
/// ```
/// use hotslab::{CacheConfig, CacheError, SlabDomain};
/// let d = SlabDomain::simulated(1).unwrap();
/// let c = d.create_cache(CacheConfig::new("inode", 600)).unwrap();
/// let objs: Vec<_> = (0..100).map(|_| c.alloc().unwrap()).collect();
/// let st = c.stats().unwrap();
/// assert_eq!((st.active_objects, st.object_size), (100, 600));
///
/// // A live object keeps the cache: destroy reports it and changes nothing.
/// assert!(c.destroy().is_err());
/// for o in objs { c.free(o).unwrap(); }
///
/// // Empty slabs go back to the page source (`kmem_cache_shrink`).
/// let committed = d.committed_bytes();
/// c.shrink().unwrap();
/// assert_eq!(c.stats().unwrap().active_objects, 0);
/// assert!(d.committed_bytes() <= committed);
///
/// c.destroy().unwrap();
/// assert!(matches!(c.alloc(), Err(CacheError::Destroyed))); // a stale handle is safe
/// ```
#[derive(Clone)]
pub struct KmemCache {
    pub(crate) domain: DomainRef,
    pub(crate) inner: NonNull<CacheInner>,
    pub(crate) gen: u64,
}

// SAFETY: the handle only reads shared metadata through atomics and the cache's own protocols.
unsafe impl Send for KmemCache {}
// SAFETY: see Send.
unsafe impl Sync for KmemCache {}

impl fmt::Debug for KmemCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmemCache")
            .field("name", &self.name())
            .field("generation", &self.gen)
            .finish()
    }
}

impl KmemCache {
    #[inline(always)]
    pub(crate) fn live(&self) -> Result<&CacheInner, CacheError> {
        // SAFETY: cache metadata is never freed while the domain (which we keep alive) lives.
        let c = unsafe { self.inner.as_ref() };
        if c.generation.load(Ordering::Acquire) != self.gen || c.is_dead() {
            return Err(CacheError::Destroyed);
        }
        Ok(c)
    }

    /// The cache's name.
    pub fn name(&self) -> &'static str {
        // SAFETY: as in live().
        unsafe { self.inner.as_ref() }.name
    }

    /// The domain this cache belongs to.
    pub fn domain(&self) -> &SlabDomain {
        self.domain.get()
    }

    /// Allocates one object near the calling thread's node.
    #[inline]
    pub fn alloc(&self) -> Result<NonNull<u8>, CacheError> {
        let c = self.live()?;
        NonNull::new(thread::alloc(c)).ok_or_else(|| self.why_null())
    }

    /// Allocates one object on node `nid` (falling back by distance when that node cannot serve,
    /// as `kmem_cache_alloc_node` does). Errors: [`CacheError::UnknownNode`] for a node outside
    /// the topology, [`CacheError::NodeNotAllowed`] for one outside the calling thread's cpuset
    /// (domains with task placement, such as the default domain).
    pub fn alloc_node(&self, nid: NodeId) -> Result<NonNull<u8>, CacheError> {
        let c = self.live()?;
        if !self.domain().topology().nodes().test(nid) {
            return Err(CacheError::UnknownNode(nid.0));
        }
        if !crate::placement::node_allowed(self.domain(), nid) {
            return Err(CacheError::NodeNotAllowed(nid.0));
        }
        NonNull::new(thread::alloc_node(c, nid)).ok_or_else(|| self.why_null())
    }

    fn why_null(&self) -> CacheError {
        if self.live().is_err() {
            CacheError::Destroyed
        } else {
            CacheError::NoMemory
        }
    }

    /// Frees an object of this cache.
    #[inline]
    pub fn free(&self, obj: NonNull<u8>) -> Result<(), CacheError> {
        let c = self.live()?;
        let p = obj.as_ptr();
        let s = crate::slab::slab_of(p);
        if s.is_null() {
            return Err(CacheError::ForeignPointer(p as usize));
        }
        // SAFETY: slab-tagged page-map values are slab descriptors, live while registered.
        let s = unsafe { &*s };
        if !ptr::eq(s.cache, c) {
            return Err(CacheError::ForeignPointer(p as usize));
        }
        if s.dbg.flags != 0 {
            if !debug::is_object(s, p) {
                return Err(CacheError::InteriorPointer(p as usize));
            }
            // SAFETY: p is an object start of a debug slab of this cache; the caller hands it
            // back (a second free of it is caught and reported); `s` is not used again.
            unsafe { debug::free(p) };
            return Ok(());
        }
        if !s.is_carved_object(p) {
            return Err(CacheError::InteriorPointer(p as usize));
        }
        // SAFETY: p is an object start of a slab of this cache; the caller hands it back.
        unsafe { thread::free(s, p) };
        Ok(())
    }

    /// Switches debug mode ([`DebugFlags`]; `DebugFlags::NONE` turns it off) at run time.
    ///
    /// Debug mode changes the slot layout (red zones), so it is recorded per slab: from now on
    /// new objects come from debug slabs, while objects already handed out keep the slab they
    /// came from (and its checks, or none) until they are freed. Turning it on takes every
    /// thread's current slab back, so the very next allocation is checked.
    ///
    /// ```
    /// use hotslab::{CacheConfig, DebugFlags, SlabDomain};
    /// let d = SlabDomain::simulated(1).unwrap();
    /// let c = d.create_cache(CacheConfig::new("checked", 40)).unwrap();
    /// c.set_debug(DebugFlags::ALL).unwrap();
    /// let p = c.alloc().unwrap();
    /// // SAFETY: 40 bytes are ours.
    /// unsafe { p.as_ptr().write_bytes(1, 40) };
    /// c.free(p).unwrap(); // red zones checked, object poisoned
    /// assert_eq!(c.debug_flags(), DebugFlags::ALL);
    /// ```
    pub fn set_debug(&self, flags: DebugFlags) -> Result<(), CacheError> {
        let c = self.live()?;
        c.set_debug(flags)
    }

    /// The debug flags new slabs get (`DebugFlags::NONE` when debug mode is off).
    pub fn debug_flags(&self) -> DebugFlags {
        // SAFETY: as in live().
        let c = unsafe { self.inner.as_ref() };
        DebugFlags::from_bits(c.debug.load(Ordering::Relaxed) as u32)
    }

    /// Returns empty slabs of every node to the page source (under the online-mems read side).
    pub fn shrink(&self) -> Result<usize, CacheError> {
        let c = self.live()?;
        Ok(self.domain().shrink_cache(c))
    }

    /// Destroys the cache. With live objects it reports them and keeps the cache (nothing live is
    /// freed); the handle stays usable then.
    pub fn destroy(&self) -> Result<(), CacheError> {
        let c = self.live()?;
        self.domain().destroy_cache(c)
    }

    /// Statistics.
    pub fn stats(&self) -> Result<CacheStats, CacheError> {
        Ok(self.live()?.stats())
    }

    /// Object size.
    pub fn object_size(&self) -> usize {
        // SAFETY: as in live().
        unsafe { self.inner.as_ref() }.size
    }

    /// Node of the slab holding `obj`, if it is an object of this cache.
    pub fn node_of(&self, obj: NonNull<u8>) -> Option<NodeId> {
        let s = crate::slab::slab_of(obj.as_ptr());
        if s.is_null() {
            return None;
        }
        // SAFETY: slab-tagged page-map values are slab descriptors.
        let s = unsafe { &*s };
        ptr::eq(s.cache, self.inner.as_ptr()).then_some(s.node)
    }

    /// Lengths of `nid`'s part lists: (owned by threads, partial, full, empty). For tests.
    #[doc(hidden)]
    pub fn part_lists(&self, nid: NodeId) -> Option<(usize, usize, usize, usize)> {
        // SAFETY: as in live().
        let c = unsafe { self.inner.as_ref() };
        let p = c.part(nid);
        if p.is_null() {
            return None;
        }
        // SAFETY: parts live as long as the cache.
        let l = unsafe { &*p }.lock();
        Some((l.owned.len, l.partial.len, l.full.len, l.empty.len))
    }

    /// Parked full slabs with cross-thread frees pending, beyond the notices their thread
    /// caches hold (0 when every such free was announced: see `Slab::park`). For the loom
    /// models, at a quiescent point (it reads owner-private queues).
    #[doc(hidden)]
    pub fn unnoticed_parked_slabs(&self) -> usize {
        // SAFETY: as in live().
        let c = unsafe { self.inner.as_ref() };
        c.thread_caches()
            .map(crate::heap::ThreadCache::unnoticed_parked)
            .sum()
    }

    /// Whether the cache has a part for `nid` and in which state.
    pub fn part_state(&self, nid: NodeId) -> Option<PartState> {
        // SAFETY: as in live().
        let c = unsafe { self.inner.as_ref() };
        let p = c.part(nid);
        // SAFETY: parts live as long as the cache.
        (!p.is_null()).then(|| unsafe { (*p).state() })
    }
}
