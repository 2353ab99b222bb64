//! `hotslab-top-demo`: a program on hotslab (its `#[global_allocator]`) to look at with
//! `hotslab-top`, and the target of its tests.
//!
//! * `hotslab-top-demo ready [N] [hotplug]` allocates N (default 5000) objects of several sizes
//!   and N/5 from a cache of its own (`demo-objects`, 200 bytes) — with `hotplug`, first a
//!   forced offline and an online of the last node —, prints its slabinfo table on stdout
//!   (`hotslab::print_slabinfo`), publishes a snapshot (`hotslab::publish::publish_now`), writes
//!   `published=0|1` and `ready` on stdout, and waits for end of input on stdin; then it exits
//!   normally. Nothing allocates between the table and `ready`, so the table and the snapshot
//!   agree.
//! * `hotslab-top-demo fork` allocates, forks, and the child allocates, publishes, writes
//!   `child=<pid>` and `ready`; both wait for end of input (the parent then reaps the child).
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
        Some("ready") => ready(
            args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5000),
            args.get(3).is_some_and(|a| a == "hotplug"),
        ),
        Some("churn") => churn(),
        Some("fork") => fork(),
        _ => {
            eprintln!("usage: hotslab-top-demo ready [N] [hotplug] | churn | fork");
            std::process::exit(2);
        }
    }
}

fn wait_for_eof() {
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf), Ok(k) if k > 0) {}
}

fn fork() {
    let keep: Vec<Vec<u8>> = (0..1000).map(|i| vec![i as u8; 48]).collect();
    // SAFETY: the child only allocates (hotslab's fork handlers make that safe), writes and
    // exits normally.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let more: Vec<Vec<u8>> = (0..3000).map(|i| vec![i as u8; 100]).collect();
        let line = format!("child={}\n", std::process::id());
        let ok = hotslab::publish::publish_now();
        say(line.as_bytes());
        say(if ok {
            b"published=1\n"
        } else {
            b"published=0\n"
        });
        say(b"ready\n");
        wait_for_eof();
        std::hint::black_box((&keep, &more));
        return;
    }
    wait_for_eof();
    let mut st = 0;
    // SAFETY: reaps our child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    std::hint::black_box(&keep);
}

fn ready(n: usize, hotplug: bool) {
    let d = hotslab::default_domain().expect("default domain");
    if hotplug {
        let last = d.topology().nodes().iter().last().expect("a node");
        d.offline_node_forced(last).expect("offline");
        d.online_node(last).expect("online");
    }
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
    let stdin = std::io::stdin();
    drop(stdin.lock()); // std's stdin buffer is allocated here, before the table
    assert!(hotslab::print_slabinfo(1), "print_slabinfo");
    let ok = hotslab::publish::publish_now();
    say(if ok {
        b"published=1\n"
    } else {
        b"published=0\n"
    });
    say(b"ready\n");
    wait_for_eof();
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
