//! Statistics: the slabinfo row of a cache (like /proc/slabinfo) and a formatter that writes into
//! a fixed buffer (used where allocating is not allowed). Read-only over caches and parts.

use core::fmt;

use crate::cache::CacheInner;

/// One row of slabinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlabInfoRow {
    /// Cache name.
    pub name: &'static str,
    /// Objects allocated and not freed.
    pub active_objs: usize,
    /// Object slots in all slabs.
    pub num_objs: usize,
    /// Object size (slot size in parentheses in the table).
    pub objsize: usize,
    /// Slot size.
    pub stride: usize,
    /// Objects per slab.
    pub objperslab: usize,
    /// 4 KiB pages per slab.
    pub pagesperslab: usize,
    /// Slabs per node id (index = node id).
    pub node_slabs: Vec<usize>,
    /// Allocations and frees served.
    pub allocs: u64,
    /// Frees accepted.
    pub frees: u64,
}

pub(crate) fn row(c: &CacheInner) -> SlabInfoRow {
    let st = c.stats();
    let mut node_slabs = vec![0; c.nr_node_ids];
    c.node_slabs(&mut node_slabs);
    SlabInfoRow {
        name: c.name,
        active_objs: st.active_objects,
        num_objs: st.total_objects,
        objsize: st.object_size,
        stride: st.stride,
        objperslab: st.objs_per_slab,
        pagesperslab: st.pages_per_slab,
        node_slabs,
        allocs: st.allocs,
        frees: st.frees,
    }
}

impl SlabInfoRow {
    /// The header line matching [`fmt::Display`].
    pub const HEADER: &'static str =
        "# name                 <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : slabs per node";
}

impl fmt::Display for SlabInfoRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<22} {:>13} {:>10} {:>9} {:>12} {:>14} :",
            self.name,
            self.active_objs,
            self.num_objs,
            self.objsize,
            self.objperslab,
            self.pagesperslab
        )?;
        for (nid, n) in self.node_slabs.iter().enumerate() {
            write!(f, " N{nid}={n}")?;
        }
        Ok(())
    }
}

/// A `fmt::Write` into a fixed byte buffer; output past the end is dropped.
pub(crate) struct FixedWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> FixedWriter<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        FixedWriter { buf, len: 0 }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl fmt::Write for FixedWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn fixed_writer_truncates() {
        let mut b = [0u8; 8];
        let mut w = FixedWriter::new(&mut b);
        write!(w, "hello {}", 12345).unwrap();
        assert_eq!(w.as_bytes(), b"hello 12");
    }
}
