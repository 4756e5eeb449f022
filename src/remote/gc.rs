//! Garbage collection of a remote's blobs, in two phases with a grace
//! period and no lock:
//! - phase 1 (every run): each blob no record references is marked in the
//!   mark object `gc/marks.json` with the time it was first seen
//!   unreferenced; a blob referenced again loses its mark;
//! - phase 2 (the same run, for older marks): a blob still unreferenced,
//!   marked longer than the grace ago, and not rewritten within the grace,
//!   is deleted.
//!
//! A push reads the mark object and re-uploads (overwrites) the marked blobs
//! it needs instead of trusting that they exist, which refreshes their time;
//! so a push in flight is never broken, as long as it takes less than the
//! grace. The mark object is written by compare-and-swap: of two cleanups
//! at once, one stops with a conflict.
//!
//! The blobs about to be deleted stay in the mark object this run writes:
//! a push that starts between that write and the deletes sees them marked
//! and uploads them again rather than trusting them. Each is then asked for
//! its time right before its delete, and one written since it was listed (a
//! push's re-upload) is kept; only a re-upload landing between that check
//! and the delete itself, milliseconds, is not covered (object stores have
//! no conditional delete).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::backend::{Listed, Mode, Put};
use super::Remote;
use crate::error::ArtifactError;

pub const MARKS_KEY: &str = "gc/marks.json";

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Marks {
    schema_version: u32,
    /// Blob hash → when it was first seen unreferenced.
    pub(crate) marks: BTreeMap<String, DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct GcOptions {
    pub grace: Duration,
    pub now: DateTime<Utc>,
    /// Decide and report, change nothing.
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GcReport {
    pub remote: String,
    pub dry_run: bool,
    /// Grace in seconds.
    pub grace_seconds: i64,
    pub blobs: u64,
    pub referenced: u64,
    /// Unreferenced blobs marked by this run.
    pub newly_marked: u64,
    /// Unreferenced, marked, still within the grace.
    pub waiting: u64,
    pub deleted: u64,
    pub deleted_bytes: u64,
}

/// The marked blobs (a push re-uploads these rather than trust them).
pub(crate) async fn read_marks(remote: &Remote) -> Result<(Marks, Option<String>, bool)> {
    match remote.backend.get(MARKS_KEY).await? {
        None => Ok((Marks::default(), None, false)),
        Some(got) => {
            let marks: Marks = serde_json::from_slice(&got.bytes).map_err(|e| {
                ArtifactError::corrupt(format!(
                    "remote {}: the mark object {MARKS_KEY} is not valid: {e}; remove it to start marking again",
                    remote.backend.shown
                ))
            })?;
            Ok((marks, got.etag, true))
        }
    }
}

pub(crate) fn blob_hash(key: &str) -> Option<&str> {
    let hash = key.rsplit('/').next()?;
    (hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hash)
}

/// A blob phase 2 deletes, as it was listed.
struct Doomed {
    key: String,
    size: u64,
    modified: DateTime<Utc>,
}

/// What phase 1 and 2 decide: the report, the marks to write, and the
/// blobs to delete.
pub(crate) struct Decision {
    pub report: GcReport,
    marks: Marks,
    doomed: Vec<Doomed>,
}

/// Judge every listed blob against what the records reference.
pub(crate) fn decide(
    remote: &Remote,
    old: &Marks,
    blobs: &[Listed],
    referenced: &BTreeSet<String>,
    opts: &GcOptions,
) -> Decision {
    let mut report = GcReport {
        remote: remote.name.clone(),
        dry_run: opts.dry_run,
        grace_seconds: opts.grace.num_seconds(),
        blobs: blobs.len() as u64,
        referenced: 0,
        newly_marked: 0,
        waiting: 0,
        deleted: 0,
        deleted_bytes: 0,
    };
    let cutoff = opts.now - opts.grace;
    let mut marks = Marks {
        schema_version: 1,
        marks: BTreeMap::new(),
    };
    let mut doomed = Vec::new();
    for blob in blobs {
        let Some(hash) = blob_hash(&blob.key) else {
            continue;
        };
        if referenced.contains(hash) {
            report.referenced += 1;
            continue;
        }
        match old.marks.get(hash) {
            Some(&since) if since <= cutoff && blob.modified <= cutoff => {
                // Still marked until it is gone (see the module's notes).
                marks.marks.insert(hash.to_string(), since);
                doomed.push(Doomed {
                    key: blob.key.clone(),
                    size: blob.size,
                    modified: blob.modified,
                });
            }
            Some(&since) => {
                report.waiting += 1;
                marks.marks.insert(hash.to_string(), since);
            }
            None => {
                report.newly_marked += 1;
                report.waiting += 1;
                marks.marks.insert(hash.to_string(), opts.now);
            }
        }
    }
    report.deleted = doomed.len() as u64;
    report.deleted_bytes = doomed.iter().map(|d| d.size).sum();
    Decision {
        report,
        marks,
        doomed,
    }
}

/// Write the marks by compare-and-swap over the version read, then delete
/// the doomed blobs not written since they were listed. Returns how many
/// were deleted, and their bytes.
pub(crate) async fn collect(
    remote: &Remote,
    decision: &Decision,
    etag: Option<String>,
    exists: bool,
) -> Result<(u64, u64)> {
    let backend = &remote.backend;
    // The marks first, the doomed still in them: killed before the deletes,
    // the next run finds them marked long enough and deletes them then.
    let mode = match (exists, etag) {
        (false, _) => Mode::Create,
        (true, Some(etag)) => Mode::Update(etag),
        (true, None) => anyhow::bail!(
            "remote {} gave no ETag for {MARKS_KEY}; garbage collection cannot run safely",
            backend.shown
        ),
    };
    let bytes = serde_json::to_vec(&decision.marks)?;
    if backend.put(MARKS_KEY, bytes, mode).await? != Put::Done {
        return Err(ArtifactError::conflict(format!(
            "another cleanup of remote '{}' changed {MARKS_KEY} meanwhile; no content was deleted, run it again",
            remote.name
        ))
        .into());
    }
    crate::fsx::fault::hit(crate::fsx::fault::Point::MidRemoval)?;
    let mut deletes = futures::stream::iter(&decision.doomed)
        .map(|doomed| async move {
            // A push that needs it again uploads it again: written since
            // the listing, it stays (and is judged afresh next time).
            // (Whole seconds: a listing and a HEAD may differ in precision.)
            match backend.modified(&doomed.key).await? {
                Some(modified) if modified.timestamp() <= doomed.modified.timestamp() => {}
                _ => return anyhow::Ok(None),
            }
            // A pack's table of contents goes first: one left without its
            // pack would send a push to content that is gone.
            if let Some(toc) = super::pack::toc_of(&doomed.key) {
                backend.delete(&toc).await?;
            }
            backend.delete(&doomed.key).await?;
            Ok(Some(doomed.size))
        })
        .buffer_unordered(16);
    let (mut deleted, mut deleted_bytes) = (0, 0);
    while let Some(done) = deletes.next().await {
        if let Some(size) = done? {
            deleted += 1;
            deleted_bytes += size;
        }
    }
    Ok((deleted, deleted_bytes))
}
