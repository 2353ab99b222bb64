//! fork() from a multi-threaded process whose global allocator is hotslab: worker threads keep
//! allocating and freeing (small, large, cross-thread) while the test forks again and again; each
//! child must find a working allocator (allocate, free, spawn a thread, exit 0) and must see the
//! vanished threads' slots and thread caches reset by the fork handlers.
#![cfg(not(any(miri, loom)))]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use hotslab::CacheConfig;

/// The tests fork: they must not run at the same time (each would see the other's threads).
static SERIAL: Mutex<()> = Mutex::new(());

#[global_allocator]
static A: hotslab::SlabAlloc = hotslab::SlabAlloc::new();

const WORKERS: usize = 4;
const FORKS: usize = 24;

/// A worker: a ring of live blocks of mixed sizes (some large), replaced round-robin, some sent
/// to the next worker to be freed there. Counts rounds so the test knows it is running.
fn worker(
    id: usize,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    tx: mpsc::Sender<Vec<u64>>,
    rx: mpsc::Receiver<Vec<u64>>,
) {
    let mut ring: Vec<Vec<u64>> = (0..64).map(|_| Vec::new()).collect();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let len = match i % 97 {
            0 => 20_000 + i % 5000, // large tier (> 32 KiB)
            k => 1 + (k * 13 + id) % 700,
        };
        let v: Vec<u64> = (0..len as u64).map(|x| x ^ id as u64).collect();
        let old = std::mem::replace(&mut ring[i % 64], v);
        assert!(old
            .iter()
            .enumerate()
            .all(|(j, &x)| x == j as u64 ^ id as u64));
        if i % 3 == 0 {
            let _ = tx.send(old);
        }
        while let Ok(v) = rx.try_recv() {
            drop(v); // a cross-thread free
        }
        let s = format!("worker {id} round {i}");
        assert!(s.ends_with(&i.to_string()));
        i += 1;
        rounds.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs in the child: returns 0 when everything checks out, a distinct code otherwise.
fn child_work() -> i32 {
    let st = hotslab::fork_stats();
    if st.children == 0 {
        return 2; // the child handler did not run
    }
    if hotslab::thread_slots_in_use() != 1 {
        return 3; // the vanished workers' slots were not freed
    }
    if st.thread_caches_reset == 0 {
        return 4; // the workers' thread caches were not reset
    }
    let mut keep: Vec<Vec<u32>> = Vec::new();
    for r in 0..4_000u32 {
        let v: Vec<u32> = (0..(r % 300)).map(|x| x.wrapping_mul(r)).collect();
        if r % 7 == 0 {
            keep.push(v);
        }
    }
    for v in &keep {
        let r = v.get(1).copied().unwrap_or(0);
        if !v
            .iter()
            .enumerate()
            .all(|(x, &y)| y == (x as u32).wrapping_mul(r))
        {
            return 5; // memory handed out twice or corrupted
        }
    }
    let big = vec![7u8; 1 << 20];
    if big.iter().any(|&b| b != 7) {
        return 6;
    }
    // A thread in the child reuses a freed slot and thread caches; its blocks are freed here.
    let h = std::thread::spawn(|| {
        (0..1000)
            .map(|i| format!("child thread {i}"))
            .collect::<Vec<_>>()
    });
    match h.join() {
        Ok(v) if v.len() == 1000 && v[999] == "child thread 999" => {}
        _ => return 7,
    }
    0
}

fn wait_exit(pid: libc::pid_t) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut status = 0;
        // SAFETY: pid is our child; status is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
            return libc::WEXITSTATUS(status);
        }
        assert_eq!(r, 0, "waitpid failed");
        if Instant::now() > deadline {
            // SAFETY: pid is our child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("child {pid} hung (an allocator lock held across fork?)");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn fork_while_threads_allocate() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    drop(vec![1u8; 16]); // builds the default domain, which registers the fork handlers
    assert!(hotslab::fork_stats().installed);
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..WORKERS).map(|_| mpsc::channel()).unzip();
    let mut rxs: Vec<Option<_>> = rxs.into_iter().map(Some).collect();
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| {
            let (stop, rounds) = (stop.clone(), rounds.clone());
            let tx = txs[(id + 1) % WORKERS].clone();
            let rx = rxs[id].take().unwrap();
            std::thread::spawn(move || worker(id, stop, rounds, tx, rx))
        })
        .collect();
    drop(txs);
    let before = hotslab::fork_stats();
    for n in 0..FORKS {
        // Fork only while the workers are demonstrably running.
        let seen = rounds.load(Ordering::Relaxed);
        while rounds.load(Ordering::Relaxed) < seen + 50 {
            std::thread::yield_now();
        }
        // SAFETY: the child only runs `child_work` and then `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = std::panic::catch_unwind(child_work).unwrap_or(100);
            // SAFETY: leaves the child without running the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        let code = wait_exit(pid);
        assert_eq!(code, 0, "child of fork {n} failed with code {code}");
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let after = hotslab::fork_stats();
    assert_eq!(after.prepares - before.prepares, FORKS as u64);
    assert_eq!(
        after.children, before.children,
        "the parent never runs the child handler"
    );
}

