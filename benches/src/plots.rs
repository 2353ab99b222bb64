//! Pictures of the results the repository already holds: a reader of the Markdown tables in
//! `benches/RESULTS*.md` and a small hand-written SVG renderer (grouped horizontal bars on a
//! log2 ratio axis or a linear axis with a unit, and line charts), composed into one figure
//! per area. Used by the `results-plots` bin (the four figures at the top of `RESULTS.md`), by
//! `bench-runner` (which calls [`refresh_results`] after writing `RESULTS.md`) and by
//! `capi-report` (the RSS curves). It runs no benchmark and measures nothing.

use std::fmt::Write as _;
use std::path::Path;

/// One Markdown table and the headings above it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MdTable {
    /// The `#` headings in force where the table starts (outermost first), without the `#`s.
    pub headings: Vec<String>,
    /// The last non-empty, non-heading line before the table (often a policy or a caption).
    pub caption: String,
    /// Header cells.
    pub header: Vec<String>,
    /// Body rows (cells trimmed, `**` kept).
    pub rows: Vec<Vec<String>>,
}

impl MdTable {
    /// Index of the column whose header is `name` (exact, after trimming backticks).
    pub fn col(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h.trim_matches('`') == name)
    }

    /// The row whose first cell is `key` (after trimming `**` and backticks).
    pub fn row(&self, key: &str) -> Option<&[String]> {
        self.rows
            .iter()
            .find(|r| r.first().is_some_and(|c| clean(c) == key))
            .map(Vec::as_slice)
    }

    /// The number in cell (`key` row, `column`), see [`number`].
    pub fn get(&self, key: &str, column: &str) -> Option<f64> {
        let c = self.col(column)?;
        number(self.row(key)?.get(c)?)
    }

    /// Whether a heading or the caption contains `needle`.
    pub fn under(&self, needle: &str) -> bool {
        self.headings.iter().any(|h| h.contains(needle)) || self.caption.contains(needle)
    }
}

fn clean(cell: &str) -> &str {
    cell.trim().trim_matches('*').trim_matches('`').trim()
}

fn split_row(line: &str) -> Vec<String> {
    let t = line.trim();
    let t = t.strip_prefix('|').unwrap_or(t);
    let t = t.strip_suffix('|').unwrap_or(t);
    t.split('|').map(|c| c.trim().to_string()).collect()
}

fn is_rule(line: &str) -> bool {
    let t = line.trim();
    t.starts_with('|') && t.contains('-') && t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

/// Every table of a Markdown text, with the headings and the caption line above it.
pub fn parse_tables(md: &str) -> Vec<MdTable> {
    let lines: Vec<&str> = md.lines().collect();
    let mut out = Vec::new();
    let mut headings: Vec<(usize, String)> = Vec::new();
    let mut caption = String::new();
    let mut i = 0;
    let mut in_code = false;
    while i < lines.len() {
        let l = lines[i];
        if l.trim_start().starts_with("```") {
            in_code = !in_code;
            i += 1;
            continue;
        }
        if in_code {
            i += 1;
            continue;
        }
        if let Some(h) = l.strip_prefix('#') {
            let level = 1 + h.chars().take_while(|c| *c == '#').count();
            let text = h.trim_start_matches('#').trim().to_string();
            headings.retain(|(lv, _)| *lv < level);
            headings.push((level, text));
            caption.clear();
            i += 1;
            continue;
        }
        if l.trim_start().starts_with('|') && i + 1 < lines.len() && is_rule(lines[i + 1]) {
            let header = split_row(l);
            let mut rows = Vec::new();
            i += 2;
            while i < lines.len() && lines[i].trim_start().starts_with('|') {
                rows.push(split_row(lines[i]));
                i += 1;
            }
            out.push(MdTable {
                headings: headings.iter().map(|(_, t)| t.clone()).collect(),
                caption: caption.clone(),
                header,
                rows,
            });
            continue;
        }
        if !l.trim().is_empty() {
            caption = l.trim().to_string();
        }
        i += 1;
    }
    out
}

/// The number in a table cell: `**0.93**` → 0.93, `47.93 ns` → 47.93, `4.19 µs` → 4190 (times
/// are given in ns), `1.03 ms` → 1.03e6, `35.8 MiB` → 35.8, `1888.7 ms` → 1.8887e9 ns. `None` for
/// text, `–`, `failed`.
pub fn number(cell: &str) -> Option<f64> {
    let c = clean(cell);
    let (num, unit) = match c.find(' ') {
        Some(k) => (&c[..k], c[k + 1..].trim()),
        None => (c, ""),
    };
    let v: f64 = num.trim_matches('*').parse().ok()?;
    let scale = match unit {
        "" | "MiB" | "KiB" | "x" | "%" => 1.0,
        "ns" => 1.0,
        "µs" | "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    v.is_finite().then_some(v * scale)
}

/// The first table whose header row starts with `first` and that lies under a heading or
/// caption containing `under` (empty: any).
pub fn find_table<'a>(tables: &'a [MdTable], first: &str, under: &str) -> Option<&'a MdTable> {
    tables.iter().find(|t| {
        t.header.first().is_some_and(|h| clean(h) == first) && (under.is_empty() || t.under(under))
    })
}

// ---------------------------------------------------------------------------------------------
// SVG

/// Colours of the series, in order (colour-blind-safe Tableau-like palette).
pub const PALETTE: &[&str] = &[
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#76b7b2", "#edc948", "#9c755f",
];

