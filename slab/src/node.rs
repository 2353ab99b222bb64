//! A cache's per-node part (`kmem_cache_node`): the lists of slabs of one node (owned, partial,
//! full, empty) under the part's list lock, its counters, and its lifecycle state with a
//! generation (live → draining → retired → live again at the next online).
//! It must not take `slab_mutex` or the online-mems lock (they come before it in the lock order).

use core::ptr;

use hotslab_numa::NodeId;

use crate::slab::{ListKind, Slab};
use crate::sync::{lock, AtomicBool, AtomicU64, AtomicUsize, Mutex, MutexGuard, Ordering};

/// Lifecycle of a part. Stored with the generation in one atomic word so that a retire and a
/// check of "still the part I looked up" are one compare-and-swap.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PartState {
    /// New slabs may be made on this node.
    Live,
    /// No new slabs; frees accepted; retired when its last slab is gone (forced offline, or a
    /// refusable offline in progress).
    Draining,
    /// Quarantined: no slab references it; reused at the next online of the node.
    Retired,
}

impl PartState {
    fn to_bits(self) -> u64 {
        match self {
            PartState::Live => 0,
            PartState::Draining => 1,
            PartState::Retired => 2,
        }
    }
    fn from_bits(b: u64) -> PartState {
        match b & 3 {
            0 => PartState::Live,
            1 => PartState::Draining,
            _ => PartState::Retired,
        }
    }
}

/// An intrusive doubly linked list of slabs, linked through `Slab::prev/next`.
pub(crate) struct SlabList {
    head: *mut Slab,
    tail: *mut Slab,
    pub len: usize,
}

impl SlabList {
    const fn new() -> Self {
        SlabList {
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
            len: 0,
        }
    }

    pub fn head(&self) -> *mut Slab {
        self.head
    }

    pub fn tail(&self) -> *mut Slab {
        self.tail
    }

    /// # Safety
    /// `s` is a valid slab on no list, and the caller holds the owning part's list lock.
    pub unsafe fn push_back(&mut self, s: *mut Slab) {
        // SAFETY: caller guarantees s is valid and unlinked.
        let sr = unsafe { &*s };
        sr.prev.set(self.tail);
        sr.next.set(ptr::null_mut());
        if self.tail.is_null() {
            self.head = s;
        } else {
            // SAFETY: tail is a valid slab on this list.
            unsafe { (*self.tail).next.set(s) };
        }
        self.tail = s;
        self.len += 1;
    }

    /// # Safety
    /// As for [`SlabList::push_back`].
    pub unsafe fn push_front(&mut self, s: *mut Slab) {
        // SAFETY: caller guarantees s is valid and unlinked.
        let sr = unsafe { &*s };
        sr.prev.set(ptr::null_mut());
        sr.next.set(self.head);
        if self.head.is_null() {
            self.tail = s;
        } else {
            // SAFETY: head is a valid slab on this list.
            unsafe { (*self.head).prev.set(s) };
        }
        self.head = s;
        self.len += 1;
    }

    /// # Safety
    /// `s` is on this list, and the caller holds the owning part's list lock.
    pub unsafe fn remove(&mut self, s: *mut Slab) {
        // SAFETY: caller guarantees s is on this list, so its neighbours are valid or null.
        let sr = unsafe { &*s };
        let (p, n) = (sr.prev.get(), sr.next.get());
        if p.is_null() {
            self.head = n;
        } else {
            // SAFETY: p is on this list.
            unsafe { (*p).next.set(n) };
        }
        if n.is_null() {
            self.tail = p;
        } else {
            // SAFETY: n is on this list.
            unsafe { (*n).prev.set(p) };
        }
        sr.prev.set(ptr::null_mut());
        sr.next.set(ptr::null_mut());
        self.len -= 1;
    }

    /// Iterates the slabs (the list must not change during the walk).
    pub fn iter(&self) -> SlabIter {
        SlabIter { cur: self.head }
    }
}

pub(crate) struct SlabIter {
    cur: *mut Slab,
}

impl Iterator for SlabIter {
    type Item = *mut Slab;
    fn next(&mut self) -> Option<*mut Slab> {
        if self.cur.is_null() {
            return None;
        }
        let s = self.cur;
        // SAFETY: list members are valid while the caller holds the list lock.
        self.cur = unsafe { (*s).next.get() };
        Some(s)
    }
}

