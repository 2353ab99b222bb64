//! The large-object tier: allocations above the top size class, each its own node-bound mapping from the
//! `PageSource`, described by a descriptor in metadata memory (never in front of the object) and registered
//! in the page map at its first unit. It owns those mappings, their descriptors and a small per-node cache of
//! recently freed (decommitted) mappings; it must not touch slab spans or page-map units it did not register.
//!
//! Page-map values: a large object's first unit maps to `descriptor address | TAG_LARGE`. Descriptors come
//! from `meta_alloc`, so they are at least 16-byte aligned and the low three bits ([`TAG_MASK`]) are free for
//! tags. Slab spans use tag 0 (an 8-byte-aligned slab descriptor pointer stored as is).

use super::meta::{meta_alloc, meta_free};
use super::pagemap::{self, UNIT};
use super::{page_size, round_up, src_decommit, src_unmap, RawLock};
use hotslab_numa::{MapError, NodeId, PageSource};
use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Tag of page-map values that point to a [`LargeDesc`].
pub const TAG_LARGE: usize = 1;
/// Bits of a page-map value reserved for the tag (descriptors are at least 8-byte aligned).
pub const TAG_MASK: usize = 0b111;
/// Tag of a page-map value naming a slab descriptor (`slab.rs`): one bit test tells a slab unit
/// from an empty one (0) and a large object's ([`TAG_LARGE`]).
pub const TAG_SLAB: usize = 0b100;
// The page map holds 0, `desc | TAG_LARGE` and `desc | TAG_SLAB` only, with 8-byte aligned
// descriptors, so the slab tag's bit alone tells a slab unit (the free path tests just that bit).
const _: () = assert!(TAG_SLAB & TAG_MASK == TAG_SLAB && TAG_SLAB & TAG_LARGE == 0);
/// Capacity of the span cache (all nodes together).
pub const CACHE_SLOTS: usize = 64;
/// At most this many cached mappings per node.
pub const CACHE_PER_NODE: usize = 16;
/// Only mappings up to this length are cached decommitted.
pub const CACHE_MAX_SPAN: usize = 4 << 20;
/// Freed mappings up to this length are first cached *committed* ("dirty"): a reuse soon after
/// costs no system call and no page fault. They are decommitted once idle for
/// [`DIRTY_DELAY_MS`] (and unmapped if longer than [`CACHE_MAX_SPAN`]).
pub const DIRTY_MAX_SPAN: usize = 64 << 20;
/// At most this many bytes of dirty mappings are cached.
pub const DIRTY_BUDGET: usize = 128 << 20;
/// Idle time after which a dirty cached mapping is decommitted (checked whenever the tier is used).
pub const DIRTY_DELAY_MS: u64 = 50;
/// Objects whose mapping stays within this length are resized the way slab objects are: in place
/// while the new length is at least half the old one, otherwise into another mapping (a dirty
/// cached one if one fits) with a copy, the old mapping going to the cache. Unmapping a shrunk
/// tail and moving pages into a fresh mapping (`mremap`) both leave pages that fault again when
/// the block grows back; on this VM a fault costs about 4.7 µs, while copying 256 KiB takes a few µs.
pub const COPY_RESIZE_MAX: usize = 1 << 20;

use super::now_ms;

/// Why a large-tier operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LargeError {
    /// The pointer is not registered by this tier (not ours at all, already freed, or another tier's).
    Foreign,
    /// The pointer is in a registered unit but is not the start of a large object (an interior pointer, or
    /// a unit registered for something else, such as a slab).
    NotLarge,
    /// The OS refused memory, or metadata ran out.
    NoMemory,
    /// The requested node is gone (mbind refused it): fall back to another node.
    NodeGone,
    /// Alignment not a power of two, or a size that cannot be mapped (near `isize::MAX`).
    InvalidLayout,
}

impl fmt::Display for LargeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LargeError::Foreign => "pointer is not a large object of this tier",
            LargeError::NotLarge => "pointer is not the start of a large object",
            LargeError::NoMemory => "out of memory",
            LargeError::NodeGone => "node is gone",
            LargeError::InvalidLayout => "invalid size or alignment",
        })
    }
}

impl std::error::Error for LargeError {}

impl From<MapError> for LargeError {
    fn from(e: MapError) -> Self {
        match e {
            MapError::NodeGone => LargeError::NodeGone,
            MapError::InvalidArgument => LargeError::InvalidLayout,
            _ => LargeError::NoMemory,
        }
    }
}

/// Descriptor of one live large object (in metadata memory). The fields that `realloc` changes are atomics
/// so a `&LargeDesc` stays valid to read while its owner resizes the object.
pub struct LargeDesc {
    /// Address of the tier that owns it (tiers do not move while they own objects).
    owner: usize,
    base: AtomicPtr<u8>,
    map_len: AtomicUsize,
    size: AtomicUsize,
    align: usize,
    node: Option<NodeId>,
    /// The mapping came from the dirty cache: its contents are not zero.
    dirty: bool,
}

impl LargeDesc {
    /// Start of the object (and of its mapping).
    pub fn base(&self) -> *mut u8 {
        self.base.load(Ordering::Relaxed)
    }

    /// Length of the mapping (page multiple): the usable size.
    pub fn mapped_len(&self) -> usize {
        self.map_len.load(Ordering::Relaxed)
    }

    /// Size last requested by the user.
    pub fn size(&self) -> usize {
        self.size.load(Ordering::Relaxed)
    }

    /// Alignment requested by the user (the mapping is aligned to at least `UNIT`).
    pub fn align(&self) -> usize {
        self.align
    }

    /// Real node the mapping is bound to (MPOL_PREFERRED), if any.
    pub fn node(&self) -> Option<NodeId> {
        self.node
    }
}

impl fmt::Debug for LargeDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LargeDesc")
            .field("base", &self.base())
            .field("mapped_len", &self.mapped_len())
            .field("size", &self.size())
            .field("align", &self.align)
            .field("node", &self.node)
            .finish()
    }
}

/// A cached mapping (null `ptr` = empty slot): decommitted (reads as zero), or dirty (committed,
/// old contents, cached at `since` ms).
#[derive(Clone, Copy)]
struct Slot {
    ptr: *mut u8,
    len: usize,
    node: Option<NodeId>,
    dirty: bool,
    since: u64,
}

impl Slot {
    const EMPTY: Slot = Slot {
        ptr: ptr::null_mut(),
        len: 0,
        node: None,
        dirty: false,
        since: 0,
    };
}

