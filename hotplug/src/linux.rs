//! The Linux backend: makes a [`HotplugDomain`] follow the running kernel's memory hotplug. It reads the
//! node masks from sysfs, listens to kernel uevents for memory blocks and nodes, and maps a node entering
//! `has_memory` to [`HotplugDomain::online_node`] and one leaving it to [`HotplugDomain::offline_node_forced`].
//! It owns the follower thread and its sockets; it must not be called from an allocator's bootstrap.
//!
//! # How it follows the kernel
//! - **Events are triggers, sysfs is the truth.** A uevent (`add`/`online`/`offline`/`remove` of
//!   `/devices/system/memory/memoryN`, `add`/`remove` of `/devices/system/node/nodeK`) only marks the
//!   follower dirty. After a short settle window (bursts of block events coalesce into one scan) it
//!   re-reads `has_memory` and reconciles the domain with it: the kernel has already changed the masks
//!   by the time it sends the event.
//! - **Lost events are harmless.** The kernel drops uevents when the socket buffer overflows (the
//!   receive reports ENOBUFS) and in namespaces that do not see them: an overflow, a gap in `SEQNUM`, a
//!   rescan request and a periodic timer all cause the same re-scan.
//! - **The kernel cannot be refused.** A node leaving `has_memory` is a *forced* offline: its parts go
//!   draining (frees still accepted, retired when empty). Hot-added memory is ZONE_MOVABLE, so a node
//!   onlined here enters `has_memory` but not `has_normal_memory`. The domain's `online` mask is not
//!   cleared when the kernel removes a node (the controller has no such operation): parts follow
//!   `has_memory` only.
//! - **Only nodes this process may bind to.** The kernel widens a task's cpuset `mems_allowed` to a
//!   hot-added node *after* the node enters `has_memory` (from a workqueue); until then mbind to it fails
//!   with EINVAL, and slabs meant for it would fall back to other nodes. So a node is onlined in the
//!   domain only once it is in `has_memory` *and* in the process's `mems_allowed`
//!   ([`MemsAllowed::Process`]); while it waits, the follower re-scans on a short back-off (no uevent
//!   announces the cpuset change) and reports it in [`FollowStatus::not_allowed`].
//! - A node with memory that the domain does not know (not in its `possible` mask, e.g. a domain built
//!   from the online nodes only) is reported in [`FollowStatus::unknown`], never an error.
//!
//! ```no_run
//! use hotslab_hotplug::linux::{follow_hotplug, KernelView};
//! use hotslab_hotplug::{HotplugDomain, LockKind};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let view = KernelView::read()?;
//! let domain = Arc::new(HotplugDomain::with_states(view.snapshot(), LockKind::default()));
//! let follower = follow_hotplug(&domain)?;      // background thread; stops when dropped
//! // ... a DIMM is hot-added to node 2 ...
//! let seen = follower.wait_until(Duration::from_secs(30), |s| {
//!     s.kernel.is_some_and(|k| k.has_memory.test(hotslab_hotplug::NodeId::new(2)))
//! });
//! assert!(seen.is_some_and(|s| s.stats.onlined >= 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod socket;
pub mod uevent;
pub mod view;

pub use view::{FakeSysfs, KernelView, NodeInfo, SYSFS_NODE_DIR};

use crate::{HotplugDomain, HotplugError, NodeId, NodeMask, NodeStateSnapshot};
use socket::{EventSocket, Recv, Waker};
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use uevent::Uevent;

/// Something that owns a [`HotplugDomain`] the follower can drive: the domain itself, a slab domain, or
/// a shared / static reference to either.
pub trait FollowTarget {
    /// The hotplug domain to drive.
    fn hotplug_domain(&self) -> &HotplugDomain;
}

impl FollowTarget for HotplugDomain {
    fn hotplug_domain(&self) -> &HotplugDomain {
        self
    }
}

impl<T: FollowTarget + ?Sized> FollowTarget for Arc<T> {
    fn hotplug_domain(&self) -> &HotplugDomain {
        (**self).hotplug_domain()
    }
}

impl<T: FollowTarget + ?Sized> FollowTarget for &T {
    fn hotplug_domain(&self) -> &HotplugDomain {
        (**self).hotplug_domain()
    }
}

/// Where uevents come from.
#[derive(Debug, Default)]
pub enum UeventSource {
    /// A NETLINK_KOBJECT_UEVENT socket bound to the kernel's multicast group (the normal case).
    #[default]
    Netlink,
    /// Recorded kernel uevents sent over a datagram socket (tests and replays). Datagrams are parsed
    /// exactly like the kernel's, without the sender check.
    Datagram(UnixDatagram),
    /// No events: periodic re-scans only (e.g. where netlink is forbidden).
    None,
}

/// Which nodes this process may allocate on, besides the kernel having memory there.
#[derive(Clone, Default)]
pub enum MemsAllowed {
    /// The calling process's cpuset (`get_mempolicy(MPOL_F_MEMS_ALLOWED)`); no filter if the kernel has
    /// no NUMA policy support.
    #[default]
    Process,
    /// Every node (tests against a fake sysfs tree, whose nodes this host does not have).
    Ignore,
    /// A function giving the allowed nodes (`None`: no filter); for tests.
    Custom(Arc<dyn Fn() -> Option<NodeMask> + Send + Sync>),
}

impl MemsAllowed {
    /// The allowed nodes now (`None`: do not filter).
    pub fn get(&self) -> Option<NodeMask> {
        match self {
            MemsAllowed::Process => process_mems_allowed(),
            MemsAllowed::Ignore => None,
            MemsAllowed::Custom(f) => f(),
        }
    }
}

impl core::fmt::Debug for MemsAllowed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            MemsAllowed::Process => "Process",
            MemsAllowed::Ignore => "Ignore",
            MemsAllowed::Custom(_) => "Custom",
        })
    }
}

/// The calling task's `mems_allowed` (its cpuset's memory nodes), or `None` if the kernel cannot say.
pub fn process_mems_allowed() -> Option<NodeMask> {
    let mut mode = 0;
    let mut mask = NodeMask::new();
    hotslab_numa::policy::get_mempolicy(
        &mut mode,
        Some(&mut mask),
        core::ptr::null(),
        hotslab_numa::policy::MPOL_F_MEMS_ALLOWED,
    )
    .ok()
    .map(|()| mask)
}

