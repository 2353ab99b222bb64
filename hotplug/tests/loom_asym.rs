//! loom models of the asymmetric online-mems lock (`hotplug/src/asym.rs`), over the real code through the
//! `sync` shim, in both barrier modes: reader ∥ writer exclusion with data hand-over both ways, nested
//! readers while the writer waits, the writer re-entering as a reader, a reader thread exiting while the
//! writer waits (its record given back and reused by a new thread), a thread inside more locks than one
//! record has slots (a chained record), and the membarrier-unavailable fallback. Each protocol step the
//! proof in `asym.rs` leans on has a mutation (`OnlineMems::mutation_asym`, loom builds only) and a test
//! that the model then FAILS in some schedule. Owns no library code.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p hotslab-hotplug --release --test 'loom_*'`
//!
//! How the barrier is modelled: loom cannot model membarrier, so under loom the reader's compiler fence
//! and the writer's membarrier are both SeqCst fences (why that is a sound stand-in: `asym.rs`, "Under
//! loom"); in the fallback mode (`OnlineMems::loom_membarrier(false)`) they are the real fallback's SeqCst
//! fences. The per-thread records, their keys, `in_use` and the list head are loom atomics, so loom
//! explores what a writer's walk may read; thread exit is loom's thread-local destructor, as a pthread key
//! destructor is outside loom. Data guarded by the lock is a `loom::cell::UnsafeCell`, so any access
//! not ordered by happens-before fails the model, besides the explicit assertions; a deadlock (a lost
//! wake-up: the writer asleep, nobody left to wake it) makes loom panic.
//!
//! Preemption bounds are stated on each model; the file takes under a minute in release on 2 cores.
#![cfg(loom)]

use hotslab_hotplug::asym::{thread_records, AsymMutation};
use hotslab_hotplug::{LockKind, OnlineMems};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering::Relaxed};
use std::sync::Arc as StdArc;
use std::time::Instant;

/// Runs `f` under loom with preemption bound `bound` (or `LOOM_MAX_PREEMPTIONS`). `Ok(executions)` if
/// every schedule passed, `Err(first failure)` if one failed (an assertion, an unordered access, a
/// deadlock).
fn explore(
    name: &str,
    bound: usize,
    f: impl Fn() + Sync + Send + 'static,
) -> Result<usize, String> {
    let bound = std::env::var("LOOM_MAX_PREEMPTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(bound);
    let n = StdArc::new(StdAtomicUsize::new(0));
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
    let start = Instant::now();
    let r = {
        let n = n.clone();
        catch_unwind(AssertUnwindSafe(move || {
            b.check(move || {
                n.fetch_add(1, Relaxed);
                f()
            })
        }))
    };
    let executions = n.load(Relaxed);
    let out = r.map(|()| executions).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(non-string panic)".into())
    });
    println!(
        "loom model {name:<58} bound {bound} executions {executions:>6} {:.2?} {}",
        start.elapsed(),
        match &out {
            Ok(_) => "passed".to_string(),
            Err(e) => format!("FAILED: {}", e.lines().next().unwrap_or("")),
        }
    );
    out
}

#[track_caller]
fn assert_passes(name: &str, bound: usize, f: impl Fn() + Sync + Send + 'static) {
    match explore(name, bound, f) {
        Ok(n) => assert!(n > 1, "{name}: a single schedule; the threads never raced"),
        Err(e) => panic!("{name}: {e}"),
    }
}

#[track_caller]
fn assert_caught(name: &str, bound: usize, f: impl Fn() + Sync + Send + 'static) {
    assert!(
        explore(name, bound, f).is_err(),
        "{name}: no schedule found the mutation; the model cannot fail"
    );
}

/// A lock plus a value only the writer changes and a note only the reader writes.
struct World {
    lock: OnlineMems,
    value: UnsafeCell<u64>,
    note: UnsafeCell<u64>,
}

// SAFETY: `value` is written only under the write side and read under either side; `note` is written
// only by the single reader thread under the read side and read by the writer under the write side.
// loom checks that those accesses are ordered: that is what the models test.
unsafe impl Sync for World {}
unsafe impl Send for World {}

impl World {
    fn new(membarrier: bool, m: AsymMutation) -> Arc<World> {
        let lock = OnlineMems::new(LockKind::Asymmetric);
        lock.loom_membarrier(membarrier);
        lock.mutation_asym(m);
        Arc::new(World {
            lock,
            value: UnsafeCell::new(0),
            note: UnsafeCell::new(0),
        })
    }

    fn value(&self) -> u64 {
        // SAFETY: the caller holds the read or write side (loom verifies).
        self.value.with(|p| unsafe { *p })
    }

    fn set_value(&self, v: u64) {
        // SAFETY: the caller holds the write side (loom verifies).
        self.value.with_mut(|p| unsafe { *p = v })
    }

