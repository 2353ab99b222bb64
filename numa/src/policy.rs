//! Thin `libc::syscall` wrappers for the kernel's NUMA memory-policy calls (`mbind`,
//! `set_mempolicy`, `get_mempolicy`, `move_pages`) and their constants, plus the decoded task
//! policy ([`MemPolicy`]), the cpuset's nodes ([`mems_allowed`]) and the pure decision of where
//! slabs should go under them ([`placement_nodes`]). No libnuma (it allocates during init) and no
//! allocation here.
//!
//! A VMA policy set with `mbind` overrides the task policy a user sets with `numactl`, so an
//! allocator that binds its chunks must first ask what the task policy wants:
//!
//! ```
//! use hotslab_numa::policy::{mems_allowed, MemPolicy, MPOL_BIND};
//! use hotslab_numa::{placement_nodes_from, NodeId, NodeMask, PlacementKind, PolicyMode, Topology};
//!
//! // Decoding raw get_mempolicy results: `numactl --membind=1,2` on a 4-node machine.
//! let mut nodes = NodeMask::new();
//! nodes.set(NodeId(1));
//! nodes.set(NodeId(2));
//! let p = MemPolicy::decode(MPOL_BIND, nodes)?;
//! assert_eq!(p.mode, PolicyMode::Bind);
//! let cpus: &[usize] = &[];
//! let parts: Vec<_> = (0..4).map(|i| (NodeId(i), cpus, 1 << 30)).collect();
//! let topo = Topology::from_parts(&parts, |a, b| if a == b { 10 } else { 20 })?;
//! // The cpuset allows nodes 0-1 only: slabs go to node 1.
//! let (kind, set) = placement_nodes_from(&p, &NodeMask::range(0, 2), &topo, NodeId(0));
//! assert_eq!((kind, set.to_string().as_str()), (PlacementKind::Bind, "1"));
//!
//! // The calling thread's real policy (MPOL_DEFAULT unless run under numactl).
//! # #[cfg(not(miri))] {
//! let now = MemPolicy::current()?;
//! let allowed = mems_allowed()?;
//! println!("{now:?} within {allowed}");
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::ffi::c_void;
use core::fmt;

use crate::node::{NodeId, NodeMask, MAX_NODES};
use crate::topology::{Topology, MAX_TOPOLOGY_NODES};

/// Default policy: allocate on the node of the CPU that faults the page.
pub const MPOL_DEFAULT: i32 = 0;
/// Prefer the given node, fall back to others when it is full (or gone).
pub const MPOL_PREFERRED: i32 = 1;
/// Allocate strictly from the given nodes.
pub const MPOL_BIND: i32 = 2;
/// Interleave pages over the given nodes.
pub const MPOL_INTERLEAVE: i32 = 3;
/// Allocate on the local node (Linux 3.8+).
pub const MPOL_LOCAL: i32 = 4;
/// Prefer any of several nodes (Linux 5.15+).
pub const MPOL_PREFERRED_MANY: i32 = 5;
/// Interleave pages over the given nodes in proportion to per-node weights
/// (`/sys/kernel/mm/mempolicy/weighted_interleave/nodeN`; Linux 6.9+).
pub const MPOL_WEIGHTED_INTERLEAVE: i32 = 6;

/// Mode flag: the node set is absolute and not remapped when the cpuset's `mems` change; the
/// policy uses the set's intersection with the allowed nodes (Linux 2.6.26+).
pub const MPOL_F_STATIC_NODES: i32 = 1 << 15;
/// Mode flag: the node set is relative to the cpuset's allowed nodes (bit `i` means the `i`-th
/// allowed node, folded modulo their number) (Linux 2.6.26+).
pub const MPOL_F_RELATIVE_NODES: i32 = 1 << 14;
/// Mode flag: NUMA balancing may migrate pages of an `MPOL_BIND` (or, from 6.x,
/// `MPOL_PREFERRED_MANY`) policy towards the accessing CPU (Linux 5.18+).
pub const MPOL_F_NUMA_BALANCING: i32 = 1 << 13;
/// Every mode flag that `get_mempolicy` reports ORed into the mode.
pub const MPOL_MODE_FLAGS: i32 =
    MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING;

/// `get_mempolicy`: return the node id (of `addr` with `MPOL_F_ADDR`, else of the next interleave).
pub const MPOL_F_NODE: u32 = 1;
/// `get_mempolicy`: look up the policy governing `addr` instead of the thread's policy.
pub const MPOL_F_ADDR: u32 = 2;
/// `get_mempolicy`: return the set of nodes the thread may use.
pub const MPOL_F_MEMS_ALLOWED: u32 = 4;

/// `mbind`: fail with `EIO` if existing pages do not follow the policy.
pub const MPOL_MF_STRICT: u32 = 1;
/// `mbind`: migrate existing pages used only by this process.
pub const MPOL_MF_MOVE: u32 = 2;
/// `mbind`: migrate all existing pages (needs `CAP_SYS_NICE`).
pub const MPOL_MF_MOVE_ALL: u32 = 4;

