//! The report page: pure text generation from [`ReportData`]. Charts are SVG
//! (no JavaScript needed to see anything); a few lines of inline script sort
//! the table. Every value from metadata goes through [`esc`].

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};

use super::svg::{esc, line_chart, lineage_graph, num, Axes, Node, Point, Series};
use super::{ReportData, ReportRun};
use crate::store::refs::Stage;

/// Lineage columns show at most this many artifacts each (the newest).
const MAX_LINEAGE_ROWS: usize = 80;

const STYLE: &str = r#"
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1100px;padding:0 16px;color:#1f2328;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.meta,.note{color:#57606a}figure{margin:0 0 16px}figcaption{font-weight:600;margin-bottom:4px;overflow-wrap:anywhere}
.legend span{margin-right:14px}.legend i{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:4px;vertical-align:middle}
svg text{font:13px system-ui,sans-serif;fill:#57606a}.grid{stroke:#eaeef2}
.line{fill:none;stroke-width:1.5}.line.raw{stroke:#0969da}.line.size{stroke:#8250df}
.pt.raw,.agg.raw{fill:#0969da}.pt.validated{fill:#bf8700}.pt.production{fill:#1a7f37}
.legend i.raw{background:#0969da}.legend i.validated{background:#bf8700}.legend i.production{background:#1a7f37}.legend i.latest{background:#1a7f37;box-shadow:0 0 0 2px #d1242f}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(480px,1fr));gap:8px 20px}svg.chart{width:100%;height:auto}
.pt.size,.agg.size{fill:#8250df}.range{stroke:#8c959f;stroke-width:1}
.pt.latest{fill:#1a7f37;stroke:#d1242f;stroke-width:2.5}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border-bottom:1px solid #eaeef2;padding:3px 8px;text-align:left;white-space:nowrap}td:first-child{white-space:normal;overflow-wrap:anywhere;min-width:16em}
th{cursor:pointer;background:#f6f8fa;position:sticky;top:0;white-space:normal;overflow-wrap:anywhere;vertical-align:bottom}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.problem td{background:#fff8c5}.lineage .node rect{fill:#f6f8fa;stroke:#8c959f}.lineage .node.raw rect{stroke:#0969da}
.lineage .node.validated rect{stroke:#bf8700}.lineage .node.production rect{stroke:#1a7f37}.lineage .node.latest rect{stroke:#d1242f;stroke-width:2.5}
.lineage text{fill:#1f2328}.lineage .colhead{font-weight:600}.edge{fill:none;stroke:#8c959f}
.scroll{overflow-x:auto}ul.problems li{overflow-wrap:anywhere}
"#;

/// Sort the versions table by a clicked column: numbers by value, text A to
/// Z; a second click reverses. Reads only the `data-v` of cells.
const SCRIPT: &str = r#"
document.querySelectorAll("table.sortable th").forEach(function (th, i) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var numeric = th.getAttribute("data-type") === "num";
    var dir = th.getAttribute("data-dir") === "asc" ? -1 : 1;
    th.setAttribute("data-dir", dir === 1 ? "asc" : "desc");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[i].getAttribute("data-v"), y = b.cells[i].getAttribute("data-v");
      if (numeric) {
        x = x === "" ? NaN : Number(x); y = y === "" ? NaN : Number(y);
        if (isNaN(x)) return isNaN(y) ? 0 : 1;
        if (isNaN(y)) return -1;
        return (x - y) * dir;
      }
      return x.localeCompare(y) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"#;

/// The whole page.
pub fn render(data: &ReportData) -> String {
    let mut s = String::with_capacity(64 * 1024 + data.runs.len() * 512);
    let problems = data
        .runs
        .iter()
        .filter(|r| !r.info.problems.is_empty())
        .count();
    let _ = write!(
        s,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>artifactctl report: {title}</title><style>{STYLE}</style></head><body><header><h1>artifactctl report: {title}</h1><p class="meta">{n} runs, {m} metrics charted, {problems} with problems; generated {time}</p></header>"#,
        title = esc(&data.title),
        n = data.runs.len(),
        m = data.metrics.len(),
        time = esc(&data.generated_at.to_rfc3339_opts(SecondsFormat::Secs, true)),
    );
    metrics_section(&mut s, data);
    table_section(&mut s, data);
    lineage_section(&mut s, data);
    size_section(&mut s, data);
    problems_section(&mut s, data);
    let _ = writeln!(s, "<script>{SCRIPT}</script></body></html>");
    s
}

fn time_text(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".into())
}

fn is_production_latest(run: &ReportRun) -> bool {
    run.info.stage == Stage::Production && run.info.latest
}

fn metrics_section(s: &mut String, data: &ReportData) {
    s.push_str(r#"<section id="metrics"><h2>Metrics over versions</h2>"#);
    s.push_str(r#"<p class="legend"><span><i class="raw"></i>raw run</span><span><i class="validated"></i>validated</span><span><i class="production"></i>production release</span><span><i class="latest"></i>production latest</span></p>"#);
    if data.metrics.is_empty() {
        s.push_str(r#"<p class="note">No run records a metric.</p>"#);
    }
    s.push_str(r#"<div class="charts">"#);
    let first = data.runs.first().map(|r| time_text(r.info.created_at));
    let last = data.runs.last().map(|r| time_text(r.info.created_at));
    let count = data.runs.len();
    for metric in &data.metrics {
        let mut by_stage: BTreeMap<Stage, Vec<Point>> = BTreeMap::new();
        for (i, run) in data.runs.iter().enumerate() {
            let Some(&v) = run.info.metrics.get(metric) else {
                continue;
            };
            if !v.is_finite() {
                continue;
            }
            by_stage.entry(run.info.stage).or_default().push(Point::one(
                i as f64,
                v,
                &run.info.reference,
                format!("{}: {}", run.info.reference, num(v)),
                is_production_latest(run),
            ));
        }
        let plotted: usize = by_stage.values().map(Vec::len).sum();
        let series = by_stage
            .into_iter()
            .map(|(stage, points)| Series {
                class: stage.as_str(),
                line: stage == Stage::Raw,
                points,
            })
            .collect();
        let axes = Axes {
            x_min: 0.0,
            x_max: count.saturating_sub(1) as f64,
            x_first: first.as_deref().unwrap_or(""),
            x_last: last.as_deref().unwrap_or(""),
            y_label: &num,
        };
        let _ = write!(
            s,
            r#"<figure class="metric" data-metric="{}" data-versions="{plotted}"><figcaption>{} <span class="note">({plotted} versions)</span></figcaption>{}</figure>"#,
            esc(metric),
            esc(metric),
            line_chart(metric, series, &axes)
        );
    }
    s.push_str("</div>");
    if !data.omitted_metrics.is_empty() {
        let names: Vec<String> = data.omitted_metrics.iter().map(|m| esc(m)).collect();
        let _ = write!(
            s,
            r#"<p class="note">Not charted (name them with --metric): {}</p>"#,
            names.join(", ")
        );
    }
    s.push_str("</section>");
}

fn table_section(s: &mut String, data: &ReportData) {
    s.push_str(r#"<section id="versions"><h2>Versions</h2><p class="note">Click a column to sort.</p><div class="scroll"><table class="sortable" id="runs"><thead><tr><th data-type="text">ref</th><th data-type="text">stage</th><th data-type="num">created</th><th data-type="text">status</th><th data-type="num">size</th>"#);
    for metric in &data.metrics {
        let _ = write!(s, r#"<th data-type="num">{}</th>"#, esc(metric));
    }
    s.push_str("</tr></thead><tbody>");
    for run in &data.runs {
        let info = &run.info;
        let class = if info.problems.is_empty() {
            ""
        } else {
            r#" class="problem""#
        };
        let mut flags = String::new();
        if info.latest {
            flags.push_str(" ★ latest");
        }
        if info.pinned {
            flags.push_str(" (pinned)");
        }
        let _ = write!(
            s,
            r#"<tr{class} data-ref="{r}"><td data-v="{r}">{r}{flags}</td><td data-v="{stage}">{stage}</td><td data-v="{t}">{time}</td><td data-v="{status}">{status}</td><td class="n" data-v="{size}">{hsize}</td>"#,
            r = esc(&info.reference),
            stage = info.stage.as_str(),
            t = info.created_at.map(|t| t.timestamp()).unwrap_or(0),
            time = esc(&time_text(info.created_at)),
            status = info.status.as_str(),
            size = info.size_bytes,
            hsize = human_size(info.size_bytes),
        );
        for metric in &data.metrics {
            match info.metrics.get(metric) {
                Some(v) if v.is_finite() => {
                    let _ = write!(s, r#"<td class="n" data-v="{v}">{}</td>"#, num(*v));
                }
                _ => s.push_str(r#"<td class="n" data-v="">-</td>"#),
            }
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div></section>");
}

fn lineage_section(s: &mut String, data: &ReportData) {
    s.push_str(r#"<section id="lineage"><h2>Lineage</h2>"#);
    let promoted: Vec<&ReportRun> = data
        .runs
        .iter()
        .filter(|r| r.info.stage != Stage::Raw)
        .collect();
    if promoted.is_empty() {
        s.push_str(r#"<p class="note">Nothing has been promoted yet (or the report covers raw runs only: use --stage all).</p></section>"#);
        return;
    }
    // The newest artifacts of each promoted stage, and the sources they name.
    let stages = [Stage::Raw, Stage::Validated, Stage::Production];
    let mut columns: Vec<(&str, Vec<Node>)> = stages.iter().map(|s| (s.as_str(), vec![])).collect();
    let mut index: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut hidden = 0usize;
    let mut add = |columns: &mut Vec<(&str, Vec<Node>)>,
                   qualified: &str,
                   label: &str,
                   class: &'static str,
                   col: usize| {
        if let Some(&at) = index.get(qualified) {
            return Some(at);
        }
        if columns[col].1.len() >= MAX_LINEAGE_ROWS {
            return None;
        }
        let at = (col, columns[col].1.len());
        columns[col].1.push(Node {
            reference: qualified.to_string(),
            label: label.to_string(),
            class,
        });
        index.insert(qualified.to_string(), at);
        Some(at)
    };
    let mut edges = Vec::new();
    let mut wanted: Vec<&ReportRun> = promoted.iter().rev().copied().collect();
    // Production first so its sources claim rows before older validated ones.
    wanted.sort_by_key(|r| std::cmp::Reverse(r.info.stage));
    for run in wanted {
        let col = stages
            .iter()
            .position(|&st| st == run.info.stage)
            .unwrap_or(0);
        let class = if is_production_latest(run) {
            "production latest"
        } else {
            run.info.stage.as_str()
        };
        let Some(target) = add(
            &mut columns,
            &run.qualified,
            &run.info.reference,
            class,
            col,
        ) else {
            hidden += 1;
            continue;
        };
        if let Some(source) = run.sources.first() {
            let stage_name = source.split('/').next().unwrap_or("");
            let src_col = stages
                .iter()
                .position(|st| st.as_str() == stage_name)
                .unwrap_or(0);
            let label = source.strip_prefix("raw/").unwrap_or(source);
            let class = stages[src_col].as_str();
            if let Some(from) = add(&mut columns, source, label, class, src_col) {
                edges.push((from, target));
            }
        }
    }
    let _ = write!(
        s,
        r#"<div class="scroll">{}</div>"#,
        lineage_graph(&columns, &edges)
    );
    if hidden > 0 {
        let _ = write!(
            s,
            r#"<p class="note">{hidden} older artifacts not drawn.</p>"#
        );
    }
    s.push_str("</section>");
}

fn size_section(s: &mut String, data: &ReportData) {
    s.push_str(r#"<section id="size"><h2>Store size over time</h2>"#);
    let timed: Vec<&ReportRun> = data
        .runs
        .iter()
        .filter(|r| r.info.created_at.is_some())
        .collect();
    if timed.is_empty() {
        s.push_str(r#"<p class="note">No run records its creation time.</p></section>"#);
        return;
    }
    let mut total = 0u64;
    let points: Vec<Point> = timed
        .iter()
        .map(|r| {
            total += r.info.size_bytes;
            let t = r.info.created_at.map(|t| t.timestamp()).unwrap_or(0) as f64;
            Point::one(
                t,
                total as f64,
                &r.info.reference,
                format!(
                    "{}: {} after {}",
                    time_text(r.info.created_at),
                    human_size(total),
                    r.info.reference
                ),
                false,
            )
        })
        .collect();
    let first = time_text(timed[0].info.created_at);
    let last = time_text(timed[timed.len() - 1].info.created_at);
    let axes = Axes {
        x_min: points[0].x,
        x_max: points[points.len() - 1].x,
        x_first: &first,
        x_last: &last,
        y_label: &|v| human_size(v.max(0.0) as u64),
    };
    let chart = line_chart(
        "store size",
        vec![Series {
            class: "size",
            line: true,
            points,
        }],
        &axes,
    );
    let _ = write!(
        s,
        r#"<p class="note">Sum of the sizes of the runs shown, by creation time (promoted artifacts share bytes with their source through links, so the disk holds less). Now {}.</p><div class="charts">{chart}</div></section>"#,
        human_size(total)
    );
}

fn problems_section(s: &mut String, data: &ReportData) {
    s.push_str(r#"<section id="problems"><h2>Problems</h2>"#);
    let bad: Vec<&ReportRun> = data
        .runs
        .iter()
        .filter(|r| !r.info.problems.is_empty())
        .collect();
    if bad.is_empty() {
        s.push_str(r#"<p class="note">None found: every run's metadata reads and its features agree.</p></section>"#);
        return;
    }
    s.push_str(r#"<ul class="problems">"#);
    for run in bad {
        for problem in &run.info.problems {
            let _ = write!(
                s,
                r#"<li data-ref="{r}"><strong>{r}</strong>: {}</li>"#,
                esc(problem),
                r = esc(&run.info.reference)
            );
        }
    }
    s.push_str("</ul></section>");
}

/// Bytes for people, as `list` prints them.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
