//! Statistics published for other processes (`hotslab-top`): a small fixed-size shared-memory
//! file `/dev/shm/hotslab.<pid>` that the default domain rewrites from its slow paths (a heap
//! acquiring slabs from a node part or giving one back, a hotplug event), at most every
//! [`INTERVAL_MS`] ms. Owns the writer's state (the mapping, the rate limit, the ring of recent
//! hotplug events, the exit hook) and the reader ([`read`]) that `hotslab-top` uses.
//!
//! The writer never allocates and never runs on the allocation fast path: the file is created
//! lazily by the first slow path after the default domain is built, with raw `open`,
//! `ftruncate` and `mmap`; the path lives in a static buffer; `errno` is kept. It takes
//! `slab_mutex` only with `try_lock` (a slow path may hold a heap's lock, which comes after
//! `slab_mutex` in the lock order: a publish that cannot get the registry at once is skipped and
//! retried by the next slow path), then each part's list lock briefly (through the cache
//! statistics), like `report.rs`. A fork child forgets the parent's mapping (`after_fork_child`)
//! and publishes under its own pid. `HOTSLAB_PUBLISH=0` switches it off; the file is removed at
//! exit (an `atexit` hook, registered when the default domain is built). A process killed
//! without running its exit hooks leaves a stale file: the header records the pid and the
//! process start time, which [`read`] checks against `/proc/<pid>/stat`.
//!
//! ## Layout (version 1; native byte order, which is little-endian on every supported target)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic [`MAGIC`] (`b"HSLBSTAT"`) |
//! | 8 | 4 | version [`VERSION`] |
//! | 12 | 4 | header size [`HEADER_SIZE`] (offset of the first cache record) |
//! | 16 | 4 | file size [`FILE_SIZE`] |
//! | 20 | 4 | cache record size [`CACHE_RECORD_SIZE`] |
//! | 24 | 8 | seqlock sequence: odd while the writer is rewriting the body |
//! | 32 | 4 | pid |
//! | 36 | 4 | capacity in cache records [`MAX_CACHES`] |
//! | 40 | 8 | process start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot) |
//! | 48 | 8 | time of this snapshot, `CLOCK_MONOTONIC_COARSE` in ms |
//! | 56 | 8 | snapshots written so far |
//! | 64 | 4 | locking mode: 0 `OnlineMems`, 1 `Legacy`, 2 `SlabNodes` |
//! | 68 | 4 | node ids described (`nr_node_ids`, at most [`MAX_NODES`]) |
//! | 72 | 4 | cache records in use |
//! | 76 | 4 | flags: bit 0 simulated topology, bit 1 caches left out (more than [`MAX_CACHES`]), bit 2 node ids left out |
//! | 80 | 8 | hotplug events seen (memory notifier calls of the default domain) |
//! | 88 | 8 | large objects live |
//! | 96 | 8 | bytes in live large objects |
//! | 104 | 8 | bytes mapped from the kernel |
//! | 112 | 16 | reserved (0) |
//! | 128 | 8 × [`MAX_NODES`] | node records, index = node id: `u16` real node behind it, `u8` memory tier (255: unknown), `u8` flags (bit 0 in the topology, bit 1 has memory), 4 reserved bytes |
//! | 640 | 32 × [`MAX_EVENTS`] | the last hotplug events, a ring indexed by event number % [`MAX_EVENTS`]: `u64` event number (1-based; 0 = empty slot), `u64` time (ms, as above), `u16` node, `u8` kind (0 going-online, 1 cancel-online, 2 online, 3 going-offline, 4 cancel-offline, 5 offline), `u8` flags (bit 0 forced, bit 1 vetoed by the slab notifier), 12 reserved bytes |
//! | 2048 | [`CACHE_RECORD_SIZE`] × [`MAX_CACHES`] | cache records: name (32 bytes, NUL-padded, cut), `u64` active objects, `u64` total objects, `u32` object size, `u32` slot size, `u32` objects per slab, `u32` 4 KiB pages per slab, `u64` allocations, `u64` frees, `u32` × [`MAX_NODES`] slabs per node id |
//!
//! A reader copies the file, then accepts the copy if the sequence was even and unchanged
//! across the copy (a seqlock: the writer makes it odd, fences, writes the body, and makes it
//! even again with a release store).

