//! Debug mode (`slub_debug` in user space): the debug slot layout (free pointer, red zones,
//! poison), the hardened freelist of debug slabs, their allocation and free paths under the
//! part's list lock, and the no-allocation corruption report that aborts. It must not touch
//! normal slabs or the lock-free fast path: a debug slab is never a thread cache's `cur`.
//!
//! A debug slot is laid out as
//!
//! ```text
//! | free pointer (8) | left red zone | object (size) | right red zone (>= 8, to the stride) |
//! ```
//!
//! Red zones read 0xcc while the object is allocated and 0xbb while it is free (so a second
//! free is recognised), a free object reads 0x6b with its last byte 0xa5 (poison, not for caches
//! with a constructor, whose objects keep their constructed state), and the free pointer is
//! stored as `next ^ secret ^ swap_bytes(address of the word)` and checked when it is followed.
//! Because the object never starts a slot, the page-map fast paths of free never accept a debug
//! object: they fall through to their slow branches, which come here.

use core::fmt;
use core::ptr;

use hotslab_numa::NodeId;

use crate::cache::CacheInner;
use crate::node::{NodePart, PartLists, PartState};
use crate::slab::{geometry, ListKind, Slab, SlabGeometry, SlotDebug};
use crate::stats::FixedWriter;
use crate::sync::Ordering;

/// Which checks debug slabs run. Any flag makes new slabs debug slabs, which always catch a
/// double free and a free of a pointer that is not an object start; the flags add the rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DebugFlags(u32);

