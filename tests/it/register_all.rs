//! `register --all`: a legacy store imported in one command, by hard link.

use std::os::unix::fs::MetadataExt;

use crate::support::{legacy_models, legacy_versions, streams_of, Project};

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

/// The metadata.json of an imported run, parsed.
fn imported_meta(p: &Project, id: &str) -> serde_json::Value {
    let path = p.store().join("raw").join(id).join("metadata.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The manifest entry of `path` in a run's metadata.
fn entry<'a>(meta: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap()
}

fn notes_of_kind(doc: &serde_json::Value, kind: &str) -> usize {
    doc["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == kind)
        .count()
}

#[test]
fn hashes_stay_pending_until_verify_repair_records_them() {
    let p = Project::new();
    let legacy = p.path("backend/models");
    let ids = legacy_versions(&legacy, 3, None);
    p.json(&["register", "--all", legacy.to_str().unwrap()]);

    // Not read at import: size and stamp only.
    let meta = imported_meta(&p, &ids[1]);
    let files = meta["files"].as_array().unwrap();
    assert_eq!(files.len(), 6, "{meta}");
    for f in files {
        assert!(f["blake3"].is_null(), "{f}");
        assert!(f["stamp"]["ino"].as_u64().unwrap() > 0, "{f}");
    }
    let show = p
        .cmd()
        .args(["show", &format!("raw/{}", ids[1])])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&show.stdout).contains("pending"));

    // verify reads them (unchanged), says so, and passes.
    let doc = p.json(&["verify", "--all"]);
    assert_eq!(notes_of_kind(&doc, "pending_hashes"), 3, "{doc}");

    p.cmd()
        .args(["verify", "--all", "--repair"])
        .assert()
        .success();
    let meta = imported_meta(&p, &ids[1]);
    let lstm = entry(&meta, "lstm_model.h5");
    let content = std::fs::read(legacy.join(&ids[1]).join("lstm_model.h5")).unwrap();
    assert_eq!(lstm["blake3"], blake3::hash(&content).to_hex().as_str());
    let doc = p.json(&["verify", "--all"]);
    assert_eq!(notes_of_kind(&doc, "pending_hashes"), 0, "{doc}");
    p.assert_verifies_clean();
}

#[test]
fn a_legacy_file_changed_after_import_is_reported_and_not_promoted() {
    let p = Project::new();
    let legacy = p.path("backend/models");
    let ids = legacy_versions(&legacy, 2, None);
    p.json(&["register", "--all", legacy.to_str().unwrap()]);

    // The legacy tool rewrites a model in place: same size, same inode (the
    // run shares it), new bytes and time.
    let shared = legacy.join(&ids[0]).join("lstm_model.h5");
    std::fs::write(&shared, vec![0xAB; 512]).unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    std::fs::File::options()
        .write(true)
        .open(&shared)
        .unwrap()
        .set_modified(old)
        .unwrap();

    let text = streams_of(p.cmd().args(["verify", "--all"]));
    assert!(text.starts_with("exit: 1\n"), "{text}");
    assert!(
        text.contains("lstm_model.h5 changed since it was imported by link"),
        "{text}"
    );
    assert!(text.contains("register --all"), "{text}");

    // --repair records the unchanged version's hashes, never the changed file's.
    p.cmd()
        .args(["verify", "--all", "--repair"])
        .output()
        .unwrap();
    let meta = imported_meta(&p, &ids[0]);
    let lstm = entry(&meta, "lstm_model.h5");
    assert!(lstm["blake3"].is_null(), "{lstm}");
    assert!(imported_meta(&p, &ids[1])["files"][0]["blake3"].is_string());

    let reference = format!("raw/{}", ids[0]);
    let text = streams_of(p.cmd().args(["promote", &reference, "--to", "validated"]));
    assert!(text.starts_with("exit: 1\n"), "{text}");
    assert!(text.contains("FAIL integrity"), "{text}");
    assert!(!p
        .store()
        .join("validated")
        .join(format!("{}_validated", ids[0]))
        .exists());
}

#[test]
fn an_imported_run_promotes_with_every_hash_recorded() {
    let p = Project::new();
    let legacy = p.path("backend/models");
    let ids = legacy_versions(&legacy, 1, None);
    p.json(&["register", "--all", legacy.to_str().unwrap()]);
    p.promote(&format!("raw/{}", ids[0]), &["--to", "validated"]);
    let dir = p
        .store()
        .join("validated")
        .join(format!("{}_validated", ids[0]));
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("metadata.json")).unwrap()).unwrap();
    let files = meta["files"].as_array().unwrap();
    assert!(files.len() >= 6, "{meta}");
    for f in files {
        let content = std::fs::read(dir.join(f["path"].as_str().unwrap())).unwrap();
        assert_eq!(f["blake3"], blake3::hash(&content).to_hex().as_str(), "{f}");
    }
    p.assert_verifies_clean();
}
