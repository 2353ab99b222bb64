//! The online-mems lock (`get_online_mems` / `mem_hotplug_begin`): the public `OnlineMems` type, its RAII
//! guards and statistics, and the seed implementation (Linux 3.15's refcount + mutex scheme, writers
//! serialised). The per-CPU implementation lives in `percpu.rs`, the asymmetric one (the default) in
//! `asym.rs`; this file knows nothing of node masks.

use crate::asym::AsymLock;
use crate::percpu::PerCpuLock;
use crate::sync::atomic::{AtomicU64, Ordering};
use crate::sync::{self, Condvar, Mutex, MutexGuard};
use core::marker::PhantomData;
// Statistics are plain std atomics on purpose: they are not part of any protocol a model checks, and loom
// atomics would only add scheduling points.
use std::sync::atomic::{AtomicU64 as StatU64, Ordering as StatOrdering};

/// Which implementation an [`OnlineMems`] instance uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum LockKind {
    /// The seed (Linux 3.15): `active_writer`, a mutex guarding `refcount`, the writer holds the mutex for
    /// the whole operation. Every reader takes the mutex briefly; readers nest because `refcount` counts.
    Seed,
    /// In the style of the later per-CPU rw-semaphore (Linux 4.13+ `mem_hotplug_lock`): the read side
    /// touches a striped counter only (an atomic add and a SeqCst fence each way), unless a writer is
    /// pending. A per-thread read depth lets nested readers and the active writer pass straight through.
    PerCpu,
    /// The default: the per-CPU design with the fences moved to the writer. An outermost read stores the
    /// lock's id into the calling thread's own record and runs a compiler fence (no atomic
    /// read-modify-write, no fence instruction); the writer sets its flag, runs
    /// `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` and walks every thread's record. Nested reads touch
    /// only thread-private memory. Without membarrier (old kernel, seccomp, `HOTSLAB_MEMBARRIER=0`) both
    /// sides fall back to the per-CPU lock's SeqCst-fence pair.
    #[default]
    Asymmetric,
}

impl LockKind {
    /// Every kind, for tests and tables.
    pub const ALL: [LockKind; 3] = [LockKind::Seed, LockKind::PerCpu, LockKind::Asymmetric];

    /// Short name (`seed`, `percpu`, `asym`), as the benches label them.
    pub fn name(self) -> &'static str {
        match self {
            LockKind::Seed => "seed",
            LockKind::PerCpu => "percpu",
            LockKind::Asymmetric => "asym",
        }
    }
}

/// Counters of one lock instance (a snapshot; see [`OnlineMems::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockStats {
    /// Write-side acquisitions completed.
    pub writes: u64,
    /// Write-side acquisitions that had to wait for readers to drain (at most one per acquisition).
    pub writer_waits: u64,
    /// Total time writers spent waiting for readers to drain, in nanoseconds (0 under loom).
    pub writer_wait_ns: u64,
    /// Read-side acquisitions that found the lock busy and blocked (seed: the mutex was held; per-CPU and
    /// asymmetric: a writer was pending).
    pub reader_waits: u64,
    /// `put` calls without a matching `get`, warned about and repaired (ignored).
    pub put_without_get: u64,
    /// Outermost reads counted untracked: per-CPU, the thread's depth table was full; asymmetric, no
    /// per-thread record could be had (out of memory).
    pub depth_overflows: u64,
}

/// Live counters shared by both implementations.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) writes: StatU64,
    pub(crate) writer_waits: StatU64,
    pub(crate) writer_wait_ns: StatU64,
    pub(crate) reader_waits: StatU64,
    pub(crate) put_without_get: StatU64,
    pub(crate) depth_overflows: StatU64,
}

impl Counters {
    #[inline]
    pub(crate) fn bump(c: &StatU64) {
        c.fetch_add(1, StatOrdering::Relaxed);
    }

    fn snapshot(&self) -> LockStats {
        let r = |c: &StatU64| c.load(StatOrdering::Relaxed);
        LockStats {
            writes: r(&self.writes),
            writer_waits: r(&self.writer_waits),
            writer_wait_ns: r(&self.writer_wait_ns),
            reader_waits: r(&self.reader_waits),
            put_without_get: r(&self.put_without_get),
            depth_overflows: r(&self.depth_overflows),
        }
    }
}

