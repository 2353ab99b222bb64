//! The data side of the standard-workload suite (`workload-suite` bin): which C programs in
//! `benches/workloads/` exist and with which arguments they run, the parsers of their `ok`
//! lines and of `HOTSLAB_STATS` tables, the statistics (median, geomean) and the Markdown
//! report. It starts no process; the bin does that.

use std::fmt::Write as _;

/// One workload: a C program (`benches/workloads/<source>.c`) and its arguments.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// Name in the report and for `--only`.
    /// (The program names itself by `source` in its `ok` line.)
    pub name: &'static str,
    /// Source file stem in `benches/workloads/`.
    pub source: &'static str,
    /// Arguments of the timed run (besides `--quick`).
    pub args: &'static [&'static str],
    /// Whether the whole `ok` line is the same under every allocator (otherwise only its
    /// `small_mallocs=` field is: the rest depends on thread interleaving).
    pub deterministic: bool,
    /// The mimalloc-bench shape it follows.
    pub shape: &'static str,
}

/// Every workload of the suite, in report order.
pub const WORKLOADS: &[Workload] = &[
    Workload {
        name: "larson",
        source: "larson",
        args: &[],
        deterministic: true,
        shape: "server churn, successor threads free predecessors' blocks",
    },
    Workload {
        name: "mstress",
        source: "mstress",
        args: &[],
        deterministic: false,
        shape: "thread churn, 50 % handed off through a transfer array",
    },
    Workload {
        name: "test-stress",
        source: "test-stress",
        args: &[],
        deterministic: false,
        shape: "mimalloc test-stress: 32 threads x 50 rounds, transfers, skewed sizes",
    },
    Workload {
        name: "glibc-thread",
        source: "glibc-thread",
        args: &[],
        deterministic: true,
        shape: "per-thread random malloc/free, mostly 8-16 B",
    },
    Workload {
        name: "glibc-simple",
        source: "glibc-simple",
        args: &[],
        deterministic: true,
        shape: "one thread, tight small malloc/free loops",
    },
    Workload {
        name: "alloc-test1",
        source: "alloc-test",
        args: &["--threads=1"],
        deterministic: true,
        shape: "random sizes and lifetimes (timing wheel), 1 thread",
    },
    Workload {
        name: "alloc-test2",
        source: "alloc-test",
        args: &["--threads=2"],
        deterministic: true,
        shape: "random sizes and lifetimes (timing wheel), 2 threads",
    },
    Workload {
        name: "xmalloc-test",
        source: "xmalloc-test",
        args: &[],
        deterministic: true,
        shape: "producers allocate, consumers free; 64 B and 32,776 B",
    },
    Workload {
        name: "cfrac",
        source: "cfrac",
        args: &[],
        deterministic: true,
        shape: "bignum lists of 16-64 B nodes (Pell identity of sqrt(2) convergents)",
    },
    Workload {
        name: "malloc-large",
        source: "malloc-large",
        args: &[],
        deterministic: true,
        shape: "5-25 MiB blocks, 4 live, every page touched",
    },
    Workload {
        name: "cache-scratch",
        source: "cache-scratch",
        args: &[],
        deterministic: true,
        shape: "passive false sharing: objects handed over, then recycled",
    },
    Workload {
        name: "cache-thrash",
        source: "cache-thrash",
        args: &[],
        deterministic: true,
        shape: "active false sharing: concurrent 8 B objects written hard",
    },
    Workload {
        name: "sh6bench",
        source: "sh6bench",
        args: &[],
        deterministic: true,
        shape: "size ramps 1-1000 B freed LIFO and FIFO, 4 threads",
    },
    Workload {
        name: "rptest",
        source: "rptest",
        args: &[],
        deterministic: true,
        shape: "log-uniform 8-16000 B over a working set, mailbox exchanges",
    },
    Workload {
        name: "strgrow",
        source: "strgrow",
        args: &[],
        deterministic: true,
        shape: "gs/espresso-like: strings grown by exact realloc, tokens",
    },
    Workload {
        name: "realloc",
        source: "realloc",
        args: &[],
        deterministic: true,
        shape: "realloc grow/shrink/jump across classes, 2 threads",
    },
];

