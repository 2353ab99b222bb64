//! One slab: a span of arena UNITs carved into equal objects, with its three freelists (the
//! owner's pop list `free`, the owner's frees `local_free`, and the cross-thread list `xthread`
//! on its own cache line), its counters and its owner. The descriptor lives in metadata memory,
//! never in front of the objects. This file owns the object layout inside a span and the
//! freelist encoding; it knows nothing of heaps beyond the `owner` word, nor of part lists
//! beyond the link fields the part's list lock guards.

use core::cell::Cell;
use core::ptr;

use hotslab_numa::NodeId;

use crate::cache::CacheInner;
#[cfg(loom)]
use crate::domain::HeapMutation;
use crate::node::NodePart;
use crate::sync::{AtomicUsize, Ordering};

/// Fixed-point shift of `Slab::recip`.
const RECIP_SHIFT: u32 = 40;

/// The `owner` word of a slab no heap owns (resting in its part, or never owned). Not 0, so that
/// a thread without a heap (a null heap pointer) never matches it and the free fast path needs
/// no separate null check; heaps are 8-byte aligned, so no heap address is 1.
pub(crate) const NO_OWNER: usize = 1;

/// Bits of a remote-list word that hold the pointer (user-space addresses fit in 47 bits).
const REMOTE_PTR_BITS: u32 = 48;
const REMOTE_PTR_MASK: usize = (1 << REMOTE_PTR_BITS) - 1;
/// Bit 0 of the remote-list word (objects are 8-byte aligned, so no list head sets it): the slab
/// is parked on its owner's full queue. The owner sets it when it parks the slab ([`Slab::park`]);
/// the cross-thread free whose CAS clears it tells the owner's thread cache (one notice), so the
/// owner finds the slab again without scanning its full queue. Both sides are read-modify-writes
/// of this one word, so one of them always sees the other: either the owner's `park` finds the
/// free already there, or the free finds the bit.
pub(crate) const REMOTE_PARKED: usize = 1;

/// Where a resting slab sits in its part (under the part's list lock).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ListKind {
    /// Owned by a heap (on the part's `owned` list).
    Owned,
    /// Resting with free objects.
    Partial,
    /// Resting with no private free object (remote frees may have arrived since).
    Full,
    /// Resting with every object free.
    Empty,
    /// A debug slab (`debug.rs`): never owned by a heap; allocated from and freed into under
    /// the part's list lock only.
    Debug,
}

/// Which queue of its owning thread cache an owned slab is on (owner-private).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum HeapQueue {
    /// Not on a heap queue (resting in its part, or the thread cache's current slab).
    None,
    /// Owned, may have free objects.
    Avail,
    /// Owned, found without a free object (local frees bring it back to `Avail`).
    Full,
}

/// A 16-bit owner-written count that statistics read from other threads at any time: relaxed atomic
/// loads and stores, which compile to the plain moves a `Cell` would, but make those racy reads
/// defined (ThreadSanitizer found them). 16 bits, so that it shares the slab's first cache line;
/// the API takes and gives `u32`.
pub(crate) struct OwnerCount16(core::sync::atomic::AtomicU16);

impl OwnerCount16 {
    pub const fn new(v: u16) -> OwnerCount16 {
        OwnerCount16(core::sync::atomic::AtomicU16::new(v))
    }

    #[inline(always)]
    pub fn get(&self) -> u32 {
        self.0.load(core::sync::atomic::Ordering::Relaxed) as u32
    }

    /// The count widened to 64 bits (any thread: frees check the carve mark before they know
    /// whose slab it is).
    #[inline(always)]
    pub fn get64(&self) -> u64 {
        u64::from(self.0.load(core::sync::atomic::Ordering::Relaxed))
    }

    /// `v` must fit 16 bits (callers store counts bounded by a slab's capacity).
    #[inline(always)]
    pub fn set(&self, v: u32) {
        debug_assert!(v <= u16::MAX as u32);
        self.0
            .store(v as u16, core::sync::atomic::Ordering::Relaxed)
    }
}

// Every field a malloc or free fast path touches sits in the descriptor's first cache line (the
// descriptor itself is 64-byte aligned, by its `LinePadded` remote word). Descriptors come from
// `mem::meta`'s odd-line classes (129..=448 bytes, aligned to at most 64), so those allocated back
// to back put their first lines in every L1 set (see `sync::LinePadded`).
#[cfg(not(loom))]
const _: () = assert!(core::mem::offset_of!(Slab, freeptr_off) + 4 <= 64);
#[cfg(not(loom))]
const _: () = assert!(
    core::mem::align_of::<Slab>() == 64
        && core::mem::size_of::<Slab>() > 128
        && core::mem::size_of::<Slab>() <= 448
);

/// A 64-bit owner-written counter (see [`OwnerCount16`]); `bump` is a load and a store, no RMW.
pub(crate) struct OwnerCount64(core::sync::atomic::AtomicU64);

impl OwnerCount64 {
    pub const fn new(v: u64) -> OwnerCount64 {
        OwnerCount64(core::sync::atomic::AtomicU64::new(v))
    }

