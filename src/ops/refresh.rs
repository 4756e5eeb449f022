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
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, SubsecRound, Utc};
use globset::GlobBuilder;
use serde_json::{Map, Value};

use crate::config::RefreshConfig;
use crate::error::ArtifactError;
use crate::fsx::{self, Staging, INTERNAL_DIR};
use crate::journal;
use crate::manifest;
use crate::metadata::{self, FileEntry, Lineage, Metadata, RunStatus, SCHEMA_VERSION};
use crate::ops::{self, LatestPolicy};
use crate::pipeline::{
    self, Action, Base, Fingerprint, Pipeline, Planned, Selection, StepRecord, StepStatus, LOGS_DIR,
};
use crate::progress::{Reporter, Silent};
use crate::refs::{self, Namespace, RunRef, Stage, Target};
use crate::store::{RunLocation, Store};

/// The file a step writes to have its numbers merged into the run's metrics.
pub const STEP_METRICS_FILE: &str = "metrics.json";
/// Steps run with `sh -c`; the POSIX path spares a search of `$PATH` per step.
const SHELL: &str = "/bin/sh";
/// How long children get to exit after SIGTERM before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How often the scheduler looks at the interrupt flag while steps run
/// (a step's end wakes it at once).
const POLL: Duration = Duration::from_millis(50);
/// How often children are polled where the kernel has no pidfd.
const FALLBACK_POLL: Duration = Duration::from_millis(2);

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
    /// Pass each output line to [`Reporter::step_log`] as well as the log file.
    pub stream_logs: bool,
    /// Set by the caller's SIGINT/SIGTERM handler: stop the children and
    /// publish the run as `interrupted`.
    pub interrupted: Option<&'static AtomicBool>,
    pub command: Vec<String>,
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
    pub location: RunLocation,
    pub status: RunStatus,
    pub became_latest: bool,
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
    let base = find_base(store, &opts.namespace, &mut warnings);
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