use core::fmt::Write as _;
use core::ptr;
use std::sync::atomic::{fence, AtomicBool, AtomicI32, AtomicPtr, AtomicU64, Ordering};

use hotslab_hotplug::{MemoryEvent, MemoryNotify, NotifyError};
use hotslab_numa::NodeId;

use crate::domain::{LockingMode, SlabDomain};
use crate::stats::FixedWriter;

/// First eight bytes of the file.
pub const MAGIC: [u8; 8] = *b"HSLBSTAT";
/// Layout version (changes whenever the layout does).
pub const VERSION: u32 = 1;
/// Node ids described (higher ids are left out and flagged).
pub const MAX_NODES: usize = 64;
/// Hotplug events kept in the ring.
pub const MAX_EVENTS: usize = 16;
/// Cache records (more caches are left out and flagged).
pub const MAX_CACHES: usize = 256;
/// Offset of the first cache record.
pub const HEADER_SIZE: usize = 2048;
/// Size of one cache record.
pub const CACHE_RECORD_SIZE: usize = 80 + 4 * MAX_NODES;
/// Size of the file.
pub const FILE_SIZE: usize = HEADER_SIZE + CACHE_RECORD_SIZE * MAX_CACHES;
/// Shortest time between two snapshots of a busy process, in ms (hotplug events do not wait).
pub const INTERVAL_MS: u64 = 100;
/// Bytes of a cache name kept.
pub const NAME_LEN: usize = 32;

const NODES_AT: usize = 128;
const EVENTS_AT: usize = NODES_AT + 8 * MAX_NODES;
const EVENT_SIZE: usize = 32;
const _: () = assert!(EVENTS_AT + EVENT_SIZE * MAX_EVENTS <= HEADER_SIZE);

/// The path of process `pid`'s file.
pub fn path(pid: u32) -> String {
    format!("/dev/shm/hotslab.{pid}")
}

// ---- writer ----------------------------------------------------------------------------------

/// Switched on by `enable` once the default domain is built (unless `HOTSLAB_PUBLISH=0`).
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Held by the one thread writing a snapshot (or creating the file).
static BUSY: AtomicBool = AtomicBool::new(false);
/// The mapping (null until created), the pid that created it, and a failed creation.
static MAP: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());
static OWNER: AtomicI32 = AtomicI32::new(0);
static GAVE_UP: AtomicBool = AtomicBool::new(false);
/// Earliest time (ms) of the next rate-limited snapshot.
static NEXT_MS: AtomicU64 = AtomicU64::new(0);
/// A hotplug event wants a snapshot regardless of the rate limit.
static FORCE: AtomicBool = AtomicBool::new(false);
/// The ring of hotplug events (written by the hotplug writer, which is serialised).
static EVENTS: AtomicU64 = AtomicU64::new(0);
static RING: [[AtomicU64; 3]; MAX_EVENTS] =
    [const { [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)] }; MAX_EVENTS];

/// `/dev/shm/hotslab.<pid>` NUL-terminated, of the creating process.
struct PathBuf(core::cell::UnsafeCell<[u8; 40]>);
// SAFETY: written only by the holder of BUSY while MAP is null; read at exit.
unsafe impl Sync for PathBuf {}
static PATH: PathBuf = PathBuf(core::cell::UnsafeCell::new([0; 40]));

/// Whether `HOTSLAB_PUBLISH` left publishing on (knobs.rs) — called once the default domain is
/// built; registers the exit hook.
pub(crate) fn enable(on: bool) {
    if !on || cfg!(miri) {
        return;
    }
    // SAFETY: registers an extern "C" function that never unwinds (see knobs::after_build for
    // glibc's static atexit storage).
    if unsafe { libc::atexit(remove_at_exit) } != 0 {
        return;
    }
    ENABLED.store(true, Ordering::Release);
}