    #[inline(always)]
    pub fn get(&self) -> u64 {
        self.0.load(core::sync::atomic::Ordering::Relaxed)
    }

    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.get().wrapping_add(n),
            core::sync::atomic::Ordering::Relaxed,
        )
    }
}

/// How a debug slab lays out its slots (all zero for a normal slab). See `debug.rs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SlotDebug {
    /// The `DebugFlags` bits the slab was made with (0: a normal slab).
    pub flags: u32,
    /// Offset of the object inside its slot (the free pointer and the left red zone precede it).
    pub obj_off: u32,
    /// Bytes of the object the user may touch.
    pub obj_size: u32,
}

/// A slab descriptor.
///
/// Field ownership: immutable fields are set before the slab is published; `free`,
/// `local_free`, the counters, `bump`, `tc` and the heap links belong to the owner (the owning
/// heap, or the holder of the part's list lock while the slab rests); `xthread` and `owner` are
/// shared atomics; the part list links belong to the part's list lock.
///
/// Objects handed out right now = `allocs - frees - remote_count(xthread)`: every alloc bumps
/// `allocs`, every local free and every collected remote free bumps `frees`, so statistics are
/// exact without a counter anywhere else and without a walk.
#[repr(C)]
pub(crate) struct Slab {
    // ---- owner-private, hot (first cache line) -----------------------------------------------
    /// The list allocations pop from (object addresses; next pointer at `freeptr_off`).
    pub free: Cell<*mut u8>,
    /// The owner's frees (plain pushes); swapped into `free` when that runs dry.
    pub local_free: Cell<*mut u8>,
    /// Address of the owning `Heap`, or [`NO_OWNER`] while the slab rests in its part. Written by the
    /// owner's part-lock sections and by revokers; read by every free.
    pub owner: AtomicUsize,
    /// Objects handed out from this slab (ever).
    pub allocs: OwnerCount64,
    /// Objects given back (local frees plus collected remote frees).
    pub frees: OwnerCount64,
    /// First byte of the span (immutable; read by every free's slot check).
    pub base: *mut u8,
    /// ceil(2^40 / stride): object index by multiplication instead of division (immutable).
    pub recip: u64,
    /// Index of the first never-used object (objects at and after it are free and uncarved).
    /// At most `capacity`, which `geometry` keeps below 2^16.
    pub bump: OwnerCount16,
    /// The owner's queue (owner-private).
    pub queue: Cell<HeapQueue>,
    /// `bump < capacity` (owner-private; kept by [`Slab::set_bump`]): the refill asks it on the
    /// first line instead of reading `capacity` on the second.
    uncarved: Cell<bool>,
    /// Offset of the free pointer inside a free object (immutable).
    pub freeptr_off: u32,
    // ---- immutable, off the fast paths (second cache line) ---------------------------------
    pub stride: u32,
    pub capacity: u32,
    pub units: u32,
    pub node: NodeId,
    pub cache: *const CacheInner,
    pub part: *const NodePart,
    /// The owning thread cache (`heap::ThreadCache`), set with `owner` under the part's lock.
    pub tc: AtomicUsize,
    // ---- heap queue links (owner-private) ----------------------------------------------------
    pub hprev: Cell<*mut Slab>,
    pub hnext: Cell<*mut Slab>,
    // ---- part list links --------------------------------------------------------------------
    pub prev: Cell<*mut Slab>,
    pub next: Cell<*mut Slab>,
    pub list: Cell<ListKind>,
    /// When the slab became empty (ms, `mem::now_ms`), while it rests on its part's empty list.
    pub idle_since: Cell<u64>,
    // ---- immutable, debug slabs only (read off the fast path) --------------------------------
    pub dbg: SlotDebug,
    // ---- shared, written by other threads: its own cache line ---------------------------------
    /// Cross-thread frees: a packed (head pointer, count) word; push-only plus take-all, so ABA
    /// cannot arise.
    pub xthread: crate::sync::LinePadded<AtomicUsize>,
}

// SAFETY: the Cell fields are only touched by the slab's current owner (see the field docs);
// ownership moves between threads only through the part's list lock or the revocation protocol,
// both of which are release/acquire edges.
unsafe impl Send for Slab {}
// SAFETY: as for Send: shared access goes through the atomics, the rest is owner-only.
unsafe impl Sync for Slab {}

/// What a local free found out about its slab (the caller acts on it off the hot path).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(crate) enum AfterFree {
    /// Nothing to do.
    Done,
    /// The slab was on its owner's full queue: it has a free object again.
    Unfull,
    /// Every object of the slab is free now.
    Empty,
    /// The object heads one of the slab's private free lists: a double free, not pushed. The
    /// caller must report it (`debug::double_free`), which aborts.
    DoubleFree,
}

