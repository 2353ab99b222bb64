//! The page map: a lock-free, process-wide map from any address to an opaque non-zero `usize` at
//! `UNIT` (64 KiB) granularity, answering "is this pointer ours, and whose" without touching the memory at
//! the address. It owns its two tables only; what the values mean (slab or large-object descriptors,
//! tagged) belongs to the callers, and it must not dereference them.
//!
//! Layout: two tables, chosen per unit.
//! - The **flat table**: one entry per unit of the low [`FLAT_BITS`] bits of the address space (where Linux
//!   puts every mapping it chooses itself), reserved once as one `MAP_NORESERVE` mapping of
//!   `FLAT_BYTES` (16 GiB of address space on x86-64, no memory: a 4 KiB page of it is touched only where
//!   32 MiB of address space holds slabs or large objects, and foreign lookups read the zero page). A
//!   lookup is one shift, one compare and one load: the free path's pointer-to-slab step has no dependent
//!   load before the entry (the radix needed the leaf pointer first).
//! - The **radix**: a two-level table over the low [`ADDR_BITS`] bits for units the flat table does not
//!   cover, and for everything if the reservation was refused (a strict-overcommit or `ulimit -v` machine,
//!   and Miri). The top level is a static array of `AtomicPtr` (all zero, so it lives in .bss and costs
//!   nothing until touched); each leaf is an array of `AtomicUsize` mapped from the OS on first use and
//!   installed with a CAS (the loser unmaps its own leaf). Leaves are never unmapped: a lock-free reader may
//!   hold a pointer to one at any time.
//!
//! The flat table is decided once, by the first [`set`]: a CAS publishes either its base or the
//! "refused" mark, so every unit has one table for the life of the process. Its length word stays 0 until
//! then, so a lookup before the first registration falls to the radix (and reads 0).
//!
//! Value convention (kept by the callers): the low three bits are a tag (`large::TAG_MASK`). Tag 0 = an
//! 8-byte-aligned slab descriptor pointer stored as is; `large::TAG_LARGE` = a large-object descriptor.

use super::{os_map, os_unmap};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// log2 of the page-map granularity.
pub const UNIT_SHIFT: u32 = 16;
/// Page-map granularity: 64 KiB. Slab spans and large objects are aligned to it so that one unit never
/// belongs to two owners.
pub const UNIT: usize = 1 << UNIT_SHIFT;
/// Bits of address space covered (user space on x86-64 and aarch64 with 4-level page tables is 47/48 bits).
/// Any address at or above `1 << ADDR_BITS` maps to 0.
pub const ADDR_BITS: u32 = 48;
/// Bits of address space the flat table covers: x86-64 user space without an explicit high hint (47
/// bits), all of [`ADDR_BITS`] elsewhere.
#[cfg(target_arch = "x86_64")]
pub const FLAT_BITS: u32 = 47;
#[cfg(not(target_arch = "x86_64"))]
pub const FLAT_BITS: u32 = ADDR_BITS;
const FLAT_UNITS: usize = 1 << (FLAT_BITS - UNIT_SHIFT);
/// Address space reserved for the flat table (not memory: see the module docs).
pub const FLAT_BYTES: usize = FLAT_UNITS * std::mem::size_of::<AtomicUsize>();
/// `Flat::base` once the reservation was refused: every unit lives in the radix.
const REFUSED: usize = 1;

const INDEX_BITS: u32 = ADDR_BITS - UNIT_SHIFT;
const LEAF_BITS: u32 = 16;
const TOP_BITS: u32 = INDEX_BITS - LEAF_BITS;
const LEAF_LEN: usize = 1 << LEAF_BITS;
const TOP_LEN: usize = 1 << TOP_BITS;
/// Bytes of one leaf (each covers `LEAF_LEN * UNIT` = 4 GiB of address space).
pub const LEAF_BYTES: usize = LEAF_LEN * std::mem::size_of::<AtomicUsize>();
/// Alignment requested for leaves (a page is enough; entries are word-aligned).
const LEAF_ALIGN: usize = 4096;

