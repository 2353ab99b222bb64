//! The slab domain: one world of caches — its topology, its hotplug domain, its per-node arenas,
//! the cache registry (`slab_caches` under `slab_mutex`), the locking mode, and the
//! create / destroy / shrink protocols with their race detectors (generation-checked parts and
//! violation counters). The process-wide default domain lives in static memory (`global.rs`).
//! Lock order: see the crate docs; this file takes online-mems → slab_mutex → part locks.

use core::alloc::Layout;
use core::ptr::{self, NonNull};
use std::sync::atomic::{
    AtomicBool as StdAtomicBool, AtomicU64 as StdAtomicU64, Ordering as StdOrdering,
};
use std::sync::{Arc, Weak};
use std::time::Duration;

use hotslab_hotplug::{
    CallbackRef, HotplugDomain, HotplugError, LockKind, MemoryCallback, MemoryNotify,
    NotifierHandle, NotifyError,
};
use hotslab_numa::{NodeId, NodeMask, PageSource, Topology};

use crate::cache::{CacheConfig, CacheError, CacheInner, KmemCache};
use crate::heap as thread;
use crate::mem::{meta_alloc, ArenaError, NodeArena};
use crate::node::{NodePart, PartState};
use crate::sync::{lock, Mutex, MutexGuard, Ordering};

/// How create, destroy and shrink synchronise with memory hotplug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockingMode {
    /// The fix (Linux 3.16): create, destroy and shrink hold the online-mems read side for their
    /// whole run, so they happen entirely before or after a hotplug operation. The default.
    OnlineMems,
    /// Before the fix: create and destroy take only `slab_mutex`, shrink takes no lock at all;
    /// node masks change after the GOING_ONLINE callbacks. Reproduces the race; never the default.
    Legacy,
    /// Linux 5.12+: no online-mems lock; the domain's private `slab_nodes` mask, changed only
    /// under `slab_mutex` in its own callbacks, is what create iterates; parts are never retired
    /// at offline (they park as draining and come back at the next online).
    SlabNodes,
}

impl LockingMode {
    /// All modes, for tables.
    pub const ALL: [LockingMode; 3] = [
        LockingMode::Legacy,
        LockingMode::OnlineMems,
        LockingMode::SlabNodes,
    ];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            LockingMode::OnlineMems => "OnlineMems",
            LockingMode::Legacy => "Legacy",
            LockingMode::SlabNodes => "SlabNodes",
        }
    }
}

/// Domain settings.
#[derive(Clone, Copy, Debug)]
pub struct DomainConfig {
    /// Locking mode.
    pub mode: LockingMode,
    /// Online-mems lock implementation (for domains that build their own hotplug domain); default
    /// [`LockKind::default`] (the asymmetric lock).
    pub lock_kind: LockKind,
    /// How long a refusable offline waits for live objects on the node to be freed.
    pub drain_timeout: Duration,
    /// Create the kmalloc caches at start (the global domain always does).
    pub kmalloc: bool,
    /// How long an empty slab stays committed on its part's empty list before it is given back
    /// (decommitted) in a batch, outside the part's lock. Zero: give back at once, beyond a
    /// budget of a few empty slabs per part. The process-wide default domain uses 50 ms
    /// (`HOTSLAB_PURGE_MS`).
    pub purge_delay: Duration,
    /// Transparent huge pages for big heaps: once a node's arena has handed out this many bytes
    /// of slab spans, the 2 MiB regions new spans reach are advised `MADV_HUGEPAGE`
    /// ([`NodeArena::set_huge_pages_after`](crate::mem::NodeArena::set_huge_pages_after)).
    /// `None` (the default, also for the process-wide domain unless `HOTSLAB_THP` is set): never.
    pub huge_pages_after: Option<usize>,
}

impl Default for DomainConfig {
    fn default() -> Self {
        DomainConfig {
            mode: LockingMode::OnlineMems,
            lock_kind: LockKind::default(),
            drain_timeout: Duration::from_millis(100),
            kmalloc: true,
            purge_delay: Duration::ZERO,
            huge_pages_after: None,
        }
    }
}

/// Race detectors: each counts an event that must never happen in a correct mode.
#[derive(Debug, Default)]
pub struct Violations {
    /// An allocation looked for a node's part and found none although the node has memory
    /// (the kernel would dereference NULL).
    pub missing_part: StdAtomicU64,
    /// A part was retired twice (generation check).
    pub double_retire: StdAtomicU64,
    /// A destroyed cache kept a part that nobody will retire (a leak).
    pub leaked_part: StdAtomicU64,
    /// A shrink or destroy used a part after it was retired (use after free, caught safely).
    pub use_after_retire: StdAtomicU64,
}

impl Violations {
    /// Sum of all counters.
    pub fn total(&self) -> u64 {
        self.missing_part.load(StdOrdering::Relaxed)
            + self.double_retire.load(StdOrdering::Relaxed)
            + self.leaked_part.load(StdOrdering::Relaxed)
            + self.use_after_retire.load(StdOrdering::Relaxed)
    }
}

