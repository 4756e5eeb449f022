//! The only module that mutates the store. Everything that others read is
//! published here, atomically:
//!
//! - [`atomic_write`]: write to a temporary sibling, fsync, rename, fsync the
//!   parent directory;
//! - [`set_latest`]: swap a `latest` symlink (or its pointer file where
//!   symlinks are unavailable) by renaming a temporary link over it;
//! - [`Staging`]: assemble a directory out of sight and publish it with a
//!   no-replace rename, so a reader sees nothing or the whole thing;
//! - [`StoreLock`]: the store-wide writer lock;
//! - [`discard_dir`]: unlist a directory with one rename, then remove it
//!   without ever following a symlink;
//! - [`DirFd`] and [`walk_tree`]: count or remove a tree by directory
//!   descriptors, so a symlink swapped in after a scan is never followed.
//!
//! A crash at any instant leaves at worst a temporary file, a staging folder
//! or a trash folder, all under `.artifactctl/` or hidden by a leading dot,
//! and all swept by the next writer ([`sweep_leftovers`]).

use std::ffi::{CStr, CString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Folder inside the store that holds the lock, staging, trash and journal.
pub const INTERNAL_DIR: &str = ".artifactctl";
pub const LATEST: &str = "latest";
/// Seed 002's fallback where symlinks cannot be made.
pub const LATEST_POINTER: &str = "latest_pointer.txt";

const STAGING_DIR: &str = "staging";
const TRASH_DIR: &str = "trash";
const LOCK_FILE: &str = "lock";

/// A name no other process or thread will pick: `<host>-<pid>.<nonce>`. The
/// owner part lets a later writer tell whether the process that made a
/// staging or trash folder is still running.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{}.{:x}{:x}", host_tag(), std::process::id(), nanos, n)
}

/// This machine's tag in owner names, a short hash of the host name: a store
/// shared over the network must not take another machine's live writer for a
/// dead one just because the pid is unknown here.
fn host_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let name = crate::journal::hostname().unwrap_or_default();
        // FNV-1a: stable across versions and platforms, unlike std's hasher.
        let hash = name.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ b as u32).wrapping_mul(0x0100_0193)
        });
        format!("{hash:08x}")
    })
}

