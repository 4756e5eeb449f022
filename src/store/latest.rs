//! Reading `latest` without ever following it out of its folder, and
//! choosing the newest complete run where it is missing.

use std::collections::HashMap;
use std::fs;
use std::path::{Component, Path};

use crate::store::layout::{LATEST, LATEST_POINTER};
use crate::store::metadata::RunStatus;
use crate::store::model::*;
use crate::store::refs::{self, Namespace, Stage};
use crate::store::version::ReleaseKey;
use crate::store::Store;

/// Read `<dir>/latest` without following it anywhere it should not go.
pub fn read_latest(ns_dir: &Path) -> LatestState {
    let link = ns_dir.join(LATEST);
    match link.symlink_metadata() {
        Ok(meta) if meta.file_type().is_symlink() => {
            let Ok(target) = fs::read_link(&link) else {
                return LatestState::Missing;
            };
            let text = target.to_string_lossy().into_owned();
            match sibling_name(&target) {
                Some(id)
                    if ns_dir
                        .join(&id)
                        .symlink_metadata()
                        .is_ok_and(|m| m.is_dir()) =>
                {
                    LatestState::Link(id)
                }
                Some(_) => LatestState::Dangling(text),
                None => LatestState::Escaping(text),
            }
        }
        Ok(_) => LatestState::NotALink,
        Err(_) => {
            let Ok(text) = fs::read_to_string(ns_dir.join(LATEST_POINTER)) else {
                return LatestState::Missing;
            };
            // Seed 002 writes the whole target path; only its last part is
            // trusted, and only as a sibling.
            let text = text.trim();
            let last = text.rsplit(['/', '\\']).next().unwrap_or("");
            if refs::validate_id(last).is_ok()
                && ns_dir
                    .join(last)
                    .symlink_metadata()
                    .is_ok_and(|m| m.is_dir())
            {
                LatestState::Pointer(last.to_string())
            } else {
                LatestState::Dangling(text.to_string())
            }
        }
    }
}

/// The single folder name a link target names, if it stays beside the link.
pub(crate) fn sibling_name(target: &Path) -> Option<String> {
    let mut normal = None;
    for component in target.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(name) if normal.is_none() => {
                normal = Some(name.to_string_lossy().into_owned());
            }
            _ => return None,
        }
    }
    normal.filter(|n| n != LATEST)
}

/// Which of a namespace's complete, healthy runs `latest` means when no link
/// names one: in production the highest release by [`ReleaseKey`] (legacy
/// release names included), elsewhere the newest by creation time.
pub(crate) fn preferred<'a>(
    stage: Stage,
    runs: impl Iterator<Item = &'a RunInfo>,
) -> Option<&'a RunInfo> {
    let healthy = runs.filter(|r| r.status == RunStatus::Complete && r.problems.is_empty());
    if stage == Stage::Production {
        healthy.max_by_key(|r| ReleaseKey::of(&r.id))
    } else {
        healthy.max_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)))
    }
}

pub(crate) fn mark_latest(store: &Store, runs: &mut [RunInfo]) {
    let mut groups: HashMap<(Stage, Namespace), Vec<usize>> = HashMap::new();
    for (i, run) in runs.iter().enumerate() {
        groups
            .entry((run.stage, run.location.namespace.clone()))
            .or_default()
            .push(i);
    }
    for ((stage, ns), members) in groups {
        let Ok(ns_dir) = store.ns_dir(stage, &ns) else {
            continue;
        };
        let chosen = match read_latest(&ns_dir) {
            LatestState::Link(id) | LatestState::Pointer(id) => Some(id),
            LatestState::Escaping(_) => None,
            _ => preferred(stage, members.iter().map(|&i| &runs[i])).map(|r| r.id.clone()),
        };
        if let Some(id) = chosen {
            for &i in &members {
                if runs[i].id == id {
                    runs[i].latest = true;
                }
            }
        }
    }
}
