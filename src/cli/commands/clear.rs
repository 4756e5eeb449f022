use std::path::{Path, PathBuf};

use anyhow::Result;
use artifactctl::ops::clear::{self, ClearReport};
use artifactctl::ExitCode;

use crate::cli::printer::{human_size, plural, thousands, Align, Printer, Table};
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

/// Beyond this many items, loose files are shown grouped by folder (a tree
/// of 12,000 stray `.pkl` files is one line per folder, not 12,000 lines);
/// `-v` and `--json` list every one.
const GROUP_ABOVE_ITEMS: usize = 40;
/// A folder's loose files matching one pattern become one row from this many.
const GROUP_MIN_FILES: usize = 5;

/// One table row: an item, or a folder's loose files matching one pattern.
struct Row {
    path: String,
    kind: String,
    files: u64,
    bytes: u64,
    reason: String,
}

fn rows(report: &ClearReport, group: bool) -> (Vec<Row>, usize) {
    let kind_of = |item: &artifactctl::ops::clear::ClearItem| {
        serde_json::to_value(item.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let parent = |path: &str| match path.rfind('/') {
        Some(at) => format!("{}/", &path[..at]),
        None => "./".to_string(),
    };
    // (folder, pattern) -> how many loose files; only files are grouped.
    let mut counts: std::collections::HashMap<(String, String), usize> = Default::default();
    if group {
        for item in report.items.iter().filter(|i| kind_of(i) != "dir") {
            *counts
                .entry((parent(&item.path), item.reason.clone()))
                .or_default() += 1;
        }
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut group_at: std::collections::HashMap<(String, String), usize> = Default::default();
    let mut grouped = 0;
    for item in &report.items {
        let kind = kind_of(item);
        let key = (parent(&item.path), item.reason.clone());
        if kind != "dir" && counts.get(&key).is_some_and(|n| *n >= GROUP_MIN_FILES) {
            grouped += 1;
            let at = *group_at.entry(key.clone()).or_insert_with(|| {
                rows.push(Row {
                    path: key.0.clone(),
                    kind: "files".into(),
                    files: 0,
                    bytes: 0,
                    reason: String::new(),
                });
                rows.len() - 1
            });
            let row = &mut rows[at];
            row.files += item.files;
            row.bytes += item.bytes;
            row.reason = format!("{} matching {}", plural(row.files, "file", "files"), key.1);
            continue;
        }
        let path = if kind == "dir" {
            format!("{}/", item.path)
        } else {
            item.path.clone()
        };
        rows.push(Row {
            path,
            kind,
            files: item.files,
            bytes: item.bytes,
            reason: item.reason.clone(),
        });
    }
    (rows, grouped)
}

fn print_report(out: &Printer, report: &ClearReport) -> Result<()> {
    for skipped in &report.skipped {
        out.status(&format!(
            "skipped: {skipped} (versioned; name it in [clear] patterns to clear it anyway)"
        ));
    }
    if report.items.is_empty() {
        out.status("nothing to clear");
        return Ok(());
    }
    let group = out.verbose == 0 && report.items.len() > GROUP_ABOVE_ITEMS;
    let (rows, grouped) = rows(report, group);
    let mut table = Table::new(&[
        ("PATH", Align::Left),
        ("KIND", Align::Left),
        ("FILES", Align::Right),
        ("SIZE", Align::Right),
        ("REASON", Align::Left),
    ]);
    for row in rows {
        table.row(vec![
            row.path,
            row.kind,
            thousands(row.files),
            human_size(row.bytes),
            row.reason,
        ]);
    }
    out.text(&table.render())?;
    if grouped > 0 {
        out.status(&format!(
            "{} grouped by folder; -v lists every one",
            plural(grouped as u64, "file is", "files are")
        ));
    }
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    out.line(&format!(
        "{verb} {}: {}, {}{}",
        plural(report.items.len() as u64, "item", "items"),
        plural(report.total_files, "file", "files"),
        human_size(report.total_bytes),
        if report.dry_run { "" } else { " freed" }
    ))?;
    if report.dry_run {
        out.status("dry run: nothing was removed; run again with --force to delete");
    }
    Ok(())
}