/// A slow path of domain `d` ran: publish a snapshot if `d` is the default domain and the last
/// one is older than [`INTERVAL_MS`]. Cheap otherwise: a load, a pointer compare, a vDSO clock.
#[inline]
pub(crate) fn tick(d: &SlabDomain) {
    if !ENABLED.load(Ordering::Relaxed) || !crate::global::is_default(d) {
        return;
    }
    if !FORCE.load(Ordering::Relaxed) && crate::mem::now_ms() < NEXT_MS.load(Ordering::Relaxed) {
        return;
    }
    publish(d);
}

/// A memory notifier call of domain `d` returned `r`: record it and publish at once.
pub(crate) fn hotplug_event(d: &SlabDomain, ev: &MemoryNotify, r: &Result<(), NotifyError>) {
    if !ENABLED.load(Ordering::Relaxed) || !crate::global::is_default(d) {
        return;
    }
    let kind = match ev.event {
        MemoryEvent::GoingOnline => 0u64,
        MemoryEvent::CancelOnline => 1,
        MemoryEvent::Online => 2,
        MemoryEvent::GoingOffline => 3,
        MemoryEvent::CancelOffline => 4,
        MemoryEvent::Offline => 5,
    };
    let flags = ev.forced as u64 | ((r.is_err() as u64) << 1);
    let n = EVENTS.load(Ordering::Relaxed) + 1;
    let slot = &RING[(n % MAX_EVENTS as u64) as usize];
    slot[0].store(0, Ordering::Relaxed);
    slot[1].store(crate::mem::now_ms(), Ordering::Relaxed);
    slot[2].store(
        ev.node.index() as u64 | kind << 16 | flags << 24,
        Ordering::Relaxed,
    );
    slot[0].store(n, Ordering::Release);
    EVENTS.store(n, Ordering::Release);
    FORCE.store(true, Ordering::Relaxed);
    publish(d);
}

/// Writes a snapshot of the default domain now, regardless of the rate limit (a program that
/// goes idle can call this so that `hotslab-top` sees its final state). Never allocates. False
/// if publishing is off (`HOTSLAB_PUBLISH=0`, or the default domain is not built), the file
/// cannot be created, or another thread is writing a snapshot or holds the cache registry.
pub fn publish_now() -> bool {
    match crate::global::default_domain() {
        Some(d) if ENABLED.load(Ordering::Relaxed) => {
            FORCE.store(true, Ordering::Relaxed);
            publish(d)
        }
        _ => false,
    }
}

/// A fork child: the mapping is the parent's file; forget it (the next slow path creates
/// `/dev/shm/hotslab.<child pid>`). The child has one thread, so BUSY is released too.
#[cfg_attr(loom, allow(dead_code))] // fork.rs is not built under loom
pub(crate) fn after_fork_child() {
    let m = MAP.swap(ptr::null_mut(), Ordering::AcqRel);
    if !m.is_null() {
        // SAFETY: m is our mapping of FILE_SIZE bytes; nothing else in the child uses it.
        unsafe { libc::munmap(m.cast(), FILE_SIZE) };
    }
    OWNER.store(0, Ordering::Relaxed);
    GAVE_UP.store(false, Ordering::Relaxed);
    NEXT_MS.store(0, Ordering::Relaxed);
    BUSY.store(false, Ordering::Release);
}

extern "C" fn remove_at_exit() {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    if MAP.load(Ordering::Acquire).is_null() || OWNER.load(Ordering::Acquire) != me {
        return;
    }
    ENABLED.store(false, Ordering::Relaxed);
    // SAFETY: PATH was written (NUL-terminated) before MAP was published, by this process.
    unsafe { libc::unlink((*PATH.0.get()).as_ptr().cast()) };
}

