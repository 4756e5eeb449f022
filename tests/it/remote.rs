//! push and pull against a real S3 server: moto's server mode on loopback,
//! one per test run, one bucket per test. `make test` installs moto into
//! `target/motovenv`; without it these tests fail with the reason.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// The server's port, started once; the error says why it could not start.
pub(crate) fn server() -> u16 {
    static PORT: OnceLock<Result<u16, String>> = OnceLock::new();
    match PORT.get_or_init(start_server) {
        Ok(port) => *port,
        Err(why) => panic!("the moto S3 server cannot start: {why}"),
    }
}

fn start_server() -> Result<u16, String> {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/motovenv/bin/moto_server");
    if !bin.is_file() {
        return Err(format!(
            "{} is missing; run `make test` (it installs moto[server] there) or `python3 -m venv target/motovenv && target/motovenv/bin/pip install 'moto[server]'`",
            bin.display()
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let (tx, rx) = std::sync::mpsc::channel();
    // A thread that lives as long as the test process spawns the server, so
    // PR_SET_PDEATHSIG ends the server when the suite exits.
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn();
        let _ = tx.send(child.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        if let Ok(mut child) = child {
            let _ = child.wait();
        }
    });
    rx.recv()
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{}: {e}", "moto_server"))?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if http("GET", port, "/", b"").is_ok() {
            return Ok(port);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "moto_server on 127.0.0.1:{port} did not answer within 60 s"
    ))
}

/// A plain HTTP request to the server (moto takes unsigned requests):
/// the status code and body.
pub(crate) fn http(
    method: &str,
    port: u16,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((code, body))
}

/// A fresh bucket for one test.
pub(crate) fn bucket() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let port = server();
    let name = format!(
        "t{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let (code, body) = http("PUT", port, &format!("/{name}"), b"").expect("create bucket");
    assert_eq!(code, 200, "creating bucket {name}: {body}");
    name
}

/// A project whose remote `origin` is `bucket` on the test server.
pub(crate) fn project(bucket: &str) -> Project {
    let p = Project::new()
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1");
    p.write(
        "artifactctl.toml",
        format!(
            "[remote]\ndefault = \"origin\"\n[remotes.origin]\nurl = \"s3://{bucket}/proj\"\nendpoint = \"http://127.0.0.1:{}\"\nregion = \"us-east-1\"\n",
            server()
        ),
    );
    p
}

pub(crate) fn put_object(bucket: &str, key: &str, body: &[u8]) {
    let (code, text) = http("PUT", server(), &format!("/{bucket}/proj/{key}"), body).unwrap();
    assert_eq!(code, 200, "{text}");
}

pub(crate) fn read_tree(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file() && e.file_name() != "metadata.json")
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// `c` pulls production `latest` of gru/BTCEUR and the raw run it came
/// from; both must be `version` and its source, byte for byte as in `a`.
fn pull_release_and_its_source(a: &Project, c: &Project, version: &str) {
    let pulled = c.json(&[
        "pull",
        "production/gru/BTCEUR/latest",
        "gru/BTCEUR/20261123_101500",
    ]);
    let release = format!("production/gru/BTCEUR/{version}");
    assert_eq!(pulled["runs"][0]["ref"], release.as_str(), "{pulled}");
    for sub in [release.as_str(), "raw/gru/BTCEUR/20261123_101500"] {
        assert_eq!(
            read_tree(&a.store().join(sub)),
            read_tree(&c.store().join(sub)),
            "{sub}"
        );
    }
}

