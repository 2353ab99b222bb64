//! AddressSanitizer's manual poisoning interface (cargo feature `asan`, for builds with
//! `-Zsanitizer=address` only): free objects of normal slabs are poisoned so that ASan reports a
//! use after free. Without the feature every function is an empty inline no-op. No allocator state.
//!
//! The free-pointer word of a free object stays unpoisoned (hotslab itself reads and writes it);
//! debug slabs are never poisoned (their own checks read free objects).

#[cfg(feature = "asan")]
mod imp {
    use core::ffi::c_void;

    extern "C" {
        fn __asan_poison_memory_region(addr: *const c_void, size: usize);
        fn __asan_unpoison_memory_region(addr: *const c_void, size: usize);
    }

    #[inline(always)]
    pub fn poison(p: *const u8, len: usize) {
        // SAFETY: the ASan runtime only marks shadow memory for the range; it never touches the
        // range itself, and the range belongs to a slab span this process maps.
        unsafe { __asan_poison_memory_region(p.cast(), len) }
    }

    #[inline(always)]
    pub fn unpoison(p: *const u8, len: usize) {
        // SAFETY: as for poison.
        unsafe { __asan_unpoison_memory_region(p.cast(), len) }
    }
}

#[cfg(not(feature = "asan"))]
mod imp {
    #[inline(always)]
    pub fn poison(_p: *const u8, _len: usize) {}

    #[inline(always)]
    pub fn unpoison(_p: *const u8, _len: usize) {}
}

pub(crate) use imp::unpoison;

/// Poisons the free object at `obj` (a slot of `stride` bytes) except its free-pointer word at
/// `fp_off`.
#[inline(always)]
pub(crate) fn poison_free_object(obj: *mut u8, stride: u32, fp_off: u32) {
    let (stride, fp) = (stride as usize, fp_off as usize);
    imp::poison(obj, fp);
    imp::poison(obj.wrapping_add(fp + 8), stride - fp - 8);
}
