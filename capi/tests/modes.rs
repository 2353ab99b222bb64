//! A stress test in the style of mimalloc's test-stress (32 threads, rounds of thread
//! replacement, objects passed between threads, contents checked), our own
//! `benches/workloads/test-stress.c`, run under `LD_PRELOAD=libhotslab.so` in the default, the
//! debug (`HOTSLAB_DEBUG=1`) and the secure (`HOTSLAB_SECURE=1`) modes (issue 13). Each run
//! must finish with the program's `ok` line, and its exit statistics must show the program's
//! allocations were served by hotslab's kmalloc caches.

mod common;

use common::{compile_c, hotslab_so};
use std::path::{Path, PathBuf};
use std::process::Command;

fn program() -> Option<PathBuf> {
    static EXE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/workloads");
        let inc = dir.to_string_lossy().into_owned();
        compile_c(
            "test-stress",
            &dir.join("test-stress.c"),
            &["-O2", "-pthread", "-I", &inc],
        )
    })
    .clone()
}

fn stress(env: &[(&str, &str)]) {
    let Some(exe) = program() else {
        return;
    };
    let out = Command::new(exe)
        // 32 threads (the shape's full width), 10 rounds of replacement of 4000 steps each.
        .arg("--rounds=10")
        .env("LD_PRELOAD", hotslab_so())
        .env("HOTSLAB_STATS", "1")
        .envs(env.iter().copied())
        .output()
        .expect("run test-stress");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test-stress ok"),
        "{env:?}: {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let total = stderr
        .lines()
        .find(|l| l.starts_with("hotslab: total"))
        .unwrap_or_else(|| panic!("{env:?}: no statistics\n{stderr}"));
    let allocs: u64 = total
        .split_whitespace()
        .find_map(|w| w.strip_prefix("allocs="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let small: u64 = stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("small_mallocs="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(
        allocs >= small && small > 1_000_000,
        "{env:?}: {total}
{stdout}"
    );
}

#[test]
fn test_stress_in_the_default_mode() {
    stress(&[]);
}

#[test]
fn test_stress_in_the_debug_mode() {
    stress(&[("HOTSLAB_DEBUG", "1")]);
}

#[test]
fn test_stress_in_the_secure_mode() {
    stress(&[("HOTSLAB_SECURE", "1")]);
}
