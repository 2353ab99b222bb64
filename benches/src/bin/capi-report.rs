//! The figures of `benches/RESULTS-capi.md` that are not timings: which heap misuses each
//! allocator stops (`--security`), how much memory a program keeps after freeing everything
//! (`--rss`, curves over 2 s of idling), and the secure mode's cost, summarised from the
//! standard-workload suite's existing `hotslab-secure` column (`--cost`). Runs C programs of its
//! own (`benches/capi/security.c`, `benches/capi/rss.c`) under glibc (no preload), Debian's
//! mimalloc and jemalloc, and `libhotslab.so` in its default, debug and secure modes.
//!
//! ```sh
//! cargo run --release -p hotslab-benches --bin capi-report -- --out benches/RESULTS-capi.md  # all three sections
//! cargo run --release -p hotslab-benches --bin capi-report -- --security --check           # CI: the misuse set, checked
//! #   options: --security --rss --cost (default: all)   --out FILE (replace the sections in FILE,
//! #            write capi-rss.svg beside it)   --check (exit 1 if the control case fails, a case hangs,
//! #            or a hardened mode stops less than the default mode)
//! ```
//!
//! Without `--out` the sections go to stdout. Nothing here is timed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use hotslab_benches::plots::{self, LinePanel, Panel};

const PEER_DIR: &str = "/usr/lib/x86_64-linux-gnu";

/// One allocator configuration: a name, a preload (None: glibc) and extra environment.
#[derive(Clone, Debug)]
struct Alloc {
    name: &'static str,
    preload: Option<PathBuf>,
    env: Vec<(&'static str, &'static str)>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ has a parent")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| workspace_root().join("target"))
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
    eprintln!("capi-report: cargo build --release -p hotslab-capi");
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
    p.is_file()
        .then_some(p.clone())
        .ok_or_else(|| format!("{} missing after the build", p.display()))
}

fn compile(name: &str, flags: &[&str], out_dir: &Path) -> Result<PathBuf, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("capi")
        .join(format!("{name}.c"));
    std::fs::create_dir_all(out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let exe = out_dir.join(name);
    let o = Command::new("gcc")
        .args(flags)
        .args(["-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .map_err(|e| format!("cannot run gcc: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "gcc {}: {}",
            src.display(),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(exe)
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
struct Ran {
    /// Exit code, if it exited.
    code: Option<i32>,
    /// Signal, if it was killed.
    signal: Option<i32>,
    /// Timed out (then killed).
    hung: bool,
    stdout: String,
    stderr: String,
}

fn run(exe: &Path, args: &[&str], a: &Alloc, timeout: Duration, scratch: &Path) -> Ran {
    use std::os::unix::process::ExitStatusExt;
    let (o, e) = (scratch.join("stdout.txt"), scratch.join("stderr.txt"));
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env_remove("LD_PRELOAD")
        .env_remove("HOTSLAB_DEBUG")
        .env_remove("HOTSLAB_SECURE")
        .env_remove("HOTSLAB_BACKGROUND")
        // Every allocator as shipped: no tuning or checking options from the environment.
        .env_remove("MALLOC_CONF")
        .env_remove("MALLOC_CHECK_")
        .env_remove("MALLOC_PERTURB_")
        .env_remove("GLIBC_TUNABLES")
        .env_remove("MIMALLOC_OPTIONS")
        .envs(a.env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&o).expect("stdout file")))
        .stderr(Stdio::from(std::fs::File::create(&e).expect("stderr file")));
    if let Some(p) = &a.preload {
        cmd.env("LD_PRELOAD", p);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(err) => {
            return Ran {
                code: Some(127),
                signal: None,
                hung: false,
                stdout: String::new(),
                stderr: format!("cannot start: {err}"),
            }
        }
    };
    let deadline = Instant::now() + timeout;
    let (status, hung) = loop {
        match child.try_wait() {
            Ok(Some(st)) => break (Some(st), false),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                break (child.wait().ok(), true);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => break (None, false),
        }
    };
    Ran {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        hung,
        stdout: std::fs::read_to_string(&o).unwrap_or_default(),
        stderr: std::fs::read_to_string(&e).unwrap_or_default(),
    }
}

// ---------------------------------------------------------------------------------------------
// Security

/// What happened to one misuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Stopped with a message from the allocator (abort, trap).
    Caught,
    /// Killed by a signal with nothing on stderr (a segfault on the way).
    Crashed,
    /// An impossible size was refused (NULL / ENOMEM).
    Refused,
    /// A message on stderr, but the program ran to its end.
    Warned,
    /// Ran to its end silently.
    Unnoticed,
    /// Did not end within the timeout.
    Hung,
    /// The case could not run (setup failed).
    Error,
}

