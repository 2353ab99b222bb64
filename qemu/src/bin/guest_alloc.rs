//! The default allocator under real hotplug: a guest program whose `#[global_allocator]` is
//! `hotslab::SlabAlloc`, started by `hotslab-guest` before the DIMM is added and driven by it over
//! stdin (`added`, `removed`) while it prints `HOTSLAB CHECK SlabAlloc.*` lines on stdout. It never
//! calls `follow_default_domain`: the default domain has to notice node 2 on its own.
//!
//! After the add it runs worker threads under `MPOL_BIND {2}` (`membind`), `MPOL_PREFERRED {2}`
//! (`preferred`) and `MPOL_INTERLEAVE {0,1}` (`interleave`), as `numactl` would start them: the
//! policy (and CPU 0 as the only CPU) is set on the spawning thread, so the workers inherit it from
//! their first instruction, and restored afterwards. Every worker allocates objects of slab and
//! large sizes and fills them; `move_pages` then reports where their pages are. The workers stay
//! alive across the removal; afterwards every object must still hold its data, none may be on node
//! 2, and the workers' (and the main thread's) new allocations must succeed elsewhere.
//!
//! CPU 0 is node 0's only CPU: node-local placement alone would put every page on node 0, so only
//! an allocator that follows the policy passes `membind`, `preferred` and `interleave`. Also
//! checked: `hotslab::refresh_mempolicy()` after a thread changes its own policy (`refresh.*`).
//!
//! `hotslab-guest-alloc --oneshot <membind|preferred|interleave>`: the mode `hotslab-guest` runs
//! under the real `numactl` after the add (`SlabAlloc.numactl.<policy>.*`): the whole process
//! starts under the policy and CPU 0, its main thread and workers allocate a batch each.

use std::alloc::{alloc, dealloc, Layout};
use std::io::BufReader;
use std::ptr::NonNull;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hotslab_numa::policy::{
    get_mempolicy, set_mempolicy, MPOL_BIND, MPOL_DEFAULT, MPOL_INTERLEAVE, MPOL_PREFERRED,
};
use hotslab_numa::{NodeId, NodeMask, PolicyMode};
use hotslab_qemu::guestkit::{
    fill, next_command, stage, sysfs_nodes, verify, Placement, Reporter, PLACEMENT_MIN_PCT,
};

#[global_allocator]
static A: hotslab::SlabAlloc = hotslab::SlabAlloc::new();

const WHO: &str = "SlabAlloc";
const N0: NodeId = NodeId::new(0);
const N1: NodeId = NodeId::new(1);
const N2: NodeId = NodeId::new(2);
/// Worker threads per policy.
const WORKERS: usize = 2;
/// How long the default domain may take to notice a hot-add or removal.
const FOLLOW_WAIT: Duration = Duration::from_secs(20);
/// Under interleave {0,1}, each of the two nodes must hold at least this share of the pages.
const INTERLEAVE_MIN_PCT: f64 = 25.0;
/// Object sizes and counts per batch: kmalloc classes up to 128 KiB, then large objects.
const SIZES: [(usize, usize); 7] = [
    (64, 2048),
    (256, 1024),
    (1024, 256),
    (4096, 64),
    (16 << 10, 16),
    (128 << 10, 4),
    (1 << 20, 2),
];

// ---- objects ---------------------------------------------------------------------------------

struct Obj {
    ptr: NonNull<u8>,
    len: usize,
    tag: u64,
    idx: u64,
}

// SAFETY: an Obj is an owned heap block (like a Box<[u8]>); it moves between threads whole.
unsafe impl Send for Obj {}

#[derive(Default)]
struct Batch {
    objs: Vec<Obj>,
    failed: usize,
    wanted: usize,
}

impl Batch {
    /// Allocates and fills one batch through the global allocator; `tag` names it (16 tags per
    /// batch, one per size).
    fn alloc(tag: u64) -> Batch {
        let mut b = Batch::default();
        for (k, &(size, count)) in SIZES.iter().enumerate() {
            let layout = Layout::from_size_align(size, 8).expect("layout");
            for i in 0..count {
                b.wanted += 1;
                // SAFETY: the layout has a non-zero size.
                match NonNull::new(unsafe { alloc(layout) }) {
                    Some(p) => {
                        let o = Obj {
                            ptr: p,
                            len: size,
                            tag: tag * 16 + k as u64,
                            idx: i as u64,
                        };
                        // SAFETY: a fresh, 8-aligned block of `size` bytes owned by `b`.
                        unsafe { fill(o.ptr, o.len, o.tag, o.idx) };
                        b.objs.push(o);
                    }
                    None => b.failed += 1,
                }
            }
        }
        b
    }

