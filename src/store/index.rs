//! The run index: one file per stage and namespace under
//! `.artifactctl/index/`, holding each native run's [`RunSummary`] next to
//! what readers validate it with.
//!
//! Writers keep it (under the store lock, through `fsx`, see
//! `ops::index`); readers never trust it blindly (see
//! [`crate::store::listing`]):
//! - the header records the [`DirStamp`] of the namespace folder (inode,
//!   mtime, ctime) as the writer listed it, what else the folder held (runs
//!   that are not indexed, child namespace folders with their stamps), so a
//!   reader whose `lstat` of the folder matches needs no `readdir`: nothing
//!   was added, removed or renamed in it since. A folder that changed is
//!   listed again and compared entry by entry (name and inode of each run
//!   folder);
//! - each entry records the [`Stamp`] of the `metadata.json` it was read
//!   from, which writers (and readers, where they check runs one by one)
//!   compare with one `lstat`.
//!
//! A missing, corrupted or foreign index file is ignored. Readers never
//! take the lock and never write: a stale index only costs them the reads
//! it cannot save.
//!
//! Only runs with a native `metadata.json` read by the summary path are
//! indexed; legacy runs have no manifest, so nothing cheap could tell that
//! their files changed, and they are read every time.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::store::layout::{INDEX_DIR, INTERNAL_DIR};
use crate::store::metadata::{self, parse_time, RunStatus, Summary, METADATA_FILE};
use crate::store::model::*;
use crate::store::refs::{Namespace, Stage};
use crate::store::Store;

/// Bumped when the file format changes; other versions are ignored.
pub const INDEX_VERSION: u32 = 2;

/// What `list`, `cleanup`, `report` and ref resolution need of one run,
/// independent of where the store lives (no local paths; the stage and
/// namespace are the file's), so a remote catalog can carry the same
/// records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: String,
    pub created_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub size_bytes: u64,
    pub file_count: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dataset_count: u64,
    /// The file names that count as models when they match the reader's
    /// `[list] model_patterns`, with how many files bear each: the model
    /// count depends on configuration, so it is computed when read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<(String, u64)>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<String>,
    /// The metadata holds refresh step records (a `steps` field).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub steps: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What identifies one version of a `metadata.json`: any rewrite (atomic
/// replace: a new inode; an edit in place: a new size, mtime or ctime)
/// changes it. On disk: `[ino, size, mtime_ns, ctime_ns]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp(pub u64, pub u64, pub i128, pub i128);

fn nanos(secs: i64, nsec: i64) -> i128 {
    i128::from(secs) * 1_000_000_000 + i128::from(nsec)
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp(
            meta.ino(),
            meta.size(),
            nanos(meta.mtime(), meta.mtime_nsec()),
            nanos(meta.ctime(), meta.ctime_nsec()),
        )
    }

    /// The stamp of the `metadata.json` of the run at `run_dir`, if it is a
    /// regular file (never followed).
    pub fn current(run_dir: &Path) -> Option<Stamp> {
        let meta = std::fs::symlink_metadata(run_dir.join(METADATA_FILE)).ok()?;
        meta.is_file().then(|| Stamp::of(&meta))
    }

    /// [`Stamp::current`] of the run `id` in the folder held open as
    /// `dir`: the kernel walks two names instead of the whole path, which
    /// is most of the cost when thousands of runs are checked.
    pub fn current_in(dir: &std::fs::File, id: &str) -> Option<Stamp> {
        use std::os::fd::AsRawFd;
        let path = std::ffi::CString::new(format!("{id}/{METADATA_FILE}")).ok()?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: a valid descriptor, a NUL-terminated path and a buffer of
        // the size the call fills.
        let rc = unsafe {
            libc::fstatat(
                dir.as_raw_fd(),
                path.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            return None;
        }
        // SAFETY: fstatat succeeded, so it filled `st`.
        let st = unsafe { st.assume_init() };
        (st.st_mode & libc::S_IFMT == libc::S_IFREG).then(|| {
            Stamp(
                st.st_ino,
                st.st_size as u64,
                nanos(st.st_mtime, st.st_mtime_nsec),
                nanos(st.st_ctime, st.st_ctime_nsec),
            )
        })
    }

    /// The folder `dir`, held open to check the runs in it with
    /// [`Stamp::current_in`] (never through a link).
    pub fn open_dir(dir: &Path) -> Option<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(dir)
            .ok()
    }
}

/// What identifies one state of a folder's list of entries: adding,
/// removing or renaming an entry changes its mtime and ctime, replacing
/// the folder its inode. On disk: `[ino, mtime_ns, ctime_ns]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirStamp(pub u64, pub i128, pub i128);