impl Outcome {
    fn stopped(self) -> bool {
        matches!(self, Outcome::Caught | Outcome::Crashed | Outcome::Refused)
    }
    fn cell(self) -> &'static str {
        match self {
            Outcome::Caught => "**stopped**",
            Outcome::Crashed => "crash",
            Outcome::Refused => "refused",
            Outcome::Warned => "warned",
            Outcome::Unnoticed => "–",
            Outcome::Hung => "hung",
            Outcome::Error => "error",
        }
    }
}

/// The program's own lines, which are not the allocator's messages.
const OWN_LINES: &[&str] = &[
    "forged pointer handed out",
    "the same block handed out twice",
];

fn allocator_message(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !OWN_LINES.contains(l))
        .map(|l| l.chars().take(110).collect())
}

fn classify(r: &Ran) -> (Outcome, Option<String>) {
    let msg = allocator_message(&r.stderr);
    let out = if r.hung {
        Outcome::Hung
    } else if r.signal.is_some() {
        if msg.is_some() {
            Outcome::Caught
        } else {
            Outcome::Crashed
        }
    } else {
        match r.code {
            Some(3) if msg.is_some() => Outcome::Warned,
            Some(3) | Some(0) => Outcome::Unnoticed,
            Some(4) => Outcome::Refused,
            Some(2) | Some(127) | None => Outcome::Error,
            // Some allocators report and exit instead of aborting.
            Some(_) if msg.is_some() => Outcome::Caught,
            Some(_) => Outcome::Crashed,
        }
    };
    (out, msg)
}

struct Case {
    name: String,
    class: String,
    what: String,
}

struct SecurityResult {
    allocs: Vec<Alloc>,
    cases: Vec<Case>,
    /// [case][alloc]
    outcomes: Vec<Vec<(Outcome, Option<String>)>>,
    control_ok: Vec<bool>,
}

fn security(allocs: &[Alloc], work: &Path) -> Result<SecurityResult, String> {
    let exe = compile(
        "security",
        &[
            "-O0",
            "-Wall",
            "-Wno-free-nonheap-object",
            "-Wno-use-after-free",
            "-Wno-alloc-size-larger-than",
            "-Wno-stringop-overflow",
            "-Wno-array-bounds",
        ],
        &work.join("bin"),
    )?;
    let list = Command::new(&exe)
        .arg("list")
        .output()
        .map_err(|e| format!("security list: {e}"))?;
    let cases: Vec<Case> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some(Case {
                name: f.next()?.to_string(),
                class: f.next()?.to_string(),
                what: f.next()?.to_string(),
            })
        })
        .collect();
    if cases.is_empty() {
        return Err("security list printed no case".into());
    }
    let timeout = Duration::from_secs(20);
    let control_ok = allocs
        .iter()
        .map(|a| {
            let r = run(&exe, &["ok"], a, timeout, work);
            r.code == Some(0) && r.stdout.trim() == "ok"
        })
        .collect();
    let mut outcomes = Vec::new();
    for c in &cases {
        let row: Vec<(Outcome, Option<String>)> = allocs
            .iter()
            .map(|a| classify(&run(&exe, &[&c.name], a, timeout, work)))
            .collect();
        eprintln!(
            "capi-report: {:<26} {}",
            c.name,
            row.iter()
                .map(|(o, _)| format!("{:?}", o))
                .collect::<Vec<_>>()
                .join(" ")
        );
        outcomes.push(row);
    }
    Ok(SecurityResult {
        allocs: allocs.to_vec(),
        cases,
        outcomes,
        control_ok,
    })
}

