//! Packs: many small files travel and rest as one object.
//!
//! An object store charges a request per object, and for a file of a few
//! kilobytes the request is all the cost. So a push that has many small
//! files to upload (at least [`PACK_MIN_FILES`] under [`PACKED_FILE_MAX`])
//! concatenates them into packs of about [`PACK_TARGET`] bytes:
//! - `packs/<p[0..2]>/<p>`: the files' content back to back, named by the
//!   BLAKE3 of the pack itself, written create-only;
//! - `packs/<p[0..2]>/<p>.toc`: which blob lies where in it, written after
//!   the pack (a table of contents never names a pack that is not there);
//! - the run's record says where each packed file's content lies, under
//!   `"packed": {"<pack>": {"<blob>": offset}}`, so a pull reads the
//!   record and fetches byte ranges, and garbage collection sees which
//!   packs a run references without reading any table of contents.
//!
//! Content is still stored once under its BLAKE3: a push learns which blobs
//! packs already hold from their tables of contents and references them.
//! A pack goes as a whole, when no record references it any more (two
//! phases with a grace, like a blob); packs are not rewritten to drop the
//! content of deleted runs, which a few megabytes a pack keeps cheap.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::backend::{Mode, Put};
use super::Remote;
use crate::error::ArtifactError;
use crate::store::metadata::Metadata;

/// Files smaller than this may go into packs.
pub(crate) const PACKED_FILE_MAX: u64 = 1 << 20;

/// A pack is closed once it holds this many bytes.
pub(crate) const PACK_TARGET: u64 = 8 << 20;

/// A push packs its small files only when it has at least this many to
/// upload: a handful costs a handful of requests anyway, and a loose blob
/// goes as soon as nothing references it.
pub(crate) const PACK_MIN_FILES: usize = 16;

/// The record's field that says where packed content lies.
const PACKED_FIELD: &str = "packed";

/// Where a blob's content lies in a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackedAt {
    pub pack: String,
    pub offset: u64,
}

/// A record's `packed` field: pack → blob → offset.
pub(crate) type PackedField = BTreeMap<String, BTreeMap<String, u64>>;

pub(crate) fn pack_key(pack: &str) -> String {
    format!("packs/{}/{pack}", &pack[..2])
}

fn toc_key(pack: &str) -> String {
    format!("{}.toc", pack_key(pack))
}

/// The table of contents a pack is written with.
#[derive(Debug, Serialize, Deserialize)]
struct Toc {
    schema_version: u32,
    /// Blob hash, offset, size.
    blobs: Vec<(String, u64, u64)>,
}

