//! Real metadata.json output validates against docs/metadata.schema.json.

use crate::support::Project;
use serde_json::Value;

fn validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(include_str!("../../docs/metadata.schema.json")).unwrap();
    jsonschema::validator_for(&schema).expect("the schema itself is valid")
}

#[test]
fn registered_metadata_matches_the_published_schema() {
    let p = Project::new();
    let out = p.training_output("out");
    std::os::unix::fs::symlink("best.pt", out.join("checkpoints/alias.pt")).unwrap();
    p.write("config.json", r#"{"lr": 0.01}"#);
    let validator = validator();
    for args in [
        vec![
            "--id",
            "v5_5_20251124",
            "--config",
            "config.json",
            "--param",
            "seq_length=30",
            "--metric",
            "coverage=0.99",
            "--tag",
            "t",
        ],
        vec!["-n", "gru/BTCEUR"],
    ] {
        let reference = p.register(&out, &args);
        let path = p.store().join("raw").join(&reference).join("metadata.json");
        let meta: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&meta)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{reference}: {errors:?}");
    }
}

#[test]
fn the_schema_rejects_what_it_should() {
    let validator = validator();
    let good = serde_json::json!({
        "schema_version": 1, "id": "a", "namespace": "", "stage": "raw",
        "created_at": "2026-11-23T10:15:00Z", "status": "complete",
        "files": [], "total_size": 0, "file_count": 0, "lineage": {},
        "producer": {"command": [], "version": "0.1.0"}
    });
    assert!(validator.is_valid(&good));
    for (key, bad) in [
        ("schema_version", serde_json::json!(2)),
        ("id", serde_json::json!("../x")),
        ("stage", serde_json::json!("staging")),
        ("status", serde_json::json!("running")),
        ("metrics", serde_json::json!({"loss": "low"})),
        (
            "files",
            serde_json::json!([{"path": "../x", "size": 1, "blake3": "00"}]),
        ),
    ] {
        let mut doc = good.clone();
        doc[key] = bad;
        assert!(!validator.is_valid(&doc), "{key} should be rejected");
    }
}