#[cold]
fn publish(d: &SlabDomain) -> bool {
    if BUSY.swap(true, Ordering::Acquire) {
        return false;
    }
    let _e = crate::mem::KeepErrno::new();
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let mut map = MAP.load(Ordering::Acquire);
    if !map.is_null() && OWNER.load(Ordering::Relaxed) != me {
        // A fork child whose handlers did not run (no default-domain fork hooks): start over.
        // SAFETY: our view of the parent's mapping; nothing else here uses it.
        unsafe { libc::munmap(map.cast(), FILE_SIZE) };
        MAP.store(ptr::null_mut(), Ordering::Release);
        map = ptr::null_mut();
        GAVE_UP.store(false, Ordering::Relaxed);
    }
    if map.is_null() {
        if GAVE_UP.load(Ordering::Relaxed) {
            BUSY.store(false, Ordering::Release);
            return false;
        }
        map = create(me);
        if map.is_null() {
            GAVE_UP.store(true, Ordering::Relaxed);
            BUSY.store(false, Ordering::Release);
            return false;
        }
    }
    let done = match d.try_registry() {
        Some(reg) => {
            // SAFETY: map is our FILE_SIZE-byte mapping; we hold BUSY (the only writer).
            unsafe { write_snapshot(map, d, &reg) };
            true
        }
        None => false,
    };
    if done {
        FORCE.store(false, Ordering::Relaxed);
        NEXT_MS.store(crate::mem::now_ms() + INTERVAL_MS, Ordering::Relaxed);
    }
    BUSY.store(false, Ordering::Release);
    done
}

/// Creates and maps `/dev/shm/hotslab.<me>` (holder of BUSY). Null on failure.
fn create(me: i32) -> *mut u8 {
    // SAFETY: only the holder of BUSY writes PATH, while MAP is null.
    let path = unsafe { &mut *PATH.0.get() };
    *path = [0; 40];
    let mut w = FixedWriter::new(&mut path[..39]);
    let _ = write!(w, "/dev/shm/hotslab.{me}");
    let start = start_time_of_self();
    // SAFETY: path is NUL-terminated (the last byte stays 0); open does not allocate.
    let fd = unsafe {
        libc::open(
            path.as_ptr().cast(),
            libc::O_RDWR | libc::O_CREAT | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            0o600,
        )
    };
    if fd < 0 {
        return ptr::null_mut();
    }
    // SAFETY: fd is ours; truncating to 0 first zeroes a stale file of a dead process.
    let sized = unsafe {
        libc::ftruncate(fd, 0) == 0 && libc::ftruncate(fd, FILE_SIZE as libc::off_t) == 0
    };
    let m = if sized {
        // SAFETY: a fresh shared mapping of the file we own; checked below.
        unsafe {
            libc::mmap(
                ptr::null_mut(),
                FILE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        }
    } else {
        libc::MAP_FAILED
    };
    // SAFETY: fd is ours; the mapping keeps the file.
    unsafe { libc::close(fd) };
    if m == libc::MAP_FAILED {
        // SAFETY: path is NUL-terminated.
        unsafe { libc::unlink(path.as_ptr().cast()) };
        return ptr::null_mut();
    }
    let m = m.cast::<u8>();
    // SAFETY: m is FILE_SIZE writable bytes, zeroed by the truncation; no reader trusts them
    // before the magic and an even sequence.
    unsafe {
        put(m, 8, VERSION);
        put(m, 12, HEADER_SIZE as u32);
        put(m, 16, FILE_SIZE as u32);
        put(m, 20, CACHE_RECORD_SIZE as u32);
        put(m, 32, me as u32);
        put(m, 36, MAX_CACHES as u32);
        put(m, 40, start);
        fence(Ordering::Release);
        ptr::copy_nonoverlapping(MAGIC.as_ptr(), m, 8);
    }
    OWNER.store(me, Ordering::Relaxed);
    MAP.store(m, Ordering::Release);
    m
}

/// Field 22 of `/proc/self/stat` (read without allocating); 0 if unreadable.
fn start_time_of_self() -> u64 {
    let mut buf = [0u8; 1024];
    // SAFETY: a NUL-terminated path; read into our buffer; fd closed.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/stat".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return 0;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    if n <= 0 {
        return 0;
    }
    parse_start_time(&buf[..n as usize]).unwrap_or(0)
}

