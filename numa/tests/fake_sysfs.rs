//! The sysfs reader on fake `/sys/devices/system/node` trees: sparse node ids (0 and 5), sparse CPU
//! ids, memory-only nodes, and malformed files, which must give errors (never panics) and leave the
//! single-node fallback in the output topology; possible-but-absent nodes, memory tiers (a fake
//! `/sys/devices/virtual/memory_tiering`) and HMAT attributes, which are advice: missing or
//! malformed tier/HMAT files never fail the read.
#![cfg(not(miri))]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use hotslab_numa::{
    Coverage, Hmat, NodeId, NodeMask, NodeState, SysfsError, SysfsSource, Topology, TopologyError,
};

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
        let path = self.0.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    fn remove(&self, rel: &str) {
        fs::remove_file(self.0.join(rel)).unwrap();
    }
    /// `tiering/memory_tier<id>/nodelist`, plus the files the kernel puts next to it.
    fn tier(&self, id: u32, nodelist: &str) -> &Self {
        self.write(&format!("tiering/memory_tier{id}/nodelist"), nodelist);
        self.write(&format!("tiering/memory_tier{id}/uevent"), "");
        self
    }
    fn hmat(&self, node: u16, files: &[(&str, &str)]) -> &Self {
        for (name, value) in files {
            self.write(&format!("node{node}/access0/initiators/{name}"), value);
        }
        self
    }
    fn sub(&self, rel: &str) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        self.0.join(rel).as_os_str().as_bytes().to_vec()
    }
    fn read_from(
        &self,
        tiering: Option<&str>,
        coverage: Coverage,
    ) -> (Result<(), TopologyError>, Box<Topology>) {
        let tiering = tiering.map(|t| self.sub(t));
        let src = SysfsSource::at(self.root(), tiering.as_deref()).coverage(coverage);
        let mut t = Topology::new_boxed();
        let c: &[usize] = &[7];
        Topology::from_parts_into(&mut t, &[(NodeId(9), c, 1)], |_, _| 10).unwrap();
        let r = Topology::read_sysfs_from_into(&src, &mut t);
        (r, t)
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

fn order(t: &Topology, nid: u16) -> Vec<u16> {
    let mut out = [NodeId(0); 16];
    let n = t.fallback_order(NodeId(nid), &mut out);
    out[..n].iter().map(|n| n.0).collect()
}

fn mask(list: &str) -> NodeMask {
    NodeMask::parse_list(list.as_bytes()).unwrap()
}

/// Four online nodes: DRAM nodes 0, 1 and 3 with CPUs (tier 4), and a CPU-less CXL node 2 in
/// tier 22 whose SLIT distance from node 0 (14) is *smaller* than node 1's (21).
fn tiered_tree() -> FakeTree {
    let tree = FakeTree::new("0-3\n");
    tree.node(0, "0-1\n", 4096, "10 21 14 21\n")
        .node(1, "2-3\n", 4096, "21 10 24 21\n")
        .node(2, "\n", 8192, "14 24 10 24\n")
        .node(3, "4-5\n", 4096, "21 21 24 10\n");
    tree.tier(4, "0-1,3\n").tier(22, "2\n");
    // Entries of the tiering directory that are not tiers.
    tree.write("tiering/uevent", "");
    tree.write("tiering/power/control", "auto\n");
    tree.write("tiering/memory_tierX/nodelist", "0-3\n");
    tree
}

#[test]
fn tiers_put_a_slower_cpu_less_node_last() {
    let tree = tiered_tree();
    let (r, t) = tree.read_from(Some("tiering"), Coverage::Online);
    r.unwrap();
    assert!(t.has_tiers());
    assert_eq!(t.tier(NodeId(0)), Some(4));
    assert_eq!(t.tier(NodeId(1)), Some(4));
    assert_eq!(t.tier(NodeId(2)), Some(22));
    assert_eq!(t.tier(NodeId(3)), Some(4));
    assert_eq!(t.tier(NodeId(4)), None);
    assert!(t.node_cpus(NodeId(2)).is_empty());
    // The CXL node is last from every DRAM node, although it is nearest to node 0 by SLIT.
    assert_eq!(order(&t, 0), [0, 1, 3, 2]);
    assert_eq!(order(&t, 1), [1, 0, 3, 2]); // 0 and 3 both at 21: by id
    assert_eq!(order(&t, 3), [3, 0, 1, 2]);
    // From the CXL node itself: itself, then the faster tier by distance (ties by id).
    assert_eq!(order(&t, 2), [2, 0, 1, 3]);
    // A node outside the topology: by tier, then id.
    assert_eq!(order(&t, 7), [0, 1, 3, 2]);
    // Truncated orders keep the best ones.
    let mut two = [NodeId(0); 2];
    assert_eq!(t.fallback_order(NodeId(0), &mut two), 2);
    assert_eq!(two, [NodeId(0), NodeId(1)]);

    // The same tree without tier data: plain distance order, the CXL node second from node 0.
    let (r, plain) = tree.read();
    r.unwrap();
    assert!(!plain.has_tiers());
    assert!((0..4).all(|n| plain.tier(NodeId(n)).is_none()));
    assert_eq!(order(&plain, 0), [0, 2, 1, 3]);
    assert_eq!(order(&plain, 2), [2, 0, 1, 3]);

    // Simulating over the tiered topology keeps each virtual node's tier.
    let mut sim = Topology::new_boxed();
    Topology::simulate_into(&t, 8, &mut sim).unwrap();
    for v in 0..8 {
        let real = sim.real_node(NodeId(v));
        assert_eq!(sim.tier(NodeId(v)), t.tier(real), "virtual {v} over {real}");
    }
    // Virtual 2 and 6 lie over the CXL node: last from virtual 0.
    let o = order(&sim, 0);
    assert_eq!(&o[6..], &[2, 6]);
}

#[test]
fn tiers_missing_or_malformed() {
    // No tiering directory (kernel before 6.1): no tiers, and the read succeeds.
    let tree = tiered_tree();
    let (r, t) = tree.read_from(Some("no-such-dir"), Coverage::Online);
    r.unwrap();
    assert!(!t.has_tiers());
    assert_eq!(t.tier(NodeId(2)), None);
    assert_eq!(order(&t, 0), [0, 2, 1, 3]);

    // A tier without nodelist, a malformed nodelist, a node in two tiers: all tiers dropped.
    for (rel, content) in [
        ("tiering/memory_tier22/nodelist", None),
        ("tiering/memory_tier22/nodelist", Some("2-\n")),
        ("tiering/memory_tier22/nodelist", Some("1-2\n")),
    ] {
        let tree = tiered_tree();
        match content {
            None => tree.remove(rel),
            Some(c) => tree.write(rel, c),
        }
        let (r, t) = tree.read_from(Some("tiering"), Coverage::Online);
        r.unwrap();
        assert!(!t.has_tiers(), "{rel} = {content:?}");
        assert!(
            (0..4).all(|n| t.tier(NodeId(n)).is_none()),
            "{rel} = {content:?}"
        );
        assert_eq!(order(&t, 0), [0, 2, 1, 3]);
    }

    // The raw reader reports what is wrong.
    let tree = tiered_tree();
    let mut seen = Vec::new();
    let n = hotslab_numa::sysfs::for_each_memory_tier_at(&tree.sub("tiering"), |tier, nodes| {
        seen.push((tier, nodes.to_string()))
    })
    .unwrap();
    seen.sort();
    assert_eq!(n, 2);
    assert_eq!(seen, [(4, "0-1,3".to_string()), (22, "2".to_string())]);
    tree.remove("tiering/memory_tier4/nodelist");
    assert_eq!(
        hotslab_numa::sysfs::for_each_memory_tier_at(&tree.sub("tiering"), |_, _| {}),
        Err(SysfsError::Open(libc::ENOENT))
    );
    assert_eq!(
        hotslab_numa::sysfs::for_each_memory_tier_at(&tree.sub("nothing"), |_, _| {}),
        Err(SysfsError::Open(libc::ENOENT))
    );
    // A file where the directory should be.
    assert_eq!(
        hotslab_numa::sysfs::for_each_memory_tier_at(&tree.sub("online"), |_, _| {}),
        Err(SysfsError::Open(libc::ENOTDIR))
    );

    // A node in no tier while others have one (a memoryless node): untiered, after every tier.
    let tree = tiered_tree();
    tree.write("has_memory", "0-2\n");
    tree.write("tiering/memory_tier4/nodelist", "0-1\n");
    let (r, t) = tree.read_from(Some("tiering"), Coverage::Online);
    r.unwrap();
    assert!(t.has_tiers());
    assert_eq!(t.tier(NodeId(3)), None);
    assert!(!t.has_memory(NodeId(3)));
    assert_eq!(order(&t, 0), [0, 1, 2, 3]);
    // From the untiered node: itself, then the tiers in order (4, then 22).
    assert_eq!(order(&t, 3), [3, 0, 1, 2]);
}

#[test]
fn many_tiers_sorted_by_id_not_directory_order() {
    // Five single-node tiers, created in scrambled order; equal distances everywhere.
    let tree = FakeTree::new("0-4\n");
    let row = |me: usize| -> String {
        (0..5)
            .map(|i| if i == me { "10" } else { "20" })
            .collect::<Vec<_>>()
            .join(" ")
            + "\n"
    };
    for n in 0..5u16 {
        tree.node(n, if n == 0 { "0\n" } else { "\n" }, 1024, &row(n as usize));
    }
    for (tier, node) in [(9u32, 1), (2, 4), (30, 0), (5, 2), (17, 3)] {
        tree.tier(tier, &format!("{node}\n"));
    }
    let (r, t) = tree.read_from(Some("tiering"), Coverage::Online);
    r.unwrap();
    // Tiers: 4 -> 2, 2 -> 5, 1 -> 9, 3 -> 17, 0 -> 30.
    assert_eq!(order(&t, 0), [0, 4, 2, 1, 3]);
    assert_eq!(order(&t, 3), [3, 4, 2, 1, 0]);
}

#[test]
fn possible_but_absent_nodes() {
    // Node 1 online without memory (CPU-only), nodes 2-3 possible but not online (no directory).
    let tree = FakeTree::new("0-1\n");
    tree.write("possible", "0-3\n");
    tree.write("has_memory", "0\n");
    tree.node(0, "0-1\n", 4096, "10 21\n")
        .node(1, "2-3\n", 0, "21 10\n");
    let (r, t) = tree.read();
    r.unwrap();
    assert_eq!(t.nodes(), mask("0-1"));
    assert_eq!(t.possible_nodes(), mask("0-3"));
    assert_eq!(t.online_nodes(), mask("0-1"));
    assert_eq!(t.memory_nodes(), mask("0"));
    assert!(t.has_memory(NodeId(0)) && !t.has_memory(NodeId(1)) && !t.has_memory(NodeId(2)));
    assert!(!t.has_memory(NodeId(5000)));
    assert_eq!(t.index_of(NodeId(2)), None);

    // Covering the possible nodes gives 2 and 3 slots, with no CPUs, memory or known distance.
    let (r, p) = tree.read_from(None, Coverage::Possible);
    r.unwrap();
    assert_eq!(p.nodes(), mask("0-3"));
    assert_eq!(p.online_nodes(), mask("0-1"));
    assert_eq!(p.memory_nodes(), mask("0"));
    assert_eq!(p.index_of(NodeId(3)), Some(3));
    assert!(p.node_cpus(NodeId(2)).is_empty());
    assert_eq!(p.node_memory(NodeId(3)), 0);
    assert_eq!(p.node_cpus(NodeId(1)).to_string(), "2-3");
    assert_eq!(p.distance(NodeId(0), NodeId(1)), 21);
    assert_eq!(p.distance(NodeId(0), NodeId(2)), 20);
    assert_eq!(p.distance(NodeId(3), NodeId(3)), 10);
    assert_eq!(p.distance(NodeId(2), NodeId(3)), 20);
    assert_eq!(p.cpu_node(3), Some(NodeId(1)));
    assert_eq!(order(&p, 1), [1, 2, 3, 0]);

    // Missing possible / has_memory files: the online nodes.
    tree.remove("possible");
    tree.remove("has_memory");
    let (r, t) = tree.read_from(None, Coverage::Possible);
    r.unwrap();
    assert_eq!(t.possible_nodes(), mask("0-1"));
    assert_eq!(t.nodes(), mask("0-1"));
    assert_eq!(t.memory_nodes(), mask("0-1"));

    // A possible mask smaller than online is widened; malformed masks are errors.
    tree.write("possible", "0\n");
    let (r, t) = tree.read();
    r.unwrap();
    assert_eq!(t.possible_nodes(), mask("0-1"));
    for (file, name) in [("possible", "possible"), ("has_memory", "has_memory")] {
        tree.write(file, "0-x\n");
        let (r, t) = tree.read();
        assert!(
            matches!(r, Err(TopologyError::Sysfs { file: f, node: None, error: SysfsError::Parse(_) }) if f == name),
            "{file}: {r:?}"
        );
        assert_eq!(*t, Topology::single_node_fallback());
        tree.write(file, "0-1\n");
    }

    // More possible nodes than a topology holds: Possible coverage falls back to the online ones.
    tree.write("possible", "0-1023\n");
    let (r, t) = tree.read_from(None, Coverage::Possible);
    r.unwrap();
    assert_eq!(t.nodes(), mask("0-1"));
    assert_eq!(t.possible_nodes().weight(), 1024);
}

#[test]
fn hmat_attributes() {
    let tree = FakeTree::new("0-2\n");
    tree.node(0, "0\n", 1024, "10 20 20\n")
        .node(1, "1\n", 1024, "20 10 20\n")
        .node(2, "\n", 1024, "20 20 10\n");
    tree.hmat(
        0,
        &[
            ("read_bandwidth", "19200\n"),
            ("write_bandwidth", "9600\n"),
            ("read_latency", "85\n"),
            ("write_latency", "90\n"),
        ],
    );
    tree.hmat(1, &[("read_latency", "250\n")]);
    let (r, t) = tree.read();
    r.unwrap();
    assert_eq!(
        t.hmat(NodeId(0)),
        Some(Hmat {
            read_bandwidth: 19200,
            write_bandwidth: 9600,
            read_latency: 85,
            write_latency: 90
        })
    );
    assert_eq!(
        t.hmat(NodeId(1)),
        Some(Hmat {
            read_latency: 250,
            ..Hmat::default()
        })
    );
    assert_eq!(t.hmat(NodeId(2)), None);
    assert_eq!(t.hmat(NodeId(3)), None);
    // HMAT does not change the order.
    assert_eq!(order(&t, 2), [2, 0, 1]);

    // A malformed value drops that node's HMAT only; the read still succeeds.
    tree.hmat(0, &[("write_latency", "fast\n")]);
    let (r, t) = tree.read();
    r.unwrap();
    assert_eq!(t.hmat(NodeId(0)), None);
    assert_eq!(t.hmat(NodeId(1)).map(|h| h.read_latency), Some(250));
    assert_eq!(
        hotslab_numa::sysfs::read_node_hmat_at(tree.root(), NodeId(0)),
        Err(SysfsError::Malformed)
    );
    assert_eq!(
        hotslab_numa::sysfs::read_node_hmat_at(tree.root(), NodeId(7)),
        Ok(None)
    );
}

#[test]
fn fake_status_file() {
    let tree = FakeTree::new("0\n");
    tree.write(
        "status",
        "Name:\ttest\nCpus_allowed_list:\t0-3\nMems_allowed:\t00000000,00000021\n\
         Mems_allowed_list:\t0,5\nvoluntary_ctxt_switches:\t3\n",
    );
    assert_eq!(
        hotslab_numa::sysfs::read_status_mems_allowed_at(&tree.sub("status")),
        Ok(mask("0,5"))
    );
    tree.write("status", "Name:\ttest\n");
    assert_eq!(
        hotslab_numa::sysfs::read_status_mems_allowed_at(&tree.sub("status")),
        Err(SysfsError::Malformed)
    );
    // The real one agrees with get_mempolicy(MPOL_F_MEMS_ALLOWED).
    let real = hotslab_numa::sysfs::read_mems_allowed_list().unwrap();
    assert_eq!(Ok(real), hotslab_numa::policy::mems_allowed());
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
    assert!(t.nodes().is_subset(&t.possible_nodes()));
    assert!(t.memory_nodes().is_subset(&t.online_nodes()));
    assert_eq!(
        t.possible_nodes(),
        hotslab_numa::sysfs::read_node_mask(NodeState::Possible).unwrap()
    );
    assert_eq!(
        t.memory_nodes(),
        hotslab_numa::sysfs::read_node_mask(NodeState::HasMemory).unwrap()
    );
    // Tiers: when the kernel has a tiering directory, every node with memory is in some tier.
    let mut tiered = NodeMask::new();
    if hotslab_numa::sysfs::for_each_memory_tier(|_, nodes| tiered = tiered.union(nodes)).is_ok() {
        assert!(t.has_tiers());
        for n in t.memory_nodes().iter() {
            assert!(t.tier(n).is_some(), "node {n} has memory but no tier");
        }
    } else {
        assert!(!t.has_tiers());
    }
    // Coverage::Possible on the real machine covers every possible node.
    let mut p = Topology::new_boxed();
    Topology::read_sysfs_from_into(&SysfsSource::SYSTEM.coverage(Coverage::Possible), &mut p)
        .unwrap();
    if p.possible_nodes().weight() <= hotslab_numa::MAX_TOPOLOGY_NODES {
        assert_eq!(p.nodes(), p.possible_nodes());
    }
}