type Leaf = AtomicUsize;

/// The flat table's two words, side by side so that a lookup finds both through one address.
#[repr(C)]
struct Flat {
    /// Units the flat table answers for: 0 until the table is published, then `FLAT_UNITS` (0 for ever if
    /// the reservation was refused). Every unit below it is looked up in the flat table, every other in the
    /// radix.
    units: AtomicUsize,
    /// Base of the table (null: undecided; `REFUSED`: radix only).
    base: AtomicPtr<AtomicUsize>,
}

static FLAT: Flat = Flat {
    units: AtomicUsize::new(0),
    base: AtomicPtr::new(ptr::null_mut()),
};
static TOP: [AtomicPtr<Leaf>; TOP_LEN] = [const { AtomicPtr::new(ptr::null_mut()) }; TOP_LEN];
static LEAVES: AtomicUsize = AtomicUsize::new(0);

/// Reserves the flat table: read-write, never accounted (`MAP_NORESERVE`), never huge pages (a touched
/// entry must cost 4 KiB, not 2 MiB). Null if the OS refused.
#[cfg(all(target_os = "linux", not(miri)))]
fn reserve_flat() -> *mut AtomicUsize {
    // SAFETY: an anonymous private mapping at a kernel-chosen address touches no existing memory.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            FLAT_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    // SAFETY: [p, p + FLAT_BYTES) is the mapping just made; the advice changes no contents. A refusal
    // only costs resident size where THP is `always`, so its result is not needed.
    unsafe {
        libc::madvise(p, FLAT_BYTES, libc::MADV_NOHUGEPAGE);
    }
    p.cast()
}

/// No flat table under Miri (it would allocate the whole reservation) or off Linux.
#[cfg(not(all(target_os = "linux", not(miri))))]
fn reserve_flat() -> *mut AtomicUsize {
    ptr::null_mut()
}

/// Releases a flat-table reservation that lost the publishing CAS.
#[cfg(all(target_os = "linux", not(miri)))]
fn release_flat(p: *mut AtomicUsize) {
    // SAFETY: `p` is an unpublished reservation of FLAT_BYTES from `reserve_flat`.
    unsafe {
        libc::munmap(p.cast(), FLAT_BYTES);
    }
}

#[cfg(not(all(target_os = "linux", not(miri))))]
fn release_flat(_p: *mut AtomicUsize) {}

/// The flat table's base if there is one, deciding it on first use (no lock, no wait: racers each reserve,
/// one CAS wins, the losers release theirs). Null: radix only.
fn flat_base() -> *mut AtomicUsize {
    let mut b = FLAT.base.load(Ordering::Acquire);
    if b.is_null() {
        let mine = reserve_flat();
        let decided = if mine.is_null() {
            REFUSED as *mut AtomicUsize
        } else {
            mine
        };
        b = match FLAT.base.compare_exchange(
            ptr::null_mut(),
            decided,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => decided,
            Err(winner) => {
                if !mine.is_null() {
                    release_flat(mine);
                }
                winner
            }
        };
    }
    if b as usize == REFUSED {
        return ptr::null_mut();
    }
    // Every setter publishes the length itself before its first store into the table (an idempotent store
    // of one constant), so no setter depends on the CAS winner having got that far. Release: a reader that
    // sees the length sees the base.
    if FLAT.units.load(Ordering::Relaxed) != FLAT_UNITS {
        FLAT.units.store(FLAT_UNITS, Ordering::Release);
    }
    b
}

