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