impl Slab {
    /// A descriptor for a fresh span: nothing carved yet, nothing free on any list.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        base: *mut u8,
        units: u32,
        capacity: u32,
        stride: u32,
        freeptr_off: u32,
        node: NodeId,
        cache: *const CacheInner,
        part: *const NodePart,
    ) -> Slab {
        Slab {
            free: Cell::new(ptr::null_mut()),
            local_free: Cell::new(ptr::null_mut()),
            owner: AtomicUsize::new(NO_OWNER),
            allocs: OwnerCount64::new(0),
            frees: OwnerCount64::new(0),
            bump: OwnerCount16::new(0),
            queue: Cell::new(HeapQueue::None),
            uncarved: Cell::new(capacity > 0),
            stride,
            freeptr_off,
            capacity,
            base,
            recip: (1u64 << RECIP_SHIFT).div_ceil(stride as u64),
            units,
            node,
            cache,
            part,
            tc: AtomicUsize::new(0),
            hprev: Cell::new(ptr::null_mut()),
            hnext: Cell::new(ptr::null_mut()),
            prev: Cell::new(ptr::null_mut()),
            next: Cell::new(ptr::null_mut()),
            list: Cell::new(ListKind::Empty),
            idle_since: Cell::new(0),
            dbg: SlotDebug::default(),
            xthread: crate::sync::LinePadded::new(AtomicUsize::new(0)),
        }
    }

    /// The stand-in slab of an empty direct-table entry: no object, no cache, never listed.
    #[cfg(not(loom))]
    pub const fn empty() -> Slab {
        Slab {
            free: Cell::new(ptr::null_mut()),
            local_free: Cell::new(ptr::null_mut()),
            owner: AtomicUsize::new(NO_OWNER),
            allocs: OwnerCount64::new(0),
            frees: OwnerCount64::new(0),
            bump: OwnerCount16::new(0),
            queue: Cell::new(HeapQueue::None),
            uncarved: Cell::new(false),
            stride: 8,
            freeptr_off: 0,
            capacity: 0,
            base: ptr::null_mut(),
            recip: 0,
            units: 0,
            node: NodeId::new(0),
            cache: ptr::null(),
            part: ptr::null(),
            tc: AtomicUsize::new(0),
            hprev: Cell::new(ptr::null_mut()),
            hnext: Cell::new(ptr::null_mut()),
            prev: Cell::new(ptr::null_mut()),
            next: Cell::new(ptr::null_mut()),
            list: Cell::new(ListKind::Empty),
            idle_since: Cell::new(0),
            dbg: SlotDebug {
                flags: 0,
                obj_off: 0,
                obj_size: 0,
            },
            xthread: crate::sync::LinePadded::new(AtomicUsize::new(0)),
        }
    }

    /// Reads the free pointer stored in a free object.
    ///
    /// # Safety
    /// `obj` must be a free object of this slab (its free-pointer word is ours).
    #[inline(always)]
    pub unsafe fn get_fp(&self, obj: *mut u8) -> *mut u8 {
        // SAFETY: caller guarantees obj is a free object of this slab; the word at freeptr_off
        // is inside the object's stride and 8-byte aligned (stride and offset are multiples of 8).
        unsafe { obj.add(self.freeptr_off as usize).cast::<*mut u8>().read() }
    }

    /// Stores the free pointer in a free object.
    ///
    /// # Safety
    /// As for [`Slab::get_fp`].
    #[inline(always)]
    pub unsafe fn set_fp(&self, obj: *mut u8, next: *mut u8) {
        // SAFETY: as in get_fp.
        unsafe {
            obj.add(self.freeptr_off as usize)
                .cast::<*mut u8>()
                .write(next)
        }
    }

    /// Objects handed out and not yet freed (owner's view; racy but defined for others).
    pub fn in_use(&self) -> u32 {
        let pending = remote_count(self.xthread.load(Ordering::Acquire)) as u64;
        self.allocs
            .get()
            .wrapping_sub(self.frees.get())
            .wrapping_sub(pending) as u32
    }

    /// Objects free in this slab right now as seen by the owner: private + uncarved + remote.
    #[cfg(test)]
    pub fn free_objects(&self) -> u32 {
        self.capacity - self.in_use()
    }

    /// Whether the owner can allocate from this slab without collecting remote frees.
    #[inline]
    pub fn has_private_free(&self) -> bool {
        !self.free.get().is_null() || !self.local_free.get().is_null() || self.has_uncarved()
    }

    /// Whether objects remain that were never carved (`bump < capacity`), read from the
    /// descriptor's first line.
    #[inline(always)]
    pub fn has_uncarved(&self) -> bool {
        debug_assert_eq!(self.uncarved.get(), self.bump.get() < self.capacity);
        self.uncarved.get()
    }

    /// Owner only: moves the carve mark to `v` (at most `capacity`).
    #[inline]
    pub fn set_bump(&self, v: u32) {
        self.bump.set(v);
        self.uncarved.set(v < self.capacity);
    }

    /// Whether `p` is the address of an object slot of this slab (not interior, inside the span).
    #[inline(always)]
    pub fn is_object_start(&self, p: *mut u8) -> bool {
        self.slot_index(p).is_some_and(|i| i < self.capacity as u64)
    }

    /// Whether `p` is an object slot below the carve mark (an uncarved slot was never handed out,
    /// so freeing it is a bug).
    #[inline(always)]
    pub fn is_carved_object(&self, p: *mut u8) -> bool {
        // Both tests in one compare (see `slot_index` for `t`): clear the rounding bits below
        // 2^20, rotate the index (bits 40..) down to the bottom; the fraction bits 20..40, zero
        // exactly for a slot start, land at bits 44.. . So the rotated word is below the carve
        // mark iff `p` is a slot start and its index is below the mark.
        let off = (p as usize).wrapping_sub(self.base as usize) as u64;
        debug_assert!(off < 1 << 20, "a slab spans at most 1 MiB");
        let t = off.wrapping_mul(self.recip) & !((1u64 << 20) - 1);
        t.rotate_right(RECIP_SHIFT) < self.bump.get64()
    }

    /// The index of the slot starting at `p`, or `None` if `p` is not a slot start of this span.
    ///
    /// One multiplication, no division: with `off < 2^20` (a slab spans at most 1 MiB),
    /// `stride <= 2^18` and `recip = ceil(2^40 / stride) = (2^40 + e) / stride` (`0 <= e < stride`),
    /// `off * recip = k * 2^40 + k * e + r * recip` for `off = k * stride + r`. For a slot start
    /// (`r = 0`) the low 40 bits are `k * e < 2^20`; otherwise they are at least
    /// `recip >= 2^22` and below `2^40` (no carry: `r * recip + k * e < 2^40 - 2^22 + 2^18 + 2^20`).
    /// So the low 40 bits tell a slot start, and the high bits are `k`.
    ///
    /// `p` must lie in the slab's span — which every caller knows from the page map (it maps each
    /// unit of a span to that span's descriptor), so the range is not checked again here.
    #[inline(always)]
    fn slot_index(&self, p: *mut u8) -> Option<u64> {
        let off = (p as usize).wrapping_sub(self.base as usize) as u64;
        debug_assert!(off < 1 << 20, "a slab spans at most 1 MiB");
        let t = off.wrapping_mul(self.recip);
        (t & ((1 << RECIP_SHIFT) - 1) < (1 << 20)).then_some(t >> RECIP_SHIFT)
    }

    /// Owner only: carves up to `n` never-used objects onto the pop list, running the
    /// constructor on each. Returns how many were carved. The carve mark moves first, so a
    /// constructor that allocates from this very slab cannot carve the same objects again.
    ///
    /// # Safety
    /// The caller owns the slab.
    pub unsafe fn carve(&self, n: u32, ctor: Option<fn(*mut u8)>) -> u32 {
        let start = self.bump.get();
        let end = core::cmp::min(self.capacity, start.saturating_add(n));
        self.set_bump(end);
        // Push in reverse so the freelist hands objects out in address order.
        let mut i = end;
        while i > start {
            i -= 1;
            // SAFETY: i < capacity, so the slot lies inside the span that this slab owns.
            let obj = unsafe { self.base.add(i as usize * self.stride as usize) };
            if let Some(c) = ctor {
                c(obj);
            }
            // SAFETY: the object is uncarved, hence free and ours.
            unsafe { self.set_fp(obj, self.free.get()) };
            crate::asan::poison_free_object(obj, self.stride, self.freeptr_off);
            self.free.set(obj);
        }
        end - start
    }

    /// Owner only: pops one object from the pop list (null if it is empty).
    ///
    /// # Safety
    /// The caller owns the slab.
    #[inline(always)]
    pub unsafe fn pop(&self) -> *mut u8 {
        let obj = self.free.get();
        if !obj.is_null() {
            crate::asan::unpoison(obj, self.stride as usize);
            // SAFETY: obj heads our pop list, so it is a free object of this slab.
            let next = unsafe { self.get_fp(obj) };
            self.free.set(next);
            prefetch(next.wrapping_add(self.freeptr_off as usize));
            self.allocs.add(1);
        }
        obj
    }

    /// [`Slab::pop`] for a slab whose free pointer is the object's first word (every kmalloc
    /// cache's: no constructor), saving the offset's load. The stand-in slab of an empty direct
    /// entry qualifies too (nothing to pop).
    ///
    /// `prefetch_next`: prefetch the new head (the caller's choice by object size: see
    /// `kmalloc::PREFETCH_ABOVE`).
    ///
    /// # Safety
    /// As for [`Slab::pop`], and `freeptr_off == 0`.
    #[inline(always)]
    pub unsafe fn pop_first_word(&self, prefetch_next: bool) -> *mut u8 {
        debug_assert_eq!(self.freeptr_off, 0);
        let obj = self.free.get();
        if !obj.is_null() {
            crate::asan::unpoison(obj, self.stride as usize);
            // SAFETY: obj heads our pop list, so it is a free object of this slab, whose first
            // word is its free pointer (the caller's contract).
            let next = unsafe { obj.cast::<*mut u8>().read() };
            self.free.set(next);
            if prefetch_next {
                prefetch(next);
            }
            self.allocs.add(1);
        }
        obj
    }

    /// [`Slab::pop_first_word`] for an empty pop list: takes the whole local free list as the pop
    /// list and pops its head (null if it is empty too). The C malloc fast path falls back to it
    /// before its slow path: a program in a steady state frees one block and allocates the next,
    /// so the pop list runs dry on every allocation while the local list holds the block just
    /// freed (`capi-count` steady pairs: 163 instructions before, 91 after; mimalloc 99).
    ///
    /// # Safety
    /// As for [`Slab::pop_first_word`], and the pop list is empty.
    #[inline(always)]
    pub unsafe fn pop_local_first_word(&self, prefetch_next: bool) -> *mut u8 {
        debug_assert!(self.free.get().is_null());
        self.free.set(self.local_free.get());
        self.local_free.set(ptr::null_mut());
        // SAFETY: forwarded; the pop list is now the former local list.
        unsafe { self.pop_first_word(prefetch_next) }
    }

    /// Owner only: pushes a freed object onto the local free list. Reports what the caller must
    /// do about the slab's queue, or [`AfterFree::DoubleFree`] (pushing nothing) on the cheap
    /// double-free cases (the object is the head of either private list).
    ///
    /// # Safety
    /// The caller owns the slab and `obj` is an allocated object of it, now freed.
    #[inline(always)]
    pub unsafe fn push_local(&self, obj: *mut u8) -> AfterFree {
        let head = self.local_free.get();
        if obj == head || obj == self.free.get() {
            // Nothing is pushed; the caller reports it (off the fast path's frame).
            return AfterFree::DoubleFree;
        }
        // SAFETY: obj is ours and free now.
        unsafe { self.set_fp(obj, head) };
        crate::asan::poison_free_object(obj, self.stride, self.freeptr_off);
        self.local_free.set(obj);
        self.frees.add(1);
        // The current slab (on no queue) needs nothing: it stays current, empty or not.
        match self.queue.get() {
            HeapQueue::None => AfterFree::Done,
            HeapQueue::Full => AfterFree::Unfull,
            HeapQueue::Avail if self.frees.get() == self.allocs.get() => AfterFree::Empty,
            HeapQueue::Avail => AfterFree::Done,
        }
    }

    /// Owner (or a part-lock holder acting as owner): refills the pop list in O(1): the local
    /// free list first, then the whole cross-thread list. True if `free` is non-empty afterwards.
    ///
    /// # Safety
    /// The caller owns the slab and `free` is empty.
    #[inline]
    pub unsafe fn refill(&self) -> bool {
        let local = self.local_free.get();
        if !local.is_null() {
            self.free.set(local);
            self.local_free.set(ptr::null_mut());
            return true;
        }
        // SAFETY: forwarded.
        unsafe { self.collect_remote() > 0 }
    }

    /// Any thread: pushes a freed object onto the cross-thread list (one CAS loop; the last
    /// access to the slab, so the slab may be reclaimed as soon as it returns).
    ///
    /// # Safety
    /// `obj` is an allocated object of this slab, now freed by the caller.
    pub unsafe fn push_remote(&self, obj: *mut u8) {
        // Read what the reap hint needs before the CAS: afterwards the slab may be gone.
        let part = self.part;
        let cache = self.cache;
        let half = self.capacity / 2;
        let resting = self.owner.load(Ordering::Relaxed) == NO_OWNER;
        // The thread cache that parked the slab, if it is parked (see REMOTE_PARKED).
        let tc = self.tc.load(Ordering::Relaxed);
        // Objects in use besides the pending remote frees (stable while the slab rests).
        let used = self.allocs.get().wrapping_sub(self.frees.get());
        // Before the CAS: afterwards the owner may already have handed the object out again.
        crate::asan::poison_free_object(obj, self.stride, self.freeptr_off);
        let mut old = self.xthread.load(Ordering::Relaxed);
        loop {
            let head = remote_head(old);
            let count = old >> REMOTE_PTR_BITS;
            if head == obj {
                crate::debug::double_free(self, obj);
            }
            // SAFETY: obj is free and belongs to the caller until the CAS publishes it.
            unsafe { self.set_fp(obj, head) };
            // The new word drops REMOTE_PARKED: this free is the one that tells the owner.
            let new = (obj as usize) | ((count + 1) << REMOTE_PTR_BITS);
            match self
                .xthread
                .compare_exchange_weak(old, new, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => {
                    #[cfg(loom)]
                    let skip = mutated(cache, HeapMutation::ParkedFreeSkipsNotice);
                    #[cfg(not(loom))]
                    let skip = false;
                    if old & REMOTE_PARKED != 0 && tc != 0 && !skip {
                        // SAFETY: thread caches live as long as their cache's metadata, which
                        // outlives the slab (a stale `tc` only costs its owner a short walk).
                        unsafe { crate::heap::notice_parked(tc) };
                    }
                    if part.is_null() {
                        return;
                    }
                    // SAFETY: parts (and caches) outlive their slabs, so they may be touched
                    // after the CAS even though the slab may not.
                    let p = unsafe { &*part };
                    // SeqCst CAS above and SeqCst state load here pair with the SeqCst state
                    // change and remote load of a drainer (set_parts, then collect_remote):
                    // either we see Draining, or the drainer sees our object (Dekker).
                    crate::sync::loom_sc_fence();
                    #[cfg(loom)]
                    let ignore = mutated(cache, HeapMutation::RemoteFreeIgnoresDraining);
                    #[cfg(not(loom))]
                    let ignore = false;
                    if !ignore && p.state_seqcst() == crate::node::PartState::Draining {
                        // No slow path will visit a draining part again: settle it now so its
                        // empty slabs go back and the part retires once it has none.
                        // SAFETY: as above.
                        unsafe { (*cache).drained_free(p) };
                    } else if resting && (count + 1) as u64 == used {
                        // Our free emptied a resting slab: settle it now (found again through
                        // the page map under the part's lock, never through a stale pointer).
                        // SAFETY: as above.
                        unsafe { (*cache).remote_emptied(p, obj) };
                    } else if resting && count + 1 >= half.max(1) as usize {
                        // A resting slab filling up with remote frees may be empty soon: ask
                        // the part's next slow path to reap.
                        p.hint_reap();
                    }
                    return;
                }
                Err(cur) => old = cur,
            }
        }
    }

    /// Owner only: moves the whole cross-thread list onto the pop list (`free` must be empty,
    /// or the list is spliced in front of it by a walk — only part-lock holders do that). O(1)
    /// when `free` is empty. Returns how many objects arrived.
    ///
    /// # Safety
    /// The caller owns the slab.
    pub unsafe fn collect_remote(&self) -> u32 {
        // SeqCst: see push_remote (a plain load on x86).
        crate::sync::loom_sc_fence();
        if self.xthread.load(Ordering::SeqCst) == 0 {
            return 0;
        }
        #[cfg(loom)]
        let word = if mutated(self.cache, HeapMutation::CollectRemoteLoadStore) {
            let w = self.xthread.load(Ordering::Acquire);
            self.xthread.store(0, Ordering::Relaxed);
            w
        } else {
            self.xthread.swap(0, Ordering::Acquire)
        };
        #[cfg(not(loom))]
        let word = self.xthread.swap(0, Ordering::Acquire);
        let chain = remote_head(word);
        let count = remote_count(word);
        self.frees.add(count as u64);
        if self.free.get().is_null() {
            self.free.set(chain);
        } else if self.local_free.get().is_null() {
            self.local_free.set(chain);
        } else {
            // Both private lists are in use (a part-lock holder collecting a resting slab):
            // splice onto `local_free` by walking the chain (resting slabs only, off the
            // allocation path).
            let mut obj = chain;
            while !obj.is_null() {
                // SAFETY: every object on the remote chain is a free object of this slab.
                let next = unsafe { self.get_fp(obj) };
                // SAFETY: as above; we own the object now that the list is taken.
                unsafe { self.set_fp(obj, self.local_free.get()) };
                self.local_free.set(obj);
                obj = next;
            }
        }
        count
    }

    /// Whether cross-thread frees are waiting (a relaxed peek).
    #[inline]
    pub fn has_remote(&self) -> bool {
        self.xthread.load(Ordering::Relaxed) & !REMOTE_PARKED != 0
    }

    /// Owner: marks the slab parked on the full queue (see [`REMOTE_PARKED`]). False if
    /// cross-thread frees arrived since the owner last looked: then the slab is not parked (the
    /// caller collects them at once, which clears the bit).
    ///
    /// # Safety
    /// The caller owns the slab and is about to put it on its full queue.
    pub unsafe fn park(&self) -> bool {
        let old = self.xthread.fetch_or(REMOTE_PARKED, Ordering::AcqRel);
        #[cfg(loom)]
        if mutated(self.cache, HeapMutation::ParkIgnoresPending) {
            return true;
        }
        old & !REMOTE_PARKED == 0
    }

    /// Owner: the slab leaves the full queue by a local free: no notice is wanted any more.
    ///
    /// # Safety
    /// The caller owns the slab.
    pub unsafe fn unpark(&self) {
        if self.xthread.load(Ordering::Relaxed) & REMOTE_PARKED != 0 {
            self.xthread.fetch_and(!REMOTE_PARKED, Ordering::Relaxed);
        }
    }
}

