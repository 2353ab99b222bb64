//! glibc's extra surface, errno, huge requests, alignments, statistics, trim, fork during the
//! build and the C++ operators: C and C++ programs (`tests/programs/surface.c`,
//! `tests/programs/cxx_ops.cpp`) run under `LD_PRELOAD=libhotslab.so`, one subcommand per test.
//! A missing compiler skips its test, except under `CI=true`, where it fails.

mod common;

use common::{have, hotslab_so, scratch};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn require(program: &str) -> bool {
    if have(program) {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{program} is missing; CI must not skip this test"
    );
    eprintln!("skipped: {program} is not installed");
    false
}

/// Compiles a test program (once per name and process) into a scratch directory.
fn compile(compiler: &str, src: &str, exe: &str, flags: &[&str]) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs")
        .join(src);
    let dir = scratch(exe);
    let out = dir.join(exe);
    let cc = Command::new(compiler)
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .args(["-ldl", "-lrt"])
        .output()
        .expect("run the compiler");
    assert!(
        cc.status.success(),
        "{compiler} failed: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    out
}

fn surface() -> PathBuf {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        compile(
            "cc",
            "surface.c",
            "surface",
            &[
                "-O1",
                "-Wall",
                "-Wno-alloc-size-larger-than",
                "-Wno-use-after-free",
                "-pthread",
            ],
        )
    })
    .clone()
}

fn run(exe: &Path, arg: Option<&str>, env: &[(&str, &str)]) -> Output {
    let so = hotslab_so();
    assert!(so.exists(), "{} not built", so.display());
    let mut cmd = Command::new(exe);
    if let Some(a) = arg {
        cmd.arg(a);
    }
    cmd.env("LD_PRELOAD", &so).env_remove("HOTSLAB_STATS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the test program")
}

/// Runs `surface <sub>` and checks it succeeded; returns its stdout.
fn sub(name: &str, env: &[(&str, &str)]) -> String {
    if !require("/usr/bin/cc") {
        return String::new();
    }
    let out = run(&surface(), Some(name), env);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stdout.starts_with(&format!("{name} ok")),
        "{name}: {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    eprintln!("{}", stdout.trim_end());
    stdout + &stderr
}

#[test]
fn libc_aliases_cfree_mallopt_mix_with_malloc() {
    sub("libc_mix", &[]);
}

#[test]
fn errno_is_kept_across_thousands_of_successful_calls() {
    sub("errno", &[]);
}

#[test]
fn huge_requests_fail_with_enomem_and_keep_the_old_block() {
    sub("huge", &[]);
}

#[test]
fn alignments_up_to_one_gib() {
    sub("aligned", &[]);
}

#[test]
fn mallinfo2_moves_and_malloc_info_stats_print() {
    let out = sub("info", &[]);
    if out.is_empty() {
        return;
    }
    // malloc_stats on stderr: glibc's summary, then the slabinfo table.
    assert!(
        out.contains("Arena 0:") && out.contains("in use bytes"),
        "{out}"
    );
    assert!(
        out.contains("hotslab: slabinfo ") && out.contains("kmalloc-128"),
        "{out}"
    );
}

fn field(out: &str, k: &str) -> i64 {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

#[test]
fn idle_program_gives_memory_back_without_any_call() {
    let out = sub("idle", &[]);
    if out.is_empty() {
        return;
    }
    let (peak, at) = (field(&out, "peak_kib"), field(&out, "at1500_kib"));
    assert_eq!(
        field(&out, "purge_threads"),
        1,
        "the background purger runs: {out}"
    );
    assert!(
        peak > 0 && at > 0 && at * 4 <= peak,
        "RSS after 1.5 s idle > 25 % of peak: {out}"
    );
}

#[test]
fn idle_threads_caches_are_taken_back() {
    let on = sub("idle_threads", &[]);
    let off = sub("idle_threads", &[("HOTSLAB_BACKGROUND", "0")]);
    if on.is_empty() {
        return;
    }
    let drop_of = |out: &str| field(out, "after_free_kib") - field(out, "at1500_kib");
    // With the purger, the blocked threads' current and spare slabs (8 threads x 18 classes)
    // go back during the idle time; without it they stay.
    assert!(drop_of(&on) >= 4096, "RSS drop with the purger: {on}");
    assert!(drop_of(&on) > drop_of(&off) + 2048, "on: {on}\noff: {off}");
}

#[test]
fn background_purger_can_be_turned_off() {
    let out = sub("idle", &[("HOTSLAB_BACKGROUND", "0")]);
    if out.is_empty() {
        return;
    }
    assert_eq!(field(&out, "purge_threads"), 0, "{out}");
    // Without the thread the delayed empties keep their small budget, so the idle RSS bound
    // holds too (given back when freed beyond the budget, not later).
    let (peak, at) = (field(&out, "peak_kib"), field(&out, "at1500_kib"));
    assert!(peak > 0 && at > 0 && at * 4 <= peak, "{out}");
}

#[test]
fn malloc_trim_gives_back_freed_small_objects() {
    let out = sub("trim", &[]);
    if out.is_empty() {
        return;
    }
    let field = |k: &str| -> i64 {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1)
    };
    let (peak, trimmed) = (field("peak_kib"), field("after_trim_kib"));
    assert!(peak > 0 && trimmed > 0 && trimmed * 2 < peak, "{out}");
}

#[test]
fn fork_while_the_default_domain_is_built() {
    for stage in ["early", "late"] {
        let out = sub("fork_build", &[("HOTSLAB_TEST_BUILD_PAUSE", stage)]);
        if out.is_empty() {
            return;
        }
    }
}

#[test]
fn large_interior_pointer_free_is_named() {
    if !require("/usr/bin/cc") {
        return;
    }
    let dir = scratch("interior");
    let src = dir.join("interior.c");
    std::fs::write(
        &src,
        "#include <stdlib.h>\nint main(int c, char **v) { char *p = malloc(1 << 20);\n\
         free(p + (c > 1 ? atoi(v[1]) : 0)); return 0; }\n",
    )
    .unwrap();
    let exe = dir.join("interior");
    let st = Command::new("cc")
        .args(["-O0", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .unwrap();
    assert!(st.success());
    for off in ["16", "70000", "900000"] {
        let out = run(&exe, Some(off), &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "offset {off}");
        assert!(
            err.contains("interior pointer into a large object"),
            "offset {off}: {err}"
        );
    }
}

#[test]
fn cxx_operators_are_hotslabs() {
    if !require("/usr/bin/g++") {
        return;
    }
    let exe = compile(
        "g++",
        "cxx_ops.cpp",
        "cxx_ops",
        &[
            "-std=c++17",
            "-O0",
            "-Wall",
            "-Werror",
            "-fsized-deallocation",
        ],
    );
    let out = run(&exe, None, &[("HOTSLAB_STATS", "1")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.starts_with("cxx ok"),
        "{:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    assert!(stderr.contains("hotslab: total "), "{stderr}");
    eprintln!("{}", stdout.trim_end());
}