/// The C source files the workloads need (each once), in report order.
pub fn sources() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for w in WORKLOADS {
        if !v.contains(&w.source) {
            v.push(w.source);
        }
    }
    v
}

/// The `small_mallocs=` count of a program's `<name> ok ...` line, if `stdout` has that line.
pub fn parse_ok(name: &str, stdout: &str) -> Option<u64> {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().take(2).eq([name, "ok"]))?;
    field(line, "small_mallocs")?.parse().ok()
}

/// The `<name> ok ...` line itself (trimmed), for cross-allocator comparison.
pub fn ok_line<'a>(name: &str, stdout: &'a str) -> Option<&'a str> {
    stdout
        .lines()
        .find(|l| l.split_whitespace().take(2).eq([name, "ok"]))
        .map(str::trim)
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// What the `HOTSLAB_STATS` file of a run says: how many processes printed a table and the
/// sum of their `allocs=` (allocations served from hotslab's caches). The table format is the
/// one `slab/src/report.rs` writes (`hotslab: total pid=.. allocs=.. frees=..`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Served {
    pub tables: usize,
    pub allocs: u64,
}

pub fn parse_stats(text: &str) -> Served {
    let mut s = Served::default();
    for line in text.lines().filter(|l| l.starts_with("hotslab: total ")) {
        s.tables += 1;
        s.allocs += field(line, "allocs")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    s
}

/// Median (mean of the middle two for an even count); NaN for no samples.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Geometric mean of the finite positive values; NaN if there are none.
pub fn geomean(v: &[f64]) -> f64 {
    let ok: Vec<f64> = v
        .iter()
        .copied()
        .filter(|x| x.is_finite() && *x > 0.0)
        .collect();
    if ok.is_empty() {
        return f64::NAN;
    }
    (ok.iter().map(|x| x.ln()).sum::<f64>() / ok.len() as f64).exp()
}

/// Samples of one workload under one allocator.
#[derive(Clone, Debug, Default)]
pub struct Cell {
    /// Wall seconds of every successful run.
    pub secs: Vec<f64>,
    /// Peak RSS (KiB, `ru_maxrss`) of every successful run.
    pub rss_kib: Vec<i64>,
    /// Why runs failed (empty when none did).
    pub failures: Vec<String>,
}

impl Cell {
    pub fn ok(&self) -> bool {
        self.failures.is_empty() && !self.secs.is_empty()
    }
    pub fn time(&self) -> f64 {
        if self.ok() {
            median(&self.secs)
        } else {
            f64::NAN
        }
    }
    /// The largest peak RSS over the runs, MiB.
    pub fn rss_mib(&self) -> f64 {
        match self.rss_kib.iter().max() {
            Some(&k) if self.ok() => k as f64 / 1024.0,
            _ => f64::NAN,
        }
    }
    /// Slowest over fastest run.
    pub fn spread(&self) -> f64 {
        let lo = self.secs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.secs.iter().copied().fold(0.0, f64::max);
        hi / lo
    }
}

/// Everything the report shows.
pub struct Report<'a> {
    /// Allocator names; `glibc`, `mimalloc` and `hotslab` are looked up by name for ratios.
    pub allocators: &'a [String],
    pub workloads: &'a [Workload],
    /// `cells[w][a]`
    pub cells: &'a [Vec<Cell>],
    /// Per workload: what the untimed `HOTSLAB_STATS` run found, and the program's count.
    pub served: &'a [Option<(Served, u64)>],
    /// Free-form lines put under the title (machine, load, label, notes).
    pub preamble: &'a [String],
    pub command: &'a str,
}

fn ratio(a: f64, b: f64) -> f64 {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        a / b
    } else {
        f64::NAN
    }
}

/// Median over rounds of `a`'s time / `b`'s time in the same round (NaN unless both ran every
/// round without a failure).
pub fn paired(a: &Cell, b: &Cell) -> f64 {
    if !a.ok() || !b.ok() || a.secs.len() != b.secs.len() {
        return f64::NAN;
    }
    let v: Vec<f64> = a
        .secs
        .iter()
        .zip(&b.secs)
        .map(|(x, y)| ratio(*x, *y))
        .collect();
    if v.iter().any(|x| !x.is_finite()) {
        return f64::NAN;
    }
    median(&v)
}

