//! The run index (issue 15): it equals a full scan after every command,
//! out-of-band changes are seen at once, a corrupted index is ignored and
//! rebuilt, a writer killed while updating it leaves nothing wrong, and
//! readers stay right while eight writers publish.
//!
//! Every command of the suite already runs with `ARTIFACTCTL_INDEX=check`
//! (see support.rs), which compares the index with a full scan on each read
//! and panics on a difference; here `on` and `off` are compared explicitly.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{legacy_versions, with_fault, Project};

/// `list --json --stage all` read through the index, or by a full scan.
fn list(p: &Project, index: &str) -> Value {
    let out = p
        .cmd()
        .args(["list", "--json", "--stage", "all"])
        .env("ARTIFACTCTL_INDEX", index)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn assert_index_equals_scan(p: &Project, after: &str) {
    let (on, off) = (list(p, "on"), list(p, "off"));
    assert_eq!(on, off, "after {after}: the index differs from a full scan");
}

fn index_files(p: &Project) -> Vec<PathBuf> {
    let dir = p.store().join(".artifactctl/index");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// An index file: its header line and its entries.
fn read_index(file: &Path) -> (Value, Vec<Value>) {
    let text = std::fs::read_to_string(file).unwrap();
    let mut lines = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap());
    let header = lines.next().unwrap();
    (header, lines.collect())
}

fn write_index(file: &Path, header: &Value, entries: &[Value]) {
    let mut text = format!("{header}\n");
    for e in entries {
        text.push_str(&format!("{e}\n"));
    }
    std::fs::write(file, text).unwrap();
}

/// The one index file holding `id`: its path, header and entries.
fn index_holding(p: &Project, id: &str) -> (PathBuf, Value, Vec<Value>) {
    index_files(p)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "jsonl"))
        .map(|f| {
            let (header, entries) = read_index(&f);
            (f, header, entries)
        })
        .find(|(_, _, entries)| entries.iter().any(|e| e["id"] == id))
        .unwrap_or_else(|| panic!("no index file holds {id}"))
}

fn run<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
}

fn id_of(reference: &str) -> String {
    reference.rsplit('/').next().unwrap().to_string()
}

fn run_dir(p: &Project, qualified: &str) -> PathBuf {
    p.store().join(qualified)
}

#[test]
fn the_index_equals_a_full_scan_after_every_writing_command() {
    let p = Project::new();
    let out = p.training_output("out");
    let a = p.register(
        &out,
        &[
            "--created-at",
            "2026-01-01T00:00:00Z",
            "--metric",
            "sharpe_ratio=0.7",
        ],
    );
    assert_index_equals_scan(&p, "register");
    assert!(!index_files(&p).is_empty(), "register wrote no index");
    for day in 2..=4 {
        p.register(
            &out,
            &[
                "--created-at",
                &format!("2026-01-0{day}T00:00:00Z"),
                "--namespace",
                "gru/BTCEUR",
            ],
        );
        assert_index_equals_scan(&p, "register --namespace");
    }
    let validated = p.promote(&a, &["--to", "validated", "--checkpoint", "epoch_70"]);
    assert_index_equals_scan(&p, "promote");
    for args in [
        vec!["pin", &validated],
        vec!["unpin", &validated],
        vec!["pin", &a],
    ] {
        p.cmd().args(&args).assert().success();
        assert_index_equals_scan(&p, &args.join(" "));
    }
    p.cmd()
        .args([
            "cleanup",
            "--keep",
            "1",
            "gru/BTCEUR",
            "--yes",
            "--no-progress",
        ])
        .assert()
        .success();
    assert_index_equals_scan(&p, "cleanup");
    let gru = p.list_json(&["gru/BTCEUR"]);
    assert_eq!(gru["runs"].as_array().unwrap().len(), 1);
    p.cmd()
        .args(["verify", "--all", "--repair"])
        .assert()
        .success();
    assert_index_equals_scan(&p, "verify --repair");
    let b = p.register(&out, &["--created-at", "2026-02-01T00:00:00Z"]);
    p.cmd().args(["delete", &b, "--yes"]).assert().success();
    assert_index_equals_scan(&p, "delete");
}

#[test]
fn readers_use_the_index_while_its_stamps_hold() {
    let p = Project::new();
    let out = p.training_output("out");
    let a = p.register(&out, &["--metric", "sharpe_ratio=0.7"]);
    let id = id_of(&a);
    // Change what the index says, not what it was read from: a reader that
    // shows the change read the index.
    let (file, header, mut entries) = index_holding(&p, &id);
    for entry in &mut entries {
        if entry["id"] == id.as_str() {
            entry["metrics"]["sharpe_ratio"] = 9.5.into();
        }
    }
    write_index(&file, &header, &entries);
    let on = list(&p, "on");
    assert_eq!(run(&on, &id).unwrap()["metrics"]["sharpe_ratio"], 9.5);
    let off = list(&p, "off");
    assert_eq!(run(&off, &id).unwrap()["metrics"]["sharpe_ratio"], 0.7);
}

