//! Online-mems read side (one `read()` guard taken and dropped: get + put): every `LockKind` —
//! the seed design (mutex + refcount), the per-CPU design (striped counter + SeqCst fences) and
//! the asymmetric one (per-thread record + compiler fence, membarrier on the writer) — against
//! `std::sync::RwLock`'s read in the same group and run: with one reader thread (`alone`), with a
//! second reader thread reading in a loop (`2readers`), and with a writer taking the write side
//! every millisecond. Uses hotslab-hotplug's public API only.

mod common;

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hotslab_hotplug::{LockKind, OnlineMems};

/// A lock with a read side and a write side, timed through the same code.
trait ReadSide: Sync {
    fn read_once(&self);
    fn write_once(&self);
}

impl ReadSide for OnlineMems {
    #[inline(always)]
    fn read_once(&self) {
        let g = self.read();
        black_box(&g);
    }
    fn write_once(&self) {
        let g = self.write();
        black_box(&g);
    }
}

impl ReadSide for RwLock<u64> {
    #[inline(always)]
    fn read_once(&self) {
        let g = self.read().unwrap_or_else(|e| e.into_inner());
        black_box(*g);
    }
    fn write_once(&self) {
        let mut g = self.write().unwrap_or_else(|e| e.into_inner());
        *g += 1;
    }
}

fn reads<L: ReadSide>(lock: &L, n: u64) -> Duration {
    let t0 = Instant::now();
    for _ in 0..n {
        lock.read_once();
    }
    t0.elapsed()
}

/// `n` reads on this thread while another thread reads in a loop.
fn reads_contended<L: ReadSide>(lock: &L, n: u64) -> Duration {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    lock.read_once();
                }
            }
        });
        let d = reads(lock, n);
        stop.store(true, Ordering::Relaxed);
        d
    })
}

/// `n` reads on this thread while a writer takes the write side every millisecond. The sleep
/// only paces the writer; it synchronises nothing.
fn reads_with_writer<L: ReadSide>(lock: &L, n: u64, writes: &AtomicU64) -> Duration {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                lock.write_once();
                writes.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let d = reads(lock, n);
        stop.store(true, Ordering::Relaxed);
        d
    })
}

fn bench_kind<L: ReadSide>(c: &mut Criterion, name: &str, lock: &L) {
    let mut g = c.benchmark_group("online_mems_read");
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new(name, "alone"), |b| {
        b.iter_custom(|n| reads(lock, n))
    });
    g.bench_function(BenchmarkId::new(name, "2readers"), |b| {
        b.iter_custom(|n| reads_contended(lock, n))
    });
    let writes = AtomicU64::new(0);
    g.bench_function(BenchmarkId::new(name, "writer-1ms"), |b| {
        b.iter_custom(|n| reads_with_writer(lock, n, &writes))
    });
    g.finish();
    eprintln!(
        "online_mems_read/{name}: the writer got the write side {} times",
        writes.load(Ordering::Relaxed)
    );
}

fn online_mems(c: &mut Criterion) {
    // `rwlock` first: the report's reference column for this group.
    bench_kind(c, "rwlock", &RwLock::new(0u64));
    for kind in LockKind::ALL {
        bench_kind(c, kind.name(), &OnlineMems::new(kind));
    }
    eprintln!(
        "online_mems_read: asymmetric barrier mode {:?}",
        hotslab_hotplug::membarrier::mode()
    );
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = online_mems
}
criterion_main!(benches);
