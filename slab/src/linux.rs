//! Following real Linux memory hotplug from the slab crate: build a slab domain whose topology (every
//! *possible* node) and node masks come from the running kernel, and make a domain follow the kernel's
//! hotplug events in a background thread that the user starts (the process-wide default domain
//! starts its own, `follow.rs`; its status is here: [`default_follower_status`](crate::linux::default_follower_status)). The logic lives in
//! `hotslab_hotplug::linux`; this file only connects `SlabDomain` to it and is never used by the
//! allocator's bootstrap.
//!
//! ```no_run
//! use hotslab::{CacheConfig, DomainConfig};
//! use hotslab::numa::NodeId;
//! use std::time::Duration;
//!
//! let domain = hotslab::linux::domain_from_sysfs(DomainConfig::default())?;
//! let follower = hotslab::linux::follow_hotplug(&domain)?; // stops when dropped
//! let cache = domain.create_cache(CacheConfig::new("dentry", 192))?;
//! // A CXL expander or a DIMM comes online as node 2: every cache gets a part for it.
//! follower.wait_until(Duration::from_secs(60), |s| s.domain.has_memory.test(NodeId::new(2)));
//! let obj = cache.alloc_node(NodeId::new(2))?;
//! cache.free(obj)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io;
use std::path::Path;
use std::sync::Arc;

use hotslab_hotplug::linux::{follow, FollowTarget};
use hotslab_hotplug::HotplugDomain;

use crate::domain::{DomainConfig, SlabDomain};

pub use hotslab_hotplug::linux::{
    FakeSysfs, FollowConfig, FollowStats, FollowStatus, FollowerHandle, KernelView, MemsAllowed,
    NodeInfo, Trigger, UeventSource, SYSFS_NODE_DIR,
};

impl FollowTarget for SlabDomain {
    fn hotplug_domain(&self) -> &HotplugDomain {
        self.hotplug()
    }
}

/// A slab domain over the running kernel: a topology of every possible node (so nodes that come
/// online later have a place), and its own hotplug domain starting from the kernel's node masks.
/// Follow the kernel from then on with [`follow_hotplug`].
pub fn domain_from_sysfs(config: DomainConfig) -> io::Result<Arc<SlabDomain>> {
    domain_from_sysfs_at(Path::new(SYSFS_NODE_DIR), config)
}

/// [`domain_from_sysfs`] reading another directory laid out like `/sys/devices/system/node`.
pub fn domain_from_sysfs_at(root: &Path, config: DomainConfig) -> io::Result<Arc<SlabDomain>> {
    let view = KernelView::read_at(root).map_err(io::Error::other)?;
    domain_from_view(&view, config)
}

/// A slab domain over a kernel view (see [`domain_from_sysfs`]).
pub fn domain_from_view(view: &KernelView, config: DomainConfig) -> io::Result<Arc<SlabDomain>> {
    let topo = view.topology().map_err(io::Error::other)?;
    let hp = Arc::new(HotplugDomain::with_states(
        view.snapshot(),
        config.lock_kind,
    ));
    SlabDomain::new(topo, hp, config).map_err(io::Error::other)
}

/// Makes `domain` follow the running kernel's memory hotplug (netlink uevents, `/sys`, 1 s re-scan):
/// a node gaining memory gets a part in every cache, a node losing it has its parts drained. The
/// domain is kept alive until the handle is dropped.
pub fn follow_hotplug(domain: &Arc<SlabDomain>) -> io::Result<FollowerHandle> {
    follow_hotplug_with(domain, FollowConfig::default())
}

/// [`follow_hotplug`] with settings (another sysfs root, event source, timers).
pub fn follow_hotplug_with(
    domain: &Arc<SlabDomain>,
    config: FollowConfig,
) -> io::Result<FollowerHandle> {
    follow(Arc::clone(domain), config)
}

/// Makes the process-wide default domain (the one behind [`SlabAlloc`](crate::SlabAlloc) and
/// [`kmalloc`](crate::kmalloc)) follow the kernel with settings of your choosing. The default
/// domain covers every possible node and already follows the kernel by itself (a
/// `hotslab-follow` thread started at first use, unless `HOTSLAB_FOLLOW=0`; see
/// [`default_follower_status`]); a second follower is harmless (both reconcile towards the same
/// kernel state). Errors if the default domain could not be built.
pub fn follow_default_domain(config: FollowConfig) -> io::Result<FollowerHandle> {
    let d: &'static SlabDomain = crate::global::default_domain()
        .ok_or_else(|| io::Error::other("the default slab domain is not available"))?;
    follow(d, config)
}

/// Whether the default domain's own follower thread (`hotslab-follow`) runs in this process. It
/// starts from the first allocation slow path after the default domain is built; it does not
/// run with `HOTSLAB_FOLLOW=0`, under a simulated topology (`HOTSLAB_NODES`), or where the
/// kernel's `possible` mask has a single node (nothing can come or go).
pub fn default_follower_running() -> bool {
    crate::follow::follower_running()
}

/// The default domain's follower status (`None` if it does not run).
pub fn default_follower_status() -> Option<FollowStatus> {
    #[cfg(not(miri))]
    {
        crate::follow::status()
    }
    #[cfg(miri)]
    {
        None
    }
}

