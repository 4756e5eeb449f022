//! `register`: turn a folder of training outputs into a new raw run (seed
//! 004's `register_training_session`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Map, Value};

use crate::error::ArtifactError;
use crate::fsx::{self, Staging};
use crate::ops::{self, LatestPolicy};
use crate::progress::{Progress, Unit};
use crate::store::journal;
use crate::store::manifest;
use crate::store::metadata::{
    self, Features, Lineage, Metadata, RunStatus, METADATA_FILE, SCHEMA_VERSION,
    TRAINING_METADATA_FILE,
};
use crate::store::metrics::{self, Metrics};
use crate::store::refs::{self, Namespace, Stage};
use crate::store::{RunLocation, Store};

#[derive(Debug, Clone, Default)]
pub struct RegisterOptions {
    pub source: PathBuf,
    pub namespace: Namespace,
    pub id: Option<String>,
    /// Replaces the config found in the folder's own metadata.
    pub config: Option<Map<String, Value>>,
    /// Merged over the metrics found in the folder's own metadata.
    pub metrics: BTreeMap<String, f64>,
    pub params: BTreeMap<String, Value>,
    pub tags: Vec<String>,
    /// Rename the folder in instead of copying (same filesystem only).
    pub move_in: bool,
    /// Hard-link the files in instead of copying them (`register --all`):
    /// the source files become read-only, shared with the run.
    pub link_in: bool,
    /// Register a folder that holds no files (refused otherwise: an empty
    /// run would become `latest` and be kept over real runs).
    pub allow_empty: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub project_root: PathBuf,
    pub command: Vec<String>,
    /// The time the run is stamped with when `created_at` is not given;
    /// `None` reads the clock.
    pub now: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct Registered {
    pub location: RunLocation,
    pub became_latest: bool,
    pub moved: bool,
    pub total_size: u64,
    pub file_count: u64,
    pub warnings: Vec<String>,
}

pub fn register(
    store: &Store,
    opts: RegisterOptions,
    reporter: &dyn Progress,
) -> Result<Registered> {
    // From here on a signal is checked for between files and before
    // publishing, so the staging folder is cleaned up and a folder moved in
    // is given back (see `crate::interrupt`).
    let _busy = crate::interrupt::busy();
    if let Some(id) = &opts.id {
        refs::check_id(id, "--id")?;
    }
    let source = check_source(store, &opts.source)?;
    if !opts.allow_empty && !holds_a_file(&source) {
        return Err(ArtifactError::usage(format!(
            "cannot register {}: it holds no files, and an empty run would become latest; \
             check the path, or pass --allow-empty to register it anyway",
            source.display()
        ))
        .into());
    }
    store.stage_dir(Stage::Raw)?;
    let mut warnings = Vec::new();
    let imported = import_metadata(&source, &mut warnings);
    // A folder that states its own name and time keeps them: a version of a
    // legacy store is the same version once registered.
    let stated = stated_identity(&source);
    let stated_id = match &opts.id {
        Some(_) => None,
        None => stated.id.clone(),
    };
    if let Some(id) = &stated_id {
        let location = store.location(Stage::Raw, &opts.namespace, id)?;
        if location.path.symlink_metadata().is_ok() {
            return Err(ArtifactError::conflict(format!(
                "{} already exists: {} names itself '{id}' and ids are never reused; register it under another name with --id ID",
                location.reference(),
                source.display()
            ))
            .into());
        }
    }
    let id = opts.id.clone().or(stated_id);

    let label = id.clone().unwrap_or_else(|| "register".into());
    let mut moved = false;
    let staging = if opts.move_in {
        match Staging::adopt(store.dir(), &label, &source) {
            Ok(staging) => {
                moved = true;
                staging
            }
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                warnings.push(format!(
                    "{} is on another filesystem than the store; copied it instead of moving, and left the original in place",
                    source.display()
                ));
                copy_in(store, &source, &label, reporter)?
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot move {} into the store", source.display()));
            }
        }
    } else if opts.link_in {
        link_in(store, &source, &label)?
    } else {
        copy_in(store, &source, &label, reporter)?
    };
    let files = manifest::build_interruptible(staging.path(), reporter)?;
    let mut meta = new_metadata(&opts, &source, imported, &stated, files);
    let created_at = meta.created_at;
    let entry = journal::Entry::new("register", Some(source.display().to_string()), None);
    crate::interrupt::check()?;
    let published = ops::publish_run(
        store,
        staging,
        &mut meta,
        match id.as_deref() {
            Some(id) => ops::IdRequest::Exact(id),
            None => ops::IdRequest::Default(created_at),
        },
        LatestPolicy::Advance,
        entry,
    )
    .map_err(|e| ops::unless_published(e, "nothing was registered".into()))?;
    Ok(Registered {
        location: published.location,
        became_latest: published.became_latest,
        moved,
        total_size: meta.total_size,
        file_count: meta.file_count,
        warnings,
    })
}

