//! The asymmetric online-mems implementation ([`LockKind::Asymmetric`](crate::LockKind::Asymmetric)): the
//! per-CPU design's read side without a fence or a read-modify-write on a shared line. A reader stores the
//! lock's id into a slot of its own per-thread record and runs a compiler fence; the writer pays instead,
//! with `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` (the slab fast path's revocation uses the same
//! pair). Used only through `OnlineMems`; knows nothing of node masks.
//!
//! # Records
//!
//! Every thread that has read any asymmetric lock owns a `ThreadRec` (and, past `SLOTS` locks held at
//! once, a chain of them): `keys[i]` holds the id of a lock whose read side the thread is inside (0: none),
//! written only by the owner and read by writers; the owner keeps a private mirror of the keys and the
//! nesting depth of each. Records live on one process-wide, push-only list that writers walk — no thread
//! limit, nothing ever unlinked or freed, so a walk needs no reclamation scheme. A thread's first read
//! claims a record from the list (a free one, or a fresh page of them from `mmap`: never the global
//! allocator, which may be hotslab inside its own bootstrap); a pthread key destructor gives the records
//! back at thread exit (keys all 0) for the next new thread. The fast path allocates nothing.
//!
//! # Fast path
//!
//! `held` (owner only) counts the thread's outermost reads over its whole chain. `get` with `held == 0`
//! takes slot 0 of the first record; with `held == 1` and slot 0 holding this lock it is a nested read
//! (a depth bump); `put` mirrors that. Everything else goes to the slow paths: several locks held, the
//! thread's first read, a writer pending. So does the active writer's own read: the fast path does
//! not look up the thread id. The writer sees its own flag at `R2`, takes `R1` back and passes through
//! in the slow path, before any other writer could walk the records (writers are serialised).
//!
//! A `fork` child keeps only the forking thread. The other threads' records stay claimed. Their keys
//! are 0 for the slab's locks, whose write side the fork handlers hold. A read side another thread held
//! at the fork stays held in the child, as any lock does.
//!
//! # The Dekker pair, asymmetric
//!
//! Outermost reader: `R1: keys[i] = id (Release); L: light barrier; R2: load writer_pending (Acquire)`.
//! Writer: `W1: writer_pending = true; H: heavy barrier; W2: load every record's keys (Acquire)`.
//! `H` is a SeqCst fence plus membarrier, which runs a full barrier on every CPU that runs a thread of
//! this process (a CPU that does not is switching tasks, itself a full barrier) at some point `P` of
//! that thread's instruction stream, between `H`'s start and end. `L` is a compiler fence, so `R1` and
//! `R2` stay in program order around it and `P` falls before `R1`, between `R1` and `R2`, or after `R2`:
//!
//! - `P` after `R1`: `R1` is globally visible when membarrier returns, so `W2` sees it (the writer waits);
//! - `P` before `R2`: `W1` was globally visible before the barrier at `P`, so `R2` sees it (the reader
//!   backs off: `keys[i] = 0`, wake the writer under `gate`, sleep until the flag clears, retry).
//!
//! One of the two always holds (`P` is after `R1` or before `R2` whatever it is), so either the writer
//! waits for the reader or the reader backs off; never neither. The release is the same pair:
//! `D1: keys[i] = 0 (Release); L; load writer_pending` — if the load misses the flag, `P` came after it
//! and `W2` (which always runs after `H`) sees `D1`; if it sees the flag, the reader takes `gate` and wakes
//! the writer, which re-reads the keys under `gate` before it sleeps, so the wake-up cannot be lost. One
//! `H` covers every enter and leave of every reader while the flag stays set: a reader operation that
//! starts after `P` sees `W1`.
//!
//! Records, too: a thread publishes a new page of records (a Release CAS on the list head) before `R1`,
//! so `P` after `R1` also makes the record reachable by `W2`'s walk.
//!
//! # Without membarrier
//!
//! If membarrier cannot be registered (old kernel, seccomp, `HOTSLAB_MEMBARRIER=0`; probed at the first
//! use, see `membarrier.rs`), `L` is a real SeqCst fence and the pair is the per-CPU lock's symmetric one:
//! the two SeqCst fences are totally ordered, and whichever comes first, the other side's load sees the
//! store before it. A reader skips its fence only after loading the mode `Membarrier`, and a writer
//! issues membarrier whenever the mode is `Membarrier`; the mode never returns to it once it left.
//!
//! # Data hand-over
//!
//! Reader → writer: `D1` is a Release store and `W2` loads Acquire, so a reader's section happens before
//! the writer's. Every key store is Release, including `R1` of a later section of the same thread on
//! another lock in the same slot: a writer that reads that later value still synchronises with
//! everything the thread did before it (C++20 release sequences no longer include plain stores, hence
//! not only `D1` is Release). Writer → reader: the writer clears the flag with a Release store that `R2`
//! reads with Acquire. Thread exit → next owner of the record: the exit releases `in_use` (Release) after
//! the owner's last key store, the claim is an Acquire CAS.
//!
//! # Under loom
//!
//! loom cannot model membarrier, so both halves are SeqCst fences there. That is a sound stand-in: the
//! fence pair guarantees exactly what the proof above uses — for each reader fence, either it precedes the
//! writer's in the single total order (the writer's later loads see the reader's earlier stores: `P` after
//! `R1`) or it follows it (the reader's later loads see `W1`: `P` before `R2`); and the reader fences of
//! one thread are ordered consistently with its program, as the points before and after `P` are. It
//! proves nothing stronger that the code could lean on: the code never relies on a reader's fence for
//! anything but its own store-then-load pair. What loom cannot check is the claim that membarrier provides
//! the pair on real CPUs (the kernel's documented guarantee, used the same way by userspace RCU).

