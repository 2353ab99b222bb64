//! glibc's extra malloc surface over hotslab: the `__libc_*` aliases (code that calls them
//! directly must not mix two allocators), `cfree`, `malloc_trim`, `mallinfo`/`mallinfo2`,
//! `mallopt`, `malloc_stats` and `malloc_info`. Nothing here allocates: reports are formatted
//! into stack buffers with `core::fmt` and written with `write(2)` or `fwrite`.
//!
//! `mallinfo2` fields (glibc's meaning → hotslab's figure):
//!
//! | field | glibc | hotslab |
//! |---|---|---|
//! | `arena` | bytes of the main heap (sbrk) | bytes of slab spans committed to slabs (all kmalloc caches) |
//! | `ordblks` | free chunks | free object slots in those slabs |
//! | `smblks`, `fsmblks`, `usmblks` | fastbins / unused | 0 |
//! | `hblks` | mmapped chunks | live large objects (each its own mapping) |
//! | `hblkhd` | bytes in mmapped chunks | bytes mapped for live large objects |
//! | `uordblks` | bytes in use (heap) | bytes of slab slots in use |
//! | `fordblks` | free bytes (heap) | `arena - uordblks`: free bytes inside slabs |
//! | `keepcost` | releasable top of heap | freed large mappings kept in the span cache (what `malloc_trim` unmaps for sure) |
//!
//! Blocks served by the early arena (before the allocator exists) are not counted.

use core::ffi::{c_int, c_void};
use core::fmt::{self, Write};

use crate::{
    free_impl, hs_calloc, hs_memalign, hs_pvalloc, hs_realloc, hs_valloc, malloc_impl,
    restore_errno, set_errno,
};

/// See `malloc`.
///
/// # Safety
/// As for `malloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_malloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    malloc_impl(size)
}

/// See `free`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn __libc_free(p: *mut c_void) {
    // SAFETY: forwarded.
    unsafe { free_impl(p) }
}

/// See `calloc`.
///
/// # Safety
/// As for `calloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { hs_calloc(n, size) }
}

/// See `realloc`.
///
/// # Safety
/// As for `realloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_realloc(p: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { hs_realloc(p, size) }
}

/// See `memalign`.
///
/// # Safety
/// As for `memalign`.
#[no_mangle]
pub unsafe extern "C" fn __libc_memalign(align: usize, size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { hs_memalign(align, size) }
}

/// See `valloc`.
///
/// # Safety
/// As for `valloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_valloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { hs_valloc(size) }
}

/// See `pvalloc`.
///
/// # Safety
/// As for `pvalloc`.
#[no_mangle]
pub unsafe extern "C" fn __libc_pvalloc(size: usize) -> *mut c_void {
    // SAFETY: forwarded.
    unsafe { hs_pvalloc(size) }
}

/// `cfree`: the old name of `free`.
///
/// # Safety
/// As for `free`.
#[no_mangle]
pub unsafe extern "C" fn cfree(p: *mut c_void) {
    // SAFETY: forwarded.
    unsafe { free_impl(p) }
}

/// `malloc_trim`: gives back every empty slab (all caches of the default domain; each thread
/// keeps its current slab per cache) and every cached large mapping. `pad` is ignored (hotslab
/// has no heap top to keep). Returns 1 if memory was released, else 0, as glibc.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn hs_malloc_trim(_pad: usize) -> c_int {
    restore_errno(|| c_int::from(hs::trim() > 0))
}

/// See [`hs_malloc_trim`].
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn malloc_trim(pad: usize) -> c_int {
    // SAFETY: forwarded.
    unsafe { hs_malloc_trim(pad) }
}

/// glibc's `struct mallinfo2`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Mallinfo2 {
    pub arena: usize,
    pub ordblks: usize,
    pub smblks: usize,
    pub hblks: usize,
    pub hblkhd: usize,
    pub usmblks: usize,
    pub fsmblks: usize,
    pub uordblks: usize,
    pub fordblks: usize,
    pub keepcost: usize,
}

