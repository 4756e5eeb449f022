//! The store-wide writer lock: an exclusive `flock` the kernel releases when
//! its holder dies, so it never goes stale.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use crate::store::layout::{INTERNAL_DIR, LOCK_FILE};

/// The store-wide writer lock: an exclusive `flock` on `.artifactctl/lock`,
/// released when dropped (or when the process dies, so no lock goes stale).
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    pub fn acquire(store_dir: &Path) -> io::Result<StoreLock> {
        use std::os::unix::fs::OpenOptionsExt;
        let internal = super::ensure_internal_dir(store_dir, "")?;
        // O_NOFOLLOW: a symlinked lock file must not create a file elsewhere.
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
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

pub(crate) fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
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
