//! The remote catalog (segments folded into an index by compare-and-swap),
//! retention on a remote, and compare-and-swap conflicts forced with the
//! `pause` fault action: one command waits between reading a swapped
//! object and writing it while another runs to the end.

use std::path::Path;
use std::process::{Child, Output};

use serde_json::Value;

use crate::remote::{bucket, fails, file_project, gc, http, json_at, project, server};
use crate::support::*;

/// The keys under `prefix` in the test bucket (moto answers unsigned
/// ListObjectsV2).
pub(crate) fn keys(bucket: &str, prefix: &str) -> Vec<String> {
    let (code, body) = http(
        "GET",
        server(),
        &format!("/{bucket}?list-type=2&prefix=proj/{prefix}"),
        b"",
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    body.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(|k| k.trim_start_matches("proj/").to_string())
        .collect()
}

/// A request to the test server with a made-up signature: moto refuses
/// some unsigned ones (a DELETE, a PUT over an object) but takes any
/// signature. Returns the status line and the rest.
pub(crate) fn signed(method: &str, bucket: &str, key: &str, body: &[u8]) -> String {
    use std::io::{Read, Write};
    let port = server();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} /{bucket}/proj/{key} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=test/20261123/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn delete_object(bucket: &str, key: &str) {
    let out = signed("DELETE", bucket, key, b"");
    assert!(out.starts_with("HTTP/1.1 204"), "DELETE {key}: {out}");
}

fn refs(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ref"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

/// Register a raw run `id` (in `ns`) whose one file holds `content`.
fn run(p: &Project, ns: &str, id: &str, content: &str) {
    let dir = format!("src-{id}");
    p.write(&format!("{dir}/model.pt"), content);
    let mut args = vec!["--id", id];
    if !ns.is_empty() {
        args.extend(["--namespace", ns]);
    }
    p.register(&p.path(&dir), &args);
}

/// Four raw runs in `ns`, one model each, oldest first: their ids.
fn four_runs(p: &Project, ns: &str) -> [&'static str; 4] {
    let ids = [
        "20261101_000000",
        "20261102_000000",
        "20261103_000000",
        "20261104_000000",
    ];
    for (i, id) in ids.iter().enumerate() {
        run(p, ns, id, &format!("model {i}"));
    }
    ids
}

#[test]
fn pushes_fold_the_catalog_into_its_index_and_cleanup_deletes_folded_segments_after_the_grace() {
    let b = bucket();
    let p = project(&b).env("ARTIFACTCTL_REMOTE_COMPACT_AFTER", "2");
    let ids = four_runs(&p, "");
    // The third push finds three segments written since the (absent)
    // index, more than 2: it folds them in. (The fourth may fold too:
    // object times have whole seconds, and a segment of the index's second
    // counts as written after it.)
    let compacted: Vec<u64> = ids
        .iter()
        .map(|id| {
            p.json(&["push", id])["compacted_segments"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(compacted[..3], [0, 0, 3], "{compacted:?}");
    let segments = keys(&b, "catalog/");
    assert_eq!(segments.len(), 5, "{segments:?}");
    assert!(segments.contains(&"catalog/index".to_string()));
    let index = signed("GET", &b, "catalog/index", b"");
    let header: Value = serde_json::from_str(
        index
            .split_once("\r\n\r\n")
            .unwrap()
            .1
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let folded: Vec<String> = header["folded"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert!(folded.len() >= 3, "{header}");

    // The reader takes folded runs from the index: the folded segments
    // removed behind its back change nothing it lists.
    let c = project(&b);
    let all: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    let listed = c.json(&["list", "--remote", "origin"]);
    assert_eq!(refs(&listed), all, "{listed}");
    for key in &folded {
        delete_object(&b, key);
    }
    assert_eq!(refs(&c.json(&["list", "--remote", "origin"])), all);

    // cleanup rebuilds the index from the records and folds the last
    // segment; a grace later it deletes the segment.
    let now = chrono::Utc::now();
    let first = gc(&p, now);
    assert_eq!(first["catalog_runs"], 4, "{first}");
    assert_eq!(first["deleted_segments"], 0, "{first}");
    let later = gc(&p, now + chrono::Duration::hours(25));
    assert_eq!(later["deleted_segments"], 4 - folded.len(), "{later}");
    assert_eq!(keys(&b, "catalog/"), ["catalog/index"]);
    assert_eq!(refs(&c.json(&["list", "--remote", "origin"])), all);

    // A damaged index is named, and cleanup rebuilds it from the records.
    let out = signed("PUT", &b, "catalog/index", b"{not json");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let (code, err) = fails(&c, &["list", "--remote", "origin"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("catalog/index is not valid"), "{err}");
    gc(&p, now);
    assert_eq!(refs(&c.json(&["list", "--remote", "origin"])), all);
    // So is a segment of another format: cleanup folds it in unread.
    let old = "catalog/20200101T000000.000000Z-old.json";
    let out = signed("PUT", &b, old, br#"{"schema_version":1,"runs":[]}"#);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let (_, err) = fails(&c, &["list", "--remote", "origin"]);
    assert!(
        err.contains(old) && err.contains("cleanup --remote origin --yes"),
        "{err}"
    );
    gc(&p, now);
    assert_eq!(refs(&c.json(&["list", "--remote", "origin"])), all);
}

#[test]
fn retention_on_a_remote_removes_records_from_the_catalog_and_their_content_after_the_grace() {
    let b = bucket();
    let p = project(&b);
    four_runs(&p, "gru");
    p.json(&["push", "--all"]);
    let now = chrono::Utc::now();

    // Without --yes: the plan, and nothing changes.
    let plan = json_at(&p, now, &["cleanup", "--remote", "origin", "--keep", "2"]);
    assert_eq!(plan["dry_run"], true, "{plan}");
    let actions: Vec<(String, String)> = plan["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["ref"].as_str().unwrap().to_string(),
                r["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("gru/20261104_000000".into(), "keep".into()),
            ("gru/20261103_000000".into(), "keep".into()),
            ("gru/20261102_000000".into(), "remove".into()),
            ("gru/20261101_000000".into(), "remove".into()),
        ],
        "{plan}"
    );
    assert_eq!(
        plan["runs"][0]["reasons"],
        serde_json::json!(["latest", "--keep: newest #1"])
    );
    assert_eq!(keys(&b, "runs/").len(), 4);
    let table = stdout_of(
        p.cmd()
            .env("ARTIFACTCTL_NOW", now.to_rfc3339())
            .args(["cleanup", "--remote", "origin", "--keep", "2"]),
    );
    crate::remote::remote_snapshots(&p)
        .bind(|| insta::assert_snapshot!("remote_cleanup_keep_plan", table));

    let done = json_at(
        &p,
        now,
        &["cleanup", "--remote", "origin", "--keep", "2", "--yes"],
    );
    assert_eq!(done["dry_run"], false, "{done}");
    assert_eq!(done["catalog_runs"], 2, "{done}");
    // The removed runs' content is unreferenced now: marked, not deleted.
    assert_eq!(done["newly_marked"], 2, "{done}");
    assert_eq!(done["deleted"], 0, "{done}");
    let c = project(&b);
    assert_eq!(
        refs(&c.json(&["list", "--remote", "origin"])),
        ["gru/20261103_000000", "gru/20261104_000000"]
    );
    let (code, err) = fails(&c, &["show", "--remote", "origin", "gru/20261101_000000"]);
    assert_eq!(code, Some(2), "{err}");
    let h = c.json(&["history", "--remote", "origin", "--action", "cleanup"]);
    assert_eq!(
        h["entries"][0]["removed_runs"],
        serde_json::json!(["raw/gru/20261101_000000", "raw/gru/20261102_000000"]),
        "{h}"
    );
    // A grace later the content goes; what is kept still pulls whole.
    let later = gc(&p, now + chrono::Duration::hours(25));
    assert_eq!(later["deleted"], 2, "{later}");
    c.json(&["pull", "gru/20261103_000000", "gru/latest"]);
    c.assert_verifies_clean();
    // The local store was never touched.
    assert_eq!(p.list_json(&[])["runs"].as_array().unwrap().len(), 4);
}

#[test]
fn retention_on_a_file_remote_keeps_what_local_cleanup_protects() {
    let base = Project::new();
    let shared = base.root().join("shared");
    let p = file_project(&shared);
    // A raw run promoted to validated and released as 1.0.0 and 1.1.0.
    p.released("gru/BTCEUR", &["1.0.0", "1.1.0"]);
    for (i, id) in ["20261124_000000", "20261124_000001", "20261124_000002"]
        .iter()
        .enumerate()
    {
        run(&p, "gru/BTCEUR", id, &format!("more {i}"));
    }
    p.cmd()
        .args(["pin", "gru/BTCEUR/20261124_000000"])
        .output()
        .unwrap();
    p.json(&["push", "--all"]);

    let plan = p.json(&["cleanup", "--remote", "origin", "--keep", "1", "--dry-run"]);
    let row = |id: &str| -> Value {
        plan["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["ref"].as_str().unwrap().ends_with(id))
            .unwrap_or_else(|| panic!("no row {id}: {plan}"))
            .clone()
    };
    let reasons = |id: &str| row(id)["reasons"].to_string();
    assert_eq!(row("20261124_000002")["action"], "keep");
    assert_eq!(row("20261124_000000")["action"], "keep");
    assert!(reasons("20261124_000000").contains("pinned"), "{plan}");
    assert_eq!(row("20261123_101500")["action"], "keep");
    assert!(
        reasons("20261123_101500").contains("lineage: promoted to ")
            && reasons("20261123_101500").contains("validated/gru/BTCEUR/20261123_101500_"),
        "{plan}"
    );
    assert_eq!(row("20261124_000001")["action"], "remove", "{plan}");

    // Production stays unless unlocked, as locally.
    let prod = p.json(&[
        "cleanup",
        "--remote",
        "origin",
        "--stage",
        "production",
        "--keep",
        "1",
        "--dry-run",
    ]);
    let rows = prod["runs"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{prod}");
    assert!(rows.iter().all(|r| r["action"] == "keep"), "{prod}");
    assert!(
        rows.iter()
            .any(|r| r["reasons"].to_string().contains("production release")),
        "{prod}"
    );

    let done = p.json(&["cleanup", "--remote", "origin", "--keep", "1", "--yes"]);
    assert_eq!(done["freed_bytes"], row("20261124_000001")["size_bytes"]);
    assert!(!shared
        .join("runs/raw/ns=gru,BTCEUR/20261124_000001.json")
        .exists());
    let listed = p.json(&["list", "--stage", "all", "--remote", "origin"]);
    assert_eq!(listed["runs"].as_array().unwrap().len(), 6, "{listed}");

    // A policy that keeps no run of a namespace is refused, as locally,
    // and nothing changes.
    run(&p, "lstm", "20261125_000000", "lstm one");
    run(&p, "lstm", "20261125_000001", "lstm two");
    p.json(&["push", "lstm/20261125_000000", "lstm/20261125_000001"]);
    let later = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let out = p
        .cmd()
        .env("ARTIFACTCTL_NOW", &later)
        .args([
            "cleanup",
            "--remote",
            "origin",
            "--keep-within",
            "1d",
            "--yes",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--unsafe-allow-remove-all"), "{err}");
    assert!(err.contains("raw/lstm"), "{err}");
    let again = p.json(&["list", "--stage", "all", "--remote", "origin"]);
    assert_eq!(again["runs"].as_array().unwrap().len(), 8, "{again}");

    // Production releases go only when unlocked; the latest one stays.
    let prod = p.json(&[
        "cleanup",
        "--remote",
        "origin",
        "--stage",
        "production",
        "--keep",
        "1",
        "--unsafe-allow-production",
        "--yes",
    ]);
    assert_eq!(prod["catalog_runs"], 7, "{prod}");
    let left = p.json(&["list", "production", "--remote", "origin"]);
    assert_eq!(refs(&left), ["production/gru/BTCEUR/1.1.0"], "{left}");
}

/// Start `args` paused at the fault point `point` (the `pause` action):
/// returns once it has reached it, with the gate that lets it go on.
pub(crate) fn paused(
    p: &Project,
    args: &[&str],
    point: &str,
    extra: &[(&str, &str)],
) -> (Child, std::path::PathBuf) {
    let gate = p.path(&format!("gate-{point}"));
    let reached = std::path::PathBuf::from(format!("{}.reached", gate.display()));
    // A gate from an earlier race of this test would let this one through.
    for f in [&gate, &reached] {
        let _ = std::fs::remove_file(f);
    }
    let spec = format!("{point}:pause");
    let mut env = vec![
        ("ARTIFACTCTL_FAULT", spec.as_str()),
        ("ARTIFACTCTL_FAULT_GATE", gate.to_str().unwrap()),
        // The test server's credentials (unused by a file:// remote).
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    env.extend_from_slice(extra);
    let mut child = p.spawn(args, &env);
    // Liveness only: no timing is asserted.
    for _ in 0..3000 {
        if reached.exists() {
            return (child, gate);
        }
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "{args:?} ended ({status}) before {point}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("{args:?} never reached {point}");
}

pub(crate) fn resume(child: Child, gate: &Path) -> Output {
    std::fs::write(gate, b"").unwrap();
    child.wait_with_output().unwrap()
}

/// [`resume`], and the command must have succeeded.
pub(crate) fn resumed_ok(child: Child, gate: &Path) -> Output {
    let out = resume(child, gate);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn remote_latest_id(p: &Project) -> Value {
    p.json(&["show", "production/gru/BTCEUR/latest", "--remote", "origin"])["run"]["id"].clone()
}

/// Two `promote --remote` of one stage, the first held between reading
/// `latest` and swapping it while the second runs: the first's swap
/// conflicts, it reads again and decides again.
fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn promotions_race(p: &Project) {
    p.released("gru/BTCEUR", &["1.0.0", "1.1.0", "1.2.0"]);
    p.json(&["push", "--all"]);
    let back = |to: &str| p.json(&["rollback", "gru/BTCEUR", "--remote", "origin", "--to", to]);
    let promote = |v: &str| {
        vec![
            "promote".to_string(),
            format!("production/gru/BTCEUR/{v}"),
            "--remote".into(),
            "origin".into(),
            "--approve".into(),
        ]
    };

    // Forward past a forward move: A (to 1.2.0) read 1.0.0; B moved it to
    // 1.1.0 meanwhile; A re-reads 1.1.0 and still moves forward.
    back("1.0.0");
    let mut a = promote("1.2.0");
    a.push("--json".into());
    let (child, gate) = paused(p, &args(&a), "remote-swap", &[]);
    let b = p.json(&args(&promote("1.1.0")));
    assert_eq!(
        (b["from"].clone(), b["moved"].clone()),
        ("1.0.0".into(), true.into())
    );
    let out = resumed_ok(child, &gate);
    let a_said: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        a_said["from"], "1.1.0",
        "A decided again on what B wrote: {a_said}"
    );
    assert_eq!(a_said["to"], "1.2.0");
    assert_eq!(remote_latest_id(p), "1.2.0");

    // Never backward: A (to 1.1.0) read 1.0.0; B moved it to 1.2.0; A's
    // swap conflicts, and on re-reading it refuses.
    back("1.0.0");
    let (child, gate) = paused(p, &args(&promote("1.1.0")), "remote-swap", &[]);
    p.json(&args(&promote("1.2.0")));
    let out = resume(child, &gate);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("promote moves latest only forward"), "{err}");
    assert_eq!(remote_latest_id(p), "1.2.0");

    // Every move is in the journal, the refused one not.
    let h = p.json(&["history", "--remote", "origin", "--action", "promote"]);
    assert_eq!(h["entries"].as_array().unwrap().len(), 3, "{h}");
}

#[test]
fn a_promotion_that_loses_the_swap_of_latest_decides_again_and_never_moves_it_back() {
    promotions_race(&project(&bucket()));
}

#[test]
fn on_a_file_remote_a_promotion_that_loses_the_swap_decides_again() {
    let base = Project::new();
    promotions_race(&file_project(&base.root().join("shared")));
}

/// Two laptops push `production/1.2.0` with different weights; the first
/// is held after its blobs, past its check that the release is absent,
/// while the second pushes to the end: the first's create-only record
/// loses, and it exits 1 naming the release.
fn pushes_race(one: &Project, two: &Project, reader: &Project) {
    one.write("out/model.pt", b"weights of laptop one");
    two.write("out/model.pt", b"weights of laptop two");
    for p in [one, two] {
        p.register(&p.path("out"), &["--id", "20261101_000000"]);
        p.promote("20261101_000000", &["--to", "validated"]);
        p.promote(
            "validated/latest",
            &["--to", "production", "--version", "1.2.0", "--approve"],
        );
    }
    let (child, gate) = paused(one, &["push", "production/1.2.0"], "after-blobs", &[]);
    let won = two.json(&["push", "production/1.2.0"]);
    assert_eq!(won["runs"][0]["state"], "pushed", "{won}");
    let out = resume(child, &gate);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("production/1.2.0 already exists on remote 'origin'")
            && err.contains("release under a new version"),
        "{err}"
    );
    // The winner's weights are the remote's release.
    let c = reader;
    c.json(&["pull", "production/latest"]);
    assert_eq!(
        std::fs::read(c.store().join("production/1.2.0/model.pt")).unwrap(),
        b"weights of laptop two"
    );
}

#[test]
fn of_two_pushes_of_one_release_forced_to_interleave_exactly_one_wins() {
    let b = bucket();
    pushes_race(&project(&b), &project(&b), &project(&b));
}

#[test]
fn on_a_file_remote_two_pushes_forced_to_interleave_one_wins() {
    let base = Project::new();
    let shared = base.root().join("shared");
    pushes_race(
        &file_project(&shared),
        &file_project(&shared),
        &file_project(&shared),
    );
}

/// The catalog index has two writers, a push folding segments in and a
/// cleanup rebuilding it; each is held before its swap while the other
/// writes. No run is lost, and no deleted run comes back.
fn catalog_writers_race(p: &Project) {
    run(p, "", "20261101_000000", "x");
    run(p, "", "20261102_000000", "a");
    run(p, "", "20261103_000000", "b");
    run(p, "", "20261104_000000", "c");
    let listed = |p: &Project| refs(&p.json(&["list", "--remote", "origin"]));
    p.json(&["push", "20261101_000000"]);
    p.json(&["push", "20261102_000000"]);

    // A cleanup read the records and the index; a push adds a run and
    // folds its segment in; the cleanup's swap conflicts, it writes again
    // from what it read: the pushed run is still listed (from its segment).
    let every = [("ARTIFACTCTL_REMOTE_COMPACT_AFTER", "0")];
    let (child, gate) = paused(
        p,
        &["cleanup", "--remote", "origin", "--yes"],
        "remote-swap",
        &every,
    );
    let pushed = p.json(&["push", "20261103_000000"]);
    assert_eq!(pushed["compacted_segments"], 1, "{pushed}");
    resumed_ok(child, &gate);
    assert_eq!(
        listed(p),
        ["20261101_000000", "20261102_000000", "20261103_000000"]
    );

    // A push read the index to fold its segment in; a cleanup removes the
    // oldest run meanwhile; the push's swap conflicts, it reads the new
    // index and folds only what is not in it: the removed run stays gone.
    let (child, gate) = paused(
        p,
        &["push", "20261104_000000", "--json"],
        "remote-swap",
        &every,
    );
    let done = p.json(&["cleanup", "--remote", "origin", "--keep", "3", "--yes"]);
    assert_eq!(done["freed_bytes"], 1, "{done}");
    resumed_ok(child, &gate);
    assert_eq!(
        listed(p),
        ["20261102_000000", "20261103_000000", "20261104_000000"]
    );
    // And once every segment is folded in, the same.
    p.json(&["cleanup", "--remote", "origin", "--yes"]);
    assert_eq!(
        listed(p),
        ["20261102_000000", "20261103_000000", "20261104_000000"]
    );
}

#[test]
fn the_two_writers_of_the_catalog_index_lose_nothing_when_their_swaps_conflict() {
    let b = bucket();
    catalog_writers_race(&project(&b).env("ARTIFACTCTL_REMOTE_COMPACT_AFTER", "0"));
}

#[test]
fn on_a_file_remote_the_two_writers_of_the_catalog_index_lose_nothing() {
    let base = Project::new();
    let p = file_project(&base.root().join("shared")).env("ARTIFACTCTL_REMOTE_COMPACT_AFTER", "0");
    catalog_writers_race(&p);
}

#[test]
fn a_remote_cleanup_killed_at_its_swap_or_mid_removal_leaves_every_listed_run_whole() {
    let b = bucket();
    let p = project(&b);
    four_runs(&p, "");
    p.json(&["push", "--all"]);
    let cleanup = ["cleanup", "--remote", "origin", "--keep", "2", "--yes"];
    // Before its index swap: nothing changed. Mid-removal (the index
    // rebuilt, the records deleted, the marks written, no blob deleted
    // yet): the kept runs are listed and whole.
    for (spec, left) in [("remote-swap:kill", 4), ("mid-removal:kill", 2)] {
        with_fault(p.cmd().args(cleanup), spec);
        let listed = refs(&p.json(&["list", "--remote", "origin"]));
        assert_eq!(listed.len(), left, "{spec}: {listed:?}");
        let q = project(&b);
        let mut pull = vec!["pull"];
        pull.extend(listed.iter().map(String::as_str));
        q.json(&pull);
        q.assert_verifies_clean();
    }
    let done = p.json(&cleanup);
    assert_eq!(done["catalog_runs"], 2, "{done}");
    assert_eq!(
        refs(&p.json(&["list", "--remote", "origin"])),
        ["20261103_000000", "20261104_000000"]
    );
}
