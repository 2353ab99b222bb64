//! The early arena: blocks for malloc-family calls that arrive before the default domain exists
//! (calls made while it is being built, by the builder itself, or every call if building
//! failed). A bump allocator over static memory with a size header in front of each block, so
//! `realloc` and `malloc_usable_size` work on them; blocks are never reused. Must not allocate.

use core::cell::UnsafeCell;
use core::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

const SIZE: usize = 256 * 1024;
const HEADER: usize = 16;

#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; SIZE]>);
// SAFETY: blocks are handed out by an atomic bump pointer; each block (and its header) is
// written only by the thread that got it.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; SIZE]));
static USED: AtomicUsize = AtomicUsize::new(0);
/// Blocks handed out (for statistics and tests).
pub static ALLOCS: AtomicUsize = AtomicUsize::new(0);

fn base() -> usize {
    ARENA.0.get() as usize
}

/// A zeroed block of `size` bytes aligned to `align` (a power of two), or null when the arena
/// is exhausted.
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    let align = align.max(HEADER);
    let base = base();
    let mut cur = USED.load(Ordering::Relaxed);
    loop {
        // Align the address, not the offset: the arena itself is only 4096-aligned.
        let Some(start) = (base + cur + HEADER)
            .checked_add(align - 1)
            .map(|a| (a & !(align - 1)) - base)
        else {
            return ptr::null_mut();
        };
        let end = match start.checked_add(size) {
            Some(e) if e <= SIZE => e,
            _ => return ptr::null_mut(),
        };
        match USED.compare_exchange_weak(cur, end, Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => {
                ALLOCS.fetch_add(1, Ordering::Relaxed);
                // SAFETY: [start - HEADER, end) lies inside the arena and is ours alone; the
                // header word is 8-byte aligned (start is 16-aligned).
                unsafe {
                    let p = (ARENA.0.get() as *mut u8).add(start);
                    p.sub(8).cast::<usize>().write(size);
                    return p;
                }
            }
            Err(c) => cur = c,
        }
    }
}

/// Whether `p` points into the early arena.
#[inline(always)]
pub fn contains(p: *const u8) -> bool {
    let a = p as usize;
    a >= base() && a < base() + SIZE
}

/// The size a block was allocated with.
///
/// # Safety
/// `p` is a block returned by [`alloc`].
pub unsafe fn size_of(p: *const u8) -> usize {
    // SAFETY: every block has its size in the 8 bytes before it (caller contract).
    unsafe { p.sub(8).cast::<usize>().read() }
}
