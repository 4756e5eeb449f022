//! The descriptor walker `clear` counts and removes with, and every removal
//! of a tree: every folder is held open while its entries are read and
//! removed (`openat`, `O_NOFOLLOW`, `getdents64`, `unlinkat`), so no path is
//! resolved again after the scan; iterative, with a bounded number of open
//! descriptors, and never into a mount point.

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::dirfd::*;

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

const LEFT_ONE: TreeTotals = TreeTotals {
    files: 0,
    bytes: 0,
    left: 1,
};

/// Files per parallel batch inside one directory.
pub(crate) const WALK_BATCH: usize = 256;

/// Descriptors one walk keeps open on its way down. Deeper folders are
/// closed and re-opened through `..` on the way back up, so a tree 100,000
/// levels deep needs no more descriptors than a shallow one.
pub(crate) const MAX_OPEN: usize = 32;

/// Parallel sub-walks nest at most this deep (each is one native stack
/// frame chain), and only start in the first [`PAR_LEVELS`] levels of a
/// walk, so both the stack and the descriptors held stay bounded.
const MAX_NEST: usize = 8;
const PAR_LEVELS: usize = 3;

/// What a [`Visitor`] makes of one entry.
pub enum Visit {
    /// Handled here (counted, removed, kept or ignored), with what it came to.
    Done(TreeTotals),
    /// A directory to walk into; with `remove`, it is removed once empty.
    Enter { remove: bool },
}

/// Decides, entry by entry, what a walk does. The walk itself owns opening
/// folders (never through a symlink, never into a mount point), the depth,
/// the descriptors and removing emptied folders.
pub trait Visitor: Sync {
    /// Decide `name` (of `kind`, at `path`) in `dir`.
    fn visit(&self, dir: &DirFd, name: &CStr, path: &Path, kind: EntryKind) -> Visit;
    /// A folder opened to be entered: `Err(Some(e))` leaves it and reports
    /// `e`, `Err(None)` leaves it quietly.
    fn admit(&self, dir: &DirFd, probe: &Probe, path: &Path) -> Result<(), Option<io::Error>>;
    fn on_error(&self, path: &Path, e: &io::Error);
    /// How many more files were done.
    fn on_progress(&self, _files: u64) {}
}

impl Visitor for TreeWalk<'_> {
    fn visit(&self, dir: &DirFd, name: &CStr, path: &Path, kind: EntryKind) -> Visit {
        if let Some(keep) = self.keep {
            if keep(path, kind) {
                return Visit::Done(LEFT_ONE);
            }
        }
        if kind == EntryKind::Dir {
            return Visit::Enter {
                remove: self.remove,
            };
        }
        let bytes = if kind == EntryKind::File {
            match dir.stat_at(name) {
                Ok((EntryKind::File, size)) => size,
                Ok(_) => 0,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Visit::Done(TreeTotals::default())
                }
                Err(e) => {
                    self.on_error(path, &e);
                    return Visit::Done(LEFT_ONE);
                }
            }
        } else {
            0
        };
        if self.remove {
            match dir.with_write_retry(|| dir.unlink_at(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Visit::Done(TreeTotals::default())
                }
                Err(e) => {
                    self.on_error(path, &e);
                    return Visit::Done(LEFT_ONE);
                }
            }
        }
        if let Some(on_file) = self.on_file {
            on_file(path, bytes);
        }
        Visit::Done(TreeTotals {
            files: 1,
            bytes,
            left: 0,
        })
    }

    fn admit(&self, _dir: &DirFd, probe: &Probe, _path: &Path) -> Result<(), Option<io::Error>> {
        if probe.id.dev == self.device {
            Ok(())
        } else {
            Err(Some(io::Error::other(
                "is on another filesystem; not entered",
            )))
        }
    }

    fn on_error(&self, path: &Path, e: &io::Error) {
        (self.on_error)(path, e)
    }

    fn on_progress(&self, files: u64) {
        (self.on_progress)(files)
    }
}

/// Count, or remove, the directory `name` in `parent` and everything below it,
/// `dir` being that directory already opened. Symlinks are never followed: a
/// link is counted and unlinked as a link, wherever it points. Subdirectories
/// are opened by descriptor, so a symlink swapped in after the scan fails to
/// open instead of being followed; mount points (a bind mount of the same
/// filesystem included) and other devices are reported and not entered. The
/// directory itself is removed only when nothing was left inside.
pub fn walk_tree(
    parent: &DirFd,
    name: &CStr,
    dir: DirFd,
    path: &Path,
    walk: &TreeWalk,
) -> TreeTotals {
    walk_dir_at(parent, None, name, dir, path, walk.remove, walk, 0)
}