/// The large-object tier. One per slab domain (or one static): `const fn new`, no allocation until used.
///
/// Thread safety: `alloc` may be called from any thread. `free`, `realloc`, `usable_size` and `lookup` are
/// `unsafe`: the caller must own the object (no other thread frees, reallocates or looks it up at the same
/// time), as with any allocator. Every call that maps or unmaps takes the domain's `&PageSource`, which
/// must be the same one for the life of an object. The tier must not move while it has live objects
/// (descriptors record its address); keep it in a static or in metadata memory. It has no `Drop` (that would
/// need the page source): call [`LargeTier::trim_cache`] before dropping one, or its cached mappings leak.
///
/// ```
/// use hotslab::mem::{pagemap, LargeTier, TAG_LARGE, TAG_MASK};
/// use hotslab_numa::PageSource;
/// static SRC: PageSource = PageSource::new();
/// static LARGE: LargeTier = LargeTier::new();
/// let p = LARGE.alloc(&SRC, 100_000, 16, None);
/// assert!(!p.is_null());
/// assert_eq!(pagemap::get(p as usize) & TAG_MASK, TAG_LARGE);
/// unsafe {
///     assert!(LARGE.usable_size(p).unwrap() >= 100_000);
///     let q = LARGE.realloc(&SRC, p, 300_000);
///     assert!(!q.is_null());
///     LARGE.free(&SRC, q).unwrap();
/// }
/// assert_eq!(LARGE.live_count(), 0);
/// ```
pub struct LargeTier {
    lock: RawLock,
    cache: UnsafeCell<[Slot; CACHE_SLOTS]>,
    live_bytes: AtomicUsize,
    live_count: AtomicUsize,
    mapped: AtomicUsize,
    cached: AtomicUsize,
    dirty: AtomicUsize,
    last_purge: std::sync::atomic::AtomicU64,
    cache_hits: AtomicUsize,
    grow_moves: AtomicUsize,
    grow_copies: AtomicUsize,
}

// SAFETY: the cache array is only accessed with `lock` held; the pointers in it are process-wide mappings
// owned by the tier. Everything else is atomic.
unsafe impl Sync for LargeTier {}
// SAFETY: as above.
unsafe impl Send for LargeTier {}

impl Default for LargeTier {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LargeTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LargeTier")
            .field("live_count", &self.live_count())
            .field("live_bytes", &self.live_bytes())
            .field("mapped_bytes", &self.mapped_bytes())
            .field("cached_bytes", &self.cached_bytes())
            .finish()
    }
}

/// Mapping length and effective alignment for a request, or `InvalidLayout`.
fn limits(size: usize, align: usize) -> Result<(usize, usize), LargeError> {
    if !align.is_power_of_two() {
        return Err(LargeError::InvalidLayout);
    }
    let align_eff = align.max(UNIT);
    let map_len = round_up(size.max(1), page_size()).ok_or(LargeError::InvalidLayout)?;
    // The page source over-maps by the alignment; the total must stay a valid Rust allocation size.
    if map_len > (isize::MAX as usize).saturating_sub(align_eff) {
        return Err(LargeError::InvalidLayout);
    }
    Ok((map_len, align_eff))
}

impl LargeTier {
    /// An empty tier.
    pub const fn new() -> Self {
        LargeTier {
            lock: RawLock::new(),
            cache: UnsafeCell::new([Slot::EMPTY; CACHE_SLOTS]),
            live_bytes: AtomicUsize::new(0),
            live_count: AtomicUsize::new(0),
            mapped: AtomicUsize::new(0),
            cached: AtomicUsize::new(0),
            dirty: AtomicUsize::new(0),
            last_purge: std::sync::atomic::AtomicU64::new(0),
            cache_hits: AtomicUsize::new(0),
            grow_moves: AtomicUsize::new(0),
            grow_copies: AtomicUsize::new(0),
        }
    }

    fn with_cache<R>(&self, f: impl FnOnce(&mut [Slot; CACHE_SLOTS]) -> R) -> R {
        let _g = self.lock.guard();
        // SAFETY: the lock is held for the whole life of the reference.
        f(unsafe { &mut *self.cache.get() })
    }

    /// Allocates `size` bytes aligned to `align` (a power of two; the object is aligned to at least `UNIT`
    /// whatever is asked) on a mapping preferring `real_node`. Returns null on failure (including sizes near
    /// `isize::MAX`, a bad alignment, or a removed node). Fresh memory reads as zero.
    pub fn alloc(
        &self,
        src: &PageSource,
        size: usize,
        align: usize,
        real_node: Option<NodeId>,
    ) -> *mut u8 {
        match self.try_alloc(src, size, align, real_node) {
            Ok(p) => p.as_ptr(),
            Err(_) => ptr::null_mut(),
        }
    }

    /// As [`LargeTier::alloc`], telling why it failed (`NodeGone` lets the caller try another node).
    pub fn try_alloc(
        &self,
        src: &PageSource,
        size: usize,
        align: usize,
        real_node: Option<NodeId>,
    ) -> Result<NonNull<u8>, LargeError> {
        let (map_len, align_eff) = limits(size, align)?;
        let (base, len, dirty) = self.obtain(src, map_len, align_eff, real_node)?;
        let desc = meta_alloc(Layout::new::<LargeDesc>()).cast::<LargeDesc>();
        if desc.is_null() {
            // SAFETY: the mapping was just obtained and never handed out.
            unsafe { self.release_span(src, base, len, real_node) };
            return Err(LargeError::NoMemory);
        }
        // SAFETY: desc is a fresh metadata block sized and aligned for a LargeDesc.
        unsafe {
            desc.write(LargeDesc {
                owner: self as *const LargeTier as usize,
                base: AtomicPtr::new(base.as_ptr()),
                map_len: AtomicUsize::new(len),
                size: AtomicUsize::new(size),
                align,
                node: real_node,
                dirty,
            })
        };
        // `set` stores with Release, so the descriptor written above is visible to any thread that finds it.
        if !pagemap::set(
            base.as_ptr() as usize,
            1,
            desc.expose_provenance() | TAG_LARGE,
        ) {
            // SAFETY: the descriptor was never published; the mapping was never handed out.
            unsafe {
                meta_free(desc.cast(), Layout::new::<LargeDesc>());
                self.release_span(src, base, len, real_node);
            }
            return Err(LargeError::NoMemory);
        }
        self.live_bytes.fetch_add(size, Ordering::Relaxed);
        self.live_count.fetch_add(1, Ordering::Relaxed);
        Ok(base)
    }

    /// A zeroed mapping of at least `map_len` bytes aligned to `align_eff` bound to `node`: from the span
    /// cache if one fits, else fresh from the page source. Counted in `mapped`.
    fn obtain(
        &self,
        src: &PageSource,
        map_len: usize,
        align_eff: usize,
        node: Option<NodeId>,
    ) -> Result<(NonNull<u8>, usize, bool), LargeError> {
        if let Some(hit) = self.cache_take(map_len, align_eff, node) {
            return Ok(hit);
        }
        let span = src.map(map_len, align_eff, node)?;
        if span.ptr.as_ptr() as usize % align_eff != 0 || span.len < map_len {
            // Not what we asked for: never hand it out.
            // SAFETY: the span was just mapped through `src` and is unused.
            unsafe { src_unmap(src, span.ptr, span.len) };
            return Err(LargeError::NoMemory);
        }
        self.mapped.fetch_add(span.len, Ordering::Relaxed);
        Ok((span.ptr, span.len, false))
    }

