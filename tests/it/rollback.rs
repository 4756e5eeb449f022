use std::path::Path;

use crate::support::Project;
use predicates::prelude::*;

const NS: &str = "gru/BTCEUR";

fn latest(p: &Project) -> String {
    std::fs::read_link(p.store().join("production").join(NS).join("latest"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn rollback_steps_back_through_versions_and_forward_with_to() {
    let p = Project::new();
    p.released(NS, &["1.0.0", "1.1.0", "1.2.0"]);
    assert_eq!(latest(&p), "1.2.0");

    p.cmd()
        .args(["rollback", NS])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("production/{NS}/1.1.0")))
        .stderr(predicate::str::contains("1.2.0 -> 1.1.0"));
    assert_eq!(latest(&p), "1.1.0");
    p.cmd().args(["rollback", NS]).assert().success();
    assert_eq!(latest(&p), "1.0.0");
    p.cmd()
        .args(["rollback", NS])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("earliest release"));

    p.cmd()
        .args(["rollback", NS, "--to", "1.2.0"])
        .assert()
        .success();
    assert_eq!(latest(&p), "1.2.0");
    p.cmd()
        .args(["rollback", NS, "--to", "9.9.9"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("releases: 1.0.0, 1.1.0, 1.2.0"));
    // Nothing is deleted by a rollback, and path follows latest.
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        assert!(p.store().join("production").join(NS).join(v).is_dir());
    }
    let out = p
        .cmd()
        .args(["path", &format!("production/{NS}/latest")])
        .output()
        .unwrap();
    assert!(Path::new(String::from_utf8(out.stdout).unwrap().trim()).ends_with("1.2.0"));
}

#[test]
fn rollback_is_journaled_and_in_the_changelog() {
    let p = Project::new();
    p.released(NS, &["1.0.0", "2.0.0"]);
    p.cmd()
        .env("USER", "bob")
        .args(["rollback", NS])
        .assert()
        .success();
    let journal = std::fs::read_to_string(p.store().join(".artifactctl/journal.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(journal.lines().last().unwrap()).unwrap();
    assert_eq!(last["action"], "rollback");
    assert_eq!(last["user"], "bob");
    assert_eq!(last["source"], format!("production/{NS}/2.0.0"));
    assert_eq!(last["target"], format!("production/{NS}/1.0.0"));
    let changelog = std::fs::read_to_string(p.store().join("production/CHANGELOG.md")).unwrap();
    assert!(changelog.contains("rollback to 1.0.0"), "{changelog}");
}

#[test]
fn rollback_without_releases_says_how_to_make_one() {
    let p = Project::new();
    p.raw_run(NS, "20261123_101500");
    p.cmd()
        .args(["rollback", NS])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--to production --version"));
}

#[test]
fn rollback_in_a_seed_003_flat_store_moves_its_latest_back_in_time() {
    let p = Project::new();
    let ids = crate::support::legacy_versions(&p.store(), 3, None);
    p.cmd()
        .args(["rollback"])
        .assert()
        .success()
        .stdout(predicate::str::contains(ids[1].as_str()));
    assert_eq!(
        std::fs::read_link(p.store().join("latest")).unwrap(),
        Path::new(&ids[1])
    );
    p.cmd()
        .args(["rollback", "--to", &ids[2]])
        .assert()
        .success();
    assert_eq!(
        std::fs::read_link(p.store().join("latest")).unwrap(),
        Path::new(&ids[2])
    );
    assert!(
        !p.store().join("production").exists(),
        "no stage folders are added"
    );
}