impl DirStamp {
    /// The stamp of the folder at `dir`, if it is one (never followed).
    pub fn of(dir: &Path) -> Option<DirStamp> {
        let meta = std::fs::symlink_metadata(dir).ok()?;
        meta.is_dir().then(|| {
            DirStamp(
                meta.ino(),
                nanos(meta.mtime(), meta.mtime_nsec()),
                nanos(meta.ctime(), meta.ctime_nsec()),
            )
        })
    }

    fn ctime_age(&self) -> Option<Duration> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_nanos();
        let now = i128::try_from(now).ok()?;
        u64::try_from(now - self.2).ok().map(Duration::from_nanos)
    }
}

/// How long a folder's ctime must lie in the past before its stamp is
/// trusted: the kernel stamps changes with a clock that ticks every few
/// milliseconds, so a change in the same tick as the stamp taken could
/// leave it equal. 30 ms is three ticks of the coarsest (100 Hz) kernel.
const SETTLE: Duration = Duration::from_millis(30);

/// The stamp of a folder about to be listed for the index, and whether
/// readers may trust it: its ctime must be older than [`SETTLE`] when
/// taken (the writer waits for that, at most a few times), and carry
/// sub-second digits (a file system that keeps whole seconds cannot tell
/// two changes in a second apart, so its folders are always listed).
pub fn settled_stamp(dir: &Path) -> Option<(DirStamp, bool)> {
    for _ in 0..4 {
        let stamp = DirStamp::of(dir)?;
        let coarse = stamp.1 % 1_000_000_000 == 0 && stamp.2 % 1_000_000_000 == 0;
        match stamp.ctime_age() {
            Some(age) if age >= SETTLE => return Some((stamp, !coarse)),
            Some(age) => std::thread::sleep(SETTLE - age + Duration::from_millis(1)),
            // A ctime in the future: another clock stamped it.
            None => return Some((stamp, false)),
        }
    }
    DirStamp::of(dir).map(|s| (s, false))
}

/// The first line of an index file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    pub stage: Stage,
    pub namespace: String,
    /// The namespace folder's stamp when the writer listed it.
    pub dir: DirStamp,
    /// Whether readers may take `dir` matching as "nothing changed".
    pub trusted: bool,
    /// How many entry lines follow (a file cut short has fewer).
    pub entries: usize,
    /// Runs in the folder that are not indexed (legacy layouts), by id.
    #[serde(default)]
    pub unindexed: Vec<String>,
    /// Child namespace folders. One that became a run (a file dropped into
    /// it) changes its own stamp, not its parent's: readers classify it
    /// again when its own index file does not vouch for it.
    #[serde(default)]
    pub namespaces: Vec<String>,
}

/// One entry as a writer writes it.
#[derive(Debug, Serialize)]
pub struct EntryOut<'a> {
    /// The inode of the run folder, as `readdir` reports it: a folder
    /// replaced behind our back (same name, new folder) has another.
    pub dino: u64,
    pub stamp: Stamp,
    #[serde(flatten)]
    pub run: &'a RunSummary,
}

/// One entry as a reader reads it: borrowed from the line, the metrics,
/// params and tags kept as the JSON text they are.
#[derive(Debug, Deserialize)]
pub struct EntryIn<'a> {
    #[serde(borrow)]
    pub id: std::borrow::Cow<'a, str>,
    pub dino: u64,
    pub stamp: Stamp,
    pub created_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub size_bytes: u64,
    pub file_count: u64,
    #[serde(default)]
    pub dataset_count: u64,
    #[serde(default, borrow)]
    pub models: Vec<(std::borrow::Cow<'a, str>, u64)>,
    #[serde(default, borrow)]
    pub metrics: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub params: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub tags: Option<&'a RawValue>,
    #[serde(default)]
    pub pinned: bool,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub promoted_from: Option<String>,
    #[serde(default)]
    pub steps: bool,
}

impl EntryIn<'_> {
    pub fn parse(line: &[u8]) -> Option<EntryIn<'_>> {
        serde_json::from_slice(line).ok()
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

/// An index file as read: its header and the entry lines after it.
pub struct Loaded {
    pub header: Header,
    /// The entry lines, newline-terminated, sorted by id (checked as they
    /// are parsed: see [`Loaded::entries`]).
    pub body: Vec<u8>,
}

impl Loaded {
    /// The entry lines.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.body.split(|&b| b == b'\n').filter(|l| !l.is_empty())
    }

    /// Every entry, parsed; `None` if one line is not an entry or the ids
    /// are not strictly sorted (a file that was not written whole).
    pub fn entries(&self) -> Option<Vec<(EntryIn<'_>, &[u8])>> {
        use rayon::prelude::*;
        let lines: Vec<&[u8]> = self.lines().collect();
        let entries = lines
            .par_iter()
            .map(|line| EntryIn::parse(line).map(|e| (e, *line)))
            .collect::<Option<Vec<_>>>()?;
        entries
            .windows(2)
            .all(|w| w[0].0.id < w[1].0.id)
            .then_some(entries)
    }
}

