use anyhow::Result;
use artifactctl::ops::delete;
use artifactctl::store::refs::RunRef;
use artifactctl::ExitCode;

use crate::cli::printer::{human_size, plural, Printer};
use crate::cli::prompt;
use crate::cli::settings::{Context, DeleteSettings};

/// Delete one run (asks first; scripts pass --yes)
///
/// Refuses runs that a promoted artifact came from, pinned runs and
/// production releases. If the run is its namespace's latest, latest moves
/// to the newest remaining complete run. The run is unlisted with one rename
/// before its files are removed, and the removal is journaled.
///
/// Examples:
///   artifactctl delete 20250724_150634
///   artifactctl delete gru/BTCEUR/20240815_093045 --yes
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// [stage/][namespace/]run-id
    #[arg(value_name = "REF")]
    pub reference: RunRef,
    /// Delete without asking
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Allow deleting a production release
    #[arg(long)]
    pub unsafe_allow_production: bool,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let DeleteSettings {
        reference,
        options,
        yes,
    } = DeleteSettings::resolve(args);
    let plan = delete::plan(&ctx.store, &reference, &options)?;
    for warning in &plan.warnings {
        out.warn(warning);
    }
    let run = &plan.run;
    let question = format!(
        "delete {} ({} in {}{})?",
        run.reference,
        human_size(run.size_bytes),
        plural(run.file_count, "file", "files"),
        if run.latest { ", the latest run" } else { "" }
    );
    if !prompt::confirm(out, &question, yes, "--yes")? {
        out.status("declined: nothing deleted");
        return Ok(ExitCode::DECLINED);
    }
    let deleted = delete::execute(&ctx.store, plan, &options)?;
    out.status(&format!(
        "deleted {}, freed {}",
        deleted.run.reference,
        human_size(deleted.run.size_bytes)
    ));
    if deleted.was_latest {
        match &deleted.latest_now {
            Some(id) => out.status(&format!("latest now points to {id}")),
            None => out.status("no complete run is left; latest was removed"),
        }
    }
    Ok(ExitCode::Success)
}
