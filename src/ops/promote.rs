//! `promote`: raw → validated → production (seed 004's lifecycle).
//!
//! Each promotion is planned first (source, gates, target, files; nothing is
//! written), then executed: the files are brought into a staging folder
//! sharing bytes with the source where the filesystem permits (hard links of
//! read-only files, reflinks), made read-only, and published with a
//! no-replace rename by [`ops::publish_run`]. A crash at any moment leaves no
//! new artifact or a complete one; the staging folder is swept by the next
//! writer. Lineage (`promoted_from`, `parent`) is what `delete` and `cleanup`
//! protect sources by, see [`ops::lineage_dependents`].

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, SubsecRound, Utc};
use globset::{GlobBuilder, GlobSetBuilder};
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::error::ArtifactError;
use crate::fsx::{self, Staging};
use crate::gates::{self, GateResult};
use crate::journal;
use crate::manifest;
use crate::metadata::{self, FileEntry, Lineage, Metadata, RunStatus, SCHEMA_VERSION};
use crate::ops::{self, LatestPolicy};
use crate::progress::{Reporter, Unit};
use crate::refs::{self, RunRef, Stage};
use crate::store::{ReadOptions, RunInfo, RunLocation, Store};

/// Where checkpoints live in a raw run (seed 004); the run's top folder is
/// searched next, for layouts that keep models there (seed 003).
const CHECKPOINT_DIR: &str = "checkpoints";
/// The folder of a validated artifact that holds the `--results` file.
const VALIDATION_DIR: &str = "validation";
/// The folder of a production release that holds `--deploy-config`.
const DEPLOYMENT_DIR: &str = "deployment";
pub const CHANGELOG_FILE: &str = "CHANGELOG.md";
/// Seed 004 keeps training metrics here; they count for gates, below the
/// run's own metadata.
const TRAINING_METRICS_FILE: &str = "metrics/training_metrics.json";

/// One file of the new artifact: where it comes from, where it goes, and the
/// source's manifest entry when there is one (its hash is reused, so a
/// 1 GiB checkpoint is not re-read: `verify` is the command that re-hashes).
#[derive(Debug, Clone)]
pub struct PlannedFile {
    pub from: PathBuf,
    pub to: String,
    pub size: u64,
    known: Option<FileEntry>,
    /// A file of a store artifact, which may be made read-only and
    /// hard-linked; a user's file (`--results`) is only ever copied.
    in_store: bool,
}

