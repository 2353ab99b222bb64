//! loom model of alloc / local free / remote free ∥ part retirement (issue 4, DESIGN.md §3 "Offline node"),
//! over the real `hotslab` code: a thread owns a slab on node 1 and frees locally while another thread frees
//! remotely, and a third offlines node 1 (refusably, or forced as the kernel does). Owns only this model; it
//! must not touch `slab/src`.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p hotslab --release --test 'loom_*'`
//!
//! Four loom threads (loom 0.7 allows five, the model's main thread included): main (set-up and checks),
//! O (allocates two objects on node 1 through its thread cache, hands one to R, frees the other),
//! R (frees the object it was handed: a remote free) and H (offlines node 1). No mode changes the fast path,
//! so every mode — Legacy included — must keep, in every schedule: no object handed out twice (each object
//! carries its owner's tag, checked before the free), every free accounted (`active_objects` back to 0,
//! allocs = frees = 2), a refusable offline either refused as busy (node 1 keeps its memory and a live part)
//! or done with nothing live, part states legal (I1) and, after the last free, node 1's part retired
//! (Legacy, OnlineMems) or parked as draining (SlabNodes), a clean destroy afterwards, and no race detector
//! firing.
//!
//! Preemption bound: 2 (stated again on each model): about 10,000 schedules and a few seconds per model; bound 3
//! explores about 100,000 (30-100 s per model on 2 cores), too slow for the default run (see `LOOM_MAX_PREEMPTIONS`
//! in `loom_common`).
#![cfg(loom)]

mod loom_common;

use std::ptr::NonNull;

use hotslab::numa::NodeId;
use hotslab::{CacheConfig, KmemCache, LockingMode, PartState};
use loom::thread;
use loom_common::{explore, Seen, World};

/// Preemption bound of every model in this file.
const BOUND: usize = 2;

const N0: NodeId = NodeId::new(0);
const N1: NodeId = NodeId::new(1);
const SIZE: usize = 64;

/// How H takes node 1 away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Offline {
    /// `offline_node`: refused (busy) while objects are live on node 1.
    Refusable,
    /// `offline_node_forced`: cannot be refused; node 1's parts drain and retire when empty.
    Forced,
}

/// Allocates on node 1 (falling back to node 0 when node 1 cannot serve) and stamps the object with `tag`.
fn alloc_tagged(cache: &KmemCache, tag: u64) -> NonNull<u8> {
    let p = cache
        .alloc_node(N1)
        .expect("alloc_node(1) is served, by node 1 or by fallback");
    assert!(
        cache.node_of(p).is_some(),
        "the object belongs to the cache"
    );
    // SAFETY: p is a live, exclusively ours object of SIZE (>= 8) bytes, aligned to 8.
    unsafe { p.as_ptr().cast::<u64>().write(tag) };
    p
}

/// Checks the stamp (an object handed out twice would carry the other holder's tag) and frees it.
fn free_tagged(cache: &KmemCache, p: NonNull<u8>, tag: u64) {
    // SAFETY: p is still our live object (stamped by alloc_tagged).
    let seen = unsafe { p.as_ptr().cast::<u64>().read() };
    assert_eq!(seen, tag, "object {p:p} was handed out twice");
    cache.free(p).expect("free of a live object");
}

/// A pointer that may cross into a loom thread.
struct SendPtr(NonNull<u8>);
// SAFETY: the object is handed over whole: the sender never touches it again.
unsafe impl Send for SendPtr {}

