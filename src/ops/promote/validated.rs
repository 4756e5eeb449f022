//! Promotion to validated: a chosen checkpoint (or the whole run), its
//! companions and validation results, behind the metric gates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, SubsecRound, Utc};
use globset::{GlobBuilder, GlobSetBuilder};
use serde_json::{json, Map, Value};

use super::*;
use crate::error::ArtifactError;
use crate::ops::verify;
use crate::ops::{self, LatestPolicy};
use crate::policy::gates::{self, GateResult, Outcome};
use crate::progress::Progress;
use crate::store::journal;
use crate::store::manifest;
use crate::store::metadata::{Lineage, Metadata, RunStatus, SCHEMA_VERSION};
use crate::store::metrics;
use crate::store::refs::{self, RunRef, Stage};
use crate::store::{RunInfo, RunLocation, Store};

#[derive(Debug, Clone)]
pub struct ValidatedOptions {
    pub reference: RunRef,
    /// `--checkpoint`: a checkpoint name (`epoch_70`, `best`, `latest`, a
    /// file name, or a path relative to the run).
    pub checkpoint: Option<String>,
    /// The checkpoint promoted from a run with `checkpoints/` when
    /// `--checkpoint` is not given (`[promote.validated] checkpoint`).
    pub default_checkpoint: String,
    /// `--file`: paths relative to the run (files or folders).
    pub files: Vec<String>,
    /// `--step`: a step folder of the run (one model of a refresh run).
    pub step: Option<String>,
    /// Globs of raw-run files carried along (`[promote.validated] include`).
    pub include: Vec<String>,
    /// Globs left out of a whole-run promotion (`[promote.validated] exclude`).
    pub exclude: Vec<String>,
    /// Gate expressions (`[promote.validated] require`).
    pub require: Vec<String>,
    /// A JSON object of validation results, merged over the run's metrics.
    pub results: Option<PathBuf>,
    pub id: Option<String>,
    pub project_root: PathBuf,
    pub command: Vec<String>,
    /// The time the artifact is stamped with (`created_at`).
    pub now: DateTime<Utc>,
}

/// What part of the run a promotion takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One checkpoint (`model.<ext>`) and its companions.
    Checkpoint { name: String, file: String },
    /// Every file of the run but the excluded ones.
    Whole,
    /// The files under `--step` / `--file`, at their paths, with companions.
    Parts { label: String, paths: Vec<String> },
}

#[derive(Debug, Clone)]
pub struct ValidatedPlan {
    pub source: RunInfo,
    pub target: RunLocation,
    pub selection: Selection,
    pub files: Vec<PlannedFile>,
    pub results: Option<PathBuf>,
    pub metrics: BTreeMap<String, f64>,
    /// Values of `--results` that are not numbers, kept in the promotion
    /// record (the file itself travels too).
    pub result_notes: BTreeMap<String, Value>,
    /// The integrity gate (verify's checks on the source) first, then the
    /// metric gates.
    pub gates: Vec<GateResult>,
    /// Fallbacks taken resolving the source (a dangling `latest`, say).
    pub warnings: Vec<String>,
    source_meta: Option<Metadata>,
    project_root: PathBuf,
    command: Vec<String>,
    now: DateTime<Utc>,
}

impl ValidatedPlan {
    /// How the selection is described to the user.
    pub fn describe(&self) -> String {
        match &self.selection {
            Selection::Checkpoint { name, file } => format!("checkpoint {name} ({file})"),
            Selection::Whole => format!("whole run ({} files)", self.files.len()),
            Selection::Parts { label, paths } => format!("{label} ({})", paths.join(", ")),
        }
    }
}

/// The metric name integrity problems are reported under, as gate lines
/// `FAIL integrity: ...`.
pub const INTEGRITY: &str = "integrity";

