//! PageSource against the real kernel: spans bound with mbind(MPOL_PREFERRED) land on the intended
//! real node (checked page by page with move_pages, and the policy with get_mempolicy), untouched
//! pages report -ENOENT, bad nodes give NodeGone without leaking, and huge alignments work.
#![cfg(not(miri))]

use hotslab_numa::policy::{self, MPOL_F_ADDR, MPOL_PREFERRED};
use hotslab_numa::sysfs::{read_node_mask, NodeState};
use hotslab_numa::{
    page_size, placement, placement_summary, MapError, NodeId, NodeMask, PageSource, Topology,
};

fn memory_nodes() -> NodeMask {
    read_node_mask(NodeState::HasMemory).unwrap()
}

fn touch(ptr: *mut u8, len: usize, step: usize) {
    let mut off = 0;
    while off < len {
        // SAFETY: callers pass a span they mapped and own.
        unsafe { ptr.add(off).write_volatile(0x5a) };
        off += step;
    }
}

#[test]
fn touched_pages_live_on_the_intended_node() {
    let src = PageSource::new();
    let page = page_size();
    for node in memory_nodes().iter() {
        let span = src.map(256 * page, 0, Some(node)).unwrap();
        assert_eq!(
            src.unbound_maps(),
            0,
            "mbind must really be applied on this machine"
        );
        // The kernel records our policy for the range.
        let mut mode = -1;
        let mut mask = NodeMask::new();
        policy::get_mempolicy(
            &mut mode,
            Some(&mut mask),
            span.as_ptr().cast(),
            MPOL_F_ADDR,
        )
        .unwrap();
        assert_eq!(mode, MPOL_PREFERRED);
        assert_eq!(mask, NodeMask::single(node));

        touch(span.as_ptr(), span.len, page);
        let mut status = vec![i32::MIN; 300];
        let n = placement(span.as_ptr(), span.len, &mut status).unwrap();
        assert_eq!(n, 256);
        assert!(
            status[..n].iter().all(|&s| s == node.0 as i32),
            "{node}: {:?}",
            &status[..n]
        );
        assert!(
            status[n..].iter().all(|&s| s == i32::MIN),
            "nothing written past the pages"
        );
        let sum = src.placement_summary(span.as_ptr(), span.len).unwrap();
        assert_eq!(sum.pages(), 256);
        assert_eq!(sum.on_node(node), 256);
        assert_eq!(sum.nodes(), NodeMask::single(node));
        // get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR) agrees with move_pages.
        assert_eq!(policy::node_of_address(span.as_ptr()), Ok(node));
        // SAFETY: the span is ours and unused from here on.
        unsafe { src.unmap(span) };
    }
    assert_eq!(src.mapped_bytes(), 0);
}

#[test]
fn simulated_nodes_map_to_real_node() {
    let topo = Topology::simulated(4).unwrap();
    let src = PageSource::new();
    let page = page_size();
    let mut spans = Vec::new();
    for v in topo.nodes().iter() {
        let real = topo.real_node(v);
        let span = src.map(64 * page, 64 * page, Some(real)).unwrap();
        touch(span.as_ptr(), span.len, page);
        spans.push((real, span));
    }
    assert_eq!(src.mapped_bytes(), 4 * 64 * page);
    for (real, span) in spans {
        let sum = placement_summary(span.as_ptr(), span.len).unwrap();
        assert_eq!(sum.on_node(real), 64, "{sum:?}");
        assert_eq!(sum.present(), 64);
        // SAFETY: the span is ours and unused from here on.
        unsafe { src.unmap(span) };
    }
    assert_eq!(src.mapped_bytes(), 0);
    assert_eq!(src.maps(), 4);
    assert_eq!(src.unmaps(), 4);
}

#[test]
fn untouched_and_decommitted_pages_are_not_present() {
    let src = PageSource::new();
    let page = page_size();
    let node = memory_nodes().first().unwrap();
    let span = src.map(8 * page, 0, Some(node)).unwrap();
    // Touch even pages only.
    for i in (0..8).step_by(2) {
        touch(span.as_ptr().wrapping_add(i * page), 1, 1);
    }
    let mut status = [0i32; 8];
    assert_eq!(placement(span.as_ptr(), span.len, &mut status), Ok(8));
    for (i, &s) in status.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(s, node.0 as i32, "page {i}");
        } else {
            assert_eq!(s, -libc::ENOENT, "page {i}");
        }
    }
    // A shorter output array queries only that many pages.
    let mut three = [0i32; 3];
    assert_eq!(placement(span.as_ptr(), span.len, &mut three), Ok(3));
    assert_eq!(three, [node.0 as i32, -libc::ENOENT, node.0 as i32]);
    // An unaligned start counts from the page containing it; length 0 is zero pages.
    assert_eq!(
        placement(span.as_ptr().wrapping_add(page + 5), page, &mut status),
        Ok(2)
    );
    assert_eq!(placement(span.as_ptr(), 0, &mut status), Ok(0));

    // Decommit gives the pages back: they read as not present, and refault on the node.
    // SAFETY: the span is ours and page aligned; its contents may be lost.
    assert!(unsafe { src.decommit(span.ptr, span.len) });
    let sum = placement_summary(span.as_ptr(), span.len).unwrap();
    assert_eq!(sum.not_present(), 8);
    assert_eq!(sum.present(), 0);
    touch(span.as_ptr(), span.len, page);
    assert_eq!(
        placement_summary(span.as_ptr(), span.len)
            .unwrap()
            .on_node(node),
        8
    );
    // SAFETY: the span is ours and unused from here on.
    unsafe { src.unmap(span) };
    // After unmap the kernel reports EFAULT for every page.
    let sum = placement_summary(span.as_ptr(), span.len).unwrap();
    assert_eq!(sum.errors(), 8);
}