/// The index file of one stage and namespace, or `None` when it is missing,
/// unreadable, torn, of another version or namespace, or reached through a
/// link.
pub fn load(store_dir: &Path, stage: Stage, ns: &Namespace) -> Option<Loaded> {
    let internal = store_dir.join(INTERNAL_DIR);
    let real = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    if !real(&internal) || !real(&internal.join(INDEX_DIR)) {
        return None;
    }
    let mut file = metadata::open_regular(&file_path(store_dir, stage, ns), false).ok()?;
    // Sized up front: an index file is tens of megabytes at 100,000 runs,
    // and growing a buffer to that by doubling holds it twice.
    let size = file.metadata().ok()?.len() as usize;
    let mut bytes = Vec::with_capacity(size + 1);
    std::io::Read::read_to_end(&mut file, &mut bytes).ok()?;
    let head_len = bytes.iter().position(|&b| b == b'\n')? + 1;
    let header: Header = serde_json::from_slice(&bytes[..head_len]).ok()?;
    // A torn file ends mid-line.
    if header.version != INDEX_VERSION
        || header.stage != stage
        || header.namespace != ns.to_string()
        || bytes.last() != Some(&b'\n')
    {
        return None;
    }
    bytes.drain(..head_len);
    Some(Loaded {
        header,
        body: bytes,
    })
}

/// Read the summary of the run at `location` for the index, with the stamp
/// of the very file read; `None` when the run is not native (or its
/// metadata is not what the summary path reads), so it is never indexed.
pub fn summarize(location: &RunLocation) -> Option<(Stamp, RunSummary)> {
    let file = metadata::open_regular(&location.path.join(METADATA_FILE), false).ok()?;
    let stamp = Stamp::of(&file.metadata().ok()?);
    let bytes = metadata::read_all(file).ok()?;
    Some((stamp, summary_from(&bytes, &location.id)?))
}

/// The summary of the `metadata.json` held in `bytes`, for the run `id`;
/// `None` when the summary path cannot read it (another schema version, no
/// creation time).
fn summary_from(bytes: &[u8], id: &str) -> Option<RunSummary> {
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
        created_at,
        status: s.status.unwrap_or(RunStatus::Unknown),
        size_bytes: s.total_size,
        file_count: s.file_count,
        dataset_count,
        models: candidates.into_inner().into_iter().collect(),
        // As the full read takes them (`read::apply_summary`): the
        // top-level finite numbers, nothing flattened.
        metrics: s
            .metrics
            .iter()
            .filter_map(|(k, v)| v.as_f64().filter(|f| f.is_finite()).map(|f| (k.clone(), f)))
            .collect(),
        params: s.params,
        tags: s.tags,
        pinned: s.pinned,
        parent: lineage.parent,
        promoted_from: lineage.promoted_from,
        steps: s.steps.is_some(),
    })
}

/// One run of a remote's catalog: the [`RunSummary`] of the local index
/// (built by the same reader, so a run lists the same on both sides) with
/// where it lives, which a local index file implies and a catalog line
/// must say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogRun {
    pub stage: Stage,
    pub namespace: String,
    #[serde(flatten)]
    pub run: RunSummary,
}

/// The catalog record of the `metadata.json` held in `bytes`, for the run
/// `id` of `stage` and `ns`; `None` when the summary path cannot read it.
pub fn summary_of(bytes: &[u8], stage: Stage, ns: &Namespace, id: &str) -> Option<CatalogRun> {
    Some(CatalogRun {
        stage,
        namespace: ns.to_string(),
        run: summary_from(bytes, id)?,
    })
}

/// A catalog run reads like the summary it carries (`run.id`,
/// `run.created_at`).
impl std::ops::Deref for CatalogRun {
    type Target = RunSummary;

    fn deref(&self) -> &RunSummary {
        &self.run
    }
}

impl CatalogRun {
    /// The listing row of this run at `location`, as [`read_run`] without
    /// detail would build it.
    ///
    /// [`read_run`]: crate::store::read_run
    pub fn into_run(self, location: RunLocation, opts: &ReadOptions) -> RunInfo {
        let run = self.run;
        let model_count = run
            .models
            .iter()
            .filter(|(name, _)| opts.is_model(name))
            .map(|(_, n)| n)
            .sum();
        RunInfo {
            reference: location.reference(),
            id: run.id,
            namespace: self.namespace,
            stage: self.stage,
            created_at: run.created_at,
            status: run.status,
            size_bytes: run.size_bytes,
            file_count: run.file_count,
            model_count,
            dataset_count: run.dataset_count,
            metrics: run.metrics,
            params: run.params,
            tags: run.tags,
            latest: false,
            pinned: run.pinned,
            layout: RunLayout::Native,
            problems: Vec::new(),
            location,
            detail: None,
        }
    }
}

