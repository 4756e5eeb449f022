//! The descriptor walker `clear` counts and removes with: every folder is
//! held open while its entries are read and removed (`openat`, `O_NOFOLLOW`,
//! `getdents64`, `unlinkat`), so no path is resolved again after the scan.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use crate::policy::entry::EntryKind;

/// A directory held open by descriptor, for walks and removals that must not
/// be redirected by a symlink swapped in after the scan (the CVE-2022-21658
/// class): every child is opened relative to its parent's descriptor with
/// `O_NOFOLLOW | O_DIRECTORY`, and every removal is an `unlinkat` on the
/// parent's descriptor, so no path is ever resolved by name again.
#[derive(Debug)]
pub struct DirFd {
    fd: std::os::fd::OwnedFd,
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

pub(crate) fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

pub(crate) fn kind_of_mode(mode: libc::mode_t) -> EntryKind {
    match mode & libc::S_IFMT {
        libc::S_IFREG => EntryKind::File,
        libc::S_IFDIR => EntryKind::Dir,
        libc::S_IFLNK => EntryKind::Symlink,
        _ => EntryKind::Other,
    }
}

pub(crate) const DIR_OPEN_FLAGS: libc::c_int =
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
pub(crate) const WALK_BATCH: usize = 256;

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

pub(crate) fn walk_contents(dir: &DirFd, path: &Path, walk: &TreeWalk) -> TreeTotals {
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

pub(crate) fn walk_entry(
    dir: &DirFd,
    path: &Path,
    entry: &RawEntry,
    walk: &TreeWalk,
) -> TreeTotals {
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

pub(crate) fn walk_subdir(parent: &DirFd, path: &Path, name: &CStr, walk: &TreeWalk) -> TreeTotals {
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
