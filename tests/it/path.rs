use crate::support::Project;
use predicates::prelude::*;

#[test]
fn path_prints_the_absolute_run_folder() {
    let p = Project::new();
    let out = p.training_output("out");
    let reference = p.register(&out, &["--namespace", "gru/BTCEUR"]);
    let printed = p
        .cmd()
        .args(["path", "gru/BTCEUR/latest"])
        .output()
        .unwrap();
    assert!(printed.status.success());
    let path = String::from_utf8(printed.stdout).unwrap();
    let path = std::path::Path::new(path.trim());
    assert!(path.is_absolute());
    assert!(path.join("checkpoints/best.pt").is_file());
    assert!(path.ends_with(reference.trim_start_matches("gru/BTCEUR/")));
}

#[test]
fn path_of_an_unknown_ref_is_exit_2_with_suggestions() {
    let p = Project::new();
    let out = p.training_output("out");
    p.register(&out, &["--id", "v5_5_20251124"]);
    p.cmd()
        .args(["path", "v5_5_20251125"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nearest: v5_5_20251124"));
}

#[test]
fn path_rejects_traversal() {
    let p = Project::new();
    for bad in ["../etc", "a/../../b", "/etc/passwd"] {
        p.cmd().args(["path", bad]).assert().code(2);
    }
}
