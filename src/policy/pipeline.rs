//! The refresh pipeline as declared in `[refresh]`: step definitions, their
//! validation, the order they run in, which of them a command line selects,
//! and whether a step's recorded outputs can be reused. Pure: no I/O here;
//! `ops::refresh` runs what this module decides.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ArtifactError;
use crate::store::metadata::FileEntry;

/// The group `--datasets-only` runs and `--models-only` takes from the latest
/// complete run.
pub const DATASETS_GROUP: &str = "datasets";
/// The folder of a run that holds the step logs; no step may take its name.
pub const LOGS_DIR: &str = "logs";

const STEP_EXAMPLE: &str = "[[refresh.steps]]\n\
name = \"training-data\"\n\
group = \"datasets\"\n\
run = \"sh scripts/make_dataset.sh $ARTIFACTCTL_STEP_DIR\"\n\
deps = [\"scripts/make_dataset.sh\", \"data/**\"]\n\
\n\
[[refresh.steps]]\n\
name = \"MLBondAdjuster\"\n\
group = \"models\"\n\
needs = [\"training-data\"]\n\
run = \"sh scripts/train.sh MLBondAdjuster\"";

/// One `[[refresh.steps]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Names the step's output folder `<run>/<name>/` and its log.
    pub name: String,
    /// `datasets` and `models` have a meaning for `--datasets-only` and
    /// `--models-only`; other groups are labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The command, run with `sh -c` in the project root.
    pub run: String,
    /// Steps whose outputs this one reads.
    #[serde(default)]
    pub needs: Vec<String>,
    /// Files (globs relative to the project root) whose content the outputs
    /// depend on.
    #[serde(default)]
    pub deps: Vec<String>,
    /// Where the application loads this step's outputs from, relative to the
    /// project root (seed 000: `trained_models`). After a complete refresh,
    /// and on `artifactctl checkout`, it holds the run's outputs, read-only
    /// and sharing bytes with the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

/// A validated pipeline, with its steps in an order that runs every step
/// after the steps it needs.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub steps: Vec<StepConfig>,
    /// Indices into `steps`, dependencies first; ties keep the file's order.
    pub order: Vec<usize>,
    /// For each step, the indices of the steps it needs.
    pub needs: Vec<Vec<usize>>,
}

/// A workspace path must be a plain relative path inside the project.
fn check_workspace(step: &str, path: &str) -> Result<(), ArtifactError> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path
            .split('/')
            .any(|part| part == ".." || part == "." || part == ".git")
        || path.contains('\0');
    if bad {
        return Err(config_error(format!(
            "step '{step}' has workspace = '{path}': give a folder relative to the project root, inside it (e.g. \"trained_models\")"
        )));
    }
    Ok(())
}

fn config_error(problem: String) -> ArtifactError {
    ArtifactError::usage(format!(
        "{problem} in [refresh] of artifactctl.toml; steps look like this:\n{STEP_EXAMPLE}"
    ))
}

