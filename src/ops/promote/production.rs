//! Promotion to production: a semver release with approval, its deployment
//! config, the changelog entry, and `latest` in version order.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;
use serde_json::{json, Map};

use super::*;
use crate::error::ArtifactError;
use crate::fsx::{self};
use crate::ops::{self, LatestPolicy};
use crate::policy::gates::{self, GateResult};
use crate::policy::version::Version;
use crate::progress::{Progress, Unit};
use crate::store::journal;
use crate::store::manifest;
use crate::store::metadata::{Lineage, Metadata, RunStatus, SCHEMA_VERSION};
use crate::store::refs::{RunRef, Stage};
use crate::store::{RunInfo, RunLocation, Store};

#[derive(Debug, Clone)]
pub struct ProductionOptions {
    pub reference: RunRef,
    pub version: String,
    pub allow_downgrade: bool,
    pub deploy_config: Option<PathBuf>,
    pub notes: Option<String>,
    /// Gate expressions (`[promote.production] require`).
    pub require: Vec<String>,
    pub project_root: PathBuf,
    pub command: Vec<String>,
    /// The time the release is stamped with.
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct ProductionPlan {
    pub source: RunInfo,
    pub target: RunLocation,
    pub version: Version,
    /// The production `latest` when planned.
    pub current_latest: Option<String>,
    /// The raw run the validated artifact came from, when its lineage says.
    pub raw_parent: Option<String>,
    pub files: Vec<PlannedFile>,
    pub deploy_config: Option<PathBuf>,
    pub notes: Option<String>,
    pub gates: Vec<GateResult>,
    pub warnings: Vec<String>,
    /// `--allow-downgrade`: the release takes `latest` whatever its version.
    allow_downgrade: bool,
    source_meta: Option<Metadata>,
    project_root: PathBuf,
    command: Vec<String>,
    now: DateTime<Utc>,
}

/// How a production promotion was approved (seed 004's manual approval).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMethod {
    /// Confirmed at an interactive prompt.
    Interactive,
    /// `--approve` on the command line.
    Flag,
}

/// Check a promotion to production without writing anything.
pub fn plan_production(store: &Store, opts: ProductionOptions) -> Result<ProductionPlan> {
    let gates = gates::parse_all(&opts.require, "[promote.production] require")?;
    let version = Version::parse(&opts.version)?;
    store.stage_dir(Stage::Production)?;
    // A ref without a stage names a validated artifact here: that is the only
    // stage production promotes from.
    let mut reference = opts.reference.clone();
    if reference.stage.is_none() {
        reference.stage = Some(Stage::Validated);
    }
    let (location, source, source_meta, mut warnings) = source_in(
        store,
        &reference,
        Stage::Validated,
        "--to production takes a validated artifact: promote it with --to validated first",
    )?;
    let raw_parent = source_meta
        .as_ref()
        .and_then(|m| m.lineage.parent.clone().or(m.lineage.promoted_from.clone()));
    if raw_parent.is_none() {
        warnings.push(format!(
            "{} has no artifactctl lineage (an older layout); the release will name it but not the raw run it came from",
            location.reference()
        ));
    }
    let target = store.location(Stage::Production, &location.namespace, &version.to_string())?;
    let current_latest = store.current_latest(Stage::Production, &location.namespace)?;
    refuse_existing(
        &target,
        &format!(
            "versions are never reused: choose a version above {}",
            current_latest.as_deref().unwrap_or("the current latest")
        ),
    )?;
    check_version_order(
        &version,
        current_latest.as_deref(),
        opts.allow_downgrade,
        &mut warnings,
    )?;
    if let Some(dir) = &opts.deploy_config {
        if dir.symlink_metadata().is_err() {
            return Err(ArtifactError::usage(format!(
                "--deploy-config {} does not exist; pass the folder (or file) of deployment configuration",
                dir.display()
            ))
            .into());
        }
    }

    let known = manifest_index(source_meta.as_ref());
    let mut files = Vec::new();
    for found in manifest::list_files(&location.path)? {
        if found.symlink.is_some() {
            continue;
        }
        let entry = known.get(found.rel.as_str()).copied();
        files.push(planned(found.path, found.rel, entry)?);
    }
    let gates = gates::evaluate(&gates, &source.metrics);
    Ok(ProductionPlan {
        source,
        target,
        version,
        current_latest,
        raw_parent,
        files,
        deploy_config: opts.deploy_config,
        notes: opts.notes,
        gates,
        warnings,
        allow_downgrade: opts.allow_downgrade,
        source_meta,
        project_root: opts.project_root,
        command: opts.command,
        now: opts.now,
    })
}

pub(super) fn check_version_order(
    version: &Version,
    current: Option<&str>,
    allow_downgrade: bool,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let Some(current) = current else {
        return Ok(());
    };
    match Version::parse(current) {
        Ok(current_version) if *version <= current_version && !allow_downgrade => {
            Err(ArtifactError::conflict(format!(
                "version {version} is not above the current production latest {current}: choose a higher --version, or pass --allow-downgrade"
            ))
            .into())
        }
        Ok(_) => Ok(()),
        Err(_) => {
            warnings.push(format!(
                "the current production latest '{current}' is a legacy release name; every semantic version sorts above it, so {version} becomes latest (`artifactctl rollback --to {current}` returns to it)"
            ));
            Ok(())
        }
    }
}