/// Escapes text for SVG.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The axis of a bar panel.
#[derive(Clone, Debug, PartialEq)]
pub enum Axis {
    /// hotslab/peer ratios on a log2 axis from 1/2^k to 2^k, with a bold line at 1.
    Ratio {
        /// Half range in powers of two (3: 1/8 .. 8).
        k: i32,
        /// What the ratio is of (`time`, `peak RSS`).
        of: String,
    },
    /// Plain values from 0 with a unit (`ns`, `µs`, `MiB`, `instructions`).
    Linear {
        /// Unit label of the axis.
        unit: String,
    },
}

/// A grouped horizontal bar panel: one group per row label, one bar per series.
#[derive(Clone, Debug)]
pub struct BarPanel {
    /// Panel title (bold).
    pub title: String,
    /// Line under the title: where the data comes from.
    pub source: String,
    /// The axis.
    pub axis: Axis,
    /// Series names in legend order (`vs glibc`, `OnlineMems-Seed`, ...).
    pub series: Vec<String>,
    /// (row label, one value per series; `None` draws no bar).
    pub rows: Vec<(String, Vec<Option<f64>>)>,
}

/// A line panel: series of (x, y) points.
#[derive(Clone, Debug)]
pub struct LinePanel {
    /// Panel title (bold).
    pub title: String,
    /// Line under the title.
    pub source: String,
    /// X axis label with unit.
    pub x_label: String,
    /// Y axis label with unit.
    pub y_label: String,
    /// (name, points).
    pub series: Vec<(String, Vec<(f64, f64)>)>,
    /// Dashed horizontal reference lines: (y, label).
    pub marks: Vec<(f64, String)>,
}

/// One panel of a figure.
#[derive(Clone, Debug)]
pub enum Panel {
    /// Grouped bars.
    Bars(BarPanel),
    /// Lines.
    Lines(LinePanel),
}

const WIDTH: f64 = 760.0;
const LEFT: f64 = 200.0;
const PLOT_W: f64 = 470.0;

fn nice_step(max: f64) -> f64 {
    let raw = (max / 5.0).max(1e-12);
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= raw {
            return m * mag;
        }
    }
    10.0 * mag
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn legend(s: &mut String, series: &[String], y: f64) -> f64 {
    let (mut x, mut yy) = (LEFT, y);
    for (j, name) in series.iter().enumerate() {
        let w = 24.0 + 6.5 * name.chars().count() as f64;
        if x + w > WIDTH - 10.0 {
            x = LEFT;
            yy += 16.0;
        }
        let _ = writeln!(
            s,
            r#"<rect x="{x:.0}" y="{:.0}" width="10" height="10" fill="{}"/><text x="{:.0}" y="{yy:.0}">{}</text>"#,
            yy - 9.0,
            PALETTE[j % PALETTE.len()],
            x + 14.0,
            esc(name)
        );
        x += w;
    }
    yy + 8.0
}

