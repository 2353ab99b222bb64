//! `PageSource`: maps, binds (mbind `MPOL_PREFERRED`), decommits and unmaps page spans, counts them,
//! injects faults, and asks the kernel where pages really live (`move_pages` with no target). Knows
//! nothing of slabs or topology: callers pass the *real* node. Under Miri it uses `System` instead.

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::node::{NodeId, NodeMask, MAX_NODES};
use crate::policy::Errno;

/// The system page size (`sysconf(_SC_PAGESIZE)`, cached; 4096 if unavailable). No allocation.
pub fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let p = PAGE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions; _SC_PAGESIZE is answered from the auxiliary vector.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let v = if v > 0 && (v as usize).is_power_of_two() {
        v as usize
    } else {
        4096
    };
    PAGE.store(v, Ordering::Relaxed);
    v
}

/// A span of mapped pages: start address and length in bytes (a multiple of the page size).
///
/// A span is only a description; it owns nothing and unmapping it is an explicit, `unsafe` call on
/// the [`PageSource`] that mapped it.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct Span {
    /// First byte.
    pub ptr: NonNull<u8>,
    /// Length in bytes.
    pub len: usize,
}

// SAFETY: a Span is an address and a length; touching the memory it describes needs unsafe code
// that carries its own aliasing obligations, so moving or sharing the description is harmless.
unsafe impl Send for Span {}
// SAFETY: as above; `&Span` only exposes the two plain fields.
unsafe impl Sync for Span {}

impl Span {
    /// A span from its parts.
    pub const fn new(ptr: NonNull<u8>, len: usize) -> Span {
        Span { ptr, len }
    }

    /// The start as a raw pointer.
    #[inline]
    pub const fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The address one past the end.
    #[inline]
    pub fn end(&self) -> *mut u8 {
        self.ptr.as_ptr().wrapping_add(self.len)
    }

    /// Whether `addr` falls inside the span.
    #[inline]
    pub fn contains(&self, addr: *const u8) -> bool {
        let a = addr as usize;
        let s = self.ptr.as_ptr() as usize;
        a >= s && a - s < self.len
    }

    /// Whether the start is a multiple of `align` (a power of two).
    #[inline]
    pub fn is_aligned_to(&self, align: usize) -> bool {
        (self.ptr.as_ptr() as usize) & (align.wrapping_sub(1)) == 0
    }
}

/// Why a span could not be mapped.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum MapError {
    /// The kernel (or the fault injector) had no memory (`ENOMEM`).
    NoMemory,
    /// The node cannot take the binding (`EINVAL` from mbind: offline, removed, without memory, or
    /// beyond the kernel's node limit). The span was unmapped. (The caller knows which node it asked
    /// for, so the variant carries none and stays a plain, comparable value.)
    NodeGone,
    /// Zero length, an alignment that is not a power of two, or a size that overflows.
    InvalidArgument,
    /// Any other errno from mmap or mbind.
    Os(i32),
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::NoMemory => f.write_str("out of memory"),
            MapError::NodeGone => f.write_str("node cannot hold memory (gone or memoryless)"),
            MapError::InvalidArgument => f.write_str("invalid length or alignment"),
            MapError::Os(e) => write!(f, "system call failed: {}", Errno(e)),
        }
    }
}

impl std::error::Error for MapError {}

const NO_FAULTS: u64 = u64::MAX;

/// Maps spans of anonymous pages, optionally preferring a node, and counts what it maps.
///
/// `map` does `mmap` (over-mapping and trimming with `munmap` for alignments above a page, up to
/// 1 GiB and beyond), then `mbind(MPOL_PREFERRED)` to the given *real* node. The preferred policy
/// (not a strict bind) lets the kernel migrate the pages if the node is offlined. Under `cfg(miri)`
/// spans come from `std::alloc::System` (whole spans only) and no policy is applied.
///
/// `const fn new()`, so a source can be a `static`; no method allocates.
///
/// ```
/// use hotslab_numa::{NodeId, PageSource};
///
/// static PAGES: PageSource = PageSource::new();
/// let span = PAGES.map(64 << 10, 2 << 20, Some(NodeId(0)))?;
/// assert_eq!(span.len, 64 << 10);
/// assert!(span.is_aligned_to(2 << 20));
/// assert_eq!(PAGES.mapped_bytes(), 64 << 10);
/// // SAFETY: the span is ours and unused elsewhere.
/// unsafe { span.as_ptr().write_bytes(1, span.len) };
/// let summary = hotslab_numa::placement_summary(span.as_ptr(), span.len)?;
/// assert_eq!(summary.on_node(NodeId(0)), span.len / hotslab_numa::page_size());
/// // SAFETY: nothing refers to the span any more.
/// unsafe { PAGES.unmap(span) };
/// assert_eq!(PAGES.mapped_bytes(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PageSource {
    mapped: AtomicUsize,
    maps: AtomicU64,
    unmaps: AtomicU64,
    fail_after: AtomicU64,
    faults: AtomicU64,
    unbound: AtomicU64,
    decommits: AtomicU64,
    huge_advised: AtomicUsize,
}