/// Check a promotion to validated without writing anything.
pub fn plan_validated(
    store: &Store,
    opts: ValidatedOptions,
    reporter: &dyn Progress,
) -> Result<ValidatedPlan> {
    let parsed_gates = gates::parse_all(&opts.require, "[promote.validated] require")?;
    if let Some(id) = &opts.id {
        refs::check_id(id, "--id")?;
    }
    let parts_wanted = !opts.files.is_empty() || opts.step.is_some();
    if parts_wanted && opts.checkpoint.is_some() {
        return Err(ArtifactError::usage(
            "--checkpoint picks a checkpoint of checkpoints/, --step and --file pick parts of the run: use one or the other",
        )
        .into());
    }
    store.stage_dir(Stage::Validated)?;
    let (location, source, source_meta, warnings) = source_in(
        store,
        &opts.reference,
        Stage::Raw,
        "--to validated takes a raw run (e.g. gru/BTCEUR/20261123_101500)",
    )?;
    let known = manifest_index(source_meta.as_ref());
    let run_dir = &location.path;

    let mut files = Vec::new();
    let (selection, label) = if parts_wanted {
        let mut paths = Vec::new();
        let mut label = None;
        if let Some(step) = &opts.step {
            let rel = relative_path(step, "--step")?;
            if !run_dir.join(&rel).is_dir() {
                return Err(no_step(run_dir, step).into());
            }
            label.get_or_insert_with(|| rel.clone());
            paths.push(rel);
        }
        for file in &opts.files {
            let rel = relative_path(file, "--file")?;
            if run_dir.join(&rel).symlink_metadata().is_err() {
                return Err(ArtifactError::not_found(format!(
                    "no file '{rel}' in {}; --file takes a path relative to the run (`artifactctl show {}` lists its files)",
                    run_dir.display(),
                    source.reference
                ))
                .into());
            }
            label.get_or_insert_with(|| file_stem(&rel));
            paths.push(rel);
        }
        for rel in &paths {
            for found in files_under(run_dir, rel)? {
                let (resolved, from) = resolve_in_run(run_dir, &found)?;
                let entry = known.get(resolved.as_str()).copied();
                files.push(planned(from, found, entry)?);
            }
        }
        let label = label.unwrap_or_default();
        (
            Selection::Parts {
                label: label.clone(),
                paths,
            },
            label,
        )
    } else if opts.checkpoint.is_some() || run_dir.join(CHECKPOINT_DIR).is_dir() {
        let wanted = opts
            .checkpoint
            .clone()
            .unwrap_or_else(|| opts.default_checkpoint.clone());
        let (checkpoint_file, checkpoint_path) = find_checkpoint(run_dir, &wanted)?;
        // Through a link (`best -> epoch_70.pt`) the target names the model.
        let name = file_stem(&checkpoint_file);
        let ext = Path::new(&checkpoint_file)
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        files.push(planned(
            checkpoint_path,
            format!("model{ext}"),
            known.get(checkpoint_file.as_str()).copied(),
        )?);
        (
            Selection::Checkpoint {
                name: name.clone(),
                file: checkpoint_file,
            },
            name,
        )
    } else {
        let exclude = globs(&opts.exclude, "[promote.validated] exclude")?;
        for found in manifest::list_files(run_dir)? {
            if exclude.is_match(&found.rel) {
                continue;
            }
            let (resolved, from) = resolve_in_run(run_dir, &found.rel)?;
            let entry = known.get(resolved.as_str()).copied();
            files.push(planned(from, found.rel, entry)?);
        }
        (Selection::Whole, String::new())
    };
    // Companions: what loading the model needs besides itself.
    let taken: BTreeSet<String> = files.iter().map(|f| f.to.clone()).collect();
    let skip: BTreeSet<String> = match &selection {
        Selection::Checkpoint { file, .. } => [file.clone()].into(),
        _ => BTreeSet::new(),
    };
    if selection != Selection::Whole {
        for rel in included_files(run_dir, &opts.include)? {
            if taken.contains(&rel) || skip.contains(&rel) {
                continue;
            }
            let (resolved, from) = resolve_in_run(run_dir, &rel)?;
            let entry = known.get(resolved.as_str()).copied();
            files.push(planned(from, rel, entry)?);
        }
    }
    if files.is_empty() {
        return Err(ArtifactError::usage(format!(
            "nothing to promote from {}: the selection holds no files; pick them with --step NAME or --file PATH",
            source.reference
        ))
        .into());
    }

    let id = opts.id.clone().unwrap_or_else(|| {
        if label.is_empty() {
            format!("{}_validated", location.id)
        } else {
            format!("{}_{label}_validated", location.id)
        }
    });
    refs::check_id(&id, "--id")?;
    let target = store.location(Stage::Validated, &location.namespace, &id)?;
    refuse_existing(&target, "choose another --id")?;

    // The one metrics reader (docs/metadata.md): the run's metrics files,
    // then its recorded metrics, then `--results`, each later source winning.
    let mut metrics = metrics::read_run_files(run_dir, &mut Vec::new()).values;
    metrics.extend(source.metrics.clone());
    let mut result_notes = BTreeMap::new();
    if let Some(results) = &opts.results {
        let read = metrics::read_file(results, "--results")?;
        metrics.extend(read.values);
        result_notes = read.notes;
        let name = results
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "results.json".into());
        let mut results_file = planned(results.clone(), format!("{VALIDATION_DIR}/{name}"), None)?;
        results_file.in_store = false;
        files.push(results_file);
    }
    // Integrity first: a model whose files or metadata are wrong does not
    // get to be judged by its metrics.
    let mut gate_results: Vec<GateResult> = verify::content_problems(&source, reporter)
        .into_iter()
        .map(|p| GateResult {
            gate: format!("{INTEGRITY}: {}", p.detail),
            metric: INTEGRITY.into(),
            actual: None,
            outcome: Outcome::Fail,
        })
        .collect();
    gate_results.extend(gates::evaluate(&parsed_gates, &metrics));
    Ok(ValidatedPlan {
        warnings,
        source,
        target,
        selection,
        files,
        results: opts.results,
        metrics,
        result_notes,
        gates: gate_results,
        source_meta,
        project_root: opts.project_root,
        command: opts.command,
        now: opts.now,
    })
}

