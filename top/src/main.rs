//! `hotslab-top`: slabtop for a process running hotslab (as its `#[global_allocator]` or as
//! `libhotslab.so` under `LD_PRELOAD`). It reads the statistics the process publishes in
//! `/dev/shm/hotslab.<pid>` (layout and consistency protocol: `hotslab::publish`) and shows
//! its caches — active and total objects, object size, slabs and memory per node and per
//! memory tier — and its hotplug events, refreshed every second in the terminal (plain ANSI
//! escapes). Keys: `q` quits; `a` active objects, `o` objects, `s` object size, `c` cache
//! size, `n` name choose the sort. `--once` prints one table and exits (for scripts).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use hotslab::publish::{self, CacheInfo, ReadError, Snapshot};

const USAGE: &str = "usage: hotslab-top [--once] [--sort a|o|s|c|n] PID
       hotslab-top --clean

Shows the slab caches of process PID, which runs hotslab (#[global_allocator] or
LD_PRELOAD=libhotslab.so) and publishes statistics in /dev/shm/hotslab.PID
(HOTSLAB_PUBLISH=0 turns that off), refreshed every second.

  --once        print one table and exit
  --clean       remove the stale /dev/shm/hotslab.* files of processes that died without
                their exit hooks (killed, aborted, or _exit in a fork child)
  --sort KEY    a: active objects, o: objects (default), s: object size,
                c: cache size, n: name
Keys while running: q quits, a/o/s/c/n change the sort.";

/// The sort order of the cache table.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sort {
    Active,
    Objects,
    Size,
    CacheSize,
    Name,
}

impl Sort {
    fn from_key(k: u8) -> Option<Sort> {
        Some(match k {
            b'a' => Sort::Active,
            b'o' => Sort::Objects,
            b's' => Sort::Size,
            b'c' => Sort::CacheSize,
            b'n' => Sort::Name,
            _ => return None,
        })
    }

    fn label(self) -> &'static str {
        match self {
            Sort::Active => "active objects",
            Sort::Objects => "objects",
            Sort::Size => "object size",
            Sort::CacheSize => "cache size",
            Sort::Name => "name",
        }
    }

    fn apply(self, caches: &mut [CacheInfo]) {
        caches.sort_by(|x, y| {
            let by = match self {
                Sort::Active => y.active_objs.cmp(&x.active_objs),
                Sort::Objects => y.num_objs.cmp(&x.num_objs),
                Sort::Size => y.objsize.cmp(&x.objsize),
                Sort::CacheSize => y.bytes().cmp(&x.bytes()),
                Sort::Name => std::cmp::Ordering::Equal,
            };
            by.then_with(|| x.name.cmp(&y.name))
        });
    }
}

struct Args {
    once: bool,
    sort: Sort,
    pid: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut once = false;
    let mut sort = Sort::Objects;
    let mut pid = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--once" => once = true,
            "--clean" => std::process::exit(clean()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--sort" | "-s" => {
                let k = it.next().ok_or("--sort needs a key")?;
                sort = match k.as_bytes() {
                    [c] => Sort::from_key(*c),
                    _ => None,
                }
                .ok_or_else(|| format!("unknown sort key {k:?} (a, o, s, c or n)"))?;
            }
            s if s.starts_with("--sort=") => {
                let k = &s[7..];
                sort = match k.as_bytes() {
                    [c] => Sort::from_key(*c),
                    _ => None,
                }
                .ok_or_else(|| format!("unknown sort key {k:?} (a, o, s, c or n)"))?;
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => {
                if pid.is_some() {
                    return Err("only one PID".into());
                }
                pid = Some(s.parse::<u32>().map_err(|_| format!("not a pid: {s:?}"))?);
            }
        }
    }
    Ok(Args {
        once,
        sort,
        pid: pid.ok_or("missing PID")?,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hotslab-top: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let tiers = kernel_tiers();
    if args.once {
        return match publish::read(args.pid) {
            Ok(s) => {
                print!("{}", render(&s, args.sort, &tiers, usize::MAX, usize::MAX));
                ExitCode::SUCCESS
            }
            Err(e) => fail(args.pid, &e),
        };
    }
    // Fail before touching the terminal when there is nothing to show.
    if let Err(e) = publish::read(args.pid) {
        return fail(args.pid, &e);
    }
    interactive(args.pid, args.sort, &tiers)
}

/// `--clean`: removes the files of dead processes (and stale files under live pids, once they
/// are two seconds old).
fn clean() -> i32 {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return 0;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("hotslab."))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        // A file being created is briefly "stale" (not mapped yet): only old ones go.
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|a| a.as_secs() >= 2);
        let gone = match publish::read(pid) {
            Err(ReadError::NoProcess) => true,
            Err(ReadError::Stale) => old,
            _ => false,
        };
        if gone {
            match std::fs::remove_file(e.path()) {
                Ok(()) => println!("removed {}", e.path().display()),
                Err(err) => eprintln!("hotslab-top: {}: {err}", e.path().display()),
            }
        }
    }
    0
}

