use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::{streams_of, Project};
use serde_json::Value;

const NS: &str = "gru/BTCEUR";
const RUN: &str = "20261123_101500";

/// `verify ARGS --json`: the exit code and the parsed document.
fn verify(p: &Project, args: &[&str]) -> (i32, Value) {
    let out = p
        .cmd()
        .arg("verify")
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json is JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), doc)
}

fn kinds(doc: &Value) -> Vec<(String, String)> {
    doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert!(
                !p["fix"].as_str().unwrap().is_empty(),
                "every problem says how to fix it"
            );
            (
                p["ref"].as_str().unwrap().to_string(),
                p["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn make_writable(path: &Path) {
    let mut perms = path.metadata().unwrap().permissions();
    perms.set_mode(perms.mode() | 0o200);
    std::fs::set_permissions(path, perms).unwrap();
}

#[test]
fn a_healthy_store_verifies_clean() {
    let p = Project::new();
    p.released(NS, &["1.0.0"]);
    let (code, doc) = verify(&p, &["--all"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["checked"], 3);
    assert_eq!(doc["problems"], serde_json::json!([]));
    let (code, doc) = verify(&p, &[&format!("production/{NS}/latest")]);
    assert_eq!((code, doc["checked"].as_u64()), (0, Some(1)));
    assert_output_snapshot!(
        Some(p.root()),
        "verify_clean",
        streams_of(p.cmd().args(["verify", "--all"]))
    );
}

#[test]
fn tampering_is_detected_changed_deleted_and_added_files() {
    let p = Project::new();
    let raw = p.raw_run(NS, RUN);
    let dir = p.store().join("raw").join(&raw);
    // A changed byte, same size.
    std::fs::write(dir.join("training.log"), b"epoch 1 loss 0.8\n").unwrap();
    std::fs::remove_file(dir.join("config.yaml")).unwrap();
    std::fs::write(dir.join("extra.bin"), b"x").unwrap();
    let (code, doc) = verify(&p, &[&raw]);
    assert_eq!(code, 1);
    let found = kinds(&doc);
    for kind in ["modified", "missing_file", "unexpected_file"] {
        assert!(
            found.contains(&(raw.clone(), kind.to_string())),
            "{kind} missing from {found:?}"
        );
    }
    assert_eq!(found.len(), 3, "{found:?}");
    assert_output_snapshot!(
        Some(p.root()),
        "verify_tampered",
        streams_of(p.cmd().args(["verify", &raw]))
    );
}

#[test]
fn tampering_with_a_promoted_artifact_and_its_read_only_bits() {
    let p = Project::new();
    let validated = p.released(NS, &[]);
    let dir = p.store().join(&validated);
    let (code, _) = verify(&p, &[&validated]);
    assert_eq!(code, 0);
    make_writable(&dir.join("config.yaml"));
    let (code, doc) = verify(&p, &[&validated]);
    assert_eq!(code, 1);
    assert_eq!(
        kinds(&doc),
        vec![(validated.clone(), "writable".to_string())]
    );
    assert!(doc["problems"][0]["fix"]
        .as_str()
        .unwrap()
        .contains("verify --repair"));

    make_writable(&dir.join("model.pt"));
    let mut bytes = std::fs::read(dir.join("model.pt")).unwrap();
    bytes[0] ^= 1;
    std::fs::write(dir.join("model.pt"), bytes).unwrap();
    let (code, doc) = verify(&p, &["--all"]);
    assert_eq!(code, 1);
    let found = kinds(&doc);
    assert!(
        found.contains(&(validated.clone(), "modified".into())),
        "{found:?}"
    );
    // The bytes are shared with the raw checkpoint, so it changed too.
    assert!(
        found.contains(&(format!("{NS}/{RUN}"), "modified".into())),
        "{found:?}"
    );
}

#[test]
fn seed_002_feature_mismatch_is_reported_and_legacy_limits_said() {
    let p = Project::new();
    let refs = crate::support::legacy_models(&p.store(), 1, true);
    let out = p
        .cmd()
        .args(["verify", "--all", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = doc["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{doc}");
    assert_eq!(problems[0]["ref"], refs[0].as_str());
    assert_eq!(problems[0]["kind"], "features");
    assert!(problems[0]["detail"]
        .as_str()
        .unwrap()
        .contains("feature_count=50 but 114 feature_names"));
    let notes = doc["notes"].as_array().unwrap();
    assert_eq!(notes.len(), refs.len());
    assert!(notes[0]["detail"]
        .as_str()
        .unwrap()
        .contains("cannot be verified"));
    assert_output_snapshot!(
        Some(p.root()),
        "verify_seed_002",
        streams_of(p.cmd().args(["verify", "--all"]))
    );
}

#[test]
fn a_dangling_latest_is_a_problem() {
    let p = Project::new();
    p.raw_run(NS, RUN);
    let ns_dir = p.store().join("raw").join(NS);
    std::fs::remove_file(ns_dir.join("latest")).unwrap();
    std::os::unix::fs::symlink("20990101_000000", ns_dir.join("latest")).unwrap();
    let (code, doc) = verify(&p, &["--all"]);
    assert_eq!(code, 1);
    assert_eq!(
        kinds(&doc),
        vec![(format!("{NS}/latest"), "latest".to_string())]
    );
}

#[test]
fn corrupted_metadata_is_reported_not_fatal() {
    let p = Project::new();
    let raw = p.raw_run(NS, RUN);
    let other = p.raw_run("lightgbm/ETHEUR", "20261123_111500");
    std::fs::write(
        p.store().join("raw").join(&raw).join("metadata.json"),
        "{\"schema_version\": 1,",
    )
    .unwrap();
    let (code, doc) = verify(&p, &["--all"]);
    assert_eq!(code, 1);
    let found = kinds(&doc);
    assert!(
        found.contains(&(raw.clone(), "metadata".into())),
        "{found:?}"
    );
    assert!(!found.iter().any(|(r, _)| *r == other), "{found:?}");
    assert_eq!(doc["checked"], 2);
}

#[test]
fn stray_staging_is_noted_without_failing() {
    let p = Project::new();
    p.raw_run(NS, RUN);
    let stray = p.store().join(".artifactctl/staging/promote.999999999.abc");
    std::fs::create_dir_all(&stray).unwrap();
    let (code, doc) = verify(&p, &["--all"]);
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["notes"][0]["kind"], "stray_staging");
    assert!(stray.exists(), "verify never changes the store");
}

#[test]
fn verify_needs_refs_or_all() {
    let p = Project::new();
    p.cmd().arg("verify").assert().code(2);
}

/// `verify --all --repair` and what it reports, as (exit code, stderr).
fn repair(p: &Project) -> (i32, String) {
    let out = p
        .cmd()
        .args(["verify", "--all", "--repair"])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A register whose `latest` swap failed after the publish: the run is
/// there, `latest` is not and neither is its journal line; `--repair`
/// completes both, and the store then verifies clean.
#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn repair_completes_a_register_whose_latest_and_journal_failed() {
    let p = Project::new();
    p.training_output("out");
    let failed = crate::support::with_fault(p.cmd().args(["register", "out"]), "symlink:eio");
    assert_eq!(failed.status.code(), Some(1));
    let (code, doc) = verify(&p, &["--all"]);
    assert_eq!(code, 0, "the run itself is whole: {doc:#}");
    let notes: Vec<&str> = doc["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert!(notes.contains(&"unjournaled"), "{doc:#}");
    let (code, stderr) = repair(&p);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("repaired: journaled raw/"), "{stderr}");
    let history = p.json(&["history"]);
    assert_eq!(
        history["entries"].as_array().unwrap().len(),
        1,
        "{history:#}"
    );
    let (_, doc) = verify(&p, &["--all"]);
    assert!(doc["notes"].as_array().unwrap().is_empty(), "{doc:#}");
}

/// A pin killed at the rename of the new metadata.json of a promoted
/// artifact leaves a temporary file and a writable folder; `--repair`
/// removes the one and restores the other.
#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn repair_finishes_a_killed_pin_of_a_promoted_artifact() {
    let p = Project::new();
    let out = p.training_output("out");
    let raw = p.register(&out, &[]);
    let validated = p.promote(&raw, &["--to", "validated", "--checkpoint", "epoch_70"]);
    crate::support::with_fault(p.cmd().args(["pin", &validated]), "rename");
    let (code, doc) = verify(&p, &["--all"]);
    assert_eq!(code, 1);
    let kinds: Vec<&str> = doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"unexpected_file") && kinds.contains(&"writable"),
        "{doc:#}"
    );
    let (code, stderr) = repair(&p);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("removed the stray temporary file"),
        "{stderr}"
    );
    assert!(stderr.contains("read-only"), "{stderr}");
    p.cmd().args(["pin", &validated]).assert().success();
    p.cmd().args(["verify", "--all"]).assert().success();
}

/// A release whose changelog entry was lost gets one back from its
/// metadata, and a dangling `latest` is pointed at the newest run.
#[test]
fn repair_restores_a_lost_changelog_entry_and_a_dangling_latest() {
    let p = Project::new();
    p.released(NS, &["1.0.0"]);
    let changelog = p.store().join("production/CHANGELOG.md");
    std::fs::write(&changelog, "# Production changelog\n").unwrap();
    let raw_latest = p.store().join("raw").join(NS).join("latest");
    std::fs::remove_file(&raw_latest).unwrap();
    std::os::unix::fs::symlink("20990101_000000", &raw_latest).unwrap();
    let (code, _) = verify(&p, &["--all"]);
    assert_eq!(code, 1, "a dangling latest is a problem");
    let (code, stderr) = repair(&p);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&changelog).unwrap();
    assert!(text.contains(&format!("## {NS} 1.0.0 (")), "{text}");
    assert!(std::fs::read_link(&raw_latest).is_ok_and(|t| t != Path::new("20990101_000000")));
    let (code, doc) = verify(&p, &["--all"]);
    assert_eq!(code, 0, "{doc:#}");
    assert!(doc["notes"].as_array().unwrap().is_empty(), "{doc:#}");
}

/// Issue 13: a dangling latest reads `latest points to …`, not
/// `latest: latest: latest points to …`.
#[test]
fn a_dangling_latest_is_named_once() {
    let p = Project::new();
    let out = p.training_output("out");
    p.register(&out, &["--id", "r1"]);
    let link = p.store().join("raw/latest");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink("gone", &link).unwrap();
    let shown = crate::support::streams_of(p.cmd().args(["verify", "--all"]));
    assert!(!shown.contains("latest: latest"), "{shown}");
    assert_output_snapshot!(Some(p.root()), "verify_dangling_latest", shown);
}
