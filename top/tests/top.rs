//! hotslab-top against real processes: `hotslab-top-demo` (hotslab as its global allocator) and
//! python3 under `LD_PRELOAD=libhotslab.so`. Each target says it is ready on a pipe (its
//! stdout) and waits for the end of its stdin, so no test sleeps to synchronise.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

const TOP: &str = env!("CARGO_BIN_EXE_hotslab-top");
const DEMO: &str = env!("CARGO_BIN_EXE_hotslab-top-demo");

/// A running target, its stdout lines up to `ready`.
struct Target {
    child: Child,
    lines: Vec<String>,
    out: BufReader<ChildStdout>,
}

impl Target {
    fn start(mut cmd: Command) -> Target {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn target");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            let n = out.read_line(&mut l).expect("read target");
            assert!(n > 0, "target ended before it was ready: {lines:?}");
            let l = l.trim_end().to_string();
            if l == "ready" {
                break;
            }
            lines.push(l);
        }
        Target { child, lines, out }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ends the target's input and waits for it; its stderr.
    fn finish(mut self) -> String {
        drop(self.child.stdin.take());
        let mut rest = String::new();
        let _ = self.out.read_to_string(&mut rest);
        let mut err = String::new();
        let _ = self
            .child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err);
        let st = self.child.wait().expect("wait");
        assert!(st.success(), "target failed: {st:?}\n{err}");
        err
    }
}

fn demo(args: &[&str], env: &[(&str, &str)]) -> Target {
    let mut cmd = Command::new(DEMO);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Target::start(cmd)
}

fn top(args: &[&str]) -> Output {
    Command::new(TOP)
        .args(args)
        .output()
        .expect("run hotslab-top")
}

fn shm(pid: u32) -> PathBuf {
    PathBuf::from(format!("/dev/shm/hotslab.{pid}"))
}

/// A slabinfo row: active, total, object size, slabs per node.
type Row = (u64, u64, u64, Vec<u64>);

/// The rows of `hotslab::print_slabinfo`'s table.
fn slabinfo(lines: &[String]) -> BTreeMap<String, Row> {
    let mut rows = BTreeMap::new();
    for l in lines {
        if l.starts_with('#') || l.starts_with("hotslab:") || l.starts_with("published=") {
            continue;
        }
        let (left, nodes) = l.split_once(" : ").expect("slabinfo row");
        let f: Vec<&str> = left.split_whitespace().collect();
        let slabs = nodes
            .split_whitespace()
            .map(|n| n.split_once('=').expect("N<i>=n").1.parse().expect("slabs"))
            .collect();
        rows.insert(
            f[0].to_string(),
            (
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                slabs,
            ),
        );
    }
    rows
}

/// The cache rows of `hotslab-top --once`, in order: name → (active, total, size, slabs per
/// node), plus the header lines.
fn table(out: &str) -> (Vec<String>, Vec<(String, Row)>) {
    let mut head = Vec::new();
    let mut rows = Vec::new();
    let mut in_table = false;
    for l in out.lines() {
        if l.trim_start().starts_with("ACTIVE") {
            in_table = true;
            continue;
        }
        if !in_table {
            head.push(l.to_string());
            continue;
        }
        let f: Vec<&str> = l.split_whitespace().collect();
        // ACTIVE OBJS USE OBJSIZE CACHESIZE NAME N<i> slabs:mem... T<t>...
        let slabs = f[6..]
            .iter()
            .filter_map(|c| c.split_once(':'))
            .map(|(n, _)| n.parse().expect("slabs"))
            .collect();
        rows.push((
            f[5].to_string(),
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[3].parse().unwrap(),
                slabs,
            ),
        ));
    }
    (head, rows)
}

