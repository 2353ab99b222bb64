//! kmalloc: size classes (four per doubling above 64 bytes, so internal waste stays under 25 %),
//! the general-purpose alloc / free / realloc of a domain over its kmalloc caches, and the large
//! tier above [`KMALLOC_MAX`]. Free functions act on the process-wide default domain.
//! Nothing here allocates through the global allocator; failures give null.

use core::ptr;

use hotslab_numa::NodeId;

use crate::domain::SlabDomain;
use crate::heap as thread;
use crate::mem::{self, pagemap, LargeTier};
use crate::slab::Slab;

/// Number of kmalloc size classes.
pub const NCLASSES: usize = 52;

/// Largest size served by a kmalloc cache; larger requests go to the large-object tier.
pub const KMALLOC_MAX: usize = 128 * 1024;

/// Names of the kmalloc caches, in class order (as /proc/slabinfo names them).
pub(crate) const CLASS_NAMES: [&str; NCLASSES] = [
    "kmalloc-8",
    "kmalloc-16",
    "kmalloc-24",
    "kmalloc-32",
    "kmalloc-40",
    "kmalloc-48",
    "kmalloc-56",
    "kmalloc-64",
    "kmalloc-80",
    "kmalloc-96",
    "kmalloc-112",
    "kmalloc-128",
    "kmalloc-160",
    "kmalloc-192",
    "kmalloc-224",
    "kmalloc-256",
    "kmalloc-320",
    "kmalloc-384",
    "kmalloc-448",
    "kmalloc-512",
    "kmalloc-640",
    "kmalloc-768",
    "kmalloc-896",
    "kmalloc-1k",
    "kmalloc-1280",
    "kmalloc-1536",
    "kmalloc-1792",
    "kmalloc-2k",
    "kmalloc-2560",
    "kmalloc-3k",
    "kmalloc-3584",
    "kmalloc-4k",
    "kmalloc-5k",
    "kmalloc-6k",
    "kmalloc-7k",
    "kmalloc-8k",
    "kmalloc-10k",
    "kmalloc-12k",
    "kmalloc-14k",
    "kmalloc-16k",
    "kmalloc-20k",
    "kmalloc-24k",
    "kmalloc-28k",
    "kmalloc-32k",
    "kmalloc-40k",
    "kmalloc-48k",
    "kmalloc-56k",
    "kmalloc-64k",
    "kmalloc-80k",
    "kmalloc-96k",
    "kmalloc-112k",
    "kmalloc-128k",
];

/// All class sizes, smallest first.
pub const KMALLOC_CLASSES: [usize; NCLASSES] = {
    let mut a = [0; NCLASSES];
    let mut i = 0;
    while i < NCLASSES {
        a[i] = class_size(i);
        i += 1;
    }
    a
};

/// Size of class `i` (8-byte steps up to 64, then four classes per doubling).
pub const fn class_size(i: usize) -> usize {
    if i < 8 {
        return (i + 1) * 8;
    }
    let j = i - 8;
    let b = 7 + j / 4;
    (4 + j % 4 + 1) << (b - 3)
}

/// The smallest class holding `size` bytes, or `None` above [`KMALLOC_MAX`].
#[inline(always)]
pub const fn class_of(size: usize) -> Option<usize> {
    if size <= 64 {
        let s = if size == 0 { 1 } else { size };
        return Some(s.div_ceil(8) - 1);
    }
    if size > KMALLOC_MAX {
        return None;
    }
    let m = size - 1;
    let b = usize::BITS - m.leading_zeros(); // bit length of size-1, >= 7
    let sub = (m >> (b - 3)) & 3;
    Some(8 + (b as usize - 7) * 4 + sub)
}

/// Class of every size up to [`SMALL_MAX`] in 8-byte steps: `SMALL_CLASS[(size + 7) >> 3]`.
const SMALL_MAX: usize = 1024;
static SMALL_CLASS: [u8; SMALL_MAX / 8 + 1] = {
    let mut t = [0u8; SMALL_MAX / 8 + 1];
    let mut i = 0;
    while i < t.len() {
        t[i] = match class_of(i * 8) {
            Some(c) => c as u8,
            None => 0,
        };
        i += 1;
    }
    t
};

