//! Choosing a run's id, under the store lock: ids are never reused.
//!
//! A folder scan alone would hand out an id again once `cleanup` removed its
//! holder, so each namespace keeps a high-water mark, the greatest timestamp
//! id issued there, in `.artifactctl/ids.json`. A default id in the same
//! second as the mark takes the next suffix after it. The mark is advisory:
//! if the file is lost or damaged, the scan still prevents clashes with runs
//! that exist, and the next publish writes it again.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use crate::error::ArtifactError;
use crate::fsx;
use crate::store::layout::INTERNAL_DIR;
use crate::store::refs::{self, Namespace, Stage};
use crate::store::{RunLocation, Store};

/// How many same-second ids to try before giving up.
const MAX_ID_SUFFIX: u32 = 999;

const IDS_FILE: &str = "ids.json";

/// What the caller asks for.
#[derive(Debug, Clone, Copy)]
pub enum IdRequest<'a> {
    /// The user's `--id` (or a release version): taken means an error.
    Exact(&'a str),
    /// An id reserved earlier (a refresh's): used if still free, otherwise
    /// the next free one, so a finished run is never thrown away.
    Reserved(&'a str),
    /// A timestamp id from this time, with a suffix when needed.
    Default(DateTime<Utc>),
}

/// The chosen location, and a note when a reserved id had to change.
pub struct Chosen {
    pub location: RunLocation,
    pub note: Option<String>,
}

fn marks_path(store: &Store) -> PathBuf {
    store.dir().join(INTERNAL_DIR).join(IDS_FILE)
}

fn key(stage: Stage, ns: &Namespace) -> String {
    if ns.is_root() {
        format!("{stage}/")
    } else {
        format!("{stage}/{ns}/")
    }
}

fn load_marks(store: &Store) -> BTreeMap<String, String> {
    // A damaged file is not fatal: see the module comment.
    crate::store::metadata::read_no_follow(&marks_path(store))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The first timestamp id of `base`'s second that sorts after `mark`, when
/// both are of the same second.
fn after_mark(base: &str, mark: Option<&str>) -> u32 {
    let Some(mark) = mark else { return 0 };
    if mark.get(..15) != base.get(..15) {
        return 0;
    }
    match mark.get(16..).and_then(|n| n.parse::<u32>().ok()) {
        Some(n) => n + 1,
        None => 1,
    }
}

/// Choose an id for a new run in `stage`/`ns`. The caller holds the lock.
pub fn choose(store: &Store, stage: Stage, ns: &Namespace, request: IdRequest) -> Result<Chosen> {
    let marks = load_marks(store);
    let mark = marks.get(&key(stage, ns)).map(String::as_str);
    // The location of `id` when nothing is there yet.
    let free = |id: &str| -> Result<Option<RunLocation>> {
        let location = store.location(stage, ns, id)?;
        Ok(match location.path.symlink_metadata() {
            Ok(_) => None,
            Err(_) => Some(location),
        })
    };
    let free_after = |base: &str, first: u32| -> Result<RunLocation> {
        for n in first..=MAX_ID_SUFFIX {
            let id = if n == 0 {
                base.to_string()
            } else {
                refs::suffixed_id(base, n)
            };
            if let Some(location) = free(&id)? {
                return Ok(location);
            }
        }
        Err(ArtifactError::conflict(format!(
            "more than {MAX_ID_SUFFIX} runs were created in the second of {base}; pass --id"
        ))
        .into())
    };
    let chosen = match request {
        IdRequest::Exact(id) => match free(id)? {
            Some(location) => Chosen {
                location,
                note: None,
            },
            None => {
                return Err(ArtifactError::conflict(format!(
                    "{} already exists; ids are never reused: choose another --id",
                    store.location(stage, ns, id)?.reference()
                ))
                .into())
            }
        },
        IdRequest::Reserved(id) => match free(id)? {
            Some(location) => Chosen {
                location,
                note: None,
            },
            None => {
                let base = id
                    .get(..15)
                    .filter(|_| refs::id_time(id).is_some())
                    .unwrap_or(id);
                let location = free_after(base, after_mark(base, mark).max(1))?;
                let note = format!(
                    "{} was taken by another writer while this run was built; published as {}",
                    store.location(stage, ns, id)?.reference(),
                    location.reference()
                );
                Chosen {
                    location,
                    note: Some(note),
                }
            }
        },
        IdRequest::Default(at) => {
            let base = refs::default_id(at);
            let location = free_after(&base, after_mark(&base, mark))?;
            Chosen {
                location,
                note: None,
            }
        }
    };
    raise_mark(store, stage, ns, marks, &chosen.location.id)?;
    Ok(chosen)
}

/// Record a batch of exact ids as issued (`register --all`): the marks file
/// is read and written once. The caller holds the lock and has checked that
/// each id is free.
pub fn raise_marks(store: &Store, issued: &[(Stage, Namespace, String)]) -> Result<()> {
    let mut marks = load_marks(store);
    let mut changed = false;
    for (stage, ns, id) in issued {
        if refs::id_time(id).is_none() {
            continue;
        }
        let k = key(*stage, ns);
        if marks.get(&k).is_some_and(|m| m.as_str() >= id.as_str()) {
            continue;
        }
        marks.insert(k, id.clone());
        changed = true;
    }
    if !changed {
        return Ok(());
    }
    let path = marks_path(store);
    fsx::ensure_internal_dir(store.dir(), "")?;
    let text = serde_json::to_string_pretty(&marks)?;
    fsx::atomic_write(&path, text.as_bytes())
        .with_context(|| format!("cannot record the id high-water mark in {}", path.display()))
}

/// Record `id` as issued when it is a timestamp id beyond the mark.
fn raise_mark(
    store: &Store,
    stage: Stage,
    ns: &Namespace,
    mut marks: BTreeMap<String, String>,
    id: &str,
) -> Result<()> {
    if refs::id_time(id).is_none() {
        return Ok(());
    }
    let k = key(stage, ns);
    if marks.get(&k).is_some_and(|m| m.as_str() >= id) {
        return Ok(());
    }
    marks.insert(k, id.to_string());
    let path = marks_path(store);
    fsx::ensure_internal_dir(store.dir(), "")?;
    let text = serde_json::to_string_pretty(&marks)?;
    fsx::atomic_write(&path, text.as_bytes())
        .with_context(|| format!("cannot record the id high-water mark in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_moves_default_ids_past_it_within_its_second() {
        assert_eq!(after_mark("20261123_101500", None), 0);
        assert_eq!(after_mark("20261123_101500", Some("20261123_101500")), 1);
        assert_eq!(
            after_mark("20261123_101500", Some("20261123_101500_004")),
            5
        );
        assert_eq!(
            after_mark("20261123_101501", Some("20261123_101500_004")),
            0
        );
    }

    #[test]
    fn ids_are_never_reused_after_their_holder_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path());
        let ns = Namespace::root();
        let at = DateTime::parse_from_rfc3339("2026-11-23T10:15:00Z")
            .unwrap()
            .to_utc();
        let first = choose(&store, Stage::Raw, &ns, IdRequest::Default(at)).unwrap();
        assert_eq!(first.location.id, "20261123_101500");
        // Nothing was created: the folder scan alone would give the same id.
        let second = choose(&store, Stage::Raw, &ns, IdRequest::Default(at)).unwrap();
        assert_eq!(second.location.id, "20261123_101500_001");
        std::fs::create_dir_all(&second.location.path).unwrap();
        let reserved = choose(
            &store,
            Stage::Raw,
            &ns,
            IdRequest::Reserved("20261123_101500_001"),
        )
        .unwrap();
        assert_eq!(reserved.location.id, "20261123_101500_002");
        assert!(reserved.note.is_some());
        assert!(choose(
            &store,
            Stage::Raw,
            &ns,
            IdRequest::Exact("20261123_101500_001")
        )
        .is_err());
    }
}