/// glibc's `struct mallinfo` (the same fields as `int`, saturated here rather than wrapped).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Mallinfo {
    pub arena: c_int,
    pub ordblks: c_int,
    pub smblks: c_int,
    pub hblks: c_int,
    pub hblkhd: c_int,
    pub usmblks: c_int,
    pub fsmblks: c_int,
    pub uordblks: c_int,
    pub fordblks: c_int,
    pub keepcost: c_int,
}

fn info() -> Mallinfo2 {
    let Some(s) = hs::heap_stats() else {
        return Mallinfo2::default();
    };
    Mallinfo2 {
        arena: s.slab_bytes,
        ordblks: s.slab_free_slots,
        smblks: 0,
        hblks: s.large_count,
        hblkhd: s.large_bytes,
        usmblks: 0,
        fsmblks: 0,
        uordblks: s.slab_used_bytes,
        fordblks: s.slab_bytes.saturating_sub(s.slab_used_bytes),
        keepcost: s.large_cached_bytes,
    }
}

/// `mallinfo2`: heap figures from hotslab's statistics (see the module docs for the mapping).
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn mallinfo2() -> Mallinfo2 {
    restore_errno(info)
}

/// `mallinfo`: as [`mallinfo2`] in `int` fields (saturated at `INT_MAX`).
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn mallinfo() -> Mallinfo {
    let m = restore_errno(info);
    let i = |v: usize| c_int::try_from(v).unwrap_or(c_int::MAX);
    Mallinfo {
        arena: i(m.arena),
        ordblks: i(m.ordblks),
        smblks: i(m.smblks),
        hblks: i(m.hblks),
        hblkhd: i(m.hblkhd),
        usmblks: i(m.usmblks),
        fsmblks: i(m.fsmblks),
        uordblks: i(m.uordblks),
        fordblks: i(m.fordblks),
        keepcost: i(m.keepcost),
    }
}

const M_MXFAST: c_int = 1;
const M_NLBLKS: c_int = 2;
const M_GRAIN: c_int = 3;
const M_KEEP: c_int = 4;
const M_TRIM_THRESHOLD: c_int = -1;
const M_TOP_PAD: c_int = -2;
const M_MMAP_THRESHOLD: c_int = -3;
const M_MMAP_MAX: c_int = -4;
const M_CHECK_ACTION: c_int = -5;
const M_PERTURB: c_int = -6;
const M_ARENA_TEST: c_int = -7;
const M_ARENA_MAX: c_int = -8;

/// `mallopt`: every parameter glibc knows is accepted (1) and ignored — hotslab's size classes,
/// large-object threshold (32 KiB) and per-thread caches are fixed — except values glibc itself
/// refuses (`M_MXFAST` outside 0..=160, `M_MMAP_THRESHOLD` outside 0..=32 MiB: 0). An unknown
/// parameter gives 0.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn mallopt(param: c_int, value: c_int) -> c_int {
    match param {
        M_MXFAST => c_int::from((0..=160).contains(&value)),
        M_MMAP_THRESHOLD => c_int::from((0..=32 << 20).contains(&value)),
        M_NLBLKS | M_GRAIN | M_KEEP | M_TRIM_THRESHOLD | M_TOP_PAD | M_MMAP_MAX
        | M_CHECK_ACTION | M_PERTURB | M_ARENA_TEST | M_ARENA_MAX => 1,
        _ => 0,
    }
}

/// A `fmt::Write` into a stack buffer that hands full buffers to `sink`.
struct Chunked<'a, F: FnMut(&[u8])> {
    buf: [u8; 512],
    len: usize,
    sink: &'a mut F,
}

impl<'a, F: FnMut(&[u8])> Chunked<'a, F> {
    fn new(sink: &'a mut F) -> Self {
        Chunked {
            buf: [0; 512],
            len: 0,
            sink,
        }
    }