/// Settings of a follower.
#[derive(Debug)]
pub struct FollowConfig {
    /// The sysfs node directory ([`SYSFS_NODE_DIR`] unless testing against a fake tree).
    pub sysfs_root: PathBuf,
    /// Where uevents come from.
    pub source: UeventSource,
    /// Re-scan sysfs at least this often, events or not (catches lost events and retries failed
    /// transitions). Default 1 s.
    pub rescan_interval: Duration,
    /// After the first relevant event, wait this long for the rest of the burst before scanning.
    /// Default 10 ms (a DIMM's blocks arrive within a few milliseconds).
    pub settle: Duration,
    /// Receive buffer asked for the netlink socket, in bytes. Default 1 MiB.
    pub recv_buffer: usize,
    /// Which nodes the process may bind to (default: its cpuset's).
    pub mems_allowed: MemsAllowed,
}

impl Default for FollowConfig {
    fn default() -> Self {
        FollowConfig {
            sysfs_root: PathBuf::from(SYSFS_NODE_DIR),
            source: UeventSource::Netlink,
            rescan_interval: Duration::from_secs(1),
            settle: Duration::from_millis(10),
            recv_buffer: 1 << 20,
            mems_allowed: MemsAllowed::Process,
        }
    }
}

impl FollowConfig {
    /// Uses another sysfs node directory.
    pub fn sysfs_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.sysfs_root = root.into();
        self
    }

    /// Uses another event source.
    pub fn source(mut self, source: UeventSource) -> Self {
        self.source = source;
        self
    }

    /// Sets the periodic re-scan interval.
    pub fn rescan_interval(mut self, every: Duration) -> Self {
        self.rescan_interval = every;
        self
    }

    /// Sets the settle window.
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// Sets which nodes the process may bind to.
    pub fn mems_allowed(mut self, m: MemsAllowed) -> Self {
        self.mems_allowed = m;
        self
    }
}

/// Counters of a follower.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FollowStats {
    /// Datagrams received.
    pub messages: u64,
    /// Uevents about memory blocks or nodes that can change `has_memory`.
    pub relevant: u64,
    /// Well-formed uevents about other devices or actions.
    pub ignored: u64,
    /// Datagrams that are not kernel uevents (udev messages, garbage, truncated, foreign senders).
    pub malformed: u64,
    /// Times the kernel reported lost messages (ENOBUFS).
    pub overflows: u64,
    /// Gaps in the kernel's `SEQNUM` sequence (events this socket never saw).
    pub seqnum_gaps: u64,
    /// Sysfs re-scans done.
    pub scans: u64,
    /// Re-scans that could not read sysfs.
    pub scan_errors: u64,
    /// Re-scans triggered by the periodic timer.
    pub periodic_scans: u64,
    /// Nodes brought online in the domain.
    pub onlined: u64,
    /// Nodes taken offline (forced) in the domain.
    pub offlined: u64,
    /// Online / offline calls that failed (retried at the next scan).
    pub failed: u64,
}

/// Why the follower scans sysfs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The first scan, when following starts.
    Start,
    /// Relevant uevents (this many since the last scan).
    Uevents(u64),
    /// Lost events: ENOBUFS, a truncated datagram or a `SEQNUM` gap.
    Lost,
    /// A caller asked ([`FollowerHandle::rescan`], [`Follower::request_scan`]).
    Requested,
    /// The periodic timer.
    Periodic,
    /// A quick re-check while a node with memory is not yet in the process's `mems_allowed`.
    Retry,
}

/// What one scan found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanReport {
    /// Why it ran.
    pub trigger: Trigger,
    /// The kernel's masks as read (made consistent).
    pub kernel: NodeStateSnapshot,
    /// Nodes brought online in the domain.
    pub onlined: NodeMask,
    /// Nodes taken offline (forced) in the domain.
    pub offlined: NodeMask,
    /// Transitions that failed, with the controller's error (retried at the next scan).
    pub failed: Vec<(NodeId, HotplugError)>,
    /// Nodes with memory that the domain cannot represent (not in its `possible` mask).
    pub unknown: NodeMask,
    /// Nodes with memory the process may not bind to (yet): left out of the domain.
    pub not_allowed: NodeMask,
}

impl ScanReport {
    /// Did the scan change the domain?
    pub fn changed(&self) -> bool {
        !self.onlined.is_empty() || !self.offlined.is_empty()
    }
}

/// Makes `domain`'s `has_memory` equal to `kernel_has_memory`: forced offline of every node the kernel no
/// longer has memory on (first, so new slabs stop going there), then online of every node that gained
/// memory. Returns what changed; nodes outside the domain's `possible` mask are reported as unknown.
///
/// ```
/// use hotslab_hotplug::linux::reconcile;
/// use hotslab_hotplug::{HotplugDomain, LockKind, NodeId, NodeMask};
/// let d = HotplugDomain::new(NodeMask::range(0, 3), NodeMask::range(0, 2), LockKind::Seed);
/// let r = reconcile(&d, NodeMask::range(0, 3)); // the kernel hot-added node 2
/// assert_eq!(r.onlined, NodeMask::single(NodeId::new(2)));
/// let r = reconcile(&d, NodeMask::range(0, 2)); // ... and removed it
/// assert_eq!(r.offlined, NodeMask::single(NodeId::new(2)));
/// assert!(!d.states.has_memory().test(NodeId::new(2)));
/// ```
pub fn reconcile(domain: &HotplugDomain, kernel_has_memory: NodeMask) -> ScanReport {
    let mine = domain.snapshot();
    let mut r = ScanReport {
        trigger: Trigger::Requested,
        kernel: NodeStateSnapshot {
            has_memory: kernel_has_memory,
            ..NodeStateSnapshot::default()
        },
        onlined: NodeMask::new(),
        offlined: NodeMask::new(),
        failed: Vec::new(),
        unknown: kernel_has_memory.difference(&mine.possible),
        not_allowed: NodeMask::new(),
    };
    for nid in mine.has_memory.difference(&kernel_has_memory).iter() {
        match domain.offline_node_forced(nid) {
            Ok(()) => r.offlined.set(nid),
            Err(HotplugError::AlreadyOffline) => {} // someone else did it meanwhile
            Err(e) => r.failed.push((nid, e)),
        }
    }
    let gained = kernel_has_memory
        .difference(&mine.has_memory)
        .intersection(&mine.possible);
    for nid in gained.iter() {
        match domain.online_node(nid) {
            Ok(()) => r.onlined.set(nid),
            Err(HotplugError::AlreadyOnline) => {}
            Err(HotplugError::UnknownNode) => r.unknown.set(nid),
            Err(e) => r.failed.push((nid, e)),
        }
    }
    r
}

