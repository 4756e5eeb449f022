//! Listing many runs fast: what `list`, `cleanup`, `report` and `latest`
//! resolution read, from the run index ([`crate::store::index`]) where it
//! holds, else from the runs themselves.
//!
//! What a reader checks, per namespace folder: one `lstat`. A folder whose
//! stamp (inode, mtime, ctime) still equals the one its index file recorded
//! has had nothing added, removed or renamed since, so its index file lists
//! it without a `readdir`; a folder that changed is listed again and each
//! run folder's name and inode compared with its entry (a folder added by
//! a legacy tool is read, one removed with `rm -rf` drops out, one replaced
//! is read again). Child namespace folders are checked the same way.
//!
//! Per run: when the listing holds at most [`RUN_CHECKS_UP_TO`] indexed
//! runs, or the caller asks for it (cleanup's planner, which decides what
//! to remove), every entry is also checked against one `lstat` of its
//! `metadata.json`, so an edit inside a run folder is seen too. Above that
//! a listing costs no syscall per run, and an edit of a `metadata.json` in
//! place (which changes no folder) shows once a writer touches the
//! namespace; `show` always reads the file itself.
//!
//! Rows are kept compact ([`Row`]): the metrics, params, tags and problems
//! as the compact JSON text the index holds, so 100,000 runs fit in a few
//! tens of megabytes and are printed without being parsed again.

mod read;

pub use read::{list, list_in};

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rayon::prelude::*;
use serde_json::Value;

use crate::store::index::EntryIn;
use crate::store::latest::read_latest;
use crate::store::metadata::RunStatus;
use crate::store::model::*;
use crate::store::refs::{format_ref, Namespace, Stage};
use crate::store::version::ReleaseKey;

/// Up to this many indexed runs in one listing, each entry is also checked
/// against its `metadata.json` (about 2 µs a run on a warm cache).
pub const RUN_CHECKS_UP_TO: usize = 5_000;

/// Whether each indexed run's `metadata.json` stamp is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunChecks {
    /// Up to [`RUN_CHECKS_UP_TO`] indexed runs.
    Auto,
    /// Always: for callers that act on what they read.
    Always,
}

/// One stage and namespace of a listing.
#[derive(Debug, Clone)]
pub struct Group {
    pub stage: Stage,
    pub namespace: Namespace,
    /// `namespace` as text, as rows show it.
    pub ns_text: String,
    /// The folder of its runs.
    pub dir: PathBuf,
}

/// One run of a listing.
#[derive(Debug, Clone)]
pub struct Row {
    /// Index into [`Listing::groups`].
    pub group: u32,
    /// The id, then compact JSON of metrics, params, tags and problems.
    text: Box<str>,
    ends: [u32; 4],
    pub created_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub layout: RunLayout,
    pub latest: bool,
    pub pinned: bool,
    /// The metadata may hold refresh step records.
    pub steps: bool,
    pub size_bytes: u64,
    pub file_count: u64,
    pub model_count: u64,
    pub dataset_count: u64,
    /// Read from the index (which knows its lineage), not from its folder.
    pub indexed: bool,
    /// `(parent, promoted_from)` of an indexed run, when either is set.
    pub lineage: Option<Box<(Option<String>, Option<String>)>>,
}

impl Row {
    fn pack(id: &str, parts: [&str; 4]) -> (Box<str>, [u32; 4]) {
        let mut text =
            String::with_capacity(id.len() + parts.iter().map(|p| p.len()).sum::<usize>());
        text.push_str(id);
        let mut ends = [0u32; 4];
        for (i, part) in parts[..3].iter().enumerate() {
            ends[i] = text.len() as u32;
            text.push_str(part);
        }
        ends[3] = text.len() as u32;
        text.push_str(parts[3]);
        (text.into_boxed_str(), ends)
    }

    pub fn id(&self) -> &str {
        &self.text[..self.ends[0] as usize]
    }
    /// `{"name": value, ...}`, compact.
    pub fn metrics_json(&self) -> &str {
        &self.text[self.ends[0] as usize..self.ends[1] as usize]
    }
    pub fn params_json(&self) -> &str {
        &self.text[self.ends[1] as usize..self.ends[2] as usize]
    }
    pub fn tags_json(&self) -> &str {
        &self.text[self.ends[2] as usize..self.ends[3] as usize]
    }
    pub fn problems_json(&self) -> &str {
        &self.text[self.ends[3] as usize..]
    }
    pub fn has_problems(&self) -> bool {
        self.problems_json() != "[]"
    }