/// Walk everything below `dir` (which stays) with `visitor`.
pub fn walk_contents(dir: &DirFd, path: &Path, visitor: &dyn Visitor) -> TreeTotals {
    match dir.probe() {
        Ok(probe) => walk_below(dir, probe, &mut path.to_path_buf(), visitor, 0),
        Err(e) => {
            visitor.on_error(path, &e);
            LEFT_ONE
        }
    }
}

/// Walk the single entry `name` of `parent` (at `path`) as a walk below
/// `parent` would.
pub fn walk_one(
    parent: &DirFd,
    name: &CStr,
    path: &Path,
    kind: EntryKind,
    visitor: &dyn Visitor,
) -> TreeTotals {
    match visitor.visit(parent, name, path, kind) {
        Visit::Done(totals) => totals,
        Visit::Enter { remove } => {
            let dir = match parent.open_dir(name) {
                Ok(dir) => dir,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return TreeTotals::default(),
                Err(e) => {
                    visitor.on_error(path, &e);
                    return LEFT_ONE;
                }
            };
            walk_dir_at(parent, None, name, dir, path, remove, visitor, 0)
        }
    }
}

/// Vet `dir` (just opened as `name` in `parent`): not a mount point, and
/// admitted by the visitor.
fn vet(
    parent: &DirFd,
    parent_probe: Option<&Probe>,
    dir: &DirFd,
    path: &Path,
    visitor: &dyn Visitor,
) -> Result<Probe, TreeTotals> {
    let fail = |e: &io::Error| {
        visitor.on_error(path, e);
        Err(LEFT_ONE)
    };
    let probe = match dir.probe() {
        Ok(probe) => probe,
        Err(e) => return fail(&e),
    };
    let parent_probe = match parent_probe {
        Some(p) => *p,
        None => match parent.probe() {
            Ok(p) => p,
            Err(e) => return fail(&e),
        },
    };
    if probe.is_mount_below(&parent_probe) {
        return fail(&io::Error::other("is a mount point; not entered"));
    }
    match visitor.admit(dir, &probe, path) {
        Ok(()) => Ok(probe),
        Err(Some(e)) => fail(&e),
        Err(None) => Err(LEFT_ONE),
    }
}

/// Vet and walk `dir` (opened as `name` in `parent`), then remove it if
/// asked and nothing was left inside.
#[allow(clippy::too_many_arguments)]
fn walk_dir_at(
    parent: &DirFd,
    parent_probe: Option<&Probe>,
    name: &CStr,
    dir: DirFd,
    path: &Path,
    remove: bool,
    visitor: &dyn Visitor,
    nest: usize,
) -> TreeTotals {
    let probe = match vet(parent, parent_probe, &dir, path, visitor) {
        Ok(probe) => probe,
        Err(totals) => return totals,
    };
    let mut totals = walk_below(&dir, probe, &mut path.to_path_buf(), visitor, nest);
    drop(dir);
    if remove && totals.left == 0 {
        totals = totals + remove_emptied(parent, name, path, visitor);
    }
    totals
}

