//! The remote's catalog: what `list --remote` reads instead of one record
//! per run, kept without a lock.
//!
//! - **Segments** `catalog/<time>-<unique>.json`: each push writes one,
//!   create-only, listing the runs it added.
//! - **The index** `catalog/index`: every run folded in so far, moved by
//!   compare-and-swap. Its first line (the header) names the segments
//!   folded in, with when, and the runs deleted recently (tombstones); then
//!   one run summary per line, the same [`CatalogRun`] records the local
//!   run index holds (`store::index`).
//!
//! A reader lists `catalog/` and reads the index at once, then only the
//! segments the index has not folded in, skipping runs a tombstone names.
//! A push folds the segments in once more than [`COMPACT_AFTER`] were
//! written since the index last changed; `cleanup --remote` rebuilds the
//! index from the run records themselves (so a run whose push died before
//! its segment is listed again, and deleted runs leave it), and deletes the
//! segments folded in longer ago than the grace: a reader that read an
//! older index and lists segments within the grace still finds them.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::backend::{Mode, Put};
use super::{checked_location, Remote};
use crate::error::ArtifactError;
use crate::store::index::{summary_of, CatalogRun};
use crate::store::metadata::Metadata;
use crate::store::refs::{qualified_ref, Namespace};

pub const INDEX_KEY: &str = "catalog/index";
/// Written into segments and the index header; other versions are refused.
const SCHEMA_VERSION: u32 = 2;
/// A push folds the segments into the index once more than this many were
/// written since the index last changed.
pub const COMPACT_AFTER: usize = 32;

/// [`COMPACT_AFTER`], which tests lower in debug builds
/// (`ARTIFACTCTL_REMOTE_COMPACT_AFTER`) so a handful of pushes compacts.
fn compact_after() -> usize {
    #[cfg(debug_assertions)]
    if let Some(n) = std::env::var("ARTIFACTCTL_REMOTE_COMPACT_AFTER")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    COMPACT_AFTER
}

/// The runs one push added.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Segment {
    schema_version: u32,
    runs: Vec<CatalogRun>,
}

impl Segment {
    pub(crate) fn new(runs: Vec<CatalogRun>) -> Segment {
        Segment {
            schema_version: SCHEMA_VERSION,
            runs,
        }
    }
}

/// A run deleted from the remote: hidden in segments not folded in yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tombstone {
    #[serde(rename = "ref")]
    pub reference: String,
    /// Which run of that name (the same ref pushed again later is another).
    pub created_at: Option<DateTime<Utc>>,
    pub deleted_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    schema_version: u32,
    /// Segment key → when it was folded in.
    #[serde(default)]
    folded: BTreeMap<String, DateTime<Utc>>,
    #[serde(default)]
    deleted: Vec<Tombstone>,
}

#[derive(Debug)]
pub(crate) struct Index {
    header: Header,
    /// Qualified ref → summary.
    runs: BTreeMap<String, CatalogRun>,
}

impl Default for Index {
    fn default() -> Index {
        Index {
            header: Header {
                schema_version: SCHEMA_VERSION,
                folded: BTreeMap::new(),
                deleted: Vec::new(),
            },
            runs: BTreeMap::new(),
        }
    }
}

fn reference(run: &CatalogRun) -> String {
    let ns = Namespace::parse(&run.namespace).unwrap_or_else(|_| Namespace::root());
    qualified_ref(run.stage, &ns, &run.id)
}

/// Untrusted: a summary that names no valid run is left out.
fn valid(run: &CatalogRun) -> bool {
    checked_location(&run.stage.to_string(), &run.namespace, &run.id).is_ok()
}

