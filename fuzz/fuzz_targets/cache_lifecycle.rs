//! Fuzz target `cache_lifecycle`: create / destroy / shrink / alloc / alloc_node / free / debug
//! switches across several caches, interleaved with online, offline and forced offline of the
//! nodes of a simulated 8-node topology, and with injected faults (page source out of memory,
//! part allocation failure, a vetoing notifier, the controller stopping mid-transition).
//! After every step: invariant I1 (`check_invariants`), no race detector fired, statistics equal
//! the model's counts, every live object keeps its fill. Refused offlines lose nothing; destroy
//! with live objects is reported, not freed; every failure is a typed error. Faults injected and
//! survived are printed at exit.
#![no_main]

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hotslab::hotplug_api::{
    CallbackRef, HotplugError, MemoryCallback, MemoryEvent, MemoryNotify, NotifyError, Stage,
};
use hotslab::numa::NodeId;
use hotslab::{CacheConfig, CacheError, DebugFlags, DomainConfig, KmemCache, SlabDomain};
use hotslab_fuzz::{at_exit, Input, Tally};
use libfuzzer_sys::fuzz_target;

const NODES: usize = 8;
const NAMES: [&str; 6] = ["lc-0", "lc-1", "lc-2", "lc-3", "lc-4", "lc-5"];

static TALLY: Tally = Tally::new("cache_lifecycle");

extern "C" fn print_tally() {
    eprint!("{}", TALLY.line());
}

/// One-shot faults of the persistent domain.
struct Faults {
    /// 0: none; 1 + i: stop at `Stage::ALL[i]`.
    stage: AtomicU8,
    /// The vetoer refuses the next GOING_ONLINE (1) or GOING_OFFLINE (2).
    veto: AtomicU8,
    vetoed: AtomicBool,
}

static FAULTS: Faults = Faults {
    stage: AtomicU8::new(0),
    veto: AtomicU8::new(0),
    vetoed: AtomicBool::new(false),
};

struct Vetoer;

impl MemoryCallback for Vetoer {
    fn name(&self) -> &'static str {
        "fuzz-vetoer"
    }
    fn notify(&self, ev: &MemoryNotify) -> Result<(), NotifyError> {
        let want = match ev.event {
            MemoryEvent::GoingOnline => 1,
            MemoryEvent::GoingOffline => 2,
            _ => return Ok(()),
        };
        if FAULTS
            .veto
            .compare_exchange(want, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            FAULTS.vetoed.store(true, Ordering::Relaxed);
            return Err(NotifyError::Injected);
        }
        Ok(())
    }
}

static VETOER: Vetoer = Vetoer;

/// One domain for the whole run (domain metadata is not returned to the OS, so a domain per input
/// would grow without bound); every input starts from the same logical state: all nodes with
/// memory, no cache, no fault armed.
fn domain() -> &'static Arc<SlabDomain> {
    static D: OnceLock<Arc<SlabDomain>> = OnceLock::new();
    D.get_or_init(|| {
        let d = SlabDomain::simulated_with(
            NODES,
            DomainConfig {
                kmalloc: false,
                drain_timeout: Duration::ZERO,
                ..DomainConfig::default()
            },
        )
        .expect("simulated topology");
        // Priority 0: after slab's own callback (1), so slab must honour CANCEL_*.
        // Registered for the life of the process: the handle is never needed.
        let _ = d
            .hotplug()
            .register_notifier(CallbackRef::Static(&VETOER), 0)
            .expect("notifier slot");
        d.hotplug().set_stage_hook(Some(Arc::new(|stage: Stage, _| {
            let i = Stage::ALL.iter().position(|s| *s == stage).unwrap() as u8 + 1;
            if FAULTS
                .stage
                .compare_exchange(i, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return Err(NotifyError::Injected);
            }
            Ok(())
        })));
        at_exit(print_tally);
        d
    })
}

struct Obj {
    p: NonNull<u8>,
    fill: u8,
    node: NodeId,
}

struct CacheModel {
    c: KmemCache,
    name: &'static str,
    size: usize,
    objs: Vec<Obj>,
    allocs: u64,
    frees: u64,
}

struct Model {
    caches: Vec<CacheModel>,
    dead: Vec<KmemCache>,
    mem: [bool; NODES],
    page_faults: bool,
    part_faults: bool,
}

