//! `register --all DIR`: a legacy store imported as a batch. Each version is
//! staged by hard link, its files' hashes left pending (recorded by the
//! first command that reads them, see `ops::seal`); then, per batch, one `syncfs` makes
//! the staged versions durable, one lock covers the publishing, the id marks
//! are raised once, each version is published by its own no-replace rename
//! (so a crash leaves whole versions or none), `latest` moves once per
//! namespace, and the journal gets one append.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::fsx::{self, Staging};
use crate::ops::register::{
    check_source, holds_a_file, import_metadata, link_in, new_metadata, stated_identity,
    ImportReport, RegisterOptions, Skipped,
};
use crate::ops::{self, ids};
use crate::progress::{Progress, Unit};
use crate::store::journal;
use crate::store::manifest;
use crate::store::metadata::{Metadata, RunStatus, METADATA_FILE};
use crate::store::refs::{self, Namespace, Stage};
use crate::store::{Layout, ReadOptions, RunLocation, Store};

/// Versions per batch: one lock, one `syncfs`, one journal append each. A
/// batch bounds what a crash can leave staged (swept later) and how long
/// other writers wait for the lock.
const BATCH: usize = 256;

/// A version to import: where it is and where it goes.
struct Wanted {
    source: RunLocation,
    target: RunLocation,
}

/// A version staged and hashed, ready to publish.
struct Staged {
    wanted: Wanted,
    staging: Staging,
    meta: Metadata,
}

/// Every version of a legacy store (seed 002's `{type}/{symbol}/{run}`, seed
/// 003's timestamped versions), each under its own name, namespace and time,
/// its files hard-linked when on the same filesystem. Corrupted or
/// incomplete versions are skipped with the reason; versions already in the
/// store are counted, not imported again.
pub fn register_all(
    store: &Store,
    opts: RegisterOptions,
    reporter: &dyn Progress,
) -> Result<ImportReport> {
    let _busy = crate::interrupt::busy();
    let root = check_source(store, &opts.source)?;
    store.stage_dir(Stage::Raw)?;
    let legacy = Store::open(&root);
    // A flat legacy store's versions are its raw stage; stages it gained by
    // promoting in place are not versions to import.
    let stages: &[Stage] = match legacy.layout() {
        Layout::Flat => &[Stage::Raw],
        Layout::Staged => legacy.stages(),
    };
    let read = ReadOptions::new(&[], false)?;
    let locations = legacy.locations(stages, &Namespace::root());
    let mut report = ImportReport::default();
    reporter.begin("importing", Some(locations.len() as u64), Unit::Items);

    // Which versions to import: read in parallel, judged in order.
    let judged: Vec<Result<Judged>> = locations
        .into_par_iter()
        .map(|location| judge(store, &legacy, &opts, location, &read))
        .collect();
    let mut wanted = Vec::new();
    for judged in judged {
        match judged? {
            Judged::Import(w) => wanted.push(w),
            Judged::Present(reference) => {
                reporter.advance(1);
                report.present.push(reference);
            }
            Judged::Skip(skipped) => {
                reporter.advance(1);
                report.skipped.push(skipped);
            }
        }
    }

    let mut wanted = wanted.into_iter().peekable();
    while wanted.peek().is_some() {
        let batch: Vec<Wanted> = wanted.by_ref().take(BATCH).collect();
        crate::interrupt::check()?;
        let staged: Vec<Result<Result<Staged, Skipped>>> = batch
            .into_par_iter()
            .map(|w| stage(store, &opts, w))
            .collect();
        let mut ready = Vec::new();
        for outcome in staged {
            match outcome? {
                Ok(s) => ready.push(s),
                Err(skipped) => {
                    reporter.advance(1);
                    report.skipped.push(skipped);
                }
            }
        }
        crate::interrupt::check()?;
        publish_batch(store, ready, &mut report, reporter)?;
    }
    reporter.end();
    Ok(report)
}

enum Judged {
    Import(Wanted),
    Present(String),
    Skip(Skipped),
}

fn judge(
    store: &Store,
    legacy: &Store,
    opts: &RegisterOptions,
    location: RunLocation,
    read: &ReadOptions,
) -> Result<Judged> {
    let run = legacy.read_run(location.clone(), read);
    let mut namespace = opts.namespace.clone();
    for seg in location.namespace.segments() {
        namespace = namespace.child(seg);
    }
    let shown = location.reference();
    let skip = |reason: String| {
        Ok(Judged::Skip(Skipped {
            reference: shown.clone(),
            reason,
        }))
    };
    if let Some(problem) = run.problems.first() {
        return skip(problem.clone());
    }
    if run.status != RunStatus::Complete {
        return skip(format!("the version is {}", run.status.as_str()));
    }
    if refs::check_id(&location.id, "id").is_err() {
        return skip(format!("'{}' is not a usable run id", location.id));
    }
    let target = store.location(Stage::Raw, &namespace, &location.id)?;
    if target.path.symlink_metadata().is_ok() {
        return Ok(Judged::Present(target.reference()));
    }
    Ok(Judged::Import(Wanted {
        source: location,
        target,
    }))
}

