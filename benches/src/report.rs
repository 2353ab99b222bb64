//! The report side of the bench runner: reads criterion's `benchmark.json`/`estimates.json`
//! files, and renders `RESULTS.md` tables (medians and hotslab/peer ratios), the headline
//! against the project's goals, and a hand-written SVG of the ratios. It runs no benchmark.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One criterion benchmark result.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Criterion group (`pair`, `larson`, ...).
    pub group: String,
    /// Function id: the allocator or variant (`hotslab`, `mimalloc`, `seed`, ...).
    pub function: String,
    /// Parameter (`64`, `16-256`, `alone`, ...).
    pub value: String,
    /// Median time of one iteration, ns.
    pub median_ns: f64,
    /// Elements per iteration (criterion throughput), 1 when none was set.
    pub elements: u64,
}

impl Record {
    /// Median time per element (per operation), ns.
    pub fn per_op_ns(&self) -> f64 {
        self.median_ns / self.elements.max(1) as f64
    }
}

/// Parses one benchmark's `benchmark.json` and `estimates.json` texts.
pub fn parse_record(benchmark_json: &str, estimates_json: &str) -> Option<Record> {
    let b: Value = serde_json::from_str(benchmark_json).ok()?;
    let e: Value = serde_json::from_str(estimates_json).ok()?;
    let group = b.get("group_id")?.as_str()?.to_string();
    let function = b
        .get("function_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let value = b
        .get("value_str")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let elements = b
        .get("throughput")
        .and_then(|t| t.get("Elements"))
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let median_ns = e.get("median")?.get("point_estimate")?.as_f64()?;
    Some(Record {
        group,
        function,
        value,
        median_ns,
        elements,
    })
}

/// Every benchmark under a criterion output directory (`.../<bench path>/new/*.json`).
pub fn collect(dir: &Path) -> Vec<Record> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in rd.flatten() {
            let p = entry.path();
            if !p.is_dir() {
                continue;
            }
            if p.file_name().is_some_and(|n| n == "new") {
                let b = std::fs::read_to_string(p.join("benchmark.json"));
                let e = std::fs::read_to_string(p.join("estimates.json"));
                if let (Ok(b), Ok(e)) = (b, e) {
                    out.extend(parse_record(&b, &e));
                }
            } else {
                stack.push(p);
            }
        }
    }
    out.sort_by(|a, b| (&a.group, &a.function, &a.value).cmp(&(&b.group, &b.function, &b.value)));
    out
}

/// Column order in tables; the first present is the reference of the ratios.
const COLUMN_ORDER: &[&str] = &[
    "hotslab",
    "asym",
    "OnlineMems-asym",
    "percpu",
    "OnlineMems-seed",
    "churn",
    "hotslab-kmalloc",
    "box-system",
    "system",
    "mimalloc",
    "jemalloc",
    "snmalloc",
    "seed",
    "rwlock",
    "OnlineMems-percpu",
    "SlabNodes",
    "Legacy",
    "quiet",
];

fn column_rank(f: &str) -> (usize, String) {
    (
        COLUMN_ORDER
            .iter()
            .position(|c| *c == f)
            .unwrap_or(COLUMN_ORDER.len()),
        f.to_string(),
    )
}

/// Rows sort numerically when the parameter is a number, else by first appearance order.
fn row_key(v: &str) -> (u8, u64, String) {
    match v.parse::<u64>() {
        Ok(n) => (0, n, String::new()),
        Err(_) => (1, 0, v.to_string()),
    }
}

/// A group's results: columns (functions, reference first), rows (parameters), ns/op cells.
#[derive(Debug)]
pub struct GroupTable {
    /// Group name.
    pub group: String,
    /// Functions, reference first.
    pub columns: Vec<String>,
    /// Parameters.
    pub rows: Vec<String>,
    /// (row, column) -> ns per operation.
    pub cells: BTreeMap<(String, String), f64>,
}

impl GroupTable {
    /// ns/op of one cell.
    pub fn get(&self, row: &str, col: &str) -> Option<f64> {
        self.cells.get(&(row.to_string(), col.to_string())).copied()
    }