impl DebugFlags {
    /// Debug mode off.
    pub const NONE: DebugFlags = DebugFlags(0);
    /// Check both red zones of an object on free (overflow / underflow) and of a free object
    /// on allocation (a neighbour's overflow into a free slot).
    pub const RED_ZONE: DebugFlags = DebugFlags(1);
    /// Poison freed objects (0x6b, last byte 0xa5) and check the poison on the next allocation
    /// (a write after free). Skipped for caches with a constructor.
    pub const POISON: DebugFlags = DebugFlags(2);
    /// Store free pointers obfuscated with a per-cache secret and their own address, and check
    /// each one before following it.
    pub const HARDENED_FREELIST: DebugFlags = DebugFlags(4);
    /// Every check of the debug mode (red zones, poison, hardened freelist).
    pub const ALL: DebugFlags = DebugFlags(7);
    /// Link a new slab's free slots in a random order, so allocation order within a slab (and
    /// which object follows which in memory) cannot be predicted.
    pub const SHUFFLE: DebugFlags = DebugFlags(8);
    /// Delay reuse: a freed object goes to the tail of its slab's freelist (first in, first
    /// out), and a slab is allocated from only while more than [`QUARANTINE_SLOTS`] of its slots
    /// are free, so a freed object waits behind at least that many others (with `POISON`, a
    /// write to it meanwhile is caught when it is reused).
    pub const QUARANTINE: DebugFlags = DebugFlags(16);
    /// End every slab with an inaccessible guard page (`PROT_NONE`), so a linear overflow out of
    /// the last objects faults instead of reaching the next slab.
    pub const GUARD: DebugFlags = DebugFlags(32);
    /// The secure mode (`HOTSLAB_SECURE=1`, or the `secure` feature): every flag. Freed objects
    /// are overwritten (poison), which gives zero-on-free's protection against reading stale
    /// data and lets the reuse check see writes after free; `calloc` still returns zeros.
    pub const SECURE: DebugFlags = DebugFlags(63);

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Flags from raw bits (unknown bits are dropped).
    pub const fn from_bits(bits: u32) -> DebugFlags {
        DebugFlags(bits & Self::SECURE.0)
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: DebugFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether debug mode is off.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl core::ops::BitOr for DebugFlags {
    type Output = DebugFlags;
    fn bitor(self, o: DebugFlags) -> DebugFlags {
        DebugFlags(self.0 | o.0)
    }
}

/// Byte of a free object (SLUB's POISON_FREE).
pub const POISON_FREE: u8 = 0x6b;
/// Last byte of a free object (SLUB's POISON_END).
pub const POISON_END: u8 = 0xa5;
/// Red zone of a free object (SLUB's SLUB_RED_INACTIVE).
pub const RED_INACTIVE: u8 = 0xbb;
/// Red zone of an allocated object (SLUB's SLUB_RED_ACTIVE).
pub const RED_ACTIVE: u8 = 0xcc;

/// Bytes of the free-pointer word at the start of a debug slot.
const FP: usize = 8;

/// Free slots a slab keeps back under [`DebugFlags::QUARANTINE`].
pub const QUARANTINE_SLOTS: u32 = 4;

/// Bytes of the guard page at the end of a slab under [`DebugFlags::GUARD`].
const GUARD_BYTES: usize = 4096;

/// Geometry of a cache's debug slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DebugLayout {
    pub stride: usize,
    pub obj_off: usize,
    pub geo: SlabGeometry,
}

/// The debug layout for objects of `size` bytes aligned to `align` (a power of two, at least 8):
/// the object starts `max(align, 16)` bytes into its slot (free pointer, then at least 8 bytes of
/// left red zone) and is followed by at least 8 bytes of right red zone.
pub(crate) fn layout(size: usize, align: usize) -> Option<DebugLayout> {
    let obj_off = align.max(2 * FP);
    let size8 = size.checked_add(7)? & !7;
    let raw = obj_off.checked_add(size8)?.checked_add(8)?;
    let stride = raw.checked_add(align - 1)? & !(align - 1);
    Some(DebugLayout {
        stride,
        obj_off,
        geo: geometry(stride)?,
    })
}

/// The alignment debug objects of `c` get: the cache's own, raised to the alignment its normal
/// objects have in fact (the largest power of two dividing the stride, slab bases being UNIT
/// aligned), which kmalloc's class choice relies on (a 16-aligned request may be served by
/// kmalloc-48 because 48-byte slots from a 64 KiB aligned base are all 16-aligned).
pub(crate) fn debug_align(c: &CacheInner) -> usize {
    let natural = 1usize << c.stride.trailing_zeros();
    c.align.max(natural.min(crate::mem::UNIT))
}

/// A per-cache secret for the hardened freelist (getrandom, or a mix of addresses and time where
/// that is unavailable). Never allocates.
pub(crate) fn new_secret(salt: usize) -> usize {
    #[cfg(not(miri))]
    let word = {
        let mut w = 0usize;
        // SAFETY: getrandom writes at most 8 bytes into `w`; GRND_NONBLOCK never blocks.
        unsafe {
            libc::getrandom(
                (&mut w as *mut usize).cast(),
                core::mem::size_of::<usize>(),
                libc::GRND_NONBLOCK,
            )
        };
        w
    };
    #[cfg(miri)]
    let word = 0usize;
    let local = 0u8;
    let mut x = word ^ salt ^ (&local as *const u8 as usize).rotate_left(17);
    // splitmix64 finaliser: spreads whatever entropy there is over all bits.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) | 1
}

// ---- switching ---------------------------------------------------------------------------------

// ---- slot access -------------------------------------------------------------------------------

/// Whether `p` is the object address of a slot of debug slab `s`.
#[inline]
pub(crate) fn is_object(s: &Slab, p: *mut u8) -> bool {
    let o = (p as usize)
        .wrapping_sub(s.base as usize)
        .wrapping_sub(s.dbg.obj_off as usize);
    let stride = s.stride as usize;
    o < s.capacity as usize * stride && o % stride == 0
}

/// Whether `s` has more free slots than the quarantine keeps back.
fn has_unquarantined(s: &Slab) -> bool {
    s.capacity - s.in_use() > QUARANTINE_SLOTS
}

/// Before a debug slab's span goes back to its arena (no lock needed: nothing reaches the slab):
/// makes its guard page accessible again.
///
/// # Safety
/// `s` is a detached debug slab whose span is still mapped.
pub(crate) unsafe fn before_release(s: &Slab) {
    if s.dbg.flags & DebugFlags::GUARD.0 != 0 {
        // SAFETY: the span is ours until it is handed back after this call.
        unsafe {
            let end = s.base.add(s.units as usize * crate::mem::UNIT);
            libc::mprotect(
                end.sub(GUARD_BYTES).cast(),
                GUARD_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
            );
        }
    }
}

/// Whether `q` is the address of a slot of `s`.
fn is_slot(s: &Slab, q: *mut u8) -> bool {
    let o = (q as usize).wrapping_sub(s.base as usize);
    let stride = s.stride as usize;
    o < s.capacity as usize * stride && o % stride == 0
}

/// Bytes of an object of `s` the user may touch (usable size).
#[inline]
pub(crate) fn usable(s: &Slab) -> usize {
    if s.dbg.flags != 0 {
        s.dbg.obj_size as usize
    } else {
        s.stride as usize
    }
}

fn flags(s: &Slab) -> DebugFlags {
    DebugFlags::from_bits(s.dbg.flags)
}

fn cache_of(s: &Slab) -> &CacheInner {
    // SAFETY: cache metadata outlives its slabs.
    unsafe { &*s.cache }
}

/// The free-pointer word as stored for `next` in the slot at `slot`.
fn encode(s: &Slab, slot: *mut u8, next: *mut u8) -> usize {
    if flags(s).contains(DebugFlags::HARDENED_FREELIST) {
        next as usize ^ cache_of(s).secret ^ (slot as usize).swap_bytes()
    } else {
        next as usize
    }
}

/// # Safety
/// `slot` is a slot of `s`, which the caller owns (part list lock held).
unsafe fn fp_set(s: &Slab, slot: *mut u8, next: *mut u8) {
    let w = encode(s, slot, next);
    // SAFETY: the first word of a slot is the free pointer (8-byte aligned: slots are).
    unsafe { slot.cast::<usize>().write(w) };
}

/// # Safety
/// As for [`fp_set`].
unsafe fn fp_get(s: &Slab, slot: *mut u8) -> *mut u8 {
    // SAFETY: as in fp_set.
    let w = unsafe { slot.cast::<usize>().read() };
    // XOR is its own inverse: decoding is encoding the stored word.
    encode(s, slot, w as *mut u8) as *mut u8
}

/// The two red zones of the slot at `slot`: (start, len) before and after the object.
fn zones(s: &Slab, slot: *mut u8) -> [(*mut u8, usize); 2] {
    let off = s.dbg.obj_off as usize;
    let end = off + s.dbg.obj_size as usize;
    // SAFETY (pointer arithmetic only): both ranges lie inside the slot.
    unsafe {
        [
            (slot.add(FP), off - FP),
            (slot.add(end), s.stride as usize - end),
        ]
    }
}

/// # Safety
/// `slot` is a slot of `s`, owned by the caller.
unsafe fn set_zones(s: &Slab, slot: *mut u8, v: u8) {
    for (p, n) in zones(s, slot) {
        // SAFETY: the zones lie inside the slot.
        unsafe { p.write_bytes(v, n) };
    }
}

/// First byte of either zone that is not `want`: (offset from the object start, value).
///
/// # Safety
/// As for [`set_zones`].
unsafe fn zone_mismatch(s: &Slab, slot: *mut u8, want: u8) -> Option<(isize, u8)> {
    let obj = slot as usize + s.dbg.obj_off as usize;
    for (p, n) in zones(s, slot) {
        for i in 0..n {
            // SAFETY: inside the zone.
            let b = unsafe { p.add(i).read() };
            if b != want {
                return Some((p as usize as isize + i as isize - obj as isize, b));
            }
        }
    }
    None
}

fn poisons(s: &Slab) -> bool {
    flags(s).contains(DebugFlags::POISON) && cache_of(s).ctor.is_none()
}

/// # Safety
/// `obj` is the object of a slot of `s`, owned by the caller.
unsafe fn poison(s: &Slab, obj: *mut u8) {
    let n = s.dbg.obj_size as usize;
    // SAFETY: the object has n >= 1 bytes.
    unsafe {
        obj.write_bytes(POISON_FREE, n - 1);
        obj.add(n - 1).write(POISON_END);
    }
}

// ---- allocation and free -------------------------------------------------------------------------

/// Allocates one object from a debug slab of `c` (slow path of every allocation while `c` is in
/// debug mode). Null when out of memory or the cache is dead; `None` when debug mode was
/// switched off meanwhile (the caller's normal path serves).
pub(crate) fn alloc(c: &CacheInner, want: Option<NodeId>) -> Option<*mut u8> {
    let bits = c.debug.load(Ordering::Acquire) as u32;
    if bits == 0 {
        return None;
    }
    Some(alloc_on(c, want, bits))
}

fn alloc_on(c: &CacheInner, want: Option<NodeId>, bits: u32) -> *mut u8 {
    if c.is_dead() {
        return ptr::null_mut();
    }
    let mut order = [NodeId::new(0); 64];
    let mut n = c.domain().alloc_order(want, &mut order);
    for pass in 0..2 {
        if pass == 1 {
            n = c.domain().order_after_refusal(want, &mut order);
        }
        for &nid in &order[..n] {
            let Some(part) = c.part_for_alloc(nid) else {
                continue;
            };
            let mut lists = part.lock();
            if !part.accepts_new_slabs() {
                crate::placement::part_refused();
                continue;
            }
            let mut s = lists.debug.head();
            if DebugFlags::from_bits(bits).contains(DebugFlags::QUARANTINE) {
                // The first slab (of the first few) with more than the quarantined slots free.
                let mut k = 0;
                // SAFETY: list members are valid under the list lock.
                while !s.is_null() && !has_unquarantined(unsafe { &*s }) {
                    k += 1;
                    // SAFETY: as above.
                    s = if k < 8 {
                        unsafe { (*s).next.get() }
                    } else {
                        ptr::null_mut()
                    };
                }
            }
            // SAFETY: list members are valid under the list lock.
            if s.is_null() || unsafe { (*s).free.get() }.is_null() {
                match new_debug_slab(c, part, &mut lists, bits) {
                    Some(n) => s = n,
                    None => continue,
                }
            }
            // SAFETY: s is a debug slab of this part with a free object; the lock makes us its owner.
            let obj = unsafe { take(&*s) };
            // SAFETY: as above; a slab that became full moves behind the ones with room.
            unsafe {
                if (*s).free.get().is_null() {
                    lists.debug.remove(s);
                    lists.debug.push_back(s);
                }
            }
            return obj;
        }
    }
    ptr::null_mut()
}

/// Makes a debug slab with every slot free and puts it first on the part's debug list.
fn new_debug_slab(
    c: &CacheInner,
    part: &NodePart,
    lists: &mut PartLists,
    bits: u32,
) -> Option<*mut Slab> {
    let lay = layout(c.size, debug_align(c))?;
    let mut flags = DebugFlags::from_bits(bits);
    let mut geo = lay.geo;
    if flags.contains(DebugFlags::GUARD) {
        let span = geo.units as usize * crate::mem::UNIT;
        match (span - GUARD_BYTES) / lay.stride {
            0 => flags = DebugFlags(flags.0 & !DebugFlags::GUARD.0),
            n => geo.capacity = geo.capacity.min(n as u32),
        }
    }
    let dbg = SlotDebug {
        flags: flags.bits(),
        obj_off: lay.obj_off as u32,
        obj_size: c.size as u32,
    };
    let s = c.new_slab_with(part, lists, lay.stride, 0, geo, dbg)?;
    // SAFETY: s is a fresh slab of this part on its empty list; we hold the list lock.
    unsafe {
        lists.take(s);
        let sr = &*s;
        if flags.contains(DebugFlags::GUARD) {
            let end = sr.base.add(sr.units as usize * crate::mem::UNIT);
            // The span is ours (fresh from the arena, page aligned); its last page becomes
            // inaccessible until `before_release` gives it back.
            if libc::mprotect(end.sub(GUARD_BYTES).cast(), GUARD_BYTES, libc::PROT_NONE) != 0 {
                // No guard (out of mappings): the slab works without one.
                let _ = &sr;
            }
        }
        // Slot order: descending addresses (so the list pops them ascending), or a random
        // permutation (Fisher-Yates driven by a generator seeded from the cache secret and the
        // slab's address) under SHUFFLE.
        let cap = sr.capacity as usize;
        let mut order = [0u16; 1024];
        let shuffle = flags.contains(DebugFlags::SHUFFLE) && cap <= order.len();
        if shuffle {
            for (i, o) in order[..cap].iter_mut().enumerate() {
                *o = i as u16;
            }
            let mut x = c.secret ^ (sr.base as usize).rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
            for i in (1..cap).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                order.swap(i, x % (i + 1));
            }
        }
        let mut i = cap;
        while i > 0 {
            i -= 1;
            let k = if shuffle { order[i] as usize } else { i };
            let slot = sr.base.add(k * sr.stride as usize);
            let obj = slot.add(lay.obj_off);
            set_zones(sr, slot, RED_INACTIVE);
            if let Some(ctor) = c.ctor {
                ctor(obj);
            } else if poisons(sr) {
                poison(sr, obj);
            }
            if sr.free.get().is_null() {
                // The first slot linked is the list's last: the quarantine's tail.
                sr.local_free.set(slot);
            }
            fp_set(sr, slot, sr.free.get());
            sr.free.set(slot);
        }
        sr.set_bump(sr.capacity);
        sr.list.set(ListKind::Debug);
        lists.debug.push_front(s);
    }
    Some(s)
}

