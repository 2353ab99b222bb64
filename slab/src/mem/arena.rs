//! Per-node arenas: slab spans (k contiguous 64 KiB units) carved from 64 MiB chunks that are mapped and
//! bound to the node once, so the process does not create one mapping (and one mbind) per slab and stays far
//! below `vm.max_map_count`. It owns the chunks, their free bitmaps and its lock; it must not touch the
//! page map (callers register the spans they carve) or the contents of spans it hands out.
//!
//! Spans handed out always read as zero: chunks come zeroed from the OS and freed spans are decommitted
//! (MADV_DONTNEED through the `PageSource`) before they can be handed out again.

use super::meta::{meta_alloc, meta_free};
use super::pagemap::UNIT;
use super::{src_decommit, src_unmap, RawLock};
use crossbeam_utils::CachePadded;
use hotslab_numa::{MapError, NodeId, PageSource, Span};
use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Size (and alignment) of one arena chunk: 64 MiB.
pub const CHUNK: usize = 64 << 20;
/// Units per chunk (the largest span an arena can hand out).
pub const CHUNK_UNITS: usize = CHUNK / UNIT;
const WORDS: usize = CHUNK_UNITS / 64;
/// The region a transparent huge page covers (2 MiB on x86-64): the unit of the arena's huge-page
/// advice ([`NodeArena::set_huge_pages_after`]). A chunk holds 32 of them, one bit each.
pub const HUGE_REGION: usize = 2 << 20;
const REGION_UNITS: usize = HUGE_REGION / UNIT;
const _: () = assert!(CHUNK / HUGE_REGION <= 32);

/// Why an arena could not serve or take back a span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArenaError {
    /// The node is gone (mbind refused it): fall back to another node.
    NodeGone,
    /// The OS refused memory (mmap failed or metadata ran out).
    NoMemory,
    /// `k` is 0 or larger than [`CHUNK_UNITS`].
    BadSize,
    /// The span is not a live span of this arena (foreign pointer, misaligned, or already free).
    NotOwned,
    /// `release_all` while spans are still handed out.
    Busy,
}

impl fmt::Display for ArenaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArenaError::NodeGone => "node is gone",
            ArenaError::NoMemory => "out of memory",
            ArenaError::BadSize => "span size out of range",
            ArenaError::NotOwned => "span is not a live span of this arena",
            ArenaError::Busy => "arena still has live spans",
        })
    }
}

impl std::error::Error for ArenaError {}

impl From<MapError> for ArenaError {
    fn from(e: MapError) -> Self {
        match e {
            MapError::NodeGone => ArenaError::NodeGone,
            _ => ArenaError::NoMemory,
        }
    }
}

/// A range to advise for huge pages once the arena's lock is dropped.
type Advice = Option<(NonNull<u8>, usize)>;

/// One 64 MiB chunk; lives in metadata memory.
struct Chunk {
    span: Span,
    /// Units that exist in this chunk (`span.len / UNIT`, at most CHUNK_UNITS).
    units: usize,
    /// Bit set = unit free. Bits at or beyond `units` are always clear.
    free: [u64; WORDS],
    free_units: usize,
    /// Bit r set = the 2 MiB region r was advised for huge pages.
    huge: u32,
    next: *mut Chunk,
}

impl Chunk {
    fn base(&self) -> usize {
        self.span.ptr.as_ptr() as usize
    }

    fn contains(&self, addr: usize, len: usize) -> bool {
        let base = self.base();
        addr >= base && addr - base <= self.units * UNIT && len <= self.units * UNIT - (addr - base)
    }
}

struct Inner {
    head: *mut Chunk,
    chunks: usize,
}

struct Locked {
    lock: RawLock,
    inner: UnsafeCell<Inner>,
}

/// The arena of one node of a slab domain.
///
/// Every operation that changes chunks takes the arena's lock (a slow path: slab creation and release);
/// the counters can be read without it. Methods that map or unmap take the domain's `&PageSource`, which
/// must be the same one for the whole life of the arena.
///
/// The arena has no `Drop`: call [`NodeArena::release_all`] to give its chunks back (a dropped arena with
/// chunks leaks them). Moving an arena is fine: nothing refers back to it.
///
/// ```
/// use hotslab::mem::{NodeArena, UNIT};
/// use hotslab_numa::{NodeId, PageSource};
/// static SRC: PageSource = PageSource::new();
/// let arena = NodeArena::new(NodeId::new(0), None);
/// let span = arena.alloc_units(&SRC, 2).unwrap();
/// assert_eq!(span.as_ptr() as usize % UNIT, 0);
/// assert_eq!(arena.committed_bytes(), 2 * UNIT);
/// unsafe { arena.free_units(&SRC, span, 2).unwrap() };
/// arena.release_all(&SRC).unwrap();
/// ```
pub struct NodeArena {
    node: NodeId,
    real_node: Option<NodeId>,
    state: CachePadded<Locked>,
    committed: AtomicUsize,
    reserved: AtomicUsize,
    /// Committed bytes from which newly handed-out regions get huge-page advice (usize::MAX: never).
    huge_after: AtomicUsize,
}