/// The index file of one namespace brought up to date with the disk, as
/// bytes to write: valid entries are kept as they are, changed or new runs
/// are read, gone ones dropped. `None` when the namespace folder is gone.
/// For writers, which hold the lock and write the result.
pub fn refreshed(store: &Store, stage: Stage, ns: &Namespace) -> Option<Vec<u8>> {
    use rayon::prelude::*;
    let dir = store.ns_dir(stage, ns).ok()?;
    // The stamp comes before the listing: whatever changes after it
    // changes the stamp too.
    let (stamp, trusted) = settled_stamp(&dir)?;
    let scan = store.scan(stage, ns, &dir)?;
    let old = load(store.dir(), stage, ns);
    let dir_fd = Stamp::open_dir(&dir);
    let old_entries = old.as_ref().and_then(Loaded::entries).unwrap_or_default();
    let old_by_id: BTreeMap<&str, &(EntryIn<'_>, &[u8])> =
        old_entries.iter().map(|e| (e.0.id.as_ref(), e)).collect();
    // Kept lines are borrowed from the old file, not copied.
    let lines: Vec<Option<std::borrow::Cow<'_, [u8]>>> = scan
        .runs
        .par_iter()
        .map(|(id, dino)| {
            let path = dir.join(id);
            if let Some((entry, line)) = old_by_id.get(id.as_str()) {
                let now = match &dir_fd {
                    Some(fd) => Stamp::current_in(fd, id),
                    None => Stamp::current(&path),
                };
                if entry.dino == *dino && now == Some(entry.stamp) {
                    return Some(std::borrow::Cow::Borrowed(*line));
                }
            }
            let location = RunLocation {
                stage,
                namespace: ns.clone(),
                id: id.clone(),
                path,
            };
            let (stamp, run) = summarize(&location)?;
            serde_json::to_vec(&EntryOut {
                dino: *dino,
                stamp,
                run: &run,
            })
            .ok()
            .map(std::borrow::Cow::Owned)
        })
        .collect();
    // Readers take a folder whose stamp holds for a namespace without
    // classifying it again: so it must not be a run (the root of a stage
    // never is one).
    let is_run = ns
        .segments()
        .last()
        .is_some_and(|name| crate::store::discover::is_run_dir(&dir, name));
    let header = Header {
        version: INDEX_VERSION,
        stage,
        namespace: ns.to_string(),
        dir: stamp,
        trusted: trusted && !is_run,
        entries: lines.iter().flatten().count(),
        unindexed: scan
            .runs
            .iter()
            .zip(&lines)
            .filter(|(_, line)| line.is_none())
            .map(|((id, _), _)| id.clone())
            .collect(),
        namespaces: scan.namespaces.clone(),
    };
    let mut out = serde_json::to_vec(&header).ok()?;
    out.reserve(lines.iter().flatten().map(|l| l.len() + 1).sum());
    out.push(b'\n');
    for line in lines.into_iter().flatten() {
        out.extend_from_slice(&line);
        out.push(b'\n');
    }
    Some(out)
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
    fn entries_parse_back_borrowed() {
        let run = RunSummary {
            id: "r1".into(),
            created_at: None,
            status: RunStatus::Complete,
            size_bytes: 5,
            file_count: 1,
            dataset_count: 0,
            models: vec![("model.pt".into(), 1)],
            metrics: BTreeMap::from([("sharpe_ratio".into(), 0.1 + 0.2)]),
            params: BTreeMap::from([("a".into(), serde_json::json!({"b": [1, "x"]}))]),
            tags: vec![],
            pinned: false,
            parent: None,
            promoted_from: Some("raw/r0".into()),
            steps: false,
        };
        let line = serde_json::to_vec(&EntryOut {
            dino: 7,
            stamp: Stamp(1, 2, 3, 4),
            run: &run,
        })
        .unwrap();
        let e = EntryIn::parse(&line).unwrap();
        assert_eq!(
            (e.id.as_ref(), e.dino, e.stamp),
            ("r1", 7, Stamp(1, 2, 3, 4))
        );
        assert_eq!(
            e.metrics.unwrap().get(),
            r#"{"sharpe_ratio":0.30000000000000004}"#
        );
        assert_eq!(e.params.unwrap().get(), r#"{"a":{"b":[1,"x"]}}"#);
        assert!(e.tags.is_none());
        assert_eq!(e.promoted_from.as_deref(), Some("raw/r0"));
        assert!(EntryIn::parse(&line[..line.len() - 3]).is_none());
    }
}
