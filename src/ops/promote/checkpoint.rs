//! Finding a checkpoint in a raw run by name or stem (`best`, `epoch_70`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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

/// `checkpoints/<name>` or `checkpoints/<name>.*` (then the same in the
/// run's top folder). A symlink such as `latest.pt -> epoch_70.pt` is
/// followed only when it stays inside the run.
pub(super) fn find_checkpoint(run_dir: &Path, name: &str) -> Result<(String, PathBuf)> {
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
        let path = dir.join(&file);
        let meta = path.symlink_metadata()?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)?;
            let inside = fsx::link_stays_inside(Path::new(&rel), &target);
            let resolved = dir.join(&target);
            if !inside || !resolved.symlink_metadata().is_ok_and(|m| m.is_file()) {
                return Err(ArtifactError::corrupt(format!(
                    "{} links to {}, which is not a file inside the run; pass the checkpoint file itself",
                    path.display(),
                    target.display()
                ))
                .into());
            }
            let resolved_rel = Path::new(&rel)
                .parent()
                .unwrap_or(Path::new(""))
                .join(&target)
                .to_string_lossy()
                .replace("/./", "/");
            return Ok((resolved_rel, resolved));
        }
        return Ok((rel, path));
    }
    let available: BTreeSet<String> = std::fs::read_dir(run_dir.join(CHECKPOINT_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| stem(&e.file_name().to_string_lossy()).to_string())
        .collect();
    let hint = if available.is_empty() {
        "the run has no checkpoints/ folder".to_string()
    } else {
        format!(
            "available: {}",
            available.into_iter().collect::<Vec<_>>().join(", ")
        )
    };
    Err(ArtifactError::not_found(format!(
        "no checkpoint '{name}' in {}; {hint}; pass one with --checkpoint",
        run_dir.display()
    ))
    .into())
}