/// Measures how long a writer waited; a no-op under loom (time is not modelled).
pub(crate) struct WaitTimer {
    #[cfg(not(loom))]
    start: std::time::Instant,
}

impl WaitTimer {
    pub(crate) fn start() -> Self {
        WaitTimer {
            #[cfg(not(loom))]
            start: std::time::Instant::now(),
        }
    }

    pub(crate) fn finish(self, into: &StatU64) {
        #[cfg(not(loom))]
        {
            let ns = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
            into.fetch_add(ns, StatOrdering::Relaxed);
        }
        #[cfg(loom)]
        let _ = into;
    }
}

/// Writes a fixed message to stderr without allocating (the read side may run inside an allocator).
pub(crate) fn warn(msg: &str) {
    // SAFETY: `msg` is a valid, initialised byte buffer of `msg.len()` bytes for the duration of the call;
    // write(2) only reads it. A short or failed write is acceptable for a warning.
    unsafe {
        libc::write(libc::STDERR_FILENO, msg.as_ptr().cast(), msg.len());
    }
}

pub(crate) const PUT_WITHOUT_GET_MSG: &str =
    "hotslab-hotplug: WARNING: put_online_mems() without get_online_mems(); repaired\n";

/// What a read-side `get` did, so the matching release can mirror it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadToken {
    /// The caller is the active writer: nothing was taken.
    Writer,
    /// A reference was taken (outermost or nested).
    Counted,
}

// ---------------------------------------------------------------------------------------------------------
// The seed implementation.

/// State guarded by the seed's `lock`.
pub(crate) struct SeedState {
    /// Readers inside the read side (nested reads count once each).
    refcount: usize,
    /// The writer is asleep waiting for `refcount` to reach 0.
    writer_sleeping: bool,
}

/// The seed lock. `lock` is held by the writer for its whole operation, so readers block on it.
pub(crate) struct SeedLock {
    /// Thread id of the writer inside `begin..done`, or 0.
    active_writer: AtomicU64,
    /// Serialises writers (the seed forgot this; a later kernel fix added an outer lock).
    writers: Mutex<()>,
    /// The seed's `mem_hotplug.lock`: guards `refcount`, held by the writer while it runs.
    lock: Mutex<SeedState>,
    /// Where the writer sleeps until the last reader leaves.
    writer_wake: Condvar,
}

/// The guards a seed writer holds between `begin` and `done`.
pub(crate) struct SeedWrite<'a> {
    writers: MutexGuard<'a, ()>,
    state: MutexGuard<'a, SeedState>,
}

impl SeedLock {
    pub(crate) fn new() -> Self {
        SeedLock {
            active_writer: AtomicU64::new(0),
            writers: Mutex::new(()),
            lock: Mutex::new(SeedState {
                refcount: 0,
                writer_sleeping: false,
            }),
            writer_wake: Condvar::new(),
        }
    }

    #[inline]
    pub(crate) fn is_writer(&self, me: u64) -> bool {
        // Relaxed is enough: only this thread ever stores its own id here, and a thread always observes its
        // own latest store; any other value (0 or another id) compares unequal whatever its age.
        self.active_writer.load(Ordering::Relaxed) == me
    }

    /// `get_online_mems()`.
    pub(crate) fn get(&self, me: u64, stats: &Counters) -> ReadToken {
        if self.is_writer(me) {
            return ReadToken::Writer;
        }
        let mut st = match sync::try_lock(&self.lock) {
            Some(g) => g,
            None => {
                Counters::bump(&stats.reader_waits);
                sync::lock(&self.lock)
            }
        };
        st.refcount += 1;
        ReadToken::Counted
    }

