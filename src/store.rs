//! The store on disk: where runs live, how they are found, read and resolved.
//!
//! Two layouts are read as they are:
//! - **staged**: `<store>/{raw,validated,production}/[ns/]<id>/` (seed 004,
//!   and what artifactctl writes);
//! - **flat**: `<store>/[ns/]<id>/` with no stage folders (seed 003's
//!   `backend/models/`, seed 002's `models/{type}/{symbol}/`), read as the
//!   raw stage.
//!
//! Reading never writes: nothing here creates `.artifactctl/` or any folder.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, Utc};
use globset::{Glob, GlobSet, GlobSetBuilder};
use rayon::prelude::*;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ArtifactError;
use crate::fsx::{INTERNAL_DIR, LATEST, LATEST_POINTER};
use crate::metadata::{
    self, parse_time, FileEntry, Metadata, RunStatus, Summary, METADATA_FILE,
    TRAINING_METADATA_FILE,
};
use crate::refs::{self, format_ref, qualified_ref, Namespace, RunRef, Stage, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Staged,
    Flat,
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    layout: Layout,
}

/// Where one run lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLocation {
    pub stage: Stage,
    pub namespace: Namespace,
    pub id: String,
    pub path: PathBuf,
}

impl RunLocation {
    pub fn reference(&self) -> String {
        format_ref(self.stage, &self.namespace, &self.id)
    }
    pub fn qualified(&self) -> String {
        qualified_ref(self.stage, &self.namespace, &self.id)
    }
}

/// Which metadata a run was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunLayout {
    /// artifactctl's own `metadata.json`.
    Native,
    /// Seed 003's `training_metadata.json`.
    TrainingMetadata,
    /// A `metadata.json` without `schema_version` (seed 002, seed 004).
    LegacyMetadata,
    /// No metadata file at all.
    Plain,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileRow {
    pub path: String,
    pub size: u64,
    pub blake3: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symlink: Option<String>,
}

/// What `show` adds to a listing row.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    pub path: PathBuf,
    pub files: Vec<FileRow>,
    pub features: Option<Value>,
    pub lineage: Value,
    pub config: Value,
    pub producer: Value,
    /// Everything else the metadata holds (seed 003's `ensemble_weights` and
    /// `models`, fields from a newer artifactctl, seed 002's extra keys).
    pub extra: Map<String, Value>,
}

/// One run as `list` and `show` present it, whatever layout it came from.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    #[serde(rename = "ref")]
    pub reference: String,
    pub id: String,
    pub namespace: String,
    pub stage: Stage,
    pub created_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub size_bytes: u64,
    pub file_count: u64,
    pub model_count: u64,
    pub metrics: BTreeMap<String, f64>,
    pub params: BTreeMap<String, Value>,
    pub tags: Vec<String>,
    pub latest: bool,
    pub pinned: bool,
    pub layout: RunLayout,
    /// Empty when the run is healthy.
    pub problems: Vec<String>,
    #[serde(skip)]
    pub location: RunLocation,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub detail: Option<RunDetail>,
}

/// How to read runs: which files count as models, and whether to gather the
/// detail `show` needs.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    models: GlobSet,
    pub detail: bool,
}

impl ReadOptions {
    pub fn new(model_patterns: &[String], detail: bool) -> Result<ReadOptions> {
        let mut builder = GlobSetBuilder::new();
        for pattern in model_patterns {
            let glob = Glob::new(pattern).map_err(|e| {
                ArtifactError::usage(format!(
                    "bad model pattern '{pattern}' in [list] model_patterns: {e}"
                ))
            })?;
            builder.add(glob);
        }
        Ok(ReadOptions {
            models: builder.build()?,
            detail,
        })
    }

    fn is_model(&self, rel_path: &str) -> bool {
        let name = rel_path.rsplit('/').next().unwrap_or(rel_path);
        self.models.is_match(name)
    }
}

