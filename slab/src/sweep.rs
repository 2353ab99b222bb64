//! The purge sweep: delayed giving-back of empty slabs across all the parts of a domain's kmalloc
//! caches, not only the part a slow path happens to touch. It owns [`Sweep`] (one per domain: the
//! earliest purge deadline noted by any part) and the walk over the kmalloc
//! caches' parts; what a part keeps and for how long is `CacheInner::settle`/`purge_part`'s.
//!
//! The sweep runs from slow paths (`CacheInner::maybe_purge`, never the allocation fast path)
//! once the earliest noted deadline has passed, and from the default domain's background purger
//! (background.rs), which lets the delayed empties have a larger budget
//! ([`within_delayed_budget`]): a program that goes idle still gets them back after the delay.
//!
//! Locks: the sweep takes one part's list lock at a time (through `purge_part`), with no other
//! part lock held; a heap lock may be held by the caller (heap -> part is the lock order). Only
//! one thread sweeps at a time (`busy`); the others skip.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hotslab_numa::NodeId;

use crate::cache::CacheInner;
use crate::domain::SlabDomain;
use crate::node::NodePart;

/// Whether the process may keep `held` bytes of empty slabs (across all parts) waiting for the
/// purge delay. Without the background purger: [`DELAYED_EMPTY_BUDGET`](crate::cache::DELAYED_EMPTY_BUDGET),
/// small enough that a program going idle holds little. With it, [`BACKGROUND_BUDGET`]: every
/// empty slab comes back once it has been idle for the delay, even if the program goes idle, so
/// the budget only bounds a burst. It does not shrink with the memory in use: a program whose
/// live memory swings (a producer/consumer pipeline that fills and drains a queue) reuses its
/// empties moments later, and giving them back at the trough only makes it fault them in again
/// (xmalloc-test: 42 k page faults against 13 k, 1.21x mimalloc against 1.07x).
#[inline]
pub(crate) fn within_delayed_budget(held: usize) -> bool {
    let small = crate::cache::DELAYED_EMPTY_BUDGET;
    held <= small || (crate::background::running() && held <= BACKGROUND_BUDGET)
}

/// The most the delayed-empty budget grows to while the background purger runs.
pub const BACKGROUND_BUDGET: usize = 256 << 20;

/// A domain's sweep state.
pub(crate) struct Sweep {
    /// Earliest purge deadline (ms) noted by any part since the last sweep; `u64::MAX`: none.
    due: AtomicU64,
    /// A thread is sweeping.
    busy: AtomicBool,
}

impl Sweep {
    pub(crate) const fn new() -> Sweep {
        Sweep {
            due: AtomicU64::new(u64::MAX),
            busy: AtomicBool::new(false),
        }
    }

    /// A part's empties are due for purging at `at` (ms).
    #[inline]
    pub(crate) fn note(&self, at: u64) {
        crate::doorbell::note_deadline(&self.due, at, crate::mem::ring_purge_bell);
    }

    /// The earliest noted deadline (ms), `u64::MAX` if none.
    #[inline]
    pub(crate) fn due(&self) -> u64 {
        self.due.load(Ordering::Relaxed)
    }
}

impl SlabDomain {
    /// Sweeps the kmalloc caches' parts if the earliest noted deadline passed. Cheap when none
    /// is noted: one relaxed load. Call with no part lock held.
    #[inline]
    pub(crate) fn maybe_sweep(&self) {
        let due = self.sweep.due.load(Ordering::Relaxed);
        if due != u64::MAX {
            let now = crate::mem::now_ms();
            if now >= due {
                self.sweep_now(now);
            }
        }
    }

    /// Gives back every empty slab of the kmalloc caches' parts idle for the purge delay at `now`
    /// (ms), and notes the parts' next deadlines. Skips if another thread is sweeping.
    #[cold]
    pub(crate) fn sweep_now(&self, now: u64) {
        let age = self.config.purge_delay.as_millis() as u64;
        self.each_kmalloc_part_exclusive(
            |c, part| c.sweep_part(part, now, age),
            || {
                // Parts that still hold waiting empties note their deadlines again as visited.
                self.sweep.due.store(u64::MAX, Ordering::Relaxed);
            },
        );
    }

    /// The background purger's deep pass, once a program has gone quiet: gives back every empty
    /// slab of the kmalloc caches' parts idle for `age` ms at `now`, the `min_partial` ones a
    /// part keeps for reuse included.
    #[cold]
    pub(crate) fn sweep_deep(&self, now: u64, age: u64) {
        self.each_kmalloc_part_exclusive(|c, part| c.purge_part(part, now, age, 0), || {});
    }

    /// Runs `first`, then `f` on every part of every kmalloc cache, unless another thread is
    /// sweeping (then nothing).
    fn each_kmalloc_part_exclusive(
        &self,
        mut f: impl FnMut(&CacheInner, &NodePart),
        first: impl FnOnce(),
    ) {
        if self.sweep.busy.swap(true, Ordering::Acquire) {
            return;
        }
        first();
        for c in self.kmalloc_caches() {
            for i in 0..c.nr_node_ids {
                let p = c.part(NodeId::new(i as u16));
                if !p.is_null() {
                    // SAFETY: parts live as long as their cache (a retired part is parked,
                    // never freed, while its cache lives).
                    f(c, unsafe { &*p });
                }
            }
        }
        self.sweep.busy.store(false, Ordering::Release);
    }
}