/// A deliberate break of one heap protocol step (`heap.rs`, `slab.rs`), for the loom models'
/// mutation checks ([`SlabDomain::mutation_heap`]): a model that cannot fail proves nothing.
#[cfg(loom)]
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum HeapMutation {
    /// Every protocol as written.
    None,
    /// A revoker does not wait for the owner's busy section to end before taking its slabs.
    RevokeSkipsBusyWait,
    /// Giving an owned slab back to its part keeps the old owner id in `Slab::owner`.
    ReleaseKeepsOwner,
    /// A remote free does not settle a draining part after its push (the drain handshake).
    RemoteFreeIgnoresDraining,
    /// Collecting the cross-thread list is a load and a store of 0 instead of one swap.
    CollectRemoteLoadStore,
    /// The cross-thread free that clears a slab's parked bit does not tell the owner.
    ParkedFreeSkipsNotice,
    /// Parking a slab on the full queue ignores cross-thread frees already pending.
    ParkIgnoresPending,
}

/// Result of [`SlabDomain::check_invariants`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InvariantReport {
    /// (cache, node) pairs where a node with memory has no live part (I1).
    pub missing: Vec<(&'static str, NodeId)>,
    /// (cache, node) pairs where a node without memory has a live part (I1).
    pub stray: Vec<(&'static str, NodeId)>,
    /// Caches checked.
    pub caches: usize,
}

impl InvariantReport {
    /// Whether I1 holds.
    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.stray.is_empty()
    }
}

/// The cache registry, guarded by `slab_mutex`.
pub(crate) struct Registry {
    head: *mut CacheInner,
    /// Destroyed caches whose metadata can be reused.
    free: *mut CacheInner,
    /// SlabNodes mode: the nodes caches have parts for.
    slab_nodes: NodeMask,
    count: usize,
}

// SAFETY: the raw pointers are only followed under slab_mutex.
unsafe impl Send for Registry {}

impl Registry {
    fn iter(&self) -> impl Iterator<Item = &CacheInner> + '_ {
        let mut cur = self.head;
        core::iter::from_fn(move || {
            if cur.is_null() {
                return None;
            }
            // SAFETY: registry members are valid cache metadata.
            let c = unsafe { &*cur };
            cur = c.next.get();
            Some(c)
        })
    }

    fn link(&mut self, c: *mut CacheInner) {
        // SAFETY: c is valid and unlinked; we hold slab_mutex.
        unsafe {
            (*c).prev.set(ptr::null_mut());
            (*c).next.set(self.head);
            if !self.head.is_null() {
                (*self.head).prev.set(c);
            }
        }
        self.head = c;
        self.count += 1;
    }

    fn unlink(&mut self, c: *mut CacheInner) {
        // SAFETY: c is on the list; we hold slab_mutex.
        unsafe {
            let (p, n) = ((*c).prev.get(), (*c).next.get());
            if p.is_null() {
                self.head = n;
            } else {
                (*p).next.set(n);
            }
            if !n.is_null() {
                (*n).prev.set(p);
            }
            (*c).prev.set(ptr::null_mut());
            (*c).next.set(ptr::null_mut());
        }
        self.count -= 1;
    }
}

/// Where a domain's topology or hotplug domain lives.
enum Owned<T: 'static> {
    Static(&'static T),
    Boxed(Box<T>),
    Shared(Arc<T>),
}

impl<T> Owned<T> {
    fn get(&self) -> &T {
        match self {
            Owned::Static(t) => t,
            Owned::Boxed(b) => b,
            Owned::Shared(a) => a,
        }
    }
}

/// How a cache handle keeps its domain alive.
#[derive(Clone)]
pub(crate) enum DomainRef {
    Static(&'static SlabDomain),
    Shared(Arc<SlabDomain>),
}

impl DomainRef {
    #[inline(always)]
    pub fn get(&self) -> &SlabDomain {
        match self {
            DomainRef::Static(d) => d,
            DomainRef::Shared(a) => a,
        }
    }
}

/// One world of caches: topology, hotplug domain, arenas, registry, locking mode.
///
/// ```
/// use hotslab::{CacheConfig, SlabDomain};
/// use hotslab::numa::NodeId;
/// let d = SlabDomain::simulated(4).unwrap();
/// let c = d.create_cache(CacheConfig::new("buffer_head", 104)).unwrap();
/// let o = c.alloc_node(NodeId::new(2)).unwrap();
/// assert_eq!(c.node_of(o), Some(NodeId::new(2)));
/// c.free(o).unwrap();
/// // Node 3 goes away and comes back: every cache follows.
/// d.offline_node(NodeId::new(3)).unwrap();
/// assert!(d.check_invariants().ok());
/// d.online_node(NodeId::new(3)).unwrap();
/// assert!(d.check_invariants().ok());
/// ```
pub struct SlabDomain {
    topology: Owned<Topology>,
    hotplug: Owned<HotplugDomain>,
    pub(crate) config: DomainConfig,
    pub(crate) pages: PageSource,
    arenas: *mut NodeArena,
    nr_node_ids: usize,
    registry: Mutex<Registry>,
    /// Race detectors.
    pub violations: Violations,
    notifier: std::sync::Mutex<Option<NotifierHandle>>,
    pub(crate) kmalloc: [std::sync::atomic::AtomicPtr<CacheInner>; crate::kmalloc::NCLASSES],
    /// The purge sweep over the kmalloc caches' parts (sweep.rs).
    pub(crate) sweep: crate::sweep::Sweep,
    skip_read_side: StdAtomicBool,
    /// Place slabs by the calling thread's memory policy and cpuset (`placement.rs`).
    task_placement: StdAtomicBool,
    /// Loom models only: the heap-protocol mutation switched on ([`HeapMutation`] as a byte).
    #[cfg(loom)]
    heap_mutation: std::sync::atomic::AtomicU8,
    /// Lock-free copy of `Registry::slab_nodes` (written under slab_mutex) for allocation paths,
    /// which must not take slab_mutex (it comes before their locks in the lock order).
    slab_nodes_view: [StdAtomicU64; 16],
    fail_part_alloc: StdAtomicU64,
    pub(crate) self_weak: std::sync::Mutex<Option<Weak<SlabDomain>>>,
}

// SAFETY: the arena array is metadata owned by the domain and internally synchronised.
unsafe impl Send for SlabDomain {}
// SAFETY: see Send.
unsafe impl Sync for SlabDomain {}

/// Errors building a domain.
#[derive(Debug)]
pub enum DomainError {
    /// Topology detection failed.
    Topology(hotslab_numa::TopologyError),
    /// Metadata memory ran out.
    NoMemory,
    /// The notifier chain is full.
    Notifier,
}

impl core::fmt::Display for DomainError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DomainError::Topology(e) => write!(f, "topology: {e:?}"),
            DomainError::NoMemory => f.write_str("out of metadata memory"),
            DomainError::Notifier => f.write_str("memory notifier chain is full"),
        }
    }
}