/// `move_pages`: move only pages mapped by this process.
pub const MPOL_MF_MOVE_PAGES: i32 = MPOL_MF_MOVE as i32;

/// The `maxnode` argument matching a [`NodeMask`]: the kernel subtracts one from it (a historical
/// off-by-one that libnuma also compensates for), so a 1024-bit mask is passed as 1025.
const MAXNODE_ARG: libc::c_ulong = MAX_NODES as libc::c_ulong + 1;

/// An errno returned by a failed system call.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct Errno(pub i32);

impl Errno {
    /// The calling thread's current `errno`.
    pub fn last() -> Errno {
        Errno(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A fixed name table: io::Error's Display would build a String via strerror.
        let name = match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::EINTR => "EINTR",
            libc::EIO => "EIO",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::ENODEV => "ENODEV",
            libc::EINVAL => "EINVAL",
            libc::ERANGE => "ERANGE",
            libc::ENOSYS => "ENOSYS",
            _ => "error",
        };
        write!(f, "{name} (errno {})", self.0)
    }
}

impl std::error::Error for Errno {}

fn check(ret: libc::c_long) -> Result<libc::c_long, Errno> {
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

/// `mbind(2)`: set the memory policy of `[addr, addr + len)` to `mode` over `nodes`.
///
/// `addr` must be page aligned. `nodes = None` passes a null mask (valid for `MPOL_DEFAULT` and,
/// for `MPOL_PREFERRED`, meaning "local allocation"). Nodes without memory give `EINVAL`.
///
/// # Safety
/// `[addr, addr + len)` must be a mapping the caller owns: the kernel changes the placement (and
/// with `MPOL_MF_MOVE` migrates the pages) of whatever is mapped there.
pub unsafe fn mbind(
    addr: *mut c_void,
    len: usize,
    mode: i32,
    nodes: Option<&NodeMask>,
    flags: u32,
) -> Result<(), Errno> {
    let (mask, maxnode) = match nodes {
        Some(m) => (m.as_words().as_ptr(), MAXNODE_ARG),
        None => (core::ptr::null(), 0),
    };
    // SAFETY: the mask pointer is null or points at 16 readable u64 words (1024 bits, matching
    // maxnode - 1); the address range is the caller's responsibility (see # Safety).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            addr,
            len as libc::c_ulong,
            mode as libc::c_ulong,
            mask,
            maxnode,
            flags as libc::c_ulong,
        )
    };
    check(ret).map(|_| ())
}

/// `set_mempolicy(2)`: set the calling thread's default policy (`MPOL_DEFAULT`, `MPOL_BIND`,
/// `MPOL_PREFERRED`, `MPOL_INTERLEAVE`, ... over `nodes`; `None` passes no node set (a null mask,
/// as `MPOL_DEFAULT` wants). Affects only pages the thread faults in afterwards.
///
/// # Errors
/// The kernel's errno: `EINVAL` for a bad mode or a node set the mode does not accept (e.g. no
/// node of the set has memory, or an empty set with `MPOL_BIND`), `ENOMEM`; `ENOSYS` under Miri
/// or on a kernel without NUMA support.
pub fn set_mempolicy(mode: i32, nodes: Option<&NodeMask>) -> Result<(), Errno> {
    let (mask, maxnode) = match nodes {
        Some(m) => (m.as_words().as_ptr(), MAXNODE_ARG),
        None => (core::ptr::null(), 0),
    };
    // SAFETY: the mask pointer is null or points at 16 readable u64 words for the whole call;
    // the call only changes the calling thread's policy.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_set_mempolicy,
            mode as libc::c_ulong,
            mask,
            maxnode,
        )
    };
    check(ret).map(|_| ())
}

/// `get_mempolicy(2)`: query a policy. Writes the mode (or, with [`MPOL_F_NODE`], a node id) to
/// `mode` and the policy's nodes to `nodes`. `addr` is only used with [`MPOL_F_ADDR`]; with
/// `MPOL_F_NODE | MPOL_F_ADDR` the kernel faults the page in if needed and reports its node.
///
/// Safe for any `addr`: the kernel only looks the address up (EFAULT if unmapped); this code never
/// dereferences it.
#[allow(clippy::not_unsafe_ptr_arg_deref)] // `addr` is passed to the kernel, never dereferenced
pub fn get_mempolicy(
    mode: &mut i32,
    nodes: Option<&mut NodeMask>,
    addr: *const c_void,
    flags: u32,
) -> Result<(), Errno> {
    let mut words = [0u64; MAX_NODES / 64];
    let (mask, maxnode) = match nodes {
        Some(_) => (words.as_mut_ptr(), MAXNODE_ARG),
        None => (core::ptr::null_mut(), 0),
    };
    // SAFETY: `mode` is a valid i32 out-pointer; the mask is null or 16 writable u64 words on our
    // stack (the kernel writes at most ALIGN(maxnode - 1, 64) bits = 1024 bits); `addr` is only
    // looked up by the kernel, which validates it (EFAULT), never dereferenced by us.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            mode as *mut i32,
            mask,
            maxnode,
            addr,
            flags as libc::c_ulong,
        )
    };
    check(ret)?;
    if let Some(out) = nodes {
        *out = NodeMask::from_words(words);
    }
    Ok(())
}