fn fail(pid: u32, e: &ReadError) -> ExitCode {
    match e {
        ReadError::NoProcess => eprintln!("hotslab-top: pid {pid}: no such process"),
        ReadError::NotPublished => eprintln!(
            "hotslab-top: pid {pid} does not run hotslab: no /dev/shm/hotslab.{pid} (or it \
             runs with HOTSLAB_PUBLISH=0, or has not allocated yet)"
        ),
        ReadError::Stale => eprintln!(
            "hotslab-top: pid {pid} does not run hotslab: /dev/shm/hotslab.{pid} is stale \
             (left by an earlier process with this pid, or by the image it exec'd from)"
        ),
        _ => eprintln!("hotslab-top: pid {pid}: {e}"),
    }
    ExitCode::from(1)
}

/// The kernel's memory tiers (`/sys/devices/virtual/memory_tiering/memory_tierN/nodelist`):
/// real node id → tier.
fn kernel_tiers() -> BTreeMap<u16, u32> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/sys/devices/virtual/memory_tiering") else {
        return out;
    };
    for e in dir.flatten() {
        let name = e.file_name();
        let Some(t) = name
            .to_str()
            .and_then(|n| n.strip_prefix("memory_tier"))
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(list) = std::fs::read_to_string(e.path().join("nodelist")) else {
            continue;
        };
        for part in list.trim().split(',').filter(|p| !p.is_empty()) {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                for n in a..=b {
                    out.insert(n, t);
                }
            }
        }
    }
    out
}

fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Bytes as K/M/G with one decimal (like slabtop).
fn human(b: u64) -> String {
    let k = b as f64 / 1024.0;
    if k < 1024.0 {
        format!("{k:.1}K")
    } else if k < 1024.0 * 1024.0 {
        format!("{:.1}M", k / 1024.0)
    } else {
        format!("{:.1}G", k / 1024.0 / 1024.0)
    }
}

/// The tier of a node: the allocator's, else the kernel's for its real node.
fn tier(s: &Snapshot, tiers: &BTreeMap<u16, u32>, nid: u16) -> Option<u32> {
    let n = s.nodes.iter().find(|n| n.id == nid)?;
    n.tier
        .map(u32::from)
        .or_else(|| tiers.get(&n.real).copied())
}

fn tier_name(t: Option<u32>) -> String {
    t.map_or_else(|| "-".to_string(), |t| t.to_string())
}

fn event_name(e: hotslab::hotplug_api::MemoryEvent) -> &'static str {
    use hotslab::hotplug_api::MemoryEvent as E;
    match e {
        E::GoingOnline => "going-online",
        E::CancelOnline => "cancel-online",
        E::Online => "online",
        E::GoingOffline => "going-offline",
        E::CancelOffline => "cancel-offline",
        E::Offline => "offline",
    }
}

