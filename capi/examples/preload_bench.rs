//! Times the LD_PRELOAD real-program workloads (python3, sqlite3, git, the threaded C program)
//! under glibc's malloc and, by LD_PRELOAD, Debian's mimalloc, jemalloc and tcmalloc and
//! hotslab: median wall time and peak RSS (the largest process of the run's tree, from
//! `wait4`), each as a ratio to glibc. Every run's output is checked. Prints a Markdown table;
//! `--out FILE` also writes it there (keeping the sections after the table: the notes and
//! what `capi-report` writes).
//!
//! ```text
//! cargo run --release -p hotslab-capi --example preload_bench -- --runs 5 --out benches/RESULTS-capi.md
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Instant;

use common::Run;

type Workload = (&'static str, fn(&Path) -> Run);

struct Sample {
    secs: f64,
    rss_kib: i64,
}

/// Runs once, redirecting output to files (no pipe can fill up), and measures it.
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives the peak RSS
fn measure(run: &mut Run, preload: Option<&Path>, dir: &Path) -> Sample {
    match preload {
        Some(p) => run.cmd.env("LD_PRELOAD", p),
        None => run.cmd.env_remove("LD_PRELOAD"),
    };
    run.cmd.env_remove("HOTSLAB_STATS");
    let (o, e) = (dir.join("stdout.txt"), dir.join("stderr.txt"));
    run.cmd
        .stdout(Stdio::from(std::fs::File::create(&o).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&e).unwrap()));
    let t = Instant::now();
    let child = run.cmd.spawn().expect("spawn");
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; the out-pointers are valid.
    let r = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(r, child.id() as libc::pid_t, "wait4");
    let out = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: std::fs::read(&o).unwrap(),
        stderr: std::fs::read(&e).unwrap(),
    };
    if let Err(msg) = (run.check)(&out) {
        panic!("wrong result under {preload:?}: {msg}");
    }
    Sample {
        secs,
        rss_kib: ru.ru_maxrss,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let out_file = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let lib = Path::new("/usr/lib/x86_64-linux-gnu");
    let mut allocators: Vec<(&str, Option<PathBuf>)> = vec![("glibc", None)];
    for (name, file) in [
        ("mimalloc", "libmimalloc.so.2"),
        ("jemalloc", "libjemalloc.so.2"),
        ("tcmalloc", "libtcmalloc_minimal.so.4"),
    ] {
        if lib.join(file).exists() {
            allocators.push((name, Some(lib.join(file))));
        } else {
            eprintln!(
                "{name}: {} not installed, left out",
                lib.join(file).display()
            );
        }
    }
    allocators.push(("hotslab", Some(common::hotslab_so())));
    let workloads: [Workload; 4] = [
        ("python3 (dicts, lists, strings, 4 threads)", common::python),
        ("sqlite3 (100k inserts, 2 indexes, queries)", common::sqlite),
        (
            "git (init, 5 commits of 200 files, log, gc --aggressive, fsck)",
            common::git,
        ),
        ("C: 8 threads, cross-thread frees, fork", common::c_program),
    ];
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| workload | allocator | median time (s) | time / glibc | peak RSS (MiB) | RSS / glibc |"
    );
    let _ = writeln!(table, "|---|---|---:|---:|---:|---:|");
    for (wname, make) in workloads {
        // samples[a] for allocator a; allocators interleaved within each round.
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); allocators.len()];
        let mut rss: Vec<i64> = vec![0; allocators.len()];
        for round in 0..runs {
            for (a, (aname, path)) in allocators.iter().enumerate() {
                let dir = common::scratch("bench");
                let mut run = make(&dir);
                let s = measure(&mut run, path.as_deref(), &dir);
                eprintln!(
                    "{wname} / {aname} / run {round}: {:.3} s, {} KiB",
                    s.secs, s.rss_kib
                );
                times[a].push(s.secs);
                rss[a] = rss[a].max(s.rss_kib);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        let base_t = median(times[0].clone());
        let base_r = rss[0] as f64;
        for (a, (aname, _)) in allocators.iter().enumerate() {
            let t = median(times[a].clone());
            let _ = writeln!(
                table,
                "| {wname} | {aname} | {t:.3} | {:.2} | {:.1} | {:.2} |",
                t / base_t,
                rss[a] as f64 / 1024.0,
                rss[a] as f64 / base_r
            );
        }
    }
    print!("{table}");
    if let Some(path) = out_file {
        let mut doc = String::new();
        doc.push_str("# hotslab as the C allocator: real programs under LD_PRELOAD\n\n");
        let _ = writeln!(
            doc,
            "Produced by `cargo run --release -p hotslab-capi --example preload_bench -- \
             --runs {runs} --out benches/RESULTS-capi.md` (median of {runs} runs per cell, \
             allocators interleaved within each round; peak RSS is the largest process of the \
             run, from `wait4`, the maximum over the runs). Debian 12 packages: python3, \
             sqlite3, git, libmimalloc2.0, libjemalloc2, libtcmalloc-minimal4. Every run's \
             output is checked.\n"
        );
        doc.push_str(&table);
        // Keep what follows the table in the existing file: the notes and the sections that
        // `capi-report` writes (security, RSS, secure-mode cost).
        if let Ok(old) = std::fs::read_to_string(&path) {
            if let Some(k) = old.find("\n## ") {
                doc.push_str(&old[k..]);
            }
        }
        std::fs::write(&path, doc).expect("write results");
        eprintln!("wrote {}", path.display());
    }
}
