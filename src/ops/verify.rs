//! `verify`: re-check what the store claims. Files are re-hashed (BLAKE3, in
//! parallel across files) against each run's manifest; metadata must parse
//! as schema v1 and agree with its folder; every `latest` must resolve to a
//! complete run beside it; promoted artifacts must be read-only; seed 002's
//! feature fields must be consistent. Legacy layouts have no manifest: what
//! cannot be checked there is said in a note, not guessed.
//!
//! Read-only: verify never changes the store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::Result;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;

use crate::error::ArtifactError;
use crate::fsx;
use crate::progress::{Progress, Unit};
use crate::store::journal;
use crate::store::manifest;
use crate::store::metadata::{self, FileEntry, Metadata, METADATA_FILE, SCHEMA_VERSION};
use crate::store::refs::{format_ref, Namespace, RunRef, Stage};
use crate::store::{read_latest, LatestState, ReadOptions, RunInfo, RunLayout, RunLocation, Store};

#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    pub refs: Vec<RunRef>,
    /// Every run of every stage, plus the store-wide checks (staging).
    pub all: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(rename = "ref")]
    pub reference: String,
    /// `modified`, `missing_file`, `unexpected_file`, `schema`, `metadata`,
    /// `latest`, `writable`, `features`.
    pub kind: &'static str,
    pub detail: String,
    pub fix: String,
}

/// Something worth knowing that needs no action: what could not be checked
/// on a legacy layout, or a dead writer's staging folder (swept by the next
/// write).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    #[serde(rename = "ref")]
    pub reference: String,
    pub kind: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub checked: usize,
    pub problems: Vec<Problem>,
    pub notes: Vec<Note>,
    pub bytes_hashed: u64,
    /// What `verify --repair` can put right ([`crate::ops::repair`]).
    #[serde(skip)]
    pub repairs: Vec<Repair>,
}

/// A fix `verify --repair` can make safely: it completes what an
/// interrupted or failed write left undone, and never touches an
/// artifact's content.
#[derive(Debug, Clone, PartialEq)]
pub enum Repair {
    /// Set the read-only bits of a promoted artifact.
    ReadOnly(PathBuf),
    /// Remove a temporary file an interrupted atomic write left in a run.
    RemoveTemp(PathBuf),
    /// Point a namespace's `latest` at its newest complete run (`away`: the
    /// run it names now, which is not complete).
    Latest {
        stage: Stage,
        namespace: Namespace,
        away: Option<String>,
    },
    /// Journal a run that was published without its journal line.
    Journal(journal::Entry),
    /// Add a release's missing changelog entry.
    Changelog(String),
    /// Finish what stopped writers left (taking the lock does: staging and
    /// trash folders go, moved-in folders go back).
    SweepLeftovers,
    /// Record the hashes of files imported by link, read by this verify
    /// while their stamps were unchanged (see [`crate::ops::seal`]).
    RecordHashes {
        location: RunLocation,
        hashes: BTreeMap<String, String>,
    },
}

/// Whether a file name is one of `fsx`'s temporary siblings
/// (`.<name>.<owner>.<nonce>.tmp`).
fn is_temp_name(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name.starts_with('.') && name.ends_with(".tmp") && name.matches('.').count() >= 4
}

/// One file to re-hash.
struct HashJob {
    reference: String,
    location: RunLocation,
    path: PathBuf,
    expected: FileEntry,
}

pub fn verify(store: &Store, opts: &VerifyOptions, reporter: &dyn Progress) -> Result<Report> {
    if opts.refs.is_empty() && !opts.all {
        return Err(ArtifactError::usage(
            "nothing to verify: name runs (e.g. production/gru/BTCEUR/latest) or pass --all",
        )
        .into());
    }
    let mut locations: Vec<RunLocation> = if opts.all {
        store.locations(store.stages(), &Namespace::root())
    } else {
        let mut out = Vec::new();
        for r in &opts.refs {
            out.push(store.resolve(r)?.location);
        }
        out
    };
    locations.sort_by(|a, b| a.path.cmp(&b.path));
    locations.dedup_by(|a, b| a.path == b.path);

    let read = ReadOptions::new(&[], false)?;
    let runs: Vec<RunInfo> = locations
        .par_iter()
        .map(|l| store.read_run(l.clone(), &read))
        .collect();
    let mut report = Report {
        checked: runs.len(),
        ..Report::default()
    };
    let mut jobs = Vec::new();
    for run in &runs {
        check_run(run, &mut report, &mut jobs);
    }
    hash_files(jobs, &mut report, reporter);
    check_latest(store, &runs, &mut report);
    if opts.all {
        check_journal_and_changelog(store, &runs, &mut report);
        let leftovers = fsx::find_leftovers(store.dir());
        if !leftovers.is_empty() {
            report.repairs.push(Repair::SweepLeftovers);
        }
        for leftover in leftovers {
            report.notes.push(Note {
                reference: leftover.path.display().to_string(),
                kind: "stray_staging",
                detail: match &leftover.origin {
                    Some(origin) => format!(
                        "folder moved in from {} by a register --move that stopped ({}s old); the next write gives it back",
                        origin.display(),
                        leftover.age.as_secs()
                    ),
                    None => format!(
                        "{} folder left by a writer that stopped ({}s old); it was never visible as a run and the next write removes it",
                        leftover.kind,
                        leftover.age.as_secs()
                    ),
                },
            });
        }
    }
    report
        .problems
        .sort_by(|a, b| (&a.reference, a.kind, &a.detail).cmp(&(&b.reference, b.kind, &b.detail)));
    Ok(report)
}