fn panel_head(s: &mut String, title: &str, source: &str, y: f64) -> f64 {
    let _ = writeln!(
        s,
        r#"<text x="12" y="{:.0}" font-size="13" font-weight="bold">{}</text>"#,
        y + 14.0,
        esc(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="12" y="{:.0}" fill="#555">{}</text>"##,
        y + 30.0,
        esc(source)
    );
    y + 42.0
}

/// Value → x coordinate.
type XMap = Box<dyn Fn(f64) -> f64>;
/// An axis tick: value, label, drawn bold.
type Tick = (f64, String, bool);

/// Renders a bar panel at height `y`; returns the y below it.
fn bars(s: &mut String, p: &BarPanel, y: f64) -> f64 {
    let top = panel_head(s, &p.title, &p.source, y) + 18.0;
    let nser = p.series.len().max(1) as f64;
    let bar_h = if nser > 3.0 { 8.0 } else { 10.0 };
    let group_h = bar_h * nser + 8.0;
    let bottom = top + group_h * p.rows.len() as f64;
    let values = p.rows.iter().flat_map(|(_, v)| v.iter().flatten().copied());
    let (x_of, ticks, axis_label): (XMap, Vec<Tick>, String) = match &p.axis {
        Axis::Ratio { k, of } => {
            let k = *k as f64;
            let f = move |r: f64| LEFT + (r.max(1e-9).log2().clamp(-k, k) + k) / (2.0 * k) * PLOT_W;
            let ticks = (-(k as i32)..=(k as i32))
                .map(|e| {
                    let lab = if e >= 0 {
                        format!("{}", 1u64 << e)
                    } else {
                        format!("1/{}", 1u64 << -e)
                    };
                    (2f64.powi(e), lab, e == 0)
                })
                .collect();
            (
                Box::new(f),
                ticks,
                format!(
                    "hotslab / peer, {of} (log scale): left of 1 hotslab is {}",
                    if of.contains("RSS") {
                        "smaller"
                    } else {
                        "faster"
                    }
                ),
            )
        }
        Axis::Linear { unit } => {
            let max = values.fold(0.0f64, f64::max).max(1e-9);
            let step = nice_step(max);
            let hi = (max / step).ceil() * step;
            let f = move |v: f64| LEFT + (v.max(0.0) / hi).min(1.0) * PLOT_W;
            let n = (hi / step).round() as i32;
            let ticks = (0..=n)
                .map(|i| (i as f64 * step, fmt_tick(i as f64 * step), i == 0))
                .collect();
            (Box::new(f), ticks, unit.clone())
        }
    };
    let _ = writeln!(
        s,
        r##"<text x="{:.0}" y="{:.0}" fill="#333" text-anchor="middle">{}</text>"##,
        LEFT + PLOT_W / 2.0,
        top - 6.0,
        esc(&axis_label)
    );
    for (v, lab, bold) in &ticks {
        let xx = x_of(*v);
        let (stroke, w) = if *bold { ("#000", 1.5) } else { ("#ddd", 1.0) };
        let _ = writeln!(
            s,
            r#"<line x1="{xx:.1}" y1="{top:.1}" x2="{xx:.1}" y2="{bottom:.1}" stroke="{stroke}" stroke-width="{w}"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            bottom + 13.0,
            esc(lab)
        );
    }
    let base = match p.axis {
        Axis::Ratio { .. } => x_of(1.0),
        Axis::Linear { .. } => x_of(0.0),
    };
    for (i, (label, vals)) in p.rows.iter().enumerate() {
        let y0 = top + group_h * i as f64 + 4.0;
        if i % 2 == 1 {
            let _ = writeln!(
                s,
                r##"<rect x="12" y="{:.1}" width="{:.0}" height="{group_h:.1}" fill="#f6f6f6"/>"##,
                y0 - 4.0,
                WIDTH - 24.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.0}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y0 + (group_h - 8.0) / 2.0 + 4.0,
            esc(label)
        );
        for (j, v) in vals.iter().enumerate() {
            let Some(v) = v else { continue };
            let y = y0 + bar_h * j as f64;
            let x2 = x_of(*v);
            let (xa, w) = if x2 < base {
                (x2, base - x2)
            } else {
                (base, x2 - base)
            };
            let name = p.series.get(j).map_or("", String::as_str);
            let _ = writeln!(
                s,
                r#"<rect x="{xa:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {}: {}</title></rect>"#,
                w.max(0.8),
                bar_h - 1.0,
                PALETTE[j % PALETTE.len()],
                esc(label),
                esc(name),
                fmt_value(*v)
            );
            let (tx, anchor) = if x2 < base {
                (xa - 3.0, "end")
            } else {
                (xa + w.max(0.8) + 3.0, "start")
            };
            let _ = writeln!(
                s,
                r##"<text x="{tx:.1}" y="{:.1}" font-size="8" fill="#444" text-anchor="{anchor}">{}</text>"##,
                y + bar_h - 2.0,
                fmt_value(*v)
            );
        }
    }
    if p.series.len() < 2 {
        return bottom + 24.0;
    }
    legend(s, &p.series, bottom + 32.0) + 6.0
}

/// Renders a line panel at height `y`; returns the y below it.
fn lines(s: &mut String, p: &LinePanel, y: f64) -> f64 {
    let top = panel_head(s, &p.title, &p.source, y) + 10.0;
    let h = 220.0;
    let bottom = top + h;
    let pts = p.series.iter().flat_map(|(_, v)| v.iter());
    let (mut xmax, mut ymax) = (1e-9f64, 1e-9f64);
    for (x, y) in pts {
        xmax = xmax.max(*x);
        ymax = ymax.max(*y);
    }
    for (m, _) in &p.marks {
        ymax = ymax.max(*m);
    }
    let (xs, ys) = (nice_step(xmax), nice_step(ymax));
    let (xhi, yhi) = ((xmax / xs).ceil() * xs, (ymax / ys).ceil() * ys);
    let fx = |x: f64| LEFT + x / xhi * PLOT_W;
    let fy = |v: f64| bottom - v / yhi * h;
    for i in 0..=((yhi / ys).round() as i32) {
        let v = i as f64 * ys;
        let yy = fy(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT:.0}" y1="{yy:.1}" x2="{:.0}" y2="{yy:.1}" stroke="{}" stroke-width="1"/><text x="{:.0}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + PLOT_W,
            if i == 0 { "#000" } else { "#ddd" },
            LEFT - 6.0,
            yy + 4.0,
            fmt_tick(v)
        );
    }
    for i in 0..=((xhi / xs).round() as i32) {
        let v = i as f64 * xs;
        let xx = fx(v);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{top:.0}" x2="{xx:.1}" y2="{bottom:.0}" stroke="{}" stroke-width="1"/><text x="{xx:.1}" y="{:.0}" text-anchor="middle">{}</text>"##,
            if i == 0 { "#000" } else { "#eee" },
            bottom + 14.0,
            fmt_tick(v)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.0}" y="{:.0}" text-anchor="middle" fill="#333">{}</text>"##,
        LEFT + PLOT_W / 2.0,
        bottom + 30.0,
        esc(&p.x_label)
    );
    let _ = writeln!(
        s,
        r##"<text x="{:.0}" y="{:.0}" text-anchor="middle" fill="#333" transform="rotate(-90 {:.0} {:.0})">{}</text>"##,
        LEFT - 52.0,
        top + h / 2.0,
        LEFT - 52.0,
        top + h / 2.0,
        esc(&p.y_label)
    );
    for (m, lab) in &p.marks {
        let yy = fy(*m);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT:.0}" y1="{yy:.1}" x2="{:.0}" y2="{yy:.1}" stroke="#900" stroke-dasharray="5,4" stroke-width="1"/><text x="{:.0}" y="{:.1}" fill="#900" font-size="9" text-anchor="end">{}</text>"##,
            LEFT + PLOT_W,
            LEFT + PLOT_W - 2.0,
            yy - 3.0,
            esc(lab)
        );
    }
    for (j, (name, pts)) in p.series.iter().enumerate() {
        let c = PALETTE[j % PALETTE.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|(x, y)| format!("{:.1},{:.1}", fx(*x), fy(*y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"><title>{}</title></polyline>"#,
            path.join(" "),
            esc(name)
        );
        for (x, y) in pts {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="2" fill="{c}"/>"#,
                fx(*x),
                fy(*y)
            );
        }
    }
    let names: Vec<String> = p.series.iter().map(|(n, _)| n.clone()).collect();
    legend(s, &names, bottom + 50.0) + 6.0
}

