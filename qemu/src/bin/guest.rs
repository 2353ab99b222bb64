//! The guest test program (static, runs as a child of the initramfs's init inside the QEMU guest): builds
//! a slab domain over the guest kernel's sysfs, follows its memory hotplug with the Linux backend, and
//! checks placement, node 2 coming and going in every cache, and that no object is lost. In the first
//! cycle it also runs the default-allocator programs (`guest/children.rs`) and the HMAT, tier and
//! fallback-order checks (`guest/hmat.rs`). Talks to the host driver only through `HOTSLAB` lines on
//! the serial console (see `protocol.rs`).

use std::ptr::NonNull;
use std::time::{Duration, Instant};

use hotslab::linux::{domain_from_sysfs, follow_hotplug, FollowStatus, FollowerHandle};
use hotslab::{CacheConfig, DomainConfig, KmemCache, PartState, SlabDomain};
use hotslab_numa::{MapError, NodeId, NodeMask, PageSource};
use hotslab_qemu::guestkit::{
    cmdline_value, fill, line, verify, Placement, Reporter, PLACEMENT_MIN_PCT,
};

#[path = "guest/children.rs"]
mod children;
#[path = "guest/hmat.rs"]
mod hmat;

/// How long the guest waits for the host and the kernel (only reached if something is broken).
const WAIT: Duration = Duration::from_secs(120);
const N2: NodeId = NodeId::new(2);

// ---- object groups ---------------------------------------------------------------------------

enum Source {
    Cache(KmemCache),
    Kmalloc(usize),
}

struct Group {
    name: String,
    tag: u64,
    source: Source,
    len: usize,
    count: usize,
}

struct Obj {
    ptr: NonNull<u8>,
    idx: u64,
}

struct Batch<'g> {
    group: &'g Group,
    objs: Vec<Obj>,
}

impl Group {
    fn alloc(&self, d: &SlabDomain, node: NodeId) -> Option<NonNull<u8>> {
        match &self.source {
            Source::Cache(c) => c.alloc_node(node).ok(),
            Source::Kmalloc(size) => NonNull::new(d.kmalloc_layout(*size, 8, Some(node))),
        }
    }

    fn free(&self, d: &SlabDomain, p: NonNull<u8>) -> bool {
        match &self.source {
            Source::Cache(c) => c.free(p).is_ok(),
            // SAFETY: p came from this domain's kmalloc and is freed once.
            Source::Kmalloc(_) => unsafe { d.kfree_checked(p.as_ptr()) }.is_ok(),
        }
    }

    /// Allocates `count` objects preferring `node` and fills them.
    fn batch(&self, d: &SlabDomain, node: NodeId) -> Batch<'_> {
        let mut objs = Vec::with_capacity(self.count);
        for i in 0..self.count {
            if let Some(p) = self.alloc(d, node) {
                // SAFETY: a fresh allocation of self.len bytes (usable size >= requested).
                unsafe { fill(p, self.len, self.tag, i as u64) };
                objs.push(Obj {
                    ptr: p,
                    idx: i as u64,
                });
            }
        }
        Batch { group: self, objs }
    }
}

impl Batch<'_> {
    fn ranges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.objs
            .iter()
            .map(|o| (o.ptr.as_ptr() as usize, self.group.len))
    }

    fn placement(&self) -> Placement {
        Placement::of(self.ranges())
    }

    /// Objects of a cache group whose slab is on `nid` (by the cache's own bookkeeping).
    fn logical_on(&self, nid: NodeId) -> Option<usize> {
        match &self.group.source {
            Source::Cache(c) => Some(
                self.objs
                    .iter()
                    .filter(|o| c.node_of(o.ptr) == Some(nid))
                    .count(),
            ),
            Source::Kmalloc(_) => None,
        }
    }

    fn intact(&self) -> usize {
        self.objs
            .iter()
            // SAFETY: live objects of self.group.len bytes, filled by `batch`.
            .filter(|o| unsafe { verify(o.ptr, self.group.len, self.group.tag, o.idx) })
            .count()
    }

    /// Frees every object with an even index; the odd ones stay as survivors.
    fn free_half(&mut self, d: &SlabDomain) -> bool {
        let mut ok = true;
        let mut keep = Vec::new();
        for o in self.objs.drain(..) {
            if o.idx % 2 == 0 {
                ok &= self.group.free(d, o.ptr);
            } else {
                keep.push(o);
            }
        }
        self.objs = keep;
        ok
    }

    fn free_all(&mut self, d: &SlabDomain) -> bool {
        let mut ok = true;
        for o in self.objs.drain(..) {
            ok &= self.group.free(d, o.ptr);
        }
        ok
    }
}

// ---- the run ---------------------------------------------------------------------------------

