//! Delayed purging of empty slabs (`DomainConfig::purge_delay`): slabs emptied by frees stay
//! committed on their part's empty list (a reuse soon after costs no page fault), and are given
//! back in one batch once they have been idle for the delay, by the next slow path on that part.
//! Alone in its test binary: the budget of delayed empties is process-wide.

use std::ptr::NonNull;
use std::time::Duration;

use hotslab::{CacheConfig, DomainConfig, SlabDomain};

#[test]
fn emptied_slabs_wait_for_the_delay_then_go_back_in_a_batch() {
    let delay = Duration::from_millis(20);
    let d = SlabDomain::simulated_with(
        1,
        DomainConfig {
            kmalloc: false,
            purge_delay: delay,
            ..DomainConfig::default()
        },
    )
    .unwrap();
    let c = d.create_cache(CacheConfig::new("purged", 1024)).unwrap();
    let base = d.committed_bytes();
    // A thread allocates and exits: its heap abandons every slab to the part (resting).
    let cc = c.clone();
    let objs: Vec<usize> = std::thread::spawn(move || {
        (0..4000)
            .map(|_| cc.alloc().unwrap().as_ptr() as usize)
            .collect()
    })
    .join()
    .unwrap();
    let full = d.committed_bytes();
    assert!(full >= base + 4000 * 1024);
    // Another thread frees all but the last object: the resting slabs it empties are kept.
    let (last, rest) = objs.split_last().unwrap();
    let last = *last;
    let cc = c.clone();
    let rest = rest.to_vec();
    std::thread::spawn(move || {
        for p in rest {
            cc.free(NonNull::new(p as *mut u8).unwrap()).unwrap();
        }
    })
    .join()
    .unwrap();
    let kept = d.committed_bytes();
    assert!(
        kept + (1 << 20) >= full,
        "emptied slabs stay committed until the delay passes: {full} -> {kept}"
    );
    // The delay is the policy under test (not a stand-in for synchronisation).
    std::thread::sleep(delay * 2);
    // The next slow path on the part (a remote free that empties the last slab) purges.
    let cc = c.clone();
    std::thread::spawn(move || cc.free(NonNull::new(last as *mut u8).unwrap()).unwrap())
        .join()
        .unwrap();
    let after = d.committed_bytes();
    assert!(
        after <= base + (1 << 20),
        "idle empty slabs went back in a batch: {kept} -> {after} (base {base})"
    );
    let st = c.stats().unwrap();
    assert_eq!(st.allocs, 4000);
    assert_eq!(st.frees, 4000);
    c.destroy().unwrap();
}
