use std::os::unix::fs::symlink;

use crate::support::{with_fault, Project};
use predicates::prelude::*;
use serde_json::Value;

fn metadata(p: &Project, rel: &str) -> Value {
    let text =
        std::fs::read_to_string(p.store().join("raw").join(rel).join("metadata.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn register_copies_hashes_and_moves_latest() {
    let p = Project::new();
    let out = p.training_output("out");
    p.write("config.json", r#"{"lr": 0.01, "layers": [64, 64]}"#);
    p.write(
        "metrics.json",
        r#"{"best_val_loss": 0.38, "coverage": 0.99}"#,
    );
    let reference = p.register(
        &out,
        &[
            "--id",
            "v5_5_20251124",
            "--config",
            "config.json",
            "--metrics",
            "metrics.json",
            "--param",
            "seq_length=30",
            "--param",
            "ticker=BTC",
            "--metric",
            "sharpe_ratio=1.5",
            "--tag",
            "nightly",
        ],
    );
    assert_eq!(reference, "v5_5_20251124");
    assert!(
        out.join("checkpoints/best.pt").exists(),
        "a copy leaves the source in place"
    );
    let meta = metadata(&p, "v5_5_20251124");
    assert_eq!(meta["schema_version"], 1);
    assert_eq!(meta["id"], "v5_5_20251124");
    assert_eq!(meta["stage"], "raw");
    assert_eq!(meta["status"], "complete");
    assert_eq!(meta["config"]["lr"], 0.01);
    assert_eq!(meta["params"]["seq_length"], 30);
    assert_eq!(meta["params"]["ticker"], "BTC");
    assert_eq!(meta["metrics"]["coverage"], 0.99);
    assert_eq!(meta["metrics"]["sharpe_ratio"], 1.5);
    assert_eq!(meta["tags"][0], "nightly");
    assert_eq!(meta["file_count"], 7);
    let best = meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "checkpoints/best.pt")
        .unwrap();
    assert_eq!(best["size"], 12);
    assert_eq!(
        best["blake3"],
        blake3::hash(b"best weights").to_hex().to_string()
    );
    assert_eq!(meta["producer"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(meta["lineage"]["source"].as_str().unwrap().contains("out"));
    let latest = std::fs::read_link(p.store().join("raw/latest")).unwrap();
    assert_eq!(latest.to_str(), Some("v5_5_20251124"));
}

#[test]
fn register_json_prints_ref_and_path() {
    let p = Project::new();
    let out = p.training_output("out");
    let printed = p
        .cmd()
        .args(["register", "out", "--json", "-n", "gru/BTCEUR"])
        .output()
        .unwrap();
    assert!(printed.status.success());
    let v: Value = serde_json::from_slice(&printed.stdout).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert!(v["ref"].as_str().unwrap().starts_with("gru/BTCEUR/"));
    assert!(std::path::Path::new(v["path"].as_str().unwrap())
        .join("config.yaml")
        .is_file());
    drop(out);
}

#[test]
fn move_renames_the_folder_in() {
    let p = Project::new();
    let out = p.training_output("out");
    let reference = p.register(&out, &["--move"]);
    assert!(!out.exists(), "--move takes the folder");
    assert!(p
        .store()
        .join("raw")
        .join(&reference)
        .join("checkpoints/best.pt")
        .is_file());
}

#[test]
fn ids_in_the_same_second_get_suffixes_that_sort() {
    let p = Project::new();
    let out = p.training_output("out");
    let at = "2026-11-23T10:15:00Z";
    let ids: Vec<String> = (0..3)
        .map(|_| p.register(&out, &["--created-at", at]))
        .collect();
    assert_eq!(
        ids,
        [
            "20261123_101500",
            "20261123_101500_001",
            "20261123_101500_002"
        ]
    );
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids);
}

#[test]
fn an_older_run_does_not_take_over_latest() {
    let p = Project::new();
    let out = p.training_output("out");
    let newer = p.register(&out, &["--created-at", "2026-11-23T10:00:00Z"]);
    p.register(
        &out,
        &["--created-at", "2020-01-01T00:00:00Z", "--id", "backfill"],
    );
    let latest = std::fs::read_link(p.store().join("raw/latest")).unwrap();
    assert_eq!(latest.to_str(), Some(newer.as_str()));
}

#[test]
fn an_existing_id_is_never_overwritten() {
    let p = Project::new();
    let out = p.training_output("out");
    p.register(&out, &["--id", "fixed"]);
    p.cmd()
        .args(["register", "out", "--id", "fixed"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
}

#[test]
fn bad_ids_and_namespaces_are_usage_errors() {
    let p = Project::new();
    p.training_output("out");
    for args in [
        vec!["--id", "../escape"],
        vec!["--id", "a/b"],
        vec!["--id", "latest"],
        vec!["--id", ".hidden"],
        vec!["--namespace", "../../etc"],
        vec!["--namespace", "gru/../x"],
        vec!["--namespace", "raw"],
    ] {
        p.cmd()
            .arg("register")
            .arg("out")
            .args(&args)
            .assert()
            .code(2)
            .stderr(
                predicate::str::contains("letters, digits")
                    .or(predicate::str::contains("not allowed"))
                    .or(predicate::str::contains("reserved"))
                    .or(predicate::str::contains("stage")),
            );
    }
    assert!(!p.root().join("escape").exists());
    assert!(
        !p.store().join("raw").exists()
            || std::fs::read_dir(p.store().join("raw")).unwrap().count() == 0
    );
}

#[test]
fn links_out_of_the_folder_are_refused_and_nothing_is_published() {
    let p = Project::new();
    let out = p.training_output("out");
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"x").unwrap();
    symlink(outside.path().join("secret"), out.join("leak")).unwrap();
    p.cmd()
        .args(["register", "out"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("outside the folder"));
    let list = p.list_json(&[]);
    assert_eq!(list["runs"].as_array().unwrap().len(), 0);
    let staging = p.store().join(".artifactctl/staging");
    assert!(
        !staging.exists() || std::fs::read_dir(staging).unwrap().count() == 0,
        "staging cleaned up"
    );
}

#[test]
fn internal_links_are_kept_as_links() {
    let p = Project::new();
    let out = p.training_output("out");
    std::fs::remove_file(out.join("checkpoints/latest.pt")).unwrap();
    symlink("epoch_70.pt", out.join("checkpoints/latest.pt")).unwrap();
    let reference = p.register(&out, &[]);
    let link = p
        .store()
        .join("raw")
        .join(reference)
        .join("checkpoints/latest.pt");
    assert_eq!(
        std::fs::read_link(link).unwrap().to_str(),
        Some("epoch_70.pt")
    );
}

#[test]
fn a_seed_002_folder_keeps_its_feature_metadata() {
    let p = Project::new();
    let out = p.path("gru_out");
    crate::support::legacy_models(&p.path("legacy"), 1, false);
    std::fs::rename(p.path("legacy/gru/BTCEUR/20240815_140000"), &out).unwrap();
    let reference = p.register(&out, &["-n", "gru/BTCEUR"]);
    let meta = metadata(&p, &reference);
    assert_eq!(meta["features"]["feature_count"], 114);
    assert_eq!(
        meta["features"]["selected_features"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(meta["source_metadata"]["symbol"], "BTCEUR");
    assert_eq!(meta["config"]["hidden_size"], 64);
}

#[test]
fn registering_the_store_into_itself_is_refused() {
    let p = Project::new();
    let out = p.training_output("out");
    p.register(&out, &[]);
    p.cmd()
        .args(["register", "artifacts/raw"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("overlaps the store"));
    p.cmd().args(["register", "missing"]).assert().code(2);
}

#[test]
fn eight_concurrent_registers_make_eight_complete_runs() {
    let p = Project::new();
    p.training_output("out");
    let bin = assert_cmd::cargo::cargo_bin("artifactctl");
    let children: Vec<_> = (0..8)
        .map(|_| {
            std::process::Command::new(&bin)
                .args(["register", "out", "--created-at", "2026-11-23T10:15:00Z"])
                .current_dir(p.root())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ids: Vec<String> = children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8(o.stdout).unwrap().trim().to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8);
    let list = p.list_json(&[]);
    let runs = list["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 8);
    for run in runs {
        assert_eq!(run["status"], "complete");
        assert_eq!(run["file_count"], 7);
        assert!(run["problems"].as_array().unwrap().is_empty());
    }
    assert_eq!(runs.iter().filter(|r| r["latest"] == true).count(), 1);
    let journal = std::fs::read_to_string(p.store().join(".artifactctl/journal.jsonl")).unwrap();
    assert_eq!(journal.lines().count(), 8);
}

#[test]
fn git_commit_is_recorded_when_the_root_is_a_checkout() {
    let p = Project::new();
    let sha = "0123456789abcdef0123456789abcdef01234567";
    p.write(".git/HEAD", "ref: refs/heads/main\n");
    p.write(".git/refs/heads/main", format!("{sha}\n"));
    let out = p.training_output("out");
    let reference = p.register(&out, &[]);
    assert_eq!(metadata(&p, &reference)["producer"]["git_commit"], sha);
}

/// Every file under `dir` with its bytes, to show nothing the user gave was
/// lost or changed.
fn files_of(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// Folders left in the store's staging area.
fn staging_left(p: &Project) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(p.store().join(".artifactctl/staging"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The runs `list --json` shows are all whole: complete, no problems, the
/// seven files of `training_output`.
fn assert_visible_runs_whole(p: &Project) -> Vec<String> {
    let list = p.list_json(&[]);
    let mut refs = Vec::new();
    for run in list["runs"].as_array().unwrap() {
        assert_eq!(
            run["status"], "complete",
            "a visible run is always complete"
        );
        assert!(run["problems"].as_array().unwrap().is_empty(), "{run}");
        assert_eq!(run["file_count"], 7, "{run}");
        refs.push(run["ref"].as_str().unwrap().to_string());
    }
    refs
}

/// SIGKILL (via the debug fault hook) with the run assembled in staging,
/// just before the rename that publishes it: no run appears, the user's
/// folder is untouched, and the next register works and sweeps the
/// dead writer's staging.
#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn kill_9_before_the_publish_rename_leaves_no_run_and_the_next_write_sweeps() {
    let p = Project::new();
    let out = p.training_output("out");
    let given = files_of(&out);
    with_fault(
        p.cmd().args(["register", "out", "--no-progress"]),
        "before-publish-rename",
    );
    assert_eq!(files_of(&out), given, "the user's folder is as it was");
    assert!(
        assert_visible_runs_whole(&p).is_empty(),
        "an unpublished run is not visible"
    );
    assert!(
        !staging_left(&p).is_empty(),
        "the kill landed with the run still in staging"
    );

    let reference = p.register(&out, &[]);
    assert_eq!(
        assert_visible_runs_whole(&p),
        std::slice::from_ref(&reference)
    );
    assert!(
        staging_left(&p).is_empty(),
        "dead writers' staging is swept: {:?}",
        staging_left(&p)
    );
    p.cmd().args(["verify", "--all"]).assert().success();
    assert_eq!(files_of(&out), given, "the user's folder is as it was");
}

/// SIGKILL just after the publish rename, before `latest` moves and the
/// journal is written: the run that is there is whole, the next register
/// works and becomes latest, and verify finds nothing wrong.
#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn kill_9_after_the_publish_rename_leaves_a_whole_run_and_the_next_write_works() {
    let p = Project::new();
    let out = p.training_output("out");
    let given = files_of(&out);
    with_fault(
        p.cmd().args([
            "register",
            "out",
            "--no-progress",
            "--id",
            "20261123_101500",
        ]),
        "after-publish-rename",
    );
    assert_eq!(files_of(&out), given, "the user's folder is as it was");
    assert_eq!(
        assert_visible_runs_whole(&p),
        ["20261123_101500"],
        "the published run is there and whole"
    );
    assert_eq!(
        files_of(&p.store().join("raw/20261123_101500"))
            .into_iter()
            .filter(|(rel, _)| rel != std::path::Path::new("metadata.json"))
            .collect::<std::collections::BTreeMap<_, _>>(),
        given,
        "the published run holds exactly the user's files"
    );

    let second = p.register(&out, &["--id", "20261123_101600"]);
    assert_eq!(second, "20261123_101600");
    let mut refs = assert_visible_runs_whole(&p);
    refs.sort();
    assert_eq!(refs, ["20261123_101500", "20261123_101600"]);
    assert_eq!(
        std::fs::read_link(p.store().join("raw/latest")).unwrap(),
        std::path::Path::new("20261123_101600")
    );
    assert!(staging_left(&p).is_empty(), "{:?}", staging_left(&p));
    p.cmd().args(["verify", "--all"]).assert().success();
    assert_eq!(files_of(&out), given, "the user's folder is as it was");
}

#[test]
fn a_moved_folder_is_given_back_when_publishing_fails() {
    let p = Project::new();
    let first = p.training_output("first");
    p.register(&first, &["--id", "taken"]);
    let out = p.training_output("out");
    p.cmd()
        .args(["register", "out", "--move", "--id", "taken"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
    assert!(
        out.join("checkpoints/best.pt").is_file(),
        "the folder is back where it was"
    );
    assert_eq!(
        std::fs::read(out.join("checkpoints/best.pt")).unwrap(),
        b"best weights"
    );
    let staging = p.store().join(".artifactctl/staging");
    assert!(std::fs::read_dir(&staging).map(|d| d.count()).unwrap_or(0) == 0);
}

/// `register --move` renames the user's folder into staging. Killed before
/// the publish rename, that folder must survive: the next writer's sweep
/// gives it back exactly as it was given (its origin was recorded before
/// the move, and artifactctl's metadata.json goes out again).
#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn kill_9_during_register_move_never_loses_the_users_folder() {
    let p = Project::new();
    let out = p.training_output("out");
    let given = files_of(&out);
    with_fault(
        p.cmd().args(["register", "out", "--move", "--no-progress"]),
        "before-publish-rename",
    );
    // The next write sweeps dead writers' staging.
    let other = p.training_output("other");
    p.register(&other, &[]);
    let back = out.exists().then(|| files_of(&out));
    let kept_in_store = p.list_json(&[])["runs"].as_array().unwrap().len() == 2;
    assert!(
        back.as_ref() == Some(&given) || kept_in_store,
        "the folder given to `register --move` is neither back in place nor a run"
    );
}

/// An I/O error injected while the run is assembled in staging (ENOSPC on a
/// write, EIO on an fsync or rename): register fails with exit 1 and says
/// nothing was registered, and that is true: no run, no staging left, the
/// user's folder as it was; the next register works.
#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn an_io_error_while_staging_registers_nothing_and_leaves_nothing() {
    for spec in ["write:enospc", "fsync:eio", "rename:eio"] {
        let p = Project::new();
        let out = p.training_output("out");
        let given = files_of(&out);
        let failed = with_fault(p.cmd().args(["register", "out"]), spec);
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert_eq!(failed.status.code(), Some(1), "{spec}: {stderr}");
        assert!(
            stderr.contains("nothing was registered"),
            "{spec}: {stderr}"
        );
        assert!(assert_visible_runs_whole(&p).is_empty(), "{spec}");
        assert!(
            staging_left(&p).is_empty(),
            "{spec}: {:?}",
            staging_left(&p)
        );
        assert_eq!(files_of(&out), given, "{spec}: the user's folder");
        let reference = p.register(&out, &[]);
        assert_eq!(assert_visible_runs_whole(&p), [reference]);
        p.cmd().args(["verify", "--all"]).assert().success();
    }
}

/// When moving `latest` fails after the run was published (EIO on the
/// symlink), register exits 1 and says what is true: the run is published,
/// moving latest failed, and `verify --repair` completes it.
#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn a_failure_to_move_latest_is_reported_truthfully() {
    let p = Project::new();
    p.training_output("out");
    let failed = with_fault(p.cmd().args(["register", "out"]), "symlink:eio");
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    let runs = assert_visible_runs_whole(&p);
    assert!(
        runs.is_empty() || !stderr.contains("nothing was registered"),
        "stderr says nothing was registered, but {runs:?} is listed: {stderr}"
    );
    assert_eq!(runs.len(), 1, "{stderr}");
    assert!(
        stderr.contains("published as") && stderr.contains("verify --repair"),
        "{stderr}"
    );
}

/// `ARTIFACTCTL_NOW` is honoured only by debug builds, as `cargo test` makes.
#[cfg(debug_assertions)]
#[test]
fn the_time_of_a_run_can_be_pinned_in_debug_builds() {
    let p = Project::new();
    let out = p.training_output("out");
    p.cmd()
        .env("ARTIFACTCTL_NOW", "2026-01-02T03:04:05.123456789Z")
        .arg("register")
        .arg(&out)
        .assert()
        .success()
        .stdout("20260102_030405\n");
    let meta = metadata(&p, "20260102_030405");
    assert_eq!(meta["created_at"], "2026-01-02T03:04:05.123456Z");

    p.cmd()
        .env("ARTIFACTCTL_NOW", "yesterday")
        .arg("list")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("bad ARTIFACTCTL_NOW 'yesterday'"));
}

/// Two names that are not UTF-8 and share a lossy form are two files in the
/// manifest, each with its exact bytes, and verify finds both unchanged.
#[test]
fn names_that_are_not_utf8_are_recorded_exactly() {
    use std::os::unix::ffi::OsStrExt;
    let p = Project::new();
    let out = p.path("out");
    std::fs::create_dir_all(&out).unwrap();
    for (name, body) in [(&b"\xff\xfe.bin"[..], "one"), (&b"\xff\xfd.bin"[..], "two")] {
        std::fs::write(out.join(std::ffi::OsStr::from_bytes(name)), body).unwrap();
    }
    std::fs::write(out.join("model.pkl"), "m").unwrap();
    let id = p.register(&out, &[]);
    let meta = metadata(&p, &id);
    let bytes: Vec<&str> = meta["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["path_bytes"].as_str())
        .collect();
    assert_eq!(bytes, ["fffd2e62696e", "fffe2e62696e"], "{meta:#}");
    p.cmd().args(["verify", "--all"]).assert().success();
    // A change to one of them is found, under its own name.
    let run = p.store().join("raw").join(&id);
    let path = run.join(std::ffi::OsStr::from_bytes(b"\xff\xfd.bin"));
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(&path, "TWO").unwrap();
    let out = p
        .cmd()
        .args(["verify", "--all", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["problems"].as_array().unwrap().len(), 1, "{doc:#}");
}

/// Issue 13, item 3: an empty folder is refused (it would become latest and
/// be kept over real runs by `cleanup --keep 1`), unless --allow-empty.
#[test]
fn an_empty_folder_is_refused_unless_allowed() {
    let p = Project::new();
    let out = p.training_output("out");
    let real = p.register(&out, &[]);
    std::fs::create_dir_all(p.path("empty/sub")).unwrap();
    p.cmd()
        .args(["register", "empty"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("holds no files"))
        .stderr(predicate::str::contains("--allow-empty"));
    let list = p.list_json(&[]);
    assert_eq!(list["runs"].as_array().unwrap().len(), 1);
    assert_eq!(list["runs"][0]["ref"], real.as_str());
    assert_eq!(list["runs"][0]["latest"], true);
    let empty = p.register(&p.path("empty"), &["--allow-empty", "--id", "empty_run"]);
    assert_eq!(empty, "empty_run");
}

/// Issue 13: "1 file", not "1 files".
#[test]
fn one_file_is_one_file() {
    let p = Project::new();
    p.write("single/model.pt", b"weights");
    assert_output_snapshot!(
        Some(p.root()),
        "register_one_file",
        crate::support::streams_of(p.cmd().args(["register", "single", "--id", "r1"]))
    );
}
