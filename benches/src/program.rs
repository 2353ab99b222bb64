//! The whole-program workload: a std-heavy program (hash maps of strings, B-tree churn, a
//! two-thread pipeline, parallel sorting, growing buffers) that allocates only through the
//! `#[global_allocator]` of the bin that runs it. Each `workload-*` bin picks one allocator.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::Rng;

/// What one run measured.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Wall time of the workload.
    pub wall: Duration,
    /// Peak resident set size of the process, KiB (getrusage `ru_maxrss`).
    pub maxrss_kb: u64,
    /// A checksum of the results, independent of the allocator and of addresses.
    pub checksum: u64,
}

/// Peak RSS of this process in KiB.
pub fn peak_rss_kb() -> u64 {
    let mut ru = core::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full rusage into the buffer we own.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    if rc != 0 {
        return 0;
    }
    // SAFETY: getrusage succeeded, so the struct is initialised.
    unsafe { ru.assume_init() }.ru_maxrss.max(0) as u64
}

fn mix(acc: &mut u64, v: u64) {
    // Commutative on purpose: hash-map iteration order differs between runs.
    *acc = acc.wrapping_add(v.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (v >> 7));
}

fn phase_hashmap(scale: u64, acc: &mut u64) {
    let mut r = Rng::new(11);
    let mut m: HashMap<String, Vec<u32>> = HashMap::new();
    for i in 0..200_000 * scale {
        let key = format!("key-{:016x}-{i}", r.next_u64());
        let len = r.below(16);
        let v: Vec<u32> = (0..len as u32).map(|j| j ^ i as u32).collect();
        m.insert(key, v);
    }
    m.retain(|k, v| (k.len() + v.len()) % 3 != 0);
    for (k, v) in &m {
        mix(
            acc,
            k.len() as u64 + v.iter().map(|&x| x as u64).sum::<u64>(),
        );
    }
}

fn phase_btree(scale: u64, acc: &mut u64) {
    let mut r = Rng::new(12);
    let mut m: BTreeMap<u32, Box<[u8]>> = BTreeMap::new();
    for _ in 0..400_000 * scale {
        let k = r.below(50_000) as u32;
        if let Some(old) = m.remove(&k) {
            mix(acc, old.len() as u64 + old[0] as u64);
        } else {
            let len = r.range(8, 512);
            m.insert(k, vec![(k & 0xff) as u8; len].into_boxed_slice());
        }
    }
    mix(acc, m.len() as u64);
}

fn phase_pipeline(scale: u64, acc: &mut u64) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(1024);
    let n = 200_000 * scale;
    let consumer = std::thread::spawn(move || {
        let mut sum = 0u64;
        for v in rx {
            sum = sum.wrapping_add(v.len() as u64 + v[v.len() - 1] as u64);
        }
        sum
    });
    let mut r = Rng::new(13);
    for i in 0..n {
        let len = r.range(16, 4096);
        let mut v = Vec::with_capacity(len);
        v.resize(len, i as u8);
        if tx.send(v).is_err() {
            break;
        }
    }
    drop(tx);
    mix(acc, consumer.join().unwrap_or(0));
}

fn phase_sort(scale: u64, acc: &mut u64) {
    let sums: Vec<u64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2u64)
            .map(|t| {
                s.spawn(move || {
                    let mut r = Rng::new(14 + t);
                    let mut sum = 0u64;
                    for _ in 0..10 * scale {
                        let mut v: Vec<String> = (0..20_000)
                            .map(|i| format!("{:x}/{i}", r.next_u64() % 1_000_000))
                            .collect();
                        v.sort_unstable();
                        v.dedup_by(|a, b| a[..3] == b[..3]);
                        sum = sum.wrapping_add(v.len() as u64 + v[0].len() as u64);
                    }
                    sum
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    for s in sums {
        mix(acc, s);
    }
}

fn phase_grow(scale: u64, acc: &mut u64) {
    for round in 0..4 * scale {
        let mut v: Vec<u64> = Vec::new();
        for i in 0..1_000_000u64 {
            v.push(i ^ round);
        }
        let mut s = String::new();
        for i in 0..100_000u64 {
            let _ = write!(s, "{i},");
        }
        mix(acc, v[v.len() / 2] + s.len() as u64);
    }
}

/// Runs the whole workload at `scale` (1 = about a second with glibc on this machine).
pub fn run(scale: u64) -> Outcome {
    let scale = scale.max(1);
    let t0 = Instant::now();
    let mut acc = 0u64;
    phase_hashmap(scale, &mut acc);
    phase_btree(scale, &mut acc);
    phase_pipeline(scale, &mut acc);
    phase_sort(scale, &mut acc);
    phase_grow(scale, &mut acc);
    Outcome {
        wall: t0.elapsed(),
        maxrss_kb: peak_rss_kb(),
        checksum: acc,
    }
}

/// The line a workload bin prints, parsed back by the runner.
pub fn format_outcome(allocator: &str, o: &Outcome) -> String {
    format!(
        "workload allocator={allocator} wall_ms={:.3} maxrss_kb={} checksum={:016x}",
        o.wall.as_secs_f64() * 1e3,
        o.maxrss_kb,
        o.checksum
    )
}

/// Parses a line written by [`format_outcome`]: (allocator, wall ms, maxrss KiB, checksum).
pub fn parse_outcome(line: &str) -> Option<(String, f64, u64, u64)> {
    let mut it = line.trim().strip_prefix("workload ")?.split(' ');
    let alloc = it.next()?.strip_prefix("allocator=")?.to_string();
    let wall = it.next()?.strip_prefix("wall_ms=")?.parse().ok()?;
    let rss = it.next()?.strip_prefix("maxrss_kb=")?.parse().ok()?;
    let sum = u64::from_str_radix(it.next()?.strip_prefix("checksum=")?, 16).ok()?;
    Some((alloc, wall, rss, sum))
}

/// The body of every `workload-*` bin: `workload-X [--scale N]`.
pub fn main_for(allocator: &str) -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let scale = args
        .iter()
        .position(|a| a == "--scale")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let o = run(scale);
    println!("{}", format_outcome(allocator, &o));
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_line_round_trips() {
        let o = Outcome {
            wall: Duration::from_micros(1500),
            maxrss_kb: 4242,
            checksum: 0xdead_beef,
        };
        let line = format_outcome("mimalloc", &o);
        assert_eq!(
            parse_outcome(&line),
            Some(("mimalloc".to_string(), 1.5, 4242, 0xdead_beef))
        );
        assert_eq!(parse_outcome("garbage"), None);
    }

    #[test]
    fn checksum_is_deterministic_and_rss_is_reported() {
        let mut a = 0;
        let mut b = 0;
        phase_btree(1, &mut a);
        phase_btree(1, &mut b);
        assert_eq!(a, b);
        let mut h1 = 0;
        let mut h2 = 0;
        phase_hashmap(1, &mut h1);
        phase_hashmap(1, &mut h2);
        assert_eq!(h1, h2, "hash-map phase must not depend on iteration order");
        assert!(peak_rss_kb() > 1000);
    }
}
