//! Configuration: `artifactctl.toml`, overlaid by `ARTIFACTCTL_<SECTION>_<KEY>`
//! environment variables, over built-in defaults. Command-line flags are
//! applied last by the binary. Precedence: flag > environment > file > default.
//!
//! Every setting has a default, so the file is optional. `artifactctl init`
//! writes [`TEMPLATE`], which spells each default out; a test keeps the two
//! in step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error::ArtifactError;

pub const CONFIG_FILE: &str = "artifactctl.toml";
pub const ENV_PREFIX: &str = "ARTIFACTCTL_";
pub const ROOT_ENV: &str = "ARTIFACTCTL_ROOT";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub store: StoreConfig,
    pub list: ListConfig,
    pub promote: PromoteConfig,
    pub refresh: RefreshConfig,
    pub cleanup: CleanupConfig,
    pub clear: ClearConfig,
    pub remote: RemoteDefaults,
    /// `[remotes.NAME]`: the remote stores push, pull and `--remote` reach.
    pub remotes: BTreeMap<String, RemoteConfig>,
}

/// `[remote]`: choices shared by every remote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RemoteDefaults {
    /// The remote used when `--remote` is not given ("" for none).
    pub default: String,
    /// How long a blob stays unreferenced before `cleanup --remote` deletes
    /// it (a duration: 24h, 7d).
    pub gc_grace: String,
}

impl Default for RemoteDefaults {
    fn default() -> RemoteDefaults {
        RemoteDefaults {
            default: String::new(),
            gc_grace: "24h".into(),
        }
    }
}

/// One `[remotes.NAME]` table. Credentials are never read from here: they
/// come from the AWS environment and profile chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RemoteConfig {
    /// `s3://bucket/prefix` or `file:///path`.
    pub url: String,
    /// An S3-compatible server's address ("" for AWS itself).
    pub endpoint: String,
    /// The region ("" for the environment's or the default).
    pub region: String,
    /// How many times at most a request that failed on the network or with
    /// a server error is tried again. A cap only: `retry_timeout` is what
    /// ends the retries in practice (see docs/remote.md).
    pub retries: u32,
    /// For how many seconds a failing request keeps being tried again,
    /// after pauses growing from 0.1 s to 2 s, before the command fails.
    pub retry_timeout: u32,
}