    /// Best-fitting cached mapping for the request (same node, aligned, at most twice as long).
    fn cache_take(
        &self,
        map_len: usize,
        align_eff: usize,
        node: Option<NodeId>,
    ) -> Option<(NonNull<u8>, usize, bool)> {
        if map_len > DIRTY_MAX_SPAN || self.cached.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let (ptr, len, dirty) = self.with_cache(|cache| {
            let mut best: Option<usize> = None;
            for (i, s) in cache.iter().enumerate() {
                let fits = !s.ptr.is_null()
                    && s.node == node
                    && s.len >= map_len
                    && s.len / 2 <= map_len
                    && s.ptr as usize % align_eff == 0;
                if fits && best.is_none_or(|b| cache[b].len > s.len) {
                    best = Some(i);
                }
            }
            let slot = cache.get_mut(best?)?;
            let taken = (slot.ptr, slot.len, slot.dirty);
            *slot = Slot::EMPTY;
            Some(taken)
        })?;
        self.cached.fetch_sub(len, Ordering::Relaxed);
        if dirty {
            self.dirty.fetch_sub(len, Ordering::Relaxed);
        }
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
        NonNull::new(ptr).map(|p| (p, len, dirty))
    }

    /// Gives a mapping back: decommitted into the span cache if it is small enough and the node has room,
    /// otherwise unmapped.
    ///
    /// # Safety
    /// `[ptr, ptr + len)` is a whole mapping obtained by `obtain` (possibly shrunk at its tail), no longer
    /// registered in the page map nor used by anyone.
    unsafe fn release_span(
        &self,
        src: &PageSource,
        ptr: NonNull<u8>,
        len: usize,
        node: Option<NodeId>,
    ) {
        let now = now_ms();
        if len <= DIRTY_MAX_SPAN
            && self.dirty.load(Ordering::Relaxed) + len <= DIRTY_BUDGET
            && self.put(ptr.as_ptr(), len, node, true, now)
        {
            self.dirty.fetch_add(len, Ordering::Relaxed);
            self.cached.fetch_add(len, Ordering::Relaxed);
            self.purge_idle(src, now);
            super::ring_purge_bell();
            return;
        }
        self.purge_idle(src, now);
        if len <= CACHE_MAX_SPAN && self.with_cache(|c| room(c, node).is_some()) {
            // Decommit before caching, outside the lock (the mapping is exclusively ours).
            // SAFETY: caller contract.
            unsafe { src_decommit(src, ptr, len) };
            if self.put(ptr.as_ptr(), len, node, false, 0) {
                self.cached.fetch_add(len, Ordering::Relaxed);
                return;
            }
        }
        self.mapped.fetch_sub(len, Ordering::Relaxed);
        // SAFETY: caller contract: a mapping of ours that nobody uses.
        unsafe { src_unmap(src, ptr, len) };
    }

    /// Puts a mapping in the cache if its node has room.
    fn put(&self, ptr: *mut u8, len: usize, node: Option<NodeId>, dirty: bool, since: u64) -> bool {
        self.with_cache(|c| match room(c, node) {
            Some(i) => {
                c[i] = Slot {
                    ptr,
                    len,
                    node,
                    dirty,
                    since,
                };
                true
            }
            None => false,
        })
    }

    /// Whether dirty (committed) spans wait in the cache.
    pub(crate) fn has_dirty(&self) -> bool {
        self.dirty.load(Ordering::Relaxed) != 0
    }

    /// When the next idle purge of dirty spans may run (ms), `u64::MAX` if none are cached.
    pub(crate) fn next_due(&self) -> u64 {
        if self.has_dirty() {
            self.last_purge.load(Ordering::Relaxed) + DIRTY_DELAY_MS / 2
        } else {
            u64::MAX
        }
    }

    /// The background purger's visit: decommits dirty spans idle for [`DIRTY_DELAY_MS`].
    pub(crate) fn purge_due(&self, src: &PageSource, now: u64) {
        self.purge_idle(src, now);
    }

    /// Decommits dirty cached mappings idle for longer than [`DIRTY_DELAY_MS`] (at most every
    /// half delay; the system calls run outside the lock). Long ones are unmapped instead.
    fn purge_idle(&self, src: &PageSource, now: u64) {
        if self.dirty.load(Ordering::Relaxed) == 0 {
            return;
        }
        let last = self.last_purge.load(Ordering::Relaxed);
        if now < last + DIRTY_DELAY_MS / 2
            || self
                .last_purge
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.purge_older(src, now, DIRTY_DELAY_MS, false);
    }

    /// Decommits (or unmaps, if long) every dirty cached mapping now: memory given back at once
    /// (`malloc_trim`, tests). Returns the bytes decommitted or unmapped.
    pub fn purge(&self, src: &PageSource) -> usize {
        self.purge_older(src, u64::MAX, 0, false)
    }

    /// Decommits every dirty cached mapping now and keeps it cached, whatever its length: after
    /// a node went away the kernel may have migrated a committed mapping's pages elsewhere, so
    /// a later reuse must fault fresh pages under the mapping's memory policy (the hotplug
    /// notifier calls this at OFFLINE). Returns the bytes decommitted.
    pub fn decommit_dirty(&self, src: &PageSource) -> usize {
        self.purge_older(src, u64::MAX, 0, true)
    }

    fn purge_older(&self, src: &PageSource, now: u64, delay: u64, keep_big: bool) -> usize {
        let mut old = [Slot::EMPTY; CACHE_SLOTS];
        let n = self.with_cache(|c| {
            let mut n = 0;
            for s in c.iter_mut() {
                if !s.ptr.is_null() && s.dirty && now >= s.since.saturating_add(delay) {
                    old[n] = *s;
                    n += 1;
                    *s = Slot::EMPTY;
                }
            }
            n
        });
        let mut released = 0;
        for s in &old[..n] {
            released += s.len;
            self.dirty.fetch_sub(s.len, Ordering::Relaxed);
            self.cached.fetch_sub(s.len, Ordering::Relaxed);
            let Some(p) = NonNull::new(s.ptr) else {
                continue;
            };
            if s.len <= CACHE_MAX_SPAN || keep_big {
                // SAFETY: a cached mapping of ours, taken out of the cache: nobody uses it.
                unsafe { src_decommit(src, p, s.len) };
                if self.put(s.ptr, s.len, s.node, false, 0) {
                    self.cached.fetch_add(s.len, Ordering::Relaxed);
                    continue;
                }
            }
            self.mapped.fetch_sub(s.len, Ordering::Relaxed);
            // SAFETY: as above.
            unsafe { src_unmap(src, p, s.len) };
        }
        released
    }

    /// Whether the large object at `ptr` may hold old data (its mapping was reused committed):
    /// `calloc` must zero it then.
    ///
    /// # Safety
    /// As for [`LargeTier::usable_size`].
    pub unsafe fn needs_zeroing(&self, ptr: *mut u8) -> bool {
        // SAFETY: forwarded.
        unsafe { self.desc_of(ptr) }.is_ok_and(|d| d.dirty)
    }