/// The start time (field 22) out of a `/proc/<pid>/stat` line.
fn parse_start_time(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = stat.get(close + 2..)?;
    // Fields 3.. follow the ')': field 22 is the 20th of them.
    let field = rest.split(|&b| b == b' ').nth(19)?;
    let mut v = 0u64;
    for &b in field {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(v)
}

/// # Safety
/// `m + at .. m + at + size_of::<T>()` is inside the mapping and aligned for `T`.
unsafe fn put<T: Copy>(m: *mut u8, at: usize, v: T) {
    // SAFETY: forwarded.
    unsafe { ptr::write_volatile(m.add(at).cast::<T>(), v) };
}

fn seq(m: *mut u8) -> &'static AtomicU64 {
    // SAFETY: offset 24 is 8-aligned in a page-aligned mapping that lives as long as the process
    // (or until a fork child drops it, after which nothing uses `m`).
    unsafe { &*m.add(24).cast::<AtomicU64>() }
}

/// Rewrites the body under the seqlock.
///
/// # Safety
/// `m` is the mapping; the caller holds BUSY and the registry.
unsafe fn write_snapshot(m: *mut u8, d: &SlabDomain, reg: &crate::domain::Registry) {
    let s = seq(m);
    let old = s.load(Ordering::Relaxed);
    s.store(old | 1, Ordering::Relaxed);
    fence(Ordering::Release);
    let topo = d.topology();
    let has_memory = d.hotplug().states.has_memory();
    let mut nr_nodes = 0usize;
    let mut flags = topo.is_simulated() as u32;
    // SAFETY (whole block): every offset is inside the mapping and aligned for its type.
    unsafe {
        put(m, 48, crate::mem::now_ms());
        let n = ptr::read_volatile(m.add(56).cast::<u64>());
        put(m, 56, n + 1);
        put(
            m,
            64,
            match d.mode() {
                LockingMode::OnlineMems => 0u32,
                LockingMode::Legacy => 1,
                LockingMode::SlabNodes => 2,
            },
        );
        for i in 0..MAX_NODES {
            let nid = NodeId::new(i as u16);
            let at = NODES_AT + 8 * i;
            let present = topo.contains(nid);
            let real = topo.real_node(nid).index() as u16;
            let f = present as u8 | (has_memory.test(nid) as u8) << 1;
            put(m, at, if present { real } else { 0 });
            put(m, at + 2, tier_of(d, nid).unwrap_or(255));
            put(m, at + 3, f);
            if present {
                nr_nodes = i + 1;
            }
        }
        let mut ncaches = 0usize;
        SlabDomain::for_each_cache(reg, |c| {
            nr_nodes = nr_nodes.max(c.nr_node_ids.min(MAX_NODES));
            if c.nr_node_ids > MAX_NODES {
                flags |= 4;
            }
            if ncaches == MAX_CACHES {
                flags |= 2;
                return;
            }
            let r = m.add(HEADER_SIZE + ncaches * CACHE_RECORD_SIZE);
            let mut name = [0u8; NAME_LEN];
            let b = c.name.as_bytes();
            let k = b.len().min(NAME_LEN);
            name[..k].copy_from_slice(&b[..k]);
            ptr::copy_nonoverlapping(name.as_ptr(), r, NAME_LEN);
            let st = c.stats();
            put(r, 32, st.active_objects as u64);
            put(r, 40, st.total_objects as u64);
            put(r, 48, st.object_size as u32);
            put(r, 52, st.stride as u32);
            put(r, 56, st.objs_per_slab as u32);
            put(r, 60, st.pages_per_slab as u32);
            put(r, 64, st.allocs);
            put(r, 72, st.frees);
            let mut slabs = [0usize; MAX_NODES];
            c.node_slabs(&mut slabs);
            for (i, &n) in slabs.iter().enumerate() {
                put(r, 80 + 4 * i, n.min(u32::MAX as usize) as u32);
            }
            ncaches += 1;
        });
        put(m, 68, nr_nodes as u32);
        put(m, 72, ncaches as u32);
        put(m, 76, flags);
        let events = EVENTS.load(Ordering::Acquire);
        put(m, 80, events);
        let large = &crate::kmalloc::LARGE;
        put(m, 88, large.live_count() as u64);
        put(m, 96, large.live_bytes() as u64);
        put(m, 104, d.page_source().mapped_bytes() as u64);
        for (i, slot) in RING.iter().enumerate() {
            let at = EVENTS_AT + EVENT_SIZE * i;
            let n = slot[0].load(Ordering::Acquire);
            let packed = slot[2].load(Ordering::Relaxed);
            put(m, at, n);
            put(m, at + 8, slot[1].load(Ordering::Relaxed));
            put(m, at + 16, packed as u16);
            put(m, at + 18, (packed >> 16) as u8);
            put(m, at + 19, (packed >> 24) as u8);
        }
    }
    s.store((old | 1) + 1, Ordering::Release);
}