fn is_hash(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The bytes of a record: the run's `metadata.json`, and where its packed
/// content lies when any is.
pub(crate) fn record_bytes(meta: &Metadata, packed: &PackedField) -> Result<Vec<u8>> {
    let mut text = meta.to_json();
    if packed.is_empty() {
        return Ok(text.into_bytes());
    }
    // Spliced in before the closing brace: the metadata part stays exactly
    // the local `metadata.json`, which lets a re-push compare bytes.
    let tail = text.split_off(text.len() - "}\n".len());
    debug_assert_eq!(tail, "}\n");
    text.push_str(&format!(
        ",\n  \"{PACKED_FIELD}\": {}\n}}\n",
        serde_json::to_string(packed)?
    ));
    Ok(text.into_bytes())
}

/// Whether the record `got` holds exactly the metadata `ours` (the
/// `metadata.json` of a run pushed from here), with or without where its
/// packed content lies.
pub(crate) fn same_record_bytes(got: &[u8], ours: &[u8]) -> bool {
    if got == ours {
        return true;
    }
    let Some(head) = ours.strip_suffix(b"}\n") else {
        return false;
    };
    got.strip_prefix(head)
        .is_some_and(|rest| rest.starts_with(format!(",\n  \"{PACKED_FIELD}\": ").as_bytes()))
}

/// Take the `packed` field out of a record read from a remote (the local
/// `metadata.json` never holds it) and check it: pack names are hashes,
/// every blob is one of the run's files.
pub(crate) fn take_packed(meta: &mut Metadata) -> Result<HashMap<String, PackedAt>, String> {
    let Some(value) = meta.extra.remove(PACKED_FIELD) else {
        return Ok(HashMap::new());
    };
    let field: PackedField = serde_json::from_value(value)
        .map_err(|e| format!("its {PACKED_FIELD:?} field is not valid: {e}"))?;
    let files: std::collections::HashSet<&str> = meta
        .files
        .iter()
        .filter(|f| f.symlink.is_none())
        .filter_map(|f| f.blake3.as_deref())
        .collect();
    let mut out = HashMap::new();
    for (pack, blobs) in field {
        if !is_hash(&pack) {
            return Err(format!("it names a bad pack {pack:?}"));
        }
        for (blob, offset) in blobs {
            if !files.contains(blob.as_str()) {
                return Err(format!(
                    "pack {pack} is said to hold {blob:?}, none of its files"
                ));
            }
            out.insert(
                blob,
                PackedAt {
                    pack: pack.clone(),
                    offset,
                },
            );
        }
    }
    Ok(out)
}

/// What a record references: each pack its content lies in, and the blob of
/// each file not packed.
pub(crate) fn referenced(meta: &Metadata, packed: &HashMap<String, PackedAt>) -> Vec<String> {
    meta.files
        .iter()
        .filter(|f| f.symlink.is_none())
        .filter_map(|f| f.blake3.as_deref())
        .map(|hash| match packed.get(hash) {
            Some(at) => at.pack.clone(),
            None => hash.to_string(),
        })
        .collect()
}

/// The blobs the remote's packs hold, from their tables of contents; packs
/// garbage collection has marked are left out (their content is uploaded
/// again rather than trusted). A table of contents that cannot be read, or
/// that reaches past its pack, is passed over: its content is uploaded
/// again.
pub(crate) async fn packed_blobs(
    remote: &Remote,
    marks: &BTreeMap<String, chrono::DateTime<chrono::Utc>>,
    jobs: usize,
) -> Result<HashMap<String, PackedAt>> {
    let listed = remote.backend.list_meta("packs").await?;
    let mut sizes: HashMap<&str, u64> = HashMap::new();
    let mut tocs = Vec::new();
    for object in &listed {
        let name = object.key.rsplit('/').next().unwrap_or_default();
        match name.strip_suffix(".toc") {
            Some(pack) if is_hash(pack) => tocs.push(pack),
            Some(_) => {}
            None if is_hash(name) => {
                sizes.insert(name, object.size);
            }
            None => {}
        }
    }
    let wanted: Vec<(&str, u64)> = tocs
        .into_iter()
        .filter(|pack| !marks.contains_key(*pack))
        .filter_map(|pack| sizes.get(pack).map(|size| (pack, *size)))
        .collect();
    let mut reads = futures::stream::iter(wanted)
        .map(|(pack, size)| async move {
            let got = remote.backend.get(&toc_key(pack)).await?;
            anyhow::Ok((pack, size, got))
        })
        .buffer_unordered(jobs.max(1));
    let mut out = HashMap::new();
    while let Some(read) = reads.next().await {
        let (pack, size, got) = read?;
        let Some(toc) = got.and_then(|g| serde_json::from_slice::<Toc>(&g.bytes).ok()) else {
            continue;
        };
        let fits = toc.blobs.iter().all(|(hash, offset, len)| {
            is_hash(hash) && offset.checked_add(*len).is_some_and(|end| end <= size)
        });
        if !fits {
            continue;
        }
        for (hash, offset, _) in toc.blobs {
            out.entry(hash).or_insert(PackedAt {
                pack: pack.to_string(),
                offset,
            });
        }
    }
    Ok(out)
}

/// Files to pack: blob hash, local path, size.
pub(crate) type Small<'a> = (&'a str, PathBuf, u64);