/// Write the production release the plan describes. `approval` is `None`
/// when nobody approved: the promotion is refused.
pub fn promote_production(
    store: &Store,
    plan: ProductionPlan,
    approval: Option<ApprovalMethod>,
    reporter: &dyn Progress,
) -> Result<Promoted> {
    // A signal stops the promotion between files or before publishing,
    // never half-way through (see `crate::interrupt`).
    let _busy = crate::interrupt::busy();
    check_gates(
        &plan.gates,
        "fix the validated artifact or change [promote.production] require",
    )?;
    let Some(approval) = approval else {
        return Err(ArtifactError::refused(format!(
            "promoting {} to production {} needs approval: run it on a terminal to confirm, or pass --approve in scripts",
            plan.source.reference, plan.target.reference()
        ))
        .into());
    };
    let validated = plan.source.location.qualified();
    let (staging, files, linked_bytes) = stage_files(
        store,
        &plan.target.id,
        &plan.files,
        plan.deploy_config.as_deref(),
        reporter,
    )?;
    let source_meta = plan
        .source_meta
        .unwrap_or_else(|| legacy_metadata(&plan.source));
    let user = crate::host::current_user();
    let now = plan.now.trunc_subsecs(6);
    let gates_json = serde_json::to_value(&plan.gates)?;
    let mut meta = Metadata {
        schema_version: SCHEMA_VERSION,
        id: String::new(),
        namespace: plan.target.namespace.to_string(),
        stage: Stage::Production,
        created_at: now,
        status: RunStatus::Complete,
        config: source_meta.config,
        params: source_meta.params,
        metrics: plan.source.metrics.clone(),
        tags: source_meta.tags,
        files: Vec::new(),
        total_size: 0,
        file_count: 0,
        features: source_meta.features,
        lineage: Lineage {
            source: Some(format!("promote {validated}")),
            parent: plan.raw_parent.clone(),
            promoted_from: Some(validated.clone()),
            extra: Map::new(),
        },
        producer: ops::producer(&plan.project_root, plan.command),
        pinned: false,
        extra: Map::new(),
    };
    let approval_json = json!({"by": user, "at": now, "method": approval});
    meta.extra
        .insert("version".into(), json!(plan.version.to_string()));
    meta.extra.insert("approval".into(), approval_json.clone());
    meta.extra.insert(
        "promotion".into(),
        json!({
            "to": "production",
            "by": user,
            "gates": gates_json,
            "notes": plan.notes,
            "deploy_config": plan.deploy_config.as_ref().map(|_| format!("{DEPLOYMENT_DIR}/")),
        }),
    );
    meta.set_files(files);
    let entry = journal::Entry::new("promote", Some(validated.clone()), None)
        .with("to", "production")
        .with("version", plan.version.to_string())
        .with("raw", plan.raw_parent.clone())
        .with("gates", gates_json)
        .with("approval", approval_json)
        .with("notes", plan.notes.clone());
    // `latest` follows the version order, decided under the lock as the
    // release is published, so racing promotions end on the highest.
    let latest = if plan.allow_downgrade {
        LatestPolicy::Always
    } else {
        LatestPolicy::HighestVersion
    };
    let promoted = publish_readonly(
        store,
        staging,
        &mut meta,
        &plan.target,
        latest,
        entry,
        linked_bytes,
    )?;
    let _lock = ops::lock(store)?;
    let changelog = changelog_entry(
        &plan.target,
        &plan.version,
        &validated,
        plan.raw_parent.as_deref(),
        &user,
        approval,
        &plan.gates,
        plan.notes.as_deref(),
        now,
    );
    append_changelog(store, &changelog)
        .map_err(|e| ops::published_but(&promoted.location, "the changelog entry failed", e))?;
    Ok(promoted)
}

pub(super) fn copy_deploy_config(
    staging: &Path,
    config: &Path,
    reporter: &dyn Progress,
) -> Result<()> {
    let dest = staging.join(DEPLOYMENT_DIR);
    std::fs::create_dir_all(&dest)?;
    if config.is_dir() {
        reporter.begin("copying", None, Unit::Bytes);
        let copied = fsx::copy_tree(config, &dest, &[], &|n| reporter.advance(n));
        reporter.end();
        copied.map_err(|e| {
            if let Err(interrupted) = crate::interrupt::check() {
                anyhow::Error::new(interrupted)
            } else if e.kind() == std::io::ErrorKind::InvalidInput {
                anyhow::Error::new(ArtifactError::usage(e.to_string()))
            } else {
                anyhow::Error::new(e).context(format!("cannot copy {}", config.display()))
            }
        })?;
    } else {
        let name = config.file_name().unwrap_or_default();
        fsx::clone_or_copy(config, &dest.join(name))
            .with_context(|| format!("cannot copy {}", config.display()))?;
    }
    Ok(())
}
