//! libhotslab.so: hotslab as the C allocator. Exports the malloc family with C semantics
//! (`malloc`, `free`, `calloc`, `realloc`, `reallocarray`, `posix_memalign`, `aligned_alloc`,
//! `memalign`, `valloc`, `pvalloc`, `malloc_usable_size`, `free_sized`, `free_aligned_sized`)
//! and the same functions prefixed `hs_` (see `include/hotslab.h`), all over the default domain
//! of the `hotslab` crate. Owns only this C surface and the early arena; no allocator logic.
//!
//! Inside this library Rust's `System` allocator *is* this malloc, so nothing here allocates
//! through Rust, formats, or panics: failures set `errno` and return null, and misuse that C
//! allocators abort on (freeing a pointer that was never handed out) writes a fixed message and
//! aborts. Calls that arrive while the default domain is being built are served by `early.rs`.
//!
//! Alignment: blocks above 8 bytes are 16-byte aligned (as glibc's on x86-64, which compilers
//! assume); smaller ones are 8-byte aligned.
//!
//! `errno`: every call saves it on entry and puts it back when it succeeds (hotslab's slow paths
//! make system calls that may fail harmlessly: mbind, mremap, sysfs reads); a failing call sets
//! `ENOMEM` (or `EINVAL` where glibc does) and nothing else. `free` never changes it.
//!
//! Huge requests: a size above what the machine could ever back — physical RAM plus swap, read
//! once with `sysinfo(2)` — fails with `ENOMEM` at once (see [`huge_limit`]). The large tier maps
//! with `MAP_NORESERVE`, so without this rule `malloc(32 TiB)` would "succeed"; glibc refuses
//! such a request because its plain mmap fails under the kernel's overcommit heuristic.
//!
//! Also here: glibc's extra surface (`glibc.rs`: `__libc_*`, `cfree`, `malloc_trim`,
//! `mallinfo2`, `mallopt`, `malloc_stats`, `malloc_info`) and the C++ operators (`cxx.rs`).

#![deny(unsafe_op_in_unsafe_fn)]

mod cxx;
mod early;
mod glibc;

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::{c_int, c_void};
use core::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use hs::SlabAlloc;

static A: SlabAlloc = SlabAlloc::new();
/// Set once the default domain exists: the common path goes straight to `SlabAlloc`.
static READY: AtomicBool = AtomicBool::new(false);

const MIN_ALIGN: usize = 16;

/// Registers the fork handlers when the library is loaded (before `main`, before any thread
/// exists), not at the first malloc: a fork in the middle of building the default domain then
/// finds them in place, and they run after (prepare) / before (child) those of libraries that
/// register later.
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;

extern "C" fn init() {
    hs::install_fork_handlers();
}

#[inline(always)]
fn errno_slot() -> *mut c_int {
    // SAFETY: __errno_location has no preconditions; it returns the calling thread's errno slot.
    unsafe { libc::__errno_location() }
}

#[inline(always)]
pub(crate) fn set_errno(e: c_int) {
    // SAFETY: the calling thread's errno slot.
    unsafe { *errno_slot() = e };
}

/// Runs an allocating call keeping `errno`: on success (non-null) it is put back as it was on
/// entry; on failure it keeps what the failure path set (`ENOMEM` or `EINVAL`).
#[inline(always)]
fn keep_errno(f: impl FnOnce() -> *mut c_void) -> *mut c_void {
    let slot = errno_slot();
    // SAFETY: the calling thread's errno slot.
    let saved = unsafe { *slot };
    let p = f();
    if !p.is_null() {
        // SAFETY: as above.
        unsafe { *slot = saved };
    }
    p
}

/// Runs `f` and puts `errno` back as it was, whatever happened (`free`, `posix_memalign`).
#[inline(always)]
pub(crate) fn restore_errno<R>(f: impl FnOnce() -> R) -> R {
    let slot = errno_slot();
    // SAFETY: the calling thread's errno slot.
    let saved = unsafe { *slot };
    let r = f();
    // SAFETY: as above.
    unsafe { *slot = saved };
    r
}

static HUGE_LIMIT: AtomicUsize = AtomicUsize::new(0);

/// The largest request served: physical RAM plus swap (`sysinfo(2)`, read once), at most 2^47
/// (the user address space of x86-64); 2^47 if `sysinfo` fails. No request above it could ever
/// be backed, so it fails with `ENOMEM` as glibc's does, instead of returning an address range
/// that faults later.
#[inline]
pub fn huge_limit() -> usize {
    match HUGE_LIMIT.load(Ordering::Relaxed) {
        0 => huge_limit_slow(),
        l => l,
    }
}