impl Index {
    fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = serde_json::to_vec(&self.header)?;
        out.push(b'\n');
        for run in self.runs.values() {
            serde_json::to_writer(&mut out, run)?;
            out.push(b'\n');
        }
        Ok(out)
    }

    /// `name` and `shown`: the remote's name and URL, for the message.
    fn parse(bytes: &[u8], name: &str, shown: &str) -> Result<Index> {
        use rayon::prelude::*;
        let bad = |why: String| -> anyhow::Error {
            ArtifactError::corrupt(format!(
                "remote '{name}' ({shown}): the catalog index {INDEX_KEY} is not valid ({why}); `artifactctl cleanup --remote {name} --yes` rebuilds it from the run records"
            ))
            .into()
        };
        let (head, body) = match bytes.iter().position(|&b| b == b'\n') {
            Some(i) => bytes.split_at(i + 1),
            None => (bytes, &b""[..]),
        };
        let header: Header = serde_json::from_slice(head).map_err(|e| bad(e.to_string()))?;
        if header.schema_version != SCHEMA_VERSION {
            return Err(bad(format!(
                "schema_version {} written by another version of artifactctl",
                header.schema_version
            )));
        }
        let lines: Vec<&[u8]> = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let runs = lines
            .par_iter()
            .map(|line| serde_json::from_slice::<CatalogRun>(line))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Index {
            header,
            runs: runs
                .into_iter()
                .filter(valid)
                .map(|r| (reference(&r), r))
                .collect(),
        })
    }

    /// Whether a tombstone names the run of a segment written at `written`:
    /// the same ref and creation time, deleted after the segment was
    /// written (the same run pushed again after its deletion is listed).
    fn hides(&self, run: &CatalogRun, reference: &str, written: Option<DateTime<Utc>>) -> bool {
        self.header.deleted.iter().any(|t| {
            t.reference == reference
                && t.created_at == run.created_at
                && written.is_none_or(|w| w <= t.deleted_at)
        })
    }

    /// Add the run of a segment written at `written` unless a tombstone
    /// names it; the index's own entry stays (records are never
    /// overwritten, so both say the same).
    fn add(&mut self, run: CatalogRun, written: Option<DateTime<Utc>>) {
        if !valid(&run) {
            return;
        }
        let reference = reference(&run);
        if !self.hides(&run, &reference, written) {
            self.runs.entry(reference).or_insert(run);
        }
    }
}

/// When a segment was written, from its name
/// (`catalog/<%Y%m%dT%H%M%S%.6fZ>-<unique>.json`); `None` for a name
/// without a time, which any tombstone of its runs hides.
fn segment_time(key: &str) -> Option<DateTime<Utc>> {
    let name = key.strip_prefix("catalog/")?;
    let (time, _) = name.split_once('-')?;
    chrono::NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%S%.fZ")
        .ok()
        .map(|t| t.and_utc())
}

pub(crate) fn is_segment(key: &str) -> bool {
    key.strip_prefix("catalog/")
        .is_some_and(|name| !name.contains('/') && name.ends_with(".json"))
}

fn is_index(key: &str) -> bool {
    key == INDEX_KEY || key.starts_with("catalog/index/")
}

/// The index, the version a swap must name, and whether it exists.
pub(crate) async fn read_index(remote: &Remote) -> Result<(Index, Option<String>, bool)> {
    match remote.backend.get(INDEX_KEY).await? {
        None => Ok((Index::default(), None, false)),
        Some(got) => Ok((
            Index::parse(&got.bytes, &remote.name, &remote.backend.shown)?,
            got.etag,
            true,
        )),
    }
}

/// A segment's runs; `None` when it is gone (deleted since it was listed).
async fn read_segment(remote: &Remote, key: &str) -> Result<Option<Vec<CatalogRun>>> {
    let Some(got) = remote.backend.get(key).await? else {
        return Ok(None);
    };
    let segment: Segment = serde_json::from_slice(&got.bytes)
        .ok()
        .filter(|s: &Segment| s.schema_version == SCHEMA_VERSION)
        .ok_or_else(|| {
            ArtifactError::corrupt(format!(
                "remote '{}' ({}): catalog segment {key} is not valid (or written by another version of artifactctl); `artifactctl cleanup --remote {} --yes` rebuilds the catalog from the run records and folds it in",
                remote.name, remote.backend.shown, remote.name
            ))
        })?;
    Ok(Some(segment.runs))
}

/// Fold the segments `keys` into `index` (reading them 16 at a time).
async fn fold_segments(
    remote: &Remote,
    index: &mut Index,
    keys: Vec<String>,
    now: DateTime<Utc>,
) -> Result<()> {
    let mut reads = futures::stream::iter(keys)
        .map(|key| async move { (read_segment(remote, &key).await, key) })
        .buffer_unordered(16);
    while let Some((runs, key)) = reads.next().await {
        let Some(runs) = runs? else { continue };
        let written = segment_time(&key);
        for run in runs {
            index.add(run, written);
        }
        index.header.folded.insert(key, now);
    }
    Ok(())
}

