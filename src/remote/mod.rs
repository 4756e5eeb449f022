//! Remote stores on S3-compatible object storage (docs/remote.md): push runs
//! up, pull them down, read the remote without pulling.
//!
//! The layout under the remote's prefix:
//! - `blobs/<h[0..2]>/<h>`: file content under its BLAKE3, written create-only;
//! - `packs/<p[0..2]>/<p>` and `<p>.toc`: many small files in one object,
//!   and which blob lies where in it (see `pack`);
//! - `runs/<stage>/ns=<a,b>/<id>.json`: a run's record (its `metadata.json`,
//!   manifest included), written create-only after all its blobs;
//! - `latest/<stage>/ns=<a,b>`: `{"id": ...}`, moved by compare-and-swap;
//! - `catalog/<time>-<unique>.json`: the runs one push added, and
//!   `catalog/index`: the runs folded in so far, by compare-and-swap (see
//!   `catalog`);
//! - `journal/<time>-<unique>.json`: one object per event;
//! - `pending/<stage>/ns=<a,b>/<id>`: a run whose push has not finished
//!   (`push.rs`).
//!
//! What a remote says is untrusted: ids, namespaces and paths are validated
//! like user input before anything is written locally.

mod address;
pub mod backend;
mod catalog;
mod cleanup;
mod dir;
mod gc;
mod latest;
mod pack;
mod pull;
mod push;
mod read;

use std::collections::HashMap;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::RemoteConfig;
use crate::error::ArtifactError;
use crate::store::index::CatalogRun;
use crate::store::metadata::{FileEntry, Metadata};
use crate::store::refs::{validate_id, Namespace, Stage};

pub use backend::Backend;
pub use catalog::{COMPACT_AFTER, INDEX_KEY};
pub use cleanup::{cleanup, CleanupReport, RemoteCleanup};
pub use gc::{GcOptions, GcReport, MARKS_KEY};
pub use latest::{move_latest, Direction, MoveLatest, Moved};
pub use pull::{pull, PullOptions, PullReport, PulledRun};
pub use push::{push, PushOptions, PushReport, PushedRun};

/// An open remote: its backend and the small runtime its requests run on.
pub struct Remote {
    pub name: String,
    pub backend: Backend,
    runtime: tokio::runtime::Runtime,
}