#[test]
fn a_raw_run_and_a_release_go_up_and_come_back_whole() {
    let b = bucket();
    let a = project(&b);
    a.released("gru/BTCEUR", &["1.0.0"]);
    let pushed = a.json(&["push", "--all"]);
    let runs = pushed["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "{pushed}");
    assert!(runs.iter().all(|r| r["state"] == "pushed"), "{pushed}");

    let again = a.json(&["push", "--all"]);
    assert!(
        again["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "unchanged"),
        "{again}"
    );
    assert_eq!(again["uploaded_bytes"], 0);

    let c = project(&b);
    pull_release_and_its_source(&a, &c, "1.0.0");
    let latest = c.json(&["show", "production/gru/BTCEUR/latest"]);
    assert_eq!(latest["run"]["id"], "1.0.0");
    c.assert_verifies_clean();
}

#[test]
fn a_dataset_shared_by_two_runs_goes_up_once() {
    let b = bucket();
    let p = project(&b);
    let dataset = vec![7u8; 300_000];
    p.write("one/data/train.csv", &dataset);
    p.write("one/model.pt", b"model one");
    p.write("two/data/train.csv", &dataset);
    p.write("two/model.pt", b"model two, longer");
    p.register(&p.path("one"), &["--id", "20261101_000000"]);
    let first = p.json(&["push", "20261101_000000"]);
    assert_eq!(first["uploaded_bytes"], 300_000 + 9, "{first}");
    p.register(&p.path("two"), &["--id", "20261102_000000"]);
    let second = p.json(&["push", "20261102_000000"]);
    assert_eq!(
        second["uploaded_bytes"], 17,
        "only the model goes up: {second}"
    );
    assert_eq!(second["runs"][0]["present_files"], 1, "{second}");
    assert_eq!(second["runs"][0]["became_latest"], true, "{second}");

    // A pull into a store that holds the dataset links it instead.
    let q = project(&b);
    q.write("mine/data/train.csv", &dataset);
    q.register(&q.path("mine"), &["--id", "20261001_000000"]);
    let pulled = q.json(&["pull", "20261102_000000"]);
    assert_eq!(pulled["downloaded_bytes"], 17, "{pulled}");
    assert_eq!(pulled["linked_files"], 1, "{pulled}");
    // Shared without a copy where that is safe: a read-only local file (as
    // validated and production runs hold) is hard-linked.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mine = q.store().join("raw/20261001_000000/data/train.csv");
    std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o444)).unwrap();

    let inode = |run: &str| {
        std::fs::metadata(q.store().join("raw").join(run).join("data/train.csv"))
            .unwrap()
            .ino()
    };
    assert_ne!(
        inode("20261001_000000"),
        inode("20261102_000000"),
        "a writable file is copied"
    );
    q.cmd()
        .args(["delete", "20261102_000000", "--yes"])
        .assert()
        .success();
    let again = q.json(&["pull", "20261102_000000"]);
    assert_eq!(again["linked_files"], 1, "{again}");
    assert_eq!(inode("20261001_000000"), inode("20261102_000000"));
}

#[test]
fn of_two_racing_pushes_of_one_release_exactly_one_wins() {
    let b = bucket();
    let one = project(&b);
    let two = project(&b);
    one.write("out/model.pt", b"weights of laptop one");
    two.write("out/model.pt", b"weights of laptop two");
    for p in [&one, &two] {
        p.register(&p.path("out"), &["--id", "20261101_000000"]);
        p.promote("20261101_000000", &["--to", "validated"]);
        p.promote(
            "validated/latest",
            &["--to", "production", "--version", "1.2.0", "--approve"],
        );
    }
    let spawn = |p: &Project| {
        p.cmd()
            .args(["push", "production/1.2.0"])
            .output()
            .expect("run")
    };
    let (a, c) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn(&one));
        let c = s.spawn(|| spawn(&two));
        (a.join().unwrap(), c.join().unwrap())
    });
    let codes = [a.status.code(), c.status.code()];
    assert!(
        codes == [Some(0), Some(1)] || codes == [Some(1), Some(0)],
        "{codes:?}: {} / {}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&c.stderr)
    );
    let loser = if a.status.success() { &c } else { &a };
    let err = String::from_utf8_lossy(&loser.stderr);
    assert!(
        err.contains("production/1.2.0 already exists on remote 'origin'"),
        "{err}"
    );
}

#[test]
fn latest_moves_only_forward_under_compare_and_swap() {
    let b = bucket();
    let p = project(&b);
    p.write("new/model.pt", b"new");
    p.write("old/model.pt", b"old");
    // Registered in this order, so the old run is also created first.
    p.register(&p.path("old"), &["--id", "20261101_000000"]);
    p.register(&p.path("new"), &["--id", "20261105_000000"]);
    let newer = p.json(&["push", "20261105_000000"]);
    assert_eq!(newer["runs"][0]["became_latest"], true);
    // An older run pushed later leaves the remote latest where it is.
    let older = p.json(&["push", "20261101_000000"]);
    assert_eq!(older["runs"][0]["became_latest"], false, "{older}");
    let q = project(&b);
    let pulled = q.json(&["pull", "latest"]);
    assert_eq!(pulled["runs"][0]["ref"], "raw/20261105_000000");
}

