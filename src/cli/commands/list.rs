use anyhow::Result;
use artifactctl::policy::query::{best_metric, Filter, SortKey};
use artifactctl::store::metadata::RunStatus;
use artifactctl::store::refs::{Namespace, Stage};
use artifactctl::store::RunInfo;
use artifactctl::ExitCode;
use serde::Serialize;

use crate::cli::printer::{human_number, human_size, Align, Printer, Table, Tone};
use crate::cli::settings::Context;

/// List runs with creation time, model count, size and best metric
///
/// The `*` marks each namespace's latest run. Runs whose metadata is damaged
/// are still listed, with the problem shown. Numbers and times sort largest
/// or newest first, text A to Z; --reverse flips it.
///
/// Examples:
///   artifactctl list
///   artifactctl list gru --stage all
///   artifactctl list --where metrics.sharpe_ratio>1.0 --sort metrics.sharpe_ratio --limit 5
///   artifactctl list --where params.seq_length=30 --json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Only runs in this namespace or below it
    #[arg(value_name = "NS", value_parser = Namespace::parse)]
    pub namespace: Option<Namespace>,
    /// raw, validated, production or all
    #[arg(long, default_value = "raw", value_name = "STAGE")]
    pub stage: String,
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
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print {"schema_version":1,"runs":[...]}
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct ListJson<'a> {
    runs: &'a [RunInfo],
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
    let stages = stages_for(ctx, &args.stage)?;
    let under = args.namespace.unwrap_or_default();
    let opts = ctx.read_options(false)?;
    let mut runs = ctx.store.runs(&stages, &under, &opts);
    runs.retain(|r| args.filters.iter().all(|f| f.matches(r)));
    args.sort.sort(&mut runs, args.reverse);
    if let Some(limit) = args.limit {
        runs.truncate(limit);
    }
    if args.json {
        out.json(&ListJson { runs: &runs })?;
        return Ok(ExitCode::Success);
    }
    if runs.is_empty() {
        out.status(&format!("no runs in {}", ctx.store.dir().display()));
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
    for run in &runs {
        let mut row = vec![
            if run.latest {
                out.paint_out(Tone::Good, "*")
            } else {
                String::new()
            },
            run.reference.clone(),
            run.created_at
                .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|| "-".into()),
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
            best_metric(run, metric, ctx.config.list.metric_goal)
                .map(human_number)
                .unwrap_or_else(|| "-".into()),
        );
        row.push(note(run, out));
        table.row(row);
    }
    out.text(&table.render())?;
    Ok(ExitCode::Success)
}

fn note(run: &RunInfo, out: &Printer) -> String {
    let mut parts = Vec::new();
    if run.pinned {
        parts.push("pinned".to_string());
    }
    if let Some(first) = run.problems.first() {
        let mut text: String = first.chars().take(70).collect();
        if first.chars().count() > 70 {
            text.push('…');
        }
        if run.problems.len() > 1 {
            text.push_str(&format!(" (+{} more)", run.problems.len() - 1));
        }
        parts.push(out.paint_out(Tone::Warn, &format!("! {text}")));
    }
    parts.join(" ")
}
