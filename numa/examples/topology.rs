//! The machine's NUMA topology as hotslab reads it (sysfs, without allocating; hwloc with the
//! `hwloc` feature is not needed), and a simulated one laid over it.
//!
//! ```sh
//! cargo run -p hotslab-numa --example topology
//! ```

use hotslab_numa::{NodeId, Topology};

fn show(title: &str, t: &Topology) {
    println!("{title}: {} node(s), CPUs {}", t.node_count(), t.cpus());
    for nid in t.nodes().iter() {
        let mut order = [NodeId(0); 64];
        let k = t.fallback_order(nid, &mut order);
        println!(
            "  node {:>2}: {:>6} MiB, CPUs {}, real node {}, fallback {:?}",
            nid.0,
            t.node_memory(nid) >> 20,
            t.node_cpus(nid),
            t.real_node(nid).0,
            order[..k].iter().map(|n| n.0).collect::<Vec<_>>()
        );
    }
}

fn main() {
    show("this machine", &Topology::system());
    let sim = Topology::simulated(4).expect("simulated topology");
    show("simulated, 4 nodes", &sim);
    println!(
        "distance(node 0, node 3) = {}",
        sim.distance(NodeId(0), NodeId(3))
    );
}