/// Waits until `pred` holds for the default domain's follower status, up to `timeout` (see
/// [`FollowerHandle::wait_until`]); `None` on timeout or if the follower does not run.
pub fn default_follower_wait_until(
    timeout: std::time::Duration,
    pred: impl FnMut(&FollowStatus) -> bool,
) -> Option<FollowStatus> {
    #[cfg(not(miri))]
    {
        crate::follow::with_handle(|h| h.wait_until(timeout, pred)).flatten()
    }
    #[cfg(miri)]
    {
        let _ = (timeout, pred);
        None
    }
}

/// Asks the default domain's follower for a sysfs re-scan now (after a `cpuset.mems` change, for
/// instance). False if it does not run.
pub fn default_follower_rescan() -> bool {
    #[cfg(not(miri))]
    {
        crate::follow::with_handle(FollowerHandle::rescan).is_some()
    }
    #[cfg(miri)]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CacheConfig, PartState};
    use hotslab_hotplug::linux::Follower;
    use hotslab_hotplug::{NodeMask, NodeStateSnapshot};
    use hotslab_numa::NodeId;

    fn n(id: u16) -> NodeId {
        NodeId::new(id)
    }

    fn masks(online: NodeMask, has_memory: NodeMask) -> NodeStateSnapshot {
        NodeStateSnapshot {
            possible: NodeMask::range(0, 3),
            online,
            has_memory,
            has_normal_memory: NodeMask::range(0, 2).intersection(&has_memory),
        }
    }

    /// The QEMU guest at boot, as a fake sysfs tree (on this host, binding to node 2 fails, so
    /// allocations meant for it fall back; placement is checked in the QEMU guest).
    fn guest() -> FakeSysfs {
        let f = FakeSysfs::new().unwrap();
        f.set_masks(&masks(NodeMask::range(0, 2), NodeMask::range(0, 2)))
            .unwrap();
        f.set_node(n(0), "0", 512 << 20, &[10, 20]).unwrap();
        f.set_node(n(1), "1", 512 << 20, &[20, 10]).unwrap();
        f
    }

    #[test]
    #[cfg_attr(miri, ignore)] // fake sysfs files and the sysfs reader (no file access under Miri)
    fn every_cache_follows_a_node_through_hot_add_and_removal() {
        let fake = guest();
        let cfg = DomainConfig {
            kmalloc: false,
            ..DomainConfig::default()
        };
        let d = domain_from_sysfs_at(fake.root(), cfg).unwrap();
        assert_eq!(d.topology().nodes(), NodeMask::range(0, 3));
        let caches: Vec<_> = [("a", 64), ("b", 600)]
            .into_iter()
            .map(|(name, size)| d.create_cache(CacheConfig::new(name, size)).unwrap())
            .collect();
        for c in &caches {
            assert_eq!(c.part_state(n(1)), Some(PartState::Live));
            assert_eq!(c.part_state(n(2)), None);
        }

        let mut f = Follower::new(d.clone(), fake.root()).mems_allowed(MemsAllowed::Ignore);
        assert!(!f.scan().unwrap().changed());

        // Hot-add on node 2.
        fake.set_masks(&masks(NodeMask::range(0, 3), NodeMask::range(0, 3)))
            .unwrap();
        f.on_message(
            b"online@/devices/system/memory/memory32\0ACTION=online\0\
              DEVPATH=/devices/system/memory/memory32\0SUBSYSTEM=memory\0SEQNUM=1\0",
        );
        assert_eq!(f.scan().unwrap().onlined, NodeMask::single(n(2)));
        for c in &caches {
            assert_eq!(c.part_state(n(2)), Some(PartState::Live));
        }
        assert!(d.check_invariants().ok());
        // A cache created now gets node 2 from the start.
        let late = d.create_cache(CacheConfig::new("late", 32)).unwrap();
        assert_eq!(late.part_state(n(2)), Some(PartState::Live));

        // Removal: the kernel already moved the memory; the parts retire (no objects were on them).
        fake.set_masks(&masks(NodeMask::range(0, 2), NodeMask::range(0, 2)))
            .unwrap();
        f.on_overflow();
        assert_eq!(f.scan().unwrap().offlined, NodeMask::single(n(2)));
        for c in caches.iter().chain([&late]) {
            assert_eq!(c.part_state(n(2)), Some(PartState::Retired));
            let o = c.alloc_node(n(2)).unwrap();
            assert_ne!(c.node_of(o), Some(n(2)), "falls back by distance");
            c.free(o).unwrap();
        }
        assert!(d.check_invariants().ok());
        assert_eq!(d.violations.total(), 0);
    }

    #[test]
    #[cfg_attr(miri, ignore)] // fake sysfs files and the sysfs reader (no file access under Miri)
    fn the_follower_thread_holds_the_domain_until_dropped() {
        let fake = guest();
        let d = domain_from_sysfs_at(fake.root(), DomainConfig::default()).unwrap();
        let h = follow_hotplug_with(
            &d,
            FollowConfig::default()
                .sysfs_root(fake.root())
                .source(UeventSource::None)
                .mems_allowed(MemsAllowed::Ignore),
        )
        .unwrap();
        assert!(h.status().in_sync());
        assert!(Arc::strong_count(&d) >= 2);
        drop(h);
        assert_eq!(Arc::strong_count(&d), 1);
    }
}
