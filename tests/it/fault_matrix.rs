//! Every writing command, killed (and failed with EIO) at every write,
//! fsync, rename, symlink, chmod and mkdir it makes: each time the fault
//! must have fired, `verify --all --repair` must leave a store that
//! `verify --all` finds clean, and nothing the user gave may be lost
//! (issue 10, "Done when").
//!
//! For each command and syscall class the test injects the fault at the
//! 1st, 2nd, ... occurrence until a run completes without reaching it, so
//! every occurrence is covered and a class the command never uses is
//! reported by the table below rather than passing unnoticed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::Project;

const CLASSES: [&str; 6] = ["write", "fsync", "rename", "symlink", "chmod", "mkdir"];

/// Where each command stands before the faulted run.
struct Setup {
    p: Project,
    args: Vec<String>,
    /// Files the user gave, with their contents: they must survive.
    given: Option<(PathBuf, BTreeMap<PathBuf, Vec<u8>>)>,
}

fn files_of(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().to_path_buf(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn setup(command: &str) -> Setup {
    let p = Project::new();
    let out = p.training_output("out");
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match command {
        "register" | "register --move" => {
            let given = Some((out.clone(), files_of(&out)));
            let mut a = args(&["register", "out", "--no-progress"]);
            if command.ends_with("--move") {
                a.push("--move".into());
            }
            Setup { p, args: a, given }
        }
        "register --all" => {
            let legacy = p.path("legacy");
            crate::support::legacy_versions(&legacy, 3, None);
            let given = Some((legacy.clone(), files_of(&legacy)));
            Setup {
                p,
                args: args(&["register", "--all", "legacy", "--no-progress"]),
                given,
            }
        }
        "refresh" => {
            p.write(
                "artifactctl.toml",
                "[store]\ndir = \"artifacts\"\n\n[[refresh.steps]]\nname = \"data\"\ngroup = \"datasets\"\nrun = \"echo rows > $ARTIFACTCTL_STEP_DIR/data.csv\"\n\n[[refresh.steps]]\nname = \"model\"\nneeds = [\"data\"]\nrun = \"cat $ARTIFACTCTL_NEED_DATA_DIR/data.csv > $ARTIFACTCTL_STEP_DIR/model.pkl\"\n",
            );
            Setup {
                p,
                args: args(&["refresh", "--no-progress"]),
                given: None,
            }
        }
        "promote validated" => {
            let raw = p.register(&out, &[]);
            Setup {
                p,
                args: args(&[
                    "promote",
                    &raw,
                    "--to",
                    "validated",
                    "--checkpoint",
                    "epoch_70",
                ]),
                given: None,
            }
        }
        "promote production" => {
            let raw = p.register(&out, &[]);
            let validated = p.promote(&raw, &["--to", "validated", "--checkpoint", "epoch_70"]);
            Setup {
                p,
                args: args(&[
                    "promote",
                    &validated,
                    "--to",
                    "production",
                    "--version",
                    "1.0.0",
                    "--approve",
                ]),
                given: None,
            }
        }
        "pin" => {
            let raw = p.register(&out, &[]);
            let validated = p.promote(&raw, &["--to", "validated", "--checkpoint", "epoch_70"]);
            Setup {
                p,
                args: args(&["pin", &validated]),
                given: None,
            }
        }
        "delete" => {
            p.register(&out, &["--created-at", "2026-01-01T00:00:00Z"]);
            let newer = p.register(&out, &["--created-at", "2026-01-02T00:00:00Z"]);
            Setup {
                p,
                args: args(&["delete", &newer, "--yes"]),
                given: None,
            }
        }
        "cleanup" => {
            for day in 1..=4 {
                p.register(
                    &out,
                    &["--created-at", &format!("2026-01-0{day}T00:00:00Z")],
                );
            }
            Setup {
                p,
                args: args(&["cleanup", "--keep", "1", "--yes", "--no-progress"]),
                given: None,
            }
        }
        other => unreachable!("{other}"),
    }
}

/// Run the faulted command; whether the fault fired.
fn run_with(s: &Setup, spec: &str) -> bool {
    let out =
        s.p.cmd()
            .args(&s.args)
            .env("ARTIFACTCTL_FAULT", spec)
            .output()
            .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "{:?} {spec}: {stderr}",
        s.args
    );
    let point = spec.split(['@', ':']).next().unwrap();
    let fired = stderr.contains(&format!("artifactctl: fault injected at {point}"));
    if !fired {
        assert!(
            out.status.success(),
            "{:?} {spec} failed without the fault: {stderr}",
            s.args
        );
    }
    fired
}

fn check_after(s: &Setup, spec: &str) {
    let repair =
        s.p.cmd()
            .args(["verify", "--all", "--repair"])
            .output()
            .unwrap();
    let verify = s.p.cmd().args(["verify", "--all"]).output().unwrap();
    assert!(
        verify.status.success(),
        "{:?} with {spec}: the store does not verify clean after --repair:\n{}{}\n(repair said: {})",
        s.args,
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr),
        String::from_utf8_lossy(&repair.stderr),
    );
    if let Some((dir, given)) = &s.given {
        // Given back (a move), still there (a copy), or published whole.
        let back = dir.exists() && files_of(dir) == *given;
        let published = s.p.list_json(&[])["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| {
                let run = s.p.store().join("raw").join(r["id"].as_str().unwrap());
                given
                    .iter()
                    .all(|(rel, bytes)| std::fs::read(run.join(rel)).ok().as_ref() == Some(bytes))
            });
        assert!(
            back || published,
            "{:?} with {spec}: the user's folder is lost",
            s.args
        );
    }
}