// SAFETY: the chunk list behind `state.inner` is only accessed with `state.lock` held; the chunks are
// process-wide mappings and metadata blocks, not tied to any thread.
unsafe impl Sync for NodeArena {}
// SAFETY: as above; the raw pointers are owned by the arena and valid from any thread.
unsafe impl Send for NodeArena {}

impl NodeArena {
    /// An empty arena for `node`; its chunks are bound (MPOL_PREFERRED) to `real_node`, the physical node
    /// behind it (None: no binding).
    pub const fn new(node: NodeId, real_node: Option<NodeId>) -> Self {
        NodeArena {
            node,
            real_node,
            state: CachePadded::new(Locked {
                lock: RawLock::new(),
                inner: UnsafeCell::new(Inner {
                    head: ptr::null_mut(),
                    chunks: 0,
                }),
            }),
            committed: AtomicUsize::new(0),
            reserved: AtomicUsize::new(0),
            huge_after: AtomicUsize::new(usize::MAX),
        }
    }

    /// Constructs an empty arena in place (for arrays of arenas in metadata memory).
    ///
    /// # Safety
    /// `this` is valid for writes of a `NodeArena` and properly aligned; any arena previously there is
    /// overwritten without being released.
    pub unsafe fn init(this: *mut NodeArena, node: NodeId, real_node: Option<NodeId>) {
        // SAFETY: caller contract.
        unsafe { this.write(NodeArena::new(node, real_node)) }
    }

    /// The (possibly virtual) node this arena serves.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The physical node its chunks are bound to.
    pub fn real_node(&self) -> Option<NodeId> {
        self.real_node
    }

    /// Transparent huge pages for big heaps: once this arena has handed out at least `bytes` (and
    /// from then on), each 2 MiB region of a chunk that a new span reaches is advised
    /// `MADV_HUGEPAGE`, once, before the span is handed out, so its pages fault in as 2 MiB pages
    /// (one fault instead of 512, and one TLB entry) where the kernel has them. `None` (the
    /// default) never advises; `Some(0)` advises from the first span. Below the threshold a
    /// small program keeps 4 KiB pages, so its resident size does not grow to whole 2 MiB
    /// regions it barely uses. Decommitting a slab inside an advised region splits that huge page
    /// (the kernel's business; contents and accounting stay right).
    pub fn set_huge_pages_after(&self, bytes: Option<usize>) {
        self.huge_after
            .store(bytes.unwrap_or(usize::MAX), Ordering::Relaxed);
    }

    /// The threshold set by [`NodeArena::set_huge_pages_after`].
    pub fn huge_pages_after(&self) -> Option<usize> {
        let t = self.huge_after.load(Ordering::Relaxed);
        (t != usize::MAX).then_some(t)
    }

