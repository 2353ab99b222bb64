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
//! Preemption bound: 2 for every model here (stated again on each). The executions explored are counted and
//! printed (`cargo test ... -- --nocapture`).
#![cfg(loom)]

mod loom_common;

use loom_common::{explore, World};
use hotslab::numa::NodeId;
use hotslab::{CacheConfig, CacheError, LockingMode, PartState};
use loom::thread;

/// Preemption bound of every model in this file.
const BOUND: usize = 2;

const N1: NodeId = NodeId::new(1);

// ---- model 1: create ∥ online-node -------------------------------------------------------------------------

/// One execution of create ∥ online(1): node 1 is possible but has no memory at the start. Thread A creates a
/// cache, thread B onlines node 1. Afterwards node 1 has memory, so the cache must have a live part for it
/// (I1), and an allocation on node 1 must find that part (no `missing_part`). Returns whether this execution
/// broke an invariant; with `strict`, a break panics at once (loom then reports the schedule).
fn create_vs_online(mode: LockingMode, mutate: bool, strict: bool) -> bool {
    let w = World::new(mode, &[0]);
    w.domain.mutation_skip_read_side(mutate);
    let a = {
        let d = w.domain.clone();
        thread::spawn(move || d.create_cache(CacheConfig::new("race", 64)).expect("create"))
    };
    let b = {
        let d = w.domain.clone();
        thread::spawn(move || d.online_node(N1))
    };
    let cache = a.join().unwrap();
    b.join().unwrap().expect("online of a possible node without memory succeeds");
    assert!(w.domain.hotplug().states.has_memory().test(N1));

    let report = w.domain.check_invariants();
    let part = cache.part_state(N1);
    // The first allocation that wants node 1: with the part missing it falls back to node 0 (the NULL part is
    // skipped, as in SLUB) and the domain counts `missing_part`.
    let obj = cache.alloc_node(N1).expect("alloc_node(1)");
    let served_by = cache.node_of(obj);
    cache.free(obj).expect("free");
    let broke = !report.ok() || w.domain.violations.total() > 0;
    if strict {
        assert!(report.ok(), "{}: I1 broken after create ∥ online: {report:?}", mode.name());
        assert_eq!(part, Some(PartState::Live), "{}: node 1 part", mode.name());
        assert_eq!(served_by, Some(N1), "{}: alloc_node(1) must be served by node 1", mode.name());
        w.assert_no_violations("create ∥ online");
    } else if broke {
        // The failure Legacy must show: no live part for a node with memory.
        assert_ne!(part, Some(PartState::Live), "a missing part was reported for a live one");
    }
    cache.destroy().expect("destroy with no live object");
    broke
}

/// Preemption bound 2. Legacy: some schedule leaves the new cache without a part for node 1.
#[test]
fn create_vs_online_legacy_finds_missing_part() {
    let out = explore("create ∥ online, Legacy", BOUND, || create_vs_online(LockingMode::Legacy, false, false));
    out.assert_found();
}

/// Preemption bound 2. OnlineMems: create runs wholly before or after the online; I1 holds in every schedule.
#[test]
fn create_vs_online_online_mems_is_clean() {
    let out = explore("create ∥ online, OnlineMems", BOUND, || create_vs_online(LockingMode::OnlineMems, false, true));
    out.assert_clean();
}

/// Preemption bound 2. SlabNodes: create iterates `slab_nodes`, which the callback sets under slab_mutex after
/// making the parts; I1 holds in every schedule.
#[test]
fn create_vs_online_slab_nodes_is_clean() {
    let out = explore("create ∥ online, SlabNodes", BOUND, || create_vs_online(LockingMode::SlabNodes, false, true));
    out.assert_clean();
}

/// Preemption bound 2. Mutation check: OnlineMems with create's read side switched off must break again.
#[test]
fn create_vs_online_mutation_is_caught() {
    let out = explore("create ∥ online, OnlineMems without read side", BOUND, || {
        create_vs_online(LockingMode::OnlineMems, true, false)
    });
    out.assert_found();
}

// ---- model 2: destroy ∥ offline-node ------------------------------------------------------------------------

/// One execution of destroy ∥ offline(1): nodes 0 and 1 have memory, the cache (no objects) exists before the
/// threads start. Thread A destroys it, thread B offlines node 1 (refusable; nothing is live, so it succeeds).
/// Every part of the destroyed cache must be retired exactly once and never used after retirement.
fn destroy_vs_offline(mode: LockingMode, mutate: bool, strict: bool) -> bool {
    let w = World::new(mode, &[0, 1]);
    let cache = w.domain.create_cache(CacheConfig::new("race", 64)).expect("create");
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
    assert_eq!(offlined, Ok(()), "offline of a node without live objects succeeds");
    assert_eq!(cache.alloc_node(NodeId::new(0)), Err(CacheError::Destroyed));
    let report = w.domain.check_invariants();
    assert_eq!(report.caches, 0);
    let broke = !report.ok() || w.domain.violations.total() > 0;
    if strict {
        w.assert_no_violations("destroy ∥ offline");
        for nid in [NodeId::new(0), N1] {
            assert_eq!(cache.part_state(nid), Some(PartState::Retired), "{}: part of {nid} after destroy", mode.name());
        }
    }
    broke
}

