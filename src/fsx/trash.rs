//! Taking things away: unlist with one rename into `.artifactctl/trash/`,
//! then remove without following links; read-only bits on and off.

use std::ffi::CString;
use std::fs::{self};
use std::io::{self};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::fault::{self, Point};
use super::*;
use crate::store::layout::TRASH_DIR;

/// Unlist `dir` with a single rename into `.artifactctl/trash/`, then remove
/// it. Readers never see a half-removed directory under its real name, and an
/// interrupted removal is finished by the next [`sweep_leftovers`].
/// [`remove_tree`] never follows symlinks (it unlinks them), never enters a
/// mount point and opens each level relative to its parent, so a symlink
/// swapped in during removal cannot redirect it (the CVE-2022-21658 class).
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

/// Remove a tree without following symlinks and without entering mount
/// points, restoring the owner's write bit on read-only (promoted)
/// directories as it goes. Removal is by directory descriptor through the
/// same walker `clear` uses ([`walk_tree`]): iterative, so any depth, with a
/// bounded number of descriptors open. Whatever could not be removed (a
/// mount point inside, a permission) is left and the first such failure is
/// returned, naming its path.
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
    let (Some(parent_path), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::other(format!(
            "{} has no parent folder; refusing to remove it",
            path.display()
        )));
    };
    let parent_path = if parent_path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent_path
    };
    let parent = match DirFd::open(parent_path) {
        Ok(parent) => parent,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let name = CString::new(name.as_bytes())?;
    let dir = match parent.open_dir(&name) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        // A link or a file where a folder was expected goes as itself.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
            return match parent.unlink_at(&name) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            };
        }
        Err(e) => return Err(e),
    };
    let first_error: Mutex<Option<io::Error>> = Mutex::new(None);
    let on_error = |p: &Path, e: &io::Error| {
        let mut slot = first_error.lock().expect("error slot");
        if slot.is_none() {
            *slot = Some(io::Error::new(e.kind(), format!("{}: {e}", p.display())));
        }
    };
    let walk = TreeWalk {
        remove: true,
        device: dir.probe()?.id.dev,
        keep: None,
        on_file: None,
        on_error: &on_error,
        on_progress: &|_| {},
    };
    let totals = walk_tree(&parent, &name, dir, path, &walk);
    match first_error.into_inner().expect("error slot") {
        Some(e) => Err(e),
        None if totals.left > 0 => Err(io::Error::other(format!(
            "{} could not be removed completely",
            path.display()
        ))),
        None => Ok(()),
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