    /// `put_online_mems()`.
    pub(crate) fn put(&self, me: u64, stats: &Counters) {
        if self.is_writer(me) {
            return;
        }
        let mut st = sync::lock(&self.lock);
        if st.refcount == 0 {
            // The kernel WARNs and clamps at zero; so do we.
            drop(st);
            Counters::bump(&stats.put_without_get);
            warn(PUT_WITHOUT_GET_MSG);
            return;
        }
        st.refcount -= 1;
        if st.refcount == 0 && st.writer_sleeping {
            // Only one writer can be asleep (writers are serialised), so one wake-up is enough. It is sent
            // while `lock` is held, and the writer re-checks `refcount` under `lock`: no lost wake-up.
            self.writer_wake.notify_one();
        }
    }

    /// `mem_hotplug_begin()`: returns holding the writer mutex and `lock`.
    pub(crate) fn begin(&self, me: u64, stats: &Counters) -> SeedWrite<'_> {
        self.acquire(sync::lock(&self.writers), me, stats)
    }

    /// `mem_hotplug_begin()` that gives up at once if another writer is inside.
    pub(crate) fn try_begin(&self, me: u64, stats: &Counters) -> Option<SeedWrite<'_>> {
        Some(self.acquire(sync::try_lock(&self.writers)?, me, stats))
    }

    /// The seed's begin, once the writer mutex is held.
    fn acquire<'a>(
        &'a self,
        writers: MutexGuard<'a, ()>,
        me: u64,
        stats: &Counters,
    ) -> SeedWrite<'a> {
        self.active_writer.store(me, Ordering::Relaxed);
        let mut st = sync::lock(&self.lock);
        if st.refcount != 0 {
            Counters::bump(&stats.writer_waits);
            let timer = WaitTimer::start();
            while st.refcount != 0 {
                st.writer_sleeping = true;
                st = sync::wait(&self.writer_wake, st);
            }
            st.writer_sleeping = false;
            timer.finish(&stats.writer_wait_ns);
        }
        // Break out *holding* `lock`: new readers now block in `get`.
        Counters::bump(&stats.writes);
        SeedWrite { writers, state: st }
    }

    /// `mem_hotplug_done()`: clear `active_writer`, drop `lock`, then the writer mutex.
    pub(crate) fn done(&self, w: SeedWrite<'_>) {
        self.active_writer.store(0, Ordering::Relaxed);
        let SeedWrite { writers, state } = w;
        drop(state);
        drop(writers);
    }
}

// ---------------------------------------------------------------------------------------------------------
// The public type.

// Inline, not boxed: building a lock must not allocate (a domain may be created while the allocator that
// hotslab provides is bootstrapping), so the seed variant carries the per-CPU variant's 4 KiB of padding.
#[allow(clippy::large_enum_variant)]
enum Imp {
    Seed(SeedLock),
    PerCpu(PerCpuLock),
    Asym(AsymLock),
}

/// The online-mems lock: a reader/writer scheme in which readers nest, the writer waits for readers to
/// drain and then holds off new ones, the writer's own read-side calls return at once, and writers are
/// serialised. The implementation ([`LockKind`]) is chosen per instance.
///
/// Lock order: the online-mems read/write side comes *before* every other hotslab lock (`slab_mutex`, a
/// node part's list lock, a slab's state). Taking the write side while the same thread holds the read side
/// deadlocks, as in the kernel.
///
/// ```
/// use hotslab_hotplug::{LockKind, OnlineMems};
///
/// for kind in LockKind::ALL {
///     let lock = OnlineMems::new(kind);
///     {
///         let _outer = lock.read(); // get_online_mems()
///         let _nested = lock.read(); // readers nest
///     } // put_online_mems() twice
///     let w = lock.write(); // mem_hotplug_begin()
///     assert!(lock.is_active_writer());
///     let _own = lock.read(); // the writer's own read side returns at once
///     drop(_own);
///     drop(w); // mem_hotplug_done()
///     assert_eq!(lock.stats().writes, 1);
///     assert_eq!(lock.stats().put_without_get, 0);
/// }
/// ```
pub struct OnlineMems {
    imp: Imp,
    stats: Counters,
}

impl OnlineMems {
    /// A new, unlocked instance of the given kind.
    pub fn new(kind: LockKind) -> Self {
        let imp = match kind {
            LockKind::Seed => Imp::Seed(SeedLock::new()),
            LockKind::PerCpu => Imp::PerCpu(PerCpuLock::new()),
            LockKind::Asymmetric => Imp::Asym(AsymLock::new()),
        };
        OnlineMems {
            imp,
            stats: Counters::default(),
        }
    }

