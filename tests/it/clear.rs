use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::support::{seed000, streams_of, write, Project};
use predicates::prelude::*;
use serde_json::Value;

/// Every entry below `root` (symlinks not followed): kind, size and content.
fn listing(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(root).unwrap().to_path_buf();
        let ft = entry.file_type();
        let what = if ft.is_symlink() {
            format!(
                "link -> {}",
                std::fs::read_link(entry.path()).unwrap().display()
            )
        } else if ft.is_dir() {
            "dir".to_string()
        } else {
            format!("file {:?}", std::fs::read(entry.path()).unwrap())
        };
        out.insert(rel, what);
    }
    out
}

fn clear_json(p: &Project, args: &[&str]) -> (Value, i32) {
    let out = p
        .cmd()
        .args(["--no-progress", "clear", "--json"])
        .args(args)
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "clear --json is JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (json, out.status.code().unwrap())
}

fn item_paths(json: &Value) -> Vec<String> {
    json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap().to_string())
        .collect()
}

fn item<'a>(json: &'a Value, path: &str) -> &'a Value {
    json["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["path"] == path)
        .unwrap_or_else(|| panic!("no item {path} in {json:#}"))
}

/// The seed 000 project plus the hostile cases; returns a folder
/// outside the root that links point at.
fn hostile_project(p: &Project) -> tempfile::TempDir {
    let root = p.root();
    seed000(root);
    let outside = tempfile::tempdir().unwrap();
    write(&outside.path().join("precious/data.pkl"), b"outside");
    // A link to a folder outside the root, inside an artifact folder...
    symlink(
        outside.path().join("precious"),
        root.join("trained_models/outside"),
    )
    .unwrap();
    // ...and as an artifact folder itself.
    std::fs::create_dir_all(root.join("nested")).unwrap();
    symlink(
        outside.path().join("precious"),
        root.join("nested/evaluation_data"),
    )
    .unwrap();
    // Symlink loops, inside an artifact folder and matching by name.
    symlink("loop", root.join("trained_models/loop")).unwrap();
    symlink("cycle.pkl", root.join("cycle.pkl")).unwrap();
    symlink("b_loop", root.join("a_loop")).unwrap();
    symlink("a_loop", root.join("b_loop")).unwrap();
    // A folder named like a model file: searched, not removed.
    write(&root.join("weights.pkl/README.txt"), b"not a model");
    write(&root.join("weights.pkl/inner.pkl"), b"a model");
    // A read-only folder inside an artifact folder, and one in the source.
    write(&root.join("trained_models/ro/frozen.joblib"), b"frozen");
    std::fs::set_permissions(
        root.join("trained_models/ro"),
        std::fs::Permissions::from_mode(0o555),
    )
    .unwrap();
    // Names that are not UTF-8.
    write(&root.join(OsStr::from_bytes(b"caf\xe9.pkl")), b"latin-1");
    write(
        &root
            .join("training_data")
            .join(OsStr::from_bytes(b"\xff.joblib")),
        b"x",
    );
    // Nested matches: a model file inside a matched folder.
    write(&root.join("trained_models/sub/inner.pkl"), b"inner");
    // The store is never entered, whatever its content.
    write(&p.store().join("raw/run/model.pkl"), b"run");
    write(&root.join("node_modules/pkg/x.pkl"), b"js");
    outside
}

