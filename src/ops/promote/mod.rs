//! `promote`: raw → validated → production (seed 004's lifecycle).
//!
//! Each promotion is planned first (source, gates, target, files; nothing is
//! written), then executed: the files are brought into a staging folder
//! sharing bytes with the source where the filesystem permits (hard links of
//! read-only files, reflinks), made read-only, and published with a
//! no-replace rename by [`ops::publish_run`]. A crash at any moment leaves no
//! new artifact or a complete one; the staging folder is swept by the next
//! writer. Lineage (`promoted_from`, `parent`) is what `delete` and `cleanup`
//! protect sources by, see [`ops::lineage_dependents`].

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::Utc;

use crate::error::ArtifactError;
use crate::fsx::{self, Staging};
use crate::ops::{self, LatestPolicy};
use crate::policy::gates::GateResult;
use crate::progress::{Progress, Unit};
use crate::store::journal;
use crate::store::manifest;
use crate::store::metadata::{FileEntry, Lineage, Metadata, RunStatus, SCHEMA_VERSION};
use crate::store::refs::{RunRef, Stage};
use crate::store::ReadOptions;
use crate::store::{RunInfo, RunLocation, Store};

mod changelog;
mod checkpoint;
mod production;
mod validated;

pub use changelog::*;
use checkpoint::*;
pub use production::*;
pub use validated::*;

/// Where checkpoints live in a raw run (seed 004); the run's top folder is
/// searched next, for layouts that keep models there (seed 003).
const CHECKPOINT_DIR: &str = "checkpoints";
/// The folder of a validated artifact that holds the `--results` file.
const VALIDATION_DIR: &str = "validation";
/// The folder of a production release that holds `--deploy-config`.
const DEPLOYMENT_DIR: &str = "deployment";

/// One file of the new artifact: where it comes from, where it goes, and the
/// source's manifest entry when there is one (its hash is reused, so a
/// 1 GiB checkpoint is not re-read: `verify` is the command that re-hashes).
#[derive(Debug, Clone)]
pub struct PlannedFile {
    pub from: PathBuf,
    pub to: String,
    pub size: u64,
    known: Option<FileEntry>,
    /// A file of a store artifact, which may be made read-only and
    /// hard-linked; a user's file (`--results`) is only ever copied.
    in_store: bool,
}

#[derive(Debug, Clone)]
pub struct Promoted {
    pub location: RunLocation,
    pub became_latest: bool,
    pub total_size: u64,
    pub file_count: u64,
    /// Bytes shared with the source by hard links rather than written.
    pub linked_bytes: u64,
}

pub fn all_passed(gates: &[GateResult]) -> bool {
    gates.iter().all(GateResult::passed)
}

fn check_gates(gates: &[GateResult], what: &str) -> Result<()> {
    let failed: Vec<&str> = gates
        .iter()
        .filter(|g| !g.passed())
        .map(|g| g.gate.as_str())
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(ArtifactError::refused(format!(
        "{} gate(s) did not pass ({}); nothing was written: {what}",
        failed.len(),
        failed.join("; ")
    ))
    .into())
}

// ---------------------------------------------------------------- validated

fn namespace_label(location: &RunLocation) -> String {
    if location.namespace.is_root() {
        "production".into()
    } else {
        location.namespace.to_string()
    }
}

/// The source of a promotion: `reference` resolved, which must be in
/// `stage` (else a usage error ending in `hint`), read, and complete; its
/// metadata when it has artifactctl's. Also the fallbacks resolving took.
pub(super) fn source_in(
    store: &Store,
    reference: &RunRef,
    stage: Stage,
    hint: &str,
) -> Result<(RunLocation, RunInfo, Option<Metadata>, Vec<String>)> {
    let resolved = store.resolve(reference)?;
    let location = resolved.location;
    if location.stage != stage {
        return Err(ArtifactError::usage(format!(
            "{} is {}; {hint}",
            location.reference(),
            location.stage
        ))
        .into());
    }
    let source = store.read_run(location.clone(), &ReadOptions::new(&[], false)?);
    require_complete(&source)?;
    let meta = Metadata::read(&location.path).ok();
    Ok((location, source, meta, resolved.warnings))
}