    /// Which implementation this instance uses.
    pub fn kind(&self) -> LockKind {
        match self.imp {
            Imp::Seed(_) => LockKind::Seed,
            Imp::PerCpu(_) => LockKind::PerCpu,
            Imp::Asym(_) => LockKind::Asymmetric,
        }
    }

    #[inline]
    fn get_token(&self) -> ReadToken {
        match &self.imp {
            // The asymmetric fast path needs no thread id (only its slow path checks for the writer).
            Imp::Asym(l) => l.get(&self.stats),
            Imp::Seed(l) => l.get(sync::thread_id(), &self.stats),
            Imp::PerCpu(l) => l.get(sync::thread_id(), &self.stats),
        }
    }

    /// `get_online_mems()`: enter the read side. Pair with [`put`](Self::put); prefer [`read`](Self::read).
    ///
    /// For [`LockKind::PerCpu`] and [`LockKind::Asymmetric`] the matching `put` must run on the same thread.
    #[inline]
    pub fn get(&self) {
        let _ = self.get_token();
    }

    /// `put_online_mems()`: leave the read side. A `put` without a `get` is warned about (stderr), counted
    /// in [`LockStats::put_without_get`] and otherwise ignored.
    #[inline]
    pub fn put(&self) {
        match &self.imp {
            Imp::Asym(l) => l.put(&self.stats),
            Imp::Seed(l) => l.put(sync::thread_id(), &self.stats),
            Imp::PerCpu(l) => l.put(sync::thread_id(), &self.stats),
        }
    }

    /// Enter the read side for the guard's lifetime. While any read guard is held, no writer is inside;
    /// readers nest freely; the active writer's own reads pass straight through.
    #[inline]
    pub fn read(&self) -> ReadGuard<'_> {
        let counted = self.get_token() == ReadToken::Counted;
        ReadGuard {
            lock: counted.then_some(self),
            _not_send: PhantomData,
        }
    }

    /// Enter the write side (`mem_hotplug_begin`) for the guard's lifetime: waits for other writers, then
    /// for readers to drain, and holds off new readers until the guard is dropped (`mem_hotplug_done`).
    /// A nested `write` by the thread that already is the active writer passes straight through (the
    /// kernel would deadlock).
    pub fn write(&self) -> WriteGuard<'_> {
        let me = sync::thread_id();
        let inner = match &self.imp {
            _ if self.is_writer(me) => WriteInner::Nested,
            Imp::Seed(l) => WriteInner::Seed(Some(l.begin(me, &self.stats))),
            Imp::PerCpu(l) => WriteInner::PerCpu(Some(l.begin(me, &self.stats))),
            Imp::Asym(l) => WriteInner::Asym(Some(l.begin(me, &self.stats))),
        };
        WriteGuard {
            lock: self,
            inner,
            _not_send: PhantomData,
        }
    }

    /// Like [`write`](Self::write) but returns `None` at once if another writer is inside (it still waits
    /// for readers to drain).
    pub fn try_write(&self) -> Option<WriteGuard<'_>> {
        let me = sync::thread_id();
        let inner = match &self.imp {
            _ if self.is_writer(me) => WriteInner::Nested,
            Imp::Seed(l) => WriteInner::Seed(Some(l.try_begin(me, &self.stats)?)),
            Imp::PerCpu(l) => WriteInner::PerCpu(Some(l.try_begin(me, &self.stats)?)),
            Imp::Asym(l) => WriteInner::Asym(Some(l.try_begin(me, &self.stats)?)),
        };
        Some(WriteGuard {
            lock: self,
            inner,
            _not_send: PhantomData,
        })
    }

    fn is_writer(&self, me: u64) -> bool {
        match &self.imp {
            Imp::Seed(l) => l.is_writer(me),
            Imp::PerCpu(l) => l.is_writer(me),
            Imp::Asym(l) => l.is_writer(me),
        }
    }

    /// Is the calling thread the active writer?
    pub fn is_active_writer(&self) -> bool {
        self.is_writer(sync::thread_id())
    }

    /// A snapshot of this instance's counters.
    pub fn stats(&self) -> LockStats {
        self.stats.snapshot()
    }

    /// `put` calls without a matching `get` so far (warned about and repaired).
    pub fn put_without_get_repairs(&self) -> u64 {
        self.stats.snapshot().put_without_get
    }

    /// Write-side acquisitions that had to wait for readers so far.
    pub fn writer_waits(&self) -> u64 {
        self.stats.snapshot().writer_waits
    }

    /// Mutation check of the loom models only (`tests/loom_asym.rs`): breaks one step of the asymmetric
    /// protocol in this lock (no effect on the other kinds), so that the models can show they catch it.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn mutation_asym(&self, m: crate::asym::AsymMutation) {
        if let Imp::Asym(l) = &self.imp {
            l.set_mutation(m);
        }
    }

    /// loom models only: whether this asymmetric lock runs as if membarrier were available (the
    /// default) or in the SeqCst-fence fallback. Set before the lock is shared.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn loom_membarrier(&self, available: bool) {
        if let Imp::Asym(l) = &self.imp {
            l.set_loom_membarrier(available);
        }
    }
}