#[cold]
fn huge_limit_slow() -> usize {
    const ASPACE: usize = 1 << 47;
    // SAFETY: sysinfo only writes the struct we pass; all-zero is a valid value for it.
    let mut si: libc::sysinfo = unsafe { core::mem::zeroed() };
    // SAFETY: si is a valid, writable struct sysinfo.
    let rc = restore_errno(|| unsafe { libc::sysinfo(&mut si) });
    let limit = if rc == 0 {
        let unit = (si.mem_unit as usize).max(1);
        (si.totalram as usize)
            .saturating_add(si.totalswap as usize)
            .saturating_mul(unit)
            .clamp(hs::KMALLOC_MAX, ASPACE)
    } else {
        ASPACE
    };
    HUGE_LIMIT.store(limit, Ordering::Relaxed);
    limit
}

#[cold]
pub(crate) fn die(msg: &[u8]) -> ! {
    // SAFETY: writes a static message to stderr, then aborts without unwinding.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::abort()
    }
}

/// The layout of a malloc-family request: at least 16-byte alignment above 8 bytes, the size
/// rounded up to that minimum alignment (so the kmalloc class is itself aligned). `None` when
/// the size cannot be represented.
#[inline(always)]
fn layout(size: usize, align: usize) -> Option<Layout> {
    if size > hs::KMALLOC_MAX && size > huge_limit() {
        return None;
    }
    let min = if size <= 8 { 8 } else { MIN_ALIGN };
    let align = if align > min { align } else { min };
    let round = if align < MIN_ALIGN { align } else { MIN_ALIGN };
    let size = match size.checked_add(round - 1) {
        Some(s) => (s & !(round - 1)).max(round),
        None => return None,
    };
    Layout::from_size_align(size, align).ok()
}

#[inline(always)]
fn alloc(l: Layout, zeroed: bool) -> *mut u8 {
    if READY.load(Ordering::Relaxed) {
        // SAFETY: the layout has a non-zero size.
        return unsafe {
            if zeroed {
                A.alloc_zeroed(l)
            } else {
                A.alloc(l)
            }
        };
    }
    first_alloc(l, zeroed)
}

#[cold]
fn first_alloc(l: Layout, zeroed: bool) -> *mut u8 {
    match hs::default_domain() {
        Some(_) => {
            READY.store(true, Ordering::Release);
            alloc(l, zeroed)
        }
        // Building (this thread is the builder) or failed: the early arena (zeroed memory).
        None => early::alloc(l.size(), l.align()),
    }
}

#[inline(always)]
fn alloc_or_enomem(l: Option<Layout>, zeroed: bool) -> *mut c_void {
    let p = match l {
        Some(l) => alloc(l, zeroed),
        None => ptr::null_mut(),
    };
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p.cast()
}

/// `malloc`: `size` bytes, or null with `errno = ENOMEM`.
///
/// # Safety
/// Always safe to call; the result is memory the caller owns.
#[no_mangle]
pub unsafe extern "C" fn hs_malloc(size: usize) -> *mut c_void {
    malloc_impl(size)
}

/// The body of `malloc` and `hs_malloc` (inlined into each, so neither calls the other through
/// the PLT).
#[inline(always)]
pub(crate) fn malloc_impl(size: usize) -> *mut c_void {
    // The fast path makes no system call, so errno needs no saving there.
    let p = A.malloc_fast(size);
    if !p.is_null() {
        return p.cast();
    }
    malloc_slow(size)
}

#[cold]
#[inline(never)]
fn malloc_slow(size: usize) -> *mut c_void {
    keep_errno(|| alloc_or_enomem(layout(size, 1), false))
}

/// `free`: null is a no-op; anything else must come from this allocator.
///
/// # Safety
/// `p` is null or a live block from this allocator, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn hs_free(p: *mut c_void) {
    // SAFETY: forwarded.
    unsafe { free_impl(p) }
}

/// The body of `free` and `hs_free`.
///
/// # Safety
/// As for [`hs_free`].
#[inline(always)]
pub(crate) unsafe fn free_impl(p: *mut c_void) {
    let p = p.cast::<u8>();
    // SAFETY: p is non-null and ours if hotslab handed it out (caller contract); the fast path
    // only takes a carved object of a slab the caller's heap owns, without a system call.
    if p.is_null() || unsafe { A.free_fast(p) } {
        return;
    }
    // SAFETY: forwarded.
    unsafe { free_slow(p) }
}