impl std::error::Error for DomainError {}

impl SlabDomain {
    /// A domain over a simulated topology of `n` nodes (laid over the real ones), all with memory,
    /// with its own hotplug domain and default settings.
    pub fn simulated(n: usize) -> Result<Arc<SlabDomain>, DomainError> {
        Self::simulated_with(n, DomainConfig::default())
    }

    /// As [`SlabDomain::simulated`], with settings.
    pub fn simulated_with(n: usize, config: DomainConfig) -> Result<Arc<SlabDomain>, DomainError> {
        let topo = Topology::simulated(n).map_err(DomainError::Topology)?;
        Self::with_topology(topo, config)
    }

    /// A domain over `topo`, every node possible and with memory, with its own hotplug domain.
    pub fn with_topology(
        topo: Box<Topology>,
        config: DomainConfig,
    ) -> Result<Arc<SlabDomain>, DomainError> {
        let nodes = topo.nodes();
        let hp = Arc::new(HotplugDomain::new(nodes, nodes, config.lock_kind));
        Self::new(topo, hp, config)
    }

    /// A domain over `topo` following the hotplug domain `hp` (which may be shared).
    pub fn new(
        topo: Box<Topology>,
        hp: Arc<HotplugDomain>,
        config: DomainConfig,
    ) -> Result<Arc<SlabDomain>, DomainError> {
        let d = Arc::new(Self::build(Owned::Boxed(topo), Owned::Shared(hp), config)?);
        *d.self_weak.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::downgrade(&d));
        let cb: Arc<dyn MemoryCallback> = Arc::new(WeakNotifier(Arc::downgrade(&d)));
        d.register_notifier(CallbackRef::Shared(cb))?;
        if config.kmalloc {
            d.create_kmalloc_caches()?;
        }
        #[cfg(not(loom))]
        registry_of_domains::add(&d);
        Ok(d)
    }

    /// Builds the global domain in static storage (no global-allocator use).
    pub(crate) fn build_static(
        topo: &'static Topology,
        hp: &'static HotplugDomain,
        config: DomainConfig,
    ) -> Result<SlabDomain, DomainError> {
        Self::build(Owned::Static(topo), Owned::Static(hp), config)
    }

    /// Second half of the static build, once the domain has its final address.
    pub(crate) fn finish_static(&'static self) -> Result<(), DomainError> {
        self.register_notifier(CallbackRef::Static(self))?;
        self.create_kmalloc_caches()?;
        #[cfg(not(loom))]
        registry_of_domains::add(self);
        Ok(())
    }

    fn build(
        topology: Owned<Topology>,
        hotplug: Owned<HotplugDomain>,
        config: DomainConfig,
    ) -> Result<SlabDomain, DomainError> {
        let topo = topology.get();
        // Per-node tables cover every node the hotplug domain may give memory, not only the
        // topology's: a shared hotplug domain can be wider (a node beyond the tables would get no
        // part at create or GOING_ONLINE, breaking I1). Nodes outside the topology have no real
        // node behind their arena (memory from the default policy).
        let nr = topo
            .nodes()
            .union(&hotplug.get().states.possible())
            .iter()
            .last()
            .map_or(1, |n| n.index() + 1);
        let arenas = meta_alloc(Layout::array::<NodeArena>(nr).map_err(|_| DomainError::NoMemory)?)
            .cast::<NodeArena>();
        if arenas.is_null() {
            return Err(DomainError::NoMemory);
        }
        for i in 0..nr {
            let nid = NodeId::new(i as u16);
            let real = topo.contains(nid).then(|| topo.real_node(nid));
            // SAFETY: arenas has room for nr arenas; each is initialised once in place.
            unsafe { NodeArena::init(arenas.add(i), nid, real) };
            // SAFETY: initialised just above; nothing else refers to it yet.
            unsafe { &*arenas.add(i) }.set_huge_pages_after(config.huge_pages_after);
        }
        let slab_nodes = hotplug.get().states.has_memory();
        Ok(SlabDomain {
            topology,
            hotplug,
            config,
            pages: PageSource::new(),
            arenas,
            nr_node_ids: nr,
            registry: Mutex::new(Registry {
                head: ptr::null_mut(),
                free: ptr::null_mut(),
                slab_nodes,
                count: 0,
            }),
            violations: Violations::default(),
            notifier: std::sync::Mutex::new(None),
            kmalloc: [const { std::sync::atomic::AtomicPtr::new(ptr::null_mut()) };
                crate::kmalloc::NCLASSES],
            sweep: crate::sweep::Sweep::new(),
            skip_read_side: StdAtomicBool::new(false),
            task_placement: StdAtomicBool::new(false),
            #[cfg(loom)]
            heap_mutation: std::sync::atomic::AtomicU8::new(HeapMutation::None as u8),
            slab_nodes_view: {
                let w = slab_nodes.as_words();
                core::array::from_fn(|i| StdAtomicU64::new(w[i]))
            },
            fail_part_alloc: StdAtomicU64::new(u64::MAX),
            self_weak: std::sync::Mutex::new(None),
        })
    }

    fn register_notifier(&self, cb: CallbackRef) -> Result<(), DomainError> {
        // Slab's callback runs early among memory callbacks, as in the kernel (priority 1).
        let h = self
            .hotplug()
            .register_notifier(cb, 1)
            .map_err(|_| DomainError::Notifier)?;
        *self.notifier.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
        Ok(())
    }

    fn create_kmalloc_caches(&self) -> Result<(), DomainError> {
        for (i, slot) in self.kmalloc.iter().enumerate() {
            let cfg = CacheConfig::new(
                crate::kmalloc::CLASS_NAMES[i],
                crate::kmalloc::class_size(i),
            );
            let c = self.create_raw(&cfg).map_err(|_| DomainError::NoMemory)?;
            slot.store(c, StdOrdering::Release);
        }
        Ok(())
    }

    /// The topology.
    pub fn topology(&self) -> &Topology {
        self.topology.get()
    }

    /// The hotplug domain this slab domain follows.
    pub fn hotplug(&self) -> &HotplugDomain {
        self.hotplug.get()
    }

    /// The locking mode.
    pub fn mode(&self) -> LockingMode {
        self.config.mode
    }

    /// The page source (fault injection, mapped-bytes counter).
    pub fn page_source(&self) -> &PageSource {
        &self.pages
    }

    pub(crate) fn nr_node_ids(&self) -> usize {
        self.nr_node_ids
    }

    pub(crate) fn arena(&self, nid: NodeId) -> Option<&NodeArena> {
        // SAFETY: index checked; arenas live as long as the domain.
        (nid.index() < self.nr_node_ids).then(|| unsafe { &*self.arenas.add(nid.index()) })
    }

    pub(crate) fn arena_alloc(&self, nid: NodeId, units: usize) -> Option<NonNull<u8>> {
        match self.arena(nid)?.alloc_units(&self.pages, units) {
            Ok(p) => Some(p),
            Err(ArenaError::NodeGone) => {
                // EINVAL from mbind: the node is gone, or the cpuset no longer allows it.
                crate::placement::bind_refused();
                None
            }
            Err(_) => None,
        }
    }

    /// # Safety
    /// `p` came from `arena_alloc(nid, units)` and holds no live object.
    pub(crate) unsafe fn arena_free(&self, nid: NodeId, p: NonNull<u8>, units: usize) {
        if let Some(a) = self.arena(nid) {
            // SAFETY: forwarded.
            let _ = unsafe { a.free_units(&self.pages, p, units) };
        }
    }

    /// Bytes of slab spans handed out by this domain's arenas right now.
    pub fn committed_bytes(&self) -> usize {
        (0..self.nr_node_ids)
            .filter_map(|i| self.arena(NodeId::new(i as u16)))
            .map(NodeArena::committed_bytes)
            .sum()
    }

    /// Whether new slabs follow the calling thread's memory policy and cpuset (the default
    /// domain does), rather than the CPU's node and the distance order.
    pub fn task_placement(&self) -> bool {
        self.task_placement.load(StdOrdering::Relaxed)
    }

    /// Makes new slabs (and large objects) of this domain follow the calling thread's memory
    /// policy (`get_mempolicy`: bind and preferred nodes, interleave in turn) and never go to a
    /// node outside its cpuset's `mems_allowed`; `alloc_node` on such a node then fails with
    /// [`CacheError::NodeNotAllowed`](crate::CacheError::NodeNotAllowed). The process-wide
    /// default domain has it on; domains built by hand start with it off (the CPU's node first,
    /// then by distance). See [`refresh_mempolicy`](crate::refresh_mempolicy).
    pub fn set_task_placement(&self, on: bool) {
        self.task_placement.store(on, StdOrdering::Relaxed);
    }

    /// The nodes to try, in order, for the calling thread's next slab (`want`: an explicit
    /// node); see `placement::alloc_order`.
    #[inline]
    pub(crate) fn alloc_order(&self, want: Option<NodeId>, out: &mut [NodeId]) -> usize {
        crate::placement::alloc_order(self, want, out, None)
    }

    /// [`SlabDomain::alloc_order`] for a new slab of a cache whose interleave cursor is
    /// `cursor` (an unweighted interleave policy takes the next node from it).
    pub(crate) fn alloc_order_in(
        &self,
        want: Option<NodeId>,
        out: &mut [NodeId],
        cursor: Option<&std::sync::atomic::AtomicUsize>,
    ) -> usize {
        crate::placement::alloc_order(self, want, out, cursor)
    }

    /// After every node of an order failed: the default policy's order if an `mbind` was
    /// refused on the way, else 0; see `placement::order_after_refusal`.
    #[cold]
    pub(crate) fn order_after_refusal(&self, want: Option<NodeId>, out: &mut [NodeId]) -> usize {
        crate::placement::order_after_refusal(self, want, out)
    }

    /// Fallback order from `start` (the topology's distance order).
    pub(crate) fn fallback(&self, start: NodeId, out: &mut [NodeId]) -> usize {
        let n = self.topology().fallback_order(start, out);
        if n == 0 && !out.is_empty() {
            out[0] = start;
            return 1;
        }
        n
    }

    /// Whether allocations may expect a part on `nid` (it has memory in the domain's view).
    pub(crate) fn node_allocatable(&self, nid: NodeId) -> bool {
        match self.config.mode {
            LockingMode::SlabNodes => {
                let i = nid.index();
                i < 1024
                    && self.slab_nodes_view[i / 64].load(StdOrdering::Acquire) & (1 << (i % 64))
                        != 0
            }
            _ => self.hotplug().states.has_memory().test(nid),
        }
    }

    // ---- create / destroy / shrink ----------------------------------------------------------

    /// The online-mems read side, unless the mode (or the mutation switch) says not to take it.
    fn read_side(&self) -> Option<hotslab_hotplug::ReadGuard<'_>> {
        let take = self.config.mode == LockingMode::OnlineMems
            && !self.skip_read_side.load(StdOrdering::Relaxed);
        take.then(|| self.hotplug().read())
    }

    fn slab_mutex(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    /// The node mask create and destroy iterate, per mode.
    fn node_mask(&self, reg: &Registry) -> NodeMask {
        match self.config.mode {
            LockingMode::SlabNodes => reg.slab_nodes,
            _ => self.hotplug().states.has_memory(),
        }
    }

    /// Creates a cache (`kmem_cache_create`).
    pub fn create_cache(&self, cfg: CacheConfig) -> Result<KmemCache, CacheError> {
        let inner = self.create_raw(&cfg)?;
        // SAFETY: create_raw returns valid cache metadata.
        let gen = unsafe { (*inner).generation.load(Ordering::Relaxed) };
        Ok(KmemCache {
            domain: self.domain_ref(),
            inner: NonNull::new(inner).ok_or(CacheError::NoMemory)?,
            gen,
        })
    }

    fn domain_ref(&self) -> DomainRef {
        if let Some(arc) = self
            .self_weak
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(Weak::upgrade)
        {
            return DomainRef::Shared(arc);
        }
        // SAFETY: a domain without an Arc is the static global domain.
        DomainRef::Static(unsafe { &*(self as *const SlabDomain) })
    }

    pub(crate) fn create_raw(&self, cfg: &CacheConfig) -> Result<*mut CacheInner, CacheError> {
        crate::cache::layout_for(cfg)?;
        let _r = self.read_side();
        let mut reg = self.slab_mutex();
        let mask = self.node_mask(&reg);
        hotslab_hotplug::pause::point(
            "create:after-mask-read",
            mask.first().unwrap_or(NodeId::new(0)),
        );
        let reuse = reg.free;
        let c = CacheInner::make(self, cfg, reuse)?;
        if !reuse.is_null() {
            // SAFETY: reuse heads the free list; its `next` links the rest.
            reg.free = unsafe { (*reuse).next.get() };
        }
        // SAFETY: c is valid cache metadata.
        let cache = unsafe { &*c };
        for nid in mask.iter() {
            if self.ensure_part(cache, nid).is_err() {
                self.retire_all_parts(cache);
                cache.dead.store(true, Ordering::Release);
                cache.next.set(reg.free);
                reg.free = c;
                return Err(CacheError::NoMemory);
            }
        }
        reg.link(c);
        Ok(c)
    }

    /// Gives `cache` a live part on `nid`: reuses a quarantined one or makes a new one.
    fn ensure_part(&self, cache: &CacheInner, nid: NodeId) -> Result<(), NotifyError> {
        let Some(slot) = cache.part_slot(nid) else {
            return Ok(());
        };
        let p = slot.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: parts live as long as the cache.
            let part = unsafe { &*p };
            let (gen, st) = part.snapshot();
            match st {
                PartState::Live => {}
                PartState::Draining => {
                    part.transition(gen, PartState::Draining, PartState::Live);
                }
                PartState::Retired => {
                    part.transition(gen, PartState::Retired, PartState::Live);
                }
            }
            return Ok(());
        }
        if self.fail_part_alloc.load(StdOrdering::Relaxed) == 0 {
            return Err(NotifyError::NoMemory);
        }
        let _ =
            self.fail_part_alloc
                .fetch_update(StdOrdering::Relaxed, StdOrdering::Relaxed, |v| {
                    (v != u64::MAX).then(|| v.saturating_sub(1))
                });
        let np = meta_alloc(Layout::new::<NodePart>()).cast::<NodePart>();
        if np.is_null() {
            return Err(NotifyError::NoMemory);
        }
        // SAFETY: fresh metadata for one NodePart.
        unsafe { np.write(NodePart::new(nid)) };
        slot.store(np, Ordering::Release);
        Ok(())
    }

    /// Retires every non-retired part of `cache` (create failure, destroy of every part).
    fn retire_all_parts(&self, cache: &CacheInner) {
        for i in 0..cache.nr_node_ids {
            let p = cache.part(NodeId::new(i as u16));
            if p.is_null() {
                continue;
            }
            // SAFETY: parts live as long as the cache.
            let part = unsafe { &*p };
            let (gen, st) = part.snapshot();
            if st != PartState::Retired {
                part.retire(gen);
            }
        }
    }

    pub(crate) fn destroy_cache(&self, c: &CacheInner) -> Result<(), CacheError> {
        let _r = self.read_side();
        let mut reg = self.slab_mutex();
        if c.is_dead() {
            return Err(CacheError::Destroyed);
        }
        c.dead.store(true, Ordering::SeqCst);
        for tc in c.thread_caches() {
            thread::revoke(c, tc);
        }
        let live: usize = (0..c.nr_node_ids)
            .map(|i| c.part(NodeId::new(i as u16)))
            .filter(|p| !p.is_null())
            // SAFETY: parts live as long as the cache.
            .map(|p| c.part_in_use(unsafe { &*p }))
            .sum();
        if live > 0 {
            c.dead.store(false, Ordering::SeqCst);
            report_live_objects(c.name, live);
            return Err(CacheError::LiveObjects {
                name: c.name,
                count: live,
            });
        }
        let cp = c as *const CacheInner as *mut CacheInner;
        reg.unlink(cp);
        let mask = match self.config.mode {
            // Linux 5.12+ frees every part the cache has (for_each_kmem_cache_node): parked
            // parts of offline nodes included.
            LockingMode::SlabNodes => {
                let mut m = NodeMask::new();
                for i in 0..c.nr_node_ids {
                    if !c.part(NodeId::new(i as u16)).is_null() {
                        m.set(NodeId::new(i as u16));
                    }
                }
                m
            }
            _ => self.node_mask(&reg),
        };
        hotslab_hotplug::pause::point(
            "destroy:after-mask-read",
            mask.first().unwrap_or(NodeId::new(0)),
        );
        for nid in mask.iter() {
            let p = c.part(nid);
            if p.is_null() {
                continue;
            }
            // SAFETY: parts live as long as the cache metadata.
            let part = unsafe { &*p };
            let (gen, st) = part.snapshot();
            if st == PartState::Retired {
                if self.config.mode != LockingMode::SlabNodes {
                    self.violations
                        .use_after_retire
                        .fetch_add(1, StdOrdering::Relaxed);
                }
                continue;
            }
            c.shrink_part(part);
            if !part.retire(gen) {
                self.violations
                    .double_retire
                    .fetch_add(1, StdOrdering::Relaxed);
            }
        }
        // Whatever part is still not retired was missed by the mask walk: nobody will retire it.
        for i in 0..c.nr_node_ids {
            let p = c.part(NodeId::new(i as u16));
            // SAFETY: as above.
            if !p.is_null() && unsafe { (*p).state() } != PartState::Retired {
                self.violations
                    .leaked_part
                    .fetch_add(1, StdOrdering::Relaxed);
                // Reclaim it anyway so the reused metadata starts clean (the leak is counted).
                // SAFETY: as above.
                let part = unsafe { &*p };
                c.shrink_part(part);
                part.retire(part.generation());
            }
        }
        c.generation.fetch_add(1, Ordering::AcqRel);
        c.next.set(reg.free);
        reg.free = cp;
        Ok(())
    }

    pub(crate) fn shrink_cache(&self, c: &CacheInner) -> usize {
        let _r = self.read_side();
        let mut parts: [(*mut NodePart, u64); 64] = [(ptr::null_mut(), 0); 64];
        let mut n = 0;
        let mask = match self.config.mode {
            LockingMode::SlabNodes => self.slab_mutex().slab_nodes,
            _ => self.hotplug().states.has_memory(),
        };
        for nid in mask.iter() {
            let p = c.part(nid);
            if !p.is_null() && n < parts.len() {
                // SAFETY: parts live as long as the cache.
                parts[n] = (p, unsafe { (*p).generation() });
                n += 1;
            }
        }
        hotslab_hotplug::pause::point(
            "shrink:after-mask-read",
            mask.first().unwrap_or(NodeId::new(0)),
        );
        let mut freed = 0;
        for &(p, gen) in &parts[..n] {
            // SAFETY: as above.
            let part = unsafe { &*p };
            let (g, st) = part.snapshot();
            if g != gen || st == PartState::Retired {
                self.violations
                    .use_after_retire
                    .fetch_add(1, StdOrdering::Relaxed);
                continue;
            }
            freed += c.shrink_part(part);
        }
        freed
    }

    /// Shrinks every cache (all nodes), after taking every heap's slabs of it back.
    pub fn shrink_all(&self) -> usize {
        let _r = self.read_side();
        let reg = self.slab_mutex();
        let mut freed = 0;
        for c in reg.iter() {
            // Heaps keep several slabs per cache: take them back first (the owners fetch new
            // ones on their next slow path), so that their empty slabs are returned too.
            for tc in c.thread_caches() {
                if tc.owned() > 0 {
                    thread::revoke(c, tc);
                }
            }
            for i in 0..c.nr_node_ids {
                let p = c.part(NodeId::new(i as u16));
                if !p.is_null() {
                    // SAFETY: parts live as long as the cache.
                    freed += c.shrink_part(unsafe { &*p });
                }
            }
        }
        freed
    }

    /// The domain's kmalloc caches (those created so far).
    pub(crate) fn kmalloc_caches(&self) -> impl Iterator<Item = &CacheInner> + '_ {
        self.kmalloc.iter().filter_map(|c| {
            let c = c.load(Ordering::Acquire);
            // SAFETY: a domain's kmalloc caches live as long as the domain.
            (!c.is_null()).then(|| unsafe { &*c })
        })
    }

    /// A draining part lost its last slab: retire it (forced offline's delayed retirement).
    pub(crate) fn part_drained(&self, _cache: &CacheInner, part: &NodePart) {
        if self.config.mode == LockingMode::SlabNodes {
            return; // parts park, never retire
        }
        // Only once OFFLINE has handed the part over (a drain before it, while the node is
        // still on its way out, leaves retiring to the OFFLINE callback itself).
        let (gen, st) = part.snapshot();
        if st == PartState::Draining && part.offlined.load(StdOrdering::Acquire) {
            part.retire(gen);
        }
    }

    // ---- hotplug ----------------------------------------------------------------------------

    /// Onlines node `nid` through the hotplug domain's controller.
    pub fn online_node(&self, nid: NodeId) -> Result<(), HotplugError> {
        self.hotplug().online_node(nid)
    }

    /// Offlines node `nid` (refused with a busy veto if objects stay live on it).
    pub fn offline_node(&self, nid: NodeId) -> Result<(), HotplugError> {
        self.hotplug().offline_node(nid)
    }

    /// Offlines node `nid` as a real kernel would: cannot be refused; parts drain.
    pub fn offline_node_forced(&self, nid: NodeId) -> Result<(), HotplugError> {
        self.hotplug().offline_node_forced(nid)
    }

    /// Fault injection: the next `n` part allocations succeed, then they fail (NoMemory) until
    /// [`SlabDomain::clear_part_faults`].
    pub fn fail_part_alloc_after(&self, n: u64) {
        self.fail_part_alloc.store(n, StdOrdering::Relaxed);
    }

    /// Ends part-allocation fault injection.
    pub fn clear_part_faults(&self) {
        self.fail_part_alloc.store(u64::MAX, StdOrdering::Relaxed);
    }

    /// Mutation check only: make create/destroy/shrink skip the online-mems read side even in
    /// `OnlineMems` mode, so that tests can show the models and the stress run catch it.
    #[doc(hidden)]
    pub fn mutation_skip_read_side(&self, on: bool) {
        self.skip_read_side.store(on, StdOrdering::Relaxed);
    }

    /// Mutation check of the heap loom models only (`tests/loom_heap.rs`): breaks one step of a
    /// heap protocol in this domain, so that the models can show they catch it.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn mutation_heap(&self, m: HeapMutation) {
        self.heap_mutation.store(m as u8, StdOrdering::Relaxed);
    }

    /// Whether heap-protocol mutation `m` is on (loom models only).
    #[cfg(loom)]
    #[inline]
    pub(crate) fn heap_mutated(&self, m: HeapMutation) -> bool {
        self.heap_mutation.load(StdOrdering::Relaxed) == m as u8
    }

    /// Loom models only: the calling thread exits as far as this domain is concerned — its heap's
    /// slabs of every cache go back to their parts (the thread-exit flush, under the heap's lock),
    /// and the thread starts over with a fresh heap on its next allocation. (Outside loom,
    /// [`crate::exit_thread_now`] does this for every domain and recycles the heap; the loom
    /// registry never recycles heaps.)
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn abandon_current_heap(&self) {
        let h = thread::forget_current_heap();
        if !h.is_null() {
            // SAFETY: heaps are never freed; the calling thread owned this one and dropped it.
            self.flush_heap(unsafe { &*h });
        }
    }

    pub(crate) fn on_memory_event(&self, ev: &MemoryNotify) -> Result<(), NotifyError> {
        let r = crate::hotplug::handle(self, ev);
        crate::publish::hotplug_event(self, ev, &r);
        r
    }

    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.slab_mutex()
    }

    /// `slab_mutex` if it is free now (for callers that may hold locks that come after it).
    pub(crate) fn try_registry(&self) -> Option<MutexGuard<'_, Registry>> {
        crate::sync::try_lock(&self.registry)
    }

    pub(crate) fn set_slab_node(&self, reg: &mut Registry, nid: NodeId, on: bool) {
        if on {
            reg.slab_nodes.set(nid);
        } else {
            reg.slab_nodes.clear(nid);
        }
        let i = nid.index();
        if i < 1024 {
            self.slab_nodes_view[i / 64]
                .store(reg.slab_nodes.as_words()[i / 64], StdOrdering::Release);
        }
    }

    pub(crate) fn for_each_cache(reg: &Registry, mut f: impl FnMut(&CacheInner)) {
        for c in reg.iter() {
            f(c);
        }
    }

    pub(crate) fn ensure_part_for(
        &self,
        cache: &CacheInner,
        nid: NodeId,
    ) -> Result<(), NotifyError> {
        self.ensure_part(cache, nid)
    }

    // ---- invariants and introspection ---------------------------------------------------------

    /// Checks I1: every live cache has a live part for every node with memory, and no live part
    /// for a node without memory. Meaningful outside hotplug operations.
    pub fn check_invariants(&self) -> InvariantReport {
        let _r = self.hotplug().read();
        let reg = self.slab_mutex();
        let mask = self.node_mask(&reg);
        let mut rep = InvariantReport::default();
        for c in reg.iter() {
            rep.caches += 1;
            for i in 0..c.nr_node_ids {
                let nid = NodeId::new(i as u16);
                let p = c.part(nid);
                // SAFETY: parts live as long as the cache.
                let st = (!p.is_null()).then(|| unsafe { (*p).state() });
                if mask.test(nid) {
                    if st != Some(PartState::Live) {
                        rep.missing.push((c.name, nid));
                    }
                } else if st == Some(PartState::Live) {
                    rep.stray.push((c.name, nid));
                }
            }
        }
        rep
    }

    /// Number of live caches.
    pub fn cache_count(&self) -> usize {
        self.slab_mutex().count
    }

    /// One row per cache, like /proc/slabinfo.
    pub fn slabinfo(&self) -> Vec<crate::stats::SlabInfoRow> {
        let reg = self.slab_mutex();
        let mut rows = Vec::with_capacity(reg.count);
        for c in reg.iter() {
            rows.push(crate::stats::row(c));
        }
        rows
    }

    /// Thread exit: give back `heap`'s slabs of every cache of this domain.
    pub(crate) fn flush_heap(&self, heap: &crate::heap::Heap) {
        let reg = self.slab_mutex();
        for c in reg.iter() {
            thread::flush_heap(c, heap);
        }
    }
}

