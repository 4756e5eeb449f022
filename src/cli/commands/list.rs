use std::borrow::Cow;
use std::collections::BTreeMap;

use anyhow::Result;
use artifactctl::policy::query::{best_metric, Filter, RunFields, SortKey};
use artifactctl::store::listing::{Listing, Row, RunChecks};
use artifactctl::store::metadata::RunStatus;
use artifactctl::store::refs::Stage;
use artifactctl::{ArtifactError, ExitCode};
use chrono::{DateTime, Utc};
use rayon::prelude::*;
use serde_json::Value;

use crate::cli::printer::{human_number, human_size, Align, PrettyAt, Printer, Table, Tone};
use crate::cli::settings::{Context, ListSettings};

/// List runs with creation time, model count, size and best metric
///
/// The `*` marks each namespace's latest run. Runs whose metadata is damaged
/// are still listed, with the problem shown. Numbers and times sort largest
/// or newest first, text A to Z; --reverse flips it. A NS that starts with a
/// stage name is read as that stage: `list production` is
/// `list --stage production`, `list validated/gru` is `list gru --stage
/// validated`.
///
/// --where takes FIELD OP VALUE, OP one of = != > >= < <=: metrics.NAME,
/// models, files take numbers; size takes units (size>1GB, size<500KiB);
/// created takes dates, times, today, yesterday and ages (created>2026-11-01,
/// created<7d: younger than 7 days); stage, status, latest, pinned, id,
/// namespace, params.NAME and tags (tags=gpu: has the tag gpu).
///
/// Examples:
///   artifactctl list
///   artifactctl list production
///   artifactctl list gru --stage all
///   artifactctl list --where 'size>1GB' --where 'created<7d'
///   artifactctl list --where metrics.sharpe_ratio>1.0 --sort metrics.sharpe_ratio --limit 5
///   artifactctl list --where params.seq_length=30 --json
///   artifactctl list production --remote origin
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment, allow_negative_numbers = true)]
pub struct Args {
    /// Only runs in this namespace or below it ([STAGE/]NS; a stage name alone is the stage)
    #[arg(value_name = "NS")]
    pub namespace: Option<String>,
    /// raw, validated, production or all [default: raw]
    #[arg(long, value_name = "STAGE")]
    pub stage: Option<String>,
    /// created, id, namespace, size, models, files, status, metrics.NAME, params.NAME
    #[arg(long, default_value = "created", value_name = "FIELD")]
    pub sort: SortKey,
    /// Reverse the sort order
    #[arg(long)]
    pub reverse: bool,
    /// Keep runs where FIELD OP VALUE holds (repeatable, all must hold)
    #[arg(long = "where", value_name = "EXPR")]
    pub filters: Vec<Filter>,
    /// Show at most N runs (after sorting)
    #[arg(long, value_name = "N", value_parser = super::count)]
    pub limit: Option<usize>,
    /// Read the runs of this remote ([remotes.NAME]) instead, without pulling
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Print {"schema_version":1,"runs":[...]}
    #[arg(long)]
    pub json: bool,
}

/// One row of a listing, as filters, sort keys and the BEST column read it.
struct View<'a>(&'a Listing, &'a Row);

impl RunFields for View<'_> {
    fn metric(&self, name: &str) -> Option<f64> {
        self.1.metrics().get(name).copied()
    }
    fn metrics(&self) -> Cow<'_, BTreeMap<String, f64>> {
        Cow::Owned(self.1.metrics())
    }
    fn param(&self, name: &str) -> Option<Value> {
        self.1.params().remove(name)
    }
    fn has_tag(&self, tag: &str) -> bool {
        self.1.tags().iter().any(|t| t == tag)
    }
    fn id(&self) -> &str {
        self.1.id()
    }
    fn namespace(&self) -> &str {
        &self.0.group(self.1).ns_text
    }
    fn stage(&self) -> Stage {
        self.0.group(self.1).stage
    }
    fn status(&self) -> RunStatus {
        self.1.status
    }
    fn created_at(&self) -> Option<DateTime<Utc>> {
        self.1.created_at
    }
    fn size_bytes(&self) -> u64 {
        self.1.size_bytes
    }
    fn model_count(&self) -> u64 {
        self.1.model_count
    }
    fn file_count(&self) -> u64 {
        self.1.file_count
    }
    fn latest(&self) -> bool {
        self.1.latest
    }
    fn pinned(&self) -> bool {
        self.1.pinned
    }
    fn reference(&self) -> Cow<'_, str> {
        Cow::Owned(self.0.reference(self.1))
    }
}

/// One row as `list --json` prints it: the fields of a serialized
/// `RunInfo`, in its order.
fn write_row(listing: &Listing, row: &Row, out: &mut Vec<u8>) {
    let group = listing.group(row);
    let mut o = PrettyAt::object(out, 2);
    o.field("ref", &listing.reference(row));
    o.field("id", row.id());
    o.field("namespace", &group.ns_text);
    o.field("stage", &group.stage);
    o.field("created_at", &row.created_at);
    o.field("status", &row.status);
    o.field("size_bytes", &row.size_bytes);
    o.field("file_count", &row.file_count);
    o.field("model_count", &row.model_count);
    o.field("dataset_count", &row.dataset_count);
    o.raw("metrics", row.metrics_json());
    o.raw("params", row.params_json());
    o.raw("tags", row.tags_json());
    o.field("latest", &row.latest);
    o.field("pinned", &row.pinned);
    o.field("layout", &row.layout);
    o.raw("problems", row.problems_json());
    o.end();
}

