//! `cleanup`: plan which runs a retention policy removes, then remove them
//! through the removal engine ([`crate::ops::removal`]) that `delete` uses.
//!
//! Each namespace (seed 002's symbols, seed 003's flat folder) is judged on
//! its own. Complete runs go through the policy ([`crate::policy::retention`]);
//! failed and interrupted runs go once older than `failed_older_than`; runs
//! whose metadata cannot be read stay. On top, whatever the policy says, the
//! protections stay: latest, pinned, lineage sources, production.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::config::CleanupConfig;
use crate::error::ArtifactError;
use crate::fsx;
use crate::ops;
use crate::ops::removal::{self, Guard, Protection, Request};
use crate::policy::retention::{self, Candidate, Policy};
use crate::progress::Progress;
use crate::store::journal;
use crate::store::listing::RunChecks;
use crate::store::metadata::RunStatus;
use crate::store::refs::{Namespace, Stage};
use crate::store::{ReadOptions, RunInfo, Store};
use rayon::prelude::*;

#[derive(Debug, Clone)]
pub struct CleanupOptions {
    /// Runs at or below this namespace.
    pub namespace: Namespace,
    pub stage: Stage,
    pub policy: Policy,
    /// Failed and interrupted runs older than this go.
    pub failed_older_than: Duration,
    /// `--unsafe-allow-production`; honoured only with `stage` production.
    pub allow_production: bool,
    /// `--unsafe-allow-remove-all`.
    pub allow_remove_all: bool,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Keep,
    Remove,
}

/// What a plan row stands for.
#[derive(Debug, Clone)]
pub enum Subject {
    Run(Box<RunInfo>),
    /// A staging or trash folder of a writer that died.
    Leftover(PathBuf),
}

/// One row of the plan; serializes as the JSON row.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedRun {
    #[serde(rename = "ref")]
    pub reference: String,
    pub action: Action,
    pub reasons: Vec<String>,
    pub size_bytes: u64,
    #[serde(skip)]
    pub subject: Subject,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub runs: Vec<PlannedRun>,
    pub freed_bytes: u64,
    /// Namespaces where the policy itself keeps no run (only protections
    /// would): refused unless `allow_remove_all`.
    #[serde(skip)]
    pub remove_all: Vec<String>,
    /// The policy in words, for the plan's heading.
    #[serde(skip)]
    pub policy: String,
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl Plan {
    pub fn to_remove(&self) -> impl Iterator<Item = &PlannedRun> {
        self.runs.iter().filter(|r| r.action == Action::Remove)
    }

    /// The refusal the plan earns, if it would empty a namespace.
    pub fn refusal(&self) -> Option<ArtifactError> {
        (!self.remove_all.is_empty()).then(|| {
            ArtifactError::refused(format!(
                "the policy ({}) keeps no run of {}: only the protections would save anything; \
                 check the policy, or pass --unsafe-allow-remove-all if that is really meant",
                self.policy,
                self.remove_all.join(", ")
            ))
        })
    }
}

/// What execution did, and the plan updated with it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub plan: Plan,
    /// Runs that could not be removed, with why.
    pub failed: Vec<(String, String)>,
    /// Runs found protected under the lock (pinned or promoted since
    /// planning), with why; the plan shows them as kept.
    pub kept_since_planning: Vec<(String, String)>,
}

/// The policy `[cleanup]` gives, for when no retention flag is passed.
pub fn policy_from_config(config: &CleanupConfig) -> Result<Policy> {
    let within = optional(
        &config.keep_within,
        retention::parse_duration,
        "keep_within",
    )?;
    let max_size = optional(&config.max_size, retention::parse_size, "max_size")?;
    Ok(Policy {
        keep_last: config.keep as usize,
        keep_within: within,
        keep_daily: config.keep_daily as usize,
        keep_weekly: config.keep_weekly as usize,
        keep_monthly: config.keep_monthly as usize,
        max_size,
    })
}

/// `[cleanup] failed_older_than`, parsed.
pub fn failed_older_than_from_config(config: &CleanupConfig) -> Result<Duration> {
    retention::parse_duration(&config.failed_older_than)
        .map_err(|e| config_error("failed_older_than", &e))
}