/// The state of a `latest` pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LatestState {
    Link(String),
    Pointer(String),
    Missing,
    /// Names a run that does not exist.
    Dangling(String),
    /// Points out of its folder (`/etc`, `../../x`): never followed.
    Escaping(String),
    /// `latest` is a real file or folder, not a link.
    NotALink,
}

impl LatestState {
    pub fn id(&self) -> Option<&str> {
        match self {
            LatestState::Link(id) | LatestState::Pointer(id) => Some(id),
            _ => None,
        }
    }
}

/// A ref turned into a run directory.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub location: RunLocation,
    /// Fallbacks taken on the way (a dangling `latest`, say).
    pub warnings: Vec<String>,
}

impl Store {
    /// Open the store at `dir` without touching the disk beyond looking.
    pub fn open(dir: impl Into<PathBuf>) -> Store {
        let dir = dir.into();
        let layout = detect_layout(&dir);
        Store { dir, layout }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn internal_dir(&self) -> PathBuf {
        self.dir.join(INTERNAL_DIR)
    }

    pub fn stages(&self) -> &'static [Stage] {
        match self.layout {
            Layout::Staged => &Stage::ALL,
            Layout::Flat => &[Stage::Raw],
        }
    }

    pub fn stage_dir(&self, stage: Stage) -> Result<PathBuf, ArtifactError> {
        match (self.layout, stage) {
            (Layout::Staged, _) => Ok(self.dir.join(stage.as_str())),
            (Layout::Flat, Stage::Raw) => Ok(self.dir.clone()),
            (Layout::Flat, _) => Err(ArtifactError::usage(format!(
                "{} has a flat layout (runs directly inside, as seeds 002 and 003 keep them) and no {stage} stage; \
                 point --store at a store with raw/ validated/ production/ folders",
                self.dir.display()
            ))),
        }
    }

    pub fn ns_dir(&self, stage: Stage, ns: &Namespace) -> Result<PathBuf, ArtifactError> {
        let mut dir = self.stage_dir(stage)?;
        for seg in ns.segments() {
            dir.push(seg);
        }
        Ok(dir)
    }

    pub fn location(
        &self,
        stage: Stage,
        ns: &Namespace,
        id: &str,
    ) -> Result<RunLocation, ArtifactError> {
        Ok(RunLocation {
            stage,
            namespace: ns.clone(),
            id: id.to_string(),
            path: self.ns_dir(stage, ns)?.join(id),
        })
    }

    /// Every run at or below `under` in the given stages, sorted by stage,
    /// namespace and id.
    pub fn locations(&self, stages: &[Stage], under: &Namespace) -> Vec<RunLocation> {
        let mut out = Vec::new();
        for &stage in stages {
            let Ok(dir) = self.ns_dir(stage, under) else {
                continue;
            };
            walk_namespace(&dir, stage, under, refs::MAX_NAMESPACE_DEPTH, &mut out);
        }
        out
    }

    /// The runs directly in one namespace (not below it).
    pub fn locations_in(&self, stage: Stage, ns: &Namespace) -> Vec<RunLocation> {
        let mut out = Vec::new();
        if let Ok(dir) = self.ns_dir(stage, ns) {
            walk_namespace(&dir, stage, ns, 0, &mut out);
        }
        out
    }

    /// Read every run at or below `under`, in parallel, marking each
    /// namespace's `latest`.
    pub fn runs(&self, stages: &[Stage], under: &Namespace, opts: &ReadOptions) -> Vec<RunInfo> {
        let locations = self.locations(stages, under);
        let mut runs: Vec<RunInfo> = locations
            .into_par_iter()
            .map(|loc| read_run(loc, opts))
            .collect();
        mark_latest(self, &mut runs);
        runs
    }

