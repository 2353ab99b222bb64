//! The memory notifier chain (`register_memory_notifier` / `memory_notify`): events, callbacks, a
//! fixed-capacity priority-ordered chain, and the vetoable call that sends CANCEL_* to the callbacks that had
//! accepted. Calling never allocates. Knows nothing of the lock or the masks (the controller combines them).

use crate::sync::{self, Mutex};
use crate::NodeId;
use core::fmt;
use std::sync::Arc;

/// How many callbacks one chain holds.
pub const CHAIN_CAPACITY: usize = 32;

/// A memory hotplug event (the kernel's `MEM_*` actions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryEvent {
    /// Memory of the node is about to come online; a callback may veto.
    GoingOnline,
    /// The node's memory is online (masks updated).
    Online,
    /// A `GoingOnline` was vetoed or aborted: undo what was prepared.
    CancelOnline,
    /// Memory of the node is about to go offline; a callback may veto (unless forced).
    GoingOffline,
    /// The node's memory is offline (masks updated).
    Offline,
    /// A `GoingOffline` was vetoed or aborted: restore what was stopped.
    CancelOffline,
}

impl MemoryEvent {
    /// The kernel's name for the event.
    pub const fn name(self) -> &'static str {
        match self {
            MemoryEvent::GoingOnline => "MEM_GOING_ONLINE",
            MemoryEvent::Online => "MEM_ONLINE",
            MemoryEvent::CancelOnline => "MEM_CANCEL_ONLINE",
            MemoryEvent::GoingOffline => "MEM_GOING_OFFLINE",
            MemoryEvent::Offline => "MEM_OFFLINE",
            MemoryEvent::CancelOffline => "MEM_CANCEL_OFFLINE",
        }
    }

    /// May a callback veto this event?
    pub const fn is_vetoable(self) -> bool {
        matches!(self, MemoryEvent::GoingOnline | MemoryEvent::GoingOffline)
    }

    /// The event that undoes this one (`GoingOnline` → `CancelOnline`, `GoingOffline` → `CancelOffline`).
    pub const fn cancel(self) -> Option<MemoryEvent> {
        match self {
            MemoryEvent::GoingOnline => Some(MemoryEvent::CancelOnline),
            MemoryEvent::GoingOffline => Some(MemoryEvent::CancelOffline),
            _ => None,
        }
    }
}

impl fmt::Display for MemoryEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a callback is told (the kernel's `struct memory_notify`, plus the node and whether the operation
/// can be refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryNotify {
    /// The event.
    pub event: MemoryEvent,
    /// The node whose memory state changes (`status_change_nid`).
    pub node: NodeId,
    /// First page frame of the span.
    pub start_pfn: usize,
    /// Pages in the span.
    pub nr_pages: usize,
    /// The operation cannot be refused (a kernel offline): a veto of `GoingOffline` is ignored.
    pub forced: bool,
}

impl MemoryNotify {
    /// The same notification with another event.
    pub const fn with_event(&self, event: MemoryEvent) -> Self {
        MemoryNotify { event, ..*self }
    }
}

/// Why a callback refused (or failed on) an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotifyError {
    /// The node is in use (live objects on it): `-EBUSY`.
    Busy,
    /// Memory for the callback's own bookkeeping could not be had: `-ENOMEM`.
    NoMemory,
    /// A fault injected by a test.
    Injected,
    /// Anything else, with a fixed description.
    Other(&'static str),
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyError::Busy => f.write_str("busy"),
            NotifyError::NoMemory => f.write_str("out of memory"),
            NotifyError::Injected => f.write_str("injected fault"),
            NotifyError::Other(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for NotifyError {}

/// A memory notifier callback.
pub trait MemoryCallback: Send + Sync {
    /// A fixed name, reported when this callback vetoes.
    fn name(&self) -> &'static str;
    /// Handle one event. An `Err` on a vetoable event (`GoingOnline`, `GoingOffline`) vetoes it; on other
    /// events it is logged and ignored.
    fn notify(&self, ev: &MemoryNotify) -> Result<(), NotifyError>;
}

/// How the chain holds a callback.
#[derive(Clone)]
pub enum CallbackRef {
    /// A callback that lives for ever (a `static`).
    Static(&'static dyn MemoryCallback),
    /// A shared callback; the chain keeps a reference until it is unregistered.
    Shared(Arc<dyn MemoryCallback>),
}

impl CallbackRef {
    /// The callback.
    pub fn get(&self) -> &dyn MemoryCallback {
        match self {
            CallbackRef::Static(c) => *c,
            CallbackRef::Shared(c) => &**c,
        }
    }
}

impl fmt::Debug for CallbackRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            CallbackRef::Static(_) => "Static",
            CallbackRef::Shared(_) => "Shared",
        };
        f.debug_tuple(kind).field(&self.get().name()).finish()
    }
}

