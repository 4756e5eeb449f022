//! kill -9 at every fault point `promote --remote`, `rollback --remote` and
//! `cleanup --remote` reach, against the moto server and a `file://`
//! remote; garbage collection while a push is in flight; and credentials
//! that never reach output, the journal, metadata or the remote.
//!
//! A sweep, as in `fault_matrix`, kills the command (or fails the write
//! with EIO) at the 1st, 2nd, ... occurrence of a point until a run
//! completes without reaching it. After each both sides must be consistent: every run record on the remote
//! resolves to blobs that exist, every `latest` to a record, `list --remote`
//! works and lists only runs with records, the local store verifies clean,
//! and the command run again completes (and leaves all that true).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;

use crate::remote::{bucket, server};
use crate::remote_catalog::{keys, paused, resume, signed};
use crate::support::*;

/// Where a test's remote lives, read behind artifactctl's back.
#[derive(Clone)]
enum Side {
    Bucket(String),
    Dir(PathBuf),
}

/// A swapped object's folder of generations on a `file://` remote.
fn swapped(key: &str) -> bool {
    key.starts_with("latest/") || key == "catalog/index" || key == "gc/marks.json"
}

fn is_generation(name: &str) -> bool {
    name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit())
}

impl Side {
    /// Every key, as the remote's layout names them.
    fn keys(&self) -> BTreeSet<String> {
        match self {
            Side::Bucket(b) => keys(b, "").into_iter().collect(),
            Side::Dir(root) => walkdir::WalkDir::new(root)
                .into_iter()
                .flatten()
                .filter(|e| e.file_type().is_file())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| {
                    let rel = e.path().strip_prefix(root).unwrap();
                    let parent = rel.parent().unwrap().display().to_string();
                    let name = e.file_name().to_string_lossy().into_owned();
                    if is_generation(&name) && swapped(&parent) {
                        parent
                    } else {
                        rel.display().to_string()
                    }
                })
                .collect(),
        }
    }

    /// An object's bytes (the highest generation of a swapped one).
    fn get(&self, key: &str) -> Vec<u8> {
        match self {
            Side::Bucket(b) => {
                let out = signed_bytes("GET", b, key);
                assert!(out.0.starts_with("HTTP/1.1 200"), "GET {key}: {}", out.0);
                out.1
            }
            Side::Dir(root) => {
                let path = root.join(key);
                if path.is_dir() {
                    let top = std::fs::read_dir(&path)
                        .unwrap()
                        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .filter(|n| is_generation(n))
                        .max()
                        .unwrap_or_else(|| panic!("{key} has no generation"));
                    std::fs::read(path.join(top)).unwrap()
                } else {
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{key}: {e}"))
                }
            }
        }
    }
}

/// A signed-looking request's status line and body bytes.
fn signed_bytes(method: &str, bucket: &str, key: &str) -> (String, Vec<u8>) {
    let raw = signed(method, bucket, key, b"");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (head.lines().next().unwrap_or("").to_string(), body.into())
}

/// `runs/<stage>/ns=<a,b>/<id>.json` of a ref as `list` prints it.
fn record_key_of(reference: &str) -> String {
    let mut parts: Vec<&str> = reference.split('/').collect();
    let stage = match parts[0] {
        "raw" | "validated" | "production" => parts.remove(0),
        _ => "raw",
    };
    let id = parts.pop().unwrap();
    format!("runs/{stage}/ns={}/{id}.json", parts.join(","))
}

/// Both sides consistent (see the module's notes); `what` names the case.
fn assert_consistent(p: &Project, side: &Side, what: &str) {
    let keys = side.keys();
    let blobs: BTreeSet<&str> = keys
        .iter()
        .filter_map(|k| k.strip_prefix("blobs/"))
        .filter_map(|k| k.rsplit('/').next())
        .collect();
    let records: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("runs/") && k.ends_with(".json"))
        .collect();
    for key in &records {
        let meta: Value = serde_json::from_slice(&side.get(key))
            .unwrap_or_else(|e| panic!("{what}: record {key} is not JSON: {e}"));
        for f in meta["files"].as_array().unwrap() {
            if f["symlink"].is_string() {
                continue;
            }
            let hash = f["blake3"].as_str().unwrap();
            assert!(
                blobs.contains(hash),
                "{what}: record {key} names blob {hash} ({}), which is missing",
                f["path"]
            );
        }
    }
    for key in keys.iter().filter(|k| k.starts_with("latest/")) {
        let latest: Value = serde_json::from_slice(&side.get(key)).unwrap();
        let rest = key.strip_prefix("latest/").unwrap();
        let record = format!("runs/{rest}/{}.json", latest["id"].as_str().unwrap());
        assert!(
            keys.contains(&record),
            "{what}: {key} names {latest}, whose record {record} is missing"
        );
    }
    let listed = p.json(&["list", "--stage", "all", "--remote", "origin"]);
    for run in listed["runs"].as_array().unwrap() {
        let record = record_key_of(run["ref"].as_str().unwrap());
        assert!(
            keys.contains(&record),
            "{what}: list --remote shows {} without its record {record}",
            run["ref"]
        );
    }
    p.assert_verifies_clean();
}

