use anyhow::Result;
use artifactctl::ops::cleanup::{self, Action, Plan};
use artifactctl::policy::retention;
use artifactctl::store::refs::{Namespace, Stage};
use artifactctl::ExitCode;
use chrono::Duration;
use rayon::prelude::*;
use serde::Serialize;

use crate::cli::printer::{human_size, plural, Align, Printer, Table, Tone};
use crate::cli::prompt;
use crate::cli::reporters;
use crate::cli::settings::{CleanupMode, CleanupSettings, Context};

/// Remove old runs by a retention policy, after showing the plan
///
/// A run is kept if ANY rule keeps it (as restic's `forget`), in each
/// namespace on its own: --keep 5 --keep-daily 7 keeps the 5 newest runs and
/// the newest run of each of the last 7 days that have runs. Without
/// retention flags the policy comes from [cleanup] in artifactctl.toml; with
/// no policy at all, cleanup refuses. Whatever the policy, these stay: the
/// run latest points to, runs a promoted artifact came from, pinned runs,
/// and production (unless --stage production --unsafe-allow-production).
/// Failed and interrupted runs go once older than --failed-older-than, and
/// folders left by crashed writers go too. Every run is listed with KEEP or
/// REMOVE and why, then the bytes freed; a terminal is asked to confirm,
/// anything else needs --yes. Each run is unlisted with one rename before
/// its files go, so an interrupted cleanup never leaves a half-removed run.
///
/// With --remote NAME, cleanup works on that remote, without a lock: the
/// same policy and protections (latest, lineage, pinned as pushed,
/// production) remove run records, then content no record references is
/// marked with the time and deleted by a later cleanup once it has stayed
/// unreferenced for [remote] gc_grace (24h): a push in flight is never
/// broken. Without a policy it only collects; without --yes it only reports.
///
/// Examples:
///   artifactctl cleanup --keep 5 --dry-run
///   artifactctl --store backend/models cleanup --keep 5 --yes
///   artifactctl cleanup gru --keep-daily 7 --keep-weekly 4 --keep-monthly 6
///   artifactctl cleanup --keep-within 14d --max-size 50GB --json --yes
///   artifactctl cleanup --remote origin --yes
///   artifactctl cleanup --remote origin gru --keep 10 --yes
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment, allow_negative_numbers = true)]
pub struct Args {
    /// Only runs in this namespace or below it
    #[arg(value_name = "NS", value_parser = Namespace::parse)]
    pub namespace: Option<Namespace>,
    /// raw, validated or production
    #[arg(long, default_value = "raw", value_name = "STAGE")]
    pub stage: Stage,
    /// Keep the N newest complete runs of each namespace
    #[arg(long, value_name = "N", value_parser = super::count)]
    pub keep: Option<usize>,
    /// Keep runs created within DUR before now (7d, 12h, 2w)
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub keep_within: Option<Duration>,
    /// Keep the newest run of each of the last N days that have runs
    #[arg(long, value_name = "N", value_parser = super::count)]
    pub keep_daily: Option<usize>,
    /// Keep the newest run of each of the last N ISO weeks that have runs
    #[arg(long, value_name = "N", value_parser = super::count)]
    pub keep_weekly: Option<usize>,
    /// Keep the newest run of each of the last N months that have runs
    #[arg(long, value_name = "N", value_parser = super::count)]
    pub keep_monthly: Option<usize>,
    /// Keep the newest runs that fit in SIZE per namespace (50GB, 1.5GiB)
    #[arg(long, value_name = "SIZE", value_parser = size)]
    pub max_size: Option<u64>,
    /// Remove failed and interrupted runs older than DUR [default: [cleanup] failed_older_than, 7d]
    #[arg(long, value_name = "DUR", value_parser = duration)]
    pub failed_older_than: Option<Duration>,
    /// Show the plan and change nothing (no short form: -n is --namespace in every command)
    #[arg(long)]
    pub dry_run: bool,
    /// Remove without asking
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print {"schema_version":1,"dry_run":..,"runs":[..],"freed_bytes":N}
    #[arg(long)]
    pub json: bool,
    /// With --stage production, let production releases be removed
    #[arg(long)]
    pub unsafe_allow_production: bool,
    /// Go ahead even when the policy keeps no run of a namespace
    #[arg(long)]
    pub unsafe_allow_remove_all: bool,
    /// Clean this remote instead: the policy's runs, then unreferenced content (two phases, [remote] gc_grace)
    #[arg(long, value_name = "NAME")]
    pub remote: Option<String>,
}

fn duration(text: &str) -> Result<Duration, String> {
    retention::parse_duration(text)
}

fn size(text: &str) -> Result<u64, String> {
    retention::parse_size(text)
}

#[derive(Serialize)]
struct CleanupJson<'a> {
    dry_run: bool,
    #[serde(flatten)]
    plan: &'a Plan,
}

