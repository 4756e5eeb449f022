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

pub mod discover;
pub mod index;
pub mod journal;
pub mod latest;
pub mod layout;
pub mod listing;
pub mod manifest;
pub mod metadata;
pub mod metrics;
pub mod model;
pub mod read;
pub mod refs;
pub mod version;

use discover::walk_namespace;
use latest::mark_latest;
pub use latest::read_latest;
use layout::detect_layout;
pub use layout::Layout;
pub use model::*;
pub use read::read_run;

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error::ArtifactError;
use crate::store::layout::{INTERNAL_DIR, LATEST};
use crate::store::metadata::RunStatus;
use crate::store::refs::{format_ref, Namespace, RunRef, Stage, Target};
use rayon::prelude::*;

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    layout: Layout,
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
        &Stage::ALL
    }

    /// A flat store's raw stage is the store folder itself (its version
    /// folders stay where the seed put them); its `validated/` and
    /// `production/` sit beside them, created by the first promotion.
    pub fn stage_dir(&self, stage: Stage) -> Result<PathBuf, ArtifactError> {
        match (self.layout, stage) {
            (Layout::Flat, Stage::Raw) => Ok(self.dir.clone()),
            _ => Ok(self.dir.join(stage.as_str())),
        }
    }

    /// In a flat store the raw stage is the store folder, which also holds
    /// the `validated/` and `production/` folders: those are not raw runs.
    fn in_stage(&self, location: &RunLocation) -> bool {
        if self.layout != Layout::Flat || location.stage != Stage::Raw {
            return true;
        }
        let top = location
            .namespace
            .segments()
            .first()
            .map(String::as_str)
            .unwrap_or(location.id.as_str());
        !Stage::ALL.iter().any(|s| s.as_str() == top)
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
        out.retain(|l| self.in_stage(l));
        out
    }

    /// The runs directly in one namespace (not below it).
    pub fn locations_in(&self, stage: Stage, ns: &Namespace) -> Vec<RunLocation> {
        let mut out = Vec::new();
        if let Ok(dir) = self.ns_dir(stage, ns) {
            walk_namespace(&dir, stage, ns, 0, &mut out);
        }
        out.retain(|l| self.in_stage(l));
        out
    }

    /// What one namespace folder holds (see [`discover::Scan`]); in a flat
    /// store the stage folders beside the raw runs are left out.
    pub fn scan(&self, stage: Stage, ns: &Namespace, dir: &Path) -> Option<discover::Scan> {
        let mut scan = discover::scan_dir(dir)?;
        if self.layout == Layout::Flat && stage == Stage::Raw && ns.is_root() {
            let is_stage = |name: &str| Stage::ALL.iter().any(|s| s.as_str() == name);
            scan.runs.retain(|(name, _)| !is_stage(name));
            scan.namespaces.retain(|name| !is_stage(name));
        }
        Some(scan)
    }

    /// Every run at or below `under`, as compact rows (see [`listing`]).
    pub fn listing(
        &self,
        stages: &[Stage],
        under: &Namespace,
        opts: &ReadOptions,
        checks: listing::RunChecks,
    ) -> listing::Listing {
        if opts.detail {
            // Rows never carry detail.
            let mut runs: Vec<RunInfo> = self
                .locations(stages, under)
                .into_par_iter()
                .map(|l| read_run(l, opts))
                .collect();
            mark_latest(self, &mut runs);
            return listing::Listing::from_infos(runs);
        }
        listing::list(self, stages, under, opts, checks)
    }

    /// Read every run at or below `under`, marking each namespace's
    /// `latest`; every run is checked against its `metadata.json` (see
    /// [`listing`]).
    pub fn runs(&self, stages: &[Stage], under: &Namespace, opts: &ReadOptions) -> Vec<RunInfo> {
        self.listing(stages, under, opts, listing::RunChecks::Always)
            .into_infos()
    }

    /// The complete, healthy raw runs of `ns` whose metadata may hold
    /// refresh step records (the index rules out those that do not),
    /// newest first.
    pub fn refresh_candidates(&self, ns: &Namespace) -> Vec<RunInfo> {
        let Ok(opts) = ReadOptions::new(&[], false) else {
            return Vec::new();
        };
        let listing = listing::list_in(self, Stage::Raw, ns, &opts, listing::RunChecks::Always);
        let mut rows: Vec<&listing::Row> = listing
            .rows
            .iter()
            .filter(|r| r.steps && r.status == RunStatus::Complete && !r.has_problems())
            .collect();
        rows.sort_by(|a, b| listing::newest_first(a, b));
        rows.into_iter().map(|r| listing.info(r)).collect()
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
            _ => self
                .newest_complete(run.stage, &run.location.namespace, None)
                .is_some_and(|n| n.id == run.id),
        };
        run
    }

    pub fn latest(&self, stage: Stage, ns: &Namespace) -> Result<LatestState, ArtifactError> {
        Ok(read_latest(&self.ns_dir(stage, ns)?))
    }

    /// The run `latest` stands for, as `list` marks it: what the link or
    /// pointer names, else (no link, a dangling one, or a real file in its
    /// place) the run [`latest::preferred`] picks (in production the highest
    /// release, legacy names included); nothing when the link escapes.
    pub fn current_latest(&self, stage: Stage, ns: &Namespace) -> Result<Option<String>> {
        Ok(match self.latest(stage, ns)? {
            LatestState::Link(id) | LatestState::Pointer(id) => Some(id),
            LatestState::Escaping(_) => None,
            _ => self.newest_complete(stage, ns, None).map(|r| r.id),
        })
    }

    /// The newest complete run of a namespace by `created_at` (in production
    /// the highest release), skipping `except`.
    pub fn newest_complete(
        &self,
        stage: Stage,
        ns: &Namespace,
        except: Option<&str>,
    ) -> Option<RunInfo> {
        let opts = ReadOptions::new(&[], false).ok()?;
        let listing = listing::list_in(self, stage, ns, &opts, listing::RunChecks::Always);
        let group = listing.groups.iter().position(|g| g.namespace == *ns)?;
        listing
            .preferred(group as u32, except)
            .map(|row| listing.info(row))
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
    use crate::store::latest::sibling_name;
    use crate::store::layout::{LATEST, LATEST_POINTER};
    use std::fs;
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
