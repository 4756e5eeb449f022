//! A `file://` remote: the same layout as on object storage, in a folder on
//! a shared mount. `object_store`'s local filesystem has no
//! compare-and-swap, so both conditional writes come from rename without
//! replace (`fsx::remote::create_object`):
//! - create-only: a temporary file renamed to the key with
//!   `RENAME_NOREPLACE`; of two writers exactly one wins;
//! - compare-and-swap (keys under `latest/`, the catalog index, the GC
//!   marks): the key is a folder of generations `<20 digits>`, each written
//!   create-only; a reader takes the highest, and its number is the version
//!   a swap names. Swapping from generation N creates N+1, so of two writers
//!   that read N exactly one creates N+1 and the other gets a conflict,
//!   re-reads and decides again. No lock is taken, and a writer killed at
//!   any point leaves either the old highest generation or the new one.
//! - `latest` keeps its generations (a few bytes each, its history); the
//!   index and the marks are large, so a swap to N+1 removes generations
//!   below N. A writer whose N+1 lands while a higher generation exists (it
//!   read a generation since removed) gets a conflict too: its write is
//!   shadowed, never current.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::backend::{Got, Mode, Put};
use crate::error::ArtifactError;
use crate::fsx;

fn swapped(key: &str) -> bool {
    key.starts_with("latest/") || pruned(key)
}

/// Swapped keys whose old generations are removed.
fn pruned(key: &str) -> bool {
    key == super::catalog::INDEX_KEY || key == super::gc::MARKS_KEY
}

fn generation_name(n: u64) -> String {
    format!("{n:020}")
}

/// The highest generation in `dir`, if any.
fn highest(dir: &Path) -> Result<Option<u64>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut top = None;
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        // Temporary files start with a dot; anything else foreign is not
        // a generation.
        if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) {
            let n: u64 = name.parse()?;
            top = top.max(Some(n));
        }
    }
    Ok(top)
}

fn read(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

pub fn get(root: &Path, key: &str) -> Result<Option<Got>> {
    let path = root.join(key);
    if !swapped(key) {
        return Ok(read(&path)?.map(|bytes| Got { bytes, etag: None }));
    }
    // A generation removed between listing and reading has a successor:
    // list again.
    for _ in 0..100 {
        let Some(n) = highest(&path)? else {
            return Ok(None);
        };
        if let Some(bytes) = read(&path.join(generation_name(n)))? {
            return Ok(Some(Got {
                bytes,
                etag: Some(n.to_string()),
            }));
        }
    }
    anyhow::bail!("{key} changed under every read; run it again")
}

fn written(created: io::Result<bool>, path: &Path) -> Result<bool> {
    created.with_context(|| format!("cannot write {}", path.display()))
}

pub fn put(root: &Path, key: &str, bytes: &[u8], mode: Mode) -> Result<Put> {
    let path = root.join(key);
    if !swapped(key) {
        return match mode {
            Mode::Create => Ok(
                if written(fsx::remote::create_object(&path, bytes), &path)? {
                    Put::Done
                } else {
                    Put::Exists
                },
            ),
            Mode::Overwrite => {
                fsx::remote::replace_object(&path, bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(Put::Done)
            }
            Mode::Update(_) => {
                anyhow::bail!("{key}: only latest objects are swapped on a file:// remote")
            }
        };
    }
    let (next, lost) = match mode {
        Mode::Create => (1, Put::Exists),
        Mode::Overwrite => anyhow::bail!("{key}: latest objects are only swapped"),
        Mode::Update(etag) => {
            let n: u64 = etag
                .parse()
                .map_err(|_| anyhow::anyhow!("{key}: bad generation {etag:?}"))?;
            (n + 1, Put::Conflict)
        }
    };
    // Create-only also means no generation at all yet.
    if next == 1 && highest(&path)?.is_some() {
        return Ok(lost);
    }
    let target = path.join(generation_name(next));
    if !written(fsx::remote::create_object(&target, bytes), &target)? {
        return Ok(lost);
    }
    if pruned(key) {
        if highest(&path)? != Some(next) {
            return Ok(lost);
        }
        remove_below(&path, next - 1)?;
    }
    Ok(Put::Done)
}

/// Remove the generations below `keep` in `dir`.
fn remove_below(dir: &Path, keep: u64) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.len() == 20
            && name.bytes().all(|b| b.is_ascii_digit())
            && name.parse::<u64>()? < keep
        {
            let old = dir.join(&*name);
            fsx::remote::remove_object(&old)
                .with_context(|| format!("cannot remove {}", old.display()))?;
        }
    }
    Ok(())
}

