//! The workload programs of `benches/workloads/` fail loudly under a broken allocator: a
//! preloaded shim that hands out the same block twice (every 97th malloc of a size that fits the
//! previous block) must make each self-checking program exit non-zero, while the same programs
//! pass under the system allocator. Needs gcc (as the suite does).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The double-handout allocator: glibc underneath, every 97th request answered with the
/// previous block again (so two live blocks overlap).
const SHIM: &str = r#"
#include <stddef.h>
extern void *__libc_malloc(size_t);
static __thread unsigned long calls;
static __thread void *last;
static __thread size_t last_n;
void *malloc(size_t n) {
    if (++calls % 97 == 0 && last && n <= last_n)
        return last;
    last = __libc_malloc(n);
    last_n = n;
    return last;
}
"#;

fn out_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("hotslab-wl-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn gcc(args: &[&str]) {
    let st = Command::new("gcc").args(args).status().expect("run gcc");
    assert!(st.success(), "gcc {args:?}");
}

fn program(dir: &Path, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("workloads")
        .join(format!("{name}.c"));
    let exe = dir.join(name);
    gcc(&[
        "-O2",
        "-pthread",
        "-o",
        exe.to_str().unwrap(),
        src.to_str().unwrap(),
    ]);
    exe
}

#[test]
fn programs_pass_on_glibc_and_fail_loudly_on_a_double_handout() {
    if !Command::new("gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("gcc not installed; skipped");
        return;
    }
    let dir = out_dir();
    let shim_c = dir.join("shim.c");
    std::fs::write(&shim_c, SHIM).unwrap();
    let shim = dir.join("libdouble.so");
    gcc(&[
        "-O2",
        "-shared",
        "-fPIC",
        "-o",
        shim.to_str().unwrap(),
        shim_c.to_str().unwrap(),
    ]);
    // The programs that keep several blocks live at once (with one live block, as in
    // cache-scratch, a double handout is indistinguishable from reuse).
    for name in [
        "larson",
        "mstress",
        "glibc-thread",
        "glibc-simple",
        "alloc-test",
        "xmalloc-test",
        "cfrac",
        "sh6bench",
        "rptest",
        "realloc",
    ] {
        let exe = program(&dir, name);
        let good = Command::new(&exe).arg("--quick").output().unwrap();
        assert!(good.status.success(), "{name} failed under glibc: {good:?}");
        let stdout = String::from_utf8_lossy(&good.stdout);
        assert!(
            stdout.starts_with(&format!("{name} ok small_mallocs=")),
            "{name}: {stdout}"
        );
        let bad = Command::new(&exe)
            .arg("--quick")
            .env("LD_PRELOAD", &shim)
            .output()
            .unwrap();
        assert!(
            !bad.status.success(),
            "{name} passed under a broken allocator"
        );
        // Caught by the program's own check (exit 2), not left to luck.
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(
            bad.status.code() == Some(2) && stderr.contains("CORRUPTION"),
            "{name}: {:?} {stderr}",
            bad.status
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
