//! Reading one run into a [`RunInfo`], whatever layout it came from:
//! native `metadata.json`, seed 003's `training_metadata.json`, a legacy
//! `metadata.json`, or no metadata at all.

use std::collections::BTreeMap;
use std::fs;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::store::metadata::{
    self, parse_time, FileEntry, Metadata, RunStatus, Summary, METADATA_FILE,
    TRAINING_METADATA_FILE,
};
use crate::store::metrics::{self, Metrics};
use crate::store::model::*;
use crate::store::refs::{self};

pub(crate) fn blank_run(location: RunLocation) -> RunInfo {
    RunInfo {
        reference: location.reference(),
        id: location.id.clone(),
        namespace: location.namespace.to_string(),
        stage: location.stage,
        created_at: refs::id_time(&location.id),
        status: RunStatus::Complete,
        size_bytes: 0,
        file_count: 0,
        model_count: 0,
        dataset_count: 0,
        metrics: BTreeMap::new(),
        params: BTreeMap::new(),
        tags: Vec::new(),
        latest: false,
        pinned: false,
        layout: RunLayout::Plain,
        problems: Vec::new(),
        location,
        detail: None,
    }
}

/// A run known only by its record (a remote's), as `list` and `show`
/// present it.
pub fn run_from_metadata(location: RunLocation, meta: Metadata, opts: &ReadOptions) -> RunInfo {
    let mut run = blank_run(location);
    apply_native(&mut run, meta, opts);
    run
}

/// Read one run, whatever its layout. Never fails: what cannot be read
/// becomes a problem on the run.
pub fn read_run(location: RunLocation, opts: &ReadOptions) -> RunInfo {
    let mut run = blank_run(location);
    let dir = run.location.path.clone();
    match metadata::read_no_follow(&dir.join(METADATA_FILE)) {
        Ok(bytes) => read_metadata_json(&mut run, &bytes, opts),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match metadata::read_no_follow(&dir.join(TRAINING_METADATA_FILE)) {
                Ok(bytes) => read_training_metadata(&mut run, &bytes, opts),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    read_plain(&mut run, opts, Map::new())
                }
                Err(e) => {
                    run.problems
                        .push(format!("cannot read {TRAINING_METADATA_FILE}: {e}"));
                    read_plain(&mut run, opts, Map::new());
                }
            }
        }
        Err(e) => {
            run.status = RunStatus::Unknown;
            run.problems
                .push(format!("cannot read {METADATA_FILE}: {e}"));
            read_plain(&mut run, opts, Map::new());
        }
    }
    if run.layout != RunLayout::Native {
        // A legacy run's metrics files (seed 004's `metrics/*.json`, a
        // `metrics.json`) count too; its metadata wins a clash.
        let mut from_files = metrics::read_run_files(&dir, &mut run.problems);
        from_files
            .values
            .retain(|k, _| !run.metrics.contains_key(k));
        keep_metrics(&mut run, from_files);
    }
    if run.created_at.is_none() {
        run.created_at = fs::symlink_metadata(&dir)
            .and_then(|m| m.modified())
            .ok()
            .map(DateTime::<Utc>::from);
    }
    run
}

pub(crate) fn corrupted(file: &str, err: impl std::fmt::Display) -> String {
    format!(
        "corrupted {file} ({err}); metrics are unavailable but the run's files are untouched: restore the file or re-register the folder"
    )
}