fn optional<T>(text: &str, parse: fn(&str) -> Result<T, String>, key: &str) -> Result<Option<T>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    parse(text).map(Some).map_err(|e| config_error(key, &e))
}

fn config_error(key: &str, e: &str) -> anyhow::Error {
    ArtifactError::usage(format!(
        "[cleanup] {key} in artifactctl.toml (or ARTIFACTCTL_CLEANUP_{}): {e}",
        key.to_uppercase()
    ))
    .into()
}

/// The plan for `runs` (all in scope: `opts.stage`, at or below
/// `opts.namespace`, `latest` marked), each namespace on its own, with the
/// protections `guard` gives. A remote's cleanup plans its runs with this
/// too, so both apply the same policy and protections.
pub fn plan_runs(runs: Vec<RunInfo>, guard: &Guard, opts: &CleanupOptions) -> Plan {
    let count = runs.len();
    let mut groups: BTreeMap<(Stage, Namespace), Vec<RunInfo>> = BTreeMap::new();
    for run in runs {
        groups
            .entry((run.stage, run.location.namespace.clone()))
            .or_default()
            .push(run);
    }
    let mut plan = Plan {
        runs: Vec::with_capacity(count),
        freed_bytes: 0,
        remove_all: Vec::new(),
        policy: opts.policy.describe(),
        warnings: Vec::new(),
    };
    for ((stage, ns), runs) in groups {
        plan_namespace(stage, &ns, runs, guard, opts, &mut plan);
    }
    plan.freed_bytes = plan.to_remove().map(|r| r.size_bytes).sum();
    plan
}

/// Refuse an empty policy: bad input, not a refusal, since the command line
/// (or config) lacks what cleanup needs and nothing was at risk.
pub fn require_policy(policy: &Policy) -> Result<()> {
    if policy.is_empty() {
        return Err(ArtifactError::usage(
            "no retention policy: pass --keep N, --keep-within DUR, --keep-daily/--keep-weekly/--keep-monthly N or --max-size SIZE, \
             or set a default in [cleanup] of artifactctl.toml; cleanup never guesses what to delete",
        )
        .into());
    }
    Ok(())
}

/// Decide, for every run in scope, KEEP or REMOVE and why. Reads only.
pub fn plan(store: &Store, opts: &CleanupOptions) -> Result<Plan> {
    require_policy(&opts.policy)?;
    store.stage_dir(opts.stage)?;
    let read = ReadOptions::new(&[], false)?;
    // Every run is checked against its metadata.json: the plan decides
    // what to remove (and execution re-reads each run under the lock).
    let listing = store.listing(&[opts.stage], &opts.namespace, &read, RunChecks::Always);
    let allow_production = opts.allow_production && opts.stage == Stage::Production;
    let guard = Guard::for_listing(store, allow_production, &listing);
    let runs = listing.into_infos_without_values();
    let mut plan = plan_runs(runs, &guard, opts);
    for leftover in fsx::find_leftovers(store.dir()) {
        let reference = leftover
            .path
            .strip_prefix(store.dir())
            .unwrap_or(&leftover.path)
            .display()
            .to_string();
        plan.runs.push(PlannedRun {
            reference,
            action: Action::Remove,
            reasons: vec![format!(
                "{} folder of a writer that is gone, {} old",
                leftover.kind,
                retention::format_duration(
                    Duration::from_std(leftover.age).unwrap_or_else(|_| Duration::zero())
                )
            )],
            size_bytes: tree_size(&leftover.path),
            subject: Subject::Leftover(leftover.path),
        });
    }
    plan.freed_bytes = plan.to_remove().map(|r| r.size_bytes).sum();
    Ok(plan)
}

