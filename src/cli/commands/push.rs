use anyhow::Result;
use artifactctl::remote::{self, PushOptions, Remote};
use artifactctl::store::refs::{Namespace, RunRef};
use artifactctl::{ArtifactError, ExitCode};

use crate::cli::printer::{human_size, Printer};
use crate::cli::settings::Context;

/// Upload runs and releases to a remote store (docs/remote.md)
///
/// Content goes up once under its BLAKE3 hash, so a dataset shared by many
/// runs is stored once; a run's record is written after all its content,
/// and never overwritten: pushing a release version that the remote holds
/// with other content is refused (exit 1). The remote's latest of a stage
/// moves only forward. An unchanged run re-pushed costs one request.
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
    let Args {
        refs,
        all,
        stage,
        remote: remote_name,
        jobs,
        json,
    } = args;
    let (name, config) = ctx.config.remote(remote_name.as_deref())?;
    let mut runs = Vec::new();
    if all {
        let stages = super::list::stages_for(ctx, stage.as_deref().unwrap_or("all"))?;
        runs.extend(ctx.store.locations(&stages, &Namespace::root()));
    } else if stage.is_some() {
        return Err(
            ArtifactError::usage("--stage goes with --all; name runs as REF instead").into(),
        );
    }
    for r in &refs {
        runs.push(ctx.store.resolve(r)?.location);
    }
    if runs.is_empty() {
        return Err(ArtifactError::usage(
            "nothing to push: name runs (`artifactctl push latest`) or pass --all",
        )
        .into());
    }
    let remote = Remote::open(&name, &config)?;
    let report = remote::push(
        &remote,
        &PushOptions {
            runs,
            jobs,
            now: ctx.invocation.now,
            read: ctx.read_options(false)?,
        },
    )?;
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
