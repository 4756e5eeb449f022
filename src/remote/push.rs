//! `push`: blobs first (create-only, only those missing), then the run's
//! record (create-only), then a catalog segment, `latest` by
//! compare-and-swap, and a journal object. A reader never sees a record
//! whose content is missing; a killed push re-run uploads only what is
//! missing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use futures::{FutureExt, StreamExt};
use serde::Serialize;

use super::backend::{Mode, Put};
use super::catalog::{self, Segment};
use super::{blob_key, latest_key, pack, parse_latest, record_key, same_run, unique_key, Remote};
use crate::error::ArtifactError;
use crate::progress::TransferReporter;
use crate::store::journal;
use crate::store::metadata::{Metadata, RunStatus};
use crate::store::refs::{Namespace, Stage};
use crate::store::RunLocation;

pub struct PushOptions {
    pub runs: Vec<RunLocation>,
    /// Transfers in flight at once.
    pub jobs: usize,
    pub now: DateTime<Utc>,
    /// How a run in a legacy layout is read (its record is built in place).
    pub read: crate::store::ReadOptions,
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
    /// The run's pending marker.
    #[serde(skip)]
    pending: String,
}

pub fn push(
    remote: &Remote,
    opts: &PushOptions,
    reporter: &dyn TransferReporter,
) -> Result<PushReport> {
    let mut report = PushReport {
        remote: remote.name.clone(),
        runs: Vec::new(),
        uploaded_files: 0,
        uploaded_bytes: 0,
        compacted_segments: 0,
    };
    let mut added = Vec::new();
    // What the remote's packs hold: read once, at the first run with small
    // files to upload, and extended with the packs this push writes.
    let mut in_packs = None;
    for location in &opts.runs {
        let meta = record_of(location, &opts.read)?;
        let pushed = remote.block_on(push_one(
            remote,
            location,
            &meta,
            &mut in_packs,
            opts.jobs,
            reporter,
        ))?;
        report.uploaded_files += pushed.uploaded_files;
        report.uploaded_bytes += pushed.uploaded_bytes;
        if pushed.state == "pushed" {
            added.push(catalog::summary(&meta)?);
        }
        report.runs.push(pushed);
    }
    if !added.is_empty() {
        crate::fsx::fault::hit(crate::fsx::fault::Point::BeforeCatalog)?;
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
            // Finished: the markers go (a push killed before this only
            // writes the catalog entry again, which readers merge).
            for pushed in report.runs.iter().filter(|r| r.state == "pushed") {
                remote.backend.delete(&pushed.pending).await?;
            }
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

/// What one upload of a push sent.
enum Sent {
    /// One file's blob, with its size when this push wrote it.
    Loose(Option<u64>),
    Pack(pack::Uploaded),
}

/// `pending/<stage>/ns=<a,b>/<id>`: a run whose push has not finished.
fn pending_key(stage: Stage, ns: &Namespace, id: &str) -> String {
    format!("pending/{stage}/ns={}/{id}", ns.segments().join(","))
}

async fn push_one(
    remote: &Remote,
    location: &RunLocation,
    meta: &Metadata,
    in_packs: &mut Option<HashMap<String, pack::PackedAt>>,
    jobs: usize,
    reporter: &dyn TransferReporter,
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
        pending: pending_key(location.stage, &ns, &location.id),
    };
    let pending = pushed.pending.clone();
    // An unchanged run costs one round trip: its record, its stage's latest
    // and its pending marker are asked at once.
    let (record, latest, unfinished) = futures::future::join3(
        backend.get(&key),
        backend.get(&latest_key(location.stage, &ns)),
        backend.exists(&pending),
    )
    .await;
    let ours = meta.to_json().into_bytes();
    if let Some(got) = record? {
        // The same bytes need no parsing (the record of a run pushed from
        // here and not changed since).
        let same = pack::same_record_bytes(&got.bytes, &ours)
            || serde_json::from_slice::<Metadata>(&got.bytes).is_ok_and(|t| same_run(&t, meta));
        if !same {
            return Err(taken(remote, &reference));
        }
        // The pending marker outlives a push killed after the
        // record: this one finishes its work (latest, then the
        // catalog and journal in `push`). Without it, latest is
        // still moved forward if it lags behind, but not in
        // production, where it may have been rolled back on purpose.
        let unfinished = unfinished?;
        if unfinished {
            pushed.state = "pushed";
        }
        let may_move = unfinished || location.stage != Stage::Production;
        if meta.status == RunStatus::Complete && may_move {
            pushed.became_latest =
                advance_latest(remote, location.stage, &ns, meta, Some(latest?)).await?;
        }
        return Ok(pushed);
    }
    let mut blobs: BTreeMap<&str, (PathBuf, u64)> = BTreeMap::new();
    for f in meta.files.iter().filter(|f| f.symlink.is_none()) {
        blobs
            .entry(f.blake3.as_deref().with_context(|| format!("{reference} has files whose hash is pending (imported by link); `artifactctl verify --repair {reference}` records them"))?)
            .or_insert_with(|| (location.path.join(f.rel_path()), f.size));
    }
    // Blobs garbage collection has marked may go soon: they are uploaded
    // again (overwritten), which refreshes their time, instead of trusted.
    let (marks, _, _) = super::gc::read_marks(remote).await?;
    let marks = &marks.marks;
    let (listed, present) = &present_blobs(remote, blobs.keys().copied(), jobs).await?;
    // Known to be there from the listing and not marked: nothing to do.
    let settled = |hash: &str| {
        listed.contains(&hash[..2]) && present.contains(hash) && !marks.contains_key(hash)
    };
    // Small files the remote lacks go up in packs when there are enough of
    // them; those its packs already hold are referenced where they lie.
    let mut packed = pack::PackedField::new();
    let small: Vec<&str> = blobs
        .iter()
        .filter(|(hash, (_, size))| *size < pack::PACKED_FILE_MAX && !settled(hash))
        .map(|(hash, _)| *hash)
        .collect();
    let mut in_a_pack = HashSet::new();
    if !small.is_empty() {
        if in_packs.is_none() {
            *in_packs = Some(pack::packed_blobs(remote, marks, jobs).await?);
        }
        let known = in_packs.as_ref().expect("read just above");
        for hash in small {
            // A pack marked since it was read is not trusted either.
            if let Some(at) = known.get(hash).filter(|at| !marks.contains_key(&at.pack)) {
                packed
                    .entry(at.pack.clone())
                    .or_default()
                    .insert(hash.to_string(), at.offset);
                in_a_pack.insert(hash);
            }
        }
    }
    let mut loose = Vec::new();
    let mut to_pack = Vec::new();
    for (hash, (path, size)) in blobs {
        if in_a_pack.contains(hash) {
            pushed.present_files += 1;
        } else if size < pack::PACKED_FILE_MAX && !settled(hash) {
            to_pack.push((hash, path, size));
        } else {
            loose.push((hash, (path, size)));
        }
    }
    if to_pack.len() < pack::PACK_MIN_FILES {
        loose.extend(
            to_pack
                .drain(..)
                .map(|(hash, path, size)| (hash, (path, size))),
        );
    }
    let (files, bytes) = loose
        .iter()
        .filter(|(hash, _)| !settled(hash))
        .map(|(_, (_, size))| *size)
        .chain(to_pack.iter().map(|(_, _, size)| *size))
        .fold((0, 0), |(n, b), size| (n + 1, b + size));
    reporter.transfer_started(&format!("pushing {reference}"), files, bytes);
    let on_bytes = |n: u64| reporter.transfer_bytes(n);
    let on_bytes = &on_bytes;
    let packs = futures::stream::iter(pack::group(to_pack)).map(|files| {
        async move {
            let uploaded = pack::upload(remote, &files, marks).await?;
            reporter.transfer_bytes(uploaded.bytes);
            for _ in &files {
                reporter.transfer_file();
            }
            anyhow::Ok(Sent::Pack(uploaded))
        }
        .boxed_local()
    });
    let loose = futures::stream::iter(loose).map(|(hash, (path, size))| {
        async move {
            if settled(hash) {
                return anyhow::Ok(Sent::Loose(None));
            }
            let key = blob_key(hash);
            let marked = marks.contains_key(hash);
            let there = !marked && !listed.contains(&hash[..2]) && backend.exists(&key).await?;
            if there {
                reporter.transfer_bytes(size);
                reporter.transfer_file();
                return Ok(Sent::Loose(None));
            }
            crate::interrupt::check()?;
            crate::fsx::fault::hit(crate::fsx::fault::Point::Upload)?;
            let put = backend
                .put_file(&key, &path, hash, marked, on_bytes)
                .await?;
            reporter.transfer_file();
            match put {
                Put::Done => Ok(Sent::Loose(Some(size))),
                _ => Ok(Sent::Loose(None)),
            }
        }
        .boxed_local()
    });
    let mut uploads = futures::stream::select(packs, loose).buffer_unordered(jobs.max(1));
    let mut failed = None;
    while let Some(done) = uploads.next().await {
        match done {
            Ok(Sent::Loose(Some(size))) => {
                pushed.uploaded_files += 1;
                pushed.uploaded_bytes += size;
            }
            Ok(Sent::Loose(None)) => pushed.present_files += 1,
            Ok(Sent::Pack(uploaded)) => {
                let n = uploaded.blobs.len() as u64;
                if uploaded.written {
                    pushed.uploaded_files += n;
                    pushed.uploaded_bytes += uploaded.bytes;
                } else {
                    pushed.present_files += n;
                }
                if let Some(known) = in_packs.as_mut() {
                    for (hash, offset) in &uploaded.blobs {
                        known.entry(hash.clone()).or_insert(pack::PackedAt {
                            pack: uploaded.pack.clone(),
                            offset: *offset,
                        });
                    }
                }
                packed
                    .entry(uploaded.pack)
                    .or_default()
                    .extend(uploaded.blobs);
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    drop(uploads);
    reporter.transfer_finished(failed.is_none());
    if let Some(e) = failed {
        return Err(e);
    }
    crate::fsx::fault::hit(crate::fsx::fault::Point::AfterBlobs)?;
    // Marks the run unfinished until its catalog entry is written: a push
    // killed after the record leaves the marker, and the next push of the
    // run finds it and completes the work.
    let marked_here = backend.put(&pending, b"{}".to_vec(), Mode::Create).await? == Put::Done;
    match backend
        .put(&key, pack::record_bytes(meta, &packed)?, Mode::Create)
        .await?
    {
        Put::Done => {}
        _ => {
            // Another writer created it meanwhile, or this put's own first
            // try did before its answer was lost: the same run is fine (and
            // this push goes on to latest and the catalog, which the other
            // may not have reached); anything else is theirs.
            let theirs = backend.get(&key).await?;
            let same = theirs
                .and_then(|g| serde_json::from_slice::<Metadata>(&g.bytes).ok())
                .is_some_and(|t| same_run(&t, meta));
            if !same {
                // A marker created here came after the winner had finished
                // (it marks before its record), or stands for the winner's
                // own while it runs. Left behind, it would make a later
                // push of the winner's run think it unfinished (and move a
                // rolled-back production latest); removed, only a winner
                // killed in this very moment loses its marker.
                if marked_here {
                    let _ = backend.delete(&pending).await;
                }
                return Err(taken(remote, &reference));
            }
        }
    }
    crate::fsx::fault::hit(crate::fsx::fault::Point::AfterRecord)?;
    pushed.state = "pushed";
    if meta.status == RunStatus::Complete {
        pushed.became_latest = advance_latest(remote, location.stage, &ns, meta, None).await?;
    }
    Ok(pushed)
}

/// Which of `hashes` the remote holds, learned by listing rather than by
/// one request per blob. When the run's blobs spread over many blob folders
/// (`blobs/<h[0..2]>/`), the whole `blobs/` prefix is listed in order, 1,000
/// keys a request: on a remote of up to a few hundred thousand blobs that is
/// fewer requests than one listing per folder. A listing that grows past
/// what the folders would have cost stops, and the folders it did not reach
/// are listed one by one; with few folders, each holding two or more of the
/// hashes is listed. Returns the folders whose content is known and the
/// hashes found in them; the caller asks about the rest one by one.
async fn present_blobs<'a>(
    remote: &Remote,
    hashes: impl Iterator<Item = &'a str>,
    jobs: usize,
) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let mut per_folder: BTreeMap<&str, usize> = BTreeMap::new();
    for hash in hashes {
        *per_folder.entry(&hash[..2]).or_default() += 1;
    }
    let mut todo: BTreeSet<String> = per_folder
        .iter()
        .filter(|(_, n)| **n >= 2)
        .map(|(f, _)| f.to_string())
        .collect();
    let mut known = BTreeSet::new();
    let mut present = BTreeSet::new();
    let hash_of = |key: &str| key.rsplit('/').next().map(str::to_string);
    if todo.len() >= WHOLE_LISTING_FOLDERS {
        let (keys, complete) = remote
            .backend
            .list_until("blobs", todo.len() * 1000)
            .await?;
        for key in &keys {
            if let Some(hash) = hash_of(key) {
                present.insert(hash);
            }
        }
        let last = keys.last().map(String::as_str);
        for folder in whole_folders(per_folder.keys().copied(), last, complete) {
            known.insert(folder.to_string());
            todo.remove(folder);
        }
    }
    let mut lists = futures::stream::iter(&todo)
        // object_store lists by path segments: `blobs/ab` never lists
        // `blobs/abc`.
        .map(|f| async move { remote.backend.list(&format!("blobs/{f}")).await })
        .buffer_unordered(jobs.max(1));
    while let Some(keys) = lists.next().await {
        for key in keys? {
            if let Some(hash) = hash_of(&key) {
                present.insert(hash);
            }
        }
    }
    drop(lists);
    known.extend(todo);
    Ok((known, present))
}

/// Which of `folders` a listing of `blobs/` saw whole. Listings come in key
/// order: a complete one saw every folder; one stopped at `last` saw the
/// folders below `last`'s whole, and `last`'s own may be cut short.
fn whole_folders<'a>(
    folders: impl Iterator<Item = &'a str>,
    last: Option<&str>,
    complete: bool,
) -> Vec<&'a str> {
    if complete {
        return folders.collect();
    }
    match last.and_then(|key| key.split('/').nth(1)) {
        Some(reached) => folders.filter(|f| *f < reached).collect(),
        None => Vec::new(),
    }
}