/// Largest size the C fast path ([`c_class`]) serves.
pub(crate) const C_SMALL_MAX: usize = SMALL_MAX;

/// Class of a C `malloc(size)` for sizes up to [`C_SMALL_MAX`], in 8-byte steps: blocks above
/// 8 bytes are 16-byte aligned (glibc's guarantee), so sizes round up to 16 and a class whose
/// size is not a multiple of 16 is skipped.
static C_CLASS: [u8; SMALL_MAX / 8 + 1] = {
    let mut t = [0u8; SMALL_MAX / 8 + 1];
    let mut i = 0;
    while i < t.len() {
        let size = i * 8;
        let c = if size <= 8 {
            0
        } else {
            let s16 = (size + 15) & !15;
            let c = match class_of(s16) {
                Some(c) => c,
                None => 0,
            };
            if class_size(c) % 16 == 0 {
                c
            } else {
                match class_of(s16.next_power_of_two()) {
                    Some(c) => c,
                    None => 0,
                }
            }
        };
        t[i] = c as u8;
        i += 1;
    }
    t
};

/// Entries of the C fast path's word-indexed table ([`c_word`] of every size up to
/// [`C_SMALL_MAX`]).
pub(crate) const C_WORDS: usize = SMALL_MAX / 8 + 1;

/// Objects above this size (one cache line) get the pop's prefetch of the next object of their
/// free list (`Slab::pop_first_word`); smaller ones do not. Measured (25 interleaved rounds, C
/// ABI): without the prefetch for these sizes cfrac (16-64 B nodes, hot LIFO reuse) went from
/// 1.027x to 1.006x mimalloc's time while alloc-test1 (16 B-1 KiB, random lifetimes) stayed at
/// 1.006-1.007x; dropping it for every size instead cost alloc-test1, rptest and realloc 2-5 %.
pub(crate) const PREFETCH_ABOVE: usize = 64;
/// The first kmalloc class above [`PREFETCH_ABOVE`].
pub(crate) const PREFETCH_FIRST_CLASS: usize = {
    let mut i = 0;
    while class_size(i) <= PREFETCH_ABOVE {
        i += 1;
    }
    i
};
/// The first C word ([`c_word`]) above [`PREFETCH_ABOVE`].
pub(crate) const PREFETCH_FIRST_WORD: usize = c_word(PREFETCH_ABOVE + 1);
// Both thresholds split the same sizes: the class and every C word from the first prefetching
// one serve sizes above the line only, the ones before it sizes within it.
const _: () = assert!(
    class_size(PREFETCH_FIRST_CLASS) > PREFETCH_ABOVE
        && class_size(PREFETCH_FIRST_CLASS - 1) <= PREFETCH_ABOVE
        && (PREFETCH_FIRST_WORD - 1) * 8 <= PREFETCH_ABOVE
        && PREFETCH_FIRST_WORD * 8 > PREFETCH_ABOVE
        && C_CLASS[PREFETCH_FIRST_WORD] as usize >= PREFETCH_FIRST_CLASS
        && (C_CLASS[PREFETCH_FIRST_WORD - 1] as usize) < PREFETCH_FIRST_CLASS
);

/// The index of a C `malloc(size)` in a heap's word-indexed table, `size <= C_SMALL_MAX`.
#[inline(always)]
pub(crate) const fn c_word(size: usize) -> usize {
    (size + 7) >> 3
}

/// For every class, the words `w` with `C_CLASS[w] == class` as (first, count): a contiguous run
/// (the table is non-decreasing), empty for classes the C path skips.
pub(crate) static C_RANGE: [(u8, u8); NCLASSES] = {
    let mut r = [(0u8, 0u8); NCLASSES];
    let mut w = 0;
    while w < C_WORDS {
        let c = C_CLASS[w] as usize;
        if r[c].1 == 0 {
            r[c].0 = w as u8;
        }
        r[c].1 += 1;
        w += 1;
    }
    r
};

