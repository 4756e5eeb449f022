use anyhow::Result;
use artifactctl::ExitCode;

use crate::cli::printer::Printer;
use crate::cli::settings::Context;

/// Remove a run's pin, so that cleanup may remove it again
///
/// Removes "pinned" from the run's metadata.json, atomically under the store
/// lock, and journals it. Unpinning a run that is not pinned changes nothing.
///
/// Examples:
///   artifactctl unpin 20261123_101500
///   artifactctl unpin gru/BTCEUR/latest
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    pub target: super::RefArg,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    super::pin::set(ctx, out, &args.target.reference, false)
}
