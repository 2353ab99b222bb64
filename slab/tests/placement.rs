//! Slab placement by the thread's memory policy and cpuset on simulated topologies (every
//! virtual node is backed by this machine's memory, so which part a slab comes from is the
//! placement decision itself): bind, preferred, interleave, weighted interleave, the cpuset
//! filter and `alloc_node`'s error, nodes that are possible but absent until they come online,
//! and the real policy read once per thread and again on `refresh_mempolicy`. The fake policies
//! come from `set_thread_mempolicy` (ids of the domain's topology). Owns no library code.
#![cfg(not(miri))]

use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use hotslab::numa::{MemPolicy, NodeId, NodeMask, PolicyMode, Topology};
use hotslab::{CacheConfig, CacheError, DomainConfig, KmemCache, PartState, SlabDomain};
use hotslab_hotplug::{HotplugDomain, LockKind};

fn n(id: u16) -> NodeId {
    NodeId::new(id)
}

fn mask(list: &str) -> NodeMask {
    NodeMask::parse_list(list.as_bytes()).unwrap()
}

fn policy(mode: PolicyMode, nodes: &str) -> MemPolicy {
    MemPolicy::decode(mode.raw(), mask(nodes)).unwrap()
}

/// Held by the tests that touch the process-wide interleave weights: `refresh_mempolicy`
/// forgets them, and once did so in the middle of the weighted-interleave test running beside it
/// (its 3:1 pattern came out 1:1).
static WEIGHTS: Mutex<()> = Mutex::new(());

fn quiet() -> DomainConfig {
    DomainConfig {
        kmalloc: false,
        ..DomainConfig::default()
    }
}

/// A domain of `nodes` simulated nodes that places slabs by the thread's policy.
fn placed(nodes: usize) -> Arc<SlabDomain> {
    let d = SlabDomain::simulated_with(nodes, quiet()).unwrap();
    d.set_task_placement(true);
    d
}

/// Runs `f` on a fresh thread (a thread reads its policy once: each test starts clean).
fn on_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(f).join().unwrap()
}

/// Allocates `count` objects; returns them with the node of each, in allocation order.
fn alloc_many(c: &KmemCache, count: usize) -> (Vec<NonNull<u8>>, Vec<NodeId>) {
    let objs: Vec<_> = (0..count).map(|_| c.alloc().unwrap()).collect();
    let nodes = objs.iter().map(|&o| c.node_of(o).unwrap()).collect();
    (objs, nodes)
}

fn free_all(c: &KmemCache, objs: Vec<NonNull<u8>>) {
    for o in objs {
        c.free(o).unwrap();
    }
}

/// Consecutive objects on one node, as (node, how many): one run per slab (or per group of
/// slabs on the same node).
fn runs(nodes: &[NodeId]) -> Vec<(NodeId, usize)> {
    let mut out: Vec<(NodeId, usize)> = Vec::new();
    for &v in nodes {
        match out.last_mut() {
            Some((last, k)) if *last == v => *k += 1,
            _ => out.push((v, 1)),
        }
    }
    out
}

fn counts(nodes: &[NodeId]) -> BTreeMap<u16, usize> {
    let mut m = BTreeMap::new();
    for v in nodes {
        *m.entry(v.0).or_insert(0) += 1;
    }
    m
}

#[test]
fn bind_places_every_slab_on_the_bound_node() {
    let d = placed(4);
    on_thread(move || {
        hotslab::set_thread_mempolicy(policy(PolicyMode::Bind, "2"), None);
        let c = d.create_cache(CacheConfig::new("bind", 512)).unwrap();
        let (objs, nodes) = alloc_many(&c, 600);
        assert_eq!(counts(&nodes), BTreeMap::from([(2, 600)]));
        free_all(&c, objs);
        // Bind to two nodes: the nearer first (by tier, distance, id), never a third.
        hotslab::set_thread_mempolicy(policy(PolicyMode::Bind, "1,3"), None);
        let c2 = d.create_cache(CacheConfig::new("bind2", 512)).unwrap();
        let (objs, nodes) = alloc_many(&c2, 300);
        assert!(nodes.iter().all(|v| v.0 == 1 || v.0 == 3), "{nodes:?}");
        free_all(&c2, objs);
    });
}

#[test]
fn preferred_places_slabs_on_the_preferred_node() {
    let d = placed(4);
    on_thread(move || {
        hotslab::set_thread_mempolicy(policy(PolicyMode::Preferred, "3"), None);
        let c = d.create_cache(CacheConfig::new("pref", 256)).unwrap();
        let (objs, nodes) = alloc_many(&c, 500);
        assert_eq!(counts(&nodes), BTreeMap::from([(3, 500)]));
        free_all(&c, objs);
    });
}

