//! Environment knobs of the process-wide default domain (the one behind [`SlabAlloc`],
//! [`kmalloc`] and `libhotslab.so`): read once, when that domain is built at the first
//! allocation, without allocating (libc `getenv` on the static environment, values parsed by
//! hand). A value that does not parse is ignored (the default stays). Domains built by hand
//! ([`SlabDomain::simulated_with`], [`SlabDomain::new`]) ignore these variables and take a
//! [`DomainConfig`] instead.
//!
//! | variable | values | effect |
//! |---|---|---|
//! | `HOTSLAB_MODE` | `onlinemems` (default), `legacy`, `slabnodes` | locking mode of the default domain ([`LockingMode`]) |
//! | `HOTSLAB_NODES` | `1`..=128 | a simulated topology of that many nodes over the real ones |
//! | `HOTSLAB_STATS` | `1` (stderr), or an absolute file path (appended) | slabinfo table at exit |
//! | `HOTSLAB_DEBUG` | `1`/`all`, or letters `Z` red zones, `P` poison, `H` hardened freelist, `S` shuffled slots, `Q` quarantine, `G` guard pages | debug mode of the kmalloc caches ([`DebugFlags`]; in code: [`SlabAlloc::set_debug`]) |
//! | `HOTSLAB_SECURE` | `0` or `1` (default 0; 1 with the `secure` feature) | the secure mode: every debug check plus shuffled slots, FIFO reuse behind a quarantine, guard pages ([`DebugFlags::SECURE`]) |
//! | `HOTSLAB_BACKGROUND` | `0` or `1` (default 1) | `0`: no background purger thread (empties then keep a 32 MiB budget and are purged from slow paths only) |
//! | `HOTSLAB_PURGE_MS` | `0`..=60000 (default 50) | how long empty slabs stay committed before they are given back in a batch (0: at once; [`DomainConfig::purge_delay`]) |
//! | `HOTSLAB_THP` | `0`/`off` (default), `on`, or `1`..=1048576 (MiB) | transparent huge pages for big heaps: `on` advises every 2 MiB region of slab memory `MADV_HUGEPAGE` as it is first handed out, `N` only once a node's arena holds N MiB of slabs ([`DomainConfig::huge_pages_after`]; needs `transparent_hugepage/enabled` = `madvise` or `always`) |
//! | `HOTSLAB_PUBLISH` | `1` (default), `0` | statistics for `hotslab-top` in `/dev/shm/hotslab.<pid>` ([`publish`](crate::publish)) |
//! | `HOTSLAB_VERBOSE` | `0` (default), `1` | the configuration chosen (nodes, tiers, mode, every knob) on stderr at start |
//! | `HOTSLAB_FOLLOW` | `0` or `1` (default 1) | `0`: the default domain does not follow memory hotplug (no `hotslab-follow` thread, see `follow.rs`) |
//!
//! Test hooks, never set in normal use: `HOTSLAB_TEST_SYSFS_ROOT` (a fake
//! `/sys/devices/system/node` for the default domain's topology and follower; no cpuset filter),
//! `HOTSLAB_TEST_MEMS_ALLOWED` (with it: a `/proc/self/status`-style file standing for the
//! cpuset), `HOTSLAB_TEST_UEVENT_SOCKET` and `HOTSLAB_TEST_FOLLOW_RESCAN_MS` (read by the
//! follower thread: recorded uevents from a datagram socket bound there, the re-scan period),
//! `HOTSLAB_TEST_BUILD_PAUSE` (`global.rs`).
//!
//! The variables must be set before the process's first allocation, so the usual place is the
//! command line (`HOTSLAB_NODES=4 HOTSLAB_MODE=slabnodes ./prog`). This program starts itself
//! again with two knobs set and checks, in the child, that the default domain took them:
//!
//! ```
//! use hotslab::LockingMode;
//! use std::process::Command;
//!
//! #[global_allocator]
//! static A: hotslab::SlabAlloc = hotslab::SlabAlloc::new();
//!
//! fn main() {
//!     let d = hotslab::default_domain().unwrap();
//!     if std::env::var_os("KNOBS_EXAMPLE_CHILD").is_some() {
//!         assert_eq!(d.topology().node_count(), 4);
//!         assert_eq!(d.mode(), LockingMode::SlabNodes);
//!         return;
//!     }
//!     let status = Command::new(std::env::current_exe().unwrap())
//!         .env("KNOBS_EXAMPLE_CHILD", "1")
//!         .env("HOTSLAB_NODES", "4")
//!         .env("HOTSLAB_MODE", "slabnodes")
//!         .status()
//!         .unwrap();
//!     assert!(status.success());
//! }
//! ```
//!
//! The same settings in code, for a domain of one's own:
//!
//! ```
//! use hotslab::{DomainConfig, LockingMode, SlabDomain};
//! use std::time::Duration;
//!
//! let config = DomainConfig {
//!     mode: LockingMode::SlabNodes,           // HOTSLAB_MODE=slabnodes
//!     purge_delay: Duration::from_millis(50), // HOTSLAB_PURGE_MS=50
//!     ..DomainConfig::default()
//! };
//! let d = SlabDomain::simulated_with(4, config).unwrap(); // HOTSLAB_NODES=4
//! assert_eq!(d.mode(), LockingMode::SlabNodes);
//! assert_eq!(d.topology().node_count(), 4);
//! ```
//!
//! [`SlabAlloc`]: crate::SlabAlloc
//! [`SlabAlloc::set_debug`]: crate::SlabAlloc::set_debug
//! [`kmalloc`]: crate::kmalloc
//! [`SlabDomain::simulated_with`]: crate::SlabDomain::simulated_with
//! [`SlabDomain::new`]: crate::SlabDomain::new
//! [`DomainConfig`]: crate::DomainConfig
//! [`DomainConfig::purge_delay`]: crate::DomainConfig::purge_delay
//! [`LockingMode`]: crate::LockingMode
//! [`DebugFlags`]: crate::DebugFlags
//! [`DebugFlags::SECURE`]: crate::DebugFlags::SECURE

