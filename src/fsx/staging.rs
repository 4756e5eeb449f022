//! Runs assembled out of sight under `.artifactctl/staging/` and published
//! with one no-replace rename; `sync_tree` makes them durable first.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::fault::{self, Point};
use super::*;
use crate::store::layout::{ORIGIN_SUFFIX, RECOVERED_DIR, STAGING_DIR};

/// A directory assembled out of sight under `.artifactctl/staging/`, removed
/// on drop unless [`Staging::publish`] moved it into place.
pub struct Staging {
    path: PathBuf,
    published: bool,
    /// Where the folder came from when it was moved in, to give it back.
    return_to: Option<PathBuf>,
}

impl Staging {
    /// Create an empty staging directory.
    pub fn create(store_dir: &Path, label: &str) -> io::Result<Staging> {
        let staging = Staging::reserve(store_dir, label)?;
        fault::hit(Point::Mkdir)?;
        fs::create_dir(&staging.path)?;
        Ok(staging)
    }

    /// Reserve a staging name without creating it, for callers that rename a
    /// finished directory in.
    pub fn reserve(store_dir: &Path, label: &str) -> io::Result<Staging> {
        let parent = super::ensure_internal_dir(store_dir, STAGING_DIR)?;
        super::owner::claim(store_dir)?;
        let label: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        let path = parent.join(format!("{label}.{}", unique_suffix()));
        Ok(Staging {
            path,
            published: false,
            return_to: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stage the user's own folder by renaming it in (`register --move`). If
    /// it is never published, it is renamed back instead of removed. Fails
    /// with `EXDEV` when `source` is on another filesystem than the store.
    ///
    /// The origin is recorded durably beside the staging folder *before* the
    /// rename, so even after `kill -9` the next writer's sweep gives the
    /// folder back instead of removing the only copy.
    pub fn adopt(store_dir: &Path, label: &str, source: &Path) -> io::Result<Staging> {
        let mut staging = Staging::reserve(store_dir, label)?;
        let source = std::path::absolute(source)?;
        let record = origin_record(&staging.path);
        atomic_write(&record, source.as_os_str().as_bytes())?;
        let moved = fault::hit(Point::Rename).and_then(|()| fs::rename(&source, &staging.path));
        if let Err(e) = moved {
            let _ = fs::remove_file(&record);
            return Err(e);
        }
        staging.return_to = Some(source);
        Ok(staging)
    }

    /// Write the run's own `name` (its `metadata.json`) into the staging
    /// folder atomically. In a folder moved in by `register --move`, the
    /// user's file of that name is first set aside beside the staging folder
    /// (or a marker says there was none), so a give-back restores the folder
    /// exactly as it was given.
    pub fn write_run_file(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        if self.return_to.is_some() {
            let theirs = self.path.join(name);
            let kept = sidecar(&self.path, &format!(".kept.{name}"));
            let ours = sidecar(&self.path, &format!(".ours.{name}"));
            if kept.symlink_metadata().is_err() && ours.symlink_metadata().is_err() {
                if theirs.symlink_metadata().is_ok() {
                    fault::hit(Point::Rename)?;
                    fs::rename(&theirs, &kept)?;
                } else {
                    atomic_write(&ours, b"")?;
                }
                fsync_dir(parent_of(&self.path))?;
            }
        }
        atomic_write(&self.path.join(name), bytes)
    }

    /// fsync everything written, then rename the directory to `dest`, failing
    /// with `AlreadyExists` if anything is there already.
    pub fn publish(mut self, dest: &Path) -> io::Result<()> {
        sync_tree(&self.path)?;
        let parent = parent_of(dest);
        fs::create_dir_all(parent)?;
        fault::hit(Point::BeforePublishRename)?;
        rename_noreplace(&self.path, dest)?;
        self.published = true;
        fsync_dir(parent)?;
        fault::hit(Point::AfterPublishRename)?;
        if self.return_to.is_some() {
            // The folder is a run now; a record left by a crash here names a
            // folder that is gone, which the sweep only removes.
            let _ = fs::remove_file(origin_record(&self.path));
            drop_run_file_records(&self.path);
        }
        if let Some(staging_parent) = self.path.parent() {
            let _ = fsync_dir(staging_parent);
        }
        Ok(())
    }
}

/// Batched publishing (`register --all`): runs staged without an fsync each,
/// made durable together by one [`sync_filesystem`], then each published by
/// its own no-replace rename, and the parent folders fsynced once per batch.
impl Staging {
    /// Write the run's `metadata.json` without an fsync, for a run that is
    /// not a moved-in folder; [`sync_filesystem`] makes it durable.
    pub fn write_run_file_batched(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        debug_assert!(
            self.return_to.is_none(),
            "a moved-in folder is published alone"
        );
        let tmp = temp_sibling(&self.path.join(name));
        let result = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            fault::hit(Point::Write)?;
            io::Write::write_all(&mut file, bytes)?;
            drop(file);
            fault::hit(Point::Rename)?;
            fs::rename(&tmp, self.path.join(name))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Rename a staged run to `dest` (failing with `AlreadyExists` if
    /// anything is there), once [`sync_filesystem`] has made it durable. The
    /// caller fsyncs `dest`'s parent once for the batch.
    pub fn publish_batched(mut self, dest: &Path) -> io::Result<()> {
        fs::create_dir_all(parent_of(dest))?;
        fault::hit(Point::BeforePublishRename)?;
        rename_noreplace(&self.path, dest)?;
        self.published = true;
        fault::hit(Point::AfterPublishRename)?;
        Ok(())
    }
}

/// Make everything written on the filesystem holding `dir` durable with one
/// `syncfs(2)`: for a batch of staged runs, one flush instead of an fsync
/// per file.
pub fn sync_filesystem(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    fault::hit(Point::Fsync)?;
    let handle = File::open(dir)?;
    // SAFETY: syncfs takes a valid open descriptor and nothing else.
    if unsafe { libc::syncfs(handle.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The record of where a moved-in staging folder came from.
pub(crate) fn origin_record(staging: &Path) -> PathBuf {
    sidecar(staging, ORIGIN_SUFFIX)
}

/// A file beside a staging folder, named after it.
fn sidecar(staging: &Path, suffix: &str) -> PathBuf {
    let mut name = staging.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Undo [`Staging::write_run_file`] in a moved-in folder before it goes back:
/// the user's own file returns, or ours goes if they had none.
fn restore_run_files(folder: &Path) -> io::Result<()> {
    let name = crate::store::metadata::METADATA_FILE;
    // A temporary file of ours that a kill left mid-write goes too; only
    // ours: its name carries the staging folder's owner token.
    let token = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .and_then(|n| n.rsplit('.').nth(1).map(str::to_string));
    if let (Some(token), Ok(entries)) = (token, fs::read_dir(folder)) {
        let prefix = format!(".{name}.{token}.");
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            if file.starts_with(&prefix) && file.ends_with(".tmp") {
                fs::remove_file(entry.path())?;
            }
        }
    }
    let kept = sidecar(folder, &format!(".kept.{name}"));
    let ours = sidecar(folder, &format!(".ours.{name}"));
    if kept.symlink_metadata().is_ok() {
        fault::hit(Point::Rename)?;
        fs::rename(&kept, folder.join(name))?;
    } else if ours.symlink_metadata().is_ok() {
        match fs::remove_file(folder.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::remove_file(&ours)?;
    }
    Ok(())
}

/// Forget the set-aside files once the run is published.
fn drop_run_file_records(folder: &Path) {
    {
        let name = crate::store::metadata::METADATA_FILE;
        let _ = fs::remove_file(sidecar(folder, &format!(".ours.{name}")));
        // The user's own file was merged into the run's record when the run
        // was made; the original is kept beside the run's staging name no
        // longer, so it goes too.
        let _ = fs::remove_file(sidecar(folder, &format!(".kept.{name}")));
    }
}

/// Read the origin recorded for a staging folder, if it was moved in.
pub(crate) fn read_origin(staging: &Path) -> Option<PathBuf> {
    let bytes = fs::read(origin_record(staging)).ok()?;
    Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

/// A folder taken in by `register --move` and given back to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Where it came from.
    pub origin: PathBuf,
    /// `None` when it is back at `origin`; otherwise where it was kept
    /// because something else is at `origin` now.
    pub kept_at: Option<PathBuf>,
}

impl std::fmt::Display for Recovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kept_at {
            None => write!(
                f,
                "recovered {}: moved back after an interrupted register --move",
                self.origin.display()
            ),
            Some(kept) => write!(
                f,
                "recovered {}: kept at {} after an interrupted register --move, as its place is taken",
                self.origin.display(),
                kept.display()
            ),
        }
    }
}

/// Give a moved-in staging folder back: to `origin` when nothing is there
/// (no-replace rename), otherwise to `.artifactctl/recovered/`, where no
/// sweep goes. Never removes it. The origin record goes once the folder is
/// back, or moves along with it into `recovered/`.
pub(crate) fn give_back(folder: &Path, origin: &Path) -> io::Result<Recovered> {
    restore_run_files(folder)?;
    let record = origin_record(folder);
    if origin.is_absolute() && rename_noreplace(folder, origin).is_ok() {
        let _ = fsync_dir(parent_of(origin));
        let _ = fs::remove_file(&record);
        return Ok(Recovered {
            origin: origin.to_path_buf(),
            kept_at: None,
        });
    }
    let internal = folder
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| io::Error::other("a staging folder outside the store"))?;
    let store_dir = internal
        .parent()
        .ok_or_else(|| io::Error::other("a staging folder outside the store"))?;
    let kept_dir = super::ensure_internal_dir(store_dir, RECOVERED_DIR)?;
    let name = folder.file_name().unwrap_or_default();
    let kept = kept_dir.join(name);
    rename_noreplace(folder, &kept)?;
    let _ = fs::rename(&record, origin_record(&kept));
    let _ = fsync_dir(&kept_dir);
    Ok(Recovered {
        origin: origin.to_path_buf(),
        kept_at: Some(kept),
    })
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.published || self.path.symlink_metadata().is_err() {
            return;
        }
        if let Some(original) = &self.return_to {
            // Never delete the user's folder; if even parking it fails, the
            // origin record makes the next writer's sweep try again.
            let _ = give_back(&self.path, original);
            return;
        }
        // Through the one removal walker, so a mount made inside a staging
        // folder is not emptied; what it leaves, the next sweep retries.
        let _ = make_tree_writable(&self.path);
        let _ = remove_tree(&self.path);
    }
}

/// fsync every regular file and directory below `dir` (symlinks are not followed).
/// The fsyncs are issued from several threads at once: the filesystem then
/// commits them together instead of one journal commit each, which matters
/// for runs of many small files (a refresh's step folders and logs).
pub fn sync_tree(dir: &Path) -> io::Result<()> {
    let mut entries = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .contents_first(true)
    {
        let entry = entry.map_err(io::Error::other)?;
        let ft = entry.file_type();
        if ft.is_file() || ft.is_dir() {
            entries.push(entry.into_path());
        }
    }
    let next = AtomicUsize::new(0);
    let threads = entries.len().clamp(1, SYNC_THREADS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> io::Result<()> {
                    while let Some(path) = entries.get(next.fetch_add(1, Ordering::Relaxed)) {
                        fault::hit(Point::Fsync)?;
                        File::open(path)?.sync_all()?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err(io::Error::other("fsync thread panicked")))
        })
    })
}

/// fsyncs in flight at once in [`sync_tree`]; they wait on the disk, not the CPU.
pub(crate) const SYNC_THREADS: usize = 16;