#[test]
fn interleave_takes_the_nodes_in_turn_one_slab_each() {
    let d = placed(4);
    on_thread(move || {
        hotslab::set_thread_mempolicy(policy(PolicyMode::Interleave, "0-3"), None);
        let c = d.create_cache(CacheConfig::new("inter", 1024)).unwrap();
        // The first slab's run tells its capacity; allocate six rounds of four slabs.
        let first = c.alloc().unwrap();
        let first_node = c.node_of(first).unwrap();
        let mut objs = vec![first];
        let mut nodes = vec![first_node];
        let mut k = 1;
        loop {
            let o = c.alloc().unwrap();
            let v = c.node_of(o).unwrap();
            objs.push(o);
            nodes.push(v);
            if v != first_node {
                break;
            }
            k += 1;
        }
        let cap = k;
        let (more, more_nodes) = alloc_many(&c, cap * 4 * 6);
        objs.extend(more);
        nodes.extend(more_nodes);
        let r = runs(&nodes);
        assert!(r.len() >= 20, "{r:?}");
        for w in r.windows(2) {
            assert_eq!(w[1].0 .0, (w[0].0 .0 + 1) % 4, "round robin: {r:?}");
        }
        // Full slabs in between: every complete run is one slab.
        for &(_, len) in &r[1..r.len() - 1] {
            assert_eq!(len, cap, "{r:?}");
        }
        free_all(&c, objs);
    });
}

#[test]
fn weighted_interleave_gives_each_node_its_weight_in_slabs() {
    let _w = WEIGHTS.lock().unwrap_or_else(|e| e.into_inner());
    let d = placed(2);
    on_thread(move || {
        hotslab::set_interleave_weight(n(0), 3);
        hotslab::set_interleave_weight(n(1), 1);
        hotslab::set_thread_mempolicy(policy(PolicyMode::WeightedInterleave, "0-1"), None);
        let c = d.create_cache(CacheConfig::new("weighted", 1024)).unwrap();
        let (objs, nodes) = alloc_many(&c, 4000);
        let r = runs(&nodes);
        // Whole rounds (skip the first and last, possibly partial): node 0 gets three slabs
        // for each of node 1's.
        let inner = &r[1..r.len() - 1];
        assert!(inner.len() >= 4, "{r:?}");
        let len_of = |node: u16| inner.iter().find(|x| x.0 .0 == node).map(|x| x.1).unwrap();
        assert_eq!(len_of(0), 3 * len_of(1), "{r:?}");
        free_all(&c, objs);
        hotslab::forget_interleave_weights();
    });
}

#[test]
fn the_cpuset_is_never_left_and_alloc_node_outside_it_is_an_error() {
    let d = placed(4);
    on_thread(move || {
        // Default policy (the CPU's node, which may be 0 or 1), cpuset {1,3}.
        hotslab::set_thread_mempolicy(MemPolicy::DEFAULT, Some(mask("1,3")));
        let c = d.create_cache(CacheConfig::new("cpuset", 256)).unwrap();
        let (objs, nodes) = alloc_many(&c, 400);
        assert!(nodes.iter().all(|v| v.0 == 1 || v.0 == 3), "{nodes:?}");
        free_all(&c, objs);
        assert_eq!(c.alloc_node(n(0)), Err(CacheError::NodeNotAllowed(0)));
        assert_eq!(c.alloc_node(n(2)), Err(CacheError::NodeNotAllowed(2)));
        let o = c.alloc_node(n(3)).unwrap();
        assert_eq!(c.node_of(o), Some(n(3)));
        c.free(o).unwrap();
        let err = CacheError::NodeNotAllowed(2).to_string();
        assert!(
            err.contains("node 2") && err.contains("mems_allowed"),
            "{err}"
        );
        // A bind policy naming a node outside the cpuset keeps to the cpuset.
        hotslab::set_thread_mempolicy(policy(PolicyMode::Bind, "0"), Some(mask("3")));
        let (objs, nodes) = alloc_many(&c, 100);
        assert_eq!(counts(&nodes), BTreeMap::from([(3, 100)]));
        free_all(&c, objs);
    });
}

#[test]
fn a_domain_without_task_placement_ignores_the_policy() {
    let d = SlabDomain::simulated_with(4, quiet()).unwrap();
    assert!(!d.task_placement());
    // A node without CPUs: a slab there could only be the policy's doing.
    let Some(target) = d
        .topology()
        .nodes()
        .iter()
        .find(|&v| d.topology().node_cpus(v).is_empty())
    else {
        eprintln!("every simulated node has CPUs here: nothing to tell apart");
        return;
    };
    on_thread(move || {
        let t = target.to_string();
        hotslab::set_thread_mempolicy(policy(PolicyMode::Bind, &t), Some(mask(&t)));
        let c = d.create_cache(CacheConfig::new("plain", 256)).unwrap();
        let (objs, nodes) = alloc_many(&c, 300);
        assert!(nodes.iter().all(|&v| v != target), "{nodes:?}");
        let o = c.alloc_node(n(0)).unwrap();
        c.free(o).unwrap();
        free_all(&c, objs);
    });
}