/// Pops the first free slot of `s`, checks it and its free pointer, marks it allocated and
/// returns its object.
///
/// # Safety
/// `s` is a debug slab with a free slot, owned by the caller (part list lock held).
unsafe fn take(s: &Slab) -> *mut u8 {
    let slot = s.free.get();
    let obj = slot.wrapping_add(s.dbg.obj_off as usize);
    let name = cache_of(s).name;
    // SAFETY: slot is the head of our freelist: a slot of s (checked when it was linked in).
    unsafe {
        if flags(s).contains(DebugFlags::RED_ZONE) {
            if let Some((off, b)) = zone_mismatch(s, slot, RED_INACTIVE) {
                report(
                    Some(name),
                    obj as usize,
                    format_args!(
                        "red zone of a free object overwritten at byte {off:+} \
                         ({b:#04x}, expected {RED_INACTIVE:#04x})"
                    ),
                );
            }
        } else if slot.add(FP).read() != RED_INACTIVE {
            report(
                Some(name),
                obj as usize,
                format_args!("free object's state byte overwritten"),
            );
        }
        if poisons(s) {
            let n = s.dbg.obj_size as usize;
            for i in 0..n {
                let want = if i + 1 == n { POISON_END } else { POISON_FREE };
                let b = obj.add(i).read();
                if b != want {
                    report(
                        Some(name),
                        obj as usize,
                        format_args!(
                            "poison overwritten at byte +{i} ({b:#04x}, expected {want:#04x}): \
                             written after it was freed"
                        ),
                    );
                }
            }
        }
        let next = fp_get(s, slot);
        if !next.is_null() && !is_slot(s, next) {
            report(
                Some(name),
                obj as usize,
                format_args!(
                    "freelist pointer corrupted (decodes to {:#x})",
                    next as usize
                ),
            );
        }
        s.free.set(next);
        if next.is_null() {
            s.local_free.set(ptr::null_mut());
        }
        s.allocs.add(1);
        set_zones(s, slot, RED_ACTIVE);
    }
    obj
}