/// Preemption bound 2. Legacy: some schedule leaks node 1's part (destroy walks the mask after node 1 left it,
/// and OFFLINE no longer sees the unlinked cache) or retires it twice.
#[test]
fn destroy_vs_offline_legacy_finds_leak_or_double_retire() {
    let out = explore("destroy ∥ offline, Legacy", BOUND, || destroy_vs_offline(LockingMode::Legacy, false, false));
    out.assert_found();
}

/// Preemption bound 2. OnlineMems: destroy runs wholly before or after the offline; no violation.
#[test]
fn destroy_vs_offline_online_mems_is_clean() {
    let out =
        explore("destroy ∥ offline, OnlineMems", BOUND, || destroy_vs_offline(LockingMode::OnlineMems, false, true));
    out.assert_clean();
}

/// Preemption bound 2. SlabNodes: destroy walks `slab_nodes` under slab_mutex; parts are never retired by an
/// offline, so destroy retires each exactly once; no violation.
#[test]
fn destroy_vs_offline_slab_nodes_is_clean() {
    let out =
        explore("destroy ∥ offline, SlabNodes", BOUND, || destroy_vs_offline(LockingMode::SlabNodes, false, true));
    out.assert_clean();
}

/// Preemption bound 2. Mutation check: OnlineMems with destroy's read side switched off must break again.
#[test]
fn destroy_vs_offline_mutation_is_caught() {
    let out = explore("destroy ∥ offline, OnlineMems without read side", BOUND, || {
        destroy_vs_offline(LockingMode::OnlineMems, true, false)
    });
    out.assert_found();
}

// ---- model 3: shrink ∥ offline-node -------------------------------------------------------------------------

/// One execution of shrink ∥ offline(1): as model 2 with `shrink` in thread A. A shrink that read the mask
/// before the offline must not use node 1's part after OFFLINE retired it.
fn shrink_vs_offline(mode: LockingMode, mutate: bool, strict: bool) -> bool {
    let w = World::new(mode, &[0, 1]);
    let cache = w.domain.create_cache(CacheConfig::new("race", 64)).expect("create");
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
    assert_eq!(offlined, Ok(()), "offline of a node without live objects succeeds");
    let report = w.domain.check_invariants();
    let broke = !report.ok() || w.domain.violations.total() > 0;
    if strict {
        assert!(report.ok(), "{}: I1 broken after shrink ∥ offline: {report:?}", mode.name());
        w.assert_no_violations("shrink ∥ offline");
        let want = if mode == LockingMode::SlabNodes { PartState::Draining } else { PartState::Retired };
        assert_eq!(cache.part_state(N1), Some(want), "{}: node 1 part after offline", mode.name());
        assert_eq!(cache.part_state(NodeId::new(0)), Some(PartState::Live));
    } else if broke {
        eprintln!("DEBUG {report:?} {:?}", w.domain.violations);
        assert!(w.domain.violations.use_after_retire.load(std::sync::atomic::Ordering::Relaxed) > 0);
    }
    broke
}

/// Preemption bound 2. Legacy: some schedule has shrink use node 1's part after OFFLINE retired it.
#[test]
fn shrink_vs_offline_legacy_finds_use_after_retire() {
    let out = explore("shrink ∥ offline, Legacy", BOUND, || shrink_vs_offline(LockingMode::Legacy, false, false));
    out.assert_found();
}

/// Preemption bound 2. OnlineMems: shrink runs wholly before or after the offline; no violation.
#[test]
fn shrink_vs_offline_online_mems_is_clean() {
    let out = explore("shrink ∥ offline, OnlineMems", BOUND, || shrink_vs_offline(LockingMode::OnlineMems, false, true));
    out.assert_clean();
}

/// Preemption bound 2. SlabNodes: parts are never retired, so a stale mask is harmless; no violation.
#[test]
fn shrink_vs_offline_slab_nodes_is_clean() {
    let out = explore("shrink ∥ offline, SlabNodes", BOUND, || shrink_vs_offline(LockingMode::SlabNodes, false, true));
    out.assert_clean();
}

/// Preemption bound 2. Mutation check: OnlineMems with shrink's read side switched off must break again.
#[test]
fn shrink_vs_offline_mutation_is_caught() {
    let out = explore("shrink ∥ offline, OnlineMems without read side", BOUND, || {
        shrink_vs_offline(LockingMode::OnlineMems, true, false)
    });
    out.assert_found();
}
