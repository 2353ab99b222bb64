//! `cargo xtask`: the project's one task runner.
//!
//! It installs what the build needs (Debian packages, nightly components, cargo-fuzz), runs the
//! test tiers as timed stages, and runs the race demo. It owns no library code; it only drives
//! `cargo` and a few system tools, so it must build with nothing but the Rust toolchain.
//!
//! ```text
//! cargo xtask demo            the main job: the race demo (stress table + slabinfo)
//! cargo xtask test            every CI stage (deps, fmt, clippy, tests, hwloc, crate, loom, Miri, ...)
//! cargo xtask test --full     plus the heavy tier (sanitizers, long fuzzing, full benches)
//! cargo xtask test --only S   one stage by name (repeatable)
//! cargo xtask deps            only install what is missing, saying what it installs
//! ```

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Debian packages the workspace needs to build and test.
const APT_PACKAGES: &[&str] = &[
    "libhwloc-dev",         // hwloc stage: the opt-in `hwloc` feature links hwloc 2.x
    "libudev-dev",          // hwloc stage: hwloc's static deps when linking hwlocality
    "libnuma-dev",          // test oracle only (tests/libnuma_oracle.rs)
    "numactl",              // bench runner binds with numactl
    "pkg-config",           // hwlocality's build script finds hwloc with it
    "python3",              // capi: LD_PRELOAD runs of real programs
    "sqlite3",              // capi
    "git",                  // capi
    "gcc",                  // capi: the multi-threaded C test program
    "libc6-dev",            // capi
    "valgrind",             // benches: callgrind instruction counts of the fast path
    "cmake",                // benches: snmalloc-rs builds its C++ with cmake
    "libmimalloc2.0",       // benches: workload-suite and capi preload_bench peers
    "libjemalloc2",         // benches: workload-suite peer
    "libtcmalloc-minimal4", // benches: workload-suite peer
    "tmux",                 // top: hotslab-top driven in a real terminal
];

/// The nightly used for Miri and cargo-fuzz, pinned so CI does not drift.
const NIGHTLY: &str = "nightly-2026-05-20";

struct Stage {
    name: &'static str,
    /// Seconds before the stage is killed and counted as failed.
    timeout: u64,
    /// Part of the heavy `--full` tier only.
    full_only: bool,
    run: fn(&Ctx) -> Result<(), String>,
}

struct Ctx {
    root: PathBuf,
    ci: bool,
    full: bool,
}

