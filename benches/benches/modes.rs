//! What each locking mode costs: cache create+destroy, and a node offline+online cycle with
//! caches present (the hotplug latency a mode adds), for Legacy, OnlineMems (seed, per-CPU and
//! asymmetric lock) and SlabNodes. Uses hotslab's public API only.

mod common;

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hotslab::numa::NodeId;
use hotslab::{CacheConfig, DomainConfig, KmemCache, LockingMode, SlabDomain};
use hotslab_hotplug::LockKind;

const NODES: usize = 4;
const CACHES: usize = 16;

fn modes() -> Vec<(String, LockingMode, LockKind)> {
    let mut v = vec![(
        "Legacy".to_string(),
        LockingMode::Legacy,
        LockKind::default(),
    )];
    v.extend(LockKind::ALL.iter().map(|&k| {
        (
            format!("OnlineMems-{}", k.name()),
            LockingMode::OnlineMems,
            k,
        )
    }));
    v.push((
        "SlabNodes".into(),
        LockingMode::SlabNodes,
        LockKind::default(),
    ));
    v
}

fn domain(mode: LockingMode, lock_kind: LockKind) -> Arc<SlabDomain> {
    SlabDomain::simulated_with(
        NODES,
        DomainConfig {
            kmalloc: false,
            mode,
            lock_kind,
            ..Default::default()
        },
    )
    .expect("simulated domain")
}

fn create_destroy(c: &mut Criterion) {
    let mut g = c.benchmark_group("mode_create_destroy");
    for (name, mode, kind) in modes() {
        let d = domain(mode, kind);
        g.bench_function(BenchmarkId::new(name, NODES), |b| {
            b.iter(|| {
                let cache = d
                    .create_cache(CacheConfig::new("bench_mode", 128))
                    .expect("create");
                cache.destroy().expect("destroy");
            })
        });
    }
    g.finish();
}

fn hotplug_cycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("mode_offline_online");
    for (name, mode, kind) in modes() {
        let d = domain(mode, kind);
        let caches: Vec<KmemCache> = (0..CACHES)
            .map(|_| {
                d.create_cache(CacheConfig::new("bench_mode", 256))
                    .expect("create")
            })
            .collect();
        let victim = NodeId::new(NODES as u16 - 1);
        g.bench_function(BenchmarkId::new(name, format!("{CACHES}caches")), |b| {
            b.iter(|| {
                d.offline_node(victim).expect("offline");
                d.online_node(victim).expect("online");
            })
        });
        for cache in caches {
            cache.destroy().expect("destroy");
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = create_destroy, hotplug_cycle
}
criterion_main!(benches);
