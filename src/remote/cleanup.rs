//! `cleanup --remote`: the local retention engine and protections applied
//! to the remote's runs, then garbage collection, without a lock.
//!
//! In order, each step safe to interrupt:
//! 1. the mark object, the catalog segments and the blobs are read, then
//!    every run record (records last: a blob or segment written after its
//!    listing is not judged at all);
//! 2. the policy plans over the records' summaries with the protections a
//!    local cleanup applies (production, pinned as pushed, lineage sources,
//!    refresh base, latest);
//! 3. the catalog index is rebuilt from the records, without the runs to
//!    remove and with a tombstone for each (pointer first: readers stop
//!    listing them before anything is deleted);
//! 4. their records are deleted; their content is now unreferenced, so
//!    garbage collection marks it and deletes it a grace later;
//! 5. garbage collection (see `gc`), then the catalog segments folded in
//!    longer ago than the grace, then a journal object.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use futures::StreamExt;
use serde::Serialize;

use super::backend::Mode;
use super::catalog::{self, Rebuild, Tombstone};
use super::gc::{self, GcOptions, GcReport};
use super::{parse_record, unique_key, Remote};
use crate::error::ArtifactError;
use crate::ops::cleanup::{plan_runs, require_policy, Action, CleanupOptions, Plan, Subject};
use crate::ops::removal::Guard;
use crate::store::index::CatalogRun;
use crate::store::journal;
use crate::store::refs::{qualified_ref, Namespace, Stage};
use crate::store::{ReadOptions, RunInfo};

pub struct RemoteCleanup {
    /// The policy and its scope; `None` collects garbage only.
    pub retention: Option<CleanupOptions>,
    pub gc: GcOptions,
}

#[derive(Debug, Serialize)]
pub struct CleanupReport {
    #[serde(flatten)]
    pub gc: GcReport,
    /// The policy's plan, rows as local cleanup's (no rows without one).
    #[serde(flatten)]
    pub plan: Plan,
    /// Runs the catalog index lists after this cleanup.
    pub catalog_runs: u64,
    /// Catalog segments deleted, folded into the index longer than the grace ago.
    pub deleted_segments: u64,
    /// Runs found latest when re-checked before deleting, with why.
    #[serde(skip)]
    pub kept_since_planning: Vec<(String, String)>,
}

/// One record read: its summary and the blobs and packs it references.
struct Record {
    key: String,
    summary: CatalogRun,
    blobs: Vec<String>,
}

pub fn cleanup(remote: &Remote, opts: &RemoteCleanup) -> Result<CleanupReport> {
    if let Some(retention) = &opts.retention {
        require_policy(&retention.policy)?;
    }
    remote.block_on(run(remote, opts))
}

