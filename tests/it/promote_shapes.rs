//! Promotion of every seed's run shape, raw to production, each checked by
//! loading what the seed's loader reads from `path production/latest`.

use std::path::{Path, PathBuf};

use crate::support::{legacy_versions, write, Project};
use predicates::prelude::*;
use serde_json::Value;

/// `path REF` as printed.
fn path_of(p: &Project, reference: &str) -> PathBuf {
    let out = p.cmd().args(["path", reference]).output().unwrap();
    assert!(
        out.status.success(),
        "path {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Raw → validated (`promote REF [args]`, no --to) → production 1.0.0;
/// returns the validated ref and the production folder.
fn to_production(p: &Project, raw: &str, args: &[&str]) -> (String, PathBuf) {
    let validated = p.promote(raw, args);
    p.promote(&validated, &["--version", "1.0.0", "--approve"]);
    (validated, path_of(p, "production/latest"))
}

fn metadata(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("metadata.json")).unwrap()).unwrap()
}

fn read(dir: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("cannot load {rel}: {e}"))
}

const REFRESH: &str = r#"
[[refresh.steps]]
name = "TailRiskAnalyzer"
group = "models"
run = "printf tail > $ARTIFACTCTL_STEP_DIR/TailRiskAnalyzer.joblib; printf '{\"sharpe_ratio\": 1.4}' > $ARTIFACTCTL_STEP_DIR/metrics.json; echo trained"

[[refresh.steps]]
name = "RegimeDetector"
group = "models"
run = "printf regime > $ARTIFACTCTL_STEP_DIR/RegimeDetector.joblib; printf '{\"sharpe_ratio\": 0.9}' > $ARTIFACTCTL_STEP_DIR/metrics.json"
"#;

fn refreshed() -> Project {
    let p = Project::new();
    p.write("artifactctl.toml", REFRESH);
    p.cmd().args(["refresh", "-q"]).assert().success();
    p
}

#[test]
fn a_refresh_run_is_promoted_whole_without_its_logs() {
    let p = refreshed();
    let (validated, prod) = to_production(&p, "latest", &[]);
    assert!(validated.ends_with("_validated"), "{validated}");
    assert!(!validated.contains("best"), "{validated}");
    // seed 000's loader: joblib.load(f"{model}/{model}.joblib") per model.
    for model in ["TailRiskAnalyzer", "RegimeDetector"] {
        read(&prod, &format!("{model}/{model}.joblib"));
        read(&prod, &format!("{model}/metrics.json"));
    }
    assert!(!prod.join("logs").exists());
    assert_eq!(
        read(&prod, "TailRiskAnalyzer/TailRiskAnalyzer.joblib"),
        b"tail"
    );
}

#[test]
fn one_step_of_a_refresh_run_is_promoted_with_step() {
    let p = refreshed();
    let (validated, prod) = to_production(&p, "latest", &["--step", "TailRiskAnalyzer"]);
    assert!(
        validated.ends_with("_TailRiskAnalyzer_validated"),
        "{validated}"
    );
    assert_eq!(
        read(&prod, "TailRiskAnalyzer/TailRiskAnalyzer.joblib"),
        b"tail"
    );
    assert!(!prod.join("RegimeDetector").exists());
    let meta = metadata(&prod);
    assert_eq!(meta["metrics"]["TailRiskAnalyzer.sharpe_ratio"], 1.4);
}

