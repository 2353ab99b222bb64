//! Batch benches: allocate 10^5 objects, then free them all, in LIFO or random order, for every
//! peer through the same generic code. Owns no allocator code.

mod common;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hotslab_benches::workloads::{batch, layout, Order};
use hotslab_benches::{for_each_peer, Rng};

const LIVE: usize = 100_000;

fn batches(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Elements(LIVE as u64));
    let mut perm: Vec<u32> = (0..LIVE as u32).collect();
    Rng::new(77).shuffle(&mut perm);
    let mut ptrs = vec![core::ptr::null_mut::<u8>(); LIVE];
    for (order, label) in [(Order::Lifo, "lifo-64B"), (Order::Random, "random-64B")] {
        for_each_peer!(|name, a| {
            g.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter(|| batch(a, layout(64), &mut ptrs, order, &perm))
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = batches
}
criterion_main!(benches);
