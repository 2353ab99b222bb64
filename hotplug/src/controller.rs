//! The hotplug domain (online-mems lock + node state masks + notifier chain as one independent world) and
//! its simulated controller: the online / offline state machines, run under the write side, with vetoes,
//! fault-injection stage hooks, rollback and pause points. It must not know what the callbacks do (slabs).

use crate::node_states::{NodeStateSnapshot, NodeStates};
use crate::notifier::{
    CallbackRef, ChainSnapshot, MemoryEvent, MemoryNotify, NotifierChain, NotifierHandle,
    NotifyError, RegisterError,
};
use crate::online_mems::{LockKind, OnlineMems, ReadGuard};
use crate::{pause, NodeId, NodeMask};
use core::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Pages per node in the simulated backend's notifications (1 GiB of 4 KiB pages); node `n`'s span starts
/// at page frame `n * SIM_NODE_PAGES`.
pub const SIM_NODE_PAGES: usize = 1 << 18;

/// A point inside a transition where the stage hook and the pause point run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Online: every callback accepted GOING_ONLINE; masks not changed yet.
    OnlineAfterGoingOnline,
    /// Online: node added to online + has-memory; ONLINE not sent yet.
    OnlineAfterMaskSet,
    /// Offline: every callback accepted GOING_OFFLINE; masks not changed yet.
    OfflineAfterGoingOffline,
    /// Offline: node removed from has-memory + has-normal-memory; OFFLINE not sent yet.
    OfflineAfterMaskClear,
}

impl Stage {
    /// Every stage, in the order a transition meets them (online first).
    pub const ALL: [Stage; 4] = [
        Stage::OnlineAfterGoingOnline,
        Stage::OnlineAfterMaskSet,
        Stage::OfflineAfterGoingOffline,
        Stage::OfflineAfterMaskClear,
    ];

    /// The pause-point name of the stage (see [`pause::names`]).
    pub const fn name(self) -> &'static str {
        match self {
            Stage::OnlineAfterGoingOnline => pause::names::ONLINE_AFTER_GOING_ONLINE,
            Stage::OnlineAfterMaskSet => pause::names::ONLINE_AFTER_MASK_SET,
            Stage::OfflineAfterGoingOffline => pause::names::OFFLINE_AFTER_GOING_OFFLINE,
            Stage::OfflineAfterMaskClear => pause::names::OFFLINE_AFTER_MASK_CLEAR,
        }
    }

    /// Is this a stage of the online transition?
    pub const fn is_online(self) -> bool {
        matches!(
            self,
            Stage::OnlineAfterGoingOnline | Stage::OnlineAfterMaskSet
        )
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Fault injection: called at every [`Stage`]; an `Err` aborts the transition, which rolls back.
pub type StageHook = Arc<dyn Fn(Stage, NodeId) -> Result<(), NotifyError> + Send + Sync>;

/// Why a hotplug operation did not happen. In every case the domain's state is exactly as before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HotplugError {
    /// The node is not in the possible mask.
    UnknownNode,
    /// Online of a node that already has memory.
    AlreadyOnline,
    /// Offline of a node that has no memory.
    AlreadyOffline,
    /// A callback refused the GOING_* event; the callbacks that had accepted got CANCEL_*.
    Vetoed {
        /// The vetoing callback.
        by: &'static str,
        /// Its error.
        error: NotifyError,
    },
    /// Another hotplug operation is running: a `try_*` call found a writer inside, or a callback of this
    /// thread's own running operation asked for another one.
    Busy,
    /// The stage hook failed at `stage`; the transition was rolled back (CANCEL_* sent, masks restored).
    Aborted {
        /// Where it failed.
        stage: Stage,
        /// The hook's error.
        error: NotifyError,
    },
}

impl HotplugError {
    /// Was the operation refused because something is in use (a `Busy` veto, or another operation)?
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            HotplugError::Busy
                | HotplugError::Vetoed {
                    error: NotifyError::Busy,
                    ..
                }
        )
    }
}

impl fmt::Display for HotplugError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HotplugError::UnknownNode => f.write_str("node is not possible"),
            HotplugError::AlreadyOnline => f.write_str("node already has memory"),
            HotplugError::AlreadyOffline => f.write_str("node has no memory"),
            HotplugError::Vetoed { by, error } => write!(f, "vetoed by {by}: {error}"),
            HotplugError::Busy => f.write_str("another hotplug operation is running"),
            HotplugError::Aborted { stage, error } => write!(f, "aborted at {stage}: {error}"),
        }
    }
}

impl std::error::Error for HotplugError {}

