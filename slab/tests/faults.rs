//! Fault injection, as the kernel's notifier error injection and hotplug selftest do it: the page
//! source runs out of memory after N maps, the slab notifier cannot allocate a part, another
//! notifier vetoes, the controller stops mid-transition. Every fault must leave the state as it
//! was (same masks, same live parts, no lost or damaged object) and surface as a null or a typed
//! error, never a panic. Each test prints how many faults it injected and how many it survived.
//! Also: errors, not panics, at the API edge (bad parameters, destroyed caches, unknown nodes).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hotslab::hotplug_api::{
    CallbackRef, HotplugError, MemoryCallback, MemoryEvent, MemoryNotify, NodeStateSnapshot,
    NotifyError, Stage,
};
use hotslab::numa::NodeId;
use hotslab::{
    CacheConfig, CacheError, CacheFlags, DomainConfig, FreeError, KmemCache, PartState, SlabDomain,
};

fn n(i: u16) -> NodeId {
    NodeId::new(i)
}

fn config() -> DomainConfig {
    DomainConfig {
        kmalloc: false,
        drain_timeout: Duration::from_millis(5),
        ..DomainConfig::default()
    }
}

/// Counts faults injected and faults after which every check passed.
#[derive(Default)]
struct Tally {
    injected: u64,
    survived: u64,
}

impl Tally {
    fn print(&self, test: &str) {
        println!(
            "{test}: faults injected {}, survived {}",
            self.injected, self.survived
        );
        assert_eq!(self.injected, self.survived);
        assert!(self.injected > 0, "the test must inject something");
    }
}

/// Objects with a known fill, per cache.
struct World {
    d: Arc<SlabDomain>,
    caches: Vec<KmemCache>,
    objs: Vec<(usize, NonNull<u8>, u8)>,
}

/// What a fault must not change.
#[derive(Debug, PartialEq)]
struct State {
    masks: NodeStateSnapshot,
    live_parts: Vec<Vec<bool>>,
    active: Vec<usize>,
    caches: usize,
}

impl World {
    fn new(nodes: usize, caches: usize) -> World {
        let d = SlabDomain::simulated_with(nodes, config()).unwrap();
        const NAMES: [&str; 6] = ["f-a", "f-b", "f-c", "f-d", "f-e", "f-f"];
        let caches = (0..caches)
            .map(|i| {
                d.create_cache(CacheConfig::new(NAMES[i], 24 + 40 * i))
                    .unwrap()
            })
            .collect();
        World {
            d,
            caches,
            objs: Vec::new(),
        }
    }

    fn size(&self, ci: usize) -> usize {
        self.caches[ci].object_size()
    }

    /// Allocates `k` objects of every cache on `nid`, filled with a per-object byte.
    fn populate(&mut self, nid: NodeId, k: usize) {
        for ci in 0..self.caches.len() {
            for _ in 0..k {
                let p = self.caches[ci].alloc_node(nid).unwrap();
                let fill = (self.objs.len() % 251) as u8;
                // SAFETY: a live object of `size` bytes.
                unsafe { p.as_ptr().write_bytes(fill, self.size(ci)) };
                self.objs.push((ci, p, fill));
            }
        }
    }

    fn state(&self) -> State {
        let nodes = self.d.topology().node_count();
        State {
            masks: self.d.hotplug().snapshot(),
            live_parts: self
                .caches
                .iter()
                .map(|c| {
                    (0..nodes)
                        .map(|i| c.part_state(n(i as u16)) == Some(PartState::Live))
                        .collect()
                })
                .collect(),
            active: self
                .caches
                .iter()
                .map(|c| c.stats().unwrap().active_objects)
                .collect(),
            caches: self.d.cache_count(),
        }
    }

    /// I1, no race detector fired, every object intact.
    fn check(&self) {
        let inv = self.d.check_invariants();
        assert!(inv.ok(), "I1 broken: {inv:?}");
        assert_eq!(self.d.violations.total(), 0);
        for &(ci, p, fill) in &self.objs {
            // SAFETY: the object is live and was filled by `populate`.
            let bytes = unsafe { std::slice::from_raw_parts(p.as_ptr(), self.size(ci)) };
            assert!(bytes.iter().all(|&b| b == fill), "object {p:p} damaged");
        }
    }

