use crate::support::{legacy_versions, NativeRun, Project};
use predicates::prelude::*;
use serde_json::{json, Value};

fn metadata(p: &Project, rel: &str) -> Value {
    let text = std::fs::read_to_string(p.store().join(rel).join("metadata.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn two_runs(p: &Project) {
    for (id, at) in [
        ("20260101_000000", "2026-01-01T00:00:00Z"),
        ("20260102_000000", "2026-01-02T00:00:00Z"),
    ] {
        NativeRun {
            ns: "gru",
            id,
            created_at: at,
            extra: json!({"future_field": {"kept": true}}),
            ..Default::default()
        }
        .write(&p.store());
    }
}

#[test]
fn a_pin_is_recorded_atomically_kept_by_cleanup_and_undone_by_unpin() {
    let p = Project::new();
    two_runs(&p);
    p.cmd()
        .args(["pin", "gru/20260101_000000"])
        .assert()
        .success()
        .stderr(predicate::str::contains("pinned gru/20260101_000000"));
    let meta = metadata(&p, "raw/gru/20260101_000000");
    assert_eq!(meta["pinned"], true);
    assert_eq!(
        meta["future_field"],
        json!({"kept": true}),
        "unknown fields survive"
    );
    let runs = p.list_json(&["gru"]);
    let pinned: Vec<bool> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pinned"].as_bool().unwrap())
        .collect();
    assert_eq!(pinned.iter().filter(|&&b| b).count(), 1);
    let journal = std::fs::read_to_string(p.store().join(".artifactctl/journal.jsonl")).unwrap();
    assert!(journal.contains(r#""action":"pin""#));
    assert!(journal.contains(r#""target":"raw/gru/20260101_000000""#));
    // No temporary file is left beside the metadata.
    let names: Vec<_> = std::fs::read_dir(p.store().join("raw/gru/20260101_000000"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");

    p.cmd()
        .args(["cleanup", "--keep", "1", "--yes"])
        .assert()
        .success();
    assert!(p.store().join("raw/gru/20260101_000000").is_dir());
    p.cmd()
        .args(["delete", "gru/20260101_000000", "--yes"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("is pinned"));

    p.cmd()
        .args(["unpin", "gru/20260101_000000"])
        .assert()
        .success();
    let meta = metadata(&p, "raw/gru/20260101_000000");
    assert!(meta.get("pinned").is_none());
    p.cmd()
        .args(["cleanup", "--keep", "1", "--yes"])
        .assert()
        .success();
    assert!(!p.store().join("raw/gru/20260101_000000").exists());
}

#[test]
fn pin_resolves_latest_and_says_when_nothing_changes() {
    let p = Project::new();
    two_runs(&p);
    p.cmd()
        .args(["pin", "gru/latest"])
        .assert()
        .success()
        .stderr(predicate::str::contains("pinned gru/20260102_000000"));
    p.cmd()
        .args(["pin", "gru/20260102_000000"])
        .assert()
        .success()
        .stderr(predicate::str::contains("already pinned"));
    p.cmd()
        .args(["unpin", "gru/20260101_000000"])
        .assert()
        .success()
        .stderr(predicate::str::contains("already unpinned"));
}

#[test]
fn pinning_a_run_without_artifactctl_metadata_is_refused() {
    let p = Project::new();
    let models = p.path("backend/models");
    let ids = legacy_versions(&models, 2, None);
    let before = std::fs::read(models.join(&ids[0]).join("training_metadata.json")).unwrap();
    p.cmd()
        .args(["--store", "backend/models", "pin", &ids[0]])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("artifactctl register"));
    let after = std::fs::read(models.join(&ids[0]).join("training_metadata.json")).unwrap();
    assert_eq!(before, after);
    assert!(!models.join(&ids[0]).join("metadata.json").exists());
}

#[test]
fn pinning_a_run_with_corrupted_metadata_is_refused_without_writing() {
    let p = Project::new();
    two_runs(&p);
    let path = p.store().join("raw/gru/20260101_000000/metadata.json");
    std::fs::write(&path, "{\"schema_version\": 1, \"id\": ").unwrap();
    p.cmd()
        .args(["pin", "gru/20260101_000000"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("repair it before pinning"));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"schema_version\": 1, \"id\": "
    );
    // Cleanup keeps it too: a pin cannot be ruled out.
    let out = p
        .cmd()
        .args(["cleanup", "--keep", "1", "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("metadata unreadable"), "{text}");
}

#[test]
fn pinning_an_unknown_ref_is_a_usage_error() {
    let p = Project::new();
    two_runs(&p);
    p.cmd().args(["pin", "gru/nope"]).assert().code(2);
    p.cmd().args(["pin", "../etc"]).assert().code(2);
}

/// Pinning a promoted (read-only) artifact keeps it read-only: its new
/// `metadata.json` takes the old one's mode, so `verify` stays clean.
#[test]
fn pinning_a_promoted_artifact_keeps_it_read_only() {
    let p = Project::new();
    let out = p.training_output("out");
    let raw = p.register(&out, &[]);
    let validated = p.promote(&raw, &["--to", "validated", "--checkpoint", "epoch_70"]);
    for verb in ["pin", "unpin"] {
        p.cmd().args([verb, &validated]).assert().success();
        p.cmd().args(["verify", "--all"]).assert().success();
    }
}