/// Proof of a registration; pass it to [`NotifierChain::unregister`].
#[derive(Debug, PartialEq, Eq, Hash)]
#[must_use = "a callback can only be unregistered through its handle"]
pub struct NotifierHandle {
    id: u64,
}

/// Why a registration failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterError {
    /// The chain already holds [`CHAIN_CAPACITY`] callbacks.
    Full,
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::Full => write!(f, "notifier chain full ({CHAIN_CAPACITY} callbacks)"),
        }
    }
}

impl std::error::Error for RegisterError {}

/// A vetoed event: who refused and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Veto {
    /// The vetoing callback's name.
    pub by: &'static str,
    /// Its error.
    pub error: NotifyError,
}

struct Entry {
    cb: CallbackRef,
    priority: i32,
    id: u64,
}

struct Slots {
    /// `entries[..len]` are `Some`, sorted by priority, highest first; equal priorities in registration
    /// order (as the kernel's `notifier_chain_register`).
    entries: [Option<Entry>; CHAIN_CAPACITY],
    len: usize,
}

/// Source of handle ids, unique across all chains of the process, so a handle of one chain can never
/// remove another chain's callback.
static NEXT_HANDLE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A fixed-capacity memory notifier chain, ordered by priority (higher first, as in the kernel).
///
/// Calls go through a [`ChainSnapshot`]: the registered callbacks are copied (reference counts only, no
/// allocation) out of the chain's mutex, so a callback may register or unregister callbacks without
/// deadlocking, and one hotplug operation sends all its events to one fixed set of callbacks.
///
/// ```
/// use hotslab_hotplug::{CallbackRef, MemoryCallback, MemoryEvent, MemoryNotify, NodeId, NotifierChain,
///                       NotifyError, Veto};
///
/// struct Refuse;
/// impl MemoryCallback for Refuse {
///     fn name(&self) -> &'static str { "refuse" }
///     fn notify(&self, ev: &MemoryNotify) -> Result<(), NotifyError> {
///         if ev.event == MemoryEvent::GoingOffline { Err(NotifyError::Busy) } else { Ok(()) }
///     }
/// }
/// static REFUSE: Refuse = Refuse;
///
/// let chain = NotifierChain::new();
/// let h = chain.register(CallbackRef::Static(&REFUSE), 0).unwrap();
/// let ev = MemoryNotify { event: MemoryEvent::GoingOffline, node: NodeId::new(1), start_pfn: 0,
///                         nr_pages: 0, forced: false };
/// assert_eq!(chain.call_vetoable(&ev), Err(Veto { by: "refuse", error: NotifyError::Busy }));
/// assert!(chain.unregister(h));
/// assert_eq!(chain.call_vetoable(&ev), Ok(()));
/// ```
pub struct NotifierChain {
    slots: Mutex<Slots>,
}

impl NotifierChain {
    /// An empty chain.
    pub fn new() -> Self {
        NotifierChain {
            slots: Mutex::new(Slots {
                entries: [const { None }; CHAIN_CAPACITY],
                len: 0,
            }),
        }
    }

    /// Adds `cb` with `priority` (higher runs first; equal priorities run in registration order).
    pub fn register(
        &self,
        cb: CallbackRef,
        priority: i32,
    ) -> Result<NotifierHandle, RegisterError> {
        let mut s = sync::lock(&self.slots);
        let len = s.len;
        if len == CHAIN_CAPACITY {
            return Err(RegisterError::Full);
        }
        let pos = s.entries[..len]
            .iter()
            .position(|e| e.as_ref().is_some_and(|e| e.priority < priority))
            .unwrap_or(len);
        // Shift `pos..len` up by one; slot `len` is `None`, so the rotation moves it to `pos`.
        s.entries[pos..=len].rotate_right(1);
        let id = NEXT_HANDLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        s.entries[pos] = Some(Entry { cb, priority, id });
        s.len = len + 1;
        Ok(NotifierHandle { id })
    }

    /// Removes the callback registered under `handle`; `false` if it is not (or no longer) registered.
    /// A call already copied out of the chain may still run it once; unregister through
    /// `HotplugDomain::unregister_notifier` to be sure no call is in progress.
    pub fn unregister(&self, handle: NotifierHandle) -> bool {
        let removed = {
            let mut s = sync::lock(&self.slots);
            let len = s.len;
            let Some(pos) = s.entries[..len]
                .iter()
                .position(|e| e.as_ref().is_some_and(|e| e.id == handle.id))
            else {
                return false;
            };
            let removed = s.entries[pos].take();
            s.entries[pos..len].rotate_left(1);
            s.len = len - 1;
            removed
        };
        // Dropped outside the mutex: the callback's own `Drop` may use the chain.
        drop(removed);
        true
    }