    fn free_all(&mut self) {
        for (ci, p, _) in self.objs.drain(..) {
            self.caches[ci].free(p).unwrap();
        }
    }
}

/// A notifier that vetoes the armed event (registered after or before slab's callback).
struct Vetoer {
    armed: AtomicBool,
    event: MemoryEvent,
    seen_cancel: AtomicU64,
}

impl MemoryCallback for Vetoer {
    fn name(&self) -> &'static str {
        "test-vetoer"
    }
    fn notify(&self, ev: &MemoryNotify) -> Result<(), NotifyError> {
        if matches!(
            ev.event,
            MemoryEvent::CancelOnline | MemoryEvent::CancelOffline
        ) {
            self.seen_cancel.fetch_add(1, Ordering::Relaxed);
        }
        if ev.event == self.event && self.armed.load(Ordering::Relaxed) {
            return Err(NotifyError::Injected);
        }
        Ok(())
    }
}

#[test]
fn page_source_exhaustion_gives_errors_and_loses_nothing() {
    let mut t = Tally::default();
    // A fresh domain has mapped nothing yet: the first slab needs a map, which fails.
    let d = SlabDomain::simulated_with(2, config()).unwrap();
    let c = d.create_cache(CacheConfig::new("starved", 64)).unwrap();
    d.page_source().fail_after(0);
    assert_eq!(c.alloc().unwrap_err(), CacheError::NoMemory);
    assert_eq!(c.alloc_node(n(1)).unwrap_err(), CacheError::NoMemory);
    let large = d.kmalloc_layout(4 << 20, 8, None);
    assert!(large.is_null(), "no kmalloc caches and no pages: null");
    t.injected += d.page_source().faults_injected();
    assert!(d.check_invariants().ok());
    assert_eq!(c.stats().unwrap().active_objects, 0);
    d.page_source().clear_faults();
    let p = c.alloc().unwrap();
    c.free(p).unwrap();
    t.survived = t.injected;

    // Mid-way: the first arena chunk is mapped, the next map fails. Big objects exhaust a chunk
    // (64 MiB) in 256 allocations; then every node fails in turn and alloc says NoMemory.
    let mut w = World::new(2, 0);
    w.caches.push(
        w.d.create_cache(CacheConfig::new("big", 256 << 10))
            .unwrap(),
    );
    w.d.page_source().fail_after(1);
    let before = w.d.page_source().faults_injected();
    let mut got = 0usize;
    loop {
        match w.caches[0].alloc() {
            Ok(p) => {
                // SAFETY: a live 256 KiB object; touching only its first page keeps RSS low.
                unsafe { p.as_ptr().write_bytes(got as u8, 64) };
                w.objs.push((0, p, got as u8));
                got += 1;
            }
            Err(e) => {
                assert_eq!(e, CacheError::NoMemory);
                break;
            }
        }
        assert!(got < 10_000, "fault injection never hit");
    }
    let faults = w.d.page_source().faults_injected() - before;
    assert!(faults >= 1);
    t.injected += faults;
    assert_eq!(w.caches[0].stats().unwrap().active_objects, got);
    for &(_, p, fill) in &w.objs {
        // SAFETY: live objects, first 64 bytes written above.
        assert!(unsafe { std::slice::from_raw_parts(p.as_ptr(), 64) }
            .iter()
            .all(|&b| b == fill));
    }
    assert!(w.d.check_invariants().ok());
    w.d.page_source().clear_faults();
    let extra = w.caches[0].alloc().unwrap();
    w.caches[0].free(extra).unwrap();
    for (_, p, _) in w.objs.drain(..) {
        w.caches[0].free(p).unwrap();
    }
    assert_eq!(w.caches[0].stats().unwrap().active_objects, 0);
    t.survived += faults;
    t.print("page source");
}

