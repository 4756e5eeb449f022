use std::os::unix::fs::symlink;

use crate::support::{legacy_models, legacy_versions, seed004, stdout_of, Project};
use predicates::prelude::*;
use serde_json::Value;

fn refs(list: &Value) -> Vec<String> {
    list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ref"].as_str().unwrap().to_string())
        .collect()
}

fn run<'a>(list: &'a Value, reference: &str) -> &'a Value {
    list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ref"] == reference)
        .unwrap()
}

#[test]
fn list_shows_runs_newest_first_with_the_latest_marked() {
    let p = Project::new();
    let out = p.training_output("out");
    p.register(
        &out,
        &[
            "--created-at",
            "2026-11-20T10:00:00Z",
            "--metric",
            "sharpe_ratio=0.5",
        ],
    );
    p.register(
        &out,
        &[
            "--created-at",
            "2026-11-21T10:00:00Z",
            "--metric",
            "sharpe_ratio=1.7",
        ],
    );
    let list = p.list_json(&[]);
    assert_eq!(list["schema_version"], 1);
    assert_eq!(refs(&list), ["20261121_100000", "20261120_100000"]);
    let newest = run(&list, "20261121_100000");
    assert_eq!(newest["latest"], true);
    assert_eq!(newest["model_count"], 4, "four .pt checkpoints");
    assert_eq!(newest["file_count"], 7);
    for key in [
        "ref",
        "id",
        "namespace",
        "stage",
        "created_at",
        "status",
        "size_bytes",
        "file_count",
        "model_count",
        "metrics",
        "params",
        "tags",
        "latest",
        "problems",
    ] {
        assert!(newest.get(key).is_some(), "list --json lacks {key}");
    }
    p.cmd()
        .arg("list")
        .assert()
        .success()
        .stdout(predicate::str::contains("*  20261121_100000"))
        .stdout(predicate::str::contains("sharpe_ratio"))
        .stdout(predicate::str::contains("1.7"));
    assert_output_snapshot!(Some(p.root()), "list_table", stdout_of(p.cmd().arg("list")));
}

#[test]
fn where_sort_and_limit() {
    let p = Project::new();
    let out = p.training_output("out");
    for (day, sharpe, seq) in [(20, "0.5", "30"), (21, "1.7", "60"), (22, "1.2", "30")] {
        p.register(
            &out,
            &[
                "--created-at",
                &format!("2026-11-{day}T10:00:00Z"),
                "--metric",
                &format!("sharpe_ratio={sharpe}"),
                "--param",
                &format!("seq_length={seq}"),
            ],
        );
    }
    assert_eq!(
        refs(&p.list_json(&["--where", "metrics.sharpe_ratio>1.0"])),
        ["20261122_100000", "20261121_100000"]
    );
    assert_eq!(
        refs(&p.list_json(&["--where", "params.seq_length=30"])),
        ["20261122_100000", "20261120_100000"]
    );
    assert_eq!(
        refs(&p.list_json(&[
            "--where",
            "params.seq_length=30",
            "--where",
            "metrics.sharpe_ratio<1"
        ])),
        ["20261120_100000"]
    );
    assert_eq!(
        refs(&p.list_json(&["--sort", "metrics.sharpe_ratio", "--limit", "2"])),
        ["20261121_100000", "20261122_100000"]
    );
    assert_eq!(
        refs(&p.list_json(&["--sort", "created", "--reverse", "--limit", "1"])),
        ["20261120_100000"]
    );
    p.cmd()
        .args(["list", "--where", "sharpe>1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown field"));
    p.cmd().args(["list", "--sort", "bogus"]).assert().code(2);
}

