//! Small files travel in packs (src/remote/pack.rs, docs/remote.md): a push
//! with many small files to upload writes a few packs and their tables of
//! contents instead of a blob each, a later run references the content
//! packs already hold, a pull fetches byte ranges and checks every file,
//! and garbage collection deletes a pack once no record references it.

use serde_json::Value;

use crate::remote::json_at;
use crate::remote::{bucket, fails, project, read_tree};
use crate::remote_catalog::keys;
use crate::remote_safety::{
    assert_dir_remote_consistent, assert_remote_consistent, delete_object, get_object,
};
use crate::support::*;

const ONE: &str = "20261101_000000";
const TWO: &str = "20261102_000000";
const THREE: &str = "20261103_000000";

/// `n` small files under `dir/data/`, their content marked with `tag`: the
/// bytes written.
fn small_files(p: &Project, dir: &str, n: usize, tag: &str) -> u64 {
    (0..n)
        .map(|i| {
            let content = format!("{tag} row {i}\n").repeat(1 + i % 7);
            p.write(&format!("{dir}/data/{tag}{i:03}.csv"), &content);
            content.len() as u64
        })
        .sum()
}

fn the_pack(bucket: &str) -> String {
    let packs: Vec<String> = keys(bucket, "packs/")
        .into_iter()
        .filter(|k| !k.ends_with(".toc"))
        .collect();
    assert_eq!(packs.len(), 1, "{packs:?}");
    packs[0].clone()
}

#[test]
fn many_small_files_go_up_in_one_pack_and_come_back_whole() {
    let b = bucket();
    let p = project(&b);
    small_files(&p, "one", 200, "a");
    // A file of a MiB and more goes up as a blob of its own.
    p.write("one/model.pt", vec![7u8; (1 << 20) + 5]);
    p.register(&p.path("one"), &["--id", ONE]);
    let pushed = p.json(&["push", ONE]);
    assert_eq!(pushed["uploaded_files"], 201, "{pushed}");
    assert_eq!(keys(&b, "blobs/").len(), 1);
    let pack = the_pack(&b);
    assert!(keys(&b, "packs/").contains(&format!("{pack}.toc")));
    assert_remote_consistent(&p, &b, "after the push");
    // The record is the run's metadata.json with where its content lies;
    // what is shown of it is the metadata alone.
    let shown = p.json(&["show", ONE, "--remote", "origin"]);
    assert!(shown["run"].get("packed").is_none(), "{shown}");
    let again = p.json(&["push", ONE]);
    assert_eq!(again["runs"][0]["state"], "unchanged", "{again}");

    let q = project(&b);
    let pulled = q.json(&["pull", ONE]);
    assert_eq!(pulled["downloaded_files"], 201, "{pulled}");
    q.assert_verifies_clean();
    assert_eq!(
        read_tree(&p.store().join("raw").join(ONE)),
        read_tree(&q.store().join("raw").join(ONE))
    );
    let local: Value = serde_json::from_slice(
        &std::fs::read(q.store().join("raw").join(ONE).join("metadata.json")).unwrap(),
    )
    .unwrap();
    assert!(local.get("packed").is_none(), "{local}");
}

#[test]
fn a_later_run_references_the_packed_content_it_shares_and_packs_only_many_new_files() {
    let b = bucket();
    let p = project(&b);
    small_files(&p, "one", 100, "a");
    small_files(&p, "two", 100, "a");
    let new_bytes = small_files(&p, "two", 20, "b");
    small_files(&p, "three", 100, "a");
    small_files(&p, "three", 5, "c");
    for (dir, id) in [("one", ONE), ("two", TWO), ("three", THREE)] {
        p.register(&p.path(dir), &["--id", id]);
    }
    p.json(&["push", ONE]);
    let two = p.json(&["push", TWO]);
    assert_eq!(two["uploaded_files"], 20, "{two}");
    assert_eq!(two["uploaded_bytes"], new_bytes, "{two}");
    assert_eq!(two["runs"][0]["present_files"], 100, "{two}");
    assert_eq!(keys(&b, "packs/").len(), 4, "two packs and their tables");
    // Five new small files are too few to pack: five blobs.
    let three = p.json(&["push", THREE]);
    assert_eq!(three["uploaded_files"], 5, "{three}");
    assert_eq!(keys(&b, "blobs/").len(), 5);
    assert_remote_consistent(&p, &b, "after three pushes");

    let q = project(&b);
    // Content already in local runs, or brought by an earlier run of the
    // same pull, is linked, packed or not.
    let pulled = q.json(&["pull", TWO, THREE]);
    assert_eq!(pulled["runs"][0]["downloaded_files"], 120, "{pulled}");
    assert_eq!(pulled["runs"][1]["downloaded_files"], 5, "{pulled}");
    assert_eq!(pulled["runs"][1]["linked_files"], 100, "{pulled}");
    q.assert_verifies_clean();
    for id in [TWO, THREE] {
        assert_eq!(
            read_tree(&p.store().join("raw").join(id)),
            read_tree(&q.store().join("raw").join(id))
        );
    }
}