// Implementation: owns the parsed values, the exit hook that prints the slabinfo table and the
// `HOTSLAB_VERBOSE` start line; must not allocate or panic.

use core::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering};

use hotslab_numa::{Coverage, SysfsSource, Topology, MAX_TOPOLOGY_NODES};

use crate::debug::DebugFlags;
use crate::domain::{DomainConfig, LockingMode, SlabDomain};

/// Where the exit statistics go.
const STATS_OFF: u8 = 0;
const STATS_STDERR: u8 = 1;
const STATS_FILE: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(0); // 0 OnlineMems, 1 Legacy, 2 SlabNodes
static NODES: AtomicUsize = AtomicUsize::new(0); // 0: the real topology
static STATS: AtomicU8 = AtomicU8::new(STATS_OFF);
static DEBUG: AtomicU32 = AtomicU32::new(0);
/// Purge delay of the default domain's empty slabs, in ms.
pub(crate) const DEFAULT_PURGE_MS: usize = 50;
static PURGE_MS: AtomicUsize = AtomicUsize::new(DEFAULT_PURGE_MS);
static PUBLISH: AtomicBool = AtomicBool::new(true);
/// `HOTSLAB_THP`: bytes of slabs after which regions are advised for huge pages (MAX: never).
static THP: AtomicUsize = AtomicUsize::new(usize::MAX);
static VERBOSE: AtomicBool = AtomicBool::new(false);

const PATH_MAX: usize = 256;

/// Written once by the builder before `STATS` is stored (Release); read after an Acquire load.
struct Bytes<T>(UnsafeCell<T>);
// SAFETY: see the type's doc: a single writer publishes through `STATS`.
unsafe impl<T> Sync for Bytes<T> {}

