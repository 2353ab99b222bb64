//! Allocator-generic workloads (`A: GlobalAlloc`): alloc+free pairs, a mixed-size stream, batch
//! alloc/free, producer/consumer cross-thread free, larson-like churn and cache-scratch. The
//! criterion benches and the callgrind bin time these; nothing here measures or asserts timing.

use core::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::Rng;

/// Sizes of the alloc+free pair benches.
pub const PAIR_SIZES: [usize; 10] = [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];
/// The hot 16-256 B pair cycles through these sizes (one pair per size, in turn).
pub const HOT_SIZES: [usize; 16] = [
    16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 256,
];
/// Alignment used for every workload object.
pub const ALIGN: usize = 8;

/// The layout of a workload object of `size` bytes (`size` > 0).
#[inline(always)]
pub fn layout(size: usize) -> Layout {
    match Layout::from_size_align(size.max(1), ALIGN) {
        Ok(l) => l,
        Err(_) => Layout::new::<u64>(),
    }
}

/// Allocates with `a`; null for a zero-size layout or failure.
#[inline(always)]
pub fn alloc<A: GlobalAlloc>(a: &A, l: Layout) -> *mut u8 {
    if l.size() == 0 {
        return core::ptr::null_mut();
    }
    // SAFETY: the layout has a non-zero size, which is GlobalAlloc::alloc's only requirement.
    unsafe { a.alloc(l) }
}

/// Frees `p` (from [`alloc`] with the same allocator and layout; null is ignored).
///
/// # Safety
/// `p` is null or was returned by `alloc(a, l)` and not freed since.
#[inline(always)]
pub unsafe fn free<A: GlobalAlloc>(a: &A, p: *mut u8, l: Layout) {
    if !p.is_null() {
        // SAFETY: the caller guarantees p came from a.alloc(l) and is live.
        unsafe { a.dealloc(p, l) }
    }
}

/// One alloc+free pair that touches the object; false when the allocator returned null.
/// `black_box` keeps the compiler from pairing away malloc/free.
#[inline(always)]
pub fn pair<A: GlobalAlloc>(a: &A, l: Layout) -> bool {
    let p = alloc(a, l);
    if p.is_null() {
        return false;
    }
    // SAFETY: p is valid for l.size() >= 1 bytes.
    unsafe { p.write(1) };
    let p = black_box(p);
    // SAFETY: p came from alloc(a, l) just above.
    unsafe { free(a, p, l) };
    true
}

/// `n` hot pairs, cycling through [`HOT_SIZES`] starting at index `start`; returns the pairs that
/// succeeded.
#[inline(never)]
pub fn hot_pairs<A: GlobalAlloc>(a: &A, start: usize, n: u64) -> u64 {
    let mut ok = 0;
    let mut i = start;
    for _ in 0..n {
        ok += pair(a, layout(HOT_SIZES[i & (HOT_SIZES.len() - 1)])) as u64;
        i = i.wrapping_add(1);
    }
    ok
}

/// A size drawn from a small-object-heavy distribution over 8..=4096 bytes: 75 % up to 128 B,
/// 20 % up to 1 KiB, 5 % up to 4 KiB.
pub fn mixed_size(r: &mut Rng) -> usize {
    match r.below(100) {
        0..=74 => r.range(8, 128),
        75..=94 => r.range(129, 1024),
        _ => r.range(1025, 4096),
    }
}

/// A stream of mixed sizes over a ring of live objects: each step frees the oldest object and
/// allocates a new one of the next size.
pub struct MixedStream {
    live: Vec<(*mut u8, Layout)>,
    sizes: Vec<Layout>,
    pos: usize,
}

impl MixedStream {
    /// `live` objects kept alive, sizes from a table of `table` entries.
    pub fn new(live: usize, table: usize, seed: u64) -> MixedStream {
        let mut r = Rng::new(seed);
        MixedStream {
            live: vec![(core::ptr::null_mut(), layout(8)); live.max(1)],
            sizes: (0..table.max(1))
                .map(|_| layout(mixed_size(&mut r)))
                .collect(),
            pos: 0,
        }
    }