/// Split `files` into packs of about [`PACK_TARGET`] bytes, in order.
pub(crate) fn group(files: Vec<Small<'_>>) -> Vec<Vec<Small<'_>>> {
    let mut out: Vec<Vec<Small>> = Vec::new();
    let mut filled = PACK_TARGET;
    for file in files {
        if filled >= PACK_TARGET {
            out.push(Vec::new());
            filled = 0;
        }
        filled += file.2;
        out.last_mut().expect("a pack was opened").push(file);
    }
    out
}

/// A pack uploaded: its name, where each blob lies, and whether this push
/// wrote it (or found it there).
pub(crate) struct Uploaded {
    pub pack: String,
    pub blobs: Vec<(String, u64)>,
    pub bytes: u64,
    pub written: bool,
}

/// Read the files of one pack, each checked against its BLAKE3, and upload
/// the pack, then its table of contents. A pack garbage collection has
/// marked is written again (which refreshes its time) rather than trusted.
pub(crate) async fn upload(
    remote: &Remote,
    files: &[Small<'_>],
    marks: &BTreeMap<String, chrono::DateTime<chrono::Utc>>,
) -> Result<Uploaded> {
    let mut bytes = Vec::with_capacity(files.iter().map(|f| f.2 as usize).sum());
    let mut toc = Toc {
        schema_version: 1,
        blobs: Vec::with_capacity(files.len()),
    };
    for (hash, path, _) in files {
        let offset = bytes.len() as u64;
        let content =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let actual = crate::store::manifest::hash_bytes(&content);
        if actual != *hash {
            return Err(ArtifactError::corrupt(format!(
                "{} does not match its manifest (BLAKE3 {actual}, recorded {hash}); nothing of it was pushed: `artifactctl verify` shows the damage",
                path.display()
            ))
            .into());
        }
        bytes.extend_from_slice(&content);
        toc.blobs
            .push((hash.to_string(), offset, content.len() as u64));
    }
    let pack = crate::store::manifest::hash_bytes(&bytes);
    let size = bytes.len() as u64;
    crate::interrupt::check()?;
    crate::fsx::fault::hit(crate::fsx::fault::Point::Upload)?;
    let mode = if marks.contains_key(&pack) {
        Mode::Overwrite
    } else {
        Mode::Create
    };
    let backend = &remote.backend;
    let written = backend.put(&pack_key(&pack), bytes, mode).await? == Put::Done;
    // Create-only: an identical pack came with an identical table.
    backend
        .put(&toc_key(&pack), serde_json::to_vec(&toc)?, Mode::Create)
        .await?;
    Ok(Uploaded {
        blobs: toc
            .blobs
            .into_iter()
            .map(|(hash, offset, _)| (hash, offset))
            .collect(),
        pack,
        bytes: size,
        written,
    })
}

/// Fetch the packed files of a pull from one pack, in byte ranges (near
/// ones in one request): each file's bytes, in the order of `ranges`.
/// `None` when the pack is missing.
pub(crate) async fn fetch(
    remote: &Remote,
    pack: &str,
    ranges: &[std::ops::Range<u64>],
) -> Result<Option<Vec<Vec<u8>>>> {
    remote.backend.get_ranges(&pack_key(pack), ranges).await
}

/// The table of contents of the pack behind `key`, when `key` is a pack.
pub(crate) fn toc_of(key: &str) -> Option<String> {
    let name = key.strip_prefix("packs/")?.rsplit('/').next()?;
    is_hash(name).then(|| format!("{key}.toc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_with(hashes: &[&str]) -> Metadata {
        let mut meta: Metadata = serde_json::from_value(serde_json::json!({
            "schema_version": 1,
            "id": "20260101_000000",
            "stage": "raw",
            "created_at": "2026-01-01T00:00:00Z",
            "status": "complete",
        }))
        .unwrap();
        meta.files = hashes
            .iter()
            .enumerate()
            .map(|(i, h)| {
                serde_json::from_value(serde_json::json!({
                    "path": format!("f{i}"), "size": 3, "blake3": h
                }))
                .unwrap()
            })
            .collect();
        meta
    }

    #[test]
    fn a_record_with_packed_content_is_its_metadata_plus_one_field() {
        let a = "a".repeat(64);
        let p = "b".repeat(64);
        let meta = meta_with(&[&a]);
        let mut field = PackedField::new();
        field.entry(p.clone()).or_default().insert(a.clone(), 7);
        let bytes = record_bytes(&meta, &field).unwrap();
        let ours = meta.to_json().into_bytes();
        assert!(same_record_bytes(&bytes, &ours));
        assert!(same_record_bytes(&ours, &ours));
        assert!(!same_record_bytes(b"{}\n", &ours));
        let mut read: Metadata = serde_json::from_slice(&bytes).unwrap();
        let packed = take_packed(&mut read).unwrap();
        assert_eq!(read, meta);
        assert_eq!(
            packed[&a],
            PackedAt {
                pack: p.clone(),
                offset: 7
            }
        );
        assert_eq!(referenced(&read, &packed), vec![p]);
        assert_eq!(record_bytes(&meta, &PackedField::new()).unwrap(), ours);
    }

    #[test]
    fn a_packed_field_naming_other_content_or_a_bad_pack_is_refused() {
        let a = "a".repeat(64);
        let mut meta = meta_with(&[&a]);
        meta.extra.insert(
            PACKED_FIELD.into(),
            serde_json::json!({ "b".repeat(64): { "c".repeat(64): 0 } }),
        );
        assert!(take_packed(&mut meta.clone())
            .unwrap_err()
            .contains("none of its files"));
        meta.extra.insert(
            PACKED_FIELD.into(),
            serde_json::json!({ "../x": { a.clone(): 0 } }),
        );
        assert!(take_packed(&mut meta.clone())
            .unwrap_err()
            .contains("bad pack"));
        meta.extra.insert(
            PACKED_FIELD.into(),
            serde_json::json!({ "b".repeat(64): { a: -1 } }),
        );
        assert!(take_packed(&mut meta).unwrap_err().contains("not valid"));
    }

    #[test]
    fn packs_close_once_they_reach_the_target() {
        let h = "a".repeat(64);
        let files: Vec<Small> = (0..20)
            .map(|i| (h.as_str(), PathBuf::from(format!("f{i}")), PACK_TARGET / 8))
            .collect();
        let groups = group(files);
        assert_eq!(groups.iter().map(Vec::len).collect::<Vec<_>>(), [8, 8, 4]);
        assert!(group(Vec::new()).is_empty());
    }

    #[test]
    fn only_pack_objects_have_a_table_of_contents() {
        let p = "c".repeat(64);
        assert_eq!(toc_of(&pack_key(&p)), Some(format!("packs/cc/{p}.toc")));
        assert_eq!(toc_of(&format!("blobs/cc/{p}")), None);
        assert_eq!(toc_of(&format!("packs/cc/{p}.toc")), None);
    }
}