impl Pipeline {
    pub fn new(steps: &[StepConfig]) -> Result<Pipeline, ArtifactError> {
        if steps.is_empty() {
            return Err(config_error("no steps are declared".into()));
        }
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        let mut env_names: BTreeMap<String, &str> = BTreeMap::new();
        for (i, step) in steps.iter().enumerate() {
            check_step_name(&step.name)?;
            if index.insert(step.name.as_str(), i).is_some() {
                return Err(config_error(format!(
                    "two steps are named '{}': give each step its own name",
                    step.name
                )));
            }
            let var = need_dir_var(&step.name);
            if let Some(other) = env_names.insert(var.clone(), &step.name) {
                return Err(config_error(format!(
                    "steps '{other}' and '{}' would both be given to their dependents as {var}: rename one",
                    step.name
                )));
            }
            if step.run.trim().is_empty() {
                return Err(config_error(format!(
                    "step '{}' has an empty `run` command",
                    step.name
                )));
            }
            if let Some(path) = &step.workspace {
                check_workspace(&step.name, path)?;
            }
        }
        let mut workspaces: BTreeMap<&str, &str> = BTreeMap::new();
        for step in steps {
            if let Some(path) = step.workspace.as_deref() {
                let path = path.trim_end_matches('/');
                for (other_path, other) in &workspaces {
                    let nested = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
                    if nested(path, other_path) || nested(other_path, path) {
                        return Err(config_error(format!(
                            "steps '{other}' and '{}' have overlapping workspace paths ('{other_path}', '{path}'): give each its own folder",
                            step.name
                        )));
                    }
                }
                workspaces.insert(path, &step.name);
            }
        }
        let mut needs = Vec::with_capacity(steps.len());
        for step in steps {
            let mut mine = Vec::new();
            for need in &step.needs {
                let Some(&j) = index.get(need.as_str()) else {
                    let known: Vec<&str> = index.keys().copied().collect();
                    return Err(config_error(format!(
                        "step '{}' needs '{need}', which is not a step (steps: {})",
                        step.name,
                        known.join(", ")
                    )));
                };
                if !mine.contains(&j) {
                    mine.push(j);
                }
            }
            needs.push(mine);
        }
        let order = topological_order(steps, &needs)?;
        Ok(Pipeline {
            steps: steps.to_vec(),
            order,
            needs,
        })
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }

    fn in_group(&self, i: usize, group: &str) -> bool {
        self.steps[i].group.as_deref() == Some(group)
    }

    /// Every step `i` needs, directly or not.
    pub fn upstream_of(&self, i: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut todo = self.needs[i].clone();
        while let Some(j) = todo.pop() {
            if seen.insert(j) {
                todo.extend(&self.needs[j]);
            }
        }
        seen
    }
}

fn check_step_name(name: &str) -> Result<(), ArtifactError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(config_error(format!(
            "step name '{}' cannot be used: names are folder names, 1 to 64 letters, digits, - or _, not starting with -",
            name.escape_debug()
        )));
    }
    if name == LOGS_DIR {
        return Err(config_error(format!(
            "step name '{LOGS_DIR}' is reserved for the run's log folder: choose another name"
        )));
    }
    Ok(())
}

/// Kahn's algorithm, taking ready steps in file order so the order is stable.
fn topological_order(
    steps: &[StepConfig],
    needs: &[Vec<usize>],
) -> Result<Vec<usize>, ArtifactError> {
    let n = steps.len();
    let mut pending: Vec<usize> = needs.iter().map(Vec::len).collect();
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let Some(next) = (0..n).find(|&i| !done[i] && pending[i] == 0) else {
            return Err(config_error(format!(
                "the steps' needs form a cycle: {}; a step cannot need itself, directly or through others",
                describe_cycle(steps, needs, &done)
            )));
        };
        done[next] = true;
        order.push(next);
        for (i, mine) in needs.iter().enumerate() {
            if !done[i] && mine.contains(&next) {
                pending[i] -= 1;
            }
        }
    }
    Ok(order)
}

/// `a -> b -> a`, found by walking needs among the steps left unordered
/// (every one of them needs another one of them, so the walk must repeat).
fn describe_cycle(steps: &[StepConfig], needs: &[Vec<usize>], done: &[bool]) -> String {
    let Some(start) = (0..steps.len()).find(|&i| !done[i]) else {
        return String::new();
    };
    let mut path = vec![start];
    let mut at = start;
    while let Some(&next) = needs[at].iter().find(|&&j| !done[j]) {
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut names: Vec<&str> = path[pos..]
                .iter()
                .map(|&i| steps[i].name.as_str())
                .collect();
            names.push(&steps[next].name);
            return names.join(" needs ");
        }
        path.push(next);
        at = next;
    }
    steps[start].name.clone()
}

/// `ARTIFACTCTL_NEED_<NAME>_DIR`: upper case, `-` becomes `_`.
pub fn need_dir_var(step: &str) -> String {
    format!(
        "ARTIFACTCTL_NEED_{}_DIR",
        step.to_ascii_uppercase().replace('-', "_")
    )
}

