//! `pull`: read and validate the record, stage its files (hard-linking
//! content already in local runs, downloading the rest), check every file
//! against its BLAKE3, and only then publish through `publish_run`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result};
use futures::StreamExt;
use serde::Serialize;

use super::pack::{self, PackedAt};
use super::{blob_key, same_run, Remote};
use crate::error::ArtifactError;
use crate::fsx::{self, Staging};
use crate::ops::{publish_run, IdRequest, LatestPolicy};
use crate::progress::TransferReporter;
use crate::store::journal;
use crate::store::metadata::{FileEntry, Metadata};
use crate::store::refs::{qualified_ref, RunRef, Stage, Target};
use crate::store::Store;

pub struct PullOptions {
    pub refs: Vec<RunRef>,
    pub jobs: usize,
}

#[derive(Debug, Serialize)]
pub struct PullReport {
    pub remote: String,
    pub runs: Vec<PulledRun>,
    pub downloaded_files: u64,
    pub downloaded_bytes: u64,
    pub linked_files: u64,
}

#[derive(Debug, Serialize)]
pub struct PulledRun {
    #[serde(rename = "ref")]
    pub reference: String,
    /// `pulled`, or `present` when the local store already had it.
    pub state: &'static str,
    pub path: PathBuf,
    pub downloaded_files: u64,
    pub downloaded_bytes: u64,
    /// Files hard-linked (or copied) from local runs with the same content.
    pub linked_files: u64,
    pub became_latest: bool,
}

pub fn pull(
    remote: &Remote,
    store: &Store,
    opts: &PullOptions,
    reporter: &dyn TransferReporter,
) -> Result<PullReport> {
    let mut report = PullReport {
        remote: remote.name.clone(),
        runs: Vec::new(),
        downloaded_files: 0,
        downloaded_bytes: 0,
        linked_files: 0,
    };
    let mut local: Option<HashMap<String, PathBuf>> = None;
    for r in &opts.refs {
        let stage = r.stage();
        let id = match &r.target {
            Target::Id(id) => id.clone(),
            Target::Latest => remote.latest(stage, &r.namespace)?.ok_or_else(|| {
                ArtifactError::not_found(format!(
                    "remote '{}' has no latest in {}",
                    remote.name,
                    qualified_ref(stage, &r.namespace, "latest")
                ))
            })?,
        };
        let (meta, packed) = remote.record_packed(stage, &r.namespace, &id)?;
        let location = store.location(stage, &r.namespace, &id)?;
        if location.path.symlink_metadata().is_ok() {
            let ours = Metadata::read(&location.path).ok();
            if ours.is_some_and(|o| same_run(&o, &meta)) {
                report.runs.push(PulledRun {
                    reference: location.qualified(),
                    state: "present",
                    path: location.path.clone(),
                    downloaded_files: 0,
                    downloaded_bytes: 0,
                    linked_files: 0,
                    became_latest: false,
                });
                continue;
            }
            return Err(ArtifactError::refused(format!(
                "{} exists locally with different content than on remote '{}'; it is left as it is",
                location.qualified(),
                remote.name
            ))
            .into());
        }
        let local = local.get_or_insert_with(|| local_content(store));
        let pulled = pull_one(remote, store, meta, &packed, local, opts.jobs, reporter)?;
        // The next runs of this pull take what this one brought.
        if let Ok(meta) = Metadata::read(&pulled.path) {
            add_content(local, &pulled.path, meta);
        }
        report.downloaded_files += pulled.downloaded_files;
        report.downloaded_bytes += pulled.downloaded_bytes;
        report.linked_files += pulled.linked_files;
        report.runs.push(pulled);
    }
    Ok(report)
}

/// Where each content hash already lies in local runs.
fn local_content(store: &Store) -> HashMap<String, PathBuf> {
    let mut out = HashMap::new();
    for location in store.locations(&Stage::ALL, &crate::store::refs::Namespace::root()) {
        if let Ok(meta) = Metadata::read(&location.path) {
            add_content(&mut out, &location.path, meta);
        }
    }
    out
}

/// Add where the files of the run at `dir` lie, by content hash.
fn add_content(out: &mut HashMap<String, PathBuf>, dir: &std::path::Path, meta: Metadata) {
    // A pending hash (imported by link, not yet read) cannot vouch for
    // content: that file is downloaded instead.
    for f in meta.files.into_iter().filter(|f| f.symlink.is_none()) {
        let Some(hash) = &f.blake3 else { continue };
        out.entry(hash.clone())
            .or_insert_with(|| dir.join(f.rel_path()));
    }
}