/// One execution of the model.
fn alloc_free_vs_retire(mode: LockingMode, how: Offline) -> Seen {
    let w = World::new(mode, &[0, 1]);
    let cache = w
        .domain
        .create_cache(CacheConfig::new("objs", SIZE))
        .expect("create");

    let o = {
        let c = cache.clone();
        thread::spawn(move || {
            let a = alloc_tagged(&c, 0xa);
            let b = alloc_tagged(&c, 0xb);
            assert_ne!(a, b, "two live objects share an address");
            let r = {
                let c = c.clone();
                let b = SendPtr(b);
                thread::spawn(move || {
                    let b = b;
                    free_tagged(&c, b.0, 0xb); // remote: R owns no slab of this cache
                })
            };
            free_tagged(&c, a, 0xa); // local while O still owns the slab (unless revoked meanwhile)
            r.join().unwrap();
        })
    };
    let h = {
        let d = w.domain.clone();
        thread::spawn(move || match how {
            Offline::Refusable => d.offline_node(N1),
            Offline::Forced => d.offline_node_forced(N1),
        })
    };
    o.join().unwrap();
    let offlined = h.join().unwrap();

    let name = mode.name();
    match (how, offlined) {
        (_, Ok(())) => {}
        (Offline::Refusable, Err(e)) => assert!(
            e.is_busy(),
            "{name}: a refusable offline may only be refused as busy: {e:?}"
        ),
        (Offline::Forced, Err(e)) => panic!("{name}: a forced offline cannot be refused: {e:?}"),
    }
    let gone = !w.domain.hotplug().states.has_memory().test(N1);
    assert_eq!(
        gone,
        offlined.is_ok(),
        "{name}: node 1 has memory iff the offline was refused"
    );

    // Every free is accounted, nothing is live.
    let st = cache.stats().expect("stats");
    assert_eq!(
        (st.allocs, st.frees, st.active_objects),
        (2, 2, 0),
        "{name}: {st:?}"
    );
    // Part states: node 0 untouched; node 1 live iff it has memory, otherwise (all objects freed) retired,
    // or parked as draining in SlabNodes.
    assert_eq!(
        cache.part_state(N0),
        Some(PartState::Live),
        "{name}: node 0 part"
    );
    let want = match (gone, mode) {
        (false, _) => PartState::Live,
        (true, LockingMode::SlabNodes) => PartState::Draining,
        (true, _) => PartState::Retired,
    };
    assert_eq!(
        cache.part_state(N1),
        Some(want),
        "{name} {how:?}: node 1 part after the last free"
    );
    let report = w.domain.check_invariants();
    assert!(report.ok(), "{name}: I1: {report:?}");
    w.assert_no_violations("alloc/free ∥ offline");

    // The cache can be destroyed cleanly: nothing live, every part retired exactly once, nothing leaked.
    cache
        .destroy()
        .expect("destroy after every object was freed");
    for nid in [N0, N1] {
        assert_eq!(
            cache.part_state(nid),
            Some(PartState::Retired),
            "{name}: part of {nid} after destroy"
        );
    }
    w.assert_no_violations("destroy after alloc/free ∥ offline");
    Seen::of(&w)
}

/// Preemption bound 2. Legacy, refusable offline.
#[test]
fn alloc_free_vs_refusable_offline_legacy() {
    explore("alloc/free ∥ offline, Legacy", BOUND, || {
        alloc_free_vs_retire(LockingMode::Legacy, Offline::Refusable)
    })
    .assert_clean();
}

/// Preemption bound 2. OnlineMems, refusable offline.
#[test]
fn alloc_free_vs_refusable_offline_online_mems() {
    explore("alloc/free ∥ offline, OnlineMems", BOUND, || {
        alloc_free_vs_retire(LockingMode::OnlineMems, Offline::Refusable)
    })
    .assert_clean();
}

/// Preemption bound 2. SlabNodes, refusable offline.
#[test]
fn alloc_free_vs_refusable_offline_slab_nodes() {
    explore("alloc/free ∥ offline, SlabNodes", BOUND, || {
        alloc_free_vs_retire(LockingMode::SlabNodes, Offline::Refusable)
    })
    .assert_clean();
}

/// Preemption bound 2. Legacy, forced offline.
#[test]
fn alloc_free_vs_forced_offline_legacy() {
    explore("alloc/free ∥ forced offline, Legacy", BOUND, || {
        alloc_free_vs_retire(LockingMode::Legacy, Offline::Forced)
    })
    .assert_clean();
}

/// Preemption bound 2. OnlineMems, forced offline.
#[test]
fn alloc_free_vs_forced_offline_online_mems() {
    explore("alloc/free ∥ forced offline, OnlineMems", BOUND, || {
        alloc_free_vs_retire(LockingMode::OnlineMems, Offline::Forced)
    })
    .assert_clean();
}

/// Preemption bound 2. SlabNodes, forced offline.
#[test]
fn alloc_free_vs_forced_offline_slab_nodes() {
    explore("alloc/free ∥ forced offline, SlabNodes", BOUND, || {
        alloc_free_vs_retire(LockingMode::SlabNodes, Offline::Forced)
    })
    .assert_clean();
}
