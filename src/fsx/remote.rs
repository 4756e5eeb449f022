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