/// verify's checks of one run's own content — manifest hashes, missing or
/// extra files, metadata, seed 002 feature rules — for promotion's
/// integrity gate. The store-wide checks (`latest`, read-only bits) are not
/// about the run's content and are left to `verify`.
pub fn content_problems(run: &RunInfo, reporter: &dyn Progress) -> Vec<Problem> {
    let mut report = Report::default();
    let mut jobs = Vec::new();
    check_run(run, &mut report, &mut jobs);
    hash_files(jobs, &mut report, reporter);
    report
        .problems
        .into_iter()
        .filter(|p| p.kind != "writable" && p.kind != "latest")
        .collect()
}

fn check_run(run: &RunInfo, report: &mut Report, jobs: &mut Vec<HashJob>) {
    let reference = run.reference.clone();
    let dir = &run.location.path;
    let mut problem = |kind: &'static str, detail: String, fix: String| {
        report.problems.push(Problem {
            reference: reference.clone(),
            kind,
            detail,
            fix,
        })
    };
    let native = (run.layout == RunLayout::Native).then(|| Metadata::read(dir));
    let features = feature_problems(run, native.as_ref().and_then(|m| m.as_ref().ok()));
    for f in &features {
        problem("features", f.clone(), features_fix(run));
    }
    if run.layout != RunLayout::Native {
        // Problems found while reading (a corrupted metadata file, say).
        for p in run.problems.iter().filter(|p| !features.contains(p)) {
            problem(
                "metadata",
                p.clone(),
                "restore the file from a backup, or re-register the folder".into(),
            );
        }
        let what = match run.layout {
            RunLayout::TrainingMetadata => "seed 003 layout (training_metadata.json)",
            RunLayout::LegacyMetadata => {
                "metadata.json without schema_version (seed 002/004 layout)"
            }
            _ if dir.join(METADATA_FILE).exists() => "metadata.json cannot be read",
            _ => "no metadata file",
        };
        report.notes.push(Note {
            reference: run.reference.clone(),
            kind: "unchecked",
            detail: format!(
                "{what}: there is no manifest, so file contents and completeness cannot be verified; checked: metadata readability, feature consistency, latest; `artifactctl register` a copy to get a manifest"
            ),
        });
        return;
    }
    let Some(read) = native else { return };
    let meta = match read {
        Ok(m) => m,
        Err(e) => {
            problem(
                "schema",
                format!("{e:#}"),
                "restore metadata.json from a backup; without it the run's files cannot be verified".into(),
            );
            return;
        }
    };
    if meta.schema_version > SCHEMA_VERSION {
        problem(
            "schema",
            format!(
                "schema_version {} is newer than this artifactctl reads ({SCHEMA_VERSION})",
                meta.schema_version
            ),
            "upgrade artifactctl".into(),
        );
    }
    if meta.id != run.location.id
        || meta.stage != run.location.stage
        || meta.namespace != run.location.namespace.to_string()
    {
        problem(
            "schema",
            format!(
                "metadata.json names {} but the folder is {}",
                format_ref(
                    meta.stage,
                    &Namespace::from_disk(
                        meta.namespace
                            .split('/')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    ),
                    &meta.id
                ),
                run.reference
            ),
            "move the folder back where it was created; runs are not renamed by hand".into(),
        );
    }
    check_manifest(run, &meta, &mut problem, jobs, &mut report.repairs);
    let promoted = run.location.stage != Stage::Raw && meta.lineage.promoted_from.is_some();
    if promoted && check_readonly(run, &mut problem) {
        report.repairs.push(Repair::ReadOnly(dir.clone()));
    }
}