/// The screen: a summary, then one line per cache (at most `height` lines, each cut to
/// `width` characters).
fn render(
    s: &Snapshot,
    sort: Sort,
    tiers: &BTreeMap<u16, u32>,
    width: usize,
    height: usize,
) -> String {
    let now = now_ms();
    let mut caches = s.caches.clone();
    sort.apply(&mut caches);
    let ids: Vec<u16> = s.nodes.iter().map(|n| n.id).collect();
    let tier_of: Vec<Option<u32>> = ids.iter().map(|&i| tier(s, tiers, i)).collect();
    let mut tier_set: Vec<Option<u32>> = tier_of.clone();
    tier_set.sort();
    tier_set.dedup();

    let (mut active, mut total, mut slabs, mut bytes, mut used) = (0u64, 0u64, 0u64, 0u64, 0);
    for c in &caches {
        active += c.active_objs;
        total += c.num_objs;
        slabs += c.node_slabs.iter().map(|&n| n as u64).sum::<u64>();
        bytes += c.bytes();
        used += (c.active_objs > 0) as usize;
    }
    let mut lines: Vec<String> = Vec::new();
    lines.push(format!(
        "hotslab-top: pid {}, {} mode, {} node{}{}, snapshot #{} {:.1} s old{}{}",
        s.pid,
        s.mode.name(),
        ids.len(),
        if ids.len() == 1 { "" } else { "s" },
        if s.simulated { " (simulated)" } else { "" },
        s.publishes,
        now.saturating_sub(s.time_ms) as f64 / 1000.0,
        if now.saturating_sub(s.time_ms) > 2000 {
            " (idle: from its last slow path)"
        } else {
            ""
        },
        if s.truncated {
            " (some caches or nodes left out)"
        } else {
            ""
        },
    ));
    lines.push(format!(
        " Active / Total Objects (% used) : {active} / {total} ({:.1}%)",
        if total == 0 {
            0.0
        } else {
            active as f64 * 100.0 / total as f64
        }
    ));
    lines.push(format!(
        " Slabs / Caches (in use)         : {slabs} / {} ({used})",
        caches.len()
    ));
    lines.push(format!(
        " Memory in slabs                 : {}   large objects: {} ({})   mapped: {}",
        human(bytes),
        s.large_live,
        human(s.large_live_bytes),
        human(s.mapped_bytes)
    ));
    let mut nodes = String::new();
    for (k, n) in s.nodes.iter().enumerate() {
        let node_bytes: u64 = caches.iter().map(|c| c.node_bytes(n.id as usize)).sum();
        let _ = write!(
            nodes,
            "{}N{}{} tier {} {}{}",
            if k == 0 { "" } else { "  " },
            n.id,
            if n.real != n.id {
                format!(" (on N{})", n.real)
            } else {
                String::new()
            },
            tier_name(tier_of[k]),
            human(node_bytes),
            if n.has_memory { "" } else { " (no memory)" },
        );
    }
    lines.push(format!(" Memory per node                 : {nodes}"));
    let mut per_tier = String::new();
    for (k, t) in tier_set.iter().enumerate() {
        let b: u64 = ids
            .iter()
            .zip(&tier_of)
            .filter(|(_, tt)| *tt == t)
            .map(|(&i, _)| caches.iter().map(|c| c.node_bytes(i as usize)).sum::<u64>())
            .sum();
        let _ = write!(
            per_tier,
            "{}tier {} {}",
            if k == 0 { "" } else { "  " },
            tier_name(*t),
            human(b)
        );
    }
    lines.push(format!(" Memory per tier                 : {per_tier}"));
    let mut ev = format!(" Hotplug events                  : {}", s.hotplug_events);
    if !s.events.is_empty() {
        ev.push_str("   last:");
        for e in s.events.iter().rev().take(4) {
            let _ = write!(
                ev,
                " #{} N{} {}{}{} {:.1}s ago;",
                e.number,
                e.node,
                event_name(e.event),
                if e.forced { " forced" } else { "" },
                if e.vetoed { " vetoed" } else { "" },
                now.saturating_sub(e.time_ms) as f64 / 1000.0
            );
        }
        ev.pop();
    }
    lines.push(ev);
    lines.push(format!(
        " Sorted by {} (keys: a o s c n, q quits)",
        sort.label()
    ));
    lines.push(String::new());

    let mut head = format!(
        "{:>9} {:>9} {:>4} {:>9} {:>10} {:<22}",
        "ACTIVE", "OBJS", "USE", "OBJ SIZE", "CACHE SIZE", "NAME"
    );
    for &i in &ids {
        let _ = write!(head, " {:>13}", format!("N{i} slabs:mem"));
    }
    for t in &tier_set {
        let _ = write!(head, " {:>9}", format!("T{}", tier_name(*t)));
    }
    lines.push(head);
    for c in &caches {
        let mut l = format!(
            "{:>9} {:>9} {:>3}% {:>9} {:>9}K {:<22}",
            c.active_objs,
            c.num_objs,
            (c.active_objs * 100).checked_div(c.num_objs).unwrap_or(0),
            c.objsize,
            c.bytes() / 1024,
            c.name
        );
        for &i in &ids {
            let n = c.node_slabs.get(i as usize).copied().unwrap_or(0);
            let _ = write!(
                l,
                " {:>13}",
                format!("{n}:{}K", c.node_bytes(i as usize) / 1024)
            );
        }
        for t in &tier_set {
            let b: u64 = ids
                .iter()
                .zip(&tier_of)
                .filter(|(_, tt)| *tt == t)
                .map(|(&i, _)| c.node_bytes(i as usize))
                .sum();
            let _ = write!(l, " {:>8}K", b / 1024);
        }
        lines.push(l);
    }
    let mut out = String::new();
    for l in lines.iter().take(height) {
        let cut: String = l.chars().take(width).collect();
        out.push_str(&cut);
        out.push('\n');
    }
    out
}

