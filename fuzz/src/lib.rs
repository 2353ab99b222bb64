//! Shared helpers of the hotslab fuzz targets: a byte reader that never fails (an exhausted input
//! reads as zeros) and the fault tally printed at exit. It owns no allocator logic; the targets in
//! `fuzz_targets/` drive the public API of `hotslab` and compare it with models.

use std::sync::atomic::{AtomicU64, Ordering};

/// Reads the fuzzer's bytes as small numbers; past the end every read is 0.
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// The next two bytes, little endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        self.u16() as usize % n
    }
}

/// Faults injected and faults after which every check passed (a fault that breaks a check ends
/// the run with a crash, so at exit the two are equal).
pub struct Tally {
    name: &'static str,
    pub injected: AtomicU64,
    pub survived: AtomicU64,
}

impl Tally {
    /// A tally printed as `<name>: faults injected N, survived M`.
    pub const fn new(name: &'static str) -> Self {
        Tally {
            name,
            injected: AtomicU64::new(0),
            survived: AtomicU64::new(0),
        }
    }

    /// One fault was injected (and its result checked by the caller afterwards).
    pub fn injected(&self) {
        self.injected.fetch_add(1, Ordering::Relaxed);
    }

    /// Every fault injected so far passed its checks.
    pub fn all_survived(&self) {
        self.survived
            .store(self.injected.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The line printed at exit.
    pub fn line(&self) -> String {
        format!(
            "{}: faults injected {}, survived {}\n",
            self.name,
            self.injected.load(Ordering::Relaxed),
            self.survived.load(Ordering::Relaxed)
        )
    }
}

/// Registers `f` to run at process exit (libFuzzer leaves through `exit()` at
/// `-max_total_time`), once.
pub fn at_exit(f: extern "C" fn()) {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        // SAFETY: `f` is a plain function that does not unwind.
        unsafe { libc::atexit(f) };
    });
}
