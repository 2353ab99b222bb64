//! Fast-path benches: one alloc+free pair per size (8 B - 4 KiB), the hot 16-256 B pair cycling
//! through small sizes, and a mixed-size stream over a ring of live objects, for every peer
//! through the same generic code. Owns no allocator code.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hotslab_benches::for_each_peer;
use hotslab_benches::workloads::{layout, pair, MixedStream, HOT_SIZES, PAIR_SIZES};

fn pairs(c: &mut Criterion) {
    let mut g = c.benchmark_group("pair");
    g.throughput(Throughput::Elements(1));
    for size in PAIR_SIZES {
        for_each_peer!(|name, a| {
            g.bench_with_input(BenchmarkId::new(name, size), &size, |b, &size| {
                let l = layout(size);
                b.iter(|| pair(a, l))
            });
        });
    }
    g.finish();
}

fn hot(c: &mut Criterion) {
    let mut g = c.benchmark_group("pair_hot");
    g.throughput(Throughput::Elements(1));
    for_each_peer!(|name, a| {
        g.bench_function(BenchmarkId::new(name, "16-256"), |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = i.wrapping_add(1);
                pair(a, layout(HOT_SIZES[i & (HOT_SIZES.len() - 1)]))
            })
        });
    });
    g.finish();
}

fn mixed(c: &mut Criterion) {
    let mut g = c.benchmark_group("mixed_stream");
    g.throughput(Throughput::Elements(1));
    for_each_peer!(|name, a| {
        g.bench_function(BenchmarkId::new(name, "8-4096-live64"), |b| {
            let mut s = MixedStream::new(64, 4096, 1);
            b.iter(|| s.step(a));
            s.drain(a);
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = hot, pairs, mixed
}
criterion_main!(benches);