/// A whole figure: a title, panels stacked top to bottom, and a footnote.
pub fn figure(title: &str, panels: &[Panel], footnote: &str) -> String {
    let mut body = String::new();
    let mut y = 34.0;
    for p in panels {
        y = match p {
            Panel::Bars(b) => bars(&mut body, b, y),
            Panel::Lines(l) => lines(&mut body, l, y),
        } + 14.0;
    }
    let mut foot = String::new();
    for (i, line) in footnote.lines().enumerate() {
        let _ = writeln!(
            foot,
            r##"<text x="12" y="{:.0}" fill="#666" font-size="10">{}</text>"##,
            y + 12.0 * i as f64,
            esc(line)
        );
    }
    let height = y + 12.0 * footnote.lines().count() as f64 + 8.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0}" height="{height:.0}" viewBox="0 0 {WIDTH:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="12" y="22" font-size="16" font-weight="bold">{}</text>"#,
        esc(title)
    );
    s.push_str(&body);
    s.push_str(&foot);
    s.push_str("</svg>\n");
    s
}

// ---------------------------------------------------------------------------------------------
// The four figures of RESULTS.md

/// Peers of the ratio panels, as (column name in RESULTS.md, column name in
/// RESULTS-workloads.md, legend name).
const PEERS: &[(&str, &str, &str)] = &[
    ("system", "glibc", "vs glibc"),
    ("mimalloc", "mimalloc", "vs mimalloc"),
    ("jemalloc", "jemalloc", "vs jemalloc"),
];

/// The inputs: the tables of `RESULTS.md`, of `RESULTS-workloads.md` and of `RESULTS-capi.md`
/// (each may be empty).
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// Tables of `RESULTS.md` (criterion suite, whole-program workload, callgrind).
    pub results: Vec<MdTable>,
    /// Tables of `RESULTS-workloads.md` (standard-workload suite).
    pub workloads: Vec<MdTable>,
    /// Tables of `RESULTS-capi.md` (the idle-RSS table of `capi-report`).
    pub capi: Vec<MdTable>,
    /// Where the criterion data is from (the `Produced by ... on DATE` line of RESULTS.md).
    pub results_date: String,
}

impl Sources {
    /// Reads the three reports in `dir` (missing files give no tables).
    pub fn read(dir: &Path) -> Sources {
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        let results = read("RESULTS.md");
        let date = results
            .lines()
            .find_map(|l| {
                let k = l.find(") on ")?;
                let rest = &l[k + 5..];
                Some(rest[..rest.find(". ").unwrap_or(rest.len())].to_string())
            })
            .unwrap_or_default();
        Sources {
            results: parse_tables(&strip_block(&results)),
            workloads: parse_tables(&read("RESULTS-workloads.md")),
            capi: parse_tables(&read("RESULTS-capi.md")),
            results_date: date,
        }
    }

    fn criterion(&self, group: &str) -> Option<&MdTable> {
        find_table(&self.results, group, "--membind=0")
    }

    /// hotslab / peer from a criterion table (cells are per-op medians).
    fn crit_ratio(&self, group: &str, row: &str, peer: &str) -> Option<f64> {
        let t = self.criterion(group)?;
        let h = t.get(row, "hotslab")?;
        let p = t.get(row, peer)?;
        (p > 0.0).then_some(h / p)
    }

    /// The per-workload table of the standard suite.
    fn suite(&self) -> Option<&MdTable> {
        self.workloads.iter().find(|t| {
            t.col("workload").is_some()
                && t.col("allocator").is_some()
                && t.col("median time (s)").is_some()
        })
    }

    /// (workload, allocator) → (time s, peak RSS MiB).
    fn suite_cell(&self, workload: &str, allocator: &str) -> Option<(f64, f64)> {
        let t = self.suite()?;
        let (ct, cr) = (t.col("median time (s)")?, t.col("peak RSS (MiB)")?);
        let r = t.rows.iter().find(|r| {
            r.first().is_some_and(|c| clean(c) == workload)
                && r.get(1).is_some_and(|c| clean(c) == allocator)
        })?;
        Some((number(r.get(ct)?)?, number(r.get(cr)?)?))
    }

    fn suite_ratio(&self, workload: &str, peer: &str, rss: bool) -> Option<f64> {
        let h = self.suite_cell(workload, "hotslab")?;
        let p = self.suite_cell(workload, peer)?;
        let (a, b) = if rss { (h.1, p.1) } else { (h.0, p.0) };
        (b > 0.0).then_some(a / b)
    }

    fn suite_workloads(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        if let Some(t) = self.suite() {
            for r in &t.rows {
                if let Some(w) = r.first().map(|c| clean(c).to_string()) {
                    if !v.contains(&w) {
                        v.push(w);
                    }
                }
            }
        }
        v
    }
}

/// Workloads of the standard suite that run one thread (the rest are multi-threaded).
pub const SINGLE_THREAD_WORKLOADS: &[&str] = &[
    "glibc-simple",
    "alloc-test1",
    "cfrac",
    "malloc-large",
    "strgrow",
];

fn peer_series() -> Vec<String> {
    PEERS.iter().map(|p| p.2.to_string()).collect()
}

