//! The kernel's view of NUMA nodes, read from a sysfs node directory (`/sys/devices/system/node` or a fake
//! tree in tests): the four state masks plus each online node's CPUs, `MemTotal` and distance row, and a
//! [`Topology`] over the *possible* nodes built from it. Reads only; it never changes a hotplug domain.

use crate::{NodeId, NodeStateSnapshot};
use hotslab_numa::sysfs::{self, NodeState as File, SysfsError};
use hotslab_numa::{CpuMask, Topology, TopologyError, LOCAL_DISTANCE, MAX_TOPOLOGY_NODES};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The kernel's node directory.
pub const SYSFS_NODE_DIR: &str = "/sys/devices/system/node";

/// What sysfs says about one online node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node.
    pub node: NodeId,
    /// Its CPUs (`nodeK/cpulist`; empty for a memory-only node).
    pub cpus: CpuMask,
    /// `MemTotal` of `nodeK/meminfo`, in bytes (0 for a memoryless node).
    pub mem_total: u64,
    /// Its distance row (`nodeK/distance`) as (other node, distance) for every node online when it
    /// was read; empty if the row was missing or did not match the online mask.
    pub distances: Vec<(NodeId, u8)>,
}

/// The node masks and per-node facts of the running kernel (or of a fake sysfs tree), as read at one
/// moment. The masks are read one file after another, so they are as read, not necessarily nested;
/// [`KernelView::snapshot`] makes them consistent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelView {
    /// The masks as read (`possible`, `online`, `has_memory`, `has_normal_memory`).
    pub masks: NodeStateSnapshot,
    /// One entry per node of `masks.online` whose directory could be read, ascending.
    pub nodes: Vec<NodeInfo>,
}

fn sysfs_err(file: &'static str, node: Option<NodeId>) -> impl Fn(SysfsError) -> TopologyError {
    move |error| TopologyError::Sysfs { file, node, error }
}

/// The root as the byte path the no-alloc readers take.
pub(crate) fn root_bytes(root: &Path) -> &[u8] {
    root.as_os_str().as_bytes()
}

/// Reads the four masks under `root`. `possible`, `online` and `has_memory` are required;
/// `has_normal_memory` defaults to `has_memory` if the file is missing.
pub fn read_masks_at(root: &Path) -> Result<NodeStateSnapshot, TopologyError> {
    let r = root_bytes(root);
    let possible =
        sysfs::read_node_mask_at(r, File::Possible).map_err(sysfs_err("possible", None))?;
    let online = sysfs::read_node_mask_at(r, File::Online).map_err(sysfs_err("online", None))?;
    let has_memory =
        sysfs::read_node_mask_at(r, File::HasMemory).map_err(sysfs_err("has_memory", None))?;
    let has_normal_memory = match sysfs::read_node_mask_at(r, File::HasNormalMemory) {
        Ok(m) => m,
        Err(SysfsError::Open(libc::ENOENT)) => has_memory,
        Err(e) => return Err(sysfs_err("has_normal_memory", None)(e)),
    };
    Ok(NodeStateSnapshot {
        possible,
        online,
        has_memory,
        has_normal_memory,
    })
}

impl KernelView {
    /// Reads the running kernel's view (`/sys/devices/system/node`).
    pub fn read() -> Result<KernelView, TopologyError> {
        Self::read_at(Path::new(SYSFS_NODE_DIR))
    }

    /// Reads the view from a directory laid out like `/sys/devices/system/node`. A node that vanishes
    /// between the mask and its own files (hot-remove racing the read) is skipped or has empty fields,
    /// never an error.
    pub fn read_at(root: &Path) -> Result<KernelView, TopologyError> {
        let masks = read_masks_at(root)?;
        let r = root_bytes(root);
        let mut nodes = Vec::with_capacity(masks.online.weight());
        for nid in masks.online.iter() {
            let cpus = match sysfs::read_node_cpus_at(r, nid) {
                Ok(c) => c,
                Err(SysfsError::Open(libc::ENOENT)) => continue, // node removed meanwhile
                Err(e) => return Err(sysfs_err("cpulist", Some(nid))(e)),
            };
            let mem_total = match sysfs::read_node_mem_total_at(r, nid) {
                Ok(m) => m,
                Err(SysfsError::Open(libc::ENOENT)) => 0,
                Err(e) => return Err(sysfs_err("meminfo", Some(nid))(e)),
            };
            let mut row = [0u8; MAX_TOPOLOGY_NODES];
            let distances = match sysfs::read_node_distances_at(r, nid, &mut row) {
                Ok(n) if n == masks.online.weight() => {
                    masks.online.iter().zip(row[..n].iter().copied()).collect()
                }
                // Missing, or the online set changed under us: unknown.
                Ok(_) | Err(SysfsError::Open(libc::ENOENT)) | Err(SysfsError::TooLarge) => {
                    Vec::new()
                }
                Err(e) => return Err(sysfs_err("distance", Some(nid))(e)),
            };
            nodes.push(NodeInfo {
                node: nid,
                cpus,
                mem_total,
                distances,
            });
        }
        Ok(KernelView { masks, nodes })
    }