    fn with_inner<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let _g = self.state.lock.guard();
        // SAFETY: the lock is held for the whole life of the reference, so it is unique.
        f(unsafe { &mut *self.state.inner.get() })
    }

    /// Hands out `k` contiguous units (`k * UNIT` bytes, UNIT-aligned, reading as zero), mapping a new chunk
    /// bound to the real node if no chunk has room. `k` may be 1..=[`CHUNK_UNITS`].
    ///
    /// Errors: `BadSize` for k out of range, `NodeGone` if the node was removed (the caller should fall
    /// back to another node), `NoMemory` if the OS refused memory.
    pub fn alloc_units(&self, src: &PageSource, k: usize) -> Result<NonNull<u8>, ArenaError> {
        if k == 0 || k > CHUNK_UNITS {
            return Err(ArenaError::BadSize);
        }
        let (span, advice) = self.with_inner(|inner| {
            let mut c = inner.head;
            while !c.is_null() {
                // SAFETY: chunks on the list are live metadata blocks owned by the arena (lock held).
                let chunk = unsafe { &mut *c };
                if chunk.free_units >= k {
                    if let Some(start) = find_run(&chunk.free, k) {
                        return Ok(self.take(chunk, start, k));
                    }
                }
                c = chunk.next;
            }
            // No room: map a new chunk. Holding the lock while mapping keeps two threads from mapping two
            // chunks for one shortage; this happens once per 64 MiB of slabs.
            let chunk = self.new_chunk(src)?;
            // SAFETY: `new_chunk` returned a live, initialised, exclusively owned chunk descriptor.
            let chunk_ref = unsafe { &mut *chunk };
            chunk_ref.next = inner.head;
            inner.head = chunk;
            inner.chunks += 1;
            self.reserved
                .fetch_add(chunk_ref.units * UNIT, Ordering::Relaxed);
            match find_run(&chunk_ref.free, k) {
                Some(start) => Ok(self.take(chunk_ref, start, k)),
                // Only if the OS returned a span shorter than k units (never for a full chunk).
                None => Err(ArenaError::NoMemory),
            }
        })?;
        if let Some((p, len)) = advice {
            // Outside the lock: the regions are marked, so no other caller advises them again;
            // the span is ours and lies in a live chunk, which cannot be unmapped meanwhile.
            // SAFETY: [p, p + len) is 2 MiB aligned and inside the chunk's mapping (`take`).
            unsafe { src.advise_huge(p, len) };
        }
        Ok(span)
    }

    /// Hands out units `start..start + k` of `chunk` (lock held). Also returns the range to advise
    /// for huge pages, if the threshold is reached and the span reaches regions not yet advised
    /// (they are marked here, under the lock; the caller advises after dropping it).
    fn take(&self, chunk: &mut Chunk, start: usize, k: usize) -> (NonNull<u8>, Advice) {
        set_bits(&mut chunk.free, start, k, false);
        chunk.free_units -= k;
        let committed = self.committed.fetch_add(k * UNIT, Ordering::Relaxed) + k * UNIT;
        // SAFETY: start + k <= chunk.units, so the offset stays inside the chunk's mapping.
        let span = unsafe { chunk.span.ptr.add(start * UNIT) };
        if committed < self.huge_after.load(Ordering::Relaxed) {
            return (span, None);
        }
        let (r0, r1) = (start / REGION_UNITS, (start + k - 1) / REGION_UNITS);
        let mask = (((1u64 << (r1 + 1)) - 1) & !((1u64 << r0) - 1)) as u32;
        let new = mask & !chunk.huge;
        if new == 0 {
            return (span, None);
        }
        chunk.huge |= new;
        // From the first region not yet advised to the last (any advised one between them, left
        // by an odd pattern of frees, is advised again: harmless).
        let (lo, hi) = (
            new.trailing_zeros() as usize,
            31 - new.leading_zeros() as usize,
        );
        let end = ((hi + 1) * REGION_UNITS).min(chunk.units);
        // SAFETY: lo * REGION_UNITS <= start + k - 1 < chunk.units: inside the chunk's mapping.
        let p = unsafe { chunk.span.ptr.add(lo * REGION_UNITS * UNIT) };
        (span, Some((p, (end - lo * REGION_UNITS) * UNIT)))
    }

    fn new_chunk(&self, src: &PageSource) -> Result<*mut Chunk, ArenaError> {
        let span = src.map(CHUNK, CHUNK, self.real_node)?;
        let desc = meta_alloc(Layout::new::<Chunk>()).cast::<Chunk>();
        if desc.is_null() {
            // SAFETY: the span was just mapped through `src` and never handed out.
            unsafe { src_unmap(src, span.ptr, span.len) };
            return Err(ArenaError::NoMemory);
        }
        let units = (span.len / UNIT).min(CHUNK_UNITS);
        let mut free = [0u64; WORDS];
        set_bits(&mut free, 0, units, true);
        // SAFETY: desc is a fresh metadata block sized and aligned for a Chunk.
        unsafe {
            desc.write(Chunk {
                span,
                units,
                free,
                free_units: units,
                huge: 0,
                next: ptr::null_mut(),
            })
        };
        Ok(desc)
    }

    /// Takes back `k` units starting at `ptr` (as handed out by `alloc_units`; a span may also be returned
    /// in pieces, as long as every unit is returned once). The pages are decommitted first, so RSS drops and
    /// the units read as zero when handed out again. If the chunk becomes entirely free and the arena holds
    /// other chunks, the chunk is unmapped.
    ///
    /// Returns `NotOwned` (and changes nothing) if the range is not entirely made of live units of this
    /// arena, `BadSize` for k out of range.
    ///
    /// # Safety
    /// If the range is live in this arena, the caller owns it and no longer uses it (its memory is discarded);
    /// `src` is the arena's page source.
    pub unsafe fn free_units(
        &self,
        src: &PageSource,
        ptr: NonNull<u8>,
        k: usize,
    ) -> Result<(), ArenaError> {
        if k == 0 || k > CHUNK_UNITS {
            return Err(ArenaError::BadSize);
        }
        let addr = ptr.as_ptr() as usize;
        if addr % UNIT != 0 {
            return Err(ArenaError::NotOwned);
        }
        let len = k * UNIT;
        // Validate first: never decommit memory that is not a live span of ours.
        self.with_inner(|inner| match find_live(inner, addr, len) {
            Some(_) => Ok(()),
            None => Err(ArenaError::NotOwned),
        })?;
        // Decommit outside the lock: the units are still marked in use, so nobody else can be handed them.
        // SAFETY: the range is a live span of this arena's chunk (checked) owned by the caller (contract).
        unsafe { src_decommit(src, ptr, len) };
        let retired = self.with_inner(|inner| -> Result<*mut Chunk, ArenaError> {
            // Re-check: a racing (invalid) double free of the same span must not be counted twice.
            let (prev, c) = find_live(inner, addr, len).ok_or(ArenaError::NotOwned)?;
            // SAFETY: `find_live` returned a live chunk of this arena; the lock is held.
            let chunk = unsafe { &mut *c };
            let start = (addr - chunk.base()) / UNIT;
            set_bits(&mut chunk.free, start, k, true);
            chunk.free_units += k;
            self.committed.fetch_sub(len, Ordering::Relaxed);
            if chunk.free_units == chunk.units && inner.chunks > 1 {
                // Unlink the now empty chunk; it is unmapped after the lock is dropped.
                if prev.is_null() {
                    inner.head = chunk.next;
                } else {
                    // SAFETY: `prev` is the live chunk before `c` on the list (lock held).
                    unsafe { (*prev).next = chunk.next };
                }
                inner.chunks -= 1;
                self.reserved
                    .fetch_sub(chunk.units * UNIT, Ordering::Relaxed);
                return Ok(c);
            }
            Ok(ptr::null_mut())
        })?;
        if !retired.is_null() {
            // SAFETY: the chunk was unlinked under the lock, so it is exclusively ours and entirely free.
            unsafe { release_chunk(src, retired) };
        }
        Ok(())
    }

    /// Bytes of spans currently handed out.
    pub fn committed_bytes(&self) -> usize {
        self.committed.load(Ordering::Relaxed)
    }

    /// Bytes of chunks currently mapped (reserved address space, bound to the node).
    pub fn reserved_bytes(&self) -> usize {
        self.reserved.load(Ordering::Relaxed)
    }

    /// Number of chunks currently mapped.
    pub fn chunks(&self) -> usize {
        self.with_inner(|inner| inner.chunks)
    }

    /// Whether `addr` lies inside one of this arena's chunks (handed out or not). Takes the lock.
    pub fn owns(&self, addr: usize) -> bool {
        self.with_inner(|inner| {
            let mut c = inner.head;
            while !c.is_null() {
                // SAFETY: live chunk on the list, lock held.
                let chunk = unsafe { &*c };
                if chunk.contains(addr, 1) {
                    return true;
                }
                c = chunk.next;
            }
            false
        })
    }

    /// Unmaps every chunk, if no span is handed out (otherwise `Busy`, nothing changes). For tests and
    /// domain teardown.
    pub fn release_all(&self, src: &PageSource) -> Result<(), ArenaError> {
        let list = self.with_inner(|inner| {
            if self.committed.load(Ordering::Relaxed) != 0 {
                return Err(ArenaError::Busy);
            }
            let head = inner.head;
            inner.head = ptr::null_mut();
            inner.chunks = 0;
            self.reserved.store(0, Ordering::Relaxed);
            Ok(head)
        })?;
        let mut c = list;
        while !c.is_null() {
            // SAFETY: the list was detached under the lock, so its chunks are exclusively ours; read `next`
            // before the descriptor is freed.
            let next = unsafe { (*c).next };
            // SAFETY: as above; every unit is free (committed was 0).
            unsafe { release_chunk(src, c) };
            c = next;
        }
        Ok(())
    }

    /// Fork prepare hook: takes the arena lock (in lock order: after the node part's list lock, before the
    /// metadata lock).
    pub fn lock_for_fork(&self) {
        self.state.lock.lock();
    }

    /// Fork parent/child hook: releases the lock taken by [`NodeArena::lock_for_fork`]; safe in the child.
    ///
    /// # Safety
    /// Must follow `lock_for_fork` on this arena by this thread (in the child: by the forking thread).
    pub unsafe fn unlock_after_fork(&self) {
        // SAFETY: caller contract: the lock is held on our behalf.
        unsafe { self.state.lock.unlock() }
    }
}