async fn run(remote: &Remote, opts: &RemoteCleanup) -> Result<CleanupReport> {
    let backend = &remote.backend;
    let (marks, marks_etag, marks_exist) = gc::read_marks(remote).await?;
    let segments = catalog::segment_keys(remote).await?;
    // Loose blobs and packs are judged alike (a pack by its own hash).
    let mut blobs = backend.list_meta("blobs").await?;
    blobs.extend(
        backend
            .list_meta("packs")
            .await?
            .into_iter()
            .filter(|p| super::pack::toc_of(&p.key).is_some()),
    );
    let records = read_records(remote).await?;

    let mut plan = match &opts.retention {
        Some(retention) => plan(remote, &records, retention).await?,
        None => Plan {
            runs: Vec::new(),
            freed_bytes: 0,
            remove_all: Vec::new(),
            policy: String::new(),
            warnings: Vec::new(),
        },
    };
    let dry_run = opts.gc.dry_run || plan.refusal().is_some();
    let mut kept_since_planning = Vec::new();
    if !dry_run {
        kept_since_planning = recheck_latest(remote, &mut plan).await?;
    }
    let removed: BTreeSet<String> = plan
        .to_remove()
        .filter_map(|row| match &row.subject {
            Subject::Run(run) => Some(run.location.qualified()),
            Subject::Leftover(_) => None,
        })
        .collect();
    let referenced: BTreeSet<String> = records
        .iter()
        .filter(|(reference, _)| !removed.contains(*reference))
        .flat_map(|(_, r)| r.blobs.iter().cloned())
        .collect();
    let decision = gc::decide(
        remote,
        &marks,
        &blobs,
        &referenced,
        &GcOptions {
            dry_run,
            ..opts.gc.clone()
        },
    );
    let mut report = CleanupReport {
        gc: decision.report.clone(),
        plan,
        catalog_runs: (records.len() - removed.len()) as u64,
        deleted_segments: 0,
        kept_since_planning,
    };
    if dry_run {
        return Ok(report);
    }

    let now = opts.gc.now;
    let deleted: Vec<Tombstone> = removed
        .iter()
        .map(|reference| Tombstone {
            reference: reference.clone(),
            created_at: records[reference].summary.created_at,
            deleted_at: now,
        })
        .collect();
    let old_segments = catalog::rebuild(
        remote,
        &Rebuild {
            segments,
            records: records
                .iter()
                .map(|(k, r)| (k.clone(), r.summary.clone()))
                .collect(),
            deleted,
            now,
            grace: opts.gc.grace,
        },
    )
    .await?;
    delete_all(remote, removed.iter().map(|r| records[r].key.clone())).await?;
    let (deleted_blobs, deleted_bytes) =
        gc::collect(remote, &decision, marks_etag, marks_exist).await?;
    // Blobs written again since they were listed were kept.
    report.gc.waiting += report.gc.deleted - deleted_blobs;
    report.gc.deleted = deleted_blobs;
    report.gc.deleted_bytes = deleted_bytes;
    delete_all(remote, old_segments.iter().cloned()).await?;
    report.deleted_segments = old_segments.len() as u64;

    let mut entry = journal::Entry::new("cleanup", None, None)
        .with("deleted_blobs", report.gc.deleted)
        .with("deleted_bytes", report.gc.deleted_bytes)
        .with("marked_blobs", report.gc.waiting);
    if !removed.is_empty() {
        entry = entry.with(
            "removed_runs",
            removed.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }
    backend
        .put(
            &unique_key("journal", now),
            serde_json::to_vec(&entry)?,
            Mode::Create,
        )
        .await?;
    Ok(report)
}

/// `runs/<stage>/ns=<a,b>/<id>.json` → where the record says the run is.
fn record_location(key: &str) -> Option<(Stage, Namespace, String)> {
    let rest = key.strip_prefix("runs/")?;
    let (stage, rest) = rest.split_once('/')?;
    let (ns, file) = rest.split_once('/')?;
    let ns = ns.strip_prefix("ns=")?.replace(',', "/");
    let id = file.strip_suffix(".json")?;
    let (stage, ns) = super::checked_location(stage, &ns, id).ok()?;
    Some((stage, ns, id.to_string()))
}

/// Every run record, by qualified ref. One that cannot be read stops the
/// cleanup: it might reference anything, or be protected.
async fn read_records(remote: &Remote) -> Result<BTreeMap<String, Record>> {
    let backend = &remote.backend;
    let keys: Vec<String> = backend
        .list("runs")
        .await?
        .into_iter()
        .filter(|k| k.ends_with(".json"))
        .collect();
    let mut reads = futures::stream::iter(keys)
        .map(|key| async move { (backend.get(&key).await, key) })
        .buffer_unordered(16);
    let mut out = BTreeMap::new();
    while let Some((got, key)) = reads.next().await {
        let Some(got) = got? else { continue };
        let unreadable = |why: String| -> anyhow::Error {
            ArtifactError::refused(format!(
                "remote {}: record {key} cannot be read ({why}); cleanup deletes nothing while it cannot tell what it references",
                backend.shown
            ))
            .into()
        };
        let (stage, ns, id) =
            record_location(&key).ok_or_else(|| unreadable("not a run record's name".into()))?;
        let (meta, packed) = parse_record(&got.bytes, stage, &ns, &id, &key)
            .map_err(|e| unreadable(format!("{e:#}")))?;
        let summary = crate::store::index::summary_of(&got.bytes, stage, &ns, &id)
            .ok_or_else(|| unreadable("no summary the catalog can hold".into()))?;
        let blobs = super::pack::referenced(&meta, &packed);
        out.insert(
            qualified_ref(stage, &ns, &id),
            Record {
                key,
                summary,
                blobs,
            },
        );
    }
    Ok(out)
}

/// The local cleanup's plan over the remote's runs in scope.
async fn plan(
    remote: &Remote,
    records: &BTreeMap<String, Record>,
    opts: &CleanupOptions,
) -> Result<Plan> {
    let summaries: Vec<CatalogRun> = records.values().map(|r| r.summary.clone()).collect();
    let allow_production = opts.allow_production && opts.stage == Stage::Production;
    // Lineage and refresh bases are judged over every stage and namespace.
    let guard = Guard::from_summaries(&summaries, allow_production);
    let read = ReadOptions::new(&[], false)?;
    let mut runs: Vec<RunInfo> = Vec::new();
    for summary in summaries {
        let Ok(ns) = Namespace::parse(&summary.namespace) else {
            continue;
        };
        if summary.stage == opts.stage && ns.starts_with(&opts.namespace) {
            let location = remote.location(summary.stage, &ns, &summary.id);
            runs.push(summary.into_run(location, &read));
        }
    }
    let scopes = runs
        .iter()
        .map(|r| (r.stage, r.location.namespace.clone()))
        .collect();
    let latest = remote.latest_ids(scopes).await?;
    for run in &mut runs {
        run.latest = latest
            .get(&(run.stage, run.location.namespace.clone()))
            .is_some_and(|id| id.as_deref() == Some(&run.id));
    }
    Ok(plan_runs(runs, &guard, opts))
}

/// Read `latest` again right before deleting: a run it names now (a
/// promotion since planning) stays.
async fn recheck_latest(remote: &Remote, plan: &mut Plan) -> Result<Vec<(String, String)>> {
    let scopes = plan
        .to_remove()
        .filter_map(|row| match &row.subject {
            Subject::Run(run) => Some((run.stage, run.location.namespace.clone())),
            Subject::Leftover(_) => None,
        })
        .collect();
    let latest = remote.latest_ids(scopes).await?;
    let mut kept = Vec::new();
    for row in plan.runs.iter_mut() {
        let Subject::Run(run) = &row.subject else {
            continue;
        };
        let now_latest = latest
            .get(&(run.stage, run.location.namespace.clone()))
            .is_some_and(|id| id.as_deref() == Some(&run.id));
        if row.action == Action::Remove && now_latest {
            row.action = Action::Keep;
            row.reasons = vec!["latest (since planning)".into()];
            kept.push((row.reference.clone(), "latest".to_string()));
        }
    }
    plan.freed_bytes = plan.to_remove().map(|r| r.size_bytes).sum();
    Ok(kept)
}

async fn delete_all(remote: &Remote, keys: impl Iterator<Item = String>) -> Result<()> {
    let mut deletes = futures::stream::iter(keys)
        .map(|key| async move { remote.backend.delete(&key).await })
        .buffer_unordered(16);
    while let Some(done) = deletes.next().await {
        done?;
    }
    Ok(())
}