fn security_md(r: &SecurityResult, command: &str) -> String {
    let mut s = String::new();
    let failed: Vec<&str> = r
        .allocs
        .iter()
        .zip(&r.control_ok)
        .filter(|(_, ok)| !**ok)
        .map(|(a, _)| a.name)
        .collect();
    let control = if failed.is_empty() {
        "The control case (no mistake) ran clean under every one.".to_string()
    } else {
        format!(
            "**The control case (no mistake) failed under {}**: their rows mean nothing.",
            failed.join(", ")
        )
    };
    let n = r.cases.len();
    let _ = writeln!(s, "## Heap misuse: what each allocator stops\n");
    let _ = writeln!(
        s,
        "Produced by `{command}`. {n} programs of our own (`benches/capi/security.c`), one mistake each, in the \
         classes of isoalloc's and mimalloc-bench's security tests; each runs once per allocator. {control} \
         **stopped**: the process was ended with a \
         message on stderr (an abort); crash: killed by a signal with no message (a segfault on the way, \
         stopped but not diagnosed); refused: an impossible size got NULL; warned: a message, but the \
         program ran on; –: nothing noticed. Counted as stopping: stopped, crash, refused. One run per cell: \
         where a crash depends on what happens to lie at an address (a wild free, a corrupted list), another \
         run may differ by a case or two.\n"
    );
    let _ = write!(s, "| allocator |");
    let mut classes: Vec<&str> = Vec::new();
    for c in &r.cases {
        if !classes.contains(&c.class.as_str()) {
            classes.push(&c.class);
        }
    }
    for c in &classes {
        let k = r.cases.iter().filter(|x| x.class == *c).count();
        let _ = write!(s, " {c} ({k}) |");
    }
    let _ = writeln!(s, " stops (of {n}) | with a message |");
    let _ = writeln!(s, "|---|{}---:|---:|", "---:|".repeat(classes.len()));
    for (j, a) in r.allocs.iter().enumerate() {
        let _ = write!(s, "| {} |", a.name);
        for c in &classes {
            let k = r
                .cases
                .iter()
                .zip(&r.outcomes)
                .filter(|(x, o)| x.class == *c && o[j].0.stopped())
                .count();
            let _ = write!(s, " {k} |");
        }
        let stops = r.outcomes.iter().filter(|o| o[j].0.stopped()).count();
        let msgs = r
            .outcomes
            .iter()
            .filter(|o| o[j].0 == Outcome::Caught)
            .count();
        let _ = writeln!(s, " **{stops}** | {msgs} |");
    }
    let _ = writeln!(s, "\nPer case:\n");
    let _ = write!(s, "| case | class | mistake |");
    for a in &r.allocs {
        let _ = write!(s, " {} |", a.name);
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|---|---|---|{}", "---|".repeat(r.allocs.len()));
    for (c, row) in r.cases.iter().zip(&r.outcomes) {
        let _ = write!(s, "| `{}` | {} | {} |", c.name, c.class, c.what);
        for (o, _) in row {
            let _ = write!(s, " {} |", o.cell());
        }
        let _ = writeln!(s);
    }
    if let Some(j) = r.allocs.iter().position(|a| a.name == "hotslab") {
        let _ = writeln!(s, "\nhotslab's messages (default mode):\n");
        let _ = writeln!(s, "| case | message |");
        let _ = writeln!(s, "|---|---|");
        for (c, row) in r.cases.iter().zip(&r.outcomes) {
            if let (Outcome::Caught, Some(m)) = &row[j] {
                let _ = writeln!(s, "| `{}` | `{}` |", c.name, m.replace('|', "\\|"));
            }
        }
    }
    let _ = writeln!(
        s,
        "\nThe default mode's checks cost a compare or two per `free`; debug (`HOTSLAB_DEBUG=1`) adds red \
         zones, poisoning and a hardened freelist; secure (`HOTSLAB_SECURE=1`) adds shuffled slots, a FIFO \
         quarantine and guard pages (its cost: below). glibc, Debian's mimalloc and jemalloc run as shipped, \
         with no option set in the environment (no `GLIBC_TUNABLES`, `MALLOC_CHECK_`, `MALLOC_CONF`)."
    );
    s
}

/// The `--check` verdicts: empty when all hold.
fn security_check(r: &SecurityResult) -> Vec<String> {
    let mut bad = Vec::new();
    for (a, ok) in r.allocs.iter().zip(&r.control_ok) {
        if !ok {
            bad.push(format!("the control case failed under {}", a.name));
        }
    }
    for (c, row) in r.cases.iter().zip(&r.outcomes) {
        for (a, (o, _)) in r.allocs.iter().zip(row) {
            if matches!(o, Outcome::Hung | Outcome::Error) {
                bad.push(format!("{} under {}: {o:?}", c.name, a.name));
            }
        }
    }
    let idx = |n: &str| r.allocs.iter().position(|a| a.name == n);
    if let Some(g) = idx("glibc") {
        // glibc's tcache catches an immediate double free: the classifier must see that.
        if let Some(k) = r.cases.iter().position(|c| c.name == "df_immediate") {
            if r.outcomes[k][g].0 != Outcome::Caught {
                bad.push("glibc's double-free abort was not classified as stopped".into());
            }
        }
    }
    if let Some(d) = idx("hotslab") {
        for hardened in ["hotslab debug", "hotslab secure"] {
            let Some(h) = idx(hardened) else { continue };
            for (c, row) in r.cases.iter().zip(&r.outcomes) {
                // A crash is an accident (a corrupted list followed), not a check: only the
                // default mode's diagnosed stops must hold in the hardened modes.
                if row[d].0 == Outcome::Caught && !row[h].0.stopped() {
                    bad.push(format!(
                        "{}: caught by the default mode, not stopped by {hardened}",
                        c.name
                    ));
                }
            }
        }
    }
    bad
}

// ---------------------------------------------------------------------------------------------
// RSS

struct Curve {
    peak_kib: f64,
    base_kib: f64,
    step_ms: f64,
    curve_kib: Vec<f64>,
}

fn parse_curve(stdout: &str) -> Option<Curve> {
    let line = stdout.lines().find(|l| l.starts_with("rss "))?;
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
    };
    Some(Curve {
        peak_kib: field("peak_kib")?.parse().ok()?,
        base_kib: field("base_kib")?.parse().ok()?,
        step_ms: field("step_ms")?.parse().ok()?,
        curve_kib: field("curve_kib")?
            .split(',')
            .map(|v| v.parse().ok())
            .collect::<Option<Vec<f64>>>()?,
    })
}

