//! The run index: one file per stage and namespace under
//! `.artifactctl/index/`, holding each run's [`RunSummary`] next to the
//! [`Stamp`] of the `metadata.json` it was read from.
//!
//! Writers keep it (under the store lock, through `fsx`, see
//! `ops::index`); readers never trust it blindly. Discovery still lists
//! every namespace folder, so a run added or removed behind our back (seed
//! 003's training code, `rm -rf`) is seen at once, and each indexed run
//! costs one `lstat` of its `metadata.json`: a stamp that differs (a
//! hand-edited file) means the run is read again. A missing, corrupted or
//! foreign index file is ignored. Readers never take the lock and never
//! write: a stale index only costs them the reads it cannot save.
//!
//! Only runs with a native `metadata.json` read by the summary path are
//! indexed; legacy runs have no manifest, so nothing cheap could tell that
//! their files changed, and they are read every time.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::layout::{INDEX_DIR, INTERNAL_DIR};
use crate::store::metadata::{self, parse_time, RunStatus, Summary, METADATA_FILE};
use crate::store::model::*;
use crate::store::refs::{Namespace, Stage};
use crate::store::Store;

/// Bumped when the file format changes; other versions are ignored.
pub const INDEX_VERSION: u32 = 1;

/// What `list`, `cleanup`, `report` and ref resolution need of one run,
/// independent of where the store lives (no local paths), so a remote
/// catalog can carry the same records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: String,
    pub namespace: String,
    pub stage: Stage,
    pub created_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub size_bytes: u64,
    pub file_count: u64,
    pub dataset_count: u64,
    /// The file names that count as models when they match the reader's
    /// `[list] model_patterns`, with how many files bear each: the model
    /// count depends on configuration, so it is computed when read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_candidates: Vec<(String, u64)>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub pinned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<String>,
    pub layout: RunLayout,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// The metadata holds refresh step records (a `steps` field).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub steps: bool,
}

impl RunSummary {
    /// The listing row of this run at `location`, as [`read_run`] without
    /// detail would build it.
    ///
    /// [`read_run`]: crate::store::read_run
    pub fn into_run(self, location: RunLocation, opts: &ReadOptions) -> RunInfo {
        let model_count = self
            .model_candidates
            .iter()
            .filter(|(name, _)| opts.is_model(name))
            .map(|(_, n)| n)
            .sum();
        RunInfo {
            reference: location.reference(),
            id: self.id,
            namespace: self.namespace,
            stage: self.stage,
            created_at: self.created_at,
            status: self.status,
            size_bytes: self.size_bytes,
            file_count: self.file_count,
            model_count,
            dataset_count: self.dataset_count,
            metrics: self.metrics,
            params: self.params,
            tags: self.tags,
            latest: false,
            pinned: self.pinned,
            layout: self.layout,
            problems: self.problems,
            location,
            detail: None,
        }
    }
}

/// What identifies one version of a `metadata.json`: any rewrite (atomic
/// replace: a new inode; an edit in place: a new size, mtime or ctime)
/// changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }

    /// The stamp of the `metadata.json` of the run at `run_dir`, if it is a
    /// regular file (never followed).
    pub fn current(run_dir: &Path) -> Option<Stamp> {
        let meta = std::fs::symlink_metadata(run_dir.join(METADATA_FILE)).ok()?;
        meta.is_file().then(|| Stamp::of(&meta))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub stamp: Stamp,
    pub run: RunSummary,
}

/// One index file: the indexed runs of one stage and namespace, by id.
///
/// On disk, JSON lines: a header line (`version`, `stage`, `namespace`),
/// then one [`Entry`] per line sorted by id, so a reader parses the lines
/// in parallel.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexFile {
    pub version: u32,
    pub stage: Stage,
    pub namespace: String,
    /// Sorted by id.
    pub runs: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    version: u32,
    stage: Stage,
    namespace: String,
}

