//! Object caches on simulated topologies: the public KmemCache API, its errors, per-node
//! placement, cross-thread frees, memory bounds, thread churn, and hotplug during allocation.

use std::collections::HashSet;
use std::ptr::NonNull;
use std::sync::{Arc, Barrier};

use hotslab::hotplug_api::{HotplugError, NotifyError};
use hotslab::numa::NodeId;
use hotslab::{CacheConfig, CacheError, CacheFlags, DomainConfig, SlabDomain};

fn n(i: u16) -> NodeId {
    NodeId::new(i)
}

fn quiet() -> DomainConfig {
    DomainConfig {
        kmalloc: false,
        ..DomainConfig::default()
    }
}

#[test]
fn alloc_free_roundtrip_and_stats() {
    let d = SlabDomain::simulated_with(2, quiet()).unwrap();
    let c = d.create_cache(CacheConfig::new("obj100", 100)).unwrap();
    let mut seen = HashSet::new();
    let mut objs = Vec::new();
    for i in 0..5000u32 {
        let p = c.alloc().unwrap();
        assert!(seen.insert(p.as_ptr() as usize), "object handed out twice");
        assert_eq!(p.as_ptr() as usize % 8, 0);
        // SAFETY: 100-byte live object.
        unsafe { p.as_ptr().cast::<u32>().write(i) };
        objs.push(p);
    }
    for (i, p) in objs.iter().enumerate() {
        // SAFETY: as above.
        assert_eq!(unsafe { p.as_ptr().cast::<u32>().read() }, i as u32);
    }
    let st = c.stats().unwrap();
    assert_eq!(st.active_objects, 5000);
    assert_eq!(st.allocs, 5000);
    assert!(st.total_objects >= 5000);
    for p in objs {
        c.free(p).unwrap();
    }
    let st = c.stats().unwrap();
    assert_eq!(st.active_objects, 0);
    assert_eq!(st.frees, 5000);
    c.destroy().unwrap();
}

#[test]
fn invalid_parameters_are_errors() {
    let d = SlabDomain::simulated_with(1, quiet()).unwrap();
    assert_eq!(
        d.create_cache(CacheConfig::new("zero", 0)).unwrap_err(),
        CacheError::InvalidSize(0)
    );
    assert!(matches!(
        d.create_cache(CacheConfig::new("huge", 1 << 30)),
        Err(CacheError::InvalidSize(_))
    ));
    assert_eq!(
        d.create_cache(CacheConfig::new("odd", 64).align(24))
            .unwrap_err(),
        CacheError::InvalidAlign(24)
    );
    assert_eq!(
        d.create_cache(CacheConfig::new("big", 64).align(1 << 20))
            .unwrap_err(),
        CacheError::InvalidAlign(1 << 20)
    );
    let c = d.create_cache(CacheConfig::new("ok", 64)).unwrap();
    assert!(matches!(
        c.alloc_node(n(7)),
        Err(CacheError::UnknownNode(7))
    ));
    let x = 5u64;
    assert!(matches!(
        c.free(NonNull::from(&x).cast()),
        Err(CacheError::ForeignPointer(_))
    ));
    let p = c.alloc().unwrap();
    // SAFETY: in-bounds of the 64-byte object.
    let interior = unsafe { NonNull::new_unchecked(p.as_ptr().add(8)) };
    assert!(matches!(
        c.free(interior),
        Err(CacheError::InteriorPointer(_))
    ));
    let other = d.create_cache(CacheConfig::new("other", 64)).unwrap();
    assert!(
        matches!(other.free(p), Err(CacheError::ForeignPointer(_))),
        "free into the wrong cache is refused"
    );
    c.free(p).unwrap();
    c.destroy().unwrap();
    assert_eq!(c.alloc().unwrap_err(), CacheError::Destroyed);
    assert_eq!(c.destroy().unwrap_err(), CacheError::Destroyed);
    assert_eq!(c.shrink().unwrap_err(), CacheError::Destroyed);
    other.destroy().unwrap();
}

