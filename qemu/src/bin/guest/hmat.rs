//! The HMAT and tier checks: the host gives the guest an ACPI HMAT (`-machine hmat=on`, `-numa
//! hmat-lb`) in which node 2 has a higher latency and a lower bandwidth than the DRAM nodes, and a
//! SLIT in which it is farther. The kernel exports node 2's figures only once memory is online there
//! (`nodeN/access0/initiators/`), so they are read from a topology built after the hot-add, with
//! every possible node covered.

use hotslab_numa::sysfs::SYSFS_TIERING_ROOT;
use hotslab_numa::{Coverage, Hmat, NodeId, SysfsSource, Topology};
use hotslab_qemu::guestkit::Reporter;

const N0: NodeId = NodeId::new(0);
const N1: NodeId = NodeId::new(1);
const N2: NodeId = NodeId::new(2);

fn show(h: Option<Hmat>) -> String {
    match h {
        Some(h) => format!(
            "read_latency={} write_latency={} read_bandwidth={} write_bandwidth={}",
            h.read_latency, h.write_latency, h.read_bandwidth, h.write_bandwidth
        ),
        None => "none".into(),
    }
}

/// At boot, from a topology read from sysfs (every possible node): HMAT figures for the two DRAM
/// nodes, none yet for node 2 (the kernel registers a memory-only node's figures when its memory
/// first comes online).
pub fn at_boot(r: &mut Reporter) {
    let mut t = Topology::new_boxed();
    let src = SysfsSource::SYSTEM.coverage(Coverage::Possible);
    let read = Topology::read_sysfs_from_into(&src, &mut t);
    let (h0, h1, h2) = (t.hmat(N0), t.hmat(N1), t.hmat(N2));
    r.check(
        "boot.hmat",
        read.is_ok()
            && h0.is_some_and(|h| h.read_latency > 0 && h.read_bandwidth > 0)
            && h1.is_some_and(|h| h.read_latency > 0 && h.read_bandwidth > 0)
            && h2.is_none(),
        format!(
            "read {read:?}: node 0: {}; node 1: {}; node 2: {}",
            show(h0),
            show(h1),
            show(h2)
        ),
    );
}

/// After node 2 gained memory: its HMAT figures, its tier, and its place in the fallback orders.
pub fn after_add(r: &mut Reporter, label: &str) {
    let mut t = Topology::new_boxed();
    let src = SysfsSource::SYSTEM.coverage(Coverage::Possible);
    let read = Topology::read_sysfs_from_into(&src, &mut t);
    if !r.check(
        &format!("{label}.hmat.topology"),
        read.is_ok() && t.has_memory(N2),
        format!(
            "read {read:?}: nodes={} memory={}",
            t.nodes(),
            t.memory_nodes()
        ),
    ) {
        return;
    }
    let (h0, h1, h2) = (t.hmat(N0), t.hmat(N1), t.hmat(N2));
    for (n, h) in [(0, h0), (1, h1), (2, h2)] {
        r.value(&format!("{label}.hmat.node{n}"), show(h));
    }
    let slower = match (h0, h1, h2) {
        (Some(a), Some(b), Some(c)) => {
            c.read_latency > a.read_latency.max(b.read_latency)
                && c.write_latency > a.write_latency.max(b.write_latency)
                && c.read_bandwidth > 0
                && c.read_bandwidth < a.read_bandwidth.min(b.read_bandwidth)
                && c.write_bandwidth < a.write_bandwidth.min(b.write_bandwidth)
        }
        _ => false,
    };
    r.check(
        &format!("{label}.hmat.node2_slower"),
        slower,
        format!(
            "node 2: {}; node 0: {}; node 1: {}",
            show(h2),
            show(h0),
            show(h1)
        ),
    );
    // The tier, where the kernel assigns one (memory_tiering exists from Linux 6.1): node 2 may
    // share the DRAM tier (6.1 puts all hot-added DRAM there) but never be in a faster one.
    let tiering = std::path::Path::new(std::str::from_utf8(SYSFS_TIERING_ROOT).unwrap_or("/"));
    let (t0, t1, t2) = (t.tier(N0), t.tier(N1), t.tier(N2));
    let tier_ok = if tiering.is_dir() {
        matches!((t0, t1, t2), (Some(a), Some(b), Some(c)) if c >= a.max(b))
    } else {
        true
    };
    r.check(
        &format!("{label}.hmat.node2_tier"),
        tier_ok,
        format!(
            "memory_tiering {}: node 0 tier {t0:?}, node 1 tier {t1:?}, node 2 tier {t2:?}",
            if tiering.is_dir() {
                "present"
            } else {
                "absent"
            }
        ),
    );
    // Every DRAM node's fallback order ends with node 2.
    let mut detail = Vec::new();
    let mut ok = true;
    for from in [N0, N1] {
        let mut order = [NodeId::new(0); 8];
        let n = t.fallback_order(from, &mut order);
        let order = &order[..n];
        ok &= n == 3 && order[0] == from && order[2] == N2;
        detail.push(format!(
            "from {from}: {:?} (distances {:?})",
            order.iter().map(|x| x.0).collect::<Vec<_>>(),
            order
                .iter()
                .map(|&x| t.distance(from, x))
                .collect::<Vec<_>>()
        ));
    }
    r.check(
        &format!("{label}.hmat.fallback_after_dram"),
        ok,
        detail.join("; "),
    );
}
