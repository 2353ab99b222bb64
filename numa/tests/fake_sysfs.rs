//! The sysfs reader on fake `/sys/devices/system/node` trees: sparse node ids (0 and 5), sparse CPU
//! ids, memory-only nodes, and malformed files, which must give errors (never panics) and leave the
//! single-node fallback in the output topology.
#![cfg(not(miri))]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use hotslab_numa::{NodeId, NodeState, SysfsError, Topology, TopologyError};

struct FakeTree(PathBuf);

impl FakeTree {
    fn new(online: &str) -> FakeTree {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hotslab-numa-sysfs-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("online"), online).unwrap();
        fs::write(dir.join("possible"), "0-7\n").unwrap();
        fs::write(dir.join("has_memory"), online).unwrap();
        FakeTree(dir)
    }
    fn node(&self, id: u16, cpulist: &str, mem_kb: u64, distance: &str) -> &Self {
        let d = self.0.join(format!("node{id}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("cpulist"), cpulist).unwrap();
        fs::write(
            d.join("meminfo"),
            format!("Node {id} MemTotal:       {mem_kb} kB\nNode {id} MemFree:        1 kB\n"),
        )
        .unwrap();
        fs::write(d.join("distance"), distance).unwrap();
        self
    }
    fn write(&self, rel: &str, content: &str) {
        fs::write(self.0.join(rel), content).unwrap();
    }
    fn root(&self) -> &[u8] {
        use std::os::unix::ffi::OsStrExt;
        Path::new(&self.0).as_os_str().as_bytes()
    }
    fn read(&self) -> (Result<(), TopologyError>, Box<Topology>) {
        let mut t = Topology::new_boxed();
        // Start from a different topology to check that every read rewrites `out` completely.
        let c: &[usize] = &[7];
        Topology::from_parts_into(&mut t, &[(NodeId(9), c, 1)], |_, _| 10).unwrap();
        let r = Topology::read_sysfs_root_into(self.root(), &mut t);
        (r, t)
    }
}

impl Drop for FakeTree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn sparse_nodes_and_cpus() {
    let tree = FakeTree::new("0,5\n");
    tree.node(0, "0-3,64\n", 1024, "10 21\n")
        .node(5, "8,100-101\n", 2048, "21 10\n");
    let (r, t) = tree.read();
    r.unwrap();
    assert_eq!(t.nodes().to_string(), "0,5");
    assert_eq!(t.node_count(), 2);
    assert_eq!(t.cpu_node(64), Some(NodeId(0)));
    assert_eq!(t.cpu_node(101), Some(NodeId(5)));
    assert_eq!(t.cpu_node(4), None);
    assert_eq!(t.node_cpus(NodeId(5)).to_string(), "8,100-101");
    assert_eq!(t.node_memory(NodeId(5)), 2048 * 1024);
    assert_eq!(t.distance(NodeId(0), NodeId(5)), 21);
    assert_eq!(t.distance(NodeId(5), NodeId(5)), 10);
    let mut order = [NodeId(0); 2];
    t.fallback_order(NodeId(5), &mut order);
    assert_eq!(order, [NodeId(5), NodeId(0)]);
    assert_eq!(
        hotslab_numa::sysfs::read_node_mask_at(tree.root(), NodeState::Possible)
            .unwrap()
            .to_string(),
        "0-7"
    );

    // Simulating over a sparse real topology keeps virtual ids dense and real ids sparse.
    let mut sim = Topology::new_boxed();
    Topology::simulate_into(&t, 4, &mut sim).unwrap();
    assert_eq!(sim.real_nodes().to_string(), "0,5");
    assert_eq!(sim.real_node(NodeId(3)), NodeId(5));
    for cpu in t.cpus().iter() {
        assert_eq!(
            sim.real_node(sim.cpu_node(cpu).unwrap()),
            t.cpu_node(cpu).unwrap()
        );
    }
}

#[test]
fn memory_only_node_and_missing_files() {
    let tree = FakeTree::new("0-1\n");
    tree.node(0, "0-1\n", 4096, "10 20\n")
        .node(1, "\n", 8192, "20 10\n");
    let (r, t) = tree.read();
    r.unwrap();
    assert!(t.node_cpus(NodeId(1)).is_empty());
    assert_eq!(t.node_memory(NodeId(1)), 8192 * 1024);

    // Without distance files the reader falls back to 10/20.
    fs::remove_file(tree.0.join("node0/distance")).unwrap();
    fs::remove_file(tree.0.join("node1/distance")).unwrap();
    let (r, t) = tree.read();
    r.unwrap();
    assert_eq!(t.distance(NodeId(0), NodeId(1)), 20);
    assert_eq!(t.distance(NodeId(1), NodeId(1)), 10);
}

#[test]
fn malformed_files_are_errors() {
    type Check = fn(&TopologyError) -> bool;
    let cases: &[(&str, &str, Check)] = &[
        ("online", "0-\n", |e| {
            matches!(
                e,
                TopologyError::Sysfs {
                    file: "online",
                    node: None,
                    error: SysfsError::Parse(_)
                }
            )
        }),
        ("online", "\n", |e| *e == TopologyError::NoNodes),
        ("node1/cpulist", "0,x\n", |e| {
            matches!(
                e,
                TopologyError::Sysfs {
                    file: "cpulist",
                    node: Some(NodeId(1)),
                    error: SysfsError::Parse(_)
                }
            )
        }),
        ("node1/cpulist", "1\n", |e| {
            *e == TopologyError::CpuInTwoNodes(1)
        }),
        ("node1/distance", "20\n", |e| {
            matches!(
                e,
                TopologyError::DistanceMismatch {
                    node: NodeId(1),
                    expected: 2,
                    found: 1
                }
            )
        }),
        ("node1/distance", "20 999\n", |e| {
            matches!(
                e,
                TopologyError::Sysfs {
                    file: "distance",
                    ..
                }
            )
        }),
        ("node0/meminfo", "Node 0 MemFree: 5 kB\n", |e| {
            matches!(
                e,
                TopologyError::Sysfs {
                    file: "meminfo",
                    error: SysfsError::Malformed,
                    ..
                }
            )
        }),
    ];
    for (file, content, check) in cases {
        let tree = FakeTree::new("0-1\n");
        tree.node(0, "0-1\n", 4096, "10 20\n")
            .node(1, "2-3\n", 4096, "20 10\n");
        tree.write(file, content);
        let (r, t) = tree.read();
        let e = r.expect_err(file);
        assert!(check(&e), "{file} = {content:?}: unexpected {e:?}");
        assert_eq!(
            *t,
            Topology::single_node_fallback(),
            "{file}: output not reset to the fallback"
        );
    }
    // A node listed online without a directory: ENOENT on its cpulist.
    let tree = FakeTree::new("0,3\n");
    tree.node(0, "0\n", 1, "10 20\n");
    let (r, t) = tree.read();
    assert_eq!(t.node_count(), 1);
    assert!(matches!(
        r,
        Err(TopologyError::Sysfs {
            file: "cpulist",
            node: Some(NodeId(3)),
            error: SysfsError::Open(libc::ENOENT)
        })
    ));
    // A root that does not exist.
    let mut t = Topology::new_boxed();
    let r = Topology::read_sysfs_root_into(b"/nonexistent/hotslab", &mut t);
    assert!(matches!(
        r,
        Err(TopologyError::Sysfs {
            file: "online",
            error: SysfsError::Open(libc::ENOENT),
            ..
        })
    ));
}

#[test]
fn real_sysfs_round_trip() {
    let mut t = Topology::new_boxed();
    Topology::read_sysfs_into(&mut t).unwrap();
    let again = Topology::from_sysfs().unwrap();
    assert_eq!(*t, *again);
    assert!(t.node_count() >= 1);
    for n in t.nodes().iter() {
        assert_eq!(t.distance(n, n), 10);
    }
}
