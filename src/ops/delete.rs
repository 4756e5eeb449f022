//! `delete REF`: remove one run (seed 003's `manage_models.py delete`), with
//! the protections every removal honours.

use anyhow::{Context, Result};

use crate::error::ArtifactError;
use crate::fsx;
use crate::journal;
use crate::ops;
use crate::refs::{RunRef, Stage};
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
    let reference = &run.reference;
    if run.stage == Stage::Production && !opts.allow_production {
        return Err(ArtifactError::refused(format!(
            "{reference} is a production release and is immutable; roll back instead, or pass --unsafe-allow-production to remove it"
        ))
        .into());
    }
    if run.pinned {
        return Err(ArtifactError::refused(format!(
            "{reference} is pinned; `artifactctl unpin {reference}` first if it really should go"
        ))
        .into());
    }
    let dependents = ops::lineage_dependents(store);
    if let Some(children) = dependents.get(&run.location.qualified()) {
        return Err(ArtifactError::refused(format!(
            "{reference} is the source of promoted artifact(s) {}; their lineage needs it, so it is kept",
            children.join(", ")
        ))
        .into());
    }
    Ok(())
}

/// Remove the planned run: unlist it with one rename, remove its files, move
/// `latest` to the newest remaining complete run if it pointed here, and
/// journal the removal.
pub fn execute(store: &Store, plan: DeletePlan, opts: &DeleteOptions) -> Result<Deleted> {
    let _lock = ops::lock(store)?;
    // Re-check under the lock: a promotion may have landed since planning.
    check_protections(store, &plan.run, opts)?;
    let location = plan.run.location.clone();
    let was_latest = store.latest(location.stage, &location.namespace)?.id()
        == Some(location.id.as_str())
        || plan.run.latest;
    fsx::discard_dir(store.dir(), &location.path)
        .with_context(|| format!("cannot remove {}", location.path.display()))?;
    let latest_now = ops::repoint_latest(store, location.stage, &location.namespace)?;
    let entry = journal::Entry::new("delete", Some(location.qualified()), None)
        .with("size_bytes", plan.run.size_bytes)
        .with("latest_now", latest_now.clone());
    journal::append(store.dir(), &entry)?;
    Ok(Deleted {
        run: plan.run,
        latest_now,
        was_latest,
    })
}