fn require_complete(run: &RunInfo) -> Result<()> {
    if run.status != RunStatus::Complete {
        return Err(ArtifactError::refused(format!(
            "{} is {}; only complete runs are promoted: `artifactctl show {}` tells why",
            run.reference,
            run.status.as_str(),
            run.reference
        ))
        .into());
    }
    Ok(())
}

fn refuse_existing(target: &RunLocation, what_to_do: &str) -> Result<()> {
    if target.path.symlink_metadata().is_ok() {
        return Err(ArtifactError::conflict(format!(
            "{} already exists and promoted artifacts are never overwritten; {what_to_do}",
            target.reference()
        ))
        .into());
    }
    Ok(())
}

fn planned(from: PathBuf, to: String, known: Option<&FileEntry>) -> Result<PlannedFile> {
    let meta = from
        .metadata()
        .map_err(|e| ArtifactError::usage(format!("cannot read {}: {e}", from.display())))?;
    if !meta.is_file() {
        return Err(ArtifactError::usage(format!(
            "{} is not a regular file; only files are promoted",
            from.display()
        ))
        .into());
    }
    let known = known
        .filter(|k| k.size == meta.len() && k.symlink.is_none())
        .cloned();
    Ok(PlannedFile {
        from,
        to,
        size: meta.len(),
        known,
        in_store: true,
    })
}

fn manifest_index(meta: Option<&Metadata>) -> HashMap<&str, &FileEntry> {
    meta.map(|m| m.files.iter().map(|f| (f.path.as_str(), f)).collect())
        .unwrap_or_default()
}

/// The metadata of a source without artifactctl metadata (legacy layouts):
/// what its own files say, read as `register` reads them.
fn legacy_metadata(run: &RunInfo) -> Metadata {
    let imported = crate::ops::register::import_metadata(&run.location.path, &mut Vec::new());
    let mut metrics = imported.metrics;
    metrics.extend(run.metrics.clone());
    Metadata {
        schema_version: SCHEMA_VERSION,
        id: run.id.clone(),
        namespace: run.namespace.clone(),
        stage: run.stage,
        created_at: run.created_at.unwrap_or_else(Utc::now),
        status: run.status,
        config: imported.config,
        params: run
            .params
            .clone()
            .into_iter()
            .chain(imported.params)
            .collect(),
        metrics,
        tags: if imported.tags.is_empty() {
            run.tags.clone()
        } else {
            imported.tags
        },
        files: Vec::new(),
        total_size: 0,
        file_count: 0,
        features: imported.features,
        lineage: Lineage::default(),
        producer: Default::default(),
        pinned: false,
        extra: imported.extra,
    }
}

/// Bring the planned files (and a deployment config) into a new staging
/// folder, sharing bytes where possible. Returns the staging folder, the
/// manifest and the bytes shared by hard links.
fn stage_files(
    store: &Store,
    label: &str,
    files: &[PlannedFile],
    deploy_config: Option<&Path>,
    reporter: &dyn Progress,
) -> Result<(Staging, Vec<FileEntry>, u64)> {
    let staging = Staging::create(store.dir(), label)?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    reporter.begin("linking", Some(total), Unit::Bytes);
    let mut entries = Vec::new();
    let mut linked = 0u64;
    for file in files {
        crate::interrupt::check()?;
        let dest = staging.path().join(&file.to);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let brought = if file.in_store {
            // The source artifact is immutable, so making its file read-only
            // costs nothing and lets it be hard-linked instead of copied.
            fsx::make_tree_readonly(&file.from)
                .with_context(|| format!("cannot make {} read-only", file.from.display()))?;
            fsx::share_or_copy(&file.from, &dest)
        } else {
            fsx::clone_or_copy(&file.from, &dest)
        };
        brought.with_context(|| {
            format!(
                "cannot bring {} into {}",
                file.from.display(),
                dest.display()
            )
        })?;
        let same_inode = match (file.from.metadata(), dest.metadata()) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same_inode {
            linked += file.size;
        }
        // A pending hash (a run imported by link) is not carried over: the
        // staged file is hashed below with the others.
        if let Some(known) = file.known.as_ref().filter(|k| k.blake3.is_some()) {
            entries.push(FileEntry {
                path: file.to.clone(),
                ..known.clone()
            });
        }
        reporter.advance(file.size);
    }
    reporter.end();
    if let Some(config) = deploy_config {
        copy_deploy_config(staging.path(), config, reporter)?;
    }
    // Everything not taken from a source manifest is hashed now.
    let known: BTreeSet<String> = entries.iter().map(|e| e.path.clone()).collect();
    let unknown: Vec<manifest::Found> = manifest::list_files(staging.path())?
        .into_iter()
        .filter(|f| !known.contains(&f.rel))
        .collect();
    entries.extend(manifest::hash_all_interruptible(unknown, reporter)?);
    Ok((staging, entries, linked))
}

