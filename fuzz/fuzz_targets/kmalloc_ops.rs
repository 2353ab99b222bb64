//! Fuzz target `kmalloc_ops`: arbitrary sequences of alloc / alloc_zeroed / realloc / free with
//! arbitrary layouts (zero size, alignments up to 1 MiB, sizes up to 2 MiB, node hints valid or
//! not) through a domain's kmalloc and through `SlabAlloc`'s `GlobalAlloc`, with debug mode
//! switched on and off, against a shadow model: every live block keeps its fill, no two live blocks
//! overlap, alignment holds, zeroed memory is zero, bad frees are typed errors.
#![no_main]

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use hotslab::numa::NodeId;
use hotslab::{DebugFlags, FreeError, SlabAlloc, SlabDomain};
use hotslab_fuzz::Input;
use libfuzzer_sys::fuzz_target;

static GA: SlabAlloc = SlabAlloc::new();

fn domain() -> &'static Arc<SlabDomain> {
    static D: OnceLock<Arc<SlabDomain>> = OnceLock::new();
    D.get_or_init(|| SlabDomain::simulated(2).expect("simulated topology"))
}

#[derive(Clone, Copy)]
struct Block {
    p: *mut u8,
    size: usize,
    align: usize,
    fill: u8,
    /// Came from `GlobalAlloc` (freed and resized with a `Layout`).
    global: bool,
}

/// Bytes checked at each end of a block (all of a small one).
const EDGE: usize = 512;

fn fill(b: &Block) {
    // SAFETY: the block is live and `size` bytes long.
    unsafe {
        if b.size <= 2 * EDGE {
            b.p.write_bytes(b.fill, b.size);
        } else {
            b.p.write_bytes(b.fill, EDGE);
            b.p.add(b.size - EDGE).write_bytes(b.fill, EDGE);
        }
    }
}

fn check(b: &Block, upto: usize) {
    let n = b.size.min(upto);
    // SAFETY: the block is live and at least `n` bytes long.
    let s = unsafe { std::slice::from_raw_parts(b.p, n) };
    let ok = if n <= 2 * EDGE {
        s.iter().all(|&x| x == b.fill)
    } else {
        s[..EDGE].iter().all(|&x| x == b.fill)
            && (b.size > upto || s[n - EDGE..].iter().all(|&x| x == b.fill))
    };
    assert!(
        ok,
        "block {:p} ({} bytes) lost its fill {:#x}",
        b.p, b.size, b.fill
    );
}

fn size_of(inp: &mut Input) -> usize {
    match inp.u8() % 6 {
        0 => 0,
        1 => inp.u8() as usize,
        2 => inp.u16() as usize % 4096,
        3 => inp.u16() as usize * 2,
        4 => (inp.u16() as usize) << 5,
        _ => 1 + inp.u8() as usize % 64,
    }
}

fn align_of(inp: &mut Input) -> usize {
    match inp.u8() % 4 {
        0 | 1 => 8,
        2 => 1 << (inp.u8() % 13),
        _ => 1 << (inp.u8() % 21),
    }
}

/// Live blocks by start address: (end, index into the block list).
struct Shadow {
    blocks: Vec<Block>,
    ranges: BTreeMap<usize, usize>,
}

impl Shadow {
    fn insert(&mut self, b: Block) {
        assert!(!b.p.is_null());
        assert_eq!(
            b.p as usize % b.align,
            0,
            "misaligned: {:p} align {}",
            b.p,
            b.align
        );
        let usable = hotslab::usable_size(b.p).expect("every block is hotslab's");
        assert!(usable >= b.size, "usable {usable} < size {}", b.size);
        let (start, end) = (b.p as usize, b.p as usize + b.size.max(1));
        if let Some((&s, &e)) = self.ranges.range(..end).next_back() {
            assert!(
                e <= start || s >= end,
                "overlap: [{start:#x},{end:#x}) and [{s:#x},{e:#x})"
            );
        }
        self.ranges.insert(start, end);
        fill(&b);
        self.blocks.push(b);
    }

    fn remove(&mut self, i: usize) -> Block {
        let b = self.blocks.swap_remove(i);
        self.ranges.remove(&(b.p as usize));
        b
    }
}