use crate::online_mems::{warn, Counters, ReadToken, WaitTimer, PUT_WITHOUT_GET_MSG};
use crate::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use crate::sync::{self, Condvar, Mutex, MutexGuard};
use core::cell::Cell;
use core::ptr;
use crossbeam_utils::CachePadded;
// The list links are set before a record is published and never change: plain std atomics (they carry
// no protocol; the list head, a `sync` atomic, orders them).
use std::sync::atomic::{AtomicPtr as StdAtomicPtr, Ordering as StdOrdering};

/// Slots per record: how many distinct asymmetric locks a thread can be inside before it chains a second
/// record. Under loom two, so that a model with three locks exercises the chain.
#[cfg(not(loom))]
pub(crate) const SLOTS: usize = 4;
#[cfg(loom)]
pub(crate) const SLOTS: usize = 2;

/// Source of per-instance ids (the values stored in `keys`); never reused, never 0.
static NEXT_INSTANCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

const UNTRACKED_MSG: &str =
    "hotslab-hotplug: WARNING: no per-thread record for the read side (out of memory); read counted untracked\n";
const EXIT_INSIDE_MSG: &str =
    "hotslab-hotplug: WARNING: a thread exited inside an online-mems read side; it stays held\n";

// ---------------------------------------------------------------------------------------------------------
// Per-thread records.

/// One thread's slots (see the module header). 128 bytes, aligned so that two threads' records never
/// share a cache line or an adjacent-line prefetch pair.
#[repr(C, align(128))]
pub(crate) struct ThreadRec {
    /// Lock id per slot while the owner is inside that lock's read side, else 0. Owner stores, writers load.
    keys: [AtomicU64; SLOTS],
    /// Next record of the process-wide list (set before publication, never changed).
    next: StdAtomicPtr<ThreadRec>,
    /// Owner only: its own copy of `keys` (no atomic load on the owner's lookups).
    mirror: [Cell<u64>; SLOTS],
    /// Owner only: read depth per slot (nested reads touch nothing shared).
    depth: [Cell<u32>; SLOTS],
    /// Owner only: the owner's next record once this one's slots are all taken.
    ext: Cell<*const ThreadRec>,
    /// Owner only, first record of a chain: outermost reads the thread holds, over the whole chain (0:
    /// the fast path may take slot 0 without looking further; 1 with slot 0 this lock: a nested read).
    held: Cell<u32>,
    /// Claimed by a thread (CAS at claim, Release store at its exit).
    in_use: AtomicBool,
}

#[cfg(not(loom))]
const _: () = assert!(core::mem::size_of::<ThreadRec>() == 128);

// SAFETY: `keys`, `in_use` and `next` are atomics. `mirror`, `depth`, `ext` and `held` are touched only by the
// thread that claimed the record (`in_use` CAS) until it gives the record back with a Release store of
// `in_use`; the next owner's Acquire CAS orders its accesses after those.
unsafe impl Sync for ThreadRec {}