    /// reference / column for one row (time ratio: below 1 the reference is faster).
    pub fn ratio(&self, row: &str, col: &str) -> Option<f64> {
        let r = self.get(row, self.columns.first()?)?;
        let c = self.get(row, col)?;
        (c > 0.0).then(|| r / c)
    }
}

/// Groups records into tables, in first-seen group order.
pub fn tables(records: &[Record]) -> Vec<GroupTable> {
    let mut order: Vec<String> = Vec::new();
    for r in records {
        if !order.contains(&r.group) {
            order.push(r.group.clone());
        }
    }
    order
        .into_iter()
        .map(|g| {
            let rs: Vec<&Record> = records.iter().filter(|r| r.group == g).collect();
            let mut columns: Vec<String> = Vec::new();
            let mut rows: Vec<String> = Vec::new();
            let mut cells = BTreeMap::new();
            for r in &rs {
                if !columns.contains(&r.function) {
                    columns.push(r.function.clone());
                }
                if !rows.contains(&r.value) {
                    rows.push(r.value.clone());
                }
                cells.insert((r.value.clone(), r.function.clone()), r.per_op_ns());
            }
            columns.sort_by_key(|c| column_rank(c));
            rows.sort_by_key(|v| row_key(v));
            GroupTable {
                group: g,
                columns,
                rows,
                cells,
            }
        })
        .collect()
}

/// A time in ns, human-scaled.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.2} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// Renders one group as a markdown table: medians per op, then reference/peer ratios.
pub fn render_table(t: &GroupTable) -> String {
    let mut s = String::new();
    let Some(reference) = t.columns.first() else {
        return s;
    };
    let others: Vec<&String> = t.columns.iter().skip(1).collect();
    let _ = write!(s, "| {} |", t.group);
    for c in &t.columns {
        let _ = write!(s, " {c} |");
    }
    for c in &others {
        let _ = write!(s, " {reference}/{c} |");
    }
    s.push('\n');
    s.push('|');
    for _ in 0..1 + t.columns.len() + others.len() {
        s.push_str(" --- |");
    }
    s.push('\n');
    for row in &t.rows {
        let _ = write!(s, "| {row} |");
        for c in &t.columns {
            match t.get(row, c) {
                Some(v) => {
                    let _ = write!(s, " {} |", fmt_ns(v));
                }
                None => s.push_str(" – |"),
            }
        }
        for c in &others {
            match t.ratio(row, c) {
                Some(r) => {
                    let _ = write!(s, " {r:.2} |");
                }
                None => s.push_str(" – |"),
            }
        }
        s.push('\n');
    }
    s
}

/// One bar group of the plot: a label and (peer, ratio) bars.
#[derive(Clone, Debug)]
pub struct PlotRow {
    /// Category label.
    pub label: String,
    /// (peer, hotslab/peer time ratio).
    pub bars: Vec<(String, f64)>,
}

