//! Thin `libc::syscall` wrappers for the kernel's NUMA memory-policy calls (`mbind`,
//! `set_mempolicy`, `get_mempolicy`, `move_pages`) and their constants. No libnuma (it allocates
//! during init) and no allocation here; policy decisions belong to `pages` and the callers.

use core::ffi::c_void;
use core::fmt;

use crate::node::{NodeId, NodeMask, MAX_NODES};

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
        // After unmapping, the kernel reports EFAULT per page instead of failing.
        let mut status = [0i32; 3];
        assert_eq!(move_pages(0, &pages, None, &mut status, 0), Ok(0));
        assert!(status.iter().all(|&s| s == -libc::EFAULT), "{status:?}");
    }

    #[test]
    fn errno_display() {
        let s = Errno(libc::EINVAL).to_string();
        assert_eq!(s, "EINVAL (errno 22)");
    }
}
