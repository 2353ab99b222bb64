//! Smoke test of the Linux backend against this machine's own kernel: the follower's view of the node
//! masks must equal what sysfs says, and a domain built from it must agree with the kernel. No hotplug
//! happens here (a one-node host cannot lose a node); the QEMU guest test does that. Owns no library code.
#![cfg(all(target_os = "linux", not(loom)))]

use hotslab_hotplug::linux::{follow, FollowConfig, KernelView, UeventSource};
use hotslab_hotplug::{HotplugDomain, LockKind};
use hotslab_numa::sysfs::{read_node_cpus, read_node_mask, NodeState};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn the_follower_reports_the_kernels_masks() {
    let view = KernelView::read().expect("sysfs node directory");
    let domain = Arc::new(HotplugDomain::with_states(view.snapshot(), LockKind::Seed));
    // Netlink where the kernel allows it (containers may not): periodic scans otherwise.
    let h = match follow(domain.clone(), FollowConfig::default()) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("netlink uevent socket unavailable ({e}); following by re-scans only");
            follow(
                domain.clone(),
                FollowConfig::default().source(UeventSource::None),
            )
            .unwrap()
        }
    };
    h.rescan();
    let st = h
        .wait_until(Duration::from_secs(30), |s| s.stats.scans >= 2)
        .expect("a requested scan ran");
    let k = st.kernel.expect("the scan read sysfs");
    assert_eq!(k.possible, read_node_mask(NodeState::Possible).unwrap());
    assert_eq!(k.online, read_node_mask(NodeState::Online).unwrap());
    assert_eq!(k.has_memory, read_node_mask(NodeState::HasMemory).unwrap());
    assert_eq!(
        k.has_normal_memory,
        read_node_mask(NodeState::HasNormalMemory).unwrap()
    );
    assert!(st.in_sync(), "{st:?}");
    assert_eq!(domain.snapshot().has_memory, k.has_memory);
    assert!(st.unknown.is_empty() && st.last_error.is_none());
    let v = st.view.unwrap();
    for info in &v.nodes {
        assert_eq!(info.cpus, read_node_cpus(info.node).unwrap());
        if k.has_memory.test(info.node) {
            assert!(info.mem_total > 0);
        }
    }
    let topo = v.topology().unwrap();
    assert!(k.possible.iter().all(|n| topo.nodes().test(n)));
    assert!(!h.stop().running);
}
