//! Shared scaffolding of the slab loom models (`loom_*.rs`): a fresh slab domain per execution over a
//! simulated two-node topology, and a model runner that states the preemption bound and counts executions
//! and invariant breaks. Owns no model; must not touch `slab/src`.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p hotslab --release --test 'loom_*'`
#![cfg(loom)]
#![allow(dead_code)] // each model file uses a different subset

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hotslab::hotplug_api::{HotplugDomain, LockKind};
use hotslab::numa::{NodeId, NodeMask, Topology};
use hotslab::{DomainConfig, LockingMode, SlabDomain};

/// Node ids 0 and 1: the two nodes of every model's topology.
pub const NODES: u16 = 2;

/// The simulated topology, read once per process (sysfs is not part of any model).
fn topology() -> Box<Topology> {
    static TOPO: OnceLock<Box<Topology>> = OnceLock::new();
    TOPO.get_or_init(|| Topology::simulated(NODES as usize).expect("simulated topology"))
        .clone()
}

/// One execution's world: a slab domain (no kmalloc caches: loom explores only what the model does) over
/// its own hotplug domain, in which nodes 0 and 1 are possible and the listed nodes have memory.
pub struct World {
    /// The domain under test.
    pub domain: Arc<SlabDomain>,
}

impl World {
    /// A domain in `mode` whose nodes `with_memory` have memory at the start. A refusable offline gets a
    /// zero drain timeout: it drains once and refuses if objects are still live, so its single decision is
    /// made on the modelled state, never on the wall clock (which loom cannot replay).
    pub fn new(mode: LockingMode, with_memory: &[u16]) -> World {
        let possible = NodeMask::range(0, NODES);
        let mut mem = NodeMask::new();
        for &n in with_memory {
            mem.set(NodeId::new(n));
        }
        let hp = Arc::new(HotplugDomain::new(possible, mem, LockKind::Seed));
        let cfg = DomainConfig {
            mode,
            lock_kind: LockKind::Seed,
            drain_timeout: Duration::ZERO,
            kmalloc: false,
            purge_delay: Duration::ZERO,
            huge_pages_after: None,
        };
        let domain = SlabDomain::new(topology(), hp, cfg).expect("slab domain");
        World { domain }
    }

    /// Asserts that no race detector fired.
    #[track_caller]
    pub fn assert_no_violations(&self, what: &str) {
        let v = &self.domain.violations;
        let r = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        assert_eq!(
            v.total(),
            0,
            "{} {what}: missing_part {} double_retire {} leaked_part {} use_after_retire {}",
            self.domain.mode().name(),
            r(&v.missing_part),
            r(&v.double_retire),
            r(&v.leaked_part),
            r(&v.use_after_retire),
        );
    }
}

/// What one execution saw after its threads joined: whether I1 held, and the race detectors' counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// `check_invariants()` reported a missing or stray part.
    pub i1_broken: bool,
    /// `Violations::missing_part`.
    pub missing_part: u64,
    /// `Violations::double_retire`.
    pub double_retire: u64,
    /// `Violations::leaked_part`.
    pub leaked_part: u64,
    /// `Violations::use_after_retire`.
    pub use_after_retire: u64,
}

impl Seen {
    /// Reads the domain's invariant report and detectors.
    pub fn of(world: &World) -> Seen {
        let v = &world.domain.violations;
        let r = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        Seen {
            i1_broken: !world.domain.check_invariants().ok(),
            missing_part: r(&v.missing_part),
            double_retire: r(&v.double_retire),
            leaked_part: r(&v.leaked_part),
            use_after_retire: r(&v.use_after_retire),
        }
    }

    /// Did anything break?
    pub fn broke(&self) -> bool {
        self.i1_broken
            || self.missing_part + self.double_retire + self.leaked_part + self.use_after_retire > 0
    }
}

/// One kind of break, for [`Outcome::assert_found`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// I1 (a node with memory without a live part, or a live part for a node without memory).
    I1,
    /// An allocation found no part for a node with memory.
    MissingPart,
    /// A part retired twice.
    DoubleRetire,
    /// A destroyed cache's part nobody retired.
    LeakedPart,
    /// A part used after it was retired.
    UseAfterRetire,
}