impl fmt::Debug for NodeArena {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeArena")
            .field("node", &self.node)
            .field("real_node", &self.real_node)
            .field("committed", &self.committed_bytes())
            .field("reserved", &self.reserved_bytes())
            .finish()
    }
}

/// Unmaps a chunk and frees its descriptor.
///
/// # Safety
/// `c` is a live chunk descriptor no longer reachable from any arena, and no unit of it is in use.
unsafe fn release_chunk(src: &PageSource, c: *mut Chunk) {
    // SAFETY: caller contract: exclusive, live descriptor.
    let span = unsafe { (*c).span };
    // SAFETY: the span is the whole mapping made by `new_chunk` through this source, unused.
    unsafe { src_unmap(src, span.ptr, span.len) };
    // SAFETY: allocated by `new_chunk` with this layout and now unreachable.
    unsafe { meta_free(c.cast(), Layout::new::<Chunk>()) };
}

/// Finds the chunk holding `[addr, addr + len)` with every unit in use; returns (previous chunk or null,
/// chunk).
fn find_live(inner: &Inner, addr: usize, len: usize) -> Option<(*mut Chunk, *mut Chunk)> {
    let mut prev = ptr::null_mut();
    let mut c = inner.head;
    while !c.is_null() {
        // SAFETY: live chunk on the list; the caller holds the lock.
        let chunk = unsafe { &*c };
        if chunk.contains(addr, len) {
            let start = (addr - chunk.base()) / UNIT;
            return none_set(&chunk.free, start, len / UNIT).then_some((prev, c));
        }
        prev = c;
        c = chunk.next;
    }
    None
}

