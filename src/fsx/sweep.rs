//! Leftovers of writers that died: staging and trash folders whose owner is
//! gone, found by the owner tag in their names and removed by the next writer.

use std::fs::{self};
use std::io::{self};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::*;
use crate::store::layout::{ORIGIN_SUFFIX, STAGING_DIR, TRASH_DIR};

/// This machine's tag in owner names, a short hash of the host name: a store
/// shared over the network must not take another machine's live writer for a
/// dead one just because the pid is unknown here.
pub(crate) fn host_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let name = crate::host::hostname().unwrap_or_default();
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
/// Leftovers of a writer that died: a staging or trash folder whose owning
/// process on this machine is gone, or one made on another machine more than
/// [`FOREIGN_GRACE`] ago. Names carry the owner (see [`unique_suffix`]).
#[derive(Debug, Clone)]
pub struct Leftover {
    pub path: PathBuf,
    pub age: Duration,
    pub kind: &'static str,
    /// Where a staging folder moved in by `register --move` came from: it is
    /// given back, never removed.
    pub origin: Option<PathBuf>,
}

pub fn find_leftovers(store_dir: &Path) -> Vec<Leftover> {
    let mut found = Vec::new();
    let now = SystemTime::now();
    for (sub, kind) in [(STAGING_DIR, "staging"), (TRASH_DIR, "trash")] {
        // A symlinked staging or trash folder is never read, let alone swept.
        let Some(dir) = super::internal_dir_if_real(store_dir, sub) else {
            continue;
        };
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(ORIGIN_SUFFIX) {
                // Records go with their folders (see `sweep_leftovers`).
                continue;
            }
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                // Only folders are leftovers; a stray link or file is left be.
                continue;
            }
            match owner_of(store_dir, &name) {
                Owner::Alive => continue,
                Owner::Elsewhere if age < FOREIGN_GRACE => continue,
                Owner::Elsewhere | Owner::Dead => {}
            }
            let origin = (kind == "staging")
                .then(|| read_origin(&entry.path()))
                .flatten();
            found.push(Leftover {
                path: entry.path(),
                age,
                kind,
                origin,
            });
        }
    }
    found
}

/// What [`sweep_leftovers`] did.
#[derive(Debug, Clone, Default)]
pub struct Swept {
    /// Staging and trash folders removed.
    pub removed: usize,
    /// Folders a dead `register --move` had taken in, given back.
    pub recovered: Vec<Recovered>,
}

/// Finish what dead writers left behind: remove their staging and trash
/// folders, except a folder moved in by `register --move` (it has an origin
/// record), which goes back where it came from or into
/// `.artifactctl/recovered/`, never away. Called by every writer once it
/// holds the store lock.
pub fn sweep_leftovers(store_dir: &Path) -> Swept {
    let mut swept = Swept::default();
    for leftover in find_leftovers(store_dir) {
        if leftover.kind == "staging" {
            if let Some(origin) = &leftover.origin {
                if let Ok(recovered) = give_back(&leftover.path, origin) {
                    swept.recovered.push(recovered);
                }
                continue;
            }
        }
        if remove_tree(&leftover.path).is_ok() {
            swept.removed += 1;
        }
    }
    remove_dead_temp_files(store_dir);
    forget_dead_owners(store_dir);
    // A record whose folder is gone (published, or given back, just before
    // a crash) names nothing any more.
    if let Some(staging) = super::internal_dir_if_real(store_dir, STAGING_DIR) {
        let Ok(entries) = fs::read_dir(&staging) else {
            return swept;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(folder) = name.strip_suffix(ORIGIN_SUFFIX) else {
                continue;
            };
            if owner_of(store_dir, folder) == Owner::Dead
                && staging.join(folder).symlink_metadata().is_err()
            {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    swept
}

/// Labels of the staging folders whose writer is still running, so a writer
/// can avoid an id another one is assembling (refresh reserves its id early).
pub fn live_staging_labels(store_dir: &Path) -> Vec<String> {
    let Some(dir) = super::internal_dir_if_real(store_dir, STAGING_DIR) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.ends_with(ORIGIN_SUFFIX))
        .filter(|name| owner_of(store_dir, name) != Owner::Dead)
        .filter_map(|name| {
            let mut parts = name.rsplitn(3, '.');
            let (_nonce, _pid) = (parts.next(), parts.next());
            parts.next().map(str::to_string)
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    Alive,
    Dead,
    /// Made on another machine: liveness unknown.
    Elsewhere,
}

/// The owner of `label.<token>.<nonce>`: its owner lock answers when it
/// has one (see [`super::owner`]); names of older versions
/// (`label.<host>-<pid>.<nonce>`, `label.<pid>.<nonce>`) are judged by pid
/// on this host and by age elsewhere.
pub(crate) fn owner_of(store_dir: &Path, name: &str) -> Owner {
    // A temporary file of `atomic_write` (`.<name>.<owner>.<nonce>.tmp`)
    // belongs to the writer named last.
    let name = name.strip_suffix(".tmp").unwrap_or(name);
    let mut parts = name.rsplit('.');
    let _nonce = parts.next();
    let Some(owner) = parts.next() else {
        return Owner::Dead;
    };
    match super::owner::liveness(store_dir, owner) {
        super::owner::Liveness::Alive => return Owner::Alive,
        super::owner::Liveness::Dead => return Owner::Dead,
        super::owner::Liveness::Unknown => {}
    }
    // Older names, or a lock file removed by hand: `host-pid[-random]`.
    let owner = owner
        .rsplitn(2, '-')
        .last()
        .filter(|_| owner.matches('-').count() == 2)
        .unwrap_or(owner);
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

/// Remove the owner lock files of dead processes that left nothing behind.
fn forget_dead_owners(store_dir: &Path) {
    use crate::store::layout::OWNERS_DIR;
    let Some(owners) = super::internal_dir_if_real(store_dir, OWNERS_DIR) else {
        return;
    };
    let Ok(entries) = fs::read_dir(&owners) else {
        return;
    };
    let mut names = Vec::new();
    for sub in [STAGING_DIR, TRASH_DIR] {
        if let Some(dir) = super::internal_dir_if_real(store_dir, sub) {
            if let Ok(found) = fs::read_dir(dir) {
                names.extend(
                    found
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned()),
                );
            }
        }
    }
    let dead: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".lock").map(str::to_string)
        })
        .filter(|token| !names.iter().any(|n| n.contains(&format!(".{token}."))))
        .collect();
    super::owner::forget_dead(store_dir, &dead);
}

/// Temporary files of `atomic_write` that a dead writer left in
/// `.artifactctl/` (the id marks, say): never read, but clutter.
fn remove_dead_temp_files(store_dir: &Path) {
    // The run index is rewritten in its own folder, so a writer killed
    // mid-write leaves its temporary file there.
    for sub in ["", crate::store::layout::INDEX_DIR] {
        if let Some(dir) = super::internal_dir_if_real(store_dir, sub) {
            remove_dead_temp_files_in(store_dir, &dir);
        }
    }
}

fn remove_dead_temp_files_in(store_dir: &Path, dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.')
            && name.ends_with(".tmp")
            && entry.file_type().is_ok_and(|t| t.is_file())
            && owner_of(store_dir, &name) == Owner::Dead
        {
            let _ = fs::remove_file(entry.path());
        }
    }
}
