//! Processes and signals: SIGINT and SIGTERM for every writer, a folder moved
//! in by `register --move` surviving any kill, and refresh steps dying with
//! artifactctl.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::Project;

const CONFIG: &str = "[store]\ndir = \"artifacts\"\n";

fn project() -> Project {
    let p = Project::new();
    p.write("artifactctl.toml", CONFIG);
    p
}

/// A folder of many files (and one of a few MiB), so copying and hashing
/// take more than one step.
fn many_files(p: &Project, rel: &str) -> PathBuf {
    let dir = p.training_output(rel);
    for i in 0..40 {
        p.write(
            &format!("{rel}/shards/shard_{i:03}.bin"),
            vec![i as u8; 4096],
        );
    }
    p.write(&format!("{rel}/weights.bin"), vec![7u8; 3 << 20]);
    dir
}

/// Every file below `dir` with its bytes, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Read the child's stderr until `line` appears; returns what was read.
fn wait_for_line(child: &mut Child, line: &str) -> String {
    let stderr = child.stderr.as_mut().unwrap();
    let mut reader = BufReader::new(stderr);
    let mut seen = String::new();
    loop {
        let mut buf = String::new();
        let n = reader.read_line(&mut buf).unwrap();
        assert!(n > 0, "stderr ended before {line:?}:\n{seen}");
        seen.push_str(&buf);
        if buf.contains(line) {
            return seen;
        }
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: signalling the process this test started and has not reaped.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

fn staging_entries(p: &Project) -> Vec<String> {
    std::fs::read_dir(p.store().join(".artifactctl/staging"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn register_move_interrupted_while_hashing(sig: libc::c_int) {
    let p = project();
    // A run before, so the store exists and verify has something to check.
    let first = p.training_output("first");
    p.register(&first, &[]);
    let dir = many_files(&p, "out");
    let before = snapshot(&dir);

    let mut child = p.spawn(
        &["register", "out", "--move"],
        &[("ARTIFACTCTL_TEST_PAUSE", "hashing")],
    );
    wait_for_line(&mut child, "paused at hashing");
    assert!(!dir.exists(), "the folder is in staging while hashing");
    signal(&child, sig);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.is_dir(), "the folder is back at its original path");
    assert_eq!(snapshot(&dir), before, "with every file, unchanged");
    assert!(staging_entries(&p).is_empty(), "{:?}", staging_entries(&p));
    assert_eq!(p.list_json(&[])["runs"].as_array().unwrap().len(), 1);
    p.assert_verifies_clean();
}

#[test]
fn sigterm_while_hashing_a_moved_folder_gives_it_back() {
    register_move_interrupted_while_hashing(libc::SIGTERM);
}

#[test]
fn sigint_while_hashing_a_moved_folder_gives_it_back() {
    register_move_interrupted_while_hashing(libc::SIGINT);
}

#[test]
fn sigterm_while_copying_registers_nothing_and_leaves_no_staging() {
    let p = project();
    let dir = many_files(&p, "out");
    let before = snapshot(&dir);
    let mut child = p.spawn(
        &["register", "out"],
        &[("ARTIFACTCTL_TEST_PAUSE", "copying")],
    );
    wait_for_line(&mut child, "paused at copying");
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(snapshot(&dir), before);
    assert!(staging_entries(&p).is_empty(), "{:?}", staging_entries(&p));
    assert!(p.list_json(&[])["runs"].as_array().unwrap().is_empty());
    p.assert_verifies_clean();
}

/// `register --move` SIGKILLed after its folder went into staging: the next
/// writer gives it back instead of sweeping it away.
#[test]
fn a_moved_folder_killed_in_staging_is_given_back_by_the_next_writer() {
    let p = project();
    let dir = many_files(&p, "out");
    let before = snapshot(&dir);
    let out = p
        .cmd()
        .args(["register", "out", "--move"])
        .env("ARTIFACTCTL_FAULT", "staged")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fault injected at staged"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.exists(), "killed with the folder in staging");
    assert!(
        staging_entries(&p).iter().any(|n| n.ends_with(".origin")),
        "the origin is recorded: {:?}",
        staging_entries(&p)
    );

    let other = p.training_output("other");
    let out = p.cmd().arg("register").arg(&other).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let origin = p.root().canonicalize().unwrap().join("out");
    assert!(
        stderr.contains(&format!(
            "recovered {}: moved back after an interrupted register --move",
            origin.display()
        )),
        "{stderr}"
    );
    assert_eq!(snapshot(&dir), before, "back whole");
    assert!(staging_entries(&p).is_empty(), "{:?}", staging_entries(&p));
    p.assert_verifies_clean();
}

#[test]
fn a_moved_folder_whose_place_is_taken_is_kept_in_recovered() {
    let p = project();
    let dir = many_files(&p, "out");
    let before = snapshot(&dir);
    let out = p
        .cmd()
        .args(["register", "out", "--move"])
        .env("ARTIFACTCTL_FAULT", "staged")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), None, "killed");
    // Something new took its place meanwhile: it must not be replaced.
    p.write("out/new.txt", "new");

    let other = p.training_output("other");
    let out = p.cmd().arg("register").arg(&other).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("kept at"), "{stderr}");
    assert_eq!(std::fs::read_to_string(dir.join("new.txt")).unwrap(), "new");
    let recovered = p.store().join(".artifactctl/recovered");
    let kept: Vec<PathBuf> = std::fs::read_dir(&recovered)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(snapshot(&kept[0]), before);
    assert!(staging_entries(&p).is_empty(), "{:?}", staging_entries(&p));
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() || std::fs::read_to_string(path).unwrap().trim().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A refresh SIGKILLed mid-step takes its steps with it: the step's shell
/// and a grandchild it started in the background are gone within seconds.
#[test]
fn a_sigkilled_refresh_leaves_no_step_running() {
    let p = Project::new();
    p.write(
        "artifactctl.toml",
        format!(
            "{CONFIG}\n[[refresh.steps]]\nname = \"slow\"\nrun = \"sleep 60 & echo $! > grandchild.pid; echo $$ > child.pid; wait\"\n"
        ),
    );
    let child = p.spawn(&["refresh"], &[]);
    wait_for_file(&p.path("grandchild.pid"));
    wait_for_file(&p.path("child.pid"));
    signal(&child, libc::SIGKILL);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), None, "killed");

    let pid = |f: &str| {
        std::fs::read_to_string(p.path(f))
            .unwrap()
            .trim()
            .parse::<i32>()
            .unwrap()
    };
    for f in ["child.pid", "grandchild.pid"] {
        let start = Instant::now();
        while alive(pid(f)) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(pid(f)), "{f} outlived the SIGKILLed refresh");
    }
}
