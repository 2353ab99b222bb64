//! Allocation throughput of a `KmemCache` while another thread onlines and offlines a simulated
//! node in a loop, against the same allocation pattern with no hotplug. Objects are taken near
//! the calling thread and on the churned node itself. And the cost of one node offline+online
//! cycle against the number of caches (1, 100, 1000, 10000), per locking mode and lock kind.
//! Uses hotslab's public API only.

mod common;

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hotslab::hotplug_api::LockKind;
use hotslab::numa::NodeId;
use hotslab::{CacheConfig, DomainConfig, KmemCache, LockingMode, SlabDomain};

const BATCH: usize = 64;
const NODES: usize = 4;

/// Allocates BATCH objects (near this thread, or on `node`), then frees them; `n` times.
fn batches(
    cache: &KmemCache,
    node: Option<NodeId>,
    n: u64,
    objs: &mut [Option<NonNull<u8>>],
) -> Duration {
    let t0 = Instant::now();
    for _ in 0..n {
        for o in objs.iter_mut() {
            *o = match node {
                Some(nid) => cache.alloc_node(nid).ok(),
                None => cache.alloc().ok(),
            };
        }
        for o in objs.iter_mut() {
            if let Some(p) = o.take() {
                cache.free(p).expect("free");
            }
        }
    }
    t0.elapsed()
}

#[derive(Default)]
struct Churn {
    offlined: AtomicU64,
    refused: AtomicU64,
    onlined: AtomicU64,
}

fn hotplug(c: &mut Criterion) {
    let d = SlabDomain::simulated_with(
        NODES,
        DomainConfig {
            kmalloc: false,
            drain_timeout: Duration::from_millis(1),
            ..Default::default()
        },
    )
    .expect("simulated domain");
    let cache = d
        .create_cache(CacheConfig::new("bench_hp", 64))
        .expect("create cache");
    let victim = NodeId::new(NODES as u16 - 1);
    let churn = Churn::default();
    let mut objs = vec![None; BATCH];
    let mut g = c.benchmark_group("hotplug_alloc");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (label, node) in [("local", None), ("on-churned-node", Some(victim))] {
        g.bench_function(BenchmarkId::new("quiet", label), |b| {
            b.iter_custom(|n| batches(&cache, node, n, &mut objs))
        });
        g.bench_function(BenchmarkId::new("churn", label), |b| {
            b.iter_custom(|n| {
                let stop = AtomicBool::new(false);
                std::thread::scope(|s| {
                    s.spawn(|| {
                        while !stop.load(Ordering::Relaxed) {
                            match d.offline_node(victim) {
                                Ok(()) => {
                                    churn.offlined.fetch_add(1, Ordering::Relaxed);
                                    if d.online_node(victim).is_ok() {
                                        churn.onlined.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                Err(_) => {
                                    // Refused (live objects) or already offline: make sure
                                    // the node is back before the next try.
                                    churn.refused.fetch_add(1, Ordering::Relaxed);
                                    let _ = d.online_node(victim);
                                }
                            }
                        }
                    });
                    let t = batches(&cache, node, n, &mut objs);
                    stop.store(true, Ordering::Relaxed);
                    t
                })
            })
        });
    }
    g.finish();
    // Leave the node online for the destroy below.
    let _ = d.online_node(victim);
    eprintln!(
        "hotplug_alloc: node {victim} offlined {} times, onlined {} times, {} offlines refused",
        churn.offlined.load(Ordering::Relaxed),
        churn.onlined.load(Ordering::Relaxed),
        churn.refused.load(Ordering::Relaxed)
    );
    cache.destroy().expect("destroy");
}

/// The offline+online curve's locking setups: OnlineMems with every lock kind, and SlabNodes.
fn cycle_modes() -> Vec<(String, LockingMode, LockKind)> {
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

/// One offline+online cycle of the last of `NODES` simulated nodes with 1, 100, 1000 and 10000
/// empty caches: the write side is taken twice and the slab callbacks retire (or park) and bring
/// back one part per cache, so the cost should grow linearly with the caches.
fn offline_online(c: &mut Criterion) {
    // Time per cycle (no throughput): the report fits the exponent of the curve.
    let mut g = c.benchmark_group("offline_online");
    let victim = NodeId::new(NODES as u16 - 1);
    for caches in [1usize, 100, 1000, 10_000] {
        for (label, mode, kind) in cycle_modes() {
            let d = SlabDomain::simulated_with(
                NODES,
                DomainConfig {
                    kmalloc: false,
                    mode,
                    lock_kind: kind,
                    drain_timeout: Duration::from_millis(1),
                    ..Default::default()
                },
            )
            .expect("simulated domain");
            let live: Vec<KmemCache> = (0..caches)
                .map(|_| {
                    d.create_cache(CacheConfig::new("bench_cycle", 128))
                        .expect("create")
                })
                .collect();
            g.bench_with_input(BenchmarkId::new(label, caches), &caches, |b, _| {
                b.iter(|| {
                    d.offline_node(victim).expect("offline");
                    d.online_node(victim).expect("online");
                })
            });
            for cache in live {
                cache.destroy().expect("destroy");
            }
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = hotplug, offline_online
}
criterion_main!(benches);