impl Model {
    fn live_on(&self, nid: NodeId) -> usize {
        self.caches
            .iter()
            .flat_map(|c| &c.objs)
            .filter(|o| o.node == nid)
            .count()
    }

    fn any_memory(&self) -> bool {
        self.mem.iter().any(|&m| m)
    }

    fn check(&self, d: &SlabDomain) {
        let inv = d.check_invariants();
        assert!(inv.ok(), "I1 broken: {inv:?}");
        assert_eq!(
            d.violations.total(),
            0,
            "race detector fired: {:?}",
            d.violations
        );
        assert_eq!(d.cache_count(), self.caches.len());
        let snap = d.hotplug().snapshot();
        for (i, &m) in self.mem.iter().enumerate() {
            assert_eq!(snap.has_memory.test(NodeId::new(i as u16)), m, "node {i}");
        }
        for cm in &self.caches {
            let st = cm.c.stats().expect("live cache");
            assert_eq!(st.active_objects, cm.objs.len(), "{}: active", cm.name);
            assert_eq!(st.allocs, cm.allocs, "{}: allocs", cm.name);
            assert_eq!(st.frees, cm.frees, "{}: frees", cm.name);
            for o in &cm.objs {
                // SAFETY: a live object of `size` bytes, filled at allocation.
                let s = unsafe { std::slice::from_raw_parts(o.p.as_ptr(), cm.size) };
                assert!(
                    s.iter().all(|&b| b == o.fill),
                    "{}: object damaged",
                    cm.name
                );
                assert_eq!(cm.c.node_of(o.p), Some(o.node));
            }
        }
    }
}

fn node(inp: &mut Input) -> NodeId {
    // Mostly real nodes, sometimes one outside the topology.
    let b = inp.u8();
    NodeId::new(if b < 240 {
        (b as usize % NODES) as u16
    } else {
        b as u16
    })
}

fn alloc(m: &mut Model, d: &SlabDomain, ci: usize, want: Option<NodeId>, fill: u8) {
    let cm = &mut m.caches[ci];
    let r = match want {
        None => cm.c.alloc(),
        Some(n) => cm.c.alloc_node(n),
    };
    match r {
        Ok(p) => {
            let got = cm.c.node_of(p).expect("object of this cache");
            assert!(m.mem[got.index()], "object on node {got} without memory");
            if let Some(n) = want {
                if !m.page_faults && m.mem.get(n.index()).copied().unwrap_or(false) {
                    assert_eq!(got, n, "alloc_node({n}) fell back without need");
                }
            }
            // SAFETY: a live object of `size` bytes.
            unsafe { p.as_ptr().write_bytes(fill, cm.size) };
            cm.objs.push(Obj { p, fill, node: got });
            cm.allocs += 1;
        }
        Err(CacheError::UnknownNode(n)) => {
            assert!(want.is_some_and(|w| w.0 == n && w.index() >= NODES));
        }
        Err(CacheError::NoMemory) => {
            assert!(m.page_faults || !m.any_memory(), "NoMemory without a fault");
            if m.page_faults {
                TALLY.injected();
            }
        }
        Err(e) => panic!("alloc: unexpected {e:?}"),
    }
    let _ = d;
}

/// Checks the outcome of an online/offline against the armed faults and the model.
fn hotplug_result(
    m: &mut Model,
    r: Result<(), HotplugError>,
    nid: NodeId,
    online: bool,
    forced: bool,
) {
    let vetoed = FAULTS.vetoed.swap(false, Ordering::Relaxed);
    let known = nid.index() < NODES;
    match r {
        Ok(()) => {
            assert!(known);
            assert_ne!(m.mem[nid.index()], online);
            if !online && !forced {
                assert_eq!(m.live_on(nid), 0, "offline with live objects on {nid}");
            }
            m.mem[nid.index()] = online;
        }
        Err(HotplugError::UnknownNode) => assert!(!known),
        Err(HotplugError::AlreadyOnline) => assert!(online && m.mem[nid.index()]),
        Err(HotplugError::AlreadyOffline) => assert!(!online && !m.mem[nid.index()]),
        Err(HotplugError::Aborted { .. }) => TALLY.injected(),
        Err(HotplugError::Vetoed { by, error }) => match (by, error) {
            ("fuzz-vetoer", NotifyError::Injected) => {
                assert!(vetoed);
                TALLY.injected();
            }
            ("slab_memory_callback", NotifyError::Busy) => {
                assert!(
                    !online && !forced && m.live_on(nid) > 0,
                    "busy veto of {nid}"
                );
            }
            ("slab_memory_callback", NotifyError::NoMemory) => {
                assert!(online && m.part_faults, "part allocation failed unasked");
                TALLY.injected();
            }
            other => panic!("unexpected veto {other:?}"),
        },
        Err(e) => panic!("hotplug: unexpected {e:?}"),
    }
}

