//! loom models of the race the online-mems lock exists to fix (DESIGN.md §1.2, §4; issue 4), over the real
//! `hotslab` code: create ∥ online-node, destroy ∥ offline-node, shrink ∥ offline-node, in every locking mode,
//! plus the mutation check. Owns only these models; it must not touch `slab/src` or any shared state.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p hotslab --release --test 'loom_*'`
//!
//! Every model calls the same public functions users call (`SlabDomain::create_cache`, `KmemCache::destroy`,
//! `KmemCache::shrink`, `SlabDomain::online_node` / `offline_node`) on a domain built fresh in each execution;
//! the crate's locks and atomics are loom's (through `hotslab_hotplug::sync`), so loom explores every schedule
//! of them. In `Legacy` each model must FIND a violation in at least one execution (the test counts the
//! executions that broke an invariant and asserts the count is non-zero after `check` returns); in
//! `OnlineMems` and `SlabNodes` every execution must keep I1 and count no violation (asserted inside each
//! execution). The mutation tests switch the read side off in `OnlineMems` and must find the violation again:
//! a model that cannot fail proves nothing.
//!
//! Preemption bound: 8 for every model here (stated again on each): when written, the OnlineMems and SlabNodes
//! models explored no more schedules at bound 12 than at 8, and every model here runs in well under a second.
//! The executions explored, and in how many each kind of break showed, are printed (`-- --nocapture`).
#![cfg(loom)]

mod loom_common;

use hotslab::numa::NodeId;
use hotslab::{CacheConfig, CacheError, LockingMode, PartState};
use loom::thread;
use loom_common::{expects_clean, explore, Kind, Seen, World};

/// Preemption bound of every model in this file.
const BOUND: usize = 8;

const N1: NodeId = NodeId::new(1);

// ---- model 1: create ∥ online-node -------------------------------------------------------------------------

/// One execution of create ∥ online(1): node 1 is possible but has no memory at the start. Thread A creates a
/// cache, thread B onlines node 1. Afterwards node 1 has memory, so the cache must have a live part for it
/// (I1), and an allocation on node 1 must find that part (no `missing_part`). Returns what the execution saw;
/// in the modes that must stay clean a break panics at once, so loom reports the schedule.
fn create_vs_online(mode: LockingMode, mutate: bool) -> Seen {
    let strict = expects_clean(mode, mutate);
    let w = World::new(mode, &[0]);
    w.domain.mutation_skip_read_side(mutate);
    let a = {
        let d = w.domain.clone();
        thread::spawn(move || {
            d.create_cache(CacheConfig::new("race", 64))
                .expect("create")
        })
    };
    let b = {
        let d = w.domain.clone();
        thread::spawn(move || d.online_node(N1))
    };
    let cache = a.join().unwrap();
    b.join()
        .unwrap()
        .expect("online of a possible node without memory succeeds");
    assert!(w.domain.hotplug().states.has_memory().test(N1));

    let report = w.domain.check_invariants();
    let part = cache.part_state(N1);
    // The first allocation that wants node 1: with the part missing it falls back to node 0 (the NULL part is
    // skipped, as in SLUB) and the domain counts `missing_part`.
    let obj = cache.alloc_node(N1).expect("alloc_node(1)");
    let served_by = cache.node_of(obj);
    cache.free(obj).expect("free");
    let seen = Seen::of(&w);
    if strict {
        assert!(
            report.ok(),
            "{}: I1 broken after create ∥ online: {report:?}",
            mode.name()
        );
        assert_eq!(part, Some(PartState::Live), "{}: node 1 part", mode.name());
        assert_eq!(
            served_by,
            Some(N1),
            "{}: alloc_node(1) must be served by node 1",
            mode.name()
        );
        w.assert_no_violations("create ∥ online");
    } else if seen.broke() {
        // The failure Legacy shows: no live part for a node with memory, caught both by I1 and by the
        // allocation that wanted node 1.
        assert_eq!(
            part, None,
            "a missing part was reported for an existing one"
        );
        assert!(seen.i1_broken && seen.missing_part == 1, "{seen:?}");
    }
    cache.destroy().expect("destroy with no live object");
    seen
}

