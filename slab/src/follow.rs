//! The default domain follows memory hotplug by itself: one detached `hotslab-follow` thread
//! runs the hotplug crate's follower (netlink uevents as triggers, sysfs `has_memory` as the
//! truth, a periodic re-scan) over the default domain, so a node that gains memory gets a part in
//! every cache and a node that loses it has its parts drained and retired, without the program
//! doing anything. Owns the thread's state word, its start and its fork reset; the following
//! itself is `hotslab_hotplug::linux`'s.
//!
//! Started lazily, like the background purger (`background.rs`): from the global allocator's
//! slow paths (and from `kmalloc`/`kmalloc_node`) once the default domain is built (never inside the bootstrap, never while hotslab
//! holds a lock), with raw `pthread_create` (signals blocked, a fixed stack, no std spawn, which
//! reads the environment under a lock). Everything that allocates (the netlink socket, the first
//! sysfs scan, the status) happens on the new thread. The fast paths never look at it; the slow
//! paths pay one relaxed load. Not started under Miri or loom, with `HOTSLAB_FOLLOW=0`, for a
//! simulated topology (`HOTSLAB_NODES`: its nodes are not the kernel's), or when the kernel's
//! `possible` mask has one node (nothing can ever change). A `fork` child starts its own.
//!
//! The follower also watches the process's cpuset: when `mems_allowed` changes it makes every
//! thread read its policy and cpuset again (`placement::invalidate_all`) before its next slab.

use std::sync::atomic::{AtomicU8, Ordering};

/// Not started (or in a fork child).
const IDLE: u8 = 0;
/// A thread is being created, or is setting the follower up.
const STARTING: u8 = 1;
/// The follower runs.
const RUNNING: u8 = 2;
/// Off: `HOTSLAB_FOLLOW=0`.
const OFF: u8 = 3;
/// Not needed (one possible node, a simulated topology), or the thread or the follower could
/// not be started, or its event loop ended.
#[cfg_attr(any(miri, loom), allow(dead_code))] // set by the thread start only
const STOPPED: u8 = 4;

static STATE: AtomicU8 = AtomicU8::new(IDLE);

/// `HOTSLAB_FOLLOW=0`: never start the follower.
pub(crate) fn disable() {
    STATE.store(OFF, Ordering::Relaxed);
}

/// Whether following is off by the knob.
pub(crate) fn is_off() -> bool {
    STATE.load(Ordering::Relaxed) == OFF
}

/// Whether the default domain's follower thread runs.
#[cfg_attr(loom, allow(dead_code))] // linux.rs is not built under loom
pub fn follower_running() -> bool {
    STATE.load(Ordering::Acquire) == RUNNING
}

/// From the global allocator's slow paths (no hotslab lock held): starts the follower if it
/// has not been started. One relaxed load once it runs or is off.
#[inline]
pub(crate) fn poll() {
    if STATE.load(Ordering::Relaxed) == IDLE {
        start();
    }
}

#[cold]
fn start() {
    #[cfg(not(any(miri, loom)))]
    imp::start();
}

/// In a fork child: the parent's thread does not exist here (its handle is forgotten).
#[cfg_attr(loom, allow(dead_code))] // fork.rs is not built under loom
pub(crate) fn after_fork_child() {
    #[cfg(not(any(miri, loom)))]
    imp::forget_handle();
    let s = STATE.load(Ordering::Relaxed);
    if s == RUNNING || s == STARTING {
        STATE.store(IDLE, Ordering::Relaxed);
    }
}

#[cfg(not(any(miri, loom)))]
pub(crate) use imp::{status, with_handle};

#[cfg(not(any(miri, loom)))]
mod imp {
    use super::*;
    use std::sync::atomic::AtomicPtr;
    use std::sync::Arc;

    use hotslab_hotplug::linux::{
        follow_task, process_mems_allowed, FollowConfig, FollowStatus, FollowerHandle, MemsAllowed,
        UeventSource,
    };
    use hotslab_numa::NodeMask;

    /// The running follower's handle (leaked: the thread runs until the process ends).
    static HANDLE: AtomicPtr<FollowerHandle> = AtomicPtr::new(core::ptr::null_mut());

