//! Live writers are never judged dead, and a hostile `.artifactctl/` never
//! makes artifactctl remove, create or append anything outside the store
//! (issue 10, items 2 and 16).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::support::{write, Project};

/// Hold `owners/<token>.lock` as a live writer would (the kernel lock is
/// released when the returned file is dropped, as at a writer's death).
fn live_owner(store: &Path, token: &str) -> File {
    let dir = store.join(".artifactctl/owners");
    std::fs::create_dir_all(&dir).unwrap();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{token}.lock")))
        .unwrap();
    // SAFETY: a valid descriptor.
    assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }, 0);
    file
}

fn staging_folder(store: &Path, name: &str) -> std::path::PathBuf {
    let dir = store.join(".artifactctl/staging").join(name);
    write(&dir.join("model.pkl"), b"being written");
    dir
}

#[test]
fn a_live_writer_in_another_pid_namespace_or_on_another_host_keeps_its_staging() {
    let p = Project::new();
    let out = p.training_output("out");
    p.register(&out, &[]);
    // Same host tag as ours would be irrelevant: pid 999999 does not exist
    // here, as a writer in another PID namespace's pid would not.
    let container = staging_folder(&p.store(), "run.00000000-999999-a1b2c3d4e5f6.1");
    // A writer on another host, running for two hours already.
    let remote = staging_folder(&p.store(), "run.ffffffff-4242-0a0b0c0d0e0f.1");
    let old = SystemTime::now() - Duration::from_secs(2 * 3600);
    File::open(&remote).unwrap().set_modified(old).unwrap();
    let held = [
        live_owner(&p.store(), "00000000-999999-a1b2c3d4e5f6"),
        live_owner(&p.store(), "ffffffff-4242-0a0b0c0d0e0f"),
    ];
    p.register(&out, &[]);
    assert!(
        container.join("model.pkl").is_file(),
        "a live writer's staging was swept"
    );
    assert!(
        remote.join("model.pkl").is_file(),
        "a live remote writer's staging was swept"
    );
    // Their owners die: the next writer sweeps what they left.
    drop(held);
    p.register(&out, &[]);
    assert!(!container.exists() && !remote.exists());
    let owners: Vec<_> = std::fs::read_dir(p.store().join(".artifactctl/owners"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("999999") || n.contains("4242"))
        .collect();
    assert!(
        owners.is_empty(),
        "dead owners' lock files are forgotten: {owners:?}"
    );
    p.cmd().args(["verify", "--all"]).assert().success();
}

#[test]
fn a_symlinked_staging_or_trash_folder_is_never_swept_through() {
    for sub in ["staging", "trash"] {
        let p = Project::new();
        let out = p.training_output("out");
        p.register(&out, &[]);
        let victim = p.path("victim");
        // Named like a dead writer's leftover.
        write(&victim.join("run.1.1/precious.txt"), b"keep me");
        let internal = p.store().join(".artifactctl").join(sub);
        let _ = std::fs::remove_dir_all(&internal);
        symlink(&victim, &internal).unwrap();
        let assert = p.cmd().args(["register", "out"]).assert();
        let output = assert.get_output();
        assert!(
            victim.join("run.1.1/precious.txt").is_file(),
            "{sub}: the sweep followed the link: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if sub == "staging" {
            // Nothing can be staged through the link either: refused.
            assert_eq!(output.status.code(), Some(1));
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("symlink"), "{stderr}");
        }
    }
}

#[test]
fn a_symlinked_lock_or_journal_is_refused_and_nothing_outside_is_touched() {
    let p = Project::new();
    let out = p.training_output("out");
    p.register(&out, &[]);
    let internal = p.store().join(".artifactctl");

    let outside_lock = p.path("outside.lock");
    std::fs::remove_file(internal.join("lock")).unwrap();
    symlink(&outside_lock, internal.join("lock")).unwrap();
    p.cmd().args(["register", "out"]).assert().code(1);
    assert!(
        !outside_lock.exists(),
        "a file was created through the lock link"
    );
    std::fs::remove_file(internal.join("lock")).unwrap();

    let outside_journal = p.path("outside.jsonl");
    std::fs::write(&outside_journal, b"").unwrap();
    std::fs::rename(internal.join("journal.jsonl"), p.path("journal.bak")).unwrap();
    symlink(&outside_journal, internal.join("journal.jsonl")).unwrap();
    let failed = p.cmd().args(["register", "out"]).output().unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("published as") && stderr.contains("journal"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&outside_journal).unwrap(),
        b"",
        "appended through the link"
    );
}

#[test]
fn a_fifo_in_place_of_metadata_or_the_journal_never_hangs() {
    let p = Project::new();
    let out = p.training_output("out");
    let id = p.register(&out, &[]);
    let fifo = |path: &Path| {
        let _ = std::fs::remove_file(path);
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    };
    let run = p.store().join("raw").join(&id);
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    fifo(&run.join("metadata.json"));
    fifo(&p.store().join(".artifactctl/journal.jsonl"));
    // Each of these hung forever before; a bounded wait proves they end.
    for args in [
        vec!["list"],
        vec!["show", id.as_str()],
        vec!["verify", "--all"],
        vec!["history"],
        vec!["pin", id.as_str()],
        vec!["delete", id.as_str(), "--yes"],
    ] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_artifactctl"))
            .current_dir(p.root())
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("`artifactctl {}` hangs on a FIFO", args.join(" "));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.code().is_some(), "{args:?} ended by a signal");
    }
}
