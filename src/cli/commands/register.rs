use std::path::PathBuf;

use anyhow::Result;
use artifactctl::ops::register::register;
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
/// run's ref on stdout.
///
/// Examples:
///   artifactctl register sandbox-training/checkpoints/v5_5 --id v5_5_20251124 \
///       --config config.json --metric best_val_loss=0.38 --metric coverage=0.99
///   artifactctl register out/ --namespace gru/BTCEUR --param seq_length=30 --tag nightly
///   artifactctl register /scratch/run --move          # rename instead of copying
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
    /// JSON file of metrics (an object of numbers)
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// A parameter, repeatable; numbers and true/false are typed
    #[arg(long = "param", value_name = "K=V", value_parser = key_value)]
    pub params: Vec<(String, String)>,
    /// A metric, repeatable
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
    /// Creation time (RFC 3339) [default: now]; an older run never takes over latest
    #[arg(long, value_name = "TIME")]
    pub created_at: Option<String>,
    /// Print {"schema_version":1,"ref","path"}
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let RegisterSettings { options, json } = RegisterSettings::resolve(args, ctx)?;
    let reporter = reporters::for_output(out);
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