fn reset(m: &mut Model, d: &SlabDomain) {
    d.page_source().clear_faults();
    d.clear_part_faults();
    FAULTS.stage.store(0, Ordering::Relaxed);
    FAULTS.veto.store(0, Ordering::Relaxed);
    FAULTS.vetoed.store(false, Ordering::Relaxed);
    m.page_faults = false;
    m.part_faults = false;
    for i in 0..NODES {
        if !m.mem[i] {
            d.online_node(NodeId::new(i as u16))
                .expect("online at reset");
            m.mem[i] = true;
        }
    }
    for cm in m.caches.drain(..) {
        for o in cm.objs {
            cm.c.free(o.p).expect("free at reset");
        }
        cm.c.destroy().expect("destroy at reset");
    }
    assert_eq!(d.cache_count(), 0);
    assert!(d.check_invariants().ok());
}

fuzz_target!(|data: &[u8]| {
    let d = domain();
    let mut m = Model {
        caches: Vec::new(),
        dead: Vec::new(),
        mem: [true; NODES],
        page_faults: false,
        part_faults: false,
    };
    let mut inp = Input::new(data);
    let mut fill = 0u8;
    while !inp.is_empty() {
        fill = fill.wrapping_add(1);
        match inp.u8() % 16 {
            // create (sometimes with invalid parameters, sometimes in debug mode)
            0 | 1 => {
                let size = match inp.u8() % 8 {
                    0 => 0,
                    1 => hotslab::MAX_OBJECT_SIZE + 1,
                    2 => 1 + inp.u16() as usize % 4096,
                    _ => 1 + inp.u8() as usize,
                };
                let align = match inp.u8() % 6 {
                    0 => 24,
                    1 => 1 << (inp.u8() % 14),
                    _ => 0,
                };
                let debug = inp.u8() % 4 == 0;
                if m.caches.len() >= NAMES.len() {
                    continue;
                }
                let used: Vec<&str> = m.caches.iter().map(|c| c.name).collect();
                let name = *NAMES.iter().find(|n| !used.contains(n)).unwrap();
                let mut cfg = CacheConfig::new(name, size).align(align);
                if debug {
                    cfg = cfg.flags(hotslab::CacheFlags::DEBUG);
                }
                let bad_size = size == 0 || size > hotslab::MAX_OBJECT_SIZE;
                let bad_align =
                    align != 0 && (!align.is_power_of_two() || align > hotslab::MAX_ALIGN);
                match d.create_cache(cfg) {
                    Ok(c) => {
                        assert!(!bad_size && !bad_align);
                        m.caches.push(CacheModel {
                            c,
                            name,
                            size,
                            objs: Vec::new(),
                            allocs: 0,
                            frees: 0,
                        });
                    }
                    Err(CacheError::InvalidSize(s)) => assert!(bad_size && s == size),
                    Err(CacheError::InvalidAlign(a)) => {
                        assert!(!bad_size && bad_align && a == align)
                    }
                    Err(CacheError::NoMemory) => {
                        assert!(m.part_faults, "create failed without a fault");
                        TALLY.injected();
                    }
                    Err(e) => panic!("create: unexpected {e:?}"),
                }
            }
            // destroy: refused (and reported) with live objects, nothing freed
            2 => {
                if m.caches.is_empty() {
                    continue;
                }
                let ci = inp.below(m.caches.len());
                let live = m.caches[ci].objs.len();
                match m.caches[ci].c.destroy() {
                    Ok(()) => {
                        assert_eq!(live, 0);
                        let cm = m.caches.remove(ci);
                        m.dead.push(cm.c);
                    }
                    Err(CacheError::LiveObjects { name, count }) => {
                        assert_eq!((name, count), (m.caches[ci].name, live));
                    }
                    Err(e) => panic!("destroy: unexpected {e:?}"),
                }
            }
            3 => {
                if m.caches.is_empty() {
                    continue;
                }
                let ci = inp.below(m.caches.len());
                m.caches[ci].c.shrink().expect("shrink of a live cache");
            }
            4..=6 => {
                if m.caches.is_empty() {
                    continue;
                }
                let ci = inp.below(m.caches.len());
                let want = (inp.u8() & 1 == 1).then(|| node(&mut inp));
                if m.caches[ci].objs.len() < 200 {
                    alloc(&mut m, d, ci, want, fill);
                }
            }
            7 | 8 => {
                if m.caches.is_empty() {
                    continue;
                }
                let ci = inp.below(m.caches.len());
                let cm = &mut m.caches[ci];
                if cm.objs.is_empty() {
                    continue;
                }
                let o = cm.objs.swap_remove(inp.below(cm.objs.len()));
                cm.c.free(o.p).expect("free of a live object");
                cm.frees += 1;
            }
            9 => {
                let nid = node(&mut inp);
                let r = d.online_node(nid);
                hotplug_result(&mut m, r, nid, true, false);
            }
            10 | 11 => {
                let nid = node(&mut inp);
                let forced = inp.u8() % 4 == 0;
                let r = if forced {
                    d.offline_node_forced(nid)
                } else {
                    d.offline_node(nid)
                };
                hotplug_result(&mut m, r, nid, false, forced);
            }
            // arm or clear a fault
            12 => match inp.u8() % 5 {
                0 => {
                    d.page_source().fail_after(inp.u8() as u64 % 3);
                    m.page_faults = true;
                }
                1 => {
                    d.fail_part_alloc_after(inp.u8() as u64 % 3);
                    m.part_faults = true;
                }
                2 => FAULTS.stage.store(1 + inp.u8() % 4, Ordering::Relaxed),
                3 => FAULTS.veto.store(1 + inp.u8() % 2, Ordering::Relaxed),
                _ => {
                    d.page_source().clear_faults();
                    d.clear_part_faults();
                    m.page_faults = false;
                    m.part_faults = false;
                }
            },
            13 => {
                if m.caches.is_empty() {
                    continue;
                }
                let ci = inp.below(m.caches.len());
                let f = DebugFlags::from_bits(inp.u8() as u32 % 8);
                m.caches[ci]
                    .c
                    .set_debug(f)
                    .expect("set_debug of a live cache");
            }
            // a destroyed handle answers Destroyed
            14 => {
                if m.dead.is_empty() {
                    continue;
                }
                let h = &m.dead[inp.below(m.dead.len())];
                assert_eq!(h.alloc().unwrap_err(), CacheError::Destroyed);
                assert_eq!(h.shrink().unwrap_err(), CacheError::Destroyed);
                assert_eq!(h.destroy().unwrap_err(), CacheError::Destroyed);
            }
            // bad frees are typed errors
            _ => {
                if m.caches.is_empty() {
                    continue;
                }
                let ci = inp.below(m.caches.len());
                let local = 0u64;
                let foreign = NonNull::from(&local).cast::<u8>();
                assert!(matches!(
                    m.caches[ci].c.free(foreign),
                    Err(CacheError::ForeignPointer(_))
                ));
                if let Some(o) = m.caches[ci].objs.first() {
                    if m.caches[ci].size > 1 {
                        // SAFETY: o.p + 1 is inside a live object; free only looks it up.
                        let inner = unsafe { NonNull::new_unchecked(o.p.as_ptr().add(1)) };
                        assert!(matches!(
                            m.caches[ci].c.free(inner),
                            Err(CacheError::InteriorPointer(_))
                        ));
                    }
                    let other = (ci + 1) % m.caches.len();
                    if other != ci {
                        assert!(matches!(
                            m.caches[other].c.free(o.p),
                            Err(CacheError::ForeignPointer(_))
                        ));
                    }
                }
            }
        }
        m.check(d);
        TALLY.all_survived();
    }
    reset(&mut m, d);
});
