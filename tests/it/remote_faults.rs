//! Remote stores under faults (issue 14): kill -9 at every fault point of
//! push and pull, a full disk during pull, a server that goes away and
//! comes back, and what a forged record may not do. Against the real moto
//! server of `remote.rs`, and a `file://` remote where it matters.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::remote::{bucket, fails, file_project, project, put_object, read_tree, server};
use crate::support::*;

const ID: &str = "20261101_000000";
/// The files of the run these tests push: distinct content each.
const FILES: usize = 6;

/// A project on `bucket` holding run `ID` of `FILES` files.
fn with_run(b: &str) -> Project {
    let p = project(b);
    for i in 0..FILES {
        p.write(
            &format!("out/part_{i}.bin"),
            format!("shard {i} ").repeat(100 + i),
        );
    }
    p.register(&p.path("out"), &["--id", ID]);
    p
}

/// What a reader of the remote sees must be whole: if `show --remote` finds
/// the run, a fresh project pulls it and it verifies clean; `latest`, if
/// set, resolves to a run that pulls too. Returns whether the run is
/// visible.
fn assert_remote_consistent(b: &str) -> bool {
    let q = project(b);
    let show = q
        .cmd()
        .args(["show", "--remote", "origin", ID, "--json"])
        .output()
        .unwrap();
    let visible = show.status.success();
    if !visible {
        let err = String::from_utf8_lossy(&show.stderr);
        assert!(err.contains("has no run"), "{err}");
    } else {
        let pulled = q.json(&["pull", ID]);
        assert_eq!(pulled["runs"][0]["state"], "pulled", "{pulled}");
        q.assert_verifies_clean();
    }
    let r = project(b);
    let latest = r.cmd().args(["pull", "latest", "--json"]).output().unwrap();
    if latest.status.success() {
        r.assert_verifies_clean();
    } else {
        let err = String::from_utf8_lossy(&latest.stderr);
        assert!(err.contains("has no latest"), "{err}");
    }
    visible
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn a_push_killed_at_any_point_leaves_the_remote_whole_and_a_rerun_uploads_only_the_rest() {
    // (fault, files the re-run uploads, whether the run is visible after
    // the kill). One transfer at a time, so `upload@3` means two blobs went
    // up before the kill.
    let cases: [(&str, u64, bool); 6] = [
        ("upload@1", FILES as u64, false),
        ("upload@3", FILES as u64 - 2, false),
        ("upload@6", 1, false),
        ("after-blobs", 0, false),
        ("after-record", 0, true),
        ("before-catalog", 0, true),
    ];
    for (fault, rest, visible) in cases {
        let b = bucket();
        let p = with_run(&b);
        with_fault(p.cmd().args(["push", "--jobs", "1", ID]), fault);
        assert_eq!(assert_remote_consistent(&b), visible, "{fault}");

        // Run again, the push finishes what the killed one left: the blobs
        // missing, and after its record latest, the catalog and journal.
        let again = p.json(&["push", "--jobs", "1", ID]);
        assert_eq!(again["uploaded_files"], rest, "{fault}: {again}");
        assert_eq!(again["runs"][0]["state"], "pushed", "{fault}: {again}");
        let moved = fault != "before-catalog";
        assert_eq!(again["runs"][0]["became_latest"], moved, "{fault}: {again}");
        assert!(assert_remote_consistent(&b), "{fault}");
        let listed = p.json(&["list", "--remote", "origin"]);
        assert_eq!(
            listed["runs"].as_array().unwrap().len(),
            1,
            "{fault}: {listed}"
        );
        let history = p.json(&["history", "--remote", "origin"]);
        assert_eq!(
            history["entries"].as_array().unwrap().len(),
            1,
            "{fault}: {history}"
        );
        // Finished: a third push has nothing left to do.
        let third = p.json(&["push", ID]);
        assert_eq!(third["runs"][0]["state"], "unchanged", "{fault}: {third}");
        let q = project(&b);
        let pulled = q.json(&["pull", "latest"]);
        assert_eq!(pulled["runs"][0]["ref"], format!("raw/{ID}"), "{fault}");
        assert_eq!(
            read_tree(&p.store().join("raw").join(ID)),
            read_tree(&q.store().join("raw").join(ID)),
            "{fault}"
        );
    }
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn a_pull_killed_or_out_of_space_leaves_no_partial_run() {
    let b = bucket();
    let p = with_run(&b);
    p.json(&["push", ID]);
    let whole = read_tree(&p.store().join("raw").join(ID));
    // (fault, whether the run is published when the pull dies there).
    let cases = [
        ("download@1", false),
        ("download@4", false),
        ("staged", false),
        ("before-publish-rename", false),
        ("after-publish-rename", true),
        ("write@1:enospc", false),
        ("write@3:eio", false),
        ("fsync@2:enospc", false),
    ];
    for (fault, published) in cases {
        let q = project(&b);
        let out = with_fault(q.cmd().args(["pull", "--jobs", "1", ID]), fault);
        if fault.contains(':') {
            assert_eq!(out.status.code(), Some(1), "{fault}");
            let err = String::from_utf8_lossy(&out.stderr);
            let reason = if fault.ends_with("enospc") {
                "No space left on device"
            } else {
                "Input/output error"
            };
            assert!(err.contains(reason), "{fault}: {err}");
        }
        let listed = q.list_json(&[]);
        let runs = listed["runs"].as_array().unwrap();
        assert_eq!(runs.len(), usize::from(published), "{fault}: {listed}");
        if published {
            assert_eq!(read_tree(&q.store().join("raw").join(ID)), whole, "{fault}");
        } else {
            assert!(!q.store().join("raw").join(ID).exists(), "{fault}");
        }
        q.assert_verifies_clean();

        // Run again, it completes.
        let again = q.json(&["pull", ID]);
        let state = if published { "present" } else { "pulled" };
        assert_eq!(again["runs"][0]["state"], state, "{fault}: {again}");
        assert_eq!(read_tree(&q.store().join("raw").join(ID)), whole, "{fault}");
        q.assert_verifies_clean();
    }
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn on_a_file_remote_a_killed_push_leaves_only_whole_objects_and_a_full_disk_no_partial_pull() {
    let shared = tempfile::tempdir().unwrap();
    for fault in ["upload@3", "after-blobs", "after-record"] {
        let remote = shared.path().join(fault);
        let p = file_project(&remote);
        for i in 0..FILES {
            p.write(&format!("out/part_{i}.bin"), format!("part {i}").repeat(50));
        }
        p.register(&p.path("out"), &["--id", ID]);
        with_fault(p.cmd().args(["push", "--jobs", "1", ID]), fault);
        // Every blob on the remote is whole: its name is its BLAKE3.
        for entry in walkdir::WalkDir::new(remote.join("blobs")) {
            let entry = entry.unwrap();
            if entry.file_type().is_file() && !entry.file_name().to_string_lossy().starts_with('.')
            {
                let bytes = std::fs::read(entry.path()).unwrap();
                assert_eq!(
                    blake3::hash(&bytes).to_hex().as_str(),
                    entry.file_name().to_string_lossy(),
                    "{fault}"
                );
            }
        }
        let again = p.json(&["push", "--jobs", "1", ID]);
        let rest = if fault == "upload@3" { FILES - 2 } else { 0 };
        assert_eq!(again["uploaded_files"], rest as u64, "{fault}: {again}");
        let q = file_project(&remote);
        // A full disk while pulling from the mount leaves no partial run.
        let out = with_fault(q.cmd().args(["pull", ID]), "write@2:enospc");
        assert_eq!(out.status.code(), Some(1), "{fault}");
        assert!(!q.store().join("raw").join(ID).exists(), "{fault}");
        q.assert_verifies_clean();
        q.json(&["pull", ID]);
        q.assert_verifies_clean();
    }
}

/// A TCP proxy in front of the test server that can be stopped and started
/// again on the same port: a server restart that keeps its data, as S3 or
/// MinIO do (moto keeps everything in memory).
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn new() -> Proxy {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Proxy {
            port,
            up: Arc::new(AtomicBool::new(false)),
            conns: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn start(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        self.up.store(true, Ordering::SeqCst);
        let (up, conns, target) = (self.up.clone(), self.conns.clone(), server());
        std::thread::spawn(move || {
            while up.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut all = conns.lock().unwrap();
                all.push(client.try_clone().unwrap());
                all.push(upstream.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 << 10];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
            // Dropping the listener here frees the port.
        });
    }

    /// Refuse new connections and cut the open ones, like a server that
    /// went down.
    fn stop(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        // The accept loop notices within its 10 ms nap.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `Project::spawn` starts from a clean environment.
const AWS: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
];

/// A project whose remote `origin` reaches bucket `b` through `port`, with
/// `settings` (lines) added to `[remotes.origin]`.
fn project_through(b: &str, port: u16, settings: &str) -> Project {
    let p = Project::new()
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-secret")
        .env("AWS_SESSION_TOKEN", "session-token-secret")
        .env("AWS_REGION", "us-east-1");
    p.write(
        "artifactctl.toml",
        format!(
            "[remote]\ndefault = \"origin\"\n[remotes.origin]\nurl = \"s3://{b}/proj\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\n{settings}\n"
        ),
    );
    p
}

#[test]
fn a_server_that_stays_down_is_named_without_secrets_and_says_what_to_check() {
    let b = bucket();
    let proxy = Proxy::new();
    // Never started: nothing listens on its port.
    let p = project_through(&b, proxy.port, "retries = 1");
    p.write("out/model.pt", b"weights");
    p.register(&p.path("out"), &["--id", ID]);
    for args in [
        &["push", ID][..],
        &["pull", ID],
        &["list", "--remote", "origin"],
    ] {
        let (code, err) = fails(&p, args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!("remote s3://{b}/proj failed")),
            "{err}"
        );
        assert!(
            err.contains("check that the server is reachable"),
            "{args:?}: {err}"
        );
        for secret in ["wJalrXUtnFEMI-secret", "session-token-secret", "Signature="] {
            assert!(!err.contains(secret), "{args:?} leaks {secret}: {err}");
        }
    }
}

/// How long the restart tests keep the server down: a restart's few
/// seconds, longer than ten quick retries can last.
const OUTAGE: Duration = Duration::from_secs(5);

/// `child` has not ended (it is still retrying); its stderr if it has.
fn still_running(child: &mut std::process::Child, what: &str) {
    if let Some(status) = child.try_wait().unwrap() {
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        panic!("the {what} ended ({status}) while the server was down: {err}");
    }
}

#[test]
fn a_remote_that_never_answers_fails_once_its_retry_timeout_is_spent() {
    let b = bucket();
    let proxy = Proxy::new();
    // Never started: nothing listens on its port. A count far beyond what
    // one second of pauses holds: the time is what ends the retries.
    let p = project_through(&b, proxy.port, "retry_timeout = 1\nretries = 100000");
    p.write("out/model.pt", b"weights");
    p.register(&p.path("out"), &["--id", ID]);
    for args in [&["push", ID][..], &["list", "--remote", "origin"]] {
        let (code, err) = fails(&p, args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!("remote s3://{b}/proj failed")),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("check that the server is reachable (network errors are retried for 1 s, [remotes.origin] retry_timeout)"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("wJalrXUtnFEMI-secret"), "{args:?}: {err}");
    }
}

#[test]
fn a_bad_retry_timeout_is_a_usage_error_naming_it() {
    // Refused before any request: no bucket is needed.
    let b = "unused";
    let cases = [
        (
            "retry_timeout = 0",
            None,
            "retry_timeout = 0 leaves no time to retry",
        ),
        ("retry_timeout = -1", None, "retry_timeout"),
        ("retry_timeout = \"30s\"", None, "retry_timeout"),
        (
            "",
            Some("soon"),
            "ARTIFACTCTL_REMOTES_ORIGIN_RETRY_TIMEOUT=\"soon\": expected a whole number",
        ),
    ];
    for (setting, var, says) in cases {
        let p = project_through(b, 9, setting);
        let mut cmd = p.cmd();
        cmd.args(["list", "--remote", "origin"]);
        if let Some(value) = var {
            cmd.env("ARTIFACTCTL_REMOTES_ORIGIN_RETRY_TIMEOUT", value);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{setting} {var:?}: {err}");
        assert!(err.contains(says), "{setting} {var:?}: {err}");
    }
}

#[test]
fn a_push_and_a_pull_retried_across_a_server_restart_succeed() {
    let b = bucket();
    let proxy = Proxy::new();
    proxy.start();
    let p = project_through(&b, proxy.port, "");
    p.write("one/model.pt", b"first weights");
    p.register(&p.path("one"), &["--id", ID]);
    p.json(&["push", ID]);

    // Down before the command starts, for longer than ten quick retries
    // last: it keeps retrying, within its 30 s budget, until the server
    // is back.
    proxy.stop();
    p.write("two/model.pt", b"second weights");
    p.register(&p.path("two"), &["--id", "20261102_000000"]);
    let mut push = p.spawn(&["push", "20261102_000000", "--json"], AWS);
    std::thread::sleep(OUTAGE);
    still_running(&mut push, "push");
    proxy.start();
    let out = push.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pushed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pushed["runs"][0]["state"], "pushed", "{pushed}");

    // And a pull the same way.
    let q = project_through(&b, proxy.port, "");
    proxy.stop();
    let mut pull = q.spawn(&["pull", "latest", "--json"], AWS);
    std::thread::sleep(OUTAGE);
    still_running(&mut pull, "pull");
    proxy.start();
    let out = pull.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pulled: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pulled["runs"][0]["ref"], "raw/20261102_000000", "{pulled}");
    q.assert_verifies_clean();
    proxy.stop();
}

/// A record of one file `path` (with `symlink` if given) whose content is
/// `blob`'s.
fn forged(id: &str, path: &str, hash: &str, symlink: Option<&str>) -> String {
    let link = symlink.map_or(String::new(), |t| format!(r#","symlink":"{t}""#));
    format!(
        r#"{{"schema_version":1,"id":"{id}","namespace":"","stage":"raw","created_at":"2026-11-01T00:00:00Z","status":"complete","files":[{{"path":"{path}","size":4,"blake3":"{hash}"{link}}}],"total_size":4,"file_count":1}}"#
    )
}

#[test]
fn forged_records_write_nothing_outside_the_store_and_publish_nothing() {
    let b = bucket();
    let hash = blake3::hash(b"evil").to_hex().to_string();
    put_object(&b, &format!("blobs/{}/{hash}", &hash[..2]), b"evil");
    let p = project(&b);
    let outside = p.root().parent().unwrap().join("evil-target");
    let cases: [(&str, String, &str); 6] = [
        (
            "20261101_000001",
            forged("20261101_000001", "/tmp/evil", &hash, None),
            "not a plain path",
        ),
        (
            "20261101_000002",
            forged("20261101_000002", "a/../../evil", &hash, None),
            "not a plain path",
        ),
        (
            "20261101_000003",
            forged(
                "20261101_000003",
                "link",
                &hash,
                Some("../../../evil-target"),
            ),
            "outside the run",
        ),
        (
            "20261101_000004",
            forged(
                "20261101_000004",
                "link",
                &hash,
                Some(outside.to_str().unwrap()),
            ),
            "outside the run",
        ),
        // A record stored under one id that names another.
        (
            "20261101_000005",
            forged("20261101_000009", "ok", &hash, None),
            "instead",
        ),
        (
            "20261101_000006",
            forged("20261101_000006", "metadata.json", &hash, None),
            "not a plain path",
        ),
    ];
    for (id, record, why) in &cases {
        put_object(&b, &format!("runs/raw/ns=/{id}.json"), record.as_bytes());
        let (code, err) = fails(&p, &["pull", id]);
        assert_eq!(code, Some(1), "{id}: {err}");
        assert!(
            err.contains("is refused") && err.contains(why),
            "{id}: {err}"
        );
    }
    // A wrong blob hash: the content is checked before anything is published.
    let other = blake3::hash(b"good").to_hex().to_string();
    put_object(&b, &format!("blobs/{}/{other}", &other[..2]), b"evil");
    put_object(
        &b,
        "runs/raw/ns=/20261101_000007.json",
        forged("20261101_000007", "model.pt", &other, None).as_bytes(),
    );
    let (code, err) = fails(&p, &["pull", "20261101_000007"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("does not match its name"), "{err}");

    assert!(!outside.exists() && !std::path::Path::new("/tmp/evil").exists());
    assert!(!p.root().parent().unwrap().join("evil").exists());
    assert_eq!(p.list_json(&[])["runs"].as_array().unwrap().len(), 0);
    p.assert_verifies_clean();
    // Nothing was left in the store but its own bookkeeping.
    let stray: Vec<_> = walkdir::WalkDir::new(p.store())
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file() && !e.path().to_string_lossy().contains(".artifactctl"))
        .map(|e| e.path().display().to_string())
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

/// How many blobs the test server holds in `bucket`.
fn blobs_on_server(bucket: &str) -> usize {
    let (code, body) = crate::remote::http(
        "GET",
        server(),
        &format!("/{bucket}?list-type=2&prefix=proj/blobs/"),
        b"",
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    body.matches("<Key>").count()
}

#[test]
fn a_push_cut_off_midway_by_a_server_restart_completes_when_run_again() {
    let b = bucket();
    let proxy = Proxy::new();
    proxy.start();
    let p = project_through(&b, proxy.port, "");
    // Files of a MiB and more go up one blob each (smaller ones would
    // travel in a few packs).
    const MANY: usize = 40;
    for i in 0..MANY {
        let mut content = format!("blob {i} ").into_bytes();
        content.resize((1 << 20) + i, b'.');
        p.write(&format!("out/{i:03}.bin"), content);
    }
    p.register(&p.path("out"), &["--id", ID]);
    let push = p.spawn(&["push", ID, "--jobs", "2"], AWS);
    // Mid-way: once some of its blobs are on the server, the server goes
    // down, cutting the requests in flight, and comes back.
    for _ in 0..3000 {
        if blobs_on_server(&b) >= 8 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    proxy.stop();
    std::thread::sleep(Duration::from_millis(1500));
    proxy.start();
    let out = push.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // A create-only put cut off mid-answer is not sent again (it may have
    // landed): the push either rode out the restart or failed naming the
    // remote. Either way no record names missing content.
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("remote s3://{b}/proj failed")),
            "{err}"
        );
    }
    let there = blobs_on_server(&b);
    let again = p.json(&["push", ID, "--jobs", "2"]);
    assert_eq!(
        again["uploaded_files"],
        (MANY - there) as u64,
        "only what is missing goes up: {again}"
    );
    assert_eq!(blobs_on_server(&b), MANY);
    let q = project(&b);
    q.json(&["pull", ID]);
    q.assert_verifies_clean();
    assert_eq!(
        read_tree(&p.store().join("raw").join(ID)),
        read_tree(&q.store().join("raw").join(ID))
    );
    proxy.stop();
}

#[test]
fn a_large_file_goes_up_in_parts_and_a_changed_one_leaves_no_blob() {
    let b = bucket();
    let p = project(&b);
    // Over the 32 MiB the parts start at: five 8 MiB parts.
    let big: Vec<u8> = (0..40u32 << 20).map(|i| (i % 251) as u8).collect();
    p.write("out/model.bin", &big);
    p.register(&p.path("out"), &["--id", ID]);
    let pushed = p.json(&["push", ID]);
    assert_eq!(pushed["uploaded_bytes"], big.len() as u64, "{pushed}");
    let q = project(&b);
    q.json(&["pull", ID]);
    q.assert_verifies_clean();
    assert_eq!(
        std::fs::read(q.store().join("raw").join(ID).join("model.bin")).unwrap(),
        big
    );

    // Changed on disk since its manifest: the upload is abandoned before
    // it completes, so the remote holds nothing under the recorded hash.
    let c = bucket();
    let r = project(&c);
    r.write("out/model.bin", &big);
    r.register(&r.path("out"), &["--id", ID]);
    let stored = r.store().join("raw").join(ID).join("model.bin");
    let mut changed = big.clone();
    changed[30 << 20] ^= 1;
    std::fs::write(&stored, &changed).unwrap();
    let (code, err) = fails(&r, &["push", ID]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("does not match its manifest"), "{err}");
    assert_eq!(blobs_on_server(&c), 0);
    let (_, shown) = fails(&r, &["show", "--remote", "origin", ID]);
    assert!(shown.contains("has no run"), "{shown}");
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "the ARTIFACTCTL_FAULT hook exists only in debug builds"
)]
fn a_release_push_killed_after_its_record_moves_production_latest_when_run_again_and_a_rollback_stays(
) {
    let b = bucket();
    let p = project(&b);
    p.released("gru/BTCEUR", &["1.0.0", "1.1.0"]);
    p.json(&["push", "production/gru/BTCEUR/1.0.0"]);
    with_fault(
        p.cmd().args(["push", "production/gru/BTCEUR/1.1.0"]),
        "after-record",
    );
    assert_eq!(crate::remote::remote_latest(&p, "gru/BTCEUR"), "1.0.0");
    let again = p.json(&["push", "production/gru/BTCEUR/1.1.0"]);
    assert_eq!(again["runs"][0]["state"], "pushed", "{again}");
    assert_eq!(again["runs"][0]["became_latest"], true, "{again}");
    assert_eq!(crate::remote::remote_latest(&p, "gru/BTCEUR"), "1.1.0");

    // A finished push leaves no marker: after a rollback on the remote,
    // pushing the newer release again does not undo it.
    p.json(&["rollback", "gru/BTCEUR", "--remote", "origin"]);
    assert_eq!(crate::remote::remote_latest(&p, "gru/BTCEUR"), "1.0.0");
    let third = p.json(&["push", "production/gru/BTCEUR/1.1.0"]);
    assert_eq!(third["runs"][0]["state"], "unchanged", "{third}");
    assert_eq!(third["runs"][0]["became_latest"], false, "{third}");
    assert_eq!(crate::remote::remote_latest(&p, "gru/BTCEUR"), "1.0.0");
}
