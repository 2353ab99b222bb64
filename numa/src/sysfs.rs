//! The no-allocation sysfs reader: node state masks, per-node CPU lists, `MemTotal` and distance rows
//! from `/sys/devices/system/node`, HMAT performance attributes (`nodeN/access0/initiators/*`),
//! memory tiers (`/sys/devices/virtual/memory_tiering/memory_tier*/nodelist`) and the cpuset's
//! `Mems_allowed_list` from `/proc/self/status`, read with `libc::open`/`read` (and the raw
//! `getdents64` system call for directories) into stack buffers (no `String`, `Vec`, `std::fs` or
//! `opendir`, which mallocs). Safe to call from the allocator's bootstrap. Builds no `Topology`
//! itself.
//!
//! Every reader has an `_at` form taking a root path, so tests can point it at a fake tree:
//!
//! ```no_run
//! use hotslab_numa::sysfs::{for_each_memory_tier_at, read_node_hmat_at, SYSFS_TIERING_ROOT};
//! use hotslab_numa::NodeId;
//!
//! // Memory tiers (Linux 6.1+): a smaller tier id is faster memory; DRAM is usually tier 4.
//! let tiers = for_each_memory_tier_at(SYSFS_TIERING_ROOT, |tier, nodes| {
//!     println!("memory_tier{tier}: nodes {nodes}");
//! });
//! match tiers {
//!     Ok(n) => println!("{n} tiers"),
//!     Err(e) => println!("no tier data: {e}"), // Open(ENOENT) before 6.1
//! }
//! // HMAT (ACPI firmware tables): None when the firmware reports nothing for the node.
//! let hmat = read_node_hmat_at(hotslab_numa::sysfs::SYSFS_NODE_ROOT, NodeId(0));
//! println!("{hmat:?}");
//! ```

use core::fmt;

use crate::node::{trim_list, CpuMask, NodeId, NodeMask, ParseError};
use crate::topology::Hmat;

/// The kernel's node directory, the default root of every reader here.
pub const SYSFS_NODE_ROOT: &[u8] = b"/sys/devices/system/node";

/// The kernel's memory-tiering directory (Linux 6.1+), holding one `memory_tierN` directory per
/// tier; the default root of [`for_each_memory_tier_at`].
pub const SYSFS_TIERING_ROOT: &[u8] = b"/sys/devices/virtual/memory_tiering";

/// The calling process's status file, read by [`read_mems_allowed_list`].
pub const PROC_SELF_STATUS: &[u8] = b"/proc/self/status";

/// Longest root path accepted (the full path, with `/nodeN/file`, must fit a 256-byte buffer).
pub const MAX_ROOT_LEN: usize = 200;

/// Which node state mask file to read (`/sys/devices/system/node/<file>`).
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum NodeState {
    /// `possible`: every node id the kernel could ever bring online.
    Possible,
    /// `online`: nodes currently online (those with a `nodeN` directory).
    Online,
    /// `has_memory`: nodes with memory of any zone (the kernel's `N_MEMORY`).
    HasMemory,
    /// `has_normal_memory`: nodes with memory in a normal (non-movable) zone.
    HasNormalMemory,
    /// `has_cpu`: nodes with at least one online CPU.
    HasCpu,
}

impl NodeState {
    /// The sysfs file name of the mask.
    pub const fn file_name(self) -> &'static [u8] {
        match self {
            NodeState::Possible => b"possible",
            NodeState::Online => b"online",
            NodeState::HasMemory => b"has_memory",
            NodeState::HasNormalMemory => b"has_normal_memory",
            NodeState::HasCpu => b"has_cpu",
        }
    }
}

/// Why a sysfs file could not be read.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum SysfsError {
    /// `open` failed with this errno (`ENOENT` for a missing node or file).
    Open(i32),
    /// `read` failed with this errno.
    Read(i32),
    /// The content (or one item of a list) does not fit the reader's fixed buffer.
    TooLarge,
    /// A list could not be parsed.
    Parse(ParseError),
    /// A field was missing or malformed (e.g. no `MemTotal:` line, a distance above 255).
    Malformed,
    /// The root path is longer than [`MAX_ROOT_LEN`] or contains a NUL byte.
    BadPath,
}

impl fmt::Display for SysfsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SysfsError::Open(e) => write!(f, "open failed (errno {e})"),
            SysfsError::Read(e) => write!(f, "read failed (errno {e})"),
            SysfsError::TooLarge => f.write_str("file content too large for the reader's buffer"),
            SysfsError::Parse(p) => write!(f, "parse error: {p}"),
            SysfsError::Malformed => f.write_str("missing or malformed field"),
            SysfsError::BadPath => f.write_str("sysfs root path too long or contains NUL"),
        }
    }
}

impl std::error::Error for SysfsError {}

impl From<ParseError> for SysfsError {
    fn from(e: ParseError) -> Self {
        SysfsError::Parse(e)
    }
}

// ---------------------------------------------------------------------------------------------
// Paths and file descriptors, on the stack.

/// A NUL-terminated path built in a fixed buffer.
struct CPath {
    buf: [u8; 256],
    len: usize,
}

impl CPath {
    fn new(root: &[u8]) -> Result<CPath, SysfsError> {
        if root.len() > MAX_ROOT_LEN || root.contains(&0) {
            return Err(SysfsError::BadPath);
        }
        let mut p = CPath {
            buf: [0; 256],
            len: 0,
        };
        p.push(root)?;
        Ok(p)
    }