// ---------------------------------------------------------------------------------------------------------
// Bitmap helpers (bit set = free). Pure functions, also run under Miri.
// ---------------------------------------------------------------------------------------------------------

const BITS: usize = WORDS * 64;

/// Index of the first bit at or after `pos` equal to `want`, if any.
fn next_bit(bits: &[u64; WORDS], pos: usize, want: bool) -> Option<usize> {
    if pos >= BITS {
        return None;
    }
    let mut w = pos / 64;
    let flip = if want { 0 } else { u64::MAX };
    let mut word = (bits[w] ^ flip) & (u64::MAX << (pos % 64));
    loop {
        if word != 0 {
            return Some(w * 64 + word.trailing_zeros() as usize);
        }
        w += 1;
        if w >= WORDS {
            return None;
        }
        word = bits[w] ^ flip;
    }
}

/// First-fit search for `k` consecutive set (free) bits; returns the first bit index.
fn find_run(bits: &[u64; WORDS], k: usize) -> Option<usize> {
    let mut pos = 0;
    while pos + k <= BITS {
        let start = next_bit(bits, pos, true)?;
        if start + k > BITS {
            return None;
        }
        let end = next_bit(bits, start, false).unwrap_or(BITS);
        if end - start >= k {
            return Some(start);
        }
        pos = end;
    }
    None
}

/// Sets (`free = true`) or clears bits `[start, start + k)`; out-of-range bits are ignored.
fn set_bits(bits: &mut [u64; WORDS], start: usize, k: usize, free: bool) {
    for i in start..(start + k).min(BITS) {
        let (w, b) = (i / 64, i % 64);
        if free {
            bits[w] |= 1 << b;
        } else {
            bits[w] &= !(1 << b);
        }
    }
}