/// `ARTIFACTCTL_PARAM_<KEY>` for a param, with anything outside letters and
/// digits turned into `_`.
pub fn param_var(key: &str) -> String {
    let key: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("ARTIFACTCTL_PARAM_{key}")
}

/// What the command line asks to run.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub datasets_only: bool,
    pub models_only: bool,
    pub skip: Vec<String>,
    pub only: Vec<String>,
}

/// Why a step is left out, or `None` when it is to run.
pub fn deselected(
    pipeline: &Pipeline,
    sel: &Selection,
) -> Result<Vec<Option<String>>, ArtifactError> {
    for name in sel.skip.iter().chain(&sel.only) {
        if pipeline.index_of(name).is_none() {
            let known: Vec<&str> = pipeline.steps.iter().map(|s| s.name.as_str()).collect();
            return Err(ArtifactError::usage(format!(
                "no step named '{name}' in [refresh] steps; the steps are: {}",
                known.join(", ")
            )));
        }
    }
    if sel.datasets_only && sel.models_only {
        return Err(ArtifactError::usage(
            "--datasets-only and --models-only exclude each other: pass one",
        ));
    }
    if (sel.datasets_only || sel.models_only)
        && !(0..pipeline.steps.len()).any(|i| pipeline.in_group(i, DATASETS_GROUP))
    {
        return Err(config_error(format!(
            "--{} needs steps in group \"{DATASETS_GROUP}\", and no step has `group = \"{DATASETS_GROUP}\"`",
            if sel.datasets_only { "datasets-only" } else { "models-only" }
        )));
    }
    Ok((0..pipeline.steps.len())
        .map(|i| {
            let name = &pipeline.steps[i].name;
            let in_datasets = pipeline.in_group(i, DATASETS_GROUP);
            if !sel.only.is_empty() && !sel.only.contains(name) {
                Some("not named by --only".to_string())
            } else if sel.skip.contains(name) {
                Some("--skip".to_string())
            } else if sel.datasets_only && !in_datasets {
                Some("--datasets-only".to_string())
            } else if sel.models_only && in_datasets {
                Some("--models-only".to_string())
            } else {
                None
            }
        })
        .collect())
}

/// What was recorded about one step of a run, in `metadata.json`'s top-level
/// `steps` array (documented in docs/refresh.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub command: String,
    pub status: StepStatus,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub duration_s: f64,
    /// The run the outputs were taken from, when the step did not run.
    #[serde(default)]
    pub reused_from: Option<String>,
    /// Set when the step's outputs are in the run: [`output_hash`] of `outputs`.
    #[serde(default)]
    pub output_hash: Option<String>,
    /// The step folder's manifest, paths relative to `<run>/<step>/`.
    #[serde(default)]
    pub outputs: Vec<FileEntry>,
    #[serde(default)]
    pub fingerprint: Option<Fingerprint>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Ran,
    Reused,
    #[default]
    Skipped,
    Failed,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Ran => "ran",
            StepStatus::Reused => "reused",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
        }
    }
}

/// Everything a step's outputs are taken to depend on. Two equal fingerprints
/// mean the step would produce the same outputs again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub command: String,
    /// Hash of the environment artifactctl gives the step ([`env_hash`]).
    pub env: String,
    /// Per `deps` pattern, the hash of the files it matched.
    pub deps: BTreeMap<String, String>,
    /// Per needed step, the hash of its outputs.
    pub needs: BTreeMap<String, String>,
}

/// Why `now` differs from what was recorded, or `None` when equal.
pub fn why_changed(recorded: &Fingerprint, now: &Fingerprint) -> Option<String> {
    if recorded.command != now.command {
        return Some("its command changed".into());
    }
    if recorded.env != now.env {
        return Some("its environment changed ([refresh.env], params or --dataset)".into());
    }
    if recorded.deps != now.deps {
        let changed: Vec<&str> = now
            .deps
            .iter()
            .filter(|(k, v)| recorded.deps.get(*k) != Some(v))
            .map(|(k, _)| k.as_str())
            .chain(
                recorded
                    .deps
                    .keys()
                    .filter(|k| !now.deps.contains_key(*k))
                    .map(String::as_str),
            )
            .collect();
        return Some(format!("deps changed: {}", changed.join(", ")));
    }
    if recorded.needs != now.needs {
        let changed: Vec<&str> = now
            .needs
            .iter()
            .filter(|(k, v)| recorded.needs.get(*k) != Some(v))
            .map(|(k, _)| k.as_str())
            .collect();
        return Some(format!("outputs of {} changed", changed.join(", ")));
    }
    None
}

