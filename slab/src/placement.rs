//! Where the calling thread's new slabs go: its memory policy (`get_mempolicy`) and its cpuset's
//! `mems_allowed`, read once per thread (and again when the thread calls [`refresh_mempolicy`],
//! when the process's cpuset changes, or after an `mbind` was refused), never per allocation.
//! Owns the per-thread decoded policy (one small, const-initialised, drop-free thread-local) and
//! the node-order decision the slow paths use ([`alloc_order`]); allocates nothing.
//!
//! | task policy | new slabs come from |
//! |---|---|
//! | default, local | the CPU's node (or the nearest allowed node with memory) |
//! | preferred, preferred-many | the policy's nodes (nearest first, tier-first order), then the other allowed nodes |
//! | bind | the policy's nodes only (nearest first); the other allowed nodes once the kernel refuses them all (they lost their memory) |
//! | interleave | the policy's nodes in turn, one slab each, in turn per cache (whichever thread makes the slab; other callers: per thread, starting where the thread id points) |
//! | weighted interleave | the policy's nodes in turn, `weight` slabs each (`/sys/kernel/mm/mempolicy/weighted_interleave/nodeN`) |
//!
//! The weights are read once per process (again after a [`refresh_mempolicy`]).
//! A node outside `mems_allowed` is never chosen (`mbind` there fails with `EINVAL`). Only a domain
//! that asked for it ([`SlabDomain::set_task_placement`]; the process-wide default domain does) is
//! placed this way; the others keep the CPU's node and the distance order. Policy node ids are
//! kept for nodes 0..128 (the most a topology describes); a policy naming only higher ids acts as
//! the default policy.

use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use hotslab_numa::{MemPolicy, NodeId, NodeMask, PolicyMode, MAX_TOPOLOGY_NODES};

use crate::domain::SlabDomain;

/// Bumped to make every thread read its policy and cpuset again (the cpuset's `mems` changed).
static GENERATION: AtomicU32 = AtomicU32::new(1);

/// Interleave weights by real node id (0: not read yet, read as 1 if the kernel has none).
static WEIGHTS: [AtomicU8; MAX_TOPOLOGY_NODES] = [const { AtomicU8::new(0) }; MAX_TOPOLOGY_NODES];

/// The decoded policy of one thread (real node ids 0..128 as two words).
#[derive(Clone, Copy)]
struct State {
    /// [`GENERATION`] when read; 0: not read yet (or stale).
    generation: u32,
    /// Set by [`set_thread_mempolicy`]: kept until [`refresh_mempolicy`], whatever changes; its
    /// node ids are the domain's own (virtual nodes of a simulated topology included).
    pinned: bool,
    /// The policy mode (`PolicyMode::raw`).
    mode: u8,
    /// The policy's nodes within `mems_allowed` (real ids).
    nodes: [u64; 2],
    /// `mems_allowed` (real ids); all zero: not known, no filter.
    allowed: [u64; 2],
    /// Interleave: the real node of the last slab, and how many more it gets (weighted).
    last: u16,
    left: u16,
}

const UNREAD: State = State {
    generation: 0,
    pinned: false,
    mode: 0,
    nodes: [0; 2],
    allowed: [0; 2],
    last: u16::MAX,
    left: 0,
};

#[cfg(not(loom))]
std::thread_local! {
    // const-initialised and drop-free: no lazy registration, no allocation.
    static STATE: core::cell::Cell<State> = const { core::cell::Cell::new(UNREAD) };
}