#[test]
fn a_pack_that_is_damaged_or_gone_and_a_forged_packed_field_publish_nothing() {
    let b = bucket();
    let p = project(&b);
    small_files(&p, "one", 50, "a");
    p.register(&p.path("one"), &["--id", ONE]);
    p.json(&["push", ONE]);
    let pack = the_pack(&b);
    let q = project(&b);
    let assert_nothing_pulled = |err: &str, why: &str| {
        assert!(err.contains(why), "{err}");
        assert_eq!(q.list_json(&[])["runs"].as_array().unwrap().len(), 0);
        q.assert_verifies_clean();
    };

    let record_key = format!("runs/raw/ns=/{ONE}.json");
    // The same length, other bytes.
    let body = get_object(&b, &pack);
    let put = crate::remote_catalog::signed("PUT", &b, &pack, &vec![b'x'; body.len()]);
    assert!(put.starts_with("HTTP/1.1 200"), "{put}");
    let (code, err) = fails(&q, &["pull", ONE]);
    assert_eq!(code, Some(1), "{err}");
    assert_nothing_pulled(&err, &format!("pack {pack} does not hold the content of"));

    delete_object(&b, &pack);
    let (code, err) = fails(&q, &["pull", ONE]);
    assert_eq!(code, Some(1), "{err}");
    assert_nothing_pulled(&err, &format!("pack {pack} of"));

    // A record whose packed field names content none of its files have.
    let mut forged: Value = serde_json::from_slice(&get_object(&b, &record_key)).unwrap();
    let pack_id = pack.rsplit('/').next().unwrap();
    forged["packed"][pack_id]["c".repeat(64)] = 0.into();
    let put = crate::remote_catalog::signed("PUT", &b, &record_key, forged.to_string().as_bytes());
    assert!(put.starts_with("HTTP/1.1 200"), "{put}");
    let (code, err) = fails(&q, &["pull", ONE]);
    assert_eq!(code, Some(1), "{err}");
    assert_nothing_pulled(&err, "none of its files");
}

#[test]
fn a_pack_goes_with_its_table_of_contents_once_no_record_references_it() {
    let b = bucket();
    let p = project(&b);
    small_files(&p, "one", 40, "a");
    small_files(&p, "two", 40, "b");
    p.register(&p.path("one"), &["--id", ONE]);
    p.register(&p.path("two"), &["--id", TWO]);
    p.json(&["push", ONE]);
    let first = the_pack(&b);
    p.json(&["push", TWO]);
    assert_eq!(keys(&b, "packs/").len(), 4);

    let at = |now, args: &[&str]| json_at(&p, now, args);
    let now = chrono::Utc::now();
    let hours = chrono::Duration::hours;
    // The older run goes: its pack is marked, not deleted.
    let marked = at(
        now - hours(30),
        &["cleanup", "--remote", "origin", "--keep", "1", "--yes"],
    );
    assert_eq!(marked["newly_marked"], 1, "{marked}");
    assert_eq!(marked["deleted"], 0, "{marked}");
    assert_eq!(keys(&b, "packs/").len(), 4);
    // A grace later it goes, its table of contents with it; the other
    // run's pack stays.
    let swept = at(
        now + hours(100),
        &["cleanup", "--remote", "origin", "--yes"],
    );
    assert_eq!(swept["deleted"], 1, "{swept}");
    let left = keys(&b, "packs/");
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().all(|k| !k.starts_with(&first)), "{left:?}");
    assert_remote_consistent(&p, &b, "after the collection");
    let q = project(&b);
    q.json(&["pull", TWO]);
    q.assert_verifies_clean();
}