/// Plot rows from tables: for each (group, row) of `wanted`, the ratio against each peer.
pub fn plot_rows(tables: &[GroupTable], wanted: &[(&str, &str)], peers: &[&str]) -> Vec<PlotRow> {
    let mut out = Vec::new();
    for (g, row) in wanted {
        let Some(t) = tables.iter().find(|t| t.group == *g) else {
            continue;
        };
        let bars: Vec<(String, f64)> = peers
            .iter()
            .filter_map(|p| t.ratio(row, p).map(|r| (p.to_string(), r)))
            .collect();
        if !bars.is_empty() {
            out.push(PlotRow {
                label: format!("{g} {row}"),
                bars,
            });
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const PALETTE: &[&str] = &["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759"];

/// A horizontal grouped bar chart of ratios on a log2 axis (1/8 .. 8), with a line at 1.0.
pub fn render_svg(title: &str, rows: &[PlotRow]) -> String {
    let mut peers: Vec<String> = Vec::new();
    for r in rows {
        for (p, _) in &r.bars {
            if !peers.contains(p) {
                peers.push(p.clone());
            }
        }
    }
    let bar_h = 9.0;
    let group_h = bar_h * peers.len().max(1) as f64 + 8.0;
    let (left, plot_w, top) = (190.0, 520.0, 50.0);
    let height = top + group_h * rows.len() as f64 + 60.0;
    let width = left + plot_w + 30.0;
    let (lo, hi) = (-3.0f64, 3.0f64); // log2 range
    let x = |ratio: f64| left + (ratio.max(1e-9).log2().clamp(lo, hi) - lo) / (hi - lo) * plot_w;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{:.0}" y="20" font-size="14" font-weight="bold">{}</text>"#,
        left,
        xml_escape(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{left:.0}" y="36" fill="#555">time ratio hotslab/peer, log scale: left of 1.0 hotslab is faster</text>"##
    );
    let bottom = top + group_h * rows.len() as f64;
    for k in -3..=3 {
        let r = 2f64.powi(k);
        let xx = x(r);
        let (stroke, w) = if k == 0 { ("#000", 1.5) } else { ("#ddd", 1.0) };
        let _ = writeln!(
            s,
            r#"<line x1="{xx:.1}" y1="{top:.1}" x2="{xx:.1}" y2="{bottom:.1}" stroke="{stroke}" stroke-width="{w}"/>"#
        );
        let lab = if k >= 0 {
            format!("{}", 1u32 << k)
        } else {
            format!("1/{}", 1u32 << -k)
        };
        let _ = writeln!(
            s,
            r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{lab}</text>"#,
            bottom + 14.0
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let y0 = top + group_h * i as f64 + 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{:.0}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y0 + group_h / 2.0,
            xml_escape(&row.label)
        );
        for (p, ratio) in &row.bars {
            let j = peers.iter().position(|q| q == p).unwrap_or(0);
            let y = y0 + bar_h * j as f64;
            let (x1, x2) = (x(1.0), x(*ratio));
            let (xa, w) = if x2 < x1 {
                (x2, x1 - x2)
            } else {
                (x1, x2 - x1)
            };
            let _ = writeln!(
                s,
                r#"<rect x="{xa:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} vs {}: {:.2}</title></rect>"#,
                w.max(0.5),
                bar_h - 1.0,
                PALETTE[j % PALETTE.len()],
                xml_escape(&row.label),
                xml_escape(p),
                ratio
            );
        }
    }
    for (j, p) in peers.iter().enumerate() {
        let lx = left + 110.0 * j as f64;
        let ly = bottom + 34.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx:.0}" y="{:.0}" width="10" height="10" fill="{}"/>"#,
            ly - 9.0,
            PALETTE[j % PALETTE.len()]
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.0}" y="{ly:.0}">vs {}</text>"#,
            lx + 14.0,
            xml_escape(p)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Whole-program workload result for one allocator under one policy (medians of the runs).
#[derive(Clone, Debug)]
pub struct WorkloadRow {
    /// Allocator (`hotslab`, `system`, ...).
    pub allocator: String,
    /// Median wall time, ms.
    pub wall_ms: f64,
    /// Median peak RSS, KiB.
    pub maxrss_kb: u64,
    /// Runs taken.
    pub runs: usize,
}

/// Everything measured under one numactl policy.
#[derive(Clone, Debug, Default)]
pub struct PolicyRun {
    /// Short name (`local`, `interleave`).
    pub name: String,
    /// The command prefix, as run (`numactl --cpunodebind=0 --membind=0`).
    pub command: String,
    /// Criterion results.
    pub records: Vec<Record>,
    /// Whole-program results.
    pub workload: Vec<WorkloadRow>,
}

/// Callgrind count of the hot pair for one allocator.
#[derive(Clone, Debug)]
pub struct CallgrindRow {
    /// Allocator.
    pub allocator: String,
    /// Instructions per alloc+free pair (loop included), if both runs worked.
    pub per_pair: Option<f64>,
}

/// Inputs of `RESULTS.md`.
#[derive(Clone, Debug, Default)]
pub struct ReportInput {
    /// `full` or `quick`.
    pub mode: String,
    /// The command that produced the report.
    pub command: String,
    /// Date and time (UTC).
    pub date: String,
    /// Machine description, (key, value).
    pub machine: Vec<(String, String)>,
    /// NUMA nodes of the machine.
    pub numa_nodes: usize,
    /// Runs per policy.
    pub policies: Vec<PolicyRun>,
    /// Pairs counted by the callgrind runs (difference of the two runs).
    pub callgrind_pairs: u64,
    /// Callgrind rows.
    pub callgrind: Vec<CallgrindRow>,
    /// callgrind_annotate excerpt for hotslab's run.
    pub hot_profile: Option<String>,
    /// (policy, SVG file name relative to RESULTS.md).
    pub plots: Vec<(String, String)>,
    /// Free-form notes (skipped parts, failures, bench side output).
    pub notes: Vec<String>,
}

/// The (group, row) pairs shown in the plot.
pub const PLOT_ROWS: &[(&str, &str)] = &[
    ("pair_hot", "16-256"),
    ("pair", "8"),
    ("pair", "16"),
    ("pair", "32"),
    ("pair", "64"),
    ("pair", "128"),
    ("pair", "256"),
    ("pair", "512"),
    ("pair", "1024"),
    ("pair", "2048"),
    ("pair", "4096"),
    ("mixed_stream", "8-4096-live64"),
    ("batch", "lifo-64B"),
    ("batch", "random-64B"),
    ("xthread", "64B"),
    ("xthread", "16-256B"),
    ("larson", "2t-pool4096-16-256B"),
    ("cache_scratch", "2t-8B-100w"),
    ("kmemcache", "pair"),
    ("kmemcache", "batch1000"),
];

/// Peers against which hotslab is plotted.
pub const PLOT_PEERS: &[&str] = &["system", "mimalloc", "jemalloc", "snmalloc"];

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("–".to_string(), |r| format!("{r:.2}"))
}

fn goal_cell(r: Option<f64>, goal: f64) -> String {
    match r {
        Some(r) if r <= goal => format!("**{r:.2}** (goal ≤ {goal}: met)"),
        Some(r) => format!("**{r:.2}** (goal ≤ {goal}: not met)"),
        None => "–".to_string(),
    }
}

/// The headline table of one policy: the issue's goals and where hotslab stands.
pub fn render_headline(run: &PolicyRun) -> String {
    let ts = tables(&run.records);
    let ratio = |g: &str, row: &str, peer: &str| {
        ts.iter()
            .find(|t| t.group == g)
            .and_then(|t| t.ratio(row, peer))
    };
    let mut s = String::new();
    s.push_str("| metric (hotslab/peer, time or RSS) | vs mimalloc | vs glibc | vs jemalloc |\n| --- | --- | --- | --- |\n");
    let time_rows = [
        (
            "alloc+free pair, hot 16-256 B",
            "pair_hot",
            "16-256",
            Some(0.5),
        ),
        (
            "cross-thread free, 64 B (2 threads)",
            "xthread",
            "64B",
            None,
        ),
        (
            "cross-thread free, 16-256 B (2 threads)",
            "xthread",
            "16-256B",
            None,
        ),
        (
            "larson-like churn (2 threads)",
            "larson",
            "2t-pool4096-16-256B",
            None,
        ),
        (
            "cache-scratch (2 threads)",
            "cache_scratch",
            "2t-8B-100w",
            None,
        ),
    ];
    for (label, g, row, glibc_goal) in time_rows {
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} |",
            goal_cell(ratio(g, row, "mimalloc"), 1.0),
            match glibc_goal {
                Some(goal) => goal_cell(ratio(g, row, "system"), goal),
                None => fmt_ratio(ratio(g, row, "system")),
            },
            fmt_ratio(ratio(g, row, "jemalloc"))
        );
    }
    let rss = |peer: &str| {
        let h = run.workload.iter().find(|w| w.allocator == "hotslab")?;
        let p = run.workload.iter().find(|w| w.allocator == peer)?;
        (p.maxrss_kb > 0).then(|| h.maxrss_kb as f64 / p.maxrss_kb as f64)
    };
    let wall = |peer: &str| {
        let h = run.workload.iter().find(|w| w.allocator == "hotslab")?;
        let p = run.workload.iter().find(|w| w.allocator == peer)?;
        (p.wall_ms > 0.0).then(|| h.wall_ms / p.wall_ms)
    };
    let _ = writeln!(
        s,
        "| whole-program peak RSS | {} | {} | {} |",
        goal_cell(rss("mimalloc"), 1.1),
        fmt_ratio(rss("system")),
        fmt_ratio(rss("jemalloc"))
    );
    let _ = writeln!(
        s,
        "| whole-program wall time | {} | {} | {} |",
        fmt_ratio(wall("mimalloc")),
        fmt_ratio(wall("system")),
        fmt_ratio(wall("jemalloc"))
    );
    let read = |kind: &str, row: &str| {
        ts.iter()
            .find(|t| t.group == "online_mems_read")
            .and_then(|t| t.get(row, kind))
    };
    let ns = |v: Option<f64>| v.map_or("–".into(), fmt_ns);
    let asym_vs_rwlock = match (read("asym", "alone"), read("rwlock", "alone")) {
        (Some(a), Some(r)) if r > 0.0 => Some(a / r),
        _ => None,
    };
    let two_vs_one = match (read("asym", "2readers"), read("asym", "alone")) {
        (Some(b), Some(a)) if a > 0.0 => Some(b / a),
        _ => None,
    };
    let verdict = |r: Option<f64>, goal: f64| match r {
        Some(r) if r <= goal => format!("{r:.2}×, met"),
        Some(r) => format!("{r:.2}×, not met"),
        None => "–".into(),
    };
    let _ = writeln!(
        s,
        "\nOnline-mems read side (ns per get+put, `online_mems_read`): asymmetric (the default) alone {} \
         against `RwLock`'s read {} (goal ≤ 0.5×: {}); with a second reader {} (flat, goal ≤ {FLAT_GOAL}× \
         alone: {}), `RwLock` {}; with a writer every ms {}. Per-CPU alone {}, with a second reader {}; \
         seed alone {}, with a second reader {}.",
        ns(read("asym", "alone")),
        ns(read("rwlock", "alone")),
        verdict(asym_vs_rwlock, 0.5),
        ns(read("asym", "2readers")),
        verdict(two_vs_one, FLAT_GOAL),
        ns(read("rwlock", "2readers")),
        ns(read("asym", "writer-1ms")),
        ns(read("percpu", "alone")),
        ns(read("percpu", "2readers")),
        ns(read("seed", "alone")),
        ns(read("seed", "2readers")),
    );
    s.push_str(&render_scaling(&ts));
    s
}