impl Default for RemoteConfig {
    fn default() -> RemoteConfig {
        RemoteConfig {
            url: String::new(),
            endpoint: String::new(),
            region: String::new(),
            // Pauses grow to 2 s, so 100 of them last about three minutes:
            // the 30 s budget ends the retries first.
            retries: 100,
            // A server restart takes a few seconds to a few tens.
            retry_timeout: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreConfig {
    /// Where runs live, relative to the project root.
    pub dir: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            dir: "artifacts".into(),
        }
    }
}

pub use crate::policy::query::Goal;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListConfig {
    /// The metric shown in the BEST column. A run's value is the metric itself
    /// or, failing that, the best of `<step>.<metric>` (one per model).
    pub metric: String,
    /// Whether a larger (`max`) or smaller (`min`) value is better; `auto`
    /// (the default) takes losses and errors as lower-is-better.
    pub metric_goal: Goal,
    /// File names that count as models in the MODELS column.
    pub model_patterns: Vec<String>,
}

impl Default for ListConfig {
    fn default() -> Self {
        ListConfig {
            metric: "sharpe_ratio".into(),
            metric_goal: Goal::Auto,
            model_patterns: [
                "*.pt",
                "*.pth",
                "*.pkl",
                "*.joblib",
                "*.h5",
                "*.hdf5",
                "*.onnx",
                "*.zip",
                "*.pb",
                "*.safetensors",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        }
    }
}

/// `artifactctl clear`: what counts as a regenerable artifact (seed 000).
/// Pattern semantics are in `docs/clear.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClearConfig {
    /// What is removed; setting it replaces the defaults.
    pub patterns: Vec<String>,
    /// Added to `patterns`, to extend the defaults without repeating them.
    pub extra_patterns: Vec<String>,
    /// Never removed, whatever `patterns` says.
    pub keep: Vec<String>,
    /// Enter folders on another device that are not mount points (btrfs
    /// subvolumes); mount points, bind mounts included, are never entered.
    pub cross_filesystems: bool,
}

impl Default for ClearConfig {
    fn default() -> Self {
        ClearConfig {
            patterns: [
                "*.joblib",
                "*.pkl",
                "*.h5",
                "*.hdf5",
                "*.pb",
                "*.onnx",
                "*.db",
                "trained_models/",
                "training_data/",
                "evaluation_data/",
                "evaluation_results/",
                "training_checkpoints/",
                "mlruns/",
                "htmlcov/",
                ".pytest_cache/",
                ".mypy_cache/",
                ".hypothesis/",
                "coverage.xml",
                ".coverage",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            extra_patterns: Vec::new(),
            keep: Vec::new(),
            cross_filesystems: false,
        }
    }
}

/// `[promote.validated]` and `[promote.production]`: what each promotion
/// requires and carries (see docs/promote.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PromoteConfig {
    pub validated: PromoteValidatedConfig,
    pub production: PromoteProductionConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PromoteValidatedConfig {
    /// Gates checked against the run's metrics merged with `--results`.
    pub require: Vec<String>,
    /// The checkpoint promoted when `--checkpoint` is not given.
    pub checkpoint: String,
    /// Files of the raw run carried along with the checkpoint (globs on
    /// paths relative to the run; `*` does not cross `/`).
    pub include: Vec<String>,
    /// Files left out when a run without `checkpoints/` is promoted whole.
    pub exclude: Vec<String>,
}

impl Default for PromoteValidatedConfig {
    fn default() -> Self {
        PromoteValidatedConfig {
            require: Vec::new(),
            checkpoint: "best".into(),
            include: [
                "config.*",
                "*.yaml",
                "*.yml",
                "*.toml",
                "metrics/**",
                "metrics.json",
                "README.md",
                "manifest.json",
                "checkpoints/manifest.json",
                "training_metadata.json",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            exclude: vec!["logs/**".to_string()],
        }
    }
}

/// The default policy of `artifactctl cleanup`, used when no retention flag
/// is given. Zero and "" leave a rule unset; with every rule unset (the
/// built-in default) cleanup refuses rather than guess.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CleanupConfig {
    pub keep: u32,
    pub keep_within: String,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub max_size: String,
    pub failed_older_than: String,
}

impl Default for CleanupConfig {
    fn default() -> Self {
        CleanupConfig {
            keep: 0,
            keep_within: String::new(),
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
            max_size: String::new(),
            failed_older_than: "7d".into(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PromoteProductionConfig {
    /// Gates checked against the validated artifact's metrics.
    pub require: Vec<String>,
}

/// `[refresh]`: the pipeline `artifactctl refresh` runs (see docs/refresh.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RefreshConfig {
    /// Recorded in every refresh run's params and given to steps as
    /// `ARTIFACTCTL_PARAM_<KEY>`.
    pub params: BTreeMap<String, toml::Value>,
    /// Extra environment for every step.
    pub env: BTreeMap<String, String>,
    pub steps: Vec<crate::policy::pipeline::StepConfig>,
}

/// The commented file `artifactctl init` writes.
pub const TEMPLATE: &str = r#"# artifactctl configuration. Every value below is the built-in default:
# delete what you do not change. Each key can also be set by an environment
# variable ARTIFACTCTL_<SECTION>_<KEY>, e.g. ARTIFACTCTL_STORE_DIR=/data/runs.
# Precedence: command-line flag > environment > this file > default.

[store]
# Where runs are kept, relative to this file's folder (or absolute).
dir = "artifacts"

[list]
# Metric shown in the BEST column of `artifactctl list`. A run's value is this
# metric, or else the best of the per-step metrics named <step>.<metric>.
metric = "sharpe_ratio"
# "max" when larger is better, "min" when smaller is better, "auto" to decide
# by the name (loss, error, mse, rmse, mae, mape, drawdown: smaller is better).
metric_goal = "auto"
# File names counted in the MODELS column.
model_patterns = ["*.pt", "*.pth", "*.pkl", "*.joblib", "*.h5", "*.hdf5", "*.onnx", "*.zip", "*.pb", "*.safetensors"]

[promote.validated]
# Gates a raw run must pass to become validated, checked against its metrics
# merged with `--results FILE`. Grammar: METRIC OP VALUE, OP one of
# > >= < <= == !=, VALUE a number, true or false (docs/promote.md), e.g.
# require = ["coverage > 0.95", "best_val_loss < 0.5", "generalization_passed == true"]
require = []
# Checkpoint promoted when --checkpoint is not given (checkpoints/<name>.*),
# for runs that have a checkpoints/ folder.
checkpoint = "best"
# Files of the raw run carried into the validated artifact besides the
# checkpoint, --step or --file (globs relative to the run; * does not cross /).
include = ["config.*", "*.yaml", "*.yml", "*.toml", "metrics/**", "metrics.json", "README.md", "manifest.json", "checkpoints/manifest.json", "training_metadata.json"]
# Files left out when a run without checkpoints/ is promoted whole.
exclude = ["logs/**"]

[promote.production]
# Gates a validated artifact must pass to become a production release.
require = []

[refresh]
# The pipeline `artifactctl refresh` runs (docs/refresh.md). Replace the line
# `steps = []` with one [[refresh.steps]] table per step, for example:
#
# [[refresh.steps]]
# name = "training-data"        # outputs go to <run>/training-data/
# group = "datasets"            # --datasets-only / --models-only select by group
# run = "sh scripts/make_dataset.sh"   # sh -c in the project root; write to $ARTIFACTCTL_STEP_DIR
# deps = ["scripts/make_dataset.sh", "data/**"]   # a change here re-runs the step
#
# [[refresh.steps]]
# name = "MLBondAdjuster"
# group = "models"
# needs = ["training-data"]     # read it from $ARTIFACTCTL_NEED_TRAINING_DATA_DIR
# run = "sh scripts/train.sh MLBondAdjuster"
steps = []

[refresh.params]
# Recorded in every refresh run's params, given to steps as
# ARTIFACTCTL_PARAM_<KEY>; --param K=V overrides. For example:
# seq_length = 30

[refresh.env]
# Extra environment for every step. For example:
# PYTHONHASHSEED = "0"

[cleanup]
# The policy plain `artifactctl cleanup` applies (any retention flag replaces
# it). A run is kept if ANY rule keeps it; 0 or "" leaves a rule unset, and
# with no rule set cleanup refuses. Seed 003's `cleanup --keep 5` is keep = 5.
# Keep the N newest complete runs of each namespace.
keep = 0
# Keep runs created within this span before now: "7d", "12h", "2w".
keep_within = ""
# Keep the newest run of each of the last N days / ISO weeks / months that have runs.
keep_daily = 0
keep_weekly = 0
keep_monthly = 0
# Remove the oldest unprotected runs until a namespace fits: "50GB", "1.5GiB".
max_size = ""
# Failed and interrupted runs go once older than this.
failed_older_than = "7d"

[clear]
# What `artifactctl clear` removes (see docs/clear.md). A pattern without "/"
# matches a name at any depth; with "/", the path from the project root; a
# trailing "/" matches folders only. Setting this list replaces the defaults.
patterns = ["*.joblib", "*.pkl", "*.h5", "*.hdf5", "*.pb", "*.onnx", "*.db", "trained_models/", "training_data/", "evaluation_data/", "evaluation_results/", "training_checkpoints/", "mlruns/", "htmlcov/", ".pytest_cache/", ".mypy_cache/", ".hypothesis/", "coverage.xml", ".coverage"]
# Patterns added to the list above, keeping the defaults.
extra_patterns = []
# Never removed, whatever the patterns say, e.g. ["data/reference/*.pkl"].
keep = []
# Enter folders on another device that are not mount points (btrfs subvolumes); mount points are never entered.
cross_filesystems = false

[remote]
# The remote push, pull and --remote use when no --remote NAME is given: the
# name of one [remotes.NAME] table ("" for none). See docs/remote.md.
default = ""
# How long content stays unreferenced before `cleanup --remote` deletes it.
gc_grace = "24h"

[remotes]
# Remote stores, one table each; credentials come from the AWS environment
# and profile chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...), never from this
# file. Each key can be set as ARTIFACTCTL_REMOTES_<NAME>_<KEY>. For example:
#
# [remotes.origin]
# url = "s3://ml-artifacts/bondtrader"   # or file:///mnt/shared/artifacts
# endpoint = "http://127.0.0.1:9000"     # optional: S3-compatible servers
# region = "eu-west-1"                   # optional
# retry_timeout = 30                     # seconds a failing request is retried
# retries = 100                          # at most this many times
"#;

/// A loaded configuration and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub file: Option<PathBuf>,
    /// Keys the file sets that this version does not know (likely typos).
    pub warnings: Vec<String>,
}

/// The project root: `explicit` (from `--root` or `ARTIFACTCTL_ROOT`), else
/// the nearest ancestor of `cwd` holding `artifactctl.toml`, else `cwd`.
pub fn find_root(cwd: &Path, explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        let dir = cwd.join(dir);
        return dir.canonicalize().map_err(|e| {
            ArtifactError::usage(format!(
                "project root {} cannot be used: {e}; pass an existing directory to --root or {ROOT_ENV}",
                dir.display()
            ))
            .into()
        });
    }
    let cwd = cwd
        .canonicalize()
        .context("the working directory cannot be resolved")?;
    for dir in cwd.ancestors() {
        if dir.join(CONFIG_FILE).is_file() {
            return Ok(dir.to_path_buf());
        }
    }
    Ok(cwd)
}

impl Config {
    /// Load `<root>/artifactctl.toml` (if any) and overlay `env`.
    pub fn load<I>(root: &Path, env: I) -> Result<Loaded>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let path = root.join(CONFIG_FILE);
        let (mut table, file) = match crate::store::metadata::read_regular(&path) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|e| {
                    ArtifactError::usage(format!(
                        "{}: invalid config: not UTF-8 (byte {} is not valid UTF-8); save the file as UTF-8",
                        path.display(),
                        e.utf8_error().valid_up_to()
                    ))
                })?;
                let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                    ArtifactError::usage(format!(
                        "{}: invalid config: {}fix the file; `artifactctl init` in an empty folder shows every setting",
                        path.display(),
                        e
                    ))
                })?;
                (table, Some(path.clone()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (toml::Table::new(), None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(ArtifactError::usage(format!("{}: {e}", path.display())).into());
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        let defaults = toml::Table::try_from(Config::default()).expect("defaults serialize");
        let warnings = unknown_keys(&table, &defaults);
        let applied = apply_env(&mut table, &defaults, env)?;
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    let from_env = if applied.is_empty() {
                        String::new()
                    } else {
                        format!(" (environment overrides in effect: {})", applied.join(", "))
                    };
                    ArtifactError::usage(format!(
                        "{}: invalid config: {}{from_env}",
                        file.as_deref().unwrap_or(&path).display(),
                        e.to_string().trim_end()
                    ))
                })?;
        Ok(Loaded {
            config,
            file,
            warnings,
        })
    }
}