const SCENARIOS: &[(&str, &str)] = &[
    (
        "idle",
        "2 M small objects (32-168 B) freed, then idle, no call",
    ),
    ("trim", "the same, then one malloc_trim(0), then idle"),
    (
        "threads",
        "8 threads allocate and free 120,000 objects each, then block",
    ),
];

struct RssResult {
    allocs: Vec<Alloc>,
    /// [scenario][alloc]
    curves: Vec<Vec<Option<Curve>>>,
}

fn rss(allocs: &[Alloc], work: &Path) -> Result<RssResult, String> {
    let exe = compile("rss", &["-O1", "-Wall"], &work.join("bin"))?;
    let mut curves = Vec::new();
    for (sc, _) in SCENARIOS {
        let row = allocs
            .iter()
            .map(|a| {
                let r = run(&exe, &[sc], a, Duration::from_secs(60), work);
                let c = parse_curve(&r.stdout);
                if c.is_none() {
                    eprintln!(
                        "capi-report: rss {sc} under {}: no curve ({:?} {:?}) {}",
                        a.name, r.code, r.signal, r.stderr
                    );
                }
                c
            })
            .collect();
        curves.push(row);
        eprintln!("capi-report: rss {sc} done");
    }
    Ok(RssResult {
        allocs: allocs.to_vec(),
        curves,
    })
}