static STATS_PATH: Bytes<[u8; PATH_MAX]> = Bytes(UnsafeCell::new([0; PATH_MAX]));
/// Test hook `HOTSLAB_TEST_SYSFS_ROOT`: a fake `/sys/devices/system/node` the default domain's
/// topology and its hotplug follower read instead of the real one (never set in normal use).
static SYSFS_ROOT: Bytes<[u8; PATH_MAX]> = Bytes(UnsafeCell::new([0; PATH_MAX]));
static SYSFS_ROOT_LEN: AtomicUsize = AtomicUsize::new(0);
/// Test hook `HOTSLAB_TEST_MEMS_ALLOWED` (with a fake tree): a file in `/proc/self/status`
/// format whose `Mems_allowed_list:` stands for the process's cpuset.
static MEMS_FILE: Bytes<[u8; PATH_MAX]> = Bytes(UnsafeCell::new([0; PATH_MAX]));
static MEMS_FILE_LEN: AtomicUsize = AtomicUsize::new(0);
/// The real topology a simulated one is laid over (too large for a small thread stack).
static BASE: Bytes<Topology> = Bytes(UnsafeCell::new(Topology::empty()));

fn say(parts: &[&[u8]]) {
    for p in parts {
        // SAFETY: writes a valid buffer to stderr.
        unsafe { libc::write(2, p.as_ptr().cast(), p.len()) };
    }
}