    fn flush(&mut self) {
        if self.len > 0 {
            (self.sink)(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl<F: FnMut(&[u8])> Write for Chunked<'_, F> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

fn write_fd(fd: c_int, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: writes an initialised buffer.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n <= 0 {
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

/// `malloc_stats`: glibc's summary (system bytes = bytes mapped by hotslab's page source, in use
/// bytes = slab slots in use plus live large mappings), then hotslab's slabinfo table, on
/// stderr. Never allocates.
///
/// # Safety
/// Always safe to call.
#[no_mangle]
pub unsafe extern "C" fn malloc_stats() {
    restore_errno(|| {
        let s = hs::heap_stats().unwrap_or_default();
        let mut sink = |b: &[u8]| write_fd(2, b);
        let mut w = Chunked::new(&mut sink);
        let used = s.slab_used_bytes + s.large_bytes;
        let _ = write!(
            w,
            "Arena 0:\nsystem bytes     = {:>10}\nin use bytes     = {:>10}\n\
             Total (incl. mmap):\nsystem bytes     = {:>10}\nin use bytes     = {:>10}\n\
             max mmap regions = {:>10}\nmax mmap bytes   = {:>10}\n",
            s.slab_bytes, s.slab_used_bytes, s.mapped_bytes, used, s.large_count, s.large_bytes
        );
        w.flush();
        hs::print_slabinfo(2);
    })
}

/// `malloc_info`: glibc's XML layout — one `<heap>` whose `<size>` lines are the kmalloc classes
/// that have free slots (`from`/`to` = slot size, `count` = free slots, `total` = their bytes),
/// then the totals (`rest` = free slab bytes, `mmap` = live large objects) and the system
/// figures. `options` must be 0 (else `EINVAL`, -1). Written to `stream` with `fwrite` from a
/// stack buffer; returns 0.
///
/// # Safety
/// `stream` is a valid `FILE *` open for writing.
#[no_mangle]
pub unsafe extern "C" fn malloc_info(options: c_int, stream: *mut libc::FILE) -> c_int {
    if options != 0 {
        set_errno(libc::EINVAL);
        return -1;
    }
    restore_errno(|| {
        let s = hs::heap_stats().unwrap_or_default();
        let mut sink = |b: &[u8]| {
            // SAFETY: stream is a valid FILE (caller contract); b is an initialised buffer.
            unsafe { libc::fwrite(b.as_ptr().cast(), 1, b.len(), stream) };
        };
        let mut w = Chunked::new(&mut sink);
        let _ = w.write_str("<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n");
        let (mut free_slots, mut free_bytes) = (0usize, 0usize);
        hs::for_each_kmalloc_cache(|_, st| {
            let free = st.total_objects.saturating_sub(st.active_objects);
            if free > 0 {
                free_slots += free;
                free_bytes += free * st.stride;
                let _ = writeln!(
                    w,
                    "<size from=\"{0}\" to=\"{0}\" total=\"{1}\" count=\"{2}\"/>",
                    st.stride,
                    free * st.stride,
                    free
                );
            }
        });
        let _ = write!(
            w,
            "</sizes>\n<total type=\"fast\" count=\"0\" size=\"0\"/>\n\
             <total type=\"rest\" count=\"{free_slots}\" size=\"{free_bytes}\"/>\n\
             <system type=\"current\" size=\"{sb}\"/>\n<system type=\"max\" size=\"{sb}\"/>\n\
             <aspace type=\"total\" size=\"{sb}\"/>\n<aspace type=\"mprotect\" size=\"{sb}\"/>\n\
             </heap>\n<total type=\"fast\" count=\"0\" size=\"0\"/>\n\
             <total type=\"rest\" count=\"{free_slots}\" size=\"{free_bytes}\"/>\n\
             <total type=\"mmap\" count=\"{lc}\" size=\"{lb}\"/>\n\
             <system type=\"current\" size=\"{mb}\"/>\n<system type=\"max\" size=\"{mb}\"/>\n\
             <aspace type=\"total\" size=\"{mb}\"/>\n<aspace type=\"mprotect\" size=\"{mb}\"/>\n\
             </malloc>\n",
            sb = s.slab_bytes,
            lc = s.large_count,
            lb = s.large_bytes,
            mb = s.mapped_bytes,
        );
        w.flush();
        0
    })
}