/// Frees `p` into debug slab `s`, first checking that `p` is an object start of it (a pointer
/// that is not is reported, and the process aborts).
///
/// # Safety
/// The page map attributes `p` to `s`; if `p` is an object of `s` the caller hands it back.
pub(crate) unsafe fn free_checked(s: &Slab, p: *mut u8) {
    if !is_object(s, p) {
        report(
            Some(cache_of(s).name),
            p as usize,
            format_args!("free of a pointer into the middle of an object"),
        );
    }
    // The caller holds `s` as a reference argument for the whole call: the slab must outlive
    // it, so an emptied slab is left for shrink instead of being freed here.
    // SAFETY: checked above; forwarded from the caller.
    unsafe { free_inner(p, false) }
}

/// Frees object `p` of debug slab `s`: checks that it is allocated and its red zones are intact,
/// poisons it and links it (encoded) into the slab's freelist.
///
/// The slab is found through the page map (not passed as a reference: an emptied slab may be
/// freed before this returns, which no live reference may witness).
///
/// # Safety
/// `p` is an object start of a debug slab (see [`is_object`]) that the caller hands back; the
/// caller keeps no reference to the slab that it uses afterwards.
pub(crate) unsafe fn free(p: *mut u8) {
    // SAFETY: forwarded from the caller.
    unsafe { free_inner(p, true) }
}