impl ThreadRec {
    fn new(in_use: bool) -> ThreadRec {
        ThreadRec {
            keys: core::array::from_fn(|_| AtomicU64::new(0)),
            next: StdAtomicPtr::new(ptr::null_mut()),
            mirror: core::array::from_fn(|_| Cell::new(0)),
            depth: core::array::from_fn(|_| Cell::new(0)),
            ext: Cell::new(ptr::null()),
            held: Cell::new(0),
            in_use: AtomicBool::new(in_use),
        }
    }

    fn next(&self) -> *const ThreadRec {
        self.next.load(StdOrdering::Relaxed)
    }
}

/// The process-wide list of records (under loom: per execution).
struct Registry {
    head: AtomicPtr<ThreadRec>,
    /// Records ever made (diagnostics).
    made: std::sync::atomic::AtomicUsize,
}

#[cfg(not(loom))]
static REGISTRY: Registry = Registry {
    head: AtomicPtr::new(ptr::null_mut()),
    made: std::sync::atomic::AtomicUsize::new(0),
};

#[cfg(loom)]
loom::lazy_static! {
    static ref REGISTRY: Registry = Registry {
        head: AtomicPtr::new(ptr::null_mut()),
        made: std::sync::atomic::AtomicUsize::new(0),
    };
}

/// Records ever made in this process, and how many are claimed now (diagnostics and tests; walks the list).
pub fn thread_records() -> (usize, usize) {
    let made = REGISTRY.made.load(StdOrdering::Relaxed);
    let mut claimed = 0;
    let mut p = REGISTRY.head.load(Ordering::Acquire).cast_const();
    // SAFETY: records are never freed; the list is push-only.
    while let Some(r) = unsafe { p.as_ref() } {
        claimed += usize::from(r.in_use.load(Ordering::Relaxed));
        p = r.next();
    }
    (made, claimed)
}

/// Claims a free record or makes new ones. `None` only if memory for records cannot be had.
fn claim() -> Option<&'static ThreadRec> {
    let mut p = REGISTRY.head.load(Ordering::Acquire).cast_const();
    // SAFETY: records are never freed; the list is push-only.
    while let Some(r) = unsafe { p.as_ref() } {
        if !r.in_use.load(Ordering::Relaxed)
            && r.in_use
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return Some(r);
        }
        p = r.next();
    }
    make_records()
}

/// Makes a batch of records (the first claimed by the caller) and pushes them onto the list.
fn make_records() -> Option<&'static ThreadRec> {
    let (first, last, n) = alloc_batch()?;
    REGISTRY.made.fetch_add(n, StdOrdering::Relaxed);
    let mut head = REGISTRY.head.load(Ordering::Relaxed);
    loop {
        // SAFETY: `last` is ours until the CAS below publishes the batch.
        unsafe { (*last).next.store(head, StdOrdering::Relaxed) };
        // Release: a writer that loads the new head (Acquire) sees initialised records and links.
        match REGISTRY
            .head
            .compare_exchange_weak(head, first, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => break,
            Err(h) => head = h,
        }
    }
    // SAFETY: just made, never freed.
    Some(unsafe { &*first })
}

/// A batch of initialised records linked first → last (first one claimed): one page from `mmap`.
#[cfg(all(not(loom), not(miri)))]
fn alloc_batch() -> Option<(*mut ThreadRec, *mut ThreadRec, usize)> {
    const PAGE: usize = 4096;
    const N: usize = PAGE / core::mem::size_of::<ThreadRec>();
    // SAFETY: an anonymous private mapping; no pointer is involved.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return None;
    }
    let base = p.cast::<ThreadRec>();
    for i in 0..N {
        // SAFETY: record `i` lies inside the fresh page (N * 128 <= 4096), aligned (the page is).
        unsafe {
            let r = base.add(i);
            r.write(ThreadRec::new(i == 0));
            if i + 1 < N {
                (*r).next.store(base.add(i + 1), StdOrdering::Relaxed);
            }
        }
    }
    // SAFETY: N >= 1.
    Some((base, unsafe { base.add(N - 1) }, N))
}

/// Miri and loom: one record from the heap, never freed (loom leaks one per thread per execution: a
/// model thread's locals are dropped after the execution's statics, so the registry cannot own them).
#[cfg(any(loom, miri))]
fn alloc_batch() -> Option<(*mut ThreadRec, *mut ThreadRec, usize)> {
    let r = Box::into_raw(Box::new(ThreadRec::new(true)));
    Some((r, r, 1))
}