#[test]
fn out_of_band_changes_are_seen_on_the_next_read() {
    let p = Project::new();
    let out = p.training_output("out");
    let a = p.register(
        &out,
        &[
            "--created-at",
            "2026-01-01T00:00:00Z",
            "--metric",
            "sharpe_ratio=0.7",
        ],
    );
    let b = p.register(&out, &["--created-at", "2026-01-02T00:00:00Z"]);
    assert!(!index_files(&p).is_empty());

    // Seed 003's old training code writes timestamped folders beside ours.
    let legacy: Vec<String> = ["20250724_150800", "20250724_150801"]
        .iter()
        .map(|id| {
            let dir = p.store().join("raw").join(id);
            crate::support::write(&dir.join("lstm_model.h5"), b"weights");
            crate::support::write(
                &dir.join("training_metadata.json"),
                format!(r#"{{"timestamp": "{id}", "models": ["lstm"], "metrics": {{"sharpe_ratio": 1.5}}}}"#),
            );
            id.to_string()
        })
        .collect();
    let listed = list(&p, "on");
    for id in &legacy {
        assert!(
            run(&listed, id).is_some(),
            "{id} added by a legacy tool is not listed"
        );
    }
    assert_index_equals_scan(&p, "a legacy writer");

    // A hand edit of metadata.json, in place (same inode).
    let meta_path = run_dir(&p, &format!("raw/{}", id_of(&a))).join("metadata.json");
    let text = std::fs::read_to_string(&meta_path).unwrap();
    let edited = text.replace("0.7", "0.8");
    assert_ne!(text, edited);
    make_writable(&meta_path);
    std::fs::write(&meta_path, edited).unwrap();
    let listed = list(&p, "on");
    assert_eq!(
        run(&listed, &id_of(&a)).unwrap()["metrics"]["sharpe_ratio"],
        0.8
    );
    assert_index_equals_scan(&p, "a hand edit");

    // `rm -rf` of a run.
    let b_dir = run_dir(&p, &format!("raw/{}", id_of(&b)));
    std::process::Command::new("rm")
        .arg("-rf")
        .arg(&b_dir)
        .status()
        .unwrap();
    let listed = list(&p, "on");
    assert!(
        run(&listed, &id_of(&b)).is_none(),
        "a removed run is still listed"
    );
    assert_index_equals_scan(&p, "rm -rf");
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn reading_never_writes_the_index() {
    let p = Project::new();
    let store = p.store().join("raw");
    legacy_versions(&store, 3, None);
    list(&p, "on");
    p.cmd().args(["show", "latest"]).assert().success();
    p.cmd()
        .args(["cleanup", "--keep", "1", "--dry-run"])
        .assert()
        .success();
    assert!(
        !p.store().join(".artifactctl").exists(),
        "a reader created .artifactctl"
    );
}

#[test]
fn a_corrupted_or_linked_index_is_ignored_and_rebuilt_by_the_next_writer() {
    let p = Project::new();
    let out = p.training_output("out");
    let a = p.register(&out, &["--metric", "sharpe_ratio=0.7"]);
    let (file, header, entries) = index_holding(&p, &id_of(&a));
    let whole = std::fs::read(&file).unwrap();
    let torn = whole[..whole.len() - 10].to_vec();
    let half = whole[..whole.len() / 2].to_vec();
    for garbage in [&torn[..], &half[..], b"", b"[]", b"\xff\xfe"] {
        std::fs::write(&file, garbage).unwrap();
        assert_index_equals_scan(&p, "corrupting the index");
    }
    // A future format is ignored too, and so is a file of another
    // namespace: their (altered) entries must not show.
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|mut e| {
            e["metrics"]["sharpe_ratio"] = 9.5.into();
            e
        })
        .collect();
    write_index(&file, &header, &entries);
    assert_ne!(
        list(&p, "on"),
        list(&p, "off"),
        "the altered index is not read"
    );
    let mut future = header.clone();
    future["version"] = 99.into();
    write_index(&file, &future, &entries);
    assert_index_equals_scan(&p, "an index of another version");
    let mut other = header.clone();
    other["namespace"] = "elsewhere".into();
    write_index(&file, &other, &entries);
    assert_index_equals_scan(&p, "an index of another namespace");
    p.register(&out, &[]);
    let (_, rebuilt, _) = index_holding(&p, &id_of(&a));
    assert_eq!(rebuilt["version"], 2);
    assert_index_equals_scan(&p, "the rebuild");

    // The index folder replaced by a link elsewhere: never followed.
    let index_dir = p.store().join(".artifactctl/index");
    let elsewhere = p.path("elsewhere");
    std::fs::rename(&index_dir, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &index_dir).unwrap();
    assert_index_equals_scan(&p, "a linked index folder");
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn a_kill_9_while_the_index_is_updated_leaves_readers_right() {
    // Before the index write, and at each write, fsync and rename of it
    // (the publish's own come first: the index is rewritten last, so the
    // highest occurrences are the index's).
    let mut specs = vec!["index-write".to_string()];
    for class in ["write", "fsync", "rename"] {
        let p = Project::new();
        let out = p.training_output("out");
        p.register(&out, &[]);
        let mut n: u32 = 1;
        loop {
            let o = p
                .cmd()
                .args(["register", "out", "--no-progress"])
                .env("ARTIFACTCTL_FAULT", format!("{class}@{n}:kill"))
                .output()
                .unwrap();
            if !String::from_utf8_lossy(&o.stderr).contains("fault injected") {
                break;
            }
            n += 1;
        }
        // The last occurrences belong to the index write.
        for k in n.saturating_sub(2).max(1)..n {
            specs.push(format!("{class}@{k}"));
        }
    }
    for spec in specs {
        let p = Project::new();
        let out = p.training_output("out");
        p.register(&out, &["--created-at", "2026-01-01T00:00:00Z"]);
        let mut cmd = p.cmd();
        cmd.args(["register", "out", "--no-progress"]);
        with_fault(&mut cmd, &spec);
        assert_index_equals_scan(&p, &format!("a kill at {spec}"));
        // The next writer sweeps what the dead one left and the index holds
        // every run again.
        let c = p.register(&out, &[]);
        assert_index_equals_scan(&p, &format!("the writer after a kill at {spec}"));
        index_holding(&p, &id_of(&c));
        let leftovers: Vec<_> = index_files(&p)
            .into_iter()
            .filter(|f| f.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{spec}: temporary files left: {leftovers:?}"
        );
    }
}

#[test]
fn eight_writers_and_readers_in_a_loop_agree_with_a_full_scan() {
    let p = Project::new();
    p.training_output("out");
    p.register(&p.path("out"), &["--created-at", "2026-01-01T00:00:00Z"]);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let ns = format!("w{}", w % 3);
            let script = format!(
                "for i in 1 2 3; do \"$0\" register out --namespace {ns} --no-progress >/dev/null || exit 1; done"
            );
            let bin = crate::support::cargo_bin();
            std::process::Command::new("sh")
                .args(["-c", &script])
                .arg(bin)
                .current_dir(p.root())
                .env("ARTIFACTCTL_INDEX", "on")
                .env_remove("ARTIFACTCTL_FAULT")
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut reads = 0;
    let mut done = false;
    let mut writers = writers;
    while !done {
        // Readers never block on writers and never see a half run.
        let listed = list(&p, "on");
        for r in listed["runs"].as_array().unwrap() {
            assert_eq!(r["status"], "complete", "{r}");
            assert!(r["problems"].as_array().unwrap().is_empty(), "{r}");
            assert_eq!(r["file_count"], 7, "{r}");
        }
        reads += 1;
        done = writers.iter_mut().all(|w| w.try_wait().unwrap().is_some());
    }
    for w in writers {
        let o = w.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(reads > 0);
    let listed = list(&p, "on");
    assert_eq!(listed["runs"].as_array().unwrap().len(), 1 + 8 * 3);
    assert_index_equals_scan(&p, "eight writers");
    // Every namespace's index file holds all its runs: the last writer of
    // each left it whole.
    for r in listed["runs"].as_array().unwrap() {
        index_holding(&p, r["id"].as_str().unwrap());
    }
}

#[test]
fn register_all_leaves_an_index_holding_every_imported_run() {
    let p = Project::new();
    let legacy = p.path("backend/models");
    let ids = legacy_versions(&legacy, 12, None);
    p.json(&["register", "--all", legacy.to_str().unwrap()]);
    let (_, _, entries) = index_holding(&p, &ids[0]);
    let indexed: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(indexed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert_index_equals_scan(&p, "register --all");
}

/// `list --json` with per-run checks switched off, as a listing of more
/// than `RUN_CHECKS_UP_TO` runs reads the index.
fn list_by_folders(p: &Project) -> Value {
    let out = p
        .cmd()
        .args(["list", "--json", "--stage", "all"])
        .env("ARTIFACTCTL_INDEX_RUN_CHECKS", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "list failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "ARTIFACTCTL_INDEX_RUN_CHECKS exists only in debug builds"
)]
fn a_large_listing_sees_folder_changes_and_leaves_edits_inside_runs_to_show_and_writers() {
    let p = Project::new();
    let out = p.training_output("out");
    let a = p.register(
        &out,
        &[
            "--created-at",
            "2026-01-01T00:00:00Z",
            "--metric",
            "sharpe_ratio=0.7",
        ],
    );
    let b = p.register(&out, &["--created-at", "2026-01-02T00:00:00Z"]);
    p.register(
        &out,
        &["--created-at", "2026-01-03T00:00:00Z", "--namespace", "gru"],
    );
    // The writer waited until the folder's stamp could be trusted.
    let (_, header, _) = index_holding(&p, &id_of(&a));
    assert_eq!(header["trusted"], true, "{header}");
    assert_eq!(list_by_folders(&p), list(&p, "off"));

    // Added by a legacy tool, removed with rm -rf, replaced by another
    // folder of the same name: each changes the namespace folder.
    let legacy = p.store().join("raw/20250724_150800");
    crate::support::write(&legacy.join("lstm_model.h5"), b"weights");
    crate::support::write(
        &legacy.join("training_metadata.json"),
        r#"{"timestamp": "20250724_150800", "models": ["lstm"]}"#,
    );
    let b_dir = run_dir(&p, &format!("raw/{}", id_of(&b)));
    std::process::Command::new("rm")
        .arg("-rf")
        .arg(&b_dir)
        .status()
        .unwrap();
    let a_dir = run_dir(&p, &format!("raw/{}", id_of(&a)));
    let moved = p.path("a-moved");
    std::fs::rename(&a_dir, &moved).unwrap();
    crate::support::write(&a_dir.join("model.pt"), b"another run");
    let listed = list_by_folders(&p);
    assert!(run(&listed, "20250724_150800").is_some());
    assert!(run(&listed, &id_of(&b)).is_none());
    assert_eq!(run(&listed, &id_of(&a)).unwrap()["layout"], "plain");
    assert_eq!(listed, list(&p, "off"));

    // An edit in place inside a run folder changes no folder: a large
    // listing keeps the indexed summary, `show` reads the file itself, and
    // the next writer in the namespace reads it again.
    let c = p.register(
        &out,
        &[
            "--created-at",
            "2026-01-04T00:00:00Z",
            "--metric",
            "sharpe_ratio=0.7",
        ],
    );
    let meta_path = run_dir(&p, &format!("raw/{}", id_of(&c))).join("metadata.json");
    let text = std::fs::read_to_string(&meta_path).unwrap();
    make_writable(&meta_path);
    std::fs::write(&meta_path, text.replace("0.7", "0.8")).unwrap();
    let sharpe = |v: &Value| run(v, &id_of(&c)).unwrap()["metrics"]["sharpe_ratio"].clone();
    assert_eq!(sharpe(&list_by_folders(&p)), 0.7);
    assert_eq!(
        sharpe(&list(&p, "on")),
        0.8,
        "a small listing checks each run"
    );
    let shown = p.json(&["show", &c]);
    assert_eq!(shown["run"]["metrics"]["sharpe_ratio"], 0.8);
    p.register(&out, &["--created-at", "2026-01-05T00:00:00Z"]);
    assert_eq!(sharpe(&list_by_folders(&p)), 0.8);

    // A file dropped into a namespace folder makes it a run (a folder with
    // files of its own): its own stamp changes, not its parent's.
    let (_, header, _) = index_holding(&p, &id_of(&c));
    assert_eq!(header["trusted"], true, "{header}");
    assert_eq!(header["namespaces"][0], "gru", "{header}");
    crate::support::write(&p.store().join("raw/gru/notes.txt"), b"a run now");
    let listed = list_by_folders(&p);
    assert!(run(&listed, "gru").is_some(), "raw/gru is a run now");
    assert_eq!(listed, list(&p, "off"));
}

#[test]
fn hand_written_native_metadata_reads_the_same_through_the_index() {
    let p = Project::new();
    crate::support::NativeRun {
        extra: serde_json::json!({
            "metrics": {"sharpe_ratio": 1.5, "nested": {"x": 2.5}, "ok": true, "note": "fine"},
            "params": {"a": {"b": [1, "é\"x", null]}},
            "tags": ["ü", "t"],
        }),
        ..Default::default()
    }
    .write(&p.store());
    // A writer indexes the namespace, hand-written run included.
    let out = p.training_output("out");
    p.register(&out, &[]);
    index_holding(&p, "20260101_000000");
    assert_index_equals_scan(&p, "a hand-written native run");
    let listed = list(&p, "on");
    let metrics = &run(&listed, "20260101_000000").unwrap()["metrics"];
    assert_eq!(metrics, &serde_json::json!({"sharpe_ratio": 1.5}));
}