/// # Safety
/// As for [`hs_free`], `p` non-null.
#[cold]
#[inline(never)]
unsafe fn free_slow(p: *mut u8) {
    if early::contains(p) {
        return; // early blocks are never reused
    }
    // SAFETY: p is ours (caller contract). A pointer hotslab never handed out, an interior
    // pointer or a double free is reported and aborts there.
    restore_errno(|| unsafe { A.free_checked(p) })
}

/// `calloc`: `n * size` zeroed bytes; null with `errno = ENOMEM` on overflow or exhaustion.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn hs_calloc(n: usize, size: usize) -> *mut c_void {
    keep_errno(|| match n.checked_mul(size) {
        Some(total) => alloc_or_enomem(layout(total, 1), true),
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    })
}

/// `realloc` with glibc's semantics: a null `p` allocates; size 0 frees `p` and returns null;
/// on failure `p` is untouched and null is returned with `errno = ENOMEM`.
///
/// # Safety
/// `p` is null or a live block from this allocator; on success it must not be used again.
#[no_mangle]
pub unsafe extern "C" fn hs_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    let p = p.cast::<u8>();
    if p.is_null() {
        // SAFETY: always safe.
        return malloc_impl(size);
    }
    if size == 0 {
        // SAFETY: forwarded contract.
        unsafe { free_impl(p.cast()) };
        return ptr::null_mut();
    }
    // SAFETY: forwarded contract (p is non-null).
    let q = unsafe { A.realloc_fast(p, size) };
    if !q.is_null() {
        return q.cast();
    }
    // SAFETY: forwarded contract.
    keep_errno(|| unsafe { realloc_inner(p, size) })
}

/// # Safety
/// As for [`hs_realloc`], with `p` non-null and `size` non-zero.
unsafe fn realloc_inner(p: *mut u8, size: usize) -> *mut c_void {
    if early::contains(p) {
        // SAFETY: always safe.
        let q = malloc_impl(size).cast::<u8>();
        if !q.is_null() {
            // SAFETY: p is an early block of its recorded size; q has room for `size` bytes.
            unsafe { ptr::copy_nonoverlapping(p, q, early::size_of(p).min(size)) };
        }
        return q.cast();
    }
    let Some(l) = layout(size, 1) else {
        set_errno(libc::ENOMEM);
        return ptr::null_mut();
    };
    if hs::usable_size(p).is_none() {
        if hs::large_object_containing(p).is_some() {
            die(b"hotslab: realloc of an interior pointer into a large object\n");
        }
        die(b"hotslab: realloc of a pointer hotslab never handed out\n");
    }
    let Some(d) = hs::default_domain() else {
        die(b"hotslab: realloc before the allocator exists\n");
    };
    // SAFETY: p is a live hotslab block (checked above; caller contract for liveness).
    let q = unsafe { d.krealloc_layout(p, l.align(), l.size()) };
    if q.is_null() {
        set_errno(libc::ENOMEM);
    }
    q.cast()
}

/// `reallocarray`: `realloc(p, n * size)` with an overflow check (`ENOMEM`, `p` untouched).
///
/// # Safety
/// As for [`hs_realloc`].
#[no_mangle]
pub unsafe extern "C" fn hs_reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: forwarded contract.
        Some(total) => unsafe { hs_realloc(p, total) },
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

fn aligned(align: usize, size: usize) -> *mut c_void {
    keep_errno(|| alloc_or_enomem(layout(size, align), false))
}

/// `posix_memalign`: `align` must be a power of two and a multiple of `sizeof(void *)`
/// (`EINVAL` otherwise); `ENOMEM` on exhaustion. `*out` is written only on success; `errno`
/// is left alone.
///
/// # Safety
/// `out` is valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn hs_posix_memalign(
    out: *mut *mut c_void,
    align: usize,
    size: usize,
) -> c_int {
    if !align.is_power_of_two() || align < core::mem::size_of::<*mut c_void>() {
        return libc::EINVAL;
    }
    let Some(l) = layout(size, align) else {
        return libc::ENOMEM;
    };
    let p = restore_errno(|| alloc(l, false));
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: out is writable (caller contract).
    unsafe { out.write(p.cast()) };
    0
}

/// `aligned_alloc` (C11/C17): `align` must be a power of two (`EINVAL` and null otherwise).
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn hs_aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    aligned(align, size)
}

/// `memalign` as glibc: an alignment that is not a power of two is rounded up to one.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn hs_memalign(align: usize, size: usize) -> *mut c_void {
    match align.checked_next_power_of_two() {
        Some(a) => aligned(a, size),
        None => {
            set_errno(libc::EINVAL);
            ptr::null_mut()
        }
    }
}

fn page() -> usize {
    hs::mem::page_size()
}