#[test]
fn part_allocation_failure_vetoes_online_and_create_at_every_position() {
    let mut t = Tally::default();
    let mut w = World::new(4, 5);
    w.populate(n(0), 30);
    w.populate(n(2), 30);
    w.d.offline_node(n(3)).unwrap();
    // Offline retired node 3's parts; a fresh cache has none at all, so onlining node 3 must
    // allocate one part (the fresh cache's) and reuse the others.
    w.caches
        .push(w.d.create_cache(CacheConfig::new("fresh", 8)).unwrap());
    w.check();
    let before = w.state();
    w.d.fail_part_alloc_after(0);
    let err = w.d.online_node(n(3)).unwrap_err();
    t.injected += 1;
    assert!(
        matches!(
            err,
            HotplugError::Vetoed {
                by: "slab_memory_callback",
                error: NotifyError::NoMemory
            }
        ),
        "{err:?}"
    );
    w.d.clear_part_faults();
    assert_eq!(w.state(), before, "a vetoed online changes nothing");
    w.check();
    t.survived += 1;
    w.d.online_node(n(3)).unwrap();
    w.check();

    w.free_all();

    // Creating a cache needs a part per node: fail the k-th part allocation for every k (in a
    // fresh domain each time: a failed create's metadata and parts are reused by the next one).
    for k in 0..4 {
        let mut w = World::new(4, 2);
        w.populate(n(k as u16), 20);
        let before = w.state();
        w.d.fail_part_alloc_after(k);
        let err =
            w.d.create_cache(CacheConfig::new("doomed", 100))
                .unwrap_err();
        t.injected += 1;
        w.d.clear_part_faults();
        assert_eq!(err, CacheError::NoMemory);
        assert_eq!(w.state(), before, "a failed create leaves no cache behind");
        w.check();
        t.survived += 1;
        let ok = w.d.create_cache(CacheConfig::new("finally", 100)).unwrap();
        let p = ok.alloc_node(n(3)).unwrap();
        ok.free(p).unwrap();
        ok.destroy().unwrap();
        w.free_all();
    }
    t.print("part allocation");
}

#[test]
fn vetoing_notifiers_roll_back_every_transition() {
    let mut t = Tally::default();
    let mut w = World::new(4, 3);
    w.populate(n(0), 40);
    w.populate(n(1), 40);
    for (priority, event) in [
        (0, MemoryEvent::GoingOnline),
        (0, MemoryEvent::GoingOffline),
        (10, MemoryEvent::GoingOnline),
        (10, MemoryEvent::GoingOffline),
    ] {
        // Priority 0 runs after slab's callback (1): slab must be told to cancel. Priority 10
        // runs first: slab never hears of the transition.
        let v = Arc::new(Vetoer {
            armed: AtomicBool::new(true),
            event,
            seen_cancel: AtomicU64::new(0),
        });
        let h =
            w.d.hotplug()
                .register_notifier(CallbackRef::Shared(v.clone()), priority)
                .unwrap();
        let online = event == MemoryEvent::GoingOnline;
        if online {
            w.d.offline_node(n(3)).unwrap();
        }
        let before = w.state();
        let r = if online {
            w.d.online_node(n(3))
        } else {
            // Node 2 holds no object: only the vetoer can refuse.
            w.d.offline_node(n(2))
        };
        t.injected += 1;
        assert_eq!(
            r.unwrap_err(),
            HotplugError::Vetoed {
                by: "test-vetoer",
                error: NotifyError::Injected
            }
        );
        assert_eq!(w.state(), before, "priority {priority} {event:?}");
        w.check();
        // Allocation on the node still behaves as before the veto.
        let target = if online { n(3) } else { n(2) };
        let p = w.caches[0].alloc_node(target).unwrap();
        assert_eq!(w.caches[0].node_of(p) == Some(target), !online);
        w.caches[0].free(p).unwrap();
        t.survived += 1;
        v.armed.store(false, Ordering::Relaxed);
        assert!(w.d.hotplug().unregister_notifier(h));
        if online {
            w.d.online_node(n(3)).unwrap();
        }
        w.check();
    }
    w.free_all();
    t.print("vetoing notifier");
}