/// Runs published without their journal line, and releases without their
/// changelog entry (a write that failed or was killed right after the
/// publish). Notes, not problems: the artifacts themselves are whole.
fn check_journal_and_changelog(store: &Store, runs: &[RunInfo], report: &mut Report) {
    let Ok((entries, _)) = journal::read(store.dir()) else {
        return;
    };
    let journaled: BTreeSet<&str> = entries.iter().filter_map(|e| e.target.as_deref()).collect();
    let changelog = store
        .stage_dir(Stage::Production)
        .ok()
        .and_then(|d| std::fs::read_to_string(d.join(crate::ops::promote::CHANGELOG_FILE)).ok())
        .unwrap_or_default();
    for run in runs.iter().filter(|r| r.layout == RunLayout::Native) {
        let qualified = run.location.qualified();
        let Ok(meta) = Metadata::read(&run.location.path) else {
            continue;
        };
        if !journaled.contains(qualified.as_str()) {
            report.notes.push(Note {
                reference: run.reference.clone(),
                kind: "unjournaled",
                detail: "published without its journal line (a write failed or was killed after publishing); `artifactctl verify --repair` records it".into(),
            });
            let action = match meta.lineage.source.as_deref() {
                Some(s) if s.starts_with("refresh") => "refresh",
                _ if meta.lineage.promoted_from.is_some() => "promote",
                _ => "register",
            };
            report.repairs.push(Repair::Journal(
                journal::Entry::new(
                    action,
                    meta.lineage.promoted_from.clone(),
                    Some(qualified.clone()),
                )
                .with("repaired", true)
                .with("created_at", meta.created_at.to_rfc3339()),
            ));
        }
        if run.location.stage == Stage::Production && meta.lineage.promoted_from.is_some() {
            let label = if run.location.namespace.is_root() {
                "production".to_string()
            } else {
                run.location.namespace.to_string()
            };
            let heading = format!("## {label} {} (", run.id);
            if !changelog.contains(&heading) {
                report.notes.push(Note {
                    reference: run.reference.clone(),
                    kind: "unchangelogged",
                    detail: "a release without its CHANGELOG.md entry; `artifactctl verify --repair` adds one from its metadata".into(),
                });
                report.repairs.push(Repair::Changelog(format!(
                    "\n{heading}{})\n\n- from: {}\n- entry restored by `artifactctl verify --repair`: the original was lost\n",
                    meta.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    meta.lineage.promoted_from.as_deref().unwrap_or("?"),
                )));
            }
        }
    }
}

/// A fix the user can make: stored artifacts are read-only and never
/// edited, so the way out is a new run; only a legacy folder the user still
/// owns outright may be corrected where it is.
fn features_fix(run: &RunInfo) -> String {
    let dir = &run.location.path;
    if run.layout == RunLayout::Native {
        format!(
            "the model was saved with inconsistent feature metadata and a model loaded with the wrong input size fails: re-run the training, register its output (`artifactctl register DIR`) and promote the new run; {} is read-only and is not edited",
            run.reference
        )
    } else {
        format!(
            "re-run the training that wrote {} so its feature_names / feature_count / selected_features / input_size_actual agree, then register the new output; a model loaded with the wrong input size fails",
            dir.display()
        )
    }
}

