//! kill -9 (and EIO) at every fault point of `promote --remote`,
//! `rollback --remote` and `cleanup --remote`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::*;
use crate::remote::bucket;

/// One command under test: how to bring a fresh remote to where it starts,
/// the command, a check of its own after each kill, and one after it was
/// run again to the end.
struct Case<'a> {
    name: &'a str,
    setup: &'a dyn Fn(&Bench),
    args: &'a [&'a str],
    now: &'a str,
    check: &'a dyn Fn(&Bench, &str),
    settled: &'a dyn Fn(&Bench, &str),
}

/// The syscall classes a `file://` remote's writes reach inside `fsx`
/// (its folders are made by `create_dir_all`, no fault point).
const FILE_CLASSES: [&str; 3] = ["write", "fsync", "rename"];

/// Stop `case` at each occurrence of each point (`point` or
/// `point:action`, kill by default); how many each had.
fn sweep(bench: &Bench, case: &Case, points: &[&str]) -> BTreeMap<String, u32> {
    use std::os::unix::process::ExitStatusExt;
    let mut reached = BTreeMap::new();
    for entry in points {
        let (point, action) = entry.split_once(':').unwrap_or((entry, "kill"));
        let mut n = 1;
        loop {
            let side = bench.fresh();
            (case.setup)(bench);
            let spec = format!("{point}@{n}:{action}");
            let what = format!("{} with {spec}", case.name);
            let out = bench.run(case.args, case.now, Some(&spec));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!stderr.contains("panicked"), "{what}: {stderr}");
            if !stderr.contains(&format!("artifactctl: fault injected at {point}\n")) {
                assert!(out.status.success(), "{what} failed unfaulted: {stderr}");
                break;
            }
            if action == "kill" {
                assert_eq!(out.status.signal(), Some(9), "{what}: {stderr}");
            } else {
                // A failed request is an error (exit 1), not a crash.
                assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
                assert!(stderr.contains("error"), "{what}: {stderr}");
            }
            assert_consistent(&bench.p, &side, &what);
            (case.check)(bench, &what);
            bench.ok(case.args, case.now);
            let again = format!("{what}, run again");
            assert_consistent(&bench.p, &side, &again);
            (case.settled)(bench, &again);
            n += 1;
            // Each case here makes a handful of remote writes; a runaway
            // count means a loop that writes, not more coverage.
            assert!(n < 40, "{what}: {point} fired more than 40 times");
        }
        reached.insert(entry.to_string(), n - 1);
    }
    reached
}

