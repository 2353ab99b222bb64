//! `hotslab-top-demo`: a program on hotslab (its `#[global_allocator]`) to look at with
//! `hotslab-top`, and the target of its tests.
//!
//! * `hotslab-top-demo ready [N]` allocates N (default 5000) objects of several sizes and N/5
//!   from a cache of its own (`demo-objects`, 200 bytes), prints its slabinfo table on stdout
//!   (`hotslab::print_slabinfo`), publishes a snapshot (`hotslab::publish::publish_now`), writes
//!   `ready` on stdout, and waits for end of input on stdin; then it exits normally. Nothing
//!   allocates between the table and `ready`, so the table and the snapshot agree.
//! * `hotslab-top-demo churn` allocates and frees in waves until stdin ends (or a line is
//!   entered); with more than one node (`HOTSLAB_NODES=4`) it offlines (forced) and onlines the
//!   last node every two seconds, so hotslab-top shows hotplug events.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hotslab::numa::NodeId;
use hotslab::{CacheConfig, SlabAlloc};

#[global_allocator]
static A: SlabAlloc = SlabAlloc::new();

fn say(s: &[u8]) {
    // SAFETY: writes our buffer to stdout (no allocation, unlike std's buffered stdout).
    unsafe { libc::write(1, s.as_ptr().cast(), s.len()) };
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("ready") => ready(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5000)),
        Some("churn") => churn(),
        _ => {
            eprintln!("usage: hotslab-top-demo ready [N] | churn");
            std::process::exit(2);
        }
    }
}

fn ready(n: usize) {
    let d = hotslab::default_domain().expect("default domain");
    let cache = d
        .create_cache(CacheConfig::new("demo-objects", 200))
        .expect("create cache");
    let mut objs = Vec::with_capacity(n / 5);
    for _ in 0..n / 5 {
        objs.push(cache.alloc().expect("cache alloc"));
    }
    let mut small: Vec<Box<[u8]>> = Vec::with_capacity(n);
    for i in 0..n {
        small.push(vec![i as u8; [8, 24, 64, 200, 900][i % 5]].into_boxed_slice());
    }
    // Free every third one: partial slabs.
    for (i, b) in small.iter_mut().enumerate() {
        if i % 3 == 0 {
            *b = Box::new([]);
        }
    }
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 64];
    assert!(hotslab::print_slabinfo(1), "print_slabinfo");
    assert!(hotslab::publish::publish_now(), "publish_now");
    say(b"ready\n");
    while matches!(stdin.read(&mut buf), Ok(k) if k > 0) {}
    std::hint::black_box(&small);
    for p in objs {
        cache.free(p).expect("free");
    }
}

fn churn() {
    static STOP: AtomicBool = AtomicBool::new(false);
    std::thread::spawn(|| {
        let mut b = [0u8; 1];
        let _ = std::io::stdin().read(&mut b);
        STOP.store(true, Ordering::Relaxed);
    });
    let d = hotslab::default_domain().expect("default domain");
    let nodes: Vec<NodeId> = d.topology().nodes().iter().collect();
    let last = *nodes.last().expect("a node");
    let mut wave: Vec<Vec<u8>> = Vec::new();
    let mut t = Instant::now();
    let mut online = true;
    let mut i = 0usize;
    while !STOP.load(Ordering::Relaxed) {
        for k in 0..2000 {
            wave.push(vec![k as u8; 16 << (k % 7)]);
        }
        if wave.len() > 60_000 {
            wave.truncate(i % 40_000);
        }
        i += 7919;
        if nodes.len() > 1 && t.elapsed() > Duration::from_secs(2) {
            let _ = if online {
                d.offline_node_forced(last)
            } else {
                d.online_node(last)
            };
            online = !online;
            t = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if !online {
        let _ = d.online_node(last);
    }
}
