//! Shared helpers for the end-to-end tests: a temporary project, the real
//! binary run against it, and fixtures in the seed layouts (built here, so the
//! suite never needs ../shared).
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;
use serde_json::{json, Value};
use tempfile::TempDir;

/// A temporary project root with its own store at `<root>/artifacts`.
pub struct Project {
    pub dir: TempDir,
    /// Variables every `cmd()` of this project sets (see [`Project::env`]).
    env: Vec<(String, String)>,
    /// Set by [`Project::unprivileged`] when the suite runs as root: the
    /// uid/gid every command of this project runs as.
    user: Option<(u32, u32)>,
}

impl Project {
    /// A fresh project in `/tmp/.tmpXXXXXX` (not `$TMPDIR`): some snapshot
    /// tables hold the project path, and their column widths follow the
    /// longest cell, so the path's length must not depend on the machine.
    pub fn new() -> Project {
        let base = Path::new("/tmp");
        let dir = if base.is_dir() {
            tempfile::tempdir_in(base)
        } else {
            tempfile::tempdir()
        };
        Project {
            dir: dir.expect("tempdir"),
            env: Vec::new(),
            user: None,
        }
    }

    /// A project whose commands run as an ordinary user, for tests about
    /// permission bits (root writes through them). As a non-root user this
    /// is [`Project::new`]. As root (CI runs as root) every `cmd()` runs the
    /// binary as [`test_user`] under `setpriv`, after handing the whole tree
    /// to that user, so fixtures the test wrote as root are the user's own.
    pub fn unprivileged() -> Project {
        let mut p = Project::new();
        if is_root() {
            // tempdir() makes the folder 0700; the user must reach into it.
            std::fs::set_permissions(p.root(), std::fs::Permissions::from_mode(0o755)).unwrap();
            p.user = Some(test_user());
        }
        p
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn store(&self) -> PathBuf {
        self.root().join("artifacts")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// The binary, run in the project root with a clean environment (as
    /// the unprivileged test user for [`Project::unprivileged`]).
    pub fn cmd(&self) -> Command {
        let mut cmd = match self.user {
            None => bin(),
            Some((uid, gid)) => {
                chown_tree(self.root(), uid, gid);
                let mut cmd = Command::new("setpriv");
                cmd.args(as_user_args(uid, gid)).arg(cargo_bin());
                clean_env(&mut cmd);
                cmd
            }
        };
        cmd.current_dir(self.root());
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        cmd
    }

    /// Set `key=value` for every command of this project, e.g. a fixed
    /// `USER` so that journal tables have the same widths for everyone.
    pub fn env(mut self, key: &str, value: &str) -> Project {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Write a file (creating parents) relative to the root.
    pub fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        write(&self.path(rel), bytes)
    }

    /// A folder of training outputs in seed 004's raw shape.
    pub fn training_output(&self, rel: &str) -> PathBuf {
        let dir = self.path(rel);
        write(&dir.join("checkpoints/best.pt"), b"best weights");
        write(&dir.join("checkpoints/epoch_10.pt"), b"epoch 10 weights");
        write(&dir.join("checkpoints/epoch_70.pt"), b"epoch 70 weights");
        write(&dir.join("checkpoints/latest.pt"), b"latest weights");
        write(
            &dir.join("metrics/training_metrics.json"),
            br#"{"best_val_loss": 0.38}"#,
        );
        write(&dir.join("config.yaml"), b"lr: 0.01\n");
        write(&dir.join("training.log"), b"epoch 1 loss 0.9\n");
        dir
    }

    /// `register DIR [args]`, asserting success; returns the printed ref.
    pub fn register(&self, dir: &Path, args: &[&str]) -> String {
        let out = self
            .cmd()
            .arg("register")
            .arg(dir)
            .args(args)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "register failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// `<args> --json`, asserting success; the parsed document.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.cmd().args(args).arg("--json").output().expect("run");
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
        assert_eq!(doc["schema_version"], 1);
        doc
    }

    /// `list --json [args]` parsed.
    pub fn list_json(&self, args: &[&str]) -> Value {
        self.json(&[&["list"], args].concat())
    }
}

/// The binary with every ARTIFACTCTL_* variable removed, so the developer's
/// environment cannot leak into a test.
pub fn bin() -> Command {
    let mut cmd = Command::cargo_bin("artifactctl").expect("binary");
    clean_env(&mut cmd);
    cmd
}

/// The path of the binary under test.
pub fn cargo_bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("artifactctl")
}

fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("ARTIFACTCTL_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("NO_COLOR", "1");
    // Every read the suite makes compares the run index with a full scan
    // and panics on a difference (debug builds; see store::index).
    cmd.env("ARTIFACTCTL_INDEX", "check");
    // Help and tables must not follow the developer's terminal width.
    cmd.env_remove("COLUMNS");
    cmd.env_remove("LINES");
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The name of the unprivileged account permission tests run as when the
/// suite itself runs as root.
pub const TEST_USER: &str = "artifactctl-test";

/// uid and gid of [`TEST_USER`], creating the account (a system user with
/// no home) the first time a test in this process asks. Only for root: the
/// suite must never silently pass a permission test because root ignores
/// permission bits, so failure to create the user fails the test.
pub fn test_user() -> (u32, u32) {
    static USER: OnceLock<(u32, u32)> = OnceLock::new();
    *USER.get_or_init(|| {
        assert!(is_root(), "test_user() is for a suite running as root");
        let lookup = || {
            let uid = std::process::Command::new("id")
                .args(["-u", TEST_USER])
                .output()
                .ok()?;
            let gid = std::process::Command::new("id")
                .args(["-g", TEST_USER])
                .output()
                .ok()?;
            if !uid.status.success() || !gid.status.success() {
                return None;
            }
            let parse = |b: &[u8]| String::from_utf8_lossy(b).trim().parse::<u32>().ok();
            Some((parse(&uid.stdout)?, parse(&gid.stdout)?))
        };
        if let Some(ids) = lookup() {
            return ids;
        }
        let status = std::process::Command::new("useradd")
            .args(["--system", "--no-create-home", "--user-group"])
            .args(["--shell", "/usr/sbin/nologin", TEST_USER])
            .status()
            .unwrap_or_else(|e| {
                panic!("running as root: cannot run useradd to create {TEST_USER}: {e}")
            });
        // Another test binary may have created it in the meantime (exit 9).
        lookup().unwrap_or_else(|| {
            panic!(
                "running as root: useradd {TEST_USER} failed ({status}); \
                 permission tests need an unprivileged user"
            )
        })
    })
}

/// `setpriv` arguments that drop every privilege to `uid`:`gid`.
fn as_user_args(uid: u32, gid: u32) -> Vec<String> {
    vec![
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".into(),
        "--".into(),
    ]
}

/// `program` run as the unprivileged test user when the suite runs as root,
/// as the current user otherwise. The caller makes sure the paths it touches
/// are reachable by that user (see [`Project::unprivileged`]).
pub fn unprivileged_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    if is_root() {
        let (uid, gid) = test_user();
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(as_user_args(uid, gid)).arg(program);
        cmd
    } else {
        std::process::Command::new(program)
    }
}

/// Give every entry under `root` (not following symlinks) to `uid`:`gid`.
fn chown_tree(root: &Path, uid: u32, gid: u32) {
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.expect("walk project");
        std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", entry.path().display()));
    }
}