/// The class of a size in `(C_SMALL_MAX, KMALLOC_MAX]`: [`class_of`] without its small-size and
/// range branches (the caller has tested the range).
#[inline(always)]
pub(crate) fn class_above_small(size: usize) -> usize {
    debug_assert!(size > C_SMALL_MAX && size <= KMALLOC_MAX);
    let m = size - 1;
    let b = (usize::BITS - m.leading_zeros()) as usize; // bit length of size-1, >= 11
    let sub = (m >> (b - 3)) & 3;
    8 + (b - 7) * 4 + sub
}

/// The class of a C `malloc(size)`, `size <= C_SMALL_MAX` (the fast path indexes a heap's word table
/// directly; the tests check the two agree).
#[cfg(test)]
pub(crate) fn c_class(size: usize) -> usize {
    C_CLASS[(size + 7) >> 3] as usize
}

/// The class for a (size, align) request: objects of the class are all `align`-aligned (slab
/// bases are 64 KiB aligned, so a class whose size is a multiple of `align` qualifies). A table
/// lookup for small sizes; no division anywhere.
#[inline(always)]
pub(crate) fn class_for(size: usize, align: usize) -> Option<usize> {
    if align <= 8 {
        if size <= SMALL_MAX {
            // SAFETY-free: the index is at most SMALL_MAX / 8.
            return Some(SMALL_CLASS[(size + 7) >> 3] as usize);
        }
        return class_of(size);
    }
    class_for_aligned(size, align)
}

#[inline(always)]
fn class_for_aligned(size: usize, align: usize) -> Option<usize> {
    if align > mem::UNIT {
        return None; // slab bases are only UNIT-aligned: the large tier aligns further
    }
    let eff = if size < align { align } else { size };
    let c = if eff <= SMALL_MAX {
        SMALL_CLASS[(eff + 7) >> 3] as usize
    } else {
        class_of(eff)?
    };
    // align is a power of two (Layout guarantees it).
    if class_size(c) & (align - 1) == 0 {
        return Some(c);
    }
    class_of(eff.checked_next_power_of_two()?)
}

/// The shared large-object tier (page spans above [`KMALLOC_MAX`]).
pub(crate) static LARGE: LargeTier = LargeTier::new();

/// What a pointer is, by the page map.
pub(crate) enum Owner<'a> {
    Slab(&'a Slab),
    Large,
    Foreign,
}

#[inline(always)]
pub(crate) fn owner_of<'a>(p: *mut u8) -> Owner<'a> {
    owner_from(pagemap::get(p as usize))
}

/// [`owner_of`] for the free and realloc fast paths: the flat page-map table only
/// (`pagemap::get_flat`), so `Foreign` here means only "take the full path", which asks
/// [`owner_of`].
#[inline(always)]
pub(crate) fn owner_of_flat<'a>(p: *mut u8) -> Owner<'a> {
    owner_from(pagemap::get_flat(p as usize))
}

/// What a page-map value names.
#[inline(always)]
fn owner_from<'a>(v: usize) -> Owner<'a> {
    // One bit test (see `mem::TAG_SLAB`): 0, large-object values and slab values differ in it.
    if v & mem::TAG_SLAB != 0 {
        // SAFETY: slab-tagged page-map values are slab descriptors (never null: the tag is
        // added to an address), valid while registered (the object we were handed keeps its
        // slab registered).
        Owner::Slab(unsafe { &*crate::slab::from_pagemap(v) })
    } else if v & mem::TAG_MASK == mem::TAG_LARGE {
        Owner::Large
    } else {
        Owner::Foreign
    }
}

/// Why a free was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeError {
    /// hotslab never handed this pointer out.
    Foreign,
    /// The pointer is inside an object, not at its start.
    Interior,
    /// The pointer is an object slot of a slab that was never handed out.
    Uncarved,
}

impl SlabDomain {
    /// Switches debug mode for every kmalloc cache of this domain (see
    /// [`KmemCache::set_debug`](crate::KmemCache::set_debug)).
    pub fn set_kmalloc_debug(&self, flags: crate::DebugFlags) {
        for slot in self.kmalloc.iter() {
            let c = slot.load(std::sync::atomic::Ordering::Acquire);
            if !c.is_null() {
                // SAFETY: kmalloc caches live as long as the domain and are never destroyed.
                let _ = unsafe { &*c }.set_debug(flags);
            }
        }
    }

