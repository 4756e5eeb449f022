//! Writing what a pull brings into a staging tree: files created fresh
//! (never through an existing name) and relative symlinks. The run is
//! published later by `publish_run`; these only fill its staging folder.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Component, Path};

/// Create `dir/rel` for writing, with its parent folders, refusing a name
/// that exists or a `rel` that is not a plain relative path: the caller has
/// validated it, and this checks again since a remote is untrusted.
pub fn create_in(dir: &Path, rel: &Path) -> io::Result<File> {
    check_rel(rel)?;
    let dest = dir.join(rel);
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    OpenOptions::new().write(true).create_new(true).open(dest)
}

/// A symlink `dir/rel` → `target` (already checked to stay inside).
pub fn symlink_in(dir: &Path, rel: &Path, target: &Path) -> io::Result<()> {
    check_rel(rel)?;
    let dest = dir.join(rel);
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    std::os::unix::fs::symlink(target, dest)
}

/// Bring the local file `src` to `dir/rel` by hard link, reflink or copy.
pub fn share_in(dir: &Path, rel: &Path, src: &Path) -> io::Result<u64> {
    check_rel(rel)?;
    let dest = dir.join(rel);
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent)?;
    }
    super::transfer::share_or_copy(src, &dest)
}

/// Remove `dir/rel` if it is there (a local copy that failed its check).
pub fn discard_in(dir: &Path, rel: &Path) -> io::Result<()> {
    check_rel(rel)?;
    match fs::remove_file(dir.join(rel)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn check_rel(rel: &Path) -> io::Result<()> {
    let plain =
        rel.components().count() > 0 && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if plain {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a plain relative path", rel.display()),
        ))
    }
}

// ---- a `file://` remote on a shared mount ----
//
// Object stores give create-only puts and compare-and-swap; a shared
// filesystem gives rename without replace, which is enough for both: an
// object is written to a unique temporary name beside its final one and
// renamed there with RENAME_NOREPLACE, so exactly one of two racing writers
// wins and a reader never sees half an object.

/// Create `path` with `bytes` unless it exists: `Ok(false)` when it does.
pub fn create_object(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    match super::atomic::create_atomically(path, bytes) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Copy the local file `src` to `path` unless it exists (`Ok(false)`),
/// checking on the bytes copied that their BLAKE3 is `expected`: a remote
/// never holds content under the wrong name.
pub fn create_object_from(
    path: &Path,
    src: &Path,
    expected: &str,
    replace: bool,
) -> io::Result<bool> {
    use std::io::{Read, Write};
    if !replace && path.symlink_metadata().is_ok() {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let tmp = super::atomic::temp_sibling(path);
    let result = (|| {
        let mut from = File::open(src)?;
        let mut to = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = from.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            to.write_all(&buf[..n])?;
        }
        let actual = hasher.finalize().to_hex().to_string();
        if actual != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} does not match its manifest (BLAKE3 {actual}, recorded {expected})",
                    src.display()
                ),
            ));
        }
        to.sync_all()?;
        drop(to);
        if replace {
            fs::rename(&tmp, path)?;
        } else {
            super::atomic::rename_noreplace(&tmp, path)?;
        }
        super::atomic::fsync_dir(super::atomic::parent_of(path))
    })();
    match result {
        Ok(()) => Ok(true),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            if e.kind() == io::ErrorKind::AlreadyExists {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// Replace `path` with `bytes` atomically (a blob rewritten to refresh its
/// time: the content is the same).
pub fn replace_object(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    super::atomic::atomic_write(path, bytes)
}

/// Remove the object `path` (garbage collection); absent is fine.
pub fn remove_object(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