fn feature_problems(run: &RunInfo, native: Option<&Metadata>) -> Vec<String> {
    let dir = &run.location.path;
    let value = match run.layout {
        RunLayout::Native => native
            .and_then(|m| m.features.as_ref())
            .and_then(|f| serde_json::to_value(f).ok()),
        RunLayout::LegacyMetadata => std::fs::read(dir.join(METADATA_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Map<String, Value>>(&b).ok())
            .and_then(|obj| metadata::legacy_features(&obj)),
        _ => None,
    };
    value
        .map(|v| metadata::feature_problems(&v))
        .unwrap_or_default()
}

/// Compare the folder with the manifest: files missing, files added, sizes
/// and link targets; same-size files are queued for re-hashing.
fn check_manifest(
    run: &RunInfo,
    meta: &Metadata,
    problem: &mut impl FnMut(&'static str, String, String),
    jobs: &mut Vec<HashJob>,
    repairs: &mut Vec<Repair>,
) {
    let dir = &run.location.path;
    let on_disk = match manifest::list_files(dir) {
        Ok(f) => f,
        Err(e) => {
            problem(
                "missing_file",
                format!("cannot list the folder: {e:#}"),
                "check the folder's permissions".into(),
            );
            return;
        }
    };
    // Keyed by exact bytes: two names with the same lossy form are two files.
    let key = |f: &manifest::Found| match &f.rel_bytes {
        Some(hex) => format!("\u{0}{hex}"),
        None => f.rel.clone(),
    };
    let on_disk: BTreeMap<String, &manifest::Found> = on_disk.iter().map(|f| (key(f), f)).collect();
    let expected: BTreeSet<String> = meta.files.iter().map(FileEntry::key).collect();
    for entry in &meta.files {
        let Some(found) = on_disk.get(&entry.key()) else {
            problem(
                "missing_file",
                format!("{} is in the manifest but not in the folder", entry.path),
                "restore it from a backup or from the run it was promoted from".into(),
            );
            continue;
        };
        match (&entry.symlink, &found.symlink) {
            (Some(want), Some(got)) if want == got => {}
            (None, None) if entry.size == found.size => jobs.push(HashJob {
                reference: run.reference.clone(),
                location: run.location.clone(),
                path: found.path.clone(),
                expected: entry.clone(),
            }),
            (None, None) => problem(
                "modified",
                format!(
                    "{} is {} bytes, the manifest says {}",
                    entry.path, found.size, entry.size
                ),
                "restore the original from a backup; artifacts must not change once published"
                    .into(),
            ),
            _ => problem(
                "modified",
                format!("{} changed between a file and a symlink", entry.path),
                "restore the original from a backup".into(),
            ),
        }
    }
    for rel in on_disk
        .iter()
        .filter(|(k, _)| !expected.contains(*k))
        .map(|(_, f)| f.rel.as_str())
    {
        if is_temp_name(rel) {
            problem(
                "unexpected_file",
                format!("{rel} is a temporary file an interrupted write left behind"),
                "`artifactctl verify --repair` removes it".into(),
            );
            repairs.push(Repair::RemoveTemp(dir.join(rel)));
            continue;
        }
        problem(
            "unexpected_file",
            format!("{rel} is in the folder but not in the manifest"),
            format!("remove {} (chmod u+w its folder first if read-only); artifacts do not take new files after publishing", dir.join(rel).display()),
        );
    }
}

/// Report writable entries of a promoted artifact; whether any were found.
fn check_readonly(run: &RunInfo, problem: &mut impl FnMut(&'static str, String, String)) -> bool {
    let dir = &run.location.path;
    let writable: Vec<String> = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .flatten()
        .filter(|e| !e.file_type().is_symlink())
        .filter(|e| {
            e.metadata()
                .is_ok_and(|m| m.permissions().mode() & 0o222 != 0)
        })
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap_or(e.path())
                .to_string_lossy()
                .into_owned();
            if rel.is_empty() {
                ".".to_string()
            } else {
                rel
            }
        })
        .collect();
    if let Some(first) = writable.first() {
        problem(
            "writable",
            format!(
                "{} entr{} writable in a promoted artifact (first: {first})",
                writable.len(),
                if writable.len() == 1 {
                    "y is"
                } else {
                    "ies are"
                }
            ),
            format!(
                "`artifactctl verify --repair` (or chmod -R a-w {})",
                dir.display()
            ),
        );
        return true;
    }
    false
}

fn hash_files(jobs: Vec<HashJob>, report: &mut Report, reporter: &dyn Progress) {
    let total: u64 = jobs.iter().map(|j| j.expected.size).sum();
    reporter.begin("verifying", Some(total), Unit::Bytes);
    let outcomes: Vec<Hashed> = jobs
        .par_iter()
        .filter_map(|job| {
            let outcome = hash_one(job);
            reporter.advance(job.expected.size);
            outcome
        })
        .collect();
    reporter.end();
    report.bytes_hashed = total;
    let mut first_hashes: BTreeMap<PathBuf, (RunLocation, BTreeMap<String, String>)> =
        BTreeMap::new();
    for outcome in outcomes {
        match outcome {
            Hashed::Problem(p) => report.problems.push(p),
            Hashed::First { job, hash } => {
                first_hashes
                    .entry(job.location.path.clone())
                    .or_insert_with(|| (job.location.clone(), BTreeMap::new()))
                    .1
                    .insert(job.expected.key(), hash);
            }
        }
    }
    for (location, hashes) in first_hashes.into_values() {
        let n = hashes.len();
        report.notes.push(Note {
            reference: location.reference(),
            kind: "pending_hashes",
            detail: format!(
                "{n} file{} imported by link had no hash yet; unchanged since the import (size and modification time), now read; `artifactctl verify --repair` records {}",
                if n == 1 { "" } else { "s" },
                if n == 1 { "its hash" } else { "their hashes" }
            ),
        });
        report
            .repairs
            .push(Repair::RecordHashes { location, hashes });
    }
}

/// What hashing one file found: a problem, or the first hash of a file
/// imported by link.
enum Hashed<'a> {
    Problem(Problem),
    First { job: &'a HashJob, hash: String },
}

fn hash_one(job: &HashJob) -> Option<Hashed<'_>> {
    let problem = |kind, detail, fix| {
        Some(Hashed::Problem(Problem {
            reference: job.reference.clone(),
            kind,
            detail,
            fix,
        }))
    };
    let pending = job.expected.blake3.is_none();
    let unchanged =
        || std::fs::symlink_metadata(&job.path).is_ok_and(|m| job.expected.stamp_matches(&m));
    if pending && !unchanged() {
        return problem(
            "modified",
            crate::ops::seal::changed_since_import(&job.location, &job.expected),
            crate::ops::seal::reimport_hint(&job.location),
        );
    }
    match manifest::hash_file(&job.path) {
        Ok(hash) if job.expected.blake3.as_ref() == Some(&hash) => None,
        Ok(hash) if pending && unchanged() => Some(Hashed::First { job, hash }),
        Ok(_) if pending => problem(
            "modified",
            format!("{}: changed while it was being read", job.expected.path),
            "run verify again once nothing writes to the run".into(),
        ),
        Ok(_) => problem(
            "modified",
            format!(
                "{}: content differs from the manifest (BLAKE3 mismatch)",
                job.expected.path
            ),
            "restore the original from a backup; artifacts must not change once published".into(),
        ),
        Err(e) => problem(
            "missing_file",
            format!("{}: {e:#}", job.expected.path),
            "check the file's permissions, or restore it".into(),
        ),
    }
}

