//! Finding runs: which folders are runs and which are namespaces.

use std::fs;
use std::path::{Path, PathBuf};

use crate::store::layout::is_hidden_or_pointer;
use crate::store::metadata::{METADATA_FILE, TRAINING_METADATA_FILE};
use crate::store::model::*;
use crate::store::refs::{self, Namespace, Stage};

/// A folder is a run when it holds metadata, is named like a timestamp, or
/// holds files of its own; otherwise it is a namespace to look inside.
pub(crate) fn is_run_dir(path: &Path, name: &str) -> bool {
    // The name test costs no syscall and settles every default id.
    if refs::id_time(name).is_some()
        || path.join(METADATA_FILE).symlink_metadata().is_ok()
        || path.join(TRAINING_METADATA_FILE).symlink_metadata().is_ok()
    {
        return true;
    }
    let Ok(entries) = fs::read_dir(path) else {
        return false;
    };
    entries.flatten().any(|e| {
        let n = e.file_name().to_string_lossy().into_owned();
        !is_hidden_or_pointer(&n)
            && !n.to_ascii_lowercase().starts_with("readme")
            && e.file_type().is_ok_and(|t| t.is_file())
    })
}

pub(crate) fn walk_namespace(
    dir: &Path,
    stage: Stage,
    ns: &Namespace,
    depth: usize,
    out: &mut Vec<RunLocation>,
) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut dirs: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| !is_hidden_or_pointer(name))
        .collect();
    dirs.sort();
    for (name, path) in dirs {
        if is_run_dir(&path, &name) {
            out.push(RunLocation {
                stage,
                namespace: ns.clone(),
                id: name,
                path,
            });
        } else if depth > 0 {
            walk_namespace(&path, stage, &ns.child(&name), depth - 1, out);
        }
    }
}

/// What one namespace folder holds: its runs (name and folder inode, as
/// `readdir` reports them) and its child namespace folders, each sorted by
/// name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    pub runs: Vec<(String, u64)>,
    pub namespaces: Vec<String>,
}

/// List and classify the folder `dir`; `None` if it cannot be listed.
pub(crate) fn scan_dir(dir: &Path) -> Option<Scan> {
    use std::os::unix::fs::DirEntryExt;
    let entries = fs::read_dir(dir).ok()?;
    let mut dirs: Vec<(String, u64)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.ino()))
        .filter(|(name, _)| !is_hidden_or_pointer(name))
        .collect();
    dirs.sort();
    let mut scan = Scan::default();
    for (name, ino) in dirs {
        if is_run_dir(&dir.join(&name), &name) {
            scan.runs.push((name, ino));
        } else {
            scan.namespaces.push(name);
        }
    }
    Some(scan)
}