    pub fn read_run(&self, location: RunLocation, opts: &ReadOptions) -> RunInfo {
        let mut run = read_run(location, opts);
        let ns_dir = run
            .location
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        run.latest = match read_latest(&ns_dir) {
            state @ (LatestState::Link(_) | LatestState::Pointer(_)) => state.id() == Some(&run.id),
            LatestState::Escaping(_) => false,
            _ => {
                let siblings = self.locations_in(run.stage, &run.location.namespace);
                newest_complete_of(siblings, opts).is_some_and(|n| n.id == run.id)
            }
        };
        run
    }

    pub fn latest(&self, stage: Stage, ns: &Namespace) -> Result<LatestState, ArtifactError> {
        Ok(read_latest(&self.ns_dir(stage, ns)?))
    }

    /// The newest complete run of a namespace by `created_at`, skipping `except`.
    pub fn newest_complete(
        &self,
        stage: Stage,
        ns: &Namespace,
        except: Option<&str>,
    ) -> Option<RunInfo> {
        let opts = ReadOptions::new(&[], false).ok()?;
        let candidates = self
            .locations_in(stage, ns)
            .into_iter()
            .filter(|l| Some(l.id.as_str()) != except)
            .collect();
        newest_complete_of(candidates, &opts)
    }

    /// Turn a ref into a run directory, directly: a ref with an id costs one
    /// `lstat`, a `latest` one `readlink`. Only a miss scans, to suggest.
    pub fn resolve(&self, r: &RunRef) -> Result<Resolved> {
        let stage = r.stage();
        let ns_dir = self.ns_dir(stage, &r.namespace)?;
        let where_ = format_ns(stage, &r.namespace);
        match &r.target {
            Target::Id(id) => {
                let location = self.location(stage, &r.namespace, id)?;
                match location.path.symlink_metadata() {
                    Ok(m) if m.is_dir() => Ok(Resolved { location, warnings: vec![] }),
                    Ok(m) if m.file_type().is_symlink() => Err(ArtifactError::corrupt(format!(
                        "{} is a symlink; artifactctl never follows links to run folders: replace it with the folder itself",
                        location.path.display()
                    ))
                    .into()),
                    _ => Err(self.not_found(stage, &r.namespace, id, &where_).into()),
                }
            }
            Target::Latest => {
                let mut warnings = Vec::new();
                match read_latest(&ns_dir) {
                    LatestState::Link(id) | LatestState::Pointer(id) => {
                        let location = self.location(stage, &r.namespace, &id)?;
                        return Ok(Resolved { location, warnings });
                    }
                    LatestState::Escaping(target) => {
                        return Err(ArtifactError::corrupt(format!(
                            "{} points to '{target}', outside {}; refusing to follow it: re-point it with `ln -sfn <run-id> {}` or remove it",
                            ns_dir.join(LATEST).display(),
                            ns_dir.display(),
                            ns_dir.join(LATEST).display()
                        ))
                        .into());
                    }
                    LatestState::Dangling(target) => warnings.push(format!(
                        "{} points to '{target}', which does not exist; using the newest complete run instead",
                        ns_dir.join(LATEST).display()
                    )),
                    LatestState::NotALink => warnings.push(format!(
                        "{} is not a link; using the newest complete run instead",
                        ns_dir.join(LATEST).display()
                    )),
                    LatestState::Missing => {}
                }
                match self.newest_complete(stage, &r.namespace, None) {
                    Some(run) => Ok(Resolved { location: run.location, warnings }),
                    None => Err(ArtifactError::not_found(format!(
                        "no complete run in {where_} ({}); register one with `artifactctl register DIR`",
                        ns_dir.display()
                    ))
                    .into()),
                }
            }
        }
    }