#[cfg(not(loom))]
std::thread_local! {
    // Set when an `mbind` of this thread was refused since its last order was computed.
    static REFUSED: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

#[cfg(not(loom))]
fn set_refused(v: bool) -> bool {
    REFUSED.try_with(|r| r.replace(v)).unwrap_or(false)
}

#[cfg(loom)]
fn set_refused(_: bool) -> bool {
    false
}

#[cfg(not(loom))]
fn load() -> State {
    STATE.try_with(|s| s.get()).unwrap_or(UNREAD)
}

#[cfg(not(loom))]
fn store(st: State) {
    let _ = STATE.try_with(|s| s.set(st));
}

// Loom models build domains without task placement: one state nobody keeps.
#[cfg(loom)]
fn load() -> State {
    UNREAD
}

#[cfg(loom)]
fn store(_: State) {}

fn words(m: &NodeMask) -> [u64; 2] {
    let w = m.as_words();
    [w[0], w[1]]
}

fn mask(w: [u64; 2]) -> NodeMask {
    let mut all = [0u64; hotslab_numa::MAX_NODES / 64];
    all[0] = w[0];
    all[1] = w[1];
    NodeMask::from_words(all)
}

/// Reads the calling thread's policy and cpuset now (two `get_mempolicy` calls; none under
/// Miri, which has no such system call: the default policy, no cpuset filter).
fn read_now() -> State {
    if cfg!(miri) {
        return from_policy(&MemPolicy::DEFAULT, &NodeMask::new());
    }
    let allowed = if let Some(file) = crate::knobs::mems_file() {
        // A fake sysfs tree with a fake cpuset (tests).
        hotslab_numa::sysfs::read_status_mems_allowed_at(file).unwrap_or_default()
    } else if crate::knobs::sysfs_root().is_some() {
        // A fake sysfs tree (tests): its nodes are not this host's; no cpuset filter.
        NodeMask::new()
    } else {
        hotslab_numa::policy::mems_allowed().unwrap_or_default()
    };
    let policy = MemPolicy::current().unwrap_or(MemPolicy::DEFAULT);
    from_policy(&policy, &allowed)
}

fn from_policy(policy: &MemPolicy, allowed: &NodeMask) -> State {
    let nodes = policy.effective_nodes(allowed);
    State {
        generation: GENERATION.load(Ordering::Acquire),
        pinned: false,
        mode: policy.mode.raw() as u8,
        nodes: words(&nodes),
        allowed: words(allowed),
        last: u16::MAX,
        left: 0,
    }
}

/// The thread's state, read if it is stale.
fn current() -> State {
    let st = load();
    if st.pinned || (st.generation != 0 && st.generation == GENERATION.load(Ordering::Acquire)) {
        return st;
    }
    let st = read_now();
    store(st);
    st
}

/// Reads the calling thread's memory policy (`get_mempolicy`) and its cpuset's `mems_allowed`
/// again, for the slabs the process-wide default domain gives it from now on (call it after
/// `set_mempolicy` or `numa_set_membind`). hotslab reads both once per thread, and again for
/// every thread when the follower sees the process's cpuset change; slabs already handed out
/// stay where they are. Also ends a [`set_thread_mempolicy`] override.
pub fn refresh_mempolicy() {
    forget_interleave_weights();
    store(read_now());
}

/// The calling thread's memory policy and cpuset as hotslab uses them for its slabs (read now if
/// they have not been read yet): what `get_mempolicy` reported when last read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ThreadPlacement {
    /// The policy mode.
    pub mode: PolicyMode,
    /// The policy's nodes within `mems_allowed` (empty for the default and local policies).
    pub nodes: NodeMask,
    /// The cpuset's nodes (empty: not known, no filter).
    pub mems_allowed: NodeMask,
    /// Whether this is a [`set_thread_mempolicy`] override (node ids of the domain's topology).
    pub overridden: bool,
}

/// See [`ThreadPlacement`].
pub fn thread_placement() -> ThreadPlacement {
    let st = current();
    ThreadPlacement {
        mode: PolicyMode::from_raw(i32::from(st.mode)).unwrap_or(PolicyMode::Default),
        nodes: mask(st.nodes),
        mems_allowed: mask(st.allowed),
        overridden: st.pinned,
    }
}

/// Places the calling thread's new slabs as if its memory policy were `policy` within the
/// cpuset nodes `mems_allowed` (`None`: no cpuset filter), until [`refresh_mempolicy`]: for
/// tests of placement on topologies this machine does not have. Unlike a real policy, whose
/// ids are physical nodes, the ids here are the domain topology's own: on a simulated topology
/// they name virtual nodes.
#[doc(hidden)]
pub fn set_thread_mempolicy(policy: MemPolicy, mems_allowed: Option<NodeMask>) {
    let allowed = mems_allowed.unwrap_or_default();
    let mut st = from_policy(&policy, &allowed);
    st.generation = 1;
    st.pinned = true;
    store(st);
}

