//! Node and CPU identities and fixed-size bitsets: `NodeId`, the generic `Bitset` whose two faces
//! are `NodeMask` and `CpuMask`, and the kernel list format ("0-2,5") they parse from sysfs and
//! print as. Pure logic only: no allocation, no syscalls, no knowledge of topology; everything
//! here runs under Miri.

use core::fmt;
use core::marker::PhantomData;

/// Largest number of NUMA node ids hotslab can name (the kernel's `MAX_NUMNODES` with `NODES_SHIFT=10`).
pub const MAX_NODES: usize = 1024;
/// Largest number of CPU ids hotslab can name.
pub const MAX_CPUS: usize = 4096;

/// The id of a NUMA node, as the kernel numbers it (`/sys/devices/system/node/nodeN`).
///
/// Ids may be sparse (a machine can have nodes 0 and 5 only). Valid ids are below [`MAX_NODES`];
/// masks silently ignore larger ids rather than panic.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct NodeId(pub u16);

impl NodeId {
    /// A node id.
    #[inline]
    pub const fn new(id: u16) -> Self {
        NodeId(id)
    }

    /// The id as an index (for tables sized [`MAX_NODES`]).
    #[inline]
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// Whether the id fits in a [`NodeMask`] (is below [`MAX_NODES`]).
    #[inline]
    pub const fn is_valid(self) -> bool {
        (self.0 as usize) < MAX_NODES
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u16> for NodeId {
    fn from(v: u16) -> Self {
        NodeId(v)
    }
}

/// Why a kernel list ("0-3,7") could not be parsed. Positions are byte offsets into the input.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum ParseError {
    /// A byte that is neither a digit, `-` nor `,` (after trimming surrounding whitespace).
    InvalidByte {
        /// Offset of the byte.
        pos: usize,
        /// The byte.
        byte: u8,
    },
    /// An empty item: a leading, trailing or doubled comma, or a range with a missing bound.
    EmptyItem {
        /// Offset where the item should have started or ended.
        pos: usize,
    },
    /// A range whose start is above its end ("5-3").
    ReversedRange {
        /// First bound.
        start: usize,
        /// Second bound.
        end: usize,
    },
    /// A value that does not fit the mask (or has too many digits).
    TooLarge {
        /// Offset of the value.
        pos: usize,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ParseError::InvalidByte { pos, byte } => {
                write!(f, "invalid byte 0x{byte:02x} at offset {pos} in list")
            }
            ParseError::EmptyItem { pos } => write!(f, "empty item at offset {pos} in list"),
            ParseError::ReversedRange { start, end } => {
                write!(f, "reversed range {start}-{end} in list")
            }
            ParseError::TooLarge { pos } => write!(f, "value at offset {pos} is out of range"),
        }
    }
}

impl std::error::Error for ParseError {}

// ---------------------------------------------------------------------------------------------
// Word-array helpers behind Bitset (and the streaming parser in sysfs.rs).

#[inline]
const fn bit_test(words: &[u64], i: usize) -> bool {
    if i >= words.len() * 64 {
        return false;
    }
    words[i / 64] & (1u64 << (i % 64)) != 0
}

#[inline]
const fn bit_set(words: &mut [u64], i: usize) {
    if i < words.len() * 64 {
        words[i / 64] |= 1u64 << (i % 64);
    }
}

#[inline]
const fn bit_clear(words: &mut [u64], i: usize) {
    if i < words.len() * 64 {
        words[i / 64] &= !(1u64 << (i % 64));
    }
}

const fn bit_weight(words: &[u64]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < words.len() {
        n += words[i].count_ones() as usize;
        i += 1;
    }
    n
}

const fn bit_first(words: &[u64]) -> Option<usize> {
    let mut i = 0;
    while i < words.len() {
        if words[i] != 0 {
            return Some(i * 64 + words[i].trailing_zeros() as usize);
        }
        i += 1;
    }
    None
}

/// Next set bit at or after `from`.
fn bit_next(words: &[u64], from: usize) -> Option<usize> {
    let mut wi = from / 64;
    if wi >= words.len() {
        return None;
    }
    let mut w = words[wi] & (!0u64 << (from % 64));
    loop {
        if w != 0 {
            return Some(wi * 64 + w.trailing_zeros() as usize);
        }
        wi += 1;
        if wi >= words.len() {
            return None;
        }
        w = words[wi];
    }
}