    /// One step; false if the allocator failed.
    #[inline(always)]
    pub fn step<A: GlobalAlloc>(&mut self, a: &A) -> bool {
        let slot = self.pos % self.live.len();
        let l = self.sizes[self.pos % self.sizes.len()];
        self.pos = self.pos.wrapping_add(1);
        let (old, ol) = self.live[slot];
        // SAFETY: every non-null entry of `live` came from alloc(a, ol) on this allocator (the
        // stream is drained before it is used with another one).
        unsafe { free(a, old, ol) };
        let p = alloc(a, l);
        if !p.is_null() {
            // SAFETY: p is valid for at least one byte.
            unsafe { p.write(self.pos as u8) };
        }
        self.live[slot] = (p, l);
        !p.is_null()
    }

    /// Frees every live object (call before using the stream with another allocator).
    pub fn drain<A: GlobalAlloc>(&mut self, a: &A) {
        for e in &mut self.live {
            // SAFETY: as in step().
            unsafe { free(a, e.0, e.1) };
            e.0 = core::ptr::null_mut();
        }
    }
}

/// Free order of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Reverse allocation order.
    Lifo,
    /// A fixed random permutation.
    Random,
}

/// Batch alloc then batch free: `ptrs.len()` objects of `l`, freed LIFO or in the order given by
/// `perm` (a permutation of `0..ptrs.len()`). Returns false if any allocation failed.
pub fn batch<A: GlobalAlloc>(
    a: &A,
    l: Layout,
    ptrs: &mut [*mut u8],
    order: Order,
    perm: &[u32],
) -> bool {
    let mut ok = true;
    for p in ptrs.iter_mut() {
        *p = alloc(a, l);
        if p.is_null() {
            ok = false;
        } else {
            // SAFETY: valid for at least one byte.
            unsafe { p.write(7) };
        }
    }
    black_box(&mut *ptrs);
    match order {
        Order::Lifo => {
            for p in ptrs.iter().rev() {
                // SAFETY: each entry is null or live from alloc(a, l) above, freed once.
                unsafe { free(a, *p, l) };
            }
        }
        Order::Random => {
            debug_assert_eq!(perm.len(), ptrs.len());
            for &i in perm {
                // SAFETY: perm is a permutation, so each entry is freed exactly once.
                unsafe { free(a, ptrs[i as usize], l) };
            }
        }
    }
    ok
}

/// Pads a value to its own pair of cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

/// Bounded single-producer single-consumer ring of object addresses.
struct Ring {
    slots: Box<[AtomicUsize]>,
    head: Padded<AtomicUsize>,
    tail: Padded<AtomicUsize>,
}

impl Ring {
    fn new(cap: usize) -> Ring {
        Ring {
            slots: (0..cap.next_power_of_two())
                .map(|_| AtomicUsize::new(0))
                .collect(),
            head: Padded::default(),
            tail: Padded::default(),
        }
    }

    fn push(&self, v: usize) {
        let mask = self.slots.len() - 1;
        let t = self.tail.0.load(Ordering::Relaxed);
        while t - self.head.0.load(Ordering::Acquire) > mask {
            core::hint::spin_loop();
            std::thread::yield_now();
        }
        self.slots[t & mask].store(v, Ordering::Relaxed);
        self.tail.0.store(t + 1, Ordering::Release);
    }

    fn pop(&self) -> usize {
        let mask = self.slots.len() - 1;
        let h = self.head.0.load(Ordering::Relaxed);
        while self.tail.0.load(Ordering::Acquire) == h {
            core::hint::spin_loop();
            std::thread::yield_now();
        }
        let v = self.slots[h & mask].load(Ordering::Relaxed);
        self.head.0.store(h + 1, Ordering::Release);
        v
    }
}

