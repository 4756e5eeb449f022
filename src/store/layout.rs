//! The names of a store's layout, in one place: stage folders come from
//! [`Stage`](crate::store::refs::Stage); everything artifactctl keeps for
//! itself lives under [`INTERNAL_DIR`].

use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::store::refs::Stage;

/// artifactctl's own folder inside a store: lock, staging, trash, journal.
pub const INTERNAL_DIR: &str = ".artifactctl";
/// The link (or pointer file) naming a namespace's current run.
pub const LATEST: &str = "latest";
/// Where symlinks are unavailable, `latest` is this file holding the id.
pub const LATEST_POINTER: &str = "latest_pointer.txt";
/// Under [`INTERNAL_DIR`]: runs being assembled.
pub const STAGING_DIR: &str = "staging";
/// Under [`INTERNAL_DIR`]: runs being removed.
pub const TRASH_DIR: &str = "trash";
/// Under [`INTERNAL_DIR`]: folders moved in by a `register --move` that died,
/// kept when they could not go back where they came from; never swept.
pub const RECOVERED_DIR: &str = "recovered";
/// Suffix of the record beside a staging folder that was moved in, holding
/// the folder's original path, so it can be given back after any crash.
/// Under [`INTERNAL_DIR`]: one lock file per live writer process, whose
/// `flock` tells the sweep that its staging and trash folders are in use.
pub const OWNERS_DIR: &str = "owners";
pub const ORIGIN_SUFFIX: &str = ".origin";
/// Under [`INTERNAL_DIR`]: the writer lock file.
pub const LOCK_FILE: &str = "lock";
/// Under [`INTERNAL_DIR`]: the run index, one file per stage and namespace
/// (see [`crate::store::index`]).
pub const INDEX_DIR: &str = "index";
/// Under [`INTERNAL_DIR`]: the append-only audit journal.
pub const JOURNAL_FILE: &str = "journal.jsonl";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Staged,
    Flat,
}

/// Staged when `raw/` is there, or when the folder holds nothing but stage
/// folders (or nothing at all). A folder with runs directly inside is flat,
/// even with `validated/` and `production/` beside them: that is a flat store
/// (seed 002's `models/`, seed 003's `backend/models/`) promoted in place.
pub(crate) fn detect_layout(dir: &Path) -> Layout {
    if dir.join(Stage::Raw.as_str()).is_dir() {
        return Layout::Staged;
    }
    let other = match fs::read_dir(dir) {
        Ok(mut entries) => entries.any(|e| {
            e.is_ok_and(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let stage = Stage::ALL.iter().any(|s| s.as_str() == name);
                // A seed's stray files (README, latest_pointer.txt) beside
                // the stage folders do not make a flat store.
                !stage && !is_hidden_or_pointer(&name) && e.file_type().is_ok_and(|t| t.is_dir())
            })
        }),
        Err(_) => false,
    };
    if other {
        Layout::Flat
    } else {
        Layout::Staged
    }
}

pub(crate) fn is_hidden_or_pointer(name: &str) -> bool {
    name.starts_with('.') || name == LATEST || name == LATEST_POINTER
}