fn stages() -> Vec<Stage> {
    vec![
        Stage {
            name: "deps",
            timeout: 900,
            full_only: false,
            run: stage_deps,
        },
        Stage {
            name: "fmt",
            timeout: 120,
            full_only: false,
            run: stage_fmt,
        },
        Stage {
            name: "clippy",
            timeout: 900,
            full_only: false,
            run: stage_clippy,
        },
        Stage {
            name: "test",
            timeout: 1200,
            full_only: false,
            run: stage_test,
        },
        Stage {
            name: "radix",
            timeout: 900,
            full_only: false,
            run: stage_radix,
        },
        Stage {
            name: "race",
            timeout: 600,
            full_only: false,
            run: stage_race,
        },
        Stage {
            name: "capi",
            timeout: 900,
            full_only: false,
            run: stage_capi,
        },
        Stage {
            name: "qemu",
            timeout: 1200,
            full_only: false,
            run: stage_qemu,
        },
        Stage {
            name: "bench",
            timeout: 1200,
            full_only: false,
            run: stage_bench,
        },
        Stage {
            name: "bench-full",
            timeout: 2400,
            full_only: true,
            run: stage_bench_full,
        },
        Stage {
            name: "fuzz",
            timeout: 900,
            full_only: false,
            run: stage_fuzz,
        },
        Stage {
            name: "tsan",
            timeout: 1800,
            full_only: true,
            run: stage_tsan,
        },
        Stage {
            name: "asan",
            timeout: 1800,
            full_only: true,
            run: stage_asan,
        },
        Stage {
            name: "hwloc",
            timeout: 900,
            full_only: false,
            run: stage_hwloc,
        },
        Stage {
            name: "crate",
            timeout: 900,
            full_only: false,
            run: stage_crate,
        },
        Stage {
            name: "loom",
            timeout: 900,
            full_only: false,
            run: stage_loom,
        },
        Stage {
            name: "miri",
            timeout: 900,
            full_only: false,
            run: stage_miri,
        },
    ]
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let root = workspace_root();
    let ci = env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false);
    let full = args.iter().any(|a| a == "--full");
    let ctx = Ctx { root, ci, full };
    let result = match args.first().map(String::as_str) {
        Some("demo") => run_demo(&ctx, &args[1..]),
        Some("test") => run_stages(&ctx, &args[1..]),
        Some("deps") => stage_deps(&ctx),
        _ => {
            eprintln!("usage: cargo xtask <demo|test [--full] [--only STAGE]...|deps>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    let manifest = env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    Path::new(&manifest)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run_stages(ctx: &Ctx, args: &[String]) -> Result<(), String> {
    let mut only: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--only" {
            only.push(it.next().ok_or("--only needs a stage name")?);
        }
    }
    let all = stages();
    for o in &only {
        if !all.iter().any(|s| s.name == *o) {
            return Err(format!("unknown stage {o}"));
        }
    }
    let started = Instant::now();
    let mut summary = Vec::new();
    let mut failed = 0usize;
    for stage in &all {
        if !only.is_empty() && !only.contains(&stage.name) {
            continue;
        }
        if stage.full_only && !ctx.full {
            println!("== stage {}: in --full only", stage.name);
            continue;
        }
        println!("== stage {} (timeout {} s)", stage.name, stage.timeout);
        let t = Instant::now();
        set_deadline(Duration::from_secs(stage.timeout));
        let r = (stage.run)(ctx);
        let secs = t.elapsed().as_secs_f64();
        let verdict = match &r {
            Ok(()) => "ok".to_string(),
            Err(e) => {
                failed += 1;
                format!("FAILED: {e}")
            }
        };
        println!("== stage {} {verdict} in {secs:.1} s", stage.name);
        summary.push((stage.name, verdict, secs));
    }
    println!(
        "\n== summary ({:.1} s in all)",
        started.elapsed().as_secs_f64()
    );
    for (name, verdict, secs) in &summary {
        println!("  {name:<10} {secs:>7.1} s  {verdict}");
    }
    let passed = summary.len() - failed;
    println!("stages: {passed} passed, {failed} failed");
    if failed > 0 {
        Err(format!("{failed} stage(s) failed"))
    } else {
        Ok(())
    }
}

// ---- process helpers -------------------------------------------------------------------------

thread_local! {
    static DEADLINE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

fn set_deadline(d: Duration) {
    DEADLINE.with(|c| c.set(Some(Instant::now() + d)));
}

/// Runs a command in the workspace root, inheriting stdio, killing it at the stage deadline.
fn run(ctx: &Ctx, cmd: &mut Command) -> Result<(), String> {
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(&ctx.root);
    }
    let shown = format!("{cmd:?}");
    println!("$ {shown}");
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    let deadline = DEADLINE.with(|c| c.get());
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{shown} exited with {status}")),
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for {shown}: {e}")),
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{shown} killed at the stage timeout"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cargo() -> Command {
    Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

/// A stage whose tool is missing: a failure under CI, a warning by hand.
fn skipped(ctx: &Ctx, why: &str) -> Result<(), String> {
    if ctx.ci {
        Err(format!("skipped under CI=true: {why}"))
    } else {
        println!("   skipped: {why}");
        Ok(())
    }
}

// ---- stages ----------------------------------------------------------------------------------

fn stage_deps(ctx: &Ctx) -> Result<(), String> {
    apt_deps(ctx)?;
    ensure_nightly(ctx)
}

/// Installs the Debian packages that are missing, saying which.
fn apt_deps(ctx: &Ctx) -> Result<(), String> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !succeeds(Command::new("dpkg").args(["-s", p])))
        .collect();
    if missing.is_empty() {
        println!("   apt packages present: {}", APT_PACKAGES.join(" "));
    } else {
        println!("   installing apt packages: {}", missing.join(" "));
        let sudo = !is_root();
        let mut update = if sudo {
            Command::new("sudo")
        } else {
            Command::new("apt-get")
        };
        if sudo {
            update.arg("apt-get");
        }
        run(ctx, update.args(["update", "-qq"]))?;
        let mut install = if sudo {
            Command::new("sudo")
        } else {
            Command::new("apt-get")
        };
        if sudo {
            install.arg("apt-get");
        }
        install.env("DEBIAN_FRONTEND", "noninteractive");
        run(
            ctx,
            install
                .args(["install", "-y", "-qq", "--no-install-recommends"])
                .args(&missing),
        )?;
    }
    ensure_nightly(ctx)
}

