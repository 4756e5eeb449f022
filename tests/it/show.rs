use std::os::unix::fs::symlink;

use crate::support::{legacy_models, legacy_versions, stdout_of, Project};
use predicates::prelude::*;
use serde_json::Value;

fn show_json(p: &Project, args: &[&str]) -> Value {
    p.json(&[&["show"], args].concat())
}

#[test]
fn show_prints_everything_about_a_run() {
    let p = Project::new();
    let out = p.training_output("out");
    p.write("config.json", r#"{"lr": 0.01}"#);
    let reference = p.register(
        &out,
        &[
            "--config",
            "config.json",
            "--metric",
            "sharpe_ratio=1.25",
            "--param",
            "seq_length=30",
            "--tag",
            "gpu",
        ],
    );
    let v = show_json(&p, &["latest"]);
    assert_eq!(v["schema_version"], 1);
    let run = &v["run"];
    assert_eq!(run["ref"], reference);
    assert_eq!(run["latest"], true);
    assert_eq!(run["config"]["lr"], 0.01);
    assert_eq!(run["files"].as_array().unwrap().len(), 7);
    assert!(run["files"][0]["blake3"].as_str().unwrap().len() == 64);
    assert!(run["lineage"]["source"]
        .as_str()
        .unwrap()
        .starts_with("register "));
    assert!(std::path::Path::new(run["path"].as_str().unwrap()).is_absolute());
    p.cmd()
        .args(["show", &reference])
        .assert()
        .success()
        .stdout(predicate::str::contains("sharpe_ratio"))
        .stdout(predicate::str::contains("1.25"))
        .stdout(predicate::str::contains("checkpoints/best.pt"))
        .stdout(predicate::str::contains("seq_length"));
    assert_output_snapshot!(
        Some(p.root()),
        "show_run",
        stdout_of(p.cmd().args(["show", &reference]))
    );
}

#[test]
fn show_reads_seed_003_with_ensemble_weights() {
    let p = Project::new();
    let ids = legacy_versions(&p.path("backend/models"), 3, None);
    let v = show_json(&p, &["--store", "backend/models", &ids[1]]);
    let run = &v["run"];
    assert_eq!(run["layout"], "training_metadata");
    assert_eq!(run["metrics"]["sharpe_ratio"], 0.6);
    assert_eq!(run["extra"]["ensemble_weights"]["lstm"], 0.3);
    assert_eq!(run["config"]["lstm"]["units"], 64);
    assert_eq!(run["files"].as_array().unwrap().len(), 6);
    p.cmd()
        .args(["--store", "backend/models", "show", &ids[1]])
        .assert()
        .success()
        .stdout(predicate::str::contains("ensemble_weights"))
        .stdout(predicate::str::contains(
            "metadata:  training_metadata.json (seed 003 layout, read as it is)",
        ));
}

#[test]
fn show_reads_seed_002_features() {
    let p = Project::new();
    let refs = legacy_models(&p.path("models"), 1, true);
    let v = show_json(&p, &["--store", "models", &refs[0]]);
    let run = &v["run"];
    assert_eq!(run["features"]["feature_count"], 50);
    assert_eq!(
        run["features"]["feature_names"].as_array().unwrap().len(),
        114
    );
    assert!(run["problems"][0]
        .as_str()
        .unwrap()
        .contains("feature count mismatch"));
    assert_eq!(run["extra"]["symbol"], "BTCEUR");
}

#[test]
fn a_missing_latest_falls_back_to_the_newest_complete_run() {
    let p = Project::new();
    let ids = legacy_versions(&p.path("backend/models"), 3, None);
    std::fs::remove_file(p.path("backend/models/latest")).unwrap();
    let v = show_json(&p, &["--store", "backend/models", "latest"]);
    assert_eq!(v["run"]["id"], ids[2].as_str());
}

#[test]
fn a_dangling_latest_warns_and_falls_back() {
    let p = Project::new();
    let ids = legacy_versions(&p.path("backend/models"), 3, None);
    let link = p.path("backend/models/latest");
    std::fs::remove_file(&link).unwrap();
    symlink("20990101_000000", &link).unwrap();
    p.cmd()
        .args(["--store", "backend/models", "path", "latest"])
        .assert()
        .success()
        .stdout(predicate::str::contains(&ids[2]))
        .stderr(predicate::str::contains("does not exist"));
}

#[test]
fn an_escaping_latest_is_refused() {
    let p = Project::new();
    legacy_versions(&p.path("backend/models"), 2, None);
    for target in ["/etc", "../../x", "../models/20250724_150800"] {
        let link = p.path("backend/models/latest");
        std::fs::remove_file(&link).unwrap();
        symlink(target, &link).unwrap();
        p.cmd()
            .args(["--store", "backend/models", "show", "latest"])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("refusing to follow"));
    }
}