/// Every thread reads its policy and cpuset again before its next slab (the process's cpuset
/// changed).
#[cfg_attr(any(miri, loom), allow(dead_code))] // called by the follower thread only
pub(crate) fn invalidate_all() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
    if GENERATION.load(Ordering::Relaxed) == 0 {
        GENERATION.store(1, Ordering::Relaxed);
    }
}

/// An `mbind` for the calling thread was refused (`EINVAL`: the node is gone or outside the
/// cpuset): read the cpuset again before the next slab.
pub(crate) fn bind_refused() {
    set_refused(true);
    let mut st = load();
    if !st.pinned {
        st.generation = 0;
        store(st);
    }
}

/// A node of the calling thread's order takes no new slabs (its part drains: the node is going
/// offline): [`order_after_refusal`] gives the default policy's order if nothing else served.
pub(crate) fn part_refused() {
    set_refused(true);
}

/// Whether the calling thread may place memory on `nid` of domain `d` (its real node is in the
/// cpuset's `mems_allowed`, or that is unknown). Always true for a domain without task placement.
pub(crate) fn node_allowed(d: &SlabDomain, nid: NodeId) -> bool {
    if !d.task_placement() {
        return true;
    }
    let st = current();
    let allowed = mask(st.allowed);
    allowed.is_empty() || allowed.test(id_of(d, &st, nid))
}

/// The id a thread's policy uses for node `v` of `d`: the physical node, or `v` itself for a
/// [`set_thread_mempolicy`] override.
fn id_of(d: &SlabDomain, st: &State, v: NodeId) -> NodeId {
    if st.pinned {
        v
    } else {
        d.topology().real_node(v)
    }
}

/// The interleave weight of real node `real` (1 where the kernel has no weights).
fn weight(real: NodeId) -> u16 {
    let i = real.index();
    if i >= MAX_TOPOLOGY_NODES {
        return 1;
    }
    let w = WEIGHTS[i].load(Ordering::Relaxed);
    if w != 0 {
        return w as u16;
    }
    let w = read_weight(real).unwrap_or(1).clamp(1, 255);
    WEIGHTS[i].store(w, Ordering::Relaxed);
    w as u16
}

/// `/sys/kernel/mm/mempolicy/weighted_interleave/node<N>` (Linux 6.9+), read without allocating.
fn read_weight(real: NodeId) -> Option<u8> {
    const DIR: &[u8] = b"/sys/kernel/mm/mempolicy/weighted_interleave/node";
    let mut path = [0u8; 64];
    path[..DIR.len()].copy_from_slice(DIR);
    let mut n = DIR.len();
    let mut digits = [0u8; 5];
    let mut k = 0;
    let mut v = real.index();
    loop {
        digits[k] = b'0' + (v % 10) as u8;
        k += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    while k > 0 {
        k -= 1;
        path[n] = digits[k];
        n += 1;
    }
    // SAFETY: `path` is NUL-terminated (zero-filled beyond `n`); open allocates nothing.
    let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 8];
    // SAFETY: reads at most 8 bytes into our buffer from our descriptor, then closes it.
    let got = unsafe {
        let r = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        r
    };
    if got <= 0 {
        return None;
    }
    let mut w = 0u32;
    for &b in &buf[..got as usize] {
        match b {
            b'0'..=b'9' => w = w * 10 + u32::from(b - b'0'),
            _ => break,
        }
    }
    u8::try_from(w).ok().filter(|&w| w > 0)
}

/// Forgets the interleave weights read so far: they are read again from sysfs when next needed
/// ([`refresh_mempolicy`] does this, so a thread that changed them sees the new ones).
#[doc(hidden)]
pub fn forget_interleave_weights() {
    for w in &WEIGHTS {
        w.store(0, Ordering::Relaxed);
    }
}