/// Installs the pinned nightly with Miri and rust-src (used by the miri and fuzz stages).
fn ensure_nightly(ctx: &Ctx) -> Result<(), String> {
    let has_miri =
        succeeds(Command::new("cargo").args([&format!("+{NIGHTLY}"), "miri", "--version"]));
    if has_miri {
        println!("   {NIGHTLY} with miri present");
        return Ok(());
    }
    println!("   installing {NIGHTLY} (minimal) with miri and rust-src");
    run(
        ctx,
        Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
            "--component",
            "miri,rust-src",
        ]),
    )
}

fn stage_fmt(ctx: &Ctx) -> Result<(), String> {
    run(ctx, cargo().args(["fmt", "--all", "--", "--check"]))
}

fn stage_clippy(ctx: &Ctx) -> Result<(), String> {
    run(
        ctx,
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )
}

/// The whole workspace with default features, i.e. without hwloc (the `hwloc` stage adds it).
fn stage_test(ctx: &Ctx) -> Result<(), String> {
    run(ctx, cargo().args(["test", "--workspace"]))
}

/// The page map's fallback: with the address space limited to 8 GB (`ulimit -v`), the flat table's
/// 16 GiB reservation is refused and every unit lives in the radix; the library's unit tests and the
/// `GlobalAlloc`, heap and C ABI tests run that way (HOTSLAB_EXPECT_RADIX makes the page-map test
/// assert that the fallback is what ran).
fn stage_radix(ctx: &Ctx) -> Result<(), String> {
    let tests: &[&str] = &[
        "test --release -p hotslab --lib --test global_alloc --test heaps",
        "test --release -p hotslab-capi --test surface --test misuse",
    ];
    for t in tests {
        // Build outside the limit: the compiler and linker are not what this stage tests.
        run(ctx, cargo().args(t.split(' ')).arg("--no-run"))?;
        let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(
            ctx,
            Command::new("sh")
                .env("HOTSLAB_EXPECT_RADIX", "1")
                .args(["-c", &format!("ulimit -v 8000000 && exec {cargo} {t}")]),
        )?;
    }
    Ok(())
}

/// The race stress run with pause points (real threads), then the demo exactly as the README runs it.
fn stage_race(ctx: &Ctx) -> Result<(), String> {
    run(
        ctx,
        cargo().args([
            "test",
            "--release",
            "-p",
            "hotslab",
            "--features",
            "pause-points",
            "--test",
            "race_stress",
        ]),
    )?;
    run_demo(ctx, &[])
}

/// libhotslab.so as malloc for python3, sqlite3, git and a multi-threaded C program.
/// `cargo run -p hotslab-benches --release --bin BIN -- ARGS` (the bench stage's tools).
fn bench_bin(ctx: &Ctx, bin: &str, args: &[&str]) -> Result<(), String> {
    run(
        ctx,
        cargo()
            .args([
                "run",
                "-p",
                "hotslab-benches",
                "--release",
                "--bin",
                bin,
                "--",
            ])
            .args(args),
    )
}