/// Next clear bit at or after `from` (or `words.len() * 64` when none).
fn bit_next_clear(words: &[u64], from: usize) -> usize {
    let nbits = words.len() * 64;
    let mut i = from;
    while i < nbits {
        let w = !words[i / 64] & (!0u64 << (i % 64));
        if w != 0 {
            return (i / 64) * 64 + w.trailing_zeros() as usize;
        }
        i = (i / 64 + 1) * 64;
    }
    nbits
}

#[inline]
pub(crate) fn is_list_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0)
}

/// Strip leading and trailing whitespace/NUL bytes; returns (offset of the slice, the slice).
pub(crate) fn trim_list(bytes: &[u8]) -> (usize, &[u8]) {
    let mut start = 0;
    let mut end = bytes.len();
    while start < end && is_list_space(bytes[start]) {
        start += 1;
    }
    while end > start && is_list_space(bytes[end - 1]) {
        end -= 1;
    }
    (start, &bytes[start..end])
}

/// Parse one number of a list item; `s` is non-empty and digits only (checked by the caller).
fn parse_number(s: &[u8], pos: usize, nbits: usize) -> Result<usize, ParseError> {
    if s.len() > 9 {
        return Err(ParseError::TooLarge { pos });
    }
    let mut v = 0usize;
    for &b in s {
        v = v * 10 + (b - b'0') as usize;
    }
    if v >= nbits {
        return Err(ParseError::TooLarge { pos });
    }
    Ok(v)
}

/// Parse the comma-separated items of an already trimmed list and OR them into `words`.
/// `base` is added to reported positions. An empty slice is an empty list.
pub(crate) fn parse_items_into(
    bytes: &[u8],
    base: usize,
    words: &mut [u64],
) -> Result<(), ParseError> {
    let nbits = words.len() * 64;
    if bytes.is_empty() {
        return Ok(());
    }
    let mut item_start = 0;
    loop {
        let mut item_end = item_start;
        while item_end < bytes.len() && bytes[item_end] != b',' {
            item_end += 1;
        }
        let item = &bytes[item_start..item_end];
        let pos = base + item_start;
        if item.is_empty() {
            return Err(ParseError::EmptyItem { pos });
        }
        let mut dash = None;
        for (i, &b) in item.iter().enumerate() {
            match b {
                b'0'..=b'9' => {}
                b'-' if dash.is_none() => dash = Some(i),
                _ => {
                    return Err(ParseError::InvalidByte {
                        pos: pos + i,
                        byte: b,
                    })
                }
            }
        }
        match dash {
            None => bit_set(words, parse_number(item, pos, nbits)?),
            Some(d) => {
                let (lo, hi) = (&item[..d], &item[d + 1..]);
                if lo.is_empty() {
                    return Err(ParseError::EmptyItem { pos });
                }
                if hi.is_empty() {
                    return Err(ParseError::EmptyItem { pos: pos + d + 1 });
                }
                let start = parse_number(lo, pos, nbits)?;
                let end = parse_number(hi, pos + d + 1, nbits)?;
                if start > end {
                    return Err(ParseError::ReversedRange { start, end });
                }
                for i in start..=end {
                    bit_set(words, i);
                }
            }
        }
        if item_end == bytes.len() {
            return Ok(());
        }
        item_start = item_end + 1;
        if item_start == bytes.len() {
            return Err(ParseError::EmptyItem {
                pos: base + item_start,
            });
        }
    }
}

/// Write `words` in kernel list format ("0-2,5"); empty writes nothing.
fn fmt_list(words: &[u64], f: &mut dyn fmt::Write) -> fmt::Result {
    let mut first = true;
    let mut next = bit_next(words, 0);
    while let Some(start) = next {
        let end = bit_next_clear(words, start) - 1;
        if !first {
            f.write_char(',')?;
        }
        first = false;
        if start == end {
            write!(f, "{start}")?;
        } else {
            write!(f, "{start}-{end}")?;
        }
        next = bit_next(words, end + 1);
    }
    Ok(())
}