pub fn write(path: &Path, bytes: impl AsRef<[u8]>) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

/// Seed 003: `<dir>/YYYYMMDD_HHMMSS/` with models and `training_metadata.json`,
/// plus a `latest` symlink to the newest. Run `corrupt` (if any) gets a
/// truncated metadata file. Returns the ids, oldest first.
pub fn legacy_versions(dir: &Path, runs: usize, corrupt: Option<usize>) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..runs {
        let id = format!("20250724_15{:02}{:02}", 8 + i / 60, i % 60);
        let run = dir.join(&id);
        for name in [
            "lstm_model.h5",
            "transformer_model.h5",
            "random_forest_model.pkl",
            "xgboost_model.pkl",
            "scalers.pkl",
        ] {
            write(&run.join(name), vec![i as u8; 512]);
        }
        let meta = json!({
            "timestamp": id,
            "models": ["lstm", "transformer", "random_forest", "xgboost"],
            "configs": {"lstm": {"units": 64, "layers": 2}},
            "metrics": {"accuracy": 0.6, "sharpe_ratio": 0.5 + i as f64 / 10.0, "win_rate": 0.5, "max_drawdown": -0.2},
            "ensemble_weights": {"lstm": 0.3, "transformer": 0.3, "random_forest": 0.2, "xgboost": 0.2},
        });
        let mut text = serde_json::to_string_pretty(&meta).unwrap();
        if corrupt == Some(i) {
            text.truncate(text.len() / 2);
        }
        write(&run.join("training_metadata.json"), text);
        ids.push(id);
    }
    if let Some(last) = ids.last() {
        std::os::unix::fs::symlink(last, dir.join("latest")).unwrap();
    }
    ids
}

