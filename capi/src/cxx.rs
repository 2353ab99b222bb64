//! The C++ allocation operators, exported under their x86-64 Itanium-ABI names so that C++
//! programs reach hotslab directly instead of through libstdc++'s operators and `malloc`:
//! `new`, `new[]` (plain, `nothrow`, `align_val_t`, aligned `nothrow`) and `delete`, `delete[]`
//! (plain, sized, `nothrow`, aligned, sized aligned, aligned `nothrow`).
//!
//! Failure of a throwing `new` follows the standard as far as it can without linking
//! libstdc++: the current new-handler (`std::get_new_handler`, looked up with `dlsym` at failure
//! time) is called and the allocation retried while there is one; with none, a `std::bad_alloc`
//! is thrown through `__cxa_allocate_exception` / `__cxa_throw` (also looked up with `dlsym`;
//! the exception object is the bare vtable pointer the ABI lays out). A program that does not
//! have libstdc++ loaded cannot catch a C++ exception anyway: then the process aborts with
//! "hotslab: operator new: out of memory". `nothrow` forms return null on failure without calling
//! the new-handler. An alignment that is not a power of two (undefined behaviour in C++) is
//! treated as a failure. Sizes and alignments are only hints to `delete`: any form frees any
//! block, as `free` does.

use core::ffi::{c_char, c_void, CStr};
use core::ptr;

use crate::{die, free_impl, hs_aligned_alloc, malloc_impl};

/// `std::align_val_t` (an enum class over `size_t`).
type AlignVal = usize;
/// `const std::nothrow_t &` (never read).
type Nothrow = *const c_void;

type NewHandler = Option<unsafe extern "C-unwind" fn()>;

fn sym(name: &CStr) -> *mut c_void {
    // SAFETY: a NUL-terminated name; RTLD_DEFAULT searches the global scope.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr().cast::<c_char>()) }
}

#[inline(always)]
fn try_alloc(size: usize, align: usize) -> *mut c_void {
    if align <= 8 {
        // SAFETY: always safe.
        malloc_impl(size)
    } else if align.is_power_of_two() {
        // SAFETY: always safe.
        unsafe { hs_aligned_alloc(align, size) }
    } else {
        ptr::null_mut()
    }
}

#[inline(always)]
fn new_throwing(size: usize, align: usize) -> *mut c_void {
    let p = try_alloc(size, align);
    if p.is_null() {
        return new_failed(size, align);
    }
    p
}

/// The failure path of a throwing `new`: the new-handler loop, then `std::bad_alloc`.
#[cold]
#[inline(never)]
fn new_failed(size: usize, align: usize) -> *mut c_void {
    loop {
        let get = sym(c"_ZSt15get_new_handlerv");
        let handler: NewHandler = if get.is_null() {
            None
        } else {
            // SAFETY: `std::get_new_handler()` has this signature (noexcept, returns a function
            // pointer or null).
            unsafe { core::mem::transmute::<*mut c_void, extern "C" fn() -> NewHandler>(get)() }
        };
        let Some(h) = handler else {
            throw_bad_alloc();
        };
        // SAFETY: a new-handler takes no arguments; it may return, throw (we let the exception
        // pass: every frame up to the caller is "C-unwind" or Rust) or end the process.
        unsafe { h() };
        let p = try_alloc(size, align);
        if !p.is_null() {
            return p;
        }
    }
}

type AllocException = unsafe extern "C" fn(usize) -> *mut c_void;
type Dtor = unsafe extern "C" fn(*mut c_void);
type CxaThrow = unsafe extern "C-unwind" fn(*mut c_void, *mut c_void, Option<Dtor>) -> !;