    /// The debug flags of this domain's kmalloc caches (those of the first one).
    pub fn kmalloc_debug(&self) -> crate::DebugFlags {
        let c = self.kmalloc[0].load(std::sync::atomic::Ordering::Acquire);
        if c.is_null() {
            return crate::DebugFlags::NONE;
        }
        // SAFETY: as above.
        crate::DebugFlags::from_bits(unsafe {
            (*c).debug.load(std::sync::atomic::Ordering::Relaxed)
        } as u32)
    }

    /// Allocates `size` bytes aligned to `align` (a power of two), preferring `node`.
    /// Null on failure (including sizes near `isize::MAX` and alignments over 1 GiB).
    #[inline]
    pub fn kmalloc_layout(&self, size: usize, align: usize, node: Option<NodeId>) -> *mut u8 {
        if !align.is_power_of_two() {
            return ptr::null_mut();
        }
        if let Some(c) = class_for(size, align) {
            let cache = self.kmalloc[c].load(std::sync::atomic::Ordering::Acquire);
            if !cache.is_null() {
                // SAFETY: kmalloc caches live as long as the domain.
                let cache = unsafe { &*cache };
                return match node {
                    None => thread::alloc(cache),
                    Some(n) => thread::alloc_node(cache, n),
                };
            }
            return ptr::null_mut();
        }
        self.large_alloc(size, align, node)
    }

    #[cold]
    fn large_alloc(&self, size: usize, align: usize, node: Option<NodeId>) -> *mut u8 {
        if size > isize::MAX as usize || !align.is_power_of_two() || align > (1 << 30) {
            return ptr::null_mut();
        }
        let mut order = [NodeId::new(0); 64];
        let n = self.alloc_order(node, &mut order);
        for &nid in &order[..n] {
            if !self.node_allocatable(nid) {
                continue;
            }
            let real = self.topology().real_node(nid);
            if let Ok(p) = LARGE.try_alloc(&self.pages, size, align, Some(real)) {
                return p.as_ptr();
            }
        }
        // No node could serve a bound mapping (e.g. every candidate was removed): unbound.
        LARGE.alloc(&self.pages, size, align, None)
    }

    /// Frees memory from [`SlabDomain::kmalloc_layout`] (any domain's: the page map knows).
    ///
    /// # Safety
    /// `p` is not used after this call; if it came from hotslab it is not freed yet.
    #[inline]
    pub unsafe fn kfree_checked(&self, p: *mut u8) -> Result<(), FreeError> {
        // SAFETY: forwarded from the caller.
        unsafe { kfree_any(&self.pages, p) }
    }

    /// Resizes `p` to `new_size` bytes keeping `align`; null (and `p` untouched) on failure.
    ///
    /// # Safety
    /// `p` came from this domain's kmalloc and is live.
    pub unsafe fn krealloc_layout(&self, p: *mut u8, align: usize, new_size: usize) -> *mut u8 {
        let old_usable = match owner_of(p) {
            Owner::Slab(s) => crate::debug::usable(s),
            Owner::Large => {
                if class_for(new_size, align).is_none() && align <= mem::page_size() {
                    // SAFETY: p is a live large object.
                    return unsafe { LARGE.realloc(&self.pages, p, new_size) };
                }
                // SAFETY: p is a live large object.
                unsafe { LARGE.usable_size(p) }.unwrap_or(0)
            }
            Owner::Foreign => return ptr::null_mut(),
        };
        if let (Owner::Slab(s), Some(c)) = (owner_of(p), class_for(new_size, align)) {
            // Same class (or one class down, to avoid ping-pong): keep it in place.
            let usable = crate::debug::usable(s);
            if usable == class_size(c) || (new_size <= usable && new_size * 2 >= usable) {
                return p;
            }
        }
        let q = self.kmalloc_layout(new_size, align, None);
        if q.is_null() {
            return q;
        }
        // SAFETY: both blocks are live and distinct; copy the smaller size.
        unsafe {
            ptr::copy_nonoverlapping(p, q, old_usable.min(new_size));
            let _ = kfree_any(&self.pages, p);
        }
        q
    }
}