/// Gives a thread's records back (thread exit). A record with a key still set (a read side leaked by the
/// exiting thread) is kept claimed for ever: that read side stays held, as with the other kinds.
fn release_chain(first: *const ThreadRec) {
    let mut p = first;
    // SAFETY: records are never freed; the exiting thread owns its chain until it releases each one.
    while let Some(r) = unsafe { p.as_ref() } {
        let next = r.ext.get();
        if r.mirror.iter().all(|k| k.get() == 0) {
            r.ext.set(ptr::null());
            r.held.set(0);
            for d in &r.depth {
                d.set(0);
            }
            // Release: the next owner (Acquire CAS) sees this owner's last key stores and the reset.
            r.in_use.store(false, Ordering::Release);
        } else {
            warn(EXIT_INSIDE_MSG);
        }
        p = next;
    }
}

#[cfg(not(loom))]
mod local {
    use super::{release_chain, ThreadRec};
    use core::cell::Cell;
    use core::ptr;
    use std::sync::atomic::{AtomicUsize, Ordering};

    std::thread_local! {
        // Const and drop-free (see sync.rs): no lazy-init branch, no destructor registration, readable
        // during thread teardown. Thread exit is handled by a pthread key instead.
        static MINE: Cell<*const ThreadRec> = const { Cell::new(ptr::null()) };
        static UNTRACKED: Cell<u32> = const { Cell::new(0) };
    }

    #[inline(always)]
    pub(super) fn get() -> *const ThreadRec {
        MINE.try_with(|m| m.get()).unwrap_or(ptr::null())
    }

    /// Records `r` as the thread's first record and arranges its release at thread exit.
    pub(super) fn set(r: *const ThreadRec) {
        let _ = MINE.try_with(|m| m.set(r));
        if let Some(key) = exit_key() {
            // SAFETY: a valid key. glibc keeps the first 32 keys' values in the thread descriptor; past
            // those it may allocate once per thread, which the allocator's re-entrancy guard serves.
            unsafe { libc::pthread_setspecific(key, r.cast()) };
        }
    }

    pub(super) fn untracked() -> &'static std::thread::LocalKey<Cell<u32>> {
        &UNTRACKED
    }

    static KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

    fn exit_key() -> Option<libc::pthread_key_t> {
        let k = KEY.load(Ordering::Acquire);
        if k != usize::MAX {
            return Some(k as libc::pthread_key_t);
        }
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: key is a valid out-pointer; the destructor never unwinds.
        if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } != 0 {
            return None;
        }
        match KEY.compare_exchange(
            usize::MAX,
            key as usize,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Some(key),
            Err(winner) => {
                // SAFETY: our key was never handed out.
                unsafe { libc::pthread_key_delete(key) };
                Some(winner as libc::pthread_key_t)
            }
        }
    }

    extern "C" fn on_thread_exit(value: *mut libc::c_void) {
        // A later TLS destructor that reads again claims a new record (and sets the key again, which
        // glibc honours with another destructor round).
        let _ = MINE.try_with(|m| m.set(ptr::null()));
        release_chain(value.cast_const().cast());
    }
}

#[cfg(loom)]
mod local {
    use super::{release_chain, ThreadRec};
    use core::cell::Cell;
    use core::ptr;

    /// The thread's first record; released when loom drops the thread's locals (thread exit).
    pub(super) struct Mine(Cell<*const ThreadRec>);

    impl Drop for Mine {
        fn drop(&mut self) {
            // After a failed execution loom drops the locals of unfinished threads outside any execution,
            // where a loom atomic cannot be touched: nothing to give back then.
            if std::thread::panicking() {
                return;
            }
            release_chain(self.0.get());
        }
    }

    loom::thread_local! {
        static MINE: Mine = Mine(Cell::new(ptr::null()));
        static UNTRACKED: Cell<u32> = Cell::new(0);
    }

    pub(super) fn get() -> *const ThreadRec {
        MINE.with(|m| m.0.get())
    }

    pub(super) fn set(r: *const ThreadRec) {
        MINE.with(|m| m.0.set(r));
    }

    pub(super) fn untracked() -> &'static loom::thread::LocalKey<Cell<u32>> {
        &UNTRACKED
    }
}

/// The calling thread's first record, claimed on its first read.
#[inline(always)]
fn my_rec() -> Option<&'static ThreadRec> {
    let p = local::get();
    if !p.is_null() {
        // SAFETY: records are never freed; this one is claimed by the calling thread.
        return Some(unsafe { &*p });
    }
    my_rec_slow()
}