/// The node holding the page at `addr` (faulting it in, as a read, if it is not present yet), via
/// `get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR)`.
pub fn node_of_address(addr: *const u8) -> Result<NodeId, Errno> {
    let mut node = -1;
    get_mempolicy(&mut node, None, addr.cast(), MPOL_F_NODE | MPOL_F_ADDR)?;
    u16::try_from(node)
        .map(NodeId)
        .map_err(|_| Errno(libc::ERANGE))
}

/// `move_pages(2)`. With `nodes = None` nothing moves: `status[i]` receives the node of page
/// `pages[i]`, or a negative errno (`-ENOENT` for a page not present, `-EFAULT` for an unmapped
/// address). With `nodes = Some(n)` (same length as `pages`) page `i` is migrated to `n[i]`.
/// `pid` 0 is the calling process. Returns the number of pages that could not be moved.
///
/// Returns `EINVAL` without a system call if `status` (or `nodes`) is shorter than `pages`.
pub fn move_pages(
    pid: i32,
    pages: &[*const c_void],
    nodes: Option<&[i32]>,
    status: &mut [i32],
    flags: i32,
) -> Result<usize, Errno> {
    if status.len() < pages.len() || nodes.is_some_and(|n| n.len() < pages.len()) {
        return Err(Errno(libc::EINVAL));
    }
    let nodes_ptr = nodes.map_or(core::ptr::null(), |n| n.as_ptr());
    // SAFETY: `pages` has `pages.len()` readable pointers, `nodes_ptr` is null or has at least as
    // many i32s, `status` has at least as many writable i32s; the kernel only validates the page
    // addresses (EFAULT per page) and never makes us dereference them. Moving pages preserves
    // their contents.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_pages,
            pid as libc::c_long,
            pages.len() as libc::c_ulong,
            pages.as_ptr(),
            nodes_ptr,
            status.as_mut_ptr(),
            flags as libc::c_long,
        )
    };
    check(ret).map(|n| n as usize)
}

// ---------------------------------------------------------------------------------------------
// Decoded policies and where slabs should go.

/// A memory-policy mode, as `get_mempolicy` reports it (without the mode flags).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum PolicyMode {
    /// [`MPOL_DEFAULT`]: no task policy; allocate on the faulting CPU's node.
    Default,
    /// [`MPOL_PREFERRED`]: one preferred node, falling back to others.
    Preferred,
    /// [`MPOL_BIND`]: only these nodes.
    Bind,
    /// [`MPOL_INTERLEAVE`]: page by page over these nodes.
    Interleave,
    /// [`MPOL_LOCAL`]: the local node (also what `MPOL_PREFERRED` with no node became).
    Local,
    /// [`MPOL_PREFERRED_MANY`]: any of these nodes preferred, falling back to others.
    PreferredMany,
    /// [`MPOL_WEIGHTED_INTERLEAVE`]: interleave in proportion to per-node weights.
    WeightedInterleave,
}

impl PolicyMode {
    /// The mode of a raw value (flags already removed); `None` for an unknown mode.
    pub const fn from_raw(mode: i32) -> Option<PolicyMode> {
        Some(match mode {
            MPOL_DEFAULT => PolicyMode::Default,
            MPOL_PREFERRED => PolicyMode::Preferred,
            MPOL_BIND => PolicyMode::Bind,
            MPOL_INTERLEAVE => PolicyMode::Interleave,
            MPOL_LOCAL => PolicyMode::Local,
            MPOL_PREFERRED_MANY => PolicyMode::PreferredMany,
            MPOL_WEIGHTED_INTERLEAVE => PolicyMode::WeightedInterleave,
            _ => return None,
        })
    }

    /// The raw `MPOL_*` value.
    pub const fn raw(self) -> i32 {
        match self {
            PolicyMode::Default => MPOL_DEFAULT,
            PolicyMode::Preferred => MPOL_PREFERRED,
            PolicyMode::Bind => MPOL_BIND,
            PolicyMode::Interleave => MPOL_INTERLEAVE,
            PolicyMode::Local => MPOL_LOCAL,
            PolicyMode::PreferredMany => MPOL_PREFERRED_MANY,
            PolicyMode::WeightedInterleave => MPOL_WEIGHTED_INTERLEAVE,
        }
    }
}

