//! The one removal engine: `delete REF` and `cleanup` both remove runs here,
//! so both honour the same protections and leave the same trail.
//!
//! Pointer first: each run is unlisted with ONE rename of its whole folder
//! into `.artifactctl/trash/` ([`fsx::unlist_dir`]), so its `metadata.json`
//! leaves the listing in the same instant as its files; only then are the
//! files removed. A removal interrupted at any point (even `kill -9`) leaves
//! either the complete run or nothing under the run's name, and the trash
//! folder of the dead process is finished by the next writer's sweep
//! ([`crate::ops::lock`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Result;
use rayon::prelude::*;
use serde_json::Value;

use crate::error::ArtifactError;
use crate::fsx;
use crate::ops;
use crate::progress::{Progress, Unit};
use crate::store::index::CatalogRun;
use crate::store::journal;
use crate::store::listing::Listing;
use crate::store::metadata::RunStatus;
use crate::store::refs::{Namespace, Stage};
use crate::store::{self, ReadOptions, RunInfo, RunLocation, Store};

/// Runs unlisted and journaled between two fsyncs: bounds the journal
/// entries an interrupted cleanup can lose while keeping fsyncs rare.
const BATCH: usize = 256;

/// Why a run must stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protection {
    /// A production release, and the caller did not unlock production.
    Production,
    Pinned,
    /// Promoted artifacts (qualified refs) name this run in their lineage.
    SourceOf(Vec<String>),
    /// A namespace's `latest` points here (or would resolve here).
    Latest,
    /// Its `metadata.json` cannot be read, so a pin or lineage cannot be ruled out.
    UnreadableMetadata,
    /// The newest complete refresh run of its namespace: `refresh` reuses
    /// from it and `refresh --models-only` takes its datasets from it.
    RefreshBase,
}

impl Protection {
    /// The reason as a plan prints it.
    pub fn reason(&self) -> String {
        match self {
            Protection::Production => {
                "production release (needs --stage production --unsafe-allow-production)".into()
            }
            Protection::Pinned => "pinned".into(),
            Protection::SourceOf(children) => {
                format!("lineage: promoted to {}", children.join(", "))
            }
            Protection::Latest => "latest".into(),
            Protection::UnreadableMetadata => {
                "metadata unreadable, so pins and lineage are unknown".into()
            }
            Protection::RefreshBase => {
                "refresh base: refresh reuses from it, --models-only takes its datasets".into()
            }
        }
    }

    /// Why removing `reference` by name is refused, and what to do instead.
    pub fn refusal(&self, reference: &str) -> String {
        match self {
            Protection::Production => format!(
                "{reference} is a production release and is immutable; roll back instead, or pass --unsafe-allow-production to remove it"
            ),
            Protection::Pinned => format!(
                "{reference} is pinned; `artifactctl unpin {reference}` first if it really should go"
            ),
            Protection::SourceOf(children) => format!(
                "{reference} is the source of promoted artifact(s) {}; their lineage needs it, so it is kept",
                children.join(", ")
            ),
            Protection::Latest => format!(
                "{reference} is what latest points to; delete it by name to move latest back"
            ),
            Protection::UnreadableMetadata => format!(
                "{reference} has an unreadable metadata.json, so it may be pinned or promoted; repair the file or remove the folder by hand"
            ),
            Protection::RefreshBase => format!(
                "{reference} is the newest complete refresh run: refresh reuses from it and `refresh --models-only` takes its datasets from it; run `artifactctl refresh --force` to make a newer one first"
            ),
        }
    }
}

/// The protections that hold for every removal, asked for by name or by
/// policy. `latest` is not among them: `delete` may remove the latest run
/// (latest then moves back), and `cleanup` adds it to what it protects.
#[derive(Debug, Clone)]
pub struct Guard {
    dependents: BTreeMap<String, Vec<String>>,
    /// Qualified refs of each raw namespace's refresh base.
    refresh_bases: BTreeSet<String>,
    allow_production: bool,
}

impl Guard {
    /// Read the lineage of every validated and production artifact.
    pub fn load(store: &Store, allow_production: bool) -> Guard {
        let namespaces: BTreeSet<Namespace> = store
            .locations(&[Stage::Raw], &Namespace::root())
            .into_iter()
            .map(|l| l.namespace)
            .collect();
        let refresh_bases = namespaces
            .iter()
            .filter_map(|ns| ops::refresh::base_run(store, ns))
            .map(|(location, _)| location.qualified())
            .collect();
        Guard::with_refresh_bases(store, allow_production, refresh_bases)
    }