fn mib(kib: f64) -> String {
    format!("{:.1}", kib / 1024.0)
}

fn rss_md(r: &RssResult, command: &str, svg: Option<&str>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## Memory given back: RSS after everything is freed\n");
    let _ = writeln!(
        s,
        "Produced by `{command}` (`benches/capi/rss.c`; RSS from `/proc/self/statm`, sampled right \
         after the frees and then every 100 ms while the program idles; one run per cell, allocators one \
         after another). Peak: RSS with every object live (`threads`: `ru_maxrss`). Under mimalloc and \
         jemalloc `malloc_trim` is glibc's and does nothing for them; both give freed pages back lazily (after \
         a decay time, or with `MADV_FREE`, which leaves pages resident until the kernel needs them), so this \
         2 s window shows what a program keeps soon after a burst, not everything they could give back later. \
         `hotslab, no background`: `HOTSLAB_BACKGROUND=0` (no purger thread).\n"
    );
    let _ = writeln!(
        s,
        "| scenario | allocator | at start (MiB) | peak (MiB) | after free (MiB) | 0.5 s | 1 s | 1.5 s | 2 s | % of peak at 1.5 s |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for ((sc, _), row) in SCENARIOS.iter().zip(&r.curves) {
        for (a, c) in r.allocs.iter().zip(row) {
            let Some(c) = c else {
                let _ = writeln!(s, "| {sc} | {} | failed | | | | | | | |", a.name);
                continue;
            };
            let at = |ms: f64| {
                let k = (ms / c.step_ms).round() as usize;
                c.curve_kib.get(k).copied().unwrap_or(f64::NAN)
            };
            let pct = 100.0 * at(1500.0) / c.peak_kib.max(1.0);
            let _ = writeln!(
                s,
                "| {sc} | {} | {} | {} | {} | {} | {} | {} | {} | {pct:.1} |",
                a.name,
                mib(c.base_kib),
                mib(c.peak_kib),
                mib(at(0.0)),
                mib(at(500.0)),
                mib(at(1000.0)),
                mib(at(1500.0)),
                mib(at(2000.0)),
            );
        }
    }
    let goal = |sc: &str, limit: f64| -> String {
        let k = SCENARIOS.iter().position(|x| x.0 == sc);
        let j = r.allocs.iter().position(|a| a.name == "hotslab");
        match (k, j) {
            (Some(k), Some(j)) => match &r.curves[k][j] {
                Some(c) => {
                    let v = c
                        .curve_kib
                        .get((1500.0 / c.step_ms).round() as usize)
                        .copied()
                        .unwrap_or(f64::NAN);
                    let pct = 100.0 * v / c.peak_kib.max(1.0);
                    format!(
                        "{pct:.1} % of its {} MiB peak (goal ≤ {limit:.0} %: {})",
                        mib(c.peak_kib),
                        if pct <= limit { "met" } else { "not met" }
                    )
                }
                None => "no data".into(),
            },
            _ => "not run".into(),
        }
    };
    let _ = writeln!(
        s,
        "\nhotslab after 1.5 s idle without any call: {}; after `malloc_trim(0)`: {}; with 8 idle \
         threads' caches: {}.",
        goal("idle", 25.0),
        goal("trim", 10.0),
        goal("threads", 25.0)
    );
    if let Some(f) = svg {
        let _ = writeln!(s, "\n![RSS curves after freeing everything]({f})");
    }
    s
}

