//! Starting hotslab's own helper threads (the background purger, the default domain's hotplug
//! follower): a detached pthread with every signal blocked, so the program's signal handlers
//! never run on it. Owns nothing but that recipe; what a thread does is its caller's.

/// Starts `run` on a new detached thread with a `stack`-byte stack and every signal blocked;
/// false if the C library refused. `errno` is left as the caller had it.
///
/// Call it holding no hotslab lock: glibc allocates the new thread's TLS with `malloc`, which
/// re-enters hotslab.
pub(crate) fn spawn_detached(
    stack: usize,
    run: extern "C" fn(*mut libc::c_void) -> *mut libc::c_void,
) -> bool {
    let _e = crate::mem::KeepErrno::new();
    // SAFETY: plain pthread calls on local, initialised attribute and signal-set storage; `run`
    // is an extern "C" fn, so it cannot unwind into the C library.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        let mut ok = libc::pthread_attr_init(&mut attr) == 0;
        ok = ok && libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED) == 0;
        ok = ok && libc::pthread_attr_setstacksize(&mut attr, stack) == 0;
        // The new thread inherits this mask: block everything around its creation.
        let mut all: libc::sigset_t = core::mem::zeroed();
        let mut old: libc::sigset_t = core::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        // zeroed: pthread_t is an integer or a pointer depending on the C library.
        let mut tid: libc::pthread_t = core::mem::zeroed();
        ok = ok && libc::pthread_create(&mut tid, &attr, run, core::ptr::null_mut()) == 0;
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, core::ptr::null_mut());
        libc::pthread_attr_destroy(&mut attr);
        ok
    }
}
