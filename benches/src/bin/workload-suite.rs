//! The standard-workload suite runner: compiles the C programs of `benches/workloads/` (our own
//! versions of the mimalloc-bench workload shapes) with `gcc -O2 -pthread` into
//! `target/workloads/`, runs each under glibc (no preload) and, by `LD_PRELOAD`, Debian's
//! mimalloc, jemalloc and tcmalloc and hotslab, interleaved (each round runs every allocator on
//! every program once), and reports median wall time and peak RSS (`wait4`'s `ru_maxrss`), the
//! hotslab/peer ratios and their geomeans as Markdown. It owns no allocator code; what the
//! programs are and how the report looks lives in `hotslab_benches::suite`.
//!
//! ```text
//! cargo run --release -p hotslab-benches --bin workload-suite -- [--quick] [--rounds N]
//!     [--only NAME]... [--out benches/RESULTS-workloads.md] [--check] [--note TEXT]...
//!     [--timeout SECS]
//! ```
//!
//! `--quick` gives every program its small parameters; `--check` is the CI smoke (with
//! `--quick --rounds 1`): it writes no report unless `--out` is given. Any run that fails,
//! crashes, times out, prints no `ok` line, or disagrees with the other allocators' output, and
//! a hotslab that did not serve the programs' allocations (an untimed `HOTSLAB_STATS` run per
//! program), makes the exit status non-zero. `HOTSLAB_LIB` overrides the hotslab library
//! (otherwise `cargo build --release -p hotslab-capi` builds `target/release/libhotslab.so`).
//! A peer library that is not installed is left out with a note in the report.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use hotslab_benches::suite::{
    ok_line, parse_ok, parse_stats, render, sources, Cell, Report, Served, Workload, WORKLOADS,
};

const PEER_DIR: &str = "/usr/lib/x86_64-linux-gnu";
const PEERS: &[(&str, &str)] = &[
    ("mimalloc", "libmimalloc.so.2"),
    ("jemalloc", "libjemalloc.so.2"),
    ("tcmalloc", "libtcmalloc_minimal.so.4"),
];

struct Opts {
    quick: bool,
    check: bool,
    rounds: usize,
    only: Vec<String>,
    out: Option<PathBuf>,
    notes: Vec<String>,
    timeout: Duration,
    secure: bool,
}

const USAGE: &str = "usage: workload-suite [--quick] [--rounds N] [--only NAME]... [--out FILE] \
                     [--check] [--note TEXT]... [--timeout SECS] [--secure]";

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        quick: false,
        check: false,
        rounds: 5,
        only: Vec::new(),
        out: None,
        notes: Vec::new(),
        timeout: Duration::ZERO,
        secure: false,
    };
    let mut it = args.iter();
    let mut timeout = None;
    while let Some(a) = it.next() {
        let mut value = |what: &str| it.next().cloned().ok_or(format!("{a} needs {what}"));
        match a.as_str() {
            "--quick" => o.quick = true,
            "--check" => o.check = true,
            "--secure" => o.secure = true,
            "--rounds" => {
                o.rounds = value("a count")?
                    .parse()
                    .map_err(|e| format!("--rounds: {e}"))?;
                if o.rounds == 0 {
                    return Err("--rounds must be at least 1".into());
                }
            }
            "--only" => {
                for n in value("a workload name")?.split(',') {
                    if !WORKLOADS.iter().any(|w| w.name == n) {
                        let all: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
                        return Err(format!("unknown workload {n}; known: {}", all.join(" ")));
                    }
                    o.only.push(n.to_string());
                }
            }
            "--out" => o.out = Some(value("a file")?.into()),
            "--note" => o.notes.push(value("a text")?),
            "--timeout" => {
                let s: u64 = value("seconds")?
                    .parse()
                    .map_err(|e| format!("--timeout: {e}"))?;
                timeout = Some(Duration::from_secs(s));
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    o.timeout = timeout.unwrap_or(Duration::from_secs(if o.quick { 30 } else { 120 }));
    Ok(o)
}

/// The command line as the report quotes it.
fn command_line(args: &[String]) -> String {
    let mut s = String::from("cargo run --release -p hotslab-benches --bin workload-suite --");
    for a in args {
        if a.contains(' ') || a.is_empty() {
            s.push_str(&format!(" '{a}'"));
        } else {
            s.push(' ');
            s.push_str(a);
        }
    }
    s
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

/// The target directory this binary was built into (`<target>/release/workload-suite`).
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Output of a command, trimmed, or None if it could not run or failed.
fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// `HOTSLAB_LIB`, or the release cdylib built now.
fn hotslab_lib(target: &Path) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("HOTSLAB_LIB") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("HOTSLAB_LIB={} does not exist", p.display()))
        };
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("workload-suite: cargo build --release -p hotslab-capi");
    let st = Command::new(cargo)
        .args(["build", "--release", "-p", "hotslab-capi"])
        .env("CARGO_TARGET_DIR", target)
        .current_dir(workspace_root())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !st.success() {
        return Err("cargo build --release -p hotslab-capi failed".into());
    }
    let p = target.join("release/libhotslab.so");
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!("{} missing after the build", p.display()))
    }
}

