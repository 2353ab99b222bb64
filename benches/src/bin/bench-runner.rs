//! The bench runner: builds the suite, runs every criterion bench and the whole-program workload
//! under `numactl --cpunodebind=0 --membind=0` and `numactl --interleave=all`, counts the hot
//! pair's instructions with callgrind, and writes `RESULTS.md` plus SVG plots. It only drives
//! cargo and system tools; no allocator code lives here.
//!
//! ```text
//! cargo run -p hotslab-benches --release --bin bench-runner            full run, writes benches/RESULTS.md
//! cargo run -p hotslab-benches --release --bin bench-runner -- --quick  every bench once, briefly (CI)
//!   options: --out DIR  --filter REGEX  --no-workload  --no-callgrind  --no-snmalloc
//!            --policy local|interleave (repeatable)
//! ```
//!
//! snmalloc joins as a fifth peer when `cmake` is installed (the `snmalloc` feature builds its
//! C++ with cmake); otherwise, or with `--no-snmalloc`, the report says it was left out.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use hotslab_benches::program::parse_outcome;
use hotslab_benches::report::{
    collect, plot_rows, render_results, render_svg, tables, CallgrindRow, PolicyRun, ReportInput,
    WorkloadRow, PLOT_PEERS, PLOT_ROWS,
};
use serde_json::Value;

struct Opts {
    quick: bool,
    out: Option<PathBuf>,
    filter: Option<String>,
    workload: bool,
    callgrind: bool,
    snmalloc: bool,
    policies: Vec<String>,
}

