//! The manifest of a run: every file with its size and BLAKE3 hash, hashed in
//! parallel across files (and within large files).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::progress::{Progress, Unit};
use crate::store::metadata::{FileEntry, Stamp, METADATA_FILE};

/// Files at least this large are memory-mapped and hashed on several threads.
const MMAP_THRESHOLD: u64 = 1 << 20;

pub fn hash_file(path: &Path) -> Result<String> {
    let mut hasher = blake3::Hasher::new();
    let len = path.symlink_metadata().map(|m| m.len()).unwrap_or(0);
    if len >= MMAP_THRESHOLD {
        hasher.update_mmap_rayon(path)
    } else {
        hasher.update_reader(crate::store::metadata::open_regular(path, false)?)
    }
    .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hasher.finalize().to_hex().to_string())
}

pub fn hash_bytes(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// One entry of a run folder, before hashing.
#[derive(Debug, Clone)]
pub struct Found {
    pub rel: String,
    /// The exact bytes of `rel` when it is not UTF-8 (hex), see
    /// [`FileEntry::path_bytes`].
    pub rel_bytes: Option<String>,
    pub path: PathBuf,
    pub size: u64,
    pub symlink: Option<String>,
}

/// Every file and symlink below `dir`, except the run's own `metadata.json`,
/// sorted by path. Symlinks are listed, never followed.
pub fn list_files(dir: &Path) -> Result<Vec<Found>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let ft = entry.file_type();
        if entry.depth() == 0 || ft.is_dir() {
            continue;
        }
        let (rel, rel_bytes) = crate::store::metadata::encode_rel_path(
            entry
                .path()
                .strip_prefix(dir)
                .expect("walkdir stays below its root"),
        );
        if rel == METADATA_FILE {
            continue;
        }
        if ft.is_symlink() {
            let target = std::fs::read_link(entry.path())?
                .to_string_lossy()
                .into_owned();
            out.push(Found {
                rel,
                rel_bytes,
                path: entry.path().to_path_buf(),
                size: 0,
                symlink: Some(target),
            });
        } else if ft.is_file() {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(Found {
                rel,
                rel_bytes,
                path: entry.path().to_path_buf(),
                size,
                symlink: None,
            });
        }
    }
    Ok(out)
}

/// Hash every file below `dir` into manifest entries.
pub fn build(dir: &Path, reporter: &dyn Progress) -> Result<Vec<FileEntry>> {
    let found = list_files(dir)?;
    hash_all(found, reporter)
}

pub fn hash_all(found: Vec<Found>, reporter: &dyn Progress) -> Result<Vec<FileEntry>> {
    hash_files(found, reporter, false)
}

/// Manifest entries for every file below `dir` without reading regular
/// files: each gets its size and stamp and a pending hash (see
/// `ops::seal`); a symlink's target text is hashed as always.
pub fn build_pending(dir: &Path) -> Result<Vec<FileEntry>> {
    list_files(dir)?
        .into_iter()
        .map(|f| {
            let (blake3, stamp) = match &f.symlink {
                Some(target) => (Some(hash_bytes(target.as_bytes())), None),
                None => {
                    let meta = std::fs::symlink_metadata(&f.path)
                        .with_context(|| format!("cannot read {}", f.path.display()))?;
                    (None, Some(Stamp::of(&meta)))
                }
            };
            Ok(FileEntry {
                path: f.rel,
                size: f.size,
                blake3,
                symlink: f.symlink,
                path_bytes: f.rel_bytes,
                stamp,
            })
        })
        .collect()
}

/// Like [`build`], but stops with an interrupted error between files once
/// SIGINT or SIGTERM has arrived (see [`crate::interrupt`]).
pub fn build_interruptible(dir: &Path, reporter: &dyn Progress) -> Result<Vec<FileEntry>> {
    let found = list_files(dir)?;
    hash_files(found, reporter, true)
}

/// Like [`hash_all`], but stops between files on SIGINT or SIGTERM.
pub fn hash_all_interruptible(
    found: Vec<Found>,
    reporter: &dyn Progress,
) -> Result<Vec<FileEntry>> {
    hash_files(found, reporter, true)
}

