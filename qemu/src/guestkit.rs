//! What the guest programs share (`hotslab-guest` and `hotslab-guest-alloc`): the `HOTSLAB` check
//! and value lines, page placement counted with `move_pages(2)`, the fill/verify patterns that prove
//! an object kept its data, and the stage lines a child program uses to tell the guest driver where
//! it is. Runs inside the guest (musl, static); plain std and the numa crate's syscalls.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::io::BufRead;
use std::ptr::NonNull;

use hotslab_numa::{page_size, NodeId, NodeMask};

/// The placement bar: share of a group's present pages on the node it was meant for.
pub const PLACEMENT_MIN_PCT: f64 = 99.0;

/// Counts and prints `HOTSLAB CHECK` / `HOTSLAB VALUE` lines.
#[derive(Debug, Default)]
pub struct Reporter {
    /// Checks reported.
    pub checks: u32,
    /// Checks that failed.
    pub failed: u32,
}

impl Reporter {
    /// Prints a check (`name` must not contain spaces) and counts it; returns `ok`.
    pub fn check(&mut self, name: &str, ok: bool, detail: impl Display) -> bool {
        self.checks += 1;
        if !ok {
            self.failed += 1;
        }
        println!(
            "HOTSLAB CHECK {} {name} {detail}",
            if ok { "ok" } else { "FAIL" }
        );
        ok
    }

    /// Prints a value.
    pub fn value(&self, key: &str, value: impl Display) {
        println!("HOTSLAB VALUE {key} {value}");
    }
}

/// Prints a protocol line (`HOTSLAB <s>`).
pub fn line(s: impl Display) {
    println!("HOTSLAB {s}");
}

/// The line a child program prints when it reaches `stage` (the guest driver waits for these;
/// the host ignores them).
pub fn stage(who: &str, stage: &str) {
    println!("HOTSLAB STAGE {who} {stage}");
}

/// Parses a stage line: `(who, stage)`.
pub fn parse_stage(line: &str) -> Option<(&str, &str)> {
    let rest = &line[line.find("HOTSLAB STAGE ")? + "HOTSLAB STAGE ".len()..];
    let mut w = rest.split_whitespace();
    Some((w.next()?, w.next()?))
}

/// Parses a check line: `Some(passed)`.
pub fn parse_check(line: &str) -> Option<bool> {
    let rest = &line[line.find("HOTSLAB CHECK ")? + "HOTSLAB CHECK ".len()..];
    match rest.split_whitespace().next()? {
        "ok" => Some(true),
        "FAIL" => Some(false),
        _ => None,
    }
}

/// Reads the next command word from stdin (the guest driver's pipe); `None` at end of input.
pub fn next_command(input: &mut impl BufRead) -> Option<String> {
    let mut s = String::new();
    loop {
        s.clear();
        if input.read_line(&mut s).ok()? == 0 {
            return None;
        }
        let w = s.trim();
        if !w.is_empty() {
            return Some(w.to_string());
        }
    }
}

/// A `key=value` word of the kernel command line.
pub fn cmdline_value(key: &str) -> Option<String> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").ok()?;
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
}

/// A node mask read from `/sys/devices/system/node/<file>` (`has_memory`, `online`, ...).
pub fn sysfs_nodes(file: &str) -> Option<NodeMask> {
    let s = std::fs::read(format!("/sys/devices/system/node/{file}")).ok()?;
    NodeMask::parse_list(&s).ok()
}

// ---- placement -------------------------------------------------------------------------------

/// Where the pages of a set of ranges live (each page counted once), from `move_pages(2)` with no
/// target nodes (a query).
#[derive(Default, Debug, Clone)]
pub struct Placement {
    /// Pages asked about.
    pub pages: usize,
    /// Pages not present (never touched, or swapped).
    pub not_present: usize,
    /// Pages the kernel reported an error for.
    pub errors: usize,
    /// Present pages per node.
    pub per_node: [usize; 8],
}

impl Placement {
    /// The placement of every page touched by the `(address, length)` ranges.
    pub fn of(ranges: impl IntoIterator<Item = (usize, usize)>) -> Placement {
        let ps = page_size();
        let mut set = BTreeSet::new();
        for (p, len) in ranges {
            let mut a = p & !(ps - 1);
            while a < p + len {
                set.insert(a);
                a += ps;
            }
        }
        let mut out = Placement::default();
        let pages: Vec<usize> = set.into_iter().collect();
        let mut i = 0;
        let mut status = vec![0i32; 512];
        while i < pages.len() {
            // A run of consecutive pages, at most 512.
            let mut j = i + 1;
            while j < pages.len() && j - i < status.len() && pages[j] == pages[j - 1] + ps {
                j += 1;
            }
            let k = j - i;
            match hotslab_numa::placement(pages[i] as *const u8, k * ps, &mut status[..k]) {
                Ok(n) => {
                    for &s in &status[..n] {
                        out.add(s);
                    }
                }
                Err(_) => out.errors += k,
            }
            i = j;
        }
        out
    }

