//! libhotslab.so as the malloc of real programs from Debian packages (LD_PRELOAD): python3,
//! sqlite3, git and a multi-threaded C program that forks in the middle. Each run must give the
//! right output and exit cleanly, and its `HOTSLAB_STATS` tables must show that hotslab served
//! the traffic (one table per process that exited normally, with the allocation counts).
//! A missing program skips its test, except under `CI=true`, where it fails.

mod common;

use common::{have, hotslab_so, parse_stats, run_with, scratch, Run, Table};
use std::path::Path;

fn require(program: &str) -> bool {
    if have(program) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{program} is missing (apt-get install it); CI must not skip this test"
    );
    eprintln!("skipped: {program} is not installed");
    false
}

/// Runs the workload under hotslab, checks its output, and returns its statistics tables.
fn under_hotslab(name: &str, make: fn(&Path) -> Run) -> Vec<Table> {
    let so = hotslab_so();
    assert!(so.exists(), "{} not built", so.display());
    let dir = scratch(name);
    let stats = dir.join("hotslab-stats.txt");
    let mut run = make(&dir);
    run.cmd.env("MT_FORK_EXPECT_HOTSLAB", "1");
    let out = run_with(&mut run, Some(&so), Some(&stats));
    if let Err(e) = (run.check)(&out) {
        panic!("{name} under hotslab: {e}");
    }
    let text = std::fs::read_to_string(&stats).unwrap_or_default();
    let tables = parse_stats(&text);
    assert!(!tables.is_empty(), "{name}: no statistics table:\n{text}");
    for t in &tables {
        assert_eq!(
            t.caches,
            hs::KMALLOC_CLASSES.len(),
            "{name}: every kmalloc cache listed: {t:?}"
        );
        assert_eq!(t.cache_allocs, t.allocs, "{name}: totals add up: {t:?}");
        assert_eq!(t.mode, "OnlineMems");
    }
    let _ = std::fs::remove_dir_all(&dir);
    tables
}

fn total_allocs(tables: &[Table]) -> u64 {
    tables.iter().map(|t| t.allocs).sum()
}

#[test]
fn c_program_threads_cross_frees_and_fork() {
    if !require("/usr/bin/cc") {
        return;
    }
    let tables = under_hotslab("mt_fork", common::c_program);
    // The parent and the fork child (which exits through exit(), so it prints too).
    assert_eq!(tables.len(), 2, "{tables:?}");
    let parent = tables.iter().max_by_key(|t| t.allocs).unwrap();
    // 8 threads x 40000 blocks (minus the large ones), plus the C library's own.
    assert!(parent.allocs >= 300_000, "{parent:?}");
    assert!(parent.frees >= 300_000, "{parent:?}");
}

#[test]
fn python3_dicts_lists_strings_threads() {
    if !require(common::PYTHON) {
        return;
    }
    let tables = under_hotslab("python3", common::python);
    assert!(total_allocs(&tables) >= 500_000, "{tables:?}");
}

#[test]
fn sqlite3_100k_rows_index_query() {
    if !require(common::SQLITE) {
        return;
    }
    let tables = under_hotslab("sqlite3", common::sqlite);
    assert_eq!(tables.len(), 1, "{tables:?}");
    assert!(total_allocs(&tables) >= 100_000, "{tables:?}");
}

#[test]
fn git_init_commit_log_gc() {
    if !require(common::GIT) {
        return;
    }
    let tables = under_hotslab("git", common::git);
    // The shell, and every git process it ran (gc runs several more).
    assert!(tables.len() >= 12, "{} tables", tables.len());
    assert!(total_allocs(&tables) >= 20_000, "{tables:?}");
}

