//! Promotion to validated: a chosen checkpoint (or the whole run), its
//! companions and validation results, behind the metric gates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, SubsecRound, Utc};
use globset::{GlobBuilder, GlobSetBuilder};
use serde_json::{json, Map, Value};

use super::*;
use crate::error::ArtifactError;
use crate::ops::{self, LatestPolicy};
use crate::policy::gates::{self, GateResult};
use crate::progress::Progress;
use crate::store::journal;
use crate::store::manifest;
use crate::store::metadata::{self, Lineage, Metadata, RunStatus, SCHEMA_VERSION};
use crate::store::refs::{self, RunRef, Stage};
use crate::store::{ReadOptions, RunInfo, RunLocation, Store};

#[derive(Debug, Clone)]
pub struct ValidatedOptions {
    pub reference: RunRef,
    /// A checkpoint name (`epoch_70`, `best`, `latest`, or a file name).
    pub checkpoint: String,
    /// Globs of raw-run files carried along (`[promote.validated] include`).
    pub include: Vec<String>,
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

#[derive(Debug, Clone)]
pub struct ValidatedPlan {
    pub source: RunInfo,
    pub target: RunLocation,
    /// The checkpoint's stem (`epoch_70`) and its path in the raw run.
    pub checkpoint: String,
    pub checkpoint_file: String,
    pub files: Vec<PlannedFile>,
    pub results: Option<PathBuf>,
    pub metrics: BTreeMap<String, f64>,
    pub gates: Vec<GateResult>,
    source_meta: Option<Metadata>,
    project_root: PathBuf,
    command: Vec<String>,
    now: DateTime<Utc>,
}

/// Check a promotion to validated without writing anything.
pub fn plan_validated(store: &Store, opts: ValidatedOptions) -> Result<ValidatedPlan> {
    let gates = gates::parse_all(&opts.require, "[promote.validated] require")?;
    refs::check_id(&opts.checkpoint, "--checkpoint")?;
    if let Some(id) = &opts.id {
        refs::check_id(id, "--id")?;
    }
    store.stage_dir(Stage::Validated)?;
    let resolved = store.resolve(&opts.reference)?;
    let location = resolved.location;
    if location.stage != Stage::Raw {
        return Err(ArtifactError::usage(format!(
            "{} is {}; --to validated takes a raw run (e.g. gru/BTCEUR/20261123_101500)",
            location.reference(),
            location.stage
        ))
        .into());
    }
    let source = store.read_run(location.clone(), &ReadOptions::new(&[], false)?);
    require_complete(&source)?;
    let source_meta = Metadata::read(&location.path).ok();

    let (checkpoint_file, checkpoint_path) = find_checkpoint(&location.path, &opts.checkpoint)?;
    let checkpoint = stem(&opts.checkpoint).to_string();
    let id = opts
        .id
        .clone()
        .unwrap_or_else(|| format!("{}_{checkpoint}_validated", location.id));
    refs::check_id(&id, "--id")?;
    let target = store.location(Stage::Validated, &location.namespace, &id)?;
    refuse_existing(&target, "choose another --id")?;

    let known = manifest_index(source_meta.as_ref());
    let ext = Path::new(&checkpoint_file)
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let mut files = vec![planned(
        checkpoint_path,
        format!("model{ext}"),
        known.get(checkpoint_file.as_str()).copied(),
    )?];
    for rel in included_files(&location.path, &opts.include)? {
        let from = location.path.join(&rel);
        let entry = known.get(rel.as_str()).copied();
        files.push(planned(from, rel, entry)?);
    }

    let mut metrics = training_metrics(&location.path);
    metrics.extend(source.metrics.clone());
    if let Some(results) = &opts.results {
        metrics.extend(results_metrics(results)?);
        let name = results
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "results.json".into());
        let mut results_file = planned(results.clone(), format!("{VALIDATION_DIR}/{name}"), None)?;
        results_file.in_store = false;
        files.push(results_file);
    }
    let gates = gates::evaluate(&gates, &metrics);
    Ok(ValidatedPlan {
        source,
        target,
        checkpoint,
        checkpoint_file,
        files,
        results: opts.results,
        metrics,
        gates,
        source_meta,
        project_root: opts.project_root,
        command: opts.command,
        now: opts.now,
    })
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
        .unwrap_or_else(|| empty_metadata(&plan.source));
    let results_file = plan.files.iter().find_map(|f| {
        f.to.starts_with(&format!("{VALIDATION_DIR}/"))
            .then(|| f.to.clone())
    });
    let gates_json = serde_json::to_value(&plan.gates)?;
    let mut lineage_extra = Map::new();
    lineage_extra.insert("checkpoint".into(), json!(plan.checkpoint));
    lineage_extra.insert("checkpoint_file".into(), json!(plan.checkpoint_file));
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
        extra: Map::new(),
    };
    meta.extra.insert(
        "promotion".into(),
        json!({
            "to": "validated",
            "by": crate::host::current_user(),
            "checkpoint": plan.checkpoint,
            "gates": gates_json,
            "results_file": results_file,
        }),
    );
    meta.set_files(files);
    let entry = journal::Entry::new("promote", Some(raw), None)
        .with("to", "validated")
        .with("checkpoint", plan.checkpoint.clone())
        .with("gates", gates_json);
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

/// Regular files of the raw run matched by the `include` globs, outside
/// `checkpoints/` (only the chosen checkpoint goes) and not the metadata.
pub(super) fn included_files(run_dir: &Path, include: &[String]) -> Result<Vec<String>> {
    let mut builder = GlobSetBuilder::new();
    for pattern in include {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| {
                ArtifactError::usage(format!(
                    "bad pattern '{pattern}' in [promote.validated] include: {e}"
                ))
            })?;
        builder.add(glob);
    }
    let set = builder.build()?;
    let mut out = Vec::new();
    for found in manifest::list_files(run_dir)? {
        if found.symlink.is_some()
            || found.rel.starts_with(&format!("{CHECKPOINT_DIR}/"))
            || found.rel == metadata::TRAINING_METADATA_FILE
        {
            continue;
        }
        if set.is_match(&found.rel) {
            out.push(found.rel);
        }
    }
    Ok(out)
}

/// Numbers and booleans of `metrics/training_metrics.json`, if the run has it.
pub(super) fn training_metrics(run_dir: &Path) -> BTreeMap<String, f64> {
    std::fs::read(run_dir.join(TRAINING_METRICS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
        .map(|m| metadata::numeric_metrics(&m))
        .unwrap_or_default()
}

/// The numbers and booleans of a results file; nested objects become dotted
/// names (`{"coverage": {"test": 0.96}}` gives `coverage.test`).
pub(super) fn results_metrics(path: &Path) -> Result<BTreeMap<String, f64>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ArtifactError::usage(format!("cannot read --results {}: {e}", path.display()))
    })?;
    let obj: Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
        ArtifactError::usage(format!(
            "--results {} is not a JSON object: {e}; pass the validation results as JSON",
            path.display()
        ))
    })?;
    let mut flat = Map::new();
    flatten("", &obj, &mut flat);
    Ok(metadata::numeric_metrics(&flat))
}

pub(super) fn flatten(prefix: &str, obj: &Map<String, Value>, out: &mut Map<String, Value>) {
    for (k, v) in obj {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Object(inner) => flatten(&key, inner, out),
            other => {
                out.insert(key, other.clone());
            }
        }
    }
}
