//! loom models of the per-thread heap protocols (`slab/src/heap.rs`, `slab/src/slab.rs`), over the real
//! `hotslab` code: the owner-id local free ∥ revocation, a remote free ∥ the owner's collect of the
//! cross-thread list and its park of a full slab (the notice protocol), thread exit (abandon) ∥ remote frees ∥ adoption of the abandoned slab, and frees into a
//! draining part ∥ a forced or refusable offline (with the owner idle). Each model also has mutation checks:
//! a switch (`SlabDomain::mutation_heap`, loom builds only) that breaks one step of a protocol, and a test
//! that the model then FINDS the break in some schedule. Owns only these models; it changes nothing in
//! `slab/src` beyond those switches and the `SlabDomain::abandon_current_heap` hook.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p hotslab --release --test 'loom_*'`
//!
//! How the models see the protocols: heaps live behind loom's `thread_local!` (`tls.rs`), so every loom
//! thread has its own heap, made by its first slow path from the loom heap registry (a fresh heap per take;
//! heap recycling is not modelled, slab adoption through the part lists is). The busy / revoked handshake,
//! the heap and part locks, the slab's `owner` word and its cross-thread list are loom types, so loom
//! explores their interleavings and the values their loads may return. The owner-private lists (`Cell`s)
//! are not: a broken protocol shows in the models through what it leaves behind — a free lost from the
//! statistics, an emptied slab nobody settles (so a draining part never retires), a slab off every list.
//!
//! Checks common to every model, after the threads joined: every object handed out once (each carries its
//! holder's tag, checked before it is freed; live objects are distinct), allocations and frees exact in
//! `CacheStats` (`active_objects` counted from the slabs' `in_use`), I1, no race detector firing, every slab
//! on a part list (no heap owns one once every thread abandoned its heap, or it is counted as owned), and a
//! clean destroy after which the domain holds no committed slab memory (nothing leaked).
//!
//! Preemption bounds are stated on each model (`BOUND_*`); every model runs in a few seconds in release.
//! The executions explored and the breaks found are printed (`-- --nocapture`).
#![cfg(loom)]

mod loom_common;

use std::ptr::NonNull;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Instant;

use hotslab::numa::NodeId;
use hotslab::{CacheConfig, HeapMutation, KmemCache, LockingMode, PartState, SlabDomain};
use loom::thread;
use loom_common::World;

const N0: NodeId = NodeId::new(0);
const N1: NodeId = NodeId::new(1);

// ---- the runner ----------------------------------------------------------------------------------------------

/// The checks of one execution. Strict (no mutation): a failed check panics at once, so loom prints the
/// schedule. Mutated: the first failed check is recorded and the execution goes on without panicking.
struct Checks {
    strict: bool,
    broken: StdMutex<Option<String>>,
}

impl Checks {
    fn new(strict: bool) -> Arc<Checks> {
        Arc::new(Checks {
            strict,
            broken: StdMutex::new(None),
        })
    }

    /// Checks `ok`; `what` says what broke.
    #[track_caller]
    fn check(&self, ok: bool, what: impl FnOnce() -> String) -> bool {
        if !ok {
            let what = what();
            assert!(!self.strict, "heap protocol broken: {what}");
            let mut b = self.broken.lock().unwrap();
            if b.is_none() {
                *b = Some(what);
            }
        }
        ok
    }

    /// Nothing broke so far. A mutated execution stops at its first break: the allocator's own checks
    /// would abort the process on the state a broken protocol leaves behind (a double free).
    fn ok(&self) -> bool {
        self.broken.lock().unwrap().is_none()
    }

    fn broken(&self) -> Option<String> {
        self.broken.lock().unwrap().clone()
    }
}

/// What a model run explored.
struct Outcome {
    name: String,
    executions: usize,
    broken: usize,
    first: Option<String>,
}