    pub fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        parse_metrics(self.metrics_json())
    }

    pub fn params(&self) -> std::collections::BTreeMap<String, Value> {
        serde_json::from_str(self.params_json()).unwrap_or_default()
    }
    pub fn tags(&self) -> Vec<String> {
        serde_json::from_str(self.tags_json()).unwrap_or_default()
    }
    pub fn problems(&self) -> Vec<String> {
        serde_json::from_str(self.problems_json()).unwrap_or_default()
    }

    /// The row of a run read from its folder.
    pub fn from_info(group: u32, run: &RunInfo) -> Row {
        let json = |v: &dyn erased::Ser| v.to_json();
        let (text, ends) = Row::pack(
            &run.id,
            [
                &json(&run.metrics),
                &json(&run.params),
                &json(&run.tags),
                &json(&run.problems),
            ],
        );
        Row {
            group,
            text,
            ends,
            created_at: run.created_at,
            status: run.status,
            layout: run.layout,
            latest: run.latest,
            pinned: run.pinned,
            steps: true,
            size_bytes: run.size_bytes,
            file_count: run.file_count,
            model_count: run.model_count,
            dataset_count: run.dataset_count,
            indexed: false,
            lineage: None,
        }
    }

    /// The row of an index entry.
    pub fn from_entry(group: u32, e: &EntryIn<'_>, opts: &ReadOptions) -> Row {
        fn raw<'a>(v: Option<&'a serde_json::value::RawValue>, empty: &'static str) -> &'a str {
            v.map_or(empty, |r| r.get())
        }
        let (text, ends) = Row::pack(
            &e.id,
            [
                raw(e.metrics, "{}"),
                raw(e.params, "{}"),
                raw(e.tags, "[]"),
                "[]",
            ],
        );
        let model_count = e
            .models
            .iter()
            .filter(|(name, _)| opts.is_model(name))
            .map(|(_, n)| n)
            .sum();
        let lineage = (e.parent.is_some() || e.promoted_from.is_some())
            .then(|| Box::new((e.parent.clone(), e.promoted_from.clone())));
        Row {
            group,
            text,
            ends,
            created_at: e.created_at,
            status: e.status,
            layout: RunLayout::Native,
            latest: false,
            pinned: e.pinned,
            steps: e.steps,
            size_bytes: e.size_bytes,
            file_count: e.file_count,
            model_count,
            dataset_count: e.dataset_count,
            indexed: true,
            lineage,
        }
    }
}

/// The full row of the run at `location`, as [`crate::store::read_run`] (without detail)
/// builds it.
pub fn row_info(location: RunLocation, row: &Row) -> RunInfo {
    row_info_of(location, row, true)
}

/// [`row_info`], with the metrics, params and tags parsed only when
/// `values` (parsing them is most of a row's cost).
fn row_info_of(location: RunLocation, row: &Row, values: bool) -> RunInfo {
    RunInfo {
        reference: location.reference(),
        id: location.id.clone(),
        namespace: location.namespace.to_string(),
        stage: location.stage,
        created_at: row.created_at,
        status: row.status,
        size_bytes: row.size_bytes,
        file_count: row.file_count,
        model_count: row.model_count,
        dataset_count: row.dataset_count,
        metrics: if values {
            row.metrics()
        } else {
            Default::default()
        },
        params: if values {
            row.params()
        } else {
            Default::default()
        },
        tags: if values { row.tags() } else { Vec::new() },
        latest: row.latest,
        pinned: row.pinned,
        layout: row.layout,
        problems: if row.has_problems() {
            row.problems()
        } else {
            Vec::new()
        },
        location,
        detail: None,
    }
}

/// Metric values as the index and rows keep them; a non-finite value was
/// written as `null`.
fn parse_metrics(text: &str) -> std::collections::BTreeMap<String, f64> {
    let raw: std::collections::BTreeMap<String, Option<f64>> =
        serde_json::from_str(text).unwrap_or_default();
    raw.into_iter()
        .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
        .collect()
}

mod erased {
    pub trait Ser {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Ser for T {
        fn to_json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

/// The runs of one listing.
#[derive(Debug, Default)]
pub struct Listing {
    pub groups: Vec<Group>,
    pub rows: Vec<Row>,
}

impl Listing {
    pub fn group(&self, row: &Row) -> &Group {
        &self.groups[row.group as usize]
    }

    /// `stage/ns/id` as `list` shows it.
    pub fn reference(&self, row: &Row) -> String {
        let g = self.group(row);
        format_ref(g.stage, &g.namespace, row.id())
    }

    pub fn location(&self, row: &Row) -> RunLocation {
        let g = self.group(row);
        RunLocation {
            stage: g.stage,
            namespace: g.namespace.clone(),
            id: row.id().to_string(),
            path: g.dir.join(row.id()),
        }
    }

    /// The full row, as [`crate::store::read_run`] (without detail) builds it.
    pub fn info(&self, row: &Row) -> RunInfo {
        self.info_of(row, true)
    }

    fn info_of(&self, row: &Row, values: bool) -> RunInfo {
        let mut info = row_info_of(self.location(row), row, values);
        info.namespace.clone_from(&self.group(row).ns_text);
        info
    }

