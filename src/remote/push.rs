//! `push`: blobs first (create-only, only those missing), then the run's
//! record (create-only), then a catalog segment, `latest` by
//! compare-and-swap, and a journal object. A reader never sees a record
//! whose content is missing; a killed push re-run uploads only what is
//! missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;

use super::backend::{Mode, Put};
use super::catalog::{self, Segment};
use super::{blob_key, latest_key, parse_latest, record_key, same_run, unique_key, Remote};
use crate::error::ArtifactError;
use crate::store::journal;
use crate::store::metadata::{Metadata, RunStatus};
use crate::store::refs::{Namespace, Stage};
use crate::store::RunLocation;

pub struct PushOptions {
    pub runs: Vec<RunLocation>,
    /// Transfers in flight at once.
    pub jobs: usize,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct PushReport {
    pub remote: String,
    pub runs: Vec<PushedRun>,
    pub uploaded_files: u64,
    pub uploaded_bytes: u64,
    /// Catalog segments this push folded into the catalog index.
    pub compacted_segments: u64,
}

#[derive(Debug, Serialize)]
pub struct PushedRun {
    #[serde(rename = "ref")]
    pub reference: String,
    /// `pushed`, or `unchanged` when the remote already had it.
    pub state: &'static str,
    pub uploaded_files: u64,
    pub uploaded_bytes: u64,
    /// Files whose content the remote already held (dedup).
    pub present_files: u64,
    pub became_latest: bool,
}

pub fn push(remote: &Remote, opts: &PushOptions) -> Result<PushReport> {
    let mut report = PushReport {
        remote: remote.name.clone(),
        runs: Vec::new(),
        uploaded_files: 0,
        uploaded_bytes: 0,
        compacted_segments: 0,
    };
    let mut added = Vec::new();
    for location in &opts.runs {
        let meta = Metadata::read(&location.path)?;
        let pushed = remote.block_on(push_one(remote, location, &meta, opts.jobs))?;
        report.uploaded_files += pushed.uploaded_files;
        report.uploaded_bytes += pushed.uploaded_bytes;
        if pushed.state == "pushed" {
            added.push(catalog::summary(&meta)?);
        }
        report.runs.push(pushed);
    }
    if !added.is_empty() {
        remote.block_on(async {
            let segment = Segment::new(added);
            let key = unique_key("catalog", opts.now);
            let bytes = serde_json::to_vec(&segment)?;
            remote.backend.put(&key, bytes, Mode::Create).await?;
            let refs: Vec<&str> = report
                .runs
                .iter()
                .filter(|r| r.state == "pushed")
                .map(|r| r.reference.as_str())
                .collect();
            let entry = journal::Entry::new("push", None, None)
                .with("runs", refs)
                .with("uploaded_bytes", report.uploaded_bytes);
            let key = unique_key("journal", opts.now);
            remote
                .backend
                .put(&key, serde_json::to_vec(&entry)?, Mode::Create)
                .await?;
            // The runs are up and listed: keeping the catalog short is
            // housekeeping, which a failure here must not turn into a
            // failed push (the next push or cleanup folds the segments).
            report.compacted_segments =
                catalog::compact_if_due(remote, opts.now).await.unwrap_or(0);
            anyhow::Ok(())
        })?;
    }
    Ok(report)
}

async fn push_one(
    remote: &Remote,
    location: &RunLocation,
    meta: &Metadata,
    jobs: usize,
) -> Result<PushedRun> {
    let backend = &remote.backend;
    let ns = Namespace::parse(&meta.namespace)?;
    let key = record_key(location.stage, &ns, &location.id);
    let reference = location.qualified();
    let mut pushed = PushedRun {
        reference: reference.clone(),
        state: "unchanged",
        uploaded_files: 0,
        uploaded_bytes: 0,
        present_files: 0,
        became_latest: false,
    };
    // An unchanged run costs this one request.
    if let Some(got) = backend.get(&key).await? {
        return match serde_json::from_slice::<Metadata>(&got.bytes) {
            Ok(theirs) if same_run(&theirs, meta) => Ok(pushed),
            _ => Err(taken(remote, &reference)),
        };
    }
    let mut blobs: BTreeMap<&str, PathBuf> = BTreeMap::new();
    for f in meta.files.iter().filter(|f| f.symlink.is_none()) {
        blobs
            .entry(f.blake3.as_deref().with_context(|| format!("{reference} has files whose hash is pending (imported by link); `artifactctl verify --repair {reference}` records them"))?)
            .or_insert_with(|| location.path.join(f.rel_path()));
    }
    // Blobs garbage collection has marked may go soon: they are uploaded
    // again (overwritten), which refreshes their time, instead of trusted.
    let (marks, _, _) = super::gc::read_marks(remote).await?;
    let marks = &marks.marks;
    let (listed, present) = &present_blobs(remote, blobs.keys().copied(), jobs).await?;
    let mut uploads = futures::stream::iter(blobs)
        .map(|(hash, path)| async move {
            let key = blob_key(hash);
            let marked = marks.contains_key(hash);
            let there = if listed.contains(&hash[..2]) {
                present.contains(hash)
            } else {
                backend.exists(&key).await?
            };
            if !marked && there {
                return anyhow::Ok(None);
            }
            crate::interrupt::check()?;
            let size = std::fs::symlink_metadata(&path)
                .map(|m| m.len())
                .unwrap_or(0);
            match backend.put_file(&key, &path, hash, marked).await? {
                Put::Done => Ok(Some(size)),
                _ => Ok(None),
            }
        })
        .buffer_unordered(jobs.max(1));
    while let Some(done) = uploads.next().await {
        match done? {
            Some(size) => {
                pushed.uploaded_files += 1;
                pushed.uploaded_bytes += size;
            }
            None => pushed.present_files += 1,
        }
    }
    drop(uploads);
    crate::fsx::fault::hit(crate::fsx::fault::Point::Staged)?;
    match backend
        .put(&key, meta.to_json().into_bytes(), Mode::Create)
        .await?
    {
        Put::Done => {}
        _ => {
            // Another writer created it meanwhile: the same run is fine,
            // anything else is theirs.
            let theirs = backend.get(&key).await?;
            let same = theirs
                .and_then(|g| serde_json::from_slice::<Metadata>(&g.bytes).ok())
                .is_some_and(|t| same_run(&t, meta));
            if !same {
                return Err(taken(remote, &reference));
            }
            return Ok(pushed);
        }
    }
    pushed.state = "pushed";
    if meta.status == RunStatus::Complete {
        pushed.became_latest = advance_latest(remote, location.stage, &ns, meta).await?;
    }
    Ok(pushed)
}

/// Which of `hashes` the remote holds, learned by listing: a blob folder
/// (`blobs/<h[0..2]>/`) that holds two or more of them is listed once
/// rather than asked once per blob, so a run of many files costs a few
/// hundred requests, not one per file. Returns the folders listed and the
/// hashes found in them; the rest are asked one by one.
async fn present_blobs<'a>(
    remote: &Remote,
    hashes: impl Iterator<Item = &'a str>,
    jobs: usize,
) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let mut per_folder: BTreeMap<&str, usize> = BTreeMap::new();
    for hash in hashes {
        *per_folder.entry(&hash[..2]).or_default() += 1;
    }
    let folders: BTreeSet<String> = per_folder
        .into_iter()
        .filter(|(_, n)| *n >= 2)
        .map(|(f, _)| f.to_string())
        .collect();
    let mut present = BTreeSet::new();
    let mut lists = futures::stream::iter(&folders)
        // object_store lists by path segments: `blobs/ab` never lists
        // `blobs/abc`.
        .map(|f| async move { remote.backend.list(&format!("blobs/{f}")).await })
        .buffer_unordered(jobs.max(1));
    while let Some(keys) = lists.next().await {
        for key in keys? {
            if let Some(hash) = key.rsplit('/').next() {
                present.insert(hash.to_string());
            }
        }
    }
    drop(lists);
    Ok((folders, present))
}

