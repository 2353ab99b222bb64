//! Exact instructions per malloc+free pair through the C ABI, for hotslab and its peers in one
//! run: compiles `benches/c/pairs.c` (gcc -O2 -fno-builtin), runs each of its two patterns under
//! `valgrind --tool=callgrind` with each allocator preloaded for 100 k and 1.1 M pairs, and prints
//! (total difference) / 1 M per allocator and pattern and the ratio to mimalloc. The loop itself
//! (about 14 instructions) is included for every allocator alike. Owns no allocator code.
//!
//! The two patterns (see pairs.c): "hot" frees each block at once, so each free empties its size
//! class (mimalloc's worst case: it retires the page every time); "steady" keeps a live set, so no
//! page or slab empties (what a program's steady state costs). Both are reported because they rank
//! the allocators differently.
//!
//! `cargo run --release -p hotslab-benches --bin capi-count` (HOTSLAB_LIB overrides the library).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

const PEERS: &[(&str, &str)] = &[
    ("mimalloc", "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2"),
    ("jemalloc", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"),
    (
        "tcmalloc",
        "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    ),
    ("glibc", ""),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn total(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with("summary:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn count(exe: &Path, lib: &str, n: u64, pattern: &str, out: &Path) -> Option<u64> {
    let mut cmd = Command::new("valgrind");
    cmd.args(["--tool=callgrind", "--quiet"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .arg(n.to_string())
        .arg(pattern)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if !lib.is_empty() {
        cmd.env("LD_PRELOAD", lib);
    }
    cmd.status().ok()?.success().then_some(())?;
    total(out)
}

/// Instructions per pair of pattern `pat` under `lib`: the difference between a 1.1 M-pair and a
/// 100 k-pair run, over 1 M (start-up and warm-up cancel out). `out` is the callgrind file stem.
fn per_pair(exe: &Path, lib: &str, pat: &str, out: &Path) -> Option<u64> {
    let a = count(exe, lib, 100_000, pat, &out.with_extension("a"))?;
    let b = count(exe, lib, 1_100_000, pat, &out.with_extension("b"))?;
    (b > a).then(|| (b - a) / 1_000_000)
}

fn main() -> ExitCode {
    let dir = root().join("target/capi-count");
    let _ = std::fs::create_dir_all(&dir);
    let exe = dir.join("pairs");
    let cc = Command::new("gcc")
        .args(["-O2", "-fno-builtin", "-o"])
        .arg(&exe)
        .arg(root().join("benches/c/pairs.c"))
        .status();
    if !matches!(cc, Ok(s) if s.success()) {
        eprintln!("capi-count: gcc failed");
        return ExitCode::FAILURE;
    }
    let hotslab = std::env::var("HOTSLAB_LIB").unwrap_or_else(|_| {
        root()
            .join("target/release/libhotslab.so")
            .display()
            .to_string()
    });
    let mut rows: Vec<(&str, String, [Option<u64>; 2])> = vec![("hotslab", hotslab, [None; 2])];
    rows.extend(PEERS.iter().map(|(n, l)| (*n, l.to_string(), [None; 2])));
    let patterns = ["hot", "steady"];
    for (name, lib, per) in rows.iter_mut() {
        if !lib.is_empty() && !Path::new(lib.as_str()).exists() {
            eprintln!("capi-count: {name}: {lib} missing, skipped");
            continue;
        }
        for (i, pat) in patterns.iter().enumerate() {
            per[i] = per_pair(&exe, lib, pat, &dir.join(format!("cg.{name}.{pat}")));
        }
    }
    let mi = rows
        .iter()
        .find(|r| r.0 == "mimalloc")
        .map_or([None; 2], |r| r.2);
    println!(
        "| allocator | hot pair (C ABI, incl. loop) | / mimalloc | steady pair (C ABI, incl. loop) | / mimalloc |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, _, per) in &rows {
        let mut line = format!("| {name} |");
        for i in 0..2 {
            match (per[i], mi[i]) {
                (Some(p), Some(m)) if m > 0 => {
                    line += &format!(" {p} | {:.2} |", p as f64 / m as f64)
                }
                (Some(p), _) => line += &format!(" {p} | |"),
                (None, _) => line += " failed | |",
            }
        }
        println!("{line}");
    }
    if rows
        .iter()
        .any(|r| r.2.iter().any(Option::is_none) && (r.1.is_empty() || Path::new(&r.1).exists()))
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