/// Seed 002: `<dir>/{model_type}/{symbol}/{run_id}/` with `metadata.json`
/// and a `latest` link per symbol. When `mismatch` is set, the first gru
/// BTCEUR run claims `feature_count: 50` for 114 names.
pub fn legacy_models(dir: &Path, per_symbol: usize, mismatch: bool) -> Vec<String> {
    let mut refs = Vec::new();
    for (t, model_type) in ["gru", "lightgbm", "ppo"].iter().enumerate() {
        for (s, symbol) in ["BTCEUR", "ETHEUR"].iter().enumerate() {
            let mut last = None;
            for i in 0..per_symbol {
                let run_id = format!("2024081{}_14{}{}0{}", 5 + i, t, s, i);
                let run = dir.join(model_type).join(symbol).join(&run_id);
                let main = match *model_type {
                    "gru" => "model.pth",
                    "lightgbm" => "model.pkl",
                    _ => "model.zip",
                };
                write(&run.join(main), vec![7u8; 256]);
                let names: Vec<String> = (0..114).map(|k| format!("feature_{k}")).collect();
                let count = if mismatch && t == 0 && s == 0 && i == 0 {
                    50
                } else {
                    114
                };
                let meta = json!({
                    "model_type": model_type, "run_id": run_id, "symbol": symbol,
                    "created_at": format!("2024-08-1{}T14:{}{}:0{}.234567", 5 + i, t, s, i),
                    "config": {"hidden_size": 64}, "is_fitted": true,
                    "feature_names": names, "selected_features": [0, 1, 5, 8, 12],
                    "feature_count": count, "input_size_actual": 5,
                    "training_config": {"epochs": 10},
                });
                write(
                    &run.join("metadata.json"),
                    serde_json::to_string_pretty(&meta).unwrap(),
                );
                refs.push(format!("{model_type}/{symbol}/{run_id}"));
                last = Some(run_id);
            }
            if let Some(last) = last {
                std::os::unix::fs::symlink(last, dir.join(model_type).join(symbol).join("latest"))
                    .unwrap();
            }
        }
    }
    refs
}

/// Seed 004: `raw/`, `validated/`, `production/` with one artifact each, in
/// the shapes the seed shows (no artifactctl metadata in raw).
pub fn seed004(store: &Path) {
    let raw = store.join("raw/v5_5_20251123_103epochs");
    for f in [
        "checkpoints/latest.pt",
        "checkpoints/best.pt",
        "checkpoints/epoch_70.pt",
    ] {
        write(&raw.join(f), b"weights");
    }
    write(&raw.join("checkpoints/manifest.json"), b"{}");
    write(
        &raw.join("metrics/training_metrics.json"),
        br#"{"best_val_loss": 0.38, "coverage": 0.99}"#,
    );
    write(&raw.join("config.yaml"), b"lr: 0.01\n");
    write(&raw.join("training.log"), b"done\n");
    write(&raw.join("README.md"), b"# run\n");
    let validated = store.join("validated/v5_5_epoch70_validated");
    write(&validated.join("model.pt"), b"clean weights");
    write(&validated.join("config.yaml"), b"lr: 0.01\n");
    write(&validated.join("validation/test_results.json"), b"{}");
    write(
        &validated.join("metadata.json"),
        br#"{"created_at": "2025-11-24T10:00:00", "metrics": {"coverage": 0.99}}"#,
    );
    let production = store.join("production/v5_5_prod_v1.0");
    write(&production.join("model.pt"), b"optimized weights");
    write(
        &production.join("metadata.json"),
        br#"{"created_at": "2025-11-25T10:00:00"}"#,
    );
    write(&production.join("CHANGELOG.md"), b"# 1.0\n");
}

