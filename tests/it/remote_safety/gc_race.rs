//! Garbage collection with a push in flight, both interleavings forced
//! with the `pause` fault action.

use serde_json::Value;

use super::*;
use crate::remote_catalog::{paused, resume, resumed_ok};

/// Where a push has every blob of its run on the remote and not its record
/// yet.
const PUSH_AFTER_BLOBS: &str = "after-blobs";

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
    resumed_ok(child, &gate);
    assert_consistent(&b.p, &side, "push resumed after two cleanups");
    pulls_whole_elsewhere(&b, s3, "20261101_000000");
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
    resumed_ok(child, &gate);
    assert_consistent(&b.p, &side, "push resumed after a cleanup with grace 0");
    pulls_whole_elsewhere(&b, s3, "20261102_000000");

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
    let out = resumed_ok(child, &gate);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["deleted"], 0, "{report}");
    assert!(side.has_blob(&hash));
    assert_consistent(&b.p, &side, "push during a held cleanup");
    pulls_whole_elsewhere(&b, s3, "20261101_000000");
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

/// Another machine with the same remote pulls `id`, and it verifies clean.
fn pulls_whole_elsewhere(b: &Bench, s3: bool, id: &str) {
    let fresh = Bench::new(s3);
    fresh.p.write(
        "artifactctl.toml",
        std::fs::read(b.p.path("artifactctl.toml")).unwrap(),
    );
    fresh.p.json(&["pull", id]);
    fresh.p.assert_verifies_clean();
}