/// Frees a hotslab pointer of any domain.
///
/// # Safety
/// As for [`SlabDomain::kfree_checked`].
#[inline(always)]
pub(crate) unsafe fn kfree_any(
    pages: &hotslab_numa::PageSource,
    p: *mut u8,
) -> Result<(), FreeError> {
    match owner_of(p) {
        Owner::Slab(s) => {
            if s.dbg.flags != 0 {
                // Debug objects sit behind a red zone, never at a slot start.
                if !crate::debug::is_object(s, p) {
                    return Err(FreeError::Interior);
                }
                // SAFETY: p is an object of debug slab s (a second free is caught there); `s`
                // is not used again.
                unsafe { crate::debug::free(p) };
                return Ok(());
            }
            if !s.is_carved_object(p) {
                return Err(if s.is_object_start(p) {
                    FreeError::Uncarved
                } else {
                    FreeError::Interior
                });
            }
            // SAFETY: s.cache lives as long as its domain; p is an object start of s.
            unsafe { thread::free(s, p) };
            Ok(())
        }
        Owner::Large => {
            // SAFETY: p is registered as a large object.
            unsafe { LARGE.free(pages, p) }.map_err(|_| FreeError::Interior)
        }
        Owner::Foreign => Err(FreeError::Foreign),
    }
}

/// Usable size of a hotslab allocation (`malloc_usable_size`), or `None` if not ours.
/// `p` is only used as an address (looked up in the page map), never dereferenced.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn usable_size(p: *mut u8) -> Option<usize> {
    match owner_of(p) {
        Owner::Slab(s) if s.dbg.flags != 0 => {
            crate::debug::is_object(s, p).then_some(s.dbg.obj_size as usize)
        }
        Owner::Slab(s) => s.is_object_start(p).then_some(s.stride as usize),
        // SAFETY: the page map says p is a large object.
        Owner::Large => unsafe { LARGE.usable_size(p) },
        Owner::Foreign => None,
    }
}

/// `kmalloc` on the default domain: `size` bytes, 8-byte aligned. Null on failure.
pub fn kmalloc(size: usize) -> *mut u8 {
    match crate::global::domain() {
        Some(d) => {
            crate::follow::poll();
            d.kmalloc_layout(size, 8, None)
        }
        None => ptr::null_mut(),
    }
}

/// `kmalloc_node` on the default domain. Null on failure, also for a node outside the topology
/// or the calling thread's cpuset ([`try_kmalloc_node`] tells which).
pub fn kmalloc_node(size: usize, node: NodeId) -> *mut u8 {
    try_kmalloc_node(size, node).map_or(ptr::null_mut(), |p| p.as_ptr())
}

/// [`kmalloc_node`] telling why it failed: [`CacheError::UnknownNode`](crate::CacheError::UnknownNode) (not in the default
/// domain's topology), [`CacheError::NodeNotAllowed`](crate::CacheError::NodeNotAllowed) (outside the calling thread's cpuset
/// `mems_allowed`), [`CacheError::NoMemory`](crate::CacheError::NoMemory).
pub fn try_kmalloc_node(
    size: usize,
    node: NodeId,
) -> Result<core::ptr::NonNull<u8>, crate::CacheError> {
    let d = crate::global::domain().ok_or(crate::CacheError::NoMemory)?;
    crate::follow::poll();
    if !d.topology().nodes().test(node) {
        return Err(crate::CacheError::UnknownNode(node.0));
    }
    if !crate::placement::node_allowed(d, node) {
        return Err(crate::CacheError::NodeNotAllowed(node.0));
    }
    core::ptr::NonNull::new(d.kmalloc_layout(size, 8, Some(node)))
        .ok_or(crate::CacheError::NoMemory)
}

/// `kfree`: frees a hotslab allocation (null is a no-op).
///
/// # Safety
/// `p` is null or a live allocation from hotslab, not used afterwards.
pub unsafe fn kfree(p: *mut u8) -> Result<(), FreeError> {
    if p.is_null() {
        return Ok(());
    }
    let Some(d) = crate::global::domain() else {
        return Err(FreeError::Foreign);
    };
    // SAFETY: forwarded.
    unsafe { d.kfree_checked(p) }
}