/// What one model run explored: executions, and in how many of them each kind of break showed.
#[derive(Debug)]
pub struct Outcome {
    /// Model name.
    pub name: &'static str,
    /// Preemption bound.
    pub bound: usize,
    /// Executions (schedules) loom ran.
    pub executions: usize,
    /// Executions in which anything broke.
    pub broken: usize,
    /// Executions per kind: I1, missing part, double retire, leaked part, use after retire.
    pub by_kind: [usize; 5],
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Outcome {
    /// The model must have found a break of one of `kinds` in at least one schedule (Legacy, mutation
    /// checks).
    #[track_caller]
    pub fn assert_found(&self, kinds: &[Kind]) {
        let n: usize = kinds.iter().map(|&k| self.by_kind[k as usize]).sum();
        assert!(
            n > 0,
            "{}: no schedule out of {} (preemption bound {}) showed {kinds:?} (breaks by kind: {:?}); \
             the model cannot fail",
            self.name,
            self.executions,
            self.bound,
            self.by_kind,
        );
    }

    /// No schedule may have broken anything (the strict models also assert inside each execution, so that
    /// loom reports the failing schedule).
    #[track_caller]
    pub fn assert_clean(&self) {
        assert_eq!(
            self.broken, 0,
            "{}: {} of {} schedules broke an invariant",
            self.name, self.broken, self.executions
        );
        assert!(
            self.executions > 1,
            "{}: loom explored a single schedule; the threads never raced",
            self.name
        );
    }
}

/// Runs `one` (one execution; returns what it saw) under loom with preemption bound `bound` (or
/// `LOOM_MAX_PREEMPTIONS` when set, loom's own override, for deeper runs by hand), counting
/// executions and breaks in std atomics that live across executions (fresh for every call, so tests running
/// side by side do not share them). Prints a one-line summary.
pub fn explore(
    name: &'static str,
    bound: usize,
    one: impl Fn() -> Seen + Send + Sync + 'static,
) -> Outcome {
    // loom's own variable deepens (or shortens) a run by hand; the bound stated in the model is the default.
    let bound = std::env::var("LOOM_MAX_PREEMPTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(bound);
    let counts: Arc<[AtomicUsize; 7]> = Arc::new(Default::default());
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
    // The real create / destroy / offline paths make many atomic and lock operations per execution.
    b.max_branches = 100_000;
    let start = Instant::now();
    {
        let counts = counts.clone();
        b.check(move || {
            let seen = one();
            let bump = |i: usize, on: bool| {
                if on {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                }
            };
            bump(0, true);
            bump(1, seen.broke());
            bump(2, seen.i1_broken);
            bump(3, seen.missing_part > 0);
            bump(4, seen.double_retire > 0);
            bump(5, seen.leaked_part > 0);
            bump(6, seen.use_after_retire > 0);
        });
    }
    let c = |i: usize| counts[i].load(Ordering::Relaxed);
    let out = Outcome {
        name,
        bound,
        executions: c(0),
        broken: c(1),
        by_kind: [c(2), c(3), c(4), c(5), c(6)],
        elapsed: start.elapsed(),
    };
    println!(
        "loom model {:<50} bound {} executions {:>6} broken {:>5} [i1 {} missing {} double {} leak {} uaf {}] {:.2?}",
        out.name,
        out.bound,
        out.executions,
        out.broken,
        out.by_kind[0],
        out.by_kind[1],
        out.by_kind[2],
        out.by_kind[3],
        out.by_kind[4],
        out.elapsed
    );
    out
}

/// Whether a model in `mode` (with the read side switched off by the mutation switch, if `mutate`) must
/// explore cleanly: OnlineMems and SlabNodes must; Legacy and the mutated OnlineMems are expected to break.
pub fn expects_clean(mode: LockingMode, mutate: bool) -> bool {
    mode != LockingMode::Legacy && !mutate
}
