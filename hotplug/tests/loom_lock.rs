//! loom models of the real online-mems lock code (through the `sync` shim), for every lock kind: writer and
//! readers exclude each other, a reader nested inside a reader while a writer waits does not deadlock, the
//! writer's own read-side calls do not deadlock, the writer's wake-up by the last reader is never lost, and
//! writers are serialised. Owns no library code.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p hotslab-hotplug --release --test 'loom_*'`
//!
//! Data protected by the lock is a `loom::cell::UnsafeCell`: loom reports any access not ordered by
//! happens-before (a missing exclusion or a missing acquire/release edge) as a failure, in addition to the
//! explicit assertions. A deadlock (including a lost wake-up: the writer asleep with nobody left to wake it)
//! makes loom panic, so every model that completes proves the absence of both in its explored schedules.
//!
//! Preemption bound: 3 for every model (loom explores every schedule with at most three preemptions; stated
//! again on each model). The whole file takes about a minute on 2 cores, most of it the three-thread
//! wake-up model. The asymmetric kind's own models (barrier modes, thread exit, record chains, mutations)
//! are in loom_asym.rs.
#![cfg(loom)]

use hotslab_hotplug::{LockKind, OnlineMems};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

/// Runs `f` under loom with the given preemption bound.
fn model(preemption_bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(preemption_bound);
    b.check(f);
}

/// The lock plus a value only the writer may change.
struct World {
    lock: OnlineMems,
    value: UnsafeCell<u64>,
}

// SAFETY: `value` is only written under the write side and only read under the read side (or the write
// side); loom checks that those accesses are ordered, which is the point of the models.
unsafe impl Sync for World {}

impl World {
    fn new(kind: LockKind) -> Arc<World> {
        Arc::new(World {
            lock: OnlineMems::new(kind),
            value: UnsafeCell::new(0),
        })
    }

    /// Reads the value; the caller holds the read or write side.
    fn read_value(&self) -> u64 {
        // SAFETY: called with the read or write side held, so no writer mutates concurrently (loom verifies).
        self.value.with(|p| unsafe { *p })
    }

    /// Writes the value; the caller holds the write side.
    fn write_value(&self, v: u64) {
        // SAFETY: called with the write side held, so no other access is concurrent (loom verifies).
        self.value.with_mut(|p| unsafe { *p = v })
    }
}

macro_rules! loom_models {
    ($modname:ident, $kind:expr) => {
        mod $modname {
            use super::*;

            /// Writer and reader exclude each other: the writer stores 1 then 2 under the write side; a
            /// reader never observes the intermediate 1, and loom sees no unordered access.
            /// Preemption bound 3.
            #[test]
            fn writer_and_reader_exclude_each_other() {
                model(3, || {
                    let w = World::new($kind);
                    let writer = {
                        let w = w.clone();
                        thread::spawn(move || {
                            let _g = w.lock.write();
                            w.write_value(1);
                            w.write_value(2);
                        })
                    };
                    {
                        let _r = w.lock.read();
                        let v = w.read_value();
                        assert!(v == 0 || v == 2, "reader saw a half-done write: {v}");
                        assert_eq!(w.read_value(), v, "value changed under the read side");
                    }
                    writer.join().unwrap();
                    let _r = w.lock.read();
                    assert_eq!(w.read_value(), 2);
                });
            }

            /// A reader re-takes the read side while a writer may be waiting for its first reference: it
            /// must pass (a writer-preferring rwsem deadlocks here; see loom_naive_rwlock.rs).
            /// Preemption bound 3.
            #[test]
            fn nested_reader_while_writer_waits_does_not_deadlock() {
                model(3, || {
                    let w = World::new($kind);
                    let reader = {
                        let w = w.clone();
                        thread::spawn(move || {
                            let outer = w.lock.read();
                            let v = w.read_value();
                            let nested = w.lock.read();
                            assert_eq!(w.read_value(), v);
                            drop(nested);
                            assert_eq!(w.read_value(), v);
                            drop(outer);
                        })
                    };
                    {
                        let _g = w.lock.write();
                        w.write_value(7);
                    }
                    reader.join().unwrap();
                    assert_eq!(w.lock.stats().put_without_get, 0);
                });
            }

            /// The writer's own read-side calls (RAII and raw get/put, the way its notifier callbacks
            /// re-enter) return at once, with a concurrent reader around. Preemption bound 3.
            #[test]
            fn writers_own_reads_do_not_deadlock() {
                model(3, || {
                    let w = World::new($kind);
                    let writer = {
                        let w = w.clone();
                        thread::spawn(move || {
                            let _g = w.lock.write();
                            assert!(w.lock.is_active_writer());
                            let r = w.lock.read();
                            assert!(r.is_writer_passthrough());
                            w.lock.get();
                            w.write_value(3);
                            w.lock.put();
                            drop(r);
                        })
                    };
                    {
                        let _r = w.lock.read();
                        assert!(!w.lock.is_active_writer());
                        let v = w.read_value();
                        assert!(v == 0 || v == 3);
                    }
                    writer.join().unwrap();
                    assert_eq!(w.lock.stats().put_without_get, 0);
                });
            }

            /// Two readers (raw get/put) and a writer: whichever reader leaves last must wake the writer
            /// if it sleeps. A lost wake-up leaves the writer blocked for ever, which loom reports as a
            /// deadlock. Preemption bound 3 (three threads: the costliest model, ~20 s per kind).
            #[test]
            fn writer_wake_up_is_never_lost() {
                model(3, || {
                    let w = World::new($kind);
                    let readers: Vec<_> = (0..2)
                        .map(|_| {
                            let w = w.clone();
                            thread::spawn(move || {
                                w.lock.get();
                                let _ = w.read_value();
                                w.lock.put();
                            })
                        })
                        .collect();
                    {
                        let _g = w.lock.write();
                        w.write_value(1);
                    }
                    for r in readers {
                        r.join().unwrap();
                    }
                    assert_eq!(w.lock.stats().writes, 1);
                });
            }

            /// Two writers never overlap, and each keeps its identity as the active writer: its own reads
            /// pass through. (The seed had no outer writer lock: a second writer overwrote `active_writer`
            /// while the first was inside, so the first writer's own reads blocked on the lock it held.)
            /// Preemption bound 3.
            #[test]
            fn writers_are_serialised() {
                model(3, || {
                    let w = World::new($kind);
                    let other = {
                        let w = w.clone();
                        thread::spawn(move || {
                            let _g = w.lock.write();
                            let _own = w.lock.read();
                            let v = w.read_value();
                            w.write_value(v + 1);
                        })
                    };
                    {
                        let _g = w.lock.write();
                        let _own = w.lock.read();
                        let v = w.read_value();
                        w.write_value(v + 1);
                    }
                    other.join().unwrap();
                    let _r = w.lock.read();
                    assert_eq!(w.read_value(), 2);
                });
            }
        }
    };
}

loom_models!(seed, LockKind::Seed);
loom_models!(percpu, LockKind::PerCpu);
loom_models!(asym, LockKind::Asymmetric);