    /// The live descriptor for `ptr`, checking tag, owner and start address. Returned as a raw pointer
    /// (with the provenance exposed when it was registered) so that `free` may hand it back to `meta_free`.
    ///
    /// # Safety
    /// No other thread frees or reallocates `ptr` concurrently (if it is a live object of this tier).
    unsafe fn desc_ptr(&self, ptr: *mut u8) -> Result<*mut LargeDesc, LargeError> {
        let v = pagemap::get(ptr as usize);
        if v == 0 {
            return Err(LargeError::Foreign);
        }
        if v & TAG_MASK != TAG_LARGE {
            return Err(LargeError::NotLarge);
        }
        let d = ptr::with_exposed_provenance_mut::<LargeDesc>(v & !TAG_MASK);
        // SAFETY: TAG_LARGE values are only stored by `LargeTier` for live descriptors (published with
        // Release after initialisation, cleared before the descriptor is freed), and the caller guarantees
        // no concurrent free of this object. Descriptors of other tiers are live too and are rejected below.
        let r = unsafe { &*d };
        if r.owner != self as *const LargeTier as usize {
            return Err(LargeError::Foreign);
        }
        if r.base() != ptr {
            return Err(LargeError::NotLarge);
        }
        Ok(d)
    }

    /// Shared view of [`LargeTier::desc_ptr`].
    ///
    /// # Safety
    /// As for `desc_ptr`; the reference must not outlive the object.
    unsafe fn desc_of(&self, ptr: *mut u8) -> Result<&LargeDesc, LargeError> {
        // SAFETY: forwarded caller contract; a returned pointer is a live descriptor.
        unsafe { self.desc_ptr(ptr).map(|d| &*d) }
    }

