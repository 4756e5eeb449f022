//! `report`: gather what a store holds (runs of every chosen stage, their
//! metrics, lineage, sizes over time and problems) into [`ReportData`], and
//! render it as one self-contained HTML page ([`html::render`], pure text
//! generation). Reading only: nothing in the store is written.

pub mod html;
mod svg;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::store::metadata::Metadata;
use crate::store::refs::{Namespace, Stage};
use crate::store::{ReadOptions, RunInfo, Store};

/// At most this many points per chart; above it consecutive versions are
/// aggregated (mean, min and max) so 1,000 versions stay readable and small.
pub const MAX_POINTS: usize = 300;

/// How many metrics the report charts when none is named.
pub const DEFAULT_METRICS: usize = 6;

#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub stages: Vec<Stage>,
    pub under: Namespace,
    /// The metrics to chart; empty: the most common ones, up to [`DEFAULT_METRICS`].
    pub metrics: Vec<String>,
    /// Shown in the page's header.
    pub title: String,
    pub now: DateTime<Utc>,
}

/// One run with the lineage the report draws.
#[derive(Debug, Clone)]
pub struct ReportRun {
    pub info: RunInfo,
    /// `stage/ns/id`, the form lineage refers to runs by.
    pub qualified: String,
    /// Qualified refs this run was promoted from or derived from.
    pub sources: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ReportData {
    pub title: String,
    pub generated_at: DateTime<Utc>,
    /// Oldest first (runs without a time first, by ref).
    pub runs: Vec<ReportRun>,
    /// The metrics charted and shown as table columns.
    pub metrics: Vec<String>,
    /// Metrics present in the runs but left out of the charts.
    pub omitted_metrics: Vec<String>,
}

/// Read every run of the chosen stages under the namespace, with lineage.
pub fn gather(store: &Store, options: &ReportOptions, read: &ReadOptions) -> ReportData {
    let infos = store.runs(&options.stages, &options.under, read);
    let mut runs: Vec<ReportRun> = infos
        .into_iter()
        .map(|info| {
            let sources = if info.stage == Stage::Raw {
                Vec::new()
            } else {
                lineage_sources(&info)
            };
            ReportRun {
                qualified: info.location.qualified(),
                info,
                sources,
            }
        })
        .collect();
    runs.sort_by(|a, b| (a.info.created_at, &a.qualified).cmp(&(b.info.created_at, &b.qualified)));
    let (metrics, omitted_metrics) = choose_metrics(&runs, &options.metrics);
    ReportData {
        title: options.title.clone(),
        generated_at: options.now,
        runs,
        metrics,
        omitted_metrics,
    }
}

/// A promoted run's sources from its metadata; older layouts have none.
fn lineage_sources(info: &RunInfo) -> Vec<String> {
    let Ok(meta) = Metadata::read(&info.location.path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for source in [meta.lineage.promoted_from, meta.lineage.parent]
        .into_iter()
        .flatten()
    {
        if !out.contains(&source) {
            out.push(source);
        }
    }
    out
}

/// The named metrics, or the most common ones (ties by name).
fn choose_metrics(runs: &[ReportRun], named: &[String]) -> (Vec<String>, Vec<String>) {
    // Per metric: how many runs record it, and its first value and whether
    // it ever differs (a metric that never changes makes a dull chart).
    let mut counts: BTreeMap<&str, (usize, f64, bool)> = BTreeMap::new();
    for run in runs {
        for (name, &v) in &run.info.metrics {
            let entry = counts.entry(name).or_insert((0, v, false));
            entry.0 += 1;
            entry.2 |= entry.1 != v;
        }
    }
    if !named.is_empty() {
        let omitted = counts
            .keys()
            .filter(|k| !named.iter().any(|n| n == *k))
            .map(|k| k.to_string())
            .collect();
        return (named.to_vec(), omitted);
    }
    let mut ranked: Vec<(&str, (usize, f64, bool))> = counts.into_iter().collect();
    ranked.sort_by(|a, b| (b.1 .2, b.1 .0).cmp(&(a.1 .2, a.1 .0)).then(a.0.cmp(b.0)));
    let mut chosen: Vec<String> = ranked
        .iter()
        .take(DEFAULT_METRICS)
        .map(|(k, _)| k.to_string())
        .collect();
    chosen.sort();
    let mut omitted: Vec<String> = ranked
        .iter()
        .skip(DEFAULT_METRICS)
        .map(|(k, _)| k.to_string())
        .collect();
    omitted.sort();
    (chosen, omitted)
}