/// # Safety
/// As for [`free`]; with `may_discard == false` the slab outlives the call.
unsafe fn free_inner(p: *mut u8, may_discard: bool) {
    let sp = crate::slab::slab_of(p).cast_mut();
    // SAFETY: p is an object of a registered debug slab, so the page map names its descriptor;
    // this reference is not used once `settle` may free the slab.
    let s = unsafe { &*sp };
    let c = cache_of(s);
    // SAFETY: parts outlive their slabs.
    let part = unsafe { &*s.part };
    let slot = p.wrapping_sub(s.dbg.obj_off as usize);
    let mut lists = part.lock();
    // SAFETY: p is an object of s, so slot is a slot of s; the list lock makes us its owner.
    unsafe {
        if flags(s).contains(DebugFlags::RED_ZONE) {
            if zone_mismatch(s, slot, RED_INACTIVE).is_none() {
                report(Some(c.name), p as usize, format_args!("double free"));
            }
            if let Some((off, b)) = zone_mismatch(s, slot, RED_ACTIVE) {
                let side = if off < 0 { "before" } else { "after" };
                report(
                    Some(c.name),
                    p as usize,
                    format_args!(
                        "red zone {side} the object overwritten at byte {off:+} \
                         ({b:#04x}, expected {RED_ACTIVE:#04x})"
                    ),
                );
            }
        } else {
            match slot.add(FP).read() {
                RED_ACTIVE => {}
                RED_INACTIVE => report(Some(c.name), p as usize, format_args!("double free")),
                _ => report(
                    Some(c.name),
                    p as usize,
                    format_args!("object's state byte overwritten"),
                ),
            }
        }
        set_zones(s, slot, RED_INACTIVE);
        if poisons(s) {
            poison(s, p);
        }
        let tail = s.local_free.get();
        if flags(s).contains(DebugFlags::QUARANTINE) && !tail.is_null() {
            // First in, first out: reused after every slot freed before it.
            fp_set(s, slot, ptr::null_mut());
            fp_set(s, tail, slot);
            s.local_free.set(slot);
        } else {
            if tail.is_null() {
                s.local_free.set(slot);
            }
            fp_set(s, slot, s.free.get());
            s.free.set(slot);
        }
        s.frees.add(1);
    }
    settle(c, part, &mut lists, sp, may_discard);
}