#[test]
fn dry_run_changes_nothing_and_force_removes_exactly_the_plan() {
    let p = Project::new();
    let outside = hostile_project(&p);
    let before = listing(p.root());
    let outside_before = listing(outside.path());

    let (plan, code) = clear_json(&p, &[]);
    assert_eq!(code, 0, "{plan:#}");
    assert_eq!(listing(p.root()), before, "the dry run changed the tree");

    // The JSON shape, exactly.
    let keys: Vec<&str> = plan
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "schema_version",
            "dry_run",
            "items",
            "total_files",
            "total_bytes",
            "errors",
            "skipped"
        ]
    );
    assert_eq!(plan["schema_version"], 1);
    assert_eq!(plan["dry_run"], true);
    for i in plan["items"].as_array().unwrap() {
        let keys: Vec<&str> = i.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["path", "kind", "files", "bytes", "reason"]);
    }

    let paths = item_paths(&plan);
    // Nested matches are counted once, inside their folder.
    assert!(!paths.iter().any(|p| p.starts_with("trained_models/")));
    let models = item(&plan, "trained_models");
    assert_eq!(models["kind"], "dir");
    assert_eq!(models["reason"], "trained_models/");
    // 6 models + src_link + outside + loop + ro/frozen + sub/inner.pkl
    assert_eq!(models["files"], 11);
    assert_eq!(models["bytes"], 600 + 6 + 5);
    let sum: u64 = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["files"].as_u64().unwrap())
        .sum();
    assert_eq!(plan["total_files"], sum);
    // Matching symlinks are items of their own kind, never followed.
    assert_eq!(item(&plan, "nested/evaluation_data")["kind"], "symlink");
    assert_eq!(item(&plan, "nested/evaluation_data")["files"], 1);
    assert_eq!(item(&plan, "cycle.pkl")["kind"], "symlink");
    // A folder named weights.pkl is searched, not removed.
    assert!(!paths.contains(&"weights.pkl".to_string()));
    assert!(paths.contains(&"weights.pkl/inner.pkl".to_string()));
    // Names that are not UTF-8 come out lossily.
    assert!(paths.contains(&"caf\u{fffd}.pkl".to_string()));
    // Never entered.
    for protected in [".git", ".venv", "artifacts", "node_modules"] {
        assert!(
            !paths.iter().any(|p| p.starts_with(protected)),
            "{protected} was entered: {paths:?}"
        );
    }

    let (done, code) = clear_json(&p, &["--force"]);
    assert_eq!(code, 0, "{done:#}");
    assert_eq!(done["dry_run"], false);
    assert_eq!(item_paths(&done), paths);
    assert_eq!(done["total_files"], plan["total_files"]);
    assert_eq!(done["total_bytes"], plan["total_bytes"]);

    // Exactly the planned items are gone; everything else is as it was.
    let after = listing(p.root());
    let planned: Vec<PathBuf> = plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| PathBuf::from(i["path"].as_str().unwrap()))
        .collect();
    let expected: BTreeMap<PathBuf, String> = before
        .into_iter()
        .filter(|(rel, _)| {
            let lossy = PathBuf::from(rel.to_string_lossy().into_owned());
            !planned.iter().any(|item| lossy.starts_with(item))
        })
        .collect();
    assert_eq!(after, expected);
    assert_eq!(listing(outside.path()), outside_before);
    assert!(p.path(".git/objects/ab/model.pkl").exists());
    assert!(p.path(".venv/lib/iris.pkl").exists());
    assert!(p.store().join("raw/run/model.pkl").exists());
    assert!(p.path("bondtrader/ml/pickle_utils.py").exists());

    // Nothing is left to clear.
    let (again, code) = clear_json(&p, &[]);
    assert_eq!(code, 0);
    assert_eq!(again["items"].as_array().unwrap().len(), 0);
}