/// Publish the staged artifact read-only.
///
/// Ordering: `publish_run` writes `metadata.json` into the staging folder, so
/// everything *inside* it is made read-only first, the top folder stays
/// writable until the rename has put the artifact in place, and is made
/// read-only (with `metadata.json`) right after. A crash in between leaves a
/// complete artifact whose top folder is still writable, which `verify`
/// reports with the `chmod` that fixes it.
fn publish_readonly(
    store: &Store,
    staging: Staging,
    meta: &mut Metadata,
    target: &RunLocation,
    latest: LatestPolicy,
    entry: journal::Entry,
    linked_bytes: u64,
) -> Result<Promoted> {
    for child in std::fs::read_dir(staging.path())? {
        fsx::make_tree_readonly(&child?.path())?;
    }
    crate::interrupt::check()?;
    let published = ops::publish_run(
        store,
        staging,
        meta,
        ops::IdRequest::Exact(&target.id),
        latest,
        entry,
    )
    .map_err(|e| ops::unless_published(e, format!("{} was not promoted", target.reference())))?;
    fsx::make_tree_readonly(&published.location.path).map_err(|e| {
        ops::published_but(&published.location, "making it read-only failed", e.into())
    })?;
    Ok(Promoted {
        location: published.location,
        became_latest: published.became_latest,
        total_size: meta.total_size,
        file_count: meta.file_count,
        linked_bytes,
    })
}

// ------------------------------------------------------------------ versions

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_found_by_name_or_stem() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join(CHECKPOINT_DIR);
        std::fs::create_dir_all(&ck).unwrap();
        std::fs::write(ck.join("epoch_70.pt"), b"x").unwrap();
        std::fs::write(ck.join("best.pt"), b"y").unwrap();
        std::os::unix::fs::symlink("epoch_70.pt", ck.join("latest.pt")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ck.join("evil.pt")).unwrap();
        assert_eq!(
            find_checkpoint(dir.path(), "epoch_70").unwrap().0,
            "checkpoints/epoch_70.pt"
        );
        assert_eq!(
            find_checkpoint(dir.path(), "best.pt").unwrap().0,
            "checkpoints/best.pt"
        );
        let (rel, path) = find_checkpoint(dir.path(), "latest").unwrap();
        assert_eq!(rel, "checkpoints/epoch_70.pt");
        assert!(path.ends_with("epoch_70.pt"));
        assert!(find_checkpoint(dir.path(), "evil").is_err());
        let err = find_checkpoint(dir.path(), "epoch_99")
            .unwrap_err()
            .to_string();
        assert!(err.contains("available: best, epoch_70"), "{err}");
    }

    #[test]
    fn results_flatten_into_dotted_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        std::fs::write(
            &p,
            br#"{"coverage": 0.97, "generalization": {"passed": true}, "note": "x"}"#,
        )
        .unwrap();
        let m = crate::store::metrics::read_file(&p, "--results").unwrap();
        assert_eq!(m.values["coverage"], 0.97);
        assert_eq!(m.values["generalization.passed"], 1.0);
        assert_eq!(m.notes["note"], serde_json::json!("x"));
    }
}