#[test]
fn a_forged_record_is_refused_and_nothing_is_written_outside_the_store() {
    let b = bucket();
    let p = project(&b);
    let hash = blake3::hash(b"evil").to_hex().to_string();
    put_object(&b, &format!("blobs/{}/{hash}", &hash[..2]), b"evil");
    let record = |id: &str, path: &str| {
        format!(
            r#"{{"schema_version":1,"id":"{id}","namespace":"","stage":"raw","created_at":"2026-11-01T00:00:00Z","status":"complete","files":[{{"path":"{path}","size":4,"blake3":"{hash}"}}],"total_size":4,"file_count":1}}"#
        )
    };
    put_object(
        &b,
        "runs/raw/ns=/20261101_000000.json",
        record("20261101_000000", "../../../evil").as_bytes(),
    );
    put_object(&b, "runs/raw/ns=/..json", record("..", "ok").as_bytes());
    let out = p.cmd().args(["pull", "20261101_000000"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is refused") && err.contains("not a plain path"),
        "{err}"
    );

    // A bad id is bad input before anything is read.
    let out = p.cmd().args(["pull", ".."]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!p.path("evil").exists() && !p.root().parent().unwrap().join("evil").exists());
    assert!(!p.store().join("raw/20261101_000000").exists());
}

#[test]
fn a_blob_that_does_not_match_its_hash_names_itself_and_nothing_is_published() {
    let b = bucket();
    let hash = blake3::hash(b"true weights").to_hex().to_string();
    let key = format!("blobs/{}/{hash}", &hash[..2]);
    put_object(&b, &key, b"swapped weights");
    put_object(
        &b,
        "runs/raw/ns=/20261101_000000.json",
        format!(
            r#"{{"schema_version":1,"id":"20261101_000000","namespace":"","stage":"raw","created_at":"2026-11-01T00:00:00Z","status":"complete","files":[{{"path":"model.pt","size":12,"blake3":"{hash}"}}],"total_size":12,"file_count":1}}"#
        )
        .as_bytes(),
    );
    let q = project(&b);
    let out = q.cmd().args(["pull", "20261101_000000"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&key) && err.contains("does not match"),
        "{err}"
    );
    assert!(!q.store().join("raw/20261101_000000").exists());
    let v: Value = q.json(&["list"]);
    assert_eq!(v["runs"].as_array().unwrap().len(), 0);
}

/// Snapshot settings that also hide the per-test bucket name.
pub(crate) fn remote_snapshots(p: &Project) -> insta::Settings {
    let mut settings = snapshot_settings(Some(p.root()));
    settings.add_filter(r"s3://t\d+-\d+/", "s3://[BUCKET]/");
    // Whoever approved, whatever the environment calls them.
    settings.add_filter(r"(?m)^(  by +)\S+$", "$1[USER]");
    settings
}

#[test]
fn list_and_show_read_the_remote_without_pulling() {
    let b = bucket();
    let a = project(&b);
    a.released("gru/BTCEUR", &["1.0.0", "1.1.0"]);
    a.json(&["push", "--all"]);

    let c = project(&b);
    let local = a.json(&["list", "--stage", "all"]);
    let remote = c.json(&["list", "--stage", "all", "--remote", "origin"]);
    let shape = |v: &Value| {
        let mut runs: Vec<(String, bool, u64, u64, u64)> = v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["ref"].as_str().unwrap().to_string(),
                    r["latest"].as_bool().unwrap(),
                    r["size_bytes"].as_u64().unwrap(),
                    r["file_count"].as_u64().unwrap(),
                    r["model_count"].as_u64().unwrap(),
                )
            })
            .collect();
        runs.sort();
        runs
    };
    assert_eq!(shape(&remote), shape(&local), "{remote}");
    assert_eq!(shape(&remote).len(), 4);
    // Nothing was pulled.
    assert_eq!(
        c.list_json(&["--stage", "all"])["runs"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let only = c.json(&["list", "production", "--remote", "origin"]);
    let refs: Vec<&str> = only["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ref"].as_str().unwrap())
        .collect();
    assert_eq!(refs.len(), 2, "{only}");
    assert!(refs.iter().all(|r| r.starts_with("production/gru/BTCEUR/")));

    let shown = c.json(&["show", "production/gru/BTCEUR/latest", "--remote", "origin"]);
    let here = a.json(&["show", "production/gru/BTCEUR/latest"]);
    assert_eq!(shown["run"]["id"], "1.1.0", "{shown}");
    assert_eq!(shown["run"]["latest"], true);
    for key in [
        "ref",
        "metrics",
        "params",
        "size_bytes",
        "files",
        "model_count",
    ] {
        assert_eq!(shown["run"][key], here["run"][key], "{key}");
    }
    let older = c.json(&["show", "production/gru/BTCEUR/1.0.0", "--remote", "origin"]);
    assert_eq!(older["run"]["latest"], false);

    let table = stdout_of(c.cmd().args(["list", "production", "--remote", "origin"]));
    remote_snapshots(&c).bind(|| insta::assert_snapshot!("remote_list_production", table));
    let text =
        stdout_of(
            c.cmd()
                .args(["show", "production/gru/BTCEUR/1.0.0", "--remote", "origin"]),
        );
    remote_snapshots(&c).bind(|| insta::assert_snapshot!("remote_show_release", text));

    let missing = c
        .cmd()
        .args(["show", "production/gru/BTCEUR/9.9.9", "--remote", "origin"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("has no run production/gru/BTCEUR/9.9.9"),
        "{err}"
    );
}

#[test]
fn history_reads_the_remote_journal_objects() {
    let b = bucket();
    let a = project(&b);
    a.released("gru/BTCEUR", &["1.0.0"]);
    a.json(&["push", "production/gru/BTCEUR/1.0.0"]);
    a.json(&["push", "--all"]);
    let c = project(&b);
    let h = c.json(&["history", "--remote", "origin"]);
    let entries = h["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{h}");
    assert!(entries.iter().all(|e| e["action"] == "push"), "{h}");
    assert_eq!(
        entries[0]["runs"],
        serde_json::json!(["production/gru/BTCEUR/1.0.0"]),
        "oldest first: {h}"
    );
    assert_eq!(entries[1]["runs"].as_array().unwrap().len(), 2, "{h}");
    // The local journal is not the remote's.
    let local = c.json(&["history"]);
    assert_eq!(local["entries"].as_array().unwrap().len(), 0);
    // A damaged journal object is reported, the rest shown.
    put_object(&b, "journal/99999999T000000Z-bad.json", b"not json");
    let h = c.json(&["history", "--remote", "origin", "--action", "push"]);
    assert_eq!(h["entries"].as_array().unwrap().len(), 2);
    assert_eq!(h["problems"].as_array().unwrap().len(), 1, "{h}");
}

/// A project whose remote `origin` is the folder `shared` (a shared mount).
pub(crate) fn file_project(shared: &std::path::Path) -> Project {
    let p = Project::new();
    p.write(
        "artifactctl.toml",
        format!(
            "[remote]\ndefault = \"origin\"\n[remotes.origin]\nurl = \"file://{}\"\n",
            shared.display()
        ),
    );
    p
}

#[test]
fn a_file_remote_on_a_shared_mount_round_trips_with_the_same_layout() {
    let base = Project::new();
    let shared = base.root().join("shared");
    let a = file_project(&shared);
    a.released("gru/BTCEUR", &["1.0.0", "1.1.0"]);
    let pushed = a.json(&["push", "--all"]);
    assert_eq!(pushed["runs"].as_array().unwrap().len(), 4, "{pushed}");
    let again = a.json(&["push", "--all"]);
    assert_eq!(again["uploaded_bytes"], 0, "{again}");

    // The object layout, with latest as create-only generations.
    let gens = shared.join("latest/production/ns=gru,BTCEUR");
    let names: Vec<String> = std::fs::read_dir(&gens)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.is_empty() && names.iter().all(|n| n.len() == 20),
        "{names:?}"
    );
    assert!(shared
        .join("runs/production/ns=gru,BTCEUR/1.1.0.json")
        .is_file());

    let c = file_project(&shared);
    let listed = c.json(&["list", "production", "--remote", "origin"]);
    assert_eq!(listed["runs"].as_array().unwrap().len(), 2, "{listed}");
    pull_release_and_its_source(&a, &c, "1.1.0");
    c.assert_verifies_clean();
    let h = c.json(&["history", "--remote", "origin"]);
    assert_eq!(h["entries"].as_array().unwrap().len(), 1, "{h}");
    // Garbage collection there: every blob is referenced.
    let gc = c.json(&["cleanup", "--remote", "origin", "--yes"]);
    assert_eq!(gc["deleted"], 0, "{gc}");
    assert_eq!(gc["waiting"], 0, "{gc}");
    assert!(gc["referenced"].as_u64().unwrap() > 0, "{gc}");
    // Swapped objects are folders of generations there; a second cleanup
    // swaps the marks over the first's.
    assert!(shared.join("gc/marks.json").is_dir());
    let again = c.json(&["cleanup", "--remote", "origin", "--yes"]);
    assert_eq!(again["deleted"], 0, "{again}");
    assert!(shared.join("catalog/index").is_dir());
}