fn wait_node2(h: &FollowerHandle, online: bool) -> Option<(FollowStatus, Duration)> {
    let t = Instant::now();
    let s = h.wait_until(WAIT, |s| s.domain.has_memory.test(N2) == online)?;
    Some((s, t.elapsed()))
}

fn groups(d: &SlabDomain) -> Vec<Group> {
    let mut gs = Vec::new();
    for (i, (name, size, count)) in [
        ("hp-64", 64usize, 8192usize),
        ("hp-192", 192, 4096),
        ("hp-600", 600, 1024),
        ("hp-4k", 4096, 256),
    ]
    .into_iter()
    .enumerate()
    {
        let c = d
            .create_cache(CacheConfig::new(name, size))
            .expect("create cache");
        gs.push(Group {
            name: name.to_string(),
            tag: i as u64 + 1,
            source: Source::Cache(c),
            len: size,
            count,
        });
    }
    for (i, (size, count)) in [
        (100usize, 2048usize),
        (1000, 512),
        (512 << 10, 8),
        (2 << 20, 2),
    ]
    .into_iter()
    .enumerate()
    {
        let name = if size > hotslab::KMALLOC_MAX {
            format!("large-{}k", size >> 10)
        } else {
            format!("kmalloc-{size}")
        };
        gs.push(Group {
            name,
            tag: 16 + i as u64,
            source: Source::Kmalloc(size),
            len: size & !7,
            count,
        });
    }
    gs
}

fn caches(gs: &[Group]) -> impl Iterator<Item = (&str, &KmemCache)> {
    gs.iter().filter_map(|g| match &g.source {
        Source::Cache(c) => Some((g.name.as_str(), c)),
        Source::Kmalloc(_) => None,
    })
}

fn part_states(gs: &[Group], nid: NodeId) -> Vec<(String, Option<PartState>)> {
    caches(gs)
        .map(|(n, c)| (n.to_string(), c.part_state(nid)))
        .collect()
}

/// Allocates every group on `node` and checks that ≥ 99 % of the pages really are there.
fn placement_round<'g>(
    r: &mut Reporter,
    d: &SlabDomain,
    gs: &'g [Group],
    node: NodeId,
    label: &str,
) -> Vec<Batch<'g>> {
    let mut batches = Vec::new();
    let mut present = 0;
    let mut on = 0;
    for g in gs {
        let b = g.batch(d, node);
        let p = b.placement();
        present += p.present();
        on += p.on(node);
        r.check(
            &format!("{label}.alloc.{}", g.name),
            b.objs.len() == g.count,
            format!("{}/{} objects", b.objs.len(), g.count),
        );
        if let Some(k) = b.logical_on(node) {
            r.check(
                &format!("{label}.slab_node.{}", g.name),
                k == b.objs.len(),
                format!("{k}/{} objects in node {node} slabs", b.objs.len()),
            );
        }
        let pct = p.pct_on(node);
        r.check(
            &format!("{label}.placement.{}", g.name),
            pct >= PLACEMENT_MIN_PCT && p.errors == 0,
            format!("{pct:.2} % on node {node}: {}", p.describe()),
        );
        batches.push(b);
    }
    let pct = if present == 0 {
        0.0
    } else {
        100.0 * on as f64 / present as f64
    };
    r.value(
        &format!("{label}.placement_pct"),
        format!("{pct:.2} % of {present} pages on node {node}"),
    );
    batches
}

/// Prints every kernel uevent as `HOTSLAB UEVENT <escaped bytes>` (for recording test fixtures), from a
/// netlink socket of its own; runs until the program exits.
fn dump_uevents() {
    // SAFETY: plain socket(2); checked below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_KOBJECT_UEVENT,
        )
    };
    if fd < 0 {
        return;
    }
    // SAFETY: sockaddr_nl is plain old data; zero is valid.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = 1;
    // SAFETY: a valid sockaddr_nl of the size passed.
    let ok = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    } == 0;
    if !ok {
        return;
    }
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: buf is writable for its length.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n <= 0 {
                continue;
            }
            let text: String = buf[..n as usize]
                .iter()
                .flat_map(|&b| std::ascii::escape_default(b))
                .map(char::from)
                .collect();
            println!("HOTSLAB UEVENT {text}");
        }
    });
}