    /// [`Guard::load`] for the runs of `listing` alone: the refresh bases
    /// are found among its rows (a base protects runs of its own namespace
    /// only), so nothing is listed twice.
    pub fn for_listing(store: &Store, allow_production: bool, listing: &Listing) -> Guard {
        let refresh_bases = (0..listing.groups.len())
            .filter(|&g| listing.groups[g].stage == Stage::Raw)
            .filter_map(|g| ops::refresh::base_in(listing, g as u32))
            .map(|location| location.qualified())
            .collect();
        Guard::with_refresh_bases(store, allow_production, refresh_bases)
    }

    fn with_refresh_bases(
        store: &Store,
        allow_production: bool,
        refresh_bases: BTreeSet<String>,
    ) -> Guard {
        let mut dependents = ops::lineage_dependents(store);
        // An artifact naming the run as both `promoted_from` and `parent` counts once.
        for children in dependents.values_mut() {
            children.sort();
            children.dedup();
        }
        Guard {
            dependents,
            refresh_bases,
            allow_production,
        }
    }

    /// The same protections computed from run summaries (a remote's
    /// catalog): lineage from the validated and production runs' `parent`
    /// and `promoted_from`, and each raw namespace's newest complete run
    /// with refresh step records as its refresh base.
    pub fn from_summaries(runs: &[CatalogRun], allow_production: bool) -> Guard {
        let mut dependents: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut bases: BTreeMap<&str, &CatalogRun> = BTreeMap::new();
        for run in runs {
            let Ok(ns) = Namespace::parse(&run.namespace) else {
                continue;
            };
            if run.stage == Stage::Raw {
                if run.steps && run.status == RunStatus::Complete {
                    let newer = |b: &&CatalogRun| (run.created_at, &run.id) > (b.created_at, &b.id);
                    match bases.get(run.namespace.as_str()) {
                        Some(b) if !newer(b) => {}
                        _ => {
                            bases.insert(&run.namespace, run);
                        }
                    }
                }
                continue;
            }
            let this = store::refs::qualified_ref(run.stage, &ns, &run.id);
            for source in [&run.promoted_from, &run.parent].into_iter().flatten() {
                dependents
                    .entry(source.clone())
                    .or_default()
                    .push(this.clone());
            }
        }
        for children in dependents.values_mut() {
            children.sort();
            children.dedup();
        }
        let refresh_bases = bases
            .values()
            .filter_map(|r| {
                let ns = Namespace::parse(&r.namespace).ok()?;
                Some(store::refs::qualified_ref(Stage::Raw, &ns, &r.id))
            })
            .collect();
        Guard {
            dependents,
            refresh_bases,
            allow_production,
        }
    }

    pub fn protections(&self, run: &RunInfo) -> Vec<Protection> {
        let mut found = Vec::new();
        if run.stage == Stage::Production && !self.allow_production {
            found.push(Protection::Production);
        }
        if run.pinned {
            found.push(Protection::Pinned);
        }
        // Most stores have neither: no ref to build for each run then.
        let qualified = (!self.dependents.is_empty() || !self.refresh_bases.is_empty())
            .then(|| run.location.qualified());
        if let Some(children) = qualified.as_ref().and_then(|q| self.dependents.get(q)) {
            found.push(Protection::SourceOf(children.clone()));
        }
        if run.status == RunStatus::Unknown {
            found.push(Protection::UnreadableMetadata);
        }
        if qualified.is_some_and(|q| self.refresh_bases.contains(&q)) {
            found.push(Protection::RefreshBase);
        }
        found
    }
}

/// Extra journal fields for a run just unlisted, from the caller.
pub type Annotate<'a> = dyn FnMut(&RunInfo) -> Result<Vec<(String, Value)>> + 'a;

/// One run to remove, with the reasons recorded in the journal.
#[derive(Debug, Clone)]
pub struct Request {
    pub run: RunInfo,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Options<'a> {
    /// The journal's `action`: `delete`, `cleanup`.
    pub action: &'a str,
    /// Refuse runs that `latest` points to at removal time (cleanup).
    pub protect_latest: bool,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Qualified refs removed, with their sizes.
    pub removed: Vec<(RunLocation, u64)>,
    /// Runs found protected when re-checked under the lock.
    pub skipped: Vec<(RunLocation, Protection)>,
    /// Runs that could not be unlisted, or whose files could not all be
    /// removed after unlisting (the next writer's sweep retries those).
    pub failed: Vec<(RunLocation, String)>,
}