    fn not_found(&self, stage: Stage, ns: &Namespace, id: &str, where_: &str) -> ArtifactError {
        let wanted = format_ref(stage, ns, id);
        let mut candidates: Vec<(usize, String)> = self
            .locations(&[stage], &Namespace::root())
            .into_iter()
            .map(|l| {
                let reference = l.reference();
                let distance = if l.id == id {
                    0
                } else {
                    edit_distance(&reference, &wanted)
                };
                (distance, reference)
            })
            .collect();
        candidates.sort();
        let nearest: Vec<String> = candidates.into_iter().take(5).map(|(_, r)| r).collect();
        let hint = if nearest.is_empty() {
            format!("{where_} has no runs yet")
        } else {
            format!("nearest: {}", nearest.join(", "))
        };
        ArtifactError::not_found(format!(
            "no run '{wanted}' in {}; {hint}; `artifactctl list --stage all` shows every run",
            self.dir.display()
        ))
    }
}

fn format_ns(stage: Stage, ns: &Namespace) -> String {
    if ns.is_root() {
        format!("{stage}/")
    } else {
        format!("{stage}/{ns}/")
    }
}

fn detect_layout(dir: &Path) -> Layout {
    let staged = Stage::ALL.iter().any(|s| dir.join(s.as_str()).is_dir());
    let empty = match fs::read_dir(dir) {
        Ok(mut entries) => entries.all(|e| {
            e.map(|e| e.file_name().to_string_lossy().starts_with('.'))
                .unwrap_or(true)
        }),
        Err(_) => true,
    };
    if staged || empty {
        Layout::Staged
    } else {
        Layout::Flat
    }
}

fn is_hidden_or_pointer(name: &str) -> bool {
    name.starts_with('.') || name == LATEST || name == LATEST_POINTER
}

/// A folder is a run when it holds metadata, is named like a timestamp, or
/// holds files of its own; otherwise it is a namespace to look inside.
fn is_run_dir(path: &Path, name: &str) -> bool {
    // The name test costs no syscall and settles every default id.
    if refs::id_time(name).is_some()
        || path.join(METADATA_FILE).symlink_metadata().is_ok()
        || path.join(TRAINING_METADATA_FILE).symlink_metadata().is_ok()
    {
        return true;
    }
    let Ok(entries) = fs::read_dir(path) else {
        return false;
    };
    entries.flatten().any(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        !is_hidden_or_pointer(&n)
            && !n.to_ascii_lowercase().starts_with("readme")
            && e.file_type().is_ok_and(|t| t.is_file())
    })
}

fn walk_namespace(
    dir: &Path,
    stage: Stage,
    ns: &Namespace,
    depth: usize,
    out: &mut Vec<RunLocation>,
) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut dirs: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| !is_hidden_or_pointer(name))
        .collect();
    dirs.sort();
    for (name, path) in dirs {
        if is_run_dir(&path, &name) {
            out.push(RunLocation {
                stage,
                namespace: ns.clone(),
                id: name,
                path,
            });
        } else if depth > 0 {
            walk_namespace(&path, stage, &ns.child(&name), depth - 1, out);
        }
    }
}

/// Read `<dir>/latest` without following it anywhere it should not go.
pub fn read_latest(ns_dir: &Path) -> LatestState {
    let link = ns_dir.join(LATEST);
    match link.symlink_metadata() {
        Ok(meta) if meta.file_type().is_symlink() => {
            let Ok(target) = fs::read_link(&link) else {
                return LatestState::Missing;
            };
            let text = target.to_string_lossy().into_owned();
            match sibling_name(&target) {
                Some(id)
                    if ns_dir
                        .join(&id)
                        .symlink_metadata()
                        .is_ok_and(|m| m.is_dir()) =>
                {
                    LatestState::Link(id)
                }
                Some(_) => LatestState::Dangling(text),
                None => LatestState::Escaping(text),
            }
        }
        Ok(_) => LatestState::NotALink,
        Err(_) => {
            let Ok(text) = fs::read_to_string(ns_dir.join(LATEST_POINTER)) else {
                return LatestState::Missing;
            };
            // Seed 002 writes the whole target path; only its last part is
            // trusted, and only as a sibling.
            let text = text.trim();
            let last = text.rsplit(['/', '\\']).next().unwrap_or("");
            if refs::validate_id(last).is_ok()
                && ns_dir
                    .join(last)
                    .symlink_metadata()
                    .is_ok_and(|m| m.is_dir())
            {
                LatestState::Pointer(last.to_string())
            } else {
                LatestState::Dangling(text.to_string())
            }
        }
    }
}