/// Counters of one domain's controller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HotplugStats {
    /// Online transitions completed.
    pub onlined: u64,
    /// Offline transitions completed (forced ones included).
    pub offlined: u64,
    /// Transitions refused by a veto.
    pub vetoed: u64,
    /// Transitions aborted by the stage hook and rolled back.
    pub rolled_back: u64,
    /// Vetoes of a forced offline's GOING_OFFLINE, ignored.
    pub vetoes_ignored: u64,
    /// Errors returned for non-vetoable events (ONLINE, OFFLINE, CANCEL_*), ignored.
    pub callback_errors_ignored: u64,
}

#[derive(Default)]
struct Counters {
    onlined: AtomicU64,
    offlined: AtomicU64,
    vetoed: AtomicU64,
    rolled_back: AtomicU64,
    vetoes_ignored: AtomicU64,
    callback_errors_ignored: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One independent hotplug world: the online-mems lock, the node state masks, the notifier chain, and the
/// simulated controller that changes them. Tests and models build their own; [`crate::default_domain`] is
/// the process-wide one.
///
/// ```
/// use hotslab_hotplug::{CallbackRef, HotplugDomain, HotplugError, LockKind, MemoryCallback,
///                       MemoryEvent, MemoryNotify, NodeId, NodeMask, NotifyError};
/// use std::sync::{Arc, Mutex};
///
/// /// Records events; refuses to let node 2 go offline.
/// struct Log(Mutex<Vec<(MemoryEvent, u16)>>);
/// impl MemoryCallback for Log {
///     fn name(&self) -> &'static str { "log" }
///     fn notify(&self, ev: &MemoryNotify) -> Result<(), NotifyError> {
///         self.0.lock().unwrap().push((ev.event, ev.node.0));
///         if ev.event == MemoryEvent::GoingOffline && ev.node.0 == 2 {
///             return Err(NotifyError::Busy);
///         }
///         Ok(())
///     }
/// }
///
/// let n = NodeId::new;
/// let domain = HotplugDomain::new(NodeMask::range(0, 4), NodeMask::single(n(0)), LockKind::Seed);
/// let log = Arc::new(Log(Mutex::new(Vec::new())));
/// let _h = domain.register_notifier(CallbackRef::Shared(log.clone()), 0).unwrap();
///
/// domain.online_node(n(2)).unwrap();
/// assert!(domain.states.has_memory().test(n(2)));
/// assert!(!domain.states.has_normal_memory().test(n(2))); // hot-added: movable only
/// assert_eq!(domain.online_node(n(2)), Err(HotplugError::AlreadyOnline));
/// assert_eq!(domain.online_node(n(9)), Err(HotplugError::UnknownNode));
///
/// let refused = domain.offline_node(n(2));
/// assert_eq!(refused, Err(HotplugError::Vetoed { by: "log", error: NotifyError::Busy }));
/// assert!(domain.states.has_memory().test(n(2))); // unchanged
///
/// domain.offline_node_forced(n(2)).unwrap(); // the kernel cannot be refused
/// assert!(!domain.states.has_memory().test(n(2)));
/// assert!(domain.states.online().test(n(2))); // the node itself stays online
///
/// use MemoryEvent::*;
/// assert_eq!(
///     log.0.lock().unwrap().iter().map(|e| e.0).collect::<Vec<_>>(),
///     [GoingOnline, Online, GoingOffline, GoingOffline, Offline]
/// );
/// ```
pub struct HotplugDomain {
    /// The online-mems lock (`get_online_mems` / `mem_hotplug_begin`).
    pub lock: OnlineMems,
    /// The node state masks; changed only by the controller, under the write side.
    pub states: NodeStates,
    /// The memory notifier chain.
    pub chain: NotifierChain,
    stage_hook: Mutex<Option<StageHook>>,
    counters: Counters,
}

impl HotplugDomain {
    /// A domain whose nodes `possible` may ever exist and whose nodes `with_memory` have (normal) memory
    /// at boot and are online.
    pub fn new(possible: NodeMask, with_memory: NodeMask, kind: LockKind) -> Self {
        Self::with_states(NodeStateSnapshot::boot(possible, with_memory), kind)
    }

    /// A domain starting from explicit masks (e.g. read from sysfs), made consistent: has-memory and online
    /// are clipped to possible, online includes has-memory, has-normal-memory is clipped to has-memory.
    pub fn with_states(initial: NodeStateSnapshot, kind: LockKind) -> Self {
        let possible = initial.possible;
        let has_memory = initial.has_memory.intersection(&possible);
        let states = NodeStateSnapshot {
            possible,
            online: initial.online.union(&has_memory).intersection(&possible),
            has_memory,
            has_normal_memory: initial.has_normal_memory.intersection(&has_memory),
        };
        HotplugDomain {
            lock: OnlineMems::new(kind),
            states: NodeStates::new(states),
            chain: NotifierChain::new(),
            stage_hook: Mutex::new(None),
            counters: Counters::default(),
        }
    }

