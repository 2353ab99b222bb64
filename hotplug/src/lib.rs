//! hotslab-hotplug: node state and its changes — the online-mems lock (seed, per-CPU and asymmetric designs
//! behind one type), the node state masks, the memory notifier chain, and the hotplug domain with its simulated
//! controller. It knows nothing of slabs; it depends only on `hotslab-numa` for node ids and masks.
//!
//! # Glossary (kernel → hotslab)
//! | kernel | hotslab |
//! |---|---|
//! | `get_online_mems()` / `put_online_mems()` | [`OnlineMems::get`] / [`OnlineMems::put`], or [`OnlineMems::read`] (RAII) |
//! | `mem_hotplug_begin()` / `mem_hotplug_done()` | [`OnlineMems::write`] (RAII) |
//! | `mem_hotplug.active_writer` / `.refcount` | `SeedLock` in `online_mems.rs` |
//! | `percpu_rw_semaphore mem_hotplug_lock` | `PerCpuLock` in `percpu.rs` ([`LockKind::PerCpu`]) |
//! | the same with the fences moved to the writer (`membarrier`, userspace RCU style) | `AsymLock` in `asym.rs` ([`LockKind::Asymmetric`], the default) |
//! | `node_states[N_POSSIBLE, N_ONLINE, N_MEMORY, N_NORMAL_MEMORY]` | [`NodeStates`] |
//! | `register_memory_notifier` / `memory_notify` | [`NotifierChain`], [`HotplugDomain::register_notifier`] |
//! | `MEM_GOING_ONLINE` … `MEM_CANCEL_OFFLINE` | [`MemoryEvent`] |
//! | `online_pages` / `offline_pages` for a whole node | [`HotplugDomain::online_node`] / [`HotplugDomain::offline_node`] |
//!
//! # Lock order
//! online-mems read/write side → notifier chain mutex (only while copying the chain) → node-state mutex
//! (only while copying or setting masks). The controller holds the write side while it runs callbacks;
//! callbacks may re-enter the read side (it passes straight through) and may take their own locks
//! (`slab_mutex` in the slab crate) — never the write side.

#![warn(missing_docs)]

pub mod asym;
pub mod controller;
// Documented by its own `//!` header: an outer doc comment here would make rustdoc resolve that
// header's links from this module instead of from `linux`.
#[cfg(all(target_os = "linux", not(loom)))]
pub mod linux;
pub mod membarrier;
pub mod node_states;
pub mod notifier;
pub mod online_mems;
pub mod pause;
pub mod percpu;
pub mod sync;

pub use controller::{HotplugDomain, HotplugError, HotplugStats, Stage, StageHook, SIM_NODE_PAGES};
pub use hotslab_numa::{NodeId, NodeMask};
pub use node_states::{NodeState, NodeStateSnapshot, NodeStates};
pub use notifier::{
    CallbackRef, ChainSnapshot, MemoryCallback, MemoryEvent, MemoryNotify, NotifierChain,
    NotifierHandle, NotifyError, RegisterError, Veto, CHAIN_CAPACITY,
};
pub use online_mems::{LockKind, LockStats, OnlineMems, ReadGuard, WriteGuard};

/// The process-wide hotplug domain, created on first use from the kernel's node masks
/// (`/sys/devices/system/node/{possible,online,has_memory,has_normal_memory}`, read without allocating),
/// or, if sysfs cannot be read, a single node 0 with memory. Uses [`LockKind::default`]. Not available
/// under loom (models build their own domains).
///
/// ```
/// let d = hotslab_hotplug::default_domain();
/// let s = d.snapshot();
/// assert!(!s.has_memory.is_empty());
/// assert!(s.is_consistent());
/// assert!(std::ptr::eq(d, hotslab_hotplug::default_domain()));
/// ```
#[cfg(not(loom))]
pub fn default_domain() -> &'static HotplugDomain {
    static DOMAIN: std::sync::OnceLock<HotplugDomain> = std::sync::OnceLock::new();
    DOMAIN.get_or_init(|| HotplugDomain::with_states(boot_states(), LockKind::default()))
}

/// The node masks of the running kernel, or node 0 alone if they cannot be read.
#[cfg(not(loom))]
fn boot_states() -> NodeStateSnapshot {
    use hotslab_numa::sysfs::{read_node_mask, NodeState as File};
    let node0 = NodeMask::single(NodeId::new(0));
    let fallback = NodeStateSnapshot::boot(node0, node0);
    let (Ok(possible), Ok(has_memory)) = (
        read_node_mask(File::Possible),
        read_node_mask(File::HasMemory),
    ) else {
        return fallback;
    };
    if has_memory.is_empty() {
        return fallback;
    }
    let online = read_node_mask(File::Online).unwrap_or(has_memory);
    // A kernel without CONFIG_HIGHMEM has no separate has_normal_memory view; default to has_memory.
    let has_normal_memory = read_node_mask(File::HasNormalMemory).unwrap_or(has_memory);
    NodeStateSnapshot {
        possible: possible.union(&online).union(&has_memory),
        online,
        has_memory,
        has_normal_memory,
    }
}
