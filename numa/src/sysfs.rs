//! The no-allocation sysfs reader: node state masks, per-node CPU lists, `MemTotal` and distance rows
//! from `/sys/devices/system/node`, read with `libc::open`/`read` into stack buffers (no `String`,
//! `Vec` or `std::fs`). Safe to call from the allocator's bootstrap. Builds no `Topology` itself.

use core::fmt;

use crate::node::{trim_list, CpuMask, NodeId, NodeMask, ParseError};

/// The kernel's node directory, the default root of every reader here.
pub const SYSFS_NODE_ROOT: &[u8] = b"/sys/devices/system/node";

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
