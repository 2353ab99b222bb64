//! # hotslab — a NUMA- and memory-hotplug-aware slab allocator
//!
//! hotslab is the Linux SLUB world in user space: object caches ([`KmemCache`]) with a
//! lock-free per-thread fast path and per-node parts, kmalloc size classes, a
//! [`GlobalAlloc`](core::alloc::GlobalAlloc) ([`SlabAlloc`]), and the memory-hotplug protocol
//! of Linux commit "mem-hotplug: implement get/put_online_mems": cache create, destroy and
//! shrink run under the online-mems read side so that a node coming online or going offline
//! can never leave a cache without a part for it.
//!
//! ## Layers (each file may call only the layers above it in this table)
//!
//! | layer | files | owns |
//! |---|---|---|
//! | memory | `mem/` (arena, meta, pagemap, large) | node-bound spans, metadata, the page map, large objects |
//! | slab | `slab.rs`, `debug.rs` (a variant of a slab: red zones, poison, hardened freelist) | one span carved into objects; its three freelists and counters |
//! | node part | `node.rs` | a cache's slabs on one node (lists under the list lock), part lifecycle |
//! | cache | `cache.rs`, `sweep.rs` | `KmemCache`: layout, parts, slab creation, settling, statistics; the delayed purge across parts |
//! | heap | `heap.rs`, `tls.rs`, `placement.rs` | per-thread heaps: ownership, fast paths, refill, revocation, exit; which node a thread's next slab comes from (its memory policy and cpuset) |
//! | domain | `domain.rs`, `hotplug.rs`, `fork.rs`, `race.rs`, `linux.rs` | the cache registry, locking modes, the hotplug notifier, fork |
//! | kmalloc | `kmalloc.rs`, `trim.rs` | size classes, kmalloc/kfree/krealloc over a domain |
//! | global allocator | `global.rs`, `background.rs`, `follow.rs`, `spawn.rs`, `knobs.rs`, `report.rs`, `stats.rs`, `publish.rs` | the default domain, `SlabAlloc`, the background purger, the default domain's hotplug follower (both started by `spawn.rs`), environment knobs, statistics for `hotslab-top` |
//!
//! `publish.rs` and the purge doorbell (`mem::ring_purge_bell`) are reached from below: the
//! heap's slow paths (acquire, release) and the slab notifier call `publish::tick` /
//! `publish::hotplug_event` (one line each). Neither waits for a lock that comes before the
//! caller's (publish takes `slab_mutex` only with `try_lock`) and neither allocates.
//!
//! Debug slabs are never owned by a heap: the heap's slow path asks `debug.rs` for an object
//! while a cache is in debug mode, and `debug.rs` never calls up into the heap.
//!
//! ## Ownership (the heap protocol, see `heap.rs`)
//!
//! Every thread has one heap behind one initial-exec TLS word. A slab is either *resting* in
//! its node part (owner `NO_OWNER`, on the part's partial/full/empty list, touched under the part's list
//! lock) or *owned* by one heap (on the part's `owned` list; its `free` and `local_free` lists
//! touched only by that heap's thread, or by a revoker after the heap's busy handshake). Frees by
//! the owner are plain pushes onto `local_free`; frees by anyone else are one CAS onto the slab's
//! cross-thread list. Destroy, offline and the debug switch revoke a heap's slabs without waiting
//! for an idle thread (an asymmetric barrier: the owner's fast path pays a compiler fence, the
//! revoker a `membarrier`).
//!
//! ## Lock order (written once; every function follows it)
//!
//! ```text
//! online-mems (read side, or the hotplug writer)      hotslab_hotplug::OnlineMems
//!   -> slab_mutex (the domain's cache registry)         SlabDomain::registry
//!     -> Heap::lock (a heap's slow path, or a revoker)   heap.rs
//!       -> NodePart::lists (a node part's list lock)     node.rs
//!         -> NodeArena lock, large tier, heap registry, metadata lock (leaves)   mem/, heap.rs
//! ```
//! The allocation fast path takes none of them; a heap's busy section (fast path, lock-free
//! refill) may take a part's list lock, whose holders never wait for a heap. The hotplug writer
//! holds the online-mems write side while the notifier chain runs, and the slab notifier takes
//! `slab_mutex`: so nothing may wait for the online-mems lock while holding `slab_mutex`. A
//! revoker (destroy, offline) never holds a part's list lock while it waits for a heap.
//!
//! ## Glossary (kernel name → hotslab)
//!
//! | Linux                         | hotslab                                   |
//! |-------------------------------|-------------------------------------------|
//! | `struct kmem_cache`           | [`KmemCache`] (handle) / `cache::CacheInner` |
//! | `struct kmem_cache_node`      | `node::NodePart` (a cache's per-node part) |
//! | `struct kmem_cache_cpu`       | `heap::ThreadCache` (per thread and cache, inside the thread's `heap::Heap`) |
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
//!
//! ## Entry points
//!
//! | to … | use | example |
//! |---|---|---|
//! | replace a program's allocator | [`SlabAlloc`] as `#[global_allocator]` | [below](#the-global-allocator), [`SlabAlloc`] |
//! | keep objects of one type in their own cache | [`SlabDomain::create_cache`], [`KmemCache`] | [`KmemCache`] |
//! | place memory on a node | [`KmemCache::alloc_node`], [`kmalloc_node`] | [below](#node-explicit-allocation) |
//! | add and remove nodes (simulated) | [`SlabDomain::online_node`] / [`offline_node`](SlabDomain::offline_node), [`SlabDomain::hotplug`] | [below](#memory-hotplug-simulated), [`SlabDomain`] |
//! | follow the kernel's real memory hotplug | [`linux::follow_hotplug`], [`linux::follow_default_domain`] | [`linux`] |
//! | tune the default domain without code | environment variables | [`knobs`] |
//! | give memory back now | [`trim`] (`malloc_trim`), [`KmemCache::shrink`] | [`KmemCache`] |
//!
//! `cargo run --release -p hotslab --example quickstart` runs the examples below as one
//! program; `--example race_demo` (with `--features pause-points`) is the race reproduction.
//!
//! ## The global allocator
//!
//! One static is all a program needs; every `Box`, `Vec` and `String` is then served by the
//! kmalloc caches of the process-wide default domain ([`default_domain`]), large blocks by page
//! spans:
//!
//! ```
//! #[global_allocator]
//! static A: hotslab::SlabAlloc = hotslab::SlabAlloc::new();
//!
//! fn main() {
//!     let words: Vec<String> = (0..10_000).map(|i| format!("word{i}")).collect();
//!     assert_eq!(words[1234], "word1234");
//!     // The allocation above came from hotslab: its kmalloc caches count it.
//!     let served = hotslab::heap_stats().expect("the default domain is built");
//!     assert!(served.allocs >= 10_000 && served.slab_used_bytes >= 10_000 * 8);
//!     drop(words);
//!     hotslab::trim(); // what malloc_trim(0) does: empty slabs go back to the kernel now
//! }
//! ```
//!
//! ## Node-explicit allocation
//!
//! [`KmemCache::alloc_node`] (`kmem_cache_alloc_node`) and [`kmalloc_node`] take the object from
//! the given node's part, falling back by distance when that node cannot serve. A simulated
//! topology gives several nodes on any machine:
//!
//! ```
//! use hotslab::numa::NodeId;
//! use hotslab::{CacheConfig, SlabDomain};
//!
//! let d = SlabDomain::simulated(4).unwrap();
//! let c = d.create_cache(CacheConfig::new("skbuff", 256)).unwrap();
//! for n in 0..4 {
//!     let o = c.alloc_node(NodeId::new(n)).unwrap();
//!     assert_eq!(c.node_of(o), Some(NodeId::new(n)));
//!     c.free(o).unwrap();
//! }
//!
//! // kmalloc_node on the default domain (the machine's own nodes, or HOTSLAB_NODES simulated).
//! let node = hotslab::default_domain().unwrap().topology().first_node();
//! let p = hotslab::kmalloc_node(100, node);
//! assert!(!p.is_null());
//! assert!(hotslab::usable_size(p).unwrap() >= 100);
//! // SAFETY: p came from kmalloc_node and is not used again.
//! unsafe { hotslab::kfree(p) };
//! ```
//!
//! ## Memory hotplug (simulated)
//!
//! A simulated domain has its own hotplug controller ([`SlabDomain::hotplug`], a
//! [`HotplugDomain`](hotplug_api::HotplugDomain)). Onlining or offlining a node through it runs
//! the memory notifier chain under the online-mems write side, and the slab notifier makes every
//! cache follow: a part for a node coming online, draining and retiring parts of a node going
//! away. An offline that would strand live objects is refused; the forced one (what the kernel
//! does) drains them instead.
//!
//! ```
//! use hotslab::numa::NodeId;
//! use hotslab::{CacheConfig, PartState, SlabDomain};
//!
//! let d = SlabDomain::simulated(3).unwrap();
//! let caches: Vec<_> = ["dentry", "inode", "filp"]
//!     .iter()
//!     .map(|name| d.create_cache(CacheConfig::new(name, 128)).unwrap())
//!     .collect();
//! let n2 = NodeId::new(2);
//! let controller = d.hotplug();
//!
//! controller.offline_node(n2).unwrap(); // the controller itself, as the kernel's hotplug path
//! assert!(!controller.snapshot().has_memory.test(n2));
//! for c in &caches {
//!     assert_ne!(c.part_state(n2), Some(PartState::Live)); // no new slabs on node 2
//!     let o = c.alloc_node(n2).unwrap(); // falls back to another node
//!     assert_ne!(c.node_of(o), Some(n2));
//!     c.free(o).unwrap();
//! }
//!
//! controller.online_node(n2).unwrap();
//! for c in &caches {
//!     assert_eq!(c.part_state(n2), Some(PartState::Live)); // every cache followed
//! }
//! assert!(d.check_invariants().ok());
//!
//! // An object on node 2 makes a refusable offline fail; nothing changes.
//! let o = caches[0].alloc_node(n2).unwrap();
//! assert!(d.offline_node(n2).is_err());
//! assert_eq!(caches[0].part_state(n2), Some(PartState::Live));
//! // The forced offline cannot be refused: the part drains, the object stays valid.
//! d.offline_node_forced(n2).unwrap();
//! assert_eq!(caches[0].part_state(n2), Some(PartState::Draining));
//! caches[0].free(o).unwrap(); // its last object: the part retires
//! assert_eq!(caches[0].part_state(n2), Some(PartState::Retired));
//! assert_eq!(controller.stats().offlined, 2);
//! ```
//!
//! Real hotplug (a DIMM or CXL expander appearing as a node) is followed by [`linux`].

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

