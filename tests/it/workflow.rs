//! Seed 000's workflow end to end (issue 11): reuse checks what it reuses,
//! an up-to-date refresh writes nothing, refresh finds its own base run
//! whatever `latest` names, and what cleanup keeps for `--models-only`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::refresh::{example, plan, run_dir};
use crate::support::Project;

fn refresh(p: &Project, args: &[&str]) -> Value {
    let out = p
        .cmd()
        .args(["refresh", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "refresh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Make a run's folders writable again, as `rm -rf`-minded tools (or root)
/// get past read-only bits.
fn writable(dir: &Path) {
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if entry.file_type().is_dir() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}

#[test]
fn a_damaged_run_is_never_reused() {
    type Damage = fn(&Path);
    let cases: [(&str, Damage, &str); 3] = [
        (
            "deleted",
            |step| std::fs::remove_file(step.join("model.joblib")).unwrap(),
            "1 file missing",
        ),
        (
            "changed",
            |step| {
                let path = step.join("model.joblib");
                let mut bytes = std::fs::read(&path).unwrap();
                bytes[0] ^= 1;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
                std::fs::write(&path, bytes).unwrap();
            },
            "1 file changed",
        ),
        (
            "added",
            |step| std::fs::write(step.join("stray.txt"), "x").unwrap(),
            "1 file added",
        ),
    ];
    for (what, damage, said) in cases {
        let p = example();
        let first = refresh(&p, &[]);
        let first_ref = first["run"].as_str().unwrap().to_string();
        let run = run_dir(&p, &first_ref);
        writable(&run);
        damage(&run.join("TailRiskAnalyzer"));
        let planned = plan(&p, &[]);
        let tail = planned
            .iter()
            .find(|(n, _, _)| n == "TailRiskAnalyzer")
            .unwrap();
        assert_eq!(tail.1, "run", "{what}: {planned:?}");
        assert_eq!(
            tail.2,
            format!("outputs of {first_ref} damaged: {said}; runs again"),
            "{what}"
        );
        let other = planned
            .iter()
            .find(|(n, _, _)| n == "RegimeDetector")
            .unwrap();
        assert_eq!(other.1, "reuse", "{what}: the others are still whole");
        let second = refresh(&p, &[]);
        let second_ref = second["run"].as_str().unwrap();
        assert_ne!(
            second_ref, first_ref,
            "{what}: a damaged run is not up to date"
        );
        let tail = second["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "TailRiskAnalyzer")
            .unwrap();
        assert_eq!(tail["status"], "ran", "{what}");
        assert!(run_dir(&p, second_ref)
            .join("TailRiskAnalyzer/model.joblib")
            .is_file());
        // The new run verifies clean; the damaged one is still reported.
        p.cmd().args(["verify", second_ref]).assert().success();
        p.cmd().args(["verify", &first_ref]).assert().code(1);
    }
}

#[test]
fn verify_reuse_rehashes_what_the_stamp_would_trust() {
    let p = example();
    let first = refresh(&p, &[]);
    let first_ref = first["run"].as_str().unwrap().to_string();
    // Same size, same inode, modification time put back: only a re-hash
    // sees the change.
    let path = run_dir(&p, &first_ref).join("TailRiskAnalyzer/model.joblib");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let trusting = plan(&p, &[]);
    assert!(
        trusting.iter().all(|(_, a, _)| a == "reuse"),
        "{trusting:?}"
    );
    let cautious = plan(&p, &["--verify-reuse"]);
    let tail = cautious
        .iter()
        .find(|(n, _, _)| n == "TailRiskAnalyzer")
        .unwrap();
    assert_eq!(tail.1, "run", "{cautious:?}");
    assert!(tail.2.contains("1 file changed"), "{cautious:?}");
}

#[test]
fn a_register_never_hides_the_refresh_base() {
    let p = example();
    let first = refresh(&p, &[]);
    let first_ref = first["run"].as_str().unwrap().to_string();
    let out = p.training_output("out");
    let registered = p.register(&out, &[]);
    let latest = std::fs::read_link(p.store().join("raw/latest")).unwrap();
    assert_eq!(latest, Path::new(&registered), "the register is latest");
    // cleanup keeps the run --models-only takes its datasets from, with the
    // reason, though --keep 1 alone would keep only the register.
    let doc = p.json(&["cleanup", "--keep", "1", "--dry-run"]);
    let row = doc["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ref"] == first_ref.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(row["action"], "keep", "{doc:#}");
    let reasons = row["reasons"].to_string();
    assert!(reasons.contains("refresh base"), "{reasons}");
    p.cmd()
        .args(["delete", &first_ref, "--yes"])
        .assert()
        .code(1);
    // --models-only still finds the datasets of the refresh run.
    let planned = plan(&p, &["--models-only"]);
    assert!(
        planned.iter().all(|(_, a, _)| a == "carry" || a == "reuse"),
        "{planned:?}"
    );
    let noop = refresh(&p, &[]);
    assert_eq!(noop["status"], "up_to_date");
    assert_eq!(noop["run"], first_ref.as_str());
    let models = refresh(&p, &["--models-only", "--force"]);
    assert_eq!(models["status"], "complete");
}

/// MODELS counts the models, not the datasets a refresh made (seed 000
/// keeps both as `.joblib`); datasets are counted apart.
#[test]
fn models_and_datasets_are_counted_apart() {
    let p = Project::new();
    p.write(
        "artifactctl.toml",
        "[store]\ndir = \"artifacts\"\n\n[[refresh.steps]]\nname = \"training-data\"\ngroup = \"datasets\"\nrun = \"echo d > $ARTIFACTCTL_STEP_DIR/training.joblib\"\n\n[[refresh.steps]]\nname = \"MLBondAdjuster\"\nneeds = [\"training-data\"]\nrun = \"echo m > $ARTIFACTCTL_STEP_DIR/MLBondAdjuster.joblib; echo '{\\\"sharpe_ratio\\\": 1}' > $ARTIFACTCTL_STEP_DIR/metrics.json\"\n",
    );
    let full = refresh(&p, &[]);
    let data_only = refresh(&p, &["--datasets-only", "--publish-unchanged"]);
    let runs = p.list_json(&[]);
    let counts = |id: &str| {
        let run = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()
            .clone();
        (
            run["model_count"].as_u64().unwrap(),
            run["dataset_count"].as_u64().unwrap(),
        )
    };
    assert_eq!(counts(full["run"].as_str().unwrap()), (1, 1));
    assert_eq!(counts(data_only["run"].as_str().unwrap()), (0, 1));
}

/// Seed 000's clean slate: `clear --force` then `refresh` is up to date and
/// puts the models back where the application loads them, read-only and
/// sharing bytes with the store; `checkout` switches to any other run.
#[test]
fn a_clean_slate_brings_the_models_back_where_the_application_loads_them() {
    use std::os::unix::fs::MetadataExt;
    let p = example();
    let config = std::fs::read_to_string(p.path("artifactctl.toml")).unwrap();
    p.write(
        "artifactctl.toml",
        config
            .replace(
                "name = \"MLBondAdjuster\"",
                "name = \"MLBondAdjuster\"\nworkspace = \"trained_models\"",
            )
            .replace(
                "name = \"training-data\"",
                "name = \"training-data\"\nworkspace = \"training_data\"",
            ),
    );
    let first = refresh(&p, &[]);
    let first_ref = first["run"].as_str().unwrap().to_string();
    let model = p.path("trained_models/model.joblib");
    let stored = run_dir(&p, &first_ref).join("MLBondAdjuster/model.joblib");
    assert_eq!(
        std::fs::read(&model).unwrap(),
        std::fs::read(&stored).unwrap()
    );
    assert_eq!(
        model.metadata().unwrap().ino(),
        stored.metadata().unwrap().ino(),
        "no copy"
    );
    assert_eq!(model.metadata().unwrap().mode() & 0o222, 0, "read-only");
    assert!(p.path("training_data/dataset.csv").is_file());

    p.cmd().args(["clear", "--force"]).assert().success();
    assert!(
        !p.path("trained_models").exists(),
        "clear removes the workspace copies"
    );
    p.assert_verifies_clean();
    let again = refresh(&p, &[]);
    assert_eq!(again["status"], "up_to_date");
    assert_eq!(again["checked_out"].as_array().unwrap().len(), 2, "{again}");
    assert_eq!(
        std::fs::read(&model).unwrap(),
        std::fs::read(&stored).unwrap()
    );

    // A newer model, then back to the first run's.
    let script = std::fs::read_to_string(p.path("scripts/train.sh")).unwrap();
    p.write(
        "scripts/train.sh",
        format!("{script}echo tuned >> \"$ARTIFACTCTL_STEP_DIR/model.joblib\"\n"),
    );
    let second = refresh(&p, &[]);
    assert_ne!(
        std::fs::read(&model).unwrap(),
        std::fs::read(&stored).unwrap()
    );
    assert_ne!(second["run"], first_ref.as_str());
    p.cmd().args(["checkout", &first_ref]).assert().success();
    assert_eq!(
        std::fs::read(&model).unwrap(),
        std::fs::read(&stored).unwrap()
    );

    // A folder checkout did not make is never replaced.
    std::fs::remove_dir_all(p.path("training_data")).unwrap();
    p.write("training_data/mine.csv", "the user's own");
    p.cmd()
        .args(["checkout", &first_ref])
        .assert()
        .code(1)
        .stderr(predicates::str::contains(
            "was not made by artifactctl checkout",
        ));
    assert_eq!(
        std::fs::read_to_string(p.path("training_data/mine.csv")).unwrap(),
        "the user's own"
    );
    p.assert_verifies_clean();
}

/// This repository's own `make refresh-models` then `make clear-artifacts-force`,
/// in a copy: clear runs from the repository root, where examples/ is a
/// nested project with its own store, and leaves that store whole.
#[test]
fn clearing_from_the_repository_root_leaves_the_examples_store_whole() {
    let repo = Project::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for entry in walkdir::WalkDir::new(&examples).into_iter().flatten() {
        let rel = entry.path().strip_prefix(&examples).unwrap();
        if rel.starts_with("artifacts") || !entry.file_type().is_file() {
            continue;
        }
        repo.write(
            &format!("examples/{}", rel.display()),
            std::fs::read(entry.path()).unwrap(),
        );
    }
    repo.write("src/lib.rs", "// the repository's own source\n");
    // make refresh-models: `artifactctl --root examples refresh`.
    repo.cmd()
        .args(["--root", "examples", "refresh", "-q"])
        .assert()
        .success();
    // make clear-artifacts-force: `artifactctl clear --force` at the root.
    repo.cmd()
        .args(["clear", "--force"])
        .assert()
        .success()
        .stderr(predicates::str::contains(
            "skipped: store at examples/artifacts",
        ));
    repo.cmd()
        .args(["--root", "examples", "verify", "--all"])
        .assert()
        .success();
    assert!(repo.path("src/lib.rs").is_file());
}

/// A step's `metrics.json` is read by the same rules as every metrics
/// source: nested objects flatten with dots, non-numbers become params.
#[test]
fn step_metrics_follow_the_one_metrics_reader() {
    let p = Project::new();
    p.write(
        "artifactctl.toml",
        "[store]\ndir = \"artifacts\"\n\n[[refresh.steps]]\nname = \"model\"\nrun = \"echo '{\\\"lstm\\\": {\\\"sharpe_ratio\\\": 1.5}, \\\"kind\\\": \\\"gru\\\"}' > $ARTIFACTCTL_STEP_DIR/metrics.json\"\n",
    );
    let run = refresh(&p, &[]);
    let meta = p.json(&["show", run["run"].as_str().unwrap()]);
    assert_eq!(
        meta["run"]["metrics"]["model.lstm.sharpe_ratio"], 1.5,
        "{meta:#}"
    );
    assert_eq!(meta["run"]["params"]["model.kind"], "gru", "{meta:#}");
}
