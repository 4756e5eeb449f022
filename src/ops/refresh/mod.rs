//! `refresh`: run the `[refresh]` pipeline into a new raw run (seeds 000 and
//! 001). The run is assembled in a staging folder inside the store (steps
//! write to `<staging>/<step>/`, logs go to `<staging>/logs/<step>.log`),
//! then published whole with its status: `complete` runs may become
//! `latest`, `failed` and `interrupted` ones are kept for debugging only.
//!
//! A step whose fingerprint (command, environment, deps, needed outputs)
//! equals the one recorded in the latest complete run is not run again: its
//! recorded outputs are brought in by [`fsx::share_tree`] (hard links of
//! read-only files, or reflinks), and their manifest is taken from the record
//! instead of hashing the bytes again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Map, Value};

use crate::config::RefreshConfig;
use crate::error::ArtifactError;
use crate::fsx::{self, Staging};
use crate::ops::{self, LatestPolicy};
use crate::policy::pipeline::{
    self, Action, Base, Fingerprint, Pipeline, Planned, Selection, StepRecord, StepStatus, LOGS_DIR,
};
use crate::progress::{Progress, StepReporter};
use crate::store::journal;
use crate::store::manifest;
use crate::store::metadata::{self, FileEntry, Lineage, Metadata, RunStatus, SCHEMA_VERSION};
use crate::store::refs::{self, Namespace, Stage};
use crate::store::{RunLocation, Store};

mod base;
mod reaper;
mod runner;
use base::*;
pub use base::{base_in, base_run};
use runner::*;

/// The file a step writes to have its numbers merged into the run's metrics.
pub const STEP_METRICS_FILE: &str = "metrics.json";
#[derive(Debug, Clone, Default)]
pub struct RefreshOptions {
    pub project_root: PathBuf,
    pub config: RefreshConfig,
    pub selection: Selection,
    pub namespace: Namespace,
    pub id: Option<String>,
    /// Given to steps as `ARTIFACTCTL_DATASET`, recorded in lineage.
    pub dataset: Option<PathBuf>,
    /// `--param`, over `[refresh.params]`.
    pub params: BTreeMap<String, Value>,
    pub force: bool,
    pub keep_going: bool,
    /// Steps run at once (at least 1).
    pub jobs: usize,
    /// Pass each output line to [`StepReporter::step_log`] as well as the log
    /// file.
    pub stream_logs: bool,
    pub command: Vec<String>,
    /// The time the run is stamped with (its start, and the default id);
    /// `None` reads the clock.
    pub now: Option<DateTime<Utc>>,
    /// `--verify-reuse`: re-hash every output of the base run before reusing
    /// it, instead of trusting files whose size and stamp are unchanged.
    pub verify_reuse: bool,
    /// `--publish-unchanged`: publish a run of reused outputs even when
    /// nothing changed (by default an up-to-date refresh writes nothing).
    pub publish_unchanged: bool,
}

/// One line of the plan.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedStep {
    pub name: String,
    pub group: Option<String>,
    /// `run`, `reuse`, `carry` (left out, outputs taken from the base run) or `skip`.
    pub action: &'static str,
    pub reason: String,
    pub reused_from: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// The latest complete run, compared with for reuse.
    pub base: Option<String>,
    pub steps: Vec<PlannedStep>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StepOutcome {
    pub name: String,
    pub status: StepStatus,
    pub duration_s: f64,
    pub exit_code: Option<i32>,
    pub reused_from: Option<String>,
    #[serde(skip)]
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Refreshed {
    /// The published run, or the base run when nothing changed.
    pub location: RunLocation,
    pub status: RunStatus,
    pub became_latest: bool,
    /// Every selected step would be reused from `location`: nothing was
    /// written (no run, no journal line, `latest` unchanged).
    pub up_to_date: bool,
    pub steps: Vec<StepOutcome>,
    pub warnings: Vec<String>,
}

/// What a refresh knows before it runs anything.
struct Prepared {
    pipeline: Pipeline,
    base: Option<(RunLocation, Base)>,
    partial: Vec<Fingerprint>,
    planned: Vec<Planned>,
    params: BTreeMap<String, Value>,
    dataset: Option<(PathBuf, String)>,
    warnings: Vec<String>,
}

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Run => "run",
        Action::Reuse => "reuse",
        Action::Carry => "carry",
        Action::Skip => "skip",
    }
}

/// What `refresh` would do, without running anything (`--dry-run`).
pub fn plan(store: &Store, opts: &RefreshOptions) -> Result<Plan> {
    let prepared = prepare(store, opts)?;
    Ok(plan_of(&prepared))
}

