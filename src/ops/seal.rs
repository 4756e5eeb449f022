//! Pending hashes. `register --all` shares a legacy store's bytes by hard
//! link and, to stay a small fraction of a copy's time, does not read them:
//! each file's manifest entry gets its size and stamp (inode, modification
//! time) and a pending hash. The stamp stands guard until the first command
//! that needs the content hash (`promote`, `push`, `verify --repair`) reads
//! the file, checks the stamp again and records the hash in the run's
//! `metadata.json` under the lock ("sealing" the run). A file changed in
//! between (its stamp differs) is an error that names it, never sealed.

use std::collections::BTreeMap;

use anyhow::Result;
use rayon::prelude::*;

use crate::error::ArtifactError;
use crate::fsx;
use crate::ops;
use crate::progress::{Progress, Unit};
use crate::store::journal;
use crate::store::manifest;
use crate::store::metadata::{FileEntry, Metadata, METADATA_FILE};
use crate::store::{RunLocation, Store};

/// Why a pending hash cannot be recorded.
pub fn changed_since_import(location: &RunLocation, entry: &FileEntry) -> String {
    format!(
        "{}: {} changed since it was imported by link (its size or modification time differs, \
         and its content was not hashed at import)",
        location.reference(),
        entry.path
    )
}

/// What fixes a file changed since its import: it cannot be checked, only
/// imported again.
pub fn reimport_hint(location: &RunLocation) -> String {
    format!(
        "restore the file, or import the version again: `artifactctl delete {}`, then `artifactctl register --all <legacy store>`",
        location.reference()
    )
}

/// Hash the files of `entries` whose hash is pending, checking each one's
/// stamp before and after reading it. Keyed by [`FileEntry::key`].
pub fn hash_pending(
    location: &RunLocation,
    entries: &[FileEntry],
    reporter: &dyn Progress,
) -> Result<BTreeMap<String, String>> {
    let pending: Vec<&FileEntry> = entries.iter().filter(|f| f.blake3.is_none()).collect();
    let total = pending.iter().map(|f| f.size).sum();
    reporter.begin("hashing", Some(total), Unit::Bytes);
    let hashed = pending
        .par_iter()
        .map(|entry| {
            crate::interrupt::check()?;
            let path = location.path.join(entry.rel_path());
            let unchanged = || {
                std::fs::symlink_metadata(&path).is_ok_and(|meta| entry.stamp_matches(&meta))
            };
            if !unchanged() {
                return Err(ArtifactError::corrupt(format!(
                    "{}; {}",
                    changed_since_import(location, entry),
                    reimport_hint(location)
                ))
                .into());
            }
            let hash = manifest::hash_file(&path)?;
            // A write racing the read would leave a new stamp behind.
            if !unchanged() {
                return Err(ArtifactError::corrupt(format!(
                    "{}: {} changed while it was being hashed; run the command again once nothing writes to it",
                    location.reference(),
                    entry.path
                ))
                .into());
            }
            reporter.advance(entry.size);
            Ok((entry.key(), hash))
        })
        .collect::<Result<BTreeMap<_, _>>>();
    reporter.end();
    hashed
}

/// [`seal`] for a run with artifactctl's own metadata; a run in a legacy
/// layout (no hashes to record) or with unreadable metadata is left to
/// whoever reads it next, which reports it.
pub fn seal_if_native(
    store: &Store,
    location: &RunLocation,
    reporter: &dyn Progress,
) -> Result<()> {
    if Metadata::read(&location.path).is_ok() {
        seal(store, location, reporter)?;
    }
    Ok(())
}

/// The run's metadata with every hash recorded: pending ones are read now
/// and written into its `metadata.json` atomically, under the lock. A run
/// with nothing pending is returned as read, with no lock taken.
pub fn seal(store: &Store, location: &RunLocation, reporter: &dyn Progress) -> Result<Metadata> {
    let meta = Metadata::read(&location.path)?;
    if meta.pending_hashes() == 0 {
        return Ok(meta);
    }
    let hashes = hash_pending(location, &meta.files, reporter)?;
    let _lock = ops::lock(store)?;
    Ok(record_hashes(store, location, &hashes)?.0)
}

/// Write `hashes` (from [`hash_pending`]) into the run's pending entries;
/// the metadata as written and how many entries got their hash. The caller
/// holds the store lock.
pub fn record_hashes(
    store: &Store,
    location: &RunLocation,
    hashes: &BTreeMap<String, String>,
) -> Result<(Metadata, u64)> {
    // Read again under the lock: another writer may have sealed or pinned
    // the run meanwhile, and its record is the one to extend.
    let mut meta = Metadata::read(&location.path)?;
    let mut recorded = 0u64;
    for entry in meta.files.iter_mut().filter(|f| f.blake3.is_none()) {
        let Some(hash) = hashes.get(&entry.key()) else {
            continue;
        };
        // Changed since it was read (the caller read it earlier, maybe
        // without the lock): that hash is not the file's.
        let path = location.path.join(entry.rel_path());
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| entry.stamp_matches(&m)) {
            continue;
        }
        entry.blake3 = Some(hash.clone());
        recorded += 1;
    }
    if recorded == 0 {
        return Ok((meta, 0));
    }
    ops::index::touch(store, location.stage, &location.namespace);
    let path = location.path.join(METADATA_FILE);
    fsx::atomic_write_in_readonly_dir(&path, meta.to_json().as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot record the hashes in {}: {e}", path.display()))?;
    ops::record(
        store.dir(),
        &[
            journal::Entry::new("record-hashes", None, Some(location.qualified()))
                .with("file_count", recorded),
        ],
    )?;
    Ok((meta, recorded))
}