/// The metadata of a new raw run of `source`: what the folder says about
/// itself, under what the options say.
pub(crate) fn new_metadata(
    opts: &RegisterOptions,
    source: &Path,
    imported: Imported,
    stated: &Stated,
    files: Vec<metadata::FileEntry>,
) -> Metadata {
    let mut meta = Metadata {
        schema_version: SCHEMA_VERSION,
        id: String::new(),
        namespace: opts.namespace.to_string(),
        stage: Stage::Raw,
        created_at: opts
            .created_at
            .or(stated.created_at)
            .unwrap_or_else(|| opts.now.unwrap_or_else(Utc::now).trunc_subsecs(6)),
        status: RunStatus::Complete,
        config: opts.config.clone().unwrap_or(imported.config),
        params: imported.params,
        metrics: imported.metrics,
        tags: imported.tags,
        files: Vec::new(),
        total_size: 0,
        file_count: 0,
        features: imported.features,
        lineage: Lineage {
            source: Some(format!("register {}", source.display())),
            ..Default::default()
        },
        producer: ops::producer(&opts.project_root, opts.command.clone()),
        pinned: false,
        extra: imported.extra,
    };
    meta.metrics.extend(opts.metrics.clone());
    meta.params.extend(opts.params.clone());
    for tag in &opts.tags {
        if !meta.tags.contains(tag) {
            meta.tags.push(tag.clone());
        }
    }
    meta.set_files(files);
    meta
}

/// The record of a run kept in a legacy layout (seed 002's per-symbol
/// store, seed 003's flat one, seed 004's folders without artifactctl
/// metadata), built as `register` would build it but in place: its files
/// hashed where they are, its own metadata imported, its identity the
/// location it has. `push` sends such runs as they are. The time is the one
/// the folder states, or the one `list` shows, so a second push of the
/// same folder makes the same record.
pub fn legacy_record(
    location: &RunLocation,
    shown_time: Option<DateTime<Utc>>,
) -> Result<Metadata> {
    let source = &location.path;
    let mut warnings = Vec::new();
    let imported = import_metadata(source, &mut warnings);
    let stated = stated_identity(source);
    let files = manifest::build_interruptible(source, &crate::progress::Silent)?;
    let modified = std::fs::metadata(source)
        .and_then(|m| m.modified())
        .map(|t| DateTime::<Utc>::from(t).trunc_subsecs(6))
        .with_context(|| format!("cannot read {}", source.display()))?;
    let opts = RegisterOptions {
        source: source.clone(),
        namespace: location.namespace.clone(),
        id: Some(location.id.clone()),
        config: None,
        metrics: BTreeMap::new(),
        params: BTreeMap::new(),
        tags: Vec::new(),
        move_in: false,
        link_in: false,
        allow_empty: true,
        created_at: Some(stated.created_at.or(shown_time).unwrap_or(modified)),
        project_root: source.clone(),
        command: Vec::new(),
        now: None,
    };
    let mut meta = new_metadata(&opts, source, imported, &stated, files);
    meta.id = location.id.clone();
    meta.stage = location.stage;
    Ok(meta)
}