    fn note(&self) -> u64 {
        // SAFETY: the caller holds the write side (loom verifies).
        self.note.with(|p| unsafe { *p })
    }

    fn set_note(&self, v: u64) {
        // SAFETY: the single reader holds the read side (loom verifies against the writer).
        self.note.with_mut(|p| unsafe { *p = v })
    }
}

fn mode_name(membarrier: bool) -> &'static str {
    if membarrier {
        "membarrier"
    } else {
        "fallback"
    }
}

// ---- reader ∥ writer ------------------------------------------------------------------------------------

/// A writer stores 1 then 2 under the write side and then reads the reader's note; the reader (raw
/// `get`/`put`, the slab's way) reads the value and writes a note under the read side. The reader never
/// sees the half-done 1; the writer sees the note only if the reader's section came first, and then
/// its whole section (hand-over reader → writer: `D1` Release / `W2` Acquire); a reader after the writer
/// sees 2 (writer → reader: the flag's clearing store / `R2`).
fn exclusion(membarrier: bool, m: AsymMutation) {
    let w = World::new(membarrier, m);
    let writer = {
        let w = w.clone();
        thread::spawn(move || {
            let _g = w.lock.write();
            w.set_value(1);
            w.set_value(2);
            let note = w.note();
            assert!(note == 0 || note == 7, "writer saw a torn note: {note}");
        })
    };
    w.lock.get();
    let v = w.value();
    assert!(v == 0 || v == 2, "reader saw a half-done write: {v}");
    w.set_note(7);
    assert_eq!(w.value(), v, "value changed under the read side");
    w.lock.put();
    // A lost wake-up makes loom panic inside `join` (deadlock) while it cannot run destructors of loom
    // objects any more: keep the world out of the unwinding, and drop it only once the join returned.
    let w = core::mem::ManuallyDrop::new(w);
    writer.join().unwrap();
    let w = core::mem::ManuallyDrop::into_inner(w);
    let _r = w.lock.read();
    assert_eq!(w.value(), 2);
    assert_eq!(w.lock.stats().writes, 1);
}

/// Preemption bound 3.
#[test]
fn exclusion_and_hand_over_membarrier() {
    assert_passes("exclusion + hand-over [membarrier]", 3, || {
        exclusion(true, AsymMutation::None)
    });
}

/// Preemption bound 3.
#[test]
fn exclusion_and_hand_over_fallback() {
    assert_passes("exclusion + hand-over [fallback]", 3, || {
        exclusion(false, AsymMutation::None)
    });
}

/// Mutation: the writer reads the keys right after setting its flag, with no barrier between (the
/// store-buffering outcome: neither side sees the other). Preemption bound 3.
#[test]
fn writer_skips_barrier_mutation_is_caught() {
    for mb in [true, false] {
        assert_caught(
            &format!("exclusion [{}, WriterSkipsBarrier]", mode_name(mb)),
            3,
            move || exclusion(mb, AsymMutation::WriterSkipsBarrier),
        );
    }
}

/// Mutation: in the fallback the reader skips its fence, as if membarrier covered it. Preemption bound 3.
#[test]
fn reader_skips_fallback_fence_mutation_is_caught() {
    assert_caught("exclusion [fallback, ReaderSkipsFallbackFence]", 3, || {
        exclusion(false, AsymMutation::ReaderSkipsFallbackFence)
    });
}

/// Mutation: the outermost release stores its key Relaxed: the writer's section is no longer ordered
/// after the reader's (loom reports the unordered accesses to the note or the value). Preemption bound 3.
#[test]
fn leave_store_relaxed_mutation_is_caught() {
    assert_caught("exclusion [membarrier, LeaveStoreRelaxed]", 3, || {
        exclusion(true, AsymMutation::LeaveStoreRelaxed)
    });
}

/// Mutation: the outermost release does not wake a pending writer: a writer that saw the reader's key
/// and went to sleep is never woken (loom reports the deadlock). Preemption bound 3.
#[test]
fn leave_skips_wake_mutation_is_caught() {
    assert_caught("exclusion [membarrier, LeaveSkipsWake]", 3, || {
        exclusion(true, AsymMutation::LeaveSkipsWake)
    });
}

// ---- nesting and re-entry --------------------------------------------------------------------------------

/// A reader re-takes the read side (RAII and raw) while the writer may be waiting for its outermost
/// read: it passes, and the value does not change under either. Preemption bound 3.
#[test]
fn nested_readers_while_writer_waits() {
    for mb in [true, false] {
        assert_passes(
            &format!("nested readers ∥ writer [{}]", mode_name(mb)),
            3,
            move || {
                let w = World::new(mb, AsymMutation::None);
                let reader = {
                    let w = w.clone();
                    thread::spawn(move || {
                        let outer = w.lock.read();
                        let v = w.value();
                        w.lock.get();
                        let inner = w.lock.read();
                        assert_eq!(w.value(), v);
                        drop(inner);
                        w.lock.put();
                        assert_eq!(w.value(), v, "a nested release let the writer in");
                        drop(outer);
                    })
                };
                {
                    let _g = w.lock.write();
                    w.set_value(5);
                }
                reader.join().unwrap();
                assert_eq!(w.lock.stats().put_without_get, 0);
            },
        );
    }
}