/// What the follower made of one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// A memory-block or node uevent: a scan is due.
    Relevant,
    /// A kernel uevent about something else.
    Ignored,
    /// Not a kernel uevent.
    Malformed,
}

#[derive(Clone, Copy, Debug, Default)]
struct Pending {
    start: bool,
    uevents: u64,
    lost: bool,
    requested: bool,
    periodic: bool,
    retry: bool,
}

impl Pending {
    fn any(&self) -> bool {
        self.start || self.uevents > 0 || self.lost || self.requested || self.periodic || self.retry
    }

    /// Scan without waiting for the settle window.
    fn urgent(&self) -> bool {
        self.start || self.lost || self.requested || self.periodic || self.retry
    }

    fn trigger(&self) -> Trigger {
        if self.start {
            Trigger::Start
        } else if self.lost {
            Trigger::Lost
        } else if self.uevents > 0 {
            Trigger::Uevents(self.uevents)
        } else if self.requested {
            Trigger::Requested
        } else if self.periodic {
            Trigger::Periodic
        } else {
            Trigger::Retry
        }
    }
}

/// The backend's state machine without a thread or socket: feed it datagrams and lost-event notices, and
/// call [`Follower::scan`] when [`Follower::needs_scan`] says so. [`follow`] runs one of these in a
/// background thread; tests and custom event loops can drive it directly.
///
/// ```
/// use hotslab_hotplug::linux::{FakeSysfs, Follower, MemsAllowed, MessageKind, Trigger};
/// use hotslab_hotplug::{HotplugDomain, LockKind, NodeId, NodeMask, NodeStateSnapshot};
///
/// let fake = FakeSysfs::new()?;
/// let boot = NodeStateSnapshot::boot(NodeMask::range(0, 3), NodeMask::range(0, 2));
/// fake.set_masks(&boot)?;
/// let domain = HotplugDomain::with_states(boot, LockKind::Seed);
/// // The fake tree's nodes are not this host's: do not filter by the process's cpuset.
/// let mut f = Follower::new(&domain, fake.root()).mems_allowed(MemsAllowed::Ignore);
/// f.scan()?; // the start scan: nothing to do
///
/// // The kernel onlines a DIMM on node 2, then tells us.
/// fake.set_masks(&NodeStateSnapshot { has_memory: NodeMask::range(0, 3), online: NodeMask::range(0, 3), ..boot })?;
/// let msg = b"online@/devices/system/memory/memory32\0ACTION=online\0\
///             DEVPATH=/devices/system/memory/memory32\0SUBSYSTEM=memory\0SEQNUM=1\0";
/// assert_eq!(f.on_message(msg), MessageKind::Relevant);
/// let r = f.scan()?;
/// assert_eq!(r.trigger, Trigger::Uevents(1));
/// assert!(domain.states.has_memory().test(NodeId::new(2)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Follower<T: FollowTarget> {
    target: T,
    root: PathBuf,
    pending: Pending,
    last_seqnum: Option<u64>,
    stats: FollowStats,
    view: Option<KernelView>,
    unknown: NodeMask,
    not_allowed: NodeMask,
    allowed: MemsAllowed,
    last_error: Option<String>,
}

impl<T: FollowTarget> Follower<T> {
    /// A follower of `target` reading the sysfs node directory `root`, filtering by the process's
    /// `mems_allowed` ([`MemsAllowed::Process`]; see [`Follower::mems_allowed`]); its first scan is due.
    pub fn new(target: T, root: impl AsRef<Path>) -> Self {
        Follower {
            target,
            root: root.as_ref().to_path_buf(),
            pending: Pending {
                start: true,
                ..Pending::default()
            },
            last_seqnum: None,
            stats: FollowStats::default(),
            view: None,
            unknown: NodeMask::new(),
            not_allowed: NodeMask::new(),
            allowed: MemsAllowed::Process,
            last_error: None,
        }
    }

    /// Uses another source of allowed nodes.
    pub fn mems_allowed(mut self, m: MemsAllowed) -> Self {
        self.allowed = m;
        self
    }

    /// The target it drives.
    pub fn target(&self) -> &T {
        &self.target
    }

    /// Takes in one datagram from the event source.
    pub fn on_message(&mut self, datagram: &[u8]) -> MessageKind {
        self.stats.messages += 1;
        let ev = match uevent::parse(datagram) {
            Ok(ev) => ev,
            Err(_) => {
                self.stats.malformed += 1;
                return MessageKind::Malformed;
            }
        };
        self.check_seqnum(&ev);
        if ev.is_hotplug_relevant() {
            self.stats.relevant += 1;
            self.pending.uevents += 1;
            MessageKind::Relevant
        } else {
            self.stats.ignored += 1;
            MessageKind::Ignored
        }
    }

    fn check_seqnum(&mut self, ev: &Uevent<'_>) {
        let Some(seq) = ev.seqnum else { return };
        if let Some(last) = self.last_seqnum {
            if seq > last.wrapping_add(1) {
                self.stats.seqnum_gaps += 1;
                // Some event in between was lost: it may have been a memory event.
                self.pending.lost = true;
            }
        }
        self.last_seqnum = Some(seq);
    }

    /// The kernel reported lost messages (ENOBUFS), or a datagram was cut: re-scan at once.
    pub fn on_overflow(&mut self) {
        self.stats.overflows += 1;
        self.pending.lost = true;
    }

    /// A datagram too long for the buffer: counted as malformed, and treated as a lost event.
    pub fn on_truncated(&mut self) {
        self.stats.messages += 1;
        self.stats.malformed += 1;
        self.pending.lost = true;
    }