/// The name and creation time a folder states for itself.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Stated {
    pub(crate) id: Option<String>,
    pub(crate) created_at: Option<DateTime<Utc>>,
}

/// Keys a trainer's metadata gives its creation time under, first found wins.
const TIME_KEYS: [&str; 4] = ["created_at", "timestamp", "created", "training_date"];

/// Seed 002's `run_id`, or a seed 003 timestamp folder name; the time from
/// the folder's own metadata (`created_at`, `timestamp`, ...) or from a
/// timestamp name. Nothing here reads the clock.
pub(crate) fn stated_identity(source: &Path) -> Stated {
    let read = |name: &str| -> Option<Map<String, Value>> {
        let bytes = std::fs::read(source.join(name)).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let own = read(METADATA_FILE);
    let training = read(TRAINING_METADATA_FILE);
    let folder = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let run_id = own
        .as_ref()
        .and_then(|m| m.get("run_id"))
        .and_then(Value::as_str)
        .filter(|id| refs::check_id(id, "run_id").is_ok())
        .map(str::to_string);
    let id = run_id.or_else(|| refs::id_time(&folder).map(|_| folder.clone()));
    let created_at = [own.as_ref(), training.as_ref()]
        .into_iter()
        .flatten()
        .flat_map(|m| TIME_KEYS.iter().filter_map(|k| m.get(*k)))
        .filter_map(Value::as_str)
        .find_map(metadata::parse_time)
        .or_else(|| id.as_deref().and_then(refs::id_time))
        .map(|t| t.trunc_subsecs(6));
    Stated { id, created_at }
}

pub(crate) fn check_source(store: &Store, source: &Path) -> Result<PathBuf> {
    let meta = source.metadata().map_err(|e| {
        ArtifactError::usage(format!(
            "cannot register {}: {e}; pass an existing folder",
            source.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(ArtifactError::usage(format!(
            "cannot register {}: not a folder; pass the folder that holds the run's files",
            source.display()
        ))
        .into());
    }
    let source = source.canonicalize()?;
    if let Ok(store_dir) = store.dir().canonicalize() {
        if source.starts_with(&store_dir) || store_dir.starts_with(&source) {
            return Err(ArtifactError::usage(format!(
                "cannot register {}: it overlaps the store {}; register a folder outside the store",
                source.display(),
                store_dir.display()
            ))
            .into());
        }
    }
    Ok(source)
}

/// Whether `source` holds any file besides a `metadata.json` at its top
/// (which is read, not copied).
pub(crate) fn holds_a_file(source: &Path) -> bool {
    walkdir::WalkDir::new(source)
        .follow_links(false)
        .into_iter()
        .flatten()
        .any(|e| !(e.file_type().is_dir() || e.depth() == 1 && e.file_name() == METADATA_FILE))
}

fn copy_in(store: &Store, source: &Path, label: &str, reporter: &dyn Progress) -> Result<Staging> {
    let staging = Staging::create(store.dir(), label)?;
    let total: u64 = walkdir::WalkDir::new(source)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok().map(|m| m.len()))
        .sum();
    reporter.begin("copying", Some(total), Unit::Bytes);
    let copied = fsx::copy_tree(source, staging.path(), &[METADATA_FILE], &|n| {
        reporter.advance(n)
    });
    reporter.end();
    copied.map_err(|e| transfer_error(e, "copy", source))?;
    Ok(staging)
}

/// What a failed copy or link of the user's folder means: a signal, a link
/// that leaves the folder (bad input), or an I/O failure naming the folder.
fn transfer_error(e: std::io::Error, verb: &str, source: &Path) -> anyhow::Error {
    if let Err(interrupted) = crate::interrupt::check() {
        anyhow::Error::new(interrupted)
    } else if e.kind() == std::io::ErrorKind::InvalidInput {
        anyhow::Error::new(ArtifactError::usage(e.to_string()))
    } else {
        anyhow::Error::new(e).context(format!("cannot {verb} {} into the store", source.display()))
    }
}

pub(crate) fn link_in(store: &Store, source: &Path, label: &str) -> Result<Staging> {
    let staging = Staging::create(store.dir(), label)?;
    fsx::link_tree(source, staging.path(), &[METADATA_FILE], &|_| {})
        .map_err(|e| transfer_error(e, "link", source))?;
    Ok(staging)
}

/// One version of a legacy store that `register --all` did not import.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Skipped {
    #[serde(rename = "ref")]
    pub reference: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImportReport {
    /// The refs of the runs created.
    pub imported: Vec<String>,
    /// Versions already in the store under their name (a second import).
    pub present: Vec<String>,
    /// Versions left out: incomplete or corrupted, with the reason.
    pub skipped: Vec<Skipped>,
    /// Bytes shared with the legacy store by hard links.
    pub linked_bytes: u64,
}

pub use crate::ops::register_all::register_all;

/// What a folder already says about itself.
#[derive(Default)]
pub(crate) struct Imported {
    pub(crate) config: Map<String, Value>,
    pub(crate) params: BTreeMap<String, Value>,
    pub(crate) metrics: BTreeMap<String, f64>,
    pub(crate) tags: Vec<String>,
    pub(crate) features: Option<Features>,
    pub(crate) extra: Map<String, Value>,
}

impl Imported {
    /// Metric values as metrics, everything else as params (a param the
    /// folder states outright wins).
    fn keep_metrics(&mut self, m: Metrics) {
        self.metrics.extend(m.values);
        for (k, v) in m.notes {
            self.params.entry(k).or_insert(v);
        }
    }
}

/// Seed 002 trainers write their own `metadata.json`, seed 003 a
/// `training_metadata.json`: keep what they say. A `metadata.json` is replaced
/// by the run's, so everything in it not mapped to a field is kept under
/// `source_metadata`.
pub(crate) fn import_metadata(source: &Path, warnings: &mut Vec<String>) -> Imported {
    let mut imported = Imported::default();
    let read = |name: &str, warnings: &mut Vec<String>| -> Option<Map<String, Value>> {
        let bytes = std::fs::read(source.join(name)).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(obj)) => Some(obj),
            _ => {
                warnings.push(format!(
                    "{} is not a JSON object; its values were not imported (the file is kept as it is)",
                    source.join(name).display()
                ));
                None
            }
        }
    };
    // Every source through the one reader (docs/metadata.md): metrics files
    // in the folder first, then what the trainer's metadata says, which wins.
    let mut found = metrics::read_run_files(source, warnings);
    if let Some(obj) = read(TRAINING_METADATA_FILE, warnings) {
        if let Some(Value::Object(m)) = obj.get("metrics") {
            found.extend(Metrics::from_object(m));
        }
    }
    let Some(mut obj) = read(METADATA_FILE, warnings) else {
        imported.keep_metrics(found);
        if source.join(METADATA_FILE).exists() {
            warnings.push(format!(
                "{} was not imported and is not part of the run",
                source.join(METADATA_FILE).display()
            ));
        }
        return imported;
    };
    if let Some(Value::Object(c)) = obj.remove("config") {
        imported.config = c;
    }
    if let Some(Value::Object(m)) = obj.remove("metrics") {
        found.extend(Metrics::from_object(&m));
    }
    if let Some(Value::Object(p)) = obj.remove("params") {
        imported.params = p
            .into_iter()
            .filter(|(_, v)| !v.is_object() && !v.is_array())
            .collect();
    }
    imported.keep_metrics(found);
    if let Some(Value::Array(t)) = obj.remove("tags") {
        imported.tags = t
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
    }
    let features = obj
        .remove("features")
        .or_else(|| metadata::legacy_features(&obj));
    for key in metadata::FEATURE_KEYS {
        obj.remove(key);
    }
    imported.features = features.and_then(|f| serde_json::from_value(f).ok());
    if !obj.is_empty() {
        imported
            .extra
            .insert("source_metadata".into(), Value::Object(obj));
    }
    imported
}