/// Four virtual nodes; 2 and 3 possible but absent (no memory) at start.
fn with_absent_nodes() -> (Arc<SlabDomain>, Arc<HotplugDomain>) {
    let base = Topology::from_sysfs().unwrap();
    let mut t = Topology::new_boxed();
    Topology::simulate_absent_into(&base, 4, &mask("2-3"), &mut t).unwrap();
    assert_eq!(t.nodes(), mask("0-3"));
    let hp = Arc::new(HotplugDomain::new(
        mask("0-3"),
        t.memory_nodes(),
        LockKind::Seed,
    ));
    let d = SlabDomain::new(t, hp.clone(), quiet()).unwrap();
    d.set_task_placement(true);
    (d, hp)
}

#[test]
fn a_possible_node_gets_parts_and_slabs_once_it_comes_online() {
    let (d, hp) = with_absent_nodes();
    on_thread(move || {
        let c = d.create_cache(CacheConfig::new("late", 512)).unwrap();
        assert_eq!(c.part_state(n(1)), Some(PartState::Live));
        assert_eq!(c.part_state(n(2)), None);
        // Bound to a node without memory: the kernel's rule, every allowed node with memory.
        hotslab::set_thread_mempolicy(policy(PolicyMode::Bind, "2"), None);
        let (objs, nodes) = alloc_many(&c, 200);
        assert!(nodes.iter().all(|v| v.0 < 2), "{nodes:?}");
        free_all(&c, objs);
        // Node 2 gains memory: the cache gets a part, and the bound thread's slabs go there.
        hp.online_node(n(2)).unwrap();
        assert_eq!(c.part_state(n(2)), Some(PartState::Live));
        let (objs, nodes) = alloc_many(&c, 2000);
        // Slabs the thread already owns are used up first; every new one is on node 2.
        let last = *nodes.last().unwrap();
        assert_eq!(last, n(2), "{:?}", runs(&nodes));
        let after: Vec<_> = nodes.iter().skip_while(|v| v.0 != 2).collect();
        assert!(after.iter().all(|v| v.0 == 2), "{:?}", runs(&nodes));
        free_all(&c, objs);
        assert!(d.check_invariants().ok());
    });
}

#[test]
fn the_real_policy_is_read_once_per_thread_and_on_refresh() {
    use hotslab::numa::policy::{set_mempolicy, MPOL_DEFAULT, MPOL_INTERLEAVE};
    let _w = WEIGHTS.lock().unwrap_or_else(|e| e.into_inner());
    let mem = hotslab::numa::sysfs::read_node_mask(hotslab::numa::NodeState::HasMemory).unwrap();
    let first = NodeMask::single(mem.first().unwrap());
    on_thread(move || {
        let before = hotslab::thread_placement();
        assert_eq!(before.mode, PolicyMode::Default);
        assert!(!before.overridden);
        assert!(first.is_subset(&before.mems_allowed));
        set_mempolicy(MPOL_INTERLEAVE, Some(&first)).unwrap();
        // Not read again by itself ...
        assert_eq!(hotslab::thread_placement().mode, PolicyMode::Default);
        // ... but on request.
        hotslab::refresh_mempolicy();
        let now = hotslab::thread_placement();
        assert_eq!((now.mode, now.nodes), (PolicyMode::Interleave, first));
        // An override lasts until the next refresh.
        hotslab::set_thread_mempolicy(policy(PolicyMode::Bind, "0"), None);
        assert!(hotslab::thread_placement().overridden);
        set_mempolicy(MPOL_DEFAULT, None).unwrap();
        hotslab::refresh_mempolicy();
        assert_eq!(hotslab::thread_placement().mode, PolicyMode::Default);
    });
}

#[test]
fn preferred_nodes_are_tried_tier_first() {
    // Nodes 0, 1 and 3 in the fast tier, node 2 (a CXL expander, say) in a slower one. Without
    // tiers the tie on distance goes to the lower id, node 2.
    let mut t = Topology::simulated(4).unwrap();
    if !(t.node_cpus(n(2)).is_empty() && t.node_cpus(n(3)).is_empty()) {
        // A thread on node 2 would start from the slow tier (its own).
        eprintln!("nodes 2 and 3 have CPUs here: skipped");
        return;
    }
    for (v, tier) in [(0, 0), (1, 0), (2, 1), (3, 0)] {
        assert!(t.set_tier(n(v), Some(tier)));
    }
    let d = SlabDomain::with_topology(t, quiet()).unwrap();
    d.set_task_placement(true);
    let plain = placed(4);
    on_thread(move || {
        hotslab::set_thread_mempolicy(policy(PolicyMode::Preferred, "2-3"), None);
        let c = d.create_cache(CacheConfig::new("tiered", 256)).unwrap();
        let (objs, nodes) = alloc_many(&c, 300);
        assert_eq!(counts(&nodes), BTreeMap::from([(3, 300)]));
        free_all(&c, objs);
        let c = plain
            .create_cache(CacheConfig::new("untiered", 256))
            .unwrap();
        let (objs, nodes) = alloc_many(&c, 300);
        assert_eq!(counts(&nodes), BTreeMap::from([(2, 300)]));
        free_all(&c, objs);
    });
}

