//! The plain types of the store model: where a run lives and what reading
//! it found. No I/O here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;
use chrono::{DateTime, Utc};
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ArtifactError;
use crate::store::metadata::RunStatus;
use crate::store::refs::{format_ref, qualified_ref, Namespace, Stage};

/// Where one run lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLocation {
    pub stage: Stage,
    pub namespace: Namespace,
    pub id: String,
    pub path: PathBuf,
}

impl RunLocation {
    pub fn reference(&self) -> String {
        format_ref(self.stage, &self.namespace, &self.id)
    }
    pub fn qualified(&self) -> String {
        qualified_ref(self.stage, &self.namespace, &self.id)
    }
}

/// Which metadata a run was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunLayout {
    /// artifactctl's own `metadata.json`.
    Native,
    /// Seed 003's `training_metadata.json`.
    TrainingMetadata,
    /// A `metadata.json` without `schema_version` (seed 002, seed 004).
    LegacyMetadata,
    /// No metadata file at all.
    Plain,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileRow {
    pub path: String,
    pub size: u64,
    pub blake3: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symlink: Option<String>,
}

/// What `show` adds to a listing row.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    pub path: PathBuf,
    pub files: Vec<FileRow>,
    pub features: Option<Value>,
    pub lineage: Value,
    pub config: Value,
    pub producer: Value,
    /// Everything else the metadata holds (seed 003's `ensemble_weights` and
    /// `models`, fields from a newer artifactctl, seed 002's extra keys).
    pub extra: Map<String, Value>,
}

/// One run as `list` and `show` present it, whatever layout it came from.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    #[serde(rename = "ref")]
    pub reference: String,
    pub id: String,
    pub namespace: String,
    pub stage: Stage,
    pub created_at: Option<DateTime<Utc>>,
    pub status: RunStatus,
    pub size_bytes: u64,
    pub file_count: u64,
    pub model_count: u64,
    /// Files made by dataset steps (refresh runs); 0 for other runs.
    pub dataset_count: u64,
    pub metrics: BTreeMap<String, f64>,
    pub params: BTreeMap<String, Value>,
    pub tags: Vec<String>,
    pub latest: bool,
    pub pinned: bool,
    pub layout: RunLayout,
    /// Empty when the run is healthy.
    pub problems: Vec<String>,
    #[serde(skip)]
    pub location: RunLocation,
    /// Boxed: listings hold many rows without it.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Box<RunDetail>>,
}

/// How to read runs: which files count as models, and whether to gather the
/// detail `show` needs.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    models: GlobSet,
    pub detail: bool,
}

impl ReadOptions {
    pub fn new(model_patterns: &[String], detail: bool) -> Result<ReadOptions> {
        let mut builder = GlobSetBuilder::new();
        for pattern in model_patterns {
            let glob = Glob::new(pattern).map_err(|e| {
                ArtifactError::usage(format!(
                    "bad model pattern '{pattern}' in [list] model_patterns: {e}"
                ))
            })?;
            builder.add(glob);
        }
        Ok(ReadOptions {
            models: builder.build()?,
            detail,
        })
    }

    pub(crate) fn is_model(&self, rel_path: &str) -> bool {
        let name = rel_path.rsplit('/').next().unwrap_or(rel_path);
        self.models.is_match(name)
    }
}

/// The state of a `latest` pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LatestState {
    Link(String),
    Pointer(String),
    Missing,
    /// Names a run that does not exist.
    Dangling(String),
    /// Points out of its folder (`/etc`, `../../x`): never followed.
    Escaping(String),
    /// `latest` is a real file or folder, not a link.
    NotALink,
}

impl LatestState {
    pub fn id(&self) -> Option<&str> {
        match self {
            LatestState::Link(id) | LatestState::Pointer(id) => Some(id),
            _ => None,
        }
    }
}

/// A ref turned into a run directory.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub location: RunLocation,
    /// Fallbacks taken on the way (a dangling `latest`, say).
    pub warnings: Vec<String>,
}