#[test]
fn destroy_with_live_objects_is_refused_and_keeps_them() {
    let d = SlabDomain::simulated_with(2, quiet()).unwrap();
    let c = d.create_cache(CacheConfig::new("leaky", 48)).unwrap();
    let keep: Vec<_> = (0..10).map(|_| c.alloc().unwrap()).collect();
    for p in &keep {
        // SAFETY: live 48-byte objects.
        unsafe { p.as_ptr().write_bytes(0x5a, 48) };
    }
    assert_eq!(
        c.destroy().unwrap_err(),
        CacheError::LiveObjects {
            name: "leaky",
            count: 10
        }
    );
    // Nothing was freed: contents intact, cache still usable.
    for p in &keep {
        // SAFETY: still live.
        assert!(unsafe { std::slice::from_raw_parts(p.as_ptr(), 48) }
            .iter()
            .all(|&b| b == 0x5a));
    }
    let extra = c.alloc().unwrap();
    c.free(extra).unwrap();
    for p in keep {
        c.free(p).unwrap();
    }
    c.destroy().unwrap();
}

static CTOR_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn ctor(p: *mut u8) {
    CTOR_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: the constructor gets a whole 40-byte object.
    unsafe { p.cast::<[u64; 5]>().write([0xc0ffee; 5]) };
}

#[test]
fn constructor_runs_once_per_object_and_state_survives_free() {
    let d = SlabDomain::simulated_with(1, quiet()).unwrap();
    let c = d
        .create_cache(CacheConfig::new("ctor", 40).ctor(ctor))
        .unwrap();
    let a: Vec<_> = (0..200).map(|_| c.alloc().unwrap()).collect();
    for p in &a {
        // SAFETY: live 40-byte objects, constructed.
        assert_eq!(
            unsafe { p.as_ptr().cast::<[u64; 5]>().read() },
            [0xc0ffee; 5]
        );
    }
    let runs = CTOR_RUNS.load(std::sync::atomic::Ordering::Relaxed);
    assert!(runs >= 200);
    for p in a {
        c.free(p).unwrap();
    }
    let b: Vec<_> = (0..200).map(|_| c.alloc().unwrap()).collect();
    for p in &b {
        // SAFETY: as above; the free pointer lives outside the object, so the state survived.
        assert_eq!(
            unsafe { p.as_ptr().cast::<[u64; 5]>().read() },
            [0xc0ffee; 5]
        );
    }
    assert_eq!(
        CTOR_RUNS.load(std::sync::atomic::Ordering::Relaxed),
        runs,
        "no constructor run on reuse"
    );
    for p in b {
        c.free(p).unwrap();
    }
}

#[test]
fn hwcache_alignment() {
    let d = SlabDomain::simulated_with(1, quiet()).unwrap();
    let big = d
        .create_cache(CacheConfig::new("hw100", 100).flags(CacheFlags::HWCACHE_ALIGN))
        .unwrap();
    let small = d
        .create_cache(CacheConfig::new("hw20", 20).flags(CacheFlags::HWCACHE_ALIGN))
        .unwrap();
    for _ in 0..100 {
        assert_eq!(big.alloc().unwrap().as_ptr() as usize % 64, 0);
        assert_eq!(
            small.alloc().unwrap().as_ptr() as usize % 32,
            0,
            "halved while the object fits in half a line"
        );
    }
    assert_eq!(big.stats().unwrap().stride, 128);
    assert_eq!(small.stats().unwrap().stride, 32);
}

#[test]
fn allocations_come_from_the_requested_nodes_part() {
    let d = SlabDomain::simulated_with(4, quiet()).unwrap();
    let c = d.create_cache(CacheConfig::new("pernode", 256)).unwrap();
    let mut objs = Vec::new();
    for node in 0..4 {
        for _ in 0..300 {
            let p = c.alloc_node(n(node)).unwrap();
            assert_eq!(c.node_of(p), Some(n(node)));
            objs.push(p);
        }
    }
    let row = d
        .slabinfo()
        .into_iter()
        .find(|r| r.name == "pernode")
        .unwrap();
    assert_eq!(row.active_objs, 1200);
    assert!(
        row.node_slabs.iter().all(|&s| s >= 1),
        "every node has slabs: {:?}",
        row.node_slabs
    );
    for p in objs {
        c.free(p).unwrap();
    }
    assert!(d.check_invariants().ok());
}

