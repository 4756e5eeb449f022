use std::path::PathBuf;

use anyhow::{Context as _, Result};
use artifactctl::fsx;
use artifactctl::ops::report::{gather, html};
use artifactctl::store::refs::Namespace;
use artifactctl::ExitCode;

use crate::cli::printer::Printer;
use crate::cli::settings::{Context, ReportSettings};

/// Write a self-contained HTML report: metrics, versions, lineage, size
///
/// Metrics over versions with releases marked, a sortable table of runs,
/// the lineage graph, store size over time and problems found. One file
/// with inline SVG charts and no network access: open it from disk or keep
/// it as a CI artifact. Above 300 versions consecutive points are
/// aggregated (mean, min, max) so the page stays small. Without --metric
/// the six most common metrics are charted.
///
/// Examples:
///   artifactctl report                                  # writes report.html
///   artifactctl report gru/BTCEUR --metric sharpe_ratio -o gru.html
///   artifactctl report --stage raw --metric best_val_loss --metric coverage
///   artifactctl report -o - > report.html
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Only runs in this namespace or below it
    #[arg(value_name = "NS", value_parser = Namespace::parse)]
    pub namespace: Option<Namespace>,
    /// raw, validated, production or all
    #[arg(long, default_value = "all", value_name = "STAGE")]
    pub stage: String,
    /// A metric to chart and tabulate, repeatable [default: the six most common]
    #[arg(long = "metric", value_name = "NAME")]
    pub metrics: Vec<String>,
    /// The file to write; - for stdout
    #[arg(
        short = 'o',
        long = "output",
        default_value = "report.html",
        value_name = "FILE"
    )]
    pub output: PathBuf,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let settings = ReportSettings::resolve(args, ctx)?;
    let read = ctx.read_options(false)?;
    let data = gather(&ctx.store, &settings.options, &read);
    if data.runs.is_empty() {
        out.warn(&format!(
            "no runs in {}: the report is empty",
            ctx.store.dir().display()
        ));
    }
    let page = html::render(&data);
    if settings.output.as_os_str() == "-" {
        out.text(&page)?;
        return Ok(ExitCode::Success);
    }
    let path = ctx.invocation.cwd.join(&settings.output);
    fsx::atomic_write(&path, page.as_bytes())
        .with_context(|| format!("cannot write the report to {}", path.display()))?;
    out.status(&format!(
        "wrote {} ({} runs, {} metrics, {} KiB)",
        settings.output.display(),
        data.runs.len(),
        data.metrics.len(),
        page.len().div_ceil(1024)
    ));
    out.line(&path.display().to_string())?;
    Ok(ExitCode::Success)
}
