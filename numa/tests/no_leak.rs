//! Failed maps leak no address space: after many NodeGone failures the process's mapped size (from
//! /proc/self/maps) is unchanged. One test in its own binary, so no other test maps concurrently.
#![cfg(not(miri))]

use hotslab_numa::{MapError, NodeId, PageSource};

fn mapped_kib() -> u64 {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .map(|l| {
            let range = l.split_whitespace().next().unwrap();
            let (a, b) = range.split_once('-').unwrap();
            (u64::from_str_radix(b, 16).unwrap() - u64::from_str_radix(a, 16).unwrap()) / 1024
        })
        .sum()
}

#[test]
fn node_gone_failures_unmap_their_span() {
    let src = PageSource::new();
    // Warm up anything lazily mapped (stdout capture, malloc arenas) before measuring.
    for _ in 0..2 {
        let _ = mapped_kib();
        let _ = src.map(1 << 20, 1 << 30, Some(NodeId(1000)));
    }
    let before = mapped_kib();
    for _ in 0..64 {
        // 64 MiB each, 1 GiB aligned: a leak of the span or of its trimmed surroundings would add
        // at least 4 GiB.
        assert_eq!(
            src.map(64 << 20, 1 << 30, Some(NodeId(1000))),
            Err(MapError::NodeGone)
        );
    }
    let after = mapped_kib();
    assert!(
        after.abs_diff(before) < 16 << 10,
        "mapped size went from {before} KiB to {after} KiB"
    );
    assert_eq!(src.mapped_bytes(), 0);
    assert_eq!(src.maps(), 0);
}