/// The value of environment variable `name` (NUL-terminated), if set.
fn env(name: &'static [u8]) -> Option<&'static [u8]> {
    // SAFETY: name is NUL-terminated; glibc's getenv neither allocates nor locks, and returns
    // null or a pointer into the process environment.
    let p = unsafe { libc::getenv(name.as_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: getenv returned a NUL-terminated string that lives while the environment is not
    // changed; we read it once, now.
    Some(unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes())
}

/// Parses a decimal number without overflow.
fn decimal(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 6 {
        return None;
    }
    let mut n = 0usize;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (b - b'0') as usize;
    }
    Some(n)
}

fn parse_mode(s: &[u8]) -> Option<LockingMode> {
    let mut buf = [0u8; 16];
    let mut n = 0;
    for &b in s {
        if b == b'-' || b == b'_' {
            continue;
        }
        if n == buf.len() {
            return None;
        }
        buf[n] = b.to_ascii_lowercase();
        n += 1;
    }
    match &buf[..n] {
        b"onlinemems" => Some(LockingMode::OnlineMems),
        b"legacy" => Some(LockingMode::Legacy),
        b"slabnodes" => Some(LockingMode::SlabNodes),
        _ => None,
    }
}

/// `HOTSLAB_DEBUG`: `1`/`all` (every check), `0` (off), or letters as in `slub_debug`: `Z` red
/// zones, `P` poison, `H` hardened freelist (case-insensitive). `None` for anything else.
fn parse_debug(s: &[u8]) -> Option<DebugFlags> {
    match s {
        b"" | b"0" => return Some(DebugFlags::NONE),
        b"1" | b"all" | b"ALL" => return Some(DebugFlags::ALL),
        _ => {}
    }
    let mut f = DebugFlags::NONE;
    for &b in s {
        f = f | match b.to_ascii_uppercase() {
            b'Z' => DebugFlags::RED_ZONE,
            b'P' => DebugFlags::POISON,
            b'H' => DebugFlags::HARDENED_FREELIST,
            b'S' => DebugFlags::SHUFFLE,
            b'Q' => DebugFlags::QUARANTINE,
            b'G' => DebugFlags::GUARD,
            _ => return None,
        };
    }
    Some(f)
}

/// `HOTSLAB_THP`: `Some(None)` off, `Some(Some(bytes))` the threshold, `None` unparsable.
fn parse_thp(v: &[u8]) -> Option<Option<usize>> {
    match v {
        b"0" | b"off" | b"" => Some(None),
        b"on" => Some(Some(0)),
        _ => match decimal(v) {
            Some(n) if (1..=1 << 20).contains(&n) => Some(Some(n << 20)),
            _ => None,
        },
    }
}

/// Reads the variables (the builder calls this once, before it builds the default domain).
pub(crate) fn read() {
    if let Some(v) = env(b"HOTSLAB_MODE\0") {
        match parse_mode(v) {
            Some(m) => MODE.store(
                match m {
                    LockingMode::OnlineMems => 0,
                    LockingMode::Legacy => 1,
                    LockingMode::SlabNodes => 2,
                },
                Ordering::Relaxed,
            ),
            None => say(&[
                b"hotslab: HOTSLAB_MODE: expected legacy, onlinemems or slabnodes; ",
                b"using onlinemems\n",
            ]),
        }
    }
    if let Some(v) = env(b"HOTSLAB_NODES\0") {
        match decimal(v) {
            Some(n) if n <= MAX_TOPOLOGY_NODES => NODES.store(n, Ordering::Relaxed),
            _ => say(&[b"hotslab: HOTSLAB_NODES: expected 0..=128; using the real topology\n"]),
        }
    }
    if let Some(v) = env(b"HOTSLAB_PURGE_MS\0") {
        match decimal(v) {
            Some(n) if n <= 60_000 => PURGE_MS.store(n, Ordering::Relaxed),
            _ => say(&[b"hotslab: HOTSLAB_PURGE_MS: expected 0..=60000; using 50\n"]),
        }
    }
    if let Some(v) = env(b"HOTSLAB_THP\0") {
        match parse_thp(v) {
            Some(t) => THP.store(t.unwrap_or(usize::MAX), Ordering::Relaxed),
            None => {
                say(&[b"hotslab: HOTSLAB_THP: expected 0, off, on or 1..=1048576 (MiB); off\n"])
            }
        }
    }
    if let Some(v) = env(b"HOTSLAB_BACKGROUND\0") {
        match v {
            b"0" => crate::background::disable(),
            b"1" => {}
            _ => say(&[b"hotslab: HOTSLAB_BACKGROUND: expected 0 or 1; using 1\n"]),
        }
    }
    if cfg!(feature = "secure") {
        DEBUG.store(DebugFlags::SECURE.bits(), Ordering::Relaxed);
    }
    if let Some(v) = env(b"HOTSLAB_SECURE\0") {
        match v {
            b"1" => DEBUG.store(DebugFlags::SECURE.bits(), Ordering::Relaxed),
            b"0" => DEBUG.store(0, Ordering::Relaxed),
            _ => say(&[b"hotslab: HOTSLAB_SECURE: expected 0 or 1; ignored\n"]),
        }
    }
    if let Some(v) = env(b"HOTSLAB_DEBUG\0") {
        match parse_debug(v) {
            Some(f) => DEBUG.store(DEBUG.load(Ordering::Relaxed) | f.bits(), Ordering::Relaxed),
            None => {
                say(&[b"hotslab: HOTSLAB_DEBUG: expected 0, 1, all or letters Z P H S Q G; off\n"])
            }
        }
    }
    if let Some(v) = env(b"HOTSLAB_PUBLISH\0") {
        match v {
            b"0" => PUBLISH.store(false, Ordering::Relaxed),
            b"" | b"1" => PUBLISH.store(true, Ordering::Relaxed),
            _ => say(&[b"hotslab: HOTSLAB_PUBLISH: expected 0 or 1; on\n"]),
        }
    }
    if let Some(v) = env(b"HOTSLAB_FOLLOW\0") {
        match v {
            b"0" => crate::follow::disable(),
            b"" | b"1" => {}
            _ => say(&[b"hotslab: HOTSLAB_FOLLOW: expected 0 or 1; using 1\n"]),
        }
    }
    if let Some(v) = env(b"HOTSLAB_TEST_SYSFS_ROOT\0") {
        if v.first() == Some(&b'/') && v.len() < PATH_MAX {
            // SAFETY: only the builder writes the root, before anything reads it (`sysfs_root`
            // is read after the build, behind the domain's READY state).
            let buf = unsafe { &mut *SYSFS_ROOT.0.get() };
            buf[..v.len()].copy_from_slice(v);
            SYSFS_ROOT_LEN.store(v.len(), Ordering::Release);
        }
    }
    if let Some(v) = env(b"HOTSLAB_TEST_MEMS_ALLOWED\0") {
        if v.first() == Some(&b'/') && v.len() < PATH_MAX {
            // SAFETY: as for SYSFS_ROOT above.
            let buf = unsafe { &mut *MEMS_FILE.0.get() };
            buf[..v.len()].copy_from_slice(v);
            MEMS_FILE_LEN.store(v.len(), Ordering::Release);
        }
    }
    if let Some(v) = env(b"HOTSLAB_VERBOSE\0") {
        match v {
            b"" | b"0" => VERBOSE.store(false, Ordering::Relaxed),
            b"1" => VERBOSE.store(true, Ordering::Relaxed),
            _ => say(&[b"hotslab: HOTSLAB_VERBOSE: expected 0 or 1; off\n"]),
        }
    }
    if let Some(v) = env(b"HOTSLAB_STATS\0") {
        let target = match v {
            b"" | b"0" => STATS_OFF,
            b"1" => STATS_STDERR,
            p if p.first() == Some(&b'/') && p.len() < PATH_MAX => {
                // SAFETY: only the builder writes the path, before publishing STATS below.
                let buf = unsafe { &mut *STATS_PATH.0.get() };
                buf[..p.len()].copy_from_slice(p);
                buf[p.len()] = 0;
                STATS_FILE
            }
            _ => {
                say(&[b"hotslab: HOTSLAB_STATS: expected 1 or an absolute path; off\n"]);
                STATS_OFF
            }
        };
        STATS.store(target, Ordering::Release);
    }
}

/// Applies the mode knob to the default domain's settings.
pub(crate) fn apply(cfg: &mut DomainConfig) {
    cfg.purge_delay = std::time::Duration::from_millis(PURGE_MS.load(Ordering::Relaxed) as u64);
    let thp = THP.load(Ordering::Relaxed);
    cfg.huge_pages_after = (thp != usize::MAX).then_some(thp);
    cfg.mode = match MODE.load(Ordering::Relaxed) {
        1 => LockingMode::Legacy,
        2 => LockingMode::SlabNodes,
        _ => LockingMode::OnlineMems,
    };
}

/// Fills `out` with the default domain's topology: the real one read from sysfs, or
/// `HOTSLAB_NODES` simulated nodes laid over it.
///
/// # Safety
/// Only the builder of the default domain calls this, once (it uses a static scratch topology).
pub(crate) unsafe fn topology_into(out: &mut Topology) {
    let n = NODES.load(Ordering::Relaxed);
    if n == 0 {
        // Every possible node gets a slot (a node that comes online or gains memory later then
        // has a place); on error `out` holds the single-node fallback.
        let _ = Topology::read_sysfs_from_into(&sysfs_source(), out);
        return;
    }
    // SAFETY: the builder is the only user of BASE (caller contract).
    let base = unsafe { &mut *BASE.0.get() };
    let _ = Topology::read_sysfs_from_into(&sysfs_source(), base);
    if Topology::simulate_into(base, n, out).is_err() {
        say(&[b"hotslab: HOTSLAB_NODES: cannot simulate that topology; using the real one\n"]);
        let _ = Topology::read_sysfs_from_into(&sysfs_source(), out);
    }
}

/// Where the default domain reads its topology: the running kernel's sysfs covering every
/// possible node, or the `HOTSLAB_TEST_SYSFS_ROOT` tree (without memory tiers).
fn sysfs_source() -> SysfsSource<'static> {
    match sysfs_root() {
        Some(root) => SysfsSource::at(root, None).coverage(Coverage::Possible),
        None => SysfsSource::SYSTEM.coverage(Coverage::Possible),
    }
}

/// The cpuset file of the `HOTSLAB_TEST_MEMS_ALLOWED` test hook, if set (with a fake tree).
pub(crate) fn mems_file() -> Option<&'static [u8]> {
    let n = MEMS_FILE_LEN.load(Ordering::Acquire);
    // SAFETY: written before its length was published (Release), never changed.
    (n > 0 && sysfs_root().is_some()).then(|| unsafe { &(&*MEMS_FILE.0.get())[..n] })
}

