use anyhow::Result;
use artifactctl::ops::seal;
use artifactctl::progress::Silent;
use artifactctl::remote;
use artifactctl::store::refs::RunRef;
use artifactctl::ExitCode;

use crate::cli::printer::{human_size, Printer};
use crate::cli::settings::{Context, PushSettings};

/// Upload runs and releases to a remote store (docs/remote.md)
///
/// Content goes up once under its BLAKE3 hash, so a dataset shared by many
/// runs is stored once; a run's record is written after all its content,
/// and never overwritten: pushing a release version that the remote holds
/// with other content is refused (exit 1). The remote's latest of a stage
/// moves only forward. An unchanged run re-pushed costs one round trip.
///
/// A push killed midway, run again, uploads only what is missing and
/// finishes what it left undone.
///
/// Up to --jobs transfers run at once. On a terminal a bar shows bytes and
/// files; elsewhere (CI, --no-progress) plain lines say when each run's
/// transfer starts and ends; --quiet shows neither.
///
/// Examples:
///   artifactctl push latest
///   artifactctl push production/gru/BTCEUR/1.2.0 --remote origin
///   artifactctl push --all --stage production
///   artifactctl push --all --json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// [stage/][namespace/](run-id|latest)
    #[arg(value_name = "REF")]
    pub refs: Vec<RunRef>,
    /// Push every run of the stage (see --stage)
    #[arg(long)]
    pub all: bool,
    /// With --all: raw, validated, production or all [default: all]
    #[arg(long, value_name = "STAGE")]
    pub stage: Option<String>,
    /// The remote, a [remotes.NAME] of artifactctl.toml [default: [remote] default]
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Transfers in flight at once
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub jobs: usize,
    /// Print {"schema_version":1,"remote":...,"runs":[...],"uploaded_bytes":N}
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let PushSettings {
        remote,
        options,
        json,
    } = PushSettings::resolve(args, ctx)?;
    let remote = super::open_remote(ctx, remote.as_deref())?;
    // Content goes up under its hash: runs imported by link get the hashes
    // still pending recorded first.
    for location in &options.runs {
        seal::seal_if_native(&ctx.store, location, &Silent)?;
    }
    let reporter = crate::cli::reporters::for_transfers(out);
    let report = remote::push(&remote, &options, reporter.as_ref())?;
    drop(reporter);
    if json {
        out.json(&report)?;
        return Ok(ExitCode::Success);
    }
    for run in &report.runs {
        let latest = if run.became_latest {
            ", now latest"
        } else {
            ""
        };
        out.line(&format!(
            "{} {}: {} files uploaded ({}), {} already there{latest}",
            run.state,
            run.reference,
            run.uploaded_files,
            human_size(run.uploaded_bytes),
            run.present_files
        ))?;
    }
    out.status(&format!(
        "pushed to {} ({}): {} uploaded",
        report.remote,
        remote.backend.shown,
        human_size(report.uploaded_bytes)
    ));
    Ok(ExitCode::Success)
}