/// Stage one version: link its files in, hash them once, build its metadata.
/// The inner error is a version skipped for bad input (an empty folder, a
/// file that cannot be linked or copied); the outer one stops the import.
fn stage(store: &Store, opts: &RegisterOptions, wanted: Wanted) -> Result<Result<Staged, Skipped>> {
    crate::interrupt::check()?;
    let source = &wanted.source.path;
    let skipped = |reason: String| Skipped {
        reference: wanted.source.reference(),
        reason,
    };
    if !opts.allow_empty && !holds_a_file(source) {
        return Ok(Err(skipped(format!(
            "cannot register {}: it holds no files, and an empty run is not imported",
            source.display()
        ))));
    }
    let mut warnings = Vec::new();
    let imported = import_metadata(source, &mut warnings);
    let stated = stated_identity(source);
    let staging = match link_in(store, source, &wanted.target.id) {
        Ok(staging) => staging,
        Err(e) if crate::error::exit_code_for(&e) == crate::ExitCode::Usage => {
            return Ok(Err(skipped(format!("{e:#}"))));
        }
        Err(e) => return Err(e),
    };
    // Not read: the link shares the legacy file's bytes, and reading them
    // all would cost as much as a copy. The hashes are pending, guarded by
    // each file's stamp, until a command needs them (`ops::seal`).
    let files = manifest::build_pending(staging.path())?;
    let one = RegisterOptions {
        namespace: wanted.target.namespace.clone(),
        ..opts.clone()
    };
    let mut meta = new_metadata(&one, source, imported, &stated, files);
    meta.id = wanted.target.id.clone();
    staging
        .write_run_file_batched(METADATA_FILE, meta.to_json().as_bytes())
        .with_context(|| format!("cannot write the metadata of {}", wanted.target.reference()))?;
    Ok(Ok(Staged {
        wanted,
        staging,
        meta,
    }))
}

/// Publish a batch of staged versions: one `syncfs`, one lock, the id marks
/// raised once, a rename each, `latest` advanced once per namespace, one
/// journal append (also when a rename fails part-way, for the ones done).
fn publish_batch(
    store: &Store,
    ready: Vec<Staged>,
    report: &mut ImportReport,
    reporter: &dyn Progress,
) -> Result<()> {
    if ready.is_empty() {
        return Ok(());
    }
    fsx::fault::hit(fsx::fault::Point::Staged)?;
    fsx::sync_filesystem(store.dir()).with_context(|| {
        format!(
            "cannot flush the staged versions in {}",
            store.dir().display()
        )
    })?;
    let _lock = ops::lock(store)?;
    let issued: Vec<(Stage, Namespace, String)> = ready
        .iter()
        .map(|s| {
            (
                Stage::Raw,
                s.wanted.target.namespace.clone(),
                s.wanted.target.id.clone(),
            )
        })
        .collect();
    ids::raise_marks(store, &issued)?;
    let mut entries = Vec::new();
    let mut newest: BTreeMap<String, (RunLocation, chrono::DateTime<chrono::Utc>)> =
        BTreeMap::new();
    let mut parents = std::collections::BTreeSet::new();
    let mut failure = None;
    for staged in ready {
        reporter.advance(1);
        let target = staged.wanted.target;
        if target.path.symlink_metadata().is_ok() {
            // Another writer took the name since the versions were judged.
            report.present.push(target.reference());
            continue;
        }
        if let Err(e) = staged.staging.publish_batched(&target.path) {
            failure = Some(anyhow::Error::new(e).context(format!(
                "cannot publish {} as {}",
                staged.wanted.source.path.display(),
                target.reference()
            )));
            break;
        }
        if let Some(parent) = target.path.parent() {
            parents.insert(parent.to_path_buf());
        }
        ops::index::touch(store, Stage::Raw, &target.namespace);
        let created_at = staged.meta.created_at;
        let key = target.namespace.to_string();
        let newer = newest
            .get(&key)
            .is_none_or(|(l, t)| (created_at, &target.id) > (*t, &l.id));
        if newer {
            newest.insert(key, (target.clone(), created_at));
        }
        report.linked_bytes += staged.meta.total_size;
        report.imported.push(target.reference());
        entries.push(
            journal::Entry::new(
                "register",
                Some(staged.wanted.source.path.display().to_string()),
                Some(target.qualified()),
            )
            .with("import", true)
            .with("total_size", staged.meta.total_size)
            .with("file_count", staged.meta.file_count),
        );
    }
    // The renames are durable once their folders are.
    for parent in &parents {
        fsx::fsync_dir(parent).with_context(|| format!("cannot flush {}", parent.display()))?;
    }
    for (location, created_at) in newest.values() {
        ops::advance_latest(store, location, *created_at)?;
    }
    ops::record(store.dir(), &entries)?;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