/// The memory tier of node `nid`, when the topology knows it (the kernel's `memory_tiering`
/// id, capped at 255); `None` otherwise (readers then fall back to the kernel's sysfs view of the
/// real node). `knobs.rs` prints the same for `HOTSLAB_VERBOSE`.
pub(crate) fn tier_of(d: &SlabDomain, nid: NodeId) -> Option<u8> {
    d.topology().tier(nid).map(|t| t.min(255) as u8)
}

// ---- reader ----------------------------------------------------------------------------------

/// A node of a [`Snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node id.
    pub id: u16,
    /// The physical node behind it (itself unless the topology is simulated).
    pub real: u16,
    /// Memory tier, if the allocator knew it.
    pub tier: Option<u8>,
    /// Whether the node has memory (parts take new slabs there).
    pub has_memory: bool,
}

/// A hotplug event of a [`Snapshot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventInfo {
    /// Event number (1 = the first of the process).
    pub number: u64,
    /// `CLOCK_MONOTONIC_COARSE` time in ms.
    pub time_ms: u64,
    /// The node.
    pub node: u16,
    /// The notifier event.
    pub event: MemoryEvent,
    /// A forced offline (cannot be refused).
    pub forced: bool,
    /// The slab notifier refused it.
    pub vetoed: bool,
}

/// A cache of a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheInfo {
    /// Name (cut to [`NAME_LEN`] bytes).
    pub name: String,
    /// Objects in use.
    pub active_objs: u64,
    /// Object slots in all slabs.
    pub num_objs: u64,
    /// Object size.
    pub objsize: u32,
    /// Slot size.
    pub stride: u32,
    /// Objects per slab.
    pub objperslab: u32,
    /// 4 KiB pages per slab.
    pub pagesperslab: u32,
    /// Allocations served.
    pub allocs: u64,
    /// Frees accepted.
    pub frees: u64,
    /// Slabs per node id (index = node id, `nr_nodes` entries).
    pub node_slabs: Vec<u32>,
}

impl CacheInfo {
    /// Bytes of slabs on node id `i`.
    pub fn node_bytes(&self, i: usize) -> u64 {
        self.node_slabs.get(i).copied().unwrap_or(0) as u64 * self.pagesperslab as u64 * 4096
    }

    /// Bytes of all slabs.
    pub fn bytes(&self) -> u64 {
        (0..self.node_slabs.len()).map(|i| self.node_bytes(i)).sum()
    }
}

/// One consistent snapshot of a process's statistics.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The publishing process.
    pub pid: u32,
    /// Its start time (clock ticks since boot).
    pub start_time: u64,
    /// Time of the snapshot (`CLOCK_MONOTONIC_COARSE`, ms).
    pub time_ms: u64,
    /// Snapshots the process wrote.
    pub publishes: u64,
    /// Locking mode of the default domain.
    pub mode: LockingMode,
    /// The topology is simulated (`HOTSLAB_NODES`).
    pub simulated: bool,
    /// Some caches or node ids did not fit the file.
    pub truncated: bool,
    /// Node ids `0..nodes.len()` (those not in the topology are left out).
    pub nodes: Vec<NodeInfo>,
    /// Number of node ids the per-node columns cover.
    pub nr_nodes: usize,
    /// Hotplug events seen.
    pub hotplug_events: u64,
    /// The last events, oldest first.
    pub events: Vec<EventInfo>,
    /// Live large objects.
    pub large_live: u64,
    /// Bytes in live large objects.
    pub large_live_bytes: u64,
    /// Bytes mapped from the kernel.
    pub mapped_bytes: u64,
    /// The caches.
    pub caches: Vec<CacheInfo>,
}