/// Writes one ratio cell per value and keeps each value in its column (for the geomean row).
fn ratio_cells(s: &mut String, cols: &mut [Vec<f64>], vals: impl Iterator<Item = f64>) {
    for (col, v) in cols.iter_mut().zip(vals) {
        col.push(v);
        let _ = write!(s, " {} |", fmt(v, 2));
    }
}

/// Writes the start of a geomean row: the bold label and one cell per column.
fn geomean_cells(s: &mut String, cols: &[Vec<f64>]) {
    let _ = write!(s, "| **geomean** |");
    for col in cols {
        let _ = write!(s, " **{}** |", fmt(geomean(col), 2));
    }
}

fn fmt(v: f64, prec: usize) -> String {
    if v.is_finite() {
        format!("{v:.prec$}")
    } else {
        "-".into()
    }
}

/// Renders the Markdown report.
pub fn render(r: &Report<'_>) -> String {
    let idx = |name: &str| r.allocators.iter().position(|a| a == name);
    let (glibc, mi, hs) = (idx("glibc"), idx("mimalloc"), idx("hotslab"));
    let time = |w: usize, a: Option<usize>| a.map_or(f64::NAN, |a| r.cells[w][a].time());
    let rss = |w: usize, a: Option<usize>| a.map_or(f64::NAN, |a| r.cells[w][a].rss_mib());
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Standard-workload suite: hotslab vs glibc, mimalloc, jemalloc, tcmalloc\n"
    );
    for line in r.preamble {
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(s, "\nProduced by `{}`.\n", r.command);
    let _ = writeln!(s, "## Per workload and allocator\n");
    let _ = writeln!(
        s,
        "| workload | allocator | median time (s) | max/min | time / glibc | time / mimalloc \
         | peak RSS (MiB) | RSS / mimalloc |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    for (w, wl) in r.workloads.iter().enumerate() {
        for (a, an) in r.allocators.iter().enumerate() {
            let c = &r.cells[w][a];
            if !c.ok() {
                let why = c.failures.first().map_or("no run", String::as_str);
                let _ = writeln!(
                    s,
                    "| {} | {an} | FAIL: {} | | | | | |",
                    wl.name,
                    why.replace('|', "/")
                );
                continue;
            }
            let (t, m) = (c.time(), c.rss_mib());
            let bold = |v: String| if Some(a) == hs { format!("**{v}**") } else { v };
            let _ = writeln!(
                s,
                "| {} | {an} | {} | {} | {} | {} | {} | {} |",
                wl.name,
                bold(fmt(t, 3)),
                fmt(c.spread(), 2),
                fmt(ratio(t, time(w, glibc)), 2),
                bold(fmt(ratio(t, time(w, mi)), 2)),
                fmt(m, 1),
                fmt(ratio(m, rss(w, mi)), 2)
            );
        }
    }
    // Summary: hotslab against every peer.
    let peers: Vec<usize> = (0..r.allocators.len()).filter(|&a| Some(a) != hs).collect();
    let _ = writeln!(s, "\n## Summary: hotslab / peer\n");
    let _ = write!(s, "| workload |");
    for &p in &peers {
        let _ = write!(s, " time / {} |", r.allocators[p]);
    }
    let _ = writeln!(s, " RSS / mimalloc | RSS / glibc |");
    let _ = writeln!(s, "|---|{}---:|---:|", "---:|".repeat(peers.len()));
    let mut tcols: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
    let (mut rss_mi, mut rss_gl) = (Vec::new(), Vec::new());
    for (w, wl) in r.workloads.iter().enumerate() {
        let _ = write!(s, "| {} |", wl.name);
        ratio_cells(
            &mut s,
            &mut tcols,
            peers.iter().map(|&p| ratio(time(w, hs), time(w, Some(p)))),
        );
        let (a, b) = (
            ratio(rss(w, hs), rss(w, mi)),
            ratio(rss(w, hs), rss(w, glibc)),
        );
        rss_mi.push(a);
        rss_gl.push(b);
        let _ = writeln!(s, " {} | {} |", fmt(a, 2), fmt(b, 2));
    }
    geomean_cells(&mut s, &tcols);
    let _ = writeln!(
        s,
        " **{}** | **{}** |",
        fmt(geomean(&rss_mi), 2),
        fmt(geomean(&rss_gl), 2)
    );
    let _ = writeln!(
        s,
        "\nBelow 1 means hotslab is faster (or smaller). A geomean skips workloads where either \
         side failed."
    );
    // Paired ratios: within-round ratios cancel the host's drift between rounds.
    let _ = writeln!(s, "\n## Paired: hotslab / peer within each round\n");
    let _ = writeln!(
        s,
        "Each round runs every allocator back to back, so a ratio taken inside one round \
         cancels what the host's speed does between rounds (on a shared VM it moves by 10-40 % \
         over minutes, which a ratio of medians from different moments keeps). Median over the \
         rounds of hotslab's time / the peer's time in the same round; `-` where a run failed.\n"
    );
    let _ = write!(s, "| workload |");
    for &p in &peers {
        let _ = write!(s, " paired / {} |", r.allocators[p]);
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|---|{}", "---:|".repeat(peers.len()));
    let mut pcols: Vec<Vec<f64>> = vec![Vec::new(); peers.len()];
    for (w, wl) in r.workloads.iter().enumerate() {
        let _ = write!(s, "| {} |", wl.name);
        ratio_cells(
            &mut s,
            &mut pcols,
            peers
                .iter()
                .map(|&p| hs.map_or(f64::NAN, |h| paired(&r.cells[w][h], &r.cells[w][p]))),
        );
        let _ = writeln!(s);
    }
    geomean_cells(&mut s, &pcols);
    let _ = writeln!(s);
    let _ = writeln!(s, "\n## hotslab served the traffic\n");
    let _ = writeln!(
        s,
        "One untimed `--quick` run per workload with `HOTSLAB_STATS`: the number of processes \
         that printed a hotslab table and hotslab's cache allocations, against the program's own \
         count of `malloc` calls of at most 4 KiB (hotslab's count also includes libc's own).\n"
    );
    let _ = writeln!(
        s,
        "| workload | tables | hotslab allocs | program small mallocs |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|");
    for (w, wl) in r.workloads.iter().enumerate() {
        match r.served.get(w).copied().flatten() {
            Some((sv, want)) => {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} |",
                    wl.name, sv.tables, sv.allocs, want
                );
            }
            None => {
                let _ = writeln!(s, "| {} | - | - | - |", wl.name);
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_line_is_found_only_for_its_program() {
        let out = "noise\nlarson ok small_mallocs=4010000 replaced=4000000\n";
        assert_eq!(parse_ok("larson", out), Some(4_010_000));
        assert_eq!(parse_ok("mstress", out), None);
        assert_eq!(parse_ok("larson", "larson FAIL small_mallocs=3\n"), None);
        assert_eq!(
            ok_line("larson", out),
            Some("larson ok small_mallocs=4010000 replaced=4000000")
        );
    }

    #[test]
    fn stats_sum_every_process_table() {
        let text = "hotslab: slabinfo pid=1 mode=OnlineMems nodes=1\n\
                    kmalloc-8  1 2 8 512 1 10 9 : N0=1\n\
                    hotslab: total pid=1 allocs=224 frees=69 live=155 large_live=0\n\
                    hotslab: slabinfo pid=2 mode=OnlineMems nodes=1\n\
                    hotslab: total pid=2 allocs=6 frees=6 live=0 large_live=0\n";
        assert_eq!(
            parse_stats(text),
            Served {
                tables: 2,
                allocs: 230
            }
        );
        assert_eq!(parse_stats(""), Served::default());
    }

    #[test]
    fn median_and_geomean() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert!((geomean(&[2.0, 8.0]) - 4.0).abs() < 1e-12);
        // Failed (NaN) entries are skipped, not poisoning the mean.
        assert!((geomean(&[f64::NAN, 0.5, 2.0]) - 1.0).abs() < 1e-12);
        assert!(geomean(&[f64::NAN]).is_nan());
    }

    #[test]
    fn every_workload_has_a_source_file_and_unique_name() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        for src in sources() {
            let p = dir.join(format!("{src}.c"));
            let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
            // Each program states its shape in a top comment and checks its results.
            assert!(text.starts_with("/* "), "{src}: no top comment");
            // (wl_obj_free verifies an object and calls wl_fail itself.)
            assert!(
                text.contains("wl_fail(") || text.contains("wl_obj_free("),
                "{src}: never checks its data"
            );
            assert!(text.contains("wl_ok(\""), "{src}: prints no ok line");
        }
        let mut names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), WORKLOADS.len());
    }

    #[test]
    fn paired_ratios_cancel_drift_between_rounds() {
        // The host runs at full speed in round 1, at half speed in round 2, and slows down in
        // round 3 between the peer's run and hotslab's. hotslab is 0.9x the peer throughout.
        let hs = Cell {
            secs: vec![0.9, 1.8, 1.8],
            ..Cell::default()
        };
        let peer = Cell {
            secs: vec![1.0, 2.0, 1.0],
            ..Cell::default()
        };
        // The ratio of medians says 1.8 / 1.0; the per-round ratios 0.9, 0.9, 1.8 say 0.9.
        assert!((hs.time() / peer.time() - 1.8).abs() < 1e-12);
        assert!((paired(&hs, &peer) - 0.9).abs() < 1e-12);
        let short = Cell {
            secs: vec![1.0],
            ..Cell::default()
        };
        assert!(paired(&hs, &short).is_nan(), "rounds must pair up");
        let failed = Cell {
            secs: vec![1.0, 1.0, 1.0],
            failures: vec!["exit 3".into()],
            ..Cell::default()
        };
        assert!(paired(&hs, &failed).is_nan());
    }

    #[test]
    fn report_ratios_use_glibc_and_mimalloc_and_mark_failures() {
        let allocators: Vec<String> = ["glibc", "mimalloc", "hotslab"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let cell = |t: f64, kib: i64| Cell {
            secs: vec![t, t * 1.1, t * 0.9],
            rss_kib: vec![kib, kib / 2],
            failures: vec![],
        };
        let failed = Cell {
            failures: vec!["killed by signal 11".into()],
            ..Cell::default()
        };
        let cells = vec![
            vec![cell(1.0, 2048), cell(0.5, 1024), cell(0.25, 4096)],
            vec![cell(1.0, 1024), cell(1.0, 1024), failed],
        ];
        let wl = &WORKLOADS[..2];
        let text = render(&Report {
            allocators: &allocators,
            workloads: wl,
            cells: &cells,
            served: &[
                Some((
                    Served {
                        tables: 1,
                        allocs: 9,
                    },
                    5,
                )),
                None,
            ],
            preamble: &["label".into()],
            command: "workload-suite --rounds 3",
        });
        // hotslab 0.25 s vs glibc 1.0 s and mimalloc 0.5 s; RSS 4 MiB vs mimalloc's 1 MiB.
        assert!(
            text.contains("| larson | hotslab | **0.250** | 1.22 | 0.25 | **0.50** | 4.0 | 4.00 |"),
            "{text}"
        );
        assert!(text.contains("| mstress | hotslab | FAIL: killed by signal 11 |"));
        // Summary: only larson counts in the geomean.
        assert!(
            text.contains("| larson | 0.25 | 0.50 | 4.00 | 2.00 |"),
            "{text}"
        );
        assert!(text.contains("| mstress | - | - | - | - |"), "{text}");
        assert!(
            text.contains("| **geomean** | **0.25** | **0.50** | **4.00** | **2.00** |"),
            "{text}"
        );
        // Paired: the same factor every round, so the per-round ratios equal the medians'.
        assert!(text.contains("| larson | 0.25 | 0.50 |\n"), "{text}");
        assert!(text.contains("| mstress | - | - |\n"), "{text}");
        assert!(text.contains("Produced by `workload-suite --rounds 3`"));
        assert!(text.contains("| larson | 1 | 9 | 5 |"));
    }
}