/// The flat entry of `unit`, if the flat table answers for it. A raw pointer, not a reference: an
/// `Option<&T>` would make the fast paths test the entry's address for null.
#[inline(always)]
fn flat_entry(unit: usize) -> Option<*const AtomicUsize> {
    if unit < FLAT.units.load(Ordering::Acquire) {
        // SAFETY: `units` is non-zero only once `base` holds the published reservation of FLAT_UNITS
        // entries (Release/Acquire on `units`), which is never unmapped; unit < FLAT_UNITS.
        Some(unsafe { FLAT.base.load(Ordering::Relaxed).add(unit) }.cast_const())
    } else {
        None
    }
}

/// The value of `unit`'s flat entry, if the flat table answers for it.
#[inline(always)]
fn flat_value(unit: usize) -> Option<usize> {
    // SAFETY: `flat_entry` gives live entries only. Acquire pairs with the Release store in `set`:
    // whatever the caller initialised before registering the value (a descriptor) is visible to
    // whoever reads the value. On x86-64 a plain load.
    flat_entry(unit).map(|e| unsafe { (*e).load(Ordering::Acquire) })
}

/// Splits an address into (top index, leaf index); `None` above the covered range.
#[cfg(test)]
#[inline]
fn split(addr: usize) -> Option<(usize, usize)> {
    let idx = addr >> UNIT_SHIFT;
    let top = idx >> LEAF_BITS;
    if top >= TOP_LEN {
        return None;
    }
    Some((top, idx & (LEAF_LEN - 1)))
}

/// Looks up the value registered for the unit containing `addr`; 0 means "not ours". Never touches the
/// memory at `addr`; any address (null, `usize::MAX`, a stack address) is fine.
///
/// In the flat table (every address Linux hands out by itself): a shift, a compare and one load.
///
/// ```
/// use hotslab::mem::pagemap;
/// let x = 5u64;
/// assert_eq!(pagemap::get(&x as *const u64 as usize), 0);
/// assert_eq!(pagemap::get(usize::MAX), 0);
/// ```
#[inline(always)]
pub fn get(addr: usize) -> usize {
    // Null needs no test of its own: unit 0 (addresses below 64 KiB, under `vm.mmap_min_addr`) is never
    // registered, so it reads 0.
    flat_value(addr >> UNIT_SHIFT).unwrap_or_else(|| radix_get(addr))
}

/// [`get`] for the free and realloc fast paths: the value if the flat table answers for `addr`, else 0,
/// which then means only "ask [`get`]" (the caller's full path does). No call on any path, so a fast path
/// that inlines it keeps its frame-less shape.
///
/// ```
/// use hotslab::mem::pagemap;
/// let x = 5u64;
/// assert_eq!(pagemap::get_flat(&x as *const u64 as usize), 0);
/// assert_eq!(pagemap::get_flat(usize::MAX), 0);
/// ```
#[inline(always)]
pub fn get_flat(addr: usize) -> usize {
    flat_value(addr >> UNIT_SHIFT).unwrap_or(0)
}

/// [`get`] for a unit the flat table does not answer for: two dependent loads, the leaf pointer, then
/// the entry.
#[cold]
#[inline(never)]
fn radix_get(addr: usize) -> usize {
    // One shift gives the top index and the range test.
    let top = addr >> (UNIT_SHIFT + LEAF_BITS);
    if top >= TOP_LEN {
        return 0;
    }
    let unit = addr >> UNIT_SHIFT;
    // SAFETY: top < TOP_LEN, checked above.
    let slot = unsafe { TOP.get_unchecked(top) };
    // Acquire pairs with the Release of the installing CAS: the leaf's (zeroed) contents are visible.
    let leaf = slot.load(Ordering::Acquire);
    if leaf.is_null() {
        return 0;
    }
    // SAFETY: a non-null top entry points to a live leaf of LEAF_LEN entries that is never unmapped, and
    // the masked index is < LEAF_LEN.
    let entry = unsafe { &*leaf.add(unit & (LEAF_LEN - 1)) };
    // Acquire: as in `get`.
    entry.load(Ordering::Acquire)
}