#[derive(Debug, Clone)]
pub struct ValidatedOptions {
    pub reference: RunRef,
    /// A checkpoint name (`epoch_70`, `best`, `latest`, or a file name).
    pub checkpoint: String,
    /// Globs of raw-run files carried along (`[promote.validated] include`).
    pub include: Vec<String>,
    /// Gate expressions (`[promote.validated] require`).
    pub require: Vec<String>,
    /// A JSON object of validation results, merged over the run's metrics.
    pub results: Option<PathBuf>,
    pub id: Option<String>,
    pub project_root: PathBuf,
    pub command: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ValidatedPlan {
    pub source: RunInfo,
    pub target: RunLocation,
    /// The checkpoint's stem (`epoch_70`) and its path in the raw run.
    pub checkpoint: String,
    pub checkpoint_file: String,
    pub files: Vec<PlannedFile>,
    pub results: Option<PathBuf>,
    pub metrics: BTreeMap<String, f64>,
    pub gates: Vec<GateResult>,
    source_meta: Option<Metadata>,
    project_root: PathBuf,
    command: Vec<String>,
}

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
    /// Release ids present when planned, to tell releases that raced in.
    releases_when_planned: BTreeSet<String>,
    source_meta: Option<Metadata>,
    project_root: PathBuf,
    command: Vec<String>,
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

#[derive(Debug, Clone)]
pub struct Promoted {
    pub location: RunLocation,
    pub became_latest: bool,
    pub total_size: u64,
    pub file_count: u64,
    /// Bytes shared with the source by hard links rather than written.
    pub linked_bytes: u64,
}

pub fn all_passed(gates: &[GateResult]) -> bool {
    gates.iter().all(GateResult::passed)
}

fn check_gates(gates: &[GateResult], what: &str) -> Result<()> {
    let failed: Vec<&str> = gates
        .iter()
        .filter(|g| !g.passed())
        .map(|g| g.gate.as_str())
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(ArtifactError::refused(format!(
        "{} gate(s) did not pass ({}); nothing was written: {what}",
        failed.len(),
        failed.join("; ")
    ))
    .into())
}

// ---------------------------------------------------------------- validated

/// Check a promotion to validated without writing anything.
pub fn plan_validated(store: &Store, opts: ValidatedOptions) -> Result<ValidatedPlan> {
    let gates = gates::parse_all(&opts.require, "[promote.validated] require")?;
    refs::check_id(&opts.checkpoint, "--checkpoint")?;
    if let Some(id) = &opts.id {
        refs::check_id(id, "--id")?;
    }
    store.stage_dir(Stage::Validated)?;
    let resolved = store.resolve(&opts.reference)?;
    let location = resolved.location;
    if location.stage != Stage::Raw {
        return Err(ArtifactError::usage(format!(
            "{} is {}; --to validated takes a raw run (e.g. gru/BTCEUR/20261123_101500)",
            location.reference(),
            location.stage
        ))
        .into());
    }
    let source = store.read_run(location.clone(), &ReadOptions::new(&[], false)?);
    require_complete(&source)?;
    let source_meta = Metadata::read(&location.path).ok();

    let (checkpoint_file, checkpoint_path) = find_checkpoint(&location.path, &opts.checkpoint)?;
    let checkpoint = stem(&opts.checkpoint).to_string();
    let id = opts
        .id
        .clone()
        .unwrap_or_else(|| format!("{}_{checkpoint}_validated", location.id));
    refs::check_id(&id, "--id")?;
    let target = store.location(Stage::Validated, &location.namespace, &id)?;
    refuse_existing(&target, "choose another --id")?;

    let known = manifest_index(source_meta.as_ref());
    let ext = Path::new(&checkpoint_file)
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let mut files = vec![planned(
        checkpoint_path,
        format!("model{ext}"),
        known.get(checkpoint_file.as_str()).copied(),
    )?];
    for rel in included_files(&location.path, &opts.include)? {
        let from = location.path.join(&rel);
        let entry = known.get(rel.as_str()).copied();
        files.push(planned(from, rel, entry)?);
    }

    let mut metrics = training_metrics(&location.path);
    metrics.extend(source.metrics.clone());
    if let Some(results) = &opts.results {
        metrics.extend(results_metrics(results)?);
        let name = results
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "results.json".into());
        let mut results_file = planned(results.clone(), format!("{VALIDATION_DIR}/{name}"), None)?;
        results_file.in_store = false;
        files.push(results_file);
    }
    let gates = gates::evaluate(&gates, &metrics);
    Ok(ValidatedPlan {
        source,
        target,
        checkpoint,
        checkpoint_file,
        files,
        results: opts.results,
        metrics,
        gates,
        source_meta,
        project_root: opts.project_root,
        command: opts.command,
    })
}