/// The hash of the environment a step gets beyond what changes every run
/// (run and step folders): `[refresh.env]`, params and the dataset's content.
pub fn env_hash(
    env: &BTreeMap<String, String>,
    params: &BTreeMap<String, Value>,
    dataset_hash: Option<&str>,
) -> String {
    let doc = serde_json::json!({"env": env, "params": params, "dataset": dataset_hash});
    blake3::hash(doc.to_string().as_bytes())
        .to_hex()
        .to_string()
}

/// One hash for a set of files: their paths and content hashes, in path order.
pub fn output_hash(files: &[FileEntry]) -> String {
    let mut sorted: Vec<&FileEntry> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut hasher = blake3::Hasher::new();
    for f in sorted {
        hasher.update(f.path.as_bytes());
        hasher.update(b"\0");
        match (&f.blake3, f.stamp) {
            (Some(hash), _) => hasher.update(hash.as_bytes()),
            // Not hashed yet: the stamp tells such files apart instead.
            (None, stamp) => hasher.update(format!("pending {stamp:?}").as_bytes()),
        };
        hasher.update(b"\n");
    }
    hasher.finalize().to_hex().to_string()
}

/// What a refresh will do with one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run the command (or reuse, if by then its fingerprint matches).
    Run,
    /// Take the outputs recorded in the base run: nothing changed.
    Reuse,
    /// Not selected, but a selected step needs its outputs: take them from
    /// the base run whatever changed.
    Carry,
    /// Not selected and not needed.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub index: usize,
    pub action: Action,
    pub reason: String,
}

/// The previous run a refresh compares with: its ref and step records.
#[derive(Debug, Clone, Default)]
pub struct Base {
    pub reference: String,
    pub steps: BTreeMap<String, StepRecord>,
    /// Steps whose recorded outputs are no longer what the base run holds
    /// (files missing, changed or added), with what is wrong: never reused.
    pub damaged: BTreeMap<String, String>,
}

impl Base {
    fn outputs_of(&self, name: &str) -> Option<&StepRecord> {
        self.steps
            .get(name)
            .filter(|r| r.output_hash.is_some() && !self.damaged.contains_key(name))
    }

    fn damage_of(&self, name: &str) -> Option<String> {
        self.damaged
            .get(name)
            .map(|why| format!("outputs of {} damaged: {why}; runs again", self.reference))
    }
}

/// Decide, before anything runs, what happens to each step (in run order).
/// `partial[i]` is step `i`'s fingerprint with `needs` left empty: the needs
/// are filled here from the base run for steps whose upstream is not run.
pub fn plan(
    pipeline: &Pipeline,
    deselected: &[Option<String>],
    force: bool,
    base: Option<&Base>,
    partial: &[Fingerprint],
) -> Result<Vec<Planned>, ArtifactError> {
    let n = pipeline.steps.len();
    // Steps not selected but needed by a selected one must be carried in.
    let mut needed = vec![false; n];
    for (i, left_out) in deselected.iter().enumerate() {
        if left_out.is_none() {
            for j in pipeline.upstream_of(i) {
                needed[j] = true;
            }
        }
    }
    let mut actions: Vec<Option<Action>> = vec![None; n];
    let mut planned = Vec::with_capacity(n);
    for &i in &pipeline.order {
        let step = &pipeline.steps[i];
        let (action, reason) = match &deselected[i] {
            Some(why) if needed[i] => {
                let Some(base) = base else {
                    return Err(ArtifactError::not_found(format!(
                        "step '{}' is left out ({why}) but other steps need its outputs, and there is no complete run to take them from: run `artifactctl refresh` once without {why}",
                        step.name
                    )));
                };
                if let Some(damage) = base.damaged.get(&step.name) {
                    return Err(ArtifactError::refused(format!(
                        "step '{}' is left out ({why}) but other steps need its outputs, and those in {} are damaged ({damage}): run `artifactctl refresh` without {why} to make them again",
                        step.name, base.reference,
                    )));
                }
                if base.outputs_of(&step.name).is_none() {
                    return Err(ArtifactError::not_found(format!(
                        "step '{}' is left out ({why}) but other steps need its outputs, and {} has none: run `artifactctl refresh` once without {why}",
                        step.name, base.reference
                    )));
                }
                (
                    Action::Carry,
                    format!("{why}; outputs taken from {}", base.reference),
                )
            }
            Some(why) => (Action::Skip, why.clone()),
            None => decide(pipeline, i, force, base, partial, &actions),
        };
        actions[i] = Some(action.clone());
        planned.push(Planned {
            index: i,
            action,
            reason,
        });
    }
    Ok(planned)
}