fn plan_of(p: &Prepared) -> Plan {
    let base_ref = p.base.as_ref().map(|(_, b)| b.reference.clone());
    Plan {
        base: base_ref.clone(),
        steps: p
            .planned
            .iter()
            .map(|s| {
                let step = &p.pipeline.steps[s.index];
                PlannedStep {
                    name: step.name.clone(),
                    group: step.group.clone(),
                    action: action_name(&s.action),
                    reason: s.reason.clone(),
                    reused_from: matches!(s.action, Action::Reuse | Action::Carry)
                        .then(|| base_ref.clone())
                        .flatten(),
                }
            })
            .collect(),
    }
}

fn prepare(store: &Store, opts: &RefreshOptions) -> Result<Prepared> {
    let pipeline = Pipeline::new(&opts.config.steps)?;
    let deselected = pipeline::deselected(&pipeline, &opts.selection)?;
    if let Some(id) = &opts.id {
        refs::check_id(id, "--id")?;
    }
    store.stage_dir(Stage::Raw)?;
    let mut warnings = Vec::new();
    let base = find_base(store, &opts.namespace, opts.verify_reuse, &mut warnings);
    if opts.selection.models_only && base.is_none() {
        return Err(ArtifactError::not_found(format!(
            "--models-only trains against the datasets of the latest complete run, and {} has none yet: run `artifactctl refresh` (or `--datasets-only`) first",
            where_runs_go(store, &opts.namespace)
        ))
        .into());
    }
    let mut params: BTreeMap<String, Value> = opts
        .config
        .params
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(Value::Null)))
        .collect();
    params.extend(opts.params.clone());
    let dataset = match &opts.dataset {
        Some(path) => Some(dataset_of(&opts.project_root, path)?),
        None => None,
    };
    let env = pipeline::env_hash(
        &opts.config.env,
        &params,
        dataset.as_ref().map(|(_, h)| h.as_str()),
    );
    // Steps often share patterns (`src/**`): hash each once per refresh.
    let mut dep_hashes = BTreeMap::new();
    let partial = pipeline
        .steps
        .iter()
        .zip(&deselected)
        .map(|(step, left_out)| {
            let deps = if left_out.is_some() {
                BTreeMap::new()
            } else {
                hash_deps(
                    &opts.project_root,
                    store.dir(),
                    &step.name,
                    &step.deps,
                    &mut dep_hashes,
                )?
            };
            Ok(Fingerprint {
                command: step.run.clone(),
                env: env.clone(),
                deps,
                needs: BTreeMap::new(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let planned = pipeline::plan(
        &pipeline,
        &deselected,
        opts.force,
        base.as_ref().map(|(_, b)| b),
        &partial,
    )?;
    Ok(Prepared {
        pipeline,
        base,
        partial,
        planned,
        params,
        dataset,
        warnings,
    })
}

fn where_runs_go(store: &Store, ns: &Namespace) -> String {
    match store.ns_dir(Stage::Raw, ns) {
        Ok(dir) => dir.display().to_string(),
        Err(_) => store.dir().display().to_string(),
    }
}

/// Run the pipeline and publish the run, whatever its outcome.
///
/// Steps are reported to `steps`; notes and the hashing of the run's files
/// to `progress`.
pub fn refresh(
    store: &Store,
    opts: &RefreshOptions,
    steps: &dyn StepReporter,
    progress: &dyn Progress,
) -> Result<Refreshed> {
    // SIGINT and SIGTERM stop the steps and publish the run as interrupted
    // (see `crate::interrupt`), instead of ending the process.
    let _busy = crate::interrupt::busy();
    let started = opts.now.unwrap_or_else(Utc::now).trunc_subsecs(6);
    let mut prepared = prepare(store, opts)?;
    if let Some(done) = up_to_date(&prepared, opts) {
        return Ok(done);
    }
    let (id, staging) = reserve(store, opts, started)?;
    let run_location = store.location(Stage::Raw, &opts.namespace, &id)?;
    progress.note(&format!(
        "refresh {}: {} steps{}",
        run_location.reference(),
        prepared.pipeline.steps.len(),
        prepared
            .base
            .as_ref()
            .map(|(_, b)| format!(", compared with {}", b.reference))
            .unwrap_or_default()
    ));
    let width = prepared
        .pipeline
        .steps
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    for step in plan_of(&prepared).steps {
        progress.note(&format!(
            "  {:<5} {:<width$}  {}",
            step.action, step.name, step.reason
        ));
    }
    std::fs::create_dir(staging.path().join(LOGS_DIR))
        .with_context(|| format!("cannot create {}", staging.path().display()))?;

    let mut runner = Runner {
        opts,
        prepared: &prepared,
        staging: staging.path(),
        run_id: &id,
        reporter: steps,
        records: vec![None; prepared.pipeline.steps.len()],
        reasons: vec![String::new(); prepared.pipeline.steps.len()],
        pending: BTreeMap::new(),
        reaper: None,
    };
    // A signal after the last step ended still stops the run: it is
    // published as interrupted, like one that came mid-step.
    let interrupted = runner.run_all()? || crate::interrupt::requested();
    let records: Vec<StepRecord> = prepared
        .pipeline
        .order
        .iter()
        .map(|&i| runner.records[i].clone().expect("every step is settled"))
        .collect();
    let reasons = runner.reasons.clone();

    let status = if interrupted {
        RunStatus::Interrupted
    } else if records.iter().any(|r| r.status == StepStatus::Failed) {
        RunStatus::Failed
    } else {
        RunStatus::Complete
    };
    let files = run_manifest(staging.path(), &records, progress)?;
    let step_metrics = step_metrics(staging.path(), &records, &mut prepared.warnings);
    let metrics = step_metrics.values;
    // A step's non-numbers (a model name, a status) are kept as params,
    // by the same rules as every other metrics source.
    let mut run_params = prepared.params.clone();
    for (key, value) in step_metrics.notes {
        run_params.entry(key).or_insert(value);
    }
    let took_from_base = records.iter().any(|r| r.reused_from.is_some());
    let mut lineage = Lineage {
        source: Some("refresh".into()),
        parent: took_from_base
            .then(|| prepared.base.as_ref().map(|(l, _)| l.qualified()))
            .flatten(),
        ..Default::default()
    };
    if let Some((path, hash)) = &prepared.dataset {
        lineage.extra.insert(
            "dataset".into(),
            serde_json::json!({"path": path, "blake3": hash}),
        );
    }
    let mut config = Map::new();
    config.insert(
        "refresh".into(),
        serde_json::to_value(&opts.config).unwrap_or(Value::Null),
    );
    let mut extra = Map::new();
    extra.insert("steps".into(), serde_json::to_value(&records)?);
    let dataset_steps: Vec<&str> = records
        .iter()
        .filter(|r| r.group.as_deref() == Some(pipeline::DATASETS_GROUP) && r.output_hash.is_some())
        .map(|r| r.name.as_str())
        .collect();
    extra.insert(
        metadata::DATASET_STEPS.into(),
        serde_json::to_value(dataset_steps)?,
    );
    let mut meta = Metadata {
        schema_version: SCHEMA_VERSION,
        id: id.clone(),
        namespace: opts.namespace.to_string(),
        stage: Stage::Raw,
        created_at: started,
        status,
        config,
        params: run_params,
        metrics,
        tags: Vec::new(),
        files: Vec::new(),
        total_size: 0,
        file_count: 0,
        features: None,
        lineage,
        producer: ops::producer(&opts.project_root, opts.command.clone()),
        pinned: false,
        extra,
    };
    meta.set_files(files);
    let entry = journal::Entry::new("refresh", None, None)
        .with("status", status.as_str())
        .with(
            "steps_ran",
            records
                .iter()
                .filter(|r| r.status == StepStatus::Ran)
                .count(),
        )
        .with(
            "steps_reused",
            records
                .iter()
                .filter(|r| r.status == StepStatus::Reused)
                .count(),
        );
    let published = ops::publish_run(
        store,
        staging,
        &mut meta,
        ops::IdRequest::Reserved(&id),
        LatestPolicy::Advance,
        entry,
    )
    .map_err(|e| ops::unless_published(e, "the refresh run could not be published".into()))?;
    let steps = records
        .iter()
        .zip(prepared.pipeline.order.iter())
        .map(|(r, &i)| StepOutcome {
            name: r.name.clone(),
            status: r.status,
            duration_s: r.duration_s,
            exit_code: r.exit_code,
            reused_from: r.reused_from.clone(),
            reason: reasons[i].clone(),
        })
        .collect();
    Ok(Refreshed {
        up_to_date: false,
        location: published.location,
        status,
        became_latest: published.became_latest,
        steps,
        warnings: {
            prepared.warnings.extend(published.notes.iter().cloned());
            prepared.warnings
        },
    })
}

/// Pick the run id and create the staging folder labelled with it, under the
/// store lock, so two refreshes started together get distinct ids and the
/// id given to steps is the one the run is published under.
fn reserve(
    store: &Store,
    opts: &RefreshOptions,
    started: DateTime<Utc>,
) -> Result<(String, Staging)> {
    let _lock = ops::lock(store)?;
    let busy = fsx::live_staging_labels(store.dir());
    let id = match &opts.id {
        Some(id) => {
            let location = store.location(Stage::Raw, &opts.namespace, id)?;
            if location.path.symlink_metadata().is_ok() || busy.contains(&staging_label(id)) {
                return Err(ArtifactError::conflict(format!(
                    "{} already exists or is being built by another refresh; ids are never reused: choose another --id",
                    location.reference()
                ))
                .into());
            }
            id.clone()
        }
        None => {
            ops::ids::choose(
                store,
                Stage::Raw,
                &opts.namespace,
                ops::IdRequest::Default(started),
            )?
            .location
            .id
        }
    };
    let staging = Staging::create(store.dir(), &id).with_context(|| {
        format!(
            "cannot create a staging folder in {}",
            store.internal_dir().display()
        )
    })?;
    Ok((id, staging))
}

/// What [`Staging`] makes of a label.
fn staging_label(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// Every file of the staged run: step outputs from their records (hashed
/// when the step ended, or taken from the base run), the rest hashed now.
fn run_manifest(
    staging: &Path,
    records: &[StepRecord],
    reporter: &dyn Progress,
) -> Result<Vec<FileEntry>> {
    let recorded: BTreeSet<&str> = records
        .iter()
        .filter(|r| staging.join(&r.name).is_dir())
        .map(|r| r.name.as_str())
        .collect();
    let rest: Vec<manifest::Found> = manifest::list_files(staging)?
        .into_iter()
        .filter(|f| {
            let top = f.rel.split('/').next().unwrap_or_default();
            !(recorded.contains(top) && f.rel.contains('/'))
        })
        .collect();
    let mut files = manifest::hash_all(rest, reporter)?;
    for record in records
        .iter()
        .filter(|r| recorded.contains(r.name.as_str()))
    {
        files.extend(record.outputs.iter().map(|f| {
            let (path, path_bytes) =
                metadata::encode_rel_path(&Path::new(&record.name).join(f.rel_path()));
            FileEntry {
                path,
                path_bytes,
                ..f.clone()
            }
        }));
    }
    Ok(files)
}

/// Each step's `metrics.json`, merged as `<step>.<metric>`.
fn step_metrics(
    staging: &Path,
    records: &[StepRecord],
    warnings: &mut Vec<String>,
) -> crate::store::metrics::Metrics {
    let mut metrics = crate::store::metrics::Metrics::default();
    for record in records {
        let path = staging.join(&record.name).join(STEP_METRICS_FILE);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(obj)) => metrics.extend(
                crate::store::metrics::Metrics::from_object_prefixed(&record.name, &obj),
            ),
            _ => warnings.push(format!(
                "{} is not a JSON object; its metrics were not recorded (the file is kept)",
                path.display()
            )),
        }
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn deps(root: &Path, patterns: &[&str]) -> Result<BTreeMap<String, String>> {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        hash_deps(
            root,
            &root.join("artifacts"),
            "step",
            &patterns,
            &mut BTreeMap::new(),
        )
    }

    #[test]
    fn deps_hash_what_the_globs_match_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "bondtrader/ml/train.py", "fit()");
        write(root, "bondtrader/ml/deep/net.py", "layers");
        write(root, "bondtrader/data/load.py", "read()");
        write(root, "scripts/make_dataset.sh", "echo");
        let before = deps(
            root,
            &[
                "bondtrader/ml/**",
                "scripts/make_dataset.sh",
                "bondtrader/*/load.py",
            ],
        )
        .unwrap();
        assert_eq!(before.len(), 3);

        // Files outside the pattern, in .git or in the store change nothing.
        write(root, "bondtrader/data/other.py", "x");
        write(root, "bondtrader/ml/.git/HEAD", "ref");
        write(root, "artifacts/raw/r/model.pt", "w");
        assert_eq!(
            deps(
                root,
                &[
                    "bondtrader/ml/**",
                    "scripts/make_dataset.sh",
                    "bondtrader/*/load.py"
                ]
            )
            .unwrap(),
            before
        );

        // A change below `**` does.
        write(root, "bondtrader/ml/deep/net.py", "more layers");
        let after = deps(root, &["bondtrader/ml/**"]).unwrap();
        assert_ne!(after["bondtrader/ml/**"], before["bondtrader/ml/**"]);
        // A plain folder path means everything below it.
        assert_eq!(deps(root, &["bondtrader/ml"]).unwrap().len(), 1);
    }

    #[test]
    fn deps_that_match_nothing_or_leave_the_project_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "missing/**",
            "../etc/passwd",
            "/etc/passwd",
            "src/[",
            "a/../../b",
        ] {
            let err = deps(dir.path(), &[bad]).unwrap_err();
            assert!(format!("{err:#}").contains(bad), "{bad}: {err:#}");
        }
    }

    #[test]
    fn staging_labels_match_what_staging_makes() {
        assert_eq!(staging_label("20261123_101500_001"), "20261123_101500_001");
        assert_eq!(staging_label("v1.2+rc"), "v1_2_rc");
        assert_eq!(took(0.0123), "12ms");
        assert_eq!(took(3.44), "3.4s");
    }
}
