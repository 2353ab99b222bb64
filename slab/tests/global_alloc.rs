//! hotslab as the global allocator of a whole test binary: std-heavy work (Vec, String,
//! HashMap, BTreeMap, Arc, channels, many threads) with every result checked, and the default
//! domain's statistics showing that hotslab served the traffic.

use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc, Arc, Mutex};

#[global_allocator]
static A: hotslab::SlabAlloc = hotslab::SlabAlloc::new();

fn served_allocs() -> u64 {
    let d = hotslab::default_domain().expect("default domain");
    d.slabinfo()
        .iter()
        .filter(|r| r.name.starts_with("kmalloc-"))
        .map(|r| r.allocs)
        .sum()
}

#[test]
fn collections_and_strings() {
    let before = served_allocs();
    let mut m: HashMap<String, Vec<u32>> = HashMap::new();
    for i in 0..20_000u32 {
        m.entry(format!("key-{}", i % 997)).or_default().push(i);
    }
    assert_eq!(m.len(), 997);
    let total: usize = m.values().map(Vec::len).sum();
    assert_eq!(total, 20_000);
    let mut b = BTreeMap::new();
    for (k, v) in &m {
        b.insert(v.iter().copied().sum::<u32>() as u64, k.clone());
    }
    assert_eq!(b.len(), 997);
    let s: String = (0..10_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    assert_eq!(s.len(), 10_000);
    assert_eq!(s.matches("xyz").count(), 10_000 / 26);
    let mut big: Vec<u64> = Vec::new();
    for i in 0..2_000_000u64 {
        big.push(i * 3);
    }
    assert_eq!(big.iter().sum::<u64>(), 3 * (2_000_000u64 * 1_999_999 / 2));
    big.truncate(10);
    big.shrink_to_fit();
    assert_eq!(big, (0..10).map(|i| i * 3).collect::<Vec<_>>());
    assert!(
        served_allocs() > before + 20_000,
        "hotslab served the traffic"
    );
}

#[test]
fn threads_arcs_and_channels() {
    let shared = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel::<Box<[u8]>>();
    let producers: Vec<_> = (0..8)
        .map(|t| {
            let tx = tx.clone();
            let shared = shared.clone();
            std::thread::spawn(move || {
                for i in 0..2000usize {
                    let len = 1 + (i * 37 + t) % 3000;
                    let v = vec![(t as u8) ^ (len as u8); len].into_boxed_slice();
                    tx.send(v).unwrap();
                }
                shared.lock().unwrap().push(t);
            })
        })
        .collect();
    drop(tx);
    let mut n = 0;
    for b in rx {
        let want = b[0];
        assert!(b.iter().all(|&x| x == want), "message intact");
        n += 1;
    }
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(n, 16_000);
    let mut done = shared.lock().unwrap().clone();
    done.sort();
    assert_eq!(done, (0..8).collect::<Vec<_>>());
}

#[test]
fn many_short_threads() {
    for round in 0..10 {
        let hs: Vec<_> = (0..100)
            .map(|i| {
                std::thread::spawn(move || {
                    (0..100)
                        .map(|j| format!("{round}-{i}-{j}"))
                        .collect::<Vec<_>>()
                        .len()
                })
            })
            .collect();
        assert_eq!(
            hs.into_iter().map(|h| h.join().unwrap()).sum::<usize>(),
            10_000
        );
    }
}

#[test]
fn realloc_grow_shrink_and_large() {
    let mut v: Vec<u8> = Vec::new();
    for i in 0..(8 << 20) {
        v.push(i as u8);
    }
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u8));
    v.truncate(100);
    v.shrink_to_fit();
    assert!(v.iter().enumerate().all(|(i, &x)| x == i as u8));
    let z = vec![0u64; 1 << 20];
    assert!(z.iter().all(|&x| x == 0));
}

#[test]
fn realloc_keeps_a_block_in_place_down_to_half_its_slot() {
    use std::alloc::{GlobalAlloc, Layout};
    // 1 KiB is a class size; halving to exactly 512 stays (at most half the slot is wasted, as
    // mimalloc's rule), one byte less moves to a smaller class. The contents survive both.
    let l = Layout::from_size_align(1024, 8).unwrap();
    // SAFETY: valid layouts; every block is written within its size and freed once.
    unsafe {
        let p = A.alloc(l);
        assert!(!p.is_null());
        p.write_bytes(0x5a, 1024);
        let q = A.realloc(p, l, 512);
        assert_eq!(q, p, "a halving to exactly half the slot stays in place");
        let r = A.realloc(q, Layout::from_size_align(512, 8).unwrap(), 511);
        assert_ne!(
            r, q,
            "below half the slot the block moves to a smaller class"
        );
        assert!((0..511).all(|i| *r.add(i) == 0x5a));
        A.dealloc(r, Layout::from_size_align(511, 8).unwrap());
    }
}
