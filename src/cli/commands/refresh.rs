use std::path::PathBuf;

use anyhow::Result;
use artifactctl::ops::refresh;
use artifactctl::policy::pipeline::StepStatus;
use artifactctl::store::metadata::RunStatus;
use artifactctl::store::refs::Namespace;
use artifactctl::ExitCode;

use crate::cli::commands::key_value;
use crate::cli::printer::{Align, Printer, Table};
use crate::cli::reporters;
use crate::cli::settings::{Context, RefreshSettings};

/// Re-run the dataset and model pipeline of [refresh] into a new raw run
///
/// Each step runs with `sh -c` in the project root and writes its outputs to
/// $ARTIFACTCTL_STEP_DIR (<run>/<step>/); its log goes to <run>/logs/<step>.log.
/// A step whose command, environment, deps and needed outputs are unchanged
/// since the newest complete refresh run is reused from it, without copying
/// bytes, once its outputs there are checked (a damaged run is never
/// reused). When nothing changed, refresh is up to date with that run and
/// writes nothing. A failed or interrupted refresh is kept for debugging and
/// never becomes latest. Prints the run's ref on stdout. See docs/refresh.md.
///
/// Examples:
///   artifactctl refresh                          # datasets, then every model
///   artifactctl refresh --dry-run                # what would run, be reused, and why
///   artifactctl refresh --datasets-only
///   artifactctl refresh --models-only            # against the newest refresh run's datasets
///   artifactctl refresh --verify-reuse           # re-hash what is reused first
///   artifactctl refresh --skip training-data --jobs 4 --param seq_length=60
///   artifactctl refresh --dataset training_data/my_dataset.joblib --json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment, allow_negative_numbers = true)]
pub struct Args {
    /// Run only the steps of group "datasets"
    #[arg(long, conflicts_with = "models_only")]
    pub datasets_only: bool,
    /// Run the models against the dataset outputs of the latest complete run
    #[arg(long)]
    pub models_only: bool,
    /// Leave a step out, repeatable (its outputs are taken from the latest complete run when others need them)
    #[arg(long, value_name = "STEP")]
    pub skip: Vec<String>,
    /// Run only this step, repeatable
    #[arg(long, value_name = "STEP")]
    pub only: Vec<String>,
    /// A file or folder to use in place of the generated dataset (steps read $ARTIFACTCTL_DATASET)
    #[arg(long, value_name = "PATH")]
    pub dataset: Option<PathBuf>,
    /// Print the plan (which steps run, which are reused, and why) and stop
    #[arg(long)]
    pub dry_run: bool,
    /// Run every selected step, reusing nothing
    #[arg(long)]
    pub force: bool,
    /// Re-hash every output of the base run before reusing it, instead of
    /// trusting files whose size, inode and modification time are unchanged
    #[arg(long)]
    pub verify_reuse: bool,
    /// Publish a run of reused outputs even when nothing changed (by default
    /// an up-to-date refresh writes nothing)
    #[arg(long)]
    pub publish_unchanged: bool,
    /// After a failure, go on with the steps that do not depend on it
    #[arg(long)]
    pub keep_going: bool,
    /// Steps run at once
    #[arg(long, short = 'j', default_value_t = 1, value_name = "N", value_parser = super::jobs)]
    pub jobs: u16,
    /// A parameter over [refresh.params], repeatable; numbers and true/false are typed
    #[arg(long = "param", value_name = "K=V", value_parser = key_value)]
    pub params: Vec<(String, String)>,
    /// Namespace of the new run, e.g. bondtrader
    #[arg(long, short = 'n', value_name = "NS", value_parser = Namespace::parse, default_value = "")]
    pub namespace: Namespace,
    /// Run id [default: the start time, YYYYMMDD_HHMMSS in UTC]
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Print {"schema_version":1,"run","status","steps":[...]}
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let RefreshSettings {
        options,
        dry_run,
        json,
    } = RefreshSettings::resolve(args, ctx, out.quiet)?;
    if dry_run {
        let plan = refresh::plan(&ctx.store, &options)?;
        if json {
            out.json(
                &serde_json::json!({"dry_run": true, "base": plan.base, "steps": plan.steps}),
            )?;
            return Ok(ExitCode::Success);
        }
        out.status(&match &plan.base {
            Some(base) => format!("plan (compared with {base}):"),
            None => "plan (no earlier complete run to reuse from):".into(),
        });
        let mut table = Table::new(&[
            ("ACTION", Align::Left),
            ("STEP", Align::Left),
            ("WHY", Align::Left),
        ]);
        for step in &plan.steps {
            let action = match (step.action, &step.reused_from) {
                ("reuse", Some(from)) => format!("reused from {from}"),
                ("carry", Some(from)) => format!("taken from {from}"),
                (action, _) => action.to_string(),
            };
            table.row(vec![action, step.name.clone(), step.reason.clone()]);
        }
        out.text(&table.render())?;
        return Ok(ExitCode::Success);
    }

