//! `metadata.json`, schema version 1 (documented in `docs/metadata.md` and
//! `docs/metadata.schema.json`), and the readers for the layouts users
//! already have on disk: seed 003's `training_metadata.json` and seed 002's
//! `metadata.json` without a schema version.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::store::refs::Stage;

pub const SCHEMA_VERSION: u32 = 1;
pub const METADATA_FILE: &str = "metadata.json";
/// Seed 003's per-version metadata.
pub const TRAINING_METADATA_FILE: &str = "training_metadata.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Complete,
    Failed,
    Interrupted,
    /// Only ever read, never written: the metadata could not be read.
    Unknown,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Complete => "complete",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the run directory, `/`-separated. For a name that is not
    /// UTF-8 this is a readable stand-in (invalid bytes shown as U+FFFD) and
    /// [`FileEntry::path_bytes`] holds the exact name.
    pub path: String,
    pub size: u64,
    /// BLAKE3 of the content; for a symlink, of its target text. `None`
    /// (`null`) while a file imported by hard link (`register --all`) is
    /// not hashed yet: its [`FileEntry::stamp`] and size stand guard until
    /// the first command that needs the hash records it (see
    /// `ops::seal`).
    pub blake3: Option<String>,
    /// Set for symlinks (always relative and inside the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink: Option<String>,
    /// The exact bytes of a relative path that is not UTF-8, in lowercase
    /// hex; absent for every UTF-8 path. Two names that differ only in
    /// invalid bytes (`\xff\xfe.bin`, `\xff\xfd.bin`) share a `path` but
    /// never a `path_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_bytes: Option<String>,
    /// What the file looked like on disk when it was hashed, so a later
    /// check (refresh's reuse) can trust an unchanged file without reading
    /// it. Absent for symlinks and in records made before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<Stamp>,
}

/// A file's identity and last change, from `lstat`: inode and modification
/// time. Not ctime: hard-linking a file into a newer run changes its ctime
/// (the link count), and reuse hard-links on every refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub ino: u64,
    pub mtime_ns: i64,
}

impl Stamp {
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            ino: meta.ino(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
        }
    }
}

impl FileEntry {
    /// A hash, or a pending hash guarded by a stamp (never for a symlink,
    /// whose target text is always hashed).
    pub fn is_well_formed(&self) -> bool {
        self.blake3.is_some() || (self.stamp.is_some() && self.symlink.is_none())
    }

    /// Whether the file on disk is still the one the entry was made from,
    /// judged by size and stamp only (no read).
    pub fn stamp_matches(&self, meta: &std::fs::Metadata) -> bool {
        meta.is_file() && meta.len() == self.size && self.stamp == Some(Stamp::of(meta))
    }

    /// The exact relative path on disk.
    pub fn rel_path(&self) -> std::path::PathBuf {
        use std::os::unix::ffi::OsStringExt;
        match self.path_bytes.as_deref().and_then(hex_decode) {
            Some(bytes) => std::path::PathBuf::from(std::ffi::OsString::from_vec(bytes)),
            None => std::path::PathBuf::from(&self.path),
        }
    }

    /// A key that tells every distinct name apart (the exact bytes).
    pub fn key(&self) -> String {
        match &self.path_bytes {
            Some(hex) => format!("\u{0}{hex}"),
            None => self.path.clone(),
        }
    }
}

/// How a relative path is recorded: `(path, path_bytes)`.
pub fn encode_rel_path(rel: &std::path::Path) -> (String, Option<String>) {
    use std::os::unix::ffi::OsStrExt;
    match rel.to_str() {
        Some(text) => (text.to_string(), None),
        None => (
            rel.to_string_lossy().into_owned(),
            Some(
                rel.as_os_str()
                    .as_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            ),
        ),
    }
}

fn hex_decode(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Seed 002's feature persistence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Features {
    #[serde(default)]
    pub feature_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_features: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_size_actual: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// Where the run came from: a registered folder, a refresh, a promotion.
    #[serde(default)]
    pub source: Option<String>,
    /// The run this one was derived from (a qualified ref, `raw/ns/id`).
    #[serde(default)]
    pub parent: Option<String>,
    /// The artifact this one was promoted from (a qualified ref).
    #[serde(default)]
    pub promoted_from: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Producer {
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub git_commit: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The full record. Fields this version does not know land in `extra` and are
/// written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub schema_version: u32,
    pub id: String,
    #[serde(default)]
    pub namespace: String,
    pub stage: Stage,
    pub created_at: DateTime<Utc>,
    pub status: RunStatus,
    #[serde(default)]
    pub config: Map<String, Value>,
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub files: Vec<FileEntry>,
    #[serde(default)]
    pub total_size: u64,
    #[serde(default)]
    pub file_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<Features>,
    #[serde(default)]
    pub lineage: Lineage,
    #[serde(default)]
    pub producer: Producer,
    /// Protected from `cleanup` and `delete` (`artifactctl pin`); written
    /// only when true, so unpinned records stay as they were.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pinned: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Open `path` for reading only if it is a regular file. A FIFO named
/// `metadata.json` would otherwise hang every command that reads it, and a
/// device could be read forever: both are refused. With `follow` false a
/// symlink in `path`'s place is refused too (`ELOOP`).
pub fn open_regular(path: &Path, follow: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut flags = libc::O_NONBLOCK;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a regular file (a FIFO, socket, device or folder); artifactctl reads only regular files",
        ));
    }
    Ok(file)
}