fn stage_capi(ctx: &Ctx) -> Result<(), String> {
    run(
        ctx,
        cargo().args(["test", "--release", "-p", "hotslab-capi"]),
    )
}

/// Real memory hotplug in a QEMU guest: the harness's own tests and lints, then the guest run
/// (`qemu/run.sh` installs qemu-system-x86, busybox-static, the musl target and a kernel).
fn stage_qemu(ctx: &Ctx) -> Result<(), String> {
    let manifest = ["--manifest-path", "qemu/Cargo.toml"];
    let target = ["--target-dir", "target/qemu/host"];
    run(ctx, cargo().args(["fmt"]).args(manifest).arg("--check"))?;
    run(
        ctx,
        cargo().args(["clippy"]).args(manifest).args(target).args([
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run(ctx, cargo().args(["test"]).args(manifest).args(target))?;
    run(ctx, Command::new("bash").arg("qemu/run.sh"))
}

/// Every benchmark still runs (criterion --quick, no timing assertions; report under target/),
/// every standard-workload C program passes its own checks once under each allocator
/// (glibc, mimalloc, jemalloc, tcmalloc, hotslab; small parameters, well under a minute), the
/// plots of RESULTS.md are up to date, and the misuse set runs (`capi-report --security --check`).
fn stage_bench(ctx: &Ctx) -> Result<(), String> {
    bench_bin(ctx, "bench-runner", &["--quick"])?;
    bench_bin(
        ctx,
        "workload-suite",
        &["--quick", "--rounds", "1", "--check"],
    )?;
    // The pictures at the top of RESULTS.md match the tables they are drawn from.
    bench_bin(ctx, "results-plots", &["--check"])?;
    // The misuse set under every allocator (a few seconds): the control case runs clean, and the
    // hardened modes stop what the default mode catches.
    run(
        ctx,
        cargo().args([
            "run",
            "-p",
            "hotslab-benches",
            "--release",
            "--bin",
            "capi-report",
            "--",
            "--security",
            "--check",
        ]),
    )
}

/// The full suite under numactl; rewrites benches/RESULTS.md and the plots.
fn stage_bench_full(ctx: &Ctx) -> Result<(), String> {
    run(
        ctx,
        cargo().args([
            "run",
            "-p",
            "hotslab-benches",
            "--release",
            "--bin",
            "bench-runner",
        ]),
    )
}

/// Fuzz smoke: every cargo-fuzz target (ASan on), seeded and bounded; `--full` runs longer.
fn stage_fuzz(ctx: &Ctx) -> Result<(), String> {
    if !succeeds(Command::new("cargo").args(["fuzz", "--version"])) {
        println!("   installing cargo-fuzz (cargo install cargo-fuzz --locked)");
        run(ctx, cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    // CI: a seeded, fixed-length run from the committed corpus, so a green run is reproducible
    // (a crash it finds is found again by the same command); --full: random, 10 minutes each.
    let args: Vec<String> = if ctx.full {
        vec!["-max_total_time=600".into(), "-max_len=4096".into()]
    } else {
        [
            "-seed=1",
            "-runs=4000",
            "-max_total_time=300",
            "-max_len=4096",
        ]
        .map(String::from)
        .to_vec()
    };
    let toolchain = format!("+{NIGHTLY}");
    let fuzz_dir = ctx.root.join("fuzz");
    run(
        ctx,
        Command::new("cargo")
            .current_dir(&fuzz_dir)
            .args([toolchain.as_str(), "fuzz", "build"]),
    )?;
    for target in ["kmalloc_ops", "cache_lifecycle", "global_alloc"] {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&fuzz_dir)
            .args([toolchain.as_str(), "fuzz", "run", target, "--"])
            .args(&args);
        run(ctx, &mut cmd)?;
    }
    Ok(())
}

/// The multi-thread tests under a sanitizer (nightly, std rebuilt with it).
fn sanitized(ctx: &Ctx, sanitizer: &str, features: &[&str], tests: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("cargo");
    cmd.env("RUSTFLAGS", format!("-Zsanitizer={sanitizer}"))
        .env(
            "CARGO_TARGET_DIR",
            ctx.root.join(format!("target/{sanitizer}")),
        )
        .args([
            &format!("+{NIGHTLY}"),
            "test",
            "-Zbuild-std",
            "--target",
            "x86_64-unknown-linux-gnu",
            "-p",
            "hotslab",
            "--no-default-features",
        ])
        .args(features);
    for t in tests {
        cmd.args(["--test", t]);
    }
    run(ctx, &mut cmd)
}

/// ThreadSanitizer over the multi-thread tests (`--full`).
fn stage_tsan(ctx: &Ctx) -> Result<(), String> {
    sanitized(
        ctx,
        "thread",
        &[],
        &["caches", "global_alloc", "faults", "debug_checks"],
    )
}

/// AddressSanitizer, with freed slab objects poisoned through ASan's interface (`--full`).
fn stage_asan(ctx: &Ctx) -> Result<(), String> {
    sanitized(
        ctx,
        "address",
        &["--features", "asan"],
        &[
            "caches",
            "global_alloc",
            "faults",
            "debug_checks",
            "debug_asan",
        ],
    )
}

/// The opt-in `hwloc` feature (default builds never link hwloc): the library crates with it
/// linted, tested (numa adds hwloc vs sysfs vs libnuma) and documented, and a
/// fresh project that calls `Topology::detect` really links libhwloc — the positive control for
/// the `crate` stage's "links no hwloc" check.
fn stage_hwloc(ctx: &Ctx) -> Result<(), String> {
    let libs = [
        "-p",
        "hotslab-numa",
        "-p",
        "hotslab-hotplug",
        "-p",
        "hotslab",
    ];
    let features = ["--features", HWLOC_FEATURES];
    // Its own target dir: switching the feature on and off in target/ would rebuild everything
    // between this stage and the others.
    let target = ["--target-dir", "target/hwloc"];
    run(
        ctx,
        cargo()
            .arg("clippy")
            .args(libs)
            .args(features)
            .args(target)
            .args(["--all-targets", "--", "-D", "warnings"]),
    )?;
    run(
        ctx,
        cargo().arg("test").args(libs).args(features).args(target),
    )?;
    run(
        ctx,
        cargo()
            .env("RUSTDOCFLAGS", "-D warnings")
            .args(["doc", "--no-deps"])
            .args(libs)
            .args(features)
            .args(target),
    )?;
    let main = r#"
fn main() {
    let t = hotslab::numa::Topology::detect().expect("hwloc topology");
    let sum: u64 = (0..1000u64).collect::<Vec<_>>().iter().sum();
    println!("fresh-hwloc nodes={} sum={sum}", t.node_count());
}
"#;
    let project = FreshProject::create(ctx, "fresh-hwloc", &["hwloc"], main)?;
    let result = (|| {
        let bin = project.build(ctx)?;
        let out = capture(&mut Command::new(&bin))?;
        if !(out.starts_with("fresh-hwloc nodes=") && out.trim_end().ends_with("sum=499500")) {
            return Err(format!("fresh-hwloc printed {out:?}"));
        }
        let needed = needed_libs(&bin)?;
        println!("   NEEDED: {}", needed.join(" "));
        if !needed.iter().any(|l| l.starts_with("libhwloc")) {
            return Err("a binary using Topology::detect does not link libhwloc: the `crate` stage's check would prove nothing".into());
        }
        Ok(())
    })();
    project.remove();
    result
}

/// The `hwloc` feature of each library crate.
const HWLOC_FEATURES: &str = "hotslab-numa/hwloc,hotslab-hotplug/hwloc,hotslab/hwloc";

/// hotslab as a new user meets it: a fresh cargo project with `hotslab = { path = ... }` (default
/// features) and `#[global_allocator]` builds offline, runs, is served by hotslab, and links no
/// libhwloc or libudev; then `cargo doc` is clean with `-D warnings` and the three library crates
/// package and verify together (`cargo publish --dry-run --workspace`).
fn stage_crate(ctx: &Ctx) -> Result<(), String> {
    let main = r#"
#[global_allocator]
static A: hotslab::SlabAlloc = hotslab::SlabAlloc::new();

fn main() {
    let v: Vec<u64> = (0..100_000).collect();
    let words: Vec<String> = (0..1000).map(|i| format!("w{i}")).collect();
    let served: u64 = hotslab::default_domain()
        .expect("default domain")
        .slabinfo()
        .iter()
        .filter(|r| r.name.starts_with("kmalloc-"))
        .map(|r| r.allocs)
        .sum();
    println!(
        "fresh-user sum={} words={} served={served}",
        v.iter().sum::<u64>(),
        words.concat().len()
    );
}
"#;
    let project = FreshProject::create(ctx, "fresh-user", &[], main)?;
    let result = (|| {
        let t = Instant::now();
        let bin = project.build(ctx)?;
        println!(
            "   fresh project built (hotslab and its dependencies from scratch) in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let out = capture(&mut Command::new(&bin))?;
        println!("   {}", out.trim_end());
        check_fresh_output(&out)?;
        let needed = needed_libs(&bin)?;
        println!("   NEEDED: {}", needed.join(" "));
        let ldd = capture(Command::new("ldd").arg(&bin))?;
        let bad: Vec<&str> = needed
            .iter()
            .map(String::as_str)
            .chain(ldd.lines())
            .filter(|l| l.contains("hwloc") || l.contains("udev"))
            .collect();
        if !bad.is_empty() {
            return Err(format!("a default-feature binary links {bad:?}"));
        }
        println!(
            "   ldd: {} libraries, none of them hwloc or udev",
            ldd.lines().count()
        );
        Ok(())
    })();
    project.remove();
    result?;
    run(
        ctx,
        cargo().env("RUSTDOCFLAGS", "-D warnings").args([
            "doc",
            "--no-deps",
            "-p",
            "hotslab-numa",
            "-p",
            "hotslab-hotplug",
            "-p",
            "hotslab",
        ]),
    )?;
    // Packages every publishable member and verifies each against the others' packages in a
    // local registry (needs the crates.io index, so network). --allow-dirty: a local run may
    // have uncommitted changes; CI's tree is clean anyway. Cargo keeps the sources it unpacked
    // from that local registry under $CARGO_HOME/registry/src and reuses them by name and
    // version, so an earlier run's hotslab-* 0.1.0 would be verified instead of today's: drop
    // them first.
    forget_packaged_sources();
    run(
        ctx,
        cargo().args(["publish", "--dry-run", "--workspace", "--allow-dirty"]),
    )
}

/// Removes `$CARGO_HOME/registry/src/*/hotslab-*` (unpacked by earlier `publish --dry-run`s).
fn forget_packaged_sources() {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry/src")) else {
        return;
    };
    let Ok(regs) = std::fs::read_dir(&src) else {
        return;
    };
    for reg in regs.flatten() {
        let Ok(crates) = std::fs::read_dir(reg.path()) else {
            continue;
        };
        for c in crates.flatten() {
            if c.file_name().to_string_lossy().starts_with("hotslab-") {
                let _ = std::fs::remove_dir_all(c.path());
            }
        }
    }
}

/// `fresh-user sum=4999950000 words=3890 served=N` with N above the allocations it made.
fn check_fresh_output(out: &str) -> Result<(), String> {
    let field = |key: &str| -> Option<u64> {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
    };
    let ok = out.starts_with("fresh-user ")
        && field("sum=") == Some(4_999_950_000)
        && field("words=") == Some(3890)
        && field("served=").is_some_and(|n| n >= 1000);
    if ok {
        Ok(())
    } else {
        Err(format!("the fresh project printed {out:?}"))
    }
}

/// A cargo project outside the workspace that depends on `hotslab` by path, as a user's would.
struct FreshProject {
    dir: PathBuf,
    name: String,
}

impl FreshProject {
    fn create(ctx: &Ctx, name: &str, features: &[&str], main: &str) -> Result<Self, String> {
        let dir = env::temp_dir().join(format!("hotslab-{name}-{}", std::process::id()));
        let io = |e: std::io::Error| format!("{}: {e}", dir.display());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src")).map_err(io)?;
        let features: Vec<String> = features.iter().map(|f| format!("{f:?}")).collect();
        let manifest = format!(
            "[package]\nname = {name:?}\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n\
             [dependencies]\nhotslab = {{ path = {:?}, features = [{}] }}\n\n\
             # Not a member of any workspace above it.\n[workspace]\n",
            ctx.root.join("slab").display().to_string(),
            features.join(", ")
        );
        std::fs::write(dir.join("Cargo.toml"), manifest).map_err(io)?;
        std::fs::write(dir.join("src/main.rs"), main).map_err(io)?;
        // The workspace's lock file pins the versions whose sources are in the registry cache,
        // so the build works offline; cargo drops the entries this project does not use.
        std::fs::copy(ctx.root.join("Cargo.lock"), dir.join("Cargo.lock")).map_err(io)?;
        Ok(FreshProject {
            dir,
            name: name.to_string(),
        })
    }

    /// Builds the project (release, its own target dir, offline) and returns the binary.
    fn build(&self, ctx: &Ctx) -> Result<PathBuf, String> {
        let target = self.dir.join("target");
        run(
            ctx,
            cargo()
                .current_dir(&self.dir)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_TARGET_DIR")
                .args(["build", "--release", "--offline", "--target-dir"])
                .arg(&target),
        )?;
        Ok(target.join("release").join(&self.name))
    }

    fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs a short command to completion and returns its stdout; a failure carries its stderr.
fn capture(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot start {shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("{shown} printed non-UTF-8"))
}

/// The `NEEDED` entries of an ELF file's dynamic section (`readelf -d`).
fn needed_libs(bin: &Path) -> Result<Vec<String>, String> {
    let dynamic = capture(Command::new("readelf").arg("-d").arg(bin))?;
    let needed: Vec<String> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_string()))
        .collect();
    if needed.is_empty() {
        return Err(format!(
            "readelf -d {} shows no NEEDED entries",
            bin.display()
        ));
    }
    Ok(needed)
}

fn stage_loom(ctx: &Ctx) -> Result<(), String> {
    let mut cmd = cargo();
    cmd.env("RUSTFLAGS", "--cfg loom")
        .env("CARGO_TARGET_DIR", ctx.root.join("target/loom"))
        .args([
            "test",
            "--release",
            "-p",
            "hotslab-hotplug",
            "-p",
            "hotslab",
            "--test",
            "loom_*",
        ]);
    run(ctx, &mut cmd)
}

fn stage_miri(ctx: &Ctx) -> Result<(), String> {
    if !succeeds(Command::new("cargo").args([&format!("+{NIGHTLY}"), "miri", "--version"])) {
        return skipped(ctx, "miri is not installed (run `cargo xtask deps`)");
    }
    let mut cmd = Command::new("cargo");
    cmd.env("CARGO_TARGET_DIR", ctx.root.join("target/miri"))
        .env(
            "MIRIFLAGS",
            "-Zmiri-disable-isolation -Zmiri-permissive-provenance",
        )
        .args([
            &format!("+{NIGHTLY}"),
            "miri",
            "test",
            "--no-default-features",
            "-p",
            "hotslab-numa",
            "-p",
            "hotslab-hotplug",
            "-p",
            "hotslab",
            "--lib",
        ]);
    run(ctx, &mut cmd)
}

fn run_demo(ctx: &Ctx, args: &[String]) -> Result<(), String> {
    apt_deps(ctx)?;
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "-p",
        "hotslab",
        "--features",
        "pause-points",
        "--example",
        "race_demo",
        "--",
    ])
    .args(args);
    run(ctx, &mut cmd)
}
