//! `KmemCache` benches: a fixed-size object from a cache against `Box` and against every peer's
//! `GlobalAlloc` for the same layout; and cache create+destroy cost against the number of
//! simulated nodes (1, 64, 256, 1024), per locking mode and lock kind. Uses hotslab's public API
//! only.

mod common;

use core::alloc::Layout;
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hotslab::hotplug_api::HotplugDomain;
use hotslab::numa::{NodeId, NodeMask, Topology, MAX_TOPOLOGY_NODES};
use hotslab::{CacheConfig, DomainConfig, KmemCache, LockingMode, SlabDomain};
use hotslab_benches::for_each_peer;
use hotslab_benches::workloads::{alloc, free};
use hotslab_hotplug::LockKind;

/// The fixed-size object (96 bytes, like a small kernel struct).
#[derive(Clone, Copy)]
#[repr(C)]
struct Obj {
    words: [u64; 12],
}

const OBJ: Obj = Obj { words: [0x5a; 12] };
const BATCH: usize = 1000;

fn domain(nodes: usize, mode: LockingMode, lock_kind: LockKind) -> Arc<SlabDomain> {
    SlabDomain::simulated_with(
        nodes,
        DomainConfig {
            kmalloc: false,
            mode,
            lock_kind,
            ..Default::default()
        },
    )
    .expect("simulated domain")
}

fn cache_pair(cache: &KmemCache) {
    let p = cache.alloc().expect("cache alloc");
    // SAFETY: the cache hands out objects of size_of::<Obj>() bytes aligned for Obj.
    unsafe { p.cast::<Obj>().as_ptr().write(OBJ) };
    cache.free(black_box(p)).expect("cache free");
}

fn cache_vs_box(c: &mut Criterion) {
    let d = domain(1, LockingMode::OnlineMems, LockKind::default());
    let cache = d
        .create_cache(
            CacheConfig::new("bench_obj", core::mem::size_of::<Obj>())
                .align(core::mem::align_of::<Obj>()),
        )
        .expect("create cache");
    let l = Layout::new::<Obj>();
    let mut g = c.benchmark_group("kmemcache");

    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("hotslab", "pair"), |b| {
        b.iter(|| cache_pair(&cache))
    });
    g.bench_function(BenchmarkId::new("box-system", "pair"), |b| {
        b.iter(|| drop(black_box(Box::new(OBJ))))
    });
    for_each_peer!(|name, a| {
        let id = if name == "hotslab" {
            "hotslab-kmalloc"
        } else {
            name
        };
        g.bench_function(BenchmarkId::new(id, "pair"), |b| {
            b.iter(|| {
                let p = alloc(a, l);
                // SAFETY: p is null or a live block of Layout::new::<Obj>().
                unsafe {
                    if !p.is_null() {
                        (p as *mut Obj).write(OBJ);
                    }
                    free(a, black_box(p), l)
                }
            })
        });
    });

    g.throughput(Throughput::Elements(BATCH as u64));
    let mut objs: Vec<Option<NonNull<u8>>> = vec![None; BATCH];
    g.bench_function(BenchmarkId::new("hotslab", "batch1000"), |b| {
        b.iter(|| {
            for o in objs.iter_mut() {
                *o = cache.alloc().ok();
            }
            for o in objs.iter_mut().rev() {
                if let Some(p) = o.take() {
                    cache.free(p).expect("cache free");
                }
            }
        })
    });
    let mut boxes: Vec<Option<Box<Obj>>> = (0..BATCH).map(|_| None).collect();
    g.bench_function(BenchmarkId::new("box-system", "batch1000"), |b| {
        b.iter(|| {
            for o in boxes.iter_mut() {
                *o = Some(Box::new(OBJ));
            }
            for o in boxes.iter_mut().rev() {
                drop(black_box(o.take()));
            }
        })
    });
    let mut raw = vec![core::ptr::null_mut::<u8>(); BATCH];
    for_each_peer!(|name, a| {
        let id = if name == "hotslab" {
            "hotslab-kmalloc"
        } else {
            name
        };
        g.bench_function(BenchmarkId::new(id, "batch1000"), |b| {
            b.iter(|| {
                for p in raw.iter_mut() {
                    *p = alloc(a, l);
                }
                for p in raw.iter().rev() {
                    // SAFETY: each entry is null or allocated just above with l, freed once.
                    unsafe { free(a, *p, l) };
                }
            })
        });
    });
    g.finish();
    cache
        .destroy()
        .expect("destroy after the bench: every object was freed");
}

/// The create+destroy curve's locking setups: OnlineMems with every lock kind, and SlabNodes.
fn cd_modes() -> Vec<(String, LockingMode, LockKind)> {
    let mut v: Vec<_> = LockKind::ALL
        .iter()
        .map(|&k| {
            (
                format!("OnlineMems-{}", k.name()),
                LockingMode::OnlineMems,
                k,
            )
        })
        .collect();
    v.push((
        "SlabNodes".into(),
        LockingMode::SlabNodes,
        LockKind::default(),
    ));
    v
}

/// A domain whose hotplug domain has `nodes` nodes with memory. The topology holds at most
/// `MAX_TOPOLOGY_NODES` (128) simulated nodes; past that the hotplug domain is wider than the
/// topology, which create and destroy do not notice: they iterate the hotplug domain's
/// has-memory mask (or `slab_nodes`) and make or retire one part per node. So the curve is the
/// cost per node with memory, 1 to 1024.
fn wide_domain(nodes: usize, mode: LockingMode, lock_kind: LockKind) -> Arc<SlabDomain> {
    let mask: NodeMask = (0..nodes as u16).map(NodeId::new).collect();
    let hp = Arc::new(HotplugDomain::new(mask, mask, lock_kind));
    let topo = Topology::simulated(nodes.min(MAX_TOPOLOGY_NODES)).expect("simulated topology");
    SlabDomain::new(
        topo,
        hp,
        DomainConfig {
            kmalloc: false,
            mode,
            lock_kind,
            ..Default::default()
        },
    )
    .expect("domain")
}

/// Cache create+destroy against the number of simulated nodes with memory (1, 64, 256, 1024):
/// each creates and retires one part per node, so the cost should grow linearly.
fn create_destroy(c: &mut Criterion) {
    // Time per create+destroy (no throughput): the report fits the exponent of the curve.
    let mut g = c.benchmark_group("create_destroy");
    for nodes in [1usize, 64, 256, 1024] {
        for (label, mode, kind) in cd_modes() {
            let d = wide_domain(nodes, mode, kind);
            g.bench_with_input(BenchmarkId::new(label, nodes), &nodes, |b, _| {
                b.iter(|| {
                    let cache = d
                        .create_cache(CacheConfig::new("bench_cd", 192))
                        .expect("create");
                    cache.destroy().expect("destroy");
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = cache_vs_box, create_destroy
}
criterion_main!(benches);
