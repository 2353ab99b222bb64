//! `Topology`: a fixed-size description of nodes, their CPUs, memory, distances, memory tiers and
//! HMAT performance, with the lookups the allocator needs (node of a CPU, of the calling thread,
//! fallback order by tier and distance). Built from sysfs (no allocation), from explicit parts, or
//! simulated over the real nodes; hwloc lives in `hwloc.rs`.
//!
//! Three node sets nest as in the kernel: [`possible_nodes`](Topology::possible_nodes) ⊇
//! [`online_nodes`](Topology::online_nodes) ⊇ [`memory_nodes`](Topology::memory_nodes). The
//! topology's own nodes ([`nodes`](Topology::nodes), the ones with a dense index and a distance row)
//! are the online nodes by default, or every possible node with [`Coverage::Possible`], so per-node
//! tables can cover a node that comes online (or gains memory) later:
//!
//! ```
//! use hotslab_numa::{Coverage, NodeId, SysfsSource, Topology};
//!
//! let mut t = Topology::new_boxed();
//! let src = SysfsSource::SYSTEM.coverage(Coverage::Possible);
//! Topology::read_sysfs_from_into(&src, &mut t)?;
//! assert_eq!(t.nodes(), t.possible_nodes());
//! assert!(t.memory_nodes().is_subset(&t.online_nodes()));
//! for n in t.nodes().iter() {
//!     // Tier ids come from /sys/devices/virtual/memory_tiering (None before Linux 6.1).
//!     println!("node {n}: tier {:?}, hmat {:?}", t.tier(n), t.hmat(n));
//! }
//! # Ok::<(), hotslab_numa::TopologyError>(())
//! ```

use core::fmt;

use crate::node::{CpuMask, NodeId, NodeMask, MAX_CPUS, MAX_NODES};
use crate::sysfs::{self, NodeState, SysfsError};

/// Most nodes one topology describes (distance table capacity). Node *ids* may still be sparse up to
/// [`MAX_NODES`] - 1.
pub const MAX_TOPOLOGY_NODES: usize = 128;
/// The distance of a node to itself (the kernel's `LOCAL_DISTANCE`).
pub const LOCAL_DISTANCE: u8 = 10;
/// The default distance between two different nodes (the kernel's `REMOTE_DISTANCE`).
pub const REMOTE_DISTANCE: u8 = 20;
/// What [`Topology::distance`] returns for a node that is not in the topology.
pub const UNKNOWN_DISTANCE: u8 = u8::MAX;

/// One node for [`Topology::from_parts`]: its id, its CPUs, its memory in bytes.
pub type NodePart<'a> = (NodeId, &'a [usize], u64);

/// A node's memory performance from the ACPI HMAT, as the kernel exports it in
/// `/sys/devices/system/node/nodeN/access0/initiators/`: seen from the node's nearest initiators
/// (access class 0). A field is 0 when the kernel reports no value for it.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Default)]
pub struct Hmat {
    /// Read bandwidth, MB/s.
    pub read_bandwidth: u32,
    /// Write bandwidth, MB/s.
    pub write_bandwidth: u32,
    /// Read latency, ns.
    pub read_latency: u32,
    /// Write latency, ns.
    pub write_latency: u32,
}

/// Which nodes a topology read from sysfs gives a slot (a dense index, CPUs, memory, distances).
#[derive(Copy, Clone, PartialEq, Eq, Debug, Default)]
pub enum Coverage {
    /// The online nodes (`online`): what the machine has now.
    #[default]
    Online,
    /// Every possible node (`possible`), so that per-node tables already cover a node that comes
    /// online later (a hot-added DIMM or CXL device). Nodes not online have no CPUs, no memory and
    /// [`REMOTE_DISTANCE`] to every other node. Falls back to the online nodes if there are more
    /// possible nodes than [`MAX_TOPOLOGY_NODES`].
    Possible,
}

/// Where [`Topology::read_sysfs_from_into`] reads: the node directory (normally
/// [`SYSFS_NODE_ROOT`](crate::sysfs::SYSFS_NODE_ROOT)), the memory-tiering directory (normally
/// [`SYSFS_TIERING_ROOT`](crate::sysfs::SYSFS_TIERING_ROOT); `None`: no tier data), and which nodes
/// to cover.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct SysfsSource<'a> {
    /// A directory laid out like `/sys/devices/system/node`.
    pub node_root: &'a [u8],
    /// A directory laid out like `/sys/devices/virtual/memory_tiering`, or `None` to read no tiers.
    pub tiering_root: Option<&'a [u8]>,
    /// Which nodes get a slot.
    pub coverage: Coverage,
}

impl SysfsSource<'static> {
    /// The running kernel's directories, covering the online nodes.
    pub const SYSTEM: SysfsSource<'static> = SysfsSource {
        node_root: sysfs::SYSFS_NODE_ROOT,
        tiering_root: Some(sysfs::SYSFS_TIERING_ROOT),
        coverage: Coverage::Online,
    };
}

impl<'a> SysfsSource<'a> {
    /// A fake tree: `node_root` laid out like `/sys/devices/system/node`, optionally a
    /// `tiering_root` like `/sys/devices/virtual/memory_tiering`; online coverage.
    pub const fn at(node_root: &'a [u8], tiering_root: Option<&'a [u8]>) -> SysfsSource<'a> {
        SysfsSource {
            node_root,
            tiering_root,
            coverage: Coverage::Online,
        }
    }

    /// The same source with another [`Coverage`].
    pub const fn coverage(self, coverage: Coverage) -> SysfsSource<'a> {
        SysfsSource { coverage, ..self }
    }
}

/// Why a topology could not be built.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum TopologyError {
    /// Reading a sysfs file failed.
    Sysfs {
        /// The file (`online`, `cpulist`, `meminfo`, `distance`).
        file: &'static str,
        /// The node whose file it was, if per node.
        node: Option<NodeId>,
        /// What went wrong.
        error: SysfsError,
    },
    /// hwloc failed; the text says which step.
    Hwloc(&'static str),
    /// No node at all.
    NoNodes,
    /// More nodes than [`MAX_TOPOLOGY_NODES`].
    TooManyNodes(usize),
    /// A node id not below [`MAX_NODES`].
    NodeOutOfRange(usize),
    /// The same node listed twice.
    DuplicateNode(NodeId),
    /// A CPU id not below [`MAX_CPUS`].
    CpuOutOfRange(usize),
    /// A CPU listed under two different nodes.
    CpuInTwoNodes(usize),
    /// A distance row whose length is not the number of nodes.
    DistanceMismatch {
        /// The node whose row it is.
        node: NodeId,
        /// Expected number of values.
        expected: usize,
        /// Values found.
        found: usize,
    },
    /// A simulated node count of 0 or above [`MAX_TOPOLOGY_NODES`].
    InvalidNodeCount(usize),
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TopologyError::Sysfs {
                file,
                node: Some(n),
                error,
            } => {
                write!(f, "sysfs node{n}/{file}: {error}")
            }
            TopologyError::Sysfs {
                file,
                node: None,
                error,
            } => write!(f, "sysfs {file}: {error}"),
            TopologyError::Hwloc(what) => write!(f, "hwloc: {what}"),
            TopologyError::NoNodes => f.write_str("topology has no nodes"),
            TopologyError::TooManyNodes(n) => {
                write!(
                    f,
                    "{n} nodes exceed the topology capacity of {MAX_TOPOLOGY_NODES}"
                )
            }
            TopologyError::NodeOutOfRange(n) => write!(f, "node id {n} is not below {MAX_NODES}"),
            TopologyError::DuplicateNode(n) => write!(f, "node {n} listed twice"),
            TopologyError::CpuOutOfRange(c) => write!(f, "cpu id {c} is not below {MAX_CPUS}"),
            TopologyError::CpuInTwoNodes(c) => write!(f, "cpu {c} belongs to two nodes"),
            TopologyError::DistanceMismatch {
                node,
                expected,
                found,
            } => {
                write!(f, "node {node}: {found} distances for {expected} nodes")
            }
            TopologyError::InvalidNodeCount(n) => {
                write!(f, "cannot simulate {n} nodes (1..={MAX_TOPOLOGY_NODES})")
            }
        }
    }
}

impl std::error::Error for TopologyError {}

/// The CPU the calling thread runs on, from `sched_getcpu()` (rseq/vDSO, about a nanosecond; never a
/// raw `getcpu` system call). `None` if the kernel cannot tell (and always under Miri).
#[inline]
pub fn current_cpu() -> Option<usize> {
    #[cfg(not(miri))]
    {
        // SAFETY: sched_getcpu has no preconditions; it reads the rseq area or calls the vDSO.
        let cpu = unsafe { libc::sched_getcpu() };
        if cpu >= 0 {
            Some(cpu as usize)
        } else {
            None
        }
    }
    #[cfg(miri)]
    {
        None
    }
}