/// The writer's own reads (RAII, raw get/put, a nested write) pass straight through while a reader
/// thread races it, and leave nothing behind: after the write the reader gets in. Preemption bound 3.
#[test]
fn writer_reenters_as_reader() {
    for mb in [true, false] {
        assert_passes(
            &format!("writer re-enters as reader [{}]", mode_name(mb)),
            3,
            move || {
                let w = World::new(mb, AsymMutation::None);
                let writer = {
                    let w = w.clone();
                    thread::spawn(move || {
                        let g = w.lock.write();
                        let r = w.lock.read();
                        assert!(r.is_writer_passthrough());
                        w.lock.get();
                        let nested = w.lock.write();
                        assert!(nested.is_nested());
                        w.set_value(3);
                        drop(nested);
                        w.lock.put();
                        drop(r);
                        assert!(w.lock.is_active_writer());
                        drop(g);
                        assert!(!w.lock.is_active_writer());
                    })
                };
                {
                    let _r = w.lock.read();
                    let v = w.value();
                    assert!(v == 0 || v == 3);
                }
                writer.join().unwrap();
                let _r = w.lock.read();
                assert_eq!(w.value(), 3);
                assert_eq!(w.lock.stats().put_without_get, 0);
                assert_eq!(w.lock.stats().writes, 1);
            },
        );
    }
}

// ---- thread exit and records -----------------------------------------------------------------------------

/// Two reader threads, each reads once and exits, while the main thread writes: a reader's record is
/// given back at its exit (loom runs the thread-local destructor) and the other reader, if it starts
/// later, may claim it; the writer's walk is never fooled by a record changing hands (it waits for
/// exactly the readers inside). Then the main thread reads and writes again: exited threads' records
/// hold nobody off. Across the schedules, the reuse happens (one record made for the two readers).
/// (loom's `join` returns before the joined thread's locals are dropped, so an exit may even overlap the
/// main thread's second write.) Membarrier mode only: under loom the two modes run the same fences, and
/// the fallback's reader fence is covered by the exclusion models. Preemption bound 2 (three threads).
#[test]
fn reader_exit_while_writer_waits_and_record_reuse() {
    let reused = StdArc::new(StdAtomicUsize::new(0));
    {
        let reused = reused.clone();
        assert_passes(
            "reader exit ∥ writer, record reuse [membarrier]",
            2,
            move || {
                let w = World::new(true, AsymMutation::None);
                let readers: Vec<_> = (0..2)
                    .map(|_| {
                        let w = w.clone();
                        thread::spawn(move || {
                            let _r = w.lock.read();
                            let v = w.value();
                            assert!(v == 0 || v == 9);
                        })
                    })
                    .collect();
                {
                    let _g = w.lock.write();
                    w.set_value(9);
                }
                for r in readers {
                    r.join().unwrap();
                }
                let (made, _) = thread_records();
                assert!(made == 1 || made == 2, "{made} records for two threads");
                if made == 1 {
                    reused.fetch_add(1, Relaxed);
                }
                {
                    let _r = w.lock.read();
                    assert_eq!(w.value(), 9);
                }
                {
                    let _g = w.lock.write();
                    w.set_value(10);
                }
                assert_eq!(w.lock.stats().writes, 2);
                assert_eq!(w.lock.stats().put_without_get, 0);
            },
        );
    }
    assert!(
        reused.load(Relaxed) > 0,
        "no schedule reused an exited thread's record"
    );
}

/// A thread inside three locks at once (records have two slots under loom, so the third read chains a
/// second record) while a writer takes the third lock: the writer's walk finds the chained record's key
/// and waits; nested reads of the chained lock pass. Preemption bound 3.
#[test]
fn chained_record_is_seen_by_the_writer() {
    assert_passes("chained record ∥ writer [membarrier]", 3, || {
        let a = OnlineMems::new(LockKind::Asymmetric);
        let b = OnlineMems::new(LockKind::Asymmetric);
        let w = World::new(true, AsymMutation::None);
        let writer = {
            let w = w.clone();
            thread::spawn(move || {
                let _g = w.lock.write();
                w.set_value(4);
            })
        };
        let _ra = a.read();
        let _rb = b.read();
        {
            let _rc = w.lock.read();
            let v = w.value();
            let _nested = w.lock.read();
            assert_eq!(w.value(), v);
            assert!(v == 0 || v == 4);
        }
        writer.join().unwrap();
        let (made, _) = thread_records();
        assert!(made >= 2, "the third read did not chain a record");
        assert_eq!(w.lock.stats().depth_overflows, 0);
    });
}