/// Promotion helpers (issue 5).
impl Project {
    /// Write `artifactctl.toml` with these `[promote.validated] require` gates.
    pub fn require_gates(&self, gates: &[&str]) {
        let list: Vec<String> = gates.iter().map(|g| format!("{g:?}")).collect();
        self.write(
            "artifactctl.toml",
            format!("[promote.validated]\nrequire = [{}]\n", list.join(", ")),
        );
    }

    /// A registered seed 004 raw run in `ns`; returns its ref.
    pub fn raw_run(&self, ns: &str, id: &str) -> String {
        let out = self.training_output(&format!("out-{id}"));
        self.register(
            &out,
            &["--namespace", ns, "--id", id, "--metric", "coverage=0.99"],
        )
    }

    /// `promote REF [args]`, asserting success; returns the printed ref.
    /// The binary in the background (for signals, races, kills), in the
    /// project root with a clean environment plus `env`, output piped.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_artifactctl"));
        for (key, _) in std::env::vars() {
            if key.starts_with("ARTIFACTCTL_") {
                cmd.env_remove(key);
            }
        }
        cmd.current_dir(self.root())
            .env("NO_COLOR", "1")
            .args(args)
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn artifactctl")
    }

    /// `verify --all` must pass; its report in the failure message.
    pub fn assert_verifies_clean(&self) {
        let out = self.cmd().args(["verify", "--all"]).output().expect("run");
        assert!(
            out.status.success(),
            "verify --all: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn promote(&self, reference: &str, args: &[&str]) -> String {
        let out = self
            .cmd()
            .args(["promote", reference])
            .args(args)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "promote failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A raw run promoted to validated and then to production at each of
    /// `versions`, in order; returns the validated ref.
    pub fn released(&self, ns: &str, versions: &[&str]) -> String {
        let raw = self.raw_run(ns, "20261123_101500");
        let validated = self.promote(&raw, &["--to", "validated", "--checkpoint", "epoch_70"]);
        for v in versions {
            self.promote(
                &validated,
                &["--to", "production", "--version", v, "--approve"],
            );
        }
        validated
    }
}

/// A run in artifactctl's own layout, `<store>/<stage>/<ns>/<id>/`, written
/// directly (no `register`) so tests can set any time, status, pin or
/// lineage: `files` files of `file_bytes` bytes each, and a schema v1
/// `metadata.json` with `extra` merged in at the top level.
pub struct NativeRun<'a> {
    pub stage: &'a str,
    pub ns: &'a str,
    pub id: &'a str,
    pub created_at: &'a str,
    pub status: &'a str,
    pub files: usize,
    pub file_bytes: usize,
    pub extra: Value,
}

impl Default for NativeRun<'_> {
    fn default() -> Self {
        NativeRun {
            stage: "raw",
            ns: "",
            id: "20260101_000000",
            created_at: "2026-01-01T00:00:00Z",
            status: "complete",
            files: 2,
            file_bytes: 1000,
            extra: json!({}),
        }
    }
}

