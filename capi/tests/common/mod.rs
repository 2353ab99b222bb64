//! Real-program workloads run under an LD_PRELOADed allocator, shared by the LD_PRELOAD tests
//! (`tests/preload.rs`) and the benchmark (`examples/preload_bench.rs`): python3, sqlite3, git
//! and a multi-threaded C program, each with its own output check, plus the parser of the
//! `HOTSLAB_STATS` tables. Test support only; nothing here is part of the library.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Debian's programs (absolute paths: a PATH may hold other builds of them).
pub const PYTHON: &str = "/usr/bin/python3";
pub const SQLITE: &str = "/usr/bin/sqlite3";
pub const GIT: &str = "/usr/bin/git";
pub const SH: &str = "/bin/sh";

/// `target/<profile>/libhotslab.so`, next to the directory of the running test or example,
/// built (once per process) by `cargo build -p hotslab-capi` in the same profile: `cargo test`
/// builds a test's library only when the test links it, and nothing links a cdylib.
/// `HOTSLAB_SO` overrides the path (and skips the build).
pub fn hotslab_so() -> PathBuf {
    static SO: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    SO.get_or_init(|| {
        if let Some(p) = std::env::var_os("HOTSLAB_SO") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("current exe");
        let mut dir = exe.parent().expect("exe dir").to_path_buf();
        if dir.ends_with("deps") || dir.ends_with("examples") {
            dir.pop();
        }
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev".to_string(),
            Some(p) => p.to_string(),
            None => "dev".to_string(),
        };
        let target = dir.parent().expect("target dir");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
        let st = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "hotslab-capi",
                "--profile",
                &profile,
            ])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(st.success(), "cargo build -p hotslab-capi failed");
        dir.join("libhotslab.so")
    })
    .clone()
}

/// A fresh, empty scratch directory under the target directory.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let base = hotslab_so()
        .parent()
        .expect("target dir")
        .join("preload-scratch");
    let dir = base.join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Whether a program the tests need is installed.
pub fn have(path: &str) -> bool {
    Path::new(path).exists()
}

/// Compiles the C program `src` with `cc args... -o <scratch>/<name>/<name> src`, or `None`
/// when there is no C compiler (which CI must have). Panics with cc's messages if it fails.
pub fn compile_c(name: &str, src: &Path, args: &[&str]) -> Option<PathBuf> {
    if !have("/usr/bin/cc") {
        assert!(std::env::var_os("CI").is_none(), "cc is missing under CI");
        return None;
    }
    let out = scratch(name).join(name);
    let cc = Command::new("cc")
        .args(args)
        .arg("-o")
        .arg(&out)
        .arg(src)
        .output()
        .expect("run cc");
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    Some(out)
}

/// Checks a run's output: `Err` says what is wrong.
pub type Check = Box<dyn Fn(&Output) -> Result<(), String>>;

/// One run of a workload: the command (already set up in its directory) and its check.
pub struct Run {
    pub cmd: Command,
    pub check: Check,
}

fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn clean_exit(o: &Output) -> Result<(), String> {
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "exit {:?}\nstdout: {}\nstderr: {}",
            o.status,
            stdout_of(o),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

/// python3: dicts, lists, strings and threads (PYTHONMALLOC=malloc, so that every object goes
/// through malloc rather than CPython's own small-object arenas).
pub fn python(dir: &Path) -> Run {
    let script = dir.join("work.py");
    std::fs::write(
        &script,
        r#"
import threading, hashlib, json
results = {}
def work(k):
    d = {f"key-{i}-{k}": [i, str(i) * 3, {"n": i}] for i in range(60000)}
    words = " ".join(str(i * k) for i in range(60000)).split()
    s = "".join(sorted(set(words)))
    l = sorted((v[0] * 7) % 1009 for v in d.values())
    blob = json.dumps({"k": k, "sum": sum(l), "len": len(s)})
    results[k] = hashlib.sha256(blob.encode()).hexdigest()[:16] + ":" + str(sum(l)) + ":" + str(len(words))
ts = [threading.Thread(target=work, args=(k,)) for k in range(1, 5)]
for t in ts: t.start()
for t in ts: t.join()
for k in sorted(results): print(k, results[k])
"#,
    )
    .expect("write script");
    let mut cmd = Command::new(PYTHON);
    cmd.arg(&script)
        .env("PYTHONMALLOC", "malloc")
        .current_dir(dir);
    Run {
        cmd,
        check: Box::new(|o| {
            clean_exit(o)?;
            let out = stdout_of(o);
            let lines: Vec<&str> = out.lines().collect();
            if lines.len() != 4 {
                return Err(format!("expected 4 lines, got: {out}"));
            }
            // sum of (i*7 % 1009) over i < 60000 and 60000 words, whatever k.
            let want_sum: u64 = (0..60000u64).map(|i| (i * 7) % 1009).sum();
            for (n, line) in lines.iter().enumerate() {
                let want = format!(":{want_sum}:60000");
                if !line.starts_with(&format!("{} ", n + 1)) || !line.ends_with(&want) {
                    return Err(format!("bad line {line:?} (want suffix {want})"));
                }
            }
            Ok(())
        }),
    }
}

/// sqlite3: create a table, insert 100k rows (100k INSERT statements in one transaction),
/// index it, query it.
pub fn sqlite(dir: &Path) -> Run {
    let mut sql = String::with_capacity(6 << 20);
    sql.push_str("CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, name TEXT, v REAL);\nBEGIN;\n");
    for i in 0..100_000u64 {
        let k = (i * 7919) % 10007;
        sql.push_str(&format!(
            "INSERT INTO t(id, k, name, v) VALUES({i}, {k}, 'name-{i}-{k}', {}.5);\n",
            i % 1000
        ));
    }
    sql.push_str("COMMIT;\nCREATE INDEX t_k ON t(k);\nCREATE INDEX t_name ON t(name);\n");
    sql.push_str("SELECT count(*), sum(k), count(DISTINCT k) FROM t;\n");
    sql.push_str("SELECT count(*) FROM t WHERE k BETWEEN 100 AND 199;\n");
    sql.push_str("SELECT name FROM t WHERE name LIKE 'name-4242-%';\n");
    sql.push_str("SELECT k, count(*) FROM t GROUP BY k ORDER BY count(*) DESC, k LIMIT 1;\n");
    let file = dir.join("work.sql");
    std::fs::write(&file, sql).expect("write sql");
    let mut cmd = Command::new(SQLITE);
    cmd.arg(dir.join("db.sqlite"))
        .stdin(Stdio::from(std::fs::File::open(&file).expect("open sql")))
        .current_dir(dir);
    let sum_k: u64 = (0..100_000u64).map(|i| (i * 7919) % 10007).sum();
    let mut counts = vec![0u64; 10007];
    for i in 0..100_000u64 {
        counts[((i * 7919) % 10007) as usize] += 1;
    }
    let distinct = counts.iter().filter(|&&c| c > 0).count();
    let in_range: u64 = counts[100..200].iter().sum();
    let (top_k, top_n) = counts
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
        .map(|(k, &n)| (k, n))
        .unwrap();
    let want = format!(
        "100000|{sum_k}|{distinct}\n{in_range}\nname-4242-{}\n{top_k}|{top_n}\n",
        (4242u64 * 7919) % 10007
    );
    Run {
        cmd,
        check: Box::new(move |o| {
            clean_exit(o)?;
            let out = stdout_of(o);
            if out == want {
                Ok(())
            } else {
                Err(format!("sqlite output:\n{out}\nwanted:\n{want}"))
            }
        }),
    }
}

/// git: init, commit 200 files (in four commits), log, gc, fsck; run as one shell script so
/// that every git process (and the shell) runs under the preloaded allocator.
pub fn git(dir: &Path) -> Run {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).expect("repo dir");
    for i in 0..200 {
        let mut f = std::fs::File::create(repo.join(format!("file-{i:03}.txt"))).expect("file");
        for j in 0..(50 + i % 50) {
            writeln!(f, "file {i} line {j}: {}", "lorem ipsum ".repeat(1 + j % 5)).expect("w");
        }
    }
    let script = dir.join("work.sh");
    std::fs::write(
        &script,
        format!(
            r#"set -e
cd "{repo}"
{git} init -q -b main .
for part in 0 1 2 3; do
  {git} add $(ls file-*.txt | sed -n "$((part*50+1)),$((part*50+50))p")
  {git} commit -q -m "part $part"
done
{git} commit -q --allow-empty -m "empty"
{git} log --oneline | wc -l
{git} ls-files | wc -l
{git} gc -q --aggressive
{git} count-objects -v | grep '^in-pack'
{git} fsck --no-progress --strict && echo fsck-ok
"#,
            repo = repo.display(),
            git = GIT
        ),
    )
    .expect("write script");
    let mut cmd = Command::new(SH);
    cmd.arg(&script)
        .current_dir(dir)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "hotslab")
        .env("GIT_AUTHOR_EMAIL", "hotslab@example.invalid")
        .env("GIT_COMMITTER_NAME", "hotslab")
        .env("GIT_COMMITTER_EMAIL", "hotslab@example.invalid")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z");
    Run {
        cmd,
        check: Box::new(|o| {
            clean_exit(o)?;
            let out = stdout_of(o);
            let l: Vec<&str> = out.lines().map(str::trim).collect();
            // 5 commits, 200 files, 200 blobs + 4 trees + 5 commits packed, fsck clean.
            if l.len() == 4
                && l[0] == "5"
                && l[1] == "200"
                && l[2].starts_with("in-pack: ")
                && l[2]["in-pack: ".len()..]
                    .parse::<u32>()
                    .is_ok_and(|n| n >= 209)
                && l[3] == "fsck-ok"
            {
                Ok(())
            } else {
                Err(format!("git output:\n{out}"))
            }
        }),
    }
}