/// The single folder name a link target names, if it stays beside the link.
fn sibling_name(target: &Path) -> Option<String> {
    let mut normal = None;
    for component in target.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(name) if normal.is_none() => {
                normal = Some(name.to_string_lossy().into_owned());
            }
            _ => return None,
        }
    }
    normal.filter(|n| n != LATEST)
}

fn newest_complete_of(locations: Vec<RunLocation>, opts: &ReadOptions) -> Option<RunInfo> {
    locations
        .into_iter()
        .map(|l| read_run(l, opts))
        .filter(|r| r.status == RunStatus::Complete && r.problems.is_empty())
        .max_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)))
}

fn mark_latest(store: &Store, runs: &mut [RunInfo]) {
    let mut groups: HashMap<(Stage, Namespace), Vec<usize>> = HashMap::new();
    for (i, run) in runs.iter().enumerate() {
        groups
            .entry((run.stage, run.location.namespace.clone()))
            .or_default()
            .push(i);
    }
    for ((stage, ns), members) in groups {
        let Ok(ns_dir) = store.ns_dir(stage, &ns) else {
            continue;
        };
        let chosen = match read_latest(&ns_dir) {
            LatestState::Link(id) | LatestState::Pointer(id) => Some(id),
            LatestState::Escaping(_) => None,
            _ => members
                .iter()
                .map(|&i| &runs[i])
                .filter(|r| r.status == RunStatus::Complete && r.problems.is_empty())
                .max_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)))
                .map(|r| r.id.clone()),
        };
        if let Some(id) = chosen {
            for &i in &members {
                if runs[i].id == id {
                    runs[i].latest = true;
                }
            }
        }
    }
}

fn blank_run(location: RunLocation) -> RunInfo {
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
    if run.created_at.is_none() {
        run.created_at = fs::symlink_metadata(&dir)
            .and_then(|m| m.modified())
            .ok()
            .map(DateTime::<Utc>::from);
    }
    run
}

fn corrupted(file: &str, err: impl std::fmt::Display) -> String {
    format!(
        "corrupted {file} ({err}); metrics are unavailable but the run's files are untouched: restore the file or re-register the folder"
    )
}

