use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{with_fault, Project};
use predicates::prelude::*;
use serde_json::Value;

const NS: &str = "gru/BTCEUR";
const RUN: &str = "20261123_101500";

fn metadata(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("metadata.json")).unwrap()).unwrap()
}

fn runs_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "latest")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn passing_gates_promote_one_checkpoint_with_config_metrics_and_results() {
    let p = Project::new();
    p.require_gates(&[
        "coverage > 0.95",
        "best_val_loss < 0.5",
        "generalization_passed == true",
    ]);
    let raw = p.raw_run(NS, RUN);
    let results = p.write(
        "test_results.json",
        r#"{"generalization_passed": true, "posterior": {"collapse": false}}"#,
    );
    let out = p
        .cmd()
        .args([
            "promote",
            &raw,
            "--to",
            "validated",
            "--checkpoint",
            "epoch_70",
            "--results",
        ])
        .arg(&results)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pass    coverage > 0.95  (coverage = 0.99)"),
        "{stderr}"
    );
    assert!(stderr.contains("best_val_loss = 0.38"), "{stderr}");
    let reference = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(
        reference,
        format!("validated/{NS}/{RUN}_epoch_70_validated")
    );

    let dir = p.store().join(&reference);
    assert_eq!(
        std::fs::read(dir.join("model.pt")).unwrap(),
        b"epoch 70 weights"
    );
    assert!(dir.join("config.yaml").is_file());
    assert!(dir.join("metrics/training_metrics.json").is_file());
    assert!(dir.join("validation/test_results.json").is_file());
    assert!(!dir.join("checkpoints").exists(), "no training history");
    assert!(!dir.join("training.log").exists());

    let meta = metadata(&dir);
    assert_eq!(meta["stage"], "validated");
    assert_eq!(meta["lineage"]["promoted_from"], format!("raw/{NS}/{RUN}"));
    assert_eq!(meta["lineage"]["parent"], format!("raw/{NS}/{RUN}"));
    assert_eq!(meta["lineage"]["checkpoint"], "epoch_70");
    assert_eq!(meta["promotion"]["gates"].as_array().unwrap().len(), 3);
    assert_eq!(
        meta["promotion"]["results_file"],
        "validation/test_results.json"
    );
    assert_eq!(meta["metrics"]["posterior.collapse"], 0.0);
    // The user's results file is copied, never changed.
    assert_ne!(results.metadata().unwrap().permissions().mode() & 0o200, 0);

    // The raw run is now protected by lineage.
    p.cmd()
        .args(["delete", &raw, "--yes"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("source of promoted artifact"));
}

#[test]
fn a_failing_gate_is_exit_1_and_writes_nothing() {
    let p = Project::new();
    p.require_gates(&["coverage > 0.999", "best_val_loss < 0.5"]);
    let raw = p.raw_run(NS, RUN);
    p.cmd()
        .args(["promote", &raw, "--to", "validated"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "FAIL    coverage > 0.999  (coverage = 0.99)",
        ))
        .stderr(predicate::str::contains("pass    best_val_loss < 0.5"))
        .stderr(predicate::str::contains("nothing was written"));
    assert!(runs_in(&p.store().join("validated").join(NS)).is_empty());
    let staging = p.store().join(".artifactctl/staging");
    assert!(runs_in(&staging).is_empty(), "no staging left behind");
}

