//! `Topology::detect()`: the topology as hwloc (through hwlocality) sees it — NUMA nodes, the CPUs
//! nearest each, their memory, and the OS distance matrix. hwloc allocates, so this is for the
//! domain, tools and tests, never the allocator's bootstrap (that uses `Topology::read_sysfs_into`).

use hwlocality::object::attributes::ObjectAttributes;
use hwlocality::object::distance::DistancesKind;
use hwlocality::object::types::ObjectType;
use hwlocality::topology::builder::BuildFlags;

use crate::node::{NodeId, MAX_CPUS, MAX_NODES};
use crate::topology::{
    NodePart, SysfsSource, Topology, TopologyError, LOCAL_DISTANCE, REMOTE_DISTANCE,
};

/// What hwloc reports, before it is packed into a fixed-size `Topology`.
struct Detected {
    /// (node, cpus, memory bytes), ascending by node id.
    nodes: Vec<(NodeId, Vec<usize>, u64)>,
    /// Row-major distances over `nodes`' order, if hwloc has an OS matrix covering them all.
    distances: Option<Vec<u8>>,
}

fn collect() -> Result<Detected, TopologyError> {
    // Include disallowed CPUs and nodes: sysfs (and libnuma) describe the whole machine, not the
    // cgroup's share of it, and the topologies must agree.
    let topo = hwlocality::Topology::builder()
        .with_flags(BuildFlags::INCLUDE_DISALLOWED)
        .map_err(|_| TopologyError::Hwloc("setting build flags failed"))?
        .build()
        .map_err(|_| TopologyError::Hwloc("loading the topology failed"))?;

    let mut nodes: Vec<(NodeId, Vec<usize>, u64)> = Vec::new();
    let mut cpu_owner: Vec<Option<NodeId>> = vec![None; MAX_CPUS];
    let mut numa: Vec<_> = topo.objects_with_type(ObjectType::NUMANode).collect();
    numa.sort_by_key(|o| o.os_index());
    for obj in &numa {
        let id = obj
            .os_index()
            .ok_or(TopologyError::Hwloc("NUMA node without an OS index"))?;
        if id >= MAX_NODES {
            return Err(TopologyError::NodeOutOfRange(id));
        }
        let nid = NodeId(id as u16);
        let memory = match obj.attributes() {
            Some(ObjectAttributes::NUMANode(a)) => a.local_memory().map_or(0, |m| m.get()),
            _ => 0,
        };
        // A node's cpuset is its locality: a CPU-less node (CXL, HBM) may share its neighbour's
        // CPUs. The kernel gives each CPU one node; take the lowest-numbered node claiming it,
        // which is the CPU's own DRAM node on every layout where memory-only nodes come later.
        let mut cpus = Vec::new();
        if let Some(set) = obj.cpuset() {
            for cpu in set.iter_set().map(usize::from) {
                if cpu >= MAX_CPUS {
                    return Err(TopologyError::CpuOutOfRange(cpu));
                }
                if cpu_owner[cpu].is_none() {
                    cpu_owner[cpu] = Some(nid);
                    cpus.push(cpu);
                }
            }
        }
        nodes.push((nid, cpus, memory));
    }
    if nodes.is_empty() {
        return Err(TopologyError::NoNodes);
    }

    let distances = topo
        .distances_with_type(None, ObjectType::NUMANode)
        .ok()
        .and_then(|all| {
            let pick = all
                .iter()
                .position(|d| d.kind().contains(DistancesKind::FROM_OS))
                .or(if all.is_empty() { None } else { Some(0) })?;
            let d = &all[pick];
            let ids: Vec<Option<usize>> =
                d.objects().map(|o| o.and_then(|o| o.os_index())).collect();
            let n = nodes.len();
            let index = |id: NodeId| ids.iter().position(|&x| x == Some(id.index()));
            let cols: Option<Vec<usize>> = nodes.iter().map(|(id, _, _)| index(*id)).collect();
            let cols = cols?;
            let mut out = vec![0u8; n * n];
            let width = d.num_objects();
            for (a, &ia) in cols.iter().enumerate() {
                for (b, &ib) in cols.iter().enumerate() {
                    out[a * n + b] =
                        u8::try_from(d.distances()[ia * width + ib]).unwrap_or(u8::MAX);
                }
            }
            Some(out)
        });
    Ok(Detected { nodes, distances })
}

impl Topology {
    /// Discover this machine's topology with hwloc: NUMA nodes (sparse ids kept), each node's CPUs
    /// and memory, and the OS distance matrix (10/20 defaults when the OS gives none, as on a
    /// one-node machine). Allocates; for the allocator's bootstrap use
    /// [`read_sysfs_into`](Self::read_sysfs_into).
    pub fn detect() -> Result<Box<Topology>, TopologyError> {
        let mut t = Topology::new_boxed();
        Topology::detect_into(&mut t)?;
        Ok(t)
    }

    /// [`detect`](Self::detect) written into `out` (hwloc itself still allocates). On error `out` is
    /// left empty.
    pub fn detect_into(out: &mut Topology) -> Result<(), TopologyError> {
        let det = match collect() {
            Ok(d) => d,
            Err(e) => {
                out.clear();
                return Err(e);
            }
        };
        let parts: Vec<NodePart<'_>> = det
            .nodes
            .iter()
            .map(|(id, cpus, mem)| (*id, cpus.as_slice(), *mem))
            .collect();
        let order: Vec<NodeId> = det.nodes.iter().map(|(id, _, _)| *id).collect();
        let n = order.len();
        let pos = |id: NodeId| order.iter().position(|&x| x == id);
        Topology::from_parts_into(out, &parts, |a, b| match (&det.distances, pos(a), pos(b)) {
            (Some(d), Some(i), Some(j)) => d[i * n + j],
            _ if a == b => LOCAL_DISTANCE,
            _ => REMOTE_DISTANCE,
        })?;
        // What hwloc 2.9 does not report (possible nodes, has_memory, memory tiers, HMAT through
        // the kernel's files) comes from sysfs, so detect() and the sysfs reader agree.
        out.add_sysfs_node_facts(&SysfsSource::SYSTEM);
        Ok(())
    }
}