#[test]
fn knobs_mode_and_simulated_nodes() {
    if !require(common::SQLITE) {
        return;
    }
    let so = hotslab_so();
    let dir = scratch("knobs");
    let stats = dir.join("stats.txt");
    let out = std::process::Command::new(common::SQLITE)
        .arg(":memory:")
        .arg("select 6*7;")
        .env("LD_PRELOAD", &so)
        .env("HOTSLAB_STATS", &stats)
        .env("HOTSLAB_MODE", "slabnodes")
        .env("HOTSLAB_NODES", "4")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
    let text = std::fs::read_to_string(&stats).unwrap();
    let t = parse_stats(&text);
    assert_eq!(t.len(), 1, "{text}");
    assert_eq!((t[0].mode.as_str(), t[0].nodes), ("SlabNodes", 4), "{text}");
    // Every cache line lists a part for each of the four simulated nodes.
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("kmalloc-")).collect();
    assert!(rows
        .iter()
        .all(|r| ["N0=", "N1=", "N2=", "N3="].iter().all(|n| r.contains(n))));
    // A bad value is reported and ignored, never fatal.
    let out = std::process::Command::new(common::SQLITE)
        .arg(":memory:")
        .arg("select 1;")
        .env("LD_PRELOAD", &so)
        .env("HOTSLAB_MODE", "rwsem")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOTSLAB_MODE"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `HOTSLAB_THP=on` reaches the default domain: a slab block of a Python process under
/// hotslab lies in a mapping advised for huge pages (`hg` in its `VmFlags`); without the knob
/// it does not.
#[test]
fn thp_knob_advises_slab_memory_for_huge_pages() {
    if !require(common::PYTHON) {
        return;
    }
    if !Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
        eprintln!("skipped: kernel without transparent huge pages");
        return;
    }
    // The script mallocs a 100 KB block (a slab class) and prints its mapping's flags.
    let script = r#"
import ctypes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
p = libc.malloc(100000)
flags = None
inside = False
for line in open("/proc/self/smaps"):
    head = line.split(" ", 1)[0]
    if "-" in head and ":" not in head:
        a, b = (int(x, 16) for x in head.split("-"))
        inside = a <= p < b
    elif inside and line.startswith("VmFlags:"):
        flags = line.split()[1:]
print("hg" in flags)
"#;
    let so = hotslab_so();
    let run = |thp: Option<&str>| {
        let mut cmd = std::process::Command::new(common::PYTHON);
        cmd.arg("-c").arg(script).env("LD_PRELOAD", &so);
        if let Some(v) = thp {
            cmd.env("HOTSLAB_THP", v);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(run(Some("on")), "True");
    assert_eq!(run(None), "False");
    // A threshold far above what the script allocates leaves its memory on small pages.
    assert_eq!(run(Some("4096")), "False");
}

#[test]
fn foreign_free_aborts_with_a_message() {
    if !require(common::PYTHON) {
        return;
    }
    // ctypes frees a pointer into a static buffer: a C allocator must refuse it loudly.
    let out = std::process::Command::new(common::PYTHON)
        .args([
            "-c",
            "import ctypes; b = ctypes.create_string_buffer(64); \
             ctypes.CDLL(None).free(ctypes.addressof(b) + 16)",
        ])
        .env("LD_PRELOAD", hotslab_so())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hotslab: "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn debug_knob_catches_a_heap_overflow() {
    if !require(common::PYTHON) {
        return;
    }
    // One byte past a 32-byte block lands in its red zone: reported at free, then abort.
    let script = "import ctypes\n\
        libc = ctypes.CDLL(None)\n\
        libc.malloc.restype = ctypes.c_void_p\n\
        p = libc.malloc(32)\n\
        ctypes.memset(p, 0x41, 33)\n\
        libc.free(ctypes.c_void_p(p))\n\
        print('overflow not caught')\n";
    let out = std::process::Command::new(common::PYTHON)
        .args(["-c", script])
        .env("LD_PRELOAD", hotslab_so())
        .env("HOTSLAB_DEBUG", "Z")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("hotslab: BUG"), "{err}");
    assert!(err.contains("kmalloc-32"), "{err}");
}