pub fn run(ctx: &Context, out: &Printer, args: Args) -> Result<ExitCode> {
    let CleanupSettings {
        options: opts,
        dry_run,
        yes,
        json,
    } = match CleanupSettings::resolve(args, ctx)? {
        CleanupMode::Local(settings) => settings,
        CleanupMode::Remote {
            remote,
            options,
            json,
        } => return remote_cleanup(ctx, out, &remote, &options, json),
    };
    if opts.allow_production && opts.stage != Stage::Production {
        out.warn("--unsafe-allow-production only applies with --stage production; production stays protected");
    }
    let plan = cleanup::plan(&ctx.store, &opts)?;
    for warning in &plan.warnings {
        out.warn(warning);
    }
    let removals = plan.to_remove().count();
    if !json {
        print_plan(out, &plan)?;
    }
    if let Some(refusal) = plan.refusal() {
        if json {
            out.json(&CleanupJson {
                dry_run,
                plan: &plan,
            })?;
        }
        return Err(refusal.into());
    }
    if dry_run || removals == 0 {
        if json {
            out.json(&CleanupJson {
                dry_run,
                plan: &plan,
            })?;
        }
        if removals == 0 {
            out.status("nothing to remove");
        } else {
            out.status("dry run: nothing was removed");
        }
        // The process ends here: freeing a plan of 100,000 runs one
        // allocation at a time would only delay the exit.
        std::mem::forget(plan);
        return Ok(ExitCode::Success);
    }
    let question = format!(
        "remove {removals} and keep {}, freeing {}?",
        plan.runs.len() - removals,
        human_size(plan.freed_bytes)
    );
    if !prompt::confirm(out, &question, yes, "--yes")? {
        out.status("declined: nothing removed");
        return Ok(ExitCode::DECLINED);
    }
    let reporter = reporters::for_output(out);
    let outcome = cleanup::execute(&ctx.store, plan, &opts, reporter.as_ref())?;
    if json {
        out.json(&CleanupJson {
            dry_run: false,
            plan: &outcome.plan,
        })?;
    }
    for (reference, why) in &outcome.kept_since_planning {
        out.warn(&format!(
            "kept {reference}: it became protected since planning ({why})"
        ));
    }
    for (reference, problem) in &outcome.failed {
        out.warn(&format!("{reference}: {problem}"));
    }
    let removed = outcome.plan.to_remove().count() - outcome.failed.len();
    out.status(&format!(
        "removed {}, freed {}",
        plural(
            removed as u64,
            "run or leftover folder",
            "runs and leftover folders"
        ),
        human_size(outcome.plan.freed_bytes)
    ));
    Ok(if outcome.failed.is_empty() {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

/// The plan as a table on stdout (it is the command's data), then the total.
fn print_plan(out: &Printer, plan: &Plan) -> Result<()> {
    if plan.runs.is_empty() {
        return Ok(());
    }
    let mut table = Table::new(&[
        ("ACTION", Align::Left),
        ("REF", Align::Left),
        ("SIZE", Align::Right),
        ("WHY", Align::Left),
    ]);
    let cells: Vec<Vec<String>> = plan
        .runs
        .par_iter()
        .map(|row| {
            let action = match row.action {
                Action::Keep => out.paint_out(Tone::Good, "KEEP"),
                Action::Remove => out.paint_out(Tone::Bad, "REMOVE"),
            };
            vec![
                action,
                row.reference.clone(),
                human_size(row.size_bytes),
                row.reasons.join("; "),
            ]
        })
        .collect();
    for row in cells {
        table.row(row);
    }
    out.text(&table.render())?;
    let kept = plan.runs.len() - plan.to_remove().count();
    out.line(&format!(
        "policy: {}; keep {kept}, remove {}, frees {}",
        plan.policy,
        plan.to_remove().count(),
        human_size(plan.freed_bytes)
    ))?;
    Ok(())
}

fn remote_cleanup(
    ctx: &Context,
    out: &Printer,
    name: &str,
    options: &artifactctl::remote::RemoteCleanup,
    json: bool,
) -> Result<ExitCode> {
    let remote = super::open_remote(ctx, Some(name))?;
    let report = artifactctl::remote::cleanup(&remote, options)?;
    for warning in &report.plan.warnings {
        out.warn(warning);
    }
    if json {
        out.json(&report)?;
    } else if options.retention.is_some() {
        print_plan(out, &report.plan)?;
    }
    if let Some(refusal) = report.plan.refusal() {
        return Err(refusal.into());
    }
    for (reference, why) in &report.kept_since_planning {
        out.warn(&format!(
            "kept {reference}: it became protected since planning ({why})"
        ));
    }
    let gc = &report.gc;
    if !json {
        let verb = if gc.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        out.line(&format!(
            "{} blobs: {} referenced, {} unreferenced and waiting out the grace ({} newly marked), {verb} {} ({})",
            gc.blobs,
            gc.referenced,
            gc.waiting,
            gc.newly_marked,
            gc.deleted,
            human_size(gc.deleted_bytes)
        ))?;
    }
    let removals = report.plan.to_remove().count() as u64;
    if gc.dry_run {
        out.status("nothing was changed; pass --yes to remove and collect");
    } else if options.retention.is_some() {
        out.status(&format!(
            "removed {} from remote '{}'; their content goes once unreferenced for the grace",
            plural(removals, "run", "runs"),
            remote.name
        ));
    }
    Ok(ExitCode::Success)
}