static ARMED: AtomicBool = AtomicBool::new(false);
static INSIDE: AtomicBool = AtomicBool::new(false);
static RELEASE: AtomicBool = AtomicBool::new(false);

/// A constructor that, once armed, parks the first thread that runs it (inside that thread's
/// allocation slow path, holding its thread-cache lock) until released.
fn parking_ctor(p: *mut u8) {
    // SAFETY: the cache hands the constructor a whole 200-byte object.
    unsafe { p.write_bytes(0x5a, 200) };
    if ARMED.swap(false, Ordering::AcqRel) {
        INSIDE.store(true, Ordering::Release);
        while !RELEASE.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
    }
}

/// Child: many threads at once (so one of them gets the parked thread's slot and thread
/// cache) allocate from the cache whose slow path the parked thread was in.
fn child_stuck_slot(cache: &hotslab::KmemCache) -> i32 {
    let st = hotslab::fork_stats();
    if st.slabs_set_aside == 0 {
        return 10; // the parked thread's half-carved slab must be set aside, not reused
    }
    const N: usize = 32;
    let barrier = Arc::new(Barrier::new(N));
    let hs: Vec<_> = (0..N)
        .map(|_| {
            let (b, c) = (barrier.clone(), cache.clone());
            std::thread::spawn(move || {
                b.wait(); // all N alive at once: they hold N distinct slots
                let objs: Vec<_> = (0..300).map(|_| c.alloc().unwrap()).collect();
                // SAFETY: each object is 200 bytes, constructed with 0x5a.
                let ok = objs
                    .iter()
                    .all(|o| unsafe { *o.as_ptr() == 0x5a && *o.as_ptr().add(199) == 0x5a });
                for o in objs {
                    c.free(o).unwrap();
                }
                ok
            })
        })
        .collect();
    if hs.into_iter().all(|h| h.join().unwrap_or(false)) {
        0
    } else {
        11
    }
}

#[test]
fn fork_while_a_thread_is_parked_in_its_slow_path() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let d = hotslab::default_domain().expect("default domain");
    let cache = d
        .create_cache(CacheConfig::new("fork-parked", 200).ctor(parking_ctor))
        .unwrap();
    ARMED.store(true, Ordering::Release);
    let parked = {
        let c = cache.clone();
        std::thread::spawn(move || {
            let o = c.alloc().unwrap();
            c.free(o).unwrap();
        })
    };
    while !INSIDE.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    // SAFETY: the child only runs `child_stuck_slot` and then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let work = std::panic::AssertUnwindSafe(|| child_stuck_slot(&cache));
        let code = std::panic::catch_unwind(work).unwrap_or(100);
        // SAFETY: leaves the child without running the parent's exit handlers.
        unsafe { libc::_exit(code) };
    }
    let code = wait_exit(pid);
    RELEASE.store(true, Ordering::Release);
    parked.join().unwrap();
    assert_eq!(code, 0, "child failed with code {code}");
    cache.destroy().unwrap();
}