fn run(r: &mut Reporter) {
    if cmdline_value("hotslab.dump_uevents").is_some() {
        dump_uevents();
    }
    let cycles: u32 = cmdline_value("hotslab.cycles")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let boot = hotslab::linux::KernelView::read().expect("sysfs");
    let m = boot.snapshot();
    r.check(
        "boot.masks",
        m.possible.test(N2) && m.has_memory == NodeMask::range(0, 2) && !m.online.test(N2),
        format!(
            "possible={} online={} has_memory={} has_normal_memory={}",
            m.possible, m.online, m.has_memory, m.has_normal_memory
        ),
    );
    // The default-allocator programs start now, before any DIMM is added; they take part in the
    // first cycle.
    let mut kids = children::start_all(r);

    let d = domain_from_sysfs(DomainConfig::default()).expect("slab domain over sysfs");
    let topo = d.topology();
    r.check(
        "boot.topology",
        topo.nodes().test(N2)
            && topo.node_cpus(N2).is_empty()
            && topo.cpu_node(0) == Some(NodeId::new(0))
            && topo.cpu_node(1) == Some(NodeId::new(1)),
        format!(
            "nodes={} cpu0->{:?} cpu1->{:?} node2 cpus={}",
            topo.nodes(),
            topo.cpu_node(0),
            topo.cpu_node(1),
            topo.node_cpus(N2).weight()
        ),
    );
    hmat::at_boot(r);
    let h = follow_hotplug(&d).expect("follow the kernel");
    let st = h.status();
    r.check(
        "boot.follower",
        st.running && st.in_sync() && st.unknown.is_empty(),
        format!(
            "domain has_memory={} kernel={:?}",
            st.domain.has_memory,
            st.kernel.map(|k| k.has_memory.to_string())
        ),
    );

    let gs = groups(&d);
    let inv = d.check_invariants();
    r.check(
        "boot.every_cache",
        inv.ok() && part_states(&gs, N2).iter().all(|(_, s)| s.is_none()),
        format!("{} caches, none with a node 2 part", inv.caches),
    );
    r.check(
        "boot.mbind_node2_refused",
        PageSource::new().map(1 << 20, 0, Some(N2)) == Err(MapError::NodeGone),
        "memoryless node 2: NodeGone",
    );
    // Placement on the boot nodes.
    for nid in [NodeId::new(0), NodeId::new(1)] {
        let mut bs = placement_round(r, &d, &gs, nid, &format!("boot.node{}", nid.0));
        for b in bs.iter_mut() {
            let n = b.objs.len();
            let ok = b.intact() == n && b.free_all(&d);
            r.check(&format!("boot.node{}.free.{}", nid.0, b.group.name), ok, n);
        }
    }

    let mut objects_checked = 0usize;
    for cycle in 1..=cycles {
        let label = format!("c{cycle}");
        let before = part_states(&gs, N2);
        if cycle == 1 {
            children::wait_all(r, &mut kids, "started", Duration::from_secs(60));
        }
        line(format!("READY add {cycle}"));
        let Some((st, took)) = wait_node2(&h, true) else {
            r.check(&format!("{label}.online_seen"), false, "timed out");
            return;
        };
        line(format!("SEEN online {cycle}"));
        let mut allowed = NodeMask::new();
        let mut mode = 0;
        let ma = hotslab_numa::policy::get_mempolicy(
            &mut mode,
            Some(&mut allowed),
            std::ptr::null(),
            hotslab_numa::policy::MPOL_F_MEMS_ALLOWED,
        );
        let probe = PageSource::new().map(1 << 20, 0, Some(N2));
        r.check(
            &format!("{label}.node2_bindable_when_online"),
            ma.is_ok() && allowed.test(N2) && probe.is_ok(),
            format!(
                "mems_allowed={allowed} ({ma:?}), mbind probe {:?}",
                probe.map(|s| s.len)
            ),
        );
        r.value(&format!("{label}.online_wait_ms"), took.as_millis());
        let k = st.kernel.unwrap_or_default();
        r.check(
            &format!("{label}.kernel_masks_after_add"),
            k.has_memory.test(N2) && !k.has_normal_memory.test(N2),
            format!(
                "online={} has_memory={} has_normal_memory={} (movable only)",
                k.online, k.has_memory, k.has_normal_memory
            ),
        );
        r.value(
            &format!("{label}.uevents"),
            format!(
                "{} relevant of {} messages, {} scans, {} overflows",
                st.stats.relevant, st.stats.messages, st.stats.scans, st.stats.overflows
            ),
        );
        let states = part_states(&gs, N2);
        let inv = d.check_invariants();
        r.check(
            &format!("{label}.node2_live_in_every_cache"),
            inv.ok() && states.iter().all(|(_, s)| *s == Some(PartState::Live)),
            format!(
                "{} caches checked (I1), before={:?} after={:?}",
                inv.caches,
                before.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
                states.iter().map(|(_, s)| *s).collect::<Vec<_>>()
            ),
        );
        if cycle == 1 {
            // Node 2's HMAT figures exist once it has memory (the kernel registers them at the
            // first online only, so cycle 2 would see none).
            hmat::after_add(r, &label);
            children::send_added(&mut kids);
        }

        let mut bs = placement_round(r, &d, &gs, N2, &label);
        let mut survivors = 0;
        for b in bs.iter_mut() {
            let ok = b.free_half(&d);
            survivors += b.objs.len();
            r.check(
                &format!("{label}.free_half.{}", b.group.name),
                ok,
                b.objs.len(),
            );
        }
        r.value(&format!("{label}.survivors"), survivors);
        if cycle == 1 {
            children::wait_all(r, &mut kids, "armed", Duration::from_secs(180));
            children::run_numactl(r);
        }

        line(format!("READY remove {cycle}"));
        let Some((st, took)) = wait_node2(&h, false) else {
            r.check(&format!("{label}.offline_seen"), false, "timed out");
            return;
        };
        line(format!("SEEN offline {cycle}"));
        if cycle == 1 {
            children::send_all(&mut kids, "removed");
        }
        r.value(&format!("{label}.offline_wait_ms"), took.as_millis());
        let k = st.kernel.unwrap_or_default();
        r.check(
            &format!("{label}.kernel_masks_after_remove"),
            !k.has_memory.test(N2),
            format!("online={} has_memory={}", k.online, k.has_memory),
        );
        let states = part_states(&gs, N2);
        let inv = d.check_invariants();
        r.check(
            &format!("{label}.node2_draining"),
            inv.ok() && states.iter().all(|(_, s)| *s == Some(PartState::Draining)),
            format!(
                "{} caches with no live part on node 2 (I1); with survivors: {:?}",
                inv.caches,
                states.iter().map(|(_, s)| *s).collect::<Vec<_>>()
            ),
        );
        // No object lost: every survivor still holds its data, now on other nodes.
        let mut intact = 0;
        let mut moved = Placement::default();
        for b in &bs {
            let n = b.intact();
            intact += n;
            let p = b.placement();
            r.check(
                &format!("{label}.survivors_intact.{}", b.group.name),
                n == b.objs.len(),
                format!("{n}/{} objects intact", b.objs.len()),
            );
            r.check(
                &format!("{label}.survivors_migrated.{}", b.group.name),
                p.on(N2) == 0 && p.errors == 0,
                p.describe(),
            );
            moved.pages += p.pages;
            moved.not_present += p.not_present;
            for (a, c) in moved.per_node.iter_mut().zip(p.per_node) {
                *a += c;
            }
        }
        objects_checked += intact;
        r.value(
            &format!("{label}.survivors_checked"),
            format!(
                "{intact}/{survivors} intact, pages now {}",
                moved.describe()
            ),
        );
        r.check(
            &format!("{label}.mbind_node2_gone"),
            PageSource::new().map(1 << 20, 0, Some(N2)) == Err(MapError::NodeGone),
            "mbind to the removed node: NodeGone",
        );
        // New allocations for node 2 fall back by distance, to memory that exists.
        let mut fb = Vec::new();
        for g in &gs {
            let b = g.batch(&d, N2);
            let p = b.placement();
            let logical_ok = b.logical_on(N2).is_none_or(|k| k == 0);
            r.check(
                &format!("{label}.fallback.{}", g.name),
                b.objs.len() == g.count && logical_ok && p.on(N2) == 0 && p.present() > 0,
                format!("{}/{} objects, {}", b.objs.len(), g.count, p.describe()),
            );
            fb.push(b);
        }
        for mut b in fb {
            b.free_all(&d);
        }
        // Freeing the survivors retires the draining parts.
        for b in bs.iter_mut() {
            b.free_all(&d);
        }
        d.shrink_all();
        let states = part_states(&gs, N2);
        r.check(
            &format!("{label}.node2_retired_when_empty"),
            states.iter().all(|(_, s)| *s == Some(PartState::Retired)),
            format!("{:?}", states.iter().map(|(_, s)| *s).collect::<Vec<_>>()),
        );
        let inv = d.check_invariants();
        r.check(
            &format!("{label}.invariants"),
            inv.ok() && d.violations.total() == 0,
            format!(
                "{} caches, missing={:?} stray={:?} violations={}",
                inv.caches,
                inv.missing,
                inv.stray,
                d.violations.total()
            ),
        );
        for k in kids.drain(..) {
            k.finish(r);
        }
    }
    r.value("objects_checked", objects_checked);
    let st = h.stop();
    r.check(
        "follower.final",
        st.stats.onlined == u64::from(cycles)
            && st.stats.offlined == u64::from(cycles)
            && st.stats.failed == 0,
        format!("{:?}", st.stats),
    );
}

fn main() {
    let mut r = Reporter::default();
    let t = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&mut r)));
    if outcome.is_err() {
        r.check("guest.no_panic", false, "the guest program panicked");
    }
    r.value("guest_run_ms", t.elapsed().as_millis());
    r.value("checks", format!("{} ({} failed)", r.checks, r.failed));
    line(format!(
        "DONE {}",
        if r.failed == 0 && r.checks > 0 {
            "pass"
        } else {
            "fail"
        }
    ));
    std::process::exit(if r.failed == 0 { 0 } else { 1 });
}