/// Whether heap-protocol mutation `m` is on in the domain of `cache` (loom models only).
#[cfg(loom)]
fn mutated(cache: *const CacheInner, m: HeapMutation) -> bool {
    // SAFETY: a slab's non-null cache pointer names cache metadata, which outlives the slab.
    !cache.is_null() && unsafe { (*cache).domain() }.heap_mutated(m)
}

/// The page-map value of a slab descriptor.
#[inline]
pub(crate) fn pagemap_value(s: *const Slab) -> usize {
    s as usize | crate::mem::TAG_SLAB
}

/// The slab descriptor a page-map value names, or null if it names none.
#[inline(always)]
pub(crate) fn from_pagemap(v: usize) -> *const Slab {
    // One bit test: the slab tag is a bit no other value the page map holds has (`mem::TAG_SLAB`).
    if v & crate::mem::TAG_SLAB != 0 {
        // The tag bits are set, so subtracting them leaves the descriptor's address.
        v.wrapping_sub(crate::mem::TAG_SLAB) as *const Slab
    } else {
        ptr::null()
    }
}

/// The slab holding address `p` (page-map lookup; `p` is never dereferenced), or null.
#[inline(always)]
pub(crate) fn slab_of(p: *mut u8) -> *const Slab {
    from_pagemap(crate::mem::pagemap::get(p as usize))
}

