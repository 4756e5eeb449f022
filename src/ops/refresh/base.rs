//! What refresh compares with: the base run (the newest complete refresh
//! run, its step outputs checked against the disk), the content of the
//! steps' dependencies, and an explicit dataset.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use globset::GlobBuilder;

use super::*;
use crate::error::ArtifactError;
use crate::policy::pipeline::{self, Action, Base, StepRecord, StepStatus};
use crate::progress::Silent;
use crate::store::layout::INTERNAL_DIR;
use crate::store::listing::{newest_first, Listing, Row};
use crate::store::manifest;
use crate::store::metadata::{self, Metadata, RunStatus};
use crate::store::refs::Namespace;
use crate::store::{RunLocation, Store};

/// The run refresh compares with and reuses from: the newest complete run
/// of the namespace that refresh made (it records its `steps`), whatever
/// `latest` names, so a registered run never hides it. Its recorded step
/// outputs are checked against the disk (by stamp, or re-hashed with
/// `rehash`): a damaged step is never reused.
pub(super) fn find_base(
    store: &Store,
    ns: &Namespace,
    rehash: bool,
    warnings: &mut Vec<String>,
) -> Option<(RunLocation, Base)> {
    let (location, meta) = base_run(store, ns)?;
    let steps: BTreeMap<String, StepRecord> = match meta.extra.get("steps") {
        None => BTreeMap::new(),
        Some(value) => match serde_json::from_value::<Vec<StepRecord>>(value.clone()) {
            Ok(records) => records.into_iter().map(|r| (r.name.clone(), r)).collect(),
            Err(e) => {
                warnings.push(format!(
                    "the steps recorded in {} cannot be read ({e}); nothing is reused from it",
                    location.path.join(metadata::METADATA_FILE).display()
                ));
                BTreeMap::new()
            }
        },
    };
    let damaged = steps
        .values()
        .filter(|r| r.output_hash.is_some())
        .filter_map(|r| {
            manifest::damage(&location.path.join(&r.name), &r.outputs, rehash)
                .map(|why| (r.name.clone(), why))
        })
        .collect();
    let reference = location.reference();
    Some((
        location,
        Base {
            reference,
            steps,
            damaged,
        },
    ))
}

/// The newest complete run of `ns` that refresh made, with its metadata.
/// Runs are read newest first, so this usually reads one metadata file.
pub fn base_run(store: &Store, ns: &Namespace) -> Option<(RunLocation, Metadata)> {
    // Through the run index, which rules out runs without step records, so
    // a namespace of 100,000 registered runs costs no metadata reads here.
    let runs = store.refresh_candidates(ns);
    runs.into_iter().find_map(|run| {
        let meta = Metadata::read(&run.location.path).ok()?;
        meta.extra
            .contains_key("steps")
            .then_some((run.location, meta))
    })
}

/// [`base_run`] among the rows of one group of a listing (which must have
/// checked each run against its `metadata.json`), without its metadata.
pub fn base_in(listing: &Listing, group: u32) -> Option<RunLocation> {
    let mut candidates: Vec<&Row> = listing
        .rows
        .iter()
        .filter(|r| r.group == group)
        .filter(|r| r.steps && r.status == RunStatus::Complete && !r.has_problems())
        .collect();
    candidates.sort_by(|a, b| newest_first(a, b));
    candidates.into_iter().find_map(|row| {
        let location = listing.location(row);
        let meta = Metadata::read(&location.path).ok()?;
        meta.extra.contains_key("steps").then_some(location)
    })
}

/// The dataset path made absolute, and the hash of its content.
pub(super) fn dataset_of(root: &Path, path: &Path) -> Result<(PathBuf, String)> {
    let full = root.join(path);
    let full = full.canonicalize().map_err(|e| {
        ArtifactError::usage(format!(
            "--dataset {}: {e}; pass an existing file or folder",
            full.display()
        ))
    })?;
    let hash = if full.is_dir() {
        let files = manifest::build(&full, &Silent)?;
        pipeline::output_hash(&files)
    } else {
        manifest::hash_file(&full)?
    };
    Ok((full, hash))
}

