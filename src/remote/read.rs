//! Reading a remote without pulling: its runs as `list` and `show` present
//! local ones (from the catalog, one request per segment, never one per
//! run), one run from its record, and the journal objects.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Result;
use futures::StreamExt;

use super::Remote;
use crate::error::ArtifactError;
use crate::store::journal::Entry;
use crate::store::read::run_from_metadata;
use crate::store::refs::{qualified_ref, Namespace, RunRef, Stage, Target};
use crate::store::{ReadOptions, RunInfo, RunLocation};

impl Remote {
    /// Where a run lives on the remote, for the `path` field of `show`.
    pub(crate) fn location(&self, stage: Stage, ns: &Namespace, id: &str) -> RunLocation {
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
    pub fn runs(
        &self,
        stages: &[Stage],
        under: &Namespace,
        opts: &ReadOptions,
    ) -> Result<Vec<RunInfo>> {
        let mut runs = Vec::new();
        for entry in self.list()? {
            let Ok(ns) = Namespace::parse(&entry.namespace) else {
                continue;
            };
            if stages.contains(&entry.stage) && ns.starts_with(under) {
                let location = self.location(entry.stage, &ns, &entry.id);
                runs.push(entry.into_run(location, opts));
            }
        }
        let scopes: BTreeSet<(Stage, Namespace)> = runs
            .iter()
            .map(|r| (r.stage, r.location.namespace.clone()))
            .collect();
        let latest = self.block_on(self.latest_ids(scopes))?;
        for run in &mut runs {
            run.latest = latest
                .get(&(run.stage, run.location.namespace.clone()))
                .is_some_and(|id| id.as_deref() == Some(&run.id));
        }
        Ok(runs)
    }

    /// The id each scope's `latest` names (16 reads at a time); a damaged
    /// latest object names nothing (`show` reports it).
    pub(crate) async fn latest_ids(
        &self,
        scopes: BTreeSet<(Stage, Namespace)>,
    ) -> Result<BTreeMap<(Stage, Namespace), Option<String>>> {
        let mut out = BTreeMap::new();
        let mut reads = futures::stream::iter(scopes)
            .map(|(stage, ns)| async move {
                let got = self.backend.get(&super::latest_key(stage, &ns)).await?;
                let id = got.and_then(|g| super::parse_latest(&g.bytes, "").ok());
                anyhow::Ok(((stage, ns), id))
            })
            .buffer_unordered(16);
        while let Some(done) = reads.next().await {
            let (scope, id) = done?;
            out.insert(scope, id);
        }
        Ok(out)
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