impl Drop for SlabDomain {
    fn drop(&mut self) {
        #[cfg(not(loom))]
        registry_of_domains::remove(self);
        if let Some(h) = self
            .notifier
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            self.hotplug().unregister_notifier(h);
        }
        // Release the arenas only if no slab is left anywhere (live objects keep their memory).
        let reg = lock(&self.registry);
        let mut slabs = 0usize;
        for c in reg.iter() {
            for i in 0..c.nr_node_ids {
                let p = c.part(NodeId::new(i as u16));
                if !p.is_null() {
                    // SAFETY: parts live as long as the cache.
                    let part = unsafe { &*p };
                    // Give back thread-owned slabs first (no thread can reach this domain now
                    // except through a thread cache's `cur`, which nobody will use again).
                    c.shrink_part(part);
                    slabs += part.nr_slabs.load(Ordering::Relaxed);
                }
            }
            for tc in c.thread_caches() {
                slabs += tc.owned();
            }
        }
        drop(reg);
        if slabs == 0 {
            for i in 0..self.nr_node_ids {
                if let Some(a) = self.arena(NodeId::new(i as u16)) {
                    let _ = a.release_all(&self.pages);
                }
            }
        }
    }
}

/// Prints the destroy-with-live-objects report without allocating (it may run under the global
/// allocator's own locks).
fn report_live_objects(name: &str, count: usize) {
    let mut buf = [0u8; 160];
    let mut w = crate::stats::FixedWriter::new(&mut buf);
    let _ = core::fmt::write(
        &mut w,
        format_args!("hotslab: kmem_cache_destroy {name}: {count} objects remaining; cache kept\n"),
    );
    let s = w.as_bytes();
    // SAFETY: writes a valid buffer to stderr.
    unsafe { libc::write(2, s.as_ptr().cast(), s.len()) };
}