/// Per `deps` pattern, one hash over the files it matches (paths relative to
/// the project root, in order). Walks only below the pattern's literal
/// prefix, never into `.git` or the store, never through symlinked folders.
/// A pattern matching nothing is an error: it is most likely a typo.
pub(super) fn hash_deps(
    root: &Path,
    store_dir: &Path,
    step: &str,
    patterns: &[String],
    known: &mut BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let store_dir = store_dir.canonicalize().unwrap_or(store_dir.to_path_buf());
    for pattern in patterns {
        if let Some(hash) = known.get(pattern) {
            out.insert(pattern.clone(), hash.clone());
            continue;
        }
        let bad = |why: String| {
            ArtifactError::usage(format!(
                "deps pattern '{pattern}' of step '{step}' {why}; patterns are globs relative to the project root {}, e.g. deps = [\"scripts/make_dataset.sh\", \"data/**\"]",
                root.display()
            ))
        };
        if Path::new(pattern).is_absolute() || pattern.split('/').any(|c| c == "..") {
            return Err(bad("leaves the project".into()).into());
        }
        let literal: Vec<&str> = pattern
            .split('/')
            .take_while(|c| !c.contains(['*', '?', '[', '{']))
            .collect();
        let start = root.join(literal.join("/"));
        let matcher = if literal.len() == pattern.split('/').count() {
            None
        } else {
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|e| bad(format!("is not a valid glob ({e})")))?;
            Some(glob.compile_matcher())
        };
        let mut found = Vec::new();
        for entry in walkdir::WalkDir::new(&start)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                e.file_name() != ".git"
                    && e.file_name() != INTERNAL_DIR
                    && !(e.file_type().is_dir()
                        && e.path().canonicalize().is_ok_and(|p| p == store_dir))
            })
        {
            let Ok(entry) = entry else { continue };
            if !entry.file_type().is_file() {
                continue;
            }
            let (rel, rel_bytes) =
                metadata::encode_rel_path(entry.path().strip_prefix(root).unwrap_or(entry.path()));
            if matcher.as_ref().is_none_or(|m| m.is_match(&rel)) {
                found.push(manifest::Found {
                    rel,
                    rel_bytes,
                    path: entry.path().to_path_buf(),
                    size: entry.metadata().map(|m| m.len()).unwrap_or(0),
                    symlink: None,
                });
            }
        }
        if found.is_empty() {
            return Err(bad("matches no file".into()).into());
        }
        let entries = manifest::hash_all(found, &Silent)?;
        let hash = pipeline::output_hash(&entries);
        known.insert(pattern.clone(), hash.clone());
        out.insert(pattern.clone(), hash);
    }
    Ok(out)
}

/// When no selected step would run (each is reused from the base run, or
/// left out), the refresh is up to date with the base run, as `make` and
/// `dvc repro` are: nothing is written.
pub(super) fn up_to_date(prepared: &Prepared, opts: &RefreshOptions) -> Option<Refreshed> {
    let (location, base) = prepared.base.as_ref()?;
    if opts.force || opts.publish_unchanged {
        return None;
    }
    let mut reused = false;
    let mut steps = Vec::new();
    for planned in &prepared.planned {
        let name = &prepared.pipeline.steps[planned.index].name;
        let status = match planned.action {
            Action::Run => return None,
            Action::Reuse | Action::Carry => {
                reused = true;
                StepStatus::Reused
            }
            Action::Skip => StepStatus::Skipped,
        };
        steps.push(StepOutcome {
            name: name.clone(),
            status,
            duration_s: 0.0,
            exit_code: None,
            reused_from: (status == StepStatus::Reused).then(|| base.reference.clone()),
            reason: planned.reason.clone(),
        });
    }
    reused.then(|| Refreshed {
        location: location.clone(),
        status: RunStatus::Complete,
        became_latest: false,
        up_to_date: true,
        steps,
        warnings: prepared.warnings.clone(),
    })
}