/// Why a policy could not be read or decoded.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum PolicyError {
    /// `get_mempolicy` failed (`ENOSYS` without NUMA support or under Miri).
    Sys(Errno),
    /// A mode this crate does not know (a newer kernel); the raw value without flags.
    UnknownMode(i32),
    /// Flag bits outside [`MPOL_MODE_FLAGS`].
    UnknownFlags(i32),
    /// Both [`MPOL_F_STATIC_NODES`] and [`MPOL_F_RELATIVE_NODES`] (the kernel refuses that).
    ConflictingFlags,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PolicyError::Sys(e) => write!(f, "get_mempolicy: {e}"),
            PolicyError::UnknownMode(m) => write!(f, "unknown memory policy mode {m}"),
            PolicyError::UnknownFlags(b) => write!(f, "unknown memory policy flags {b:#x}"),
            PolicyError::ConflictingFlags => {
                f.write_str("MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES together")
            }
        }
    }
}

impl std::error::Error for PolicyError {}

impl From<Errno> for PolicyError {
    fn from(e: Errno) -> Self {
        PolicyError::Sys(e)
    }
}

/// A task memory policy, decoded from `get_mempolicy(&mode, nodemask, .., NULL, 0)`: the mode,
/// its mode flags, and its node set (real node ids). With [`MPOL_F_STATIC_NODES`] or
/// [`MPOL_F_RELATIVE_NODES`] the kernel reports the set the user gave (absolute, resp. relative to
/// the cpuset); otherwise the set in effect now. Empty for `Default` and `Local`.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct MemPolicy {
    /// The mode.
    pub mode: PolicyMode,
    /// The mode flags ([`MPOL_F_STATIC_NODES`], [`MPOL_F_RELATIVE_NODES`],
    /// [`MPOL_F_NUMA_BALANCING`]), as bits.
    pub flags: i32,
    /// The policy's nodes.
    pub nodes: NodeMask,
}

impl MemPolicy {
    /// No task policy (`MPOL_DEFAULT`).
    pub const DEFAULT: MemPolicy = MemPolicy {
        mode: PolicyMode::Default,
        flags: 0,
        nodes: NodeMask::new(),
    };

    /// Decode the raw mode word (mode ORed with mode flags, as `get_mempolicy` writes it) and the
    /// node mask.
    ///
    /// # Errors
    /// [`PolicyError::UnknownMode`], [`PolicyError::UnknownFlags`],
    /// [`PolicyError::ConflictingFlags`].
    pub fn decode(raw: i32, nodes: NodeMask) -> Result<MemPolicy, PolicyError> {
        let flags = raw & MPOL_MODE_FLAGS;
        // Flags live in the high bits of the low 16; anything above them is unknown too.
        let unknown = raw & !MPOL_MODE_FLAGS & !0xff;
        if unknown != 0 {
            return Err(PolicyError::UnknownFlags(unknown));
        }
        let mode_bits = raw & 0xff;
        let mode = PolicyMode::from_raw(mode_bits).ok_or(PolicyError::UnknownMode(mode_bits))?;
        if flags & MPOL_F_STATIC_NODES != 0 && flags & MPOL_F_RELATIVE_NODES != 0 {
            return Err(PolicyError::ConflictingFlags);
        }
        Ok(MemPolicy { mode, flags, nodes })
    }

    /// The calling thread's policy (`get_mempolicy` with no address and no flags). Allocates
    /// nothing.
    ///
    /// # Errors
    /// [`PolicyError::Sys`] if the system call fails; the errors of [`decode`](Self::decode).
    pub fn current() -> Result<MemPolicy, PolicyError> {
        let mut mode = -1;
        let mut nodes = NodeMask::new();
        get_mempolicy(&mut mode, Some(&mut nodes), core::ptr::null(), 0)?;
        MemPolicy::decode(mode, nodes)
    }

    /// Whether [`MPOL_F_STATIC_NODES`] is set.
    #[inline]
    pub const fn static_nodes(&self) -> bool {
        self.flags & MPOL_F_STATIC_NODES != 0
    }

    /// Whether [`MPOL_F_RELATIVE_NODES`] is set.
    #[inline]
    pub const fn relative_nodes(&self) -> bool {
        self.flags & MPOL_F_RELATIVE_NODES != 0
    }

    /// Whether [`MPOL_F_NUMA_BALANCING`] is set.
    #[inline]
    pub const fn numa_balancing(&self) -> bool {
        self.flags & MPOL_F_NUMA_BALANCING != 0
    }

    /// The real nodes the policy names within `allowed` (the cpuset's nodes; empty means "not
    /// known": no filter): a relative set is mapped onto `allowed` as the kernel does (bit `i` is
    /// the `(i mod |allowed|)`-th allowed node), any other set is intersected with it. May be
    /// empty.
    pub fn effective_nodes(&self, allowed: &NodeMask) -> NodeMask {
        if allowed.is_empty() {
            return self.nodes;
        }
        if !self.relative_nodes() {
            return self.nodes.intersection(allowed);
        }
        let w = allowed.weight();
        let mut out = NodeMask::new();
        for bit in self.nodes.iter() {
            if let Some(n) = allowed.iter().nth(bit.index() % w) {
                out.set(n);
            }
        }
        out
    }
}