    /// A datagram from a sender other than the kernel: counted and dropped.
    pub fn on_foreign(&mut self) {
        self.stats.messages += 1;
        self.stats.malformed += 1;
    }

    /// The periodic timer fired.
    pub fn on_tick(&mut self) {
        self.pending.periodic = true;
    }

    /// Asks for a scan.
    pub fn request_scan(&mut self) {
        self.pending.requested = true;
    }

    /// The retry timer fired (see [`Follower::wants_retry`]).
    pub fn on_retry(&mut self) {
        self.pending.retry = true;
    }

    /// Does a node with memory wait for the process's `mems_allowed` to include it? The kernel sends
    /// no event for that, so the caller should re-scan soon ([`Follower::on_retry`]).
    pub fn wants_retry(&self) -> bool {
        !self.not_allowed.is_empty()
    }

    /// Is a scan due?
    pub fn needs_scan(&self) -> bool {
        self.pending.any()
    }

    /// Is the due scan urgent (start, lost events, request, timer) rather than a burst of events that
    /// may still be arriving?
    pub fn scan_is_urgent(&self) -> bool {
        self.pending.urgent()
    }

    /// Re-reads sysfs and reconciles the domain with the kernel's `has_memory`. Clears what was
    /// pending; on a read error nothing changes in the domain and the next periodic scan retries.
    pub fn scan(&mut self) -> Result<ScanReport, hotslab_numa::TopologyError> {
        let trigger = self.pending.trigger();
        if self.pending.periodic {
            self.stats.periodic_scans += 1;
        }
        self.pending = Pending::default();
        self.stats.scans += 1;
        let view = match KernelView::read_at(&self.root) {
            Ok(v) => v,
            Err(e) => {
                self.stats.scan_errors += 1;
                self.last_error = Some(e.to_string());
                return Err(e);
            }
        };
        let kernel = view.snapshot();
        let usable = match self.allowed.get() {
            Some(allowed) => kernel.has_memory.intersection(&allowed),
            None => kernel.has_memory,
        };
        let mut r = reconcile(self.target.hotplug_domain(), usable);
        r.trigger = trigger;
        r.kernel = kernel;
        r.not_allowed = kernel.has_memory.difference(&usable);
        r.unknown = r.unknown.union(
            &kernel
                .has_memory
                .difference(&self.target.hotplug_domain().states.possible()),
        );
        r.not_allowed = r.not_allowed.difference(&r.unknown);
        self.not_allowed = r.not_allowed;
        self.stats.onlined += r.onlined.weight() as u64;
        self.stats.offlined += r.offlined.weight() as u64;
        self.stats.failed += r.failed.len() as u64;
        self.unknown = r.unknown;
        self.last_error = r.failed.first().map(|(n, e)| format!("node {n}: {e}"));
        self.view = Some(view);
        Ok(r)
    }

    /// The counters.
    pub fn stats(&self) -> FollowStats {
        self.stats
    }

    /// The kernel view read by the last successful scan.
    pub fn view(&self) -> Option<&KernelView> {
        self.view.as_ref()
    }

    /// A status snapshot.
    pub fn status(&self, running: bool) -> FollowStatus {
        FollowStatus {
            stats: self.stats,
            kernel: self.view.as_ref().map(KernelView::snapshot),
            domain: self.target.hotplug_domain().snapshot(),
            unknown: self.unknown,
            not_allowed: self.not_allowed,
            view: self.view.clone(),
            last_error: self.last_error.clone(),
            running,
        }
    }
}

/// What a running follower has seen and done (see [`FollowerHandle::status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowStatus {
    /// Counters.
    pub stats: FollowStats,
    /// The kernel's masks at the last successful scan (consistent).
    pub kernel: Option<NodeStateSnapshot>,
    /// The domain's masks after that scan.
    pub domain: NodeStateSnapshot,
    /// Nodes with memory the domain cannot represent.
    pub unknown: NodeMask,
    /// Nodes with memory the process may not bind to yet (not in its `mems_allowed`).
    pub not_allowed: NodeMask,
    /// The full kernel view (CPUs, memory, distances) at the last successful scan.
    pub view: Option<KernelView>,
    /// The last sysfs read error or failed transition, if the last scan had one.
    pub last_error: Option<String>,
    /// Whether the thread is still running.
    pub running: bool,
}

impl FollowStatus {
    /// Does the domain agree with the kernel on `has_memory` (for the nodes it knows and may use)?
    pub fn in_sync(&self) -> bool {
        self.kernel.is_some_and(|k| {
            k.has_memory
                .intersection(&self.domain.possible)
                .difference(&self.not_allowed)
                == self.domain.has_memory
        })
    }
}

struct Shared {
    status: Mutex<FollowStatus>,
    changed: Condvar,
    stop: AtomicBool,
    rescan: AtomicBool,
    waker: Waker,
}

impl Shared {
    fn publish(&self, status: FollowStatus) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = status;
        self.changed.notify_all();
    }
}

