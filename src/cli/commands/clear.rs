use std::path::{Path, PathBuf};

use anyhow::Result;
use artifactctl::ops::clear::{self, ClearReport};
use artifactctl::ExitCode;

use crate::cli::printer::{human_size, Align, Printer, Table};
use crate::cli::reporters;
use crate::cli::settings::{ClearSettings, Context};

/// Remove regenerable artifacts (models, datasets, caches) under the project root
///
/// A dry run by default: prints each item that would go (a matched folder is
/// one item, with its file count and size), the pattern that matched, and the
/// totals. --force (or --yes) deletes, then prints the same summary with the
/// bytes freed. What matches is set in [clear] of artifactctl.toml (see
/// docs/clear.md); keep patterns always win. Never entered: .git, virtual
/// environments, node_modules, the store, other filesystems, anything outside
/// the root. Symlinks are removed as links and never followed.
///
/// Examples:
///   artifactctl clear                      show what would be removed
///   artifactctl clear --force              remove it
///   artifactctl clear trained_models/ -v   list every file in one folder
///   artifactctl clear --json | jq .total_bytes
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Only clear inside these files or folders (inside the project root)
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Delete (without this, nothing is removed)
    #[arg(long, short = 'f', visible_alias = "yes", short_alias = 'y')]
    pub force: bool,
    /// Only show what would go (the default; accepted so that scripts which
    /// pass it, as seed 000's did, keep working)
    #[arg(long, conflicts_with = "force")]
    pub dry_run: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let ClearSettings { options, json } = ClearSettings::resolve(args, ctx)?;
    let reporter = reporters::for_output(out);
    let list_file = |path: &Path, bytes: u64| {
        // A failed write shows again, as an error, at the flush below.
        let _ = out.listing_line(&format!(
            "  {}  {}",
            path.to_string_lossy(),
            human_size(bytes)
        ));
    };
    let on_file: Option<clear::FileListener> = (out.verbose > 0 && !json).then_some(&list_file);
    let report = clear::clear(&options, reporter.as_ref(), on_file)?;
    out.flush()?;

    if json {
        out.json(&report)?;
    } else {
        print_report(out, &report)?;
    }
    for failure in &report.errors {
        out.warn(&format!("{}: {}", failure.path, failure.error));
    }
    if report.errors.is_empty() {
        Ok(ExitCode::Success)
    } else {
        out.status(&format!(
            "{} entr{} could not be {}; see above",
            report.errors.len(),
            if report.errors.len() == 1 { "y" } else { "ies" },
            if report.dry_run { "read" } else { "removed" }
        ));
        Ok(ExitCode::Failure)
    }
}

fn print_report(out: &Printer, report: &ClearReport) -> Result<()> {
    if report.items.is_empty() {
        out.status("nothing to clear");
        return Ok(());
    }
    let mut table = Table::new(&[
        ("PATH", Align::Left),
        ("KIND", Align::Left),
        ("FILES", Align::Right),
        ("SIZE", Align::Right),
        ("REASON", Align::Left),
    ]);
    for item in &report.items {
        let kind = serde_json::to_value(item.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let path = if kind == "dir" {
            format!("{}/", item.path)
        } else {
            item.path.clone()
        };
        table.row(vec![
            path,
            kind,
            item.files.to_string(),
            human_size(item.bytes),
            item.reason.clone(),
        ]);
    }
    out.text(&table.render())?;
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    out.line(&format!(
        "{verb} {} item{}: {} file{}, {}{}",
        report.items.len(),
        if report.items.len() == 1 { "" } else { "s" },
        report.total_files,
        if report.total_files == 1 { "" } else { "s" },
        human_size(report.total_bytes),
        if report.dry_run { "" } else { " freed" }
    ))?;
    if report.dry_run {
        out.status("dry run: nothing was removed; run again with --force to delete");
    }
    Ok(())
}
