//! Fuzz target `global_alloc`: `SlabAlloc` is the global allocator and the input drives std
//! collections (Vec, String, HashMap, BTreeMap, boxes, over-aligned values) with debug mode
//! switched on and off; each collection is compared with a model built the other way (a BTreeMap
//! for the HashMap, sorted pairs for the BTreeMap, a byte log for the Vec and String), so memory
//! handed out twice or damaged shows as a mismatch. Every allocation must be hotslab's (I4).
#![no_main]

use std::collections::{BTreeMap, HashMap};

use hotslab::{DebugFlags, SlabAlloc};
use hotslab_fuzz::Input;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static A: SlabAlloc = SlabAlloc::new();

#[repr(align(256))]
#[derive(Clone, Copy, PartialEq, Debug)]
struct Wide([u64; 4]);

fn ours<T>(p: *const T) {
    assert!(
        hotslab::usable_size(p as *mut u8).is_some(),
        "allocation not served by hotslab"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut inp = Input::new(data);
    let mut bytes: Vec<u8> = Vec::new();
    let mut bytes_model: Vec<u8> = Vec::new();
    let mut text = String::new();
    let mut text_len = 0usize;
    let mut text_sum = 0u64;
    let mut map: HashMap<u32, String> = HashMap::new();
    let mut map_model: BTreeMap<u32, String> = BTreeMap::new();
    let mut tree: BTreeMap<u16, Vec<u32>> = BTreeMap::new();
    let mut tree_model: Vec<(u16, Vec<u32>)> = Vec::new();
    let mut boxes: Vec<Box<[u8]>> = Vec::new();
    let mut wides: Vec<Box<Wide>> = Vec::new();
    while !inp.is_empty() {
        match inp.u8() % 14 {
            0 => {
                let b = inp.u8();
                bytes.push(b);
                bytes_model.insert(bytes_model.len(), b);
            }
            1 => {
                let n = inp.u16() as usize % 5000;
                let b = inp.u8();
                bytes.extend(std::iter::repeat_n(b, n));
                bytes_model.resize(bytes_model.len() + n, b);
            }
            2 => {
                let n = inp.below(bytes.len() + 1);
                bytes.truncate(n);
                bytes_model.truncate(n);
                if inp.u8() & 1 == 1 {
                    bytes.shrink_to_fit();
                }
            }
            3 => {
                let extra = (inp.u16() as usize) << 4; // up to 1 MiB: the large tier
                bytes.reserve(extra);
                if bytes.capacity() > 0 {
                    ours(bytes.as_ptr());
                }
            }
            4 => {
                let k = inp.u16() as u32 % 512;
                let v = format!("{k}:{}", "x".repeat(inp.u8() as usize));
                assert_eq!(map.insert(k, v.clone()), map_model.insert(k, v));
            }
            5 => {
                let k = inp.u16() as u32 % 512;
                assert_eq!(map.remove(&k), map_model.remove(&k));
            }
            6 => {
                if inp.u8() % 8 == 0 {
                    map.clear();
                    map_model.clear();
                }
                map.shrink_to_fit();
            }
            7 => {
                let k = inp.u16() % 300;
                let v: Vec<u32> = (0..inp.u8() as u32).map(|i| i ^ k as u32).collect();
                tree.insert(k, v.clone());
                match tree_model.binary_search_by_key(&k, |e| e.0) {
                    Ok(i) => tree_model[i].1 = v,
                    Err(i) => tree_model.insert(i, (k, v)),
                }
            }
            8 => {
                let k = inp.u16() % 300;
                let got = tree.remove(&k);
                let want = match tree_model.binary_search_by_key(&k, |e| e.0) {
                    Ok(i) => Some(tree_model.remove(i).1),
                    Err(_) => None,
                };
                assert_eq!(got, want);
            }
            9 => {
                let s = inp.u8().to_string().repeat(1 + inp.u8() as usize % 64);
                text_sum += s.bytes().map(u64::from).sum::<u64>();
                text_len += s.len();
                text.push_str(&s);
                let copy = text.clone();
                assert_eq!(copy, text);
            }
            10 => {
                let n = match inp.u8() % 3 {
                    0 => inp.u8() as usize,
                    1 => inp.u16() as usize,
                    _ => (inp.u16() as usize) << 5,
                };
                let b = inp.u8();
                let bx = vec![b; n].into_boxed_slice();
                if n > 0 {
                    ours(bx.as_ptr());
                }
                boxes.push(bx);
                if boxes.len() > 16 {
                    let gone = boxes.remove(inp.below(boxes.len()));
                    assert!(gone
                        .iter()
                        .all(|&x| x == gone.first().copied().unwrap_or(0)));
                }
            }
            11 => {
                let w = Box::new(Wide([inp.u16() as u64; 4]));
                assert_eq!(
                    &*w as *const Wide as usize % 256,
                    0,
                    "over-aligned box misaligned"
                );
                ours(&*w);
                wides.push(w);
                if wides.len() > 32 {
                    wides.swap_remove(0);
                }
            }
            12 => {
                let f = DebugFlags::from_bits(inp.u8() as u32 % 8);
                A.set_debug(f);
            }
            _ => {
                // Full comparison.
                assert_eq!(bytes, bytes_model);
                assert_eq!(map.len(), map_model.len());
                for (k, v) in &map_model {
                    assert_eq!(map.get(k), Some(v));
                }
                assert!(tree
                    .iter()
                    .map(|(k, v)| (*k, v.clone()))
                    .eq(tree_model.iter().cloned()));
            }
        }
    }
    assert_eq!(bytes, bytes_model);
    assert_eq!(text.len(), text_len);
    assert_eq!(text.bytes().map(u64::from).sum::<u64>(), text_sum);
    let sorted: BTreeMap<u32, String> = map.into_iter().collect();
    assert_eq!(sorted, map_model);
    assert!(tree.into_iter().eq(tree_model));
    for w in &wides {
        assert_eq!(w.0[0], w.0[3]);
    }
    A.set_debug(DebugFlags::NONE);
});