#[test]
fn a_missing_metric_fails_its_gate() {
    let p = Project::new();
    p.require_gates(&["coverage > 0.95", "auc >= 0.7"]);
    let raw = p.raw_run(NS, RUN);
    p.cmd()
        .args(["promote", &raw, "--to", "validated"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("MISSING auc >= 0.7"));
    assert!(runs_in(&p.store().join("validated").join(NS)).is_empty());
}

#[test]
fn a_malformed_gate_is_a_config_error_with_its_position() {
    let p = Project::new();
    p.require_gates(&["coverage > 0.95", "best_val_loss =< 0.5"]);
    let raw = p.raw_run(NS, RUN);
    p.cmd()
        .args(["promote", &raw, "--to", "validated"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("require[1]"))
        .stderr(predicate::str::contains("column 15"));
}

#[test]
fn dry_run_prints_the_gates_and_writes_nothing() {
    let p = Project::new();
    p.require_gates(&["coverage > 0.95"]);
    let raw = p.raw_run(NS, RUN);
    p.cmd()
        .args(["promote", &raw, "--to", "validated", "--dry-run"])
        .assert()
        .success()
        .stderr(predicate::str::contains("dry run"));
    assert!(runs_in(&p.store().join("validated").join(NS)).is_empty());
}

#[test]
fn unknown_checkpoint_lists_the_available_ones() {
    let p = Project::new();
    let raw = p.raw_run(NS, RUN);
    p.cmd()
        .args([
            "promote",
            &raw,
            "--to",
            "validated",
            "--checkpoint",
            "epoch_99",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("best, epoch_10, epoch_70, latest"));
}

#[test]
fn promoted_artifacts_are_read_only_and_share_bytes_with_the_raw_run() {
    let p = Project::new();
    let validated = p.released(NS, &["1.0.0"]);
    let raw_ckpt = p
        .store()
        .join("raw")
        .join(NS)
        .join(RUN)
        .join("checkpoints/epoch_70.pt");
    for dir in [
        p.store().join(&validated),
        p.store().join("production").join(NS).join("1.0.0"),
    ] {
        for entry in walkdir::WalkDir::new(&dir) {
            let entry = entry.unwrap();
            let mode = entry.metadata().unwrap().permissions().mode();
            assert_eq!(
                mode & 0o222,
                0,
                "{} is writable ({mode:o})",
                entry.path().display()
            );
        }
        let model = dir.join("model.pt").metadata().unwrap();
        assert_eq!(
            model.ino(),
            raw_ckpt.metadata().unwrap().ino(),
            "hard link, not a copy"
        );
        // Root writes through permission bits, so the write is tried as an
        // unprivileged user (the test user under setpriv when running as
        // root; the tempdir is opened up so that user can reach the file).
        assert!(
            !can_write_unprivileged(p.root(), &dir.join("model.pt")),
            "{} is writable by an ordinary user",
            dir.display()
        );
    }
}

/// Whether an ordinary user can open `path` for writing (`sh -c ': >> path'`,
/// which never truncates). As root the check runs as the unprivileged test
/// user, with the folders from the project `root` (itself in world-traversable
/// /tmp) down to `path` made traversable for it.
fn can_write_unprivileged(root: &Path, path: &Path) -> bool {
    if crate::support::is_root() {
        for dir in path.ancestors().skip(1) {
            if dir.starts_with(root) {
                let mode = dir.metadata().unwrap().permissions().mode();
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o005))
                    .unwrap();
            }
        }
    }
    let out = crate::support::unprivileged_command("sh")
        .args(["-c", ": >> \"$1\"", "sh"])
        .arg(path)
        .output()
        .expect("run sh");
    // The user must at least reach the file, or the check proves nothing.
    assert!(
        out.status.success() || String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success()
}

#[test]
fn production_needs_approval_without_a_terminal() {
    let p = Project::new();
    let validated = p.released(NS, &[]);
    p.cmd()
        .args([
            "promote",
            &validated,
            "--to",
            "production",
            "--version",
            "1.0.0",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("--approve"));
    assert!(!p.store().join("production").join(NS).join("1.0.0").exists());
}

/// Run the binary on a pseudo-terminal (util-linux `script`), typing `answer`.
fn on_a_terminal(p: &Project, args: &str, answer: &str) -> Option<std::process::Output> {
    // Not a skip: without util-linux `script` the test fails and says why.
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .find(|s| Path::new(s).exists())
        .expect("util-linux `script` is needed to run artifactctl on a terminal");
    let bin = assert_cmd::cargo::cargo_bin("artifactctl");
    let mut child = Command::new(script)
        .current_dir(p.root())
        .env("NO_COLOR", "1")
        .args(["-qec", &format!("{} {args}", bin.display()), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    use std::io::Write;
    child.stdin.take()?.write_all(answer.as_bytes()).ok()?;
    child.wait_with_output().ok()
}

#[test]
fn production_approval_on_a_terminal_is_a_prompt() {
    let p = Project::new();
    let validated = p.released(NS, &[]);
    let args = |v: &str| format!("promote {validated} --to production --version {v}");
    let refused = on_a_terminal(&p, &args("1.0.0"), "n\n").expect("run on a terminal");
    assert_eq!(refused.status.code(), Some(1));
    assert!(!p.store().join("production").join(NS).join("1.0.0").exists());
    let approved = on_a_terminal(&p, &args("1.0.0"), "y\n").unwrap();
    assert!(
        approved.status.success(),
        "{}",
        String::from_utf8_lossy(&approved.stdout)
    );
    let meta = metadata(&p.store().join("production").join(NS).join("1.0.0"));
    assert_eq!(meta["approval"]["method"], "interactive");
}

#[test]
fn production_release_writes_version_changelog_journal_and_latest() {
    let p = Project::new();
    let validated = p.released(NS, &[]);
    p.write("deploy/kubernetes/deployment.yaml", "replicas: 2\n");
    let out = p
        .cmd()
        .env("USER", "alice")
        .args([
            "promote",
            &validated,
            "--to",
            "production",
            "--version",
            "1.0.0",
            "--approve",
        ])
        .args([
            "--deploy-config",
            "deploy",
            "--notes",
            "first release",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ref"], format!("production/{NS}/1.0.0"));
    assert_eq!(json["became_latest"], true);

    let dir = p.store().join("production").join(NS).join("1.0.0");
    assert!(dir.join("model.pt").is_file());
    assert!(dir.join("config.yaml").is_file());
    assert!(dir.join("deployment/kubernetes/deployment.yaml").is_file());
    let meta = metadata(&dir);
    assert_eq!(meta["version"], "1.0.0");
    assert_eq!(meta["approval"]["by"], "alice");
    assert_eq!(meta["approval"]["method"], "flag");
    assert_eq!(meta["lineage"]["promoted_from"], format!("{validated}"));
    assert_eq!(meta["lineage"]["parent"], format!("raw/{NS}/{RUN}"));
    assert_eq!(
        std::fs::read_link(p.store().join("production").join(NS).join("latest")).unwrap(),
        Path::new("1.0.0")
    );
    let changelog = std::fs::read_to_string(p.store().join("production/CHANGELOG.md")).unwrap();
    assert!(changelog.contains("## gru/BTCEUR 1.0.0"), "{changelog}");
    assert!(changelog.contains("approved by: alice"), "{changelog}");
    assert!(
        changelog.contains("notes: \"first release\""),
        "{changelog}"
    );
    let journal = std::fs::read_to_string(p.store().join(".artifactctl/journal.jsonl")).unwrap();
    let last: Value = serde_json::from_str(journal.lines().last().unwrap()).unwrap();
    assert_eq!(last["action"], "promote");
    assert_eq!(last["user"], "alice");
    assert_eq!(last["source"], validated);
    assert_eq!(last["target"], format!("production/{NS}/1.0.0"));
    assert_eq!(last["version"], "1.0.0");
    assert!(last["gates"].is_array());
    assert!(last["time"].is_string());
}

#[test]
fn duplicate_and_lower_versions_are_refused() {
    let p = Project::new();
    let validated = p.released(NS, &["1.1.0"]);
    let release = |version: &str, extra: &[&str]| {
        let mut cmd = p.cmd();
        cmd.args([
            "promote",
            &validated,
            "--to",
            "production",
            "--version",
            version,
            "--approve",
        ])
        .args(extra);
        cmd
    };
    release("1.1.0", &[])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
    release("1.0.5", &[])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--allow-downgrade"));
    release("one", &[])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("semantic versioning"));
    release("1.0.5", &["--allow-downgrade"]).assert().success();
    release("1.0.5", &["--allow-downgrade"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
}

#[test]
fn racing_promotions_have_exactly_one_winner() {
    let p = Project::new();
    let validated = p.released(NS, &[]);
    let raw = format!("{NS}/{RUN}");
    for round in 0..3 {
        let version = format!("1.{round}.0");
        let id = format!("race_{round}");
        for args in [
            vec![
                "promote",
                raw.as_str(),
                "--to",
                "validated",
                "--id",
                id.as_str(),
            ],
            vec![
                "promote",
                validated.as_str(),
                "--to",
                "production",
                "--version",
                version.as_str(),
                "--approve",
            ],
        ] {
            let children: Vec<_> = (0..2)
                .map(|_| {
                    Command::new(assert_cmd::cargo::cargo_bin("artifactctl"))
                        .current_dir(p.root())
                        .args(&args)
                        .stdout(Stdio::null())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect();
            let outcomes: Vec<_> = children
                .into_iter()
                .map(|c| c.wait_with_output().unwrap())
                .collect();
            let winners = outcomes.iter().filter(|o| o.status.success()).count();
            assert_eq!(winners, 1, "{args:?}: exactly one wins");
            let loser = outcomes.iter().find(|o| !o.status.success()).unwrap();
            assert_eq!(loser.status.code(), Some(2));
            let err = String::from_utf8_lossy(&loser.stderr);
            assert!(
                err.contains("already exists") || err.contains("another writer"),
                "{err}"
            );
        }
    }
}

#[test]
fn racing_releases_of_different_versions_leave_latest_on_the_higher() {
    let p = Project::new();
    let validated = p.released(NS, &["1.0.0"]);
    for (low, high) in [("1.1.0", "1.2.0"), ("1.3.0", "1.4.0"), ("1.5.0", "1.6.0")] {
        let children: Vec<_> = [high, low]
            .iter()
            .map(|v| {
                Command::new(assert_cmd::cargo::cargo_bin("artifactctl"))
                    .current_dir(p.root())
                    .args([
                        "promote",
                        &validated,
                        "--to",
                        "production",
                        "--version",
                        v,
                        "--approve",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let codes: Vec<_> = children
            .into_iter()
            .map(|mut c| c.wait().unwrap().code())
            .collect();
        // The lower one may be refused if the higher was already published
        // when it was planned; either way latest is the higher version.
        assert_eq!(codes[0], Some(0));
        assert!(matches!(codes[1], Some(0) | Some(2)), "{codes:?}");
        assert_eq!(
            std::fs::read_link(p.store().join("production").join(NS).join("latest")).unwrap(),
            Path::new(high)
        );
    }
}

/// SIGKILL (via the debug fault hook) at either side of the rename that
/// publishes a release: before it, no version folder; after it (before
/// `latest` moves and the journal is written), a whole, read-only one. Either
/// way the store verifies clean, and the next promotion works and sweeps the
/// dead one's staging.
#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn kill_9_during_a_promotion_leaves_nothing_partial() {
    let p = Project::new();
    let validated = p.released(NS, &[]);
    p.write("deploy/kubernetes/deployment.yaml", "replicas: 2\n");
    let release = |version: &str| {
        let mut cmd = p.cmd();
        cmd.args(["promote", &validated, "--to", "production"])
            .args([
                "--version",
                version,
                "--approve",
                "--deploy-config",
                "deploy",
            ]);
        cmd
    };
    let production = p.store().join("production").join(NS);

    with_fault(&mut release("2.0.0"), "before-publish-rename");
    assert!(!production.join("2.0.0").exists(), "nothing published");
    assert!(!production.join("latest").exists());
    assert!(
        !runs_in(&p.store().join(".artifactctl/staging")).is_empty(),
        "the kill landed with the release still in staging"
    );
    p.cmd().args(["verify", "--all"]).assert().success();

    with_fault(&mut release("2.1.0"), "after-publish-rename");
    let dir = production.join("2.1.0");
    let meta = metadata(&dir);
    assert_eq!(meta["version"], "2.1.0", "published before the kill: whole");
    assert!(dir.join("model.pt").is_file());
    assert!(dir.join("deployment/kubernetes/deployment.yaml").is_file());
    // The content was made read-only in staging; the release folder itself
    // and its metadata.json only get read-only after the rename, which the
    // kill pre-empted.
    for entry in walkdir::WalkDir::new(&dir).min_depth(1) {
        let entry = entry.unwrap();
        if entry.path() == dir.join("metadata.json") {
            continue;
        }
        let mode = entry.metadata().unwrap().permissions().mode();
        assert_eq!(
            mode & 0o222,
            0,
            "{} published read-only ({mode:o})",
            entry.path().display()
        );
    }
    // So verify reports exactly that, with the fix; applying it leaves a
    // clean store. (The kill pre-empting make_tree_readonly is the one thing
    // a crash after the publish rename leaves behind.)
    let out = p
        .cmd()
        .args(["verify", "--all", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let problems = doc["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{doc:#}");
    assert_eq!(problems[0]["ref"], format!("production/{NS}/2.1.0"));
    assert_eq!(problems[0]["kind"], "writable");
    let fix = problems[0]["fix"].as_str().unwrap();
    assert!(
        fix.contains("verify --repair") && fix.contains("chmod -R a-w "),
        "{fix}"
    );
    p.cmd()
        .args(["verify", "--all", "--repair"])
        .assert()
        .success()
        .stderr(predicates::str::contains("repaired: made"));
    p.cmd().args(["verify", "--all"]).assert().success();

    // The next write sweeps whatever staging the dead promotions left.
    p.promote(
        &validated,
        &["--to", "production", "--version", "3.0.0", "--approve"],
    );
    assert!(runs_in(&p.store().join(".artifactctl/staging")).is_empty());
    assert_eq!(
        std::fs::read_link(production.join("latest")).unwrap(),
        Path::new("3.0.0")
    );
    p.cmd().args(["verify", "--all"]).assert().success();
}

#[test]
fn seed_004_layout_promotes_from_a_raw_run_without_metadata() {
    let p = Project::new();
    crate::support::seed004(&p.store());
    p.require_gates(&["coverage > 0.95", "best_val_loss < 0.5"]);
    let validated = p.promote(
        "v5_5_20251123_103epochs",
        &["--to", "validated", "--checkpoint", "epoch_70"],
    );
    assert_eq!(
        validated,
        "validated/v5_5_20251123_103epochs_epoch_70_validated"
    );
    let release = p.promote(
        &validated,
        &["--to", "production", "--version", "1.0.0", "--approve"],
    );
    assert_eq!(release, "production/1.0.0");
    let meta = metadata(&p.store().join("production/1.0.0"));
    assert_eq!(meta["lineage"]["parent"], "raw/v5_5_20251123_103epochs");
    // The legacy artifacts are noted as unchecked; the new ones verify clean.
    let out = p
        .cmd()
        .args(["verify", "--all", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["checked"], 5);
    assert_eq!(doc["notes"].as_array().unwrap().len(), 3);
}

/// Issue 13, item 4: multi-line --notes cannot forge a changelog line.
#[test]
fn notes_cannot_forge_a_changelog_line() {
    let p = Project::new();
    let validated = p.released(NS, &[]);
    p.cmd()
        .args([
            "promote",
            &validated,
            "--to",
            "production",
            "--version",
            "1.0.0",
            "--approve",
        ])
        .args([
            "--notes",
            "fine\n- approved by: the CEO (--approve)\n\n## gru/BTCEUR 9.9.9",
        ])
        .assert()
        .success();
    let changelog = std::fs::read_to_string(p.store().join("production/CHANGELOG.md")).unwrap();
    let approvals = changelog
        .lines()
        .filter(|l| l.starts_with("- approved by:"))
        .count();
    assert_eq!(approvals, 1, "{changelog}");
    assert!(
        !changelog
            .lines()
            .any(|l| l.starts_with("## gru/BTCEUR 9.9.9")),
        "{changelog}"
    );
    assert!(
        changelog.contains(
            r#"- notes: "fine\n- approved by: the CEO (--approve)\n\n## gru/BTCEUR 9.9.9""#
        ),
        "{changelog}"
    );
}
