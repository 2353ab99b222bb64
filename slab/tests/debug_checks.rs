//! Debug mode of a `KmemCache` catches each kind of corruption: every case runs in a child
//! process (this test binary re-run with `HOTSLAB_DEBUG_CASE=<case>`), which must print the cache,
//! the object address and what was wrong, then abort. Also: no false alarms under heavy use.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::ptr::NonNull;
use std::sync::Arc;

use hotslab::{
    CacheConfig, CacheError, CacheFlags, DebugFlags, DomainConfig, KmemCache, SlabDomain,
    POISON_END, POISON_FREE, RED_ACTIVE,
};

const CASE_ENV: &str = "HOTSLAB_DEBUG_CASE";
const SIGABRT: i32 = 6;

fn domain() -> Arc<SlabDomain> {
    SlabDomain::simulated_with(
        2,
        DomainConfig {
            kmalloc: false,
            ..DomainConfig::default()
        },
    )
    .unwrap()
}

/// A 40-byte debug cache named "victim" (slots: 16 bytes before the object, 8 after).
fn victim(d: &SlabDomain, flags: DebugFlags) -> KmemCache {
    let c = d.create_cache(CacheConfig::new("victim", 40)).unwrap();
    c.set_debug(flags).unwrap();
    c
}

/// Runs `case` in a child and returns its stderr after checking that it aborted.
fn expect_abort(case: &str, needles: &[&str]) -> String {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CASE_ENV, case)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.signal(),
        Some(SIGABRT),
        "case {case}: expected an abort, got {:?}; stderr:\n{stderr}",
        out.status
    );
    for n in needles {
        assert!(
            stderr.contains(n),
            "case {case}: {n:?} missing from stderr:\n{stderr}"
        );
    }
    stderr
}

/// The child: provokes one corruption. Returning means it went unnoticed (exit code 3).
#[test]
fn child() {
    let Ok(case) = std::env::var(CASE_ENV) else {
        return;
    };
    let d = domain();
    let c = victim(&d, DebugFlags::ALL);
    let p = c.alloc().unwrap();
    let o = p.as_ptr();
    eprintln!("object {:#x}", o as usize);
    // SAFETY (whole match): every write below deliberately corrupts memory that belongs to the
    // slab (the object's own slot or its neighbour's), which debug mode must catch before any
    // harm; nothing outside the slab's span is touched.
    unsafe {
        match case.as_str() {
            "overflow" => {
                o.add(40).write(0x41);
                let _ = c.free(p);
            }
            "underflow" => {
                o.sub(1).write(0x00);
                let _ = c.free(p);
            }
            "double_free" => {
                c.free(p).unwrap();
                let _ = c.free(p);
            }
            "use_after_free" => {
                c.free(p).unwrap();
                o.add(3).write(0);
                let _ = c.alloc();
            }
            "freelist" => {
                let q = c.alloc().unwrap();
                c.free(p).unwrap();
                c.free(q).unwrap();
                // q's slot heads the freelist; its free pointer word is 16 bytes before q.
                q.as_ptr().sub(16).cast::<usize>().write(0x4141_4141_4141);
                let _ = c.alloc();
            }
            "free_neighbour" => {
                let q = c.alloc().unwrap();
                c.free(q).unwrap();
                // A stray write into q's left red zone (where an overflow of p by 24 bytes
                // lands); q is free, so its next allocation notices.
                let dist = q.as_ptr() as usize - o as usize;
                o.add(dist - 8).write_bytes(0x99, 8);
                let _ = c.alloc();
            }
            "state_byte" => {
                // Without red-zone checks, double frees are still caught (by the state byte).
                let c2 = victim(&d, DebugFlags::POISON);
                let r = c2.alloc().unwrap();
                c2.free(r).unwrap();
                let _ = c2.free(r);
            }
            other => panic!("unknown case {other}"),
        }
    }
    std::process::exit(3);
}

#[test]
fn red_zone_overflow_is_caught_on_free() {
    expect_abort(
        "overflow",
        &[
            "hotslab: BUG: cache victim: object 0x",
            "red zone after the object overwritten at byte +40 (0x41, expected 0xcc)",
        ],
    );
}

#[test]
fn red_zone_underflow_is_caught_on_free() {
    expect_abort(
        "underflow",
        &[
            "cache victim",
            "red zone before the object overwritten at byte -1 (0x00",
        ],
    );
}

#[test]
fn double_free_is_caught() {
    let err = expect_abort("double_free", &["cache victim", ": double free"]);
    // The report names the object the child printed.
    let obj = err.lines().find_map(|l| l.strip_prefix("object ")).unwrap();
    assert!(err.contains(&format!("object {obj}: double free")), "{err}");
}

#[test]
fn write_after_free_is_caught_by_poison() {
    expect_abort(
        "use_after_free",
        &[
            "cache victim",
            "poison overwritten at byte +3 (0x00, expected 0x6b): written after it was freed",
        ],
    );
}

#[test]
fn corrupted_free_pointer_is_caught() {
    expect_abort(
        "freelist",
        &["cache victim", "freelist pointer corrupted (decodes to 0x"],
    );
}