/// Sections and keys set in the file that the defaults do not have.
fn unknown_keys(file: &toml::Table, defaults: &toml::Table) -> Vec<String> {
    let mut out = Vec::new();
    for (section, value) in file {
        if section == "remotes" {
            out.extend(unknown_remote_keys(value));
            continue;
        }
        match (defaults.get(section), value) {
            (Some(toml::Value::Table(known)), toml::Value::Table(given)) => {
                for key in given.keys() {
                    if !known.contains_key(key) {
                        out.push(format!("unknown setting [{section}] {key}"));
                    }
                    // Nested sections such as [promote.validated]: a typo in
                    // `require` must not silently drop the gates. An empty
                    // default table is a free-form map ([refresh.params]).
                    if let (
                        Some(toml::Value::Table(known_sub)),
                        Some(toml::Value::Table(given_sub)),
                    ) = (known.get(key), given.get(key))
                    {
                        if known_sub.is_empty() {
                            continue;
                        }
                        for sub in given_sub.keys().filter(|k| !known_sub.contains_key(*k)) {
                            out.push(format!("unknown setting [{section}.{key}] {sub}"));
                        }
                    }
                }
            }
            (Some(_), _) => {}
            (None, _) => out.push(format!("unknown section [{section}]")),
        }
    }
    out
}

