//! With the `asan` feature (and `-Zsanitizer=address`), a freed slab object is poisoned for
//! AddressSanitizer: a read after free in a child process (this binary re-run with
//! `HOTSLAB_ASAN_CASE=1`) must be reported by ASan. Without the feature this file is empty.
#![cfg(feature = "asan")]

use std::process::Command;

use hotslab::{CacheConfig, DomainConfig, SlabDomain};

#[test]
fn child() {
    if std::env::var("HOTSLAB_ASAN_CASE").is_err() {
        return;
    }
    let d = SlabDomain::simulated_with(
        1,
        DomainConfig {
            kmalloc: false,
            ..DomainConfig::default()
        },
    )
    .unwrap();
    let c = d.create_cache(CacheConfig::new("asan-victim", 64)).unwrap();
    let keep = c.alloc().unwrap();
    let p = c.alloc().unwrap();
    c.free(p).unwrap();
    // SAFETY: deliberately not: a read after free, which ASan must stop.
    let v = unsafe { std::ptr::read_volatile(p.as_ptr().add(16)) };
    println!("read {v} after free: not caught");
    c.free(keep).unwrap();
    std::process::exit(3);
}

#[test]
fn use_after_free_of_a_slab_object_is_reported_by_asan() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture"])
        .env("HOTSLAB_ASAN_CASE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && out.status.code() != Some(3),
        "{stderr}"
    );
    assert!(
        stderr.contains("AddressSanitizer: use-after-poison"),
        "no ASan report:\n{stderr}"
    );
}