    /// The listing of runs read whole.
    pub fn from_infos(runs: Vec<RunInfo>) -> Listing {
        let mut listing = Listing::default();
        let mut index: HashMap<(Stage, Namespace), u32> = HashMap::new();
        for run in &runs {
            let key = (run.stage, run.location.namespace.clone());
            let groups = &mut listing.groups;
            let g = *index.entry(key).or_insert_with(|| {
                groups.push(Group {
                    stage: run.stage,
                    namespace: run.location.namespace.clone(),
                    ns_text: run.namespace.clone(),
                    dir: run
                        .location
                        .path
                        .parent()
                        .map(Path::to_path_buf)
                        .unwrap_or_default(),
                });
                (groups.len() - 1) as u32
            });
            listing.rows.push(Row::from_info(g, run));
        }
        listing
    }

    pub fn into_infos(self) -> Vec<RunInfo> {
        self.rows.par_iter().map(|r| self.info(r)).collect()
    }

    /// [`Listing::into_infos`] with the metrics, params and tags left
    /// empty, for callers that decide by time, status, size and pins
    /// (cleanup's planner): parsing them is most of a row's cost.
    pub fn into_infos_without_values(self) -> Vec<RunInfo> {
        self.rows
            .par_iter()
            .map(|row| self.info_of(row, false))
            .collect()
    }

    /// The row `latest` means in `group` when no link names one, as
    /// [`crate::store::latest`] picks it: the highest release in
    /// production, else the newest complete, healthy run; `except` aside.
    pub fn preferred(&self, group: u32, except: Option<&str>) -> Option<&Row> {
        let production = self.groups[group as usize].stage == Stage::Production;
        self.rows
            .iter()
            .filter(|r| r.group == group && Some(r.id()) != except)
            .filter(|r| r.status == RunStatus::Complete && !r.has_problems())
            .max_by(|a, b| {
                if production {
                    ReleaseKey::of(a.id()).cmp(&ReleaseKey::of(b.id()))
                } else {
                    (a.created_at, a.id()).cmp(&(b.created_at, b.id()))
                }
            })
    }

    /// Mark each namespace's `latest` as [`crate::store::latest`] does.
    fn mark_latest(&mut self) {
        let mut chosen: Vec<Option<usize>> = vec![None; self.groups.len()];
        let mut best: Vec<Option<usize>> = vec![None; self.groups.len()];
        for (i, row) in self.rows.iter().enumerate() {
            if row.status != RunStatus::Complete || row.has_problems() {
                continue;
            }
            let g = row.group as usize;
            let better = match best[g] {
                None => true,
                Some(j) => {
                    let other = &self.rows[j];
                    if self.groups[g].stage == Stage::Production {
                        ReleaseKey::of(row.id()) >= ReleaseKey::of(other.id())
                    } else {
                        (row.created_at, row.id()) >= (other.created_at, other.id())
                    }
                }
            };
            if better {
                best[g] = Some(i);
            }
        }
        let mut by_id: Vec<HashMap<&str, usize>> = vec![HashMap::new(); self.groups.len()];
        let linked: Vec<Option<Option<String>>> = self
            .groups
            .iter()
            .map(|g| match read_latest(&g.dir) {
                LatestState::Link(id) | LatestState::Pointer(id) => Some(Some(id)),
                LatestState::Escaping(_) => Some(None),
                _ => None,
            })
            .collect();
        if linked.iter().any(|l| matches!(l, Some(Some(_)))) {
            for (i, row) in self.rows.iter().enumerate() {
                by_id[row.group as usize].insert(row.id(), i);
            }
        }
        for (g, link) in linked.iter().enumerate() {
            chosen[g] = match link {
                Some(Some(id)) => by_id[g].get(id.as_str()).copied(),
                Some(None) => None,
                None => best[g],
            };
        }
        for i in chosen.into_iter().flatten() {
            self.rows[i].latest = true;
        }
    }

    /// Order rows as discovery does: by stage, then by path below it.
    fn sort_as_discovered(&mut self) {
        if self.groups.len() < 2 {
            return;
        }
        let stage_rank = |s: Stage| Stage::ALL.iter().position(|&x| x == s).unwrap_or(0);
        let groups = &self.groups;
        self.rows.par_sort_by(|a, b| {
            let (ga, gb) = (&groups[a.group as usize], &groups[b.group as usize]);
            stage_rank(ga.stage)
                .cmp(&stage_rank(gb.stage))
                .then_with(|| {
                    let pa = ga
                        .namespace
                        .segments()
                        .iter()
                        .map(String::as_str)
                        .chain([a.id()]);
                    let pb = gb
                        .namespace
                        .segments()
                        .iter()
                        .map(String::as_str)
                        .chain([b.id()]);
                    pa.cmp(pb)
                })
        });
    }
}

/// Order two rows by `(created_at, id)`, newest first.
pub fn newest_first(a: &Row, b: &Row) -> Ordering {
    (b.created_at, b.id()).cmp(&(a.created_at, a.id()))
}