#[test]
fn on_a_file_remote_of_two_racing_pushes_of_one_release_exactly_one_wins() {
    let base = Project::new();
    let shared = base.root().join("shared");
    let one = file_project(&shared);
    let two = file_project(&shared);
    one.write("out/model.pt", b"weights of laptop one");
    two.write("out/model.pt", b"weights of laptop two");
    for p in [&one, &two] {
        p.register(&p.path("out"), &["--id", "20261101_000000"]);
        p.promote("20261101_000000", &["--to", "validated"]);
        p.promote(
            "validated/latest",
            &["--to", "production", "--version", "1.2.0", "--approve"],
        );
    }
    let (a, c) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            one.cmd()
                .args(["push", "production/1.2.0"])
                .output()
                .unwrap()
        });
        let c = s.spawn(|| {
            two.cmd()
                .args(["push", "production/1.2.0"])
                .output()
                .unwrap()
        });
        (a.join().unwrap(), c.join().unwrap())
    });
    let codes = [a.status.code(), c.status.code()];
    assert!(
        codes == [Some(0), Some(1)] || codes == [Some(1), Some(0)],
        "{codes:?}: {} / {}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&c.stderr)
    );
    // The winner's release is the remote's latest, in one generation.
    let gens = std::fs::read_dir(shared.join("latest/production/ns="))
        .unwrap()
        .count();
    assert_eq!(gens, 1);
}