/// The fake sysfs node directory of the `HOTSLAB_TEST_SYSFS_ROOT` test hook, if set.
pub(crate) fn sysfs_root() -> Option<&'static [u8]> {
    let n = SYSFS_ROOT_LEN.load(Ordering::Acquire);
    // SAFETY: the root was written before its length was published (Release) and never changes.
    (n > 0).then(|| unsafe { &(&*SYSFS_ROOT.0.get())[..n] })
}

/// Once the default domain is built: switches on the debug mode `HOTSLAB_DEBUG` asked for,
/// prints the configuration if `HOTSLAB_VERBOSE` asked for it, switches publishing on (unless
/// `HOTSLAB_PUBLISH=0`), and registers the exit hook if `HOTSLAB_STATS` asked for statistics.
pub(crate) fn after_build(d: &SlabDomain) {
    let debug = DebugFlags::from_bits(DEBUG.load(Ordering::Relaxed));
    if !debug.is_empty() {
        d.set_kmalloc_debug(debug);
    }
    if VERBOSE.load(Ordering::Relaxed) {
        verbose(d);
    }
    crate::publish::enable(PUBLISH.load(Ordering::Relaxed));
    if STATS.load(Ordering::Acquire) == STATS_OFF {
        return;
    }
    // SAFETY: registers an extern "C" function that never unwinds. glibc keeps the first 32
    // registrations in static storage; a later one calls malloc, which works by now.
    if unsafe { libc::atexit(stats_at_exit) } != 0 {
        say(&[b"hotslab: HOTSLAB_STATS: atexit failed\n"]);
    }
}

