//! Promotion in the seed 002 and 003 layouts, in place, and seed 004's
//! legacy release names (issue 12 item 4).

use std::path::Path;

use predicates::prelude::*;
use serde_json::Value;

use crate::support::{legacy_models, legacy_versions, seed004, Project};

fn json(p: &Project, args: &[String]) -> Value {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    p.json(&args)
}

/// `stage/ref` of each listed run, sorted.
fn refs(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let (stage, reference) = (r["stage"].as_str().unwrap(), r["ref"].as_str().unwrap());
            if reference.starts_with(&format!("{stage}/")) {
                reference.to_string()
            } else {
                format!("{stage}/{reference}")
            }
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_flat_seed_003_store_is_promoted_in_place() {
    let p = Project::new();
    let store = p.path("backend/models");
    let ids = legacy_versions(&store, 3, None);
    let s = store.to_str().unwrap();
    let flag = |args: &[&str]| -> Vec<String> {
        ["--store", s]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect()
    };

    let out = p
        .cmd()
        .args(flag(&["promote", &ids[1], "--to", "validated"]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let validated = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(validated, format!("validated/{}_validated", ids[1]));
    p.cmd()
        .args(flag(&[
            "promote",
            &validated,
            "--to",
            "production",
            "--version",
            "1.0.0",
            "--approve",
        ]))
        .assert()
        .success();

    // The stages sit beside the version folders, which stay where they are.
    assert!(store
        .join("validated")
        .join(format!("{}_validated", ids[1]))
        .is_dir());
    assert!(store.join("production/1.0.0/lstm_model.h5").is_file());
    for id in &ids {
        assert!(store.join(id).join("training_metadata.json").is_file());
    }
    // raw still means the version folders, and every stage is seen.
    let raw = json(&p, &flag(&["list"]));
    assert_eq!(
        refs(&raw),
        ids.iter().map(|i| format!("raw/{i}")).collect::<Vec<_>>()
    );
    let all = refs(&json(&p, &flag(&["list", "--stage", "all"])));
    assert_eq!(all.len(), 5, "{all:?}");
    assert!(all.contains(&"production/1.0.0".to_string()));
    assert!(all.contains(&validated));

    // A second release, then rollback and history see the production stage.
    p.cmd()
        .args(flag(&[
            "promote",
            &validated,
            "--to",
            "production",
            "--version",
            "1.1.0",
            "--approve",
        ]))
        .assert()
        .success();
    p.cmd()
        .args(flag(&["rollback"]))
        .assert()
        .success()
        .stderr(predicate::str::contains("1.1.0 -> 1.0.0"));
    assert_eq!(
        std::fs::read_link(store.join("production/latest")).unwrap(),
        Path::new("1.0.0")
    );
    let history = json(&p, &flag(&["history"]));
    let text = history.to_string();
    assert!(
        text.contains("rollback") && text.contains("production/1.1.0"),
        "{text}"
    );
    // The raw `latest` of the seed is untouched.
    assert_eq!(
        std::fs::read_link(store.join("latest")).unwrap(),
        Path::new(&ids[2])
    );
}

#[test]
fn a_per_symbol_seed_002_store_is_promoted_in_place() {
    let p = Project::new();
    let store = p.path("models");
    let runs = legacy_models(&store, 2, false);
    let s = store.to_str().unwrap();
    let flag = |args: &[&str]| -> Vec<String> {
        ["--store", s]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect()
    };
    let gru = &runs[1];
    assert!(gru.starts_with("gru/BTCEUR/"));

    let out = p
        .cmd()
        .args(flag(&["promote", gru, "--to", "validated"]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let validated = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        validated.starts_with("validated/gru/BTCEUR/"),
        "{validated}"
    );
    p.cmd()
        .args(flag(&[
            "promote",
            "validated/gru/BTCEUR/latest",
            "--to",
            "production",
            "--version",
            "1.0.0",
            "--approve",
        ]))
        .assert()
        .success();
    assert!(store
        .join("production/gru/BTCEUR/1.0.0/model.pth")
        .is_file());
    assert!(store
        .join("production/gru/BTCEUR/1.0.0/metadata.json")
        .is_file());
    assert!(store.join(gru).join("model.pth").is_file());

    let raw = refs(&json(&p, &flag(&["list"])));
    assert_eq!(raw.len(), runs.len(), "{raw:?}");
    assert!(raw.iter().all(|r| r.starts_with("raw/")));
    let production = refs(&json(&p, &flag(&["list", "--stage", "production"])));
    assert_eq!(production, ["production/gru/BTCEUR/1.0.0"]);
    let out = p
        .cmd()
        .args(flag(&["path", "production/gru/BTCEUR/latest"]))
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .ends_with("1.0.0"));
}

#[test]
fn seed_004_legacy_release_is_production_latest_everywhere() {
    let p = Project::new();
    seed004(&p.store());
    // list marks it latest...
    let list = p.list_json(&["--stage", "production"]);
    assert_eq!(list["runs"][0]["id"], "v5_5_prod_v1.0");
    assert_eq!(list["runs"][0]["latest"], true);
    // ...and promote agrees before publishing a semantic version above it.
    p.cmd()
        .args([
            "promote",
            "validated/v5_5_epoch70_validated",
            "--to",
            "production",
            "--version",
            "1.0.0",
            "--approve",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "(production latest now: v5_5_prod_v1.0)",
        ));
    let production = p.store().join("production");
    assert_eq!(
        std::fs::read_link(production.join("latest")).unwrap(),
        Path::new("1.0.0")
    );
    // rollback steps back to the legacy release, and can name it.
    p.cmd()
        .args(["rollback"])
        .assert()
        .success()
        .stderr(predicate::str::contains("1.0.0 -> v5_5_prod_v1.0"));
    assert_eq!(
        std::fs::read_link(production.join("latest")).unwrap(),
        Path::new("v5_5_prod_v1.0")
    );
    p.cmd()
        .args(["rollback", "--to", "1.0.0"])
        .assert()
        .success();
    p.cmd()
        .args(["rollback", "--to", "v5_5_prod_v1.0"])
        .assert()
        .success();
    let list = p.list_json(&["--stage", "production"]);
    let latest: Vec<&str> = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["latest"] == true)
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(latest, ["v5_5_prod_v1.0"]);
}

#[test]
fn rollback_to_a_legacy_release_without_any_link() {
    let p = Project::new();
    seed004(&p.store());
    let extra = p.store().join("production/v5_5_prod_v0.9");
    crate::support::write(&extra.join("model.pt"), b"older");
    crate::support::write(
        &extra.join("metadata.json"),
        br#"{"created_at": "2025-11-20T10:00:00"}"#,
    );
    p.cmd()
        .args(["rollback", "--to", "v5_5_prod_v0.9"])
        .assert()
        .success()
        .stderr(predicate::str::contains("v5_5_prod_v1.0 -> v5_5_prod_v0.9"));
}
