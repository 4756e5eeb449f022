use anyhow::Result;
use artifactctl::remote;
use artifactctl::store::refs::RunRef;
use artifactctl::ExitCode;

use crate::cli::printer::{human_size, Printer};
use crate::cli::settings::{Context, PullSettings};

/// Download runs from a remote store into the local one (docs/remote.md)
///
/// Each run is staged, every file checked against its BLAKE3, and only then
/// published like any run; content already in local runs is hard-linked
/// instead of downloaded. What the remote says is checked like user input:
/// a record with a bad id or a path out of the run is refused. Deploying:
/// `pull production/NS/latest`, then `checkout`.
///
/// Up to --jobs transfers run at once. On a terminal a bar shows bytes and
/// files; elsewhere (CI, --no-progress) plain lines say when each run's
/// transfer starts and ends; --quiet shows neither.
///
/// Examples:
///   artifactctl pull production/latest
///   artifactctl pull production/gru/BTCEUR/1.2.0 --remote origin
///   artifactctl pull 20261123_101500 --json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// [stage/][namespace/](run-id|latest)
    #[arg(value_name = "REF", required = true)]
    pub refs: Vec<RunRef>,
    /// The remote, a [remotes.NAME] of artifactctl.toml [default: [remote] default]
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Transfers in flight at once
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub jobs: usize,
    /// Print {"schema_version":1,"remote":...,"runs":[...],"downloaded_bytes":N}
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let PullSettings {
        remote,
        options,
        json,
    } = PullSettings::resolve(args);
    let remote = super::open_remote(ctx, remote.as_deref())?;
    let reporter = crate::cli::reporters::for_transfers(out);
    let report = remote::pull(&remote, &ctx.store, &options, reporter.as_ref())?;
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
            "{} {}: {} files downloaded ({}), {} linked{latest}",
            run.state,
            run.reference,
            run.downloaded_files,
            human_size(run.downloaded_bytes),
            run.linked_files
        ))?;
    }
    Ok(ExitCode::Success)
}
