//! kill -9 at every fault point `promote --remote`, `rollback --remote` and
//! `cleanup --remote` reach, against the moto server and a `file://`
//! remote; garbage collection while a push is in flight; and credentials
//! that never reach output, the journal, metadata or the remote.
//!
//! A sweep, as in `fault_matrix`, kills the command (or fails the write
//! with EIO) at the 1st, 2nd, ... occurrence of a point until a run
//! completes without reaching it. After each both sides must be consistent: every run record on the remote
//! resolves to blobs that exist, every `latest` to a record, `list --remote`
//! works and lists only runs with records, the local store verifies clean,
//! and the command run again completes (and leaves all that true).

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use crate::remote::{bucket, server};
use crate::remote_catalog::{keys, signed};
use crate::support::*;

mod credentials;
mod faults;
mod gc_race;

/// Where a test's remote lives, read behind artifactctl's back.
#[derive(Clone)]
enum Side {
    Bucket(String),
    Dir(PathBuf),
}

/// A swapped object's folder of generations on a `file://` remote.
fn swapped(key: &str) -> bool {
    key.starts_with("latest/") || key == "catalog/index" || key == "gc/marks.json"
}

fn is_generation(name: &str) -> bool {
    name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit())
}

impl Side {
    /// Every key, as the remote's layout names them.
    fn keys(&self) -> BTreeSet<String> {
        match self {
            Side::Bucket(b) => keys(b, "").into_iter().collect(),
            Side::Dir(root) => walkdir::WalkDir::new(root)
                .into_iter()
                .flatten()
                .filter(|e| e.file_type().is_file())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| {
                    let rel = e.path().strip_prefix(root).unwrap();
                    let parent = rel.parent().unwrap().display().to_string();
                    let name = e.file_name().to_string_lossy().into_owned();
                    if is_generation(&name) && swapped(&parent) {
                        parent
                    } else {
                        rel.display().to_string()
                    }
                })
                .collect(),
        }
    }

    /// An object's bytes (the highest generation of a swapped one).
    fn get(&self, key: &str) -> Vec<u8> {
        match self {
            Side::Bucket(b) => {
                let out = signed_bytes("GET", b, key);
                assert!(out.0.starts_with("HTTP/1.1 200"), "GET {key}: {}", out.0);
                out.1
            }
            Side::Dir(root) => {
                let path = root.join(key);
                if path.is_dir() {
                    let top = std::fs::read_dir(&path)
                        .unwrap()
                        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                        .filter(|n| is_generation(n))
                        .max()
                        .unwrap_or_else(|| panic!("{key} has no generation"));
                    std::fs::read(path.join(top)).unwrap()
                } else {
                    std::fs::read(&path).unwrap_or_else(|e| panic!("{key}: {e}"))
                }
            }
        }
    }
}

/// A signed-looking request's status line and body bytes.
fn signed_bytes(method: &str, bucket: &str, key: &str) -> (String, Vec<u8>) {
    let raw = signed(method, bucket, key, b"");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    (head.lines().next().unwrap_or("").to_string(), body.into())
}

/// `runs/<stage>/ns=<a,b>/<id>.json` of a ref as `list` prints it.
fn record_key_of(reference: &str) -> String {
    let mut parts: Vec<&str> = reference.split('/').collect();
    let stage = match parts[0] {
        "raw" | "validated" | "production" => parts.remove(0),
        _ => "raw",
    };
    let id = parts.pop().unwrap();
    format!("runs/{stage}/ns={}/{id}.json", parts.join(","))
}

/// An object's bytes in `bucket`.
pub(crate) fn get_object(bucket: &str, key: &str) -> Vec<u8> {
    Side::Bucket(bucket.to_string()).get(key)
}

/// Delete an object of `bucket` behind artifactctl's back.
pub(crate) fn delete_object(bucket: &str, key: &str) {
    let (status, _) = signed_bytes("DELETE", bucket, key);
    assert!(status.starts_with("HTTP/1.1 204"), "DELETE {key}: {status}");
}

/// The remote in `bucket` consistent, as [`assert_consistent`] checks.
pub(crate) fn assert_remote_consistent(p: &Project, bucket: &str, what: &str) {
    assert_consistent(p, &Side::Bucket(bucket.to_string()), what);
}

/// The `file://` remote at `root` consistent, as [`assert_consistent`]
/// checks.
pub(crate) fn assert_dir_remote_consistent(p: &Project, root: &std::path::Path, what: &str) {
    assert_consistent(p, &Side::Dir(root.to_path_buf()), what);
}

