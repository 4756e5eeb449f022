//! One metrics reader (issue 12 item 6): every source flattens nested objects
//! with dots and keeps what is not a number, and `list` finds per-model values.

use serde_json::json;

use crate::support::{seed004, write, Project};

fn run_of<'a>(list: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no run {id} in {list}"))
}

#[test]
fn register_metrics_keep_text_as_params_and_flatten_nesting() {
    let p = Project::new();
    let dir = p.path("out");
    write(&dir.join("model.pt"), b"w");
    write(
        &dir.join("metrics.json"),
        br#"{"val": {"loss": 0.4}, "stage": "final"}"#,
    );
    let m = p.write(
        "m.json",
        br#"{"lstm": {"sharpe_ratio": 1.2}, "passed": true, "model": "lstm", "folds": [1, 2]}"#,
    );
    let reference = p.register(
        &dir,
        &[
            "--metrics",
            m.to_str().unwrap(),
            "--metric",
            "acc=0.9",
            "--metric",
            "note=not a number",
        ],
    );
    let shown = p.json(&["show", &reference]);
    let run = &shown["run"];
    let run = if run.is_null() { &shown } else { run };
    assert_eq!(run["metrics"]["lstm.sharpe_ratio"], 1.2, "{shown}");
    assert_eq!(run["metrics"]["passed"], 1.0);
    assert_eq!(run["metrics"]["acc"], 0.9);
    // The folder's own metrics.json is read by the same rules.
    assert_eq!(run["metrics"]["val.loss"], 0.4);
    assert_eq!(run["params"]["model"], "lstm");
    assert_eq!(run["params"]["folds"], json!([1, 2]));
    assert_eq!(run["params"]["note"], "not a number");
    assert_eq!(run["params"]["stage"], "final");
}

#[test]
fn seed_003_per_model_metrics_reach_list_and_best_follows_the_goal() {
    let p = Project::new();
    let store = p.path("backend/models");
    write(&store.join("20250724_150837/lstm_model.h5"), b"w");
    write(
        &store.join("20250724_150837/training_metadata.json"),
        serde_json::to_vec(&json!({
            "timestamp": "20250724_150837",
            "metrics": {"lstm": {"sharpe_ratio": 0.8, "best_val_loss": 0.3},
                        "xgboost": {"sharpe_ratio": 1.4, "best_val_loss": 0.5},
                        "kind": "ensemble"},
        }))
        .unwrap(),
    );
    let list = p.list_json(&["--store", store.to_str().unwrap()]);
    let run = run_of(&list, "20250724_150837");
    assert_eq!(run["metrics"]["xgboost.sharpe_ratio"], 1.4, "{list}");
    assert_eq!(run["params"]["kind"], "ensemble");

    let table = |metric: &str| {
        let out = p
            .cmd()
            .args(["--store", store.to_str().unwrap(), "list"])
            .env("ARTIFACTCTL_LIST_METRIC", metric)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    // Best across models: the higher Sharpe, the lower loss.
    let sharpe = table("sharpe_ratio");
    assert!(sharpe.contains("1.4"), "{sharpe}");
    let loss = table("best_val_loss");
    assert!(loss.contains("0.3") && !loss.contains("0.5"), "{loss}");
}

#[test]
fn seed_004_metrics_folder_feeds_list() {
    let p = Project::new();
    seed004(&p.store());
    let list = p.list_json(&["--stage", "raw"]);
    let run = run_of(&list, "v5_5_20251123_103epochs");
    assert_eq!(run["metrics"]["best_val_loss"], 0.38, "{list}");
    assert_eq!(run["metrics"]["coverage"], 0.99);
}