    fn push(&mut self, s: &[u8]) -> Result<(), SysfsError> {
        // Keep one byte for the terminating NUL.
        if self.len + s.len() >= self.buf.len() {
            return Err(SysfsError::BadPath);
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
        Ok(())
    }

    fn push_num(&mut self, mut v: u32) -> Result<(), SysfsError> {
        let mut digits = [0u8; 10];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        digits[..n].reverse();
        self.push(&digits[..n])
    }

    /// `<root>/node<nid>/<file>`.
    fn node_file(root: &[u8], nid: NodeId, file: &[u8]) -> Result<CPath, SysfsError> {
        let mut p = CPath::new(root)?;
        p.push(b"/node")?;
        p.push_num(u32::from(nid.0))?;
        p.push(b"/")?;
        p.push(file)?;
        Ok(p)
    }

    /// `<root>/<file>`.
    fn root_file(root: &[u8], file: &[u8]) -> Result<CPath, SysfsError> {
        let mut p = CPath::new(root)?;
        p.push(b"/")?;
        p.push(file)?;
        Ok(p)
    }

    #[cfg_attr(miri, allow(dead_code))] // Miri never opens host files
    fn as_ptr(&self) -> *const libc::c_char {
        debug_assert_eq!(self.buf[self.len], 0);
        self.buf.as_ptr().cast()
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// An open read-only file descriptor, closed on drop.
struct Fd(libc::c_int);

impl Fd {
    #[cfg(not(miri))]
    fn open(path: &CPath) -> Result<Fd, SysfsError> {
        loop {
            // SAFETY: `path` is NUL-terminated (CPath keeps a zeroed buffer and never writes the last
            // byte) and lives across the call; open does not retain the pointer.
            let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd >= 0 {
                return Ok(Fd(fd));
            }
            let e = errno();
            if e != libc::EINTR {
                return Err(SysfsError::Open(e));
            }
        }
    }

    /// Miri's isolation rejects host file access: report the files as unavailable instead.
    #[cfg(miri)]
    fn open(_path: &CPath) -> Result<Fd, SysfsError> {
        Err(SysfsError::Open(libc::ENOSYS))
    }

    /// Open a directory for [`Fd::read_dir`].
    #[cfg(not(miri))]
    fn open_dir(path: &CPath) -> Result<Fd, SysfsError> {
        loop {
            // SAFETY: as in `open`: a NUL-terminated path that outlives the call.
            let fd = unsafe {
                libc::open(
                    path.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            };
            if fd >= 0 {
                return Ok(Fd(fd));
            }
            let e = errno();
            if e != libc::EINTR {
                return Err(SysfsError::Open(e));
            }
        }
    }

    /// No directories under Miri either (and Miri does not implement `getdents64`).
    #[cfg(miri)]
    fn open_dir(_path: &CPath) -> Result<Fd, SysfsError> {
        Err(SysfsError::Open(libc::ENOSYS))
    }

    /// Call `f` with the name of every entry of the directory (including `.` and `..`), reading
    /// the entries with the raw `getdents64` system call into a stack buffer (glibc's `opendir`
    /// would `malloc` its own).
    #[cfg(not(miri))]
    fn read_dir(&self, mut f: impl FnMut(&[u8])) -> Result<(), SysfsError> {
        #[repr(C, align(8))]
        struct DirBuf([u8; 2048]);
        let mut buf = DirBuf([0; 2048]);
        loop {
            // SAFETY: `buf` is 2048 writable bytes, 8-aligned as `struct linux_dirent64` wants, for
            // the whole call; the kernel writes at most that many bytes of records into it.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    self.0 as libc::c_long,
                    buf.0.as_mut_ptr(),
                    buf.0.len() as libc::c_ulong,
                )
            };
            if n < 0 {
                let e = errno();
                if e == libc::EINTR {
                    continue;
                }
                return Err(SysfsError::Read(e));
            }
            if n == 0 {
                return Ok(());
            }
            for_each_dirent(&buf.0[..n as usize], &mut f)?;
        }
    }

    #[cfg(miri)]
    fn read_dir(&self, _f: impl FnMut(&[u8])) -> Result<(), SysfsError> {
        Err(SysfsError::Read(libc::ENOSYS))
    }

    /// Read once into `buf`, retrying on EINTR; 0 means end of file.
    fn read(&self, buf: &mut [u8]) -> Result<usize, SysfsError> {
        loop {
            // SAFETY: `buf` is a valid writable region of `buf.len()` bytes for the whole call.
            let n = unsafe { libc::read(self.0, buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = errno();
            if e != libc::EINTR {
                return Err(SysfsError::Read(e));
            }
        }
    }

    /// Read the whole file into `buf`; `TooLarge` if it does not fit.
    fn read_all(&self, buf: &mut [u8]) -> Result<usize, SysfsError> {
        let mut len = 0;
        loop {
            if len == buf.len() {
                let mut probe = [0u8; 1];
                return match self.read(&mut probe)? {
                    0 => Ok(len),
                    _ => Err(SysfsError::TooLarge),
                };
            }
            let n = self.read(&mut buf[len..])?;
            if n == 0 {
                return Ok(len);
            }
            len += n;
        }
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the descriptor was returned by a successful open and is closed exactly once here.
        unsafe {
            libc::close(self.0);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pure parsers (tested on byte strings).

/// Parse a list file streamed through `read` (which behaves like `read(2)`: fills a prefix of the
/// buffer, 0 at end) into `words`-backed mask via `sink`, using a small fixed buffer: complete items
/// are parsed as soon as a comma is seen, so arbitrarily long lists need no large buffer.
pub(crate) fn stream_list<R, S>(mut read: R, mut sink: S) -> Result<(), SysfsError>
where
    R: FnMut(&mut [u8]) -> Result<usize, SysfsError>,
    S: FnMut(&[u8], usize) -> Result<(), ParseError>,
{
    let mut buf = [0u8; 256];
    let mut len = 0; // bytes pending in buf
    let mut offset = 0; // input offset of buf[0]
    let mut first = true; // nothing consumed yet (leading whitespace still to trim)
    loop {
        if len == buf.len() {
            return Err(SysfsError::TooLarge);
        }
        let n = read(&mut buf[len..])?;
        if n == 0 {
            let (lead, s) = if first {
                trim_list(&buf[..len])
            } else {
                (0, &buf[..len])
            };
            let s = &s[..trailing_trimmed_len(s)];
            if s.is_empty() && !first {
                // The previous fragment ended with a comma and nothing followed.
                return Err(SysfsError::Parse(ParseError::EmptyItem { pos: offset }));
            }
            sink(s, offset + lead)?;
            return Ok(());
        }
        len += n;
        if let Some(comma) = buf[..len].iter().rposition(|&b| b == b',') {
            let (lead, frag) = if first {
                let mut start = 0;
                while start < comma && crate::node::is_list_space(buf[start]) {
                    start += 1;
                }
                (start, &buf[start..comma])
            } else {
                (0, &buf[..comma])
            };
            if frag.is_empty() {
                return Err(SysfsError::Parse(ParseError::EmptyItem {
                    pos: offset + lead,
                }));
            }
            sink(frag, offset + lead)?;
            first = false;
            buf.copy_within(comma + 1..len, 0);
            offset += comma + 1;
            len -= comma + 1;
        }
    }
}

fn trailing_trimmed_len(s: &[u8]) -> usize {
    let mut end = s.len();
    while end > 0 && crate::node::is_list_space(s[end - 1]) {
        end -= 1;
    }
    end
}

/// Parse a node list (as in `possible`, `online`, `has_memory`), streamed through `read`, which
/// behaves like `read(2)`: it fills a prefix of the buffer it is given and returns the length, 0 at
/// the end. Items are parsed as soon as they are complete, so a list of any length needs only a
/// small stack buffer. Allocates nothing.
///
/// # Errors
/// An error returned by `read`, unchanged; [`SysfsError::Parse`] for a malformed list or a node id
/// not below [`MAX_NODES`](crate::MAX_NODES); [`SysfsError::TooLarge`] for one item longer than the
/// internal buffer (far beyond any valid id).
///
/// ```
/// use hotslab_numa::sysfs::parse_node_list_stream;
///
/// let mut data: &[u8] = b"0-2,5\n";
/// let m = parse_node_list_stream(|buf| {
///     let n = buf.len().min(data.len()).min(3); // three bytes at a time
///     buf[..n].copy_from_slice(&data[..n]);
///     data = &data[n..];
///     Ok(n)
/// })
/// .unwrap();
/// assert_eq!(m.to_string(), "0-2,5");
/// ```
pub fn parse_node_list_stream<R>(read: R) -> Result<NodeMask, SysfsError>
where
    R: FnMut(&mut [u8]) -> Result<usize, SysfsError>,
{
    let mut m = NodeMask::new();
    stream_list(read, |frag, base| m.parse_items(frag, base))?;
    Ok(m)
}

/// Parse a CPU list (as in `nodeN/cpulist`), streamed through `read`; the same contract and errors
/// as [`parse_node_list_stream`], with CPU ids below [`MAX_CPUS`](crate::MAX_CPUS).
pub fn parse_cpu_list_stream<R>(read: R) -> Result<CpuMask, SysfsError>
where
    R: FnMut(&mut [u8]) -> Result<usize, SysfsError>,
{
    let mut m = CpuMask::new();
    stream_list(read, |frag, base| m.parse_items(frag, base))?;
    Ok(m)
}

/// Extract `MemTotal` (in bytes) from the text of `nodeN/meminfo`
/// (`"Node 0 MemTotal:        4548820 kB"`). Only the first line that has `MemTotal:` matters.
///
/// # Errors
/// [`SysfsError::Malformed`] if there is no `MemTotal:`, no number after it, no `kB` unit, or the
/// value in bytes overflows `u64`.
pub fn parse_meminfo_total(text: &[u8]) -> Result<u64, SysfsError> {
    const KEY: &[u8] = b"MemTotal:";
    let at = text
        .windows(KEY.len())
        .position(|w| w == KEY)
        .ok_or(SysfsError::Malformed)?;
    let mut i = at + KEY.len();
    while i < text.len() && matches!(text[i], b' ' | b'\t') {
        i += 1;
    }
    let start = i;
    let mut kb: u64 = 0;
    while i < text.len() && text[i].is_ascii_digit() {
        kb = kb
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(text[i] - b'0')))
            .ok_or(SysfsError::Malformed)?;
        i += 1;
    }
    if i == start {
        return Err(SysfsError::Malformed);
    }
    while i < text.len() && text[i] == b' ' {
        i += 1;
    }
    if !text[i..].starts_with(b"kB") {
        return Err(SysfsError::Malformed);
    }
    kb.checked_mul(1024).ok_or(SysfsError::Malformed)
}

/// Parse a distance row (`nodeN/distance`, e.g. `"10 21 31\n"`) into `out`; returns how many values
/// were read. Values above 255 or more values than `out` holds are errors.
pub fn parse_distance_row(text: &[u8], out: &mut [u8]) -> Result<usize, SysfsError> {
    let mut n = 0;
    let mut i = 0;
    loop {
        while i < text.len() && crate::node::is_list_space(text[i]) {
            i += 1;
        }
        if i == text.len() {
            return Ok(n);
        }
        let start = i;
        let mut v: u32 = 0;
        while i < text.len() && text[i].is_ascii_digit() {
            v = v * 10 + u32::from(text[i] - b'0');
            if v > 255 {
                return Err(SysfsError::Malformed);
            }
            i += 1;
        }
        if i == start || (i < text.len() && !crate::node::is_list_space(text[i])) {
            return Err(SysfsError::Malformed);
        }
        if n == out.len() {
            return Err(SysfsError::TooLarge);
        }
        out[n] = v as u8;
        n += 1;
    }
}

/// Walk the `struct linux_dirent64` records of one `getdents64` result: `d_ino` (8 bytes), `d_off`
/// (8), `d_reclen` (2), `d_type` (1), then the NUL-terminated name, padded to `d_reclen`.
#[cfg_attr(miri, allow(dead_code))] // only `Fd::read_dir` calls it, and not under Miri
fn for_each_dirent(mut recs: &[u8], f: &mut impl FnMut(&[u8])) -> Result<(), SysfsError> {
    const NAME: usize = 19;
    while !recs.is_empty() {
        if recs.len() < NAME {
            return Err(SysfsError::Malformed);
        }
        let reclen = usize::from(u16::from_ne_bytes([recs[16], recs[17]]));
        if reclen <= NAME || reclen > recs.len() {
            return Err(SysfsError::Malformed);
        }
        let name = &recs[NAME..reclen];
        let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        f(&name[..len]);
        recs = &recs[reclen..];
    }
    Ok(())
}

/// The tier id of a memory-tier directory name: `memory_tier4` is tier 4. The id is the tier's
/// abstract distance divided by the kernel's chunk size (`MEMTIER_CHUNK_SIZE`), so a smaller id is
/// faster memory; the kernel's default DRAM tier is 4, CXL or PMEM tiers are larger. `None` for any
/// other name (`power`, `uevent`, `memory_tier`, `memory_tier4x`, an id of `u32::MAX` or more).
pub fn parse_memory_tier_name(name: &[u8]) -> Option<u32> {
    let digits = name.strip_prefix(b"memory_tier")?;
    if digits.is_empty() || digits.len() > 10 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
    }
    u32::try_from(v).ok().filter(|&t| t != u32::MAX)
}

/// Parse a file holding one unsigned decimal number and optional surrounding whitespace (the HMAT
/// attribute files, e.g. `"19200\n"`).
///
/// # Errors
/// [`SysfsError::Malformed`] for an empty file, a non-digit, or a value above `u32::MAX`.
pub fn parse_u32_value(text: &[u8]) -> Result<u32, SysfsError> {
    let (_, t) = trim_list(text);
    if t.is_empty() {
        return Err(SysfsError::Malformed);
    }
    let mut v: u64 = 0;
    for &b in t {
        if !b.is_ascii_digit() {
            return Err(SysfsError::Malformed);
        }
        v = v * 10 + u64::from(b - b'0');
        if v > u64::from(u32::MAX) {
            return Err(SysfsError::Malformed);
        }
    }
    Ok(v as u32)
}

/// Find the `Mems_allowed_list:` line of a `/proc/<pid>/status` text streamed through `read`
/// (which behaves like `read(2)`) and parse its node list: the nodes the task's cpuset lets it
/// allocate from (it changes when `cpuset.mems` of the cgroup is rewritten). Other lines are
/// skipped byte by byte, so the whole file needs only small stack buffers. Allocates nothing.
///
/// # Errors
/// An error of `read`, unchanged; [`SysfsError::Malformed`] without a `Mems_allowed_list:` line;
/// [`SysfsError::Parse`] for a malformed list.
///
/// ```
/// use hotslab_numa::sysfs::parse_status_mems_allowed_stream;
///
/// let mut text: &[u8] = b"Name:\tcat\nMems_allowed:\t00000000,00000005\nMems_allowed_list:\t0,2\n\
///                          voluntary_ctxt_switches:\t1\n";
/// let m = parse_status_mems_allowed_stream(|buf| {
///     let n = buf.len().min(text.len()).min(5);
///     buf[..n].copy_from_slice(&text[..n]);
///     text = &text[n..];
///     Ok(n)
/// })
/// .unwrap();
/// assert_eq!(m.to_string(), "0,2");
/// ```
pub fn parse_status_mems_allowed_stream<R>(mut read: R) -> Result<NodeMask, SysfsError>
where
    R: FnMut(&mut [u8]) -> Result<usize, SysfsError>,
{
    const KEY: &[u8] = b"Mems_allowed_list:";
    let mut buf = [0u8; 256];
    let (mut pos, mut len) = (0usize, 0usize);
    // Some(k): at the start of a line, k bytes of KEY matched so far; None: skipping to '\n'.
    let mut matched: Option<usize> = Some(0);
    loop {
        if pos == len {
            len = read(&mut buf)?;
            pos = 0;
            if len == 0 {
                return Err(SysfsError::Malformed);
            }
        }
        let b = buf[pos];
        pos += 1;
        matched = match matched {
            _ if b == b'\n' => Some(0),
            Some(k) if b == KEY[k] => Some(k + 1),
            _ => None,
        };
        if matched == Some(KEY.len()) {
            break;
        }
    }
    // The value: the rest of this line, handed to the list parser without the newline.
    let mut done = false;
    parse_node_list_stream(|out| {
        let mut n = 0;
        while !done && n < out.len() {
            if pos == len {
                len = read(&mut buf)?;
                pos = 0;
                if len == 0 {
                    done = true;
                    break;
                }
            }
            let b = buf[pos];
            pos += 1;
            if b == b'\n' {
                done = true;
                break;
            }
            out[n] = b;
            n += 1;
        }
        Ok(n)
    })
}

// ---------------------------------------------------------------------------------------------
// Readers.

fn read_node_list_path(path: &CPath) -> Result<NodeMask, SysfsError> {
    let fd = Fd::open(path)?;
    parse_node_list_stream(|b| fd.read(b))
}

/// Read a node state mask from `<root>/<file>` (root is usually [`SYSFS_NODE_ROOT`]; tests pass a
/// fake tree). Opens, reads and closes the file with libc only; allocates nothing.
///
/// # Errors
/// [`SysfsError::BadPath`] if `root` is longer than [`MAX_ROOT_LEN`] or holds a NUL byte;
/// [`SysfsError::Open`] / [`SysfsError::Read`] with the errno (`ENOENT`: no such node or file);
/// [`SysfsError::Parse`] for content that is not a node list.
pub fn read_node_mask_at(root: &[u8], which: NodeState) -> Result<NodeMask, SysfsError> {
    read_node_list_path(&CPath::root_file(root, which.file_name())?)
}

/// Read a node state mask from the real sysfs, e.g. `read_node_mask(NodeState::HasMemory)`. Errors
/// as [`read_node_mask_at`]. Some kernels lack some files (`has_normal_memory` without a separate
/// normal-memory view, `has_cpu` on old kernels): that is `Open(ENOENT)`, and callers fall back to
/// another mask (hotslab-hotplug's default domain uses `has_memory` instead).
pub fn read_node_mask(which: NodeState) -> Result<NodeMask, SysfsError> {
    read_node_mask_at(SYSFS_NODE_ROOT, which)
}

/// Read the CPUs of node `nid` from `<root>/node<nid>/cpulist` (empty for a memory-only node).
///
/// # Errors
/// [`SysfsError::BadPath`] if `root` is longer than [`MAX_ROOT_LEN`] or holds a NUL byte;
/// [`SysfsError::Open`] / [`SysfsError::Read`] with the errno (`ENOENT`: no such node or file);
/// [`SysfsError::Parse`] for content that is not a CPU list.
pub fn read_node_cpus_at(root: &[u8], nid: NodeId) -> Result<CpuMask, SysfsError> {
    let fd = Fd::open(&CPath::node_file(root, nid, b"cpulist")?)?;
    parse_cpu_list_stream(|b| fd.read(b))
}

/// Read the CPUs of node `nid` from the real sysfs; errors as [`read_node_cpus_at`].
pub fn read_node_cpus(nid: NodeId) -> Result<CpuMask, SysfsError> {
    read_node_cpus_at(SYSFS_NODE_ROOT, nid)
}

/// Read `MemTotal` of `<root>/node<nid>/meminfo`, in bytes (the kernel reports kB; 0 for a node
/// whose memory is all offline).
///
/// # Errors
/// [`SysfsError::BadPath`] if `root` is longer than [`MAX_ROOT_LEN`] or holds a NUL byte;
/// [`SysfsError::Open`] / [`SysfsError::Read`] with the errno (`ENOENT`: no such node or file);
/// [`SysfsError::Malformed`] as [`parse_meminfo_total`].
pub fn read_node_mem_total_at(root: &[u8], nid: NodeId) -> Result<u64, SysfsError> {
    let fd = Fd::open(&CPath::node_file(root, nid, b"meminfo")?)?;
    // MemTotal is on the first line; read until a newline after it or the buffer is full.
    let mut buf = [0u8; 512];
    let mut len = 0;
    while len < buf.len() {
        let n = fd.read(&mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
        if let Ok(v) = parse_meminfo_total(&buf[..len]) {
            if buf[..len].contains(&b'\n') {
                return Ok(v);
            }
        }
    }
    parse_meminfo_total(&buf[..len])
}

/// Read the memory size of node `nid` from the real sysfs, in bytes; errors as
/// [`read_node_mem_total_at`].
pub fn read_node_mem_total(nid: NodeId) -> Result<u64, SysfsError> {
    read_node_mem_total_at(SYSFS_NODE_ROOT, nid)
}

/// Read the distance row `<root>/node<nid>/distance` into `out` (one value per online node, in
/// ascending node order); returns the number of values. Distances are the ACPI SLIT values:
/// [`LOCAL_DISTANCE`](crate::LOCAL_DISTANCE) (10) to itself, larger is farther.
///
/// # Errors
/// [`SysfsError::BadPath`] if `root` is longer than [`MAX_ROOT_LEN`] or holds a NUL byte;
/// [`SysfsError::Open`] / [`SysfsError::Read`] with the errno (`ENOENT`: no such node or file);
/// [`SysfsError::TooLarge`] if the file exceeds 1 KiB or has more values than `out` holds;
/// [`SysfsError::Malformed`] for a non-number or a value above 255.
pub fn read_node_distances_at(
    root: &[u8],
    nid: NodeId,
    out: &mut [u8],
) -> Result<usize, SysfsError> {
    let fd = Fd::open(&CPath::node_file(root, nid, b"distance")?)?;
    let mut buf = [0u8; 1024];
    let len = fd.read_all(&mut buf)?;
    parse_distance_row(&buf[..len], out)
}

/// Read the distance row of node `nid` from the real sysfs; see [`read_node_distances_at`].
pub fn read_node_distances(nid: NodeId, out: &mut [u8]) -> Result<usize, SysfsError> {
    read_node_distances_at(SYSFS_NODE_ROOT, nid, out)
}

/// Call `f(tier, nodes)` for every `memory_tierN` directory under `root` (usually
/// [`SYSFS_TIERING_ROOT`]) with the node list of its `nodelist` file, in directory order (not
/// sorted); returns the number of tiers. Entries that are not `memory_tierN` are skipped. Reads the
/// directory with `getdents64` into a stack buffer; allocates nothing.
///
/// # Errors
/// [`SysfsError::BadPath`] for a bad root; [`SysfsError::Open`] with the errno (`ENOENT`: no tier
/// directory, i.e. a kernel before 6.1 or without `CONFIG_NUMA`; under Miri `ENOSYS`);
/// [`SysfsError::Read`] if the directory cannot be listed; the errors of reading a node list for a
/// tier's `nodelist` (a tier directory without one is `Open(ENOENT)`). On an error `f` may already
/// have been called for some tiers.
pub fn for_each_memory_tier_at(
    root: &[u8],
    mut f: impl FnMut(u32, &NodeMask),
) -> Result<usize, SysfsError> {
    let dir = Fd::open_dir(&CPath::new(root)?)?;
    let mut count = 0;
    let mut result = Ok(());
    dir.read_dir(|name| {
        if result.is_err() {
            return;
        }
        let Some(tier) = parse_memory_tier_name(name) else {
            return;
        };
        let read = CPath::root_file(root, name).and_then(|mut p| {
            p.push(b"/nodelist")?;
            read_node_list_path(&p)
        });
        match read {
            Ok(mask) => {
                count += 1;
                f(tier, &mask);
            }
            Err(e) => result = Err(e),
        }
    })?;
    result.map(|()| count)
}

/// [`for_each_memory_tier_at`] on the real [`SYSFS_TIERING_ROOT`].
pub fn for_each_memory_tier(f: impl FnMut(u32, &NodeMask)) -> Result<usize, SysfsError> {
    for_each_memory_tier_at(SYSFS_TIERING_ROOT, f)
}

fn read_u32_path(path: &CPath) -> Result<u32, SysfsError> {
    let fd = Fd::open(path)?;
    let mut buf = [0u8; 32];
    let len = fd.read_all(&mut buf)?;
    parse_u32_value(&buf[..len])
}

/// Read the HMAT performance of node `nid` as seen from its nearest initiators (CPUs or other
/// initiator nodes): `<root>/node<nid>/access0/initiators/{read,write}_{bandwidth,latency}`
/// (bandwidth in MB/s, latency in ns; present when the firmware has an ACPI HMAT, e.g. QEMU with
/// `-numa hmat-lb`). A missing file leaves its field 0; `Ok(None)` if all four are missing (no
/// HMAT, or no such node). Allocates nothing.
///
/// # Errors
/// [`SysfsError::BadPath`] for a bad root; [`SysfsError::Open`] for an errno other than `ENOENT`;
/// [`SysfsError::Read`]; [`SysfsError::Malformed`] / [`SysfsError::TooLarge`] for a file that is
/// not one number.
pub fn read_node_hmat_at(root: &[u8], nid: NodeId) -> Result<Option<Hmat>, SysfsError> {
    const FILES: [&[u8]; 4] = [
        b"access0/initiators/read_bandwidth",
        b"access0/initiators/write_bandwidth",
        b"access0/initiators/read_latency",
        b"access0/initiators/write_latency",
    ];
    let mut v = [0u32; 4];
    let mut found = false;
    for (i, file) in FILES.iter().enumerate() {
        match read_u32_path(&CPath::node_file(root, nid, file)?) {
            Ok(x) => {
                v[i] = x;
                found = true;
            }
            Err(SysfsError::Open(libc::ENOENT)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(found.then_some(Hmat {
        read_bandwidth: v[0],
        write_bandwidth: v[1],
        read_latency: v[2],
        write_latency: v[3],
    }))
}

/// [`read_node_hmat_at`] on the real [`SYSFS_NODE_ROOT`].
pub fn read_node_hmat(nid: NodeId) -> Result<Option<Hmat>, SysfsError> {
    read_node_hmat_at(SYSFS_NODE_ROOT, nid)
}

/// Read the `Mems_allowed_list:` of a status file at `path` (usually [`PROC_SELF_STATUS`]), as
/// [`parse_status_mems_allowed_stream`]. Allocates nothing.
///
/// # Errors
/// [`SysfsError::BadPath`] for a path longer than [`MAX_ROOT_LEN`] or with a NUL byte;
/// [`SysfsError::Open`] / [`SysfsError::Read`] with the errno; the parser's errors.
pub fn read_status_mems_allowed_at(path: &[u8]) -> Result<NodeMask, SysfsError> {
    let fd = Fd::open(&CPath::new(path)?)?;
    parse_status_mems_allowed_stream(|b| fd.read(b))
}

/// The nodes the calling process's cpuset allows (`Mems_allowed_list:` of `/proc/self/status`).
/// The same set as `get_mempolicy(MPOL_F_MEMS_ALLOWED)` ([`crate::policy::mems_allowed`]), but
/// readable without a system call that a seccomp filter might forbid, and cheap to re-read to see
/// `cpuset.mems` change at run time. Errors as [`read_status_mems_allowed_at`].
pub fn read_mems_allowed_list() -> Result<NodeMask, SysfsError> {
    read_status_mems_allowed_at(PROC_SELF_STATUS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `read(2)`-like source handing out `chunk` bytes at a time.
    fn chunked(
        data: &[u8],
        chunk: usize,
    ) -> impl FnMut(&mut [u8]) -> Result<usize, SysfsError> + '_ {
        let mut pos = 0;
        move |buf: &mut [u8]| {
            let n = chunk.min(buf.len()).min(data.len() - pos);
            buf[..n].copy_from_slice(&data[pos..pos + n]);
            pos += n;
            Ok(n)
        }
    }

    #[test]
    fn memory_tier_names() {
        assert_eq!(parse_memory_tier_name(b"memory_tier4"), Some(4));
        assert_eq!(parse_memory_tier_name(b"memory_tier0"), Some(0));
        assert_eq!(parse_memory_tier_name(b"memory_tier22"), Some(22));
        assert_eq!(
            parse_memory_tier_name(b"memory_tier4294967294"),
            Some(u32::MAX - 1)
        );
        for bad in [
            &b"memory_tier"[..],
            b"memory_tier4x",
            b"memory_tier-1",
            b"memory_tier4294967295",
            b"memory_tier99999999999",
            b"power",
            b"uevent",
            b".",
            b"..",
            b"xmemory_tier4",
        ] {
            assert_eq!(parse_memory_tier_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn u32_values() {
        assert_eq!(parse_u32_value(b"19200\n"), Ok(19200));
        assert_eq!(parse_u32_value(b"0"), Ok(0));
        assert_eq!(parse_u32_value(b" 4294967295 \n"), Ok(u32::MAX));
        for bad in [&b""[..], b"\n", b"4294967296", b"12a", b"-1", b"1 2"] {
            assert_eq!(parse_u32_value(bad), Err(SysfsError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn dirent_records() {
        // Two records: "." (reclen 24) and "memory_tier4" (reclen 32), as getdents64 lays them out.
        let mut recs = Vec::new();
        for (name, reclen) in [(&b"."[..], 24usize), (b"memory_tier4", 32)] {
            let start = recs.len();
            recs.extend_from_slice(&[0u8; 16]);
            recs.extend_from_slice(&(reclen as u16).to_ne_bytes());
            recs.push(4); // DT_DIR
            recs.extend_from_slice(name);
            recs.resize(start + reclen, 0);
        }
        let mut names: Vec<Vec<u8>> = Vec::new();
        for_each_dirent(&recs, &mut |n| names.push(n.to_vec())).unwrap();
        assert_eq!(names, [b".".to_vec(), b"memory_tier4".to_vec()]);
        // A record length past the buffer, or too short for a name, is malformed, not a panic.
        let mut bad = recs.clone();
        bad[16] = 200;
        assert_eq!(
            for_each_dirent(&bad, &mut |_| {}),
            Err(SysfsError::Malformed)
        );
        bad[16] = 19;
        bad[17] = 0;
        assert_eq!(
            for_each_dirent(&bad, &mut |_| {}),
            Err(SysfsError::Malformed)
        );
        assert_eq!(
            for_each_dirent(&recs[..10], &mut |_| {}),
            Err(SysfsError::Malformed)
        );
    }

    #[test]
    fn status_mems_allowed() {
        let status: &[u8] = b"Name:\tbash\nMems_allowed:\t00000000,0000000f\n\
            Mems_allowed_list:\t0-1,3\nvoluntary_ctxt_switches:\t150\n";
        for chunk in [1, 2, 7, 19, 4096] {
            let m = parse_status_mems_allowed_stream(chunked(status, chunk)).unwrap();
            assert_eq!(m.to_string(), "0-1,3", "chunk {chunk}");
        }
        // The last line, without a trailing newline.
        let m = parse_status_mems_allowed_stream(chunked(b"Mems_allowed_list:\t5", 3)).unwrap();
        assert_eq!(m.to_string(), "5");
        // A key that only appears mid-line does not count; a missing key is Malformed.
        let text = b"X: Mems_allowed_list:\t1\nMems_allowed:\t1\n";
        assert_eq!(
            parse_status_mems_allowed_stream(chunked(text, 4)),
            Err(SysfsError::Malformed)
        );
        assert_eq!(
            parse_status_mems_allowed_stream(chunked(b"", 4)),
            Err(SysfsError::Malformed)
        );
        // A long sparse list (every other node of 1024: ~2.5 KB, longer than the buffers).
        let mut text = String::from("Cpus_allowed_list:\t0-3\nMems_allowed_list:\t");
        let list: Vec<String> = (0..1024).step_by(2).map(|n: u32| n.to_string()).collect();
        text.push_str(&list.join(","));
        text.push_str("\nvoluntary_ctxt_switches:\t1\n");
        let m = parse_status_mems_allowed_stream(chunked(text.as_bytes(), 100)).unwrap();
        assert_eq!(m.weight(), 512);
        assert!(m.test(NodeId(1022)) && !m.test(NodeId(1023)));
        // Malformed values are parse errors.
        assert!(matches!(
            parse_status_mems_allowed_stream(chunked(b"Mems_allowed_list:\t0-\n", 2)),
            Err(SysfsError::Parse(_))
        ));
    }

    #[test]
    #[cfg_attr(miri, ignore)] // host file access
    fn real_status_and_tiers() {
        let m = read_mems_allowed_list().unwrap();
        assert!(!m.is_empty());
        // The cpuset's nodes are possible nodes.
        let possible = read_node_mask(NodeState::Possible).unwrap();
        assert!(m.is_subset(&possible), "{m} not within {possible}");
        // The tier directory is optional (6.1+); when it exists every listed node is possible and
        // no node is in two tiers.
        let mut seen = NodeMask::new();
        let mut overlap = false;
        match for_each_memory_tier(|_, nodes| {
            overlap |= !seen.intersection(nodes).is_empty();
            seen = seen.union(nodes);
        }) {
            Ok(n) => {
                assert!(n >= 1);
                assert!(!overlap);
                assert!(seen.is_subset(&possible));
            }
            Err(e) => assert_eq!(e, SysfsError::Open(libc::ENOENT)),
        }
        // HMAT may or may not be there; reading it never fails on a real node.
        let first = possible.first().unwrap();
        read_node_hmat(first).unwrap();
        assert_eq!(read_node_hmat(NodeId(1000)), Ok(None));
    }

    #[test]
    fn stream_matches_one_shot() {
        let inputs: &[&[u8]] = &[
            b"",
            b"\n",
            b"0\n",
            b"0-3\n",
            b"0,5,1023\n",
            b" 1-2,7,9-12 \n",
            b"0-1,3,5,7,9,11,13,15,17,19,21,23,25,27,29,31,33,35,37,39,41,43,45,47,49,51,53,55,57,59,61,63",
        ];
        for &input in inputs {
            let expect = NodeMask::parse_list(input).unwrap();
            for chunk in [1, 2, 3, 7, 64, 4096] {
                let got = parse_node_list_stream(chunked(input, chunk)).unwrap();
                assert_eq!(got, expect, "input {input:?} chunk {chunk}");
            }
        }
    }

    #[test]
    fn stream_long_sparse_cpu_list() {
        // Every other CPU of 4096: ~10 KiB of text, far more than the 256-byte stream buffer.
        let mut text = String::new();
        for cpu in (0..4096).step_by(2) {
            if !text.is_empty() {
                text.push(',');
            }
            text.push_str(&cpu.to_string());
        }
        text.push('\n');
        assert!(text.len() > 8000);
        for chunk in [5, 100, 4096] {
            let m = parse_cpu_list_stream(chunked(text.as_bytes(), chunk)).unwrap();
            assert_eq!(m.weight(), 2048);
            assert!(m.test(4094) && !m.test(4095) && m.test(0) && !m.test(1));
        }
    }

    #[test]
    fn stream_errors() {
        let bad: &[&[u8]] = &[
            b"1,", b"1,\n", b",1", b"1,,2", b"3-1", b"x", b"1-", b"1,4096", b"0,2000",
        ];
        for &input in bad {
            for chunk in [1, 2, 64] {
                let r = if input == b"1,4096" {
                    parse_cpu_list_stream(chunked(input, chunk)).map(|_| ())
                } else {
                    parse_node_list_stream(chunked(input, chunk)).map(|_| ())
                };
                assert!(
                    matches!(r, Err(SysfsError::Parse(_))),
                    "input {input:?} chunk {chunk}: {r:?}"
                );
            }
        }
        // One item longer than the stream buffer (no comma within 256 bytes).
        let long = [b'1'; 300];
        assert_eq!(
            parse_node_list_stream(chunked(&long, 64)),
            Err(SysfsError::TooLarge)
        );
        // A read error propagates.
        assert_eq!(
            parse_node_list_stream(|_| Err(SysfsError::Read(5))),
            Err(SysfsError::Read(5))
        );
    }

    #[test]
    fn meminfo() {
        let text = b"Node 0 MemTotal:        4548820 kB\nNode 0 MemFree:         3892076 kB\n";
        assert_eq!(parse_meminfo_total(text), Ok(4548820 * 1024));
        assert_eq!(parse_meminfo_total(b"Node 5 MemTotal: 0 kB\n"), Ok(0));
        assert_eq!(
            parse_meminfo_total(b"Node 0 MemFree: 1 kB\n"),
            Err(SysfsError::Malformed)
        );
        assert_eq!(
            parse_meminfo_total(b"Node 0 MemTotal: kB\n"),
            Err(SysfsError::Malformed)
        );
        assert_eq!(
            parse_meminfo_total(b"Node 0 MemTotal: 12 MB\n"),
            Err(SysfsError::Malformed)
        );
        assert_eq!(
            parse_meminfo_total(b"Node 0 MemTotal: 99999999999999999999 kB"),
            Err(SysfsError::Malformed)
        );
        assert_eq!(parse_meminfo_total(b""), Err(SysfsError::Malformed));
    }

    #[test]
    fn distance_rows() {
        let mut out = [0u8; 8];
        assert_eq!(parse_distance_row(b"10\n", &mut out), Ok(1));
        assert_eq!(out[0], 10);
        assert_eq!(parse_distance_row(b"10 21 31 255\n", &mut out), Ok(4));
        assert_eq!(&out[..4], &[10, 21, 31, 255]);
        assert_eq!(parse_distance_row(b"", &mut out), Ok(0));
        assert_eq!(
            parse_distance_row(b"10 256", &mut out),
            Err(SysfsError::Malformed)
        );
        assert_eq!(
            parse_distance_row(b"10 2x", &mut out),
            Err(SysfsError::Malformed)
        );
        assert_eq!(
            parse_distance_row(b"10 -1", &mut out),
            Err(SysfsError::Malformed)
        );
        let mut tiny = [0u8; 1];
        assert_eq!(
            parse_distance_row(b"10 20", &mut tiny),
            Err(SysfsError::TooLarge)
        );
    }

    #[test]
    fn paths() {
        let p = CPath::node_file(b"/sys/devices/system/node", NodeId(1023), b"cpulist").unwrap();
        assert_eq!(
            &p.buf[..p.len + 1],
            b"/sys/devices/system/node/node1023/cpulist\0"
        );
        let p = CPath::root_file(b"/x", b"has_memory").unwrap();
        assert_eq!(&p.buf[..p.len], b"/x/has_memory");
        assert!(matches!(CPath::new(&[b'a'; 201]), Err(SysfsError::BadPath)));
        assert!(matches!(CPath::new(b"a\0b"), Err(SysfsError::BadPath)));
    }

    #[test]
    #[cfg_attr(miri, ignore)] // host file access
    fn real_sysfs_files() {
        let online = read_node_mask(NodeState::Online).unwrap();
        let possible = read_node_mask(NodeState::Possible).unwrap();
        let mem = read_node_mask(NodeState::HasMemory).unwrap();
        let normal = read_node_mask(NodeState::HasNormalMemory).unwrap();
        assert!(!online.is_empty());
        assert!(online.is_subset(&possible));
        assert!(mem.is_subset(&online));
        assert!(normal.is_subset(&mem));
        let first = online.first().unwrap();
        let cpus = read_node_cpus(first).unwrap();
        let total_cpus: usize = online
            .iter()
            .map(|n| read_node_cpus(n).unwrap().weight())
            .sum();
        assert!(total_cpus >= 1);
        assert!(cpus.weight() <= total_cpus);
        if mem.test(first) {
            assert!(read_node_mem_total(first).unwrap() > 0);
        }
        let mut row = [0u8; 128];
        let n = read_node_distances(first, &mut row).unwrap();
        assert_eq!(n, online.weight());
        let self_idx = online.iter().position(|x| x == first).unwrap();
        assert_eq!(row[self_idx], 10);
        // A node that does not exist is a clean ENOENT, not a panic.
        assert_eq!(
            read_node_cpus(NodeId(1000)),
            Err(SysfsError::Open(libc::ENOENT))
        );
    }
}