/// The remote's latest release of gru/BTCEUR, read as artifactctl does.
fn latest_release(p: &Project) -> String {
    p.json(&["show", "production/gru/BTCEUR/latest", "--remote", "origin"])["run"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A local project reused for every case of a sweep (remote commands never
/// change it), pointed at a fresh remote each time.
struct Bench {
    p: Project,
    s3: bool,
}

impl Bench {
    fn new(s3: bool) -> Bench {
        let p = if s3 {
            Project::new()
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .env("AWS_REGION", "us-east-1")
        } else {
            Project::new()
        };
        Bench { p, s3 }
    }

    /// A fresh, empty remote `origin`.
    fn fresh(&self) -> Side {
        if self.s3 {
            let b = bucket();
            self.p.write(
                "artifactctl.toml",
                format!(
                    "[remote]\ndefault = \"origin\"\n[remotes.origin]\nurl = \"s3://{b}/proj\"\nendpoint = \"http://127.0.0.1:{}\"\nregion = \"us-east-1\"\n",
                    server()
                ),
            );
            Side::Bucket(b)
        } else {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let shared = self.p.path(&format!("shared-{n}"));
            self.p.write(
                "artifactctl.toml",
                format!(
                    "[remote]\ndefault = \"origin\"\n[remotes.origin]\nurl = \"file://{}\"\n",
                    shared.display()
                ),
            );
            Side::Dir(shared)
        }
    }

    fn run(&self, args: &[&str], now: &str, fault: Option<&str>) -> std::process::Output {
        let mut cmd = self.p.cmd();
        cmd.args(args).env("ARTIFACTCTL_NOW", now);
        if let Some(spec) = fault {
            cmd.env("ARTIFACTCTL_FAULT", spec);
        }
        cmd.output().unwrap()
    }

    fn ok(&self, args: &[&str], now: &str) {
        let out = self.run(args, now, None);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

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
        settled: &either("1.2.0", "1.2.0"),
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
        settled: &either("1.1.0", "1.1.0"),
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
        // The last case's move, run again, is in the journal.
        let h = bench.p.json(&["history", "--remote", "origin"]);
        assert!(!h["entries"].as_array().unwrap().is_empty(), "{h}");
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

/// Four raw runs, one file each.
fn four_runs(p: &Project) {
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
        p.write(&format!("{dir}/model.pt"), format!("model {i}"));
        p.register(&p.path(&dir), &["--id", id]);
    }
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
    let setup = |b: &Bench| {
        b.ok(&["push", "--all"], NOW);
        b.ok(
            &["cleanup", "--remote", "origin", "--keep", "3", "--yes"],
            NOW,
        );
    };
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
        setup: &setup,
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
        setup: &setup,
        args: &["cleanup", "--remote", "origin", "--yes"],
        now: LATER,
        check: &kept,
        settled: &|b: &Bench, what: &str| {
            // The three runs the first cleanup kept, and only their
            // content: the first run's blob is gone.
            let listed = b.p.json(&["list", "--remote", "origin"]);
            assert_eq!(listed["runs"].as_array().unwrap().len(), 3, "{what}");
            let out = b.run(&["cleanup", "--remote", "origin", "--json"], LATER, None);
            let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(
                (plan["blobs"].clone(), plan["referenced"].clone()),
                (3.into(), 3.into()),
                "{what}: {plan}"
            );
        },
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

// ---- garbage collection with a push in flight ----

impl Side {
    /// Write `content` as a blob behind artifactctl's back (content no
    /// record references).
    fn put_blob(&self, content: &[u8]) -> String {
        let hash = blake3::hash(content).to_hex().to_string();
        let key = format!("blobs/{}/{hash}", &hash[..2]);
        match self {
            Side::Bucket(b) => crate::remote::put_object(b, &key, content),
            Side::Dir(root) => {
                write(&root.join(&key), content);
            }
        }
        hash
    }

    fn has_blob(&self, hash: &str) -> bool {
        self.keys()
            .contains(&format!("blobs/{}/{hash}", &hash[..2]))
    }
}

/// Where a push has every blob of its run on the remote and not its record
/// yet.
const PUSH_AFTER_BLOBS: &str = "staged";

fn at(now: chrono::DateTime<chrono::Utc>) -> String {
    now.to_rfc3339()
}

fn cleanup_at(b: &Bench, now: &str, grace: Option<&str>) -> Value {
    let mut cmd = b.p.cmd();
    cmd.env("ARTIFACTCTL_NOW", now)
        .args(["cleanup", "--remote", "origin", "--yes", "--json"]);
    if let Some(grace) = grace {
        cmd.env("ARTIFACTCTL_REMOTE_GC_GRACE", grace);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The test server's credentials (unused by a `file://` remote).
fn aws_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ]
}

/// A push held after uploading its blobs, before its record, while
/// cleanups run; resumed, its run must be whole.
fn push_in_flight(s3: bool) {
    let b = Bench::new(s3);
    let side = b.fresh();
    b.p.write("one/model.pt", b"weights in flight");
    b.p.write("one/data.csv", b"rows in flight");
    b.p.register(&b.p.path("one"), &["--id", "20261101_000000"]);
    let now = chrono::Utc::now();
    let hours = chrono::Duration::hours;

    // Default grace: the first cleanup marks the in-flight blobs, a second
    // one within the grace keeps them marked, and deletes nothing.
    let (child, gate) = paused(
        &b.p,
        &["push", "20261101_000000"],
        PUSH_AFTER_BLOBS,
        &aws_env(),
    );
    let first = cleanup_at(&b, &at(now), None);
    assert_eq!(
        (first["newly_marked"].clone(), first["deleted"].clone()),
        (2.into(), 0.into()),
        "{first}"
    );
    let second = cleanup_at(&b, &at(now + hours(23)), None);
    assert_eq!(
        (second["newly_marked"].clone(), second["waiting"].clone()),
        (0.into(), 2.into()),
        "only marked in the first run: {second}"
    );
    assert_eq!(second["deleted"], 0, "{second}");
    let out = resume(child, &gate);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_consistent(&b.p, &side, "push resumed after two cleanups");
    let fresh = Bench::new(s3);
    fresh.p.write(
        "artifactctl.toml",
        std::fs::read(b.p.path("artifactctl.toml")).unwrap(),
    );
    fresh.p.json(&["pull", "20261101_000000"]);
    fresh.p.assert_verifies_clean();
    // Referenced now: the marks go, nothing is ever deleted.
    let third = cleanup_at(&b, &at(now + hours(100)), None);
    assert_eq!(
        (third["deleted"].clone(), third["waiting"].clone()),
        (0.into(), 0.into()),
        "{third}"
    );

    // Grace 0: one cleanup while the push is held only marks.
    b.p.write("two/model.pt", b"other weights in flight");
    b.p.register(&b.p.path("two"), &["--id", "20261102_000000"]);
    let (child, gate) = paused(
        &b.p,
        &["push", "20261102_000000"],
        PUSH_AFTER_BLOBS,
        &aws_env(),
    );
    let once = cleanup_at(&b, &at(chrono::Utc::now()), Some("0s"));
    assert_eq!(
        (once["newly_marked"].clone(), once["deleted"].clone()),
        (1.into(), 0.into()),
        "{once}"
    );
    let out = resume(child, &gate);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_consistent(&b.p, &side, "push resumed after a cleanup with grace 0");
    fresh.p.json(&["pull", "20261102_000000"]);
    fresh.p.assert_verifies_clean();

    // By design the grace is the protection: with grace 0, a second
    // cleanup while the push is still held deletes its blob.
    b.p.write("three/model.pt", b"weights with no grace");
    b.p.register(&b.p.path("three"), &["--id", "20261103_000000"]);
    let (child, gate) = paused(
        &b.p,
        &["push", "20261103_000000"],
        PUSH_AFTER_BLOBS,
        &aws_env(),
    );
    cleanup_at(&b, &at(chrono::Utc::now()), Some("0s"));
    let twice = cleanup_at(&b, &at(chrono::Utc::now() + hours(1)), Some("0s"));
    assert_eq!(twice["deleted"], 1, "{twice}");
    resume(child, &gate);
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the pause fault action exists only in debug builds"
)]
fn a_push_held_after_its_blobs_while_cleanups_run_is_whole_when_it_resumes() {
    push_in_flight(true);
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the pause fault action exists only in debug builds"
)]
fn on_a_file_remote_a_push_held_while_cleanups_run_is_whole_when_it_resumes() {
    push_in_flight(false);
}

/// The other interleaving: a cleanup holds between writing its marks and
/// deleting, a blob it is about to delete is one a push needs, and the
/// push runs to the end meanwhile. The blob stays marked, so the push
/// uploads it again instead of trusting it; the cleanup sees it written
/// since it was listed and keeps it.
fn cleanup_in_flight(s3: bool) {
    let b = Bench::new(s3);
    let side = b.fresh();
    let content = b"weights deleted once, needed again";
    let hash = side.put_blob(content);
    let now = chrono::Utc::now();
    let marked = cleanup_at(&b, &at(now), None);
    assert_eq!(marked["newly_marked"], 1, "{marked}");
    let later = at(now + chrono::Duration::hours(25));
    let mut env = aws_env();
    env.push(("ARTIFACTCTL_NOW", &later));
    let (child, gate) = paused(
        &b.p,
        &["cleanup", "--remote", "origin", "--yes", "--json"],
        "mid-removal",
        &env,
    );
    // Object times may have whole seconds: the re-upload must land in a
    // later one than the first upload (nothing is timed).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    b.p.write("again/model.pt", content);
    b.p.register(&b.p.path("again"), &["--id", "20261101_000000"]);
    let pushed = b.p.json(&["push", "20261101_000000"]);
    assert_eq!(
        pushed["uploaded_files"], 1,
        "the marked blob is uploaded again, not trusted: {pushed}"
    );
    let out = resume(child, &gate);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["deleted"], 0, "{report}");
    assert!(side.has_blob(&hash));
    assert_consistent(&b.p, &side, "push during a held cleanup");
    let fresh = Bench::new(s3);
    fresh.p.write(
        "artifactctl.toml",
        std::fs::read(b.p.path("artifactctl.toml")).unwrap(),
    );
    fresh.p.json(&["pull", "20261101_000000"]);
    fresh.p.assert_verifies_clean();
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the pause fault action exists only in debug builds"
)]
fn a_push_during_a_held_cleanup_uploads_the_blob_it_was_about_to_delete_and_it_stays() {
    cleanup_in_flight(true);
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the pause fault action exists only in debug builds"
)]
fn on_a_file_remote_a_push_during_a_held_cleanup_keeps_its_blob() {
    cleanup_in_flight(false);
}