/// How long a staging or trash folder made on another machine is left alone:
/// its owner cannot be asked whether it is alive.
pub const FOREIGN_GRACE: Duration = Duration::from_secs(3600);

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", unique_suffix()))
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Write `bytes` to `path` so that a reader sees the old content or the new,
/// never a mix, and the new content survives a power cut once this returns.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
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
    match symlink(id, &tmp) {
        Ok(()) => {
            if let Err(e) = fs::rename(&tmp, &link) {
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

fn symlinks_unsupported(e: &io::Error) -> bool {
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

/// The store-wide writer lock: an exclusive `flock` on `.artifactctl/lock`,
/// released when dropped (or when the process dies, so no lock goes stale).
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    pub fn acquire(store_dir: &Path) -> io::Result<StoreLock> {
        let internal = store_dir.join(INTERNAL_DIR);
        fs::create_dir_all(&internal)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(internal.join(LOCK_FILE))?;
        flock(&file, libc::LOCK_EX)?;
        Ok(StoreLock { _file: file })
    }

    /// True when some live process holds the lock right now.
    pub fn is_held(store_dir: &Path) -> bool {
        let path = store_dir.join(INTERNAL_DIR).join(LOCK_FILE);
        let Ok(file) = File::open(path) else {
            return false;
        };
        match flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
            Ok(()) => false,
            Err(e) => e.raw_os_error() == Some(libc::EWOULDBLOCK),
        }
    }
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    loop {
        // SAFETY: the descriptor is owned by `file` and stays open for the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

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
        fs::create_dir(&staging.path)?;
        Ok(staging)
    }

    /// Reserve a staging name without creating it, for callers that rename a
    /// finished directory in.
    pub fn reserve(store_dir: &Path, label: &str) -> io::Result<Staging> {
        let parent = store_dir.join(INTERNAL_DIR).join(STAGING_DIR);
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
        rename_noreplace(&self.path, dest)?;
        self.published = true;
        fsync_dir(parent)?;
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
        let _ = make_tree_writable(&self.path);
        let _ = fs::remove_dir_all(&self.path);
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
const SYNC_THREADS: usize = 16;

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
    let trash = store_dir.join(INTERNAL_DIR).join(TRASH_DIR);
    fs::create_dir_all(&trash)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = trash.join(format!("{name}.{}", unique_suffix()));
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

/// [`atomic_write`] into a directory that may be read-only (a promoted run):
/// the owner's write bit is lent to the directory for the rename and taken
/// back afterwards, whatever the outcome.
pub fn atomic_write_in_readonly_dir(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_of(path);
    let mode = fs::symlink_metadata(dir)?.permissions().mode();
    if mode & 0o200 != 0 {
        return atomic_write(path, bytes);
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o200))?;
    let written = atomic_write(path, bytes);
    let restored = fs::set_permissions(dir, fs::Permissions::from_mode(mode));
    written.and(restored)
}

/// Remove a tree without following symlinks, first restoring the owner's
/// write bit on directories so read-only (promoted) trees can go.
pub fn remove_tree(path: &Path) -> io::Result<()> {
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
        fs::set_permissions(entry.path(), fs::Permissions::from_mode(ro))?;
    }
    Ok(())
}

/// Leftovers of a writer that died: a staging or trash folder whose owning
/// process on this machine is gone, or one made on another machine more than
/// [`FOREIGN_GRACE`] ago. Names carry the owner (see [`unique_suffix`]).
#[derive(Debug, Clone)]
pub struct Leftover {
    pub path: PathBuf,
    pub age: Duration,
    pub kind: &'static str,
}

pub fn find_leftovers(store_dir: &Path) -> Vec<Leftover> {
    let mut found = Vec::new();
    let now = SystemTime::now();
    for (sub, kind) in [(STAGING_DIR, "staging"), (TRASH_DIR, "trash")] {
        let Ok(entries) = fs::read_dir(store_dir.join(INTERNAL_DIR).join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            match owner_of(&name) {
                Owner::Alive => continue,
                Owner::Elsewhere if age < FOREIGN_GRACE => continue,
                Owner::Elsewhere | Owner::Dead => {}
            }
            found.push(Leftover {
                path: entry.path(),
                age,
                kind,
            });
        }
    }
    found
}

/// Remove what dead writers left behind. Called by every writer once it holds
/// the store lock.
pub fn sweep_leftovers(store_dir: &Path) -> usize {
    let leftovers = find_leftovers(store_dir);
    let mut removed = 0;
    for leftover in &leftovers {
        if remove_tree(&leftover.path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Labels of the staging folders whose writer is still running, so a writer
/// can avoid an id another one is assembling (refresh reserves its id early).
pub fn live_staging_labels(store_dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(store_dir.join(INTERNAL_DIR).join(STAGING_DIR)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| owner_of(name) != Owner::Dead)
        .filter_map(|name| {
            let mut parts = name.rsplitn(3, '.');
            let (_nonce, _pid) = (parts.next(), parts.next());
            parts.next().map(str::to_string)
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Alive,
    Dead,
    /// Made on another machine: liveness unknown.
    Elsewhere,
}

/// The owner of `label.<host>-<pid>.<nonce>` (or the older
/// `label.<pid>.<nonce>`, taken as this machine's).
fn owner_of(name: &str) -> Owner {
    let mut parts = name.rsplit('.');
    let _nonce = parts.next();
    let Some(owner) = parts.next() else {
        return Owner::Dead;
    };
    let (host, pid) = match owner.split_once('-') {
        Some((host, pid)) => (Some(host), pid),
        None => (None, owner),
    };
    let Ok(pid) = pid.parse::<i32>() else {
        return Owner::Dead;
    };
    if host.is_some_and(|h| h != host_tag()) {
        return Owner::Elsewhere;
    }
    if pid == std::process::id() as i32 {
        return Owner::Alive;
    }
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    if rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
        Owner::Alive
    } else {
        Owner::Dead
    }
}

/// Copy one file, sharing its blocks where the filesystem can (a reflink via
/// `FICLONE`), and falling back to a byte copy (`copy_file_range` in std).
pub fn clone_or_copy(src: &Path, dst: &Path) -> io::Result<u64> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let input = File::open(src)?;
        let output = OpenOptions::new().write(true).create_new(true).open(dst)?;
        // FICLONE = _IOW(0x94, 9, int)
        const FICLONE: libc::c_ulong = 0x4004_9409;
        // SAFETY: both descriptors are open for the duration of the call.
        let rc = unsafe { libc::ioctl(output.as_raw_fd(), FICLONE as _, input.as_raw_fd()) };
        if rc == 0 {
            let meta = input.metadata()?;
            output.set_permissions(meta.permissions())?;
            return Ok(meta.len());
        }
        drop(output);
        fs::remove_file(dst)?;
    }
    fs::copy(src, dst)
}

/// Bring `src` into a staging tree at `dst` without copying bytes where
/// possible: a reflink, else a hard link when `src` is already read-only (so
/// sharing it cannot let one side change the other), else a copy.
pub fn share_or_copy(src: &Path, dst: &Path) -> io::Result<u64> {
    let meta = src.symlink_metadata()?;
    if meta.permissions().mode() & 0o222 == 0 && fs::hard_link(src, dst).is_ok() {
        return Ok(meta.len());
    }
    clone_or_copy(src, dst)
}

/// Copy the tree `src` into the existing empty directory `dst`, files in
/// parallel. Symlinks are recreated as links, never followed, and only when
/// they are relative and stay inside `src`; anything else is refused, since a
/// run must not reach outside itself. `skip` names top-level entries to leave
/// out. Returns the bytes copied.
pub fn copy_tree(
    src: &Path,
    dst: &Path,
    skip: &[&str],
    on_file: &(dyn Fn(u64) + Sync),
) -> io::Result<u64> {
    transfer_tree(src, dst, skip, on_file, clone_or_copy)
}

/// Like [`copy_tree`], but files are brought in with [`share_or_copy`]: a
/// reflink, or a hard link of a read-only file, so no bytes are copied where
/// the filesystem allows (refresh reusing a step's recorded outputs).
pub fn share_tree(src: &Path, dst: &Path) -> io::Result<u64> {
    transfer_tree(src, dst, &[], &|_| {}, share_or_copy)
}

fn transfer_tree(
    src: &Path,
    dst: &Path,
    skip: &[&str],
    on_file: &(dyn Fn(u64) + Sync),
    transfer: fn(&Path, &Path) -> io::Result<u64>,
) -> io::Result<u64> {
    use rayon::prelude::*;
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(src)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(io::Error::other)?;
        if entry.depth() == 0 {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(src)
            .expect("walkdir stays below its root");
        if entry.depth() == 1 && skip.iter().any(|s| rel == Path::new(s)) {
            continue;
        }
        let out = dst.join(rel);
        let ft = entry.file_type();
        if ft.is_dir() {
            fs::create_dir(&out)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(entry.path())?;
            if !link_stays_inside(rel, &target) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is a symlink to {}, outside the folder; artifactctl never follows links out of a run: copy the file in or remove the link",
                        entry.path().display(),
                        target.display()
                    ),
                ));
            }
            symlink(&target, &out)?;
        } else if ft.is_file() {
            files.push((entry.path().to_path_buf(), out));
        }
    }
    files
        .par_iter()
        .map(|(from, to)| {
            let n = transfer(from, to).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot copy {}: {e}", from.display()))
            })?;
            on_file(n);
            Ok(n)
        })
        .sum()
}