/// `krealloc` on the default domain (8-byte alignment).
///
/// # Safety
/// `p` is null or a live allocation from hotslab's kmalloc.
pub unsafe fn krealloc(p: *mut u8, new_size: usize) -> *mut u8 {
    if p.is_null() {
        return kmalloc(new_size);
    }
    match crate::global::domain() {
        // SAFETY: forwarded.
        Some(d) => unsafe { d.krealloc_layout(p, 8, new_size) },
        None => ptr::null_mut(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore)] // exhaustive arithmetic: too slow interpreted, no unsafe to check
    fn classes_are_monotonic_and_tight() {
        for i in 1..NCLASSES {
            assert!(class_size(i) > class_size(i - 1));
        }
        assert_eq!(class_size(NCLASSES - 1), KMALLOC_MAX);
        for size in 1..=KMALLOC_MAX {
            let c = class_of(size).unwrap();
            assert!(class_size(c) >= size, "size {size} class {c}");
            if c > 0 {
                assert!(
                    class_size(c - 1) < size,
                    "size {size} not in the smallest class"
                );
            }
            // Waste under 25 % above the 8-byte steps.
            if size > 64 {
                assert!((class_size(c) - size) * 4 < class_size(c), "size {size}");
            }
        }
        assert_eq!(class_of(KMALLOC_MAX + 1), None);
        assert_eq!(class_of(0), Some(0));
    }

    #[test]
    fn aligned_classes_give_aligned_objects() {
        for align in [16, 32, 64, 128, 256, 512, 1024, 4096, 32768, 65536] {
            for size in [1, 8, 24, 48, 100, 1000, 5000] {
                if let Some(c) = class_for(size, align) {
                    assert_eq!(class_size(c) % align, 0, "size {size} align {align}");
                    assert!(class_size(c) >= size);
                }
            }
        }
        assert_eq!(class_for(10, 1 << 18), None);
    }

    #[test]
    fn c_word_ranges_cover_each_word_once() {
        let mut seen = [0u32; C_WORDS];
        for (c, &(first, n)) in C_RANGE.iter().enumerate() {
            let (first, n) = (first as usize, n as usize);
            for (w, seen) in seen.iter_mut().enumerate().skip(first).take(n) {
                assert_eq!(c_class(w * 8), c, "word {w}");
                *seen += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
        for size in 0..=C_SMALL_MAX {
            let (first, n) = C_RANGE[c_class(size)];
            let w = c_word(size);
            assert!(
                w >= first as usize && w < first as usize + n as usize,
                "size {size}"
            );
        }
    }

    #[test]
    fn classes_above_small_match_class_of_and_are_16_byte_aligned() {
        for size in C_SMALL_MAX + 1..=KMALLOC_MAX {
            let c = class_above_small(size);
            assert_eq!(Some(c), class_of(size), "size {size}");
            assert_eq!(class_size(c) % 16, 0, "size {size}");
        }
    }

    #[test]
    fn c_classes_are_16_byte_aligned_and_fit() {
        for size in 0..=C_SMALL_MAX {
            let c = c_class(size);
            assert!(class_size(c) >= size.max(1), "size {size}");
            if size > 8 {
                assert_eq!(class_size(c) % 16, 0, "size {size}");
                assert_eq!(Some(c), class_for((size + 15) & !15, 16), "size {size}");
            }
        }
    }

    #[test]
    fn class_table_agrees_with_the_formula() {
        for size in 0..=8192 {
            assert_eq!(class_for(size, 1), class_of(size), "size {size}");
            assert_eq!(class_for(size, 8), class_of(size), "size {size}");
        }
    }

    #[test]
    fn names_match_sizes() {
        for (i, n) in CLASS_NAMES.iter().enumerate() {
            let s = class_size(i);
            let expect = if s >= 1024 && s % 1024 == 0 {
                format!("kmalloc-{}k", s / 1024)
            } else {
                format!("kmalloc-{s}")
            };
            assert_eq!(*n, expect);
        }
    }
}
