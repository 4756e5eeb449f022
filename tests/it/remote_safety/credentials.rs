//! Credentials are never printed, journaled or written.

use super::*;

const KEY_ID: &str = "AKIAARTIFACTCTLLEAK01";
const SECRET: &str = "artifactctl-secret-LEAK-5c1e";
const TOKEN: &str = "artifactctl-token-LEAK-77aa";

/// A project with recognisable AWS credentials in its environment, its
/// remote `origin` on `bucket` at `endpoint`.
fn with_credentials(bucket: &str, endpoint: &str) -> Project {
    let p = Project::new()
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_SESSION_TOKEN", TOKEN)
        .env("AWS_REGION", "us-east-1");
    p.write(
        "artifactctl.toml",
        format!(
            "[remote]\ndefault = \"origin\"\n[remotes.origin]\nurl = \"s3://{bucket}/proj\"\nendpoint = \"{endpoint}\"\nregion = \"us-east-1\"\n"
        ),
    );
    p
}

fn assert_no_secret(what: &str, text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    for secret in [KEY_ID, SECRET, TOKEN] {
        assert!(!text.contains(secret), "{what} holds {secret}:\n{text}");
    }
}

/// Run `args` (and again with `--json`); neither output holds a secret.
/// Returns the plain run's exit code and stderr.
fn run_clean(p: &Project, args: &[&str]) -> (Option<i32>, String) {
    let json = p.cmd().args(args).arg("--json").output().unwrap();
    assert_no_secret(&format!("{args:?} --json stdout"), &json.stdout);
    assert_no_secret(&format!("{args:?} --json stderr"), &json.stderr);
    let out = p.cmd().args(args).output().unwrap();
    assert_no_secret(&format!("{args:?} stdout"), &out.stdout);
    assert_no_secret(&format!("{args:?} stderr"), &out.stderr);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `dir` (the store, its journal and metadata included).
fn assert_tree_clean(dir: &std::path::Path) {
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        assert_no_secret(
            &format!("the name {}", entry.path().display()),
            entry.path().to_string_lossy().as_bytes(),
        );
        if entry.file_type().is_file() {
            assert_no_secret(
                &entry.path().display().to_string(),
                &std::fs::read(entry.path()).unwrap(),
            );
        }
    }
}

#[test]
fn credentials_never_reach_output_the_journal_metadata_or_the_remote() {
    let b = bucket();
    let endpoint = format!("http://127.0.0.1:{}", server());
    let a = with_credentials(&b, &endpoint);
    a.released("gru/BTCEUR", &["1.0.0", "1.1.0"]);
    let commands: [&[&str]; 9] = [
        &["push", "--all"],
        &["list", "--stage", "all", "--remote", "origin"],
        &["show", "production/gru/BTCEUR/latest", "--remote", "origin"],
        &[
            "rollback",
            "gru/BTCEUR",
            "--remote",
            "origin",
            "--to",
            "1.0.0",
        ],
        &[
            "promote",
            "production/gru/BTCEUR/1.1.0",
            "--remote",
            "origin",
            "--approve",
        ],
        &["history", "--remote", "origin"],
        &["cleanup", "--remote", "origin", "--yes"],
        &["pull", "production/gru/BTCEUR/1.0.0"],
        &["push", "--all"],
    ];
    for args in commands {
        let (code, err) = run_clean(&a, args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
    }
    let c = with_credentials(&b, &endpoint);
    let (code, err) = run_clean(&c, &["pull", "production/gru/BTCEUR/latest"]);
    assert_eq!(code, Some(0), "{err}");
    c.assert_verifies_clean();
    assert_tree_clean(&a.store());
    assert_tree_clean(&c.store());
    let side = Side::Bucket(b.clone());
    let keys = side.keys();
    assert!(keys.iter().any(|k| k.starts_with("journal/")), "{keys:?}");
    for key in &keys {
        assert_no_secret(&format!("the remote key {key}"), key.as_bytes());
        assert_no_secret(&format!("the remote object {key}"), &side.get(key));
    }

    // The server down: each command fails, naming the remote's URL without
    // any secret.
    let dead = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // One second of retries is enough to fail the same way.
        with_credentials(&b, &format!("http://127.0.0.1:{port}"))
            .env("ARTIFACTCTL_REMOTES_ORIGIN_RETRY_TIMEOUT", "1")
    };
    dead.released("gru/BTCEUR", &["1.0.0"]);
    for args in [
        &["push", "--all"][..],
        &["pull", "production/gru/BTCEUR/latest"],
        &["list", "--remote", "origin"],
        &["history", "--remote", "origin"],
        &[
            "promote",
            "production/gru/BTCEUR/1.0.0",
            "--remote",
            "origin",
            "--approve",
        ],
    ] {
        let (code, err) = run_clean(&dead, args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!("remote s3://{b}/proj failed"))
                && err.contains("check that the server is reachable"),
            "{args:?}: {err}"
        );
    }
    assert_tree_clean(&dead.store());

    // Credentials in the configuration are refused, and not repeated: in
    // the endpoint's or the URL's user info (from the file or from the
    // environment), or in a query string that would become part of every
    // key written.
    let userinfo = format!("http://{KEY_ID}:{SECRET}@127.0.0.1:{}", server());
    let in_endpoint = with_credentials(&b, &userinfo);
    let in_env =
        with_credentials(&b, &endpoint).env("ARTIFACTCTL_REMOTES_ORIGIN_ENDPOINT", &userinfo);
    let in_url = with_credentials(&format!("{KEY_ID}:{SECRET}@{b}"), &endpoint);
    let in_query = with_credentials(&format!("{b}/proj?X-Amz-Security-Token={TOKEN}"), &endpoint);
    for (p, why) in [
        (&in_endpoint, "carries user info"),
        (&in_env, "carries user info"),
        (&in_url, "carries user info"),
        (&in_query, "has a query"),
    ] {
        p.released("gru/BTCEUR", &["1.0.0"]);
        for args in [
            &["push", "--all"][..],
            &["list", "--remote", "origin"],
            &["pull", "production/gru/BTCEUR/latest"],
        ] {
            let (code, err) = run_clean(p, args);
            assert_eq!(code, Some(2), "{args:?}: {err}");
            assert!(err.contains(why), "{args:?}: {err}");
        }
        assert_tree_clean(&p.store());
    }
    // Nothing of theirs reached the bucket.
    assert_eq!(side.keys(), keys);

    // A malformed endpoint is bad input, named, not a crash mid-request.
    for bad in ["http://127.0.0.1:99999", "127.0.0.1:9000", "http://[::1"] {
        let p = with_credentials(&b, bad);
        let (code, err) = run_clean(&p, &["list", "--remote", "origin"]);
        assert_eq!(code, Some(2), "{bad}: {err}");
        assert!(
            err.contains("is not an http:// or https:// address") && !err.contains("panicked"),
            "{bad}: {err}"
        );
    }
}