/// Returns the leaf for `top`, mapping and installing it if needed. Null if the OS refused memory.
fn leaf_or_install(top: usize) -> *mut Leaf {
    let Some(slot) = TOP.get(top) else {
        return ptr::null_mut();
    };
    let cur = slot.load(Ordering::Acquire);
    if !cur.is_null() {
        return cur;
    }
    let fresh = os_map(LEAF_BYTES, LEAF_ALIGN).cast::<Leaf>();
    if fresh.is_null() {
        return ptr::null_mut();
    }
    // Release publishes the zeroed leaf; Acquire on failure to see the winner's leaf.
    match slot.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            LEAVES.fetch_add(1, Ordering::Relaxed);
            fresh
        }
        Err(winner) => {
            // SAFETY: `fresh` was never published, so nobody else can refer to it.
            unsafe { os_unmap(fresh.cast(), LEAF_BYTES, LEAF_ALIGN) };
            winner
        }
    }
}

/// Range of units [first, first + units) as (first unit index, count), `None` if empty, overflowing or
/// (partly) outside the covered address space.
fn unit_range(addr: usize, units: usize) -> Option<(usize, usize)> {
    let first = addr >> UNIT_SHIFT;
    let end = first.checked_add(units)?;
    if units == 0 || end > (TOP_LEN << LEAF_BITS) {
        return None;
    }
    Some((first, units))
}

/// The entry of `unit` in whichever table answers for it (None: a radix leaf that was never installed).
#[inline]
fn entry(unit: usize) -> Option<&'static AtomicUsize> {
    if let Some(e) = flat_entry(unit) {
        // SAFETY: flat entries live for the whole process.
        return Some(unsafe { &*e });
    }
    let top = unit >> LEAF_BITS;
    let leaf = TOP.get(top)?.load(Ordering::Acquire);
    if leaf.is_null() {
        return None;
    }
    // SAFETY: installed leaves are live forever and have LEAF_LEN entries; the index is masked below that.
    Some(unsafe { &*leaf.add(unit & (LEAF_LEN - 1)) })
}

/// Registers `value` for the `units` units starting at the unit containing `addr` (normally `addr` is
/// UNIT-aligned). `value` must be non-zero (0 means "not ours"; storing it is the same as [`clear`]).
///
/// Returns false, with nothing set, if the range is empty, leaves the covered address space, or a leaf
/// could not be mapped. The caller must own the range (two owners of one unit would overwrite each other).
pub fn set(addr: usize, units: usize, value: usize) -> bool {
    let Some((first, n)) = unit_range(addr, units) else {
        return false;
    };
    let last = first + n - 1;
    // Decide the flat table (first registration only); the units it does not cover need radix leaves.
    let radix_first = if flat_base().is_null() {
        first
    } else {
        first.max(FLAT_UNITS)
    };
    // Pass 1: make sure every leaf exists, so a failure leaves nothing half-registered.
    if radix_first <= last {
        for top in (radix_first >> LEAF_BITS)..=(last >> LEAF_BITS) {
            if leaf_or_install(top).is_null() {
                return false;
            }
        }
    }
    // Pass 2: store. Release: everything the caller wrote before `set` (the descriptor behind `value`)
    // happens-before any `get` that observes the value.
    for unit in first..=last {
        if let Some(e) = entry(unit) {
            e.store(value, Ordering::Release);
        }
    }
    true
}

/// Clears the `units` units starting at the unit containing `addr`. Units in never-installed leaves, or
/// outside the covered space, are already clear.
pub fn clear(addr: usize, units: usize) {
    let first = addr >> UNIT_SHIFT;
    let end = first.saturating_add(units).min(TOP_LEN << LEAF_BITS);
    for unit in first..end {
        if let Some(e) = entry(unit) {
            // Release: the owner's last writes to the descriptor happen-before a reader that sees 0 (and then
            // does not use it). Freeing the descriptor is the caller's business, after `clear`.
            e.store(0, Ordering::Release);
        }
    }
}