impl IndexFile {
    pub fn new(stage: Stage, ns: &Namespace) -> IndexFile {
        IndexFile {
            version: INDEX_VERSION,
            stage,
            namespace: ns.to_string(),
            runs: Vec::new(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.runs
            .binary_search_by(|e| e.run.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.runs[i])
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let header = Header {
            version: self.version,
            stage: self.stage,
            namespace: self.namespace.clone(),
        };
        let mut out = serde_json::to_vec(&header).unwrap_or_default();
        out.push(b'\n');
        for entry in &self.runs {
            if serde_json::to_writer(&mut out, entry).is_ok() {
                out.push(b'\n');
            }
        }
        out
    }

    /// Parse what [`IndexFile::to_bytes`] wrote; `None` for anything else.
    pub fn parse(bytes: &[u8]) -> Option<IndexFile> {
        use rayon::prelude::*;
        let (head, body) = bytes.split_at(bytes.iter().position(|&b| b == b'\n')? + 1);
        let header: Header = serde_json::from_slice(head).ok()?;
        if header.version != INDEX_VERSION || body.last().is_some_and(|&b| b != b'\n') {
            return None;
        }
        let lines: Vec<&[u8]> = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let runs = lines
            .par_iter()
            .map(|line| serde_json::from_slice::<Entry>(line).ok())
            .collect::<Option<Vec<Entry>>>()?;
        Some(IndexFile {
            version: header.version,
            stage: header.stage,
            namespace: header.namespace,
            runs,
        })
    }
}

/// Whether readers use the index. `ARTIFACTCTL_INDEX=off` forces the full
/// scan (to compare, or to rule the index out); in debug builds `check`
/// does both and panics when they differ.
pub fn mode() -> Mode {
    match std::env::var("ARTIFACTCTL_INDEX").as_deref() {
        Ok("off") => Mode::Off,
        Ok("check") if cfg!(debug_assertions) => Mode::Check,
        _ => Mode::On,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    On,
    Off,
    Check,
}

/// `<store>/.artifactctl/index/<stage>-<hash of the namespace>.jsonl`: a
/// flat folder whatever names legacy namespaces use.
pub fn file_path(store_dir: &Path, stage: Stage, ns: &Namespace) -> PathBuf {
    store_dir
        .join(INTERNAL_DIR)
        .join(INDEX_DIR)
        .join(file_name(stage, ns))
}

pub fn file_name(stage: Stage, ns: &Namespace) -> String {
    let hash = blake3::hash(ns.to_string().as_bytes()).to_hex();
    format!("{stage}-{}.jsonl", &hash[..32])
}

/// The index file of one stage and namespace, or `None` when it is missing,
/// unreadable, corrupted, of another version, or reached through a link.
pub fn load(store_dir: &Path, stage: Stage, ns: &Namespace) -> Option<IndexFile> {
    let internal = store_dir.join(INTERNAL_DIR);
    let real = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    if !real(&internal) || !real(&internal.join(INDEX_DIR)) {
        return None;
    }
    let bytes = metadata::read_no_follow(&file_path(store_dir, stage, ns)).ok()?;
    let file = IndexFile::parse(&bytes)?;
    let sorted = file.runs.windows(2).all(|w| w[0].run.id < w[1].run.id);
    (file.version == INDEX_VERSION
        && file.stage == stage
        && file.namespace == ns.to_string()
        && sorted)
        .then_some(file)
}

/// Read the summary of the run at `location` for the index, with the stamp
/// of the very file read; `None` when the run is not native (or its
/// metadata is not what the summary path reads), so it is never indexed.
pub fn summarize(location: &RunLocation) -> Option<Entry> {
    let file = metadata::open_regular(&location.path.join(METADATA_FILE), false).ok()?;
    let stamp = Stamp::of(&file.metadata().ok()?);
    let bytes = metadata::read_all(file).ok()?;
    let run = summary_of(&bytes, location.stage, &location.namespace, &location.id)?;
    Some(Entry { stamp, run })
}

/// The summary of a `metadata.json` held in `bytes`, for the run `id` of
/// `stage` and `ns`; `None` when the summary path cannot read it (another
/// schema version, no creation time). A remote's catalog builds its entries
/// from run records with this, so both indexes hold the same records.
pub fn summary_of(bytes: &[u8], stage: Stage, ns: &Namespace, id: &str) -> Option<RunSummary> {
    let s: Summary<'_> = serde_json::from_slice(bytes).ok()?;
    if s.schema_version != metadata::SCHEMA_VERSION {
        return None;
    }
    // Without a time of its own a run takes its folder's mtime, which the
    // stamp does not cover.
    let created_at = Some(s.created_at.as_deref().and_then(parse_time)?);
    let candidates: std::cell::RefCell<BTreeMap<String, u64>> = Default::default();
    let (_, dataset_count) = metadata::count_models_and_datasets(
        s.files
            .iter()
            .map(|f| (f.path.as_ref(), f.symlink.is_some())),
        &s.dataset_steps,
        |p| {
            let name = p.rsplit('/').next().unwrap_or(p);
            *candidates.borrow_mut().entry(name.to_string()).or_default() += 1;
            false
        },
    );
    let lineage = s.lineage.unwrap_or_default();
    Some(RunSummary {
        id: id.to_string(),
        namespace: ns.to_string(),
        stage,
        created_at,
        status: s.status.unwrap_or(RunStatus::Unknown),
        size_bytes: s.total_size,
        file_count: s.file_count,
        dataset_count,
        model_candidates: candidates.into_inner().into_iter().collect(),
        metrics: metadata::numeric_metrics(&s.metrics),
        params: s.params,
        tags: s.tags,
        pinned: s.pinned,
        parent: lineage.parent,
        promoted_from: lineage.promoted_from,
        layout: RunLayout::Native,
        problems: Vec::new(),
        steps: s.steps.is_some(),
    })
}

/// The index file of one namespace brought up to date with the disk: valid
/// entries are kept, changed or new runs are read, gone ones dropped. For
/// writers, which hold the lock and write the result.
pub fn refreshed(store: &Store, stage: Stage, ns: &Namespace) -> IndexFile {
    use rayon::prelude::*;
    let old = load(store.dir(), stage, ns);
    let mut file = IndexFile::new(stage, ns);
    file.runs = store
        .locations_in(stage, ns)
        .into_par_iter()
        .filter_map(|location| {
            if let Some(entry) = old.as_ref().and_then(|o| o.get(&location.id)) {
                if Stamp::current(&location.path) == Some(entry.stamp) {
                    return Some(entry.clone());
                }
            }
            summarize(&location)
        })
        .collect();
    file.runs.sort_by(|a, b| a.run.id.cmp(&b.run.id));
    file
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_flat_and_distinct() {
        let a = Namespace::parse("models/gru").unwrap();
        let b = Namespace::parse("models").unwrap();
        assert_ne!(file_name(Stage::Raw, &a), file_name(Stage::Raw, &b));
        assert_ne!(file_name(Stage::Raw, &a), file_name(Stage::Validated, &a));
        assert!(!file_name(Stage::Raw, &a).contains('/'));
    }

    #[test]
    fn files_parse_back_and_torn_ones_do_not() {
        let loc = RunLocation {
            stage: Stage::Raw,
            namespace: Namespace::root(),
            id: "r1".into(),
            path: "/nowhere/r1".into(),
        };
        let mut file = IndexFile::new(Stage::Raw, &Namespace::root());
        file.runs.push(Entry {
            stamp: Stamp {
                ino: 1,
                size: 2,
                mtime_ns: 3,
                ctime_ns: 4,
            },
            run: RunSummary {
                id: loc.id.clone(),
                namespace: String::new(),
                stage: Stage::Raw,
                created_at: None,
                status: RunStatus::Complete,
                size_bytes: 5,
                file_count: 1,
                dataset_count: 0,
                model_candidates: vec![("model.pt".into(), 1)],
                metrics: BTreeMap::from([("sharpe_ratio".into(), 0.1 + 0.2)]),
                params: BTreeMap::new(),
                tags: vec![],
                pinned: false,
                parent: None,
                promoted_from: None,
                layout: RunLayout::Native,
                problems: vec![],
                steps: false,
            },
        });
        let bytes = file.to_bytes();
        assert_eq!(IndexFile::parse(&bytes), Some(file.clone()));
        assert_eq!(IndexFile::parse(&bytes[..bytes.len() - 3]), None);
        assert_eq!(IndexFile::parse(b""), None);
        let opts = ReadOptions::new(&["*.pt".into()], false).unwrap();
        let run = file.runs[0].run.clone().into_run(loc, &opts);
        assert_eq!(run.model_count, 1);
        assert_eq!(run.metrics["sharpe_ratio"], 0.1 + 0.2);
    }
}