/// Write the validated artifact the plan describes.
pub fn promote_validated(
    store: &Store,
    plan: ValidatedPlan,
    reporter: &dyn Reporter,
) -> Result<Promoted> {
    check_gates(
        &plan.gates,
        "fix the run or the results, or change [promote.validated] require",
    )?;
    let raw = plan.source.location.qualified();
    let (staging, files, linked_bytes) =
        stage_files(store, &plan.target.id, &plan.files, None, reporter)?;
    let source_meta = plan
        .source_meta
        .unwrap_or_else(|| empty_metadata(&plan.source));
    let results_file = plan.files.iter().find_map(|f| {
        f.to.starts_with(&format!("{VALIDATION_DIR}/"))
            .then(|| f.to.clone())
    });
    let gates_json = serde_json::to_value(&plan.gates)?;
    let mut lineage_extra = Map::new();
    lineage_extra.insert("checkpoint".into(), json!(plan.checkpoint));
    lineage_extra.insert("checkpoint_file".into(), json!(plan.checkpoint_file));
    let mut meta = Metadata {
        schema_version: SCHEMA_VERSION,
        id: String::new(),
        namespace: plan.target.namespace.to_string(),
        stage: Stage::Validated,
        created_at: Utc::now().trunc_subsecs(6),
        status: RunStatus::Complete,
        config: source_meta.config,
        params: source_meta.params,
        metrics: plan.metrics,
        tags: source_meta.tags,
        files: Vec::new(),
        total_size: 0,
        file_count: 0,
        features: source_meta.features,
        lineage: Lineage {
            source: Some(format!("promote {raw}")),
            parent: Some(raw.clone()),
            promoted_from: Some(raw.clone()),
            extra: lineage_extra,
        },
        producer: ops::producer(&plan.project_root, plan.command),
        extra: Map::new(),
    };
    meta.extra.insert(
        "promotion".into(),
        json!({
            "to": "validated",
            "by": journal::current_user(),
            "checkpoint": plan.checkpoint,
            "gates": gates_json,
            "results_file": results_file,
        }),
    );
    meta.set_files(files);
    let entry = journal::Entry::new("promote", Some(raw), None)
        .with("to", "validated")
        .with("checkpoint", plan.checkpoint.clone())
        .with("gates", gates_json);
    publish_readonly(
        store,
        staging,
        &mut meta,
        &plan.target,
        LatestPolicy::Advance,
        entry,
        linked_bytes,
    )
}

// --------------------------------------------------------------- production

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
    let resolved = store.resolve(&reference)?;
    let location = resolved.location;
    let mut warnings = resolved.warnings;
    if location.stage != Stage::Validated {
        return Err(ArtifactError::usage(format!(
            "{} is {}; --to production takes a validated artifact: promote it with --to validated first",
            location.reference(),
            location.stage
        ))
        .into());
    }
    let source = store.read_run(location.clone(), &ReadOptions::new(&[], false)?);
    require_complete(&source)?;
    let source_meta = Metadata::read(&location.path).ok();
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
    let current_latest = store
        .latest(Stage::Production, &location.namespace)?
        .id()
        .map(str::to_string);
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
        releases_when_planned: store
            .locations_in(Stage::Production, &location.namespace)
            .into_iter()
            .map(|l| l.id)
            .collect(),
        source_meta,
        project_root: opts.project_root,
        command: opts.command,
    })
}

fn check_version_order(
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
                "the current production latest '{current}' is not a semantic version; it is not compared with {version}"
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
    reporter: &dyn Reporter,
) -> Result<Promoted> {
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
        .unwrap_or_else(|| empty_metadata(&plan.source));
    let user = journal::current_user();
    let now = Utc::now().trunc_subsecs(6);
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
    // The version order was checked when planning, so the new release takes
    // `latest` as it is published.
    let mut promoted = publish_readonly(
        store,
        staging,
        &mut meta,
        &plan.target,
        LatestPolicy::Always,
        entry,
        linked_bytes,
    )?;
    let _lock = ops::lock(store)?;
    if let Some(higher) = higher_concurrent_release(
        store,
        &plan.target,
        &plan.version,
        &plan.releases_when_planned,
    )? {
        let ns_dir = store.ns_dir(Stage::Production, &plan.target.namespace)?;
        fsx::set_latest(&ns_dir, &higher)
            .with_context(|| format!("cannot update {}", ns_dir.join(fsx::LATEST).display()))?;
        promoted.became_latest = false;
    }
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
    append_changelog(store, &changelog)?;
    Ok(promoted)
}