    /// Frees a large object: its page-map entry is cleared, its descriptor freed, its mapping cached
    /// (decommitted) or unmapped. Unknown, already freed or other tiers' pointers give `Foreign`, interior
    /// pointers `NotLarge`; nothing changes then.
    ///
    /// # Safety
    /// If `ptr` is a live object of this tier, the caller owns it: nobody uses it afterwards, and no other
    /// thread frees, reallocates or looks it up concurrently; references from [`LargeTier::lookup`] on it
    /// are dead. `src` is the page source it was allocated from.
    pub unsafe fn free(&self, src: &PageSource, ptr: *mut u8) -> Result<(), LargeError> {
        // SAFETY: forwarded caller contract.
        let desc = unsafe { self.desc_ptr(ptr)? };
        // SAFETY: `desc_ptr` returned a live descriptor.
        let (len, size, node) = unsafe { ((*desc).mapped_len(), (*desc).size(), (*desc).node()) };
        pagemap::clear(ptr as usize, 1);
        self.live_bytes.fetch_sub(size, Ordering::Relaxed);
        self.live_count.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: the descriptor is unregistered and, per the contract, referenced by nobody.
        unsafe { meta_free(desc.cast(), Layout::new::<LargeDesc>()) };
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: the object's whole mapping, unregistered and no longer used (contract).
            unsafe { self.release_span(src, p, len, node) };
        }
        Ok(())
    }

    /// Resizes a large object to `new_size` bytes, keeping its contents up to the smaller size and its
    /// alignment and node. Within [`COPY_RESIZE_MAX`] (old and new mapping): in place while the new length
    /// is at least half the old one, else a copy into another mapping (see the constant). Beyond it,
    /// shrinking stays in place (the tail pages are unmapped); growing moves the pages with `mremap` into a
    /// fresh aligned mapping (no copy), or copies if the kernel refuses. Returns the
    /// (possibly new) pointer, or null on failure with the old object intact (also for pointers that are not
    /// large objects of this tier, and sizes near `isize::MAX`).
    ///
    /// # Safety
    /// As for [`LargeTier::free`]; on success the old pointer (if different) must no longer be used.
    pub unsafe fn realloc(&self, src: &PageSource, ptr: *mut u8, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        let Ok(desc) = (unsafe { self.desc_ptr(ptr) }) else {
            return ptr::null_mut();
        };
        // SAFETY: a live descriptor, not freed while we use it (caller contract).
        let d = unsafe { &*desc };
        let Ok((new_len, align_eff)) = limits(new_size, d.align()) else {
            return ptr::null_mut();
        };
        let (old_len, old_size) = (d.mapped_len(), d.size());
        if old_len <= COPY_RESIZE_MAX && new_len <= COPY_RESIZE_MAX {
            if new_len <= old_len && new_len >= old_len / 2 {
                d.size.store(new_size, Ordering::Relaxed);
                self.resize_counter(old_size, new_size);
                return ptr;
            }
            // SAFETY: forwarded caller contract; d is the live descriptor of ptr.
            return unsafe { self.resize_by_copy(src, desc, ptr, new_size) };
        }
        if new_len <= old_len {
            // Under Miri a mapping is one System allocation that cannot be split: keep the tail.
            #[cfg(not(miri))]
            if new_len < old_len {
                // SAFETY: ptr + new_len is inside the mapping (new_len < old_len).
                let tail = unsafe { NonNull::new_unchecked(ptr.add(new_len)) };
                // SAFETY: the tail pages belong to this object's mapping and lie beyond the new size; the
                // caller owns the object.
                unsafe { src_unmap(src, tail, old_len - new_len) };
                d.map_len.store(new_len, Ordering::Relaxed);
                self.mapped.fetch_sub(old_len - new_len, Ordering::Relaxed);
            }
            d.size.store(new_size, Ordering::Relaxed);
            self.resize_counter(old_size, new_size);
            return ptr;
        }
        // SAFETY: forwarded caller contract; d is the live descriptor of ptr.
        unsafe { self.grow(src, desc, ptr, new_size, new_len, align_eff) }
    }

    fn resize_counter(&self, old_size: usize, new_size: usize) {
        if new_size >= old_size {
            self.live_bytes
                .fetch_add(new_size - old_size, Ordering::Relaxed);
        } else {
            self.live_bytes
                .fetch_sub(old_size - new_size, Ordering::Relaxed);
        }
    }

    /// Resizes by moving: a new object (from the span cache if one fits), a copy of the bytes both
    /// sizes keep, the old object freed (its mapping cached). Null, with the old object intact, if
    /// no memory could be had.
    ///
    /// # Safety
    /// As for `realloc`; `desc` is the live descriptor of `ptr`.
    unsafe fn resize_by_copy(
        &self,
        src: &PageSource,
        desc: *mut LargeDesc,
        ptr: *mut u8,
        new_size: usize,
    ) -> *mut u8 {
        // SAFETY: caller contract: a live descriptor.
        let d = unsafe { &*desc };
        let keep = d.size().min(new_size);
        let Ok(new) = self.try_alloc(src, new_size, d.align(), d.node()) else {
            return ptr::null_mut();
        };
        // SAFETY: both objects are live and distinct, each at least `keep` bytes long.
        unsafe { ptr::copy_nonoverlapping(ptr, new.as_ptr(), keep) };
        self.grow_copies.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded caller contract; ptr is a live object of ours, no longer used.
        let _ = unsafe { self.free(src, ptr) };
        new.as_ptr()
    }

    /// Grow without mremap (Miri): allocate, copy, free.
    ///
    /// # Safety
    /// As for `realloc`; `desc` is the live descriptor of `ptr`.
    #[cfg(miri)]
    unsafe fn grow(
        &self,
        src: &PageSource,
        desc: *mut LargeDesc,
        ptr: *mut u8,
        new_size: usize,
        _new_len: usize,
        _align_eff: usize,
    ) -> *mut u8 {
        // SAFETY: forwarded caller contract.
        unsafe { self.resize_by_copy(src, desc, ptr, new_size) }
    }

    /// Grow by moving the pages into a fresh aligned mapping with
    /// `mremap(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP)`: the page tables move, nothing is copied,
    /// and the old range stays mapped (empty) so it can be returned through the page source with exact
    /// accounting and no window in which another thread could map at the old address. If the kernel refuses
    /// (old kernels, a range made of several VMAs), the contents are copied instead.
    ///
    /// # Safety
    /// As for `realloc`; `desc` is the live descriptor of `ptr`.
    #[cfg(not(miri))]
    unsafe fn grow(
        &self,
        src: &PageSource,
        desc: *mut LargeDesc,
        ptr: *mut u8,
        new_size: usize,
        new_len: usize,
        align_eff: usize,
    ) -> *mut u8 {
        // SAFETY: caller contract: a live descriptor.
        let d = unsafe { &*desc };
        let (old_len, old_size, node) = (d.mapped_len(), d.size(), d.node());
        let Some(old) = NonNull::new(ptr) else {
            return ptr::null_mut();
        };
        let Ok((new, len, _dirty)) = self.obtain(src, new_len, align_eff, node) else {
            return ptr::null_mut();
        };
        // Register the new start first: if that fails the old object is untouched.
        let value = desc.expose_provenance() | TAG_LARGE;
        if !pagemap::set(new.as_ptr() as usize, 1, value) {
            // SAFETY: the new mapping was never handed out or registered.
            unsafe { self.release_span(src, new, len, node) };
            return ptr::null_mut();
        }
        // SAFETY: [ptr, ptr+old_len) is the object's mapping (owned by the caller) and
        // [new, new+old_len) lies inside the fresh mapping of len > old_len bytes; the ranges are disjoint.
        // MREMAP_FIXED replaces the target pages atomically; on failure nothing changes.
        let moved = unsafe {
            libc::mremap(
                ptr.cast(),
                old_len,
                old_len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED | libc::MREMAP_DONTUNMAP,
                new.as_ptr().cast::<libc::c_void>(),
            )
        };
        if moved == libc::MAP_FAILED {
            // SAFETY: as above, both ranges are live and disjoint; old_len <= len.
            unsafe { ptr::copy_nonoverlapping(ptr, new.as_ptr(), old_len) };
            self.grow_copies.fetch_add(1, Ordering::Relaxed);
        } else {
            self.grow_moves.fetch_add(1, Ordering::Relaxed);
        }
        d.base.store(new.as_ptr(), Ordering::Relaxed);
        d.map_len.store(len, Ordering::Relaxed);
        d.size.store(new_size, Ordering::Relaxed);
        pagemap::clear(ptr as usize, 1);
        self.resize_counter(old_size, new_size);
        // SAFETY: the old range is still mapped (DONTUNMAP left it empty, or the copy left it intact),
        // unregistered, and no longer used.
        unsafe { self.release_span(src, old, old_len, node) };
        new.as_ptr()
    }

    /// Usable size of a large object (its mapping length, a page multiple ≥ the requested size), or `None`
    /// if `ptr` is not the start of a live large object of this tier.
    ///
    /// # Safety
    /// No other thread frees or reallocates `ptr` concurrently.
    pub unsafe fn usable_size(&self, ptr: *mut u8) -> Option<usize> {
        // SAFETY: forwarded caller contract.
        unsafe { self.desc_of(ptr) }.ok().map(LargeDesc::mapped_len)
    }

    /// The descriptor of the live large object starting at `ptr`.
    ///
    /// # Safety
    /// No other thread frees or reallocates `ptr` concurrently, and the reference is not used after `ptr`
    /// is freed or reallocated.
    pub unsafe fn lookup(&self, ptr: *mut u8) -> Option<&LargeDesc> {
        // SAFETY: forwarded caller contract.
        unsafe { self.desc_of(ptr) }.ok()
    }

    /// The live object of this tier whose mapping contains `addr` (anywhere, not only at its start):
    /// `(start, mapped length)`. Only an object's first unit is registered in the page map, so this scans
    /// backwards from `addr`'s unit, at most `max_units` units, to the nearest registered unit. A cold path
    /// for error reports (an interior pointer past an object's first unit is otherwise unknown to the page
    /// map); racy against a concurrent free of that object, which is the caller's bug being reported.
    pub fn containing(&self, addr: usize, max_units: usize) -> Option<(usize, usize)> {
        let mut unit = addr & !(UNIT - 1);
        for _ in 0..=max_units {
            let v = pagemap::get(unit);
            if v != 0 {
                if v & TAG_MASK != TAG_LARGE {
                    return None;
                }
                let d = ptr::with_exposed_provenance::<LargeDesc>(v & !TAG_MASK);
                // SAFETY: TAG_LARGE values name live descriptors in metadata memory (see `desc_ptr`);
                // metadata memory stays mapped, so even a descriptor freed meanwhile reads as plain data.
                let r = unsafe { &*d };
                if r.owner != self as *const LargeTier as usize {
                    return None;
                }
                let (base, len) = (r.base() as usize, r.mapped_len());
                return (addr >= base && addr - base < len).then_some((base, len));
            }
            unit = unit.checked_sub(UNIT)?;
        }
        None
    }

    /// Unmaps every cached mapping; returns the bytes released.
    pub fn trim_cache(&self, src: &PageSource) -> usize {
        let taken = self.with_cache(|cache| {
            let out = *cache;
            *cache = [Slot::EMPTY; CACHE_SLOTS];
            out
        });
        let mut released = 0;
        for s in taken.iter() {
            if let Some(p) = NonNull::new(s.ptr) {
                // SAFETY: cached mappings are whole, unregistered and unused; we removed them from the cache.
                unsafe { src_unmap(src, p, s.len) };
                released += s.len;
            }
        }
        let dirty: usize = taken.iter().filter(|s| s.dirty).map(|s| s.len).sum();
        self.dirty.fetch_sub(dirty, Ordering::Relaxed);
        self.cached.fetch_sub(released, Ordering::Relaxed);
        self.mapped.fetch_sub(released, Ordering::Relaxed);
        released
    }

    /// Sum of the requested sizes of live objects.
    pub fn live_bytes(&self) -> usize {
        self.live_bytes.load(Ordering::Relaxed)
    }

    /// Number of live objects.
    pub fn live_count(&self) -> usize {
        self.live_count.load(Ordering::Relaxed)
    }

    /// Bytes of mappings held by the tier: live objects' mappings plus cached ones.
    pub fn mapped_bytes(&self) -> usize {
        self.mapped.load(Ordering::Relaxed)
    }

    /// Bytes of cached (decommitted) mappings.
    pub fn cached_bytes(&self) -> usize {
        self.cached.load(Ordering::Relaxed)
    }

    /// Allocations served from the span cache so far.
    pub fn cache_hits(&self) -> usize {
        self.cache_hits.load(Ordering::Relaxed)
    }

    /// Growing reallocations done by moving pages with `mremap` (no copy).
    pub fn grow_moves(&self) -> usize {
        self.grow_moves.load(Ordering::Relaxed)
    }

    /// Growing reallocations done by copying (Miri, or the kernel refused the move).
    pub fn grow_copies(&self) -> usize {
        self.grow_copies.load(Ordering::Relaxed)
    }

    /// Fork prepare hook: takes the tier's lock.
    pub fn lock_for_fork(&self) {
        self.lock.lock();
    }

    /// Fork parent/child hook: releases the lock taken by [`LargeTier::lock_for_fork`]; safe in the child.
    ///
    /// # Safety
    /// Must follow `lock_for_fork` on this tier by this thread (in the child: by the forking thread).
    pub unsafe fn unlock_after_fork(&self) {
        // SAFETY: caller contract: the lock is held on our behalf.
        unsafe { self.lock.unlock() }
    }
}

