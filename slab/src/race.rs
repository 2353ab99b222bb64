//! The race stress run (DESIGN.md §4): real threads racing cache create / destroy / shrink
//! against node online / offline on a simulated 4-node topology, per locking mode, with and
//! without pause points that widen the window. It owns the pause coordinator (the waiting logic
//! behind `hotslab_hotplug::pause`) and the trial loop; it never touches allocator internals
//! beyond the public API and the domain's race detectors.
//!
//! A pause ends when the other side arrives at its own pause point, is seen waiting on the
//! online-mems lock, or has finished — never on a timeout (a long safety limit only reports a
//! stuck pause, it does not stand in for synchronisation).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use hotslab_hotplug::{HotplugDomain, LockKind};
use hotslab_numa::{NodeId, NodeMask, Topology};

use crate::{CacheConfig, DomainConfig, LockingMode, SlabDomain};

/// The three races of the companion patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Race {
    /// `kmem_cache_create` while a node comes online.
    CreateVsOnline,
    /// `kmem_cache_destroy` while a node goes offline.
    DestroyVsOffline,
    /// `kmem_cache_shrink` while a node goes offline.
    ShrinkVsOffline,
}

impl Race {
    /// All races.
    pub const ALL: [Race; 3] = [
        Race::CreateVsOnline,
        Race::DestroyVsOffline,
        Race::ShrinkVsOffline,
    ];

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            Race::CreateVsOnline => "create || online",
            Race::DestroyVsOffline => "destroy || offline",
            Race::ShrinkVsOffline => "shrink || offline",
        }
    }
}

/// What one stress run found.
#[derive(Clone, Debug)]
pub struct RaceReport {
    /// Locking mode.
    pub mode: LockingMode,
    /// Race.
    pub race: Race,
    /// Whether pause points widened the window.
    pub pauses: bool,
    /// Trials run.
    pub trials: usize,
    /// Trials that ended with a broken invariant or a detector firing.
    pub violating_trials: usize,
    /// Detector counts over the run: missing part, leaked part, double retire, use after retire.
    pub missing_part: u64,
    /// Leaked parts.
    pub leaked_part: u64,
    /// Double retires.
    pub double_retire: u64,
    /// Uses after retire.
    pub use_after_retire: u64,
    /// Trials whose check found a live cache without a live part for a node with memory (I1).
    pub i1_failures: usize,
    /// Pauses that hit the safety limit (should be 0).
    pub stuck_pauses: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl fmt::Display for RaceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<11} {:<19} {:<6} {:>7} {:>10}   I1={} missing={} leaked={} double={} uar={}",
            self.mode.name(),
            self.race.name(),
            if self.pauses { "yes" } else { "no" },
            self.trials,
            self.violating_trials,
            self.i1_failures,
            self.missing_part,
            self.leaked_part,
            self.double_retire,
            self.use_after_retire
        )
    }
}

impl RaceReport {
    /// Table header matching [`fmt::Display`].
    pub const HEADER: &'static str =
        "mode        race                pauses  trials violating   detectors";
}

// ---- pause coordinator ------------------------------------------------------------------------

/// One armed pause: `pause_at` (a pause-point name) waits until `release_on` is reached by the
/// other side, the other side is seen waiting on the online-mems lock, or it has finished.
struct Coordinator {
    armed: AtomicBool,
    pause_at: Mutex<&'static str>,
    release_on: Mutex<&'static str>,
    paused: AtomicBool,
    released: AtomicBool,
    other_done: AtomicBool,
    lock_waits_at_arm: AtomicU64,
    hotplug: AtomicUsize,
    stuck: AtomicU64,
}

static COORD: Coordinator = Coordinator {
    armed: AtomicBool::new(false),
    pause_at: Mutex::new(""),
    release_on: Mutex::new(""),
    paused: AtomicBool::new(false),
    released: AtomicBool::new(false),
    other_done: AtomicBool::new(false),
    lock_waits_at_arm: AtomicU64::new(0),
    hotplug: AtomicUsize::new(0),
    stuck: AtomicU64::new(0),
};

/// One stress run at a time (the pause hook is process-wide).
static RUN: Mutex<()> = Mutex::new(());

/// Safety limit of one pause: only reported, never expected.
const STUCK_LIMIT: Duration = Duration::from_secs(5);

fn lock_waits(hp: &HotplugDomain) -> u64 {
    let s = hp.lock.stats();
    s.reader_waits + s.writer_waits
}