/// Compiles every program (in parallel) into `bin_dir`.
fn compile(bin_dir: &Path) -> Result<(), String> {
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
    std::fs::create_dir_all(bin_dir).map_err(|e| format!("{}: {e}", bin_dir.display()))?;
    let mut jobs = Vec::new();
    for s in sources() {
        let child = Command::new("gcc")
            .args(["-O2", "-pthread", "-Wall", "-Wextra", "-o"])
            .arg(bin_dir.join(s))
            .arg(src_dir.join(format!("{s}.c")))
            .spawn()
            .map_err(|e| format!("cannot run gcc: {e}"))?;
        jobs.push((s, child));
    }
    let mut failed = Vec::new();
    for (s, mut c) in jobs {
        if !c.wait().is_ok_and(|st| st.success()) {
            failed.push(s);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("gcc failed for {}", failed.join(", ")))
    }
}

/// One finished run.
struct RunOut {
    secs: f64,
    rss_kib: i64,
    stdout: String,
    /// Err(reason) when the program failed.
    status: Result<(), String>,
}

fn describe(status: i32) -> Option<String> {
    if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => None,
            c => Some(format!("exit status {c}")),
        }
    } else if libc::WIFSIGNALED(status) {
        Some(format!("killed by signal {}", libc::WTERMSIG(status)))
    } else {
        Some(format!("wait status {status:#x}"))
    }
}

/// Blocks until `pid` can be reaped or `timeout` passes; false on timeout. Uses a pidfd so the
/// runner sleeps in the kernel while the program runs (no polling noise on a 2-core machine);
/// falls back to 1 ms polling where pidfd_open is missing.
fn wait_exit(pid: libc::pid_t, timeout: Duration) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as libc::c_int;
    let deadline = Instant::now() + timeout;
    if fd >= 0 {
        let mut ready = false;
        while !ready {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: polls one descriptor we own, with a valid pollfd.
            ready = unsafe { libc::poll(&mut p, 1, ms) } > 0;
        }
        // SAFETY: closes the descriptor pidfd_open gave us.
        unsafe { libc::close(fd) };
        return ready;
    }
    while Instant::now() < deadline {
        // SAFETY: WNOWAIT|WEXITED only peeks at our own child's state; the siginfo is ours.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is set by waitid when a child changed state.
        if r == 0 && unsafe { info.si_pid() } == pid {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// Runs `exe args` once with `preload` in LD_PRELOAD (none: glibc) and, when given,
/// `HOTSLAB_STATS=stats`; output goes to files so no pipe can fill up.
fn run_once(
    exe: &Path,
    args: &[&str],
    preload: Option<&Path>,
    stats: Option<&Path>,
    scratch: &Path,
    timeout: Duration,
) -> RunOut {
    run_with(exe, args, preload, &[], stats, scratch, timeout)
}

/// [`run_once`] with extra environment variables (the secure-mode column).
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives the peak RSS
fn run_with(
    exe: &Path,
    args: &[&str],
    preload: Option<&Path>,
    env: &[(&str, &str)],
    stats: Option<&Path>,
    scratch: &Path,
    timeout: Duration,
) -> RunOut {
    let (o, e) = (scratch.join("stdout.txt"), scratch.join("stderr.txt"));
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env_remove("LD_PRELOAD")
        .env_remove("HOTSLAB_STATS")
        .env_remove("HOTSLAB_SECURE")
        .envs(env.iter().copied());
    if let Some(p) = preload {
        cmd.env("LD_PRELOAD", p);
    }
    if let Some(s) = stats {
        let _ = std::fs::remove_file(s);
        cmd.env("HOTSLAB_STATS", s);
    }
    let files = File::create(&o).and_then(|f| Ok((f, File::create(&e)?)));
    let (fo, fe) = match files {
        Ok(f) => f,
        Err(err) => return failed(format!("scratch files: {err}")),
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(fo))
        .stderr(Stdio::from(fe));
    let t = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(err) => return failed(format!("spawn {}: {err}", exe.display())),
    };
    let pid = child.id() as libc::pid_t;
    let timed_out = !wait_exit(pid, timeout);
    if timed_out {
        let _ = child.kill();
    }
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; the out-pointers are valid.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let secs = t.elapsed().as_secs_f64();
    let stdout = std::fs::read_to_string(&o).unwrap_or_default();
    let stderr = std::fs::read_to_string(&e).unwrap_or_default();
    let why = if r != pid {
        Some("wait4 failed".to_string())
    } else if timed_out {
        Some(format!("timed out after {} s", timeout.as_secs()))
    } else {
        describe(status)
    };
    let status = match why {
        None => Ok(()),
        Some(w) => {
            let last = stderr.lines().last().unwrap_or("").trim();
            Err(if last.is_empty() {
                w
            } else {
                format!("{w}: {last}")
            })
        }
    };
    RunOut {
        secs,
        rss_kib: ru.ru_maxrss,
        stdout,
        status,
    }
}

fn failed(why: String) -> RunOut {
    RunOut {
        secs: f64::NAN,
        rss_kib: 0,
        stdout: String::new(),
        status: Err(why),
    }
}

fn args_of(w: &Workload, quick: bool) -> Vec<&'static str> {
    let mut v = w.args.to_vec();
    if quick {
        v.push("--quick");
    }
    v
}