/// Index of a free slot if `node` has fewer than CACHE_PER_NODE cached mappings.
fn room(cache: &[Slot; CACHE_SLOTS], node: Option<NodeId>) -> Option<usize> {
    let used = cache
        .iter()
        .filter(|s| !s.ptr.is_null() && s.node == node)
        .count();
    if used >= CACHE_PER_NODE {
        return None;
    }
    cache.iter().position(|s| s.ptr.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Natively every byte; under Miri (slow) a sample of bytes in every page.
    const STEP: usize = if cfg!(miri) { 509 } else { 1 };

    fn fill(p: *mut u8, len: usize, seed: u8) {
        for i in (0..len).step_by(STEP) {
            // SAFETY: the tests only fill memory they own.
            unsafe { p.add(i).write(seed.wrapping_add((i / 4096) as u8)) };
        }
    }

    fn check(p: *const u8, len: usize, seed: u8) -> bool {
        (0..len).step_by(STEP).all(|i| {
            // SAFETY: the tests only read memory they own.
            unsafe { p.add(i).read() == seed.wrapping_add((i / 4096) as u8) }
        })
    }

    fn is_zero(p: *const u8, len: usize) -> bool {
        (0..len).step_by(STEP).all(|i| {
            // SAFETY: the tests only read memory they own.
            unsafe { p.add(i).read() == 0 }
        })
    }

    #[test]
    fn limits_reject_bad_layouts() {
        assert_eq!(limits(1, 3), Err(LargeError::InvalidLayout));
        assert_eq!(
            limits(isize::MAX as usize, 8),
            Err(LargeError::InvalidLayout)
        );
        assert_eq!(limits(usize::MAX, 8), Err(LargeError::InvalidLayout));
        let page = page_size();
        assert_eq!(limits(0, 8), Ok((page, UNIT)));
        assert_eq!(limits(page + 1, 1 << 21), Ok((2 * page, 1 << 21)));
    }

    #[test]
    fn tags_fit_descriptor_alignment() {
        assert!(std::mem::align_of::<LargeDesc>() > TAG_MASK);
        const { assert!(super::super::meta::META_MIN_BLOCK > TAG_MASK) };
    }

    #[test]
    fn alloc_free_realloc_roundtrip() {
        let src = PageSource::new();
        let tier = LargeTier::new();
        let size = 100_000;
        let p = tier.alloc(&src, size, 8, None);
        assert!(!p.is_null());
        assert_eq!(p as usize % UNIT, 0);
        let v = pagemap::get(p as usize);
        assert_eq!(v & TAG_MASK, TAG_LARGE);
        assert_eq!(tier.live_count(), 1);
        assert_eq!(tier.live_bytes(), size);
        // SAFETY: p is a live object of this tier owned by this test.
        unsafe {
            let usable = tier.usable_size(p).unwrap();
            assert!(usable >= size && usable % page_size() == 0);
            assert_eq!(tier.mapped_bytes(), usable);
            let d = tier.lookup(p).unwrap();
            assert_eq!(
                (d.base(), d.size(), d.align(), d.node()),
                (p, size, 8, None)
            );
            fill(p, size, 3);
            // Within COPY_RESIZE_MAX a resize moves by copying (into a cached mapping if one fits).
            let q = tier.realloc(&src, p, 700_000);
            assert!(!q.is_null());
            assert_ne!(q, p);
            assert!(check(q, size, 3), "contents lost on grow");
            assert_eq!((tier.grow_moves(), tier.grow_copies()), (0, 1));
            assert_eq!(tier.live_bytes(), 700_000);
            assert_eq!(pagemap::get(q as usize) & TAG_MASK, TAG_LARGE);
            assert_eq!(tier.usable_size(p), None);
            fill(q, 700_000, 9);
            // At least half the old length: in place, nothing unmapped.
            let mapped = tier.mapped_bytes();
            let r = tier.realloc(&src, q, 400_000);
            assert_eq!(r, q, "shrink to at least half stays in place");
            assert_eq!(tier.mapped_bytes(), mapped);
            assert!(check(r, 400_000, 9));
            // Below half: moved, the bytes kept copied.
            let r2 = tier.realloc(&src, r, 70_000);
            assert!(!r2.is_null());
            assert_ne!(r2, r);
            assert!(check(r2, 70_000, 9));
            assert_eq!(tier.grow_copies(), 2);
            assert_eq!(tier.live_bytes(), 70_000);
            assert_eq!(tier.live_count(), 1);
            tier.free(&src, r2).unwrap();
            assert_eq!(pagemap::get(r2 as usize), 0);
            assert_eq!(tier.free(&src, r2), Err(LargeError::Foreign));
            // Beyond COPY_RESIZE_MAX growing moves the pages (mremap), shrinking stays in place.
            let big = COPY_RESIZE_MAX + 100_000;
            let b = tier.alloc(&src, big, 8, None);
            assert!(!b.is_null());
            fill(b, big, 5);
            let c = tier.realloc(&src, b, big + 300_000);
            assert!(!c.is_null());
            assert!(check(c, big, 5), "contents lost on grow");
            assert_eq!(tier.grow_moves() + tier.grow_copies(), 3);
            // The zero-copy path works on the kernels hotslab supports (MREMAP_DONTUNMAP, Linux >= 5.7).
            #[cfg(not(miri))]
            assert_eq!(tier.grow_moves(), 1, "mremap move was refused");
            let e = tier.realloc(&src, c, big);
            assert_eq!(e, c, "shrink stays in place");
            assert!(check(e, big, 5));
            assert_eq!(tier.live_bytes(), big);
            tier.free(&src, e).unwrap();
        }
        assert_eq!(tier.live_count(), 0);
        assert_eq!(tier.live_bytes(), 0);
        assert_eq!(tier.mapped_bytes(), tier.cached_bytes());
        tier.trim_cache(&src);
        assert_eq!(tier.mapped_bytes(), 0);
        assert_eq!(src.mapped_bytes(), 0);
    }

    #[test]
    fn foreign_and_interior_pointers_are_refused() {
        let src = PageSource::new();
        let tier = LargeTier::new();
        let other = LargeTier::new();
        let local = 5u64;
        let boxed = Box::new([0u8; 64]);
        let p = tier.alloc(&src, 200_000, 8, None);
        assert!(!p.is_null());
        // SAFETY: only invalid pointers are passed besides p, which we own.
        unsafe {
            let stack = &local as *const u64 as *mut u8;
            assert_eq!(tier.free(&src, stack), Err(LargeError::Foreign));
            assert_eq!(
                tier.free(&src, boxed.as_ptr() as *mut u8),
                Err(LargeError::Foreign)
            );
            assert_eq!(tier.free(&src, ptr::null_mut()), Err(LargeError::Foreign));
            assert_eq!(tier.free(&src, p.add(16)), Err(LargeError::NotLarge));
            // Beyond the first unit the object is not registered at all.
            assert_eq!(tier.free(&src, p.add(UNIT)), Err(LargeError::Foreign));
            assert_eq!(other.free(&src, p), Err(LargeError::Foreign));
            assert!(tier.realloc(&src, p.add(16), 10).is_null());
            assert_eq!(tier.usable_size(stack), None);
            assert!(tier.lookup(p.add(8)).is_none());
            assert_eq!(tier.live_count(), 1);
            tier.free(&src, p).unwrap();
        }
        tier.trim_cache(&src);
        assert_eq!(src.mapped_bytes(), 0);
    }

    #[test]
    fn huge_sizes_and_bad_alignments_give_null() {
        let src = PageSource::new();
        let tier = LargeTier::new();
        assert!(tier.alloc(&src, isize::MAX as usize, 8, None).is_null());
        assert!(tier.alloc(&src, usize::MAX, 8, None).is_null());
        assert!(tier
            .alloc(&src, isize::MAX as usize - UNIT, 8, None)
            .is_null());
        assert!(tier.alloc(&src, 100_000, 3, None).is_null());
        assert_eq!(
            tier.try_alloc(&src, 100_000, 0, None),
            Err(LargeError::InvalidLayout)
        );
        let p = tier.alloc(&src, 100_000, 8, None);
        assert!(!p.is_null());
        fill(p, 100_000, 1);
        // SAFETY: p is ours.
        unsafe {
            assert!(tier.realloc(&src, p, isize::MAX as usize).is_null());
            assert!(tier.realloc(&src, p, usize::MAX).is_null());
            assert!(check(p, 100_000, 1), "failed realloc must keep the block");
            assert_eq!(tier.usable_size(p), round_up(100_000, page_size()));
            tier.free(&src, p).unwrap();
        }
        assert_eq!(tier.live_count(), 0);
        assert_eq!(tier.live_bytes(), 0);
        tier.trim_cache(&src);
        assert_eq!(src.mapped_bytes(), 0);
    }

    #[test]
    fn span_cache_reuses_freed_mappings() {
        let src = PageSource::new();
        let tier = LargeTier::new();
        let p = tier.alloc(&src, 1 << 20, 8, None);
        assert!(!p.is_null());
        fill(p, 1 << 20, 0x11);
        // SAFETY: p is ours.
        unsafe { tier.free(&src, p).unwrap() };
        assert_eq!(tier.cached_bytes(), 1 << 20);
        assert_eq!(tier.mapped_bytes(), 1 << 20);
        let maps = src.maps();
        let q = tier.alloc(&src, (1 << 20) - 5000, 8, None);
        assert_eq!(q, p, "the cached mapping is reused");
        assert_eq!(src.maps(), maps, "no new mapping");
        assert_eq!(tier.cache_hits(), 1);
        assert_eq!(tier.cached_bytes(), 0);
        // Reused soon, the mapping was still committed: no page fault, but old contents, so a
        // zeroing allocation must clear it.
        // SAFETY: q is ours.
        assert!(unsafe { tier.needs_zeroing(q) });
        // SAFETY: q is ours; after a purge the cached mapping is decommitted and reads as zero.
        unsafe { tier.free(&src, q).unwrap() };
        assert_eq!(tier.purge(&src), 1 << 20);
        let q = tier.alloc(&src, (1 << 20) - 5000, 8, None);
        assert_eq!(q, p, "the decommitted mapping is reused");
        // SAFETY: q is ours.
        assert!(!unsafe { tier.needs_zeroing(q) });
        assert!(is_zero(q, 1 << 20));
        // A much smaller request does not take a big cached mapping; another node's mappings are not used.
        // SAFETY: q is ours.
        unsafe { tier.free(&src, q).unwrap() };
        let small = tier.alloc(&src, 100_000, 8, None);
        assert_ne!(small, q);
        // SAFETY: small is ours.
        unsafe { tier.free(&src, small).unwrap() };
        assert_eq!(
            tier.cached_bytes(),
            (1 << 20) + round_up(100_000, page_size()).unwrap()
        );
        // Per-node limit.
        let mut ptrs = [ptr::null_mut(); CACHE_PER_NODE + 2];
        for p in ptrs.iter_mut() {
            *p = tier.alloc(&src, 3 << 20, 8, None);
            assert!(!p.is_null());
        }
        for &p in ptrs.iter() {
            // SAFETY: ours.
            unsafe { tier.free(&src, p).unwrap() };
        }
        let cached = tier.with_cache(|c| c.iter().filter(|s| !s.ptr.is_null()).count());
        assert_eq!(cached, CACHE_PER_NODE);
        assert_eq!(tier.mapped_bytes(), tier.cached_bytes());
        let released = tier.trim_cache(&src);
        assert!(released > 0);
        assert_eq!(tier.cached_bytes(), 0);
        assert_eq!(tier.mapped_bytes(), 0);
        assert_eq!(src.mapped_bytes(), 0);
    }

    #[test]
    fn big_objects_are_not_cached() {
        let src = PageSource::new();
        let tier = LargeTier::new();
        let p = tier.alloc(&src, DIRTY_MAX_SPAN + 1, 8, None);
        assert!(!p.is_null());
        // SAFETY: ours.
        unsafe { tier.free(&src, p).unwrap() };
        assert_eq!(tier.cached_bytes(), 0);
        assert_eq!(tier.mapped_bytes(), 0);
        assert_eq!(src.mapped_bytes(), 0);
        // Between the two limits: cached committed for a quick reuse, unmapped by the purge.
        let p = tier.alloc(&src, CACHE_MAX_SPAN + 1, 8, None);
        // SAFETY: ours.
        unsafe { tier.free(&src, p).unwrap() };
        assert!(tier.cached_bytes() > CACHE_MAX_SPAN);
        let q = tier.alloc(&src, CACHE_MAX_SPAN + 1, 8, None);
        assert_eq!(q, p, "reused without a new mapping");
        // SAFETY: ours.
        unsafe { tier.free(&src, q).unwrap() };
        assert!(tier.purge(&src) > CACHE_MAX_SPAN);
        assert_eq!(tier.cached_bytes(), 0);
        assert_eq!(src.mapped_bytes(), 0);
    }

    #[test]
    fn two_mib_alignment() {
        let src = PageSource::new();
        let tier = LargeTier::new();
        let align = 2 << 20;
        let p = tier.alloc(&src, 300_000, align, None);
        assert!(!p.is_null());
        assert_eq!(p as usize % align, 0);
        fill(p, 300_000, 5);
        // SAFETY: ours.
        unsafe {
            let q = tier.realloc(&src, p, 5 << 20);
            assert!(!q.is_null());
            assert_eq!(q as usize % align, 0, "grow keeps the alignment");
            assert!(check(q, 300_000, 5));
            tier.free(&src, q).unwrap();
        }
        tier.trim_cache(&src);
        assert_eq!(src.mapped_bytes(), 0);
    }

    #[cfg_attr(miri, ignore)]
    #[test]
    fn one_gib_alignment() {
        let src = PageSource::new();
        let tier = LargeTier::new();
        let align = 1 << 30;
        let p = tier.alloc(&src, 40_000, align, None);
        assert!(!p.is_null());
        assert_eq!(p as usize % align, 0);
        fill(p, 40_000, 8);
        // SAFETY: ours.
        unsafe {
            assert_eq!(tier.lookup(p).unwrap().align(), align);
            let q = tier.realloc(&src, p, 200_000);
            assert_eq!(q as usize % align, 0);
            assert!(check(q, 40_000, 8));
            tier.free(&src, q).unwrap();
        }
        tier.trim_cache(&src);
        assert_eq!(src.mapped_bytes(), 0);
    }

    #[test]
    fn mapping_failure_gives_null_and_keeps_the_old_block() {
        let src = PageSource::new();
        let tier = LargeTier::new();
        let p = tier.alloc(&src, 100_000, 8, None);
        assert!(!p.is_null());
        fill(p, 100_000, 0x33);
        src.fail_after(0);
        assert!(tier.alloc(&src, 100_000, 8, None).is_null());
        assert_eq!(
            tier.try_alloc(&src, 100_000, 8, None),
            Err(LargeError::NoMemory)
        );
        // SAFETY: p is ours.
        unsafe {
            assert!(tier.realloc(&src, p, 1 << 21).is_null());
            assert!(check(p, 100_000, 0x33));
            assert_eq!(tier.usable_size(p), round_up(100_000, page_size()));
        }
        src.clear_faults();
        // SAFETY: ours.
        unsafe { tier.free(&src, p).unwrap() };
        assert_eq!(tier.live_count(), 0);
        tier.trim_cache(&src);
        assert_eq!(src.mapped_bytes(), 0);
    }

    #[cfg_attr(miri, ignore)]
    #[test]
    fn node_binding_and_missing_nodes() {
        let src = PageSource::new();
        let tier = LargeTier::new();
        let node0 = Some(NodeId::new(0));
        let p = tier.alloc(&src, 200_000, 8, node0);
        assert!(!p.is_null());
        // SAFETY: ours.
        unsafe {
            assert_eq!(tier.lookup(p).unwrap().node(), node0);
            let q = tier.realloc(&src, p, 900_000);
            assert_eq!(tier.lookup(q).unwrap().node(), node0);
            tier.free(&src, q).unwrap();
        }
        assert_eq!(
            tier.try_alloc(&src, 200_000, 8, Some(NodeId::new(1000))),
            Err(LargeError::NodeGone)
        );
        // Cached mappings of node 0 are not handed to other nodes' requests.
        let cached = tier.cached_bytes();
        assert!(cached > 0);
        let r = tier.alloc(&src, 200_000, 8, None);
        assert_eq!(tier.cache_hits(), 0);
        // SAFETY: ours.
        unsafe { tier.free(&src, r).unwrap() };
        tier.trim_cache(&src);
        assert_eq!(src.mapped_bytes(), 0);
    }

    #[test]
    fn threads_allocate_and_free() {
        static SRC: PageSource = PageSource::new();
        static TIER: LargeTier = LargeTier::new();
        let threads = if cfg!(miri) { 2 } else { 4 };
        let rounds = if cfg!(miri) { 3 } else { 200 };
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..rounds {
                        let size = 40_000 + (i % 5) * 70_000 + t * 4096;
                        let p = TIER.alloc(&SRC, size, 8, None);
                        assert!(!p.is_null());
                        fill(p, 4096, t as u8);
                        // SAFETY: p is ours.
                        unsafe {
                            let q = TIER.realloc(&SRC, p, size * 2);
                            assert!(!q.is_null());
                            assert!(check(q, 4096, t as u8));
                            TIER.free(&SRC, q).unwrap();
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(TIER.live_count(), 0);
        assert_eq!(TIER.live_bytes(), 0);
        assert_eq!(TIER.mapped_bytes(), TIER.cached_bytes());
        TIER.trim_cache(&SRC);
        assert_eq!(SRC.mapped_bytes(), 0);
    }

    #[cfg(not(miri))]
    #[test]
    fn cached_spans_are_decommitted() {
        let src = PageSource::new();
        let tier = LargeTier::new();
        let len = 512 << 10;
        let p = tier.alloc(&src, len, 8, None);
        assert!(!p.is_null());
        fill(p, len, 1);
        let page = page_size();
        let resident = |p: *mut u8| {
            let mut vec = [0u8; 1024];
            // SAFETY: [p, p+len) is mapped (live or cached) and vec holds len/page entries.
            assert_eq!(unsafe { libc::mincore(p.cast(), len, vec.as_mut_ptr()) }, 0);
            vec[..len / page].iter().filter(|&&v| v & 1 != 0).count()
        };
        assert_eq!(resident(p), len / page);
        // SAFETY: ours.
        unsafe { tier.free(&src, p).unwrap() };
        assert_eq!(tier.cached_bytes(), len);
        assert_eq!(resident(p), len / page, "freshly cached: still committed");
        assert_eq!(tier.purge(&src), len);
        assert_eq!(tier.cached_bytes(), len);
        assert_eq!(resident(p), 0, "a purged cached mapping holds no RSS");
        assert_eq!(tier.trim_cache(&src), len);
        assert_eq!(src.mapped_bytes(), 0);
    }

    #[test]
    fn fork_hooks() {
        let tier = LargeTier::new();
        tier.lock_for_fork();
        assert!(tier.lock.is_locked());
        // SAFETY: taken above by this thread.
        unsafe { tier.unlock_after_fork() };
        assert!(!tier.lock.is_locked());
    }
}