/// Every namespace holding a checked run: its `latest` must resolve to a
/// complete run in the same folder.
fn check_latest(store: &Store, runs: &[RunInfo], report: &mut Report) {
    let by_path: HashMap<&PathBuf, &RunInfo> = runs.iter().map(|r| (&r.location.path, r)).collect();
    let namespaces: BTreeSet<(Stage, Namespace)> = runs
        .iter()
        .map(|r| (r.stage, r.location.namespace.clone()))
        .collect();
    let read = ReadOptions::new(&[], false).expect("no patterns");
    for (stage, ns) in namespaces {
        let Ok(ns_dir) = store.ns_dir(stage, &ns) else {
            continue;
        };
        let reference = format_ref(stage, &ns, crate::store::layout::LATEST);
        let link = ns_dir.join(crate::store::layout::LATEST);
        let repoint = format!(
            "`artifactctl verify --repair` points it at the newest complete run (or `ln -sfn <run-id> {}`; `artifactctl rollback` in production)",
            link.display()
        );
        let problems = &mut report.problems;
        let mut problem = |detail: String| {
            problems.push(Problem {
                reference: reference.clone(),
                kind: "latest",
                detail,
                fix: repoint.clone(),
            })
        };
        match read_latest(&ns_dir) {
            LatestState::Link(id) | LatestState::Pointer(id) => {
                let path = ns_dir.join(&id);
                let owned;
                let target = match by_path.get(&path) {
                    Some(run) => *run,
                    None => {
                        let Ok(location) = store.location(stage, &ns, &id) else {
                            continue;
                        };
                        owned = store.read_run(location, &read);
                        &owned
                    }
                };
                if target.status != metadata::RunStatus::Complete {
                    problem(format!(
                        "latest points to {id}, which is {}",
                        target.status.as_str()
                    ));
                    report.repairs.push(Repair::Latest {
                        stage,
                        namespace: ns.clone(),
                        away: Some(id.clone()),
                    });
                }
            }
            LatestState::Dangling(t) => {
                problem(format!("latest points to '{t}', which does not exist"));
                report.repairs.push(Repair::Latest {
                    stage,
                    namespace: ns.clone(),
                    away: None,
                });
            }
            LatestState::Escaping(t) => {
                problem(format!(
                    "latest points to '{t}', outside {}",
                    ns_dir.display()
                ));
                report.repairs.push(Repair::Latest {
                    stage,
                    namespace: ns.clone(),
                    away: None,
                });
            }
            LatestState::NotALink => problem("latest is a real file or folder, not a link".into()),
            LatestState::Missing => {}
        }
    }
}
