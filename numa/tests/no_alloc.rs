//! Everything the allocator's bootstrap may call must not touch the global allocator: a counting
//! `#[global_allocator]` fails the test if the sysfs reader (with possible-node coverage, memory
//! tiers and HMAT), simulation, lookups, mask parsing, the memory-policy decoding and placement
//! decision, `Mems_allowed_list`, PageSource map/unmap/decommit or placement allocate on this
//! thread.
#![cfg(not(miri))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use hotslab_numa::{
    placement_nodes, placement_summary, Coverage, MemPolicy, NodeId, NodeMask, PageSource,
    SysfsSource, Topology,
};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    // const-initialised and without Drop: no destructor registration, so no allocation itself.
    static WATCH: Cell<bool> = const { Cell::new(false) };
}

fn note() {
    if WATCH.with(|w| w.get()) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to System unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded contract.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        note();
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note();
        // SAFETY: forwarded contract.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn watched<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = ALLOCS.load(Ordering::Relaxed);
    WATCH.with(|w| w.set(true));
    let r = f();
    WATCH.with(|w| w.set(false));
    (r, ALLOCS.load(Ordering::Relaxed) - before)
}

#[test]
fn bootstrap_paths_do_not_allocate() {
    static PAGES: PageSource = PageSource::new();
    let mut real = Topology::new_boxed();
    let mut sim = Topology::new_boxed();
    let mut parts = Topology::new_boxed();

    // The counter really counts.
    let ((), n) = watched(|| drop(std::hint::black_box(Box::new(1u8))));
    assert_eq!(n, 2, "alloc + dealloc of the box");

    let ((), n) = watched(|| {
        Topology::read_sysfs_into(&mut real).unwrap();
        Topology::simulate_into(&real, 64, &mut sim).unwrap();
        let cpus: &[usize] = &[0, 3];
        Topology::from_parts_into(&mut parts, &[(NodeId(5), cpus, 1)], |_, _| 10).unwrap();
        let mut order = [NodeId(0); 64];
        assert_eq!(sim.fallback_order(NodeId(7), &mut order), 64);
        assert!(sim.nodes().test(sim.current_node()));
        assert!(real.cpu_node(0).is_some());
        let m = NodeMask::parse_list(b"0-3,7,1023\n").unwrap();
        let mut buf = [0u8; 64];
        assert!(m.write_list(&mut buf).is_some());
        let has_mem =
            hotslab_numa::sysfs::read_node_mask(hotslab_numa::NodeState::HasMemory).unwrap();

        // Possible coverage, tiers (the tiering directory is listed with getdents64), HMAT.
        let src = SysfsSource::SYSTEM.coverage(Coverage::Possible);
        Topology::read_sysfs_from_into(&src, &mut parts).unwrap();
        assert!(parts.nodes().is_subset(&parts.possible_nodes()));
        let _ = parts.tier(parts.first_node());
        let _ = parts.hmat(parts.first_node());
        let _ = hotslab_numa::sysfs::for_each_memory_tier(|_, _| {});
        let _ = hotslab_numa::sysfs::read_node_hmat(parts.first_node());
        let absent = NodeMask::single(NodeId(3));
        Topology::simulate_absent_into(&real, 8, &absent, &mut sim).unwrap();
        // Policy: decode the thread's, read the cpuset both ways, decide placement.
        let policy = MemPolicy::current().unwrap();
        let allowed = hotslab_numa::policy::mems_allowed().unwrap();
        assert_eq!(hotslab_numa::sysfs::read_mems_allowed_list(), Ok(allowed));
        let (_, nodes) = placement_nodes(&policy, &allowed, &sim);
        assert!(!nodes.is_empty());
        let (_, nodes) = placement_nodes(&policy, &allowed, &real);
        assert!(!nodes.is_empty());

        let span = PAGES.map(1 << 20, 2 << 20, has_mem.first()).unwrap();
        // SAFETY: the span is ours.
        unsafe { span.as_ptr().write_bytes(1, span.len) };
        let sum = placement_summary(span.as_ptr(), span.len).unwrap();
        assert_eq!(sum.present(), span.len / hotslab_numa::page_size());
        // SAFETY: the span is ours, page aligned; contents may go.
        assert!(unsafe { PAGES.decommit(span.ptr, span.len) });
        // SAFETY: the span is ours and unused from here on.
        unsafe { PAGES.unmap(span) };
        assert!(PAGES.map(4096, 0, Some(NodeId(1000))).is_err());
    });
    assert_eq!(n, 0, "bootstrap paths allocated {n} times");
}