#[cold]
fn throw_bad_alloc() -> ! {
    let alloc = sym(c"__cxa_allocate_exception");
    let throw = sym(c"__cxa_throw");
    let tinfo = sym(c"_ZTISt9bad_alloc");
    let vtable = sym(c"_ZTVSt9bad_alloc");
    let dtor = sym(c"_ZNSt9bad_allocD1Ev");
    if alloc.is_null() || throw.is_null() || tinfo.is_null() || vtable.is_null() || dtor.is_null() {
        die(b"hotslab: operator new: out of memory\n");
    }
    // SAFETY: the symbols are libstdc++'s, with the Itanium C++ ABI signatures above.
    // `std::bad_alloc` is one vtable pointer (8 bytes); the ABI's vtable pointer points past the
    // vtable's offset-to-top and RTTI words, 16 bytes into `_ZTVSt9bad_alloc`.
    unsafe {
        let alloc = core::mem::transmute::<*mut c_void, AllocException>(alloc);
        let throw = core::mem::transmute::<*mut c_void, CxaThrow>(throw);
        let dtor = core::mem::transmute::<*mut c_void, Dtor>(dtor);
        let obj = alloc(core::mem::size_of::<*const c_void>());
        if obj.is_null() {
            die(b"hotslab: operator new: out of memory\n");
        }
        obj.cast::<*const u8>()
            .write(vtable.cast::<u8>().add(2 * core::mem::size_of::<usize>()));
        throw(obj, tinfo, Some(dtor))
    }
}

#[inline(always)]
fn delete(p: *mut c_void) {
    // SAFETY: C++ hands `delete` only what `new` returned (or null).
    unsafe { free_impl(p) }
}

/// `operator new(size_t)`.
///
/// # Safety
/// Always safe to call; failure throws `std::bad_alloc` (see the module docs).
#[export_name = "_Znwm"]
pub unsafe extern "C-unwind" fn cxx_new(size: usize) -> *mut c_void {
    new_throwing(size, 1)
}

/// `operator new[](size_t)`.
///
/// # Safety
/// As for [`cxx_new`].
#[export_name = "_Znam"]
pub unsafe extern "C-unwind" fn cxx_new_array(size: usize) -> *mut c_void {
    new_throwing(size, 1)
}

/// `operator new(size_t, const std::nothrow_t &)`: null on failure.
///
/// # Safety
/// Always safe to call.
#[export_name = "_ZnwmRKSt9nothrow_t"]
pub unsafe extern "C" fn cxx_new_nothrow(size: usize, _: Nothrow) -> *mut c_void {
    try_alloc(size, 1)
}

/// `operator new[](size_t, const std::nothrow_t &)`: null on failure.
///
/// # Safety
/// Always safe to call.
#[export_name = "_ZnamRKSt9nothrow_t"]
pub unsafe extern "C" fn cxx_new_array_nothrow(size: usize, _: Nothrow) -> *mut c_void {
    try_alloc(size, 1)
}

/// `operator new(size_t, std::align_val_t)`.
///
/// # Safety
/// As for [`cxx_new`].
#[export_name = "_ZnwmSt11align_val_t"]
pub unsafe extern "C-unwind" fn cxx_new_aligned(size: usize, align: AlignVal) -> *mut c_void {
    new_throwing(size, align)
}

/// `operator new[](size_t, std::align_val_t)`.
///
/// # Safety
/// As for [`cxx_new`].
#[export_name = "_ZnamSt11align_val_t"]
pub unsafe extern "C-unwind" fn cxx_new_array_aligned(size: usize, align: AlignVal) -> *mut c_void {
    new_throwing(size, align)
}

/// `operator new(size_t, std::align_val_t, const std::nothrow_t &)`: null on failure.
///
/// # Safety
/// Always safe to call.
#[export_name = "_ZnwmSt11align_val_tRKSt9nothrow_t"]
pub unsafe extern "C" fn cxx_new_aligned_nothrow(
    size: usize,
    align: AlignVal,
    _: Nothrow,
) -> *mut c_void {
    try_alloc(size, align)
}

/// `operator new[](size_t, std::align_val_t, const std::nothrow_t &)`: null on failure.
///
/// # Safety
/// Always safe to call.
#[export_name = "_ZnamSt11align_val_tRKSt9nothrow_t"]
pub unsafe extern "C" fn cxx_new_array_aligned_nothrow(
    size: usize,
    align: AlignVal,
    _: Nothrow,
) -> *mut c_void {
    try_alloc(size, align)
}