/// `[remotes.NAME]` tables are named by the user; their keys are checked.
fn unknown_remote_keys(value: &toml::Value) -> Vec<String> {
    let known = toml::Table::try_from(RemoteConfig::default()).expect("defaults serialize");
    let mut out = Vec::new();
    let toml::Value::Table(remotes) = value else {
        return out;
    };
    for (name, table) in remotes {
        if let toml::Value::Table(table) = table {
            for key in table.keys().filter(|k| !known.contains_key(*k)) {
                out.push(format!("unknown setting [remotes.{name}] {key}"));
            }
        }
    }
    out
}

/// The environment variable prefix of `[remotes.NAME]`: upper case, `-` and
/// `.` as `_` (`ARTIFACTCTL_REMOTES_ORIGIN_URL`).
fn remote_env_prefix(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{ENV_PREFIX}REMOTES_{name}")
}

/// Overlay `ARTIFACTCTL_<SECTION>_<KEY>` for every scalar or list setting the
/// defaults define, parsing the text as the default's type; nested sections
/// add their names (`[promote.validated] require` is
/// `ARTIFACTCTL_PROMOTE_VALIDATED_REQUIRE`). Variables that name no setting
/// (such as `ARTIFACTCTL_RUN_DIR`, set for refresh steps) are ignored.
/// Returns the variables applied.
fn apply_env<I>(table: &mut toml::Table, defaults: &toml::Table, env: I) -> Result<Vec<String>>
where
    I: IntoIterator<Item = (String, String)>,
{
    let vars: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    let mut applied = Vec::new();
    if !vars.is_empty() {
        for (section, section_defaults) in defaults {
            if let toml::Value::Table(section_defaults) = section_defaults {
                let prefix = format!("{ENV_PREFIX}{}", section.to_uppercase());
                let entry = table
                    .entry(section.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(t) = entry {
                    overlay(t, section_defaults, &prefix, &vars, &mut applied)?;
                }
            }
        }
        // Remotes are named in the file; the environment sets their keys.
        let remote_defaults =
            toml::Table::try_from(RemoteConfig::default()).expect("defaults serialize");
        if let Some(toml::Value::Table(remotes)) = table.get_mut("remotes") {
            for (name, remote) in remotes.iter_mut() {
                if let toml::Value::Table(t) = remote {
                    let prefix = remote_env_prefix(name);
                    overlay(t, &remote_defaults, &prefix, &vars, &mut applied)?;
                }
            }
        }
    }
    Ok(applied)
}

fn overlay(
    table: &mut toml::Table,
    defaults: &toml::Table,
    prefix: &str,
    vars: &BTreeMap<String, String>,
    applied: &mut Vec<String>,
) -> Result<()> {
    for (key, default) in defaults {
        let var = format!("{prefix}_{}", key.to_uppercase());
        if let toml::Value::Table(sub_defaults) = default {
            let entry = table
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(sub) = entry {
                overlay(sub, sub_defaults, &var, vars, applied)?;
            }
            continue;
        }
        let Some(text) = vars.get(&var) else { continue };
        let value = parse_env_value(text, default)
            .map_err(|e| ArtifactError::usage(format!("{var}={text:?}: {e}")))?;
        table.insert(key.clone(), value);
        applied.push(var);
    }
    Ok(())
}

fn parse_env_value(text: &str, like: &toml::Value) -> Result<toml::Value, String> {
    use toml::Value;
    Ok(match like {
        Value::String(_) => Value::String(text.to_string()),
        Value::Integer(_) => Value::Integer(
            text.trim()
                .parse()
                .map_err(|_| "expected a whole number".to_string())?,
        ),
        Value::Float(_) => Value::Float(
            text.trim()
                .parse()
                .map_err(|_| "expected a number".to_string())?,
        ),
        Value::Boolean(_) => Value::Boolean(match text.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => true,
            "0" | "false" | "no" | "off" => false,
            _ => return Err("expected true or false".into()),
        }),
        Value::Array(_) => {
            let trimmed = text.trim();
            if trimmed.starts_with('[') {
                let doc: toml::Table = format!("v = {trimmed}")
                    .parse()
                    .map_err(|e| format!("expected a TOML list: {e}"))?;
                doc["v"].clone()
            } else {
                Value::Array(
                    trimmed
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                )
            }
        }
        _ => return Err("this setting cannot be set from the environment".into()),
    })
}