fn hook(name: &'static str, _node: NodeId) {
    let c = &COORD;
    if !c.armed.load(Ordering::Acquire) {
        return;
    }
    if name == *c.release_on.lock().unwrap_or_else(|p| p.into_inner()) {
        c.released.store(true, Ordering::Release);
    }
    if name != *c.pause_at.lock().unwrap_or_else(|p| p.into_inner()) {
        return;
    }
    // SAFETY: `hotplug` holds the address of the run's HotplugDomain, which outlives the run.
    let hp = unsafe { &*(c.hotplug.load(Ordering::Acquire) as *const HotplugDomain) };
    c.paused.store(true, Ordering::Release);
    let start = Instant::now();
    let base = c.lock_waits_at_arm.load(Ordering::Acquire);
    while !c.released.load(Ordering::Acquire)
        && !c.other_done.load(Ordering::Acquire)
        && lock_waits(hp) == base
    {
        if start.elapsed() > STUCK_LIMIT {
            c.stuck.fetch_add(1, Ordering::Relaxed);
            break;
        }
        std::thread::yield_now();
    }
}

fn arm(hp: &HotplugDomain, pause_at: &'static str, release_on: &'static str) {
    let c = &COORD;
    *c.pause_at.lock().unwrap_or_else(|p| p.into_inner()) = pause_at;
    *c.release_on.lock().unwrap_or_else(|p| p.into_inner()) = release_on;
    c.paused.store(false, Ordering::Release);
    c.released.store(false, Ordering::Release);
    c.other_done.store(false, Ordering::Release);
    c.hotplug
        .store(hp as *const HotplugDomain as usize, Ordering::Release);
    c.lock_waits_at_arm.store(lock_waits(hp), Ordering::Release);
    c.armed.store(true, Ordering::Release);
}

fn disarm() {
    COORD.armed.store(false, Ordering::Release);
}

/// The racer side waits until the pausing side is parked at its pause point (or finished).
fn wait_for_pause(pauser_done: &AtomicBool) {
    let start = Instant::now();
    while !COORD.paused.load(Ordering::Acquire) && !pauser_done.load(Ordering::Acquire) {
        if start.elapsed() > STUCK_LIMIT {
            COORD.stuck.fetch_add(1, Ordering::Relaxed);
            return;
        }
        std::thread::yield_now();
    }
}

// ---- trials -------------------------------------------------------------------------------------

const NODES: usize = 4;
const HOT: NodeId = NodeId(3);

fn domain(
    mode: LockingMode,
    hot_online: bool,
) -> Result<(Arc<SlabDomain>, Arc<HotplugDomain>), String> {
    let topo = Topology::simulated(NODES).map_err(|e| format!("topology: {e:?}"))?;
    let possible = topo.nodes();
    let mut with_memory = NodeMask::new();
    for n in possible.iter() {
        if n != HOT || hot_online {
            with_memory.set(n);
        }
    }
    let hp = Arc::new(HotplugDomain::new(possible, with_memory, LockKind::Seed));
    let cfg = DomainConfig {
        mode,
        kmalloc: false,
        drain_timeout: Duration::from_millis(20),
        ..DomainConfig::default()
    };
    let d = SlabDomain::new(topo, hp.clone(), cfg).map_err(|e| e.to_string())?;
    Ok((d, hp))
}

/// Runs `trials` trials of `race` in `mode`. With `pauses`, pause points widen the window
/// (they need the `pause-points` feature; without it they are no-ops and `pauses` only changes
/// the start order).
pub fn run(
    mode: LockingMode,
    race: Race,
    pauses: bool,
    trials: usize,
) -> Result<RaceReport, String> {
    run_inner(mode, race, pauses, trials, false)
}

/// Mutation check: as [`run`], with the domain's create/destroy/shrink skipping the online-mems
/// read side (`SlabDomain::mutation_skip_read_side`). In `OnlineMems` this must break.
#[doc(hidden)]
pub fn run_mutated(
    mode: LockingMode,
    race: Race,
    pauses: bool,
    trials: usize,
) -> Result<RaceReport, String> {
    run_inner(mode, race, pauses, trials, true)
}

fn run_inner(
    mode: LockingMode,
    race: Race,
    pauses: bool,
    trials: usize,
    mutated: bool,
) -> Result<RaceReport, String> {
    let _one = RUN.lock().unwrap_or_else(|p| p.into_inner());
    let (d, hp) = domain(mode, race != Race::CreateVsOnline)?;
    d.mutation_skip_read_side(mutated);
    let prev_hook = hotslab_hotplug::pause::set_hook(Some(hook));
    COORD.stuck.store(0, Ordering::Relaxed);
    let start = Instant::now();
    let mut violating = 0;
    let mut i1_failures = 0;
    let v0 = snapshot(&d);
    for _ in 0..trials {
        let before = d.violations.total();
        let (bad_i1, ok) = match race {
            Race::CreateVsOnline => trial_create(&d, &hp, pauses)?,
            Race::DestroyVsOffline => trial_destroy(&d, &hp, pauses)?,
            Race::ShrinkVsOffline => trial_shrink(&d, &hp, pauses)?,
        };
        if bad_i1 {
            i1_failures += 1;
        }
        if bad_i1 || !ok || d.violations.total() > before {
            violating += 1;
        }
    }
    disarm();
    hotslab_hotplug::pause::set_hook(prev_hook);
    let v1 = snapshot(&d);
    Ok(RaceReport {
        mode,
        race,
        pauses,
        trials,
        violating_trials: violating,
        missing_part: v1[0] - v0[0],
        leaked_part: v1[1] - v0[1],
        double_retire: v1[2] - v0[2],
        use_after_retire: v1[3] - v0[3],
        i1_failures,
        stuck_pauses: COORD.stuck.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    })
}