/// Forwards notifier calls to a domain held by `Arc` without keeping it alive.
struct WeakNotifier(Weak<SlabDomain>);

impl MemoryCallback for WeakNotifier {
    fn name(&self) -> &'static str {
        "slab_memory_callback"
    }
    fn notify(&self, ev: &MemoryNotify) -> Result<(), NotifyError> {
        match self.0.upgrade() {
            Some(d) => d.on_memory_event(ev),
            None => Ok(()),
        }
    }
}

impl MemoryCallback for SlabDomain {
    fn name(&self) -> &'static str {
        "slab_memory_callback"
    }
    fn notify(&self, ev: &MemoryNotify) -> Result<(), NotifyError> {
        self.on_memory_event(ev)
    }
}

/// Every live domain, so that thread exit can flush a slot everywhere.
#[cfg(not(loom))]
pub(crate) mod registry_of_domains {
    use super::SlabDomain;
    use std::sync::Mutex;

    pub(crate) struct List {
        items: [usize; 256],
        len: usize,
    }

    static DOMAINS: Mutex<List> = Mutex::new(List {
        items: [0; 256],
        len: 0,
    });

    pub(super) fn add(d: &SlabDomain) {
        let mut l = DOMAINS.lock().unwrap_or_else(|p| p.into_inner());
        if l.len < l.items.len() {
            let n = l.len;
            l.items[n] = d as *const SlabDomain as usize;
            l.len += 1;
        }
    }