impl NativeRun<'_> {
    pub fn write(&self, store: &Path) -> PathBuf {
        let mut run = store.join(self.stage);
        if !self.ns.is_empty() {
            run = run.join(self.ns);
        }
        let run = run.join(self.id);
        let mut entries = Vec::new();
        for k in 0..self.files {
            let name = format!("part_{k:03}.pt");
            write(&run.join(&name), vec![k as u8; self.file_bytes]);
            entries.push(json!({"path": name, "size": self.file_bytes, "blake3": "0".repeat(64)}));
        }
        let mut meta = json!({
            "schema_version": 1, "id": self.id, "namespace": self.ns, "stage": self.stage,
            "created_at": self.created_at, "status": self.status,
            "files": entries, "total_size": self.files * self.file_bytes,
            "file_count": self.files,
            "lineage": {"source": "test", "parent": null, "promoted_from": null},
        });
        if let (Value::Object(meta), Value::Object(extra)) = (&mut meta, &self.extra) {
            meta.extend(extra.clone());
        }
        write(
            &run.join("metadata.json"),
            serde_json::to_string_pretty(&meta).unwrap(),
        );
        run
    }
}

/// Seed 000: a training repository in the shape of `mkfixture.py project` at
/// a small scale: source that must survive (including a `.git` folder and a
/// virtualenv holding `pyvenv.cfg`) and every kind of regenerable artifact
/// `clear` removes by default.
pub fn seed000(root: &Path) {
    for pkg in ["bondtrader", "bondtrader/ml", "scripts", "tests", "docs"] {
        for i in 0..3 {
            write(
                &root.join(format!("{pkg}/module_{i}.py")),
                format!("VALUE = {i}\n"),
            );
        }
    }
    write(&root.join("README.md"), b"# bondtrader\n");
    write(
        &root.join("bondtrader/ml/pickle_utils.py"),
        b"import pickle\n",
    );
    write(&root.join("docs/onnx_export.md"), b"how we export\n");
    write(&root.join(".git/HEAD"), b"ref: refs/heads/main\n");
    write(&root.join(".git/objects/ab/model.pkl"), b"not ours");
    write(&root.join(".venv/pyvenv.cfg"), b"home = /usr/bin\n");
    write(&root.join(".venv/lib/iris.pkl"), b"not ours");
    for i in 0..6 {
        write(
            &root.join(format!("trained_models/Model_{i}.joblib")),
            vec![1u8; 100],
        );
        write(
            &root.join(format!("training_data/dataset_{i}.joblib")),
            vec![2u8; 50],
        );
        write(
            &root.join(format!("training_checkpoints/epoch_{i}/checkpoint.joblib")),
            vec![3u8; 25],
        );
        write(
            &root.join(format!("mlruns/0/run{i}/metrics/loss")),
            b"1700000000 0.5 0\n",
        );
        write(&root.join(format!("htmlcov/m_{i}.html")), b"<html></html>");
        write(&root.join(format!(".pytest_cache/v/{i}")), b"cache");
    }
    write(&root.join("bondtrader/ml/stray.pkl"), vec![4u8; 10]);
    write(&root.join("scripts/export.onnx"), vec![5u8; 10]);
    write(&root.join("experiments/exp_0/model.pb"), vec![6u8; 10]);
    write(&root.join("bondtrader.db"), vec![7u8; 40]);
    write(&root.join("coverage.xml"), b"<coverage/>");
    write(&root.join(".coverage"), b"SQLite format 3");
    std::os::unix::fs::symlink("../bondtrader", root.join("trained_models/src_link")).unwrap();
}

