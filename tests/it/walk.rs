//! Removal never crosses into a mount point and handles trees of any depth:
//! `clear` (dry run and `--force`) and `delete` through the descriptor walker.
//!
//! The mount tests need `mount --bind` (root, or a user namespace that allows
//! it). Where the environment forbids mounting they fail with a message
//! saying so instead of passing without testing anything; skip them there
//! with `cargo test -- --skip bind_mount`.

use std::ffi::CString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use assert_cmd::Command;
use serde_json::Value;

fn bin() -> Command {
    Command::cargo_bin("artifactctl").expect("the artifactctl binary")
}

/// A project root with a config and an `artifacts` store.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join("artifactctl.toml"),
        "[store]\ndir = \"artifacts\"\n",
    )
    .expect("config");
    dir
}

/// A folder of files that must survive, with names `clear` would remove.
fn victim() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("model.pkl"), b"precious").expect("write");
    fs::create_dir(dir.path().join("__pycache__")).expect("mkdir");
    fs::write(dir.path().join("__pycache__/m.pyc"), b"precious").expect("write");
    fs::create_dir(dir.path().join("trained_models")).expect("mkdir");
    fs::write(dir.path().join("trained_models/w.bin"), b"precious").expect("write");
    dir
}

fn assert_victim_intact(victim: &Path) {
    for rel in ["model.pkl", "__pycache__/m.pyc", "trained_models/w.bin"] {
        assert_eq!(
            fs::read(victim.join(rel)).unwrap_or_default(),
            b"precious",
            "{rel} was touched in the bind-mounted folder"
        );
    }
}

/// A bind mount, unmounted (lazily, so even a busy one goes) when dropped,
/// whether the test passed or not. A removal may move the mount point along
/// with its run (into the store's trash), so every mount found under `scope`
/// is unmounted, not only the original target.
struct BindMount {
    target: PathBuf,
    scope: PathBuf,
}

impl BindMount {
    fn new(source: &Path, target: &Path, scope: &Path) -> BindMount {
        fs::create_dir_all(target).expect("mount point");
        let out = Process::new("mount")
            .arg("--bind")
            .arg(source)
            .arg(target)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount --bind {} {} failed ({}); these tests need root or a user namespace \
             that allows bind mounts; outside CI skip them with `cargo test -- --skip bind_mount`",
            source.display(),
            target.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        BindMount {
            target: target.to_path_buf(),
            scope: scope.to_path_buf(),
        }
    }
}

