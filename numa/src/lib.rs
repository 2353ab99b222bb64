//! hotslab-numa: the hardware layer of hotslab — node ids and masks, the machine's NUMA topology
//! (hwloc, a no-allocation sysfs reader, or simulated nodes), and node-bound page spans through raw
//! memory-policy syscalls. It knows nothing of slabs or hotplug (those live in the crates above).
//!
//! Everything the allocator's bootstrap may call — [`NodeMask`], [`Topology::read_sysfs_into`],
//! [`Topology::simulate_into`], [`PageSource`], the [`policy`] wrappers — allocates nothing and
//! never panics. `Topology::detect` uses hwloc (opt-in feature `hwloc`, which links the system's
//! libhwloc) and allocates; without it [`Topology::system`] falls back to sysfs.
//!
//! ```
//! use hotslab_numa::{NodeId, PageSource, Topology};
//!
//! let topo = Topology::simulated(4)?;              // 4 virtual nodes over the real ones
//! let mut order = [NodeId(0); 4];
//! let n = topo.fallback_order(NodeId(1), &mut order);
//! assert_eq!(&order[..n], &[NodeId(1), NodeId(0), NodeId(2), NodeId(3)]);
//!
//! let pages = PageSource::new();
//! let span = pages.map(1 << 20, 1 << 20, Some(topo.real_node(NodeId(3))))?;
//! // SAFETY: the span is ours and nothing else refers to it.
//! unsafe { pages.unmap(span) };
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[cfg(feature = "hwloc")]
mod hwloc;
pub mod node;
pub mod pages;
pub mod policy;
pub mod sysfs;
pub mod topology;

pub use node::{
    BitIndex, Bitset, BitsetIter, CpuIter, CpuMask, NodeId, NodeIter, NodeMask, ParseError,
    MAX_CPUS, MAX_NODES,
};
pub use pages::{
    page_size, placement, placement_summary, MapError, PageSource, PlacementSummary, Span,
};
pub use policy::{
    placement_nodes, placement_nodes_from, Errno, MemPolicy, PlacementKind, PolicyError, PolicyMode,
};
pub use sysfs::{NodeState, SysfsError};
pub use topology::{
    current_cpu, Coverage, Hmat, NodePart, SysfsSource, Topology, TopologyError, LOCAL_DISTANCE,
    MAX_TOPOLOGY_NODES, REMOTE_DISTANCE, UNKNOWN_DISTANCE,
};