/// `valloc`: page-aligned `size` bytes.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn hs_valloc(size: usize) -> *mut c_void {
    aligned(page(), size)
}

/// `pvalloc`: page-aligned, size rounded up to whole pages (at least one).
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn hs_pvalloc(size: usize) -> *mut c_void {
    let pg = page();
    match size.max(1).checked_add(pg - 1) {
        Some(s) => aligned(pg, s & !(pg - 1)),
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// `malloc_usable_size`: bytes usable in the block (0 for null or a pointer that is not ours).
///
/// # Safety
/// `p` is null or a live block from this allocator.
#[no_mangle]
pub unsafe extern "C" fn hs_malloc_usable_size(p: *mut c_void) -> usize {
    let p = p.cast::<u8>();
    if p.is_null() {
        return 0;
    }
    if early::contains(p) {
        // SAFETY: p is an early block.
        return unsafe { early::size_of(p) };
    }
    hs::usable_size(p).unwrap_or(0)
}

/// `free_sized` (C23): frees `p`; `size` is the size it was allocated with (not needed here).
///
/// # Safety
/// As for [`hs_free`].
#[no_mangle]
pub unsafe extern "C" fn hs_free_sized(p: *mut c_void, _size: usize) {
    // SAFETY: forwarded contract.
    unsafe { free_impl(p) }
}

/// `free_aligned_sized` (C23): frees `p` from an aligned allocation.
///
/// # Safety
/// As for [`hs_free`].
#[no_mangle]
pub unsafe extern "C" fn hs_free_aligned_sized(p: *mut c_void, _align: usize, _size: usize) {
    // SAFETY: forwarded contract.
    unsafe { free_impl(p) }
}

/// Writes the slabinfo table of the default domain to `fd` (what `HOTSLAB_STATS` prints at
/// exit). Returns 0 on success, -1 otherwise. Never allocates.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn hs_print_stats(fd: c_int) -> c_int {
    if hs::print_slabinfo(fd) {
        0
    } else {
        -1
    }
}

/// Makes the calling thread's next slabs follow its memory policy and cpuset as they are now
/// (after `set_mempolicy`, `numa_set_membind` or a cpuset change): hotslab otherwise reads them
/// once per thread. Never allocates.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn hs_refresh_mempolicy() {
    hs::refresh_mempolicy();
}

// ---- the standard names ---------------------------------------------------------------------

/// See [`hs_malloc`].
///
/// # Safety
/// As for [`hs_malloc`].
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    malloc_impl(size)
}

/// See [`hs_free`].
///
/// # Safety
/// As for [`hs_free`].
#[no_mangle]
pub unsafe extern "C" fn free(p: *mut c_void) {
    // SAFETY: forwarded.
    unsafe { free_impl(p) }
}

/// See [`hs_calloc`].
///
/// # Safety
/// As for [`hs_calloc`].
#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { hs_calloc(n, size) }
}

/// See [`hs_realloc`].
///
/// # Safety
/// As for [`hs_realloc`].
#[no_mangle]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { hs_realloc(p, size) }
}

/// See [`hs_reallocarray`].
///
/// # Safety
/// As for [`hs_realloc`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { hs_reallocarray(p, n, size) }
}

/// See [`hs_posix_memalign`].
///
/// # Safety
/// As for [`hs_posix_memalign`].
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    // SAFETY: forwarded.
    unsafe { hs_posix_memalign(out, align, size) }
}

/// See [`hs_aligned_alloc`].
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { hs_aligned_alloc(align, size) }
}

/// See [`hs_memalign`].
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { hs_memalign(align, size) }
}

/// See [`hs_valloc`].
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { hs_valloc(size) }
}

/// See [`hs_pvalloc`].
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { hs_pvalloc(size) }
}

/// See [`hs_malloc_usable_size`].
///
/// # Safety
/// As for [`hs_malloc_usable_size`].
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    // SAFETY: forwarded.
    unsafe { hs_malloc_usable_size(p) }
}

/// See [`hs_free_sized`].
///
/// # Safety
/// As for [`hs_free`].
#[no_mangle]
pub unsafe extern "C" fn free_sized(p: *mut c_void, size: usize) {
    // SAFETY: forwarded.
    unsafe { hs_free_sized(p, size) }
}

/// See [`hs_free_aligned_sized`].
///
/// # Safety
/// As for [`hs_free`].
#[no_mangle]
pub unsafe extern "C" fn free_aligned_sized(p: *mut c_void, align: usize, size: usize) {
    // SAFETY: forwarded.
    unsafe { hs_free_aligned_sized(p, align, size) }
}
