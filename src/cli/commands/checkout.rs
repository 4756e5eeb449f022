use anyhow::Result;
use artifactctl::ops::checkout;
use artifactctl::ExitCode;

use crate::cli::printer::Printer;
use crate::cli::settings::{CheckoutSettings, Context};

/// Put a run's outputs where the application loads them
///
/// Each [[refresh.steps]] with a `workspace` path (seed 000:
/// `workspace = "trained_models"`) gets that step's folder of the run,
/// read-only and sharing bytes with the store (hard links of read-only
/// files, or reflinks: no copy), switched in atomically. `--to DIR` places
/// the whole run there instead. A refresh checks out its run by itself when
/// it completes. A folder that checkout did not make is never replaced.
/// Works for any run or release: `checkout production/latest` puts the
/// released models where the application loads them (a local deploy, or a
/// rollback with an earlier version).
///
/// Examples:
///   artifactctl checkout latest
///   artifactctl checkout production/latest
///   artifactctl checkout production/1.0.0            # back to an earlier release
///   artifactctl checkout gru/BTCEUR/latest --to models/current
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    pub target: super::RefArg,
    /// Place the whole run in this folder (relative to the project root)
    #[arg(long, value_name = "DIR")]
    pub to: Option<std::path::PathBuf>,
    /// Print {"schema_version":1,"run":REF,"placed":[{"step","path","replaced"}],"missing":[STEP]}
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let CheckoutSettings { options, json } = CheckoutSettings::resolve(args, ctx);
    let done = checkout::checkout(&ctx.store, &options)?;
    report(out, &done, json)?;
    Ok(ExitCode::Success)
}

/// Print what a checkout placed: `refresh` reports its own checkout the
/// same way.
pub fn report(out: &Printer, done: &checkout::Checkout, json: bool) -> Result<()> {
    for warning in &done.warnings {
        out.warn(warning);
    }
    let reference = done.location.reference();
    if json {
        out.json(&serde_json::json!({
            "run": reference,
            "placed": done.placed,
            "missing": done.missing,
        }))?;
        return Ok(());
    }
    for placed in &done.placed {
        out.status(&format!(
            "checked out {}{} -> {}{}",
            reference,
            placed
                .step
                .as_deref()
                .map(|s| format!("/{s}"))
                .unwrap_or_default(),
            placed.path.display(),
            if placed.replaced {
                " (replaced the earlier checkout)"
            } else {
                ""
            }
        ));
    }
    for step in &done.missing {
        out.warn(&format!(
            "{reference} has no folder for step {step}; its workspace path is left as it was"
        ));
    }
    Ok(())
}