/// `HOTSLAB_VERBOSE=1`: the configuration on stderr, in one `write(2)` from a stack buffer.
fn verbose(d: &SlabDomain) {
    use core::fmt::Write;
    let mut buf = [0u8; 2048];
    let mut w = crate::stats::FixedWriter::new(&mut buf);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let topo = d.topology();
    let _ = write!(
        w,
        "hotslab: config pid={pid} mode={} nodes={}{} [",
        d.mode().name(),
        topo.node_count(),
        if topo.is_simulated() {
            " simulated"
        } else {
            ""
        },
    );
    for (k, nid) in topo.nodes().iter().enumerate() {
        let sep = if k == 0 { "" } else { " " };
        let _ = write!(w, "{sep}N{}", nid.index());
        if topo.real_node(nid) != nid {
            let _ = write!(w, "(on N{})", topo.real_node(nid).index());
        }
        let _ = write!(w, ":{}MiB", topo.node_memory(nid) >> 20);
        let _ = match crate::publish::tier_of(d, nid) {
            Some(t) => write!(w, ":tier{t}"),
            None => w.write_str(":tier-"),
        };
    }
    let _ = write!(w, "] memory={}", d.hotplug().states.has_memory());
    let _ = w.write_str("\n");
    let stats = match STATS.load(Ordering::Acquire) {
        STATS_STDERR => "1",
        STATS_FILE => {
            // SAFETY: the path was written (NUL-terminated) before STATS was published.
            let path = unsafe { &*STATS_PATH.0.get() };
            let n = path.iter().position(|&b| b == 0).unwrap_or(0);
            core::str::from_utf8(&path[..n]).unwrap_or("?")
        }
        _ => "0",
    };
    let debug = DebugFlags::from_bits(DEBUG.load(Ordering::Relaxed));
    let mut letters = [b'-'; 6];
    for (i, (f, l)) in [
        (DebugFlags::RED_ZONE, b'Z'),
        (DebugFlags::POISON, b'P'),
        (DebugFlags::HARDENED_FREELIST, b'H'),
        (DebugFlags::SHUFFLE, b'S'),
        (DebugFlags::QUARANTINE, b'Q'),
        (DebugFlags::GUARD, b'G'),
    ]
    .into_iter()
    .enumerate()
    {
        if debug.contains(f) {
            letters[i] = l;
        }
    }
    let letters = if debug.is_empty() {
        "0"
    } else {
        core::str::from_utf8(&letters).unwrap_or("?")
    };
    let _ = writeln!(
        w,
        "hotslab: knobs HOTSLAB_MODE={} HOTSLAB_NODES={} HOTSLAB_STATS={stats} HOTSLAB_DEBUG={letters} \
         HOTSLAB_SECURE={} HOTSLAB_PURGE_MS={} HOTSLAB_THP={} HOTSLAB_BACKGROUND={} \
         HOTSLAB_PUBLISH={} HOTSLAB_FOLLOW={} HOTSLAB_VERBOSE=1",
        match MODE.load(Ordering::Relaxed) {
            1 => "legacy",
            2 => "slabnodes",
            _ => "onlinemems",
        },
        NODES.load(Ordering::Relaxed),
        debug.contains(DebugFlags::SECURE) as u8,
        PURGE_MS.load(Ordering::Relaxed),
        ThpKnob(THP.load(Ordering::Relaxed)),
        !crate::background::is_off() as u8,
        PUBLISH.load(Ordering::Relaxed) as u8,
        !crate::follow::is_off() as u8,
    );
    let bytes = w.as_bytes();
    say(&[bytes]);
}