/// The nodes the calling thread's cpuset allows, from `get_mempolicy(MPOL_F_MEMS_ALLOWED)` (the
/// same set as `Mems_allowed_list:` in `/proc/self/status`,
/// [`read_mems_allowed_list`](crate::sysfs::read_mems_allowed_list)). Allocates nothing.
///
/// # Errors
/// The kernel's errno (`ENOSYS` without NUMA support).
pub fn mems_allowed() -> Result<NodeMask, Errno> {
    let mut mode = 0;
    let mut nodes = NodeMask::new();
    get_mempolicy(
        &mut mode,
        Some(&mut nodes),
        core::ptr::null(),
        MPOL_F_MEMS_ALLOWED,
    )?;
    Ok(nodes)
}

/// How slabs should be spread over the nodes [`placement_nodes`] returns.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum PlacementKind {
    /// On the calling thread's node (the one node returned, which is the local node or, if that
    /// one has no memory or is not allowed, the nearest that is).
    Local,
    /// Preferably on these nodes (the first in fallback order from the local node), others when
    /// they are full.
    Preferred,
    /// Only on these nodes.
    Bind,
    /// Spread evenly over these nodes.
    Interleave,
    /// Spread over these nodes by the kernel's interleave weights.
    WeightedInterleave,
}

/// Where slabs should go under `policy` and the cpuset's `mems_allowed`, for the calling thread
/// (its node from [`Topology::current_node`]); see [`placement_nodes_from`].
pub fn placement_nodes(
    policy: &MemPolicy,
    mems_allowed: &NodeMask,
    topology: &Topology,
) -> (PlacementKind, NodeMask) {
    placement_nodes_from(policy, mems_allowed, topology, topology.current_node())
}

/// Where slabs should go for a thread on node `local` (a pure function: no system call, no
/// allocation). The mask holds `topology`'s node ids — for a simulated topology every virtual
/// node with memory whose [`real_node`](Topology::real_node) is in the set — and only nodes with
/// memory ([`Topology::memory_nodes`]). `mems_allowed` empty means "unknown": no cpuset filter.
///
/// - `Bind`, `Interleave`, `WeightedInterleave`: the policy's nodes within `mems_allowed`
///   ([`MemPolicy::effective_nodes`]); if none is left, every allowed node (the kernel's rule when
///   a cpuset change leaves a policy no node).
/// - `Preferred`, `PreferredMany`: the policy's allowed nodes; if none (or `MPOL_PREFERRED` with no
///   node), as `Local`.
/// - `Default`, `Local`: [`PlacementKind::Local`] with one node: `local` if it has memory and is
///   allowed, else the first such node in [`Topology::fallback_order`] from `local`.
///
/// The mask is never empty for a non-empty topology: when nothing qualifies, the result is
/// `(Local, {local})`.
pub fn placement_nodes_from(
    policy: &MemPolicy,
    mems_allowed: &NodeMask,
    topology: &Topology,
    local: NodeId,
) -> (PlacementKind, NodeMask) {
    // Real node set -> the topology's nodes with memory behind them.
    let to_topo = |real: &NodeMask| -> NodeMask {
        let mut m = NodeMask::new();
        for v in topology.memory_nodes().iter() {
            if real.test(topology.real_node(v)) {
                m.set(v);
            }
        }
        m
    };
    let allowed = if mems_allowed.is_empty() {
        topology.real_nodes()
    } else {
        *mems_allowed
    };
    let allowed_here = to_topo(&allowed);
    let local_choice = || -> (PlacementKind, NodeMask) {
        if allowed_here.test(local) {
            return (PlacementKind::Local, NodeMask::single(local));
        }
        let mut order = [NodeId(0); MAX_TOPOLOGY_NODES];
        let n = topology.fallback_order(local, &mut order);
        let pick = order[..n].iter().copied().find(|&v| allowed_here.test(v));
        (
            PlacementKind::Local,
            NodeMask::single(pick.unwrap_or(local)),
        )
    };
    let spread = |kind: PlacementKind| -> (PlacementKind, NodeMask) {
        let set = to_topo(&policy.effective_nodes(mems_allowed));
        if !set.is_empty() {
            (kind, set)
        } else if !allowed_here.is_empty() {
            (kind, allowed_here)
        } else {
            local_choice()
        }
    };
    match policy.mode {
        PolicyMode::Default | PolicyMode::Local => local_choice(),
        PolicyMode::Bind => spread(PlacementKind::Bind),
        PolicyMode::Interleave => spread(PlacementKind::Interleave),
        PolicyMode::WeightedInterleave => spread(PlacementKind::WeightedInterleave),
        PolicyMode::Preferred | PolicyMode::PreferredMany => {
            let set = to_topo(&policy.effective_nodes(mems_allowed));
            if set.is_empty() {
                local_choice()
            } else {
                (PlacementKind::Preferred, set)
            }
        }
    }
}

#[cfg(test)]
mod decode_tests {
    use super::*;

    fn mask(list: &str) -> NodeMask {
        NodeMask::parse_list(list.as_bytes()).unwrap()
    }

