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
    TOPO.get_or_init(|| Topology::simulated(NODES as usize).expect("simulated topology")).clone()
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
        let cfg = DomainConfig { mode, lock_kind: LockKind::Seed, drain_timeout: Duration::ZERO, kmalloc: false };
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

/// What one model run explored.
#[derive(Debug)]
pub struct Outcome {
    /// Model name.
    pub name: &'static str,
    /// Preemption bound.
    pub bound: usize,
    /// Executions (schedules) loom ran.
    pub executions: usize,
    /// Executions in which an invariant broke.
    pub broken: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Outcome {
    /// The model must have found the violation in at least one schedule (Legacy, mutation checks).
    #[track_caller]
    pub fn assert_found(&self) {
        assert!(
            self.broken > 0,
            "{}: no schedule out of {} (preemption bound {}) broke an invariant; the model cannot fail",
            self.name,
            self.executions,
            self.bound
        );
    }

    /// No schedule may have broken an invariant (the strict models also assert inside each execution).
    #[track_caller]
    pub fn assert_clean(&self) {
        assert_eq!(self.broken, 0, "{}: {} of {} schedules broke an invariant", self.name, self.broken, self.executions);
        assert!(self.executions > 1, "{}: loom explored a single schedule; the threads never raced", self.name);
    }
}

/// Runs `one` (one execution; returns whether it broke an invariant) under loom with preemption bound
/// `bound`, counting executions and breaks in std atomics that live across executions (they are fresh for
/// every call, so concurrent tests do not share them). Prints a one-line summary.
pub fn explore(name: &'static str, bound: usize, one: impl Fn() -> bool + Send + Sync + 'static) -> Outcome {
    let executions = Arc::new(AtomicUsize::new(0));
    let broken = Arc::new(AtomicUsize::new(0));
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(bound);
    // The real create / destroy / offline paths make many atomic and lock operations per execution.
    b.max_branches = 100_000;
    let start = Instant::now();
    {
        let (executions, broken) = (executions.clone(), broken.clone());
        b.check(move || {
            executions.fetch_add(1, Ordering::Relaxed);
            if one() {
                broken.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let out = Outcome {
        name,
        bound,
        executions: executions.load(Ordering::Relaxed),
        broken: broken.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    };
    println!(
        "loom model {:<48} bound {} executions {:>7} broken {:>6} time {:.1?}",
        out.name, out.bound, out.executions, out.broken, out.elapsed
    );
    out
}