/// Every run the catalog lists: the index, plus the segments it has not
/// folded in.
pub(crate) async fn runs(remote: &Remote) -> Result<Vec<CatalogRun>> {
    let (listed, index) =
        futures::future::join(remote.backend.list("catalog"), read_index(remote)).await;
    let (mut index, _, _) = index?;
    let pending: Vec<String> = listed?
        .into_iter()
        .filter(|k| is_segment(k) && !index.header.folded.contains_key(k))
        .collect();
    fold_segments(remote, &mut index, pending, Utc::now()).await?;
    Ok(index.runs.into_values().collect())
}

/// Written by a push after its segment: fold the segments in when more
/// than [`COMPACT_AFTER`] were written since the index last changed (one
/// listing tells). Returns how many segments were folded in.
pub(crate) async fn compact_if_due(remote: &Remote, now: DateTime<Utc>) -> Result<u64> {
    let listed = remote.backend.list_meta("catalog").await?;
    let index_time = listed
        .iter()
        .filter(|l| is_index(&l.key))
        .map(|l| l.modified)
        .max();
    // Object times may have whole seconds: a segment of the index's second
    // counts as newer, so at worst a push folds a little early.
    let newer = listed
        .iter()
        .filter(|l| is_segment(&l.key) && index_time.is_none_or(|t| l.modified >= t))
        .count();
    if newer <= compact_after() {
        return Ok(0);
    }
    compact(remote, now).await
}

/// Fold every listed segment into the index, by compare-and-swap: on a
/// conflict, read again and fold again.
pub(crate) async fn compact(remote: &Remote, now: DateTime<Utc>) -> Result<u64> {
    for _ in 0..8 {
        // The index before the listing: every segment it names as folded
        // existed before it was read, so one missing from the listing was
        // deleted and needs no entry any more.
        let (mut index, etag, exists) = read_index(remote).await?;
        let listed = remote.backend.list("catalog").await?;
        let present: BTreeSet<&String> = listed.iter().filter(|k| is_segment(k)).collect();
        index.header.folded.retain(|k, _| present.contains(k));
        let pending: Vec<String> = present
            .iter()
            .filter(|k| !index.header.folded.contains_key(**k))
            .map(|k| k.to_string())
            .collect();
        if pending.is_empty() {
            return Ok(0);
        }
        let folded = pending.len() as u64;
        fold_segments(remote, &mut index, pending, now).await?;
        if swap(remote, &index, etag, exists).await? {
            return Ok(folded);
        }
    }
    Err(ArtifactError::conflict(format!(
        "the catalog index of remote '{}' kept changing; run it again",
        remote.name
    ))
    .into())
}

/// Write `index` over the version `etag` read (created when it did not
/// exist); false on a conflict.
async fn swap(remote: &Remote, index: &Index, etag: Option<String>, exists: bool) -> Result<bool> {
    let mode = match (exists, etag) {
        (false, _) => Mode::Create,
        (true, Some(etag)) => Mode::Update(etag),
        (true, None) => anyhow::bail!(
            "remote {} gave no ETag for {INDEX_KEY}; the catalog cannot be compacted safely",
            remote.backend.shown
        ),
    };
    crate::fsx::fault::hit(crate::fsx::fault::Point::RemoteSwap)?;
    Ok(
        match remote
            .backend
            .put(INDEX_KEY, index.to_bytes()?, mode)
            .await?
        {
            Put::Done => true,
            Put::Exists | Put::Conflict => false,
        },
    )
}

/// The catalog as `cleanup --remote` rebuilds it from the run records.
pub(crate) struct Rebuild {
    /// Segment keys listed BEFORE the records were: every run they name
    /// has its record among `records`, or was deleted.
    pub segments: Vec<String>,
    /// Every run record read, by qualified ref.
    pub records: BTreeMap<String, CatalogRun>,
    /// Runs this cleanup deletes.
    pub deleted: Vec<Tombstone>,
    pub now: DateTime<Utc>,
    pub grace: Duration,
}