fn pull_one(
    remote: &Remote,
    store: &Store,
    mut meta: Metadata,
    packed: &HashMap<String, PackedAt>,
    local: &HashMap<String, PathBuf>,
    jobs: usize,
    reporter: &dyn TransferReporter,
) -> Result<PulledRun> {
    let staging = Staging::create(store.dir(), &format!("pull-{}", meta.id))
        .context("cannot create a staging folder for the pull")?;
    let dir = staging.path().to_path_buf();
    let mut pulled = PulledRun {
        reference: String::new(),
        state: "pulled",
        path: PathBuf::new(),
        downloaded_files: 0,
        downloaded_bytes: 0,
        linked_files: 0,
        became_latest: false,
    };
    let (files, bytes) = meta
        .files
        .iter()
        .filter(|f| f.symlink.is_none())
        .fold((0, 0), |(n, b), f| (n + 1, b + f.size));
    let label = format!(
        "pulling {}",
        qualified_ref(
            meta.stage,
            &crate::store::refs::Namespace::parse(&meta.namespace)?,
            &meta.id
        )
    );
    reporter.transfer_started(&label, files, bytes);
    let on_bytes = |n: u64| reporter.transfer_bytes(n);
    let on_bytes = &on_bytes;
    // Content the run holds more than once is fetched once; the other
    // files get it from the staged copy afterwards.
    let mut first: HashMap<&str, &crate::store::metadata::FileEntry> = HashMap::new();
    let (unique, again): (Vec<_>, Vec<_>) = meta.files.iter().partition(|f| {
        f.symlink.is_some()
            || std::ptr::eq(
                *first
                    .entry(f.blake3.as_deref().unwrap_or_default())
                    .or_insert(f),
                *f,
            )
    });
    let transferred = remote.block_on(async {
        let dir = &dir;
        let mut work = futures::stream::iter(unique)
            .map(|f| async move {
                crate::interrupt::check()?;
                let rel = f.rel_path();
                if let Some(target) = &f.symlink {
                    fsx::remote::symlink_in(dir, &rel, std::path::Path::new(target))?;
                    return anyhow::Ok(Step::Done(0, 0, 0));
                }
                // Checked by `record_problem` when the record was read.
                let expected = f.blake3.as_deref().unwrap_or_default();
                if let Some(src) = local.get(expected) {
                    // Re-hashed: a local file changed since its manifest
                    // must not slip in under the remote's hash.
                    if fsx::remote::share_in(dir, &rel, src).is_ok()
                        && crate::store::manifest::hash_file(&dir.join(&rel))? == expected
                    {
                        reporter.transfer_bytes(f.size);
                        reporter.transfer_file();
                        return Ok(Step::Done(0, 0, 1));
                    }
                    // Changed locally: download it instead.
                    fsx::remote::discard_in(dir, &rel)?;
                }
                if let Some(at) = packed.get(expected) {
                    return Ok(Step::InPack(f, at));
                }
                let key = blob_key(expected);
                fsx::fault::hit(fsx::fault::Point::Download)?;
                let mut file = fsx::remote::create_in(dir, &rel)
                    .with_context(|| format!("cannot create {} in the staging folder", f.path))?;
                let got = remote.backend.get_into(&key, &mut file, on_bytes).await?;
                let Some((hash, size)) = got else {
                    return Err(ArtifactError::corrupt(format!(
                        "remote {}: blob {key} of {} is missing; nothing was published",
                        remote.backend.shown, f.path
                    ))
                    .into());
                };
                if hash != expected {
                    return Err(ArtifactError::corrupt(format!(
                        "remote {}: blob {key} of {} does not match its name (its BLAKE3 is {hash}); nothing was published",
                        remote.backend.shown, f.path
                    ))
                    .into());
                }
                reporter.transfer_file();
                // Made durable with the whole run when it is published
                // (an fsync here would stall every transfer in flight).
                Ok(Step::Done(1, size, 0))
            })
            .buffer_unordered(jobs.max(1));
        let mut by_pack: BTreeMap<&str, Vec<(&FileEntry, u64)>> = BTreeMap::new();
        while let Some(done) = work.next().await {
            match done? {
                Step::Done(files, bytes, linked) => {
                    pulled.downloaded_files += files;
                    pulled.downloaded_bytes += bytes;
                    pulled.linked_files += linked;
                }
                Step::InPack(f, at) => by_pack.entry(&at.pack).or_default().push((f, at.offset)),
            }
        }
        drop(work);
        let mut packs = futures::stream::iter(by_pack)
            .map(|(pack, files)| fetch_packed(remote, dir, pack, files, reporter))
            .buffer_unordered(jobs.max(1));
        while let Some(done) = packs.next().await {
            let (files, bytes) = done?;
            pulled.downloaded_files += files;
            pulled.downloaded_bytes += bytes;
        }
        for f in again {
            // Checked when it was staged; a copy of it needs no new check.
            let src = dir.join(first[f.blake3.as_deref().unwrap_or_default()].rel_path());
            fsx::remote::share_in(dir, &f.rel_path(), &src)
                .with_context(|| format!("cannot create {} in the staging folder", f.path))?;
            reporter.transfer_bytes(f.size);
            reporter.transfer_file();
            pulled.linked_files += 1;
        }
        anyhow::Ok(())
    });
    reporter.transfer_finished(transferred.is_ok());
    transferred?;
    let latest = if meta.stage == Stage::Production {
        LatestPolicy::HighestVersion
    } else {
        LatestPolicy::Advance
    };
    // Validated and production artifacts are read-only, as promote leaves
    // them: everything inside first, the top folder once it is in place.
    let readonly = meta.stage != Stage::Raw;
    if readonly {
        for child in std::fs::read_dir(staging.path())? {
            fsx::make_tree_readonly(&child?.path())?;
        }
    }
    let id = meta.id.clone();
    let entry = journal::Entry::new("pull", Some(format!("remote:{}", remote.name)), None)
        .with("downloaded_bytes", pulled.downloaded_bytes);
    let published = publish_run(
        store,
        staging,
        &mut meta,
        IdRequest::Exact(&id),
        latest,
        entry,
    )?;
    if readonly {
        fsx::make_tree_readonly(&published.location.path).map_err(|e| {
            crate::ops::published_but(&published.location, "making it read-only failed", e.into())
        })?;
    }
    pulled.reference = published.location.qualified();
    pulled.path = published.location.path;
    pulled.became_latest = published.became_latest;
    Ok(pulled)
}

