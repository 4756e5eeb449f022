//! Runs assembled out of sight under `.artifactctl/staging/` and published
//! with one no-replace rename; `sync_tree` makes them durable first.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::fault::{self, Point};
use super::*;
use crate::store::layout::{INTERNAL_DIR, STAGING_DIR};

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
        let parent = store_dir.join(INTERNAL_DIR).join(STAGING_DIR);
        fault::hit(Point::Mkdir)?;
        fs::create_dir_all(&parent)?;
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
    pub fn adopt(store_dir: &Path, label: &str, source: &Path) -> io::Result<Staging> {
        let mut staging = Staging::reserve(store_dir, label)?;
        fault::hit(Point::Rename)?;
        fs::rename(source, &staging.path)?;
        staging.return_to = Some(source.to_path_buf());
        Ok(staging)
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
        if let Some(staging_parent) = self.path.parent() {
            let _ = fsync_dir(staging_parent);
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.published || self.path.symlink_metadata().is_err() {
            return;
        }
        if let Some(original) = &self.return_to {
            if fs::rename(&self.path, original).is_err() {
                // Never delete the user's folder: park it where no sweep goes.
                if let Some(internal) = self.path.parent().and_then(Path::parent) {
                    let kept = internal.join("recovered");
                    let name = self.path.file_name().unwrap_or_default().to_os_string();
                    if fs::create_dir_all(&kept).is_ok() {
                        let _ = fs::rename(&self.path, kept.join(name));
                    }
                }
            }
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
