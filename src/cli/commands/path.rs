use anyhow::Result;
use artifactctl::ExitCode;

use crate::cli::printer::Printer;
use crate::cli::settings::Context;

/// Print the absolute path of a run's folder, for scripts
///
/// Resolves directly (no scan of the store). `latest` falls back to the
/// newest complete run when the link is missing or dangling.
///
/// Examples:
///   artifactctl path latest
///   python train.py --resume "$(artifactctl path gru/BTCEUR/latest)/model.pth"
///   artifactctl path production/gru/BTCEUR/1.0.0
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    pub target: super::RefArg,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let resolved = ctx.store.resolve(&args.target.reference)?;
    for warning in &resolved.warnings {
        out.warn(warning);
    }
    out.line(&resolved.location.path.display().to_string())?;
    Ok(ExitCode::Success)
}