    let reporter = reporters::for_steps(out);
    let refreshed = refresh::refresh(&ctx.store, &options, &reporter, &reporter)?;
    drop(reporter);
    for warning in &refreshed.warnings {
        out.warn(warning);
    }
    let reference = refreshed.location.reference();
    // The workspace paths show the run's outputs (seed 000's application
    // loads from trained_models/): after a complete refresh, and when up to
    // date (so `clear --force && refresh` brings them back at once).
    let checked_out = if refreshed.status == RunStatus::Complete {
        checkout_workspaces(ctx, out, &refreshed)
    } else {
        None
    };
    let placed = checked_out.as_ref().map(|c| &c.placed);
    if refreshed.up_to_date {
        if json {
            out.json(&serde_json::json!({
                "run": reference,
                "status": "up_to_date",
                "steps": refreshed.steps,
                "checked_out": placed,
            }))?;
        } else {
            out.line(&reference)?;
        }
        out.status(&format!(
            "up to date with {reference}: nothing changed, nothing written (--force runs every step, --publish-unchanged publishes a new run anyway)"
        ));
        return Ok(ExitCode::Success);
    }
    if json {
        out.json(&serde_json::json!({
            "run": reference,
            "status": refreshed.status,
            "steps": refreshed.steps,
            "checked_out": placed,
        }))?;
    } else {
        out.line(&reference)?;
    }
    let count = |s: StepStatus| refreshed.steps.iter().filter(|o| o.status == s).count();
    out.status(&format!(
        "refresh {reference} {}: {} ran, {} reused, {} skipped, {} failed{}",
        refreshed.status.as_str(),
        count(StepStatus::Ran),
        count(StepStatus::Reused),
        count(StepStatus::Skipped),
        count(StepStatus::Failed),
        if refreshed.became_latest {
            ", now latest"
        } else {
            ""
        },
    ));
    for step in &refreshed.steps {
        match step.status {
            StepStatus::Failed => out.status(&format!(
                "  {} failed{}: see {}",
                step.name,
                step.exit_code
                    .map(|c| format!(" (exit {c})"))
                    .unwrap_or_default(),
                refreshed
                    .location
                    .path
                    .join("logs")
                    .join(format!("{}.log", step.name))
                    .display()
            )),
            StepStatus::Skipped => out.detail(&format!("  {} skipped: {}", step.name, step.reason)),
            _ => out.detail(&format!(
                "  {} {}: {}",
                step.name,
                step.status.as_str(),
                step.reason
            )),
        }
    }
    Ok(match refreshed.status {
        RunStatus::Complete => ExitCode::Success,
        RunStatus::Interrupted => ExitCode::Interrupted,
        _ => ExitCode::Failure,
    })
}

/// Check out the run into the steps' workspace paths, if any step has one.
/// A failure is a warning: the run itself is published.
fn checkout_workspaces(
    ctx: &Context,
    out: &Printer,
    refreshed: &refresh::Refreshed,
) -> Option<artifactctl::ops::checkout::Checkout> {
    let workspaces = crate::cli::settings::workspaces(&ctx.config);
    if workspaces.is_empty() {
        return None;
    }
    let options = artifactctl::ops::checkout::CheckoutOptions {
        reference: artifactctl::store::refs::RunRef::parse(&refreshed.location.qualified()).ok()?,
        project_root: ctx.invocation.root.clone(),
        workspaces,
        to: None,
    };
    match artifactctl::ops::checkout::checkout(&ctx.store, &options) {
        Ok(done) => {
            let _ = super::checkout::report(out, &done, false);
            Some(done)
        }
        Err(e) => {
            out.warn(&format!(
                "the run is published, but its checkout failed: {e:#}"
            ));
            None
        }
    }
}