    fn placement(&self, large: Option<bool>) -> Placement {
        self.placement_where(|o| large.is_none_or(|l| (o.len > hotslab::KMALLOC_MAX) == l))
    }

    fn placement_where(&self, f: impl Fn(&Obj) -> bool) -> Placement {
        Placement::of(
            self.objs
                .iter()
                .filter(|o| f(o))
                .map(|o| (o.ptr.as_ptr() as usize, o.len)),
        )
    }

    fn intact(&self) -> usize {
        self.objs
            .iter()
            // SAFETY: live blocks of `len` bytes filled by `alloc`.
            .filter(|o| unsafe { verify(o.ptr, o.len, o.tag, o.idx) })
            .count()
    }

    fn free(&mut self) {
        for o in self.objs.drain(..) {
            let layout = Layout::from_size_align(o.len, 8).expect("layout");
            // SAFETY: allocated by `alloc` with this layout, freed once.
            unsafe { dealloc(o.ptr.as_ptr(), layout) };
        }
    }
}

fn merged<'a>(bs: impl IntoIterator<Item = &'a Batch>, large: Option<bool>) -> Placement {
    let mut p = Placement::default();
    for b in bs {
        p.merge(&b.placement(large));
    }
    p
}

/// Pages per node for each object size: `64:n0/n1/n2 ...`.
fn by_size(bs: &[Batch]) -> String {
    SIZES
        .iter()
        .map(|&(size, _)| {
            let mut p = Placement::default();
            for b in bs {
                p.merge(&b.placement_where(|o| o.len == size));
            }
            format!("{size}:{}/{}/{}", p.on(N0), p.on(N1), p.on(N2))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---- policies and workers --------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Policy {
    name: &'static str,
    mode: i32,
    nodes: NodeMask,
}

const POLICIES: [Policy; 3] = [
    Policy {
        name: "membind",
        mode: MPOL_BIND,
        nodes: NodeMask::single(N2),
    },
    Policy {
        name: "preferred",
        mode: MPOL_PREFERRED,
        nodes: NodeMask::single(N2),
    },
    Policy {
        name: "interleave",
        mode: MPOL_INTERLEAVE,
        nodes: NodeMask::range(0, 2),
    },
];

/// What a worker saw of its own policy and CPUs (to show the harness did what it says).
struct Seen {
    mode: i32,
    nodes: NodeMask,
    only_cpu0: bool,
}

struct Worker {
    go: mpsc::Sender<()>,
    out: mpsc::Receiver<(Seen, Batch)>,
    handle: JoinHandle<()>,
}

fn affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data; zero is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: writes at most size_of::<cpu_set_t>() bytes into `set`.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    (r == 0).then_some(set)
}

fn set_affinity(set: &libc::cpu_set_t) -> bool {
    // SAFETY: reads the set of the size given; affects only the calling thread.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(set), set) == 0 }
}

fn only_cpu0() -> bool {
    affinity().is_some_and(|s| {
        // SAFETY: CPU_ISSET/CPU_COUNT only read the set.
        unsafe { libc::CPU_ISSET(0, &s) && libc::CPU_COUNT(&s) == 1 }
    })
}

/// Starts `WORKERS` threads under `p` and CPU 0, as `numactl --cpunodebind ... --membind` would: the
/// spawning (main) thread takes the policy and affinity, spawns, and drops them again.
fn spawn_workers(p: Policy, tag: u64) -> Result<Vec<Worker>, String> {
    let saved = affinity().ok_or("sched_getaffinity failed")?;
    // SAFETY: as in `affinity`.
    let mut cpu0: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes bit 0 of the set.
    unsafe { libc::CPU_SET(0, &mut cpu0) };
    if !set_affinity(&cpu0) {
        return Err("sched_setaffinity(CPU 0) failed".into());
    }
    if let Err(e) = set_mempolicy(p.mode, Some(&p.nodes)) {
        set_affinity(&saved);
        return Err(format!("set_mempolicy({}, {}): {e:?}", p.name, p.nodes));
    }
    let mut ws = Vec::new();
    let mut err = None;
    for w in 0..WORKERS {
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (out_tx, out_rx) = mpsc::channel();
        let t = tag + 2 * w as u64;
        let spawned = std::thread::Builder::new()
            .name(format!("{}-{w}", p.name))
            .spawn(move || {
                let mut mode = -1;
                let mut nodes = NodeMask::new();
                let _ = get_mempolicy(&mut mode, Some(&mut nodes), std::ptr::null(), 0);
                let seen = Seen {
                    mode,
                    nodes,
                    only_cpu0: only_cpu0(),
                };
                if out_tx.send((seen, Batch::alloc(t))).is_err() {
                    return;
                }
                // Phase 2 runs after the removal, still under the policy the thread started with.
                if go_rx.recv().is_ok() {
                    // What the kernel made of the policy when node 2 left the cpuset.
                    let mut mode = -1;
                    let mut nodes = NodeMask::new();
                    let _ = get_mempolicy(&mut mode, Some(&mut nodes), std::ptr::null(), 0);
                    let seen = Seen {
                        mode,
                        nodes,
                        only_cpu0: only_cpu0(),
                    };
                    let _ = out_tx.send((seen, Batch::alloc(t + 1)));
                }
            });
        match spawned {
            Ok(handle) => ws.push(Worker {
                go: go_tx,
                out: out_rx,
                handle,
            }),
            Err(e) => {
                err = Some(format!("spawn: {e}"));
                break;
            }
        }
    }
    let restored = set_mempolicy(MPOL_DEFAULT, None).is_ok() & set_affinity(&saved);
    match err {
        Some(e) => Err(e),
        None if !restored => Err("restoring the main thread's policy failed".into()),
        None => Ok(ws),
    }
}

fn collect(ws: &[Worker]) -> Option<Vec<(Seen, Batch)>> {
    ws.iter()
        .map(|w| w.out.recv_timeout(Duration::from_secs(120)).ok())
        .collect()
}

/// Runs `f` on a new thread with CPU 0 as its only CPU (the calling thread's affinity is restored).
fn on_cpu0<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let saved = affinity().ok_or("sched_getaffinity failed")?;
    // SAFETY: as in `affinity`.
    let mut cpu0: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU_SET writes bit 0 of the set.
    unsafe { libc::CPU_SET(0, &mut cpu0) };
    if !set_affinity(&cpu0) {
        return Err("sched_setaffinity(CPU 0) failed".into());
    }
    let h = std::thread::Builder::new().name(name.into()).spawn(f);
    let restored = set_affinity(&saved);
    let out = h
        .map_err(|e| format!("spawn: {e}"))?
        .join()
        .map_err(|_| format!("the {name} thread panicked"))?;
    if !restored {
        return Err("restoring the main thread's affinity failed".into());
    }
    Ok(out)
}

/// `hotslab::refresh_mempolicy()`, on CPU 0. A thread whose policy hotslab has read (default:
/// node-local, node 0) switches itself to `MPOL_BIND {2}` and refreshes: the slabs it is given
/// from then on must be on node 2. A second thread first allocates a whole batch under the default
/// policy (leaving a partly used slab of every size in its heap), then does the same; where its
/// second batch lands is reported as a value: `refresh_mempolicy` places new slabs, the slabs a
/// thread already holds stay in use (documented), so part of that batch stays on node 0.
/// Returns the batches (they stay live through the removal).
fn refresh_phase(r: &mut Reporter, tag: u64) -> Result<Vec<Batch>, String> {
    let bind2 = NodeMask::single(N2);
    let (read, set, refreshed, fresh, reset) = on_cpu0("refresh", move || {
        let read = hotslab::thread_placement();
        let set = set_mempolicy(MPOL_BIND, Some(&bind2));
        hotslab::refresh_mempolicy();
        let refreshed = hotslab::thread_placement();
        let fresh = Batch::alloc(tag);
        let reset = set_mempolicy(MPOL_DEFAULT, None);
        hotslab::refresh_mempolicy();
        (read, set, refreshed, fresh, reset)
    })?;
    r.check(
        &format!("{WHO}.refresh.policy"),
        read.mode == PolicyMode::Default
            && set.is_ok()
            && reset.is_ok()
            && refreshed.mode == PolicyMode::Bind
            && refreshed.nodes == bind2,
        format!(
            "read once: {:?}; set_mempolicy(MPOL_BIND, 2) {set:?}; after refresh_mempolicy(): {:?} {}",
            read.mode, refreshed.mode, refreshed.nodes
        ),
    );
    for (part, large) in [("slab", false), ("large", true)] {
        let pl = fresh.placement(Some(large));
        r.check(
            &format!("{WHO}.refresh.node2.{part}"),
            fresh.failed == 0 && pl.pct_on(N2) >= PLACEMENT_MIN_PCT && pl.errors == 0,
            format!(
                "{}; pages n0/n1/n2 by size {}",
                pct_detail(&pl, N2),
                by_size(std::slice::from_ref(&fresh))
            ),
        );
    }
    let (warm, after) = on_cpu0("refresh-warm", move || {
        let warm = Batch::alloc(tag + 1);
        let _ = set_mempolicy(MPOL_BIND, Some(&bind2));
        hotslab::refresh_mempolicy();
        let after = Batch::alloc(tag + 2);
        let _ = set_mempolicy(MPOL_DEFAULT, None);
        hotslab::refresh_mempolicy();
        (warm, after)
    })?;
    let pl = warm.placement(None);
    r.check(
        &format!("{WHO}.refresh.before_local"),
        warm.failed == 0 && pl.pct_on(N0) >= PLACEMENT_MIN_PCT && pl.errors == 0,
        format!("default policy on CPU 0: {}", pct_detail(&pl, N0)),
    );
    let pl = after.placement(Some(false));
    r.value(
        &format!("{WHO}.refresh.warm_heap_slab"),
        format!(
            "{}; pages n0/n1/n2 by size {}",
            pct_detail(&pl, N2),
            by_size(std::slice::from_ref(&after))
        ),
    );
    Ok(vec![fresh, warm, after])
}

// ---- the default domain's view ---------------------------------------------------------------

fn domain_has_memory(nid: NodeId) -> Option<bool> {
    hotslab::default_domain().map(|d| d.hotplug().snapshot().has_memory.test(nid))
}

/// Waits until the default domain's node states have (or lack) memory on node 2.
fn wait_domain(has: bool) -> (bool, Duration, String) {
    let t = Instant::now();
    loop {
        let now = domain_has_memory(N2);
        if now == Some(has) {
            return (true, t.elapsed(), describe_domain());
        }
        if t.elapsed() > FOLLOW_WAIT {
            return (false, t.elapsed(), describe_domain());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn describe_domain() -> String {
    match hotslab::default_domain() {
        Some(d) => {
            let s = d.hotplug().snapshot();
            format!(
                "domain nodes={} possible={} has_memory={}",
                d.topology().nodes(),
                s.possible,
                s.has_memory
            )
        }
        None => "no default domain".into(),
    }
}

/// The default domain's own topology: node 2 comes after both DRAM nodes in their fallback orders
/// (where slabs go when the wanted node has none left). Its view of node 2's HMAT figures and
/// tier is reported as a value: the domain reads its topology once, when it is built.
fn domain_order(r: &mut Reporter) {
    let Some(d) = hotslab::default_domain() else {
        r.check(
            &format!("{WHO}.fallback_after_dram"),
            false,
            "no default domain",
        );
        return;
    };
    let t = d.topology();
    let mut ok = true;
    let mut detail = Vec::new();
    for from in [N0, N1] {
        let mut order = [NodeId::new(0); 8];
        let n = t.fallback_order(from, &mut order);
        let order = &order[..n];
        ok &= n == 3 && order[0] == from && order[2] == N2;
        detail.push(format!(
            "from {from}: {:?}",
            order.iter().map(|x| x.0).collect::<Vec<_>>()
        ));
    }
    r.check(
        &format!("{WHO}.fallback_after_dram"),
        ok,
        format!(
            "default domain: {}; tiers {:?}",
            detail.join(", "),
            [N0, N1, N2].map(|n| t.tier(n))
        ),
    );
    r.value(
        &format!("{WHO}.domain_node2"),
        format!(
            "hmat={:?} tier={:?} distance_from_0={}",
            t.hmat(N2),
            t.tier(N2),
            t.distance(N0, N2)
        ),
    );
}

// ---- the run ---------------------------------------------------------------------------------

fn pct_detail(p: &Placement, nid: NodeId) -> String {
    format!("{:.2} % on node {nid}: {}", p.pct_on(nid), p.describe())
}

/// `<prefix>.<policy>.alloc` and the placement checks of one policy's batches: `membind` and
/// `preferred` need >= 99 % of the slab and of the large pages on node 2, `interleave` >= 25 % on
/// each of nodes 0 and 1 and none on node 2.
fn placement_checks(r: &mut Reporter, prefix: &str, p: &Policy, batches: &[Batch]) {
    let (n, want) = batches
        .iter()
        .fold((0, 0), |(n, w), b| (n + b.objs.len(), w + b.wanted));
    r.check(
        &format!("{prefix}.{}.alloc", p.name),
        n == want,
        format!("{n}/{want} objects"),
    );
    for (part, large) in [("slab", false), ("large", true)] {
        let pl = merged(batches, Some(large));
        if p.mode == MPOL_INTERLEAVE {
            let ok = pl.pct_on(N0) >= INTERLEAVE_MIN_PCT
                && pl.pct_on(N1) >= INTERLEAVE_MIN_PCT
                && pl.on(N2) == 0
                && pl.errors == 0;
            r.check(
                &format!("{prefix}.interleave.spread.{part}"),
                ok,
                format!(
                    "{:.1} % on node 0, {:.1} % on node 1 (each >= {INTERLEAVE_MIN_PCT} %): {}; \
                     pages n0/n1/n2 by size {}",
                    pl.pct_on(N0),
                    pl.pct_on(N1),
                    pl.describe(),
                    by_size(batches)
                ),
            );
        } else {
            r.check(
                &format!("{prefix}.{}.node2.{part}", p.name),
                pl.pct_on(N2) >= PLACEMENT_MIN_PCT && pl.errors == 0,
                pct_detail(&pl, N2),
            );
        }
    }
}

/// `hotslab-guest-alloc --oneshot <policy>`: the whole process was started under `numactl` with
/// that policy and CPU 0 (after the add); the main thread and `WORKERS` threads allocate one batch
/// each, checked as `SlabAlloc.numactl.<policy>.*`, then everything is freed.
fn oneshot(r: &mut Reporter, name: &str) -> Result<(), String> {
    let p = POLICIES
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| format!("no policy {name:?}"))?;
    let prefix = format!("{WHO}.numactl");
    let mut mode = -1;
    let mut nodes = NodeMask::new();
    let got = get_mempolicy(&mut mode, Some(&mut nodes), std::ptr::null(), 0);
    let cpu0 = only_cpu0();
    let mut batches = vec![Batch::alloc(300)];
    let hs: Vec<_> = (0..WORKERS as u64)
        .map(|w| std::thread::spawn(move || Batch::alloc(302 + 2 * w)))
        .collect();
    for h in hs {
        batches.push(h.join().map_err(|_| "a worker panicked".to_string())?);
    }
    r.check(
        &format!("{prefix}.{}.policy", p.name),
        got.is_ok() && mode == p.mode && nodes == p.nodes && cpu0,
        format!(
            "process under mode {mode} nodes {nodes} ({got:?}), CPU 0 only: {cpu0}; expected mode {} nodes {}",
            p.mode, p.nodes
        ),
    );
    placement_checks(r, &prefix, p, &batches);
    for mut b in batches {
        b.free();
    }
    Ok(())
}

fn run(r: &mut Reporter) -> Result<(), String> {
    let mut input = BufReader::new(std::io::stdin());
    let kernel = sysfs_nodes("has_memory").unwrap_or_default();
    let pre = Batch::alloc(1);
    r.check(
        &format!("{WHO}.before_add"),
        !kernel.test(N2) && hotslab::default_domain().is_some() && pre.failed == 0,
        format!(
            "kernel has_memory={kernel}, {}/{} objects, {}",
            pre.objs.len(),
            pre.wanted,
            describe_domain()
        ),
    );
    stage(WHO, "started");

    match next_command(&mut input).as_deref() {
        Some("added") => {}
        other => return Err(format!("expected `added`, got {other:?}")),
    }
    let (ok, took, detail) = wait_domain(true);
    r.check(
        &format!("{WHO}.follows_add"),
        ok,
        format!(
            "default domain saw node 2 gain memory after {} ms: {detail}",
            took.as_millis()
        ),
    );
    stage(WHO, "followed");
    domain_order(r);

    let mut groups = Vec::new();
    for (k, p) in POLICIES.iter().enumerate() {
        let ws = spawn_workers(*p, 100 + 10 * k as u64)?;
        let got = collect(&ws).ok_or_else(|| format!("{} workers did not report", p.name))?;
        let policy_ok = got
            .iter()
            .all(|(s, _)| s.mode == p.mode && s.nodes == p.nodes && s.only_cpu0);
        r.check(
            &format!("{WHO}.{}.policy", p.name),
            policy_ok,
            format!(
                "{} threads on CPU 0 under mode {} nodes {}: saw {:?}",
                ws.len(),
                p.mode,
                p.nodes,
                got.iter()
                    .map(|(s, _)| (s.mode, s.nodes.to_string(), s.only_cpu0))
                    .collect::<Vec<_>>()
            ),
        );
        let batches: Vec<Batch> = got.into_iter().map(|(_, b)| b).collect();
        placement_checks(r, WHO, p, &batches);
        groups.push((*p, ws, batches));
    }
    let refreshed = refresh_phase(r, 200)?;
    stage(WHO, "armed");

    match next_command(&mut input).as_deref() {
        Some("removed") => {}
        other => return Err(format!("expected `removed`, got {other:?}")),
    }
    let (ok, took, detail) = wait_domain(false);
    r.check(
        &format!("{WHO}.follows_removal"),
        ok,
        format!(
            "default domain saw node 2 lose its memory after {} ms: {detail}",
            took.as_millis()
        ),
    );
    // Every object allocated before the removal kept its data, and none is left on node 2.
    let all: Vec<&Batch> = std::iter::once(&pre)
        .chain(groups.iter().flat_map(|(_, _, bs)| bs.iter()))
        .chain(refreshed.iter())
        .collect();
    let (intact, total) = all
        .iter()
        .fold((0, 0), |(i, t), b| (i + b.intact(), t + b.objs.len()));
    r.check(
        &format!("{WHO}.removal.intact"),
        intact == total && total > 0,
        format!(
            "{intact}/{total} objects intact (pre-add, membind, preferred, interleave, refresh)"
        ),
    );
    let pl = merged(all.iter().copied(), None);
    r.check(
        &format!("{WHO}.removal.off_node2"),
        pl.on(N2) == 0 && pl.errors == 0 && pl.present() > 0,
        pl.describe(),
    );
    // The same threads allocate again, still under their policies: the allocations fall back.
    let mut after = Vec::new();
    for (p, ws, _) in &groups {
        for w in ws {
            let _ = w.go.send(());
        }
        let got = collect(ws).ok_or_else(|| format!("{} workers did not report", p.name))?;
        let now: Vec<String> = got
            .iter()
            .map(|(s, _)| format!("mode {} nodes {}", s.mode, s.nodes))
            .collect();
        let bs: Vec<Batch> = got.into_iter().map(|(_, b)| b).collect();
        let (n, want, ok) = bs.iter().fold((0, 0, 0), |(n, w, i), b| {
            (n + b.objs.len(), w + b.wanted, i + b.intact())
        });
        let pl = merged(&bs, None);
        r.check(
            &format!("{WHO}.removal.fallback.{}", p.name),
            n == want && ok == n && pl.on(N2) == 0 && pl.errors == 0 && pl.present() > 0,
            format!(
                "{n}/{want} objects, {ok} intact, {}; thread policies now {now:?}",
                pl.describe()
            ),
        );
        after.extend(bs);
    }
    let main_batch = Batch::alloc(2);
    let pl = main_batch.placement(None);
    r.check(
        &format!("{WHO}.removal.fallback.default"),
        main_batch.failed == 0
            && main_batch.intact() == main_batch.objs.len()
            && pl.on(N2) == 0
            && pl.errors == 0,
        format!(
            "{}/{} objects, {}",
            main_batch.objs.len(),
            main_batch.wanted,
            pl.describe()
        ),
    );
    let mut rest = vec![pre, main_batch];
    rest.extend(after);
    rest.extend(refreshed);
    for (_, ws, bs) in groups {
        for w in ws {
            let _ = w.handle.join();
        }
        rest.extend(bs);
    }
    let mut freed = 0;
    for mut b in rest {
        freed += b.objs.len();
        b.free();
    }
    r.value(&format!("{WHO}.freed"), freed);
    Ok(())
}

fn main() {
    let mut r = Reporter::default();
    let args: Vec<String> = std::env::args().collect();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match args.get(1).map(String::as_str) {
            Some("--oneshot") => oneshot(&mut r, args.get(2).map_or("", String::as_str)),
            _ => run(&mut r),
        }
    }));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            r.check(&format!("{WHO}.harness"), false, e);
        }
        Err(_) => {
            r.check(&format!("{WHO}.no_panic"), false, "the program panicked");
        }
    }
    r.value(
        &format!("{WHO}.checks"),
        format!("{} ({} failed)", r.checks, r.failed),
    );
    stage(WHO, "done");
}
