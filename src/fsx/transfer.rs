//! Moving bytes into a run: reflink, hard link, or copy, file by file and
//! tree by tree; links inside a tree must stay inside it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use super::fault::{self, Point};

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
/// out. Returns the bytes copied. Stops between files, with an error of
/// kind `Interrupted`, once SIGINT or SIGTERM has arrived.
pub fn copy_tree(
    src: &Path,
    dst: &Path,
    skip: &[&str],
    on_file: &(dyn Fn(u64) + Sync),
) -> io::Result<u64> {
    transfer_tree(src, dst, skip, on_file, clone_or_copy, true)
}

/// Like [`copy_tree`], but files are brought in with [`share_or_copy`]: a
/// reflink, or a hard link of a read-only file, so no bytes are copied where
/// the filesystem allows (refresh reusing a step's recorded outputs). Not
/// stopped by a signal: an interrupted refresh keeps what it has.
pub fn share_tree(src: &Path, dst: &Path) -> io::Result<u64> {
    transfer_tree(src, dst, &[], &|_| {}, share_or_copy, false)
}

/// Like [`copy_tree`], but every file is hard-linked where the filesystem
/// allows (copied across filesystems), for importing a legacy store without
/// a copy (`register --all`). A linked file is the same file on both sides,
/// so it is made read-only first: neither side can then change the other's.
pub fn link_tree(
    src: &Path,
    dst: &Path,
    skip: &[&str],
    on_file: &(dyn Fn(u64) + Sync),
) -> io::Result<u64> {
    transfer_tree(src, dst, skip, on_file, readonly_link_or_copy, true)
}

fn readonly_link_or_copy(src: &Path, dst: &Path) -> io::Result<u64> {
    let meta = src.symlink_metadata()?;
    let mode = meta.permissions().mode();
    if mode & 0o222 != 0 {
        fs::set_permissions(src, fs::Permissions::from_mode(mode & !0o222))?;
    }
    if fs::hard_link(src, dst).is_ok() {
        return Ok(meta.len());
    }
    clone_or_copy(src, dst)
}

pub(crate) fn transfer_tree(
    src: &Path,
    dst: &Path,
    skip: &[&str],
    on_file: &(dyn Fn(u64) + Sync),
    transfer: fn(&Path, &Path) -> io::Result<u64>,
    interruptible: bool,
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
            fault::hit(Point::Mkdir)?;
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
            fault::hit(Point::Symlink)?;
            symlink(&target, &out)?;
        } else if ft.is_file() {
            files.push((entry.path().to_path_buf(), out));
        }
    }
    files
        .par_iter()
        .map(|(from, to)| {
            // Between files, SIGINT or SIGTERM stops a copy (the caller
            // checks `crate::interrupt` to tell this error from others).
            if interruptible {
                crate::interrupt::test_pause("copying");
                if crate::interrupt::requested() {
                    return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
                }
            }
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
