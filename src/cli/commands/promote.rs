use std::path::PathBuf;

use anyhow::Result;
use artifactctl::ops::promote::{
    self, ApprovalMethod, ProductionOptions, Promoted, ValidatedOptions,
};
use artifactctl::policy::gates::{GateResult, Outcome};
use artifactctl::store::refs::{RunRef, Stage};
use artifactctl::ExitCode;
use serde_json::json;

use crate::cli::printer::{human_number, human_size, plural, Printer};
use crate::cli::prompt;
use crate::cli::reporters;
use crate::cli::settings::{Context, PromoteSettings};

/// Promote a raw run to validated, or a validated artifact to production
///
/// Without --to, REF goes to the next stage: raw -> validated -> production.
///
/// To validated: a run with a checkpoints/ folder gives one checkpoint
/// (--checkpoint, default [promote.validated] checkpoint) as model.<ext>;
/// a run without one (a refresh run, a seed 002 run, a seed 003 version) is
/// promoted whole, minus [promote.validated] exclude (logs/). --step NAME
/// and --file PATH pick parts instead. Companions travel: the files
/// [promote.validated] include names (config, metrics, README, manifest),
/// and the --results file under validation/. Integrity comes first (verify's
/// checks on the source: hashes, files, metadata, feature rules), then the
/// gates of [promote.validated] require against the run's metrics merged
/// with the results; any problem writes nothing (exit 1). The default id is
/// <run-id>_<checkpoint|step>_validated, or <run-id>_validated for a whole run.
///
/// To production: a validated artifact becomes production/[ns/]<version>,
/// with the deployment config copied in, an entry in production/CHANGELOG.md
/// and the journal, and production latest moved to it. The version must be
/// semver, new, and above the current latest (unless --allow-downgrade).
/// Approval: a confirmation on a terminal, --approve in scripts.
///
/// Promoted artifacts are read-only, share bytes with their source where the
/// filesystem allows (hard links, reflinks), and are published with a
/// no-replace rename: an existing id or version is never overwritten.
///
/// With --remote NAME, REF names a run or release already on that remote
/// (pushed), and promote moves the remote's latest of REF's stage to it, by
/// compare-and-swap and only forward (`rollback --remote` moves it back);
/// production needs --approve. Nothing local changes.
///
/// Examples:
///   artifactctl promote gru/BTCEUR/20261123_101500 --to validated --checkpoint epoch_70 \
///       --results validation/test_results.json
///   artifactctl promote v5_5_20251124 --to validated --dry-run
///   artifactctl promote latest --step TailRiskAnalyzer
///   artifactctl promote latest --file TailRiskAnalyzer/TailRiskAnalyzer.joblib --to validated
///   artifactctl promote validated/gru/BTCEUR/20261123_101500_epoch_70_validated \
///       --to production --version 1.0.0 --deploy-config deploy/ --notes "first release" --approve
///   artifactctl promote production/gru/BTCEUR/1.1.0 --remote origin --approve
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment, disable_version_flag = true)]
pub struct Args {
    /// The run to promote: a raw run (--to validated) or a validated artifact (--to production)
    #[arg(value_name = "REF")]
    pub reference: RunRef,
    /// Target stage: validated or production [default: the stage after REF's]
    #[arg(long, value_name = "STAGE", value_parser = parse_target)]
    pub to: Option<Stage>,
    /// Checkpoint to promote (epoch_70, best, latest, a file name or a path in the run) [default: [promote.validated] checkpoint]
    #[arg(long, value_name = "NAME")]
    pub checkpoint: Option<String>,
    /// Promote only this file or folder of the run (relative to it; repeatable)
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<String>,
    /// Promote only this step's folder of the run (one model of a refresh run)
    #[arg(long, value_name = "NAME")]
    pub step: Option<String>,
    /// JSON file of validation results: merged over the metrics for gates, stored under validation/
    #[arg(long, value_name = "FILE")]
    pub results: Option<PathBuf>,
    /// Id of the validated artifact [default: <run-id>_<checkpoint|step>_validated, <run-id>_validated for a whole run]
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// Release version (semver X.Y.Z), required with --to production
    #[arg(long = "version", id = "release_version", value_name = "X.Y.Z")]
    pub release_version: Option<String>,
    /// Approve the production release without a prompt (for scripts)
    #[arg(long)]
    pub approve: bool,
    /// Folder (or file) of deployment configuration, copied into deployment/
    #[arg(long, value_name = "DIR")]
    pub deploy_config: Option<PathBuf>,
    /// Release notes for the CHANGELOG and the metadata
    #[arg(long, value_name = "TEXT")]
    pub notes: Option<String>,
    /// Allow a version that is not above the current production latest
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Check everything and print the gates, but write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Move this remote's latest of REF's stage to REF (a run on the remote)
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
    /// Print {"schema_version":1,"ref","path","gates",...}
    #[arg(long)]
    pub json: bool,
}