/// A bind set whose node lost its memory before the domain heard of it (the kernel refuses the
/// `mbind` with `EINVAL`, the domain still counts the node as having memory): the allocation
/// falls back to the other allowed nodes, as the kernel's own does, instead of failing. Node 7
/// of this topology is its own real id, which this machine does not have, so every `mbind` there
/// is refused; a plain bind to it on a domain that knew would have fallen back already.
#[test]
fn a_bind_refused_by_the_kernel_falls_back_instead_of_failing() {
    let real0 = hotslab::numa::sysfs::read_node_mask(hotslab::numa::NodeState::HasMemory)
        .unwrap()
        .first()
        .unwrap();
    if real0.0 == 7 {
        return;
    }
    let cpus: Vec<usize> = (0..1).collect();
    let topo = Topology::from_parts(&[(real0, &cpus, 1 << 30), (n(7), &[], 1 << 30)], |a, b| {
        if a == b {
            10
        } else {
            20
        }
    })
    .unwrap();
    let d = SlabDomain::with_topology(topo, quiet()).unwrap();
    d.set_task_placement(true);
    on_thread(move || {
        hotslab::set_thread_mempolicy(policy(PolicyMode::Bind, "7"), None);
        let c = d.create_cache(CacheConfig::new("refused", 256)).unwrap();
        // Several slabs' worth: every refill meets the refusal again.
        let (objs, nodes) = alloc_many(&c, 200);
        assert!(nodes.iter().all(|&v| v == real0), "{:?}", counts(&nodes));
        free_all(&c, objs);
        // alloc_node on the refused node: its fallback order serves it.
        let o = c.alloc_node(n(7)).unwrap();
        assert_eq!(c.node_of(o), Some(real0));
        c.free(o).unwrap();
    });
}

/// Allocates from a cache on a fresh thread bound to node 2 while node 2 goes offline (called
/// from a notifier that runs after slab's: the node's parts drain, the node still counts as
/// having memory), and records where the objects came from.
struct BindDuringOffline {
    cache: KmemCache,
    nodes: std::sync::Mutex<Option<Result<Vec<NodeId>, CacheError>>>,
}

impl hotslab::hotplug_api::MemoryCallback for BindDuringOffline {
    fn name(&self) -> &'static str {
        "bind-during-offline"
    }
    fn notify(
        &self,
        ev: &hotslab::hotplug_api::MemoryNotify,
    ) -> Result<(), hotslab::hotplug_api::NotifyError> {
        if ev.event == hotslab::hotplug_api::MemoryEvent::GoingOffline && ev.node == n(2) {
            let c = self.cache.clone();
            let got = std::thread::spawn(move || {
                hotslab::set_thread_mempolicy(policy(PolicyMode::Bind, "2"), None);
                let mut objs = Vec::new();
                let mut nodes = Vec::new();
                for _ in 0..100 {
                    let o = c.alloc()?;
                    nodes.push(c.node_of(o).unwrap());
                    objs.push(o);
                }
                free_all(&c, objs);
                Ok(nodes)
            })
            .join()
            .unwrap();
            *self.nodes.lock().unwrap() = Some(got);
        }
        Ok(())
    }
}

/// A thread bound to a node that is going offline (its parts drain) allocates from the other
/// nodes, as after the offline, instead of failing.
#[test]
fn a_bind_to_a_draining_node_falls_back_instead_of_failing() {
    let d = placed(3);
    let c = d.create_cache(CacheConfig::new("draining", 256)).unwrap();
    let cb = Arc::new(BindDuringOffline {
        cache: c.clone(),
        nodes: std::sync::Mutex::new(None),
    });
    let h = d
        .hotplug()
        .register_notifier(hotslab::hotplug_api::CallbackRef::Shared(cb.clone()), 0)
        .unwrap();
    d.offline_node(n(2)).unwrap();
    assert!(d.hotplug().unregister_notifier(h));
    let nodes = cb.nodes.lock().unwrap().take().expect("the notifier ran");
    let nodes = nodes.expect("a bound allocation during the offline succeeds");
    assert!(nodes.iter().all(|v| v.0 != 2), "{:?}", counts(&nodes));
    c.destroy().unwrap();
}
