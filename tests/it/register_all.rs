//! `register --all`: a legacy store imported in one command, by hard link.

use std::os::unix::fs::MetadataExt;

use crate::support::{legacy_models, legacy_versions, Project};

#[test]
fn a_300_version_seed_003_store_is_imported_once_with_corrupted_versions_skipped() {
    let p = Project::new();
    let legacy = p.path("backend/models");
    let ids = legacy_versions(&legacy, 300, Some(17));
    // A second kind of damage: metadata that is not JSON at all.
    std::fs::write(
        legacy.join(&ids[200]).join("training_metadata.json"),
        b"\0\0garbage",
    )
    .unwrap();

    let first = p.json(&["register", "--all", legacy.to_str().unwrap()]);
    assert_eq!(first["imported"].as_array().unwrap().len(), 298, "{first}");
    let skipped: Vec<&str> = first["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ref"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, [ids[17].as_str(), ids[200].as_str()]);
    assert!(first["skipped"][0]["reason"].as_str().unwrap().len() > 5);
    assert_eq!(first["present"].as_array().unwrap().len(), 0);

    // Names, times and bytes are the legacy versions' own.
    let run = p.store().join("raw").join(&ids[42]);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["created_at"], "2025-07-24T15:08:42Z");
    assert_eq!(meta["metrics"]["sharpe_ratio"], 4.7);
    let a = std::fs::metadata(run.join("lstm_model.h5")).unwrap();
    let b = std::fs::metadata(legacy.join(&ids[42]).join("lstm_model.h5")).unwrap();
    assert_eq!(
        (a.dev(), a.ino()),
        (b.dev(), b.ino()),
        "hard-linked, not copied"
    );
    let latest = std::fs::read_link(p.store().join("raw/latest")).unwrap();
    assert_eq!(latest.to_str().unwrap(), ids[299]);

    let second = p.json(&["register", "--all", legacy.to_str().unwrap()]);
    assert_eq!(second["imported"].as_array().unwrap().len(), 0, "{second}");
    assert_eq!(second["present"].as_array().unwrap().len(), 298);
    assert_eq!(second["skipped"].as_array().unwrap().len(), 2);
    p.cmd().args(["verify", "--all"]).assert().success();
}

#[test]
fn a_per_symbol_seed_002_store_keeps_its_namespaces_and_run_ids() {
    let p = Project::new();
    let refs = legacy_models(&p.path("models"), 2, false);
    let doc = p.json(&["register", "--all", p.path("models").to_str().unwrap()]);
    let mut imported: Vec<String> = doc["imported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    imported.sort();
    let mut expected = refs.clone();
    expected.sort();
    assert_eq!(imported, expected);
}

#[test]
fn a_clash_with_a_stated_id_names_the_id_flag() {
    let p = Project::new();
    let ids = legacy_versions(&p.path("backend/models"), 1, None);
    let dir = p.path("backend/models").join(&ids[0]);
    assert_eq!(p.register(&dir, &[]), ids[0]);
    p.cmd()
        .arg("register")
        .arg(&dir)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("--id"));
}