fn parse_target(text: &str) -> Result<Stage, String> {
    match text.parse::<Stage>() {
        Ok(Stage::Raw) | Err(_) => Err("use validated or production".into()),
        Ok(stage) => Ok(stage),
    }
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    match PromoteSettings::resolve(args, ctx)? {
        PromoteSettings::Validated {
            options,
            dry_run,
            json,
        } => to_validated(ctx, out, options, dry_run, json),
        PromoteSettings::Production {
            options,
            approve,
            dry_run,
            json,
        } => to_production(ctx, out, options, approve, dry_run, json),
        PromoteSettings::Remote {
            remote,
            options,
            json,
        } => {
            let remote = super::open_remote(ctx, Some(&remote))?;
            let moved = artifactctl::remote::move_latest(&remote, &options)?;
            super::rollback::report_moved(out, &moved, options.dry_run, json)
        }
    }
}

fn to_validated(
    ctx: &Context,
    out: &Printer,
    options: ValidatedOptions,
    dry_run: bool,
    json: bool,
) -> Result<ExitCode> {
    let checking = reporters::for_output(out);
    let plan = promote::plan_validated(&ctx.store, options, checking.as_ref())?;
    for warning in &plan.warnings {
        out.warn(warning);
    }
    print_gates(out, &plan.gates);
    out.status(&format!(
        "{} {} -> {}",
        plan.source.reference,
        plan.describe(),
        plan.target.reference()
    ));
    if dry_run {
        return finish_dry_run(
            out,
            json,
            &plan.target.reference(),
            &plan.gates,
            plan.files.len(),
        );
    }
    let reporter = reporters::for_output(out);
    let gates = plan.gates.clone();
    let promoted = promote::promote_validated(&ctx.store, plan, reporter.as_ref())?;
    report(out, json, &promoted, &gates, None)
}

fn to_production(
    ctx: &Context,
    out: &Printer,
    options: ProductionOptions,
    approve: bool,
    dry_run: bool,
    json: bool,
) -> Result<ExitCode> {
    let plan = promote::plan_production(&ctx.store, options)?;
    for warning in &plan.warnings {
        out.warn(warning);
    }
    print_gates(out, &plan.gates);
    out.status(&format!(
        "{} -> {} (production latest now: {})",
        plan.source.reference,
        plan.target.reference(),
        plan.current_latest.as_deref().unwrap_or("none")
    ));
    if dry_run {
        return finish_dry_run(
            out,
            json,
            &plan.target.reference(),
            &plan.gates,
            plan.files.len(),
        );
    }
    let approval = if !promote::all_passed(&plan.gates) {
        // The library refuses with the list of failed gates; do not ask first.
        None
    } else if approve {
        Some(ApprovalMethod::Flag)
    } else {
        let question = format!(
            "release {} as {}?",
            plan.source.reference,
            plan.target.reference()
        );
        if !prompt::confirm(out, &question, false, "--approve")? {
            out.status("not approved; nothing was written");
            return Ok(ExitCode::Failure);
        }
        Some(ApprovalMethod::Interactive)
    };
    let reporter = reporters::for_output(out);
    let (gates, version) = (plan.gates.clone(), plan.version.to_string());
    let promoted = promote::promote_production(&ctx.store, plan, approval, reporter.as_ref())?;
    report(out, json, &promoted, &gates, Some(version))
}

fn print_gates(out: &Printer, gates: &[GateResult]) {
    for g in gates {
        let word = match g.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Missing => "MISSING",
        };
        if g.metric == promote::INTEGRITY {
            // The gate line carries the problem itself.
            out.status(&format!("  {word} {}", g.gate));
            continue;
        }
        let actual = match g.actual {
            Some(v) => format!("{} = {}", g.metric, human_number(v)),
            None => format!(
                "{} is in neither the run's metrics nor the results",
                g.metric
            ),
        };
        out.status(&format!("  {word:<7} {}  ({actual})", g.gate));
    }
}

fn finish_dry_run(
    out: &Printer,
    json: bool,
    target: &str,
    gates: &[GateResult],
    files: usize,
) -> Result<ExitCode> {
    let passed = promote::all_passed(gates);
    if json {
        out.json(&json!({"ref": target, "dry_run": true, "gates_passed": passed, "gates": gates, "files": files}))?;
    }
    out.status(&format!(
        "dry run: would write {target} ({files} files){}; nothing was written",
        if passed { "" } else { ", but gates fail" }
    ));
    Ok(if passed {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

fn report(
    out: &Printer,
    json: bool,
    promoted: &Promoted,
    gates: &[GateResult],
    version: Option<String>,
) -> Result<ExitCode> {
    let reference = promoted.location.reference();
    if json {
        out.json(&json!({
            "ref": reference,
            "path": promoted.location.path,
            "stage": promoted.location.stage,
            "version": version,
            "became_latest": promoted.became_latest,
            "total_size": promoted.total_size,
            "file_count": promoted.file_count,
            "linked_bytes": promoted.linked_bytes,
            "gates": gates,
        }))?;
    } else {
        out.line(&reference)?;
    }
    out.status(&format!(
        "promoted to {reference}: {} in {} ({} shared with the source), read-only{}",
        human_size(promoted.total_size),
        plural(promoted.file_count, "file", "files"),
        human_size(promoted.linked_bytes),
        if promoted.became_latest {
            ", now latest"
        } else {
            ""
        }
    ));
    Ok(ExitCode::Success)
}