fn snapshot(d: &SlabDomain) -> [u64; 4] {
    let v = &d.violations;
    [
        v.missing_part.load(Ordering::Relaxed),
        v.leaked_part.load(Ordering::Relaxed),
        v.double_retire.load(Ordering::Relaxed),
        v.use_after_retire.load(Ordering::Relaxed),
    ]
}

/// Runs `pauser` and `racer` on two threads. With pauses, the racer starts once the pauser is
/// parked at its pause point (armed by the caller); without, both start at a barrier.
fn race_pair<A, B>(pauses: bool, pauser: A, racer: B) -> Result<(), String>
where
    A: FnOnce() -> Result<(), String> + Send,
    B: FnOnce() -> Result<(), String> + Send,
{
    let barrier = Barrier::new(2);
    let pauser_done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let p = s.spawn(|| {
            barrier.wait();
            let r = pauser();
            pauser_done.store(true, Ordering::Release);
            r
        });
        let r = s.spawn(|| {
            barrier.wait();
            if pauses {
                wait_for_pause(&pauser_done);
            }
            let r = racer();
            COORD.other_done.store(true, Ordering::Release);
            r
        });
        let a = p.join().map_err(|_| "pauser panicked".to_string())?;
        let b = r.join().map_err(|_| "racer panicked".to_string())?;
        a.and(b)
    })
}

fn trial_create(
    d: &Arc<SlabDomain>,
    hp: &HotplugDomain,
    pauses: bool,
) -> Result<(bool, bool), String> {
    if pauses {
        arm(
            hp,
            hotslab_hotplug::pause::names::ONLINE_AFTER_GOING_ONLINE,
            "create:after-mask-read",
        );
    }
    let cache = Mutex::new(None);
    race_pair(
        pauses,
        || d.online_node(HOT).map_err(|e| format!("online: {e}")),
        || {
            *cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(
                d.create_cache(CacheConfig::new("race", 64))
                    .map_err(|e| e.to_string())?,
            );
            Ok(())
        },
    )?;
    disarm();
    let bad = !d.check_invariants().ok();
    let c = cache
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .ok_or("no cache")?;
    // An allocation on the hot node is what would have crashed the kernel.
    if let Ok(p) = c.alloc_node(HOT) {
        c.free(p).map_err(|e| e.to_string())?;
    }
    c.destroy().map_err(|e| e.to_string())?;
    d.offline_node(HOT)
        .map_err(|e| format!("cleanup offline: {e}"))?;
    Ok((bad, true))
}

fn trial_destroy(
    d: &Arc<SlabDomain>,
    hp: &HotplugDomain,
    pauses: bool,
) -> Result<(bool, bool), String> {
    let c = d
        .create_cache(CacheConfig::new("race", 64))
        .map_err(|e| e.to_string())?;
    if pauses {
        arm(
            hp,
            hotslab_hotplug::pause::names::OFFLINE_AFTER_MASK_CLEAR,
            "destroy:after-mask-read",
        );
    }
    race_pair(
        pauses,
        || d.offline_node(HOT).map_err(|e| format!("offline: {e}")),
        || c.destroy().map_err(|e| e.to_string()),
    )?;
    disarm();
    let bad = !d.check_invariants().ok();
    d.online_node(HOT)
        .map_err(|e| format!("cleanup online: {e}"))?;
    Ok((bad, true))
}

fn trial_shrink(
    d: &Arc<SlabDomain>,
    hp: &HotplugDomain,
    pauses: bool,
) -> Result<(bool, bool), String> {
    let c = d
        .create_cache(CacheConfig::new("race", 64))
        .map_err(|e| e.to_string())?;
    if pauses {
        // Here the cache operation is the side that pauses, between reading the mask and using
        // the parts; it is released when the offline has finished or is seen waiting.
        arm(hp, "shrink:after-mask-read", "");
    }
    race_pair(
        pauses,
        || c.shrink().map(|_| ()).map_err(|e| e.to_string()),
        || d.offline_node(HOT).map_err(|e| format!("offline: {e}")),
    )?;
    disarm();
    let bad = !d.check_invariants().ok();
    c.destroy().map_err(|e| e.to_string())?;
    d.online_node(HOT)
        .map_err(|e| format!("cleanup online: {e}"))?;
    Ok((bad, true))
}
