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

mod atomic;
pub mod checkout;
mod dirfd;
pub mod fault;
mod lock;
pub mod owner;
pub mod remote;
mod staging;
mod sweep;
mod transfer;
mod trash;
mod walk;

pub use atomic::*;
pub use dirfd::*;
pub use lock::*;
pub use staging::*;
pub use sweep::*;
pub use transfer::*;
pub use trash::*;
pub use walk::*;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A name no other process or thread will pick: `<owner token>.<nonce>`.
/// The owner part lets a later writer ask whether the process that made a
/// staging or trash folder is still running (see [`owner`]).
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}.{:x}{:x}", owner::token(), nanos, n)
}

/// `<store>/.artifactctl[/<sub>]` as a real folder, created if missing.
/// A symlink (or anything but a folder) in either place is refused, never
/// followed: a hostile store must not make the sweep remove, the lock
/// create, or the journal append anything outside it.
pub fn ensure_internal_dir(store_dir: &Path, sub: &str) -> io::Result<PathBuf> {
    // The store folder itself is the user's choice and may be a link.
    fs::create_dir_all(store_dir)?;
    let mut dir = store_dir.join(crate::store::layout::INTERNAL_DIR);
    for step in [None, (!sub.is_empty()).then_some(sub)] {
        if let Some(sub) = step {
            dir.push(sub);
        }
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is a symlink or not a folder; artifactctl never follows links in its own folder: remove it",
                        dir.display()
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fault::hit(fault::Point::Mkdir)?;
                match fs::create_dir(&dir) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
                // Raced with a link swapped in: check again.
                if !fs::symlink_metadata(&dir)?.is_dir() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is not a folder", dir.display()),
                    ));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(dir)
}

/// Atomically (re)write the run index file `name` under
/// `<store>/.artifactctl/index/`. The caller holds the store lock.
pub fn write_index(store_dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let dir = ensure_internal_dir(store_dir, crate::store::layout::INDEX_DIR)?;
    fault::hit(fault::Point::IndexWrite)?;
    atomic_write(&dir.join(name), bytes)
}