#[cold]
fn my_rec_slow() -> Option<&'static ThreadRec> {
    // Probe the barrier mode before the first fast path, so that readers skip their fence from the
    // start if they can (a syscall, once per process).
    #[cfg(not(loom))]
    let _ = crate::membarrier::mode_probed();
    let r = claim()?;
    local::set(r);
    Some(r)
}

// ---------------------------------------------------------------------------------------------------------
// The lock.

/// A deliberate break of one step of the asymmetric protocol, for the loom models' mutation checks
/// ([`OnlineMems::mutation_asym`](crate::OnlineMems::mutation_asym)): a model that cannot fail proves
/// nothing.
#[cfg(loom)]
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AsymMutation {
    /// The protocol as written.
    None,
    /// The writer skips the heavy barrier between setting `writer_pending` and reading the keys.
    WriterSkipsBarrier,
    /// In the fence fallback, the reader skips its fence (as if membarrier covered it).
    ReaderSkipsFallbackFence,
    /// The outermost release stores its key with Relaxed instead of Release.
    LeaveStoreRelaxed,
    /// The outermost release does not wake a pending writer.
    LeaveSkipsWake,
}

/// What an asymmetric writer holds between begin and done.
pub(crate) struct AsymWrite<'a> {
    writers: MutexGuard<'a, ()>,
}

/// The asymmetric lock.
pub(crate) struct AsymLock {
    /// The value readers store in their keys.
    id: u64,
    /// A writer wants in or is in: outermost readers back off.
    writer_pending: CachePadded<AtomicBool>,
    /// Thread id of the writer inside, or 0.
    active_writer: AtomicU64,
    /// Outermost reads of threads without a record slot (out of memory only): counted here, with the
    /// per-CPU lock's symmetric fence protocol.
    untracked: AtomicUsize,
    /// Serialises writers.
    writers: Mutex<()>,
    /// Guards sleeping and waking (no data: the state is in the atomics).
    gate: Mutex<()>,
    /// The (single) writer sleeps here until the readers drain.
    writer_cv: Condvar,
    /// Readers sleep here until the writer is done.
    readers_cv: Condvar,
    #[cfg(loom)]
    mutation: std::sync::atomic::AtomicU8,
    /// Under loom the model chooses the barrier mode per lock (`true`: membarrier available).
    #[cfg(loom)]
    loom_membarrier: std::sync::atomic::AtomicBool,
}

impl AsymLock {
    pub(crate) fn new() -> Self {
        AsymLock {
            id: NEXT_INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            writer_pending: CachePadded::new(AtomicBool::new(false)),
            active_writer: AtomicU64::new(0),
            untracked: AtomicUsize::new(0),
            writers: Mutex::new(()),
            gate: Mutex::new(()),
            writer_cv: Condvar::new(),
            readers_cv: Condvar::new(),
            #[cfg(loom)]
            mutation: std::sync::atomic::AtomicU8::new(AsymMutation::None as u8),
            #[cfg(loom)]
            loom_membarrier: std::sync::atomic::AtomicBool::new(true),
        }
    }

    #[cfg(loom)]
    pub(crate) fn set_mutation(&self, m: AsymMutation) {
        self.mutation
            .store(m as u8, std::sync::atomic::Ordering::Relaxed);
    }

    #[cfg(loom)]
    fn mutated(&self, m: AsymMutation) -> bool {
        self.mutation.load(std::sync::atomic::Ordering::Relaxed) == m as u8
    }

    #[cfg(loom)]
    pub(crate) fn set_loom_membarrier(&self, available: bool) {
        self.loom_membarrier
            .store(available, std::sync::atomic::Ordering::Relaxed);
    }

    /// The reader's barrier `L`. Under loom a SeqCst fence in both modes: the stand-in for the compiler
    /// fence + membarrier pair (module header), or the fallback's real fence.
    #[inline(always)]
    fn light(&self) {
        #[cfg(not(loom))]
        crate::membarrier::light();
        #[cfg(loom)]
        {
            let fallback = !self
                .loom_membarrier
                .load(std::sync::atomic::Ordering::Relaxed);
            if !(fallback && self.mutated(AsymMutation::ReaderSkipsFallbackFence)) {
                fence(Ordering::SeqCst);
            }
        }
    }

    /// The writer's barrier `H` (under loom a SeqCst fence, whichever the mode).
    fn heavy(&self) {
        #[cfg(not(loom))]
        crate::membarrier::heavy();
        #[cfg(loom)]
        if !self.mutated(AsymMutation::WriterSkipsBarrier) {
            fence(Ordering::SeqCst);
        }
    }

