use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{streams_of, Project};
use predicates::prelude::*;
use serde_json::Value;

/// A temporary project holding a copy of `examples/` (the README's pipeline).
/// A project holding a copy of `examples/` (its pipeline), no store yet.
pub(crate) fn example() -> Project {
    let p = Project::new();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"),
        p.root(),
    );
    p
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name();
        if name == "artifacts" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A project whose artifactctl.toml is `config`.
fn project_with(config: &str) -> Project {
    let p = Project::new();
    p.write("artifactctl.toml", config);
    p
}

/// `refresh --json ARGS`: the exit code and the parsed document.
fn refresh(p: &Project, args: &[&str]) -> (i32, Value) {
    let out = p
        .cmd()
        .args(["refresh", "--json"])
        .args(args)
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "refresh {args:?} printed no JSON ({e}), exit {code}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, doc)
}

fn step<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name} in {doc}"))
}

fn statuses(doc: &Value) -> Vec<(String, String)> {
    doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `refresh --dry-run --json [args]`: (step, action, reason) in run order.
pub(crate) fn plan(p: &Project, args: &[&str]) -> Vec<(String, String, String)> {
    let out = p
        .cmd()
        .args(["refresh", "--dry-run", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dry run {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["action"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub(crate) fn run_dir(p: &Project, reference: &str) -> PathBuf {
    p.store().join("raw").join(reference)
}

fn metadata(p: &Project, reference: &str) -> Value {
    let text = std::fs::read_to_string(run_dir(p, reference).join("metadata.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn latest(p: &Project) -> String {
    std::fs::read_link(p.store().join("raw/latest"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().ino()
}

const MODELS: [&str; 3] = ["MLBondAdjuster", "RegimeDetector", "TailRiskAnalyzer"];

#[test]
fn a_full_refresh_records_steps_logs_metrics_and_params() {
    let p = example();
    let (code, doc) = refresh(&p, &[]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["status"], "complete");
    assert!(statuses(&doc).iter().all(|(_, s)| s == "ran"), "{doc}");
    assert_eq!(doc["steps"].as_array().unwrap().len(), 5);
    let first = step(&doc, "training-data");
    assert_eq!(first["exit_code"], 0);
    assert!(first["duration_s"].is_number());
    assert!(first["reused_from"].is_null());

    let reference = doc["run"].as_str().unwrap();
    assert_eq!(latest(&p), reference);
    let dir = run_dir(&p, reference);
    assert!(dir.join("training-data/dataset.csv").is_file());
    assert!(dir.join("evaluation-data/scaler.json").is_file());
    for model in MODELS {
        assert!(dir.join(model).join("model.joblib").is_file());
        let log = std::fs::read_to_string(dir.join("logs").join(format!("{model}.log"))).unwrap();
        assert!(
            log.contains(&format!("training {model} on 36 bonds")),
            "{log}"
        );
    }

    let meta = metadata(&p, reference);
    assert_eq!(meta["status"], "complete");
    assert_eq!(meta["params"]["seq_length"], 30);
    assert_eq!(meta["lineage"]["source"], "refresh");
    let steps = meta["steps"].as_array().unwrap();
    let rec = steps
        .iter()
        .find(|s| s["name"] == "MLBondAdjuster")
        .unwrap();
    for field in [
        "command",
        "exit_code",
        "started_at",
        "ended_at",
        "duration_s",
        "reused_from",
        "outputs",
        "fingerprint",
    ] {
        assert!(rec.get(field).is_some(), "step record lacks {field}: {rec}");
    }
    assert_eq!(rec["command"], "sh scripts/train.sh MLBondAdjuster");
    let outputs: Vec<&str> = rec["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(outputs, ["metrics.json", "model.joblib"]);
    // The run's manifest holds every step file and every log.
    let files: Vec<&str> = meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(files.contains(&"MLBondAdjuster/model.joblib"));
    assert!(files.contains(&"logs/training-data.log"));

    let runs = p.list_json(&["--where", "params.seq_length=30"]);
    let run = &runs["runs"][0];
    assert_eq!(run["ref"], reference);
    for model in MODELS {
        assert!(
            run["metrics"][format!("{model}.sharpe_ratio")].is_number(),
            "{run}"
        );
    }
    assert_eq!(run["model_count"], 3);
    assert!(p.list_json(&["--where", "params.seq_length=60"])["runs"]
        .as_array()
        .unwrap()
        .is_empty());
    // Whatever the refresh did, the store it leaves verifies clean.
    p.assert_verifies_clean();
}

#[test]
fn an_unchanged_pipeline_is_reused_without_copying() {
    let p = example();
    assert_output_snapshot!(
        Some(p.root()),
        "refresh_plan_first",
        streams_of(p.cmd().args(["refresh", "--dry-run"]))
    );
    let (_, first) = refresh(&p, &[]);
    let first_ref = first["run"].as_str().unwrap().to_string();
    let planned = plan(&p, &[]);
    assert!(planned.iter().all(|(_, a, _)| a == "reuse"), "{planned:?}");
    p.cmd()
        .args(["refresh", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("reused from {first_ref}")));
    assert_output_snapshot!(
        Some(p.root()),
        "refresh_plan_reuse",
        streams_of(p.cmd().args(["refresh", "--dry-run"]))
    );

    // Nothing changed: up to date with the first run, nothing written.
    let journal = p.store().join(".artifactctl/journal.jsonl");
    let journal_before = std::fs::read(&journal).unwrap();
    let (code, noop) = refresh(&p, &[]);
    assert_eq!(code, 0);
    assert_eq!(noop["status"], "up_to_date", "{noop}");
    assert_eq!(noop["run"], first_ref.as_str());
    assert_eq!(p.list_json(&[])["runs"].as_array().unwrap().len(), 1);
    assert_eq!(std::fs::read(&journal).unwrap(), journal_before);
    assert_eq!(latest(&p), first_ref);
    p.cmd()
        .arg("refresh")
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "up to date with {first_ref}"
        )));

    // --publish-unchanged publishes a run of reused outputs anyway.
    let (code, second) = refresh(&p, &["--publish-unchanged"]);
    assert_eq!(code, 0);
    assert!(
        statuses(&second).iter().all(|(_, s)| s == "reused"),
        "{second}"
    );
    assert_eq!(
        step(&second, "RegimeDetector")["reused_from"],
        first_ref.as_str()
    );
    let second_ref = second["run"].as_str().unwrap();
    assert_ne!(second_ref, first_ref);
    assert_eq!(latest(&p), second_ref);
    // Hard links of read-only files: the same inode, no bytes copied.
    for rel in ["training-data/dataset.csv", "TailRiskAnalyzer/model.joblib"] {
        assert_eq!(
            inode(&run_dir(&p, &first_ref).join(rel)),
            inode(&run_dir(&p, second_ref).join(rel)),
            "{rel}"
        );
    }
    // Reused metrics are still the run's metrics.
    let meta = metadata(&p, second_ref);
    assert!(meta["metrics"]["TailRiskAnalyzer.sharpe_ratio"].is_number());
    assert_eq!(meta["lineage"]["parent"], format!("raw/{first_ref}"));

    let (_, forced) = refresh(&p, &["--force"]);
    assert!(
        statuses(&forced).iter().all(|(_, s)| s == "ran"),
        "{forced}"
    );
    // Whatever the refresh did, the store it leaves verifies clean.
    p.assert_verifies_clean();
}

#[test]
fn reuse_is_invalidated_by_deps_commands_and_upstream_outputs() {
    let p = example();
    refresh(&p, &[]);

    // A dep of the models changes: datasets are reused, models run.
    let script = std::fs::read_to_string(p.path("scripts/train.sh")).unwrap();
    p.write("scripts/train.sh", format!("{script}# tuned\n"));
    let planned = plan(&p, &[]);
    assert_eq!(planned[0].1, "reuse");
    assert_eq!(
        planned[2],
        (
            "MLBondAdjuster".into(),
            "run".into(),
            "deps changed: scripts/train.sh".into()
        )
    );
    let (_, doc) = refresh(&p, &[]);
    assert_eq!(step(&doc, "training-data")["status"], "reused");
    assert_eq!(step(&doc, "MLBondAdjuster")["status"], "ran");

    // One step's command changes: only that step runs.
    let config = std::fs::read_to_string(p.path("artifactctl.toml")).unwrap();
    p.write(
        "artifactctl.toml",
        config.replace(
            "sh scripts/train.sh RegimeDetector",
            "sh scripts/train.sh RegimeDetector  # v2",
        ),
    );
    let planned = plan(&p, &[]);
    assert_eq!(planned[3].2, "its command changed");
    let (_, doc) = refresh(&p, &[]);
    let ran: Vec<String> = statuses(&doc)
        .into_iter()
        .filter(|(_, s)| s == "ran")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(ran, ["RegimeDetector"]);

    // The data changes: the datasets run, their outputs differ, the models run.
    let data = std::fs::read_to_string(p.path("data/bonds.csv")).unwrap();
    p.write("data/bonds.csv", data.replacen("B000,", "B000X,", 1));
    let planned = plan(&p, &[]);
    assert!(
        planned[2]
            .2
            .contains("training-data, evaluation-data runs first"),
        "{planned:?}"
    );
    let (_, doc) = refresh(&p, &[]);
    assert!(statuses(&doc).iter().all(|(_, s)| s == "ran"), "{doc}");
    let meta = metadata(&p, doc["run"].as_str().unwrap());
    assert_ne!(
        meta["steps"][0]["output_hash"],
        Value::Null,
        "a ran step records its output hash"
    );

    // The datasets run again but produce the same bytes: the models, whose
    // inputs did not change, are reused (the decision waits for the outputs).
    let maker = std::fs::read_to_string(p.path("scripts/make_dataset.sh")).unwrap();
    p.write("scripts/make_dataset.sh", format!("{maker}# same output\n"));
    let (_, doc) = refresh(&p, &[]);
    assert_eq!(step(&doc, "training-data")["status"], "ran");
    for model in MODELS {
        assert_eq!(step(&doc, model)["status"], "reused", "{doc}");
    }
    // Whatever the refresh did, the store it leaves verifies clean.
    p.assert_verifies_clean();
}

#[test]
fn flags_select_steps_and_the_plan_says_so() {
    let p = example();
    // Nothing to take datasets from yet.
    p.cmd()
        .args(["refresh", "--models-only"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--models-only").and(predicate::str::contains("refresh")));

    let planned = plan(&p, &["--datasets-only"]);
    let actions: Vec<&str> = planned.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(actions, ["run", "run", "skip", "skip", "skip"]);
    assert_eq!(planned[4].2, "--datasets-only");

    let (code, datasets) = refresh(&p, &["--datasets-only"]);
    assert_eq!(code, 0);
    assert_eq!(datasets["status"], "complete");
    assert_eq!(step(&datasets, "MLBondAdjuster")["status"], "skipped");
    let datasets_ref = datasets["run"].as_str().unwrap().to_string();
    assert!(!run_dir(&p, &datasets_ref).join("MLBondAdjuster").exists());

    // --models-only: the datasets of the latest complete run, the very files.
    let planned = plan(&p, &["--models-only"]);
    assert_eq!(planned[0].1, "carry");
    assert!(planned[0].2.contains(&datasets_ref));
    assert_eq!(planned[2].1, "run");
    let (code, models) = refresh(&p, &["--models-only"]);
    assert_eq!(code, 0, "{models}");
    let dataset = step(&models, "training-data");
    assert_eq!(dataset["status"], "skipped");
    assert_eq!(dataset["reused_from"], datasets_ref.as_str());
    assert_eq!(step(&models, "RegimeDetector")["status"], "ran");
    let models_ref = models["run"].as_str().unwrap();
    assert_eq!(
        inode(&run_dir(&p, &datasets_ref).join("training-data/scaler.json")),
        inode(&run_dir(&p, models_ref).join("training-data/scaler.json"))
    );

    // --skip and --only.
    let planned = plan(&p, &["--skip", "TailRiskAnalyzer", "--force"]);
    assert_eq!(
        planned[4],
        ("TailRiskAnalyzer".into(), "skip".into(), "--skip".into())
    );
    assert_eq!(planned[0].1, "run");
    let planned = plan(&p, &["--only", "RegimeDetector", "--force"]);
    let actions: Vec<&str> = planned.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(actions, ["carry", "carry", "skip", "run", "skip"]);
    let planned = plan(&p, &["--skip", "training-data", "--force"]);
    assert_eq!(planned[0].1, "carry");

    // --param changes the environment, so everything runs; recorded in params.
    let planned = plan(&p, &["--param", "seq_length=60"]);
    assert!(planned.iter().all(|s| s.1 == "run"), "{planned:?}");
    let (_, doc) = refresh(
        &p,
        &[
            "--param",
            "seq_length=60",
            "--namespace",
            "bond",
            "--id",
            "tuned",
        ],
    );
    assert_eq!(doc["run"], "bond/tuned");
    assert_eq!(
        p.list_json(&["--where", "params.seq_length=60"])["runs"][0]["ref"],
        "bond/tuned"
    );
    p.cmd()
        .args(["refresh", "--namespace", "bond", "--id", "tuned"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("choose another --id"));

    p.cmd()
        .args(["refresh", "--skip", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no step named 'nope'"));
    p.cmd()
        .args(["refresh", "--datasets-only", "--models-only"])
        .assert()
        .code(2);
    // Whatever the refresh did, the store it leaves verifies clean.
    p.assert_verifies_clean();
}

const FAILING: &str = r#"
[[refresh.steps]]
name = "data"
group = "datasets"
run = "echo rows > $ARTIFACTCTL_STEP_DIR/data.csv"

[[refresh.steps]]
name = "broken"
group = "models"
needs = ["data"]
run = "echo half > $ARTIFACTCTL_STEP_DIR/partial.bin; echo 'diverged at epoch 3' >&2; exit 3"

[[refresh.steps]]
name = "after-broken"
needs = ["broken"]
run = "true"

[[refresh.steps]]
name = "independent"
needs = ["data"]
run = "echo ok > $ARTIFACTCTL_STEP_DIR/ok"
"#;

#[test]
fn a_failing_step_gives_a_failed_run_that_never_becomes_latest() {
    let p = example();
    let (_, good) = refresh(&p, &[]);
    let good_ref = good["run"].as_str().unwrap().to_string();

    let q = project_with(FAILING);
    // -q: no streaming, the child writes its log file directly.
    let (code, doc) = refresh(&q, &["-q"]);
    assert_eq!(code, 1, "{doc}");
    assert_eq!(doc["status"], "failed");
    assert_eq!(step(&doc, "broken")["status"], "failed");
    assert_eq!(step(&doc, "broken")["exit_code"], 3);
    assert_eq!(step(&doc, "after-broken")["status"], "skipped");
    assert_eq!(step(&doc, "independent")["status"], "skipped");
    let failed_ref = doc["run"].as_str().unwrap();
    let dir = run_dir(&q, failed_ref);
    // Kept for debugging: the log and the partial output.
    let log = std::fs::read_to_string(dir.join("logs/broken.log")).unwrap();
    assert!(log.contains("diverged at epoch 3"));
    assert!(dir.join("broken/partial.bin").is_file());
    assert!(q.store().join("raw/latest").symlink_metadata().is_err());
    let runs = q.list_json(&[]);
    assert_eq!(runs["runs"][0]["status"], "failed");
    assert_eq!(runs["runs"][0]["latest"], false);

    let (code, doc) = refresh(&q, &["--keep-going"]);
    assert_eq!(code, 1);
    assert_eq!(step(&doc, "independent")["status"], "ran");
    assert_eq!(step(&doc, "after-broken")["status"], "skipped");

    // The same in a store that has a latest: it stays.
    let config = std::fs::read_to_string(p.path("artifactctl.toml")).unwrap();
    p.write(
        "artifactctl.toml",
        config.replace("sh scripts/train.sh RegimeDetector", "exit 7"),
    );
    let (code, doc) = refresh(&p, &[]);
    assert_eq!(code, 1);
    assert_eq!(step(&doc, "RegimeDetector")["exit_code"], 7);
    assert_eq!(latest(&p), good_ref);
    // A failed run is never the base of reuse: the next refresh compares with
    // the latest complete run.
    let planned = plan(&p, &[]);
    assert!(planned[0].2.contains(&good_ref), "{planned:?}");
    // Whatever the refresh did, the store it leaves verifies clean.
    p.assert_verifies_clean();
}

#[test]
fn config_errors_name_the_problem_and_show_the_form() {
    let cases = [
        ("", "no steps are declared"),
        (
            "[[refresh.steps]]\nname = \"a\"\nrun = \"true\"\nneeds = [\"b\"]\n",
            "step 'a' needs 'b', which is not a step",
        ),
        (
            "[[refresh.steps]]\nname = \"a\"\nrun = \"true\"\nneeds = [\"b\"]\n[[refresh.steps]]\nname = \"b\"\nrun = \"true\"\nneeds = [\"a\"]\n",
            "cycle: a needs b needs a",
        ),
        (
            "[[refresh.steps]]\nname = \"a\"\nrun = \"true\"\n[[refresh.steps]]\nname = \"a\"\nrun = \"true\"\n",
            "two steps are named 'a'",
        ),
        (
            "[[refresh.steps]]\nname = \"a\"\nrun = \"true\"\ndeps = [\"missing/**\"]\n",
            "matches no file",
        ),
        (
            "[[refresh.steps]]\nname = \"../escape\"\nrun = \"true\"\n",
            "cannot be used",
        ),
    ];
    for (config, wanted) in cases {
        let p = project_with(config);
        for extra in [&["--dry-run"][..], &[]] {
            p.cmd().arg("refresh").args(extra).assert().code(2).stderr(
                predicate::str::contains(wanted).and(
                    predicate::str::contains("[[refresh.steps]]")
                        .or(predicate::str::contains("deps =")),
                ),
            );
        }
        assert!(
            !p.store().join("raw").exists(),
            "nothing may be published for: {wanted}"
        );
    }
    let p = project_with("[[refresh.steps]]\nname = \"a\"\nrun = \"true\"\nneed = [\"b\"]\n");
    p.cmd()
        .arg("refresh")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown field `need`"));
}

#[test]
fn steps_get_their_environment_and_the_dataset_is_recorded() {
    let p = project_with(
        r#"
[refresh.params]
seq_length = 30
[refresh.env]
SEED = "42"
[[refresh.steps]]
name = "training-data"
group = "datasets"
run = "cp \"$ARTIFACTCTL_DATASET\" $ARTIFACTCTL_STEP_DIR/data.csv"
[[refresh.steps]]
name = "model"
needs = ["training-data"]
run = "env | grep -E '^(ARTIFACTCTL_|SEED=)' | sort > $ARTIFACTCTL_STEP_DIR/env.txt; pwd > $ARTIFACTCTL_STEP_DIR/pwd.txt"
"#,
    );
    p.write("my_dataset.csv", "a,b\n1,2\n");
    let (code, doc) = refresh(&p, &["--dataset", "my_dataset.csv", "--param", "lr=0.1"]);
    assert_eq!(code, 0, "{doc}");
    let reference = doc["run"].as_str().unwrap();
    let dir = run_dir(&p, reference);
    assert_eq!(
        std::fs::read_to_string(dir.join("training-data/data.csv")).unwrap(),
        "a,b\n1,2\n"
    );
    let env = std::fs::read_to_string(dir.join("model/env.txt")).unwrap();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing from {env}"))
            .to_string()
    };
    assert_eq!(var("ARTIFACTCTL_RUN_ID"), reference);
    assert!(var("ARTIFACTCTL_RUN_DIR").contains(".artifactctl/staging/"));
    assert!(var("ARTIFACTCTL_STEP_DIR").ends_with("/model"));
    assert!(var("ARTIFACTCTL_NEED_TRAINING_DATA_DIR").ends_with("/training-data"));
    assert!(var("ARTIFACTCTL_DATASET").ends_with("my_dataset.csv"));
    assert_eq!(var("ARTIFACTCTL_PARAM_SEQ_LENGTH"), "30");
    assert_eq!(var("ARTIFACTCTL_PARAM_LR"), "0.1");
    assert_eq!(var("SEED"), "42");
    let pwd = std::fs::read_to_string(dir.join("model/pwd.txt")).unwrap();
    assert_eq!(
        Path::new(pwd.trim()).canonicalize().unwrap(),
        p.root().canonicalize().unwrap()
    );

    let meta = metadata(&p, reference);
    assert!(meta["lineage"]["dataset"]["path"]
        .as_str()
        .unwrap()
        .ends_with("my_dataset.csv"));
    assert!(meta["lineage"]["dataset"]["blake3"].is_string());
    assert_eq!(meta["params"]["lr"], 0.1);

    // Another dataset is another environment: nothing is reused.
    p.write("my_dataset.csv", "a,b\n3,4\n");
    let planned = plan(&p, &["--dataset", "my_dataset.csv", "--param", "lr=0.1"]);
    assert!(planned[0].2.contains("environment changed"), "{planned:?}");
    p.cmd()
        .args(["refresh", "--dataset", "missing.csv"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("missing.csv"));
    // Whatever the refresh did, the store it leaves verifies clean.
    p.assert_verifies_clean();
}

#[test]
fn jobs_run_independent_steps_at_once() {
    // Each step waits for the other to have started: only parallel runs pass.
    let wait_for = |me: &str, other: &str| {
        format!(
            "touch {me}.started; i=0; while [ ! -e {other}.started ]; do i=$((i+1)); [ $i -gt 100 ] && exit 1; sleep 0.1; done"
        )
    };
    let p = project_with(&format!(
        "[[refresh.steps]]\nname = \"a\"\nrun = \"{}\"\n[[refresh.steps]]\nname = \"b\"\nrun = \"{}\"\n",
        wait_for("a", "b"),
        wait_for("b", "a")
    ));
    let (code, doc) = refresh(&p, &["--jobs", "2", "--force"]);
    assert_eq!(code, 0, "{doc}");
    assert!(statuses(&doc).iter().all(|(_, s)| s == "ran"));
    // Whatever the refresh did, the store it leaves verifies clean.
    p.assert_verifies_clean();
}

#[test]
fn metrics_that_are_not_json_are_reported_and_skipped() {
    let p = project_with(
        "[[refresh.steps]]\nname = \"m\"\nrun = \"echo '{not json' > $ARTIFACTCTL_STEP_DIR/metrics.json\"\n",
    );
    p.cmd()
        .arg("refresh")
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "metrics.json is not a JSON object",
        ));
    // Whatever the refresh did, the store it leaves verifies clean.
    p.assert_verifies_clean();
}

/// `refresh ARGS` started in the background, stdout piped, with the same
/// clean environment as `crate::support::bin()`.
fn spawn_refresh(p: &Project, args: &[&str], stderr: Stdio) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_artifactctl"));
    for (key, _) in std::env::vars() {
        if key.starts_with("ARTIFACTCTL_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(p.root())
        .arg("refresh")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn sigterm_in_the_middle_of_a_step_publishes_an_interrupted_run() {
    let p = example();
    let (_, good) = refresh(&p, &[]);
    let good_ref = good["run"].as_str().unwrap().to_string();

    let config = std::fs::read_to_string(p.path("artifactctl.toml")).unwrap();
    // The step starts a grandchild, which must be stopped with it.
    p.write(
        "artifactctl.toml",
        config.replace(
            "sh scripts/train.sh RegimeDetector",
            "sleep 60 & echo $! > grandchild.pid; echo $$ > child.pid; wait",
        ),
    );
    let child = spawn_refresh(&p, &["--json"], Stdio::null());
    wait_for_file(&p.path("grandchild.pid"));
    wait_for_file(&p.path("child.pid"));
    // SAFETY: sending SIGTERM to the refresh we started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["status"], "interrupted");
    assert_eq!(step(&doc, "RegimeDetector")["status"], "failed");

    let pid = |f: &str| {
        std::fs::read_to_string(p.path(f))
            .unwrap()
            .trim()
            .parse::<i32>()
            .unwrap()
    };
    for f in ["child.pid", "grandchild.pid"] {
        let start = Instant::now();
        while alive(pid(f)) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(pid(f)), "{f} survived the interrupt");
    }

    // The store is consistent: latest untouched, the run listed as
    // interrupted, nothing left in staging, show reads it.
    assert_eq!(latest(&p), good_ref);
    let runs = p.list_json(&[]);
    let interrupted = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ref"] == doc["run"])
        .unwrap();
    assert_eq!(interrupted["status"], "interrupted");
    assert_eq!(interrupted["latest"], false);
    assert!(interrupted["problems"].as_array().unwrap().is_empty());
    let staging = p.store().join(".artifactctl/staging");
    assert_eq!(
        std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0),
        0
    );
    p.cmd()
        .args(["show", doc["run"].as_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("interrupted"));
    // The next refresh compares with the complete run, not the interrupted one.
    let planned = plan(&p, &[]);
    assert!(planned[0].2.contains(&good_ref), "{planned:?}");
    // Whatever the refresh did, the store it leaves verifies clean.
    p.assert_verifies_clean();
}

#[test]
fn two_refreshes_started_together_finish_with_distinct_runs() {
    let p = project_with(
        "[[refresh.steps]]\nname = \"slow\"\nrun = \"sleep 0.5; echo $ARTIFACTCTL_RUN_ID > $ARTIFACTCTL_STEP_DIR/id\"\n",
    );
    let spawn = || spawn_refresh(&p, &["--json", "--force"], Stdio::piped());
    let (a, b) = (spawn(), spawn());
    let docs: Vec<Value> = [a, b]
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let (ra, rb) = (
        docs[0]["run"].as_str().unwrap(),
        docs[1]["run"].as_str().unwrap(),
    );
    assert_ne!(ra, rb);
    for r in [ra, rb] {
        // Each run's steps saw the id it was published under.
        let seen = std::fs::read_to_string(run_dir(&p, r).join("slow/id")).unwrap();
        assert_eq!(seen.trim(), r);
    }
    assert_eq!(p.list_json(&[])["runs"].as_array().unwrap().len(), 2);
    // Whatever the refresh did, the store it leaves verifies clean.
    p.assert_verifies_clean();
}