/// Whether no bit in `[start, start + k)` is set (all units in use). False if the range leaves the map.
fn none_set(bits: &[u64; WORDS], start: usize, k: usize) -> bool {
    if start + k > BITS {
        return false;
    }
    (start..start + k).all(|i| bits[i / 64] & (1 << (i % 64)) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> [u64; WORDS] {
        let mut b = [0; WORDS];
        set_bits(&mut b, 0, CHUNK_UNITS, true);
        b
    }

    /// The `VmFlags` line of the mapping holding `addr` in `/proc/self/smaps`.
    #[cfg(not(miri))]
    fn vm_flags(addr: usize) -> String {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split(' ').next().unwrap_or("");
            if let Some((a, b)) = range.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    inside = a <= addr && addr < b;
                    continue;
                }
            }
            if inside && line.starts_with("VmFlags:") {
                return line.to_string();
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    /// Huge-page advice comes once the threshold is reached, covers each 2 MiB region a new span
    /// reaches exactly once, and never comes without a threshold.
    #[cfg(not(miri))]
    #[test]
    fn huge_page_advice_follows_the_threshold() {
        if !std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
            eprintln!("kernel without transparent huge pages: nothing to check");
            return;
        }
        let hg = |p: NonNull<u8>| vm_flags(p.as_ptr() as usize).contains(" hg");

        // No threshold: never advised.
        let src = PageSource::new();
        let off = NodeArena::new(NodeId::new(0), None);
        let a = off.alloc_units(&src, 40).unwrap();
        assert!(!hg(a));
        assert_eq!(src.huge_advised_bytes(), 0);
        // SAFETY: handed out just above, unused.
        unsafe { off.free_units(&src, a, 40).unwrap() };
        off.release_all(&src).unwrap();

        // Two units: the first span stays on small pages, the second one reaches the threshold
        // and its region (the first's too: both are in region 0) is advised.
        let src = PageSource::new();
        let arena = NodeArena::new(NodeId::new(0), None);
        arena.set_huge_pages_after(Some(2 * UNIT));
        assert_eq!(arena.huge_pages_after(), Some(2 * UNIT));
        let first = arena.alloc_units(&src, 1).unwrap();
        assert!(!hg(first));
        assert_eq!(src.huge_advised_bytes(), 0);
        let second = arena.alloc_units(&src, 1).unwrap();
        assert!(hg(first) && hg(second));
        assert_eq!(src.huge_advised_bytes(), HUGE_REGION);
        // A span over regions 0 and 1 advises region 1 only once; one inside them, nothing.
        let wide = arena.alloc_units(&src, REGION_UNITS).unwrap();
        assert_eq!(src.huge_advised_bytes(), 2 * HUGE_REGION);
        let inside = arena.alloc_units(&src, 1).unwrap();
        assert_eq!(src.huge_advised_bytes(), 2 * HUGE_REGION);
        assert!(hg(wide) && hg(inside));
        // SAFETY: each span was handed out above and is unused.
        unsafe {
            arena.free_units(&src, first, 1).unwrap();
            arena.free_units(&src, second, 1).unwrap();
            arena.free_units(&src, wide, REGION_UNITS).unwrap();
            arena.free_units(&src, inside, 1).unwrap();
        }
        arena.release_all(&src).unwrap();
    }

    #[test]
    fn bitmap_first_fit() {
        let mut b = full();
        assert_eq!(find_run(&b, 1), Some(0));
        assert_eq!(find_run(&b, CHUNK_UNITS), Some(0));
        assert_eq!(find_run(&b, CHUNK_UNITS + 1), None);
        set_bits(&mut b, 0, 3, false);
        assert_eq!(find_run(&b, 1), Some(3));
        set_bits(&mut b, 5, 1, false);
        // Hole of 2 at [3,5): too small for 3, so first fit is after unit 5.
        assert_eq!(find_run(&b, 2), Some(3));
        assert_eq!(find_run(&b, 3), Some(6));
        // Runs crossing word boundaries.
        let mut b = [0; WORDS];
        set_bits(&mut b, 60, 10, true);
        assert_eq!(find_run(&b, 10), Some(60));
        assert_eq!(find_run(&b, 11), None);
        assert!(none_set(&b, 0, 60));
        assert!(!none_set(&b, 0, 61));
        assert!(!none_set(&b, BITS - 1, 2));
        set_bits(&mut b, 60, 10, false);
        assert_eq!(find_run(&b, 1), None);
        assert_eq!(next_bit(&b, BITS, true), None);
    }

    #[test]
    fn bitmap_fill_exactly() {
        let mut b = full();
        let mut taken = 0;
        for k in (1..=16).cycle() {
            match find_run(&b, k) {
                Some(s) => {
                    assert!(b[s / 64] & (1 << (s % 64)) != 0);
                    set_bits(&mut b, s, k, false);
                    taken += k;
                }
                None => break,
            }
        }
        assert!(taken > CHUNK_UNITS - 16);
        assert!(taken <= CHUNK_UNITS);
    }

    #[test]
    fn map_error_conversion() {
        assert_eq!(ArenaError::from(MapError::NodeGone), ArenaError::NodeGone);
        assert_eq!(ArenaError::from(MapError::NoMemory), ArenaError::NoMemory);
    }

    #[cfg(not(miri))]
    mod os {
        use super::super::*;
        use hotslab_numa::PageSource;

        /// Fraction of the pages of `[p, p + len)` resident in RAM (mincore).
        fn resident_pages(p: *const u8, len: usize) -> usize {
            let page = crate::mem::page_size();
            let n = len / page;
            let mut vec = [0u8; 4096];
            assert!(n <= vec.len());
            // SAFETY: [p, p+len) is a mapped, page-aligned range; vec has room for n entries.
            let rc = unsafe { libc::mincore(p as *mut _, len, vec.as_mut_ptr()) };
            assert_eq!(rc, 0);
            vec[..n].iter().filter(|&&v| v & 1 != 0).count()
        }

        fn touch(p: NonNull<u8>, len: usize, byte: u8) {
            // SAFETY: the tests only touch spans they own.
            unsafe { p.as_ptr().write_bytes(byte, len) };
        }

        fn is_zero(p: NonNull<u8>, len: usize) -> bool {
            // SAFETY: the tests only read spans they own.
            unsafe { std::slice::from_raw_parts(p.as_ptr(), len) }
                .iter()
                .all(|&b| b == 0)
        }

        #[test]
        fn alloc_free_k_unit_spans() {
            let src = PageSource::new();
            let arena = NodeArena::new(NodeId::new(0), None);
            let mut spans = [(NonNull::dangling(), 0usize); 16];
            for (i, slot) in spans.iter_mut().enumerate() {
                let k = i + 1;
                let p = arena.alloc_units(&src, k).unwrap();
                assert_eq!(p.as_ptr() as usize % UNIT, 0);
                assert!(arena.owns(p.as_ptr() as usize));
                assert!(arena.owns(p.as_ptr() as usize + k * UNIT - 1));
                assert!(is_zero(p, k * UNIT));
                touch(p, k * UNIT, k as u8);
                *slot = (p, k);
            }
            let total: usize = (1..=16).sum::<usize>() * UNIT;
            assert_eq!(arena.committed_bytes(), total);
            assert_eq!(arena.reserved_bytes(), CHUNK);
            assert_eq!(arena.chunks(), 1);
            // Spans are disjoint: every span still holds its own byte.
            for &(p, k) in &spans {
                // SAFETY: live span of k units.
                let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), k * UNIT) };
                assert!(s.iter().all(|&b| b == k as u8));
            }
            for &(p, k) in &spans {
                // SAFETY: live span handed out by this arena, freed once.
                unsafe { arena.free_units(&src, p, k).unwrap() };
            }
            assert_eq!(arena.committed_bytes(), 0);
            // The freed memory is handed out again, and reads as zero.
            let p = arena.alloc_units(&src, 16).unwrap();
            assert!(is_zero(p, 16 * UNIT));
            // SAFETY: live, freed once.
            unsafe { arena.free_units(&src, p, 16).unwrap() };
            arena.release_all(&src).unwrap();
            assert_eq!(arena.reserved_bytes(), 0);
            assert_eq!(src.mapped_bytes(), 0);
        }

        #[test]
        fn invalid_frees_are_refused() {
            let src = PageSource::new();
            let arena = NodeArena::new(NodeId::new(0), None);
            let p = arena.alloc_units(&src, 2).unwrap();
            touch(p, 2 * UNIT, 7);
            let other = 0u64;
            let foreign = NonNull::from(&other).cast::<u8>();
            // SAFETY: invalid frees are detected before anything is touched.
            unsafe {
                assert_eq!(
                    arena.free_units(&src, foreign, 1),
                    Err(ArenaError::NotOwned)
                );
                let inner = p.add(8);
                assert_eq!(arena.free_units(&src, inner, 1), Err(ArenaError::NotOwned));
                // Range running into free units.
                assert_eq!(arena.free_units(&src, p, 3), Err(ArenaError::NotOwned));
                assert_eq!(arena.free_units(&src, p, 0), Err(ArenaError::BadSize));
                assert_eq!(
                    arena.free_units(&src, p, CHUNK_UNITS + 1),
                    Err(ArenaError::BadSize)
                );
            }
            // Nothing was decommitted by the refused frees.
            // SAFETY: live span.
            assert!(unsafe { std::slice::from_raw_parts(p.as_ptr(), 2 * UNIT) }
                .iter()
                .all(|&b| b == 7));
            assert_eq!(arena.committed_bytes(), 2 * UNIT);
            assert_eq!(arena.release_all(&src), Err(ArenaError::Busy));
            // SAFETY: live, freed once; the second free is a double free and must be refused.
            unsafe {
                arena.free_units(&src, p, 2).unwrap();
                assert_eq!(arena.free_units(&src, p, 2), Err(ArenaError::NotOwned));
            }
            assert_eq!(arena.committed_bytes(), 0);
            assert_eq!(arena.alloc_units(&src, 0), Err(ArenaError::BadSize));
            assert_eq!(
                arena.alloc_units(&src, CHUNK_UNITS + 1),
                Err(ArenaError::BadSize)
            );
            arena.release_all(&src).unwrap();
        }

        #[test]
        fn exhausting_a_chunk_grows_a_second_and_empty_chunks_are_unmapped() {
            let src = PageSource::new();
            let arena = NodeArena::new(NodeId::new(0), None);
            // Fill the first chunk exactly with 16-unit spans.
            let n = CHUNK_UNITS / 16;
            let mut spans = [NonNull::<u8>::dangling(); CHUNK_UNITS / 16];
            for s in spans.iter_mut() {
                *s = arena.alloc_units(&src, 16).unwrap();
            }
            assert_eq!(arena.chunks(), 1);
            assert_eq!(arena.committed_bytes(), CHUNK);
            let extra = arena.alloc_units(&src, 1).unwrap();
            assert_eq!(arena.chunks(), 2);
            assert_eq!(arena.reserved_bytes(), 2 * CHUNK);
            assert_eq!(src.mapped_bytes(), 2 * CHUNK);
            assert_eq!(arena.committed_bytes(), CHUNK + UNIT);
            // Chunks are CHUNK-aligned.
            assert_eq!(spans[0].as_ptr() as usize % CHUNK, 0);
            assert_eq!(extra.as_ptr() as usize % CHUNK, 0);
            let first_chunk = spans[0].as_ptr() as usize;
            // Free the whole first chunk: it becomes empty while another chunk exists, so it is unmapped.
            for &s in spans.iter().take(n) {
                // SAFETY: live 16-unit spans, freed once.
                unsafe { arena.free_units(&src, s, 16).unwrap() };
            }
            assert_eq!(arena.chunks(), 1);
            assert_eq!(arena.reserved_bytes(), CHUNK);
            assert_eq!(src.mapped_bytes(), CHUNK);
            assert!(!arena.owns(first_chunk));
            assert!(arena.owns(extra.as_ptr() as usize));
            // The last chunk is kept even when empty.
            // SAFETY: live, freed once.
            unsafe { arena.free_units(&src, extra, 1).unwrap() };
            assert_eq!(arena.chunks(), 1);
            assert_eq!(arena.committed_bytes(), 0);
            arena.release_all(&src).unwrap();
            assert_eq!(arena.chunks(), 0);
            assert_eq!(src.mapped_bytes(), 0);
        }

        #[test]
        fn freed_spans_leave_rss() {
            let src = PageSource::new();
            let arena = NodeArena::new(NodeId::new(0), None);
            let k = 4;
            let len = k * UNIT;
            let p = arena.alloc_units(&src, k).unwrap();
            let keep = arena.alloc_units(&src, 1).unwrap();
            touch(p, len, 0x5a);
            touch(keep, UNIT, 1);
            let page = crate::mem::page_size();
            assert_eq!(resident_pages(p.as_ptr(), len), len / page);
            // SAFETY: live span, freed once.
            unsafe { arena.free_units(&src, p, k).unwrap() };
            // The chunk is still mapped (it holds `keep`), but the freed pages are no longer resident.
            assert!(arena.owns(p.as_ptr() as usize));
            assert_eq!(resident_pages(p.as_ptr(), len), 0);
            assert_eq!(resident_pages(keep.as_ptr(), UNIT), UNIT / page);
            // SAFETY: live, freed once.
            unsafe { arena.free_units(&src, keep, 1).unwrap() };
            arena.release_all(&src).unwrap();
        }

        #[test]
        fn mapping_failures_are_reported() {
            let src = PageSource::new();
            let arena = NodeArena::new(NodeId::new(0), None);
            src.fail_after(0);
            assert_eq!(arena.alloc_units(&src, 1), Err(ArenaError::NoMemory));
            assert_eq!(arena.chunks(), 0);
            src.clear_faults();
            let p = arena.alloc_units(&src, 1).unwrap();
            // SAFETY: live, freed once.
            unsafe { arena.free_units(&src, p, 1).unwrap() };
            arena.release_all(&src).unwrap();
        }

        #[test]
        fn chunks_are_bound_to_the_real_node_and_a_missing_node_is_reported() {
            let src = PageSource::new();
            // Node 0 always exists: the chunk is mapped and bound (MPOL_PREFERRED).
            let arena = NodeArena::new(NodeId::new(3), Some(NodeId::new(0)));
            assert_eq!(
                (arena.node(), arena.real_node()),
                (NodeId::new(3), Some(NodeId::new(0)))
            );
            let p = arena.alloc_units(&src, 1).unwrap();
            touch(p, UNIT, 1);
            // SAFETY: live, freed once.
            unsafe { arena.free_units(&src, p, 1).unwrap() };
            arena.release_all(&src).unwrap();
            // A node the kernel does not have (mbind EINVAL), or beyond MAX_NODES: NodeGone, nothing kept.
            for missing in [NodeId::new(1000), NodeId::new(4000)] {
                let gone = NodeArena::new(NodeId::new(1), Some(missing));
                assert_eq!(gone.alloc_units(&src, 1), Err(ArenaError::NodeGone));
                assert_eq!(gone.reserved_bytes(), 0);
            }
            assert_eq!(src.mapped_bytes(), 0);
        }

        #[test]
        fn concurrent_alloc_free() {
            static SRC: PageSource = PageSource::new();
            static ARENA: NodeArena = NodeArena::new(NodeId::new(0), None);
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    std::thread::spawn(move || {
                        let mut live: Vec<(NonNull<u8>, usize)> = Vec::new();
                        for i in 0..400usize {
                            let k = 1 + (i * 7 + t) % 8;
                            let p = ARENA.alloc_units(&SRC, k).unwrap();
                            assert!(is_zero(p, k * UNIT));
                            touch(p, k * UNIT, t as u8 + 1);
                            live.push((p, k));
                            if i % 2 == 1 {
                                let (q, qk) = live.swap_remove(i % live.len());
                                // SAFETY: our span.
                                let s =
                                    unsafe { std::slice::from_raw_parts(q.as_ptr(), qk * UNIT) };
                                assert!(s.iter().all(|&b| b == t as u8 + 1));
                                // SAFETY: live, freed once.
                                unsafe { ARENA.free_units(&SRC, q, qk).unwrap() };
                            }
                        }
                        for (q, qk) in live {
                            // SAFETY: live, freed once.
                            unsafe { ARENA.free_units(&SRC, q, qk).unwrap() };
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            assert_eq!(ARENA.committed_bytes(), 0);
            ARENA.release_all(&SRC).unwrap();
            assert_eq!(SRC.mapped_bytes(), 0);
        }
    }
}