fn rss_svg(r: &RssResult) -> String {
    let mut panels = Vec::new();
    for ((sc, what), row) in SCENARIOS.iter().zip(&r.curves) {
        let series: Vec<(String, Vec<(f64, f64)>)> = r
            .allocs
            .iter()
            .zip(row)
            .filter_map(|(a, c)| {
                let c = c.as_ref()?;
                Some((
                    a.name.to_string(),
                    c.curve_kib
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (i as f64 * c.step_ms, v / 1024.0))
                        .collect(),
                ))
            })
            .collect();
        let hot = r
            .allocs
            .iter()
            .position(|a| a.name == "hotslab")
            .and_then(|j| row[j].as_ref());
        let marks = match (*sc, hot) {
            ("idle", Some(c)) => {
                vec![(c.peak_kib / 1024.0 * 0.25, "25 % of hotslab's peak".into())]
            }
            ("trim", Some(c)) => {
                vec![(c.peak_kib / 1024.0 * 0.10, "10 % of hotslab's peak".into())]
            }
            _ => Vec::new(),
        };
        let peaks: Vec<String> = r
            .allocs
            .iter()
            .zip(row)
            .filter_map(|(a, c)| Some(format!("{} {}", a.name, mib(c.as_ref()?.peak_kib))))
            .collect();
        panels.push(Panel::Lines(LinePanel {
            title: format!("{sc}: {what}"),
            source: format!("peak MiB: {}", peaks.join(", ")),
            x_label: "time since the last free (ms)".into(),
            y_label: "RSS (MiB)".into(),
            series,
            marks,
        }));
    }
    plots::figure(
        "RSS after a program frees everything (lower is better)",
        &panels,
        "capi-report --rss: benches/capi/rss.c under LD_PRELOAD, RSS from /proc/self/statm every 100 ms; one run each.",
    )
}

// ---------------------------------------------------------------------------------------------
// Secure-mode cost, from RESULTS-workloads.md