/// The count half of a packed remote word.
#[inline]
pub(crate) fn remote_count(word: usize) -> u32 {
    (word >> REMOTE_PTR_BITS) as u32
}

/// The head of the cross-thread list in a remote-list word (without the parked bit).
#[inline(always)]
fn remote_head(word: usize) -> *mut u8 {
    (word & REMOTE_PTR_MASK & !REMOTE_PARKED) as *mut u8
}

/// Geometry of a cache's slabs: how many UNITs a slab spans and how many objects fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlabGeometry {
    pub units: u32,
    pub capacity: u32,
}

/// Minimum objects a slab should hold; above it, larger objects get multi-unit slabs.
const MIN_OBJECTS: usize = 8;
/// Objects of at least this stride need only [`MIN_OBJECTS_LARGE`] per slab.
const LARGE_STRIDE: usize = 64 * 1024;
/// Minimum objects per slab at and above [`LARGE_STRIDE`]. Every class a thread uses keeps at
/// least one slab, so eight objects of 64-256 KiB pinned up to 1 MiB per class and thread (the
/// realloc workload kept 13 MiB in the five classes above 128 KiB for 0.4 % of its allocations);
/// an object that large costs far more to fill or copy than one more refill per two objects.
/// Measured on `realloc` (11 interleaved runs): 0.95x the time, peak RSS 37.9 -> 33.2 MB;
/// one object per slab was slower (0.98x: every free emptied a slab).
const MIN_OBJECTS_LARGE: usize = 2;
/// Largest slab, in UNITs.
pub(crate) const MAX_SLAB_UNITS: usize = 16;