impl Default for PageSource {
    fn default() -> Self {
        Self::new()
    }
}

impl PageSource {
    /// A source with zeroed counters and no fault injection.
    pub const fn new() -> Self {
        PageSource {
            mapped: AtomicUsize::new(0),
            maps: AtomicU64::new(0),
            unmaps: AtomicU64::new(0),
            fail_after: AtomicU64::new(NO_FAULTS),
            faults: AtomicU64::new(0),
            unbound: AtomicU64::new(0),
            decommits: AtomicU64::new(0),
            huge_advised: AtomicUsize::new(0),
        }
    }

    /// Map `len` bytes (rounded up to whole pages) aligned to `align` (a power of two; anything up
    /// to a page means page alignment), zero-filled, and if `node` is given prefer that real node.
    ///
    /// Errors: [`MapError::NodeGone`] when mbind refuses the node (EINVAL; the span is unmapped
    /// again, so nothing leaks), [`MapError::NoMemory`] for ENOMEM or an injected fault. If the
    /// kernel refuses memory policy altogether (ENOSYS, or EPERM from a seccomp filter) the span is
    /// kept unbound and counted in [`unbound_maps`](Self::unbound_maps).
    pub fn map(&self, len: usize, align: usize, node: Option<NodeId>) -> Result<Span, MapError> {
        let page = page_size();
        if len == 0 || (align != 0 && !align.is_power_of_two()) {
            return Err(MapError::InvalidArgument);
        }
        let align = align.max(page);
        let len = len.checked_add(page - 1).ok_or(MapError::InvalidArgument)? & !(page - 1);
        if let Some(n) = node {
            if !n.is_valid() {
                return Err(MapError::NodeGone);
            }
        }
        self.take_fault_budget()?;
        let ptr = match sys::map(len, align) {
            Ok(p) => p,
            Err(e) => {
                self.refund_fault_budget();
                return Err(e);
            }
        };
        if let Some(n) = node {
            match sys::bind(ptr, len, n) {
                Ok(true) => {}
                Ok(false) => {
                    self.unbound.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    // SAFETY: the span was mapped just above and never handed out.
                    unsafe { sys::unmap(ptr, len) };
                    self.refund_fault_budget();
                    return Err(e);
                }
            }
        }
        self.mapped.fetch_add(len, Ordering::Relaxed);
        self.maps.fetch_add(1, Ordering::Relaxed);
        Ok(Span { ptr, len })
    }

