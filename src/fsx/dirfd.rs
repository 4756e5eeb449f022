//! Directories held open by descriptor: opening children relative to their
//! parent with `O_NOFOLLOW`, reading entries with `getdents64`, removing with
//! `unlinkat`, and probing identity and mount points with `statx`. The
//! walker (`walk.rs`) and checkout build on it.

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    pub(crate) fn raw(&self) -> libc::c_int {
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
    pub(crate) fn with_write_retry(&self, op: impl Fn() -> io::Result<()>) -> io::Result<()> {
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

/// Identity and mount facts of an open directory, from one `statx`.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub id: DirId,
    /// `STATX_ATTR_MOUNT_ROOT`, when the kernel reports it (Linux 5.8+).
    pub(crate) mount_root: Option<bool>,
    /// `STATX_MNT_ID`, when the kernel reports it (Linux 5.8+).
    pub(crate) mnt_id: Option<u64>,
}

impl Probe {
    /// Whether `self`, a directory opened inside `parent`, is the root of a
    /// mount. A bind mount of a folder on the same filesystem has the same
    /// device number as its parent, so the device alone cannot tell; the
    /// kernel's mount-root attribute can, then the mount id, and the device
    /// number is the last resort on kernels without either.
    pub fn is_mount_below(&self, parent: &Probe) -> bool {
        if let Some(root) = self.mount_root {
            return root;
        }
        if let (Some(mine), Some(theirs)) = (self.mnt_id, parent.mnt_id) {
            return mine != theirs;
        }
        self.id.dev != parent.id.dev
    }
}

impl DirFd {
    /// Device, inode and mount facts of this directory.
    pub fn probe(&self) -> io::Result<Probe> {
        let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
        // SAFETY: valid descriptor, empty NUL-terminated path with
        // AT_EMPTY_PATH; `stx` is zeroed and only read after success.
        let rc = unsafe {
            libc::statx(
                self.raw(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
                libc::STATX_TYPE | libc::STATX_INO | libc::STATX_MNT_ID,
                stx.as_mut_ptr(),
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            // No statx (old kernel, or a seccomp filter refusing it): fall
            // back to fstat, and so to comparing devices.
            if matches!(
                err.raw_os_error(),
                Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EINVAL)
            ) {
                return Ok(Probe {
                    id: self.id()?,
                    mount_root: None,
                    mnt_id: None,
                });
            }
            return Err(err);
        }
        // SAFETY: statx succeeded and wrote the struct.
        let stx = unsafe { stx.assume_init() };
        let attr = libc::STATX_ATTR_MOUNT_ROOT as u64;
        Ok(Probe {
            id: DirId {
                dev: libc::makedev(stx.stx_dev_major, stx.stx_dev_minor),
                ino: stx.stx_ino,
            },
            mount_root: (stx.stx_attributes_mask & attr != 0)
                .then_some(stx.stx_attributes & attr != 0),
            mnt_id: (stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id),
        })
    }
}