fn once(pid: u32, sort: &str) -> (Vec<String>, Vec<(String, Row)>) {
    let o = top(&["--once", "--sort", sort, &pid.to_string()]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "hotslab-top --once {pid}: {:?}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    table(&text)
}

#[test]
fn once_matches_the_programs_own_slabinfo() {
    let t = demo(&["ready", "5000"], &[]);
    let pid = t.pid();
    assert!(
        t.lines.contains(&"published=1".to_string()),
        "{:?}",
        t.lines
    );
    assert!(shm(pid).exists());
    let want = slabinfo(&t.lines);
    assert!(
        want.contains_key("demo-objects") && want.len() > 20,
        "{want:?}"
    );
    let (head, rows) = once(pid, "n");
    assert!(head[0].starts_with(&format!("hotslab-top: pid {pid}, OnlineMems mode")));
    let got: BTreeMap<String, Row> = rows.iter().cloned().collect();
    assert_eq!(got.len(), rows.len(), "one row per cache");
    assert_eq!(
        got, want,
        "hotslab-top shows what the program's slabinfo says"
    );
    let names: Vec<&String> = rows.iter().map(|r| &r.0).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "--sort n sorts by name");
    let (active, total): (u64, u64) = want.values().fold((0, 0), |a, r| (a.0 + r.0, a.1 + r.1));
    assert!(
        head.iter().any(|l| l.contains(&format!(
            "Active / Total Objects (% used) : {active} / {total}"
        ))),
        "{head:?}"
    );
    assert!(head
        .iter()
        .any(|l| l.contains("Hotplug events                  : 0")));

    for (key, col) in [("a", 0), ("o", 1), ("s", 2)] {
        let (_, rows) = once(pid, key);
        let v: Vec<u64> = rows
            .iter()
            .map(|r| match col {
                0 => r.1 .0,
                1 => r.1 .1,
                _ => r.1 .2,
            })
            .collect();
        assert!(v.windows(2).all(|w| w[0] >= w[1]), "--sort {key}: {v:?}");
    }
    t.finish();
    assert!(!shm(pid).exists(), "the file is removed at exit");
}

#[test]
fn hotplug_events_and_simulated_nodes() {
    let t = demo(&["ready", "2000", "hotplug"], &[("HOTSLAB_NODES", "4")]);
    let pid = t.pid();
    let want = slabinfo(&t.lines);
    let (head, rows) = once(pid, "c");
    assert!(head[0].contains("4 nodes (simulated)"), "{head:?}");
    let got: BTreeMap<String, Row> = rows.into_iter().collect();
    assert_eq!(got, want);
    assert!(want.values().all(|r| r.3.len() == 4), "four node columns");
    // A forced offline and an online of node 3: four notifier events, the last one ONLINE.
    let ev = head
        .iter()
        .find(|l| l.contains("Hotplug events"))
        .expect("events line");
    assert!(ev.contains(": 4   last: #4 N3 online"), "{ev}");
    assert!(ev.contains("#1 N3 going-offline forced"), "{ev}");
    let nodes = head
        .iter()
        .find(|l| l.contains("Memory per node"))
        .expect("nodes line");
    for i in 0..4 {
        assert!(nodes.contains(&format!("N{i} (on N")) || nodes.contains(&format!("N{i} tier")));
    }
    t.finish();
}

#[test]
fn fork_child_publishes_under_its_own_pid() {
    let t = demo(&["fork"], &[]);
    let parent = t.pid();
    let child: u32 = t
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("child="))
        .expect("child pid")
        .parse()
        .unwrap();
    assert!(
        t.lines.contains(&"published=1".to_string()),
        "{:?}",
        t.lines
    );
    assert_ne!(child, parent);
    assert!(shm(child).exists() && shm(parent).exists());
    let (head, rows) = once(child, "a");
    assert!(
        head[0].starts_with(&format!("hotslab-top: pid {child},")),
        "{head:?}"
    );
    let k100 = rows
        .iter()
        .find(|r| r.0 == "kmalloc-112")
        .expect("kmalloc-112");
    assert!(k100.1 .0 >= 3000, "the child's own objects: {k100:?}");
    let (head, _) = once(parent, "a");
    assert!(head[0].starts_with(&format!("hotslab-top: pid {parent},")));
    t.finish();
    assert!(!shm(child).exists() && !shm(parent).exists());
}