    /// Number of registered callbacks.
    pub fn len(&self) -> usize {
        sync::lock(&self.slots).len
    }

    /// No callback registered?
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The registered callbacks, in call order, copied out of the chain.
    pub fn snapshot(&self) -> ChainSnapshot {
        let s = sync::lock(&self.slots);
        let mut entries = [const { None }; CHAIN_CAPACITY];
        for (dst, src) in entries.iter_mut().zip(&s.entries[..s.len]) {
            *dst = src.as_ref().map(|e| e.cb.clone());
        }
        ChainSnapshot {
            entries,
            len: s.len,
        }
    }

    /// [`ChainSnapshot::call_vetoable`] on the current callbacks.
    pub fn call_vetoable(&self, ev: &MemoryNotify) -> Result<(), Veto> {
        self.snapshot().call_vetoable(ev)
    }

    /// Sends `ev` to every current callback (errors ignored); returns how many failed.
    pub fn call_all(&self, ev: &MemoryNotify) -> usize {
        let mut errors = 0;
        self.snapshot().call_all(ev, |_, _| errors += 1);
        errors
    }
}

impl Default for NotifierChain {
    fn default() -> Self {
        NotifierChain::new()
    }
}

impl fmt::Debug for NotifierChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let snap = self.snapshot();
        f.debug_list().entries(snap.names()).finish()
    }
}

/// The callbacks of a chain at one instant, in call order (at most [`CHAIN_CAPACITY`], no heap).
pub struct ChainSnapshot {
    entries: [Option<CallbackRef>; CHAIN_CAPACITY],
    len: usize,
}

impl ChainSnapshot {
    /// Number of callbacks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No callbacks?
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The callbacks' names, in call order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.iter().map(|c| c.name())
    }

    fn iter(&self) -> impl Iterator<Item = &dyn MemoryCallback> + '_ {
        self.entries[..self.len]
            .iter()
            .filter_map(|e| e.as_ref().map(CallbackRef::get))
    }

    /// A mask with one bit per callback (bit `i` = the `i`-th in call order).
    pub fn all_mask(&self) -> u32 {
        if self.len == CHAIN_CAPACITY {
            u32::MAX
        } else {
            (1u32 << self.len) - 1
        }
    }

    /// Calls `ev` on each callback in order and stops at the first error. If `ev` has a cancel event
    /// ([`MemoryEvent::cancel`]), that event then goes to the callbacks that had accepted, in reverse
    /// order (their errors ignored). Returns the vetoing callback's name and error.
    pub fn call_vetoable(&self, ev: &MemoryNotify) -> Result<(), Veto> {
        for (i, cb) in self.iter().enumerate() {
            if let Err(error) = cb.notify(ev) {
                if let Some(cancel) = ev.event.cancel() {
                    let accepted = if i == 0 { 0 } else { u32::MAX >> (32 - i) };
                    self.call_reverse(&ev.with_event(cancel), accepted);
                }
                return Err(Veto {
                    by: cb.name(),
                    error,
                });
            }
        }
        Ok(())
    }

    /// Calls `ev` on every callback in order, whatever they return; `on_error` hears each failure.
    /// Returns the mask of callbacks that returned `Ok`.
    pub fn call_all(
        &self,
        ev: &MemoryNotify,
        mut on_error: impl FnMut(&'static str, NotifyError),
    ) -> u32 {
        let mut accepted = 0u32;
        for (i, cb) in self.iter().enumerate() {
            match cb.notify(ev) {
                Ok(()) => accepted |= 1 << i,
                Err(e) => on_error(cb.name(), e),
            }
        }
        accepted
    }

    /// Calls `ev` on the callbacks in `mask`, in reverse order, ignoring errors (the CANCEL_* pass).
    pub fn call_reverse(&self, ev: &MemoryNotify, mask: u32) {
        for i in (0..self.len).rev() {
            if let (true, Some(cb)) = (mask & (1 << i) != 0, &self.entries[i]) {
                let _ = cb.get().notify(ev);
            }
        }
    }
}