/// Nodes, their CPUs, memory, distances, tiers and HMAT data, in one fixed-size value (about 31 KiB,
/// no heap fields),
/// so the allocator can build it in static or mmap'd memory without allocating. An all-zero value is
/// the empty topology.
///
/// Node ids and CPU ids may be sparse (nodes 0 and 5; CPUs 0-3 and 64-67). A topology is either
/// *real* (from hwloc or sysfs) or *simulated*: `n` virtual nodes laid over the real ones, so
/// multi-node behaviour can be exercised on a one-node machine; [`real_node`](Self::real_node) maps a
/// virtual node to the physical node its memory comes from.
///
/// ```
/// use hotslab_numa::{NodeId, Topology};
///
/// // Two sparse nodes, built from explicit parts.
/// let cpus0: &[usize] = &[0, 1];
/// let cpus5: &[usize] = &[64, 65];
/// let t = Topology::from_parts(
///     &[(NodeId(0), cpus0, 1 << 30), (NodeId(5), cpus5, 1 << 30)],
///     |a, b| if a == b { 10 } else { 21 },
/// )?;
/// assert_eq!(t.cpu_node(65), Some(NodeId(5)));
/// assert_eq!(t.distance(NodeId(0), NodeId(5)), 21);
/// let mut order = [NodeId(0); 2];
/// assert_eq!(t.fallback_order(NodeId(5), &mut order), 2);
/// assert_eq!(order, [NodeId(5), NodeId(0)]);
///
/// // Four virtual nodes over whatever this machine has.
/// let sim = Topology::simulated(4)?;
/// assert_eq!(sim.node_count(), 4);
/// assert!(sim.is_simulated());
/// let here = sim.current_node();
/// assert!(sim.nodes().test(here));
/// # Ok::<(), hotslab_numa::TopologyError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Topology {
    nodes: NodeMask,
    /// Possible nodes (⊇ `nodes`).
    possible: NodeMask,
    /// Online nodes (⊆ `nodes`).
    online: NodeMask,
    /// Nodes with memory (⊆ `online`).
    with_memory: NodeMask,
    cpus: CpuMask,
    count: u16,
    simulated: bool,
    /// Whether any node has a tier (then tiers order the fallback).
    has_tiers: bool,
    /// Slot -> memory tier id + 1 (0: unknown).
    tier: [u32; MAX_TOPOLOGY_NODES],
    /// Slot -> whether `hmat` holds data.
    hmat_known: [bool; MAX_TOPOLOGY_NODES],
    /// Slot -> HMAT performance.
    hmat: [Hmat; MAX_TOPOLOGY_NODES],
    /// Node id -> slot + 1 (0: not in the topology). Slots are in ascending node-id order.
    slot_of: [u8; MAX_NODES],
    /// Slot -> node id.
    ids: [NodeId; MAX_TOPOLOGY_NODES],
    /// Slot -> the physical node behind it (the node itself for a real topology).
    real: [NodeId; MAX_TOPOLOGY_NODES],
    /// Slot -> memory in bytes.
    memory: [u64; MAX_TOPOLOGY_NODES],
    /// Slot x slot -> distance.
    distance: [[u8; MAX_TOPOLOGY_NODES]; MAX_TOPOLOGY_NODES],
    /// CPU id -> node id + 1 (0: CPU not in the topology).
    cpu_node: [u16; MAX_CPUS],
}

impl Default for Topology {
    fn default() -> Self {
        Self::empty()
    }
}

impl Topology {
    /// The empty topology (no nodes); equal to the all-zero bit pattern.
    pub const fn empty() -> Topology {
        Topology {
            nodes: NodeMask::new(),
            possible: NodeMask::new(),
            online: NodeMask::new(),
            with_memory: NodeMask::new(),
            cpus: CpuMask::new(),
            count: 0,
            simulated: false,
            has_tiers: false,
            tier: [0; MAX_TOPOLOGY_NODES],
            hmat_known: [false; MAX_TOPOLOGY_NODES],
            hmat: [Hmat {
                read_bandwidth: 0,
                write_bandwidth: 0,
                read_latency: 0,
                write_latency: 0,
            }; MAX_TOPOLOGY_NODES],
            slot_of: [0; MAX_NODES],
            ids: [NodeId(0); MAX_TOPOLOGY_NODES],
            real: [NodeId(0); MAX_TOPOLOGY_NODES],
            memory: [0; MAX_TOPOLOGY_NODES],
            distance: [[0; MAX_TOPOLOGY_NODES]; MAX_TOPOLOGY_NODES],
            cpu_node: [0; MAX_CPUS],
        }
    }

    /// One node (0) owning every CPU id, memory size unknown (0): what to use when sysfs cannot be
    /// read. Usable to initialise a `static`.
    pub const fn single_node_fallback() -> Topology {
        let mut t = Topology::empty();
        t.nodes = NodeMask::single(NodeId(0));
        t.possible = t.nodes;
        t.online = t.nodes;
        t.with_memory = t.nodes;
        t.cpus = CpuMask::range(0, MAX_CPUS);
        t.count = 1;
        t.slot_of[0] = 1;
        t.distance[0][0] = LOCAL_DISTANCE;
        let mut cpu = 0;
        while cpu < MAX_CPUS {
            t.cpu_node[cpu] = 1;
            cpu += 1;
        }
        t
    }

    /// A heap-allocated empty topology, zero-initialised in place (no 31 KiB stack temporary).
    pub fn new_boxed() -> Box<Topology> {
        let layout = std::alloc::Layout::new::<Topology>();
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<Topology>();
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        // SAFETY: `p` is a fresh, zeroed allocation with Topology's layout, as Box expects; every
        // field is an integer, bool, or array, newtype or plain struct (`Hmat`) of those, for
        // which all-zero is a valid value, and all-zero is exactly `Topology::empty()` (checked by
        // a unit test).
        unsafe { Box::from_raw(p) }
    }

    /// Reset to the empty topology in place.
    pub fn clear(&mut self) {
        self.nodes = NodeMask::new();
        self.possible = NodeMask::new();
        self.online = NodeMask::new();
        self.with_memory = NodeMask::new();
        self.cpus = CpuMask::new();
        self.count = 0;
        self.simulated = false;
        self.has_tiers = false;
        self.tier.fill(0);
        self.hmat_known.fill(false);
        self.hmat.fill(Hmat::default());
        self.slot_of.fill(0);
        self.ids.fill(NodeId(0));
        self.real.fill(NodeId(0));
        self.memory.fill(0);
        for row in self.distance.iter_mut() {
            row.fill(0);
        }
        self.cpu_node.fill(0);
    }

    // --- construction steps -----------------------------------------------------------------

    fn set_node_set(&mut self, nodes: NodeMask) -> Result<(), TopologyError> {
        let w = nodes.weight();
        if w == 0 {
            return Err(TopologyError::NoNodes);
        }
        if w > MAX_TOPOLOGY_NODES {
            return Err(TopologyError::TooManyNodes(w));
        }
        self.nodes = nodes;
        self.possible = nodes;
        self.online = nodes;
        self.with_memory = nodes;
        self.count = w as u16;
        for (slot, id) in nodes.iter().enumerate() {
            self.slot_of[id.index()] = (slot + 1) as u8;
            self.ids[slot] = id;
            self.real[slot] = id;
        }
        Ok(())
    }

    fn add_cpu(&mut self, cpu: usize, nid: NodeId) -> Result<(), TopologyError> {
        if cpu >= MAX_CPUS {
            return Err(TopologyError::CpuOutOfRange(cpu));
        }
        let cur = self.cpu_node[cpu];
        if cur != 0 && cur - 1 != nid.0 {
            return Err(TopologyError::CpuInTwoNodes(cpu));
        }
        self.cpu_node[cpu] = nid.0 + 1;
        self.cpus.set(cpu);
        Ok(())
    }

    fn default_distances(&mut self) {
        let n = self.count as usize;
        for a in 0..n {
            for b in 0..n {
                self.distance[a][b] = if a == b {
                    LOCAL_DISTANCE
                } else {
                    REMOTE_DISTANCE
                };
            }
        }
    }

    #[inline]
    fn slot(&self, nid: NodeId) -> Option<usize> {
        match self.slot_of.get(nid.index()) {
            Some(&s) if s != 0 => Some(s as usize - 1),
            _ => None,
        }
    }