fn hash_files(
    found: Vec<Found>,
    reporter: &dyn Progress,
    interruptible: bool,
) -> Result<Vec<FileEntry>> {
    let total: u64 = found.iter().map(|f| f.size).sum();
    reporter.begin("hashing", Some(total), Unit::Bytes);
    let entries = found
        .into_par_iter()
        .map(|f| {
            if interruptible {
                crate::interrupt::test_pause("hashing");
                crate::interrupt::check()?;
            }
            let blake3 = match &f.symlink {
                Some(target) => hash_bytes(target.as_bytes()),
                None => hash_file(&f.path)?,
            };
            reporter.advance(f.size);
            let stamp = match &f.symlink {
                Some(_) => None,
                None => std::fs::symlink_metadata(&f.path)
                    .ok()
                    .map(|m| Stamp::of(&m)),
            };
            Ok(FileEntry {
                path: f.rel,
                size: f.size,
                blake3: Some(blake3),
                symlink: f.symlink,
                path_bytes: f.rel_bytes,
                stamp,
            })
        })
        .collect::<Result<Vec<_>>>();
    reporter.end();
    entries
}

/// How `dir`'s files differ from `expected` (a step's recorded outputs,
/// paths relative to `dir`): missing, changed and added files, or `None`
/// when they match. A file whose size and stamp are as recorded is trusted
/// without reading it; any other is re-hashed (all of them with `rehash`).
pub fn damage(dir: &Path, expected: &[FileEntry], rehash: bool) -> Option<String> {
    let (mut missing, mut changed) = (0usize, 0usize);
    for entry in expected {
        let path = dir.join(entry.rel_path());
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            missing += 1;
            continue;
        };
        let same = match &entry.symlink {
            Some(target) => {
                std::fs::read_link(&path).is_ok_and(|t| t.to_string_lossy() == target.as_str())
            }
            None if !meta.is_file() || meta.len() != entry.size => false,
            None if !rehash && entry.stamp == Some(Stamp::of(&meta)) => true,
            None => hash_file(&path).is_ok_and(|h| Some(h) == entry.blake3),
        };
        if !same {
            changed += 1;
        }
    }
    let known: std::collections::BTreeSet<String> = expected.iter().map(FileEntry::key).collect();
    let added = list_files(dir)
        .map(|found| {
            found
                .iter()
                .filter(|f| {
                    let key = match &f.rel_bytes {
                        Some(hex) => format!("\u{0}{hex}"),
                        None => f.rel.clone(),
                    };
                    !known.contains(&key)
                })
                .count()
        })
        .unwrap_or(0);
    let mut parts = Vec::new();
    let plural = |n: usize| if n == 1 { "file" } else { "files" };
    if missing > 0 {
        parts.push(format!("{missing} {} missing", plural(missing)));
    }
    if changed > 0 {
        parts.push(format!("{changed} {} changed", plural(changed)));
    }
    if added > 0 {
        parts.push(format!("{added} {} added", plural(added)));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;

    #[test]
    fn manifest_lists_files_and_links_but_not_metadata() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("checkpoints")).unwrap();
        std::fs::write(dir.path().join("checkpoints/best.pt"), b"weights").unwrap();
        std::fs::write(dir.path().join(METADATA_FILE), b"{}").unwrap();
        std::os::unix::fs::symlink("best.pt", dir.path().join("checkpoints/latest.pt")).unwrap();
        let m = build(dir.path(), &Silent).unwrap();
        let paths: Vec<_> = m.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["checkpoints/best.pt", "checkpoints/latest.pt"]);
        assert_eq!(
            m[0].blake3.as_deref(),
            Some(hash_bytes(b"weights").as_str())
        );
        assert_eq!(m[1].symlink.as_deref(), Some("best.pt"));
    }

    #[test]
    fn large_files_hash_like_small_ones() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; (MMAP_THRESHOLD as usize) * 2 + 3];
        let p = dir.path().join("big");
        std::fs::write(&p, &data).unwrap();
        assert_eq!(hash_file(&p).unwrap(), hash_bytes(&data));
    }
}