/// Re-files a debug slab after a free (list lock held): first on the list (it has room now), or
/// freed (if `may_discard`) when it is empty and not needed (debug mode off, part not live, or
/// another slab of the part has room).
fn settle(c: &CacheInner, part: &NodePart, lists: &mut PartLists, s: *mut Slab, may_discard: bool) {
    // SAFETY: s is on the debug list of this part; we hold the list lock.
    unsafe {
        lists.debug.remove(s);
        let other = lists.debug.head();
        let other_has_room = !other.is_null() && !(*other).free.get().is_null();
        lists.debug.push_front(s);
        if may_discard
            && (*s).in_use() == 0
            && (!c.debug_on() || !part.accepts_new_slabs() || other_has_room)
        {
            c.discard_slab(part, lists, s);
        }
    }
    if part.state() == PartState::Draining && lists.nr_slabs() == 0 {
        c.domain().part_drained(c, part);
    }
}

// ---- report ------------------------------------------------------------------------------------

/// A double free caught by the cheap checks every mode runs (the object heads one of its slab's
/// freelists): reported with the cache's name, then abort.
#[cold]
#[inline(never)]
pub(crate) fn double_free(s: &Slab, obj: *mut u8) -> ! {
    // SAFETY: a non-null cache pointer names live cache metadata (unit tests pass null).
    let name = (!s.cache.is_null()).then(|| unsafe { (*s.cache).name });
    report(name, obj as usize, format_args!("double free"))
}

