//! Ids and `latest` under races and hostile stores (issue 10, items 4, 5, 6
//! and the id high-water mark of item 18).

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::support::{write, Project};

fn latest_target(dir: &Path) -> String {
    std::fs::read_link(dir.join("latest"))
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Wait for a condition the test depends on, bounded so a broken build
/// fails instead of hanging. Not a timing assertion.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_register_taking_a_running_refresh_id_never_destroys_the_refresh() {
    let p = Project::new();
    let (id_file, go) = (p.path("run_id"), p.path("go"));
    p.write(
        "artifactctl.toml",
        format!(
            "[store]\ndir = \"artifacts\"\n\n[[refresh.steps]]\nname = \"model\"\nrun = \"echo $ARTIFACTCTL_RUN_ID > {}; while [ ! -e {} ]; do sleep 0.02; done; echo weights > $ARTIFACTCTL_STEP_DIR/model.pkl\"\n",
            id_file.display(),
            go.display()
        ),
    );
    let mut refresh = p.spawn(&["refresh"], &[]);
    wait_for("the refresh's step to start", || {
        std::fs::read_to_string(&id_file).is_ok_and(|t| t.ends_with('\n'))
    });
    let reserved = std::fs::read_to_string(&id_file)
        .unwrap()
        .trim()
        .to_string();
    // The register takes the very id the refresh reserved.
    let out_dir = p.path("out");
    write(&out_dir.join("model.pkl"), b"registered");
    assert_eq!(p.register(&out_dir, &["--id", &reserved]), reserved);
    write(&go, b"");
    let out = wait_child(&mut refresh);
    assert!(
        out.status.success(),
        "the refresh must still publish: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("was taken by another writer"), "{stderr}");
    let published = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_ne!(published, reserved);
    let runs = p.list_json(&[]);
    let ids: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&reserved.as_str()) && ids.contains(&published.as_str()),
        "{ids:?}"
    );
    assert_eq!(
        std::fs::read(
            p.store()
                .join("raw")
                .join(&published)
                .join("model/model.pkl")
        )
        .unwrap(),
        b"weights\n"
    );
    p.assert_verifies_clean();
}

fn wait_child(child: &mut Child) -> std::process::Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the child did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    std::process::Output {
        status: child.wait().unwrap(),
        stdout: stdout.into_bytes(),
        stderr: stderr.into_bytes(),
    }
}

#[test]
fn default_ids_are_never_reused_after_their_holder_was_removed() {
    let p = Project::new();
    let out_dir = p.training_output("out");
    let at = "2026-01-01T00:00:00Z";
    let first = p.register(&out_dir, &["--created-at", at]);
    assert_eq!(first, "20260101_000000");
    let out = p.cmd().args(["delete", &first, "--yes"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = p.register(&out_dir, &["--created-at", at]);
    assert_ne!(
        second, first,
        "an id was handed out again after its run was deleted"
    );
    assert_eq!(second, "20260101_000000_001");
    p.assert_verifies_clean();
}

#[test]
fn a_broken_latest_never_lets_an_older_run_take_over() {
    type BreakLatest = fn(&Path);
    let hostile: [(&str, BreakLatest); 4] = [
        ("dangling", |raw| {
            std::os::unix::fs::symlink("20990101_000000", raw.join("latest")).unwrap()
        }),
        ("missing", |_| {}),
        ("escaping", |raw| {
            std::os::unix::fs::symlink("/etc", raw.join("latest")).unwrap()
        }),
        ("a real folder", |raw| {
            std::fs::create_dir(raw.join("latest")).unwrap()
        }),
    ];
    for (kind, break_latest) in hostile {
        let p = Project::new();
        let out_dir = p.training_output("out");
        let newer = p.register(&out_dir, &["--created-at", "2026-01-01T00:00:00Z"]);
        let raw = p.store().join("raw");
        let link = raw.join("latest");
        if link.is_dir() && !link.is_symlink() {
            std::fs::remove_dir(&link).unwrap();
        } else {
            std::fs::remove_file(&link).unwrap();
        }
        break_latest(&raw);
        let older = p.register(&out_dir, &["--created-at", "2018-01-01T00:00:00Z"]);
        let shown = p.list_json(&[]);
        let latest: Vec<&str> = shown["runs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["latest"] == true)
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            latest,
            vec![newer.as_str()],
            "latest was {kind}; {older} took it over"
        );
        if kind != "a real folder" {
            assert_eq!(
                latest_target(&raw),
                newer,
                "latest was {kind}: it is repaired to the newest run"
            );
        }
    }
}

/// Hold the store lock from outside, so the promotions below plan, then all
/// wait at the lock and publish in whatever order the kernel wakes them.
struct HeldLock(Child);

impl HeldLock {
    fn take(lock_file: &Path, release: &Path) -> HeldLock {
        let child = std::process::Command::new("flock")
            .arg("-x")
            .arg(lock_file)
            .arg("-c")
            .arg(format!(
                "touch {0}.held; while [ ! -e {0} ]; do sleep 0.02; done",
                release.display()
            ))
            .spawn()
            .expect("flock(1) is part of util-linux");
        let held = release.with_extension("held");
        wait_for("the external lock", || held.exists());
        HeldLock(child)
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn blocked_lock_waiters() -> usize {
    std::fs::read_to_string("/proc/locks")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("->"))
        .count()
}

#[test]
fn racing_production_promotions_end_on_the_highest_version() {
    let p = Project::new();
    let out_dir = p.training_output("out");
    let raw = p.register(&out_dir, &[]);
    let validated = p.promote(&raw, &["--to", "validated", "--checkpoint", "epoch_70"]);
    let release = p.path("release");
    let waiters_before = blocked_lock_waiters();
    let held = HeldLock::take(&p.store().join(".artifactctl/lock"), &release);
    let mut children: Vec<Child> = ["3.0.2", "3.0.6", "3.0.5"]
        .iter()
        .map(|v| {
            p.spawn(
                &[
                    "promote",
                    &validated,
                    "--to",
                    "production",
                    "--version",
                    v,
                    "--approve",
                ],
                &[],
            )
        })
        .collect();
    wait_for("three promotions waiting at the lock", || {
        blocked_lock_waiters() >= waiters_before + 3
            || children.iter_mut().any(|c| c.try_wait().unwrap().is_some())
    });
    // Readers during the race never see a downgrade: nothing is published yet.
    write(&release, b"");
    drop(held);
    for child in &mut children {
        let out = wait_child(child);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(latest_target(&p.store().join("production")), "3.0.6");
    p.assert_verifies_clean();
}
