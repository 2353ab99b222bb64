//! # hotslab — a NUMA- and memory-hotplug-aware slab allocator
//!
//! hotslab is the Linux SLUB world in user space: object caches ([`KmemCache`]) with a
//! lock-free per-thread fast path and per-node parts, kmalloc size classes, a
//! [`GlobalAlloc`](core::alloc::GlobalAlloc) ([`SlabAlloc`]), and the memory-hotplug protocol
//! of Linux commit "mem-hotplug: implement get/put_online_mems": cache create, destroy and
//! shrink run under the online-mems read side so that a node coming online or going offline
//! can never leave a cache without a part for it.
//!
//! ## Lock order (written once; every function follows it)
//!
//! ```text
//! online-mems (read side, or the hotplug writer)      hotslab_hotplug::OnlineMems
//!   -> slab_mutex (the domain's cache registry)         SlabDomain::registry
//!     -> ThreadCache::lock (a thread cache's slow path)  thread.rs
//!       -> NodePart::lists (a node part's list lock)     node.rs
//!         -> NodeArena lock, metadata lock (leaves)      mem/
//! ```
//! The allocation fast path takes none of them. The hotplug writer holds the online-mems write
//! side while the notifier chain runs, and the slab notifier takes `slab_mutex`: so nothing may
//! wait for the online-mems lock while holding `slab_mutex`. A revoker (destroy, offline) never
//! holds a part's list lock while it waits for a thread cache.
//!
//! ## Glossary (kernel name → hotslab)
//!
//! | Linux                         | hotslab                                   |
//! |-------------------------------|-------------------------------------------|
//! | `struct kmem_cache`           | [`KmemCache`] (handle) / `cache::CacheInner` |
//! | `struct kmem_cache_node`      | `node::NodePart` (a cache's per-node part) |
//! | `struct kmem_cache_cpu`       | `thread::ThreadCache` (per thread, not per CPU) |
//! | `struct slab`                 | `slab::Slab` (descriptor kept off the object memory) |
//! | `slab_caches`, `slab_mutex`   | [`SlabDomain`]'s registry                 |
//! | `get_online_mems()`           | `OnlineMems::read()` (crate `hotslab-hotplug`) |
//! | `slab_memory_callback`        | `hotplug::SlabNotifier`                   |
//! | `kmalloc`, `kfree`, `krealloc` | [`kmalloc`], [`kfree`], [`krealloc`]      |
//! | `/proc/slabinfo`              | [`SlabDomain::slabinfo`]                  |
//! | `slub_debug=FZP`, hardened freelist | [`DebugFlags`], [`KmemCache::set_debug`], [`SlabAlloc::set_debug`] |
//!
//! ## Example
//!
//! ```
//! use hotslab::{CacheConfig, SlabDomain};
//!
//! let domain = SlabDomain::simulated(2).unwrap();
//! let cache = domain.create_cache(CacheConfig::new("dentry", 192)).unwrap();
//! let p = cache.alloc().unwrap();
//! // SAFETY: p is a live object of 192 bytes from `cache`.
//! unsafe { p.as_ptr().write_bytes(0xab, 192) };
//! cache.free(p).unwrap();
//! cache.destroy().unwrap();
//! ```

#![deny(unsafe_op_in_unsafe_fn)]

/// Following real Linux memory hotplug (sysfs + kernel uevents) in a background thread.
#[cfg(all(target_os = "linux", not(loom)))]
pub mod linux;
pub mod mem;

mod asan;
mod cache;
mod debug;
mod domain;
#[cfg(not(loom))]
mod fork;
mod global;
mod heap;
mod hotplug;
mod kmalloc;
mod knobs;
mod node;
#[cfg(not(loom))]
pub mod race;
mod report;
mod slab;
mod stats;
mod sync;
mod tls;
mod trim;

pub use cache::{
    CacheConfig, CacheError, CacheFlags, CacheStats, KmemCache, CACHE_LINE, MAX_ALIGN,
    MAX_OBJECT_SIZE,
};
pub use debug::{DebugFlags, POISON_END, POISON_FREE, RED_ACTIVE, RED_INACTIVE};
pub use domain::{DomainConfig, InvariantReport, LockingMode, SlabDomain, Violations};
#[cfg(not(loom))]
pub use fork::{fork_stats, install_fork_handlers, ForkStats};
pub use global::{default_domain, SlabAlloc};
pub use heap::{exit_thread_now, heaps_in_use, heaps_in_use as thread_slots_in_use};
pub use hotslab_hotplug as hotplug_api;
pub use hotslab_numa as numa;
pub use kmalloc::{
    class_of, class_size, kfree, kmalloc, kmalloc_node, krealloc, usable_size, FreeError,
    KMALLOC_CLASSES, KMALLOC_MAX,
};
pub use node::PartState;
pub use report::{print_slabinfo, SLABINFO_HEADER};
pub use stats::SlabInfoRow;
pub use trim::{for_each_kmalloc_cache, heap_stats, large_object_containing, trim, HeapStats};