/// "Flat with two readers": the second reader may cost at most this factor.
const FLAT_GOAL: f64 = 1.25;

/// A fitted exponent at most this counts as O(n) or better (measurement noise on a loaded VM).
const LINEAR_GOAL: f64 = 1.15;

/// The scaling curves: (group, what n counts).
const SCALING: &[(&str, &str)] = &[
    ("create_destroy", "simulated nodes"),
    ("offline_online", "caches"),
];

/// Least-squares slope of log(time) against log(n): time ∝ n^slope. `None` with fewer than two
/// usable points.
pub fn fitted_exponent(points: &[(f64, f64)]) -> Option<f64> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .filter(|(n, t)| *n > 0.0 && *t > 0.0)
        .map(|(n, t)| (n.ln(), t.ln()))
        .collect();
    if pts.len() < 2 {
        return None;
    }
    let k = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / k,
        pts.iter().map(|p| p.1).sum::<f64>() / k,
    );
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The scaling table: per curve, the time at the smallest and largest n, and the fitted exponent
/// (≤ [`LINEAR_GOAL`]: O(n) or better).
pub fn render_scaling(ts: &[GroupTable]) -> String {
    let mut s = String::new();
    let mut rows = Vec::new();
    for (g, unit) in SCALING {
        let Some(t) = ts.iter().find(|t| t.group == *g) else {
            continue;
        };
        for c in &t.columns {
            let pts: Vec<(f64, f64)> = t
                .rows
                .iter()
                .filter_map(|r| Some((r.parse::<f64>().ok()?, t.get(r, c)?)))
                .collect();
            let (Some(first), Some(last)) = (pts.first(), pts.last()) else {
                continue;
            };
            let e = fitted_exponent(&pts);
            rows.push(format!(
                "| `{g}` | {c} | {unit} {}–{} | {} → {} | {} | {} |",
                first.0,
                last.0,
                fmt_ns(first.1),
                fmt_ns(last.1),
                e.map_or("–".into(), |e| format!("{e:.2}")),
                match e {
                    Some(e) if e <= LINEAR_GOAL => "O(n) or better",
                    Some(_) => "worse than O(n)",
                    None => "–",
                }
            ));
        }
    }
    if rows.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "\nScaling (time per operation against n; exponent: least-squares slope of log time on log n \
         over every point, ≤ {LINEAR_GOAL} counts as O(n) or better):\n\n\
         | curve | setup | n | time | exponent | verdict |\n| --- | --- | --- | --- | --- | --- |"
    );
    for r in rows {
        s.push_str(&r);
        s.push('\n');
    }
    s
}