fn plan_namespace(
    stage: Stage,
    ns: &Namespace,
    mut runs: Vec<RunInfo>,
    guard: &Guard,
    opts: &CleanupOptions,
    plan: &mut Plan,
) {
    runs.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let mut protections: Vec<Vec<Protection>> = runs.iter().map(|r| guard.protections(r)).collect();
    let is_candidate = |r: &RunInfo| r.status == RunStatus::Complete;
    // `latest` is missing or unusable: protect what it would resolve to.
    let latest = runs.iter().position(|r| r.latest).or_else(|| {
        runs.iter()
            .position(|r| is_candidate(r) && r.problems.is_empty())
    });
    if let Some(i) = latest {
        protections[i].push(Protection::Latest);
    }

    let complete: Vec<usize> = (0..runs.len())
        .filter(|&i| is_candidate(&runs[i]))
        .collect();
    let candidates: Vec<Candidate> = complete
        .iter()
        .map(|&i| Candidate {
            created_at: runs[i].created_at.unwrap_or(DateTime::<Utc>::MIN_UTC),
            id: runs[i].id.clone(),
            size_bytes: runs[i].size_bytes,
            protected: !protections[i].is_empty(),
        })
        .collect();
    let verdicts = retention::apply(&opts.policy, &candidates, opts.now);
    let mut verdict_of = vec![None; runs.len()];
    for (k, &i) in complete.iter().enumerate() {
        verdict_of[i] = Some(&verdicts[k]);
    }

    // Each run's row is decided on its own: in parallel (a namespace may
    // hold 100,000 runs), then gathered in order.
    let policy = plan.policy.as_str();
    let no_rule = format!("no rule of the policy keeps it ({policy})");
    let limit = retention::format_duration(opts.failed_older_than);
    let rows: Vec<(PlannedRun, bool)> = runs
        .into_par_iter()
        .zip(protections.into_par_iter())
        .zip(verdict_of.into_par_iter())
        .map(|((run, protections), verdict)| {
            let mut reasons: Vec<String> = protections.iter().map(Protection::reason).collect();
            let mut rule_keeps = false;
            let mut why_remove = Vec::new();
            match verdict {
                Some(verdict) => {
                    reasons.extend(verdict.kept_by.iter().map(|k| k.describe()));
                    rule_keeps = verdict.keeps();
                    if verdict.over_max_size {
                        why_remove.push("over --max-size: among the oldest that do not fit".into());
                    } else {
                        why_remove.push(no_rule.clone());
                    }
                }
                None if run.status == RunStatus::Unknown => {}
                None => {
                    let age = run.created_at.map(|t| opts.now - t);
                    if age.is_some_and(|a| a > opts.failed_older_than) {
                        why_remove.push(format!("{} run older than {limit}", run.status.as_str()));
                    } else {
                        rule_keeps = true;
                        reasons.push(format!(
                            "{} run younger than {limit} (--failed-older-than)",
                            run.status.as_str()
                        ));
                    }
                }
            }
            let action = if reasons.is_empty() {
                reasons = why_remove;
                Action::Remove
            } else {
                Action::Keep
            };
            let row = PlannedRun {
                reference: run.reference.clone(),
                action,
                reasons,
                size_bytes: run.size_bytes,
                subject: Subject::Run(Box::new(run)),
            };
            (row, rule_keeps)
        })
        .collect();
    let mut rules_keep_some = false;
    let mut removes_some = false;
    let mut kept_bytes = 0u64;
    for (row, rule_keeps) in rows {
        rules_keep_some |= rule_keeps;
        match row.action {
            Action::Remove => removes_some = true,
            Action::Keep => kept_bytes += row.size_bytes,
        }
        plan.runs.push(row);
    }
    let place = if ns.is_root() {
        format!("{stage}/")
    } else {
        format!("{stage}/{ns}")
    };
    if removes_some && !rules_keep_some && !opts.allow_remove_all {
        plan.remove_all.push(place.clone());
    }
    if let Some(max) = opts.policy.max_size {
        if kept_bytes > max {
            plan.warnings.push(format!(
                "{place} keeps {} after cleanup, over --max-size {}: the rest is protected or kept by another rule",
                retention::format_size(kept_bytes),
                retention::format_size(max)
            ));
        }
    }
}