/// How many occurrences of each class each command reaches (at least one
/// for every pair listed): a class a command stops using shows up here.
fn sweep(command: &str, actions: &[&str]) -> BTreeMap<&'static str, u32> {
    let mut reached = BTreeMap::new();
    for class in CLASSES {
        for action in actions {
            let mut n = 1;
            loop {
                let spec = format!("{class}@{n}:{action}");
                let s = setup(command);
                if !run_with(&s, &spec) {
                    break;
                }
                check_after(&s, &spec);
                n += 1;
                assert!(n < 60, "{command}: {class} fired more than 60 times");
            }
            reached.insert(class, n - 1);
        }
    }
    reached
}

fn assert_reached(command: &str, reached: &BTreeMap<&str, u32>, used: &[&str]) {
    for class in used {
        assert!(
            reached[class] > 0,
            "{command} no longer reaches a {class}: {reached:?}"
        );
    }
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn register_survives_a_fault_at_every_syscall() {
    let reached = sweep("register", &["kill", "eio"]);
    assert_reached(
        "register",
        &reached,
        &["write", "fsync", "rename", "symlink", "mkdir"],
    );
    let reached = sweep("register --move", &["kill", "eio"]);
    assert_reached(
        "register --move",
        &reached,
        &["write", "fsync", "rename", "symlink", "mkdir"],
    );
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn register_all_survives_a_fault_at_every_syscall() {
    // The batched import: one syncfs, one lock, a rename per version, one
    // journal append. Each fault must leave whole versions or none, and the
    // legacy store as it was.
    let reached = sweep("register --all", &["kill", "eio"]);
    assert_reached(
        "register --all",
        &reached,
        &["write", "fsync", "rename", "symlink", "mkdir"],
    );
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn refresh_survives_a_fault_at_every_syscall() {
    let reached = sweep("refresh", &["kill", "eio"]);
    assert_reached(
        "refresh",
        &reached,
        &["write", "fsync", "rename", "symlink", "mkdir"],
    );
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn promote_survives_a_fault_at_every_syscall() {
    for command in ["promote validated", "promote production"] {
        let reached = sweep(command, &["kill", "eio"]);
        assert_reached(
            command,
            &reached,
            &["write", "fsync", "rename", "symlink", "chmod", "mkdir"],
        );
    }
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn pin_delete_and_cleanup_survive_a_fault_at_every_syscall() {
    let reached = sweep("pin", &["kill", "eio"]);
    assert_reached(
        "pin",
        &reached,
        &["write", "fsync", "rename", "chmod", "mkdir"],
    );
    let reached = sweep("delete", &["kill", "eio"]);
    assert_reached(
        "delete",
        &reached,
        &["write", "fsync", "rename", "symlink", "mkdir"],
    );
    let reached = sweep("cleanup", &["kill", "eio"]);
    assert_reached("cleanup", &reached, &["write", "fsync", "rename", "mkdir"]);
}