/// The multi-threaded C program (`tests/programs/mt_fork.c`), compiled with `cc` into `dir`.
pub fn c_program(dir: &Path) -> Run {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/mt_fork.c");
    let inc = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let exe = dir.join("mt_fork");
    let cc = Command::new("cc")
        .args(["-O2", "-Wall", "-pthread", "-I"])
        .arg(&inc)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("run cc");
    assert!(
        cc.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let mut cmd = Command::new(&exe);
    cmd.current_dir(dir);
    Run {
        cmd,
        check: Box::new(|o| {
            clean_exit(o)?;
            if stdout_of(o).starts_with("mt_fork ok threads=8 rounds=40000 remote_frees=160000") {
                Ok(())
            } else {
                Err(format!("mt_fork output: {}", stdout_of(o)))
            }
        }),
    }
}

/// One `HOTSLAB_STATS` table: the process, its totals and its per-cache allocation counts.
#[derive(Debug, Default, Clone)]
pub struct Table {
    pub pid: u32,
    pub allocs: u64,
    pub frees: u64,
    /// Sum of the per-cache `<allocs>` column (must equal `allocs`).
    pub cache_allocs: u64,
    pub caches: usize,
    pub mode: String,
    pub nodes: u32,
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Parses every table in a `HOTSLAB_STATS` file (one per process that exited normally).
pub fn parse_stats(text: &str) -> Vec<Table> {
    let mut out = Vec::new();
    let mut cur: Option<Table> = None;
    for line in text.lines() {
        if line.starts_with("hotslab: slabinfo ") {
            cur = Some(Table {
                pid: field(line, "pid").and_then(|v| v.parse().ok()).unwrap_or(0),
                mode: field(line, "mode").unwrap_or("").to_string(),
                nodes: field(line, "nodes")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                ..Table::default()
            });
        } else if line.starts_with("hotslab: total ") {
            if let Some(mut t) = cur.take() {
                t.allocs = field(line, "allocs")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                t.frees = field(line, "frees")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                out.push(t);
            }
        } else if let Some(t) = cur.as_mut() {
            if line.starts_with("kmalloc-") {
                let cols: Vec<&str> = line.split_whitespace().collect();
                if cols.len() > 7 {
                    t.cache_allocs += cols[6].parse::<u64>().unwrap_or(0);
                    t.caches += 1;
                }
            }
        }
    }
    out
}

/// Runs `run` with `preload` (if any) in LD_PRELOAD and `HOTSLAB_STATS` pointing at `stats`.
pub fn run_with(run: &mut Run, preload: Option<&Path>, stats: Option<&Path>) -> Output {
    if let Some(p) = preload {
        run.cmd.env("LD_PRELOAD", p);
    } else {
        run.cmd.env_remove("LD_PRELOAD");
    }
    match stats {
        Some(s) => run.cmd.env("HOTSLAB_STATS", s),
        None => run.cmd.env_remove("HOTSLAB_STATS"),
    };
    run.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    run.cmd.output().expect("spawn workload")
}
