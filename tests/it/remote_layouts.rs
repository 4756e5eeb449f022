//! Push then pull, into a fresh project, a run or release of each seed
//! layout (issue 14): what comes back verifies clean, and `checkout` of it
//! places the same bytes as `checkout` of the original.

use crate::remote::{bucket, project, read_tree, server};
use crate::support::*;

/// The `[remote]` tables for `bucket` on the test server.
fn remote_toml(bucket: &str) -> String {
    format!(
        "\n[remote]\ndefault = \"origin\"\n[remotes.origin]\nurl = \"s3://{bucket}/proj\"\nendpoint = \"http://127.0.0.1:{}\"\nregion = \"us-east-1\"\n",
        server()
    )
}

fn with_aws(p: Project) -> Project {
    p.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
}

fn run(p: &Project, args: &[&str]) -> String {
    let out = p.cmd().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The files checkout placed in `dir`, but its own marker, which names the
/// store (it differs between the projects).
fn placed(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    read_tree(dir)
        .into_iter()
        .filter(|(name, _)| name != ".artifactctl-checkout")
        .collect()
}

/// `checkout REF --to deploy` in both projects gives the same files.
fn same_checkout(a: &Project, a_args: &[&str], b: &Project, reference: &str) {
    let mut args = a_args.to_vec();
    args.extend(["checkout", reference, "--to", "deploy"]);
    run(a, &args);
    run(b, &["checkout", reference, "--to", "deploy"]);
    let ours = placed(&a.path("deploy"));
    assert!(!ours.is_empty(), "{reference}: nothing checked out");
    assert_eq!(ours, placed(&b.path("deploy")), "{reference}");
}

#[test]
fn seed_000_refresh_runs_round_trip() {
    let b = bucket();
    let p = with_aws(crate::refresh::example());
    let config = std::fs::read_to_string(p.path("artifactctl.toml"))
        .unwrap()
        .replace(
            "name = \"MLBondAdjuster\"",
            "name = \"MLBondAdjuster\"\nworkspace = \"trained_models\"",
        )
        + &remote_toml(&b);
    p.write("artifactctl.toml", &config);
    let refreshed = p.json(&["refresh"]);
    let reference = refreshed["run"].as_str().unwrap().to_string();
    let pushed = p.json(&["push", "latest"]);
    assert_eq!(pushed["runs"][0]["state"], "pushed", "{pushed}");

    // The serving machine: the same project files, no store.
    let q = with_aws(crate::refresh::example());
    q.write("artifactctl.toml", &config);
    let pulled = q.json(&["pull", "latest"]);
    let pulled_ref = pulled["runs"][0]["ref"].as_str().unwrap();
    assert_eq!(pulled_ref, format!("raw/{reference}"), "{pulled}");
    q.assert_verifies_clean();
    same_checkout(&p, &[], &q, &reference);
    // The deployment story: where the application loads its models
    // (seed 000's trained_models/), as refresh placed them.
    run(&q, &["checkout", "latest"]);
    let models = |p: &Project| placed(&p.path("trained_models"));
    assert!(models(&q).iter().any(|(name, _)| name == "model.joblib"));
    assert_eq!(models(&p), models(&q));
}

#[test]
fn seed_002_per_symbol_store_round_trips_a_raw_run_and_a_release() {
    let b = bucket();
    let p = project(&b);
    let store = p.path("models");
    let runs = legacy_models(&store, 2, false);
    let s = store.to_str().unwrap();
    let gru = &runs[1];
    release_and_round_trip(&b, &p, s, gru, "production/gru/BTCEUR");
}

#[test]
fn seed_003_flat_store_round_trips_a_raw_run_and_a_release() {
    let b = bucket();
    let p = project(&b);
    let store = p.path("backend/models");
    let ids = legacy_versions(&store, 3, None);
    let s = store.to_str().unwrap();
    release_and_round_trip(&b, &p, s, &ids[1], "production");
}

/// In the legacy store `s`: promote `raw` to validated and release it as
/// 1.0.0 in `production` (`production` or `production/NS`), push the raw
/// run and the release, pull both on another machine, and check out the
/// same bytes there.
fn release_and_round_trip(b: &str, p: &Project, s: &str, raw: &str, production: &str) {
    let validated = run(p, &["--store", s, "promote", raw, "--to", "validated"]);
    run(
        p,
        &[
            "--store",
            s,
            "promote",
            validated.trim(),
            "--to",
            "production",
            "--version",
            "1.0.0",
            "--approve",
        ],
    );
    let raw = format!("raw/{raw}");
    let release = format!("{production}/1.0.0");
    p.json(&["--store", s, "push", &raw, &release]);

    let q = project(b);
    q.json(&["pull", &format!("{production}/latest"), &raw]);
    q.assert_verifies_clean();
    same_checkout(p, &["--store", s], &q, &release);
    same_checkout(p, &["--store", s], &q, &raw);
}

#[test]
fn seed_004_checkpoints_and_production_releases_round_trip() {
    let b = bucket();
    let p = project(&b);
    // The seed's own legacy release, and a release made here from a run
    // with checkpoints.
    seed004(&p.store());
    p.released("gru/BTCEUR", &["1.0.0", "1.1.0"]);
    let pushed = p.json(&["push", "--all"]);
    let refs: Vec<&str> = pushed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ref"].as_str().unwrap())
        .collect();
    assert!(refs.contains(&"production/gru/BTCEUR/1.1.0"), "{refs:?}");

    let q = project(&b);
    let pulled = q.json(&[
        "pull",
        "production/gru/BTCEUR/latest",
        "raw/gru/BTCEUR/20261123_101500",
    ]);
    assert_eq!(
        pulled["runs"][0]["ref"], "production/gru/BTCEUR/1.1.0",
        "{pulled}"
    );
    q.assert_verifies_clean();
    assert!(q
        .store()
        .join("raw/gru/BTCEUR/20261123_101500/checkpoints/epoch_70.pt")
        .is_file());
    same_checkout(&p, &[], &q, "production/gru/BTCEUR/latest");
    same_checkout(&p, &[], &q, "raw/gru/BTCEUR/20261123_101500");
    // The seed's own folders, without artifactctl metadata, go up as
    // `register` would record them.
    let legacy: Vec<&str> = refs
        .iter()
        .copied()
        .filter(|r| r.contains("v5_5"))
        .collect();
    assert_eq!(legacy.len(), 3, "{refs:?}");
    for reference in legacy {
        q.json(&["pull", reference]);
        q.assert_verifies_clean();
        let (ours, theirs) = (p.store().join(reference), q.store().join(reference));
        assert_eq!(read_tree(&ours), read_tree(&theirs), "{reference}");
    }
}