fn decide(
    pipeline: &Pipeline,
    i: usize,
    force: bool,
    base: Option<&Base>,
    partial: &[Fingerprint],
    actions: &[Option<Action>],
) -> (Action, String) {
    let step = &pipeline.steps[i];
    if force {
        return (Action::Run, "--force".into());
    }
    let Some(base) = base else {
        return (Action::Run, "no earlier complete run".into());
    };
    if let Some(damage) = base.damage_of(&step.name) {
        return (Action::Run, damage);
    }
    let Some(record) = base.outputs_of(&step.name) else {
        return (Action::Run, format!("not in {}", base.reference));
    };
    let Some(recorded) = &record.fingerprint else {
        return (
            Action::Run,
            format!("{} recorded no fingerprint", base.reference),
        );
    };
    let mut now = partial[i].clone();
    let mut upstream_runs = Vec::new();
    for &j in &pipeline.needs[i] {
        let need = &pipeline.steps[j].name;
        match actions[j] {
            Some(Action::Reuse) | Some(Action::Carry) => {
                let hash = base
                    .outputs_of(need)
                    .and_then(|r| r.output_hash.clone())
                    .unwrap_or_default();
                now.needs.insert(need.clone(), hash);
            }
            _ => {
                upstream_runs.push(need.as_str());
                now.needs.insert(
                    need.clone(),
                    recorded.needs.get(need).cloned().unwrap_or_default(),
                );
            }
        }
    }
    match why_changed(recorded, &now) {
        Some(reason) => (Action::Run, reason),
        None if upstream_runs.is_empty() => {
            (Action::Reuse, format!("unchanged since {}", base.reference))
        }
        None => (
            Action::Run,
            format!(
                "{} runs first; reused if its outputs come out unchanged",
                upstream_runs.join(", ")
            ),
        ),
    }
}