    /// The masks made consistent (`has_normal_memory ⊆ has_memory ⊆ online ⊆ possible`): what a
    /// [`HotplugDomain`](crate::HotplugDomain) following this kernel starts from.
    pub fn snapshot(&self) -> NodeStateSnapshot {
        normalise(self.masks)
    }

    /// The facts about `nid`, if it was online and readable.
    pub fn node(&self, nid: NodeId) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.node == nid)
    }

    /// The distance from `a` to `b` as sysfs gave it, if known.
    pub fn distance(&self, a: NodeId, b: NodeId) -> Option<u8> {
        self.node(a)?
            .distances
            .iter()
            .find(|(n, _)| *n == b)
            .map(|&(_, d)| d)
    }

    /// A topology over every *possible* node, so that nodes which come online later (a hot-added DIMM
    /// or CXL expander on a memory-only node) already have a place in a slab domain. Online nodes get
    /// their CPUs, memory size and distances; other nodes have no CPUs, no memory, and the kernel's
    /// default remote distance (20) until sysfs tells more. If the possible nodes exceed the
    /// topology's capacity ([`MAX_TOPOLOGY_NODES`]), only the online nodes are used.
    ///
    /// ```no_run
    /// use hotslab_hotplug::linux::KernelView;
    /// let view = KernelView::read()?;
    /// let topo = view.topology()?;
    /// assert!(view.snapshot().possible.iter().all(|n| topo.nodes().test(n)));
    /// # Ok::<(), hotslab_numa::TopologyError>(())
    /// ```
    pub fn topology(&self) -> Result<Box<Topology>, TopologyError> {
        let s = self.snapshot();
        let nodes = if s.possible.weight() <= MAX_TOPOLOGY_NODES {
            s.possible
        } else {
            s.online
        };
        let cpu_lists: Vec<(NodeId, Vec<usize>, u64)> = nodes
            .iter()
            .map(|nid| match self.node(nid) {
                Some(info) => (nid, info.cpus.iter().collect(), info.mem_total),
                None => (nid, Vec::new(), 0),
            })
            .collect();
        let parts: Vec<hotslab_numa::topology::NodePart<'_>> = cpu_lists
            .iter()
            .map(|(n, cpus, mem)| (*n, cpus.as_slice(), *mem))
            .collect();
        Topology::from_parts(&parts, |a, b| {
            if a == b {
                LOCAL_DISTANCE
            } else {
                self.distance(a, b)
                    .or_else(|| self.distance(b, a))
                    .unwrap_or(hotslab_numa::REMOTE_DISTANCE)
            }
        })
    }
}

/// Makes masks nest: has-normal ⊆ has-memory ⊆ online ⊆ possible (a node with memory is online, an
/// online node is possible).
pub(crate) fn normalise(m: NodeStateSnapshot) -> NodeStateSnapshot {
    let has_memory = m.has_memory;
    let online = m.online.union(&has_memory);
    NodeStateSnapshot {
        possible: m.possible.union(&online),
        online,
        has_memory,
        has_normal_memory: m.has_normal_memory.intersection(&has_memory),
    }
}

/// A directory tree that looks like `/sys/devices/system/node`, for tests and replays: masks and node
/// directories can be rewritten at any time. Removed on drop.
#[derive(Debug)]
pub struct FakeSysfs {
    root: PathBuf,
}

impl FakeSysfs {
    /// A new tree in a fresh temporary directory, with every mask empty.
    pub fn new() -> std::io::Result<FakeSysfs> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let root = std::env::temp_dir().join(format!(
            "hotslab-fake-sysfs-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)?;
        let fake = FakeSysfs { root };
        fake.set_masks(&NodeStateSnapshot::default())?;
        Ok(fake)
    }

    /// The root directory (pass it as the sysfs root).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Rewrites the four mask files.
    pub fn set_masks(&self, m: &NodeStateSnapshot) -> std::io::Result<()> {
        for (file, mask) in [
            ("possible", m.possible),
            ("online", m.online),
            ("has_memory", m.has_memory),
            ("has_normal_memory", m.has_normal_memory),
        ] {
            std::fs::write(self.root.join(file), format!("{mask}\n"))?;
        }
        Ok(())
    }

    /// Creates (or rewrites) `nodeK/` with a `cpulist`, a `meminfo` giving `mem_bytes` and a
    /// `distance` row.
    pub fn set_node(
        &self,
        nid: NodeId,
        cpus: &str,
        mem_bytes: u64,
        distances: &[u8],
    ) -> std::io::Result<()> {
        let dir = self.root.join(format!("node{}", nid.0));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("cpulist"), format!("{cpus}\n"))?;
        std::fs::write(
            dir.join("meminfo"),
            format!(
                "Node {} MemTotal:       {} kB\nNode {} MemFree:        0 kB\n",
                nid.0,
                mem_bytes / 1024,
                nid.0
            ),
        )?;
        let row: Vec<String> = distances.iter().map(|d| d.to_string()).collect();
        std::fs::write(dir.join("distance"), format!("{}\n", row.join(" ")))?;
        Ok(())
    }