    fn four_nodes() -> Box<Topology> {
        let c: [&[usize]; 4] = [&[0, 1], &[2, 3], &[4, 5], &[]];
        let parts: Vec<_> = (0..4u16)
            .map(|i| (NodeId(i), c[i as usize], 1u64 << 30))
            .collect();
        Topology::from_parts(&parts, |a, b| {
            if a == b {
                10
            } else {
                20 + a.0.abs_diff(b.0) as u8
            }
        })
        .unwrap()
    }

    #[test]
    fn decode_modes_and_flags() {
        let cases = [
            (0, PolicyMode::Default),
            (1, PolicyMode::Preferred),
            (2, PolicyMode::Bind),
            (3, PolicyMode::Interleave),
            (4, PolicyMode::Local),
            (5, PolicyMode::PreferredMany),
            (6, PolicyMode::WeightedInterleave),
        ];
        for (raw, mode) in cases {
            let p = MemPolicy::decode(raw, mask("1-2")).unwrap();
            assert_eq!(p.mode, mode);
            assert_eq!(p.mode.raw(), raw);
            assert_eq!(p.flags, 0);
            assert_eq!(p.nodes, mask("1-2"));
            assert!(!p.static_nodes() && !p.relative_nodes() && !p.numa_balancing());
        }
        let p = MemPolicy::decode(MPOL_BIND | MPOL_F_STATIC_NODES, mask("3")).unwrap();
        assert_eq!(p.mode, PolicyMode::Bind);
        assert!(p.static_nodes() && !p.relative_nodes());
        let p = MemPolicy::decode(MPOL_INTERLEAVE | MPOL_F_RELATIVE_NODES, mask("0")).unwrap();
        assert_eq!(p.mode, PolicyMode::Interleave);
        assert!(p.relative_nodes() && !p.static_nodes());
        let p = MemPolicy::decode(MPOL_BIND | MPOL_F_NUMA_BALANCING, mask("0")).unwrap();
        assert!(p.numa_balancing());
        assert_eq!(p.flags, 1 << 13);
        assert_eq!(
            MemPolicy::decode(7, NodeMask::new()),
            Err(PolicyError::UnknownMode(7))
        );
        assert_eq!(
            MemPolicy::decode(MPOL_BIND | (1 << 12), NodeMask::new()),
            Err(PolicyError::UnknownFlags(1 << 12))
        );
        assert_eq!(
            MemPolicy::decode(MPOL_BIND | (1 << 20), NodeMask::new()),
            Err(PolicyError::UnknownFlags(1 << 20))
        );
        assert_eq!(
            MemPolicy::decode(
                MPOL_BIND | MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES,
                NodeMask::new()
            ),
            Err(PolicyError::ConflictingFlags)
        );
        assert!(PolicyError::UnknownMode(9).to_string().contains('9'));
    }

    #[test]
    fn effective_nodes_static_and_relative() {
        let allowed = mask("2-3,6");
        let p = MemPolicy::decode(MPOL_BIND, mask("0-3")).unwrap();
        assert_eq!(p.effective_nodes(&allowed), mask("2-3"));
        let p = MemPolicy::decode(MPOL_BIND | MPOL_F_STATIC_NODES, mask("0,6")).unwrap();
        assert_eq!(p.effective_nodes(&allowed), mask("6"));
        // Relative: bit i is the (i mod 3)-th allowed node: 0 -> 2, 2 -> 6, 4 -> 3.
        let p = MemPolicy::decode(MPOL_BIND | MPOL_F_RELATIVE_NODES, mask("0,2")).unwrap();
        assert_eq!(p.effective_nodes(&allowed), mask("2,6"));
        let p = MemPolicy::decode(MPOL_BIND | MPOL_F_RELATIVE_NODES, mask("4")).unwrap();
        assert_eq!(p.effective_nodes(&allowed), mask("3"));
        // Unknown cpuset: no filter.
        assert_eq!(p.effective_nodes(&NodeMask::new()), mask("4"));
    }