/// A release published by another promotion while this one ran (absent
/// when it was planned) with a higher version than this one: `latest`
/// follows the version order, so it belongs there. The caller holds the lock.
fn higher_concurrent_release(
    store: &Store,
    target: &RunLocation,
    version: &Version,
    releases_when_planned: &BTreeSet<String>,
) -> Result<Option<String>> {
    let read = ReadOptions::new(&[], false)?;
    let higher = store
        .locations_in(Stage::Production, &target.namespace)
        .into_iter()
        .filter(|l| l.id != target.id && !releases_when_planned.contains(&l.id))
        .filter_map(|l| Version::parse(&l.id).ok().map(|v| (v, l)))
        .filter(|(v, _)| *v > *version)
        .filter(|(_, l)| store.read_run(l.clone(), &read).status == RunStatus::Complete)
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, l)| l.id);
    Ok(higher)
}

#[allow(clippy::too_many_arguments)]
fn changelog_entry(
    target: &RunLocation,
    version: &Version,
    validated: &str,
    raw: Option<&str>,
    user: &str,
    approval: ApprovalMethod,
    gates: &[GateResult],
    notes: Option<&str>,
    at: DateTime<Utc>,
) -> String {
    let mut s = format!(
        "\n## {} {version} ({})\n\n",
        namespace_label(target),
        at.format("%Y-%m-%d %H:%M:%S UTC")
    );
    s.push_str(&format!("- from: {validated}"));
    if let Some(raw) = raw {
        s.push_str(&format!(" (raw: {raw})"));
    }
    s.push('\n');
    let how = match approval {
        ApprovalMethod::Interactive => "interactive confirmation",
        ApprovalMethod::Flag => "--approve",
    };
    s.push_str(&format!("- approved by: {user} ({how})\n"));
    for g in gates {
        let actual = g
            .actual
            .map(|v| v.to_string())
            .unwrap_or_else(|| "missing".into());
        s.push_str(&format!("- gate: {} (actual {actual}): pass\n", g.gate));
    }
    if let Some(notes) = notes {
        s.push_str(&format!("- notes: {notes}\n"));
    }
    s
}

fn namespace_label(location: &RunLocation) -> String {
    if location.namespace.is_root() {
        "production".into()
    } else {
        location.namespace.to_string()
    }
}

