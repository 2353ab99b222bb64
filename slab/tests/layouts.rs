//! Every Layout std can produce, through `SlabAlloc` used directly (not as the global
//! allocator): zero size, alignments up to 1 MiB, sizes near isize::MAX, realloc in place and
//! moving, alloc_zeroed, and usable sizes.

use std::alloc::{GlobalAlloc, Layout};

use hotslab::SlabAlloc;

static A: SlabAlloc = SlabAlloc::new();

#[test]
fn sizes_and_alignments() {
    let mut live = Vec::new();
    for shift in 0..=20 {
        let align = 1usize << shift;
        for size in [
            0usize,
            1,
            7,
            8,
            24,
            100,
            4096,
            40_000,
            1 << 20,
            (1 << 20) + 3,
        ] {
            let l = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a valid layout (zero size is served with a unique block too).
            let p = unsafe { A.alloc(l) };
            assert!(!p.is_null(), "size {size} align {align}");
            assert_eq!(p as usize % align, 0, "size {size} align {align}");
            // SAFETY: p is valid for size bytes.
            unsafe { p.write_bytes(0xa5, size) };
            let usable = hotslab::usable_size(p).unwrap();
            assert!(usable >= size);
            live.push((p, l));
        }
    }
    for (p, l) in live {
        // SAFETY: p is live with layout l and filled with 0xa5.
        unsafe {
            assert!(std::slice::from_raw_parts(p, l.size())
                .iter()
                .all(|&b| b == 0xa5));
            A.dealloc(p, l);
        }
    }
}

#[test]
fn impossible_sizes_give_null() {
    for size in [
        isize::MAX as usize - 4095,
        (isize::MAX as usize) / 2,
        1usize << 62,
    ] {
        let l = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: valid layout; the allocator must refuse it.
        assert!(unsafe { A.alloc(l) }.is_null(), "size {size}");
    }
}

#[test]
fn zeroed_is_zero_even_on_reuse() {
    for size in [16usize, 200, 3000, 70_000] {
        let l = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: valid layout; dirty the block, free it, then ask for zeroed memory.
        unsafe {
            let p = A.alloc(l);
            p.write_bytes(0xff, size);
            A.dealloc(p, l);
            let q = A.alloc_zeroed(l);
            assert!(
                std::slice::from_raw_parts(q, size).iter().all(|&b| b == 0),
                "size {size}"
            );
            A.dealloc(q, l);
        }
    }
}

#[test]
fn realloc_keeps_contents() {
    let l = Layout::from_size_align(24, 8).unwrap();
    // SAFETY: standard alloc/realloc/dealloc sequence with matching layouts.
    unsafe {
        let mut p = A.alloc(l);
        let mut size = 24;
        for i in 0..24 {
            *p.add(i) = i as u8;
        }
        for new in [20usize, 100, 5000, 33_000, 300_000, 5 << 20, 1000, 10] {
            let q = A.realloc(p, Layout::from_size_align(size, 8).unwrap(), new);
            assert!(!q.is_null());
            for i in 0..size.min(new).min(24) {
                assert_eq!(*q.add(i), i as u8, "byte {i} after realloc {size}->{new}");
            }
            p = q;
            size = new;
        }
        // Shrinking within a class stays in place.
        let r = A.realloc(p, Layout::from_size_align(size, 8).unwrap(), 9);
        assert_eq!(r, p);
        A.dealloc(r, Layout::from_size_align(9, 8).unwrap());
    }
}

#[test]
fn aligned_realloc_keeps_alignment() {
    // SAFETY: matching layouts throughout.
    unsafe {
        let l = Layout::from_size_align(100, 4096).unwrap();
        let p = A.alloc(l);
        assert_eq!(p as usize % 4096, 0);
        p.write_bytes(7, 100);
        let q = A.realloc(p, l, 100_000);
        assert_eq!(q as usize % 4096, 0);
        assert!(std::slice::from_raw_parts(q, 100).iter().all(|&b| b == 7));
        A.dealloc(q, Layout::from_size_align(100_000, 4096).unwrap());
    }
}