/// The latest complete run of the namespace and its step records.
fn find_base(
    store: &Store,
    ns: &Namespace,
    warnings: &mut Vec<String>,
) -> Option<(RunLocation, Base)> {
    let latest = RunRef {
        stage: Some(Stage::Raw),
        namespace: ns.clone(),
        target: Target::Latest,
    };
    let resolved = store.resolve(&latest).ok()?;
    let location = resolved.location;
    let meta = match Metadata::read(&location.path) {
        Ok(meta) => meta,
        Err(e) => {
            warnings.push(format!(
                "{} cannot be compared with ({e:#}); every step runs",
                location.reference()
            ));
            return None;
        }
    };
    if meta.status != RunStatus::Complete {
        return None;
    }
    let steps = match meta.extra.get("steps") {
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
    let reference = location.reference();
    Some((location, Base { reference, steps }))
}

/// The dataset path made absolute, and the hash of its content.
fn dataset_of(root: &Path, path: &Path) -> Result<(PathBuf, String)> {
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
fn hash_deps(
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
            let rel = entry
                .path()
                .strip_prefix(root)
                .unwrap_or(entry.path())
                .to_string_lossy()
                .into_owned();
            if matcher.as_ref().is_none_or(|m| m.is_match(&rel)) {
                found.push(manifest::Found {
                    rel,
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

/// Run the pipeline and publish the run, whatever its outcome.
pub fn refresh(store: &Store, opts: &RefreshOptions, reporter: &dyn Reporter) -> Result<Refreshed> {
    let started = Utc::now().trunc_subsecs(6);
    let mut prepared = prepare(store, opts)?;
    let (id, staging) = reserve(store, opts, started)?;
    let run_location = store.location(Stage::Raw, &opts.namespace, &id)?;
    reporter.note(&format!(
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
        reporter.note(&format!(
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
        reporter,
        records: vec![None; prepared.pipeline.steps.len()],
        reasons: vec![String::new(); prepared.pipeline.steps.len()],
        pending: BTreeMap::new(),
    };
    let interrupted = runner.run_all()?;
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
    let files = run_manifest(staging.path(), &records, reporter)?;
    let metrics = step_metrics(staging.path(), &records, &mut prepared.warnings);
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
    let mut meta = Metadata {
        schema_version: SCHEMA_VERSION,
        id: id.clone(),
        namespace: opts.namespace.to_string(),
        stage: Stage::Raw,
        created_at: started,
        status,
        config,
        params: prepared.params.clone(),
        metrics,
        tags: Vec::new(),
        files: Vec::new(),
        total_size: 0,
        file_count: 0,
        features: None,
        lineage,
        producer: ops::producer(&opts.project_root, opts.command.clone()),
        extra,
    };
    meta.set_files(files);
    let mut publish_id = id.clone();
    if opts.id.is_none() && run_location.path.symlink_metadata().is_ok() {
        // Another writer (a register in the same second) took the id meanwhile.
        publish_id = free_id(store, &opts.namespace, &id, &[])?;
        prepared.warnings.push(format!(
            "{} was taken while the steps ran; published as {publish_id} (steps saw ARTIFACTCTL_RUN_ID={id})",
            run_location.reference()
        ));
    }
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
        Some(&publish_id),
        LatestPolicy::Advance,
        entry,
    )
    .context("the refresh run could not be published")?;
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
        location: published.location,
        status,
        became_latest: published.became_latest,
        steps,
        warnings: prepared.warnings,
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
        None => free_id(store, &opts.namespace, &refs::default_id(started), &busy)?,
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

fn free_id(store: &Store, ns: &Namespace, base: &str, busy: &[String]) -> Result<String> {
    for attempt in 0..1000 {
        let id = if attempt == 0 {
            base.to_string()
        } else {
            refs::suffixed_id(base, attempt)
        };
        let taken = store
            .location(Stage::Raw, ns, &id)?
            .path
            .symlink_metadata()
            .is_ok()
            || busy.contains(&staging_label(&id));
        if !taken {
            return Ok(id);
        }
    }
    Err(ArtifactError::conflict(format!(
        "more than 999 runs were created in the second of {base}; pass --id"
    ))
    .into())
}

/// Every file of the staged run: step outputs from their records (hashed
/// when the step ended, or taken from the base run), the rest hashed now.
fn run_manifest(
    staging: &Path,
    records: &[StepRecord],
    reporter: &dyn Reporter,
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
        files.extend(record.outputs.iter().map(|f| FileEntry {
            path: format!("{}/{}", record.name, f.path),
            ..f.clone()
        }));
    }
    Ok(files)
}

/// Each step's `metrics.json`, merged as `<step>.<metric>`.
fn step_metrics(
    staging: &Path,
    records: &[StepRecord],
    warnings: &mut Vec<String>,
) -> BTreeMap<String, f64> {
    let mut metrics = BTreeMap::new();
    for record in records {
        let path = staging.join(&record.name).join(STEP_METRICS_FILE);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(obj)) => {
                for (k, v) in metadata::numeric_metrics(&obj) {
                    metrics.insert(format!("{}.{k}", record.name), v);
                }
            }
            _ => warnings.push(format!(
                "{} is not a JSON object of numbers; its metrics were not recorded (the file is kept)",
                path.display()
            )),
        }
    }
    metrics
}

/// A step's process while it runs.
struct Running<'s> {
    child: Child,
    /// Readable once the child exits (a Linux pidfd), so the scheduler sleeps
    /// in one `poll` until a step ends; `None` where unsupported, and the
    /// child is then polled.
    exited: Option<OwnedFd>,
    /// Threads copying its output to the log and the reporter.
    readers: Vec<ScopedJoinHandle<'s, ()>>,
    started: DateTime<Utc>,
    clock: Instant,
}

struct Runner<'a> {
    opts: &'a RefreshOptions,
    prepared: &'a Prepared,
    staging: &'a Path,
    run_id: &'a str,
    reporter: &'a dyn Reporter,
    records: Vec<Option<StepRecord>>,
    reasons: Vec<String>,
    /// Records of the steps running now, completed when they end.
    pending: BTreeMap<usize, StepRecord>,
}

impl<'a> Runner<'a> {
    fn interrupted(&self) -> bool {
        self.opts
            .interrupted
            .is_some_and(|flag| flag.load(Ordering::SeqCst))
    }

    /// Run every step; returns whether the run was interrupted.
    fn run_all(&mut self) -> Result<bool> {
        let p = self.prepared;
        let jobs = self.opts.jobs.max(1);
        let mut failed_first: Option<String> = None;
        let mut interrupted = false;
        std::thread::scope(|scope| -> Result<()> {
            let mut running: BTreeMap<usize, Running> = BTreeMap::new();
            let mut kill_at: Option<Instant> = None;
            loop {
                if kill_at.is_none() && self.interrupted() {
                    interrupted = true;
                    kill_at = Some(Instant::now() + KILL_GRACE);
                    signal_groups(&running, libc::SIGTERM);
                }
                if !interrupted {
                    self.start_ready(scope, &mut running, jobs, &failed_first)?;
                }
                if running.is_empty() {
                    break;
                }
                if kill_at.is_some_and(|at| Instant::now() >= at) {
                    signal_groups(&running, libc::SIGKILL);
                }
                for (i, status) in wait_any(&mut running, POLL) {
                    let step = running.remove(&i).expect("a running step");
                    for reader in step.readers {
                        let _ = reader.join();
                    }
                    let stopped = interrupted || self.interrupted();
                    let ok = self.finish(i, status, step.started, step.clock, stopped)?;
                    if !ok && failed_first.is_none() {
                        failed_first = Some(p.pipeline.steps[i].name.clone());
                    }
                }
            }
            Ok(())
        })?;
        // Whatever never started is skipped, with the reason.
        for &i in &p.pipeline.order {
            if self.records[i].is_none() {
                let reason = if interrupted {
                    "not started: interrupted".to_string()
                } else {
                    self.blocked_reason(i)
                        .unwrap_or_else(|| "not started: an earlier step failed; --keep-going runs independent steps".into())
                };
                self.settle_skipped(i, reason);
            }
        }
        Ok(interrupted)
    }

    /// Settle or start every step whose needs are settled.
    fn start_ready<'s>(
        &mut self,
        scope: &'s Scope<'s, '_>,
        running: &mut BTreeMap<usize, Running<'s>>,
        jobs: usize,
        failed_first: &Option<String>,
    ) -> Result<()>
    where
        'a: 's,
    {
        let p = self.prepared;
        let mut progressed = true;
        while progressed {
            progressed = false;
            for planned in &p.planned {
                let i = planned.index;
                if self.records[i].is_some() || running.contains_key(&i) {
                    continue;
                }
                if let Some(reason) = self.blocked_reason(i) {
                    self.settle_skipped(i, reason);
                    progressed = true;
                    continue;
                }
                if !p.pipeline.needs[i]
                    .iter()
                    .all(|&j| self.records[j].is_some())
                {
                    continue;
                }
                if let Some(first) = failed_first {
                    if !self.opts.keep_going
                        && matches!(planned.action, Action::Run | Action::Reuse)
                    {
                        self.settle_skipped(
                            i,
                            format!(
                                "not started: {first} failed; --keep-going runs independent steps"
                            ),
                        );
                        progressed = true;
                        continue;
                    }
                }
                match planned.action {
                    Action::Skip => self.settle_skipped(i, planned.reason.clone()),
                    Action::Carry => self.carry(i, planned.reason.clone()),
                    Action::Run | Action::Reuse => {
                        let now = self.full_fingerprint(i);
                        let base = p.base.as_ref().map(|(_, b)| b);
                        let reuse = if self.opts.force {
                            Err("--force".to_string())
                        } else {
                            pipeline::reusable(base, &p.pipeline.steps[i].name, &now).cloned()
                        };
                        match reuse {
                            Ok(record) if self.share(i, &record).is_ok() => {
                                self.settle_reused(
                                    i,
                                    record,
                                    format!(
                                        "unchanged since {}",
                                        base.map(|b| b.reference.as_str()).unwrap_or_default()
                                    ),
                                );
                            }
                            outcome => {
                                if running.len() >= jobs {
                                    continue;
                                }
                                let reason = match outcome {
                                    Err(reason) => reason,
                                    Ok(_) => "its recorded outputs could not be brought in".into(),
                                };
                                self.reasons[i] = reason;
                                if let Some(child) = self.spawn(i, now, scope)? {
                                    running.insert(i, child);
                                }
                            }
                        }
                    }
                }
                progressed = true;
            }
        }
        Ok(())
    }

    /// Why step `i` cannot run because of a need, if so.
    fn blocked_reason(&self, i: usize) -> Option<String> {
        let p = self.prepared;
        p.pipeline.needs[i].iter().find_map(|&j| {
            let record = self.records[j].as_ref()?;
            let name = &p.pipeline.steps[j].name;
            match record.status {
                StepStatus::Failed => Some(format!("needs {name}, which failed")),
                _ if record.output_hash.is_none() => {
                    Some(format!("needs {name}, which has no outputs"))
                }
                _ => None,
            }
        })
    }

    fn full_fingerprint(&self, i: usize) -> Fingerprint {
        let p = self.prepared;
        let mut fp = p.partial[i].clone();
        for &j in &p.pipeline.needs[i] {
            let hash = self.records[j]
                .as_ref()
                .and_then(|r| r.output_hash.clone())
                .unwrap_or_default();
            fp.needs.insert(p.pipeline.steps[j].name.clone(), hash);
        }
        fp
    }

    fn base_dir(&self) -> Option<&Path> {
        self.prepared.base.as_ref().map(|(l, _)| l.path.as_path())
    }

    /// Bring a recorded step's outputs in from the base run.
    fn share(&self, i: usize, _record: &StepRecord) -> Result<()> {
        let name = &self.prepared.pipeline.steps[i].name;
        let from = self
            .base_dir()
            .map(|d| d.join(name))
            .ok_or_else(|| anyhow::anyhow!("no base run"))?;
        let to = self.staging.join(name);
        std::fs::create_dir(&to)?;
        if let Err(e) = fsx::share_tree(&from, &to) {
            let _ = fsx::remove_tree(&to);
            return Err(e.into());
        }
        Ok(())
    }

    fn settle_reused(&mut self, i: usize, base_record: StepRecord, reason: String) {
        let p = self.prepared;
        let step = &p.pipeline.steps[i];
        let from = p.base.as_ref().map(|(_, b)| b.reference.clone());
        self.reporter.step_finished(
            &step.name,
            &format!("reused from {}", from.as_deref().unwrap_or_default()),
        );
        self.records[i] = Some(StepRecord {
            name: step.name.clone(),
            group: step.group.clone(),
            command: step.run.clone(),
            status: StepStatus::Reused,
            exit_code: None,
            started_at: None,
            ended_at: None,
            duration_s: 0.0,
            reused_from: from,
            output_hash: base_record.output_hash,
            outputs: base_record.outputs,
            fingerprint: base_record.fingerprint,
            extra: Map::new(),
        });
        self.reasons[i] = reason;
    }

    /// A left-out step whose outputs others need: take them as recorded.
    fn carry(&mut self, i: usize, reason: String) {
        let p = self.prepared;
        let name = p.pipeline.steps[i].name.clone();
        let record = p
            .base
            .as_ref()
            .and_then(|(_, b)| b.steps.get(&name))
            .cloned()
            .unwrap_or_default();
        match self.share(i, &record) {
            Ok(()) => {
                self.settle_reused(i, record, reason);
                if let Some(r) = self.records[i].as_mut() {
                    r.status = StepStatus::Skipped;
                }
            }
            Err(e) => {
                let step = &p.pipeline.steps[i];
                self.reporter.step_finished(
                    &name,
                    &format!("failed: its outputs could not be taken from the base run ({e:#})"),
                );
                self.records[i] = Some(StepRecord {
                    name: name.clone(),
                    group: step.group.clone(),
                    command: step.run.clone(),
                    status: StepStatus::Failed,
                    ..Default::default()
                });
                self.reasons[i] =
                    format!("its outputs could not be taken from the base run: {e:#}");
            }
        }
    }

    fn settle_skipped(&mut self, i: usize, reason: String) {
        let step = &self.prepared.pipeline.steps[i];
        self.records[i] = Some(StepRecord {
            name: step.name.clone(),
            group: step.group.clone(),
            command: step.run.clone(),
            status: StepStatus::Skipped,
            ..Default::default()
        });
        self.reasons[i] = reason;
    }

    fn step_env(&self, i: usize) -> Vec<(String, String)> {
        let p = self.prepared;
        let step = &p.pipeline.steps[i];
        let mut env: Vec<(String, String)> = self
            .opts
            .config
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in &p.params {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            env.push((pipeline::param_var(k), text));
        }
        env.push(("ARTIFACTCTL_RUN_DIR".into(), path_text(self.staging)));
        env.push(("ARTIFACTCTL_RUN_ID".into(), self.run_id.to_string()));
        env.push((
            "ARTIFACTCTL_STEP_DIR".into(),
            path_text(&self.staging.join(&step.name)),
        ));
        for &j in &p.pipeline.needs[i] {
            let need = &p.pipeline.steps[j].name;
            env.push((
                pipeline::need_dir_var(need),
                path_text(&self.staging.join(need)),
            ));
        }
        if let Some((path, _)) = &p.dataset {
            env.push(("ARTIFACTCTL_DATASET".into(), path_text(path)));
        }
        env
    }

    /// Start step `i`; `None` when it could not start (recorded as failed).
    fn spawn<'s>(
        &mut self,
        i: usize,
        fingerprint: Fingerprint,
        scope: &'s Scope<'s, '_>,
    ) -> Result<Option<Running<'s>>>
    where
        'a: 's,
    {
        let p = self.prepared;
        let step = &p.pipeline.steps[i];
        let step_dir = self.staging.join(&step.name);
        std::fs::create_dir(&step_dir)
            .with_context(|| format!("cannot create {}", step_dir.display()))?;
        let log_path = self
            .staging
            .join(LOGS_DIR)
            .join(format!("{}.log", step.name));
        let log = File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = Command::new(SHELL);
        command
            .arg("-c")
            .arg(&step.run)
            .current_dir(&self.opts.project_root)
            .envs(self.step_env(i))
            .stdin(Stdio::null())
            // Its own process group, so an interrupt stops the whole tree the
            // step started, and a terminal's Ctrl-C reaches only us.
            .process_group(0);
        if self.opts.stream_logs {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        } else {
            command.stdout(log.try_clone()?).stderr(log.try_clone()?);
        }
        let started = Utc::now();
        let clock = Instant::now();
        self.reporter.step_started(&step.name);
        self.pending.insert(
            i,
            StepRecord {
                name: step.name.clone(),
                group: step.group.clone(),
                command: step.run.clone(),
                status: StepStatus::Failed,
                fingerprint: Some(fingerprint),
                ..Default::default()
            },
        );
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = writeln!(&log, "artifactctl: cannot start `sh -c`: {e}");
                self.finish(i, Err(e), started, clock, false)?;
                return Ok(None);
            }
        };
        let exited = pidfd(child.id());
        let mut readers = Vec::new();
        let log = Arc::new(Mutex::new(log));
        let reporter = self.reporter;
        let pipes: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn Read + Send>),
        ];
        for pipe in pipes.into_iter().flatten() {
            let log = Arc::clone(&log);
            let name = step.name.clone();
            readers.push(scope.spawn(move || pump(pipe, &log, &name, reporter)));
        }
        Ok(Some(Running {
            child,
            exited,
            readers,
            started,
            clock,
        }))
    }

    /// Record a child's end; returns whether it succeeded.
    fn finish(
        &mut self,
        i: usize,
        status: std::io::Result<ExitStatus>,
        started: DateTime<Utc>,
        clock: Instant,
        interrupted: bool,
    ) -> Result<bool> {
        let mut record = self
            .pending
            .remove(&i)
            .expect("a started step has a pending record");
        let name = record.name.clone();
        let duration = clock.elapsed().as_secs_f64();
        let (exit_code, ok) = match &status {
            Ok(status) => (
                status.code().or_else(|| status.signal().map(|s| 128 + s)),
                status.success(),
            ),
            Err(_) => (None, false),
        };
        let ok = ok && !interrupted;
        let step_dir = self.staging.join(&name);
        fsx::make_tree_readonly(&step_dir)
            .with_context(|| format!("cannot make {} read-only", step_dir.display()))?;
        let outputs: Vec<FileEntry> = manifest::build(&step_dir, &Silent)
            .with_context(|| format!("cannot hash the outputs in {}", step_dir.display()))?;
        record.started_at = Some(started);
        record.ended_at = Some(Utc::now());
        record.duration_s = (duration * 1000.0).round() / 1000.0;
        record.exit_code = exit_code;
        record.output_hash = ok.then(|| pipeline::output_hash(&outputs));
        record.outputs = outputs;
        record.status = if ok {
            StepStatus::Ran
        } else {
            StepStatus::Failed
        };
        let outcome = match (&status, ok) {
            (_, true) => format!("ran in {}", took(duration)),
            (Err(e), _) => format!("failed: cannot start sh ({e})"),
            (Ok(_), false) if interrupted => "interrupted".to_string(),
            (Ok(_), false) => format!(
                "failed (exit {}) after {}",
                exit_code
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "?".into()),
                took(duration)
            ),
        };
        if interrupted && !ok {
            self.reasons[i] = "interrupted".into();
        }
        self.reporter.step_finished(&name, &outcome);
        self.records[i] = Some(record);
        Ok(ok)
    }
}