/// Bytes mapped for radix leaves (never returned; the top level is a static; the flat table is address
/// space, not counted here).
pub fn mapped_bytes() -> usize {
    LEAVES.load(Ordering::Relaxed) * LEAF_BYTES
}

/// Number of installed radix leaves.
pub fn leaves() -> usize {
    LEAVES.load(Ordering::Relaxed)
}

/// Whether the flat table is in use (decided by the first registration; false before it, under Miri, and
/// where the reservation was refused).
pub fn flat() -> bool {
    FLAT.units.load(Ordering::Acquire) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // Synthetic addresses far from where Linux places heaps, stacks and mmaps (0x55.. and 0x7f..), so they
    // never collide with real registrations made by other tests in the same process.
    const BASE: usize = 0x2000_0000_0000;
    const LEAF_SPAN: usize = LEAF_LEN * UNIT;

    #[test]
    fn set_get_clear_within_a_leaf() {
        let a = BASE + 17 * UNIT;
        assert!(set(a, 3, 0x1230));
        assert_eq!(get(a), 0x1230);
        assert_eq!(get(a + UNIT - 1), 0x1230);
        assert_eq!(get(a + 2 * UNIT + 5), 0x1230);
        assert_eq!(get(a + 3 * UNIT), 0);
        assert_eq!(get(a - 1), 0);
        clear(a, 3);
        assert_eq!(get(a), 0);
        assert_eq!(get(a + 2 * UNIT), 0);
    }

    #[test]
    fn set_across_a_leaf_boundary() {
        let boundary = BASE + 8 * LEAF_SPAN;
        let a = boundary - 2 * UNIT;
        assert!(set(a, 4, 0x4440));
        for i in 0..4 {
            assert_eq!(get(a + i * UNIT), 0x4440, "unit {i}");
        }
        assert_eq!(get(a + 4 * UNIT), 0);
        assert_ne!(split(a).unwrap().0, split(a + 3 * UNIT).unwrap().0);
        clear(a, 4);
        for i in 0..4 {
            assert_eq!(get(a + i * UNIT), 0);
        }
    }

    #[test]
    fn top_of_the_address_space() {
        let top_unit = (1usize << ADDR_BITS) - UNIT;
        assert!(set(top_unit, 1, 0x7770));
        assert_eq!(get(top_unit), 0x7770);
        assert_eq!(get((1 << ADDR_BITS) - 1), 0x7770);
        assert_eq!(get(1 << ADDR_BITS), 0);
        assert_eq!(get((1 << ADDR_BITS) + UNIT), 0);
        assert_eq!(get(0), 0);
        // Ranges reaching past the covered space are refused whole.
        assert!(!set(top_unit, 2, 0x8880));
        assert_eq!(get(top_unit), 0x7770);
        assert!(!set(1 << ADDR_BITS, 1, 0x8880));
        assert!(!set(usize::MAX - UNIT, 1, 0x8880));
        assert!(!set(BASE, 0, 0x8880));
        assert!(!set(BASE, usize::MAX, 0x8880));
        clear(top_unit, 5);
        assert_eq!(get(top_unit), 0);
    }

    #[test]
    fn foreign_addresses_map_to_zero() {
        let on_stack = 7u32;
        let boxed = Box::new(11u64);
        assert_eq!(get(&on_stack as *const u32 as usize), 0);
        assert_eq!(get(&*boxed as *const u64 as usize), 0);
        assert_eq!(get(0), 0);
        assert_eq!(get(usize::MAX), 0);
        assert_eq!(get(1 << 63), 0);
        // A leaf that was never installed (a region no test or allocation uses).
        let untouched = BASE + 40 * LEAF_SPAN;
        assert!(TOP[split(untouched).unwrap().0]
            .load(Ordering::Relaxed)
            .is_null());
        assert_eq!(get(untouched), 0);
        clear(untouched, 10);
        assert!(TOP[split(untouched).unwrap().0]
            .load(Ordering::Relaxed)
            .is_null());
    }

    #[test]
    fn leaves_are_counted() {
        // Above the flat table's reach (or anywhere, without one): radix leaves.
        let a = (1 << FLAT_BITS.min(ADDR_BITS - 1)) + 20 * LEAF_SPAN;
        assert!(set(a, 1, 0x10));
        assert!(leaves() >= 1);
        assert_eq!(mapped_bytes(), leaves() * LEAF_BYTES);
        clear(a, 1);
    }

    #[test]
    fn the_flat_table_answers_below_its_reach_and_the_radix_above() {
        let a = BASE + 50 * LEAF_SPAN;
        assert!(set(a, 1, 0x5550));
        // Linux outside Miri reserves the flat table (16 GiB of address space is no memory), unless
        // the address space is limited: the `radix` stage of `cargo xtask test` runs these tests
        // under `ulimit -v` with HOTSLAB_EXPECT_RADIX set, so the fallback is tested too.
        let radix_only = std::env::var_os("HOTSLAB_EXPECT_RADIX").is_some();
        assert_eq!(
            flat(),
            cfg!(all(target_os = "linux", not(miri))) && !radix_only
        );
        assert_eq!(get(a), 0x5550);
        assert_eq!(get_flat(a), if flat() { 0x5550 } else { 0 });
        if flat() {
            // The entry lives in the flat table: no radix leaf for its 4 GiB.
            assert!(TOP[split(a).unwrap().0].load(Ordering::Relaxed).is_null());
        }
        clear(a, 1);
        assert_eq!(get(a), 0);
        // A range across the flat table's end: the units below it in the flat table, the rest in a
        // radix leaf, one value throughout, one call.
        if FLAT_BITS < ADDR_BITS {
            let edge = 1usize << FLAT_BITS;
            let r = edge - 2 * UNIT;
            assert!(set(r, 4, 0x6660));
            for i in 0..4 {
                assert_eq!(get(r + i * UNIT + 7), 0x6660, "unit {i}");
                // The flat lookup answers below the edge only; above it means "ask `get`".
                let below = i < 2 && flat();
                assert_eq!(get_flat(r + i * UNIT), if below { 0x6660 } else { 0 });
            }
            assert_eq!(get(r + 4 * UNIT), 0);
            assert_eq!(get(r - 1), 0);
            if flat() {
                assert!(!TOP[split(edge).unwrap().0]
                    .load(Ordering::Relaxed)
                    .is_null());
            }
            clear(r, 4);
            for i in 0..4 {
                assert_eq!(get(r + i * UNIT), 0, "unit {i}");
            }
        }
    }

    #[test]
    fn concurrent_set_get_on_different_ranges() {
        let threads = if cfg!(miri) { 3 } else { 8 };
        let per = if cfg!(miri) { 16 } else { 4096 };
        // All threads race to install the same two leaves (ranges interleave around a leaf boundary).
        let boundary = BASE + 30 * LEAF_SPAN;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                std::thread::spawn(move || {
                    for i in 0..per {
                        let unit = (i * threads + t) as isize - (per * threads / 2) as isize;
                        let addr = (boundary as isize + unit * UNIT as isize) as usize;
                        let value = ((t + 1) << 32) | (i << 3);
                        assert!(set(addr, 1, value));
                        assert_eq!(get(addr), value);
                    }
                    for i in 0..per {
                        let unit = (i * threads + t) as isize - (per * threads / 2) as isize;
                        let addr = (boundary as isize + unit * UNIT as isize) as usize;
                        assert_eq!(get(addr + 100), ((t + 1) << 32) | (i << 3));
                        clear(addr, 1);
                        assert_eq!(get(addr), 0);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}