#[test]
fn a_pid_without_hotslab_is_a_clear_error() {
    // This test binary runs on the system allocator.
    let me = std::process::id();
    let o = top(&["--once", &me.to_string()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("pid {me} does not run hotslab")),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    // The interactive mode says the same before touching the terminal.
    let o = top(&[&me.to_string()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not run hotslab"));

    // No such process (above any pid_max).
    let o = top(&["--once", "4194305"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such process"));

    // Bad usage.
    assert_eq!(top(&["--once"]).status.code(), Some(2));
    assert_eq!(top(&["--sort", "x", "1"]).status.code(), Some(2));
}

#[test]
fn a_stale_file_is_not_taken_for_a_live_process() {
    // A real file, left behind by a process killed without its exit hooks...
    let mut t = demo(&["ready", "100"], &[]);
    let bytes = std::fs::read(shm(t.pid())).expect("shm file");
    t.child.kill().expect("kill");
    t.child.wait().expect("wait");
    let dead = t.pid();
    assert!(shm(dead).exists(), "SIGKILL leaves the file");
    let o = top(&["--once", &dead.to_string()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such process"));
    let o = top(&["--clean"]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("removed {}", shm(dead).display())),
        "--clean removes the file of the dead process"
    );
    assert!(!shm(dead).exists());
    // ... and found under the pid of a live process that does not run hotslab.
    let mut other = Command::new("/bin/sh")
        .args(["-c", "read x"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("sh");
    let pid = other.id();
    let mut b = bytes;
    b[32..36].copy_from_slice(&pid.to_ne_bytes());
    std::fs::write(shm(pid), &b).expect("write stale file");
    let o = top(&["--once", &pid.to_string()]);
    let _ = std::fs::remove_file(shm(pid));
    drop(other.stdin.take());
    other.wait().expect("wait sh");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is stale"), "{err}");
}

#[test]
fn publish_off_and_verbose() {
    let t = demo(
        &["ready", "100"],
        &[("HOTSLAB_PUBLISH", "0"), ("HOTSLAB_VERBOSE", "1")],
    );
    let pid = t.pid();
    assert!(
        t.lines.contains(&"published=0".to_string()),
        "{:?}",
        t.lines
    );
    assert!(!shm(pid).exists(), "HOTSLAB_PUBLISH=0: no file");
    let o = top(&["--once", &pid.to_string()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not run hotslab"));
    let err = t.finish();
    let config = err
        .lines()
        .find(|l| l.starts_with("hotslab: config "))
        .unwrap_or_else(|| panic!("no config line: {err}"));
    assert!(
        config.contains(&format!("pid={pid} mode=OnlineMems nodes=")),
        "{config}"
    );
    assert!(
        config.contains("N0") && config.contains(":tier"),
        "{config}"
    );
    let knobs = err
        .lines()
        .find(|l| l.starts_with("hotslab: knobs "))
        .expect("knobs line");
    for k in [
        "HOTSLAB_MODE=onlinemems",
        "HOTSLAB_NODES=0",
        "HOTSLAB_STATS=0",
        "HOTSLAB_DEBUG=0",
        "HOTSLAB_PURGE_MS=50",
        "HOTSLAB_THP=off",
        "HOTSLAB_SECURE=0",
        "HOTSLAB_BACKGROUND=1",
        "HOTSLAB_PUBLISH=0",
        "HOTSLAB_FOLLOW=1",
        "HOTSLAB_VERBOSE=1",
    ] {
        assert!(knobs.contains(k), "{k} in {knobs}");
    }

    // Verbose with other knobs, and quiet without it.
    let t = demo(
        &["ready", "10"],
        &[
            ("HOTSLAB_VERBOSE", "1"),
            ("HOTSLAB_NODES", "3"),
            ("HOTSLAB_MODE", "slabnodes"),
            ("HOTSLAB_DEBUG", "ZP"),
            ("HOTSLAB_PURGE_MS", "7"),
        ],
    );
    let err = t.finish();
    assert!(err.contains("mode=SlabNodes nodes=3 simulated ["), "{err}");
    assert!(err.contains("N2(on N"), "{err}");
    assert!(
        err.contains(
            "HOTSLAB_MODE=slabnodes HOTSLAB_NODES=3 HOTSLAB_STATS=0 HOTSLAB_DEBUG=ZP---- \
             HOTSLAB_SECURE=0 HOTSLAB_PURGE_MS=7 HOTSLAB_THP=off HOTSLAB_BACKGROUND=1 \
             HOTSLAB_PUBLISH=1"
        ),
        "{err}"
    );
    let t = demo(&["ready", "10"], &[]);
    assert!(t.lines.contains(&"published=1".to_string()));
    assert!(!t.finish().contains("hotslab: config"));
}

/// `target/<profile>/libhotslab.so`, built like the capi tests build it.
fn hotslab_so() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let profile = match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(p) => p.to_string(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let st = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "hotslab-capi",
            "--profile",
            &profile,
        ])
        .env("CARGO_TARGET_DIR", dir.parent().expect("target dir"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build");
    assert!(st.success(), "cargo build -p hotslab-capi");
    dir.join("libhotslab.so")
}

#[test]
fn python_under_ld_preload() {
    let python = "/usr/bin/python3";
    if !Path::new(python).exists() {
        assert!(std::env::var_os("CI").is_none(), "python3 missing under CI");
        eprintln!("skipped: no {python}");
        return;
    }
    let so = hotslab_so();
    let mut cmd = Command::new(python);
    cmd.args([
        "-c",
        // Snapshots come from slow paths, at most every 100 ms: keep allocating for a while
        // after building `d`, so that a snapshot shows it.
        "import sys, time\nd = {i: str(i) * 3 for i in range(20000)}\n\
         end = time.monotonic() + 0.4\n\
         while time.monotonic() < end:\n    x = [str(i) * 2 for i in range(20000)]\n    del x\n\
         print('ready', flush=True)\nsys.stdin.read()\nprint(len(d))",
    ])
    .env("LD_PRELOAD", &so)
    .env("PYTHONMALLOC", "malloc"); // every object through malloc, not pymalloc arenas
    let t = Target::start(cmd);
    let pid = t.pid();
    let (head, rows) = once(pid, "a");
    assert!(
        head[0].starts_with(&format!("hotslab-top: pid {pid},")),
        "{head:?}"
    );
    let active: u64 = rows.iter().map(|r| r.1 .0).sum();
    assert!(active > 20_000, "python's objects: {active}");
    assert_eq!(
        rows.len(),
        hotslab::KMALLOC_CLASSES.len(),
        "the kmalloc caches"
    );
    t.finish();
    assert!(!shm(pid).exists(), "removed at exit under LD_PRELOAD too");
}

/// The interactive mode in a real terminal (tmux); skipped without tmux.
#[test]
fn interactive_in_tmux() {
    let have_tmux = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_tmux {
        eprintln!("skipped: no tmux");
        return;
    }
    let t = demo(&["ready", "1000"], &[]);
    let pid = t.pid();
    let session = format!("hotslab-top-test-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &session])
            .args(args)
            .output()
            .expect("tmux")
    };
    let st = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "40",
        &format!("{TOP} {pid}; echo exited=$?; read x"),
    ]);
    assert!(st.status.success(), "{st:?}");
    // Polls the screen until it shows `what` (tmux has no way to wait for output).
    let wait_for = |what: &str| -> String {
        for _ in 0..500 {
            let o = tmux(&["capture-pane", "-p", "-t", &session]);
            let screen = String::from_utf8_lossy(&o.stdout).into_owned();
            if screen.contains(what) {
                return screen;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let o = tmux(&["capture-pane", "-p", "-t", &session]);
        tmux(&["kill-server"]);
        panic!(
            "the screen never showed {what:?}:\n{}",
            String::from_utf8_lossy(&o.stdout)
        );
    };
    let screen = wait_for("Sorted by objects");
    assert!(
        screen.contains(&format!("hotslab-top: pid {pid},")),
        "{screen}"
    );
    assert!(screen.contains("demo-objects"), "{screen}");
    tmux(&["send-keys", "-t", &session, "n"]);
    wait_for("Sorted by name");
    tmux(&["send-keys", "-t", &session, "c"]);
    wait_for("Sorted by cache size");
    tmux(&["send-keys", "-t", &session, "q"]);
    let screen = wait_for("exited=0");
    tmux(&["kill-server"]);
    assert!(
        !screen.contains("ACTIVE"),
        "the screen is restored: {screen}"
    );
    t.finish();
}