fn crit_rows(src: &Sources, wanted: &[(&str, &str, &str)]) -> Vec<(String, Vec<Option<f64>>)> {
    wanted
        .iter()
        .filter_map(|(g, r, label)| {
            let v: Vec<Option<f64>> = PEERS.iter().map(|p| src.crit_ratio(g, r, p.0)).collect();
            v.iter()
                .any(Option::is_some)
                .then(|| (label.to_string(), v))
        })
        .collect()
}

fn suite_rows(
    src: &Sources,
    pick: impl Fn(&str) -> bool,
    rss: bool,
) -> Vec<(String, Vec<Option<f64>>)> {
    let mut rows: Vec<(String, Vec<Option<f64>>)> = src
        .suite_workloads()
        .iter()
        .filter(|w| pick(w))
        .filter_map(|w| {
            let v: Vec<Option<f64>> = PEERS.iter().map(|p| src.suite_ratio(w, p.1, rss)).collect();
            v.iter().any(Option::is_some).then(|| (w.clone(), v))
        })
        .collect();
    if rows.len() > 1 {
        let geo = (0..PEERS.len())
            .map(|j| {
                let v: Vec<f64> = rows.iter().filter_map(|r| r.1[j]).collect();
                (!v.is_empty())
                    .then(|| (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp())
            })
            .collect();
        rows.push((format!("geomean of these {}", rows.len()), geo));
    }
    rows
}

fn crit_source(src: &Sources, what: &str) -> String {
    format!(
        "{what}: criterion medians, RESULTS.md, numactl --cpunodebind=0 --membind=0{}",
        if src.results_date.is_empty() {
            String::new()
        } else {
            format!(", run of {}", src.results_date)
        }
    )
}

const SUITE_SOURCE: &str =
    "whole C programs under LD_PRELOAD, median wall time over the interleaved rounds, RESULTS-workloads.md";

/// The fast-path figure: single-thread alloc/free ratios, single-thread workloads, and
/// instructions per pair.
pub fn fastpath_figure(src: &Sources) -> Option<String> {
    let mut panels = Vec::new();
    let rows = crit_rows(
        src,
        &[
            ("pair_hot", "16-256", "hot pair 16-256 B"),
            ("pair", "8", "pair 8 B"),
            ("pair", "16", "pair 16 B"),
            ("pair", "32", "pair 32 B"),
            ("pair", "64", "pair 64 B"),
            ("pair", "128", "pair 128 B"),
            ("pair", "256", "pair 256 B"),
            ("pair", "512", "pair 512 B"),
            ("pair", "1024", "pair 1 KiB"),
            ("pair", "2048", "pair 2 KiB"),
            ("pair", "4096", "pair 4 KiB"),
            ("mixed_stream", "8-4096-live64", "mixed 8 B-4 KiB, 64 live"),
            ("batch", "lifo-64B", "10^5 x 64 B, freed LIFO"),
            ("batch", "random-64B", "10^5 x 64 B, random order"),
            ("kmemcache", "pair", "96 B object pair"),
        ],
    );
    if !rows.is_empty() {
        panels.push(Panel::Bars(BarPanel {
            title: "One thread: alloc+free of one block (Rust GlobalAlloc)".into(),
            source: crit_source(src, "time per operation"),
            axis: Axis::Ratio {
                k: 3,
                of: "time".into(),
            },
            series: peer_series(),
            rows,
        }));
    }
    let rows = suite_rows(src, |w| SINGLE_THREAD_WORKLOADS.contains(&w), false);
    if !rows.is_empty() {
        panels.push(Panel::Bars(BarPanel {
            title: "One thread: standard workloads (C programs)".into(),
            source: SUITE_SOURCE.into(),
            axis: Axis::Ratio {
                k: 4,
                of: "time".into(),
            },
            series: peer_series(),
            rows,
        }));
    }
    if let Some(t) = find_table(&src.results, "allocator", "Instructions") {
        let order = ["hotslab", "system", "mimalloc", "jemalloc", "snmalloc"];
        let rows: Vec<(String, Vec<Option<f64>>)> = order
            .iter()
            .filter_map(|a| {
                let v = t.get(a, "instructions/pair")?;
                let name = if *a == "system" { "glibc" } else { a };
                Some((name.to_string(), vec![Some(v)]))
            })
            .collect();
        if !rows.is_empty() {
            panels.push(Panel::Bars(BarPanel {
                title: "Instructions per hot 16-256 B alloc+free pair".into(),
                source: "valgrind --tool=callgrind on fastpath-count (difference of two runs), RESULTS.md; ~5 are the loop".into(),
                axis: Axis::Linear {
                    unit: "instructions per pair (fewer is better)".into(),
                },
                series: vec!["instructions".into()],
                rows,
            }));
        }
    }
    (!panels.is_empty()).then(|| {
        figure(
            "Fast path: hotslab against glibc, mimalloc and jemalloc",
            &panels,
            "Bars left of 1 (top panels): hotslab takes less time than that peer. One 2-core VM, one NUMA node, host shared with other work.",
        )
    })
}

/// The threads figure: cross-thread frees and multi-thread workloads.
pub fn threads_figure(src: &Sources) -> Option<String> {
    let mut panels = Vec::new();
    let rows = crit_rows(
        src,
        &[
            ("xthread", "64B", "cross-thread free, 64 B"),
            ("xthread", "16-256B", "cross-thread free, 16-256 B"),
            ("larson", "2t-pool4096-16-256B", "larson-like churn"),
            (
                "cache_scratch",
                "2t-8B-100w",
                "cache-scratch (false sharing)",
            ),
        ],
    );
    if !rows.is_empty() {
        panels.push(Panel::Bars(BarPanel {
            title: "Two threads: handing blocks over (Rust GlobalAlloc)".into(),
            source: crit_source(src, "time per block"),
            axis: Axis::Ratio {
                k: 3,
                of: "time".into(),
            },
            series: peer_series(),
            rows,
        }));
    }
    let rows = suite_rows(src, |w| !SINGLE_THREAD_WORKLOADS.contains(&w), false);
    if !rows.is_empty() {
        panels.push(Panel::Bars(BarPanel {
            title: "Several threads: standard workloads (C programs)".into(),
            source: SUITE_SOURCE.into(),
            axis: Axis::Ratio {
                k: 3,
                of: "time".into(),
            },
            series: peer_series(),
            rows,
        }));
    }
    (!panels.is_empty()).then(|| {
        figure(
            "Threads: hotslab against glibc, mimalloc and jemalloc",
            &panels,
            "Bars left of 1: hotslab takes less time than that peer. 2 CPUs: the programs run at most two threads at once.",
        )
    })
}

/// The memory figure: peak RSS of the standard workloads and of the whole-program workload, and
/// the idle RSS of `capi-report` when RESULTS-capi.md has it.
pub fn memory_figure(src: &Sources) -> Option<String> {
    let mut panels = Vec::new();
    let rows = suite_rows(src, |_| true, true);
    if !rows.is_empty() {
        panels.push(Panel::Bars(BarPanel {
            title: "Peak RSS of the standard workloads".into(),
            source: "wait4's ru_maxrss, largest over the rounds, RESULTS-workloads.md".into(),
            axis: Axis::Ratio {
                k: 3,
                of: "peak RSS".into(),
            },
            series: peer_series(),
            rows,
        }));
    }
    if let Some(t) =
        find_table(&src.results, "allocator", "--membind=0").filter(|t| t.col("peak RSS").is_some())
    {
        let order = ["hotslab", "system", "mimalloc", "jemalloc", "snmalloc"];
        let rows: Vec<(String, Vec<Option<f64>>)> = order
            .iter()
            .filter_map(|a| {
                let v = t.get(a, "peak RSS")?;
                let name = if *a == "system" { "glibc" } else { a };
                Some((name.to_string(), vec![Some(v)]))
            })
            .collect();
        if !rows.is_empty() {
            panels.push(Panel::Bars(BarPanel {
                title: "Peak RSS of the std-heavy Rust program (src/program.rs)".into(),
                source: "getrusage ru_maxrss, median of 3 runs, RESULTS.md".into(),
                axis: Axis::Linear {
                    unit: "peak RSS, MiB (less is better)".into(),
                },
                series: vec!["peak RSS".into()],
                rows,
            }));
        }
    }
    if let Some(t) = src
        .capi
        .iter()
        .find(|t| t.col("% of peak at 1.5 s").is_some() && t.col("scenario").is_some())
    {
        let (ca, cs, cp) = (
            t.col("allocator"),
            t.col("scenario"),
            t.col("% of peak at 1.5 s"),
        );
        if let (Some(ca), Some(cs), Some(cp)) = (ca, cs, cp) {
            let mut scen: Vec<String> = Vec::new();
            let mut allocs: Vec<String> = Vec::new();
            for r in &t.rows {
                let (a, s) = (clean(&r[ca]).to_string(), clean(&r[cs]).to_string());
                if !scen.contains(&s) {
                    scen.push(s);
                }
                if !allocs.contains(&a) {
                    allocs.push(a);
                }
            }
            let rows = scen
                .iter()
                .map(|s| {
                    let v = allocs
                        .iter()
                        .map(|a| {
                            t.rows
                                .iter()
                                .find(|r| clean(&r[ca]) == a && clean(&r[cs]) == s)
                                .and_then(|r| number(&r[cp]))
                        })
                        .collect();
                    (s.clone(), v)
                })
                .collect();
            panels.push(Panel::Bars(BarPanel {
                title: "RSS left after freeing everything and idling 1.5 s".into(),
                source: "capi-report --rss (2 M small objects freed, then idle), RESULTS-capi.md"
                    .into(),
                axis: Axis::Linear {
                    unit: "RSS at 1.5 s idle, % of the peak (less is better)".into(),
                },
                series: allocs,
                rows,
            }));
        }
    }
    (!panels.is_empty()).then(|| {
        figure(
            "Memory: hotslab against glibc, mimalloc and jemalloc",
            &panels,
            "Top: bars left of 1 mean hotslab's peak RSS is smaller than that peer's.",
        )
    })
}

/// The hotplug figure: cache create+destroy cost per locking mode and node count, allocation
/// while a node goes offline and online, and the online-mems read side.
pub fn hotplug_figure(src: &Sources) -> Option<String> {
    let mut panels = Vec::new();
    let src_line = |what: &str| crit_source(src, what);
    if let Some(t) = src.criterion("create_destroy") {
        let modes: Vec<String> = t.header[1..]
            .iter()
            .filter(|h| !h.contains('/'))
            .cloned()
            .collect();
        let rows: Vec<(String, Vec<Option<f64>>)> = t
            .rows
            .iter()
            .map(|r| {
                let n = clean(&r[0]).to_string();
                let v = modes
                    .iter()
                    .map(|m| t.get(&n, m).map(|ns| ns / 1e3))
                    .collect();
                (format!("{n} simulated node(s)"), v)
            })
            .collect();
        panels.push(Panel::Bars(BarPanel {
            title: "Cache create + destroy, per locking mode".into(),
            source: src_line("time per create+destroy"),
            axis: Axis::Linear {
                unit: "µs per create + destroy (less is better)".into(),
            },
            series: modes,
            rows,
        }));
    }
    if let Some(t) = src.criterion("hotplug_alloc") {
        let rows: Vec<(String, Vec<Option<f64>>)> = t
            .rows
            .iter()
            .map(|r| {
                let k = clean(&r[0]).to_string();
                let v = ["quiet", "churn"].iter().map(|c| t.get(&k, c)).collect();
                let label = match k.as_str() {
                    "local" => "local node".to_string(),
                    "on-churned-node" => "on the churned node".to_string(),
                    _ => k,
                };
                (label, v)
            })
            .collect();
        panels.push(Panel::Bars(BarPanel {
            title: "KmemCache alloc+free while another thread offlines and onlines a node".into(),
            source: src_line("time per alloc+free"),
            axis: Axis::Linear {
                unit: "ns per alloc+free (less is better)".into(),
            },
            series: vec![
                "quiet (no hotplug)".into(),
                "churn (offline+online loop)".into(),
            ],
            rows,
        }));
    }
    if let Some(t) = src.criterion("online_mems_read") {
        let kinds = ["percpu", "seed", "rwlock"];
        let rows: Vec<(String, Vec<Option<f64>>)> = ["alone", "2readers", "writer-1ms"]
            .iter()
            .filter(|k| t.row(k).is_some())
            .map(|k| {
                let label = match *k {
                    "alone" => "one reader",
                    "2readers" => "two readers",
                    _ => "a writer every ms",
                };
                (
                    label.to_string(),
                    kinds.iter().map(|c| t.get(k, c)).collect(),
                )
            })
            .collect();
        panels.push(Panel::Bars(BarPanel {
            title: "Online-mems read side (get_online_mems + put)".into(),
            source: src_line("time per read+unlock"),
            axis: Axis::Linear {
                unit: "ns per read+unlock (less is better)".into(),
            },
            series: vec![
                "per-CPU lock".into(),
                "seed lock".into(),
                "std RwLock (reference)".into(),
            ],
            rows,
        }));
    }
    (!panels.is_empty()).then(|| {
        figure(
            "Hotplug: what the online-mems protocol costs",
            &panels,
            "Simulated nodes on one real node; absolute times on a shared 2-core VM (differences under ~1 µs are noise).",
        )
    })
}

/// The figures, as (file name, SVG), in the order of the areas.
pub fn figures(src: &Sources) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (file, f) in [
        ("plot-fastpath.svg", fastpath_figure(src)),
        ("plot-threads.svg", threads_figure(src)),
        ("plot-memory.svg", memory_figure(src)),
        ("plot-hotplug.svg", hotplug_figure(src)),
    ] {
        if let Some(svg) = f {
            out.push((file, svg));
        }
    }
    out
}