/// Append `text` to `production/CHANGELOG.md` by rewriting it atomically, so
/// readers never see half an entry. The caller holds the lock.
pub(crate) fn append_changelog(store: &Store, text: &str) -> Result<()> {
    let path = store.stage_dir(Stage::Production)?.join(CHANGELOG_FILE);
    let mut current = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "# Production changelog\n\nWritten by artifactctl: one entry per promotion and rollback.\n".to_string()
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    current.push_str(text);
    fsx::atomic_write(&path, current.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

// ------------------------------------------------------------------- shared

fn require_complete(run: &RunInfo) -> Result<()> {
    if run.status != RunStatus::Complete {
        return Err(ArtifactError::refused(format!(
            "{} is {}; only complete runs are promoted: `artifactctl show {}` tells why",
            run.reference,
            run.status.as_str(),
            run.reference
        ))
        .into());
    }
    Ok(())
}

fn refuse_existing(target: &RunLocation, what_to_do: &str) -> Result<()> {
    if target.path.symlink_metadata().is_ok() {
        return Err(ArtifactError::conflict(format!(
            "{} already exists and promoted artifacts are never overwritten; {what_to_do}",
            target.reference()
        ))
        .into());
    }
    Ok(())
}

fn stem(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => name,
    }
}

/// `checkpoints/<name>` or `checkpoints/<name>.*` (then the same in the
/// run's top folder). A symlink such as `latest.pt -> epoch_70.pt` is
/// followed only when it stays inside the run.
fn find_checkpoint(run_dir: &Path, name: &str) -> Result<(String, PathBuf)> {
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

/// Regular files of the raw run matched by the `include` globs, outside
/// `checkpoints/` (only the chosen checkpoint goes) and not the metadata.
fn included_files(run_dir: &Path, include: &[String]) -> Result<Vec<String>> {
    let mut builder = GlobSetBuilder::new();
    for pattern in include {
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| {
                ArtifactError::usage(format!(
                    "bad pattern '{pattern}' in [promote.validated] include: {e}"
                ))
            })?;
        builder.add(glob);
    }
    let set = builder.build()?;
    let mut out = Vec::new();
    for found in manifest::list_files(run_dir)? {
        if found.symlink.is_some()
            || found.rel.starts_with(&format!("{CHECKPOINT_DIR}/"))
            || found.rel == metadata::TRAINING_METADATA_FILE
        {
            continue;
        }
        if set.is_match(&found.rel) {
            out.push(found.rel);
        }
    }
    Ok(out)
}

fn planned(from: PathBuf, to: String, known: Option<&FileEntry>) -> Result<PlannedFile> {
    let meta = from
        .metadata()
        .map_err(|e| ArtifactError::usage(format!("cannot read {}: {e}", from.display())))?;
    if !meta.is_file() {
        return Err(ArtifactError::usage(format!(
            "{} is not a regular file; only files are promoted",
            from.display()
        ))
        .into());
    }
    let known = known
        .filter(|k| k.size == meta.len() && k.symlink.is_none())
        .cloned();
    Ok(PlannedFile {
        from,
        to,
        size: meta.len(),
        known,
        in_store: true,
    })
}

fn manifest_index(meta: Option<&Metadata>) -> HashMap<&str, &FileEntry> {
    meta.map(|m| m.files.iter().map(|f| (f.path.as_str(), f)).collect())
        .unwrap_or_default()
}

/// Numbers and booleans of `metrics/training_metrics.json`, if the run has it.
fn training_metrics(run_dir: &Path) -> BTreeMap<String, f64> {
    std::fs::read(run_dir.join(TRAINING_METRICS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
        .map(|m| metadata::numeric_metrics(&m))
        .unwrap_or_default()
}

/// The numbers and booleans of a results file; nested objects become dotted
/// names (`{"coverage": {"test": 0.96}}` gives `coverage.test`).
fn results_metrics(path: &Path) -> Result<BTreeMap<String, f64>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ArtifactError::usage(format!("cannot read --results {}: {e}", path.display()))
    })?;
    let obj: Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
        ArtifactError::usage(format!(
            "--results {} is not a JSON object: {e}; pass the validation results as JSON",
            path.display()
        ))
    })?;
    let mut flat = Map::new();
    flatten("", &obj, &mut flat);
    Ok(metadata::numeric_metrics(&flat))
}

fn flatten(prefix: &str, obj: &Map<String, Value>, out: &mut Map<String, Value>) {
    for (k, v) in obj {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Object(inner) => flatten(&key, inner, out),
            other => {
                out.insert(key, other.clone());
            }
        }
    }
}

/// A stand-in for sources without artifactctl metadata (legacy layouts).
fn empty_metadata(run: &RunInfo) -> Metadata {
    Metadata {
        schema_version: SCHEMA_VERSION,
        id: run.id.clone(),
        namespace: run.namespace.clone(),
        stage: run.stage,
        created_at: run.created_at.unwrap_or_else(Utc::now),
        status: run.status,
        config: Map::new(),
        params: run.params.clone(),
        metrics: run.metrics.clone(),
        tags: run.tags.clone(),
        files: Vec::new(),
        total_size: 0,
        file_count: 0,
        features: None,
        lineage: Lineage::default(),
        producer: Default::default(),
        extra: Map::new(),
    }
}

