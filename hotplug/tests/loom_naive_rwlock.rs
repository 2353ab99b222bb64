//! Why the seed's first version (an rw-semaphore) was rejected: a loom model of a naive writer-preferring
//! rwlock, built from loom's Mutex + Condvar (loom's own RwLock never blocks readers behind a waiting
//! writer), deadlocks when a reader re-takes the read side while a writer is queued. The same schedule on
//! the real `OnlineMems` (both kinds) completes. Owns no library code; the naive lock is a private type here.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p hotslab-hotplug --release --test 'loom_*'`
//!
//! Preemption bound 2 for every model here (stated on each).
#![cfg(loom)]

use hotslab_hotplug::{LockKind, OnlineMems};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use std::rc::Rc;

struct NaiveState {
    readers: usize,
    writers_waiting: usize,
    writer_active: bool,
}

/// A writer-preferring reader/writer lock: new readers wait while a writer waits or runs.
struct NaiveRwLock {
    state: Mutex<NaiveState>,
    cv: Condvar,
}

impl NaiveRwLock {
    fn new() -> Self {
        NaiveRwLock {
            state: Mutex::new(NaiveState {
                readers: 0,
                writers_waiting: 0,
                writer_active: false,
            }),
            cv: Condvar::new(),
        }
    }

    fn read(&self) {
        let mut s = self.state.lock().unwrap();
        while s.writer_active || s.writers_waiting > 0 {
            s = self.cv.wait(s).unwrap();
        }
        s.readers += 1;
    }

    fn read_unlock(&self) {
        let mut s = self.state.lock().unwrap();
        s.readers -= 1;
        if s.readers == 0 {
            self.cv.notify_all();
        }
    }

    fn write(&self) {
        let mut s = self.state.lock().unwrap();
        s.writers_waiting += 1;
        while s.writer_active || s.readers > 0 {
            s = self.cv.wait(s).unwrap();
        }
        s.writers_waiting -= 1;
        s.writer_active = true;
    }

    fn write_unlock(&self) {
        let mut s = self.state.lock().unwrap();
        s.writer_active = false;
        self.cv.notify_all();
    }
}

fn model(preemption_bound: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(preemption_bound);
    b.check(f);
}

/// The rejected design: a reader holding the read side re-takes it while a writer is queued. The nested
/// read waits behind the writer, the writer waits for the outer read: loom finds the schedule and reports
/// the deadlock (as a panic). Preemption bound 2.
#[test]
#[should_panic(expected = "deadlock")]
fn naive_writer_preferring_rwlock_deadlocks_on_nested_read() {
    model(2, || {
        // `Rc`, not loom's `Arc`: when loom aborts the execution on the deadlock, dropping a loom `Arc`
        // during the unwind would touch the already torn-down scheduler (a panic in a destructor, which
        // aborts the test process instead of failing the model).
        let lock = Rc::new(NaiveRwLock::new());
        let reader = {
            let lock = lock.clone();
            thread::spawn(move || {
                lock.read();
                lock.read(); // nested
                lock.read_unlock();
                lock.read_unlock();
            })
        };
        lock.write();
        lock.write_unlock();
        reader.join().unwrap();
    });
}

/// Sanity check of the model itself: without nesting the naive lock is fine, so the deadlock above is the
/// nesting's fault. Preemption bound 2.
#[test]
fn naive_rwlock_without_nesting_completes() {
    model(2, || {
        let lock = Arc::new(NaiveRwLock::new());
        let reader = {
            let lock = lock.clone();
            thread::spawn(move || {
                lock.read();
                lock.read_unlock();
            })
        };
        lock.write();
        lock.write_unlock();
        reader.join().unwrap();
    });
}

/// The same nested schedule on the real lock, every kind: completes. Preemption bound 2.
#[test]
fn online_mems_survives_the_same_schedule() {
    for kind in LockKind::ALL {
        model(2, move || {
            let lock = Arc::new(OnlineMems::new(kind));
            let reader = {
                let lock = lock.clone();
                thread::spawn(move || {
                    lock.get();
                    lock.get(); // nested
                    lock.put();
                    lock.put();
                })
            };
            drop(lock.write());
            reader.join().unwrap();
            assert_eq!(lock.stats().put_without_get, 0);
        });
    }
}