    /// Unmap a span returned by [`map`](Self::map). Outside Miri a page-aligned sub-span of a mapped
    /// span may be unmapped on its own (its length is subtracted from `mapped_bytes`).
    ///
    /// # Safety
    /// `span` (or the span it is part of) came from this source's `map`, has not been unmapped, and
    /// nothing will access its memory again. Under Miri only whole spans may be unmapped.
    pub unsafe fn unmap(&self, span: Span) {
        // SAFETY: forwarded from the caller's contract.
        if unsafe { sys::unmap(span.ptr, span.len) } {
            self.mapped.fetch_sub(span.len, Ordering::Relaxed);
            self.unmaps.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Give the pages of `[ptr, ptr + len)` back to the kernel (`madvise(MADV_DONTNEED)`), keeping
    /// the mapping: the next touch faults in zeroed pages (under the span's policy). Returns whether
    /// the kernel accepted the advice (it only refuses ranges that break the contract below; a
    /// refused decommit leaves the memory committed and its contents intact, which is harmless).
    ///
    /// # Safety
    /// The range is page aligned, lies inside a span mapped by this source, and nothing relies on
    /// its current contents (they become zero).
    pub unsafe fn decommit(&self, ptr: NonNull<u8>, len: usize) -> bool {
        // SAFETY: forwarded from the caller's contract.
        let ok = unsafe { sys::decommit(ptr.as_ptr(), len) }.is_ok();
        if ok {
            self.decommits.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Asks the kernel to back `[ptr, ptr + len)` with transparent huge pages
    /// (`madvise(MADV_HUGEPAGE)`): pages touched from now on come as 2 MiB pages where the kernel
    /// can find them (the system's `transparent_hugepage/enabled` must be `madvise` or `always`).
    /// Returns whether the kernel took the advice (a kernel without THP refuses it; nothing
    /// changes then). Contents are untouched.
    ///
    /// # Safety
    /// The range is page aligned and lies inside a span mapped by this source.
    pub unsafe fn advise_huge(&self, ptr: NonNull<u8>, len: usize) -> bool {
        // SAFETY: forwarded from the caller's contract.
        let ok = unsafe { sys::advise_huge(ptr.as_ptr(), len) }.is_ok();
        if ok {
            self.huge_advised.fetch_add(len, Ordering::Relaxed);
        }
        ok
    }

    /// Bytes advised for huge pages so far ([`PageSource::advise_huge`]).
    pub fn huge_advised_bytes(&self) -> usize {
        self.huge_advised.load(Ordering::Relaxed)
    }

    /// Successful decommits so far.
    pub fn decommits(&self) -> u64 {
        self.decommits.load(Ordering::Relaxed)
    }

    /// Bytes currently mapped through this source.
    pub fn mapped_bytes(&self) -> usize {
        self.mapped.load(Ordering::Relaxed)
    }

    /// Successful maps so far.
    pub fn maps(&self) -> u64 {
        self.maps.load(Ordering::Relaxed)
    }

    /// Unmaps so far.
    pub fn unmaps(&self) -> u64 {
        self.unmaps.load(Ordering::Relaxed)
    }

    /// Maps that asked for a node but could not be bound because the kernel refuses memory policy
    /// (ENOSYS/EPERM).
    pub fn unbound_maps(&self) -> u64 {
        self.unbound.load(Ordering::Relaxed)
    }

    /// Fault injection: after `n` more successful maps, every map fails with
    /// [`MapError::NoMemory`] until [`clear_faults`](Self::clear_faults).
    pub fn fail_after(&self, n: u64) {
        self.fail_after
            .store(n.min(NO_FAULTS - 1), Ordering::Release);
    }

    /// Stop injecting faults.
    pub fn clear_faults(&self) {
        self.fail_after.store(NO_FAULTS, Ordering::Release);
    }

    /// Maps failed on purpose so far.
    pub fn faults_injected(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    fn take_fault_budget(&self) -> Result<(), MapError> {
        let r = self
            .fail_after
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| match v {
                NO_FAULTS | 0 => None,
                v => Some(v - 1),
            });
        match r {
            Err(0) => {
                self.faults.fetch_add(1, Ordering::Relaxed);
                Err(MapError::NoMemory)
            }
            _ => Ok(()),
        }
    }

    /// A map that took a unit of budget failed for a real reason: give the unit back.
    fn refund_fault_budget(&self) {
        let _ = self
            .fail_after
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| match v {
                NO_FAULTS => None,
                v => Some(v.saturating_add(1).min(NO_FAULTS - 1)),
            });
    }

    /// See [`placement`].
    pub fn placement(
        &self,
        ptr: *const u8,
        len: usize,
        out_nodes: &mut [i32],
    ) -> Result<usize, Errno> {
        placement(ptr, len, out_nodes)
    }

    /// See [`placement_summary`].
    pub fn placement_summary(&self, ptr: *const u8, len: usize) -> Result<PlacementSummary, Errno> {
        placement_summary(ptr, len)
    }
}

/// Pages per `move_pages` call (stack arrays of this many pointers and statuses).
const PLACEMENT_CHUNK: usize = 64;

/// Ask the kernel where the pages of `[ptr, ptr + len)` are: for page `i` (counting from the page
/// containing `ptr`) `out_nodes[i]` receives its node id, or a negative errno: `-ENOENT` for a page
/// not faulted in yet, `-EFAULT` for an unmapped address. Queries `min(pages, out_nodes.len())`
/// pages and returns that count. Uses `move_pages(0, n, pages, NULL, status, 0)`; moves nothing,
/// allocates nothing. Unsupported (ENOSYS) under Miri.
pub fn placement(ptr: *const u8, len: usize, out_nodes: &mut [i32]) -> Result<usize, Errno> {
    let page = page_size();
    let start = (ptr as usize) & !(page - 1);
    let end = (ptr as usize).checked_add(len).ok_or(Errno(libc::EINVAL))?;
    let pages = if len == 0 {
        0
    } else {
        (end - start).div_ceil(page)
    };
    let n = pages.min(out_nodes.len());
    if cfg!(miri) {
        return Err(Errno(libc::ENOSYS));
    }
    let mut done = 0;
    while done < n {
        let k = (n - done).min(PLACEMENT_CHUNK);
        let mut addrs = [core::ptr::null::<core::ffi::c_void>(); PLACEMENT_CHUNK];
        for (i, a) in addrs[..k].iter_mut().enumerate() {
            *a = (start + (done + i) * page) as *const core::ffi::c_void;
        }
        crate::policy::move_pages(0, &addrs[..k], None, &mut out_nodes[done..done + k], 0)?;
        done += k;
    }
    Ok(n)
}

/// Where the pages of a range live, counted per node (no allocation; about 4 KiB by value).
#[derive(Clone, PartialEq, Eq)]
pub struct PlacementSummary {
    pages: usize,
    not_present: usize,
    errors: usize,
    per_node: [u32; MAX_NODES],
}

impl PlacementSummary {
    /// An empty summary.
    pub const fn new() -> Self {
        PlacementSummary {
            pages: 0,
            not_present: 0,
            errors: 0,
            per_node: [0; MAX_NODES],
        }
    }

    /// Count one `move_pages` status value.
    pub fn add_status(&mut self, status: i32) {
        self.pages += 1;
        if status >= 0 {
            match self.per_node.get_mut(status as usize) {
                Some(c) => *c += 1,
                None => self.errors += 1,
            }
        } else if status == -libc::ENOENT {
            self.not_present += 1;
        } else {
            self.errors += 1;
        }
    }

    /// Pages queried.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Pages present in memory (on some node).
    pub fn present(&self) -> usize {
        self.pages - self.not_present - self.errors
    }

    /// Pages not faulted in yet (`-ENOENT`).
    pub fn not_present(&self) -> usize {
        self.not_present
    }

    /// Pages with another error (e.g. `-EFAULT` for unmapped addresses).
    pub fn errors(&self) -> usize {
        self.errors
    }

    /// Pages on `nid`.
    pub fn on_node(&self, nid: NodeId) -> usize {
        self.per_node.get(nid.index()).map_or(0, |&c| c as usize)
    }

    /// Nodes holding at least one page.
    pub fn nodes(&self) -> NodeMask {
        let mut m = NodeMask::new();
        for (i, &c) in self.per_node.iter().enumerate() {
            if c > 0 {
                m.set(NodeId(i as u16));
            }
        }
        m
    }

    /// The node holding the most pages (lowest id on ties).
    pub fn dominant_node(&self) -> Option<NodeId> {
        let (mut best, mut best_count) = (None, 0);
        for (i, &c) in self.per_node.iter().enumerate() {
            if c > best_count {
                best = Some(NodeId(i as u16));
                best_count = c;
            }
        }
        best
    }
}

impl Default for PlacementSummary {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PlacementSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PlacementSummary");
        d.field("pages", &self.pages)
            .field("not_present", &self.not_present)
            .field("errors", &self.errors);
        for (i, &c) in self.per_node.iter().enumerate() {
            if c > 0 {
                d.field("node", &(i, c));
            }
        }
        d.finish()
    }
}

/// [`placement`] over the whole range, counted per node instead of listed per page. No allocation.
///
/// # Errors
/// `EINVAL` if `ptr + len` overflows; otherwise the errno of the first failing `move_pages` call
/// (it queries in fixed-size batches): `ENOSYS` under Miri or without NUMA support, `EPERM` /
/// `EINVAL` as `move_pages(2)` describes. Per-page statuses are not errors: pages not faulted in
/// yet count as not present, other negative statuses (e.g. `-EFAULT`) as errors in the summary.
pub fn placement_summary(ptr: *const u8, len: usize) -> Result<PlacementSummary, Errno> {
    let page = page_size();
    let mut summary = PlacementSummary::new();
    let start = (ptr as usize) & !(page - 1);
    let end = (ptr as usize).checked_add(len).ok_or(Errno(libc::EINVAL))?;
    let mut addr = start;
    while addr < end {
        let mut status = [0i32; PLACEMENT_CHUNK];
        let chunk_len = (end - addr).min(PLACEMENT_CHUNK * page);
        let n = placement(addr as *const u8, chunk_len, &mut status)?;
        for &s in &status[..n] {
            summary.add_status(s);
        }
        addr += n * page;
        if n == 0 {
            break;
        }
    }
    Ok(summary)
}

#[cfg(not(miri))]
mod sys {
    use super::*;

    fn errno() -> i32 {
        Errno::last().0
    }

    /// mmap `len` bytes aligned to `align` (>= page size): over-map by `align - page`, then trim.
    pub(super) fn map(len: usize, align: usize) -> Result<NonNull<u8>, MapError> {
        let page = page_size();
        let total = len
            .checked_add(align - page)
            .ok_or(MapError::InvalidArgument)?;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing touches no
        // existing memory; the result is checked for MAP_FAILED.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(match errno() {
                libc::ENOMEM => MapError::NoMemory,
                libc::EINVAL => MapError::InvalidArgument,
                e => MapError::Os(e),
            });
        }
        let addr = base as usize;
        let aligned = (addr + align - 1) & !(align - 1);
        let head = aligned - addr;
        let tail = total - head - len;
        if head > 0 {
            // SAFETY: [base, base + head) is the unused front of the mapping made above.
            if unsafe { libc::munmap(base, head) } != 0 {
                // SAFETY: the whole mapping is still ours and unused.
                unsafe { libc::munmap(base, total) };
                return Err(MapError::NoMemory);
            }
        }
        if tail > 0 {
            let tail_ptr = (aligned + len) as *mut libc::c_void;
            // SAFETY: [aligned + len, base + total) is the unused back of the mapping made above.
            if unsafe { libc::munmap(tail_ptr, tail) } != 0 {
                // SAFETY: the remaining [aligned, base + total) is still ours and unused.
                unsafe { libc::munmap(aligned as *mut libc::c_void, len + tail) };
                return Err(MapError::NoMemory);
            }
        }
        NonNull::new(aligned as *mut u8).ok_or(MapError::NoMemory)
    }

    /// Prefer `node` for the span. Ok(false): the kernel refuses memory policy altogether.
    pub(super) fn bind(ptr: NonNull<u8>, len: usize, node: NodeId) -> Result<bool, MapError> {
        let mask = NodeMask::single(node);
        // Flags 0: the span is fresh, so there are no existing pages to check (MPOL_MF_STRICT) or
        // move (MPOL_MF_MOVE); the policy governs every page faulted in from now on.
        // SAFETY: the span was just mapped by `map` and is owned by the caller.
        let r = unsafe {
            crate::policy::mbind(
                ptr.as_ptr().cast(),
                len,
                crate::policy::MPOL_PREFERRED,
                Some(&mask),
                0,
            )
        };
        match r {
            Ok(()) => Ok(true),
            Err(Errno(libc::EINVAL)) => Err(MapError::NodeGone),
            Err(Errno(libc::ENOMEM)) => Err(MapError::NoMemory),
            Err(Errno(libc::ENOSYS)) | Err(Errno(libc::EPERM)) => Ok(false),
            Err(Errno(e)) => Err(MapError::Os(e)),
        }
    }

    /// Returns whether the range was unmapped.
    ///
    /// # Safety
    /// The range is a mapping (or part of one) owned by the caller and never accessed again.
    pub(super) unsafe fn unmap(ptr: NonNull<u8>, len: usize) -> bool {
        // SAFETY: forwarded from the caller's contract.
        unsafe { libc::munmap(ptr.as_ptr().cast(), len) == 0 }
    }

    /// # Safety
    /// The range is page aligned, mapped and owned by the caller, whose contents may become zero.
    pub(super) unsafe fn decommit(ptr: *mut u8, len: usize) -> Result<(), Errno> {
        // SAFETY: forwarded from the caller's contract; MADV_DONTNEED on private anonymous memory
        // only replaces the pages by zero pages on the next touch.
        if unsafe { libc::madvise(ptr.cast(), len, libc::MADV_DONTNEED) } == 0 {
            Ok(())
        } else {
            Err(Errno::last())
        }
    }

    /// # Safety
    /// The range is page aligned and mapped by the caller.
    pub(super) unsafe fn advise_huge(ptr: *mut u8, len: usize) -> Result<(), Errno> {
        // SAFETY: forwarded from the caller's contract; MADV_HUGEPAGE only sets a flag on the
        // mapping (it may split the VMA), never changes contents.
        if unsafe { libc::madvise(ptr.cast(), len, libc::MADV_HUGEPAGE) } == 0 {
            Ok(())
        } else {
            Err(Errno::last())
        }
    }
}