/// Why [`read`] found no snapshot.
#[derive(Debug)]
pub enum ReadError {
    /// No such process.
    NoProcess,
    /// The process is alive but publishes nothing (not hotslab, `HOTSLAB_PUBLISH=0`, or no slow
    /// path has run yet).
    NotPublished,
    /// The file belongs to a dead process that had the same pid, or to an image the process
    /// replaced by `exec`.
    Stale,
    /// The file is not in this layout (magic, version or sizes differ).
    BadLayout,
    /// The writer kept rewriting it while we read.
    Busy,
    /// Reading failed.
    Io(std::io::Error),
}

impl core::fmt::Display for ReadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ReadError::NoProcess => f.write_str("no such process"),
            ReadError::NotPublished => f.write_str(
                "the process publishes no hotslab statistics (not running hotslab, \
                 HOTSLAB_PUBLISH=0, or it has not allocated yet)",
            ),
            ReadError::Stale => f.write_str(
                "only a stale statistics file from an earlier process with this pid exists",
            ),
            ReadError::BadLayout => f.write_str("the statistics file has an unknown layout"),
            ReadError::Busy => f.write_str("the statistics file kept changing while read"),
            ReadError::Io(e) => write!(f, "reading the statistics file: {e}"),
        }
    }
}

impl std::error::Error for ReadError {}

fn get<T: Copy>(b: &[u8], at: usize) -> T {
    assert!(at + core::mem::size_of::<T>() <= b.len());
    // SAFETY: in bounds (checked); read_unaligned has no alignment needs.
    unsafe { ptr::read_unaligned(b.as_ptr().add(at).cast::<T>()) }
}

/// Start time of process `pid` from `/proc/<pid>/stat`.
fn start_time_of(pid: u32) -> Option<u64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_start_time(&stat)
}

/// Reads process `pid`'s statistics (see the module docs): checks that the process is alive,
/// that the file is its own (start time, and that it still maps it when `/proc/<pid>/maps` is
/// readable), and retries the copy until the seqlock shows a consistent snapshot.
pub fn read(pid: u32) -> Result<Snapshot, ReadError> {
    let alive_start = start_time_of(pid);
    if alive_start.is_none() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(ReadError::NoProcess);
    }
    let p = path(pid);
    let file = match std::fs::File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::NotPublished),
        Err(e) => return Err(ReadError::Io(e)),
    };
    if let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) {
        if !maps.is_empty() && !maps.lines().any(|l| l.ends_with(p.as_str())) {
            return Err(ReadError::Stale);
        }
    }
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; FILE_SIZE];
    for attempt in 0..2000 {
        let n = file.read_at(&mut buf, 0).map_err(ReadError::Io)?;
        if n < HEADER_SIZE {
            return Err(ReadError::BadLayout);
        }
        if buf[..8] != MAGIC {
            // Created but not initialised yet: wait a moment.
            if attempt < 100 {
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            return Err(ReadError::BadLayout);
        }
        if get::<u32>(&buf, 8) != VERSION
            || get::<u32>(&buf, 12) as usize != HEADER_SIZE
            || get::<u32>(&buf, 16) as usize != FILE_SIZE
            || get::<u32>(&buf, 20) as usize != CACHE_RECORD_SIZE
            || n < FILE_SIZE
        {
            return Err(ReadError::BadLayout);
        }
        let s1: u64 = get(&buf, 24);
        if s1 & 1 == 1 || s1 == 0 {
            std::thread::yield_now();
            continue;
        }
        // Re-read the sequence after the copy.
        let mut s = [0u8; 8];
        file.read_at(&mut s, 24).map_err(ReadError::Io)?;
        if u64::from_ne_bytes(s) != s1 {
            continue;
        }
        let snap = decode(&buf);
        if snap.pid != pid
            || alive_start.is_some_and(|t| snap.start_time != 0 && t != snap.start_time)
        {
            return Err(ReadError::Stale);
        }
        return Ok(snap);
    }
    Err(ReadError::Busy)
}

