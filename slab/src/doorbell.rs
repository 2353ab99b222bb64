//! The purge doorbell's protocol: a part (or the large tier) notes a purge deadline and rings;
//! the background purger announces that it goes to sleep, looks for work once more, and sleeps on
//! a futex word. Owns the protocol only (generic over the word, so that a loom model runs the same
//! code as the process-wide `mem::PURGE_BELL`); what is due and who purges is sweep.rs's,
//! large.rs's and background.rs's.
//!
//! # The Dekker pair
//!
//! Noter: `N1: due = min(due, at)` (the deadline becomes visible); `F: fence(SeqCst)`;
//! `N2: load bell` — if it reads 1 (the purger sleeps or is about to), swap it to 0 and wake.
//! Purger: `P1: bell = 1 (SeqCst)`; `F: fence(SeqCst)`; `P2: load due` — if something is due,
//! take the bell back and go purge; else sleep while the bell reads 1.
//!
//! The two fences are in the single total order: if the noter's comes first, `P2` sees `N1` (the
//! purger does not sleep); if the purger's does, `N2` sees `P1` (the noter rings, and the futex
//! wait, which re-reads the word atomically with the sleep, returns or is woken). Never neither, so
//! the purger never sleeps without a deadline while one is noted.
//!
//! The purger's fence was missing before session 4: `P1` was a SeqCst store and `P2` a Relaxed
//! load, which the C++ model (and an AArch64 `stlr` followed by `ldr`) lets pass each other, so
//! both sides could miss. x86's `xchg` for the store hid it. `slab/tests/loom_doorbell.rs` finds
//! the lost wake-up with either fence dropped ([`BellMutation`]).

use std::sync::atomic::Ordering;

/// A 32-bit word a thread can sleep on, as the doorbell needs it.
pub(crate) trait BellWord: Sync {
    fn load(&self, o: Ordering) -> u32;
    fn store(&self, v: u32, o: Ordering);
    fn swap(&self, v: u32, o: Ordering) -> u32;
    /// A SeqCst fence of the word's memory model (std's, or loom's).
    fn fence(&self);
    /// Sleeps while the word reads `expected`, at most `ms` (`u64::MAX`: until woken). May return
    /// early (a signal, a timeout); the check and the sleep are atomic with respect to [`wake`].
    ///
    /// [`wake`]: BellWord::wake
    fn wait(&self, expected: u32, ms: u64);
    /// Wakes one sleeper.
    fn wake(&self);
}

/// The process-wide bell word: a Linux futex. Its wake preserves `errno` (rung from any context).
impl BellWord for std::sync::atomic::AtomicU32 {
    #[inline]
    fn load(&self, o: Ordering) -> u32 {
        std::sync::atomic::AtomicU32::load(self, o)
    }
    #[inline]
    fn store(&self, v: u32, o: Ordering) {
        std::sync::atomic::AtomicU32::store(self, v, o)
    }
    #[inline]
    fn swap(&self, v: u32, o: Ordering) -> u32 {
        std::sync::atomic::AtomicU32::swap(self, v, o)
    }
    #[inline]
    fn fence(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
    }
    fn wait(&self, expected: u32, ms: u64) {
        futex::wait(self, expected, ms);
    }
    fn wake(&self) {
        let _e = crate::mem::KeepErrno::new();
        futex::wake(self);
    }
}

#[cfg(target_os = "linux")]
mod futex {
    use std::sync::atomic::AtomicU32;

