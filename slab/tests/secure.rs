//! The secure mode's hardening (issue 13), on a `KmemCache` in debug mode with the secure flags:
//! shuffled slot order, FIFO reuse behind a quarantine (and the write-after-free it lets the
//! poison check see), guard pages at the end of every slab. Abort and fault cases run in a child
//! process (this test binary re-run with `HOTSLAB_SECURE_CASE=<case>`).

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::ptr::NonNull;
use std::sync::Arc;

use hotslab::{CacheConfig, DebugFlags, DomainConfig, KmemCache, SlabDomain, QUARANTINE_SLOTS};

const CASE_ENV: &str = "HOTSLAB_SECURE_CASE";
const SIGABRT: i32 = 6;
const SIGSEGV: i32 = 11;
const UNIT: usize = 64 << 10;

fn domain() -> Arc<SlabDomain> {
    SlabDomain::simulated_with(
        1,
        DomainConfig {
            kmalloc: false,
            ..DomainConfig::default()
        },
    )
    .unwrap()
}

fn cache(d: &SlabDomain, name: &'static str, flags: DebugFlags) -> KmemCache {
    let c = d.create_cache(CacheConfig::new(name, 40)).unwrap();
    c.set_debug(flags).unwrap();
    c
}

fn run_child(case: &str) -> (std::process::ExitStatus, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CASE_ENV, case)
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn child() {
    let Ok(case) = std::env::var(CASE_ENV) else {
        return;
    };
    let d = domain();
    let c = cache(&d, "secure", DebugFlags::SECURE);
    // SAFETY (whole match): the writes deliberately corrupt memory of the cache's own slabs
    // (a freed object; the guard page at the end of a slab's span), which the secure mode must
    // catch (abort) or fault on.
    unsafe {
        match case.as_str() {
            "write_after_free" => {
                let p = c.alloc().unwrap();
                let others: Vec<_> = (0..20).map(|_| c.alloc().unwrap()).collect();
                c.free(p).unwrap();
                p.as_ptr().add(5).write(0x11);
                for q in others {
                    c.free(q).unwrap();
                }
                // Reuse comes after the quarantine: allocate until it does (abort expected).
                for _ in 0..100_000 {
                    let _ = c.alloc().unwrap();
                }
            }
            "guard" => {
                // Fill the first slab, then write just past its last usable byte: the span's
                // last page is the guard page.
                let p = c.alloc().unwrap().as_ptr() as usize;
                let end = (p & !(UNIT - 1)) + UNIT;
                eprintln!("writing at {:#x}", end - 1);
                ((end - 1) as *mut u8).write(0x41);
            }
            other => panic!("unknown case {other}"),
        }
    }
    std::process::exit(3);
}

#[test]
fn write_after_free_is_caught_when_the_quarantined_object_is_reused() {
    let (st, err) = run_child("write_after_free");
    assert_eq!(st.signal(), Some(SIGABRT), "{st:?}\n{err}");
    assert!(
        err.contains("cache secure") && err.contains("poison overwritten at byte +5 (0x11"),
        "{err}"
    );
}

#[test]
fn a_write_off_the_end_of_a_slab_hits_its_guard_page() {
    let (st, err) = run_child("guard");
    assert_eq!(st.signal(), Some(SIGSEGV), "{st:?}\n{err}");
}

#[test]
fn without_guard_pages_the_same_write_lands() {
    // The control for the test above: the last page of a slab without GUARD is ordinary memory.
    let d = domain();
    let c = cache(&d, "plain", DebugFlags::ALL);
    let p = c.alloc().unwrap().as_ptr() as usize;
    let end = (p & !(UNIT - 1)) + UNIT;
    // SAFETY: the last byte of the slab's span (beyond its last slot's red zone, or inside it:
    // the slab is not used again).
    unsafe { ((end - 1) as *mut u8).write(0x41) };
    drop(c);
}

#[test]
fn shuffled_slabs_hand_out_objects_in_an_unpredictable_order() {
    let d = domain();
    let order = |name: &'static str, flags: DebugFlags| -> Vec<usize> {
        let c = cache(&d, name, flags);
        let v: Vec<usize> = (0..64)
            .map(|_| c.alloc().unwrap().as_ptr() as usize)
            .collect();
        for &p in &v {
            // SAFETY: allocated above, freed once.
            c.free(NonNull::new(p as *mut u8).unwrap()).unwrap();
        }
        v
    };
    let plain = order("plain", DebugFlags::ALL);
    assert!(
        plain.windows(2).all(|w| w[0] < w[1]),
        "address order without SHUFFLE"
    );
    let a = order("shuffled-a", DebugFlags::ALL | DebugFlags::SHUFFLE);
    let b = order("shuffled-b", DebugFlags::ALL | DebugFlags::SHUFFLE);
    let ascending = a.windows(2).filter(|w| w[0] < w[1]).count();
    assert!(
        (8..56).contains(&ascending),
        "about half ascending: {ascending} of 63"
    );
    let offsets = |v: &[usize]| v.iter().map(|p| p % UNIT).collect::<Vec<_>>();
    assert_ne!(offsets(&a), offsets(&b), "two caches, two orders");
    let mut s = a.clone();
    s.sort_unstable();
    s.dedup();
    assert_eq!(s.len(), 64, "distinct objects");
}

#[test]
fn quarantine_delays_reuse_first_in_first_out() {
    let d = domain();
    let c = cache(&d, "fifo", DebugFlags::ALL | DebugFlags::QUARANTINE);
    let live: Vec<NonNull<u8>> = (0..200).map(|_| c.alloc().unwrap()).collect();
    // Ten frees: the first three come back, in order; the slab holds its last
    // QUARANTINE_SLOTS free slots back (it takes a new slab rather than reuse them).
    let ten: Vec<NonNull<u8>> = (1..=10).map(|i| live[i * 10]).collect();
    for &p in &ten {
        c.free(p).unwrap();
    }
    let freed = [ten[0], ten[1], ten[2]];
    // The next allocations take the slab's never-used slots first, then the freed ones in the
    // order they were freed; none comes back within QUARANTINE_SLOTS allocations.
    let mut got = Vec::new();
    for _ in 0..2000 {
        let p = c.alloc().unwrap();
        got.push(p);
        if freed.iter().all(|f| got.contains(f)) {
            break;
        }
    }
    let at = |f: &NonNull<u8>| got.iter().position(|g| g == f).expect("reused eventually");
    assert!(
        at(&freed[0]) >= QUARANTINE_SLOTS as usize,
        "{}",
        at(&freed[0])
    );
    assert!(at(&freed[0]) < at(&freed[1]) && at(&freed[1]) < at(&freed[2]));
    // Without the quarantine the last freed object is the first reused.
    let l = cache(&d, "lifo", DebugFlags::ALL);
    let p = l.alloc().unwrap();
    let _q = l.alloc().unwrap();
    l.free(p).unwrap();
    assert_eq!(l.alloc().unwrap(), p);
    assert!(!got.contains(&ten[9]), "the last freed stays in quarantine");
    for p in live.into_iter().filter(|p| !ten.contains(p)).chain(got) {
        c.free(p).unwrap();
    }
}