/// Writes the object's size into its first word (objects are at least 8 bytes, 8-aligned).
#[inline(always)]
fn stamp(p: *mut u8, size: usize) {
    // SAFETY: p is a live object of `size` >= 8 bytes with 8-byte alignment.
    unsafe { (p as *mut usize).write(size) }
}

/// Reads the size stamped by [`stamp`].
#[inline(always)]
fn stamped(p: *mut u8) -> usize {
    // SAFETY: p is a live object whose first word was written by stamp().
    unsafe { (p as *const usize).read() }
}

/// Producer/consumer cross-thread free: the calling thread allocates `n` objects (size `size`,
/// or random 16-256 B when `size` is 0) and hands them through a ring to a second thread that
/// frees them. Returns the wall time from the first allocation until the last free.
pub fn producer_consumer<A: GlobalAlloc + Sync>(a: &A, n: u64, size: usize, seed: u64) -> Duration {
    let ring = Ring::new(1024);
    let start_line = Barrier::new(2);
    std::thread::scope(|s| {
        let consumer = s.spawn(|| {
            start_line.wait();
            for _ in 0..n {
                let p = ring.pop() as *mut u8;
                if !p.is_null() {
                    let sz = stamped(p);
                    // SAFETY: p was allocated by the producer with layout(sz) and handed over once.
                    unsafe { free(a, p, layout(sz)) };
                }
            }
        });
        let mut r = Rng::new(seed);
        start_line.wait();
        let t0 = Instant::now();
        for _ in 0..n {
            let sz = if size == 0 {
                r.range(16, 256)
            } else {
                size.max(8)
            };
            let p = alloc(a, layout(sz));
            if !p.is_null() {
                stamp(p, sz);
            }
            ring.push(p as usize);
        }
        let _ = consumer.join();
        t0.elapsed()
    })
}

/// Larson-like server churn: `threads` threads (the caller is one of them) each do `ops /
/// threads` replacements of a random slot of a shared pool of `pool` objects with a new object
/// of random size (16-256 B); the replaced object, usually allocated by another thread, is freed.
/// Returns the wall time of the churn (the pool is filled before and emptied after, untimed).
pub fn larson<A: GlobalAlloc + Sync>(
    a: &A,
    threads: usize,
    pool: usize,
    ops: u64,
    seed: u64,
) -> Duration {
    let threads = threads.max(1);
    let slots: Vec<AtomicUsize> = (0..pool.max(1)).map(|_| AtomicUsize::new(0)).collect();
    let mut r = Rng::new(seed);
    for s in &slots {
        let sz = r.range(16, 256);
        let p = alloc(a, layout(sz));
        if !p.is_null() {
            stamp(p, sz);
        }
        s.store(p as usize, Ordering::Relaxed);
    }
    let per = ops / threads as u64;
    let start_line = Barrier::new(threads);
    let work = |tid: usize| {
        let mut r = Rng::new(seed ^ (tid as u64 + 1).wrapping_mul(0x9E37_79B9));
        start_line.wait();
        for _ in 0..per {
            let sz = r.range(16, 256);
            let p = alloc(a, layout(sz));
            if !p.is_null() {
                stamp(p, sz);
            }
            let old = slots[r.below(slots.len())].swap(p as usize, Ordering::AcqRel) as *mut u8;
            if !old.is_null() {
                // SAFETY: the swap removed `old` from the pool, so this thread owns it; it was
                // allocated with layout(stamped size) by some thread of this run.
                unsafe { free(a, old, layout(stamped(old))) };
            }
        }
    };
    let elapsed = std::thread::scope(|s| {
        let others: Vec<_> = (1..threads).map(|t| s.spawn(move || work(t))).collect();
        let t0 = Instant::now();
        work(0);
        for h in others {
            let _ = h.join();
        }
        t0.elapsed()
    });
    for s in &slots {
        let p = s.swap(0, Ordering::Relaxed) as *mut u8;
        if !p.is_null() {
            // SAFETY: taken out of the pool; allocated with layout(stamped size).
            unsafe { free(a, p, layout(stamped(p))) };
        }
    }
    elapsed
}