/// `operator delete(void *)`.
///
/// # Safety
/// `p` is null or came from one of the `new` operators and is not used again.
#[export_name = "_ZdlPv"]
pub unsafe extern "C" fn cxx_delete(p: *mut c_void) {
    delete(p)
}

/// `operator delete[](void *)`.
///
/// # Safety
/// As for [`cxx_delete`].
#[export_name = "_ZdaPv"]
pub unsafe extern "C" fn cxx_delete_array(p: *mut c_void) {
    delete(p)
}

/// `operator delete(void *, size_t)`.
///
/// # Safety
/// As for [`cxx_delete`].
#[export_name = "_ZdlPvm"]
pub unsafe extern "C" fn cxx_delete_sized(p: *mut c_void, _size: usize) {
    delete(p)
}

/// `operator delete[](void *, size_t)`.
///
/// # Safety
/// As for [`cxx_delete`].
#[export_name = "_ZdaPvm"]
pub unsafe extern "C" fn cxx_delete_array_sized(p: *mut c_void, _size: usize) {
    delete(p)
}

/// `operator delete(void *, const std::nothrow_t &)`.
///
/// # Safety
/// As for [`cxx_delete`].
#[export_name = "_ZdlPvRKSt9nothrow_t"]
pub unsafe extern "C" fn cxx_delete_nothrow(p: *mut c_void, _: Nothrow) {
    delete(p)
}

/// `operator delete[](void *, const std::nothrow_t &)`.
///
/// # Safety
/// As for [`cxx_delete`].
#[export_name = "_ZdaPvRKSt9nothrow_t"]
pub unsafe extern "C" fn cxx_delete_array_nothrow(p: *mut c_void, _: Nothrow) {
    delete(p)
}

/// `operator delete(void *, std::align_val_t)`.
///
/// # Safety
/// As for [`cxx_delete`].
#[export_name = "_ZdlPvSt11align_val_t"]
pub unsafe extern "C" fn cxx_delete_aligned(p: *mut c_void, _align: AlignVal) {
    delete(p)
}

/// `operator delete[](void *, std::align_val_t)`.
///
/// # Safety
/// As for [`cxx_delete`].
#[export_name = "_ZdaPvSt11align_val_t"]
pub unsafe extern "C" fn cxx_delete_array_aligned(p: *mut c_void, _align: AlignVal) {
    delete(p)
}

/// `operator delete(void *, size_t, std::align_val_t)`.
///
/// # Safety
/// As for [`cxx_delete`].
#[export_name = "_ZdlPvmSt11align_val_t"]
pub unsafe extern "C" fn cxx_delete_sized_aligned(p: *mut c_void, _size: usize, _align: AlignVal) {
    delete(p)
}

/// `operator delete[](void *, size_t, std::align_val_t)`.
///
/// # Safety
/// As for [`cxx_delete`].
#[export_name = "_ZdaPvmSt11align_val_t"]
pub unsafe extern "C" fn cxx_delete_array_sized_aligned(
    p: *mut c_void,
    _size: usize,
    _align: AlignVal,
) {
    delete(p)
}

/// `operator delete(void *, std::align_val_t, const std::nothrow_t &)`.
///
/// # Safety
/// As for [`cxx_delete`].
#[export_name = "_ZdlPvSt11align_val_tRKSt9nothrow_t"]
pub unsafe extern "C" fn cxx_delete_aligned_nothrow(p: *mut c_void, _align: AlignVal, _: Nothrow) {
    delete(p)
}

/// `operator delete[](void *, std::align_val_t, const std::nothrow_t &)`.
///
/// # Safety
/// As for [`cxx_delete`].
#[export_name = "_ZdaPvSt11align_val_tRKSt9nothrow_t"]
pub unsafe extern "C" fn cxx_delete_array_aligned_nothrow(
    p: *mut c_void,
    _align: AlignVal,
    _: Nothrow,
) {
    delete(p)
}