/// Sets the interleave weight of real node `real` as if the kernel reported it (tests).
#[doc(hidden)]
pub fn set_interleave_weight(real: NodeId, w: u8) {
    if let Some(slot) = WEIGHTS.get(real.index()) {
        slot.store(w.max(1), Ordering::Relaxed);
    }
}

/// The order in which domain `d` tries nodes for the calling thread's next slab: `want` (an
/// explicit node: `alloc_node`, `kmalloc_node`) and then its fallback order, or, without one,
/// the nodes the thread's policy names (see the module table). Nodes outside the thread's cpuset
/// are left out; nodes without memory stay in (their caches have no part and are skipped).
/// Writes at most `out.len()` nodes, returns how many (at least one for a non-empty `out`).
pub(crate) fn alloc_order(
    d: &SlabDomain,
    want: Option<NodeId>,
    out: &mut [NodeId],
    cursor: Option<&std::sync::atomic::AtomicUsize>,
) -> usize {
    set_refused(false);
    order(d, want, out, cursor, false)
}

/// For a caller that found no memory on any node of its [`alloc_order`]: if an `mbind` was
/// refused on the way (`EINVAL`: a node the domain still counts as having memory has just lost
/// it, or left the cpuset, and neither the domain nor the kernel's rebinding of the thread's
/// policy has caught up) or a node's part was draining (the node is going offline), the order the default policy gives, which the caller tries next: the
/// kernel too allocates anywhere allowed once a bind set has no memory left. 0 if nothing was
/// refused (a plain `ENOMEM` under a bind policy stays a failure) or `want` named a node (its
/// order falls back already).
pub(crate) fn order_after_refusal(
    d: &SlabDomain,
    want: Option<NodeId>,
    out: &mut [NodeId],
) -> usize {
    if !set_refused(false) || want.is_some() || !d.task_placement() {
        return 0;
    }
    order(d, None, out, None, true)
}

fn order(
    d: &SlabDomain,
    want: Option<NodeId>,
    out: &mut [NodeId],
    cursor: Option<&std::sync::atomic::AtomicUsize>,
    ignore_policy: bool,
) -> usize {
    let topo = d.topology();
    if !d.task_placement() {
        let start = want.unwrap_or_else(|| topo.current_node());
        return d.fallback(start, out);
    }
    let mut st = current();
    let allowed_real = mask(st.allowed);
    let snap = st;
    let allowed = |v: NodeId| allowed_real.is_empty() || allowed_real.test(id_of(d, &snap, v));
    let local = topo.current_node();
    let mut all = [NodeId::new(0); MAX_TOPOLOGY_NODES];
    let n = topo.fallback_order(want.unwrap_or(local), &mut all);
    let all = &all[..n];
    let mut k = 0;
    let mut push = |v: NodeId, out: &mut [NodeId]| {
        if k < out.len() && !out[..k].contains(&v) {
            out[k] = v;
            k += 1;
        }
    };
    let mode = PolicyMode::from_raw(i32::from(st.mode)).unwrap_or(PolicyMode::Default);
    // The policy's nodes as the topology's nodes with memory now.
    let real_set = mask(st.nodes);
    let in_set = |v: NodeId| real_set.test(id_of(d, &snap, v)) && allowed(v);
    let set_live = all.iter().any(|&v| in_set(v) && d.node_allocatable(v));
    let policy_applies = !ignore_policy
        && want.is_none()
        && set_live
        && !matches!(mode, PolicyMode::Default | PolicyMode::Local);
    if policy_applies {
        match mode {
            PolicyMode::Interleave | PolicyMode::WeightedInterleave => {
                let pick = next_interleave(d, &mut st, all, &in_set, mode, cursor);
                store(st);
                push(pick, out);
                let mut from = [NodeId::new(0); MAX_TOPOLOGY_NODES];
                let m = topo.fallback_order(pick, &mut from);
                for &v in &from[..m] {
                    if in_set(v) {
                        push(v, out);
                    }
                }
                for &v in &from[..m] {
                    if allowed(v) {
                        push(v, out);
                    }
                }
            }
            PolicyMode::Bind => {
                for &v in all {
                    if in_set(v) {
                        push(v, out);
                    }
                }
            }
            _ => {
                // Preferred, preferred-many: the set first, then everything allowed.
                for &v in all {
                    if in_set(v) {
                        push(v, out);
                    }
                }
                for &v in all {
                    if allowed(v) {
                        push(v, out);
                    }
                }
            }
        }
    } else {
        for &v in all {
            if allowed(v) {
                push(v, out);
            }
        }
    }
    if k == 0 && !out.is_empty() {
        // Nothing allowed at all (a cpuset this topology does not describe): the plain order.
        return d.fallback(want.unwrap_or(local), out);
    }
    k
}