    /// Removes `nodeK/`.
    pub fn remove_node(&self, nid: NodeId) -> std::io::Result<()> {
        std::fs::remove_dir_all(self.root.join(format!("node{}", nid.0)))
    }
}

impl Drop for FakeSysfs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeMask;

    fn n(id: u16) -> NodeId {
        NodeId::new(id)
    }

    /// The QEMU guest at boot: nodes 0 and 1 with CPUs and memory, node 2 possible only.
    fn guest_at_boot() -> FakeSysfs {
        let f = FakeSysfs::new().unwrap();
        f.set_masks(&NodeStateSnapshot {
            possible: NodeMask::range(0, 3),
            online: NodeMask::range(0, 2),
            has_memory: NodeMask::range(0, 2),
            has_normal_memory: NodeMask::range(0, 2),
        })
        .unwrap();
        f.set_node(n(0), "0", 512 << 20, &[10, 20]).unwrap();
        f.set_node(n(1), "1", 512 << 20, &[20, 10]).unwrap();
        f
    }

    #[test]
    #[cfg_attr(miri, ignore)] // fake sysfs files and the sysfs reader (no file access under Miri)
    fn reads_masks_cpus_memory_and_distances() {
        let f = guest_at_boot();
        let v = KernelView::read_at(f.root()).unwrap();
        assert_eq!(v.masks.possible, NodeMask::range(0, 3));
        assert_eq!(v.masks.has_memory, NodeMask::range(0, 2));
        assert_eq!(v.nodes.len(), 2);
        assert_eq!(v.node(n(1)).unwrap().cpus, CpuMask::single(1));
        assert_eq!(v.node(n(0)).unwrap().mem_total, 512 << 20);
        assert_eq!(v.distance(n(0), n(1)), Some(20));
        assert_eq!(v.distance(n(1), n(1)), Some(10));
        assert_eq!(v.distance(n(0), n(2)), None);
        assert!(v.node(n(2)).is_none());
    }

    #[test]
    #[cfg_attr(miri, ignore)] // fake sysfs files and the sysfs reader (no file access under Miri)
    fn topology_covers_possible_nodes() {
        let f = guest_at_boot();
        let v = KernelView::read_at(f.root()).unwrap();
        let t = v.topology().unwrap();
        assert_eq!(t.nodes(), NodeMask::range(0, 3));
        assert_eq!(t.cpu_node(1), Some(n(1)));
        assert!(t.node_cpus(n(2)).is_empty());
        assert_eq!(t.node_memory(n(2)), 0);
        assert_eq!(t.node_memory(n(1)), 512 << 20);
        assert_eq!(t.distance(n(0), n(1)), 20);
        assert_eq!(t.distance(n(2), n(0)), hotslab_numa::REMOTE_DISTANCE);
        assert_eq!(t.distance(n(2), n(2)), LOCAL_DISTANCE);
    }

    #[test]
    #[cfg_attr(miri, ignore)] // fake sysfs files and the sysfs reader (no file access under Miri)
    fn missing_files_and_racing_removal() {
        let f = guest_at_boot();
        // has_normal_memory missing: defaults to has_memory.
        std::fs::remove_file(f.root().join("has_normal_memory")).unwrap();
        let m = read_masks_at(f.root()).unwrap();
        assert_eq!(m.has_normal_memory, m.has_memory);
        // A node in `online` whose directory is gone (removed between reads) is skipped.
        f.remove_node(n(1)).unwrap();
        let v = KernelView::read_at(f.root()).unwrap();
        assert_eq!(v.nodes.len(), 1);
        // A distance row that does not match the online mask is dropped, not an error.
        f.set_node(n(0), "0", 1 << 20, &[10, 20, 30]).unwrap();
        let v = KernelView::read_at(f.root()).unwrap();
        assert!(v.node(n(0)).unwrap().distances.is_empty());
        // Required files missing: an error naming the file.
        std::fs::remove_file(f.root().join("has_memory")).unwrap();
        match read_masks_at(f.root()) {
            Err(TopologyError::Sysfs {
                file: "has_memory",
                error: SysfsError::Open(libc::ENOENT),
                ..
            }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn snapshot_nests_masks_read_at_different_moments() {
        let raw = NodeStateSnapshot {
            possible: NodeMask::range(0, 2),
            online: NodeMask::range(0, 2),
            has_memory: NodeMask::range(0, 3),
            has_normal_memory: NodeMask::range(0, 4),
        };
        let s = normalise(raw);
        assert!(s.is_consistent());
        assert_eq!(s.possible, NodeMask::range(0, 3));
        assert_eq!(s.has_normal_memory, NodeMask::range(0, 3));
        assert_eq!(format!("{}", s.online), "0-2");
    }
}
