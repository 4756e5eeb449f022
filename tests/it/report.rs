//! `report` (issue 16): one self-contained HTML page. Structural checks run
//! here without a browser: one chart point per version, one table row per
//! run, lineage, thinning at 1,000 versions, and every value from metadata
//! escaped. `tests/python/test_report_browser.py` renders it in Chromium.

use serde_json::json;

use crate::support::{write, NativeRun, Project};

fn report(p: &Project, args: &[&str]) -> String {
    let out = p
        .cmd()
        .args(["report", "-o", "-"])
        .args(args)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 page")
}

/// The markup of the chart of `metric` (its `<figure>`).
fn figure<'a>(page: &'a str, metric_attr: &str) -> &'a str {
    let start = page
        .find(&format!(
            r#"<figure class="metric" data-metric="{metric_attr}""#
        ))
        .unwrap_or_else(|| panic!("no chart for {metric_attr}"));
    let end = page[start..].find("</figure>").expect("figure ends") + start;
    &page[start..end]
}

fn table_rows(page: &str) -> usize {
    let start = page
        .find(r#"<table class="sortable" id="runs">"#)
        .expect("table");
    let end = page[start..].find("</table>").unwrap() + start;
    page[start..end].matches("<tr data-ref=").count()
        + page[start..end]
            .matches(r#"<tr class="problem" data-ref="#)
            .count()
}

fn native(store: &std::path::Path, i: usize, loss: f64) {
    let id = format!("20260101_{:06}", i);
    let created = format!(
        "2026-01-{:02}T{:02}:{:02}:00Z",
        1 + i / 1440,
        (i / 60) % 24,
        i % 60
    );
    NativeRun {
        id: &id,
        created_at: &created,
        files: 1,
        file_bytes: 10,
        extra: json!({"metrics": {"loss": loss, "acc": 1.0 - loss}}),
        ..NativeRun::default()
    }
    .write(store);
}

#[test]
fn one_point_per_version_and_one_row_per_run() {
    let p = Project::new();
    for i in 0..5 {
        native(&p.store(), i, 0.5 - i as f64 * 0.05);
    }
    let page = report(&p, &[]);
    assert!(page.starts_with("<!DOCTYPE html>"));
    let loss = figure(&page, "loss");
    assert_eq!(loss.matches(r#"<circle class="pt raw"#).count(), 5);
    assert!(loss.contains(r#"data-versions="5""#));
    assert!(
        !loss.contains("class=\"agg"),
        "5 versions are not aggregated"
    );
    assert_eq!(table_rows(&page), 5);
    // Self-contained: nothing is fetched.
    for remote in ["http://", "https://", "src=", "<link", "@import"] {
        let outside_svg_ns = page.replace("http://www.w3.org/2000/svg", "");
        assert!(!outside_svg_ns.contains(remote), "page refers to {remote}");
    }
    // Only the metrics named are charted and tabulated.
    let page = report(&p, &["--metric", "acc"]);
    assert_eq!(page.matches(r#"<figure class="metric""#).count(), 1);
    assert_eq!(
        figure(&page, "acc")
            .matches("<circle class=\"pt raw")
            .count(),
        5
    );
}

#[test]
fn a_hostile_run_id_and_metric_names_with_quotes_are_text() {
    let p = Project::new();
    native(&p.store(), 0, 0.4);
    write(
        &p.store().join("raw/<script>alert(1)<!--/metadata.json"),
        br#"{"created_at": "2026-02-01T00:00:00", "metrics": {"we\"ird' <b>": 2.5, "loss": 0.3}}"#,
    );
    write(&p.store().join("raw/<script>alert(1)<!--/model.pt"), b"w");
    let page = report(&p, &[]);
    // The one script element is the page's own sorting script.
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    assert!(!page.contains("<b>"));
    assert!(!page.contains("<!--"));
    assert!(page.contains("&lt;script&gt;alert(1)&lt;!--"));
    let weird = figure(&page, "we&quot;ird&#39; &lt;b&gt;");
    assert_eq!(weird.matches("<circle class=\"pt raw").count(), 1);
    assert!(page.contains(r#"<th data-type="num">we&quot;ird&#39; &lt;b&gt;</th>"#));
    assert_eq!(
        figure(&page, "loss").matches("<circle class=\"pt").count(),
        2
    );
    assert_eq!(table_rows(&page), 2);
}

#[test]
fn releases_are_marked_and_lineage_is_drawn() {
    let p = Project::new();
    let validated = p.released("gru", &["1.0.0", "1.1.0"]);
    let page = report(&p, &["--metric", "coverage"]);
    let chart = figure(&page, "coverage");
    assert_eq!(chart.matches("<circle class=\"pt raw").count(), 1);
    assert_eq!(chart.matches("<circle class=\"pt validated").count(), 1);
    assert_eq!(chart.matches("<circle class=\"pt production").count(), 2);
    assert_eq!(
        chart
            .matches(r#"<circle class="pt production latest""#)
            .count(),
        1,
        "production latest is highlighted"
    );
    assert!(chart.contains(r#"data-ref="production/gru/1.1.0""#));
    assert_eq!(table_rows(&page), 4);
    let lineage = &page[page.find(r#"<section id="lineage">"#).unwrap()..];
    let lineage = &lineage[..lineage.find("</section>").unwrap()];
    assert_eq!(lineage.matches(r#"<g class="node"#).count(), 4);
    assert_eq!(lineage.matches(r#"<path class="edge""#).count(), 3);
    assert!(lineage.contains(&format!(r#"data-ref="{validated}""#)));
    assert!(
        lineage.contains(r#"<g class="node production latest" data-ref="production/gru/1.1.0""#)
    );
    // --stage raw leaves releases out.
    let raw = report(&p, &["--stage", "raw"]);
    assert_eq!(table_rows(&raw), 1);
}

#[test]
fn problems_are_listed() {
    let p = Project::new();
    native(&p.store(), 0, 0.4);
    write(&p.store().join("raw/broken/metadata.json"), b"{not json");
    let page = report(&p, &[]);
    let problems = &page[page.find(r#"<section id="problems">"#).unwrap()..];
    assert!(problems.contains(r#"<li data-ref="broken">"#), "{problems}");
    assert!(page.contains(r#"<tr class="problem" data-ref="broken">"#));
}

#[test]
fn a_thousand_versions_are_thinned_and_stay_small() {
    let p = Project::new();
    for i in 0..1000 {
        native(&p.store(), i, (i as f64 * 0.37).sin());
    }
    let page = report(&p, &[]);
    assert!(page.len() < 2_000_000, "{} bytes", page.len());
    assert_eq!(table_rows(&page), 1000);
    let loss = figure(&page, "loss");
    assert!(loss.contains(r#"data-versions="1000""#));
    let points = loss.matches("<circle class=\"pt raw").count();
    let aggregates = loss.matches("<circle class=\"agg raw").count();
    assert!(points + aggregates <= 301, "{points} + {aggregates}");
    assert!(aggregates > 0);
    let counted: usize = loss
        .split(r#"data-count=""#)
        .skip(1)
        .map(|s| s[..s.find('"').unwrap()].parse::<usize>().unwrap())
        .sum();
    assert_eq!(counted + points, 1000, "every version is in some point");
}

#[test]
fn writes_report_html_by_default_and_refuses_nothing_else() {
    let p = Project::new();
    native(&p.store(), 0, 0.4);
    let out = p.cmd().arg("report").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = p.path("report.html");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        path.display().to_string()
    );
    let page = std::fs::read_to_string(&path).unwrap();
    assert!(page.ends_with("</html>\n"));
    let bad = p
        .cmd()
        .args(["report", "--stage", "nope"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
