//! Debug mode of the global allocator (`SlabAlloc::set_debug`, no environment variable): std
//! collections keep working with every check on, and each kind of heap corruption made through
//! `GlobalAlloc` is reported (cache, object, what) and aborts — checked in a child process (this
//! binary re-run with `HOTSLAB_DEBUG_CASE=<case>`).

use std::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use hotslab::{DebugFlags, SlabAlloc, RED_ACTIVE};

#[global_allocator]
static A: SlabAlloc = SlabAlloc::new();

const CASE_ENV: &str = "HOTSLAB_DEBUG_CASE";
const SIGABRT: i32 = 6;

fn expect_abort(case: &str, needles: &[&str]) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CASE_ENV, case)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
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
}

/// The child: provokes one corruption through the global allocator. Returning means it went
/// unnoticed (exit code 3).
#[test]
fn child() {
    let Ok(case) = std::env::var(CASE_ENV) else {
        return;
    };
    if case != "foreign" {
        assert!(A.set_debug(DebugFlags::ALL));
    }
    let l = |n| Layout::from_size_align(n, 8).unwrap();
    // SAFETY (whole match): each case breaks the GlobalAlloc contract or writes past a block on
    // purpose, inside hotslab's own slab memory; debug mode (or the page map) must catch it.
    unsafe {
        match case.as_str() {
            "vec_overflow" => {
                // black_box: without it LLVM may elide the whole allocation (the overflow is UB).
                let mut v: Vec<u8> = std::hint::black_box(Vec::with_capacity(40));
                v.as_mut_ptr().add(40).write(0x41);
                drop(std::hint::black_box(v));
            }
            "dealloc_twice" => {
                let p = Box::into_raw(Box::new([7u8; 24])).cast::<u8>();
                A.dealloc(p, l(24));
                A.dealloc(p, l(24));
            }
            "use_after_free" => {
                let p = A.alloc(l(48));
                A.dealloc(p, l(48));
                p.add(47).write(0);
                let _ = A.alloc(l(48));
            }
            "interior" => {
                let p = A.alloc(l(64));
                A.dealloc(p.add(8), l(56));
            }
            "foreign" => {
                let mut x = [0u64; 4];
                A.dealloc(x.as_mut_ptr().cast(), l(32));
            }
            other => panic!("unknown case {other}"),
        }
    }
    std::process::exit(3);
}

#[test]
fn vec_overflow_is_caught() {
    expect_abort(
        "vec_overflow",
        &[
            "hotslab: BUG: cache kmalloc-40: object 0x",
            "red zone after the object overwritten at byte +40 (0x41, expected 0xcc)",
        ],
    );
}

#[test]
fn double_dealloc_is_caught() {
    expect_abort(
        "dealloc_twice",
        &["cache kmalloc-24: object 0x", ": double free"],
    );
}

#[test]
fn write_after_dealloc_is_caught() {
    expect_abort(
        "use_after_free",
        &[
            "cache kmalloc-48",
            "poison overwritten at byte +47 (0x00, expected 0xa5)",
        ],
    );
}

#[test]
fn interior_pointer_is_caught() {
    expect_abort(
        "interior",
        &[
            "cache kmalloc-64",
            "free of a pointer into the middle of an object",
        ],
    );
}

#[test]
fn foreign_pointer_is_caught_even_without_debug_mode() {
    expect_abort(
        "foreign",
        &[
            "hotslab: BUG: pointer 0x",
            "free of a pointer hotslab never handed out",
        ],
    );
}

/// With every check on, std collections on several threads run clean; switching back off
/// leaves the debug objects checked until they are freed.
#[test]
fn std_collections_run_clean_in_debug_mode() {
    assert!(A.set_debug(DebugFlags::ALL));
    assert_eq!(A.debug_flags(), DebugFlags::ALL);
    let probe = Box::new([0u8; 40]);
    let p = &*probe as *const [u8; 40] as *const u8;
    // SAFETY: the 8 bytes after a live 40-byte debug object are its right red zone (ours to read).
    assert!((40..48).all(|i| unsafe { p.add(i).read() } == RED_ACTIVE));
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut h = HashMap::new();
                let mut b = BTreeMap::new();
                let mut v = Vec::new();
                for i in 0..20_000u64 {
                    h.insert(i, format!("{t}-{i}"));
                    b.insert(i * 7 % 1000, vec![i; (i % 17) as usize]);
                    v.push(i.to_string());
                    if i % 3 == 0 {
                        h.remove(&(i / 2));
                    }
                }
                assert_eq!(v.len(), 20_000);
                assert_eq!(
                    h.get(&19_999).map(String::as_str),
                    Some(&*format!("{t}-19999"))
                );
                (h.len(), b.len())
            })
        })
        .collect();
    for h in handles {
        let (hl, bl) = h.join().unwrap();
        assert!(hl > 10_000 && bl == 1000);
    }
    assert!(A.set_debug(DebugFlags::NONE));
    drop(probe); // a debug object freed after debug mode went off: still checked, no alarm
    let mut s = String::new();
    for i in 0..10_000 {
        s.push_str(&i.to_string());
    }
    assert!(s.len() > 30_000);
}