#[test]
fn cross_thread_free_and_producer_consumer_stay_bounded() {
    let d = SlabDomain::simulated_with(2, quiet()).unwrap();
    let c = d.create_cache(CacheConfig::new("pc", 64)).unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<usize>>(4);
    let cc = c.clone();
    let consumer = std::thread::spawn(move || {
        let mut freed = 0usize;
        for batch in rx {
            for p in batch {
                cc.free(NonNull::new(p as *mut u8).unwrap()).unwrap();
                freed += 1;
            }
        }
        freed
    });
    let mut peak = 0;
    let rounds = 400;
    for r in 0..rounds {
        let batch: Vec<usize> = (0..1000)
            .map(|_| c.alloc().unwrap().as_ptr() as usize)
            .collect();
        tx.send(batch).unwrap();
        if r > 50 {
            peak = peak.max(d.committed_bytes());
        }
    }
    drop(tx);
    assert_eq!(consumer.join().unwrap(), rounds * 1000);
    // 400k objects of 64 B passed through (25 MB): the working set is at most ~5 batches.
    assert!(peak <= 4 << 20, "committed bytes grew to {peak}");
    c.shrink().unwrap();
    assert_eq!(c.stats().unwrap().active_objects, 0);
}

#[test]
fn thread_churn_returns_slabs() {
    let d = SlabDomain::simulated_with(2, quiet()).unwrap();
    let c = d.create_cache(CacheConfig::new("churn", 128)).unwrap();
    let mut after_round = Vec::new();
    for _round in 0..5 {
        let hs: Vec<_> = (0..200)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    let v: Vec<_> = (0..50).map(|_| c.alloc().unwrap()).collect();
                    for p in v {
                        c.free(p).unwrap();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        c.shrink().unwrap();
        after_round.push(d.committed_bytes());
    }
    assert_eq!(c.stats().unwrap().active_objects, 0);
    assert!(
        after_round.windows(2).all(|w| w[1] <= w[0].max(1 << 20)),
        "no growth across rounds: {after_round:?}"
    );
    assert!(
        hotslab::thread_slots_in_use() < 64,
        "exited threads gave their slots back"
    );
}

#[test]
fn offline_with_live_objects_is_refused_and_nothing_is_lost() {
    let d = SlabDomain::simulated_with(
        4,
        DomainConfig {
            drain_timeout: std::time::Duration::from_millis(20),
            ..quiet()
        },
    )
    .unwrap();
    let c = d.create_cache(CacheConfig::new("pinned", 512)).unwrap();
    let objs: Vec<_> = (0..100).map(|_| c.alloc_node(n(3)).unwrap()).collect();
    for p in &objs {
        // SAFETY: live 512-byte objects.
        unsafe { p.as_ptr().write_bytes(0x77, 512) };
    }
    let err = d.offline_node(n(3)).unwrap_err();
    assert!(err.is_busy(), "got {err:?}");
    assert!(matches!(
        err,
        HotplugError::Vetoed {
            error: NotifyError::Busy,
            ..
        }
    ));
    assert!(
        d.hotplug().states.has_memory().test(n(3)),
        "node 3 still has memory"
    );
    assert!(d.check_invariants().ok());
    for p in &objs {
        // SAFETY: still live.
        assert!(unsafe { std::slice::from_raw_parts(p.as_ptr(), 512) }
            .iter()
            .all(|&b| b == 0x77));
        assert_eq!(c.node_of(*p), Some(n(3)));
    }
    // New allocations on node 3 still work after the refused offline.
    let more = c.alloc_node(n(3)).unwrap();
    assert_eq!(c.node_of(more), Some(n(3)));
    c.free(more).unwrap();
    for p in objs {
        c.free(p).unwrap();
    }
    d.offline_node(n(3)).unwrap();
    assert!(!d.hotplug().states.has_memory().test(n(3)));
    assert!(d.check_invariants().ok());
    // Allocations that ask for node 3 now fall back to a node with memory.
    let p = c.alloc_node(n(3)).unwrap();
    assert_ne!(c.node_of(p), Some(n(3)));
    c.free(p).unwrap();
    d.online_node(n(3)).unwrap();
    let p = c.alloc_node(n(3)).unwrap();
    assert_eq!(c.node_of(p), Some(n(3)));
    c.free(p).unwrap();
    assert_eq!(d.violations.total(), 0);
}

#[test]
fn idle_thread_holding_a_slab_does_not_block_offline() {
    let d = SlabDomain::simulated_with(2, quiet()).unwrap();
    let c = d.create_cache(CacheConfig::new("idle", 64)).unwrap();
    let ready = Arc::new(Barrier::new(2));
    let done = Arc::new(Barrier::new(2));
    let (c2, r2, d2) = (c.clone(), ready.clone(), done.clone());
    let h = std::thread::spawn(move || {
        // Take a slab on node 1 into this thread's cache, free the object, go idle.
        let p = c2.alloc_node(NodeId::new(1)).unwrap();
        c2.free(p).unwrap();
        r2.wait();
        d2.wait(); // idle until the offline is over
                   // The revoked thread keeps working afterwards, on a node that has memory.
        let q = c2.alloc().unwrap();
        assert_ne!(c2.node_of(q), Some(NodeId::new(1)));
        c2.free(q).unwrap();
    });
    ready.wait();
    d.offline_node(n(1)).unwrap();
    assert!(d.check_invariants().ok());
    done.wait();
    h.join().unwrap();
    assert_eq!(d.violations.total(), 0);
}

#[test]
fn forced_offline_drains_then_retires() {
    let d = SlabDomain::simulated_with(3, quiet()).unwrap();
    let c = d.create_cache(CacheConfig::new("forced", 96)).unwrap();
    let objs: Vec<_> = (0..50).map(|_| c.alloc_node(n(2)).unwrap()).collect();
    d.offline_node_forced(n(2)).unwrap();
    assert!(!d.hotplug().states.has_memory().test(n(2)));
    assert_eq!(
        c.part_state(n(2)),
        Some(hotslab::PartState::Draining),
        "live objects keep the part draining"
    );
    // Frees are still accepted; no new slab is made on node 2.
    let q = c.alloc_node(n(2)).unwrap();
    assert_ne!(c.node_of(q), Some(n(2)));
    c.free(q).unwrap();
    for p in objs {
        c.free(p).unwrap();
    }
    c.shrink().unwrap();
    d.shrink_all();
    assert_eq!(
        c.part_state(n(2)),
        Some(hotslab::PartState::Retired),
        "retired once empty"
    );
    assert!(d.check_invariants().ok());
    d.online_node(n(2)).unwrap();
    assert_eq!(
        c.part_state(n(2)),
        Some(hotslab::PartState::Live),
        "quarantined part reused"
    );
    assert_eq!(d.violations.total(), 0);
}

#[test]
fn failed_online_leaves_state_unchanged() {
    let d = SlabDomain::simulated_with(3, quiet()).unwrap();
    let caches: Vec<_> = (0..4)
        .map(|i| {
            d.create_cache(CacheConfig::new(["a", "b", "c", "d"][i], 32))
                .unwrap()
        })
        .collect();
    d.offline_node(n(1)).unwrap();
    // Two caches reuse quarantined parts; make brand-new part allocations fail.
    let fresh = d.create_cache(CacheConfig::new("fresh", 32)).unwrap();
    d.fail_part_alloc_after(0);
    let err = d.online_node(n(1)).unwrap_err();
    assert!(
        matches!(
            err,
            HotplugError::Vetoed {
                error: NotifyError::NoMemory,
                ..
            }
        ),
        "{err:?}"
    );
    d.clear_part_faults();
    assert!(!d.hotplug().states.has_memory().test(n(1)));
    assert!(d.check_invariants().ok(), "{:?}", d.check_invariants());
    for c in caches.iter().chain([&fresh]) {
        assert_ne!(c.part_state(n(1)), Some(hotslab::PartState::Live));
    }
    d.online_node(n(1)).unwrap();
    assert!(d.check_invariants().ok());
    for c in caches.iter().chain([&fresh]) {
        assert_eq!(c.part_state(n(1)), Some(hotslab::PartState::Live));
    }
}

#[test]
fn hotplug_during_allocation_keeps_invariants_and_loses_nothing() {
    let d = SlabDomain::simulated_with(
        4,
        DomainConfig {
            drain_timeout: std::time::Duration::from_millis(5),
            ..quiet()
        },
    )
    .unwrap();
    let c = d.create_cache(CacheConfig::new("busy", 200)).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let (c, stop) = (c.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut live: Vec<(NonNull<u8>, u64)> = Vec::new();
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let p = c.alloc_node(NodeId::new(((i + t) % 4) as u16)).unwrap();
                    // SAFETY: live 200-byte object.
                    unsafe { p.as_ptr().cast::<u64>().write(i) };
                    live.push((p, i));
                    if live.len() > 64 {
                        let (q, tag) = live.swap_remove((i % 64) as usize);
                        // SAFETY: still live.
                        assert_eq!(
                            unsafe { q.as_ptr().cast::<u64>().read() },
                            tag,
                            "object corrupted"
                        );
                        c.free(q).unwrap();
                    }
                }
                for (q, tag) in live {
                    // SAFETY: still live.
                    assert_eq!(unsafe { q.as_ptr().cast::<u64>().read() }, tag);
                    c.free(q).unwrap();
                }
            })
        })
        .collect();
    let mut offlined = 0;
    for round in 0..40 {
        let node = n(1 + (round % 3) as u16);
        match d.offline_node(node) {
            Ok(()) => {
                offlined += 1;
                assert!(d.check_invariants().ok());
                d.online_node(node).unwrap();
            }
            Err(e) => assert!(e.is_busy(), "{e:?}"),
        }
        assert!(d.check_invariants().ok());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(c.stats().unwrap().active_objects, 0);
    assert_eq!(d.violations.total(), 0);
    let _ = offlined;
}