    #[inline(always)]
    pub(crate) fn is_writer(&self, me: u64) -> bool {
        // Relaxed: only this thread stores its own id here (see SeedLock::is_writer).
        self.active_writer.load(Ordering::Relaxed) == me
    }

    /// Enter the read side. The fast path covers a thread that holds no asymmetric read side (slot 0 of
    /// its first record) and a nested read of the only one it holds; everything else, including the
    /// active writer's own reads (it sees its own flag at R2), goes to `get_slow`.
    #[inline(always)]
    pub(crate) fn get(&self, stats: &Counters) -> ReadToken {
        // SAFETY: records are never freed; a non-null one here is claimed by the calling thread.
        if let Some(r) = unsafe { local::get().as_ref() } {
            match r.held.get() {
                0 => {
                    r.keys[0].store(self.id, Ordering::Release); // R1
                    self.light(); // L
                    if !self.writer_pending.load(Ordering::Acquire) {
                        // R2 saw no writer: a writer that sets the flag now sees R1 after its barrier
                        // and waits for us. Acquire: if R2 read the previous writer's clearing store,
                        // its section happens before ours.
                        r.mirror[0].set(self.id);
                        r.depth[0].set(1);
                        r.held.set(1);
                        return ReadToken::Counted;
                    }
                    self.retract(r, 0);
                }
                1 if r.mirror[0].get() == self.id => {
                    // Nested: the thread is inside, so a writer (if any) waits for its outermost read
                    // and cannot get in before it leaves. Nothing shared is touched.
                    r.depth[0].set(r.depth[0].get() + 1);
                    return ReadToken::Counted;
                }
                _ => {}
            }
        }
        self.get_slow(stats)
    }

    /// The fast path's R2 saw a writer: take R1 back and wake the writer (it may have seen R1 and gone
    /// to sleep); `get_slow` then starts over.
    #[cold]
    fn retract(&self, r: &ThreadRec, i: usize) {
        r.keys[i].store(0, Ordering::Release);
        self.wake_writer();
    }

    /// Every other read: the writer's own (pass through), the thread's first ever, a nested read of one
    /// of several locks held, an outermost read into a free slot or a chained record, a read that waits
    /// for a writer.
    #[cold]
    #[inline(never)]
    fn get_slow(&self, stats: &Counters) -> ReadToken {
        if self.is_writer(sync::thread_id()) {
            return ReadToken::Writer;
        }
        let Some(first) = my_rec() else {
            self.enter_untracked(stats);
            return ReadToken::Counted;
        };
        // One pass over the thread's slots: already inside (nested), or the first free slot.
        let id = self.id;
        let mut r = first;
        let mut free: Option<(&ThreadRec, usize)> = None;
        loop {
            for i in 0..SLOTS {
                let k = r.mirror[i].get();
                if k == id {
                    r.depth[i].set(r.depth[i].get() + 1);
                    return ReadToken::Counted;
                }
                if k == 0 && free.is_none() {
                    free = Some((r, i));
                }
            }
            let n = r.ext.get();
            if n.is_null() {
                break;
            }
            // SAFETY: records are never freed; the chain is the calling thread's.
            r = unsafe { &*n };
        }
        let (r, i) = match free {
            Some(f) => f,
            None => match Self::extend(r) {
                Some(nr) => (nr, 0),
                None => {
                    self.enter_untracked(stats);
                    return ReadToken::Counted;
                }
            },
        };
        self.enter_outermost(r, i, stats);
        r.mirror[i].set(id);
        r.depth[i].set(1);
        first.held.set(first.held.get() + 1);
        ReadToken::Counted
    }

