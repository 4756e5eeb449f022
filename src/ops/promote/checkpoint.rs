//! Finding what to promote in a raw run: a checkpoint by name or stem
//! (`best`, `epoch_70`), a path relative to the run (`--file`, a
//! `--checkpoint` with a `/`), or a step folder (`--step`).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use anyhow::Result;

use super::*;
use crate::error::ArtifactError;
use crate::fsx::{self};

pub(super) fn stem(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => name,
    }
}

/// The file name's stem of a run-relative path (`checkpoints/epoch_70.pt`
/// gives `epoch_70`).
pub(super) fn file_stem(rel: &str) -> String {
    stem(rel.rsplit('/').next().unwrap_or(rel)).to_string()
}

/// A path the user gave relative to the run: no `..`, not absolute.
pub(super) fn relative_path(text: &str, flag: &str) -> Result<String> {
    let path = Path::new(text);
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => {
                return Err(ArtifactError::usage(format!(
                    "{flag} '{text}' must be a path inside the run, relative to its folder (e.g. TailRiskAnalyzer/model.joblib)"
                ))
                .into())
            }
        }
    }
    if parts.is_empty() {
        return Err(ArtifactError::usage(format!(
            "{flag} '{text}' names no file; pass a path relative to the run"
        ))
        .into());
    }
    Ok(parts.join("/"))
}

/// Follow `rel` (a file of the run, possibly a symlink) to the regular file
/// it names, refusing links that leave the run. Returns the resolved
/// run-relative path and its full path.
pub(super) fn resolve_in_run(run_dir: &Path, rel: &str) -> Result<(String, PathBuf)> {
    let mut rel = rel.to_string();
    // A chain of links (`best -> best.pt -> epoch_70.pt`) is followed a few
    // steps, each checked to stay inside the run.
    for _ in 0..8 {
        let path = run_dir.join(&rel);
        let meta = path.symlink_metadata().map_err(|e| {
            ArtifactError::not_found(format!("cannot read {}: {e}", path.display()))
        })?;
        if !meta.file_type().is_symlink() {
            if !meta.is_file() {
                return Err(ArtifactError::usage(format!(
                    "{} is not a regular file",
                    path.display()
                ))
                .into());
            }
            return Ok((rel, path));
        }
        let target = std::fs::read_link(&path)?;
        if !fsx::link_stays_inside(Path::new(&rel), &target) {
            return Err(ArtifactError::corrupt(format!(
                "{} links to {}, which is outside the run; a promoted model must come from the run itself: pass the checkpoint file with --checkpoint or --file",
                path.display(),
                target.display()
            ))
            .into());
        }
        let joined = Path::new(&rel)
            .parent()
            .unwrap_or(Path::new(""))
            .join(&target);
        rel = normalize(&joined);
    }
    Err(ArtifactError::corrupt(format!(
        "{} is a chain of links too long to follow; pass the checkpoint file itself",
        run_dir.join(&rel).display()
    ))
    .into())
}

fn normalize(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}

/// `checkpoints/<name>` or `checkpoints/<name>.*` (then the same in the
/// run's top folder); a name with a `/` is a path relative to the run. A
/// symlink such as `best.pt -> epoch_70.pt` is followed only when it stays
/// inside the run, and the file it names is what is promoted (and named).
pub(super) fn find_checkpoint(run_dir: &Path, name: &str) -> Result<(String, PathBuf)> {
    if name.contains('/') {
        let rel = relative_path(name, "--checkpoint")?;
        if run_dir.join(&rel).symlink_metadata().is_ok() {
            return resolve_in_run(run_dir, &rel);
        }
        return Err(ArtifactError::not_found(format!(
            "no file '{rel}' in {}; pass a file of the run with --checkpoint or --file",
            run_dir.display()
        ))
        .into());
    }
    for sub in [CHECKPOINT_DIR, ""] {
        let dir = run_dir.join(sub);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut matches: Vec<String> = entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n == name || stem(n) == name)
            .collect();
        matches.sort();
        if matches.len() > 1 {
            return Err(ArtifactError::usage(format!(
                "checkpoint '{name}' is ambiguous in {}: {}; pass the full file name",
                dir.display(),
                matches.join(", ")
            ))
            .into());
        }
        let Some(file) = matches.pop() else { continue };
        let rel = if sub.is_empty() {
            file.clone()
        } else {
            format!("{sub}/{file}")
        };
        return resolve_in_run(run_dir, &rel);
    }
    Err(not_a_checkpoint(run_dir, name))
}

/// The refusal for a checkpoint name that matches nothing, naming what the
/// run does have and the flag that selects it.
fn not_a_checkpoint(run_dir: &Path, name: &str) -> anyhow::Error {
    let has_checkpoints = run_dir.join(CHECKPOINT_DIR).is_dir();
    if !has_checkpoints {
        if run_dir.join(name).is_dir() {
            return ArtifactError::usage(format!(
                "'{name}' is a folder of {} (a step), not a checkpoint: pass --step {name}, or leave out --checkpoint to promote the whole run",
                run_dir.display()
            ))
            .into();
        }
        let found: Vec<String> = manifest::list_files(run_dir)
            .unwrap_or_default()
            .into_iter()
            .map(|f| f.rel)
            .filter(|rel| {
                let file = rel.rsplit('/').next().unwrap_or(rel);
                file == name || stem(file) == name
            })
            .collect();
        if let Some(rel) = found.first() {
            return ArtifactError::usage(format!(
                "{} has no checkpoints/ folder; '{name}' is the file {rel}: pass --file {rel}, or leave out --checkpoint to promote the whole run",
                run_dir.display()
            ))
            .into();
        }
        return ArtifactError::not_found(format!(
            "no checkpoint '{name}' in {}: the run has no checkpoints/ folder; leave out --checkpoint to promote the whole run, or pick parts with --step NAME or --file PATH",
            run_dir.display()
        ))
        .into();
    }
    let available: BTreeSet<String> = std::fs::read_dir(run_dir.join(CHECKPOINT_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| stem(&e.file_name().to_string_lossy()).to_string())
        .collect();
    ArtifactError::not_found(format!(
        "no checkpoint '{name}' in {}; available: {}; pass one with --checkpoint",
        run_dir.display(),
        available.into_iter().collect::<Vec<_>>().join(", ")
    ))
    .into()
}