impl Default for OnlineMems {
    fn default() -> Self {
        OnlineMems::new(LockKind::default())
    }
}

impl core::fmt::Debug for OnlineMems {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OnlineMems")
            .field("kind", &self.kind())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// RAII read side of an [`OnlineMems`] (`get_online_mems` .. `put_online_mems`). Not `Send`: the read side
/// belongs to the thread that took it.
#[must_use = "the read side is released when the guard is dropped"]
pub struct ReadGuard<'a> {
    /// The lock to release, or `None` if the guard passed through (taken by the active writer). One
    /// pointer: a separate token byte next to it made every guard that went through memory (a
    /// `black_box`, a spill) pay a store-forwarding stall when its drop reloaded both.
    lock: Option<&'a OnlineMems>,
    _not_send: PhantomData<*const ()>,
}

impl ReadGuard<'_> {
    /// Did this guard pass straight through because its thread was the active writer?
    pub fn is_writer_passthrough(&self) -> bool {
        self.lock.is_none()
    }
}

impl Drop for ReadGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // A guard taken by the active writer took nothing, so it releases nothing, even if it outlives the
        // write guard (a raw `put` would then be a put without a get).
        if let Some(lock) = self.lock {
            lock.put();
        }
    }
}

impl core::fmt::Debug for ReadGuard<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReadGuard")
            .field("writer_passthrough", &self.is_writer_passthrough())
            .finish()
    }
}

enum WriteInner<'a> {
    Nested,
    Seed(Option<SeedWrite<'a>>),
    PerCpu(Option<crate::percpu::PerCpuWrite<'a>>),
    Asym(Option<crate::asym::AsymWrite<'a>>),
}

/// RAII write side of an [`OnlineMems`] (`mem_hotplug_begin` .. `mem_hotplug_done`). Not `Send`.
#[must_use = "the write side is released when the guard is dropped"]
pub struct WriteGuard<'a> {
    lock: &'a OnlineMems,
    inner: WriteInner<'a>,
    _not_send: PhantomData<*const ()>,
}

impl WriteGuard<'_> {
    /// Did this guard pass straight through because its thread already was the active writer?
    pub fn is_nested(&self) -> bool {
        matches!(self.inner, WriteInner::Nested)
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        match (&self.lock.imp, &mut self.inner) {
            (Imp::Seed(l), WriteInner::Seed(w)) => {
                if let Some(w) = w.take() {
                    l.done(w);
                }
            }
            (Imp::PerCpu(l), WriteInner::PerCpu(w)) => {
                if let Some(w) = w.take() {
                    l.done(w);
                }
            }
            (Imp::Asym(l), WriteInner::Asym(w)) => {
                if let Some(w) = w.take() {
                    l.done(w);
                }
            }
            _ => {}
        }
    }
}

impl core::fmt::Debug for WriteGuard<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WriteGuard")
            .field("nested", &self.is_nested())
            .finish()
    }
}