/// A `fmt::Write` into a byte slice, failing when it is full.
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let b = s.as_bytes();
        let end = self.len.checked_add(b.len()).ok_or(fmt::Error)?;
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(b);
        self.len = end;
        Ok(())
    }
}

fn write_list_bytes(words: &[u64], out: &mut [u8]) -> Option<usize> {
    let mut w = SliceWriter { buf: out, len: 0 };
    fmt_list(words, &mut w).ok()?;
    Some(w.len)
}

/// Ascending iterator over the set bits of a word array.
#[derive(Clone, Debug)]
struct BitIter<'a> {
    words: &'a [u64],
    next: usize,
}

impl Iterator for BitIter<'_> {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        let i = bit_next(self.words, self.next)?;
        self.next = i + 1;
        Some(i)
    }
}

// ---------------------------------------------------------------------------------------------

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::NodeId {}
    impl Sealed for usize {}
}

/// The id type a [`Bitset`] is indexed by: [`NodeId`] for [`NodeMask`], `usize` for [`CpuMask`].
///
/// Sealed: only those two implement it. It converts between ids and bit positions for the
/// non-`const` parts of the API (iteration, collecting, `Debug`); the `const fn` accessors are
/// written per id type, since trait methods cannot be called in `const` context.
pub trait BitIndex: Copy + sealed::Sealed {
    /// The name `Debug` prints: `NodeMask` or `CpuMask`.
    const MASK_NAME: &'static str;
    /// The id of bit `i` (callers pass only set bits, so `i` fits the id type).
    fn from_bit(i: usize) -> Self;
    /// The bit position of the id.
    fn to_bit(self) -> usize;
}

impl BitIndex for NodeId {
    const MASK_NAME: &'static str = "NodeMask";
    #[inline]
    fn from_bit(i: usize) -> Self {
        NodeId(i as u16)
    }
    #[inline]
    fn to_bit(self) -> usize {
        self.index()
    }
}

impl BitIndex for usize {
    const MASK_NAME: &'static str = "CpuMask";
    #[inline]
    fn from_bit(i: usize) -> Self {
        i
    }
    #[inline]
    fn to_bit(self) -> usize {
        self
    }
}

/// A fixed-size set of ids: `64 * WORDS` bits in `[u64; WORDS]`, indexed by `I` ([`BitIndex`]).
/// Copy, no allocation, usable in `const` context and under Miri. [`NodeMask`] and [`CpuMask`] are
/// this type; use them rather than naming `Bitset` directly.
///
/// Bit `i` of word `w` is id `64 * w + i`, the layout of the kernel's `nodemask_t` and
/// `cpu_set_t`. Ids at or above the capacity are ignored by every setter and absent from every
/// test, never a panic. Displays (and parses) in the kernel list format used by sysfs, e.g. `0-2,5`.
pub struct Bitset<I, const WORDS: usize> {
    bits: [u64; WORDS],
    _index: PhantomData<fn() -> I>,
}

/// A set of NUMA nodes: a [`Bitset`] of [`MAX_NODES`] bits (`[u64; 16]`), the layout the kernel's
/// `mbind`/`set_mempolicy` expect.
///
/// ```
/// use hotslab_numa::{NodeId, NodeMask};
///
/// let mut m = NodeMask::parse_list(b"0-2,5\n").unwrap();
/// assert!(m.test(NodeId(1)) && !m.test(NodeId(3)));
/// m.set(NodeId(1023));
/// m.clear(NodeId(1));
/// assert_eq!(m.weight(), 4);
/// assert_eq!(m.first(), Some(NodeId(0)));
/// assert_eq!(m.to_string(), "0,2,5,1023");
/// let ids: Vec<u16> = m.iter().map(|n| n.0).collect();
/// assert_eq!(ids, [0, 2, 5, 1023]);
/// assert!(NodeMask::parse_list(b"3-1").is_err());
///
/// // Masks can be built in `const` context, e.g. for statics.
/// const LOW: NodeMask = NodeMask::range(0, 2);
/// assert_eq!(LOW.union(&NodeMask::single(NodeId(5))).to_string(), "0-1,5");
/// ```
pub type NodeMask = Bitset<NodeId, { MAX_NODES / 64 }>;