pub(crate) fn read_metadata_json(run: &mut RunInfo, bytes: &[u8], opts: &ReadOptions) {
    if !opts.detail {
        if let Ok(summary) = serde_json::from_slice::<Summary<'_>>(bytes) {
            if summary.schema_version == metadata::SCHEMA_VERSION {
                apply_summary(run, summary, opts);
                return;
            }
        }
    }
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => {
            run.status = RunStatus::Unknown;
            run.problems.push(corrupted(METADATA_FILE, e));
            read_plain(run, opts, Map::new());
            return;
        }
    };
    let Value::Object(obj) = value else {
        run.status = RunStatus::Unknown;
        run.problems
            .push(corrupted(METADATA_FILE, "not a JSON object"));
        read_plain(run, opts, Map::new());
        return;
    };
    match obj.get("schema_version").and_then(Value::as_u64) {
        None => read_legacy_metadata(run, obj, opts),
        Some(v) => {
            if v > metadata::SCHEMA_VERSION as u64 {
                run.problems.push(format!(
                    "{METADATA_FILE} has schema_version {v}, newer than this artifactctl reads ({}): upgrade artifactctl",
                    metadata::SCHEMA_VERSION
                ));
            }
            match serde_json::from_value::<Metadata>(Value::Object(obj.clone())) {
                Ok(meta) => apply_native(run, meta, opts),
                Err(e) => {
                    run.status = RunStatus::Unknown;
                    run.problems.push(corrupted(METADATA_FILE, e));
                    read_plain(run, opts, obj);
                }
            }
        }
    }
}

pub(crate) fn apply_summary(run: &mut RunInfo, s: Summary<'_>, opts: &ReadOptions) {
    run.layout = RunLayout::Native;
    if let Some(t) = s.created_at.as_deref().and_then(parse_time) {
        run.created_at = Some(t);
    }
    run.status = s.status.unwrap_or(RunStatus::Unknown);
    run.metrics = s
        .metrics
        .iter()
        .filter_map(|(k, v)| v.as_f64().filter(|f| f.is_finite()).map(|f| (k.clone(), f)))
        .collect();
    run.params = s.params;
    run.tags = s.tags;
    run.pinned = s.pinned;
    run.size_bytes = s.total_size;
    run.file_count = s.file_count;
    (run.model_count, run.dataset_count) = metadata::count_models_and_datasets(
        s.files
            .iter()
            .map(|f| (f.path.as_ref(), f.symlink.is_some())),
        &s.dataset_steps,
        |p| opts.is_model(p),
    );
}

pub(crate) fn apply_native(run: &mut RunInfo, meta: Metadata, opts: &ReadOptions) {
    run.layout = RunLayout::Native;
    run.created_at = Some(meta.created_at);
    run.status = meta.status;
    run.metrics = meta.metrics.clone();
    run.params = meta.params.clone();
    run.tags = meta.tags.clone();
    run.pinned = meta.pinned;
    run.size_bytes = meta.total_size;
    run.file_count = meta.file_count;
    let dataset_steps: Vec<String> = meta
        .extra
        .get(metadata::DATASET_STEPS)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    (run.model_count, run.dataset_count) = metadata::count_models_and_datasets(
        meta.files
            .iter()
            .map(|f| (f.path.as_str(), f.symlink.is_some())),
        &dataset_steps,
        |p| opts.is_model(p),
    );
    let features = meta
        .features
        .as_ref()
        .map(|f| serde_json::to_value(f).unwrap_or_default());
    if let Some(f) = &features {
        run.problems.extend(metadata::feature_problems(f));
    }
    if opts.detail {
        let files = meta.files.iter().map(file_row).collect();
        let extra = meta.extra.clone();
        run.detail = Some(Box::new(RunDetail {
            path: run.location.path.clone(),
            files,
            features,
            lineage: serde_json::to_value(&meta.lineage).unwrap_or_default(),
            config: Value::Object(meta.config.clone()),
            producer: serde_json::to_value(&meta.producer).unwrap_or_default(),
            extra,
        }));
    }
}

pub(crate) fn file_row(f: &FileEntry) -> FileRow {
    FileRow {
        path: f.path.clone(),
        size: f.size,
        blake3: f.blake3.clone(),
        symlink: f.symlink.clone(),
    }
}

/// Metric values into `metrics`; what is not a number into `params`, so
/// nothing a trainer wrote is dropped (docs/metadata.md).
fn keep_metrics(run: &mut RunInfo, m: Metrics) {
    run.metrics.extend(m.values);
    for (k, v) in m.notes {
        run.params.entry(k).or_insert(v);
    }
}