    pub(super) fn remove(d: &SlabDomain) {
        let mut l = DOMAINS.lock().unwrap_or_else(|p| p.into_inner());
        let me = d as *const SlabDomain as usize;
        let n = l.len;
        if let Some(i) = l.items[..n].iter().position(|&x| x == me) {
            l.items[i] = l.items[n - 1];
            l.len -= 1;
        }
    }

    /// Fork: the list, locked from the prepare handler to the parent/child handler (fork.rs).
    pub(crate) fn lock_for_fork() -> std::sync::MutexGuard<'static, List> {
        DOMAINS.lock().unwrap_or_else(|p| p.into_inner())
    }

    impl List {
        /// The registered domains' addresses.
        pub(crate) fn domains(&self) -> &[usize] {
            &self.items[..self.len]
        }
    }

    pub(super) fn for_each(f: impl Fn(&SlabDomain)) {
        let l = DOMAINS.lock().unwrap_or_else(|p| p.into_inner());
        for &d in &l.items[..l.len] {
            // SAFETY: domains unregister themselves (under this lock) before they are dropped.
            f(unsafe { &*(d as *const SlabDomain) });
        }
    }
}

/// Thread exit: flush `heap` in every domain.
#[cfg(not(loom))]
pub(crate) fn flush_heap_everywhere(heap: &crate::heap::Heap) {
    registry_of_domains::for_each(|d| d.flush_heap(heap));
}