pub fn stages_for(ctx: &Context, text: &str) -> Result<Vec<Stage>> {
    if text == "all" {
        return Ok(ctx.store.stages().to_vec());
    }
    let stage: Stage = text.parse()?;
    ctx.store.stage_dir(stage)?;
    Ok(vec![stage])
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let ListSettings {
        namespace,
        stage,
        under,
        sort,
        reverse,
        filters,
        limit,
        remote,
        json,
    } = ListSettings::resolve(args, ctx)?;
    let (listing, source) = match &remote {
        Some(name) => {
            let remote = super::open_remote(ctx, Some(name))?;
            // A remote holds every stage, whatever the local layout.
            let stages = if stage == "all" {
                Stage::ALL.to_vec()
            } else {
                vec![stage.parse::<Stage>()?]
            };
            let runs = remote.runs(&stages, &under, &ctx.read_options(false)?)?;
            let source = format!("remote '{}' ({})", remote.name, remote.backend.shown);
            (Listing::from_infos(runs), source)
        }
        None => {
            let stages = stages_for(ctx, &stage)?;
            let opts = ctx.read_options(false)?;
            let listing = ctx.store.listing(&stages, &under, &opts, RunChecks::Auto);
            (listing, ctx.store.dir().display().to_string())
        }
    };
    if listing.rows.is_empty() && !under.is_root() && remote.is_none() {
        if let Some(text) = &namespace {
            let err = ArtifactError::usage(format!(
                "no runs in namespace {under} ({stage}) of {}",
                ctx.store.dir().display()
            ));
            let err = crate::cli::settings::with_store_hint(ctx, text, err);
            if err.message.contains("did you mean") {
                return Err(err.into());
            }
        }
    }
    let total = listing.rows.len();
    let views: Vec<View<'_>> = listing
        .rows
        .iter()
        .map(|r| View(&listing, r))
        .filter(|v| filters.iter().all(|f| f.matches(v, ctx.invocation.now)))
        .collect();
    let mut order = sort.order(&views, reverse);
    if let Some(limit) = limit {
        order.truncate(limit);
    }
    let runs: Vec<&Row> = order.into_iter().map(|i| views[i].1).collect();
    if json {
        out.json_array("runs", &runs, |row, buf| write_row(&listing, row, buf))?;
        // As below: the process ends here.
        std::mem::forget(runs);
        std::mem::forget(listing);
        return Ok(ExitCode::Success);
    }
    if runs.is_empty() {
        if total > 0 {
            out.status(&format!(
                "no runs match {}; {total} run{} in {} ({stage}{})",
                filters
                    .iter()
                    .map(|f| format!("--where '{}'", f.text()))
                    .collect::<Vec<_>>()
                    .join(" "),
                if total == 1 { "" } else { "s" },
                source,
                if under.is_root() {
                    String::new()
                } else {
                    format!(", {under}")
                },
            ));
        } else {
            out.status(&format!("no runs in {source}"));
        }
        return Ok(ExitCode::Success);
    }
    let metric = &ctx.config.list.metric;
    let show_status = runs.iter().any(|r| r.status != RunStatus::Complete);
    let mut headers = vec![
        ("", Align::Left),
        ("REF", Align::Left),
        ("CREATED", Align::Left),
    ];
    if show_status {
        headers.push(("STATUS", Align::Left));
    }
    headers.extend([
        ("MODELS", Align::Right),
        ("SIZE", Align::Right),
        (metric.as_str(), Align::Right),
        ("NOTE", Align::Left),
    ]);
    let mut table = Table::new(&headers);
    let cells: Vec<Vec<String>> = runs
        .par_iter()
        .map(|run| {
            let mut row = vec![
                if run.latest {
                    out.paint_out(Tone::Good, "*")
                } else {
                    String::new()
                },
                listing.reference(run),
                run.created_at.map(created).unwrap_or_else(|| "-".into()),
            ];
            if show_status {
                let tone = if run.status == RunStatus::Complete {
                    Tone::Dim
                } else {
                    Tone::Bad
                };
                row.push(out.paint_out(tone, run.status.as_str()));
            }
            row.push(run.model_count.to_string());
            row.push(human_size(run.size_bytes));
            row.push(
                best_metric(&View(&listing, run), metric, ctx.config.list.metric_goal)
                    .map(human_number)
                    .unwrap_or_else(|| "-".into()),
            );
            row.push(note(run, out));
            row
        })
        .collect();
    for row in cells {
        table.row(row);
    }
    out.text(&table.render())?;
    // The process ends here: freeing thousands of rows and cells one
    // allocation at a time would only delay the exit.
    std::mem::forget(table);
    std::mem::forget(runs);
    std::mem::forget(listing);
    Ok(ExitCode::Success)
}

/// `%Y-%m-%d %H:%M:%S`, written out directly: chrono's formatter is most of
/// a long table's cost.
fn created(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    if !(0..=9999).contains(&t.year()) {
        return t.format("%Y-%m-%d %H:%M:%S").to_string();
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn note(run: &Row, out: &Printer) -> String {
    let mut parts = Vec::new();
    if run.pinned {
        parts.push("pinned".to_string());
    }
    let problems = if run.has_problems() {
        run.problems()
    } else {
        Vec::new()
    };
    if let Some(first) = problems.first() {
        let mut text: String = first.chars().take(70).collect();
        if first.chars().count() > 70 {
            text.push('…');
        }
        if problems.len() > 1 {
            text.push_str(&format!(" (+{} more)", problems.len() - 1));
        }
        parts.push(out.paint_out(Tone::Warn, &format!("! {text}")));
    }
    parts.join(" ")
}