fn cost_md(workloads_md: &str) -> Option<String> {
    let tables = plots::parse_tables(workloads_md);
    let t = tables
        .iter()
        .find(|t| t.col("allocator").is_some() && t.col("median time (s)").is_some())?;
    let (ct, cr) = (t.col("median time (s)")?, t.col("peak RSS (MiB)")?);
    let cell = |w: &str, a: &str| -> Option<(f64, f64)> {
        let r = t.rows.iter().find(|r| {
            r.first().is_some_and(|c| c.trim() == w) && r.get(1).is_some_and(|c| c.trim() == a)
        })?;
        Some((plots::number(r.get(ct)?)?, plots::number(r.get(cr)?)?))
    };
    let mut ws: Vec<String> = Vec::new();
    for r in &t.rows {
        if let Some(w) = r.first() {
            if !ws.contains(w) {
                ws.push(w.clone());
            }
        }
    }
    let mut s = String::new();
    let _ = writeln!(s, "## The secure mode's cost\n");
    let _ = writeln!(
        s,
        "Summarised from the `hotslab-secure` column of [RESULTS-workloads.md](RESULTS-workloads.md) (same run, \
         same programs, `HOTSLAB_SECURE=1`; `cargo run --release -p hotslab-benches --bin workload-suite -- \
         --rounds 3 --secure`): the secure mode against hotslab's default mode. That run's host was noisy (see \
         the note there); the ratios come from one interleaved run, the times are medians of 3 rounds.\n"
    );
    let _ = writeln!(
        s,
        "| workload | default (s) | secure (s) | secure / default, time | default RSS (MiB) | secure RSS (MiB) | secure / default, RSS |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    let (mut lt, mut lr, mut n) = (0.0, 0.0, 0);
    for w in &ws {
        let (Some(d), Some(x)) = (cell(w, "hotslab"), cell(w, "hotslab-secure")) else {
            continue;
        };
        let (rt, rr) = (x.0 / d.0, x.1 / d.1);
        lt += rt.ln();
        lr += rr.ln();
        n += 1;
        let _ = writeln!(
            s,
            "| {w} | {:.3} | {:.3} | {rt:.1} | {:.1} | {:.1} | {rr:.2} |",
            d.0, x.0, d.1, x.1
        );
    }
    if n == 0 {
        return None;
    }
    let _ = writeln!(
        s,
        "| **geomean** | | | **{:.1}** | | | **{:.2}** |",
        (lt / n as f64).exp(),
        (lr / n as f64).exp()
    );
    let _ = writeln!(
        s,
        "\nThe secure mode pays most on allocation-bound programs (every secure allocation takes a node \
         part's lock and the FIFO quarantine delays reuse); programs that mostly compute or use large \
         blocks (malloc-large, cache-scratch, cache-thrash) pay nothing measurable. The quarantine and the \
         guard pages cost memory where objects are freed in bulk and reallocated (xmalloc-test)."
    );
    Some(s)
}

// ---------------------------------------------------------------------------------------------

fn set_block(md: &str, name: &str, content: &str) -> String {
    let begin = format!("<!-- capi-report:{name}: begin (generated; do not edit) -->");
    let end = format!("<!-- capi-report:{name}: end -->");
    let block = format!("{begin}\n{}\n{end}", content.trim_end());
    let b = md.find(&format!("<!-- capi-report:{name}: begin"));
    let e = md.find(&end);
    match (b, e) {
        (Some(b), Some(e)) if e > b => format!("{}{block}{}", &md[..b], &md[e + end.len()..]),
        _ => format!("{}\n\n{block}\n", md.trim_end()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut sec, mut rss_on, mut cost, mut check) = (false, false, false, false);
    let mut out: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--security" => sec = true,
            "--rss" => rss_on = true,
            "--cost" => cost = true,
            "--check" => check = true,
            "--out" => out = it.next().map(PathBuf::from),
            _ => {
                eprintln!(
                    "usage: capi-report [--security] [--rss] [--cost] [--check] [--out FILE]"
                );
                return ExitCode::from(2);
            }
        }
    }
    if !(sec || rss_on || cost) {
        (sec, rss_on, cost) = (true, true, true);
    }
    let command = format!(
        "cargo run --release -p hotslab-benches --bin capi-report --{}",
        args.iter()
            .filter(|a| *a != "--check")
            .fold(String::new(), |s, a| s + " " + a)
    );
    let target = target_dir();
    let work = target.join("capi-report");
    if let Err(e) = std::fs::create_dir_all(&work) {
        eprintln!("capi-report: {}: {e}", work.display());
        return ExitCode::FAILURE;
    }
    let mut allocs = vec![Alloc {
        name: "glibc",
        preload: None,
        env: vec![],
    }];
    let mut notes = Vec::new();
    for (name, file) in [
        ("mimalloc", "libmimalloc.so.2"),
        ("jemalloc", "libjemalloc.so.2"),
    ] {
        let p = Path::new(PEER_DIR).join(file);
        if p.is_file() {
            allocs.push(Alloc {
                name,
                preload: Some(p),
                env: vec![],
            });
        } else {
            notes.push(format!(
                "{name}: {} is not installed, left out",
                p.display()
            ));
        }
    }
    let mut sections: Vec<(&str, String)> = Vec::new();
    let mut failed = false;
    if sec || rss_on {
        let lib = match hotslab_lib(&target) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("capi-report: {e}");
                return ExitCode::FAILURE;
            }
        };
        let hs = |name, env| Alloc {
            name,
            preload: Some(lib.clone()),
            env,
        };
        if sec {
            let mut set = allocs.clone();
            set.push(hs("hotslab", vec![]));
            set.push(hs("hotslab debug", vec![("HOTSLAB_DEBUG", "1")]));
            set.push(hs("hotslab secure", vec![("HOTSLAB_SECURE", "1")]));
            match security(&set, &work) {
                Ok(r) => {
                    let bad = security_check(&r);
                    for b in &bad {
                        eprintln!("capi-report: CHECK FAILED: {b}");
                    }
                    failed |= check && !bad.is_empty();
                    sections.push(("security", security_md(&r, &command)));
                }
                Err(e) => {
                    eprintln!("capi-report: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        if rss_on {
            let mut set = allocs.clone();
            set.push(hs("hotslab", vec![]));
            set.push(hs(
                "hotslab, no background",
                vec![("HOTSLAB_BACKGROUND", "0")],
            ));
            match rss(&set, &work) {
                Ok(r) => {
                    let svg_name = "capi-rss.svg";
                    let svg_ref = out.as_ref().map(|_| svg_name);
                    if let Some(o) = &out {
                        let p = o.parent().unwrap_or(Path::new(".")).join(svg_name);
                        if let Err(e) = std::fs::write(&p, rss_svg(&r)) {
                            eprintln!("capi-report: {}: {e}", p.display());
                            return ExitCode::FAILURE;
                        }
                    }
                    sections.push(("rss", rss_md(&r, &command, svg_ref)));
                }
                Err(e) => {
                    eprintln!("capi-report: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if cost {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS-workloads.md");
        match std::fs::read_to_string(&p)
            .ok()
            .as_deref()
            .and_then(cost_md)
        {
            Some(s) => sections.push(("cost", s)),
            None => notes.push(format!(
                "no hotslab-secure column in {}: no cost section",
                p.display()
            )),
        }
    }
    for n in &notes {
        eprintln!("capi-report: note: {n}");
    }
    match &out {
        Some(o) => {
            let mut md = std::fs::read_to_string(o).unwrap_or_default();
            for (name, s) in &sections {
                md = set_block(&md, name, s);
            }
            if let Err(e) = std::fs::write(o, md) {
                eprintln!("capi-report: {}: {e}", o.display());
                return ExitCode::FAILURE;
            }
            eprintln!("capi-report: wrote {}", o.display());
        }
        None => {
            for (_, s) in &sections {
                println!("{s}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(code: Option<i32>, signal: Option<i32>, stderr: &str) -> Ran {
        Ran {
            code,
            signal,
            hung: false,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn outcomes_follow_the_exit() {
        let abort = ran(None, Some(6), "free(): double free detected in tcache 2\n");
        assert_eq!(classify(&abort).0, Outcome::Caught);
        assert_eq!(
            classify(&abort).1.as_deref(),
            Some("free(): double free detected in tcache 2")
        );
        assert_eq!(classify(&ran(None, Some(11), "")).0, Outcome::Crashed);
        assert_eq!(classify(&ran(Some(3), None, "")).0, Outcome::Unnoticed);
        // The program's own line is not the allocator's message.
        assert_eq!(
            classify(&ran(Some(3), None, "forged pointer handed out\n")).0,
            Outcome::Unnoticed
        );
        assert_eq!(
            classify(&ran(Some(3), None, "mi: warning\n")).0,
            Outcome::Warned
        );
        assert_eq!(classify(&ran(Some(4), None, "")).0, Outcome::Refused);
        assert_eq!(classify(&ran(Some(2), None, "")).0, Outcome::Error);
        assert!(!Outcome::Warned.stopped() && Outcome::Refused.stopped());
    }

    #[test]
    fn blocks_are_replaced_in_place() {
        let md = "# T\n\ntext\n";
        let once = set_block(md, "rss", "## R\none");
        assert!(once.starts_with("# T\n\ntext\n\n<!-- capi-report:rss: begin"));
        let twice = set_block(&once, "rss", "## R\ntwo");
        assert_eq!(twice.matches("capi-report:rss: begin").count(), 1);
        assert!(twice.contains("two") && !twice.contains("one"));
        let both = set_block(&twice, "cost", "## C");
        assert!(both.find("rss: end").unwrap() < both.find("cost: begin").unwrap());
    }

    #[test]
    fn curves_parse() {
        let c = parse_curve(
            "x\nrss scenario=idle peak_kib=2048 base_kib=10 step_ms=100 curve_kib=5,4,3\n",
        )
        .expect("a curve");
        assert_eq!((c.peak_kib, c.base_kib, c.step_ms), (2048.0, 10.0, 100.0));
        assert_eq!(c.curve_kib, [5.0, 4.0, 3.0]);
        assert!(parse_curve("rss scenario=idle peak_kib=1").is_none());
    }
}