/// Bring the planned files (and a deployment config) into a new staging
/// folder, sharing bytes where possible. Returns the staging folder, the
/// manifest and the bytes shared by hard links.
fn stage_files(
    store: &Store,
    label: &str,
    files: &[PlannedFile],
    deploy_config: Option<&Path>,
    reporter: &dyn Reporter,
) -> Result<(Staging, Vec<FileEntry>, u64)> {
    let staging = Staging::create(store.dir(), label)?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    reporter.begin("linking", Some(total), Unit::Bytes);
    let mut entries = Vec::new();
    let mut linked = 0u64;
    for file in files {
        let dest = staging.path().join(&file.to);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let brought = if file.in_store {
            // The source artifact is immutable, so making its file read-only
            // costs nothing and lets it be hard-linked instead of copied.
            fsx::make_tree_readonly(&file.from)
                .with_context(|| format!("cannot make {} read-only", file.from.display()))?;
            fsx::share_or_copy(&file.from, &dest)
        } else {
            fsx::clone_or_copy(&file.from, &dest)
        };
        brought.with_context(|| {
            format!(
                "cannot bring {} into {}",
                file.from.display(),
                dest.display()
            )
        })?;
        let same_inode = match (file.from.metadata(), dest.metadata()) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if same_inode {
            linked += file.size;
        }
        if let Some(known) = &file.known {
            entries.push(FileEntry {
                path: file.to.clone(),
                ..known.clone()
            });
        }
        reporter.advance(file.size);
    }
    reporter.end();
    if let Some(config) = deploy_config {
        copy_deploy_config(staging.path(), config, reporter)?;
    }
    // Everything not taken from a source manifest is hashed now.
    let known: BTreeSet<String> = entries.iter().map(|e| e.path.clone()).collect();
    let unknown: Vec<manifest::Found> = manifest::list_files(staging.path())?
        .into_iter()
        .filter(|f| !known.contains(&f.rel))
        .collect();
    entries.extend(manifest::hash_all(unknown, reporter)?);
    Ok((staging, entries, linked))
}