/// Does a link at `rel` (relative to a tree's root) pointing to `target`
/// resolve inside that tree, judged on the text alone?
pub fn link_stays_inside(rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = rel.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            std::path::Component::ParentDir => depth -= 1,
            std::path::Component::Normal(_) => depth += 1,
            std::path::Component::CurDir => {}
            _ => return false,
        }
        if depth < 0 {
            return false;
        }
    }
    true
}

/// A directory held open by descriptor, for walks and removals that must not
/// be redirected by a symlink swapped in after the scan (the CVE-2022-21658
/// class): every child is opened relative to its parent's descriptor with
/// `O_NOFOLLOW | O_DIRECTORY`, and every removal is an `unlinkat` on the
/// parent's descriptor, so no path is ever resolved by name again.
#[derive(Debug)]
pub struct DirFd {
    fd: std::os::fd::OwnedFd,
}

/// What a directory entry is, judged without following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Fifos, sockets and devices: removed like files, never opened.
    Other,
}

/// One name read from a [`DirFd`]; `kind` is `None` when the filesystem does
/// not report types in `readdir` (then ask [`DirFd::kind_at`]).
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub name: CString,
    pub kind: Option<EntryKind>,
    /// Inode number, to work through big folders in inode order.
    pub ino: u64,
}

impl RawEntry {
    pub fn name_os(&self) -> &std::ffi::OsStr {
        std::ffi::OsStr::from_bytes(self.name.to_bytes())
    }
}