/// The insta settings every snapshot of human-readable output is taken
/// under: the one place that says what varies between runs.
///
/// `None` is for output that depends on nothing but the binary (`--help`):
/// no filters, every byte is pinned. `Some(root)` is for output about a
/// temporary project: `root` becomes `[ROOT]`; the binary's own path (in
/// recorded command lines) `[BIN]`; run ids made from the clock
/// (`20261123_151004`, `20261123_151004_002`) `[ID]`; date-times
/// (`2026-11-23 15:10:04`, RFC 3339 too) `[TIME]`; `15:10:04 ` at the start
/// of a line `[HMS]`; durations (`ran in 6ms`) `[DUR]`; the user names the
/// journal records (`uid:N`, or this user's name as a table cell) `[USER]`;
/// the recorded `hostname` `[HOST]`. Sizes are left alone: every fixture
/// writes known bytes, so they do not vary.
pub fn snapshot_settings(root: Option<&Path>) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    let Some(root) = root else {
        return settings;
    };
    let mut paths = vec![(root.to_path_buf(), "[ROOT]"), (cargo_bin(), "[BIN]")];
    for (path, name) in paths.clone() {
        if let Ok(real) = path.canonicalize() {
            if real != path {
                paths.insert(0, (real, name));
            }
        }
    }
    for (path, name) in paths {
        settings.add_filter(&regex_escape(&path.to_string_lossy()), name);
    }
    settings.add_filter(r"\b\d{8}_\d{6}(_\d{3})?\b", "[ID]");
    settings.add_filter(
        r"\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?",
        "[TIME]",
    );
    settings.add_filter(r"(?m)^\d{2}:\d{2}:\d{2} ", "[HMS] ");
    settings.add_filter(r"\b\d+(\.\d+)?(ns|µs|us|ms|s)\b", "[DUR]");
    // Journal users: `uid:N` anywhere; a name only as a table cell, so that
    // "root" in "project root" survives.
    settings.add_filter(r"\buid:\d+\b", "[USER]");
    settings.add_filter(
        &format!(r"(?m)(  |^)({TEST_USER}|{})(  |$)", regex_escape(&whoami())),
        "$1[USER]$3",
    );
    settings.add_filter(r"(?m)^(\s*hostname\s+)\S+$", "$1[HOST]");
    settings
}

/// The user name the binary records for this process (as `current_user`
/// in src/journal.rs does: USER, LOGNAME, USERNAME, else `uid:N`).
fn whoami() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .find(|u| !u.is_empty())
        // SAFETY: getuid cannot fail.
        .unwrap_or_else(|| format!("uid:{}", unsafe { libc::getuid() }))
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Snapshot `text` (human-readable output) under [`snapshot_settings`]:
/// `assert_output_snapshot!(Some(p.root()), "name", text)`.
macro_rules! assert_output_snapshot {
    ($root:expr, $name:expr, $text:expr $(,)?) => {{
        let text: String = $text;
        $crate::support::snapshot_settings($root).bind(|| {
            ::insta::assert_snapshot!($name, text);
        });
    }};
}

/// Stdout of a command that must succeed, as text.
pub fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 stdout")
}

/// Both streams of a run, labelled, for snapshots of reports that put a
/// plan on one stream and a summary on the other; with the exit code.
pub fn streams_of(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status.code().map_or("signal".into(), |c| c.to_string()),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run `cmd` with the fault-injection hook of debug builds armed:
/// `ARTIFACTCTL_FAULT=<point>[@<nth>][:<action>]`. Asserts that the fault
/// really fired — stderr has the line `artifactctl: fault injected at
/// <point>` — and, for the default action `kill`, that the process died of
/// SIGKILL there. A crash test that never reached its point fails here
/// instead of passing without having proved anything.
pub fn with_fault(cmd: &mut Command, spec: &str) -> std::process::Output {
    use std::os::unix::process::ExitStatusExt;
    let out = cmd.env("ARTIFACTCTL_FAULT", spec).output().expect("run");
    let (point, action) = match spec.split_once(':') {
        Some((point, action)) => (point, action),
        None => (spec, "kill"),
    };
    let point = point.split('@').next().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let marker = format!("artifactctl: fault injected at {point}");
    assert!(
        stderr.lines().any(|line| line
            .strip_prefix(&marker)
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_alphanumeric() || c == '-'))),
        "ARTIFACTCTL_FAULT={spec} did not fire ({}); stderr:\n{stderr}",
        out.status
    );
    if action == "kill" {
        assert_eq!(
            out.status.signal(),
            Some(9),
            "ARTIFACTCTL_FAULT={spec}: expected death by SIGKILL, got {}; stderr:\n{stderr}",
            out.status
        );
    }
    out
}

/// Runs the binary in `root` on a pseudo-terminal (util-linux `script`) and
/// types `answer` at its prompt; returns the exit code and what the
/// terminal showed. For the paths that only a terminal reaches.
pub fn on_a_terminal(root: &Path, args: &[&str], answer: &str) -> (i32, String) {
    use std::io::Write as _;
    let line = std::iter::once(cargo_bin().display().to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .current_dir(root)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs the binary on a terminal");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let shown =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), shown)
}