/// Write the rebuilt index (compare-and-swap; on a conflict the fresh
/// index's tombstones are merged and it is written again) and return the
/// segments folded in longer ago than the grace, which may now be deleted.
pub(crate) async fn rebuild(remote: &Remote, r: &Rebuild) -> Result<Vec<String>> {
    let cutoff = r.now - r.grace;
    for _ in 0..8 {
        // A damaged index is replaced: only its tombstones and fold times
        // are carried over, and the records say the rest.
        let (old, etag, exists) = match remote.backend.get(INDEX_KEY).await? {
            None => (Index::default(), None, false),
            Some(got) => (
                Index::parse(&got.bytes, &remote.name, &remote.backend.shown).unwrap_or_default(),
                got.etag,
                true,
            ),
        };
        let mut index = Index::default();
        index.header.deleted = old
            .header
            .deleted
            .into_iter()
            .filter(|t| t.deleted_at > cutoff && !r.deleted.contains(t))
            .chain(r.deleted.iter().cloned())
            .collect();
        let gone: BTreeSet<&str> = r.deleted.iter().map(|t| t.reference.as_str()).collect();
        index.runs = r
            .records
            .iter()
            .filter(|(reference, _)| !gone.contains(reference.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for key in &r.segments {
            let since = old.header.folded.get(key).copied().unwrap_or(r.now);
            index.header.folded.insert(key.clone(), since);
        }
        if swap(remote, &index, etag, exists).await? {
            return Ok(index
                .header
                .folded
                .iter()
                .filter(|(_, &since)| since <= cutoff)
                .map(|(k, _)| k.clone())
                .collect());
        }
    }
    Err(ArtifactError::conflict(format!(
        "the catalog index of remote '{}' kept changing; nothing was deleted, run it again",
        remote.name
    ))
    .into())
}

/// The listed segment keys (for [`Rebuild::segments`]).
pub(crate) async fn segment_keys(remote: &Remote) -> Result<Vec<String>> {
    Ok(remote
        .backend
        .list("catalog")
        .await?
        .into_iter()
        .filter(|k| is_segment(k))
        .collect())
}

/// The catalog summary of a record.
pub(crate) fn summary(meta: &Metadata) -> Result<CatalogRun> {
    let ns = Namespace::parse(&meta.namespace)?;
    summary_of(meta.to_json().as_bytes(), meta.stage, &ns, &meta.id).ok_or_else(|| {
        anyhow::anyhow!(
            "{} has no summary the catalog can hold",
            qualified_ref(meta.stage, &ns, &meta.id)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::metadata::RunStatus;
    use crate::store::refs::Stage;

    fn run(id: &str) -> CatalogRun {
        CatalogRun {
            namespace: "gru".into(),
            stage: Stage::Raw,
            run: crate::store::index::RunSummary {
                id: id.into(),
                created_at: Some(Utc::now()),
                status: RunStatus::Complete,
                size_bytes: 1,
                file_count: 1,
                dataset_count: 0,
                models: vec![("model.pt".into(), 1)],
                metrics: BTreeMap::new(),
                params: BTreeMap::new(),
                tags: vec![],
                pinned: false,
                parent: None,
                promoted_from: None,
                steps: false,
            },
        }
    }

    #[test]
    fn the_index_parses_back_and_tombstones_hide_only_the_run_they_name() {
        let mut index = Index::default();
        let (a, b) = (run("20261101_000000"), run("20261102_000000"));
        index.header.deleted.push(Tombstone {
            reference: reference(&b),
            created_at: b.created_at,
            deleted_at: Utc::now(),
        });
        let before = Some(Utc::now() - Duration::minutes(1));
        index.add(a.clone(), before);
        index.add(b.clone(), before);
        index.add(b.clone(), None);
        let mut again = b.clone();
        again.run.created_at = Some(Utc::now() + Duration::hours(1));
        let mut forged = run("..");
        forged.namespace = "../x".into();
        index.add(forged, before);
        assert_eq!(index.runs.len(), 1);
        index.add(again, before);
        assert_eq!(
            index.runs.len(),
            2,
            "the same ref pushed again is another run"
        );
        // The same run pushed again after its deletion: its new segment
        // is later than the tombstone.
        let mut fresh = Index::default();
        fresh.header.deleted = index.header.deleted.clone();
        fresh.add(b.clone(), Some(Utc::now() + Duration::minutes(1)));
        assert_eq!(fresh.runs.len(), 1);
        assert_eq!(
            segment_time("catalog/20261101T120000.250000Z-ab12.json"),
            Some("2026-11-01T12:00:00.25Z".parse().unwrap())
        );
        assert_eq!(segment_time("catalog/odd.json"), None);
        let back = Index::parse(&index.to_bytes().unwrap(), "o", "x").unwrap();
        assert_eq!(back.runs, index.runs);
        assert_eq!(back.header.deleted, index.header.deleted);
        assert!(Index::parse(b"{\"schema_version\":9}\n", "o", "x").is_err());
        assert!(is_segment("catalog/20261101T000000.000000Z-ab.json"));
        assert!(!is_segment(INDEX_KEY) && !is_segment("catalog/index/00000000000000000001"));
    }
}
