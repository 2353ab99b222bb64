//! Per-thread heaps under thread churn, with hotslab as this test binary's global allocator:
//! 10,000 concurrent threads each get a heap (no thread-count limit), heaps of exited threads
//! are recycled, and memory does not grow across 100 rounds of thread replacement with
//! cross-thread frees (abandoned slabs are adopted, not leaked).

use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};

use hotslab::SlabAlloc;

#[global_allocator]
static A: SlabAlloc = SlabAlloc::new();

/// The tests count heaps process-wide: they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A block and the seed its contents were made from.
type Seeded = (usize, Vec<u64>);

/// Fills a fresh vector with a pattern derived from `seed` and checks it back later.
fn block(seed: usize, len: usize) -> Vec<u64> {
    (0..len).map(|i| (seed * 7919 + i) as u64).collect()
}

fn check(v: &[u64], seed: usize) {
    for (i, x) in v.iter().enumerate() {
        assert_eq!(
            *x,
            (seed * 7919 + i) as u64,
            "block {seed} corrupted at {i}"
        );
    }
}

#[test]
#[cfg_attr(miri, ignore)] // 10,000 OS threads
fn ten_thousand_concurrent_threads_each_get_a_heap() {
    const THREADS: usize = 10_000;
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let before = hotslab::heaps_in_use();
    let all_alive = Arc::new(Barrier::new(THREADS + 1));
    let release = Arc::new(Barrier::new(THREADS + 1));
    let mut handles = Vec::with_capacity(THREADS);
    for t in 0..THREADS {
        let (a, r) = (all_alive.clone(), release.clone());
        let h = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                // Small objects of two classes, from this thread's own heap.
                let v = block(t, 6);
                let s = format!("thread {t}");
                a.wait();
                r.wait();
                check(&v, t);
                assert_eq!(s, format!("thread {t}"));
            })
            .expect("spawn");
        handles.push(h);
    }
    all_alive.wait();
    let live = hotslab::heaps_in_use();
    assert!(
        live >= THREADS,
        "every live thread has its own heap: {live} heaps for {THREADS} threads"
    );
    release.wait();
    for h in handles {
        h.join().unwrap();
    }
    // Exited threads give their heaps back for reuse.
    let after = hotslab::heaps_in_use();
    assert!(
        after < before + 64,
        "heaps of exited threads are recycled: {after} still in use (started with {before})"
    );
}

#[test]
#[cfg_attr(miri, ignore)]
fn memory_does_not_grow_across_thread_replacement_with_cross_thread_frees() {
    const ROUNDS: usize = 100;
    const THREADS: usize = 4;
    const PER_THREAD: usize = 2_000;
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let domain = hotslab::default_domain().expect("default domain");
    // Blocks made by one round's threads and freed by the next round's (cross-thread frees into
    // slabs whose heap has exited).
    let handoff: Arc<Mutex<Vec<Seeded>>> = Arc::new(Mutex::new(Vec::new()));
    let mut committed = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let (tx, rx) = mpsc::channel();
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let handoff = handoff.clone();
                let tx = tx.clone();
                std::thread::spawn(move || {
                    // Free what the previous round left: remote frees into abandoned slabs.
                    let inherited: Vec<Seeded> = {
                        let mut g = handoff.lock().unwrap();
                        let n = g.len() / THREADS + 1;
                        let at = g.len().saturating_sub(n);
                        g.split_off(at)
                    };
                    for (seed, v) in &inherited {
                        check(v, *seed);
                    }
                    drop(inherited);
                    let mut mine = Vec::with_capacity(PER_THREAD);
                    for i in 0..PER_THREAD {
                        let seed = round * 1_000_000 + t * 10_000 + i;
                        mine.push((seed, block(seed, 1 + i % 24)));
                    }
                    // Half stays for the next round's threads; half is freed here.
                    let keep: Vec<_> = mine.drain(..PER_THREAD / 2).collect();
                    for (seed, v) in &mine {
                        check(v, *seed);
                    }
                    drop(mine);
                    handoff.lock().unwrap().extend(keep);
                    tx.send(()).unwrap();
                })
            })
            .collect();
        drop(tx);
        for _ in rx {}
        for h in hs {
            h.join().unwrap();
        }
        committed.push(domain.committed_bytes());
    }
    let live = handoff.lock().unwrap().len();
    assert!(
        live <= THREADS * PER_THREAD,
        "hand-off stays bounded: {live}"
    );
    let warm = *committed[10..20].iter().max().unwrap();
    let last = *committed[90..].iter().max().unwrap();
    assert!(
        last <= warm + warm / 4 + (2 << 20),
        "committed slab memory grew across thread replacement: rounds 10-20 peak {warm} B, rounds 90-100 peak {last} B"
    );
    assert!(
        hotslab::heaps_in_use() < 64,
        "heaps of exited threads are recycled: {} in use",
        hotslab::heaps_in_use()
    );
}