/// The creation time under `time_key` and the numeric `metrics` of a legacy
/// metadata object.
pub(crate) fn read_time_and_metrics(run: &mut RunInfo, obj: &Map<String, Value>, time_key: &str) {
    if let Some(t) = obj
        .get(time_key)
        .and_then(Value::as_str)
        .and_then(parse_time)
    {
        run.created_at = Some(t);
    }
    if let Some(Value::Object(m)) = obj.get("metrics") {
        keep_metrics(run, Metrics::from_object(m));
    }
}

/// Seed 002 (and seed 004's validated) `metadata.json`: no schema version,
/// feature fields at the top, `created_at` often without a time zone.
pub(crate) fn read_legacy_metadata(
    run: &mut RunInfo,
    mut obj: Map<String, Value>,
    opts: &ReadOptions,
) {
    read_time_and_metrics(run, &obj, "created_at");
    let features = metadata::legacy_features(&obj);
    if let Some(f) = &features {
        run.problems.extend(metadata::feature_problems(f));
        for k in metadata::FEATURE_KEYS {
            obj.remove(k);
        }
    }
    read_plain(run, opts, obj);
    run.layout = RunLayout::LegacyMetadata;
    if let Some(detail) = run.detail.as_mut() {
        detail.features = features;
    }
}

/// Seed 003's `training_metadata.json`: `timestamp`, `models`, `metrics`
/// (`sharpe_ratio`, `accuracy`, ...), `ensemble_weights`, `configs`.
pub(crate) fn read_training_metadata(run: &mut RunInfo, bytes: &[u8], opts: &ReadOptions) {
    let parsed: Result<Value, _> = serde_json::from_slice(bytes);
    let obj = match parsed {
        Ok(Value::Object(obj)) => obj,
        Ok(_) => {
            run.problems
                .push(corrupted(TRAINING_METADATA_FILE, "not a JSON object"));
            Map::new()
        }
        Err(e) => {
            run.problems.push(corrupted(TRAINING_METADATA_FILE, e));
            Map::new()
        }
    };
    read_time_and_metrics(run, &obj, "timestamp");
    let models = obj
        .get("models")
        .and_then(Value::as_array)
        .map(|m| m.len() as u64);
    read_plain(run, opts, obj);
    run.layout = RunLayout::TrainingMetadata;
    if let Some(n) = models {
        run.model_count = n;
    }
}

/// Sizes and counts by walking the run (legacy runs have no manifest).
/// `rest` is the metadata object left after the known fields were taken.
pub(crate) fn read_plain(run: &mut RunInfo, opts: &ReadOptions, mut rest: Map<String, Value>) {
    let dir = run.location.path.clone();
    let mut files = Vec::new();
    let (mut size, mut count, mut models) = (0u64, 0u64, 0u64);
    for entry in walkdir::WalkDir::new(&dir)
        .follow_links(false)
        .sort_by_file_name()
    {
        let Ok(entry) = entry else { continue };
        if entry.depth() == 0 || entry.file_type().is_dir() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(&dir)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default();
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        let symlink = entry.file_type().is_symlink().then(|| {
            fs::read_link(entry.path())
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let len = if symlink.is_some() { 0 } else { len };
        size += len;
        count += 1;
        if symlink.is_none() && opts.is_model(&rel) {
            models += 1;
        }
        if opts.detail {
            files.push(FileRow {
                path: rel,
                size: len,
                blake3: None,
                symlink,
            });
        }
    }
    run.size_bytes = size;
    run.file_count = count;
    run.model_count = models;
    if run.layout == RunLayout::Native {
        run.layout = RunLayout::Plain;
    }
    if opts.detail {
        let config = rest
            .remove("config")
            .or_else(|| rest.remove("configs"))
            .unwrap_or_else(|| Value::Object(Map::new()));
        rest.remove("metrics");
        run.detail = Some(Box::new(RunDetail {
            path: dir,
            files,
            features: None,
            lineage: Value::Object(Map::new()),
            config,
            producer: Value::Object(Map::new()),
            extra: rest,
        }));
    }
}