    /// FUTEX_WAIT on `word` expecting `val`, for `ms` milliseconds (`u64::MAX`: no timeout).
    /// EAGAIN (value changed), EINTR and ETIMEDOUT simply return; the caller re-checks.
    pub(super) fn wait(word: &AtomicU32, val: u32, ms: u64) {
        // SAFETY: an all-zero timespec is valid; the fields are set below (their types differ
        // between C libraries, hence the inferred casts).
        let mut ts: libc::timespec = unsafe { core::mem::zeroed() };
        ts.tv_sec = (ms / 1000).min(i32::MAX as u64) as _;
        ts.tv_nsec = ((ms % 1000) * 1_000_000) as _;
        let tp = if ms == u64::MAX {
            core::ptr::null()
        } else {
            &ts as *const libc::timespec
        };
        // SAFETY: FUTEX_WAIT reads the live 4-byte word; `tp` is null or a valid relative timeout.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                val,
                tp,
            );
        }
    }

    pub(super) fn wake(word: &AtomicU32) {
        // SAFETY: FUTEX_WAKE does not access memory beyond using the word's address as a key.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1i32,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod futex {
    use std::sync::atomic::{AtomicU32, Ordering};

    pub(super) fn wait(word: &AtomicU32, val: u32, _ms: u64) {
        if word.load(Ordering::Relaxed) == val {
            std::thread::yield_now();
        }
    }

    pub(super) fn wake(_word: &AtomicU32) {}
}

/// A deliberate break of the doorbell protocol, for the loom model's mutation checks.
#[cfg(loom)]
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BellMutation {
    /// The protocol as written.
    None,
    /// The noter does not fence between noting the deadline and reading the bell.
    RingerSkipsFence,
    /// The purger does not fence between setting the bell and looking for work (the code before
    /// session 4).
    SleeperSkipsFence,
}

/// The doorbell over a word `W`.
pub(crate) struct Doorbell<W> {
    /// 1 while the purger sleeps (or is about to) with nothing pending, else 0.
    word: W,
    #[cfg(loom)]
    mutation: std::sync::atomic::AtomicU8,
}

impl<W: BellWord> Doorbell<W> {
    pub(crate) const fn new(word: W) -> Self {
        Doorbell {
            word,
            #[cfg(loom)]
            mutation: std::sync::atomic::AtomicU8::new(BellMutation::None as u8),
        }
    }

    #[cfg(loom)]
    pub(crate) fn set_mutation(&self, m: BellMutation) {
        self.mutation.store(m as u8, Ordering::Relaxed);
    }

    #[cfg(loom)]
    fn mutated(&self, m: BellMutation) -> bool {
        self.mutation.load(Ordering::Relaxed) == m as u8
    }

    /// The noter's half, after its deadline is visible (`N1`): `F`, `N2`. One relaxed load when the
    /// purger is awake.
    #[inline]
    pub(crate) fn ring(&self) {
        #[cfg(loom)]
        let skip = self.mutated(BellMutation::RingerSkipsFence);
        #[cfg(not(loom))]
        let skip = false;
        if !skip {
            self.word.fence();
        }
        if self.word.load(Ordering::Relaxed) != 0 {
            self.ring_slow();
        }
    }

    #[cold]
    fn ring_slow(&self) {
        if self.word.swap(0, Ordering::SeqCst) != 0 {
            self.word.wake();
        }
    }

    /// The purger's sleep until something is noted, at most `ms` (`u64::MAX`: until rung): `P1`,
    /// `F`, `P2` (`quiet()` reads the deadlines), then the futex wait. True if the whole time
    /// passed with nothing new.
    pub(crate) fn nap(&self, ms: u64, quiet: impl Fn() -> bool) -> bool {
        self.word.store(1, Ordering::SeqCst); // P1
        #[cfg(loom)]
        let skip = self.mutated(BellMutation::SleeperSkipsFence);
        #[cfg(not(loom))]
        let skip = false;
        if !skip {
            self.word.fence(); // F: a SeqCst store does not order a later Relaxed load
        }
        if !quiet() {
            // P2 saw work: take the announcement back.
            self.word.store(0, Ordering::Relaxed);
            return false;
        }
        self.word.wait(1, ms);
        // A ring cleared the word; a timeout left it set.
        self.word.swap(0, Ordering::Relaxed) == 1 && quiet()
    }

    /// A timed sleep that a ring does not cut short (the word reads 0 while the purger is awake).
    pub(crate) fn sleep(&self, ms: u64) {
        self.word.wait(0, ms);
    }

    /// Forget a sleeper (a fork child has none).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn reset(&self) {
        self.word.store(0, Ordering::Relaxed);
    }
}

/// A deadline word: `u64::MAX` for none, else the earliest noted time (ms).
pub(crate) trait DueWord {
    fn due(&self) -> u64;
    fn lower_to(&self, at: u64);
}