    /// Enter the read side (`get_online_mems`): the masks stay as they are until the guard is dropped.
    pub fn read(&self) -> ReadGuard<'_> {
        self.lock.read()
    }

    /// The node masks now (stable while the read side is held).
    pub fn snapshot(&self) -> NodeStateSnapshot {
        self.states.snapshot()
    }

    /// Registers a memory callback. Takes the read side, so it never lands in the middle of a transition.
    pub fn register_notifier(
        &self,
        cb: CallbackRef,
        priority: i32,
    ) -> Result<NotifierHandle, RegisterError> {
        let _r = self.lock.read();
        self.chain.register(cb, priority)
    }

    /// Unregisters a memory callback. Takes the read side: when this returns, no transition is running
    /// the callback and none will.
    pub fn unregister_notifier(&self, handle: NotifierHandle) -> bool {
        let _r = self.lock.read();
        self.chain.unregister(handle)
    }

    /// Installs (or removes) the fault-injection stage hook.
    pub fn set_stage_hook(&self, hook: Option<StageHook>) {
        *self.stage_hook.lock().unwrap_or_else(|p| p.into_inner()) = hook;
    }

    /// The controller's counters.
    pub fn stats(&self) -> HotplugStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &self.counters;
        HotplugStats {
            onlined: r(&c.onlined),
            offlined: r(&c.offlined),
            vetoed: r(&c.vetoed),
            rolled_back: r(&c.rolled_back),
            vetoes_ignored: r(&c.vetoes_ignored),
            callback_errors_ignored: r(&c.callback_errors_ignored),
        }
    }

    /// Brings node `nid`'s memory online: write side → GOING_ONLINE (a veto sends CANCEL_ONLINE to the
    /// callbacks that accepted and changes nothing) → `nid` joins online + has-memory (movable only: never
    /// has-normal-memory) → ONLINE.
    pub fn online_node(&self, nid: NodeId) -> Result<(), HotplugError> {
        if self.lock.is_active_writer() {
            return Err(HotplugError::Busy);
        }
        let _w = self.lock.write();
        self.online_locked(nid)
    }

    /// [`online_node`](Self::online_node), or `Err(Busy)` at once if another operation is running.
    pub fn try_online_node(&self, nid: NodeId) -> Result<(), HotplugError> {
        if self.lock.is_active_writer() {
            return Err(HotplugError::Busy);
        }
        let _w = self.lock.try_write().ok_or(HotplugError::Busy)?;
        self.online_locked(nid)
    }

    /// Takes node `nid`'s memory offline, refusably (the simulated controller): write side →
    /// GOING_OFFLINE (a veto, e.g. `Busy` for live objects, sends CANCEL_OFFLINE to the callbacks that
    /// accepted and changes nothing) → `nid` leaves has-memory and has-normal-memory (it stays online) →
    /// OFFLINE.
    pub fn offline_node(&self, nid: NodeId) -> Result<(), HotplugError> {
        if self.lock.is_active_writer() {
            return Err(HotplugError::Busy);
        }
        let _w = self.lock.write();
        self.offline_locked(nid, false)
    }

    /// [`offline_node`](Self::offline_node), or `Err(Busy)` at once if another operation is running.
    pub fn try_offline_node(&self, nid: NodeId) -> Result<(), HotplugError> {
        if self.lock.is_active_writer() {
            return Err(HotplugError::Busy);
        }
        let _w = self.lock.try_write().ok_or(HotplugError::Busy)?;
        self.offline_locked(nid, false)
    }

    /// Takes node `nid`'s memory offline the way the kernel does, which cannot be refused: callbacks see
    /// `forced = true`, every callback gets GOING_OFFLINE, and vetoes are logged and ignored. Only a
    /// stage-hook fault (a simulated controller failure) still aborts and rolls back.
    pub fn offline_node_forced(&self, nid: NodeId) -> Result<(), HotplugError> {
        if self.lock.is_active_writer() {
            return Err(HotplugError::Busy);
        }
        let _w = self.lock.write();
        self.offline_locked(nid, true)
    }

    fn notify(&self, event: MemoryEvent, nid: NodeId, forced: bool) -> MemoryNotify {
        MemoryNotify {
            event,
            node: nid,
            start_pfn: nid.index() * SIM_NODE_PAGES,
            nr_pages: SIM_NODE_PAGES,
            forced,
        }
    }

    /// Pause point, then the stage hook.
    fn stage(&self, stage: Stage, nid: NodeId) -> Result<(), NotifyError> {
        pause::point(stage.name(), nid);
        // Cloned out of the mutex: the hook may call `set_stage_hook`.
        let hook = self
            .stage_hook
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match hook {
            Some(h) => h(stage, nid),
            None => Ok(()),
        }
    }

    /// Sends a non-vetoable event to every callback of `chain`, counting (and ignoring) errors.
    fn call_all(&self, chain: &ChainSnapshot, ev: &MemoryNotify) {
        chain.call_all(ev, |_, _| bump(&self.counters.callback_errors_ignored));
    }

    /// Aborts a transition at `stage`: restore the masks (if changed), then CANCEL_* to `accepted` in
    /// reverse order.
    fn roll_back(
        &self,
        chain: &ChainSnapshot,
        ev: &MemoryNotify,
        accepted: u32,
        masks_before: Option<NodeStateSnapshot>,
        stage: Stage,
        error: NotifyError,
    ) -> HotplugError {
        if let Some(before) = masks_before {
            self.states.restore(before);
        }
        if let Some(cancel) = ev.event.cancel() {
            chain.call_reverse(&ev.with_event(cancel), accepted);
        }
        bump(&self.counters.rolled_back);
        HotplugError::Aborted { stage, error }
    }

    fn online_locked(&self, nid: NodeId) -> Result<(), HotplugError> {
        let s = self.states.snapshot();
        if !s.possible.test(nid) {
            return Err(HotplugError::UnknownNode);
        }
        if s.has_memory.test(nid) {
            return Err(HotplugError::AlreadyOnline);
        }
        // One set of callbacks for the whole transition.
        let chain = self.chain.snapshot();
        let going = self.notify(MemoryEvent::GoingOnline, nid, false);
        if let Err(v) = chain.call_vetoable(&going) {
            bump(&self.counters.vetoed);
            return Err(HotplugError::Vetoed {
                by: v.by,
                error: v.error,
            });
        }
        let all = chain.all_mask();

        let stage = Stage::OnlineAfterGoingOnline;
        if let Err(e) = self.stage(stage, nid) {
            return Err(self.roll_back(&chain, &going, all, None, stage, e));
        }

        let before = self.states.set_has_memory(nid, false);

        let stage = Stage::OnlineAfterMaskSet;
        if let Err(e) = self.stage(stage, nid) {
            return Err(self.roll_back(&chain, &going, all, Some(before), stage, e));
        }

        self.call_all(&chain, &going.with_event(MemoryEvent::Online));
        bump(&self.counters.onlined);
        Ok(())
    }

    fn offline_locked(&self, nid: NodeId, forced: bool) -> Result<(), HotplugError> {
        let s = self.states.snapshot();
        if !s.possible.test(nid) {
            return Err(HotplugError::UnknownNode);
        }
        if !s.has_memory.test(nid) {
            return Err(HotplugError::AlreadyOffline);
        }
        let chain = self.chain.snapshot();
        let going = self.notify(MemoryEvent::GoingOffline, nid, forced);
        let accepted = if forced {
            chain.call_all(&going, |by, _| {
                bump(&self.counters.vetoes_ignored);
                log_ignored_veto(by);
            })
        } else {
            match chain.call_vetoable(&going) {
                Ok(()) => chain.all_mask(),
                Err(v) => {
                    bump(&self.counters.vetoed);
                    return Err(HotplugError::Vetoed {
                        by: v.by,
                        error: v.error,
                    });
                }
            }
        };

        let stage = Stage::OfflineAfterGoingOffline;
        if let Err(e) = self.stage(stage, nid) {
            return Err(self.roll_back(&chain, &going, accepted, None, stage, e));
        }

        let before = self.states.clear_has_memory(nid);

        let stage = Stage::OfflineAfterMaskClear;
        if let Err(e) = self.stage(stage, nid) {
            return Err(self.roll_back(&chain, &going, accepted, Some(before), stage, e));
        }

        self.call_all(&chain, &going.with_event(MemoryEvent::Offline));
        bump(&self.counters.offlined);
        Ok(())
    }
}

/// Logs an ignored veto to stderr without allocating.
fn log_ignored_veto(by: &'static str) {
    crate::online_mems::warn("hotslab-hotplug: forced offline ignores a GOING_OFFLINE veto by ");
    crate::online_mems::warn(by);
    crate::online_mems::warn("\n");
}

impl fmt::Debug for HotplugDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HotplugDomain")
            .field("lock", &self.lock)
            .field("states", &self.states)
            .field("chain", &self.chain)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