    #[test]
    fn placement_by_mode() {
        let t = four_nodes();
        let all = mask("0-3");
        let place = |raw: i32, nodes: &str, allowed: &NodeMask, local: u16| {
            let p = MemPolicy::decode(raw, mask(nodes)).unwrap();
            let (k, m) = placement_nodes_from(&p, allowed, &t, NodeId(local));
            (k, m.to_string())
        };
        use PlacementKind as K;
        assert_eq!(place(MPOL_DEFAULT, "", &all, 2), (K::Local, "2".into()));
        assert_eq!(place(MPOL_LOCAL, "", &all, 1), (K::Local, "1".into()));
        assert_eq!(place(MPOL_BIND, "1,3", &all, 0), (K::Bind, "1,3".into()));
        assert_eq!(
            place(MPOL_PREFERRED, "2", &all, 0),
            (K::Preferred, "2".into())
        );
        assert_eq!(
            place(MPOL_PREFERRED_MANY, "0,3", &all, 1),
            (K::Preferred, "0,3".into())
        );
        assert_eq!(
            place(MPOL_INTERLEAVE, "0-3", &all, 1),
            (K::Interleave, "0-3".into())
        );
        assert_eq!(
            place(MPOL_WEIGHTED_INTERLEAVE, "1-2", &all, 1),
            (K::WeightedInterleave, "1-2".into())
        );
        // The cpuset narrows every set.
        let cs = mask("1-2");
        assert_eq!(place(MPOL_BIND, "0-2", &cs, 0), (K::Bind, "1-2".into()));
        assert_eq!(
            place(MPOL_INTERLEAVE, "2-3", &cs, 0),
            (K::Interleave, "2".into())
        );
        // Nothing left: bind/interleave take every allowed node, preferred goes local.
        assert_eq!(place(MPOL_BIND, "3", &cs, 0), (K::Bind, "1-2".into()));
        assert_eq!(
            place(MPOL_WEIGHTED_INTERLEAVE, "0", &cs, 0),
            (K::WeightedInterleave, "1-2".into())
        );
        assert_eq!(place(MPOL_PREFERRED, "3", &cs, 2), (K::Local, "2".into()));
        // MPOL_PREFERRED without a node means local allocation.
        assert_eq!(place(MPOL_PREFERRED, "", &all, 3), (K::Local, "3".into()));
        // Local node outside the cpuset: the nearest allowed one (0 -> 1 at distance 21).
        assert_eq!(place(MPOL_DEFAULT, "", &cs, 0), (K::Local, "1".into()));
        assert_eq!(place(MPOL_DEFAULT, "", &cs, 3), (K::Local, "2".into()));
        // Static / relative sets.
        assert_eq!(
            place(MPOL_BIND | MPOL_F_RELATIVE_NODES, "0", &cs, 0),
            (K::Bind, "1".into())
        );
        assert_eq!(
            place(MPOL_BIND | MPOL_F_STATIC_NODES, "2-3", &cs, 0),
            (K::Bind, "2".into())
        );
        // An unknown cpuset (empty mask) does not filter; nodes outside the topology vanish.
        let none = NodeMask::new();
        assert_eq!(place(MPOL_BIND, "3,9", &none, 0), (K::Bind, "3".into()));
        // A cpuset naming no node of the topology: local, whatever it is.
        assert_eq!(
            place(MPOL_DEFAULT, "", &mask("7"), 1),
            (K::Local, "1".into())
        );
        assert_eq!(place(MPOL_BIND, "7", &mask("7"), 1), (K::Local, "1".into()));
    }

    #[test]
    fn placement_skips_nodes_without_memory() {
        let mut t = four_nodes();
        t.set_node_states(mask("0-3"), mask("0-3"), mask("0-2"));
        let p = MemPolicy::decode(MPOL_INTERLEAVE, mask("0-3")).unwrap();
        let (k, m) = placement_nodes_from(&p, &mask("0-3"), &t, NodeId(3));
        assert_eq!(
            (k, m.to_string()),
            (PlacementKind::Interleave, "0-2".into())
        );
        // Default on the memoryless node 3 (CPU-less here, but any thread could ask): nearest
        // node with memory, 2.
        let (k, m) = placement_nodes_from(&MemPolicy::DEFAULT, &NodeMask::new(), &t, NodeId(3));
        assert_eq!((k, m.to_string()), (PlacementKind::Local, "2".into()));
    }