/// Miri cannot run mbind, madvise or partial munmap: whole spans come from `System`, with the
/// alignment stored just before the span so `unmap` can rebuild the layout.
#[cfg(miri)]
mod sys {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};

    const MIN_ALIGN: usize = 16;

    pub(super) fn map(len: usize, align: usize) -> Result<NonNull<u8>, MapError> {
        let align = align.max(MIN_ALIGN);
        let total = len.checked_add(align).ok_or(MapError::InvalidArgument)?;
        let layout =
            Layout::from_size_align(total, align).map_err(|_| MapError::InvalidArgument)?;
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { System.alloc_zeroed(layout) };
        if base.is_null() {
            return Err(MapError::NoMemory);
        }
        // SAFETY: `base + align` is inside the `total`-byte block; the usize just below it lies in the
        // `align >= 16` header bytes and is suitably aligned (align is a multiple of 16).
        unsafe {
            let ptr = base.add(align);
            ptr.cast::<usize>().sub(1).write(align);
            Ok(NonNull::new_unchecked(ptr))
        }
    }

    pub(super) fn bind(_ptr: NonNull<u8>, _len: usize, _node: NodeId) -> Result<bool, MapError> {
        Ok(true)
    }

    /// # Safety
    /// `ptr`/`len` is a whole span returned by `map` and never accessed again.
    pub(super) unsafe fn unmap(ptr: NonNull<u8>, len: usize) -> bool {
        // SAFETY: `map` stored the alignment just below the span and allocated `len + align` bytes
        // from `ptr - align` with that alignment.
        unsafe {
            let align = ptr.as_ptr().cast::<usize>().sub(1).read();
            let base = ptr.as_ptr().sub(align);
            System.dealloc(base, Layout::from_size_align_unchecked(len + align, align));
        }
        true
    }

    /// # Safety
    /// The range lies inside a span from `map`; its contents may become zero.
    pub(super) unsafe fn decommit(ptr: *mut u8, len: usize) -> Result<(), Errno> {
        // SAFETY: forwarded from the caller's contract; zeroing is what MADV_DONTNEED looks like.
        unsafe { ptr.write_bytes(0, len) };
        Ok(())
    }

    /// Miri has no page tables: the advice is taken and changes nothing.
    ///
    /// # Safety
    /// None beyond the Linux version's (kept for the same signature).
    pub(super) unsafe fn advise_huge(_ptr: *mut u8, _len: usize) -> Result<(), Errno> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_touch_unmap_counts() {
        let src = PageSource::new();
        let page = page_size();
        let a = src.map(1, 0, None).unwrap();
        assert_eq!(a.len, page);
        assert!(a.is_aligned_to(page));
        let b = src.map(3 * page + 1, page, None).unwrap();
        assert_eq!(b.len, 4 * page);
        assert_eq!(src.mapped_bytes(), 5 * page);
        assert_eq!(src.maps(), 2);
        // SAFETY: b is ours; fresh mappings read as zero.
        unsafe {
            assert_eq!(b.as_ptr().add(b.len - 1).read(), 0);
            b.as_ptr().write_bytes(0xab, b.len);
            assert_eq!(b.as_ptr().add(page).read(), 0xab);
        }
        assert!(b.contains(b.as_ptr().wrapping_add(b.len - 1)));
        assert!(!b.contains(b.end()));
        // SAFETY: both spans came from `src` and are no longer used.
        unsafe {
            src.unmap(a);
            src.unmap(b);
        }
        assert_eq!(src.mapped_bytes(), 0);
        assert_eq!(src.unmaps(), 2);
    }

    #[test]
    fn invalid_arguments() {
        let src = PageSource::new();
        assert_eq!(src.map(0, 0, None), Err(MapError::InvalidArgument));
        assert_eq!(src.map(4096, 3, None), Err(MapError::InvalidArgument));
        assert_eq!(src.map(usize::MAX, 0, None), Err(MapError::InvalidArgument));
        assert_eq!(
            src.map(4096, 0, Some(NodeId(1024))),
            Err(MapError::NodeGone)
        );
        assert_eq!(src.mapped_bytes(), 0);
        assert_eq!(src.maps(), 0);
    }

    #[test]
    fn alignment_is_honoured() {
        let src = PageSource::new();
        for align in [8192usize, 64 << 10, 2 << 20] {
            let s = src.map(page_size(), align, None).unwrap();
            assert!(s.is_aligned_to(align), "align {align}: {:p}", s.ptr);
            // SAFETY: s is ours.
            unsafe {
                s.as_ptr().write(1);
                src.unmap(s);
            }
        }
        assert_eq!(src.mapped_bytes(), 0);
    }

    #[test]
    fn decommit_zeroes() {
        let src = PageSource::new();
        let page = page_size();
        let s = src.map(2 * page, 0, None).unwrap();
        // SAFETY: s is ours, page aligned, and we accept losing its contents.
        unsafe {
            s.as_ptr().write_bytes(7, s.len);
            assert!(src.decommit(s.ptr, page));
            assert_eq!(src.decommits(), 1);
            assert_eq!(s.as_ptr().read(), 0);
            assert_eq!(s.as_ptr().add(page - 1).read(), 0);
            assert_eq!(s.as_ptr().add(page).read(), 7);
            src.unmap(s);
        }
    }

    #[test]
    fn fault_injection() {
        let src = PageSource::new();
        src.fail_after(2);
        let a = src.map(1, 0, None).unwrap();
        let b = src.map(1, 0, None).unwrap();
        assert_eq!(src.map(1, 0, None), Err(MapError::NoMemory));
        assert_eq!(src.map(1, 0, None), Err(MapError::NoMemory));
        assert_eq!(src.faults_injected(), 2);
        assert_eq!(src.maps(), 2);
        assert_eq!(src.mapped_bytes(), 2 * page_size());
        // An invalid request is rejected before it can consume the budget or count as a fault.
        assert_eq!(src.map(0, 0, None), Err(MapError::InvalidArgument));
        assert_eq!(src.faults_injected(), 2);
        src.clear_faults();
        let c = src.map(1, 0, None).unwrap();
        src.fail_after(0);
        assert_eq!(src.map(1, 0, None), Err(MapError::NoMemory));
        src.clear_faults();
        // SAFETY: all spans are ours and unused.
        unsafe {
            src.unmap(a);
            src.unmap(b);
            src.unmap(c);
        }
        assert_eq!(src.mapped_bytes(), 0);
        assert_eq!(src.faults_injected(), 3);
    }

    #[test]
    fn summary_counts_statuses() {
        let mut s = PlacementSummary::new();
        for st in [0, 0, 3, -libc::ENOENT, -libc::EFAULT, 5000] {
            s.add_status(st);
        }
        assert_eq!(s.pages(), 6);
        assert_eq!(s.on_node(NodeId(0)), 2);
        assert_eq!(s.on_node(NodeId(3)), 1);
        assert_eq!(s.not_present(), 1);
        assert_eq!(s.errors(), 2);
        assert_eq!(s.present(), 3);
        assert_eq!(s.nodes().to_string(), "0,3");
        assert_eq!(s.dominant_node(), Some(NodeId(0)));
        assert_eq!(PlacementSummary::new().dominant_node(), None);
    }

    #[test]
    fn span_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Span>();
        assert_send_sync::<PageSource>();
    }
}
