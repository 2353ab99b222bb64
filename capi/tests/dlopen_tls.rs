//! A program that `dlopen`s 80 libraries with thread-locals and touches them from new threads
//! (issue 13), then `dlclose`s half and touches the rest from more new threads, under
//! `LD_PRELOAD=libhotslab.so`: the loader's own allocations (link maps, scopes, slot info) go
//! through hotslab from inside the dynamic loader, with its locks held.

mod common;

use common::{have, hotslab_so, scratch};
use std::path::Path;
use std::process::Command;

const LIBS: usize = 80;

fn cc(args: &[&str], out: &Path, src: &Path) {
    let o = Command::new("cc")
        .args(args)
        .arg("-o")
        .arg(out)
        .arg(src)
        .output()
        .expect("run cc");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn eighty_dlopened_libraries_with_thread_locals() {
    if !have("/usr/bin/cc") {
        assert!(std::env::var_os("CI").is_none(), "cc is missing under CI");
        return;
    }
    let dir = scratch("dlopen_tls");
    for i in 0..LIBS {
        // Each library: a 4 KiB thread-local array of its own (dynamic TLS, not the static
        // surplus) and a function that stores, then reads back, through it.
        let src = dir.join(format!("tls{i}.c"));
        std::fs::write(
            &src,
            format!(
                "static __thread long slot[512];\n\
                 long tls_touch(long v) {{ slot[v % 512] = v * {m}; return slot[v % 512]; }}\n",
                m = i + 1
            ),
        )
        .unwrap();
        cc(
            &["-O1", "-shared", "-fPIC", "-ftls-model=global-dynamic"],
            &dir.join(format!("libtls{i}.so")),
            &src,
        );
    }
    let exe = dir.join("dlopen_tls");
    let prog = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/dlopen_tls.c");
    cc(&["-O1", "-pthread"], &exe, &prog);
    let out = Command::new(&exe)
        .arg(&dir)
        .arg(LIBS.to_string())
        .env("LD_PRELOAD", hotslab_so())
        .env("HOTSLAB_STATS", "1")
        .output()
        .expect("run dlopen_tls");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.starts_with("dlopen_tls ok libs=80 threads=36"),
        "{:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    // hotslab served the process (its exit statistics are there); glibc 2.36 allocates the
    // threads' dynamic TLS blocks without calling the interposed malloc (checked with a
    // counting shim), so what this exercises is dlopen/dlclose and thread creation and exit
    // around them, not TLS blocks in hotslab's slabs.
    let total = stderr
        .lines()
        .find(|l| l.starts_with("hotslab: total"))
        .unwrap_or_else(|| panic!("no hotslab statistics:\n{stderr}"));
    assert!(total.contains("allocs="), "{total}");
}