fn copy_deploy_config(staging: &Path, config: &Path, reporter: &dyn Reporter) -> Result<()> {
    let dest = staging.join(DEPLOYMENT_DIR);
    std::fs::create_dir_all(&dest)?;
    if config.is_dir() {
        reporter.begin("copying", None, Unit::Bytes);
        let copied = fsx::copy_tree(config, &dest, &[], &|n| reporter.advance(n));
        reporter.end();
        copied.map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidInput {
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

/// Publish the staged artifact read-only.
///
/// Ordering: `publish_run` writes `metadata.json` into the staging folder, so
/// everything *inside* it is made read-only first, the top folder stays
/// writable until the rename has put the artifact in place, and is made
/// read-only (with `metadata.json`) right after. A crash in between leaves a
/// complete artifact whose top folder is still writable, which `verify`
/// reports with the `chmod` that fixes it.
fn publish_readonly(
    store: &Store,
    staging: Staging,
    meta: &mut Metadata,
    target: &RunLocation,
    latest: LatestPolicy,
    entry: journal::Entry,
    linked_bytes: u64,
) -> Result<Promoted> {
    for child in std::fs::read_dir(staging.path())? {
        fsx::make_tree_readonly(&child?.path())?;
    }
    let published = ops::publish_run(store, staging, meta, Some(&target.id), latest, entry)
        .with_context(|| format!("{} was not promoted", target.reference()))?;
    fsx::make_tree_readonly(&published.location.path).with_context(|| {
        format!(
            "cannot make {} read-only",
            published.location.path.display()
        )
    })?;
    Ok(Promoted {
        location: published.location,
        became_latest: published.became_latest,
        total_size: meta.total_size,
        file_count: meta.file_count,
        linked_bytes,
    })
}

// ------------------------------------------------------------------ versions

/// A semantic version `X.Y.Z[-pre.release]` (build metadata is not
/// accepted: two releases differing only in it would sort as equal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Vec<String>,
}

impl Version {
    pub fn parse(text: &str) -> Result<Version, ArtifactError> {
        let bad = |why: &str| {
            ArtifactError::usage(format!(
                "bad version '{text}': {why}; use semantic versioning X.Y.Z, e.g. 1.2.0 or 2.0.0-rc.1"
            ))
        };
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let numbers: Vec<&str> = core.split('.').collect();
        if numbers.len() != 3 {
            return Err(bad("expected three numbers separated by dots"));
        }
        let mut parsed = [0u64; 3];
        for (slot, n) in parsed.iter_mut().zip(&numbers) {
            if n.is_empty()
                || !n.chars().all(|c| c.is_ascii_digit())
                || (n.len() > 1 && n.starts_with('0'))
            {
                return Err(bad(&format!("'{n}' is not a number without leading zeros")));
            }
            *slot = n.parse().map_err(|_| bad(&format!("'{n}' is too large")))?;
        }
        let pre = match pre {
            None => Vec::new(),
            Some(p) => {
                let ids: Vec<String> = p.split('.').map(str::to_string).collect();
                if ids.iter().any(|i| {
                    i.is_empty() || !i.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                }) {
                    return Err(bad(
                        "the pre-release part takes dot-separated letters, digits and '-'",
                    ));
                }
                ids
            }
        };
        Ok(Version {
            major: parsed[0],
            minor: parsed[1],
            patch: parsed[2],
            pre,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre.join("."))?;
        }
        Ok(())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_pre(&self.pre, &other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Semver precedence of pre-release parts: numbers compare numerically and
/// sort before words; a shorter list sorts first when one is a prefix.
fn compare_pre(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order_like_semver() {
        let v = |s: &str| Version::parse(s).unwrap();
        assert_eq!(v("1.2.3").to_string(), "1.2.3");
        let mut list = [
            v("1.10.0"),
            v("1.2.0"),
            v("1.0.0"),
            v("1.0.0-rc.1"),
            v("1.0.0-alpha"),
            v("1.0.0-rc.10"),
            v("1.0.0-rc.2"),
        ];
        list.sort();
        let text: Vec<String> = list.iter().map(Version::to_string).collect();
        assert_eq!(
            text,
            [
                "1.0.0-alpha",
                "1.0.0-rc.1",
                "1.0.0-rc.2",
                "1.0.0-rc.10",
                "1.0.0",
                "1.2.0",
                "1.10.0"
            ]
        );
        for bad in [
            "1.0",
            "v1.0.0",
            "1.0.0.0",
            "01.0.0",
            "1.a.0",
            "1.0.0-",
            "1.0.0+build",
            "",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn checkpoints_are_found_by_name_or_stem() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join(CHECKPOINT_DIR);
        std::fs::create_dir_all(&ck).unwrap();
        std::fs::write(ck.join("epoch_70.pt"), b"x").unwrap();
        std::fs::write(ck.join("best.pt"), b"y").unwrap();
        std::os::unix::fs::symlink("epoch_70.pt", ck.join("latest.pt")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ck.join("evil.pt")).unwrap();
        assert_eq!(
            find_checkpoint(dir.path(), "epoch_70").unwrap().0,
            "checkpoints/epoch_70.pt"
        );
        assert_eq!(
            find_checkpoint(dir.path(), "best.pt").unwrap().0,
            "checkpoints/best.pt"
        );
        let (rel, path) = find_checkpoint(dir.path(), "latest").unwrap();
        assert_eq!(rel, "checkpoints/epoch_70.pt");
        assert!(path.ends_with("epoch_70.pt"));
        assert!(find_checkpoint(dir.path(), "evil").is_err());
        let err = find_checkpoint(dir.path(), "epoch_99")
            .unwrap_err()
            .to_string();
        assert!(err.contains("available: best, epoch_70"), "{err}");
    }

    #[test]
    fn results_flatten_into_dotted_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        std::fs::write(
            &p,
            br#"{"coverage": 0.97, "generalization": {"passed": true}, "note": "x"}"#,
        )
        .unwrap();
        let m = results_metrics(&p).unwrap();
        assert_eq!(m["coverage"], 0.97);
        assert_eq!(m["generalization.passed"], 1.0);
        assert!(!m.contains_key("note"));
    }
}
