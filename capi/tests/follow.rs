//! libhotslab.so's default domain follows the machine (issue 12): over a fake sysfs tree with a
//! possible-but-absent node (`HOTSLAB_TEST_SYSFS_ROOT`) it covers every possible node, gives
//! parts only to nodes with memory and starts its `hotslab-follow` thread; `HOTSLAB_FOLLOW=0`
//! keeps the thread away; on this machine's real sysfs (one possible node) no thread is needed;
//! `hs_refresh_mempolicy` works after `set_mempolicy`, also under `numactl`. Checked with
//! `tests/programs/follow.c` in child processes.

mod common;

use common::{compile_c, hotslab_so, scratch};
use std::path::{Path, PathBuf};
use std::process::Command;

fn program() -> Option<PathBuf> {
    static EXE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/follow.c");
        compile_c("follow", &src, &["-O1", "-pthread", "-ldl"])
    })
    .clone()
}

/// The QEMU guest at boot as a sysfs tree: nodes 0-1 with memory, node 2 possible only.
fn fake_tree(name: &str) -> PathBuf {
    let root = scratch(name).join("node");
    std::fs::create_dir_all(&root).unwrap();
    for (file, v) in [
        ("possible", "0-2"),
        ("online", "0-1"),
        ("has_memory", "0-1"),
        ("has_normal_memory", "0-1"),
    ] {
        std::fs::write(root.join(file), format!("{v}\n")).unwrap();
    }
    for (k, cpus, dist) in [(0, "0", "10 20"), (1, "1", "20 10")] {
        let d = root.join(format!("node{k}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("cpulist"), format!("{cpus}\n")).unwrap();
        std::fs::write(
            d.join("meminfo"),
            format!("Node {k} MemTotal:       524288 kB\n"),
        )
        .unwrap();
        std::fs::write(d.join("distance"), format!("{dist}\n")).unwrap();
    }
    root
}

fn run(prefix: &[&str], arg: &str, env: &[(&str, &str)]) -> Option<(String, String)> {
    let exe = program()?;
    let mut cmd = match prefix.split_first() {
        Some((p, rest)) => {
            let mut c = Command::new(p);
            c.args(rest).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let out = cmd
        .arg(arg)
        .env("LD_PRELOAD", hotslab_so())
        .envs(env.iter().copied())
        .output()
        .expect("run follow");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success() && stdout.contains("ok\n"),
        "{:?}\n{stdout}\n{stderr}",
        out.status
    );
    Some((stdout, stderr))
}

#[test]
fn every_possible_node_and_the_follower_thread() {
    let root = fake_tree("follow-on");
    let root = root.to_str().unwrap();
    let Some((out, err)) = run(
        &[],
        "expect-follower",
        &[("HOTSLAB_TEST_SYSFS_ROOT", root), ("HOTSLAB_VERBOSE", "1")],
    ) else {
        return;
    };
    assert!(out.contains("follower yes"), "{out}\n{err}");
    assert!(
        err.contains(" nodes=3 ") && err.contains("memory=0-1"),
        "{err}"
    );
    assert!(err.contains("HOTSLAB_FOLLOW=1"), "{err}");
}

#[test]
fn hotslab_follow_0_starts_no_thread() {
    let root = fake_tree("follow-off");
    let root = root.to_str().unwrap();
    let Some((out, err)) = run(
        &[],
        "-",
        &[
            ("HOTSLAB_TEST_SYSFS_ROOT", root),
            ("HOTSLAB_FOLLOW", "0"),
            ("HOTSLAB_VERBOSE", "1"),
        ],
    ) else {
        return;
    };
    assert!(out.contains("follower no"), "{out}\n{err}");
    assert!(err.contains("HOTSLAB_FOLLOW=0"), "{err}");
}

#[test]
fn the_real_machine_and_numactl() {
    let possible = std::fs::read_to_string("/sys/devices/system/node/possible").unwrap();
    let one_node = !possible.contains(['-', ',']);
    let Some((out, _)) = run(&[], "-", &[]) else {
        return;
    };
    if one_node {
        assert!(
            out.contains("follower no"),
            "one possible node needs no follower: {out}"
        );
    }
    let numactl = Command::new("numactl")
        .arg("--show")
        .output()
        .is_ok_and(|o| o.status.success());
    if !numactl {
        eprintln!("numactl is not installed: skipping its half");
        return;
    }
    for policy in ["--membind=0", "--preferred=0", "--interleave=0"] {
        run(&["numactl", policy], "-", &[]);
    }
}