/// Read a whole regular file, following symlinks (configuration files may be
/// links into a dotfiles repository).
pub fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    read_all(open_regular(path, true)?)
}

/// Read a metadata file without following a symlink in its place: a run's
/// metadata is its own, never a link to somewhere else on the machine.
pub fn read_no_follow(path: &Path) -> std::io::Result<Vec<u8>> {
    read_all(open_regular(path, false)?)
}

pub(crate) fn read_all(mut file: std::fs::File) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    // Read until EOF without the size probe `read_to_end` makes: `list`
    // reads thousands of small files and each saved syscall counts.
    let mut bytes = vec![0u8; 8192];
    let mut len = 0;
    loop {
        if len == bytes.len() {
            bytes.resize(len * 2, 0);
        }
        match file.read(&mut bytes[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(len);
    Ok(bytes)
}

impl Metadata {
    pub fn read(dir: &Path) -> Result<Metadata> {
        let path = dir.join(METADATA_FILE);
        let bytes =
            read_no_follow(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let meta: Metadata = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not valid metadata", path.display()))?;
        if let Some(bad) = meta.files.iter().find(|f| !f.is_well_formed()) {
            anyhow::bail!(
                "{} is not valid metadata: file {:?} has neither a BLAKE3 hash nor the stamp a pending hash needs",
                path.display(),
                bad.path
            );
        }
        Ok(meta)
    }

    /// Files whose hash is still pending (imported by link, not yet read).
    pub fn pending_hashes(&self) -> usize {
        self.files.iter().filter(|f| f.blake3.is_none()).count()
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("metadata serializes");
        text.push('\n');
        text
    }

    /// Set `files`, `total_size` and `file_count` from a manifest.
    pub fn set_files(&mut self, mut files: Vec<FileEntry>) {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        self.total_size = files.iter().map(|f| f.size).sum();
        self.file_count = files.len() as u64;
        self.files = files;
    }
}

/// What `list` needs from a native `metadata.json`, read without buffering
/// unknown fields (this is the hot path of `list` over thousands of runs).
#[derive(Debug, Deserialize)]
pub struct Summary<'a> {
    pub schema_version: u32,
    pub created_at: Option<String>,
    pub status: Option<RunStatus>,
    #[serde(default)]
    pub metrics: BTreeMap<String, Value>,
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, borrow)]
    pub files: Vec<SummaryFile<'a>>,
    #[serde(default)]
    pub total_size: u64,
    #[serde(default)]
    pub file_count: u64,
    #[serde(default)]
    pub pinned: bool,
    /// Refresh runs: the steps of group `datasets`, whose folders hold data,
    /// not models (see [`DATASET_STEPS`]).
    #[serde(default)]
    pub dataset_steps: Vec<String>,
    /// Only the refs (for the run index and its lineage protection).
    #[serde(default)]
    pub lineage: Option<SummaryLineage>,
    /// Refresh's step records, skipped: the index only records that they
    /// are there (refresh looks for its base run among such runs).
    #[serde(default)]
    pub steps: Option<serde::de::IgnoredAny>,
}

/// The refs of a run's lineage, as [`Summary`] reads them.
#[derive(Debug, Default, Deserialize)]
pub struct SummaryLineage {
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub promoted_from: Option<String>,
}

/// The `metadata.json` field (a list of step names) in which refresh records
/// which steps made datasets, so `list` counts models and datasets apart
/// without reading the step records.
pub const DATASET_STEPS: &str = "dataset_steps";