/// A set of CPU ids: a [`Bitset`] of [`MAX_CPUS`] bits (`[u64; 64]`), with plain `usize` CPU ids.
/// Same operations and list format as [`NodeMask`].
///
/// ```
/// use hotslab_numa::CpuMask;
///
/// let m = CpuMask::parse_list(b"0-3,4095").unwrap();
/// assert_eq!(m.weight(), 5);
/// assert!(m.test(4095) && !m.test(4));
/// assert_eq!(m.to_string(), "0-3,4095");
/// ```
pub type CpuMask = Bitset<usize, { MAX_CPUS / 64 }>;

/// Ascending iterator over the nodes of a [`NodeMask`].
pub type NodeIter<'a> = BitsetIter<'a, NodeId>;

/// Ascending iterator over the CPUs of a [`CpuMask`].
pub type CpuIter<'a> = BitsetIter<'a, usize>;

impl<I, const WORDS: usize> Bitset<I, WORDS> {
    /// Number of ids the set can hold: `64 * WORDS` (ids `0..CAPACITY`).
    pub const CAPACITY: usize = WORDS * 64;

    /// The empty set.
    pub const fn new() -> Self {
        Self::from_words([0; WORDS])
    }

    /// A set from its raw words (bit `i` of word `w` is id `64 * w + i`).
    pub const fn from_words(bits: [u64; WORDS]) -> Self {
        Bitset {
            bits,
            _index: PhantomData,
        }
    }

    /// The raw words, in the layout of the kernel's `nodemask_t` / `cpu_set_t`.
    pub const fn as_words(&self) -> &[u64; WORDS] {
        &self.bits
    }

    /// The set of bit positions `start..end`, clamped to [`Self::CAPACITY`] (empty if
    /// `start >= end`).
    const fn bit_range(start: usize, end: usize) -> Self {
        let mut m = Self::new();
        let mut i = start;
        while i < end && i < Self::CAPACITY {
            bit_set(&mut m.bits, i);
            i += 1;
        }
        m
    }

    /// Number of ids in the set.
    pub const fn weight(&self) -> usize {
        bit_weight(&self.bits)
    }

    /// Whether the set is empty.
    pub const fn is_empty(&self) -> bool {
        bit_first(&self.bits).is_none()
    }

    /// Ids in either set.
    pub const fn union(&self, other: &Self) -> Self {
        let mut r = Self::from_words(self.bits);
        let mut i = 0;
        while i < WORDS {
            r.bits[i] |= other.bits[i];
            i += 1;
        }
        r
    }

    /// Ids in both sets.
    pub const fn intersection(&self, other: &Self) -> Self {
        let mut r = Self::from_words(self.bits);
        let mut i = 0;
        while i < WORDS {
            r.bits[i] &= other.bits[i];
            i += 1;
        }
        r
    }

    /// Ids in `self` but not in `other`.
    pub const fn difference(&self, other: &Self) -> Self {
        let mut r = Self::from_words(self.bits);
        let mut i = 0;
        while i < WORDS {
            r.bits[i] &= !other.bits[i];
            i += 1;
        }
        r
    }

    /// Whether every id of `self` is also in `other`.
    pub const fn is_subset(&self, other: &Self) -> bool {
        self.difference(other).is_empty()
    }

    /// Parse the kernel list format used by sysfs ("0-3,8\n"). Surrounding whitespace and NUL
    /// bytes are ignored; an empty (or all-whitespace) input is the empty set. Allocates nothing.
    ///
    /// # Errors
    /// A [`ParseError`] with the byte offset of the first bad item; an id at or above
    /// [`Self::CAPACITY`] is [`ParseError::TooLarge`].
    pub fn parse_list(bytes: &[u8]) -> Result<Self, ParseError> {
        let mut m = Self::new();
        let (off, s) = trim_list(bytes);
        parse_items_into(s, off, &mut m.bits)?;
        Ok(m)
    }

    /// OR the items of an already trimmed list fragment into the set (used by streaming readers).
    pub(crate) fn parse_items(&mut self, bytes: &[u8], base: usize) -> Result<(), ParseError> {
        parse_items_into(bytes, base, &mut self.bits)
    }

    /// Write the list format into `out` without allocating; returns the number of bytes written
    /// (0 for the empty set), or `None` if `out` is too small (its contents are then unspecified).
    pub fn write_list(&self, out: &mut [u8]) -> Option<usize> {
        write_list_bytes(&self.bits, out)
    }
}