    /// Counts one page status (a node, or a negative errno).
    pub fn add(&mut self, s: i32) {
        self.pages += 1;
        if s >= 0 && (s as usize) < self.per_node.len() {
            self.per_node[s as usize] += 1;
        } else if s == -libc::ENOENT {
            self.not_present += 1;
        } else {
            self.errors += 1;
        }
    }

    /// Adds another placement's counts to this one.
    pub fn merge(&mut self, o: &Placement) {
        self.pages += o.pages;
        self.not_present += o.not_present;
        self.errors += o.errors;
        for (a, c) in self.per_node.iter_mut().zip(o.per_node) {
            *a += c;
        }
    }

    /// Present pages.
    pub fn present(&self) -> usize {
        self.per_node.iter().sum()
    }

    /// Present pages on `nid`.
    pub fn on(&self, nid: NodeId) -> usize {
        self.per_node.get(nid.index()).copied().unwrap_or(0)
    }

    /// Share of the present pages on `nid`, in percent (0 when none is present).
    pub fn pct_on(&self, nid: NodeId) -> f64 {
        if self.present() == 0 {
            return 0.0;
        }
        100.0 * self.on(nid) as f64 / self.present() as f64
    }

    /// `pages=.. present=.. [n0=.. n1=..] absent=.. errors=..`.
    pub fn describe(&self) -> String {
        let nodes: Vec<String> = self
            .per_node
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(n, c)| format!("n{n}={c}"))
            .collect();
        format!(
            "pages={} present={} [{}] absent={} errors={}",
            self.pages,
            self.present(),
            nodes.join(" "),
            self.not_present,
            self.errors
        )
    }
}

// ---- patterns --------------------------------------------------------------------------------

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Word `w` of object `idx` of group `tag`.
pub fn word(tag: u64, idx: u64, w: u64) -> u64 {
    splitmix(tag << 44 ^ idx << 20 ^ w)
}

/// Fills the first `len / 8` words of an object with its pattern.
///
/// # Safety
/// `p` is a live allocation of at least `len` bytes, 8-byte aligned, owned by the caller.
pub unsafe fn fill(p: NonNull<u8>, len: usize, tag: u64, idx: u64) {
    let w = p.as_ptr().cast::<u64>();
    for i in 0..len / 8 {
        // SAFETY: i * 8 + 8 <= len, inside the caller's allocation; aligned (contract).
        unsafe { w.add(i).write(word(tag, idx, i as u64)) };
    }
}

/// Whether the object still holds the pattern [`fill`] wrote.
///
/// # Safety
/// As for [`fill`].
pub unsafe fn verify(p: NonNull<u8>, len: usize, tag: u64, idx: u64) -> bool {
    let w = p.as_ptr().cast::<u64>();
    // SAFETY: as in fill.
    (0..len / 8).all(|i| unsafe { w.add(i).read() } == word(tag, idx, i as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_and_check_lines_parse_after_noise() {
        assert_eq!(
            parse_stage("[ 1.0] x HOTSLAB STAGE SlabAlloc armed"),
            Some(("SlabAlloc", "armed"))
        );
        assert_eq!(parse_stage("HOTSLAB STAGE SlabAlloc"), None);
        assert_eq!(parse_check("HOTSLAB CHECK ok a.b 1 2"), Some(true));
        assert_eq!(parse_check("HOTSLAB CHECK FAIL a.b"), Some(false));
        assert_eq!(parse_check("HOTSLAB CHECK maybe a"), None);
        assert_eq!(parse_check("HOTSLAB VALUE a 1"), None);
    }

    #[test]
    fn placement_counts_statuses() {
        let mut p = Placement::default();
        for s in [0, 0, 1, 2, -libc::ENOENT, -libc::EFAULT] {
            p.add(s);
        }
        assert_eq!(p.present(), 4);
        assert_eq!(p.on(NodeId::new(0)), 2);
        assert_eq!(p.pct_on(NodeId::new(2)), 25.0);
        assert_eq!((p.not_present, p.errors), (1, 1));
        let mut q = Placement::default();
        q.merge(&p);
        q.merge(&p);
        assert_eq!(q.present(), 8);
        assert!(q.describe().contains("n1=2"));
    }
}