fn points(s3: bool, named: &[&'static str]) -> Vec<&'static str> {
    // A request that fails (eio), or whose answer is lost after it was
    // done, must leave the same consistency as a kill.
    let mut all = vec![
        "remote-write",
        "remote-written",
        "remote-write:eio",
        "remote-written:eio",
    ];
    all.extend_from_slice(named);
    if !s3 {
        all.extend_from_slice(&FILE_CLASSES);
        all.extend_from_slice(&["write:eio", "fsync:eio", "rename:eio"]);
    }
    all
}

fn assert_reached(case: &str, reached: &BTreeMap<String, u32>, used: &[&str]) {
    for point in used {
        assert!(
            reached.get(*point).is_some_and(|n| *n > 0),
            "{case} no longer reaches {point}: {reached:?}"
        );
    }
}

const NOW: &str = "2026-11-23T12:00:00Z";
const LATER: &str = "2026-11-25T12:00:00Z";

fn moves_of_latest(s3: bool) {
    let bench = Bench::new(s3);
    bench.p.released("gru/BTCEUR", &["1.0.0", "1.1.0", "1.2.0"]);
    let pushed_then_back = |b: &Bench| {
        b.ok(&["push", "--all"], NOW);
        b.ok(
            &[
                "rollback",
                "gru/BTCEUR",
                "--remote",
                "origin",
                "--to",
                "1.0.0",
            ],
            NOW,
        );
    };
    let either = |from: &'static str, to: &'static str| {
        move |b: &Bench, what: &str| {
            let now = latest_release(&b.p);
            assert!(now == from || now == to, "{what}: latest is {now}");
        }
    };
    // Run again to the end: latest is `to`, and the move is in the remote
    // journal exactly once, even when the kill came between the swap and
    // its journal object.
    let settled = |action: &'static str, to: &'static str| {
        move |b: &Bench, what: &str| {
            assert_eq!(latest_release(&b.p), to, "{what}");
            let h =
                b.p.json(&["history", "--remote", "origin", "--action", action]);
            let moves: Vec<&Value> = h["entries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["to"] == to)
                .collect();
            assert_eq!(moves.len(), 1, "{what}: {h}");
        }
    };
    let promote = Case {
        name: "promote --remote",
        setup: &pushed_then_back,
        args: &[
            "promote",
            "production/gru/BTCEUR/1.2.0",
            "--remote",
            "origin",
            "--approve",
        ],
        now: NOW,
        check: &either("1.0.0", "1.2.0"),
        settled: &settled("promote", "1.2.0"),
    };
    let pushed = |b: &Bench| b.ok(&["push", "--all"], NOW);
    let rollback = Case {
        name: "rollback --remote",
        setup: &pushed,
        args: &[
            "rollback",
            "gru/BTCEUR",
            "--remote",
            "origin",
            "--to",
            "1.1.0",
        ],
        now: NOW,
        check: &either("1.2.0", "1.1.0"),
        settled: &settled("rollback", "1.1.0"),
    };
    for case in [promote, rollback] {
        // A move also passes a `rename` before its swap (one on S3; on a
        // file:// remote the renames of its writes follow).
        let named: &[&'static str] = if s3 {
            &["remote-swap", "rename"]
        } else {
            &["remote-swap"]
        };
        let reached = sweep(&bench, &case, &points(s3, named));
        // The swap of latest, then the journal object.
        assert_eq!(reached["remote-write"], 2, "{}: {reached:?}", case.name);
        assert_reached(case.name, &reached, &["remote-written", "remote-swap"]);
        assert_eq!(reached["remote-write:eio"], 2, "{}: {reached:?}", case.name);
        assert_eq!(
            reached["remote-written:eio"], 2,
            "{}: {reached:?}",
            case.name
        );
        if s3 {
            assert_eq!(reached["rename"], 1, "{}: {reached:?}", case.name);
        } else {
            assert_reached(case.name, &reached, &FILE_CLASSES);
        }
    }
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn promote_and_rollback_on_a_remote_killed_at_every_point_leave_both_sides_consistent() {
    moves_of_latest(true);
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn promote_and_rollback_on_a_file_remote_killed_at_every_point_leave_both_sides_consistent() {
    moves_of_latest(false);
}

/// Four raw runs, their files written by `files(dir, i)`.
fn four_runs_of(p: &Project, files: impl Fn(&str, usize)) {
    for (i, id) in [
        "20261101_000000",
        "20261102_000000",
        "20261103_000000",
        "20261104_000000",
    ]
    .iter()
    .enumerate()
    {
        let dir = format!("src-{id}");
        files(&dir, i);
        p.register(&p.path(&dir), &["--id", id]);
    }
}

/// Four raw runs, one file each.
fn four_runs(p: &Project) {
    four_runs_of(p, |dir, i| {
        p.write(&format!("{dir}/model.pt"), format!("model {i}"));
    });
}

/// Every run pushed (one catalog segment), then a cleanup keeping 3
/// removes the oldest and marks its content.
fn push_all_then_keep_three(b: &Bench) {
    b.ok(&["push", "--all"], NOW);
    b.ok(
        &["cleanup", "--remote", "origin", "--keep", "3", "--yes"],
        NOW,
    );
}

/// The three runs the first cleanup kept, and only their content (a blob
/// or a pack each): the first run's is gone.
fn three_runs_and_only_their_content(b: &Bench, what: &str) {
    let listed = b.p.json(&["list", "--remote", "origin"]);
    assert_eq!(listed["runs"].as_array().unwrap().len(), 3, "{what}");
    let out = b.run(&["cleanup", "--remote", "origin", "--json"], LATER, None);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (plan["blobs"].clone(), plan["referenced"].clone()),
        (3.into(), 3.into()),
        "{what}: {plan}"
    );
}

fn cleanups(s3: bool) {
    let bench = Bench::new(s3);
    four_runs(&bench.p);
    // Before the faulted cleanup: every run pushed (one catalog segment),
    // then a cleanup keeping 3 removes the oldest and marks its blob. The
    // faulted cleanup, a grace later, keeps 2: it rebuilds the index,
    // deletes a record, writes the marks, deletes the first run's blob and
    // the folded segment, and writes its journal object: every kind of
    // write a remote cleanup makes.
    let kept = |b: &Bench, what: &str| {
        // The two newest are never touched.
        let listed = b.p.json(&["list", "--remote", "origin"]);
        let refs: Vec<&str> = listed["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["ref"].as_str().unwrap())
            .collect();
        for id in ["20261103_000000", "20261104_000000"] {
            assert!(refs.contains(&id), "{what}: {id} is not listed: {listed}");
        }
    };
    let two_newest = |b: &Bench, what: &str| {
        let listed = b.p.json(&["list", "--remote", "origin"]);
        let mut refs: Vec<&str> = listed["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["ref"].as_str().unwrap())
            .collect();
        refs.sort();
        assert_eq!(refs, ["20261103_000000", "20261104_000000"], "{what}");
    };
    let retention = Case {
        name: "cleanup --remote --keep 2",
        setup: &push_all_then_keep_three,
        args: &["cleanup", "--remote", "origin", "--keep", "2", "--yes"],
        now: LATER,
        check: &kept,
        settled: &two_newest,
    };
    let reached = sweep(
        &bench,
        &retention,
        &points(s3, &["remote-swap", "mid-removal"]),
    );
    assert_eq!(reached["remote-write"], 6, "{reached:?}");
    assert_eq!(reached["remote-write:eio"], 6, "{reached:?}");
    assert_eq!(reached["remote-written:eio"], 6, "{reached:?}");
    assert_reached(
        retention.name,
        &reached,
        &["remote-written", "remote-swap", "mid-removal"],
    );
    if !s3 {
        assert_reached(retention.name, &reached, &FILE_CLASSES);
    }
    // Garbage only (no policy): the index, the marks, the blob and the
    // segment, the journal object.
    let gc_only = Case {
        name: "cleanup --remote (garbage only)",
        setup: &push_all_then_keep_three,
        args: &["cleanup", "--remote", "origin", "--yes"],
        now: LATER,
        check: &kept,
        settled: &three_runs_and_only_their_content,
    };
    let reached = sweep(&bench, &gc_only, &["remote-write", "mid-removal"]);
    assert_eq!(reached["remote-write"], 5, "{reached:?}");
    // The first cleanup a remote sees creates its index and its marks
    // (create-only, where the others swap): the index, a record, the
    // marks, the journal object.
    let first = Case {
        name: "the first cleanup --remote --keep 3",
        setup: &|b: &Bench| b.ok(&["push", "--all"], NOW),
        args: &["cleanup", "--remote", "origin", "--keep", "3", "--yes"],
        now: NOW,
        check: &kept,
        settled: &|b: &Bench, what: &str| {
            let listed = b.p.json(&["list", "--remote", "origin"]);
            assert_eq!(listed["runs"].as_array().unwrap().len(), 3, "{what}");
        },
    };
    let mut named = vec!["remote-write", "remote-written"];
    if !s3 {
        named.extend_from_slice(&FILE_CLASSES);
    }
    let reached = sweep(&bench, &first, &named);
    assert_eq!(reached["remote-write"], 4, "{reached:?}");
}

/// Garbage collection of packs: four runs of many small files (a pack
/// each); a cleanup keeping 3 removes the oldest and marks its pack, and
/// the faulted cleanup, a grace later, deletes that pack's table of
/// contents, then the pack.
fn packed_cleanups(s3: bool) {
    let bench = Bench::new(s3);
    four_runs_of(&bench.p, |dir, i| {
        for f in 0..20 {
            bench.p.write(
                &format!("{dir}/data/{f:02}.csv"),
                format!("run {i} row {f}\n"),
            );
        }
    });
    let case = Case {
        name: "cleanup --remote of packs",
        setup: &push_all_then_keep_three,
        args: &["cleanup", "--remote", "origin", "--yes"],
        now: LATER,
        check: &|b: &Bench, what: &str| {
            let listed = b.p.json(&["list", "--remote", "origin"]);
            assert_eq!(listed["runs"].as_array().unwrap().len(), 3, "{what}");
        },
        settled: &three_runs_and_only_their_content,
    };
    let reached = sweep(
        &bench,
        &case,
        &[
            "remote-write",
            "remote-written",
            "remote-write:eio",
            "mid-removal",
        ],
    );
    // The index, the marks, the table of contents, the pack, the segment,
    // the journal object.
    assert_eq!(reached["remote-write"], 6, "{reached:?}");
    assert_reached(case.name, &reached, &["remote-written", "mid-removal"]);
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn a_remote_cleanup_of_packs_killed_at_every_point_leaves_both_sides_consistent() {
    packed_cleanups(true);
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn a_file_remote_cleanup_of_packs_killed_at_every_point_leaves_both_sides_consistent() {
    packed_cleanups(false);
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn a_remote_cleanup_killed_at_every_point_leaves_both_sides_consistent() {
    cleanups(true);
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn a_file_remote_cleanup_killed_at_every_point_leaves_both_sides_consistent() {
    cleanups(false);
}

/// The event a latest object carries comes from the remote: it is written
/// only under `journal/`, create-only, and only when missing.
#[test]
fn a_latest_object_carries_only_a_journal_event() {
    let b = bucket();
    let p = crate::remote::project(&b);
    p.write("one/model.pt", b"weights");
    p.register(&p.path("one"), &["--id", "20261101_000000"]);
    p.json(&["push", "20261101_000000"]);
    let entry =
        r#"{"time":"2026-11-01T00:00:00Z","user":"x","action":"promote","to":"20261101_000000"}"#;
    let side = Side::Bucket(b.clone());
    for (key, written) in [
        ("runs/raw/ns=/20990101_000000.json", false),
        ("journal/../runs/x.json", false),
        ("journal/20261101T000000.000000Z-late.json", true),
    ] {
        let body =
            format!(r#"{{"id":"20261101_000000","event":{{"key":"{key}","entry":{entry}}}}}"#);
        let out = signed("PUT", &b, "latest/raw/ns=", body.as_bytes());
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        let moved = p.json(&["promote", "raw/20261101_000000", "--remote", "origin"]);
        assert_eq!(moved["moved"], false, "{moved}");
        assert_eq!(side.keys().contains(key), written, "{key}");
    }
    let h = p.json(&["history", "--remote", "origin", "--action", "promote"]);
    assert_eq!(h["entries"].as_array().unwrap().len(), 1, "{h}");
}

/// A rollback killed between its swap and its journal object, then a push
/// that moves that latest on: the push writes the rollback's event first.
#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn a_push_moving_latest_journals_the_move_killed_before_its_journal_object() {
    let b = bucket();
    let p = crate::remote::project(&b);
    let validated = p.released("gru/BTCEUR", &["1.0.0", "1.1.0"]);
    p.json(&["push", "--all"]);
    with_fault(
        p.cmd().args([
            "rollback",
            "gru/BTCEUR",
            "--remote",
            "origin",
            "--to",
            "1.0.0",
        ]),
        "remote-written@1:kill",
    );
    assert_eq!(latest_release(&p), "1.0.0");
    p.promote(
        &validated,
        &["--to", "production", "--version", "1.2.0", "--approve"],
    );
    let pushed = p.json(&["push", "production/gru/BTCEUR/1.2.0"]);
    assert_eq!(pushed["runs"][0]["became_latest"], true, "{pushed}");
    let h = p.json(&["history", "--remote", "origin", "--action", "rollback"]);
    let entries = h["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{h}");
    assert_eq!(entries[0]["to"], "1.0.0", "{h}");
}