pub(crate) fn remote_latest(p: &Project, ns: &str) -> Value {
    p.json(&[
        "show",
        &format!("production/{ns}/latest"),
        "--remote",
        "origin",
    ])["run"]["id"]
        .clone()
}

pub(crate) fn fails(p: &Project, args: &[&str]) -> (Option<i32>, String) {
    let out = p.cmd().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn promote_and_rollback_move_the_remote_latest_by_compare_and_swap() {
    let b = bucket();
    let a = project(&b);
    a.released("gru/BTCEUR", &["1.0.0", "1.1.0", "1.2.0"]);
    a.json(&["push", "--all"]);
    assert_eq!(remote_latest(&a, "gru/BTCEUR"), "1.2.0");

    // Another machine rolls the remote back, without pulling anything.
    let c = project(&b);
    let back = c.json(&["rollback", "gru/BTCEUR", "--remote", "origin"]);
    assert_eq!(back["from"], "1.2.0", "{back}");
    assert_eq!(back["to"], "1.1.0", "{back}");
    assert_eq!(back["moved"], true);
    assert_eq!(remote_latest(&c, "gru/BTCEUR"), "1.1.0");
    let back = c.json(&[
        "rollback",
        "gru/BTCEUR",
        "--remote",
        "origin",
        "--to",
        "1.0.0",
    ]);
    assert_eq!(back["to"], "1.0.0", "{back}");
    assert_eq!(
        c.list_json(&["--stage", "all"])["runs"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // Rollback never moves forward, promote never back.
    let (code, err) = fails(
        &c,
        &[
            "rollback",
            "gru/BTCEUR",
            "--remote",
            "origin",
            "--to",
            "1.2.0",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("rollback moves latest only back"), "{err}");
    let (code, err) = fails(
        &c,
        &[
            "promote",
            "production/gru/BTCEUR/1.2.0",
            "--remote",
            "origin",
        ],
    );
    assert_eq!(code, Some(2), "production needs --approve: {err}");
    assert!(err.contains("--approve"), "{err}");
    let dry = c.json(&[
        "promote",
        "production/gru/BTCEUR/1.2.0",
        "--remote",
        "origin",
        "--dry-run",
    ]);
    assert_eq!(dry["moved"], false, "{dry}");
    assert_eq!(remote_latest(&c, "gru/BTCEUR"), "1.0.0");
    let fwd = c.json(&[
        "promote",
        "production/gru/BTCEUR/1.2.0",
        "--remote",
        "origin",
        "--approve",
    ]);
    assert_eq!(
        (fwd["from"].clone(), fwd["moved"].clone()),
        ("1.0.0".into(), true.into())
    );
    let (code, err) = fails(
        &c,
        &[
            "promote",
            "production/gru/BTCEUR/1.1.0",
            "--remote",
            "origin",
            "--approve",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("promote moves latest only forward"), "{err}");
    assert_eq!(remote_latest(&c, "gru/BTCEUR"), "1.2.0");
    // A run the remote does not hold is not found; flags of a local
    // promotion are bad input.
    let (code, _) = fails(
        &c,
        &[
            "promote",
            "production/gru/BTCEUR/9.0.0",
            "--remote",
            "origin",
            "--approve",
        ],
    );
    assert_eq!(code, Some(2));
    let (code, err) = fails(
        &c,
        &[
            "promote",
            "gru/BTCEUR/20261123_101500",
            "--remote",
            "origin",
            "--to",
            "validated",
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--to does not apply with --remote"), "{err}");

    let h = c.json(&[
        "history", "--remote", "origin", "--action", "rollback", "--action", "promote",
    ]);
    let actions: Vec<&str> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["rollback", "rollback", "promote"], "{h}");
}

#[test]
fn a_raw_run_promoted_on_a_file_remote_moves_its_latest_forward_only() {
    let base = Project::new();
    let shared = base.root().join("shared");
    let p = file_project(&shared);
    p.write("old/model.pt", b"old");
    p.write("new/model.pt", b"new");
    p.register(&p.path("old"), &["--id", "20261101_000000"]);
    p.register(&p.path("new"), &["--id", "20261105_000000"]);
    p.json(&["push", "20261101_000000"]);
    let (code, err) = fails(
        &p,
        &["promote", "raw/20261105_000000", "--remote", "origin"],
    );
    assert_eq!(code, Some(2), "not pushed yet: {err}");
    assert!(err.contains("has no run raw/20261105_000000"), "{err}");
    let pushed = p.json(&["push", "20261105_000000"]);
    assert_eq!(pushed["runs"][0]["became_latest"], true, "{pushed}");
    let (code, err) = fails(
        &p,
        &["promote", "raw/20261101_000000", "--remote", "origin"],
    );
    assert_eq!(code, Some(1), "{err}");
    let again = p.json(&["promote", "raw/20261105_000000", "--remote", "origin"]);
    assert_eq!(again["moved"], false, "already latest: {again}");
    assert_eq!(again["ref"], "raw/20261105_000000");
}

/// A command at `now` (ARTIFACTCTL_NOW), with `--json`: its document.
pub(crate) fn json_at(p: &Project, now: chrono::DateTime<chrono::Utc>, args: &[&str]) -> Value {
    let out = p
        .cmd()
        .env("ARTIFACTCTL_NOW", now.to_rfc3339())
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A cleanup of the remote at `now` (ARTIFACTCTL_NOW).
pub(crate) fn gc(p: &Project, now: chrono::DateTime<chrono::Utc>) -> Value {
    json_at(p, now, &["cleanup", "--remote", "origin", "--yes"])
}

#[test]
fn garbage_collection_deletes_only_what_stayed_unreferenced_past_the_grace() {
    let b = bucket();
    let p = project(&b);
    p.write("one/model.pt", b"the model");
    p.register(&p.path("one"), &["--id", "20261101_000000"]);
    p.json(&["push", "20261101_000000"]);
    // Content no record references: an orphan, and one a push will need.
    let orphan = blake3::hash(b"orphan").to_hex().to_string();
    put_object(&b, &format!("blobs/{}/{orphan}", &orphan[..2]), b"orphan");
    let needed = blake3::hash(b"needed later").to_hex().to_string();
    put_object(
        &b,
        &format!("blobs/{}/{needed}", &needed[..2]),
        b"needed later",
    );

    // Without --yes, nothing is marked.
    let dry = p.json(&["cleanup", "--remote", "origin"]);
    assert_eq!(
        (dry["dry_run"].clone(), dry["newly_marked"].clone()),
        (true.into(), 2.into())
    );

    // Phase 1, 30 hours ago: both marked, nothing deleted.
    let hours = chrono::Duration::hours;
    let first = gc(&p, chrono::Utc::now() - hours(30));
    assert_eq!(first["blobs"], 3, "{first}");
    assert_eq!(first["referenced"], 1, "{first}");
    assert_eq!(first["newly_marked"], 2, "{first}");
    assert_eq!(first["deleted"], 0, "{first}");

    // A push in flight needs the marked blob: it uploads it again (killed
    // before its record), which refreshes its time past `between` (object
    // times have whole seconds, hence the pauses; nothing is timed).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let between = chrono::Utc::now();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    p.write("two/model.pt", b"needed later");
    p.register(&p.path("two"), &["--id", "20261102_000000"]);
    with_fault(
        p.cmd().args(["push", "20261102_000000"]),
        "after-blobs:kill",
    );

    // Phase 2, a grace after `between`: the orphan goes; the re-uploaded
    // blob waits.
    let second = gc(&p, between + hours(24));
    assert_eq!(second["deleted"], 1, "{second}");
    assert_eq!(second["deleted_bytes"], 6, "{second}");
    assert_eq!(second["waiting"], 1, "{second}");
    // The push, run again, completes: its content is all there.
    p.json(&["push", "20261102_000000"]);
    let q = project(&b);
    q.json(&["pull", "20261102_000000", "20261101_000000"]);
    q.assert_verifies_clean();
    // Referenced again, it loses its mark; much later nothing more goes.
    let third = gc(&p, chrono::Utc::now() + hours(100));
    assert_eq!(
        (third["deleted"].clone(), third["waiting"].clone()),
        (0.into(), 0.into()),
        "{third}"
    );
    assert_eq!(third["referenced"], 2, "{third}");
    let h = q.json(&["history", "--remote", "origin", "--action", "cleanup"]);
    assert_eq!(h["entries"].as_array().unwrap().len(), 3, "{h}");

    // A scope without a policy is bad input, as locally.
    let (code, err) = fails(&p, &["cleanup", "--remote", "origin", "--keep", "0"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = fails(&p, &["cleanup", "--remote", "origin", "gru"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no retention policy"), "{err}");
}

#[test]
fn a_run_of_many_files_learns_what_the_remote_holds_by_listing_and_uploads_only_the_new() {
    let b = bucket();
    let p = project(&b);
    let contents: Vec<Vec<u8>> = (0..60)
        .map(|i| format!("shard {i}\n").into_bytes())
        .collect();
    // Blob folders holding two or more of these are listed, not asked per
    // blob: make sure this fixture has some.
    let mut folders = std::collections::BTreeMap::new();
    for c in &contents {
        *folders
            .entry(blake3::hash(c).to_hex()[..2].to_string())
            .or_insert(0) += 1;
    }
    assert!(folders.values().any(|n| *n >= 2));
    for (i, c) in contents.iter().enumerate() {
        p.write(&format!("one/data/{i}.txt"), c);
        p.write(&format!("two/data/{i}.txt"), c);
    }
    p.write("two/model.pt", b"new weights");
    p.register(&p.path("one"), &["--id", "20261101_000000"]);
    p.register(&p.path("two"), &["--id", "20261102_000000"]);
    let first = p.json(&["push", "20261101_000000"]);
    assert_eq!(first["uploaded_files"], 60, "{first}");
    let second = p.json(&["push", "20261102_000000"]);
    assert_eq!(second["uploaded_files"], 1, "{second}");
    assert_eq!(second["uploaded_bytes"], 11, "{second}");
    assert_eq!(second["runs"][0]["present_files"], 60, "{second}");
    let q = project(&b);
    q.json(&["pull", "20261102_000000"]);
    q.assert_verifies_clean();
}

#[test]
fn a_run_imported_by_link_records_its_hashes_before_it_is_pushed() {
    let base = Project::new();
    let shared = base.root().join("shared");
    let a = file_project(&shared);
    let legacy = a.path("backend/models");
    let ids = crate::support::legacy_versions(&legacy, 1, None);
    a.json(&["register", "--all", legacy.to_str().unwrap()]);
    let reference = format!("raw/{}", ids[0]);
    let pushed = a.json(&["push", &reference]);
    assert_eq!(pushed["runs"][0]["state"], "pushed", "{pushed}");
    let meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(a.store().join("raw").join(&ids[0]).join("metadata.json")).unwrap(),
    )
    .unwrap();
    assert!(
        meta["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["blake3"].is_string()),
        "{meta}"
    );
    // The record on the remote is the local one: a re-push costs nothing.
    let again = a.json(&["push", &reference]);
    assert_eq!(again["runs"][0]["state"], "unchanged", "{again}");

    let c = file_project(&shared);
    c.json(&["pull", &reference]);
    c.assert_verifies_clean();
}

#[test]
fn off_a_terminal_push_and_pull_write_plain_progress_lines_and_quiet_none() {
    let b = bucket();
    let p = project(&b);
    p.write("out/data/a.csv", vec![1u8; 2048]);
    p.write("out/model.pt", b"weights");
    p.register(&p.path("out"), &["--id", "20261101_000000"]);
    let stderr_of = |p: &Project, args: &[&str]| {
        let out = p.cmd().args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    // Lines start with the time of day, as refresh's do in a log.
    let unstamped = |err: &str| -> Vec<String> {
        // The progress lines; push's summary follows them.
        err.lines()
            .take(2)
            .map(|line| {
                let (hms, rest) = line.split_at(9.min(line.len()));
                let b = hms.as_bytes();
                assert!(
                    b.len() == 9 && b[2] == b':' && b[5] == b':' && b[8] == b' ',
                    "{line:?}"
                );
                rest.to_string()
            })
            .collect()
    };
    let err = stderr_of(&p, &["push", "20261101_000000"]);
    let lines = unstamped(&err);
    assert_eq!(
        lines[0], "pushing raw/20261101_000000: 2 files (2.0 KiB)",
        "{err}"
    );
    assert!(
        lines[1].starts_with("pushing raw/20261101_000000: done 2/2 files, 2.0 KiB/2.0 KiB in "),
        "{err}"
    );
    assert!(
        !err.contains('\r') && !err.contains("\u{1b}["),
        "no bar drawn: {err:?}"
    );

    let q = project(&b);
    let err = stderr_of(&q, &["pull", "latest"]);
    let lines = unstamped(&err);
    assert_eq!(
        lines[0], "pulling raw/20261101_000000: 2 files (2.0 KiB)",
        "{err}"
    );
    assert!(
        lines[1].starts_with("pulling raw/20261101_000000: done 2/2 files, 2.0 KiB/2.0 KiB in "),
        "{err}"
    );

    let r = project(&b);
    assert_eq!(stderr_of(&r, &["--quiet", "pull", "latest"]), "");
    p.write("two/model.pt", b"more weights");
    p.register(&p.path("two"), &["--id", "20261102_000000"]);
    assert_eq!(stderr_of(&p, &["--quiet", "push", "20261102_000000"]), "");
}

#[test]
fn on_a_terminal_push_and_pull_draw_a_bar_of_bytes_and_files() {
    // A file:// remote: `script` starts from this process's environment,
    // which has no AWS credentials; the bar is the same.
    let shared = tempfile::tempdir().unwrap();
    let p = file_project(shared.path());
    for i in 0..40 {
        p.write(&format!("out/part_{i}.bin"), vec![i as u8; 4096]);
    }
    p.register(&p.path("out"), &["--id", "20261101_000000"]);
    let (code, shown) = on_a_terminal(p.root(), &["push", "20261101_000000", "--jobs", "1"], "");
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains("pushing raw/20261101_000000 [") && shown.contains("/40 files"),
        "{shown}"
    );
    // No plain lines on a terminal.
    assert!(!shown.contains(": 40 files ("), "{shown}");
    let q = file_project(shared.path());
    let (code, shown) = on_a_terminal(q.root(), &["pull", "latest", "--jobs", "1"], "");
    assert_eq!(code, 0, "{shown}");
    assert!(
        shown.contains("pulling raw/20261101_000000 [") && shown.contains("/40 files"),
        "{shown}"
    );
}

#[test]
fn content_a_run_holds_twice_goes_up_and_comes_down_once() {
    let b = bucket();
    let p = project(&b);
    p.write("out/checkpoints/best.pt", b"the same weights");
    p.write("out/checkpoints/epoch_70.pt", b"the same weights");
    p.write("out/model.pt", b"the same weights");
    p.register(&p.path("out"), &["--id", "20261101_000000"]);
    let pushed = p.json(&["push", "latest"]);
    assert_eq!(pushed["uploaded_files"], 1, "{pushed}");
    let q = project(&b);
    let pulled = q.json(&["pull", "latest"]);
    assert_eq!(pulled["downloaded_files"], 1, "{pulled}");
    assert_eq!(pulled["linked_files"], 2, "{pulled}");
    assert_eq!(
        read_tree(&p.store().join("raw/20261101_000000")),
        read_tree(&q.store().join("raw/20261101_000000"))
    );
    q.assert_verifies_clean();
}