pub fn put_file(root: &Path, key: &str, src: &Path, expected: &str, replace: bool) -> Result<Put> {
    let path = root.join(key);
    match fsx::remote::create_object_from(&path, src, expected, replace) {
        Ok(true) => Ok(Put::Done),
        Ok(false) => Ok(Put::Exists),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(ArtifactError::corrupt(format!(
            "{e}; nothing of it was pushed: `artifactctl verify` shows the damage"
        ))
        .into()),
        Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
    }
}

pub fn get_into(
    root: &Path,
    key: &str,
    file: &mut fs::File,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<Option<(String, u64)>> {
    let path = root.join(key);
    let mut from = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = from
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
        fsx::fault::hit(fsx::fault::Point::Write)?;
        file.write_all(&buf[..n])
            .context("cannot write a pulled file")?;
        on_bytes(n as u64);
    }
    Ok(Some((hasher.finalize().to_hex().to_string(), size)))
}

/// The bytes of `key` in each of `ranges`, short where the file ends.
pub fn get_ranges(
    root: &Path,
    key: &str,
    ranges: &[std::ops::Range<u64>],
) -> Result<Option<Vec<Vec<u8>>>> {
    use std::os::unix::fs::FileExt;
    let path = root.join(key);
    let file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let size = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let mut out = Vec::with_capacity(ranges.len());
    for range in ranges {
        let end = range.end.min(size);
        let mut buf = vec![0u8; end.saturating_sub(range.start) as usize];
        file.read_exact_at(&mut buf, range.start)
            .with_context(|| format!("cannot read {}", path.display()))?;
        out.push(buf);
    }
    Ok(Some(out))
}

/// Every key under `prefix` with its size and modification time.
pub fn list_meta(root: &Path, prefix: &str) -> Result<Vec<super::backend::Listed>> {
    let mut out = Vec::new();
    for key in list(root, prefix)? {
        let path = root.join(&key);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            // Removed since it was listed.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        out.push(super::backend::Listed {
            key,
            size: meta.len(),
            modified: meta.modified()?.into(),
        });
    }
    Ok(out)
}

/// Every key under `prefix`, temporary files left out.
pub fn list(root: &Path, prefix: &str) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut todo: Vec<PathBuf> = vec![root.join(prefix)];
    while let Some(dir) = todo.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                todo.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                keys.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swap_from_a_stale_generation_conflicts_and_create_only_refuses_a_second() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let key = "latest/raw/ns=";
        assert!(get(root, key).unwrap().is_none());
        assert_eq!(put(root, key, b"a", Mode::Create).unwrap(), Put::Done);
        assert_eq!(put(root, key, b"b", Mode::Create).unwrap(), Put::Exists);
        let seen = get(root, key).unwrap().unwrap();
        assert_eq!(
            (seen.bytes.as_slice(), seen.etag.as_deref()),
            (&b"a"[..], Some("1"))
        );
        let etag = seen.etag.unwrap();
        assert_eq!(
            put(root, key, b"c", Mode::Update(etag.clone())).unwrap(),
            Put::Done
        );
        // A second writer that read generation 1 too loses.
        assert_eq!(
            put(root, key, b"d", Mode::Update(etag)).unwrap(),
            Put::Conflict
        );
        assert_eq!(get(root, key).unwrap().unwrap().bytes, b"c");

        assert_eq!(
            put(root, "runs/x.json", b"1", Mode::Create).unwrap(),
            Put::Done
        );
        assert_eq!(
            put(root, "runs/x.json", b"2", Mode::Create).unwrap(),
            Put::Exists
        );
        assert_eq!(get(root, "runs/x.json").unwrap().unwrap().bytes, b"1");
        assert_eq!(list(root, "runs").unwrap(), vec!["runs/x.json".to_string()]);
    }

    #[test]
    fn the_index_keeps_two_generations_and_a_swap_from_a_removed_one_loses() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let key = crate::remote::catalog::INDEX_KEY;
        assert_eq!(put(root, key, b"1", Mode::Create).unwrap(), Put::Done);
        for n in 1..4 {
            let etag = n.to_string();
            assert_eq!(
                put(root, key, b"next", Mode::Update(etag)).unwrap(),
                Put::Done
            );
        }
        let mut gens: Vec<String> = fs::read_dir(root.join(key))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        gens.sort();
        assert_eq!(gens, [generation_name(3), generation_name(4)]);
        // A writer that read generation 1 creates 2, which was removed: a
        // higher one exists, so its write is shadowed and it is told so.
        assert_eq!(
            put(root, key, b"stale", Mode::Update("1".into())).unwrap(),
            Put::Conflict
        );
        let got = get(root, key).unwrap().unwrap();
        assert_eq!(
            (got.bytes.as_slice(), got.etag.as_deref()),
            (&b"next"[..], Some("4"))
        );
    }
}