/// Start and end markers of the generated block at the top of RESULTS.md.
pub const BEGIN: &str = "<!-- results-plots: begin (generated by `cargo run -p hotslab-benches --release --bin results-plots`; do not edit) -->";
/// End marker.
pub const END: &str = "<!-- results-plots: end -->";

/// `md` without the generated block.
pub fn strip_block(md: &str) -> String {
    match (md.find("<!-- results-plots: begin"), md.find(END)) {
        (Some(a), Some(b)) if b > a => {
            let mut s = md[..a].to_string();
            s.push_str(md[b + END.len()..].trim_start_matches('\n'));
            s
        }
        _ => md.to_string(),
    }
}

/// The generated block: the standard-workload summary table and the figures.
pub fn block(src: &Sources, files: &[&str]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{BEGIN}");
    let _ = writeln!(s, "## At a glance\n");
    if let Some(t) = src
        .workloads
        .iter()
        .find(|t| t.headings.iter().any(|h| h.starts_with("Summary")))
    {
        let _ = writeln!(
            s,
            "The standard-workload suite (16 C programs under `LD_PRELOAD`, all allocators interleaved in one run; \
             details in [RESULTS-workloads.md](RESULTS-workloads.md)), hotslab / peer, below 1 is faster or smaller:\n"
        );
        let _ = writeln!(s, "| {} |", t.header.join(" | "));
        let _ = writeln!(
            s,
            "|---|{}",
            "---:|".repeat(t.header.len().saturating_sub(1))
        );
        for r in &t.rows {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        s.push('\n');
    }
    let captions = [
        (
            "plot-fastpath.svg",
            "fast path: hotslab / peer time of one-thread alloc+free and workloads, instructions per pair",
        ),
        (
            "plot-threads.svg",
            "threads: hotslab / peer time of cross-thread frees and multi-thread workloads",
        ),
        (
            "plot-memory.svg",
            "memory: hotslab / peer peak RSS, and RSS left after freeing everything",
        ),
        (
            "plot-hotplug.svg",
            "hotplug: create+destroy per locking mode, allocation during hotplug, online-mems read side",
        ),
    ];
    for (f, what) in captions {
        if files.contains(&f) {
            let _ = writeln!(s, "![{what}]({f})\n");
        }
    }
    let _ = writeln!(
        s,
        "One picture per area, drawn from the tables of this file (criterion suite{}), of \
         `RESULTS-workloads.md` (the standard-workload suite) and of `RESULTS-capi.md` \
         (`capi-report`); each panel names its source. Regenerate them with \
         `cargo run -p hotslab-benches --release --bin results-plots` (the bench runner does so \
         after each run; the `bench` stage of `cargo xtask test` checks they are up to date).",
        if src.results_date.is_empty() {
            String::new()
        } else {
            format!(", run of {}", src.results_date)
        }
    );
    let _ = writeln!(s, "{END}");
    s
}

/// `md` with the generated block put (or replaced) after the first paragraph below the title.
pub fn with_block(md: &str, block: &str) -> String {
    let base = strip_block(md);
    let lines: Vec<&str> = base.lines().collect();
    // After the title line and the paragraph that follows it.
    let mut k = 0;
    if lines.first().is_some_and(|l| l.starts_with("# ")) {
        k = 1;
        while k < lines.len() && lines[k].trim().is_empty() {
            k += 1;
        }
        while k < lines.len() && !lines[k].trim().is_empty() && !lines[k].starts_with('#') {
            k += 1;
        }
    }
    let mut s = String::new();
    for l in &lines[..k] {
        s.push_str(l);
        s.push('\n');
    }
    s.push('\n');
    s.push_str(block);
    s.push('\n');
    for l in &lines[k..] {
        s.push_str(l);
        s.push('\n');
    }
    while s.contains("\n\n\n") {
        s = s.replace("\n\n\n", "\n\n");
    }
    s
}

/// Regenerates the figures of `dir/RESULTS.md` from the reports in `dir`: writes the SVG files
/// and puts the block at the top of RESULTS.md. With `check`, writes nothing and returns the
/// names of the files that are out of date. Returns the files (written or stale).
pub fn refresh_results(dir: &Path, check: bool) -> std::io::Result<Vec<String>> {
    let src = Sources::read(dir);
    let figs = figures(&src);
    let names: Vec<&str> = figs.iter().map(|(f, _)| *f).collect();
    let results_path = dir.join("RESULTS.md");
    let md = std::fs::read_to_string(&results_path)?;
    let new_md = with_block(&md, &block(&src, &names));
    let mut touched = Vec::new();
    for (f, svg) in &figs {
        let p = dir.join(f);
        if std::fs::read_to_string(&p).ok().as_deref() != Some(svg.as_str()) {
            touched.push(f.to_string());
            if !check {
                std::fs::write(&p, svg)?;
            }
        }
    }
    if new_md != md {
        touched.push("RESULTS.md".into());
        if !check {
            std::fs::write(&results_path, new_md)?;
        }
    }
    Ok(touched)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD: &str = "# T\n\nintro\n\n## Sec\n\n`numactl --cpunodebind=0 --membind=0`:\n\n\
        | pair | hotslab | system | mimalloc |\n| --- | --- | --- | --- |\n\
        | 8 | 20.00 ns | 40.00 ns | 10.00 ns |\n| 16 | 4.00 µs | 2.00 µs | - |\n\n\
        ```\n| not | a |\n|---|---|\n```\n";

    #[test]
    fn tables_cells_and_units_parse() {
        let t = parse_tables(MD);
        assert_eq!(t.len(), 1, "the table in a code block is not one");
        let t = &t[0];
        assert_eq!(t.headings, ["T", "Sec"]);
        assert!(t.under("--membind=0"));
        assert_eq!(t.get("8", "hotslab"), Some(20.0));
        assert_eq!(t.get("16", "hotslab"), Some(4000.0));
        assert_eq!(t.get("16", "mimalloc"), None);
        assert_eq!(number("**0.93**"), Some(0.93));
        assert_eq!(number("35.8 MiB"), Some(35.8));
        assert_eq!(number("failed"), None);
    }

    #[test]
    fn ratios_come_from_the_right_cells() {
        let src = Sources {
            results: parse_tables(MD),
            ..Sources::default()
        };
        assert_eq!(src.crit_ratio("pair", "8", "system"), Some(0.5));
        assert_eq!(src.crit_ratio("pair", "8", "mimalloc"), Some(2.0));
        let svg = fastpath_figure(&src).expect("a figure");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Two bars for pair 8 B (vs glibc, vs mimalloc), none for the missing jemalloc column.
        assert_eq!(svg.matches("<title>pair 8 B").count(), 2, "{svg}");
        assert!(svg.contains("pair 8 B vs glibc: 0.50"));
        assert!(threads_figure(&src).is_none(), "no thread data, no figure");
    }

    #[test]
    fn the_block_is_replaced_not_repeated() {
        let md = "# Title\n\nProduced by x.\n\n## Machine\n\nm\n";
        let b1 = format!("{BEGIN}\none\n{END}\n");
        let once = with_block(md, &b1);
        assert!(once.starts_with("# Title\n\nProduced by x.\n\n<!-- results-plots: begin"));
        let b2 = format!("{BEGIN}\ntwo\n{END}\n");
        let twice = with_block(&once, &b2);
        assert_eq!(twice.matches("results-plots: begin").count(), 1);
        assert!(twice.contains("two") && !twice.contains("one\n"));
        assert_eq!(strip_block(&twice), md);
    }

    #[test]
    fn escaping_and_linear_axes() {
        let p = BarPanel {
            title: "a < b & c".into(),
            source: String::new(),
            axis: Axis::Linear { unit: "ns".into() },
            series: vec!["s".into()],
            rows: vec![("r".into(), vec![Some(42.0)])],
        };
        let svg = figure("t", &[Panel::Bars(p)], "");
        assert!(svg.contains("a &lt; b &amp; c"));
        assert!(svg.contains("r s: 42.0"));
    }
}