/// A running follower. Dropping it (or [`FollowerHandle::stop`]) stops the thread and waits for it.
pub struct FollowerHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl core::fmt::Debug for FollowerHandle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FollowerHandle")
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl FollowerHandle {
    /// The latest status (updated after every batch of messages and every scan).
    pub fn status(&self) -> FollowStatus {
        self.shared
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until `pred` holds for the status (checked now and after every update), up to `timeout`.
    /// Returns the status that satisfied it, or `None` on timeout or if the thread stopped first.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&FollowStatus) -> bool,
    ) -> Option<FollowStatus> {
        let deadline = Instant::now() + timeout;
        let mut g = self.shared.status.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if pred(&g) {
                return Some(g.clone());
            }
            if !g.running {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            g = self
                .shared
                .changed
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Asks the thread for a scan now (it does not wait for it: use [`wait_until`](Self::wait_until)
    /// on `stats.scans`).
    pub fn rescan(&self) {
        self.shared.rescan.store(true, Ordering::Release);
        self.shared.waker.wake();
    }

    /// Stops the thread, waits for it, and returns the final status.
    pub fn stop(mut self) -> FollowStatus {
        self.shutdown();
        self.status()
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FollowerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Follows the running kernel with `domain` (default settings: netlink uevents, `/sys`, 1 s re-scan)
/// until the returned handle is dropped. See [`follow`], including its errors.
pub fn follow_hotplug(domain: &Arc<HotplugDomain>) -> io::Result<FollowerHandle> {
    follow(Arc::clone(domain), FollowConfig::default())
}

/// Starts following: opens the event source first (so nothing is missed), then scans sysfs and
/// reconciles the domain *on the calling thread* (when this returns, the domain matches the kernel as it
/// was then), then starts the background thread `hotslab-hotplug`. Errors: the socket could not be
/// opened (e.g. netlink forbidden: use [`UeventSource::None`]), or sysfs could not be read.
pub fn follow<T>(target: T, config: FollowConfig) -> io::Result<FollowerHandle>
where
    T: FollowTarget + Send + 'static,
{
    let (mut handle, task) = follow_task(target, config)?;
    let thread = std::thread::Builder::new()
        .name("hotslab-hotplug".into())
        .spawn(move || task.run())?;
    handle.thread = Some(thread);
    Ok(handle)
}

/// A follower ready to run on a thread the caller provides ([`follow_task`]).
pub struct FollowerTask<T: FollowTarget> {
    worker: Worker<T>,
}

impl<T: FollowTarget> core::fmt::Debug for FollowerTask<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FollowerTask").finish_non_exhaustive()
    }
}

impl<T: FollowTarget> FollowerTask<T> {
    /// Runs the event loop on the calling thread until its handle is dropped or stopped (or the
    /// event source fails: the error is in the last status).
    pub fn run(self) {
        self.worker.run();
    }
}

/// [`follow`] without the thread: opens the event source, scans and reconciles on the calling
/// thread, and returns the handle with the loop to run ([`FollowerTask::run`]) on a thread of the
/// caller's making (an allocator that must create its threads itself). Dropping the handle stops
/// the loop but does not wait for it.
pub fn follow_task<T>(
    target: T,
    config: FollowConfig,
) -> io::Result<(FollowerHandle, FollowerTask<T>)>
where
    T: FollowTarget,
{
    let socket = match config.source {
        UeventSource::Netlink => Some(EventSocket::netlink(config.recv_buffer)?),
        UeventSource::Datagram(s) => Some(EventSocket::datagram(s.into())?),
        UeventSource::None => None,
    };
    let mut follower = Follower::new(target, &config.sysfs_root).mems_allowed(config.mems_allowed);
    follower.scan().map_err(io::Error::other)?;
    let shared = Arc::new(Shared {
        status: Mutex::new(follower.status(true)),
        changed: Condvar::new(),
        stop: AtomicBool::new(false),
        rescan: AtomicBool::new(false),
        waker: Waker::new()?,
    });
    let worker = Worker {
        follower,
        socket,
        shared: Arc::clone(&shared),
        rescan_interval: config.rescan_interval.max(Duration::from_millis(1)),
        settle: config.settle,
    };
    Ok((
        FollowerHandle {
            shared,
            thread: None,
        },
        FollowerTask { worker },
    ))
}

struct Worker<T: FollowTarget> {
    follower: Follower<T>,
    socket: Option<EventSocket>,
    shared: Arc<Shared>,
    rescan_interval: Duration,
    settle: Duration,
}

/// First delay of the `mems_allowed` back-off, its cap, and how long fast retries go on before only the
/// periodic timer is left.
const RETRY_FIRST: Duration = Duration::from_millis(2);
const RETRY_MAX: Duration = Duration::from_millis(100);
const RETRY_FOR: Duration = Duration::from_secs(10);

impl<T: FollowTarget> Worker<T> {
    fn run(mut self) {
        let mut buf = vec![0u8; 16 * 1024];
        let mut next_periodic = Instant::now() + self.rescan_interval;
        // When the first event of a burst arrived (the settle window runs from there).
        let mut burst_started: Option<Instant> = None;
        // The mems_allowed back-off: next retry, current delay, and when the waiting began.
        let mut retry_at: Option<Instant> = None;
        let mut retry_delay = RETRY_FIRST;
        let mut waiting_since: Option<Instant> = None;
        self.schedule_retry(&mut retry_at, &mut retry_delay, &mut waiting_since);
        loop {
            let now = Instant::now();
            let mut deadline = next_periodic;
            if let Some(t) = burst_started {
                deadline = deadline.min(t + self.settle);
            }
            if let Some(t) = retry_at {
                deadline = deadline.min(t);
            }
            let timeout = deadline.saturating_duration_since(now);
            // Round up so a sub-millisecond remainder does not spin.
            let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            let ready = match socket::poll_readable(
                [
                    self.socket.as_ref().map(EventSocket::raw),
                    Some(self.shared.waker.raw()),
                ],
                ms,
            ) {
                Ok(r) => r,
                Err(e) => {
                    self.fail(e);
                    return;
                }
            };
            if ready[1] {
                self.shared.waker.drain();
            }
            if self.shared.stop.load(Ordering::Acquire) {
                break;
            }
            if self.shared.rescan.swap(false, Ordering::AcqRel) {
                self.follower.request_scan();
            }
            let mut got = false;
            if ready[0] {
                if let Err(e) = self.drain_socket(&mut buf) {
                    self.fail(e);
                    return;
                }
                got = true;
            }
            let now = Instant::now();
            if now >= next_periodic {
                self.follower.on_tick();
                next_periodic = now + self.rescan_interval;
            }
            if retry_at.is_some_and(|t| now >= t) {
                self.follower.on_retry();
                retry_at = None;
            }
            if self.follower.needs_scan() && burst_started.is_none() {
                burst_started = Some(now);
            }
            let settled = burst_started.is_some_and(|t| now >= t + self.settle);
            if self.follower.needs_scan() && (self.follower.scan_is_urgent() || settled) {
                // A failed read is recorded in the status; the next periodic scan retries.
                let _ = self.follower.scan();
                burst_started = None;
                next_periodic = Instant::now() + self.rescan_interval;
                self.schedule_retry(&mut retry_at, &mut retry_delay, &mut waiting_since);
                got = true;
            }
            if got {
                self.shared.publish(self.follower.status(true));
            }
        }
        self.shared.publish(self.follower.status(false));
    }

    /// After a scan: while a node waits for `mems_allowed`, re-scan on a doubling delay (for at most
    /// [`RETRY_FOR`]; the periodic timer carries on after that).
    fn schedule_retry(
        &self,
        retry_at: &mut Option<Instant>,
        delay: &mut Duration,
        since: &mut Option<Instant>,
    ) {
        let now = Instant::now();
        if !self.follower.wants_retry() {
            *retry_at = None;
            *delay = RETRY_FIRST;
            *since = None;
            return;
        }
        let started = *since.get_or_insert(now);
        if now.duration_since(started) > RETRY_FOR {
            *retry_at = None;
            return;
        }
        *retry_at = Some(now + *delay);
        *delay = (*delay * 2).min(RETRY_MAX);
    }

    fn drain_socket(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let Some(sock) = self.socket.as_ref() else {
            return Ok(());
        };
        loop {
            match sock.recv(buf)? {
                Recv::Message(n) => {
                    self.follower.on_message(&buf[..n]);
                }
                Recv::Truncated => self.follower.on_truncated(),
                Recv::Foreign => self.follower.on_foreign(),
                Recv::Overflow => self.follower.on_overflow(),
                Recv::Empty => return Ok(()),
                Recv::Closed => {
                    // The sender of a replay went away: carry on with periodic scans only.
                    self.socket = None;
                    return Ok(());
                }
            }
        }
    }

    fn fail(&mut self, e: io::Error) {
        let mut s = self.follower.status(false);
        s.last_error = Some(format!("event loop: {e}"));
        self.shared.publish(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CallbackRef, LockKind, MemoryCallback, MemoryEvent, MemoryNotify, NotifyError};

    fn n(id: u16) -> NodeId {
        NodeId::new(id)
    }

    /// A kernel uevent as the kernel lays it out (see QEMU.md).
    fn ev(action: &str, path: &str, subsystem: &str, seq: u64) -> Vec<u8> {
        format!(
            "{action}@{path}\0ACTION={action}\0DEVPATH={path}\0SUBSYSTEM={subsystem}\0SEQNUM={seq}\0"
        )
        .into_bytes()
    }

    fn block(action: &str, b: u32, seq: u64) -> Vec<u8> {
        ev(
            action,
            &format!("/devices/system/memory/memory{b}"),
            "memory",
            seq,
        )
    }

    fn node(action: &str, k: u16, seq: u64) -> Vec<u8> {
        ev(
            action,
            &format!("/devices/system/node/node{k}"),
            "node",
            seq,
        )
    }

    /// Masks of the QEMU guest: nodes 0-1 with (normal) memory, node 2 possible.
    fn masks(online: NodeMask, has_memory: NodeMask) -> NodeStateSnapshot {
        NodeStateSnapshot {
            possible: NodeMask::range(0, 3),
            online,
            has_memory,
            has_normal_memory: NodeMask::range(0, 2).intersection(&has_memory),
        }
    }

    fn boot() -> NodeStateSnapshot {
        masks(NodeMask::range(0, 2), NodeMask::range(0, 2))
    }

    type Log = Arc<Mutex<Vec<(MemoryEvent, u16, bool)>>>;

    /// Records every event; vetoes GOING_ONLINE `veto_online` times.
    struct Recorder {
        log: Log,
        veto_online: Mutex<u32>,
    }

    impl MemoryCallback for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        fn notify(&self, e: &MemoryNotify) -> Result<(), NotifyError> {
            self.log.lock().unwrap().push((e.event, e.node.0, e.forced));
            let mut v = self.veto_online.lock().unwrap();
            if e.event == MemoryEvent::GoingOnline && *v > 0 {
                *v -= 1;
                return Err(NotifyError::NoMemory);
            }
            Ok(())
        }
    }

    struct Rig {
        fake: FakeSysfs,
        domain: Arc<HotplugDomain>,
        log: Log,
        rec: Arc<Recorder>,
    }

    fn rig(start: NodeStateSnapshot) -> Rig {
        let fake = FakeSysfs::new().unwrap();
        fake.set_masks(&boot()).unwrap();
        fake.set_node(n(0), "0", 512 << 20, &[10, 20]).unwrap();
        fake.set_node(n(1), "1", 512 << 20, &[20, 10]).unwrap();
        let domain = Arc::new(HotplugDomain::with_states(start, LockKind::Seed));
        let log: Log = Arc::default();
        let rec = Arc::new(Recorder {
            log: log.clone(),
            veto_online: Mutex::new(0),
        });
        let _h = domain
            .register_notifier(CallbackRef::Shared(rec.clone()), 0)
            .unwrap();
        Rig {
            fake,
            domain,
            log,
            rec,
        }
    }

    impl Rig {
        /// The kernel hot-adds 512 MiB (blocks 32-35) on node 2 and onlines it.
        fn kernel_hot_adds(&self) {
            self.fake
                .set_masks(&masks(NodeMask::range(0, 3), NodeMask::range(0, 3)))
                .unwrap();
            self.fake
                .set_node(n(2), "", 512 << 20, &[20, 20, 10])
                .unwrap();
        }

        fn take_log(&self) -> Vec<(MemoryEvent, u16, bool)> {
            std::mem::take(&mut *self.log.lock().unwrap())
        }
    }

    fn hot_add_events(seq: &mut u64) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        let mut next = || {
            *seq += 1;
            *seq
        };
        for b in 32..36 {
            v.push(block("add", b, next()));
        }
        v.push(node("add", 2, next()));
        for b in 32..36 {
            v.push(block("online", b, next()));
        }
        v
    }

    #[test]
    #[cfg_attr(miri, ignore)] // fake sysfs files and the sysfs reader (no file access under Miri)
    fn hot_add_burst_coalesces_into_one_online() {
        use MemoryEvent::*;
        let r = rig(boot());
        let mut f =
            Follower::new(r.domain.clone(), r.fake.root()).mems_allowed(MemsAllowed::Ignore);
        assert!(f.needs_scan() && f.scan_is_urgent());
        let first = f.scan().unwrap();
        assert_eq!(first.trigger, Trigger::Start);
        assert!(!first.changed());
        assert!(!f.needs_scan());

        r.kernel_hot_adds();
        let mut seq = 100;
        for m in hot_add_events(&mut seq) {
            assert_eq!(f.on_message(&m), MessageKind::Relevant);
        }
        assert!(f.needs_scan());
        assert!(!f.scan_is_urgent(), "a burst waits for its settle window");
        let rep = f.scan().unwrap();
        assert_eq!(rep.trigger, Trigger::Uevents(9));
        assert_eq!(rep.onlined, NodeMask::single(n(2)));
        assert!(rep.failed.is_empty() && rep.unknown.is_empty());
        let s = r.domain.snapshot();
        assert_eq!(s.has_memory, NodeMask::range(0, 3));
        assert!(
            !s.has_normal_memory.test(n(2)),
            "hot-added memory is movable"
        );
        assert_eq!(r.take_log(), [(GoingOnline, 2, false), (Online, 2, false)]);
        assert_eq!(f.stats().relevant, 9);
        assert_eq!(f.stats().onlined, 1);
        assert_eq!(f.stats().seqnum_gaps, 0);
        assert_eq!(f.view().unwrap().node(n(2)).unwrap().mem_total, 512 << 20);
        assert!(f.status(true).in_sync());
    }

    #[test]
    #[cfg_attr(miri, ignore)] // fake sysfs files and the sysfs reader (no file access under Miri)
    fn blocks_going_offline_one_by_one_force_the_offline_after_the_last() {
        use MemoryEvent::*;
        let r = rig(boot());
        r.kernel_hot_adds();
        let mut f =
            Follower::new(r.domain.clone(), r.fake.root()).mems_allowed(MemsAllowed::Ignore);
        f.scan().unwrap();
        r.take_log();
        // device_del: the kernel offlines the blocks itself; node 2 keeps memory until the last.
        let mut seq = 200;
        for b in 32..35 {
            seq += 1;
            f.on_message(&block("offline", b, seq));
        }
        let rep = f.scan().unwrap();
        assert!(
            !rep.changed(),
            "three of four blocks offline: node 2 still has memory"
        );
        r.fake
            .set_masks(&masks(NodeMask::range(0, 3), NodeMask::range(0, 2)))
            .unwrap();
        seq += 1;
        f.on_message(&block("offline", 35, seq));
        let rep = f.scan().unwrap();
        assert_eq!(rep.offlined, NodeMask::single(n(2)));
        assert_eq!(r.take_log(), [(GoingOffline, 2, true), (Offline, 2, true)]);
        let s = r.domain.snapshot();
        assert!(!s.has_memory.test(n(2)));
        assert!(s.online.test(n(2)), "the domain keeps the node online");

        // Then the removal: blocks and the node disappear; nothing more to do.
        r.fake.set_masks(&boot()).unwrap();
        r.fake.remove_node(n(2)).unwrap();
        for b in 32..36 {
            seq += 1;
            f.on_message(&block("remove", b, seq));
        }
        seq += 1;
        f.on_message(&node("remove", 2, seq));
        let rep = f.scan().unwrap();
        assert!(!rep.changed());
        assert!(r.take_log().is_empty());
        assert_eq!(f.stats().offlined, 1);
    }

    #[test]
    #[cfg_attr(miri, ignore)] // fake sysfs files and the sysfs reader (no file access under Miri)
    fn events_are_only_triggers_sysfs_decides() {
        let r = rig(boot());
        let mut f =
            Follower::new(r.domain.clone(), r.fake.root()).mems_allowed(MemsAllowed::Ignore);
        f.scan().unwrap();
        // A block of node 0 goes offline and back: has_memory never changes.
        f.on_message(&block("offline", 7, 1));
        f.on_message(&block("online", 7, 2));
        let rep = f.scan().unwrap();
        assert_eq!(rep.trigger, Trigger::Uevents(2));
        assert!(!rep.changed());
        assert!(r.take_log().is_empty());
        // An event that claims node 2 appeared, while sysfs says it has no memory: nothing happens.
        f.on_message(&node("add", 2, 3));
        assert!(!f.scan().unwrap().changed());
        assert!(!r.domain.states.has_memory().test(n(2)));
    }

    #[test]
    #[cfg_attr(miri, ignore)] // fake sysfs files and the sysfs reader (no file access under Miri)
    fn lost_events_are_recovered_by_a_rescan() {
        let r = rig(boot());
        let mut f =
            Follower::new(r.domain.clone(), r.fake.root()).mems_allowed(MemsAllowed::Ignore);
        f.scan().unwrap();
        // The whole hot-add burst was lost (socket buffer overflow): only ENOBUFS is seen.
        r.kernel_hot_adds();
        assert!(!f.needs_scan());
        f.on_overflow();
        assert!(f.needs_scan() && f.scan_is_urgent());
        let rep = f.scan().unwrap();
        assert_eq!(rep.trigger, Trigger::Lost);
        assert_eq!(rep.onlined, NodeMask::single(n(2)));
        assert_eq!(f.stats().overflows, 1);

        // Events lost without ENOBUFS (filtered or dropped): a SEQNUM gap.
        r.fake.set_masks(&boot()).unwrap();
        f.on_message(&ev("add", "/devices/system/cpu/cpu1", "cpu", 10));
        assert!(!f.needs_scan(), "an unrelated event does not scan");
        f.on_message(&ev("change", "/devices/virtual/misc/x", "misc", 14));
        assert_eq!(f.stats().seqnum_gaps, 1);
        assert!(f.scan_is_urgent());
        assert_eq!(f.scan().unwrap().offlined, NodeMask::single(n(2)));

        // No event at all: the periodic timer.
        r.kernel_hot_adds();
        f.on_tick();
        let rep = f.scan().unwrap();
        assert_eq!(rep.trigger, Trigger::Periodic);
        assert_eq!(rep.onlined, NodeMask::single(n(2)));
        assert_eq!(f.stats().periodic_scans, 1);
    }

    #[test]
    #[cfg_attr(miri, ignore)] // fake sysfs files and the sysfs reader (no file access under Miri)
    fn a_vetoed_online_is_retried_by_the_next_scan() {
        use MemoryEvent::*;
        let r = rig(boot());
        *r.rec.veto_online.lock().unwrap() = 1;
        r.kernel_hot_adds();
        let mut f =
            Follower::new(r.domain.clone(), r.fake.root()).mems_allowed(MemsAllowed::Ignore);
        let rep = f.scan().unwrap();
        assert_eq!(rep.onlined, NodeMask::new());
        assert_eq!(rep.failed.len(), 1);
        assert_eq!(rep.failed[0].0, n(2));
        assert!(matches!(
            rep.failed[0].1,
            HotplugError::Vetoed { by: "recorder", .. }
        ));
        assert!(!f.status(true).in_sync());
        assert!(f.status(true).last_error.is_some());
        assert!(!r.domain.states.has_memory().test(n(2)));
        f.on_tick();
        let rep = f.scan().unwrap();
        assert_eq!(rep.onlined, NodeMask::single(n(2)));
        assert_eq!(
            r.take_log(),
            [
                (GoingOnline, 2, false),
                (GoingOnline, 2, false),
                (Online, 2, false)
            ]
        );
        let st = f.status(true);
        assert!(st.in_sync() && st.last_error.is_none());
        assert_eq!((st.stats.failed, st.stats.onlined), (1, 1));
    }

    #[test]
    #[cfg_attr(miri, ignore)] // fake sysfs files and the sysfs reader (no file access under Miri)
    fn nodes_the_domain_cannot_represent_are_reported_not_failed() {
        // A domain over the boot nodes only (like the process-wide default domain).
        let r = rig(NodeStateSnapshot::boot(
            NodeMask::range(0, 2),
            NodeMask::range(0, 2),
        ));
        r.kernel_hot_adds();
        let mut f =
            Follower::new(r.domain.clone(), r.fake.root()).mems_allowed(MemsAllowed::Ignore);
        let rep = f.scan().unwrap();
        assert_eq!(rep.unknown, NodeMask::single(n(2)));
        assert!(rep.failed.is_empty() && !rep.changed());
        let st = f.status(true);
        assert_eq!(st.unknown, NodeMask::single(n(2)));
        assert!(st.in_sync(), "in sync on the nodes it knows");
    }

    #[test]
    #[cfg_attr(miri, ignore)] // fake sysfs files and the sysfs reader (no file access under Miri)
    fn the_start_scan_brings_a_domain_in_line_with_the_kernel() {
        use MemoryEvent::*;
        // A domain that believes every possible node has memory (e.g. built from a topology).
        let all = NodeStateSnapshot::boot(NodeMask::range(0, 3), NodeMask::range(0, 3));
        let r = rig(all);
        let mut f =
            Follower::new(r.domain.clone(), r.fake.root()).mems_allowed(MemsAllowed::Ignore);
        let rep = f.scan().unwrap();
        assert_eq!(rep.trigger, Trigger::Start);
        assert_eq!(rep.offlined, NodeMask::single(n(2)));
        assert_eq!(r.take_log(), [(GoingOffline, 2, true), (Offline, 2, true)]);
    }

    #[test]
    #[cfg_attr(miri, ignore)] // fake sysfs files and the sysfs reader (no file access under Miri)
    fn a_node_waits_for_the_processs_mems_allowed() {
        use MemoryEvent::*;
        let r = rig(boot());
        let allowed = Arc::new(Mutex::new(NodeMask::range(0, 2)));
        let a = allowed.clone();
        let mut f = Follower::new(r.domain.clone(), r.fake.root()).mems_allowed(
            MemsAllowed::Custom(Arc::new(move || Some(*a.lock().unwrap()))),
        );
        f.scan().unwrap();
        // The kernel onlined node 2, but the cpuset update that lets us bind to it has not run yet.
        r.kernel_hot_adds();
        f.on_message(&block("online", 32, 1));
        let rep = f.scan().unwrap();
        assert!(!rep.changed());
        assert_eq!(rep.not_allowed, NodeMask::single(n(2)));
        assert!(f.wants_retry());
        let st = f.status(true);
        assert_eq!(st.not_allowed, NodeMask::single(n(2)));
        assert!(st.in_sync(), "in sync on the nodes it may use");
        assert!(r.take_log().is_empty());
        // The cpuset catches up; no uevent says so: the retry does.
        allowed.lock().unwrap().set(n(2));
        f.on_retry();
        assert!(f.scan_is_urgent());
        let rep = f.scan().unwrap();
        assert_eq!(rep.trigger, Trigger::Retry);
        assert_eq!(rep.onlined, NodeMask::single(n(2)));
        assert!(!f.wants_retry());
        assert_eq!(r.take_log(), [(GoingOnline, 2, false), (Online, 2, false)]);
        // A node the process loses the right to use goes offline in the domain (forced).
        allowed.lock().unwrap().clear(n(2));
        f.on_tick();
        assert_eq!(f.scan().unwrap().offlined, NodeMask::single(n(2)));
        // No NUMA policy support: no filter.
        assert!(MemsAllowed::Ignore.get().is_none());
        if let Some(m) = process_mems_allowed() {
            assert!(!m.is_empty(), "this process may allocate somewhere");
        }
    }

    #[test]
    #[cfg_attr(miri, ignore)] // fake sysfs files and the sysfs reader (no file access under Miri)
    fn malformed_foreign_and_unreadable() {
        let r = rig(boot());
        let mut f =
            Follower::new(r.domain.clone(), r.fake.root()).mems_allowed(MemsAllowed::Ignore);
        f.scan().unwrap();
        assert_eq!(f.on_message(b""), MessageKind::Malformed);
        assert_eq!(f.on_message(b"libudev\0xxxx"), MessageKind::Malformed);
        assert_eq!(f.on_message(b"garbage"), MessageKind::Malformed);
        f.on_foreign();
        assert!(!f.needs_scan());
        f.on_truncated();
        assert!(
            f.scan_is_urgent(),
            "a cut datagram may have been a memory event"
        );
        let st = f.stats();
        assert_eq!((st.messages, st.malformed), (5, 5));
        f.scan().unwrap();

        // sysfs unreadable: an error, the domain untouched, counted.
        let gone = Follower::new(r.domain.clone(), r.fake.root().join("missing"))
            .mems_allowed(MemsAllowed::Ignore);
        let mut gone = gone;
        assert!(gone.scan().is_err());
        assert_eq!(gone.stats().scan_errors, 1);
        assert!(gone.status(true).last_error.unwrap().contains("possible"));
        assert_eq!(r.domain.snapshot().has_memory, NodeMask::range(0, 2));
    }
}