    /// Build a topology from explicit parts: `(node, its CPUs, its memory in bytes)` for every node,
    /// and a distance function (called for every ordered pair, including a node with itself). Ids
    /// may be sparse and in any order. Meant for tests and tools.
    pub fn from_parts(
        nodes: &[NodePart<'_>],
        distance: impl Fn(NodeId, NodeId) -> u8,
    ) -> Result<Box<Topology>, TopologyError> {
        let mut t = Topology::new_boxed();
        Topology::from_parts_into(&mut t, nodes, distance)?;
        Ok(t)
    }

    /// [`from_parts`](Self::from_parts) written into `out` without allocating. On error `out` is left
    /// empty.
    pub fn from_parts_into(
        out: &mut Topology,
        nodes: &[NodePart<'_>],
        distance: impl Fn(NodeId, NodeId) -> u8,
    ) -> Result<(), TopologyError> {
        out.clear();
        let r = out.fill_from_parts(nodes, distance);
        if r.is_err() {
            out.clear();
        }
        r
    }

    fn fill_from_parts(
        &mut self,
        nodes: &[NodePart<'_>],
        distance: impl Fn(NodeId, NodeId) -> u8,
    ) -> Result<(), TopologyError> {
        let mut mask = NodeMask::new();
        for &(id, _, _) in nodes {
            if !id.is_valid() {
                return Err(TopologyError::NodeOutOfRange(id.index()));
            }
            if mask.test(id) {
                return Err(TopologyError::DuplicateNode(id));
            }
            mask.set(id);
        }
        self.set_node_set(mask)?;
        for &(id, cpus, mem) in nodes {
            let slot = self
                .slot(id)
                .ok_or(TopologyError::NodeOutOfRange(id.index()))?;
            self.memory[slot] = mem;
            for &cpu in cpus {
                self.add_cpu(cpu, id)?;
            }
        }
        let n = self.count as usize;
        for a in 0..n {
            for b in 0..n {
                self.distance[a][b] = distance(self.ids[a], self.ids[b]);
            }
        }
        Ok(())
    }

    /// Read the topology of this machine from sysfs (see [`read_sysfs_into`](Self::read_sysfs_into)).
    pub fn from_sysfs() -> Result<Box<Topology>, TopologyError> {
        let mut t = Topology::new_boxed();
        Topology::read_sysfs_into(&mut t)?;
        Ok(t)
    }

    /// Read this machine's topology from `/sys/devices/system/node` without allocating: the online
    /// nodes, each node's `cpulist`, `meminfo` `MemTotal` and `distance` row, the `possible` and
    /// `has_memory` masks, HMAT attributes, and the memory tiers of
    /// `/sys/devices/virtual/memory_tiering`. Safe for the allocator's bootstrap. On error the error
    /// is returned and `out` holds [`single_node_fallback`](Self::single_node_fallback), so a caller
    /// that ignores the error still has a usable topology. `read_sysfs_from_into(&SysfsSource::SYSTEM,
    /// out)`.
    pub fn read_sysfs_into(out: &mut Topology) -> Result<(), TopologyError> {
        Topology::read_sysfs_from_into(&SysfsSource::SYSTEM, out)
    }

    /// [`read_sysfs_into`](Self::read_sysfs_into) from another directory laid out like
    /// `/sys/devices/system/node` (tests use fake trees with sparse nodes), without memory tiers
    /// (use [`read_sysfs_from_into`](Self::read_sysfs_from_into) with a fake tiering directory).
    pub fn read_sysfs_root_into(root: &[u8], out: &mut Topology) -> Result<(), TopologyError> {
        Topology::read_sysfs_from_into(&SysfsSource::at(root, None), out)
    }

    /// The sysfs reader with every choice explicit: where to read and which nodes to cover (see
    /// [`SysfsSource`], [`Coverage`]). Allocates nothing.
    ///
    /// Required: `online` and, for each online node, `cpulist`. Optional, with a documented
    /// default when the file is missing (`ENOENT`): `possible` (the online nodes), `has_memory`
    /// (every online node), `nodeN/meminfo` (0 bytes), `nodeN/distance` (10/20 for every pair),
    /// HMAT files (`None`), the tiering directory (no tiers). A malformed mask, CPU list, meminfo
    /// or distance row is an error, and `out` holds the single-node fallback. Tier and HMAT data
    /// are advice: a malformed tier directory (an unreadable `nodelist`, a node in two tiers) drops
    /// the tiers of every node (so tiers are all known or all unknown), a malformed HMAT file drops
    /// that node's HMAT; neither fails the read.
    pub fn read_sysfs_from_into(
        src: &SysfsSource<'_>,
        out: &mut Topology,
    ) -> Result<(), TopologyError> {
        out.clear();
        let r = out.fill_from_sysfs(src);
        if r.is_err() {
            out.set_single_node_fallback();
        }
        r
    }

    /// `*self = single_node_fallback()` without a 31 KiB temporary.
    fn set_single_node_fallback(&mut self) {
        self.clear();
        self.nodes = NodeMask::single(NodeId(0));
        self.possible = self.nodes;
        self.online = self.nodes;
        self.with_memory = self.nodes;
        self.cpus = CpuMask::range(0, MAX_CPUS);
        self.count = 1;
        self.slot_of[0] = 1;
        self.distance[0][0] = LOCAL_DISTANCE;
        self.cpu_node.fill(1);
    }

    fn fill_from_sysfs(&mut self, src: &SysfsSource<'_>) -> Result<(), TopologyError> {
        let root = src.node_root;
        let err = |file: &'static str, node: Option<NodeId>| {
            move |error: SysfsError| TopologyError::Sysfs { file, node, error }
        };
        let optional_mask = |which: NodeState, file: &'static str, default: NodeMask| {
            match sysfs::read_node_mask_at(root, which) {
                Ok(m) => Ok(m),
                Err(SysfsError::Open(libc::ENOENT)) => Ok(default),
                Err(e) => Err(err(file, None)(e)),
            }
        };
        let online =
            sysfs::read_node_mask_at(root, NodeState::Online).map_err(err("online", None))?;
        if online.is_empty() {
            return Err(TopologyError::NoNodes);
        }
        let possible = optional_mask(NodeState::Possible, "possible", online)?.union(&online);
        let with_memory =
            optional_mask(NodeState::HasMemory, "has_memory", online)?.intersection(&online);
        let slots = match src.coverage {
            Coverage::Possible if possible.weight() <= MAX_TOPOLOGY_NODES => possible,
            _ => online,
        };
        self.set_node_set(slots)?;
        self.possible = possible;
        self.online = online;
        self.with_memory = with_memory;
        let n = self.count as usize;
        // Distance rows have one value per online node, in ascending id order.
        let width = online.weight();
        let mut have_distances = true;
        for slot in 0..n {
            let nid = self.ids[slot];
            if !online.test(nid) {
                continue; // a possible node not online: no directory yet
            }
            let cpus = sysfs::read_node_cpus_at(root, nid).map_err(err("cpulist", Some(nid)))?;
            for cpu in cpus.iter() {
                self.add_cpu(cpu, nid)?;
            }
            self.memory[slot] = match sysfs::read_node_mem_total_at(root, nid) {
                Ok(m) => m,
                Err(SysfsError::Open(libc::ENOENT)) => 0,
                Err(e) => return Err(err("meminfo", Some(nid))(e)),
            };
            let mut row = [0u8; MAX_TOPOLOGY_NODES];
            match sysfs::read_node_distances_at(root, nid, &mut row) {
                Ok(found) if found == width => {
                    for (i, other) in online.iter().enumerate() {
                        if let Some(o) = self.slot(other) {
                            self.distance[slot][o] = row[i];
                        }
                    }
                }
                Ok(found) => {
                    return Err(TopologyError::DistanceMismatch {
                        node: nid,
                        expected: width,
                        found,
                    })
                }
                Err(SysfsError::Open(libc::ENOENT)) => have_distances = false,
                Err(SysfsError::TooLarge) => {
                    return Err(TopologyError::DistanceMismatch {
                        node: nid,
                        expected: width,
                        found: width + 1,
                    })
                }
                Err(e) => return Err(err("distance", Some(nid))(e)),
            }
            if let Ok(Some(h)) = sysfs::read_node_hmat_at(root, nid) {
                self.hmat[slot] = h;
                self.hmat_known[slot] = true;
            }
        }
        if !have_distances {
            self.default_distances();
        } else {
            // Pairs with a node that is not online have no row: the default remote distance.
            for a in 0..n {
                for b in 0..n {
                    if !online.test(self.ids[a]) || !online.test(self.ids[b]) {
                        self.distance[a][b] = if a == b {
                            LOCAL_DISTANCE
                        } else {
                            REMOTE_DISTANCE
                        };
                    }
                }
            }
        }
        if let Some(tiering) = src.tiering_root {
            self.read_tiers(tiering);
        }
        Ok(())
    }

    /// For a topology built another way (hwloc): take the node-state masks, HMAT data and tiers
    /// from sysfs where readable, leaving the rest as it is. Allocates nothing.
    #[cfg_attr(not(feature = "hwloc"), allow(dead_code))]
    pub(crate) fn add_sysfs_node_facts(&mut self, src: &SysfsSource<'_>) {
        let root = src.node_root;
        let read = |which| sysfs::read_node_mask_at(root, which).ok();
        let online = read(NodeState::Online).unwrap_or(self.nodes);
        let possible = read(NodeState::Possible).unwrap_or(self.nodes);
        let with_memory = read(NodeState::HasMemory).unwrap_or(self.nodes);
        self.set_node_states(
            possible.union(&online),
            online,
            with_memory.intersection(&online),
        );
        for slot in 0..self.count as usize {
            if let Ok(Some(h)) = sysfs::read_node_hmat_at(root, self.ids[slot]) {
                self.hmat[slot] = h;
                self.hmat_known[slot] = true;
            }
        }
        if let Some(tiering) = src.tiering_root {
            self.read_tiers(tiering);
        }
    }

    /// Fill the tiers from a memory-tiering directory; on any error no node has a tier.
    fn read_tiers(&mut self, tiering: &[u8]) {
        let mut bad = false;
        let r = sysfs::for_each_memory_tier_at(tiering, |tier, nodes| {
            for nid in nodes.iter() {
                if let Some(slot) = self.slot(nid) {
                    if self.tier[slot] != 0 {
                        bad = true; // a node in two tiers
                    }
                    self.tier[slot] = tier + 1;
                }
            }
        });
        if r.is_err() || bad {
            self.tier.fill(0);
        }
        self.has_tiers = self.tier[..self.count as usize].iter().any(|&t| t != 0);
    }

    /// `n` virtual nodes (ids `0..n`) laid over the real nodes read from sysfs (or over
    /// [`single_node_fallback`](Self::single_node_fallback) if sysfs is unreadable); see
    /// [`simulate_into`](Self::simulate_into) for the layout.
    pub fn simulated(n: usize) -> Result<Box<Topology>, TopologyError> {
        let mut base = Topology::new_boxed();
        // On error `base` holds the single-node fallback.
        let _ = Topology::read_sysfs_into(&mut base);
        let mut out = Topology::new_boxed();
        Topology::simulate_into(&base, n, &mut out)?;
        Ok(out)
    }

    /// Lay `n` virtual nodes (ids `0..n`, `1 <= n <= MAX_TOPOLOGY_NODES`) over `base`, without
    /// allocating:
    /// - virtual node `v` takes its memory from the `v % k`-th of the `k` base nodes
    ///   ([`real_node`](Self::real_node)), whose memory is split evenly among the virtual nodes on it;
    /// - each base node's CPUs are dealt round-robin over the virtual nodes on it (base nodes with no
    ///   virtual node, when `n < k`, deal theirs round-robin over all virtual nodes), so on one real
    ///   node CPU `i` (in ascending order) goes to virtual node `i % n`;
    /// - distance is 10 to itself and `20 + |a - b|` to others (plus the base's remote excess when
    ///   the two sit on different base nodes), capped at 254, so the fallback order is "nearest id
    ///   first" and deterministic.
    ///
    /// Each virtual node has the memory tier and HMAT data of its base node. Every virtual node is
    /// possible, online and (if its base node has memory) has memory.
    ///
    /// On error `out` is left empty.
    pub fn simulate_into(
        base: &Topology,
        n: usize,
        out: &mut Topology,
    ) -> Result<(), TopologyError> {
        Topology::simulate_absent_into(base, n, &NodeMask::new(), out)
    }

    /// [`simulate_into`](Self::simulate_into) where the virtual nodes in `absent` are possible but
    /// not online: in [`nodes`](Self::nodes) and [`possible_nodes`](Self::possible_nodes) (so
    /// per-node tables cover them), not in [`online_nodes`](Self::online_nodes) or
    /// [`memory_nodes`](Self::memory_nodes), with no CPUs and no memory — a node that can gain
    /// memory later, as a hot-added DIMM or CXL device would. Their distances and
    /// [`real_node`](Self::real_node) are as in `simulate_into`. The CPUs and memory of a base node
    /// are shared by its present virtual nodes only (a base node whose virtual nodes are all absent
    /// deals its CPUs over every present node; its memory is not counted). Ids in `absent` that are
    /// not below `n` are ignored. Allocates nothing.
    ///
    /// ```
    /// use hotslab_numa::{NodeId, NodeMask, Topology};
    ///
    /// let base = Topology::simulated(1)?;
    /// let mut t = Topology::new_boxed();
    /// Topology::simulate_absent_into(&base, 4, &NodeMask::single(NodeId(3)), &mut t)?;
    /// assert_eq!(t.nodes().to_string(), "0-3");
    /// assert_eq!(t.memory_nodes().to_string(), "0-2");
    /// assert!(t.node_cpus(NodeId(3)).is_empty() && t.node_memory(NodeId(3)) == 0);
    /// # Ok::<(), hotslab_numa::TopologyError>(())
    /// ```
    ///
    /// # Errors
    /// As `simulate_into`, and [`TopologyError::NoNodes`] if every virtual node is absent.
    pub fn simulate_absent_into(
        base: &Topology,
        n: usize,
        absent: &NodeMask,
        out: &mut Topology,
    ) -> Result<(), TopologyError> {
        out.clear();
        let r = out.fill_simulated(base, n, absent);
        if r.is_err() {
            out.clear();
        }
        r
    }

    fn fill_simulated(
        &mut self,
        base: &Topology,
        n: usize,
        absent: &NodeMask,
    ) -> Result<(), TopologyError> {
        if n == 0 || n > MAX_TOPOLOGY_NODES {
            return Err(TopologyError::InvalidNodeCount(n));
        }
        let k = base.count as usize;
        if k == 0 {
            return Err(TopologyError::NoNodes);
        }
        let all = NodeMask::range(0, n as u16);
        let present = all.difference(absent);
        if present.is_empty() {
            return Err(TopologyError::NoNodes);
        }
        self.set_node_set(all)?;
        self.simulated = true;
        self.online = present;
        let is_present = |v: usize| present.test(NodeId(v as u16));
        // Present virtual nodes on base slot r: those of r, r + k, r + 2k, ... below n not absent.
        let group = |r: usize| (r..n).step_by(k).filter(|&v| is_present(v)).count();
        // The i-th present virtual node on base slot r (i < group(r)).
        let nth_on = |r: usize, i: usize| (r..n).step_by(k).filter(|&v| is_present(v)).nth(i);
        let mut with_memory = NodeMask::new();
        for v in 0..n {
            let r = v % k;
            self.real[v] = base.real[r];
            if is_present(v) {
                self.memory[v] = base.memory[r] / group(r) as u64;
                if base.with_memory.test(base.ids[r]) {
                    with_memory.set(NodeId(v as u16));
                }
            }
            self.tier[v] = base.tier[r];
            self.hmat[v] = base.hmat[r];
            self.hmat_known[v] = base.hmat_known[r];
        }
        self.with_memory = with_memory;
        self.has_tiers = self.tier[..n].iter().any(|&t| t != 0);
        let present_count = present.weight();
        let mut dealt = [0usize; MAX_TOPOLOGY_NODES];
        let mut orphans = 0usize;
        for cpu in base.cpus.iter() {
            let r = match base.cpu_node(cpu).and_then(|b| base.slot(b)) {
                Some(r) => r,
                None => continue,
            };
            let g = group(r);
            let v = if g > 0 {
                let i = dealt[r];
                dealt[r] += 1;
                nth_on(r, i % g)
            } else {
                orphans += 1;
                present
                    .iter()
                    .nth((orphans - 1) % present_count)
                    .map(|id| id.index())
            };
            let Some(v) = v else { continue };
            self.add_cpu(cpu, NodeId(v as u16))?;
        }
        for a in 0..n {
            for b in 0..n {
                self.distance[a][b] = if a == b {
                    LOCAL_DISTANCE
                } else {
                    let (ra, rb) = (a % k, b % k);
                    let mut d = REMOTE_DISTANCE as usize + a.abs_diff(b);
                    if ra != rb {
                        d += base.distance[ra][rb].saturating_sub(LOCAL_DISTANCE) as usize;
                    }
                    d.min(254) as u8
                };
            }
        }
        Ok(())
    }

    /// The best topology available, never failing: hwloc (with the `hwloc` feature), else sysfs,
    /// else [`single_node_fallback`](Self::single_node_fallback). Allocates (not for bootstrap).
    pub fn system() -> Box<Topology> {
        #[cfg(feature = "hwloc")]
        if let Ok(t) = Topology::detect() {
            return t;
        }
        match Topology::from_sysfs() {
            Ok(t) => t,
            Err(_) => {
                let mut t = Topology::new_boxed();
                t.set_single_node_fallback();
                t
            }
        }
    }

    // --- lookups -------------------------------------------------------------------------------

    /// The nodes of the topology.
    #[inline]
    pub fn nodes(&self) -> NodeMask {
        self.nodes
    }

    /// Number of nodes.
    #[inline]
    pub fn node_count(&self) -> usize {
        self.count as usize
    }

    /// Whether `nid` is a node of the topology.
    #[inline]
    pub fn contains(&self, nid: NodeId) -> bool {
        self.slot(nid).is_some()
    }

    /// The dense index (`0..node_count()`, ascending by id) of `nid`, for per-node tables.
    #[inline]
    pub fn index_of(&self, nid: NodeId) -> Option<usize> {
        self.slot(nid)
    }

    /// The node at dense index `index` (inverse of [`index_of`](Self::index_of)).
    #[inline]
    pub fn node_at(&self, index: usize) -> Option<NodeId> {
        if index < self.count as usize {
            Some(self.ids[index])
        } else {
            None
        }
    }

    /// The lowest node id (node 0 for an empty topology).
    #[inline]
    pub fn first_node(&self) -> NodeId {
        match self.nodes.first() {
            Some(n) => n,
            None => NodeId(0),
        }
    }

    /// Every CPU of the topology.
    #[inline]
    pub fn cpus(&self) -> CpuMask {
        self.cpus
    }

    /// The node of `cpu`, if the CPU is known.
    #[inline]
    pub fn cpu_node(&self, cpu: usize) -> Option<NodeId> {
        match self.cpu_node.get(cpu) {
            Some(&v) if v != 0 => Some(NodeId(v - 1)),
            _ => None,
        }
    }

    /// The CPU of the calling thread (the free function [`current_cpu`]).
    #[inline]
    pub fn current_cpu(&self) -> Option<usize> {
        current_cpu()
    }

    /// The node of the calling thread's CPU, falling back to the first node if the CPU is unknown.
    #[inline]
    pub fn current_node(&self) -> NodeId {
        match current_cpu().and_then(|c| self.cpu_node(c)) {
            Some(n) => n,
            None => self.first_node(),
        }
    }

    /// The CPUs of `nid` (empty for an unknown node).
    pub fn node_cpus(&self, nid: NodeId) -> CpuMask {
        let mut m = CpuMask::new();
        if self.contains(nid) {
            for cpu in self.cpus.iter() {
                if self.cpu_node[cpu] == nid.0 + 1 {
                    m.set(cpu);
                }
            }
        }
        m
    }

    /// Memory of `nid` in bytes (0 if unknown).
    #[inline]
    pub fn node_memory(&self, nid: NodeId) -> u64 {
        self.slot(nid).map_or(0, |s| self.memory[s])
    }

    /// Memory of all nodes, in bytes.
    pub fn total_memory(&self) -> u64 {
        self.memory[..self.count as usize].iter().sum()
    }

    /// Distance from `a` to `b` (10 = local); [`UNKNOWN_DISTANCE`] if either is not in the topology.
    #[inline]
    pub fn distance(&self, a: NodeId, b: NodeId) -> u8 {
        match (self.slot(a), self.slot(b)) {
            (Some(x), Some(y)) => self.distance[x][y],
            _ => UNKNOWN_DISTANCE,
        }
    }

    /// Write the nodes of the topology into `out`, best fallback for `nid` first, and return how
    /// many were written (at most `out.len()`: the best ones). No allocation. The order:
    ///
    /// 1. `nid` itself (if it is a node);
    /// 2. when memory tiers are known ([`has_tiers`](Self::has_tiers)): the nodes of `nid`'s own
    ///    tier, then the other tiers in ascending tier id (faster memory first), then nodes without
    ///    a tier (memoryless nodes have none); without tier data every node is in one class;
    /// 3. within a class, by distance from `nid`, ties by id.
    ///
    /// So the primary key is the tier, the secondary the distance, then the id; without tiers this
    /// is the plain distance order. A CPU-less CXL node in a slower tier comes after every DRAM node,
    /// whatever its SLIT distance. HMAT data does not affect the order. For a node outside the
    /// topology the order is by tier class, then by id.
    pub fn fallback_order(&self, nid: NodeId, out: &mut [NodeId]) -> usize {
        let n = self.count as usize;
        let src = self.slot(nid);
        let src_tier = src.map_or(0, |s| self.tier[s]);
        // Key: (class, rank, id) packed in a u64; nid itself is 0, others have rank 1 + distance
        // (1 for an unknown nid). Keys are unique (ids are).
        let key = |slot: usize| -> u64 {
            let id = u64::from(self.ids[slot].0);
            let t = self.tier[slot];
            let class = if !self.has_tiers || (t != 0 && t == src_tier) {
                0
            } else if t != 0 {
                u64::from(t)
            } else {
                u64::from(u32::MAX)
            };
            match src {
                Some(s) if s == slot => 0,
                Some(s) => class << 32 | (1 + u64::from(self.distance[s][slot])) << 16 | id,
                None => class << 32 | 1 << 16 | id,
            }
        };
        let want = n.min(out.len());
        let mut prev: Option<u64> = None;
        for o in out.iter_mut().take(want) {
            let mut best: Option<u64> = None;
            let mut best_slot = 0;
            for slot in 0..n {
                let k = key(slot);
                if prev.is_some_and(|p| k <= p) {
                    continue;
                }
                if best.is_none_or(|b| k < b) {
                    best = Some(k);
                    best_slot = slot;
                }
            }
            *o = self.ids[best_slot];
            prev = best;
        }
        want
    }

    /// Every node id the kernel could bring online (`/sys/devices/system/node/possible`), a
    /// superset of [`nodes`](Self::nodes). Equal to `nodes()` for topologies built from parts or
    /// simulated, and for sysfs with [`Coverage::Possible`] (unless there are more possible nodes
    /// than [`MAX_TOPOLOGY_NODES`]); with [`Coverage::Online`] it can be larger: per-node tables
    /// sized from it cover nodes that come online later.
    #[inline]
    pub fn possible_nodes(&self) -> NodeMask {
        self.possible
    }

    /// The nodes online now (`online`), a subset of [`nodes`](Self::nodes).
    #[inline]
    pub fn online_nodes(&self) -> NodeMask {
        self.online
    }

    /// The nodes with memory now (`has_memory`, the kernel's `N_MEMORY`), a subset of
    /// [`online_nodes`](Self::online_nodes). Every node of a topology built from parts; for a
    /// simulated one, every present virtual node over a base node with memory. A node may be online
    /// without memory (a CPU-only node, or one whose memory blocks are all offline).
    #[inline]
    pub fn memory_nodes(&self) -> NodeMask {
        self.with_memory
    }

    /// Whether `nid` has memory now (is in [`memory_nodes`](Self::memory_nodes)).
    #[inline]
    pub fn has_memory(&self, nid: NodeId) -> bool {
        nid.is_valid() && self.with_memory.test(nid)
    }

    /// Replace the node-state masks of a topology (for one built from parts over possible nodes,
    /// or a test), keeping them nested as the kernel does: `possible ∪ nodes()`, `online ∩
    /// nodes()` plus every node with memory, `has_memory ∩ nodes()`. Allocates nothing.
    pub fn set_node_states(&mut self, possible: NodeMask, online: NodeMask, has_memory: NodeMask) {
        self.with_memory = has_memory.intersection(&self.nodes);
        self.online = online.intersection(&self.nodes).union(&self.with_memory);
        self.possible = possible.union(&self.nodes);
    }

    /// The memory tier of `nid`: the `N` of the `memory_tierN` directory listing it
    /// (`/sys/devices/virtual/memory_tiering`, Linux 6.1+). Smaller is faster memory: the kernel
    /// puts DRAM in tier 4 and slower memory (CXL, PMEM) in higher tiers. `None` for a node outside
    /// the topology, a node in no tier (memoryless), or when there is no tier data at all (an older
    /// kernel, a topology from parts or from a fake tree without a tiering root).
    #[inline]
    pub fn tier(&self, nid: NodeId) -> Option<u32> {
        match self.slot(nid).map(|s| self.tier[s]) {
            Some(t) if t != 0 => Some(t - 1),
            _ => None,
        }
    }

    /// Whether any node has a [`tier`](Self::tier) (then tiers order
    /// [`fallback_order`](Self::fallback_order)).
    #[inline]
    pub fn has_tiers(&self) -> bool {
        self.has_tiers
    }

    /// Set (or with `None` clear) the memory tier of `nid`, e.g. for a topology built from parts.
    /// Returns false (and changes nothing) if `nid` is not a node of the topology or `tier` is
    /// `u32::MAX`.
    pub fn set_tier(&mut self, nid: NodeId, tier: Option<u32>) -> bool {
        let Some(slot) = self.slot(nid) else {
            return false;
        };
        self.tier[slot] = match tier {
            Some(u32::MAX) => return false,
            Some(t) => t + 1,
            None => 0,
        };
        self.has_tiers = self.tier[..self.count as usize].iter().any(|&t| t != 0);
        true
    }

    /// The HMAT performance of `nid` (`nodeN/access0/initiators/*`), `None` when the kernel reports
    /// none (no ACPI HMAT, the usual case on one-socket machines and VMs without `-numa hmat-lb`) or
    /// `nid` is not a node.
    #[inline]
    pub fn hmat(&self, nid: NodeId) -> Option<Hmat> {
        let s = self.slot(nid)?;
        self.hmat_known[s].then_some(self.hmat[s])
    }

    /// Set (or with `None` clear) the HMAT data of `nid`; false if `nid` is not a node.
    pub fn set_hmat(&mut self, nid: NodeId, hmat: Option<Hmat>) -> bool {
        let Some(slot) = self.slot(nid) else {
            return false;
        };
        self.hmat_known[slot] = hmat.is_some();
        self.hmat[slot] = hmat.unwrap_or_default();
        true
    }

    /// The physical node behind `nid`: itself in a real topology, the base node a virtual node takes
    /// its memory from in a simulated one. Unknown nodes map to themselves.
    #[inline]
    pub fn real_node(&self, nid: NodeId) -> NodeId {
        self.slot(nid).map_or(nid, |s| self.real[s])
    }

    /// The physical nodes behind all nodes of the topology.
    pub fn real_nodes(&self) -> NodeMask {
        self.real[..self.count as usize].iter().copied().collect()
    }

    /// Whether the topology is simulated (virtual nodes over real ones).
    #[inline]
    pub fn is_simulated(&self) -> bool {
        self.simulated
    }
}

/// One node's line in `Topology`'s Debug output.
struct NodeDebug<'a>(&'a Topology, usize);