fn read_metadata_json(run: &mut RunInfo, bytes: &[u8], opts: &ReadOptions) {
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

fn apply_summary(run: &mut RunInfo, s: Summary<'_>, opts: &ReadOptions) {
    run.layout = RunLayout::Native;
    if let Some(t) = s.created_at.as_deref().and_then(parse_time) {
        run.created_at = Some(t);
    }
    run.status = s.status.unwrap_or(RunStatus::Unknown);
    run.metrics = metadata::numeric_metrics(&s.metrics);
    run.params = s.params;
    run.tags = s.tags;
    run.pinned = s.pinned;
    run.size_bytes = s.total_size;
    run.file_count = s.file_count;
    run.model_count = s
        .files
        .iter()
        .filter(|f| f.symlink.is_none() && opts.is_model(&f.path))
        .count() as u64;
}

fn apply_native(run: &mut RunInfo, meta: Metadata, opts: &ReadOptions) {
    run.layout = RunLayout::Native;
    run.created_at = Some(meta.created_at);
    run.status = meta.status;
    run.metrics = meta.metrics.clone();
    run.params = meta.params.clone();
    run.tags = meta.tags.clone();
    run.pinned = meta
        .extra
        .get("pinned")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    run.size_bytes = meta.total_size;
    run.file_count = meta.file_count;
    run.model_count = meta
        .files
        .iter()
        .filter(|f| f.symlink.is_none() && opts.is_model(&f.path))
        .count() as u64;
    let features = meta
        .features
        .as_ref()
        .map(|f| serde_json::to_value(f).unwrap_or_default());
    if let Some(f) = &features {
        run.problems.extend(metadata::feature_problems(f));
    }
    if opts.detail {
        let files = meta.files.iter().map(file_row).collect();
        let mut extra = meta.extra.clone();
        extra.remove("pinned");
        run.detail = Some(RunDetail {
            path: run.location.path.clone(),
            files,
            features,
            lineage: serde_json::to_value(&meta.lineage).unwrap_or_default(),
            config: Value::Object(meta.config.clone()),
            producer: serde_json::to_value(&meta.producer).unwrap_or_default(),
            extra,
        });
    }
}

fn file_row(f: &FileEntry) -> FileRow {
    FileRow {
        path: f.path.clone(),
        size: f.size,
        blake3: Some(f.blake3.clone()),
        symlink: f.symlink.clone(),
    }
}

/// The creation time under `time_key` and the numeric `metrics` of a legacy
/// metadata object.
fn read_time_and_metrics(run: &mut RunInfo, obj: &Map<String, Value>, time_key: &str) {
    if let Some(t) = obj
        .get(time_key)
        .and_then(Value::as_str)
        .and_then(parse_time)
    {
        run.created_at = Some(t);
    }
    if let Some(Value::Object(m)) = obj.get("metrics") {
        run.metrics = metadata::numeric_metrics(m);
    }
}

/// Seed 002 (and seed 004's validated) `metadata.json`: no schema version,
/// feature fields at the top, `created_at` often without a time zone.
fn read_legacy_metadata(run: &mut RunInfo, mut obj: Map<String, Value>, opts: &ReadOptions) {
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
fn read_training_metadata(run: &mut RunInfo, bytes: &[u8], opts: &ReadOptions) {
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
fn read_plain(run: &mut RunInfo, opts: &ReadOptions, mut rest: Map<String, Value>) {
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
        run.detail = Some(RunDetail {
            path: dir,
            files,
            features: None,
            lineage: Value::Object(Map::new()),
            config,
            producer: Value::Object(Map::new()),
            extra: rest,
        });
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn latest_targets_must_stay_beside_the_link() {
        assert_eq!(
            sibling_name(Path::new("20240816_142301")).as_deref(),
            Some("20240816_142301")
        );
        assert_eq!(sibling_name(Path::new("./a/")).as_deref(), Some("a"));
        assert_eq!(sibling_name(Path::new("/etc")), None);
        assert_eq!(sibling_name(Path::new("../../x")), None);
        assert_eq!(sibling_name(Path::new("a/b")), None);
        assert_eq!(sibling_name(Path::new("latest")), None);
    }

    #[test]
    fn read_latest_classifies_links() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert_eq!(read_latest(d), LatestState::Missing);
        fs::create_dir(d.join("r1")).unwrap();
        symlink("r1", d.join(LATEST)).unwrap();
        assert_eq!(read_latest(d), LatestState::Link("r1".into()));
        fs::remove_file(d.join(LATEST)).unwrap();
        symlink("/etc", d.join(LATEST)).unwrap();
        assert_eq!(read_latest(d), LatestState::Escaping("/etc".into()));
        fs::remove_file(d.join(LATEST)).unwrap();
        symlink("gone", d.join(LATEST)).unwrap();
        assert_eq!(read_latest(d), LatestState::Dangling("gone".into()));
        fs::remove_file(d.join(LATEST)).unwrap();
        fs::write(d.join(LATEST_POINTER), "models/gru/BTCEUR/r1\n").unwrap();
        assert_eq!(read_latest(d), LatestState::Pointer("r1".into()));
        fs::write(d.join(LATEST_POINTER), "../../etc\n").unwrap();
        assert!(matches!(read_latest(d), LatestState::Dangling(_)));
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