fn taken(remote: &Remote, reference: &str) -> anyhow::Error {
    ArtifactError::refused(format!(
        "{reference} already exists on remote '{}' ({}) with different content; a run or release on a remote is never overwritten: release under a new version",
        remote.name, remote.backend.shown
    ))
    .into()
}

/// Move the remote `latest` of the run's stage to it when it is newer (a
/// higher version for production), by compare-and-swap: on a conflict,
/// read again and decide again, so `latest` never moves backward.
async fn advance_latest(
    remote: &Remote,
    stage: Stage,
    ns: &Namespace,
    meta: &Metadata,
) -> Result<bool> {
    let backend = &remote.backend;
    let key = latest_key(stage, ns);
    let body = serde_json::to_vec(&serde_json::json!({ "id": meta.id }))?;
    for _ in 0..16 {
        let current = backend.get(&key).await?;
        let mode = match &current {
            None => Mode::Create,
            Some(got) => {
                let id = parse_latest(&got.bytes, &backend.shown)?;
                if !is_newer(remote, stage, ns, &id, meta).await? {
                    return Ok(false);
                }
                // A move killed before its journal object: written before
                // this swap drops the event the latest object carries.
                super::latest::finish_event(remote, &got.bytes).await?;
                match &got.etag {
                    Some(etag) => Mode::Update(etag.clone()),
                    None => anyhow::bail!(
                        "remote {} gave no ETag for {key}; it cannot move latest safely",
                        backend.shown
                    ),
                }
            }
        };
        if backend.put(&key, body.clone(), mode).await? == Put::Done {
            return Ok(true);
        }
    }
    Err(ArtifactError::conflict(format!(
        "the latest of {stage} on remote {} kept changing under this push; run it again",
        backend.shown
    ))
    .into())
}

async fn is_newer(
    remote: &Remote,
    stage: Stage,
    ns: &Namespace,
    current: &str,
    meta: &Metadata,
) -> Result<bool> {
    if current == meta.id {
        return Ok(false);
    }
    if stage == Stage::Production {
        use crate::policy::version::Version;
        if let (Ok(ours), Ok(theirs)) = (Version::parse(&meta.id), Version::parse(current)) {
            return Ok(ours > theirs);
        }
    }
    let theirs = remote
        .backend
        .get(&record_key(stage, ns, current))
        .await?
        .and_then(|g| serde_json::from_slice::<Metadata>(&g.bytes).ok());
    Ok(match theirs {
        Some(t) => meta.created_at > t.created_at,
        // latest names a run the remote does not have: repair it.
        None => true,
    })
}
