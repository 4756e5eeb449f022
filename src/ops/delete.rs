//! `delete REF`: remove one run (seed 003's `manage_models.py delete`),
//! through the removal engine that `cleanup` uses, with the same protections.

use anyhow::Result;
use serde_json::Value;

use crate::error::ArtifactError;
use crate::ops;
use crate::ops::removal::{self, Guard, Request};
use crate::progress::Silent;
use crate::store::refs::RunRef;
use crate::store::{ReadOptions, RunInfo, Store};

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// Allow removing a production artifact.
    pub allow_production: bool,
}

#[derive(Debug, Clone)]
pub struct DeletePlan {
    pub run: RunInfo,
    /// Fallback notes from resolving the ref.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Deleted {
    pub run: RunInfo,
    /// Where `latest` points now, when the deleted run was its target.
    pub latest_now: Option<String>,
    pub was_latest: bool,
}

/// Resolve the ref and check every protection; nothing is changed.
pub fn plan(store: &Store, r: &RunRef, opts: &DeleteOptions) -> Result<DeletePlan> {
    let resolved = store.resolve(r)?;
    let read = ReadOptions::new(&[], false)?;
    let run = store.read_run(resolved.location, &read);
    check_protections(store, &run, opts)?;
    Ok(DeletePlan {
        run,
        warnings: resolved.warnings,
    })
}

/// Why `run` must not be removed, if it must not.
pub fn check_protections(store: &Store, run: &RunInfo, opts: &DeleteOptions) -> Result<()> {
    let guard = Guard::load(store, opts.allow_production);
    match guard.protections(run).first() {
        Some(p) => Err(ArtifactError::refused(p.refusal(&run.reference)).into()),
        None => Ok(()),
    }
}

/// Remove the planned run: move `latest` to the newest other complete run
/// if it points here, journal the intent, unlist the run with one rename,
/// journal the removal, then remove its files. `latest` moves first, so a
/// kill at any point never leaves it dangling.
pub fn execute(store: &Store, plan: DeletePlan, opts: &DeleteOptions) -> Result<Deleted> {
    let _lock = ops::lock(store)?;
    // Re-check under the lock: a promotion may have landed since planning.
    let guard = Guard::load(store, opts.allow_production);
    let location = plan.run.location.clone();
    let was_latest = store.latest(location.stage, &location.namespace)?.id()
        == Some(location.id.as_str())
        || plan.run.latest;
    let mut latest_now = None;
    let report = removal::remove_runs(
        store,
        vec![Request {
            run: plan.run.clone(),
            reasons: Vec::new(),
        }],
        &guard,
        &removal::Options {
            action: "delete",
            protect_latest: false,
        },
        &Silent,
        &mut |run| {
            latest_now =
                ops::repoint_latest(store, run.stage, &run.location.namespace, Some(&run.id))?;
            Ok(vec![(
                "latest_now".to_string(),
                Value::from(latest_now.clone()),
            )])
        },
    )?;
    if let Some((_, protection)) = report.skipped.first() {
        return Err(ArtifactError::refused(protection.refusal(&plan.run.reference)).into());
    }
    if let Some((_, problem)) = report.failed.first() {
        return Err(anyhow::anyhow!(
            "cannot remove {}: {problem}",
            location.path.display()
        ));
    }
    if report.removed.is_empty() {
        return Err(ArtifactError::not_found(format!(
            "{} was removed by another process meanwhile",
            plan.run.reference
        ))
        .into());
    }
    Ok(Deleted {
        run: plan.run,
        latest_now,
        was_latest,
    })
}