impl<I: BitIndex, const WORDS: usize> Bitset<I, WORDS> {
    /// The lowest id strictly above `id`.
    pub fn next_after(&self, id: I) -> Option<I> {
        bit_next(&self.bits, id.to_bit().checked_add(1)?).map(I::from_bit)
    }

    /// The ids in ascending order.
    pub fn iter(&self) -> BitsetIter<'_, I> {
        BitsetIter {
            inner: BitIter {
                words: &self.bits,
                next: 0,
            },
            _index: PhantomData,
        }
    }
}

// The id-typed accessors, `const` and therefore written per id type (a `const fn` cannot call
// `BitIndex::to_bit`); each is a one-line conversion over the shared word helpers.

impl<const WORDS: usize> Bitset<NodeId, WORDS> {
    /// A mask holding exactly `nid` (empty if `nid` is not below the capacity, [`MAX_NODES`]).
    pub const fn single(nid: NodeId) -> Self {
        let mut m = Self::new();
        m.set(nid);
        m
    }

    /// The mask of nodes `start..end` (clamped to the capacity, [`MAX_NODES`]).
    pub const fn range(start: u16, end: u16) -> Self {
        Self::bit_range(start as usize, end as usize)
    }

    /// Add `nid` (ignored if it is not below [`MAX_NODES`]).
    #[inline]
    pub const fn set(&mut self, nid: NodeId) {
        bit_set(&mut self.bits, nid.index());
    }

    /// Remove `nid`.
    #[inline]
    pub const fn clear(&mut self, nid: NodeId) {
        bit_clear(&mut self.bits, nid.index());
    }

    /// Whether `nid` is in the mask.
    #[inline]
    pub const fn test(&self, nid: NodeId) -> bool {
        bit_test(&self.bits, nid.index())
    }

    /// The lowest node in the mask.
    pub const fn first(&self) -> Option<NodeId> {
        match bit_first(&self.bits) {
            Some(i) => Some(NodeId(i as u16)),
            None => None,
        }
    }
}

impl<const WORDS: usize> Bitset<usize, WORDS> {
    /// A mask holding exactly `cpu` (empty if `cpu` is not below the capacity, [`MAX_CPUS`]).
    pub const fn single(cpu: usize) -> Self {
        let mut m = Self::new();
        m.set(cpu);
        m
    }

    /// The mask of CPUs `start..end` (clamped to the capacity, [`MAX_CPUS`]).
    pub const fn range(start: usize, end: usize) -> Self {
        Self::bit_range(start, end)
    }

    /// Add `cpu` (ignored if `cpu >= MAX_CPUS`).
    #[inline]
    pub const fn set(&mut self, cpu: usize) {
        bit_set(&mut self.bits, cpu);
    }

    /// Remove `cpu`.
    #[inline]
    pub const fn clear(&mut self, cpu: usize) {
        bit_clear(&mut self.bits, cpu);
    }

    /// Whether `cpu` is in the mask.
    #[inline]
    pub const fn test(&self, cpu: usize) -> bool {
        bit_test(&self.bits, cpu)
    }

    /// The lowest CPU in the mask.
    pub const fn first(&self) -> Option<usize> {
        bit_first(&self.bits)
    }
}

// Manual impls: derives would bound `I` and arrays above 32 words implement no `Default`.

impl<I, const WORDS: usize> Clone for Bitset<I, WORDS> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<I, const WORDS: usize> Copy for Bitset<I, WORDS> {}

impl<I, const WORDS: usize> PartialEq for Bitset<I, WORDS> {
    fn eq(&self, other: &Self) -> bool {
        self.bits == other.bits
    }
}

impl<I, const WORDS: usize> Eq for Bitset<I, WORDS> {}

impl<I, const WORDS: usize> core::hash::Hash for Bitset<I, WORDS> {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.bits.hash(state);
    }
}

impl<I, const WORDS: usize> Default for Bitset<I, WORDS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I, const WORDS: usize> fmt::Display for Bitset<I, WORDS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_list(&self.bits, f)
    }
}

impl<I: BitIndex, const WORDS: usize> fmt::Debug for Bitset<I, WORDS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}(\"{self}\")", I::MASK_NAME)
    }
}