/// Count a run's models and datasets: files in the folder of a dataset step
/// are datasets (its `metrics.json` aside); other files are models when
/// `is_model` says so.
pub fn count_models_and_datasets<'a>(
    files: impl Iterator<Item = (&'a str, bool)>,
    dataset_steps: &[String],
    is_model: impl Fn(&str) -> bool,
) -> (u64, u64) {
    let (mut models, mut datasets) = (0, 0);
    for (path, is_link) in files {
        if is_link {
            continue;
        }
        let in_dataset_step = path.split_once('/').is_some_and(|(step, rest)| {
            dataset_steps.iter().any(|d| d == step) && rest != "metrics.json"
        });
        if in_dataset_step {
            datasets += 1;
        } else if !path.starts_with("logs/") && is_model(path) {
            models += 1;
        }
    }
    (models, datasets)
}

#[derive(Debug, Deserialize)]
pub struct SummaryFile<'a> {
    #[serde(borrow)]
    pub path: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    pub symlink: Option<std::borrow::Cow<'a, str>>,
}

/// The metric values of a metadata object, by the one reader's rules
/// ([`crate::store::metrics`]). Kept under this name for the refresh step
/// reader, which calls it.
pub fn numeric_metrics<'a>(
    raw: impl IntoIterator<Item = (&'a String, &'a Value)>,
) -> BTreeMap<String, f64> {
    let obj: Map<String, Value> = raw
        .into_iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    crate::store::metrics::values(&obj)
}

/// Read a creation time as the seeds write it: RFC 3339, a naive ISO time
/// (seed 002, taken as UTC) or a `YYYYMMDD_HHMMSS` stamp (seed 003).
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y%m%d_%H%M%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    None
}

/// Seed 002's consistency rules, for whatever feature metadata a run has.
pub fn feature_problems(features: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let names = features.get("feature_names").and_then(Value::as_array);
    let count = features.get("feature_count").and_then(Value::as_u64);
    let selected = features.get("selected_features").and_then(Value::as_array);
    let input = features.get("input_size_actual").and_then(Value::as_u64);
    if let (Some(names), Some(count)) = (names, count) {
        if names.len() as u64 != count {
            problems.push(format!(
                "feature count mismatch: feature_count={count} but {} feature_names",
                names.len()
            ));
        }
    }
    if let Some(selected) = selected {
        let total = names.map(|n| n.len() as u64).or(count);
        let mut seen = std::collections::HashSet::new();
        for s in selected {
            match s.as_i64() {
                Some(i) if i < 0 || total.is_some_and(|t| i as u64 >= t) => {
                    problems.push(format!("selected feature index {i} is out of range"));
                }
                Some(i) if !seen.insert(i) => {
                    problems.push(format!("selected feature index {i} appears twice"));
                }
                None => problems.push(format!("selected feature {s} is not an index")),
                _ => {}
            }
        }
        if let Some(input) = input {
            if input != selected.len() as u64 {
                problems.push(format!(
                    "input_size_actual={input} but {} selected_features",
                    selected.len()
                ));
            }
        }
    }
    problems
}

pub const FEATURE_KEYS: [&str; 4] = [
    "feature_names",
    "selected_features",
    "feature_count",
    "input_size_actual",
];

/// The seed 002 feature fields found at the top of a legacy metadata object.
pub fn legacy_features(obj: &Map<String, Value>) -> Option<Value> {
    let found: Map<String, Value> = FEATURE_KEYS
        .iter()
        .filter_map(|k| obj.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    (!found.is_empty()).then_some(Value::Object(found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_survive_a_rewrite() {
        let text = json!({
            "schema_version": 1, "id": "a", "namespace": "", "stage": "raw",
            "created_at": "2026-11-23T10:15:00Z", "status": "complete",
            "future_field": {"x": 1},
            "lineage": {"source": "s", "new_link": "y"},
        });
        let meta: Metadata = serde_json::from_value(text).unwrap();
        let back: Value = serde_json::from_str(&meta.to_json()).unwrap();
        assert_eq!(back["future_field"], json!({"x": 1}));
        assert_eq!(back["lineage"]["new_link"], json!("y"));
    }

    #[test]
    fn times_in_every_seed_format() {
        let want = parse_time("2024-08-16T14:23:01Z").unwrap();
        assert_eq!(parse_time("2024-08-16T14:23:01.000000"), Some(want));
        assert_eq!(parse_time("20240816_142301"), Some(want));
        assert_eq!(parse_time("2024-08-16T16:23:01+02:00"), Some(want));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn feature_rules_of_seed_002() {
        let ok = json!({"feature_names": ["a", "b", "c"], "feature_count": 3,
                        "selected_features": [0, 2], "input_size_actual": 2});
        assert!(feature_problems(&ok).is_empty());
        let bad = json!({"feature_names": ["a", "b", "c"], "feature_count": 50,
                         "selected_features": [0, 0, 7], "input_size_actual": 2});
        let problems = feature_problems(&bad);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("feature count mismatch"));
    }
}
