//! Who owns a staging or trash folder, and whether they are alive.
//!
//! Each process that makes such a folder in a store first takes an
//! exclusive `flock` on `.artifactctl/owners/<token>.lock`, where the token
//! (`<host>-<pid>-<random>`) is unique to the process and is part of every
//! name it makes. The kernel releases the lock when the process dies, in
//! whatever PID namespace, and over NFS the lock goes through the lock
//! manager: so "the owner is alive" is a question the kernel answers, not a
//! guess from a pid and a host name. A container reusing the pid, or a
//! writer on another host running for hours, keeps its folders.
//!
//! Folders named by an older artifactctl (no lock file) are judged as before:
//! by pid on this host, and by age elsewhere.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::lock::flock;
use crate::store::layout::{INTERNAL_DIR, OWNERS_DIR};

/// This process's owner token: `<host tag>-<pid>-<random>`.
pub fn token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let mut random = [0u8; 6];
        // SAFETY: the buffer is valid for its length.
        let got = unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
        let random: String = if got == random.len() as isize {
            random.iter().map(|b| format!("{b:02x}")).collect()
        } else {
            // No entropy source: the time still tells processes apart.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("{:012x}", nanos & 0xffff_ffff_ffff)
        };
        format!("{}-{}-{random}", super::host_tag(), std::process::id())
    })
}

fn lock_path(store_dir: &Path, token: &str) -> PathBuf {
    store_dir
        .join(INTERNAL_DIR)
        .join(OWNERS_DIR)
        .join(format!("{token}.lock"))
}

fn held() -> &'static Mutex<HashMap<PathBuf, File>> {
    static HELD: OnceLock<Mutex<HashMap<PathBuf, File>>> = OnceLock::new();
    HELD.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Hold this process's owner lock in `store_dir` (once per store, for the
/// rest of the process's life). Call before making anything named with
/// [`token`] there.
pub fn claim(store_dir: &Path) -> io::Result<()> {
    let mut held = held().lock().unwrap_or_else(|e| e.into_inner());
    if held.contains_key(store_dir) {
        return Ok(());
    }
    let path = lock_path(store_dir, token());
    super::ensure_internal_dir(store_dir, OWNERS_DIR)?;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)?;
    flock(&file, libc::LOCK_EX | libc::LOCK_NB)?;
    held.insert(store_dir.to_path_buf(), file);
    Ok(())
}

/// The descriptors of the owner locks this process holds, for a helper
/// process that must keep them held as long as it lives (refresh's reaper:
/// a step may still write until the reaper has killed it).
pub fn held_descriptors() -> Vec<RawFd> {
    let held = held().lock().unwrap_or_else(|e| e.into_inner());
    held.values().map(AsRawFd::as_raw_fd).collect()
}

/// What the owner lock says about `token` in `store_dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
    /// No lock file: a name from an older artifactctl.
    Unknown,
}

pub fn liveness(store_dir: &Path, token: &str) -> Liveness {
    if token == self::token() {
        return Liveness::Alive;
    }
    let path = lock_path(store_dir, token);
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => f,
        Err(_) => return Liveness::Unknown,
    };
    match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
        // Our descriptor is dropped at once, releasing the probe lock.
        Ok(()) => Liveness::Dead,
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Liveness::Alive,
        // Cannot tell (a filesystem without locks): never judge it dead.
        Err(_) => Liveness::Alive,
    }
}

/// Remove the lock files of dead owners once their folders are swept.
pub fn forget_dead(store_dir: &Path, tokens: &[String]) {
    for token in tokens {
        if liveness(store_dir, token) == Liveness::Dead {
            let _ = fs::remove_file(lock_path(store_dir, token));
        }
    }
}