/// Preemption bound 8. Legacy: some schedule leaves the new cache without a part for node 1.
#[test]
fn create_vs_online_legacy_finds_missing_part() {
    let out = explore("create ∥ online, Legacy", BOUND, || {
        create_vs_online(LockingMode::Legacy, false)
    });
    out.assert_found(&[Kind::I1, Kind::MissingPart]);
}

/// Preemption bound 8. OnlineMems: create runs wholly before or after the online; I1 holds in every schedule.
#[test]
fn create_vs_online_online_mems_is_clean() {
    let out = explore("create ∥ online, OnlineMems", BOUND, || {
        create_vs_online(LockingMode::OnlineMems, false)
    });
    out.assert_clean();
}

/// Preemption bound 8. SlabNodes: create iterates `slab_nodes`, which the callback sets under slab_mutex after
/// making the parts; I1 holds in every schedule.
#[test]
fn create_vs_online_slab_nodes_is_clean() {
    let out = explore("create ∥ online, SlabNodes", BOUND, || {
        create_vs_online(LockingMode::SlabNodes, false)
    });
    out.assert_clean();
}

/// Preemption bound 8. Mutation check: OnlineMems with create's read side switched off must break again.
#[test]
fn create_vs_online_mutation_is_caught() {
    let out = explore(
        "create ∥ online, OnlineMems without read side",
        BOUND,
        || create_vs_online(LockingMode::OnlineMems, true),
    );
    out.assert_found(&[Kind::I1, Kind::MissingPart]);
}

// ---- model 2: destroy ∥ offline-node ------------------------------------------------------------------------

/// One execution of destroy ∥ offline(1): nodes 0 and 1 have memory, the cache (no objects) exists before the
/// threads start. Thread A destroys it, thread B offlines node 1 (refusable; nothing is live, so it succeeds).
/// Every part of the destroyed cache must be retired exactly once and never used after retirement.
fn destroy_vs_offline(mode: LockingMode, mutate: bool) -> Seen {
    let strict = expects_clean(mode, mutate);
    let w = World::new(mode, &[0, 1]);
    let cache = w
        .domain
        .create_cache(CacheConfig::new("race", 64))
        .expect("create");
    assert_eq!(cache.part_state(N1), Some(PartState::Live));
    w.domain.mutation_skip_read_side(mutate);
    let a = {
        let c = cache.clone();
        thread::spawn(move || c.destroy())
    };
    let b = {
        let d = w.domain.clone();
        thread::spawn(move || d.offline_node(N1))
    };
    let destroyed = a.join().unwrap();
    let offlined = b.join().unwrap();
    assert_eq!(destroyed, Ok(()), "destroy of an empty cache succeeds");
    assert_eq!(
        offlined,
        Ok(()),
        "offline of a node without live objects succeeds"
    );
    assert_eq!(cache.alloc_node(NodeId::new(0)), Err(CacheError::Destroyed));
    assert_eq!(w.domain.cache_count(), 0);
    let seen = Seen::of(&w);
    if strict {
        w.assert_no_violations("destroy ∥ offline");
        for nid in [NodeId::new(0), N1] {
            assert_eq!(
                cache.part_state(nid),
                Some(PartState::Retired),
                "{}: part of {nid} after destroy",
                mode.name()
            );
        }
    }
    seen
}

/// Preemption bound 8. Legacy: some schedule leaks node 1's part (destroy walks the mask after node 1 left it,
/// and OFFLINE no longer sees the unlinked cache) or retires it twice.
#[test]
fn destroy_vs_offline_legacy_finds_leak_or_double_retire() {
    let out = explore("destroy ∥ offline, Legacy", BOUND, || {
        destroy_vs_offline(LockingMode::Legacy, false)
    });
    out.assert_found(&[Kind::LeakedPart, Kind::DoubleRetire, Kind::UseAfterRetire]);
}

/// Preemption bound 8. OnlineMems: destroy runs wholly before or after the offline; no violation.
#[test]
fn destroy_vs_offline_online_mems_is_clean() {
    let out = explore("destroy ∥ offline, OnlineMems", BOUND, || {
        destroy_vs_offline(LockingMode::OnlineMems, false)
    });
    out.assert_clean();
}