impl Outcome {
    /// No schedule broke anything (strict runs also panic inside the execution that breaks).
    #[track_caller]
    fn assert_clean(&self) {
        assert_eq!(self.broken, 0, "{}: {:?}", self.name, self.first);
        assert!(
            self.executions > 1,
            "{}: loom explored a single schedule; the threads never raced",
            self.name
        );
    }

    /// Some schedule broke a check: the model can fail.
    #[track_caller]
    fn assert_found(&self) {
        assert!(
            self.broken > 0,
            "{}: no schedule out of {} found the mutation; the model cannot fail",
            self.name,
            self.executions
        );
    }
}

/// Runs `one` (one execution under mutation `m`) under loom with preemption bound `bound` (or
/// `LOOM_MAX_PREEMPTIONS`), counting executions and breaks outside the model.
fn explore(
    name: &str,
    bound: usize,
    m: HeapMutation,
    one: impl Fn(HeapMutation, &Arc<Checks>) + Send + Sync + 'static,
) -> Outcome {
    let bound = std::env::var("LOOM_MAX_PREEMPTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(bound);
    let tally: Arc<StdMutex<(usize, usize, Option<String>)>> = Arc::default();
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
    b.max_branches = 100_000;
    let start = Instant::now();
    {
        let tally = tally.clone();
        b.check(move || {
            let checks = Checks::new(m == HeapMutation::None);
            one(m, &checks);
            let mut t = tally.lock().unwrap();
            t.0 += 1;
            if let Some(what) = checks.broken() {
                t.1 += 1;
                t.2.get_or_insert(what);
            }
        });
    }
    let (executions, broken, first) = tally.lock().unwrap().clone();
    let name = format!("{name} [{m:?}]");
    println!(
        "loom model {name:<60} bound {bound} executions {executions:>6} broken {broken:>5} {:.2?}{}",
        start.elapsed(),
        first.as_deref().map_or(String::new(), |w| format!(" first: {w}"))
    );
    Outcome {
        name,
        executions,
        broken,
        first,
    }
}

// ---- helpers -------------------------------------------------------------------------------------------------

/// A pointer that may cross into a loom thread.
struct SendPtr(NonNull<u8>);
// SAFETY: the object is handed over whole: the sender never touches it again.
unsafe impl Send for SendPtr {}

/// Allocates (on `nid`, or near the thread with `None`) and stamps the object with `tag`.
fn alloc_tagged(c: &KmemCache, nid: Option<NodeId>, tag: u64) -> NonNull<u8> {
    let p = match nid {
        Some(n) => c.alloc_node(n),
        None => c.alloc(),
    }
    .expect("allocation is served");
    assert!(c.node_of(p).is_some(), "the object belongs to the cache");
    // SAFETY: p is a live object of at least 8 bytes, aligned to 8, exclusively ours.
    unsafe { p.as_ptr().cast::<u64>().write(tag) };
    p
}

/// Checks the stamp (an object handed out twice carries the other holder's tag), then frees it.
fn free_tagged(ch: &Checks, c: &KmemCache, p: NonNull<u8>, tag: u64) {
    // SAFETY: p is still our live object (stamped by alloc_tagged).
    let seen = unsafe { p.as_ptr().cast::<u64>().read() };
    ch.check(seen == tag, || {
        format!("object {p:p} was handed out twice (tag {seen:#x}, ours {tag:#x})")
    });
    let r = c.free(p);
    ch.check(r.is_ok(), || format!("free of a live object failed: {r:?}"));
}

/// Checks allocs / frees / active objects of `c`.
fn check_stats(ch: &Checks, c: &KmemCache, allocs: u64, frees: u64, active: usize, when: &str) {
    let st = c.stats().expect("stats");
    ch.check(
        (st.allocs, st.frees, st.active_objects) == (allocs, frees, active),
        || {
            format!(
                "{when}: {} allocs/frees/active {:?}, want {:?}",
                c.name(),
                (st.allocs, st.frees, st.active_objects),
                (allocs, frees, active)
            )
        },
    );
}

/// Every slab of `c` is on a list of its parts (owned ones counted), and none is owned if `none_owned`.
fn check_slabs_listed(ch: &Checks, c: &KmemCache, none_owned: bool, when: &str) {
    let st = c.stats().expect("stats");
    let mut listed = 0;
    let mut owned = 0;
    for nid in [N0, N1] {
        if let Some((o, p, f, e)) = c.part_lists(nid) {
            listed += o + p + f + e;
            owned += o;
        }
    }
    ch.check(listed == st.slabs, || {
        format!(
            "{when}: {} has {} slabs, {listed} on part lists",
            c.name(),
            st.slabs
        )
    });
    ch.check(!none_owned || owned == 0, || {
        format!(
            "{when}: {}: {owned} slabs still owned by abandoned heaps",
            c.name()
        )
    });
}

/// The common end of every model: I1, no detector fired, each cache destroyed cleanly (every part retired),
/// and no slab memory left committed in the domain.
fn finish(ch: &Checks, w: &World, caches: &[&KmemCache]) {
    if !ch.ok() {
        return;
    }
    let rep = w.domain.check_invariants();
    ch.check(rep.ok(), || format!("I1: {rep:?}"));
    let v = w.domain.violations.total();
    ch.check(v == 0, || format!("{v} race-detector violations"));
    for c in caches {
        let r = c.destroy();
        if ch.check(r.is_ok(), || format!("destroy {}: {r:?}", c.name())) {
            for nid in [N0, N1] {
                let st = c.part_state(nid);
                ch.check(st.is_none() || st == Some(PartState::Retired), || {
                    format!("{} part of {nid} after destroy: {st:?}", c.name())
                });
            }
        }
    }
    let left = w.domain.committed_bytes();
    ch.check(left == 0, || {
        format!("{left} bytes of slab memory still committed after destroy (a slab leaked)")
    });
}

/// A fresh world (OnlineMems, nodes 0 and 1 with memory) with mutation `m` on.
fn world(m: HeapMutation) -> World {
    let w = World::new(LockingMode::OnlineMems, &[0, 1]);
    w.domain.mutation_heap(m);
    w
}

fn cache(d: &SlabDomain, name: &'static str, size: usize) -> KmemCache {
    d.create_cache(CacheConfig::new(name, size))
        .expect("create")
}

// ---- model 1: owner-id local free ∥ revocation -----------------------------------------------------------------

/// Preemption bound of model 1.
const BOUND_LOCAL: usize = 2;

/// Owner O allocates `a` from cache X on node 1 (O's heap owns the slab: owner word = O's heap), then `b`
/// from cache Y on node 0 (a locked slow path, which clears a revocation that is already over), then frees
/// `a` (a local free while O still owns the slab and is not revoked; otherwise remote) and `b`. Revoker R
/// takes node 1 away (`offline_node_forced`: its drain revokes O's thread cache of X while O may be inside
/// the busy section of that free). The local free must be neither lost nor pushed onto a slab R already gave
/// back: the slab's last free must reach the draining part, which then retires (node 1 has no memory and no
/// object is live at the end).
///
/// Mutations: `RevokeSkipsBusyWait` lets R take the slab while O's free is inside its busy section (O read
/// `revoked` before R's flag reached it) — the free lands on a resting slab of the draining part, which never
/// retires. `ReleaseKeepsOwner` leaves O's id in the given-back slab: once O's Y slow path has cleared the
/// revocation, O's free of `a` is taken for a local one on a slab O no longer owns — same symptom.
fn local_free_vs_revoke(m: HeapMutation, ch: &Arc<Checks>) {
    let w = world(m);
    let x = cache(&w.domain, "x", 64);
    let y = cache(&w.domain, "y", 64);
    let o = {
        let (x, y, ch) = (x.clone(), y.clone(), ch.clone());
        thread::spawn(move || {
            let a = alloc_tagged(&x, Some(N1), 0xa);
            let b = alloc_tagged(&y, Some(N0), 0xb);
            free_tagged(&ch, &x, a, 0xa);
            free_tagged(&ch, &y, b, 0xb);
        })
    };
    let r = {
        let d = w.domain.clone();
        thread::spawn(move || d.offline_node_forced(N1))
    };
    o.join().unwrap();
    let off = r.join().unwrap();
    ch.check(off.is_ok(), || format!("forced offline refused: {off:?}"));
    check_stats(ch, &x, 1, 1, 0, "after the threads");
    check_stats(ch, &y, 1, 1, 0, "after the threads");
    for c in [&x, &y] {
        let st = c.part_state(N1);
        ch.check(st == Some(PartState::Retired), || {
            format!(
                "{}: node 1 part {st:?} after the last free (lists {:?}): the free was lost or landed \
                 on a slab already given back",
                c.name(),
                c.part_lists(N1)
            )
        });
        check_slabs_listed(ch, c, false, "after the threads");
    }
    finish(ch, &w, &[&x, &y]);
}

/// Preemption bound 2. Model 1 as written: clean in every schedule.
#[test]
fn local_free_vs_revoke_is_clean() {
    explore(
        "local free ∥ revoke (forced offline)",
        BOUND_LOCAL,
        HeapMutation::None,
        local_free_vs_revoke,
    )
    .assert_clean();
}

/// Preemption bound 2. A revoker that does not wait for the busy section: some schedule loses the free.
#[test]
fn local_free_vs_revoke_skip_busy_wait_mutation_is_caught() {
    explore(
        "local free ∥ revoke (forced offline)",
        BOUND_LOCAL,
        HeapMutation::RevokeSkipsBusyWait,
        local_free_vs_revoke,
    )
    .assert_found();
}

/// Preemption bound 2. A release that keeps the owner id: some schedule frees "locally" into a resting slab.
#[test]
fn local_free_vs_revoke_release_keeps_owner_mutation_is_caught() {
    explore(
        "local free ∥ revoke (forced offline)",
        BOUND_LOCAL,
        HeapMutation::ReleaseKeepsOwner,
        local_free_vs_revoke,
    )
    .assert_found();
}

// ---- model 2: remote free ∥ the owner's collect ----------------------------------------------------------------

/// Preemption bound of model 2.
const BOUND_REMOTE: usize = 3;
/// Object size of model 2: 8 objects per slab, all carved by the first refill.
const BIG: usize = 8192;
/// Objects per slab of model 2.
const PER_SLAB: usize = 8;

/// Owner O allocates a whole slab (8 objects of 8 KiB; the first through the locked refill, the rest from
/// its fast path), hands two of them to R and allocates two more: each refill of the exhausted slab swaps
/// in its cross-thread list (lock-free, inside O's busy section) or, if nothing has arrived yet, takes the
/// locked path to another slab. R frees its two objects remotely (one CAS each) meanwhile. No object may be
/// lost or handed out twice: O's new objects are distinct from the six it still holds, and after R is done
/// the statistics count exactly 10 allocations, 2 frees and 8 live objects (the slabs' `in_use` counters);
/// after O frees everything, 10/10/0.
///
/// The exhausted slab is parked on O's full queue (`Slab::park`, a `fetch_or` of the parked bit into the
/// cross-thread word) unless R's frees are already there; R's CAS that clears the bit counts a notice on O's
/// thread cache, and O's next refill takes the slab back through it (under loom the blind rotation of full
/// slabs is off, so notices are the only way back). After R is done, no parked slab may hold frees that no
/// notice announces (`unnoticed_parked_slabs`).
///
/// Mutations: `CollectRemoteLoadStore` makes the collect a load and a store of 0: a push between them is
/// lost (the statistics then disagree with what was freed). `ParkedFreeSkipsNotice`: the free that clears
/// the bit tells nobody, and `ParkIgnoresPending`: the park does not look at frees that arrived since the
/// refill's collect — either way a parked slab holds frees its owner will never look for.
fn remote_free_vs_collect(m: HeapMutation, ch: &Arc<Checks>) {
    let w = world(m);
    let c = cache(&w.domain, "big", BIG);
    let o = {
        let (c, ch) = (c.clone(), ch.clone());
        thread::spawn(move || {
            let mut held: Vec<(NonNull<u8>, u64)> = Vec::new();
            for i in 0..PER_SLAB as u64 {
                let nid = (i == 0).then_some(N0);
                held.push((alloc_tagged(&c, nid, 0x100 + i), 0x100 + i));
            }
            let given: Vec<(SendPtr, u64)> =
                held.drain(..2).map(|(p, t)| (SendPtr(p), t)).collect();
            let r = {
                let (c, ch) = (c.clone(), ch.clone());
                thread::spawn(move || {
                    for (p, t) in given {
                        free_tagged(&ch, &c, p.0, t); // remote: R has no heap
                    }
                })
            };
            // Let R go first in the first schedule: loom's DPOR keeps one last access per atomic, so a
            // load of O followed by R's load and CAS would hide the race; from R's CAS first it backtracks
            // to every order of O's collect and R's pushes.
            thread::yield_now();
            for i in 0..2u64 {
                let p = alloc_tagged(&c, None, 0x200 + i);
                ch.check(held.iter().all(|&(q, _)| q != p), || {
                    format!("refill handed out {p:p}, which is still live")
                });
                held.push((p, 0x200 + i));
            }
            r.join().unwrap();
            let unnoticed = c.unnoticed_parked_slabs();
            ch.check(unnoticed == 0, || {
                format!("{unnoticed} parked slab(s) hold cross-thread frees nobody announced")
            });
            check_stats(&ch, &c, 10, 2, 8, "after the remote frees");
            if !ch.ok() {
                return;
            }
            for (p, t) in held {
                free_tagged(&ch, &c, p, t);
            }
            check_stats(&ch, &c, 10, 10, 0, "after every free");
        })
    };
    o.join().unwrap();
    check_slabs_listed(ch, &c, false, "after the threads");
    finish(ch, &w, &[&c]);
}

/// Preemption bound 3. Model 2 as written: clean in every schedule.
#[test]
fn remote_free_vs_collect_is_clean() {
    explore(
        "remote free ∥ owner's collect",
        BOUND_REMOTE,
        HeapMutation::None,
        remote_free_vs_collect,
    )
    .assert_clean();
}

/// Preemption bound 3. A collect that is not one swap: some schedule loses a remote free.
#[test]
fn remote_free_vs_collect_mutation_is_caught() {
    explore(
        "remote free ∥ owner's collect",
        BOUND_REMOTE,
        HeapMutation::CollectRemoteLoadStore,
        remote_free_vs_collect,
    )
    .assert_found();
}

/// Preemption bound 3. A free that clears the parked bit without a notice: some schedule leaves the parked
/// slab's frees unannounced.
#[test]
fn remote_free_vs_park_skipped_notice_is_caught() {
    explore(
        "remote free ∥ owner's park",
        BOUND_REMOTE,
        HeapMutation::ParkedFreeSkipsNotice,
        remote_free_vs_collect,
    )
    .assert_found();
}

/// Preemption bound 3. A park blind to frees that are already pending: some schedule parks a slab whose
/// frees arrived between the refill's collect and the park, and nobody announces them.
#[test]
fn remote_free_vs_park_blind_park_is_caught() {
    explore(
        "remote free ∥ owner's park",
        BOUND_REMOTE,
        HeapMutation::ParkIgnoresPending,
        remote_free_vs_collect,
    )
    .assert_found();
}

// ---- model 3: abandonment ∥ remote frees ∥ adoption ------------------------------------------------------------

/// Preemption bound of model 3.
const BOUND_ABANDON: usize = 2;

/// Thread A allocates `a`, `b1`, `b2` (A's heap owns the slab), hands `b1` and `b2` to R, and exits as far as
/// the domain is concerned (`abandon_current_heap`: the thread-exit flush gives its slabs back under the
/// heap's lock); then it frees `a` (remote: A has no heap any more). R frees `b1` and `b2` remotely, racing
/// with the flush's collect of the cross-thread list. C allocates `c` meanwhile — adopting A's slab from the
/// partial list if A gave it back already — frees it and abandons its own heap too. Every object is
/// accounted (4 allocations, 4 frees, nothing live), no heap owns a slab at the end, every slab is on a
/// part list, and destroy gives all memory back.
///
/// Mutation `CollectRemoteLoadStore`: the flush's collect (or C's, on the adopted slab) races R's pushes and
/// the frees no longer add up.
fn abandon_vs_remote_and_adopt(m: HeapMutation, ch: &Arc<Checks>) {
    let w = world(m);
    let x = cache(&w.domain, "x", 64);
    let a_thr = {
        let (x, ch, d) = (x.clone(), ch.clone(), w.domain.clone());
        thread::spawn(move || {
            let a = alloc_tagged(&x, Some(N0), 0xa);
            let b1 = SendPtr(alloc_tagged(&x, None, 0xb1));
            let b2 = SendPtr(alloc_tagged(&x, None, 0xb2));
            let r = {
                let (x, ch) = (x.clone(), ch.clone());
                thread::spawn(move || {
                    let (b1, b2) = (b1, b2);
                    free_tagged(&ch, &x, b1.0, 0xb1);
                    free_tagged(&ch, &x, b2.0, 0xb2);
                })
            };
            d.abandon_current_heap();
            free_tagged(&ch, &x, a, 0xa);
            r.join().unwrap();
        })
    };
    let c_thr = {
        let (x, ch, d) = (x.clone(), ch.clone(), w.domain.clone());
        thread::spawn(move || {
            let c = alloc_tagged(&x, Some(N0), 0xc);
            free_tagged(&ch, &x, c, 0xc);
            d.abandon_current_heap();
        })
    };
    a_thr.join().unwrap();
    c_thr.join().unwrap();
    check_stats(ch, &x, 4, 4, 0, "after the threads");
    check_slabs_listed(ch, &x, true, "after every heap was abandoned");
    finish(ch, &w, &[&x]);
}

/// Preemption bound 2. Model 3 as written: clean in every schedule.
#[test]
fn abandon_vs_remote_and_adopt_is_clean() {
    explore(
        "abandon ∥ remote free ∥ adopt",
        BOUND_ABANDON,
        HeapMutation::None,
        abandon_vs_remote_and_adopt,
    )
    .assert_clean();
}

/// Preemption bound 2. The flush's collect as a load and a store: some schedule miscounts R's frees.
#[test]
fn abandon_vs_remote_and_adopt_mutation_is_caught() {
    explore(
        "abandon ∥ remote free ∥ adopt",
        BOUND_ABANDON,
        HeapMutation::CollectRemoteLoadStore,
        abandon_vs_remote_and_adopt,
    )
    .assert_found();
}

// ---- model 4: frees into a draining part ∥ offline, the owner idle ---------------------------------------------

/// Preemption bound of model 4.
const BOUND_DRAIN: usize = 2;

/// How H takes node 1 away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Offline {
    Refusable,
    Forced,
}