/// `HOTSLAB_THP`'s value as the variable spells it.
struct ThpKnob(usize);

impl core::fmt::Display for ThpKnob {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            usize::MAX => f.write_str("off"),
            0 => f.write_str("on"),
            b => write!(f, "{}", b >> 20),
        }
    }
}

extern "C" fn stats_at_exit() {
    match STATS.load(Ordering::Acquire) {
        STATS_STDERR => {
            crate::report::print_slabinfo(2);
        }
        STATS_FILE => {
            // SAFETY: the path was written (NUL-terminated) before STATS was published.
            let path = unsafe { &*STATS_PATH.0.get() };
            // SAFETY: path is NUL-terminated; open does not allocate.
            let fd = unsafe {
                libc::open(
                    path.as_ptr().cast(),
                    libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_CLOEXEC,
                    0o644,
                )
            };
            if fd >= 0 {
                crate::report::print_slabinfo(fd);
                // SAFETY: fd is ours.
                unsafe { libc::close(fd) };
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_by_hand() {
        assert_eq!(decimal(b"4"), Some(4));
        assert_eq!(decimal(b"128"), Some(128));
        assert_eq!(decimal(b""), None);
        assert_eq!(decimal(b"4x"), None);
        assert_eq!(decimal(b"99999999999999999999"), None);
        assert_eq!(parse_mode(b"Legacy"), Some(LockingMode::Legacy));
        assert_eq!(parse_mode(b"online-mems"), Some(LockingMode::OnlineMems));
        assert_eq!(parse_mode(b"slab_nodes"), Some(LockingMode::SlabNodes));
        assert_eq!(parse_mode(b"rwsem"), None);
        assert_eq!(parse_mode(b"a-very-long-name-indeed"), None);
        assert_eq!(parse_debug(b"1"), Some(DebugFlags::ALL));
        assert_eq!(parse_debug(b"0"), Some(DebugFlags::NONE));
        assert_eq!(
            parse_debug(b"zp"),
            Some(DebugFlags::RED_ZONE | DebugFlags::POISON)
        );
        assert_eq!(parse_debug(b"H"), Some(DebugFlags::HARDENED_FREELIST));
        assert_eq!(parse_debug(b"FZ"), None);
        assert_eq!(parse_thp(b"off"), Some(None));
        assert_eq!(parse_thp(b"0"), Some(None));
        assert_eq!(parse_thp(b"on"), Some(Some(0)));
        assert_eq!(parse_thp(b"64"), Some(Some(64 << 20)));
        assert_eq!(parse_thp(b"2000000"), None);
        assert_eq!(parse_thp(b"yes"), None);
        assert_eq!(ThpKnob(usize::MAX).to_string(), "off");
        assert_eq!(ThpKnob(0).to_string(), "on");
        assert_eq!(ThpKnob(64 << 20).to_string(), "64");
    }
}
