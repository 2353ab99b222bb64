//! Giving memory back on request (`malloc_trim`) and the heap figures a C library reports
//! (`mallinfo2`, `malloc_info`): read-only over the default domain, except [`trim`], which uses
//! the existing shrink path of the caches and the large tier's span cache. Nothing here
//! allocates through the global allocator (callers include the C library's malloc surface).

use crate::cache::CacheStats;
use crate::global::default_domain;
use crate::kmalloc::LARGE;
use crate::mem::UNIT;

/// Returns memory the default domain holds but does not use: every empty slab of every cache
/// (after collecting remote frees; thread caches keep their current slab) goes back to its
/// node arena, which decommits it, and the large tier's span cache is unmapped. Returns the
/// bytes released (0 if nothing was, or if the default domain does not exist).
///
/// ```
/// let _ = hotslab::trim();
/// ```
pub fn trim() -> usize {
    let Some(d) = default_domain() else {
        return 0;
    };
    let before = d.committed_bytes();
    d.shrink_all();
    let after = d.committed_bytes();
    before.saturating_sub(after) + LARGE.trim_cache(d.page_source())
}

/// Heap figures of the default domain, for `mallinfo2` and `malloc_info`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes of slab spans the node arenas have handed out (committed to slabs).
    pub slab_bytes: usize,
    /// Bytes of slab slots in use (objects allocated and not freed, times their slot size).
    pub slab_used_bytes: usize,
    /// Free slots in all slabs.
    pub slab_free_slots: usize,
    /// Slabs in all caches.
    pub slabs: usize,
    /// Live large objects.
    pub large_count: usize,
    /// Bytes mapped for live large objects (page multiples).
    pub large_bytes: usize,
    /// Bytes of freed large mappings kept (decommitted) in the span cache.
    pub large_cached_bytes: usize,
    /// Bytes mapped by the default domain's page source (slab arenas and large objects).
    pub mapped_bytes: usize,
    /// Allocations and frees served by the kmalloc caches.
    pub allocs: u64,
    /// Frees accepted by the kmalloc caches.
    pub frees: u64,
}

/// The default domain's [`HeapStats`], or `None` if it does not exist. Takes each cache's part
/// locks briefly; never allocates.
///
/// ```
/// let v = vec![0u8; 100];
/// if let Some(s) = hotslab::heap_stats() {
///     assert!(s.slab_used_bytes <= s.slab_bytes);
/// }
/// drop(v);
/// ```
pub fn heap_stats() -> Option<HeapStats> {
    let d = default_domain()?;
    let mut s = HeapStats {
        slab_bytes: d.committed_bytes(),
        ..HeapStats::default()
    };
    for_each_kmalloc_cache(|_, st| {
        s.slab_used_bytes += st.active_objects * st.stride;
        s.slab_free_slots += st.total_objects.saturating_sub(st.active_objects);
        s.slabs += st.slabs;
        s.allocs += st.allocs;
        s.frees += st.frees;
    });
    s.large_count = LARGE.live_count();
    s.large_cached_bytes = LARGE.cached_bytes();
    s.large_bytes = LARGE.mapped_bytes().saturating_sub(s.large_cached_bytes);
    s.mapped_bytes = d.page_source().mapped_bytes();
    Some(s)
}

/// Calls `f` with the name and statistics of every kmalloc cache of the default domain, smallest
/// class first (nothing if the domain does not exist). Never allocates.
///
/// ```
/// let mut n = 0;
/// hotslab::for_each_kmalloc_cache(|name, _| {
///     assert!(name.starts_with("kmalloc-"));
///     n += 1;
/// });
/// assert!(n == 0 || n == hotslab::KMALLOC_CLASSES.len());
/// ```
pub fn for_each_kmalloc_cache(mut f: impl FnMut(&'static str, &CacheStats)) {
    let Some(d) = default_domain() else {
        return;
    };
    for c in d.kmalloc_caches() {
        f(c.name, &c.stats());
    }
}

/// The live large object whose mapping contains `p` anywhere (not only at its start, which is
/// the one unit the page map registers): its start and mapped length. For error reports: scans
/// the page map backwards from `p`'s unit to the nearest registered unit, at most as far as the
/// large tier has mapped in total. `p` is only used as an address.
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub fn large_object_containing(p: *const u8) -> Option<(*mut u8, usize)> {
    let max_units = LARGE.mapped_bytes() / UNIT + 1;
    LARGE
        .containing(p as usize, max_units)
        .map(|(base, len)| (base as *mut u8, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore)] // the default domain reads sysfs
    fn interior_pointers_of_large_objects_are_found() {
        let Some(d) = default_domain() else {
            return;
        };
        let size = 5 * UNIT + 123;
        let p = d.kmalloc_layout(size, 16, None);
        assert!(!p.is_null());
        for off in [0, 1, UNIT - 1, UNIT, 3 * UNIT + 7, size - 1] {
            let (base, len) = large_object_containing(p.wrapping_add(off)).expect("inside");
            assert_eq!(base, p, "offset {off}");
            assert!(len >= size);
        }
        let x = 7u64;
        assert!(large_object_containing(&x as *const u64 as *const u8).is_none());
        // SAFETY: p is a live large object of the default domain.
        unsafe { d.kfree_checked(p).unwrap() };
        assert!(large_object_containing(p.wrapping_add(UNIT)).is_none());
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn trim_and_stats() {
        if default_domain().is_none() {
            return;
        }
        let _ = trim();
        let s = heap_stats().unwrap();
        assert!(s.slab_used_bytes <= s.slab_bytes);
        let mut n = 0;
        for_each_kmalloc_cache(|_, _| n += 1);
        assert_eq!(n, crate::KMALLOC_CLASSES.len());
    }
}