#[test]
fn controller_stopping_mid_transition_rolls_back() {
    let mut t = Tally::default();
    let mut w = World::new(4, 3);
    w.populate(n(1), 50);
    w.populate(n(3), 10);
    let fail_at = Arc::new(std::sync::Mutex::new(None::<Stage>));
    let f2 = fail_at.clone();
    w.d.hotplug()
        .set_stage_hook(Some(Arc::new(move |stage: Stage, _nid: NodeId| {
            if *f2.lock().unwrap() == Some(stage) {
                Err(NotifyError::Injected)
            } else {
                Ok(())
            }
        })));
    for stage in Stage::ALL {
        for forced in [false, true] {
            if stage.is_online() && forced {
                continue;
            }
            // Node 2 is empty (offline can succeed); node 2 must be offline to be onlined.
            if stage.is_online() {
                w.d.offline_node(n(2)).unwrap();
            }
            w.check();
            let before = w.state();
            *fail_at.lock().unwrap() = Some(stage);
            let r = match (stage.is_online(), forced) {
                (true, _) => w.d.online_node(n(2)),
                (false, false) => w.d.offline_node(n(2)),
                (false, true) => w.d.offline_node_forced(n(2)),
            };
            *fail_at.lock().unwrap() = None;
            t.injected += 1;
            assert_eq!(
                r.unwrap_err(),
                HotplugError::Aborted {
                    stage,
                    error: NotifyError::Injected
                }
            );
            assert_eq!(w.state(), before, "{stage} forced={forced}");
            w.check();
            t.survived += 1;
            if stage.is_online() {
                w.d.online_node(n(2)).unwrap();
            }
        }
        // A busy node (live objects) aborted mid-offline keeps every object (forced offline
        // of node 3 passes the drain and stops at the stage).
        if !stage.is_online() {
            let before = w.state();
            *fail_at.lock().unwrap() = Some(stage);
            let r = w.d.offline_node_forced(n(3));
            *fail_at.lock().unwrap() = None;
            t.injected += 1;
            assert!(matches!(r, Err(HotplugError::Aborted { .. })), "{r:?}");
            assert_eq!(w.state(), before);
            w.check();
            t.survived += 1;
        }
    }
    w.d.hotplug().set_stage_hook(None);
    w.free_all();
    t.print("controller abort");
}

