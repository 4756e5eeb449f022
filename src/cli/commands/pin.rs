use anyhow::Result;
use artifactctl::ops::pin;
use artifactctl::ExitCode;

use crate::cli::printer::Printer;
use crate::cli::settings::Context;

/// Pin a run so that no cleanup or delete removes it
///
/// The pin is a top-level "pinned": true in the run's metadata.json, written
/// atomically under the store lock and journaled. `list` shows it in NOTE.
/// Runs read from seed 002/003 folders have no artifactctl metadata to hold
/// a pin: register the folder first.
///
/// Examples:
///   artifactctl pin 20261123_101500
///   artifactctl pin gru/BTCEUR/latest
///   artifactctl unpin gru/BTCEUR/20240815_093045
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    pub target: super::RefArg,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    set(ctx, out, &args.target.reference, true)
}

/// Shared by `pin` and `unpin`: apply, then say what happened.
pub fn set(
    ctx: &Context,
    out: &Printer,
    reference: &artifactctl::store::refs::RunRef,
    pinned: bool,
) -> Result<ExitCode> {
    let outcome = pin::set_pinned(&ctx.store, reference, pinned)?;
    for warning in &outcome.warnings {
        out.warn(warning);
    }
    let state = if pinned { "pinned" } else { "unpinned" };
    if outcome.changed {
        out.status(&format!("{state} {}", outcome.reference));
    } else {
        out.status(&format!("{} was already {state}", outcome.reference));
    }
    Ok(ExitCode::Success)
}
