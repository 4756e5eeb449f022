//! SVG charts as text: a line chart of points (thinned above
//! [`super::MAX_POINTS`]) and the lineage graph. Every label goes through
//! [`esc`]; nothing taken from metadata is ever markup.

use std::fmt::Write;

use super::MAX_POINTS;

/// Escape text for HTML and SVG, in element content and quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A number for a label: short, and exact enough to tell versions apart.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e7).contains(&a) {
        return format!("{v:.3e}");
    }
    let text = format!("{v:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

/// One plotted value: a version, or `count` consecutive versions aggregated.
#[derive(Debug, Clone)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub min: f64,
    pub max: f64,
    pub label: String,
    /// The run's ref (one version) or empty (an aggregate).
    pub reference: String,
    pub count: usize,
    /// Production `latest`, drawn larger and ringed.
    pub highlight: bool,
}

impl Point {
    pub fn one(x: f64, y: f64, reference: &str, label: String, highlight: bool) -> Point {
        Point {
            x,
            y,
            min: y,
            max: y,
            label,
            reference: reference.to_string(),
            count: 1,
            highlight,
        }
    }
}

/// A series: its CSS class (`raw`, `validated`, `production`, `size`) and
/// whether its points are joined by a line.
#[derive(Debug, Clone)]
pub struct Series {
    pub class: &'static str,
    pub line: bool,
    pub points: Vec<Point>,
}

/// Aggregate consecutive points into at most `max` (mean, min and max), so
/// the page stays small; a highlighted point is never hidden in a bucket.
pub fn thin(points: Vec<Point>, max: usize) -> Vec<Point> {
    if points.len() <= max || max == 0 {
        return points;
    }
    let size = points.len().div_ceil(max);
    let mut out = Vec::with_capacity(max + 1);
    for chunk in points.chunks(size) {
        let mut rest = Vec::new();
        for p in chunk {
            if p.highlight {
                out.push(p.clone());
            } else {
                rest.push(p);
            }
        }
        if rest.len() == 1 {
            out.push(rest[0].clone());
            continue;
        }
        if rest.is_empty() {
            continue;
        }
        let n = rest.len() as f64;
        let count = rest.iter().map(|p| p.count).sum();
        let y = rest.iter().map(|p| p.y).sum::<f64>() / n;
        let min = rest.iter().map(|p| p.min).fold(f64::INFINITY, f64::min);
        let max_v = rest.iter().map(|p| p.max).fold(f64::NEG_INFINITY, f64::max);
        let first = &rest[0].label;
        let last = &rest[rest.len() - 1].label;
        out.push(Point {
            x: rest.iter().map(|p| p.x).sum::<f64>() / n,
            y,
            min,
            max: max_v,
            label: format!(
                "{count} versions, {first} … {last}: mean {}, min {}, max {}",
                num(y),
                num(min),
                num(max_v)
            ),
            reference: String::new(),
            count,
            highlight: false,
        });
    }
    out.sort_by(|a, b| a.x.total_cmp(&b.x));
    out
}

pub const WIDTH: f64 = 760.0;
pub const HEIGHT: f64 = 250.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 36.0;

/// How the axes are labelled.
pub struct Axes<'a> {
    pub x_min: f64,
    pub x_max: f64,
    pub x_first: &'a str,
    pub x_last: &'a str,
    pub y_label: &'a dyn Fn(f64) -> String,
}

/// A line chart: series thinned to [`MAX_POINTS`] each, y ticks, first and
/// last x labels, a `<title>` tooltip on every point.
pub fn line_chart(name: &str, series: Vec<Series>, axes: &Axes) -> String {
    let series: Vec<Series> = series
        .into_iter()
        .map(|s| Series {
            points: thin(s.points, MAX_POINTS),
            ..s
        })
        .collect();
    let values = series.iter().flat_map(|s| s.points.iter());
    let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.min), hi.max(p.max))
    });
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if (hi - lo).abs() < f64::EPSILON * hi.abs().max(1.0) {
        let pad = if hi == 0.0 { 1.0 } else { hi.abs() * 0.05 };
        (lo, hi) = (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.06;
    let (lo, hi) = (lo - pad, hi + pad);
    let span_x = if axes.x_max > axes.x_min {
        axes.x_max - axes.x_min
    } else {
        1.0
    };
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| {
        if axes.x_max > axes.x_min {
            LEFT + (x - axes.x_min) / span_x * plot_w
        } else {
            LEFT + plot_w / 2.0
        }
    };
    let sy = |y: f64| TOP + (hi - y) / (hi - lo) * plot_h;

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg"><title>{}</title>"#,
        esc(name)
    );
    for k in 0..=4 {
        let v = lo + (hi - lo) * f64::from(k) / 4.0;
        let y = sy(v);
        let _ = write!(
            s,
            r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            esc(&(axes.y_label)(v))
        );
    }
    let base = HEIGHT - BOTTOM + 16.0;
    let _ = write!(
        s,
        r#"<text class="tick" x="{LEFT}" y="{base:.1}">{}</text><text class="tick" x="{:.1}" y="{base:.1}" text-anchor="end">{}</text>"#,
        esc(axes.x_first),
        WIDTH - RIGHT,
        esc(axes.x_last)
    );
    for series in &series {
        if series.line && series.points.len() > 1 {
            let path: Vec<String> = series
                .points
                .iter()
                .map(|p| format!("{:.1},{:.1}", sx(p.x), sy(p.y)))
                .collect();
            let _ = write!(
                s,
                r#"<polyline class="line {}" points="{}"/>"#,
                series.class,
                path.join(" ")
            );
        }
        for p in &series.points {
            let (cx, cy) = (sx(p.x), sy(p.y));
            if p.count > 1 {
                let _ = write!(
                    s,
                    r#"<line class="range {}" x1="{cx:.1}" x2="{cx:.1}" y1="{:.1}" y2="{:.1}"/><circle class="agg {}" cx="{cx:.1}" cy="{cy:.1}" r="2.5" data-count="{}"><title>{}</title></circle>"#,
                    series.class,
                    sy(p.min),
                    sy(p.max),
                    series.class,
                    p.count,
                    esc(&p.label)
                );
            } else {
                let latest = if p.highlight { " latest" } else { "" };
                let r = if p.highlight { 6.0 } else { 3.5 };
                let _ = write!(
                    s,
                    r#"<circle class="pt {}{latest}" cx="{cx:.1}" cy="{cy:.1}" r="{r}" data-ref="{}"><title>{}</title></circle>"#,
                    series.class,
                    esc(&p.reference),
                    esc(&p.label)
                );
            }
        }
    }
    s.push_str("</svg>");
    s
}