impl Remote {
    pub fn open(name: &str, config: &RemoteConfig) -> Result<Remote> {
        let backend = Backend::open(name, config)?;
        // object_store is async; a current-thread runtime inside the
        // operation keeps the binary synchronous, and transfers still run
        // concurrently on it.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Remote {
            name: name.to_string(),
            backend,
            runtime,
        })
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// The catalog: every run the remote's pushes recorded, one summary
    /// each (the index and the segments not folded in yet).
    pub fn list(&self) -> Result<Vec<CatalogRun>> {
        self.block_on(catalog::runs(self))
    }

    /// The id a stage's `latest` names on the remote, if any.
    pub fn latest(&self, stage: Stage, ns: &Namespace) -> Result<Option<String>> {
        self.block_on(async {
            let got = self.backend.get(&latest_key(stage, ns)).await?;
            got.map(|g| parse_latest(&g.bytes, &self.backend.shown))
                .transpose()
        })
    }

    /// One run's record, validated.
    pub fn record(&self, stage: Stage, ns: &Namespace, id: &str) -> Result<Metadata> {
        Ok(self.record_packed(stage, ns, id)?.0)
    }

    /// One run's record, validated, and where its packed content lies.
    pub(crate) fn record_packed(
        &self,
        stage: Stage,
        ns: &Namespace,
        id: &str,
    ) -> Result<(Metadata, HashMap<String, pack::PackedAt>)> {
        let key = record_key(stage, ns, id);
        let got = self.block_on(self.backend.get(&key))?;
        let Some(got) = got else {
            return Err(ArtifactError::not_found(format!(
                "remote '{}' ({}) has no run {}; `artifactctl list --remote {}` shows what it has",
                self.name,
                self.backend.shown,
                crate::store::refs::qualified_ref(stage, ns, id),
                self.name
            ))
            .into());
        };
        parse_record(&got.bytes, stage, ns, id, &key)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct LatestObject {
    id: String,
}

fn ns_part(ns: &Namespace) -> String {
    format!("ns={}", ns.segments().join(","))
}

pub fn blob_key(hash: &str) -> String {
    format!("blobs/{}/{hash}", &hash[..2])
}

pub fn record_key(stage: Stage, ns: &Namespace, id: &str) -> String {
    format!("runs/{stage}/{}/{id}.json", ns_part(ns))
}

pub fn latest_key(stage: Stage, ns: &Namespace) -> String {
    format!("latest/{stage}/{}", ns_part(ns))
}

fn unique_key(folder: &str, now: DateTime<Utc>) -> String {
    format!(
        "{folder}/{}-{}.json",
        now.format("%Y%m%dT%H%M%S%.6fZ"),
        crate::fsx::unique_suffix()
    )
}

fn parse_latest(bytes: &[u8], shown: &str) -> Result<String> {
    let obj: LatestObject = serde_json::from_slice(bytes).map_err(|e| {
        ArtifactError::corrupt(format!("remote {shown}: a latest object is not valid: {e}"))
    })?;
    validate_id(&obj.id).map_err(|e| {
        ArtifactError::corrupt(format!("remote {shown}: latest names a bad id: {e}"))
    })?;
    Ok(obj.id)
}

/// Validate what a remote says a run is, exactly like user input.
fn checked_location(stage: &str, ns: &str, id: &str) -> Result<(Stage, Namespace), ArtifactError> {
    let stage: Stage = stage.parse()?;
    let ns = Namespace::parse(ns)?;
    validate_id(id).map_err(|e| ArtifactError::usage(format!("bad run id '{id}': {e}")))?;
    Ok((stage, ns))
}

/// A record read from `key`, refused unless it is the run it is stored as
/// and every path in it stays inside the run; with where its packed content
/// lies.
fn parse_record(
    bytes: &[u8],
    stage: Stage,
    ns: &Namespace,
    id: &str,
    key: &str,
) -> Result<(Metadata, HashMap<String, pack::PackedAt>)> {
    let refuse = |why: String| -> anyhow::Error {
        ArtifactError::refused(format!(
            "the remote's record {key} is refused: {why}; nothing was written locally"
        ))
        .into()
    };
    let mut meta: Metadata =
        serde_json::from_slice(bytes).map_err(|e| refuse(format!("not a valid record: {e}")))?;
    let packed = pack::take_packed(&mut meta).map_err(&refuse)?;
    let (m_stage, m_ns) = checked_location(&meta.stage.to_string(), &meta.namespace, &meta.id)
        .map_err(|e| refuse(e.to_string()))?;
    if m_stage != stage || &m_ns != ns || meta.id != id {
        return Err(refuse(format!(
            "it names {} instead",
            crate::store::refs::qualified_ref(m_stage, &m_ns, &meta.id)
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    for f in &meta.files {
        check_file(f).map_err(&refuse)?;
        if !seen.insert(f.key()) {
            return Err(refuse(format!("{} is listed twice", f.path)));
        }
    }
    Ok((meta, packed))
}

fn check_file(f: &FileEntry) -> Result<(), String> {
    use std::path::Component;
    let rel = f.rel_path();
    let plain = rel.components().count() > 0
        && rel.components().all(|c| matches!(c, Component::Normal(_)))
        && rel != std::path::Path::new(crate::store::metadata::METADATA_FILE);
    if !plain {
        return Err(format!(
            "file path {:?} is not a plain path inside the run",
            f.path
        ));
    }
    let hash = f.blake3.as_deref().unwrap_or_default();
    if hash.len() != 64
        || !hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(format!("file {:?} has a bad BLAKE3 {:?}", f.path, f.blake3));
    }
    if let Some(target) = &f.symlink {
        if !crate::fsx::link_stays_inside(&rel, std::path::Path::new(target)) {
            return Err(format!(
                "symlink {:?} points to {target:?}, outside the run",
                f.path
            ));
        }
    }
    Ok(())
}

/// Two records are the same run when they were created at the same time
/// with the same files (local-only fields such as `pinned` may differ).
pub fn same_run(a: &Metadata, b: &Metadata) -> bool {
    let files = |m: &Metadata| {
        let mut v: Vec<(String, Option<String>, u64, Option<String>)> = m
            .files
            .iter()
            .map(|f| (f.key(), f.blake3.clone(), f.size, f.symlink.clone()))
            .collect();
        v.sort();
        v
    };
    a.created_at == b.created_at && a.status == b.status && files(a) == files(b)
}
