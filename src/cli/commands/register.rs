use std::path::PathBuf;

use anyhow::Result;
use artifactctl::ops::register::{register, register_all};
use artifactctl::store::refs::Namespace;
use artifactctl::ExitCode;

use crate::cli::commands::key_value;
use crate::cli::printer::{human_size, plural, Printer};
use crate::cli::reporters;
use crate::cli::settings::{Context, RegisterSettings};

/// Copy a folder of training outputs into the store as a new raw run
///
/// Every file is hashed (BLAKE3) into the run's manifest, the run is
/// published atomically and `latest` moves to it. A metadata.json or
/// training_metadata.json already in the folder is imported. Prints the new
/// run's ref on stdout. A folder that states its own id (seed 002's run_id,
/// a seed 003 timestamp name) keeps it, and its own created_at.
///
/// With --all, DIR is a legacy store (seed 002's models/, seed 003's
/// backend/models/): every version is imported under its own name,
/// namespace and time, its files hard-linked (made read-only) when on the
/// same filesystem. Corrupted versions are skipped with the reason, versions
/// already present are counted; running it again imports nothing new.
///
/// Examples:
///   artifactctl register sandbox-training/checkpoints/v5_5 --id v5_5_20251124 \
///       --config config.json --metric best_val_loss=0.38 --metric coverage=0.99
///   artifactctl register out/ --namespace gru/BTCEUR --param seq_length=30 --tag nightly
///   artifactctl register /scratch/run --move          # rename instead of copying
///   artifactctl register --all backend/models          # import a whole legacy store
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The folder to register
    pub dir: PathBuf,
    /// Namespace, e.g. gru/BTCEUR
    #[arg(long, short = 'n', value_name = "NS", value_parser = Namespace::parse, default_value = "")]
    pub namespace: Namespace,
    /// Run id [default: the creation time, YYYYMMDD_HHMMSS in UTC]
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// JSON file with the run's configuration (an object)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// JSON file of metrics (an object; nested objects become dotted names, non-numbers params)
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// A parameter, repeatable; numbers and true/false are typed
    #[arg(long = "param", value_name = "K=V", value_parser = key_value)]
    pub params: Vec<(String, String)>,
    /// A metric, repeatable; a value that is not a number is kept as a param
    #[arg(long = "metric", value_name = "K=V", value_parser = key_value)]
    pub metric: Vec<(String, String)>,
    /// A tag, repeatable
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Rename the folder into the store instead of copying (same filesystem)
    #[arg(long = "move")]
    pub move_in: bool,
    /// Register a folder that holds no files (refused otherwise)
    #[arg(long)]
    pub allow_empty: bool,
    /// Creation time (RFC 3339) [default: the folder's own, else now]; an older run never takes over latest
    #[arg(long, value_name = "TIME")]
    pub created_at: Option<String>,
    /// DIR is a legacy store: import every version, by hard link where possible
    #[arg(long, conflicts_with_all = ["id", "move_in", "created_at"])]
    pub all: bool,
    /// Print {"schema_version":1,"ref","path"}
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let RegisterSettings { options, all, json } = RegisterSettings::resolve(args, ctx)?;
    let reporter = reporters::for_output(out);
    if all {
        let report = register_all(&ctx.store, options, reporter.as_ref())?;
        for skipped in &report.skipped {
            out.warn(&format!(
                "skipped {}: {}",
                skipped.reference, skipped.reason
            ));
        }
        if json {
            out.json(&serde_json::json!({
                "imported": report.imported,
                "present": report.present,
                "skipped": report.skipped,
                "linked_bytes": report.linked_bytes,
            }))?;
        } else {
            for reference in &report.imported {
                out.line(reference)?;
            }
        }
        out.status(&format!(
            "imported {}, skipped {} (corrupted or incomplete), already present {}; {} shared by hard links",
            report.imported.len(),
            report.skipped.len(),
            report.present.len(),
            human_size(report.linked_bytes)
        ));
        return Ok(ExitCode::Success);
    }
    let registered = register(&ctx.store, options, reporter.as_ref())?;
    for warning in &registered.warnings {
        out.warn(warning);
    }
    let reference = registered.location.reference();
    if json {
        out.json(&serde_json::json!({"ref": reference, "path": registered.location.path}))?;
    } else {
        out.line(&reference)?;
    }
    out.status(&format!(
        "registered {reference}: {} in {}{}{}",
        human_size(registered.total_size),
        plural(registered.file_count, "file", "files"),
        if registered.moved { ", moved in" } else { "" },
        if registered.became_latest {
            ", now latest"
        } else {
            ""
        },
    ));
    out.detail(&format!("path: {}", registered.location.path.display()));
    Ok(ExitCode::Success)
}