impl Config {
    /// The remote `name` names, or `[remote] default`: its name and table.
    pub fn remote(&self, name: Option<&str>) -> Result<(String, RemoteConfig), ArtifactError> {
        let name = match name {
            Some(n) => n.to_string(),
            None if !self.remote.default.is_empty() => self.remote.default.clone(),
            None => {
                return Err(ArtifactError::usage(
                    "no remote named: pass --remote NAME or set [remote] default in artifactctl.toml (docs/remote.md)",
                ))
            }
        };
        match self.remotes.get(&name) {
            Some(r) if !r.url.is_empty() => Ok((name, r.clone())),
            Some(_) => Err(ArtifactError::usage(format!(
                "remote '{name}' has no url: set url in [remotes.{name}] or {}_URL",
                remote_env_prefix(&name)
            ))),
            None => {
                let known: Vec<&str> = self.remotes.keys().map(String::as_str).collect();
                Err(ArtifactError::usage(format!(
                    "no remote '{name}' is configured (known: {}); add a [remotes.{name}] table with a url to artifactctl.toml",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                )))
            }
        }
    }
}

/// Resolve a configured path: absolute as given, relative to `root` otherwise.
pub fn resolve_path(root: &Path, configured: &str) -> PathBuf {
    let p = Path::new(configured);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_template_spells_out_the_defaults() {
        let parsed: Config = toml::from_str(TEMPLATE).unwrap();
        assert_eq!(parsed, Config::default());
        let table: toml::Table = TEMPLATE.parse().unwrap();
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        assert_eq!(table, defaults, "every default must appear in the template");
    }

    #[test]
    fn free_form_tables_are_not_typos() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[refresh.params]\nseq_length = 30\n[refresh.env]\nLC_ALL = \"C\"\n",
        )
        .unwrap();
        let loaded = Config::load(dir.path(), env(&[])).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn docs_config_md_shows_the_template() {
        let docs = include_str!("../docs/config.md");
        assert!(
            docs.contains(&format!("```toml\n{TEMPLATE}```")),
            "docs/config.md must show TEMPLATE verbatim in its Settings section"
        );
    }

    #[test]
    fn precedence_is_env_over_file_over_default() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = Config::load(dir.path(), env(&[])).unwrap();
        assert_eq!(loaded.config.store.dir, "artifacts");
        assert!(loaded.file.is_none());

        std::fs::write(dir.path().join(CONFIG_FILE), "[store]\ndir = \"runs\"\n").unwrap();
        let loaded = Config::load(dir.path(), env(&[])).unwrap();
        assert_eq!(loaded.config.store.dir, "runs");

        let loaded = Config::load(
            dir.path(),
            env(&[
                ("ARTIFACTCTL_STORE_DIR", "/data"),
                ("ARTIFACTCTL_RUN_DIR", "/ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(loaded.config.store.dir, "/data");
    }

    #[test]
    fn env_values_take_the_default_type() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = Config::load(
            dir.path(),
            env(&[
                ("ARTIFACTCTL_LIST_MODEL_PATTERNS", "*.pt, *.bin"),
                ("ARTIFACTCTL_LIST_METRIC_GOAL", "min"),
            ]),
        )
        .unwrap();
        assert_eq!(loaded.config.list.model_patterns, vec!["*.pt", "*.bin"]);
        assert_eq!(loaded.config.list.metric_goal, Goal::Min);

        let loaded = Config::load(
            dir.path(),
            env(&[("ARTIFACTCTL_LIST_MODEL_PATTERNS", "[\"a\", \"b\"]")]),
        )
        .unwrap();
        assert_eq!(loaded.config.list.model_patterns, vec!["a", "b"]);

        let err =
            Config::load(dir.path(), env(&[("ARTIFACTCTL_LIST_METRIC_GOAL", "best")])).unwrap_err();
        assert!(format!("{err:#}").contains("ARTIFACTCTL_LIST_METRIC_GOAL"));
    }

    #[test]
    fn a_broken_file_names_itself_and_unknown_keys_warn() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "[store\n").unwrap();
        let err = Config::load(dir.path(), env(&[])).unwrap_err();
        assert!(format!("{err:#}").contains(CONFIG_FILE));

        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[store]\ndri = \"x\"\n[nope]\n",
        )
        .unwrap();
        let loaded = Config::load(dir.path(), env(&[])).unwrap();
        assert_eq!(loaded.warnings.len(), 2);
    }

    #[test]
    fn nested_sections_take_env_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = Config::load(
            dir.path(),
            env(&[(
                "ARTIFACTCTL_PROMOTE_VALIDATED_REQUIRE",
                "coverage > 0.95, best_val_loss < 0.5",
            )]),
        )
        .unwrap();
        assert_eq!(
            loaded.config.promote.validated.require,
            vec!["coverage > 0.95", "best_val_loss < 0.5"]
        );
        assert_eq!(loaded.config.promote.validated.checkpoint, "best");

        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[promote.validated]\nrequre = [\"coverage > 0.9\"]\n",
        )
        .unwrap();
        let loaded = Config::load(dir.path(), env(&[])).unwrap();
        assert_eq!(
            loaded.warnings,
            vec!["unknown setting [promote.validated] requre"]
        );
    }

    #[test]
    fn remotes_are_named_in_the_file_and_overridden_by_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[remote]\ndefault = \"origin\"\n[remotes.origin]\nurl = \"s3://b/p\"\nregon = \"x\"\n",
        )
        .unwrap();
        let loaded = Config::load(
            dir.path(),
            env(&[("ARTIFACTCTL_REMOTES_ORIGIN_ENDPOINT", "http://127.0.0.1:1")]),
        )
        .unwrap();
        assert_eq!(
            loaded.warnings,
            vec!["unknown setting [remotes.origin] regon"]
        );
        let (name, remote) = loaded.config.remote(None).unwrap();
        assert_eq!(name, "origin");
        assert_eq!(remote.url, "s3://b/p");
        assert_eq!(remote.endpoint, "http://127.0.0.1:1");
        let err = loaded.config.remote(Some("backup")).unwrap_err();
        assert!(err.to_string().contains("known: origin"), "{err}");
    }

    #[test]
    fn a_remotes_retry_budget_comes_from_the_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[remotes.origin]\nurl = \"s3://b/p\"\nretry_timeout = 5\n",
        )
        .unwrap();
        let loaded = Config::load(dir.path(), env(&[])).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let (_, remote) = loaded.config.remote(Some("origin")).unwrap();
        assert_eq!((remote.retry_timeout, remote.retries), (5, 100));
        let loaded = Config::load(
            dir.path(),
            env(&[("ARTIFACTCTL_REMOTES_ORIGIN_RETRY_TIMEOUT", "90")]),
        )
        .unwrap();
        assert_eq!(loaded.config.remotes["origin"].retry_timeout, 90);
        let err = Config::load(
            dir.path(),
            env(&[("ARTIFACTCTL_REMOTES_ORIGIN_RETRY_TIMEOUT", "30s")]),
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("ARTIFACTCTL_REMOTES_ORIGIN_RETRY_TIMEOUT")
                && text.contains("whole number"),
            "{text}"
        );
    }

    #[test]
    fn root_is_the_nearest_ancestor_with_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        assert_eq!(
            find_root(&nested, None).unwrap(),
            nested.canonicalize().unwrap()
        );
        std::fs::write(dir.path().join(CONFIG_FILE), "").unwrap();
        assert_eq!(
            find_root(&nested, None).unwrap(),
            dir.path().canonicalize().unwrap()
        );
        let explicit = find_root(&nested, Some(Path::new(".."))).unwrap();
        assert_eq!(explicit, dir.path().join("a").canonicalize().unwrap());
    }
}