/// A node's place in the lineage graph: (column, row).
pub type Cell = (usize, usize);

/// A node of the lineage graph.
pub struct Node {
    pub reference: String,
    pub label: String,
    pub class: &'static str,
}

/// The lineage graph: one column per stage, an edge from each source to what
/// was promoted from it. `columns[i]` holds the nodes of stage `i`; `edges`
/// are (column, row) pairs.
pub fn lineage_graph(columns: &[(&str, Vec<Node>)], edges: &[(Cell, Cell)]) -> String {
    const COL_W: f64 = 250.0;
    const ROW_H: f64 = 24.0;
    const BOX_W: f64 = 200.0;
    const HEAD: f64 = 26.0;
    let rows = columns.iter().map(|(_, n)| n.len()).max().unwrap_or(0);
    let width = COL_W * columns.len() as f64;
    let height = HEAD + ROW_H * rows as f64 + 8.0;
    let pos = |c: usize, r: usize| (10.0 + COL_W * c as f64, HEAD + ROW_H * r as f64);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="lineage" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg"><title>lineage</title>"#
    );
    for (c, (name, _)) in columns.iter().enumerate() {
        let (x, _) = pos(c, 0);
        let _ = write!(
            s,
            r#"<text class="colhead" x="{x}" y="16">{}</text>"#,
            esc(name)
        );
    }
    for &((c1, r1), (c2, r2)) in edges {
        let (x1, y1) = pos(c1, r1);
        let (x2, y2) = pos(c2, r2);
        let _ = write!(
            s,
            r#"<path class="edge" d="M{:.1},{:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}"/>"#,
            x1 + BOX_W,
            y1 + 9.0,
            x1 + BOX_W + 25.0,
            y1 + 9.0,
            x2 - 25.0,
            y2 + 9.0,
            x2,
            y2 + 9.0
        );
    }
    for (c, (_, nodes)) in columns.iter().enumerate() {
        for (r, node) in nodes.iter().enumerate() {
            let (x, y) = pos(c, r);
            let short: String = if node.label.chars().count() > 30 {
                let mut t: String = node.label.chars().take(29).collect();
                t.push('…');
                t
            } else {
                node.label.clone()
            };
            let _ = write!(
                s,
                r#"<g class="node {}" data-ref="{}"><title>{}</title><rect x="{x}" y="{y}" width="{BOX_W}" height="18" rx="4"/><text x="{}" y="{}">{}</text></g>"#,
                node.class,
                esc(&node.reference),
                esc(&node.reference),
                x + 6.0,
                y + 13.0,
                esc(&short)
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>"a"&'b'"#),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;"
        );
    }

    #[test]
    fn thin_keeps_small_series_and_aggregates_large_ones() {
        let pts = |n: usize| {
            (0..n)
                .map(|i| Point::one(i as f64, i as f64, "r", format!("v{i}"), i == 500))
                .collect::<Vec<_>>()
        };
        assert_eq!(thin(pts(300), 300).len(), 300);
        let thinned = thin(pts(1000), 300);
        assert!(thinned.len() <= 301, "{}", thinned.len());
        assert_eq!(thinned.iter().map(|p| p.count).sum::<usize>(), 1000);
        assert!(thinned.iter().any(|p| p.highlight && p.count == 1));
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(num(0.38), "0.38");
        assert_eq!(num(2.0), "2");
        assert_eq!(num(1234567890.0), "1.235e9");
    }
}