#[test]
fn missing_nodes_are_node_gone_without_leaks() {
    let src = PageSource::new();
    let keep = src.map(page_size(), 0, None).unwrap();
    let before = src.mapped_bytes();
    let mem = memory_nodes();
    // A node id far beyond any real node, and the first id without memory.
    let absent = (0..1024u16).map(NodeId).find(|n| !mem.test(*n)).unwrap();
    for bad in [NodeId(1000), absent, NodeId(1023)] {
        if mem.test(bad) {
            continue;
        }
        for align in [0, 2 << 20] {
            assert_eq!(
                src.map(1 << 20, align, Some(bad)),
                Err(MapError::NodeGone),
                "node {bad}"
            );
            assert_eq!(src.mapped_bytes(), before);
        }
    }
    assert_eq!(src.maps(), 1);
    // A real node still works afterwards.
    let ok = src.map(page_size(), 0, mem.first()).unwrap();
    // SAFETY: both spans are ours and unused.
    unsafe {
        src.unmap(ok);
        src.unmap(keep);
    }
    assert_eq!(src.mapped_bytes(), 0);
}

#[test]
fn one_gib_alignment() {
    let src = PageSource::new();
    let page = page_size();
    let node = memory_nodes().first();
    for (len, align) in [
        (page, 1usize << 30),
        (4 << 20, 1 << 30),
        (3 * page, 512 << 20),
    ] {
        let span = src.map(len, align, node).unwrap();
        assert!(
            span.is_aligned_to(align),
            "{:p} not aligned to {align:#x}",
            span.ptr
        );
        assert_eq!(span.len, len);
        assert_eq!(src.mapped_bytes(), len);
        touch(span.as_ptr(), span.len, page);
        if let Some(n) = node {
            assert_eq!(
                placement_summary(span.as_ptr(), span.len)
                    .unwrap()
                    .on_node(n),
                len / page
            );
        }
        // The trimmed surroundings are really unmapped: move_pages says EFAULT just outside.
        let mut st = [0i32; 1];
        placement(span.as_ptr().wrapping_sub(page), 1, &mut st).unwrap();
        assert_eq!(st[0], -libc::EFAULT, "page before the span is still mapped");
        placement(span.end(), 1, &mut st).unwrap();
        assert_eq!(st[0], -libc::EFAULT, "page after the span is still mapped");
        // SAFETY: the span is ours and unused from here on.
        unsafe { src.unmap(span) };
    }
    assert_eq!(src.mapped_bytes(), 0);
}

#[test]
fn partial_unmap_of_a_span() {
    let src = PageSource::new();
    let page = page_size();
    let span = src.map(4 * page, 0, None).unwrap();
    let tail = hotslab_numa::Span::new(
        std::ptr::NonNull::new(span.as_ptr().wrapping_add(2 * page)).unwrap(),
        2 * page,
    );
    // SAFETY: the tail is a page-aligned part of our span, unused from here on.
    unsafe { src.unmap(tail) };
    assert_eq!(src.mapped_bytes(), 2 * page);
    let mut st = [0i32; 4];
    touch(span.as_ptr(), 2 * page, page);
    placement(span.as_ptr(), 4 * page, &mut st).unwrap();
    assert!(
        st[0] >= 0 && st[1] >= 0 && st[2] == -libc::EFAULT && st[3] == -libc::EFAULT,
        "{st:?}"
    );
    // SAFETY: the head is the rest of our span.
    unsafe { src.unmap(hotslab_numa::Span::new(span.ptr, 2 * page)) };
    assert_eq!(src.mapped_bytes(), 0);
}

#[test]
fn concurrent_maps_keep_exact_counts() {
    static SRC: PageSource = PageSource::new();
    let node = memory_nodes().first();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let page = page_size();
                let mut held = Vec::new();
                for i in 0..50 {
                    let s = SRC.map((1 + (i + t) % 4) * page, 0, node).unwrap();
                    touch(s.as_ptr(), s.len, page);
                    held.push(s);
                    if i % 3 == 0 {
                        let s = held.swap_remove(0);
                        // SAFETY: the span is ours and unused from here on.
                        unsafe { SRC.unmap(s) };
                    }
                }
                for s in held {
                    // SAFETY: as above.
                    unsafe { SRC.unmap(s) };
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(SRC.mapped_bytes(), 0);
    assert_eq!(SRC.maps(), 200);
    assert_eq!(SRC.unmaps(), 200);
}

#[test]
fn fault_injection_across_threads() {
    let src = PageSource::new();
    src.fail_after(10);
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| (0..10).map(|_| src.map(1, 0, None)).collect::<Vec<_>>()))
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let ok: Vec<_> = results.iter().filter_map(|r| r.ok()).collect();
    assert_eq!(ok.len(), 10, "exactly the budget succeeds");
    assert_eq!(
        results
            .iter()
            .filter(|r| **r == Err(MapError::NoMemory))
            .count(),
        30
    );
    assert_eq!(src.faults_injected(), 30);
    for s in ok {
        // SAFETY: the span is ours and unused.
        unsafe { src.unmap(s) };
    }
    assert_eq!(src.mapped_bytes(), 0);
}