impl Opts {
    fn peers(&self) -> Vec<&'static str> {
        let mut v = vec!["hotslab", "system", "mimalloc", "jemalloc"];
        if self.snmalloc {
            v.push("snmalloc");
        }
        v
    }

    fn features(&self) -> &'static [&'static str] {
        if self.snmalloc {
            &["--features", "snmalloc"]
        } else {
            &[]
        }
    }
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        quick: false,
        out: None,
        filter: None,
        workload: true,
        callgrind: true,
        snmalloc: true,
        policies: vec!["local".into(), "interleave".into()],
    };
    let mut args = std::env::args().skip(1);
    let mut chosen: Vec<String> = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--full" => o.quick = false,
            "--out" => o.out = Some(args.next().ok_or("--out needs a directory")?.into()),
            "--filter" => o.filter = Some(args.next().ok_or("--filter needs a regex")?),
            "--no-workload" => o.workload = false,
            "--no-callgrind" => o.callgrind = false,
            "--no-snmalloc" => o.snmalloc = false,
            "--policy" => {
                let p = args.next().ok_or("--policy needs local or interleave")?;
                if p != "local" && p != "interleave" {
                    return Err(format!("unknown policy {p}"));
                }
                chosen.push(p);
            }
            "-h" | "--help" => {
                return Err(
                    "usage: bench-runner [--quick] [--out DIR] [--filter REGEX] [--no-workload] \
                            [--no-callgrind] [--no-snmalloc] [--policy local|interleave]..."
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !chosen.is_empty() {
        o.policies = chosen;
    }
    Ok(o)
}

fn policy_prefix(name: &str) -> Vec<String> {
    match name {
        "local" => vec![
            "numactl".into(),
            "--cpunodebind=0".into(),
            "--membind=0".into(),
        ],
        _ => vec!["numactl".into(), "--interleave=all".into()],
    }
}

/// Output of a command, or None if it could not run or failed.
fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Builds with `cargo <args> --message-format=json` and returns the executables of the targets
/// whose kind is `kind`, as (target name, path).
fn build(args: &[&str], features: &[&str], kind: &str) -> Result<Vec<(String, PathBuf)>, String> {
    let mut cmd = Command::new(cargo());
    cmd.args(args).args(features).args([
        "-p",
        "hotslab-benches",
        "--message-format=json-render-diagnostics",
    ]);
    cmd.stderr(Stdio::inherit());
    eprintln!(
        "bench-runner: cargo {} {}",
        args.join(" "),
        features.join(" ")
    );
    let o = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !o.status.success() {
        return Err(format!("cargo {} failed", args.join(" ")));
    }
    let mut out = Vec::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v.get("reason").and_then(Value::as_str) != Some("compiler-artifact") {
            continue;
        }
        let kinds = v
            .pointer("/target/kind")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !kinds.iter().any(|k| k.as_str() == Some(kind)) {
            continue;
        }
        if let (Some(name), Some(exe)) = (
            v.pointer("/target/name").and_then(Value::as_str),
            v.get("executable").and_then(Value::as_str),
        ) {
            out.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    out.sort();
    Ok(out)
}

fn machine() -> (Vec<(String, String)>, usize) {
    let mut m = Vec::new();
    let lscpu = output("lscpu", &[]).unwrap_or_default();
    let field = |k: &str| {
        lscpu
            .lines()
            .find(|l| l.trim_start().starts_with(k))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    m.push((
        "CPU".into(),
        field("Model name").unwrap_or_else(|| "unknown".into()),
    ));
    m.push((
        "cores".into(),
        format!(
            "{} CPUs ({} thread(s) per core, {} socket(s)); hypervisor: {}",
            field("CPU(s)").unwrap_or_default(),
            field("Thread(s) per core").unwrap_or_default(),
            field("Socket(s)").unwrap_or_default(),
            field("Hypervisor vendor").unwrap_or_else(|| "none".into())
        ),
    ));
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal"))
                .map(|l| l.to_string())
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or("unknown".into(), |kb| {
            format!("{:.1} GiB", kb / 1024.0 / 1024.0)
        });
    m.push(("memory".into(), mem));
    m.push((
        "kernel".into(),
        output("uname", &["-srm"])
            .unwrap_or_default()
            .trim()
            .to_string(),
    ));
    let hw = output("numactl", &["--hardware"]).unwrap_or_default();
    let nodes = hw
        .lines()
        .find(|l| l.starts_with("available:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1usize);
    let avail = hw
        .lines()
        .find(|l| l.starts_with("available:"))
        .unwrap_or("numactl unavailable")
        .to_string();
    m.push(("NUMA".into(), avail));
    m.push((
        "rustc".into(),
        output("rustc", &["-V"])
            .unwrap_or_default()
            .trim()
            .to_string(),
    ));
    (m, nodes)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs the criterion benches under one policy; returns the failures.
fn run_criterion(
    exes: &[(String, PathBuf)],
    prefix: &[String],
    home: &Path,
    o: &Opts,
) -> Vec<String> {
    let _ = std::fs::remove_dir_all(home);
    let mut failures = Vec::new();
    for (name, exe) in exes {
        let mut cmd = Command::new(&prefix[0]);
        cmd.args(&prefix[1..])
            .arg(exe)
            .args(["--bench", "--noplot"]);
        if o.quick {
            cmd.args([
                "--quick",
                "--warm-up-time",
                "0.05",
                "--measurement-time",
                "0.25",
            ]);
        }
        if let Some(f) = &o.filter {
            cmd.arg(f);
        }
        cmd.env("CRITERION_HOME", home);
        eprintln!("bench-runner: [{}] bench {name}", prefix.join(" "));
        match cmd.status() {
            Ok(s) if s.success() => {}
            Ok(s) => failures.push(format!(
                "bench `{name}` under `{}` exited with {s}",
                prefix.join(" ")
            )),
            Err(e) => failures.push(format!("bench `{name}`: cannot start: {e}")),
        }
    }
    failures
}

/// Runs the whole-program workload bins; returns rows and failures.
fn run_workload(
    bins: &[(String, PathBuf)],
    prefix: &[String],
    o: &Opts,
) -> (Vec<WorkloadRow>, Vec<String>) {
    let runs = if o.quick { 1 } else { 3 };
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut sums = BTreeSet::new();
    for alloc in o.peers() {
        let Some((_, exe)) = bins.iter().find(|(n, _)| n == &format!("workload-{alloc}")) else {
            continue;
        };
        let (mut walls, mut rss) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            eprintln!("bench-runner: [{}] workload-{alloc}", prefix.join(" "));
            let out = Command::new(&prefix[0])
                .args(&prefix[1..])
                .arg(exe)
                .stderr(Stdio::inherit())
                .output();
            match out {
                Ok(out) if out.status.success() => {
                    let text = String::from_utf8_lossy(&out.stdout);
                    match text.lines().find_map(parse_outcome) {
                        Some((_, wall, kb, sum)) => {
                            walls.push(wall);
                            rss.push(kb as f64);
                            sums.insert(sum);
                        }
                        None => {
                            failures.push(format!("workload-{alloc}: unparsable output {text:?}"))
                        }
                    }
                }
                Ok(out) => failures.push(format!("workload-{alloc} exited with {}", out.status)),
                Err(e) => failures.push(format!("workload-{alloc}: cannot start: {e}")),
            }
        }
        if !walls.is_empty() {
            rows.push(WorkloadRow {
                allocator: alloc.to_string(),
                runs: walls.len(),
                wall_ms: median_f(walls),
                maxrss_kb: median_f(rss) as u64,
            });
        }
    }
    if sums.len() > 1 {
        failures.push(format!(
            "workload checksums differ between allocators: {sums:x?}"
        ));
    }
    (rows, failures)
}

/// Total instructions (`summary:` line) of a callgrind output file.
fn callgrind_total(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with("summary:"))
        .or_else(|| text.lines().find(|l| l.starts_with("totals:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run_callgrind(
    exe: &Path,
    dir: &Path,
    o: &Opts,
) -> (u64, Vec<CallgrindRow>, Option<String>, Vec<String>) {
    let (n0, n1) = if o.quick {
        (10_000u64, 60_000u64)
    } else {
        (10_000, 1_010_000)
    };
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut profile = None;
    let _ = std::fs::create_dir_all(dir);
    for alloc in o.peers() {
        let mut totals = Vec::new();
        for n in [n0, n1] {
            let file = dir.join(format!("callgrind.{alloc}.{n}.out"));
            eprintln!("bench-runner: callgrind fastpath-count {alloc} {n}");
            let st = Command::new("valgrind")
                .args(["--tool=callgrind", "--quiet"])
                .arg(format!("--callgrind-out-file={}", file.display()))
                .arg(exe)
                .args([alloc.to_string(), n.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output();
            match st {
                Ok(out) if out.status.success() => totals.push(callgrind_total(&file)),
                Ok(out) => {
                    let err = String::from_utf8_lossy(&out.stderr);
                    let last = err
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    failures.push(format!(
                        "callgrind run of {alloc} ({n} pairs) exited with {} under valgrind: {last:?}",
                        out.status
                    ));
                    totals.push(None);
                }
                Err(e) => {
                    failures.push(format!("valgrind cannot start: {e}"));
                    totals.push(None);
                }
            }
        }
        if alloc == "hotslab" {
            let ann = |n: u64| {
                let f = dir.join(format!("callgrind.{alloc}.{n}.out"));
                output(
                    "callgrind_annotate",
                    &["--threshold=100", "--auto=no", &f.display().to_string()],
                )
            };
            if let (Some(a), Some(b)) = (ann(n0), ann(n1)) {
                profile = Some(profile_per_pair(&a, &b, n1 - n0, 16));
            }
        }
        let per_pair = match (
            totals.first().copied().flatten(),
            totals.get(1).copied().flatten(),
        ) {
            (Some(a), Some(b)) if b > a => Some((b - a) as f64 / (n1 - n0) as f64),
            _ => None,
        };
        rows.push(CallgrindRow {
            allocator: alloc.to_string(),
            per_pair,
        });
    }
    (n1 - n0, rows, profile, failures)
}

/// Self instructions per function from `callgrind_annotate` output (inlined code is attributed
/// to its source file, so hotslab's inlined fast path shows up by file).
fn annotate_counts(text: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for l in text
        .lines()
        .skip_while(|l| !l.contains("file:function"))
        .skip(1)
    {
        let t = l.trim();
        if t.starts_with("--") {
            continue;
        }
        if t.is_empty() {
            if out.is_empty() {
                continue;
            }
            break; // end of the function table; source annotations follow
        }
        let Some((num, rest)) = t.split_once(' ') else {
            continue;
        };
        let Ok(n) = num.replace(',', "").parse::<u64>() else {
            continue;
        };
        let name = rest.trim_start();
        let name = name
            .strip_prefix('(')
            .and_then(|r| r.split_once(')'))
            .map_or(name, |(_, r)| r)
            .trim();
        let name = name.split(" [").next().unwrap_or(name);
        out.push((name.to_string(), n));
    }
    out
}

/// The `top` functions by instructions per pair: the difference between the long and the short
/// run, divided by the extra pairs, so start-up work drops out.
fn profile_per_pair(short: &str, long: &str, pairs: u64, top: usize) -> String {
    let base: std::collections::HashMap<String, u64> = annotate_counts(short).into_iter().collect();
    let mut rows: Vec<(String, f64)> = annotate_counts(long)
        .into_iter()
        .map(|(f, n)| {
            let d = n.saturating_sub(base.get(&f).copied().unwrap_or(0));
            (f, d as f64 / pairs.max(1) as f64)
        })
        .filter(|(_, v)| *v >= 0.05)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut out = String::from("instr/pair  source of the (inlined) code : function\n");
    for (f, v) in rows.into_iter().take(top) {
        let f = f
            .rsplit_once("/library/")
            .map_or(f.clone(), |(_, r)| format!("std:{r}"));
        out.push_str(&format!("{v:>10.2}  {f}\n"));
    }
    out
}

fn main() -> ExitCode {
    let mut o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut notes: Vec<String> = Vec::new();
    let load_at_start = loadavg();
    if o.snmalloc && output("cmake", &["--version"]).is_none() {
        o.snmalloc = false;
        notes.push("snmalloc left out: cmake is not installed (`apt-get install cmake` adds it as a fifth peer)".into());
    } else if !o.snmalloc {
        notes.push("snmalloc left out (--no-snmalloc)".into());
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| manifest.join("..").join("target"), PathBuf::from);
    let mode = if o.quick { "quick" } else { "full" };
    let work = target.join("hotslab-bench").join(mode);
    let out_dir = o.out.clone().unwrap_or_else(|| {
        if o.quick {
            work.clone()
        } else {
            manifest.clone()
        }
    });
    let _ = std::fs::create_dir_all(&out_dir);
    let mut failures: Vec<String> = Vec::new();

    let benches = match build(&["bench", "--no-run"], o.features(), "bench") {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bench-runner: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bins = match build(&["build", "--release", "--bins"], o.features(), "bin") {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bench-runner: {e}");
            return ExitCode::FAILURE;
        }
    };

    let numactl_ok = Command::new("numactl")
        .args(["--cpunodebind=0", "--membind=0", "true"])
        .status()
        .is_ok_and(|s| s.success());
    let mut runs = Vec::new();
    for p in &o.policies {
        let prefix = if numactl_ok {
            policy_prefix(p)
        } else {
            notes.push("numactl is unavailable: the benches ran without a NUMA policy".into());
            vec!["env".into()]
        };
        let home = work.join(format!("criterion-{p}"));
        failures.extend(run_criterion(&benches, &prefix, &home, &o));
        let records = collect(&home);
        let (workload, wf) = if o.workload {
            run_workload(&bins, &prefix, &o)
        } else {
            (Vec::new(), Vec::new())
        };
        failures.extend(wf);
        runs.push(PolicyRun {
            name: p.clone(),
            command: prefix.join(" "),
            records,
            workload,
        });
        if !numactl_ok {
            break;
        }
    }

    let (mut cg_pairs, mut cg_rows, mut profile) = (0, Vec::new(), None);
    if o.callgrind {
        match (
            output("valgrind", &["--version"]),
            bins.iter().find(|(n, _)| n == "fastpath-count"),
        ) {
            (Some(_), Some((_, exe))) => {
                let (n, rows, prof, f) = run_callgrind(exe, &work.join("callgrind"), &o);
                (cg_pairs, cg_rows, profile) = (n, rows, prof);
                // Not a failure of the suite: snmalloc, for one, aborts under valgrind.
                notes.extend(f);
            }
            _ => notes.push(
                "valgrind is not installed (`apt-get install valgrind`): no instruction counts"
                    .into(),
            ),
        }
    }

    let mut plots = Vec::new();
    for run in &runs {
        let rows = plot_rows(&tables(&run.records), PLOT_ROWS, PLOT_PEERS);
        if rows.is_empty() {
            continue;
        }
        let file = format!("results-{}.svg", run.name);
        let svg = render_svg(&format!("hotslab vs peers, {}", run.command), &rows);
        if let Err(e) = std::fs::write(out_dir.join(&file), svg) {
            failures.push(format!("cannot write {file}: {e}"));
        }
        plots.push((run.command.clone(), file));
    }

    let (mut machine, numa_nodes) = machine();
    machine.push((
        "load average (1/5/15 min)".into(),
        format!(
            "{load_at_start} at the start, {} at the end (other work on the machine adds noise; the ratios \
             come from one interleaved run, so they suffer less than absolute times)",
            loadavg()
        ),
    ));
    notes.extend(failures.iter().map(|f| format!("FAILED: {f}")));
    let input = ReportInput {
        mode: mode.into(),
        command: format!(
            "cargo run -p hotslab-benches --release --bin bench-runner{}",
            if o.quick { " -- --quick" } else { "" }
        ),
        date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
            .unwrap_or_default()
            .trim()
            .to_string(),
        machine,
        numa_nodes,
        policies: runs,
        callgrind_pairs: cg_pairs,
        callgrind: cg_rows,
        hot_profile: profile,
        plots,
        notes,
    };
    let md = render_results(&input);
    let path = out_dir.join("RESULTS.md");
    if let Err(e) = std::fs::write(&path, md) {
        eprintln!("bench-runner: cannot write {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    eprintln!("bench-runner: wrote {}", path.display());
    // The pictures at the top (fast path, threads, memory, hotplug) from the new tables.
    match hotslab_benches::plots::refresh_results(&out_dir, false) {
        Ok(files) => eprintln!("bench-runner: plots: {}", files.join(", ")),
        Err(e) => failures.push(format!("results-plots: {e}")),
    }
    let total: usize = input.policies.iter().map(|r| r.records.len()).sum();
    eprintln!(
        "bench-runner: {total} benchmark results, {} failures",
        failures.len()
    );
    for f in &failures {
        eprintln!("bench-runner: FAILED: {f}");
    }
    if failures.is_empty() && total > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