#[test]
fn shrink_returns_empty_slabs_to_the_page_source() {
    let d = SlabDomain::simulated_with(1, quiet()).unwrap();
    let c = d.create_cache(CacheConfig::new("shrinky", 1024)).unwrap();
    let before = d.committed_bytes();
    let v: Vec<_> = (0..20000).map(|_| c.alloc().unwrap()).collect();
    let full = d.committed_bytes();
    assert!(full >= before + 20000 * 1024);
    for p in v {
        c.free(p).unwrap();
    }
    let freed = c.shrink().unwrap();
    assert!(freed > 0);
    assert!(
        d.committed_bytes() <= before + (1 << 20),
        "shrink gave memory back: {} -> {}",
        full,
        d.committed_bytes()
    );
    c.destroy().unwrap();
}

#[test]
fn remote_frees_of_resting_slabs_are_reaped_without_shrink() {
    let d = SlabDomain::simulated_with(1, quiet()).unwrap();
    let c = d.create_cache(CacheConfig::new("reaped", 256)).unwrap();
    let base = d.committed_bytes();
    let objs: Vec<usize> = (0..100_000)
        .map(|_| c.alloc().unwrap().as_ptr() as usize)
        .collect();
    let full = d.committed_bytes();
    assert!(full >= base + 100_000 * 256);
    // Another thread frees everything: remote frees into slabs that rest in the part.
    let cc = c.clone();
    std::thread::spawn(move || {
        for p in objs {
            cc.free(NonNull::new(p as *mut u8).unwrap()).unwrap();
        }
    })
    .join()
    .unwrap();
    // The owner's next slow paths answer the reap hint; no shrink call.
    let mut keep = Vec::new();
    for _ in 0..2000 {
        keep.push(c.alloc().unwrap());
    }
    let after = d.committed_bytes();
    assert!(
        after < full / 4,
        "empty slabs went back to the page source: {full} -> {after}"
    );
    for p in keep {
        c.free(p).unwrap();
    }
}