    pub(super) fn start() {
        let Some(d) = crate::global::default_domain() else {
            return;
        };
        let topo = d.topology();
        let fake = crate::knobs::sysfs_root().is_some();
        if topo.is_simulated() || (topo.possible_nodes().weight() <= 1 && !fake) {
            let _ = STATE.compare_exchange(IDLE, STOPPED, Ordering::Relaxed, Ordering::Relaxed);
            return;
        }
        if STATE
            .compare_exchange(IDLE, STARTING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let ok = crate::spawn::spawn_detached(1 << 20, run);
        if !ok {
            STATE.store(STOPPED, Ordering::Release);
        }
    }

    extern "C" fn run(_: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, c"hotslab-follow".as_ptr()) };
        // An ordinary thread from here on: it may allocate (through hotslab, holding nothing).
        // A panic must not unwind into C.
        let _ = std::panic::catch_unwind(follow_default);
        if STATE.load(Ordering::Relaxed) != IDLE {
            // Not a fork child's reset: the loop ended or never started.
            STATE.store(STOPPED, Ordering::Release);
        }
        core::ptr::null_mut()
    }

    fn follow_default() {
        let Some(d) = crate::global::default_domain() else {
            return;
        };
        let mut config = FollowConfig::default();
        if let Some(root) = crate::knobs::sysfs_root() {
            use std::os::unix::ffi::OsStrExt;
            config = config.sysfs_root(std::ffi::OsStr::from_bytes(root));
            config = match crate::knobs::mems_file() {
                Some(file) => {
                    config.mems_allowed(MemsAllowed::Custom(Arc::new(watch(move || {
                        hotslab_numa::sysfs::read_status_mems_allowed_at(file).ok()
                    }))))
                }
                None => config.mems_allowed(MemsAllowed::Ignore),
            };
        } else {
            config = config.mems_allowed(MemsAllowed::Custom(Arc::new(watch_mems_allowed())));
        }
        // Test hook: recorded uevents from a datagram socket bound at this path.
        if let Some(path) = std::env::var_os("HOTSLAB_TEST_UEVENT_SOCKET") {
            let _ = std::fs::remove_file(&path);
            match std::os::unix::net::UnixDatagram::bind(&path) {
                Ok(s) => config = config.source(UeventSource::Datagram(s)),
                Err(_) => return,
            }
        }
        if let Some(ms) = std::env::var("HOTSLAB_TEST_FOLLOW_RESCAN_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            config = config.rescan_interval(std::time::Duration::from_millis(ms.max(1)));
        }
        let netlink = matches!(config.source, UeventSource::Netlink);
        let started = match follow_task(d, config) {
            Ok(t) => Ok(t),
            Err(_) if netlink => {
                // Netlink refused (a sandbox): periodic re-scans only.
                let mut c = FollowConfig::default().source(UeventSource::None);
                c = c.mems_allowed(MemsAllowed::Custom(Arc::new(watch_mems_allowed())));
                follow_task(d, c)
            }
            Err(e) => Err(e),
        };
        let Ok((handle, task)) = started else {
            return;
        };
        let h = Box::into_raw(Box::new(handle));
        let old = HANDLE.swap(h, Ordering::AcqRel);
        // A handle left by a parent process's thread is never dropped (its drop would signal a
        // loop that does not exist here); `forget_handle` cleared it already in a fork child.
        let _ = old;
        if STATE
            .compare_exchange(STARTING, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        task.run();
    }

    /// The process's `mems_allowed` for the follower, telling the placement code when it changed.
    fn watch_mems_allowed() -> impl Fn() -> Option<NodeMask> + Send + Sync {
        watch(process_mems_allowed)
    }

    /// `source` for the follower, telling the placement code when its answer changed.
    fn watch(
        source: impl Fn() -> Option<NodeMask> + Send + Sync,
    ) -> impl Fn() -> Option<NodeMask> + Send + Sync {
        let last = std::sync::Mutex::new(None::<NodeMask>);
        move || {
            let now = source();
            let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some() && *last != now {
                crate::placement::invalidate_all();
            }
            *last = now;
            now
        }
    }

    pub(super) fn forget_handle() {
        // Leaked on purpose: the thread it names does not exist in the child.
        HANDLE.store(core::ptr::null_mut(), Ordering::Release);
    }

    /// Calls `f` with the running follower's handle.
    pub(crate) fn with_handle<R>(f: impl FnOnce(&FollowerHandle) -> R) -> Option<R> {
        let h = HANDLE.load(Ordering::Acquire);
        if h.is_null() || !follower_running() {
            return None;
        }
        // SAFETY: a published handle is never freed.
        Some(f(unsafe { &*h }))
    }

    /// The default follower's status, if it runs.
    pub(crate) fn status() -> Option<FollowStatus> {
        with_handle(FollowerHandle::status)
    }
}
