//! Placing a run's outputs where an application loads them (`checkout`):
//! a read-only tree sharing bytes with the store (hard links of read-only
//! files, or reflinks), assembled beside its destination and switched in
//! atomically. A marker file says the folder is artifactctl's, so a later
//! checkout may replace it and `clear` may remove it; a folder without the
//! marker is the user's and is never replaced.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::fault::{self, Point};
use super::{
    atomic_write, fsync_dir, make_tree_readonly, remove_tree, rename_noreplace, share_tree,
};

/// The marker file inside a folder `checkout` made.
pub const CHECKOUT_MARKER: &str = ".artifactctl-checkout";

/// Whether `dir` is a folder `checkout` made (a real folder with the marker).
pub fn is_checkout(dir: &Path) -> bool {
    fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
        && fs::symlink_metadata(dir.join(CHECKOUT_MARKER)).is_ok_and(|m| m.is_file())
}

/// What [`place`] did with the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// Nothing was there.
    Created,
    /// An earlier checkout was there and was switched out.
    Replaced,
}

/// Put a read-only copy of `src` (sharing its bytes) at `dest`, with
/// `marker` as the content of its marker file. The new tree is assembled
/// beside `dest` and switched in with one rename (an exchange when an
/// earlier checkout is there), so a reader sees the old tree or the new
/// one. Refuses a `dest` that is not an earlier checkout.
pub fn place(store_dir: &Path, src: &Path, dest: &Path, marker: &str) -> io::Result<Placed> {
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let existing = fs::symlink_metadata(dest).ok();
    if existing.is_some() && !is_checkout(dest) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and was not made by artifactctl checkout; move it away (or `artifactctl clear {} --force` if it can be regenerated), then check out again",
                dest.display(),
                dest.display()
            ),
        ));
    }
    // The staging name carries our owner token: a checkout killed half-way
    // is swept by the next one, never a live one's.
    super::owner::claim(store_dir)?;
    sweep_checkout_leftovers(store_dir, parent);
    fault::hit(Point::Mkdir)?;
    fs::create_dir_all(parent)?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = parent.join(format!(".{name}.{}.checkout", super::unique_suffix()));
    fs::create_dir(&staging)?;
    let built = (|| {
        share_tree(src, &staging)?;
        atomic_write(&staging.join(CHECKOUT_MARKER), marker.as_bytes())?;
        make_tree_readonly(&staging)?;
        // The top folder stays writable by its owner so the next checkout
        // can switch it out; what is inside is read-only.
        let mode = fs::symlink_metadata(&staging)?.permissions().mode();
        fs::set_permissions(&staging, fs::Permissions::from_mode(mode | 0o200))?;
        super::sync_tree(&staging)
    })();
    if let Err(e) = built {
        let _ = remove_tree(&staging);
        return Err(e);
    }
    let placed = if existing.is_some() {
        exchange(&staging, dest)?;
        // `staging` now holds the old checkout.
        let _ = remove_tree(&staging);
        Placed::Replaced
    } else {
        rename_noreplace(&staging, dest).inspect_err(|_| {
            let _ = remove_tree(&staging);
        })?;
        Placed::Created
    };
    fsync_dir(parent)?;
    Ok(placed)
}

/// Swap two paths in one step (`renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    fault::hit(Point::Rename)?;
    let ca = CString::new(a.as_os_str().as_bytes())?;
    let cb = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both pointers are valid NUL-terminated strings for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Remove leftovers of checkouts killed half-way in `parent` (hidden
/// `.<name>.<token>.checkout` folders whose writer is dead).
pub fn sweep_checkout_leftovers(store_dir: &Path, parent: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with('.') && name.ends_with(".checkout")) {
            continue;
        }
        let owner_part = name.trim_end_matches(".checkout");
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if super::sweep::owner_of(store_dir, owner_part) != super::sweep::Owner::Dead {
            continue;
        }
        if remove_tree(&entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}