/// Faults while other threads allocate and free: nothing panics, every failure is a typed error,
/// objects survive, and I1 holds between operations.
#[test]
fn faults_during_concurrent_allocation() {
    let mut t = Tally::default();
    let w = World::new(4, 2);
    let stop = Arc::new(AtomicBool::new(false));
    let nomem = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..2u8)
        .map(|id| {
            let c = w.caches[id as usize % 2].clone();
            let (stop, nomem) = (stop.clone(), nomem.clone());
            let size = c.object_size();
            std::thread::spawn(move || {
                let mut mine: Vec<NonNull<u8>> = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Nodes 0-2 (node 3 stays empty, so its transitions always reach the
                    // stage where the controller stops).
                    let nid = n((i % 3) as u16);
                    match c.alloc_node(nid) {
                        Ok(p) => {
                            // SAFETY: a live object of `size` bytes.
                            unsafe { p.as_ptr().write_bytes(id, size) };
                            mine.push(p);
                        }
                        Err(CacheError::NoMemory) => {
                            nomem.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                    if mine.len() > 64 {
                        for p in mine.drain(..32) {
                            // SAFETY: live, written by this thread only.
                            assert!(unsafe { std::slice::from_raw_parts(p.as_ptr(), size) }
                                .iter()
                                .all(|&b| b == id));
                            c.free(p).unwrap();
                        }
                    }
                    i += 1;
                }
                for p in mine {
                    c.free(p).unwrap();
                }
            })
        })
        .collect();
    let fail_at = Arc::new(std::sync::Mutex::new(None::<Stage>));
    let f2 = fail_at.clone();
    w.d.hotplug()
        .set_stage_hook(Some(Arc::new(move |stage: Stage, _| {
            if *f2.lock().unwrap() == Some(stage) {
                Err(NotifyError::Injected)
            } else {
                Ok(())
            }
        })));
    for round in 0..40u64 {
        let node = n(2 + (round % 2) as u16);
        let stage = Stage::ALL[(round / 2 % 4) as usize];
        *fail_at.lock().unwrap() = Some(stage);
        if stage.is_online() {
            // Offline may be refused (busy) or succeed: both are fine; then online aborts.
            let _ = w.d.offline_node(node);
            let online_before = w.d.hotplug().states.has_memory().test(node);
            let r = w.d.online_node(node);
            if !online_before {
                assert!(matches!(r, Err(HotplugError::Aborted { .. })), "{r:?}");
                assert!(!w.d.hotplug().states.has_memory().test(node));
                t.injected += 1;
                t.survived += 1;
            }
        } else {
            let r = w.d.offline_node(node);
            assert!(
                matches!(r, Err(HotplugError::Aborted { .. }))
                    || r.as_ref().is_err_and(|e| e.is_busy())
                    || r == Err(HotplugError::AlreadyOffline),
                "{r:?}"
            );
            if matches!(r, Err(HotplugError::Aborted { .. })) {
                assert!(w.d.hotplug().states.has_memory().test(node));
                t.injected += 1;
                t.survived += 1;
            }
        }
        *fail_at.lock().unwrap() = None;
        let _ = w.d.online_node(node);
        // Page-source faults with everything running.
        w.d.page_source().fail_after(round % 2);
        std::thread::yield_now();
        w.d.page_source().clear_faults();
        let inv = w.d.check_invariants();
        assert!(inv.ok(), "{inv:?}");
    }
    stop.store(true, Ordering::Relaxed);
    for h in workers {
        h.join().unwrap();
    }
    let page_faults = w.d.page_source().faults_injected();
    t.injected += page_faults;
    t.survived += page_faults;
    w.d.hotplug().set_stage_hook(None);
    for c in &w.caches {
        assert_eq!(c.stats().unwrap().active_objects, 0);
    }
    assert_eq!(w.d.violations.total(), 0);
    println!(
        "concurrent: {} allocations answered NoMemory",
        nomem.load(Ordering::Relaxed)
    );
    t.print("concurrent");
}

// ---- errors, not panics, at the API edge -------------------------------------------------------

#[test]
fn invalid_cache_parameters_are_typed_errors() {
    let d = SlabDomain::simulated_with(2, config()).unwrap();
    let bad = [
        (CacheConfig::new("zero", 0), CacheError::InvalidSize(0)),
        (
            CacheConfig::new("huge", usize::MAX),
            CacheError::InvalidSize(usize::MAX),
        ),
        (
            CacheConfig::new("over", hotslab::MAX_OBJECT_SIZE + 1),
            CacheError::InvalidSize(hotslab::MAX_OBJECT_SIZE + 1),
        ),
        (
            CacheConfig::new("npot", 64).align(48),
            CacheError::InvalidAlign(48),
        ),
        (
            CacheConfig::new("odd", 64).align(3),
            CacheError::InvalidAlign(3),
        ),
        (
            CacheConfig::new("max", 64).align(usize::MAX),
            CacheError::InvalidAlign(usize::MAX),
        ),
        (
            CacheConfig::new("toobig", 64).align(hotslab::MAX_ALIGN * 2),
            CacheError::InvalidAlign(hotslab::MAX_ALIGN * 2),
        ),
        (
            CacheConfig::new("top", 64).align(1 << 63),
            CacheError::InvalidAlign(1 << 63),
        ),
    ];
    for (cfg, want) in bad {
        assert_eq!(d.create_cache(cfg).unwrap_err(), want, "{cfg:?}");
        // Debug mode changes the layout, not the validation.
        assert_eq!(
            d.create_cache(cfg.flags(CacheFlags::DEBUG)).unwrap_err(),
            want
        );
    }
    assert_eq!(d.cache_count(), 0, "nothing half-made is left registered");
    // The largest valid ones work, in debug mode too.
    for flags in [CacheFlags::NONE, CacheFlags::DEBUG] {
        let c = d
            .create_cache(
                CacheConfig::new("edge", hotslab::MAX_OBJECT_SIZE)
                    .align(hotslab::MAX_ALIGN)
                    .flags(flags),
            )
            .unwrap();
        let p = c.alloc().unwrap();
        assert_eq!(p.as_ptr() as usize % hotslab::MAX_ALIGN, 0);
        c.free(p).unwrap();
        c.destroy().unwrap();
    }
}

#[test]
fn destroyed_caches_answer_destroyed_even_when_their_memory_is_reused() {
    let d = SlabDomain::simulated_with(2, config()).unwrap();
    let old = d.create_cache(CacheConfig::new("old", 64)).unwrap();
    let q = old.alloc().unwrap();
    old.free(q).unwrap();
    old.destroy().unwrap();
    // The next create reuses the destroyed cache's metadata; the old handle must not see it.
    let new = d.create_cache(CacheConfig::new("new", 64)).unwrap();
    let st = new.stats().unwrap();
    assert_eq!(
        (st.allocs, st.frees),
        (0, 0),
        "a cache reusing metadata starts its statistics afresh"
    );
    let p = new.alloc().unwrap();
    assert_eq!(old.alloc().unwrap_err(), CacheError::Destroyed);
    assert_eq!(old.alloc_node(n(0)).unwrap_err(), CacheError::Destroyed);
    assert_eq!(old.free(p).unwrap_err(), CacheError::Destroyed);
    assert_eq!(old.shrink().unwrap_err(), CacheError::Destroyed);
    assert_eq!(old.destroy().unwrap_err(), CacheError::Destroyed);
    assert_eq!(old.stats().unwrap_err(), CacheError::Destroyed);
    assert_eq!(
        old.set_debug(hotslab::DebugFlags::ALL).unwrap_err(),
        CacheError::Destroyed
    );
    new.free(p).unwrap();
    assert_eq!(new.stats().unwrap().active_objects, 0);
    new.destroy().unwrap();
    // Display is meaningful for every error.
    assert_eq!(CacheError::Destroyed.to_string(), "cache was destroyed");
}

#[test]
fn unknown_nodes_and_bad_pointers_are_typed_errors() {
    let d = SlabDomain::simulated_with(3, config()).unwrap();
    let c = d.create_cache(CacheConfig::new("edge-nodes", 32)).unwrap();
    for bad in [3u16, 64, 1023, 1024, 5000, u16::MAX] {
        assert_eq!(
            c.alloc_node(n(bad)).unwrap_err(),
            CacheError::UnknownNode(bad)
        );
        assert_eq!(d.online_node(n(bad)), Err(HotplugError::UnknownNode));
        assert_eq!(d.offline_node(n(bad)), Err(HotplugError::UnknownNode));
        assert_eq!(
            d.offline_node_forced(n(bad)),
            Err(HotplugError::UnknownNode)
        );
    }
    assert_eq!(d.online_node(n(1)), Err(HotplugError::AlreadyOnline));
    d.offline_node(n(1)).unwrap();
    assert_eq!(d.offline_node(n(1)), Err(HotplugError::AlreadyOffline));
    assert_eq!(
        d.offline_node_forced(n(1)),
        Err(HotplugError::AlreadyOffline)
    );
    d.online_node(n(1)).unwrap();
    assert!(d.check_invariants().ok());
    // Pointers hotslab never handed out.
    let local = 0u64;
    for p in [
        NonNull::<u8>::dangling().as_ptr(),
        &local as *const u64 as *mut u8,
        usize::MAX as *mut u8,
        (usize::MAX - 4095) as *mut u8,
    ] {
        let nn = NonNull::new(p).unwrap();
        assert_eq!(
            c.free(nn).unwrap_err(),
            CacheError::ForeignPointer(p as usize)
        );
        assert_eq!(c.node_of(nn), None);
        // SAFETY: the pointer is only looked up in the page map.
        assert_eq!(unsafe { d.kfree_checked(p) }, Err(FreeError::Foreign));
        assert_eq!(hotslab::usable_size(p), None);
    }
    // Impossible kmalloc requests give null.
    let kd = SlabDomain::simulated(1).unwrap();
    assert!(kd.kmalloc_layout(64, 3, None).is_null(), "alignment 3");
    assert!(kd.kmalloc_layout(64, 0, None).is_null(), "alignment 0");
    assert!(kd.kmalloc_layout(48, 24, None).is_null(), "alignment 24");
    assert!(kd.kmalloc_layout(usize::MAX, 8, None).is_null());
    assert!(kd.kmalloc_layout(1, 1 << 40, None).is_null());
    let q = kd.kmalloc_layout(100, 8, None);
    // SAFETY: q+8 is inside a live 100-byte block; kfree only looks it up.
    assert_eq!(
        unsafe { kd.kfree_checked(q.add(8)) },
        Err(FreeError::Interior)
    );
    // SAFETY: a foreign pointer is refused by realloc with null, nothing touched.
    assert!(unsafe { kd.krealloc_layout(&local as *const u64 as *mut u8, 8, 200) }.is_null());
    // SAFETY: q is live.
    unsafe { kd.kfree_checked(q).unwrap() };
    // Topologies that cannot exist are errors, not panics.
    assert!(SlabDomain::simulated(0).is_err());
    assert!(SlabDomain::simulated(100_000).is_err());
}
