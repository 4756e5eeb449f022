use crate::support::bin;
use predicates::prelude::*;

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        bin()
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(predicate::str::contains("artifactctl"));
    }
    bin().args(["completions", "tcsh"]).assert().code(2);
}

#[test]
fn man_page_renders() {
    bin()
        .arg("man")
        .assert()
        .success()
        .stdout(predicate::str::contains(".TH artifactctl"));
}

#[test]
fn version_and_help_with_examples() {
    bin()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::contains(env!("CARGO_PKG_VERSION")));
    for cmd in [
        "register",
        "list",
        "show",
        "path",
        "delete",
        "init",
        "completions",
    ] {
        bin()
            .args([cmd, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Examples:"));
    }
    bin().arg("frobnicate").assert().code(2);
}

/// Issue 13: a page per command, with its flags, written by `man --dir`
/// (what `make install` runs) and printed by `man COMMAND`.
#[test]
fn man_pages_per_command_carry_their_flags() {
    let dir = tempfile::tempdir().unwrap();
    bin()
        .args(["man", "--dir"])
        .arg(dir.path())
        .assert()
        .success()
        .stderr(predicate::str::contains("man pages to"));
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.contains(&"artifactctl.1".to_string()), "{names:?}");
    assert!(
        names.contains(&"artifactctl-promote.1".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"artifactctl-cleanup.1".to_string()),
        "{names:?}"
    );
    assert!(names.len() >= 18, "{names:?}");
    let promote = std::fs::read_to_string(dir.path().join("artifactctl-promote.1")).unwrap();
    assert!(promote.contains(".TH artifactctl-promote"), "{promote}");
    assert!(promote.contains("version"), "{promote}");
    assert!(promote.contains("approve"), "{promote}");
    bin()
        .args(["man", "cleanup"])
        .assert()
        .success()
        .stdout(predicate::str::contains(".TH artifactctl-cleanup"))
        .stdout(predicate::str::contains("keep\\-daily"));
    bin().args(["man", "bogus"]).assert().code(2);
    let makefile = include_str!("../../Makefile");
    assert!(makefile.contains("man --dir $(PREFIX)/share/man/man1"));
}
