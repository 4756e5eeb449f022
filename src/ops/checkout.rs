//! `checkout`: put a run's outputs where the application loads them.
//!
//! Each refresh step with a `workspace` path gets its folder of the run
//! (`<run>/<step>/`) placed there, read-only and sharing bytes with the
//! store, switched in atomically (see [`fsx::checkout`]). `--to DIR` places
//! the whole run instead. Works for any run or release: `checkout
//! production/latest` is a local deploy, `checkout production/1.0.0` a
//! rollback of what the application loads.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};

use crate::error::ArtifactError;
use crate::fsx::checkout::{self, Placed};
use crate::store::refs::RunRef;
use crate::store::{RunLocation, Store};

#[derive(Debug, Clone)]
pub struct CheckoutOptions {
    pub reference: RunRef,
    pub project_root: PathBuf,
    /// `(step, workspace path relative to the project root)` from
    /// `[[refresh.steps]]`.
    pub workspaces: Vec<(String, String)>,
    /// Place the whole run here instead.
    pub to: Option<PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckedOut {
    /// The step whose folder was placed; `None` for the whole run.
    pub step: Option<String>,
    pub path: PathBuf,
    pub replaced: bool,
}

#[derive(Debug, Clone)]
pub struct Checkout {
    pub location: RunLocation,
    pub placed: Vec<CheckedOut>,
    /// Steps with a workspace path whose folder the run does not have.
    pub missing: Vec<String>,
    pub warnings: Vec<String>,
}

/// A destination must lie inside the project and outside the store.
fn check_destination(root: &Path, store_dir: &Path, dest: &Path) -> Result<()> {
    let escapes = dest
        .strip_prefix(root)
        .map(|rel| rel.components().any(|c| !matches!(c, Component::Normal(_))))
        .unwrap_or(true);
    if escapes || dest == root {
        return Err(ArtifactError::usage(format!(
            "{} is not a folder inside the project {}; check out into the project",
            dest.display(),
            root.display()
        ))
        .into());
    }
    if dest.starts_with(store_dir) || store_dir.starts_with(dest) {
        return Err(ArtifactError::usage(format!(
            "{} overlaps the store {}; check out outside it",
            dest.display(),
            store_dir.display()
        ))
        .into());
    }
    Ok(())
}

pub fn checkout(store: &Store, opts: &CheckoutOptions) -> Result<Checkout> {
    let resolved = store.resolve(&opts.reference)?;
    let location = resolved.location;
    let marker = format!("{}\n{}\n", location.qualified(), store.dir().display());
    let mut placed = Vec::new();
    let mut missing = Vec::new();
    let place = |src: &Path, dest: &Path, step: Option<String>| -> Result<CheckedOut> {
        check_destination(&opts.project_root, store.dir(), dest)?;
        let how = checkout::place(store.dir(), src, dest, &marker).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::Error::from(ArtifactError::refused(e.to_string()))
            } else {
                anyhow::Error::from(e).context(format!("cannot check out into {}", dest.display()))
            }
        })?;
        Ok(CheckedOut {
            step,
            path: dest.to_path_buf(),
            replaced: how == Placed::Replaced,
        })
    };
    if let Some(to) = &opts.to {
        let dest = opts.project_root.join(to);
        placed.push(place(&location.path, &dest, None)?);
    } else {
        if opts.workspaces.is_empty() {
            return Err(ArtifactError::usage(
                "no refresh step has a workspace path: add `workspace = \"trained_models\"` to a [[refresh.steps]] in artifactctl.toml, or pass --to DIR",
            )
            .into());
        }
        for (step, rel) in &opts.workspaces {
            let src = location.path.join(step);
            if !src.is_dir() {
                missing.push(step.clone());
                continue;
            }
            let dest = opts.project_root.join(rel);
            placed.push(
                place(&src, &dest, Some(step.clone())).with_context(|| format!("step {step}"))?,
            );
        }
        if placed.is_empty() {
            return Err(ArtifactError::not_found(format!(
                "{} has none of the step folders that have a workspace path ({}); pass --to DIR to check out the whole run",
                location.reference(),
                missing.join(", ")
            ))
            .into());
        }
    }
    Ok(Checkout {
        location,
        placed,
        missing,
        warnings: resolved.warnings,
    })
}