fuzz_target!(|data: &[u8]| {
    let d = domain();
    let mut inp = Input::new(data);
    let mut sh = Shadow {
        blocks: Vec::new(),
        ranges: BTreeMap::new(),
    };
    let mut fills = 1u8;
    while !inp.is_empty() {
        fills = fills.wrapping_add(1).max(1);
        match inp.u8() % 10 {
            // kmalloc with a node hint (possibly a node that does not exist).
            0 | 1 => {
                let (size, align) = (size_of(&mut inp), align_of(&mut inp));
                let node = match inp.u8() % 4 {
                    0 => None,
                    k => Some(NodeId::new((k as u16 - 1) * 3)), // 0, 3, 6: only 0 exists
                };
                if sh.blocks.len() >= 64 {
                    continue;
                }
                let p = d.kmalloc_layout(size, align, node);
                assert!(!p.is_null(), "kmalloc {size} align {align} failed");
                sh.insert(Block {
                    p,
                    size,
                    align,
                    fill: fills,
                    global: false,
                });
            }
            // GlobalAlloc alloc / alloc_zeroed.
            2 | 3 => {
                let (size, align) = (size_of(&mut inp).max(1), align_of(&mut inp));
                let zeroed = inp.u8() & 1 == 1;
                if sh.blocks.len() >= 64 {
                    continue;
                }
                let l = Layout::from_size_align(size, align).unwrap();
                // SAFETY: the layout has a non-zero size.
                let p = unsafe {
                    if zeroed {
                        GA.alloc_zeroed(l)
                    } else {
                        GA.alloc(l)
                    }
                };
                assert!(!p.is_null(), "GlobalAlloc {size} align {align} failed");
                if zeroed {
                    // SAFETY: p is a fresh block of `size` bytes.
                    let s = unsafe { std::slice::from_raw_parts(p, size) };
                    assert!(
                        s.iter().all(|&x| x == 0),
                        "alloc_zeroed gave non-zero bytes"
                    );
                }
                sh.insert(Block {
                    p,
                    size,
                    align,
                    fill: fills,
                    global: true,
                });
            }
            // realloc (GlobalAlloc for global blocks, krealloc for kmalloc ones).
            4 | 5 => {
                if sh.blocks.is_empty() {
                    continue;
                }
                let i = inp.below(sh.blocks.len());
                let new_size = size_of(&mut inp).max(1);
                let old = sh.remove(i);
                check(&old, usize::MAX);
                // SAFETY: old is live; its layout is the one it was allocated with.
                let q = unsafe {
                    if old.global {
                        GA.realloc(
                            old.p,
                            Layout::from_size_align(old.size, old.align).unwrap(),
                            new_size,
                        )
                    } else {
                        d.krealloc_layout(old.p, old.align, new_size)
                    }
                };
                assert!(!q.is_null(), "realloc to {new_size} failed");
                let moved = Block {
                    p: q,
                    size: new_size,
                    ..old
                };
                check(&moved, old.size.min(new_size).min(EDGE));
                sh.insert(Block {
                    fill: fills,
                    ..moved
                });
            }
            // free (GlobalAlloc dealloc or kfree), sometimes first a bad free that must be refused.
            6 | 7 => {
                if sh.blocks.is_empty() {
                    continue;
                }
                let i = inp.below(sh.blocks.len());
                let b = sh.remove(i);
                check(&b, usize::MAX);
                if b.size >= 16 && inp.u8() % 4 == 0 {
                    // SAFETY: an interior pointer is refused before anything is touched.
                    assert_eq!(
                        unsafe { d.kfree_checked(b.p.add(8)) },
                        Err(FreeError::Interior)
                    );
                }
                // SAFETY: b is live and not used afterwards.
                unsafe {
                    if b.global {
                        GA.dealloc(b.p, Layout::from_size_align(b.size, b.align).unwrap());
                    } else {
                        d.kfree_checked(b.p).unwrap();
                    }
                }
            }
            // Debug mode on or off for the kmalloc caches (new slabs only).
            8 => {
                let f = DebugFlags::from_bits(inp.u8() as u32 % 8);
                d.set_kmalloc_debug(f);
                GA.set_debug(f);
            }
            // A foreign pointer is refused; every live block keeps its fill.
            _ => {
                let local = 0u64;
                // SAFETY: only looked up in the page map.
                let r = unsafe { d.kfree_checked(&local as *const u64 as *mut u8) };
                assert_eq!(r, Err(FreeError::Foreign));
                for b in &sh.blocks {
                    check(b, usize::MAX);
                }
            }
        }
    }
    for b in std::mem::take(&mut sh.blocks) {
        check(&b, usize::MAX);
        // SAFETY: b is live and not used afterwards.
        unsafe {
            if b.global {
                GA.dealloc(b.p, Layout::from_size_align(b.size, b.align).unwrap());
            } else {
                d.kfree_checked(b.p).unwrap();
            }
        }
    }
    d.set_kmalloc_debug(DebugFlags::NONE);
    GA.set_debug(DebugFlags::NONE);
});
