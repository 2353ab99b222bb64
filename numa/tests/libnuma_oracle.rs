//! Test-only oracle: the system libnuma (libnuma-dev), through a few hand-written declarations,
//! must agree with our sysfs, hwloc and simulated topologies on nodes, node-of-CPU and distances.
//! libnuma is never linked into the library itself (it allocates during its own initialisation).
#![cfg(not(miri))]

use std::os::raw::{c_int, c_longlong, c_uint, c_ulong};

use hotslab_numa::{NodeId, Topology, MAX_NODES};

#[repr(C)]
struct Bitmask {
    size: c_ulong,
    maskp: *mut c_ulong,
}

#[link(name = "numa")]
extern "C" {
    fn numa_available() -> c_int;
    fn numa_max_node() -> c_int;
    fn numa_node_of_cpu(cpu: c_int) -> c_int;
    fn numa_distance(a: c_int, b: c_int) -> c_int;
    fn numa_num_configured_cpus() -> c_int;
    fn numa_node_size64(node: c_int, freep: *mut c_longlong) -> c_longlong;
    fn numa_bitmask_isbitset(mask: *const Bitmask, n: c_uint) -> c_int;
    static numa_nodes_ptr: *mut Bitmask;
}

struct Oracle;

impl Oracle {
    fn new() -> Oracle {
        // SAFETY: numa_available takes no arguments and only initialises libnuma's own state.
        assert_ne!(
            unsafe { numa_available() },
            -1,
            "libnuma reports NUMA unavailable"
        );
        Oracle
    }
    fn max_node(&self) -> i32 {
        // SAFETY: libnuma is initialised (Oracle::new); no arguments.
        unsafe { numa_max_node() }
    }
    fn has_node(&self, n: usize) -> bool {
        // SAFETY: numa_nodes_ptr is set up by libnuma's constructor and never freed; the index is
        // checked against the mask size by numa_bitmask_isbitset itself.
        unsafe { numa_bitmask_isbitset(numa_nodes_ptr, n as c_uint) != 0 }
    }
    fn node_of_cpu(&self, cpu: usize) -> Option<NodeId> {
        // SAFETY: plain integer argument; -1 (EINVAL) for unknown CPUs.
        let n = unsafe { numa_node_of_cpu(cpu as c_int) };
        (n >= 0).then_some(NodeId(n as u16))
    }
    fn distance(&self, a: NodeId, b: NodeId) -> i32 {
        // SAFETY: plain integer arguments.
        unsafe { numa_distance(a.0 as c_int, b.0 as c_int) }
    }
    fn cpus(&self) -> usize {
        // SAFETY: no arguments.
        unsafe { numa_num_configured_cpus() as usize }
    }
    fn node_size(&self, n: NodeId) -> i64 {
        // SAFETY: a null free pointer is allowed ("if freep is not NULL ...").
        unsafe { numa_node_size64(n.0 as c_int, std::ptr::null_mut()) }
    }
}

fn assert_matches_oracle(t: &Topology, what: &str) {
    let o = Oracle::new();
    assert!(!t.is_simulated());
    for n in 0..MAX_NODES {
        assert_eq!(
            t.contains(NodeId(n as u16)),
            o.has_node(n),
            "{what}: node {n} membership"
        );
    }
    assert_eq!(
        t.nodes().iter().last().map(|n| n.0 as i32),
        Some(o.max_node()),
        "{what}: max node"
    );
    let ncpus = o.cpus();
    assert!(ncpus >= 1);
    for cpu in 0..ncpus {
        assert_eq!(
            t.cpu_node(cpu),
            o.node_of_cpu(cpu),
            "{what}: node of cpu {cpu}"
        );
    }
    assert_eq!(
        t.cpus().weight(),
        (0..ncpus).filter(|&c| o.node_of_cpu(c).is_some()).count()
    );
    for a in t.nodes().iter() {
        for b in t.nodes().iter() {
            assert_eq!(
                i32::from(t.distance(a, b)),
                o.distance(a, b),
                "{what}: distance {a}->{b}"
            );
        }
    }
}

#[test]
fn sysfs_topology_matches_libnuma() {
    let t = Topology::from_sysfs().unwrap();
    assert_matches_oracle(&t, "sysfs");
    let o = Oracle::new();
    for n in t.nodes().iter() {
        // Both read nodeN/meminfo MemTotal.
        assert_eq!(
            t.node_memory(n) as i64,
            o.node_size(n),
            "memory of node {n}"
        );
    }
}

#[cfg(feature = "hwloc")]
#[test]
fn hwloc_topology_matches_libnuma() {
    let t = Topology::detect().unwrap();
    assert_matches_oracle(&t, "hwloc");
}

#[test]
fn simulated_topology_maps_back_to_libnuma_nodes() {
    let o = Oracle::new();
    for n in [1usize, 3, 4, 64] {
        let t = Topology::simulated(n).unwrap();
        assert_eq!(t.node_count(), n);
        for cpu in 0..o.cpus() {
            let v = t.cpu_node(cpu).expect("every real cpu has a virtual node");
            assert_eq!(
                Some(t.real_node(v)),
                o.node_of_cpu(cpu),
                "{n} nodes: cpu {cpu}"
            );
        }
        for v in t.nodes().iter() {
            assert!(
                o.has_node(t.real_node(v).index()),
                "{n} nodes: virtual {v} over a real node"
            );
        }
    }
}
