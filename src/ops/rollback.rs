//! `rollback`: re-point production `latest` to an earlier version (seed
//! 003's rollback capability; in a flat legacy store, its one `latest`), and
//! `history`: the audit journal, filtered.

use anyhow::{Context, Result};
use chrono::Utc;

use crate::error::ArtifactError;
use crate::fsx;
use crate::ops::{self, promote};
use crate::policy::version::ReleaseKey;
use crate::store::journal::Entry;
use crate::store::metadata::RunStatus;
use crate::store::refs::{qualified_ref, Namespace, Stage};
use crate::store::{Layout, ReadOptions, RunInfo, Store};

#[derive(Debug, Clone, Default)]
pub struct RollbackOptions {
    pub namespace: Namespace,
    /// The version to return to; the one just below the current by default.
    pub to: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RolledBack {
    /// `production`, or `raw` in a flat store.
    pub stage: Stage,
    pub namespace: Namespace,
    pub from: Option<String>,
    pub to: String,
}

pub fn rollback(store: &Store, opts: &RollbackOptions) -> Result<RolledBack> {
    // A flat store (seed 003's versions folder, seed 002's models folder)
    // that was never promoted has one stage, whose `latest` is the one to
    // move; its versions are runs in time order. Otherwise production
    // releases roll back, in release order (legacy names included).
    let flat = store.layout() == Layout::Flat
        && store
            .locations_in(Stage::Production, &opts.namespace)
            .is_empty();
    let stage = if flat { Stage::Raw } else { Stage::Production };
    let ns = &opts.namespace;
    let ns_dir = store.ns_dir(stage, ns)?;
    let where_ = qualified_ref(stage, ns, "");
    let _lock = ops::lock(store)?;
    let ordered = ordered_versions(store, stage, ns, flat)?;
    if ordered.is_empty() {
        return Err(ArtifactError::not_found(format!(
            "no complete release in {where_} ({}); promote one with `artifactctl promote REF --to production --version X.Y.Z`",
            ns_dir.display()
        ))
        .into());
    }
    let current = store.current_latest(stage, ns)?;
    let listed = ordered.join(", ");
    let to = match &opts.to {
        Some(wanted) => ordered
            .iter()
            .find(|id| *id == wanted)
            .cloned()
            .ok_or_else(|| {
                ArtifactError::not_found(format!(
                    "no complete release {wanted} in {where_}; releases: {listed}"
                ))
            })?,
        None => {
            let position = current
                .as_deref()
                .and_then(|c| ordered.iter().position(|id| id == c));
            let Some(position) = position else {
                return Err(ArtifactError::usage(format!(
                    "{where_}latest does not name a release ({}); pass --to VERSION (releases: {listed})",
                    current.as_deref().unwrap_or("missing")
                ))
                .into());
            };
            if position == 0 {
                return Err(ArtifactError::refused(format!(
                    "{} is the earliest release in {where_}; there is nothing to roll back to",
                    ordered[0]
                ))
                .into());
            }
            ordered[position - 1].clone()
        }
    };
    if current.as_deref() == Some(to.as_str()) {
        return Err(ArtifactError::usage(format!(
            "{where_}latest already points to {to}; releases: {listed}"
        ))
        .into());
    }
    fsx::set_latest(&ns_dir, &to).with_context(|| {
        format!(
            "cannot update {}",
            ns_dir.join(crate::store::layout::LATEST).display()
        )
    })?;
    let from_ref = current.as_deref().map(|c| qualified_ref(stage, ns, c));
    let to_ref = qualified_ref(stage, ns, &to);
    ops::record(
        store.dir(),
        &[Entry::new(
            "rollback",
            from_ref.clone(),
            Some(to_ref.clone()),
        )],
    )?;
    if !flat {
        promote::append_changelog(
            store,
            &format!(
                "\n## {} rollback to {to} ({})\n\n- from: {}\n- by: {}\n",
                if ns.is_root() {
                    "production".to_string()
                } else {
                    ns.to_string()
                },
                Utc::now().format("%Y-%m-%d %H:%M:%S UTC"),
                from_ref.as_deref().unwrap_or("(no latest)"),
                crate::host::current_user()
            ),
        )?;
    }
    Ok(RolledBack {
        stage,
        namespace: ns.clone(),
        from: current,
        to,
    })
}

/// The complete, healthy runs of a namespace, oldest first: production
/// releases by [`ReleaseKey`] (a legacy name such as `v5_5_prod_v1.0` is a
/// release too, below every semantic version), flat-store runs by creation
/// time.
fn ordered_versions(
    store: &Store,
    stage: Stage,
    ns: &Namespace,
    flat: bool,
) -> Result<Vec<String>> {
    let read = ReadOptions::new(&[], false)?;
    let runs: Vec<RunInfo> = store
        .locations_in(stage, ns)
        .into_iter()
        .map(|l| store.read_run(l, &read))
        .filter(|r| r.status == RunStatus::Complete && r.problems.is_empty())
        .collect();
    if flat {
        let mut runs = runs;
        runs.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        return Ok(runs.into_iter().map(|r| r.id).collect());
    }
    let mut ids: Vec<String> = runs.into_iter().map(|r| r.id).collect();
    ids.sort_by_key(|id| ReleaseKey::of(id));
    Ok(ids)
}
