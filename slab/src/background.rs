//! The background purger of the default domain: one detached thread that gives back, on time,
//! the empty slabs and cached large spans the delayed purge keeps, even when the program makes
//! no more calls (an idle server keeps little resident). It owns the thread's state word and
//! its sleep/wake protocol; what is given back is the sweep's (sweep.rs) and the large tier's.
//!
//! Started lazily, from the global allocator's allocation slow path, once the default domain has
//! something waiting for a purge or has committed 16 MiB of slabs (small programs never get the
//! thread), and never while hotslab
//! holds a lock or is inside a heap's busy section. `HOTSLAB_BACKGROUND=0` turns it off; then the
//! delayed empties keep the small budget (`DELAYED_EMPTY_BUDGET`) and are purged from slow paths.
//! A `fork` child has no such thread: it starts its own on its first slow path with work.
//!
//! Sleep/wake: the thread sleeps on [`SLEEP`] with a timeout while something is due later, and
//! without one when nothing is pending; `mem::ring_purge_bell` (called when a part or the large tier first has
//! something waiting) wakes it only in the latter case: one relaxed load otherwise. The thread
//! itself never allocates and never creates a heap (it makes no malloc or free calls).
//!
//! Once the program has been quiet for [`DEEP_MS`] (no slab became empty meanwhile), a deep pass
//! takes every heap's slabs back (idle threads' caches included) and gives back the empties
//! every part otherwise keeps; then the thread sleeps until something new is due.

use std::sync::atomic::{AtomicU8, Ordering};

/// Not started (or in a fork child).
const IDLE: u8 = 0;
/// A thread is being created.
const STARTING: u8 = 1;
/// The thread runs.
const RUNNING: u8 = 2;
/// Off (`HOTSLAB_BACKGROUND=0`), or the thread could not be created.
const OFF: u8 = 3;

/// Committed slab memory from which the thread starts even before anything waits for a purge
/// (a program that grows past it may free it all and go idle without another slow path).
const START_AT: usize = 16 << 20;

static STATE: AtomicU8 = AtomicU8::new(IDLE);
/// The word the thread sleeps on (`mem::PURGE_BELL`: 1 while it sleeps with no deadline).
use crate::mem::PURGE_BELL as SLEEP;
/// How long the program must stay quiet before the deep pass (and how idle its empties must be).
const DEEP_MS: u64 = 500;

/// Sweeps the thread has run (for tests and statistics).
static ROUNDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether the background purger runs.
#[inline]
pub(crate) fn running() -> bool {
    STATE.load(Ordering::Relaxed) == RUNNING
}

/// Sweeps the background purger has run so far (0 if it never ran).
pub fn background_rounds() -> u64 {
    ROUNDS.load(Ordering::Relaxed)
}

/// Whether the background purger thread runs in this process.
pub fn background_running() -> bool {
    running()
}

/// Whether the thread is off (`HOTSLAB_BACKGROUND=0`, or it could not be created).
pub(crate) fn is_off() -> bool {
    STATE.load(Ordering::Relaxed) == OFF
}

/// `HOTSLAB_BACKGROUND=0`: never start the thread.
pub(crate) fn disable() {
    STATE.store(OFF, Ordering::Relaxed);
}

/// In a fork child: the parent's thread does not exist here.
#[cfg_attr(loom, allow(dead_code))] // fork.rs is not built under loom
pub(crate) fn after_fork_child() {
    if STATE.load(Ordering::Relaxed) != OFF {
        STATE.store(IDLE, Ordering::Relaxed);
    }
    SLEEP.reset();
}

/// [`maybe_start`] for the default domain, if it exists: one relaxed load when the thread runs
/// or is off.
#[inline]
pub(crate) fn poll() {
    if STATE.load(Ordering::Relaxed) == IDLE {
        if let Some(d) = crate::global::default_domain() {
            maybe_start(d);
        }
    }
}

/// From the global allocator's slow path, with no hotslab lock held and outside any heap's busy
/// section: starts the thread if the default domain has something waiting and it is not
/// running yet. One relaxed load when it runs or is off.
#[inline]
pub(crate) fn maybe_start(d: &'static crate::SlabDomain) {
    if STATE.load(Ordering::Relaxed) != IDLE {
        return;
    }
    if d.sweep.due() == u64::MAX
        && !crate::kmalloc::LARGE.has_dirty()
        && d.committed_bytes() < START_AT
    {
        return;
    }
    start();
}

#[cold]
fn start() {
    // Miri and loom model the program's own threads only.
    if cfg!(any(miri, loom)) {
        return;
    }
    if STATE
        .compare_exchange(IDLE, STARTING, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    let ok = crate::spawn::spawn_detached(256 << 10, run);
    STATE.store(if ok { RUNNING } else { OFF }, Ordering::Release);
}

extern "C" fn run(_: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16 bytes (this thread's name
    // in /proc and top); works with glibc and musl alike.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"hotslab-purge".as_ptr()) };
    let mut deep_due = false;
    loop {
        let Some(d) = crate::global::default_domain() else {
            nap(u64::MAX);
            continue;
        };
        let now = crate::mem::now_ms();
        if d.sweep.due() <= now {
            d.sweep_now(now);
            ROUNDS.fetch_add(1, Ordering::Relaxed);
        }
        crate::kmalloc::LARGE.purge_due(d.page_source(), now);
        let next = d.sweep.due().min(crate::kmalloc::LARGE.next_due());
        if next != u64::MAX {
            // The coarse clock ticks about every 4 ms: wake a tick after the deadline.
            sleep(next.saturating_sub(now) + 4);
            deep_due = true;
            continue;
        }
        if deep_due {
            // Quiet now: one deep pass later gives back the few empties each part keeps.
            deep_due = false;
            if nap(DEEP_MS) {
                reclaim_heaps(d);
                let now = crate::mem::now_ms();
                d.sweep_deep(now, DEEP_MS);
                ROUNDS.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        // Nothing pending: sleep until a part or the large tier has something.
        nap(u64::MAX);
    }
}

/// The deep pass's first half: takes back every heap's kmalloc slabs (an idle thread's current
/// and spare slabs included), as `malloc_trim` does; their empties then age on the part's empty
/// list and go back with the next sweeps. A busy thread only refills on its next slow path.
fn reclaim_heaps(d: &crate::SlabDomain) {
    for c in d.kmalloc_caches() {
        for tc in c.thread_caches() {
            if tc.owned() > 0 {
                crate::heap::revoke(c, tc);
            }
        }
    }
}

/// Sleeps `ms` (`u64::MAX`: forever) unless a part or the large tier gets something to purge
/// meanwhile (the doorbell's Dekker pair with `mem::ring_purge_bell`: announce the sleep, fence,
/// then look again; `doorbell.rs`). True if the whole time passed with nothing new.
fn nap(ms: u64) -> bool {
    SLEEP.nap(ms, || {
        crate::global::default_domain().is_none_or(|d| d.sweep.due() == u64::MAX)
            && crate::kmalloc::LARGE.next_due() == u64::MAX
    })
}

/// Sleeps `ms` milliseconds on the bell word while it reads 0 (a timed wait nobody cuts short).
fn sleep(ms: u64) {
    SLEEP.sleep(ms);
}