/// What staging one file came to: done (files and bytes downloaded, files
/// linked), or its content lies in a pack and is fetched with the pack's
/// other files.
enum Step<'a> {
    Done(u64, u64, u64),
    InPack(&'a FileEntry, &'a PackedAt),
}

/// Stage the `files` whose content lies in `pack` (at the offsets given),
/// in byte ranges of the pack, each checked against its BLAKE3: the files
/// and bytes downloaded.
async fn fetch_packed(
    remote: &Remote,
    dir: &std::path::Path,
    pack: &str,
    files: Vec<(&FileEntry, u64)>,
    reporter: &dyn TransferReporter,
) -> Result<(u64, u64)> {
    use std::io::Write;
    let key = pack::pack_key(pack);
    let shown = &remote.backend.shown;
    let damaged = |f: &FileEntry, why: String| -> anyhow::Error {
        ArtifactError::corrupt(format!(
            "remote {shown}: pack {key} does not hold the content of {} ({why}); nothing was published",
            f.path
        ))
        .into()
    };
    let mut ranges = Vec::with_capacity(files.len());
    for (f, offset) in &files {
        let end = offset
            .checked_add(f.size)
            .ok_or_else(|| damaged(f, format!("offset {offset} is out of range")))?;
        ranges.push(*offset..end);
    }
    crate::interrupt::check()?;
    fsx::fault::hit(fsx::fault::Point::Download)?;
    let Some(parts) = pack::fetch(remote, pack, &ranges).await? else {
        return Err(ArtifactError::corrupt(format!(
            "remote {shown}: pack {key} of {} is missing; nothing was published",
            files[0].0.path
        ))
        .into());
    };
    let mut bytes = 0;
    for ((f, _), content) in files.iter().zip(parts) {
        let expected = f.blake3.as_deref().unwrap_or_default();
        let hash = crate::store::manifest::hash_bytes(&content);
        if content.len() as u64 != f.size || hash != expected {
            return Err(damaged(
                f,
                format!(
                    "{} bytes with BLAKE3 {hash} where it should be",
                    content.len()
                ),
            ));
        }
        let mut file = fsx::remote::create_in(dir, &f.rel_path())
            .with_context(|| format!("cannot create {} in the staging folder", f.path))?;
        fsx::fault::hit(fsx::fault::Point::Write)?;
        file.write_all(&content)
            .context("cannot write a pulled file")?;
        bytes += f.size;
        reporter.transfer_bytes(f.size);
        reporter.transfer_file();
    }
    Ok((files.len() as u64, bytes))
}
