//! Reading a remote without pulling: its runs as `list` and `show` present
//! local ones (from the catalog, one request per segment, never one per
//! run), one run from its record, and the journal objects.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Result;
use futures::StreamExt;

use super::{CatalogEntry, Remote};
use crate::error::ArtifactError;
use crate::store::journal::Entry;
use crate::store::read::{blank_run, run_from_metadata};
use crate::store::refs::{qualified_ref, Namespace, RunRef, Stage, Target};
use crate::store::{ReadOptions, RunInfo, RunLocation};

impl Remote {
    /// Where a run lives on the remote, for the `path` field of `show`.
    fn location(&self, stage: Stage, ns: &Namespace, id: &str) -> RunLocation {
        RunLocation {
            stage,
            namespace: ns.clone(),
            id: id.to_string(),
            path: PathBuf::from(format!(
                "{}/{}",
                self.backend.shown.trim_end_matches('/'),
                super::record_key(stage, ns, id)
            )),
        }
    }

    /// The runs of `stages` at or below `under`, with each namespace's
    /// `latest` marked (one request per namespace, not per run).
    pub fn runs(&self, stages: &[Stage], under: &Namespace) -> Result<Vec<RunInfo>> {
        let mut runs = Vec::new();
        for entry in self.list()? {
            let ns = entry.ns();
            if stages.contains(&entry.stage) && ns.starts_with(under) {
                runs.push(entry.run_info(self.location(entry.stage, &ns, &entry.id)));
            }
        }
        let scopes: BTreeSet<(Stage, Namespace)> = runs
            .iter()
            .map(|r| (r.stage, r.location.namespace.clone()))
            .collect();
        let latest: Vec<((Stage, Namespace), Option<String>)> = self.block_on(async {
            let mut out = Vec::new();
            let mut reads = futures::stream::iter(scopes)
                .map(|(stage, ns)| async move {
                    let got = self.backend.get(&super::latest_key(stage, &ns)).await?;
                    // A damaged latest object marks nothing; `show` names it.
                    let id = got.and_then(|g| super::parse_latest(&g.bytes, "").ok());
                    anyhow::Ok(((stage, ns), id))
                })
                .buffer_unordered(16);
            while let Some(done) = reads.next().await {
                out.push(done?);
            }
            anyhow::Ok(out)
        })?;
        for run in &mut runs {
            run.latest = latest.iter().any(|((stage, ns), id)| {
                *stage == run.stage
                    && *ns == run.location.namespace
                    && id.as_deref() == Some(&run.id)
            });
        }
        Ok(runs)
    }

    /// One run read from its record, `latest` resolved on the remote.
    pub fn run(&self, r: &RunRef, opts: &ReadOptions) -> Result<RunInfo> {
        let stage = r.stage();
        let latest = self.latest(stage, &r.namespace)?;
        let id = match &r.target {
            Target::Id(id) => id.clone(),
            Target::Latest => latest.clone().ok_or_else(|| {
                ArtifactError::not_found(format!(
                    "remote '{}' has no latest in {}",
                    self.name,
                    qualified_ref(stage, &r.namespace, "latest")
                ))
            })?,
        };
        let meta = self.record(stage, &r.namespace, &id)?;
        let mut run = run_from_metadata(self.location(stage, &r.namespace, &id), meta, opts);
        run.latest = latest.as_deref() == Some(id.as_str());
        Ok(run)
    }

    /// Every journal object, oldest first, and the ones that could not be
    /// read.
    pub fn journal(&self) -> Result<(Vec<Entry>, Vec<String>)> {
        let mut keys = self.block_on(self.backend.list("journal"))?;
        keys.sort();
        let got: Vec<(String, Option<super::backend::Got>)> = self.block_on(async {
            let mut reads = futures::stream::iter(keys)
                .map(|key| async move {
                    let got = self.backend.get(&key).await?;
                    anyhow::Ok((key, got))
                })
                .buffered(16);
            let mut out = Vec::new();
            while let Some(done) = reads.next().await {
                out.push(done?);
            }
            anyhow::Ok(out)
        })?;
        let (mut entries, mut problems) = (Vec::new(), Vec::new());
        for (key, got) in got {
            let Some(got) = got else { continue };
            match serde_json::from_slice::<Entry>(&got.bytes) {
                Ok(entry) => entries.push(entry),
                Err(e) => problems.push(format!(
                    "remote {}: journal object {key} is not valid: {e}",
                    self.backend.shown
                )),
            }
        }
        entries.sort_by_key(|e| e.time);
        Ok((entries, problems))
    }
}

impl CatalogEntry {
    pub fn ns(&self) -> Namespace {
        Namespace::from_disk(
            self.namespace
                .split('/')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        )
    }

    fn run_info(&self, location: RunLocation) -> RunInfo {
        let mut run = blank_run(location);
        run.layout = crate::store::RunLayout::Native;
        run.created_at = Some(self.created_at);
        run.status = self.status;
        run.size_bytes = self.total_size;
        run.file_count = self.file_count;
        run.model_count = self.model_count;
        run.dataset_count = self.dataset_count;
        run.metrics = self.metrics.clone();
        run.params = self.params.clone();
        run.tags = self.tags.clone();
        run
    }
}
