//! The per-CPU online-mems implementation, after the kernel's later percpu rw-semaphore: readers bump a
//! striped counter and only look at a `writer_pending` flag; a per-thread read depth lets nested readers and
//! the active writer pass straight through. Used only through `OnlineMems`; knows nothing of node masks.
//!
//! # The Dekker pair
//!
//! An outermost reader does `R1: stripe += 1; F: fence(SeqCst); R2: load writer_pending`. A writer does
//! `W1: writer_pending = true; F: fence(SeqCst); W2: load every stripe`. The two SeqCst fences are totally
//! ordered: if the reader's fence comes first, every stripe load of W2 sees R1 (the writer waits for the
//! reader); if the writer's fence comes first, R2 sees `true` (the reader backs off). Both may happen, never
//! neither. The release path is the same pair: `D1: stripe -= 1; fence; load writer_pending` — if the
//! reader sees no writer, the writer's later stripe loads see D1; if it sees one, it wakes the writer under
//! `gate`, the mutex the writer holds while it sums and sleeps, so the wake-up cannot be lost.
//!
//! (The fences cost an `mfence` on x86 that a SeqCst RMW + SeqCst load would not; we keep them because loom
//! models `fence(SeqCst)` exactly but treats SeqCst accesses as AcqRel, and the model must check this code.)
//!
//! Each thread always uses the same stripe (`thread_id % STRIPES`), so every stripe's value is the number of
//! its threads inside — never negative — and a non-atomic sum of the stripes that reads 0 after the
//! writer's fence proves that every reader that got past R2 has also done D1. Data hand-over: D1 is a
//! Release RMW and W2 loads Acquire (the readers' sections happen before the writer's); the writer clears
//! the flag with a Release store that R2 reads with Acquire (the writer's section happens before the
//! readers' that follow).

use crate::online_mems::{warn, Counters, ReadToken, WaitTimer, PUT_WITHOUT_GET_MSG};
use crate::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::{self, Condvar, Mutex, MutexGuard};
use crossbeam_utils::CachePadded;

/// Number of reader stripes. Under loom two stripes keep the state space small and still exercise the
/// non-atomic sum.
#[cfg(not(loom))]
pub(crate) const STRIPES: usize = 32;
#[cfg(loom)]
pub(crate) const STRIPES: usize = 2;

/// Source of per-instance ids (keys of the per-thread depth table); never reused, so a depth slot left
/// behind by a forgotten guard of a dropped lock cannot be mistaken for a new lock's.
static NEXT_INSTANCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

const DEPTH_OVERFLOW_MSG: &str =
    "hotslab-hotplug: WARNING: per-thread read-depth table full; read counted untracked\n";

/// The per-CPU lock.
pub(crate) struct PerCpuLock {
    /// Key of this instance in the per-thread depth tables.
    id: u64,
    /// Readers inside, striped by thread.
    stripes: [CachePadded<AtomicUsize>; STRIPES],
    /// A writer wants in or is in: new outermost readers take the slow path.
    writer_pending: CachePadded<AtomicBool>,
    /// Thread id of the writer inside, or 0.
    active_writer: AtomicU64,
    /// Serialises writers.
    writers: Mutex<()>,
    /// Guards sleeping and waking (no data: the state is in the atomics).
    gate: Mutex<()>,
    /// The (single) writer sleeps here until the readers drain.
    writer_cv: Condvar,
    /// Readers sleep here until the writer is done.
    readers_cv: Condvar,
}

/// What a per-CPU writer holds between begin and done.
pub(crate) struct PerCpuWrite<'a> {
    writers: MutexGuard<'a, ()>,
}

/// Where an outermost read was recorded in the calling thread's table.
enum Slot {
    Tracked,
    Untracked,
}

impl PerCpuLock {
    pub(crate) fn new() -> Self {
        PerCpuLock {
            id: NEXT_INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            stripes: core::array::from_fn(|_| CachePadded::new(AtomicUsize::new(0))),
            writer_pending: CachePadded::new(AtomicBool::new(false)),
            active_writer: AtomicU64::new(0),
            writers: Mutex::new(()),
            gate: Mutex::new(()),
            writer_cv: Condvar::new(),
            readers_cv: Condvar::new(),
        }
    }

    #[inline]
    pub(crate) fn is_writer(&self, me: u64) -> bool {
        // Relaxed: only this thread stores its own id here (see SeedLock::is_writer).
        self.active_writer.load(Ordering::Relaxed) == me
    }

    #[inline]
    fn stripe(&self, me: u64) -> &AtomicUsize {
        &self.stripes[(me % STRIPES as u64) as usize]
    }

    /// Enter the read side.
    pub(crate) fn get(&self, me: u64, stats: &Counters) -> ReadToken {
        if self.is_writer(me) {
            return ReadToken::Writer;
        }
        // Nested read: this thread is already inside, so the writer (if any) is still waiting for our
        // outermost reference and cannot get in before we leave. No shared memory is touched.
        let id = self.id;
        let nested = sync::with_thread_slots(|s| {
            for slot in &s.depth {
                let (key, depth) = slot.get();
                if key == id {
                    slot.set((key, depth + 1));
                    return true;
                }
            }
            false
        })
        .unwrap_or(false);
        if nested {
            return ReadToken::Counted;
        }

        self.enter_outermost(me, stats);

        let recorded = sync::with_thread_slots(|s| {
            for slot in &s.depth {
                if slot.get().0 == 0 {
                    slot.set((id, 1));
                    return Slot::Tracked;
                }
            }
            s.overflow.set(s.overflow.get() + 1);
            Slot::Untracked
        })
        .unwrap_or(Slot::Untracked);
        if let Slot::Untracked = recorded {
            Counters::bump(&stats.depth_overflows);
            warn(DEPTH_OVERFLOW_MSG);
        }
        ReadToken::Counted
    }