    /// Chains a further record to the thread's last one (all slots taken).
    #[cold]
    fn extend(last: &ThreadRec) -> Option<&'static ThreadRec> {
        let nr = claim()?;
        last.ext.set(nr);
        Some(nr)
    }

    /// The outermost acquisition: R1, L, R2; or back off and wait for the writer to finish.
    #[inline(always)]
    fn enter_outermost(&self, r: &ThreadRec, i: usize, stats: &Counters) {
        loop {
            r.keys[i].store(self.id, Ordering::Release); // R1
            self.light(); // L
            if !self.writer_pending.load(Ordering::Acquire) {
                // R2 saw no writer: a writer that sets the flag now sees R1 after its barrier and waits
                // for us. Acquire: if R2 read the previous writer's clearing store, its section happens
                // before ours.
                return;
            }
            self.back_off(r, i, stats);
        }
    }

    /// A writer is pending: retract R1, wake the writer (it may have seen R1 and gone to sleep), and
    /// sleep until it is done.
    #[cold]
    fn back_off(&self, r: &ThreadRec, i: usize, stats: &Counters) {
        r.keys[i].store(0, Ordering::Release);
        Counters::bump(&stats.reader_waits);
        self.wake_writer();
        let mut g = sync::lock(&self.gate);
        // The writer clears the flag under `gate` before notifying: checked under `gate`, no lost wake-up.
        while self.writer_pending.load(Ordering::Acquire) {
            g = sync::wait(&self.readers_cv, g);
        }
    }

    /// Wakes the writer if it sleeps. Taking `gate` orders us after its check or before its next one.
    fn wake_writer(&self) {
        let _g = sync::lock(&self.gate);
        self.writer_cv.notify_one();
    }

    /// Leave the read side (fast path: the thread holds only this lock's read side, in slot 0).
    #[inline(always)]
    pub(crate) fn put(&self, stats: &Counters) {
        // SAFETY: records are never freed; a non-null one here is claimed by the calling thread.
        if let Some(r) = unsafe { local::get().as_ref() } {
            if r.held.get() == 1 && r.mirror[0].get() == self.id {
                let d = r.depth[0].get();
                if d > 1 {
                    r.depth[0].set(d - 1);
                } else {
                    r.depth[0].set(0);
                    r.mirror[0].set(0);
                    r.held.set(0);
                    self.leave_outermost(r, 0);
                }
                return;
            }
        }
        self.put_slow(stats);
    }

    #[cold]
    #[inline(never)]
    fn put_slow(&self, stats: &Counters) {
        let id = self.id;
        let first = local::get();
        let mut p = first;
        // SAFETY: records are never freed; the chain is the calling thread's.
        while let Some(r) = unsafe { p.as_ref() } {
            for i in 0..SLOTS {
                if r.mirror[i].get() == id {
                    let d = r.depth[i].get();
                    if d > 1 {
                        r.depth[i].set(d - 1);
                    } else {
                        r.depth[i].set(0);
                        r.mirror[i].set(0);
                        // SAFETY: `first` is non-null (we are walking its chain).
                        let f = unsafe { &*first };
                        f.held.set(f.held.get() - 1);
                        self.leave_outermost(r, i);
                    }
                    return;
                }
            }
            p = r.ext.get();
        }
        if self.is_writer(sync::thread_id()) || self.leave_untracked() {
            // The writer's own raw `put` (its `get` passed through), or an untracked read.
            return;
        }
        Counters::bump(&stats.put_without_get);
        warn(PUT_WITHOUT_GET_MSG);
    }

    /// D1, L, then wake a pending writer.
    #[inline(always)]
    fn leave_outermost(&self, r: &ThreadRec, i: usize) {
        #[cfg(loom)]
        let order = if self.mutated(AsymMutation::LeaveStoreRelaxed) {
            Ordering::Relaxed
        } else {
            Ordering::Release
        };
        #[cfg(not(loom))]
        let order = Ordering::Release;
        r.keys[i].store(0, order); // D1
        self.light(); // L
        if self.writer_pending.load(Ordering::Relaxed) {
            #[cfg(loom)]
            if self.mutated(AsymMutation::LeaveSkipsWake) {
                return;
            }
            self.wake_writer();
        }
    }

    /// An outermost read without a slot (no record could be had): the per-CPU lock's symmetric protocol
    /// on `untracked` (RMW + SeqCst fence; the writer's `H` starts with a SeqCst fence).
    #[cold]
    fn enter_untracked(&self, stats: &Counters) {
        Counters::bump(&stats.depth_overflows);
        warn(UNTRACKED_MSG);
        let _ = local::untracked().try_with(|u| u.set(u.get() + 1));
        loop {
            self.untracked.fetch_add(1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if !self.writer_pending.load(Ordering::Acquire) {
                return;
            }
            self.untracked.fetch_sub(1, Ordering::Release);
            Counters::bump(&stats.reader_waits);
            self.wake_writer();
            let mut g = sync::lock(&self.gate);
            while self.writer_pending.load(Ordering::Acquire) {
                g = sync::wait(&self.readers_cv, g);
            }
        }
    }

    /// Releases an untracked read of this thread, if it has one (attributed to this lock, as the per-CPU
    /// lock's overflow reads are).
    #[cold]
    fn leave_untracked(&self) -> bool {
        let had = local::untracked()
            .try_with(|u| {
                let n = u.get();
                if n > 0 {
                    u.set(n - 1);
                }
                n > 0
            })
            .unwrap_or(false);
        if had {
            self.untracked.fetch_sub(1, Ordering::Release);
            fence(Ordering::SeqCst);
            if self.writer_pending.load(Ordering::Relaxed) {
                self.wake_writer();
            }
        }
        had
    }

    /// Begin a write: serialise, announce, wait for readers to drain.
    pub(crate) fn begin(&self, me: u64, stats: &Counters) -> AsymWrite<'_> {
        self.acquire(sync::lock(&self.writers), me, stats)
    }

    /// Begin a write unless another writer is inside.
    pub(crate) fn try_begin(&self, me: u64, stats: &Counters) -> Option<AsymWrite<'_>> {
        Some(self.acquire(sync::try_lock(&self.writers)?, me, stats))
    }

    fn acquire<'a>(
        &'a self,
        writers: MutexGuard<'a, ()>,
        me: u64,
        stats: &Counters,
    ) -> AsymWrite<'a> {
        self.active_writer.store(me, Ordering::Relaxed);
        self.writer_pending.store(true, Ordering::Relaxed); // W1
        self.heavy(); // H
        if self.readers_inside() {
            // W2 saw a reader: sleep under `gate` until the last one leaves (each re-check is after H).
            Counters::bump(&stats.writer_waits);
            let timer = WaitTimer::start();
            let mut g = sync::lock(&self.gate);
            while self.readers_inside() {
                g = sync::wait(&self.writer_cv, g);
            }
            drop(g);
            timer.finish(&stats.writer_wait_ns);
        }
        Counters::bump(&stats.writes);
        AsymWrite { writers }
    }

    /// W2: is any thread inside this lock's read side? (Acquire: synchronises with the readers' Release
    /// key stores.) Walks every record: O(threads that ever read, live or recycled).
    fn readers_inside(&self) -> bool {
        if self.untracked.load(Ordering::Acquire) != 0 {
            return true;
        }
        let mut p = REGISTRY.head.load(Ordering::Acquire).cast_const();
        // SAFETY: records are never freed; the list is push-only.
        while let Some(r) = unsafe { p.as_ref() } {
            for k in &r.keys {
                if k.load(Ordering::Acquire) == self.id {
                    return true;
                }
            }
            p = r.next();
        }
        false
    }

    /// End a write: clear the flag under `gate`, wake every blocked reader, let the next writer in.
    pub(crate) fn done(&self, w: AsymWrite<'_>) {
        self.active_writer.store(0, Ordering::Relaxed);
        {
            let _g = sync::lock(&self.gate);
            self.writer_pending.store(false, Ordering::Release);
            self.readers_cv.notify_all();
        }
        drop(w.writers);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::{LockKind, OnlineMems};
    use std::sync::Arc;

    /// Nested reads, reads of more locks than a record has slots (a chain), the writer's own reads, and
    /// threads that exit and give their records back; run under Miri too (`cargo xtask test` miri
    /// stage), which checks the record pointers and the pthread-key destructor.
    #[test]
    fn records_claim_chain_release() {
        let locks: Vec<Arc<OnlineMems>> = (0..super::SLOTS + 2)
            .map(|_| Arc::new(OnlineMems::new(LockKind::Asymmetric)))
            .collect();
        {
            let outer: Vec<_> = locks.iter().map(|l| l.read()).collect();
            let inner: Vec<_> = locks.iter().map(|l| l.read()).collect();
            assert!(inner.iter().all(|g| !g.is_writer_passthrough()));
            drop(inner);
            drop(outer);
        }
        {
            let w = locks[0].write();
            let r = locks[0].read();
            assert!(r.is_writer_passthrough());
            locks[0].get();
            locks[0].put();
            drop(r);
            drop(w);
        }
        for _ in 0..3 {
            let l = locks[1].clone();
            std::thread::spawn(move || {
                let _a = l.read();
                let _b = l.read();
            })
            .join()
            .unwrap();
        }
        drop(locks[1].write());
        for l in &locks {
            let st = l.stats();
            assert_eq!((st.put_without_get, st.depth_overflows), (0, 0));
            assert_eq!(st.writer_waits, 0);
        }
        let (made, claimed) = super::thread_records();
        assert!(made >= 1 && claimed <= made);
    }
}