/// From this many blob folders to list on, one listing of `blobs/` is tried
/// first.
const WHOLE_LISTING_FOLDERS: usize = 32;

/// The record a run goes up with: its `metadata.json`, or for a run in a
/// legacy layout the one `register` would give it.
fn record_of(location: &RunLocation, read: &crate::store::ReadOptions) -> Result<Metadata> {
    use crate::store::model::RunLayout;
    // Most runs are artifactctl's own: their metadata is read once.
    let native = Metadata::read(&location.path);
    if native.is_ok() {
        return native;
    }
    let run = crate::store::read::read_run(location.clone(), read);
    if run.layout == RunLayout::Native {
        return native;
    }
    if run.status != RunStatus::Complete {
        return Err(ArtifactError::refused(format!(
            "{} is {}; only complete runs in a legacy layout are pushed: `artifactctl show {}` tells why",
            location.qualified(),
            run.status.as_str(),
            location.qualified()
        ))
        .into());
    }
    crate::ops::register::legacy_record(location, run.created_at)
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
/// read again and decide again, so `latest` never moves backward. `read`
/// is the latest object when the caller has just read it.
async fn advance_latest(
    remote: &Remote,
    stage: Stage,
    ns: &Namespace,
    meta: &Metadata,
    mut read: Option<Option<super::backend::Got>>,
) -> Result<bool> {
    let backend = &remote.backend;
    let key = latest_key(stage, ns);
    let body = serde_json::to_vec(&serde_json::json!({ "id": meta.id }))?;
    for _ in 0..16 {
        let current = match read.take() {
            Some(got) => got,
            None => backend.get(&key).await?,
        };
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

#[cfg(test)]
mod tests {
    use super::whole_folders;

    #[test]
    fn a_cut_listing_covers_only_the_folders_below_where_it_stopped() {
        let folders = ["00", "3f", "40", "ff"];
        let cut = whole_folders(folders.into_iter(), Some("blobs/40/40ab"), false);
        assert_eq!(cut, ["00", "3f"]);
        let whole = whole_folders(folders.into_iter(), Some("blobs/40/40ab"), true);
        assert_eq!(whole, folders);
        assert!(whole_folders(folders.into_iter(), Some("odd"), false).is_empty());
        assert!(whole_folders(folders.into_iter(), None, false).is_empty());
    }
}