/// The refusal for a `--step` that is not a folder of the run.
fn no_step(run_dir: &Path, step: &str) -> ArtifactError {
    let mut steps: Vec<String> = std::fs::read_dir(run_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    steps.sort();
    ArtifactError::not_found(format!(
        "no step '{step}' in {}: --step takes a folder of the run (folders: {}); pick single files with --file PATH",
        run_dir.display(),
        if steps.is_empty() {
            "none".to_string()
        } else {
            steps.join(", ")
        }
    ))
}

/// The run-relative paths of the files at or under `rel`.
fn files_under(run_dir: &Path, rel: &str) -> Result<Vec<String>> {
    let path = run_dir.join(rel);
    if !path.symlink_metadata()?.is_dir() {
        return Ok(vec![rel.to_string()]);
    }
    Ok(manifest::list_files(&path)?
        .into_iter()
        .map(|f| format!("{rel}/{}", f.rel))
        .collect())
}

fn globs(patterns: &[String], setting: &str) -> Result<globset::GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| {
                ArtifactError::usage(format!("bad pattern '{pattern}' in {setting}: {e}"))
            })?;
        builder.add(glob);
    }
    Ok(builder.build()?)
}

/// Write the validated artifact the plan describes.
pub fn promote_validated(
    store: &Store,
    plan: ValidatedPlan,
    reporter: &dyn Progress,
) -> Result<Promoted> {
    // A signal stops the promotion between files or before publishing,
    // never half-way through (see `crate::interrupt`).
    let _busy = crate::interrupt::busy();
    check_gates(
        &plan.gates,
        "fix the run or the results, or change [promote.validated] require",
    )?;
    let raw = plan.source.location.qualified();
    let (staging, files, linked_bytes) =
        stage_files(store, &plan.target.id, &plan.files, None, reporter)?;
    let source_meta = plan
        .source_meta
        .unwrap_or_else(|| legacy_metadata(&plan.source));
    let results_file = plan.files.iter().find_map(|f| {
        f.to.starts_with(&format!("{VALIDATION_DIR}/"))
            .then(|| f.to.clone())
    });
    let gates_json = serde_json::to_value(&plan.gates)?;
    let mut lineage_extra = Map::new();
    let mut promotion_extra = Map::new();
    match &plan.selection {
        Selection::Checkpoint { name, file } => {
            lineage_extra.insert("checkpoint".into(), json!(name));
            lineage_extra.insert("checkpoint_file".into(), json!(file));
            promotion_extra.insert("checkpoint".into(), json!(name));
        }
        Selection::Whole => {
            promotion_extra.insert("selection".into(), json!("whole"));
        }
        Selection::Parts { paths, .. } => {
            lineage_extra.insert("parts".into(), json!(paths));
            promotion_extra.insert("selection".into(), json!("parts"));
            promotion_extra.insert("parts".into(), json!(paths));
        }
    }
    let mut meta = Metadata {
        schema_version: SCHEMA_VERSION,
        id: String::new(),
        namespace: plan.target.namespace.to_string(),
        stage: Stage::Validated,
        created_at: plan.now.trunc_subsecs(6),
        status: RunStatus::Complete,
        config: source_meta.config,
        params: source_meta.params,
        metrics: plan.metrics,
        tags: source_meta.tags,
        files: Vec::new(),
        total_size: 0,
        file_count: 0,
        features: source_meta.features,
        lineage: Lineage {
            source: Some(format!("promote {raw}")),
            parent: Some(raw.clone()),
            promoted_from: Some(raw.clone()),
            extra: lineage_extra,
        },
        producer: ops::producer(&plan.project_root, plan.command),
        pinned: false,
        // A legacy trainer's own fields (seed 002's model_type, symbol, ...)
        // travel; the raw run's records of how it was made do not.
        extra: source_meta
            .extra
            .into_iter()
            .filter(|(k, _)| k == "source_metadata")
            .collect(),
    };
    let mut promotion = json!({
        "to": "validated",
        "by": crate::host::current_user(),
        "gates": gates_json,
        "results_file": results_file,
    });
    if let Value::Object(obj) = &mut promotion {
        obj.extend(promotion_extra.clone());
        if !plan.result_notes.is_empty() {
            obj.insert("result_notes".into(), json!(plan.result_notes));
        }
    }
    meta.extra.insert("promotion".into(), promotion);
    meta.set_files(files);
    let mut entry = journal::Entry::new("promote", Some(raw), None).with("to", "validated");
    for (key, value) in promotion_extra {
        entry = entry.with(&key, value);
    }
    let entry = entry.with("gates", gates_json);
    publish_readonly(
        store,
        staging,
        &mut meta,
        &plan.target,
        LatestPolicy::Advance,
        entry,
        linked_bytes,
    )
}

// --------------------------------------------------------------- production

/// Files of the raw run matched by the `include` globs: any file, in any
/// folder (`training_metadata.json`, `checkpoints/manifest.json`), but not
/// the run's own `metadata.json`, which the promotion writes anew.
pub(super) fn included_files(run_dir: &Path, include: &[String]) -> Result<Vec<String>> {
    let set = globs(include, "[promote.validated] include")?;
    Ok(manifest::list_files(run_dir)?
        .into_iter()
        .map(|f| f.rel)
        .filter(|rel| set.is_match(rel))
        .collect())
}
