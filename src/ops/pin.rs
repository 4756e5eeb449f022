//! `pin REF` / `unpin REF`: record in a run's `metadata.json` (a top-level
//! `"pinned": true`) that no cleanup or delete may remove it.
//!
//! Only runs with artifactctl's own metadata can be pinned: writing a pin into
//! seed 002's or 003's metadata files would change files other tools own, so
//! those runs are refused with a pointer to `artifactctl register`.

use anyhow::Result;

use crate::error::ArtifactError;
use crate::fsx;
use crate::ops;
use crate::store::journal;
use crate::store::metadata::{Metadata, RunStatus, METADATA_FILE};
use crate::store::refs::RunRef;
use crate::store::{ReadOptions, RunLayout, Store};

#[derive(Debug, Clone)]
pub struct PinOutcome {
    /// The run's ref, with `latest` resolved.
    pub reference: String,
    pub pinned: bool,
    /// False when the run already was in that state (nothing was written).
    pub changed: bool,
    /// Fallback notes from resolving the ref.
    pub warnings: Vec<String>,
}

/// Pin (`pinned` true) or unpin the run `r` names, atomically and under the
/// store lock, and journal the change.
pub fn set_pinned(store: &Store, r: &RunRef, pinned: bool) -> Result<PinOutcome> {
    let _lock = ops::lock(store)?;
    let resolved = store.resolve(r)?;
    let location = resolved.location;
    let reference = location.reference();
    let read = ReadOptions::new(&[], false)?;
    let run = crate::store::read_run(location.clone(), &read);
    if run.status == RunStatus::Unknown {
        return Err(ArtifactError::corrupt(format!(
            "{reference}: {}; repair it before pinning",
            run.problems.join("; ")
        ))
        .into());
    }
    if run.layout != RunLayout::Native {
        let verb = if pinned { "pin" } else { "unpin" };
        return Err(ArtifactError::refused(format!(
            "{reference} has no artifactctl {METADATA_FILE} (it is read as a {} folder), so there is nowhere to record a pin \
             without changing files other tools own; register it with `artifactctl register {}` and {verb} the new run",
            layout_name(run.layout),
            location.path.display()
        ))
        .into());
    }
    let mut meta = Metadata::read(&location.path).map_err(|e| {
        ArtifactError::corrupt(format!(
            "{e:#}; repair {} before pinning",
            location.path.join(METADATA_FILE).display()
        ))
    })?;
    if meta.pinned == pinned {
        return Ok(PinOutcome {
            reference,
            pinned,
            changed: false,
            warnings: resolved.warnings,
        });
    }
    meta.pinned = pinned;
    ops::index::touch(store, location.stage, &location.namespace);
    let path = location.path.join(METADATA_FILE);
    fsx::atomic_write_in_readonly_dir(&path, meta.to_json().as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    let action = if pinned { "pin" } else { "unpin" };
    ops::record(
        store.dir(),
        &[journal::Entry::new(
            action,
            None,
            Some(location.qualified()),
        )],
    )?;
    Ok(PinOutcome {
        reference,
        pinned,
        changed: true,
        warnings: resolved.warnings,
    })
}

fn layout_name(layout: RunLayout) -> &'static str {
    match layout {
        RunLayout::Native => "artifactctl",
        RunLayout::TrainingMetadata => "seed 003 (training_metadata.json)",
        RunLayout::LegacyMetadata => "seed 002 (metadata.json without schema_version)",
        RunLayout::Plain => "plain",
    }
}