/// At run time, once every need is settled: can step `name` be reused?
pub fn reusable<'a>(
    base: Option<&'a Base>,
    name: &str,
    now: &Fingerprint,
) -> Result<&'a StepRecord, String> {
    let Some(base) = base else {
        return Err("no earlier complete run".into());
    };
    if let Some(damage) = base.damage_of(name) {
        return Err(damage);
    }
    let record = base
        .outputs_of(name)
        .ok_or_else(|| format!("not in {}", base.reference))?;
    let recorded = record
        .fingerprint
        .as_ref()
        .ok_or_else(|| format!("{} recorded no fingerprint", base.reference))?;
    match why_changed(recorded, now) {
        Some(reason) => Err(reason),
        None => Ok(record),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, group: Option<&str>, needs: &[&str]) -> StepConfig {
        StepConfig {
            name: name.into(),
            group: group.map(str::to_string),
            run: format!("echo {name}"),
            needs: needs.iter().map(|s| s.to_string()).collect(),
            deps: vec![],
            workspace: None,
        }
    }

    fn seed_pipeline() -> Pipeline {
        Pipeline::new(&[
            step(
                "model-a",
                Some("models"),
                &["training-data", "evaluation-data"],
            ),
            step("training-data", Some("datasets"), &[]),
            step("evaluation-data", Some("datasets"), &[]),
            step("model-b", Some("models"), &["training-data"]),
        ])
        .unwrap()
    }

    fn names(p: &Pipeline, order: &[usize]) -> Vec<String> {
        order.iter().map(|&i| p.steps[i].name.clone()).collect()
    }

    #[test]
    fn order_puts_needs_first_and_keeps_file_order() {
        let p = seed_pipeline();
        assert_eq!(
            names(&p, &p.order),
            ["training-data", "evaluation-data", "model-a", "model-b"]
        );
    }

    #[test]
    fn config_errors_name_the_problem_and_show_the_form() {
        let err = Pipeline::new(&[]).unwrap_err().to_string();
        assert!(
            err.contains("no steps") && err.contains("[[refresh.steps]]"),
            "{err}"
        );

        let err = Pipeline::new(&[step("a", None, &["nope"])])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("needs 'nope'") && err.contains("[[refresh.steps]]"),
            "{err}"
        );

        let err = Pipeline::new(&[step("a", None, &[]), step("a", None, &[])])
            .unwrap_err()
            .to_string();
        assert!(err.contains("two steps are named 'a'"), "{err}");

        let err = Pipeline::new(&[
            step("a", None, &["c"]),
            step("b", None, &["a"]),
            step("c", None, &["b"]),
            step("d", None, &[]),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("cycle: a needs c needs b needs a"), "{err}");

        let err = Pipeline::new(&[step("a", None, &["a"])])
            .unwrap_err()
            .to_string();
        assert!(err.contains("cycle: a needs a"), "{err}");

        for bad in ["", "../x", "logs", "a b", "-a"] {
            assert!(Pipeline::new(&[step(bad, None, &[])]).is_err(), "{bad:?}");
        }
        let err = Pipeline::new(&[step("a-b", None, &[]), step("a_b", None, &[])])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ARTIFACTCTL_NEED_A_B_DIR"), "{err}");
    }

    #[test]
    fn env_var_names() {
        assert_eq!(
            need_dir_var("training-data"),
            "ARTIFACTCTL_NEED_TRAINING_DATA_DIR"
        );
        assert_eq!(param_var("seq.length"), "ARTIFACTCTL_PARAM_SEQ_LENGTH");
    }

    #[test]
    fn selection_by_group_and_name() {
        let p = seed_pipeline();
        let sel = |s: Selection| deselected(&p, &s).unwrap();
        let d = sel(Selection {
            datasets_only: true,
            ..Default::default()
        });
        assert_eq!(d.iter().filter(|x| x.is_none()).count(), 2);
        assert!(d[0].is_some() && d[1].is_none());
        let d = sel(Selection {
            models_only: true,
            ..Default::default()
        });
        assert!(d[0].is_none() && d[1].is_some() && d[3].is_none());
        let d = sel(Selection {
            skip: vec!["training-data".into()],
            ..Default::default()
        });
        assert_eq!(d[1].as_deref(), Some("--skip"));
        let d = sel(Selection {
            only: vec!["model-b".into()],
            ..Default::default()
        });
        assert_eq!(d.iter().filter(|x| x.is_none()).count(), 1);
        let err = deselected(
            &p,
            &Selection {
                skip: vec!["nope".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("the steps are: model-a"));
    }

    fn fp(command: &str) -> Fingerprint {
        Fingerprint {
            command: command.into(),
            env: "e".into(),
            ..Default::default()
        }
    }

    fn base_for(p: &Pipeline, partial: &[Fingerprint]) -> Base {
        let mut steps = BTreeMap::new();
        for (i, s) in p.steps.iter().enumerate() {
            let mut f = partial[i].clone();
            for &j in &p.needs[i] {
                f.needs
                    .insert(p.steps[j].name.clone(), format!("out-{}", p.steps[j].name));
            }
            steps.insert(
                s.name.clone(),
                StepRecord {
                    name: s.name.clone(),
                    status: StepStatus::Ran,
                    output_hash: Some(format!("out-{}", s.name)),
                    fingerprint: Some(f),
                    ..Default::default()
                },
            );
        }
        Base {
            damaged: BTreeMap::new(),
            reference: "20261123_101500".into(),
            steps,
        }
    }

    #[test]
    fn unchanged_steps_are_reused_and_changes_propagate() {
        let p = seed_pipeline();
        let partial: Vec<Fingerprint> = p.steps.iter().map(|s| fp(&s.run)).collect();
        let base = base_for(&p, &partial);
        let none = vec![None; 4];
        let plan_with =
            |partial: &[Fingerprint], force| plan(&p, &none, force, Some(&base), partial).unwrap();

        let all = plan_with(&partial, false);
        assert!(all.iter().all(|s| s.action == Action::Reuse), "{all:?}");

        let forced = plan_with(&partial, true);
        assert!(forced.iter().all(|s| s.action == Action::Run));

        let mut changed = partial.clone();
        changed[2] = fp("echo new");
        let planned = plan_with(&changed, false);
        let by_name = |n: &str| {
            planned
                .iter()
                .find(|s| p.steps[s.index].name == n)
                .unwrap()
                .clone()
        };
        assert_eq!(by_name("evaluation-data").action, Action::Run);
        assert_eq!(by_name("evaluation-data").reason, "its command changed");
        assert_eq!(by_name("model-a").action, Action::Run);
        assert!(by_name("model-a")
            .reason
            .contains("evaluation-data runs first"));
        assert_eq!(by_name("model-b").action, Action::Reuse);

        let mut deps = partial.clone();
        deps[1].deps.insert("data/**".into(), "new".into());
        let planned = plan_with(&deps, false);
        assert_eq!(planned[0].reason, "deps changed: data/**");

        let no_base = plan(&p, &none, false, None, &partial).unwrap();
        assert!(no_base.iter().all(|s| s.action == Action::Run));
    }

    #[test]
    fn left_out_steps_that_are_needed_are_carried_or_refused() {
        let p = seed_pipeline();
        let partial: Vec<Fingerprint> = p.steps.iter().map(|s| fp(&s.run)).collect();
        let base = base_for(&p, &partial);
        let d = deselected(
            &p,
            &Selection {
                models_only: true,
                ..Default::default()
            },
        )
        .unwrap();
        let planned = plan(&p, &d, true, Some(&base), &partial).unwrap();
        assert_eq!(planned[0].action, Action::Carry);
        assert!(planned[0].reason.contains("--models-only"));
        assert_eq!(planned[2].action, Action::Run);

        let err = plan(&p, &d, false, None, &partial).unwrap_err();
        assert_eq!(err.kind, crate::error::ErrorKind::NotFound);

        let d = deselected(
            &p,
            &Selection {
                datasets_only: true,
                ..Default::default()
            },
        )
        .unwrap();
        let planned = plan(&p, &d, false, None, &partial).unwrap();
        assert_eq!(planned[2].action, Action::Skip);
    }

    #[test]
    fn reusable_compares_the_full_fingerprint() {
        let p = seed_pipeline();
        let partial: Vec<Fingerprint> = p.steps.iter().map(|s| fp(&s.run)).collect();
        let base = base_for(&p, &partial);
        let mut now = partial[3].clone();
        now.needs
            .insert("training-data".into(), "out-training-data".into());
        assert!(reusable(Some(&base), "model-b", &now).is_ok());
        now.needs.insert("training-data".into(), "other".into());
        assert_eq!(
            reusable(Some(&base), "model-b", &now).unwrap_err(),
            "outputs of training-data changed"
        );
    }

    #[test]
    fn output_hash_ignores_order() {
        let f = |p: &str, h: &str| FileEntry {
            path: p.into(),
            size: 1,
            blake3: Some(h.into()),
            symlink: None,
            path_bytes: None,
            stamp: None,
        };
        assert_eq!(
            output_hash(&[f("a", "1"), f("b", "2")]),
            output_hash(&[f("b", "2"), f("a", "1")])
        );
        assert_ne!(output_hash(&[f("a", "1")]), output_hash(&[f("a", "2")]));
    }
}