/// The next interleave node after the thread's last one (weighted: after `weight` slabs there).
fn next_interleave(
    d: &SlabDomain,
    st: &mut State,
    all: &[NodeId],
    in_set: &dyn Fn(NodeId) -> bool,
    mode: PolicyMode,
    cursor: Option<&std::sync::atomic::AtomicUsize>,
) -> NodeId {
    let live = |v: NodeId| in_set(v) && d.node_allocatable(v);
    if st.last != u16::MAX && st.left > 0 && live(NodeId::new(st.last)) {
        st.left -= 1;
        return NodeId::new(st.last);
    }
    // Round robin in id order: the first live set node above the last one, else the lowest.
    let mut ids = [NodeId::new(0); MAX_TOPOLOGY_NODES];
    let mut m = 0;
    for &v in all {
        if live(v) {
            ids[m] = v;
            m += 1;
        }
    }
    let ids = &mut ids[..m];
    ids.sort_unstable();
    if let (PolicyMode::Interleave, Some(c)) = (mode, cursor) {
        // A cache's own cursor: its slabs take the nodes in turn whichever thread makes them,
        // so a class with one slab per thread still spreads over the nodes across threads.
        let pick = ids[c.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % ids.len()];
        st.last = pick.0;
        st.left = 0;
        return pick;
    }
    let pick = if st.last == u16::MAX {
        // A thread's first interleaved slab: the thread id picks the start, so threads created
        // one after another start on successive nodes and size classes that get a single slab
        // per thread still spread over the nodes across threads (with every thread starting at
        // the lowest node, those all landed on one node; a process-wide counter was no better:
        // hotslab's own threads under the same policy took turns from it too).
        ids[crate::global::gettid() % ids.len()]
    } else {
        ids.iter()
            .copied()
            .find(|v| v.0 > st.last)
            .unwrap_or(ids[0])
    };
    let w = match mode {
        PolicyMode::WeightedInterleave => weight(id_of(d, st, pick)),
        _ => 1,
    };
    st.last = pick.0;
    st.left = w - 1;
    pick
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;
    use hotslab_numa::policy::{set_mempolicy, MPOL_DEFAULT, MPOL_INTERLEAVE};

    #[test]
    fn a_stale_thread_reads_its_policy_again() {
        std::thread::spawn(|| {
            let mem =
                hotslab_numa::sysfs::read_node_mask(hotslab_numa::NodeState::HasMemory).unwrap();
            let first = NodeMask::single(mem.first().unwrap());
            assert_eq!(thread_placement().mode, PolicyMode::Default);
            set_mempolicy(MPOL_INTERLEAVE, Some(&first)).unwrap();
            assert_eq!(thread_placement().mode, PolicyMode::Default, "read once");
            // The follower saw the cpuset change: every thread reads again.
            invalidate_all();
            assert_eq!(thread_placement().mode, PolicyMode::Interleave);
            set_mempolicy(MPOL_DEFAULT, None).unwrap();
            assert_eq!(thread_placement().mode, PolicyMode::Interleave);
            // An mbind was refused: this thread reads again.
            bind_refused();
            assert_eq!(thread_placement().mode, PolicyMode::Default);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn weights_are_parsed_from_the_sysfs_value() {
        // No weighted-interleave directory before Linux 6.9: weight 1.
        forget_interleave_weights();
        let w = weight(NodeId::new(0));
        assert!(w >= 1);
        set_interleave_weight(NodeId::new(1), 5);
        assert_eq!(weight(NodeId::new(1)), 5);
        forget_interleave_weights();
    }
}