/// Carry out `plan`: take the store lock (which finishes what dead writers
/// left, the leftovers of the plan), re-check every run under it, and remove
/// what still may go, journaling each removal.
pub fn execute(
    store: &Store,
    mut plan: Plan,
    opts: &CleanupOptions,
    reporter: &dyn Progress,
) -> Result<Outcome> {
    if let Some(refusal) = plan.refusal() {
        return Err(refusal.into());
    }
    let _lock = ops::lock(store)?;
    let allow_production = opts.allow_production && opts.stage == Stage::Production;
    let guard = Guard::load(store, allow_production);

    let mut requests = Vec::new();
    let mut leftovers = Vec::new();
    for row in plan.runs.iter().filter(|r| r.action == Action::Remove) {
        match &row.subject {
            Subject::Run(run) => requests.push(Request {
                run: (**run).clone(),
                reasons: row.reasons.clone(),
            }),
            Subject::Leftover(path) => leftovers.push((row, path)),
        }
    }
    // Oldest first: an interrupted cleanup has then removed what mattered least.
    requests.sort_by(|a, b| (a.run.created_at, &a.run.id).cmp(&(b.run.created_at, &b.run.id)));
    let mut failed = Vec::new();
    let mut entries = Vec::new();
    for (row, path) in leftovers {
        // `ops::lock` swept it already unless it could not.
        if let Err(e) = fsx::remove_tree(path) {
            failed.push((row.reference.clone(), e.to_string()));
            continue;
        }
        entries.push(
            journal::Entry::new("cleanup", None, None)
                .with("leftover", row.reference.clone())
                .with("size_bytes", row.size_bytes),
        );
    }
    ops::record(store.dir(), &entries)?;

    let report = removal::remove_runs(
        store,
        requests,
        &guard,
        &removal::Options {
            action: "cleanup",
            protect_latest: true,
        },
        reporter,
        &mut |_| Ok(Vec::<(String, Value)>::new()),
    )?;
    let skipped: BTreeMap<String, Protection> = report
        .skipped
        .into_iter()
        .map(|(l, p)| (l.qualified(), p))
        .collect();
    let unremoved: BTreeMap<String, String> = report
        .failed
        .into_iter()
        .map(|(l, e)| (l.qualified(), e))
        .collect();
    let mut kept_since_planning = Vec::new();
    for row in plan.runs.iter_mut() {
        let Subject::Run(run) = &row.subject else {
            continue;
        };
        let key = run.location.qualified();
        if let Some(protection) = skipped.get(&key) {
            row.action = Action::Keep;
            row.reasons = vec![format!("{} (since planning)", protection.reason())];
            kept_since_planning.push((row.reference.clone(), protection.reason()));
        } else if let Some(problem) = unremoved.get(&key) {
            failed.push((row.reference.clone(), problem.clone()));
        }
    }
    // Only what is really gone counts as freed: a run that could not be
    // unlisted, or whose files could not all be removed, frees nothing yet.
    plan.freed_bytes = plan
        .to_remove()
        .filter(|r| {
            !failed
                .iter()
                .any(|(reference, _)| *reference == r.reference)
        })
        .map(|r| r.size_bytes)
        .sum();
    Ok(Outcome {
        plan,
        failed,
        kept_since_planning,
    })
}

fn tree_size(path: &std::path::Path) -> u64 {
    walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_policy_is_empty_by_default_and_parses_when_set() {
        let config = CleanupConfig::default();
        assert!(policy_from_config(&config).unwrap().is_empty());
        assert_eq!(
            failed_older_than_from_config(&config).unwrap(),
            Duration::days(7)
        );
        let config = CleanupConfig {
            keep: 5,
            keep_within: "14d".into(),
            max_size: "50GB".into(),
            ..CleanupConfig::default()
        };
        let policy = policy_from_config(&config).unwrap();
        assert_eq!(policy.keep_last, 5);
        assert_eq!(policy.keep_within, Some(Duration::days(14)));
        assert_eq!(policy.max_size, Some(50_000_000_000));
        let bad = CleanupConfig {
            max_size: "lots".into(),
            ..CleanupConfig::default()
        };
        let err = policy_from_config(&bad).unwrap_err();
        assert!(format!("{err:#}").contains("[cleanup] max_size"));
    }
}