/// The Debian package and version that ship `path`, if dpkg knows it.
fn package_of(path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).ok()?;
    let s = output("dpkg-query", &["-S", real.to_str()?])?;
    let pkg = s.split(':').next()?.trim().to_string();
    let ver = output("dpkg-query", &["-W", "-f=${Version}", &pkg])?;
    Some(format!("{pkg} {ver}"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The 1-minute load average, 0 if unknown.
fn load1() -> f64 {
    loadavg()
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let n = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = output("uname", &["-sr"]).unwrap_or_default();
    let gcc = output("gcc", &["-dumpfullversion"]).unwrap_or_default();
    let glibc = output("getconf", &["GNU_LIBC_VERSION"]).unwrap_or_default();
    format!("{cpu}, {n} CPUs, {kernel}, gcc {gcc}, {glibc}")
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse_args(&argv) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&o, &argv) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("workload-suite: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The whole run; Ok(false) when some program failed.
fn run(o: &Opts, argv: &[String]) -> Result<bool, String> {
    let load_before = loadavg();
    // The tree the library is built from, read before the (long) run.
    let commit = output(
        "git",
        &[
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ],
    )
    .unwrap_or_else(|| "unknown".into());
    let dirty = output(
        "git",
        &["-C", env!("CARGO_MANIFEST_DIR"), "status", "--porcelain"],
    )
    .is_some_and(|s| !s.is_empty());
    let target = target_dir();
    let hotslab = hotslab_lib(&target)?;
    let mut notes: Vec<String> = Vec::new();
    let mut names: Vec<String> = vec!["glibc".into()];
    let mut libs: Vec<Option<PathBuf>> = vec![None];
    for (name, file) in PEERS {
        let p = Path::new(PEER_DIR).join(file);
        if p.is_file() {
            names.push(name.to_string());
            libs.push(Some(p));
        } else {
            let msg = format!("{name} left out: {} is not installed", p.display());
            eprintln!("workload-suite: NOTE: {msg}");
            notes.push(format!("**{msg}.**"));
        }
    }
    names.push("hotslab".into());
    libs.push(Some(hotslab.clone()));
    let mut envs: Vec<&[(&str, &str)]> = vec![&[]; names.len()];
    if o.secure {
        // The secure mode's cost, measured in the same interleaved run.
        names.push("hotslab-secure".into());
        libs.push(Some(hotslab.clone()));
        envs.push(&[("HOTSLAB_SECURE", "1")]);
    }

    let bin_dir = target.join("workloads");
    compile(&bin_dir)?;
    let scratch = bin_dir.join("run");
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let chosen: Vec<Workload> = WORKLOADS
        .iter()
        .filter(|w| o.only.is_empty() || o.only.iter().any(|n| n == w.name))
        .copied()
        .collect();
    let mut problems: Vec<String> = Vec::new();

    // Untimed: did hotslab serve the program's allocations?
    let stats = scratch.join("stats.txt");
    let mut served: Vec<Option<(Served, u64)>> = Vec::new();
    for w in &chosen {
        let exe = bin_dir.join(w.source);
        let r = run_once(
            &exe,
            &args_of(w, true),
            Some(&hotslab),
            Some(&stats),
            &scratch,
            o.timeout,
        );
        let want = parse_ok(w.source, &r.stdout);
        let sv = parse_stats(&std::fs::read_to_string(&stats).unwrap_or_default());
        match (&r.status, want) {
            (Err(why), _) => problems.push(format!("{} / hotslab (stats run): {why}", w.name)),
            (Ok(()), None) => {
                problems.push(format!("{} / hotslab (stats run): no ok line", w.name))
            }
            (Ok(()), Some(n)) if sv.tables == 0 || sv.allocs < n => problems.push(format!(
                "{}: hotslab did not serve the traffic: {} tables, {} allocs < the program's {n} \
                 small mallocs",
                w.name, sv.tables, sv.allocs
            )),
            _ => {}
        }
        served.push(want.map(|n| (sv, n)));
    }

    let mut cells: Vec<Vec<Cell>> = vec![vec![Cell::default(); names.len()]; chosen.len()];
    let mut lines: Vec<Vec<Option<String>>> = vec![vec![None; names.len()]; chosen.len()];
    let mut load_max = 0.0f64;
    for round in 0..o.rounds {
        for (wi, w) in chosen.iter().enumerate() {
            load_max = load_max.max(load1());
            let exe = bin_dir.join(w.source);
            let args = args_of(w, o.quick);
            // Every allocator once per round; the starting one rotates so none always goes first.
            for k in 0..names.len() {
                let a = (round + k) % names.len();
                let r = run_with(
                    &exe,
                    &args,
                    libs[a].as_deref(),
                    envs[a],
                    None,
                    &scratch,
                    o.timeout,
                );
                let cell = &mut cells[wi][a];
                let status = r.status.and_then(|()| {
                    ok_line(w.source, &r.stdout)
                        .map(str::to_string)
                        .ok_or_else(|| "no ok line".to_string())
                });
                match status {
                    Ok(line) => {
                        eprintln!(
                            "round {}/{} {:14} {:9} {:7.3} s {:8.1} MiB",
                            round + 1,
                            o.rounds,
                            w.name,
                            names[a],
                            r.secs,
                            r.rss_kib as f64 / 1024.0
                        );
                        cell.secs.push(r.secs);
                        cell.rss_kib.push(r.rss_kib);
                        lines[wi][a] = Some(line);
                    }
                    Err(why) => {
                        eprintln!("round {} {} {}: FAILED: {why}", round + 1, w.name, names[a]);
                        problems.push(format!("{} / {}: {why}", w.name, names[a]));
                        cell.failures.push(why);
                    }
                }
            }
        }
    }

    // The programs' results must not depend on the allocator.
    for (wi, w) in chosen.iter().enumerate() {
        let key = |l: &str| -> String {
            if w.deterministic {
                l.to_string()
            } else {
                parse_ok(w.source, l).map_or_else(String::new, |n| n.to_string())
            }
        };
        let seen: Vec<(usize, String)> = lines[wi]
            .iter()
            .enumerate()
            .filter_map(|(a, l)| Some((a, key(l.as_deref()?))))
            .collect();
        if let Some((_, first)) = seen.first() {
            for (a, k) in &seen[1..] {
                if k != first {
                    problems.push(format!(
                        "{}: output under {} ({k}) differs from {} ({first})",
                        w.name, names[*a], names[seen[0].0]
                    ));
                }
            }
        }
    }

    let load_after = loadavg();
    let mut preamble: Vec<String> = o.notes.clone();
    if !preamble.is_empty() {
        preamble.push(String::new());
    }
    preamble.push(format!(
        "{} round(s){}; each round runs every workload under every allocator once (the \
         allocator that goes first rotates per round). Time is the median wall time from spawn \
         to reap; peak RSS is `wait4`'s `ru_maxrss`, the largest over the rounds. Programs are \
         built with `gcc -O2 -pthread`; each verifies the data in its blocks and exits non-zero \
         on corruption; their `ok` lines are compared across allocators.",
        o.rounds,
        if o.quick {
            ", `--quick` parameters"
        } else {
            ""
        }
    ));
    preamble.push(String::new());
    preamble.push(format!("- machine: {}", machine()));
    preamble.push(format!(
        "- load average (1, 5, 15 min) before: {load_before}; after: {load_after}; largest \
         1-min load seen between workloads: {load_max:.2} (the suite itself adds up to ~2)"
    ));
    preamble.push(format!(
        "- hotslab: `{}` at commit {commit}{}",
        hotslab.display(),
        if dirty { " (work tree modified)" } else { "" }
    ));
    for (n, l) in names.iter().zip(&libs) {
        if let Some(l) = l {
            if n != "hotslab" {
                let pkg = package_of(l).unwrap_or_else(|| "package unknown".into());
                preamble.push(format!("- {n}: `{}` ({pkg})", l.display()));
            }
        } else {
            preamble.push(format!("- {n}: no preload (the system malloc)"));
        }
    }
    preamble.extend(notes);
    if !problems.is_empty() {
        preamble.push(String::new());
        preamble.push("**Failures:**".into());
        for p in &problems {
            preamble.push(format!("- {p}"));
        }
    }
    let mut shapes =
        String::from("\n## The workloads\n\n| workload | program | shape |\n|---|---|---|\n");
    for w in &chosen {
        let mut prog = format!("`workloads/{}.c`", w.source);
        for a in w.args {
            prog.push(' ');
            prog.push_str(a);
        }
        shapes.push_str(&format!("| {} | {prog} | {} |\n", w.name, w.shape));
    }
    let command = command_line(argv);
    let mut text = render(&Report {
        allocators: &names,
        workloads: &chosen,
        cells: &cells,
        served: &served,
        preamble: &preamble,
        command: &command,
    });
    text.push_str(&shapes);
    if !o.check || o.out.is_some() {
        println!("{text}");
    }
    if let Some(out) = &o.out {
        std::fs::write(out, &text).map_err(|e| format!("{}: {e}", out.display()))?;
        eprintln!("workload-suite: wrote {}", out.display());
    }
    let runs = chosen.len() * names.len() * o.rounds;
    if problems.is_empty() {
        eprintln!(
            "workload-suite: {} workloads x {} allocators x {} round(s) = {runs} runs, all passed",
            chosen.len(),
            names.len(),
            o.rounds
        );
        Ok(true)
    } else {
        eprintln!("workload-suite: {} problem(s):", problems.len());
        for p in &problems {
            eprintln!("  {p}");
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn args_parse_and_reject_unknown_workloads() {
        let o = parse_args(&s(&["--quick", "--rounds", "2", "--only", "larson,cfrac"])).unwrap();
        assert!(o.quick && !o.check);
        assert_eq!(o.rounds, 2);
        assert_eq!(o.only, ["larson", "cfrac"]);
        assert_eq!(o.timeout, Duration::from_secs(30));
        assert!(parse_args(&s(&["--only", "nope"])).is_err());
        assert!(parse_args(&s(&["--rounds", "0"])).is_err());
        assert!(parse_args(&s(&["--bogus"])).is_err());
    }

    #[test]
    fn command_line_quotes_spaces() {
        assert_eq!(
            command_line(&s(&["--note", "pre redesign"])),
            "cargo run --release -p hotslab-benches --bin workload-suite -- --note 'pre redesign'"
        );
    }

    #[test]
    fn a_crash_and_a_timeout_are_failures_and_a_clean_exit_is_not() {
        let dir = std::env::temp_dir().join(format!("wl-suite-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sh = Path::new("/bin/sh");
        let t = Duration::from_secs(10);
        let ok = run_once(
            sh,
            &["-c", "echo x ok small_mallocs=3"],
            None,
            None,
            &dir,
            t,
        );
        assert!(ok.status.is_ok());
        assert_eq!(parse_ok("x", &ok.stdout), Some(3));
        assert!(ok.rss_kib > 0);
        let segv = run_once(sh, &["-c", "kill -SEGV $$"], None, None, &dir, t);
        assert_eq!(segv.status.unwrap_err(), "killed by signal 11");
        let bad = run_once(sh, &["-c", "echo corrupt >&2; exit 2"], None, None, &dir, t);
        assert_eq!(bad.status.unwrap_err(), "exit status 2: corrupt");
        let slow = run_once(
            sh,
            &["-c", "sleep 5"],
            None,
            None,
            &dir,
            Duration::from_millis(200),
        );
        assert!(slow.status.unwrap_err().starts_with("timed out"));
        assert!(slow.secs < 4.0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