#[test]
fn a_pointer_file_stands_in_for_the_link() {
    let p = Project::new();
    let ids = legacy_versions(&p.path("backend/models"), 3, None);
    std::fs::remove_file(p.path("backend/models/latest")).unwrap();
    p.write(
        "backend/models/latest_pointer.txt",
        format!("backend/models/{}\n", ids[0]),
    );
    let v = show_json(&p, &["--store", "backend/models", "latest"]);
    assert_eq!(v["run"]["id"], ids[0].as_str());
}

#[test]
fn show_on_a_corrupted_run_reports_and_exits_0() {
    let p = Project::new();
    let ids = legacy_versions(&p.path("backend/models"), 2, Some(0));
    let v = show_json(&p, &["--store", "backend/models", &ids[0]]);
    assert!(v["run"]["problems"][0]
        .as_str()
        .unwrap()
        .contains("corrupted"));
}

#[test]
fn show_rejects_bad_refs() {
    let p = Project::new();
    p.cmd()
        .args(["show", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no run 'nope'"));
    p.cmd().args(["show", "a//b"]).assert().code(2);
}

/// Issue 13: a refresh run's `steps` and `config.refresh` are tables and
/// indented keys, not single JSON lines of several KB; -v shows JSON.
#[test]
fn nested_records_are_tables_or_indented_json_under_v() {
    let p = Project::new();
    p.write("out/model.pt", b"weights");
    let step = |name: &str, status: &str| {
        serde_json::json!({
            "name": name, "status": status, "duration_s": 12.5, "exit_code": 0,
            "reused_from": null,
            "fingerprint": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "outputs": ["data/train.parquet", "data/eval.parquet"],
        })
    };
    let meta = serde_json::json!({
        "steps": [step("training-data", "ran"), step("MLBondAdjuster", "ran")],
    });
    p.write("out/metadata.json", meta.to_string());
    let config = serde_json::json!({
        "lr": 0.01,
        "refresh": {
            "datasets": ["training-data"],
            "steps": [
                {"name": "training-data", "group": "datasets", "run": "python scripts/make_data.py --out data/", "outputs": ["data/"]},
                {"name": "MLBondAdjuster", "group": "models", "run": "python train.py --model MLBondAdjuster --epochs 50", "needs": ["training-data"]},
            ],
        },
    });
    p.write("config.json", config.to_string());
    let reference = p.register(
        &p.path("out"),
        &[
            "--config",
            "config.json",
            "--created-at",
            "2026-11-23T10:15:00Z",
            "--id",
            "r1",
        ],
    );
    let shown = stdout_of(p.cmd().args(["show", &reference]));
    // No record is printed as a JSON line.
    assert!(!shown.contains("{\""), "{shown}");
    assert_output_snapshot!(Some(p.root()), "show_nested", shown);
    let verbose = stdout_of(p.cmd().args(["-v", "show", &reference]));
    assert!(verbose.contains(
        "\"fingerprint\": \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\""
    ));
    assert_output_snapshot!(Some(p.root()), "show_nested_verbose", verbose);
}
