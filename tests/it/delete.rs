use crate::support::{legacy_versions, Project};
use predicates::prelude::*;

#[test]
fn delete_without_a_tty_needs_yes() {
    let p = Project::new();
    let out = p.training_output("out");
    let reference = p.register(&out, &[]);
    p.cmd()
        .args(["delete", &reference])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--yes"));
    assert!(p.store().join("raw").join(&reference).is_dir());
}

#[test]
fn deleting_latest_moves_it_to_the_newest_remaining_run() {
    let p = Project::new();
    let out = p.training_output("out");
    let older = p.register(&out, &["--created-at", "2026-11-20T10:00:00Z"]);
    let newer = p.register(&out, &["--created-at", "2026-11-21T10:00:00Z"]);
    p.cmd()
        .args(["delete", &newer, "--yes"])
        .assert()
        .success()
        .stderr(predicate::str::contains(format!(
            "latest now points to {older}"
        )));
    assert!(!p.store().join("raw").join(&newer).exists());
    assert_eq!(
        std::fs::read_link(p.store().join("raw/latest"))
            .unwrap()
            .to_str(),
        Some(older.as_str())
    );
    p.cmd().args(["delete", &older, "--yes"]).assert().success();
    assert!(
        p.store().join("raw/latest").symlink_metadata().is_err(),
        "no run left, no latest"
    );
    let journal = std::fs::read_to_string(p.store().join(".artifactctl/journal.jsonl")).unwrap();
    assert_eq!(
        journal
            .lines()
            .filter(|l| l.contains("\"delete\"") && l.contains("\"removed\""))
            .count(),
        2
    );
}

#[test]
fn delete_never_follows_links_inside_a_run() {
    let p = Project::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("precious"), b"keep me").unwrap();
    let ids = legacy_versions(&p.path("backend/models"), 2, None);
    std::os::unix::fs::symlink(
        outside.path(),
        p.path("backend/models").join(&ids[0]).join("data"),
    )
    .unwrap();
    p.cmd()
        .args(["--store", "backend/models", "delete", &ids[0], "--yes"])
        .assert()
        .success();
    assert!(outside.path().join("precious").exists());
    assert!(!p.path("backend/models").join(&ids[0]).exists());
    assert!(p.path("backend/models").join(&ids[1]).exists());
}

#[test]
fn delete_refuses_a_run_a_promoted_artifact_came_from() {
    let p = Project::new();
    let out = p.training_output("out");
    let reference = p.register(&out, &[]);
    let promoted = p.store().join("validated/x_validated");
    crate::support::write(
        &promoted.join("metadata.json"),
        serde_json::json!({
            "schema_version": 1, "id": "x_validated", "namespace": "", "stage": "validated",
            "created_at": "2026-11-23T10:00:00Z", "status": "complete",
            "lineage": {"source": "promote", "promoted_from": format!("raw/{reference}"), "parent": format!("raw/{reference}")}
        })
        .to_string(),
    );
    p.cmd()
        .args(["delete", &reference, "--yes"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("validated/x_validated"));
    assert!(p.store().join("raw").join(&reference).is_dir());
}

#[test]
fn delete_of_an_unknown_ref_is_exit_2() {
    let p = Project::new();
    p.cmd().args(["delete", "nope", "--yes"]).assert().code(2);
    p.cmd().args(["delete", "../x", "--yes"]).assert().code(2);
}

/// A delete of the latest run killed after it unlisted the run never leaves
/// `latest` dangling: it was moved to the other run first.
#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn a_killed_delete_of_latest_never_leaves_latest_dangling() {
    let p = Project::new();
    let out = p.training_output("out");
    let older = p.register(&out, &["--created-at", "2026-01-01T00:00:00Z"]);
    let newer = p.register(&out, &["--created-at", "2026-01-02T00:00:00Z"]);
    crate::support::with_fault(p.cmd().args(["delete", &newer, "--yes"]), "mid-removal");
    assert_eq!(
        std::fs::read_link(p.store().join("raw/latest"))
            .unwrap()
            .to_str(),
        Some(older.as_str())
    );
    p.cmd().args(["verify", "--all"]).assert().success();
    p.cmd().args(["path", "latest"]).assert().success();
}

/// Declining the prompt exits 1 (README's exit-code table): the run was not
/// deleted, so `artifactctl delete X && next-step` must not go on.
#[test]
fn declining_the_prompt_exits_1_and_keeps_the_run() {
    let p = Project::new();
    let out = p.training_output("out");
    let reference = p.register(&out, &[]);
    let (code, shown) = crate::support::on_a_terminal(p.root(), &["delete", &reference], "n\n");
    assert_eq!(code, 1, "{shown}");
    assert!(shown.contains("declined: nothing deleted"), "{shown}");
    assert!(p.store().join("raw").join(&reference).is_dir());
}