/// `<store>/.artifactctl/<sub>` if it is a real folder; `None` when it is
/// missing, a symlink or anything else (readers never follow such a link).
pub fn internal_dir_if_real(store_dir: &Path, sub: &str) -> Option<PathBuf> {
    let internal = store_dir.join(crate::store::layout::INTERNAL_DIR);
    let dir = internal.join(sub);
    let real = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    (real(&internal) && real(&dir)).then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::fs::{self, File};
    use std::io;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    use crate::store::layout::{INTERNAL_DIR, LATEST, STAGING_DIR, TRASH_DIR};

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
        assert_eq!(sweep_leftovers(dir.path()).removed, 1);
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
    /// Removes a tree too deep for `std::fs::remove_dir_all` (and for
    /// tempfile's drop) when a test fails half-way.
    struct RmRf(std::path::PathBuf);

    impl Drop for RmRf {
        fn drop(&mut self) {
            let _ = std::process::Command::new("rm")
                .arg("-rf")
                .arg(&self.0)
                .status();
        }
    }

    /// `root/<name>/d/d/.../d/f`, `depth` folders named `d` below `name`,
    /// built by descriptor since the path is far longer than PATH_MAX.
    /// Every `readonly_every`th folder is made read-only (mode 0555).
    fn make_deep(root: &Path, name: &str, depth: usize, readonly_every: usize) {
        make_deep_with(root, name, depth, readonly_every, false)
    }

    /// [`make_deep`], with `siblings` an empty folder `e` beside each `d`.
    fn make_deep_with(
        root: &Path,
        name: &str,
        depth: usize,
        readonly_every: usize,
        siblings: bool,
    ) {
        fs::create_dir(root.join(name)).unwrap();
        let mut dir = DirFd::open(&root.join(name)).unwrap();
        let d = c("d");
        for level in 0..depth {
            // SAFETY: valid descriptor and name.
            let rc = unsafe { libc::mkdirat(dir.raw(), d.as_ptr(), 0o755) };
            assert_eq!(rc, 0, "{}", io::Error::last_os_error());
            if siblings {
                // SAFETY: valid descriptor and name.
                let rc = unsafe { libc::mkdirat(dir.raw(), c"e".as_ptr(), 0o755) };
                assert_eq!(rc, 0, "{}", io::Error::last_os_error());
            }
            let child = dir.open_dir(&d).unwrap();
            if readonly_every > 0 && level % readonly_every == 0 {
                // SAFETY: valid descriptor.
                unsafe { libc::fchmod(dir.raw(), 0o555) };
            }
            dir = child;
        }
        // SAFETY: valid descriptor and name; the descriptor is closed at once.
        let fd = unsafe {
            libc::openat(
                dir.raw(),
                c"f".as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
                0o644,
            )
        };
        assert!(fd >= 0, "{}", io::Error::last_os_error());
        // SAFETY: `fd` was just opened here.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn remove_tree_removes_a_tree_100000_levels_deep() {
        let dir = tempfile::tempdir().unwrap();
        let _cleanup = RmRf(dir.path().join("run"));
        make_deep(dir.path(), "run", 100_000, 10_000);
        let (counted, errors) = run_walk(dir.path(), "run", false);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!((counted.files, counted.left), (1, 0));
        remove_tree(&dir.path().join("run")).unwrap();
        assert!(dir.path().join("run").symlink_metadata().is_err());
    }

    #[test]
    fn a_deep_tree_with_several_folders_per_level_stays_off_the_stack() {
        // Two subfolders per level invite a parallel sub-walk at every level;
        // only the first few may nest, or the native stack overflows.
        let dir = tempfile::tempdir().unwrap();
        let _cleanup = RmRf(dir.path().join("run"));
        make_deep_with(dir.path(), "run", 30_000, 0, true);
        remove_tree(&dir.path().join("run")).unwrap();
        assert!(dir.path().join("run").symlink_metadata().is_err());
    }

    #[test]
    fn a_folder_moved_away_during_a_deep_walk_stops_the_removal() {
        let dir = tempfile::tempdir().unwrap();
        let _cleanup = RmRf(dir.path().join("run"));
        let _cleanup_moved = RmRf(dir.path().join("moved"));
        // Deeper than the descriptors the walk keeps open, so it must come
        // back up through `..`.
        let depth = MAX_OPEN * 3;
        make_deep(dir.path(), "run", depth, 0);
        let level = |n: usize| {
            let mut p = dir.path().join("run");
            for _ in 0..n {
                p.push("d");
            }
            p
        };
        let errors = std::sync::Mutex::new(Vec::new());
        let on_error =
            |p: &Path, e: &io::Error| errors.lock().unwrap().push(format!("{}: {e}", p.display()));
        // Once the deepest file is gone, someone moves level 5 (with all
        // that is below it) out of the tree.
        let on_file = |_: &Path, _: u64| {
            fs::rename(level(5), dir.path().join("moved")).unwrap();
        };
        let parent = DirFd::open(dir.path()).unwrap();
        let held = parent.open_dir(&c("run")).unwrap();
        let walk = TreeWalk {
            remove: true,
            device: held.id().unwrap().dev,
            keep: None,
            on_file: Some(&on_file),
            on_error: &on_error,
            on_progress: &|_| {},
        };
        let totals = walk_tree(&parent, &c("run"), held, Path::new("run"), &walk);
        let errors = errors.into_inner().unwrap();
        assert!(totals.left > 0);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("the tree changed during removal"),
            "{errors:?}"
        );
        // The folder it could not prove is the one it walked into, and all
        // above it, are left; the moved folder is left too.
        assert!(level(4).is_dir());
        assert!(dir.path().join("moved").is_dir());
    }
}
