//! Flags a new user trips on (issue 13): each is accepted, or told what to
//! write instead.

use crate::support::Project;
use predicates::prelude::*;

/// `clear --dry-run` (seed 000's own flag) is the default dry run, and is
/// never read as a path.
#[test]
fn clear_accepts_dry_run() {
    let p = Project::new();
    p.write("trained_models/model.pkl", b"weights");
    p.cmd()
        .args(["clear", "--dry-run"])
        .assert()
        .success()
        .stderr(predicate::str::contains("-- --dry-run").not());
    assert!(p.path("trained_models/model.pkl").exists());
    p.cmd()
        .args(["clear", "--dry-run", "--force"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot be used with"));
    assert!(p.path("trained_models/model.pkl").exists());
}

/// `-n` is `--namespace` wherever it exists; cleanup's `--dry-run` has no
/// short form, so `cleanup -n` is an error, never a namespace or a removal.
#[test]
fn dash_n_means_namespace_everywhere() {
    let p = Project::new();
    let out = p.training_output("out");
    assert_eq!(p.register(&out, &["-n", "gru", "--id", "a"]), "gru/a");
    p.cmd()
        .args(["cleanup", "-n", "--keep", "1", "--yes"])
        .assert()
        .code(2);
    for cmd in ["register", "refresh", "cleanup"] {
        let help = crate::support::stdout_of(p.cmd().args([cmd, "--help"]));
        let short_n: Vec<&str> = help.lines().filter(|l| l.contains("-n, ")).collect();
        match cmd {
            "cleanup" => assert!(short_n.is_empty(), "{help}"),
            _ => assert!(short_n[0].contains("--namespace"), "{cmd}: {help}"),
        }
    }
    assert!(p.path("artifacts/raw/gru/a").is_dir());
}

/// `load` (seed 003's verb) is `path`.
#[test]
fn load_is_path() {
    let p = Project::new();
    let out = p.training_output("out");
    let id = p.register(&out, &[]);
    let path = crate::support::stdout_of(p.cmd().args(["load", "latest"]));
    assert_eq!(
        path.trim(),
        p.store().join("raw").join(&id).display().to_string()
    );
    let help = crate::support::stdout_of(p.cmd().arg("--help"));
    assert!(help.contains("[alias: load]"), "{help}");
}

/// A negative count says what is wrong instead of "unexpected argument".
#[test]
fn negative_counts_must_be_positive() {
    let p = Project::new();
    for args in [
        &["cleanup", "--keep", "-5"][..],
        &["cleanup", "--keep-daily", "-1"],
        &["refresh", "--jobs", "-1"],
        &["refresh", "--jobs", "0"],
        &["list", "--limit", "-3"],
    ] {
        p.cmd()
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("must be a positive number"))
            .stderr(predicate::str::contains("unexpected argument").not());
    }
}