    #[test]
    fn placement_on_a_simulated_topology_maps_real_nodes() {
        // Six virtual nodes over real nodes 0 and 5: virtual 0,2,4 on 0; 1,3,5 on 5.
        let c0: &[usize] = &[0, 1];
        let c5: &[usize] = &[2, 3];
        let base = Topology::from_parts(&[(NodeId(0), c0, 600), (NodeId(5), c5, 600)], |a, b| {
            if a == b {
                10
            } else {
                21
            }
        })
        .unwrap();
        let mut t = Topology::new_boxed();
        Topology::simulate_into(&base, 6, &mut t).unwrap();
        let p = MemPolicy::decode(MPOL_BIND, mask("5")).unwrap();
        let (k, m) = placement_nodes_from(&p, &mask("0,5"), &t, NodeId(0));
        assert_eq!((k, m.to_string()), (PlacementKind::Bind, "1,3,5".into()));
        // Local on virtual node 0 whose real node is not allowed: nearest virtual node on 5.
        let (k, m) = placement_nodes_from(&MemPolicy::DEFAULT, &mask("5"), &t, NodeId(0));
        assert_eq!((k, m.to_string()), (PlacementKind::Local, "1".into()));
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    fn map_pages(n: usize) -> *mut u8 {
        let page = crate::pages::page_size();
        // SAFETY: anonymous private mapping with no address hint; checked for MAP_FAILED below.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                n * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        p.cast()
    }

    fn unmap_pages(p: *mut u8, n: usize) {
        // SAFETY: `p` came from map_pages(n) and is no longer used.
        assert_eq!(
            unsafe { libc::munmap(p.cast(), n * crate::pages::page_size()) },
            0
        );
    }

    #[test]
    fn mbind_then_get_mempolicy_reports_it() {
        let page = crate::pages::page_size();
        let p = map_pages(2);
        let node = crate::sysfs::read_node_mask(crate::sysfs::NodeState::HasMemory)
            .unwrap()
            .first()
            .unwrap();
        let mask = NodeMask::single(node);
        // SAFETY: the two pages were just mapped by this test.
        unsafe { mbind(p.cast(), 2 * page, MPOL_PREFERRED, Some(&mask), 0) }.unwrap();
        let mut mode = -1;
        let mut got = NodeMask::new();
        get_mempolicy(&mut mode, Some(&mut got), p.cast(), MPOL_F_ADDR).unwrap();
        assert_eq!(mode, MPOL_PREFERRED);
        assert_eq!(got, mask);
        // SAFETY: the mapping is ours and writable.
        unsafe { p.write(1) };
        assert_eq!(node_of_address(p), Ok(node));
        // The thread policy is untouched by mbind.
        let mut tmode = -1;
        get_mempolicy(&mut tmode, None, core::ptr::null(), 0).unwrap();
        assert_eq!(tmode, MPOL_DEFAULT);
        unmap_pages(p, 2);
    }

    #[test]
    fn mbind_to_missing_node_is_einval() {
        let page = crate::pages::page_size();
        let p = map_pages(1);
        let mask = NodeMask::single(NodeId(1000));
        // SAFETY: the page was just mapped by this test.
        let r = unsafe { mbind(p.cast(), page, MPOL_PREFERRED, Some(&mask), 0) };
        assert_eq!(r, Err(Errno(libc::EINVAL)));
        unmap_pages(p, 1);
    }

    #[test]
    fn set_mempolicy_round_trip_in_a_thread() {
        // Run in a fresh thread so the test harness thread keeps its default policy.
        std::thread::spawn(|| {
            let node = crate::sysfs::read_node_mask(crate::sysfs::NodeState::HasMemory)
                .unwrap()
                .first()
                .unwrap();
            let mask = NodeMask::single(node);
            set_mempolicy(MPOL_BIND, Some(&mask)).unwrap();
            let mut mode = -1;
            let mut got = NodeMask::new();
            get_mempolicy(&mut mode, Some(&mut got), core::ptr::null(), 0).unwrap();
            assert_eq!(mode, MPOL_BIND);
            assert_eq!(got, mask);
            set_mempolicy(MPOL_DEFAULT, None).unwrap();
            get_mempolicy(&mut mode, None, core::ptr::null(), 0).unwrap();
            assert_eq!(mode, MPOL_DEFAULT);
            // A policy over a node without memory is refused.
            assert_eq!(
                set_mempolicy(MPOL_BIND, Some(&NodeMask::single(NodeId(1000)))),
                Err(Errno(libc::EINVAL))
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn move_pages_query_and_length_check() {
        let page = crate::pages::page_size();
        let p = map_pages(3);
        // SAFETY: the mapping is ours; touch only page 1.
        unsafe { p.add(page).write(7) };
        let pages: [*const c_void; 3] = [
            p.cast(),
            p.wrapping_add(page).cast(),
            p.wrapping_add(2 * page).cast(),
        ];
        let mut status = [i32::MIN; 3];
        assert_eq!(move_pages(0, &pages, None, &mut status, 0), Ok(0));
        assert_eq!(status[0], -libc::ENOENT);
        assert!(
            status[1] >= 0,
            "touched page reports a node, got {}",
            status[1]
        );
        assert_eq!(status[2], -libc::ENOENT);
        let mut short = [0i32; 2];
        assert_eq!(
            move_pages(0, &pages, None, &mut short, 0),
            Err(Errno(libc::EINVAL))
        );
        unmap_pages(p, 3);
        // Pages in no mapping: the kernel reports EFAULT per page instead of failing. The hole
        // just unmapped may be mapped again at once by another test thread (then its pages read
        // as ENOENT, mapped but never touched), so the strict check uses pages below
        // `vm.mmap_min_addr`, which nothing maps.
        let mut status = [0i32; 3];
        assert_eq!(move_pages(0, &pages, None, &mut status, 0), Ok(0));
        assert!(
            status
                .iter()
                .all(|&s| s == -libc::EFAULT || s == -libc::ENOENT),
            "{status:?}"
        );
        let low: [*const c_void; 3] = [
            page as *const c_void,
            (2 * page) as *const c_void,
            (3 * page) as *const c_void,
        ];
        let mut status = [0i32; 3];
        assert_eq!(move_pages(0, &low, None, &mut status, 0), Ok(0));
        assert!(status.iter().all(|&s| s == -libc::EFAULT), "{status:?}");
    }

    #[test]
    fn errno_display() {
        let s = Errno(libc::EINVAL).to_string();
        assert_eq!(s, "EINVAL (errno 22)");
    }
}