/// Cache-scratch (Hoard's false-sharing test): the calling thread allocates one small object per
/// worker and hands it over; each worker frees it, then `ops / threads` times allocates a small
/// object, writes it `writes` times and frees it. An allocator that gives threads objects on a
/// shared cache line makes the writes slow. Returns the wall time of the workers.
pub fn cache_scratch<A: GlobalAlloc + Sync>(
    a: &A,
    threads: usize,
    ops: u64,
    writes: usize,
    size: usize,
) -> Duration {
    let threads = threads.max(1);
    let l = layout(size.max(1));
    let handed: Vec<usize> = (0..threads).map(|_| alloc(a, l) as usize).collect();
    let per = ops / threads as u64;
    let start_line = Barrier::new(threads);
    let work = |first: usize| {
        start_line.wait();
        // SAFETY: `first` was allocated by the main thread with l and handed to this worker only.
        unsafe { free(a, first as *mut u8, l) };
        for _ in 0..per {
            let p = alloc(a, l);
            if p.is_null() {
                break;
            }
            for w in 0..writes {
                // SAFETY: p is valid for l.size() >= 1 bytes; volatile so the writes happen.
                unsafe { p.write_volatile(w as u8) };
            }
            // SAFETY: allocated just above with l.
            unsafe { free(a, p, l) };
        }
    };
    std::thread::scope(|s| {
        let others: Vec<_> = handed[1..]
            .iter()
            .map(|&h| s.spawn(move || work(h)))
            .collect();
        let t0 = Instant::now();
        work(handed[0]);
        for h in others {
            let _ = h.join();
        }
        t0.elapsed()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;
    use std::sync::atomic::AtomicI64;

    /// An allocator that counts live objects on top of System.
    struct Counting(AtomicI64);
    // SAFETY: forwards to System with the same layout; only adds a counter.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            self.0.fetch_add(1, Ordering::Relaxed);
            // SAFETY: same contract as ours.
            unsafe { System.alloc(l) }
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            self.0.fetch_sub(1, Ordering::Relaxed);
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(p, l) }
        }
    }

    #[test]
    fn workloads_free_everything_they_allocate() {
        let c = Counting(AtomicI64::new(0));
        assert_eq!(hot_pairs(&c, 3, 1000), 1000);
        let mut m = MixedStream::new(64, 256, 1);
        for _ in 0..1000 {
            assert!(m.step(&c));
        }
        assert_eq!(c.0.load(Ordering::Relaxed), 64);
        m.drain(&c);
        let mut ptrs = vec![core::ptr::null_mut(); 1000];
        let mut perm: Vec<u32> = (0..1000).collect();
        Rng::new(5).shuffle(&mut perm);
        assert!(batch(&c, layout(64), &mut ptrs, Order::Lifo, &perm));
        assert!(batch(&c, layout(64), &mut ptrs, Order::Random, &perm));
        producer_consumer(&c, 5000, 0, 2);
        producer_consumer(&c, 5000, 64, 2);
        larson(&c, 2, 100, 5000, 3);
        cache_scratch(&c, 2, 1000, 10, 8);
        assert_eq!(
            c.0.load(Ordering::Relaxed),
            0,
            "every workload frees all it allocates"
        );
    }

    #[test]
    fn mixed_sizes_cover_the_range() {
        let mut r = Rng::new(9);
        let v: Vec<usize> = (0..10_000).map(|_| mixed_size(&mut r)).collect();
        assert!(v.iter().all(|&s| (8..=4096).contains(&s)));
        assert!(v.iter().filter(|&&s| s <= 128).count() > 7000);
        assert!(v.iter().any(|&s| s > 1024));
    }
}