// ---- credentials are never printed, journaled or written ----

const KEY_ID: &str = "AKIAARTIFACTCTLLEAK01";
const SECRET: &str = "artifactctl-secret-LEAK-5c1e";
const TOKEN: &str = "artifactctl-token-LEAK-77aa";

/// A project with recognisable AWS credentials in its environment, its
/// remote `origin` on `bucket` at `endpoint`.
fn with_credentials(bucket: &str, endpoint: &str) -> Project {
    let p = Project::new()
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_SESSION_TOKEN", TOKEN)
        .env("AWS_REGION", "us-east-1");
    p.write(
        "artifactctl.toml",
        format!(
            "[remote]\ndefault = \"origin\"\n[remotes.origin]\nurl = \"s3://{bucket}/proj\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n"
        ),
    );
    p
}

fn assert_no_secret(what: &str, text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    for secret in [KEY_ID, SECRET, TOKEN] {
        assert!(!text.contains(secret), "{what} holds {secret}:\n{text}");
    }
}

/// Run `args` (and again with `--json`); neither output holds a secret.
/// Returns the plain run's exit code and stderr.
fn run_clean(p: &Project, args: &[&str]) -> (Option<i32>, String) {
    let json = p.cmd().args(args).arg("--json").output().unwrap();
    assert_no_secret(&format!("{args:?} --json stdout"), &json.stdout);
    assert_no_secret(&format!("{args:?} --json stderr"), &json.stderr);
    let out = p.cmd().args(args).output().unwrap();
    assert_no_secret(&format!("{args:?} stdout"), &out.stdout);
    assert_no_secret(&format!("{args:?} stderr"), &out.stderr);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `dir` (the store, its journal and metadata included).
fn assert_tree_clean(dir: &std::path::Path) {
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        assert_no_secret(
            &format!("the name {}", entry.path().display()),
            entry.path().to_string_lossy().as_bytes(),
        );
        if entry.file_type().is_file() {
            assert_no_secret(
                &entry.path().display().to_string(),
                &std::fs::read(entry.path()).unwrap(),
            );
        }
    }
}

