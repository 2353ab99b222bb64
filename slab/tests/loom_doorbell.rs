//! loom models of the purge doorbell (`slab/src/doorbell.rs`): a part noting a purge deadline ∥ the
//! background purger going to sleep on the bell's futex word. The protocol code is the real one
//! (`Doorbell::ring`, `Doorbell::nap`, `note_deadline`, used by `mem::ring_purge_bell`,
//! `Sweep::note` and `background::nap`), run over loom stand-ins behind the same `BellWord` trait: a
//! loom atomic for the word, and a futex made of a loom mutex and condvar (the value check and the
//! sleep are atomic with respect to a wake, as the kernel makes them; a timed wait returns at once,
//! since only a wait without a timeout can be lost). The property: the purger never sleeps without a
//! deadline while one is noted. A lost wake-up leaves it asleep for ever, which loom reports as a
//! deadlock when the model joins it. Each fence of the Dekker pair has a mutation that drops it
//! (`BellMutation`), and a test that the model then FAILS. `SleeperSkipsFence` is the code as it
//! was before session 4. Owns no library code.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p hotslab --release --test 'loom_*'`
//!
//! Preemption bounds are stated on each model; the file takes a few seconds.
#![cfg(loom)]

use hotslab::loom_doorbell::{BellMutation, PurgeModel};
use loom::sync::Arc;
use loom::thread;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering::Relaxed};
use std::sync::Arc as StdArc;

/// Runs `f` under loom with preemption bound `bound`: `Ok(executions)` if every schedule passed,
/// `Err(first failure)` otherwise (a deadlock: the purger asleep for ever).
fn explore(
    name: &str,
    bound: usize,
    f: impl Fn() + Sync + Send + 'static,
) -> Result<usize, String> {
    let n = StdArc::new(StdAtomicUsize::new(0));
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
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
        "loom model {name:<52} bound {bound} executions {executions:>6} {}",
        match &out {
            Ok(_) => "passed".to_string(),
            Err(e) => format!("FAILED: {}", e.lines().next().unwrap_or("")),
        }
    );
    out
}

/// The purger's loop (`background::run` with nothing else to do): sweep whatever is due, else nap
/// without a timeout; returns once it has taken `want` noted deadlines.
fn purger(m: &PurgeModel, want: usize) {
    let mut taken = 0;
    loop {
        if m.take_due() != u64::MAX {
            taken += 1;
            if taken == want {
                return;
            }
            continue;
        }
        m.nap(u64::MAX);
    }
}

/// Joins `h`; a lost wake-up makes loom panic inside `join` (deadlock) while it can no longer run
/// destructors of loom objects, so `keep` stays out of the unwinding until the join returned.
fn join_keeping<T>(h: thread::JoinHandle<()>, keep: T) -> T {
    let keep = core::mem::ManuallyDrop::new(keep);
    h.join().unwrap();
    core::mem::ManuallyDrop::into_inner(keep)
}

/// A part notes a deadline while the purger checks for work and goes to sleep: the purger always
/// takes it (it saw the deadline before sleeping, or the part saw the bell and woke it).
fn note_vs_nap(m: BellMutation) {
    let model = Arc::new(PurgeModel::new(m));
    let p = {
        let model = model.clone();
        thread::spawn(move || purger(&model, 1))
    };
    model.note(10);
    drop(join_keeping(p, model));
}

/// Preemption bound 3.
#[test]
fn note_vs_nap_never_loses_the_wake_up() {
    let r = explore("note ∥ nap", 3, || note_vs_nap(BellMutation::None));
    assert!(matches!(r, Ok(n) if n > 1), "{r:?}");
}

/// Mutation: the noter reads the bell without its fence. Preemption bound 3.
#[test]
fn ringer_skips_fence_mutation_is_caught() {
    let r = explore("note ∥ nap [RingerSkipsFence]", 3, || {
        note_vs_nap(BellMutation::RingerSkipsFence)
    });
    assert!(r.is_err(), "the model cannot fail: {r:?}");
}

/// Mutation: the purger looks for work right after its SeqCst store of the bell, without a fence
/// (the code before session 4): the C++ model lets the Relaxed load pass the store. Preemption
/// bound 3.
#[test]
fn sleeper_skips_fence_mutation_is_caught() {
    let r = explore("note ∥ nap [SleeperSkipsFence]", 3, || {
        note_vs_nap(BellMutation::SleeperSkipsFence)
    });
    assert!(r.is_err(), "the model cannot fail: {r:?}");
}

/// Two transitions: the part notes, waits until the purger took it (the deadline word is back to
/// none), and notes again, which rings again; the purger, back asleep after its first sweep, takes
/// the second too. Preemption bound 2.
#[test]
fn second_note_after_a_sweep_wakes_the_purger_again() {
    let r = explore("note, sweep, note ∥ nap, nap", 2, || {
        let model = Arc::new(PurgeModel::new(BellMutation::None));
        let p = {
            let model = model.clone();
            thread::spawn(move || purger(&model, 2))
        };
        model.note(10);
        while !model.nothing_due() {
            thread::yield_now();
        }
        model.note(20);
        drop(join_keeping(p, model));
    });
    assert!(matches!(r, Ok(n) if n > 1), "{r:?}");
}