impl<I: BitIndex, const WORDS: usize> FromIterator<I> for Bitset<I, WORDS> {
    fn from_iter<T: IntoIterator<Item = I>>(iter: T) -> Self {
        let mut m = Self::new();
        for id in iter {
            bit_set(&mut m.bits, id.to_bit());
        }
        m
    }
}

impl<'a, I: BitIndex, const WORDS: usize> IntoIterator for &'a Bitset<I, WORDS> {
    type Item = I;
    type IntoIter = BitsetIter<'a, I>;
    fn into_iter(self) -> BitsetIter<'a, I> {
        self.iter()
    }
}

/// Ascending iterator over the ids of a [`Bitset`] ([`NodeIter`], [`CpuIter`]).
pub struct BitsetIter<'a, I> {
    inner: BitIter<'a>,
    _index: PhantomData<fn() -> I>,
}

impl<I> Clone for BitsetIter<'_, I> {
    fn clone(&self) -> Self {
        BitsetIter {
            inner: self.inner.clone(),
            _index: PhantomData,
        }
    }
}

impl<I> fmt::Debug for BitsetIter<'_, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BitsetIter")
            .field("next", &self.inner.next)
            .finish()
    }
}

impl<I: BitIndex> Iterator for BitsetIter<'_, I> {
    type Item = I;
    #[inline]
    fn next(&mut self) -> Option<I> {
        self.inner.next().map(I::from_bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(m: &NodeMask) -> Vec<u16> {
        m.iter().map(|n| n.0).collect()
    }

    #[test]
    fn node_id_basics() {
        let n = NodeId::new(7);
        assert_eq!(n.index(), 7);
        assert_eq!(n.to_string(), "7");
        assert!(NodeId(1023).is_valid());
        assert!(!NodeId(1024).is_valid());
        assert!(NodeId(2) < NodeId(10));
    }

    #[test]
    fn set_clear_test() {
        let mut m = NodeMask::new();
        assert!(m.is_empty());
        assert_eq!(m.first(), None);
        for n in [0u16, 63, 64, 127, 500, 1023] {
            assert!(!m.test(NodeId(n)));
            m.set(NodeId(n));
            assert!(m.test(NodeId(n)));
        }
        assert_eq!(m.weight(), 6);
        m.set(NodeId(63)); // idempotent
        assert_eq!(m.weight(), 6);
        m.clear(NodeId(63));
        assert!(!m.test(NodeId(63)));
        assert!(m.test(NodeId(64)));
        assert_eq!(m.weight(), 5);
        assert_eq!(ids(&m), [0, 64, 127, 500, 1023]);
        // Out-of-range ids are ignored, never a panic.
        m.set(NodeId(1024));
        m.set(NodeId(u16::MAX));
        assert!(!m.test(NodeId(1024)));
        m.clear(NodeId(5000));
        assert_eq!(m.weight(), 5);
    }

    #[test]
    fn first_next_and_iter() {
        let mut m = NodeMask::new();
        m.set(NodeId(1023));
        assert_eq!(m.first(), Some(NodeId(1023)));
        m.set(NodeId(5));
        m.set(NodeId(70));
        assert_eq!(m.first(), Some(NodeId(5)));
        assert_eq!(m.next_after(NodeId(5)), Some(NodeId(70)));
        assert_eq!(m.next_after(NodeId(70)), Some(NodeId(1023)));
        assert_eq!(m.next_after(NodeId(1023)), None);
        assert_eq!(ids(&m), [5, 70, 1023]);
        let collected: NodeMask = [NodeId(5), NodeId(70), NodeId(1023)].into_iter().collect();
        assert_eq!(collected, m);
        let mut n = 0;
        for _ in &m {
            n += 1;
        }
        assert_eq!(n, 3);
    }

    #[test]
    fn set_algebra() {
        let a = NodeMask::parse_list(b"0-5").unwrap();
        let b = NodeMask::parse_list(b"4-9").unwrap();
        assert_eq!(a.union(&b), NodeMask::range(0, 10));
        assert_eq!(a.intersection(&b), NodeMask::parse_list(b"4,5").unwrap());
        assert_eq!(a.difference(&b), NodeMask::range(0, 4));
        assert!(NodeMask::range(1, 3).is_subset(&a));
        assert!(!b.is_subset(&a));
        assert_eq!(NodeMask::single(NodeId(9)).weight(), 1);
        assert!(NodeMask::single(NodeId(2000)).is_empty());
        assert_eq!(NodeMask::range(1000, 2000).weight(), 24);
        const C: NodeMask = NodeMask::single(NodeId(3));
        assert!(C.test(NodeId(3)));
    }

    #[test]
    fn parse_and_format() {
        let cases: &[(&[u8], &str, usize)] = &[
            (b"", "", 0),
            (b"\n", "", 0),
            (b"0\n", "0", 1),
            (b"0-3\n", "0-3", 4),
            (b"0,5", "0,5", 2),
            (b"0-2,5", "0-2,5", 4),
            (b"5,0-2", "0-2,5", 4),
            (b"1,2,3,7-8", "1-3,7-8", 5),
            (b"1023", "1023", 1),
            (b"0-1023", "0-1023", 1024),
            (b"  62-65 \0", "62-65", 4),
            (b"3-3", "3", 1),
        ];
        for &(input, out, w) in cases {
            let m = NodeMask::parse_list(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(m.to_string(), out, "input {input:?}");
            assert_eq!(m.weight(), w);
            // Round trip through the formatter.
            assert_eq!(NodeMask::parse_list(out.as_bytes()).unwrap(), m);
        }
    }

    #[test]
    fn parse_errors() {
        use ParseError::*;
        let cases: &[(&[u8], ParseError)] = &[
            (b",", EmptyItem { pos: 0 }),
            (b"1,", EmptyItem { pos: 2 }),
            (b",1", EmptyItem { pos: 0 }),
            (b"1,,2", EmptyItem { pos: 2 }),
            (b"-1", EmptyItem { pos: 0 }),
            (b"1-", EmptyItem { pos: 2 }),
            (b"3-1", ReversedRange { start: 3, end: 1 }),
            (b"1024", TooLarge { pos: 0 }),
            (b"0-1024", TooLarge { pos: 2 }),
            (b"99999999999999999999", TooLarge { pos: 0 }),
            (b"a", InvalidByte { pos: 0, byte: b'a' }),
            (b"1 2", InvalidByte { pos: 1, byte: b' ' }),
            (b"1-2-3", InvalidByte { pos: 3, byte: b'-' }),
            (b"0-3:2/4", InvalidByte { pos: 3, byte: b':' }),
            (b" x", InvalidByte { pos: 1, byte: b'x' }),
        ];
        for &(input, err) in cases {
            assert_eq!(NodeMask::parse_list(input), Err(err), "input {input:?}");
        }
        // Errors display something useful.
        assert!(ReversedRange { start: 3, end: 1 }
            .to_string()
            .contains("3-1"));
    }

    #[test]
    fn sparse_and_high() {
        let m = NodeMask::parse_list(b"0,5,1023").unwrap();
        assert_eq!(ids(&m), [0, 5, 1023]);
        assert_eq!(format!("{m:?}"), "NodeMask(\"0,5,1023\")");
        let words = m.as_words();
        assert_eq!(words[0], 1 | (1 << 5));
        assert_eq!(words[15], 1 << 63);
        assert_eq!(NodeMask::from_words(*words), m);
    }

    #[test]
    fn write_list_no_alloc() {
        let m = NodeMask::parse_list(b"0-2,5,1000-1023").unwrap();
        let mut buf = [0u8; 32];
        let n = m.write_list(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"0-2,5,1000-1023");
        let mut small = [0u8; 4];
        assert_eq!(m.write_list(&mut small), None);
        assert_eq!(NodeMask::new().write_list(&mut small), Some(0));
    }

    #[test]
    fn cpu_mask() {
        let mut c = CpuMask::parse_list(b"0-3,64,4095\n").unwrap();
        assert_eq!(c.weight(), 6);
        assert_eq!(c.first(), Some(0));
        assert!(c.test(64) && c.test(4095) && !c.test(4));
        c.clear(0);
        c.set(100);
        c.set(MAX_CPUS); // ignored
        assert_eq!(c.iter().collect::<Vec<_>>(), [1, 2, 3, 64, 100, 4095]);
        assert_eq!(c.to_string(), "1-3,64,100,4095");
        assert_eq!(
            CpuMask::parse_list(b"4096"),
            Err(ParseError::TooLarge { pos: 0 })
        );
        assert_eq!(
            CpuMask::parse_list(b"2-1"),
            Err(ParseError::ReversedRange { start: 2, end: 1 })
        );
        let a = CpuMask::range(0, 8);
        let b = CpuMask::range(4, 12);
        assert_eq!(a.union(&b), CpuMask::range(0, 12));
        assert_eq!(a.intersection(&b), CpuMask::range(4, 8));
        assert_eq!(a.difference(&b).to_string(), "0-3");
        assert!(CpuMask::new().is_empty());
        assert_eq!(CpuMask::single(7).first(), Some(7));
        assert_eq!(CpuMask::range(0, 5000).weight(), MAX_CPUS);
        let collected: CpuMask = [1usize, 9].into_iter().collect();
        assert_eq!(collected.to_string(), "1,9");
        assert_eq!(format!("{:?}", CpuMask::default()), "CpuMask(\"\")");
    }

    #[test]
    fn generic_bitset_edges() {
        // A one-word set: ids at and above 64 are ignored, parsing rejects them.
        type Small = Bitset<usize, 1>;
        assert_eq!(Small::CAPACITY, 64);
        let mut s = Small::range(60, 200);
        assert_eq!(s.to_string(), "60-63");
        s.set(64);
        assert_eq!(s.weight(), 4);
        assert_eq!(
            Small::parse_list(b"64"),
            Err(ParseError::TooLarge { pos: 0 })
        );
        assert_eq!(s.next_after(61), Some(62));
        assert_eq!(s.next_after(63), None);
        assert_eq!(s.next_after(usize::MAX), None);
        assert_eq!(NodeMask::CAPACITY, MAX_NODES);
        assert_eq!(CpuMask::CAPACITY, MAX_CPUS);
        assert_eq!(
            NodeMask::single(NodeId(9)).next_after(NodeId(u16::MAX)),
            None
        );
        // CpuMask gains next_after and is_subset, NodeMask from_words: one implementation.
        let c = CpuMask::parse_list(b"3,70").unwrap();
        assert_eq!(c.next_after(3), Some(70));
        assert!(c.is_subset(&CpuMask::range(0, 100)));
        assert_eq!(CpuMask::from_words(*c.as_words()), c);
        assert!(NodeMask::range(5, 5).is_empty());
        // Equal sets hash equally; Debug names the face.
        use std::hash::{BuildHasher, RandomState};
        let h = RandomState::new();
        let a = NodeMask::parse_list(b"1-3").unwrap();
        let b: NodeMask = [NodeId(3), NodeId(2), NodeId(1)].into_iter().collect();
        assert_eq!(h.hash_one(a), h.hash_one(b));
        assert_eq!(format!("{:?}", Small::single(2)), "CpuMask(\"2\")");
        // Every const fn stays usable in const context (statics in the slab crate need it).
        const M: NodeMask = NodeMask::range(0, 4)
            .union(&NodeMask::single(NodeId(9)))
            .difference(&NodeMask::single(NodeId(1)));
        const W: usize = M.weight();
        const F: Option<NodeId> = M.first();
        const T: bool = M.test(NodeId(9)) && M.is_subset(&NodeMask::range(0, 10));
        const CM: CpuMask = CpuMask::single(5).intersection(&CpuMask::range(0, 8));
        assert_eq!((W, F, T), (4, Some(NodeId(0)), true));
        assert_eq!(CM.first(), Some(5));
        let mut it = M.iter();
        assert_eq!(it.next(), Some(NodeId(0)));
        let rest: Vec<NodeId> = it.clone().collect();
        assert_eq!(rest, [NodeId(2), NodeId(3), NodeId(9)]);
    }

    #[test]
    fn format_edge_runs() {
        // Runs crossing word boundaries and ending at the last bit.
        let m = NodeMask::parse_list(b"60-70,127-128,1022-1023").unwrap();
        assert_eq!(m.to_string(), "60-70,127-128,1022-1023");
        let c = CpuMask::range(0, MAX_CPUS);
        assert_eq!(c.to_string(), "0-4095");
    }
}