/// Preemption bound 8. SlabNodes: an offline never retires a part (it parks it as draining under slab_mutex),
/// so destroy, which retires every part the cache has under slab_mutex, retires each exactly once.
#[test]
fn destroy_vs_offline_slab_nodes_is_clean() {
    let out = explore("destroy ∥ offline, SlabNodes", BOUND, || {
        destroy_vs_offline(LockingMode::SlabNodes, false)
    });
    out.assert_clean();
}

/// Preemption bound 8. Mutation check: OnlineMems with destroy's read side switched off must break again.
#[test]
fn destroy_vs_offline_mutation_is_caught() {
    let out = explore(
        "destroy ∥ offline, OnlineMems without read side",
        BOUND,
        || destroy_vs_offline(LockingMode::OnlineMems, true),
    );
    out.assert_found(&[Kind::LeakedPart, Kind::DoubleRetire, Kind::UseAfterRetire]);
}

// ---- model 3: shrink ∥ offline-node -------------------------------------------------------------------------

/// One execution of shrink ∥ offline(1): as model 2 with `shrink` in thread A. A shrink that read the mask
/// before the offline must not use node 1's part after OFFLINE retired it.
fn shrink_vs_offline(mode: LockingMode, mutate: bool) -> Seen {
    let strict = expects_clean(mode, mutate);
    let w = World::new(mode, &[0, 1]);
    let cache = w
        .domain
        .create_cache(CacheConfig::new("race", 64))
        .expect("create");
    w.domain.mutation_skip_read_side(mutate);
    let a = {
        let c = cache.clone();
        thread::spawn(move || c.shrink())
    };
    let b = {
        let d = w.domain.clone();
        thread::spawn(move || d.offline_node(N1))
    };
    let shrunk = a.join().unwrap();
    let offlined = b.join().unwrap();
    assert_eq!(shrunk, Ok(0), "nothing to free in an unused cache");
    assert_eq!(
        offlined,
        Ok(()),
        "offline of a node without live objects succeeds"
    );
    let seen = Seen::of(&w);
    if strict {
        assert!(
            !seen.i1_broken,
            "{}: I1 broken after shrink ∥ offline",
            mode.name()
        );
        w.assert_no_violations("shrink ∥ offline");
        let want = if mode == LockingMode::SlabNodes {
            PartState::Draining
        } else {
            PartState::Retired
        };
        assert_eq!(
            cache.part_state(N1),
            Some(want),
            "{}: node 1 part after offline",
            mode.name()
        );
        assert_eq!(cache.part_state(NodeId::new(0)), Some(PartState::Live));
    }
    seen
}

/// Preemption bound 8. Legacy: some schedule has shrink use node 1's part after OFFLINE retired it (others
/// show a double retire: shrink retires the drained part between the mask clear and OFFLINE, which retires it
/// again; only use-after-retire is required here).
#[test]
fn shrink_vs_offline_legacy_finds_use_after_retire() {
    let out = explore("shrink ∥ offline, Legacy", BOUND, || {
        shrink_vs_offline(LockingMode::Legacy, false)
    });
    out.assert_found(&[Kind::UseAfterRetire]);
}

/// Preemption bound 8. OnlineMems: shrink runs wholly before or after the offline; no violation.
#[test]
fn shrink_vs_offline_online_mems_is_clean() {
    let out = explore("shrink ∥ offline, OnlineMems", BOUND, || {
        shrink_vs_offline(LockingMode::OnlineMems, false)
    });
    out.assert_clean();
}

/// Preemption bound 8. SlabNodes: parts are never retired, so a stale mask is harmless; no violation.
#[test]
fn shrink_vs_offline_slab_nodes_is_clean() {
    let out = explore("shrink ∥ offline, SlabNodes", BOUND, || {
        shrink_vs_offline(LockingMode::SlabNodes, false)
    });
    out.assert_clean();
}

/// Preemption bound 8. Mutation check: OnlineMems with shrink's read side switched off must break again.
#[test]
fn shrink_vs_offline_mutation_is_caught() {
    let out = explore(
        "shrink ∥ offline, OnlineMems without read side",
        BOUND,
        || shrink_vs_offline(LockingMode::OnlineMems, true),
    );
    out.assert_found(&[Kind::UseAfterRetire]);
}