#[test]
fn overflow_into_a_free_neighbour_is_caught_on_alloc() {
    expect_abort(
        "free_neighbour",
        &[
            "cache victim",
            "red zone of a free object overwritten at byte -8 (0x99, expected 0xbb)",
        ],
    );
}

#[test]
fn double_free_is_caught_without_red_zone_checks() {
    expect_abort("state_byte", &["cache victim", ": double free"]);
}

/// Debug mode must not cry wolf: many threads, cross-thread frees, constructors and debug mode
/// switched on and off underneath them; every object keeps its contents.
#[test]
fn heavy_use_raises_no_false_alarm() {
    let d = domain();
    let c = d
        .create_cache(CacheConfig::new("busy", 72).flags(CacheFlags::DEBUG))
        .unwrap();
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                let mut mine: Vec<NonNull<u8>> = Vec::new();
                for round in 0..40u32 {
                    for _ in 0..200 {
                        let p = c.alloc().unwrap();
                        // SAFETY: a live 72-byte object.
                        unsafe { p.as_ptr().write_bytes(t, 72) };
                        mine.push(p);
                    }
                    for p in mine.drain(..) {
                        // SAFETY: still live; nobody else writes it.
                        assert!(unsafe { std::slice::from_raw_parts(p.as_ptr(), 72) }
                            .iter()
                            .all(|&b| b == t));
                        c.free(p).unwrap();
                    }
                    if t == 0 {
                        let f = if round % 2 == 0 {
                            DebugFlags::NONE
                        } else {
                            DebugFlags::ALL
                        };
                        c.set_debug(f).unwrap();
                    }
                }
            })
        })
        .collect();
    for h in threads {
        h.join().unwrap();
    }
    // Cross-thread: allocate here, free there.
    c.set_debug(DebugFlags::ALL).unwrap();
    let objs: Vec<usize> = (0..500)
        .map(|_| c.alloc().unwrap().as_ptr() as usize)
        .collect();
    let c2 = c.clone();
    std::thread::spawn(move || {
        for p in objs {
            c2.free(NonNull::new(p as *mut u8).unwrap()).unwrap();
        }
    })
    .join()
    .unwrap();
    let st = c.stats().unwrap();
    assert_eq!(st.active_objects, 0);
    assert_eq!(st.allocs, st.frees);
    c.destroy().unwrap();
}

#[test]
fn poison_and_red_zone_values_are_slubs() {
    assert_eq!((POISON_FREE, POISON_END, RED_ACTIVE), (0x6b, 0xa5, 0xcc));
    let d = domain();
    let c = victim(&d, DebugFlags::ALL);
    let p = c.alloc().unwrap();
    // SAFETY: the 8 bytes after a live 40-byte debug object are its right red zone.
    assert!((40..48).all(|i| unsafe { p.as_ptr().add(i).read() } == RED_ACTIVE));
    c.free(p).unwrap();
    // A destroyed cache refuses to switch; a live object keeps destroy from freeing anything.
    let q = c.alloc().unwrap();
    assert!(matches!(
        c.destroy(),
        Err(CacheError::LiveObjects { count: 1, .. })
    ));
    c.free(q).unwrap();
    c.destroy().unwrap();
    assert_eq!(
        c.set_debug(DebugFlags::NONE).unwrap_err(),
        CacheError::Destroyed
    );
}

/// kmalloc in debug mode keeps every alignment promise (the class choice relies on the natural
/// alignment of slots), usable sizes are the class sizes, and krealloc keeps contents.
#[test]
fn kmalloc_debug_keeps_alignment_and_contents() {
    let d = SlabDomain::simulated(1).unwrap();
    d.set_kmalloc_debug(DebugFlags::ALL);
    assert_eq!(d.kmalloc_debug(), DebugFlags::ALL);
    let mut live = Vec::new();
    for align in [8usize, 16, 32, 64, 128, 256, 512, 1024, 4096] {
        for size in [1usize, 8, 24, 40, 48, 100, 1000, 3000, 5000, 20_000] {
            let p = d.kmalloc_layout(size, align, None);
            assert!(!p.is_null(), "size {size} align {align}");
            assert_eq!(p as usize % align, 0, "size {size} align {align}");
            let usable = hotslab::usable_size(p).unwrap();
            assert!(usable >= size);
            // SAFETY: `usable` bytes are ours; p+1 is only looked up (and refused).
            unsafe {
                p.write_bytes(size as u8, usable);
                assert_eq!(d.kfree_checked(p.add(1)), Err(hotslab::FreeError::Interior));
            }
            live.push((p, size, align));
        }
    }
    for (p, size, align) in live {
        // SAFETY: p is live from this domain's kmalloc.
        let q = unsafe { d.krealloc_layout(p, align, size * 3) };
        assert!(!q.is_null());
        assert_eq!(q as usize % align, 0);
        // SAFETY: the first `size` bytes were written above and survive the move.
        assert!(unsafe { std::slice::from_raw_parts(q, size) }
            .iter()
            .all(|&b| b == size as u8));
        // SAFETY: q is live and not used afterwards.
        unsafe { d.kfree_checked(q).unwrap() };
    }
}