#[test]
fn a_push_killed_between_packs_uploads_only_the_missing_ones_when_run_again() {
    let b = bucket();
    let p = project(&b);
    // Three packs: 48 files of 512 KiB, 16 to a pack of 8 MiB.
    for i in 0..48u32 {
        let mut content = format!("shard {i}\n").into_bytes();
        content.resize(512 << 10, b'0' + (i % 10) as u8);
        p.write(&format!("one/shard{i:02}.bin"), content);
    }
    p.register(&p.path("one"), &["--id", ONE]);
    let out = with_fault(p.cmd().args(["push", ONE, "--jobs", "1"]), "upload@2:kill");
    assert!(!out.status.success());
    assert!(keys(&b, "runs/").is_empty(), "no record before its content");
    let packs_before = keys(&b, "packs/").len();
    assert_eq!(packs_before, 2, "the first pack and its table went up");
    let again = p.json(&["push", ONE, "--jobs", "1"]);
    assert_eq!(again["uploaded_files"], 32, "{again}");
    assert_eq!(again["runs"][0]["present_files"], 16, "{again}");
    assert_remote_consistent(&p, &b, "after the push ran again");
    let q = project(&b);
    q.json(&["pull", ONE]);
    q.assert_verifies_clean();
}

#[test]
fn on_a_file_remote_small_files_go_up_in_a_pack_and_come_back_whole() {
    let shared = tempfile::tempdir().unwrap();
    let p = crate::remote::file_project(shared.path());
    small_files(&p, "one", 40, "a");
    p.register(&p.path("one"), &["--id", ONE]);
    let pushed = p.json(&["push", ONE]);
    assert_eq!(pushed["uploaded_files"], 40, "{pushed}");
    let packs: Vec<_> = walkdir::WalkDir::new(shared.path().join("packs"))
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .collect();
    assert_eq!(
        packs.len(),
        2,
        "a pack and its table of contents: {packs:?}"
    );
    assert!(!shared.path().join("blobs").exists());
    assert_dir_remote_consistent(&p, shared.path(), "after the push");
    let q = crate::remote::file_project(shared.path());
    let pulled = q.json(&["pull", ONE]);
    assert_eq!(pulled["downloaded_files"], 40, "{pulled}");
    q.assert_verifies_clean();
    assert_eq!(
        read_tree(&p.store().join("raw").join(ONE)),
        read_tree(&q.store().join("raw").join(ONE))
    );
}

#[test]
fn runs_pushed_together_share_the_packs_the_push_writes() {
    let b = bucket();
    let p = project(&b);
    small_files(&p, "one", 40, "a");
    small_files(&p, "two", 40, "a");
    let new_bytes = small_files(&p, "two", 20, "b");
    p.register(&p.path("one"), &["--id", ONE]);
    p.register(&p.path("two"), &["--id", TWO]);
    let pushed = p.json(&["push", "--all"]);
    let two = &pushed["runs"][1];
    assert_eq!(two["ref"], format!("raw/{TWO}"), "{pushed}");
    assert_eq!(two["present_files"], 40, "{pushed}");
    assert_eq!(two["uploaded_files"], 20, "{pushed}");
    assert_eq!(two["uploaded_bytes"], new_bytes, "{pushed}");
    assert_eq!(keys(&b, "packs/").len(), 4, "two packs and their tables");
    assert_remote_consistent(&p, &b, "after one push of both");
}

#[test]
fn a_forged_table_of_contents_reaching_past_its_pack_is_not_trusted() {
    let b = bucket();
    let p = project(&b);
    small_files(&p, "one", 20, "a");
    p.register(&p.path("one"), &["--id", ONE]);
    // A pack of four bytes whose table claims every file of the run.
    let evil = blake3::hash(b"evil").to_hex().to_string();
    let key = format!("packs/{}/{evil}", &evil[..2]);
    let claims: Vec<Value> = std::fs::read_dir(p.path("one/data"))
        .unwrap()
        .map(|e| {
            let content = std::fs::read(e.unwrap().path()).unwrap();
            serde_json::json!([blake3::hash(&content).to_hex().as_str(), 0, content.len()])
        })
        .collect();
    let toc = serde_json::json!({ "schema_version": 1, "blobs": claims });
    crate::remote::put_object(&b, &key, b"evil");
    crate::remote::put_object(&b, &format!("{key}.toc"), toc.to_string().as_bytes());
    let pushed = p.json(&["push", ONE]);
    assert_eq!(pushed["uploaded_files"], 20, "{pushed}");
    assert_remote_consistent(&p, &b, "after the push");
    let q = project(&b);
    q.json(&["pull", ONE]);
    q.assert_verifies_clean();
}