impl fmt::Debug for NodeDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (t, s) = (self.0, self.1);
        let id = t.ids[s];
        let n = t.count as usize;
        f.debug_struct("Node")
            .field("id", &id.0)
            .field("real", &t.real[s].0)
            .field("cpus", &format_args!("{}", t.node_cpus(id)))
            .field("memory", &t.memory[s])
            .field("has_memory", &t.has_memory(id))
            .field("tier", &t.tier(id))
            .field("hmat", &t.hmat(id))
            .field("distances", &&t.distance[s][..n])
            .finish()
    }
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topology")
            .field("simulated", &self.simulated)
            .field("nodes", &format_args!("{}", self.nodes))
            .field("possible", &format_args!("{}", self.possible))
            .field("online", &format_args!("{}", self.online))
            .field("cpus", &format_args!("{}", self.cpus))
            .field("per_node", &NodeList(self))
            .finish()
    }
}

struct NodeList<'a>(&'a Topology);

impl fmt::Debug for NodeList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries((0..self.0.count as usize).map(|s| NodeDebug(self.0, s)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(t: &Topology, nid: u16) -> Vec<u16> {
        let mut out = [NodeId(0); MAX_TOPOLOGY_NODES];
        let n = t.fallback_order(NodeId(nid), &mut out);
        out[..n].iter().map(|n| n.0).collect()
    }

    fn one_node_base(cpus: &[usize], mem: u64) -> Box<Topology> {
        Topology::from_parts(&[(NodeId(0), cpus, mem)], |_, _| 10).unwrap()
    }

    #[test]
    fn size_and_zero_is_empty() {
        assert!(
            core::mem::size_of::<Topology>() < 64 * 1024,
            "{}",
            core::mem::size_of::<Topology>()
        );
        let z = Topology::new_boxed();
        assert_eq!(*z, Topology::empty());
        assert_eq!(z.node_count(), 0);
        assert_eq!(z.first_node(), NodeId(0));
        assert_eq!(z.current_node(), NodeId(0));
        assert_eq!(z.cpu_node(0), None);
        let mut out = [NodeId(9); 4];
        assert_eq!(z.fallback_order(NodeId(0), &mut out), 0);
    }

    #[test]
    fn single_node_fallback_is_const() {
        static FALLBACK: Topology = Topology::single_node_fallback();
        assert_eq!(FALLBACK.node_count(), 1);
        assert_eq!(FALLBACK.cpu_node(0), Some(NodeId(0)));
        assert_eq!(FALLBACK.cpu_node(MAX_CPUS - 1), Some(NodeId(0)));
        assert_eq!(FALLBACK.cpu_node(MAX_CPUS), None);
        assert_eq!(FALLBACK.distance(NodeId(0), NodeId(0)), 10);
        assert_eq!(FALLBACK.current_node(), NodeId(0));
        assert!(!FALLBACK.is_simulated());
        let mut t = Topology::new_boxed();
        t.set_single_node_fallback();
        assert_eq!(*t, FALLBACK);
    }

    #[test]
    fn sparse_nodes_and_cpus() {
        let c0: &[usize] = &[0, 1, 2, 3];
        let c5: &[usize] = &[64, 65, 4095];
        let c1023: &[usize] = &[];
        let table = |a: NodeId, b: NodeId| -> u8 {
            match (a.0, b.0) {
                (x, y) if x == y => 10,
                (0, 5) | (5, 0) => 21,
                (5, 1023) | (1023, 5) => 17,
                _ => 31,
            }
        };
        // Listed out of order on purpose.
        let t = Topology::from_parts(
            &[
                (NodeId(5), c5, 2 << 30),
                (NodeId(1023), c1023, 1 << 30),
                (NodeId(0), c0, 4 << 30),
            ],
            table,
        )
        .unwrap();
        assert_eq!(t.nodes().to_string(), "0,5,1023");
        assert_eq!(t.node_count(), 3);
        assert_eq!(t.index_of(NodeId(5)), Some(1));
        assert_eq!(t.node_at(2), Some(NodeId(1023)));
        assert_eq!(t.node_at(3), None);
        assert_eq!(t.index_of(NodeId(4)), None);
        assert!(!t.contains(NodeId(1)));
        assert_eq!(t.cpu_node(3), Some(NodeId(0)));
        assert_eq!(t.cpu_node(4), None);
        assert_eq!(t.cpu_node(65), Some(NodeId(5)));
        assert_eq!(t.cpu_node(4095), Some(NodeId(5)));
        assert_eq!(t.cpu_node(1 << 20), None);
        assert_eq!(t.node_cpus(NodeId(5)).to_string(), "64-65,4095");
        assert!(t.node_cpus(NodeId(1023)).is_empty());
        assert!(t.node_cpus(NodeId(7)).is_empty());
        assert_eq!(t.cpus().weight(), 7);
        assert_eq!(t.node_memory(NodeId(0)), 4 << 30);
        assert_eq!(t.node_memory(NodeId(1023)), 1 << 30);
        assert_eq!(t.node_memory(NodeId(2)), 0);
        assert_eq!(t.total_memory(), 7 << 30);
        assert_eq!(t.distance(NodeId(0), NodeId(5)), 21);
        assert_eq!(t.distance(NodeId(1023), NodeId(1023)), 10);
        assert_eq!(t.distance(NodeId(0), NodeId(6)), UNKNOWN_DISTANCE);
        assert_eq!(order(&t, 0), [0, 5, 1023]);
        assert_eq!(order(&t, 5), [5, 1023, 0]);
        assert_eq!(order(&t, 1023), [1023, 5, 0]);
        assert_eq!(order(&t, 7), [0, 5, 1023]); // unknown node: by id
        assert_eq!(t.real_node(NodeId(5)), NodeId(5));
        assert_eq!(t.real_nodes(), t.nodes());
        assert!(!t.is_simulated());
        let dbg = format!("{t:?}");
        assert!(dbg.contains("64-65,4095"), "{dbg}");
    }

    #[test]
    fn fallback_order_truncates_to_nearest() {
        let t = one_node_base(&[0], 0);
        let mut sim = Topology::new_boxed();
        Topology::simulate_into(&t, 8, &mut sim).unwrap();
        let mut out = [NodeId(99); 3];
        assert_eq!(sim.fallback_order(NodeId(4), &mut out), 3);
        assert_eq!(out, [NodeId(4), NodeId(3), NodeId(5)]);
        let mut none: [NodeId; 0] = [];
        assert_eq!(sim.fallback_order(NodeId(4), &mut none), 0);
    }

    #[test]
    fn fallback_ties_by_id() {
        let c: &[usize] = &[];
        let t = Topology::from_parts(
            &[
                (NodeId(0), c, 0),
                (NodeId(1), c, 0),
                (NodeId(2), c, 0),
                (NodeId(3), c, 0),
            ],
            |a, b| {
                if a == b {
                    10
                } else if a.0.min(b.0) == 0 {
                    30
                } else {
                    20
                }
            },
        )
        .unwrap();
        assert_eq!(order(&t, 0), [0, 1, 2, 3]);
        assert_eq!(order(&t, 2), [2, 1, 3, 0]);
        // Even a self-distance larger than others keeps the node itself first.
        let t = Topology::from_parts(&[(NodeId(0), c, 0), (NodeId(1), c, 0)], |_, _| 50).unwrap();
        assert_eq!(order(&t, 1), [1, 0]);
    }

    #[test]
    fn from_parts_errors_leave_empty() {
        let c: &[usize] = &[1];
        let d = |_: NodeId, _: NodeId| 10;
        let mut t = Topology::new_boxed();
        let cases: &[(&[NodePart<'_>], TopologyError)] = &[
            (&[], TopologyError::NoNodes),
            (&[(NodeId(1024), c, 0)], TopologyError::NodeOutOfRange(1024)),
            (
                &[(NodeId(3), c, 0), (NodeId(3), &[], 0)],
                TopologyError::DuplicateNode(NodeId(3)),
            ),
            (
                &[(NodeId(0), c, 0), (NodeId(1), c, 0)],
                TopologyError::CpuInTwoNodes(1),
            ),
            (
                &[(NodeId(0), &[4096], 0)],
                TopologyError::CpuOutOfRange(4096),
            ),
        ];
        for (parts, err) in cases {
            assert_eq!(Topology::from_parts_into(&mut t, parts, d), Err(*err));
            assert_eq!(*t, Topology::empty());
        }
        let many: Vec<NodePart<'_>> = (0..129).map(|i| (NodeId(i), &[][..], 0)).collect();
        assert_eq!(
            Topology::from_parts_into(&mut t, &many, d),
            Err(TopologyError::TooManyNodes(129))
        );
        // The same CPU listed twice under one node is fine.
        Topology::from_parts_into(&mut t, &[(NodeId(0), &[1, 1], 0)], d).unwrap();
        assert_eq!(t.cpus().weight(), 1);
        assert!(TopologyError::CpuInTwoNodes(1)
            .to_string()
            .contains("cpu 1"));
    }

    #[test]
    fn simulated_one_node() {
        let base = one_node_base(&[0, 1], 1000);
        let mut t = Topology::new_boxed();
        Topology::simulate_into(&base, 1, &mut t).unwrap();
        assert!(t.is_simulated());
        assert_eq!(t.node_count(), 1);
        assert_eq!(t.node_cpus(NodeId(0)).to_string(), "0-1");
        assert_eq!(t.node_memory(NodeId(0)), 1000);
        assert_eq!(t.distance(NodeId(0), NodeId(0)), 10);
        assert_eq!(t.real_node(NodeId(0)), NodeId(0));
    }

    #[test]
    fn simulated_four_over_one() {
        let cpus: Vec<usize> = (0..10).collect();
        let base = one_node_base(&cpus, 4000);
        let mut t = Topology::new_boxed();
        Topology::simulate_into(&base, 4, &mut t).unwrap();
        assert_eq!(t.nodes().to_string(), "0-3");
        for cpu in 0..10 {
            assert_eq!(t.cpu_node(cpu), Some(NodeId((cpu % 4) as u16)), "cpu {cpu}");
        }
        assert_eq!(t.node_cpus(NodeId(1)).to_string(), "1,5,9");
        assert_eq!(t.node_cpus(NodeId(3)).to_string(), "3,7");
        for v in 0..4 {
            assert_eq!(t.node_memory(NodeId(v)), 1000);
            assert_eq!(t.real_node(NodeId(v)), NodeId(0));
        }
        assert_eq!(t.real_nodes().to_string(), "0");
        assert_eq!(t.distance(NodeId(1), NodeId(1)), 10);
        assert_eq!(t.distance(NodeId(0), NodeId(1)), 21);
        assert_eq!(t.distance(NodeId(0), NodeId(3)), 23);
        assert_eq!(t.distance(NodeId(3), NodeId(0)), 23);
        assert_eq!(order(&t, 0), [0, 1, 2, 3]);
        assert_eq!(order(&t, 2), [2, 1, 3, 0]);
        assert_eq!(order(&t, 3), [3, 2, 1, 0]);
    }

    #[test]
    fn simulated_sixty_four() {
        let base = one_node_base(&[0, 1], 64 << 20);
        let mut t = Topology::new_boxed();
        Topology::simulate_into(&base, 64, &mut t).unwrap();
        assert_eq!(t.node_count(), 64);
        assert_eq!(t.nodes(), NodeMask::range(0, 64));
        assert_eq!(t.cpu_node(0), Some(NodeId(0)));
        assert_eq!(t.cpu_node(1), Some(NodeId(1)));
        // More virtual nodes than CPUs: the rest are memory-only.
        assert!(t.node_cpus(NodeId(2)).is_empty());
        assert_eq!(t.node_memory(NodeId(63)), 1 << 20);
        assert_eq!(t.distance(NodeId(0), NodeId(63)), 83);
        let o = order(&t, 10);
        assert_eq!(o.len(), 64);
        assert_eq!(&o[..5], &[10, 9, 11, 8, 12]);
        assert_eq!(*o.last().unwrap(), 63);
        // Every node appears exactly once.
        let m: NodeMask = o.iter().map(|&i| NodeId(i)).collect();
        assert_eq!(m.weight(), 64);
        for v in 0..64 {
            assert_eq!(t.real_node(NodeId(v)), NodeId(0));
        }
    }

    #[test]
    fn simulated_over_sparse_multi_node_base() {
        // Two real nodes 0 and 5 (remote distance 21), CPUs 0-3 on 0, 8-11 on 5.
        let c0: &[usize] = &[0, 1, 2, 3];
        let c5: &[usize] = &[8, 9, 10, 11];
        let base = Topology::from_parts(&[(NodeId(0), c0, 600), (NodeId(5), c5, 900)], |a, b| {
            if a == b {
                10
            } else {
                21
            }
        })
        .unwrap();
        let mut t = Topology::new_boxed();
        Topology::simulate_into(&base, 5, &mut t).unwrap();
        // Virtual 0,2,4 over real 0; 1,3 over real 5.
        let reals: Vec<u16> = (0..5).map(|v| t.real_node(NodeId(v)).0).collect();
        assert_eq!(reals, [0, 5, 0, 5, 0]);
        assert_eq!(t.node_memory(NodeId(0)), 200);
        assert_eq!(t.node_memory(NodeId(3)), 450);
        // CPUs stay on virtual nodes backed by their own real node.
        for cpu in t.cpus().iter() {
            let v = t.cpu_node(cpu).unwrap();
            assert_eq!(Some(t.real_node(v)), base.cpu_node(cpu), "cpu {cpu}");
        }
        assert_eq!(t.node_cpus(NodeId(0)).to_string(), "0,3");
        assert_eq!(t.node_cpus(NodeId(1)).to_string(), "8,10");
        assert_eq!(t.node_cpus(NodeId(4)).to_string(), "2");
        // Crossing real nodes costs the base's remote excess.
        assert_eq!(t.distance(NodeId(0), NodeId(2)), 22);
        assert_eq!(t.distance(NodeId(0), NodeId(1)), 21 + 11);
        assert_eq!(order(&t, 0), [0, 2, 4, 1, 3]);
        assert_eq!(t.real_nodes().to_string(), "0,5");
        // Fewer virtual nodes than real ones: real node 5's CPUs are dealt over all virtual nodes.
        Topology::simulate_into(&base, 1, &mut t).unwrap();
        assert_eq!(t.node_cpus(NodeId(0)).weight(), 8);
        assert_eq!(t.node_memory(NodeId(0)), 600);
    }

    #[test]
    fn tiers_order_fallback_before_distance() {
        let c: &[usize] = &[];
        // 0,1 DRAM; 2 CXL (tier 22) nearer to 0 than 1 is; 3 PMEM-like tier 30; 4 without a tier.
        let d = [
            [10, 21, 14, 30, 15],
            [21, 10, 24, 30, 25],
            [14, 24, 10, 30, 15],
            [30, 30, 30, 10, 30],
            [15, 25, 15, 30, 10],
        ];
        let parts: Vec<NodePart<'_>> = (0..5).map(|i| (NodeId(i), c, 1 << 20)).collect();
        let mut t = Topology::from_parts(&parts, |a, b| d[a.index()][b.index()]).unwrap();
        assert!(!t.has_tiers());
        assert_eq!(order(&t, 0), [0, 2, 4, 1, 3]);
        for (n, tier) in [(0, 4), (1, 4), (2, 22), (3, 30)] {
            assert!(t.set_tier(NodeId(n), Some(tier)));
        }
        assert!(t.has_tiers());
        assert!(!t.set_tier(NodeId(9), Some(4)));
        assert!(!t.set_tier(NodeId(0), Some(u32::MAX)));
        assert_eq!(t.tier(NodeId(0)), Some(4));
        assert_eq!(t.tier(NodeId(4)), None);
        assert_eq!(order(&t, 0), [0, 1, 2, 3, 4]);
        assert_eq!(order(&t, 1), [1, 0, 2, 3, 4]);
        assert_eq!(order(&t, 2), [2, 0, 1, 3, 4]);
        assert_eq!(order(&t, 3), [3, 0, 1, 2, 4]);
        assert_eq!(order(&t, 4), [4, 0, 1, 2, 3]);
        // Two nodes in the slow tier: the own tier comes before the faster one.
        assert!(t.set_tier(NodeId(4), Some(22)));
        assert_eq!(order(&t, 2), [2, 4, 0, 1, 3]);
        assert_eq!(order(&t, 0), [0, 1, 2, 4, 3]);
        // Clearing every tier restores the distance order.
        for n in 0..5 {
            assert!(t.set_tier(NodeId(n), None));
        }
        assert!(!t.has_tiers());
        assert_eq!(order(&t, 0), [0, 2, 4, 1, 3]);
        // clear() forgets tiers and HMAT.
        t.set_tier(NodeId(1), Some(4));
        assert!(t.set_hmat(NodeId(1), Some(Hmat::default())));
        assert!(!t.set_hmat(NodeId(7), None));
        assert_eq!(t.hmat(NodeId(1)), Some(Hmat::default()));
        let dbg = format!("{t:?}");
        assert!(dbg.contains("tier: Some(4)"), "{dbg}");
        t.clear();
        assert_eq!(*t, Topology::empty());
    }

    #[test]
    fn node_state_sets() {
        let c: &[usize] = &[];
        let mut t = Topology::from_parts(
            &[(NodeId(0), c, 1), (NodeId(2), c, 1), (NodeId(3), c, 0)],
            |_, _| 10,
        )
        .unwrap();
        let all = NodeMask::parse_list(b"0,2-3").unwrap();
        assert_eq!(t.possible_nodes(), all);
        assert_eq!(t.online_nodes(), all);
        assert_eq!(t.memory_nodes(), all);
        let m = |s: &str| NodeMask::parse_list(s.as_bytes()).unwrap();
        // Possible widened by nodes(); online and memory narrowed to nodes(); memory implies online.
        t.set_node_states(m("0-7"), m("0,9"), m("0,3,8"));
        assert_eq!(t.possible_nodes(), m("0-7"));
        assert_eq!(t.online_nodes(), m("0,3"));
        assert_eq!(t.memory_nodes(), m("0,3"));
        assert!(t.has_memory(NodeId(3)) && !t.has_memory(NodeId(2)));
        t.set_node_states(NodeMask::new(), NodeMask::new(), NodeMask::new());
        assert_eq!(t.possible_nodes(), all);
        assert!(t.memory_nodes().is_empty());
        let fb = Topology::single_node_fallback();
        assert_eq!(fb.possible_nodes(), NodeMask::single(NodeId(0)));
        assert!(fb.has_memory(NodeId(0)));
    }

    #[test]
    fn simulated_absent_nodes() {
        let cpus: Vec<usize> = (0..8).collect();
        let base = one_node_base(&cpus, 6000);
        let mut t = Topology::new_boxed();
        let absent = NodeMask::parse_list(b"1,3,9").unwrap();
        Topology::simulate_absent_into(&base, 4, &absent, &mut t).unwrap();
        assert_eq!(t.nodes().to_string(), "0-3");
        assert_eq!(t.possible_nodes().to_string(), "0-3");
        assert_eq!(t.online_nodes().to_string(), "0,2");
        assert_eq!(t.memory_nodes().to_string(), "0,2");
        assert_eq!(t.node_memory(NodeId(0)), 3000);
        assert_eq!(t.node_memory(NodeId(1)), 0);
        assert_eq!(t.total_memory(), 6000);
        assert_eq!(t.node_cpus(NodeId(0)).to_string(), "0,2,4,6");
        assert_eq!(t.node_cpus(NodeId(2)).to_string(), "1,3,5,7");
        assert!(t.node_cpus(NodeId(1)).is_empty() && t.node_cpus(NodeId(3)).is_empty());
        assert_eq!(t.real_node(NodeId(3)), NodeId(0));
        assert_eq!(t.distance(NodeId(0), NodeId(1)), 21);
        // Absent nodes keep their place in the distance order (callers filter by memory).
        assert_eq!(order(&t, 0), [0, 1, 2, 3]);
        // No absent node: exactly simulate_into.
        let mut plain = Topology::new_boxed();
        Topology::simulate_into(&base, 4, &mut plain).unwrap();
        Topology::simulate_absent_into(&base, 4, &NodeMask::new(), &mut t).unwrap();
        assert_eq!(*t, *plain);
        // Every node absent: an error, and `out` is left empty.
        assert_eq!(
            Topology::simulate_absent_into(&base, 2, &NodeMask::range(0, 2), &mut t),
            Err(TopologyError::NoNodes)
        );
        assert_eq!(*t, Topology::empty());
        // Two base nodes, every virtual node over node 5 absent: its CPUs go to present nodes.
        let c0: &[usize] = &[0, 1];
        let c5: &[usize] = &[8, 9];
        let base2 = Topology::from_parts(&[(NodeId(0), c0, 600), (NodeId(5), c5, 900)], |a, b| {
            if a == b {
                10
            } else {
                21
            }
        })
        .unwrap();
        let absent = NodeMask::parse_list(b"1,3").unwrap();
        Topology::simulate_absent_into(&base2, 4, &absent, &mut t).unwrap();
        assert_eq!(t.cpus().weight(), 4);
        assert!(t
            .cpus()
            .iter()
            .all(|c| t.online_nodes().test(t.cpu_node(c).unwrap())));
        assert_eq!(t.node_memory(NodeId(0)), 300);
        assert_eq!(t.node_memory(NodeId(1)), 0);
    }

    #[test]
    fn simulate_errors() {
        let base = one_node_base(&[0], 0);
        let mut t = Topology::new_boxed();
        assert_eq!(
            Topology::simulate_into(&base, 0, &mut t),
            Err(TopologyError::InvalidNodeCount(0))
        );
        assert_eq!(
            Topology::simulate_into(&base, 129, &mut t),
            Err(TopologyError::InvalidNodeCount(129))
        );
        assert_eq!(*t, Topology::empty());
        assert_eq!(
            Topology::simulate_into(&Topology::empty(), 2, &mut t),
            Err(TopologyError::NoNodes)
        );
        Topology::simulate_into(&base, MAX_TOPOLOGY_NODES, &mut t).unwrap();
        assert_eq!(t.node_count(), MAX_TOPOLOGY_NODES);
        // Re-simulating over a simulated base keeps the physical mapping.
        let mut t2 = Topology::new_boxed();
        Topology::simulate_into(&t, 3, &mut t2).unwrap();
        assert_eq!(t2.real_node(NodeId(2)), NodeId(0));
    }

    #[test]
    #[cfg_attr(miri, ignore)] // sched_getcpu and sysfs
    fn current_node_is_a_node() {
        let t = Topology::simulated(4).unwrap();
        let cpu = t.current_cpu().expect("sched_getcpu works on Linux");
        // The thread may migrate between calls, so only check that both answers are real nodes.
        assert!(t.cpu_node(cpu).is_some_and(|n| t.nodes().test(n)));
        assert!(t.nodes().test(t.current_node()));
        // Pinned to one CPU, the answer is exact.
        std::thread::spawn(move || {
            let t = Topology::simulated(4).unwrap();
            // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write into it.
            let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
            unsafe { libc::CPU_SET(cpu, &mut set) };
            // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is this thread.
            let r = unsafe {
                libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set)
            };
            assert_eq!(r, 0);
            assert_eq!(t.current_cpu(), Some(cpu));
            assert_eq!(Some(t.current_node()), t.cpu_node(cpu));
        })
        .join()
        .unwrap();
    }
}