/// Device and inode of an open directory, to tell filesystems and folders apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirId {
    pub dev: u64,
    pub ino: u64,
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn kind_of_mode(mode: libc::mode_t) -> EntryKind {
    match mode & libc::S_IFMT {
        libc::S_IFREG => EntryKind::File,
        libc::S_IFDIR => EntryKind::Dir,
        libc::S_IFLNK => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}

const DIR_OPEN_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

impl DirFd {
    /// Open `path` as a directory; its last component must not be a symlink.
    pub fn open(path: &Path) -> io::Result<DirFd> {
        use std::os::fd::FromRawFd;
        let c_path = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: a valid NUL-terminated path; the result is checked.
        let fd = cvt(unsafe { libc::open(c_path.as_ptr(), DIR_OPEN_FLAGS) })?;
        // SAFETY: `fd` was just opened and is owned by nobody else.
        Ok(DirFd {
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
        })
    }

    fn raw(&self) -> libc::c_int {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    /// Open the child directory `name`; fails (`ELOOP`/`ENOTDIR`) when it is
    /// a symlink or not a directory, instead of following it.
    pub fn open_dir(&self, name: &CStr) -> io::Result<DirFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: valid descriptor and NUL-terminated name; result checked.
        let fd = cvt(unsafe { libc::openat(self.raw(), name.as_ptr(), DIR_OPEN_FLAGS) })?;
        // SAFETY: `fd` was just opened and is owned by nobody else.
        Ok(DirFd {
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn id(&self) -> io::Result<DirId> {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `st` is written by fstat before it is read.
        cvt(unsafe { libc::fstat(self.raw(), st.as_mut_ptr()) })?;
        let st = unsafe { st.assume_init() };
        Ok(DirId {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    fn lstat_at(&self, name: &CStr) -> io::Result<libc::stat> {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: valid descriptor and name; `st` is written before it is read.
        cvt(unsafe {
            libc::fstatat(
                self.raw(),
                name.as_ptr(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        Ok(unsafe { st.assume_init() })
    }

    /// Kind and size of `name` here, without following a symlink.
    pub fn stat_at(&self, name: &CStr) -> io::Result<(EntryKind, u64)> {
        let st = self.lstat_at(name)?;
        Ok((kind_of_mode(st.st_mode), st.st_size as u64))
    }

    pub fn kind_at(&self, name: &CStr) -> io::Result<EntryKind> {
        self.stat_at(name).map(|(kind, _)| kind)
    }

    /// Every name in the directory except `.` and `..`. Read with
    /// `getdents64` straight from this descriptor (no `fdopendir`, which
    /// would cost a reopen, an `fcntl` and an `fstat` per folder); call it
    /// once per `DirFd`, since it consumes the read offset.
    pub fn entries(&self) -> io::Result<Vec<RawEntry>> {
        // Header of `struct linux_dirent64`: d_ino u64, d_off i64, d_reclen
        // u16, d_type u8, then the NUL-terminated name.
        const NAME_OFFSET: usize = 19;
        let mut buf = vec![0u8; 32 * 1024];
        let mut out = Vec::new();
        loop {
            // SAFETY: the buffer is valid for `buf.len()` bytes for the call.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    self.raw(),
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            if n == 0 {
                return Ok(out);
            }
            let mut at = 0usize;
            while at < n as usize {
                let ino = u64::from_ne_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
                let reclen = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
                let d_type = buf[at + 18];
                let record = &buf[at + NAME_OFFSET..at + reclen];
                let len = record.iter().position(|&b| b == 0).unwrap_or(record.len());
                let name = &record[..len];
                at += reclen;
                if name == b"." || name == b".." {
                    continue;
                }
                let kind = match d_type {
                    libc::DT_REG => Some(EntryKind::File),
                    libc::DT_DIR => Some(EntryKind::Dir),
                    libc::DT_LNK => Some(EntryKind::Symlink),
                    libc::DT_UNKNOWN => None,
                    _ => Some(EntryKind::Other),
                };
                out.push(RawEntry {
                    name: CString::new(name).expect("no NUL inside a name"),
                    kind,
                    ino,
                });
            }
        }
    }

    /// Remove the non-directory `name` here (a symlink goes as a link).
    pub fn unlink_at(&self, name: &CStr) -> io::Result<()> {
        // SAFETY: valid descriptor and name.
        cvt(unsafe { libc::unlinkat(self.raw(), name.as_ptr(), 0) }).map(drop)
    }

    /// Remove the empty directory `name` here.
    pub fn remove_dir_at(&self, name: &CStr) -> io::Result<()> {
        // SAFETY: valid descriptor and name.
        cvt(unsafe { libc::unlinkat(self.raw(), name.as_ptr(), libc::AT_REMOVEDIR) }).map(drop)
    }

    /// Give the owner full rights on this directory (a read-only folder
    /// inside a tree being removed), by descriptor so no link is followed.
    pub fn allow_owner_write(&self) -> io::Result<()> {
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `st` is written by fstat before it is read.
        cvt(unsafe { libc::fstat(self.raw(), st.as_mut_ptr()) })?;
        let mode = unsafe { st.assume_init() }.st_mode & 0o7777;
        // SAFETY: valid descriptor.
        cvt(unsafe { libc::fchmod(self.raw(), mode | 0o700) }).map(drop)
    }

    /// Run a removal in this directory; if the directory's permissions refuse
    /// it, restore the owner's write bit once and retry.
    fn with_write_retry(&self, op: impl Fn() -> io::Result<()>) -> io::Result<()> {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                if self.allow_owner_write().is_ok() {
                    op()
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }
}

/// Says whether an entry (by path) must stay.
pub type KeepFilter<'a> = &'a (dyn Fn(&Path, EntryKind) -> bool + Sync);
/// Told each file (or link) with its size.
pub type FileListener<'a> = &'a (dyn Fn(&Path, u64) + Sync);

/// Callbacks and limits for [`walk_tree`].
pub struct TreeWalk<'a> {
    /// Remove what is walked; `false` only counts (a dry run).
    pub remove: bool,
    /// Never enter a directory on another device than this one.
    pub device: u64,
    /// Entries (by path) to leave in place, with their parents.
    pub keep: Option<KeepFilter<'a>>,
    /// Told each file (or link) counted or removed, with its size.
    pub on_file: Option<FileListener<'a>>,
    /// Told each entry that could not be read or removed; the walk goes on.
    pub on_error: &'a (dyn Fn(&Path, &io::Error) + Sync),
    /// Told how many more files were done, in batches.
    pub on_progress: &'a (dyn Fn(u64) + Sync),
}

/// What [`walk_tree`] counted or removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeTotals {
    /// Non-directories (files, symlinks, others).
    pub files: u64,
    /// Sizes of regular files.
    pub bytes: u64,
    /// Entries left in place: kept, skipped or failed.
    pub left: u64,
}

impl std::ops::Add for TreeTotals {
    type Output = TreeTotals;
    fn add(self, o: TreeTotals) -> TreeTotals {
        TreeTotals {
            files: self.files + o.files,
            bytes: self.bytes + o.bytes,
            left: self.left + o.left,
        }
    }
}

/// Files per parallel batch inside one directory.
const WALK_BATCH: usize = 256;

/// Count, or remove, the directory `name` in `parent` and everything below it,
/// `dir` being that directory already opened (the caller has vetted it).
/// Symlinks are never followed: a link is counted and unlinked as a link,
/// wherever it points. Subdirectories are opened by descriptor, so a symlink
/// swapped in after the scan fails to open instead of being followed; other
/// devices are not entered. Work is spread over rayon's threads. The
/// directory itself is removed only when nothing was left inside.
pub fn walk_tree(
    parent: &DirFd,
    name: &CStr,
    dir: DirFd,
    path: &Path,
    walk: &TreeWalk,
) -> TreeTotals {
    let mut totals = walk_contents(&dir, path, walk);
    drop(dir);
    if walk.remove && totals.left == 0 {
        if let Err(e) = parent.with_write_retry(|| parent.remove_dir_at(name)) {
            (walk.on_error)(path, &e);
            totals.left += 1;
        }
    }
    totals
}

fn walk_contents(dir: &DirFd, path: &Path, walk: &TreeWalk) -> TreeTotals {
    use rayon::prelude::*;
    let entries = match dir.entries() {
        Ok(entries) => entries,
        Err(e) => {
            (walk.on_error)(path, &e);
            return TreeTotals {
                left: 1,
                ..TreeTotals::default()
            };
        }
    };
    let (subdirs, mut others): (Vec<RawEntry>, Vec<RawEntry>) = entries
        .into_iter()
        .partition(|e| e.kind == Some(EntryKind::Dir));
    // Directory order is hash order on ext4; inode order touches each inode
    // table block once instead of at random (what `rm -rf` does too).
    others.sort_unstable_by_key(|e| e.ino);
    let file_totals = others
        .par_chunks(WALK_BATCH)
        .map(|batch| {
            let mut totals = TreeTotals::default();
            for entry in batch {
                totals = totals + walk_entry(dir, path, entry, walk);
            }
            (walk.on_progress)(totals.files);
            totals
        })
        .reduce(TreeTotals::default, |a, b| a + b);
    let dir_totals = subdirs
        .par_iter()
        .map(|entry| walk_subdir(dir, path, &entry.name, walk))
        .reduce(TreeTotals::default, |a, b| a + b);
    file_totals + dir_totals
}

fn walk_entry(dir: &DirFd, path: &Path, entry: &RawEntry, walk: &TreeWalk) -> TreeTotals {
    let left = TreeTotals {
        left: 1,
        ..TreeTotals::default()
    };
    let child_path = || path.join(entry.name_os());
    let (kind, size) = match entry.kind {
        Some(EntryKind::File) | None => match dir.stat_at(&entry.name) {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return TreeTotals::default(),
            Err(e) => {
                (walk.on_error)(&child_path(), &e);
                return left;
            }
        },
        Some(kind) => (kind, 0),
    };
    if kind == EntryKind::Dir {
        // Reported as unknown by readdir; it is a directory after all.
        return walk_subdir(dir, path, &entry.name, walk);
    }
    let bytes = if kind == EntryKind::File { size } else { 0 };
    let named = (walk.keep.is_some() || walk.on_file.is_some()).then(child_path);
    if let (Some(keep), Some(p)) = (walk.keep, &named) {
        if keep(p, kind) {
            return left;
        }
    }
    if walk.remove {
        match dir.with_write_retry(|| dir.unlink_at(&entry.name)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return TreeTotals::default(),
            Err(e) => {
                (walk.on_error)(&child_path(), &e);
                return left;
            }
        }
    }
    if let (Some(on_file), Some(p)) = (walk.on_file, &named) {
        on_file(p, bytes);
    }
    TreeTotals {
        files: 1,
        bytes,
        left: 0,
    }
}

fn walk_subdir(parent: &DirFd, path: &Path, name: &CStr, walk: &TreeWalk) -> TreeTotals {
    let left = TreeTotals {
        left: 1,
        ..TreeTotals::default()
    };
    let child_path = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
    if let Some(keep) = walk.keep {
        if keep(&child_path, EntryKind::Dir) {
            return left;
        }
    }
    let child = match parent.open_dir(name) {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return TreeTotals::default(),
        Err(e) => {
            (walk.on_error)(&child_path, &e);
            return left;
        }
    };
    match child.id() {
        Ok(id) if id.dev == walk.device => walk_tree(parent, name, child, &child_path, walk),
        Ok(_) => {
            (walk.on_error)(
                &child_path,
                &io::Error::other("is on another filesystem, which clear does not cross"),
            );
            left
        }
        Err(e) => {
            (walk.on_error)(&child_path, &e);
            left
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.json");
        atomic_write(&path, b"one").unwrap();
        atomic_write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn set_latest_swaps_the_link() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("a")).unwrap();
        fs::create_dir(dir.path().join("b")).unwrap();
        set_latest(dir.path(), "a").unwrap();
        set_latest(dir.path(), "b").unwrap();
        assert_eq!(
            fs::read_link(dir.path().join(LATEST)).unwrap(),
            Path::new("b")
        );
    }

    #[test]
    fn rename_noreplace_refuses_an_existing_target() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::create_dir(&a).unwrap();
        fs::create_dir(&b).unwrap();
        let err = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert!(a.exists());
    }

    #[test]
    fn unpublished_staging_is_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let staging = Staging::create(dir.path(), "run").unwrap();
            fs::write(staging.path().join("f"), b"x").unwrap();
            staging.path().to_path_buf()
        };
        assert!(!path.exists());
    }

    #[test]
    fn leftovers_of_dead_writers_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join(INTERNAL_DIR).join(STAGING_DIR);
        fs::create_dir_all(staging.join("run.999999999.abc")).unwrap();
        fs::create_dir_all(staging.join(format!("run.{}.abc", std::process::id()))).unwrap();
        let found = find_leftovers(dir.path());
        assert_eq!(found.len(), 1);
        assert!(found[0].path.ends_with("run.999999999.abc"));
        assert_eq!(sweep_leftovers(dir.path()), 1);
    }

    #[test]
    fn links_inside_and_outside() {
        assert!(link_stays_inside(
            Path::new("checkpoints/latest.pt"),
            Path::new("best.pt")
        ));
        assert!(link_stays_inside(Path::new("a/b/c"), Path::new("../x")));
        assert!(!link_stays_inside(Path::new("a"), Path::new("../x")));
        assert!(!link_stays_inside(Path::new("a/b"), Path::new("../../x")));
        assert!(!link_stays_inside(Path::new("a"), Path::new("/etc/passwd")));
    }

    #[test]
    fn share_tree_links_read_only_files_and_keeps_links() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/data.bin"), b"data").unwrap();
        symlink("data.bin", src.join("sub/alias")).unwrap();
        make_tree_readonly(&src).unwrap();
        let dst = dir.path().join("dst");
        fs::create_dir(&dst).unwrap();
        assert_eq!(share_tree(&src, &dst).unwrap(), 4);
        use std::os::unix::fs::MetadataExt;
        let a = fs::metadata(src.join("sub/data.bin")).unwrap();
        let b = fs::metadata(dst.join("sub/data.bin")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(
            fs::read_link(dst.join("sub/alias")).unwrap(),
            Path::new("data.bin")
        );
        make_tree_writable(&src).unwrap();
    }

    #[test]
    fn another_machines_leftovers_wait_out_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join(INTERNAL_DIR).join(STAGING_DIR);
        let foreign = staging.join("run.0badc0de-1.abc");
        fs::create_dir_all(&foreign).unwrap();
        assert!(
            find_leftovers(dir.path()).is_empty(),
            "a young foreign folder is left alone"
        );
        let old = SystemTime::now() - FOREIGN_GRACE - Duration::from_secs(60);
        File::open(&foreign).unwrap().set_modified(old).unwrap();
        let found = find_leftovers(dir.path());
        assert_eq!(found.len(), 1);
        assert!(found[0].age >= FOREIGN_GRACE);
        let ours = staging.join(format!("run.{}-999999999.abc", host_tag()));
        fs::create_dir_all(&ours).unwrap();
        assert_eq!(
            find_leftovers(dir.path()).len(),
            2,
            "a dead local owner goes at once"
        );
    }

    #[test]
    fn live_staging_labels_skip_dead_writers() {
        let dir = tempfile::tempdir().unwrap();
        let staging = Staging::create(dir.path(), "20261123_101500").unwrap();
        let parent = staging.path().parent().unwrap();
        fs::create_dir(parent.join("20261123_101501.999999999.abc")).unwrap();
        assert_eq!(live_staging_labels(dir.path()), ["20261123_101500"]);
    }

    #[test]
    fn unlisted_dirs_wait_in_the_trash_for_the_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        fs::create_dir_all(run.join("sub")).unwrap();
        fs::write(run.join("sub/f"), b"x").unwrap();
        let doomed = unlist_dir(dir.path(), &run).unwrap();
        assert!(!run.exists());
        assert!(doomed.starts_with(dir.path().join(INTERNAL_DIR).join(TRASH_DIR)));
        assert!(doomed.join("sub/f").is_file());
        remove_tree(&doomed).unwrap();
        assert!(!doomed.exists());
    }

    #[test]
    fn writes_into_a_readonly_dir_restore_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        fs::create_dir(&run).unwrap();
        fs::set_permissions(&run, fs::Permissions::from_mode(0o555)).unwrap();
        atomic_write_in_readonly_dir(&run.join("metadata.json"), b"{}").unwrap();
        assert_eq!(fs::read(run.join("metadata.json")).unwrap(), b"{}");
        let mode = fs::metadata(&run).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o555);
        fs::set_permissions(&run, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn discard_dir_does_not_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), b"x").unwrap();
        let run = dir.path().join("run");
        fs::create_dir(&run).unwrap();
        symlink(outside.path(), run.join("link")).unwrap();
        discard_dir(dir.path(), &run).unwrap();
        assert!(!run.exists());
        assert!(outside.path().join("keep").exists());
    }

    fn c(name: &str) -> CString {
        CString::new(name).unwrap()
    }

    fn run_walk(root: &Path, name: &str, remove: bool) -> (TreeTotals, Vec<String>) {
        let errors = std::sync::Mutex::new(Vec::new());
        let on_error =
            |p: &Path, e: &io::Error| errors.lock().unwrap().push(format!("{}: {e}", p.display()));
        let parent = DirFd::open(root).unwrap();
        let dir = parent.open_dir(&c(name)).unwrap();
        let walk = TreeWalk {
            remove,
            device: dir.id().unwrap().dev,
            keep: None,
            on_file: None,
            on_error: &on_error,
            on_progress: &|_| {},
        };
        let totals = walk_tree(&parent, &c(name), dir, Path::new(name), &walk);
        (totals, errors.into_inner().unwrap())
    }

    #[test]
    fn walk_tree_counts_then_removes_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("precious"), b"keep me").unwrap();
        let tree = dir.path().join("trained_models");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("m.pkl"), b"12345").unwrap();
        fs::write(tree.join("a/b/n.pkl"), b"123").unwrap();
        symlink(outside.path(), tree.join("a/out")).unwrap();
        symlink("loop", tree.join("loop")).unwrap();
        // A read-only folder inside the tree still goes.
        fs::set_permissions(tree.join("a/b"), fs::Permissions::from_mode(0o555)).unwrap();

        let (counted, errors) = run_walk(dir.path(), "trained_models", false);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!((counted.files, counted.bytes, counted.left), (4, 8, 0));
        assert!(tree.join("a/b/n.pkl").exists(), "counting removes nothing");

        let (removed, errors) = run_walk(dir.path(), "trained_models", true);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(removed, counted);
        assert!(tree.symlink_metadata().is_err());
        assert_eq!(
            fs::read(outside.path().join("precious")).unwrap(),
            b"keep me"
        );
    }

    #[test]
    fn a_symlink_swapped_in_after_the_scan_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir_all(outside.path().join("inner")).unwrap();
        fs::write(outside.path().join("inner/precious"), b"x").unwrap();
        let tree = dir.path().join("mlruns");
        fs::create_dir_all(tree.join("inner")).unwrap();
        fs::write(tree.join("inner/f"), b"x").unwrap();
        let parent = DirFd::open(dir.path()).unwrap();
        let held = parent.open_dir(&c("mlruns")).unwrap();
        // The attacker replaces a subfolder by a link to outside after we opened its parent.
        fs::remove_dir_all(tree.join("inner")).unwrap();
        symlink(outside.path().join("inner"), tree.join("inner")).unwrap();
        let on_error = |_: &Path, _: &io::Error| {};
        let walk = TreeWalk {
            remove: true,
            device: held.id().unwrap().dev,
            keep: None,
            on_file: None,
            on_error: &on_error,
            on_progress: &|_| {},
        };
        let totals = walk_tree(&parent, &c("mlruns"), held, Path::new("mlruns"), &walk);
        assert_eq!(totals.files, 1, "the link itself is unlinked");
        assert!(outside.path().join("inner/precious").exists());
        // And the root of a walk is never opened through a link either.
        symlink(outside.path(), dir.path().join("swapped")).unwrap();
        let err = parent.open_dir(&c("swapped")).unwrap_err();
        assert!(matches!(
            err.raw_os_error(),
            Some(libc::ELOOP) | Some(libc::ENOTDIR)
        ));
    }

    #[test]
    fn kept_entries_stay_with_their_parents() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t");
        fs::create_dir_all(tree.join("sub")).unwrap();
        fs::write(tree.join("sub/keep.pkl"), b"k").unwrap();
        fs::write(tree.join("sub/drop.pkl"), b"d").unwrap();
        let parent = DirFd::open(dir.path()).unwrap();
        let held = parent.open_dir(&c("t")).unwrap();
        let keep = |p: &Path, _: EntryKind| p.ends_with("keep.pkl");
        let on_error = |p: &Path, e: &io::Error| panic!("{}: {e}", p.display());
        let walk = TreeWalk {
            remove: true,
            device: held.id().unwrap().dev,
            keep: Some(&keep),
            on_file: None,
            on_error: &on_error,
            on_progress: &|_| {},
        };
        let totals = walk_tree(&parent, &c("t"), held, Path::new("t"), &walk);
        assert_eq!((totals.files, totals.left), (1, 1));
        assert!(tree.join("sub/keep.pkl").exists());
        assert!(!tree.join("sub/drop.pkl").exists());
    }
}