/// Chooses the slab span for a stride: the smallest number of UNITs holding at least
/// [`MIN_OBJECTS`] objects ([`MIN_OBJECTS_LARGE`] from [`LARGE_STRIDE`] up), capped at
/// [`MAX_SLAB_UNITS`]. `None` if not even one object fits.
pub(crate) fn geometry(stride: usize) -> Option<SlabGeometry> {
    let unit = crate::mem::pagemap::UNIT;
    let min_objects = if stride >= LARGE_STRIDE {
        MIN_OBJECTS_LARGE
    } else {
        MIN_OBJECTS
    };
    let mut units = 1;
    while units < MAX_SLAB_UNITS && units * unit / stride < min_objects {
        units += 1;
    }
    let capacity = units * unit / stride;
    if capacity == 0 || capacity > u16::MAX as usize {
        return None;
    }
    Some(SlabGeometry {
        units: units as u32,
        capacity: capacity as u32,
    })
}

/// Hints the CPU to bring the line at `p` into the cache: the next object of a pop list, whose
/// first word the following allocation reads (a dependent load that otherwise misses when the
/// object was freed long ago). No effect on memory; `p` may be null or dangling.
#[inline(always)]
fn prefetch(p: *mut u8) {
    #[cfg(all(target_arch = "x86_64", not(miri), not(loom)))]
    // SAFETY: a prefetch never faults and reads nothing the program can observe.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8)
    };
    #[cfg(not(all(target_arch = "x86_64", not(miri), not(loom))))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_pop_list_takes_the_whole_local_list_at_once() {
        let unit = crate::mem::UNIT;
        let layout = std::alloc::Layout::from_size_align(unit, unit).unwrap();
        // SAFETY: a non-zero size.
        let base = unsafe { std::alloc::alloc(layout) };
        assert!(!base.is_null());
        let g = geometry(64).unwrap();
        let s = Slab::new(
            base,
            g.units,
            g.capacity,
            64,
            0,
            NodeId::new(0),
            ptr::null(),
            ptr::null(),
        );
        // SAFETY: this test is the slab's only owner; every object lies in `base`.
        unsafe {
            assert!(s.pop_local_first_word(true).is_null(), "nothing freed yet");
            assert_eq!(s.carve(3, None), 3);
            let (a, b, c) = (
                s.pop_first_word(true),
                s.pop_first_word(true),
                s.pop_first_word(true),
            );
            assert!(s.pop_first_word(true).is_null());
            assert!(
                s.pop_local_first_word(true).is_null(),
                "both lists are empty"
            );
            assert_eq!(s.push_local(a), AfterFree::Done);
            assert_eq!(s.push_local(b), AfterFree::Done);
            // The last block freed comes back first; the rest of the local list is the pop list.
            assert_eq!(s.pop_local_first_word(true), b);
            assert!(s.local_free.get().is_null());
            assert_eq!(s.push_local(c), AfterFree::Done);
            assert_eq!(s.pop_first_word(true), a);
            assert!(s.pop_first_word(true).is_null());
            assert_eq!(s.pop_local_first_word(true), c);
            assert_eq!((s.allocs.get(), s.frees.get()), (6, 3));
            std::alloc::dealloc(base, layout);
        }
    }

    #[test]
    #[cfg_attr(miri, ignore)] // exhaustive arithmetic: too slow interpreted, no unsafe to check
    fn reciprocal_object_index_is_exact() {
        for stride in (8..=4096).step_by(8).chain([
            5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768, 262144,
        ]) {
            let g = geometry(stride).unwrap();
            let s = Slab::new(
                core::ptr::null_mut(),
                g.units,
                g.capacity,
                stride as u32,
                0,
                NodeId::new(0),
                ptr::null(),
                ptr::null(),
            );
            let span = g.units as usize * crate::mem::UNIT;
            let mut off = 0;
            while off < span {
                for d in [0usize, 1, stride - 1] {
                    let o = off + d;
                    let want = o % stride == 0 && o / stride < g.capacity as usize;
                    assert_eq!(
                        s.is_object_start(o as *mut u8),
                        want,
                        "stride {stride} offset {o}"
                    );
                    // The folded check of the free fast path, at a few carve marks.
                    for bump in [0, 1, g.capacity / 2, g.capacity] {
                        s.set_bump(bump);
                        let carved = o % stride == 0 && o / stride < bump as usize;
                        assert_eq!(
                            s.is_carved_object(o as *mut u8),
                            carved,
                            "stride {stride} offset {o} bump {bump}"
                        );
                    }
                }
                off += stride;
            }
        }
    }

    #[test]
    fn geometry_picks_small_spans_for_small_objects() {
        let g = geometry(64).unwrap();
        assert_eq!(g.units, 1);
        assert_eq!(g.capacity, 1024);
        let g = geometry(32 * 1024).unwrap();
        assert_eq!(g.units, 4);
        assert_eq!(g.capacity, 8);
        let g = geometry(8).unwrap();
        assert_eq!(g.capacity, 8192);
        // Large objects: two per slab, not eight (the slab of a 256 KiB class is 512 KiB).
        let g = geometry(56 * 1024).unwrap();
        assert_eq!((g.units, g.capacity), (7, 8));
        let g = geometry(64 * 1024).unwrap();
        assert_eq!((g.units, g.capacity), (2, 2));
        let g = geometry(256 * 1024).unwrap();
        assert_eq!((g.units, g.capacity), (8, 2));
        assert!(geometry(2 << 20).is_none());
    }

    #[test]
    fn freelists_push_pop_and_remote_round_trip() {
        // A fake span in ordinary memory: the freelist logic does not care where it lives.
        let mut buf = vec![0u64; 64]; // 512 bytes, 8-byte aligned
        let base = buf.as_mut_ptr().cast::<u8>();
        let s = Slab::new(base, 1, 8, 64, 0, NodeId::new(0), ptr::null(), ptr::null());
        // SAFETY: the test owns the slab and the buffer outlives it.
        unsafe {
            assert_eq!(s.carve(3, None), 3);
            assert_eq!(s.free_objects(), 8);
            let a = s.pop();
            let b = s.pop();
            assert_eq!(a, base);
            assert_eq!(b, base.add(64));
            assert_eq!(s.in_use(), 2);
            s.push_remote(a);
            assert_eq!(s.in_use(), 1);
            // The remote free is not collected yet: the owner does not see the slab empty.
            assert_eq!(s.push_local(b), AfterFree::Done);
            assert_eq!(s.in_use(), 0);
            // One carved object is still on `free`; the local and remote lists come after it.
            let c = s.pop();
            assert_eq!(c, base.add(128));
            assert!(s.free.get().is_null());
            assert!(s.refill(), "local_free is swapped in");
            assert_eq!(s.pop(), b);
            assert!(s.refill(), "the remote list is collected in one swap");
            assert_eq!(s.pop(), a);
            assert!(!s.refill());
            assert_eq!(s.in_use(), 3);
            assert!(s.is_carved_object(base.add(128)));
            assert!(
                !s.is_carved_object(base.add(192)),
                "slot 3 was never carved"
            );
        }
        assert!(s.is_object_start(base));
        // SAFETY: in-bounds pointer arithmetic on the test buffer.
        assert!(s.is_object_start(unsafe { base.add(7 * 64) }));
        // SAFETY: one past the last object: inside the buffer, outside the slab's objects.
        assert!(!s.is_object_start(unsafe { base.add(8 * 64) }));
        // SAFETY: in-bounds pointer arithmetic on the test buffer.
        assert!(!s.is_object_start(unsafe { base.add(8) }));
        drop(buf);
    }
}