#[test]
fn human_output_lists_items_reasons_and_totals_and_v_lists_files() {
    let p = Project::new();
    seed000(p.root());
    p.cmd()
        .arg("clear")
        .assert()
        .success()
        .stdout(predicate::str::contains("trained_models/"))
        .stdout(predicate::str::contains("*.pkl"))
        .stdout(predicate::str::contains("would remove"))
        .stderr(predicate::str::contains("--force"));
    assert_output_snapshot!(
        Some(p.root()),
        "clear_dry_run",
        streams_of(p.cmd().arg("clear"))
    );
    p.cmd()
        .args(["-v", "clear"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "training_checkpoints/epoch_3/checkpoint.joblib",
        ));
    assert!(p.path("trained_models/Model_0.joblib").exists());
    p.cmd()
        .args(["clear", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains("freed"));
    assert!(!p.path("trained_models").exists());
}

#[test]
fn path_arguments_stay_inside_the_root() {
    let p = Project::new();
    seed000(p.root());
    // `..` that stays inside: only that folder is cleared.
    let (json, code) = clear_json(&p, &["trained_models/../scripts"]);
    assert_eq!(code, 0);
    assert_eq!(item_paths(&json), ["scripts/export.onnx"]);
    // From a subfolder, `..` reaches the root itself (found by its config).
    p.write("artifactctl.toml", "");
    let out = p
        .cmd()
        .current_dir(p.path("scripts"))
        .args(["clear", "--json", ".."])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(item_paths(&json).contains(&"trained_models".to_string()));
    // Outside the root, by `..` or absolute: refused, nothing touched.
    let before = listing(p.root());
    for bad in ["../..", "trained_models/../../x", "/etc"] {
        p.cmd()
            .args(["clear", "--force", bad])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("outside the project root"));
    }
    // Into protected folders: refused.
    p.cmd()
        .args(["clear", "--force", ".git/objects"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(".git"));
    p.cmd()
        .args(["clear", "--force", "scripts/../.git"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("protected"));
    p.cmd()
        .args(["clear", "--force", ".venv/lib"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("virtual environment"));
    assert_eq!(listing(p.root()), before);
    // A PATH that is a matched folder is one item.
    let (json, _) = clear_json(&p, &["--force", "htmlcov"]);
    assert_eq!(item_paths(&json), ["htmlcov"]);
    assert!(!p.path("htmlcov").exists());
    assert!(p.path("trained_models").exists());
}

#[test]
fn a_path_through_a_symlink_is_refused() {
    let p = Project::new();
    seed000(p.root());
    let outside = tempfile::tempdir().unwrap();
    write(&outside.path().join("x.pkl"), b"outside");
    symlink(outside.path(), p.path("linked")).unwrap();
    p.cmd()
        .args(["clear", "--force", "linked/x.pkl"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("symlink"));
    assert!(outside.path().join("x.pkl").exists());
}

#[test]
fn home_or_slash_without_a_config_is_refused() {
    let p = Project::new();
    seed000(p.root());
    let home = p.root().canonicalize().unwrap();
    p.cmd()
        .env("HOME", &home)
        .args(["clear", "--force"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("artifactctl.toml"));
    assert!(p.path("trained_models").exists());
    p.write("artifactctl.toml", "");
    p.cmd()
        .env("HOME", &home)
        .args(["clear"])
        .assert()
        .success();
    crate::support::bin()
        .current_dir("/")
        .env("HOME", &home)
        .args(["--root", "/", "clear"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("artifactctl.toml"));
}

#[test]
fn keep_and_extra_patterns_come_from_config_and_environment() {
    let p = Project::new();
    seed000(p.root());
    p.write("data/reference/baseline.pkl", b"kept");
    p.write("data/other/scratch.pkl", b"gone");
    p.write("trained_models/best.joblib", b"kept too");
    p.write("notes.tmp", b"extra");
    p.write(
        "artifactctl.toml",
        "[clear]\nkeep = [\"data/reference/*.pkl\", \"trained_models/best.joblib\"]\nextra_patterns = [\"*.tmp\"]\n",
    );
    let (json, code) = clear_json(&p, &["--force"]);
    assert_eq!(code, 0, "{json:#}");
    assert!(p.path("data/reference/baseline.pkl").exists());
    assert!(!p.path("data/other/scratch.pkl").exists());
    assert!(!p.path("notes.tmp").exists());
    // Keep wins inside a matched folder: the rest of it goes.
    assert!(p.path("trained_models/best.joblib").exists());
    assert!(!p.path("trained_models/Model_0.joblib").exists());
    assert_eq!(item(&json, "notes.tmp")["reason"], "*.tmp");

    // The environment replaces the list: only *.db now.
    let q = Project::new();
    seed000(q.root());
    let out = q
        .cmd()
        .env("ARTIFACTCTL_CLEAR_PATTERNS", "*.db")
        .args(["clear", "--json"])
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(item_paths(&json), ["bondtrader.db"]);
}

#[test]
fn failures_are_collected_and_the_rest_carries_on() {
    // Root ignores permission bits, so the binary runs as an unprivileged
    // user when the suite runs as root (see `Project::unprivileged`); no
    // `chattr +i` and no skipping.
    let p = Project::unprivileged();
    seed000(p.root());
    // A source folder the user cannot write: its model file cannot go, and
    // clear must not change the folder's permissions to force it.
    write(&p.path("locked/model.pkl"), b"stuck");
    let locked = p.path("locked");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    struct Unlock(PathBuf);
    impl Drop for Unlock {
        fn drop(&mut self) {
            let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
        }
    }
    let _unlock = Unlock(locked.clone());
    let (json, code) = clear_json(&p, &["--force"]);
    assert_eq!(code, 1, "{json:#}");
    let errors = json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{json:#}");
    assert_eq!(errors[0]["path"], "locked/model.pkl");
    assert!(errors[0]["error"]
        .as_str()
        .unwrap()
        .contains("chmod -R u+w"));
    assert!(locked.join("model.pkl").exists());
    // The rest was removed.
    assert!(!p.path("trained_models").exists());
    assert!(!p.path("bondtrader.db").exists());
    let mode = std::fs::metadata(&locked).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o555,
        "clear changed a source folder's permissions"
    );
}

/// A virtual environment named as PATH is refused (exit 1), not skipped
/// with "nothing to clear" and exit 0.
#[test]
fn a_virtual_environment_named_as_path_is_refused() {
    let p = Project::new();
    p.write("artifactctl.toml", "");
    p.write("venv/pyvenv.cfg", "home = /usr/bin\n");
    p.write("venv/lib/model.pkl", "x");
    for args in [vec!["clear", "venv"], vec!["clear", "venv", "--force"]] {
        p.cmd()
            .args(&args)
            .assert()
            .code(1)
            .stderr(predicates::str::contains("venv is a virtual environment"));
    }
    assert!(p.path("venv/lib/model.pkl").is_file());
}

/// Issue 13: a tree of many stray files prints one row per folder and
/// pattern, not one per file; `-v` lists every file and `--json` stays
/// complete.
#[test]
fn many_stray_files_are_grouped_by_folder() {
    let p = Project::new();
    for i in 0..1200 {
        p.write(&format!("bondtrader/ml/m{i:04}.pkl"), b"x");
    }
    for i in 0..30 {
        p.write(&format!("bondtrader/data/d{i:02}.pkl"), b"yy");
    }
    p.write("bondtrader/one.pkl", b"z");
    p.write("trained_models/model.joblib", b"w");
    let shown = streams_of(p.cmd().args(["--no-progress", "clear"]));
    assert!(shown.lines().count() < 20, "{shown}");
    assert_output_snapshot!(Some(p.root()), "clear_grouped", shown);
    let verbose = streams_of(p.cmd().args(["--no-progress", "-v", "clear"]));
    assert!(verbose.contains("bondtrader/ml/m0000.pkl"));
    assert!(verbose.contains("bondtrader/ml/m1199.pkl"));
    let (json, code) = clear_json(&p, &[]);
    assert_eq!(code, 0);
    assert_eq!(json["items"].as_array().unwrap().len(), 1200 + 30 + 2);
}

/// Clear never enters a versioned store: a native store (nested project),
/// the store an `artifactctl.toml` below the root configures, a run folder
/// with artifactctl's metadata, a legacy layout with a `latest` link. Each
/// is named once in the plan; the stores verify clean after `--force`.
#[test]
fn clear_never_enters_a_store_below_the_root() {
    let p = Project::new();
    p.write("artifactctl.toml", "");
    // A nested project with its own store, in a folder of another name.
    p.write("examples/artifactctl.toml", "[store]\ndir = \"runs\"\n");
    let nested_out = p.training_output("examples/out");
    std::fs::write(nested_out.join("model.pkl"), "weights").unwrap();
    crate::support::bin()
        .current_dir(p.path("examples"))
        .args(["register", "out", "--id", "v1"])
        .assert()
        .success();
    // A legacy seed 003 store: timestamped versions and a latest link.
    crate::support::legacy_versions(&p.path("backend/models"), 2, None);
    // Strays that clear must still take.
    p.write("bondtrader/ml/stray.pkl", "x");
    p.write("trained_models/model.joblib", "x");

    let plan = p.cmd().args(["clear", "--json"]).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let skipped: Vec<&str> = doc["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(skipped.contains(&"store at examples/runs"), "{skipped:?}");
    assert!(skipped.contains(&"store at backend/models"), "{skipped:?}");
    let paths: Vec<&str> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert!(
        paths
            .iter()
            .all(|p| !p.starts_with("examples/runs") && !p.starts_with("backend/models")),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"bondtrader/ml/stray.pkl") && paths.contains(&"trained_models"),
        "{paths:?}"
    );
    p.cmd()
        .arg("clear")
        .assert()
        .success()
        .stderr(predicates::str::contains("skipped: store at examples/runs"));

    p.cmd().args(["clear", "--force"]).assert().success();
    assert!(!p.path("bondtrader/ml/stray.pkl").exists());
    crate::support::bin()
        .current_dir(p.path("examples"))
        .args(["verify", "--all"])
        .assert()
        .success();
    assert_eq!(
        std::fs::read_dir(p.path("backend/models")).unwrap().count(),
        3,
        "2 versions and latest"
    );
}
