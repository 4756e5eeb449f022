//! Atomic replacement: write a temporary sibling, fsync, rename over the
//! target, fsync the parent. Also `latest` swaps and no-replace renames.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use super::fault::{self, Point};
use super::*;
use crate::store::layout::{LATEST, LATEST_POINTER};

pub(crate) fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", unique_suffix()))
}

pub(crate) fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    fault::hit(Point::Fsync)?;
    File::open(dir)?.sync_all()
}

/// Write `bytes` to `path` so that a reader sees the old content or the new,
/// never a mix, and the new content survives a power cut once this returns.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_write_with_mode(path, bytes, None)
}

/// [`atomic_write`], giving the new file `mode` (a read-only record stays
/// read-only when it is rewritten).
fn atomic_write_with_mode(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        fault::hit(Point::Write)?;
        file.write_all(bytes)?;
        if let Some(mode) = mode {
            fault::hit(Point::Chmod)?;
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        fault::hit(Point::Fsync)?;
        file.sync_all()?;
        drop(file);
        fault::hit(Point::Rename)?;
        fs::rename(&tmp, path)?;
        fsync_dir(parent_of(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Point `<dir>/latest` at `id`: a relative symlink swapped in by rename, or
/// the pointer file where the filesystem refuses symlinks.
pub fn set_latest(dir: &Path, id: &str) -> io::Result<()> {
    let link = dir.join(LATEST);
    let tmp = temp_sibling(&link);
    fault::hit(Point::Symlink)?;
    match symlink(id, &tmp) {
        Ok(()) => {
            if let Err(e) = fault::hit(Point::Rename).and_then(|()| fs::rename(&tmp, &link)) {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
            let pointer = dir.join(LATEST_POINTER);
            if pointer.symlink_metadata().is_ok() {
                // A stale pointer would contradict the link for older readers.
                atomic_write(&pointer, format!("{id}\n").as_bytes())?;
            }
            fsync_dir(dir)
        }
        Err(e) if symlinks_unsupported(&e) => {
            atomic_write(&dir.join(LATEST_POINTER), format!("{id}\n").as_bytes())
        }
        Err(e) => Err(e),
    }
}

pub(crate) fn symlinks_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EOPNOTSUPP))
}

/// Remove `<dir>/latest` and its pointer file, when no run is left to point at.
pub fn remove_latest(dir: &Path) -> io::Result<()> {
    for name in [LATEST, LATEST_POINTER] {
        let path = dir.join(name);
        if let Ok(meta) = path.symlink_metadata() {
            if !meta.is_dir() {
                fs::remove_file(&path)?;
            }
        }
    }
    fsync_dir(dir)
}

/// `rename(from, to)` that fails with `AlreadyExists` instead of replacing
/// `to`. On Linux this is one `renameat2(RENAME_NOREPLACE)` call, so two racing
/// publishers cannot both win; elsewhere it relies on the store lock.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    fault::hit(Point::Rename)?;
    #[cfg(target_os = "linux")]
    {
        let c_from = CString::new(from.as_os_str().as_bytes())?;
        let c_to = CString::new(to.as_os_str().as_bytes())?;
        // SAFETY: both pointers are valid NUL-terminated strings for the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                c_from.as_ptr(),
                libc::AT_FDCWD,
                c_to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOSYS) => {}
            _ => return Err(err),
        }
    }
    if to.symlink_metadata().is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists", to.display()),
        ));
    }
    fs::rename(from, to)
}

/// [`atomic_write`] into a directory that may be read-only (a promoted run):
/// the owner's write bit is lent to the directory for the rename and taken
/// back afterwards, whatever the outcome. A kill in between leaves the
/// folder writable (and maybe a temporary file); `verify` reports both and
/// `verify --repair` puts them right.
pub fn atomic_write_in_readonly_dir(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_of(path);
    // The new file keeps the old one's mode: pinning a read-only promoted
    // artifact must leave its metadata.json read-only.
    let file_mode = fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.permissions().mode() & 0o7777);
    let mode = fs::symlink_metadata(dir)?.permissions().mode();
    if mode & 0o200 != 0 {
        return atomic_write_with_mode(path, bytes, file_mode);
    }
    fault::hit(Point::Chmod)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o200))?;
    let written = atomic_write_with_mode(path, bytes, file_mode);
    let restored = fs::set_permissions(dir, fs::Permissions::from_mode(mode));
    written.and(restored)
}

/// Append `bytes` (whole lines) to `path` with one `write` on an `O_APPEND`
/// descriptor and fsync it, creating the file and its folder if needed. If
/// the file does not end in a newline (a torn last line from a crash or a
/// full disk), a newline goes first, so the torn line cannot swallow the new
/// one. A symlink, FIFO or anything but a regular file in `path`'s place is
/// refused, never written through.
pub fn append_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    fault::hit(Point::Mkdir)?;
    fs::create_dir_all(parent_of(path))?;
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a regular file; refusing to append to it",
                path.display()
            ),
        ));
    }
    let mut last = [0u8; 1];
    let torn =
        meta.len() > 0 && file.read_at(&mut last, meta.len() - 1).is_ok() && last[0] != b'\n';
    let mut text = Vec::with_capacity(bytes.len() + 1);
    if torn {
        text.push(b'\n');
    }
    text.extend_from_slice(bytes);
    fault::hit(Point::Write)?;
    file.write_all(&text)?;
    fault::hit(Point::Fsync)?;
    file.sync_data()
}

/// Create `path` with `bytes`, whole or not at all, failing with
/// `AlreadyExists` if anything is there (`artifactctl init` never
/// overwrites a config).
pub fn create_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        fault::hit(Point::Write)?;
        file.write_all(bytes)?;
        fault::hit(Point::Fsync)?;
        file.sync_all()?;
        drop(file);
        rename_noreplace(&tmp, path)?;
        fsync_dir(parent_of(path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