/// The whole `RESULTS.md`.
pub fn render_results(inp: &ReportInput) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# hotslab benchmark results\n");
    let _ = writeln!(
        s,
        "Produced by `{}` ({} mode) on {}. Regenerate with the same command; the quick mode \
         (`-- --quick`) only checks that every benchmark runs and writes its report under `target/`.\n",
        inp.command, inp.mode, inp.date
    );
    s.push_str("## Machine\n\n");
    for (k, v) in &inp.machine {
        let _ = writeln!(s, "- **{k}**: {v}");
    }
    if inp.numa_nodes <= 1 {
        s.push_str(
            "\n> **One NUMA node.** This machine has a single NUMA node, so `--cpunodebind=0 --membind=0` \
             and `--interleave=all` place every page on the same memory: these runs cannot show a NUMA \
             gain (or loss) for hotslab's node-aware placement. They measure CPU cost, scalability on \
             two cores and memory use; a multi-node host is needed for the NUMA comparison.\n",
        );
    }
    s.push_str(
        "\n## How to read\n\nEvery allocator runs the same generic code (`A: GlobalAlloc`, monomorphised per \
         allocator) in the same process and the same run, so ratios are more trustworthy than absolute \
         times on this noisy VM. Cells are criterion medians per operation (one alloc+free pair, one \
         object handed over, one replacement, ...). **ratio = hotslab / peer** (time, or RSS): below 1.0 \
         hotslab is faster (smaller). `system` is glibc malloc. Non-allocator groups use their first \
         column as the reference (named in the header). Peers are used through their Rust crates' \
         `GlobalAlloc` (the `mimalloc` crate, for one, calls `mi_malloc_aligned` for every request), \
         which is what a Rust program gets. Profiling notes on where hotslab is behind: \
         [PROFILE.md](PROFILE.md).\n\n",
    );
    for run in &inp.policies {
        let _ = writeln!(s, "## Headline: `{}`\n", run.command);
        s.push_str(&render_headline(run));
        s.push('\n');
    }
    for (policy, file) in &inp.plots {
        let _ = writeln!(s, "![hotslab/peer time ratios under {policy}]({file})\n");
    }
    if !inp.callgrind.is_empty() {
        let _ = writeln!(
            s,
            "## Instructions per hot alloc+free pair (callgrind)\n\n`valgrind --tool=callgrind` on \
             `fastpath-count` (the hot 16-256 B pair loop of the benches), run twice with different pair \
             counts; the difference divided by the {} extra pairs removes start-up and teardown. Includes \
             about 5 loop instructions.\n\n| allocator | instructions/pair | hotslab/peer |\n| --- | --- | --- |",
            inp.callgrind_pairs
        );
        let h = inp
            .callgrind
            .iter()
            .find(|c| c.allocator == "hotslab")
            .and_then(|c| c.per_pair);
        for c in &inp.callgrind {
            let ratio = match (h, c.per_pair) {
                (Some(h), Some(p)) if p > 0.0 && c.allocator != "hotslab" => {
                    format!("{:.2}", h / p)
                }
                _ => "–".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {ratio} |",
                c.allocator,
                c.per_pair.map_or("failed".into(), |v| format!("{v:.1}"))
            );
        }
        if let Some(p) = &inp.hot_profile {
            let _ = writeln!(
                s,
                "\nWhere hotslab's instructions go, per pair (difference of the two runs, by the source file \
                 of the inlined code):\n\n```text\n{}\n```",
                p.trim_end()
            );
        }
        s.push('\n');
    }
    s.push_str("## Whole-program workload\n\nThe same std-heavy program (`src/program.rs`: hash map of strings, B-tree churn, a two-thread pipeline, parallel sorts, growing buffers) built once per allocator with a different `#[global_allocator]` (bins `workload-*`); wall time and peak RSS (`getrusage` `ru_maxrss`), medians of the runs. The checksums of all allocators matched.\n\n");
    for run in &inp.policies {
        if run.workload.is_empty() {
            continue;
        }
        let _ = writeln!(s, "`{}`:\n\n| allocator | runs | wall | peak RSS | hotslab/x wall | hotslab/x RSS |\n| --- | --- | --- | --- | --- | --- |", run.command);
        let h = run.workload.iter().find(|w| w.allocator == "hotslab");
        for w in &run.workload {
            let (rw, rr) = match h {
                Some(h) if w.allocator != "hotslab" => (
                    format!("{:.2}", h.wall_ms / w.wall_ms.max(1e-9)),
                    format!("{:.2}", h.maxrss_kb as f64 / w.maxrss_kb.max(1) as f64),
                ),
                _ => ("–".into(), "–".into()),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} ms | {:.1} MiB | {rw} | {rr} |",
                w.allocator,
                w.runs,
                w.wall_ms,
                w.maxrss_kb as f64 / 1024.0
            );
        }
        s.push('\n');
    }
    s.push_str("## Criterion benchmarks\n\n");
    for run in &inp.policies {
        let _ = writeln!(s, "### `{}`\n", run.command);
        for t in tables(&run.records) {
            s.push_str(&render_table(&t));
            s.push('\n');
        }
    }
    if !inp.notes.is_empty() {
        s.push_str("## Notes\n\n");
        for n in &inp.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const BENCH: &str = r#"{"group_id":"pair","function_id":"hotslab","value_str":"64","throughput":{"Elements":4},"full_id":"pair/hotslab/64","directory_name":"pair/hotslab/64","title":"pair/hotslab/64"}"#;
    const EST: &str = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":2.0},"point_estimate":1.5,"standard_error":0.1},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":2.0},"point_estimate":20.0,"standard_error":0.1}}"#;

    fn rec(g: &str, f: &str, v: &str, ns: f64) -> Record {
        Record {
            group: g.into(),
            function: f.into(),
            value: v.into(),
            median_ns: ns,
            elements: 1,
        }
    }

    #[test]
    fn parses_criterion_json() {
        let r = parse_record(BENCH, EST).expect("parses");
        assert_eq!(r, rec("pair", "hotslab", "64", 20.0).with_elements(4));
        assert_eq!(r.per_op_ns(), 5.0);
        assert_eq!(parse_record("{}", EST), None);
    }

    impl Record {
        fn with_elements(mut self, n: u64) -> Record {
            self.elements = n;
            self
        }
    }

    #[test]
    fn collects_from_a_directory_tree() {
        let dir = std::env::temp_dir().join(format!("hotslab-report-test-{}", std::process::id()));
        let new = dir.join("pair").join("hotslab").join("64").join("new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(new.join("benchmark.json"), BENCH).unwrap();
        std::fs::write(new.join("estimates.json"), EST).unwrap();
        let base = dir.join("pair").join("hotslab").join("64").join("base");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(base.join("benchmark.json"), BENCH).unwrap();
        std::fs::write(base.join("estimates.json"), EST).unwrap();
        let got = collect(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(got.len(), 1, "only new/ is read: {got:?}");
    }

    #[test]
    fn tables_order_columns_and_rows_and_compute_ratios() {
        let recs = vec![
            rec("pair", "mimalloc", "64", 5.0),
            rec("pair", "hotslab", "64", 4.0),
            rec("pair", "system", "8", 8.0),
            rec("pair", "hotslab", "8", 4.0),
            rec("pair", "system", "64", 10.0),
        ];
        let t = &tables(&recs)[0];
        assert_eq!(t.columns, ["hotslab", "system", "mimalloc"]);
        assert_eq!(t.rows, ["8", "64"]);
        assert_eq!(t.ratio("64", "mimalloc"), Some(0.8));
        assert_eq!(t.ratio("8", "system"), Some(0.5));
        assert_eq!(t.ratio("8", "mimalloc"), None);
        let md = render_table(t);
        assert!(
            md.contains(
                "| pair | hotslab | system | mimalloc | hotslab/system | hotslab/mimalloc |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| 64 | 4.00 ns | 10.00 ns | 5.00 ns | 0.40 | 0.80 |"),
            "{md}"
        );
        assert!(
            md.contains("| 8 | 4.00 ns | 8.00 ns | – | 0.50 | – |"),
            "{md}"
        );
    }

    #[test]
    fn headline_states_goals_met_or_not() {
        let records = vec![
            rec("pair_hot", "hotslab", "16-256", 4.0),
            rec("pair_hot", "mimalloc", "16-256", 5.0),
            rec("pair_hot", "system", "16-256", 6.0),
            rec("online_mems_read", "asym", "alone", 3.0),
            rec("online_mems_read", "asym", "2readers", 3.3),
            rec("online_mems_read", "rwlock", "alone", 10.0),
            rec("create_destroy", "OnlineMems-asym", "1", 1000.0),
            rec("create_destroy", "OnlineMems-asym", "64", 64_000.0),
            rec("create_destroy", "OnlineMems-asym", "1024", 1_024_000.0),
            rec("offline_online", "OnlineMems-asym", "1", 1000.0),
            rec("offline_online", "OnlineMems-asym", "100", 1_000_000.0),
        ];
        let workload = vec![
            WorkloadRow {
                allocator: "hotslab".into(),
                wall_ms: 10.0,
                maxrss_kb: 1200,
                runs: 1,
            },
            WorkloadRow {
                allocator: "mimalloc".into(),
                wall_ms: 20.0,
                maxrss_kb: 1000,
                runs: 1,
            },
        ];
        let run = PolicyRun {
            name: "local".into(),
            command: "numactl -l".into(),
            records,
            workload,
        };
        let h = render_headline(&run);
        assert!(h.contains("| alloc+free pair, hot 16-256 B | **0.80** (goal ≤ 1: met) | **0.67** (goal ≤ 0.5: not met) | – |"), "{h}");
        assert!(
            h.contains("| whole-program peak RSS | **1.20** (goal ≤ 1.1: not met)"),
            "{h}"
        );
        assert!(
            h.contains("alone 3.00 ns against `RwLock`'s read 10.00 ns (goal ≤ 0.5×: 0.30×, met)"),
            "{h}"
        );
        assert!(
            h.contains("with a second reader 3.30 ns (flat, goal ≤ 1.25× alone: 1.10×, met)"),
            "{h}"
        );
        assert!(
            h.contains("| `create_destroy` | OnlineMems-asym | simulated nodes 1–1024 | 1.00 µs → 1.02 ms | 1.00 | O(n) or better |"),
            "{h}"
        );
        assert!(
            h.contains("| `offline_online` | OnlineMems-asym | caches 1–100 | 1.00 µs → 1.00 ms | 1.50 | worse than O(n) |"),
            "{h}"
        );
        let inp = ReportInput {
            numa_nodes: 1,
            policies: vec![run],
            ..Default::default()
        };
        let md = render_results(&inp);
        assert!(md.contains("One NUMA node"));
        assert!(md.contains("| pair_hot | hotslab | system | mimalloc |"));
    }

    #[test]
    fn svg_has_a_bar_per_ratio_and_escapes_text() {
        let recs = vec![
            rec("pair", "hotslab", "64", 4.0),
            rec("pair", "system", "64", 8.0),
            rec("pair", "jemalloc", "64", 2.0),
        ];
        let ts = tables(&recs);
        let rows = plot_rows(
            &ts,
            &[("pair", "64"), ("missing", "x")],
            &["system", "jemalloc"],
        );
        assert_eq!(rows.len(), 1);
        let svg = render_svg("a < b", &rows);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<rect").count(),
            1 + 2 + 2,
            "background + two bars + two legend boxes"
        );
        assert!(svg.contains("a &lt; b"));
        assert!(svg.contains("pair 64 vs system: 0.50"));
    }
}