fn signal_groups(running: &BTreeMap<usize, Running>, signal: libc::c_int) {
    for step in running.values() {
        // SAFETY: a negative pid signals the process group the child leads;
        // the child is not reaped yet, so its pid cannot have been reused.
        unsafe {
            libc::kill(-(step.child.id() as i32), signal);
        }
    }
}

/// A descriptor that becomes readable when process `pid` exits.
fn pidfd(pid: u32) -> Option<OwnedFd> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags and returns a new
        // descriptor, or -1 (old kernels: ENOSYS).
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd >= 0 {
            // SAFETY: the descriptor was just opened and is owned by no one else.
            return Some(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
    }
    let _ = pid;
    None
}

/// Sleep until a running child exits, `timeout` passes or a signal arrives;
/// returns the steps whose child exited, with its status.
fn wait_any(
    running: &mut BTreeMap<usize, Running>,
    timeout: Duration,
) -> Vec<(usize, std::io::Result<ExitStatus>)> {
    use std::os::fd::AsRawFd;
    let mut fds: Vec<libc::pollfd> = running
        .values()
        .filter_map(|r| r.exited.as_ref())
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let timeout = if fds.len() == running.len() {
        timeout
    } else {
        timeout.min(FALLBACK_POLL)
    };
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs. An error
    // (EINTR on a signal) only ends the wait early.
    unsafe {
        libc::poll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timeout.as_millis() as libc::c_int,
        );
    }
    let mut exited = Vec::new();
    for (&i, step) in running.iter_mut() {
        match step.child.try_wait() {
            Ok(Some(status)) => exited.push((i, Ok(status))),
            Ok(None) => {}
            Err(e) => exited.push((i, Err(e))),
        }
    }
    exited
}

/// Copy a child's output into its log, line by line, and to the reporter.
fn pump(mut from: Box<dyn Read + Send>, log: &Mutex<File>, step: &str, reporter: &dyn Reporter) {
    let mut reader = BufReader::new(&mut from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Ok(mut file) = log.lock() {
                    let _ = file.write_all(&line);
                }
                let text = String::from_utf8_lossy(&line);
                reporter.step_log(step, text.trim_end_matches(['\n', '\r']));
            }
        }
    }
}

/// `12ms`, `3.4s`.
fn took(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{}ms", (seconds * 1000.0).round())
    } else {
        format!("{seconds:.1}s")
    }
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
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
