//! The slabinfo table written without allocating (a fixed buffer and `write(2)`), for places
//! where the global allocator must not be used: `HOTSLAB_STATS` at exit, and the C library.
//! Read-only over caches and parts (takes `slab_mutex`, then each part's list lock, briefly).

use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use hotslab_numa::NodeId;

use crate::cache::CacheInner;
use crate::domain::SlabDomain;
use crate::stats::FixedWriter;

/// Column header of [`SlabDomain::write_slabinfo`].
pub const SLABINFO_HEADER: &str =
    "# name                 <active_objs> <num_objs> <objsize> <objperslab> \
<pagesperslab>     <allocs>      <frees> : slabs per node";

fn row(w: &mut dyn Write, c: &CacheInner) -> fmt::Result {
    let st = c.stats();
    write!(
        w,
        "{:<22} {:>13} {:>10} {:>9} {:>12} {:>14} {:>12} {:>12} :",
        c.name,
        st.active_objects,
        st.total_objects,
        st.object_size,
        st.objs_per_slab,
        st.pages_per_slab,
        st.allocs,
        st.frees
    )?;
    for i in 0..c.nr_node_ids {
        let p = c.part(NodeId::new(i as u16));
        if !p.is_null() {
            // SAFETY: parts live as long as their cache.
            let n = unsafe { (*p).nr_slabs.load(Ordering::Relaxed) };
            write!(w, " N{i}={n}")?;
        }
    }
    w.write_char('\n')
}

/// Totals over a domain's caches: (allocations, frees, objects in use).
fn totals(d: &SlabDomain) -> (u64, u64, usize) {
    let reg = d.registry();
    let (mut a, mut f, mut live) = (0, 0, 0);
    SlabDomain::for_each_cache(&reg, |c| {
        let st = c.stats();
        a += st.allocs;
        f += st.frees;
        live += st.active_objects;
    });
    (a, f, live)
}

impl SlabDomain {
    /// Writes the slabinfo table (the [`SLABINFO_HEADER`] line, then one line per cache: like
    /// `/proc/slabinfo`, plus allocation and free counts) into `w` without allocating.
    ///
    /// ```
    /// use hotslab::{CacheConfig, SlabDomain};
    /// struct Count(usize);
    /// impl core::fmt::Write for Count {
    ///     fn write_str(&mut self, s: &str) -> core::fmt::Result {
    ///         self.0 += s.matches('\n').count();
    ///         Ok(())
    ///     }
    /// }
    /// let d = SlabDomain::simulated(2).unwrap();
    /// let c = d.create_cache(CacheConfig::new("dentry", 192)).unwrap();
    /// let mut lines = Count(0);
    /// d.write_slabinfo(&mut lines).unwrap();
    /// assert_eq!(lines.0, 1 + d.cache_count());
    /// c.destroy().unwrap();
    /// ```
    pub fn write_slabinfo(&self, w: &mut dyn Write) -> fmt::Result {
        w.write_str(SLABINFO_HEADER)?;
        w.write_char('\n')?;
        let reg = self.registry();
        let mut res = Ok(());
        SlabDomain::for_each_cache(&reg, |c| {
            if res.is_ok() {
                res = row(w, c);
            }
        });
        res
    }
}

const BUF: usize = 64 * 1024;
struct Buf(UnsafeCell<[u8; BUF]>);
// SAFETY: used only by the holder of BUSY.
unsafe impl Sync for Buf {}
static BUFFER: Buf = Buf(UnsafeCell::new([0; BUF]));
static BUSY: AtomicBool = AtomicBool::new(false);

/// Writes the default domain's slabinfo table to file descriptor `fd` in one `write(2)`, framed
/// by a first line `hotslab: slabinfo pid=.. mode=.. nodes=.. tiers=N0:4,..` and a last line
/// `hotslab: total pid=.. allocs=.. frees=.. live=.. large_live=.. large_live_bytes=..
/// mapped_bytes=.. boot_allocs=..`. Never allocates (a static 64 KiB buffer; a longer table is
/// cut). False if the default domain does not exist or another thread is printing.
pub fn print_slabinfo(fd: i32) -> bool {
    let Some(d) = crate::global::default_domain() else {
        return false;
    };
    if BUSY.swap(true, Ordering::Acquire) {
        return false;
    }
    // SAFETY: BUSY gives this thread the buffer until it is cleared below.
    let buf = unsafe { &mut *BUFFER.0.get() };
    let mut w = FixedWriter::new(buf);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let large = &crate::kmalloc::LARGE;
    let (allocs, frees, live) = totals(d);
    let _ = write!(
        w,
        "hotslab: slabinfo pid={pid} mode={} nodes={}",
        d.mode().name(),
        d.topology().node_count()
    );
    // Each node's memory tier (the kernel's memory_tiering id; "-" where it gives none).
    let topo = d.topology();
    let _ = w.write_str(" tiers=");
    for (k, nid) in topo.nodes().iter().enumerate() {
        let sep = if k == 0 { "" } else { "," };
        let _ = match topo.tier(nid) {
            Some(t) => write!(w, "{sep}N{}:{t}", nid.index()),
            None => write!(w, "{sep}N{}:-", nid.index()),
        };
    }
    let _ = writeln!(w);
    let _ = d.write_slabinfo(&mut w);
    let _ = writeln!(
        w,
        "hotslab: total pid={pid} allocs={allocs} frees={frees} live={live} large_live={} \
         large_live_bytes={} mapped_bytes={} boot_allocs={}",
        large.live_count(),
        large.live_bytes(),
        d.page_source().mapped_bytes(),
        crate::global::BOOT_ALLOCS.load(Ordering::Relaxed)
    );
    let bytes = w.as_bytes();
    let mut done = 0;
    while done < bytes.len() {
        // SAFETY: writes the initialised part of our buffer.
        let n = unsafe { libc::write(fd, bytes[done..].as_ptr().cast(), bytes.len() - done) };
        if n <= 0 {
            break;
        }
        done += n as usize;
    }
    BUSY.store(false, Ordering::Release);
    done == bytes.len()
}