/// A hotplug domain wider than the topology (here 300 nodes with memory over a 2-node topology, as the
/// create+destroy benches use past the topology's 128 slots): per-node tables cover every node the
/// hotplug domain has, so create gives each a part (I1), offline retires one and online brings it back.
/// (A node outside the topology has no slot for allocations aimed at it: `alloc_node` refuses it.)
#[test]
fn hotplug_domain_wider_than_the_topology() {
    use hotslab::hotplug_api::{HotplugDomain, LockKind};
    use hotslab::numa::{NodeMask, Topology};
    use hotslab::PartState;
    let wide: NodeMask = (0..300u16).map(NodeId::new).collect();
    for kind in LockKind::ALL {
        let hp = Arc::new(HotplugDomain::new(wide, wide, kind));
        let topo = Topology::simulated(2).unwrap();
        let d = SlabDomain::new(topo, hp, quiet()).unwrap();
        let c = d.create_cache(CacheConfig::new("wide", 64)).unwrap();
        let rep = d.check_invariants();
        assert!(rep.ok(), "{kind:?}: {rep:?}");
        assert_eq!(c.part_state(n(299)), Some(PartState::Live));
        // No topology slot: an explicit allocation there is refused; near-thread allocation works.
        assert!(c.alloc_node(n(250)).is_err());
        let p = c.alloc().unwrap();
        c.free(p).unwrap();
        d.offline_node(n(299)).unwrap();
        assert_ne!(c.part_state(n(299)), Some(PartState::Live));
        d.online_node(n(299)).unwrap();
        assert_eq!(c.part_state(n(299)), Some(PartState::Live));
        assert!(d.check_invariants().ok());
        c.destroy().unwrap();
    }
}