#[test]
fn credentials_never_reach_output_the_journal_metadata_or_the_remote() {
    let b = bucket();
    let endpoint = format!("http://127.0.0.1:{}", server());
    let a = with_credentials(&b, &endpoint);
    a.released("gru/BTCEUR", &["1.0.0", "1.1.0"]);
    let commands: [&[&str]; 9] = [
        &["push", "--all"],
        &["list", "--stage", "all", "--remote", "origin"],
        &["show", "production/gru/BTCEUR/latest", "--remote", "origin"],
        &[
            "rollback",
            "gru/BTCEUR",
            "--remote",
            "origin",
            "--to",
            "1.0.0",
        ],
        &[
            "promote",
            "production/gru/BTCEUR/1.1.0",
            "--remote",
            "origin",
            "--approve",
        ],
        &["history", "--remote", "origin"],
        &["cleanup", "--remote", "origin", "--yes"],
        &["pull", "production/gru/BTCEUR/1.0.0"],
        &["push", "--all"],
    ];
    for args in commands {
        let (code, err) = run_clean(&a, args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
    }
    let c = with_credentials(&b, &endpoint);
    let (code, err) = run_clean(&c, &["pull", "production/gru/BTCEUR/latest"]);
    assert_eq!(code, Some(0), "{err}");
    c.assert_verifies_clean();
    assert_tree_clean(&a.store());
    assert_tree_clean(&c.store());
    let side = Side::Bucket(b.clone());
    let keys = side.keys();
    assert!(keys.iter().any(|k| k.starts_with("journal/")), "{keys:?}");
    for key in &keys {
        assert_no_secret(&format!("the remote key {key}"), key.as_bytes());
        assert_no_secret(&format!("the remote object {key}"), &side.get(key));
    }

    // The server down: each command fails, naming the remote's URL without
    // any secret.
    let dead = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        with_credentials(&b, &format!("http://127.0.0.1:{port}"))
    };
    dead.released("gru/BTCEUR", &["1.0.0"]);
    for args in [
        &["push", "--all"][..],
        &["pull", "production/gru/BTCEUR/latest"],
        &["list", "--remote", "origin"],
        &["history", "--remote", "origin"],
        &[
            "promote",
            "production/gru/BTCEUR/1.0.0",
            "--remote",
            "origin",
            "--approve",
        ],
    ] {
        let (code, err) = run_clean(&dead, args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!("remote s3://{b}/proj failed"))
                && err.contains("check that the server is reachable"),
            "{args:?}: {err}"
        );
    }
    assert_tree_clean(&dead.store());

    // Credentials in the configuration are refused, and not repeated: in
    // the endpoint's or the URL's user info (from the file or from the
    // environment), or in a query string that would become part of every
    // key written.
    let userinfo = format!("http://{KEY_ID}:{SECRET}@127.0.0.1:{}", server());
    let in_endpoint = with_credentials(&b, &userinfo);
    let in_env =
        with_credentials(&b, &endpoint).env("ARTIFACTCTL_REMOTES_ORIGIN_ENDPOINT", &userinfo);
    let in_url = with_credentials(&format!("{KEY_ID}:{SECRET}@{b}"), &endpoint);
    let in_query = with_credentials(&format!("{b}/proj?X-Amz-Security-Token={TOKEN}"), &endpoint);
    for (p, why) in [
        (&in_endpoint, "carries user info"),
        (&in_env, "carries user info"),
        (&in_url, "carries user info"),
        (&in_query, "has a query"),
    ] {
        p.released("gru/BTCEUR", &["1.0.0"]);
        for args in [
            &["push", "--all"][..],
            &["list", "--remote", "origin"],
            &["pull", "production/gru/BTCEUR/latest"],
        ] {
            let (code, err) = run_clean(p, args);
            assert_eq!(code, Some(2), "{args:?}: {err}");
            assert!(err.contains(why), "{args:?}: {err}");
        }
        assert_tree_clean(&p.store());
    }
    // Nothing of theirs reached the bucket.
    assert_eq!(side.keys(), keys);

    // A malformed endpoint is bad input, named, not a crash mid-request.
    for bad in ["http://127.0.0.1:99999", "127.0.0.1:9000", "http://[::1"] {
        let p = with_credentials(&b, bad);
        let (code, err) = run_clean(&p, &["list", "--remote", "origin"]);
        assert_eq!(code, Some(2), "{bad}: {err}");
        assert!(
            err.contains("is not an http:// or https:// address") && !err.contains("panicked"),
            "{bad}: {err}"
        );
    }
}