impl fmt::Debug for ChainSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    type Log = Arc<StdMutex<Vec<(usize, MemoryEvent)>>>;

    /// Logs `(index, event)`; vetoes `GoingOffline` if `veto`.
    struct Cb {
        idx: usize,
        veto: bool,
        log: Log,
    }

    impl MemoryCallback for Cb {
        fn name(&self) -> &'static str {
            "cb"
        }
        fn notify(&self, ev: &MemoryNotify) -> Result<(), NotifyError> {
            self.log.lock().unwrap().push((self.idx, ev.event));
            if self.veto && ev.event == MemoryEvent::GoingOffline {
                Err(NotifyError::Injected)
            } else {
                Ok(())
            }
        }
    }

    fn chain_with_veto_at(n: usize, veto_at: usize) -> (NotifierChain, Log) {
        let log: Log = Default::default();
        let chain = NotifierChain::new();
        for idx in 0..n {
            let cb = Arc::new(Cb {
                idx,
                veto: idx == veto_at,
                log: log.clone(),
            });
            // Descending priorities: call order == idx.
            let _ = chain
                .register(CallbackRef::Shared(cb), -(idx as i32))
                .unwrap();
        }
        (chain, log)
    }

    fn going_offline() -> MemoryNotify {
        MemoryNotify {
            event: MemoryEvent::GoingOffline,
            node: NodeId::new(0),
            start_pfn: 0,
            nr_pages: 0,
            forced: false,
        }
    }

    #[test]
    fn veto_by_the_first_callback_cancels_nobody() {
        let (chain, log) = chain_with_veto_at(3, 0);
        assert!(chain.call_vetoable(&going_offline()).is_err());
        assert_eq!(*log.lock().unwrap(), [(0, MemoryEvent::GoingOffline)]);
    }

    #[test]
    fn veto_by_the_last_of_a_full_chain_cancels_all_others_in_reverse() {
        let (chain, log) = chain_with_veto_at(CHAIN_CAPACITY, CHAIN_CAPACITY - 1);
        assert_eq!(
            chain.call_vetoable(&going_offline()),
            Err(Veto {
                by: "cb",
                error: NotifyError::Injected
            })
        );
        let log = log.lock().unwrap();
        let going: Vec<_> = log
            .iter()
            .take_while(|e| e.1 == MemoryEvent::GoingOffline)
            .map(|e| e.0)
            .collect();
        assert_eq!(going, (0..CHAIN_CAPACITY).collect::<Vec<_>>());
        let cancels: Vec<_> = log[CHAIN_CAPACITY..].iter().map(|e| (e.0, e.1)).collect();
        let want: Vec<_> = (0..CHAIN_CAPACITY - 1)
            .rev()
            .map(|i| (i, MemoryEvent::CancelOffline))
            .collect();
        assert_eq!(cancels, want);
    }

    #[test]
    fn call_all_reports_the_accepted_mask_and_call_reverse_honours_it() {
        let (chain, log) = chain_with_veto_at(4, 2);
        let snap = chain.snapshot();
        assert_eq!(snap.all_mask(), 0b1111);
        let mut errors = Vec::new();
        let accepted = snap.call_all(&going_offline(), |by, e| errors.push((by, e)));
        assert_eq!(accepted, 0b1011);
        assert_eq!(errors, [("cb", NotifyError::Injected)]);
        log.lock().unwrap().clear();
        snap.call_reverse(
            &going_offline().with_event(MemoryEvent::CancelOffline),
            accepted,
        );
        let order: Vec<_> = log.lock().unwrap().iter().map(|e| e.0).collect();
        assert_eq!(order, [3, 1, 0]);
    }

    #[test]
    fn a_snapshot_is_unaffected_by_later_registrations() {
        let (chain, log) = chain_with_veto_at(2, usize::MAX);
        let snap = chain.snapshot();
        let extra = Arc::new(Cb {
            idx: 9,
            veto: false,
            log: log.clone(),
        });
        let h = chain.register(CallbackRef::Shared(extra), 100).unwrap();
        snap.call_all(&going_offline(), |_, _| {});
        assert_eq!(
            log.lock().unwrap().iter().map(|e| e.0).collect::<Vec<_>>(),
            [0, 1]
        );
        assert!(chain.unregister(h));
    }

    #[test]
    fn events_know_their_cancel_and_vetoability() {
        use MemoryEvent::*;
        for (ev, cancel, vetoable) in [
            (GoingOnline, Some(CancelOnline), true),
            (GoingOffline, Some(CancelOffline), true),
            (Online, None, false),
            (Offline, None, false),
            (CancelOnline, None, false),
            (CancelOffline, None, false),
        ] {
            assert_eq!(ev.cancel(), cancel);
            assert_eq!(ev.is_vetoable(), vetoable);
            assert!(ev.name().starts_with("MEM_"));
        }
    }
}