/// Prints what was found wrong (cache, object address, what) to stderr without allocating, then
/// aborts: a corrupted heap must not run on.
#[cold]
pub(crate) fn report(cache: Option<&str>, addr: usize, what: fmt::Arguments<'_>) -> ! {
    let mut buf = [0u8; 320];
    let mut w = FixedWriter::new(&mut buf);
    let _ = match cache {
        Some(name) => fmt::write(
            &mut w,
            format_args!("hotslab: BUG: cache {name}: object {addr:#x}: {what}\n"),
        ),
        None => fmt::write(
            &mut w,
            format_args!("hotslab: BUG: pointer {addr:#x}: {what}\n"),
        ),
    };
    let b = w.as_bytes();
    // SAFETY: writes a valid buffer to stderr, then aborts without unwinding or allocating.
    unsafe {
        libc::write(2, b.as_ptr().cast(), b.len());
        libc::abort()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CacheConfig, CacheError, CacheFlags, SlabDomain};

    fn domain() -> std::sync::Arc<SlabDomain> {
        SlabDomain::simulated_with(
            1,
            crate::DomainConfig {
                kmalloc: false,
                ..crate::DomainConfig::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn layout_keeps_alignment_and_red_zones() {
        for align in [8usize, 16, 64, 4096] {
            for size in [1usize, 7, 8, 40, 100, 4096] {
                let l = layout(size, align).unwrap();
                assert_eq!(l.obj_off % align, 0);
                assert_eq!(l.stride % align, 0);
                assert!(l.obj_off >= 16, "free pointer + 8 bytes of left zone");
                assert!(
                    l.stride >= l.obj_off + size + 8,
                    "at least 8 bytes of right zone"
                );
            }
        }
        assert!(layout(usize::MAX - 3, 8).is_none());
    }

    #[test]
    fn flags_and_secret() {
        assert_eq!(DebugFlags::from_bits(0xff), DebugFlags::SECURE);
        assert!(DebugFlags::SECURE.contains(DebugFlags::ALL | DebugFlags::GUARD));
        assert!(DebugFlags::ALL.contains(DebugFlags::POISON | DebugFlags::RED_ZONE));
        assert!(DebugFlags::NONE.is_empty());
        let (a, b) = (new_secret(1), new_secret(2));
        assert_ne!(a, b);
        assert_eq!(a & 1, 1);
    }

    #[test]
    fn debug_objects_are_checked_poisoned_and_hardened() {
        let d = domain();
        let c = d
            .create_cache(CacheConfig::new("dbg40", 40).flags(CacheFlags::DEBUG))
            .unwrap();
        let a = c.alloc().unwrap().as_ptr();
        let b = c.alloc().unwrap().as_ptr();
        assert_eq!(a as usize % 8, 0);
        // SAFETY: a and b are live 40-byte debug objects; the bytes around them are their slots'
        // red zones and free pointers, which these reads only inspect.
        unsafe {
            assert!((0..8).all(|i| a.sub(8 - i).read() == RED_ACTIVE));
            assert!((40..48).all(|i| a.add(i).read() == RED_ACTIVE));
            a.write_bytes(0x11, 40);
            c.free(nn(a)).unwrap();
            assert!((0..39).all(|i| a.add(i).read() == POISON_FREE));
            assert_eq!(a.add(39).read(), POISON_END);
            assert!((40..48).all(|i| a.add(i).read() == RED_INACTIVE));
            c.free(nn(b)).unwrap();
            // b's slot now links to a's slot, obfuscated.
            let word = b.sub(16).cast::<usize>().read();
            assert_ne!(word, a as usize - 16);
            assert_ne!(word, 0);
        }
        // LIFO: the next allocations give b, then a back, checked and marked allocated.
        assert_eq!(c.alloc().unwrap().as_ptr(), b);
        assert_eq!(c.alloc().unwrap().as_ptr(), a);
        let st = c.stats().unwrap();
        assert_eq!((st.allocs, st.frees, st.active_objects), (4, 2, 2));
        // Interior pointers are API errors, not frees.
        assert!(matches!(
            c.free(nn(a.wrapping_add(8))),
            Err(CacheError::InteriorPointer(_))
        ));
        assert_eq!(crate::usable_size(a), Some(40));
        c.free(nn(a)).unwrap();
        c.free(nn(b)).unwrap();
        c.destroy().unwrap();
    }

    fn nn(p: *mut u8) -> core::ptr::NonNull<u8> {
        core::ptr::NonNull::new(p).unwrap()
    }

    #[test]
    #[cfg_attr(miri, ignore)] // slow under Miri; the test above covers the paths
    fn switching_affects_new_slabs_only() {
        let d = domain();
        let c = d.create_cache(CacheConfig::new("sw", 64)).unwrap();
        let plain = c.alloc().unwrap();
        c.set_debug(DebugFlags::ALL).unwrap();
        let checked = c.alloc().unwrap();
        // SAFETY: reading the byte before a live debug object (its left red zone).
        assert_eq!(unsafe { checked.as_ptr().sub(1).read() }, RED_ACTIVE);
        c.set_debug(DebugFlags::NONE).unwrap();
        let plain2 = c.alloc().unwrap();
        // The debug object is still checked on free; the plain ones take the normal path.
        c.free(checked).unwrap();
        c.free(plain).unwrap();
        c.free(plain2).unwrap();
        assert_eq!(c.stats().unwrap().active_objects, 0);
        c.destroy().unwrap();
        assert_eq!(
            c.set_debug(DebugFlags::ALL).unwrap_err(),
            CacheError::Destroyed
        );
    }

    #[test]
    #[cfg_attr(miri, ignore)] // slow under Miri; the test above covers the paths
    fn constructor_state_survives_in_debug_slabs() {
        fn ctor(p: *mut u8) {
            // SAFETY: the constructor gets a whole 24-byte object.
            unsafe { p.write_bytes(0x42, 24) };
        }
        let d = domain();
        let c = d
            .create_cache(
                CacheConfig::new("dbgctor", 24)
                    .ctor(ctor)
                    .flags(CacheFlags::DEBUG),
            )
            .unwrap();
        let objs: Vec<_> = (0..100).map(|_| c.alloc().unwrap()).collect();
        for &o in &objs {
            // SAFETY: live 24-byte objects.
            assert!(unsafe { core::slice::from_raw_parts(o.as_ptr(), 24) }
                .iter()
                .all(|&b| b == 0x42));
            c.free(o).unwrap();
        }
        c.destroy().unwrap();
    }
}