/// Bytes of slabs on the empty lists of every part of the process (committed memory kept for
/// reuse): the budget of delayed purging (`CacheInner::settle`).
pub(crate) static EMPTY_BYTES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// The lists of a part (guarded by its list lock).
pub(crate) struct PartLists {
    pub owned: SlabList,
    pub partial: SlabList,
    pub full: SlabList,
    pub empty: SlabList,
    /// Debug slabs (`debug.rs`): those with a free object first, full ones after.
    pub debug: SlabList,
}

// SAFETY: the raw slab pointers are only followed while the list lock is held.
unsafe impl Send for PartLists {}

impl PartLists {
    pub fn list_mut(&mut self, k: ListKind) -> &mut SlabList {
        match k {
            ListKind::Owned => &mut self.owned,
            ListKind::Partial => &mut self.partial,
            ListKind::Full => &mut self.full,
            ListKind::Empty => &mut self.empty,
            ListKind::Debug => &mut self.debug,
        }
    }

    /// # Safety
    /// `s` is a valid slab of this part, on no list.
    pub unsafe fn put(&mut self, s: *mut Slab, k: ListKind) {
        // SAFETY: forwarded.
        unsafe {
            (*s).list.set(k);
            self.list_mut(k).push_back(s);
            if k == ListKind::Empty {
                EMPTY_BYTES.fetch_add(
                    ((*s).units as usize) << crate::mem::UNIT_SHIFT,
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
        }
    }

    /// # Safety
    /// `s` is a valid slab of this part, on the list its `list` field names.
    pub unsafe fn take(&mut self, s: *mut Slab) {
        // SAFETY: forwarded.
        unsafe {
            let k = (*s).list.get();
            self.list_mut(k).remove(s);
            if k == ListKind::Empty {
                EMPTY_BYTES.fetch_sub(
                    ((*s).units as usize) << crate::mem::UNIT_SHIFT,
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
        }
    }

    pub fn nr_slabs(&self) -> usize {
        self.owned.len + self.partial.len + self.full.len + self.empty.len + self.debug.len
    }

    pub fn all(&self) -> impl Iterator<Item = *mut Slab> {
        self.owned
            .iter()
            .chain(self.partial.iter())
            .chain(self.full.iter())
            .chain(self.empty.iter())
            .chain(self.debug.iter())
    }
}

/// One cache's part for one node.
pub struct NodePart {
    pub(crate) node: NodeId,
    /// `generation << 2 | state`.
    word: AtomicU64,
    pub(crate) lists: Mutex<PartLists>,
    /// Slabs of this part (mirror of the lists' lengths, readable without the lock).
    pub(crate) nr_slabs: AtomicUsize,
    /// Total objects in the slabs of this part.
    pub(crate) total_objects: AtomicUsize,
    /// Remote frees have piled up on resting slabs: the next slow path should reap empties.
    reap: AtomicBool,
    /// Earliest time (ms) an empty slab of this part is due for purging; 0 when none is.
    pub(crate) next_purge: std::sync::atomic::AtomicU64,
    /// Allocations and frees counted by slabs of this part that were freed since.
    gone_allocs: std::sync::atomic::AtomicU64,
    gone_frees: std::sync::atomic::AtomicU64,
    /// OFFLINE left this part draining (live objects after a forced offline): the settle of
    /// its last slab retires it. Not part of any modelled handshake (std atomic).
    pub(crate) offlined: std::sync::atomic::AtomicBool,
}

impl NodePart {
    pub(crate) fn new(node: NodeId) -> NodePart {
        NodePart {
            node,
            word: AtomicU64::new(PartState::Live.to_bits()),
            lists: Mutex::new(PartLists {
                owned: SlabList::new(),
                partial: SlabList::new(),
                full: SlabList::new(),
                empty: SlabList::new(),
                debug: SlabList::new(),
            }),
            nr_slabs: AtomicUsize::new(0),
            total_objects: AtomicUsize::new(0),
            reap: AtomicBool::new(false),
            next_purge: std::sync::atomic::AtomicU64::new(0),
            gone_allocs: std::sync::atomic::AtomicU64::new(0),
            gone_frees: std::sync::atomic::AtomicU64::new(0),
            offlined: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, PartLists> {
        lock(&self.lists)
    }

    pub fn state(&self) -> PartState {
        PartState::from_bits(self.word.load(Ordering::Acquire))
    }

    pub fn generation(&self) -> u64 {
        self.word.load(Ordering::Acquire) >> 2
    }

    /// The state, read with SeqCst (the free side of the drain handshake, see `Slab::push_remote`).
    pub(crate) fn state_seqcst(&self) -> PartState {
        PartState::from_bits(self.word.load(Ordering::SeqCst))
    }

    /// (generation, state) in one read.
    pub(crate) fn snapshot(&self) -> (u64, PartState) {
        let w = self.word.load(Ordering::Acquire);
        (w >> 2, PartState::from_bits(w))
    }

    /// Moves from `from` to `to` if the part is still in generation `gen` and state `from`.
    /// Entering `Live` from `Retired` starts a new generation (a reused part is a new part).
    pub(crate) fn transition(&self, gen: u64, from: PartState, to: PartState) -> bool {
        let old = (gen << 2) | from.to_bits();
        let new_gen = if from == PartState::Retired && to == PartState::Live {
            gen + 1
        } else {
            gen
        };
        let new = (new_gen << 2) | to.to_bits();
        let ok = self
            .word
            .compare_exchange(old, new, Ordering::SeqCst, Ordering::Acquire)
            .is_ok();
        if ok && to == PartState::Live {
            self.offlined
                .store(false, std::sync::atomic::Ordering::Release);
        }
        crate::sync::loom_sc_fence();
        ok
    }

    /// Retires the part if it is still in generation `gen` and not retired yet; false means a
    /// double retire (or a retire of a part that was reused meanwhile).
    pub(crate) fn retire(&self, gen: u64) -> bool {
        let mut cur = self.word.load(Ordering::Acquire);
        loop {
            if cur >> 2 != gen || PartState::from_bits(cur) == PartState::Retired {
                return false;
            }
            let new = (gen << 2) | PartState::Retired.to_bits();
            match self
                .word
                .compare_exchange(cur, new, Ordering::SeqCst, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(c) => cur = c,
            }
        }
    }

    /// Asks the next slow path on this part to reap resting slabs (cheap when already asked).
    #[inline]
    pub(crate) fn hint_reap(&self) {
        if !self.reap.load(Ordering::Relaxed) {
            self.reap.store(true, Ordering::Relaxed);
        }
    }

    /// Takes the reap request (call with the list lock held).
    pub(crate) fn take_reap(&self) -> bool {
        self.reap.load(Ordering::Relaxed) && self.reap.swap(false, Ordering::Relaxed)
    }

    /// A slab of this part is freed (list lock held): keep its counts for the statistics.
    pub(crate) fn fold_gone(&self, s: &Slab) {
        use std::sync::atomic::Ordering as O;
        // A freed slab has nothing in use: every object it handed out was freed.
        self.gone_allocs.fetch_add(s.allocs.get(), O::Relaxed);
        self.gone_frees.fetch_add(s.allocs.get(), O::Relaxed);
    }

    /// (allocations, frees) of freed slabs.
    pub(crate) fn gone(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering as O;
        (
            self.gone_allocs.load(O::Relaxed),
            self.gone_frees.load(O::Relaxed),
        )
    }

    /// A reused cache starts counting again.
    pub(crate) fn reset_gone(&self) {
        use std::sync::atomic::Ordering as O;
        self.gone_allocs.store(0, O::Relaxed);
        self.gone_frees.store(0, O::Relaxed);
    }

    /// Whether new slabs may be made here.
    #[inline]
    pub(crate) fn accepts_new_slabs(&self) -> bool {
        self.state() == PartState::Live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_machine_and_generations() {
        let p = NodePart::new(NodeId::new(3));
        assert_eq!(p.snapshot(), (0, PartState::Live));
        assert!(p.transition(0, PartState::Live, PartState::Draining));
        assert!(!p.accepts_new_slabs());
        assert!(p.retire(0));
        assert!(
            !p.retire(0),
            "a second retire of the same generation is refused"
        );
        assert!(p.transition(0, PartState::Retired, PartState::Live));
        assert_eq!(p.snapshot(), (1, PartState::Live));
        assert!(
            !p.retire(0),
            "a stale generation cannot retire the reused part"
        );
        assert!(p.retire(1));
    }
}