/// Both sides consistent (see the module's notes); `what` names the case.
fn assert_consistent(p: &Project, side: &Side, what: &str) {
    let keys = side.keys();
    let blobs: BTreeSet<&str> = keys
        .iter()
        .filter_map(|k| k.strip_prefix("blobs/"))
        .filter_map(|k| k.rsplit('/').next())
        .collect();
    let records: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("runs/") && k.ends_with(".json"))
        .collect();
    for key in &records {
        let meta: Value = serde_json::from_slice(&side.get(key))
            .unwrap_or_else(|e| panic!("{what}: record {key} is not JSON: {e}"));
        // Packed content: its pack and the pack's table of contents are
        // there, and the bytes at the offset are the file's.
        let mut packed = BTreeSet::new();
        if let Some(packs) = meta["packed"].as_object() {
            for (pack, blobs) in packs {
                let pack_key = format!("packs/{}/{pack}", &pack[..2]);
                assert!(
                    keys.contains(&pack_key) && keys.contains(&format!("{pack_key}.toc")),
                    "{what}: record {key} names pack {pack}, which is missing or has no table of contents"
                );
                let bytes = side.get(&pack_key);
                for f in meta["files"].as_array().unwrap() {
                    let hash = f["blake3"].as_str().unwrap_or_default();
                    if let Some(offset) = blobs.get(hash).and_then(Value::as_u64) {
                        let size = f["size"].as_u64().unwrap() as usize;
                        let at = offset as usize;
                        assert_eq!(
                            blake3::hash(&bytes[at..at + size]).to_hex().as_str(),
                            hash,
                            "{what}: pack {pack} does not hold {} at {offset}",
                            f["path"]
                        );
                        packed.insert(hash.to_string());
                    }
                }
            }
        }
        for f in meta["files"].as_array().unwrap() {
            if f["symlink"].is_string() {
                continue;
            }
            let hash = f["blake3"].as_str().unwrap();
            if packed.contains(hash) {
                continue;
            }
            assert!(
                blobs.contains(hash),
                "{what}: record {key} names blob {hash} ({}), which is missing",
                f["path"]
            );
        }
    }
    for key in keys.iter().filter(|k| k.starts_with("latest/")) {
        let latest: Value = serde_json::from_slice(&side.get(key)).unwrap();
        let rest = key.strip_prefix("latest/").unwrap();
        let record = format!("runs/{rest}/{}.json", latest["id"].as_str().unwrap());
        assert!(
            keys.contains(&record),
            "{what}: {key} names {latest}, whose record {record} is missing"
        );
    }
    let listed = p.json(&["list", "--stage", "all", "--remote", "origin"]);
    for run in listed["runs"].as_array().unwrap() {
        let record = record_key_of(run["ref"].as_str().unwrap());
        assert!(
            keys.contains(&record),
            "{what}: list --remote shows {} without its record {record}",
            run["ref"]
        );
    }
    p.assert_verifies_clean();
}

/// The remote's latest release of gru/BTCEUR, read as artifactctl does.
fn latest_release(p: &Project) -> String {
    p.json(&["show", "production/gru/BTCEUR/latest", "--remote", "origin"])["run"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A local project reused for every case of a sweep (remote commands never
/// change it), pointed at a fresh remote each time.
struct Bench {
    p: Project,
    s3: bool,
}

impl Bench {
    fn new(s3: bool) -> Bench {
        let p = if s3 {
            Project::new()
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .env("AWS_REGION", "us-east-1")
        } else {
            Project::new()
        };
        Bench { p, s3 }
    }

    /// A fresh, empty remote `origin`.
    fn fresh(&self) -> Side {
        if self.s3 {
            let b = bucket();
            self.p.write(
                "artifactctl.toml",
                format!(
                    "[remote]\ndefault = \"origin\"\n[remotes.origin]\nurl = \"s3://{b}/proj\"\nendpoint = \"http://127.0.0.1:{}\"\nregion = \"us-east-1\"\n",
                    server()
                ),
            );
            Side::Bucket(b)
        } else {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let shared = self.p.path(&format!("shared-{n}"));
            self.p.write(
                "artifactctl.toml",
                format!(
                    "[remote]\ndefault = \"origin\"\n[remotes.origin]\nurl = \"file://{}\"\n",
                    shared.display()
                ),
            );
            Side::Dir(shared)
        }
    }

    fn run(&self, args: &[&str], now: &str, fault: Option<&str>) -> std::process::Output {
        let mut cmd = self.p.cmd();
        cmd.args(args).env("ARTIFACTCTL_NOW", now);
        if let Some(spec) = fault {
            cmd.env("ARTIFACTCTL_FAULT", spec);
        }
        cmd.output().unwrap()
    }

    fn ok(&self, args: &[&str], now: &str) {
        let out = self.run(args, now, None);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Side {
    /// Write `content` as a blob behind artifactctl's back (content no
    /// record references).
    fn put_blob(&self, content: &[u8]) -> String {
        let hash = blake3::hash(content).to_hex().to_string();
        let key = format!("blobs/{}/{hash}", &hash[..2]);
        match self {
            Side::Bucket(b) => crate::remote::put_object(b, &key, content),
            Side::Dir(root) => {
                write(&root.join(&key), content);
            }
        }
        hash
    }

    fn has_blob(&self, hash: &str) -> bool {
        self.keys()
            .contains(&format!("blobs/{}/{hash}", &hash[..2]))
    }
}