/// The model's main thread allocates `a` and `b` on node 1 (its heap owns the slab) and then stays idle,
/// blocked in `join`, while F frees both objects remotely and H offlines node 1: H's drain must revoke the
/// idle owner's slab without waiting for it (a revoker that waited would deadlock the model), and the frees
/// may land before, during or after the drain. No free may be lost (statistics exact), and the part retires
/// only when empty: F sees it not retired between its two frees (b is still live), and once both frees are
/// in and the node is gone, it is retired with no slab left. A refusable offline (zero drain timeout) is
/// refused as busy iff an object was still live at its drain; then node 1 keeps its memory and a live part.
///
/// Mutation `RemoteFreeIgnoresDraining`: a remote free that read the slab as owned (so it does not settle a
/// resting slab itself) and lands after the drain's last collect no longer settles the draining part: the
/// part never retires.
fn free_into_draining(how: Offline, m: HeapMutation, ch: &Arc<Checks>) {
    let w = world(m);
    let x = cache(&w.domain, "x", 64);
    let a = SendPtr(alloc_tagged(&x, Some(N1), 0xa));
    let b = SendPtr(alloc_tagged(&x, None, 0xb));
    let f = {
        let (x, ch) = (x.clone(), ch.clone());
        thread::spawn(move || {
            let (a, b) = (a, b);
            free_tagged(&ch, &x, a.0, 0xa);
            let st = x.part_state(N1);
            ch.check(st != Some(PartState::Retired), || {
                "node 1 part retired while an object is still live on it".to_string()
            });
            free_tagged(&ch, &x, b.0, 0xb);
        })
    };
    let h = {
        let d = w.domain.clone();
        thread::spawn(move || match how {
            Offline::Refusable => d.offline_node(N1),
            Offline::Forced => d.offline_node_forced(N1),
        })
    };
    // Idle owner: this thread's heap owns the slab and makes no call until both threads are done.
    f.join().unwrap();
    let off = h.join().unwrap();
    match (how, &off) {
        (_, Ok(())) => {}
        (Offline::Refusable, Err(e)) => {
            ch.check(e.is_busy(), || format!("refused, not as busy: {e:?}"));
        }
        (Offline::Forced, Err(e)) => {
            ch.check(false, || format!("forced offline refused: {e:?}"));
        }
    }
    check_stats(ch, &x, 2, 2, 0, "after the frees");
    let gone = !w.domain.hotplug().states.has_memory().test(N1);
    let st = x.part_state(N1);
    let want = if gone {
        PartState::Retired
    } else {
        PartState::Live
    };
    ch.check(st == Some(want), || {
        format!(
            "node 1 part {st:?} after the last free, want {want:?} (node gone: {gone}, lists {:?})",
            x.part_lists(N1)
        )
    });
    if gone {
        let lists = x.part_lists(N1);
        ch.check(lists == Some((0, 0, 0, 0)), || {
            format!("a retired part still has slabs: {lists:?}")
        });
    }
    check_slabs_listed(ch, &x, false, "after the threads");
    finish(ch, &w, &[&x]);
}

/// Preemption bound 2. Forced offline: clean in every schedule.
#[test]
fn free_into_draining_forced_is_clean() {
    explore(
        "free ∥ forced offline, idle owner",
        BOUND_DRAIN,
        HeapMutation::None,
        |m, ch| free_into_draining(Offline::Forced, m, ch),
    )
    .assert_clean();
}

/// Preemption bound 2. Refusable offline: clean in every schedule.
#[test]
fn free_into_draining_refusable_is_clean() {
    explore(
        "free ∥ refusable offline, idle owner",
        BOUND_DRAIN,
        HeapMutation::None,
        |m, ch| free_into_draining(Offline::Refusable, m, ch),
    )
    .assert_clean();
}

/// Preemption bound 2. A remote free that ignores a draining part: the part never retires.
#[test]
fn free_into_draining_mutation_is_caught() {
    explore(
        "free ∥ forced offline, idle owner",
        BOUND_DRAIN,
        HeapMutation::RemoteFreeIgnoresDraining,
        |m, ch| free_into_draining(Offline::Forced, m, ch),
    )
    .assert_found();
}