/// The terminal in non-canonical mode without echo (restored on drop).
struct Raw(Option<libc::termios>);

impl Raw {
    fn new() -> Raw {
        // SAFETY: termios is plain data; tcgetattr fills it or fails (stdin not a terminal).
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return Raw(None);
            }
            let old = t;
            t.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG);
            t.c_cc[libc::VMIN] = 0;
            t.c_cc[libc::VTIME] = 0;
            libc::tcsetattr(0, libc::TCSANOW, &t);
            Raw(Some(old))
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: restores the settings read in `new`.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        }
        print!("\x1b[?25h\x1b[?1049l");
        let _ = std::io::stdout().flush();
    }
}

fn term_size() -> (usize, usize) {
    // SAFETY: winsize is plain data; the ioctl fills it or fails.
    unsafe {
        let mut w: libc::winsize = std::mem::zeroed();
        if libc::ioctl(1, libc::TIOCGWINSZ, &mut w) == 0 && w.ws_col > 0 && w.ws_row > 0 {
            return (w.ws_col as usize, w.ws_row as usize);
        }
    }
    (usize::MAX, usize::MAX)
}

/// Waits up to `ms` for a key on stdin.
fn key(ms: i32) -> Option<u8> {
    let mut p = libc::pollfd {
        fd: 0,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut p, 1, ms) } <= 0 {
        return None;
    }
    let mut b = [0u8; 1];
    // SAFETY: reads one byte into our buffer.
    match unsafe { libc::read(0, b.as_mut_ptr().cast(), 1) } {
        1 => Some(b[0]),
        0 => Some(b'q'), // end of input
        _ => None,
    }
}

fn interactive(pid: u32, mut sort: Sort, tiers: &BTreeMap<u16, u32>) -> ExitCode {
    let raw = Raw::new();
    print!("\x1b[?1049h\x1b[?25l");
    let mut deadline = 0u64;
    let mut last_err = None;
    loop {
        if now_ms() >= deadline {
            match publish::read(pid) {
                Ok(s) => {
                    let (w, h) = term_size();
                    let mut screen = String::from("\x1b[H");
                    for l in render(&s, sort, tiers, w, h.saturating_sub(1)).lines() {
                        screen.push_str(l);
                        screen.push_str("\x1b[K\r\n");
                    }
                    screen.push_str("\x1b[J");
                    print!("{screen}");
                    let _ = std::io::stdout().flush();
                }
                Err(e) => {
                    last_err = Some(e);
                    break;
                }
            }
            deadline = now_ms() + 1000;
        }
        let wait = deadline.saturating_sub(now_ms()).min(1000) as i32;
        match key(wait) {
            Some(b'q') | Some(b'Q') | Some(3) => break,
            Some(k) => {
                if let Some(s) = Sort::from_key(k.to_ascii_lowercase()) {
                    sort = s;
                    deadline = 0;
                }
            }
            None => {}
        }
    }
    drop(raw);
    match last_err {
        None => ExitCode::SUCCESS,
        Some(ReadError::NoProcess) | Some(ReadError::NotPublished) => {
            eprintln!("hotslab-top: pid {pid} exited");
            ExitCode::SUCCESS
        }
        Some(e) => fail(pid, &e),
    }
}
