//! Multi-thread benches (2 threads): producer/consumer cross-thread free, larson-like churn of a
//! shared pool, and cache-scratch false sharing, for every peer through the same generic code.
//! Times are per object handed over / per replacement / per scratch operation.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hotslab_benches::for_each_peer;
use hotslab_benches::workloads::{cache_scratch, larson, producer_consumer};

fn cross_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("xthread");
    g.throughput(Throughput::Elements(1));
    for (size, label) in [(64usize, "64B"), (0, "16-256B")] {
        for_each_peer!(|name, a| {
            g.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter_custom(|n| producer_consumer(a, n, size, 5))
            });
        });
    }
    g.finish();
}

fn larson_churn(c: &mut Criterion) {
    let mut g = c.benchmark_group("larson");
    g.throughput(Throughput::Elements(1));
    for_each_peer!(|name, a| {
        g.bench_function(BenchmarkId::new(name, "2t-pool4096-16-256B"), |b| {
            b.iter_custom(|n| larson(a, 2, 4096, n.max(2), 9))
        });
    });
    g.finish();
}

fn scratch(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache_scratch");
    g.throughput(Throughput::Elements(1));
    for_each_peer!(|name, a| {
        g.bench_function(BenchmarkId::new(name, "2t-8B-100w"), |b| {
            b.iter_custom(|n| cache_scratch(a, 2, n.max(2), 100, 8))
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = cross_thread, larson_churn, scratch
}
criterion_main!(benches);