#[test]
fn namespaces_and_stages_filter() {
    let p = Project::new();
    let out = p.training_output("out");
    p.register(&out, &["-n", "gru/BTCEUR", "--id", "a"]);
    p.register(&out, &["-n", "gru/ETHEUR", "--id", "b"]);
    p.register(&out, &["-n", "ppo/BTCEUR", "--id", "c"]);
    let mut gru = refs(&p.list_json(&["gru"]));
    gru.sort();
    assert_eq!(gru, ["gru/BTCEUR/a", "gru/ETHEUR/b"]);
    assert_eq!(
        p.list_json(&["--stage", "all"])["runs"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        p.list_json(&["--stage", "validated"])["runs"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    p.cmd()
        .args(["list", "--stage", "staging"])
        .assert()
        .code(2);
}

#[test]
fn seed_003_versions_are_read_as_they_are_and_corruption_is_shown() {
    let p = Project::new();
    let models = p.path("backend/models");
    let ids = legacy_versions(&models, 5, Some(2));
    let out = p
        .cmd()
        .args(["--store", "backend/models", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "a corrupted run does not fail list");
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["runs"].as_array().unwrap().len(), 5);
    let newest = run(&list, &ids[4]);
    assert_eq!(newest["latest"], true);
    assert_eq!(
        newest["model_count"], 4,
        "the models list of training_metadata.json"
    );
    assert_eq!(newest["metrics"]["sharpe_ratio"], 0.9);
    assert!(newest["size_bytes"].as_u64().unwrap() > 5 * 512);
    let broken = run(&list, &ids[2]);
    assert!(broken["problems"][0]
        .as_str()
        .unwrap()
        .contains("corrupted training_metadata.json"));
    assert_eq!(broken["metrics"], serde_json::json!({}));
    p.cmd()
        .args(["--store", "backend/models", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "! corrupted training_metadata.json",
        ));
    assert_output_snapshot!(
        Some(p.root()),
        "list_table_seed_003",
        stdout_of(p.cmd().args(["--store", "backend/models", "list"]))
    );
}

#[test]
fn seed_002_symbols_are_namespaces_with_feature_problems_reported() {
    let p = Project::new();
    let refs_on_disk = legacy_models(&p.path("models"), 2, true);
    let list: Value = serde_json::from_slice(
        &p.cmd()
            .args(["--store", "models", "list", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let mut listed = refs(&list);
    listed.sort();
    let mut expected = refs_on_disk.clone();
    expected.sort();
    assert_eq!(listed, expected);
    let mismatched = run(&list, &refs_on_disk[0]);
    assert!(mismatched["problems"][0]
        .as_str()
        .unwrap()
        .contains("feature count mismatch"));
    assert_eq!(
        list["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["latest"] == true)
            .count(),
        6
    );
    let one = run(&list, &refs_on_disk[1]);
    assert_eq!(one["latest"], true);
    assert_eq!(one["created_at"], "2024-08-16T14:00:01.234567Z");
}

#[test]
fn seed_004_stages_are_read_as_they_are() {
    let p = Project::new();
    seed004(&p.store());
    let list = p.list_json(&["--stage", "all"]);
    let mut listed = refs(&list);
    listed.sort();
    assert_eq!(
        listed,
        [
            "production/v5_5_prod_v1.0",
            "v5_5_20251123_103epochs",
            "validated/v5_5_epoch70_validated"
        ]
    );
    let raw = run(&list, "v5_5_20251123_103epochs");
    assert_eq!(raw["model_count"], 3);
    assert_eq!(
        run(&list, "validated/v5_5_epoch70_validated")["metrics"]["coverage"],
        0.99
    );
    assert_output_snapshot!(
        Some(p.root()),
        "list_table_seed_004",
        stdout_of(p.cmd().args(["list", "--stage", "all"]))
    );
}

#[test]
fn a_corrupted_native_metadata_is_listed_with_its_problem() {
    let p = Project::new();
    let out = p.training_output("out");
    let good = p.register(&out, &["--created-at", "2026-11-20T10:00:00Z"]);
    let bad = p.register(&out, &["--created-at", "2026-11-21T10:00:00Z"]);
    let meta = p.store().join("raw").join(&bad).join("metadata.json");
    let text = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(&meta, &text[..text.len() / 3]).unwrap();
    std::fs::remove_file(p.store().join("raw/latest")).unwrap();
    let list = p.list_json(&[]);
    let broken = run(&list, &bad);
    assert_eq!(broken["status"], "unknown");
    assert!(broken["problems"][0]
        .as_str()
        .unwrap()
        .contains("corrupted metadata.json"));
    assert_eq!(
        run(&list, &good)["latest"],
        true,
        "a broken run never counts as latest"
    );
}

#[test]
fn an_escaping_latest_is_never_followed() {
    let p = Project::new();
    let out = p.training_output("out");
    p.register(&out, &[]);
    let link = p.store().join("raw/latest");
    std::fs::remove_file(&link).unwrap();
    symlink("/etc", &link).unwrap();
    let list = p.list_json(&[]);
    assert!(list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["latest"] == false));
    assert!(!refs(&list).iter().any(|r| r.contains("passwd")));
}

#[test]
fn empty_store_lists_nothing() {
    let p = Project::new();
    p.cmd()
        .arg("list")
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains("no runs"));
    assert!(!p.store().exists(), "reading never creates the store");
}

#[test]
fn a_metadata_symlink_is_not_followed() {
    let p = Project::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("secret.json"),
        r#"{"metrics": {"sharpe_ratio": 99}}"#,
    )
    .unwrap();
    let ids = legacy_versions(&p.path("backend/models"), 1, None);
    let meta = p
        .path("backend/models")
        .join(&ids[0])
        .join("training_metadata.json");
    std::fs::remove_file(&meta).unwrap();
    symlink(outside.path().join("secret.json"), &meta).unwrap();
    let list: Value = serde_json::from_slice(
        &p.cmd()
            .args(["--store", "backend/models", "list", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let only = &list["runs"][0];
    assert_eq!(only["metrics"], serde_json::json!({}));
    assert!(only["problems"][0]
        .as_str()
        .unwrap()
        .contains("cannot read"));
}

/// Issue 13, item 1: sizes take units, created takes dates and ages, a
/// malformed filter is a usage error that shows the valid forms, and a
/// filter that matches nothing says so with the store's count.
#[test]
fn where_reads_units_dates_and_ages_and_rejects_nonsense() {
    let p = Project::new().env("ARTIFACTCTL_NOW", "2026-11-25T12:00:00Z");
    let out = p.training_output("out");
    for day in [20, 23] {
        p.register(
            &out,
            &[
                "--created-at",
                &format!("2026-11-{day}T10:00:00Z"),
                "--metric",
                "x=2",
            ],
        );
    }
    let size = p.list_json(&[])["runs"][0]["size_bytes"].as_u64().unwrap();
    assert!(size < 1000, "the fixture is small: {size}");
    assert!(refs(&p.list_json(&["--where", "size>1GB"])).is_empty());
    assert_eq!(refs(&p.list_json(&["--where", "size<1KB"])).len(), 2);
    assert_eq!(refs(&p.list_json(&["--where", "size<1MiB"])).len(), 2);
    assert_eq!(
        refs(&p.list_json(&["--where", "created>2026-11-21"])),
        ["20261123_100000"]
    );
    assert_eq!(
        refs(&p.list_json(&["--where", "created=2026-11-20"])),
        ["20261120_100000"]
    );
    assert_eq!(
        refs(&p.list_json(&["--where", "created<3d"])),
        ["20261123_100000"]
    );
    assert_eq!(
        refs(&p.list_json(&["--where", "created>3d"])),
        ["20261120_100000"]
    );
    assert!(refs(&p.list_json(&["--where", "created>yesterday"])).is_empty());
    for bad in [
        "metrics.x>>1",
        "created>tomorrowish",
        "size>big",
        "bogus=1",
        "metrics.x>abc",
        "created=7d",
        "stage=prod",
    ] {
        p.cmd()
            .args(["list", "--where", bad])
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!("bad --where '{bad}'")))
            .stderr(predicate::str::contains("operators: = == != > >= < <="))
            .stderr(predicate::str::contains("size: 500, 1KB, 1.5GiB"));
    }
    p.cmd()
        .args(["list", "--where", "metrics.x>5"])
        .assert()
        .success()
        .stdout("")
        .stderr(predicate::str::contains(
            "no runs match --where 'metrics.x>5'; 2 runs in",
        ));
}

/// Issue 13, item 2: a store that does not exist or is not a folder is an
/// error naming it; an empty one is fine; a path given as NS gets a hint.
#[test]
fn a_wrong_store_path_is_an_error_and_a_path_as_ns_gets_a_hint() {
    let p = Project::new();
    legacy_versions(&p.path("backend/models"), 1, None);
    for (store, why) in [
        ("backend/model", "does not exist (from --store)"),
        ("/etc/passwd", "is not a folder (from --store)"),
    ] {
        for cmd in ["list", "history", "verify"] {
            p.cmd()
                .args(["--store", store, cmd])
                .assert()
                .code(2)
                .stdout("")
                .stderr(
                    predicate::str::contains(format!("store {}", p.path(store).display()))
                        .or(predicate::str::contains(format!("store {store}"))),
                )
                .stderr(predicate::str::contains(why));
        }
    }
    p.write("artifactctl.toml", "[store]\ndir = \"nowhere\"\n");
    p.cmd()
        .arg("list")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "does not exist (from [store] dir in",
        ));
    std::fs::remove_file(p.path("artifactctl.toml")).unwrap();
    std::fs::create_dir(p.path("empty")).unwrap();
    p.cmd()
        .args(["--store", "empty", "list"])
        .assert()
        .success()
        .stderr(predicate::str::contains("no runs in"));
    p.cmd()
        .args(["list", "backend/models"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "did you mean --store backend/models?",
        ));
}

/// `list production` is the production stage, not a bad namespace.
#[test]
fn a_stage_name_as_ns_is_the_stage() {
    let p = Project::new();
    let out = p.training_output("out");
    p.register(&out, &["--namespace", "gru", "--id", "a"]);
    for args in [&["production"][..], &["production/gru"], &["validated"]] {
        assert!(refs(&p.list_json(args)).is_empty(), "{args:?}");
    }
    assert_eq!(refs(&p.list_json(&["raw"])), ["gru/a"]);
    assert_eq!(refs(&p.list_json(&["raw/gru"])), ["gru/a"]);
    assert_eq!(refs(&p.list_json(&["all"])), ["gru/a"]);
    p.cmd()
        .args(["list", "production", "--stage", "raw"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("give one of them"));
}