fn remove_emptied(parent: &DirFd, name: &CStr, path: &Path, visitor: &dyn Visitor) -> TreeTotals {
    match parent.with_write_retry(|| parent.remove_dir_at(name)) {
        Ok(()) => TreeTotals::default(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => TreeTotals::default(),
        Err(e) => {
            visitor.on_error(path, &e);
            LEFT_ONE
        }
    }
}

/// One folder on the way down.
struct Frame {
    /// Closed when more than [`MAX_OPEN`] levels up; re-opened through `..`.
    dir: Option<DirFd>,
    probe: Probe,
    /// Its name in its parent.
    name: CString,
    remove: bool,
    /// Subfolders still to walk, with whether each goes once emptied.
    pending: Vec<(CString, bool)>,
    totals: TreeTotals,
}

/// The walk proper, iterative so depth costs heap, not stack: a stack of
/// frames, the deepest [`MAX_OPEN`] holding their descriptor. Returning to a
/// parent whose descriptor was closed re-opens it as `..` of the child and
/// checks it is the very folder recorded on the way down; if it is not (the
/// tree was moved meanwhile), the walk stops and nothing more is removed.
fn walk_below(
    root: &DirFd,
    root_probe: Probe,
    path: &mut PathBuf,
    visitor: &dyn Visitor,
    nest: usize,
) -> TreeTotals {
    // Each parallel sub-walk is a native stack frame chain: past MAX_NEST,
    // a tree with several subfolders per level is walked here, iteratively.
    let (totals, pending) = list(root, &root_probe, path, visitor, nest, nest < MAX_NEST);
    let mut stack = vec![Frame {
        dir: None,
        probe: root_probe,
        name: CString::default(),
        remove: false,
        pending,
        totals,
    }];
    loop {
        let top = stack.len() - 1;
        if let Some((name, remove)) = stack[top].pending.pop() {
            path.push(std::ffi::OsStr::from_bytes(name.to_bytes()));
            let parent = if top == 0 {
                root
            } else {
                stack[top].dir.as_ref().expect("the deepest folder is open")
            };
            let opened = match parent.open_dir(&name) {
                Ok(child) => vet(parent, Some(&stack[top].probe), &child, path, visitor)
                    .map(|probe| (child, probe)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(TreeTotals::default()),
                Err(e) => {
                    visitor.on_error(path, &e);
                    Err(LEFT_ONE)
                }
            };
            match opened {
                Ok((child, probe)) => {
                    let parallel = nest < MAX_NEST && stack.len() <= PAR_LEVELS;
                    let (totals, pending) = list(&child, &probe, path, visitor, nest, parallel);
                    stack.push(Frame {
                        dir: Some(child),
                        probe,
                        name,
                        remove,
                        pending,
                        totals,
                    });
                    if stack.len() > MAX_OPEN + 1 {
                        let far = stack.len() - 1 - MAX_OPEN;
                        stack[far].dir = None;
                    }
                }
                Err(totals) => {
                    stack[top].totals = stack[top].totals + totals;
                    path.pop();
                }
            }
            continue;
        }
        if top == 0 {
            return stack.pop().expect("the root frame").totals;
        }
        let done = stack.pop().expect("a frame below the root");
        let up = top - 1;
        if up > 0 && stack[up].dir.is_none() {
            let child = done.dir.as_ref().expect("the deepest folder is open");
            match reopen_parent(child, &stack[up].probe) {
                Ok(dir) => stack[up].dir = Some(dir),
                Err(e) => {
                    path.pop();
                    visitor.on_error(path, &e);
                    let totals = totals_of(&stack) + done.totals + LEFT_ONE;
                    for _ in 1..stack.len() {
                        path.pop();
                    }
                    return totals;
                }
            }
        }
        let Frame {
            dir,
            name,
            remove,
            mut totals,
            ..
        } = done;
        drop(dir);
        let parent = if up == 0 {
            root
        } else {
            stack[up].dir.as_ref().expect("re-opened above")
        };
        if remove && totals.left == 0 {
            totals = totals + remove_emptied(parent, &name, path, visitor);
        }
        path.pop();
        stack[up].totals = stack[up].totals + totals;
    }
}

fn totals_of(stack: &[Frame]) -> TreeTotals {
    stack
        .iter()
        .fold(TreeTotals::default(), |sum, f| sum + f.totals)
}

/// `..` of `child`, if it is still the folder `expected` walked into.
fn reopen_parent(child: &DirFd, expected: &Probe) -> io::Result<DirFd> {
    let changed = || io::Error::other("the tree changed during removal; stopped here");
    let parent = child.open_dir(c"..").map_err(|_| changed())?;
    match parent.probe() {
        Ok(probe) if probe.id == expected.id => Ok(parent),
        _ => Err(changed()),
    }
}

/// Read `dir` and settle every entry the visitor handles in place (in
/// parallel batches when there are many); return the subfolders to enter.
/// With `parallel`, those are walked here too, each in its own sub-walk.
fn list(
    dir: &DirFd,
    probe: &Probe,
    path: &mut PathBuf,
    visitor: &dyn Visitor,
    nest: usize,
    parallel: bool,
) -> (TreeTotals, Vec<(CString, bool)>) {
    use rayon::prelude::*;
    let entries = match dir.entries() {
        Ok(entries) => entries,
        Err(e) => {
            visitor.on_error(path, &e);
            return (LEFT_ONE, Vec::new());
        }
    };
    let (subdirs, mut others): (Vec<RawEntry>, Vec<RawEntry>) = entries
        .into_iter()
        .partition(|e| e.kind == Some(EntryKind::Dir));
    // Directory order is hash order on ext4; inode order touches each inode
    // table block once instead of at random (what `rm -rf` does too).
    others.sort_unstable_by_key(|e| e.ino);
    let settle = |path: &mut PathBuf, batch: &[RawEntry]| {
        let mut totals = TreeTotals::default();
        let mut enter = Vec::new();
        for entry in batch {
            path.push(entry.name_os());
            let kind = match entry.kind {
                Some(kind) => Ok(kind),
                None => dir.kind_at(&entry.name),
            };
            match kind {
                Ok(kind) => match visitor.visit(dir, &entry.name, path, kind) {
                    Visit::Done(t) => totals = totals + t,
                    Visit::Enter { remove } => enter.push((entry.name.clone(), remove)),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    visitor.on_error(path, &e);
                    totals = totals + LEFT_ONE;
                }
            }
            path.pop();
        }
        (totals, enter)
    };
    let merge = |(ta, mut ea): (TreeTotals, Vec<_>), (tb, eb): (TreeTotals, Vec<_>)| {
        ea.extend(eb);
        (ta + tb, ea)
    };
    // Parallel batches each need their own path; a deep chain of folders
    // with a file or two each must not copy its long path per level.
    let (file_totals, mut enter) = if others.len() > WALK_BATCH {
        let base: &Path = path;
        others
            .par_chunks(WALK_BATCH)
            .map(|batch| {
                let done = settle(&mut base.to_path_buf(), batch);
                visitor.on_progress(done.0.files);
                done
            })
            .reduce(|| (TreeTotals::default(), Vec::new()), merge)
    } else {
        let done = settle(path, &others);
        visitor.on_progress(done.0.files);
        done
    };
    let (dir_totals, dir_enter) = settle(path, &subdirs);
    enter.extend(dir_enter);
    let mut totals = file_totals + dir_totals;
    if parallel && enter.len() > 1 {
        let base: &Path = path;
        totals = totals
            + enter
                .par_iter()
                .map(|(name, remove)| {
                    let child_path = base.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
                    match dir.open_dir(name) {
                        Ok(child) => walk_dir_at(
                            dir,
                            Some(probe),
                            name,
                            child,
                            &child_path,
                            *remove,
                            visitor,
                            nest + 1,
                        ),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => TreeTotals::default(),
                        Err(e) => {
                            visitor.on_error(&child_path, &e);
                            LEFT_ONE
                        }
                    }
                })
                .reduce(TreeTotals::default, |a, b| a + b);
        enter.clear();
    }
    (totals, enter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(dev: u64, mount_root: Option<bool>, mnt_id: Option<u64>) -> Probe {
        Probe {
            id: DirId { dev, ino: 1 },
            mount_root,
            mnt_id,
        }
    }

    #[test]
    fn mount_points_are_told_by_attribute_then_mount_id_then_device() {
        let parent = probe(1, Some(false), Some(10));
        // A bind mount of the same filesystem: same device, yet a mount root.
        assert!(probe(1, Some(true), Some(11)).is_mount_below(&parent));
        assert!(!probe(1, Some(false), Some(10)).is_mount_below(&parent));
        // No attribute (older kernels): the mount id decides.
        assert!(probe(1, None, Some(11)).is_mount_below(&parent));
        assert!(!probe(1, None, Some(10)).is_mount_below(&parent));
        // No statx at all: only another device is seen.
        let old = probe(1, None, None);
        assert!(probe(2, None, None).is_mount_below(&old));
        assert!(!probe(1, None, None).is_mount_below(&old));
    }

    #[test]
    fn a_bind_mount_is_seen_by_the_probe() {
        let dir = tempfile::tempdir().unwrap();
        let victim = tempfile::tempdir().unwrap();
        let target = dir.path().join("mnt");
        std::fs::create_dir(&target).unwrap();
        let mounted = std::process::Command::new("mount")
            .arg("--bind")
            .arg(victim.path())
            .arg(&target)
            .status()
            .unwrap();
        assert!(
            mounted.success(),
            "mount --bind failed; this test needs root (skip it with --skip bind_mount)"
        );
        let parent = DirFd::open(dir.path()).unwrap();
        let child = parent.open_dir(c"mnt");
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&target)
            .status();
        let child = child.unwrap();
        let (parent, child) = (parent.probe().unwrap(), child.probe().unwrap());
        assert_eq!(
            parent.id.dev, child.id.dev,
            "a bind mount of the same filesystem"
        );
        assert!(child.is_mount_below(&parent));
        // And an ordinary folder is not one.
        let tmp = DirFd::open(&std::env::temp_dir()).unwrap().probe().unwrap();
        let plain = DirFd::open(victim.path()).unwrap().probe().unwrap();
        assert!(!plain.is_mount_below(&tmp));
    }
}