    /// The outermost reader's acquisition: fast path, or wait for the writer to finish.
    fn enter_outermost(&self, me: u64, stats: &Counters) {
        let stripe = self.stripe(me);
        let mut counted_wait = false;
        loop {
            stripe.fetch_add(1, Ordering::Relaxed); // R1
            fence(Ordering::SeqCst); // pairs with the writer's fence after W1
            if !self.writer_pending.load(Ordering::Acquire) {
                // R2 saw no writer: by the fence pair, any writer that sets the flag later sees R1 and
                // waits for us. Acquire: if R2 read the previous writer's clearing store, its writes are
                // visible to us.
                return;
            }
            // A writer is pending: back off, then wake it in case it summed our R1 and went to sleep.
            stripe.fetch_sub(1, Ordering::Release);
            self.wake_writer();
            if !counted_wait {
                Counters::bump(&stats.reader_waits);
                counted_wait = true;
            }
            let mut g = sync::lock(&self.gate);
            // The writer clears the flag under `gate` before notifying: checked under `gate`, no lost
            // wake-up.
            while self.writer_pending.load(Ordering::Acquire) {
                g = sync::wait(&self.readers_cv, g);
            }
            drop(g);
        }
    }

    /// Wakes the writer if it sleeps. Taking `gate` orders us after its sum or before its next one.
    fn wake_writer(&self) {
        let _g = sync::lock(&self.gate);
        self.writer_cv.notify_one();
    }

    /// Leave the read side.
    pub(crate) fn put(&self, me: u64, stats: &Counters) {
        if self.is_writer(me) {
            return;
        }
        let id = self.id;
        // Some(true): outermost release; Some(false): nested release; None: no matching get.
        let outcome = sync::with_thread_slots(|s| {
            for slot in &s.depth {
                let (key, depth) = slot.get();
                if key == id {
                    if depth > 1 {
                        slot.set((key, depth - 1));
                        return Some(false);
                    }
                    slot.set((0, 0));
                    return Some(true);
                }
            }
            let o = s.overflow.get();
            if o > 0 {
                // An untracked outermost read (the table was full) is ours to release.
                s.overflow.set(o - 1);
                return Some(true);
            }
            None
        })
        // Thread-locals gone (thread teardown): trust the caller.
        .unwrap_or(Some(true));

        match outcome {
            Some(true) => self.leave_outermost(me),
            Some(false) => {}
            None => {
                Counters::bump(&stats.put_without_get);
                warn(PUT_WITHOUT_GET_MSG);
            }
        }
    }

    fn leave_outermost(&self, me: u64) {
        self.stripe(me).fetch_sub(1, Ordering::Release); // D1
        fence(Ordering::SeqCst); // pairs with the writer's fence after W1
        if self.writer_pending.load(Ordering::Relaxed) {
            self.wake_writer();
        }
    }

    /// Begin a write: serialise, announce, wait for readers to drain.
    pub(crate) fn begin(&self, me: u64, stats: &Counters) -> PerCpuWrite<'_> {
        self.acquire(sync::lock(&self.writers), me, stats)
    }

    /// Begin a write unless another writer is inside.
    pub(crate) fn try_begin(&self, me: u64, stats: &Counters) -> Option<PerCpuWrite<'_>> {
        Some(self.acquire(sync::try_lock(&self.writers)?, me, stats))
    }

    fn acquire<'a>(
        &'a self,
        writers: MutexGuard<'a, ()>,
        me: u64,
        stats: &Counters,
    ) -> PerCpuWrite<'a> {
        self.active_writer.store(me, Ordering::Relaxed);
        self.writer_pending.store(true, Ordering::Relaxed); // W1
        fence(Ordering::SeqCst); // pairs with the readers' fences after R1 / D1
        let mut g = sync::lock(&self.gate);
        if self.readers_inside() != 0 {
            Counters::bump(&stats.writer_waits);
            let timer = WaitTimer::start();
            while self.readers_inside() != 0 {
                g = sync::wait(&self.writer_cv, g);
            }
            timer.finish(&stats.writer_wait_ns);
        }
        drop(g);
        Counters::bump(&stats.writes);
        PerCpuWrite { writers }
    }

    /// W2: the sum of the stripes (Acquire: synchronises with the readers' releasing decrements).
    fn readers_inside(&self) -> usize {
        self.stripes
            .iter()
            .fold(0usize, |acc, s| acc.wrapping_add(s.load(Ordering::Acquire)))
    }

    /// End a write: clear the flag under `gate`, wake every blocked reader, let the next writer in.
    pub(crate) fn done(&self, w: PerCpuWrite<'_>) {
        self.active_writer.store(0, Ordering::Relaxed);
        {
            let _g = sync::lock(&self.gate);
            self.writer_pending.store(false, Ordering::Release);
            self.readers_cv.notify_all();
        }
        drop(w.writers);
    }
}
