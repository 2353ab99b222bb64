//! hwloc (`Topology::detect`) and the no-allocation sysfs reader (`Topology::from_sysfs`) must
//! describe the same machine: nodes, CPUs per node, distances, and memory within a few percent.
#![cfg(all(feature = "hwloc", not(miri)))]

use hotslab_numa::Topology;

#[test]
fn detect_and_sysfs_agree() {
    let h = Topology::detect().unwrap();
    let s = Topology::from_sysfs().unwrap();
    assert!(!h.is_simulated() && !s.is_simulated());
    assert_eq!(h.nodes(), s.nodes(), "node sets");
    assert_eq!(h.cpus(), s.cpus(), "cpu sets");
    assert_eq!(h.possible_nodes(), s.possible_nodes(), "possible nodes");
    assert_eq!(h.memory_nodes(), s.memory_nodes(), "nodes with memory");
    assert_eq!(h.has_tiers(), s.has_tiers(), "tier data");
    for n in s.nodes().iter() {
        assert_eq!(h.node_cpus(n), s.node_cpus(n), "cpus of node {n}");
        let (hm, sm) = (h.node_memory(n), s.node_memory(n));
        let diff = hm.abs_diff(sm);
        assert!(
            diff * 100 <= sm.max(1) * 3,
            "memory of node {n}: hwloc {hm} vs sysfs {sm}"
        );
        for m in s.nodes().iter() {
            assert_eq!(h.distance(n, m), s.distance(n, m), "distance {n}->{m}");
        }
        assert_eq!(h.tier(n), s.tier(n), "tier of node {n}");
        assert_eq!(h.hmat(n), s.hmat(n), "HMAT of node {n}");
    }
    for cpu in 0..hotslab_numa::MAX_CPUS {
        assert_eq!(h.cpu_node(cpu), s.cpu_node(cpu), "cpu {cpu}");
    }
    // system() prefers hwloc and returns the same machine.
    assert_eq!(Topology::system().nodes(), s.nodes());
}
