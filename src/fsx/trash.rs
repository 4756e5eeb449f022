//! Taking things away: unlist with one rename into `.artifactctl/trash/`,
//! then remove without following links; read-only bits on and off.

use std::fs::{self};
use std::io::{self};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::fault::{self, Point};
use super::*;
use crate::store::layout::TRASH_DIR;

/// Unlist `dir` with a single rename into `.artifactctl/trash/`, then remove
/// it. Readers never see a half-removed directory under its real name, and an
/// interrupted removal is finished by the next [`sweep_leftovers`].
/// `std::fs::remove_dir_all` never follows symlinks (it unlinks them) and
/// opens each level relative to its parent, so a symlink swapped in during
/// removal cannot redirect it (CVE-2022-21658 is fixed in std since 1.58.1).
pub fn discard_dir(store_dir: &Path, dir: &Path) -> io::Result<()> {
    let doomed = unlist_dir(store_dir, dir)?;
    fsync_dir(parent_of(dir))?;
    remove_tree(&doomed)
}

/// The first half of [`discard_dir`], for callers removing many directories:
/// unlist `dir` with one rename into `.artifactctl/trash/` and return where it
/// went, for [`remove_tree`] to finish. The caller fsyncs `dir`'s parent once
/// per batch. A directory on another filesystem (a separately mounted store
/// folder) cannot be moved and is returned as it is, to be removed in place.
pub fn unlist_dir(store_dir: &Path, dir: &Path) -> io::Result<PathBuf> {
    let trash = super::ensure_internal_dir(store_dir, TRASH_DIR)?;
    super::owner::claim(store_dir)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = trash.join(format!("{name}.{}", unique_suffix()));
    fault::hit(Point::Rename)?;
    match fs::rename(dir, &target) {
        Ok(()) => Ok(target),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => Ok(dir.to_path_buf()),
        // Moving a directory rewrites its `..`, which needs write permission on
        // it: a read-only (promoted) run gets its owner write bit back first.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let mode = fs::symlink_metadata(dir)?.permissions().mode();
            if mode & 0o200 != 0 {
                return Err(e);
            }
            fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o200))?;
            fs::rename(dir, &target)?;
            Ok(target)
        }
        Err(e) => Err(e),
    }
}

/// Remove a tree without following symlinks, first restoring the owner's
/// write bit on directories so read-only (promoted) trees can go.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    if fault::armed(Point::MidRemoval) {
        // Take one file first, so the fault lands in a half-removed tree.
        if let Some(file) = walkdir::WalkDir::new(path)
            .into_iter()
            .flatten()
            .find(|e| e.file_type().is_file())
        {
            fs::remove_file(file.path())?;
        }
        fault::hit(Point::MidRemoval)?;
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            make_tree_writable(path)?;
            fs::remove_dir_all(path)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Give the owner write permission on every directory below `path`.
pub fn make_tree_writable(path: &Path) -> io::Result<()> {
    for entry in walkdir::WalkDir::new(path).follow_links(false) {
        let Ok(entry) = entry else { continue };
        if entry.file_type().is_dir() {
            let meta = entry.metadata().map_err(io::Error::other)?;
            let mut perms = meta.permissions();
            perms.set_mode(perms.mode() | 0o700);
            fault::hit(Point::Chmod)?;
            fs::set_permissions(entry.path(), perms)?;
        }
    }
    Ok(())
}

/// Make every file and directory below `path` read-only (files 0444 plus
/// their execute bits, directories 0555). Symlinks are left alone.
pub fn make_tree_readonly(path: &Path) -> io::Result<()> {
    for entry in walkdir::WalkDir::new(path)
        .follow_links(false)
        .contents_first(true)
    {
        let entry = entry.map_err(io::Error::other)?;
        let ft = entry.file_type();
        if ft.is_symlink() {
            continue;
        }
        let meta = entry.metadata().map_err(io::Error::other)?;
        let mode = meta.permissions().mode();
        let ro = if ft.is_dir() {
            0o555
        } else {
            (mode & 0o111) | 0o444
        };
        fault::hit(Point::Chmod)?;
        fs::set_permissions(entry.path(), fs::Permissions::from_mode(ro))?;
    }
    Ok(())
}

/// Remove a temporary file that an interrupted [`atomic_write`] left beside
/// its target, lending the owner's write bit to a read-only folder for the
/// unlink. Refuses anything that is not such a file: this is a repair, not a
/// way to delete.
pub fn remove_stray_temp(path: &Path) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let meta = fs::symlink_metadata(path)?;
    if !(name.starts_with('.') && name.ends_with(".tmp") && meta.is_file()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a temporary file of artifactctl's",
                path.display()
            ),
        ));
    }
    let dir = parent_of(path);
    let mode = fs::symlink_metadata(dir)?.permissions().mode();
    if mode & 0o200 != 0 {
        return fs::remove_file(path);
    }
    fault::hit(Point::Chmod)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o200))?;
    let removed = fs::remove_file(path);
    let restored = fs::set_permissions(dir, fs::Permissions::from_mode(mode));
    removed.and(restored)
}