/// Remove `requests`; the caller holds the store lock. Each run is re-read
/// and re-checked first, since a pin, a promotion or a rollback may have
/// landed since it was planned. `annotate` runs before a run is unlisted,
/// so the caller can move what points at it first (delete moves `latest`
/// away, so a kill never leaves it dangling) and record that in the
/// journal entries.
pub fn remove_runs(
    store: &Store,
    requests: Vec<Request>,
    guard: &Guard,
    opts: &Options,
    reporter: &dyn Progress,
    annotate: &mut Annotate,
) -> Result<Report> {
    let mut report = Report::default();
    let read = ReadOptions::new(&[], false)?;
    let latest = if opts.protect_latest {
        latest_links(store, &requests)
    } else {
        HashMap::new()
    };
    let fresh: Vec<(Request, RunInfo)> = requests
        .into_par_iter()
        .map(|r| {
            let now = store::read_run(r.run.location.clone(), &read);
            (r, now)
        })
        .collect();
    let mut doomed = Vec::new();
    for (request, now) in fresh {
        let location = &request.run.location;
        if location.path.symlink_metadata().is_err() {
            // Gone already (another cleanup finished it): nothing to do.
            continue;
        }
        let mut protections = guard.protections(&now);
        let key = (location.stage, location.namespace.clone());
        if latest.get(&key) == Some(&location.id) {
            protections.push(Protection::Latest);
        }
        match protections.into_iter().next() {
            Some(p) => report.skipped.push((location.clone(), p)),
            None => doomed.push(request),
        }
    }

    reporter.begin("unlisting", Some(doomed.len() as u64), Unit::Items);
    let mut trash: Vec<(RunLocation, PathBuf)> = Vec::new();
    let mut stopped = false;
    for batch in doomed.chunks(BATCH) {
        // Between batches, a signal stops the removal; what is unlisted so
        // far is journaled and its files are removed.
        if crate::interrupt::requested() {
            stopped = true;
            break;
        }
        // The intent goes to the journal before anything is unlisted: a
        // removal killed half-way still leaves a line for every run it
        // took, and `history` tells the intent from the completion.
        let mut intents = Vec::with_capacity(batch.len());
        let mut details = Vec::with_capacity(batch.len());
        for request in batch {
            let run = &request.run;
            let mut entry = journal::Entry::new(opts.action, Some(run.location.qualified()), None)
                .with("size_bytes", run.size_bytes);
            if !request.reasons.is_empty() {
                entry = entry.with("reasons", request.reasons.clone());
            }
            for (key, value) in annotate(run)? {
                entry = entry.with(&key, value);
            }
            intents.push(entry.clone().with("state", "intent"));
            details.push(entry);
        }
        ops::record(store.dir(), &intents)?;
        let mut parents = BTreeSet::new();
        let mut done = Vec::with_capacity(batch.len());
        for (request, entry) in batch.iter().zip(details) {
            let location = &request.run.location;
            match fsx::unlist_dir(store.dir(), &location.path) {
                Ok(doomed_path) => {
                    ops::index::touch(store, location.stage, &location.namespace);
                    parents.insert(parent_dir(&location.path));
                    trash.push((location.clone(), doomed_path));
                    report
                        .removed
                        .push((location.clone(), request.run.size_bytes));
                    done.push(entry.with("state", "removed"));
                }
                Err(e) => {
                    let problem = format!("cannot unlist it: {e}");
                    done.push(entry.with("state", "failed").with("error", problem.clone()));
                    report.failed.push((location.clone(), problem));
                }
            }
            reporter.advance(1);
        }
        for parent in &parents {
            fsx::fsync_dir(parent)?;
        }
        ops::record(store.dir(), &done)?;
    }
    reporter.end();

    reporter.begin("removing", Some(trash.len() as u64), Unit::Items);
    let failures: Vec<(RunLocation, String)> = trash
        .par_iter()
        .filter_map(|(location, path)| {
            let result = fsx::remove_tree(path);
            reporter.advance(1);
            result.err().map(|e| {
                (
                    location.clone(),
                    format!(
                        "unlisted, but {} could not be removed ({e}); the next artifactctl writer retries",
                        path.display()
                    ),
                )
            })
        })
        .collect();
    reporter.end();
    report.failed.extend(failures);
    if stopped {
        let removed = report.removed.len();
        return Err(ArtifactError::interrupted(format!(
            "interrupted by a signal after removing {removed} run{}; the others are untouched",
            if removed == 1 { "" } else { "s" }
        ))
        .into());
    }
    Ok(report)
}

/// Where each namespace's `latest` link or pointer file points right now.
fn latest_links(store: &Store, requests: &[Request]) -> HashMap<(Stage, Namespace), String> {
    let namespaces: BTreeSet<(Stage, Namespace)> = requests
        .iter()
        .map(|r| (r.run.location.stage, r.run.location.namespace.clone()))
        .collect();
    namespaces
        .into_iter()
        .filter_map(|(stage, ns)| {
            let id = store.latest(stage, &ns).ok()?.id()?.to_string();
            Some(((stage, ns), id))
        })
        .collect()
}

fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}