impl DueWord for std::sync::atomic::AtomicU64 {
    #[inline]
    fn due(&self) -> u64 {
        self.load(Ordering::Relaxed)
    }
    #[inline]
    fn lower_to(&self, at: u64) {
        self.fetch_min(at, Ordering::Relaxed);
    }
}

/// `N1` then the ring, on the transition from nothing pending only (callers ring per transition,
/// not per operation): notes `at` in `due`.
#[inline]
pub(crate) fn note_deadline<D: DueWord>(due: &D, at: u64, ring: impl FnOnce()) {
    let was = due.due();
    if at < was {
        due.lower_to(at);
        if was == u64::MAX {
            ring();
        }
    }
}

/// The loom stand-ins (loom builds only): a futex word over a loom atomic, mutex and condvar, and
/// a deadline word, for `slab/tests/loom_doorbell.rs`.
#[cfg(loom)]
pub mod loom_model {
    use super::{note_deadline, BellMutation, BellWord, Doorbell, DueWord};
    use loom::sync::atomic::{AtomicU32, AtomicU64};
    use loom::sync::{Condvar, Mutex};
    use std::sync::atomic::Ordering;

    /// A futex: the value check and the sleep happen under `lock`, and a wake takes `lock` after the
    /// waker changed the word, as the kernel's hash-bucket lock orders them, so a wait that saw the
    /// old value is asleep (and woken) by the time the wake runs. A timed wait returns at once: a
    /// timeout may fire at any time, and only a wait without one can be lost.
    pub struct LoomFutex {
        word: AtomicU32,
        lock: Mutex<()>,
        cv: Condvar,
    }

    impl LoomFutex {
        fn new() -> Self {
            LoomFutex {
                word: AtomicU32::new(0),
                lock: Mutex::new(()),
                cv: Condvar::new(),
            }
        }
    }

    impl BellWord for LoomFutex {
        fn load(&self, o: Ordering) -> u32 {
            self.word.load(o)
        }
        fn store(&self, v: u32, o: Ordering) {
            self.word.store(v, o)
        }
        fn swap(&self, v: u32, o: Ordering) -> u32 {
            self.word.swap(v, o)
        }
        fn fence(&self) {
            loom::sync::atomic::fence(Ordering::SeqCst);
        }
        fn wait(&self, expected: u32, ms: u64) {
            let g = self.lock.lock().unwrap();
            if self.word.load(Ordering::Relaxed) == expected && ms == u64::MAX {
                drop(self.cv.wait(g).unwrap());
            }
        }
        fn wake(&self) {
            let _g = self.lock.lock().unwrap();
            self.cv.notify_one();
        }
    }

    impl DueWord for AtomicU64 {
        fn due(&self) -> u64 {
            self.load(Ordering::Relaxed)
        }
        fn lower_to(&self, at: u64) {
            self.fetch_min(at, Ordering::Relaxed);
        }
    }

    /// One deadline word and one doorbell, driven by the real protocol code.
    pub struct PurgeModel {
        due: AtomicU64,
        bell: Doorbell<LoomFutex>,
    }

    impl PurgeModel {
        /// Nothing due, nobody asleep; `m` breaks one step.
        pub fn new(m: BellMutation) -> Self {
            let bell = Doorbell::new(LoomFutex::new());
            bell.set_mutation(m);
            PurgeModel {
                due: AtomicU64::new(u64::MAX),
                bell,
            }
        }

        /// A part notes a deadline (`Sweep::note`: lower it, ring on the transition from none).
        pub fn note(&self, at: u64) {
            note_deadline(&self.due, at, || self.bell.ring());
        }

        /// The purger takes every noted deadline (a sweep); `u64::MAX` if none was noted.
        pub fn take_due(&self) -> u64 {
            self.due.swap(u64::MAX, Ordering::Relaxed)
        }

        /// Nothing is noted (what the purger's `quiet` check reads).
        pub fn nothing_due(&self) -> bool {
            self.due.due() == u64::MAX
        }

        /// The purger's sleep with nothing pending (`background::nap`).
        pub fn nap(&self, ms: u64) -> bool {
            self.bell.nap(ms, || self.due.due() == u64::MAX)
        }
    }
}