/// Mount points at or below `scope`, deepest first.
fn mounts_under(scope: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(scope))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let mut points = mounts_under(&self.scope);
        if points.is_empty() {
            points.push(self.target.clone());
        }
        for point in points {
            let _ = Process::new("umount")
                .arg("-l")
                .arg(&point)
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bind_mount_inside_the_project_is_not_entered_by_clear() {
    let p = project();
    let root = p.path();
    fs::write(root.join("a.pkl"), b"abc").unwrap();
    fs::create_dir_all(root.join("trained_models/own")).unwrap();
    fs::write(root.join("trained_models/own/w.bin"), b"12345").unwrap();
    let victim = victim();
    // One mount where clear only searches, one inside a folder it removes.
    let _searched = BindMount::new(victim.path(), &root.join("src/mnt"), root);
    let _matched = BindMount::new(victim.path(), &root.join("trained_models/mnt"), root);

    let dry = bin()
        .args(["--root"])
        .arg(root)
        .args(["clear", "--json"])
        .output()
        .unwrap();
    assert_eq!(dry.status.code(), Some(1), "{}", stderr_of(&dry));
    let plan: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(plan["total_files"], 2, "{plan}");
    assert_eq!(plan["total_bytes"], 8, "{plan}");
    let errors = plan["errors"].as_array().unwrap();
    let named: Vec<&str> = errors
        .iter()
        .filter(|e| {
            e["error"]
                .as_str()
                .unwrap()
                .contains("is a mount point; not entered")
        })
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(named, ["src/mnt", "trained_models/mnt"], "{plan}");

    let forced = bin()
        .args(["--root"])
        .arg(root)
        .args(["clear", "--force"])
        .output()
        .unwrap();
    assert_eq!(forced.status.code(), Some(1), "{}", stderr_of(&forced));
    let stderr = stderr_of(&forced);
    assert!(
        stderr.contains("src/mnt: is a mount point; not entered"),
        "{stderr}"
    );
    assert_victim_intact(victim.path());
    // The rest of the clear went ahead.
    assert!(!root.join("a.pkl").exists());
    assert!(!root.join("trained_models/own").exists());
    assert!(root.join("trained_models/mnt").is_dir());
}

#[test]
fn bind_mount_inside_a_run_survives_delete() {
    let p = project();
    let root = p.path();
    fs::create_dir_all(root.join("out/checkpoints")).unwrap();
    fs::write(root.join("out/checkpoints/best.pt"), b"weights").unwrap();
    fs::write(root.join("out/config.yaml"), b"lr: 0.01\n").unwrap();
    let registered = bin()
        .current_dir(root)
        .args(["register", "out", "--json"])
        .output()
        .unwrap();
    assert!(registered.status.success(), "{}", stderr_of(&registered));
    let v: Value = serde_json::from_slice(&registered.stdout).unwrap();
    let reference = v["ref"].as_str().unwrap().to_string();
    let run = PathBuf::from(v["path"].as_str().unwrap());
    let victim = victim();
    let mount = BindMount::new(victim.path(), &run.join("checkpoints/mnt"), root);

    let out = bin()
        .current_dir(root)
        .args(["delete", &reference, "--yes"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is a mount point; not entered"), "{stderr}");
    assert!(stderr.contains("mnt"), "{stderr}");
    assert_victim_intact(victim.path());
    // The run is unlisted and its own files are gone; the mount is left in
    // the trash, where the next writer's sweep refuses to enter it again.
    assert!(!run.exists());
    let left = mounts_under(root);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].ends_with("checkpoints/mnt"));
    assert!(!left[0].parent().unwrap().join("best.pt").exists());
    drop(mount);
    assert!(mounts_under(root).is_empty());
}

#[test]
fn bind_mount_inside_a_run_survives_cleanup() {
    let p = project();
    let root = p.path();
    let mut runs = Vec::new();
    for at in ["2026-11-20T10:00:00Z", "2026-11-21T10:00:00Z"] {
        fs::create_dir_all(root.join("out/checkpoints")).unwrap();
        fs::write(root.join("out/checkpoints/best.pt"), b"weights").unwrap();
        let registered = bin()
            .current_dir(root)
            .args(["register", "out", "--json", "--created-at", at])
            .output()
            .unwrap();
        assert!(registered.status.success(), "{}", stderr_of(&registered));
        let v: Value = serde_json::from_slice(&registered.stdout).unwrap();
        runs.push(PathBuf::from(v["path"].as_str().unwrap()));
    }
    let victim = victim();
    let mount = BindMount::new(victim.path(), &runs[0].join("checkpoints/mnt"), root);

    let out = bin()
        .current_dir(root)
        .args(["cleanup", "--keep", "1", "--yes"])
        .output()
        .unwrap();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is a mount point; not entered"), "{stderr}");
    assert_victim_intact(victim.path());
    assert!(!runs[0].exists());
    assert!(runs[1].join("checkpoints/best.pt").is_file());
    drop(mount);
    assert!(mounts_under(root).is_empty());
}

/// `root/<rel>/d/d/.../d/<file>`, `depth` folders deep, built by descriptor:
/// the path is far longer than PATH_MAX.
fn make_deep(root: &Path, rel: &str, depth: usize, file: &str) {
    let top = root.join(rel);
    fs::create_dir_all(&top).unwrap();
    let c_top = CString::new(top.to_str().unwrap()).unwrap();
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a valid path; checked below.
    let mut fd = unsafe { libc::open(c_top.as_ptr(), flags) };
    assert!(fd >= 0, "{}", io::Error::last_os_error());
    for _ in 0..depth {
        // SAFETY: `fd` is an open directory; the names are NUL-terminated.
        unsafe {
            assert_eq!(libc::mkdirat(fd, c"d".as_ptr(), 0o755), 0);
            let child = libc::openat(fd, c"d".as_ptr(), flags);
            assert!(child >= 0, "{}", io::Error::last_os_error());
            libc::close(fd);
            fd = child;
        }
    }
    let name = CString::new(file).unwrap();
    // SAFETY: as above; both descriptors are closed here.
    unsafe {
        let f = libc::openat(
            fd,
            name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
            0o644,
        );
        assert!(f >= 0, "{}", io::Error::last_os_error());
        assert_eq!(libc::write(f, b"abc".as_ptr().cast(), 3), 3);
        libc::close(f);
        libc::close(fd);
    }
}

/// Removes a tree too deep for `std::fs::remove_dir_all` when a test fails.
struct RmRf(PathBuf);

impl Drop for RmRf {
    fn drop(&mut self) {
        let _ = Process::new("rm").arg("-rf").arg(&self.0).status();
    }
}

/// `artifactctl --root ROOT clear ARGS` with at most 128 open descriptors,
/// so a walk holding one per level would fail.
fn clear_with_few_descriptors(root: &Path, args: &str) -> std::process::Output {
    let exe = assert_cmd::cargo::cargo_bin("artifactctl");
    Process::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 128 && exec \"$0\" --root \"$1\" clear {args}"
        ))
        .arg(exe)
        .arg(root)
        .output()
        .unwrap()
}

#[test]
fn trees_100000_levels_deep_are_cleared() {
    let p = project();
    let root = p.path();
    let _cleanup = (RmRf(root.join("trained_models")), RmRf(root.join("src")));
    // One deep tree inside a matched folder, one searched all the way down
    // for the match at its bottom.
    make_deep(root, "trained_models", 100_000, "w.bin");
    make_deep(root, "src", 100_000, "x.pkl");

    let dry = clear_with_few_descriptors(root, "--json");
    assert_eq!(dry.status.code(), Some(0), "{}", stderr_of(&dry));
    let plan: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(plan["total_files"], 2, "{}", stderr_of(&dry));
    assert_eq!(plan["total_bytes"], 6);
    assert!(
        root.join("trained_models/d").is_dir(),
        "a dry run removes nothing"
    );

    let forced = clear_with_few_descriptors(root, "--force");
    assert_eq!(forced.status.code(), Some(0), "{}", stderr_of(&forced));
    assert!(root.join("trained_models").symlink_metadata().is_err());
    // The searched chain stays; only the match at its bottom went.
    assert!(root.join("src/d/d").is_dir());
    let again = clear_with_few_descriptors(root, "--json");
    let plan: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(plan["total_files"], 0, "{}", stderr_of(&again));
}