/// Following real Linux memory hotplug (sysfs + kernel uevents) in a background thread.
#[cfg(all(target_os = "linux", not(loom)))]
pub mod linux;
pub mod mem;

mod asan;
mod background;
mod cache;
mod debug;
mod domain;
mod doorbell;
mod follow;
#[cfg(not(loom))]
mod fork;
mod global;
mod heap;
mod hotplug;
mod kmalloc;
pub mod knobs;
mod node;
mod placement;
pub mod publish;
#[cfg(not(loom))]
pub mod race;
mod report;
mod slab;
mod spawn;
mod stats;
mod sweep;
mod sync;
mod tls;
mod trim;

pub use background::{background_rounds, background_running};
pub use cache::{
    CacheConfig, CacheError, CacheFlags, CacheStats, KmemCache, CACHE_LINE, MAX_ALIGN,
    MAX_OBJECT_SIZE,
};
pub use debug::{DebugFlags, POISON_END, POISON_FREE, QUARANTINE_SLOTS, RED_ACTIVE, RED_INACTIVE};
#[cfg(loom)]
#[doc(hidden)]
pub use domain::HeapMutation;
/// loom builds only: the purge doorbell's protocol over loom stand-ins (`tests/loom_doorbell.rs`).
#[cfg(loom)]
#[doc(hidden)]
pub mod loom_doorbell {
    pub use crate::doorbell::loom_model::{LoomFutex, PurgeModel};
    pub use crate::doorbell::BellMutation;
}
pub use domain::{DomainConfig, InvariantReport, LockingMode, SlabDomain, Violations};
#[cfg(not(loom))]
pub use fork::{fork_stats, install_fork_handlers, ForkStats};
pub use global::{default_domain, SlabAlloc};
pub use heap::{exit_thread_now, heaps_in_use, heaps_in_use as thread_slots_in_use};
pub use hotslab_hotplug as hotplug_api;
pub use hotslab_numa as numa;
pub use kmalloc::{
    class_of, class_size, kfree, kmalloc, kmalloc_node, krealloc, try_kmalloc_node, usable_size,
    FreeError, KMALLOC_CLASSES, KMALLOC_MAX,
};
pub use node::PartState;
#[doc(hidden)]
pub use placement::{forget_interleave_weights, set_interleave_weight, set_thread_mempolicy};
pub use placement::{refresh_mempolicy, thread_placement, ThreadPlacement};
pub use report::{print_slabinfo, SLABINFO_HEADER};
pub use stats::SlabInfoRow;
pub use trim::{for_each_kmalloc_cache, heap_stats, large_object_containing, trim, HeapStats};