#[test]
fn refusals_for_a_refresh_run_name_the_flag_that_works() {
    let p = refreshed();
    p.cmd()
        .args(["promote", "latest", "--checkpoint", "TailRiskAnalyzer"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--step TailRiskAnalyzer"));
    p.cmd()
        .args([
            "promote",
            "latest",
            "--checkpoint",
            "TailRiskAnalyzer.joblib",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--file TailRiskAnalyzer/TailRiskAnalyzer.joblib",
        ));
    p.cmd()
        .args(["promote", "latest", "--step", "Nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("RegimeDetector, TailRiskAnalyzer"));
    p.cmd()
        .args(["promote", "latest", "--file", "../etc/passwd"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("inside the run"));
    // A path to the model works as --checkpoint and as --file.
    let v = p.promote(
        "latest",
        &[
            "--to",
            "validated",
            "--checkpoint",
            "TailRiskAnalyzer/TailRiskAnalyzer.joblib",
        ],
    );
    assert!(v.ends_with("_TailRiskAnalyzer_validated"), "{v}");
    let dir = path_of(&p, &v);
    assert_eq!(read(&dir, "model.joblib"), b"tail");
}

/// A seed 002 run folder: model, preprocessor and the trainer's metadata.
fn seed002_run(p: &Project, rel: &str, feature_count: usize) -> PathBuf {
    let dir = p.path(rel);
    write(&dir.join("model.pth"), b"gru weights");
    write(&dir.join("preprocessor.pkl"), b"scaler state");
    let names: Vec<String> = (0..114).map(|k| format!("feature_{k}")).collect();
    let meta = serde_json::json!({
        "model_type": "gru", "run_id": "20240816_142301", "symbol": "BTCEUR",
        "created_at": "2024-08-16T14:23:01.234567",
        "config": {"hidden_size": 64}, "is_fitted": true,
        "metrics": {"sharpe_ratio": 1.1},
        "feature_names": names, "selected_features": [0, 1, 5, 8, 12],
        "feature_count": feature_count, "input_size_actual": 5,
    });
    write(
        &dir.join("metadata.json"),
        serde_json::to_string(&meta).unwrap(),
    );
    dir
}

#[test]
fn a_seed_002_run_travels_with_its_preprocessor() {
    let p = Project::new();
    let dir = seed002_run(&p, "out/run", 114);
    let raw = p.register(&dir, &["--namespace", "gru/BTCEUR"]);
    let validated = p.promote(&raw, &[]);
    p.promote(&validated, &["--version", "1.0.0", "--approve"]);
    let prod = path_of(&p, "production/gru/BTCEUR/latest");
    // seed 002's loader: model.pth, preprocessor.pkl, and the feature list.
    assert_eq!(read(&prod, "model.pth"), b"gru weights");
    assert_eq!(read(&prod, "preprocessor.pkl"), b"scaler state");
    let meta = metadata(&prod);
    assert_eq!(
        meta["features"]["feature_names"].as_array().unwrap().len(),
        114
    );
    assert_eq!(meta["features"]["input_size_actual"], 5);
}

#[test]
fn the_integrity_gate_stops_a_feature_mismatch_and_writes_nothing() {
    let p = Project::new();
    p.require_gates(&["sharpe_ratio > 0.5"]);
    let dir = seed002_run(&p, "out/run", 50);
    let raw = p.register(&dir, &["--namespace", "gru/BTCEUR"]);
    p.cmd().args(["promote", &raw]).assert().code(1).stderr(
        predicate::str::contains(
            "FAIL integrity: feature count mismatch: feature_count=50 but 114 feature_names",
        )
        .and(predicate::str::contains("nothing was written")),
    );
    assert!(!p.store().join("validated/gru/BTCEUR").exists());
    // verify's advice for the same problem is something one can do.
    let out = p.cmd().args(["verify", &raw]).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("re-run the training"), "{text}");
    assert!(!text.contains("correct feature_names"), "{text}");
}

#[test]
fn the_integrity_gate_stops_a_tampered_file() {
    let p = Project::new();
    let raw = p.raw_run("gru/BTCEUR", "20261123_101500");
    let file = p.store().join("raw/gru/BTCEUR/20261123_101500/config.yaml");
    let mut perms = std::fs::metadata(&file).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&file, perms).unwrap();
    std::fs::write(&file, b"lr: 0.99\n").unwrap();
    p.cmd()
        .args(["promote", &raw, "--checkpoint", "epoch_70"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("FAIL integrity: config.yaml"));
    assert!(!p.store().join("validated").join("gru/BTCEUR").exists());
}

#[test]
fn a_seed_003_ensemble_is_promoted_whole() {
    let p = Project::new();
    let ids = legacy_versions(&p.path("backend/models"), 2, None);
    let raw = p.register(&p.path("backend/models").join(&ids[1]), &[]);
    assert_eq!(raw, ids[1], "the version keeps its name");
    let (validated, prod) = to_production(&p, &raw, &[]);
    assert_eq!(validated, format!("validated/{}_validated", ids[1]));
    // seed 003's loader: every model, the scalers, and the ensemble weights.
    for f in [
        "lstm_model.h5",
        "transformer_model.h5",
        "random_forest_model.pkl",
        "xgboost_model.pkl",
        "scalers.pkl",
    ] {
        assert_eq!(read(&prod, f).len(), 512, "{f}");
    }
    let training: Value = serde_json::from_slice(&read(&prod, "training_metadata.json")).unwrap();
    assert_eq!(training["ensemble_weights"]["lstm"], 0.3);
}

#[test]
fn a_seed_004_checkpoint_through_best_takes_its_targets_name() {
    let p = Project::new();
    let out = p.training_output("out");
    std::fs::remove_file(out.join("checkpoints/best.pt")).unwrap();
    std::os::unix::fs::symlink("epoch_70.pt", out.join("checkpoints/best.pt")).unwrap();
    write(&out.join("checkpoints/manifest.json"), b"{\"epochs\": 70}");
    write(&out.join("training_metadata.json"), b"{\"epochs\": 70}");
    p.write(
        "artifactctl.toml",
        "[promote.validated]\ninclude = [\"config.*\", \"metrics/**\", \"checkpoints/manifest.json\", \"training_metadata.json\"]\n",
    );
    let raw = p.register(&out, &["--id", "v5_5_20251124"]);
    let (validated, prod) = to_production(&p, &raw, &[]);
    assert_eq!(validated, "validated/v5_5_20251124_epoch_70_validated");
    // seed 004's loader: the model, its config, metrics and manifest.
    assert_eq!(read(&prod, "model.pt"), b"epoch 70 weights");
    read(&prod, "config.yaml");
    read(&prod, "metrics/training_metrics.json");
    read(&prod, "checkpoints/manifest.json");
    read(&prod, "training_metadata.json");
    let meta = metadata(&prod);
    assert_eq!(meta["lineage"]["parent"], "raw/v5_5_20251124");
}

#[test]
fn a_checkpoint_link_out_of_the_run_is_refused() {
    // register never lets such a link in; a legacy folder in raw/ may have one.
    let p = Project::new();
    let run = p.store().join("raw/r1");
    write(&run.join("checkpoints/epoch_70.pt"), b"weights");
    write(&p.store().join("secret.pt"), b"not the run's");
    std::os::unix::fs::symlink("../../../secret.pt", run.join("checkpoints/best.pt")).unwrap();
    p.cmd()
        .args(["promote", "r1"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("outside the run"));
    assert!(!p.store().join("validated").exists());
}

#[test]
fn production_refs_have_no_next_stage() {
    let p = Project::new();
    p.released("gru/BTCEUR", &["1.0.0"]);
    p.cmd()
        .args(["promote", "production/gru/BTCEUR/1.0.0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("last stage"));
}
