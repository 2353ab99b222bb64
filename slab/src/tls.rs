//! The one thread-local word hotslab's fast paths read: the calling thread's heap pointer.
//!
//! On x86-64 Linux the word is an initial-exec TLS variable declared in assembly, so every
//! access is one `mov` from `%fs` — also inside `libhotslab.so`, where Rust's own
//! `thread_local!` would go through `__tls_get_addr` (a general-dynamic access) on every malloc
//! and free. The linker resolves the `@gottpoff` reference to a fixed offset from the thread
//! pointer (a `R_X86_64_TPOFF64` relocation in a shared object, a constant in an executable);
//! the object then needs static TLS, as mimalloc's `-ftls-model=initial-exec` build does, which
//! glibc provides for preloaded libraries and, within its surplus, for `dlopen`ed ones.
//!
//! Elsewhere (other targets, Miri, loom) it is an ordinary `thread_local!` cell. Owns nothing
//! but the word; what it points at is `heap.rs`'s business.

use crate::heap::Heap;

#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri), not(loom)))]
mod imp {
    use super::Heap;

    // An 8-byte, zero-initialised TLS object (`.tbss`). Hidden: each linked image (an executable,
    // libhotslab.so) has its own, resolved inside the image.
    core::arch::global_asm!(
        ".pushsection .tbss,\"awT\",@nobits",
        ".p2align 3",
        ".globl __hotslab_tls_heap_v1",
        ".hidden __hotslab_tls_heap_v1",
        ".type __hotslab_tls_heap_v1, @object",
        ".size __hotslab_tls_heap_v1, 8",
        "__hotslab_tls_heap_v1:",
        ".zero 8",
        ".popsection",
    );

    /// The calling thread's heap (null before its first slow path).
    #[inline(always)]
    pub fn get() -> *mut Heap {
        let p: *mut Heap;
        // SAFETY: reads the thread's own 8-byte TLS word at the offset the linker put in the GOT
        // entry; no memory is written, the stack is untouched.
        unsafe {
            core::arch::asm!(
                "mov {p}, qword ptr [rip + __hotslab_tls_heap_v1@GOTTPOFF]",
                "mov {p}, qword ptr fs:[{p}]",
                p = out(reg) p,
                options(nostack, readonly, preserves_flags, pure),
            );
        }
        p
    }

    /// Sets the calling thread's heap.
    #[inline]
    pub fn set(h: *mut Heap) {
        // SAFETY: writes the thread's own TLS word (see `get`).
        unsafe {
            core::arch::asm!(
                "mov {t}, qword ptr [rip + __hotslab_tls_heap_v1@GOTTPOFF]",
                "mov qword ptr fs:[{t}], {h}",
                t = out(reg) _,
                h = in(reg) h,
                options(nostack, preserves_flags),
            );
        }
    }
}

#[cfg(all(
    not(loom),
    not(all(target_arch = "x86_64", target_os = "linux", not(miri)))
))]
mod imp {
    use super::Heap;
    use core::cell::Cell;

    std::thread_local! {
        // const-initialised and drop-free: no lazy registration, no allocation.
        static HEAP: Cell<*mut Heap> = const { Cell::new(core::ptr::null_mut()) };
    }

    #[inline(always)]
    pub fn get() -> *mut Heap {
        HEAP.try_with(Cell::get).unwrap_or(core::ptr::null_mut())
    }

    #[inline]
    pub fn set(h: *mut Heap) {
        let _ = HEAP.try_with(|c| c.set(h));
    }
}

#[cfg(loom)]
mod imp {
    use super::Heap;
    use core::cell::Cell;

    loom::thread_local! {
        static HEAP: Cell<*mut Heap> = Cell::new(core::ptr::null_mut());
    }

    pub fn get() -> *mut Heap {
        HEAP.with(Cell::get)
    }

    pub fn set(h: *mut Heap) {
        HEAP.with(|c| c.set(h));
    }
}

pub(crate) use imp::{get, set};
