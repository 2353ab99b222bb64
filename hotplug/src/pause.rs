//! Named pause points inside the hotplug state machines (DESIGN.md §4): the controller calls
//! [`point`] at fixed stages; a process-wide hook, registered by a race demo or stress test, may stop there
//! to widen a race window. Only the hook mechanism lives here (the waiting logic belongs to the slab crate).
//!
//! Pause points exist only with the `pause-points` feature and outside loom; otherwise [`point`] is an empty
//! inline function and [`set_hook`] stores nothing.

use crate::NodeId;

/// Stage names the controller passes to [`point`].
pub mod names {
    /// Online: every callback accepted GOING_ONLINE, the node is not in the masks yet.
    pub const ONLINE_AFTER_GOING_ONLINE: &str = "online:after-going-online";
    /// Online: the node is in the masks, ONLINE not sent yet.
    pub const ONLINE_AFTER_MASK_SET: &str = "online:after-mask-set";
    /// Offline: every callback accepted GOING_OFFLINE, the node is still in the masks.
    pub const OFFLINE_AFTER_GOING_OFFLINE: &str = "offline:after-going-offline";
    /// Offline: the node left the masks, OFFLINE not sent yet.
    pub const OFFLINE_AFTER_MASK_CLEAR: &str = "offline:after-mask-clear";
}

/// A pause hook: called with the stage name and the node, on the controller's thread, while it holds the
/// online-mems write side.
pub type PauseHook = fn(&'static str, NodeId);

/// Are pause points compiled in?
pub const fn enabled() -> bool {
    cfg!(all(feature = "pause-points", not(loom)))
}

#[cfg(all(feature = "pause-points", not(loom)))]
mod imp {
    use super::PauseHook;
    use crate::NodeId;
    use std::sync::Mutex;

    // A std mutex (const, non-allocating): pause points are off the fast path and never modelled by loom.
    static HOOK: Mutex<Option<PauseHook>> = Mutex::new(None);

    pub(super) fn set_hook(hook: Option<PauseHook>) -> Option<PauseHook> {
        let mut h = HOOK.lock().unwrap_or_else(|p| p.into_inner());
        core::mem::replace(&mut *h, hook)
    }

    #[inline]
    pub(super) fn point(name: &'static str, node: NodeId) {
        // Copy the hook out first: it may run long and may itself call `set_hook`.
        let hook = *HOOK.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(hook) = hook {
            hook(name, node);
        }
    }
}

/// Installs (or with `None` removes) the process-wide pause hook; returns the previous one. Without the
/// `pause-points` feature (or under loom) nothing is stored and `None` is returned.
pub fn set_hook(hook: Option<PauseHook>) -> Option<PauseHook> {
    #[cfg(all(feature = "pause-points", not(loom)))]
    {
        imp::set_hook(hook)
    }
    #[cfg(not(all(feature = "pause-points", not(loom))))]
    {
        let _ = hook;
        None
    }
}

/// A pause point: calls the registered hook with `name` and `node` when pause points are enabled;
/// otherwise compiles to nothing.
#[inline(always)]
pub fn point(name: &'static str, node: NodeId) {
    #[cfg(all(feature = "pause-points", not(loom)))]
    imp::point(name, node);
    #[cfg(not(all(feature = "pause-points", not(loom))))]
    let _ = (name, node);
}