fn decode(b: &[u8]) -> Snapshot {
    let nr_nodes = (get::<u32>(b, 68) as usize).min(MAX_NODES);
    let flags: u32 = get(b, 76);
    let mut nodes = Vec::new();
    for i in 0..nr_nodes {
        let at = NODES_AT + 8 * i;
        let f: u8 = get(b, at + 3);
        if f & 1 == 0 {
            continue;
        }
        let tier: u8 = get(b, at + 2);
        nodes.push(NodeInfo {
            id: i as u16,
            real: get(b, at),
            tier: (tier != 255).then_some(tier),
            has_memory: f & 2 != 0,
        });
    }
    let mut events = Vec::new();
    for i in 0..MAX_EVENTS {
        let at = EVENTS_AT + EVENT_SIZE * i;
        let number: u64 = get(b, at);
        if number == 0 {
            continue;
        }
        let event = match get::<u8>(b, at + 18) {
            0 => MemoryEvent::GoingOnline,
            1 => MemoryEvent::CancelOnline,
            2 => MemoryEvent::Online,
            3 => MemoryEvent::GoingOffline,
            4 => MemoryEvent::CancelOffline,
            _ => MemoryEvent::Offline,
        };
        let f: u8 = get(b, at + 19);
        events.push(EventInfo {
            number,
            time_ms: get(b, at + 8),
            node: get(b, at + 16),
            event,
            forced: f & 1 != 0,
            vetoed: f & 2 != 0,
        });
    }
    events.sort_by_key(|e| e.number);
    let ncaches = (get::<u32>(b, 72) as usize).min(MAX_CACHES);
    let caches = (0..ncaches)
        .map(|k| {
            let r = HEADER_SIZE + k * CACHE_RECORD_SIZE;
            let name = &b[r..r + NAME_LEN];
            let len = name.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
            CacheInfo {
                name: String::from_utf8_lossy(&name[..len]).into_owned(),
                active_objs: get(b, r + 32),
                num_objs: get(b, r + 40),
                objsize: get(b, r + 48),
                stride: get(b, r + 52),
                objperslab: get(b, r + 56),
                pagesperslab: get(b, r + 60),
                allocs: get(b, r + 64),
                frees: get(b, r + 72),
                node_slabs: (0..nr_nodes).map(|i| get(b, r + 80 + 4 * i)).collect(),
            }
        })
        .collect();
    Snapshot {
        pid: get(b, 32),
        start_time: get(b, 40),
        time_ms: get(b, 48),
        publishes: get(b, 56),
        mode: match get::<u32>(b, 64) {
            1 => LockingMode::Legacy,
            2 => LockingMode::SlabNodes,
            _ => LockingMode::OnlineMems,
        },
        simulated: flags & 1 != 0,
        truncated: flags & 6 != 0,
        nodes,
        nr_nodes,
        hotplug_events: get(b, 80),
        events,
        large_live: get(b, 88),
        large_live_bytes: get(b, 96),
        mapped_bytes: get(b, 104),
        caches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_field() {
        let line = b"123 (a) b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 20 21\n";
        assert_eq!(parse_start_time(line), Some(4242));
        assert_eq!(parse_start_time(b"1 (x) S 2"), None);
    }

    #[test]
    fn layout_fits() {
        const { assert!(CACHE_RECORD_SIZE % 8 == 0 && FILE_SIZE < 128 * 1024) };
        assert_eq!(path(42), "/dev/shm/hotslab.42");
    }
}
